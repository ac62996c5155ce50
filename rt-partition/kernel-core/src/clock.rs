//! Time: absolute and relative sleeps, TSC to nanosecond conversion, and periodic releases.
//!
//! The kernel's time is monotonic nanoseconds since an epoch the arch layer picks (boot).
//! [`Tsc`] converts between TSC ticks and those nanoseconds with one multiplication by a
//! fixed-point factor (no division on the interrupt path), rounding so that a time read is
//! never ahead of the exact one and a timer programmed from a deadline never fires before
//! it. Sleeps follow
//! `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`: a deadline that has already passed
//! returns at once, without blocking or yielding. [`Periodic`] computes release times as
//! `first + k * period` by addition, so they never drift whatever the wake-up latency.
//! This module never reads the TSC itself.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::{CoreId, TaskId};
use crate::{Error, Kernel, Resched};

/// Nanoseconds in a second.
pub const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A TSC frequency, for converting between ticks and nanoseconds.
///
/// Ticks become nanoseconds as `ticks * factor >> 32`, with `factor` the nanoseconds per
/// tick in 32.32 fixed point, rounded down: one multiplication instead of the 128-bit
/// division `ticks * 1e9 / hz`, which the timer interrupt pays on every entry. The result
/// is never ahead of the exact time and behind it by less than 1 ns plus 1 ns per 2^32
/// ticks (0.7 parts per billion at 3 GHz: far below any TSC crystal's own error). The way
/// back, [`Tsc::ns_to_ticks`], is the exact inverse of that rounding: the first tick that
/// reads as the deadline or later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tsc {
    hz: u64,
    /// Nanoseconds per tick, 32.32 fixed point, rounded down (not 0).
    factor: u64,
}

/// The fixed-point shift of [`Tsc`]'s factor.
const FACTOR_SHIFT: u32 = 32;

impl Tsc {
    /// A TSC ticking `hz` times a second; `hz` must not be 0 and at most 2^32 GHz (a factor
    /// of 0 could not convert).
    pub const fn new(hz: u64) -> Result<Self, Error> {
        if hz == 0 {
            return Err(Error::InvalidArgument);
        }
        let factor = ((NANOS_PER_SECOND as u128) << FACTOR_SHIFT) / hz as u128;
        if factor == 0 || factor > u64::MAX as u128 {
            return Err(Error::InvalidArgument);
        }
        Ok(Self {
            hz,
            factor: factor as u64,
        })
    }

    /// Ticks per second.
    pub const fn hz(self) -> u64 {
        self.hz
    }

    /// `ticks` in nanoseconds, rounded down (a time read from the TSC is never in the
    /// future); saturates at `u64::MAX`.
    #[inline]
    pub const fn ticks_to_ns(self, ticks: u64) -> u64 {
        let ns = (ticks as u128 * self.factor as u128) >> FACTOR_SHIFT;
        if ns > u64::MAX as u128 {
            u64::MAX
        } else {
            ns as u64
        }
    }

    /// The first tick count that [`Tsc::ticks_to_ns`] reads as `ns` or later, which is what
    /// a TSC-deadline timer must be programmed with so that it never fires early.
    /// Saturates at `u64::MAX`.
    pub const fn ns_to_ticks(self, ns: u64) -> u64 {
        let ticks = ((ns as u128) << FACTOR_SHIFT).div_ceil(self.factor as u128);
        if ticks > u64::MAX as u128 {
            u64::MAX
        } else {
            ticks as u64
        }
    }
}

/// A [`Tsc`] shared by every CPU: set once at boot, read with two plain loads (a `Once`
/// would add a check of its state to every reading, and the timer interrupt reads it on
/// every entry). A [`SharedTsc::set`] racing a [`SharedTsc::get`] could pair one
/// frequency's `hz` with another's factor: set it before other CPUs read it.
#[derive(Debug)]
pub struct SharedTsc {
    hz: AtomicU64,
    factor: AtomicU64,
}

impl SharedTsc {
    /// Starts as `initial`.
    pub const fn new(initial: Tsc) -> Self {
        Self {
            hz: AtomicU64::new(initial.hz),
            factor: AtomicU64::new(initial.factor),
        }
    }

    /// Replaces the converter (before other CPUs read it).
    pub fn set(&self, tsc: Tsc) {
        self.hz.store(tsc.hz, Ordering::Relaxed);
        self.factor.store(tsc.factor, Ordering::Relaxed);
    }

    /// The converter.
    #[inline]
    pub fn get(&self) -> Tsc {
        Tsc {
            hz: self.hz.load(Ordering::Relaxed),
            factor: self.factor.load(Ordering::Relaxed),
        }
    }
}

/// Result of a sleep that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a sleeping task's core must reschedule"]
pub enum Sleep {
    /// The deadline had already passed: return to the caller at once.
    Elapsed,
    /// The caller sleeps until its deadline ([`WakeReason::Timeout`](crate::WakeReason)) or
    /// an early [`Kernel::wake`] ([`WakeReason::Woken`](crate::WakeReason)); its core must
    /// reschedule.
    Asleep(Resched),
}

