//! The latency application: cyclictest's measurement thread, one task per CPU at priority 90,
//! above every other task of the default image.
//!
//! It sleeps until absolute release times `first + k * period` (`wait_next_period`), and on
//! each wake-up records `now - release`: the time from the programmed wake-up to the task
//! running, interrupt entry, timer expiry, scheduling and context switch included. Samples
//! go to a histogram of 1 µs buckets up to 1 ms plus overflow
//! (`Histogram`); every report period (`latency_report_s=`) the cumulative one-line summary is
//! printed:
//!
//! `latency cpu=<i> samples=.. min_ns=.. avg_ns=.. max_ns=.. p99_ns=.. p999_ns=.. misses=.. overflow=..`
//!
//! With `trace=on` more lines follow each summary: its histogram's non-empty buckets
//! (`HistogramLine`), the CPU's longest interrupts-off
//! section and where it began (`SectionSummary`), and the wake-up path stage by stage
//! (`WakePathSummary`: deadline to interrupt entry, to scheduling decision, to switch, to
//! this task), from the time stamps the kernel keeps of the interrupt that woke it
//! (`bulkhead_rt::trace`).
//!
//! `latency_period_us=N` sets the period (10 to 1000000, default 1000).
//!
//! The task itself only counts: its samples go to its CPU's shared counters ([`Samples`]),
//! and at each report time it asks its CPU's report task (the lowest priority) to run this
//! application's `report`, which reads the counters, prints the lines and publishes the
//! record the status application sends ([`latest`]: the summary with the histogram folded
//! into the status report's log-2 buckets). Scanning a thousand buckets and formatting text
//! would otherwise cost the highest-priority task of the CPU, and everything below it, a few
//! hundred microseconds every report.

#![no_std]

use core::mem::size_of;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bulkhead_abi::console::{HistogramOwner, SectionSummary, WakePathSummary};
use bulkhead_abi::status::{self, CpuLatency};
use zerocopy::{FromBytes, IntoBytes};

use bulkhead_rt::app::{App, Context, Cpu, STACK_BYTES, TaskDecl};
use bulkhead_rt::core_types::{
    Error, NANOS_PER_BUCKET, Periodic, Policy, SharedHistogram, WakePath,
};
use bulkhead_rt::report::{self, Published, TextBuf};
use bulkhead_rt::{MAX_CPUS, api, println, trace};

/// The application.
pub const APP: App = App {
    name: "latency",
    tasks: &[TaskDecl {
        name: "latency",
        cpu: Cpu::Each,
        priority: 90,
        policy: Policy::Fifo,
        stack_bytes: STACK_BYTES,
        entry: task,
        arg: 0,
    }],
    init: Some(init),
    report: Some(report),
};

/// Histogram range: 1000 buckets of 1 µs.
const BUCKETS: usize = 1000;
// The report's histogram is folded from this one's microseconds, and both end at 1 ms: this
// histogram's overflow is the report's.
const _: () = assert!(
    NANOS_PER_BUCKET == 1_000 && BUCKETS as u64 * NANOS_PER_BUCKET == status::HISTOGRAM_RANGE_NS
);

static PERIOD_NS: AtomicU64 = AtomicU64::new(1_000_000);
static TRACE: AtomicBool = AtomicBool::new(false);

/// One CPU's latency samples since boot, recorded by its latency task only and read by its
/// report task.
struct Samples {
    histogram: SharedHistogram<BUCKETS>,
    misses: AtomicU64,
}

