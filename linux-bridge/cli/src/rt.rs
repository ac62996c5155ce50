//! `bulkhead rt`: the RT partition's status reports, decoded.
//!
//! The RT kernel started with `status=CHANNEL` sends one report per second on that
//! `rt-to-linux` channel (by convention `rt-status`, slots of 2048 bytes); its layout and checked
//! parser are [`bulkhead_abi::status`]. Reports already waiting in the channel are skipped
//! but the newest (`--queued` shows them all). This module receives reports, checks each with
//! [`Status::parse`] (a message that is not a report is an error, never guessed at) and prints
//! it. It only reads what the RT side sent: it never writes to the channel but to consume.
//!
//! `CPU%` is a task's share of its CPU since the previous report of the same run: its
//! `cpu_time_ns` delta over the `uptime_ns` delta. A task is matched to the previous report's by
//! name, CPU and, for tasks sharing both, order; it has none in the first report, for a task
//! that was not there before, or when a clock went backwards (the RT kernel restarted).
//!
//! Each CPU's wake-up latency histogram (cumulative, like the summary) is in the JSON always
//! and in the text with `--histogram`: one row per bucket of the report ([`status`]'s log-2
//! buckets in microseconds, then the overflow from 1 ms on) with its count, the share of the
//! samples up to and including it (`CUM%`, rounded down, so 100.00 means every sample) and a
//! bar of `#` scaled to the largest bucket (any sample gives at least one `#`).
//!
//! [`status`]: bulkhead_abi::status

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead_abi::status::{
    CpuLatency, HISTOGRAM_RANGE_NS, Status, TASK_NAME_LEN, TaskState, TaskStatus,
    histogram_bucket_range_ns,
};
use bulkhead_channel::{Announcements, ChannelReceiver, ErrorKind};
use serde::Serialize;

use crate::show::{escape, json, table};
use crate::{Cause, Failure, out};

/// The channel's name by convention.
pub const DEFAULT_CHANNEL: &str = "rt-status";

/// What `rt` was asked to do.
#[derive(Debug)]
pub struct Options<'a> {
    /// The rt-to-linux channel the reports come on.
    pub channel: &'a str,
    /// Reports to receive; 0 for ever.
    pub count: u64,
    /// How long to wait for each report.
    pub timeout: Duration,
    /// Print JSON lines.
    pub json: bool,
    /// Show every report already queued, not only the newest.
    pub queued: bool,
    /// Print each CPU's latency histogram in the text.
    pub histogram: bool,
}

/// Width of the longest histogram bar.
const BAR_WIDTH: u64 = 40;

/// One histogram bucket, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketRow {
    /// Its lower edge (included).
    lo_ns: u64,
    /// Its upper edge (excluded); `None` for the overflow.
    hi_ns: Option<u64>,
    count: u64,
}

/// One CPU's latency summary, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuRow {
    cpu: u32,
    samples: u64,
    min_ns: u64,
    avg_ns: u64,
    max_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    misses: u64,
    overflow: u64,
    /// Every bucket of the report's histogram, then the overflow.
    histogram: Vec<BucketRow>,
}

impl From<&CpuLatency> for CpuRow {
    fn from(c: &CpuLatency) -> Self {
        Self {
            cpu: c.cpu,
            samples: c.samples,
            min_ns: c.min_ns,
            avg_ns: c.avg_ns,
            max_ns: c.max_ns,
            p99_ns: c.p99_ns,
            p999_ns: c.p999_ns,
            misses: c.misses,
            overflow: c.overflow,
            histogram: c
                .histogram
                .iter()
                .enumerate()
                .filter_map(|(i, &count)| {
                    let range = histogram_bucket_range_ns(i)?;
                    Some(BucketRow {
                        lo_ns: range.start,
                        hi_ns: Some(range.end),
                        count,
                    })
                })
                .chain([BucketRow {
                    lo_ns: HISTOGRAM_RANGE_NS,
                    hi_ns: None,
                    count: c.overflow,
                }])
                .collect(),
        }
    }
}

