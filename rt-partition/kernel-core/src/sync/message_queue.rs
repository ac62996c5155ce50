//! Bounded message queues between tasks of the partition (`mq_send` / `mq_receive`
//! semantics): `SLOTS` messages of at most `SLOT_SIZE` bytes, received highest message
//! priority first and first in, first out within a priority.
//!
//! The storage is inside the queue value, sized by const generics, so each queue has its own
//! geometry and nothing is allocated. A blocked sender or receiver is woken with
//! [`WakeReason::Retry`] when a slot or a message appears and repeats its call with the same
//! absolute [`Timeout`]; if another task took the slot or message first, it blocks again.
//! Only one waiter is woken per message or slot. The non-kernel half
//! ([`MessageQueue::try_send`] / [`MessageQueue::try_receive`]) never blocks and is usable
//! on its own (for example by an interrupt handler holding the kernel lock).
//!
//! These queues stay inside the RT partition; the channels to Linux are a different crate.

use super::Timeout;
use crate::{BlockReason, CoreId, Error, Kernel, Resched, WakeReason};

/// Names a message queue within its kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueId(u32);

/// A received message's size and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written to the start of the buffer.
    pub len: usize,
    /// The priority it was sent with.
    pub priority: u32,
}

/// Result of a queue send that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the cores in the set must reschedule"]
pub enum SendOutcome {
    /// The message is queued; a waiting receiver may have been woken.
    Sent(Resched),
    /// The queue was full and the caller is blocked; its core must reschedule.
    Blocked(Resched),
}

/// Result of a queue receive that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the cores in the set must reschedule"]
pub enum ReceiveOutcome {
    /// A message was copied out; a waiting sender may have been woken.
    Received {
        /// The message's size and priority.
        message: Received,
        /// Cores that must reschedule.
        resched: Resched,
    },
    /// The queue was empty and the caller is blocked; its core must reschedule.
    Blocked(Resched),
}

/// A queue of up to `SLOTS` messages of up to `SLOT_SIZE` bytes. Created by
/// [`Kernel::create_message_queue`].
#[derive(Debug, Clone)]
pub struct MessageQueue<const SLOT_SIZE: usize, const SLOTS: usize> {
    id: QueueId,
    data: [[u8; SLOT_SIZE]; SLOTS],
    lengths: [usize; SLOTS],
    priorities: [u32; SLOTS],
    /// Send order, for first in, first out within a priority.
    sequences: [u64; SLOTS],
    occupied: [bool; SLOTS],
    len: usize,
    next_sequence: u64,
}

impl<const SLOT_SIZE: usize, const SLOTS: usize> MessageQueue<SLOT_SIZE, SLOTS> {
    const fn new(id: QueueId) -> Self {
        const {
            assert!(
                SLOTS > 0 && SLOT_SIZE > 0,
                "a queue needs slots of some size"
            )
        };
        Self {
            id,
            data: [[0; SLOT_SIZE]; SLOTS],
            lengths: [0; SLOTS],
            priorities: [0; SLOTS],
            sequences: [0; SLOTS],
            occupied: [false; SLOTS],
            len: 0,
            next_sequence: 0,
        }
    }

    /// Its id (what its waiters are blocked on).
    pub fn id(&self) -> QueueId {
        self.id
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No message is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every slot is taken.
    pub fn is_full(&self) -> bool {
        self.len == SLOTS
    }

    /// Most messages it holds (`mq_maxmsg`).
    pub const fn capacity(&self) -> usize {
        SLOTS
    }

    /// Largest message (`mq_msgsize`).
    pub const fn message_size(&self) -> usize {
        SLOT_SIZE
    }

    /// Queues a copy of `message` at `priority` without blocking: [`Error::MessageTooLong`]
    /// if it does not fit a slot, [`Error::WouldBlock`] if the queue is full.
    pub fn try_send(&mut self, message: &[u8], priority: u32) -> Result<(), Error> {
        if message.len() > SLOT_SIZE {
            return Err(Error::MessageTooLong);
        }
        let slot = self
            .occupied
            .iter()
            .position(|taken| !taken)
            .ok_or(Error::WouldBlock)?;
        self.data[slot][..message.len()].copy_from_slice(message);
        self.lengths[slot] = message.len();
        self.priorities[slot] = priority;
        self.sequences[slot] = self.next_sequence;
        self.next_sequence += 1;
        self.occupied[slot] = true;
        self.len += 1;
        Ok(())
    }

    /// Copies the next message (highest priority, oldest first) into `buffer` without
    /// blocking: [`Error::BufferTooSmall`] if `buffer` is shorter than the slot size (as
    /// POSIX requires, whatever the message's length), [`Error::WouldBlock`] if the queue is
    /// empty.
    pub fn try_receive(&mut self, buffer: &mut [u8]) -> Result<Received, Error> {
        if buffer.len() < SLOT_SIZE {
            return Err(Error::BufferTooSmall);
        }
        let mut next: Option<usize> = None;
        for slot in (0..SLOTS).filter(|&slot| self.occupied[slot]) {
            let better = match next {
                None => true,
                Some(best) => {
                    self.priorities[slot] > self.priorities[best]
                        || (self.priorities[slot] == self.priorities[best]
                            && self.sequences[slot] < self.sequences[best])
                }
            };
            if better {
                next = Some(slot);
            }
        }
        let slot = next.ok_or(Error::WouldBlock)?;
        let len = self.lengths[slot];
        buffer[..len].copy_from_slice(&self.data[slot][..len]);
        self.occupied[slot] = false;
        self.len -= 1;
        Ok(Received {
            len,
            priority: self.priorities[slot],
        })
    }
}

impl<const TASKS: usize, const CORES: usize> Kernel<TASKS, CORES> {
    /// A new, empty message queue. Meant for init; the queue is returned by value, so keep
    /// `SLOT_SIZE * SLOTS` within what the init stack can hold.
    pub fn create_message_queue<const SLOT_SIZE: usize, const SLOTS: usize>(
        &mut self,
    ) -> MessageQueue<SLOT_SIZE, SLOTS> {
        MessageQueue::new(QueueId(self.next_object_id()))
    }

