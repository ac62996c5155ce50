//! `bulkhead ping`: the end-to-end check against an RT echo task that copies every message
//! from `--to` to `--from` unchanged, with the same priority.
//!
//! # Messages
//!
//! Message `seq` (0, 1, 2, ...) is a deterministic function of `seq` and the largest message
//! both channels take (`max`):
//!
//! - its length: 1 for `seq % 8 == 0`, `max` for `seq % 8 == 1`, `min(8, max)` for
//!   `seq % 8 == 2`, else pseudo-random in `1..=max`;
//! - its priority: pseudo-random among [`PRIORITIES`];
//! - its bytes: the first `len` bytes of `seq` (u32 LE), a checksum (u32 LE, FNV-1a over the
//!   run's nonce (u64 LE), `seq` LE, `len` as u32 LE and the body), and a pseudo-random body
//!   seeded by `seq` and the nonce. A message shorter than 8 bytes carries only a prefix of that
//!   header: below 4 bytes, the low bytes of `seq`. The nonce (from the clock and the process
//!   id) differs from run to run, so that a leftover of an earlier run reads as corrupt rather
//!   than as an echo.
//!
//! A reply is matched to the message it echoes by its sequence number (for a reply shorter
//! than 4 bytes, by the most recent message whose low bytes agree: the window keeps that
//! unique), then compared byte for byte, with its length and priority, to that message
//! regenerated.
//!
//! # Flow
//!
//! At most `window = min(slots(to), slots(from)) - 1` (and at most [`MAX_WINDOW`]) messages
//! are outstanding counting from the oldest one not yet echoed, so neither ring can fill up and
//! the echo task never blocks. Replies of different priorities may overtake one another (the
//! echo task receives highest priority first); within a priority they must come in the order
//! sent.
//!
//! Before starting, `ping` waits (at most `--timeout-ms`) for the echo task to empty `--to` of
//! anything an earlier run left there, then discards what is on `--from` (listening a little
//! longer if `--to` held leftovers); discarded messages are counted on standard error.
//!
//! # Counts
//!
//! - `sent`: messages sent;
//! - `received`: distinct messages echoed intact (including reordered ones);
//! - `lost`: `sent - received` at the end: messages with no intact reply when all others were
//!   in, or when no reply had come for `--timeout-ms`;
//! - `duplicated`: intact replies to a message already echoed;
//! - `corrupt`: replies that match no message sent, or differ from it (bytes, length or
//!   priority);
//! - `reordered`: intact replies that came after a reply to a later message of the same
//!   priority;
//! - `max_rtt_us`: the longest time from sending a message to receiving its first intact reply.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_channel::poll::Backoff;
use bulkhead_channel::{Announcements, ChannelReceiver, ChannelSender, ErrorKind};
use serde::Serialize;

use crate::{Cause, Failure, out};

/// The priorities messages get.
pub const PRIORITIES: [u8; 4] = [0, 1, 7, 31];
/// Most messages outstanding (so a reply of 1 byte still names its message uniquely).
pub const MAX_WINDOW: u32 = 128;
/// How long to keep listening for late duplicates once every reply is in.
const GRACE: Duration = Duration::from_millis(10);
/// How long to keep discarding late leftovers of an earlier run once `--to` is empty.
const LEFTOVER_GRACE: Duration = Duration::from_millis(50);

/// What `ping` was asked to do.
#[derive(Debug)]
pub struct Options<'a> {
    /// The linux-to-rt channel.
    pub to: &'a str,
    /// The rt-to-linux channel.
    pub from: &'a str,
    /// Messages to send.
    pub count: u32,
    /// Give up after this long without a reply.
    pub timeout: Duration,
    /// Print JSON.
    pub json: bool,
}

/// The summary.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    sent: u32,
    received: u32,
    lost: u32,
    duplicated: u32,
    corrupt: u32,
    reordered: u32,
    max_rtt_us: u64,
    /// Every message sent and echoed intact, nothing else wrong.
    ok: bool,
}

impl Report {
    /// The summary line.
    pub fn line(&self) -> String {
        format!(
            "bulkhead-ping: sent {} received {} lost {} duplicated {} corrupt {} reordered {} \
             max_rtt_us {}",
            self.sent,
            self.received,
            self.lost,
            self.duplicated,
            self.corrupt,
            self.reordered,
            self.max_rtt_us
        )
    }
}

