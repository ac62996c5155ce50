//! Extended page tables (SDM Vol. 3C, 29.3): a builder for a partition's 4-level EPT
//! and a software walk used to check what a guest-physical address maps to.
//!
//! The builder does not touch memory itself; `TableMemory` supplies zeroed 4 KiB
//! tables and entry access (the image backs it with hypervisor RAM, tests with a
//! vector). Mappings never overlap: mapping a page that is already mapped is an error,
//! so a config mistake cannot silently alias two partitions' memory.

use core::fmt;

use bitflags::bitflags;

use crate::memory::addr::{GuestPhysAddr, HostPhysAddr, PAGE_1G, PAGE_2M, PAGE_4K};

bitflags! {
    /// Access rights of an EPT entry.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Perms: u64 {
        const READ = 1 << 0;
        const WRITE = 1 << 1;
        const EXECUTE = 1 << 2;
        const RWX = Self::READ.bits() | Self::WRITE.bits() | Self::EXECUTE.bits();
    }
}

/// EPT memory types (SDM 29.3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MemType {
    Uncacheable = 0,
    WriteCombining = 1,
    WriteThrough = 4,
    WriteProtected = 5,
    WriteBack = 6,
}

impl MemType {
    fn from_bits(bits: u64) -> Option<Self> {
        match bits {
            0 => Some(Self::Uncacheable),
            1 => Some(Self::WriteCombining),
            4 => Some(Self::WriteThrough),
            5 => Some(Self::WriteProtected),
            6 => Some(Self::WriteBack),
            _ => None,
        }
    }
}

const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const LARGE: u64 = 1 << 7;
const IGNORE_PAT: u64 = 1 << 6;
const MEMTYPE_SHIFT: u32 = 3;

/// Storage for page-table pages.
pub trait TableMemory {
    /// A new zeroed 4 KiB table, or `None` when out of memory.
    fn alloc_table(&mut self) -> Option<HostPhysAddr>;
    /// Reads entry `index` (0..512) of the table at `table`.
    fn read(&self, table: HostPhysAddr, index: usize) -> u64;
    /// Writes entry `index` (0..512) of the table at `table`.
    fn write(&mut self, table: HostPhysAddr, index: usize, value: u64);
}

/// Why a mapping was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EptError {
    /// Address or size not 4 KiB aligned.
    Unaligned { gpa: u64, size: u64 },
    /// The range wraps or leaves the physical address space.
    OutOfRange { gpa: u64, size: u64 },
    /// A page in the range is already mapped.
    AlreadyMapped { gpa: u64 },
    /// No memory left for page tables.
    OutOfTables,
}

impl fmt::Display for EptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unaligned { gpa, size } => {
                write!(f, "EPT: {gpa:#x} + {size:#x} is not 4 KiB aligned")
            }
            Self::OutOfRange { gpa, size } => {
                write!(
                    f,
                    "EPT: {gpa:#x} + {size:#x} leaves the physical address space"
                )
            }
            Self::AlreadyMapped { gpa } => write!(f, "EPT: {gpa:#x} is already mapped"),
            Self::OutOfTables => f.write_str("EPT: out of memory for page tables"),
        }
    }
}

/// Result of a software walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub hpa: HostPhysAddr,
    pub perms: Perms,
    pub mem_type: MemType,
    pub page_size: u64,
}

/// One partition's EPT hierarchy.
#[derive(Debug)]
pub struct Ept<M: TableMemory> {
    root: HostPhysAddr,
    mem: M,
    allow_1g: bool,
}

fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * level)) & 0x1ff) as usize
}

impl<M: TableMemory> Ept<M> {
    /// An empty hierarchy. `allow_1g` permits 1 GiB leaves (when the CPU has them).
    pub fn new(mut mem: M, allow_1g: bool) -> Result<Self, EptError> {
        let root = mem.alloc_table().ok_or(EptError::OutOfTables)?;
        Ok(Self {
            root,
            mem,
            allow_1g,
        })
    }

    /// The EPT pointer for the VMCS: write-back paging structures, 4-level walk.
    pub fn eptp(&self) -> u64 {
        self.root.as_u64() | (3 << 3) | MemType::WriteBack as u64
    }

