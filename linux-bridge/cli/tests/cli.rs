//! The `bulkhead` binary against a temporary file standing in for physical memory and a
//! temporary kernel command line.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_abi::status::{CpuLatency, HISTOGRAM_BUCKETS, TaskState, TaskStatus, encode};
use bulkhead_channel::{ChannelReceiver, ChannelSender, ErrorKind, Mapping};
use bulkhead_ring::Ring;
use bulkhead_ring::log::LogWriter;

/// Each channel's size.
const SIZE: usize = 0x2000;
/// Where [`Fixture::with_rt_status`] puts `rt-status`, and its size.
const RT_STATUS_BASE: u64 = 0x8000;
const RT_STATUS_SIZE: usize = 0x4000;

/// A memory file and a command line announcing:
/// - `to` (linux-to-rt, 64 slots of 64 bytes) at 0x0;
/// - `from` (rt-to-linux, 64 slots of 64 bytes) at 0x2000;
/// - `loop` (rt-to-linux) on `to`'s memory, so the CLI can receive what it sent;
/// - `small` (linux-to-rt, 2 slots of 2048 bytes) at 0x4000;
/// - with `bad`, `bad` (rt-to-linux) at 0x6000, whose header has the wrong magic.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(bad: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let f = Self { dir };
        std::fs::File::create(f.mem())
            .unwrap()
            .set_len(0x8000)
            .unwrap();
        let mut cmdline = String::from(
            "BOOT_IMAGE=/vmlinuz console=ttyS1 \
             bulkhead.channel=to,linux-to-rt,doorbell,0x0,0x2000 \
             bulkhead.channel=from,rt-to-linux,poll,0x2000,0x2000 \
             bulkhead.channel=loop,rt-to-linux,poll,0x0,0x2000 \
             bulkhead.channel=small,linux-to-rt,poll,0x4000,0x2000",
        );
        for (base, slot) in [(0, 64), (0x2000, 64), (0x4000, 2048), (0x6000, 64)] {
            Ring::init(f.map(base).region().unwrap(), slot).unwrap();
        }
        if bad {
            cmdline.push_str(" bulkhead.channel=bad,rt-to-linux,poll,0x6000,0x2000");
            let m = f.map(0x6000);
            m.words()[0].store(u64::from_ne_bytes(*b"garbage!"), Ordering::Relaxed);
        }
        cmdline.push('\n');
        std::fs::write(f.cmdline(), cmdline).unwrap();
        f
    }

    /// [`Fixture::new`] and `rt-status` (rt-to-linux, 6 slots of 2048 bytes) at 0x8000, where
    /// [`Fixture::rt_peer`] sends.
    fn with_rt_status() -> Self {
        let f = Self::new(false);
        std::fs::OpenOptions::new()
            .write(true)
            .open(f.mem())
            .unwrap()
            .set_len(RT_STATUS_BASE + RT_STATUS_SIZE as u64)
            .unwrap();
        Ring::init(f.map_rt_status().region().unwrap(), 2048).unwrap();
        let mut cmdline = std::fs::read_to_string(f.cmdline()).unwrap();
        cmdline.insert_str(
            cmdline.trim_end().len(),
            &format!(
                " bulkhead.channel=rt-status,rt-to-linux,poll,{RT_STATUS_BASE:#x},\
                 {RT_STATUS_SIZE:#x}"
            ),
        );
        std::fs::write(f.cmdline(), cmdline).unwrap();
        f
    }

    fn map_rt_status(&self) -> Mapping {
        Mapping::open(self.mem(), RT_STATUS_BASE, RT_STATUS_SIZE).unwrap()
    }

    /// The RT kernel's end of `rt-status`.
    fn rt_peer(&self) -> ChannelSender {
        ChannelSender::attach(self.map_rt_status()).unwrap()
    }

    fn mem(&self) -> std::path::PathBuf {
        self.dir.path().join("mem")
    }

    fn cmdline(&self) -> std::path::PathBuf {
        self.dir.path().join("cmdline")
    }

    fn map(&self, base: u64) -> Mapping {
        Mapping::open(self.mem(), base, SIZE).unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
        c.arg("--mem")
            .arg(self.mem())
            .arg("--cmdline")
            .arg(self.cmdline())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().unwrap())
    }

    fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        Run(child.wait_with_output().unwrap())
    }
}

/// A finished run of the binary.
struct Run(Output);

impl Run {
    fn code(&self) -> i32 {
        self.0.status.code().unwrap()
    }

    fn stdout(&self) -> String {
        String::from_utf8(self.0.stdout.clone()).unwrap()
    }

    fn stderr(&self) -> String {
        String::from_utf8(self.0.stderr.clone()).unwrap()
    }

    #[track_caller]
    fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout()).unwrap()
    }
}

