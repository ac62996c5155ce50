//! The numbered report lines the system prints, parsed once for every test and benchmark.
//!
//! - the RT kernel's latency summary:
//!   `latency cpu=0 samples=1001 min_ns=.. avg_ns=.. max_ns=.. p99_ns=.. p999_ns=.. misses=0 overflow=0`
//!   ([`LatencySummary`]);
//! - the hypervisor's exit report, periodic or (indented) at a partition's stop:
//!   `exits: cpu 1 rt: total 4 new 0: CPUID=3 VMCALL=1` ([`ExitReport`]).
//!
//! A line that does not have exactly the expected form parses to `None`: a test that needs the
//! numbers then fails on their absence rather than on a guess.

use crate::expect::Pattern;

/// One cumulative summary of the RT kernel's latency task on one of its CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySummary {
    /// The RT kernel's CPU index (0 is the partition's first CPU).
    pub cpu: u32,
    pub samples: u64,
    pub min_ns: u64,
    pub avg_ns: u64,
    pub max_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    /// Periods whose job started after its deadline.
    pub misses: u64,
    /// Samples beyond the histogram's range.
    pub overflow: u64,
}

impl LatencySummary {
    const KEYS: [&'static str; 9] = [
        "cpu", "samples", "min_ns", "avg_ns", "max_ns", "p99_ns", "p999_ns", "misses", "overflow",
    ];

    /// Parses one summary line (surrounding white space allowed).
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("latency ")?;
        let mut values = [0u64; 9];
        let mut words = rest.split_whitespace();
        for (key, value) in Self::KEYS.iter().zip(values.iter_mut()) {
            let (k, v) = words.next()?.split_once('=')?;
            if k != *key {
                return None;
            }
            *value = v.parse().ok()?;
        }
        if words.next().is_some() {
            return None;
        }
        let [
            cpu,
            samples,
            min_ns,
            avg_ns,
            max_ns,
            p99_ns,
            p999_ns,
            misses,
            overflow,
        ] = values;
        Some(Self {
            cpu: u32::try_from(cpu).ok()?,
            samples,
            min_ns,
            avg_ns,
            max_ns,
            p99_ns,
            p999_ns,
            misses,
            overflow,
        })
    }

    /// Every summary among `lines`, in order.
    pub fn all(lines: &[String]) -> Vec<Self> {
        lines.iter().filter_map(|l| Self::parse(l)).collect()
    }

    /// A pattern for the summaries of every CPU (to count them while waiting).
    pub fn pattern() -> Pattern {
        Pattern::regex(r"^latency cpu=\d+ samples=\d+ ")
    }

    /// A pattern for the summaries of RT CPU `cpu` that counted at least one sample.
    pub fn pattern_for_cpu(cpu: u32) -> Pattern {
        Pattern::regex(&format!(r"^latency cpu={cpu} samples=[1-9]\d* "))
    }
}

/// Which partition an exit report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    Rt,
    Linux,
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
    /// Parses one exit report line.
    pub fn parse(line: &str) -> Option<Self> {
        let at_stop = line.starts_with(char::is_whitespace);
        let rest = line.trim().strip_prefix("exits: cpu ")?;
        let (cpu, rest) = rest.split_once(' ')?;
        let (partition, rest) = rest.split_once(": total ")?;
        let partition = match partition {
            "rt" => PartitionKind::Rt,
            "linux" => PartitionKind::Linux,
            _ => return None,
        };
        let (total, rest) = rest.split_once(" new ")?;
        let (new, reasons) = rest.split_once(':')?;
        let reasons = reasons
            .split_whitespace()
            .map(|word| {
                let (name, n) = word.split_once('=')?;
                Some((name.to_string(), n.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            cpu: cpu.parse().ok()?,
            partition,
            total: total.parse().ok()?,
            new: new.parse().ok()?,
            reasons,
            at_stop,
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
        Pattern::regex(match partition {
            PartitionKind::Rt => r"^exits: cpu \d+ rt: total \d+ new \d+:",
            PartitionKind::Linux => r"^exits: cpu \d+ linux: total \d+ new \d+:",
        })
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
        assert!(LatencySummary::pattern().matches(SUMMARY));
        assert!(LatencySummary::pattern_for_cpu(1).matches(SUMMARY));
        assert!(!LatencySummary::pattern_for_cpu(0).matches(SUMMARY));
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
