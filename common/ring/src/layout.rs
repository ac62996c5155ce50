//! The channel layout in shared memory: the one definition both partitions use.
//!
//! A channel region is `HEADER_SIZE + slot_count * slot_size` bytes (plus any tail shorter than a
//! slot, which is never touched): a 4 KiB header page, then `slot_count` slots.
//!
//! ```text
//! offset  size  field                     written by
//! 0x000   8     magic "BLKRING\0"         initializer, once
//! 0x008   4     version (1)               initializer, once
//! 0x00c   4     header size (4096)        initializer, once
//! 0x010   4     slot size                 initializer, once
//! 0x014   4     slot count                initializer, once
//! 0x018   4     slot header size (8)      initializer, once
//! 0x01c   4     reserved (0)
//! 0x020   8     region size               initializer, once
//! 0x028   24    reserved (0)
//! 0x040   8     state word                initializer (ready); either side (failure report)
//! 0x080   8     producer index            producer
//! 0x100   8     consumer index            consumer
//! 0x180   8     consumer wants doorbell   consumer sets, producer clears when it rings
//! 0x200   8     producer wants doorbell   producer sets, consumer clears when it rings
//! 0x280   8     re-initialization request Linux sets; the initializer clears it (by initializing)
//! 0x300   3328  reserved (0)
//! 0x1000        slot 0, slot 1, ...
//! ```
//!
//! Each mutable word sits alone at the start of its own 128-byte block (two cache lines, so that
//! the adjacent-line prefetcher does not pair it with a word the other side writes).
//!
//! Indices are free-running `u64` counters: the message with index `i` lives in slot
//! `i % slot_count`; `producer - consumer` (wrapping) is the number of messages in the ring and is
//! never more than `slot_count`. They cannot wrap in practice (2^64 messages), so the slot count
//! need not be a power of two.
//!
//! A slot is an 8-byte [`SlotHeader`] (length, low 16 bits of the message index, priority,
//! reserved flags) followed by `slot_size - 8` bytes of payload.
//!
//! Every word of the region is accessed only as an aligned 8-byte atomic (see
//! [`SharedRegion`](crate::SharedRegion)); the structs here describe the bytes and are converted
//! to and from those words by value. Both sides run on the same machine, so fields are
//! native-endian.
//!
//! This module holds no protocol and no `unsafe`: it is layout, constants and the geometry check.

use core::mem::{offset_of, size_of};

use bulkhead_abi::limits;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::LayoutError;

/// Magic bytes at offset 0 of every channel region.
pub const MAGIC: [u8; 8] = *b"BLKRING\0";
/// Layout version; a reader refuses any other.
pub const VERSION: u32 = 1;
/// Size of the header page ahead of the slots.
pub const HEADER_SIZE: usize = limits::CHANNEL_HEADER_SIZE as usize;
/// Size of the header at the start of each slot.
pub const SLOT_HEADER_SIZE: usize = 8;
/// Smallest slot size (a power of two).
pub const MIN_SLOT_SIZE: u32 = limits::CHANNEL_MIN_SLOT_SIZE;
/// Largest slot size (a power of two).
pub const MAX_SLOT_SIZE: u32 = limits::CHANNEL_MAX_SLOT_SIZE;
/// Fewest slots a channel may have.
pub const MIN_SLOTS: u32 = limits::CHANNEL_MIN_SLOTS;
/// Number of distinct message priorities (`0..=255`; higher is more urgent).
pub const PRIORITIES: usize = 256;

/// The geometry block at offset 0 (64 bytes), written once by the initializer.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct GeometryBlock {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// Slot size in bytes: a power of two in `MIN_SLOT_SIZE..=MAX_SLOT_SIZE`.
    pub slot_size: u32,
    /// Number of slots: `(region_size - HEADER_SIZE) / slot_size`, at least [`MIN_SLOTS`].
    pub slot_count: u32,
    /// [`SLOT_HEADER_SIZE`].
    pub slot_header_size: u32,
    /// Zero.
    pub reserved0: u32,
    /// Size of the whole channel region in bytes.
    pub region_size: u64,
    /// Zero.
    pub reserved1: [u64; 3],
}

