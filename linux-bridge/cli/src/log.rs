//! `bulkhead log hypervisor|rt`: the hypervisor's and the RT kernel's console lines.
//!
//! Both print on a serial console, and each also copies every line into a log channel, one
//! message per line, never waiting for Linux (the framing is `bulkhead_ring::log`'s):
//!
//! - the hypervisor into the config's `hypervisor-to-linux` channel (there is at most one), found
//!   here by its direction;
//! - the RT kernel started with `log=CHANNEL` into that `rt-to-linux` channel, found here by its
//!   name: `rt-log` by convention and by default.
//!
//! `--channel` names another channel. Reading takes the lines out of the channel (the ring
//! has one consumer): each run shows the lines that came since the previous one. A producer
//! that finds the ring full drops lines and says so in the next line that fits,
//! `[... N lines dropped]`; a line longer than the channel's messages ends in ` [cut]`.

use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead_channel::{Announcements, ChannelInfo, ChannelReceiver, Direction, ErrorKind};
use bulkhead_ring::log::{is_cut, parse_drop_marker};
use serde::Serialize;

use crate::show::json;
use crate::{Cause, Failure, out};

/// The RT kernel's log channel by convention.
pub const RT_CHANNEL: &str = "rt-log";

/// Whose log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The hypervisor's: the `hypervisor-to-linux` channel.
    Hypervisor,
    /// The RT kernel's: the `rt-to-linux` channel it was told with `log=` (`rt-log`).
    Rt,
}

/// What `log` was asked to do.
#[derive(Debug)]
pub struct Options<'a> {
    /// Whose log.
    pub source: Source,
    /// The channel, when not the default.
    pub channel: Option<&'a str>,
    /// Stop after this many lines, waiting for them.
    pub count: Option<u64>,
    /// Keep waiting for new lines.
    pub follow: bool,
    /// How long the whole command may wait.
    pub timeout: Option<Duration>,
    /// Print JSON lines.
    pub json: bool,
}

/// One message of a log channel, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Entry {
    /// A line (bytes that are not UTF-8 replaced); `cut` when the producer cut it.
    Line {
        /// The line, its cut marker included.
        text: String,
        /// Whether it ends in the cut marker.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        cut: bool,
    },
    /// The producer dropped this many lines here (the ring was full).
    Dropped {
        /// How many.
        dropped: u64,
    },
}

impl Entry {
    /// Reads one message.
    pub fn new(msg: &[u8]) -> Self {
        if let Some(dropped) = parse_drop_marker(msg) {
            return Self::Dropped { dropped };
        }
        Self::Line {
            text: String::from_utf8_lossy(msg).into_owned(),
            cut: is_cut(msg),
        }
    }

    /// The line as text prints it: control characters escaped (a line is one line, and a
    /// peer's bytes do not drive the terminal); a marker as it came.
    pub fn text(&self) -> String {
        match self {
            Self::Line { text, .. } => {
                let mut s = String::with_capacity(text.len());
                for c in text.chars() {
                    if c.is_control() && c != '\t' {
                        s.extend(c.escape_default());
                    } else {
                        s.push(c);
                    }
                }
                s
            }
            Self::Dropped { dropped } => {
                let mut buf = [0u8; 48];
                let len = bulkhead_ring::log::drop_marker(*dropped, &mut buf);
                String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned()
            }
        }
    }
}

/// The channel `opts` reads: `--channel`, else the hypervisor's by its direction or the RT
/// kernel's by its conventional name.
fn find<'a>(
    announcements: &'a Announcements,
    opts: &Options<'_>,
) -> Result<&'a ChannelInfo, Failure> {
    let name = match (opts.channel, opts.source) {
        (Some(name), _) => name,
        (None, Source::Rt) => RT_CHANNEL,
        (None, Source::Hypervisor) => {
            return announcements
                .iter()
                .find(|c| c.direction == Direction::HypervisorToLinux)
                .ok_or(Failure {
                    channel: None,
                    cause: Cause::NoHypervisorLog,
                });
        }
    };
    announcements.find(name).map_err(Failure::on(name))
}

/// `bulkhead log`.
pub fn run(announcements: &Announcements, mem: &Path, opts: Options<'_>) -> Result<(), Failure> {
    let info = find(announcements, &opts)?;
    let on = Failure::on(&info.name);
    let mut rx = ChannelReceiver::open_info(info, mem).map_err(&on)?;
    let mut buf = vec![0; rx.max_message()];
    let waits = opts.follow || opts.count.is_some();
    let deadline = opts.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut shown = 0u64;
    while opts.count.is_none_or(|n| shown < n) {
        let got = match (waits, deadline) {
            (false, _) => rx.try_receive(&mut buf),
            (true, Some(deadline)) => rx.receive_until(&mut buf, deadline),
            (true, None) => rx.receive(&mut buf),
        };
        let len = match got {
            Ok((len, _priority)) => len,
            Err(e) if e.kind() == ErrorKind::WouldBlock && !waits => break,
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                return Err(Failure {
                    channel: Some(info.name.clone()),
                    cause: Cause::LogTimedOut {
                        shown,
                        timeout: opts.timeout.unwrap_or_default(),
                    },
                });
            }
            Err(e) => return Err(on(e)),
        };
        let entry = Entry::new(buf.get(..len).unwrap_or_default());
        if opts.json {
            json(&entry)?;
        } else {
            out(format_args!("{}", entry.text()))?;
        }
        shown += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_markers_cuts_and_bytes() {
        assert_eq!(
            Entry::new(b"[... 3 lines dropped]"),
            Entry::Dropped { dropped: 3 }
        );
        assert_eq!(Entry::Dropped { dropped: 1 }.text(), "[... 1 line dropped]");
        let cut = Entry::new(b"a long line [cut]");
        assert_eq!(
            cut,
            Entry::Line {
                text: "a long line [cut]".to_owned(),
                cut: true
            }
        );
        let odd = Entry::new(b"esc\x1b[2J\tkeep \\ \xff");
        assert_eq!(odd.text(), "esc\\u{1b}[2J\tkeep \\ \u{fffd}");
        assert_eq!(
            serde_json::to_string(&Entry::new(b"plain")).unwrap(),
            r#"{"text":"plain"}"#
        );
        assert_eq!(
            serde_json::to_string(&cut).unwrap(),
            r#"{"text":"a long line [cut]","cut":true}"#
        );
        assert_eq!(
            serde_json::to_string(&Entry::Dropped { dropped: 2 }).unwrap(),
            r#"{"dropped":2}"#
        );
    }
}
