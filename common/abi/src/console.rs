//! The console lines that tools and tests read: each structured line the images print has its
//! one writer and its one parser here, tested together. A parser treats a line as untrusted
//! text: anything that is not exactly the form below is `None`, never a guess.
//!
//! - [`STEADY_STATE`], [`HALTED`], [`FATAL_PREFIX`], [`RT_HALTED`]: the milestones;
//! - [`ExitReport`]: the hypervisor's exit counts of one CPU,
//!   `exits: cpu 1 rt: total 4 new 0: CPUID=3 VMCALL=1` (indented when printed at a
//!   partition's stop);
//! - [`LatencySummary`]: the RT kernel's latency task on one RT CPU,
//!   `latency cpu=0 samples=1001 min_ns=.. avg_ns=.. max_ns=.. p99_ns=.. p999_ns=.. misses=0 overflow=0`;
//! - [`SectionSummary`], [`WakePathSummary`]: what the RT kernel measures of itself on one RT
//!   CPU (`trace=on`): its longest interrupts-off section and where it began, and its wake-up
//!   path stage by stage;
//! - [`HistogramLine`]: the latency task's or a device's histogram, in as many lines as it needs
//!   (`trace=on`), `histogram cpu=0 us:count=14:9995,15:3`;
//! - [`ControlSummary`]: the RT kernel's demo control loop, `control: jobs=.. misses=0 ..`;
//! - [`SerialSummary`]: an RT-owned UART's driver (the serial echo application),
//!   `serial: port=0x3e8 gsi=4 rx=.. tx=.. overruns=0 irqs=.. unhandled=0 irq_to_task_max_ns=..`;
//! - [`DeviceLatencySummary`]: a device interrupt whose event time is known (the HPET
//!   application), from the event to the handler task running:
//!   `device-latency source=hpet gsi=20 samples=.. min_ns=.. avg_ns=.. max_ns=.. p99_ns=.. p999_ns=.. lost=0 overflow=0 kernel_avg_ns=.. kernel_max_ns=..`;
//! - [`SelftestSummary`]: the RT kernel's self-test result, `selftest: 12 passed, 0 failed`;
//! - [`RefusalReport`]: what the hypervisor refused a partition, by [`Refusal`] kind,
//!   `refusals: linux: hypercall=2 msr=1`.

use core::fmt;

use crate::Partition;

/// The hypervisor's line once every CPU runs its guest and every guest that says hello has.
pub const STEADY_STATE: &str = "bulkhead: steady state";
/// The hypervisor's last line when it stops the machine (after a [`FATAL_PREFIX`] line).
pub const HALTED: &str = "bulkhead: halted";
/// The start of the one line that names why the hypervisor (or the RT kernel) stops.
pub const FATAL_PREFIX: &str = "FATAL: ";
/// The RT kernel's last line when it stops (after a [`FATAL_PREFIX`] line).
pub const RT_HALTED: &str = "bulkhead-rt: halted";

/// The head of one CPU's exit report; the reasons follow it on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReport<'a> {
    /// The hypervisor's CPU index.
    pub cpu: u32,
    /// The partition the CPU runs; `None` for a CPU in none (printed `none`).
    pub partition: Option<Partition>,
    /// Exits since the CPU entered its guest.
    pub total: u64,
    /// Exits since the CPU's previous report.
    pub new: u64,
    /// Whether the line is indented: the report printed when a partition stopped.
    pub at_stop: bool,
    /// `REASON=n` words separated by single spaces (checked by [`ExitReport::parse`]).
    reasons: &'a str,
}

/// Reads the ` NAME=n` words that end the exit report and the refusal report: each as
/// `(NAME, n)`, or `None` where a word is not a non-empty name, `=` and a decimal count.
fn count_words(words: &str) -> impl Iterator<Item = Option<(&str, u64)>> {
    words.split_whitespace().map(|word| {
        let (name, n) = word.split_once('=')?;
        if name.is_empty() {
            return None;
        }
        Some((name, n.parse().ok()?))
    })
}

/// The indentation of an exit report printed at a partition's stop.
const AT_STOP_INDENT: &str = "  ";

impl<'a> ExitReport<'a> {
    /// Writes one report line (without its newline): the head, then ` REASON=n` for each of
    /// `reasons` (those with a count of 0 are skipped).
    pub fn write<R: fmt::Display>(
        out: &mut impl fmt::Write,
        cpu: u32,
        partition: Option<Partition>,
        total: u64,
        new: u64,
        at_stop: bool,
        reasons: impl IntoIterator<Item = (R, u64)>,
    ) -> fmt::Result {
        let partition = partition.map_or("none", Partition::key);
        let indent = if at_stop { AT_STOP_INDENT } else { "" };
        write!(
            out,
            "{indent}exits: cpu {cpu} {partition}: total {total} new {new}:"
        )?;
        for (reason, n) in reasons {
            if n != 0 {
                write!(out, " {reason}={n}")?;
            }
        }
        Ok(())
    }

