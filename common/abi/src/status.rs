//! The RT partition's status report: one message the RT kernel sends on an `rt-to-linux`
//! channel every report period (kernel option `status=CHANNEL`), and the one place its layout
//! is defined. The Linux tool (`bulkhead rt`) decodes it.
//!
//! A message is a [`StatusHeader`], then `cpus` [`CpuLatency`] records (the latency task's
//! cumulative summary and wake-up latency histogram per RT CPU, at most [`MAX_REPORT_CPUS`]),
//! then `tasks` [`TaskStatus`] records (every task, idle tasks included, as many as fit). All
//! little-endian `#[repr(C)]` without padding; records are read by copy, so a message needs no
//! alignment. [`encode`] writes one; [`Status::parse`] checks one (the reader treats the
//! message as untrusted: magic, version, counts, length and each CPU's histogram must agree).
//! `common/abi/fuzz` holds a cargo-fuzz target for the parser (outside the workspace; how
//! to build it on stable is in its `Cargo.toml`).
//!
//! # The latency histogram
//!
//! Each CPU record carries a coarse histogram of the latency task's samples in
//! [`HISTOGRAM_BUCKETS`] log-2-spaced buckets of whole microseconds: bucket 0 holds
//! `[0, 1 µs)`, bucket `k` (1 to 9) holds `[2^(k-1) µs, 2^k µs)`, and the last, bucket 10,
//! holds `[512 µs, 1 ms)`, cut short at [`HISTOGRAM_RANGE_NS`] where the kernel's own 1 µs
//! histogram ends. Samples of 1 ms or more are the record's `overflow`, so the buckets and
//! `overflow` add up to `samples` ([`histogram_bucket`] maps a latency to its bucket,
//! [`histogram_bucket_range_ns`] gives a bucket's edges). Counts are `u64` and saturate.
//!
//! # Size
//!
//! A [`CpuLatency`] is 160 bytes: a report of [`MAX_REPORT_CPUS`] CPUs takes 1296 bytes, which
//! leaves room for 13 tasks in the 2040-byte messages of a channel with 2048-byte slots (as the
//! example configs give `rt-status`); with 2 RT CPUs, 30 tasks fit.

use core::fmt;
use core::mem::size_of;
use core::ops::Range;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// First bytes of a status message.
pub const STATUS_MAGIC: [u8; 4] = *b"BKST";
/// Layout version of a status message (2: each CPU record carries a latency histogram).
pub const STATUS_VERSION: u16 = 2;
/// Most [`CpuLatency`] records in a message (the RT kernel's CPU limit).
pub const MAX_REPORT_CPUS: usize = crate::limits::MAX_RT_CPUS;
/// Bytes of a task name (UTF-8, NUL-padded, cut to fit).
pub const TASK_NAME_LEN: usize = 16;

/// The start of a status message.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct StatusHeader {
    /// [`STATUS_MAGIC`].
    pub magic: [u8; 4],
    /// [`STATUS_VERSION`].
    pub version: u16,
    /// [`CpuLatency`] records that follow.
    pub cpus: u8,
    /// [`TaskStatus`] records after those.
    pub tasks: u8,
    /// The RT kernel's clock when the report was made.
    pub uptime_ns: u64,
}

/// The latency task's cumulative summary on one RT CPU (as its `latency cpu=...` line).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CpuLatency {
    /// The RT kernel's CPU index.
    pub cpu: u32,
    /// Zero.
    pub reserved: u32,
    pub samples: u64,
    pub min_ns: u64,
    pub avg_ns: u64,
    pub max_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    /// Periods whose job started after its deadline.
    pub misses: u64,
    /// Samples of [`HISTOGRAM_RANGE_NS`] or more.
    pub overflow: u64,
    /// Samples below [`HISTOGRAM_RANGE_NS`] per latency bucket (see the module's docs); with
    /// `overflow` they add up to `samples`.
    pub histogram: [u64; HISTOGRAM_BUCKETS],
}

/// Buckets of a [`CpuLatency`] histogram.
pub const HISTOGRAM_BUCKETS: usize = 11;
/// Where the histogram ends: samples at or beyond it are counted in `overflow` only.
pub const HISTOGRAM_RANGE_NS: u64 = 1_000_000;
const NS_PER_US: u64 = 1_000;

