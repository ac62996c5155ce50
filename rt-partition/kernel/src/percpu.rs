//! Which CPU is this: each CPU's GS base points at its entry of a static table, whose first
//! word is the CPU's partition index, so the index costs one `mov` from `gs:0`; the next
//! word points at the CPU's own trace record (`crate::trace`), which every interrupt and
//! kernel entry stamps, so that costs one `mov` too.
//!
//! Every CPU calls [`set_current`] first thing in its Rust entry: before it, GS does not
//! point here.

use core::mem::offset_of;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crate::MAX_CPUS;
use crate::arch::msr;
use crate::trace::CoreTrace;

#[repr(C)]
struct PerCpu {
    /// Partition index of the CPU (read through GS).
    index: AtomicU64,
    /// The CPU's trace record (read through GS).
    trace: AtomicPtr<CoreTrace>,
    apic_id: AtomicU32,
}

static PERCPU: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        index: AtomicU64::new(0),
        trace: AtomicPtr::new(core::ptr::null_mut()),
        apic_id: AtomicU32::new(0),
    }
}; MAX_CPUS];

/// Makes this CPU partition CPU `index` (below [`MAX_CPUS`]); first thing on every CPU.
pub fn set_current(index: usize) {
    let Some(entry) = PERCPU.get(index) else {
        crate::arch::halt_forever()
    };
    entry.index.store(index as u64, Ordering::Relaxed);
    entry.trace.store(
        core::ptr::from_ref(crate::trace::of_cpu(index)).cast_mut(),
        Ordering::Relaxed,
    );
    // SAFETY: IA32_GS_BASE exists in long mode; the entry is a static that lives for ever and
    // nothing else uses GS.
    unsafe { msr::write(msr::IA32_GS_BASE, core::ptr::from_ref(entry) as u64) };
}

/// Records this CPU's APIC ID.
pub fn set_apic_id(apic_id: u32) {
    if let Some(entry) = PERCPU.get(current_index()) {
        entry.apic_id.store(apic_id, Ordering::Relaxed);
    }
}

/// This CPU's partition index (0 before `set_current`).
#[inline]
pub fn current_index() -> usize {
    let index: u64;
    // SAFETY: GS points at this CPU's entry (or is 0 before `set_current`, where the read
    // hits identity-mapped low memory); a plain load.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) index, options(nostack, readonly, preserves_flags));
    }
    (index as usize).min(MAX_CPUS - 1)
}

/// This CPU's trace record (after [`set_current`]).
#[inline]
pub fn current_trace() -> &'static CoreTrace {
    let trace: *const CoreTrace;
    // SAFETY: GS points at this CPU's entry, whose `trace` `set_current` set to a static
    // record before it pointed GS here (every CPU's first step); a plain load.
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[{offset}]",
            out(reg) trace,
            offset = const offset_of!(PerCpu, trace),
            options(nostack, readonly, preserves_flags)
        );
        &*trace
    }
}