#[test]
fn list_shows_every_channel() {
    let f = Fixture::new(false);
    let out = f.run(&["list"]).expect(0).stdout();
    let lines: Vec<&str> = out.lines().collect();
    // The table, then how the RT side's doorbells reach Linux (here: no channel device).
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[0].starts_with("NAME"), "{out}");
    assert!(
        lines[5].starts_with("interrupt from the RT side: none: no channel device"),
        "{out}"
    );
    let to: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        to,
        [
            "to",
            "linux-to-rt",
            "doorbell",
            "0x0",
            "0x2000",
            "64",
            "64",
            "56",
            "0",
            "ready"
        ]
    );
    let small: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(small[5..9], ["2048", "2", "2040", "0"]);

    let json = f.run(&["list", "--json"]).expect(0).json();
    let all = json.as_array().unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[1]["name"], "from");
    assert_eq!(all[1]["direction"], "rt-to-linux");
    assert_eq!(all[1]["base"], 0x2000);
    assert_eq!(all[1]["slot_count"], 64);
    assert_eq!(all[1]["max_message"], 56);
    assert_eq!(all[1]["state"], "ready");
    assert!(all[1]["error"].is_null());
}

#[test]
fn list_shows_a_corrupt_channel_with_its_error() {
    let f = Fixture::new(true);
    let run = f.run(&["list"]).expect(1);
    let out = run.stdout();
    let bad = out.lines().find(|l| l.starts_with("bad ")).expect(&out);
    assert!(
        bad.ends_with("error: not a usable channel: channel header has the wrong magic"),
        "{bad}"
    );
    assert!(out.lines().any(|l| l.starts_with("to ")), "{out}");
    assert_eq!(
        run.stderr(),
        "bulkhead: channel `bad`: not a usable channel: channel header has the wrong magic\n"
    );
    let json = f.run(&["list", "--json"]).expect(1).json();
    let bad = &json.as_array().unwrap()[4];
    assert_eq!(bad["name"], "bad");
    assert!(bad["slot_size"].is_null());
    assert_eq!(
        bad["error"],
        "not a usable channel: channel header has the wrong magic"
    );
}

#[test]
fn send_then_receive() {
    let f = Fixture::new(false);
    f.run(&["send", "to", "-p", "3", "hello world"]).expect(0);
    f.run_with_stdin(&["send", "to", "--priority", "9"], b"from stdin\n")
        .expect(0);
    f.run(&["send", "to", "--nonblock", "plain"]).expect(0);
    // The CLI receives them through `loop`, announced on `to`'s memory: highest priority first.
    let out = f.run(&["receive", "loop", "-n", "3"]).expect(0).stdout();
    assert_eq!(
        out,
        "priority=9 len=11 text=from stdin\\n\n\
         priority=3 len=11 text=hello world\n\
         priority=0 len=5 text=plain\n"
    );

    // From a peer standing in for the RT side, not UTF-8, as JSON lines.
    let mut peer = ChannelSender::attach(f.map(0x2000)).unwrap();
    peer.send(&[0xff, 0x00, 0x10], 2).unwrap();
    peer.send(b"ok", 1).unwrap();
    let run = f
        .run(&[
            "receive",
            "from",
            "-n",
            "2",
            "--json",
            "--timeout-ms",
            "5000",
        ])
        .expect(0);
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"priority": 2, "len": 3, "hex": "ff0010"}),
            serde_json::json!({"priority": 1, "len": 2, "text": "ok"}),
        ]
    );
    peer.send(&[1, 2], 0).unwrap();
    let out = f.run(&["receive", "from"]).expect(0).stdout();
    assert_eq!(out, "priority=0 len=2 text=\\u{1}\\u{2}\n");
}

#[test]
fn send_lines_one_message_each_and_says_where_it_stopped() {
    let f = Fixture::new(false);
    f.run_with_stdin(&["send", "to", "--lines", "-p", "4"], b"one\ntwo\n\nfour")
        .expect(0);
    let out = f.run(&["receive", "loop", "-n", "4"]).expect(0).stdout();
    assert_eq!(
        out,
        "priority=4 len=3 text=one\n\
         priority=4 len=3 text=two\n\
         priority=4 len=0 text=\n\
         priority=4 len=4 text=four\n",
        "in order, an empty line an empty message, no newline kept"
    );
    // `small` has room for fewer than 5 messages of its size: the rest would block.
    let run = f
        .run_with_stdin(
            &["send", "small", "--lines", "--nonblock"],
            b"1\n2\n3\n4\n5\n",
        )
        .expect(3);
    assert!(
        run.stderr().contains("of 5 lines were sent"),
        "{}",
        run.stderr()
    );
    // A message and --lines together is a usage error.
    f.run_with_stdin(&["send", "to", "--lines", "x"], b"")
        .expect(2);
}