/// The histogram bucket of a latency of `ns` nanoseconds; `None` at [`HISTOGRAM_RANGE_NS`] or
/// beyond (an overflow).
pub const fn histogram_bucket(ns: u64) -> Option<usize> {
    if ns >= HISTOGRAM_RANGE_NS {
        return None;
    }
    // Whole microseconds, below 1000: the bucket is their bit length (0 for 0 µs).
    let us = ns / NS_PER_US;
    Some((u64::BITS - us.leading_zeros()) as usize)
}

/// The nanoseconds bucket `bucket` of the histogram covers (the end excluded); `None` past
/// the last.
pub const fn histogram_bucket_range_ns(bucket: usize) -> Option<Range<u64>> {
    if bucket >= HISTOGRAM_BUCKETS {
        return None;
    }
    let start = match bucket {
        0 => 0,
        k => NS_PER_US << (k - 1),
    };
    let end = NS_PER_US << bucket;
    Some(Range {
        start,
        end: if end < HISTOGRAM_RANGE_NS {
            end
        } else {
            HISTOGRAM_RANGE_NS
        },
    })
}

const _: () = {
    // The buckets tile [0, HISTOGRAM_RANGE_NS) and the mapping agrees with the edges.
    let mut k = 0;
    let mut at = 0;
    while k < HISTOGRAM_BUCKETS {
        let Some(r) = histogram_bucket_range_ns(k) else {
            panic!("a bucket without a range");
        };
        assert!(r.start == at && r.end > r.start);
        assert!(matches!(histogram_bucket(r.start), Some(b) if b == k));
        assert!(matches!(histogram_bucket(r.end - 1), Some(b) if b == k));
        at = r.end;
        k += 1;
    }
    assert!(at == HISTOGRAM_RANGE_NS && histogram_bucket(at).is_none());
};

/// The report's histogram of a finer one: `microseconds[i]` counts the samples in
/// `[i µs, (i + 1) µs)`, as the RT kernel's latency histogram does. Counts at or beyond
/// [`HISTOGRAM_RANGE_NS`] are left out (they belong to the record's `overflow`). Saturating.
pub fn histogram_from_microseconds(microseconds: &[u64]) -> [u64; HISTOGRAM_BUCKETS] {
    let mut out = [0u64; HISTOGRAM_BUCKETS];
    for (us, &count) in microseconds.iter().enumerate() {
        let bucket = (us as u64)
            .checked_mul(NS_PER_US)
            .and_then(histogram_bucket);
        match bucket.and_then(|b| out.get_mut(b)) {
            Some(c) => *c = c.saturating_add(count),
            // Every bucket after this one is beyond the range too.
            None => break,
        }
    }
    out
}

impl CpuLatency {
    /// Whether the histogram and `overflow` add up (saturating) to `samples`.
    pub fn histogram_adds_up(&self) -> bool {
        self.histogram
            .iter()
            .fold(self.overflow, |sum, &c| sum.saturating_add(c))
            == self.samples
    }
}

/// One task as the scheduler sees it.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TaskStatus {
    /// The task's name (UTF-8, NUL-padded).
    pub name: [u8; TASK_NAME_LEN],
    /// The RT kernel's CPU index it is pinned to.
    pub cpu: u16,
    /// Its base priority (higher is more urgent); 0 for an idle task.
    pub priority: u8,
    /// A [`TaskState`] as its `u8`.
    pub state: u8,
    /// Zero.
    pub reserved: u32,
    /// Time it ran (an idle task's is its CPU's idle time).
    pub cpu_time_ns: u64,
    /// Times it was made ready.
    pub wakeups: u64,
    /// Releases it missed.
    pub deadline_misses: u64,
    /// Longest time from being made ready to running.
    pub wake_max_ns: u64,
}

/// A task's scheduling state in a [`TaskStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TaskState {
    Ready = 0,
    Running = 1,
    Blocked = 2,
    Sleeping = 3,
    Suspended = 4,
}

impl TaskState {
    /// The state a byte names.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Ready,
            1 => Self::Running,
            2 => Self::Blocked,
            3 => Self::Sleeping,
            4 => Self::Suspended,
            _ => return None,
        })
    }

    /// Its name in lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Blocked => "blocked",
            Self::Sleeping => "sleeping",
            Self::Suspended => "suspended",
        }
    }
}

