//! Random sequences of operations on both endpoints against a plain model: a `VecDeque` for the
//! FIFO ring, a priority-ordered list for the message queue, and two flags for the doorbells.

use std::collections::VecDeque;

use bulkhead_ring::mq::{Attr, Receiver, Sender};
use bulkhead_ring::{Armed, HEADER_SIZE, HeapRegion, Notify, Ring, RingError};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Send { len: usize, priority: u8 },
    Receive { capacity: usize },
    ArmConsumer,
    ArmProducer,
    DisarmConsumer,
    DisarmProducer,
    Attr,
}

fn op(max_len: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..=max_len + 2, 0u8..4).prop_map(|(len, priority)| Op::Send { len, priority }),
        // A few big priorities too, across the bitmap's words.
        1 => (0..=max_len, any::<u8>()).prop_map(|(len, priority)| Op::Send { len, priority }),
        6 => (0..=max_len + 2).prop_map(|capacity| Op::Receive { capacity }),
        1 => Just(Op::ArmConsumer),
        1 => Just(Op::ArmProducer),
        1 => Just(Op::DisarmConsumer),
        1 => Just(Op::DisarmProducer),
        1 => Just(Op::Attr),
    ]
}

/// A ring shape and a sequence of operations on it.
fn case() -> impl Strategy<Value = (u32, usize, Vec<Op>)> {
    (4u32..=8, 2usize..=9).prop_flat_map(|(log, slots)| {
        let slot_size = 1u32 << log;
        let max_len = slot_size as usize - 8;
        (
            Just(slot_size),
            Just(slots),
            prop::collection::vec(op(max_len), 0..400),
        )
    })
}

/// Distinct contents for the `n`th message.
fn message(n: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (n as usize * 31 + i * 7) as u8).collect()
}

/// What the model expects and what it tracks.
#[derive(Default)]
struct Model {
    /// Messages in the ring: (priority, contents), oldest first.
    queue: VecDeque<(u8, Vec<u8>)>,
    consumer_armed: bool,
    producer_armed: bool,
    sent: u32,
}

impl Model {
    fn doorbell(flag: &mut bool) -> Notify {
        if std::mem::take(flag) {
            Notify::Doorbell
        } else {
            Notify::Suppressed
        }
    }

    /// Position of the message the receiver must return next.
    fn next(&self, priority_order: bool) -> Option<usize> {
        if !priority_order {
            return (!self.queue.is_empty()).then_some(0);
        }
        let top = self.queue.iter().map(|(p, _)| *p).max()?;
        self.queue.iter().position(|(p, _)| *p == top)
    }
}

/// The two endpoints under test, in FIFO or priority flavour.
#[allow(
    clippy::large_enum_variant,
    reason = "one value per test case, on the stack"
)]
enum Ends<'a> {
    Fifo(bulkhead_ring::Producer<'a>, bulkhead_ring::Consumer<'a>),
    Mq(Sender<'a>, Receiver<'a>),
}

