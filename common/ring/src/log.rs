//! Log channels: console lines, one per message, from a producer that never waits.
//!
//! The hypervisor (its `hypervisor-to-linux` channel) and the RT kernel (`log=CHANNEL`, an
//! `rt-to-linux` channel) copy every line they print on their console into a channel, where
//! Linux's `bulkhead log` reads them. This module owns the framing both ends agree on:
//!
//! - one message is one line of text as printed (UTF-8), without its newline, priority 0;
//! - a line longer than the channel's largest message (or than [`MAX_LINE`]) is cut at a
//!   character boundary and ends in [`CUT_MARKER`];
//! - the producer never waits for the consumer: a line that finds the ring full is dropped and
//!   counted, and the next line that finds room is preceded by one marker message,
//!   `[... N lines dropped]` ([`drop_marker`]; [`parse_drop_marker`] reads it back);
//! - lines printed before the channel is attached are kept, up to [`EARLY_BYTES`], and sent in
//!   order when it is ([`LogWriter::attach`]); lines that do not fit there count as dropped.
//!
//! [`LogWriter`] is the producer's end. It is not synchronized: its owner calls it under the
//! lock that already serializes its console, which makes it the channel's one producer. It
//! never blocks and never panics, whatever the consumer writes into the ring (a ring the
//! consumer corrupted stops the producer, and every later line counts as dropped).
//!
//! A line that reads exactly like a marker cannot be told from one; markers are for people.

use core::fmt;

use crate::ring::Producer;

/// Longest message a log writer sends, whatever the channel's slots: longer lines are cut.
pub const MAX_LINE: usize = 1024;
/// Bytes of lines (with 3 bytes of framing each) kept before the channel is attached.
pub const EARLY_BYTES: usize = 8192;
/// The end of a line that was cut to fit a message.
pub const CUT_MARKER: &str = " [cut]";

/// Start of a drop marker.
const DROP_PREFIX: &str = "[... ";
/// End of a drop marker for one line.
const DROP_SUFFIX_ONE: &str = " line dropped]";
/// End of a drop marker for several lines.
const DROP_SUFFIX_MANY: &str = " lines dropped]";
/// Room for the longest drop marker (`u64::MAX` lines).
const MARKER_MAX: usize = 48;
/// Bytes before each early line: its length (2 bytes, little-endian) and whether it was cut.
const EARLY_FRAMING: usize = 3;

/// Writes into a byte slice, cutting what does not fit.
struct SliceWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len = self.len.saturating_add(1);
            }
        }
        Ok(())
    }
}

/// Writes the marker for `lines` dropped lines into `buf`; returns its length (cut to
/// `buf.len()`; 48 bytes always hold it).
pub fn drop_marker(lines: u64, buf: &mut [u8]) -> usize {
    let mut w = SliceWriter { buf, len: 0 };
    let suffix = if lines == 1 {
        DROP_SUFFIX_ONE
    } else {
        DROP_SUFFIX_MANY
    };
    let _ = fmt::write(&mut w, format_args!("{DROP_PREFIX}{lines}{suffix}"));
    w.len
}

/// The number of lines a drop marker says were dropped; `None` if `msg` is not a marker.
pub fn parse_drop_marker(msg: &[u8]) -> Option<u64> {
    let text = core::str::from_utf8(msg).ok()?;
    let rest = text.strip_prefix(DROP_PREFIX)?;
    let digits = rest
        .strip_suffix(DROP_SUFFIX_MANY)
        .or_else(|| rest.strip_suffix(DROP_SUFFIX_ONE))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a received line was cut by its producer (it ends in [`CUT_MARKER`]).
pub fn is_cut(msg: &[u8]) -> bool {
    msg.ends_with(CUT_MARKER.as_bytes())
}

/// The longest prefix of `text` of at most `len` bytes that does not end inside a UTF-8
/// character (bytes that are not UTF-8 are kept as they are).
fn char_boundary(text: &[u8], len: usize) -> usize {
    let mut end = len.min(text.len());
    // A UTF-8 character is at most 4 bytes: back off over at most 3 continuation bytes.
    for _ in 0..3 {
        match text.get(end) {
            Some(&b) if end > 0 && b & 0xc0 == 0x80 => end = end.saturating_sub(1),
            _ => break,
        }
    }
    end
}

/// What the writer does with a finished line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No channel yet: keep the line in the early buffer.
    Early,
    /// Send it.
    Attached,
    /// There will be no channel: forget it.
    Off,
}

