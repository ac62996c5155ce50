//! `bulkhead probe`: the proposed config for this machine (see the `bulkhead-probe` crate for
//! what it reads and decides), on standard output or in a file, and what the probe found on
//! standard error, blockers first.

use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead_probe::{Request, Severity, facts, propose};

/// The exit status when the config was written but something blocks a clean partitioning.
pub const BLOCKED: u8 = 4;

/// What `bulkhead probe` was asked.
#[derive(Debug)]
pub struct Options {
    /// The machine's files under this root instead of `/` (a dump of another machine).
    pub root: PathBuf,
    /// Where to copy the files read, as a dump of the machine.
    pub dump: Option<PathBuf>,
    pub request: Request,
    /// Where the config goes; standard output when `None`.
    pub output: Option<PathBuf>,
}

pub fn run(options: &Options) -> ExitCode {
    let read = match &options.dump {
        Some(dir) => facts::dump(&options.root, dir),
        None => facts::read(&options.root),
    };
    let facts = match read {
        Ok(facts) => facts,
        Err(e) => {
            eprintln!("bulkhead probe: cannot read this machine: {e}");
            return ExitCode::from(1);
        }
    };
    let proposal = match propose(&facts, &options.request) {
        Ok(proposal) => proposal,
        Err(e) => {
            eprintln!("bulkhead probe: {e}");
            return ExitCode::from(1);
        }
    };
    let written = match &options.output {
        Some(path) => std::fs::write(path, &proposal.toml)
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(proposal.toml.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("cannot write to standard output: {e}"))
        }
    };
    if let Err(e) = written {
        eprintln!("bulkhead probe: {e}");
        return ExitCode::from(1);
    }
    if let Some(dir) = &options.dump {
        eprintln!(
            "bulkhead probe: the files read are under {} (`bulkhead probe --root {}` reads them again)",
            dir.display(),
            dir.display()
        );
    }
    for finding in &proposal.findings {
        eprintln!(
            "bulkhead probe: {}: {}",
            finding.severity.word(),
            finding.text
        );
    }
    let blockers = proposal
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker)
        .count();
    if blockers > 0 {
        eprintln!(
            "bulkhead probe: {blockers} blocker{} (above): the config is written, but the \
             machine cannot be partitioned cleanly until {} fixed",
            if blockers == 1 { "" } else { "s" },
            if blockers == 1 { "it is" } else { "they are" }
        );
        ExitCode::from(BLOCKED)
    } else {
        ExitCode::SUCCESS
    }
}