#[test]
fn stats_text_and_json() {
    let f = Fixture::new(false);
    f.run(&["send", "to", "one"]).expect(0);
    f.run(&["send", "to", "two"]).expect(0);
    let out = f.run(&["stats", "to"]).expect(0).stdout();
    for line in [
        "name: to",
        "direction: linux-to-rt",
        "slot_size: 64",
        "slot_count: 64",
        "max_message: 56",
        "current: 2",
        "producer_index: 2",
        "consumer_index: 0",
        "state: ready",
        "error: -",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
    }
    let json = f.run(&["stats", "to", "--json"]).expect(0).json();
    assert_eq!(json["current"], 2);
    assert_eq!(json["consumer_wants_doorbell"], false);
    assert_eq!(json["notify"], "doorbell");

    let f = Fixture::new(true);
    let run = f.run(&["stats", "bad", "--json"]).expect(1);
    assert_eq!(
        run.json()["error"],
        "not a usable channel: channel header has the wrong magic"
    );
    assert!(run.stderr().contains("channel `bad`"), "{}", run.stderr());
}

#[test]
fn errors_and_exit_codes() {
    let f = Fixture::new(false);
    // A channel nobody announced: 1, naming it.
    let run = f.run(&["send", "nope", "x"]).expect(1);
    assert_eq!(
        run.stderr(),
        "bulkhead: channel `nope`: no channel `nope` is announced\n"
    );
    f.run(&["stats", "nope"]).expect(1);
    // The wrong way: 1.
    let run = f.run(&["receive", "to"]).expect(1);
    assert!(
        run.stderr()
            .contains("Linux is its producer and cannot receive from it"),
        "{}",
        run.stderr()
    );
    // Too long: 1.
    let run = f.run(&["send", "to", &"x".repeat(57)]).expect(1);
    assert!(
        run.stderr()
            .contains("longer than the channel's 56-byte maximum")
    );
    // Empty: 3, at once or after the timeout.
    let run = f.run(&["receive", "from", "--nonblock"]).expect(3);
    assert_eq!(
        run.stderr(),
        "bulkhead: channel `from`: channel would block\n"
    );
    let start = Instant::now();
    let run = f.run(&["receive", "from", "--timeout-ms", "100"]).expect(3);
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(run.stderr(), "bulkhead: channel `from`: timed out\n");
    // Full: 3.
    f.run(&["send", "small", "1"]).expect(0);
    f.run(&["send", "small", "2"]).expect(0);
    f.run(&["send", "small", "--nonblock", "3"]).expect(3);
    f.run(&["send", "small", "--timeout-ms", "50", "3"])
        .expect(3);
    // Usage: 2.
    f.run(&["send"]).expect(2);
    f.run(&["receive", "from", "-n", "0"]).expect(2);
    f.run(&["send", "to", "-p", "256", "x"]).expect(2);
    f.run(&["frobnicate"]).expect(2);
    // No memory: 1.
    let run = Run(Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["--mem", "/nonexistent/mem", "--cmdline"])
        .arg(f.cmdline())
        .args(["send", "to", "x"])
        .output()
        .unwrap())
    .expect(1);
    assert!(
        run.stderr()
            .starts_with("bulkhead: channel `to`: cannot open /nonexistent/mem: "),
        "{}",
        run.stderr()
    );
    // A malformed announcement: 1, naming the word and the field.
    std::fs::write(
        f.cmdline(),
        "bulkhead.channel=to,linux-to-rt,doorbell,0x0,0x2001",
    )
    .unwrap();
    let run = f.run(&["list"]).expect(1);
    assert!(
        run.stderr()
            .contains("`bulkhead.channel=to,linux-to-rt,doorbell,0x0,0x2001`: SIZE: a hexadecimal"),
        "{}",
        run.stderr()
    );
}

/// What the echo peer does to message number `n` (counted from 0).
#[derive(Clone, Copy)]
enum Fault {
    None,
    Drop(u64),
    Corrupt(u64),
}

/// Stands in for the RT echo task: copies every message from `to` to `from`, same priority,
/// until `stop`.
fn echo(mem: &Path, stop: &AtomicBool, fault: Fault) {
    let mut rx = ChannelReceiver::attach(Mapping::open(mem, 0, SIZE).unwrap()).unwrap();
    let mut tx = ChannelSender::attach(Mapping::open(mem, 0x2000, SIZE).unwrap()).unwrap();
    let mut buf = vec![0u8; rx.max_message()];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let deadline = Instant::now() + Duration::from_millis(20);
        let (len, priority) = match rx.receive_until(&mut buf, deadline) {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::TimedOut => continue,
            Err(e) => panic!("echo: {e}"),
        };
        match fault {
            Fault::Drop(k) if k == n => {}
            Fault::Corrupt(k) if k == n => {
                buf[len - 1] ^= 0x40;
                tx.send(&buf[..len], priority).unwrap();
            }
            _ => tx.send(&buf[..len], priority).unwrap(),
        }
        n += 1;
    }
}

/// Runs `bulkhead ping ARGS` beside an echo peer.
fn ping_with_echo(f: &Fixture, args: &[&str], fault: Fault) -> Run {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| echo(&f.mem(), &stop, fault));
        let mut all = vec!["ping", "--to", "to", "--from", "from"];
        all.extend_from_slice(args);
        let run = f.run(&all);
        stop.store(true, Ordering::Relaxed);
        run
    })
}

