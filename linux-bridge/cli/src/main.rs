//! `bulkhead`: Bulkhead's channels from a Linux shell.
//!
//! ```text
//! bulkhead [--mem PATH] [--cmdline PATH] list [--json]
//! bulkhead send CHANNEL [-p PRIO] [--nonblock | --timeout-ms N] [--lines | MESSAGE]
//! bulkhead receive CHANNEL [-n COUNT] [--nonblock | --timeout-ms N] [--json]
//! bulkhead stats CHANNEL [--json]
//! bulkhead ping --to CHANNEL --from CHANNEL [-n COUNT] [--timeout-ms N] [--json]
//! bulkhead rt [--channel CHANNEL] [-n COUNT] [--timeout-ms N] [--json] [--queued] [--histogram]
//! bulkhead log hypervisor|rt [--channel CHANNEL] [-n COUNT | -f] [--timeout-ms N] [--json]
//! bulkhead reset CHANNEL [--timeout-ms N]
//! bulkhead probe [--rt-cpus N] [--rt-device BB:DD.F]... [--rt-serial ttySN]... [--rt-memory MIB]
//!                [--name NAME] [-o FILE] [--root DIR] [--dump DIR]
//! bulkhead install --config FILE [--hypervisor ELF] [--rt-image ELF] [--rt-cmdline STR]
//!                  [--kernel VERSION] [--root DIR] [--no-update-grub] [--force]
//! bulkhead install --uninstall [--root DIR] [--no-update-grub]
//! ```
//!
//! Channels are found on the kernel command line (`/proc/cmdline`, or `--cmdline`) and mapped
//! from `/dev/mem` (or `--mem`, a file standing in for physical memory in tests) through the
//! `bulkhead-channel` library. `list` and `stats` only read a channel's header; `send` and
//! `receive` attach as Linux's end of it. A blocked wait on a `doorbell` channel sleeps on the
//! channel device's interrupt (`/dev/uioN`), else it polls; when the RT side sleeps waiting for
//! Linux, its doorbell is rung (under Bulkhead).
//!
//! `send` sends MESSAGE (or all of standard input when MESSAGE is absent) as one message.
//! `receive` prints one line per message: `priority=P len=N text=TEXT` when the message is
//! UTF-8 (with `\` and control characters escaped), else `priority=P len=N hex=HEX`; with
//! `--json`, one JSON object per line (`{"priority":P,"len":N,"text":...}` or `"hex"`).
//! `--timeout-ms` bounds the whole command.
//!
//! `ping` is the end-to-end check against an echo task on the RT side that copies every
//! message from `--to` to `--from` unchanged, with the same priority. It prints one line,
//!
//! ```text
//! bulkhead-ping: sent 200 received 200 lost 0 duplicated 0 corrupt 0 reordered 0 max_rtt_us 1234
//! ```
//!
//! (one JSON object with those fields and `ok` with `--json`); see [`ping`] for the messages and
//! what each count means.
//!
//! `rt` shows the RT partition's status reports, which the RT kernel started with
//! `status=CHANNEL` sends once a second on that rt-to-linux channel (`--channel`, by convention
//! and by default `rt-status`). It receives `-n` reports (default 1; 0 follows for ever), waiting
//! at most `--timeout-ms` (default 5000) for each, and prints each as a block:
//!
//! ```text
//! rt: uptime 12.003 s, 2 CPUs, 7 tasks
//! CPU  SAMPLES  MIN_US  AVG_US  MAX_US  P99_US  P99.9_US  MISSES  OVERFLOW
//! 0    11001    41.4    41.4    41.7    41.7    41.7      0       0
//! TASK     CPU  PRIO  STATE     CPU%  CPU_MS   WAKEUPS  MISSES  WAKE_MAX_US
//! latency  0    90    sleeping  3.1   372.5    11003    0       41.7
//! idle     0    0     ready     96.0  11520.3  0        0       0.0
//! ```
//!
//! (blocks separated by an empty line; times truncated to 0.1 us and 0.1 ms). The CPU rows are
//! the latency task's cumulative summary per RT CPU; `CPU%` is a task's share of its CPU since
//! the previous report of this run (`-` in the first). With `--histogram`, each block ends with
//! each CPU's wake-up latency histogram since the RT kernel started:
//!
//! ```text
//! CPU 0 wake-up latency histogram: 11001 samples
//! RANGE_US  COUNT  CUM%
//! 0-1       0      0.00
//! ...
//! 16-32     3      0.02    #
//! 32-64     10990  99.92   ########################################
//! 64-128    8      100.00  #
//! ...
//! 512-1000  0      100.00
//! >=1000    0      100.00
//! ```
//!
//! (log-2 buckets in microseconds, the lower edge included, then the overflow; `CUM%` is the
//! share of samples up to and including the bucket, rounded down; the bars are scaled to the
//! largest bucket). With `--json`, one JSON object per report per line, the histogram always
//! in it: `{"uptime_ns":..,"cpus":[{"cpu":..,"samples":..,"min_ns":..,"avg_ns":..,
//! "max_ns":..,"p99_ns":..,"p999_ns":..,"misses":..,"overflow":..,"histogram":[{"lo_ns":0,
//! "hi_ns":1000,"count":..},..,{"lo_ns":1000000,"hi_ns":null,"count":..}]}],"tasks":[{"name":..,
//! "cpu":..,"priority":..,"state":"sleeping","cpu_time_ns":..,"cpu_percent":null,"wakeups":..,
//! "deadline_misses":..,"wake_max_ns":..}]}`. See [`rt`].
//!
//! `log` shows the hypervisor's or the RT kernel's console lines from their log channels: the
//! hypervisor's is the announced `hypervisor-to-linux` channel, the RT kernel's the
//! `rt-to-linux` channel it was started with `log=CHANNEL` on (`--channel`, by convention and
//! by default `rt-log`). It prints the lines waiting there, oldest first, and stops; reading
//! takes them out of the channel, so the next run shows newer lines only. `-n COUNT` stops
//! after COUNT lines, waiting for those that have not come yet; `-f` keeps waiting for new
//! lines; `--timeout-ms` bounds the whole wait. A line the producer had to cut ends in
//! ` [cut]`; where it dropped lines because the channel was full (nobody read it), a line
//! `[... N lines dropped]` says how many. Control characters are escaped. With `--json`, one
//! JSON object per line: `{"text":..}` (with `"cut":true` for a cut line) or `{"dropped":N}`.
//! See [`log`].
//!
//! `reset` brings back a channel that failed (an endpoint found it corrupt: `list` shows it
//! `failed`): it asks the RT side to initialize it again and waits until it is usable, then
//! prints `channel NAME re-established`. Messages in it are lost and every endpoint open on
//! it stops; the RT side decides when (its task that owns the channel looks every 10 ms while
//! the channel is down).
//!
//! `probe` reads this machine (run it as root, with the `msr` module loaded, on the machine to
//! partition or a Debian live system on it) and writes a proposed config: Linux keeps the boot
//! CPU's core and its devices, the RT partition gets `--rt-cpus` CPUs as whole cores and the
//! devices named, every choice commented. What stands in the way of a clean partitioning (no
//! VT-x, a pin an RT device shares with Linux, no IOMMU, ...) goes to standard error.
//! `--dump DIR` also copies every file it read (and the MSRs, as `msr.txt`) under DIR, which
//! `--root DIR` reads back as the same machine: a report from a machine that does not
//! partition well. See [`probe`] and the `bulkhead-probe` crate.
//!
//! `install` puts Bulkhead on this Debian system (or an image's root): the images and the
//! config in `/boot/bulkhead/`, a GRUB entry that boots them with the installed kernel as the
//! Linux partition, the log units, the channel device's udev rule and this tool; then
//! `update-grub`. `--uninstall` removes exactly what it wrote. See [`install`].
//!
//! # Exit status
//!
//! - 0: success (`list`/`stats`: every channel shown is usable; `ping`: every reply came back,
//!   none lost, duplicated, corrupt or reordered);
//! - 1: runtime error, with a message on standard error naming the channel and the cause (also
//!   `list`/`stats` when a channel is not usable, after printing it, `ping` when a reply was
//!   duplicated, corrupt or reordered, and `rt` when a message is not a valid status report);
//! - 2: usage error (from the argument parser);
//! - 3: timed out or would block (`--timeout-ms`, `--nonblock`; `ping` when the only problem
//!   is replies that did not come back within `--timeout-ms`; `rt` when no report came within
//!   `--timeout-ms`; `log -n`/`-f` when the time ran out, after the lines that came);
//! - 4: `probe` wrote its config, but something blocks a clean partitioning (on standard error).

