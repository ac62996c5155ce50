//! Starting the application processors: INIT-SIPI-SIPI (Intel SDM Vol. 3A, 10.4.4 and
//! the MultiProcessor Specification's timing), one CPU at a time through a real-mode
//! trampoline copied to 0x8000.
//!
//! Only CPUs named in the config are started; the others stay in wait-for-SIPI.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::{apic, cpu::CpuTables, rdtsc, time};
use crate::memory;

/// Physical address the trampoline runs at (SIPI vector 0x08).
pub const AP_TRAMPOLINE_BASE: u64 = 0x8000;
const SIPI_VECTOR: u8 = (AP_TRAMPOLINE_BASE >> 12) as u8;
/// Stack of each AP's hypervisor code.
pub const AP_STACK_SIZE: u64 = 64 * 1024;

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_trampoline_params: u8;
}

/// The parameter block at the end of the trampoline (trampoline.S).
#[repr(C)]
struct TrampolineParams {
    cr3: u64,
    stack_top: u64,
    entry: u64,
    arg: u64,
}

/// What an AP needs to know about itself; lives for ever.
#[derive(Debug)]
pub struct ApStart {
    pub index: usize,
    pub apic_id: u32,
    pub tables: &'static mut CpuTables,
}

/// Set by each AP as soon as it runs Rust code; indexed by logical CPU.
static ALIVE: [AtomicBool; bulkhead_config::MAX_CPUS] =
    [const { AtomicBool::new(false) }; bulkhead_config::MAX_CPUS];

/// Called by an AP as soon as it runs Rust code.
pub fn signal_started(index: usize) {
    if let Some(flag) = ALIVE.get(index) {
        flag.store(true, Ordering::Release);
    }
}

fn is_alive(index: usize) -> bool {
    ALIVE.get(index).is_some_and(|f| f.load(Ordering::Acquire))
}

/// Why an AP did not come up.
#[derive(Debug, Clone, Copy)]
pub enum StartError {
    OutOfMemory,
    NoResponse,
}

/// Starts the CPU with APIC ID `apic_id` as logical CPU `index`; it runs
/// `entry(&ApStart)`. Returns once the AP has signalled that it runs.
pub fn start_ap(
    index: usize,
    apic_id: u32,
    entry: extern "C" fn(&'static mut ApStart) -> !,
) -> Result<(), StartError> {
    let stack = memory::alloc_zeroed(AP_STACK_SIZE, 0x1000).map_err(|_| StartError::OutOfMemory)?;
    let tables = memory::alloc_static::<CpuTables>().map_err(|_| StartError::OutOfMemory)?;
    let start = memory::leak(ApStart {
        index,
        apic_id,
        tables,
    })
    .map_err(|_| StartError::OutOfMemory)?;

    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    // SAFETY: the trampoline symbols delimit the code and its parameter block in the
    // image; 0x8000.. lies in conventional memory below 1 MiB that no partition runs in
    // yet and the BIOS does not use after boot. APs are started one at a time, so
    // nobody else reads the copy while it is rewritten.
    unsafe {
        let src = &raw const ap_trampoline_start;
        let len = (&raw const ap_trampoline_end as usize) - src as usize;
        core::ptr::copy_nonoverlapping(src, AP_TRAMPOLINE_BASE as *mut u8, len);
        let params_off = (&raw const ap_trampoline_params as usize) - src as usize;
        let params = (AP_TRAMPOLINE_BASE as usize + params_off) as *mut TrampolineParams;
        params.write_volatile(TrampolineParams {
            cr3,
            stack_top: stack.as_u64() + AP_STACK_SIZE,
            entry: entry as *const () as u64,
            arg: core::ptr::from_mut(start) as u64,
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
    // Give a slow (emulated) CPU up to a second of TSC time.
    let deadline = rdtsc() + time::tsc_hz().max(1_000_000);
    while rdtsc() < deadline {
        if is_alive(index) {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(StartError::NoResponse)
}
