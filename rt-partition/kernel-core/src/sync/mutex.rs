//! Priority-inheritance mutexes.
//!
//! A task blocked on a mutex lends its effective priority to the owner, transitively: if the
//! owner is itself blocked on another mutex, that mutex's owner is raised too, and so on
//! along the chain. On unlock the mutex goes straight to its highest-priority waiter, and the
//! unlocking task drops back to the maximum of its base priority and the top waiters of the
//! mutexes it still holds. Before blocking, the chain of owners is walked: if it leads back
//! to the caller, the lock fails with [`Error::Deadlock`] instead of blocking forever. Every
//! walk is bounded by the size of the task table. Mutexes are not recursive: locking one you
//! own is a deadlock (`PTHREAD_MUTEX_ERRORCHECK`).

use super::{Acquire, Timeout};
use crate::{BlockReason, CoreId, Error, Kernel, Priority, Resched, TaskId, TaskState, WakeReason};

/// Names a mutex within its kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MutexId(u32);

/// A priority-inheritance mutex. Created by [`Kernel::create_mutex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutex {
    id: MutexId,
    owner: Option<TaskId>,
}

impl Mutex {
    /// Its id (what its waiters are blocked on).
    pub fn id(&self) -> MutexId {
        self.id
    }

    /// The task that holds it.
    pub fn owner(&self) -> Option<TaskId> {
        self.owner
    }
}

impl<const TASKS: usize, const CORES: usize> Kernel<TASKS, CORES> {
    /// A new, unlocked mutex.
    pub fn create_mutex(&mut self) -> Mutex {
        Mutex {
            id: MutexId(self.next_object_id()),
            owner: None,
        }
    }

    /// Locks `mutex` for `core`'s current task, or blocks it until the mutex is handed over
    /// (then [`WakeReason::Acquired`]) or `timeout` passes ([`WakeReason::Timeout`]). Blocking
    /// raises the owner chain's priorities. Fails with [`Error::Deadlock`] if the caller owns
    /// the mutex or if blocking would close a cycle, with [`Error::WouldBlock`] for
    /// [`Timeout::NonBlocking`] (`trylock`), and with [`Error::IdleTask`] for the idle task.
    pub fn mutex_lock(
        &mut self,
        core: CoreId,
        mutex: &mut Mutex,
        timeout: Timeout,
        now_ns: u64,
    ) -> Result<Acquire, Error> {
        let caller = self.calling_task(core)?;
        let owner = match mutex.owner {
            None => {
                mutex.owner = Some(caller);
                return Ok(Acquire::Acquired);
            }
            Some(owner) if owner == caller => return Err(Error::Deadlock),
            Some(owner) => owner,
        };
        let deadline = timeout.deadline(now_ns)?;
        self.check_no_deadlock(caller, owner)?;
        self.block_task(caller, BlockReason::Mutex(mutex.id), deadline)?;
        self.task_mut(caller).mutex_owner = Some(owner);
        let mut resched = Resched::core(core);
        self.update_priority_chain(owner, &mut resched);
        Ok(Acquire::Blocked(resched))
    }

    /// Unlocks `mutex`, which `core`'s current task must own ([`Error::NotOwner`]). The top
    /// waiter, if any, becomes the owner and is made ready with [`WakeReason::Acquired`]; the
    /// caller's effective priority is restored. The returned cores must reschedule (the
    /// caller's own when it lost priority or the new owner outranks it).
    pub fn mutex_unlock(
        &mut self,
        core: CoreId,
        mutex: &mut Mutex,
        now_ns: u64,
    ) -> Result<Resched, Error> {
        let caller = self.calling_task(core)?;
        if mutex.owner != Some(caller) {
            return Err(Error::NotOwner);
        }
        let mut resched = Resched::NONE;
        let reason = BlockReason::Mutex(mutex.id);
        match self.top_waiter(reason) {
            Some(heir) => {
                mutex.owner = Some(heir);
                for index in 0..TASKS {
                    let waiter = TaskId::new(index as u16);
                    let task = self.task_mut(waiter);
                    if task.in_use && task.state == TaskState::Blocked(reason) && waiter != heir {
                        task.mutex_owner = Some(heir);
                    }
                }
                // The heir was the top waiter, so the waiters it now lends nothing to it: its
                // effective priority is already at least theirs.
                let preempt = self.unblock(heir, now_ns, WakeReason::Acquired);
                resched.merge(preempt.into());
            }
            None => mutex.owner = None,
        }
        self.update_priority_chain(caller, &mut resched);
        Ok(resched)
    }

