//! Synchronisation objects: priority-inheritance mutexes, counting semaphores, event flags
//! and bounded message queues, all for tasks inside the RT partition.
//!
//! Each object is a small value the arch layer keeps beside the [`Kernel`] (under the same
//! lock) and passes by `&mut` to the kernel's operations; the [`Kernel`] creates them at init
//! and hands out their ids. Who waits on an object is recorded in the waiting task's state
//! ([`BlockReason`]), never in the object, so a timeout or a priority change needs no access
//! to the object and can never leave a dangling waiter. Objects hand themselves to the
//! highest-priority waiter, first come first served within a priority.
//!
//! Blocking follows one pattern. An operation that cannot complete blocks the calling task
//! and returns `Blocked(resched)`; the arch layer then calls [`Kernel::schedule`] on its
//! core (and IPIs the other cores in `resched`, which priority inheritance may have
//! touched). When the task runs again, [`Kernel::take_wake_reason`] says how the wait ended:
//! [`WakeReason::Acquired`] (mutex, semaphore: the object was handed over),
//! [`WakeReason::Flags`] (event flags: the wait was satisfied), [`WakeReason::Retry`]
//! (message queue: call again with the same [`Timeout`]) or [`WakeReason::Timeout`]
//! (`ETIMEDOUT`).
//!
//! This module never blocks for real, spins, or allocates; an operation that would wait
//! without permission ([`Timeout::NonBlocking`]) fails with [`Error::WouldBlock`].
//!
//! [`Kernel`]: crate::Kernel
//! [`Kernel::schedule`]: crate::Kernel::schedule
//! [`Kernel::take_wake_reason`]: crate::Kernel::take_wake_reason
//! [`BlockReason`]: crate::BlockReason
//! [`WakeReason::Acquired`]: crate::WakeReason::Acquired
//! [`WakeReason::Flags`]: crate::WakeReason::Flags
//! [`WakeReason::Retry`]: crate::WakeReason::Retry
//! [`WakeReason::Timeout`]: crate::WakeReason::Timeout

mod event_flags;
mod message_queue;
mod mutex;
mod semaphore;

pub use event_flags::{EventFlags, EventFlagsId, FlagsCondition, FlagsMode, FlagsWait};
pub use message_queue::{MessageQueue, QueueId, ReceiveOutcome, Received, SendOutcome};
pub use mutex::{Mutex, MutexId};
pub use semaphore::{Semaphore, SemaphoreId};

use crate::{BlockReason, CoreId, Error, Kernel, Resched, TaskId, WakeReason};

/// How long a blocking operation may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Do not wait: fail with [`Error::WouldBlock`] (`EAGAIN`, `O_NONBLOCK`, `trylock`).
    NonBlocking,
    /// Wait until this absolute time in nanoseconds; fail with [`Error::TimedOut`] if it has
    /// already passed when the operation would have to wait (the `timed*` calls).
    Until(u64),
    /// Wait as long as it takes.
    Forever,
}

impl Timeout {
    /// The deadline to arm, or why the caller may not wait at all.
    pub(crate) fn deadline(self, now_ns: u64) -> Result<Option<u64>, Error> {
        match self {
            Timeout::NonBlocking => Err(Error::WouldBlock),
            Timeout::Until(deadline) if deadline <= now_ns => Err(Error::TimedOut),
            Timeout::Until(deadline) => Ok(Some(deadline)),
            Timeout::Forever => Ok(None),
        }
    }
}

/// Result of a mutex lock or semaphore wait that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a blocked task's core must reschedule"]
pub enum Acquire {
    /// The caller has it and keeps running.
    Acquired,
    /// The caller is blocked; the cores in the set (its own among them) must reschedule.
    Blocked(Resched),
}

impl<const TASKS: usize, const CORES: usize> Kernel<TASKS, CORES> {
    /// Blocks `core`'s current task on `reason` until `timeout`, for an operation that
    /// cannot complete now, and returns that task; `core` must then reschedule. Fails as
    /// [`Timeout::deadline`] does before looking at the caller, then as
    /// [`Kernel::calling_task`] does.
    pub(crate) fn block_calling_task(
        &mut self,
        core: CoreId,
        reason: BlockReason,
        timeout: Timeout,
        now_ns: u64,
    ) -> Result<TaskId, Error> {
        let deadline = timeout.deadline(now_ns)?;
        let caller = self.calling_task(core)?;
        self.block_task(caller, reason, deadline)?;
        Ok(caller)
    }

    /// Makes the top waiter on `reason` ([`Kernel::top_waiter`]) ready with `wake`, and
    /// returns the cores that must reschedule; `None` if nobody waits.
    pub(crate) fn wake_top_waiter(
        &mut self,
        reason: BlockReason,
        wake: WakeReason,
        now_ns: u64,
    ) -> Option<Resched> {
        let waiter = self.top_waiter(reason)?;
        Some(self.unblock(waiter, now_ns, wake).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_deadlines() {
        assert_eq!(Timeout::NonBlocking.deadline(5), Err(Error::WouldBlock));
        assert_eq!(Timeout::Until(5).deadline(5), Err(Error::TimedOut));
        assert_eq!(Timeout::Until(6).deadline(5), Ok(Some(6)));
        assert_eq!(Timeout::Forever.deadline(5), Ok(None));
    }
}