    /// Parses one report line.
    pub fn parse(line: &'a str) -> Option<Self> {
        let at_stop = line.starts_with(char::is_whitespace);
        let rest = line.trim().strip_prefix("exits: cpu ")?;
        let (cpu, rest) = rest.split_once(' ')?;
        let (partition, rest) = rest.split_once(": total ")?;
        let partition = match partition {
            "none" => None,
            word => Some(Partition::from_key(word)?),
        };
        let (total, rest) = rest.split_once(" new ")?;
        let (new, reasons) = rest.split_once(':')?;
        let report = Self {
            cpu: cpu.parse().ok()?,
            partition,
            total: total.parse().ok()?,
            new: new.parse().ok()?,
            at_stop,
            reasons: reasons.trim(),
        };
        if report.reason_words().any(|r| r.is_none()) {
            return None;
        }
        Some(report)
    }

    fn reason_words(&self) -> impl Iterator<Item = Option<(&'a str, u64)>> + use<'a> {
        count_words(self.reasons)
    }

    /// `(reason, count)` in the order printed.
    pub fn reasons(&self) -> impl Iterator<Item = (&'a str, u64)> + use<'a> {
        self.reason_words().flatten()
    }

    /// The count of exit reason `name` (0 when the line does not list it).
    pub fn count(&self, name: &str) -> u64 {
        self.reasons()
            .find(|&(r, _)| r == name)
            .map_or(0, |(_, n)| n)
    }
}

/// What the hypervisor refused a partition, by kind: every refusal is counted, whether or not
/// its log line was within the console budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A hypercall the caller may not make, or does not exist.
    Hypercall,
    /// An IPI outside the partition, or a start-up the hypervisor does not emulate.
    Ipi,
    /// A write to an MSR the partition may not change (time, APIC base, features).
    Msr,
    /// An IOAPIC access the partition's view does not allow.
    Ioapic,
    /// An access to a port no device of the partition answers.
    Port,
    /// A PCI configuration-space write to a function the partition does not own (another
    /// partition's, or one it may only read).
    PciConfig,
    /// An instruction the partition's CPUs do not have (VMX): #UD in the guest.
    Instruction,
    /// An access to memory the partition does not own that the hypervisor answered as a
    /// platform without a device there would.
    Memory,
}

impl Refusal {
    /// Every kind, in the order a report lists them.
    pub const ALL: [Refusal; 8] = [
        Refusal::Hypercall,
        Refusal::Ipi,
        Refusal::Msr,
        Refusal::Ioapic,
        Refusal::Port,
        Refusal::PciConfig,
        Refusal::Instruction,
        Refusal::Memory,
    ];

    /// The kind's word in the report.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hypercall => "hypercall",
            Self::Ipi => "ipi",
            Self::Msr => "msr",
            Self::Ioapic => "ioapic",
            Self::Port => "port",
            Self::PciConfig => "pci",
            Self::Instruction => "instruction",
            Self::Memory => "memory",
        }
    }

    /// The kind whose word is `word`.
    pub fn from_name(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == word)
    }
}

/// A partition's refusal counts, printed with the exit report:
/// `refusals: linux: hypercall=2 msr=1` (kinds with a count of 0 left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalReport<'a> {
    /// The partition refused.
    pub partition: Partition,
    /// `kind=n` words (checked by [`RefusalReport::parse`]).
    counts: &'a str,
}

impl<'a> RefusalReport<'a> {
    /// Writes the line (without its newline).
    pub fn write(
        out: &mut impl fmt::Write,
        partition: Partition,
        counts: impl IntoIterator<Item = (Refusal, u64)>,
    ) -> fmt::Result {
        write!(out, "refusals: {partition}:")?;
        for (kind, n) in counts {
            if n != 0 {
                write!(out, " {}={n}", kind.name())?;
            }
        }
        Ok(())
    }

    /// Parses one line.
    pub fn parse(line: &'a str) -> Option<Self> {
        let rest = line.trim().strip_prefix("refusals: ")?;
        let (partition, counts) = rest.split_once(':')?;
        let report = Self {
            partition: Partition::from_key(partition)?,
            counts: counts.trim(),
        };
        if report.words().any(|w| w.is_none()) {
            return None;
        }
        Some(report)
    }

    fn words(&self) -> impl Iterator<Item = Option<(Refusal, u64)>> + use<'a> {
        count_words(self.counts)
            .map(|word| word.and_then(|(name, n)| Some((Refusal::from_name(name)?, n))))
    }

    /// The count of `kind` (0 when the line does not list it).
    pub fn count(&self, kind: Refusal) -> u64 {
        self.words()
            .flatten()
            .find(|&(k, _)| k == kind)
            .map_or(0, |(_, n)| n)
    }
}

/// Reads `words` as exactly the `KEY=n` words `keys` names, in that order, single spaces
/// or not, nothing after them: their decimal values, or `None`.
fn key_values<const N: usize>(words: &str, keys: [&str; N]) -> Option<[u64; N]> {
    let mut values = [0u64; N];
    let mut words = words.split_whitespace();
    for (key, value) in keys.iter().zip(values.iter_mut()) {
        let (k, v) = words.next()?.split_once('=')?;
        if k != *key {
            return None;
        }
        *value = v.parse().ok()?;
    }
    if words.next().is_some() {
        return None;
    }
    Some(values)
}

/// One cumulative summary of the RT kernel's latency task on one of its CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    /// The RT kernel's CPU index (0 is the partition's first CPU).
    pub cpu: u32,
    /// Wake-ups measured.
    pub samples: u64,
    /// Shortest wake-up latency (0 without samples).
    pub min_ns: u64,
    /// Mean wake-up latency.
    pub avg_ns: u64,
    /// Longest wake-up latency.
    pub max_ns: u64,
    /// 99th percentile (the upper edge of its histogram bucket).
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Periods whose job started after its deadline.
    pub misses: u64,
    /// Samples beyond the histogram's range.
    pub overflow: u64,
}

