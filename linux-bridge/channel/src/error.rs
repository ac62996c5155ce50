//! The library's one error type, [`Error`], and its classification, [`ErrorKind`].
//!
//! [`ErrorKind::WouldBlock`], [`ErrorKind::TimedOut`], [`ErrorKind::MessageTooLong`] and
//! [`ErrorKind::BufferTooSmall`] answer one call: the endpoint stays usable. [`ErrorKind::Corrupt`]
//! means the ring stopped for good (this side found the peer's memory impossible, or the peer
//! reported that it did): every later call on that endpoint fails the same way. The other kinds
//! come from discovery and opening.

use std::fmt;
use std::io;
use std::path::PathBuf;

use bulkhead_ring::announce::{AnnounceError, Direction};
use bulkhead_ring::{LayoutError, RingError};

/// What kind of failure an [`Error`] is, in the manner of [`io::ErrorKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file could not be opened, read or mapped (permissions, missing `/dev/mem`, ...).
    Io,
    /// A `bulkhead.channel=` word on the command line is malformed, or names a channel twice.
    BadAnnouncement,
    /// No channel of that name is announced.
    NotFound,
    /// The channel goes the other way: Linux is its consumer, not its producer (or the
    /// reverse).
    WrongDirection,
    /// Another endpoint of this program or another holds the same end of the channel.
    Busy,
    /// The channel's header does not describe a usable channel (not initialized, wrong magic,
    /// version or sizes); nothing was attached.
    InvalidHeader,
    /// The ring stopped: this side found the peer's memory impossible, or the peer reported
    /// that it did. Sticky.
    Corrupt,
    /// The message is longer than a slot holds (`EMSGSIZE` on send).
    MessageTooLong,
    /// The next message is longer than the caller's buffer; nothing was consumed (`EMSGSIZE` on
    /// receive).
    BufferTooSmall,
    /// The ring is full (send) or empty (receive) and the call does not block (`EAGAIN`).
    WouldBlock,
    /// The deadline passed first (`ETIMEDOUT`).
    TimedOut,
}

/// Any error of this library.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Opening, reading or mapping a file failed.
    Io {
        /// What was being done, with the path (`"open /dev/mem"`).
        what: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A malformed `bulkhead.channel=` word.
    Announce {
        /// The whole word, as found.
        word: String,
        /// Which field is wrong.
        error: AnnounceError,
    },
    /// Two `bulkhead.channel=` words name the same channel.
    DuplicateChannel {
        /// The name.
        name: String,
    },
    /// No channel of that name is announced.
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// Linux is not the endpoint asked for on this channel.
    WrongDirection {
        /// The channel.
        name: String,
        /// Its direction.
        direction: Direction,
    },
    /// The end of the channel is held by another endpoint (a lock on the memory file).
    Busy {
        /// The channel (or the mapped path, for a channel opened without a name).
        name: String,
        /// `"producer"` or `"consumer"`.
        end: &'static str,
    },
    /// A region too small, or misaligned, for a channel (a mapping that cannot hold one).
    InvalidHeader(LayoutError),
    /// The ring stopped ([`RingError::Corrupt`] or [`RingError::PeerFailed`]).
    Corrupt(RingError),
    /// A message longer than a slot holds.
    MessageTooLong {
        /// Its length.
        len: usize,
        /// The largest message the channel takes.
        max: usize,
    },
    /// The next message does not fit in the buffer; nothing was consumed.
    BufferTooSmall {
        /// The message's length.
        len: usize,
        /// The buffer's length.
        capacity: usize,
    },
    /// Full (send) or empty (receive), and the call does not block.
    WouldBlock,
    /// The deadline passed.
    TimedOut,
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error's classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Io { .. } => ErrorKind::Io,
            Self::Announce { .. } | Self::DuplicateChannel { .. } => ErrorKind::BadAnnouncement,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::WrongDirection { .. } => ErrorKind::WrongDirection,
            Self::Busy { .. } => ErrorKind::Busy,
            Self::InvalidHeader(_) => ErrorKind::InvalidHeader,
            Self::Corrupt(_) => ErrorKind::Corrupt,
            Self::MessageTooLong { .. } => ErrorKind::MessageTooLong,
            Self::BufferTooSmall { .. } => ErrorKind::BufferTooSmall,
            Self::WouldBlock => ErrorKind::WouldBlock,
            Self::TimedOut => ErrorKind::TimedOut,
        }
    }

    /// Whether the call could succeed later without anything changing but time (would block,
    /// timed out).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    }

    /// An I/O error while doing `what`.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// An I/O error on `path` while doing `verb`.
    pub(crate) fn io_path(verb: &str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::io(format!("{verb} {}", path.into().display()), source)
    }
}

