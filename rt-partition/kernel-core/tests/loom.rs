//! The cross-core mailbox and console line ring under the loom model checker: every
//! interleaving of one producer and one consumer on a small mailbox or ring. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p bulkhead-rt-core --release --test loom`
//! (`cargo xtask test` does).
#![cfg(loom)]

use std::sync::Arc;

use bulkhead_rt_core::line_ring::{self, LineRing};
use bulkhead_rt_core::mailbox::{Full, Mailbox};
use loom::thread;

/// Three words through a two-slot mailbox: each arrives once, in order, and the producer
/// is refused only while both slots are in flight.
#[test]
fn words_arrive_once_and_in_order() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let mailbox = Arc::new(Mailbox::<2>::new());
        let producer = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || {
                for word in 1..=3u64 {
                    while mailbox.send(word) == Err(Full) {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut got = Vec::new();
        while got.len() < 3 {
            match mailbox.receive() {
                Some(word) => got.push(word),
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(mailbox.receive(), None);
    });
}

/// Three lines of different lengths through a ring that holds at most two (the third wraps
/// round the end of the words): each arrives once, whole and in order, with its stamp, while
/// the consumer reads each line before it frees its room.
#[test]
fn console_lines_arrive_whole_and_in_order() {
    const LINES: [&[u8]; 3] = [b"one line\n", b"two\n", b"the third one\n"];
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let ring = Arc::new(LineRing::<6>::new());
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                for (stamp, line) in LINES.iter().enumerate() {
                    while ring.push(line, stamp as u64) == Err(line_ring::Full) {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut got = Vec::new();
        while got.len() < LINES.len() {
            let mut out = [0u8; 32];
            match ring.read_front(&mut out) {
                Some(front) => {
                    got.push((front.stamp, out[..front.len].to_vec()));
                    assert!(ring.pop());
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        let want: Vec<(u64, Vec<u8>)> = LINES
            .iter()
            .enumerate()
            .map(|(s, l)| (s as u64, l.to_vec()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(ring.front(), None);
    });
}