#![forbid(unsafe_code)]

mod install;
mod log;
mod ping;
mod probe;
mod rt;
mod show;

use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_abi::status::StatusError;
use bulkhead_channel::{
    Announcements, ChannelReceiver, ChannelSender, DEV_MEM, Error, PROC_CMDLINE,
};
use clap::{Parser, Subcommand};

/// The exit statuses, for `--help`.
const EXIT_STATUS: &str = "\
Exit status:
  0  success (list, stats: every channel shown is usable; ping: all replies came back intact)
  1  runtime error, reported on standard error with the channel and the cause
     (also list/stats when a channel is unusable, ping when a reply was duplicated,
     corrupt or reordered, rt when a message is not a valid status report)
  2  usage error
  3  timed out or would block (--timeout-ms, --nonblock; ping when replies did not
     come back within --timeout-ms; rt when no report came within --timeout-ms;
     log -n/-f when the time ran out, after the lines that came)
  4  probe: the config is written, but something blocks a clean partitioning

Waiting: a blocked send or receive on a `doorbell` channel sleeps until the channel
device's interrupt (bound to uio_pci_generic) says the RT side rang; without the device
or its driver, and on `poll` channels, it polls (spin, then sleeps of 20 us growing to
1 ms). The RT side's doorbell is rung when it sleeps waiting for Linux.";

