//! One emulator run: its directory, its process, and following its serial consoles.
//!
//! The emulator writes COM1 (the hypervisor and the RT kernel) to `serial.log` and COM2 (Linux)
//! to `com2.log`. A [`Run`] follows both and merges their complete lines into one console, in
//! the order it read them: on each poll COM1's new lines, then COM2's. Lines from COM2 carry no
//! prefix.
//!
//! A run started with a COM3 peer ([`Run::start_with_test_peers`], [`Scenario::com3_peer`]) also
//! holds the TCP listener COM3's other end connects to; [`Run::com3`] hands the test that end.
//!
//! A run started with Linux's console on the harness ([`Run::start_with_linux_console`]) wires
//! COM2 to a TCP connection instead of its file: a thread of the run copies what Linux writes
//! into `com2.log` (so the console is followed as in any run) and to a tap (a terminal), and
//! [`Run::linux_console`] hands out the end that sends keys to Linux.
//!
//! [`Scenario::com3_peer`]: crate::Scenario::com3_peer

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::emulator::{Boot, COM1_LOG, COM2_LOG, Emulator, Peers};
use crate::expect::{Expect, Pattern, Progress, clean_line};
use crate::nic_peer::NicPeer;
use crate::process::{GroupChild, interrupted};
use crate::serial_peer::{PeerListener, SerialPeer};

/// How often the serial logs are polled.
const POLL: Duration = Duration::from_millis(50);
/// How long a run waits for the emulator to connect a port wired to the harness when it needs
/// the connection at start-up (Linux's console).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a run keeps reading after a fail pattern, so that the report shows what followed.
const FAIL_GRACE: Duration = Duration::from_secs(1);
/// Lines of the console shown when a run fails.
const SERIAL_TAIL: usize = 60;
/// Lines of the emulator's log shown when a run fails.
const EMULATOR_TAIL: usize = 20;

/// A run directory: `target/runs/<name>/`, emptied when it is created.
///
/// Everything a run writes lives there: the ISO, the emulator's config and log, `serial.log`
/// (COM1) and `com2.log` (COM2).
#[derive(Clone, Debug)]
pub struct RunDir {
    name: String,
    path: PathBuf,
}

impl RunDir {
    /// Creates `target/runs/<name>/`, wiping what an earlier run of that name left.
    pub fn create(name: &str) -> Result<Self> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || name.starts_with('.')
        {
            bail!("bad run name {name:?}: use letters, digits, '-', '_' and '.'");
        }
        let path = crate::target_dir().join("runs").join(name);
        match fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot wipe {}", path.display())),
        }
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            name: name.to_string(),
            path,
        })
    }

    /// The run's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }
}

/// The serial port a line of the console came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// COM1: the hypervisor and the RT kernel.
    Com1,
    /// COM2: Linux.
    Com2,
}

/// Something a run reports while it is followed with [`Run::watch`].
#[derive(Debug)]
pub enum Event<'a> {
    /// A new, complete line of the console, from COM1 or COM2 (cleaned of terminal escapes).
    Line(Port, &'a str),
    /// One poll went by with nothing else to report.
    Tick {
        /// Wall time since the emulator started.
        elapsed: Duration,
        /// Bytes in the serial logs (COM1 and COM2) so far.
        serial_bytes: u64,
    },
}

/// How a successful wait ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Wall time since the emulator started.
    pub elapsed: Duration,
    /// The emulator's exit status, if it has exited.
    pub exit: Option<ExitStatus>,
}

/// Why a wait failed.
#[derive(Debug, Clone)]
pub enum WaitErrorKind {
    /// The wall-clock limit passed.
    Timeout(Duration),
    /// A line matched a fail pattern (and no expectation).
    FailLine(String),
    /// A stop pattern (an end-of-run marker) appeared before every expectation was met.
    Stopped(String),
    /// The emulator exited before every expectation was met.
    Exited(Option<ExitStatus>),
    /// The user interrupted the run.
    Interrupted,
}