impl LatencySummary {
    /// The keys in the order printed, after `latency `.
    const KEYS: [&'static str; 9] = [
        "cpu", "samples", "min_ns", "avg_ns", "max_ns", "p99_ns", "p999_ns", "misses", "overflow",
    ];

    /// The line's start, for a search that needs no parse.
    pub const PREFIX: &'static str = "latency cpu=";

    /// Parses one summary line (surrounding white space allowed).
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("latency ")?;
        let values = key_values(rest, Self::KEYS)?;
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
}

/// The line: keys fixed and always present, decimal values, single spaces, no newline.
impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "latency cpu={} samples={} min_ns={} avg_ns={} max_ns={} p99_ns={} p999_ns={} misses={} overflow={}",
            self.cpu,
            self.samples,
            self.min_ns,
            self.avg_ns,
            self.max_ns,
            self.p99_ns,
            self.p999_ns,
            self.misses,
            self.overflow,
        )
    }
}

/// The RT kernel's longest interrupts-off section on one CPU since it began scheduling, and
/// where its time went: `sections cpu=0 count=81234 irq_off_max_ns=2140 decide_ns=1500
/// switch_ns=400 resume_ns=240 at=rt-partition/kernel/src/api.rs:212`.
/// Every kernel entry, interrupt handler and lock of the kernel runs with interrupts off, so
/// this bounds how late an interrupt (and the task it wakes) can be served. The three stages
/// add up to the section: to the kernel's scheduling decision (the handler's or the kernel
/// call's own work; the whole section when it made none), from it to the context switch (0
/// without one), and from there until interrupts are on again (in the task switched to, or
/// back in the caller). `at` names where the section began: a source location (`FILE:LINE`)
/// or an interrupt (`irq:VECTOR`); it holds no white space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionSummary<'a> {
    /// The RT kernel's CPU index.
    pub cpu: u32,
    /// Sections measured.
    pub count: u64,
    /// The longest one.
    pub irq_off_max_ns: u64,
    /// The longest one's stages, in [`SectionSummary::STAGES`] order.
    pub stages_ns: [u64; 3],
    /// Where the longest one began.
    pub at: &'a str,
}

impl<'a> SectionSummary<'a> {
    /// The line's start, for a search that needs no parse.
    pub const PREFIX: &'static str = "sections cpu=";
    /// The stages of a section, as their keys say them.
    pub const STAGES: [&'static str; 3] = ["decide", "switch", "resume"];
    const KEYS: [&'static str; 6] = [
        "cpu",
        "count",
        "irq_off_max_ns",
        "decide_ns",
        "switch_ns",
        "resume_ns",
    ];

    /// Parses one line (surrounding white space allowed).
    pub fn parse(line: &'a str) -> Option<Self> {
        let rest = line.trim().strip_prefix("sections ")?;
        let (numbers, at) = rest.rsplit_once(" at=")?;
        if at.is_empty() || at.contains(char::is_whitespace) {
            return None;
        }
        let [cpu, count, irq_off_max_ns, decide, switch, resume] = key_values(numbers, Self::KEYS)?;
        Some(Self {
            cpu: u32::try_from(cpu).ok()?,
            count,
            irq_off_max_ns,
            stages_ns: [decide, switch, resume],
            at,
        })
    }
}

impl fmt::Display for SectionSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [decide, switch, resume] = self.stages_ns;
        write!(
            f,
            "sections cpu={} count={} irq_off_max_ns={} decide_ns={decide} switch_ns={switch} \
             resume_ns={resume} at={}",
            self.cpu, self.count, self.irq_off_max_ns, self.at
        )
    }
}

/// Where the RT kernel's wake-up path spends its time on one CPU, from the latency task's
/// wake-ups: its timer's deadline to the interrupt's entry, to the scheduling decision, to
/// the context switch, to the task running again. Averages, then each stage's maximum:
/// `wake cpu=0 samples=1000 to_irq_ns=.. to_decision_ns=.. to_switch_ns=.. to_task_ns=..
/// max_to_irq_ns=.. max_to_decision_ns=.. max_to_switch_ns=.. max_to_task_ns=..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WakePathSummary {
    /// The RT kernel's CPU index.
    pub cpu: u32,
    /// Wake-ups measured.
    pub samples: u64,
    /// Mean time of each stage, in [`WakePathSummary::STAGES`] order.
    pub avg_ns: [u64; 4],
    /// Longest time of each stage (not necessarily of one wake-up).
    pub max_ns: [u64; 4],
}

impl WakePathSummary {
    /// The stages, as their keys say them.
    pub const STAGES: [&'static str; 4] = ["to_irq", "to_decision", "to_switch", "to_task"];
    const KEYS: [&'static str; 10] = [
        "cpu",
        "samples",
        "to_irq_ns",
        "to_decision_ns",
        "to_switch_ns",
        "to_task_ns",
        "max_to_irq_ns",
        "max_to_decision_ns",
        "max_to_switch_ns",
        "max_to_task_ns",
    ];

    /// The line's start, for a search that needs no parse.
    pub const PREFIX: &'static str = "wake cpu=";

    /// Parses one line (surrounding white space allowed).
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("wake ")?;
        let v = key_values(rest, Self::KEYS)?;
        Some(Self {
            cpu: u32::try_from(v[0]).ok()?,
            samples: v[1],
            avg_ns: [v[2], v[3], v[4], v[5]],
            max_ns: [v[6], v[7], v[8], v[9]],
        })
    }

