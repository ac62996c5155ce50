//! Errors: what went wrong with a region, a header, a call, or the peer.
//!
//! [`RingError::WouldBlock`], [`RingError::MessageTooLong`] and [`RingError::BufferTooSmall`] are
//! answers to one call; the endpoint stays usable. [`RingError::Corrupt`] and
//! [`RingError::PeerFailed`] stop the endpoint for good: every later call returns the same error.
//! None of them allocates.

use core::fmt;

/// A region or header that does not describe a usable channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The region's start is not 8-byte aligned, or its length not a multiple of 8.
    Misaligned,
    /// The region is smaller than the header page.
    TooSmall {
        /// Its length.
        len: usize,
    },
    /// A slot size that is not a power of two in `MIN_SLOT_SIZE..=MAX_SLOT_SIZE`.
    SlotSize {
        /// The slot size.
        slot_size: u32,
    },
    /// Fewer than `MIN_SLOTS` slots fit after the header.
    TooFewSlots {
        /// The region size.
        region_size: usize,
        /// The slot size.
        slot_size: u32,
    },
    /// More than `u32::MAX` slots.
    TooManySlots {
        /// The region size.
        region_size: usize,
    },
    /// The state word says the header is not initialized (yet).
    NotInitialized,
    /// Wrong magic.
    Magic,
    /// A layout version this build does not know.
    Version {
        /// The version found.
        version: u32,
    },
    /// Header or slot header size differs from this layout's.
    HeaderSize,
    /// The header's region size is not the size of the region mapped here.
    RegionSize {
        /// The size the header claims.
        header: u64,
        /// The size mapped here.
        mapped: usize,
    },
    /// The header's slot count does not follow from its region and slot sizes.
    SlotCount {
        /// The count the header claims.
        header: u32,
    },
    /// The producer and consumer indices are more than a ring apart.
    Indices {
        /// Producer index.
        producer: u64,
        /// Consumer index.
        consumer: u64,
    },
}

/// What a side found wrong in the memory its peer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Corruption {
    /// The producer index is more than a ring ahead of the consumer index.
    ProducerIndexAhead = 1,
    /// The producer index moved backwards.
    ProducerIndexBackwards = 2,
    /// The consumer index is ahead of the producer index.
    ConsumerIndexAhead = 3,
    /// The consumer index moved backwards.
    ConsumerIndexBackwards = 4,
    /// A slot's length is larger than a slot's payload.
    MessageLength = 5,
    /// A slot's sequence number is not its message index.
    SlotSequence = 6,
    /// A published slot changed after the consumer had read it.
    SlotChanged = 7,
    /// The state word holds a value no side writes.
    StateWord = 8,
}

impl Corruption {
    /// The code published in the state word.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The corruption a code stands for.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::ProducerIndexAhead,
            2 => Self::ProducerIndexBackwards,
            3 => Self::ConsumerIndexAhead,
            4 => Self::ConsumerIndexBackwards,
            5 => Self::MessageLength,
            6 => Self::SlotSequence,
            7 => Self::SlotChanged,
            8 => Self::StateWord,
            _ => return None,
        })
    }
}

/// Any error of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The ring is full (send) or empty (receive): try again later (`EAGAIN`).
    WouldBlock,
    /// The message does not fit in a slot (`EMSGSIZE` on send).
    MessageTooLong {
        /// The message's length.
        len: usize,
        /// The largest message a slot holds.
        max: usize,
    },
    /// The next message does not fit in the caller's buffer; nothing was consumed (`EMSGSIZE` on
    /// receive).
    BufferTooSmall {
        /// The message's length.
        len: usize,
        /// The buffer's length.
        capacity: usize,
    },
    /// The region or its header does not describe a usable channel.
    Layout(LayoutError),
    /// This side found the peer's memory impossible and stopped the channel.
    Corrupt {
        /// What was wrong.
        what: Corruption,
    },
    /// The peer reported the channel corrupt (or the state word was overwritten) and stopped.
    PeerFailed {
        /// What the peer reported, when the code is one this build knows.
        what: Option<Corruption>,
    },
}

impl RingError {
    /// Whether the endpoint is stopped for good (a corrupt channel) rather than answering one call.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::PeerFailed { .. })
    }
}

impl From<LayoutError> for RingError {
    fn from(e: LayoutError) -> Self {
        Self::Layout(e)
    }
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned => {
                write!(
                    f,
                    "channel region is not 8-byte aligned or not a multiple of 8 bytes"
                )
            }
            Self::TooSmall { len } => {
                write!(
                    f,
                    "channel region of {len} bytes is smaller than its header page"
                )
            }
            Self::SlotSize { slot_size } => write!(
                f,
                "slot size {slot_size} is not a power of two between {} and {}",
                crate::MIN_SLOT_SIZE,
                crate::MAX_SLOT_SIZE
            ),
            Self::TooFewSlots {
                region_size,
                slot_size,
            } => write!(
                f,
                "a channel of {region_size} bytes holds fewer than {} slots of {slot_size} bytes",
                crate::MIN_SLOTS
            ),
            Self::TooManySlots { region_size } => {
                write!(
                    f,
                    "a channel of {region_size} bytes has more than 2^32-1 slots"
                )
            }
            Self::NotInitialized => write!(f, "channel header is not initialized"),
            Self::Magic => write!(f, "channel header has the wrong magic"),
            Self::Version { version } => write!(
                f,
                "channel layout version {version} is not the supported version {}",
                crate::VERSION
            ),
            Self::HeaderSize => write!(f, "channel header or slot header size is wrong"),
            Self::RegionSize { header, mapped } => write!(
                f,
                "channel header says {header} bytes but the mapped region is {mapped} bytes"
            ),
            Self::SlotCount { header } => {
                write!(
                    f,
                    "channel header's slot count {header} does not match its sizes"
                )
            }
            Self::Indices { producer, consumer } => write!(
                f,
                "channel indices are impossible (producer {producer}, consumer {consumer})"
            ),
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ProducerIndexAhead => "producer index more than a ring ahead",
            Self::ProducerIndexBackwards => "producer index moved backwards",
            Self::ConsumerIndexAhead => "consumer index ahead of the producer",
            Self::ConsumerIndexBackwards => "consumer index moved backwards",
            Self::MessageLength => "message length larger than a slot",
            Self::SlotSequence => "slot sequence number does not match its index",
            Self::SlotChanged => "published slot changed under the consumer",
            Self::StateWord => "state word holds an impossible value",
        })
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => write!(f, "channel would block"),
            Self::MessageTooLong { len, max } => {
                write!(
                    f,
                    "message of {len} bytes is longer than the {max}-byte maximum"
                )
            }
            Self::BufferTooSmall { len, capacity } => {
                write!(
                    f,
                    "message of {len} bytes does not fit in a {capacity}-byte buffer"
                )
            }
            Self::Layout(e) => e.fmt(f),
            Self::Corrupt { what } => write!(f, "channel corrupt: {what}"),
            Self::PeerFailed { what: Some(what) } => {
                write!(f, "peer stopped the channel: {what}")
            }
            Self::PeerFailed { what: None } => write!(f, "peer stopped the channel"),
        }
    }
}

impl core::error::Error for LayoutError {}
impl core::error::Error for RingError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in 0..=u8::MAX {
            if let Some(c) = Corruption::from_code(code) {
                assert_eq!(c.code(), code);
            }
        }
        assert_eq!(Corruption::from_code(8), Some(Corruption::StateWord));
        assert_eq!(Corruption::from_code(9), None);
    }
}