impl CpuRow {
    /// Its histogram as text: a title line, then a table of range, count, cumulative share
    /// and bar.
    fn histogram_lines(&self) -> Vec<String> {
        let largest = self.histogram.iter().map(|b| b.count).max().unwrap_or(0);
        let mut rows = vec![["RANGE_US", "COUNT", "CUM%", ""].map(str::to_owned)];
        let mut below = 0u64;
        for b in &self.histogram {
            below = below.saturating_add(b.count);
            rows.push([
                match b.hi_ns {
                    Some(hi) => format!("{}-{}", b.lo_ns / 1_000, hi / 1_000),
                    None => format!(">={}", b.lo_ns / 1_000),
                },
                b.count.to_string(),
                percent_floor(below, self.samples),
                "#".repeat(bar(b.count, largest)),
            ]);
        }
        let mut lines = vec![format!(
            "CPU {} wake-up latency histogram: {} samples",
            self.cpu, self.samples
        )];
        lines.extend(table(&rows).iter().map(|l| l.trim_end().to_owned()));
        lines
    }
}

/// `part` of `whole` in percent with two decimals, rounded down; `-` when `whole` is 0.
fn percent_floor(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    let hundredths = (u128::from(part) * 10_000 / u128::from(whole)).min(10_000);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// The length of `count`'s bar when `largest`'s is [`BAR_WIDTH`]: rounded up, so any count
/// shows.
fn bar(count: u64, largest: u64) -> usize {
    if largest == 0 {
        return 0;
    }
    (u128::from(count) * u128::from(BAR_WIDTH)).div_ceil(u128::from(largest)) as usize
}

/// One task, as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRow {
    /// Its name (bytes that are not UTF-8 replaced).
    name: String,
    cpu: u16,
    priority: u8,
    /// Its state's name, or `unknown(N)`.
    state: String,
    cpu_time_ns: u64,
    /// Percent of its CPU since the previous report; `None` without one.
    cpu_percent: Option<f64>,
    wakeups: u64,
    deadline_misses: u64,
    wake_max_ns: u64,
}

/// One decoded report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    uptime_ns: u64,
    cpus: Vec<CpuRow>,
    tasks: Vec<TaskRow>,
}

/// Identifies a task across reports: name, CPU, and how many before it share both.
type TaskKey = ([u8; TASK_NAME_LEN], u16, usize);

/// What CPU% needs of the previous report.
#[derive(Debug, Default)]
pub struct Previous {
    uptime_ns: u64,
    cpu_time_ns: HashMap<TaskKey, u64>,
}

/// Each task's [`TaskKey`], in order.
fn keyed(status: &Status<'_>) -> impl Iterator<Item = (TaskKey, TaskStatus)> {
    let mut seen: HashMap<([u8; TASK_NAME_LEN], u16), usize> = HashMap::new();
    status.tasks().map(move |t| {
        let n = seen.entry((t.name, t.cpu)).or_default();
        let key = (t.name, t.cpu, *n);
        *n += 1;
        (key, t)
    })
}

impl Previous {
    /// Remembers `status` for the next report's CPU%.
    pub fn of(status: &Status<'_>) -> Self {
        Self {
            uptime_ns: status.header.uptime_ns,
            cpu_time_ns: keyed(status).map(|(k, t)| (k, t.cpu_time_ns)).collect(),
        }
    }
}

/// A task's name: its text, else its bytes up to the padding with what is not UTF-8 replaced.
fn task_name(t: &TaskStatus) -> String {
    match t.name() {
        Some(name) => name.to_owned(),
        None => {
            let end = t.name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            String::from_utf8_lossy(&t.name[..end]).into_owned()
        }
    }
}

/// `ns` in microseconds with one decimal (truncated).
fn us(ns: u64) -> String {
    format!("{}.{}", ns / 1_000, ns % 1_000 / 100)
}

/// `ns` in milliseconds with one decimal (truncated).
fn ms(ns: u64) -> String {
    format!("{}.{}", ns / 1_000_000, ns % 1_000_000 / 100_000)
}

