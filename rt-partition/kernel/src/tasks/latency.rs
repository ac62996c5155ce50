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
//! Printing goes through the console ring, so it costs the formatting only.

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_rt_core::clock::Periodic;
use bulkhead_rt_core::latency::Histogram;

use crate::api;
use crate::boot::Options;
use crate::println;

/// Histogram range: 1000 buckets of 1 µs.
const BUCKETS: usize = 1000;

static PERIOD_NS: AtomicU64 = AtomicU64::new(1_000_000);
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
        }
    }
}
