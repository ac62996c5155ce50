//! Time properties: timers expire in order and never early, histogram percentiles match a
//! sorted reference within one bucket, periodic releases never drift, TSC conversion never
//! makes a deadline early.

mod common;

use bulkhead_rt_core::clock::{Periodic, Tsc};
use bulkhead_rt_core::latency::{Histogram, NANOS_PER_BUCKET};
use bulkhead_rt_core::timer::{TimerHandle, TimerQueue};
use common::XorShift;
use proptest::prelude::*;

// ----- timer queue -------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum TimerOp {
    Insert { delay: u64 },
    Cancel { pick: prop::sample::Index },
    Advance { by: u64 },
}

fn timer_op() -> impl Strategy<Value = TimerOp> {
    prop_oneof![
        4 => (0..200u64).prop_map(|delay| TimerOp::Insert { delay }),
        1 => any::<prop::sample::Index>().prop_map(|pick| TimerOp::Cancel { pick }),
        2 => (0..100u64).prop_map(|by| TimerOp::Advance { by }),
    ]
}

proptest! {
    /// Timers come out in (deadline, insertion) order, only once due, each exactly once
    /// unless cancelled; `next_deadline` is always the earliest armed deadline.
    #[test]
    fn timers_expire_in_order_and_never_early(
        ops in proptest::collection::vec(timer_op(), 0..300),
    ) {
        let mut queue = TimerQueue::<u32, 32>::new();
        // Model: (deadline, insertion number, handle) of armed timers.
        let mut armed: Vec<(u64, u32, TimerHandle)> = Vec::new();
        let mut inserted = 0u32;
        let mut now = 0u64;
        for op in ops {
            match op {
                TimerOp::Insert { delay } => {
                    let deadline = now + delay;
                    match queue.insert(deadline, inserted) {
                        Ok(handle) => armed.push((deadline, inserted, handle)),
                        Err(_) => prop_assert_eq!(armed.len(), 32),
                    }
                    inserted += 1;
                }
                TimerOp::Cancel { pick } => {
                    if !armed.is_empty() {
                        let (_, payload, handle) = armed.remove(pick.index(armed.len()));
                        prop_assert_eq!(queue.cancel(handle), Some(payload));
                        prop_assert_eq!(queue.cancel(handle), None);
                    }
                }
                TimerOp::Advance { by } => {
                    now += by;
                    armed.sort_by_key(|(deadline, payload, _)| (*deadline, *payload));
                    while let Some(expired) = queue.pop_expired(now) {
                        prop_assert!(expired.deadline_ns <= now, "fired early");
                        let (deadline, payload, _) = armed.remove(0);
                        let popped = (expired.deadline_ns, expired.payload);
                        prop_assert_eq!(popped, (deadline, payload));
                    }
                    let none_due = armed.iter().all(|(deadline, _, _)| *deadline > now);
                    prop_assert!(none_due, "a due timer stayed");
                }
            }
            prop_assert_eq!(queue.len(), armed.len());
            prop_assert_eq!(queue.next_deadline(), armed.iter().map(|(d, _, _)| *d).min());
        }
    }
}

// ----- histogram percentiles ------------------------------------------------------------------

/// Nearest-rank quantile of a sorted sample set.
fn reference_quantile(sorted: &[u64], numerator: u64, denominator: u64) -> u64 {
    let n = sorted.len() as u64;
    let rank = (n * numerator).div_ceil(denominator).max(1);
    sorted[(rank - 1) as usize]
}

