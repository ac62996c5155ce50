//! The report task: one per CPU at the lowest priority, it prints what the urgent tasks of
//! its CPU measured, so that they never spend their deadline formatting text.
//!
//! An application's task *publishes* its summary ([`Published`]: a sequence lock of a few
//! words, written without waiting) and sets its application's flag of its CPU's report flags
//! ([`request`]); the report task wakes when nothing more urgent runs and runs the
//! application's `report` function, which reads the record and prints the line. A record
//! published again before it was printed is printed once, the newest. Asked
//! ([`request_task_snapshots`], by the status report once a period), it also publishes its
//! CPU's task statistics (`sched::publish_own_tasks`): no CPU reads another's kernel state.
//! [`print_histogram`] prints a latency histogram in the lines tools read back.

use core::sync::atomic::{AtomicU64, Ordering, fence};

use bulkhead_abi::console::{HistogramLine, HistogramOwner};
use bulkhead_rt_core::latency::Histogram;
use bulkhead_rt_core::sync::{FlagsCondition, FlagsMode};
use spin::Once;

use crate::api::{self, EventFlagsHandle, Timeout};

/// The flag that asks a report task to publish its CPU's tasks ([`request_task_snapshots`]).
const PUBLISH_TASKS: u32 = 1 << 31;

/// The report flag of the application named `name`: one bit each in the applications'
/// order in the image, from bit 0; applications past the 31st share bit 30 (none for a name
/// no application has).
fn app_flag(name: &str) -> u32 {
    crate::app::all()
        .iter()
        .position(|app| app.name == name)
        .map_or(0, |index| 1 << index.min(30))
}

/// Prints `histogram`'s non-empty 1 µs buckets as `owner`'s histogram lines
/// (`bulkhead_abi::console::HistogramLine`), as many as they take; for a report function.
pub fn print_histogram<const BUCKETS: usize>(
    owner: HistogramOwner<'_>,
    histogram: &Histogram<BUCKETS>,
) {
    let mut pairs = histogram
        .buckets()
        .iter()
        .enumerate()
        .filter(|&(_, &count)| count > 0)
        .map(|(us, &count)| (us as u64, count))
        .peekable();
    while pairs.peek().is_some() {
        let chunk = pairs.by_ref().take(HistogramLine::MAX_PAIRS);
        let mut line = crate::console::TextBuf::<320>::new();
        let _ = HistogramLine::write(&mut line, owner, chunk);
        crate::println!("{}", line.as_str());
    }
}

/// Asks the report task of each of the first `cpus` CPUs to publish its CPU's tasks
/// (`task_snapshot` then reads them): what a status report asks for once a period. The
/// report tasks keep no timer of their own, so a CPU nobody asks takes no extra timer
/// interrupt or re-arm on its wake-up paths.
#[track_caller]
pub fn request_task_snapshots(cpus: usize) {
    for cpu in 0..cpus.min(crate::MAX_CPUS) {
        ready(cpu, PUBLISH_TASKS);
    }
}

/// The report period in nanoseconds (`latency_report_s=`, default 1 s).
static PERIOD_NS: AtomicU64 = AtomicU64::new(1_000_000_000);

/// The report period in nanoseconds: how often applications that report periodically (the
/// latency application, the status report) should.
pub fn period_ns() -> u64 {
    PERIOD_NS.load(Ordering::Relaxed)
}

/// Sets the report period (init).
pub fn set_period_s(seconds: u64) {
    PERIOD_NS.store(
        seconds.max(1).saturating_mul(1_000_000_000),
        Ordering::Relaxed,
    );
}

/// One record of `WORDS` words, written by one task only and read by anyone: a sequence
/// lock (odd while being written), so the writer never waits.
#[derive(Debug)]
pub struct Published<const WORDS: usize> {
    seq: AtomicU64,
    words: [AtomicU64; WORDS],
}

impl<const WORDS: usize> Published<WORDS> {
    /// Nothing published yet.
    pub const fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            words: [const { AtomicU64::new(0) }; WORDS],
        }
    }

    /// Publishes `words` (one writer only).
    pub fn publish(&self, words: &[u64; WORDS]) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (slot, &v) in self.words.iter().zip(words) {
            slot.store(v, Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// The last record published (`None` before the first). A reader that meets the writer
    /// (the sequence odd, or changed while it read) reads again; writers are short.
    pub fn latest(&self) -> Option<[u64; WORDS]> {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before % 2 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let words: [u64; WORDS] =
                core::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(words);
            }
        }
    }
}

/// Each CPU's report flags, created at init.
static FLAGS: [Once<EventFlagsHandle>; crate::MAX_CPUS] = [const { Once::new() }; crate::MAX_CPUS];

/// Creates CPU `cpu`'s report flags (init, before its report task is spawned).
pub fn create_flags(cpu: usize) -> Result<(), bulkhead_rt_core::Error> {
    let flags = api::create_event_flags(cpu, 0)?;
    if let Some(slot) = FLAGS.get(cpu) {
        slot.call_once(|| flags);
    }
    Ok(())
}

/// Tells CPU `cpu`'s report task that the applications whose flags are `what` published.
#[track_caller]
fn ready(cpu: usize, what: u32) {
    if let Some(&flags) = FLAGS.get(cpu).and_then(Once::get) {
        let _ = api::event_set(flags, what);
    }
}

/// For a task of the application named `app`: asks this CPU's report task to run that
/// application's `report` function (which prints what the task published, at the lowest
/// priority). Requests made before it ran are served once.
#[track_caller]
pub fn request(app: &str) {
    ready(crate::api::cpu(), app_flag(app));
}

/// The report task of CPU `cpu`.
pub extern "C" fn task(cpu: usize) {
    let Some(&flags) = FLAGS.get(cpu).and_then(Once::get) else {
        return;
    };
    let condition = FlagsCondition {
        mask: u32::MAX,
        mode: FlagsMode::Any,
        clear_on_exit: true,
    };
    let mut refused_seen = 0;
    loop {
        let Ok(what) = api::event_wait(flags, condition, Timeout::Forever) else {
            return;
        };
        let refused = crate::sched::mail_refused(cpu);
        if refused != refused_seen {
            refused_seen = refused;
            log::warn!(
                "{refused} requests from other CPUs named no object of this CPU or were refused by it (a semaphore at its maximum)"
            );
        }
        for app in crate::app::all() {
            if what & app_flag(app.name) != 0
                && let Some(report) = app.report
            {
                report();
            }
        }
        if what & PUBLISH_TASKS != 0 {
            crate::sched::publish_own_tasks();
        }
    }
}
