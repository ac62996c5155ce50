//! Every refusal the hypervisor makes to a partition, counted by kind: a guest's attempts are
//! counted whether or not their log line fits the console budget ([`super::log_budget`]), and
//! the counts are printed with the exit report as the ABI's `refusals:` line.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_abi::console::{Refusal, RefusalReport};
use bulkhead_config::PartitionId;

/// One partition's refusal counts; shared by its CPUs.
#[derive(Debug)]
pub struct RefusalCounters {
    counts: [AtomicU64; Refusal::ALL.len()],
}

impl RefusalCounters {
    /// Nothing refused yet.
    pub const fn new() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; Refusal::ALL.len()],
        }
    }

    fn slot(kind: Refusal) -> usize {
        Refusal::ALL.iter().position(|&k| k == kind).unwrap_or(0)
    }

    /// Counts one refusal of `kind`.
    pub fn count(&self, kind: Refusal) {
        if let Some(c) = self.counts.get(Self::slot(kind)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The count of `kind` so far.
    pub fn get(&self, kind: Refusal) -> u64 {
        self.counts
            .get(Self::slot(kind))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Whether anything was refused.
    pub fn any(&self) -> bool {
        Refusal::ALL.iter().any(|&k| self.get(k) != 0)
    }

    /// The report line for `partition` (write it only when [`any`](Self::any)).
    pub fn line(&self, partition: PartitionId) -> RefusalLine<'_> {
        RefusalLine {
            partition,
            counters: self,
        }
    }
}

impl Default for RefusalCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// A partition's `refusals:` line, in the ABI's format.
#[derive(Debug, Clone, Copy)]
pub struct RefusalLine<'a> {
    partition: PartitionId,
    counters: &'a RefusalCounters,
}

impl fmt::Display for RefusalLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        RefusalReport::write(
            f,
            self.partition,
            Refusal::ALL.iter().map(|&k| (k, self.counters.get(k))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn every_refusal_is_counted_and_reported_in_the_abi_line() {
        let c = RefusalCounters::new();
        assert!(!c.any());
        for _ in 0..1500 {
            c.count(Refusal::Hypercall);
        }
        c.count(Refusal::Instruction);
        assert!(c.any());
        let text = c.line(PartitionId::Linux).to_string();
        assert_eq!(text, "refusals: linux: hypercall=1500 instruction=1");
        let parsed = RefusalReport::parse(&text).unwrap();
        assert_eq!(parsed.count(Refusal::Hypercall), 1500);
        assert_eq!(parsed.count(Refusal::Msr), 0);
    }
}
