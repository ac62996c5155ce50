//! Fixed-priority preemptive scheduling with tasks pinned to cores.
//!
//! This module owns who runs where: task identities and states, scheduling policies
//! (SCHED_FIFO and SCHED_RR), the per-core [`RunQueue`] with its O(1) ready bitmap, per-task
//! statistics, and the [`Kernel`] state object whose scheduler entry points return
//! [`Switch`] decisions. It never performs a context switch, never touches a timer and never
//! reads a clock: the arch layer does those and reports the time in nanoseconds.
//!
//! # Rules (POSIX, as for `SCHED_FIFO` / `SCHED_RR`)
//!
//! - Priorities are `0..=255`; **a higher number is a higher priority**. The idle task of
//!   each core runs only when no task of that core is ready, below priority 0.
//! - The running task keeps the core until it blocks, yields, is suspended, or a task of
//!   strictly higher priority becomes ready. Equal priority never preempts.
//! - A task that becomes ready (woken, resumed, created) goes to the tail of its priority.
//! - A preempted task goes to the head of its priority, so it resumes first.
//! - A yielding task goes to the tail of its priority.
//! - A round-robin task whose slice is used up goes to the tail of its priority with a fresh
//!   slice; a preempted one keeps what is left of its slice.
//! - When a ready task's priority is raised it goes to the tail of the new priority; when it
//!   is lowered, to the head (`pthread_setschedprio`).

mod kernel;
mod run_queue;
mod task;

pub use kernel::{Kernel, TaskConfig};
pub use run_queue::{QueuePosition, RunQueue};
pub use task::TaskStats;

use crate::sync::{EventFlagsId, MutexId, QueueId, SemaphoreId};

/// Number of distinct priorities.
pub const PRIORITY_LEVELS: usize = 256;

/// Names a task: its index in the kernel's task table. Idle tasks are `0..CORES`, one per
/// core, in core order; created tasks follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(u16);

impl TaskId {
    /// The task at `index` of the task table. Whether it exists is checked by the kernel.
    pub const fn new(index: u16) -> Self {
        Self(index)
    }

    /// Index in the task table.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Names a core of the partition, counted from 0 (not an APIC id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CoreId(u8);

impl CoreId {
    /// The partition's core number `index`. Whether it exists is checked by the kernel.
    pub const fn new(index: u8) -> Self {
        Self(index)
    }

    /// Core number.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A scheduling priority: `0..=255`, higher number = more urgent (POSIX order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    /// Least urgent priority a task can have (still above the idle task).
    pub const LOWEST: Priority = Priority(0);
    /// Most urgent priority.
    pub const HIGHEST: Priority = Priority(u8::MAX);

    /// The priority `level`; every `u8` is a valid priority.
    pub const fn new(level: u8) -> Self {
        Self(level)
    }

    /// The numeric level.
    pub const fn level(self) -> u8 {
        self.0
    }
}

/// How a task shares its priority level with others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_FIFO`: runs until it blocks, yields or is preempted by a higher priority.
    Fifo,
    /// `SCHED_RR`: as `Fifo`, but after running `slice_ns` it goes to the tail of its
    /// priority so that equal-priority tasks take turns. `slice_ns` must not be 0.
    RoundRobin {
        /// Length of one time slice in nanoseconds.
        slice_ns: u64,
    },
}

/// What a task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// In its core's run queue, waiting for the core.
    Ready,
    /// Its core's current task.
    Running,
    /// Waiting for something other than time (possibly with a timeout).
    Blocked(BlockReason),
    /// Waiting for an absolute time only (`clock_nanosleep`).
    Sleeping,
    /// Taken off the scheduler by [`Kernel::suspend`] until [`Kernel::resume`].
    Suspended,
}

/// What a blocked task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// Parked by [`Kernel::block_current`] with a tag of the arch layer's choosing (for example
    /// a threaded interrupt handler waiting for its interrupt); ended only by [`Kernel::wake`].
    Parked(u32),
    /// Waiting to own a mutex.
    Mutex(MutexId),
    /// Waiting for a semaphore count.
    Semaphore(SemaphoreId),
    /// Waiting for event flags.
    EventFlags(EventFlagsId),
    /// Waiting for room in a full message queue.
    QueueSend(QueueId),
    /// Waiting for a message in an empty message queue.
    QueueReceive(QueueId),
}

