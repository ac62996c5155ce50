//! The protocol under the loom model checker: every interleaving (and every weak-memory outcome
//! loom models) of a producer and a consumer on rings of 2 slots.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p bulkhead-ring --release --test loom`.
//! Besides the assertions here, loom checks that no slot is written while the other side may
//! still read it (each slot has a loom cell, see the crate's `shared` module), and reports a
//! deadlock if a sleeper is never woken.

#![cfg(loom)]

use bulkhead_ring::mq::Receiver;
use bulkhead_ring::{Armed, Consumer, HEADER_SIZE, HeapRegion, Notify, Producer, Ring, RingError};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

const SLOT: u32 = 16;

/// A fresh 2-slot channel, initialized.
fn channel() -> Arc<HeapRegion> {
    let heap = Arc::new(HeapRegion::new(HEADER_SIZE + 2 * SLOT as usize));
    let _ = Ring::init(heap.region().unwrap(), SLOT).unwrap();
    heap
}

fn producer(heap: &HeapRegion) -> Producer<'_> {
    Ring::attach(heap.region().unwrap())
        .unwrap()
        .into_producer()
}

fn consumer(heap: &HeapRegion) -> Consumer<'_> {
    Ring::attach(heap.region().unwrap())
        .unwrap()
        .into_consumer()
}

/// Sends, yielding while the ring is full.
fn send(tx: &mut Producer<'_>, msg: &[u8], priority: u8) -> Notify {
    loop {
        match tx.try_send(msg, priority) {
            Ok(n) => return n,
            Err(RingError::WouldBlock) => thread::yield_now(),
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// A doorbell: a binary semaphore.
#[derive(Default)]
struct Bell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Bell {
    fn ring(&self) {
        *self.rung.lock().unwrap() = true;
        self.cv.notify_one();
    }

    fn wait(&self) {
        let mut rung = self.rung.lock().unwrap();
        while !*rung {
            rung = self.cv.wait(rung).unwrap();
        }
        *rung = false;
    }
}

/// Three messages through two slots (so the producer wraps and finds the ring full): each is
/// delivered exactly once, in order, intact.
#[test]
fn delivers_in_order_exactly_once() {
    loom::model(|| {
        let heap = channel();
        let h = heap.clone();
        let t = thread::spawn(move || {
            let mut tx = producer(&h);
            for i in 0..3u8 {
                let _ = send(&mut tx, &[i, i ^ 0xff, i, i, i, i, i, i], 0);
            }
        });
        let mut rx = consumer(&heap);
        let mut buf = [0u8; 8 + 8];
        for i in 0..3u8 {
            let m = loop {
                match rx.try_receive(&mut buf) {
                    Ok(m) => break m,
                    Err(RingError::WouldBlock) => thread::yield_now(),
                    Err(e) => panic!("receive: {e}"),
                }
            };
            assert_eq!(&buf[..m.len], &[i, i ^ 0xff, i, i, i, i, i, i]);
        }
        assert_eq!(rx.try_receive(&mut buf), Err(RingError::WouldBlock));
        t.join().unwrap();
    });
}

/// A consumer that armed its doorbell and saw an empty ring is always woken by the send.
#[test]
fn consumer_sleep_is_never_missed() {
    loom::model(|| {
        let heap = channel();
        let h = heap.clone();
        let t = thread::spawn(move || send(&mut producer(&h), b"x", 0));
        let mut rx = consumer(&heap);
        let mut buf = [0u8; 8];
        let slept = match rx.try_receive(&mut buf) {
            Ok(_) => false,
            Err(RingError::WouldBlock) => rx.arm_doorbell().unwrap() == Armed::Sleep,
            Err(e) => panic!("{e}"),
        };
        let notify = t.join().unwrap();
        if slept {
            assert_eq!(
                notify,
                Notify::Doorbell,
                "the consumer slept and was not notified"
            );
        }
    });
}

/// A producer that armed its doorbell on a full ring is always woken by the receive.
#[test]
fn producer_sleep_is_never_missed() {
    loom::model(|| {
        let heap = channel();
        {
            let mut tx = producer(&heap);
            let _ = send(&mut tx, b"a", 0);
            let _ = send(&mut tx, b"b", 0);
        }
        let h = heap.clone();
        let t = thread::spawn(move || {
            let mut rx = consumer(&h);
            rx.try_receive(&mut [0u8; 8]).unwrap().notify
        });
        let mut tx = producer(&heap);
        let slept = match tx.try_send(b"c", 0) {
            Ok(_) => false,
            Err(RingError::WouldBlock) => tx.arm_doorbell().unwrap() == Armed::Sleep,
            Err(e) => panic!("{e}"),
        };
        let notify = t.join().unwrap();
        if slept {
            assert_eq!(
                notify,
                Notify::Doorbell,
                "the producer slept and was not notified"
            );
        }
    });
}

/// Both sides block for real on doorbells (a semaphore each) while three messages pass through
/// two slots: loom reports a deadlock if any wake-up is lost.
#[test]
fn blocking_both_ways_never_deadlocks() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let heap = channel();
        let bells = Arc::new((Bell::default(), Bell::default())); // (to consumer, to producer)
        let (h, b) = (heap.clone(), bells.clone());
        let t = thread::spawn(move || {
            let mut tx = producer(&h);
            for i in 0..3u8 {
                loop {
                    match tx.try_send(&[i], 0) {
                        Ok(n) => {
                            if n.needed() {
                                b.0.ring();
                            }
                            break;
                        }
                        Err(RingError::WouldBlock) => {
                            if tx.arm_doorbell().unwrap() == Armed::Sleep {
                                b.1.wait();
                            }
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        let mut rx = consumer(&heap);
        let mut buf = [0u8; 8];
        for i in 0..3u8 {
            loop {
                match rx.try_receive(&mut buf) {
                    Ok(m) => {
                        assert_eq!(&buf[..m.len], &[i]);
                        if m.notify.needed() {
                            bells.1.ring();
                        }
                        break;
                    }
                    Err(RingError::WouldBlock) => {
                        if rx.arm_doorbell().unwrap() == Armed::Sleep {
                            bells.0.wait();
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        t.join().unwrap();
    });
}

/// The priority receiver moves messages between slots while the producer writes the free ones:
/// loom checks those moves never touch a slot the producer owns; delivery is exactly once, and
/// FIFO within a priority.
#[test]
fn mq_receiver_moves_only_its_own_slots() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let heap = channel();
        let h = heap.clone();
        let t = thread::spawn(move || {
            let mut tx = producer(&h);
            for (msg, priority) in [(b"a", 0), (b"b", 1), (b"c", 0)] {
                let _ = send(&mut tx, msg, priority);
            }
        });
        let mut rx = Receiver::new(consumer(&heap));
        let mut got = Vec::new();
        let mut buf = [0u8; 8];
        while got.len() < 3 {
            match rx.try_receive(&mut buf) {
                Ok(_) => got.push(buf[0]),
                Err(RingError::WouldBlock) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        t.join().unwrap();
        let pos = |c| got.iter().position(|&x| x == c).unwrap();
        assert!(pos(b'a') < pos(b'c'), "FIFO within a priority: {got:?}");
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, b"abc");
    });
}