static SAMPLES: [Samples; MAX_CPUS] = [const {
    Samples {
        histogram: SharedHistogram::new(),
        misses: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// A [`CpuLatency`] record as 64-bit words (it is all `u64` but for two `u32`s).
const WORDS: usize = size_of::<CpuLatency>() / 8;
const _: () = assert!(WORDS * 8 == size_of::<CpuLatency>());

/// Each CPU's last record, written by its report task.
static PUBLISHED: [Published<WORDS>; MAX_CPUS] = [const { Published::new() }; MAX_CPUS];

/// A [`WakePathSummary`] as words: CPU, samples, the four means, the four maxima.
const PATH_WORDS: usize = 10;
/// Each CPU's wake-up path, published by its latency task at each report (`trace=on`).
static PATHS: [Published<PATH_WORDS>; MAX_CPUS] = [const { Published::new() }; MAX_CPUS];

/// CPU `cpu`'s last summary and histogram (`None` before its first).
pub fn latest(cpu: usize) -> Option<CpuLatency> {
    let words = PUBLISHED.get(cpu)?.latest()?;
    CpuLatency::read_from_bytes(words.as_bytes()).ok()
}

/// Takes the period and report interval from the options (init).
/// Reads `latency_period_us=` and `trace=on` (init).
fn init(context: &Context<'static>) -> Result<(), Error> {
    if let Some(us) = context.number(APP.name, "latency_period_us", 10..=1_000_000)? {
        PERIOD_NS.store(us * 1000, Ordering::Relaxed);
    }
    TRACE.store(context.option("trace") == Some("on"), Ordering::Relaxed);
    log::info!(
        "latency: a task on each of {} CPUs every {} us, a summary every {} s",
        context.cpus,
        PERIOD_NS.load(Ordering::Relaxed) / 1000,
        report::period_ns() / 1_000_000_000
    );
    Ok(())
}

/// The report of the CPU it runs on (its report task).
fn report() {
    print_latest(api::cpu());
}

/// Prints CPU `cpu`'s summary from its counters and publishes the record (its report
/// task, at the lowest priority); with `trace=on`, the section and wake-up path lines.
fn print_latest(cpu: usize) {
    let Some(samples) = SAMPLES.get(cpu) else {
        return;
    };
    let histogram = samples.histogram.snapshot();
    let misses = samples.misses.load(Ordering::Relaxed);
    // The percentiles scan every bucket: once, for the line and the record.
    let summary = histogram.summary(cpu as u32, misses);
    println!("{summary}");
    let record = CpuLatency {
        cpu: summary.cpu,
        reserved: 0,
        samples: summary.samples,
        min_ns: summary.min_ns,
        avg_ns: summary.avg_ns,
        max_ns: summary.max_ns,
        p99_ns: summary.p99_ns,
        p999_ns: summary.p999_ns,
        misses: summary.misses,
        overflow: summary.overflow,
        histogram: status::histogram_from_microseconds(histogram.buckets()),
    };
    if let Ok(words) = <[u64; WORDS]>::read_from_bytes(record.as_bytes()) {
        PUBLISHED[cpu].publish(&words);
    }
    if TRACE.load(Ordering::Relaxed) {
        report::print_histogram(HistogramOwner::Cpu(cpu as u32), &histogram);
        print_trace(cpu);
    }
}

/// Prints CPU `cpu`'s longest interrupts-off section and its wake-up path.
fn print_trace(cpu: usize) {
    let section = trace::longest_section_ns(cpu);
    let mut at = TextBuf::<160>::new();
    match section.site {
        Some(site) => {
            let _ = core::fmt::Write::write_fmt(&mut at, format_args!("{site}"));
        }
        None => {
            let _ = core::fmt::Write::write_str(&mut at, "none");
        }
    }
    let summary = SectionSummary {
        cpu: cpu as u32,
        count: section.count,
        irq_off_max_ns: section.longest,
        stages_ns: section.stages,
        at: at.as_str(),
    };
    println!("{summary}");
    if let Some(w) = PATHS.get(cpu).and_then(Published::latest) {
        let path = WakePathSummary {
            cpu: w[0] as u32,
            samples: w[1],
            avg_ns: [w[2], w[3], w[4], w[5]],
            max_ns: [w[6], w[7], w[8], w[9]],
        };
        println!("{path}");
    }
}

/// The latency task of CPU `cpu`.
pub extern "C" fn task(cpu: usize) {
    let Some(samples) = SAMPLES.get(cpu) else {
        return;
    };
    let period = PERIOD_NS.load(Ordering::Relaxed);
    let report_every = report::period_ns();
    // Start on a period boundary a little in the future, so all CPUs are in phase.
    let start = (api::now_ns() / period + 2) * period;
    let Ok(mut periodic) = Periodic::new(start, period) else {
        return;
    };
    let mut next_report = start + report_every;
    let trace = TRACE.load(Ordering::Relaxed);
    let mut path = WakePath::new();
    loop {
        let release = periodic.upcoming_release_ns();
        match api::wait_next_period(&mut periodic) {
            Ok(true) => samples.misses.store(
                samples.misses.load(Ordering::Relaxed) + 1,
                Ordering::Relaxed,
            ),
            Ok(false) => {}
            Err(_) => return,
        }
        let now = api::now_ns();
        samples.histogram.record(now.saturating_sub(release));
        if trace {
            let [irq, decided, switched] = trace::last_wake_ns();
            path.record([release, irq, decided, switched, now]);
        }
        if now >= next_report {
            next_report += report_every;
            if trace {
                let s = path.summary(cpu as u32);
                let mut words = [0u64; PATH_WORDS];
                words[0] = u64::from(s.cpu);
                words[1] = s.samples;
                words[2..6].copy_from_slice(&s.avg_ns);
                words[6..10].copy_from_slice(&s.max_ns);
                PATHS[cpu].publish(&words);
            }
            report::request(APP.name);
        }
    }
}