impl From<RingError> for Error {
    fn from(e: RingError) -> Self {
        match e {
            RingError::WouldBlock => Self::WouldBlock,
            RingError::MessageTooLong { len, max } => Self::MessageTooLong { len, max },
            RingError::BufferTooSmall { len, capacity } => Self::BufferTooSmall { len, capacity },
            RingError::Layout(e) => Self::InvalidHeader(e),
            RingError::Corrupt { .. } | RingError::PeerFailed { .. } => Self::Corrupt(e),
        }
    }
}

impl From<LayoutError> for Error {
    fn from(e: LayoutError) -> Self {
        Self::InvalidHeader(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, source } => write!(f, "cannot {what}: {source}"),
            Self::Announce { word, error } => {
                write!(f, "malformed kernel command-line word `{word}`: {error}")
            }
            Self::DuplicateChannel { name } => {
                write!(f, "channel `{name}` is announced more than once")
            }
            Self::NotFound { name } => write!(f, "no channel `{name}` is announced"),
            Self::WrongDirection { name, direction } => {
                let (linux, wanted) = if direction.linux_produces() {
                    ("producer", "receive from")
                } else {
                    ("consumer", "send to")
                };
                write!(
                    f,
                    "channel `{name}` is {}: Linux is its {linux} and cannot {wanted} it",
                    direction.as_str()
                )
            }
            Self::Busy { name, end } => {
                write!(
                    f,
                    "the {end} end of channel `{name}` is in use by another endpoint"
                )
            }
            Self::InvalidHeader(e) => write!(f, "not a usable channel: {e}"),
            Self::Corrupt(e) => e.fmt(f),
            Self::MessageTooLong { len, max } => {
                write!(
                    f,
                    "message of {len} bytes is longer than the channel's {max}-byte maximum"
                )
            }
            Self::BufferTooSmall { len, capacity } => write!(
                f,
                "next message of {len} bytes does not fit in a {capacity}-byte buffer"
            ),
            Self::WouldBlock => write!(f, "channel would block"),
            Self::TimedOut => write!(f, "timed out"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    /// The nearest [`io::ErrorKind`]; the message is kept.
    fn from(e: Error) -> Self {
        let kind = match e.kind() {
            ErrorKind::Io => match &e {
                Error::Io { source, .. } => source.kind(),
                _ => io::ErrorKind::Other,
            },
            ErrorKind::BadAnnouncement | ErrorKind::InvalidHeader | ErrorKind::Corrupt => {
                io::ErrorKind::InvalidData
            }
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::WrongDirection | ErrorKind::MessageTooLong | ErrorKind::BufferTooSmall => {
                io::ErrorKind::InvalidInput
            }
            ErrorKind::Busy => io::ErrorKind::ResourceBusy,
            ErrorKind::WouldBlock => io::ErrorKind::WouldBlock,
            ErrorKind::TimedOut => io::ErrorKind::TimedOut,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_ring::Corruption;

    #[test]
    fn ring_errors_map_to_kinds() {
        let cases = [
            (RingError::WouldBlock, ErrorKind::WouldBlock),
            (
                RingError::MessageTooLong { len: 9, max: 8 },
                ErrorKind::MessageTooLong,
            ),
            (
                RingError::BufferTooSmall {
                    len: 9,
                    capacity: 8,
                },
                ErrorKind::BufferTooSmall,
            ),
            (
                RingError::Layout(LayoutError::NotInitialized),
                ErrorKind::InvalidHeader,
            ),
            (
                RingError::Corrupt {
                    what: Corruption::SlotSequence,
                },
                ErrorKind::Corrupt,
            ),
            (RingError::PeerFailed { what: None }, ErrorKind::Corrupt),
        ];
        for (ring, kind) in cases {
            assert_eq!(Error::from(ring).kind(), kind, "{ring:?}");
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let e = Error::from(RingError::Corrupt {
            what: Corruption::ProducerIndexBackwards,
        });
        assert_eq!(
            e.to_string(),
            "channel corrupt: producer index moved backwards"
        );
        let e = Error::WrongDirection {
            name: "events".into(),
            direction: Direction::RtToLinux,
        };
        assert_eq!(
            e.to_string(),
            "channel `events` is rt-to-linux: Linux is its consumer and cannot send to it"
        );
        let io: io::Error = Error::WouldBlock.into();
        assert_eq!(io.kind(), io::ErrorKind::WouldBlock);
        let io: io::Error = Error::TimedOut.into();
        assert_eq!(io.kind(), io::ErrorKind::TimedOut);
    }
}
