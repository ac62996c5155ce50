//! The UEFI memory map a multiboot2 loader passes on when the firmware is UEFI (the EFI memory
//! map tag, type 17), read as e820 ranges.
//!
//! GRUB also gives its own, coarser memory map tag; the firmware's map is the one with every
//! region's real kind (runtime services code and data, ACPI reclaimable memory, memory-mapped
//! I/O), so the hypervisor prefers it. The tag is the firmware's and the loader's input: its
//! descriptor size and version, every descriptor's bounds, are checked, and a map that fails a
//! check is refused whole with a reason (the caller then falls back to the loader's own map).
//!
//! Types follow the UEFI specification's table of memory types at ExitBootServices (the
//! loader has exited boot services): loader and boot-services memory and conventional
//! memory are free RAM; runtime-services memory (or any range the firmware marks
//! `EFI_MEMORY_RUNTIME`), memory-mapped I/O, PAL code and unknown types are reserved; ACPI
//! reclaimable memory and ACPI NVS keep their e820 types; unusable memory stays unusable;
//! persistent memory is e820 type 7. Ranges that touch and have one type are merged.
//!
//! Written by hand: the multiboot2 crate's reader asserts (panics) on a descriptor size or
//! version it does not expect, and no crate maps UEFI types to e820 ones.

use core::fmt;

use crate::linux::e820::{E820Entry, E820Type};

/// Bytes of the tag body before the descriptors: descriptor size and version.
const BODY_HEADER: usize = 8;
/// The descriptor version UEFI has always used.
const DESCRIPTOR_VERSION: u32 = 1;
/// Bytes of a version-1 descriptor: type, padding, physical start, virtual start, pages,
/// attribute. Firmware may use a larger stride ([`EfiMemoryMap::descriptor_size`]).
const DESCRIPTOR_BYTES: usize = 40;
/// A stride beyond this is not a memory map.
const MAX_DESCRIPTOR_BYTES: usize = 4096;
/// UEFI pages are 4 KiB.
const PAGE: u64 = 4096;
/// The attribute bit of memory the firmware needs at run time.
const ATTRIBUTE_RUNTIME: u64 = 1 << 63;
/// e820's type for persistent memory.
const E820_PERSISTENT: E820Type = E820Type(7);

/// Why an EFI memory map tag was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EfiMapError {
    /// The tag is shorter than its own header.
    Truncated,
    /// A descriptor version other than 1.
    Version(u32),
    /// A descriptor stride smaller than a descriptor, unaligned, or absurdly large.
    DescriptorSize(u32),
    /// The descriptors do not fill the tag in whole strides.
    Ragged { body: usize, stride: usize },
    /// A descriptor's range is not page-aligned or runs past the end of the address space.
    BadRange { index: usize },
}

impl fmt::Display for EfiMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated => f.write_str("EFI memory map tag shorter than its header"),
            Self::Version(v) => write!(f, "EFI memory map: descriptor version {v}, not 1"),
            Self::DescriptorSize(s) => write!(
                f,
                "EFI memory map: descriptor size {s} (at least {DESCRIPTOR_BYTES}, a multiple of 8, \
                 at most {MAX_DESCRIPTOR_BYTES})"
            ),
            Self::Ragged { body, stride } => write!(
                f,
                "EFI memory map: {body} bytes of descriptors is not a whole number of {stride}-byte \
                 descriptors"
            ),
            Self::BadRange { index } => write!(
                f,
                "EFI memory map: descriptor {index} is not page-aligned or ends past the address \
                 space"
            ),
        }
    }
}

/// One UEFI memory descriptor, as the firmware wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EfiDescriptor {
    /// `EFI_MEMORY_TYPE`.
    pub kind: u32,
    /// First byte.
    pub phys_start: u64,
    /// Length in 4 KiB pages.
    pub pages: u64,
    /// `EFI_MEMORY_*` attribute bits.
    pub attribute: u64,
}

impl EfiDescriptor {
    /// The e820 type of this range for a kernel that runs after ExitBootServices.
    pub fn e820_type(&self) -> E820Type {
        if self.attribute & ATTRIBUTE_RUNTIME != 0 {
            return E820Type::RESERVED;
        }
        match self.kind {
            // Loader code and data, boot services code and data, conventional memory.
            1..=4 | 7 => E820Type::RAM,
            8 => E820Type::UNUSABLE,
            9 => E820Type::ACPI,
            10 => E820Type::NVS,
            14 => E820_PERSISTENT,
            // Reserved, runtime services code and data, MMIO, MMIO port space, PAL code,
            // unaccepted memory (not usable before it is accepted) and anything newer.
            _ => E820Type::RESERVED,
        }
    }
}