/// Bulkhead's channels from Linux: list them, send, receive, ping an RT echo task, show the
/// RT partition's status reports, and the hypervisor's and the RT partition's logs.
#[derive(Debug, Parser)]
#[command(name = "bulkhead", version, after_help = EXIT_STATUS)]
struct Cli {
    /// File that maps physical memory (tests pass an ordinary file standing in for it).
    #[arg(long, global = true, value_name = "PATH", default_value = DEV_MEM)]
    mem: PathBuf,
    /// Kernel command line holding the `bulkhead.channel=` announcements.
    #[arg(long, global = true, value_name = "PATH", default_value = PROC_CMDLINE)]
    cmdline: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Installs Bulkhead on this Debian system so that GRUB boots it with the installed kernel
    /// as the Linux partition (Debian's own entries stay as the fallback); --uninstall removes
    /// it. Run as root.
    Install {
        /// The config (from `bulkhead probe`, reviewed).
        #[arg(long, value_name = "FILE", required_unless_present = "uninstall")]
        config: Option<PathBuf>,
        /// The hypervisor image (`cargo xtask build` prints its path) [default: the Debian
        /// package's, /usr/lib/bulkhead/hypervisor.elf under the root].
        #[arg(long, value_name = "ELF")]
        hypervisor: Option<PathBuf>,
        /// The RT kernel image [default: the Debian package's, /usr/lib/bulkhead/rt.elf under
        /// the root].
        #[arg(long, value_name = "ELF")]
        rt_image: Option<PathBuf>,
        /// The RT kernel's command line [default: its status and log channels, where the
        /// config has `rt-status` and `rt-log`].
        #[arg(long, value_name = "STR")]
        rt_cmdline: Option<String>,
        /// The kernel in /boot to boot as the Linux partition, by version [default: the
        /// running one, else the newest].
        #[arg(long, value_name = "VERSION")]
        kernel: Option<String>,
        /// Install into this root (an image being built) instead of /.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// Do not run update-grub.
        #[arg(long)]
        no_update_grub: bool,
        /// Install even where the probe finds the machine cannot run Bulkhead.
        #[arg(long)]
        force: bool,
        /// Remove what an earlier install wrote.
        #[arg(long, conflicts_with_all = ["config", "hypervisor", "rt_image", "rt_cmdline", "kernel", "force"])]
        uninstall: bool,
    },
    /// Reads this machine and writes a proposed Bulkhead config for it (run as root, with the
    /// msr module loaded); what blocks a clean partitioning goes to standard error.
    #[command(after_help = EXIT_STATUS)]
    Probe {
        /// CPUs for the RT partition, taken as whole cores (with their SMT siblings).
        #[arg(long, value_name = "N", default_value_t = 1)]
        rt_cpus: u32,
        /// A PCI function for the RT partition, `BB:DD.F` as lspci shows it (repeatable).
        #[arg(long = "rt-device", value_name = "BB:DD.F")]
        rt_devices: Vec<String>,
        /// A serial port for the RT partition, `ttyS2` (repeatable).
        #[arg(long = "rt-serial", value_name = "TTY")]
        rt_serial: Vec<String>,
        /// RAM for the RT partition, in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 128)]
        rt_memory: u64,
        /// The machine's name in the config [default: the host name].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Write the config here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Read a dump of a machine (its /proc, /sys and /dev files) under this directory.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// Copy every file read (and CPU 0's MSRs, as `msr.txt`) under this directory: a dump
        /// that `--root DIR` reads back as the same machine.
        #[arg(long, value_name = "DIR")]
        dump: Option<PathBuf>,
    },
    /// Lists every announced channel with its header's geometry, count and state.
    #[command(after_help = EXIT_STATUS)]
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Sends one message on a linux-to-rt channel.
    #[command(after_help = EXIT_STATUS)]
    Send {
        /// The channel's name.
        channel: String,
        /// Priority, 0..=255 (higher is received first).
        #[arg(short, long, default_value_t = 0)]
        priority: u8,
        /// Fail with status 3 instead of waiting when the ring is full.
        #[arg(long, conflicts_with = "timeout_ms")]
        nonblock: bool,
        /// Wait at most this long for room (status 3 when it runs out).
        #[arg(long, value_name = "N")]
        timeout_ms: Option<u64>,
        /// Each line of standard input (without its newline) is one message, sent in order;
        /// a failure says how many were sent before it.
        #[arg(long, conflicts_with = "message")]
        lines: bool,
        /// The message; when absent, all of standard input, as is (a trailing newline
        /// included).
        message: Option<std::ffi::OsString>,
    },
    /// Receives messages from an rt-to-linux channel (highest priority first).
    #[command(after_help = EXIT_STATUS)]
    Receive {
        /// The channel's name.
        channel: String,
        /// How many messages to receive.
        #[arg(short = 'n', long, default_value_t = 1,
              value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// Fail with status 3 instead of waiting when the ring is empty.
        #[arg(long, conflicts_with = "timeout_ms")]
        nonblock: bool,
        /// Wait at most this long in all (status 3 when it runs out).
        #[arg(long, value_name = "N")]
        timeout_ms: Option<u64>,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
    },
    /// Shows one channel's header: geometry, indices, count, doorbell flags, state.
    #[command(after_help = EXIT_STATUS)]
    Stats {
        /// The channel's name.
        channel: String,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Checks a round trip through an RT echo task (copies TO to FROM unchanged).
    #[command(after_help = EXIT_STATUS)]
    Ping {
        /// The linux-to-rt channel the echo task reads.
        #[arg(long, value_name = "CHANNEL")]
        to: String,
        /// The rt-to-linux channel the echo task writes.
        #[arg(long, value_name = "CHANNEL")]
        from: String,
        /// How many messages to send.
        #[arg(short = 'n', long, default_value_t = 200,
              value_parser = clap::value_parser!(u32).range(1..))]
        count: u32,
        /// Give up when no reply has come for this long; what is missing then is lost.
        #[arg(long, value_name = "N", default_value_t = 10_000)]
        timeout_ms: u64,
        /// Print the summary as a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Shows the RT partition's status reports: latency per RT CPU, and every task.
    ///
    /// The RT kernel started with `status=CHANNEL` sends one report a second on that
    /// rt-to-linux channel. Each report is printed as a line `rt: uptime S.SSS s, N CPUs, M
    /// tasks`, a table of the latency task's summary per CPU (microseconds) and a table of
    /// tasks; CPU% is a task's share of its CPU since the previous report (`-` for the first).
    /// `--histogram` adds each CPU's wake-up latency histogram; `--json` always has it.
    #[command(after_help = EXIT_STATUS)]
    Rt {
        /// The rt-to-linux channel the reports come on.
        #[arg(long, value_name = "CHANNEL", default_value = rt::DEFAULT_CHANNEL)]
        channel: String,
        /// How many reports to show; 0 follows for ever.
        #[arg(short = 'n', long, default_value_t = 1)]
        count: u64,
        /// Wait at most this long for each report (status 3 when it runs out).
        #[arg(long, value_name = "N", default_value_t = 5_000)]
        timeout_ms: u64,
        /// One JSON object per report (each CPU's histogram included).
        #[arg(long)]
        json: bool,
        /// Show the reports already waiting in the channel, oldest first (by default only the
        /// newest of them is shown: the others are old news).
        #[arg(long)]
        queued: bool,
        /// After each report, each CPU's wake-up latency histogram since the RT kernel
        /// started: log-2 buckets in microseconds and the overflow, with count, cumulative
        /// share and a bar scaled to the largest bucket.
        #[arg(long)]
        histogram: bool,
    },
    /// Shows the hypervisor's or the RT kernel's console lines, from their log channels.
    ///
    /// Prints the lines waiting in the channel, oldest first, and stops; reading takes them
    /// out of the channel, so the next run shows newer lines only. The hypervisor's channel is
    /// the announced hypervisor-to-linux one; the RT kernel's is the rt-to-linux channel it was
    /// started with log=CHANNEL on (by convention rt-log). `[... N lines dropped]` marks where
    /// the producer found the channel full; a cut line ends in ` [cut]`.
    #[command(after_help = EXIT_STATUS)]
    Log {
        /// Whose log.
        #[arg(value_enum)]
        source: log::Source,
        /// The channel, when not the default (rt: `rt-log`; hypervisor: the
        /// hypervisor-to-linux one).
        #[arg(long, value_name = "CHANNEL")]
        channel: Option<String>,
        /// Stop after this many lines, waiting for those that have not come yet.
        #[arg(short = 'n', long, value_name = "COUNT", conflicts_with = "follow",
              value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Keep waiting for new lines (until --timeout-ms, or for ever).
        #[arg(short = 'f', long)]
        follow: bool,
        /// With -n or -f: wait at most this long in all (status 3 when it runs out).
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
        /// One JSON object per line: {"text":..} ("cut":true when cut) or {"dropped":N}.
        #[arg(long)]
        json: bool,
    },
    /// Re-establishes a channel that failed: asks the RT side to initialize it again (messages
    /// in it are lost, endpoints open on it stop) and waits until it is usable.
    #[command(after_help = EXIT_STATUS)]
    Reset {
        /// The channel's name.
        channel: String,
        /// Wait at most this long (status 3 when it runs out).
        #[arg(long, value_name = "N", default_value_t = 5_000)]
        timeout_ms: u64,
    },
}

