//! Scheduler properties: the highest-priority ready task is always the one running, FIFO
//! order within a priority, round-robin shares time fairly.

mod common;

use std::collections::{BTreeMap, VecDeque};

use bulkhead_rt_core::clock::{Periodic, Sleep};
use bulkhead_rt_core::sched::{QueuePosition, RunQueue};
use bulkhead_rt_core::{CoreId, Kernel, Policy, Preempt, Priority, Switch, TaskConfig, TaskId};
use common::{XorShift, assert_highest_runs, core, fifo, reschedule};
use proptest::prelude::*;

// ----- run queue against a model --------------------------------------------------------

#[derive(Debug, Clone)]
enum QueueOp {
    Insert { task: u16, level: u8, head: bool },
    Remove { task: u16 },
    Pop,
}

fn queue_op() -> impl Strategy<Value = QueueOp> {
    prop_oneof![
        3 => (0..16u16, any::<u8>(), any::<bool>())
            .prop_map(|(task, level, head)| QueueOp::Insert { task, level, head }),
        1 => (0..16u16).prop_map(|task| QueueOp::Remove { task }),
        2 => Just(QueueOp::Pop),
    ]
}

/// The reference: one double-ended list per level.
#[derive(Default)]
struct QueueModel {
    levels: BTreeMap<u8, VecDeque<u16>>,
}

impl QueueModel {
    fn remove(&mut self, task: u16) -> Option<u8> {
        for (level, tasks) in self.levels.iter_mut() {
            if let Some(position) = tasks.iter().position(|&t| t == task) {
                tasks.remove(position);
                return Some(*level);
            }
        }
        None
    }

    fn pop(&mut self) -> Option<(u16, u8)> {
        let (&level, tasks) = self.levels.iter_mut().rev().find(|(_, t)| !t.is_empty())?;
        Some((tasks.pop_front()?, level))
    }

    fn len(&self) -> usize {
        self.levels.values().map(VecDeque::len).sum()
    }
}

proptest! {
    /// The run queue always pops the head of the highest non-empty level: highest priority
    /// first, FIFO within a level, head insertions first.
    #[test]
    fn run_queue_matches_model(ops in proptest::collection::vec(queue_op(), 0..200)) {
        let mut queue = RunQueue::<16>::new();
        let mut model = QueueModel::default();
        for op in ops {
            match op {
                QueueOp::Insert { task, level, head } => {
                    let position = if head { QueuePosition::Head } else { QueuePosition::Tail };
                    queue.insert(TaskId::new(task), Priority::new(level), position).unwrap();
                    model.remove(task);
                    let tasks = model.levels.entry(level).or_default();
                    if head { tasks.push_front(task) } else { tasks.push_back(task) }
                }
                QueueOp::Remove { task } => {
                    let removed = queue.remove(TaskId::new(task)).map(Priority::level);
                    prop_assert_eq!(removed, model.remove(task));
                }
                QueueOp::Pop => {
                    let popped = queue.pop_highest().map(|(t, p)| (t.index() as u16, p.level()));
                    prop_assert_eq!(popped, model.pop());
                }
            }
            prop_assert_eq!(queue.len(), model.len());
            let model_highest = model.levels.iter().rev().find(|(_, t)| !t.is_empty());
            prop_assert_eq!(
                queue.highest_priority().map(Priority::level),
                model_highest.map(|(level, _)| *level)
            );
        }
    }
}

// ----- the kernel always runs the highest-priority ready task ---------------------------

const CORES: usize = 2;
type SimKernel = Kernel<16, CORES>;

#[derive(Debug, Clone)]
enum KernelOp {
    BlockCurrent(u8),
    ParkUntil(u8, u32, u64),
    WakeParked(usize, u32),
    WakeParkedAndSchedule(usize, u32),
    Yield(u8),
    Tick(u8),
    Wake(usize),
    Suspend(usize),
    Resume(usize),
    SetPriority(usize, u8),
    Sleep(u8, u64),
    ExpireTimers(u8),
    TimerInterrupt(u8),
}