/// A failed wait, with what the run printed last.
#[derive(Clone)]
pub struct WaitError {
    /// Why it failed.
    pub kind: WaitErrorKind,
    /// The expectations not met, one per entry.
    pub missing: Vec<String>,
    /// Which emulator, on which machine.
    pub emulator: String,
    /// The run directory.
    pub dir: PathBuf,
    /// Wall time since the emulator started.
    pub elapsed: Duration,
    /// The last lines of the console (COM1 and COM2, merged in the order the harness read them).
    pub serial_tail: Vec<String>,
    /// The emulator's log file name and its last lines.
    pub emulator_log: (String, Vec<String>),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}: ", self.emulator, self.dir.display())?;
        match &self.kind {
            WaitErrorKind::Timeout(limit) => {
                write!(f, "time limit ({}s) reached", limit.as_secs())?
            }
            WaitErrorKind::FailLine(line) => write!(f, "failure line on the console: {line:?}")?,
            WaitErrorKind::Stopped(line) => write!(f, "run ended early with {line:?}")?,
            WaitErrorKind::Exited(Some(status)) => write!(f, "emulator exited ({status})")?,
            WaitErrorKind::Exited(None) => write!(f, "emulator exited")?,
            WaitErrorKind::Interrupted => write!(f, "interrupted")?,
        }
        writeln!(f, ", {:.1}s after start", self.elapsed.as_secs_f64())?;
        if !self.missing.is_empty() {
            writeln!(f, "still expected:")?;
            for m in &self.missing {
                writeln!(f, "  {m}")?;
            }
        }
        writeln!(
            f,
            "--- last {} lines of the console ({COM1_LOG} and {COM2_LOG}) ---",
            self.serial_tail.len()
        )?;
        for line in &self.serial_tail {
            writeln!(f, "{line}")?;
        }
        let (name, lines) = &self.emulator_log;
        writeln!(f, "--- last {} lines of {name} ---", lines.len())?;
        for line in lines {
            writeln!(f, "{line}")?;
        }
        write!(f, "---")
    }
}

impl fmt::Debug for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for WaitError {}

/// A booted emulator. Dropping it stops the emulator (its whole process group), and only then
/// lets go of COM3's connection if it has one.
#[derive(Debug)]
pub struct Run {
    emulator: Emulator,
    dir: PathBuf,
    child: GroupChild,
    started: Instant,
    console: Console,
    /// COM2's listener and connection when Linux's console is on the harness, and COM3's when
    /// the run has a COM3 peer. After `child`: fields drop in order, so the emulator is
    /// stopped before its sockets' other ends close.
    com2: Option<PeerListener>,
    com3: Option<PeerListener>,
    /// The NIC's peer, when the run has one (stopped after the emulator, too).
    nic: Option<NicPeer>,
}

impl Run {
    /// Boots `iso` in `emulator`, with its files in `dir`.
    pub fn start(dir: &RunDir, iso: &Path, emulator: &Emulator) -> Result<Self> {
        Self::launch(dir, Boot::Cdrom(iso), emulator, None, None, None)
    }

    /// Boots the raw disk image `disk` (a disk with its own boot loader) in `emulator`, with
    /// its files in `dir`.
    pub fn start_from_disk(dir: &RunDir, disk: &Path, emulator: &Emulator) -> Result<Self> {
        Self::launch(dir, Boot::Disk(disk), emulator, None, None, None)
    }

