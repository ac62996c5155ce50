//! `selftest=kernel`: the kernel checks itself on the real timers and interrupts.
//!
//! A controller task (CPU 0, priority 50) runs each test in turn, driving worker tasks that
//! wait on semaphores: high (60), mid (40), low (20), two round-robin tasks (30, 1 ms
//! slices), and on a second CPU a remote task (60). What happens is recorded in an order
//! log of letters. Each test prints `PASS <name>` or `FAIL <name>: <why>`, and finally
//! `selftest: N passed, M failed`.
//!
//! - `preemption`: waking a higher priority preempts at once, a lower one waits;
//! - `round-robin`: two equal-priority SCHED_RR tasks share the CPU in slices;
//! - `priority-inheritance`: a low task holding a mutex a high task waits for runs at the
//!   high priority, ahead of a middle task;
//! - `timeouts`: semaphore, event-flags and queue waits time out on time, sleeps are never
//!   early, past deadlines fail at once;
//! - `cross-cpu-wake`: a post on CPU 0 wakes a task on CPU 1 through the rescheduling IPI;
//! - `message-queue`: priority order, and a blocked receiver woken by a sender.

#![allow(
    clippy::result_large_err,
    reason = "a test's failure text (`Why`) is built once per test, without allocation"
)]

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use bulkhead_rt_core::sync::{FlagsCondition, FlagsMode};
use bulkhead_rt_core::{Error, Policy};
use spin::Once;

use crate::api::{self, MutexHandle, QueueHandle, SemaphoreHandle, Timeout};
use crate::println;
use crate::sched::{TaskSpec, spawn};

const MS: u64 = 1_000_000;
/// How late a timed wake-up may be before a test calls it a failure. Generous: QEMU's time
/// follows the host, and a loaded host stalls it for tens of milliseconds; what matters
/// here is never early and never lost (the latency tasks measure lateness).
const LATE_LIMIT_NS: u64 = 50 * MS;

const PRIO_CONTROLLER: u8 = 50;
const PRIO_HIGH: u8 = 60;
const PRIO_MID: u8 = 40;
const PRIO_RR: u8 = 30;
const PRIO_LOW: u8 = 20;

/// Which test the workers act for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Test {
    Idle = 0,
    Preemption = 1,
    RoundRobin = 2,
    Inheritance = 3,
    Queue = 4,
    Remote = 5,
}

static TEST: AtomicU32 = AtomicU32::new(Test::Idle as u32);

fn current_test() -> Test {
    match TEST.load(Ordering::Acquire) {
        1 => Test::Preemption,
        2 => Test::RoundRobin,
        3 => Test::Inheritance,
        4 => Test::Queue,
        5 => Test::Remote,
        _ => Test::Idle,
    }
}

/// The objects the tests share.
#[derive(Debug)]
struct Objects {
    high: SemaphoreHandle,
    mid: SemaphoreHandle,
    low: SemaphoreHandle,
    rr: SemaphoreHandle,
    rr_done: SemaphoreHandle,
    remote: SemaphoreHandle,
    never: SemaphoreHandle,
    mutex: MutexHandle,
    flags: api::EventFlagsHandle,
    queue: QueueHandle,
}

static OBJECTS: Once<Objects> = Once::new();
static CPUS: AtomicUsize = AtomicUsize::new(1);

/// The order log: letters appended by the tasks.
static LOG: [AtomicU8; 32] = [const { AtomicU8::new(0) }; 32];
static LOG_LEN: AtomicUsize = AtomicUsize::new(0);

fn log_reset() {
    LOG_LEN.store(0, Ordering::SeqCst);
}

fn log_push(letter: u8) {
    let at = LOG_LEN.fetch_add(1, Ordering::SeqCst);
    if let Some(slot) = LOG.get(at) {
        slot.store(letter, Ordering::SeqCst);
    }
}

fn log_is(expected: &str) -> bool {
    let len = LOG_LEN.load(Ordering::SeqCst);
    len == expected.len()
        && expected
            .bytes()
            .zip(LOG.iter())
            .all(|(e, slot)| slot.load(Ordering::SeqCst) == e)
}

/// The log as text, for failure messages.
struct LogText([u8; 32], usize);