    /// Walks the chain of owners from `owner`; finding `caller` on it means blocking would
    /// close a cycle.
    fn check_no_deadlock(&self, caller: TaskId, owner: TaskId) -> Result<(), Error> {
        let mut holder = owner;
        for _ in 0..TASKS {
            if holder == caller {
                return Err(Error::Deadlock);
            }
            match self.task(holder)?.mutex_owner {
                Some(next) => holder = next,
                None => return Ok(()),
            }
        }
        // A chain longer than the task table must loop: a cycle not through the caller.
        Err(Error::Deadlock)
    }

    /// The highest effective priority among the tasks blocked on mutexes that `owner` holds.
    pub(crate) fn inherited_priority(&self, owner: TaskId) -> Option<Priority> {
        self.blocked_tasks()
            .filter(|(_, task)| {
                matches!(task.state, TaskState::Blocked(BlockReason::Mutex(_)))
                    && task.mutex_owner == Some(owner)
            })
            .map(|(_, task)| task.effective_priority)
            .max()
    }

    /// Recomputes the effective priority of `start` (base raised by what it inherits) and,
    /// while that changes something, of the owners along the chain of mutexes it is blocked
    /// on. Cores whose choice may change are added to `resched`.
    pub(crate) fn update_priority_chain(&mut self, start: TaskId, resched: &mut Resched) {
        let mut task = start;
        for _ in 0..TASKS {
            let Ok(entry) = self.task(task) else {
                return;
            };
            let wanted = match self.inherited_priority(task) {
                Some(inherited) => inherited.max(entry.base_priority),
                None => entry.base_priority,
            };
            if wanted == entry.effective_priority {
                return;
            }
            let next = entry.mutex_owner;
            self.apply_effective_priority(task, wanted, resched);
            match next {
                Some(owner) => task = owner,
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{core, running_task};
    use crate::{Policy, Switch, TaskConfig};

    type TestKernel = Kernel<12, 4>;

    fn effective(kernel: &TestKernel, task: TaskId) -> u8 {
        kernel.effective_priority(task).unwrap().level()
    }

    fn blocked(outcome: Result<Acquire, Error>) -> Resched {
        match outcome {
            Ok(Acquire::Blocked(resched)) => resched,
            other => panic!("expected to block, got {other:?}"),
        }
    }

    #[test]
    fn uncontended_lock_and_unlock() {
        let mut kernel = TestKernel::new();
        let a = running_task(&mut kernel, 0, 5);
        let mut m = kernel.create_mutex();
        assert_eq!(
            kernel.mutex_lock(core(0), &mut m, Timeout::Forever, 1),
            Ok(Acquire::Acquired)
        );
        assert_eq!(m.owner(), Some(a));
        assert_eq!(
            kernel.mutex_lock(core(0), &mut m, Timeout::Forever, 1),
            Err(Error::Deadlock)
        );
        assert_eq!(kernel.mutex_unlock(core(0), &mut m, 2), Ok(Resched::NONE));
        assert_eq!(m.owner(), None);
        assert_eq!(
            kernel.mutex_unlock(core(0), &mut m, 3),
            Err(Error::NotOwner)
        );
    }

    #[test]
    fn idle_task_may_not_lock() {
        let mut kernel = TestKernel::new();
        let mut m = kernel.create_mutex();
        assert_eq!(
            kernel.mutex_lock(core(0), &mut m, Timeout::Forever, 0),
            Err(Error::IdleTask)
        );
    }

    #[test]
    fn trylock_and_past_deadline() {
        let mut kernel = TestKernel::new();
        let _a = running_task(&mut kernel, 0, 5);
        let _b = running_task(&mut kernel, 1, 5);
        let mut m = kernel.create_mutex();
        let _ = kernel
            .mutex_lock(core(0), &mut m, Timeout::Forever, 0)
            .unwrap();
        assert_eq!(
            kernel.mutex_lock(core(1), &mut m, Timeout::NonBlocking, 5),
            Err(Error::WouldBlock)
        );
        assert_eq!(
            kernel.mutex_lock(core(1), &mut m, Timeout::Until(5), 5),
            Err(Error::TimedOut)
        );
    }

    #[test]
    fn inheritance_raises_and_unlock_hands_over_and_restores() {
        let mut kernel = TestKernel::new();
        let low = running_task(&mut kernel, 0, 2);
        let high = running_task(&mut kernel, 1, 9);
        let mut m = kernel.create_mutex();
        let _ = kernel
            .mutex_lock(core(0), &mut m, Timeout::Forever, 0)
            .unwrap();
        let resched = blocked(kernel.mutex_lock(core(1), &mut m, Timeout::Forever, 1));
        assert!(resched.contains(core(1)));
        assert_eq!(effective(&kernel, low), 9);
        assert_eq!(kernel.base_priority(low).unwrap().level(), 2);
        let _ = kernel.schedule(core(1), 1).unwrap();

        let resched = kernel.mutex_unlock(core(0), &mut m, 10).unwrap();
        assert!(resched.contains(core(1)));
        assert_eq!(m.owner(), Some(high));
        assert_eq!(effective(&kernel, low), 2);
        assert!(matches!(kernel.schedule(core(1), 10), Ok(Switch::To { to, .. }) if to == high));
        assert_eq!(
            kernel.take_wake_reason(high),
            Ok(Some(WakeReason::Acquired))
        );
    }

    #[test]
    fn ready_owner_on_another_core_is_boosted_and_preempts() {
        let mut kernel = TestKernel::new();
        let owner = running_task(&mut kernel, 0, 2);
        let mut m = kernel.create_mutex();
        let _ = kernel
            .mutex_lock(core(0), &mut m, Timeout::Forever, 0)
            .unwrap();
        // A medium task on core 0 preempts the owner.
        let medium = kernel
            .create_task(TaskConfig {
                core: core(0),
                priority: Priority::new(5),
                policy: Policy::Fifo,
            })
            .unwrap();
        let _ = kernel.schedule(core(0), 1).unwrap();
        assert_eq!(kernel.current(core(0)), Ok(medium));
        // A high task on core 1 blocks on the mutex: owner goes above medium.
        let _high = running_task(&mut kernel, 1, 8);
        let resched = blocked(kernel.mutex_lock(core(1), &mut m, Timeout::Forever, 2));
        assert!(resched.contains(core(0)), "owner's core must reschedule");
        assert_eq!(effective(&kernel, owner), 8);
        assert!(matches!(kernel.schedule(core(0), 3), Ok(Switch::To { to, .. }) if to == owner));
        // Unlock drops the owner back below medium.
        let resched = kernel.mutex_unlock(core(0), &mut m, 4).unwrap();
        assert!(resched.contains(core(0)));
        assert!(matches!(kernel.schedule(core(0), 4), Ok(Switch::To { to, .. }) if to == medium));
    }

    #[test]
    fn restore_keeps_priority_from_other_held_mutexes() {
        let mut kernel = TestKernel::new();
        let owner = running_task(&mut kernel, 0, 1);
        let waiter_a = running_task(&mut kernel, 1, 6);
        let _waiter_b = running_task(&mut kernel, 2, 4);
        let mut m1 = kernel.create_mutex();
        let mut m2 = kernel.create_mutex();
        let _ = kernel
            .mutex_lock(core(0), &mut m1, Timeout::Forever, 0)
            .unwrap();
        let _ = kernel
            .mutex_lock(core(0), &mut m2, Timeout::Forever, 0)
            .unwrap();
        let _ = blocked(kernel.mutex_lock(core(1), &mut m1, Timeout::Forever, 1));
        let _ = blocked(kernel.mutex_lock(core(2), &mut m2, Timeout::Forever, 1));
        assert_eq!(effective(&kernel, owner), 6);
        let _ = kernel.mutex_unlock(core(0), &mut m1, 2).unwrap();
        assert_eq!(m1.owner(), Some(waiter_a));
        assert_eq!(
            effective(&kernel, owner),
            4,
            "still holds m2 with a waiter of 4"
        );
        let _ = kernel.mutex_unlock(core(0), &mut m2, 3).unwrap();
        assert_eq!(effective(&kernel, owner), 1);
    }

    #[test]
    fn waiters_are_served_by_priority_then_arrival() {
        let mut kernel = TestKernel::new();
        let _owner = running_task(&mut kernel, 0, 1);
        let first_5 = running_task(&mut kernel, 1, 5);
        let high = running_task(&mut kernel, 2, 7);
        let second_5 = running_task(&mut kernel, 3, 5);
        let mut m = kernel.create_mutex();
        let _ = kernel
            .mutex_lock(core(0), &mut m, Timeout::Forever, 0)
            .unwrap();
        for (c, t) in [(1, 1), (3, 2), (2, 3)] {
            let _ = blocked(kernel.mutex_lock(core(c), &mut m, Timeout::Forever, t));
        }
        let _ = kernel.mutex_unlock(core(0), &mut m, 10).unwrap();
        assert_eq!(m.owner(), Some(high));
        for c in 0..4 {
            let _ = kernel.schedule(core(c), 10).unwrap();
        }
        let _ = kernel.mutex_unlock(core(2), &mut m, 11).unwrap();
        assert_eq!(m.owner(), Some(first_5));
        let _ = kernel.schedule(core(1), 11).unwrap();
        let _ = kernel.mutex_unlock(core(1), &mut m, 12).unwrap();
        assert_eq!(m.owner(), Some(second_5));
    }

    #[test]
    fn timeout_gives_up_and_unboosts_owner() {
        let mut kernel = TestKernel::new();
        let owner = running_task(&mut kernel, 0, 2);
        let waiter = running_task(&mut kernel, 1, 9);
        let mut m = kernel.create_mutex();
        let _ = kernel
            .mutex_lock(core(0), &mut m, Timeout::Forever, 0)
            .unwrap();
        let _ = blocked(kernel.mutex_lock(core(1), &mut m, Timeout::Until(100), 1));
        assert_eq!(kernel.next_event(core(1)), Ok(Some(100)));
        assert_eq!(effective(&kernel, owner), 9);
        assert_eq!(kernel.expire_timers(core(1), 99), Ok(Resched::NONE));
        let resched = kernel.expire_timers(core(1), 100).unwrap();
        assert!(resched.contains(core(1)));
        assert_eq!(effective(&kernel, owner), 2);
        assert_eq!(
            kernel.take_wake_reason(waiter),
            Ok(Some(WakeReason::Timeout))
        );
        assert_eq!(m.owner(), Some(owner));
    }

    #[test]
    fn deadlock_between_two_tasks_is_refused() {
        let mut kernel = TestKernel::new();
        let a = running_task(&mut kernel, 0, 3);
        let _b = running_task(&mut kernel, 1, 3);
        let mut m1 = kernel.create_mutex();
        let mut m2 = kernel.create_mutex();
        let _ = kernel
            .mutex_lock(core(0), &mut m1, Timeout::Forever, 0)
            .unwrap();
        let _ = kernel
            .mutex_lock(core(1), &mut m2, Timeout::Forever, 0)
            .unwrap();
        let _ = blocked(kernel.mutex_lock(core(1), &mut m1, Timeout::Forever, 1));
        assert_eq!(
            kernel.mutex_lock(core(0), &mut m2, Timeout::Forever, 2),
            Err(Error::Deadlock)
        );
        assert_eq!(kernel.task_state(a), Ok(TaskState::Running));
    }
}
