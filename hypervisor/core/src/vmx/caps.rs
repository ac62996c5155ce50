//! Which VT-x features Bulkhead needs, checked against the capability MSRs, and the
//! VMCS control values derived from them (SDM Vol. 3D, Appendix A "VMX Capability
//! Reporting Facility").
//!
//! Each capability MSR reports, per control bit, whether it may be 0 (low dword clear)
//! and whether it may be 1 (high dword set). `adjust` turns the controls we want into
//! a value the CPU accepts, or names what it refuses.

use bitflags::bitflags;
use core::fmt;

/// Capability MSR numbers.
pub mod msr {
    pub const IA32_VMX_BASIC: u32 = 0x480;
    pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
    pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
    pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
    pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
    pub const IA32_VMX_MISC: u32 = 0x485;
    pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
    pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
    pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
    pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
    pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
    pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
    pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
    pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
    pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
    pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
}

bitflags! {
    /// Primary processor-based VM-execution controls (SDM 25.6.2, table 25-6).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PrimaryControls: u32 {
        const HLT_EXITING = 1 << 7;
        const UNCOND_IO_EXITING = 1 << 24;
        const USE_IO_BITMAPS = 1 << 25;
        const USE_MSR_BITMAPS = 1 << 28;
        const SECONDARY_CONTROLS = 1 << 31;
    }

    /// Secondary processor-based VM-execution controls (table 25-7).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SecondaryControls: u32 {
        const ENABLE_EPT = 1 << 1;
        const ENABLE_RDTSCP = 1 << 3;
        const VIRTUALIZE_X2APIC = 1 << 4;
        const ENABLE_VPID = 1 << 5;
        const UNRESTRICTED_GUEST = 1 << 7;
        const APIC_REGISTER_VIRT = 1 << 8;
        const ENABLE_INVPCID = 1 << 12;
        const ENABLE_XSAVES = 1 << 20;
    }

    /// VM-exit controls (table 25-14).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ExitControls: u32 {
        const HOST_ADDRESS_SPACE_64 = 1 << 9;
        const SAVE_PAT = 1 << 18;
        const LOAD_PAT = 1 << 19;
        const SAVE_EFER = 1 << 20;
        const LOAD_EFER = 1 << 21;
    }

    /// VM-entry controls (table 25-16).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct EntryControls: u32 {
        const IA32E_MODE_GUEST = 1 << 9;
        const LOAD_PAT = 1 << 14;
        const LOAD_EFER = 1 << 15;
    }

    /// Everything Bulkhead checks before it turns VMX on; a set bit in a check result
    /// means "missing".
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Feature: u32 {
        const VMX = 1 << 0;
        const X2APIC = 1 << 1;
        const VMX_ENABLED_BY_FIRMWARE = 1 << 2;
        const TRUE_CONTROLS = 1 << 3;
        const WB_VMCS = 1 << 4;
        const IO_BITMAPS = 1 << 5;
        const MSR_BITMAPS = 1 << 6;
        const SECONDARY_CONTROLS = 1 << 7;
        const EPT = 1 << 8;
        const EPT_4_LEVEL = 1 << 9;
        const EPT_WB = 1 << 10;
        const EPT_2M_PAGES = 1 << 11;
        const INVEPT = 1 << 12;
        const VPID = 1 << 13;
        const INVVPID = 1 << 14;
        const UNRESTRICTED_GUEST = 1 << 15;
        const VIRTUALIZE_X2APIC = 1 << 16;
        const RDTSCP = 1 << 17;
        const EXIT_64BIT_HOST = 1 << 18;
        const EFER_PAT_SWITCH = 1 << 19;
        const LONG_MODE_GUEST = 1 << 20;
    }
}

