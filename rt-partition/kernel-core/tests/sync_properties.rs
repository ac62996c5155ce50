//! Synchronisation properties: priority inheritance through chains of blocked owners, its
//! restoration, deadlock detection, and message queue ordering.

mod common;

use bulkhead_rt_core::clock::Sleep;
use bulkhead_rt_core::sync::{Acquire, Mutex, ReceiveOutcome, SendOutcome};
use bulkhead_rt_core::{
    BlockReason, Error, Kernel, Priority, Resched, TaskId, TaskState, Timeout, WakeReason,
};
use common::{assert_highest_runs, core, reschedule, running_task};
use proptest::prelude::*;

/// Eight cores so that every task of a chain of up to five has a core of its own and is
/// therefore running whenever it is runnable.
type ChainKernel = Kernel<16, 8>;

/// Priority inheritance's invariant: every task's effective priority is the maximum of its
/// base priority and the effective priorities of the tasks blocked on mutexes it owns.
fn assert_inheritance_consistent<const T: usize, const C: usize>(
    kernel: &Kernel<T, C>,
    tasks: &[TaskId],
    mutexes: &[Mutex],
) -> Result<(), TestCaseError> {
    for &task in tasks {
        let mut expected = kernel.base_priority(task).unwrap();
        for mutex in mutexes.iter().filter(|m| m.owner() == Some(task)) {
            for &waiter in tasks {
                if kernel.task_state(waiter)
                    == Ok(TaskState::Blocked(BlockReason::Mutex(mutex.id())))
                {
                    expected = expected.max(kernel.effective_priority(waiter).unwrap());
                }
            }
        }
        prop_assert_eq!(
            kernel.effective_priority(task),
            Ok(expected),
            "task {:?}",
            task
        );
    }
    Ok(())
}

/// Builds a chain: task `k` (on core `k`) owns mutex `k`, and for k >= 1 is blocked on mutex
/// `k - 1`. `timeouts[k]` is the deadline of task k's wait (none for task 0).
fn build_chain(
    kernel: &mut ChainKernel,
    levels: &[u8],
    timeouts: &[Option<u64>],
) -> Result<(Vec<TaskId>, Vec<Mutex>), TestCaseError> {
    let tasks: Vec<TaskId> = levels
        .iter()
        .enumerate()
        .map(|(k, &level)| running_task(kernel, k as u8, level, 0))
        .collect();
    let mut mutexes: Vec<Mutex> = (0..levels.len()).map(|_| kernel.create_mutex()).collect();
    for (k, mutex) in mutexes.iter_mut().enumerate() {
        let outcome = kernel.mutex_lock(core(k as u8), mutex, Timeout::Forever, 0);
        prop_assert_eq!(outcome, Ok(Acquire::Acquired));
    }
    for k in 1..levels.len() {
        let timeout = timeouts[k].map_or(Timeout::Forever, Timeout::Until);
        let outcome = kernel.mutex_lock(core(k as u8), &mut mutexes[k - 1], timeout, 1);
        let Ok(Acquire::Blocked(resched)) = outcome else {
            return Err(TestCaseError::fail(format!(
                "task {k} did not block: {outcome:?}"
            )));
        };
        reschedule(kernel, resched, 1);
        // Everyone upstream now runs at least at the priority of everyone downstream.
        for j in 0..k {
            let expected = levels[j..=k].iter().max().copied().unwrap();
            prop_assert_eq!(
                kernel.effective_priority(tasks[j]).unwrap().level(),
                expected
            );
        }
        assert_inheritance_consistent(kernel, &tasks, &mutexes)?;
    }
    Ok((tasks, mutexes))
}

