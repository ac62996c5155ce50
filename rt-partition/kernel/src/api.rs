//! The task API: what a task calls to sleep, yield, and use the synchronisation objects.
//!
//! Tasks run in ring 0 in the kernel's address space, so a "system call" is an ordinary
//! function call: it disables interrupts, works on its own core's state (`sched.rs`), asks
//! `bulkhead-rt-core`, switches tasks if told to, and on resuming reads why the wait ended.
//! Objects are created at init (no allocation afterwards) and named by small copyable
//! handles.
//!
//! **Every object belongs to one CPU**, named when it is created: only that CPU's tasks may
//! wait on it, own it (a mutex: priority inheritance stays on one core) or receive from it;
//! any other CPU gets [`Error::OtherCore`]. Posts are the exception: a task of any CPU may
//! post a semaphore or set event flags, and from another CPU the post travels to the owner
//! by its mailbox and an IPI, so no CPU ever takes another's state ([`Error::WouldBlock`]
//! when that mailbox is full; nothing was posted). Times are the
//! kernel's monotonic nanoseconds ([`now_ns`]); waits take a [`Timeout`] with an absolute
//! deadline, like the POSIX `timed*` calls. Each call that enters the kernel is
//! `#[track_caller]`, so the kernel's measured interrupts-off sections (`crate::trace`) name
//! the task's source line that made it.

use bulkhead_rt_core::clock::{Periodic, Sleep};
use bulkhead_rt_core::sync::{
    Acquire, FlagsCondition, FlagsWait, ReceiveOutcome, Received, SendOutcome,
};
use bulkhead_rt_core::{CoreId, Error, Priority, Resched, Switch, WakeReason};

pub use bulkhead_rt_core::Timeout;

use crate::arch::{IrqGuard, time};
use crate::sched::{self, State};

/// Where an object lives: its CPU and its index in that CPU's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    cpu: usize,
    index: usize,
}

/// A mutex made by [`create_mutex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MutexHandle(Place);
/// A semaphore made by [`create_semaphore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemaphoreHandle(Place);
/// Event flags made by [`create_event_flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFlagsHandle(Place);
/// A message queue made by [`create_queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueHandle(Place);

/// The kernel's time: nanoseconds since boot.
#[inline]
pub fn now_ns() -> u64 {
    time::now_ns()
}

/// The partition index of the CPU the caller runs on.
pub fn cpu() -> usize {
    crate::percpu::current_index()
}

/// The priority the caller is scheduled at now (raised by priority inheritance).
#[track_caller]
pub fn effective_priority() -> Priority {
    sched::enter(|state, core, _| {
        let p = state
            .kernel
            .current(core)
            .and_then(|t| state.kernel.effective_priority(t))
            .unwrap_or(Priority::LOWEST);
        (p, Resched::NONE, Switch::Stay)
    })
}

/// Busy-waits `ns` nanoseconds of wall time (the task stays preemptible).
pub fn spin_for(ns: u64) {
    let end = now_ns().saturating_add(ns);
    while now_ns() < end {
        core::hint::spin_loop();
    }
}

/// Why the caller's last wait ended (read once, on resuming; taking it changes nothing the
/// scheduler decides on, so it is not a full kernel entry). The waits read it in a short
/// interrupts-off section of its own, after the one that blocked and resumed them has
/// ended: a running task's reason stays as its waker left it (a wake-up of a running task
/// is only remembered as pending, and its wait's timer was cancelled when it was made
/// ready), so nothing is lost in between, and the section an interrupt ends in when it
/// switches to a woken task is shorter by this read.
pub(crate) fn wake_reason() -> Option<WakeReason> {
    sched::peek_own(|state, core| {
        state
            .kernel
            .current(core)
            .and_then(|t| state.kernel.take_wake_reason(t))
            .ok()
            .flatten()
    })
}

