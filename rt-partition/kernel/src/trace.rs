//! What the kernel measures of itself on each CPU, once that CPU schedules:
//!
//! - **interrupts-off sections**: every stretch with interrupts disabled (a kernel entry from
//!   a task, an interrupt handler, a console copy), from the instruction that disabled them
//!   to the one that enables them again, whichever task that is after a switch. The longest
//!   one and where it began are kept: a source location (the [`IrqGuard`] that opened it,
//!   passed up through `#[track_caller]` to the API call or kernel function that asked) or
//!   an interrupt vector. Since every kernel entry runs with interrupts off, this bounds
//!   how late an interrupt, and the task it wakes, can be served on that CPU. The longest
//!   one's time is split at the kernel's scheduling decision and at the context switch (the
//!   stamps every kernel entry and switch leave), so a long one says what made it long.
//! - **the wake-up path**: the time stamps of the last timer interrupt's entry, the last
//!   scheduling decision and the last context switch, which the latency task, woken by that
//!   interrupt (whose decision and switch they then are), turns into a stage-by-stage
//!   breakdown (`bulkhead_rt_core::latency::WakePath`).
//!
//! Each CPU writes only its own entry, with interrupts off; other CPUs read it for reports.
//! What applications may read (the latency application's `trace=on` lines) is public:
//! [`longest_section_ns`], [`last_wake_ns`] and [`Site`].
//! The costs are a few TSC reads and stores per section; nothing here waits or locks.
//!
//! [`IrqGuard`]: crate::arch::IrqGuard

use core::fmt;
use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bulkhead_rt_core::latency::section_stages;

use crate::MAX_CPUS;
use crate::arch::rdtsc;

/// Where a section began, packed in one word: a `&'static Location` (at least 4-aligned, so
/// its low bit is clear) or an interrupt vector as `vector << 1 | 1`. 0 is "nowhere yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// A source location.
    Code(&'static Location<'static>),
    /// An interrupt handler.
    Interrupt(u8),
}

impl Site {
    fn pack(self) -> u64 {
        match self {
            Site::Code(location) => core::ptr::from_ref(location) as u64,
            Site::Interrupt(vector) => (u64::from(vector) << 1) | 1,
        }
    }

