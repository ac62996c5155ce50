//! The console lines about the guests as a whole: the hello of each start-up guest and
//! `bulkhead: steady state` when all have said it, and the exit report (every CPU's exit
//! counts, the doorbell totals and each partition's refusals, `hv_core::reports`), printed at
//! steady state, every
//! `exit_report_s` seconds by the first Linux CPU, and under a stopped guest's report.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use bulkhead_abi::console::{Refusal, STEADY_STATE};
use bulkhead_config::{MAX_CPUS, PartitionId};
use hv_core::reports::exits::{DoorbellLines, ExitCountsLine, ReportedTotals};
use hv_core::reports::refusals::RefusalCounters;

use crate::vmx::vcpu::EXIT_COUNTERS;
use crate::{boot, channels, console, linux_devices, println};

/// Each CPU's partition (`PartitionId as u8`), set when it starts its guest.
static CPU_PARTITION: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(u8::MAX) }; MAX_CPUS];
/// Each CPU's exit total at its previous line.
static REPORTED: ReportedTotals<MAX_CPUS> = ReportedTotals::new();
/// CPUs whose start-up guest has said hello.
static HELLOS: AtomicUsize = AtomicUsize::new(0);

/// Every refusal per partition (indexed by `PartitionId`), by kind.
static REFUSALS: [RefusalCounters; 2] = [const { RefusalCounters::new() }; 2];

/// Counts one refusal of `kind` to `partition` (its log line, if any, is the caller's).
pub fn refused(partition: PartitionId, kind: Refusal) {
    if let Some(c) = REFUSALS.get(partition.index()) {
        c.count(kind);
    }
}

/// CPU `index` runs a guest of `partition` from now on.
pub fn set_partition(index: usize, partition: PartitionId) {
    if let Some(p) = CPU_PARTITION.get(index) {
        p.store(partition as u8, Ordering::Relaxed);
    }
}

/// A start-up guest said hello: its line, and the steady-state report after the last one.
pub fn guest_said_hello(index: usize, apic_id: u32, partition: PartitionId) {
    println!("cpu {index} apic {apic_id}: vmcall from {partition} guest handled");
    let expected = boot::machine().map_or(0, |m| m.expected_hellos);
    if HELLOS.fetch_add(1, Ordering::AcqRel) + 1 == expected {
        report_exits_then(Some(STEADY_STATE));
    }
}

/// Prints every CPU's exit counts (one line each, in one block) and the doorbell totals.
pub fn report_exits() {
    report_exits_then(None);
}

fn report_exits_then(last_line: Option<&str>) {
    let count = boot::machine().map_or(0, |m| m.cpu_count);
    let doorbells = DoorbellLines {
        rung: channels::DOORBELLS_RUNG.load(Ordering::Relaxed),
        coalesced: channels::DOORBELLS_COALESCED.load(Ordering::Relaxed),
        not_waiting: channels::DOORBELLS_NOT_WAITING.load(Ordering::Relaxed),
        over_budget: channels::DOORBELLS_OVER_BUDGET.load(Ordering::Relaxed),
        delivered_late: channels::DOORBELLS_DELIVERED_LATE.load(Ordering::Relaxed),
        to_linux: linux_devices::channel_interrupt_counts()
            .map(|(raised, delivered, held)| (u64::from(raised), u64::from(delivered), held)),
    };
    console::write_block(|w| {
        for cpu in 0..count {
            if let Some(line) = exit_counts_line(cpu, false) {
                writeln!(w, "{line}")?;
            }
        }
        write!(w, "{doorbells}")?;
        for p in PartitionId::ALL {
            if let Some(c) = REFUSALS.get(p.index())
                && c.any()
            {
                writeln!(w, "{}", c.line(p))?;
            }
        }
        match last_line {
            Some(line) => writeln!(w, "{line}"),
            None => Ok(()),
        }
    });
}

/// An exit counts line, or nothing for a CPU without counters.
#[derive(Debug, Clone, Copy)]
pub struct ExitCounts(pub Option<ExitCountsLine<'static>>);

impl fmt::Display for ExitCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(line) => write!(f, "{line}"),
            None => Ok(()),
        }
    }
}

/// CPU `cpu`'s exit counts line (indented `at_stop`, in a partition's stop report); its next
/// line counts new exits from here.
pub fn exit_counts_line(cpu: usize, at_stop: bool) -> Option<ExitCountsLine<'static>> {
    let counters = EXIT_COUNTERS.get(cpu)?;
    let partition =
        PartitionId::from_index(usize::from(CPU_PARTITION[cpu].load(Ordering::Relaxed)));
    Some(ExitCountsLine {
        cpu,
        partition,
        counters,
        new: REPORTED.take_new(cpu, counters.total()),
        at_stop,
    })
}
