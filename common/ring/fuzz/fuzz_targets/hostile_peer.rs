//! A hostile peer driven by the fuzzer: the input is a script of writes to the shared words
//! interleaved with our side's sends and receives (FIFO and priority receivers), on a region
//! with guard words around it. Any panic, or a guard word changed, is a finding.

#![no_main]

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use bulkhead_ring::mq::Receiver;
use bulkhead_ring::{HEADER_SIZE, Ring, SharedRegion};
use libfuzzer_sys::fuzz_target;

const GUARD_WORDS: usize = 64;
const GUARD: u64 = 0xa5a5_5a5a_dead_beef;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, mut script)) = data.split_first() else {
        return;
    };
    let slot_size = 16u32 << (shape % 4);
    let slots = 2 + usize::from(shape >> 2) % 8;
    let len_words = (HEADER_SIZE + slots * slot_size as usize) / 8;
    let words: Vec<AtomicU64> = (0..len_words + 2 * GUARD_WORDS)
        .map(|i| {
            let guard = !(GUARD_WORDS..GUARD_WORDS + len_words).contains(&i);
            AtomicU64::new(if guard { GUARD } else { 0 })
        })
        .collect();
    let inner = &words[GUARD_WORDS..GUARD_WORDS + len_words];
    let region = SharedRegion::from_words(inner).expect("region");
    let (mut tx, mut fifo) = Ring::init(region, slot_size).expect("init").split();
    let mut prio = Receiver::new(Ring::attach(region).expect("attach").into_consumer());
    let mut buf = [0u8; 128];
    while let Some((&op, rest)) = script.split_first() {
        script = rest;
        match op % 6 {
            // Poke: a 16-bit word index and a 64-bit value.
            0 => {
                let Some((arg, rest)) = script.split_first_chunk::<10>() else {
                    return;
                };
                script = rest;
                let word = usize::from(u16::from_le_bytes([arg[0], arg[1]])) % len_words;
                let value = u64::from_le_bytes(arg[2..].try_into().expect("8 bytes"));
                inner[word].store(value, Relaxed);
            }
            1 => {
                let n = usize::from(op >> 3).min(120);
                let _ = tx.try_send(&buf[..n], op);
            }
            2 => {
                let n = usize::from(op >> 3).min(buf.len());
                if let Ok(m) = fifo.try_receive(&mut buf[..n]) {
                    assert!(m.len <= n);
                }
            }
            3 => {
                let n = usize::from(op >> 3).min(buf.len());
                if let Ok(m) = prio.try_receive(&mut buf[..n]) {
                    assert!(m.len <= n);
                }
            }
            4 => {
                let _ = tx.arm_doorbell();
                let _ = fifo.arm_doorbell();
            }
            _ => {
                // Re-attach, as a restarted peer would, with whatever the header says now.
                if let Ok(ring) = Ring::attach(region) {
                    let g = ring.geometry();
                    assert!(
                        HEADER_SIZE + g.slot_count() as usize * g.slot_size() as usize
                            <= len_words * 8
                    );
                    fifo = ring.into_consumer();
                }
            }
        }
    }
    let (before, rest) = words.split_at(GUARD_WORDS);
    assert!(
        before
            .iter()
            .chain(&rest[len_words..])
            .all(|w| w.load(Relaxed) == GUARD)
    );
});