/// The whole 4 KiB header page, field by field (see the module docs for who writes what).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct HeaderPage {
    /// Geometry, immutable after initialization.
    pub geometry: GeometryBlock,
    /// [`State`] word.
    pub state: u64,
    /// Padding to the producer's block.
    pub pad_state: [u64; 7],
    /// Index of the next message the producer will write.
    pub producer_index: u64,
    /// Padding to the consumer's block.
    pub pad_producer: [u64; 15],
    /// Index of the next message the consumer will read.
    pub consumer_index: u64,
    /// Padding.
    pub pad_consumer: [u64; 15],
    /// Nonzero: the consumer is (about to be) asleep and wants a doorbell on the next message.
    pub consumer_wants_doorbell: u64,
    /// Padding.
    pub pad_consumer_wants: [u64; 15],
    /// Nonzero: the producer is (about to be) asleep and wants a doorbell when a slot frees.
    pub producer_wants_doorbell: u64,
    /// Padding.
    pub pad_producer_wants: [u64; 15],
    /// Nonzero: Linux asks the side that re-establishes the channel (the RT side, or the
    /// hypervisor for its own log) to initialize it again (see [`crate::Producer::reinit`]).
    pub reinit_request: u64,
    /// Padding.
    pub pad_reinit_request: [u64; 15],
    /// Zero.
    pub reserved: [u64; 416],
}

/// The header at the start of every slot, read and written as one 8-byte word.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct SlotHeader {
    /// Payload length in bytes (at most `slot_size - SLOT_HEADER_SIZE`).
    pub len: u32,
    /// Low 16 bits of the message index (a check against stale or skipped slots).
    pub seq: u16,
    /// Priority, `0..=255`; higher is more urgent.
    pub priority: u8,
    /// Zero (reserved; readers ignore it).
    pub flags: u8,
}

impl SlotHeader {
    /// The header as the 8-byte word stored in the slot.
    pub fn to_word(self) -> u64 {
        zerocopy::transmute!(self)
    }

    /// The header a slot word holds.
    pub fn from_word(word: u64) -> Self {
        zerocopy::transmute!(word)
    }
}

// The layout is the ABI between two partitions built separately: pin it at compile time.
const _: () = {
    assert!(size_of::<GeometryBlock>() == 64);
    assert!(size_of::<HeaderPage>() == HEADER_SIZE);
    assert!(size_of::<SlotHeader>() == SLOT_HEADER_SIZE);
    assert!(offset_of!(GeometryBlock, magic) == 0x00);
    assert!(offset_of!(GeometryBlock, version) == 0x08);
    assert!(offset_of!(GeometryBlock, header_size) == 0x0c);
    assert!(offset_of!(GeometryBlock, slot_size) == 0x10);
    assert!(offset_of!(GeometryBlock, slot_count) == 0x14);
    assert!(offset_of!(GeometryBlock, slot_header_size) == 0x18);
    assert!(offset_of!(GeometryBlock, region_size) == 0x20);
    assert!(offset_of!(HeaderPage, state) == 0x040);
    assert!(offset_of!(HeaderPage, producer_index) == 0x080);
    assert!(offset_of!(HeaderPage, consumer_index) == 0x100);
    assert!(offset_of!(HeaderPage, consumer_wants_doorbell) == 0x180);
    assert!(offset_of!(HeaderPage, producer_wants_doorbell) == 0x200);
    assert!(offset_of!(HeaderPage, reinit_request) == 0x280);
    assert!(offset_of!(HeaderPage, reserved) == 0x300);
    assert!(offset_of!(SlotHeader, len) == 0);
    assert!(offset_of!(SlotHeader, seq) == 4);
    assert!(offset_of!(SlotHeader, priority) == 6);
    assert!(offset_of!(SlotHeader, flags) == 7);
    // Slots start on a page and are multiples of 8 bytes, so every word is aligned.
    assert!(MIN_SLOT_SIZE.is_power_of_two() && MIN_SLOT_SIZE as usize >= 2 * SLOT_HEADER_SIZE);
    assert!(MAX_SLOT_SIZE.is_power_of_two());
};

/// Number of 8-byte words in the header page.
pub(crate) const HEADER_WORDS: usize = HEADER_SIZE / 8;
/// Word index of the first geometry word.
pub(crate) const GEOMETRY_WORDS: usize = size_of::<GeometryBlock>() / 8;
/// Word index of [`HeaderPage::state`].
#[cfg_attr(
    loom,
    allow(dead_code, reason = "under loom these words live in the model")
)]
pub(crate) const W_STATE: usize = offset_of!(HeaderPage, state) / 8;
/// Word index of [`HeaderPage::producer_index`].
#[cfg_attr(
    loom,
    allow(dead_code, reason = "under loom these words live in the model")
)]
pub(crate) const W_PRODUCER_INDEX: usize = offset_of!(HeaderPage, producer_index) / 8;
/// Word index of [`HeaderPage::consumer_index`].
#[cfg_attr(
    loom,
    allow(dead_code, reason = "under loom these words live in the model")
)]
pub(crate) const W_CONSUMER_INDEX: usize = offset_of!(HeaderPage, consumer_index) / 8;
/// Word index of [`HeaderPage::consumer_wants_doorbell`].
#[cfg_attr(
    loom,
    allow(dead_code, reason = "under loom these words live in the model")
)]
pub(crate) const W_CONSUMER_WANTS: usize = offset_of!(HeaderPage, consumer_wants_doorbell) / 8;
/// Word index of [`HeaderPage::reinit_request`].
pub(crate) const W_REINIT_REQUEST: usize = offset_of!(HeaderPage, reinit_request) / 8;
/// Word index of [`HeaderPage::producer_wants_doorbell`].
#[cfg_attr(
    loom,
    allow(dead_code, reason = "under loom these words live in the model")
)]
pub(crate) const W_PRODUCER_WANTS: usize = offset_of!(HeaderPage, producer_wants_doorbell) / 8;