impl TaskStatus {
    /// Its name, if the bytes are UTF-8 (NUL padding removed).
    pub fn name(&self) -> Option<&str> {
        crate::rt_boot::nul_padded(&self.name)
    }

    /// A name cut to [`TASK_NAME_LEN`] bytes at a character boundary.
    pub fn name_bytes(name: &str) -> [u8; TASK_NAME_LEN] {
        let mut out = [0u8; TASK_NAME_LEN];
        let mut end = name.len().min(TASK_NAME_LEN);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        out[..end].copy_from_slice(&name.as_bytes()[..end]);
        out
    }
}

const HEADER: usize = size_of::<StatusHeader>();
const CPU: usize = size_of::<CpuLatency>();
const TASK: usize = size_of::<TaskStatus>();
const _: () = assert!(HEADER == 16 && CPU == 160 && TASK == 56);

/// Bytes of a message with `cpus` and `tasks` records.
pub const fn message_len(cpus: usize, tasks: usize) -> usize {
    HEADER + cpus * CPU + tasks * TASK
}

/// Why [`encode`] wrote no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer does not hold the header and the CPU records.
    TooSmall { len: usize, needed: usize },
    /// More CPU records than [`MAX_REPORT_CPUS`].
    TooManyCpus(usize),
    /// The CPU record at this index has a histogram that does not add up to its samples
    /// ([`CpuLatency::histogram_adds_up`]).
    Histogram(usize),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooSmall { len, needed } => write!(
                f,
                "a status report needs {needed} bytes for its CPUs, the buffer has {len}"
            ),
            Self::TooManyCpus(n) => write!(
                f,
                "{n} CPUs, a status report holds at most {MAX_REPORT_CPUS}"
            ),
            Self::Histogram(i) => write!(
                f,
                "CPU record {i}: histogram and overflow do not add up to the samples"
            ),
        }
    }
}

/// Writes a message into `buf`: all of `cpus`, and as many of `tasks` as fit (at most 255).
/// Returns its length, or why there is none: the CPUs are more than [`MAX_REPORT_CPUS`], one's
/// histogram does not add up, or not even the header and the CPUs fit.
pub fn encode(
    buf: &mut [u8],
    uptime_ns: u64,
    cpus: &[CpuLatency],
    tasks: &[TaskStatus],
) -> Result<usize, EncodeError> {
    if cpus.len() > MAX_REPORT_CPUS {
        return Err(EncodeError::TooManyCpus(cpus.len()));
    }
    if let Some(i) = cpus.iter().position(|c| !c.histogram_adds_up()) {
        return Err(EncodeError::Histogram(i));
    }
    let needed = message_len(cpus.len(), 0);
    let room = buf.len().checked_sub(needed).ok_or(EncodeError::TooSmall {
        len: buf.len(),
        needed,
    })?;
    let tasks = &tasks[..tasks.len().min(room / TASK).min(255)];
    let header = StatusHeader {
        magic: STATUS_MAGIC,
        version: STATUS_VERSION,
        cpus: cpus.len() as u8,
        tasks: tasks.len() as u8,
        uptime_ns,
    };
    buf[..HEADER].copy_from_slice(header.as_bytes());
    let mut at = HEADER;
    for c in cpus {
        buf[at..at + CPU].copy_from_slice(c.as_bytes());
        at += CPU;
    }
    for t in tasks {
        buf[at..at + TASK].copy_from_slice(t.as_bytes());
        at += TASK;
    }
    Ok(at)
}

/// What is wrong with a status message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusError {
    /// Shorter than its header.
    Truncated { len: usize },
    /// Not [`STATUS_MAGIC`].
    Magic,
    /// A version this build does not read (an older or newer RT kernel).
    Version(u16),
    /// More CPU records than [`MAX_REPORT_CPUS`].
    TooManyCpus(u8),
    /// The length is not what the counts say.
    Length { len: usize, expected: usize },
    /// The CPU record at this index has a histogram that does not add up to its samples.
    Histogram(usize),
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { len } => write!(f, "status message: {len} bytes, no header"),
            Self::Magic => f.write_str("status message: wrong magic (not a status report)"),
            Self::Version(v) => write!(
                f,
                "status message: layout version {v}, this build reads only version \
                 {STATUS_VERSION} (the RT kernel and this tool are from different releases)"
            ),
            Self::TooManyCpus(n) => write!(
                f,
                "status message: {n} CPU records, at most {MAX_REPORT_CPUS} allowed"
            ),
            Self::Length { len, expected } => write!(
                f,
                "status message: {len} bytes where its counts say {expected}"
            ),
            Self::Histogram(i) => write!(
                f,
                "status message: CPU record {i}: histogram and overflow do not add up to the \
                 samples"
            ),
        }
    }
}

