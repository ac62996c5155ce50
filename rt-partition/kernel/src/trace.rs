//! What the kernel measures of itself on each CPU, once that CPU schedules:
//!
//! - **interrupts-off sections**: every stretch with interrupts disabled (a kernel entry from
//!   a task, an interrupt handler, a console copy), from the instruction that disabled them
//!   to the one that enables them again, whichever task that is after a switch. The longest
//!   one and where it began are kept: a source location (the [`IrqGuard`] that opened it,
//!   passed up through `#[track_caller]` to the API call or kernel function that asked) or
//!   an interrupt vector. Since every kernel entry runs with interrupts off, this bounds
//!   how late an interrupt, and the task it wakes, can be served on that CPU.
//! - **the wake-up path**: the time stamps of the last timer interrupt's entry, its
//!   scheduling decision and the context switch it made, which the latency task, woken by
//!   that interrupt, turns into a stage-by-stage breakdown
//!   (`bulkhead_rt_core::latency::WakePath`).
//!
//! Each CPU writes only its own entry, with interrupts off; other CPUs read it for reports.
//! What applications may read (the latency application's `trace=on` lines) is public:
//! [`longest_section_ns`], [`last_wake_ns`] and [`Site`].
//! The costs are a TSC read and a few stores per section; nothing here waits or locks.
//!
//! [`IrqGuard`]: crate::arch::IrqGuard

use core::fmt;
use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

struct CoreTrace {
    /// This CPU schedules: its sections count.
    measuring: AtomicBool,
    /// TSC when interrupts went off, 0 while they are on (or not measured).
    off_since: AtomicU64,
    off_site: AtomicU64,
    sections: AtomicU64,
    longest_ticks: AtomicU64,
    longest_site: AtomicU64,
    /// The last timer interrupt's entry, its decision, and the last context switch (TSC).
    timer_entry: AtomicU64,
    timer_decided: AtomicU64,
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
        timer_entry: AtomicU64::new(0),
        timer_decided: AtomicU64::new(0),
        switched: AtomicU64::new(0),
    }
}; MAX_CPUS];

#[inline]
fn this() -> &'static CoreTrace {
    &TRACE[crate::percpu::current_index()]
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

/// An interrupt handler begins (interrupts are off since its delivery); returns the TSC.
#[inline]
pub(crate) fn irq_entry(vector: u8) -> u64 {
    let now = rdtsc();
    begin(Site::Interrupt(vector), now);
    now
}

/// A section begins at `site`, TSC `now`, if this CPU measures.
#[inline]
fn begin(site: Site, now: u64) {
    let t = this();
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
    let ticks = rdtsc().saturating_sub(since);
    t.sections.fetch_add(1, Ordering::Relaxed);
    if ticks > t.longest_ticks.load(Ordering::Relaxed) {
        t.longest_ticks.store(ticks, Ordering::Relaxed);
        t.longest_site
            .store(t.off_site.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// `irqs_on` for `task_start` (switch.S), the first code of every task.
#[unsafe(no_mangle)]
extern "C" fn rt_trace_irqs_on() {
    irqs_on();
}

/// Stamps the timer interrupt's entry (`entry`, from [`irq_entry`]) and its scheduling
/// decision (now).
#[inline]
pub(crate) fn timer_decided(entry: u64) {
    let t = this();
    t.timer_entry.store(entry, Ordering::Relaxed);
    t.timer_decided.store(rdtsc(), Ordering::Relaxed);
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
        t.timer_decided.load(Ordering::Relaxed),
        t.switched.load(Ordering::Relaxed),
    ]
}

/// This CPU's last timer interrupt entry, its decision and the last switch, in kernel
/// nanoseconds (0 before any).
pub fn last_wake_ns() -> [u64; 3] {
    last_wake_stamps().map(crate::arch::time::ns_at)
}

/// CPU `cpu`'s sections so far: how many, the longest in nanoseconds, and where it began.
pub fn longest_section_ns(cpu: usize) -> (u64, u64, Option<Site>) {
    let (count, ticks, site) = longest_section(cpu);
    (count, crate::arch::time::tsc().ticks_to_ns(ticks), site)
}

/// CPU `cpu`'s sections so far: how many, the longest in TSC ticks, and where it began.
pub(crate) fn longest_section(cpu: usize) -> (u64, u64, Option<Site>) {
    let Some(t) = TRACE.get(cpu) else {
        return (0, 0, None);
    };
    (
        t.sections.load(Ordering::Relaxed),
        t.longest_ticks.load(Ordering::Relaxed),
        Site::unpack(t.longest_site.load(Ordering::Relaxed)),
    )
}