/// The numbers of ping's summary line (the first of its output), checking its exact shape.
fn ping_counts(out: &str) -> [u64; 7] {
    let line = out.lines().next().unwrap_or_default();
    let words: Vec<&str> = line.trim_end().split(' ').collect();
    let keys = [
        "sent",
        "received",
        "lost",
        "duplicated",
        "corrupt",
        "reordered",
        "max_rtt_us",
    ];
    assert_eq!(words.len(), 15, "{line}");
    assert_eq!(words[0], "bulkhead-ping:");
    let mut counts = [0; 7];
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(words[1 + 2 * i], *key, "{line}");
        counts[i] = words[2 + 2 * i].parse().unwrap();
    }
    counts
}

#[test]
fn ping_through_an_echo_peer() {
    let f = Fixture::new(false);
    let run = ping_with_echo(&f, &[], Fault::None).expect(0);
    let out = run.stdout();
    assert_eq!(out.lines().count(), 2, "{out}");
    // Off Bulkhead, and with a peer that never sleeps on the doorbell: nothing to ring.
    assert_eq!(
        out.lines().nth(1),
        Some("bulkhead-ping: doorbells rung 0 not rung 0; woken by interrupts 0"),
        "{out}"
    );
    let [sent, received, lost, duplicated, corrupt, reordered, _rtt] = ping_counts(&out);
    assert_eq!(
        (sent, received, lost, duplicated, corrupt, reordered),
        (200, 200, 0, 0, 0, 0)
    );

    let run = ping_with_echo(&f, &["-n", "1000", "--json"], Fault::None).expect(0);
    let json = run.json();
    assert_eq!(json["sent"], 1000);
    assert_eq!(json["received"], 1000);
    assert_eq!(json["lost"], 0);
    assert_eq!(json["ok"], true);
    assert!(json["max_rtt_us"].is_u64());
}

#[test]
fn ping_counts_what_goes_wrong() {
    let f = Fixture::new(false);
    // Nobody echoes: every message sent (a window's worth) is lost; status 3.
    let run = f
        .run(&[
            "ping",
            "--to",
            "to",
            "--from",
            "from",
            "--timeout-ms",
            "200",
        ])
        .expect(3);
    let [sent, received, lost, ..] = ping_counts(&run.stdout());
    assert_eq!((sent, received, lost), (63, 0, 63));
    assert!(
        run.stderr().contains("63 replies missing"),
        "{}",
        run.stderr()
    );
    // The echo comes up: it first echoes the 63 left in `to`, which the next run waits for
    // and discards before it starts.
    let run = ping_with_echo(&f, &["-n", "50"], Fault::None).expect(0);
    let [sent, received, ..] = ping_counts(&run.stdout());
    assert_eq!((sent, received), (50, 50));
    assert!(
        run.stderr()
            .contains("discarded 63 messages of an earlier run on `from`"),
        "{}",
        run.stderr()
    );

    // One message dropped: lost 1, status 3.
    let f = Fixture::new(false);
    let run = ping_with_echo(&f, &["--timeout-ms", "1000"], Fault::Drop(10)).expect(3);
    let [sent, received, lost, duplicated, corrupt, reordered, _] = ping_counts(&run.stdout());
    assert_eq!((lost, duplicated, corrupt, reordered), (1, 0, 0, 0));
    assert_eq!(sent, received + 1);
    assert!(sent < 200, "the window stops at the missing reply");

    // One message corrupted: corrupt 1 (and that message lost), status 1.
    let f = Fixture::new(false);
    let run = ping_with_echo(&f, &["--timeout-ms", "1000"], Fault::Corrupt(20)).expect(1);
    let [_, _, lost, duplicated, corrupt, reordered, _] = ping_counts(&run.stdout());
    assert_eq!((lost, duplicated, corrupt, reordered), (1, 0, 1, 0));
}

/// A status report at `uptime_s` seconds: two CPUs, on each a latency task that ran 3.1% of
/// the time so far and an idle task that ran the rest.
fn status_report(uptime_s: u64) -> Vec<u8> {
    let uptime_ns = uptime_s * 1_000_000_000;
    let cpus: Vec<CpuLatency> = (0..2)
        .map(|cpu| {
            let samples = uptime_s * 1000 + u64::from(cpu);
            let mut histogram = [0; HISTOGRAM_BUCKETS];
            histogram[6] = samples;
            CpuLatency {
                cpu,
                samples,
                min_ns: 41_400,
                avg_ns: 41_450,
                max_ns: 41_700,
                p99_ns: 41_700,
                p999_ns: 41_700,
                misses: u64::from(cpu),
                overflow: 0,
                histogram,
                ..CpuLatency::default()
            }
        })
        .collect();
    let mut tasks = Vec::new();
    for cpu in 0..2u16 {
        let busy = uptime_ns / 1000 * 31;
        tasks.push(TaskStatus {
            name: TaskStatus::name_bytes("latency"),
            cpu,
            priority: 90,
            state: TaskState::Sleeping as u8,
            cpu_time_ns: busy,
            wakeups: uptime_s * 1000,
            deadline_misses: 0,
            wake_max_ns: 41_700,
            ..TaskStatus::default()
        });
        tasks.push(TaskStatus {
            name: TaskStatus::name_bytes("idle"),
            cpu,
            state: TaskState::Ready as u8,
            cpu_time_ns: uptime_ns - busy,
            ..TaskStatus::default()
        });
    }
    let mut buf = vec![0u8; 2040];
    let len = encode(&mut buf, uptime_ns, &cpus, &tasks).unwrap();
    buf.truncate(len);
    buf
}