    /// Maps `size` bytes at `gpa` to `hpa`, using the largest pages alignment allows.
    pub fn map(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: u64,
        perms: Perms,
        mem_type: MemType,
    ) -> Result<(), EptError> {
        let (g, h) = (gpa.as_u64(), hpa.as_u64());
        if !gpa.is_aligned(PAGE_4K) || !hpa.is_aligned(PAGE_4K) || !size.is_multiple_of(PAGE_4K) {
            return Err(EptError::Unaligned { gpa: g, size });
        }
        if gpa.checked_add(size).is_none() || hpa.checked_add(size).is_none() {
            return Err(EptError::OutOfRange { gpa: g, size });
        }
        // Refuse before changing anything, so a failed call leaves the tables as they were.
        if let Some(gpa) = self.first_mapped(g, g + size) {
            return Err(EptError::AlreadyMapped { gpa });
        }
        let leaf_bits = perms.bits() | ((mem_type as u64) << MEMTYPE_SHIFT) | IGNORE_PAT;
        let mut off = 0;
        while off < size {
            let (ga, ha, left) = (g + off, h + off, size - off);
            let page = if self.allow_1g && ga % PAGE_1G == 0 && ha % PAGE_1G == 0 && left >= PAGE_1G
            {
                PAGE_1G
            } else if ga % PAGE_2M == 0 && ha % PAGE_2M == 0 && left >= PAGE_2M {
                PAGE_2M
            } else {
                PAGE_4K
            };
            let leaf_level = match page {
                PAGE_1G => 2,
                PAGE_2M => 1,
                _ => 0,
            };
            let mut table = self.root;
            for level in (leaf_level + 1..=3).rev() {
                let i = index(ga, level);
                let entry = self.mem.read(table, i);
                table = if entry & Perms::RWX.bits() == 0 {
                    let next = self.mem.alloc_table().ok_or(EptError::OutOfTables)?;
                    self.mem.write(table, i, next.as_u64() | Perms::RWX.bits());
                    next
                } else if entry & LARGE != 0 {
                    return Err(EptError::AlreadyMapped { gpa: ga });
                } else {
                    HostPhysAddr::new(entry & ADDR_MASK).ok_or(EptError::OutOfTables)?
                };
            }
            let large = if leaf_level > 0 { LARGE } else { 0 };
            self.mem
                .write(table, index(ga, leaf_level), ha | leaf_bits | large);
            off += page;
        }
        Ok(())
    }

