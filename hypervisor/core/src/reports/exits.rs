//! The exit report's console lines: one per CPU with its exit counts, and the doorbell
//! totals (the e2e harness's `report` module reads them back).
//!
//! ```text
//! exits: cpu 1 rt: total 4 new 0: CPUID=3 VMCALL=1
//! doorbells: rung 5 coalesced 1 not waiting 0 over budget 0 delivered late 1
//! doorbells to linux: raised 3 interrupts 3 held 0
//! ```
//!
//! "new" counts the exits since the previous line for that CPU ([`ReportedTotals`]). The
//! exit-count line's format is the ABI's (`bulkhead_abi::console::ExitReport`, whose parser the
//! tests and benchmarks use); this module feeds it the counters.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_abi::console;
use bulkhead_config::PartitionId;

use crate::vmx::exit::ExitCounters;

/// One CPU's exit counters as `exits: cpu N PARTITION: total T new D: REASON=n ...`.
#[derive(Debug, Clone, Copy)]
pub struct ExitCountsLine<'a> {
    /// The CPU's boot-order index.
    pub cpu: usize,
    /// Its partition (`none` before it starts its guest).
    pub partition: Option<PartitionId>,
    /// Its counters.
    pub counters: &'a ExitCounters,
    /// Exits since the previous line for this CPU.
    pub new: u64,
    /// Whether the line is printed in a partition's stop report (indented).
    pub at_stop: bool,
}

impl fmt::Display for ExitCountsLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        console::ExitReport::write(
            f,
            self.cpu as u32,
            self.partition,
            self.counters.total(),
            self.new,
            self.at_stop,
            self.counters.nonzero(),
        )
    }
}

/// Each CPU's exit total at its previous report line, so that the next line can say how
/// many are new. Shared by every CPU that prints lines.
#[derive(Debug)]
pub struct ReportedTotals<const N: usize> {
    totals: [AtomicU64; N],
}

impl<const N: usize> ReportedTotals<N> {
    /// Nothing reported yet.
    pub const fn new() -> Self {
        Self {
            totals: [const { AtomicU64::new(0) }; N],
        }
    }

    /// CPU `cpu` has `total` exits now: how many since the previous call for it (the
    /// previous total becomes `total`). A CPU beyond `N` has no history: all are new.
    pub fn take_new(&self, cpu: usize, total: u64) -> u64 {
        let before = self
            .totals
            .get(cpu)
            .map_or(0, |r| r.swap(total, Ordering::Relaxed));
        total.saturating_sub(before)
    }
}

impl<const N: usize> Default for ReportedTotals<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The doorbell totals under the exit counts: each line only when something rang.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DoorbellLines {
    /// Linux's doorbells that interrupted the RT partition.
    pub rung: u64,
    /// Linux's doorbells merged into an earlier one by the rate limit.
    pub coalesced: u64,
    /// Linux's doorbells the RT side had not asked for (no interrupt).
    pub not_waiting: u64,
    /// Linux's doorbells beyond the RT partition's budget for the second (no interrupt then).
    pub over_budget: u64,
    /// Interrupts owed to doorbells held back (coalesced or over budget), delivered once
    /// their interval or second was over.
    pub delivered_late: u64,
    /// The RT partition's doorbells toward Linux: raised, delivered as interrupts, held
    /// (sent while Linux had the pin masked); `None` without a channel device.
    pub to_linux: Option<(u64, u64, u64)>,
}

impl fmt::Display for DoorbellLines {
    /// Zero, one or two lines, each ending in a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rung + self.coalesced + self.not_waiting + self.over_budget + self.delivered_late
            > 0
        {
            writeln!(
                f,
                "doorbells: rung {} coalesced {} not waiting {} over budget {} delivered late {}",
                self.rung, self.coalesced, self.not_waiting, self.over_budget, self.delivered_late
            )?;
        }
        if let Some((raised, delivered, held)) = self.to_linux
            && raised > 0
        {
            writeln!(
                f,
                "doorbells to linux: raised {raised} interrupts {delivered} held {held}"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::exit::{ExitReason, reason};
    use std::string::ToString;

    #[test]
    fn counts_line_lists_reasons_in_order() {
        let c = ExitCounters::new();
        for r in [reason::VMCALL, reason::CPUID, reason::CPUID, reason::CPUID] {
            c.record(ExitReason::from_raw(u32::from(r)));
        }
        let line = ExitCountsLine {
            cpu: 1,
            partition: Some(PartitionId::Rt),
            counters: &c,
            new: 0,
            at_stop: false,
        };
        let text = line.to_string();
        assert_eq!(text, "exits: cpu 1 rt: total 4 new 0: CPUID=3 VMCALL=1");
        // What the tests read back is what was counted.
        let parsed = console::ExitReport::parse(&text).unwrap();
        assert_eq!(parsed.total, 4);
        assert_eq!(parsed.partition, Some(PartitionId::Rt));
        assert_eq!(parsed.count("CPUID"), 3);
    }

    #[test]
    fn counts_line_without_exits_or_partition() {
        let c = ExitCounters::new();
        let linux = ExitCountsLine {
            cpu: 0,
            partition: Some(PartitionId::Linux),
            counters: &c,
            new: 0,
            at_stop: false,
        };
        assert_eq!(linux.to_string(), "exits: cpu 0 linux: total 0 new 0:");
        let at_stop = ExitCountsLine {
            at_stop: true,
            ..linux
        };
        assert_eq!(at_stop.to_string(), "  exits: cpu 0 linux: total 0 new 0:");
        let none = ExitCountsLine {
            partition: None,
            cpu: 3,
            ..linux
        };
        assert_eq!(none.to_string(), "exits: cpu 3 none: total 0 new 0:");
    }

    #[test]
    fn new_counts_since_the_previous_report() {
        let r = ReportedTotals::<2>::new();
        assert_eq!(r.take_new(0, 10), 10);
        assert_eq!(r.take_new(0, 15), 5);
        assert_eq!(r.take_new(0, 15), 0);
        assert_eq!(r.take_new(1, 3), 3);
        // Beyond the table: everything is new, every time.
        assert_eq!(r.take_new(2, 7), 7);
        assert_eq!(r.take_new(2, 7), 7);
    }

    #[test]
    fn doorbell_lines_only_when_something_rang() {
        assert_eq!(DoorbellLines::default().to_string(), "");
        let quiet_device = DoorbellLines {
            to_linux: Some((0, 0, 0)),
            ..DoorbellLines::default()
        };
        assert_eq!(quiet_device.to_string(), "");
        let both = DoorbellLines {
            rung: 5,
            coalesced: 1,
            not_waiting: 0,
            over_budget: 4,
            delivered_late: 2,
            to_linux: Some((3, 2, 1)),
        };
        assert_eq!(
            both.to_string(),
            "doorbells: rung 5 coalesced 1 not waiting 0 over budget 4 delivered late 2\ndoorbells to linux: raised 3 interrupts 2 held 1\n"
        );
        let coalesced_only = DoorbellLines {
            coalesced: 2,
            ..DoorbellLines::default()
        };
        assert_eq!(
            coalesced_only.to_string(),
            "doorbells: rung 0 coalesced 2 not waiting 0 over budget 0 delivered late 0\n"
        );
    }
}
