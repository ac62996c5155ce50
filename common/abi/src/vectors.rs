//! The interrupt vectors the hypervisor and the RT kernel agree on. The RT kernel's interrupt
//! stubs are generated from these constants; the hypervisor sends [`DOORBELL`] and lets the RT
//! partition send [`RESCHEDULE`] to its own CPUs.
//!
//! Vectors 0-31 are the CPU's exceptions; the RT partition's own interrupts start at 32.

/// The RT kernel's local APIC timer (TSC-deadline mode).
pub const TIMER: u8 = 32;
/// The RT kernel's rescheduling IPI between its own CPUs.
pub const RESCHEDULE: u8 = 33;
/// A channel doorbell: when Linux rings a channel whose notification is `doorbell`
/// (hypercall `DOORBELL`), the hypervisor sends this fixed IPI to the RT partition's first CPU
/// (CPU index 0), which then wakes the tasks waiting on channels. The IPI reaches the RT CPU
/// directly: it takes no VM exit.
pub const DOORBELL: u8 = 34;
/// The local APIC's spurious-interrupt vector (its low four bits must be 1s on old APICs).
pub const SPURIOUS: u8 = 0xff;

const _: () = {
    assert!(TIMER >= 32 && RESCHEDULE >= 32 && DOORBELL >= 32);
    assert!(TIMER != RESCHEDULE && RESCHEDULE != DOORBELL && TIMER != DOORBELL);
    assert!(SPURIOUS & 0x0f == 0x0f);
};
