//! Message-queue semantics on the ring (`mq_send`/`mq_receive`/`mq_getattr`, non-blocking):
//! message boundaries, a maximum message size, and priorities.
//!
//! Blocking, timeouts and the doorbell transport belong to the two sides' adapters (the RT
//! scheduler, the Linux futex/poll loop); this layer gives them [`Notify`] results and the
//! `arm_doorbell` hooks.
//!
//! # Priority order
//!
//! [`Receiver::try_receive`] returns the highest-priority message among all messages in the ring
//! when it is called, and the oldest among those of that priority. The design keeps the ring a
//! plain SPSC ring (the producer and the layout know nothing of priorities):
//!
//! - The receiver keeps, privately, a count of scanned messages per priority and a 256-bit map
//!   of the priorities present. On each call it scans the headers of messages that arrived since
//!   the last call (each header once), so it knows the top priority in O(1).
//! - If the oldest message has the top priority (the FIFO case, and every case when a single
//!   priority is used), it is taken as from a FIFO ring.
//! - Otherwise the receiver finds the oldest message of the top priority, copies it out, and
//!   closes the gap by moving each older message one slot forward (the slots between the consumer
//!   index and the producer index belong to the consumer), then advances the consumer index by
//!   one. The messages left keep their order, and every receive frees exactly one slot, so the
//!   producer sees an exact count.
//!
//! The cost of an out-of-order receive is one move of each older message (only its used
//! bytes); it is bounded by the ring's size and is zero when priorities are not used.
//!
//! A producer that rewrites published slots can at worst reorder or alter its own messages;
//! counts that stop matching the slots stop the channel with
//! [`Corruption::SlotChanged`].

use crate::error::{Corruption, RingError};
use crate::layout::PRIORITIES;
use crate::ring::{Armed, Consumer, Notify, Producer, Received};

/// Queue attributes (`mq_getattr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Most messages the queue holds (`mq_maxmsg`): the slot count.
    pub max_messages: u32,
    /// Largest message in bytes (`mq_msgsize`).
    pub message_size: usize,
    /// Messages in the queue now (`mq_curmsgs`).
    pub current: u32,
}

/// The sending end of a message queue.
#[derive(Debug)]
pub struct Sender<'a> {
    producer: Producer<'a>,
}

impl<'a> Sender<'a> {
    /// A message-queue sender on a ring producer.
    pub fn new(producer: Producer<'a>) -> Self {
        Self { producer }
    }

    /// Sends `msg` with `priority` (higher is more urgent) without blocking (`mq_send` on an
    /// `O_NONBLOCK` queue): [`RingError::WouldBlock`] when full, [`RingError::MessageTooLong`]
    /// when `msg` is longer than [`Attr::message_size`].
    pub fn try_send(&mut self, msg: &[u8], priority: u8) -> Result<Notify, RingError> {
        self.producer.try_send(msg, priority)
    }

    /// The queue's attributes, with the current count loaded afresh.
    pub fn attr(&mut self) -> Result<Attr, RingError> {
        let current = self.producer.in_ring()?;
        let geometry = self.producer.geometry();
        Ok(Attr {
            max_messages: geometry.slot_count(),
            message_size: geometry.max_message(),
            current,
        })
    }

    /// See [`Producer::arm_doorbell`].
    pub fn arm_doorbell(&mut self) -> Result<Armed, RingError> {
        self.producer.arm_doorbell()
    }

    /// See [`Producer::disarm_doorbell`].
    pub fn disarm_doorbell(&self) {
        self.producer.disarm_doorbell();
    }

    /// See [`Producer::reinit_requested`].
    pub fn reinit_requested(&self) -> bool {
        self.producer.reinit_requested()
    }

    /// Initializes the channel again, empty (see [`Producer::reinit`]).
    pub fn reinit(&mut self) -> Result<(), RingError> {
        self.producer.reinit()
    }

    /// The ring producer underneath.
    pub fn into_inner(self) -> Producer<'a> {
        self.producer
    }
}

/// The receiving end of a message queue: highest priority first, FIFO within a priority.
#[derive(Debug)]
pub struct Receiver<'a> {
    consumer: Consumer<'a>,
    /// Messages before this index have been scanned into `counts`.
    scanned: u64,
    /// Scanned, not yet received messages per priority.
    counts: [u32; PRIORITIES],
    /// Bit `p` set: `counts[p] != 0`.
    present: [u64; PRIORITIES / 64],
}

impl<'a> Receiver<'a> {
    /// A message-queue receiver on a ring consumer.
    pub fn new(consumer: Consumer<'a>) -> Self {
        let scanned = consumer.head();
        Self {
            consumer,
            scanned,
            counts: [0; PRIORITIES],
            present: [0; PRIORITIES / 64],
        }
    }