    /// The mean of the whole path: the stages' means added.
    pub fn total_avg_ns(&self) -> u64 {
        self.avg_ns.iter().sum()
    }
}

impl fmt::Display for WakePathSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = [self.cpu as u64, self.samples]
            .into_iter()
            .chain(self.avg_ns)
            .chain(self.max_ns);
        f.write_str("wake")?;
        for (key, value) in Self::KEYS.iter().zip(values) {
            write!(f, " {key}={value}")?;
        }
        Ok(())
    }
}

/// The demo control loop's report every 2 s: jobs and missed deadlines since it started,
/// tracking error and longest job in the last window:
/// `control: jobs=20001 misses=0 max_err_urad=.. mean_err_urad=.. max_job_ns=..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ControlSummary {
    /// Jobs run.
    pub jobs: u64,
    /// Jobs that ended after their deadline (the next release).
    pub misses: u64,
    /// Largest position error in the window, in microradians.
    pub max_err_urad: u64,
    /// Mean position error in the window.
    pub mean_err_urad: u64,
    /// Longest job (compute only) in the window.
    pub max_job_ns: u64,
}

impl ControlSummary {
    const KEYS: [&'static str; 5] = [
        "jobs",
        "misses",
        "max_err_urad",
        "mean_err_urad",
        "max_job_ns",
    ];

    /// The line's start, for a search that needs no parse.
    pub const PREFIX: &'static str = "control: jobs=";

    /// Parses one line (surrounding white space allowed).
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("control: ")?;
        let [jobs, misses, max_err_urad, mean_err_urad, max_job_ns] = key_values(rest, Self::KEYS)?;
        Some(Self {
            jobs,
            misses,
            max_err_urad,
            mean_err_urad,
            max_job_ns,
        })
    }
}

impl fmt::Display for ControlSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "control: jobs={} misses={} max_err_urad={} mean_err_urad={} max_job_ns={}",
            self.jobs, self.misses, self.max_err_urad, self.mean_err_urad, self.max_job_ns
        )
    }
}

/// A device interrupt's latency, cumulative: from the moment the device raised it (known:
/// a timer's comparator) to its handler task running, on the RT CPU the line goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceLatencySummary<'a> {
    /// The device (`hpet`).
    pub source: &'a str,
    /// Its IOAPIC pin.
    pub gsi: u32,
    pub samples: u64,
    pub min_ns: u64,
    pub avg_ns: u64,
    pub max_ns: u64,
    /// 99th and 99.9th percentiles (the upper edges of their 1 us buckets).
    pub p99_ns: u64,
    pub p999_ns: u64,
    /// Events whose interrupt never came (the handler's wait timed out).
    pub lost: u64,
    /// Samples beyond the histogram's range.
    pub overflow: u64,
    /// The kernel's share: from its top half (the interrupt entered) to the task running,
    /// mean and maximum; the rest of `avg_ns` is the hardware's (device to CPU).
    pub kernel_avg_ns: u64,
    pub kernel_max_ns: u64,
}

impl<'a> DeviceLatencySummary<'a> {
    const KEYS: [&'static str; 10] = [
        "samples",
        "min_ns",
        "avg_ns",
        "max_ns",
        "p99_ns",
        "p999_ns",
        "lost",
        "overflow",
        "kernel_avg_ns",
        "kernel_max_ns",
    ];

    /// The line's start, for a search that needs no parse.
    pub const PREFIX: &'static str = "device-latency source=";

    /// Parses one line (surrounding white space allowed).
    pub fn parse(line: &'a str) -> Option<Self> {
        let rest = line.trim().strip_prefix(Self::PREFIX)?;
        let (source, rest) = rest.split_once(' ')?;
        let (gsi, rest) = rest.strip_prefix("gsi=")?.split_once(' ')?;
        let gsi = gsi.parse().ok()?;
        if source.is_empty() || source.contains('=') {
            return None;
        }
        let [
            samples,
            min_ns,
            avg_ns,
            max_ns,
            p99_ns,
            p999_ns,
            lost,
            overflow,
            kernel_avg_ns,
            kernel_max_ns,
        ] = key_values(rest, Self::KEYS)?;
        Some(Self {
            source,
            gsi,
            samples,
            min_ns,
            avg_ns,
            max_ns,
            p99_ns,
            p999_ns,
            lost,
            overflow,
            kernel_avg_ns,
            kernel_max_ns,
        })
    }
}

impl fmt::Display for DeviceLatencySummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "device-latency source={} gsi={} samples={} min_ns={} avg_ns={} max_ns={} p99_ns={} p999_ns={} lost={} overflow={} kernel_avg_ns={} kernel_max_ns={}",
            self.source,
            self.gsi,
            self.samples,
            self.min_ns,
            self.avg_ns,
            self.max_ns,
            self.p99_ns,
            self.p999_ns,
            self.lost,
            self.overflow,
            self.kernel_avg_ns,
            self.kernel_max_ns
        )
    }
}