/// The state word: whether the channel is usable, and if not, why.
///
/// Encoding: bits 0..8 the kind (0 uninitialized, 1 ready, 2 failed); for a failure, bits 8..16
/// the [`Corruption`](crate::Corruption) code and bit 16 which side reported it (0 producer,
/// 1 consumer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Zeroed memory: not initialized (or being initialized).
    Uninitialized,
    /// Initialized and usable.
    Ready,
    /// A side found the channel corrupt and stopped.
    Failed {
        /// The corruption code it published ([`Corruption::code`](crate::Corruption::code)).
        code: u8,
        /// Whether the consumer (rather than the producer) reported it.
        by_consumer: bool,
    },
    /// Anything else: a value neither side writes.
    Invalid(u64),
}

impl State {
    /// The word for [`State::Ready`].
    pub const READY: u64 = 1;
    const KIND_FAILED: u64 = 2;

    /// Decodes a state word.
    pub fn decode(word: u64) -> Self {
        match word & 0xff {
            0 if word == 0 => Self::Uninitialized,
            1 if word == Self::READY => Self::Ready,
            2 if word >> 17 == 0 => Self::Failed {
                code: (word >> 8) as u8,
                by_consumer: word & (1 << 16) != 0,
            },
            _ => Self::Invalid(word),
        }
    }

    /// Encodes a failure report.
    pub fn failed(code: u8, by_consumer: bool) -> u64 {
        Self::KIND_FAILED | (u64::from(code) << 8) | (u64::from(by_consumer) << 16)
    }
}

/// A channel's geometry, validated: the private copy each side keeps and uses for every bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    slot_size: u32,
    slot_count: u32,
    region_size: usize,
}

impl Geometry {
    /// The geometry of a region of `region_size` bytes cut into slots of `slot_size` bytes:
    /// `slot_count = (region_size - HEADER_SIZE) / slot_size`.
    pub fn new(region_size: usize, slot_size: u32) -> Result<Self, LayoutError> {
        if !slot_size.is_power_of_two() || !(MIN_SLOT_SIZE..=MAX_SLOT_SIZE).contains(&slot_size) {
            return Err(LayoutError::SlotSize { slot_size });
        }
        let slots = region_size
            .checked_sub(HEADER_SIZE)
            .and_then(|room| room.checked_div(slot_size as usize))
            .unwrap_or(0);
        if slots < MIN_SLOTS as usize {
            return Err(LayoutError::TooFewSlots {
                region_size,
                slot_size,
            });
        }
        let slot_count =
            u32::try_from(slots).map_err(|_| LayoutError::TooManySlots { region_size })?;
        Ok(Self {
            slot_size,
            slot_count,
            region_size,
        })
    }

    /// Slot size in bytes.
    pub fn slot_size(&self) -> u32 {
        self.slot_size
    }

    /// Number of slots, which is the most messages the ring holds.
    pub fn slot_count(&self) -> u32 {
        self.slot_count
    }

    /// Size of the region in bytes (the header page, the slots and any unused tail).
    pub fn region_size(&self) -> usize {
        self.region_size
    }

    /// Largest message: the slot size less the slot header.
    pub fn max_message(&self) -> usize {
        (self.slot_size as usize).saturating_sub(SLOT_HEADER_SIZE)
    }

    /// The geometry block the initializer writes.
    pub fn block(&self) -> GeometryBlock {
        GeometryBlock {
            magic: MAGIC,
            version: VERSION,
            header_size: HEADER_SIZE as u32,
            slot_size: self.slot_size,
            slot_count: self.slot_count,
            slot_header_size: SLOT_HEADER_SIZE as u32,
            reserved0: 0,
            region_size: self.region_size as u64,
            reserved1: [0; 3],
        }
    }

