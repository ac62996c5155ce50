//! `cargo xtask run`'s terminal: which console it shows, the keys it sends to Linux, and the
//! key that quits.
//!
//! Linux's console (COM2) is wired to the run ([`bulkhead_e2e::Run::start_with_linux_console`]):
//! what Linux writes reaches `com2.log` and, when the terminal shows Linux, the terminal as it
//! is, escapes and prompt included. Every key typed goes to Linux's console, whatever the
//! terminal shows, Ctrl-C included, except [`QUIT_KEY`], which stops the emulator and ends
//! the run. On a terminal, its input is switched to byte-at-a-time without echo or signals
//! for the run and given back as it was on every way out ([`TerminalGuard`], and
//! [`restore_terminal`] from the Ctrl-C handler); output processing is left on, so the tool's
//! own lines stay lines. A run started as a background job leaves its terminal alone
//! ([`Keyboard::Background`]); a pipe on standard input is sent to Linux as typed keys.
//!
//! The termios calls are this module's `unsafe`: no crate the workspace uses wraps them.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bulkhead_abi::console::{FATAL_PREFIX, HALTED, STEADY_STATE};
use bulkhead_e2e::{Port, SerialPeer};

/// The key that ends a run: Ctrl-] (as in telnet), a byte no shell or editor needs.
pub const QUIT_KEY: u8 = 0x1d;
/// How the quit key is named to the user.
pub const QUIT_KEY_NAME: &str = "Ctrl-]";

/// Which console the terminal shows during `cargo xtask run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    /// Linux's console (COM2), as Linux writes it: its prompt, what you type.
    Linux,
    /// The hypervisor's and the RT kernel's lines (COM1).
    Hypervisor,
    /// Both, line by line, in the order they were read (a line shows once complete).
    Both,
}

impl View {
    /// Whether a complete console line from `port` is printed (Linux's own bytes reach the
    /// terminal through [`View::linux_tap`] instead).
    pub fn prints_line(self, port: Port) -> bool {
        match self {
            View::Linux => false,
            View::Hypervisor => port == Port::Com1,
            View::Both => true,
        }
    }

    /// Where Linux's console output goes besides its log.
    pub fn linux_tap(self) -> Box<dyn Write + Send> {
        match self {
            View::Linux => Box::new(std::io::stdout()),
            View::Hypervisor | View::Both => Box::new(std::io::sink()),
        }
    }

    /// The view when none is asked for: Linux's console on an interactive terminal, both
    /// consoles' lines otherwise (a log, or a run that stops at its steady state).
    pub fn default_for(stdin_is_terminal: bool, until_settled: bool) -> Self {
        if stdin_is_terminal && !until_settled {
            View::Linux
        } else {
            View::Both
        }
    }
}

/// Whether a COM1 line the view does not print is still worth a line on the terminal: the
/// hypervisor's steady state, its halt, and a fatal stop's cause.
pub fn is_milestone(port: Port, line: &str) -> bool {
    port == Port::Com1
        && (line.contains(STEADY_STATE) || line.contains(HALTED) || line.contains(FATAL_PREFIX))
}

/// Set once the quit key was read.
static QUIT: AtomicBool = AtomicBool::new(false);

/// Whether the user pressed [`QUIT_KEY`].
pub fn quit_requested() -> bool {
    QUIT.load(Ordering::SeqCst)
}

/// Splits what was read from the keyboard into the bytes for Linux (up to the quit key) and
/// whether the quit key was among them.
pub fn split_keys(keys: &[u8]) -> (&[u8], bool) {
    match keys.iter().position(|&b| b == QUIT_KEY) {
        Some(at) => (&keys[..at], true),
        None => (keys, false),
    }
}

/// Sends what is typed on standard input to Linux's console until it ends or the quit key
/// comes; the quit key stops the emulators (the run then ends, [`quit_requested`] says why).
/// Runs on a thread of its own for the life of the process.
pub fn forward_keys(mut to_linux: SerialPeer) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 256];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let (keys, quit) = split_keys(&buf[..n]);
        if !keys.is_empty() && to_linux.send(keys).is_err() {
            // The emulator is gone; the run notices it.
            return;
        }
        if quit {
            QUIT.store(true, Ordering::SeqCst);
            bulkhead_e2e::kill_all_emulators();
            return;
        }
    }
}