    /// [`Run::start`], with COM2, Linux's console, wired to the harness instead of its file, so
    /// that a person (or a test) can type into it: the run listens on `127.0.0.1` before the
    /// emulator starts and accepts its connection (within a minute); from then on a thread
    /// copies every byte Linux writes to `com2.log`, where the run's console reads it as in
    /// any run, and to `tap` (a terminal's output; errors writing it are ignored).
    /// [`Run::linux_console`] sends keys.
    pub fn start_with_linux_console(
        dir: &RunDir,
        iso: &Path,
        emulator: &Emulator,
        tap: Box<dyn Write + Send>,
    ) -> Result<Self> {
        let listener = PeerListener::bind("COM2")
            .with_context(|| format!("{}: Linux's console", dir.name()))?;
        let mut run = Self::launch(dir, Boot::Cdrom(iso), emulator, Some(listener), None, None)?;
        let log_path = dir.join(COM2_LOG);
        let log = OpenOptions::new()
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let output = run.linux_console()?.into_stream();
        std::thread::Builder::new()
            .name("linux-console".into())
            .spawn(move || copy_console(output, log, tap))
            .context("cannot start the thread that copies Linux's console")?;
        Ok(run)
    }

    /// [`Run::start`], with a third serial port if `com3`: COM3 (I/O ports 0x3e8 to 0x3ef, ISA
    /// IRQ 4), whose other end is a TCP connection for the test (the run listens on
    /// `127.0.0.1`, on a port the system picks, before the emulator starts, and the emulator
    /// connects to it: Bochs as a `socket-client`, QEMU with `-serial tcp:`; [`Run::com3`]
    /// accepts it); and with an Intel 8254x NIC whose wire is a [`NicPeer`] that answers the RT
    /// NIC driver's frames if `nic` ([`Run::nic`] reads its counts).
    pub fn start_with_test_peers(
        dir: &RunDir,
        iso: &Path,
        emulator: &Emulator,
        com3: bool,
        nic: bool,
    ) -> Result<Self> {
        let com3 = com3
            .then(|| PeerListener::bind("COM3"))
            .transpose()
            .with_context(|| format!("{}: the COM3 peer", dir.name()))?;
        let nic = nic
            .then(NicPeer::start)
            .transpose()
            .with_context(|| format!("{}: the NIC peer", dir.name()))?;
        Self::launch(dir, Boot::Cdrom(iso), emulator, None, com3, nic)
    }

    /// The NIC's peer, for a run started with one ([`Run::start_with_test_peers`],
    /// [`Scenario::nic_peer`]); fails at once for any other run.
    ///
    /// [`Scenario::nic_peer`]: crate::Scenario::nic_peer
    pub fn nic(&self) -> Result<&NicPeer> {
        self.nic.as_ref().with_context(|| {
            format!(
                "{}: this run has no NIC peer (start it with Scenario::nic_peer)",
                self.dir.display()
            )
        })
    }

    fn launch(
        dir: &RunDir,
        boot: Boot<'_>,
        emulator: &Emulator,
        com2: Option<PeerListener>,
        com3: Option<PeerListener>,
        nic: Option<NicPeer>,
    ) -> Result<Self> {
        let image = boot.path();
        let image = fs::canonicalize(image)
            .with_context(|| format!("no boot image at {}", image.display()))?;
        let boot = match boot {
            Boot::Cdrom(_) => Boot::Cdrom(&image),
            Boot::Disk(_) => Boot::Disk(&image),
        };
        let logs = [COM1_LOG, COM2_LOG].map(|name| dir.join(name));
        // The emulator appends to or replaces them; make sure they exist and are empty either way.
        for log in &logs {
            File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        }
        // The listeners exist already: the emulator connects while it starts.
        let peers = Peers {
            com2: com2.as_ref().map(PeerListener::addr),
            com3: com3.as_ref().map(PeerListener::addr),
            nic: nic.as_ref().map(NicPeer::emulator_port),
        };
        let child = emulator.spawn(boot, dir.path(), peers)?;
        Ok(Self {
            emulator: emulator.clone(),
            dir: dir.path().to_path_buf(),
            console: Console::new(logs),
            child,
            started: Instant::now(),
            com2,
            com3,
            nic,
        })
    }