/// A cyclic frame exchange, cumulative, the way a fieldbus master runs one: every `period_us`
/// a frame goes out on an RT-owned NIC and its answer must be back before the next cycle
/// starts; the round trip (frame handed to the NIC to answer seen by the driver's task) is
/// measured for every answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CycleSummary<'a> {
    /// The NIC (`e1000`).
    pub source: &'a str,
    pub period_us: u64,
    /// Frames sent.
    pub cycles: u64,
    /// Answers back within their cycle, checked.
    pub answered: u64,
    /// Answers that came back in a later cycle.
    pub late: u64,
    /// Frames whose answer never came (given up after 16 cycles).
    pub lost: u64,
    /// Frames received that were no answer to this exchange, or a wrong one.
    pub bad: u64,
    /// Round trips of the answers in time: min, mean, max, 99th and 99.9th percentiles
    /// (upper edges of 1 us buckets).
    pub min_ns: u64,
    pub avg_ns: u64,
    pub max_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    /// Interrupts the NIC's line took.
    pub irqs: u64,
    /// The kernel's share, from its top half (the NIC's interrupt entered) to the driver's
    /// task running, mean and maximum: the part of the round trip that is the RT system's.
    pub kernel_avg_ns: u64,
    pub kernel_max_ns: u64,
}

impl<'a> CycleSummary<'a> {
    const KEYS: [&'static str; 14] = [
        "period_us",
        "cycles",
        "answered",
        "late",
        "lost",
        "bad",
        "min_ns",
        "avg_ns",
        "max_ns",
        "p99_ns",
        "p999_ns",
        "irqs",
        "kernel_avg_ns",
        "kernel_max_ns",
    ];

    /// The line's start, for a search that needs no parse.
    pub const PREFIX: &'static str = "frame-cycle source=";

    /// Parses one line (surrounding white space allowed).
    pub fn parse(line: &'a str) -> Option<Self> {
        let (source, rest) = line.trim().strip_prefix(Self::PREFIX)?.split_once(' ')?;
        if source.is_empty() || source.contains('=') {
            return None;
        }
        let [
            period_us,
            cycles,
            answered,
            late,
            lost,
            bad,
            min_ns,
            avg_ns,
            max_ns,
            p99_ns,
            p999_ns,
            irqs,
            kernel_avg_ns,
            kernel_max_ns,
        ] = key_values(rest, Self::KEYS)?;
        Some(Self {
            source,
            period_us,
            cycles,
            answered,
            late,
            lost,
            bad,
            min_ns,
            avg_ns,
            max_ns,
            p99_ns,
            p999_ns,
            irqs,
            kernel_avg_ns,
            kernel_max_ns,
        })
    }
}

impl fmt::Display for CycleSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame-cycle source={} period_us={} cycles={} answered={} late={} lost={} bad={} min_ns={} avg_ns={} max_ns={} p99_ns={} p999_ns={} irqs={} kernel_avg_ns={} kernel_max_ns={}",
            self.source,
            self.period_us,
            self.cycles,
            self.answered,
            self.late,
            self.lost,
            self.bad,
            self.min_ns,
            self.avg_ns,
            self.max_ns,
            self.p99_ns,
            self.p999_ns,
            self.irqs,
            self.kernel_avg_ns,
            self.kernel_max_ns
        )
    }
}

/// An RT-owned UART's driver: what it received and sent, receiver overruns, the interrupts
/// its line took (and took with no handler), and the longest time from an interrupt's top
/// half to the driver's task running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialSummary {
    /// The UART's I/O base.
    pub port: u16,
    /// Its IOAPIC pin.
    pub gsi: u32,
    pub rx: u64,
    pub tx: u64,
    pub overruns: u64,
    pub irqs: u64,
    pub unhandled: u64,
    pub irq_to_task_max_ns: u64,
}

impl SerialSummary {
    const KEYS: [&'static str; 6] = [
        "rx",
        "tx",
        "overruns",
        "irqs",
        "unhandled",
        "irq_to_task_max_ns",
    ];

    /// The line's start, for a search that needs no parse.
    pub const PREFIX: &'static str = "serial: port=";

    /// Parses one line (surrounding white space allowed).
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix(Self::PREFIX)?;
        let (port, rest) = rest.split_once(' ')?;
        let port = u16::from_str_radix(port.strip_prefix("0x")?, 16).ok()?;
        let (gsi, rest) = rest.strip_prefix("gsi=")?.split_once(' ')?;
        let gsi = gsi.parse().ok()?;
        let [rx, tx, overruns, irqs, unhandled, irq_to_task_max_ns] = key_values(rest, Self::KEYS)?;
        Some(Self {
            port,
            gsi,
            rx,
            tx,
            overruns,
            irqs,
            unhandled,
            irq_to_task_max_ns,
        })
    }
}

impl fmt::Display for SerialSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "serial: port={:#x} gsi={} rx={} tx={} overruns={} irqs={} unhandled={} irq_to_task_max_ns={}",
            self.port,
            self.gsi,
            self.rx,
            self.tx,
            self.overruns,
            self.irqs,
            self.unhandled,
            self.irq_to_task_max_ns
        )
    }
}

/// Whose histogram a [`HistogramLine`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramOwner<'a> {
    /// The latency task's wake-up latencies on this RT kernel CPU index.
    Cpu(u32),
    /// A device's interrupt latencies (`hpet`).
    Device(&'a str),
}

