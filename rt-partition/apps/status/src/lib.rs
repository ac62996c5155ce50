//! The status application (`status=CHANNEL`): every report period (`latency_report_s`) its
//! task sends the Linux partition one status report on the `rt-to-linux` channel CHANNEL:
//! each RT CPU's latency summary and wake-up latency histogram, and every task's CPU time,
//! wake-ups, misses and longest wake-up latency (`bulkhead_abi::status` owns the layout;
//! Linux's `bulkhead rt` shows it). Each CPU's record comes whole from the latency
//! application ([`latest`]), each CPU's tasks as its report task last published them when
//! the status task asked the period before (`bulkhead_rt::report::request_task_snapshots`,
//! `task_snapshot`).
//!
//! [`latest`]: bulkhead_rt_app_latency::latest
//!
//! It runs at the lowest task priority on CPU 0 and never waits for Linux: a report that finds
//! the ring full (nobody reads on Linux) is dropped and counted, so the real-time tasks never
//! notice whether Linux listens. A channel that fails (Linux corrupted it) is reported once;
//! the task then looks each period for Linux's request to re-establish it (`bulkhead reset
//! CHANNEL`) and carries it out.

#![no_std]

use core::sync::atomic::{AtomicUsize, Ordering};

use bulkhead_abi::status::{self, CpuLatency, TaskStatus};
use bulkhead_rt::api::{self, Timeout};
use bulkhead_rt::app::{App, Context, Cpu, STACK_BYTES, TaskDecl};
use bulkhead_rt::channels::{self, ChannelError};
use bulkhead_rt::core_types::{Error, Once, Policy};
use bulkhead_rt::report::{self, MAX_TASKS};
use bulkhead_rt::{MAX_CPUS, println};

/// The application: one task on the partition's first CPU, just above the report tasks.
pub const APP: App = App {
    name: "status",
    tasks: &[TaskDecl {
        name: "status",
        cpu: Cpu::First,
        priority: 10,
        policy: Policy::Fifo,
        stack_bytes: STACK_BYTES,
        entry: task,
        arg: 0,
    }],
    init: Some(init),
    report: None,
};

// Every RT CPU has a record in a report, and they all fit a 2048-byte channel slot.
const _: () = assert!(
    MAX_CPUS <= status::MAX_REPORT_CPUS
        && status::message_len(MAX_CPUS, 0) + bulkhead_ring::SLOT_HEADER_SIZE <= 2048
);

static CHANNEL: Once<&'static str> = Once::new();
static CPUS: AtomicUsize = AtomicUsize::new(1);

/// Reads `status=CHANNEL` (init); without it the task ends at once.
fn init(context: &Context<'static>) -> Result<(), Error> {
    if let Some(channel) = context.option("status").filter(|c| !c.is_empty()) {
        CHANNEL.call_once(|| channel);
    }
    CPUS.store(context.cpus.min(MAX_CPUS), Ordering::Relaxed);
    Ok(())
}

/// The report buffer: bigger than is wise on a task stack.
static BUFFER: spin::Mutex<[u8; bulkhead_ring::MAX_SLOT_SIZE as usize]> =
    spin::Mutex::new([0; bulkhead_ring::MAX_SLOT_SIZE as usize]);

/// The status task.
extern "C" fn task(_: usize) {
    let Some(&name) = CHANNEL.get() else {
        return;
    };
    let mut tx = match channels::open_sender(name) {
        Ok(tx) => tx,
        Err(e) => return println!("status: channel {name}: {e}"),
    };
    let max = match tx.attr() {
        Ok(a) => a.message_size,
        Err(e) => return println!("status: channel {name}: {e}"),
    };
    let Some(mut buf) = BUFFER.try_lock() else {
        return println!("status: a second status task");
    };
    let period = report::period_ns();
    let cpus = CPUS.load(Ordering::Relaxed);
    println!(
        "status: reports on {name} every {} s (up to {max} bytes each)",
        period / 1_000_000_000
    );
    let mut tasks = [TaskStatus::default(); MAX_TASKS];
    let (mut sent, mut dropped) = (0u64, 0u64);
    // The channel failed and waits for Linux's request to be re-established.
    let mut down = false;
    let mut next = api::now_ns().saturating_add(period);
    // Each period asks every CPU's report task to publish its tasks for the next report.
    report::request_task_snapshots(cpus);
    loop {
        if api::sleep_until(next).is_err() {
            return;
        }
        next = next.saturating_add(period);
        if down {
            if !tx.reestablish_requested() {
                continue;
            }
            match tx.reestablish() {
                Ok(()) => println!("status: channel {name} re-established"),
                Err(e) => return println!("status: stopped: channel {name}: {e}"),
            }
            down = false;
        }
        let mut latency = [CpuLatency::default(); MAX_CPUS];
        let mut n_cpus = 0;
        for cpu in 0..cpus {
            if let Some(l) = bulkhead_rt_app_latency::latest(cpu) {
                latency[n_cpus] = l;
                n_cpus += 1;
            }
        }
        let n_tasks = report::task_snapshot(&mut tasks, cpus);
        report::request_task_snapshots(cpus);
        let room = max.min(buf.len());
        let len = match status::encode(
            &mut buf[..room],
            api::now_ns(),
            &latency[..n_cpus],
            &tasks[..n_tasks],
        ) {
            Ok(len) => len,
            Err(e) => return println!("status: stopped: channel {name}: {e}"),
        };
        match tx.send(&buf[..len], 0, Timeout::NonBlocking) {
            Ok(()) => sent += 1,
            Err(ChannelError::WouldBlock) => {
                dropped += 1;
                // Say so once per thousand, not once per period.
                if dropped % 1000 == 1 {
                    println!(
                        "status: channel {name} full (nobody reads on Linux): {dropped} reports dropped, {sent} sent"
                    );
                }
            }
            Err(ChannelError::Ring(e)) if e.is_fatal() => {
                println!(
                    "status: channel {name} failed: {e}; waiting for Linux to ask for it again"
                );
                down = true;
            }
            Err(e) => return println!("status: stopped: channel {name}: {e}"),
        }
    }
}
