//! End-to-end test of `cargo xtask run`'s console, as a user meets it: the build tool's `run`
//! on a pseudo-terminal (what a terminal emulator gives a shell) boots the default system in
//! Bochs; the test types `bulkhead list` at Linux's prompt, reads the answer, and quits with
//! Ctrl-].
//!
//! `cargo xtask test` hands over its own executable in `BULKHEAD_XTASK`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// From the command to Linux's prompt: the ISO, GRUB loading the 66 MB vmlinux, Linux's boot
/// on one emulated CPU beside the RT partition (a few minutes on a loaded host).
const PROMPT_LIMIT: Duration = Duration::from_secs(1200);
/// An answer at the prompt, and the run's end after the quit key.
const ANSWER_LIMIT: Duration = Duration::from_secs(120);

/// The run directory `run --name` gets, under target/runs/.
const RUN_NAME: &str = "xtask_run_console";

/// The user's side of the terminal: what the tool wrote to it so far, and the keys.
struct Terminal {
    master: std::fs::File,
    output: Receiver<Vec<u8>>,
    seen: Vec<u8>,
    child: Child,
    /// The terminal's own end, kept to read its settings after the tool has gone.
    slave: OwnedFd,
}

impl Terminal {
    /// Starts `xtask run` on a fresh pseudo-terminal.
    fn run_xtask(xtask: &PathBuf) -> Result<Self> {
        let (master, slave) = bulkhead_e2e::open_pty(40, 132).context("a pseudo-terminal")?;
        let mut command = Command::new(xtask);
        // SAFETY: setsid and ioctl are async-signal-safe; the hook touches nothing else.
        unsafe {
            command.pre_exec(|| {
                // A session of its own whose controlling terminal is this one, as a shell in
                // a terminal emulator has.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let child = command
            .args(["run", "--name", RUN_NAME, "--timeout", "1800"])
            .current_dir(bulkhead_e2e::workspace_root())
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave.try_clone()?))
            .spawn()
            .with_context(|| format!("cannot run {}", xtask.display()))?;
        let mut reader = master.try_clone()?;
        let (send, output) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends when the last holder of the slave closes it (EIO) or the test ends.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || send.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            master,
            output,
            seen: Vec::new(),
            child,
            slave,
        })
    }

    /// Waits until the terminal shows `text` after byte `from`; returns where it ends.
    fn wait_for(&mut self, text: &str, from: usize, limit: Duration) -> Result<usize> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = find(&self.seen, text.as_bytes(), from) {
                return Ok(at);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .output
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                Ok(bytes) => self.seen.extend_from_slice(&bytes),
                Err(RecvTimeoutError::Timeout) if left > Duration::ZERO => {
                    if let Some(status) = self.child.try_wait()? {
                        bail!(
                            "xtask run exited ({status}) before {text:?}:\n{}",
                            self.shown()
                        );
                    }
                }
                Err(_) => bail!(
                    "the terminal did not show {text:?} within {}s:\n{}",
                    limit.as_secs(),
                    self.shown()
                ),
            }
        }
    }

    fn type_keys(&mut self, keys: &[u8]) -> Result<()> {
        self.master.write_all(keys).context("typing")?;
        self.master.flush().context("typing")
    }

    /// Waits for the tool to exit.
    fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // What it wrote last (its closing line).
                while let Ok(bytes) = self.output.recv_timeout(Duration::from_millis(200)) {
                    self.seen.extend_from_slice(&bytes);
                }
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "xtask run still runs {}s after the quit key:\n{}",
                    limit.as_secs(),
                    self.shown()
                );
            }
            while let Ok(bytes) = self.output.try_recv() {
                self.seen.extend_from_slice(&bytes);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The terminal's last 4 KiB, escaped.
    fn shown(&self) -> String {
        let tail = &self.seen[self.seen.len().saturating_sub(4096)..];
        String::from_utf8_lossy(tail).into_owned()
    }

    /// The terminal's local modes now.
    fn local_modes(&self) -> Result<libc::tcflag_t> {
        // SAFETY: an all-zero termios is a valid value for tcgetattr to overwrite.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: the slave is an open terminal and `termios` is writable.
        if unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut termios) } != 0 {
            return Err(std::io::Error::last_os_error()).context("tcgetattr");
        }
        Ok(termios.c_lflag)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // A failed test must not leave the tool (and its emulator) running: its Ctrl-C
        // handler stops the emulator.
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: kill only sends a signal to our own child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
            let _ = self.child.wait();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at + needle.len())
}

#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn xtask_run_gives_the_terminal_to_linux_console() -> Result<()> {
    let xtask = bulkhead_e2e::xtask_from_env()?;
    let mut terminal = Terminal::run_xtask(&xtask)?;
    let before = terminal.local_modes()?;
    ensure!(
        before & libc::ICANON != 0 && before & libc::ECHO != 0,
        "a fresh pseudo-terminal is line-edited and echoes"
    );

    // The tool says where the other console is and how to quit, then Linux's console shows.
    let told = terminal.wait_for("Ctrl-] quits", 0, ANSWER_LIMIT)?;
    let shell = terminal.wait_for("bulkhead-linux: shell on console", told, PROMPT_LIMIT)?;
    // Linux's console has the terminal now: its input is byte by byte, without echo.
    let during = terminal.local_modes()?;
    ensure!(
        during & (libc::ICANON | libc::ECHO | libc::ISIG) == 0,
        "the tool did not take the terminal's keys: local modes {during:#o}"
    );
    let prompt = terminal.wait_for("# ", shell, ANSWER_LIMIT)?;

    terminal.type_keys(b"bulkhead list\r")?;
    // The shell echoes the command, then the table comes, then the next prompt.
    let echoed = terminal.wait_for("bulkhead list", prompt, ANSWER_LIMIT)?;
    let header = terminal.wait_for("NAME", echoed, ANSWER_LIMIT)?;
    let commands = terminal.wait_for("commands", header, ANSWER_LIMIT)?;
    terminal.wait_for("telemetry", header, ANSWER_LIMIT)?;
    terminal.wait_for("# ", commands, ANSWER_LIMIT)?;

    // The hypervisor's and the RT kernel's lines went to their file, not to the terminal.
    let shown = String::from_utf8_lossy(&terminal.seen).into_owned();
    ensure!(
        !shown.contains("latency cpu="),
        "the RT kernel's lines reached Linux's console:\n{}",
        terminal.shown()
    );
    let com1 = bulkhead_e2e::target_dir()
        .join("runs")
        .join(RUN_NAME)
        .join("serial.log");
    let com1 = std::fs::read_to_string(&com1).with_context(|| format!("{}", com1.display()))?;
    ensure!(
        com1.contains("latency cpu=") && com1.contains("bulkhead: steady state"),
        "COM1's file lacks the RT kernel's and the hypervisor's lines"
    );

    // Ctrl-] ends the run; the terminal is as it was.
    terminal.type_keys(&[0x1d])?;
    let status = terminal.wait_exit(ANSWER_LIMIT)?;
    ensure!(
        status.success(),
        "xtask run ended with {status}:\n{}",
        terminal.shown()
    );
    terminal.wait_for("quit with Ctrl-]", 0, Duration::from_secs(5))?;
    let after = terminal.local_modes()?;
    ensure!(
        after == before,
        "the terminal was not given back: local modes {after:#o}, before {before:#o}"
    );
    Ok(())
}
