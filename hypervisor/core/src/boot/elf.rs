//! A 64-bit x86 ELF executable, read into a load plan: the Linux partition's `vmlinux` and
//! the RT partition's kernel image are both loaded from one.
//!
//! The plan uses the `PT_LOAD` segments' physical addresses (`p_paddr`): a `vmlinux`'s per-CPU
//! segment has `p_vaddr` 0, so virtual addresses cannot be used, and the RT kernel is linked
//! identity-mapped. The ELF entry may be physical (`vmlinux`'s `phys_startup_64`, the RT
//! kernel's 64-bit entry) or virtual; a virtual one is translated through its segment. Every
//! header field and segment is checked against the file before the plan is returned; the
//! errors name what is wrong but not the file, which the caller knows.
//!
//! Written by hand: the plan needs only the program headers, and the checks (overlap,
//! physical range, entry in an executable segment) are the loader's, not a general ELF
//! crate's.

use core::fmt;

use crate::memory::addr::MAX_PHYS_BITS;
use crate::support::fixed::FixedList;
use crate::support::le::{le_u16, le_u32, le_u64};

/// Most `PT_LOAD` segments accepted (a kernel has four or five).
pub const MAX_SEGMENTS: usize = 16;
/// Most program headers accepted.
pub const MAX_PHDRS: usize = 64;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;

/// Why a boot module is not a loadable 64-bit x86 ELF executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    /// No ELF magic.
    NotElf,
    /// Shorter than the ELF header.
    TooShort { len: usize },
    /// Not ELFCLASS64 / little-endian / version 1.
    BadIdent { what: &'static str, found: u8 },
    /// Not an executable.
    BadType { found: u16 },
    /// Not x86-64.
    BadMachine { found: u16 },
    /// `e_phentsize` is not 56.
    BadPhentsize { found: u16 },
    /// No program headers, or more than [`MAX_PHDRS`].
    BadPhnum { found: u16 },
    /// The program headers run past the end of the file.
    PhdrsOutside { offset: u64 },
    /// A segment's file bytes run past the end of the file.
    SegmentOutside {
        index: usize,
        offset: u64,
        filesz: u64,
    },
    /// A segment's file size exceeds its memory size.
    FileszAboveMemsz { index: usize },
    /// A segment's physical range wraps or leaves the physical address space.
    BadPhysRange {
        index: usize,
        paddr: u64,
        memsz: u64,
    },
    /// Two segments overlap in physical memory.
    Overlap { first: usize, second: usize },
    /// More than [`MAX_SEGMENTS`] loadable segments.
    TooManySegments,
    /// No loadable segment.
    NoSegments,
    /// The entry point lies in no executable segment.
    EntryOutside { entry: u64 },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotElf => f.write_str("no ELF magic at 0"),
            Self::TooShort { len } => {
                write!(f, "only {len} bytes, shorter than an ELF header")
            }
            Self::BadIdent { what, found } => {
                write!(f, "not {what} (found {found})")
            }
            Self::BadType { found } => {
                write!(f, "e_type is {found}, not an executable (2)")
            }
            Self::BadMachine { found } => {
                write!(f, "e_machine is {found}, not x86-64 (62)")
            }
            Self::BadPhentsize { found } => {
                write!(f, "e_phentsize is {found}, not 56")
            }
            Self::BadPhnum { found } => write!(
                f,
                "e_phnum is {found} (need 1 to {MAX_PHDRS} program headers)"
            ),
            Self::PhdrsOutside { offset } => write!(
                f,
                "program headers at {offset:#x} run past the end of the file"
            ),
            Self::SegmentOutside {
                index,
                offset,
                filesz,
            } => write!(
                f,
                "segment {index} ({filesz:#x} bytes at file offset {offset:#x}) runs past the end of the file"
            ),
            Self::FileszAboveMemsz { index } => {
                write!(f, "segment {index} has more file bytes than memory bytes")
            }
            Self::BadPhysRange {
                index,
                paddr,
                memsz,
            } => write!(
                f,
                "segment {index} at physical {paddr:#x} + {memsz:#x} leaves the physical address space"
            ),
            Self::Overlap { first, second } => write!(
                f,
                "segments {first} and {second} overlap in physical memory"
            ),
            Self::TooManySegments => {
                write!(f, "more than {MAX_SEGMENTS} loadable segments")
            }
            Self::NoSegments => f.write_str("no loadable segment"),
            Self::EntryOutside { entry } => {
                write!(f, "entry point {entry:#x} lies in no executable segment")
            }
        }
    }
}

