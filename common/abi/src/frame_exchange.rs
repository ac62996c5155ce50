//! The cyclic frame exchange between an RT NIC driver and its peer on the wire, the way an
//! EtherCAT master runs its bus: every cycle the master sends one frame, the peer (the slaves,
//! or a test harness standing in for them) sends it back with its working counter raised, and
//! the master checks that the answer is there before the next cycle. The frame layout and the
//! master's bookkeeping ([`Exchange`]) are defined here, once, for the RT driver and for the
//! peer the tests run.
//!
//! A frame is 60 bytes (the Ethernet minimum without its FCS):
//!
//! ```text
//!  0..6   destination MAC: broadcast from the master, the master's own MAC in an answer
//!  6..12  source MAC
//! 12..14  EtherType 0x88a4 (EtherCAT's), big-endian
//! 14..18  magic "BKCY"
//! 18..26  sequence number, little-endian u64
//! 26..28  working counter, little-endian u16: 0 in a request, 1 in an answer
//! 28..60  zero
//! ```

/// Bytes of a frame.
pub const FRAME_LEN: usize = 60;
/// The EtherType the frames carry.
pub const ETHERTYPE: u16 = 0x88a4;
/// The magic after the EtherType.
pub const MAGIC: [u8; 4] = *b"BKCY";
/// A frame whose answer has not come after this many further cycles is lost.
pub const LOST_AFTER_CYCLES: u32 = 16;

const ETHERTYPE_AT: usize = 12;
const MAGIC_AT: usize = 14;
const SEQUENCE_AT: usize = 18;
const COUNTER_AT: usize = 26;

/// The request of cycle `sequence` from the master whose MAC is `source`.
pub fn request(source: [u8; 6], sequence: u64) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    frame[..6].fill(0xff);
    frame[6..12].copy_from_slice(&source);
    frame[ETHERTYPE_AT..MAGIC_AT].copy_from_slice(&ETHERTYPE.to_be_bytes());
    frame[MAGIC_AT..SEQUENCE_AT].copy_from_slice(&MAGIC);
    frame[SEQUENCE_AT..COUNTER_AT].copy_from_slice(&sequence.to_le_bytes());
    frame
}

/// What the peer does with a frame it received: if it is a request, turns it into the answer
/// in place (addressed back to the master, from `peer`, working counter raised) and returns
/// true; anything else is left alone (false).
pub fn answer_in_place(frame: &mut [u8], peer: [u8; 6]) -> bool {
    if frame.len() < FRAME_LEN || !carries_exchange(frame) || counter(frame) != 0 {
        return false;
    }
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&peer);
    frame[COUNTER_AT..COUNTER_AT + 2].copy_from_slice(&1u16.to_le_bytes());
    true
}

/// The sequence number of an answer addressed to `master`, if the frame is one.
pub fn answered_sequence(frame: &[u8], master: [u8; 6]) -> Option<u64> {
    let is_answer = frame.len() >= FRAME_LEN
        && frame[..6] == master
        && carries_exchange(frame)
        && counter(frame) == 1;
    is_answer.then(|| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&frame[SEQUENCE_AT..COUNTER_AT]);
        u64::from_le_bytes(bytes)
    })
}

fn carries_exchange(frame: &[u8]) -> bool {
    frame[ETHERTYPE_AT..MAGIC_AT] == ETHERTYPE.to_be_bytes()
        && frame[MAGIC_AT..SEQUENCE_AT] == MAGIC
}

fn counter(frame: &[u8]) -> u16 {
    u16::from_le_bytes([frame[COUNTER_AT], frame[COUNTER_AT + 1]])
}

/// What an answer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The answer to this cycle's frame: its round trip in nanoseconds.
    InTime(u64),
    /// The answer to an earlier cycle's frame.
    Late,
    /// No answer this exchange waits for (a duplicate, a sequence never sent or given up on).
    Bad,
}

