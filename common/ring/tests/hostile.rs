//! A hostile peer: random writes to the shared words between our operations, and random headers
//! on attach. Whatever it writes, our side must not panic, must not touch memory outside the
//! region (checked with guard words around it), must return only messages that fit the caller's
//! buffer and a slot, and once it reports the channel corrupt it must stay stopped.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use bulkhead_ring::mq::Receiver;
use bulkhead_ring::{HEADER_SIZE, Ring, RingError, SharedRegion, SlotHeader};
use proptest::prelude::*;

const GUARD_WORDS: usize = 512;
const GUARD: u64 = 0xa5a5_5a5a_dead_beef;

/// A region of `len` bytes with guard words on both sides.
struct Guarded {
    words: Vec<AtomicU64>,
    len_words: usize,
}

impl Guarded {
    fn new(len: usize) -> Self {
        let len_words = len / 8;
        let words = (0..len_words + 2 * GUARD_WORDS)
            .map(|i| {
                let guard = !(GUARD_WORDS..GUARD_WORDS + len_words).contains(&i);
                AtomicU64::new(if guard { GUARD } else { 0 })
            })
            .collect();
        Self { words, len_words }
    }

    fn inner(&self) -> &[AtomicU64] {
        &self.words[GUARD_WORDS..GUARD_WORDS + self.len_words]
    }

    fn region(&self) -> SharedRegion<'_> {
        let inner = self.inner();
        // Through the raw-pointer constructor, as a real channel is mapped.
        // SAFETY: `inner` is a live slice of atomics borrowed for the region's lifetime, 8-byte
        // aligned, accessed in this program only as 8-byte atomics.
        unsafe { SharedRegion::new(inner.as_ptr().cast_mut().cast(), inner.len() * 8) }.unwrap()
    }

    fn guards_intact(&self) -> bool {
        let (before, rest) = self.words.split_at(GUARD_WORDS);
        let after = &rest[self.len_words..];
        before.iter().chain(after).all(|w| w.load(Relaxed) == GUARD)
    }
}

/// Something the peer writes into the region.
#[derive(Debug, Clone)]
enum Poke {
    /// `word = value` at a header word (geometry, state, indices, flags).
    Header { word: usize, value: u64 },
    /// The header word gets `delta` added (indices a little off are the interesting case).
    Nudge { word: usize, delta: i8 },
    /// A slot header gets a new length, sequence or priority.
    SlotHeader {
        slot: usize,
        len: u32,
        seq: u16,
        priority: u8,
    },
    /// Any word of the region.
    Any { word: usize, value: u64 },
}

#[derive(Debug, Clone)]
enum Step {
    Poke(Poke),
    Send { len: usize, priority: u8 },
    Receive { capacity: usize },
    Arm,
}