/// One segment to load: copy `file_offset .. file_offset + file_size` to `phys`, then zero
/// the rest up to `phys + mem_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    /// Index among the ELF program headers.
    pub index: usize,
    /// Offset of its bytes in the file.
    pub file_offset: usize,
    /// Bytes copied from the file.
    pub file_size: usize,
    /// Physical load address.
    pub phys: u64,
    /// Bytes occupied in memory (the part past `file_size` is zeroed).
    pub mem_size: u64,
}

impl Segment {
    /// One past its last physical byte.
    pub fn phys_end(&self) -> u64 {
        self.phys.saturating_add(self.mem_size)
    }

    /// Its bytes in `file` (the file it was parsed from).
    pub fn bytes<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        file.get(self.file_offset..self.file_offset.saturating_add(self.file_size))
            .unwrap_or(&[])
    }
}

/// What loading an ELF executable means.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    /// The loadable segments, sorted by physical address.
    pub segments: FixedList<Segment, MAX_SEGMENTS>,
    /// Physical address of the 64-bit entry point.
    pub entry: u64,
    /// Lowest physical address loaded.
    pub phys_start: u64,
    /// One past the highest physical address loaded.
    pub phys_end: u64,
}

impl LoadPlan {
    /// Checks `bytes` as a 64-bit x86 ELF executable and plans its loading.
    pub fn parse(bytes: &[u8]) -> Result<Self, ElfError> {
        if bytes.len() >= 4 && bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(ElfError::NotElf);
        }
        if bytes.len() < EHDR_SIZE {
            return Err(if bytes.len() < 4 {
                ElfError::NotElf
            } else {
                ElfError::TooShort { len: bytes.len() }
            });
        }
        let short = ElfError::TooShort { len: bytes.len() };
        let ident = |i: usize, want: u8, what: &'static str| {
            let found = bytes.get(i).copied().unwrap_or(0);
            if found == want {
                Ok(())
            } else {
                Err(ElfError::BadIdent { what, found })
            }
        };
        ident(4, 2, "a 64-bit ELF (EI_CLASS 2)")?;
        ident(5, 1, "little-endian (EI_DATA 1)")?;
        ident(6, 1, "ELF version 1 (EI_VERSION 1)")?;
        let e_type = le_u16(bytes, 16).ok_or(short)?;
        if e_type != ET_EXEC {
            return Err(ElfError::BadType { found: e_type });
        }
        let machine = le_u16(bytes, 18).ok_or(short)?;
        if machine != EM_X86_64 {
            return Err(ElfError::BadMachine { found: machine });
        }
        let entry = le_u64(bytes, 24).ok_or(short)?;
        let phoff = le_u64(bytes, 32).ok_or(short)?;
        let phentsize = le_u16(bytes, 54).ok_or(short)?;
        if usize::from(phentsize) != PHDR_SIZE {
            return Err(ElfError::BadPhentsize { found: phentsize });
        }
        let phnum = le_u16(bytes, 56).ok_or(short)?;
        if phnum == 0 || usize::from(phnum) > MAX_PHDRS {
            return Err(ElfError::BadPhnum { found: phnum });
        }
        let phdrs = usize::try_from(phoff)
            .ok()
            .and_then(|start| {
                let end = start.checked_add(usize::from(phnum) * PHDR_SIZE)?;
                bytes.get(start..end)
            })
            .ok_or(ElfError::PhdrsOutside { offset: phoff })?;

        let mut segments = FixedList::<Segment, MAX_SEGMENTS>::new();
        let mut exec = FixedList::<(u64, u64, u64), MAX_SEGMENTS>::new();
        for (index, ph) in phdrs.chunks_exact(PHDR_SIZE).enumerate() {
            let field = |off| le_u64(ph, off).ok_or(short);
            if le_u32(ph, 0) != Some(PT_LOAD) {
                continue;
            }
            let flags = le_u32(ph, 4).ok_or(short)?;
            let (offset, vaddr, paddr) = (field(8)?, field(16)?, field(24)?);
            let (filesz, memsz) = (field(32)?, field(40)?);
            if filesz > memsz {
                return Err(ElfError::FileszAboveMemsz { index });
            }
            let outside = ElfError::SegmentOutside {
                index,
                offset,
                filesz,
            };
            let file_offset = usize::try_from(offset).map_err(|_| outside)?;
            let file_size = usize::try_from(filesz).map_err(|_| outside)?;
            if file_offset
                .checked_add(file_size)
                .is_none_or(|end| end > bytes.len())
            {
                return Err(outside);
            }
            if paddr
                .checked_add(memsz)
                .is_none_or(|end| end > 1 << MAX_PHYS_BITS)
            {
                return Err(ElfError::BadPhysRange {
                    index,
                    paddr,
                    memsz,
                });
            }
            if memsz == 0 {
                continue;
            }
            let seg = Segment {
                index,
                file_offset,
                file_size,
                phys: paddr,
                mem_size: memsz,
            };
            if let Some(other) = segments
                .as_slice()
                .iter()
                .find(|o| o.phys < seg.phys_end() && seg.phys < o.phys_end())
            {
                return Err(ElfError::Overlap {
                    first: other.index,
                    second: index,
                });
            }
            segments.push(seg).map_err(|_| ElfError::TooManySegments)?;
            if flags & PF_X != 0 {
                exec.push((paddr, vaddr, memsz))
                    .map_err(|_| ElfError::TooManySegments)?;
            }
        }
        segments.as_mut_slice().sort_unstable_by_key(|s| s.phys);
        let (Some(first), Some(last)) = (segments.as_slice().first(), segments.as_slice().last())
        else {
            return Err(ElfError::NoSegments);
        };
        let (phys_start, phys_end) = (first.phys, last.phys_end());

        // The entry is physical (`phys_startup_64`); accept a virtual one by translating it
        // through its segment.
        let in_range = |addr: u64, base: u64, size: u64| addr >= base && addr - base < size;
        let phys_entry = exec
            .as_slice()
            .iter()
            .find(|&&(p, _, size)| in_range(entry, p, size))
            .map(|_| entry)
            .or_else(|| {
                exec.as_slice()
                    .iter()
                    .find(|&&(_, v, size)| in_range(entry, v, size))
                    .map(|&(p, v, _)| entry - v + p)
            })
            .ok_or(ElfError::EntryOutside { entry })?;
        Ok(Self {
            segments,
            entry: phys_entry,
            phys_start,
            phys_end,
        })
    }

    /// Bytes from the lowest to the highest physical address loaded.
    pub fn span(&self) -> u64 {
        self.phys_end - self.phys_start
    }
}