    /// The end of Linux's console that sends keys to it, for a run started with
    /// [`Run::start_with_linux_console`]: what is sent there, Linux reads from COM2. (What
    /// Linux writes goes to `com2.log` and the run's tap; reading from this handle would take
    /// bytes from them.) Fails at once for any other run.
    pub fn linux_console(&mut self) -> Result<SerialPeer> {
        let Some(listener) = &mut self.com2 else {
            bail!(
                "{}: this run has Linux's console in its file (start it with \
                 Run::start_with_linux_console)",
                self.dir.display()
            );
        };
        let child = &mut self.child;
        listener.peer(CONNECT_TIMEOUT, &mut || child.exited(), &self.dir)
    }

    /// The test's end of COM3, for a run started with a COM3 peer ([`Run::start_with_test_peers`],
    /// [`Scenario::com3_peer`]).
    ///
    /// The first call accepts the emulator's connection, waiting up to `timeout` (the emulator
    /// connects as it starts, so it is usually there already); it fails, naming COM3 and its
    /// address, when nothing connected by then or when the emulator exited first. Later calls
    /// return a handle on the same connection at once. The run keeps the connection open until
    /// it is dropped, whatever becomes of the handles.
    ///
    /// Fails at once for a run without a COM3 peer.
    ///
    /// [`Scenario::com3_peer`]: crate::Scenario::com3_peer
    pub fn com3(&mut self, timeout: Duration) -> Result<SerialPeer> {
        let Some(listener) = &mut self.com3 else {
            bail!(
                "{}: this run has no COM3 peer (start it with Scenario::com3_peer or \
                 Run::start_with_test_peers)",
                self.dir.display()
            );
        };
        let child = &mut self.child;
        listener.peer(timeout, &mut || child.exited(), &self.dir)
    }

    /// Waits until every line `expect` asks for has appeared on the console (COM1 or COM2).
    ///
    /// Fails on a fail pattern, a stop pattern before the expectations are met, the emulator's
    /// exit, or when `timeout` passes; the error shows the tail of the console and of the
    /// emulator's log. Lines read by earlier waits on this run count.
    pub fn wait_for(
        &mut self,
        expect: &Expect,
        timeout: Duration,
    ) -> Result<Outcome, Box<WaitError>> {
        self.watch(expect, Some(timeout), &mut |_| {})
    }

