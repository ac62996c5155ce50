//! The hypervisor's page-frame allocator: a bump allocator over the hypervisor's own
//! memory region that steps around ranges already in use (its image, the GRUB modules
//! it keeps, the boot information). Memory is allocated at boot and never freed, which
//! is what a partitioning hypervisor needs: every structure exists for the machine's
//! lifetime.

use crate::memory::addr::{HostPhysAddr, PAGE_4K};

/// Most holes the allocator tracks.
pub const MAX_HOLES: usize = 32;

/// A half-open range `start..end` of host-physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    /// `start..start + size`, saturating.
    pub const fn at(start: u64, size: u64) -> Self {
        Self {
            start,
            end: start.saturating_add(size),
        }
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

/// Allocation failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory {
    /// Bytes requested.
    pub requested: u64,
}

/// Bump allocator of 4 KiB-aligned blocks.
#[derive(Debug)]
pub struct FrameAllocator {
    next: u64,
    end: u64,
    holes: [Span; MAX_HOLES],
    hole_count: usize,
    allocated: u64,
}

impl FrameAllocator {
    /// Allocates from `region`, never returning memory that overlaps a hole. Holes past
    /// `MAX_HOLES` are reported as `Err` with the number accepted.
    pub fn new(region: Span, holes: &[Span]) -> Result<Self, usize> {
        if holes.len() > MAX_HOLES {
            return Err(MAX_HOLES);
        }
        let mut h = [Span::default(); MAX_HOLES];
        h[..holes.len()].copy_from_slice(holes);
        let next = region.start.div_ceil(PAGE_4K) * PAGE_4K;
        Ok(Self {
            next,
            end: region.end,
            holes: h,
            hole_count: holes.len(),
            allocated: 0,
        })
    }

    /// `bytes` rounded up to whole pages, aligned to `align` (a power of two, at least
    /// 4 KiB). The caller zeroes or fills the memory.
    pub fn alloc(&mut self, bytes: u64, align: u64) -> Result<HostPhysAddr, OutOfMemory> {
        let err = OutOfMemory { requested: bytes };
        let align = align.max(PAGE_4K);
        if !align.is_power_of_two() || bytes == 0 {
            return Err(err);
        }
        let size = bytes.div_ceil(PAGE_4K) * PAGE_4K;
        let mut start = self.next.checked_next_multiple_of(align).ok_or(err)?;
        loop {
            let end = start.checked_add(size).ok_or(err)?;
            if end > self.end {
                return Err(err);
            }
            match self.holes[..self.hole_count]
                .iter()
                .find(|h| h.overlaps(start, end))
            {
                Some(hole) => start = hole.end.checked_next_multiple_of(align).ok_or(err)?,
                None => {
                    self.next = end;
                    self.allocated += size;
                    return HostPhysAddr::new(start).ok_or(err);
                }
            }
        }
    }

    /// Bytes handed out so far.
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Bytes between the bump pointer and the end of the region (holes included).
    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    #[test]
    fn skips_holes_and_honours_alignment() {
        let mut a = FrameAllocator::new(
            Span::at(0x10_0000, 0x10_0000),
            &[Span::at(0x10_0000, 0x3000), Span::at(0x10_5000, 0x1000)],
        )
        .unwrap();
        assert_eq!(a.alloc(0x1000, 0x1000).unwrap().as_u64(), 0x10_3000);
        assert_eq!(
            a.alloc(0x1800, 0x1000).unwrap().as_u64(),
            0x10_6000,
            "hole skipped"
        );
        assert_eq!(a.alloc(0x1000, 0x10000).unwrap().as_u64(), 0x11_0000);
        assert_eq!(a.allocated(), 0x4000);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let mut a = FrameAllocator::new(Span::at(0, 0x2000), &[]).unwrap();
        assert!(a.alloc(0x2000, 0x1000).is_ok());
        assert_eq!(a.alloc(1, 0x1000), Err(OutOfMemory { requested: 1 }));
        assert!(a.alloc(0, 0x1000).is_err());
        assert!(a.alloc(0x1000, 3).is_err());
    }

    #[test]
    fn too_many_holes() {
        let holes = [Span::default(); MAX_HOLES + 1];
        assert_eq!(
            FrameAllocator::new(Span::at(0, 0x1000), &holes).err(),
            Some(MAX_HOLES)
        );
    }

    proptest! {
        #[test]
        fn allocations_are_disjoint_aligned_inside_and_avoid_holes(
            holes in proptest::collection::vec((0u64..256, 1u64..16), 0..8),
            reqs in proptest::collection::vec((1u64..40_000, 0u32..6), 1..40),
        ) {
            let region = Span::at(0x100_0000, 0x100_0000);
            let holes: Vec<Span> = holes.iter()
                .map(|&(p, n)| Span::at(0x100_0000 + p * 0x1_0000, n * 0x1000)).collect();
            let mut a = FrameAllocator::new(region, &holes).unwrap();
            let mut got: Vec<Span> = Vec::new();
            for (bytes, align_shift) in reqs {
                let align = 0x1000u64 << align_shift;
                if let Ok(p) = a.alloc(bytes, align) {
                    let s = Span::at(p.as_u64(), bytes.div_ceil(0x1000) * 0x1000);
                    prop_assert_eq!(s.start % align, 0);
                    prop_assert!(s.start >= region.start && s.end <= region.end);
                    prop_assert!(holes.iter().all(|h| !h.overlaps(s.start, s.end)));
                    prop_assert!(got.iter().all(|o| !o.overlaps(s.start, s.end)));
                    got.push(s);
                }
            }
        }
    }
}