impl LogText {
    fn now() -> Self {
        let len = LOG_LEN.load(Ordering::SeqCst).min(32);
        let mut text = [b'?'; 32];
        for (slot, out) in LOG.iter().zip(text.iter_mut()).take(len) {
            *out = slot.load(Ordering::SeqCst);
        }
        Self(text, len)
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0[..self.1]).unwrap_or("?")
    }
}

/// What the round-robin and inheritance tests observed.
static RR_TURNS: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
static RR_LAST: AtomicUsize = AtomicUsize::new(usize::MAX);
static RR_DONE: AtomicU32 = AtomicU32::new(0);
static RR_UNTIL: AtomicU64 = AtomicU64::new(0);
static INHERITED: AtomicU32 = AtomicU32::new(0);
static REMOTE_WOKE_AT: AtomicU64 = AtomicU64::new(0);
static REMOTE_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Creates the objects and tasks (init).
pub fn create(cpus: usize) -> Result<(), Error> {
    CPUS.store(cpus, Ordering::Relaxed);
    let objects = Objects {
        high: api::create_semaphore(0, 0, 8)?,
        mid: api::create_semaphore(0, 0, 8)?,
        low: api::create_semaphore(0, 0, 8)?,
        rr: api::create_semaphore(0, 0, 8)?,
        rr_done: api::create_semaphore(0, 0, 8)?,
        // Waited on by the task on CPU 1 (on CPU 0 when there is no CPU 1, and unused).
        remote: api::create_semaphore(if cpus > 1 { 1 } else { 0 }, 0, 8)?,
        never: api::create_semaphore(0, 0, 1)?,
        mutex: api::create_mutex(0)?,
        flags: api::create_event_flags(0, 0)?,
        queue: api::create_queue(0)?,
    };
    OBJECTS.call_once(|| objects);
    let fifo = Policy::Fifo;
    let tasks = [
        (
            "selftest",
            0,
            PRIO_CONTROLLER,
            fifo,
            controller as extern "C" fn(usize),
            0,
        ),
        ("st-high", 0, PRIO_HIGH, fifo, worker_high, 0),
        ("st-mid", 0, PRIO_MID, fifo, worker_mid, 0),
        ("st-low", 0, PRIO_LOW, fifo, worker_low, 0),
        (
            "st-rr-a",
            0,
            PRIO_RR,
            Policy::RoundRobin { slice_ns: MS },
            worker_rr,
            0,
        ),
        (
            "st-rr-b",
            0,
            PRIO_RR,
            Policy::RoundRobin { slice_ns: MS },
            worker_rr,
            1,
        ),
    ];
    for (name, core, priority, policy, entry, arg) in tasks {
        spawn(TaskSpec {
            name,
            core,
            priority,
            policy,
            entry,
            arg,
        })?;
    }
    if cpus > 1 {
        spawn(TaskSpec {
            name: "st-remote",
            core: 1,
            priority: PRIO_HIGH,
            policy: fifo,
            entry: worker_remote,
            arg: 0,
        })?;
    }
    Ok(())
}

fn objects() -> &'static Objects {
    // Created before any task runs.
    OBJECTS
        .get()
        .unwrap_or_else(|| crate::fatal(format_args!("self-test objects missing")))
}

extern "C" fn worker_high(_: usize) {
    let o = objects();
    while api::sem_wait(o.high, Timeout::Forever).is_ok() {
        match current_test() {
            Test::Preemption => log_push(b'H'),
            Test::Inheritance if api::mutex_lock(o.mutex, Timeout::Forever).is_ok() => {
                log_push(b'H');
                let _ = api::mutex_unlock(o.mutex);
            }
            _ => {}
        }
    }
}

extern "C" fn worker_mid(_: usize) {
    let o = objects();
    while api::sem_wait(o.mid, Timeout::Forever).is_ok() {
        match current_test() {
            Test::Inheritance => {
                api::spin_for(3 * MS);
                log_push(b'M');
            }
            Test::Queue => {
                let _ = api::queue_send(o.queue, b"ping", 7, Timeout::Forever);
            }
            _ => {}
        }
    }
}