/// What standard input is to the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyboard {
    /// A terminal, this process in its foreground: its keys go to Linux.
    Terminal,
    /// A terminal of which this process is a background job: reading or setting it would stop
    /// the process (SIGTTIN, SIGTTOU), so the run leaves it alone.
    Background,
    /// A file or a pipe: what it holds goes to Linux as it is.
    Other,
}

impl Keyboard {
    /// What standard input is now.
    pub fn of_stdin() -> Self {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: isatty, tcgetpgrp and getpgrp only look at the descriptor and the process.
        unsafe {
            if libc::isatty(fd) != 1 {
                return Keyboard::Other;
            }
            // -1: not this process's controlling terminal, which has no job control for it.
            let foreground = libc::tcgetpgrp(fd);
            if foreground == -1 || foreground == libc::getpgrp() {
                Keyboard::Terminal
            } else {
                Keyboard::Background
            }
        }
    }
}

/// The terminal's settings before the run changed them, for [`restore_terminal`].
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Standard input switched to byte-at-a-time input for the run; dropping it gives the
/// terminal back as it was.
pub struct TerminalGuard(());

impl TerminalGuard {
    /// Switches standard input, if it is a terminal, to byte-at-a-time input without echo
    /// and without signal keys; `None` when it is not a terminal (nothing is changed).
    pub fn keys_to_linux() -> Option<Self> {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: isatty only looks at the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return None;
        }
        // SAFETY: an all-zero termios is a valid value for tcgetattr to overwrite.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is a terminal and `saved` is writable.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut keys = saved;
        keys.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        keys.c_iflag &= !(libc::IXON | libc::ICRNL | libc::INLCR | libc::IGNCR | libc::ISTRIP);
        keys.c_cc[libc::VMIN] = 1;
        keys.c_cc[libc::VTIME] = 0;
        *lock_saved() = Some(saved);
        // SAFETY: `fd` is a terminal and `keys` a complete termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &keys) } != 0 {
            *lock_saved() = None;
            return None;
        }
        Some(Self(()))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Gives standard input its settings from before the run back, if the run changed them.
/// Safe to call more than once and from the Ctrl-C handler's thread.
pub fn restore_terminal() {
    if let Some(saved) = lock_saved().take() {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: `saved` came from tcgetattr on this descriptor.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
}

fn lock_saved() -> std::sync::MutexGuard<'static, Option<libc::termios>> {
    // A termios value cannot be left half-written: use it after a panic too.
    SAVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quit_key_ends_what_goes_to_linux() {
        assert_eq!(split_keys(b"ls\r"), (&b"ls\r"[..], false));
        assert_eq!(split_keys(b"ls\x1dmore"), (&b"ls"[..], true));
        assert_eq!(split_keys(b"\x1d"), (&b""[..], true));
        // Ctrl-C is Linux's, not ours.
        assert_eq!(split_keys(b"\x03"), (&b"\x03"[..], false));
    }

    #[test]
    fn milestones_are_the_hypervisors_steady_state_halt_and_fatal_lines() {
        assert!(is_milestone(
            Port::Com1,
            "[INFO  cpu0] bulkhead: steady state"
        ));
        assert!(is_milestone(Port::Com1, "FATAL: no RT image"));
        assert!(is_milestone(Port::Com1, "bulkhead: halted"));
        assert!(!is_milestone(Port::Com2, "bulkhead: steady state"));
        assert!(!is_milestone(Port::Com1, "latency cpu=1 samples=10"));
    }

    #[test]
    fn views_show_their_console() {
        assert!(!View::Linux.prints_line(Port::Com1) && !View::Linux.prints_line(Port::Com2));
        assert!(View::Hypervisor.prints_line(Port::Com1));
        assert!(!View::Hypervisor.prints_line(Port::Com2));
        assert!(View::Both.prints_line(Port::Com1) && View::Both.prints_line(Port::Com2));
        assert_eq!(View::default_for(true, false), View::Linux);
        assert_eq!(View::default_for(false, false), View::Both);
        assert_eq!(View::default_for(true, true), View::Both);
    }
}