/// Lines sent and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    /// Lines sent (markers not included).
    sent: u64,
    /// Lines dropped in all.
    dropped: u64,
    /// Lines dropped since the last marker went out.
    pending: u64,
    /// Times the channel was initialized again at its reader's request.
    reinits: u64,
}

impl Counts {
    fn drop_one(&mut self) {
        self.dropped = self.dropped.saturating_add(1);
        self.pending = self.pending.saturating_add(1);
    }
}

/// The producer's end of a log channel: takes console text (any number of lines, or pieces of
/// one), sends each finished line as one message, drops and counts what does not fit.
///
/// Its owner serializes the calls (the console's lock); see the module docs.
pub struct LogWriter<'a> {
    producer: Option<Producer<'a>>,
    mode: Mode,
    /// The line being assembled.
    line: [u8; MAX_LINE],
    line_len: usize,
    /// The line being assembled lost bytes beyond [`MAX_LINE`].
    line_cut: bool,
    /// Where a cut line is composed before it is sent.
    out: [u8; MAX_LINE],
    /// Lines finished before the channel was attached: `[len lo, len hi, cut]` then the bytes.
    early: [u8; EARLY_BYTES],
    early_len: usize,
    counts: Counts,
}

impl Default for LogWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LogWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogWriter")
            .field("mode", &self.mode)
            .field("sent", &self.counts.sent)
            .field("dropped", &self.counts.dropped)
            .field("early_len", &self.early_len)
            .finish_non_exhaustive()
    }
}

impl<'a> LogWriter<'a> {
    /// A writer without a channel yet: finished lines are kept until [`attach`](Self::attach)
    /// or [`off`](Self::off).
    pub const fn new() -> Self {
        Self {
            producer: None,
            mode: Mode::Early,
            line: [0; MAX_LINE],
            line_len: 0,
            line_cut: false,
            out: [0; MAX_LINE],
            early: [0; EARLY_BYTES],
            early_len: 0,
            counts: Counts {
                sent: 0,
                dropped: 0,
                pending: 0,
                reinits: 0,
            },
        }
    }

    /// From now on, lines go to `producer`; the lines kept so far are sent first, in order
    /// (those that did not fit in the early buffer are announced by a marker after them).
    pub fn attach(&mut self, producer: Producer<'a>) {
        let mut producer = producer;
        let early_pending = core::mem::take(&mut self.counts.pending);
        let mut at = 0usize;
        while let Some(&[lo, hi, cut]) = self.early.get(at..at.saturating_add(EARLY_FRAMING))
            && at < self.early_len
        {
            let start = at.saturating_add(EARLY_FRAMING);
            let end = start.saturating_add(usize::from(u16::from_le_bytes([lo, hi])));
            let text = self.early.get(start..end).unwrap_or_default();
            deliver(
                &mut producer,
                &mut self.out,
                text,
                cut != 0,
                &mut self.counts,
            );
            at = end;
        }
        self.early_len = 0;
        self.counts.pending = self.counts.pending.saturating_add(early_pending);
        self.producer = Some(producer);
        self.mode = Mode::Attached;
    }

    /// There is no channel: forget the kept lines and take no more (a later
    /// [`attach`](Self::attach) still works).
    pub fn off(&mut self) {
        if self.mode == Mode::Early {
            self.mode = Mode::Off;
            self.early_len = 0;
            self.counts = Counts::default();
        }
    }

    /// Whether lines go to a channel.
    pub fn is_attached(&self) -> bool {
        self.mode == Mode::Attached
    }

    /// Lines sent to the channel (markers not included).
    pub fn sent(&self) -> u64 {
        self.counts.sent
    }