impl Feature {
    /// A short human name for one feature bit.
    pub fn name(self) -> &'static str {
        const NAMES: [(Feature, &str); 21] = [
            (Feature::VMX, "VMX (CPUID.1:ECX.VMX)"),
            (Feature::X2APIC, "x2APIC"),
            (
                Feature::VMX_ENABLED_BY_FIRMWARE,
                "VMX enabled in IA32_FEATURE_CONTROL",
            ),
            (Feature::TRUE_CONTROLS, "TRUE capability MSRs"),
            (Feature::WB_VMCS, "write-back VMCS memory type"),
            (Feature::IO_BITMAPS, "I/O bitmaps"),
            (Feature::MSR_BITMAPS, "MSR bitmaps"),
            (Feature::SECONDARY_CONTROLS, "secondary controls"),
            (Feature::EPT, "EPT"),
            (Feature::EPT_4_LEVEL, "EPT 4-level walk"),
            (Feature::EPT_WB, "EPT write-back memory type"),
            (Feature::EPT_2M_PAGES, "EPT 2 MiB pages"),
            (Feature::INVEPT, "INVEPT"),
            (Feature::VPID, "VPID"),
            (Feature::INVVPID, "INVVPID"),
            (Feature::UNRESTRICTED_GUEST, "unrestricted guest"),
            (Feature::VIRTUALIZE_X2APIC, "x2APIC virtualization"),
            (Feature::RDTSCP, "RDTSCP in guests"),
            (Feature::EXIT_64BIT_HOST, "64-bit host on VM exit"),
            (
                Feature::EFER_PAT_SWITCH,
                "EFER/PAT load and save on entry/exit",
            ),
            (Feature::LONG_MODE_GUEST, "IA-32e mode guests"),
        ];
        NAMES
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("unknown feature", |(_, n)| n)
    }
}

/// A set of missing features, displayed as a comma-separated list of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing(pub Feature);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, feature) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(feature.name())?;
        }
        Ok(())
    }
}

/// Raw values of the capability MSRs. When `basic` reports TRUE controls, the
/// `pin`/`primary`/`exit`/`entry` fields hold the TRUE_* MSRs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmxMsrs {
    pub basic: u64,
    pub pin: u64,
    pub primary: u64,
    pub secondary: u64,
    pub exit: u64,
    pub entry: u64,
    pub ept_vpid: u64,
    /// IA32_VMX_MISC (bits 4:0: the preemption timer counts every 2^n TSC ticks).
    pub misc: u64,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
}

/// Control values accepted by this CPU, ready for the VMCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmxControls {
    pub revision_id: u32,
    pub pin: u32,
    pub primary: u32,
    pub secondary: u32,
    pub exit: u32,
    /// Entry controls for a guest that starts outside long mode; OR in
    /// `EntryControls::IA32E_MODE_GUEST` for a 64-bit guest.
    pub entry: u32,
    /// Whether the CPU can map 1 GiB pages in EPT.
    pub ept_1g_pages: bool,
    /// If the CPU has the VMX-preemption timer: log2 of TSC ticks per timer tick.
    pub preemption_timer_shift: Option<u8>,
}

/// Pin-based control "activate VMX-preemption timer" (SDM table 25-5).
pub const PIN_PREEMPTION_TIMER: u32 = 1 << 6;

/// Adjusts `wanted` to what a capability MSR allows: bits that must be 1 are set.
/// Returns the bits of `wanted` that the CPU cannot set as `Err`.
pub fn adjust(wanted: u32, capability: u64) -> Result<u32, u32> {
    let must_be_one = capability as u32;
    let may_be_one = (capability >> 32) as u32;
    let unsupported = wanted & !may_be_one;
    if unsupported != 0 {
        Err(unsupported)
    } else {
        Ok(wanted | must_be_one)
    }
}

const BASIC_TRUE_CONTROLS: u64 = 1 << 55;
const BASIC_MEMTYPE_SHIFT: u32 = 50;
const MEMTYPE_WB: u64 = 6;

const EPT_WALK_4: u64 = 1 << 6;
const EPT_WB: u64 = 1 << 14;
const EPT_2M: u64 = 1 << 16;
const EPT_1G: u64 = 1 << 17;
const EPT_INVEPT: u64 = 1 << 20;
const VPID_INVVPID: u64 = 1 << 32;