impl fmt::Display for HistogramOwner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu(cpu) => write!(f, "cpu={cpu}"),
            Self::Device(name) => write!(f, "device={name}"),
        }
    }
}

/// Part of a latency histogram (`trace=on`): the latency task's on one CPU, or a device's
/// interrupt latencies; its non-empty 1 µs buckets as `MICROSECONDS:COUNT` pairs, lowest first,
/// at most [`HistogramLine::MAX_PAIRS`] to a line (a histogram takes as many lines as it needs;
/// they follow its summary): `histogram cpu=0 us:count=14:9995,15:3,16:2`,
/// `histogram device=hpet us:count=3:1000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramLine<'a> {
    /// Whose histogram.
    pub owner: HistogramOwner<'a>,
    /// The pairs, checked by [`HistogramLine::parse`].
    pairs: &'a str,
}

impl<'a> HistogramLine<'a> {
    /// The line's start, for a search that needs no parse.
    pub const PREFIX: &'static str = "histogram ";
    /// The most pairs one line carries (so that it stays well inside a console line).
    pub const MAX_PAIRS: usize = 20;

    /// Writes `owner`'s line with `pairs` (at most [`Self::MAX_PAIRS`] are written).
    pub fn write(
        out: &mut impl fmt::Write,
        owner: HistogramOwner<'_>,
        pairs: impl IntoIterator<Item = (u64, u64)>,
    ) -> fmt::Result {
        write!(out, "histogram {owner} us:count=")?;
        for (i, (us, count)) in pairs.into_iter().take(Self::MAX_PAIRS).enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(out, "{comma}{us}:{count}")?;
        }
        Ok(())
    }

    /// Parses one line (surrounding white space allowed); every pair must be well formed, a
    /// device's name one word.
    pub fn parse(line: &'a str) -> Option<Self> {
        let rest = line.trim().strip_prefix(Self::PREFIX)?;
        let (owner, pairs) = rest.split_once(" us:count=")?;
        let owner = if let Some(cpu) = owner.strip_prefix("cpu=") {
            HistogramOwner::Cpu(cpu.parse().ok()?)
        } else {
            let name = owner.strip_prefix("device=")?;
            if name.is_empty() || name.contains(char::is_whitespace) {
                return None;
            }
            HistogramOwner::Device(name)
        };
        let parsed = Self { owner, pairs };
        let mut n = 0;
        for pair in parsed.pair_words() {
            pair?;
            n += 1;
        }
        (n > 0 && n <= Self::MAX_PAIRS).then_some(parsed)
    }

    fn pair_words(&self) -> impl Iterator<Item = Option<(u64, u64)>> + use<'a> {
        self.pairs.split(',').map(|pair| {
            let (us, count) = pair.split_once(':')?;
            Some((us.parse().ok()?, count.parse().ok()?))
        })
    }

    /// The `(microseconds, count)` pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (u64, u64)> + use<'a> {
        self.pair_words().flatten()
    }
}

/// The RT kernel's self-test result: `selftest: P passed, F failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelftestSummary {
    /// Checks that held.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
}

impl SelftestSummary {
    /// The line's start, for a search that needs no parse.
    pub const PREFIX: &'static str = "selftest: ";

    /// Parses the line.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix(Self::PREFIX)?;
        let (passed, failed) = rest.strip_suffix(" failed")?.split_once(" passed, ")?;
        Some(Self {
            passed: passed.parse().ok()?,
            failed: failed.parse().ok()?,
        })
    }
}

