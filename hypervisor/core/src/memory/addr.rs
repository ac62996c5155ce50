//! Address newtypes. A host-physical address and a guest-physical address are different
//! things even where EPT maps one to the other identically; the types keep them apart.

use core::fmt;

/// Highest physical address width the hypervisor supports (bits).
pub const MAX_PHYS_BITS: u32 = 52;

/// Page sizes the page-table builders use.
pub const PAGE_4K: u64 = 0x1000;
/// 2 MiB large page.
pub const PAGE_2M: u64 = 0x20_0000;
/// 1 GiB huge page.
pub const PAGE_1G: u64 = 0x4000_0000;

macro_rules! phys_addr {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " address.")]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u64);

        impl $name {
            /// Accepts addresses that fit the architectural physical-address width.
            pub const fn new(addr: u64) -> Option<Self> {
                if addr >> MAX_PHYS_BITS == 0 {
                    Some(Self(addr))
                } else {
                    None
                }
            }

            /// The raw address.
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }

            /// The address `bytes` further on, if it stays valid.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(a) => Self::new(a),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

phys_addr!(HostPhysAddr, "host-physical");
phys_addr!(GuestPhysAddr, "guest-physical");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_addresses_beyond_52_bits() {
        assert!(HostPhysAddr::new(1 << 52).is_none());
        assert_eq!(
            HostPhysAddr::new(0x1000).map(HostPhysAddr::as_u64),
            Some(0x1000)
        );
        assert!(GuestPhysAddr::new((1 << 52) - 1).is_some());
        assert!(
            GuestPhysAddr::new((1 << 52) - 1)
                .and_then(|a| a.checked_add(1))
                .is_none()
        );
    }

    #[test]
    fn alignment() {
        let a = HostPhysAddr::new(0x20_0000).unwrap();
        assert!(a.is_aligned(PAGE_2M));
        assert!(!a.checked_add(PAGE_4K).unwrap().is_aligned(PAGE_2M));
    }
}
