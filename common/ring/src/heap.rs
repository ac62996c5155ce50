//! A channel region on the heap (feature `std`): page-aligned, zeroed words that this program
//! owns, for tests, benchmarks and self-tests of the Linux library. Real channels live in memory
//! the hypervisor maps; this stands in for it.

use std::boxed::Box;
use std::fmt;
use std::sync::atomic::AtomicU64;

use crate::error::LayoutError;
use crate::shared::SharedRegion;

/// Page alignment, in words.
const PAGE_WORDS: usize = 4096 / 8;

/// A heap allocation posing as a channel region.
pub struct HeapRegion {
    words: Box<[AtomicU64]>,
    start: usize,
    len: usize,
    #[cfg(loom)]
    model: crate::shared::LoomModel,
}

impl HeapRegion {
    /// A zeroed region of `len` bytes (rounded down to a multiple of 8), starting on a 4 KiB
    /// boundary like a real channel.
    pub fn new(len: usize) -> Self {
        let len = len / 8;
        let words: Box<[AtomicU64]> = (0..len.saturating_add(PAGE_WORDS))
            .map(|_| AtomicU64::new(0))
            .collect();
        let start = words.as_ptr().align_offset(4096).min(PAGE_WORDS);
        Self {
            words,
            start,
            len,
            #[cfg(loom)]
            model: crate::shared::LoomModel::new(len.saturating_mul(8)),
        }
    }

    /// The region's words (to inspect, or to corrupt in tests).
    pub fn words(&self) -> &[AtomicU64] {
        self.words
            .get(self.start..self.start.saturating_add(self.len))
            .unwrap_or_default()
    }

    /// A view of the region; fails if it is smaller than a header page.
    pub fn region(&self) -> Result<SharedRegion<'_>, LayoutError> {
        #[cfg(not(loom))]
        return SharedRegion::from_words(self.words());
        #[cfg(loom)]
        return SharedRegion::with_model(self.words(), &self.model);
    }
}

impl fmt::Debug for HeapRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapRegion")
            .field("len", &self.len.saturating_mul(8))
            .finish()
    }
}