fn kernel_op() -> impl Strategy<Value = KernelOp> {
    let core = 0..CORES as u8;
    prop_oneof![
        3 => core.clone().prop_map(KernelOp::BlockCurrent),
        2 => (core.clone(), 0..2u32, 1..20u64)
            .prop_map(|(c, tag, d)| KernelOp::ParkUntil(c, tag, d)),
        2 => (0..14usize, 0..2u32).prop_map(|(t, tag)| KernelOp::WakeParked(t, tag)),
        2 => (0..14usize, 0..2u32).prop_map(|(t, tag)| KernelOp::WakeParkedAndSchedule(t, tag)),
        1 => core.clone().prop_map(KernelOp::Yield),
        1 => core.clone().prop_map(KernelOp::Tick),
        4 => (0..14usize).prop_map(KernelOp::Wake),
        1 => (0..14usize).prop_map(KernelOp::Suspend),
        1 => (0..14usize).prop_map(KernelOp::Resume),
        2 => (0..14usize, 0..8u8).prop_map(|(t, p)| KernelOp::SetPriority(t, p)),
        1 => (core.clone(), 1..20u64).prop_map(|(c, d)| KernelOp::Sleep(c, d)),
        1 => core.clone().prop_map(KernelOp::ExpireTimers),
        3 => core.prop_map(KernelOp::TimerInterrupt),
    ]
}

fn task_config() -> impl Strategy<Value = TaskConfig> {
    (0..CORES as u8, 0..8u8, prop::option::of(1..30u64)).prop_map(|(core_index, level, slice)| {
        TaskConfig {
            core: core(core_index),
            priority: Priority::new(level),
            policy: match slice {
                None => Policy::Fifo,
                Some(slice_ns) => Policy::RoundRobin { slice_ns },
            },
        }
    })
}