/// One step of splitmix64.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a, 32 bits, over several pieces.
fn fnv1a(pieces: &[&[u8]]) -> u32 {
    let mut hash = 0x811c_9dc5u32;
    for byte in pieces.iter().flat_map(|p| p.iter()) {
        hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
    }
    hash
}

/// Length and priority of message `seq`, for messages of at most `max` bytes.
pub fn shape(seq: u32, max: usize) -> (usize, u8) {
    let mut state = u64::from(seq) ^ 0x5ead_5eed_0000_0000;
    let r = splitmix64(&mut state);
    let max = max.max(1);
    let len = match seq % 8 {
        0 => 1,
        1 => max,
        2 => max.min(8),
        _ => 1 + (r % max as u64) as usize,
    };
    let priority = PRIORITIES[((r >> 40) % PRIORITIES.len() as u64) as usize];
    (len, priority)
}

/// The bytes of message `seq` of length `len` in the run of `nonce`, into `out`.
pub fn fill(seq: u32, len: usize, nonce: u64, out: &mut Vec<u8>) {
    out.clear();
    let mut state = u64::from(seq) ^ 0xb0d1_b0d1_0000_0000 ^ nonce.rotate_left(17);
    let body_len = len.saturating_sub(8);
    let mut body = Vec::with_capacity(body_len);
    while body.len() < body_len {
        let word = splitmix64(&mut state).to_le_bytes();
        let take = word.len().min(body_len - body.len());
        body.extend_from_slice(&word[..take]);
    }
    let check = fnv1a(&[
        &nonce.to_le_bytes(),
        &seq.to_le_bytes(),
        &(len as u32).to_le_bytes(),
        &body,
    ]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&check.to_le_bytes());
    out.truncate(len);
    out.extend_from_slice(&body);
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seq {
    /// Not sent yet, or sent and not echoed intact yet.
    Pending,
    /// Echoed intact.
    Received,
}

/// The books of a ping run.
#[derive(Debug)]
pub struct Tracker {
    count: u32,
    max: usize,
    window: u32,
    nonce: u64,
    /// Next message to send.
    next: u32,
    /// Oldest message not echoed intact.
    oldest: u32,
    seqs: Vec<Seq>,
    sent_at: Vec<Option<Instant>>,
    /// Highest sequence number echoed per priority.
    last: [Option<u32>; 256],
    report: Report,
    scratch: Vec<u8>,
}

impl Tracker {
    /// Books for `count` messages of at most `max` bytes, at most `window` outstanding, in
    /// the run of `nonce`.
    pub fn new(count: u32, max: usize, window: u32, nonce: u64) -> Self {
        Self {
            count,
            max,
            window: window.clamp(1, MAX_WINDOW),
            nonce,
            next: 0,
            oldest: 0,
            seqs: vec![Seq::Pending; count as usize],
            sent_at: vec![None; count as usize],
            last: [None; 256],
            report: Report::default(),
            scratch: Vec::new(),
        }
    }

    /// The next message to send, if the window allows one: its bytes and priority.
    pub fn next_message(&mut self) -> Option<(&[u8], u8)> {
        if self.next >= self.count || self.next - self.oldest >= self.window {
            return None;
        }
        let (len, priority) = shape(self.next, self.max);
        fill(self.next, len, self.nonce, &mut self.scratch);
        Some((&self.scratch, priority))
    }

    /// The message from [`Tracker::next_message`] went out at `now`.
    pub fn sent(&mut self, now: Instant) {
        if let Some(at) = self.sent_at.get_mut(self.next as usize) {
            *at = Some(now);
        }
        self.next += 1;
        self.report.sent += 1;
    }

    /// The sequence number a reply names, if it names one that was sent.
    fn seq_of(&self, reply: &[u8]) -> Option<u32> {
        if let Some(bytes) = reply.first_chunk::<4>() {
            return Some(u32::from_le_bytes(*bytes)).filter(|&s| s < self.next);
        }
        if reply.is_empty() {
            return None;
        }
        // 1 to 3 bytes: the low bytes of the most recent message that has them.
        let newest = u64::from(self.next.checked_sub(1)?);
        let modulus = 1u64 << (8 * reply.len());
        let mut low = [0u8; 8];
        for (to, from) in low.iter_mut().zip(reply) {
            *to = *from;
        }
        let partial = u64::from_le_bytes(low);
        let back = (newest % modulus + modulus - partial) % modulus;
        newest.checked_sub(back).map(|s| s as u32)
    }

    /// A reply of `priority` arrived at `now`.
    pub fn reply(&mut self, reply: &[u8], priority: u8, now: Instant) {
        let Some(seq) = self.seq_of(reply) else {
            self.report.corrupt += 1;
            return;
        };
        let (len, want) = shape(seq, self.max);
        fill(seq, len, self.nonce, &mut self.scratch);
        if priority != want || reply != self.scratch.as_slice() {
            self.report.corrupt += 1;
            return;
        }
        let Some(state) = self.seqs.get_mut(seq as usize) else {
            self.report.corrupt += 1;
            return;
        };
        if *state == Seq::Received {
            self.report.duplicated += 1;
            return;
        }
        *state = Seq::Received;
        self.report.received += 1;
        if let Some(Some(at)) = self.sent_at.get(seq as usize) {
            let rtt =
                u64::try_from(now.saturating_duration_since(*at).as_micros()).unwrap_or(u64::MAX);
            self.report.max_rtt_us = self.report.max_rtt_us.max(rtt);
        }
        let last = &mut self.last[usize::from(priority)];
        match *last {
            Some(l) if l > seq => self.report.reordered += 1,
            _ => *last = Some(seq),
        }
        while self.seqs.get(self.oldest as usize) == Some(&Seq::Received) {
            self.oldest += 1;
        }
    }

    /// Every message sent and echoed intact.
    pub fn done(&self) -> bool {
        self.oldest >= self.count
    }

    /// The summary.
    pub fn report(&self) -> Report {
        let mut report = self.report.clone();
        report.lost = report.sent - report.received;
        report.ok = report.sent == self.count
            && report.received == self.count
            && report.duplicated == 0
            && report.corrupt == 0
            && report.reordered == 0;
        report
    }
}

/// `bulkhead ping`.
pub fn run(announcements: &Announcements, mem: &Path, opts: Options<'_>) -> Result<(), Failure> {
    let mut tx =
        ChannelSender::open_with(announcements, mem, opts.to).map_err(Failure::on(opts.to))?;
    let mut rx = ChannelReceiver::open_with(announcements, mem, opts.from)
        .map_err(Failure::on(opts.from))?;
    let max = tx.max_message().min(rx.max_message());
    let window = tx
        .geometry()
        .slot_count()
        .min(rx.geometry().slot_count())
        .saturating_sub(1);
    let mut buf = vec![0; rx.max_message()];
    quiesce(&mut tx, &mut rx, &mut buf, &opts)?;
    let mut books = Tracker::new(opts.count, max, window, nonce());
    let outcome = exchange(&mut books, &mut tx, &mut rx, &mut buf, &opts);
    let report = books.report();
    if opts.json {
        let text = serde_json::to_string(&report).map_err(|e| Failure {
            channel: None,
            cause: Cause::Io("format JSON", e.into()),
        })?;
        out(format_args!("{text}"))?;
    } else {
        out(format_args!("{}", report.line()))?;
        // The RT side's doorbells: rung when it slept waiting for Linux (under Bulkhead),
        // or not (elsewhere, or on `poll` channels); and this side's waits that the channel
        // device's interrupt ended (when Linux has it).
        out(format_args!(
            "bulkhead-ping: doorbells rung {} not rung {}; woken by interrupts {}",
            tx.doorbells_rung() + rx.doorbells_rung(),
            tx.doorbells_not_rung() + rx.doorbells_not_rung(),
            tx.interrupt_wakes() + rx.interrupt_wakes()
        ))?;
    }
    outcome?;
    if report.ok {
        return Ok(());
    }
    let code = if report.duplicated + report.corrupt + report.reordered > 0 {
        1
    } else {
        eprintln!(
            "bulkhead-ping: channel `{}`: {} replies missing after {} ms without one ({} of {} \
             messages sent)",
            opts.from,
            report.lost,
            opts.timeout.as_millis(),
            report.sent,
            opts.count
        );
        3
    };
    Err(Failure {
        channel: None,
        cause: Cause::Reported(ExitCode::from(code)),
    })
}

/// A number that differs from run to run.
fn nonce() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut state = (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32);
    splitmix64(&mut state)
}