/// A sleep's kernel entry. Its wake reason (deadline or early wake) is not read: sleeps
/// return nothing, and every block or sleep resets the reason, so it is never read stale.
fn finish_sleep(sleep: Result<Sleep, Error>) -> (Result<(), Error>, Resched, Switch) {
    match sleep {
        Ok(Sleep::Elapsed) => (Ok(()), Resched::NONE, Switch::Stay),
        Ok(Sleep::Asleep(resched)) => (Ok(()), resched, Switch::Stay),
        Err(e) => (Err(e), Resched::NONE, Switch::Stay),
    }
}

/// Sleeps until the absolute time `deadline_ns` (`clock_nanosleep(TIMER_ABSTIME)`): a
/// deadline in the past returns at once.
#[track_caller]
pub fn sleep_until(deadline_ns: u64) -> Result<(), Error> {
    sched::enter(|state, core, now| {
        finish_sleep(state.kernel.sleep_until(core, deadline_ns, now))
    })
    .map(drop)
}

/// Sleeps for `duration_ns`.
#[track_caller]
pub fn sleep_for(duration_ns: u64) -> Result<(), Error> {
    sleep_until(now_ns().saturating_add(duration_ns))
}

/// Ends the current job of a periodic task and sleeps until its next release. Returns
/// whether the job that just ended missed its deadline (also counted in the task's stats).
#[track_caller]
pub fn wait_next_period(periodic: &mut Periodic) -> Result<bool, Error> {
    let misses_before = periodic.misses();
    sched::enter(|state, core, now| {
        finish_sleep(state.kernel.wait_next_period(core, periodic, now))
    })?;
    Ok(periodic.misses() != misses_before)
}

/// Goes to the tail of the caller's priority (`sched_yield`).
#[track_caller]
pub fn yield_now() {
    sched::enter(|state, core, now| {
        let switch = state
            .kernel
            .yield_current(core, now)
            .unwrap_or(Switch::Stay);
        ((), Resched::NONE, switch)
    });
}

/// After a wait that blocked: the outcome by its wake reason.
fn blocked_outcome() -> Result<u32, Error> {
    match wake_reason() {
        Some(WakeReason::Acquired) | Some(WakeReason::Woken) | None => Ok(0),
        Some(WakeReason::Flags(flags)) => Ok(flags),
        Some(WakeReason::Timeout) => Err(Error::TimedOut),
        Some(WakeReason::Retry) => Err(Error::WouldBlock),
    }
}

// ----- creation (init) -------------------------------------------------------------------

fn store<T>(table: &mut [Option<T>], value: T) -> Result<usize, Error> {
    let index = table
        .iter()
        .position(Option::is_none)
        .ok_or(Error::InvalidArgument)?;
    table[index] = Some(value);
    Ok(index)
}

/// A new priority-inheritance mutex for the tasks of CPU `cpu`.
#[track_caller]
pub fn create_mutex(cpu: usize) -> Result<MutexHandle, Error> {
    sched::with_state_of(cpu, |s| {
        let m = s.kernel.create_mutex();
        store(&mut s.mutexes, m).map(|index| MutexHandle(Place { cpu, index }))
    })
}

/// A new counting semaphore for the tasks of CPU `cpu`.
#[track_caller]
pub fn create_semaphore(cpu: usize, initial: u32, max: u32) -> Result<SemaphoreHandle, Error> {
    sched::with_state_of(cpu, |s| {
        let sem = s.kernel.create_semaphore(initial, max)?;
        store(&mut s.semaphores, sem).map(|index| SemaphoreHandle(Place { cpu, index }))
    })
}

/// New event flags for the tasks of CPU `cpu`.
#[track_caller]
pub fn create_event_flags(cpu: usize, initial: u32) -> Result<EventFlagsHandle, Error> {
    sched::with_state_of(cpu, |s| {
        let f = s.kernel.create_event_flags(initial);
        store(&mut s.event_flags, f).map(|index| EventFlagsHandle(Place { cpu, index }))
    })
}

