//! What a guest sees through CPUID. Every CPUID in VMX non-root exits; the hypervisor
//! executes it on the real CPU and passes the result through this policy:
//! - VMX is hidden (no nested virtualization);
//! - the "hypervisor present" bit is set and leaf 0x4000_0000 names Bulkhead;
//! - FSRM (fast short REP MOVSB) is hidden where fast strings are disabled in
//!   IA32_MISC_ENABLE, which some emulated CPUs report inconsistently and which makes
//!   Linux hang in its string routines.

/// The four CPUID output registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidRegs {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// First hypervisor leaf.
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// Highest hypervisor leaf Bulkhead answers.
pub const HYPERVISOR_LEAF_MAX: u32 = 0x4000_0001;
/// Vendor signature in EBX, ECX, EDX of leaf 0x4000_0000.
pub const SIGNATURE: &[u8; 12] = b"BulkheadHV\0\0";

const LEAF1_ECX_VMX: u32 = 1 << 5;
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
const LEAF7_EDX_FSRM: u32 = 1 << 4;

/// Facts about the host the policy depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// IA32_MISC_ENABLE bit 0 (fast-string operations enabled).
    pub fast_strings_enabled: bool,
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
        7 if subleaf == 0 && !host.fast_strings_enabled => r.edx &= !LEAF7_EDX_FSRM,
        HYPERVISOR_LEAF => {
            let word = |i: usize| {
                u32::from_le_bytes([
                    SIGNATURE[i],
                    SIGNATURE[i + 1],
                    SIGNATURE[i + 2],
                    SIGNATURE[i + 3],
                ])
            };
            r = CpuidRegs {
                eax: HYPERVISOR_LEAF_MAX,
                ebx: word(0),
                ecx: word(4),
                edx: word(8),
            };
        }
        0x4000_0001..=0x4000_00ff => r = CpuidRegs::default(),
        _ => {}
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: HostFacts = HostFacts {
        fast_strings_enabled: true,
    };
    const SLOW: HostFacts = HostFacts {
        fast_strings_enabled: false,
    };

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
