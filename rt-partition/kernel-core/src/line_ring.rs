//! Console lines from one core to the core that prints them: a bounded single-producer
//! single-consumer ring of whole lines, each stamped so that a reader of every core's ring
//! can put them back in the order they were written ([`oldest`]).
//!
//! The producer is the writing core (the kernel copies a line in with its interrupts off, so
//! one writer at a time and never a torn line); the consumer is the core that drains the
//! console. Neither waits for the other: a line that does not fit is refused whole
//! ([`Full`]), and the consumer frees a line's room only after it has written it out. No
//! lock is shared between cores: this replaces a ring every core locked to append.
//!
//! A line is one header word (its length in bits 0..16, its stamp in bits 16..64) and its
//! bytes in little-endian words, at consecutive word positions modulo the ring's size (a line
//! wraps round the end; no padding). Words rather than bytes: every word is an atomic (a
//! plain move on x86-64), so the crate stays free of `unsafe` and loom checks the protocol
//! (`tests/loom.rs`). The protocol is the mailbox's: the producer writes the words, then
//! publishes the tail (release); the consumer loads the tail (acquire), reads, and
//! publishes the head (release), which the producer loads (acquire) before reusing room.
//! Both positions count words and only grow.

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

/// The ring had no room for the line (or the line is longer than [`LineRing::MAX_LINE`]);
/// nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The oldest line of a ring, read but not yet taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Front {
    /// The stamp its writer gave it.
    pub stamp: u64,
    /// Its length in bytes.
    pub len: usize,
}

const LEN_BITS: u32 = 16;
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;
/// Stamps are kept to the header's 48 bits (2^48 lines: they never wrap).
pub const STAMP_MASK: u64 = (1 << (64 - LEN_BITS)) - 1;

/// Up to `WORDS` words of lines (header words included) on their way from one core to
/// another.
#[derive(Debug)]
pub struct LineRing<const WORDS: usize> {
    /// Words taken so far (the consumer's).
    head: AtomicU64,
    /// Words written so far (the producer's).
    tail: AtomicU64,
    words: [AtomicU64; WORDS],
}

impl<const WORDS: usize> LineRing<WORDS> {
    /// The longest line a ring of this size takes.
    pub const MAX_LINE: usize = {
        let bytes = (WORDS - 1) * 8;
        if bytes < LEN_MASK as usize {
            bytes
        } else {
            LEN_MASK as usize
        }
    };

    /// An empty ring (a `const fn`, for statics).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        const { assert!(WORDS >= 2, "a ring needs a header word and a word of text") };
        Self {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            words: [const { AtomicU64::new(0) }; WORDS],
        }
    }

    /// An empty ring.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            words: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn word(&self, position: u64) -> &AtomicU64 {
        &self.words[(position % WORDS as u64) as usize]
    }

    /// Appends `line` with `stamp` (the producer only); a line that does not fit is refused
    /// whole.
    pub fn push(&self, line: &[u8], stamp: u64) -> Result<(), Full> {
        if line.len() > Self::MAX_LINE {
            return Err(Full);
        }
        let words = record_words(line.len());
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) + words > WORDS as u64 {
            return Err(Full);
        }
        self.word(tail).store(
            line.len() as u64 | (stamp & STAMP_MASK) << LEN_BITS,
            Ordering::Relaxed,
        );
        // Whole words with one load each (the producer copies with interrupts off: a byte
        // copy per word was most of the console's longest section), then the rest.
        let whole = line.chunks_exact(8);
        let rest = whole.remainder();
        let mut at = tail + 1;
        for chunk in whole {
            let word = u64::from_le_bytes([
                chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
            ]);
            self.word(at).store(word, Ordering::Relaxed);
            at += 1;
        }
        if !rest.is_empty() {
            let mut bytes = [0u8; 8];
            bytes[..rest.len()].copy_from_slice(rest);
            self.word(at)
                .store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        self.tail.store(tail.wrapping_add(words), Ordering::Release);
        Ok(())
    }

    /// The oldest line's stamp and length (the consumer only).
    pub fn front(&self) -> Option<Front> {
        self.oldest().map(|(_, front)| front)
    }

    /// Where the oldest line starts and its front.
    fn oldest(&self) -> Option<(u64, Front)> {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let header = self.word(head).load(Ordering::Relaxed);
        let front = Front {
            stamp: header >> LEN_BITS,
            len: (header & LEN_MASK) as usize,
        };
        Some((head, front))
    }

    /// Copies the oldest line into `out` (as much as fits) and returns its front; the line
    /// stays in the ring until [`pop`](Self::pop) (the consumer only).
    pub fn read_front(&self, out: &mut [u8]) -> Option<Front> {
        let (head, front) = self.oldest()?;
        let n = front.len.min(out.len());
        for (i, chunk) in out[..n].chunks_mut(8).enumerate() {
            let bytes = self
                .word(head + 1 + i as u64)
                .load(Ordering::Relaxed)
                .to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Some(front)
    }

    /// Takes the oldest line out, freeing its room (the consumer only); false when empty.
    pub fn pop(&self) -> bool {
        let Some((head, front)) = self.oldest() else {
            return false;
        };
        self.head.store(
            head.wrapping_add(record_words(front.len)),
            Ordering::Release,
        );
        true
    }
}