impl Report {
    /// Decodes `status`, with CPU% against `previous`.
    pub fn new(status: &Status<'_>, previous: Option<&Previous>) -> Self {
        let elapsed = previous
            .and_then(|p| status.header.uptime_ns.checked_sub(p.uptime_ns))
            .filter(|&d| d > 0);
        let tasks = keyed(status)
            .map(|(key, t)| {
                let cpu_percent = elapsed.and_then(|elapsed| {
                    let before = previous?.cpu_time_ns.get(&key)?;
                    let ran = t.cpu_time_ns.checked_sub(*before)?;
                    Some(ran as f64 * 100.0 / elapsed as f64)
                });
                TaskRow {
                    name: task_name(&t),
                    cpu: t.cpu,
                    priority: t.priority,
                    state: TaskState::from_u8(t.state).map_or_else(
                        || format!("unknown({})", t.state),
                        |s| s.as_str().to_owned(),
                    ),
                    cpu_time_ns: t.cpu_time_ns,
                    cpu_percent,
                    wakeups: t.wakeups,
                    deadline_misses: t.deadline_misses,
                    wake_max_ns: t.wake_max_ns,
                }
            })
            .collect();
        Self {
            uptime_ns: status.header.uptime_ns,
            cpus: status.cpus().map(|c| CpuRow::from(&c)).collect(),
            tasks,
        }
    }

    /// The text block: a summary line, the CPU table, the task table, and with `histograms`
    /// each CPU's latency histogram.
    pub fn lines(&self, histograms: bool) -> Vec<String> {
        let mut summary = String::new();
        let _ = write!(
            summary,
            "rt: uptime {}.{:03} s, {} CPUs, {} tasks",
            self.uptime_ns / 1_000_000_000,
            self.uptime_ns % 1_000_000_000 / 1_000_000,
            self.cpus.len(),
            self.tasks.len()
        );
        let mut cpus = vec![
            [
                "CPU", "SAMPLES", "MIN_US", "AVG_US", "MAX_US", "P99_US", "P99.9_US", "MISSES",
                "OVERFLOW",
            ]
            .map(str::to_owned),
        ];
        cpus.extend(self.cpus.iter().map(|c| {
            [
                c.cpu.to_string(),
                c.samples.to_string(),
                us(c.min_ns),
                us(c.avg_ns),
                us(c.max_ns),
                us(c.p99_ns),
                us(c.p999_ns),
                c.misses.to_string(),
                c.overflow.to_string(),
            ]
        }));
        let mut tasks = vec![
            [
                "TASK",
                "CPU",
                "PRIO",
                "STATE",
                "CPU%",
                "CPU_MS",
                "WAKEUPS",
                "MISSES",
                "WAKE_MAX_US",
            ]
            .map(str::to_owned),
        ];
        tasks.extend(self.tasks.iter().map(|t| {
            [
                if t.name.is_empty() {
                    "-".to_owned()
                } else {
                    escape(&t.name)
                },
                t.cpu.to_string(),
                t.priority.to_string(),
                t.state.clone(),
                t.cpu_percent
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}")),
                ms(t.cpu_time_ns),
                t.wakeups.to_string(),
                t.deadline_misses.to_string(),
                us(t.wake_max_ns),
            ]
        }));
        let mut lines = vec![summary];
        lines.extend(table(&cpus));
        lines.extend(table(&tasks));
        if histograms {
            for c in &self.cpus {
                lines.extend(c.histogram_lines());
            }
        }
        lines
    }
}