proptest! {
    /// After any sequence of operations, scheduling only the cores the operations named,
    /// every core runs its highest-priority ready task.
    #[test]
    fn highest_priority_ready_task_always_runs(
        configs in proptest::collection::vec(task_config(), 1..14),
        ops in proptest::collection::vec(kernel_op(), 0..80),
    ) {
        let mut kernel = SimKernel::new();
        let tasks: Vec<TaskId> =
            configs.iter().map(|config| kernel.create_task(*config).unwrap()).collect();
        let mut now = 0;
        for core_index in 0..CORES as u8 {
            let _ = kernel.schedule(core(core_index), now).unwrap();
        }
        assert_highest_runs(&kernel, &tasks)?;
        for op in ops {
            now += 1;
            let pick = |index: usize| tasks[index % tasks.len()];
            match op {
                KernelOp::BlockCurrent(c) => {
                    let _ = kernel.block_current(core(c), 0, now);
                }
                KernelOp::ParkUntil(c, tag, duration) => {
                    let _ = kernel.park_until(core(c), tag, now + duration, now);
                }
                KernelOp::WakeParked(t, tag) => {
                    if let Ok(preempt) = kernel.wake_parked(pick(t), tag, now) {
                        reschedule(&mut kernel, preempt.into(), now);
                    }
                }
                KernelOp::WakeParkedAndSchedule(t, tag) => {
                    // The one call decides exactly as waking and then scheduling the task's
                    // core does, down to every task's statistics and the queues' links.
                    let task = pick(t);
                    let task_core = kernel.task_core(task).unwrap();
                    let mut two_calls = kernel.clone();
                    let preempt = two_calls.wake_parked(task, tag, now).unwrap();
                    let switch = two_calls.schedule(task_core, now).unwrap();
                    let one_switch =
                        kernel.wake_parked_and_schedule(task_core, task, tag, now).unwrap();
                    prop_assert_eq!(one_switch, switch);
                    prop_assert_eq!(format!("{kernel:?}"), format!("{two_calls:?}"));
                    // Only the task's own core can have been named.
                    if let Preempt::Yes(named) = preempt {
                        prop_assert_eq!(named, task_core);
                    }
                }
                KernelOp::Yield(c) => {
                    let _ = kernel.yield_current(core(c), now).unwrap();
                }
                KernelOp::Tick(c) => {
                    let _ = kernel.tick(core(c), now).unwrap();
                }
                KernelOp::Wake(t) => {
                    if let Ok(preempt) = kernel.wake(pick(t), now) {
                        reschedule(&mut kernel, preempt.into(), now);
                    }
                }
                KernelOp::Suspend(t) => {
                    if let Ok(resched) = kernel.suspend(pick(t)) {
                        reschedule(&mut kernel, resched, now);
                    }
                }
                KernelOp::Resume(t) => {
                    if let Ok(preempt) = kernel.resume(pick(t)) {
                        reschedule(&mut kernel, preempt.into(), now);
                    }
                }
                KernelOp::SetPriority(t, level) => {
                    let resched = kernel.set_base_priority(pick(t), Priority::new(level)).unwrap();
                    reschedule(&mut kernel, resched, now);
                }
                KernelOp::Sleep(c, duration) => {
                    if let Ok(Sleep::Asleep(resched)) =
                        kernel.sleep_for(core(c), duration, now)
                    {
                        reschedule(&mut kernel, resched, now);
                    }
                }
                KernelOp::ExpireTimers(c) => {
                    let resched = kernel.expire_timers(core(c), now).unwrap();
                    reschedule(&mut kernel, resched, now);
                }
                KernelOp::TimerInterrupt(c) => {
                    // The one call decides exactly as expiring and ticking one after the
                    // other does, down to every task's statistics and the queues' links.
                    let mut two_calls = kernel.clone();
                    let resched = two_calls.expire_timers(core(c), now).unwrap();
                    let switch = two_calls.tick(core(c), now).unwrap();
                    let (one_resched, one_switch) = kernel.timer_interrupt(core(c), now).unwrap();
                    prop_assert_eq!(one_switch, switch);
                    prop_assert_eq!(one_resched, resched);
                    prop_assert_eq!(format!("{kernel:?}"), format!("{two_calls:?}"));
                    reschedule(&mut kernel, resched, now);
                }
            }
            assert_highest_runs(&kernel, &tasks)?;
        }
    }

    /// Tasks of one priority run in the order they were woken.
    #[test]
    fn equal_priority_tasks_run_in_wake_order(
        order in Just((0..10usize).collect::<Vec<_>>()).prop_shuffle(),
        level in any::<u8>(),
    ) {
        let mut kernel = Kernel::<12, 1>::new();
        let core = core(0);
        let tasks: Vec<TaskId> =
            (0..10).map(|_| kernel.create_task(fifo(0, level)).unwrap()).collect();
        let mut now = 0;
        // Park every task: each runs in creation order and blocks.
        for &task in &tasks {
            let _ = kernel.schedule(core, now).unwrap();
            prop_assert_eq!(kernel.current(core), Ok(task));
            let _ = kernel.block_current(core, 0, now).unwrap();
            now += 1;
        }
        for &index in &order {
            let preempt = kernel.wake(tasks[index], now).unwrap();
            prop_assert!(matches!(preempt, Preempt::Yes(_)), "the core runs its idle task");
            now += 1;
        }
        let mut ran = Vec::new();
        for _ in 0..tasks.len() {
            let _ = kernel.schedule(core, now).unwrap();
            ran.push(kernel.current(core).unwrap());
            let _ = kernel.block_current(core, 0, now).unwrap();
            now += 1;
        }
        let expected: Vec<TaskId> = order.iter().map(|&index| tasks[index]).collect();
        prop_assert_eq!(ran, expected);
    }

    /// Round-robin tasks of one priority get CPU time within one slice of each other, even
    /// while a higher-priority periodic task keeps preempting them.
    #[test]
    fn round_robin_shares_time(
        task_count in 2..6usize,
        slice_ns in 10..1_000u64,
        rounds in 5..40u64,
        interference in prop::option::of((100..5_000u64, 1..50u64)),
    ) {
        let mut kernel = Kernel::<10, 1>::new();
        let core = CoreId::new(0);
        let rr_tasks: Vec<TaskId> = (0..task_count)
            .map(|_| {
                kernel
                    .create_task(TaskConfig {
                        core,
                        priority: Priority::new(10),
                        policy: Policy::RoundRobin { slice_ns },
                    })
                    .unwrap()
            })
            .collect();
        let high = kernel.create_task(fifo(0, 50)).unwrap();
        let mut periodic = match interference {
            Some((period, _)) => Some(Periodic::new(period, period).unwrap()),
            None => {
                let _ = kernel.suspend(high).unwrap();
                None
            }
        };
        let mut now = 0;
        let _ = kernel.schedule(core, now).unwrap();
        let end = rounds * task_count as u64 * slice_ns;
        let mut guard = 0;
        while now < end {
            guard += 1;
            prop_assert!(guard < 1_000_000, "simulation does not progress");
            let current = kernel.current(core).unwrap();
            if current == high {
                // The high task runs for its execution time, then waits for its next release.
                let (_, execution) = interference.unwrap();
                now += execution;
                let sleep = kernel.wait_next_period(core, periodic.as_mut().unwrap(), now).unwrap();
                if let Sleep::Asleep(_) = sleep {
                    let _ = kernel.schedule(core, now).unwrap();
                }
                continue;
            }
            // The timer interrupt arrives exactly at the next event.
            now = kernel.next_event(core).unwrap().expect("an RR task always has a slice end");
            let resched = kernel.expire_timers(core, now).unwrap();
            let _ = resched;
            let _ = kernel.tick(core, now).unwrap();
        }
        let times: Vec<u64> =
            rr_tasks.iter().map(|&t| kernel.task_stats(t).unwrap().cpu_time_ns).collect();
        let most = *times.iter().max().unwrap();
        let least = *times.iter().min().unwrap();
        prop_assert!(most - least <= slice_ns, "shares {times:?} differ by more than {slice_ns}");
        prop_assert!(least > 0);
    }
}

