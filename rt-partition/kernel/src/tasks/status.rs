//! The status task (`status=CHANNEL`): every report period (`latency_report_s`) it sends the
//! Linux partition one status report on the `rt-to-linux` channel CHANNEL: each RT CPU's
//! latency summary and wake-up latency histogram, and every task's CPU time, wake-ups, misses
//! and longest wake-up latency (`bulkhead_abi::status` owns the layout; Linux's
//! `bulkhead rt` shows it). Each CPU's record comes whole from its latency task ([`latest`]).
//!
//! [`latest`]: super::latency::latest
//!
//! It runs at the lowest task priority on CPU 0 and never waits for Linux: a report that finds
//! the ring full (nobody reads on Linux) is dropped and counted, so the real-time tasks never
//! notice whether Linux listens.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bulkhead_abi::status::{self, CpuLatency, TaskStatus};
use spin::Once;

use crate::api::{self, Timeout};
use crate::channels::{self, ChannelError};
use crate::println;
use crate::sched::MAX_TASKS;

// Every RT CPU has a record in a report, and they all fit a 2048-byte channel slot.
const _: () = assert!(
    crate::MAX_CPUS <= status::MAX_REPORT_CPUS
        && status::message_len(crate::MAX_CPUS, 0) + bulkhead_ring::SLOT_HEADER_SIZE <= 2048
);

static CHANNEL: Once<&'static str> = Once::new();
static PERIOD_NS: AtomicU64 = AtomicU64::new(1_000_000_000);
static CPUS: AtomicUsize = AtomicUsize::new(1);

/// Sets the channel, the period and the number of CPUs (init).
pub fn configure(channel: &'static str, period_s: u64, cpus: usize) {
    CHANNEL.call_once(|| channel);
    PERIOD_NS.store(period_s.max(1) * 1_000_000_000, Ordering::Relaxed);
    CPUS.store(cpus.min(crate::MAX_CPUS), Ordering::Relaxed);
}

/// The report buffer: bigger than is wise on a task stack.
static BUFFER: spin::Mutex<[u8; bulkhead_ring::MAX_SLOT_SIZE as usize]> =
    spin::Mutex::new([0; bulkhead_ring::MAX_SLOT_SIZE as usize]);

/// The status task.
pub extern "C" fn task(_: usize) {
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
    let period = PERIOD_NS.load(Ordering::Relaxed);
    let cpus = CPUS.load(Ordering::Relaxed);
    println!(
        "status: reports on {name} every {} s (up to {max} bytes each)",
        period / 1_000_000_000
    );
    let mut tasks = [TaskStatus::default(); MAX_TASKS];
    let (mut sent, mut dropped) = (0u64, 0u64);
    let mut next = api::now_ns().saturating_add(period);
    loop {
        if api::sleep_until(next).is_err() {
            return;
        }
        next = next.saturating_add(period);
        let mut latency = [CpuLatency::default(); crate::MAX_CPUS];
        let mut n_cpus = 0;
        for cpu in 0..cpus {
            if let Some(l) = super::latency::latest(cpu) {
                latency[n_cpus] = l;
                n_cpus += 1;
            }
        }
        let n_tasks = crate::sched::task_snapshot(&mut tasks, cpus);
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
            Err(e) => return println!("status: stopped: channel {name}: {e}"),
        }
    }
}