    /// Receives the highest-priority, oldest message into `buf` without blocking (`mq_receive`
    /// on an `O_NONBLOCK` queue): [`RingError::WouldBlock`] when empty,
    /// [`RingError::BufferTooSmall`] (consuming nothing) when the message is longer than `buf`.
    pub fn try_receive(&mut self, buf: &mut [u8]) -> Result<Received, RingError> {
        self.consumer.check()?;
        let producer = self.consumer.poll()?;
        self.scan(producer)?;
        let head = self.consumer.head();
        if producer == head {
            return Err(RingError::WouldBlock);
        }
        let Some(top) = self.top_priority() else {
            return Err(self.consumer.fail(Corruption::SlotChanged));
        };
        let mut index = head;
        let header = loop {
            let header = self.consumer.header_at(index)?;
            if header.priority == top {
                break header;
            }
            index = index.wrapping_add(1);
            if index == producer {
                return Err(self.consumer.fail(Corruption::SlotChanged));
            }
        };
        let len = self.consumer.check_len(header)?;
        let capacity = buf.len();
        let dst = buf
            .get_mut(..len)
            .ok_or(RingError::BufferTooSmall { len, capacity })?;
        self.consumer.read_at(index, dst)?;
        let mut to = index;
        while to != head {
            let from = to.wrapping_sub(1);
            self.consumer.move_message(from, to)?;
            to = from;
        }
        self.uncount(top)?;
        let notify = self.consumer.release_one();
        Ok(Received {
            len,
            priority: top,
            notify,
        })
    }

    /// The queue's attributes, with the current count loaded afresh.
    pub fn attr(&mut self) -> Result<Attr, RingError> {
        let current = self.consumer.pending()?;
        let geometry = self.consumer.geometry();
        Ok(Attr {
            max_messages: geometry.slot_count(),
            message_size: geometry.max_message(),
            current,
        })
    }

    /// See [`Consumer::arm_doorbell`].
    pub fn arm_doorbell(&mut self) -> Result<Armed, RingError> {
        self.consumer.arm_doorbell()
    }

    /// See [`Consumer::disarm_doorbell`].
    pub fn disarm_doorbell(&self) {
        self.consumer.disarm_doorbell();
    }

    /// See [`Consumer::reinit_requested`].
    pub fn reinit_requested(&self) -> bool {
        self.consumer.reinit_requested()
    }

    /// Initializes the channel again, empty (see [`Consumer::reinit`]), and forgets what it
    /// had scanned.
    pub fn reinit(&mut self) -> Result<(), RingError> {
        self.consumer.reinit()?;
        self.scanned = self.consumer.head();
        self.counts = [0; PRIORITIES];
        self.present = [0; PRIORITIES / 64];
        Ok(())
    }

    /// The error that stopped this endpoint, if any.
    pub fn failure(&self) -> Option<RingError> {
        self.consumer.failure()
    }

    /// Counts the headers of messages `scanned..producer`, checking each.
    fn scan(&mut self, producer: u64) -> Result<(), RingError> {
        while self.scanned != producer {
            let header = self.consumer.header_at(self.scanned)?;
            if header.seq != self.scanned as u16 {
                return Err(self.consumer.fail(Corruption::SlotSequence));
            }
            self.consumer.check_len(header)?;
            let priority = usize::from(header.priority);
            if let Some(count) = self.counts.get_mut(priority) {
                // At most `slot_count` messages are counted at once.
                *count = count.saturating_add(1);
            }
            if let Some(bits) = self.present.get_mut(priority / 64) {
                *bits |= 1 << (priority % 64);
            }
            self.scanned = self.scanned.wrapping_add(1);
        }
        Ok(())
    }

    /// The highest priority with a scanned message.
    fn top_priority(&self) -> Option<u8> {
        let (word, bits) = self
            .present
            .iter()
            .enumerate()
            .rev()
            .find(|(_, bits)| **bits != 0)?;
        let bit = 63u32.saturating_sub(bits.leading_zeros()) as usize;
        u8::try_from(word.saturating_mul(64).saturating_add(bit)).ok()
    }

