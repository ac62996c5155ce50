//! The numbered report lines the system prints, as the tests and benchmarks read them. The
//! line formats and their parsers are the ABI's (`bulkhead_abi::console`), shared with the code
//! that prints them; this module adds what a test needs around them:
//!
//! - the RT kernel's latency summary ([`LatencySummary`], the ABI's type): every summary among
//!   the console lines ([`latency_summaries`]) and patterns to wait for them;
//! - the RT kernel's self-test result ([`SelftestSummary`], the ABI's type);
//! - the hypervisor's exit report, periodic or (indented) at a partition's stop: an owned
//!   [`ExitReport`] parsed by the ABI's parser, patterns to wait for them, and the check that
//!   an RT CPU took no exit after steady state ([`rt_cpu_took_no_exits`]).
//!
//! A line that does not have exactly the expected form parses to `None`: a test that needs the
//! numbers then fails on their absence rather than on a guess.

use anyhow::{Context, Result};
use bulkhead_abi::console;
pub use bulkhead_abi::console::{LatencySummary, SelftestSummary};

use crate::expect::Pattern;

/// Which partition an exit report is about: the ABI's partition names.
pub type PartitionKind = bulkhead_abi::Partition;

/// Every latency summary among `lines`, in order.
pub fn latency_summaries(lines: &[String]) -> Vec<LatencySummary> {
    lines
        .iter()
        .filter_map(|l| LatencySummary::parse(l))
        .collect()
}

/// A pattern for the latency summaries of every CPU (to count them while waiting).
pub fn latency_pattern() -> Pattern {
    Pattern::regex(&format!(r"^{}\d+ samples=\d+ ", LatencySummary::PREFIX))
}

/// A pattern for the latency summaries of RT CPU `cpu` that counted at least one sample.
pub fn latency_pattern_for_cpu(cpu: u32) -> Pattern {
    Pattern::regex(&format!(
        r"^{}{cpu} samples=[1-9]\d* ",
        LatencySummary::PREFIX
    ))
}

/// A pattern for the RT kernel's self-test result line, whatever its counts.
pub fn selftest_pattern() -> Pattern {
    Pattern::regex(&format!(
        r"^{}\d+ passed, \d+ failed$",
        SelftestSummary::PREFIX
    ))
}

/// The self-test result lines among `lines`, in order.
pub fn selftest_summaries(lines: &[String]) -> Vec<SelftestSummary> {
    lines
        .iter()
        .filter_map(|l| SelftestSummary::parse(l))
        .collect()
}

/// One exit report of one CPU: its totals and the count per exit reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReport {
    /// The physical CPU index the hypervisor uses.
    pub cpu: u32,
    pub partition: PartitionKind,
    /// Exits since the CPU entered its guest.
    pub total: u64,
    /// Exits since the CPU's previous report.
    pub new: u64,
    /// `(reason, count)` in the order printed.
    pub reasons: Vec<(String, u64)>,
    /// Whether the line was indented: the report printed when the partition stopped.
    pub at_stop: bool,
}

impl ExitReport {
    /// Parses one exit report line of a CPU in a partition (the ABI's parser).
    pub fn parse(line: &str) -> Option<Self> {
        let r = console::ExitReport::parse(line)?;
        Some(Self {
            cpu: r.cpu,
            partition: r.partition?,
            total: r.total,
            new: r.new,
            reasons: r.reasons().map(|(n, c)| (n.to_string(), c)).collect(),
            at_stop: r.at_stop,
        })
    }

    /// Every exit report among `lines` about `partition`, in order.
    pub fn all(lines: &[String], partition: PartitionKind) -> Vec<Self> {
        lines
            .iter()
            .filter_map(|l| Self::parse(l))
            .filter(|r| r.partition == partition)
            .collect()
    }

    /// A pattern for the periodic exit reports about `partition` (not those at a stop).
    pub fn pattern(partition: PartitionKind) -> Pattern {
        Pattern::regex(&format!(
            r"^exits: cpu \d+ {}: total \d+ new \d+:",
            partition.key()
        ))
    }

