//! Raw shared memory: the crate's only `unsafe`, and the loom shim.
//!
//! A [`SharedRegion`] is a view of a channel region as 8-byte atomic words. Every access this
//! crate makes to the region, header or payload, is an aligned 8-byte atomic load or store, so
//! nothing the other partition does to those bytes is a data race inside this program, and no
//! value is ever fetched twice by accident: each load is one fetch into a local. Every access goes
//! through a slice, so it is bounds-checked against the region's length: nothing here can read or
//! write outside the region, whatever the header or the peer's indices say.
//!
//! Under `--cfg loom` the five words the protocol synchronizes on (state, indices, doorbell flags)
//! live in a loom model beside the region instead of in it, and each slot has a loom cell that
//! records who touched it last, so loom checks both the atomics' orderings and that no slot is
//! written while the other side may be reading it. Geometry and payload words stay in the region.

use core::fmt;
use core::sync::atomic::AtomicU64;

use crate::error::LayoutError;
use crate::layout::{GEOMETRY_WORDS, HEADER_WORDS};

/// The atomics the protocol synchronizes on: core's, or loom's under `--cfg loom`.
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU64 as SyncU64, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64 as SyncU64, fence};

/// One of the header words the two sides synchronize on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// [`crate::layout::HeaderPage::state`].
    State,
    /// [`crate::layout::HeaderPage::producer_index`].
    ProducerIndex,
    /// [`crate::layout::HeaderPage::consumer_index`].
    ConsumerIndex,
    /// [`crate::layout::HeaderPage::consumer_wants_doorbell`].
    ConsumerWants,
    /// [`crate::layout::HeaderPage::producer_wants_doorbell`].
    ProducerWants,
}

/// A channel region: shared memory seen as aligned 8-byte atomic words.
///
/// Copying it is cheap and sound (it is a view). Build it over real shared memory with
/// [`SharedRegion::new`], over words you own with [`SharedRegion::from_words`], or get one from a
/// `HeapRegion` (feature `std`).
#[derive(Clone, Copy)]
pub struct SharedRegion<'a> {
    header: &'a [AtomicU64; HEADER_WORDS],
    geometry: &'a [AtomicU64; GEOMETRY_WORDS],
    slots: &'a [AtomicU64],
    #[cfg(loom)]
    model: &'a LoomModel,
}

impl fmt::Debug for SharedRegion<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRegion")
            .field("base", &self.header.as_ptr())
            .field("len", &self.len())
            .finish()
    }
}

impl<'a> SharedRegion<'a> {
    /// A view of the `len` bytes at `ptr` (for example a channel mapped from a shared region).
    ///
    /// Fails if `ptr` is not 8-byte aligned, `len` not a multiple of 8, or `len` smaller than
    /// the header page. Page alignment is what channels get and what keeps the header's blocks on
    /// separate cache lines.
    ///
    /// # Safety
    ///
    /// For all of `'a`:
    /// - `ptr..ptr + len` is mapped, readable and writable, and lies within one allocation (or
    ///   one mapping) of at most `isize::MAX` bytes;
    /// - within this program those bytes are accessed only as aligned 8-byte atomics, which is
    ///   what every `SharedRegion` and `&[AtomicU64]` over them does: no other code reads or
    ///   writes them non-atomically or through a `&`/`&mut` to non-atomic data.
    ///
    /// Writes from outside this program (the other partition, a device) may happen at any time
    /// and may put any bytes there; this crate treats the region's contents as untrusted.
    #[cfg(not(loom))]
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Result<Self, LayoutError> {
        if ptr.is_null() || !ptr.cast::<AtomicU64>().is_aligned() || !len.is_multiple_of(8) {
            return Err(LayoutError::Misaligned);
        }
        // SAFETY: `ptr` is non-null and aligned for `AtomicU64` (checked above), which has the
        // size and bit validity of `u64`, so every 8-byte pattern is a valid value. The caller
        // guarantees that the `len / 8` words are mapped for `'a` within one allocation of at most
        // `isize::MAX` bytes, and that nothing in this program accesses them other than through
        // 8-byte atomics, so a shared slice of atomics over them (interior mutability, no
        // non-atomic access) upholds the aliasing and data-race rules.
        let words =
            unsafe { core::slice::from_raw_parts(ptr.cast::<AtomicU64>().cast_const(), len / 8) };
        Self::from_words(words)
    }

    /// A view of words this program owns (a test buffer, a heap allocation). Safe: the words are
    /// atomics already, so any other access to them is atomic too.
    #[cfg(not(loom))]
    pub fn from_words(words: &'a [AtomicU64]) -> Result<Self, LayoutError> {
        let (header, geometry, slots) = split(words)?;
        Ok(Self {
            header,
            geometry,
            slots,
        })
    }

    /// A view of `words` whose synchronizing words live in `model` (loom builds only).
    #[cfg(loom)]
    pub(crate) fn with_model(
        words: &'a [AtomicU64],
        model: &'a LoomModel,
    ) -> Result<Self, LayoutError> {
        let (header, geometry, slots) = split(words)?;
        Ok(Self {
            header,
            geometry,
            slots,
            model,
        })
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> usize {
        HEADER_WORDS
            .saturating_add(self.slots.len())
            .saturating_mul(8)
    }

    /// Never true: a region always holds at least its header page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The whole header page, as words.
    pub(crate) fn header_words(&self) -> &'a [AtomicU64; HEADER_WORDS] {
        self.header
    }