/// The master's side: which frames are out, and the counts a summary reports.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// The frame of the current cycle: sequence, when it was sent, whether answered.
    current: Option<(u64, u64, bool)>,
    /// Frames of earlier cycles still unanswered: bit `k` is the frame `k` cycles before the
    /// current one (bits 1 to [`LOST_AFTER_CYCLES`]).
    overdue: u32,
    next_sequence: u64,
    pub cycles: u64,
    pub answered: u64,
    pub late: u64,
    pub lost: u64,
    pub bad: u64,
}

impl Exchange {
    /// A new exchange; the first frame is sequence 0.
    pub const fn new() -> Self {
        Self {
            current: None,
            overdue: 0,
            next_sequence: 0,
            cycles: 0,
            answered: 0,
            late: 0,
            lost: 0,
            bad: 0,
        }
    }

    /// Starts a cycle whose frame is sent at `now_ns`; returns its sequence number. The last
    /// cycle's frame, if unanswered, becomes overdue; one overdue for more than
    /// [`LOST_AFTER_CYCLES`] cycles is counted lost.
    pub fn start_cycle(&mut self, now_ns: u64) -> u64 {
        let mut overdue = u64::from(self.overdue) << 1;
        if let Some((_, _, false)) = self.current {
            overdue |= 1 << 1;
        }
        self.lost += u64::from((overdue >> (LOST_AFTER_CYCLES + 1)).count_ones());
        self.overdue = (overdue & ((1 << (LOST_AFTER_CYCLES + 1)) - 1)) as u32;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.current = Some((sequence, now_ns, false));
        self.cycles += 1;
        sequence
    }

    /// Takes the answer to frame `sequence`, seen at `now_ns`.
    pub fn answer(&mut self, sequence: u64, now_ns: u64) -> Answer {
        let Some((current, sent_ns, answered)) = self.current else {
            self.bad += 1;
            return Answer::Bad;
        };
        if sequence == current && !answered {
            self.current = Some((current, sent_ns, true));
            self.answered += 1;
            return Answer::InTime(now_ns.saturating_sub(sent_ns));
        }
        let age = current.wrapping_sub(sequence);
        if (1..=u64::from(LOST_AFTER_CYCLES)).contains(&age) && self.overdue & (1 << age) != 0 {
            self.overdue &= !(1 << age);
            self.late += 1;
            return Answer::Late;
        }
        self.bad += 1;
        Answer::Bad
    }