    /// [`Run::wait_for`], reporting each new console line (COM1's and COM2's, merged) and each
    /// poll to `observer`, with an optional time limit.
    pub fn watch(
        &mut self,
        expect: &Expect,
        timeout: Option<Duration>,
        observer: &mut dyn FnMut(Event<'_>),
    ) -> Result<Outcome, Box<WaitError>> {
        let started_waiting = Instant::now();
        let mut progress = Progress::new(expect);
        for line in &self.console.lines {
            progress.feed(line);
        }
        let mut fail_deadline: Option<Instant> = None;
        loop {
            if interrupted() {
                return Err(self.error(WaitErrorKind::Interrupted, &progress));
            }
            let exit = self.child.exited();
            let first_new = self.console.lines.len();
            self.console.poll(exit.is_some());
            let new = self.console.lines[first_new..]
                .iter()
                .zip(&self.console.ports[first_new..]);
            for (line, &port) in new {
                observer(Event::Line(port, line));
                progress.feed(line);
            }

            // What ends the wait now, if anything: `Ok` for success, `Err` for why not.
            let verdict = if let Some(line) = progress.failed_at.clone() {
                // Keep reading a moment so that the report shows what followed the failure.
                let deadline = *fail_deadline.get_or_insert_with(|| Instant::now() + FAIL_GRACE);
                (exit.is_some() || Instant::now() >= deadline)
                    .then_some(Err(WaitErrorKind::FailLine(line)))
            } else if progress.done() && !expect.to_the_end {
                Some(Ok(()))
            } else if let Some(line) = progress.stopped_at.clone() {
                Some(if progress.done() {
                    Ok(())
                } else {
                    Err(WaitErrorKind::Stopped(line))
                })
            } else if exit.is_some() {
                Some(if progress.done() {
                    Ok(())
                } else {
                    Err(WaitErrorKind::Exited(exit))
                })
            } else {
                timeout
                    .filter(|&limit| started_waiting.elapsed() >= limit)
                    .map(|limit| {
                        if progress.done() && expect.to_the_end {
                            Ok(())
                        } else {
                            Err(WaitErrorKind::Timeout(limit))
                        }
                    })
            };
            match verdict {
                Some(Ok(())) => {
                    return Ok(Outcome {
                        elapsed: self.elapsed(),
                        exit,
                    });
                }
                Some(Err(kind)) => return Err(self.error(kind, &progress)),
                None => {}
            }

            observer(Event::Tick {
                elapsed: self.elapsed(),
                serial_bytes: self.console.bytes(),
            });
            std::thread::sleep(POLL);
        }
    }

    fn error(&self, kind: WaitErrorKind, progress: &Progress<'_>) -> Box<WaitError> {
        let log_name = self.emulator.log_name();
        Box::new(WaitError {
            kind,
            missing: progress.missing(),
            emulator: self.emulator.to_string(),
            dir: self.dir.clone(),
            elapsed: self.elapsed(),
            serial_tail: tail(&self.console.lines, SERIAL_TAIL),
            emulator_log: (log_name.to_string(), tail_of_file(&self.dir.join(log_name))),
        })
    }

    /// The console so far: the lines of COM1 and COM2, merged in the order the harness read
    /// them, cleaned of terminal escapes, joined with `\n`.
    ///
    /// Only what the waits on this run have read counts; the files are not read again.
    pub fn log(&self) -> String {
        self.console.lines.join("\n")
    }

    /// The lines of the console so far (COM1 and COM2 merged in the order the harness read
    /// them, cleaned of terminal escapes).
    pub fn lines(&self) -> &[String] {
        &self.console.lines
    }

    /// How many lines of the console so far (the lines of COM1 and COM2, merged in the order
    /// the harness read them) match `pattern`.
    pub fn count(&self, pattern: impl Into<Pattern>) -> usize {
        let pattern = pattern.into();
        self.console
            .lines
            .iter()
            .filter(|line| pattern.matches(line))
            .count()
    }

    /// The lines of the console so far (the lines of COM1 and COM2, merged in the order the
    /// harness read them) that match `pattern`.
    pub fn matching(&self, pattern: impl Into<Pattern>) -> Vec<String> {
        let pattern = pattern.into();
        self.console
            .lines
            .iter()
            .filter(|line| pattern.matches(line))
            .cloned()
            .collect()
    }

    /// Wall time since the emulator started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The emulator.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the emulator (its stop signal to its group, SIGKILL after two seconds) and returns its exit
    /// status. Dropping the run does the same.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.child.stop()
    }
}

/// The serial ports a run follows, read into one list of lines.
#[derive(Debug)]
struct Console {
    /// One reader per port's log, in the order their new lines are merged.
    readers: Vec<(Port, SerialReader)>,
    /// Every complete line read so far, of all ports, in the order they were read.
    lines: Vec<String>,
    /// The port of each line.
    ports: Vec<Port>,
}

