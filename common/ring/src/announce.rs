//! How Linux learns where its channels are: one kernel command-line word per channel,
//!
//! ```text
//! bulkhead.channel=NAME,DIRECTION,NOTIFY,BASE,SIZE
//! bulkhead.channel=commands,linux-to-rt,doorbell,0x38010000,0x10000
//! ```
//!
//! `DIRECTION` is `linux-to-rt`, `rt-to-linux` or `hypervisor-to-linux` (the hypervisor's own
//! log: the RT partition has no end on it), `NOTIFY` is `doorbell` or `poll`, `BASE` (the
//! host-physical address of the channel's header page, which is also Linux's guest-physical
//! address: Linux's memory is identity-mapped) and `SIZE` (bytes, header included) are
//! hexadecimal with `0x`. The hypervisor writes these words after the config's command line
//! ([`Announcement`]'s `Display`); a stock kernel ignores a dotted parameter of a module it does
//! not have, and keeps it in `/proc/cmdline`, where the Linux library reads it back
//! ([`parse_cmdline`]). The slot size is not announced: it is in the channel's header, which the
//! hypervisor initializes before either partition runs.
//!
//! The words come from the hypervisor, but a program reading `/proc/cmdline` cannot tell who
//! wrote them (a boot loader may add words too): every field is checked, and a malformed word
//! is an error naming the field, never a guess.

use core::fmt;

use bulkhead_abi::limits;

/// The parameter's name and `=`.
pub const PARAM: &str = "bulkhead.channel=";
/// Longest channel name (the config's limit).
pub const MAX_NAME_LEN: usize = limits::NAME_LEN;
/// Smallest channel: the header and [`MIN_SLOTS`] slots of [`MIN_SLOT_SIZE`] bytes.
pub const MIN_CHANNEL_SIZE: u64 = limits::CHANNEL_MIN_SIZE;
/// Alignment of a channel's base and size.
pub const CHANNEL_ALIGN: u64 = limits::CHANNEL_ALIGN;

/// Which way a channel's messages go: the ABI's vocabulary.
pub use bulkhead_abi::channel::Direction;
/// How a channel's consumer learns about new messages: the ABI's vocabulary (named apart from
/// the ring's [`Notify`](crate::Notify), which says whether to ring now).
pub use bulkhead_abi::channel::Notify as NotifyMode;

/// One channel as announced to Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Announcement<'a> {
    /// The channel's name from the config.
    pub name: &'a str,
    /// Which way its messages go.
    pub direction: Direction,
    /// How its consumer is notified.
    pub notify: NotifyMode,
    /// Physical address of its header page (4 KiB aligned).
    pub base: u64,
    /// Bytes, header included (a multiple of 4 KiB).
    pub size: u64,
}

/// What is wrong with a `bulkhead.channel=` word; each names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceError {
    /// Fewer or more than the five comma-separated fields.
    FieldCount,
    /// The name is empty, longer than [`MAX_NAME_LEN`] or has a character outside
    /// `[A-Za-z0-9_.-]`.
    Name,
    /// Not `linux-to-rt`, `rt-to-linux` or `hypervisor-to-linux`.
    Direction,
    /// Not `doorbell` or `poll`.
    Notify,
    /// Not `0x` and hexadecimal digits, not 4 KiB aligned, or the channel would end beyond
    /// the 64-bit address space.
    Base,
    /// Not `0x` and hexadecimal digits, not a multiple of 4 KiB, or smaller than
    /// [`MIN_CHANNEL_SIZE`].
    Size,
}

impl fmt::Display for AnnounceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FieldCount => "expected NAME,DIRECTION,NOTIFY,BASE,SIZE",
            Self::Name => "NAME: 1 to 32 characters of A-Z a-z 0-9 _ . -",
            Self::Direction => "DIRECTION: linux-to-rt, rt-to-linux or hypervisor-to-linux",
            Self::Notify => "NOTIFY: doorbell or poll",
            Self::Base => "BASE: a 4 KiB-aligned hexadecimal address (0x...)",
            Self::Size => "SIZE: a hexadecimal multiple of 4 KiB (0x...), at least 0x2000",
        })
    }
}

impl fmt::Display for Announcement<'_> {
    /// The command-line word, `bulkhead.channel=...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PARAM}{},{},{},{:#x},{:#x}",
            self.name,
            self.direction.as_str(),
            self.notify.as_str(),
            self.base,
            self.size
        )
    }
}

impl<'a> Announcement<'a> {
    /// Parses the value after `bulkhead.channel=`.
    pub fn parse_value(value: &'a str) -> Result<Self, AnnounceError> {
        let mut fields = value.split(',');
        let mut next = || fields.next().ok_or(AnnounceError::FieldCount);
        let (name, direction, notify, base, size) = (next()?, next()?, next()?, next()?, next()?);
        if fields.next().is_some() {
            return Err(AnnounceError::FieldCount);
        }
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !name_ok {
            return Err(AnnounceError::Name);
        }
        let direction = Direction::from_word(direction).ok_or(AnnounceError::Direction)?;
        let notify = NotifyMode::from_word(notify).ok_or(AnnounceError::Notify)?;
        let base = parse_hex(base).ok_or(AnnounceError::Base)?;
        let size = parse_hex(size).ok_or(AnnounceError::Size)?;
        if size % CHANNEL_ALIGN != 0 || size < MIN_CHANNEL_SIZE {
            return Err(AnnounceError::Size);
        }
        if base % CHANNEL_ALIGN != 0 || base.checked_add(size).is_none() {
            return Err(AnnounceError::Base);
        }
        Ok(Self {
            name,
            direction,
            notify,
            base,
            size,
        })
    }
}

