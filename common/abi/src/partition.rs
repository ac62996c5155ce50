//! The two partitions, as every part names them (config keys, log and report lines).

use core::fmt;

/// One of the two partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Partition {
    /// The partition running stock Linux.
    Linux = 0,
    /// The partition running the real-time kernel.
    Rt = 1,
}

impl Partition {
    /// Both partitions, in the order the config lists and checks them.
    pub const ALL: [Partition; 2] = [Partition::Linux, Partition::Rt];

    /// The partition's word: its key in the config file (`partitions.<key>`) and its name in
    /// console lines.
    pub const fn key(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Rt => "rt",
        }
    }

    /// The partition whose [`key`](Self::key) is `word`.
    pub fn from_key(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.key() == word)
    }

    /// The partition's index (0 Linux, 1 RT).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The partition with index `index`.
    pub const fn from_index(index: usize) -> Option<Self> {
        match index {
            0 => Some(Self::Linux),
            1 => Some(Self::Rt),
            _ => None,
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}
