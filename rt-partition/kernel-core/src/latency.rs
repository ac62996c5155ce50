//! Latency histograms: 1 µs buckets, an overflow bucket, and the statistics the RT partition
//! reports (min, average, max, p99, p99.9) in a one-line machine-readable summary.
//!
//! A histogram has a fixed number of buckets chosen by a const generic, so recording a sample
//! is O(1) and never allocates; it is safe to call from the timer interrupt. Percentiles are
//! computed from the buckets, so they are exact to within one bucket (1 µs). This module only
//! counts and formats: it never reads a clock and never decides what is a deadline miss.

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_abi::console::{LatencySummary, WakePathSummary};

/// Width of one histogram bucket in nanoseconds.
pub const NANOS_PER_BUCKET: u64 = 1_000;

/// Counts of latency samples in 1 µs buckets: bucket `i` holds samples in
/// `[i µs, (i + 1) µs)`, and samples of `BUCKETS` µs or more go to the overflow bucket. The
/// exact minimum, maximum and sum are kept beside the buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram<const BUCKETS: usize> {
    buckets: [u64; BUCKETS],
    overflow: u64,
    samples: u64,
    sum_ns: u64,
    min_ns: u64,
    max_ns: u64,
}

impl<const BUCKETS: usize> Default for Histogram<BUCKETS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BUCKETS: usize> Histogram<BUCKETS> {
    /// An empty histogram.
    pub const fn new() -> Self {
        const { assert!(BUCKETS > 0, "a histogram needs at least one bucket") };
        Self {
            buckets: [0; BUCKETS],
            overflow: 0,
            samples: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }

    /// Adds one sample. Counters saturate rather than wrap.
    pub fn record(&mut self, latency_ns: u64) {
        let bucket = latency_ns / NANOS_PER_BUCKET;
        match self.buckets.get_mut(bucket as usize) {
            Some(count) if bucket < BUCKETS as u64 => *count = count.saturating_add(1),
            _ => self.overflow = self.overflow.saturating_add(1),
        }
        self.samples = self.samples.saturating_add(1);
        self.sum_ns = self.sum_ns.saturating_add(latency_ns);
        self.min_ns = self.min_ns.min(latency_ns);
        self.max_ns = self.max_ns.max(latency_ns);
    }

    /// The histogram whose buckets, overflow, exact sum, minimum and maximum are these (a
    /// copy of one kept elsewhere, such as counters another task updates); the sample count
    /// is what the buckets and the overflow add up to. `min_ns`/`max_ns` are ignored without
    /// samples.
    pub fn from_counts(
        buckets: [u64; BUCKETS],
        overflow: u64,
        sum_ns: u64,
        min_ns: u64,
        max_ns: u64,
    ) -> Self {
        let samples = buckets
            .iter()
            .fold(overflow, |total, &n| total.saturating_add(n));
        let empty = Self::new();
        Self {
            buckets,
            overflow,
            samples,
            sum_ns,
            min_ns: if samples == 0 { empty.min_ns } else { min_ns },
            max_ns: if samples == 0 { empty.max_ns } else { max_ns },
        }
    }

    /// Forgets every sample.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Adds every sample of `other` to this histogram (for a partition-wide view).
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
        self.overflow = self.overflow.saturating_add(other.overflow);
        self.samples = self.samples.saturating_add(other.samples);
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Number of samples recorded.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Number of samples of `BUCKETS` µs or more.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// The bucket counts, bucket `i` covering `[i µs, (i + 1) µs)`.
    pub fn buckets(&self) -> &[u64; BUCKETS] {
        &self.buckets
    }

    /// Smallest sample, exact.
    pub fn min_ns(&self) -> Option<u64> {
        (self.samples > 0).then_some(self.min_ns)
    }

    /// Largest sample, exact.
    pub fn max_ns(&self) -> Option<u64> {
        (self.samples > 0).then_some(self.max_ns)
    }

    /// Mean of the samples, rounded down (exact unless the sum saturated).
    pub fn average_ns(&self) -> Option<u64> {
        (self.samples > 0).then(|| self.sum_ns / self.samples)
    }

    /// The `numerator / denominator` quantile by the nearest-rank method: the smallest sample
    /// value such that at least that fraction of samples is at or below it.
    ///
    /// The answer is the upper edge of the bucket holding that sample, clamped to the exact
    /// min and max, so it is never below the true value and less than one bucket above it.
    /// When the sample lies in the overflow bucket, the exact maximum is returned. `None` when
    /// there are no samples or the fraction is not in `(0, 1]`.
    pub fn quantile_ns(&self, numerator: u64, denominator: u64) -> Option<u64> {
        if self.samples == 0 || numerator == 0 || numerator > denominator {
            return None;
        }
        let wanted = u128::from(self.samples) * u128::from(numerator);
        let rank = wanted.div_ceil(u128::from(denominator)).max(1) as u64;
        let mut seen: u64 = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(*count);
            if seen >= rank {
                let upper_edge = (index as u64 + 1) * NANOS_PER_BUCKET - 1;
                return Some(upper_edge.clamp(self.min_ns, self.max_ns));
            }
        }
        Some(self.max_ns)
    }

