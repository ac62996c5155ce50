//! The RT partition's status report: one message the RT kernel sends on an `rt-to-linux`
//! channel every report period (kernel option `status=CHANNEL`), and the one place its layout
//! is defined. The Linux tool (`bulkhead rt`) decodes it.
//!
//! A message is a [`StatusHeader`], then `cpus` [`CpuLatency`] records (the latency task's
//! cumulative summary per RT CPU), then `tasks` [`TaskStatus`] records (every task, idle tasks
//! included). All little-endian `#[repr(C)]` without padding; records are read by copy, so a
//! message needs no alignment. [`encode`] writes one; [`Status::parse`] checks one (the
//! reader treats the message as untrusted: magic, version, counts and length must agree).

use core::fmt;
use core::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// First bytes of a status message.
pub const STATUS_MAGIC: [u8; 4] = *b"BKST";
/// Layout version of a status message.
pub const STATUS_VERSION: u16 = 1;
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
    /// Samples beyond the histogram's range.
    pub overflow: u64,
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
        crate::nul_padded(&self.name)
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
const _: () = assert!(HEADER == 16 && CPU == 72 && TASK == 56);

/// Bytes of a message with `cpus` and `tasks` records.
pub const fn message_len(cpus: usize, tasks: usize) -> usize {
    HEADER + cpus * CPU + tasks * TASK
}

/// Writes a message into `buf`: all of `cpus`, and as many of `tasks` as fit (at most 255
/// of each). Returns its length, or `None` when not even the header and the CPUs fit.
pub fn encode(
    buf: &mut [u8],
    uptime_ns: u64,
    cpus: &[CpuLatency],
    tasks: &[TaskStatus],
) -> Option<usize> {
    let cpus = &cpus[..cpus.len().min(255)];
    let room = buf.len().checked_sub(message_len(cpus.len(), 0))?;
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
    Some(at)
}

/// What is wrong with a status message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusError {
    /// Shorter than its header.
    Truncated { len: usize },
    /// Not [`STATUS_MAGIC`].
    Magic,
    /// A version this build does not know.
    Version(u16),
    /// The length is not what the counts say.
    Length { len: usize, expected: usize },
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { len } => write!(f, "status message: {len} bytes, no header"),
            Self::Magic => f.write_str("status message: wrong magic (not a status report)"),
            Self::Version(v) => write!(
                f,
                "status message: version {v}, this build reads {STATUS_VERSION}"
            ),
            Self::Length { len, expected } => write!(
                f,
                "status message: {len} bytes where its counts say {expected}"
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
        let expected = message_len(header.cpus.into(), header.tasks.into());
        if bytes.len() != expected {
            return Err(StatusError::Length {
                len: bytes.len(),
                expected,
            });
        }
        Ok(Self { header, bytes })
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

    #[test]
    fn a_message_round_trips() {
        let cpus = [CpuLatency {
            cpu: 0,
            samples: 1001,
            max_ns: 41_652,
            ..CpuLatency::default()
        }];
        let tasks = [task("latency", 0), task("a-very-long-task-name", 1)];
        let mut buf = [0u8; 1024];
        let n = encode(&mut buf, 12_345, &cpus, &tasks).unwrap();
        assert_eq!(n, message_len(1, 2));
        let s = Status::parse(&buf[..n]).unwrap();
        assert_eq!(s.header.uptime_ns, 12_345);
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
            None
        );
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let mut buf = [0u8; 256];
        let n = encode(&mut buf, 1, &[CpuLatency::default()], &[task("x", 0)]).unwrap();
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
    }

    #[test]
    fn any_bytes_parse_or_fail_without_panicking() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let mut b = bytes.clone();
            if b.len() >= 6 {
                b[..4].copy_from_slice(&STATUS_MAGIC);
                b[4..6].copy_from_slice(&STATUS_VERSION.to_le_bytes());
            }
            for m in [&bytes[..], &b[..]] {
                if let Ok(s) = Status::parse(m) {
                    assert_eq!(s.cpus().count(), usize::from(s.header.cpus));
                    assert_eq!(s.tasks().count(), usize::from(s.header.tasks));
                }
            }
        }
    }
}
