//! What a guest sees through CPUID. Every CPUID in VMX non-root exits; the hypervisor
//! executes it on the real CPU and passes the result through this policy:
//! - VMX is hidden (no nested virtualization);
//! - the "hypervisor present" bit is set and leaf 0x4000_0000 names Bulkhead;
//! - FSRM (fast short REP MOVSB) is hidden where fast strings are disabled in
//!   IA32_MISC_ENABLE, which some emulated CPUs report inconsistently and which makes
//!   Linux hang in its string routines;
//! - INVPCID and XSAVES are hidden where VMX does not let the guest execute them (they
//!   would raise #UD);
//! - for Linux, a second hypervisor leaf at 0x4000_0100 carries KVM's signature with no
//!   paravirtual feature at all (leaf 0x4000_0101 is zero). Stock Linux keeps the x2APIC
//!   the hypervisor enabled, without interrupt remapping, only under a hypervisor it
//!   knows (`x86_init.hyper.x2apic_available`); otherwise it falls back to the MMIO
//!   xAPIC, whose ICR could not be filtered. Linux scans the hypervisor leaves in steps of
//!   0x100, as it does on KVM hosts that show Hyper-V's leaves first; with no feature bit
//!   set it uses none of KVM's paravirtual interfaces, only the x2APIC in physical
//!   destination mode.

pub use bulkhead_abi::cpuid::{HYPERVISOR_LEAF, SIGNATURE};

/// The four CPUID output registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidRegs {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Highest hypervisor leaf Bulkhead answers.
pub const HYPERVISOR_LEAF_MAX: u32 = 0x4000_0001;
/// The KVM-compatible leaf shown to Linux.
pub const KVM_COMPAT_LEAF: u32 = 0x4000_0100;
/// KVM's signature (EBX, ECX, EDX).
pub const KVM_SIGNATURE: &[u8; 12] = b"KVMKVMKVM\0\0\0";

const LEAF1_ECX_VMX: u32 = 1 << 5;
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
const LEAF7_EDX_FSRM: u32 = 1 << 4;
const LEAF7_EBX_INVPCID: u32 = 1 << 10;
const LEAFD1_EAX_XSAVES: u32 = 1 << 3;

/// Facts about the host the policy depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// IA32_MISC_ENABLE bit 0 (fast-string operations enabled).
    pub fast_strings_enabled: bool,
    /// The guest is Linux: it gets the KVM-compatible leaf (see the module comment).
    pub kvm_compat_leaf: bool,
    /// VMX lets the guest execute INVPCID ("enable INVPCID"); otherwise it is hidden.
    pub invpcid: bool,
    /// VMX lets the guest execute XSAVES/XRSTORS; otherwise they are hidden.
    pub xsaves: bool,
    /// The TSC frequency the hypervisor measured, in Hz (0: unknown). Leaves 15h and 16h
    /// then state it (see [`tsc_leaves`]).
    pub tsc_hz: u64,
}

/// The guest-visible result of CPUID(`leaf`, `subleaf`) given the host's `real` result.
/// Hypervisor leaves are answered without consulting `real`.
pub fn sanitize(leaf: u32, subleaf: u32, real: CpuidRegs, host: HostFacts) -> CpuidRegs {
    let mut r = real;
    match leaf {
        1 => {
            r.ecx &= !LEAF1_ECX_VMX;
            r.ecx |= LEAF1_ECX_HYPERVISOR;
        }
        7 if subleaf == 0 => {
            if !host.fast_strings_enabled {
                r.edx &= !LEAF7_EDX_FSRM;
            }
            if !host.invpcid {
                r.ebx &= !LEAF7_EBX_INVPCID;
            }
        }
        0xd if subleaf == 1 && !host.xsaves => r.eax &= !LEAFD1_EAX_XSAVES,
        0x15 | 0x16 if host.tsc_hz != 0 => r = tsc_leaves(leaf, real, host.tsc_hz),
        HYPERVISOR_LEAF => r = signature_leaf(HYPERVISOR_LEAF_MAX, SIGNATURE),
        KVM_COMPAT_LEAF if host.kvm_compat_leaf => {
            r = signature_leaf(KVM_COMPAT_LEAF + 1, KVM_SIGNATURE);
        }
        0x4000_0001..=0x4000_ffff => r = CpuidRegs::default(),
        _ => {}
    }
    r
}

/// Leaves 15h (TSC/crystal ratio and crystal frequency) and 16h (base frequency in MHz)
/// describing a TSC of `tsc_hz`. A CPU (or an emulator) may leave the crystal frequency out
/// of leaf 15h, and Linux then takes the TSC frequency from leaf 16h's nominal base
/// frequency, which need not be the TSC's: Bochs' Ice Lake model says 1.5 GHz while its
/// TSC runs at the emulated instruction rate, and Linux's clock ran 30 times slow. The
/// hypervisor measured the TSC against the PIT at boot, so it states that: crystal =
/// TSC / ratio, ratio 1 unless the frequency does not fit leaf 15h's 32-bit field.
pub fn tsc_leaves(leaf: u32, real: CpuidRegs, tsc_hz: u64) -> CpuidRegs {
    match leaf {
        0x15 => {
            let ratio = tsc_hz.div_ceil(u64::from(u32::MAX)).max(1);
            CpuidRegs {
                eax: 1,
                ebx: ratio as u32,
                ecx: (tsc_hz / ratio) as u32,
                edx: 0,
            }
        }
        0x16 => CpuidRegs {
            eax: (tsc_hz / 1_000_000).min(0xffff) as u32,
            ..real
        },
        _ => real,
    }
}

