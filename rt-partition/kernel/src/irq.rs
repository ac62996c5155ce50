//! Device interrupts: the RT partition's device lines and the threaded handlers that serve
//! them.
//!
//! The hypervisor gives the partition its IOAPIC pins as *lines* (the boot information's
//! line table): line `i` arrives with vector `vectors::DEVICE_FIRST + i` on the RT CPU the
//! line names, straight into this kernel's IDT, with no VM exit. Each line starts masked.
//!
//! A driver takes a line in its application's `init` with [`attach`], and its handler task
//! (a task of the application, on the line's CPU, at the priority the driver wants) loops on
//! [`Attached::wait`], then talks to its device. The kernel's part of an interrupt (the *top
//! half*, in the interrupt itself) is short and the same for every device: end the
//! interrupt at the local APIC, count it, stamp the time of the first interrupt the handler
//! has not seen yet, and wake the handler task if it waits: the line remembers which task
//! waits on it, so the wake-up is a direct hand-off to the scheduler (no object to search,
//! no waiter list to scan). The handler's CPU owns all of this: the top half and the waits
//! run on it with interrupts off, so nothing here is shared between CPUs. [`attach`] unmasks the line (the `LINE` hypercall: one
//! VM exit, at start-up, before any CPU takes interrupts: an interrupt that comes early
//! waits in its CPU's local APIC until the CPU schedules); after that, interrupts cost no
//! exit.
//!
//! A line that fires with no handler attached is counted as unhandled and masked again
//! (that one costs an exit), never a crash.
//!
//! A level-triggered line (PCI INTx) keeps asserting until its device is quieted, which only
//! its driver knows how to do. So its interrupt is not ended at the local APIC in the top
//! half: it stays in service while the handler task runs, and ends when the handler waits
//! again ([`Attached::wait`]), by which time the driver has quieted the device; the EOI then
//! also tells the IOAPIC that the line may fire again. Meanwhile the local APIC holds off the
//! other device lines of that CPU (they share a priority class below the kernel's own
//! vectors, `bulkhead_abi::vectors`): the timer and the IPIs still arrive. A handler of a
//! level-triggered line must therefore come back to `wait` soon.
//!
//! Booted bare (no hypervisor), the kernel programs the IOAPIC itself: the command line's
//! `lines=` names the pins (`bulkhead_abi::rt_boot::parse_bare_lines`), delivered to the boot
//! CPU, and masking is a write of the pin's entry instead of a hypercall.
//!
//! Per line the kernel keeps: interrupts taken, unhandled ones, handler wake-ups, and the
//! time from the top half to the handler task running as a histogram of 1 us buckets, for
//! [`Attached::stats`] and [`Attached::latency_histogram`]. The handler task writes them,
//! anyone may read them (atomics, no lock).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bulkhead_abi::hypercall::Hypercall;
use bulkhead_abi::rt_boot::{LineInfo, MAX_LINES};
use bulkhead_rt_core::clock::Sleep;
use bulkhead_rt_core::latency::{Histogram, SharedHistogram};
use bulkhead_rt_core::{Error, Resched, Switch, TaskId, Timeout};
use spin::Once;

use crate::api;
use crate::arch::{rdtsc, time};
use crate::boot::IoApic;
use crate::sched::{self, State};

/// The tag a handler task parks with (plus the line's index), for what the kernel shows of
/// blocked tasks.
const PARK_TAG: u32 = 0x1_0000;

/// What the kernel keeps for one line.
struct LineState {
    info: Once<LineInfo>,
    /// Bare mode: the pin's IOAPIC registers, its index there, and the APIC ID it goes to.
    bare: Once<BarePin>,
    /// Set once a driver attached the line.
    attached: AtomicBool,
    /// The task waiting for the line, as its index plus one; 0 when none (the line's CPU
    /// only, interrupts off).
    waiter: AtomicU32,
    /// Interrupts taken while attached; `seen` of them the handler has been told of.
    fired: AtomicU64,
    seen: AtomicU64,
    unhandled: AtomicU64,
    /// TSC of the first interrupt the handler has not seen yet; 0 when none.
    pending_since: AtomicU64,
    /// A level-triggered line's interrupt is in service at the local APIC, its end owed
    /// until the handler waits again (the line's CPU only).
    eoi_owed: AtomicBool,
    wakeups: AtomicU64,
    /// Top half to task, in 1 us buckets (`latency::NANOS_PER_BUCKET`), and beyond them;
    /// written by the line's handler task only.
    latency: SharedHistogram<LINE_BUCKETS>,
}

/// The per-line latency histogram's buckets: 1 us each, up to this many microseconds.
pub const LINE_BUCKETS: usize = 200;

