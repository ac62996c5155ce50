//! Starting the other CPUs in bare mode: INIT-SIPI-SIPI (Intel SDM Vol. 3A, 10.4.4), one CPU
//! at a time, through the real-mode trampoline (trampoline.S) copied to 0x8000. Each AP
//! runs on its boot stack (boot.S, by partition index) and enters `ap_entry(index)`.
//! Under the hypervisor none of this runs: the hypervisor enters `_start` on every CPU.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::MAX_CPUS;
use crate::arch::{apic, rdtsc, time};

/// Physical address the trampoline runs at (SIPI vector 0x08).
const AP_TRAMPOLINE_BASE: u64 = 0x8000;
const SIPI_VECTOR: u8 = (AP_TRAMPOLINE_BASE >> 12) as u8;
/// Size of each CPU's boot stack in boot.S.
const BOOT_STACK_SIZE: u64 = 64 * 1024;

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_trampoline_params: u8;
    static boot_stacks: u8;
}

/// The parameter block at the end of the trampoline (trampoline.S).
#[repr(C)]
struct TrampolineParams {
    cr3: u64,
    stack_top: u64,
    entry: u64,
    arg: u64,
}

/// Set by each CPU as soon as it runs Rust code; indexed by partition index.
static ALIVE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Called by a CPU as soon as it runs Rust code.
pub fn signal_alive(index: usize) {
    if let Some(flag) = ALIVE.get(index) {
        flag.store(true, Ordering::Release);
    }
}

/// Whether CPU `index` has signalled.
pub fn is_alive(index: usize) -> bool {
    ALIVE.get(index).is_some_and(|f| f.load(Ordering::Acquire))
}

/// Why an AP did not come up.
#[derive(Debug, Clone, Copy)]
pub struct NoResponse;

/// Starts the CPU with APIC ID `apic_id` as partition CPU `index`; it runs `entry(index)`.
/// Returns once the AP has signalled that it runs.
pub fn start_ap(
    index: usize,
    apic_id: u32,
    entry: extern "C" fn(u64) -> !,
) -> Result<(), NoResponse> {
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    let stack_top = (&raw const boot_stacks) as u64 + (index as u64 + 1) * BOOT_STACK_SIZE;
    // SAFETY: the trampoline symbols delimit the code and its parameter block in the image;
    // 0x8000.. lies in conventional memory below 1 MiB that the BIOS does not use after boot
    // and the kernel does not use at all. APs start one at a time, so nobody reads the copy
    // while it is rewritten.
    unsafe {
        let src = &raw const ap_trampoline_start;
        let len = (&raw const ap_trampoline_end as usize) - src as usize;
        core::ptr::copy_nonoverlapping(src, AP_TRAMPOLINE_BASE as *mut u8, len);
        let params_off = (&raw const ap_trampoline_params as usize) - src as usize;
        let params = (AP_TRAMPOLINE_BASE as usize + params_off) as *mut TrampolineParams;
        params.write_volatile(TrampolineParams {
            cr3,
            stack_top,
            entry: entry as *const () as u64,
            arg: index as u64,
        });
    }
    apic::send_init(apic_id);
    time::delay_us(10_000);
    for _ in 0..2 {
        apic::send_startup(apic_id, SIPI_VECTOR);
        time::delay_us(200);
        if is_alive(index) {
            return Ok(());
        }
    }
    // Give a slow (emulated) CPU up to a second.
    let deadline = rdtsc() + time::tsc_hz().max(1_000_000);
    while rdtsc() < deadline {
        if is_alive(index) {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(NoResponse)
}