extern "C" fn worker_low(_: usize) {
    let o = objects();
    while api::sem_wait(o.low, Timeout::Forever).is_ok() {
        match current_test() {
            Test::Preemption => log_push(b'L'),
            Test::Inheritance => {
                if api::mutex_lock(o.mutex, Timeout::Forever).is_err() {
                    continue;
                }
                log_push(b'l');
                // Hold the mutex until a higher-priority waiter has lent its priority (then
                // a little longer), or a generous limit: without inheritance the middle
                // task keeps this one off the CPU and the order shows it.
                let limit = api::now_ns() + 200 * MS;
                let mut lent_at = None;
                loop {
                    let now = api::now_ns();
                    let p = u32::from(api::effective_priority().level());
                    INHERITED.fetch_max(p, Ordering::SeqCst);
                    if p > u32::from(PRIO_LOW) && lent_at.is_none() {
                        lent_at = Some(now);
                    }
                    if now >= limit || lent_at.is_some_and(|t| now >= t + 2 * MS) {
                        break;
                    }
                    api::spin_for(50_000);
                }
                let _ = api::mutex_unlock(o.mutex);
                log_push(b'u');
            }
            _ => {}
        }
    }
}

/// Turns the two round-robin tasks take in all before they stop.
const RR_TOTAL_TURNS: u32 = 10;

extern "C" fn worker_rr(me: usize) {
    let o = objects();
    while api::sem_wait(o.rr, Timeout::Forever).is_ok() {
        // Spin until the two tasks have taken turns often enough (or a generous limit),
        // counting how often this one got the CPU back from the other: only time slices
        // can make them alternate, since neither blocks nor yields.
        let until = RR_UNTIL.load(Ordering::SeqCst);
        while api::now_ns() < until {
            if RR_LAST.swap(me, Ordering::SeqCst) != me {
                RR_TURNS[me].fetch_add(1, Ordering::SeqCst);
            }
            let total = RR_TURNS[0].load(Ordering::SeqCst) + RR_TURNS[1].load(Ordering::SeqCst);
            if total >= RR_TOTAL_TURNS {
                break;
            }
            core::hint::spin_loop();
        }
        RR_DONE.fetch_add(1, Ordering::SeqCst);
        let _ = api::sem_post(o.rr_done);
    }
}

extern "C" fn worker_remote(_: usize) {
    let o = objects();
    while api::sem_wait(o.remote, Timeout::Forever).is_ok() {
        REMOTE_WOKE_AT.store(api::now_ns(), Ordering::SeqCst);
        REMOTE_CPU.store(api::cpu(), Ordering::SeqCst);
    }
}

/// A failure reason with numbers in it. Large for an error, and fine: it is returned once
/// per test, on a 32 KiB stack.
struct Why {
    text: [u8; 160],
    len: usize,
}

impl Why {
    fn new(args: core::fmt::Arguments<'_>) -> Self {
        let mut why = Self {
            text: [0; 160],
            len: 0,
        };
        let _ = why.write_fmt(args);
        why
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.text[..self.len]).unwrap_or("?")
    }
}