static LINES: [LineState; MAX_LINES] = [const {
    LineState {
        info: Once::new(),
        bare: Once::new(),
        attached: AtomicBool::new(false),
        waiter: AtomicU32::new(0),
        fired: AtomicU64::new(0),
        seen: AtomicU64::new(0),
        unhandled: AtomicU64::new(0),
        pending_since: AtomicU64::new(0),
        eoi_owed: AtomicBool::new(false),
        wakeups: AtomicU64::new(0),
        latency: SharedHistogram::new(),
    }
}; MAX_LINES];

/// Records the lines of the boot information (boot CPU, before any task). Bare
/// (`ioapics` given: the MADT's), also programs each line's IOAPIC entry, masked, to the CPU
/// with APIC ID `boot_apic_id`; a pin no IOAPIC has is reported and left out.
pub fn init(lines: &[LineInfo], ioapics: Option<&[IoApic]>, boot_apic_id: u32) {
    for (state, info) in LINES.iter().zip(lines) {
        if let Some(ioapics) = ioapics {
            let Some(pin) = BarePin::find(ioapics, info.gsi, boot_apic_id) else {
                log::warn!(
                    "lines=: IOAPIC pin {} is on no IOAPIC of this machine",
                    info.gsi
                );
                continue;
            };
            pin.write(info, true);
            state.bare.call_once(|| pin);
        }
        state.info.call_once(|| *info);
        log::info!(
            "line {}: IOAPIC pin {} on CPU {}, vector {}, {} {}",
            info.vector - bulkhead_abi::vectors::DEVICE_FIRST,
            info.gsi,
            info.cpu,
            info.vector,
            if info.level_triggered() {
                "level"
            } else {
                "edge"
            },
            if info.active_low() {
                "active low"
            } else {
                "active high"
            }
        );
    }
}

/// A pin the kernel programs itself (bare mode).
#[derive(Debug, Clone, Copy)]
struct BarePin {
    ioapic: u64,
    pin: u8,
    apic_id: u32,
}

/// The IOAPICs' select-then-access register pairs are not split between CPUs.
static IOAPIC_LOCK: spin::Mutex<()> = spin::Mutex::new(());

impl BarePin {
    fn find(ioapics: &[IoApic], gsi: u32, apic_id: u32) -> Option<BarePin> {
        ioapics.iter().find_map(|io| {
            let pin = gsi.checked_sub(io.gsi_base)?;
            // The version register's bits 23:16 are the highest pin's index.
            let pins = (Self::read(io.address, 1) >> 16 & 0xff) + 1;
            (pin < pins && apic_id <= 0xff).then_some(BarePin {
                ioapic: io.address,
                pin: pin as u8,
                apic_id,
            })
        })
    }

    fn read(ioapic: u64, register: u8) -> u32 {
        let _guard = IOAPIC_LOCK.lock();
        // SAFETY: bare, the kernel owns the machine's IOAPICs (the MADT's addresses, in the
        // uncached top GiB it identity-maps); selecting a register and reading the window has
        // no other effect, and the lock keeps the pair together.
        unsafe {
            core::ptr::write_volatile(ioapic as *mut u32, u32::from(register));
            core::ptr::read_volatile((ioapic + 0x10) as *const u32)
        }
    }

    /// Writes `line`'s entry for this pin, high dword first.
    fn write(&self, line: &LineInfo, masked: bool) {
        let (low, high) = line.ioapic_entry(self.apic_id, masked);
        let index = 0x10 + 2 * self.pin;
        let _guard = IOAPIC_LOCK.lock();
        for (register, value) in [(index + 1, high), (index, low)] {
            // SAFETY: as in `read`; the entry is one of this kernel's lines.
            unsafe {
                core::ptr::write_volatile(self.ioapic as *mut u32, u32::from(register));
                core::ptr::write_volatile((self.ioapic + 0x10) as *mut u32, value);
            }
        }
    }
}

/// A device line of the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    index: usize,
    info: LineInfo,
}

impl Line {
    /// The line that carries IOAPIC pin `gsi`, if the partition has it.
    pub fn for_gsi(gsi: u32) -> Option<Line> {
        LINES.iter().enumerate().find_map(|(index, state)| {
            let info = *state.info.get()?;
            (info.gsi == gsi).then_some(Line { index, info })
        })
    }

    /// Line `index` of the partition's line table, if it has that many.
    pub fn at(index: usize) -> Option<Line> {
        let info = *LINES.get(index)?.info.get()?;
        Some(Line { index, info })
    }

    /// The RT CPU its interrupts arrive on: the handler task must run there.
    pub fn cpu(&self) -> usize {
        usize::from(self.info.cpu)
    }

    /// Its IOAPIC pin.
    pub fn gsi(&self) -> u32 {
        self.info.gsi
    }