fn parse_hex(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("0x")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Every `bulkhead.channel=` word of a kernel command line, parsed, in order; other words
/// are skipped.
pub fn parse_cmdline(
    cmdline: &str,
) -> impl Iterator<Item = Result<Announcement<'_>, AnnounceError>> + '_ {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|word| word.strip_prefix(PARAM))
        .map(Announcement::parse_value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::format;
    use std::string::ToString;
    use std::vec::Vec;

    const COMMANDS: Announcement<'static> = Announcement {
        name: "commands",
        direction: Direction::LinuxToRt,
        notify: NotifyMode::Doorbell,
        base: 0x3801_0000,
        size: 0x1_0000,
    };

    #[test]
    fn the_word_round_trips() {
        let word = COMMANDS.to_string();
        assert_eq!(
            word,
            "bulkhead.channel=commands,linux-to-rt,doorbell,0x38010000,0x10000"
        );
        let cmdline = format!("console=ttyS1 quiet {word} bulkhead.init=poweroff");
        let all: Vec<_> = parse_cmdline(&cmdline).collect();
        assert_eq!(all, [Ok(COMMANDS)]);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (
                "commands,linux-to-rt,doorbell,0x38010000",
                AnnounceError::FieldCount,
            ),
            (
                "commands,linux-to-rt,doorbell,0x38010000,0x10000,x",
                AnnounceError::FieldCount,
            ),
            (
                ",linux-to-rt,doorbell,0x38010000,0x10000",
                AnnounceError::Name,
            ),
            (
                "com mands,linux-to-rt,doorbell,0x38010000,0x10000",
                AnnounceError::Name,
            ),
            (
                "c/d,linux-to-rt,doorbell,0x38010000,0x10000",
                AnnounceError::Name,
            ),
            (
                "commands,to-rt,doorbell,0x38010000,0x10000",
                AnnounceError::Direction,
            ),
            (
                "commands,linux-to-rt,bell,0x38010000,0x10000",
                AnnounceError::Notify,
            ),
            (
                "commands,linux-to-rt,poll,38010000,0x10000",
                AnnounceError::Base,
            ),
            ("commands,linux-to-rt,poll,0x,0x10000", AnnounceError::Base),
            (
                "commands,linux-to-rt,poll,0x38010800,0x10000",
                AnnounceError::Base,
            ),
            (
                "commands,linux-to-rt,poll,0xfffffffffffff000,0x2000",
                AnnounceError::Base,
            ),
            (
                "commands,linux-to-rt,poll,0x38010000,0x1000",
                AnnounceError::Size,
            ),
            (
                "commands,linux-to-rt,poll,0x38010000,0x10800",
                AnnounceError::Size,
            ),
            (
                "commands,linux-to-rt,poll,0x38010000,0x+1000",
                AnnounceError::Size,
            ),
            (
                "commands,linux-to-rt,poll,0x38010000,0x10000000000000000",
                AnnounceError::Size,
            ),
        ];
        for (value, want) in cases {
            assert_eq!(Announcement::parse_value(value), Err(want), "{value}");
        }
        let long = "a".repeat(33);
        assert_eq!(
            Announcement::parse_value(&format!("{long},rt-to-linux,poll,0x1000,0x2000")),
            Err(AnnounceError::Name)
        );
    }

    #[test]
    fn the_hypervisor_log_direction() {
        let a = Announcement::parse_value("hv-log,hypervisor-to-linux,poll,0x38040000,0x40000")
            .unwrap();
        assert_eq!(a.direction, Direction::HypervisorToLinux);
        assert!(!a.direction.linux_produces());
        assert!(Direction::LinuxToRt.linux_produces());
        assert_eq!(
            a.to_string(),
            "bulkhead.channel=hv-log,hypervisor-to-linux,poll,0x38040000,0x40000"
        );
    }

    #[test]
    fn other_words_are_skipped() {
        assert_eq!(
            parse_cmdline("bulkhead.channels=x bulkhead.init=panic quiet").count(),
            0
        );
    }

    proptest! {
        /// Whatever the command line holds, parsing never panics, and whatever parses prints
        /// back as the same word (canonical form).
        #[test]
        fn parse_is_total_and_canonical(words in proptest::collection::vec("[ -~]{0,80}", 0..6)) {
            let cmdline: Vec<_> = words.iter().map(|w| format!("{PARAM}{w}")).collect();
            let cmdline = cmdline.join(" ");
            for a in parse_cmdline(&cmdline).flatten() {
                let again = a.to_string();
                let back: Vec<_> = parse_cmdline(&again).collect();
                prop_assert_eq!(back, [Ok(a)]);
            }
        }

        #[test]
        fn valid_announcements_round_trip(
            name in "[A-Za-z0-9_.-]{1,32}",
            direction in 0u8..3,
            poll in any::<bool>(),
            page in 0u64..(1 << 40),
            pages in 2u64..(1 << 20),
        ) {
            let a = Announcement {
                name: &name,
                direction: match direction {
                    0 => Direction::LinuxToRt,
                    1 => Direction::RtToLinux,
                    _ => Direction::HypervisorToLinux,
                },
                notify: if poll { NotifyMode::Poll } else { NotifyMode::Doorbell },
                base: page * CHANNEL_ALIGN,
                size: pages * CHANNEL_ALIGN,
            };
            let word = a.to_string();
            let back: Vec<_> = parse_cmdline(&word).collect();
            prop_assert_eq!(back, [Ok(a)]);
        }
    }
}
