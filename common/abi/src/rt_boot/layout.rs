//! The RT partition's guest-physical space, as the boot protocol defines it: the partition's RAM
//! regions follow each other from guest-physical 0 in config order, so the kernel sees one
//! contiguous range whatever the host layout; the shared regions come after, from the next
//! 2 MiB boundary, each keeping its host address's offset within 2 MiB (so EPT can map it with
//! large pages); everything ends below [`GPA_LIMIT`], because the kernel's start-up map covers
//! 4 GiB and makes the top GiB uncached (MMIO).
//!
//! One function places them ([`place`]): the hypervisor's loader builds its mappings with it and
//! the config tool refuses, with the same words, any config it cannot place.

use core::fmt;

/// Lowest guest-physical address a kernel segment may occupy: below it the loader puts the boot
/// information and the start-up page tables.
pub const IMAGE_MIN_GPA: u64 = 0x10_0000;
/// Everything the partition sees must end below this (the kernel maps 3-4 GiB uncached).
pub const GPA_LIMIT: u64 = 3 << 30;
/// The alignment the shared regions' placement keeps (a large page).
pub const LARGE_PAGE: u64 = 2 << 20;

/// Which list a placed piece came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// The RAM region with this index in the partition's list.
    Ram(usize),
    /// The shared region with this index in the config's list.
    Shared(usize),
}

/// Why the partition's memory cannot be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The RAM or the shared regions would reach past [`GPA_LIMIT`] (at `end`).
    TooMuchMemory {
        /// Where the piece that did not fit would end.
        end: u64,
    },
    /// The first RAM region cannot hold the loader's first MiB, or all RAM is smaller than that
    /// plus 2 MiB for a kernel.
    RamTooSmall {
        /// Bytes of the first region.
        bytes: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooMuchMemory { end } => write!(
                f,
                "the RT partition's RAM and shared regions need guest-physical space up to {end:#x}, past the RT kernel's {GPA_LIMIT:#x}"
            ),
            Self::RamTooSmall { bytes } => write!(
                f,
                "the first region ({bytes:#x} bytes) must hold the loader's first MiB, and all regions together that and 2 MiB more for the kernel"
            ),
        }
    }
}

/// Places the partition's `ram` and the `shared` regions (each `(host base, size)`) in its
/// guest-physical space, calling `placed(piece, guest-physical base)` for each in order.
pub fn place(
    ram: impl IntoIterator<Item = (u64, u64)>,
    shared: impl IntoIterator<Item = (u64, u64)>,
    mut placed: impl FnMut(Piece, u64),
) -> Result<(), LayoutError> {
    let mut cursor = 0u64;
    let mut first = None;
    for (i, (_, size)) in ram.into_iter().enumerate() {
        let end = cursor.saturating_add(size);
        if end > GPA_LIMIT {
            return Err(LayoutError::TooMuchMemory { end });
        }
        first.get_or_insert(size);
        placed(Piece::Ram(i), cursor);
        cursor = end;
    }
    let first = first.unwrap_or(0);
    if first < IMAGE_MIN_GPA || cursor < IMAGE_MIN_GPA + LARGE_PAGE {
        return Err(LayoutError::RamTooSmall { bytes: first });
    }
    for (i, (base, size)) in shared.into_iter().enumerate() {
        let gpa = cursor.next_multiple_of(LARGE_PAGE) + base % LARGE_PAGE;
        let end = gpa.saturating_add(size);
        if end > GPA_LIMIT {
            return Err(LayoutError::TooMuchMemory { end });
        }
        placed(Piece::Shared(i), gpa);
        cursor = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn placed(ram: &[(u64, u64)], shared: &[(u64, u64)]) -> Result<Vec<(Piece, u64)>, LayoutError> {
        let mut out = Vec::new();
        place(ram.iter().copied(), shared.iter().copied(), |p, gpa| {
            out.push((p, gpa))
        })?;
        Ok(out)
    }

    #[test]
    fn ram_is_contiguous_from_zero_and_shared_keeps_its_large_page_offset() {
        let got = placed(
            &[(0x4000_0000, 4 * MIB), (0x5000_0000, 8 * MIB)],
            &[(0x3800_0000 + 64 * 1024, MIB)],
        )
        .unwrap();
        assert_eq!(
            got,
            [
                (Piece::Ram(0), 0),
                (Piece::Ram(1), 4 * MIB),
                (Piece::Shared(0), 12 * MIB + 64 * 1024)
            ]
        );
    }

    #[test]
    fn too_little_or_too_much_is_refused() {
        assert_eq!(
            placed(&[(0, 512 * 1024)], &[]),
            Err(LayoutError::RamTooSmall { bytes: 512 * 1024 })
        );
        assert_eq!(placed(&[], &[]), Err(LayoutError::RamTooSmall { bytes: 0 }));
        assert_eq!(
            placed(&[(0, 2 * MIB)], &[]),
            Err(LayoutError::RamTooSmall { bytes: 2 * MIB })
        );
        assert!(placed(&[(0, 3 * MIB)], &[]).is_ok());
        assert_eq!(
            placed(&[(0, 3 << 30), (1 << 32, MIB)], &[]),
            Err(LayoutError::TooMuchMemory {
                end: (3 << 30) + MIB
            })
        );
        assert_eq!(
            placed(&[(0, (3 << 30) - MIB)], &[(0x1000, MIB)]),
            Err(LayoutError::TooMuchMemory {
                end: (3 << 30) + 0x1000 + MIB
            })
        );
    }
}
