//! The kernel state object: the task table, and for each core its run queue, timer queue,
//! current task and round-robin slice. This file holds the scheduler entry points; the
//! synchronisation objects ([`crate::sync`]) and sleeps ([`crate::clock`]) add their
//! operations to [`Kernel`] in their own modules.
//!
//! Invariants every operation keeps:
//! - each core has exactly one current task (its idle task when nothing else runs);
//! - a task is in its core's run queue exactly when its state is `Ready` (idle tasks are
//!   never queued);
//! - a task has an armed timer only while `Sleeping` or `Blocked` with a deadline;
//! - every task's effective priority is the maximum of its base priority and the effective
//!   priorities of the tasks blocked on mutexes it owns.

use super::run_queue::{QueuePosition, RunQueue};
use super::task::{Task, TaskStats};
use super::{
    BlockReason, CoreId, Policy, Preempt, Priority, Resched, Switch, TaskId, TaskState, WakeReason,
};
use crate::Error;
use crate::timer::TimerQueue;

/// How to create a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskConfig {
    /// The core the task is pinned to for its whole life.
    pub core: CoreId,
    /// Its base priority.
    pub priority: Priority,
    /// FIFO or round-robin.
    pub policy: Policy,
}

/// What the kernel keeps per core.
#[derive(Debug, Clone)]
struct Core<const TASKS: usize> {
    run_queue: RunQueue<TASKS>,
    /// Sleep ends and wait timeouts of this core's tasks: one timer per task at most.
    timers: TimerQueue<TaskId, TASKS>,
    current: TaskId,
    /// When the current task was switched in or last accounted.
    switched_in_at_ns: u64,
    /// End of the current task's round-robin slice.
    slice_deadline_ns: Option<u64>,
}

impl<const TASKS: usize> Core<TASKS> {
    const fn new() -> Self {
        Self {
            run_queue: RunQueue::new(),
            timers: TimerQueue::new(),
            current: TaskId::new(0),
            switched_in_at_ns: 0,
            slice_deadline_ns: None,
        }
    }
}

/// A set of task ids, one bit per entry of the task table (at most [`TaskSet::CAPACITY`]).
#[derive(Debug, Clone, Copy)]
struct TaskSet([u64; TaskSet::WORDS]);

impl TaskSet {
    const WORDS: usize = 4;
    const CAPACITY: usize = Self::WORDS * 64;

    const fn new() -> Self {
        Self([0; Self::WORDS])
    }

    fn insert(&mut self, task: TaskId) {
        self.0[task.index() / 64] |= 1 << (task.index() % 64);
    }

    fn remove(&mut self, task: TaskId) {
        self.0[task.index() / 64] &= !(1 << (task.index() % 64));
    }

    fn contains(self, task: TaskId) -> bool {
        self.0[task.index() / 64] & (1 << (task.index() % 64)) != 0
    }

    /// The members, lowest id first.
    fn iter(self) -> impl Iterator<Item = TaskId> {
        self.0.into_iter().enumerate().flat_map(|(word, mut bits)| {
            core::iter::from_fn(move || {
                let bit = bits.trailing_zeros();
                (bits != 0).then(|| {
                    bits &= bits - 1;
                    TaskId::new((word * 64) as u16 + bit as u16)
                })
            })
        })
    }
}

/// The RT kernel's whole state for `CORES` cores and a table of `TASKS` tasks (including one
/// idle task per core). Create it with the `const fn` [`Kernel::new`] (it can sit in a
/// `static`), create tasks and objects at init, then let each core call
/// [`Kernel::schedule`].
///
/// The arch layer's duties, after every entry into the kernel (timer interrupt, syscall,
/// IPI), under the lock that guards the kernel:
/// 1. send a rescheduling IPI to every other core named in a returned [`Resched`] or
///    [`Preempt`], and call [`Kernel::schedule`] if its own core is named;
/// 2. perform the context switch a returned [`Switch`] asks for;
/// 3. program the core's one-shot timer for [`Kernel::next_event`].
#[derive(Debug, Clone)]
pub struct Kernel<const TASKS: usize, const CORES: usize> {
    tasks: [Task; TASKS],
    cores: [Core<TASKS>; CORES],
    /// The tasks whose state is `Blocked`: where an object looks for its waiters, so that a
    /// wake-up costs the number of blocked tasks, not the size of the table.
    blocked: TaskSet,
    next_wait_sequence: u64,
    next_object_id: u32,
}

impl<const TASKS: usize, const CORES: usize> Default for Kernel<TASKS, CORES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const TASKS: usize, const CORES: usize> Kernel<TASKS, CORES> {
    /// A kernel with one idle task per core (task `i` is core `i`'s idle task and is its
    /// current task) and no other task.
    pub const fn new() -> Self {
        const {
            assert!(CORES > 0 && CORES <= 64, "between 1 and 64 cores");
            assert!(
                TASKS > CORES,
                "the task table holds the idle tasks and at least one more"
            );
            assert!(
                TASKS <= TaskSet::CAPACITY,
                "the blocked tasks' set holds 256 tasks"
            );
        };
        let mut tasks = [const { Task::UNUSED }; TASKS];
        let mut cores = [const { Core::new() }; CORES];
        let mut index = 0;
        while index < CORES {
            tasks[index].in_use = true;
            tasks[index].idle = true;
            tasks[index].core = CoreId::new(index as u8);
            tasks[index].state = TaskState::Running;
            cores[index].current = TaskId::new(index as u16);
            index += 1;
        }
        Self {
            tasks,
            cores,
            blocked: TaskSet::new(),
            next_wait_sequence: 0,
            next_object_id: 0,
        }
    }

    // ----- tasks and queries -------------------------------------------------------------

    /// Creates a task in the `Ready` state at the tail of its priority on its core. Meant for
    /// init, before the cores' first [`Kernel::schedule`]; created later, the task runs when
    /// its core next schedules.
    pub fn create_task(&mut self, config: TaskConfig) -> Result<TaskId, Error> {
        self.core_index(config.core)?;
        if let Policy::RoundRobin { slice_ns: 0 } = config.policy {
            return Err(Error::InvalidArgument);
        }
        let index = self
            .tasks
            .iter()
            .position(|task| !task.in_use)
            .ok_or(Error::TooManyTasks)?;
        let id = TaskId::new(index as u16);
        self.tasks[index] = Task {
            in_use: true,
            core: config.core,
            base_priority: config.priority,
            effective_priority: config.priority,
            policy: config.policy,
            state: TaskState::Ready,
            ..Task::UNUSED
        };
        self.enqueue(id, QueuePosition::Tail);
        Ok(id)
    }

