//! An example RT application: a periodic task and an event-driven task that it wakes.
//!
//! - `sampler` runs every `example_period_us` microseconds (the kernel command line's word,
//!   default 1000) on the partition's first CPU at priority 60: it "reads a sensor" (a
//!   counter here), and every tenth sample posts the `batch` semaphore;
//! - `consumer`, on the same CPU at priority 40, waits on `batch` and "processes" each batch;
//!   about once a second it publishes its counts and asks for a report;
//! - the application's `report` (run by the CPU's report task, at the lowest priority, so the
//!   two tasks never format text) prints
//!   `example: samples=.. batches=.. late=..` (late: sampler periods that ended after their
//!   deadline).
//!
//! Build and boot it with the default image's applications: `cargo xtask run --rt-app
//! examples/rt-app` (the image is made by `cargo xtask build --rt-app examples/rt-app`).
//! To write your own, copy this folder, rename the package, and change the tasks: each is an
//! `extern "C" fn(usize)` that loops on the kernel's calls (`bulkhead_rt::api`). Objects are
//! created in `init`, once, before any task runs; a task waits only on objects of its own
//! CPU, and may post to any CPU's.
#![no_std]

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_rt::api::{self, SemaphoreHandle};
use bulkhead_rt::app::{App, Context, Cpu, STACK_BYTES, TaskDecl};
use bulkhead_rt::core_types::{Error, Once, Periodic, Policy, Timeout};
use bulkhead_rt::println;
use bulkhead_rt::report::{self, Published};

/// The application: what the image crate names (`bulkhead_rt::applications!`).
pub const APP: App = App {
    name: "example",
    tasks: &[
        TaskDecl {
            name: "ex-sampler",
            cpu: Cpu::First,
            priority: 60,
            policy: Policy::Fifo,
            stack_bytes: 16 * 1024,
            entry: sampler,
            arg: 0,
        },
        TaskDecl {
            name: "ex-consumer",
            cpu: Cpu::First,
            priority: 40,
            policy: Policy::Fifo,
            stack_bytes: STACK_BYTES,
            entry: consumer,
            arg: 0,
        },
    ],
    init: Some(init),
    report: Some(report),
};

/// Samples per batch.
const BATCH: u64 = 10;

static PERIOD_NS: AtomicU64 = AtomicU64::new(1_000_000);
/// The semaphore the sampler posts and the consumer waits on, made in `init`.
static BATCH_READY: Once<SemaphoreHandle> = Once::new();
static SAMPLES: AtomicU64 = AtomicU64::new(0);
static LATE: AtomicU64 = AtomicU64::new(0);
/// samples, batches, late: published by the consumer for the report.
static COUNTS: Published<3> = Published::new();

/// Reads `example_period_us=` and creates the semaphore (boot CPU, before any task).
fn init(context: &Context<'static>) -> Result<(), Error> {
    if let Some(us) = context.number(APP.name, "example_period_us", 10..=1_000_000)? {
        PERIOD_NS.store(us * 1000, Ordering::Relaxed);
    }
    // The consumer, which waits on it, runs on the first CPU.
    let batch = api::create_semaphore(0, 0, 1000)?;
    BATCH_READY.call_once(|| batch);
    Ok(())
}

/// The periodic task.
extern "C" fn sampler(_: usize) {
    let Some(&batch) = BATCH_READY.get() else {
        return;
    };
    let period = PERIOD_NS.load(Ordering::Relaxed);
    let Ok(mut periodic) = Periodic::new((api::now_ns() / period + 2) * period, period) else {
        return;
    };
    loop {
        match api::wait_next_period(&mut periodic) {
            Ok(true) => {
                LATE.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(_) => return,
        }
        let n = SAMPLES.fetch_add(1, Ordering::Relaxed) + 1;
        if n % BATCH == 0 {
            let _ = api::sem_post(batch);
        }
    }
}

/// The event-driven task.
extern "C" fn consumer(_: usize) {
    let Some(&batch) = BATCH_READY.get() else {
        return;
    };
    let mut batches = 0u64;
    let mut next_report = api::now_ns() + 1_000_000_000;
    while api::sem_wait(batch, Timeout::Forever).is_ok() {
        batches += 1;
        let now = api::now_ns();
        if now >= next_report {
            next_report += 1_000_000_000;
            COUNTS.publish(&[
                SAMPLES.load(Ordering::Relaxed),
                batches,
                LATE.load(Ordering::Relaxed),
            ]);
            report::request(APP.name);
        }
    }
}

/// Prints the last counts (the report task, lowest priority).
fn report() {
    if let Some([samples, batches, late]) = COUNTS.latest() {
        println!("example: samples={samples} batches={batches} late={late}");
    }
}