/// A checked status message.
#[derive(Debug, Clone, Copy)]
pub struct Status<'a> {
    /// Its header.
    pub header: StatusHeader,
    bytes: &'a [u8],
}

impl<'a> Status<'a> {
    /// Checks `bytes` as a status message.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, StatusError> {
        let header = StatusHeader::read_from_prefix(bytes)
            .map_err(|_| StatusError::Truncated { len: bytes.len() })?
            .0;
        if header.magic != STATUS_MAGIC {
            return Err(StatusError::Magic);
        }
        if header.version != STATUS_VERSION {
            return Err(StatusError::Version(header.version));
        }
        if usize::from(header.cpus) > MAX_REPORT_CPUS {
            return Err(StatusError::TooManyCpus(header.cpus));
        }
        let expected = message_len(header.cpus.into(), header.tasks.into());
        if bytes.len() != expected {
            return Err(StatusError::Length {
                len: bytes.len(),
                expected,
            });
        }
        let status = Self { header, bytes };
        if let Some(i) = status.cpus().position(|c| !c.histogram_adds_up()) {
            return Err(StatusError::Histogram(i));
        }
        Ok(status)
    }

    /// The CPU records.
    pub fn cpus(&self) -> impl Iterator<Item = CpuLatency> + 'a {
        let bytes = self.bytes;
        (0..usize::from(self.header.cpus)).filter_map(move |i| {
            let at = HEADER + i * CPU;
            CpuLatency::read_from_bytes(bytes.get(at..at + CPU)?).ok()
        })
    }

    /// The task records.
    pub fn tasks(&self) -> impl Iterator<Item = TaskStatus> + 'a {
        let bytes = self.bytes;
        let start = HEADER + usize::from(self.header.cpus) * CPU;
        (0..usize::from(self.header.tasks)).filter_map(move |i| {
            let at = start + i * TASK;
            TaskStatus::read_from_bytes(bytes.get(at..at + TASK)?).ok()
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn task(name: &str, cpu: u16) -> TaskStatus {
        TaskStatus {
            name: TaskStatus::name_bytes(name),
            cpu,
            priority: 90,
            state: TaskState::Sleeping as u8,
            cpu_time_ns: 1_000,
            wakeups: 7,
            ..TaskStatus::default()
        }
    }

    /// A CPU record whose histogram adds up: `samples` spread over the buckets from 32 µs
    /// on, and `overflow` more beyond.
    fn cpu(cpu: u32, samples: u64, overflow: u64) -> CpuLatency {
        let mut histogram = [0; HISTOGRAM_BUCKETS];
        histogram[6] = samples / 2;
        histogram[7] = samples - samples / 2;
        CpuLatency {
            cpu,
            samples: samples + overflow,
            min_ns: 41_400,
            max_ns: 100_000,
            overflow,
            histogram,
            ..CpuLatency::default()
        }
    }

    #[test]
    fn a_message_round_trips() {
        let cpus = [cpu(0, 1001, 0), cpu(1, 7, 3)];
        let tasks = [task("latency", 0), task("a-very-long-task-name", 1)];
        let mut buf = [0u8; 1024];
        let n = encode(&mut buf, 12_345, &cpus, &tasks).unwrap();
        assert_eq!(n, message_len(2, 2));
        let s = Status::parse(&buf[..n]).unwrap();
        assert_eq!(s.header.uptime_ns, 12_345);
        assert_eq!(s.header.version, 2);
        assert_eq!(s.cpus().collect::<Vec<_>>(), cpus);
        let back: Vec<_> = s.tasks().collect();
        assert_eq!(back[0].name(), Some("latency"));
        assert_eq!(back[1].name(), Some("a-very-long-task"), "cut to 16 bytes");
        assert_eq!(TaskState::from_u8(back[0].state), Some(TaskState::Sleeping));
    }

    #[test]
    fn tasks_that_do_not_fit_are_left_out() {
        let tasks = vec![task("t", 0); 10];
        let mut buf = vec![0u8; message_len(1, 3) + 10];
        let n = encode(&mut buf, 0, &[CpuLatency::default()], &tasks).unwrap();
        let s = Status::parse(&buf[..n]).unwrap();
        assert_eq!((s.header.cpus, s.header.tasks), (1, 3));
        assert_eq!(
            encode(&mut [0u8; 20], 0, &[CpuLatency::default()], &tasks),
            Err(EncodeError::TooSmall {
                len: 20,
                needed: message_len(1, 0)
            })
        );
        assert_eq!(
            encode(&mut buf[..message_len(1, 0)], 0, &[cpu(0, 5, 0)], &tasks),
            Ok(message_len(1, 0)),
            "exactly the CPUs, no task"
        );
    }

    #[test]
    fn encode_refuses_what_parse_would() {
        let mut buf = vec![0u8; 4096];
        let nine = vec![CpuLatency::default(); MAX_REPORT_CPUS + 1];
        assert_eq!(
            encode(&mut buf, 0, &nine, &[]),
            Err(EncodeError::TooManyCpus(9))
        );
        let mut bad = cpu(1, 10, 0);
        bad.samples += 1;
        assert_eq!(
            encode(&mut buf, 0, &[cpu(0, 10, 0), bad], &[]),
            Err(EncodeError::Histogram(1))
        );
    }

    #[test]
    fn the_most_cpus_fit_a_2048_byte_slot_with_tasks() {
        let payload = 2048 - bulkhead_ring::SLOT_HEADER_SIZE;
        assert!(message_len(MAX_REPORT_CPUS, 13) <= payload);
        assert!(message_len(2, 30) <= payload);
        let cpus: Vec<_> = (0..MAX_REPORT_CPUS as u32)
            .map(|i| cpu(i, 100, 1))
            .collect();
        let tasks = vec![task("t", 0); 40];
        let mut buf = vec![0u8; payload];
        let n = encode(&mut buf, 0, &cpus, &tasks).unwrap();
        let s = Status::parse(&buf[..n]).unwrap();
        assert_eq!((s.header.cpus, s.header.tasks), (8, 13));
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let mut buf = [0u8; 512];
        let n = encode(&mut buf, 1, &[cpu(0, 4, 1)], &[task("x", 0)]).unwrap();
        assert_eq!(
            Status::parse(&buf[..8]).unwrap_err(),
            StatusError::Truncated { len: 8 }
        );
        assert_eq!(
            Status::parse(&buf[..n - 1]).unwrap_err(),
            StatusError::Length {
                len: n - 1,
                expected: n
            }
        );
        let mut bad = buf;
        bad[0] = b'X';
        assert_eq!(Status::parse(&bad[..n]).unwrap_err(), StatusError::Magic);
        let mut bad = buf;
        bad[4] = 9;
        assert_eq!(
            Status::parse(&bad[..n]).unwrap_err(),
            StatusError::Version(9)
        );
        // Counts that promise more than is there.
        let mut bad = buf;
        bad[7] = 200;
        assert!(matches!(
            Status::parse(&bad[..n]),
            Err(StatusError::Length { .. })
        ));
        let mut bad = buf;
        bad[6] = 9;
        assert_eq!(
            Status::parse(&bad[..n]).unwrap_err(),
            StatusError::TooManyCpus(9)
        );
        // One more sample than the buckets and the overflow hold.
        let mut bad = buf;
        let samples = HEADER + 8;
        bad[samples] += 1;
        assert_eq!(
            Status::parse(&bad[..n]).unwrap_err(),
            StatusError::Histogram(0)
        );
    }

    #[test]
    fn a_report_of_the_first_layout_is_refused_by_its_version() {
        // Version 1: a 72-byte CPU record without a histogram.
        let mut v1 = vec![0u8; 16 + 72];
        v1[..4].copy_from_slice(&STATUS_MAGIC);
        v1[4..6].copy_from_slice(&1u16.to_le_bytes());
        v1[6] = 1;
        let e = Status::parse(&v1).unwrap_err();
        assert_eq!(e, StatusError::Version(1));
        let text = std::format!("{e}");
        assert!(
            text.contains("version 1") && text.contains("version 2"),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_have_log2_edges() {
        let cases = [
            (0, Some(0)),
            (999, Some(0)),
            (1_000, Some(1)),
            (1_999, Some(1)),
            (2_000, Some(2)),
            (3_999, Some(2)),
            (4_000, Some(3)),
            (63_999, Some(6)),
            (64_000, Some(7)),
            (511_999, Some(9)),
            (512_000, Some(10)),
            (999_999, Some(10)),
            (1_000_000, None),
            (u64::MAX, None),
        ];
        for (ns, bucket) in cases {
            assert_eq!(histogram_bucket(ns), bucket, "{ns} ns");
        }
        assert_eq!(histogram_bucket_range_ns(0), Some(0..1_000));
        assert_eq!(histogram_bucket_range_ns(1), Some(1_000..2_000));
        assert_eq!(histogram_bucket_range_ns(2), Some(2_000..4_000));
        assert_eq!(histogram_bucket_range_ns(9), Some(256_000..512_000));
        assert_eq!(histogram_bucket_range_ns(10), Some(512_000..1_000_000));
        assert_eq!(histogram_bucket_range_ns(11), None);
    }

    #[test]
    fn a_microsecond_histogram_folds_into_the_report_buckets() {
        let ones = [1u64; 1000];
        assert_eq!(
            histogram_from_microseconds(&ones),
            [1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 488]
        );
        // Buckets from 1 ms on are the overflow's, not the histogram's.
        let mut longer = vec![0u64; 1200];
        longer[41] = 5;
        longer[999] = 2;
        longer[1000] = 7;
        longer[1199] = 9;
        let mut want = [0; HISTOGRAM_BUCKETS];
        want[6] = 5;
        want[10] = 2;
        assert_eq!(histogram_from_microseconds(&longer), want);
        let mut big = [0u64; 4];
        big[2] = u64::MAX;
        big[3] = 1;
        assert_eq!(histogram_from_microseconds(&big)[2], u64::MAX, "saturates");
        assert_eq!(histogram_from_microseconds(&[]), [0; HISTOGRAM_BUCKETS]);
    }

    #[test]
    fn histograms_add_up_saturating() {
        assert!(CpuLatency::default().histogram_adds_up());
        assert!(cpu(0, 10, 2).histogram_adds_up());
        let mut c = cpu(0, 10, 2);
        c.overflow = 3;
        assert!(!c.histogram_adds_up());
        let mut c = CpuLatency {
            samples: u64::MAX,
            overflow: u64::MAX - 1,
            ..CpuLatency::default()
        };
        c.histogram[0] = 5;
        assert!(c.histogram_adds_up());
    }

    fn xorshift(state: &mut u64) -> u8 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state as u8
    }

    /// What parses has as many records as its counts say, and as many bytes as they need.
    fn check(m: &[u8]) {
        if let Ok(s) = Status::parse(m) {
            assert_eq!(s.cpus().count(), usize::from(s.header.cpus));
            assert_eq!(s.tasks().count(), usize::from(s.header.tasks));
            assert_eq!(
                m.len(),
                message_len(s.header.cpus.into(), s.header.tasks.into())
            );
            assert!(s.cpus().all(|c| c.histogram_adds_up()));
        }
    }

    #[test]
    fn any_bytes_parse_or_fail_without_panicking() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for len in 0..1400 {
            let bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut state)).collect();
            let mut b = bytes.clone();
            if b.len() >= 6 {
                b[..4].copy_from_slice(&STATUS_MAGIC);
                b[4..6].copy_from_slice(&STATUS_VERSION.to_le_bytes());
            }
            check(&bytes);
            check(&b);
        }
    }

    #[test]
    fn damaged_reports_parse_or_fail_without_panicking() {
        let mut state = 0x0fed_cba9_8765_4321u64;
        let cpus: Vec<_> = (0..3).map(|i| cpu(i, 50, i.into())).collect();
        let tasks = vec![task("t", 0); 5];
        let mut buf = vec![0u8; 2040];
        let n = encode(&mut buf, 1, &cpus, &tasks).unwrap();
        for _ in 0..2000 {
            let mut m = buf[..n].to_vec();
            for _ in 0..=xorshift(&mut state) % 4 {
                let at = usize::from(xorshift(&mut state)) * 3 % n;
                m[at] = xorshift(&mut state);
            }
            check(&m);
        }
    }
}