/// Why a command failed: the channel (when there is one) and the cause.
#[derive(Debug)]
struct Failure {
    channel: Option<String>,
    cause: Cause,
}

#[derive(Debug)]
enum Cause {
    /// From the channel library.
    Channel(Error),
    /// Reading standard input or writing standard output.
    Io(&'static str, io::Error),
    /// A verdict that has been printed already (list, stats, ping): only the status.
    Reported(ExitCode),
    /// A message on a status channel that is not a valid status report.
    Status(StatusError),
    /// No status report came within the timeout.
    NoReport(Duration),
    /// `log -n`/`-f`: the timeout ran out after this many lines.
    LogTimedOut { shown: u64, timeout: Duration },
    /// `log hypervisor`: no hypervisor-to-linux channel is announced.
    NoHypervisorLog,
    /// `send --lines`: the line after `sent` of `total` failed.
    LinesCut { sent: u64, total: u64, error: Error },
}

impl Failure {
    fn on(channel: &str) -> impl Fn(Error) -> Self + '_ {
        move |e| Self {
            channel: Some(channel.to_owned()),
            cause: Cause::Channel(e),
        }
    }

    fn exit_code(&self) -> ExitCode {
        match &self.cause {
            Cause::Channel(e) | Cause::LinesCut { error: e, .. } if e.is_transient() => {
                ExitCode::from(3)
            }
            Cause::NoReport(_) | Cause::LogTimedOut { .. } => ExitCode::from(3),
            Cause::Reported(code) => *code,
            _ => ExitCode::from(1),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self {
            channel: None,
            cause: Cause::Channel(e),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(channel) = &self.channel {
            write!(f, "channel `{channel}`: ")?;
        }
        match &self.cause {
            Cause::Channel(e) => e.fmt(f),
            Cause::LinesCut { sent, total, error } => {
                write!(f, "{error} after {sent} of {total} lines were sent")
            }
            Cause::Io(what, e) => write!(f, "cannot {what}: {e}"),
            Cause::Reported(_) => Ok(()),
            Cause::Status(e) => e.fmt(f),
            Cause::NoReport(timeout) => write!(
                f,
                "no status report within {} ms (timed out; is the RT kernel sending them on \
                 this channel, with `status=` naming it?)",
                timeout.as_millis()
            ),
            Cause::LogTimedOut { shown, timeout } => write!(
                f,
                "timed out after {} ms with {shown} lines shown",
                timeout.as_millis()
            ),
            Cause::NoHypervisorLog => f.write_str(
                "no hypervisor-to-linux channel is announced (the config gives the hypervisor \
                 no log channel)",
            ),
        }
    }
}

/// Writes to standard output, turning a failure (a closed pipe) into a [`Failure`].
fn out(args: std::fmt::Arguments<'_>) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure {
            channel: None,
            cause: Cause::Io("write to standard output", e),
        })
}