/// Lets the echo task finish with what an earlier run left in `--to`, and discards what is on
/// `--from`.
fn quiesce(
    tx: &mut ChannelSender,
    rx: &mut ChannelReceiver,
    buf: &mut [u8],
    opts: &Options<'_>,
) -> Result<(), Failure> {
    let start = Instant::now();
    let mut backoff = Backoff::new();
    let mut leftovers = false;
    loop {
        let current = tx.attr().map_err(Failure::on(opts.to))?.current;
        if current == 0 {
            break;
        }
        leftovers = true;
        if start.elapsed() >= opts.timeout {
            eprintln!(
                "bulkhead-ping: channel `{}` still holds {current} messages of an earlier run",
                opts.to
            );
            break;
        }
        backoff.wait(Some(start + opts.timeout));
    }
    let until = Instant::now()
        + if leftovers {
            LEFTOVER_GRACE
        } else {
            Duration::ZERO
        };
    let mut stale = 0u64;
    loop {
        match rx.try_receive(buf) {
            Ok(_) => stale += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= until {
                    break;
                }
                backoff.wait(Some(until));
            }
            Err(e) => return Err(Failure::on(opts.from)(e)),
        }
    }
    if stale > 0 {
        eprintln!(
            "bulkhead-ping: discarded {stale} messages of an earlier run on `{}`",
            opts.from
        );
    }
    Ok(())
}