    /// Sends `message` at `priority` for `core`'s current task, blocking while the queue is
    /// full unless `timeout` says otherwise (`mq_send`, `mq_timedsend`, `O_NONBLOCK`). Wakes
    /// the top waiting receiver with [`WakeReason::Retry`].
    pub fn queue_send<const SLOT_SIZE: usize, const SLOTS: usize>(
        &mut self,
        core: CoreId,
        queue: &mut MessageQueue<SLOT_SIZE, SLOTS>,
        message: &[u8],
        priority: u32,
        timeout: Timeout,
        now_ns: u64,
    ) -> Result<SendOutcome, Error> {
        self.core_index(core)?;
        match queue.try_send(message, priority) {
            Ok(()) => {
                let receivers = BlockReason::QueueReceive(queue.id);
                let woken = self.wake_top_waiter(receivers, WakeReason::Retry, now_ns);
                Ok(SendOutcome::Sent(woken.unwrap_or(Resched::NONE)))
            }
            Err(Error::WouldBlock) => {
                let senders = BlockReason::QueueSend(queue.id);
                self.block_calling_task(core, senders, timeout, now_ns)?;
                Ok(SendOutcome::Blocked(Resched::core(core)))
            }
            Err(error) => Err(error),
        }
    }

    /// Receives the next message into `buffer` for `core`'s current task, blocking while the
    /// queue is empty unless `timeout` says otherwise (`mq_receive`, `mq_timedreceive`,
    /// `O_NONBLOCK`). Wakes the top waiting sender with [`WakeReason::Retry`].
    pub fn queue_receive<const SLOT_SIZE: usize, const SLOTS: usize>(
        &mut self,
        core: CoreId,
        queue: &mut MessageQueue<SLOT_SIZE, SLOTS>,
        buffer: &mut [u8],
        timeout: Timeout,
        now_ns: u64,
    ) -> Result<ReceiveOutcome, Error> {
        self.core_index(core)?;
        match queue.try_receive(buffer) {
            Ok(message) => {
                let senders = BlockReason::QueueSend(queue.id);
                let woken = self.wake_top_waiter(senders, WakeReason::Retry, now_ns);
                let resched = woken.unwrap_or(Resched::NONE);
                Ok(ReceiveOutcome::Received { message, resched })
            }
            Err(Error::WouldBlock) => {
                let receivers = BlockReason::QueueReceive(queue.id);
                self.block_calling_task(core, receivers, timeout, now_ns)?;
                Ok(ReceiveOutcome::Blocked(Resched::core(core)))
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskState;
    use crate::testing::{core, running_task};

    type TestKernel = Kernel<8, 4>;

    #[test]
    fn priority_order_then_fifo() {
        let mut kernel = TestKernel::new();
        let mut queue = kernel.create_message_queue::<4, 8>();
        for (message, priority) in [(b"a", 1), (b"b", 5), (b"c", 1), (b"d", 5), (b"e", 3)] {
            queue.try_send(message, priority).unwrap();
        }
        let mut received = [0u8; 5];
        for slot in &mut received {
            let mut buffer = [0u8; 4];
            let message = queue.try_receive(&mut buffer).unwrap();
            assert_eq!(message.len, 1);
            *slot = buffer[0];
        }
        assert_eq!(&received, b"bdeac");
        assert!(queue.is_empty());
    }

    #[test]
    fn size_errors_and_full_empty() {
        let mut kernel = TestKernel::new();
        let mut queue = kernel.create_message_queue::<4, 1>();
        assert_eq!(queue.message_size(), 4);
        assert_eq!(queue.capacity(), 1);
        assert_eq!(queue.try_send(b"12345", 0), Err(Error::MessageTooLong));
        let mut small = [0u8; 3];
        assert_eq!(queue.try_receive(&mut small), Err(Error::BufferTooSmall));
        let mut buffer = [0u8; 4];
        assert_eq!(queue.try_receive(&mut buffer), Err(Error::WouldBlock));
        queue.try_send(b"", 9).unwrap();
        assert!(queue.is_full());
        assert_eq!(queue.try_send(b"x", 0), Err(Error::WouldBlock));
        assert_eq!(
            queue.try_receive(&mut buffer),
            Ok(Received {
                len: 0,
                priority: 9
            })
        );
    }

    #[test]
    fn blocked_receiver_is_woken_to_retry() {
        let mut kernel = TestKernel::new();
        let receiver = running_task(&mut kernel, 0, 5);
        let _sender = running_task(&mut kernel, 1, 2);
        let mut queue = kernel.create_message_queue::<8, 2>();
        let mut buffer = [0u8; 8];
        assert_eq!(
            kernel.queue_receive(core(0), &mut queue, &mut buffer, Timeout::NonBlocking, 0),
            Err(Error::WouldBlock)
        );
        assert_eq!(
            kernel.queue_receive(core(0), &mut queue, &mut buffer, Timeout::Forever, 0),
            Ok(ReceiveOutcome::Blocked(Resched::core(core(0))))
        );
        let _ = kernel.schedule(core(0), 0).unwrap();
        assert_eq!(
            kernel.queue_send(core(1), &mut queue, b"hello", 3, Timeout::Forever, 5),
            Ok(SendOutcome::Sent(Resched::core(core(0))))
        );
        let _ = kernel.schedule(core(0), 6).unwrap();
        assert_eq!(
            kernel.take_wake_reason(receiver),
            Ok(Some(WakeReason::Retry))
        );
        let outcome = kernel.queue_receive(core(0), &mut queue, &mut buffer, Timeout::Forever, 6);
        assert_eq!(
            outcome,
            Ok(ReceiveOutcome::Received {
                message: Received {
                    len: 5,
                    priority: 3
                },
                resched: Resched::NONE
            })
        );
        assert_eq!(&buffer[..5], b"hello");
    }

    #[test]
    fn blocked_sender_is_woken_and_times_out() {
        let mut kernel = TestKernel::new();
        let _receiver = running_task(&mut kernel, 0, 5);
        let sender = running_task(&mut kernel, 1, 2);
        let mut queue = kernel.create_message_queue::<8, 1>();
        let _ = kernel
            .queue_send(core(1), &mut queue, b"1", 0, Timeout::Forever, 0)
            .unwrap();
        assert_eq!(
            kernel.queue_send(core(1), &mut queue, b"2", 0, Timeout::NonBlocking, 0),
            Err(Error::WouldBlock)
        );
        assert_eq!(
            kernel.queue_send(core(1), &mut queue, b"2", 0, Timeout::Until(100), 1),
            Ok(SendOutcome::Blocked(Resched::core(core(1))))
        );
        let _ = kernel.schedule(core(1), 1).unwrap();
        let mut buffer = [0u8; 8];
        let outcome = kernel
            .queue_receive(core(0), &mut queue, &mut buffer, Timeout::Forever, 2)
            .unwrap();
        assert!(matches!(
            outcome,
            ReceiveOutcome::Received { resched, .. } if resched.contains(core(1))
        ));
        assert_eq!(kernel.task_state(sender), Ok(TaskState::Ready));
        assert_eq!(kernel.take_wake_reason(sender), Ok(Some(WakeReason::Retry)));
        let _ = kernel.schedule(core(1), 3).unwrap();
        // Retry succeeds; then a full queue and a deadline that passes.
        let _ = kernel
            .queue_send(core(1), &mut queue, b"2", 0, Timeout::Until(100), 3)
            .unwrap();
        let _ = kernel
            .queue_send(core(1), &mut queue, b"3", 0, Timeout::Until(100), 4)
            .unwrap();
        let _ = kernel.schedule(core(1), 4).unwrap();
        assert_eq!(kernel.next_event(core(1)), Ok(Some(100)));
        let _ = kernel.expire_timers(core(1), 100).unwrap();
        assert_eq!(
            kernel.take_wake_reason(sender),
            Ok(Some(WakeReason::Timeout))
        );
        assert_eq!(
            kernel.queue_send(core(1), &mut queue, b"3", 0, Timeout::Until(100), 101),
            Err(Error::TimedOut)
        );
    }
}