    /// Validates a geometry block read from a region of `region_size` bytes. Every field is a
    /// claim by whoever wrote the header; the result depends only on `region_size` and the slot
    /// size, so the block cannot make a reader reach outside the region.
    pub fn from_block(block: &GeometryBlock, region_size: usize) -> Result<Self, LayoutError> {
        if block.magic != MAGIC {
            return Err(LayoutError::Magic);
        }
        if block.version != VERSION {
            return Err(LayoutError::Version {
                version: block.version,
            });
        }
        if block.header_size as usize != HEADER_SIZE
            || block.slot_header_size as usize != SLOT_HEADER_SIZE
        {
            return Err(LayoutError::HeaderSize);
        }
        if block.region_size != region_size as u64 {
            return Err(LayoutError::RegionSize {
                header: block.region_size,
                mapped: region_size,
            });
        }
        let geometry = Self::new(region_size, block.slot_size)?;
        if block.slot_count != geometry.slot_count {
            return Err(LayoutError::SlotCount {
                header: block.slot_count,
            });
        }
        Ok(geometry)
    }

    /// Words per slot.
    pub(crate) fn slot_words(&self) -> usize {
        (self.slot_size / 8) as usize
    }

    /// The slot number holding message `index`.
    pub(crate) fn slot_of(&self, index: u64) -> usize {
        index.checked_rem(u64::from(self.slot_count)).unwrap_or(0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_from_config_sizes() {
        let g = Geometry::new(4096 + 4 * 64, 64).unwrap();
        assert_eq!((g.slot_count(), g.max_message()), (4, 56));
        // A tail shorter than a slot is unused.
        let g = Geometry::new(4096 + 4 * 64 + 40, 64).unwrap();
        assert_eq!(g.slot_count(), 4);
        assert_eq!(
            Geometry::new(8192, 65536),
            Err(LayoutError::TooFewSlots {
                region_size: 8192,
                slot_size: 65536
            })
        );
        assert_eq!(
            Geometry::new(1 << 20, 48),
            Err(LayoutError::SlotSize { slot_size: 48 })
        );
        assert_eq!(
            Geometry::new(1 << 20, 8),
            Err(LayoutError::SlotSize { slot_size: 8 })
        );
        assert_eq!(
            Geometry::new(100, 16),
            Err(LayoutError::TooFewSlots {
                region_size: 100,
                slot_size: 16
            })
        );
        assert_eq!(Geometry::new(4096 + 32, 16).unwrap().max_message(), 8);
    }

    #[test]
    fn block_round_trip_and_checks() {
        let g = Geometry::new(1 << 16, 256).unwrap();
        let b = g.block();
        assert_eq!(Geometry::from_block(&b, 1 << 16), Ok(g));
        assert_eq!(
            Geometry::from_block(&b, 1 << 17),
            Err(LayoutError::RegionSize {
                header: 1 << 16,
                mapped: 1 << 17
            })
        );
        let mut bad = b;
        bad.slot_count += 1;
        assert_eq!(
            Geometry::from_block(&bad, 1 << 16),
            Err(LayoutError::SlotCount {
                header: b.slot_count + 1
            })
        );
        let mut bad = b;
        bad.magic[0] = b'X';
        assert_eq!(Geometry::from_block(&bad, 1 << 16), Err(LayoutError::Magic));
        let mut bad = b;
        bad.version = 2;
        assert_eq!(
            Geometry::from_block(&bad, 1 << 16),
            Err(LayoutError::Version { version: 2 })
        );
    }

    #[test]
    fn slot_header_word() {
        let h = SlotHeader {
            len: 0x1234,
            seq: 0xabcd,
            priority: 7,
            flags: 0,
        };
        assert_eq!(SlotHeader::from_word(h.to_word()), h);
        assert_eq!(h.to_word() & 0xffff_ffff, 0x1234);
    }

    #[test]
    fn state_words() {
        assert_eq!(State::decode(0), State::Uninitialized);
        assert_eq!(State::decode(State::READY), State::Ready);
        assert_eq!(
            State::decode(State::failed(3, true)),
            State::Failed {
                code: 3,
                by_consumer: true
            }
        );
        assert_eq!(State::decode(0x100), State::Invalid(0x100));
        assert_eq!(State::decode(1 << 40 | 2), State::Invalid(1 << 40 | 2));
    }

    #[test]
    fn config_limits_agree() {
        assert_eq!(bulkhead_config::CHANNEL_HEADER_SIZE, HEADER_SIZE as u64);
        assert_eq!(bulkhead_config::CHANNEL_MIN_SLOTS, u64::from(MIN_SLOTS));
        assert_eq!(bulkhead_config::MIN_SLOT_SIZE, MIN_SLOT_SIZE);
        assert_eq!(bulkhead_config::MAX_SLOT_SIZE, MAX_SLOT_SIZE);
    }
}
