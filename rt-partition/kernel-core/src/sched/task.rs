//! The task control block and the statistics kept for every task. Only the kernel mutates a
//! task; the arch layer reads the public statistics through [`Kernel`](super::Kernel).

use super::{CoreId, Policy, Priority, TaskState, WakeReason};
use crate::sync::FlagsCondition;
use crate::timer::TimerHandle;

/// What the kernel measures for each task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskStats {
    /// Time spent as its core's current task, added each time it leaves the core.
    pub cpu_time_ns: u64,
    /// Times the task was made ready after blocking or sleeping.
    pub wakeups: u64,
    /// Deadline misses: periodic releases that found the task still busy, plus those
    /// reported with [`Kernel::record_deadline_miss`](super::Kernel::record_deadline_miss).
    pub deadline_misses: u64,
    /// Times the task was switched in.
    pub dispatches: u64,
    /// Times the task was switched out while still runnable because something more urgent
    /// became ready.
    pub preemptions: u64,
    /// The longest time from being made ready (for a timer wake-up: from the timer's
    /// deadline) to being switched in; 0 before the first such switch. (The maximum alone:
    /// it is what the status report shows, and the switch path keeps it in two
    /// instructions; the latency application keeps full histograms of its own.)
    pub wake_max_ns: u64,
}

impl TaskStats {
    pub(crate) const fn new() -> Self {
        Self {
            cpu_time_ns: 0,
            wakeups: 0,
            deadline_misses: 0,
            dispatches: 0,
            preemptions: 0,
            wake_max_ns: 0,
        }
    }
}

/// One entry of the task table.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    /// Whether this entry holds a task (idle or created).
    pub(crate) in_use: bool,
    /// The core's idle task: never queued, runs when nothing else is ready.
    pub(crate) idle: bool,
    pub(crate) core: CoreId,
    /// The priority the task was given.
    pub(crate) base_priority: Priority,
    /// The priority it is scheduled at: the base raised by priority inheritance.
    pub(crate) effective_priority: Priority,
    pub(crate) policy: Policy,
    pub(crate) state: TaskState,
    /// Round-robin time left in the current slice; 0 means a fresh slice at next dispatch.
    pub(crate) slice_remaining_ns: u64,
    /// When the task last blocked, as a global sequence number: first come, first served
    /// among waiters of equal priority.
    pub(crate) wait_sequence: u64,
    /// While blocked on a mutex: the mutex's owner (for priority inheritance).
    pub(crate) mutex_owner: Option<crate::TaskId>,
    /// While blocked on event flags: what it waits for.
    pub(crate) flags_condition: Option<FlagsCondition>,
    /// The task's one timer (sleep end or wait timeout) in its core's timer queue.
    pub(crate) timer: Option<TimerHandle>,
    /// Why it was last made ready; taken by the syscall layer.
    pub(crate) wake_reason: Option<WakeReason>,
    /// A `wake` arrived while it was not parked: its next `block_current` returns at once.
    pub(crate) wake_pending: bool,
    /// When it was made ready (or its timer's deadline), until it is switched in.
    pub(crate) ready_since_ns: Option<u64>,
    pub(crate) stats: TaskStats,
}

impl Task {
    pub(crate) const UNUSED: Task = Task {
        in_use: false,
        idle: false,
        core: CoreId::new(0),
        base_priority: Priority::LOWEST,
        effective_priority: Priority::LOWEST,
        policy: Policy::Fifo,
        state: TaskState::Suspended,
        slice_remaining_ns: 0,
        wait_sequence: 0,
        mutex_owner: None,
        flags_condition: None,
        timer: None,
        wake_reason: None,
        wake_pending: false,
        ready_since_ns: None,
        stats: TaskStats::new(),
    };

    /// Whether the task uses round-robin, and its slice length.
    pub(crate) fn slice_ns(&self) -> Option<u64> {
        match self.policy {
            Policy::Fifo => None,
            Policy::RoundRobin { slice_ns } => Some(slice_ns),
        }
    }
}
