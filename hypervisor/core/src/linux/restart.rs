//! When a Linux partition that the config restarts (`on_exit = "restart"`) ends: restart it
//! at once, restart it after a pause, or give up.
//!
//! A kernel that dies soon after it starts (a bad command line, a broken initramfs, a panic
//! in its init) would otherwise be reloaded for ever, filling the console and keeping the
//! boot CPU busy. The rule, in the manner of a service manager's restart limit:
//!
//! - a partition that ran at least [`RestartPolicy::stable_after_ms`] ended for a reason of
//!   its own: it restarts at once, and the count of quick ends starts again from zero;
//! - one that ended sooner is a *quick end*; the first one restarts at once, each further one
//!   waits twice as long as the one before ([`RestartPolicy::first_delay_ms`], at most
//!   [`RestartPolicy::max_delay_ms`]);
//! - after [`RestartPolicy::max_quick_ends`] quick ends in a row the partition stays stopped.

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// A run at least this long resets the count of quick ends.
    pub stable_after_ms: u64,
    /// The pause before the restart after the second quick end in a row.
    pub first_delay_ms: u64,
    /// The longest pause.
    pub max_delay_ms: u64,
    /// Quick ends in a row after which the partition is not restarted.
    pub max_quick_ends: u32,
}

impl RestartPolicy {
    /// What the hypervisor uses: a minute counts as stable; pauses of 1, 2, 4, 8 s; the
    /// sixth quick end in a row stops the partition.
    pub const DEFAULT: Self = Self {
        stable_after_ms: 60_000,
        first_delay_ms: 1_000,
        max_delay_ms: 30_000,
        max_quick_ends: 5,
    };
}

/// What to do after the partition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart (the `number`th restart since boot) after `delay_ms`.
    Restart { number: u64, delay_ms: u64 },
    /// Do not restart: the partition ended `quick_ends` times in a row, each within
    /// `within_ms` of its start.
    GiveUp { quick_ends: u32, within_ms: u64 },
}

/// The partition's restart history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestartState {
    restarts: u64,
    quick_ends: u32,
}

impl RestartState {
    pub const fn new() -> Self {
        Self {
            restarts: 0,
            quick_ends: 0,
        }
    }

    /// The partition ended after running `ran_ms`: what happens next.
    pub fn on_end(&mut self, policy: &RestartPolicy, ran_ms: u64) -> Decision {
        if ran_ms >= policy.stable_after_ms {
            self.quick_ends = 0;
        } else {
            self.quick_ends = self.quick_ends.saturating_add(1);
        }
        if self.quick_ends > policy.max_quick_ends {
            return Decision::GiveUp {
                quick_ends: self.quick_ends,
                within_ms: policy.stable_after_ms,
            };
        }
        let delay_ms = match self.quick_ends {
            0 | 1 => 0,
            n => {
                let doublings = n - 2;
                policy
                    .first_delay_ms
                    .checked_shl(doublings)
                    .filter(|d| *d >> doublings == policy.first_delay_ms)
                    .map_or(policy.max_delay_ms, |d| d.min(policy.max_delay_ms))
            }
        };
        self.restarts += 1;
        Decision::Restart {
            number: self.restarts,
            delay_ms,
        }
    }

    /// Restarts decided so far.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const P: RestartPolicy = RestartPolicy::DEFAULT;

    fn restart(number: u64, delay_ms: u64) -> Decision {
        Decision::Restart { number, delay_ms }
    }

    #[test]
    fn quick_ends_back_off_then_give_up() {
        let mut s = RestartState::new();
        let got: Vec<Decision> = (0..6).map(|_| s.on_end(&P, 2_000)).collect();
        assert_eq!(
            got,
            [
                restart(1, 0),
                restart(2, 1_000),
                restart(3, 2_000),
                restart(4, 4_000),
                restart(5, 8_000),
                Decision::GiveUp {
                    quick_ends: 6,
                    within_ms: 60_000
                },
            ]
        );
        assert_eq!(s.restarts(), 5);
    }

    #[test]
    fn a_stable_run_forgives_the_quick_ends_before_it() {
        let mut s = RestartState::new();
        for _ in 0..4 {
            s.on_end(&P, 10);
        }
        assert_eq!(s.on_end(&P, 60_000), restart(5, 0));
        assert_eq!(s.on_end(&P, 10), restart(6, 0), "first quick end again");
        assert_eq!(s.on_end(&P, 10), restart(7, 1_000));
    }

    #[test]
    fn stable_partitions_restart_for_ever_at_once() {
        let mut s = RestartState::new();
        for n in 1..1000 {
            assert_eq!(s.on_end(&P, 3_600_000), restart(n, 0));
        }
    }

    #[test]
    fn the_pause_is_capped() {
        let p = RestartPolicy {
            max_quick_ends: 100,
            ..P
        };
        let mut s = RestartState::new();
        let delays: Vec<u64> = (0..70)
            .map(|_| match s.on_end(&p, 0) {
                Decision::Restart { delay_ms, .. } => delay_ms,
                d => panic!("{d:?}"),
            })
            .collect();
        assert_eq!(
            &delays[..7],
            &[0, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000]
        );
        assert!(
            delays[7..].iter().all(|&d| d == 30_000),
            "no overflow: {delays:?}"
        );
    }

    proptest! {
        /// Whatever the run lengths: pauses never exceed the cap, never more than
        /// `max_quick_ends` quick ends in a row are restarted, restarts are numbered 1, 2, ...
        #[test]
        fn limits_hold(runs in proptest::collection::vec(0u64..120_000, 1..40)) {
            let mut s = RestartState::new();
            let mut streak = 0u32;
            let mut number = 0u64;
            for ran in runs {
                streak = if ran >= P.stable_after_ms { 0 } else { streak + 1 };
                match s.on_end(&P, ran) {
                    Decision::Restart { number: n, delay_ms } => {
                        number += 1;
                        prop_assert_eq!(n, number);
                        prop_assert!(delay_ms <= P.max_delay_ms);
                        prop_assert!(streak <= P.max_quick_ends);
                        prop_assert_eq!(delay_ms == 0, streak <= 1);
                    }
                    Decision::GiveUp { quick_ends, .. } => {
                        prop_assert_eq!(quick_ends, streak);
                        prop_assert!(streak > P.max_quick_ends);
                        break;
                    }
                }
            }
        }
    }
}
