//! One core's ready tasks: a FIFO list per priority and a two-level bitmap over the lists.
//!
//! Bit `p % 64` of word `p / 64` is set while priority `p` has a ready task, and bit `w` of
//! the summary word is set while word `w` is non-zero, so finding the highest ready priority
//! is two find-last-set operations whatever the number of tasks. The lists are intrusive:
//! `next` / `previous` links indexed by task, so insertion and removal anywhere are O(1).
//! The run queue only orders task ids; it never looks at task states or policies (the
//! [`Kernel`](super::Kernel) decides what is queued and where).

use super::{PRIORITY_LEVELS, Priority, TaskId};
use crate::Error;

const BITMAP_WORDS: usize = PRIORITY_LEVELS / 64;

/// Where in its priority's list a task is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePosition {
    /// Runs before the tasks already queued at its priority (a preempted task).
    Head,
    /// Runs after them (a woken or yielding task).
    Tail,
}

/// Ready tasks of one core, for a task table of `TASKS` entries.
#[derive(Debug, Clone)]
pub struct RunQueue<const TASKS: usize> {
    summary: u64,
    words: [u64; BITMAP_WORDS],
    heads: [Option<TaskId>; PRIORITY_LEVELS],
    tails: [Option<TaskId>; PRIORITY_LEVELS],
    next: [Option<TaskId>; TASKS],
    previous: [Option<TaskId>; TASKS],
    /// The priority each queued task was queued at; `None` when not queued.
    queued_at: [Option<Priority>; TASKS],
    len: usize,
}

impl<const TASKS: usize> Default for RunQueue<TASKS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const TASKS: usize> RunQueue<TASKS> {
    /// An empty run queue.
    pub const fn new() -> Self {
        Self {
            summary: 0,
            words: [0; BITMAP_WORDS],
            heads: [None; PRIORITY_LEVELS],
            tails: [None; PRIORITY_LEVELS],
            next: [None; TASKS],
            previous: [None; TASKS],
            queued_at: [None; TASKS],
            len: 0,
        }
    }

    /// Number of queued tasks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no task is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The priority `task` is queued at, or `None` if it is not queued.
    pub fn queued_priority(&self, task: TaskId) -> Option<Priority> {
        self.queued_at.get(task.index()).copied().flatten()
    }

    /// Queues `task` at `priority`. A task that is already queued is moved.
    pub fn insert(
        &mut self,
        task: TaskId,
        priority: Priority,
        position: QueuePosition,
    ) -> Result<(), Error> {
        if task.index() >= TASKS {
            return Err(Error::NoSuchTask);
        }
        self.remove(task);
        let level = usize::from(priority.level());
        match (position, self.heads[level], self.tails[level]) {
            (_, None, _) | (_, _, None) => {
                self.heads[level] = Some(task);
                self.tails[level] = Some(task);
                self.next[task.index()] = None;
                self.previous[task.index()] = None;
                self.mark_level(level);
            }
            (QueuePosition::Head, Some(old_head), _) => {
                self.next[task.index()] = Some(old_head);
                self.previous[task.index()] = None;
                self.previous[old_head.index()] = Some(task);
                self.heads[level] = Some(task);
            }
            (QueuePosition::Tail, _, Some(old_tail)) => {
                self.previous[task.index()] = Some(old_tail);
                self.next[task.index()] = None;
                self.next[old_tail.index()] = Some(task);
                self.tails[level] = Some(task);
            }
        }
        self.queued_at[task.index()] = Some(priority);
        self.len += 1;
        Ok(())
    }

    /// Queues `task`, which is not queued, at the tail of `priority`: [`RunQueue::insert`]'s
    /// most common case (a task made ready) without its checks, on every wake-up's path.
    pub fn push_back_unqueued(&mut self, task: TaskId, priority: Priority) {
        debug_assert!(
            task.index() < TASKS && self.queued_at[task.index()].is_none(),
            "a task of the table, not queued"
        );
        let level = usize::from(priority.level());
        let i = task.index();
        self.next[i] = None;
        self.previous[i] = self.tails[level];
        match self.tails[level] {
            Some(old_tail) => self.next[old_tail.index()] = Some(task),
            None => {
                self.heads[level] = Some(task);
                self.mark_level(level);
            }
        }
        self.tails[level] = Some(task);
        self.queued_at[i] = Some(priority);
        self.len += 1;
    }