/// One release of a periodic task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// When this job is released: sleep until then.
    pub at_ns: u64,
    /// Its implicit deadline, the next release.
    pub deadline_ns: u64,
    /// The previous job ended after this release (its own deadline): a miss.
    pub missed: bool,
}

/// Release times of a periodic task: `first + k * period` for k = 0, 1, 2, ... exactly.
///
/// A job's deadline is the next release. Asking for the next release after a job ended
/// late (after that release) counts a miss; the late release is still returned (it is in the
/// past, so the sleep returns at once and the task catches up) rather than skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periodic {
    next_release_ns: u64,
    period_ns: u64,
    releases: u64,
    misses: u64,
}

impl Periodic {
    /// Releases at `first_release_ns`, then every `period_ns` (not 0).
    pub const fn new(first_release_ns: u64, period_ns: u64) -> Result<Self, Error> {
        if period_ns == 0 {
            return Err(Error::InvalidArgument);
        }
        Ok(Self {
            next_release_ns: first_release_ns,
            period_ns,
            releases: 0,
            misses: 0,
        })
    }

    /// The period.
    pub const fn period_ns(&self) -> u64 {
        self.period_ns
    }

    /// The release [`Periodic::next_release`] will return next.
    pub const fn upcoming_release_ns(&self) -> u64 {
        self.next_release_ns
    }

    /// Releases handed out so far.
    pub const fn releases(&self) -> u64 {
        self.releases
    }

    /// Misses counted so far.
    pub const fn misses(&self) -> u64 {
        self.misses
    }

    /// The next release, called at `now_ns` when the previous job (if any) is done.
    pub fn next_release(&mut self, now_ns: u64) -> Release {
        let at_ns = self.next_release_ns;
        let missed = self.releases > 0 && now_ns > at_ns;
        if missed {
            self.misses = self.misses.saturating_add(1);
        }
        self.releases = self.releases.saturating_add(1);
        self.next_release_ns = at_ns.saturating_add(self.period_ns);
        Release {
            at_ns,
            deadline_ns: self.next_release_ns,
            missed,
        }
    }
}

impl<const TASKS: usize, const CORES: usize> Kernel<TASKS, CORES> {
    /// `clock_nanosleep(TIMER_ABSTIME)` for `core`'s current task: sleep until `deadline_ns`,
    /// or return [`Sleep::Elapsed`] at once if it is not in the future.
    pub fn sleep_until(
        &mut self,
        core: CoreId,
        deadline_ns: u64,
        now_ns: u64,
    ) -> Result<Sleep, Error> {
        self.core_index(core)?;
        if deadline_ns <= now_ns {
            return Ok(Sleep::Elapsed);
        }
        let caller = self.calling_task(core)?;
        self.sleep_task(caller, deadline_ns)?;
        Ok(Sleep::Asleep(Resched::core(core)))
    }

    /// Relative sleep of `duration_ns` from `now_ns` (saturating); 0 returns at once.
    pub fn sleep_for(
        &mut self,
        core: CoreId,
        duration_ns: u64,
        now_ns: u64,
    ) -> Result<Sleep, Error> {
        self.sleep_until(core, now_ns.saturating_add(duration_ns), now_ns)
    }

