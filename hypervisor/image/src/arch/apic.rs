//! The local APIC in x2APIC mode: this CPU's ID and inter-processor interrupts.
//!
//! The hypervisor switches every CPU it owns to x2APIC mode (the partitions' kernels
//! then find x2APIC already on, which is what the isolation model expects: x2APIC
//! registers are MSRs that the MSR bitmap can filter, unlike the xAPIC MMIO page).

use super::msr;

const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

const ICR_INIT: u64 = 0b101 << 8;
const ICR_STARTUP: u64 = 0b110 << 8;
const ICR_LEVEL_ASSERT: u64 = 1 << 14;

/// Switches this CPU's local APIC to x2APIC mode.
///
/// # Safety
/// The CPU must support x2APIC (CPUID.1:ECX[21]).
pub unsafe fn enable_x2apic() {
    // SAFETY: IA32_APIC_BASE exists; setting EN then EXTD is the architectural way in.
    unsafe {
        let base = msr::read(msr::IA32_APIC_BASE);
        msr::write(msr::IA32_APIC_BASE, base | APIC_BASE_ENABLE);
        msr::write(
            msr::IA32_APIC_BASE,
            base | APIC_BASE_ENABLE | APIC_BASE_X2APIC,
        );
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

fn write_icr(value: u64) {
    // SAFETY: x2APIC mode is on (enable_x2apic runs before any IPI); ICR writes only send
    // the IPIs the start-up sequence asks for.
    unsafe { msr::write(msr::X2APIC_ICR, value) };
}

/// Sends INIT to the CPU with x2APIC ID `dest`.
pub fn send_init(dest: u32) {
    write_icr((u64::from(dest) << 32) | ICR_INIT | ICR_LEVEL_ASSERT);
}

/// Sends a start-up IPI with the given page number (the AP starts at `vector << 12`).
pub fn send_startup(dest: u32, vector: u8) {
    write_icr((u64::from(dest) << 32) | ICR_STARTUP | ICR_LEVEL_ASSERT | u64::from(vector));
}