    /// Forgets one received message of `priority`.
    fn uncount(&mut self, priority: u8) -> Result<(), RingError> {
        let priority = usize::from(priority);
        let left = self.counts.get_mut(priority).and_then(|count| {
            *count = count.checked_sub(1)?;
            Some(*count)
        });
        match left {
            None => Err(self.consumer.fail(Corruption::SlotChanged)),
            Some(0) => {
                if let Some(bits) = self.present.get_mut(priority / 64) {
                    *bits &= !(1 << (priority % 64));
                }
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::{HeapRegion, Ring};

    fn queue(heap: &HeapRegion, slot_size: u32) -> (Sender<'_>, Receiver<'_>) {
        let (tx, rx) = Ring::init(heap.region().unwrap(), slot_size)
            .unwrap()
            .split();
        (Sender::new(tx), Receiver::new(rx))
    }

    fn drain(rx: &mut Receiver<'_>) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match rx.try_receive(&mut buf) {
                Ok(m) => out.push((m.priority, buf[..m.len].to_vec())),
                Err(RingError::WouldBlock) => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn highest_priority_first_fifo_within() {
        let heap = HeapRegion::new(4096 + 8 * 64);
        let (mut tx, mut rx) = queue(&heap, 64);
        for (msg, prio) in [
            (b"a1", 1),
            (b"b0", 0),
            (b"c5", 5),
            (b"d1", 1),
            (b"e5", 5),
            (b"f0", 0),
        ] {
            let _ = tx.try_send(msg, prio).unwrap();
        }
        assert_eq!(
            tx.attr(),
            Ok(Attr {
                max_messages: 8,
                message_size: 56,
                current: 6
            })
        );
        let got = drain(&mut rx);
        let want: Vec<(u8, Vec<u8>)> = [
            (5, b"c5"),
            (5, b"e5"),
            (1, b"a1"),
            (1, b"d1"),
            (0, b"b0"),
            (0, b"f0"),
        ]
        .into_iter()
        .map(|(p, m)| (p, m.to_vec()))
        .collect();
        assert_eq!(got, want);
        assert_eq!(rx.attr().unwrap().current, 0);
    }

    #[test]
    fn interleaved_sends_and_receives() {
        let heap = HeapRegion::new(4096 + 4 * 32);
        let (mut tx, mut rx) = queue(&heap, 32);
        let mut buf = [0u8; 24];
        let _ = tx.try_send(b"low", 1).unwrap();
        let _ = tx.try_send(b"high", 9).unwrap();
        let m = rx.try_receive(&mut buf).unwrap();
        assert_eq!((&buf[..m.len], m.priority), (&b"high"[..], 9));
        let _ = tx.try_send(b"mid", 4).unwrap();
        let _ = tx.try_send(b"mid2", 4).unwrap();
        let _ = tx.try_send(b"top", 200).unwrap();
        assert_eq!(tx.try_send(b"x", 0), Err(RingError::WouldBlock));
        let got: Vec<_> = drain(&mut rx).into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, [&b"top"[..], b"mid", b"mid2", b"low"]);
    }

    #[test]
    fn small_buffer_consumes_nothing() {
        let heap = HeapRegion::new(4096 + 4 * 64);
        let (mut tx, mut rx) = queue(&heap, 64);
        let _ = tx.try_send(b"short", 0).unwrap();
        let _ = tx.try_send(b"a longer message", 3).unwrap();
        let mut small = [0u8; 8];
        assert_eq!(
            rx.try_receive(&mut small),
            Err(RingError::BufferTooSmall {
                len: 16,
                capacity: 8
            })
        );
        let mut buf = [0u8; 56];
        assert_eq!(rx.try_receive(&mut buf).unwrap().priority, 3);
        assert_eq!(rx.try_receive(&mut small).unwrap().len, 5);
    }

    #[test]
    fn out_of_order_receive_frees_a_slot_and_wakes_the_producer() {
        let heap = HeapRegion::new(4096 + 2 * 64);
        let (mut tx, mut rx) = queue(&heap, 64);
        let _ = tx.try_send(b"low", 0).unwrap();
        let _ = tx.try_send(b"high", 1).unwrap();
        assert_eq!(tx.arm_doorbell(), Ok(Armed::Sleep));
        let m = rx.try_receive(&mut [0u8; 56]).unwrap();
        assert_eq!((m.priority, m.notify), (1, Notify::Doorbell));
        assert_eq!(tx.attr().unwrap().current, 1);
        let _ = tx.try_send(b"next", 0).unwrap();
        let got: Vec<_> = drain(&mut rx).into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, [&b"low"[..], b"next"]);
    }

    #[test]
    fn fifo_consumer_reads_an_mq_sender() {
        let heap = HeapRegion::new(4096 + 4 * 64);
        let (tx, mut rx) = Ring::init(heap.region().unwrap(), 64).unwrap().split();
        let mut tx = Sender::new(tx);
        let _ = tx.try_send(b"a", 7).unwrap();
        let _ = tx.try_send(b"b", 9).unwrap();
        let mut buf = [0u8; 56];
        assert_eq!(rx.try_receive(&mut buf).unwrap().priority, 7);
        assert_eq!(rx.try_receive(&mut buf).unwrap().priority, 9);
    }

    #[test]
    fn priority_bitmap() {
        let heap = HeapRegion::new(4096 + 300 * 16);
        let (mut tx, mut rx) = queue(&heap, 16);
        for p in [0u8, 63, 64, 127, 128, 255, 200, 1] {
            let _ = tx.try_send(&[p], p).unwrap();
        }
        let got: Vec<u8> = drain(&mut rx).into_iter().map(|(p, _)| p).collect();
        assert_eq!(got, [255, 200, 128, 127, 64, 63, 1, 0]);
        assert_eq!(rx.present, [0; 4]);
        assert_eq!(rx.counts, [0; PRIORITIES]);
    }
}
