//! `cargo xtask bench`: the benchmarks, each a thin wrapper over the command that runs it.
//!
//! - `ipc`: the channel ring against a cache-line ping-pong, rtrb, POSIX message queues, a pipe
//!   and a Unix socket (`common/ring/benches/ipc.rs`, which documents what it measures).
//!
//! A benchmark prints its own tables; this module only builds its command line and passes the
//! exit status on. It never changes what a benchmark measures.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use clap::Args;

/// What `bench ipc` passes to the benchmark.
#[derive(Args, Debug, Default, Clone, PartialEq, Eq)]
pub struct IpcArgs {
    /// A tenth of the rounds and messages per measurement.
    #[arg(long)]
    pub quick: bool,
    /// Only the transports whose name contains WORD (e.g. `mqueue`, `pipe`); the ring's rows
    /// always run, for the ratios.
    #[arg(long, value_name = "WORD")]
    pub only: Option<String>,
    /// Only the latency table.
    #[arg(long, conflicts_with = "throughput")]
    pub latency: bool,
    /// Only the throughput table.
    #[arg(long)]
    pub throughput: bool,
    /// Arguments passed to the benchmark as they are (`bench ipc -- --quick` is `bench ipc
    /// --quick`).
    #[arg(last = true, value_name = "ARGS")]
    pub extra: Vec<String>,
}

impl IpcArgs {
    /// The benchmark's own arguments, after `--`.
    fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.quick {
            args.push("--quick".into());
        }
        if let Some(word) = &self.only {
            args.extend(["--only".into(), word.clone()]);
        }
        if self.latency {
            args.push("--latency".into());
        }
        if self.throughput {
            args.push("--throughput".into());
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// Runs the IPC benchmark (`cargo bench -p bulkhead-ring --bench ipc -- ARGS`) with the
/// terminal's input and output, and returns its exit status.
pub fn ipc(args: &IpcArgs) -> Result<ExitCode> {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(bulkhead_e2e::workspace_root())
        .args(["bench", "-p", "bulkhead-ring", "--bench", "ipc", "--"])
        .args(args.to_args());
    let status = command
        .status()
        .context("cannot run cargo bench for the IPC benchmark")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BenchCmd, Cli, Cmd};
    use clap::Parser;

    #[test]
    fn ipc_flags_parse() {
        let cli =
            Cli::try_parse_from(["xtask", "bench", "ipc", "--quick", "--only", "pipe"]).unwrap();
        let Cmd::Bench {
            command: BenchCmd::Ipc(args),
        } = cli.command
        else {
            panic!("not bench ipc")
        };
        assert!(args.quick && !args.latency && !args.throughput);
        assert_eq!(args.only.as_deref(), Some("pipe"));
        assert!(
            Cli::try_parse_from(["xtask", "bench", "ipc", "--latency", "--throughput"]).is_err()
        );
        assert!(Cli::try_parse_from(["xtask", "bench"]).is_err());
        let cli = Cli::try_parse_from(["xtask", "bench", "ipc", "--", "--quick"]).unwrap();
        let Cmd::Bench {
            command: BenchCmd::Ipc(args),
        } = cli.command
        else {
            panic!("not bench ipc")
        };
        assert_eq!(args.to_args(), ["--quick"]);
    }

    #[test]
    fn ipc_arguments_pass_through() {
        assert!(IpcArgs::default().to_args().is_empty());
        let args = IpcArgs {
            quick: true,
            only: Some("mqueue".into()),
            latency: true,
            throughput: false,
            extra: vec!["--only".into(), "x".into()],
        };
        assert_eq!(
            args.to_args(),
            ["--quick", "--only", "mqueue", "--latency", "--only", "x"]
        );
    }
}