    /// 99th percentile (see [`Histogram::quantile_ns`]).
    pub fn p99_ns(&self) -> Option<u64> {
        self.quantile_ns(99, 100)
    }

    /// 99.9th percentile (see [`Histogram::quantile_ns`]).
    pub fn p999_ns(&self) -> Option<u64> {
        self.quantile_ns(999, 1000)
    }

    /// The one-line summary of this histogram for `cpu`, with `misses` deadline misses: the
    /// ABI's console line (`bulkhead_abi::console::LatencySummary`), whose `Display` prints
    /// it. With no samples the statistics are 0.
    pub fn summary(&self, cpu: u32, misses: u64) -> LatencySummary {
        LatencySummary {
            cpu,
            samples: self.samples(),
            min_ns: self.min_ns().unwrap_or(0),
            avg_ns: self.average_ns().unwrap_or(0),
            max_ns: self.max_ns().unwrap_or(0),
            p99_ns: self.p99_ns().unwrap_or(0),
            p999_ns: self.p999_ns().unwrap_or(0),
            misses,
            overflow: self.overflow(),
        }
    }
}

/// The wake-up path stage by stage, accumulated over wake-ups: the means and each stage's
/// maximum of the four stages between five instants (the timer's deadline, the interrupt's
/// entry, the scheduling decision, the context switch, the task running again), in the
/// order [`WakePathSummary::STAGES`] names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WakePath {
    samples: u64,
    sum_ns: [u64; 4],
    max_ns: [u64; 4],
}

impl WakePath {
    /// Nothing recorded.
    pub const fn new() -> Self {
        Self {
            samples: 0,
            sum_ns: [0; 4],
            max_ns: [0; 4],
        }
    }

    /// Records one wake-up from its five instants in nanoseconds. Instants out of order
    /// (the stamps of another interrupt or switch than this wake-up's) are not recorded;
    /// returns whether it was.
    pub fn record(&mut self, instants: [u64; 5]) -> bool {
        if instants.windows(2).any(|pair| pair[1] < pair[0]) {
            return false;
        }
        for (stage, pair) in instants.windows(2).enumerate() {
            let ns = pair[1] - pair[0];
            self.sum_ns[stage] = self.sum_ns[stage].saturating_add(ns);
            self.max_ns[stage] = self.max_ns[stage].max(ns);
        }
        self.samples += 1;
        true
    }

    /// The summary line of CPU `cpu`.
    pub fn summary(&self, cpu: u32) -> WakePathSummary {
        let avg = |sum: u64| sum.checked_div(self.samples).unwrap_or(0);
        WakePathSummary {
            cpu,
            samples: self.samples,
            avg_ns: self.sum_ns.map(avg),
            max_ns: self.max_ns,
        }
    }
}

/// An interrupts-off section's stages (`SectionSummary::STAGES`) from its start, the CPU's
/// last scheduling-decision and context-switch stamps, and its end, all in one time base: to
/// the decision, from there to the switch, from there to the end; they add up to the
/// section. A stamp from before the section (or a switch from before its decision) is
/// another section's: its stage is then 0 and its time counts in the stage before.
pub fn section_stages(since: u64, [decided, switched]: [u64; 2], end: u64) -> [u64; 3] {
    let within = |stamp: u64, after: u64| (after..=end).contains(&stamp).then_some(stamp);
    let decided = within(decided, since);
    let switched = decided.and_then(|d| within(switched, d));
    match (decided, switched) {
        (Some(d), Some(s)) => [d - since, s - d, end - s],
        (Some(d), None) => [d - since, 0, end - d],
        (None, _) => [end.saturating_sub(since), 0, 0],
    }
}

