//! CPU identity: which logical CPU (boot order index) and which APIC ID the running
//! code is on. Each CPU's GS base points at its own entry, so `current_index` is one
//! load; every CPU sets its GS base before it logs anything.
// Points GS at each CPU's identity and reads it back.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_config::MAX_CPUS;

use crate::arch::msr;

#[repr(C)]
struct Identity {
    index: AtomicU64,
    apic_id: AtomicU64,
}

static IDENTITIES: [Identity; MAX_CPUS] = [const {
    Identity {
        index: AtomicU64::new(0),
        apic_id: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Records this CPU's index and APIC ID and points GS at them.
pub fn set_current(index: usize, apic_id: u32) {
    let entry = &IDENTITIES[index];
    entry.index.store(index as u64, Ordering::Relaxed);
    entry.apic_id.store(u64::from(apic_id), Ordering::Relaxed);
    // SAFETY: IA32_GS_BASE exists on every x86-64 CPU; the hypervisor uses GS only for
    // this table, and the entry is a static that lives for ever.
    unsafe { msr::write(msr::IA32_GS_BASE, entry as *const Identity as u64) };
}

/// Boot-order index of the running CPU (0 = bootstrap CPU).
pub fn current_index() -> usize {
    let index: u64;
    // SAFETY: GS points at this CPU's `Identity` (set first thing on every CPU), whose
    // first field is the index.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) index, options(nostack, readonly)) };
    index as usize
}

/// APIC ID of the running CPU.
pub fn current_apic_id() -> u32 {
    let id: u64;
    // SAFETY: as in `current_index`; the second field is the APIC ID.
    unsafe { core::arch::asm!("mov {}, gs:[8]", out(reg) id, options(nostack, readonly)) };
    id as u32
}