/// Builders of ELF-shaped bytes for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod testing {
    use std::vec;
    use std::vec::Vec;

    /// `(p_type, p_flags, offset, vaddr, paddr, filesz, memsz)`.
    pub(crate) type Phdr = (u32, u32, u64, u64, u64, u64, u64);

    /// A 64-bit x86 executable with `entry` and these program headers, `file_len` bytes.
    pub(crate) fn elf(entry: u64, phdrs: &[Phdr], file_len: usize) -> Vec<u8> {
        let mut b = vec![0u8; file_len.max(64 + 56 * phdrs.len())];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, &(t, fl, off, va, pa, fs, ms)) in phdrs.iter().enumerate() {
            let p = 64 + 56 * i;
            b[p..p + 4].copy_from_slice(&t.to_le_bytes());
            b[p + 4..p + 8].copy_from_slice(&fl.to_le_bytes());
            for (j, v) in [off, va, pa, fs, ms, 0x1000].into_iter().enumerate() {
                b[p + 8 + 8 * j..p + 16 + 8 * j].copy_from_slice(&v.to_le_bytes());
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use proptest::prelude::*;

    use super::testing::elf;
    use super::*;

    const KMAP: u64 = 0xffff_ffff_8000_0000;
    const MIB: u64 = 1 << 20;

    /// Shaped like a real kernel: text, data, per-CPU (vaddr 0), init, with bss in memsz.
    fn kernel() -> std::vec::Vec<u8> {
        elf(
            16 * MIB,
            &[
                (1, 5, 0x1000, KMAP + 16 * MIB, 16 * MIB, 0x4000, 0x4000),
                (1, 6, 0x5000, KMAP + 20 * MIB, 20 * MIB, 0x1000, 0x3000),
                (1, 6, 0x6000, 0, 21 * MIB, 0x800, 0x2000),
                (4, 4, 0x6800, 0, 0, 0x10, 0x10),
                (1, 7, 0x7000, KMAP + 22 * MIB, 22 * MIB, 0x1000, 0x8000),
            ],
            0x8000,
        )
    }

    #[test]
    fn plans_a_kernel_shaped_image() {
        let b = kernel();
        let plan = LoadPlan::parse(&b).unwrap();
        let segs = plan.segments.as_slice();
        assert_eq!(segs.len(), 4);
        assert_eq!(segs[2].phys, 21 * MIB);
        assert_eq!(segs[2].bytes(&b).len(), 0x800);
        assert_eq!(plan.entry, 16 * MIB);
        assert_eq!(plan.phys_start, 16 * MIB);
        assert_eq!(plan.phys_end, 22 * MIB + 0x8000);
        assert_eq!(plan.span(), 6 * MIB + 0x8000);
    }

    #[test]
    fn translates_a_virtual_entry() {
        let b = elf(
            KMAP + 16 * MIB + 0x40,
            &[(1, 5, 0x1000, KMAP + 16 * MIB, 16 * MIB, 0x100, 0x100)],
            0x2000,
        );
        assert_eq!(LoadPlan::parse(&b).unwrap().entry, 16 * MIB + 0x40);
    }

    #[test]
    fn errors_name_the_problem() {
        let msg = |b: &[u8]| LoadPlan::parse(b).unwrap_err().to_string();
        assert_eq!(msg(b"MZ\x90\x00"), "no ELF magic at 0");
        assert!(msg(b"\x7fELF\x02").contains("only 5 bytes"));
        let mut b = kernel();
        b[4] = 1;
        assert!(msg(&b).contains("not a 64-bit ELF"));
        let mut b = kernel();
        b[18] = 3;
        assert!(msg(&b).contains("e_machine is 3"));
        let mut b = kernel();
        b[16] = 3;
        assert!(msg(&b).contains("e_type is 3"));
        let b = elf(
            16 * MIB,
            &[(1, 5, 0x1000, 0, 16 * MIB, 0x9000, 0x9000)],
            0x2000,
        );
        assert!(msg(&b).contains("segment 0 (0x9000 bytes at file offset 0x1000) runs past"));
        let b = elf(16 * MIB, &[(1, 5, 0x100, 0, 16 * MIB, 0x20, 0x10)], 0x2000);
        assert!(msg(&b).contains("more file bytes than memory bytes"));
        let b = elf(
            16 * MIB,
            &[
                (1, 5, 0x100, 0, 16 * MIB, 0x20, 0x1000),
                (1, 5, 0x100, 0, 16 * MIB + 0x800, 0x20, 0x1000),
            ],
            0x2000,
        );
        assert_eq!(msg(&b), "segments 0 and 1 overlap in physical memory");
        let b = elf(
            16 * MIB,
            &[(1, 5, 0x100, 0, u64::MAX - 4, 0x20, 0x20)],
            0x2000,
        );
        assert!(msg(&b).contains("leaves the physical address space"));
        let b = elf(5, &[(1, 5, 0x100, 0x1000, 16 * MIB, 0x20, 0x20)], 0x2000);
        assert!(msg(&b).contains("entry point 0x5 lies in no executable segment"));
        let b = elf(5, &[(4, 5, 0x100, 0x1000, 16 * MIB, 0x20, 0x20)], 0x2000);
        assert_eq!(msg(&b), "no loadable segment");
        let mut b = kernel();
        b[32..40].copy_from_slice(&0x7f00u64.to_le_bytes());
        assert!(msg(&b).contains("program headers at 0x7f00"));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = LoadPlan::parse(&bytes);
        }

        #[test]
        fn mutated_kernels_never_panic_and_plans_stay_in_bounds(
            pokes in proptest::collection::vec((0usize..400, any::<u8>()), 1..12),
        ) {
            let mut b = kernel();
            for (off, v) in pokes {
                b[off] = v;
            }
            if let Ok(plan) = LoadPlan::parse(&b) {
                for s in plan.segments.as_slice() {
                    prop_assert!(s.file_offset + s.file_size <= b.len());
                    prop_assert!(s.phys >= plan.phys_start && s.phys_end() <= plan.phys_end);
                }
                prop_assert!(plan.segments.as_slice().windows(2).all(|w| w[0].phys_end() <= w[1].phys));
            }
        }
    }
}
