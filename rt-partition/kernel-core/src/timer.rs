//! The per-core timer queue: absolute deadlines in nanoseconds, earliest first.
//!
//! The arch layer programs the core's TSC-deadline timer for [`TimerQueue::next_deadline`]
//! and, when it fires, drains [`TimerQueue::pop_expired`]. Timers with equal deadlines expire
//! in the order they were inserted. A timer never expires early: `pop_expired(now)` only
//! returns timers whose deadline is at or before `now`, so an interrupt that arrives before
//! its deadline (or a spurious one) expires nothing.
//!
//! The queue is a binary min-heap over fixed slots, so insert, cancel and pop are
//! O(log capacity) and nothing is allocated. Each timer is named by a [`TimerHandle`] that
//! carries a generation count, so cancelling a timer that already expired (or whose slot
//! was reused) is harmless. This module only orders deadlines: it never reads a clock and
//! never knows what a timer is for (that is the payload's business).

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

#[derive(Debug, Clone, Copy)]
struct TimerSlot<T> {
    deadline_ns: u64,
    /// Insertion order, to break ties between equal deadlines.
    sequence: u64,
    generation: u32,
    /// Where this slot sits in `heap` while armed.
    heap_position: u16,
    /// `Some` while armed.
    payload: Option<T>,
}

/// A fixed-capacity queue of up to `CAPACITY` timers, each carrying a `T`.
#[derive(Debug, Clone)]
pub struct TimerQueue<T, const CAPACITY: usize> {
    slots: [TimerSlot<T>; CAPACITY],
    /// Slot indices forming a binary min-heap ordered by (deadline, sequence).
    heap: [u16; CAPACITY],
    heap_len: usize,
    /// Stack of free slot indices.
    free: [u16; CAPACITY],
    free_len: usize,
    next_sequence: u64,
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
                CAPACITY <= u16::MAX as usize,
                "timer queue capacity too large"
            )
        };
        let mut free = [0u16; CAPACITY];
        let mut i = 0;
        while i < CAPACITY {
            // Lowest slot on top of the stack, so slots are used in index order.
            free[i] = (CAPACITY - 1 - i) as u16;
            i += 1;
        }
        Self {
            slots: [TimerSlot {
                deadline_ns: 0,
                sequence: 0,
                generation: 0,
                heap_position: 0,
                payload: None,
            }; CAPACITY],
            heap: [0; CAPACITY],
            heap_len: 0,
            free,
            free_len: CAPACITY,
            next_sequence: 0,
        }
    }

    /// Most timers the queue holds.
    pub const fn capacity(&self) -> usize {
        CAPACITY
    }

    /// Timers currently armed.
    pub fn len(&self) -> usize {
        self.heap_len
    }

    /// No timer is armed.
    pub fn is_empty(&self) -> bool {
        self.heap_len == 0
    }

    /// Arms a timer for the absolute time `deadline_ns`.
    pub fn insert(&mut self, deadline_ns: u64, payload: T) -> Result<TimerHandle, QueueFull> {
        if self.free_len == 0 {
            return Err(QueueFull);
        }
        self.free_len -= 1;
        let slot_index = self.free[self.free_len];
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let position = self.heap_len;
        let slot = &mut self.slots[usize::from(slot_index)];
        slot.deadline_ns = deadline_ns;
        slot.sequence = sequence;
        slot.payload = Some(payload);
        slot.heap_position = position as u16;
        let handle = TimerHandle {
            slot: slot_index,
            generation: slot.generation,
        };
        self.heap[position] = slot_index;
        self.heap_len += 1;
        self.sift_up(position);
        Ok(handle)
    }

    /// Disarms a timer and returns its payload; `None` if it already expired or was cancelled.
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        self.armed_slot(handle)?;
        let position = usize::from(self.slots[usize::from(handle.slot)].heap_position);
        Some(self.remove_at(position).payload)
    }

    /// The deadline of an armed timer.
    pub fn deadline_of(&self, handle: TimerHandle) -> Option<u64> {
        self.armed_slot(handle).map(|slot| slot.deadline_ns)
    }

    /// The earliest armed deadline: what the core's one-shot timer should be programmed for.
    pub fn next_deadline(&self) -> Option<u64> {
        (self.heap_len > 0).then(|| self.slots[usize::from(self.heap[0])].deadline_ns)
    }

    /// Removes and returns the earliest timer if its deadline is at or before `now_ns`.
    /// Call it in a loop until `None` to expire everything that is due.
    pub fn pop_expired(&mut self, now_ns: u64) -> Option<Expired<T>> {
        match self.next_deadline() {
            Some(deadline) if deadline <= now_ns => Some(self.remove_at(0)),
            _ => None,
        }
    }

    fn armed_slot(&self, handle: TimerHandle) -> Option<&TimerSlot<T>> {
        let slot = self.slots.get(usize::from(handle.slot))?;
        (slot.generation == handle.generation && slot.payload.is_some()).then_some(slot)
    }

    /// Takes the timer at heap position `position` out and frees its slot.
    fn remove_at(&mut self, position: usize) -> Expired<T> {
        let slot_index = self.heap[position];
        let last = self.heap_len - 1;
        self.swap_heap(position, last);
        self.heap_len -= 1;
        if position < self.heap_len {
            // The element moved into `position` may belong above or below it.
            let moved = usize::from(self.heap[position]);
            self.sift_up(position);
            if usize::from(self.slots[moved].heap_position) == position {
                self.sift_down(position);
            }
        }
        let slot = &mut self.slots[usize::from(slot_index)];
        let expired = Expired {
            deadline_ns: slot.deadline_ns,
            payload: slot
                .payload
                .take()
                .expect("every slot in the heap is armed"),
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.free[self.free_len] = slot_index;
        self.free_len += 1;
        expired
    }

    /// Heap order: earlier deadline first, then earlier insertion.
    fn earlier(&self, a: usize, b: usize) -> bool {
        let slot_a = &self.slots[usize::from(self.heap[a])];
        let slot_b = &self.slots[usize::from(self.heap[b])];
        (slot_a.deadline_ns, slot_a.sequence) < (slot_b.deadline_ns, slot_b.sequence)
    }

    fn swap_heap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[usize::from(self.heap[a])].heap_position = a as u16;
        self.slots[usize::from(self.heap[b])].heap_position = b as u16;
    }

    fn sift_up(&mut self, mut position: usize) {
        while position > 0 {
            let parent = (position - 1) / 2;
            if !self.earlier(position, parent) {
                break;
            }
            self.swap_heap(position, parent);
            position = parent;
        }
    }

    fn sift_down(&mut self, mut position: usize) {
        loop {
            let left = 2 * position + 1;
            let right = left + 1;
            let mut earliest = position;
            if left < self.heap_len && self.earlier(left, earliest) {
                earliest = left;
            }
            if right < self.heap_len && self.earlier(right, earliest) {
                earliest = right;
            }
            if earliest == position {
                break;
            }
            self.swap_heap(position, earliest);
            position = earliest;
        }
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