proptest! {
    /// Inheritance raises every owner along a chain of 1 to 5 blocked owners, and unlocking
    /// from the head of the chain hands each mutex down and restores every base priority.
    #[test]
    fn inheritance_through_chains_and_restore_on_unlock(
        levels in proptest::collection::vec(any::<u8>(), 2..=6),
    ) {
        let mut kernel = ChainKernel::new();
        let timeouts = vec![None; levels.len()];
        let (tasks, mut mutexes) = build_chain(&mut kernel, &levels, &timeouts)?;
        let mut now = 10;
        // Task 0 unlocks mutex 0: task 1 owns mutexes 0 and 1, and so on down the chain.
        for k in 0..levels.len() {
            now += 1;
            let c = core(k as u8);
            prop_assert_eq!(kernel.current(c), Ok(tasks[k]));
            if k > 0 {
                prop_assert_eq!(kernel.take_wake_reason(tasks[k]), Ok(Some(WakeReason::Acquired)));
                prop_assert_eq!(mutexes[k - 1].owner(), Some(tasks[k]));
                let resched = kernel.mutex_unlock(c, &mut mutexes[k - 1], now).unwrap();
                reschedule(&mut kernel, resched, now);
            }
            let resched = kernel.mutex_unlock(c, &mut mutexes[k], now).unwrap();
            reschedule(&mut kernel, resched, now);
            prop_assert_eq!(kernel.effective_priority(tasks[k]).unwrap().level(), levels[k]);
            assert_inheritance_consistent(&kernel, &tasks, &mutexes)?;
        }
        for (k, &task) in tasks.iter().enumerate() {
            prop_assert_eq!(kernel.effective_priority(task).unwrap().level(), levels[k]);
            prop_assert_eq!(kernel.task_state(task), Ok(TaskState::Running));
        }
        prop_assert!(mutexes.iter().all(|m| m.owner().is_none()));
    }

    /// A waiter in the middle of a chain timing out cuts the chain: the owners upstream
    /// drop to what the rest of the chain still lends them.
    #[test]
    fn timeout_in_a_chain_restores_upstream(
        levels in proptest::collection::vec(any::<u8>(), 2..=6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut kernel = ChainKernel::new();
        let cut = 1 + cut.index(levels.len() - 1);
        let mut timeouts = vec![None; levels.len()];
        timeouts[cut] = Some(100);
        let (tasks, mutexes) = build_chain(&mut kernel, &levels, &timeouts)?;
        prop_assert_eq!(kernel.next_event(core(cut as u8)), Ok(Some(100)));
        let resched = kernel.expire_timers(core(cut as u8), 100).unwrap();
        reschedule(&mut kernel, resched, 100);
        prop_assert_eq!(kernel.take_wake_reason(tasks[cut]), Ok(Some(WakeReason::Timeout)));
        prop_assert_eq!(kernel.current(core(cut as u8)), Ok(tasks[cut]));
        for j in 0..cut {
            let expected = levels[j..cut].iter().max().copied().unwrap();
            prop_assert_eq!(kernel.effective_priority(tasks[j]).unwrap().level(), expected);
        }
        for j in cut..levels.len() {
            let expected = levels[j..].iter().max().copied().unwrap();
            prop_assert_eq!(kernel.effective_priority(tasks[j]).unwrap().level(), expected);
        }
        assert_inheritance_consistent(&kernel, &tasks, &mutexes)?;
    }

    /// Changing the base priority of a task deep in a chain carries through to the head.
    #[test]
    fn priority_change_carries_along_the_chain(
        levels in proptest::collection::vec(any::<u8>(), 2..=6),
        who in any::<prop::sample::Index>(),
        new_level in any::<u8>(),
    ) {
        let mut kernel = ChainKernel::new();
        let timeouts = vec![None; levels.len()];
        let (tasks, mutexes) = build_chain(&mut kernel, &levels, &timeouts)?;
        let who = who.index(levels.len());
        let resched = kernel.set_base_priority(tasks[who], Priority::new(new_level)).unwrap();
        reschedule(&mut kernel, resched, 5);
        let mut levels = levels;
        levels[who] = new_level;
        for j in 0..levels.len() {
            let expected = levels[j..].iter().max().copied().unwrap();
            prop_assert_eq!(kernel.effective_priority(tasks[j]).unwrap().level(), expected);
        }
        assert_inheritance_consistent(&kernel, &tasks, &mutexes)?;
    }

    /// Closing a cycle anywhere along a chain is refused with `Deadlock`, and nothing
    /// changes: the head keeps running at the same priorities.
    #[test]
    fn deadlock_cycles_are_refused(
        levels in proptest::collection::vec(any::<u8>(), 2..=6),
        target in any::<prop::sample::Index>(),
    ) {
        let mut kernel = ChainKernel::new();
        let timeouts = vec![None; levels.len()];
        let (tasks, mut mutexes) = build_chain(&mut kernel, &levels, &timeouts)?;
        let before: Vec<Priority> =
            tasks.iter().map(|&t| kernel.effective_priority(t).unwrap()).collect();
        // Task 0 (the head, running) reaches for a mutex owned further down: a cycle.
        let target = 1 + target.index(levels.len() - 1);
        let outcome = kernel.mutex_lock(core(0), &mut mutexes[target], Timeout::Forever, 5);
        prop_assert_eq!(outcome, Err(Error::Deadlock));
        // Relocking its own mutex is refused the same way.
        let outcome = kernel.mutex_lock(core(0), &mut mutexes[0], Timeout::Forever, 5);
        prop_assert_eq!(outcome, Err(Error::Deadlock));
        prop_assert_eq!(kernel.task_state(tasks[0]), Ok(TaskState::Running));
        let after: Vec<Priority> =
            tasks.iter().map(|&t| kernel.effective_priority(t).unwrap()).collect();
        prop_assert_eq!(before, after);
        assert_inheritance_consistent(&kernel, &tasks, &mutexes)?;
        // A bystander locking the same mutex simply blocks: that is no cycle.
        let bystander = running_task(&mut kernel, 7, 0, 6);
        let outcome = kernel.mutex_lock(core(7), &mut mutexes[target], Timeout::Forever, 6);
        prop_assert!(matches!(outcome, Ok(Acquire::Blocked(_))));
        prop_assert_eq!(
            kernel.task_state(bystander),
            Ok(TaskState::Blocked(BlockReason::Mutex(mutexes[target].id())))
        );
    }
}

// ----- random mutex traffic ---------------------------------------------------------------

#[derive(Debug, Clone)]
enum MutexOp {
    Lock {
        core: u8,
        mutex: usize,
        deadline: Option<u64>,
    },
    Unlock {
        core: u8,
        mutex: usize,
    },
    Advance {
        by: u64,
    },
    SetPriority {
        task: usize,
        level: u8,
    },
    Sleep {
        core: u8,
        for_ns: u64,
    },
}

fn mutex_op() -> impl Strategy<Value = MutexOp> {
    prop_oneof![
        4 => (0..3u8, 0..4usize, prop::option::of(1..40u64))
            .prop_map(|(core, mutex, deadline)| MutexOp::Lock { core, mutex, deadline }),
        4 => (0..3u8, 0..4usize).prop_map(|(core, mutex)| MutexOp::Unlock { core, mutex }),
        2 => (1..20u64).prop_map(|by| MutexOp::Advance { by }),
        1 => (0..9usize, 0..10u8).prop_map(|(task, level)| MutexOp::SetPriority { task, level }),
        2 => (0..3u8, 1..40u64).prop_map(|(core, for_ns)| MutexOp::Sleep { core, for_ns }),
    ]
}

proptest! {
    /// Under random locking, unlocking, timeouts, sleeps and priority changes by several
    /// tasks per core, inheritance stays consistent, every core runs its most urgent task, and
    /// a mutex is only ever owned by a task that is not waiting for it. Each core's timer
    /// interrupt decides as expiring and ticking one after the other does.
    #[test]
    fn random_mutex_traffic_keeps_invariants(
        levels in proptest::collection::vec((0..3u8, 0..10u8), 1..10),
        ops in proptest::collection::vec(mutex_op(), 0..120),
    ) {
        let mut kernel = Kernel::<16, 3>::new();
        let tasks: Vec<TaskId> = levels
            .iter()
            .map(|&(c, level)| kernel.create_task(common::fifo(c, level)).unwrap())
            .collect();
        let mut mutexes: Vec<Mutex> = (0..4).map(|_| kernel.create_mutex()).collect();
        let mut now = 0;
        for c in 0..3 {
            let _ = kernel.schedule(core(c), now).unwrap();
        }
        for op in ops {
            match op {
                MutexOp::Lock { core: c, mutex, deadline } => {
                    let timeout = deadline.map_or(Timeout::Forever, |d| Timeout::Until(now + d));
                    match kernel.mutex_lock(core(c), &mut mutexes[mutex], timeout, now) {
                        Ok(Acquire::Blocked(resched)) => reschedule(&mut kernel, resched, now),
                        Ok(Acquire::Acquired)
                        | Err(Error::Deadlock | Error::IdleTask) => {}
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                MutexOp::Unlock { core: c, mutex } => {
                    match kernel.mutex_unlock(core(c), &mut mutexes[mutex], now) {
                        Ok(resched) => reschedule(&mut kernel, resched, now),
                        Err(Error::NotOwner | Error::IdleTask) => {}
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                MutexOp::Advance { by } => {
                    now += by;
                    for c in 0..3 {
                        let mut two_calls = kernel.clone();
                        let resched = two_calls.expire_timers(core(c), now).unwrap();
                        let switch = two_calls.tick(core(c), now).unwrap();
                        let one_call = kernel.timer_interrupt(core(c), now).unwrap();
                        prop_assert_eq!(one_call, (resched, switch));
                        prop_assert_eq!(format!("{kernel:?}"), format!("{two_calls:?}"));
                        reschedule(&mut kernel, resched, now);
                    }
                }
                MutexOp::Sleep { core: c, for_ns } => {
                    if let Ok(Sleep::Asleep(resched)) = kernel.sleep_for(core(c), for_ns, now) {
                        reschedule(&mut kernel, resched, now);
                    }
                }
                MutexOp::SetPriority { task, level } => {
                    let task = tasks[task % tasks.len()];
                    let resched = kernel.set_base_priority(task, Priority::new(level)).unwrap();
                    reschedule(&mut kernel, resched, now);
                }
            }
            assert_inheritance_consistent(&kernel, &tasks, &mutexes)?;
            assert_highest_runs(&kernel, &tasks)?;
            for mutex in &mutexes {
                if let Some(owner) = mutex.owner() {
                    prop_assert_ne!(
                        kernel.task_state(owner),
                        Ok(TaskState::Blocked(BlockReason::Mutex(mutex.id())))
                    );
                }
            }
        }
    }
}

// ----- message queue against a model -----------------------------------------------------

#[derive(Debug, Clone)]
enum QueueOp {
    Send { len: usize, priority: u32 },
    Receive,
}

fn queue_op() -> impl Strategy<Value = QueueOp> {
    prop_oneof![
        (0..12usize, 0..4u32).prop_map(|(len, priority)| QueueOp::Send { len, priority }),
        Just(QueueOp::Receive),
    ]
}

proptest! {
    /// Messages come out highest priority first, oldest first within a priority, with
    /// their bytes intact; full, empty and too-long are reported as errors.
    #[test]
    fn message_queue_matches_model(ops in proptest::collection::vec(queue_op(), 0..100)) {
        let mut kernel = Kernel::<4, 1>::new();
        let _task = running_task(&mut kernel, 0, 1, 0);
        let mut queue = kernel.create_message_queue::<8, 4>();
        // Model: (priority, sequence, bytes).
        let mut model: Vec<(u32, u64, Vec<u8>)> = Vec::new();
        let mut sequence = 0u64;
        for op in ops {
            match op {
                QueueOp::Send { len, priority } => {
                    let message: Vec<u8> =
                        (0..len).map(|i| (sequence as u8).wrapping_add(i as u8)).collect();
                    let timeout = Timeout::NonBlocking;
                    let outcome =
                        kernel.queue_send(core(0), &mut queue, &message, priority, timeout, 0);
                    if len > 8 {
                        prop_assert_eq!(outcome, Err(Error::MessageTooLong));
                    } else if model.len() == 4 {
                        prop_assert_eq!(outcome, Err(Error::WouldBlock));
                    } else {
                        prop_assert_eq!(outcome, Ok(SendOutcome::Sent(Resched::NONE)));
                        model.push((priority, sequence, message));
                        sequence += 1;
                    }
                }
                QueueOp::Receive => {
                    let mut buffer = [0u8; 8];
                    let timeout = Timeout::NonBlocking;
                    let outcome =
                        kernel.queue_receive(core(0), &mut queue, &mut buffer, timeout, 0);
                    let next = model
                        .iter()
                        .enumerate()
                        .max_by_key(|(_, (priority, seq, _))| (*priority, std::cmp::Reverse(*seq)))
                        .map(|(index, _)| index);
                    match next {
                        None => prop_assert_eq!(outcome, Err(Error::WouldBlock)),
                        Some(index) => {
                            let (priority, _, bytes) = model.remove(index);
                            let Ok(ReceiveOutcome::Received { message, .. }) = outcome else {
                                return Err(TestCaseError::fail(format!("{outcome:?}")));
                            };
                            prop_assert_eq!(message.priority, priority);
                            prop_assert_eq!(&buffer[..message.len], &bytes[..]);
                        }
                    }
                }
            }
            prop_assert_eq!(queue.len(), model.len());
        }
    }
}
