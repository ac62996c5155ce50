//! Which CPU is this: each CPU's GS base points at its entry of a static table, whose first
//! word is the CPU's partition index, so the index costs one `mov` from `gs:0`.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::MAX_CPUS;
use crate::arch::msr;

#[repr(C)]
struct PerCpu {
    /// Partition index of the CPU (read through GS).
    index: AtomicU64,
    apic_id: AtomicU32,
}

static PERCPU: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        index: AtomicU64::new(0),
        apic_id: AtomicU32::new(0),
    }
}; MAX_CPUS];

/// Makes this CPU partition CPU `index` (below [`MAX_CPUS`]); first thing on every CPU.
pub fn set_current(index: usize) {
    let Some(entry) = PERCPU.get(index) else {
        crate::arch::halt_forever()
    };
    entry.index.store(index as u64, Ordering::Relaxed);
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