const LEAF1_ECX_OSXSAVE: u32 = 1 << 27;
const LEAF7_ECX_OSPKE: u32 = 1 << 4;
const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_PKE: u64 = 1 << 22;

/// CPUID bits that mirror control-register bits (OSXSAVE, OSPKE) describe the CPU's current
/// CR4; the hypervisor executes CPUID with its own CR4 loaded, so these bits are set from the
/// guest's CR4 instead (a guest told OSXSAVE while its CR4 says otherwise executes XGETBV
/// and takes #UD).
pub fn reflect_guest_cr4(leaf: u32, subleaf: u32, regs: CpuidRegs, guest_cr4: u64) -> CpuidRegs {
    let mut r = regs;
    let set = |word: &mut u32, bit: u32, on: bool| {
        if on {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    };
    match (leaf, subleaf) {
        (1, _) => set(&mut r.ecx, LEAF1_ECX_OSXSAVE, guest_cr4 & CR4_OSXSAVE != 0),
        (7, 0) => set(&mut r.ecx, LEAF7_ECX_OSPKE, guest_cr4 & CR4_PKE != 0),
        _ => {}
    }
    r
}

/// A hypervisor vendor leaf: the highest leaf in EAX, the signature in EBX, ECX, EDX.
fn signature_leaf(max: u32, sig: &[u8; 12]) -> CpuidRegs {
    let word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
    CpuidRegs {
        eax: max,
        ebx: word(0),
        ecx: word(4),
        edx: word(8),
    }
}

/// XCR0 bits: x87, SSE, AVX, then the three AVX-512 components.
const XCR0_X87: u64 = 1;
const XCR0_SSE: u64 = 1 << 1;
const XCR0_AVX: u64 = 1 << 2;
const XCR0_BNDREGS: u64 = 1 << 3;
const XCR0_BNDCSR: u64 = 1 << 4;
const XCR0_AVX512: u64 = 0b111 << 5;

/// Whether XSETBV may load `value` into XCR0 on a CPU supporting `supported` (CPUID
/// leaf 0xD, subleaf 0, EDX:EAX): the rules of the SDM's XSETBV description.
pub fn xcr0_valid(value: u64, supported: u64) -> bool {
    value & XCR0_X87 != 0
        && value & !supported == 0
        && (value & XCR0_AVX == 0 || value & XCR0_SSE != 0)
        && (value & XCR0_BNDREGS != 0) == (value & XCR0_BNDCSR != 0)
        && (value & XCR0_AVX512 == 0
            || (value & XCR0_AVX512 == XCR0_AVX512 && value & XCR0_AVX != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: HostFacts = HostFacts {
        fast_strings_enabled: true,
        kvm_compat_leaf: false,
        invpcid: true,
        xsaves: true,
        tsc_hz: 0,
    };
    const SLOW: HostFacts = HostFacts {
        fast_strings_enabled: false,
        ..FAST
    };

    #[test]
    fn the_measured_tsc_frequency_is_stated_in_leaves_15h_and_16h() {
        // Bochs' Ice Lake: ratio given, crystal left out, nominal 1.5 GHz in leaf 16h.
        let leaf15 = CpuidRegs {
            eax: 2,
            ebx: 0x7d,
            ecx: 0,
            edx: 0,
        };
        let leaf16 = CpuidRegs {
            eax: 1500,
            ebx: 3900,
            ecx: 100,
            edx: 0,
        };
        let host = HostFacts {
            tsc_hz: 49_996_000,
            ..FAST
        };
        let r = sanitize(0x15, 0, leaf15, host);
        // Linux: TSC kHz = (ECX / 1000) * EBX / EAX.
        assert_eq!(
            u64::from(r.ecx / 1000) * u64::from(r.ebx) / u64::from(r.eax),
            49_996
        );
        assert_eq!(
            sanitize(0x16, 0, leaf16, host),
            CpuidRegs { eax: 49, ..leaf16 }
        );
        // A TSC beyond 4.29 GHz keeps a ratio whose product is the frequency.
        let fast = tsc_leaves(0x15, leaf15, 5_000_000_000);
        assert_eq!(u64::from(fast.ecx) * u64::from(fast.ebx), 5_000_000_000);
        // Unknown frequency: the CPU's own answer.
        assert_eq!(sanitize(0x15, 0, leaf15, FAST), leaf15);
    }

    #[test]
    fn instructions_vmx_does_not_enable_are_hidden() {
        let no = HostFacts {
            invpcid: false,
            xsaves: false,
            ..FAST
        };
        let real = CpuidRegs {
            eax: LEAFD1_EAX_XSAVES | 1,
            ebx: LEAF7_EBX_INVPCID | 1,
            ..Default::default()
        };
        assert_eq!(sanitize(7, 0, real, no).ebx, 1);
        assert_eq!(sanitize(7, 0, real, FAST).ebx, LEAF7_EBX_INVPCID | 1);
        assert_eq!(sanitize(0xd, 1, real, no).eax, 1);
        assert_eq!(
            sanitize(0xd, 0, real, no).eax,
            real.eax,
            "subleaf 0 untouched"
        );
    }

    #[test]
    fn kvm_compatible_leaf_only_for_linux() {
        let linux = HostFacts {
            kvm_compat_leaf: true,
            ..FAST
        };
        let real = CpuidRegs {
            eax: 7,
            ..Default::default()
        };
        let r = sanitize(KVM_COMPAT_LEAF, 0, real, linux);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&r.edx.to_le_bytes());
        assert_eq!(&sig, KVM_SIGNATURE);
        assert_eq!(r.eax, KVM_COMPAT_LEAF + 1);
        assert_eq!(
            sanitize(KVM_COMPAT_LEAF + 1, 0, real, linux),
            CpuidRegs::default(),
            "no KVM feature"
        );
        assert_eq!(
            sanitize(KVM_COMPAT_LEAF, 0, real, FAST),
            CpuidRegs::default()
        );
        // Our own leaf stays first.
        assert_eq!(
            sanitize(HYPERVISOR_LEAF, 0, real, linux).eax,
            HYPERVISOR_LEAF_MAX
        );
    }

    #[test]
    fn os_bits_follow_the_guest_cr4() {
        let host = CpuidRegs {
            ecx: LEAF1_ECX_OSXSAVE | 1,
            ..Default::default()
        };
        assert_eq!(reflect_guest_cr4(1, 0, host, 0).ecx, 1);
        assert_eq!(
            reflect_guest_cr4(1, 0, CpuidRegs::default(), CR4_OSXSAVE).ecx,
            LEAF1_ECX_OSXSAVE
        );
        let pk = CpuidRegs {
            ecx: LEAF7_ECX_OSPKE,
            ..Default::default()
        };
        assert_eq!(reflect_guest_cr4(7, 0, pk, 0).ecx, 0);
        assert_eq!(reflect_guest_cr4(7, 0, pk, CR4_PKE).ecx, LEAF7_ECX_OSPKE);
        assert_eq!(
            reflect_guest_cr4(7, 1, pk, 0).ecx,
            LEAF7_ECX_OSPKE,
            "subleaf 1 untouched"
        );
    }

    #[test]
    fn xcr0_rules() {
        let all = 0xe7;
        assert!(xcr0_valid(0b11, all));
        assert!(xcr0_valid(0b111, all));
        assert!(xcr0_valid(0xe7, all));
        assert!(!xcr0_valid(0b10, all), "x87 must stay set");
        assert!(!xcr0_valid(0b101, all), "AVX needs SSE");
        assert!(!xcr0_valid(0x27, all), "AVX-512 components all or none");
        assert!(!xcr0_valid(0xe3, all), "AVX-512 needs AVX");
        assert!(!xcr0_valid(0b111, 0b11), "unsupported bit");
        assert!(!xcr0_valid(0b1011, 0xff), "BNDREGS without BNDCSR");
    }

    #[test]
    fn hides_vmx_and_announces_hypervisor() {
        let real = CpuidRegs {
            ecx: LEAF1_ECX_VMX | 1,
            ..Default::default()
        };
        let r = sanitize(1, 0, real, FAST);
        assert_eq!(r.ecx & LEAF1_ECX_VMX, 0);
        assert_ne!(r.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_eq!(r.ecx & 1, 1, "other bits untouched");
    }

    #[test]
    fn fsrm_hidden_only_without_fast_strings() {
        let real = CpuidRegs {
            edx: LEAF7_EDX_FSRM | 2,
            ..Default::default()
        };
        assert_eq!(sanitize(7, 0, real, SLOW).edx, 2);
        assert_eq!(sanitize(7, 0, real, FAST).edx, LEAF7_EDX_FSRM | 2);
        assert_eq!(
            sanitize(7, 1, real, SLOW).edx,
            LEAF7_EDX_FSRM | 2,
            "subleaf 1 untouched"
        );
    }

    #[test]
    fn hypervisor_leaf_signature() {
        let r = sanitize(HYPERVISOR_LEAF, 0, CpuidRegs::default(), FAST);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&r.edx.to_le_bytes());
        assert_eq!(&sig, SIGNATURE);
        assert_eq!(r.eax, HYPERVISOR_LEAF_MAX);
        assert_eq!(
            sanitize(
                0x4000_0005,
                0,
                CpuidRegs {
                    eax: 9,
                    ..Default::default()
                },
                FAST
            ),
            CpuidRegs::default()
        );
    }
}
