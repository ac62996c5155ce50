//! Requests from one CPU to another: a bounded single-producer single-consumer queue of
//! 64-bit words, for a kernel whose cores never take each other's locks.
//!
//! Each ordered pair of cores has one mailbox. Its producer is the sending core (its kernel
//! entries and interrupt handlers run with interrupts off, so one of them at a time); its
//! consumer is the receiving core, which empties its mailboxes when the sender's IPI
//! arrives. Neither side ever waits: a full mailbox refuses the request, and the sender says
//! so to its caller. What a word means is the kernel's (see the image's `sched.rs`).
//!
//! The protocol is the classic one: the producer writes the slot, then publishes the tail
//! (release); the consumer loads the tail (acquire), reads the slot, then publishes the head
//! (release), which the producer loads (acquire) before it reuses a slot. Both indices only
//! grow (64 bits do not wrap). `tests/loom.rs` checks it under the loom model checker.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};

/// The mailbox had no free slot; nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Up to `SLOTS` words in flight from one core to another.
#[derive(Debug)]
pub struct Mailbox<const SLOTS: usize> {
    /// Words taken so far (the consumer's).
    head: AtomicU64,
    /// Words sent so far (the producer's).
    tail: AtomicU64,
    slots: [AtomicU64; SLOTS],
}

impl<const SLOTS: usize> Mailbox<SLOTS> {
    /// An empty mailbox (a `const fn`, for statics).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        const { assert!(SLOTS > 0, "a mailbox needs a slot") };
        Self {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            slots: [const { AtomicU64::new(0) }; SLOTS],
        }
    }

    /// An empty mailbox.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            slots: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Queues `word` (the producer only).
    pub fn send(&self, word: u64) -> Result<(), Full> {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= SLOTS as u64 {
            return Err(Full);
        }
        self.slots[(tail % SLOTS as u64) as usize].store(word, Ordering::Relaxed);
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Takes the oldest word (the consumer only).
    pub fn receive(&self) -> Option<u64> {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let word = self.slots[(head % SLOTS as u64) as usize].load(Ordering::Relaxed);
        self.head.store(head.wrapping_add(1), Ordering::Release);
        Some(word)
    }
}

#[cfg(not(loom))]
impl<const SLOTS: usize> Default for Mailbox<SLOTS> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn words_come_out_in_order_and_a_full_mailbox_refuses() {
        let m = Mailbox::<3>::new();
        assert_eq!(m.receive(), None);
        for w in [7, 8, 9] {
            assert_eq!(m.send(w), Ok(()));
        }
        assert_eq!(m.send(10), Err(Full));
        assert_eq!(m.receive(), Some(7));
        assert_eq!(m.send(10), Ok(()));
        assert_eq!(
            [m.receive(), m.receive(), m.receive(), m.receive()],
            [Some(8), Some(9), Some(10), None]
        );
        // Many times round the slots.
        for w in 0..1000u64 {
            assert_eq!(m.send(w), Ok(()));
            assert_eq!(m.receive(), Some(w));
        }
    }
}