    /// Lines dropped: the ring was full, the early buffer was, or the ring stopped.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped
    }

    /// Times the channel, stopped, was initialized again because its reader asked.
    pub fn reinits(&self) -> u64 {
        self.counts.reinits
    }

    /// Takes console text: each `\n` finishes a line (a `\r` before it is dropped); the rest
    /// waits for the next call.
    pub fn write_bytes(&mut self, text: &[u8]) {
        if self.mode == Mode::Off {
            return;
        }
        let mut rest = text;
        while !rest.is_empty() {
            let (body, ends_line) = match find_byte(rest, b'\n') {
                Some(at) => {
                    let (body, after) = rest.split_at(at);
                    rest = after.get(1..).unwrap_or_default();
                    (body, true)
                }
                None => (core::mem::take(&mut rest), false),
            };
            let room = MAX_LINE.saturating_sub(self.line_len);
            let take = body.len().min(room);
            let end = self.line_len.saturating_add(take);
            if let (Some(to), Some(from)) =
                (self.line.get_mut(self.line_len..end), body.get(..take))
            {
                to.copy_from_slice(from);
                self.line_len = end;
            }
            if take < body.len() {
                self.line_cut = true;
            }
            if ends_line {
                self.finish_line();
            }
        }
    }

    /// Sends, keeps or forgets the assembled line, and starts the next.
    fn finish_line(&mut self) {
        let mut len = self.line_len;
        if !self.line_cut && self.line.get(..len).is_some_and(|l| l.ends_with(b"\r")) {
            len = len.saturating_sub(1);
        }
        let cut = self.line_cut;
        let text = self.line.get(..len).unwrap_or_default();
        match (self.mode, self.producer.as_mut()) {
            (Mode::Attached, Some(producer)) => {
                // A log that stopped (its reader corrupted it) starts over once the reader asks
                // (`crate::request_reinit`); the lines dropped meanwhile are announced.
                if producer.failure().is_some() && producer.reinit_requested() {
                    let _ = producer.reinit();
                    self.counts.reinits = self.counts.reinits.saturating_add(1);
                }
                deliver(producer, &mut self.out, text, cut, &mut self.counts);
            }
            (Mode::Early, _) => {
                let end = self
                    .early_len
                    .saturating_add(EARLY_FRAMING)
                    .saturating_add(text.len());
                match self.early.get_mut(self.early_len..end) {
                    Some(record) => {
                        let [lo, hi] = (text.len() as u16).to_le_bytes();
                        let framing = [lo, hi, u8::from(cut)];
                        for (to, from) in record.iter_mut().zip(framing.iter().chain(text)) {
                            *to = *from;
                        }
                        self.early_len = end;
                    }
                    None => self.counts.drop_one(),
                }
            }
            _ => {}
        }
        self.line_len = 0;
        self.line_cut = false;
    }
}

impl fmt::Write for LogWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Where the first `byte` of `text` is: eight bytes a step (a quadword holds it exactly when
/// the XOR with the byte repeated has a zero byte: the classic test, exact for "there is
/// one"), then byte by byte in the quadword that holds it and in the tail. A console line is
/// scanned in an eighth of the steps of a byte loop, inside the kernel's interrupts-off
/// copy of it.
fn find_byte(text: &[u8], byte: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES.wrapping_mul(u64::from(byte));
    let (chunks, tail) = text.as_chunks::<8>();
    let mut start = 0usize;
    for chunk in chunks {
        let x = u64::from_le_bytes(*chunk) ^ pattern;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return chunk
                .iter()
                .position(|&b| b == byte)
                .map(|p| start.saturating_add(p));
        }
        start = start.saturating_add(8);
    }
    tail.iter()
        .position(|&b| b == byte)
        .map(|p| start.saturating_add(p))
}