    /// The reasons as printed: `CPUID=3 VMCALL=1`.
    pub fn reasons_text(&self) -> String {
        self.reasons
            .iter()
            .map(|(name, n)| format!("{name}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Fails unless every RT exit report of `cpu` in `run` shows the same total: the CPU took no
/// VM exit between its first report (at steady state) and its last. Returns that total and
/// how many reports there were.
pub fn rt_cpu_took_no_exits(run: &crate::Run, cpu: u32, while_what: &str) -> Result<(u64, usize)> {
    let totals: Vec<u64> = ExitReport::all(run.lines(), PartitionKind::Rt)
        .iter()
        .filter(|e| e.cpu == cpu)
        .map(|e| e.total)
        .collect();
    let first = *totals
        .first()
        .with_context(|| format!("no exit report of RT CPU {cpu}"))?;
    anyhow::ensure!(
        totals.iter().all(|&t| t == first),
        "RT CPU {cpu} took VM exits while {while_what}: totals {totals:?}\n{}",
        run.log()
    );
    Ok((first, totals.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "latency cpu=1 samples=1001 min_ns=41400 avg_ns=41825 max_ns=105842 p99_ns=47999 p999_ns=81999 misses=2 overflow=0";

    #[test]
    fn a_summary_gives_every_number() {
        let s = LatencySummary::parse(SUMMARY).unwrap();
        assert_eq!(
            s,
            LatencySummary {
                cpu: 1,
                samples: 1001,
                min_ns: 41400,
                avg_ns: 41825,
                max_ns: 105842,
                p99_ns: 47999,
                p999_ns: 81999,
                misses: 2,
                overflow: 0,
            }
        );
        assert!(latency_pattern().matches(SUMMARY));
        assert!(latency_pattern_for_cpu(1).matches(SUMMARY));
        assert!(!latency_pattern_for_cpu(0).matches(SUMMARY));
    }

    #[test]
    fn a_summary_cut_short_reordered_or_extended_is_none() {
        let cut = &SUMMARY[..SUMMARY.len() - " overflow=0".len()];
        assert_eq!(LatencySummary::parse(cut), None);
        assert_eq!(
            LatencySummary::parse(
                &SUMMARY.replace("min_ns=41400 avg_ns=41825", "avg_ns=41825 min_ns=41400")
            ),
            None
        );
        assert_eq!(LatencySummary::parse(&format!("{SUMMARY} extra=1")), None);
        assert_eq!(LatencySummary::parse(&SUMMARY.replace("=2 ", "=-2 ")), None);
        assert_eq!(LatencySummary::parse("latency task started"), None);
    }

    #[test]
    fn exit_reports_periodic_and_at_stop() {
        let r = ExitReport::parse("exits: cpu 1 rt: total 4 new 0: CPUID=3 VMCALL=1").unwrap();
        assert_eq!(
            r,
            ExitReport {
                cpu: 1,
                partition: PartitionKind::Rt,
                total: 4,
                new: 0,
                reasons: vec![("CPUID".into(), 3), ("VMCALL".into(), 1)],
                at_stop: false,
            }
        );
        assert_eq!(r.reasons_text(), "CPUID=3 VMCALL=1");
        let stop = ExitReport::parse("  exits: cpu 0 linux: total 2435 new 9: CPUID=976").unwrap();
        assert!(stop.at_stop);
        assert_eq!(stop.partition, PartitionKind::Linux);
        assert!(
            !ExitReport::pattern(PartitionKind::Linux)
                .matches("  exits: cpu 0 linux: total 1 new 1:")
        );
        assert!(ExitReport::pattern(PartitionKind::Rt).matches("exits: cpu 3 rt: total 1 new 0:"));
        let none = ExitReport::parse("exits: cpu 2 rt: total 5 new 0:").unwrap();
        assert!(none.reasons.is_empty());
    }

    #[test]
    fn malformed_exit_reports_are_none() {
        for line in [
            "exits: cpu x rt: total 4 new 0: CPUID=3",
            "exits: cpu 1 other: total 4 new 0: CPUID=3",
            "exits: cpu 1 rt: total 4 new 0 CPUID=3",
            "exits: cpu 1 rt: total 4 new 0: CPUID",
            "exits: cpu 1 rt: total 4 new 0: CPUID=x",
        ] {
            assert_eq!(ExitReport::parse(line), None, "{line}");
        }
        let lines = vec![
            "exits: cpu 0 linux: total 8 new 8: CPUID=8".to_string(),
            "exits: cpu 1 rt: total 4 new 4: CPUID=3 VMCALL=1".to_string(),
        ];
        assert_eq!(ExitReport::all(&lines, PartitionKind::Rt).len(), 1);
        assert_eq!(ExitReport::all(&lines, PartitionKind::Linux)[0].total, 8);
    }
}

