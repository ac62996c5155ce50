//! Noticing a Linux that hangs: a partition whose every running CPU has sat halted with
//! interrupts off (as `halt -f` leaves them, and as a hung kernel looks) for the watchdog's
//! limit will never go on by itself, so the hypervisor ends it and applies the config's
//! `on_exit` policy. A CPU that is halted with interrupts on is idle, not hung: an interrupt
//! wakes it.
//!
//! A Linux that hangs while its CPUs spin with interrupts on (a livelock, or every CPU taken
//! by a real-time hog) looks busy to that test. For it, Linux may feed a watchdog timer: the
//! hypervisor emulates the IB700 single-board computer's watchdog ([`ib700`]), which stock
//! Linux drives with its `ib700wdt` module, so any watchdog daemon (busybox `watchdog`,
//! systemd's `RuntimeWatchdogSec=`) feeds it through `/dev/watchdog`. Once fed, a partition
//! that does not feed it again within the timeout is ended like a hung one
//! ([`FedDeadline`]); a Linux that never loads the driver never arms it.
//!
//! Decisions only: the image reads each CPU's activity state and interrupt flag at its
//! regular preemption-timer exits and keeps the times here.

use core::sync::atomic::{AtomicU64, Ordering};

/// How long every CPU of a Linux partition must stay halted with interrupts off before it is
/// taken as hung, in milliseconds.
pub const HUNG_AFTER_MS: u64 = 2000;

/// Per CPU of one partition (by its position in the partition's CPU list): since when it has
/// been halted with interrupts off, in TSC ticks (0: it is not).
#[derive(Debug)]
pub struct Watchdog<const N: usize> {
    dead_since: [AtomicU64; N],
}

impl<const N: usize> Watchdog<N> {
    /// Nothing observed yet.
    pub const fn new() -> Self {
        Self {
            dead_since: [const { AtomicU64::new(0) }; N],
        }
    }

    /// CPU `pos` was seen at TSC `now`: halted with interrupts off (`dead`) or not.
    pub fn observe(&self, pos: usize, dead: bool, now: u64) {
        let Some(slot) = self.dead_since.get(pos) else {
            return;
        };
        if !dead {
            slot.store(0, Ordering::Relaxed);
        } else if slot.load(Ordering::Relaxed) == 0 {
            slot.store(now.max(1), Ordering::Relaxed);
        }
    }

    /// Forgets CPU `pos` (its guest ended or restarts).
    pub fn forget(&self, pos: usize) {
        if let Some(slot) = self.dead_since.get(pos) {
            slot.store(0, Ordering::Relaxed);
        }
    }

    /// Whether the partition hangs at TSC `now`: each of the `running` positions has been
    /// dead for at least `limit` ticks (and there is at least one).
    pub fn hung(&self, running: impl IntoIterator<Item = usize>, now: u64, limit: u64) -> bool {
        let mut any = false;
        for pos in running {
            let since = self
                .dead_since
                .get(pos)
                .map_or(0, |s| s.load(Ordering::Relaxed));
            if since == 0 || now.saturating_sub(since) < limit {
                return false;
            }
            any = true;
        }
        any
    }
}

/// The IB700 watchdog's two ports: a write of a level (0..=15) to [`ib700::START`] arms it, or
/// feeds it, for [`ib700::timeout_s`] seconds; any write to [`ib700::STOP`] disarms it.
pub mod ib700 {
    /// Disarms the timer.
    pub const STOP: u16 = 0x441;
    /// Arms (or feeds) the timer with the level written.
    pub const START: u16 = 0x443;

    /// The timeout of `level` (its low four bits): 30 s for 0 down to 0 s for 15, in steps
    /// of 2 s (the board's table, which Linux's driver uses).
    pub const fn timeout_s(level: u8) -> u64 {
        30 - 2 * (level & 0xf) as u64
    }
}

/// When a fed watchdog expires, in TSC ticks (0: not armed). Shared by the partition's CPUs:
/// any of them feeds it, and the first to see it expired claims the expiry.
#[derive(Debug, Default)]
pub struct FedDeadline {
    deadline: AtomicU64,
}

impl FedDeadline {
    /// Not armed.
    pub const fn new() -> Self {
        Self {
            deadline: AtomicU64::new(0),
        }
    }

    /// Arms (or feeds) it at TSC `now` for `ticks`; returns whether it was disarmed before.
    pub fn feed(&self, now: u64, ticks: u64) -> bool {
        let deadline = now.saturating_add(ticks).max(1);
        self.deadline.swap(deadline, Ordering::AcqRel) == 0
    }

    /// Disarms it; returns whether it was armed.
    pub fn disarm(&self) -> bool {
        self.deadline.swap(0, Ordering::AcqRel) != 0
    }

    /// Whether it expired by the TSC `now` reads (read only when armed: every exit of a
    /// Linux CPU asks): true for exactly one caller, which also disarms it.
    pub fn claim_expiry(&self, now: impl FnOnce() -> u64) -> bool {
        let deadline = self.deadline.load(Ordering::Acquire);
        deadline != 0
            && now() >= deadline
            && self
                .deadline
                .compare_exchange(deadline, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

impl<const N: usize> Default for Watchdog<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ib700_levels_follow_the_boards_table() {
        assert_eq!(ib700::timeout_s(0), 30);
        assert_eq!(ib700::timeout_s(13), 4);
        assert_eq!(ib700::timeout_s(15), 0);
        assert_eq!(ib700::timeout_s(0xf0), 30, "only the low four bits count");
    }

    #[test]
    fn a_fed_deadline_expires_once_unless_fed_or_disarmed() {
        let d = FedDeadline::new();
        assert!(!d.claim_expiry(|| unreachable!("not read when disarmed")), "never armed");
        assert!(d.feed(100, 50), "armed from disarmed");
        assert!(!d.claim_expiry(|| 149));
        assert!(!d.feed(140, 50), "fed again");
        assert!(!d.claim_expiry(|| 150));
        assert!(d.claim_expiry(|| 190));
        assert!(!d.claim_expiry(|| 191), "claimed once");
        assert!(d.feed(200, 0), "a zero timeout");
        assert!(d.claim_expiry(|| 200));
        d.feed(300, 10);
        assert!(d.disarm());
        assert!(!d.disarm());
        assert!(!d.claim_expiry(|| u64::MAX));
    }

    #[test]
    fn hung_only_when_every_running_cpu_is_dead_for_the_limit() {
        let w = Watchdog::<4>::new();
        assert!(!w.hung([0, 1], 1_000, 100), "nothing seen dead");
        w.observe(0, true, 100);
        assert!(!w.hung([0, 1], 1_000, 100), "CPU 1 goes on");
        w.observe(1, true, 950);
        assert!(!w.hung([0, 1], 1_000, 100), "CPU 1 not long enough");
        assert!(w.hung([0, 1], 1_050, 100));
        // Seeing it dead again does not move its time; seeing it alive does.
        w.observe(1, true, 1_040);
        assert!(w.hung([0, 1], 1_050, 100));
        w.observe(1, false, 1_060);
        assert!(!w.hung([0, 1], 5_000, 100));
        // A CPU not running does not count; no running CPU is no hang.
        assert!(w.hung([0], 5_000, 100));
        assert!(!w.hung([], 5_000, 100));
        w.forget(0);
        assert!(!w.hung([0], 5_000, 100));
        // Positions past the table are never dead.
        w.observe(9, true, 1);
        assert!(!w.hung([9], 5_000, 100));
    }
}
