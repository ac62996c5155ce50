//! The channels as the hypervisor hands them to the partitions: where each one lies, and the
//! words that tell Linux.
//!
//! Before either partition runs, the hypervisor initializes every channel's ring header (the
//! image does the writing; the layout belongs to `bulkhead-ring`), so that neither side has
//! to trust the other to do it. The RT kernel learns its channels from its boot information
//! (`rt_boot`); Linux from its command line: [`compose_linux_cmdline`] writes the config's
//! command line, the kernel module's arguments, then one `bulkhead.channel=` word per channel
//! (`bulkhead_ring::announce`).

use core::fmt::{self, Write};

use bulkhead_config::{ChannelConfig, ChannelDirection, Config, Notify};
use bulkhead_ring::announce::{Announcement, Direction, NotifyMode};

/// The announcement of `channel` (`None` for a channel whose memory the config does not place:
/// a validated config has none).
pub fn announcement<'a>(cfg: &Config, channel: &'a ChannelConfig) -> Option<Announcement<'a>> {
    let memory = cfg.channel_memory(channel)?;
    Some(Announcement {
        name: channel.name().as_str(),
        direction: match channel.direction() {
            ChannelDirection::LinuxToRt => Direction::LinuxToRt,
            ChannelDirection::RtToLinux => Direction::RtToLinux,
        },
        notify: match channel.notify() {
            Notify::Doorbell => NotifyMode::Doorbell,
            Notify::Poll => NotifyMode::Poll,
        },
        base: memory.base,
        size: memory.size,
    })
}

/// The command line would not fit: it needs this many bytes (without the NUL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdlineTooLong(pub usize);

/// Writes Linux's command line into `out`: the non-empty `parts` (the config's command line,
/// the kernel module's arguments) and every channel's announcement, separated by single
/// spaces, followed by a NUL. Returns the length without the NUL.
pub fn compose_linux_cmdline(
    out: &mut [u8],
    parts: &[&str],
    cfg: &Config,
) -> Result<usize, CmdlineTooLong> {
    let mut w = SliceWriter {
        out,
        len: 0,
        needed: 0,
    };
    for part in parts.iter().filter(|p| !p.is_empty()) {
        w.word(format_args!("{part}"));
    }
    for channel in cfg.channels() {
        if let Some(a) = announcement(cfg, channel) {
            w.word(format_args!("{a}"));
        }
    }
    // Room for the NUL, too.
    if w.needed >= w.out.len() {
        return Err(CmdlineTooLong(w.needed));
    }
    let len = w.len;
    w.out[len] = 0;
    Ok(len)
}

/// Writes into a byte slice, counting what did not fit.
struct SliceWriter<'a> {
    out: &'a mut [u8],
    len: usize,
    needed: usize,
}

impl SliceWriter<'_> {
    fn word(&mut self, args: fmt::Arguments<'_>) {
        if self.needed > 0 {
            let _ = self.write_str(" ");
        }
        let _ = self.write_fmt(args);
    }
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.needed += s.len();
        let end = self.len + s.len();
        if self.needed == end && end < self.out.len() {
            self.out[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_ring::announce::parse_cmdline;
    use std::vec::Vec;

    fn config() -> Config {
        let toml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../configs/bochs-2cpu.toml"
        ))
        .unwrap();
        bulkhead_config::host::load_str(&toml, "bochs-2cpu.toml").unwrap()
    }

    #[test]
    fn linux_gets_its_words_and_every_channel() {
        let cfg = config();
        let mut out = [0xffu8; 2048];
        let n = compose_linux_cmdline(&mut out, &["console=ttyS1 quiet", "", "panic=-1"], &cfg)
            .unwrap();
        let line = core::str::from_utf8(&out[..n]).unwrap();
        assert_eq!(out[n], 0);
        assert!(
            line.starts_with("console=ttyS1 quiet panic=-1 bulkhead.channel="),
            "{line}"
        );
        let all: Vec<_> = parse_cmdline(line).map(Result::unwrap).collect();
        assert_eq!(all.len(), cfg.channels().len());
        assert_eq!(all[0].name, "telemetry");
        assert_eq!(all[0].direction, Direction::RtToLinux);
        assert_eq!((all[0].base, all[0].size), (0x3800_0000, 0x1_0000));
        assert_eq!(all[1].name, "commands");
        assert_eq!(
            all[1].base, 0x3801_0000,
            "packed after the first, 4 KiB aligned"
        );
    }

    #[test]
    fn a_line_that_does_not_fit_says_how_long_it_is() {
        let cfg = config();
        let mut big = [0u8; 2048];
        let full = compose_linux_cmdline(&mut big, &["quiet"], &cfg).unwrap();
        let mut small = [0u8; 64];
        assert_eq!(
            compose_linux_cmdline(&mut small, &["quiet"], &cfg),
            Err(CmdlineTooLong(full))
        );
        // Exactly the length: no room for the NUL.
        let mut exact = std::vec![0u8; full];
        assert_eq!(
            compose_linux_cmdline(&mut exact, &["quiet"], &cfg),
            Err(CmdlineTooLong(full))
        );
        let mut one_more = std::vec![0u8; full + 1];
        assert_eq!(
            compose_linux_cmdline(&mut one_more, &["quiet"], &cfg),
            Ok(full)
        );
    }
}
