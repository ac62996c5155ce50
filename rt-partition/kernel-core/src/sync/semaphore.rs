//! Counting semaphores. A post with waiters hands the unit straight to the top waiter (the
//! count stays put), so a low-priority task can never take a unit a higher-priority waiter
//! was promised. Posting needs no current task, so interrupt handlers may post. No priority
//! inheritance: a semaphore has no owner.

use super::{Acquire, Timeout};
use crate::{BlockReason, CoreId, Error, Kernel, Resched, WakeReason};

/// Names a semaphore within its kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SemaphoreId(u32);

/// A counting semaphore. Created by [`Kernel::create_semaphore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semaphore {
    id: SemaphoreId,
    count: u32,
    max_count: u32,
}

impl Semaphore {
    /// Its id (what its waiters are blocked on).
    pub fn id(&self) -> SemaphoreId {
        self.id
    }

    /// Units available now.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Most units it can hold.
    pub fn max_count(&self) -> u32 {
        self.max_count
    }
}

impl<const TASKS: usize, const CORES: usize> Kernel<TASKS, CORES> {
    /// A semaphore holding `initial` units and at most `max_count`.
    pub fn create_semaphore(&mut self, initial: u32, max_count: u32) -> Result<Semaphore, Error> {
        if max_count == 0 || initial > max_count {
            return Err(Error::InvalidArgument);
        }
        Ok(Semaphore {
            id: SemaphoreId(self.next_object_id()),
            count: initial,
            max_count,
        })
    }

    /// Takes a unit for `core`'s current task, or blocks it until a post hands it one
    /// ([`WakeReason::Acquired`]) or `timeout` passes ([`WakeReason::Timeout`]).
    /// [`Timeout::NonBlocking`] is `sem_trywait` ([`Error::WouldBlock`] when empty).
    pub fn semaphore_wait(
        &mut self,
        core: CoreId,
        semaphore: &mut Semaphore,
        timeout: Timeout,
        now_ns: u64,
    ) -> Result<Acquire, Error> {
        self.core_index(core)?;
        if semaphore.count > 0 {
            semaphore.count -= 1;
            return Ok(Acquire::Acquired);
        }
        self.block_calling_task(core, BlockReason::Semaphore(semaphore.id), timeout, now_ns)?;
        Ok(Acquire::Blocked(Resched::core(core)))
    }

    /// Gives a unit: to the top waiter if there is one (made ready with
    /// [`WakeReason::Acquired`]), otherwise to the count ([`Error::CountOverflow`] at the
    /// maximum). The returned cores must reschedule.
    pub fn semaphore_post(
        &mut self,
        semaphore: &mut Semaphore,
        now_ns: u64,
    ) -> Result<Resched, Error> {
        let reason = BlockReason::Semaphore(semaphore.id);
        match self.wake_top_waiter(reason, WakeReason::Acquired, now_ns) {
            Some(resched) => Ok(resched),
            None if semaphore.count == semaphore.max_count => Err(Error::CountOverflow),
            None => {
                semaphore.count += 1;
                Ok(Resched::NONE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskState;
    use crate::testing::{core, running_task};

    type TestKernel = Kernel<8, 4>;

    #[test]
    fn counts_down_then_blocks_and_post_hands_over() {
        let mut kernel = TestKernel::new();
        let a = running_task(&mut kernel, 0, 3);
        let mut sem = kernel.create_semaphore(1, 4).unwrap();
        assert_eq!(
            kernel.semaphore_wait(core(0), &mut sem, Timeout::Forever, 0),
            Ok(Acquire::Acquired)
        );
        assert_eq!(
            kernel.semaphore_wait(core(0), &mut sem, Timeout::NonBlocking, 0),
            Err(Error::WouldBlock)
        );
        assert_eq!(
            kernel.semaphore_wait(core(0), &mut sem, Timeout::Forever, 1),
            Ok(Acquire::Blocked(Resched::core(core(0))))
        );
        let _ = kernel.schedule(core(0), 1).unwrap();
        assert_eq!(
            kernel.semaphore_post(&mut sem, 5),
            Ok(Resched::core(core(0)))
        );
        assert_eq!(sem.count(), 0, "the unit went to the waiter");
        assert_eq!(kernel.take_wake_reason(a), Ok(Some(WakeReason::Acquired)));
        assert_eq!(kernel.task_state(a), Ok(TaskState::Ready));
    }

    #[test]
    fn post_wakes_highest_priority_waiter() {
        let mut kernel = TestKernel::new();
        let low = running_task(&mut kernel, 0, 2);
        let high = running_task(&mut kernel, 1, 8);
        let mut sem = kernel.create_semaphore(0, 1).unwrap();
        let _ = kernel
            .semaphore_wait(core(0), &mut sem, Timeout::Forever, 0)
            .unwrap();
        let _ = kernel
            .semaphore_wait(core(1), &mut sem, Timeout::Forever, 1)
            .unwrap();
        assert_eq!(
            kernel.semaphore_post(&mut sem, 2),
            Ok(Resched::core(core(1)))
        );
        assert_eq!(kernel.task_state(high), Ok(TaskState::Ready));
        assert!(matches!(kernel.task_state(low), Ok(TaskState::Blocked(_))));
    }

    #[test]
    fn timeout_and_overflow() {
        let mut kernel = TestKernel::new();
        let a = running_task(&mut kernel, 0, 3);
        let mut sem = kernel.create_semaphore(0, 1).unwrap();
        let _ = kernel
            .semaphore_wait(core(0), &mut sem, Timeout::Until(50), 0)
            .unwrap();
        let _ = kernel.schedule(core(0), 0).unwrap();
        let _ = kernel.expire_timers(core(0), 50).unwrap();
        assert_eq!(kernel.take_wake_reason(a), Ok(Some(WakeReason::Timeout)));
        assert_eq!(kernel.semaphore_post(&mut sem, 60), Ok(Resched::NONE));
        assert_eq!(
            kernel.semaphore_post(&mut sem, 60),
            Err(Error::CountOverflow)
        );
        assert_eq!(kernel.create_semaphore(2, 1), Err(Error::InvalidArgument));
        assert_eq!(kernel.create_semaphore(0, 0), Err(Error::InvalidArgument));
    }
}