    /// Whether the current cycle's frame has been answered.
    pub fn current_answered(&self) -> bool {
        matches!(self.current, Some((_, _, true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

    #[test]
    fn a_request_is_answered_and_recognised() {
        let mut frame = request(MASTER, 0x1234_5678_9abc);
        assert_eq!(frame[..6], [0xff; 6]);
        assert_eq!(
            answered_sequence(&frame, MASTER),
            None,
            "a request is no answer"
        );
        assert!(answer_in_place(&mut frame, PEER));
        assert_eq!(frame[..6], MASTER);
        assert_eq!(frame[6..12], PEER);
        assert_eq!(answered_sequence(&frame, MASTER), Some(0x1234_5678_9abc));
        assert_eq!(
            answered_sequence(&frame, PEER),
            None,
            "addressed to someone else"
        );
        assert!(
            !answer_in_place(&mut frame, PEER),
            "an answer is not answered again"
        );
        let mut other = frame;
        other[12] = 0x08;
        assert_eq!(answered_sequence(&other, MASTER), None, "another EtherType");
        let mut other = frame;
        other[14] = b'X';
        assert_eq!(answered_sequence(&other, MASTER), None, "another magic");
        assert_eq!(answered_sequence(&frame[..40], MASTER), None, "too short");
        assert!(!answer_in_place(&mut [0u8; 20], PEER));
    }

    #[test]
    fn answers_in_time_late_lost_and_bad_are_counted() {
        let mut x = Exchange::new();
        assert_eq!(x.answer(0, 5), Answer::Bad, "nothing sent yet");
        let s0 = x.start_cycle(1_000);
        assert_eq!(x.answer(s0, 1_400), Answer::InTime(400));
        assert!(x.current_answered());
        assert_eq!(x.answer(s0, 1_500), Answer::Bad, "a duplicate");
        let s1 = x.start_cycle(2_000);
        let s2 = x.start_cycle(3_000);
        assert_eq!(x.answer(s1, 3_100), Answer::Late);
        assert_eq!(x.answer(s1, 3_200), Answer::Bad, "late twice");
        assert_eq!(x.answer(s2, 3_300), Answer::InTime(300));
        assert_eq!(x.answer(99, 3_400), Answer::Bad, "never sent");
        // Sequence 3 never answered: lost once it is more than LOST_AFTER_CYCLES old.
        x.start_cycle(4_000);
        for i in 0..LOST_AFTER_CYCLES {
            assert_eq!(x.lost, 0, "cycle {i}");
            let s = x.start_cycle(5_000 + u64::from(i));
            x.answer(s, 5_000 + u64::from(i));
        }
        x.start_cycle(30_000);
        assert_eq!(x.lost, 1);
        assert_eq!(x.answer(3, 30_001), Answer::Bad, "given up on");
        assert_eq!(
            (x.cycles, x.answered, x.late, x.lost, x.bad),
            (
                u64::from(LOST_AFTER_CYCLES) + 5,
                u64::from(LOST_AFTER_CYCLES) + 2,
                1,
                1,
                5
            )
        );
    }

    proptest::proptest! {
        /// Whatever answers come, in whatever order (in time, late, twice, for frames never
        /// sent or long given up on), every frame sent is answered in time, late, lost or
        /// still out, exactly once, and every answer taken is counted once.
        #[test]
        fn frames_and_answers_are_each_counted_once(
            steps in proptest::collection::vec((0u8..4, 0u64..40), 0..400)
        ) {
            let mut x = Exchange::new();
            let mut answers = 0u64;
            let mut now = 0u64;
            for (kind, back) in steps {
                now += 100;
                if kind == 0 {
                    x.start_cycle(now);
                } else {
                    // An answer to the frame `back` cycles before the next one.
                    x.answer(x.next_sequence.wrapping_sub(1 + back), now);
                    answers += 1;
                }
                let current_out = u64::from(matches!(x.current, Some((_, _, false))));
                let out = current_out + u64::from(x.overdue.count_ones());
                proptest::prop_assert_eq!(x.answered + x.late + x.lost + out, x.cycles);
                proptest::prop_assert_eq!(x.answered + x.late + x.bad, answers);
                proptest::prop_assert_eq!(x.overdue & 1, 0);
                proptest::prop_assert_eq!(x.overdue >> (LOST_AFTER_CYCLES + 1), 0);
            }
        }
    }

    #[test]
    fn every_frame_ends_counted_once() {
        // Answer every third frame in time, every third one cycle late, never the rest.
        let mut x = Exchange::new();
        let mut late = None;
        for cycle in 0..1000u64 {
            let s = x.start_cycle(cycle * 1000);
            if let Some(l) = late.take() {
                assert_eq!(x.answer(l, cycle * 1000 + 1), Answer::Late);
            }
            match cycle % 3 {
                0 => assert_eq!(x.answer(s, cycle * 1000 + 10), Answer::InTime(10)),
                1 => late = Some(s),
                _ => {}
            }
        }
        for _ in 0..=LOST_AFTER_CYCLES {
            x.start_cycle(2_000_000);
        }
        // The tail's frames are still out (overdue, not yet lost); every other one is counted
        // once.
        let tail = u64::from(LOST_AFTER_CYCLES) + 1;
        assert_eq!((x.answered, x.late, x.lost, x.bad), (334, 333, 333, 0));
        assert_eq!(x.answered + x.late + x.lost, x.cycles - tail);
    }
}