/// A checked EFI memory map: the body of the multiboot2 tag (after its 8-byte type and size).
#[derive(Debug, Clone, Copy)]
pub struct EfiMemoryMap<'a> {
    stride: usize,
    descriptors: &'a [u8],
}

impl<'a> EfiMemoryMap<'a> {
    /// Checks the tag body `body`: its header, its stride, and every descriptor's range.
    pub fn parse(body: &'a [u8]) -> Result<Self, EfiMapError> {
        let (header, descriptors) = body
            .split_at_checked(BODY_HEADER)
            .ok_or(EfiMapError::Truncated)?;
        let stride = u32_at(header, 0);
        let version = u32_at(header, 4);
        if version != DESCRIPTOR_VERSION {
            return Err(EfiMapError::Version(version));
        }
        let stride_bytes = stride as usize;
        if !(DESCRIPTOR_BYTES..=MAX_DESCRIPTOR_BYTES).contains(&stride_bytes)
            || !stride_bytes.is_multiple_of(8)
        {
            return Err(EfiMapError::DescriptorSize(stride));
        }
        if descriptors.len() % stride_bytes != 0 {
            return Err(EfiMapError::Ragged {
                body: descriptors.len(),
                stride: stride_bytes,
            });
        }
        let map = Self {
            stride: stride_bytes,
            descriptors,
        };
        for (index, d) in map.descriptors().enumerate() {
            let fits = d
                .pages
                .checked_mul(PAGE)
                .and_then(|len| d.phys_start.checked_add(len))
                .is_some();
            if !fits || !d.phys_start.is_multiple_of(PAGE) {
                return Err(EfiMapError::BadRange { index });
            }
        }
        Ok(map)
    }

    /// Bytes from one descriptor to the next.
    pub fn descriptor_size(&self) -> usize {
        self.stride
    }

