//! Emulator processes: each one leads a process group of its own, is registered while it lives,
//! and is stopped with its whole group: its stop signal (SIGTERM; SIGHUP for Bochs, whose terminal
//! display catches SIGTERM and carries on), then SIGKILL after a grace period.
//!
//! This module holds the harness' `unsafe`: the `pre_exec` hook, `kill` and `waitid`.
//!
//! The leader is never reaped before its group has been sent SIGKILL: while it is a zombie its
//! process ID, which is also the group ID, cannot be reused, so a signal to the group can never
//! reach an unrelated process.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long an emulator gets to exit after its stop signal before its group gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Process groups of the emulators alive in this process, with their stop signals.
static LIVE_GROUPS: Mutex<Vec<(libc::pid_t, libc::c_int)>> = Mutex::new(Vec::new());

/// Set by [`kill_all_emulators`]: runs that see it stop waiting.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether [`kill_all_emulators`] has been called (the user pressed Ctrl-C).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Stops every emulator this process started and marks the process as interrupted.
///
/// Meant for a SIGINT handler (it runs on the handler's thread, not in signal context): it sends
/// every emulator's group its stop signal, waits up to the grace period and then sends SIGKILL. The
/// owners of the runs notice [`interrupted`] and reap their emulators.
pub fn kill_all_emulators() {
    INTERRUPTED.store(true, Ordering::SeqCst);
    let groups = lock_live().clone();
    for &(group, signal) in &groups {
        signal_group(group, signal);
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline && groups.iter().any(|&(g, _)| group_alive(g)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &(group, _) in &groups {
        signal_group(group, libc::SIGKILL);
    }
}

fn lock_live() -> std::sync::MutexGuard<'static, Vec<(libc::pid_t, libc::c_int)>> {
    // A panic while holding this lock cannot leave the list inconsistent: use it anyway.
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An emulator process leading its own process group. Dropping it stops the group.
#[derive(Debug)]
pub(crate) struct GroupChild {
    child: Child,
    group: libc::pid_t,
    stop_signal: libc::c_int,
    exit: Option<ExitStatus>,
}

impl GroupChild {
    /// Spawns `command` as the leader of a new process group, registered for
    /// [`kill_all_emulators`], and set to get SIGKILL if the thread that started it dies.
    ///
    /// With `own_session`, the child also starts a session of its own whose controlling terminal
    /// is its standard output (which must then be a pty slave): a full-screen program in it can
    /// never reach the caller's terminal, and it gets SIGHUP if the harness goes away.
    ///
    /// `stop_signal` is what asks it to exit (before SIGKILL).
    pub(crate) fn spawn(
        command: &mut Command,
        own_session: bool,
        stop_signal: libc::c_int,
    ) -> io::Result<Self> {
        if !own_session {
            command.process_group(0);
        }
        // SAFETY: the hook runs in the forked child before exec and calls only async-signal-safe
        // functions, touching no memory of the parent (see `setup_child`).
        unsafe {
            command.pre_exec(move || setup_child(own_session));
        }
        // Register under the lock so that a concurrent kill_all_emulators either sees this group
        // or runs before it exists (and then sets INTERRUPTED, which the caller checks).
        let mut live = lock_live();
        let child = command.spawn()?;
        let group = child.id() as libc::pid_t;
        live.push((group, stop_signal));
        drop(live);
        Ok(Self {
            child,
            group,
            stop_signal,
            exit: None,
        })
    }

    /// The exit status if the leader has exited, without reaping it.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; WNOWAIT leaves the child unreaped.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.group as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid succeeded, so si_pid is initialised (0 when the child is still running).
        if rc != 0 || unsafe { info.si_pid() } == 0 {
            return None;
        }
        // Reap the leader's group stragglers first, then the leader itself.
        signal_group(self.group, libc::SIGKILL);
        self.reap()
    }

    /// Stops the whole group: the stop signal, up to two seconds' grace, SIGKILL; then reaps the
    /// leader.
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        signal_group(self.group, self.stop_signal);
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(self.group, libc::SIGKILL);
        self.reap()
    }

    fn reap(&mut self) -> Option<ExitStatus> {
        let status = self.child.wait().ok();
        lock_live().retain(|&(g, _)| g != self.group);
        self.exit = status;
        status
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs in the forked child before exec: only async-signal-safe calls (`setsid`, `ioctl`, `prctl`,
/// `getppid`), no allocation, no locks.
fn setup_child(own_session: bool) -> io::Result<()> {
    if own_session {
        // SAFETY: setsid has no preconditions; it makes this process the leader of a new session
        // and of a new process group whose ID is its PID.
        if unsafe { libc::setsid() } < 0 {
            return Err(io::Error::last_os_error());
        }
        // The terminal on standard output becomes the session's controlling terminal.
        // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal the terminal).
        if unsafe { libc::ioctl(1, libc::TIOCSCTTY, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and nothing else.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The parent may have died before the prctl: then nobody would kill us.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == 1 {
        // (No allocation here: report it as "no such process".)
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; a negative pid names a process group.
    // Errors (ESRCH: the group is gone) are of no interest here.
    unsafe {
        libc::kill(-group, signal);
    }
}

fn group_alive(group: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(-group, 0) == 0 }
}

/// A pseudo-terminal pair of `rows` by `cols`: the master (kept by the harness, or by a test
/// that plays the user at a terminal) and the slave (the child's stdio).
///
/// Both ends are close-on-exec from the start, so a pty opened for one emulator can never leak
/// into another started at the same time from another thread.
pub fn open_pty(rows: u16, cols: u16) -> io::Result<(std::fs::File, std::os::fd::OwnedFd)> {
    use std::ffi::CStr;
    use std::os::fd::{FromRawFd, OwnedFd};

    // SAFETY: posix_openpt takes flags only.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `master` is a fresh descriptor that nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&master);
    // SAFETY: `raw` is an open pty master.
    if unsafe { libc::grantpt(raw) } != 0 || unsafe { libc::unlockpt(raw) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `name` is writable for its whole length, which is what we pass.
    let rc = unsafe { libc::ptsname_r(raw, name.as_mut_ptr(), name.len()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated path.
    let name = unsafe { CStr::from_ptr(name.as_ptr()) };
    // SAFETY: `name` is a valid C string; open takes flags only besides it.
    let slave = unsafe {
        libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `slave` is a fresh descriptor that nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize`, which `size` is.
    if unsafe { libc::ioctl(raw, libc::TIOCSWINSZ, &size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((std::fs::File::from(master), slave))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    /// Whether a process is alive: it exists and is not a zombie (which, orphaned, waits for
    /// whoever PID 1 is to reap it).
    fn running(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
                !matches!(state, Some(Some('Z' | 'X')))
            })
            .unwrap_or(false)
    }

    #[test]
    fn dropping_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("bulkhead-e2e-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("pid");
        // A background grandchild stays in the group; it must die with the leader.
        let script = format!(
            "sleep 100 & echo $! > {}; exec sleep 100",
            pid_file.display()
        );
        let child = GroupChild::spawn(&mut shell(&script), false, libc::SIGTERM).unwrap();
        let group = child.group;
        assert!(lock_live().iter().any(|&(g, _)| g == group));
        let deadline = Instant::now() + Duration::from_secs(5);
        let grandchild = loop {
            match std::fs::read_to_string(&pid_file) {
                Ok(pid) if pid.ends_with('\n') => break pid.trim().to_string(),
                _ => assert!(Instant::now() < deadline, "no grandchild"),
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(running(&grandchild));
        drop(child);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!running(&grandchild));
        assert!(!lock_live().iter().any(|&(g, _)| g == group));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_child_that_ignores_its_stop_signal_gets_sigkill() {
        let mut child = GroupChild::spawn(
            &mut shell("trap '' TERM; sleep 100; exit 3"),
            false,
            libc::SIGTERM,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let status = child.stop().unwrap();
        assert!(started.elapsed() >= TERM_GRACE);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    #[test]
    fn exit_is_seen_without_reaping_first() {
        let mut child = GroupChild::spawn(&mut shell("exit 3"), false, libc::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.exited() {
                break status;
            }
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(3));
    }
}