/// The words of the first line of `out` that starts with `first` followed by a space, after
/// line `after`.
fn row<'a>(out: &'a str, after: usize, first: &str) -> Vec<&'a str> {
    out.lines()
        .skip(after)
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no `{first}` row after line {after} in\n{out}"))
        .split_whitespace()
        .collect()
}

#[test]
fn rt_shows_status_reports() {
    let f = Fixture::with_rt_status();
    let mut peer = f.rt_peer();
    peer.send(&status_report(10), 0).unwrap();
    peer.send(&status_report(12), 0).unwrap();
    let out = f.run(&["rt", "-n", "2", "--queued"]).expect(0).stdout();
    let lines: Vec<&str> = out.lines().collect();
    // Two blocks of 1 + 3 + 5 lines, an empty line between them.
    assert_eq!(lines.len(), 19, "{out}");
    assert_eq!(lines[0], "rt: uptime 10.000 s, 2 CPUs, 4 tasks");
    assert_eq!(lines[9], "");
    assert_eq!(lines[10], "rt: uptime 12.000 s, 2 CPUs, 4 tasks");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "CPU", "SAMPLES", "MIN_US", "AVG_US", "MAX_US", "P99_US", "P99.9_US", "MISSES",
            "OVERFLOW"
        ]
    );
    assert_eq!(
        row(&out, 0, "1"),
        [
            "1", "10001", "41.4", "41.4", "41.7", "41.7", "41.7", "1", "0"
        ]
    );
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        [
            "TASK",
            "CPU",
            "PRIO",
            "STATE",
            "CPU%",
            "CPU_MS",
            "WAKEUPS",
            "MISSES",
            "WAKE_MAX_US"
        ]
    );
    // The first report has no CPU%; the second has the share of the two seconds between.
    assert_eq!(
        row(&out, 0, "latency"),
        [
            "latency", "0", "90", "sleeping", "-", "310.0", "10000", "0", "41.7"
        ]
    );
    assert_eq!(
        row(&out, 0, "idle"),
        ["idle", "0", "0", "ready", "-", "9690.0", "0", "0", "0.0"]
    );
    assert_eq!(
        row(&out, 10, "latency"),
        [
            "latency", "0", "90", "sleeping", "3.1", "372.0", "12000", "0", "41.7"
        ]
    );
    assert_eq!(row(&out, 10, "idle")[4], "96.9");

    // JSON: one object per report; CPU% counts from this run's first report.
    peer.send(&status_report(13), 0).unwrap();
    peer.send(&status_report(14), 0).unwrap();
    let run = f.run(&["rt", "-n", "2", "--json", "--queued"]).expect(0);
    let reports: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["uptime_ns"], 13_000_000_000u64);
    let bucket = |lo: u64, hi: Option<u64>, count: u64| serde_json::json!({"lo_ns": lo, "hi_ns": hi, "count": count});
    let mut histogram = vec![bucket(0, Some(1_000), 0)];
    histogram.extend((1..11).map(|k| {
        let hi = (1_000u64 << k).min(1_000_000);
        bucket(1_000 << (k - 1), Some(hi), if k == 6 { 14_001 } else { 0 })
    }));
    histogram.push(bucket(1_000_000, None, 0));
    assert_eq!(
        reports[1]["cpus"][1],
        serde_json::json!({
            "cpu": 1, "samples": 14001, "min_ns": 41400, "avg_ns": 41450, "max_ns": 41700,
            "p99_ns": 41700, "p999_ns": 41700, "misses": 1, "overflow": 0,
            "histogram": histogram
        })
    );
    assert_eq!(reports[1]["tasks"].as_array().unwrap().len(), 4);
    let latency = &reports[1]["tasks"][2];
    assert_eq!(latency["name"], "latency");
    assert_eq!(latency["cpu"], 1);
    assert_eq!(latency["priority"], 90);
    assert_eq!(latency["state"], "sleeping");
    assert_eq!(latency["cpu_time_ns"], 434_000_000u64);
    assert_eq!(latency["wakeups"], 14000);
    assert_eq!(latency["deadline_misses"], 0);
    assert_eq!(latency["wake_max_ns"], 41700);
    assert!(reports[0]["tasks"][2]["cpu_percent"].is_null());
    let pct = latency["cpu_percent"].as_f64().unwrap();
    assert!((pct - 3.1).abs() < 1e-9, "{pct}");
    assert_eq!(reports[1]["tasks"][3]["state"], "ready");
}

