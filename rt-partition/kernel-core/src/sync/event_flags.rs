//! Event flags: 32 flags a task waits on, for any or all of a mask, optionally clearing the
//! mask's flags when its wait is satisfied. Setting flags evaluates the waiters at that
//! moment, highest priority first: each satisfied waiter is made ready with the flag value
//! it saw, and its clear-on-exit takes effect before the next waiter is looked at (so a
//! higher-priority waiter that consumes a flag hides it from lower ones). Setting needs no
//! current task, so interrupt handlers may set flags.

use super::Timeout;
use crate::{BlockReason, CoreId, Error, Kernel, Resched, TaskState, WakeReason};

/// Names an event-flags object within its kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventFlagsId(u32);

/// 32 event flags. Created by [`Kernel::create_event_flags`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFlags {
    id: EventFlagsId,
    flags: u32,
}

impl EventFlags {
    /// Its id (what its waiters are blocked on).
    pub fn id(&self) -> EventFlagsId {
        self.id
    }

    /// The flags now.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Clears `bits`. Clearing never satisfies a waiter, so it needs no kernel.
    pub fn clear(&mut self, bits: u32) {
        self.flags &= !bits;
    }
}

/// Whether a wait needs one flag of the mask or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagsMode {
    /// At least one flag of the mask is set.
    Any,
    /// Every flag of the mask is set.
    All,
}

/// What a task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagsCondition {
    /// The flags of interest; must not be 0.
    pub mask: u32,
    /// Any or all of them.
    pub mode: FlagsMode,
    /// Clear the mask's flags when the wait is satisfied.
    pub clear_on_exit: bool,
}

impl FlagsCondition {
    /// Whether `flags` satisfy the condition.
    pub fn is_met(&self, flags: u32) -> bool {
        match self.mode {
            FlagsMode::Any => flags & self.mask != 0,
            FlagsMode::All => flags & self.mask == self.mask,
        }
    }
}

/// Result of an event-flags wait that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a blocked task's core must reschedule"]
pub enum FlagsWait {
    /// Satisfied at once: the flags as they were (before any clear-on-exit).
    Satisfied(u32),
    /// The caller is blocked until [`WakeReason::Flags`] or [`WakeReason::Timeout`]; the
    /// cores in the set (its own) must reschedule.
    Blocked(Resched),
}

impl<const TASKS: usize, const CORES: usize> Kernel<TASKS, CORES> {
    /// New event flags holding `initial`.
    pub fn create_event_flags(&mut self, initial: u32) -> EventFlags {
        EventFlags {
            id: EventFlagsId(self.next_object_id()),
            flags: initial,
        }
    }

    /// Waits for `condition` on `flags` for `core`'s current task.
    pub fn event_flags_wait(
        &mut self,
        core: CoreId,
        flags: &mut EventFlags,
        condition: FlagsCondition,
        timeout: Timeout,
        now_ns: u64,
    ) -> Result<FlagsWait, Error> {
        self.core_index(core)?;
        if condition.mask == 0 {
            return Err(Error::InvalidArgument);
        }
        if condition.is_met(flags.flags) {
            let seen = flags.flags;
            if condition.clear_on_exit {
                flags.clear(condition.mask);
            }
            return Ok(FlagsWait::Satisfied(seen));
        }
        let caller =
            self.block_calling_task(core, BlockReason::EventFlags(flags.id), timeout, now_ns)?;
        self.task_mut(caller).flags_condition = Some(condition);
        Ok(FlagsWait::Blocked(Resched::core(core)))
    }

