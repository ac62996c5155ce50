//! Discovery: the channels the hypervisor announced on the kernel command line
//! (`bulkhead.channel=NAME,DIRECTION,NOTIFY,BASE,SIZE`, parsed by
//! [`bulkhead_ring::announce`]), as owned [`ChannelInfo`]s.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead_ring::Ring;
use bulkhead_ring::announce::{self, Announcement, Direction, NotifyMode};

use crate::error::{Error, Result};
use crate::mapping::{Caching, Mapping};
use crate::status::Status;

/// How often [`ChannelInfo::reestablish`] looks whether the channel is back.
const REESTABLISH_POLL: Duration = Duration::from_millis(5);

/// Where the running kernel's command line is.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// One announced channel (an owned copy of an [`Announcement`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelInfo {
    /// The channel's name from the config.
    pub name: String,
    /// Which way its messages go.
    pub direction: Direction,
    /// How the channel's consumer is notified (`doorbell`: this library rings the RT side).
    pub notify: NotifyMode,
    /// Physical address of its header page (what to map `/dev/mem` at).
    pub base: u64,
    /// Bytes, header included.
    pub size: u64,
}

impl ChannelInfo {
    /// An owned copy of `a`.
    pub fn from_announcement(a: &Announcement<'_>) -> Self {
        Self {
            name: a.name.to_owned(),
            direction: a.direction,
            notify: a.notify,
            base: a.base,
            size: a.size,
        }
    }

    /// The announcement this is a copy of.
    pub fn announcement(&self) -> Announcement<'_> {
        Announcement {
            name: &self.name,
            direction: self.direction,
            notify: self.notify,
            base: self.base,
            size: self.size,
        }
    }

    /// Maps the channel's memory from `mem` (`/dev/mem`, or a file standing in for it).
    pub fn map(&self, mem: impl AsRef<Path>) -> Result<Mapping> {
        let len = usize::try_from(self.size).map_err(|_| {
            Error::io(
                format!("map channel `{}`", self.name),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "too large"),
            )
        })?;
        Mapping::open_with(mem, self.base, len, Caching::default())
    }

    /// The channel's header as it is now, read without attaching or writing anything.
    pub fn inspect(&self, mem: impl AsRef<Path>) -> Result<Status> {
        Status::read(&self.map(mem)?)
    }

    /// Asks the side that re-establishes this channel (the RT side: the task that has it open)
    /// to initialize it again (and rings its doorbell, where it has one), then waits until `deadline` for the channel to be usable with
    /// the request taken ([`Error::TimedOut`] if not). The way back after the channel failed
    /// (`bulkhead reset`): messages in it are lost, and every endpoint open on it, in any
    /// process, stops and must be opened again. It never attaches as an endpoint.
    pub fn reestablish(&self, mem: impl AsRef<Path>, deadline: Instant) -> Result<()> {
        let mapping = self.map(mem)?;
        let region = mapping.region()?;
        bulkhead_ring::request_reinit(region);
        // A task waiting on the channel sees the request when it wakes: wake it now (its
        // sleep would end by itself, later).
        if let Some(doorbell) = crate::doorbell::Doorbell::for_channel(self) {
            let _ = doorbell.ring();
        }
        loop {
            if !bulkhead_ring::reinit_requested(region) && Ring::attach(region).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::TimedOut);
            }
            std::thread::sleep(REESTABLISH_POLL);
        }
    }
}

impl fmt::Display for ChannelInfo {
    /// The command-line word, `bulkhead.channel=...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.announcement().fmt(f)
    }
}

/// Every channel announced on a kernel command line, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcements {
    channels: Vec<ChannelInfo>,
}

impl Announcements {
    /// Parses the `bulkhead.channel=` words of `cmdline` (other words are ignored). A
    /// malformed word, or a name announced twice, is an error naming the word and the field.
    pub fn parse(cmdline: &str) -> Result<Self> {
        let mut channels: Vec<ChannelInfo> = Vec::new();
        let words = cmdline
            .split_ascii_whitespace()
            .filter(|w| w.starts_with(announce::PARAM));
        for (word, parsed) in words.zip(announce::parse_cmdline(cmdline)) {
            let a = parsed.map_err(|error| Error::Announce {
                word: word.to_owned(),
                error,
            })?;
            if channels.iter().any(|c| c.name == a.name) {
                return Err(Error::DuplicateChannel {
                    name: a.name.to_owned(),
                });
            }
            channels.push(ChannelInfo::from_announcement(&a));
        }
        Ok(Self { channels })
    }

    /// Reads and parses a command line from `path` (`/proc/cmdline`, or a test's file).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let cmdline = std::fs::read_to_string(path).map_err(|e| Error::io_path("read", path, e))?;
        Self::parse(&cmdline)
    }

    /// The running kernel's channels, from [`PROC_CMDLINE`].
    pub fn from_proc() -> Result<Self> {
        Self::read(PROC_CMDLINE)
    }

    /// The channel called `name`.
    pub fn get(&self, name: &str) -> Option<&ChannelInfo> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The channel called `name`, or [`Error::NotFound`].
    pub fn find(&self, name: &str) -> Result<&ChannelInfo> {
        self.get(name).ok_or_else(|| Error::NotFound {
            name: name.to_owned(),
        })
    }

    /// The channels, in command-line order.
    pub fn iter(&self) -> std::slice::Iter<'_, ChannelInfo> {
        self.channels.iter()
    }

    /// How many channels are announced.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

impl<'a> IntoIterator for &'a Announcements {
    type Item = &'a ChannelInfo;
    type IntoIter = std::slice::Iter<'a, ChannelInfo>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const CMDLINE: &str = "console=ttyS1 \
        bulkhead.channel=commands,linux-to-rt,doorbell,0x38010000,0x10000 quiet \
        bulkhead.channel=events,rt-to-linux,poll,0x38020000,0x4000\n";

    #[test]
    fn parses_every_channel_in_order() {
        let all = Announcements::parse(CMDLINE).unwrap();
        assert_eq!(all.len(), 2);
        let names: Vec<_> = all.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["commands", "events"]);
        let events = all.find("events").unwrap();
        assert_eq!(
            (events.direction, events.notify, events.base, events.size),
            (Direction::RtToLinux, NotifyMode::Poll, 0x3802_0000, 0x4000)
        );
        assert_eq!(
            events.to_string(),
            "bulkhead.channel=events,rt-to-linux,poll,0x38020000,0x4000"
        );
        let e = all.find("nope").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "no channel `nope` is announced");
        assert!(Announcements::parse("quiet").unwrap().is_empty());
    }

    #[test]
    fn a_bad_word_is_named_with_its_field() {
        let e = Announcements::parse(
            "bulkhead.channel=a,rt-to-linux,poll,0x1000,0x2000 \
             bulkhead.channel=b,sideways,poll,0x1000,0x2000",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadAnnouncement);
        assert_eq!(
            e.to_string(),
            "malformed kernel command-line word `bulkhead.channel=b,sideways,poll,0x1000,0x2000`: \
             DIRECTION: linux-to-rt, rt-to-linux or hypervisor-to-linux"
        );
        let e = Announcements::parse(
            "bulkhead.channel=a,rt-to-linux,poll,0x1000,0x2000 \
             bulkhead.channel=a,linux-to-rt,poll,0x4000,0x2000",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "channel `a` is announced more than once");
    }

    #[test]
    fn reads_a_file() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), CMDLINE).unwrap();
        assert_eq!(Announcements::read(f.path()).unwrap().len(), 2);
        let e = Announcements::read("/nonexistent/cmdline").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
    }
}