/// Sends and receives until every reply is in, or none has come for `opts.timeout`.
fn exchange(
    books: &mut Tracker,
    tx: &mut ChannelSender,
    rx: &mut ChannelReceiver,
    buf: &mut [u8],
    opts: &Options<'_>,
) -> Result<(), Failure> {
    let mut backoff = Backoff::new();
    let mut last_progress = Instant::now();
    let mut grace: Option<Instant> = None;
    loop {
        let mut progress = false;
        while let Some((msg, priority)) = books.next_message() {
            match tx.try_send(msg, priority) {
                Ok(()) => {
                    books.sent(Instant::now());
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(Failure::on(opts.to)(e)),
            }
        }
        loop {
            match rx.try_receive(buf) {
                Ok((len, priority)) => {
                    books.reply(buf.get(..len).unwrap_or_default(), priority, Instant::now());
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(Failure::on(opts.from)(e)),
            }
        }
        let now = Instant::now();
        if books.done() {
            // Listen a little longer for late duplicates.
            let until = *grace.get_or_insert(now + GRACE);
            if now >= until {
                return Ok(());
            }
            backoff.wait(Some(until));
            continue;
        }
        if progress {
            backoff.reset();
            last_progress = now;
        } else if now >= last_progress + opts.timeout {
            return Ok(());
        } else {
            // Nothing to do but wait for a reply: a blocking receive, which sleeps on the
            // channel device's interrupt where Linux has it (and polls elsewhere).
            match rx.receive_until(buf, last_progress + opts.timeout) {
                Ok((len, priority)) => {
                    books.reply(buf.get(..len).unwrap_or_default(), priority, Instant::now());
                    backoff.reset();
                    last_progress = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => {}
                Err(e) => return Err(Failure::on(opts.from)(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: u64 = 0x0123_4567_89ab_cdef;

    fn message(seq: u32, max: usize) -> (Vec<u8>, u8) {
        let (len, priority) = shape(seq, max);
        let mut out = Vec::new();
        fill(seq, len, NONCE, &mut out);
        assert_eq!(out.len(), len);
        (out, priority)
    }

    #[test]
    fn messages_are_deterministic_and_cover_the_sizes() {
        let max = 56;
        let mut lens = std::collections::BTreeSet::new();
        let mut prios = std::collections::BTreeSet::new();
        for seq in 0..400 {
            let (m, p) = message(seq, max);
            assert_eq!(message(seq, max), (m.clone(), p));
            assert!((1..=max).contains(&m.len()));
            lens.insert(m.len());
            prios.insert(p);
            if m.len() >= 8 {
                assert_eq!(m[..4], seq.to_le_bytes());
                let len = (m.len() as u32).to_le_bytes();
                let check = fnv1a(&[&NONCE.to_le_bytes(), &seq.to_le_bytes(), &len, &m[8..]]);
                assert_eq!(m[4..8], check.to_le_bytes());
            }
        }
        assert!(
            lens.contains(&1) && lens.contains(&max) && lens.len() > 40,
            "{lens:?}"
        );
        assert_eq!(prios.into_iter().collect::<Vec<_>>(), PRIORITIES);
        assert_eq!(message(0, 1).0.len(), 1);
    }

    /// Sends everything through a perfect echo, in an order that the ring allows: the replies
    /// of each priority in order, priorities interleaved.
    #[test]
    fn a_perfect_echo_is_ok() {
        let now = Instant::now();
        let mut books = Tracker::new(500, 56, 7, NONCE);
        let mut echo: Vec<(Vec<u8>, u8)> = Vec::new();
        while !books.done() {
            while let Some((m, p)) = books.next_message() {
                echo.push((m.to_vec(), p));
                books.sent(now);
            }
            // Highest priority first, like the echo task's receiver.
            let top = echo.iter().map(|e| e.1).max().unwrap();
            let i = echo.iter().position(|e| e.1 == top).unwrap();
            let (m, p) = echo.remove(i);
            books.reply(&m, p, now);
        }
        let r = books.report();
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.line(),
            "bulkhead-ping: sent 500 received 500 lost 0 duplicated 0 corrupt 0 reordered 0 \
             max_rtt_us 0"
        );
    }

    #[test]
    fn another_runs_message_is_corrupt() {
        let now = Instant::now();
        let mut books = Tracker::new(8, 56, 7, NONCE);
        while books.next_message().is_some() {
            books.sent(now);
        }
        // Message 1 has the largest size: it carries the nonce's mark.
        let (len, priority) = shape(1, 56);
        let mut other = Vec::new();
        fill(1, len, NONCE ^ 1, &mut other);
        books.reply(&other, priority, now);
        let mut ours = Vec::new();
        fill(1, len, NONCE, &mut ours);
        assert_ne!(ours, other);
        books.reply(&ours, priority, now);
        let r = books.report();
        assert_eq!((r.received, r.corrupt), (1, 1));
    }

    #[test]
    fn faults_are_counted() {
        let now = Instant::now();
        let mut books = Tracker::new(8, 56, 7, NONCE);
        let mut sent = Vec::new();
        while let Some((m, p)) = books.next_message() {
            sent.push((m.to_vec(), p));
            books.sent(now);
        }
        assert_eq!(sent.len(), 7, "the window");
        // Message 0 is 1 byte: named by its low byte.
        assert_eq!(sent[0].0, [0]);
        books.reply(&sent[0].0, sent[0].1, now);
        books.reply(&sent[0].0, sent[0].1, now);
        // Flip a bit of message 1.
        let mut bad = sent[1].0.clone();
        *bad.last_mut().unwrap() ^= 1;
        books.reply(&bad, sent[1].1, now);
        // Wrong priority.
        books.reply(&sent[1].0, sent[1].1.wrapping_add(1), now);
        // A sequence number never sent.
        books.reply(&[9, 0, 0, 0, 0, 0, 0, 0], 0, now);
        // Two of one priority, the later first.
        let (a, b) = (2..7)
            .flat_map(|a| (a + 1..7).map(move |b| (a, b)))
            .find(|&(a, b)| sent[a].1 == sent[b].1)
            .expect("two of 5 messages share one of 4 priorities");
        books.reply(&sent[b].0, sent[b].1, now);
        books.reply(&sent[a].0, sent[a].1, now);
        let r = books.report();
        assert_eq!((r.sent, r.duplicated, r.corrupt), (7, 1, 3));
        assert!(!r.ok);
        assert_eq!((r.received, r.lost, r.reordered), (3, 4, 1));
    }
}
