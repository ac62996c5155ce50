//! `bulkhead`: Bulkhead's channels from a Linux shell.
//!
//! ```text
//! bulkhead [--mem PATH] [--cmdline PATH] list [--json]
//! bulkhead send CHANNEL [-p PRIO] [--nonblock | --timeout-ms N] [MESSAGE]
//! bulkhead receive CHANNEL [-n COUNT] [--nonblock | --timeout-ms N] [--json]
//! bulkhead stats CHANNEL [--json]
//! bulkhead ping --to CHANNEL --from CHANNEL [-n COUNT] [--timeout-ms N] [--json]
//! ```
//!
//! Channels are found on the kernel command line (`/proc/cmdline`, or `--cmdline`) and mapped
//! from `/dev/mem` (or `--mem`, a file standing in for physical memory in tests) through the
//! `bulkhead-channel` library. `list` and `stats` only read a channel's header; `send` and
//! `receive` attach as Linux's end of it. Blocking waits poll (Linux gets no doorbells yet);
//! when the RT side sleeps waiting for Linux, its doorbell is rung (under Bulkhead).
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
//! # Exit status
//!
//! - 0: success (`list`/`stats`: every channel shown is usable; `ping`: every reply came back,
//!   none lost, duplicated, corrupt or reordered);
//! - 1: runtime error, with a message on standard error naming the channel and the cause (also
//!   `list`/`stats` when a channel is not usable, after printing it, and `ping` when a reply was
//!   duplicated, corrupt or reordered);
//! - 2: usage error (from the argument parser);
//! - 3: timed out or would block (`--timeout-ms`, `--nonblock`; `ping` when the only problem
//!   is replies that did not come back within `--timeout-ms`).

#![forbid(unsafe_code)]

mod ping;
mod show;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
     corrupt or reordered)
  2  usage error
  3  timed out or would block (--timeout-ms, --nonblock; ping when replies did not
     come back within --timeout-ms)

Linux gets no channel doorbells yet: blocking waits poll (spin, then sleeps of 20 us
growing to 1 ms). The RT side's doorbell is rung when it sleeps waiting for Linux.";

/// Bulkhead's channels from Linux: list them, send, receive, and ping an RT echo task.
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
            Cause::Channel(e) if e.is_transient() => ExitCode::from(3),
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
            Cause::Io(what, e) => write!(f, "cannot {what}: {e}"),
            Cause::Reported(_) => Ok(()),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::List { json } => show::list(&announcements, mem, *json),
        Command::Stats { channel, json } => show::stats(&announcements, mem, channel, *json),
        Command::Send {
            channel,
            priority,
            nonblock,
            timeout_ms,
            message,
        } => send(
            &announcements,
            mem,
            channel,
            *priority,
            wait(*nonblock, *timeout_ms),
            message.as_deref(),
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

fn send(
    announcements: &Announcements,
    mem: &Path,
    channel: &str,
    priority: u8,
    wait: Wait,
    message: Option<&std::ffi::OsStr>,
) -> Result<(), Failure> {
    let message = match message {
        Some(m) => std::os::unix::ffi::OsStrExt::as_bytes(m).to_vec(),
        None => {
            let mut buf = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(|e| Failure {
                    channel: Some(channel.to_owned()),
                    cause: Cause::Io("read standard input", e),
                })?;
            buf
        }
    };
    let on = Failure::on(channel);
    let mut tx = ChannelSender::open_with(announcements, mem, channel).map_err(&on)?;
    match wait {
        Wait::No => tx.try_send(&message, priority),
        Wait::Until(deadline) => tx.send_until(&message, priority, deadline),
        Wait::Forever => tx.send(&message, priority),
    }
    .map_err(on)
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
