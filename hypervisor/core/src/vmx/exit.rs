//! VM-exit decoding (SDM Vol. 3C, Appendix C "VMX Basic Exit Reasons") and per-CPU
//! exit statistics.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Number of basic exit reasons the tables cover (0..=79).
pub const EXIT_REASON_COUNT: usize = 80;

const NAMES: [Option<&str>; EXIT_REASON_COUNT] = {
    let mut n = [None; EXIT_REASON_COUNT];
    n[0] = Some("EXCEPTION_NMI");
    n[1] = Some("EXTERNAL_INTERRUPT");
    n[2] = Some("TRIPLE_FAULT");
    n[3] = Some("INIT");
    n[4] = Some("SIPI");
    n[5] = Some("IO_SMI");
    n[6] = Some("OTHER_SMI");
    n[7] = Some("INTERRUPT_WINDOW");
    n[8] = Some("NMI_WINDOW");
    n[9] = Some("TASK_SWITCH");
    n[10] = Some("CPUID");
    n[11] = Some("GETSEC");
    n[12] = Some("HLT");
    n[13] = Some("INVD");
    n[14] = Some("INVLPG");
    n[15] = Some("RDPMC");
    n[16] = Some("RDTSC");
    n[17] = Some("RSM");
    n[18] = Some("VMCALL");
    n[19] = Some("VMCLEAR");
    n[20] = Some("VMLAUNCH");
    n[21] = Some("VMPTRLD");
    n[22] = Some("VMPTRST");
    n[23] = Some("VMREAD");
    n[24] = Some("VMRESUME");
    n[25] = Some("VMWRITE");
    n[26] = Some("VMXOFF");
    n[27] = Some("VMXON");
    n[28] = Some("CR_ACCESS");
    n[29] = Some("DR_ACCESS");
    n[30] = Some("IO_INSTRUCTION");
    n[31] = Some("RDMSR");
    n[32] = Some("WRMSR");
    n[33] = Some("ENTRY_FAIL_GUEST_STATE");
    n[34] = Some("ENTRY_FAIL_MSR_LOADING");
    n[36] = Some("MWAIT");
    n[37] = Some("MONITOR_TRAP_FLAG");
    n[39] = Some("MONITOR");
    n[40] = Some("PAUSE");
    n[41] = Some("ENTRY_FAIL_MACHINE_CHECK");
    n[43] = Some("TPR_BELOW_THRESHOLD");
    n[44] = Some("APIC_ACCESS");
    n[45] = Some("VIRTUALIZED_EOI");
    n[46] = Some("GDTR_IDTR_ACCESS");
    n[47] = Some("LDTR_TR_ACCESS");
    n[48] = Some("EPT_VIOLATION");
    n[49] = Some("EPT_MISCONFIG");
    n[50] = Some("INVEPT");
    n[51] = Some("RDTSCP");
    n[52] = Some("PREEMPTION_TIMER");
    n[53] = Some("INVVPID");
    n[54] = Some("WBINVD");
    n[55] = Some("XSETBV");
    n[56] = Some("APIC_WRITE");
    n[57] = Some("RDRAND");
    n[58] = Some("INVPCID");
    n[59] = Some("VMFUNC");
    n[60] = Some("ENCLS");
    n[61] = Some("RDSEED");
    n[62] = Some("PML_FULL");
    n[63] = Some("XSAVES");
    n[64] = Some("XRSTORS");
    n[65] = Some("PCONFIG");
    n[66] = Some("SPP_EVENT");
    n[67] = Some("UMWAIT");
    n[68] = Some("TPAUSE");
    n[69] = Some("LOADIWKEY");
    n[70] = Some("ENCLV");
    n[72] = Some("ENQCMD_PASID_FAIL");
    n[73] = Some("ENQCMDS_PASID_FAIL");
    n[74] = Some("BUS_LOCK");
    n[75] = Some("INSTRUCTION_TIMEOUT");
    n[76] = Some("SEAMCALL");
    n[77] = Some("TDCALL");
    n[78] = Some("RDMSRLIST");
    n[79] = Some("WRMSRLIST");
    n
};

/// Basic exit reasons the hypervisor dispatches on by name.
pub mod reason {
    pub const EXCEPTION_NMI: u16 = 0;
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    pub const TRIPLE_FAULT: u16 = 2;
    pub const INIT: u16 = 3;
    pub const SIPI: u16 = 4;
    pub const CPUID: u16 = 10;
    pub const HLT: u16 = 12;
    pub const INVD: u16 = 13;
    pub const VMCALL: u16 = 18;
    pub const CR_ACCESS: u16 = 28;
    pub const IO_INSTRUCTION: u16 = 30;
    pub const RDMSR: u16 = 31;
    pub const WRMSR: u16 = 32;
    pub const ENTRY_FAIL_GUEST_STATE: u16 = 33;
    pub const EPT_VIOLATION: u16 = 48;
    pub const EPT_MISCONFIG: u16 = 49;
    pub const PREEMPTION_TIMER: u16 = 52;
    pub const XSETBV: u16 = 55;

    /// The VMX instructions: each exits in VMX non-root operation whatever the guest's
    /// privilege level (the exit comes before the CPU's own CPL check), so a user-space
    /// program reaches the hypervisor with them (SDM Vol. 3C, 26.1.2).
    pub const VMX_INSTRUCTIONS: [u16; 12] = [
        19, // VMCLEAR
        20, // VMLAUNCH
        21, // VMPTRLD
        22, // VMPTRST
        23, // VMREAD
        24, // VMRESUME
        25, // VMWRITE
        26, // VMXOFF
        27, // VMXON
        50, // INVEPT
        53, // INVVPID
        59, // VMFUNC
    ];
}

