//! The interrupt vectors the hypervisor and the RT kernel agree on. The RT kernel's interrupt
//! stubs are generated from these constants; the hypervisor sends [`DOORBELL`] and lets the RT
//! partition send [`RESCHEDULE`] to its own CPUs.
//!
//! Vectors 0-31 are the CPU's exceptions. The RT partition's devices' lines (from
//! [`DEVICE_FIRST`]) sit in a lower priority class than its own interrupts (the timer, the
//! rescheduling IPI, the doorbell): a level-triggered line stays in service at the local APIC
//! until its handler task has quieted the device, which holds off the other device lines of
//! that CPU but never its timer or its IPIs. Linux's doorbell sits in a class of its own
//! below the timer's and the rescheduling IPI's: pending together, the local APIC serves the
//! higher class first, so an interrupt whose timing Linux decides never goes before an RT
//! deadline or a wake-up from another RT CPU.

/// The RT kernel's local APIC timer (TSC-deadline mode).
pub const TIMER: u8 = 0xe0;
/// The RT kernel's rescheduling IPI between its own CPUs.
pub const RESCHEDULE: u8 = 0xe1;
/// A channel doorbell: when Linux rings a channel whose notification is `doorbell`
/// (hypercall `DOORBELL`), the hypervisor sends this fixed IPI to the RT partition's first CPU
/// (CPU index 0), which then wakes the tasks waiting on channels. The IPI reaches the RT CPU
/// directly: it takes no VM exit.
pub const DOORBELL: u8 = 0xd0;
/// The first RT device line's vector: the RT partition's `i`-th line (the `i`-th entry of
/// its boot information's line table, an IOAPIC pin the config gives it) is delivered with
/// vector `DEVICE_FIRST + i` to the RT CPU the line names, directly (no VM exit).
pub const DEVICE_FIRST: u8 = 48;
/// How many device line vectors there are, from [`DEVICE_FIRST`].
pub const DEVICE_LINES: usize = 16;

/// The vector of RT device line `line`, if there is such a line.
pub const fn device_vector(line: usize) -> Option<u8> {
    if line < DEVICE_LINES {
        Some(DEVICE_FIRST + line as u8)
    } else {
        None
    }
}

/// The RT device line that `vector` belongs to, if it is a device vector.
pub const fn device_line(vector: u8) -> Option<usize> {
    if vector >= DEVICE_FIRST && ((vector - DEVICE_FIRST) as usize) < DEVICE_LINES {
        Some((vector - DEVICE_FIRST) as usize)
    } else {
        None
    }
}

/// The local APIC's spurious-interrupt vector (its low four bits must be 1s on old APICs).
pub const SPURIOUS: u8 = 0xff;

const _: () = {
    assert!(DEVICE_FIRST >= 32);
    assert!(TIMER != RESCHEDULE && RESCHEDULE != DOORBELL && TIMER != DOORBELL);
    assert!(SPURIOUS & 0x0f == 0x0f);
    // Every device line's priority class (the vector's high nibble) is below the kernel's
    // vectors' classes, and below the spurious vector.
    let last_line = DEVICE_FIRST as usize + DEVICE_LINES - 1;
    let lowest_kernel = if TIMER < RESCHEDULE { TIMER } else { RESCHEDULE };
    let lowest_kernel = if DOORBELL < lowest_kernel { DOORBELL } else { lowest_kernel };
    assert!(last_line >> 4 < (lowest_kernel >> 4) as usize);
    assert!(TIMER < SPURIOUS && RESCHEDULE < SPURIOUS && DOORBELL < SPURIOUS);
    // The doorbell's class is below the timer's and the IPI's.
    assert!(DOORBELL >> 4 < TIMER >> 4 && DOORBELL >> 4 < RESCHEDULE >> 4);
};
