//! How a blocking call waits on Linux when no interrupt can wake it: on a `poll` channel, or on
//! a `doorbell` channel without the channel device or its `uio_pci_generic` driver (with them,
//! `interrupt` sleeps on `/dev/uioN` instead). A blocked sender or receiver retries after a
//! short spin, then after sleeps that grow from [`FIRST_SLEEP`] to [`MAX_SLEEP`]. A message
//! therefore waits at most about [`MAX_SLEEP`] (plus scheduling) before a polling Linux
//! receiver sees it.

use std::time::{Duration, Instant};

/// Retries that only spin before the first sleep.
pub const SPINS: u32 = 16;
/// The first sleep after spinning.
pub const FIRST_SLEEP: Duration = Duration::from_micros(20);
/// The longest sleep between two polls.
pub const MAX_SLEEP: Duration = Duration::from_millis(1);

/// The growing wait between two polls of a ring.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Waits so far.
    step: u32,
    /// The next sleep.
    sleep: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A backoff that starts by spinning.
    pub fn new() -> Self {
        Self {
            step: 0,
            sleep: FIRST_SLEEP,
        }
    }

    /// Starts over (after progress).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Waits one step, never beyond `deadline`: spins for the first [`SPINS`] steps, then
    /// sleeps, doubling the sleep each step up to [`MAX_SLEEP`].
    pub fn wait(&mut self, deadline: Option<Instant>) {
        if self.step < SPINS {
            self.step += 1;
            for _ in 0..(1u32 << self.step.min(6)) {
                std::hint::spin_loop();
            }
            return;
        }
        let mut sleep = self.sleep;
        if let Some(deadline) = deadline {
            sleep = sleep.min(deadline.saturating_duration_since(Instant::now()));
        }
        if !sleep.is_zero() {
            std::thread::sleep(sleep);
        }
        self.sleep = (self.sleep * 2).min(MAX_SLEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_grow_to_the_cap() {
        let mut b = Backoff::new();
        for _ in 0..SPINS {
            b.wait(None);
        }
        assert_eq!(b.sleep, FIRST_SLEEP);
        for _ in 0..10 {
            b.wait(None);
        }
        assert_eq!(b.sleep, MAX_SLEEP);
        // A deadline that passed: no sleep at all.
        b.wait(Some(Instant::now()));
        b.reset();
        assert_eq!((b.step, b.sleep), (0, FIRST_SLEEP));
    }
}