#[test]
fn rt_shows_histograms_when_asked() {
    let f = Fixture::with_rt_status();
    let mut peer = f.rt_peer();
    peer.send(&status_report(10), 0).unwrap();
    let out = f.run(&["rt", "--histogram"]).expect(0).stdout();
    let lines: Vec<&str> = out.lines().collect();
    // The block of 1 + 3 + 5 lines, then per CPU a title, a header and 12 buckets.
    assert_eq!(lines.len(), 9 + 2 * 14, "{out}");
    assert_eq!(lines[0], "rt: uptime 10.000 s, 2 CPUs, 4 tasks");
    assert_eq!(lines[9], "CPU 0 wake-up latency histogram: 10000 samples");
    assert_eq!(lines[10], "RANGE_US  COUNT  CUM%");
    assert_eq!(lines[11], "0-1       0      0.00");
    assert_eq!(
        lines[17],
        format!("32-64     10000  100.00  {}", "#".repeat(40))
    );
    assert_eq!(lines[22], ">=1000    0      100.00");
    assert_eq!(lines[23], "CPU 1 wake-up latency histogram: 10001 samples");
    assert_eq!(lines[36], ">=1000    0      100.00");
    // Without it, the same block and nothing more.
    peer.send(&status_report(11), 0).unwrap();
    let out = f.run(&["rt"]).expect(0).stdout();
    assert_eq!(out.lines().count(), 9, "{out}");
    assert!(!out.contains("histogram"), "{out}");
}

#[test]
fn rt_follows_reports_as_they_come() {
    let f = Fixture::with_rt_status();
    let mut peer = f.rt_peer();
    // Waits for each report (they come 50 ms apart here, a second apart from the RT kernel).
    let run = std::thread::scope(|s| {
        s.spawn(|| {
            for uptime in 1..=3 {
                std::thread::sleep(Duration::from_millis(50));
                peer.send(&status_report(uptime), 0).unwrap();
            }
        });
        f.run(&["rt", "-n", "3"])
    })
    .expect(0);
    let out = run.stdout();
    let summaries: Vec<&str> = out.lines().filter(|l| l.starts_with("rt: ")).collect();
    assert_eq!(
        summaries,
        [
            "rt: uptime 1.000 s, 2 CPUs, 4 tasks",
            "rt: uptime 2.000 s, 2 CPUs, 4 tasks",
            "rt: uptime 3.000 s, 2 CPUs, 4 tasks"
        ]
    );
    // `-n 0` follows until a report does not come: everything there is, then status 3.
    peer.send(&status_report(4), 0).unwrap();
    peer.send(&status_report(5), 0).unwrap();
    let run = f
        .run(&["rt", "-n", "0", "--json", "--timeout-ms", "100", "--queued"])
        .expect(3);
    let uptimes: Vec<u64> = run
        .stdout()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["uptime_ns"].as_u64().unwrap() / 1_000_000_000
        })
        .collect();
    assert_eq!(uptimes, [4, 5]);
}

#[test]
fn rt_starts_from_the_newest_queued_report() {
    let f = Fixture::with_rt_status();
    let mut peer = f.rt_peer();
    for uptime in [1, 2, 3] {
        peer.send(&status_report(uptime), 0).unwrap();
    }
    let out = f.run(&["rt"]).expect(0).stdout();
    assert!(
        out.starts_with("rt: uptime 3.000 s, 2 CPUs, 4 tasks\n"),
        "{out}"
    );
    // The older ones were consumed: nothing is left.
    f.run(&["rt", "--timeout-ms", "100"]).expect(3);
}