impl Ends<'_> {
    fn send(&mut self, msg: &[u8], priority: u8) -> Result<Notify, RingError> {
        match self {
            Self::Fifo(tx, _) => tx.try_send(msg, priority),
            Self::Mq(tx, _) => tx.try_send(msg, priority),
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<bulkhead_ring::Received, RingError> {
        match self {
            Self::Fifo(_, rx) => rx.try_receive(buf),
            Self::Mq(_, rx) => rx.try_receive(buf),
        }
    }

    fn arm_consumer(&mut self) -> Result<Armed, RingError> {
        match self {
            Self::Fifo(_, rx) => rx.arm_doorbell(),
            Self::Mq(_, rx) => rx.arm_doorbell(),
        }
    }

    fn arm_producer(&mut self) -> Result<Armed, RingError> {
        match self {
            Self::Fifo(tx, _) => tx.arm_doorbell(),
            Self::Mq(tx, _) => tx.arm_doorbell(),
        }
    }

    fn disarm_consumer(&self) {
        match self {
            Self::Fifo(_, rx) => rx.disarm_doorbell(),
            Self::Mq(_, rx) => rx.disarm_doorbell(),
        }
    }

    fn disarm_producer(&self) {
        match self {
            Self::Fifo(tx, _) => tx.disarm_doorbell(),
            Self::Mq(tx, _) => tx.disarm_doorbell(),
        }
    }

    /// (messages seen by the producer, messages seen by the consumer).
    fn counts(&mut self) -> (u32, u32) {
        match self {
            Self::Fifo(tx, rx) => (tx.in_ring().unwrap(), rx.pending().unwrap()),
            Self::Mq(tx, rx) => {
                let (a, b) = (tx.attr().unwrap(), rx.attr().unwrap());
                assert_eq!(
                    a,
                    Attr {
                        current: a.current,
                        ..b
                    }
                );
                (a.current, b.current)
            }
        }
    }
}

fn run(
    slot_size: u32,
    slots: usize,
    ops: &[Op],
    priority_order: bool,
) -> Result<(), TestCaseError> {
    let heap = HeapRegion::new(HEADER_SIZE + slots * slot_size as usize);
    let (tx, rx) = Ring::init(heap.region().unwrap(), slot_size)
        .unwrap()
        .split();
    let mut ends = if priority_order {
        Ends::Mq(Sender::new(tx), Receiver::new(rx))
    } else {
        Ends::Fifo(tx, rx)
    };
    let max = slot_size as usize - 8;
    let mut model = Model::default();
    let mut buf = vec![0u8; max + 8];
    for op in ops {
        match *op {
            Op::Send { len, priority } => {
                let msg = message(model.sent, len);
                let want = if len > max {
                    Err(RingError::MessageTooLong { len, max })
                } else if model.queue.len() == slots {
                    Err(RingError::WouldBlock)
                } else {
                    model.sent += 1;
                    model.queue.push_back((priority, msg.clone()));
                    Ok(Model::doorbell(&mut model.consumer_armed))
                };
                prop_assert_eq!(ends.send(&msg, priority), want);
            }
            Op::Receive { capacity } => {
                let got = ends.receive(&mut buf[..capacity]);
                match model.next(priority_order) {
                    None => prop_assert_eq!(got, Err(RingError::WouldBlock)),
                    Some(at) if model.queue[at].1.len() > capacity => prop_assert_eq!(
                        got,
                        Err(RingError::BufferTooSmall {
                            len: model.queue[at].1.len(),
                            capacity
                        })
                    ),
                    Some(at) => {
                        let (priority, msg) = model.queue.remove(at).unwrap();
                        let got = got.unwrap();
                        prop_assert_eq!(got.priority, priority);
                        prop_assert_eq!(&buf[..got.len], &msg[..]);
                        prop_assert_eq!(got.notify, Model::doorbell(&mut model.producer_armed));
                    }
                }
            }
            Op::ArmConsumer => {
                let empty = model.queue.is_empty();
                model.consumer_armed = empty;
                let want = if empty { Armed::Sleep } else { Armed::Ready };
                prop_assert_eq!(ends.arm_consumer(), Ok(want));
            }
            Op::ArmProducer => {
                let full = model.queue.len() == slots;
                model.producer_armed = full;
                let want = if full { Armed::Sleep } else { Armed::Ready };
                prop_assert_eq!(ends.arm_producer(), Ok(want));
            }
            Op::DisarmConsumer => {
                model.consumer_armed = false;
                ends.disarm_consumer();
            }
            Op::DisarmProducer => {
                model.producer_armed = false;
                ends.disarm_producer();
            }
            Op::Attr => {
                let n = model.queue.len() as u32;
                prop_assert_eq!(ends.counts(), (n, n));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The FIFO endpoints behave like a bounded `VecDeque`, with one doorbell per arming.
    #[test]
    fn fifo_ring_matches_model((slot_size, slots, ops) in case()) {
        run(slot_size, slots, &ops, false)?;
    }

    /// The message queue returns the highest priority first, FIFO within a priority.
    #[test]
    fn mq_matches_priority_model((slot_size, slots, ops) in case()) {
        run(slot_size, slots, &ops, true)?;
    }
}