/// Sends `text` as one line on `producer` (cut to its largest message, and marked, when it
/// is longer or `cut`), after a drop marker if lines were dropped since the last one; drops
/// and counts it when the ring is full or stopped.
fn deliver(
    producer: &mut Producer<'_>,
    out: &mut [u8; MAX_LINE],
    text: &[u8],
    cut: bool,
    counts: &mut Counts,
) {
    let max = producer.geometry().max_message().min(MAX_LINE);
    if counts.pending > 0 {
        let mut marker = [0u8; MARKER_MAX];
        let len = drop_marker(counts.pending, &mut marker).min(max);
        if producer
            .try_send(marker.get(..len).unwrap_or_default(), 0)
            .is_err()
        {
            counts.drop_one();
            return;
        }
        counts.pending = 0;
    }
    let msg: &[u8] = if !cut && text.len() <= max {
        text
    } else {
        let mark = CUT_MARKER.as_bytes();
        let keep = char_boundary(text, max.saturating_sub(mark.len()));
        let mark = mark
            .get(..max.saturating_sub(keep).min(mark.len()))
            .unwrap_or_default();
        let end = keep.saturating_add(mark.len());
        if let (Some(head), Some(from)) = (out.get_mut(..keep), text.get(..keep)) {
            head.copy_from_slice(from);
        }
        if let Some(tail) = out.get_mut(keep..end) {
            tail.copy_from_slice(mark);
        }
        out.get(..end).unwrap_or_default()
    };
    match producer.try_send(msg, 0) {
        Ok(_notify) => counts.sent = counts.sent.saturating_add(1),
        Err(_) => counts.drop_one(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::HEADER_SIZE;
    use crate::{Consumer, HeapRegion, Ring};
    use core::fmt::Write as _;
    use core::sync::atomic::Ordering;
    use proptest::prelude::*;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    /// A region of `slots` slots of `slot_size` bytes.
    fn heap(slots: usize, slot_size: u32) -> HeapRegion {
        HeapRegion::new(HEADER_SIZE + slots * slot_size as usize)
    }

    /// Every message waiting, as text.
    fn drain(rx: &mut Consumer<'_>) -> Vec<String> {
        let mut buf = [0u8; 2048];
        let mut all = Vec::new();
        while let Ok(got) = rx.try_receive(&mut buf) {
            assert_eq!(got.priority, 0);
            all.push(String::from_utf8(buf[..got.len].to_vec()).unwrap());
        }
        all
    }

    #[test]
    fn each_line_is_one_message_in_order_early_ones_first() {
        let mem = heap(16, 64);
        let (tx, mut rx) = Ring::init(mem.region().unwrap(), 64).unwrap().split();
        let mut log = LogWriter::new();
        write!(log, "first\nsec").unwrap();
        log.write_bytes(b"ond\r\n");
        assert_eq!(drain(&mut rx), Vec::<String>::new(), "kept until attached");
        log.attach(tx);
        assert!(log.is_attached());
        writeln!(log, "third").unwrap();
        log.write_bytes(b"\nfifth\nsixth");
        assert_eq!(drain(&mut rx), ["first", "second", "third", "", "fifth"]);
        log.write_bytes(b"\n");
        assert_eq!(drain(&mut rx), ["sixth"]);
        assert_eq!((log.sent(), log.dropped()), (6, 0));
    }

    #[test]
    fn a_log_its_reader_corrupted_starts_over_when_the_reader_asks() {
        let mem = heap(8, 64);
        let region = mem.region().unwrap();
        let (tx, _) = Ring::init(region, 64).unwrap().split();
        let mut log = LogWriter::new();
        log.attach(tx);
        writeln!(log, "before").unwrap();
        // The reader scribbles on the state word: the producer stops at its next line.
        region.header_words()[crate::layout::W_STATE]
            .store(0xdead, core::sync::atomic::Ordering::Relaxed);
        writeln!(log, "lost 1").unwrap();
        writeln!(log, "lost 2").unwrap();
        assert_eq!((log.sent(), log.dropped(), log.reinits()), (1, 2, 0));
        // Asked, the writer initializes the ring again at its next line, and says what it lost.
        crate::request_reinit(region);
        writeln!(log, "after").unwrap();
        assert!(!crate::reinit_requested(region));
        let mut rx = Ring::attach(region).unwrap().into_consumer();
        assert_eq!(drain(&mut rx), ["[... 2 lines dropped]", "after"]);
        assert_eq!((log.sent(), log.dropped(), log.reinits()), (2, 2, 1));
    }

    #[test]
    fn a_full_ring_drops_counts_and_marks() {
        let mem = heap(4, 64);
        let (tx, mut rx) = Ring::init(mem.region().unwrap(), 64).unwrap().split();
        let mut log = LogWriter::new();
        log.attach(tx);
        for i in 0..7 {
            writeln!(log, "line {i}").unwrap();
        }
        assert_eq!((log.sent(), log.dropped()), (4, 3));
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            rx.try_receive(&mut buf).unwrap();
        }
        writeln!(log, "line 7").unwrap();
        assert_eq!(
            drain(&mut rx),
            ["line 2", "line 3", "[... 3 lines dropped]", "line 7"]
        );
        // The marker fits, the line does not: the line counts, and the next marker says so.
        for i in 8..14 {
            writeln!(log, "line {i}").unwrap();
        }
        assert_eq!((log.sent(), log.dropped()), (9, 5));
        rx.try_receive(&mut buf).unwrap();
        writeln!(log, "line 14").unwrap();
        assert_eq!(
            drain(&mut rx),
            ["line 9", "line 10", "line 11", "[... 2 lines dropped]"]
        );
        writeln!(log, "line 15").unwrap();
        assert_eq!(drain(&mut rx), ["[... 1 line dropped]", "line 15"]);
        assert_eq!((log.sent(), log.dropped()), (10, 6));
    }

    #[test]
    fn long_lines_are_cut_at_a_character_and_marked() {
        let mem = heap(8, 32);
        let (tx, mut rx) = Ring::init(mem.region().unwrap(), 32).unwrap().split();
        let mut log = LogWriter::new();
        log.attach(tx);
        // 24 bytes fit a message of this channel.
        writeln!(log, "{}", "a".repeat(24)).unwrap();
        writeln!(log, "{}", "b".repeat(25)).unwrap();
        // The cut falls inside `é` (2 bytes at 17..19): it is kept out whole.
        writeln!(log, "{}é{}", "c".repeat(17), "d".repeat(10)).unwrap();
        let got = drain(&mut rx);
        assert_eq!(got[0], "a".repeat(24));
        assert_eq!(got[1], format!("{}{CUT_MARKER}", "b".repeat(18)));
        assert_eq!(got[2], format!("{}{CUT_MARKER}", "c".repeat(17)));
        assert!(got.iter().skip(1).all(|l| is_cut(l.as_bytes())));
        assert!(!is_cut(got[0].as_bytes()));
    }

    #[test]
    fn lines_longer_than_max_line_are_cut_even_on_big_slots() {
        let mem = heap(4, 4096);
        let (tx, mut rx) = Ring::init(mem.region().unwrap(), 4096).unwrap().split();
        let mut log = LogWriter::new();
        let long = "x".repeat(3000);
        writeln!(log, "{long}").unwrap();
        log.attach(tx);
        writeln!(log, "{long}").unwrap();
        let got = drain(&mut rx);
        assert_eq!(got.len(), 2);
        for line in got {
            assert_eq!(line.len(), MAX_LINE);
            assert!(line.ends_with(CUT_MARKER));
        }
    }

    #[test]
    fn early_overflow_is_marked_after_the_kept_lines() {
        let mem = heap(1024, 64);
        let (tx, mut rx) = Ring::init(mem.region().unwrap(), 64).unwrap().split();
        let mut log = LogWriter::new();
        let line = "y".repeat(97);
        // 100 bytes a line with its framing: 81 fit in 8 KiB.
        for _ in 0..85 {
            writeln!(log, "{line}").unwrap();
        }
        assert_eq!(log.dropped(), 4);
        log.attach(tx);
        writeln!(log, "after").unwrap();
        let got = drain(&mut rx);
        assert_eq!(got.len(), 81 + 2);
        assert!(got[..81].iter().all(|l| l.ends_with(CUT_MARKER)));
        assert_eq!(got[81], "[... 4 lines dropped]");
        assert_eq!(got[82], "after");
    }

    #[test]
    fn off_keeps_nothing_and_attach_still_works() {
        let mem = heap(8, 64);
        let (tx, mut rx) = Ring::init(mem.region().unwrap(), 64).unwrap().split();
        let mut log = LogWriter::new();
        writeln!(log, "before").unwrap();
        log.off();
        writeln!(log, "ignored").unwrap();
        assert_eq!((log.sent(), log.dropped()), (0, 0));
        log.attach(tx);
        writeln!(log, "late").unwrap();
        assert_eq!(drain(&mut rx), ["late"]);
    }

    #[test]
    fn find_byte_at_every_offset() {
        for len in 0..20 {
            for at in 0..len {
                // Neighbours one above and one below the byte, which a sloppy quadword test
                // would confuse with it.
                let mut text = std::vec![b'\x0b'; len];
                if at > 0 {
                    text[at - 1] = b'\x09';
                }
                text[at] = b'\n';
                assert_eq!(find_byte(&text, b'\n'), Some(at), "{text:?}");
            }
            assert_eq!(find_byte(&std::vec![b'\x0b'; len], b'\n'), None);
        }
    }

    #[test]
    fn markers_read_back() {
        let mut buf = [0u8; MARKER_MAX];
        for n in [1, 2, 10, u64::MAX] {
            let len = drop_marker(n, &mut buf);
            assert_eq!(parse_drop_marker(&buf[..len]), Some(n));
        }
        let len = drop_marker(1, &mut buf);
        assert_eq!(&buf[..len], b"[... 1 line dropped]");
        for not in [
            &b"[... lines dropped]"[..],
            b"[... x lines dropped]",
            b"[... 3 lines dropped] ",
            b"hello",
            b"[... 99999999999999999999999 lines dropped]",
        ] {
            assert_eq!(parse_drop_marker(not), None);
        }
    }

    proptest! {
        /// The quadword scan finds what a byte loop finds, at every length and alignment.
        #[test]
        fn find_byte_is_the_first_position(
            text in proptest::collection::vec(any::<u8>(), 0..100),
            byte in any::<u8>(),
        ) {
            prop_assert_eq!(find_byte(&text, byte), text.iter().position(|&b| b == byte));
        }

        /// Whatever the consumer writes into the header, the writer neither panics nor blocks,
        /// and every line is either sent or counted as dropped.
        #[test]
        fn a_hostile_consumer_cannot_hurt_the_writer(
            pokes in proptest::collection::vec((0usize..64, any::<u64>(), 0usize..4), 0..40),
        ) {
            let mem = heap(4, 64);
            let (tx, _rx) = Ring::init(mem.region().unwrap(), 64).unwrap().split();
            let mut log = LogWriter::new();
            log.attach(tx);
            let mut lines = 0u64;
            for (word, value, n) in pokes {
                mem.words()[word].store(value, Ordering::Relaxed);
                for _ in 0..n {
                    writeln!(log, "a line of text that is long enough to be cut here").unwrap();
                    lines += 1;
                }
            }
            prop_assert_eq!(log.sent() + log.dropped(), lines);
        }

        /// Any text, in any pieces: no panic, and the count of lines adds up.
        #[test]
        fn any_text_in_any_pieces(pieces in proptest::collection::vec(any::<Vec<u8>>(), 0..20)) {
            let mem = heap(64, 128);
            let (tx, mut rx) = Ring::init(mem.region().unwrap(), 128).unwrap().split();
            let mut log = LogWriter::new();
            log.attach(tx);
            let mut lines = 0u64;
            for p in &pieces {
                log.write_bytes(p);
                lines += p.iter().filter(|&&b| b == b'\n').count() as u64;
            }
            prop_assert_eq!(log.sent() + log.dropped(), lines);
            let mut buf = [0u8; 128];
            while let Ok(got) = rx.try_receive(&mut buf) {
                prop_assert!(got.len <= 120);
                prop_assert!(!buf[..got.len].contains(&b'\n'));
            }
        }
    }
}