#[test]
fn rt_errors_and_exit_codes() {
    let f = Fixture::with_rt_status();
    let mut peer = f.rt_peer();
    // No report: 3, after the timeout.
    let start = Instant::now();
    let run = f.run(&["rt", "--timeout-ms", "100"]).expect(3);
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(run.stdout().is_empty());
    assert!(
        run.stderr()
            .starts_with("bulkhead: channel `rt-status`: no status report within 100 ms"),
        "{}",
        run.stderr()
    );
    // Not a status report: 1, naming the channel and what is wrong.
    peer.send(b"garbage, not a status report", 0).unwrap();
    let run = f.run(&["rt"]).expect(1);
    assert_eq!(
        run.stderr(),
        "bulkhead: channel `rt-status`: status message: wrong magic (not a status report)\n"
    );
    let report = status_report(1);
    peer.send(&report[..report.len() - 1], 0).unwrap();
    let run = f.run(&["rt"]).expect(1);
    assert!(
        run.stderr().contains(&format!(
            "status message: {} bytes where its counts say {}",
            report.len() - 1,
            report.len()
        )),
        "{}",
        run.stderr()
    );
    // A report of another layout version: 1, saying so.
    let mut old = status_report(1);
    old[4..6].copy_from_slice(&1u16.to_le_bytes());
    peer.send(&old, 0).unwrap();
    let run = f.run(&["rt"]).expect(1);
    assert!(
        run.stderr().starts_with(
            "bulkhead: channel `rt-status`: status message: layout version 1, this build reads \
             only version 2"
        ),
        "{}",
        run.stderr()
    );
    // A good report before a bad one is printed first.
    peer.send(&report, 0).unwrap();
    peer.send(&report[..8], 0).unwrap();
    let run = f.run(&["rt", "-n", "2", "--queued"]).expect(1);
    assert!(
        run.stdout().starts_with("rt: uptime 1.000 s"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stderr().contains("status message: 8 bytes, no header"),
        "{}",
        run.stderr()
    );
    // The wrong way: 1.
    let run = f.run(&["rt", "--channel", "to"]).expect(1);
    assert!(
        run.stderr()
            .contains("Linux is its producer and cannot receive from it"),
        "{}",
        run.stderr()
    );
    // Not announced: 1.
    let run = Fixture::new(false).run(&["rt"]).expect(1);
    assert_eq!(
        run.stderr(),
        "bulkhead: channel `rt-status`: no channel `rt-status` is announced\n"
    );
    // Usage: 2.
    f.run(&["rt", "-n", "-1"]).expect(2);
    f.run(&["rt", "--timeout-ms", "x"]).expect(2);
}

/// Where [`LogFixture`] puts the log channels, and their size (4 KiB header, 64 slots of 64
/// bytes: lines of up to 56 bytes).
const HV_LOG_BASE: u64 = 0xc000;
const RT_LOG_BASE: u64 = 0xe000;
const LOG_SIZE: usize = 0x2000;

/// [`Fixture::new`] and two log channels: `hvlog` (hypervisor-to-linux, found by its direction)
/// and `rt-log` (rt-to-linux), each written through the producers' own log writer.
struct LogFixture {
    f: Fixture,
    hv: Mapping,
    rt: Mapping,
}

impl LogFixture {
    fn new() -> Self {
        let f = Fixture::new(false);
        std::fs::OpenOptions::new()
            .write(true)
            .open(f.mem())
            .unwrap()
            .set_len(RT_LOG_BASE + LOG_SIZE as u64)
            .unwrap();
        let mut cmdline = std::fs::read_to_string(f.cmdline()).unwrap();
        cmdline.insert_str(
            cmdline.trim_end().len(),
            &format!(
                " bulkhead.channel=hvlog,hypervisor-to-linux,poll,{HV_LOG_BASE:#x},{LOG_SIZE:#x} \
                 bulkhead.channel=rt-log,rt-to-linux,poll,{RT_LOG_BASE:#x},{LOG_SIZE:#x}"
            ),
        );
        std::fs::write(f.cmdline(), cmdline).unwrap();
        let map = |base| Mapping::open(f.mem(), base, LOG_SIZE).unwrap();
        let (hv, rt) = (map(HV_LOG_BASE), map(RT_LOG_BASE));
        Ring::init(hv.region().unwrap(), 64).unwrap();
        Ring::init(rt.region().unwrap(), 64).unwrap();
        Self { f, hv, rt }
    }

    /// A producer's log writer on `mapping`'s channel.
    fn writer(mapping: &Mapping) -> LogWriter<'_> {
        let mut w = LogWriter::new();
        w.attach(
            Ring::attach(mapping.region().unwrap())
                .unwrap()
                .into_producer(),
        );
        w
    }
}

/// The lines of `run`'s standard output.
fn lines(run: &Run) -> Vec<String> {
    run.stdout().lines().map(str::to_owned).collect()
}

#[test]
fn log_shows_the_lines_waiting_then_only_newer_ones() {
    let lf = LogFixture::new();
    let mut rt = LogFixture::writer(&lf.rt);
    write!(
        rt,
        "bulkhead-rt 0.1.0 starting\necho: commands -> telemetry ready\n"
    )
    .unwrap();
    let mut hv = LogFixture::writer(&lf.hv);
    writeln!(hv, "channel telemetry: 64 KiB at 0x38000000, ready").unwrap();
    let run = lf.f.run(&["log", "rt"]).expect(0);
    assert_eq!(
        lines(&run),
        [
            "bulkhead-rt 0.1.0 starting",
            "echo: commands -> telemetry ready"
        ]
    );
    // Found by its direction, whatever its name.
    let run = lf.f.run(&["log", "hypervisor"]).expect(0);
    assert_eq!(
        lines(&run),
        ["channel telemetry: 64 KiB at 0x38000000, ready"]
    );
    // Read once: nothing is left, and that is not an error.
    assert_eq!(lf.f.run(&["log", "rt"]).expect(0).stdout(), "");
    writeln!(rt, "latency cpu=0 samples=1001").unwrap();
    writeln!(rt, "next").unwrap();
    let run = lf.f.run(&["log", "rt", "-n", "1"]).expect(0);
    assert_eq!(lines(&run), ["latency cpu=0 samples=1001"]);
    let run = lf.f.run(&["log", "rt", "--channel", "rt-log"]).expect(0);
    assert_eq!(lines(&run), ["next"]);
}

