//! The local APIC pieces both images use in the same way: switching x2APIC on, the initial
//! APIC ID from CPUID, the interrupt command register's command words and its x2APIC MSR.
//! Which mode an image runs the APIC in (the RT kernel falls back to xAPIC) is its own.

use crate::msr;

/// IA32_APIC_BASE: the APIC is enabled.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE: x2APIC mode (EXTD).
pub const APIC_BASE_X2APIC: u64 = 1 << 10;

/// ICR delivery mode: fixed.
pub const ICR_FIXED: u32 = 0;
/// ICR delivery mode: INIT.
pub const ICR_INIT: u32 = 0b101 << 8;
/// ICR delivery mode: start-up.
pub const ICR_STARTUP: u32 = 0b110 << 8;
/// ICR level: assert.
pub const ICR_LEVEL_ASSERT: u32 = 1 << 14;

/// Switches this CPU's local APIC to x2APIC mode (enabled, then EXTD: the architectural way
/// in); an APIC already in x2APIC mode is left as it is.
///
/// # Safety
/// The CPU must support x2APIC (CPUID.1:ECX[21]), and nothing on this CPU may still use the
/// xAPIC MMIO page.
pub unsafe fn enable_x2apic() {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; the caller vouches for x2APIC.
    unsafe {
        let base = msr::read(msr::IA32_APIC_BASE);
        if base & APIC_BASE_X2APIC == 0 {
            msr::write(msr::IA32_APIC_BASE, base | APIC_BASE_ENABLE);
            msr::write(
                msr::IA32_APIC_BASE,
                base | APIC_BASE_ENABLE | APIC_BASE_X2APIC,
            );
        }
    }
}

/// This CPU's initial APIC ID from CPUID (leaf 0Bh's x2APIC ID where present).
pub fn cpuid_apic_id() -> u32 {
    let max_leaf = core::arch::x86_64::__cpuid(0).eax;
    if max_leaf >= 0xb {
        let leaf = core::arch::x86_64::__cpuid_count(0xb, 0);
        if leaf.ebx != 0 {
            return leaf.edx;
        }
    }
    core::arch::x86_64::__cpuid(1).ebx >> 24
}

/// Sends the IPI `low` (vector, delivery mode, level: the ICR's low word) to the CPU with
/// x2APIC ID `dest`, through the x2APIC ICR MSR.
///
/// # Safety
/// This CPU's APIC must be in x2APIC mode, and the destination CPU must be the caller's to
/// interrupt (an INIT resets it).
pub unsafe fn x2apic_send_icr(dest: u32, low: u32) {
    // SAFETY: x2APIC mode is on (caller); the write sends the IPI the caller asked for.
    unsafe { msr::write(msr::X2APIC_ICR, (u64::from(dest) << 32) | u64::from(low)) };
}
