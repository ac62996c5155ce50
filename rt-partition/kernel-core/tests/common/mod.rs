//! Helpers shared by the property tests.
#![allow(dead_code, reason = "each test file uses a different subset")]

use bulkhead_rt_core::{CoreId, Kernel, Policy, Priority, Resched, TaskConfig, TaskId, TaskState};
use proptest::prelude::*;

pub fn core(index: u8) -> CoreId {
    CoreId::new(index)
}

pub fn fifo(core_index: u8, priority: u8) -> TaskConfig {
    TaskConfig {
        core: core(core_index),
        priority: Priority::new(priority),
        policy: Policy::Fifo,
    }
}

/// Creates a FIFO task alone on its core and makes it the core's current task.
pub fn running_task<const T: usize, const C: usize>(
    kernel: &mut Kernel<T, C>,
    core_index: u8,
    priority: u8,
    now: u64,
) -> TaskId {
    let task = kernel.create_task(fifo(core_index, priority)).unwrap();
    let _ = kernel.schedule(core(core_index), now).unwrap();
    assert_eq!(kernel.current(core(core_index)), Ok(task));
    task
}

/// A small deterministic generator, for long simulations whose inputs would be too many
/// for proptest to generate one by one.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
}

/// Schedules every core in `resched`, as the arch layer does (directly or by IPI).
pub fn reschedule<const T: usize, const C: usize>(
    kernel: &mut Kernel<T, C>,
    resched: Resched,
    now: u64,
) {
    for core in resched.cores() {
        let _ = kernel.schedule(core, now).unwrap();
    }
}

/// Every core runs a task at least as urgent as any ready task of that core (the idle task
/// only when none is ready), and the run queues hold exactly the ready tasks, each at its
/// effective priority.
pub fn assert_highest_runs<const T: usize, const C: usize>(
    kernel: &Kernel<T, C>,
    tasks: &[TaskId],
) -> Result<(), TestCaseError> {
    for core_index in 0..C as u8 {
        let core = core(core_index);
        let current = kernel.current(core).unwrap();
        let idle = kernel.idle_task(core).unwrap();
        let queue = kernel.run_queue(core).unwrap();
        let mut best_ready: Option<Priority> = None;
        for &task in tasks.iter().filter(|&&t| kernel.task_core(t) == Ok(core)) {
            let state = kernel.task_state(task).unwrap();
            let priority = kernel.effective_priority(task).unwrap();
            let expected_queued = (state == TaskState::Ready).then_some(priority);
            prop_assert_eq!(queue.queued_priority(task), expected_queued);
            if state == TaskState::Ready {
                best_ready = best_ready.max(Some(priority));
            }
        }
        prop_assert_eq!(kernel.task_state(current), Ok(TaskState::Running));
        if current == idle {
            prop_assert_eq!(best_ready, None, "idle runs while a task is ready");
        } else {
            let running = kernel.effective_priority(current).unwrap();
            prop_assert!(best_ready.is_none_or(|best| best <= running));
        }
    }
    Ok(())
}