    fn unpack(word: u64) -> Option<Self> {
        match word {
            0 => None,
            w if w & 1 == 1 => Some(Site::Interrupt((w >> 1) as u8)),
            // SAFETY: an even nonzero word is only ever stored by `pack` from a
            // `&'static Location`, which lives for ever.
            w => Some(Site::Code(unsafe { &*(w as *const Location<'static>) })),
        }
    }
}

/// Without white space, as the section summary line wants it.
impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Code(location) => write!(f, "{}:{}", location.file(), location.line()),
            Site::Interrupt(vector) => write!(f, "irq:{vector}"),
        }
    }
}

/// One CPU's record (reached through `crate::percpu::current_trace`).
pub(crate) struct CoreTrace {
    /// This CPU schedules: its sections count.
    measuring: AtomicBool,
    /// TSC when interrupts went off, 0 while they are on (or not measured).
    off_since: AtomicU64,
    off_site: AtomicU64,
    sections: AtomicU64,
    longest_ticks: AtomicU64,
    longest_site: AtomicU64,
    /// The longest section's stages in ticks: to the decision, to the switch, to the end.
    longest_stages: [AtomicU64; 3],
    /// The last timer interrupt's entry, the last scheduling decision (any kernel entry's),
    /// and the last context switch (TSC).
    timer_entry: AtomicU64,
    decided: AtomicU64,
    switched: AtomicU64,
}

static TRACE: [CoreTrace; MAX_CPUS] = [const {
    CoreTrace {
        measuring: AtomicBool::new(false),
        off_since: AtomicU64::new(0),
        off_site: AtomicU64::new(0),
        sections: AtomicU64::new(0),
        longest_ticks: AtomicU64::new(0),
        longest_site: AtomicU64::new(0),
        longest_stages: [const { AtomicU64::new(0) }; 3],
        timer_entry: AtomicU64::new(0),
        decided: AtomicU64::new(0),
        switched: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// CPU `cpu`'s record (the last one for a number beyond the table).
pub(crate) fn of_cpu(cpu: usize) -> &'static CoreTrace {
    &TRACE[cpu.min(MAX_CPUS - 1)]
}

#[inline]
fn this() -> &'static CoreTrace {
    crate::percpu::current_trace()
}

/// This CPU starts scheduling: from now on its sections are measured.
pub(crate) fn start() {
    this().measuring.store(true, Ordering::Relaxed);
}

/// Interrupts just went off on this CPU at `site` (they were on).
#[inline]
pub(crate) fn irqs_off(site: Site) {
    begin(site, rdtsc());
}

/// An interrupt handler begins (interrupts are off since its delivery); the timer's entry
/// is also the start of its wake-up path. Returns the TSC (the handler's clock reading).
#[inline]
pub(crate) fn irq_entry(vector: u8) -> u64 {
    let now = rdtsc();
    let t = this();
    if vector == crate::arch::interrupts::TIMER_VECTOR {
        t.timer_entry.store(now, Ordering::Relaxed);
    }
    begin_at(t, Site::Interrupt(vector), now);
    now
}

/// A section begins at `site`, TSC `now`, if this CPU measures.
#[inline]
fn begin(site: Site, now: u64) {
    begin_at(this(), site, now);
}

#[inline]
fn begin_at(t: &CoreTrace, site: Site, now: u64) {
    if t.measuring.load(Ordering::Relaxed) {
        t.off_site.store(site.pack(), Ordering::Relaxed);
        t.off_since.store(now, Ordering::Relaxed);
    }
}

/// Interrupts are about to go on again on this CPU: the section ends.
#[inline]
pub(crate) fn irqs_on() {
    let t = this();
    let since = t.off_since.swap(0, Ordering::Relaxed);
    if since == 0 {
        return;
    }
    let end = rdtsc();
    let ticks = end.saturating_sub(since);
    t.sections.fetch_add(1, Ordering::Relaxed);
    if ticks > t.longest_ticks.load(Ordering::Relaxed) {
        t.longest_ticks.store(ticks, Ordering::Relaxed);
        t.longest_site
            .store(t.off_site.load(Ordering::Relaxed), Ordering::Relaxed);
        let stamps = [
            t.decided.load(Ordering::Relaxed),
            t.switched.load(Ordering::Relaxed),
        ];
        for (stage, ticks) in t.longest_stages.iter().zip(section_stages(since, stamps, end)) {
            stage.store(ticks, Ordering::Relaxed);
        }
    }
}

/// `irqs_on` for `task_start` (switch.S), the first code of every task.
#[unsafe(no_mangle)]
extern "C" fn rt_trace_irqs_on() {
    irqs_on();
}

/// Stamps a scheduling decision on this CPU (every kernel entry makes one).
#[inline]
pub(crate) fn decided() {
    this().decided.store(rdtsc(), Ordering::Relaxed);
}

/// Stamps a context switch on this CPU (just before it).
#[inline]
pub(crate) fn switching() {
    this().switched.store(rdtsc(), Ordering::Relaxed);
}

/// This CPU's last timer interrupt entry, its decision and the last switch (TSC values).
pub(crate) fn last_wake_stamps() -> [u64; 3] {
    let t = this();
    [
        t.timer_entry.load(Ordering::Relaxed),
        t.decided.load(Ordering::Relaxed),
        t.switched.load(Ordering::Relaxed),
    ]
}

/// This CPU's last timer interrupt entry, its decision and the last switch, in kernel
/// nanoseconds (0 before any).
pub fn last_wake_ns() -> [u64; 3] {
    last_wake_stamps().map(crate::arch::time::ns_at)
}

/// CPU `cpu`'s sections so far: how many, the longest in nanoseconds, where it began, and
/// its stages in nanoseconds (to the scheduling decision, to the switch, to the end).
pub fn longest_section_ns(cpu: usize) -> Section {
    let tsc = crate::arch::time::tsc();
    let mut section = longest_section(cpu);
    section.longest = tsc.ticks_to_ns(section.longest);
    section.stages = section.stages.map(|ticks| tsc.ticks_to_ns(ticks));
    section
}

/// CPU `cpu`'s sections so far, the longest one's times in TSC ticks.
fn longest_section(cpu: usize) -> Section {
    let Some(t) = TRACE.get(cpu) else {
        return Section::default();
    };
    Section {
        count: t.sections.load(Ordering::Relaxed),
        longest: t.longest_ticks.load(Ordering::Relaxed),
        stages: t.longest_stages.each_ref().map(|s| s.load(Ordering::Relaxed)),
        site: Site::unpack(t.longest_site.load(Ordering::Relaxed)),
    }
}

/// What a CPU measured of its interrupts-off sections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Section {
    /// Sections measured.
    pub count: u64,
    /// The longest one's length.
    pub longest: u64,
    /// Its stages: to the scheduling decision, from there to the switch, from there to its
    /// end (they add up to `longest`).
    pub stages: [u64; 3],
    /// Where it began.
    pub site: Option<Site>,
}