/// The words a line of `len` bytes takes: its header and its bytes.
fn record_words(len: usize) -> u64 {
    1 + len.div_ceil(8) as u64
}

#[cfg(not(loom))]
impl<const WORDS: usize> Default for LineRing<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

/// Of several rings' oldest lines, the index of the one with the lowest stamp: the line to
/// print next when the stamps come from one counter that every writer takes from as it
/// pushes.
pub fn oldest(fronts: impl IntoIterator<Item = Option<Front>>) -> Option<usize> {
    fronts
        .into_iter()
        .enumerate()
        .filter_map(|(i, front)| Some((front?.stamp, i)))
        .min()
        .map(|(_, i)| i)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    fn take<const W: usize>(ring: &LineRing<W>) -> Option<(u64, Vec<u8>)> {
        let mut out = [0u8; 256];
        let front = ring.read_front(&mut out)?;
        assert!(ring.pop());
        Some((front.stamp, out[..front.len].to_vec()))
    }

    #[test]
    fn lines_come_out_whole_in_order_and_a_full_ring_refuses_whole_lines() {
        let ring = LineRing::<8>::new();
        assert_eq!(ring.front(), None);
        assert!(!ring.pop());
        assert_eq!(ring.push(b"first line\n", 1), Ok(())); // 1 + 2 words
        assert_eq!(ring.push(b"second\n", 2), Ok(())); // 1 + 1 words
        assert_eq!(ring.push(b"the third line!!\n", 3), Err(Full)); // 1 + 3 words, 3 free
        assert_eq!(take(&ring), Some((1, b"first line\n".to_vec())));
        // The refused line fits now, wrapping round the end of the words.
        assert_eq!(ring.push(b"the third line!!\n", 3), Ok(()));
        assert_eq!(take(&ring), Some((2, b"second\n".to_vec())));
        assert_eq!(take(&ring), Some((3, b"the third line!!\n".to_vec())));
        assert_eq!(take(&ring), None);
        // An empty line is a header alone; the longest line fills the ring.
        assert_eq!(ring.push(b"", 4), Ok(()));
        assert_eq!(take(&ring), Some((4, Vec::new())));
        let longest = [b'x'; LineRing::<8>::MAX_LINE];
        assert_eq!(ring.push(&longest, 5), Ok(()));
        assert_eq!(ring.push(b"", 6), Err(Full));
        assert_eq!(take(&ring), Some((5, longest.to_vec())));
        assert_eq!(ring.push(&[0; LineRing::<8>::MAX_LINE + 1], 7), Err(Full));
    }

    #[test]
    fn a_short_buffer_gets_the_start_of_the_line_and_the_line_is_still_taken_whole() {
        let ring = LineRing::<8>::new();
        ring.push(b"0123456789abcdef", 9).unwrap();
        ring.push(b"next", 10).unwrap();
        let mut out = [0u8; 5];
        assert_eq!(ring.read_front(&mut out), Some(Front { stamp: 9, len: 16 }));
        assert_eq!(&out, b"01234");
        assert!(ring.pop());
        assert_eq!(take(&ring), Some((10, b"next".to_vec())));
    }

    #[test]
    fn the_oldest_front_of_several_rings_is_the_lowest_stamp() {
        let f = |stamp| Some(Front { stamp, len: 0 });
        assert_eq!(oldest([None, None]), None);
        assert_eq!(oldest([f(5), None, f(3), f(4)]), Some(2));
        assert_eq!(oldest([None, f(0)]), Some(1));
    }

    proptest! {
        /// Against a model: whatever lines are pushed and taken, in whatever interleaving,
        /// what comes out is exactly what went in and was not refused, in order, and a push
        /// is refused only when the line's words do not fit beside those still held.
        #[test]
        fn the_ring_is_a_queue_of_whole_lines(ops in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
                Just(None),
            ],
            0..200,
        )) {
            let ring = LineRing::<16>::new();
            let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
            for (stamp, op) in ops.into_iter().enumerate() {
                let stamp = stamp as u64;
                match op {
                    Some(line) => {
                        let held: usize = model.iter().map(|(_, l)| 1 + l.len().div_ceil(8)).sum();
                        let fits = held + 1 + line.len().div_ceil(8) <= 16;
                        prop_assert_eq!(ring.push(&line, stamp).is_ok(), fits);
                        if fits {
                            model.push_back((stamp, line));
                        }
                    }
                    None => prop_assert_eq!(take(&ring), model.pop_front()),
                }
            }
            while let Some(line) = model.pop_front() {
                prop_assert_eq!(take(&ring), Some(line));
            }
            prop_assert_eq!(take(&ring), None);
        }
    }
}