#[test]
fn log_marks_dropped_and_cut_lines() {
    let lf = LogFixture::new();
    let mut rt = LogFixture::writer(&lf.rt);
    // 64 slots: the last 6 lines find the ring full.
    for i in 0..70 {
        writeln!(rt, "line {i}").unwrap();
    }
    assert_eq!((rt.sent(), rt.dropped()), (64, 6));
    let run = lf.f.run(&["log", "rt"]).expect(0);
    assert_eq!(lines(&run).len(), 64);
    writeln!(rt, "{}", "x".repeat(80)).unwrap();
    writeln!(rt, "bell\x07").unwrap();
    let run = lf.f.run(&["log", "rt"]).expect(0);
    assert_eq!(
        lines(&run),
        [
            "[... 6 lines dropped]".to_owned(),
            format!("{} [cut]", "x".repeat(50)),
            "bell\\u{7}".to_owned()
        ]
    );

    for i in 0..70 {
        writeln!(rt, "line {i}").unwrap();
    }
    lf.f.run(&["log", "rt", "-n", "63"]).expect(0);
    writeln!(rt, "{}", "y".repeat(80)).unwrap();
    let run = lf.f.run(&["log", "rt", "--json"]).expect(0);
    let json: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        json,
        [
            serde_json::json!({"text": "line 63"}),
            serde_json::json!({"dropped": 6}),
            serde_json::json!({"text": format!("{} [cut]", "y".repeat(50)), "cut": true}),
        ]
    );
}

#[test]
fn log_waits_for_count_and_follows() {
    let lf = LogFixture::new();
    let mut rt = LogFixture::writer(&lf.rt);
    writeln!(rt, "one").unwrap();
    // -n waits for the lines that have not come yet.
    let run = std::thread::scope(|s| {
        s.spawn(|| {
            for line in ["two", "three"] {
                std::thread::sleep(Duration::from_millis(50));
                writeln!(rt, "{line}").unwrap();
            }
        });
        lf.f.run(&["log", "rt", "-n", "3"])
    })
    .expect(0);
    assert_eq!(lines(&run), ["one", "two", "three"]);
    // The time runs out before the count: what came, then status 3.
    writeln!(rt, "four").unwrap();
    let run =
        lf.f.run(&["log", "rt", "-n", "2", "--timeout-ms", "100"])
            .expect(3);
    assert_eq!(lines(&run), ["four"]);
    assert_eq!(
        run.stderr(),
        "bulkhead: channel `rt-log`: timed out after 100 ms with 1 lines shown\n"
    );
    // -f follows until the time runs out.
    let mut hv = LogFixture::writer(&lf.hv);
    writeln!(hv, "exits: cpu 0 linux: total 8 new 8: CPUID=8").unwrap();
    let run =
        lf.f.run(&["log", "hypervisor", "-f", "--timeout-ms", "100", "--json"])
            .expect(3);
    assert_eq!(
        run.stdout(),
        "{\"text\":\"exits: cpu 0 linux: total 8 new 8: CPUID=8\"}\n"
    );
}

#[test]
fn log_errors_and_exit_codes() {
    let lf = LogFixture::new();
    // No hypervisor log channel: 1, saying so.
    let run = Fixture::new(false).run(&["log", "hypervisor"]).expect(1);
    assert_eq!(
        run.stderr(),
        "bulkhead: no hypervisor-to-linux channel is announced (the config gives the \
         hypervisor no log channel)\n"
    );
    // No rt-log: 1, naming it.
    let run = Fixture::new(false).run(&["log", "rt"]).expect(1);
    assert_eq!(
        run.stderr(),
        "bulkhead: channel `rt-log`: no channel `rt-log` is announced\n"
    );
    // The wrong way: 1.
    let run = lf.f.run(&["log", "rt", "--channel", "to"]).expect(1);
    assert!(
        run.stderr()
            .contains("Linux is its producer and cannot receive from it"),
        "{}",
        run.stderr()
    );
    // Linux cannot write into the hypervisor's log.
    let run = lf.f.run(&["send", "hvlog", "x"]).expect(1);
    assert!(
        run.stderr().contains(
            "channel `hvlog` is hypervisor-to-linux: Linux is its consumer and cannot send to it"
        ),
        "{}",
        run.stderr()
    );
    // A second reader at the same time: 1.
    let _reader =
        ChannelReceiver::attach(Mapping::open(lf.f.mem(), RT_LOG_BASE, LOG_SIZE).unwrap()).unwrap();
    let run = lf.f.run(&["log", "rt"]).expect(1);
    assert!(run.stderr().contains("in use"), "{}", run.stderr());
    // Usage: 2.
    lf.f.run(&["log"]).expect(2);
    lf.f.run(&["log", "linux"]).expect(2);
    lf.f.run(&["log", "rt", "-n", "0"]).expect(2);
    lf.f.run(&["log", "rt", "-n", "2", "-f"]).expect(2);
    lf.f.run(&["log", "rt", "--timeout-ms", "x"]).expect(2);
}