    /// Sets `bits` and makes every waiter whose condition is then met ready, highest
    /// priority first, applying each one's clear-on-exit in turn. The returned cores must
    /// reschedule.
    pub fn event_flags_set(&mut self, flags: &mut EventFlags, bits: u32, now_ns: u64) -> Resched {
        flags.flags |= bits;
        let reason = BlockReason::EventFlags(flags.id);
        let mut resched = Resched::NONE;
        // Each pass readies one waiter, so this ends after at most TASKS passes. No condition
        // is met by no flags (a wait's mask is never 0), so once a clear-on-exit has taken
        // every flag there is nobody left to find: the usual case of one waiter that clears
        // what woke it costs one pass over the tasks, not two.
        while flags.flags != 0 {
            let current_flags = flags.flags;
            let satisfied = self.best_waiter(|task| {
                task.state == TaskState::Blocked(reason)
                    && task
                        .flags_condition
                        .is_some_and(|condition| condition.is_met(current_flags))
            });
            let Some(waiter) = satisfied else {
                break;
            };
            if let Some(condition) = self.task_mut(waiter).flags_condition
                && condition.clear_on_exit
            {
                flags.clear(condition.mask);
            }
            let preempt = self.unblock(waiter, now_ns, WakeReason::Flags(current_flags));
            resched.merge(preempt.into());
        }
        resched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{core, running_task};

    type TestKernel = Kernel<8, 4>;

    fn any(mask: u32, clear_on_exit: bool) -> FlagsCondition {
        FlagsCondition {
            mask,
            mode: FlagsMode::Any,
            clear_on_exit,
        }
    }

    fn all(mask: u32, clear_on_exit: bool) -> FlagsCondition {
        FlagsCondition {
            mask,
            mode: FlagsMode::All,
            clear_on_exit,
        }
    }

    #[test]
    fn satisfied_at_once_with_and_without_clear() {
        let mut kernel = TestKernel::new();
        let _a = running_task(&mut kernel, 0, 3);
        let mut ef = kernel.create_event_flags(0b0110);
        assert_eq!(
            kernel.event_flags_wait(core(0), &mut ef, any(0b0010, false), Timeout::Forever, 0),
            Ok(FlagsWait::Satisfied(0b0110))
        );
        assert_eq!(ef.flags(), 0b0110);
        assert_eq!(
            kernel.event_flags_wait(core(0), &mut ef, all(0b0110, true), Timeout::Forever, 0),
            Ok(FlagsWait::Satisfied(0b0110))
        );
        assert_eq!(ef.flags(), 0);
        assert_eq!(
            kernel.event_flags_wait(core(0), &mut ef, all(0b1, true), Timeout::NonBlocking, 0),
            Err(Error::WouldBlock)
        );
        assert_eq!(
            kernel.event_flags_wait(core(0), &mut ef, any(0, true), Timeout::Forever, 0),
            Err(Error::InvalidArgument)
        );
    }

    #[test]
    fn all_waits_for_every_flag() {
        let mut kernel = TestKernel::new();
        let a = running_task(&mut kernel, 0, 3);
        let mut ef = kernel.create_event_flags(0);
        let _ = kernel
            .event_flags_wait(core(0), &mut ef, all(0b11, false), Timeout::Forever, 0)
            .unwrap();
        assert_eq!(kernel.event_flags_set(&mut ef, 0b01, 1), Resched::NONE);
        assert!(matches!(kernel.task_state(a), Ok(TaskState::Blocked(_))));
        assert_eq!(
            kernel.event_flags_set(&mut ef, 0b10, 2),
            Resched::core(core(0))
        );
        assert_eq!(
            kernel.take_wake_reason(a),
            Ok(Some(WakeReason::Flags(0b11)))
        );
    }

    #[test]
    fn higher_priority_consumer_hides_flag_from_lower() {
        let mut kernel = TestKernel::new();
        let low = running_task(&mut kernel, 0, 2);
        let high = running_task(&mut kernel, 1, 7);
        let watcher = running_task(&mut kernel, 2, 1);
        let mut ef = kernel.create_event_flags(0);
        let _ = kernel
            .event_flags_wait(core(0), &mut ef, any(0b1, true), Timeout::Forever, 0)
            .unwrap();
        let _ = kernel
            .event_flags_wait(core(1), &mut ef, any(0b1, true), Timeout::Forever, 0)
            .unwrap();
        let _ = kernel
            .event_flags_wait(core(2), &mut ef, any(0b11, false), Timeout::Forever, 0)
            .unwrap();
        let resched = kernel.event_flags_set(&mut ef, 0b1, 1);
        assert!(resched.contains(core(1)));
        assert_eq!(
            kernel.take_wake_reason(high),
            Ok(Some(WakeReason::Flags(0b1)))
        );
        assert!(matches!(kernel.task_state(low), Ok(TaskState::Blocked(_))));
        assert!(matches!(
            kernel.task_state(watcher),
            Ok(TaskState::Blocked(_))
        ));
        assert_eq!(ef.flags(), 0);
        // Setting both flags: the watcher (no clear) and the low consumer both get them.
        let _ = kernel.event_flags_set(&mut ef, 0b11, 2);
        assert_eq!(
            kernel.take_wake_reason(low),
            Ok(Some(WakeReason::Flags(0b11)))
        );
        assert_eq!(
            kernel.take_wake_reason(watcher),
            Ok(Some(WakeReason::Flags(0b10)))
        );
        assert_eq!(ef.flags(), 0b10);
    }

    #[test]
    fn wait_times_out() {
        let mut kernel = TestKernel::new();
        let a = running_task(&mut kernel, 0, 3);
        let mut ef = kernel.create_event_flags(0);
        let _ = kernel
            .event_flags_wait(core(0), &mut ef, any(0b1, false), Timeout::Until(10), 0)
            .unwrap();
        let _ = kernel.schedule(core(0), 0).unwrap();
        let _ = kernel.expire_timers(core(0), 10).unwrap();
        assert_eq!(kernel.take_wake_reason(a), Ok(Some(WakeReason::Timeout)));
        assert_eq!(kernel.event_flags_set(&mut ef, 0b1, 11), Resched::NONE);
    }
}
