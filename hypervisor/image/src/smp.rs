//! Starting the application processors: each gets a stack and descriptor tables from the
//! frame allocator, then INIT-SIPI-SIPI through the real-mode trampoline
//! (`bulkhead_x86::smp`), one CPU at a time.
//!
//! Only CPUs named in the config are started; the others stay in wait-for-SIPI.
// Starts application processors: INIT-SIPI-SIPI through the x2APIC and the trampoline.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicBool, Ordering};

use bulkhead_x86::smp::{ApLaunch, NoResponse};

use crate::arch::{apic, cpu::CpuTables};
use crate::memory;

/// Stack of each AP's hypervisor code.
pub const AP_STACK_SIZE: u64 = 64 * 1024;

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

fn send_icr(dest: u32, low: u32) {
    // SAFETY: x2APIC mode is on (the bootstrap CPU enables it before starting any AP), and
    // `start_ap` sends only the start-up sequence to a CPU the config gives the hypervisor.
    unsafe { apic::x2apic_send_icr(dest, low) };
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
    let launch = ApLaunch {
        stack_top: stack.as_u64() + AP_STACK_SIZE,
        entry: entry as *const () as u64,
        arg: core::ptr::from_mut(start) as u64,
    };
    // SAFETY: `entry` is an `extern "C"` function of the `ApStart` pointer in `arg`, which
    // lives for ever; the stack is fresh and this AP's alone. 0x8000.. lies in
    // conventional memory below 1 MiB that no partition runs in yet and the BIOS does not
    // use after boot; APs are started one at a time, from the bootstrap CPU. The config
    // gives the hypervisor the CPU `apic_id`.
    unsafe { bulkhead_x86::smp::start_ap(apic_id, launch, send_icr, || is_alive(index)) }
        .map_err(|NoResponse| StartError::NoResponse)
}