proptest! {
    /// Percentiles from the buckets are never below the true value and less than one bucket
    /// above it; min, max and average are exact.
    #[test]
    fn histogram_percentiles_within_one_bucket(
        samples in proptest::collection::vec(0..64_000u64, 1..2_000),
        quantile in prop::sample::select(
            vec![(1u64, 2u64), (9, 10), (99, 100), (999, 1000), (1, 1)]
        ),
    ) {
        let mut histogram = Histogram::<64>::new();
        for &sample in &samples {
            histogram.record(sample);
        }
        let mut sorted = samples.clone();
        sorted.sort_unstable();
        let (numerator, denominator) = quantile;
        let truth = reference_quantile(&sorted, numerator, denominator);
        let estimate = histogram.quantile_ns(numerator, denominator).unwrap();
        prop_assert!(estimate >= truth && estimate - truth < NANOS_PER_BUCKET,
            "estimate {estimate} truth {truth}");
        prop_assert_eq!(histogram.min_ns(), sorted.first().copied());
        prop_assert_eq!(histogram.max_ns(), sorted.last().copied());
        let sum: u64 = samples.iter().sum();
        prop_assert_eq!(histogram.average_ns(), Some(sum / samples.len() as u64));
        prop_assert_eq!(histogram.overflow(), 0);
    }

    /// Samples beyond the buckets are counted as overflow; a percentile that lands there
    /// reports the exact maximum, which is never below the truth.
    #[test]
    fn histogram_overflow_is_counted(
        samples in proptest::collection::vec(0..20_000u64, 1..500),
    ) {
        let mut histogram = Histogram::<10>::new();
        for &sample in &samples {
            histogram.record(sample);
        }
        let beyond = samples.iter().filter(|&&s| s >= 10 * NANOS_PER_BUCKET).count() as u64;
        prop_assert_eq!(histogram.overflow(), beyond);
        prop_assert_eq!(histogram.buckets().iter().sum::<u64>() + beyond, samples.len() as u64);
        let mut sorted = samples.clone();
        sorted.sort_unstable();
        let truth = reference_quantile(&sorted, 99, 100);
        prop_assert!(histogram.p99_ns().unwrap() >= truth);
    }
}

// ----- periodic releases -------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Over a million periods, with wake-ups late by random amounts (sometimes by more than
    /// a period), release k is exactly `first + k * period`, and misses are counted exactly
    /// when a job ends after the next release.
    #[test]
    fn periodic_never_drifts_over_a_million_periods(
        first in 0..1_000_000u64,
        period in 1..10_000_000u64,
        seed in any::<u64>(),
    ) {
        const PERIODS: u64 = 1_000_000;
        let mut random = XorShift(seed);
        let mut periodic = Periodic::new(first, period).unwrap();
        let mut now = 0u64;
        let mut expected_misses = 0u64;
        for k in 0..PERIODS {
            let release = periodic.next_release(now);
            if release.at_ns != first + k * period {
                let drifted = format!("release {k} drifted to {}", release.at_ns);
                return Err(TestCaseError::fail(drifted));
            }
            if k > 0 && now > release.at_ns {
                expected_misses += 1;
            }
            // The task wakes at (or after) its release and works for up to ~1.1 periods.
            let wake = now.max(release.at_ns) + random.below(1_000);
            now = wake + random.below(period + period / 10 + 1);
        }
        prop_assert_eq!(periodic.upcoming_release_ns(), first + PERIODS * period);
        prop_assert_eq!(periodic.misses(), expected_misses);
        prop_assert_eq!(periodic.releases(), PERIODS);
    }
}

// ----- TSC conversion ------------------------------------------------------------------------

proptest! {
    /// A deadline converted to TSC ticks is the first tick that reads as the deadline or
    /// later: never early, and one tick earlier would be early.
    #[test]
    fn tsc_deadline_is_first_tick_not_before(
        hz in 1_000_000u64..10_000_000_000,
        ns in 0..u64::MAX / 16,
    ) {
        let tsc = Tsc::new(hz).unwrap();
        let ticks = tsc.ns_to_ticks(ns);
        prop_assert!(tsc.ticks_to_ns(ticks) >= ns);
        if ticks > 0 {
            prop_assert!(tsc.ticks_to_ns(ticks - 1) < ns);
        }
        // Never early by the exact conversion either.
        prop_assert!(u128::from(ticks) * 1_000_000_000 >= u128::from(ns) * u128::from(hz));
        // Round trip the other way never moves time forward.
        prop_assert!(tsc.ns_to_ticks(tsc.ticks_to_ns(ticks)) <= ticks);
    }

    /// A TSC reading in nanoseconds is never ahead of the exact `ticks * 1e9 / hz` and behind
    /// it by less than 1 ns plus 1 ns per 2^32 ticks (below 584 years, where it saturates); it
    /// never goes backwards.
    #[test]
    fn tsc_reading_is_exact_to_a_part_per_billion(
        hz in 1_000_000u64..10_000_000_000,
        ticks in 0..u64::MAX / 16,
    ) {
        let tsc = Tsc::new(hz).unwrap();
        let exact = u128::from(ticks) * 1_000_000_000 / u128::from(hz);
        // (Beyond u64 nanoseconds the reading saturates.)
        prop_assume!(exact < u128::from(u64::MAX));
        let read = u128::from(tsc.ticks_to_ns(ticks));
        prop_assert!(read <= exact);
        prop_assert!(exact - read <= 1 + (u128::from(ticks) >> 32));
        prop_assert!(tsc.ticks_to_ns(ticks + 1) >= tsc.ticks_to_ns(ticks));
    }
}