    /// Its index in the partition's line table.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether it is level-triggered (its interrupt ends when the handler waits again).
    pub fn level_triggered(&self) -> bool {
        self.info.level_triggered()
    }
}

/// A line with a handler: what [`attach`] returns to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    line: Line,
}

/// What the kernel counted for a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineStats {
    /// Interrupts the line delivered to its handler.
    pub fired: u64,
    /// Interrupts that arrived with no handler attached (the line was masked again).
    pub unhandled: u64,
    /// Times the handler task woke for the line.
    pub wakeups: u64,
    /// Top half to handler task running, over the wake-ups that followed an interrupt
    /// (nanoseconds; 0 without any): how many, minimum, maximum, mean, 99th and 99.9th
    /// percentiles (upper edges of 1 us buckets; see [`Attached::latency_histogram`]).
    pub latency_samples: u64,
    pub latency_min_ns: u64,
    pub latency_max_ns: u64,
    pub latency_avg_ns: u64,
    pub latency_p99_ns: u64,
    pub latency_p999_ns: u64,
}

/// Makes `line`'s handler the tasks of its CPU that call [`Attached::wait`], and unmasks it
/// (an application's `init`). [`Error::InvalidArgument`] for a line already attached.
pub fn attach(line: Line) -> Result<Attached, Error> {
    let state = &LINES[line.index];
    if state.attached.swap(true, Ordering::AcqRel) {
        return Err(Error::InvalidArgument);
    }
    set_masked(line.index, false);
    Ok(Attached { line })
}

/// What a driver's `init` does for the device whose interrupt is IOAPIC pin `gsi`, handled by
/// a task on CPU `task_cpu`: finds the line and [`attach`]es it. `Ok(None)`, after a line
/// saying so (prefixed `driver:`), when the partition has no such line (a config without the
/// pin, or a bare kernel without it in `lines=`): the driver then does nothing. An error,
/// after a line naming the cause, when the line goes to another CPU or cannot be attached.
pub fn attach_gsi(driver: &str, gsi: u32, task_cpu: usize) -> Result<Option<Attached>, Error> {
    let Some(line) = Line::for_gsi(gsi) else {
        crate::println!(
            "{driver}: IOAPIC pin {gsi} is not a line of the RT partition (the config's RT ioapic_pins, or lines= when booted bare)"
        );
        return Ok(None);
    };
    if line.cpu() != task_cpu {
        crate::println!(
            "{driver}: line {} (IOAPIC pin {gsi}) arrives on CPU {}, but the driver's task runs on CPU {task_cpu}",
            line.index(),
            line.cpu()
        );
        return Err(Error::InvalidArgument);
    }
    attach(line).map(Some).inspect_err(|e| {
        crate::println!("{driver}: IOAPIC pin {gsi}: cannot attach: {e} (a line is attached once)");
    })
}

impl Attached {
    /// The line.
    pub fn line(&self) -> Line {
        self.line
    }

    /// Waits for the line's next interrupt (or returns at once if one came since the last
    /// wait); returns how many interrupts the line took since then. Only a task of the line's
    /// CPU may wait ([`Error::OtherCore`]). On a level-triggered line, waiting first ends the
    /// interrupt the handler was woken for: its device must be quiet by then.
    #[track_caller]
    pub fn wait(&self, timeout: Timeout) -> Result<u64, Error> {
        let state = &LINES[self.line.index];
        if api::cpu() != self.line.cpu() {
            return Err(Error::OtherCore);
        }
        if state.eoi_owed.swap(false, Ordering::Relaxed) {
            // Only this line's vector is in service on this CPU now: every interrupt of a
            // higher class ended in its handler, and the other lines cannot be delivered.
            crate::arch::apic::eoi();
        }
        // Each pass either finds an interrupt not yet seen, or waits (parked, or asleep until
        // the deadline) as the line's waiter; the top half wakes the waiter. A wake-up that
        // is not the line's (the deadline, a stale wake) just leads to the next pass.
        let tag = PARK_TAG + self.line.index as u32;
        let pending = || state.fired.load(Ordering::Relaxed) != state.seen.load(Ordering::Relaxed);
        // Seen without entering the kernel (after a wake-up, the usual case); only a wait
        // needs the kernel, where the check is made again with interrupts off.
        while !pending() {
            let pending = sched::enter(|kernel_state, core, now| {
                let pending = pending();
                let task = kernel_state.kernel.current(core);
                match (pending, task, timeout) {
                    (true, _, _) => (Ok(true), Resched::NONE, Switch::Stay),
                    (false, _, Timeout::NonBlocking) => {
                        (Err(Error::WouldBlock), Resched::NONE, Switch::Stay)
                    }
                    (false, Err(e), _) => (Err(e), Resched::NONE, Switch::Stay),
                    (false, Ok(task), Timeout::Forever) => {
                        state
                            .waiter
                            .store(task.index() as u32 + 1, Ordering::Relaxed);
                        let switch = kernel_state
                            .kernel
                            .block_current(core, tag, now)
                            .unwrap_or(Switch::Stay);
                        (Ok(false), Resched::NONE, switch)
                    }
                    (false, Ok(task), Timeout::Until(deadline)) => {
                        match kernel_state.kernel.sleep_until(core, deadline, now) {
                            Ok(Sleep::Asleep(resched)) => {
                                state
                                    .waiter
                                    .store(task.index() as u32 + 1, Ordering::Relaxed);
                                (Ok(false), resched, Switch::Stay)
                            }
                            Ok(Sleep::Elapsed) => {
                                state.waiter.store(0, Ordering::Relaxed);
                                (Err(Error::TimedOut), Resched::NONE, Switch::Stay)
                            }
                            Err(e) => (Err(e), Resched::NONE, Switch::Stay),
                        }
                    }
                }
            })?;
            if pending {
                break;
            }
        }
        let since = state.pending_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            let ns = time::tsc().ticks_to_ns(rdtsc().saturating_sub(since));
            state.latency.record(ns);
        }
        state.wakeups.fetch_add(1, Ordering::Relaxed);
        let fired = state.fired.load(Ordering::Relaxed);
        let seen = state.seen.swap(fired, Ordering::Relaxed);
        Ok(fired.wrapping_sub(seen))
    }

    /// What the kernel counted for the line so far.
    pub fn stats(&self) -> LineStats {
        stats_of(self.line.index)
    }

    /// The line's top-half-to-task latency histogram so far (1 us buckets up to
    /// [`LINE_BUCKETS`] us).
    pub fn latency_histogram(&self) -> Histogram<LINE_BUCKETS> {
        histogram_of(self.line.index)
    }
}