    /// The geometry block's words.
    pub(crate) fn geometry_words(&self) -> &'a [AtomicU64; GEOMETRY_WORDS] {
        self.geometry
    }

    /// The words after the header page.
    pub(crate) fn slot_area(&self) -> &'a [AtomicU64] {
        self.slots
    }

    /// A synchronizing word.
    #[cfg(not(loom))]
    pub(crate) fn control(&self, which: Control) -> &'a SyncU64 {
        use crate::layout::{
            W_CONSUMER_INDEX, W_CONSUMER_WANTS, W_PRODUCER_INDEX, W_PRODUCER_WANTS, W_STATE,
        };
        let header = self.header;
        match which {
            Control::State => &header[W_STATE],
            Control::ProducerIndex => &header[W_PRODUCER_INDEX],
            Control::ConsumerIndex => &header[W_CONSUMER_INDEX],
            Control::ConsumerWants => &header[W_CONSUMER_WANTS],
            Control::ProducerWants => &header[W_PRODUCER_WANTS],
        }
    }

    /// A synchronizing word (from the loom model).
    #[cfg(loom)]
    pub(crate) fn control(&self, which: Control) -> &'a SyncU64 {
        let [state, producer, consumer, consumer_wants, producer_wants] = &self.model.control;
        match which {
            Control::State => state,
            Control::ProducerIndex => producer,
            Control::ConsumerIndex => consumer,
            Control::ConsumerWants => consumer_wants,
            Control::ProducerWants => producer_wants,
        }
    }

    /// Records (for loom) that this side reads slot `slot`. No-op in normal builds.
    #[inline(always)]
    pub(crate) fn track_read(&self, slot: usize) {
        #[cfg(loom)]
        if let Some(cell) = self.model.slots.get(slot) {
            cell.with(|_| ());
        }
        #[cfg(not(loom))]
        let _ = slot;
    }

    /// Records (for loom) that this side writes slot `slot`. No-op in normal builds.
    #[inline(always)]
    pub(crate) fn track_write(&self, slot: usize) {
        #[cfg(loom)]
        if let Some(cell) = self.model.slots.get(slot) {
            cell.with_mut(|_| ());
        }
        #[cfg(not(loom))]
        let _ = slot;
    }
}

/// The header page, its geometry block and the slot area of a region's words.
type Parts<'a> = (
    &'a [AtomicU64; HEADER_WORDS],
    &'a [AtomicU64; GEOMETRY_WORDS],
    &'a [AtomicU64],
);

fn split(words: &[AtomicU64]) -> Result<Parts<'_>, LayoutError> {
    let too_small = LayoutError::TooSmall {
        len: words.len().saturating_mul(8),
    };
    let (header, slots) = words.split_first_chunk::<HEADER_WORDS>().ok_or(too_small)?;
    let (geometry, _) = header
        .split_first_chunk::<GEOMETRY_WORDS>()
        .ok_or(too_small)?;
    Ok((header, geometry, slots))
}

/// The loom-side state of one region: its synchronizing words and one access-tracking cell per
/// possible slot.
#[cfg(loom)]
pub(crate) struct LoomModel {
    control: [SyncU64; 5],
    slots: std::vec::Vec<loom::cell::UnsafeCell<()>>,
}

#[cfg(loom)]
impl LoomModel {
    /// A model for a region of `len` bytes.
    pub(crate) fn new(len: usize) -> Self {
        let slots = len.saturating_sub(crate::HEADER_SIZE) / 16;
        Self {
            control: core::array::from_fn(|_| SyncU64::new(0)),
            slots: (0..slots)
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
        }
    }
}

#[cfg(loom)]
impl fmt::Debug for LoomModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoomModel").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_regions() {
        let words: std::vec::Vec<AtomicU64> = (0..1024).map(|_| AtomicU64::new(0)).collect();
        assert_eq!(
            SharedRegion::from_words(&words[..511]).unwrap_err(),
            LayoutError::TooSmall { len: 511 * 8 }
        );
        assert_eq!(SharedRegion::from_words(&words[..512]).unwrap().len(), 4096);
        let base = words.as_ptr().cast_mut().cast::<u8>();
        // SAFETY: the words are a live allocation of 8192 bytes accessed only atomically, and
        // the calls below fail before creating a view.
        unsafe {
            assert_eq!(
                SharedRegion::new(base.wrapping_add(4), 4096).unwrap_err(),
                LayoutError::Misaligned
            );
        }
        // SAFETY: as above; the length is rejected.
        unsafe {
            assert_eq!(
                SharedRegion::new(base, 4100).unwrap_err(),
                LayoutError::Misaligned
            );
        }
        // SAFETY: the first 8192 bytes are the live allocation, accessed only atomically.
        let region = unsafe { SharedRegion::new(base, 8192) }.unwrap();
        assert_eq!(region.len(), 8192);
        assert_eq!(region.slot_area().len(), 512);
    }
}