impl core::fmt::Write for Why {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.text.len() {
                self.text[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

macro_rules! fail {
    ($($arg:tt)*) => { return Err(Why::new(format_args!($($arg)*))) };
}

type Outcome = Result<(), Why>;
/// A named test.
type SelfTest = (&'static str, fn() -> Outcome);

/// Sleeps in steps until the order log holds `len` letters or `limit_ns` passed.
fn wait_for_log(len: usize, limit_ns: u64) {
    let end = api::now_ns() + limit_ns;
    while LOG_LEN.load(Ordering::SeqCst) < len && api::now_ns() < end {
        let _ = api::sleep_for(MS);
    }
}

fn set_test(test: Test) {
    TEST.store(test as u32, Ordering::Release);
}

fn test_preemption() -> Outcome {
    let o = objects();
    set_test(Test::Preemption);
    log_reset();
    api::sem_post(o.low).map_err(|e| Why::new(format_args!("post: {e}")))?;
    log_push(b'a');
    api::sem_post(o.high).map_err(|e| Why::new(format_args!("post: {e}")))?;
    log_push(b'b');
    wait_for_log(4, 100 * MS);
    if !log_is("aHbL") {
        fail!("order {:?}, expected \"aHbL\"", LogText::now().as_str());
    }
    Ok(())
}

fn test_round_robin() -> Outcome {
    let o = objects();
    set_test(Test::RoundRobin);
    RR_TURNS[0].store(0, Ordering::SeqCst);
    RR_TURNS[1].store(0, Ordering::SeqCst);
    RR_LAST.store(usize::MAX, Ordering::SeqCst);
    RR_DONE.store(0, Ordering::SeqCst);
    // With 1 ms slices the ten turns take about 10 ms; FIFO would let the first task spin
    // alone to this limit.
    let limit = api::now_ns() + 200 * MS;
    RR_UNTIL.store(limit, Ordering::SeqCst);
    for _ in 0..2 {
        api::sem_post(o.rr).map_err(|e| Why::new(format_args!("post: {e}")))?;
    }
    for _ in 0..2 {
        // The controller outranks them, so it waits here while they run.
        let _ = api::sem_wait(o.rr_done, Timeout::Until(limit + 100 * MS));
    }
    let (a, b) = (
        RR_TURNS[0].load(Ordering::SeqCst),
        RR_TURNS[1].load(Ordering::SeqCst),
    );
    let done = RR_DONE.load(Ordering::SeqCst);
    if done != 2 {
        fail!("{done} of 2 round-robin tasks finished within 300 ms");
    }
    if a < RR_TOTAL_TURNS / 2 - 1 || b < RR_TOTAL_TURNS / 2 - 1 {
        fail!(
            "turns {a} and {b}: the tasks did not take turns in their slices (expected at least {} each)",
            RR_TOTAL_TURNS / 2 - 1
        );
    }
    Ok(())
}

fn test_inheritance() -> Outcome {
    let o = objects();
    set_test(Test::Inheritance);
    log_reset();
    INHERITED.store(0, Ordering::SeqCst);
    api::sem_post(o.low).map_err(|e| Why::new(format_args!("post: {e}")))?;
    // Let the low task take the mutex (it logs 'l' holding it). Waiting for that, rather
    // than for a fixed time, keeps the test right where the low task's CPU runs slowly (an
    // emulator on a loaded host).
    wait_for_log(1, 400 * MS);
    api::sem_post(o.mid).map_err(|e| Why::new(format_args!("post: {e}")))?;
    api::sem_post(o.high).map_err(|e| Why::new(format_args!("post: {e}")))?;
    wait_for_log(4, 400 * MS);
    let inherited = INHERITED.load(Ordering::SeqCst);
    if !log_is("lHMu") {
        fail!(
            "order {:?}, expected \"lHMu\" (inherited priority {inherited})",
            LogText::now().as_str()
        );
    }
    if inherited != u32::from(PRIO_HIGH) {
        fail!("the mutex owner ran at priority {inherited}, expected {PRIO_HIGH}");
    }
    Ok(())
}

/// Checks that a wait that began at `start` with deadline `deadline` ended on time.
fn on_time(what: &str, start: u64, deadline: u64, result: Result<(), Error>) -> Outcome {
    let end = api::now_ns();
    if result != Err(Error::TimedOut) {
        fail!("{what}: {result:?}, expected a timeout");
    }
    if end < deadline {
        fail!("{what}: returned {} ns early", deadline - end);
    }
    if end - deadline > LATE_LIMIT_NS {
        fail!(
            "{what}: returned {} us late (waited from {start})",
            (end - deadline) / 1000
        );
    }
    Ok(())
}

fn test_timeouts() -> Outcome {
    let o = objects();
    set_test(Test::Idle);
    let start = api::now_ns();
    let deadline = start + 2 * MS;
    on_time(
        "semaphore",
        start,
        deadline,
        api::sem_wait(o.never, Timeout::Until(deadline)),
    )?;

    let start = api::now_ns();
    let deadline = start + 3 * MS;
    let condition = FlagsCondition {
        mask: 0b100,
        mode: FlagsMode::All,
        clear_on_exit: false,
    };
    on_time(
        "event flags",
        start,
        deadline,
        api::event_wait(o.flags, condition, Timeout::Until(deadline)).map(drop),
    )?;

    let start = api::now_ns();
    let deadline = start + MS;
    let mut buffer = [0u8; 64];
    on_time(
        "queue receive",
        start,
        deadline,
        api::queue_receive(o.queue, &mut buffer, Timeout::Until(deadline)).map(drop),
    )?;

    let deadline = api::now_ns() + 2 * MS + 500_000;
    let _ = api::sleep_until(deadline);
    let woke = api::now_ns();
    if woke < deadline || woke - deadline > LATE_LIMIT_NS {
        fail!(
            "sleep_until: woke {} ns from its deadline",
            woke as i64 - deadline as i64
        );
    }

    // Flags already set satisfy a wait at once.
    api::event_set(o.flags, 0b100).map_err(|e| Why::new(format_args!("set: {e}")))?;
    let condition = FlagsCondition {
        mask: 0b100,
        mode: FlagsMode::All,
        clear_on_exit: true,
    };
    match api::event_wait(o.flags, condition, Timeout::NonBlocking) {
        Ok(flags) if flags & 0b100 != 0 => {}
        other => fail!("event flags set before the wait: {other:?}"),
    }

    let past = api::now_ns();
    if api::sem_wait(o.never, Timeout::Until(past)) != Err(Error::TimedOut) {
        fail!("a deadline in the past did not fail at once");
    }
    if api::sem_wait(o.never, Timeout::NonBlocking) != Err(Error::WouldBlock) {
        fail!("a non-blocking wait on an empty semaphore did not fail");
    }
    Ok(())
}

fn test_remote() -> Outcome {
    let o = objects();
    set_test(Test::Remote);
    REMOTE_WOKE_AT.store(0, Ordering::SeqCst);
    let posted = api::now_ns();
    api::sem_post(o.remote).map_err(|e| Why::new(format_args!("post: {e}")))?;
    let end = posted + 100 * MS;
    while REMOTE_WOKE_AT.load(Ordering::SeqCst) == 0 && api::now_ns() < end {
        let _ = api::sleep_for(MS);
    }
    let woke = REMOTE_WOKE_AT.load(Ordering::SeqCst);
    let cpu = REMOTE_CPU.load(Ordering::SeqCst);
    if woke == 0 {
        fail!("the task on CPU 1 did not run within 100 ms");
    }
    if cpu != 1 {
        fail!("the remote task ran on CPU {cpu}");
    }
    if woke.saturating_sub(posted) > LATE_LIMIT_NS {
        fail!(
            "the remote task ran {} us after the post",
            (woke - posted) / 1000
        );
    }
    Ok(())
}

fn test_queue() -> Outcome {
    let o = objects();
    set_test(Test::Queue);
    for (message, priority) in [(b"one", 1u32), (b"fiv", 5), (b"thr", 3)] {
        api::queue_send(o.queue, message, priority, Timeout::NonBlocking)
            .map_err(|e| Why::new(format_args!("send: {e}")))?;
    }
    let mut buffer = [0u8; 64];
    for expected in [5u32, 3, 1] {
        let got = api::queue_receive(o.queue, &mut buffer, Timeout::NonBlocking)
            .map_err(|e| Why::new(format_args!("receive: {e}")))?;
        if got.priority != expected || got.len != 3 {
            fail!(
                "received priority {} (len {}), expected {expected}",
                got.priority,
                got.len
            );
        }
    }
    // A blocked receiver is woken by a sender of lower priority.
    api::sem_post(o.mid).map_err(|e| Why::new(format_args!("post: {e}")))?;
    let deadline = api::now_ns() + 50 * MS;
    let got = api::queue_receive(o.queue, &mut buffer, Timeout::Until(deadline))
        .map_err(|e| Why::new(format_args!("blocking receive: {e}")))?;
    if &buffer[..got.len] != b"ping" || got.priority != 7 {
        fail!(
            "blocking receive got {} bytes at priority {}",
            got.len,
            got.priority
        );
    }
    Ok(())
}

extern "C" fn controller(_: usize) {
    // Let the boot messages and the first latency samples pass.
    api::yield_now();
    let _ = api::sleep_for(20 * MS);
    let mut tests: [SelfTest; 6] = [
        ("preemption", test_preemption),
        ("round-robin", test_round_robin),
        ("priority-inheritance", test_inheritance),
        ("timeouts", test_timeouts),
        ("message-queue", test_queue),
        ("cross-cpu-wake", test_remote),
    ];
    let count = if CPUS.load(Ordering::Relaxed) > 1 {
        tests.len()
    } else {
        tests.len() - 1
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests.iter_mut().take(count) {
        match test() {
            Ok(()) => {
                passed += 1;
                println!("PASS {name}");
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {name}: {}", why.as_str());
            }
        }
        set_test(Test::Idle);
        let _ = api::sleep_for(2 * MS);
    }
    println!(
        "{}",
        bulkhead_abi::console::SelftestSummary { passed, failed }
    );
}
