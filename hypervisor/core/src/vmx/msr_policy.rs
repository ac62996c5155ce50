//! Which MSRs a Linux CPU writes straight to the hardware.
//!
//! A write to any other MSR exits, and the hypervisor decides (the TSC, the APIC base, the
//! ICR have their own handling; everything else is refused: the value is dropped and counted
//! as an `msr` refusal). The list holds the MSRs whose state belongs to the logical CPU that
//! writes them (SDM Vol. 4, "thread" scope) and that Linux writes on its hot paths or to set
//! itself up: system-call and segment bases, the x2APIC's own registers and its TSC-deadline
//! timer, speculation controls, PAT, extended-state and shadow-stack setup, performance
//! monitoring (counters, PEBS, last-branch records), debug control. Left out on purpose, so that a write from Linux never reaches
//! them: whatever is shared by a core or the package, or changes the processor beside Linux's
//! CPUs (frequency and power limits, thermal and clock modulation, C-state and turbo control,
//! `IA32_MISC_ENABLE`, machine-check banks, microcode updates, MTRRs, TSX control), where a
//! write on a Linux core would slow, stop or reconfigure the RT partition's cores.
//!
//! Reads are not restricted here: they change nothing.

use core::ops::RangeInclusive;

/// The MSRs (inclusive ranges) whose writes from Linux go to the hardware without an exit.
pub const LINUX_WRITABLE: [RangeInclusive<u32>; 28] = [
    // IA32_SPEC_CTRL, IA32_PRED_CMD.
    0x48..=0x49,
    // IA32_BIOS_SIGN_ID (Linux writes 0 before CPUID to read the microcode revision).
    0x8b..=0x8b,
    // IA32_PMC0..7.
    0xc1..=0xc8,
    // IA32_UMWAIT_CONTROL.
    0xe1..=0xe1,
    // IA32_FLUSH_CMD.
    0x10b..=0x10b,
    // MSR_MISC_FEATURES_ENABLES (CPUID faulting, per thread).
    0x140..=0x140,
    // IA32_SYSENTER_CS, _ESP, _EIP.
    0x174..=0x176,
    // IA32_PERFEVTSEL0..7.
    0x186..=0x18d,
    // MSR_OFFCORE_RSP_0, _1 (performance monitoring).
    0x1a6..=0x1a7,
    // IA32_XFD, IA32_XFD_ERR.
    0x1c4..=0x1c5,
    // MSR_LBR_SELECT, MSR_LASTBRANCH_TOS.
    0x1c8..=0x1c9,
    // IA32_DEBUGCTL.
    0x1d9..=0x1d9,
    // IA32_PAT.
    0x277..=0x277,
    // IA32_FIXED_CTR0..2.
    0x309..=0x30b,
    // IA32_FIXED_CTR_CTRL, IA32_PERF_GLOBAL_STATUS, _CTRL, _OVF_CTRL.
    0x38d..=0x390,
    // IA32_PEBS_ENABLE, MSR_PEBS_LD_LAT.
    0x3f1..=0x3f1,
    0x3f6..=0x3f6,
    // IA32_A_PMC0..7 (full-width counter aliases).
    0x4c1..=0x4c8,
    // IA32_DS_AREA.
    0x600..=0x600,
    // The last-branch record stack: MSR_LASTBRANCH_n_FROM_IP, _TO_IP.
    0x680..=0x69f,
    0x6c0..=0x6df,
    // IA32_U_CET, IA32_S_CET, IA32_PL0..3_SSP, IA32_INTERRUPT_SSP_TABLE_ADDR.
    0x6a0..=0x6a8,
    // IA32_TSC_DEADLINE, IA32_PKRS.
    0x6e0..=0x6e1,
    // The x2APIC's registers (the ICR, 0x830, is intercepted on its own; read-only ones fault
    // in the hardware as they should).
    0x800..=0x8ff,
    // IA32_BNDCFGS.
    0xd90..=0xd90,
    // IA32_XSS.
    0xda0..=0xda0,
    // IA32_EFER, IA32_STAR, IA32_LSTAR, IA32_CSTAR, IA32_FMASK.
    0xc000_0080..=0xc000_0084,
    // IA32_FS_BASE, IA32_GS_BASE, IA32_KERNEL_GS_BASE, IA32_TSC_AUX.
    0xc000_0100..=0xc000_0103,
];

/// Whether Linux writes `msr` straight to the hardware.
pub fn linux_writes_directly(msr: u32) -> bool {
    LINUX_WRITABLE.iter().any(|r| r.contains(&msr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_paths_pass_and_what_reaches_other_cores_does_not() {
        for msr in [
            0x48,
            0x6e0,
            0x80b,
            0x838,
            0xc000_0100,
            0xc000_0102,
            0x277,
            0xc000_0082,
        ] {
            assert!(linux_writes_directly(msr), "{msr:#x}");
        }
        // Microcode update, frequency, clock modulation, MISC_ENABLE, turbo, energy bias,
        // power control, MTRRs, a machine-check bank, package power limit, uncore ratio,
        // HWP enable, TSX control, SMRR.
        for msr in [
            0x79,
            0x199,
            0x19a,
            0x1a0,
            0x1ad,
            0x1b0,
            0x1fc,
            0x200,
            0x2ff,
            0x401,
            0x610,
            0x620,
            0x770,
            0x122,
            0x1f2,
            0xc000_0000,
        ] {
            assert!(!linux_writes_directly(msr), "{msr:#x}");
        }
    }
}