impl VmxMsrs {
    /// Reads the capability MSRs through `read` (an MSR number to its value): the TRUE
    /// controls where IA32_VMX_BASIC says the CPU has them, the secondary controls and the
    /// EPT/VPID capabilities only where secondary controls may be 1. `None` from `read` (an
    /// MSR that could not be read) makes the result `None`.
    pub fn read_with(mut read: impl FnMut(u32) -> Option<u64>) -> Option<Self> {
        let basic = read(msr::IA32_VMX_BASIC)?;
        let has_true = basic & BASIC_TRUE_CONTROLS != 0;
        let mut pick = |plain, true_| read(if has_true { true_ } else { plain });
        let primary = pick(
            msr::IA32_VMX_PROCBASED_CTLS,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS,
        )?;
        let pin = pick(
            msr::IA32_VMX_PINBASED_CTLS,
            msr::IA32_VMX_TRUE_PINBASED_CTLS,
        )?;
        let exit = pick(msr::IA32_VMX_EXIT_CTLS, msr::IA32_VMX_TRUE_EXIT_CTLS)?;
        let entry = pick(msr::IA32_VMX_ENTRY_CTLS, msr::IA32_VMX_TRUE_ENTRY_CTLS)?;
        let has_secondary =
            (primary >> 32) as u32 & PrimaryControls::SECONDARY_CONTROLS.bits() != 0;
        let (secondary, ept_vpid) = if has_secondary {
            (
                read(msr::IA32_VMX_PROCBASED_CTLS2)?,
                read(msr::IA32_VMX_EPT_VPID_CAP)?,
            )
        } else {
            (0, 0)
        };
        Some(Self {
            basic,
            pin,
            primary,
            secondary,
            exit,
            entry,
            ept_vpid,
            misc: read(msr::IA32_VMX_MISC)?,
            cr0_fixed0: read(msr::IA32_VMX_CR0_FIXED0)?,
            cr0_fixed1: read(msr::IA32_VMX_CR0_FIXED1)?,
            cr4_fixed0: read(msr::IA32_VMX_CR4_FIXED0)?,
            cr4_fixed1: read(msr::IA32_VMX_CR4_FIXED1)?,
        })
    }