    /// Takes `task` out of the queue; returns the priority it was queued at.
    pub fn remove(&mut self, task: TaskId) -> Option<Priority> {
        let priority = self.queued_priority(task)?;
        let level = usize::from(priority.level());
        let before = self.previous[task.index()].take();
        let after = self.next[task.index()].take();
        match before {
            Some(before) => self.next[before.index()] = after,
            None => self.heads[level] = after,
        }
        match after {
            Some(after) => self.previous[after.index()] = before,
            None => self.tails[level] = before,
        }
        if self.heads[level].is_none() {
            self.clear_level(level);
        }
        self.queued_at[task.index()] = None;
        self.len -= 1;
        Some(priority)
    }

    /// The highest priority with a ready task.
    pub fn highest_priority(&self) -> Option<Priority> {
        if self.summary == 0 {
            return None;
        }
        let word_index = 63 - self.summary.leading_zeros() as usize;
        let bit = 63 - self.words[word_index].leading_zeros() as usize;
        Some(Priority::new((word_index * 64 + bit) as u8))
    }

    /// The task that should run next: the head of the highest non-empty priority.
    pub fn highest(&self) -> Option<(TaskId, Priority)> {
        let priority = self.highest_priority()?;
        let task = self.heads[usize::from(priority.level())]?;
        Some((task, priority))
    }

    /// Takes the task that should run next out of the queue.
    pub fn pop_highest(&mut self) -> Option<(TaskId, Priority)> {
        let priority = self.highest_priority()?;
        self.pop_head(priority).map(|task| (task, priority))
    }

    /// Takes the head of `priority`'s list out of the queue (the scheduler, which has just
    /// found that priority the highest, pops it without finding it again).
    pub fn pop_head(&mut self, priority: Priority) -> Option<TaskId> {
        let level = usize::from(priority.level());
        let task = self.heads[level]?;
        // The head of its list: unlinked without the general removal's cases.
        let after = self.next[task.index()].take();
        self.heads[level] = after;
        match after {
            Some(after) => self.previous[after.index()] = None,
            None => {
                self.tails[level] = None;
                self.clear_level(level);
            }
        }
        self.queued_at[task.index()] = None;
        self.len -= 1;
        Some(task)
    }

