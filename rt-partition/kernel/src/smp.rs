//! Starting the other CPUs in bare mode: INIT-SIPI-SIPI, one CPU at a time, through the
//! real-mode trampoline (`bulkhead_x86::smp`). Each AP runs on its boot stack (boot.S, by
//! partition index) and enters `ap_entry(index)`.
//! Under the hypervisor none of this runs: the hypervisor enters `_start` on every CPU.

use core::sync::atomic::{AtomicBool, Ordering};

use bulkhead_x86::smp::ApLaunch;
pub use bulkhead_x86::smp::NoResponse;

use crate::MAX_CPUS;
use crate::arch::apic;

/// Size of each CPU's boot stack in boot.S.
const BOOT_STACK_SIZE: u64 = 64 * 1024;

unsafe extern "C" {
    static boot_stacks: u8;
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

/// Starts the CPU with APIC ID `apic_id` as partition CPU `index`; it runs `entry(index)`.
/// Returns once the AP has signalled that it runs.
pub fn start_ap(
    index: usize,
    apic_id: u32,
    entry: extern "C" fn(u64) -> !,
) -> Result<(), NoResponse> {
    if index >= MAX_CPUS {
        return Err(NoResponse);
    }
    let launch = ApLaunch {
        stack_top: (&raw const boot_stacks) as u64 + (index as u64 + 1) * BOOT_STACK_SIZE,
        entry: entry as *const () as u64,
        arg: index as u64,
    };
    // SAFETY: `entry` is an `extern "C"` function of the index in `arg`; the stack is CPU
    // `index`'s boot stack in boot.S (index below MAX_CPUS), which no other CPU uses.
    // 0x8000.. lies in conventional memory below 1 MiB that the BIOS does not use after boot
    // and the kernel does not use at all; the boot CPU starts APs one at a time. In bare
    // mode every CPU of the MADT is the kernel's.
    unsafe { bulkhead_x86::smp::start_ap(apic_id, launch, apic::send_icr, || is_alive(index)) }
}