fn stats_of(index: usize) -> LineStats {
    let state = &LINES[index];
    let histogram = histogram_of(index);
    LineStats {
        fired: state.fired.load(Ordering::Relaxed),
        unhandled: state.unhandled.load(Ordering::Relaxed),
        wakeups: state.wakeups.load(Ordering::Relaxed),
        latency_samples: histogram.samples(),
        latency_min_ns: histogram.min_ns().unwrap_or(0),
        latency_max_ns: histogram.max_ns().unwrap_or(0),
        latency_avg_ns: histogram.average_ns().unwrap_or(0),
        latency_p99_ns: histogram.p99_ns().unwrap_or(0),
        latency_p999_ns: histogram.p999_ns().unwrap_or(0),
    }
}

fn histogram_of(index: usize) -> Histogram<LINE_BUCKETS> {
    LINES[index].latency.snapshot()
}

/// Masks or unmasks line `index`: through the hypervisor (one VM exit), or bare by writing
/// its IOAPIC entry.
fn set_masked(index: usize, masked: bool) {
    let Some(state) = LINES.get(index) else {
        return;
    };
    if let (Some(pin), Some(info)) = (state.bare.get(), state.info.get()) {
        pin.write(info, masked);
        return;
    }
    let answer = crate::arch::cpu::hypercall(Hypercall::Line {
        line: Some(index as u16),
        unmask: !masked,
    });
    if let Some(answer) = answer
        && !answer.is_ok_and(|s| s.is_success())
    {
        log::warn!(
            "line {index}: the hypervisor refused to {} it ({answer:?})",
            if masked { "mask" } else { "unmask" },
        );
    }
}

/// The top half of line `index`'s interrupt on this CPU (its state held, interrupts off):
/// end the interrupt at the local APIC (an attached level-triggered line's is owed until its
/// handler waits again), count, stamp, and wake the handler if it waits.
pub fn top_half(state: &mut State, index: usize, now: u64) -> Resched {
    let Some(line) = LINES.get(index) else {
        crate::arch::apic::eoi();
        return Resched::NONE;
    };
    if !line.attached.load(Ordering::Relaxed) {
        crate::arch::apic::eoi();
        line.unhandled.fetch_add(1, Ordering::Relaxed);
        set_masked(index, true);
        return Resched::NONE;
    }
    if line.info.get().is_some_and(LineInfo::level_triggered) {
        line.eoi_owed.store(true, Ordering::Relaxed);
    } else {
        crate::arch::apic::eoi();
    }
    line.fired.fetch_add(1, Ordering::Relaxed);
    if line.pending_since.load(Ordering::Relaxed) == 0 {
        line.pending_since.store(rdtsc(), Ordering::Relaxed);
    }
    match line.waiter.swap(0, Ordering::Relaxed) {
        0 => Resched::NONE,
        waiter => state
            .kernel
            .wake(TaskId::new((waiter - 1) as u16), now)
            .map_or(Resched::NONE, Resched::from),
    }
}
