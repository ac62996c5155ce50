//! The cross-core mailbox under the loom model checker: every interleaving of one producer
//! and one consumer on a small mailbox. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p bulkhead-rt-core --release --test loom`
//! (`cargo xtask test` does).
#![cfg(loom)]

use std::sync::Arc;

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
