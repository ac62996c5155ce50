//! Noticing a Linux that hangs: a partition whose every running CPU has sat halted with
//! interrupts off (as `halt -f` leaves them, and as a hung kernel looks) for the watchdog's
//! limit will never go on by itself, so the hypervisor ends it and applies the config's
//! `on_exit` policy. A CPU that is halted with interrupts on is idle, not hung: an interrupt
//! wakes it.
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

impl<const N: usize> Default for Watchdog<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
