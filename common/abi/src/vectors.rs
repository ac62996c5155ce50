//! The interrupt vectors the hypervisor and the RT kernel agree on. The RT kernel's interrupt
//! stubs are generated from these constants; the hypervisor sends [`DOORBELL`] and lets the RT
//! partition send [`RESCHEDULE`] to its own CPUs.
//!
//! Vectors 0-31 are the CPU's exceptions; the RT partition's own interrupts start at 32, its
//! devices' lines at [`DEVICE_FIRST`].

/// The RT kernel's local APIC timer (TSC-deadline mode).
pub const TIMER: u8 = 32;
/// The RT kernel's rescheduling IPI between its own CPUs.
pub const RESCHEDULE: u8 = 33;
/// A channel doorbell: when Linux rings a channel whose notification is `doorbell`
/// (hypercall `DOORBELL`), the hypervisor sends this fixed IPI to the RT partition's first CPU
/// (CPU index 0), which then wakes the tasks waiting on channels. The IPI reaches the RT CPU
/// directly: it takes no VM exit.
pub const DOORBELL: u8 = 34;
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
    assert!(TIMER >= 32 && RESCHEDULE >= 32 && DOORBELL >= 32);
    assert!(TIMER != RESCHEDULE && RESCHEDULE != DOORBELL && TIMER != DOORBELL);
    assert!(SPURIOUS & 0x0f == 0x0f);
    assert!(DEVICE_FIRST > DOORBELL && DEVICE_FIRST as usize + DEVICE_LINES <= SPURIOUS as usize);
};