    /// Ends the current job of `core`'s current periodic task and sleeps until its next
    /// release. A miss (see [`Periodic`]) is also added to the task's statistics.
    pub fn wait_next_period(
        &mut self,
        core: CoreId,
        periodic: &mut Periodic,
        now_ns: u64,
    ) -> Result<Sleep, Error> {
        let caller: TaskId = self.calling_task(core)?;
        let release = periodic.next_release(now_ns);
        if release.missed {
            self.record_deadline_miss(caller)?;
        }
        self.sleep_until(core, release.at_ns, now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::running_task;
    use crate::{Switch, TaskState, WakeReason};

    #[test]
    fn tsc_conversion_rounds_the_safe_way() {
        let tsc = Tsc::new(3_000_000_000).unwrap();
        // 1 s reads 1 ns short: the factor is rounded down (never ahead of the exact time).
        assert_eq!(tsc.ticks_to_ns(3_000_000_000), NANOS_PER_SECOND - 1);
        assert_eq!(tsc.ticks_to_ns(3_000_000_001), NANOS_PER_SECOND);
        assert_eq!(tsc.ticks_to_ns(5), 1); // 1.67 ns rounds down
        // 3 ticks read as 0.99... ns: the first tick that reads as 1 ns is the 4th.
        assert_eq!(tsc.ns_to_ticks(1), 4);
        assert_eq!(tsc.ns_to_ticks(NANOS_PER_SECOND), 3_000_000_001);
        let odd = Tsc::new(2_899_999_997).unwrap();
        assert_eq!(odd.ns_to_ticks(1), 3); // 2.9 ticks round up
        // A frequency the factor represents exactly converts exactly.
        let exact = Tsc::new(1_000_000_000).unwrap();
        assert_eq!(exact.ticks_to_ns(123_456_789_012), 123_456_789_012);
        assert_eq!(exact.ns_to_ticks(123_456_789_012), 123_456_789_012);
        let shared = SharedTsc::new(tsc);
        assert_eq!(shared.get(), tsc);
        shared.set(odd);
        assert_eq!(shared.get(), odd);
        let slow = Tsc::new(1).unwrap();
        assert_eq!(slow.ticks_to_ns(u64::MAX), u64::MAX);
        assert_eq!(slow.ns_to_ticks(u64::MAX), 18_446_744_074);
        assert_eq!(Tsc::new(0), Err(Error::InvalidArgument));
        assert_eq!(Tsc::new(u64::MAX), Err(Error::InvalidArgument));
        // A deadline converted to ticks and back is never earlier than the deadline.
        for ns in [0, 1, 999, 123_456_789, u64::MAX / 4] {
            assert!(odd.ticks_to_ns(odd.ns_to_ticks(ns)) >= ns);
        }
    }

    #[test]
    fn periodic_releases_and_misses() {
        let mut periodic = Periodic::new(1_000, 100).unwrap();
        let first = periodic.next_release(5_000);
        assert_eq!(
            first,
            Release {
                at_ns: 1_000,
                deadline_ns: 1_100,
                missed: false
            }
        );
        // Job 0 ends at 1_050: on time.
        assert!(!periodic.next_release(1_050).missed);
        // Job 1 (released 1_100) ends at 1_250, after release 1_200: a miss, no skip.
        let late = periodic.next_release(1_250);
        assert_eq!(late.at_ns, 1_200);
        assert!(late.missed);
        // Ending exactly at the deadline is on time.
        assert!(!periodic.next_release(1_300).missed);
        assert_eq!(periodic.misses(), 1);
        assert_eq!(periodic.releases(), 4);
        assert_eq!(periodic.upcoming_release_ns(), 1_400);
        assert_eq!(Periodic::new(0, 0), Err(Error::InvalidArgument));
    }

    #[test]
    fn absolute_and_relative_sleep() {
        let mut kernel = Kernel::<4, 1>::new();
        let task = running_task(&mut kernel, 0, 1);
        let core = CoreId::new(0);
        assert_eq!(kernel.sleep_until(core, 100, 100), Ok(Sleep::Elapsed));
        assert_eq!(kernel.sleep_for(core, 0, 100), Ok(Sleep::Elapsed));
        assert_eq!(
            kernel.sleep_until(core, 500, 100),
            Ok(Sleep::Asleep(Resched::core(core)))
        );
        assert!(matches!(kernel.schedule(core, 100), Ok(Switch::To { .. })));
        assert_eq!(kernel.task_state(task), Ok(TaskState::Sleeping));
        assert_eq!(kernel.next_event(core), Ok(Some(500)));
        assert_eq!(kernel.expire_timers(core, 499), Ok(Resched::NONE));
        assert_eq!(kernel.expire_timers(core, 503), Ok(Resched::core(core)));
        assert!(matches!(kernel.schedule(core, 510), Ok(Switch::To { to, .. }) if to == task));
        assert_eq!(kernel.take_wake_reason(task), Ok(Some(WakeReason::Timeout)));
        // Latency is measured from the deadline, not from the late interrupt.
        assert_eq!(kernel.task_stats(task).unwrap().wake_max_ns, 10);
        // Relative sleep, woken early.
        assert!(matches!(
            kernel.sleep_for(core, 50, 510),
            Ok(Sleep::Asleep(_))
        ));
        let _ = kernel.schedule(core, 510).unwrap();
        assert_eq!(kernel.wake(task, 520), Ok(crate::Preempt::Yes(core)));
        assert_eq!(kernel.take_wake_reason(task), Ok(Some(WakeReason::Woken)));
        assert_eq!(
            kernel.next_event(core),
            Ok(None),
            "the sleep's timer is cancelled"
        );
    }

    #[test]
    fn periodic_task_counts_misses_in_its_stats() {
        let mut kernel = Kernel::<4, 1>::new();
        let task = running_task(&mut kernel, 0, 1);
        let core = CoreId::new(0);
        let mut periodic = Periodic::new(100, 100).unwrap();
        assert!(matches!(
            kernel.wait_next_period(core, &mut periodic, 0),
            Ok(Sleep::Asleep(_))
        ));
        let _ = kernel.schedule(core, 0).unwrap();
        let _ = kernel.expire_timers(core, 100).unwrap();
        let _ = kernel.schedule(core, 100).unwrap();
        // The job overruns past 200: the next release is already due.
        assert_eq!(
            kernel.wait_next_period(core, &mut periodic, 250),
            Ok(Sleep::Elapsed)
        );
        assert_eq!(kernel.task_stats(task).unwrap().deadline_misses, 1);
    }
}
