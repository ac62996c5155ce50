//! `cargo xtask test`: host tests (with the ring's loom model check), then the images and the
//! Linux guest's artefacts, then the end-to-end tests, with one summary. Only the end-to-end
//! stage fetches anything (`--host-only` never downloads).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};

use crate::{build_image, build_rt_image, build_rt_image_with, deps, guest, step};

/// Test counts summed over every `cargo test` run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
}

/// The outcome of every stage so far.
#[derive(Debug, Default)]
struct Summary {
    tests: Tally,
    /// Stages that failed, with why.
    problems: Vec<String>,
    /// Stages that failed without a failing test (a build error): each counts as one failure.
    silent_failures: u64,
}

impl Summary {
    /// Runs one `cargo test` stage and records how it went.
    fn cargo_test_stage(&mut self, what: &str, command: Command) {
        let before = self.tests.failed;
        if let Err(e) = step(what, || cargo_test(command, &mut self.tests)) {
            self.problems.push(format!("{what}: {e:#}"));
            if self.tests.failed == before {
                self.silent_failures += 1;
            }
        }
    }
}

/// Runs the host tests (`host`), then builds the images, prepares the Linux guest and runs the
/// end-to-end tests (`e2e`);
/// prints `xtask test: N passed, M failed` and fails if anything failed.
pub fn run(host: bool, e2e: bool, filter: Option<&str>) -> Result<ExitCode> {
    if e2e {
        deps::ensure(true)?;
    }
    let mut summary = Summary::default();
    if host {
        // The root's default members: every host crate, not the freestanding image.
        let mut command = cargo();
        command.arg("test");
        if let Some(f) = filter {
            command.args(["--", f]);
        }
        summary.cargo_test_stage("host tests", command);
        summary.cargo_test_stage("loom tests", loom_command(filter));
    }
    if e2e {
        let example = bulkhead_e2e::workspace_root().join(bulkhead_e2e::RT_EXAMPLE_APP);
        let artefacts = build_image(false).and_then(|elf| {
            Ok((
                elf,
                build_rt_image(false)?,
                build_rt_image_with(false, std::slice::from_ref(&example))?,
                guest::prepare_step()?,
            ))
        });
        match artefacts {
            Ok((elf, rt_elf, example_elf, linux)) => {
                let mut command = cargo();
                command
                    .args([
                        "test",
                        "-p",
                        "bulkhead-e2e",
                        "--",
                        "--ignored",
                        "--test-threads=2",
                        // The long runs are opt-in, each with its own command
                        // (`cargo xtask install-road`).
                        "--skip",
                        "long_",
                    ])
                    .env(bulkhead_e2e::HYPERVISOR_ELF_ENV, &elf)
                    .env(bulkhead_e2e::RT_KERNEL_ELF_ENV, &rt_elf)
                    .env(bulkhead_e2e::RT_EXAMPLE_ELF_ENV, &example_elf)
                    .env(bulkhead_e2e::LINUX_KERNEL_ENV, linux.kernel(false))
                    .env(bulkhead_e2e::LINUX_INITRD_ENV, &linux.initramfs)
                    .env(bulkhead_e2e::LINUX_BZIMAGE_ENV, &linux.bzimage);
                // The tests of the tool's own commands (`run`'s console) run this executable.
                if let Ok(xtask) = std::env::current_exe() {
                    command.env(bulkhead_e2e::XTASK_ENV, xtask);
                }
                // A failed boot explains itself with the console's tail; a backtrace of the
                // test code on top would bury it (panics still get theirs).
                if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
                    command.env("RUST_LIB_BACKTRACE", "0");
                }
                if let Some(f) = filter {
                    command.arg(f);
                }
                summary.cargo_test_stage("end-to-end tests", command);
            }
            Err(e) => {
                summary.problems.push(format!("images: {e:#}"));
                summary.silent_failures += 1;
            }
        }
    }
    for problem in &summary.problems {
        eprintln!("[xtask] failed: {problem}");
    }
    let failed = summary.tests.failed + summary.silent_failures;
    println!(
        "xtask test: {} passed, {failed} failed",
        summary.tests.passed
    );
    Ok(if failed == 0 && summary.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The lock-free protocols under the loom model checker (the ring's, `common/ring/tests/loom.rs`,
/// and the RT kernel's cross-core mailbox and console line ring,
/// `rt-partition/kernel-core/tests/loom.rs`): a build
/// with `--cfg loom`, in a target directory of its own so that the host build's cache survives.
/// The models bound their own preemptions: they check in about a second (the first build takes
/// about a minute).
fn loom_command(filter: Option<&str>) -> Command {
    let mut command = cargo();
    command
        .args([
            "test",
            "-p",
            "bulkhead-ring",
            "-p",
            "bulkhead-rt-core",
            "--release",
            "--test",
            "loom",
        ])
        .env("RUSTFLAGS", "--cfg loom")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env(
            "CARGO_TARGET_DIR",
            bulkhead_e2e::workspace_root().join("target/loom"),
        );
    if let Some(f) = filter {
        command.args(["--", f]);
    }
    command
}

/// `cargo` (the one running this tool, where it says), in the workspace root.
pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(bulkhead_e2e::workspace_root());
    command
}

/// Runs a `cargo test` command, passing its output through and adding up its `test result:`
/// lines; fails if it fails.
fn cargo_test(mut command: Command, tally: &mut Tally) -> Result<()> {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo test")?;
    let stdout = child.stdout.take().context("no stdout from cargo test")?;
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        if let Some(t) = parse_result(&line) {
            tally.passed += t.passed;
            tally.failed += t.failed;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

/// Reads libtest's `test result: ok. 5 passed; 0 failed; 1 ignored; ...` line.
fn parse_result(line: &str) -> Option<Tally> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut tally = Tally::default();
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next().and_then(|n| n.parse().ok()), words.next())
        else {
            continue;
        };
        match what {
            "passed" => tally.passed = n,
            "failed" => tally.failed = n,
            _ => {}
        }
    }
    Some(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_result_lines_are_counted() {
        assert_eq!(
            parse_result(
                "test result: ok. 11 passed; 0 failed; 6 ignored; 0 measured; 0 filtered out; \
                 finished in 0.00s"
            ),
            Some(Tally {
                passed: 11,
                failed: 0
            })
        );
        assert_eq!(
            parse_result("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured"),
            Some(Tally {
                passed: 3,
                failed: 2
            })
        );
        assert_eq!(parse_result("running 3 tests"), None);
    }
}