impl fmt::Display for SelftestSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "selftest: {} passed, {} failed",
            self.passed, self.failed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    #[test]
    fn section_summaries_written_are_parsed_back() {
        let s = SectionSummary {
            cpu: 1,
            count: 81234,
            irq_off_max_ns: 2140,
            stages_ns: [1500, 400, 240],
            at: "rt-partition/kernel/src/api.rs:212:9",
        };
        let line = s.to_string();
        assert_eq!(
            line,
            "sections cpu=1 count=81234 irq_off_max_ns=2140 decide_ns=1500 switch_ns=400 \
             resume_ns=240 at=rt-partition/kernel/src/api.rs:212:9"
        );
        assert!(line.starts_with(SectionSummary::PREFIX));
        assert_eq!(SectionSummary::parse(&line), Some(s));
        let irq = SectionSummary { at: "irq:32", ..s };
        assert_eq!(SectionSummary::parse(&irq.to_string()), Some(irq));
        assert_eq!(
            SectionSummary::parse(
                "sections cpu=1 count=1 irq_off_max_ns=2 decide_ns=2 switch_ns=0 resume_ns=0 at="
            ),
            None
        );
        assert_eq!(
            SectionSummary::parse(
                "sections cpu=1 count=1 irq_off_max_ns=2 decide_ns=2 switch_ns=0 resume_ns=0"
            ),
            None
        );
        assert_eq!(
            SectionSummary::parse("sections cpu=1 irq_off_max_ns=2 at=x"),
            None
        );
        // Without the stages.
        assert_eq!(
            SectionSummary::parse("sections cpu=1 count=1 irq_off_max_ns=2 at=x"),
            None
        );
        assert_eq!(
            SectionSummary::parse(
                "sections cpu=1 count=1 irq_off_max_ns=2 decide_ns=2 switch_ns=0 resume_ns=0 at=a b"
            ),
            None
        );
    }

    #[test]
    fn wake_path_summaries_written_are_parsed_back() {
        let s = WakePathSummary {
            cpu: 0,
            samples: 1000,
            avg_ns: [1, 2, 3, 4],
            max_ns: [5, 6, 7, 8],
        };
        let line = s.to_string();
        assert_eq!(
            line,
            "wake cpu=0 samples=1000 to_irq_ns=1 to_decision_ns=2 to_switch_ns=3 to_task_ns=4 max_to_irq_ns=5 max_to_decision_ns=6 max_to_switch_ns=7 max_to_task_ns=8"
        );
        assert!(line.starts_with(WakePathSummary::PREFIX));
        assert_eq!(WakePathSummary::parse(&line), Some(s));
        assert_eq!(s.total_avg_ns(), 10);
        assert_eq!(
            WakePathSummary::parse(&line.replace(" max_to_task_ns=8", "")),
            None
        );
        assert_eq!(WakePathSummary::parse(&std::format!("{line} x=1")), None);
    }

    #[test]
    fn cycle_summaries_written_are_parsed_back() {
        let summary = CycleSummary {
            source: "e1000",
            period_us: 1000,
            cycles: 10_000,
            answered: 9_998,
            late: 1,
            lost: 1,
            bad: 0,
            min_ns: 40_000,
            avg_ns: 52_000,
            max_ns: 90_000,
            p99_ns: 61_000,
            p999_ns: 80_000,
            irqs: 10_001,
            kernel_avg_ns: 11_000,
            kernel_max_ns: 40_000,
        };
        let line = summary.to_string();
        assert!(line.starts_with(CycleSummary::PREFIX));
        assert_eq!(CycleSummary::parse(&line), Some(summary));
        assert_eq!(
            CycleSummary::parse("frame-cycle source=e1000 period_us=1"),
            None
        );
        assert_eq!(CycleSummary::parse(&line.replace("lost=1", "lost=x")), None);
    }

    #[test]
    fn device_latency_summaries_written_are_parsed_back() {
        let summary = DeviceLatencySummary {
            source: "hpet",
            gsi: 20,
            samples: 5000,
            min_ns: 9000,
            avg_ns: 9500,
            max_ns: 21000,
            p99_ns: 10000,
            p999_ns: 12000,
            lost: 0,
            overflow: 0,
            kernel_avg_ns: 8000,
            kernel_max_ns: 15000,
        };
        let line = summary.to_string();
        assert!(line.starts_with(DeviceLatencySummary::PREFIX));
        assert_eq!(DeviceLatencySummary::parse(&line), Some(summary));
        assert_eq!(
            DeviceLatencySummary::parse("device-latency source=hpet gsi=20 samples=1"),
            None
        );
    }

    #[test]
    fn serial_summaries_written_are_parsed_back() {
        let summary = SerialSummary {
            port: 0x3e8,
            gsi: 4,
            rx: 12,
            tx: 12,
            overruns: 0,
            irqs: 5,
            unhandled: 0,
            irq_to_task_max_ns: 4200,
        };
        let line = summary.to_string();
        assert!(line.starts_with(SerialSummary::PREFIX));
        assert_eq!(SerialSummary::parse(&line), Some(summary));
        assert_eq!(SerialSummary::parse("serial: port=3e8 gsi=4 rx=1"), None);
    }

    #[test]
    fn control_summaries_written_are_parsed_back() {
        let s = ControlSummary {
            jobs: 20001,
            misses: 3,
            max_err_urad: 28524,
            mean_err_urad: 1547,
            max_job_ns: 2700,
        };
        let line = s.to_string();
        assert_eq!(
            line,
            "control: jobs=20001 misses=3 max_err_urad=28524 mean_err_urad=1547 max_job_ns=2700"
        );
        assert!(line.starts_with(ControlSummary::PREFIX));
        assert_eq!(ControlSummary::parse(&line), Some(s));
        assert_eq!(ControlSummary::parse("control: jobs=1 misses=x"), None);
    }

    #[test]
    fn histogram_lines_written_are_parsed_back() {
        let mut line = String::new();
        HistogramLine::write(
            &mut line,
            HistogramOwner::Cpu(1),
            [(14, 9995), (15, 3), (16, 2)],
        )
        .unwrap();
        assert_eq!(line, "histogram cpu=1 us:count=14:9995,15:3,16:2");
        let h = HistogramLine::parse(&line).unwrap();
        assert_eq!(h.owner, HistogramOwner::Cpu(1));
        assert_eq!(
            h.pairs().collect::<Vec<_>>(),
            [(14, 9995), (15, 3), (16, 2)]
        );
        let mut device = String::new();
        HistogramLine::write(&mut device, HistogramOwner::Device("hpet"), [(3, 1000)]).unwrap();
        assert_eq!(device, "histogram device=hpet us:count=3:1000");
        assert_eq!(
            HistogramLine::parse(&device).unwrap().owner,
            HistogramOwner::Device("hpet")
        );
        let mut long = String::new();
        HistogramLine::write(&mut long, HistogramOwner::Cpu(0), (0..30).map(|us| (us, 1))).unwrap();
        assert_eq!(
            HistogramLine::parse(&long).unwrap().pairs().count(),
            HistogramLine::MAX_PAIRS
        );
        for bad in [
            "histogram cpu=1 us:count=",
            "histogram cpu=1 us:count=14",
            "histogram cpu=1 us:count=14:1,",
            "histogram cpu=x us:count=14:1",
            "histogram device= us:count=14:1",
            "histogram port=3 us:count=14:1",
        ] {
            assert_eq!(HistogramLine::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn exit_reports_written_are_parsed_back() {
        let mut line = String::new();
        ExitReport::write(
            &mut line,
            1,
            Some(Partition::Rt),
            4,
            0,
            false,
            [("CPUID", 3), ("EPT_VIOLATION", 0), ("VMCALL", 1)],
        )
        .unwrap();
        assert_eq!(line, "exits: cpu 1 rt: total 4 new 0: CPUID=3 VMCALL=1");
        let r = ExitReport::parse(&line).unwrap();
        assert_eq!(
            (r.cpu, r.partition, r.total, r.new, r.at_stop),
            (1, Some(Partition::Rt), 4, 0, false)
        );
        assert_eq!(
            r.reasons().collect::<Vec<_>>(),
            [("CPUID", 3), ("VMCALL", 1)]
        );
        assert_eq!(r.count("VMCALL"), 1);
        assert_eq!(r.count("HLT"), 0);

        let mut line = String::new();
        ExitReport::write(&mut line, 0, Some(Partition::Linux), 9, 2, true, [("", 0)]).unwrap();
        assert_eq!(line, "  exits: cpu 0 linux: total 9 new 2:");
        let r = ExitReport::parse(&line).unwrap();
        assert!(r.at_stop);
        assert_eq!(r.reasons().count(), 0);

        let mut line = String::new();
        ExitReport::write(&mut line, 3, None, 0, 0, false, [("", 0)]).unwrap();
        assert_eq!(ExitReport::parse(&line).unwrap().partition, None);
    }

    #[test]
    fn malformed_exit_reports_are_none() {
        for line in [
            "exits: cpu x rt: total 4 new 0: CPUID=3",
            "exits: cpu 1 dom0: total 4 new 0: CPUID=3",
            "exits: cpu 1 rt: total 4 new 0 CPUID=3",
            "exits: cpu 1 rt: total 4 new 0: CPUID=three",
            "exits: cpu 1 rt: total 4 new 0: CPUID",
            "exits: cpu 1 rt: total 4 new 0: =3",
            "exit: cpu 1 rt: total 4 new 0:",
        ] {
            assert_eq!(ExitReport::parse(line), None, "{line}");
        }
    }

    #[test]
    fn refusal_reports_round_trip() {
        let mut line = String::new();
        RefusalReport::write(
            &mut line,
            Partition::Linux,
            [
                (Refusal::Hypercall, 2),
                (Refusal::Ipi, 0),
                (Refusal::Msr, 7),
            ],
        )
        .unwrap();
        assert_eq!(line, "refusals: linux: hypercall=2 msr=7");
        let r = RefusalReport::parse(&line).unwrap();
        assert_eq!(r.partition, Partition::Linux);
        assert_eq!(r.count(Refusal::Msr), 7);
        assert_eq!(r.count(Refusal::Port), 0);
        for bad in [
            "refusals: dom0: msr=1",
            "refusals: linux: msr=x",
            "refusals: linux: teleport=1",
            "refusals linux: msr=1",
        ] {
            assert_eq!(RefusalReport::parse(bad), None, "{bad}");
        }
        for kind in Refusal::ALL {
            assert_eq!(Refusal::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn latency_summaries_round_trip() {
        let s = LatencySummary {
            cpu: 1,
            samples: 2,
            min_ns: 1500,
            avg_ns: 2000,
            max_ns: 2500,
            p99_ns: 2500,
            p999_ns: 2500,
            misses: 3,
            overflow: 0,
        };
        let line = s.to_string();
        assert_eq!(
            line,
            "latency cpu=1 samples=2 min_ns=1500 avg_ns=2000 max_ns=2500 p99_ns=2500 p999_ns=2500 misses=3 overflow=0"
        );
        assert!(line.starts_with(LatencySummary::PREFIX));
        assert_eq!(LatencySummary::parse(&line), Some(s));
        assert_eq!(LatencySummary::parse(&std::format!("  {line}  ")), Some(s));
    }

    #[test]
    fn latency_summaries_cut_short_reordered_or_extended_are_none() {
        let line = LatencySummary::default().to_string();
        let cut = &line[..line.len() - " overflow=0".len()];
        assert_eq!(LatencySummary::parse(cut), None);
        assert_eq!(LatencySummary::parse(&std::format!("{line} extra=1")), None);
        let swapped = line.replace("min_ns", "MIN").replace("avg_ns", "min_ns");
        assert_eq!(LatencySummary::parse(&swapped), None);
        assert_eq!(
            LatencySummary::parse(&line.replace("cpu=0", "cpu=4294967296")),
            None
        );
    }

    #[test]
    fn selftest_summaries_round_trip() {
        let s = SelftestSummary {
            passed: 12,
            failed: 1,
        };
        assert_eq!(s.to_string(), "selftest: 12 passed, 1 failed");
        assert_eq!(SelftestSummary::parse(&s.to_string()), Some(s));
        assert_eq!(SelftestSummary::parse("selftest: 12 passed"), None);
        assert_eq!(SelftestSummary::parse("selftest: x passed, 0 failed"), None);
    }
}