/// A [`Histogram`] one task records into and others read while it does: the same buckets,
/// overflow, sum, minimum and maximum as atomics. The writer is one task (plain loads and
/// stores of its own counters, no read-modify-write); a reader sees every counter whole, and
/// counters read while a sample lands may be one sample apart, which a periodic report does
/// not notice.
#[derive(Debug)]
pub struct SharedHistogram<const BUCKETS: usize> {
    buckets: [AtomicU64; BUCKETS],
    overflow: AtomicU64,
    sum_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl<const BUCKETS: usize> Default for SharedHistogram<BUCKETS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BUCKETS: usize> SharedHistogram<BUCKETS> {
    /// An empty histogram (for a `static`).
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            overflow: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
        }
    }

    /// Adds one sample; only its one writer calls this. Counters saturate.
    pub fn record(&self, latency_ns: u64) {
        let add = |counter: &AtomicU64, n: u64| {
            counter.store(
                counter.load(Ordering::Relaxed).saturating_add(n),
                Ordering::Relaxed,
            );
        };
        match self.buckets.get((latency_ns / NANOS_PER_BUCKET) as usize) {
            Some(bucket) => add(bucket, 1),
            None => add(&self.overflow, 1),
        }
        add(&self.sum_ns, latency_ns);
        if latency_ns < self.min_ns.load(Ordering::Relaxed) {
            self.min_ns.store(latency_ns, Ordering::Relaxed);
        }
        if latency_ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.store(latency_ns, Ordering::Relaxed);
        }
    }

    /// The histogram as it stands ([`Histogram::from_counts`] of the counters).
    pub fn snapshot(&self) -> Histogram<BUCKETS> {
        Histogram::from_counts(
            core::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            self.overflow.load(Ordering::Relaxed),
            self.sum_ns.load(Ordering::Relaxed),
            self.min_ns.load(Ordering::Relaxed),
            self.max_ns.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn section_stages_split_at_this_sections_own_stamps() {
        // Decision and switch inside the section.
        assert_eq!(section_stages(100, [160, 180], 200), [60, 20, 20]);
        // A decision, no switch (back in the caller).
        assert_eq!(section_stages(100, [160, 40], 200), [60, 0, 40]);
        // No decision in the section (a console copy): stale stamps count for nothing.
        assert_eq!(section_stages(100, [90, 95], 200), [100, 0, 0]);
        // A switch stamped before this section's decision is not this section's.
        assert_eq!(section_stages(100, [160, 120], 200), [60, 0, 40]);
        // Stamps at the very edges.
        assert_eq!(section_stages(100, [100, 200], 200), [0, 100, 0]);
        for (since, stamps, end) in [(5, [7, 9], 12), (5, [3, 9], 12), (5, [7, 1], 12)] {
            assert_eq!(section_stages(since, stamps, end).iter().sum::<u64>(), end - since);
        }
    }

    use super::*;
    use std::string::ToString;

    #[test]
    fn a_shared_histogram_reads_as_the_one_it_mirrors() {
        let shared = SharedHistogram::<4>::new();
        let mut plain = Histogram::<4>::new();
        assert_eq!(shared.snapshot(), plain);
        for ns in [1_500, 999, 3_999, 4_000, 250_000, 0] {
            shared.record(ns);
            plain.record(ns);
        }
        assert_eq!(shared.snapshot(), plain);
    }

    #[test]
    fn empty_histogram_has_no_statistics() {
        let h = Histogram::<10>::new();
        assert_eq!(h.samples(), 0);
        assert_eq!(h.min_ns(), None);
        assert_eq!(h.max_ns(), None);
        assert_eq!(h.average_ns(), None);
        assert_eq!(h.p99_ns(), None);
    }

    #[test]
    fn samples_land_in_one_microsecond_buckets() {
        let mut h = Histogram::<4>::new();
        for sample in [0, 999, 1_000, 1_999, 3_999, 4_000, 1_000_000] {
            h.record(sample);
        }
        assert_eq!(h.buckets(), &[2, 2, 0, 1]);
        assert_eq!(h.overflow(), 2);
        assert_eq!(h.samples(), 7);
        assert_eq!(h.min_ns(), Some(0));
        assert_eq!(h.max_ns(), Some(1_000_000));
    }

    #[test]
    fn statistics_of_a_known_set() {
        let mut h = Histogram::<100>::new();
        for us in 1..=100u64 {
            h.record(us * 1_000 - 500);
        }
        assert_eq!(h.average_ns(), Some(50_000));
        // Rank 99 of 100 is the sample 98_500 ns, in bucket 98: upper edge 98_999.
        assert_eq!(h.p99_ns(), Some(98_999));
        // Rank 100 of 100 is the maximum, 99_500; the bucket edge is clamped to it.
        assert_eq!(h.p999_ns(), Some(99_500));
        assert_eq!(h.quantile_ns(1, 1), Some(99_500));
        assert_eq!(h.quantile_ns(1, 100), Some(999));
        assert_eq!(h.quantile_ns(0, 100), None);
        assert_eq!(h.quantile_ns(101, 100), None);
    }

    #[test]
    fn quantile_in_overflow_reports_the_maximum() {
        let mut h = Histogram::<2>::new();
        h.record(500);
        h.record(70_000);
        assert_eq!(h.quantile_ns(1, 1), Some(70_000));
        // Rank 1 is in bucket 0: its upper edge, which is within the exact min and max.
        assert_eq!(h.quantile_ns(1, 2), Some(999));
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Histogram::<3>::new();
        let mut b = Histogram::<3>::new();
        a.record(100);
        b.record(2_500);
        b.record(9_000);
        a.merge(&b);
        assert_eq!(a.buckets(), &[1, 0, 1]);
        assert_eq!(a.overflow(), 1);
        assert_eq!(a.min_ns(), Some(100));
        assert_eq!(a.max_ns(), Some(9_000));
        assert_eq!(a.samples(), 3);
    }

    #[test]
    fn wake_path_stages_add_up_and_out_of_order_stamps_are_skipped() {
        let mut path = WakePath::new();
        assert_eq!(path.summary(0).samples, 0);
        assert_eq!(path.summary(0).avg_ns, [0; 4]);
        assert!(path.record([100, 110, 130, 160, 200]));
        assert!(path.record([1000, 1030, 1050, 1080, 1100]));
        // A switch stamp older than the decision: another wake-up's.
        assert!(!path.record([2000, 2010, 2020, 1990, 2100]));
        let s = path.summary(3);
        assert_eq!(s.cpu, 3);
        assert_eq!(s.samples, 2);
        assert_eq!(s.avg_ns, [20, 20, 30, 30]);
        assert_eq!(s.max_ns, [30, 20, 30, 40]);
        assert_eq!(s.total_avg_ns(), 100);
    }

    #[test]
    fn a_histogram_rebuilt_from_its_counts_is_the_same() {
        let mut h = Histogram::<10>::new();
        for ns in [1_500, 2_500, 9_000, 12_000] {
            h.record(ns);
        }
        let copy = Histogram::from_counts(
            *h.buckets(),
            h.overflow(),
            h.average_ns().unwrap() * h.samples(),
            h.min_ns().unwrap(),
            h.max_ns().unwrap(),
        );
        assert_eq!(copy, h);
        let empty = Histogram::<10>::from_counts([0; 10], 0, 0, 7, 9);
        assert_eq!(empty, Histogram::new());
    }

    #[test]
    fn summary_line_format() {
        let mut h = Histogram::<10>::new();
        h.record(1_500);
        h.record(2_500);
        let line = h.summary(1, 3).to_string();
        assert_eq!(
            line,
            "latency cpu=1 samples=2 min_ns=1500 avg_ns=2000 max_ns=2500 p99_ns=2500 p999_ns=2500 misses=3 overflow=0"
        );
        let empty = Histogram::<10>::new().summary(0, 0).to_string();
        assert_eq!(
            empty,
            "latency cpu=0 samples=0 min_ns=0 avg_ns=0 max_ns=0 p99_ns=0 p999_ns=0 misses=0 overflow=0"
        );
    }
}