impl Console {
    /// The console of COM1's and COM2's logs, at `logs`.
    fn new(logs: [PathBuf; 2]) -> Self {
        Self {
            readers: [Port::Com1, Port::Com2]
                .into_iter()
                .zip(logs.map(SerialReader::new))
                .collect(),
            lines: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// Polls each port in turn, appending its new complete lines. With `at_end`, a last
    /// unterminated line counts as a line.
    fn poll(&mut self, at_end: bool) {
        for (port, reader) in &mut self.readers {
            reader.poll(at_end, &mut self.lines);
            self.ports.resize(self.lines.len(), *port);
        }
    }

    /// Bytes read so far, of all ports.
    fn bytes(&self) -> u64 {
        self.readers.iter().map(|(_, r)| r.offset).sum()
    }
}

/// Reads one serial log incrementally and splits it into cleaned lines.
#[derive(Debug)]
struct SerialReader {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
    partial: Vec<u8>,
}

impl SerialReader {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// Reads what was appended since the last poll and appends its complete lines to `lines`.
    /// With `at_end`, a last unterminated line counts as a line.
    fn poll(&mut self, at_end: bool, lines: &mut Vec<String>) {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        if let Some(file) = &mut self.file {
            // The emulator may have replaced the file we created: start over if it shrank.
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len < self.offset {
                self.offset = 0;
                self.partial.clear();
            }
            let mut buf = Vec::new();
            if file.seek(SeekFrom::Start(self.offset)).is_ok() && file.read_to_end(&mut buf).is_ok()
            {
                self.offset += buf.len() as u64;
                self.partial.extend_from_slice(&buf);
            }
        }
        while let Some(newline) = self.partial.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.partial.drain(..=newline).collect();
            lines.push(clean_line(&String::from_utf8_lossy(&raw)));
        }
        if at_end && !self.partial.is_empty() {
            let raw = std::mem::take(&mut self.partial);
            lines.push(clean_line(&String::from_utf8_lossy(&raw)));
        }
    }
}

/// Copies what Linux writes to its console (`from`, COM2's connection) into its `log` and to
/// `tap`, until the emulator closes the connection.
fn copy_console(mut from: TcpStream, mut log: File, mut tap: Box<dyn Write + Send>) {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                // A log that cannot be written shows as a console that stopped; the run's time
                // limit ends it.
                let _ = log.write_all(&buf[..n]);
                let _ = tap.write_all(&buf[..n]).and_then(|()| tap.flush());
            }
            // Another handle on the connection may have set a read time limit.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

fn tail(lines: &[String], n: usize) -> Vec<String> {
    lines[lines.len().saturating_sub(n)..].to_vec()
}

fn tail_of_file(path: &Path) -> Vec<String> {
    let raw = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw);
    let lines: Vec<String> = text.lines().map(clean_line).collect();
    tail(&lines, EMULATOR_TAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty directory for one test.
    fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bulkhead-e2e-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn serial_reader_splits_lines_across_polls() {
        let dir = temp_dir("reader");
        let path = dir.join("serial.log");
        fs::write(&path, b"\x1b[H\x1b[Jone\r\ntw").unwrap();
        let mut reader = SerialReader::new(path.clone());
        let mut lines = Vec::new();
        reader.poll(false, &mut lines);
        assert_eq!(lines, vec!["one"]);
        fs::write(&path, b"\x1b[H\x1b[Jone\r\ntwo\nthree").unwrap();
        reader.poll(false, &mut lines);
        assert_eq!(lines, vec!["one", "two"]);
        reader.poll(true, &mut lines);
        assert_eq!(lines, vec!["one", "two", "three"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn console_merges_both_ports_per_poll() {
        let dir = temp_dir("console");
        let com1 = dir.join(COM1_LOG);
        let com2 = dir.join(COM2_LOG);
        fs::write(&com1, b"hv one\nhv tw").unwrap();
        fs::write(&com2, b"linux one\r\n").unwrap();
        let mut console = Console::new([com1.clone(), com2.clone()]);
        console.poll(false);
        assert_eq!(console.lines, vec!["hv one", "linux one"]);
        fs::write(&com1, b"hv one\nhv two\n").unwrap();
        fs::write(&com2, b"linux one\r\nlinux two\nlinux thr").unwrap();
        console.poll(false);
        assert_eq!(
            console.lines,
            vec!["hv one", "linux one", "hv two", "linux two"]
        );
        assert_eq!(console.bytes(), 14 + 30);
        console.poll(true);
        assert_eq!(
            console.lines,
            vec!["hv one", "linux one", "hv two", "linux two", "linux thr"]
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