#[test]
fn switch_reports_from_and_to() {
    let mut kernel = Kernel::<4, 1>::new();
    let task = kernel.create_task(fifo(0, 1)).unwrap();
    let idle = kernel.idle_task(core(0)).unwrap();
    assert_eq!(
        kernel.schedule(core(0), 0),
        Ok(Switch::To {
            from: idle,
            to: task
        })
    );
}

#[test]
fn long_random_simulation_keeps_invariants() {
    // A longer single run than proptest's cases, with a fixed seed.
    let mut random = XorShift(0x5eed);
    let mut kernel = SimKernel::new();
    let tasks: Vec<TaskId> = (0..14)
        .map(|i| {
            let level = random.below(6) as u8;
            kernel.create_task(fifo((i % CORES) as u8, level)).unwrap()
        })
        .collect();
    let mut now = 0;
    for c in 0..CORES as u8 {
        let _ = kernel.schedule(core(c), now).unwrap();
    }
    for _ in 0..20_000 {
        now += 1;
        let task = tasks[random.below(tasks.len() as u64) as usize];
        let c = core(random.below(CORES as u64) as u8);
        match random.below(4) {
            0 => {
                let _ = kernel.block_current(c, 0, now);
            }
            1 => {
                if let Ok(preempt) = kernel.wake(task, now) {
                    reschedule(&mut kernel, preempt.into(), now);
                }
            }
            2 => {
                let level = Priority::new(random.below(6) as u8);
                let resched = kernel.set_base_priority(task, level).unwrap();
                reschedule(&mut kernel, resched, now);
            }
            _ => {
                let _ = kernel.yield_current(c, now).unwrap();
            }
        }
        assert_highest_runs(&kernel, &tasks).unwrap();
    }
}
