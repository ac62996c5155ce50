//! The per-core timer queue: absolute deadlines in nanoseconds, earliest first.
//!
//! The arch layer programs the core's TSC-deadline timer for [`TimerQueue::next_deadline`]
//! and, when it fires, drains [`TimerQueue::pop_expired`]. Timers with equal deadlines expire
//! in the order they were inserted. A timer never expires early: `pop_expired(now)` only
//! returns timers whose deadline is at or before `now`, so an interrupt that arrives before
//! its deadline (or a spurious one) expires nothing.
//!
//! The queue is a list over fixed slots kept sorted by deadline, linked both ways: the
//! timer interrupt's work (look at the head, unlink it) and cancelling are O(1), and the
//! sorting is paid by whoever arms a timer, walking from the latest deadline backwards
//! (a periodic task's next release is usually the latest, so the walk is short) — at most
//! `CAPACITY` steps, which is small (a core's task table). That puts the cost on the task
//! going to sleep, not on the wake-up path of the task that is due. Nothing is allocated.
//! Each timer is named by a [`TimerHandle`] that carries a generation count, so cancelling a
//! timer that already expired (or whose slot was reused) is harmless. This module only
//! orders deadlines: it never reads a clock and never knows what a timer is for (that is
//! the payload's business).

/// Names one inserted timer. Stale handles (timer expired or cancelled) are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    slot: u16,
    generation: u32,
}

/// A timer taken out of the queue by [`TimerQueue::pop_expired`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired<T> {
    /// The deadline it was set for (at or before the `now` it was popped with).
    pub deadline_ns: u64,
    /// What was stored with it.
    pub payload: T,
}

/// The queue has no free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// "No slot" in the links.
const NONE: u16 = u16::MAX;

#[derive(Debug, Clone, Copy)]
struct TimerSlot<T> {
    deadline_ns: u64,
    generation: u32,
    /// The slot with the next later (or equal, inserted later) deadline; for a free slot,
    /// the next free slot.
    next: u16,
    /// The slot with the next earlier deadline.
    previous: u16,
    /// `Some` while armed.
    payload: Option<T>,
}

/// A fixed-capacity queue of up to `CAPACITY` timers, each carrying a `T`.
#[derive(Debug, Clone)]
pub struct TimerQueue<T, const CAPACITY: usize> {
    slots: [TimerSlot<T>; CAPACITY],
    /// Earliest and latest armed slots.
    head: u16,
    tail: u16,
    /// First free slot (free slots are chained through `next`).
    free: u16,
    len: usize,
}

impl<T: Copy, const CAPACITY: usize> Default for TimerQueue<T, CAPACITY> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy, const CAPACITY: usize> TimerQueue<T, CAPACITY> {
    /// An empty queue.
    pub const fn new() -> Self {
        const {
            assert!(
                CAPACITY < NONE as usize,
                "timer queue capacity too large"
            )
        };
        let mut slots = [TimerSlot {
            deadline_ns: 0,
            generation: 0,
            next: NONE,
            previous: NONE,
            payload: None,
        }; CAPACITY];
        // Free slots chained in index order, so slots are used lowest first.
        let mut i = 0;
        while i + 1 < CAPACITY {
            slots[i].next = (i + 1) as u16;
            i += 1;
        }
        Self {
            slots,
            head: NONE,
            tail: NONE,
            free: if CAPACITY == 0 { NONE } else { 0 },
            len: 0,
        }
    }

    /// Most timers the queue holds.
    pub const fn capacity(&self) -> usize {
        CAPACITY
    }

    /// Timers currently armed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arms a timer for the absolute time `deadline_ns`, after every armed timer whose
    /// deadline is not later.
    pub fn insert(&mut self, deadline_ns: u64, payload: T) -> Result<TimerHandle, QueueFull> {
        let Some(slot) = self.slots.get(usize::from(self.free)) else {
            return Err(QueueFull);
        };
        let index = self.free;
        self.free = slot.next;
        // The armed timer this one goes after: walk back from the latest.
        let mut before = self.tail;
        while let Some(earlier) = self.slots.get(usize::from(before))
            && earlier.deadline_ns > deadline_ns
        {
            before = earlier.previous;
        }
        let after = match self.slots.get(usize::from(before)) {
            Some(slot) => slot.next,
            None => self.head,
        };
        let slot = &mut self.slots[usize::from(index)];
        slot.deadline_ns = deadline_ns;
        slot.payload = Some(payload);
        slot.previous = before;
        slot.next = after;
        let handle = TimerHandle {
            slot: index,
            generation: slot.generation,
        };
        self.link(before, index, after);
        self.len += 1;
        Ok(handle)
    }

