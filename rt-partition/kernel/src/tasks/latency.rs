//! The latency task: cyclictest's measurement thread, one per CPU at the highest priority.
//!
//! It sleeps until absolute release times `first + k * period` (`wait_next_period`), and on
//! each wake-up records `now - release`: the time from the programmed wake-up to the task
//! running, interrupt entry, timer expiry, scheduling and context switch included. Samples
//! go to a histogram of 1 µs buckets up to 1 ms plus overflow
//! (`bulkhead_rt_core::latency`); every `latency_report_s` seconds the task prints the
//! cumulative one-line summary:
//!
//! `latency cpu=<i> samples=.. min_ns=.. avg_ns=.. max_ns=.. p99_ns=.. p999_ns=.. misses=.. overflow=..`
//!
//! Printing goes through the console ring, so it costs the formatting only. The same
//! numbers, with the histogram folded into the status report's log-2 buckets, are published
//! for the status task ([`latest`]).

use core::mem::size_of;
use core::sync::atomic::{AtomicU64, Ordering, fence};

use bulkhead_abi::status::{self, CpuLatency};
use zerocopy::{FromBytes, IntoBytes};

use bulkhead_rt_core::clock::Periodic;
use bulkhead_rt_core::latency::{Histogram, NANOS_PER_BUCKET};

use crate::api;
use crate::boot::Options;
use crate::println;

/// Histogram range: 1000 buckets of 1 µs.
const BUCKETS: usize = 1000;
// The report's histogram is folded from this one's microseconds, and both end at 1 ms: this
// histogram's overflow is the report's.
const _: () = assert!(
    NANOS_PER_BUCKET == 1_000 && BUCKETS as u64 * NANOS_PER_BUCKET == status::HISTOGRAM_RANGE_NS
);

static PERIOD_NS: AtomicU64 = AtomicU64::new(1_000_000);

/// A [`CpuLatency`] record as 64-bit words (it is all `u64` but for two `u32`s).
const WORDS: usize = size_of::<CpuLatency>() / 8;
const _: () = assert!(WORDS * 8 == size_of::<CpuLatency>());

/// One CPU's last summary and histogram, written by that CPU's latency task only and read by
/// anyone: a sequence lock (odd while being written), so the writer never waits.
struct Published {
    seq: AtomicU64,
    /// The [`CpuLatency`] record's words.
    words: [AtomicU64; WORDS],
}

static PUBLISHED: [Published; crate::MAX_CPUS] = [const {
    Published {
        seq: AtomicU64::new(0),
        words: [const { AtomicU64::new(0) }; WORDS],
    }
}; crate::MAX_CPUS];

fn publish(cpu: usize, record: &CpuLatency) {
    let (Some(p), Ok(words)) = (
        PUBLISHED.get(cpu),
        <[u64; WORDS]>::read_from_bytes(record.as_bytes()),
    ) else {
        return;
    };
    let seq = p.seq.load(Ordering::Relaxed);
    p.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    for (slot, v) in p.words.iter().zip(words) {
        slot.store(v, Ordering::Relaxed);
    }
    p.seq.store(seq.wrapping_add(2), Ordering::Release);
}

/// CPU `cpu`'s last published summary and histogram (`None` before its first). A reader
/// that meets the writer (the sequence odd, or changed while it read) reads again; the
/// writer is the highest-priority task of its CPU and writes twenty words, so a
/// retry is rare and short.
pub fn latest(cpu: usize) -> Option<CpuLatency> {
    let p = PUBLISHED.get(cpu)?;
    loop {
        let before = p.seq.load(Ordering::Acquire);
        if before == 0 {
            return None;
        }
        if before % 2 == 1 {
            core::hint::spin_loop();
            continue;
        }
        let words: [u64; WORDS] = core::array::from_fn(|i| p.words[i].load(Ordering::Relaxed));
        fence(Ordering::Acquire);
        if p.seq.load(Ordering::Relaxed) == before {
            return CpuLatency::read_from_bytes(words.as_bytes()).ok();
        }
    }
}
static REPORT_NS: AtomicU64 = AtomicU64::new(1_000_000_000);

/// Takes the period and report interval from the options (init).
pub fn configure(options: &Options) {
    PERIOD_NS.store(options.latency_period_us * 1000, Ordering::Relaxed);
    REPORT_NS.store(options.latency_report_s * 1_000_000_000, Ordering::Relaxed);
}

/// The latency task of CPU `cpu`.
pub extern "C" fn task(cpu: usize) {
    let period = PERIOD_NS.load(Ordering::Relaxed);
    let report_every = REPORT_NS.load(Ordering::Relaxed);
    let mut histogram = Histogram::<BUCKETS>::new();
    // Start on a period boundary a little in the future, so all CPUs are in phase.
    let start = (api::now_ns() / period + 2) * period;
    let Ok(mut periodic) = Periodic::new(start, period) else {
        return;
    };
    let mut next_report = start + report_every;
    let mut misses = 0u64;
    loop {
        let release = periodic.upcoming_release_ns();
        match api::wait_next_period(&mut periodic) {
            Ok(missed) => misses += u64::from(missed),
            Err(_) => return,
        }
        let now = api::now_ns();
        histogram.record(now.saturating_sub(release));
        if now >= next_report {
            next_report += report_every;
            println!("{}", histogram.summary(cpu as u32, misses));
            publish(
                cpu,
                &CpuLatency {
                    cpu: cpu as u32,
                    reserved: 0,
                    samples: histogram.samples(),
                    min_ns: histogram.min_ns().unwrap_or(0),
                    avg_ns: histogram.average_ns().unwrap_or(0),
                    max_ns: histogram.max_ns().unwrap_or(0),
                    p99_ns: histogram.p99_ns().unwrap_or(0),
                    p999_ns: histogram.p999_ns().unwrap_or(0),
                    misses,
                    overflow: histogram.overflow(),
                    histogram: status::histogram_from_microseconds(histogram.buckets()),
                },
            );
        }
    }
}