/// A new message queue (64-byte messages, 16 slots) for the tasks of CPU `cpu`.
#[track_caller]
pub fn create_queue(cpu: usize) -> Result<QueueHandle, Error> {
    sched::with_state_of(cpu, |s| {
        let q = s.kernel.create_message_queue();
        store(&mut s.queues, q).map(|index| QueueHandle(Place { cpu, index }))
    })
}

// ----- object calls ----------------------------------------------------------------------

/// The object `index` names in `table`, or [`Error::InvalidArgument`].
fn object<T>(table: &mut [Option<T>], index: usize) -> Result<&mut T, Error> {
    table
        .get_mut(index)
        .and_then(Option::as_mut)
        .ok_or(Error::InvalidArgument)
}

/// Runs one call on an object of CPU `owner` in this core's state: `f` gives its result and
/// what to reschedule. [`Error::OtherCore`] when the object is another CPU's. A failed call
/// asks for no rescheduling; no call names a switch itself (`Switch::Stay`). Its
/// interrupts-off section is named for the API call's caller, and ends when the call
/// returns (after the switch back, for a call that blocked): a wait's outcome is read after
/// it, in a section of its own.
#[track_caller]
fn call<R>(
    owner: usize,
    f: impl FnOnce(&mut State, CoreId, u64) -> Result<(R, Resched), Error>,
) -> Result<R, Error> {
    if owner != cpu() {
        return Err(Error::OtherCore);
    }
    let _irq = IrqGuard::new();
    sched::enter(|state, core, now| match f(state, core, now) {
        Ok((result, resched)) => (Ok(result), resched, Switch::Stay),
        Err(e) => (Err(e), Resched::NONE, Switch::Stay),
    })
}

/// Takes a mutex or a semaphore unit of CPU `owner` with `wait`: at once, or after blocking
/// until the wake reason says how the wait ended.
#[track_caller]
fn acquire(
    owner: usize,
    wait: impl FnOnce(&mut State, CoreId, u64) -> Result<Acquire, Error>,
) -> Result<(), Error> {
    let blocked = call(owner, |state, core, now| match wait(state, core, now)? {
        Acquire::Acquired => Ok((false, Resched::NONE)),
        Acquire::Blocked(r) => Ok((true, r)),
    })?;
    if blocked {
        blocked_outcome().map(drop)
    } else {
        Ok(())
    }
}

// ----- mutexes ---------------------------------------------------------------------------

/// Locks `mutex` (`pthread_mutex_timedlock`; `Timeout::NonBlocking` is `trylock`).
#[track_caller]
pub fn mutex_lock(mutex: MutexHandle, timeout: Timeout) -> Result<(), Error> {
    let Place { cpu, index } = mutex.0;
    acquire(cpu, |state, core, now| {
        let m = object(&mut state.mutexes, index)?;
        state.kernel.mutex_lock(core, m, timeout, now)
    })
}

/// Unlocks `mutex`, which the caller must own.
#[track_caller]
pub fn mutex_unlock(mutex: MutexHandle) -> Result<(), Error> {
    let Place { cpu, index } = mutex.0;
    call(cpu, |state, core, now| {
        let m = object(&mut state.mutexes, index)?;
        Ok(((), state.kernel.mutex_unlock(core, m, now)?))
    })
}

// ----- semaphores ------------------------------------------------------------------------

/// Takes a unit (`sem_timedwait`; `Timeout::NonBlocking` is `sem_trywait`).
#[track_caller]
pub fn sem_wait(sem: SemaphoreHandle, timeout: Timeout) -> Result<(), Error> {
    let Place { cpu, index } = sem.0;
    acquire(cpu, |state, core, now| {
        let s = object(&mut state.semaphores, index)?;
        state.kernel.semaphore_wait(core, s, timeout, now)
    })
}