    /// Checks every feature Bulkhead relies on and computes the control values.
    pub fn check(&self) -> Result<VmxControls, Missing> {
        let mut missing = Feature::empty();
        if self.basic & BASIC_TRUE_CONTROLS == 0 {
            missing |= Feature::TRUE_CONTROLS;
        }
        if (self.basic >> BASIC_MEMTYPE_SHIFT) & 0xf != MEMTYPE_WB {
            missing |= Feature::WB_VMCS;
        }

        let primary_wanted = PrimaryControls::USE_IO_BITMAPS
            | PrimaryControls::USE_MSR_BITMAPS
            | PrimaryControls::SECONDARY_CONTROLS;
        let primary = adjust(primary_wanted.bits(), self.primary).unwrap_or_else(|bad| {
            let bad = PrimaryControls::from_bits_retain(bad);
            for (bit, feature) in [
                (PrimaryControls::USE_IO_BITMAPS, Feature::IO_BITMAPS),
                (PrimaryControls::USE_MSR_BITMAPS, Feature::MSR_BITMAPS),
                (
                    PrimaryControls::SECONDARY_CONTROLS,
                    Feature::SECONDARY_CONTROLS,
                ),
            ] {
                if bad.contains(bit) {
                    missing |= feature;
                }
            }
            0
        });
        let secondary_wanted = SecondaryControls::ENABLE_EPT
            | SecondaryControls::ENABLE_RDTSCP
            | SecondaryControls::ENABLE_VPID
            | SecondaryControls::UNRESTRICTED_GUEST;
        let secondary = adjust(secondary_wanted.bits(), self.secondary).unwrap_or_else(|bad| {
            let bad = SecondaryControls::from_bits_retain(bad);
            for (bit, feature) in [
                (SecondaryControls::ENABLE_EPT, Feature::EPT),
                (SecondaryControls::ENABLE_RDTSCP, Feature::RDTSCP),
                (SecondaryControls::ENABLE_VPID, Feature::VPID),
                (
                    SecondaryControls::UNRESTRICTED_GUEST,
                    Feature::UNRESTRICTED_GUEST,
                ),
            ] {
                if bad.contains(bit) {
                    missing |= feature;
                }
            }
            0
        });
        // Instructions a guest can execute only where VMX enables them (they #UD in VMX
        // non-root operation otherwise); used where the CPU allows, hidden from CPUID where
        // not (`cpuid::HostFacts`).
        let optional = SecondaryControls::ENABLE_INVPCID | SecondaryControls::ENABLE_XSAVES;
        let secondary = secondary | (optional.bits() & (self.secondary >> 32) as u32);
        // Needed by the partitions' x2APIC handling; checked now, enabled per guest.
        if (self.secondary >> 32) as u32 & SecondaryControls::VIRTUALIZE_X2APIC.bits() == 0 {
            missing |= Feature::VIRTUALIZE_X2APIC;
        }

        let exit_wanted = ExitControls::HOST_ADDRESS_SPACE_64
            | ExitControls::SAVE_PAT
            | ExitControls::LOAD_PAT
            | ExitControls::SAVE_EFER
            | ExitControls::LOAD_EFER;
        let exit = adjust(exit_wanted.bits(), self.exit).unwrap_or_else(|bad| {
            if bad & ExitControls::HOST_ADDRESS_SPACE_64.bits() != 0 {
                missing |= Feature::EXIT_64BIT_HOST;
            }
            if bad & !ExitControls::HOST_ADDRESS_SPACE_64.bits() != 0 {
                missing |= Feature::EFER_PAT_SWITCH;
            }
            0
        });

        let entry_wanted = EntryControls::LOAD_PAT | EntryControls::LOAD_EFER;
        let entry = adjust(entry_wanted.bits(), self.entry).unwrap_or_else(|_| {
            missing |= Feature::EFER_PAT_SWITCH;
            0
        });
        if adjust(EntryControls::IA32E_MODE_GUEST.bits(), self.entry).is_err() {
            missing |= Feature::LONG_MODE_GUEST;
        }

        let pin = adjust(0, self.pin).unwrap_or(0);

        for (bit, feature) in [
            (EPT_WALK_4, Feature::EPT_4_LEVEL),
            (EPT_WB, Feature::EPT_WB),
            (EPT_2M, Feature::EPT_2M_PAGES),
            (EPT_INVEPT, Feature::INVEPT),
            (VPID_INVVPID, Feature::INVVPID),
        ] {
            if self.ept_vpid & bit == 0 {
                missing |= feature;
            }
        }

        if !missing.is_empty() {
            return Err(Missing(missing));
        }
        Ok(VmxControls {
            revision_id: (self.basic & 0x7fff_ffff) as u32,
            pin,
            primary,
            secondary,
            exit,
            entry,
            ept_1g_pages: self.ept_vpid & EPT_1G != 0,
            preemption_timer_shift: ((self.pin >> 32) as u32 & PIN_PREEMPTION_TIMER != 0)
                .then_some((self.misc & 0x1f) as u8),
        })
    }

    /// Applies the CR0 fixed bits for VMX operation. With unrestricted guest, PE and PG
    /// may be clear in a guest; pass `guest = true` to leave them as given.
    pub fn fix_cr0(&self, value: u64, guest: bool) -> u64 {
        let mut fixed0 = self.cr0_fixed0;
        if guest {
            fixed0 &= !((1 << 0) | (1 << 31));
        }
        (value | fixed0) & self.cr0_fixed1
    }