fn poke() -> impl Strategy<Value = Poke> {
    // Word indices in the header page that matter: geometry, state, indices, flags.
    let header_word = prop_oneof![0usize..8, Just(8), Just(16), Just(32), Just(48), Just(64)];
    prop_oneof![
        (header_word.clone(), any::<u64>()).prop_map(|(word, value)| Poke::Header { word, value }),
        (header_word, any::<i8>()).prop_map(|(word, delta)| Poke::Nudge { word, delta }),
        (
            0usize..16,
            prop_oneof![0u32..80, any::<u32>()],
            any::<u16>(),
            any::<u8>()
        )
            .prop_map(|(slot, len, seq, priority)| Poke::SlotHeader {
                slot,
                len,
                seq,
                priority
            }),
        (any::<usize>(), any::<u64>()).prop_map(|(word, value)| Poke::Any { word, value }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => poke().prop_map(Step::Poke),
        3 => (0usize..80, any::<u8>()).prop_map(|(len, priority)| Step::Send { len, priority }),
        3 => (0usize..80).prop_map(|capacity| Step::Receive { capacity }),
        1 => Just(Step::Arm),
    ]
}

fn apply(region: &[AtomicU64], slot_size: usize, poke: &Poke) {
    match *poke {
        Poke::Header { word, value } => region[word].store(value, Relaxed),
        Poke::Nudge { word, delta } => {
            let w = &region[word];
            w.store(w.load(Relaxed).wrapping_add_signed(delta.into()), Relaxed);
        }
        Poke::SlotHeader {
            slot,
            len,
            seq,
            priority,
        } => {
            let index = (HEADER_SIZE + slot * slot_size) / 8;
            if let Some(w) = region.get(index) {
                w.store(
                    SlotHeader {
                        len,
                        seq,
                        priority,
                        flags: 0,
                    }
                    .to_word(),
                    Relaxed,
                );
            }
        }
        Poke::Any { word, value } => region[word % region.len()].store(value, Relaxed),
    }
}

/// Runs `steps` with our consumer (FIFO or mq) and a producer that the peer may also corrupt.
fn run(slot_size: u32, slots: usize, steps: &[Step], mq: bool) -> Result<(), TestCaseError> {
    let guarded = Guarded::new(HEADER_SIZE + slots * slot_size as usize);
    let (mut tx, rx) = Ring::init(guarded.region(), slot_size).unwrap().split();
    let max = slot_size as usize - 8;
    let mut fifo = rx;
    let mut prio = Receiver::new(Ring::attach(guarded.region()).unwrap().into_consumer());
    let mut buf = [0u8; 96];
    let mut stopped: Option<RingError> = None;
    for step in steps {
        match step {
            Step::Poke(p) => apply(guarded.inner(), slot_size as usize, p),
            Step::Send { len, priority } => {
                let _ = tx.try_send(&buf[..(*len).min(max)], *priority);
            }
            Step::Arm => {
                let _ = tx.arm_doorbell();
            }
            Step::Receive { capacity } => {
                let got = if mq {
                    prio.try_receive(&mut buf[..*capacity])
                } else {
                    fifo.try_receive(&mut buf[..*capacity])
                };
                if let Some(e) = stopped {
                    prop_assert_eq!(got, Err(e), "a stopped endpoint stays stopped");
                }
                match got {
                    Ok(m) => {
                        prop_assert!(m.len <= *capacity && m.len <= max);
                    }
                    Err(e) if e.is_fatal() => stopped = Some(e),
                    Err(_) => {}
                }
            }
        }
        prop_assert!(guarded.guards_intact());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A peer poking at the header and slots never makes the FIFO consumer misbehave.
    #[test]
    fn fifo_consumer_survives_a_hostile_peer(
        log in 4u32..=6, slots in 2usize..=8, steps in prop::collection::vec(step(), 0..200)
    ) {
        run(1 << log, slots, &steps, false)?;
    }

    /// Nor the priority receiver, which also moves messages between slots.
    #[test]
    fn mq_receiver_survives_a_hostile_peer(
        log in 4u32..=6, slots in 2usize..=8, steps in prop::collection::vec(step(), 0..200)
    ) {
        run(1 << log, slots, &steps, true)?;
    }

    /// Any header bytes at all: attach either refuses them or yields a geometry that fits the
    /// region, and both endpoints then stay inside it.
    #[test]
    fn attach_to_random_header(
        slots in 2usize..=8,
        header in prop::collection::vec(any::<u64>(), 10),
        slot_log in 4u32..=7,
        valid_geometry in any::<bool>(),
        steps in prop::collection::vec(step(), 0..50),
    ) {
        let slot_size = 1u32 << slot_log;
        let len = HEADER_SIZE + slots * slot_size as usize;
        let guarded = Guarded::new(len);
        if valid_geometry {
            Ring::init(guarded.region(), slot_size).unwrap();
        }
        let words = guarded.inner();
        // Geometry words (valid_geometry keeps them) and the five protocol words.
        let targets = [8usize, 16, 32, 48, 64];
        for (i, value) in header.iter().enumerate() {
            if valid_geometry {
                if let Some(&w) = targets.get(i) {
                    // State is left ready half of the time so that attach gets further.
                    if w == 8 && value % 2 == 0 { continue; }
                    words[w].store(*value % 16, Relaxed);
                }
            } else if i < 8 {
                words[i].store(*value, Relaxed);
            } else {
                words[targets[i - 8]].store(*value, Relaxed);
            }
        }
        for attach_as_mq in [false, true] {
            let Ok(ring) = Ring::attach(guarded.region()) else { continue };
            let g = ring.geometry();
            prop_assert!(HEADER_SIZE + g.slot_count() as usize * g.slot_size() as usize <= len);
            let (mut tx, rx) = ring.split();
            let mut fifo = rx;
            let mut prio = Receiver::new(Ring::attach(guarded.region()).unwrap().into_consumer());
            let mut buf = [0u8; 128];
            for step in &steps {
                match step {
                    Step::Poke(p) => apply(words, g.slot_size() as usize, p),
                    Step::Send { len, priority } => {
                        let _ = tx.try_send(&buf[..(*len).min(g.max_message())], *priority);
                    }
                    Step::Arm => { let _ = tx.arm_doorbell(); }
                    Step::Receive { capacity } => {
                        let got = if attach_as_mq {
                            prio.try_receive(&mut buf[..*capacity])
                        } else {
                            fifo.try_receive(&mut buf[..*capacity])
                        };
                        if let Ok(m) = got {
                            prop_assert!(m.len <= *capacity && m.len <= g.max_message());
                        }
                    }
                }
            }
        }
        prop_assert!(guarded.guards_intact());
    }
}

/// Every word of the region, written with every kind of extreme value between operations.
#[test]
fn exhaustive_single_word_corruption() {
    let slot_size = 32u32;
    let slots = 3usize;
    let values = [
        0,
        1,
        2,
        3,
        4,
        7,
        8,
        0x7fff_ffff,
        0xffff_ffff,
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
    ];
    for word in 0..(HEADER_SIZE + slots * slot_size as usize) / 8 {
        for &value in &values {
            let guarded = Guarded::new(HEADER_SIZE + slots * slot_size as usize);
            let (mut tx, mut rx) = Ring::init(guarded.region(), slot_size).unwrap().split();
            let mut mq = Receiver::new(Ring::attach(guarded.region()).unwrap().into_consumer());
            let _ = tx.try_send(b"0123456789", 1);
            let _ = tx.try_send(b"abc", 2);
            guarded.inner()[word].store(value, Relaxed);
            let mut buf = [0u8; 24];
            for _ in 0..4 {
                if let Ok(m) = rx.try_receive(&mut buf) {
                    assert!(m.len <= 24);
                }
                let _ = mq.try_receive(&mut buf);
                let _ = tx.try_send(b"xyz", 3);
            }
            assert!(guarded.guards_intact());
        }
    }
}

proptest! {
    /// Whatever the peer wrote, once it asks for a re-initialization the side that owns the
    /// channel's re-establishment brings it back: empty, with its own geometry (not whatever
    /// the peer left in the header), the request cleared, and messages flowing through a peer
    /// endpoint attached afresh.
    #[test]
    fn a_corrupted_channel_comes_back_on_request(
        pokes in proptest::collection::vec(poke(), 1..8),
    ) {
        let slot_size = 64u32;
        let slots = 8usize;
        let guarded = Guarded::new(HEADER_SIZE + slots * slot_size as usize);
        let region = guarded.region();
        // The RT side receives (a linux-to-rt channel); Linux sends, then scribbles.
        let mut rt = Receiver::new(Ring::init(region, slot_size).unwrap().into_consumer());
        let mut linux = Ring::attach(region).unwrap().into_producer();
        let _ = linux.try_send(b"before", 1).unwrap();
        for p in &pokes {
            apply(guarded.inner(), slot_size as usize, p);
        }
        let mut buf = [0u8; 64];
        // Whatever the pokes did, this receive may fail and stop the endpoint.
        let _ = rt.try_receive(&mut buf);
        bulkhead_ring::request_reinit(region);
        prop_assert!(rt.reinit_requested());
        rt.reinit().unwrap();
        prop_assert!(!bulkhead_ring::reinit_requested(region), "initializing clears the request");
        let attr = rt.attr().unwrap();
        prop_assert_eq!((attr.max_messages, attr.current), (slots as u32, 0));
        let mut linux = Ring::attach(region).unwrap().into_producer();
        let _ = linux.try_send(b"again", 7).unwrap();
        let got = rt.try_receive(&mut buf).unwrap();
        prop_assert_eq!(&buf[..got.len], b"again");
        prop_assert_eq!(got.priority, 7);
        prop_assert!(guarded.guards_intact());
    }
}