    /// Disarms a timer and returns its payload; `None` if it already expired or was cancelled.
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        self.armed_slot(handle)?;
        Some(self.remove(handle.slot).payload)
    }

    /// The deadline of an armed timer.
    pub fn deadline_of(&self, handle: TimerHandle) -> Option<u64> {
        self.armed_slot(handle).map(|slot| slot.deadline_ns)
    }

    /// The earliest armed deadline: what the core's one-shot timer should be programmed for.
    pub fn next_deadline(&self) -> Option<u64> {
        self.slots.get(usize::from(self.head)).map(|slot| slot.deadline_ns)
    }

    /// Removes and returns the earliest timer if its deadline is at or before `now_ns`.
    /// Call it in a loop until `None` to expire everything that is due.
    pub fn pop_expired(&mut self, now_ns: u64) -> Option<Expired<T>> {
        match self.next_deadline() {
            Some(deadline) if deadline <= now_ns => Some(self.remove(self.head)),
            _ => None,
        }
    }

    fn armed_slot(&self, handle: TimerHandle) -> Option<&TimerSlot<T>> {
        let slot = self.slots.get(usize::from(handle.slot))?;
        (slot.generation == handle.generation && slot.payload.is_some()).then_some(slot)
    }

    /// Makes `index` the neighbour of `before` and `after` (either `NONE` at an end).
    fn link(&mut self, before: u16, index: u16, after: u16) {
        match self.slots.get_mut(usize::from(before)) {
            Some(slot) => slot.next = index,
            None => self.head = index,
        }
        match self.slots.get_mut(usize::from(after)) {
            Some(slot) => slot.previous = index,
            None => self.tail = index,
        }
    }

    /// Takes the armed timer in slot `index` out of the list and frees its slot.
    fn remove(&mut self, index: u16) -> Expired<T> {
        let slot = &mut self.slots[usize::from(index)];
        let (before, after) = (slot.previous, slot.next);
        let expired = Expired {
            deadline_ns: slot.deadline_ns,
            payload: slot
                .payload
                .take()
                .expect("every slot in the list is armed"),
        };
        slot.generation = slot.generation.wrapping_add(1);
        slot.next = self.free;
        slot.previous = NONE;
        self.free = index;
        match self.slots.get_mut(usize::from(before)) {
            Some(slot) => slot.next = after,
            None => self.head = after,
        }
        match self.slots.get_mut(usize::from(after)) {
            Some(slot) => slot.previous = before,
            None => self.tail = before,
        }
        self.len -= 1;
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn drain<const N: usize>(queue: &mut TimerQueue<u32, N>, now: u64) -> Vec<u32> {
        let mut fired = Vec::new();
        while let Some(expired) = queue.pop_expired(now) {
            assert!(expired.deadline_ns <= now);
            fired.push(expired.payload);
        }
        fired
    }

    #[test]
    fn expires_in_deadline_order() {
        let mut queue = TimerQueue::<u32, 8>::new();
        for (deadline, payload) in [(50, 5), (10, 1), (30, 3), (20, 2), (40, 4)] {
            queue.insert(deadline, payload).unwrap();
        }
        assert_eq!(queue.next_deadline(), Some(10));
        assert_eq!(drain(&mut queue, 35), [1, 2, 3]);
        assert_eq!(queue.next_deadline(), Some(40));
        assert_eq!(drain(&mut queue, 100), [4, 5]);
        assert!(queue.is_empty());
        assert_eq!(queue.next_deadline(), None);
    }

    #[test]
    fn never_fires_early() {
        let mut queue = TimerQueue::<u32, 4>::new();
        queue.insert(1_000, 7).unwrap();
        assert_eq!(queue.pop_expired(999), None);
        assert_eq!(
            queue.pop_expired(1_000),
            Some(Expired {
                deadline_ns: 1_000,
                payload: 7
            })
        );
    }

    #[test]
    fn equal_deadlines_expire_in_insertion_order() {
        let mut queue = TimerQueue::<u32, 8>::new();
        for payload in 0..8 {
            queue.insert(100, payload).unwrap();
        }
        assert_eq!(drain(&mut queue, 100), [0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn cancel_removes_and_stale_handles_are_harmless() {
        let mut queue = TimerQueue::<u32, 4>::new();
        let a = queue.insert(10, 1).unwrap();
        let b = queue.insert(20, 2).unwrap();
        let c = queue.insert(30, 3).unwrap();
        assert_eq!(queue.cancel(b), Some(2));
        assert_eq!(queue.cancel(b), None);
        assert_eq!(queue.deadline_of(c), Some(30));
        assert_eq!(drain(&mut queue, 10), [1]);
        assert_eq!(queue.cancel(a), None, "already expired");
        // Slot of `a` is reused: the old handle must not cancel the new timer.
        let d = queue.insert(5, 4).unwrap();
        assert_eq!(queue.cancel(a), None);
        assert_eq!(drain(&mut queue, 100), [4, 3]);
        assert_eq!(queue.cancel(d), None);
    }

    #[test]
    fn full_queue_refuses() {
        let mut queue = TimerQueue::<u32, 2>::new();
        queue.insert(1, 1).unwrap();
        queue.insert(2, 2).unwrap();
        assert_eq!(queue.insert(3, 3), Err(QueueFull));
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.capacity(), 2);
    }
}