    /// The descriptors in the firmware's order.
    pub fn descriptors(&self) -> impl Iterator<Item = EfiDescriptor> + 'a {
        self.descriptors
            .chunks_exact(self.stride)
            .map(|d| EfiDescriptor {
                kind: u32_at(d, 0),
                phys_start: u64_at(d, 8),
                pages: u64_at(d, 24),
                attribute: u64_at(d, 32),
            })
    }

    /// The map as e820 ranges in the firmware's order, empty ranges left out and a range that
    /// starts where the one before ended, with the same type, merged into it.
    pub fn e820_entries(&self) -> impl Iterator<Item = E820Entry> + 'a {
        let mut ranges = self
            .descriptors()
            .filter(|d| d.pages > 0)
            // `parse` checked that the range fits.
            .map(|d| E820Entry::new(d.phys_start, d.pages * PAGE, d.e820_type()))
            .peekable();
        core::iter::from_fn(move || {
            let mut merged = ranges.next()?;
            while let Some(next) =
                ranges.next_if(|n| n.addr == merged.end() && n.kind == merged.kind)
            {
                merged.size += next.size;
            }
            Some(merged)
        })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// A tag body with `stride`-byte descriptors.
    fn body(stride: u32, descriptors: &[(u32, u64, u64, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&stride.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        for &(kind, start, pages, attribute) in descriptors {
            let mut d = std::vec![0u8; stride as usize];
            d[0..4].copy_from_slice(&kind.to_le_bytes());
            d[8..16].copy_from_slice(&start.to_le_bytes());
            // The virtual start (16..24) is not read.
            d[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
            d[24..32].copy_from_slice(&pages.to_le_bytes());
            d[32..40].copy_from_slice(&attribute.to_le_bytes());
            out.extend_from_slice(&d);
        }
        out
    }

    #[test]
    fn an_ovmf_like_map_becomes_merged_e820_ranges() {
        // Boot services data and conventional memory below 640 KiB, a reserved hole, loader
        // data and conventional memory above 1 MiB, runtime data flagged runtime, ACPI
        // reclaimable, NVS, MMIO flagged runtime.
        let tag = body(
            48,
            &[
                (4, 0, 1, 0xf),
                (7, 0x1000, 0x9f, 0xf),
                (0, 0xa0000, 0x60, 0),
                (2, 0x10_0000, 0x100, 0xf),
                (7, 0x20_0000, 0x3000, 0xf),
                (6, 0x320_0000, 0x10, ATTRIBUTE_RUNTIME | 0xf),
                (9, 0x321_0000, 0x8, 0xf),
                (10, 0x321_8000, 0x4, 0xf),
                (7, 0x321_c000, 0, 0xf),
                (11, 0xffc0_0000, 0x400, ATTRIBUTE_RUNTIME | 1),
            ],
        );
        let map = EfiMemoryMap::parse(&tag).unwrap();
        assert_eq!(map.descriptor_size(), 48);
        let entries: Vec<E820Entry> = map.e820_entries().collect();
        assert_eq!(
            entries,
            [
                E820Entry::new(0, 0xa0000, E820Type::RAM),
                E820Entry::new(0xa0000, 0x60000, E820Type::RESERVED),
                E820Entry::new(0x10_0000, 0x310_0000, E820Type::RAM),
                E820Entry::new(0x320_0000, 0x10000, E820Type::RESERVED),
                E820Entry::new(0x321_0000, 0x8000, E820Type::ACPI),
                E820Entry::new(0x321_8000, 0x4000, E820Type::NVS),
                E820Entry::new(0xffc0_0000, 0x40_0000, E820Type::RESERVED),
            ]
        );
    }

    #[test]
    fn every_memory_type_has_its_e820_type() {
        let of = |kind, attribute| {
            EfiDescriptor {
                kind,
                phys_start: 0,
                pages: 1,
                attribute,
            }
            .e820_type()
        };
        for free in [1, 2, 3, 4, 7] {
            assert_eq!(of(free, 0), E820Type::RAM, "type {free}");
            assert_eq!(of(free, ATTRIBUTE_RUNTIME), E820Type::RESERVED);
        }
        for reserved in [0, 5, 6, 11, 12, 13, 15, 16, 0x7000_0000, 0x8000_0000] {
            assert_eq!(of(reserved, 0), E820Type::RESERVED, "type {reserved}");
        }
        assert_eq!(of(8, 0), E820Type::UNUSABLE);
        assert_eq!(of(9, 0), E820Type::ACPI);
        assert_eq!(of(10, 0), E820Type::NVS);
        assert_eq!(of(14, 0), E820Type(7));
    }

    #[test]
    fn malformed_tags_are_refused_with_a_reason() {
        assert_eq!(
            EfiMemoryMap::parse(&[0; 7]).unwrap_err(),
            EfiMapError::Truncated
        );
        let mut tag = body(48, &[(7, 0, 1, 0)]);
        tag[4] = 2;
        assert_eq!(
            EfiMemoryMap::parse(&tag).unwrap_err(),
            EfiMapError::Version(2)
        );
        for stride in [0, 32, 44, 8192] {
            let tag = body(48, &[]);
            let mut tag = tag.clone();
            tag[0..4].copy_from_slice(&u32::to_le_bytes(stride));
            assert_eq!(
                EfiMemoryMap::parse(&tag).unwrap_err(),
                EfiMapError::DescriptorSize(stride)
            );
        }
        let mut tag = body(48, &[(7, 0, 1, 0)]);
        tag.pop();
        assert_eq!(
            EfiMemoryMap::parse(&tag).unwrap_err(),
            EfiMapError::Ragged {
                body: 47,
                stride: 48
            }
        );
        let tag = body(40, &[(7, 0, 1, 0), (7, 0x1234, 1, 0)]);
        assert_eq!(
            EfiMemoryMap::parse(&tag).unwrap_err(),
            EfiMapError::BadRange { index: 1 }
        );
        let tag = body(40, &[(7, !0xfff, 2, 0)]);
        assert_eq!(
            EfiMemoryMap::parse(&tag).unwrap_err(),
            EfiMapError::BadRange { index: 0 }
        );
        let tag = body(40, &[(7, 0, u64::MAX / 2, 0)]);
        assert_eq!(
            EfiMemoryMap::parse(&tag).unwrap_err(),
            EfiMapError::BadRange { index: 0 }
        );
        // No descriptors at all is a valid, empty map.
        assert_eq!(
            EfiMemoryMap::parse(&body(48, &[]))
                .unwrap()
                .e820_entries()
                .count(),
            0
        );
    }

    proptest! {
        /// Whatever the bytes, parsing never panics, and an accepted map's ranges are
        /// non-empty, inside the address space, and never two mergeable neighbours.
        #[test]
        fn any_bytes_are_refused_or_read_sanely(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                                stride in prop_oneof![Just(40u32), Just(48), any::<u32>()]) {
            let mut tag = std::vec::Vec::new();
            tag.extend_from_slice(&stride.to_le_bytes());
            tag.extend_from_slice(&1u32.to_le_bytes());
            tag.extend_from_slice(&bytes);
            if let Ok(map) = EfiMemoryMap::parse(&tag) {
                let entries: Vec<E820Entry> = map.e820_entries().collect();
                for e in &entries {
                    prop_assert!(e.size > 0);
                    prop_assert!(e.addr.checked_add(e.size).is_some());
                }
                for pair in entries.windows(2) {
                    prop_assert!(!(pair[0].end() == pair[1].addr && pair[0].kind == pair[1].kind));
                }
            }
        }
    }
}