    /// Every task in the table, idle tasks first.
    pub fn tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(_, task)| task.in_use)
            .map(|(index, _)| TaskId::new(index as u16))
    }

    /// The idle task of `core`. It ranks below every other task; its reported priority is
    /// [`Priority::LOWEST`] only because it has to report one. Its CPU time is the core's
    /// idle time.
    pub fn idle_task(&self, core: CoreId) -> Result<TaskId, Error> {
        Ok(TaskId::new(self.core_index(core)? as u16))
    }

    /// The task `core` runs (or is about to switch away from, until it calls
    /// [`Kernel::schedule`]).
    pub fn current(&self, core: CoreId) -> Result<TaskId, Error> {
        Ok(self.cores[self.core_index(core)?].current)
    }

    /// The state of `task`.
    pub fn task_state(&self, task: TaskId) -> Result<TaskState, Error> {
        Ok(self.task(task)?.state)
    }

    /// The priority `task` was given.
    pub fn base_priority(&self, task: TaskId) -> Result<Priority, Error> {
        Ok(self.task(task)?.base_priority)
    }

    /// The priority `task` is scheduled at (its base, raised by priority inheritance).
    pub fn effective_priority(&self, task: TaskId) -> Result<Priority, Error> {
        Ok(self.task(task)?.effective_priority)
    }

    /// The core `task` is pinned to.
    pub fn task_core(&self, task: TaskId) -> Result<CoreId, Error> {
        Ok(self.task(task)?.core)
    }

    /// The policy of `task`.
    pub fn task_policy(&self, task: TaskId) -> Result<Policy, Error> {
        Ok(self.task(task)?.policy)
    }

    /// What the kernel measured for `task`. The running task's CPU time is added when it
    /// leaves the core.
    pub fn task_stats(&self, task: TaskId) -> Result<&TaskStats, Error> {
        Ok(&self.task(task)?.stats)
    }

    /// The ready tasks of `core`.
    pub fn run_queue(&self, core: CoreId) -> Result<&RunQueue<TASKS>, Error> {
        Ok(&self.cores[self.core_index(core)?].run_queue)
    }

    /// Why `task` was last made ready, once: the syscall layer reads it when the task resumes
    /// from a blocking call.
    pub fn take_wake_reason(&mut self, task: TaskId) -> Result<Option<WakeReason>, Error> {
        self.task(task)?;
        Ok(self.tasks[task.index()].wake_reason.take())
    }

    /// Counts a deadline miss the arch layer or the task itself detected.
    pub fn record_deadline_miss(&mut self, task: TaskId) -> Result<(), Error> {
        self.task(task)?;
        let stats = &mut self.tasks[task.index()].stats;
        stats.deadline_misses = stats.deadline_misses.saturating_add(1);
        Ok(())
    }

    /// When the running round-robin task's slice ends, if the current task is round-robin.
    pub fn next_slice_deadline(&self, core: CoreId) -> Result<Option<u64>, Error> {
        let core = &self.cores[self.core_index(core)?];
        let current = &self.tasks[core.current.index()];
        if current.state == TaskState::Running && current.slice_ns().is_some() {
            Ok(core.slice_deadline_ns)
        } else {
            Ok(None)
        }
    }

    /// The earliest time something must happen on `core`: the next timer deadline or the end
    /// of the round-robin slice. Program the core's one-shot timer for it (rounding up, so it
    /// never fires early); `None` means no timer is needed.
    pub fn next_event(&self, core: CoreId) -> Result<Option<u64>, Error> {
        let timer = self.cores[self.core_index(core)?].timers.next_deadline();
        let slice = self.next_slice_deadline(core)?;
        Ok(match (timer, slice) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    // ----- scheduler entry points --------------------------------------------------------

    /// Decides what `core` runs now. If the current task is still running and nothing of
    /// strictly higher priority is ready, it stays. Otherwise the current task is put where
    /// its state says (a preempted task at the head of its priority) and the highest-priority
    /// ready task (or the idle task) is switched in. Cheap when nothing changed.
    pub fn schedule(&mut self, core: CoreId, now_ns: u64) -> Result<Switch, Error> {
        let c = self.core_index(core)?;
        Ok(self.schedule_core(c, now_ns))
    }

    /// [`Kernel::schedule`] for core index `c`, inlined into the entry points on the
    /// interrupt path ([`Kernel::tick`]) so that their decision costs no second call.
    #[inline(always)]
    fn schedule_core(&mut self, c: usize, now_ns: u64) -> Switch {
        let current = self.cores[c].current;
        let current_task = &self.tasks[current.index()];
        // Also what runs next: a preempted current task goes below it, so it stays highest.
        let best_ready = self.cores[c].run_queue.highest_priority();
        if current_task.state == TaskState::Running {
            let keep_running = if current_task.idle {
                best_ready.is_none()
            } else {
                best_ready.is_none_or(|best| best <= current_task.effective_priority)
            };
            if keep_running {
                return Switch::Stay;
            }
            if !current_task.idle {
                self.preempt_current(c, now_ns);
            }
        }
        let next = best_ready
            .and_then(|priority| self.cores[c].run_queue.pop_head(priority))
            .unwrap_or(TaskId::new(c as u16));
        self.account_current(c, now_ns);
        if next == current {
            // Blocked or yielded and made ready again before the core switched away.
            self.begin_running(c, next, now_ns);
            return Switch::Stay;
        }
        self.switch_in(c, current, next, now_ns)
    }

    /// The end of a decision to switch core `c` from `current` (accounted, out of the
    /// Running state unless it is the idle task) to `next` (out of the run queue).
    #[inline(always)]
    fn switch_in(&mut self, c: usize, current: TaskId, next: TaskId, now_ns: u64) -> Switch {
        if self.tasks[current.index()].idle {
            self.tasks[current.index()].state = TaskState::Ready;
        }
        let stats = &mut self.tasks[next.index()].stats;
        stats.dispatches = stats.dispatches.wrapping_add(1);
        self.begin_running(c, next, now_ns);
        Switch::To {
            from: current,
            to: next,
        }
    }

    /// Makes a task ready again: a task parked by [`Kernel::block_current`], or a sleeping
    /// task (its sleep ends early with [`WakeReason::Woken`]). Waking a task that is ready or
    /// running is remembered: its next `block_current` returns at once, so a wake-up that
    /// races ahead of the park is not lost. A task blocked on a kernel object can only be
    /// woken by that object ([`Error::InvalidState`]).
    pub fn wake(&mut self, task: TaskId, now_ns: u64) -> Result<Preempt, Error> {
        let t = self.task(task)?;
        if t.idle {
            return Err(Error::InvalidState);
        }
        match t.state {
            TaskState::Blocked(BlockReason::Parked(_)) => {
                Ok(self.unblock(task, now_ns, WakeReason::Woken))
            }
            TaskState::Sleeping => Ok(self.make_ready(task, now_ns, WakeReason::Woken)),
            TaskState::Ready | TaskState::Running => {
                self.tasks[task.index()].wake_pending = true;
                Ok(Preempt::No)
            }
            TaskState::Blocked(_) | TaskState::Suspended => Err(Error::InvalidState),
        }
    }

    /// Parks `core`'s current task with `tag` until [`Kernel::wake`] (or
    /// [`Kernel::wake_parked`] with its tag) and switches to the next task, unless a wake-up
    /// is already pending (then it keeps running).
    pub fn block_current(&mut self, core: CoreId, tag: u32, now_ns: u64) -> Result<Switch, Error> {
        self.park(core, tag, None, now_ns)
    }

    /// As [`Kernel::block_current`], and the park also ends at `deadline_ns`
    /// ([`WakeReason::Timeout`]); [`Error::TimedOut`] if that is not after `now_ns`.
    pub fn park_until(
        &mut self,
        core: CoreId,
        tag: u32,
        deadline_ns: u64,
        now_ns: u64,
    ) -> Result<Switch, Error> {
        if deadline_ns <= now_ns {
            self.calling_task(core)?;
            return Err(Error::TimedOut);
        }
        self.park(core, tag, Some(deadline_ns), now_ns)
    }

    fn park(
        &mut self,
        core: CoreId,
        tag: u32,
        deadline_ns: Option<u64>,
        now_ns: u64,
    ) -> Result<Switch, Error> {
        let task = self.calling_task(core)?;
        let t = &mut self.tasks[task.index()];
        if t.wake_pending {
            t.wake_pending = false;
            return Ok(Switch::Stay);
        }
        self.block_task(task, BlockReason::Parked(tag), deadline_ns)?;
        self.schedule(core, now_ns)
    }

    /// Ends `task`'s park if it is parked with `tag` ([`WakeReason::Woken`]); otherwise does
    /// nothing and remembers nothing. For a waker that may come late (after the park it was
    /// meant for ended by its deadline): it can never end another wait or sleep of the task.
    /// Whoever parks must therefore check, in the same kernel entry, that what it waits for
    /// has not happened yet.
    pub fn wake_parked(&mut self, task: TaskId, tag: u32, now_ns: u64) -> Result<Preempt, Error> {
        if self.task(task)?.state != TaskState::Blocked(BlockReason::Parked(tag)) {
            return Ok(Preempt::No);
        }
        Ok(self.unblock(task, now_ns, WakeReason::Woken))
    }

    /// Puts `core`'s current task at the tail of its priority and switches to the head of
    /// the highest priority (which may be the same task). The idle task just reschedules.
    pub fn yield_current(&mut self, core: CoreId, now_ns: u64) -> Result<Switch, Error> {
        let c = self.core_index(core)?;
        let task = self.cores[c].current;
        let t = &self.tasks[task.index()];
        if !t.idle {
            if t.state != TaskState::Running {
                return Err(Error::InvalidState);
            }
            self.account_current(c, now_ns);
            self.tasks[task.index()].state = TaskState::Ready;
            self.enqueue(task, QueuePosition::Tail);
        }
        self.schedule(core, now_ns)
    }

    /// Round-robin accounting, called when the core's timer fires (after
    /// [`Kernel::expire_timers`]): if the current task's slice has ended it goes to the tail
    /// of its priority with a fresh slice. Then decides what runs, as [`Kernel::schedule`].
    pub fn tick(&mut self, core: CoreId, now_ns: u64) -> Result<Switch, Error> {
        let c = self.core_index(core)?;
        self.end_slice_if_over(c, now_ns);
        Ok(self.schedule_core(c, now_ns))
    }

    /// [`Kernel::tick`]'s round-robin part: a running task whose slice has ended goes to the
    /// tail of its priority with a fresh slice.
    #[inline(always)]
    fn end_slice_if_over(&mut self, c: usize, now_ns: u64) {
        let task = self.cores[c].current;
        let t = &self.tasks[task.index()];
        let slice_over = self.cores[c]
            .slice_deadline_ns
            .is_some_and(|deadline| now_ns >= deadline);
        if t.state == TaskState::Running && !t.idle && t.slice_ns().is_some() && slice_over {
            self.account_current(c, now_ns);
            let t = &mut self.tasks[task.index()];
            t.slice_remaining_ns = 0;
            t.state = TaskState::Ready;
            self.enqueue(task, QueuePosition::Tail);
        }
    }

    /// The timer interrupt's whole decision for `core`: [`Kernel::expire_timers`], then
    /// [`Kernel::tick`], with the same results (the cores the expiries name, `core`'s
    /// switch, every task's state and statistics). The sleeping task of the highest priority
    /// among those due is held out of the run queue while the others are queued; if it
    /// outranks the running task and every ready one, the core goes straight to it: it is
    /// never queued and taken out again, most of a wake-up's cost (a property test compares
    /// the two ways on any state).
    pub fn timer_interrupt(
        &mut self,
        core: CoreId,
        now_ns: u64,
    ) -> Result<(Resched, Switch), Error> {
        let c = self.core_index(core)?;
        let mut resched = Resched::NONE;
        // The sleeper held back: higher than every sleeper due before it. One of equal or
        // higher priority, or a blocked task's timeout (which may move priorities), queues it
        // first, so the queues' order stays the expiries' order.
        let mut held: Option<(TaskId, u64)> = None;
        while let Some(expired) = self.cores[c].timers.pop_expired(now_ns) {
            let task = expired.payload;
            let t = &self.tasks[task.index()];
            let sleeper = t.state == TaskState::Sleeping;
            let priority = t.effective_priority;
            if let Some((h, deadline)) = held
                && (!sleeper || priority >= self.tasks[h.index()].effective_priority)
            {
                held = None;
                resched.merge(self.make_ready(h, deadline, WakeReason::Timeout).into());
            }
            if sleeper
                && held.is_none_or(|(h, _)| priority > self.tasks[h.index()].effective_priority)
            {
                self.tasks[task.index()].timer = None;
                held = Some((task, expired.deadline_ns));
            } else {
                self.expire_one(task, expired.deadline_ns, &mut resched);
            }
        }
        if let Some((task, deadline)) = held {
            if let Some(switch) = self.hand_over(c, task, deadline, now_ns) {
                resched.add(core);
                return Ok((resched, switch));
            }
            resched.merge(self.make_ready(task, deadline, WakeReason::Timeout).into());
        }
        Ok((resched, self.tick(core, now_ns)?))
    }

    /// [`Kernel::timer_interrupt`]'s short way, if `task` (sleeping, its timer expired at
    /// `deadline`) outranks the running task of core `c` and every ready one: it is made
    /// ready and switched in without the run queue, after the tick's slice accounting and
    /// the running task's preemption, as [`Kernel::tick`] would. Otherwise nothing changes.
    #[inline(always)]
    fn hand_over(&mut self, c: usize, task: TaskId, deadline: u64, now_ns: u64) -> Option<Switch> {
        let current = self.outranked(c, task)?;
        // What make_ready does, but the queueing.
        self.mark_ready(task, deadline, WakeReason::Timeout);
        // What tick does with the running task: its slice.
        self.end_slice_if_over(c, now_ns);
        Some(self.switch_in_unqueued(c, current, task, now_ns))
    }

    /// [`Kernel::wake_parked`] of a task of `core`, then [`Kernel::schedule`] of `core`, in
    /// one call with the same results: when the woken task outranks the running task and
    /// every ready one, the core goes straight to it, never queued and taken out again (an
    /// interrupt that wakes one task; a property test compares the two ways on any state).
    /// [`Error::OtherCore`] for a task of another core.
    pub fn wake_parked_and_schedule(
        &mut self,
        core: CoreId,
        task: TaskId,
        tag: u32,
        now_ns: u64,
    ) -> Result<Switch, Error> {
        let c = self.core_index(core)?;
        let t = self.task(task)?;
        if t.core != core {
            return Err(Error::OtherCore);
        }
        if t.state == TaskState::Blocked(BlockReason::Parked(tag)) {
            if let Some(current) = self.outranked(c, task) {
                // What unblock does, but the queueing.
                self.end_block(task);
                self.cancel_timer(task);
                self.mark_ready(task, now_ns, WakeReason::Woken);
                return Ok(self.switch_in_unqueued(c, current, task, now_ns));
            }
            let _ = self.unblock(task, now_ns, WakeReason::Woken);
        }
        Ok(self.schedule_core(c, now_ns))
    }

    /// The running task of core `c` if `task` (of `c`, not queued) outranks it and every
    /// ready task, so that a decision would switch to `task`.
    #[inline(always)]
    fn outranked(&self, c: usize, task: TaskId) -> Option<TaskId> {
        let current = self.cores[c].current;
        let (t, cur) = (&self.tasks[task.index()], &self.tasks[current.index()]);
        let outranks = cur.state == TaskState::Running
            && (cur.idle || t.effective_priority > cur.effective_priority)
            && self.cores[c]
                .run_queue
                .highest_priority()
                .is_none_or(|best| t.effective_priority > best);
        outranks.then_some(current)
    }

    /// The decision's end for a ready `task` of core `c` that is not queued and outranks
    /// every ready one: `current`, the running task, is preempted (unless idle, or no longer
    /// running), and `task` switched in.
    #[inline(always)]
    fn switch_in_unqueued(
        &mut self,
        c: usize,
        current: TaskId,
        task: TaskId,
        now_ns: u64,
    ) -> Switch {
        let cur = &self.tasks[current.index()];
        if cur.state == TaskState::Running && !cur.idle {
            self.preempt_current(c, now_ns);
        }
        self.account_current(c, now_ns);
        self.switch_in(c, current, task, now_ns)
    }

    /// Expires `core`'s due timers: sleeping tasks wake ([`WakeReason::Timeout`]), blocked
    /// tasks give up their wait ([`WakeReason::Timeout`], and a mutex owner loses the
    /// priority it inherited from them). Never expires a timer whose deadline is after
    /// `now_ns`. The wake-up latency of these tasks is measured from the timer's deadline.
    pub fn expire_timers(&mut self, core: CoreId, now_ns: u64) -> Result<Resched, Error> {
        let c = self.core_index(core)?;
        let mut resched = Resched::NONE;
        while let Some(expired) = self.cores[c].timers.pop_expired(now_ns) {
            self.expire_one(expired.payload, expired.deadline_ns, &mut resched);
        }
        Ok(resched)
    }

    /// The expiry of `task`'s timer (taken out of its queue; its deadline was `deadline`).
    fn expire_one(&mut self, task: TaskId, deadline: u64, resched: &mut Resched) {
        let t = &mut self.tasks[task.index()];
        t.timer = None;
        match t.state {
            TaskState::Sleeping => {
                let preempt = self.make_ready(task, deadline, WakeReason::Timeout);
                resched.merge(preempt.into());
            }
            TaskState::Blocked(_) => {
                let mutex_owner = t.mutex_owner;
                let preempt = self.unblock(task, deadline, WakeReason::Timeout);
                resched.merge(preempt.into());
                if let Some(owner) = mutex_owner {
                    self.update_priority_chain(owner, resched);
                }
            }
            // Timers are cancelled whenever a task is made ready, so this is not reached.
            TaskState::Ready | TaskState::Running | TaskState::Suspended => {}
        }
    }

    /// Takes a ready or running task off the scheduler until [`Kernel::resume`]. A running
    /// task leaves its core at the core's next [`Kernel::schedule`] (its core is in the
    /// returned set). Blocked and sleeping tasks cannot be suspended.
    pub fn suspend(&mut self, task: TaskId) -> Result<Resched, Error> {
        let t = self.task(task)?;
        if t.idle {
            return Err(Error::InvalidState);
        }
        let core = t.core;
        match t.state {
            TaskState::Ready => {
                self.cores[core.index()].run_queue.remove(task);
                let t = &mut self.tasks[task.index()];
                t.state = TaskState::Suspended;
                // Time spent suspended is not wake-up latency.
                t.ready_since_ns = None;
                Ok(Resched::NONE)
            }
            TaskState::Running => {
                self.tasks[task.index()].state = TaskState::Suspended;
                Ok(Resched::core(core))
            }
            TaskState::Suspended => Ok(Resched::NONE),
            TaskState::Blocked(_) | TaskState::Sleeping => Err(Error::InvalidState),
        }
    }

    /// Makes a suspended task ready (tail of its priority).
    pub fn resume(&mut self, task: TaskId) -> Result<Preempt, Error> {
        if self.task(task)?.state != TaskState::Suspended {
            return Err(Error::InvalidState);
        }
        self.tasks[task.index()].state = TaskState::Ready;
        self.enqueue(task, QueuePosition::Tail);
        let t = &self.tasks[task.index()];
        Ok(self.preempt_check(t.core, t.effective_priority))
    }

    /// Changes the base priority of `task` (`pthread_setschedprio`). Its effective priority
    /// stays at least what it inherits from mutex waiters, and a blocked task passes the
    /// change on along the chain of mutex owners.
    pub fn set_base_priority(
        &mut self,
        task: TaskId,
        priority: Priority,
    ) -> Result<Resched, Error> {
        if self.task(task)?.idle {
            return Err(Error::InvalidState);
        }
        self.tasks[task.index()].base_priority = priority;
        let mut resched = Resched::NONE;
        self.update_priority_chain(task, &mut resched);
        Ok(resched)
    }

    // ----- crate-internal helpers for sync and clock --------------------------------------

    /// The task `task` names, if it was created.
    pub(crate) fn task(&self, task: TaskId) -> Result<&Task, Error> {
        match self.tasks.get(task.index()) {
            Some(t) if t.in_use => Ok(t),
            _ => Err(Error::NoSuchTask),
        }
    }

    /// Mutable access to a task id the kernel produced itself (always valid).
    pub(crate) fn task_mut(&mut self, task: TaskId) -> &mut Task {
        &mut self.tasks[task.index()]
    }

    pub(crate) fn core_index(&self, core: CoreId) -> Result<usize, Error> {
        if core.index() < CORES {
            Ok(core.index())
        } else {
            Err(Error::NoSuchCore)
        }
    }

    /// The current task of `core`, making a system call that may block or own something:
    /// refused for the idle task and for a task that already stopped running.
    pub(crate) fn calling_task(&self, core: CoreId) -> Result<TaskId, Error> {
        let task = self.cores[self.core_index(core)?].current;
        let t = &self.tasks[task.index()];
        if t.idle {
            Err(Error::IdleTask)
        } else if t.state != TaskState::Running {
            Err(Error::InvalidState)
        } else {
            Ok(task)
        }
    }

    /// Blocks the running `task` on `reason`, with a timer for `deadline_ns` if given. The
    /// caller's core must then reschedule.
    pub(crate) fn block_task(
        &mut self,
        task: TaskId,
        reason: BlockReason,
        deadline_ns: Option<u64>,
    ) -> Result<(), Error> {
        self.arm_timer(task, deadline_ns)?;
        let sequence = self.next_wait_sequence();
        let t = &mut self.tasks[task.index()];
        t.state = TaskState::Blocked(reason);
        t.wake_reason = None;
        t.wait_sequence = sequence;
        self.blocked.insert(task);
        Ok(())
    }

    /// Puts the running `task` to sleep until `deadline_ns`.
    pub(crate) fn sleep_task(&mut self, task: TaskId, deadline_ns: u64) -> Result<(), Error> {
        self.arm_timer(task, Some(deadline_ns))?;
        let t = &mut self.tasks[task.index()];
        t.state = TaskState::Sleeping;
        t.wake_reason = None;
        Ok(())
    }

    /// Ends a block: takes the task out of the blocked set, then as [`Kernel::make_ready`].
    /// Every wake-up of a `Blocked` task goes through here.
    pub(crate) fn unblock(
        &mut self,
        task: TaskId,
        ready_since_ns: u64,
        reason: WakeReason,
    ) -> Preempt {
        self.end_block(task);
        self.make_ready(task, ready_since_ns, reason)
    }

    /// Takes `task` out of the blocked set and clears what only a blocked task has (a
    /// sleeping one never had them).
    #[inline(always)]
    fn end_block(&mut self, task: TaskId) {
        self.blocked.remove(task);
        let t = &mut self.tasks[task.index()];
        t.mutex_owner = None;
        t.flags_condition = None;
    }

    /// Cancels `task`'s timer, if it has one.
    #[inline(always)]
    fn cancel_timer(&mut self, task: TaskId) {
        let t = &mut self.tasks[task.index()];
        if let Some(handle) = t.timer.take() {
            self.cores[t.core.index()].timers.cancel(handle);
        }
    }

    /// Ends a sleep (or, through [`Kernel::unblock`], a block): cancels the task's timer,
    /// records why, and queues it at the tail of its priority. `ready_since_ns` is where its
    /// wake-up latency is measured from.
    fn make_ready(&mut self, task: TaskId, ready_since_ns: u64, reason: WakeReason) -> Preempt {
        self.cancel_timer(task);
        self.mark_ready(task, ready_since_ns, reason);
        let t = &self.tasks[task.index()];
        let (core, priority) = (t.core, t.effective_priority);
        // Blocked or sleeping until now, so not queued.
        self.cores[core.index()]
            .run_queue
            .push_back_unqueued(task, priority);
        self.preempt_check(core, priority)
    }

    /// What every wake-up records of its task (whose timer is gone): ready, why, since when
    /// its wake-up latency counts, one more wake-up. Queueing it is the caller's.
    #[inline(always)]
    fn mark_ready(&mut self, task: TaskId, ready_since_ns: u64, reason: WakeReason) {
        let t = &mut self.tasks[task.index()];
        t.state = TaskState::Ready;
        t.wake_reason = Some(reason);
        t.ready_since_ns = Some(ready_since_ns);
        // (A 64-bit count of events does not wrap in any machine's lifetime.)
        t.stats.wakeups = t.stats.wakeups.wrapping_add(1);
    }

    /// Gives `task` a new effective priority, moving it in its run queue if it is ready, and
    /// adds its core to `resched` if what that core should run may have changed.
    pub(crate) fn apply_effective_priority(
        &mut self,
        task: TaskId,
        priority: Priority,
        resched: &mut Resched,
    ) {
        let t = &mut self.tasks[task.index()];
        let old = t.effective_priority;
        if old == priority {
            return;
        }
        t.effective_priority = priority;
        let core = t.core;
        match t.state {
            TaskState::Ready => {
                let position = if priority > old {
                    QueuePosition::Tail
                } else {
                    QueuePosition::Head
                };
                self.enqueue(task, position);
                resched.merge(self.preempt_check(core, priority).into());
            }
            TaskState::Running => {
                let best_ready = self.cores[core.index()].run_queue.highest_priority();
                if priority < old && best_ready.is_some_and(|best| best > priority) {
                    resched.add(core);
                }
            }
            TaskState::Blocked(_) | TaskState::Sleeping | TaskState::Suspended => {}
        }
    }

    /// The waiter that an object hands itself to first: the highest effective priority among
    /// tasks blocked on `reason`, first come first served within a priority. The scan is over
    /// the blocked tasks: bounded, and always consistent with priority changes.
    pub(crate) fn top_waiter(&self, reason: BlockReason) -> Option<TaskId> {
        self.best_waiter(|task| task.state == TaskState::Blocked(reason))
    }

    /// The tasks whose state is `Blocked`, lowest id first.
    pub(crate) fn blocked_tasks(&self) -> impl Iterator<Item = (TaskId, &Task)> + '_ {
        debug_assert!(
            self.tasks.iter().enumerate().all(|(index, task)| {
                matches!(task.state, TaskState::Blocked(_))
                    == self.blocked.contains(TaskId::new(index as u16))
            }),
            "the blocked set is the tasks in the Blocked state"
        );
        self.blocked.iter().map(|id| (id, &self.tasks[id.index()]))
    }

    /// As [`Kernel::top_waiter`], among the blocked tasks for which `eligible` holds.
    pub(crate) fn best_waiter(&self, eligible: impl Fn(&Task) -> bool) -> Option<TaskId> {
        let mut best: Option<(TaskId, Priority, u64)> = None;
        for (id, task) in self.blocked_tasks() {
            if !eligible(task) {
                continue;
            }
            let better = match best {
                None => true,
                Some((_, priority, sequence)) => {
                    task.effective_priority > priority
                        || (task.effective_priority == priority && task.wait_sequence < sequence)
                }
            };
            if better {
                best = Some((id, task.effective_priority, task.wait_sequence));
            }
        }
        best.map(|(id, _, _)| id)
    }

    /// A fresh id for a synchronisation object.
    pub(crate) fn next_object_id(&mut self) -> u32 {
        let id = self.next_object_id;
        self.next_object_id = self.next_object_id.wrapping_add(1);
        id
    }

    // ----- private --------------------------------------------------------------------------

    fn next_wait_sequence(&mut self) -> u64 {
        let sequence = self.next_wait_sequence;
        self.next_wait_sequence += 1;
        sequence
    }

    fn arm_timer(&mut self, task: TaskId, deadline_ns: Option<u64>) -> Result<(), Error> {
        let Some(deadline) = deadline_ns else {
            return Ok(());
        };
        let t = &mut self.tasks[task.index()];
        let timers = &mut self.cores[t.core.index()].timers;
        if let Some(stale) = t.timer.take() {
            timers.cancel(stale);
        }
        let handle = timers
            .insert(deadline, task)
            .map_err(|_| Error::TimerQueueFull)?;
        t.timer = Some(handle);
        Ok(())
    }

    /// Queues a ready task of the kernel's own table on its core.
    fn enqueue(&mut self, task: TaskId, position: QueuePosition) {
        let t = &self.tasks[task.index()];
        let queued =
            self.cores[t.core.index()]
                .run_queue
                .insert(task, t.effective_priority, position);
        debug_assert!(queued.is_ok(), "task ids of the table fit its run queues");
    }

    /// Whether a task of `priority` that just became ready on `core` must preempt it.
    fn preempt_check(&self, core: CoreId, priority: Priority) -> Preempt {
        let current = &self.tasks[self.cores[core.index()].current.index()];
        if current.idle
            || current.state != TaskState::Running
            || priority > current.effective_priority
        {
            Preempt::Yes(core)
        } else {
            Preempt::No
        }
    }

    /// Adds the time since the current task of core `c` was switched in (or last accounted)
    /// to its CPU time and takes it off its round-robin slice. Idempotent for one `now_ns`.
    fn account_current(&mut self, c: usize, now_ns: u64) {
        let core = &mut self.cores[c];
        let elapsed = now_ns.saturating_sub(core.switched_in_at_ns);
        core.switched_in_at_ns = core.switched_in_at_ns.max(now_ns);
        let task = &mut self.tasks[core.current.index()];
        task.stats.cpu_time_ns = task.stats.cpu_time_ns.saturating_add(elapsed);
        if task.slice_ns().is_some() {
            task.slice_remaining_ns = task.slice_remaining_ns.saturating_sub(elapsed);
        }
    }

    /// Puts the still-running current task of core `c` back in the run queue because
    /// something more urgent is ready: at the head of its priority, or at the tail with a
    /// fresh slice if its round-robin slice is used up.
    fn preempt_current(&mut self, c: usize, now_ns: u64) {
        self.account_current(c, now_ns);
        let task = self.cores[c].current;
        let t = &mut self.tasks[task.index()];
        let position = if t.slice_ns().is_some() && t.slice_remaining_ns == 0 {
            QueuePosition::Tail
        } else {
            QueuePosition::Head
        };
        t.state = TaskState::Ready;
        t.stats.preemptions = t.stats.preemptions.saturating_add(1);
        self.enqueue(task, position);
    }

    /// Makes `task` the current task of core `c` from `now_ns`.
    fn begin_running(&mut self, c: usize, task: TaskId, now_ns: u64) {
        let core = &mut self.cores[c];
        core.current = task;
        core.switched_in_at_ns = now_ns;
        let t = &mut self.tasks[task.index()];
        t.state = TaskState::Running;
        core.slice_deadline_ns = match t.slice_ns() {
            Some(slice) => {
                if t.slice_remaining_ns == 0 {
                    t.slice_remaining_ns = slice;
                }
                Some(now_ns.saturating_add(t.slice_remaining_ns))
            }
            None => None,
        };
        if let Some(since) = t.ready_since_ns.take() {
            t.stats.wake_max_ns = t.stats.wake_max_ns.max(now_ns.saturating_sub(since));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Sleep;

    type TestKernel = Kernel<8, 2>;

    #[test]
    fn task_set_lists_its_members_in_order_across_words() {
        let mut set = TaskSet::new();
        for index in [200, 0, 63, 64, 130, 255] {
            set.insert(TaskId::new(index));
        }
        set.remove(TaskId::new(130));
        let members: std::vec::Vec<usize> = set.iter().map(TaskId::index).collect();
        assert_eq!(members, [0, 63, 64, 200, 255]);
        assert!(set.contains(TaskId::new(255)) && !set.contains(TaskId::new(130)));
    }

    const CORE0: CoreId = CoreId::new(0);
    const CORE1: CoreId = CoreId::new(1);

    fn fifo(core: CoreId, priority: u8) -> TaskConfig {
        TaskConfig {
            core,
            priority: Priority::new(priority),
            policy: Policy::Fifo,
        }
    }

    fn switched_to(switch: Switch) -> TaskId {
        match switch {
            Switch::To { to, .. } => to,
            Switch::Stay => panic!("expected a switch"),
        }
    }

    /// The kernel can be built at compile time, straight into a `static`.
    static BUILT_AT_COMPILE_TIME: Kernel<70, 8> = Kernel::new();

    #[test]
    fn const_construction() {
        let kernel = &BUILT_AT_COMPILE_TIME;
        assert_eq!(kernel.tasks().count(), 8);
        assert_eq!(kernel.current(CoreId::new(7)), Ok(TaskId::new(7)));
        assert_eq!(kernel.task_state(TaskId::new(7)), Ok(TaskState::Running));
    }

    #[test]
    fn idle_runs_until_a_task_is_ready() {
        let mut kernel = TestKernel::new();
        let idle = kernel.idle_task(CORE0).unwrap();
        assert_eq!(kernel.current(CORE0), Ok(idle));
        assert_eq!(kernel.schedule(CORE0, 0), Ok(Switch::Stay));
        let task = kernel.create_task(fifo(CORE0, 1)).unwrap();
        assert_eq!(
            kernel.schedule(CORE0, 10),
            Ok(Switch::To {
                from: idle,
                to: task
            })
        );
        assert_eq!(kernel.task_state(idle), Ok(TaskState::Ready));
        assert_eq!(kernel.task_state(task), Ok(TaskState::Running));
        assert_eq!(kernel.task_stats(idle).unwrap().cpu_time_ns, 10);
    }

    #[test]
    fn higher_priority_wake_preempts_and_preempted_task_resumes_first() {
        let mut kernel = TestKernel::new();
        let low_a = kernel.create_task(fifo(CORE0, 5)).unwrap();
        let low_b = kernel.create_task(fifo(CORE0, 5)).unwrap();
        let high = kernel.create_task(fifo(CORE0, 9)).unwrap();
        assert_eq!(switched_to(kernel.schedule(CORE0, 0).unwrap()), high);
        assert_eq!(
            switched_to(kernel.block_current(CORE0, 0, 10).unwrap()),
            low_a
        );
        assert_eq!(kernel.wake(high, 20), Ok(Preempt::Yes(CORE0)));
        assert_eq!(switched_to(kernel.schedule(CORE0, 20).unwrap()), high);
        assert_eq!(kernel.task_stats(low_a).unwrap().preemptions, 1);
        // The preempted task is at the head of priority 5, ahead of low_b.
        assert_eq!(
            switched_to(kernel.block_current(CORE0, 0, 30).unwrap()),
            low_a
        );
        assert_eq!(kernel.task_stats(high).unwrap().wake_max_ns, 0);
        assert_eq!(kernel.task_stats(high).unwrap().cpu_time_ns, 20);
        let _ = low_b;
    }

    #[test]
    fn equal_priority_wake_does_not_preempt() {
        let mut kernel = TestKernel::new();
        let a = kernel.create_task(fifo(CORE0, 5)).unwrap();
        let b = kernel.create_task(fifo(CORE0, 5)).unwrap();
        assert_eq!(switched_to(kernel.schedule(CORE0, 0).unwrap()), a);
        assert_eq!(switched_to(kernel.block_current(CORE0, 7, 1).unwrap()), b);
        assert_eq!(
            kernel.task_state(a),
            Ok(TaskState::Blocked(BlockReason::Parked(7)))
        );
        assert_eq!(kernel.wake(a, 2), Ok(Preempt::No));
        assert_eq!(kernel.schedule(CORE0, 2), Ok(Switch::Stay));
        assert_eq!(kernel.take_wake_reason(a), Ok(Some(WakeReason::Woken)));
        assert_eq!(kernel.take_wake_reason(a), Ok(None));
    }

    #[test]
    fn wake_before_park_is_not_lost() {
        let mut kernel = TestKernel::new();
        let a = kernel.create_task(fifo(CORE0, 5)).unwrap();
        let _ = kernel.schedule(CORE0, 0).unwrap();
        assert_eq!(kernel.wake(a, 1), Ok(Preempt::No));
        assert_eq!(kernel.block_current(CORE0, 0, 2), Ok(Switch::Stay));
        assert_eq!(kernel.task_state(a), Ok(TaskState::Running));
        let idle = kernel.idle_task(CORE0).unwrap();
        assert_eq!(
            switched_to(kernel.block_current(CORE0, 0, 3).unwrap()),
            idle
        );
    }

    #[test]
    fn a_park_with_a_deadline_ends_by_its_tag_or_its_deadline() {
        let mut kernel = TestKernel::new();
        let a = kernel.create_task(fifo(CORE0, 5)).unwrap();
        let idle = kernel.idle_task(CORE0).unwrap();
        let _ = kernel.schedule(CORE0, 0).unwrap();
        // Woken with its tag before the deadline: its timer goes with the park.
        assert_eq!(
            switched_to(kernel.park_until(CORE0, 7, 100, 10).unwrap()),
            idle
        );
        assert_eq!(kernel.next_event(CORE0), Ok(Some(100)));
        assert_eq!(kernel.wake_parked(a, 8, 20), Ok(Preempt::No));
        assert_eq!(
            kernel.task_state(a),
            Ok(TaskState::Blocked(BlockReason::Parked(7)))
        );
        assert_eq!(kernel.wake_parked(a, 7, 30), Ok(Preempt::Yes(CORE0)));
        assert_eq!(kernel.next_event(CORE0), Ok(None));
        assert_eq!(switched_to(kernel.schedule(CORE0, 30).unwrap()), a);
        assert_eq!(kernel.take_wake_reason(a), Ok(Some(WakeReason::Woken)));
        // Not woken: the deadline ends it.
        assert_eq!(
            switched_to(kernel.park_until(CORE0, 7, 100, 40).unwrap()),
            idle
        );
        let (_, switch) = kernel.timer_interrupt(CORE0, 100).unwrap();
        assert_eq!(switched_to(switch), a);
        assert_eq!(kernel.take_wake_reason(a), Ok(Some(WakeReason::Timeout)));
        // A deadline already passed parks nothing.
        assert_eq!(kernel.park_until(CORE0, 7, 100, 100), Err(Error::TimedOut));
        assert_eq!(kernel.task_state(a), Ok(TaskState::Running));
    }

    #[test]
    fn a_late_tagged_wake_ends_nothing_else() {
        let mut kernel = TestKernel::new();
        let a = kernel.create_task(fifo(CORE0, 5)).unwrap();
        let _ = kernel.schedule(CORE0, 0).unwrap();
        // Running: nothing is remembered for its next park.
        assert_eq!(kernel.wake_parked(a, 7, 1), Ok(Preempt::No));
        let idle = kernel.idle_task(CORE0).unwrap();
        assert_eq!(
            switched_to(kernel.park_until(CORE0, 7, 100, 2).unwrap()),
            idle
        );
        let _ = kernel.wake_parked(a, 7, 3).unwrap();
        let _ = kernel.schedule(CORE0, 3).unwrap();
        // Asleep, or parked with another tag: left alone.
        assert!(matches!(
            kernel.sleep_until(CORE0, 50, 4),
            Ok(Sleep::Asleep(_))
        ));
        let _ = kernel.schedule(CORE0, 4).unwrap();
        assert_eq!(kernel.wake_parked(a, 7, 5), Ok(Preempt::No));
        assert_eq!(kernel.task_state(a), Ok(TaskState::Sleeping));
        assert_eq!(kernel.wake_parked(idle, 7, 5), Ok(Preempt::No));
    }

    #[test]
    fn cross_core_wake_names_the_other_core() {
        let mut kernel = TestKernel::new();
        let a = kernel.create_task(fifo(CORE1, 5)).unwrap();
        let _ = kernel.schedule(CORE1, 0).unwrap();
        let _ = kernel.block_current(CORE1, 0, 1).unwrap();
        assert_eq!(kernel.wake(a, 2), Ok(Preempt::Yes(CORE1)));
        assert_eq!(kernel.schedule(CORE0, 2), Ok(Switch::Stay));
        assert_eq!(switched_to(kernel.schedule(CORE1, 3).unwrap()), a);
        assert_eq!(kernel.task_stats(a).unwrap().wake_max_ns, 1);
    }

    #[test]
    fn yield_rotates_equal_priorities() {
        let mut kernel = TestKernel::new();
        let a = kernel.create_task(fifo(CORE0, 3)).unwrap();
        let b = kernel.create_task(fifo(CORE0, 3)).unwrap();
        let c = kernel.create_task(fifo(CORE0, 2)).unwrap();
        assert_eq!(switched_to(kernel.schedule(CORE0, 0).unwrap()), a);
        assert_eq!(switched_to(kernel.yield_current(CORE0, 1).unwrap()), b);
        assert_eq!(switched_to(kernel.yield_current(CORE0, 2).unwrap()), a);
        let _ = kernel.suspend(b).unwrap();
        assert_eq!(kernel.yield_current(CORE0, 3), Ok(Switch::Stay));
        let _ = c;
    }

    #[test]
    fn the_timer_interrupt_hands_the_core_to_the_highest_sleeper_due() {
        let mut kernel = TestKernel::new();
        let idle = kernel.idle_task(CORE0).unwrap();
        let low = kernel.create_task(fifo(CORE0, 3)).unwrap();
        let high = kernel.create_task(fifo(CORE0, 7)).unwrap();
        let mid = kernel.create_task(fifo(CORE0, 5)).unwrap();
        // Each runs and sleeps until 100 (high and mid) or 90 (low).
        assert_eq!(switched_to(kernel.schedule(CORE0, 0).unwrap()), high);
        for (task, until) in [(high, 100), (mid, 100), (low, 90)] {
            assert_eq!(kernel.current(CORE0), Ok(task));
            let _ = kernel.sleep_until(CORE0, until, 1).unwrap();
            let _ = kernel.schedule(CORE0, 1).unwrap();
        }
        assert_eq!(kernel.current(CORE0), Ok(idle));
        // At 90 the only sleeper due goes straight in.
        let (resched, switch) = kernel.timer_interrupt(CORE0, 90).unwrap();
        assert_eq!(
            (resched, switch),
            (
                Resched::core(CORE0),
                Switch::To {
                    from: idle,
                    to: low
                }
            )
        );
        assert!(kernel.run_queue(CORE0).unwrap().is_empty());
        // At 100 two are due: the higher goes in, the lower waits in the queue, and the
        // running low task is preempted to the head of its priority.
        let (_, switch) = kernel.timer_interrupt(CORE0, 103).unwrap();
        assert_eq!(
            switch,
            Switch::To {
                from: low,
                to: high
            }
        );
        let queue = kernel.run_queue(CORE0).unwrap();
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.highest(), Some((mid, Priority::new(5))));
        assert_eq!(kernel.task_stats(high).unwrap().wake_max_ns, 3);
        assert_eq!(kernel.task_stats(low).unwrap().preemptions, 1);
        assert_eq!(kernel.take_wake_reason(high), Ok(Some(WakeReason::Timeout)));
        // Nothing due: a tick.
        assert_eq!(
            kernel.timer_interrupt(CORE0, 104),
            Ok((Resched::NONE, Switch::Stay))
        );
    }

    #[test]
    fn round_robin_slices_and_next_event() {
        let mut kernel = TestKernel::new();
        let rr = |core| TaskConfig {
            core,
            priority: Priority::new(4),
            policy: Policy::RoundRobin { slice_ns: 100 },
        };
        let a = kernel.create_task(rr(CORE0)).unwrap();
        let b = kernel.create_task(rr(CORE0)).unwrap();
        assert_eq!(switched_to(kernel.schedule(CORE0, 0).unwrap()), a);
        assert_eq!(kernel.next_slice_deadline(CORE0), Ok(Some(100)));
        assert_eq!(kernel.next_event(CORE0), Ok(Some(100)));
        assert_eq!(kernel.tick(CORE0, 99), Ok(Switch::Stay));
        assert_eq!(switched_to(kernel.tick(CORE0, 100).unwrap()), b);
        assert_eq!(kernel.next_slice_deadline(CORE0), Ok(Some(200)));
        // b is preempted at 150 by a higher task, keeps 50 ns of its slice.
        let high = kernel.create_task(fifo(CORE0, 9)).unwrap();
        assert_eq!(switched_to(kernel.schedule(CORE0, 150).unwrap()), high);
        assert_eq!(kernel.next_slice_deadline(CORE0), Ok(None));
        assert_eq!(switched_to(kernel.block_current(CORE0, 0, 160).unwrap()), b);
        assert_eq!(kernel.next_slice_deadline(CORE0), Ok(Some(210)));
        assert_eq!(switched_to(kernel.tick(CORE0, 210).unwrap()), a);
        assert_eq!(kernel.task_stats(a).unwrap().cpu_time_ns, 100);
        assert_eq!(kernel.task_stats(b).unwrap().cpu_time_ns, 100);
    }

    #[test]
    fn suspend_and_resume() {
        let mut kernel = TestKernel::new();
        let a = kernel.create_task(fifo(CORE0, 3)).unwrap();
        let b = kernel.create_task(fifo(CORE0, 2)).unwrap();
        assert_eq!(switched_to(kernel.schedule(CORE0, 0).unwrap()), a);
        assert_eq!(kernel.suspend(b), Ok(Resched::NONE));
        assert!(kernel.run_queue(CORE0).unwrap().is_empty());
        assert_eq!(kernel.suspend(a), Ok(Resched::core(CORE0)));
        let idle = kernel.idle_task(CORE0).unwrap();
        assert_eq!(switched_to(kernel.schedule(CORE0, 1).unwrap()), idle);
        assert_eq!(kernel.resume(b), Ok(Preempt::Yes(CORE0)));
        assert_eq!(kernel.resume(b), Err(Error::InvalidState));
        assert_eq!(switched_to(kernel.schedule(CORE0, 2).unwrap()), b);
        assert_eq!(kernel.resume(a), Ok(Preempt::Yes(CORE0)));
    }

    #[test]
    fn set_base_priority_moves_ready_tasks_and_preempts() {
        let mut kernel = TestKernel::new();
        let a = kernel.create_task(fifo(CORE0, 5)).unwrap();
        let b = kernel.create_task(fifo(CORE0, 3)).unwrap();
        assert_eq!(switched_to(kernel.schedule(CORE0, 0).unwrap()), a);
        assert_eq!(
            kernel.set_base_priority(b, Priority::new(6)),
            Ok(Resched::core(CORE0))
        );
        assert_eq!(switched_to(kernel.schedule(CORE0, 1).unwrap()), b);
        assert_eq!(
            kernel.set_base_priority(b, Priority::new(1)),
            Ok(Resched::core(CORE0))
        );
        assert_eq!(switched_to(kernel.schedule(CORE0, 2).unwrap()), a);
    }

    #[test]
    fn refusals() {
        let mut kernel = TestKernel::new();
        assert_eq!(kernel.current(CoreId::new(2)), Err(Error::NoSuchCore));
        assert_eq!(kernel.task_state(TaskId::new(5)), Err(Error::NoSuchTask));
        assert_eq!(kernel.task_state(TaskId::new(500)), Err(Error::NoSuchTask));
        assert_eq!(
            kernel.create_task(TaskConfig {
                core: CORE0,
                priority: Priority::LOWEST,
                policy: Policy::RoundRobin { slice_ns: 0 },
            }),
            Err(Error::InvalidArgument)
        );
        assert_eq!(kernel.block_current(CORE0, 0, 0), Err(Error::IdleTask));
        let idle = kernel.idle_task(CORE0).unwrap();
        assert_eq!(kernel.wake(idle, 0), Err(Error::InvalidState));
        assert_eq!(kernel.suspend(idle), Err(Error::InvalidState));
        for _ in 0..6 {
            kernel.create_task(fifo(CORE1, 1)).unwrap();
        }
        assert_eq!(kernel.create_task(fifo(CORE1, 1)), Err(Error::TooManyTasks));
        assert_eq!(kernel.tasks().count(), 8);
    }
}