/// What a guest gets for an exit that a CPU without the instruction's feature would fault:
/// the hypervisor hides VMX from its guests (CPUID), so a VMX instruction raises #UD in the
/// guest, as on a CPU without VMX, and only the program that executed it is affected.
pub const fn undefined_in_guest(basic: u16) -> bool {
    let mut i = 0;
    while i < reason::VMX_INSTRUCTIONS.len() {
        if reason::VMX_INSTRUCTIONS[i] == basic {
            return true;
        }
        i += 1;
    }
    false
}

/// The 32-bit "exit reason" VMCS field, decoded (SDM Vol. 3C, 25.9.1).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ExitReason(u32);

impl ExitReason {
    /// Wraps the raw field value.
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw field value.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Bits 15:0, the basic exit reason.
    pub const fn basic(self) -> u16 {
        self.0 as u16
    }

    /// Bit 31: the exit happened because VM entry failed.
    pub const fn entry_failed(self) -> bool {
        self.0 & (1 << 31) != 0
    }

    /// Bit 29: the exit came from VMX root operation (dual-monitor SMM).
    pub const fn from_root(self) -> bool {
        self.0 & (1 << 29) != 0
    }

    /// The SDM's name for the basic reason, or `None` for reserved values.
    pub fn name(self) -> Option<&'static str> {
        NAMES.get(usize::from(self.basic())).copied().flatten()
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name)?,
            None => write!(f, "RESERVED_{}", self.basic())?,
        }
        if self.entry_failed() {
            f.write_str(" (VM entry failure)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExitReason({self} raw={:#x})", self.0)
    }
}

/// Exit counters of one CPU, per basic reason. Written by the CPU that takes the exits,
/// readable from any CPU.
#[derive(Debug)]
pub struct ExitCounters {
    counts: [AtomicU64; EXIT_REASON_COUNT],
    other: AtomicU64,
}

impl ExitCounters {
    /// All counters at zero.
    pub const fn new() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; EXIT_REASON_COUNT],
            other: AtomicU64::new(0),
        }
    }

    /// Counts one exit.
    pub fn record(&self, reason: ExitReason) {
        let counter = self
            .counts
            .get(usize::from(reason.basic()))
            .unwrap_or(&self.other);
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Exits counted for one basic reason.
    pub fn count(&self, basic: u16) -> u64 {
        self.counts
            .get(usize::from(basic))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Total of all exits.
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.other.load(Ordering::Relaxed)
    }

    /// Reasons with a non-zero count, in reason order, with their counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (ExitReason, u64)> + '_ {
        self.counts.iter().enumerate().filter_map(|(i, c)| {
            let n = c.load(Ordering::Relaxed);
            (n != 0).then(|| (ExitReason::from_raw(i as u32), n))
        })
    }
}

impl Default for ExitCounters {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn decodes_names_and_flags() {
        assert_eq!(ExitReason::from_raw(18).to_string(), "VMCALL");
        assert_eq!(ExitReason::from_raw(48).name(), Some("EPT_VIOLATION"));
        let failed = ExitReason::from_raw((1 << 31) | 33);
        assert!(failed.entry_failed());
        assert_eq!(failed.basic(), 33);
        assert_eq!(
            failed.to_string(),
            "ENTRY_FAIL_GUEST_STATE (VM entry failure)"
        );
        assert_eq!(ExitReason::from_raw(35).to_string(), "RESERVED_35");
        assert_eq!(ExitReason::from_raw(0xffff).to_string(), "RESERVED_65535");
    }

    #[test]
    fn vmx_instructions_are_undefined_in_guests() {
        for r in reason::VMX_INSTRUCTIONS {
            let name = ExitReason::from_raw(u32::from(r)).name().unwrap();
            assert!(
                name.starts_with("VM") || name.starts_with("INV"),
                "{r}: {name}"
            );
            assert!(undefined_in_guest(r));
        }
        for r in [reason::CPUID, reason::VMCALL, reason::HLT, reason::WRMSR] {
            assert!(!undefined_in_guest(r));
        }
    }

    #[test]
    fn named_constants_match_table() {
        for (code, name) in [
            (reason::VMCALL, "VMCALL"),
            (reason::CPUID, "CPUID"),
            (reason::TRIPLE_FAULT, "TRIPLE_FAULT"),
            (reason::IO_INSTRUCTION, "IO_INSTRUCTION"),
            (reason::INVD, "INVD"),
            (reason::EPT_VIOLATION, "EPT_VIOLATION"),
            (reason::XSETBV, "XSETBV"),
        ] {
            assert_eq!(ExitReason::from_raw(u32::from(code)).name(), Some(name));
        }
    }

    #[test]
    fn counts_per_reason_including_out_of_table() {
        let c = ExitCounters::new();
        c.record(ExitReason::from_raw(18));
        c.record(ExitReason::from_raw(18));
        c.record(ExitReason::from_raw(10));
        c.record(ExitReason::from_raw(500));
        assert_eq!(c.count(18), 2);
        assert_eq!(c.count(10), 1);
        assert_eq!(c.total(), 4);
        let v: std::vec::Vec<_> = c.nonzero().map(|(r, n)| (r.basic(), n)).collect();
        assert_eq!(v, [(10, 1), (18, 2)]);
    }
}