/// `bulkhead rt`.
pub fn run(announcements: &Announcements, mem: &Path, opts: Options<'_>) -> Result<(), Failure> {
    let on = Failure::on(opts.channel);
    let mut rx = ChannelReceiver::open_with(announcements, mem, opts.channel).map_err(&on)?;
    let mut buf = vec![0; rx.max_message()];
    let mut previous: Option<Previous> = None;
    let mut received = 0u64;
    // The RT side sends whether or not anyone reads, and drops reports while the ring is
    // full: what waits there may be minutes old. Unless asked for all of it, start from the
    // newest.
    let mut newest_queued = None;
    if !opts.queued {
        loop {
            match rx.try_receive(&mut buf) {
                Ok(got) => newest_queued = Some(got),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(on(e)),
            }
        }
    }
    while opts.count == 0 || received < opts.count {
        let got = match (
            newest_queued.take(),
            Instant::now().checked_add(opts.timeout),
        ) {
            (Some(got), _) => Ok(got),
            (None, Some(deadline)) => rx.receive_until(&mut buf, deadline),
            (None, None) => rx.receive(&mut buf),
        };
        let (len, _priority) = got.map_err(|e| match e.kind() {
            ErrorKind::TimedOut => Failure {
                channel: Some(opts.channel.to_owned()),
                cause: Cause::NoReport(opts.timeout),
            },
            _ => on(e),
        })?;
        let status = Status::parse(buf.get(..len).unwrap_or_default()).map_err(|e| Failure {
            channel: Some(opts.channel.to_owned()),
            cause: Cause::Status(e),
        })?;
        let report = Report::new(&status, previous.as_ref());
        if opts.json {
            json(&report)?;
        } else {
            if received > 0 {
                out(format_args!(""))?;
            }
            for line in report.lines(opts.histogram) {
                out(format_args!("{line}"))?;
            }
        }
        previous = Some(Previous::of(&status));
        received += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bulkhead_abi::status::encode;

    use super::*;

    fn task(name: &str, cpu: u16, cpu_time_ns: u64) -> TaskStatus {
        TaskStatus {
            name: TaskStatus::name_bytes(name),
            cpu,
            priority: 90,
            state: TaskState::Sleeping as u8,
            cpu_time_ns,
            wakeups: 3,
            wake_max_ns: 41_699,
            ..TaskStatus::default()
        }
    }

    fn report<'a>(buf: &'a mut [u8], uptime_ns: u64, tasks: &[TaskStatus]) -> Status<'a> {
        let mut cpus = [CpuLatency {
            cpu: 0,
            samples: 11_001,
            min_ns: 41_400,
            max_ns: 41_799,
            ..CpuLatency::default()
        }];
        cpus[0].histogram[6] = 11_001;
        let n = encode(buf, uptime_ns, &cpus, tasks).unwrap();
        Status::parse(&buf[..n]).unwrap()
    }

    #[test]
    fn cpu_percent_is_the_share_since_the_previous_report() {
        let (mut a, mut b) = ([0u8; 1024], [0u8; 1024]);
        let first = report(
            &mut a,
            1_000_000_000,
            &[
                task("idle", 0, 900_000_000),
                task("idle", 0, 5),
                task("t", 0, 0),
            ],
        );
        let second = report(
            &mut b,
            3_000_000_000,
            &[
                task("idle", 0, 2_800_000_000),
                task("idle", 0, 4),
                task("new", 0, 7),
                task("t", 0, 100_000_000),
            ],
        );
        let r = Report::new(&first, None);
        assert!(r.tasks.iter().all(|t| t.cpu_percent.is_none()));
        let r = Report::new(&second, Some(&Previous::of(&first)));
        let pct: Vec<Option<f64>> = r.tasks.iter().map(|t| t.cpu_percent).collect();
        // The second `idle` went backwards; `new` was not there before.
        assert_eq!(pct, [Some(95.0), None, None, Some(5.0)]);
        // A clock that went backwards: no CPU% at all.
        let r = Report::new(&first, Some(&Previous::of(&second)));
        assert!(r.tasks.iter().all(|t| t.cpu_percent.is_none()));
    }

    #[test]
    fn the_text_block() {
        let (mut a, mut b) = ([0u8; 1024], [0u8; 1024]);
        let first = report(&mut a, 12_003_400_000, &[task("latency", 0, 372_560_000)]);
        let mut odd = task("", 1, 0);
        odd.state = 9;
        let second = report(
            &mut b,
            13_003_400_000,
            &[task("latency", 0, 403_560_000), odd],
        );
        let lines = Report::new(&first, None).lines(false);
        assert_eq!(lines[0], "rt: uptime 12.003 s, 1 CPUs, 1 tasks");
        let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            words(&lines[2]),
            ["0", "11001", "41.4", "0.0", "41.7", "0.0", "0.0", "0", "0"]
        );
        assert_eq!(
            words(&lines[4]),
            [
                "latency", "0", "90", "sleeping", "-", "372.5", "3", "0", "41.6"
            ]
        );
        let lines = Report::new(&second, Some(&Previous::of(&first))).lines(false);
        assert_eq!(lines.len(), 6);
        assert_eq!(words(&lines[4])[4], "3.1");
        assert_eq!(
            words(&lines[5]),
            ["-", "1", "90", "unknown(9)", "-", "0.0", "3", "0", "41.6"]
        );
        assert!(
            lines[3].starts_with("TASK     CPU  PRIO  STATE"),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn the_histogram_block() {
        let mut c = CpuLatency {
            cpu: 1,
            samples: 1_002,
            overflow: 2,
            histogram: [0, 0, 0, 0, 0, 3, 900, 90, 6, 0, 1],
            ..CpuLatency::default()
        };
        let mut buf = [0u8; 1024];
        let n = encode(&mut buf, 5_000_000_000, &[c], &[task("latency", 1, 0)]).unwrap();
        let status = Status::parse(&buf[..n]).unwrap();
        let report = Report::new(&status, None);
        let plain = report.lines(false);
        let lines = report.lines(true);
        assert_eq!(
            lines[..plain.len()],
            plain[..],
            "the histogram comes after the tables"
        );
        let want = [
            "CPU 1 wake-up latency histogram: 1002 samples",
            "RANGE_US  COUNT  CUM%",
            "0-1       0      0.00",
            "1-2       0      0.00",
            "2-4       0      0.00",
            "4-8       0      0.00",
            "8-16      0      0.00",
            "16-32     3      0.29    #",
            "32-64     900    90.11   ########################################",
            "64-128    90     99.10   ####",
            "128-256   6      99.70   #",
            "256-512   0      99.70",
            "512-1000  1      99.80   #",
            ">=1000    2      100.00  #",
        ];
        assert_eq!(lines[plain.len()..], want);

        // No samples yet: no share, no bars.
        c = CpuLatency::default();
        let n = encode(&mut buf, 1, &[c], &[]).unwrap();
        let status = Status::parse(&buf[..n]).unwrap();
        let lines = Report::new(&status, None).lines(true);
        assert_eq!(
            lines[lines.len() - 14],
            "CPU 0 wake-up latency histogram: 0 samples"
        );
        assert_eq!(lines[lines.len() - 12], "0-1       0      -");
        assert_eq!(lines[lines.len() - 1], ">=1000    0      -");
    }

    #[test]
    fn shares_round_down_and_bars_round_up() {
        assert_eq!(percent_floor(0, 7), "0.00");
        assert_eq!(percent_floor(999_999, 1_000_000), "99.99");
        assert_eq!(percent_floor(1, 3), "33.33");
        assert_eq!(percent_floor(7, 7), "100.00");
        assert_eq!(percent_floor(u64::MAX, u64::MAX), "100.00");
        assert_eq!(percent_floor(3, 0), "-");
        assert_eq!(bar(0, 10), 0);
        assert_eq!(bar(1, u64::MAX), 1);
        assert_eq!(bar(10, 10), 40);
        assert_eq!(bar(u64::MAX, u64::MAX), 40);
        assert_eq!(bar(5, 0), 0);
    }

    #[test]
    fn the_json_has_every_bucket_and_the_overflow() {
        let mut buf = [0u8; 1024];
        let status = report(&mut buf, 1, &[]);
        let value = serde_json::to_value(Report::new(&status, None)).unwrap();
        let histogram = value["cpus"][0]["histogram"].as_array().unwrap();
        assert_eq!(histogram.len(), 12);
        assert_eq!(
            histogram[0],
            serde_json::json!({"lo_ns": 0, "hi_ns": 1000, "count": 0})
        );
        assert_eq!(
            histogram[6],
            serde_json::json!({"lo_ns": 32000, "hi_ns": 64000, "count": 11001})
        );
        assert_eq!(
            histogram[10],
            serde_json::json!({"lo_ns": 512000, "hi_ns": 1000000, "count": 0})
        );
        assert_eq!(
            histogram[11],
            serde_json::json!({"lo_ns": 1000000, "hi_ns": null, "count": 0})
        );
    }
}