    /// The tasks queued at `priority`, in the order they will run.
    pub fn tasks_at(&self, priority: Priority) -> impl Iterator<Item = TaskId> + '_ {
        let mut cursor = self.heads[usize::from(priority.level())];
        core::iter::from_fn(move || {
            let task = cursor?;
            cursor = self.next[task.index()];
            Some(task)
        })
    }

    fn mark_level(&mut self, level: usize) {
        self.words[level / 64] |= 1 << (level % 64);
        self.summary |= 1 << (level / 64);
    }

    fn clear_level(&mut self, level: usize) {
        self.words[level / 64] &= !(1 << (level % 64));
        if self.words[level / 64] == 0 {
            self.summary &= !(1 << (level / 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn t(index: u16) -> TaskId {
        TaskId::new(index)
    }

    fn p(level: u8) -> Priority {
        Priority::new(level)
    }

    fn drain<const N: usize>(queue: &mut RunQueue<N>) -> Vec<(u16, u8)> {
        core::iter::from_fn(|| queue.pop_highest())
            .map(|(task, priority)| (task.0, priority.level()))
            .collect()
    }

    #[test]
    fn push_back_unqueued_queues_as_insert_at_the_tail_does() {
        let (p, q) = (Priority::new(7), Priority::new(200));
        let mut pushed = RunQueue::<8>::new();
        let mut inserted = RunQueue::<8>::new();
        for (task, priority) in [(t(3), p), (t(5), q), (t(1), p), (t(6), q)] {
            pushed.push_back_unqueued(task, priority);
            inserted
                .insert(task, priority, QueuePosition::Tail)
                .unwrap();
        }
        for queue in [&pushed, &inserted] {
            assert_eq!(queue.len(), 4);
            assert_eq!(queue.tasks_at(p).collect::<Vec<_>>(), [t(3), t(1)]);
            assert_eq!(queue.tasks_at(q).collect::<Vec<_>>(), [t(5), t(6)]);
        }
        let drained = |queue: &mut RunQueue<8>| {
            core::iter::from_fn(|| queue.pop_highest()).collect::<Vec<_>>()
        };
        assert_eq!(drained(&mut pushed), drained(&mut inserted));
        assert!(pushed.is_empty() && pushed.highest_priority().is_none());
    }

    #[test]
    fn pop_head_takes_the_head_of_any_priority_and_keeps_the_bitmap() {
        let (low, high) = (Priority::new(3), Priority::new(130));
        let mut queue = RunQueue::<8>::new();
        assert_eq!(queue.pop_head(low), None);
        for (task, priority) in [(t(1), low), (t(2), high), (t(4), low)] {
            queue.push_back_unqueued(task, priority);
        }
        // Not only the highest: a lower priority's head too.
        assert_eq!(queue.pop_head(low), Some(t(1)));
        assert_eq!(queue.queued_priority(t(1)), None);
        assert_eq!(queue.pop_head(high), Some(t(2)));
        assert_eq!(queue.pop_head(high), None);
        assert_eq!(queue.highest(), Some((t(4), low)));
        assert_eq!(queue.pop_head(low), Some(t(4)));
        assert!(queue.is_empty() && queue.highest_priority().is_none());
    }

    #[test]
    fn empty_queue_has_nothing() {
        let queue = RunQueue::<4>::new();
        assert!(queue.is_empty());
        assert_eq!(queue.highest(), None);
        assert_eq!(queue.highest_priority(), None);
    }

    #[test]
    fn highest_priority_first_across_bitmap_words() {
        let mut queue = RunQueue::<8>::new();
        for (task, level) in [
            (0, 3),
            (1, 200),
            (2, 64),
            (3, 63),
            (4, 255),
            (5, 0),
            (6, 128),
        ] {
            queue
                .insert(t(task), p(level), QueuePosition::Tail)
                .unwrap();
        }
        assert_eq!(queue.len(), 7);
        assert_eq!(
            drain(&mut queue),
            [
                (4, 255),
                (1, 200),
                (6, 128),
                (2, 64),
                (3, 63),
                (0, 3),
                (5, 0)
            ]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn fifo_within_priority_and_head_insertion() {
        let mut queue = RunQueue::<8>::new();
        queue.insert(t(1), p(5), QueuePosition::Tail).unwrap();
        queue.insert(t(2), p(5), QueuePosition::Tail).unwrap();
        queue.insert(t(3), p(5), QueuePosition::Head).unwrap();
        queue.insert(t(4), p(5), QueuePosition::Tail).unwrap();
        let order: Vec<u16> = queue.tasks_at(p(5)).map(|task| task.0).collect();
        assert_eq!(order, [3, 1, 2, 4]);
        assert_eq!(drain(&mut queue), [(3, 5), (1, 5), (2, 5), (4, 5)]);
    }

    #[test]
    fn remove_from_middle_keeps_links() {
        let mut queue = RunQueue::<8>::new();
        for task in 0..5 {
            queue.insert(t(task), p(9), QueuePosition::Tail).unwrap();
        }
        assert_eq!(queue.remove(t(2)), Some(p(9)));
        assert_eq!(queue.remove(t(0)), Some(p(9)));
        assert_eq!(queue.remove(t(4)), Some(p(9)));
        assert_eq!(queue.remove(t(4)), None);
        assert_eq!(drain(&mut queue), [(1, 9), (3, 9)]);
        assert_eq!(queue.highest_priority(), None);
    }

    #[test]
    fn reinserting_moves_a_task() {
        let mut queue = RunQueue::<4>::new();
        queue.insert(t(0), p(1), QueuePosition::Tail).unwrap();
        queue.insert(t(1), p(1), QueuePosition::Tail).unwrap();
        queue.insert(t(0), p(7), QueuePosition::Tail).unwrap();
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.queued_priority(t(0)), Some(p(7)));
        assert_eq!(drain(&mut queue), [(0, 7), (1, 1)]);
    }

    #[test]
    fn out_of_range_task_is_refused() {
        let mut queue = RunQueue::<2>::new();
        assert_eq!(
            queue.insert(t(2), p(0), QueuePosition::Tail),
            Err(Error::NoSuchTask)
        );
        assert_eq!(queue.remove(t(9)), None);
    }
}