    /// Applies the CR4 fixed bits for VMX operation (this sets CR4.VMXE).
    pub fn fix_cr4(&self, value: u64) -> u64 {
        (value | self.cr4_fixed0) & self.cr4_fixed1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_with_asks_for_the_true_and_secondary_msrs_only_where_they_exist() {
        use std::vec::Vec;
        let mut asked = Vec::new();
        let with_true = VmxMsrs::read_with(|m| {
            asked.push(m);
            Some(match m {
                msr::IA32_VMX_BASIC => BASIC_TRUE_CONTROLS,
                msr::IA32_VMX_TRUE_PROCBASED_CTLS => 1 << 63,
                other => u64::from(other),
            })
        })
        .unwrap();
        assert_eq!(with_true.pin, u64::from(msr::IA32_VMX_TRUE_PINBASED_CTLS));
        assert_eq!(
            with_true.secondary,
            u64::from(msr::IA32_VMX_PROCBASED_CTLS2)
        );
        assert_eq!(with_true.ept_vpid, u64::from(msr::IA32_VMX_EPT_VPID_CAP));
        assert!(!asked.contains(&msr::IA32_VMX_PINBASED_CTLS));
        let mut asked = Vec::new();
        let plain = VmxMsrs::read_with(|m| {
            asked.push(m);
            Some(if m == msr::IA32_VMX_BASIC {
                0
            } else {
                u64::from(m)
            })
        })
        .unwrap();
        assert_eq!(plain.primary, u64::from(msr::IA32_VMX_PROCBASED_CTLS));
        assert_eq!((plain.secondary, plain.ept_vpid), (0, 0));
        assert!(!asked.contains(&msr::IA32_VMX_PROCBASED_CTLS2));
        assert_eq!(
            VmxMsrs::read_with(|m| (m != msr::IA32_VMX_MISC).then_some(0)),
            None
        );
    }
    use std::string::ToString;

    /// Capability values of a CPU that has everything (modelled on a Skylake-era part).
    fn capable() -> VmxMsrs {
        VmxMsrs {
            basic: BASIC_TRUE_CONTROLS | (MEMTYPE_WB << BASIC_MEMTYPE_SHIFT) | 0x4,
            pin: 0x0000_007f_0000_0016,
            primary: 0xfff9_fffe_0400_6172,
            secondary: 0x0053_7fff_0000_0000,
            exit: 0x01ff_ffff_0003_6dfb,
            entry: 0x0003_ffff_0000_11fb,
            ept_vpid: 0x0f01_0673_4141,
            misc: 0x0300_01e5,
            cr0_fixed0: 0x8000_0021,
            cr0_fixed1: 0xffff_ffff,
            cr4_fixed0: 0x2000,
            cr4_fixed1: 0x3767ff,
        }
    }

    #[test]
    fn full_featured_cpu_passes_and_must_be_one_bits_are_kept() {
        let c = capable().check().expect("all features present");
        assert_eq!(c.revision_id, 4);
        assert_eq!(c.preemption_timer_shift, Some(5));
        assert_eq!(c.primary & 0x0400_6172, 0x0400_6172, "must-be-one bits set");
        assert!(c.primary & PrimaryControls::USE_MSR_BITMAPS.bits() != 0);
        assert!(c.primary & PrimaryControls::HLT_EXITING.bits() == 0);
        assert!(c.secondary & SecondaryControls::UNRESTRICTED_GUEST.bits() != 0);
        assert!(c.exit & ExitControls::LOAD_EFER.bits() != 0);
        assert!(c.entry & EntryControls::IA32E_MODE_GUEST.bits() == 0);
    }

    #[test]
    fn adjust_reports_unsupported_bits() {
        assert_eq!(adjust(0b110, 0x0000_0006_0000_0001), Ok(0b111));
        assert_eq!(adjust(0b1000, 0x0000_0006_0000_0001), Err(0b1000));
    }

    #[test]
    fn each_missing_feature_is_named() {
        let mut m = capable();
        m.secondary &= !((SecondaryControls::UNRESTRICTED_GUEST.bits() as u64) << 32);
        m.ept_vpid &= !EPT_2M;
        let err = m.check().unwrap_err();
        assert_eq!(err.0, Feature::UNRESTRICTED_GUEST | Feature::EPT_2M_PAGES);
        assert_eq!(err.to_string(), "EPT 2 MiB pages, unrestricted guest");
    }

    #[test]
    fn no_secondary_controls_at_all() {
        let mut m = capable();
        m.primary &= !((PrimaryControls::SECONDARY_CONTROLS.bits() as u64) << 32);
        m.secondary = 0;
        let err = m.check().unwrap_err();
        assert!(
            err.0
                .contains(Feature::SECONDARY_CONTROLS | Feature::EPT | Feature::VPID)
        );
    }

    #[test]
    fn cr_fixed_bits() {
        let m = capable();
        assert_eq!(m.fix_cr0(0x11, false), 0x8000_0031);
        assert_eq!(
            m.fix_cr0(0x11, true),
            0x31,
            "unrestricted guest may clear PE and PG"
        );
        assert_eq!(m.fix_cr4(0x20) & 0x2000, 0x2000, "VMXE forced on");
    }

    #[test]
    fn every_feature_has_a_name() {
        for f in Feature::all().iter() {
            assert_ne!(f.name(), "unknown feature", "{f:?}");
        }
    }
}
