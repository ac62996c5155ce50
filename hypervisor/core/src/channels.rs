//! The channels as the hypervisor hands them to the partitions: where each one lies, and the
//! words that tell Linux.
//!
//! Before either partition runs, the hypervisor initializes every channel's ring header (the
//! image does the writing; the layout belongs to `bulkhead-ring`), so that neither side has
//! to trust the other to do it. The RT kernel learns its channels from its boot information
//! (`rt_boot`); Linux from its command line: [`compose_linux_cmdline`] writes the config's
//! command line, the kernel module's arguments, then one `bulkhead.channel=` word per channel
//! (`bulkhead_ring::announce`).
//!
//! Doorbells ([`Doorbells`]): Linux rings a channel whose notification is `doorbell` with the
//! `DOORBELL` hypercall, naming the channel by its base; the hypervisor interrupts the RT
//! partition, at most once per [`DOORBELL_MIN_INTERVAL_US`] per channel and its budget a
//! second. A Linux that rings faster (a bug, or on purpose) gets `COALESCED` and costs the RT
//! side nothing more. A ring held back is owed, not dropped: the channel is remembered, and
//! the first Linux CPU to leave its guest once the interval (or the budget's second) is over
//! delivers it ([`Doorbells::deliver_owed`]; the ringing CPU arms its preemption timer for
//! that moment), if the RT side still waits. So the RT side needs no periodic timer to find
//! held-back messages: its waiters sleep until the doorbell.
//!
//! The RT partition rings Linux with the same hypercall, naming the channel by its base in the
//! RT partition's guest-physical space ([`Doorbells::rt_channel`]); the hypervisor raises the
//! channel device's interrupt (`crate::devices::channel_device`), whose INTx masking already limits
//! Linux to one interrupt per wake-up of its own, so these are not rate-limited here.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bulkhead_config::{ChannelConfig, ChannelDirection, Config, MAX_CHANNELS, Notify};
use bulkhead_ring::announce::{Announcement, Direction, NotifyMode};

use crate::boot::rt::RtLayout;