/// Why a task that blocked or slept was made ready again. Read (once) with
/// [`Kernel::take_wake_reason`] when the task resumes, to finish its system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeReason {
    /// [`Kernel::wake`] ended a park or a sleep early.
    Woken,
    /// The absolute deadline was reached: the normal end of a sleep; `ETIMEDOUT` for a wait.
    Timeout,
    /// The mutex or semaphore was handed to this task: the wait succeeded.
    Acquired,
    /// The event-flags wait was satisfied; the flags as they were at that moment (before any
    /// clear-on-exit).
    Flags(u32),
    /// The message queue changed (a message or a free slot appeared): repeat the call with the
    /// same absolute deadline. Another task may have been faster, in which case the task
    /// blocks again.
    Retry,
}

/// What a core should run next, from a scheduler entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the core must switch tasks when told to"]
pub enum Switch {
    /// Keep running the current task.
    Stay,
    /// Save `from`, restore `to`. `from` has already been accounted and queued as its new
    /// state requires; `to` is now the core's current task.
    To {
        /// The task leaving the core.
        from: TaskId,
        /// The task taking the core.
        to: TaskId,
    },
}

/// Whether making one task ready means its core must reschedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a preempted core must reschedule"]
pub enum Preempt {
    /// The core keeps running what it runs.
    No,
    /// The core must call [`Kernel::schedule`] (an IPI if it is not the caller's core).
    Yes(CoreId),
}

/// A set of cores that must call [`Kernel::schedule`]: the caller's own core directly, the
/// others through a rescheduling IPI. Cores are numbered below 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use = "cores in the set must reschedule"]
pub struct Resched {
    cores: u64,
}

impl Resched {
    /// No core needs to reschedule.
    pub const NONE: Resched = Resched { cores: 0 };

    /// Just `core`.
    pub const fn core(core: CoreId) -> Self {
        Self {
            cores: Self::bit(core),
        }
    }

    /// Adds `core` to the set.
    pub fn add(&mut self, core: CoreId) {
        self.cores |= Self::bit(core);
    }

    /// Adds every core of `other` to the set.
    pub fn merge(&mut self, other: Resched) {
        self.cores |= other.cores;
    }

    /// Whether `core` is in the set.
    pub fn contains(self, core: CoreId) -> bool {
        self.cores & Self::bit(core) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.cores == 0
    }

    /// The cores in the set, lowest first (one step per core in the set, not per possible
    /// core: this runs at the end of every kernel entry).
    pub fn cores(self) -> impl Iterator<Item = CoreId> {
        let mut rest = self.cores;
        core::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let core = rest.trailing_zeros() as u8;
            rest &= rest - 1;
            Some(CoreId(core))
        })
    }

    /// The bit of `core`; cores from 64 on have none (the kernel refuses more than 64 cores).
    const fn bit(core: CoreId) -> u64 {
        match 1u64.checked_shl(core.0 as u32) {
            Some(bit) => bit,
            None => 0,
        }
    }
}

impl From<Preempt> for Resched {
    fn from(preempt: Preempt) -> Self {
        match preempt {
            Preempt::No => Resched::NONE,
            Preempt::Yes(core) => Resched::core(core),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn resched_set_operations() {
        let mut set = Resched::NONE;
        assert!(set.is_empty());
        set.add(CoreId::new(3));
        set.merge(Resched::core(CoreId::new(0)));
        set.merge(Preempt::Yes(CoreId::new(63)).into());
        set.merge(Preempt::No.into());
        assert!(set.contains(CoreId::new(3)));
        assert!(!set.contains(CoreId::new(1)));
        let cores: Vec<usize> = set.cores().map(CoreId::index).collect();
        assert_eq!(cores, [0, 3, 63]);
        assert_eq!(Resched::NONE.cores().count(), 0);
    }

    #[test]
    fn priority_order_is_posix() {
        assert!(Priority::new(10) > Priority::new(9));
        assert!(Priority::HIGHEST > Priority::LOWEST);
    }
}