/// `reset`: asks for the channel to be initialized again and waits until it is usable.
fn reset(
    announcements: &Announcements,
    mem: &Path,
    channel: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let info = announcements.find(channel).map_err(Failure::on(channel))?;
    info.reestablish(mem, Instant::now() + timeout)
        .map_err(Failure::on(channel))?;
    println!("channel {channel} re-established");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The probe and the installer need no channel.
    if let Command::Install {
        config,
        hypervisor,
        rt_image,
        rt_cmdline,
        kernel,
        root,
        no_update_grub,
        force,
        uninstall,
    } = &cli.command
    {
        return install::run(&install::Options {
            root: root.clone(),
            config: config.clone(),
            hypervisor: hypervisor.clone(),
            rt_image: rt_image.clone(),
            rt_cmdline: rt_cmdline.clone(),
            kernel: kernel.clone(),
            force: *force,
            no_update_grub: *no_update_grub,
            uninstall: *uninstall,
        });
    }
    if let Command::Probe {
        rt_cpus,
        rt_devices,
        rt_serial,
        rt_memory,
        name,
        output,
        root,
        dump,
    } = &cli.command
    {
        return probe::run(&probe::Options {
            root: root.clone(),
            dump: dump.clone(),
            request: bulkhead_probe::Request {
                rt_cpus: *rt_cpus,
                rt_devices: rt_devices.clone(),
                rt_serial: rt_serial.clone(),
                rt_memory_mib: *rt_memory,
                name: name.clone(),
            },
            output: output.clone(),
        });
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !matches!(failure.cause, Cause::Reported(_)) {
                eprintln!("bulkhead: {failure}");
            }
            failure.exit_code()
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let announcements = Announcements::read(&cli.cmdline)?;
    let mem = cli.mem.as_path();
    match &cli.command {
        Command::Probe { .. } | Command::Install { .. } => unreachable!("handled in main"),
        Command::List { json } => show::list(&announcements, mem, *json),
        Command::Stats { channel, json } => show::stats(&announcements, mem, channel, *json),
        Command::Send {
            channel,
            priority,
            nonblock,
            timeout_ms,
            lines,
            message,
        } => send(
            &announcements,
            mem,
            channel,
            *priority,
            wait(*nonblock, *timeout_ms),
            if *lines {
                Input::Lines
            } else {
                Input::Whole(message.as_deref())
            },
        ),
        Command::Receive {
            channel,
            count,
            nonblock,
            timeout_ms,
            json,
        } => receive(
            &announcements,
            mem,
            channel,
            *count,
            wait(*nonblock, *timeout_ms),
            *json,
        ),
        Command::Ping {
            to,
            from,
            count,
            timeout_ms,
            json,
        } => ping::run(
            &announcements,
            mem,
            ping::Options {
                to,
                from,
                count: *count,
                timeout: Duration::from_millis(*timeout_ms),
                json: *json,
            },
        ),
        Command::Rt {
            channel,
            count,
            timeout_ms,
            json,
            queued,
            histogram,
        } => rt::run(
            &announcements,
            mem,
            rt::Options {
                channel,
                count: *count,
                timeout: Duration::from_millis(*timeout_ms),
                json: *json,
                queued: *queued,
                histogram: *histogram,
            },
        ),
        Command::Reset {
            channel,
            timeout_ms,
        } => reset(
            &announcements,
            mem,
            channel,
            Duration::from_millis(*timeout_ms),
        ),
        Command::Log {
            source,
            channel,
            count,
            follow,
            timeout_ms,
            json,
        } => log::run(
            &announcements,
            mem,
            log::Options {
                source: *source,
                channel: channel.as_deref(),
                count: *count,
                follow: *follow,
                timeout: timeout_ms.map(Duration::from_millis),
                json: *json,
            },
        ),
    }
}

/// How long `send` and `receive` wait.
#[derive(Debug, Clone, Copy)]
enum Wait {
    No,
    Until(Instant),
    Forever,
}

fn wait(nonblock: bool, timeout_ms: Option<u64>) -> Wait {
    match (nonblock, timeout_ms) {
        (true, _) => Wait::No,
        (false, Some(ms)) => Wait::Until(Instant::now() + Duration::from_millis(ms)),
        (false, None) => Wait::Forever,
    }
}

/// What `send` sends.
enum Input<'a> {
    /// One message: the argument, or all of standard input.
    Whole(Option<&'a std::ffi::OsStr>),
    /// One message per line of standard input.
    Lines,
}

fn send(
    announcements: &Announcements,
    mem: &Path,
    channel: &str,
    priority: u8,
    wait: Wait,
    input: Input<'_>,
) -> Result<(), Failure> {
    let stdin_failure = |e| Failure {
        channel: Some(channel.to_owned()),
        cause: Cause::Io("read standard input", e),
    };
    let messages: Vec<Vec<u8>> = match input {
        Input::Whole(Some(m)) => vec![std::os::unix::ffi::OsStrExt::as_bytes(m).to_vec()],
        Input::Whole(None) => {
            let mut buf = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(stdin_failure)?;
            vec![buf]
        }
        Input::Lines => io::stdin()
            .lock()
            .split(b'\n')
            .collect::<Result<_, _>>()
            .map_err(stdin_failure)?,
    };
    let on = Failure::on(channel);
    let mut tx = ChannelSender::open_with(announcements, mem, channel).map_err(&on)?;
    for (sent, message) in messages.iter().enumerate() {
        match wait {
            Wait::No => tx.try_send(message, priority),
            Wait::Until(deadline) => tx.send_until(message, priority, deadline),
            Wait::Forever => tx.send(message, priority),
        }
        .map_err(|e| match input {
            Input::Lines => Failure {
                channel: Some(channel.to_owned()),
                cause: Cause::LinesCut {
                    sent: sent as u64,
                    total: messages.len() as u64,
                    error: e,
                },
            },
            Input::Whole(_) => on(e),
        })?;
    }
    Ok(())
}

fn receive(
    announcements: &Announcements,
    mem: &Path,
    channel: &str,
    count: u64,
    wait: Wait,
    json: bool,
) -> Result<(), Failure> {
    let on = Failure::on(channel);
    let mut rx = ChannelReceiver::open_with(announcements, mem, channel).map_err(&on)?;
    let mut buf = vec![0; rx.max_message()];
    for _ in 0..count {
        let (len, priority) = match wait {
            Wait::No => rx.try_receive(&mut buf),
            Wait::Until(deadline) => rx.receive_until(&mut buf, deadline),
            Wait::Forever => rx.receive(&mut buf),
        }
        .map_err(&on)?;
        show::message(priority, buf.get(..len).unwrap_or_default(), json)?;
    }
    Ok(())
}