/// Gives a unit (`sem_post`), from any CPU: on another CPU than the semaphore's, through
/// the mailbox (a post the owner then finds at its maximum is counted as refused there).
#[track_caller]
pub fn sem_post(sem: SemaphoreHandle) -> Result<(), Error> {
    let Place { cpu: owner, index } = sem.0;
    if owner != cpu() {
        return sched::send_request(owner, sched::Request::SemaphorePost(index));
    }
    call(owner, |state, _core, now| {
        let s = object(&mut state.semaphores, index)?;
        Ok(((), state.kernel.semaphore_post(s, now)?))
    })
}

// ----- event flags -----------------------------------------------------------------------

/// Waits until `condition` holds on `flags`; returns the flags as they were then.
#[track_caller]
pub fn event_wait(
    flags: EventFlagsHandle,
    condition: FlagsCondition,
    timeout: Timeout,
) -> Result<u32, Error> {
    let Place { cpu, index } = flags.0;
    let outcome = call(cpu, |state, core, now| {
        let f = object(&mut state.event_flags, index)?;
        let wait = state
            .kernel
            .event_flags_wait(core, f, condition, timeout, now)?;
        match wait {
            FlagsWait::Satisfied(seen) => Ok((Some(seen), Resched::NONE)),
            FlagsWait::Blocked(r) => Ok((None, r)),
        }
    })?;
    match outcome {
        Some(seen) => Ok(seen),
        None => blocked_outcome(),
    }
}

/// Sets `bits` in `flags`, waking every waiter whose condition then holds; from any CPU
/// (through the mailbox from another CPU than the flags').
#[track_caller]
pub fn event_set(flags: EventFlagsHandle, bits: u32) -> Result<(), Error> {
    let Place { cpu: owner, index } = flags.0;
    if owner != cpu() {
        return sched::send_request(owner, sched::Request::EventSet(index, bits));
    }
    call(owner, |state, _core, now| {
        let f = object(&mut state.event_flags, index)?;
        Ok(((), state.kernel.event_flags_set(f, bits, now)))
    })
}

// ----- message queues --------------------------------------------------------------------

/// Sends `message` at `priority` (`mq_timedsend`), from a task of the queue's CPU.
#[track_caller]
pub fn queue_send(
    queue: QueueHandle,
    message: &[u8],
    priority: u32,
    timeout: Timeout,
) -> Result<(), Error> {
    let Place { cpu, index } = queue.0;
    loop {
        let blocked = call(cpu, |state, core, now| {
            let q = object(&mut state.queues, index)?;
            let sent = state
                .kernel
                .queue_send(core, q, message, priority, timeout, now)?;
            match sent {
                SendOutcome::Sent(r) => Ok((false, r)),
                SendOutcome::Blocked(r) => Ok((true, r)),
            }
        })?;
        if !blocked {
            return Ok(());
        }
        match blocked_outcome() {
            Err(Error::WouldBlock) => continue,
            other => other.map(drop)?,
        }
    }
}

/// Receives the next message into `buffer` (`mq_timedreceive`), on the queue's CPU.
#[track_caller]
pub fn queue_receive(
    queue: QueueHandle,
    buffer: &mut [u8],
    timeout: Timeout,
) -> Result<Received, Error> {
    let Place { cpu, index } = queue.0;
    loop {
        let outcome = call(cpu, |state, core, now| {
            let q = object(&mut state.queues, index)?;
            let received = state.kernel.queue_receive(core, q, buffer, timeout, now)?;
            match received {
                ReceiveOutcome::Received { message, resched } => Ok((Some(message), resched)),
                ReceiveOutcome::Blocked(r) => Ok((None, r)),
            }
        })?;
        if let Some(message) = outcome {
            return Ok(message);
        }
        match blocked_outcome() {
            Err(Error::WouldBlock) => continue,
            other => other.map(drop)?,
        }
    }
}