/// The announcement of `channel` (`None` for a channel whose memory the config does not place:
/// a validated config has none).
pub fn announcement<'a>(cfg: &Config, channel: &'a ChannelConfig) -> Option<Announcement<'a>> {
    let memory = cfg.channel_memory(channel)?;
    Some(Announcement {
        name: channel.name().as_str(),
        direction: match channel.direction() {
            ChannelDirection::LinuxToRt => Direction::LinuxToRt,
            ChannelDirection::RtToLinux => Direction::RtToLinux,
            ChannelDirection::HypervisorToLinux => Direction::HypervisorToLinux,
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

/// Shortest time between two doorbell interrupts of one channel.
pub const DOORBELL_MIN_INTERVAL_US: u64 = 100;

/// What a doorbell hypercall does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    /// Interrupt the RT partition now.
    Interrupt,
    /// The channel rang less than the minimum interval ago: no new interrupt now; one is
    /// owed for the interval's end.
    Coalesced,
    /// The RT side has not asked for a doorbell on that channel since the last one: no
    /// interrupt (it is not waiting; it will see the ring when it looks).
    NotWaiting,
    /// The RT partition has taken its budget of doorbell interrupts for this second
    /// (`rt.doorbells_per_s`, all channels together): no interrupt now; it is owed, for the
    /// next second.
    OverBudget,
    /// No channel with doorbell notification at that base.
    NoSuchChannel,
}

/// The channels that take doorbells, and when each last interrupted the RT partition.
#[derive(Debug)]
pub struct Doorbells {
    bases: [u64; MAX_CHANNELS],
    /// The same channels' indices in the RT partition's boot information (its request words).
    rt_indices: [usize; MAX_CHANNELS],
    /// The same channels' bases in the RT partition's guest-physical space.
    rt_bases: [u64; MAX_CHANNELS],
    /// TSC of the last interrupt per channel (0: never).
    last: [AtomicU64; MAX_CHANNELS],
    count: usize,
    /// Interrupts the RT partition takes per second, all channels together.
    budget_per_s: u64,
    /// TSC at which the current one-second budget window began (0: none yet).
    window_start: AtomicU64,
    /// Interrupts sent in the current window.
    window_sent: AtomicU64,
    /// The channels (a bit per index) whose ring was held back, by the interval or the
    /// budget: an interrupt is owed to each, if the RT side still asks for it then.
    owed: AtomicU32,
}

// The owed channels are the bits of one word.
const _: () = assert!(MAX_CHANNELS <= u32::BITS as usize);

/// What [`Doorbells::deliver_owed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owed {
    /// Owed interrupts it let through now (the caller sends one interrupt for them all).
    pub delivered: u32,
    /// When the earliest one still owed may go (TSC), if any is.
    pub next_due: Option<u64>,
}

impl Doorbells {
    /// The channels of `cfg` whose notification is `doorbell`.
    pub fn from_config(cfg: &Config) -> Self {
        let mut d = Self {
            bases: [0; MAX_CHANNELS],
            rt_indices: [0; MAX_CHANNELS],
            rt_bases: [0; MAX_CHANNELS],
            last: [const { AtomicU64::new(0) }; MAX_CHANNELS],
            count: 0,
            budget_per_s: u64::from(cfg.rt().doorbells_per_s()),
            window_start: AtomicU64::new(0),
            window_sent: AtomicU64::new(0),
            owed: AtomicU32::new(0),
        };
        let layout = RtLayout::plan(cfg).ok();
        // The RT boot information lists the channels the RT partition has an end on, in config
        // order.
        let rt_channels = cfg
            .channels()
            .iter()
            .filter(|c| c.direction().involves_rt());
        for (rt_index, channel) in rt_channels.enumerate() {
            if channel.notify() != Notify::Doorbell || d.count == MAX_CHANNELS {
                continue;
            }
            let rt_base = layout
                .as_ref()
                .and_then(|l| l.shared().get(channel.region_index()))
                .map_or(0, |m| m.gpa().as_u64() + channel.offset());
            if let Some(memory) = cfg.channel_memory(channel) {
                d.bases[d.count] = memory.base;
                d.rt_indices[d.count] = rt_index;
                d.rt_bases[d.count] = rt_base;
                d.count += 1;
            }
        }
        d
    }

    /// Whether `rt_base`, a base in the RT partition's guest-physical space, is a channel that
    /// takes doorbells: the RT side may ring Linux for it.
    pub fn rt_channel(&self, rt_base: u64) -> bool {
        rt_base != 0 && self.rt_bases[..self.count].contains(&rt_base)
    }

    /// How many channels take doorbells.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no channel takes doorbells.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// A doorbell from Linux for the channel at `base`, at TSC `now`, with `min_interval` TSC
    /// ticks between interrupts of one channel. `take_request(rt_index)` takes the RT side's
    /// request for a doorbell on the channel with that index in its boot information (its
    /// request word, which Linux cannot write): only a requested doorbell interrupts, so a
    /// flood from Linux costs the RT partition at most one interrupt per wait of its own. Safe
    /// to call from several CPUs at once: of concurrent rings within the interval, one
    /// interrupts. A ring held back by the interval or the budget is owed
    /// ([`Doorbells::deliver_owed`]).
    ///
    /// `second` is one second in TSC ticks: the RT partition takes at most its budget of
    /// interrupts per window of that length (all channels together; concurrent rings on
    /// several Linux CPUs may exceed it by one each).
    pub fn ring(
        &self,
        base: u64,
        now: u64,
        min_interval: u64,
        second: u64,
        take_request: impl FnMut(usize) -> bool,
    ) -> Ring {
        let Some(i) = self.bases[..self.count].iter().position(|&b| b == base) else {
            return Ring::NoSuchChannel;
        };
        let ring = self.try_interrupt(i, now, min_interval, second, take_request);
        if matches!(ring, Ring::Coalesced | Ring::OverBudget) {
            self.owed.fetch_or(1 << i, Ordering::AcqRel);
        }
        ring
    }

    /// Whether any interrupt is owed (one load: what every Linux exit asks first).
    pub fn owes_any(&self) -> bool {
        self.owed.load(Ordering::Acquire) != 0
    }

    /// Lets through the owed interrupts whose interval and budget allow it at TSC `now` (the
    /// arguments as [`Doorbells::ring`]'s): each goes if the RT side still asks for it (else
    /// it is no longer owed: the RT side is not waiting, it will look at the ring itself).
    /// Called on every exit of a Linux CPU; nothing owed costs one load.
    pub fn deliver_owed(
        &self,
        now: u64,
        min_interval: u64,
        second: u64,
        mut take_request: impl FnMut(usize) -> bool,
    ) -> Owed {
        let mut result = Owed::default();
        let mut owed = self.owed.load(Ordering::Acquire);
        while owed != 0 {
            let i = owed.trailing_zeros() as usize;
            owed &= owed - 1;
            let bit = 1u32 << i;
            // Taken off before the try, so that a ring held back meanwhile, on another CPU,
            // stays owed.
            if self.owed.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
                continue;
            }
            match self.try_interrupt(i, now, min_interval, second, &mut take_request) {
                Ring::Interrupt => result.delivered += 1,
                Ring::Coalesced | Ring::OverBudget => {
                    self.owed.fetch_or(bit, Ordering::AcqRel);
                    let due = self.due(i, min_interval, second);
                    result.next_due = Some(result.next_due.map_or(due, |d| d.min(due)));
                }
                Ring::NotWaiting | Ring::NoSuchChannel => {}
            }
        }
        result
    }

    /// When channel `i` may interrupt again (TSC): its interval's end, or the budget's next
    /// window if the budget is spent, whichever is later.
    fn due(&self, i: usize, min_interval: u64, second: u64) -> u64 {
        let interval_end = self.last[i]
            .load(Ordering::Acquire)
            .saturating_add(min_interval);
        let start = self.window_start.load(Ordering::Acquire);
        if start != 0 && self.window_sent.load(Ordering::Acquire) >= self.budget_per_s {
            interval_end.max(start.saturating_add(second))
        } else {
            interval_end
        }
    }

    /// One interrupt for channel `i` if its interval, the budget and the RT side's request
    /// allow it now (the arguments as [`Doorbells::ring`]'s).
    fn try_interrupt(
        &self,
        i: usize,
        now: u64,
        min_interval: u64,
        second: u64,
        mut take_request: impl FnMut(usize) -> bool,
    ) -> Ring {
        let last = &self.last[i];
        let seen = last.load(Ordering::Acquire);
        if seen != 0 && now.wrapping_sub(seen) < min_interval {
            return Ring::Coalesced;
        }
        let start = self.window_start.load(Ordering::Acquire);
        if start == 0 || now.wrapping_sub(start) >= second {
            if self
                .window_start
                .compare_exchange(start, now.max(1), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.window_sent.store(0, Ordering::Release);
            }
        } else if self.window_sent.load(Ordering::Acquire) >= self.budget_per_s {
            return Ring::OverBudget;
        }
        if !take_request(self.rt_indices[i]) {
            return Ring::NotWaiting;
        }
        // `now` of 0 would read as "never": 1 tick later is the same moment.
        let stamp = now.max(1);
        match last.compare_exchange(seen, stamp, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                self.window_sent.fetch_add(1, Ordering::AcqRel);
                Ring::Interrupt
            }
            Err(_) => Ring::Coalesced,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_ring::announce::{NotifyMode, parse_cmdline};
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
        let hv = all.iter().find(|a| a.name == "hv-log").unwrap();
        assert_eq!(
            (hv.direction, hv.notify),
            (Direction::HypervisorToLinux, NotifyMode::Poll)
        );
    }

    /// The example config with the RT partition's doorbell budget at `per_s` a second.
    fn config_with_budget(per_s: u32) -> Config {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../configs/bochs-2cpu.toml"
        ))
        .unwrap()
        .replace(
            "image = \"rt.elf\"",
            &std::format!("image = \"rt.elf\"\ndoorbells_per_s = {per_s}"),
        );
        bulkhead_config::host::load_str(&text, "budget.toml").unwrap()
    }

    /// One second in the tests' TSC ticks: longer than any test runs, so the budget window
    /// never turns over unless a test says so.
    const SECOND: u64 = u64::MAX / 2;

    /// The RT partition takes at most `rt.doorbells_per_s` interrupts a second, all channels
    /// together; the next second brings a new budget.
    #[test]
    fn doorbell_interrupts_keep_to_the_rt_budget() {
        let d = Doorbells::from_config(&config_with_budget(3));
        let (telemetry, commands, second) = (0x3800_0000, 0x3801_0000, 1_000_000);
        let ring = |base, now| d.ring(base, now, 10, second, |_| true);
        assert_eq!(ring(commands, 1_000), Ring::Interrupt);
        assert_eq!(ring(telemetry, 2_000), Ring::Interrupt);
        assert_eq!(ring(commands, 3_000), Ring::Interrupt);
        assert_eq!(ring(telemetry, 4_000), Ring::OverBudget);
        assert_eq!(ring(commands, 900_000), Ring::OverBudget);
        assert_eq!(ring(commands, 1_001_000), Ring::Interrupt, "a new second");
    }

    #[test]
    fn doorbells_ring_known_channels_at_most_once_per_interval() {
        let cfg = config();
        let d = Doorbells::from_config(&cfg);
        assert_eq!(d.len(), 2, "both example channels take doorbells");
        let (telemetry, commands) = (0x3800_0000, 0x3801_0000);
        assert!(d.rt_channel(RtLayout::plan(&cfg).unwrap().shared()[0].gpa().as_u64()));
        assert!(
            !d.rt_channel(telemetry),
            "a host address is not the RT side's"
        );
        assert!(!d.rt_channel(0));
        assert_eq!(
            d.ring(commands, 1_000, 100, SECOND, |_| true),
            Ring::Interrupt
        );
        assert_eq!(
            d.ring(commands, 1_050, 100, SECOND, |_| true),
            Ring::Coalesced
        );
        assert_eq!(
            d.ring(telemetry, 1_050, 100, SECOND, |_| true),
            Ring::Interrupt,
            "per channel"
        );
        assert_eq!(
            d.ring(commands, 1_100, 100, SECOND, |_| true),
            Ring::Interrupt
        );
        assert_eq!(
            d.ring(0x3802_0000, 5_000, 100, SECOND, |_| true),
            Ring::NoSuchChannel
        );
        assert_eq!(
            d.ring(commands + 8, 5_000, 100, SECOND, |_| true),
            Ring::NoSuchChannel
        );
        // A TSC of 0 still counts as a ring.
        let fresh = Doorbells::from_config(&cfg);
        assert_eq!(
            fresh.ring(commands, 0, 100, SECOND, |_| true),
            Ring::Interrupt
        );
        assert_eq!(
            fresh.ring(commands, 50, 100, SECOND, |_| true),
            Ring::Coalesced
        );
    }

    /// A ring held back by the interval is delivered once the interval is over, if the RT
    /// side still asks; one the RT side no longer asks for is dropped.
    #[test]
    fn a_coalesced_doorbell_is_owed_until_its_interval_ends() {
        let cfg = config();
        let d = Doorbells::from_config(&cfg);
        let requests: [std::sync::atomic::AtomicBool; 4] = Default::default();
        let take = |i: usize| requests[i].swap(false, Ordering::AcqRel);
        let (telemetry, commands) = (0x3800_0000, 0x3801_0000);
        assert_eq!(d.deliver_owed(0, 100, SECOND, take), Owed::default());
        requests[1].store(true, Ordering::Release);
        assert_eq!(d.ring(commands, 1_000, 100, SECOND, take), Ring::Interrupt);
        // The RT side woke, drained the ring and waits again; Linux rings within the interval.
        requests[1].store(true, Ordering::Release);
        assert_eq!(d.ring(commands, 1_040, 100, SECOND, take), Ring::Coalesced);
        assert_eq!(d.ring(commands, 1_060, 100, SECOND, take), Ring::Coalesced);
        let early = d.deliver_owed(1_099, 100, SECOND, take);
        assert_eq!(
            early,
            Owed {
                delivered: 0,
                next_due: Some(1_100)
            }
        );
        assert!(requests[1].load(Ordering::Acquire), "the request stays");
        let due = d.deliver_owed(1_100, 100, SECOND, take);
        assert_eq!(
            due,
            Owed {
                delivered: 1,
                next_due: None
            }
        );
        assert!(
            !requests[1].load(Ordering::Acquire),
            "taken by the owed interrupt"
        );
        assert_eq!(
            d.deliver_owed(5_000, 100, SECOND, take),
            Owed::default(),
            "once"
        );
        // Owed while the RT side stops asking: nothing is sent, nothing stays owed.
        requests[0].store(true, Ordering::Release);
        assert_eq!(d.ring(telemetry, 6_000, 100, SECOND, take), Ring::Interrupt);
        assert_eq!(d.ring(telemetry, 6_010, 100, SECOND, take), Ring::Coalesced);
        assert_eq!(d.deliver_owed(7_000, 100, SECOND, take), Owed::default());
        assert_eq!(d.deliver_owed(8_000, 100, SECOND, take), Owed::default());
    }

    /// A ring held back by the budget is owed to the next second, and its delivery counts
    /// against that second's budget.
    #[test]
    fn an_over_budget_doorbell_is_owed_until_the_next_second() {
        let d = Doorbells::from_config(&config_with_budget(1));
        let (telemetry, commands, second) = (0x3800_0000, 0x3801_0000, 1_000_000);
        assert_eq!(
            d.ring(commands, 1_000, 10, second, |_| true),
            Ring::Interrupt
        );
        assert_eq!(
            d.ring(telemetry, 2_000, 10, second, |_| true),
            Ring::OverBudget
        );
        assert_eq!(
            d.ring(commands, 3_000, 10, second, |_| true),
            Ring::OverBudget
        );
        assert_eq!(
            d.deliver_owed(500_000, 10, second, |_| true),
            Owed {
                delivered: 0,
                next_due: Some(1_001_000)
            }
        );
        // The next second's budget of one goes to the first owed channel; the other waits
        // for the second after.
        let next = d.deliver_owed(1_001_000, 10, second, |_| true);
        assert_eq!(
            next,
            Owed {
                delivered: 1,
                next_due: Some(2_001_000)
            }
        );
        assert_eq!(
            d.deliver_owed(2_001_000, 10, second, |_| true),
            Owed {
                delivered: 1,
                next_due: None
            }
        );
    }

    /// Only a doorbell the RT side asked for interrupts it: a flood from Linux without a
    /// request costs nothing, and one request lets one interrupt through.
    #[test]
    fn only_requested_doorbells_interrupt() {
        let cfg = config();
        let d = Doorbells::from_config(&cfg);
        let requests: [std::sync::atomic::AtomicBool; 4] = Default::default();
        let take = |i: usize| requests[i].swap(false, Ordering::AcqRel);
        let commands = 0x3801_0000;
        for now in 0..1000 {
            assert_eq!(
                d.ring(commands, now * 1_000, 100, SECOND, take),
                Ring::NotWaiting
            );
        }
        // `commands` is the RT side's second channel (telemetry, commands, rt-status, rt-log).
        requests[1].store(true, Ordering::Release);
        assert_eq!(
            d.ring(commands, 2_000_000, 100, SECOND, take),
            Ring::Interrupt
        );
        assert_eq!(
            d.ring(commands, 3_000_000, 100, SECOND, take),
            Ring::NotWaiting
        );
        // The telemetry channel's request is its own.
        requests[0].store(true, Ordering::Release);
        assert_eq!(
            d.ring(commands, 4_000_000, 100, SECOND, take),
            Ring::NotWaiting
        );
        assert_eq!(
            d.ring(0x3800_0000, 4_000_000, 100, SECOND, take),
            Ring::Interrupt
        );
    }

    #[test]
    fn poll_channels_take_no_doorbell() {
        let toml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../configs/bochs-2cpu.toml"
        ))
        .unwrap()
        .replace("notify = \"doorbell\"", "notify = \"poll\"");
        let cfg = bulkhead_config::host::load_str(&toml, "poll.toml").unwrap();
        let d = Doorbells::from_config(&cfg);
        assert!(d.is_empty());
        assert_eq!(
            d.ring(0x3801_0000, 1, 100, SECOND, |_| true),
            Ring::NoSuchChannel
        );
    }

    #[test]
    fn concurrent_rings_interrupt_once_per_interval() {
        let cfg = config();
        let d = Doorbells::from_config(&cfg);
        let interrupts = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if d.ring(0x3801_0000, 10_000, 1_000_000, SECOND, |_| true)
                            == Ring::Interrupt
                        {
                            interrupts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(interrupts.load(Ordering::Relaxed), 1);
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
