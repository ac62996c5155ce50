//! A channel's vocabulary, spelled the same way by the config file, the config binary, the RT
//! boot information and the channel announcement on Linux's command line: which way messages
//! go ([`Direction`]) and how the consumer learns of them ([`Notify`]). Each has one word and one
//! binary code.

use core::fmt;

use crate::Partition;

/// Which way a channel's messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(u8)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Direction {
    /// Linux produces, the RT partition consumes.
    #[default]
    LinuxToRt = 0,
    /// The RT partition produces, Linux consumes.
    RtToLinux = 1,
    /// The hypervisor produces (its console lines), Linux consumes; the RT partition has no end
    /// on it and is not told about it.
    HypervisorToLinux = 2,
}

impl Direction {
    /// Every direction, in code order.
    pub const ALL: [Direction; 3] = [
        Direction::LinuxToRt,
        Direction::RtToLinux,
        Direction::HypervisorToLinux,
    ];

    /// The word in the config file and on Linux's command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LinuxToRt => "linux-to-rt",
            Self::RtToLinux => "rt-to-linux",
            Self::HypervisorToLinux => "hypervisor-to-linux",
        }
    }

    /// The direction spelled `word`.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == word)
    }

    /// The code in the binary layouts (config binary, RT boot information).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The direction with binary code `code`.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::LinuxToRt),
            1 => Some(Self::RtToLinux),
            2 => Some(Self::HypervisorToLinux),
            _ => None,
        }
    }

    /// The partition that writes messages; `None`: the hypervisor does.
    pub const fn producer(self) -> Option<Partition> {
        match self {
            Self::LinuxToRt => Some(Partition::Linux),
            Self::RtToLinux => Some(Partition::Rt),
            Self::HypervisorToLinux => None,
        }
    }

    /// The partition that reads messages.
    pub const fn consumer(self) -> Partition {
        match self {
            Self::LinuxToRt => Partition::Rt,
            Self::RtToLinux | Self::HypervisorToLinux => Partition::Linux,
        }
    }

    /// Whether Linux is the channel's producer (else its consumer).
    pub const fn linux_produces(self) -> bool {
        matches!(self, Self::LinuxToRt)
    }

    /// Whether the RT partition has an end on the channel (it is in its boot information).
    pub const fn involves_rt(self) -> bool {
        !matches!(self, Self::HypervisorToLinux)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a channel's consumer learns about new messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(u8)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Notify {
    /// An interrupt, sent only when the consumer asks for one.
    #[default]
    Doorbell = 0,
    /// The consumer polls.
    Poll = 1,
}

impl Notify {
    /// Both modes, in code order.
    pub const ALL: [Notify; 2] = [Notify::Doorbell, Notify::Poll];

    /// The word in the config file and on Linux's command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Doorbell => "doorbell",
            Self::Poll => "poll",
        }
    }

    /// The mode spelled `word`.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == word)
    }

    /// The code in the binary layouts (config binary, RT boot information).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The mode with binary code `code`.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Doorbell),
            1 => Some(Self::Poll),
            _ => None,
        }
    }
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_codes_round_trip() {
        for d in Direction::ALL {
            assert_eq!(Direction::from_word(d.as_str()), Some(d));
            assert_eq!(Direction::from_code(d.code()), Some(d));
        }
        for n in Notify::ALL {
            assert_eq!(Notify::from_word(n.as_str()), Some(n));
            assert_eq!(Notify::from_code(n.code()), Some(n));
        }
        assert_eq!(Direction::from_code(3), None);
        assert_eq!(Notify::from_code(2), None);
        assert_eq!(Direction::from_word("Linux-To-RT"), None);
    }

    #[test]
    fn ends_follow_the_direction() {
        assert_eq!(Direction::LinuxToRt.producer(), Some(Partition::Linux));
        assert_eq!(Direction::HypervisorToLinux.producer(), None);
        assert_eq!(Direction::HypervisorToLinux.consumer(), Partition::Linux);
        assert!(!Direction::HypervisorToLinux.involves_rt());
        assert!(Direction::LinuxToRt.linux_produces());
        assert!(!Direction::RtToLinux.linux_produces());
    }
}