    /// The lowest mapped address in `start..end`, skipping absent subtrees whole.
    fn first_mapped(&self, start: u64, end: u64) -> Option<u64> {
        let mut a = start;
        'next: while a < end {
            let mut table = self.root;
            for level in (0..=3).rev() {
                let entry = self.mem.read(table, index(a, level));
                if entry & Perms::RWX.bits() == 0 {
                    let span = 1u64 << (12 + 9 * level);
                    a = (a & !(span - 1)) + span;
                    continue 'next;
                }
                if level == 0 || entry & LARGE != 0 {
                    return Some(a);
                }
                table = HostPhysAddr::new(entry & ADDR_MASK)?;
            }
        }
        None
    }

    /// Walks the tables for `gpa`, as the CPU would.
    pub fn translate(&self, gpa: GuestPhysAddr) -> Option<Translation> {
        let g = gpa.as_u64();
        let mut table = self.root;
        for level in (0..=3).rev() {
            let entry = self.mem.read(table, index(g, level));
            if entry & Perms::RWX.bits() == 0 {
                return None;
            }
            let leaf = level == 0 || (level <= 2 && entry & LARGE != 0);
            if leaf {
                let page_size = 1u64 << (12 + 9 * level);
                let base = entry & ADDR_MASK & !(page_size - 1);
                return Some(Translation {
                    hpa: HostPhysAddr::new(base | (g & (page_size - 1)))?,
                    perms: Perms::from_bits_truncate(entry),
                    mem_type: MemType::from_bits((entry >> MEMTYPE_SHIFT) & 7)?,
                    page_size,
                });
            }
            table = HostPhysAddr::new(entry & ADDR_MASK)?;
        }
        None
    }

    /// The backing memory (for tests and statistics).
    pub fn memory(&self) -> &M {
        &self.mem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Tables in a vector; table `n` lives at fake address `(n + 1) * 4096`.
    #[derive(Default)]
    struct VecMemory {
        tables: Vec<[u64; 512]>,
        limit: usize,
    }

    impl TableMemory for VecMemory {
        fn alloc_table(&mut self) -> Option<HostPhysAddr> {
            if self.tables.len() >= self.limit {
                return None;
            }
            self.tables.push([0; 512]);
            HostPhysAddr::new(self.tables.len() as u64 * 4096)
        }
        fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
            self.tables[(table.as_u64() / 4096 - 1) as usize][index]
        }
        fn write(&mut self, table: HostPhysAddr, index: usize, value: u64) {
            self.tables[(table.as_u64() / 4096 - 1) as usize][index] = value;
        }
    }

    fn ept(allow_1g: bool) -> Ept<VecMemory> {
        Ept::new(
            VecMemory {
                tables: Vec::new(),
                limit: 10_000,
            },
            allow_1g,
        )
        .unwrap()
    }

    fn g(a: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(a).unwrap()
    }
    fn h(a: u64) -> HostPhysAddr {
        HostPhysAddr::new(a).unwrap()
    }

    #[test]
    fn identity_map_uses_large_pages_where_aligned() {
        let mut e = ept(true);
        // 4 KiB head, then 2 MiB pages, then a 1 GiB page, then a 4 KiB tail.
        let base = PAGE_1G - PAGE_2M - PAGE_4K;
        let size = PAGE_4K + PAGE_2M + PAGE_1G + PAGE_4K;
        e.map(g(base), h(base), size, Perms::RWX, MemType::WriteBack)
            .unwrap();
        assert_eq!(e.translate(g(base)).unwrap().page_size, PAGE_4K);
        assert_eq!(e.translate(g(base + PAGE_4K)).unwrap().page_size, PAGE_2M);
        let t = e.translate(g(PAGE_1G + 0x1234)).unwrap();
        assert_eq!((t.page_size, t.hpa.as_u64()), (PAGE_1G, PAGE_1G + 0x1234));
        assert_eq!(t.mem_type, MemType::WriteBack);
        assert_eq!(e.translate(g(2 * PAGE_1G)).unwrap().page_size, PAGE_4K);
        assert!(e.translate(g(2 * PAGE_1G + PAGE_4K)).is_none());
        assert!(e.translate(g(base - 1)).is_none());
    }

    #[test]
    fn no_1g_pages_when_the_cpu_lacks_them() {
        let mut e = ept(false);
        e.map(g(0), h(0), PAGE_1G, Perms::RWX, MemType::WriteBack)
            .unwrap();
        assert_eq!(e.translate(g(0x1000)).unwrap().page_size, PAGE_2M);
    }

    #[test]
    fn overlap_is_refused_and_leaves_tables_unchanged() {
        let mut e = ept(false);
        e.map(
            g(0x20_0000),
            h(0x20_0000),
            PAGE_2M,
            Perms::RWX,
            MemType::WriteBack,
        )
        .unwrap();
        let before = e.memory().tables.len();
        let err = e.map(
            g(0x1f_f000),
            h(0x1f_f000),
            2 * PAGE_4K,
            Perms::READ,
            MemType::WriteBack,
        );
        assert_eq!(err, Err(EptError::AlreadyMapped { gpa: 0x20_0000 }));
        assert_eq!(e.memory().tables.len(), before);
        assert!(e.translate(g(0x1f_f000)).is_none());
    }

    #[test]
    fn rejects_unaligned_and_out_of_range() {
        let mut e = ept(false);
        assert!(matches!(
            e.map(
                g(0x1001),
                h(0x1000),
                PAGE_4K,
                Perms::RWX,
                MemType::WriteBack
            ),
            Err(EptError::Unaligned { .. })
        ));
        assert!(matches!(
            e.map(
                g((1 << 52) - PAGE_4K),
                h(0),
                2 * PAGE_4K,
                Perms::RWX,
                MemType::WriteBack
            ),
            Err(EptError::OutOfRange { .. })
        ));
    }

    #[test]
    fn out_of_tables_is_an_error_not_a_panic() {
        let mut e = Ept::new(
            VecMemory {
                tables: Vec::new(),
                limit: 2,
            },
            false,
        )
        .unwrap();
        assert_eq!(
            e.map(g(0), h(0), PAGE_4K, Perms::RWX, MemType::WriteBack),
            Err(EptError::OutOfTables)
        );
    }

    #[test]
    fn eptp_encodes_wb_and_4_levels() {
        let e = ept(false);
        assert_eq!(e.eptp() & 0xfff, 0x1e);
    }

    proptest! {
        /// Every page of every mapped region translates to itself with the given rights;
        /// pages outside all regions do not translate.
        #[test]
        fn identity_regions_translate_exactly(
            regions in proptest::collection::vec((0u64..2048, 1u64..600), 1..5),
            probes in proptest::collection::vec(0u64..3000, 50),
        ) {
            let mut e = ept(true);
            let mut mapped: Vec<(u64, u64)> = Vec::new();
            for (start, pages) in regions {
                let (a, len) = (start * PAGE_4K * 64, pages * PAGE_4K);
                let overlaps = mapped.iter().any(|&(b, l)| a < b + l && b < a + len);
                let r = e.map(g(a), h(a), len, Perms::RWX, MemType::WriteBack);
                prop_assert_eq!(r.is_ok(), !overlaps);
                if r.is_ok() { mapped.push((a, len)); }
            }
            for p in probes {
                let a = p * PAGE_4K * 47 + 0x123;
                let inside = mapped.iter().any(|&(b, l)| a >= b && a < b + l);
                match e.translate(g(a)) {
                    Some(t) => {
                        prop_assert!(inside);
                        prop_assert_eq!(t.hpa.as_u64(), a);
                        prop_assert_eq!(t.perms, Perms::RWX);
                    }
                    None => prop_assert!(!inside),
                }
            }
        }
    }
}
