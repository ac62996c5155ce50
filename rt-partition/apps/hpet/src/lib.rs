//! The HPET latency application: a device interrupt whose event time is known exactly, for
//! measuring device-interrupt latency the way cyclictest measures timer latency.
//!
//! `hpet=BASE@GSI` on the kernel command line (for example `hpet=0xfed00000@20`) names the
//! HPET's registers and the IOAPIC pin to route one of its comparators to; the config must
//! give the RT partition both (`mmio = [{ base = BASE, size = "4 KiB" }]` and the pin, as
//! `{ pin = GSI, trigger = "edge", polarity = "high" }`: the comparator interrupts by edge).
//! `hpet_period_us=N` sets the interval between events (default 1000, 100 to 1000000).
//!
//! The task (priority 85, on the partition's first CPU, where the line must be delivered)
//! enables the main counter, picks a comparator that can reach the pin, and then for every
//! event: sets the comparator to the counter plus one interval, waits for the line
//! (`bulkhead_rt::irq`), and reads the counter again. On a level-triggered line (the config's
//! `trigger = "level"`) the comparator interrupts by level, and the task clears its interrupt
//! status after each event, before it waits again (which ends the interrupt). Counter minus comparator is the time
//! from the device raising its interrupt to the handler task running: IOAPIC delivery, the
//! kernel's top half, the wake-up and the switch, in HPET ticks. An event whose interrupt
//! does not come within ten intervals is counted as lost. Once a second the CPU's report task
//! prints the cumulative histogram's summary,
//! `device-latency source=hpet gsi=20 samples=.. min_ns=.. avg_ns=.. max_ns=.. p99_ns=.. p999_ns=.. lost=.. overflow=.. kernel_avg_ns=.. kernel_max_ns=..`
//! (`bulkhead_abi::console::DeviceLatencySummary`), the last two being the kernel's share:
//! from its top half to the task (`bulkhead_rt::irq::LineStats`). With `trace=on` the
//! histogram itself follows, `histogram device=hpet us:count=..` lines
//! (`bulkhead_abi::console::HistogramLine`), which `cargo xtask bench irq` plots.

#![no_std]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bulkhead_abi::console::{DeviceLatencySummary, HistogramOwner};
use bulkhead_rt::api::{self, Timeout};
use bulkhead_rt::app::{App, Context, Cpu, STACK_BYTES, TaskDecl};
use bulkhead_rt::core_types::{Error, Once, Policy, SharedHistogram};
use bulkhead_rt::irq::{self, Attached};
use bulkhead_rt::report::{self, Published};
use bulkhead_rt::{mmio, println};

/// The application.
pub const APP: App = App {
    name: "hpet",
    tasks: &[TaskDecl {
        name: "hpet",
        cpu: Cpu::First,
        priority: 85,
        policy: Policy::Fifo,
        stack_bytes: STACK_BYTES,
        entry: task,
        arg: 0,
    }],
    init: Some(init),
    report: Some(print_latest),
};

/// The HPET's registers and the line, once `init` found both.
struct Hpet {
    base: u64,
    attached: Attached,
}

static HPET: Once<Hpet> = Once::new();
static PERIOD_NS: AtomicU64 = AtomicU64::new(1_000_000);
/// `trace=on`: the report prints the histogram too.
static TRACE: AtomicBool = AtomicBool::new(false);
/// Every event's latency, 1 µs buckets up to 1 ms: written by the task, read by the report.
static SAMPLES: SharedHistogram<1000> = SharedHistogram::new();

/// Register offsets and bits (IA-PC HPET specification 1.0a, 2.3).
mod reg {
    pub const CAPABILITIES: u64 = 0x000;
    pub const CONFIGURATION: u64 = 0x010;
    /// General interrupt status: a level-triggered comparator's bit, cleared by writing 1.
    pub const INTERRUPT_STATUS: u64 = 0x020;
    pub const MAIN_COUNTER: u64 = 0x0f0;
    pub const ENABLE: u64 = 1 << 0;
    pub const LEGACY_ROUTE: u64 = 1 << 1;

    pub const fn timer_config(n: u64) -> u64 {
        0x100 + 0x20 * n
    }
    pub const fn timer_comparator(n: u64) -> u64 {
        0x108 + 0x20 * n
    }
    /// Timer configuration: interrupt enable, level-triggered, 32-bit mode, route (bits
    /// 13:9); the route capability is the high dword.
    pub const TIMER_INTERRUPT_ENABLE: u64 = 1 << 2;
    pub const TIMER_LEVEL: u64 = 1 << 1;
    pub const TIMER_PERIODIC: u64 = 1 << 3;
    pub const TIMER_32BIT: u64 = 1 << 8;
    pub const TIMER_FSB: u64 = 1 << 14;
    pub const ROUTE_SHIFT: u64 = 9;
}

/// Parses `BASE@GSI` (the base in hex with `0x`).
fn parse(value: &str) -> Option<(u64, u32)> {
    let (base, gsi) = value.split_once('@')?;
    let base = u64::from_str_radix(base.strip_prefix("0x")?, 16).ok()?;
    Some((base, gsi.parse().ok()?))
}

/// Reads `hpet=BASE@GSI` and `hpet_period_us=` and attaches the line (init).
fn init(context: &Context<'static>) -> Result<(), Error> {
    let Some(value) = context.option("hpet") else {
        return Ok(());
    };
    let Some((base, gsi)) = parse(value).filter(|&(base, _)| base % 0x1000 == 0) else {
        println!(
            "hpet: option {value:?}: expected BASE@GSI with a page-aligned base, for example hpet=0xfed00000@20"
        );
        return Err(Error::InvalidArgument);
    };
    TRACE.store(context.option("trace") == Some("on"), Ordering::Relaxed);
    if let Some(us) = context.number(APP.name, "hpet_period_us", 100..=1_000_000)? {
        PERIOD_NS.store(us * 1000, Ordering::Relaxed);
    }
    // The task runs on CPU 0 (`Cpu::First`).
    if let Some(attached) = irq::attach_gsi(APP.name, gsi, 0)? {
        HPET.call_once(|| Hpet { base, attached });
    }
    Ok(())
}

/// The task's last counts: events lost, and the kernel's share (top half to task) on
/// average and at most.
static PUBLISHED: Published<3> = Published::new();

/// Prints the last summary (the report task of the measuring CPU, at the lowest priority:
/// the histogram's statistics scan every bucket, work the measuring task never does).
fn print_latest() {
    let (Some(hpet), Some([lost, kernel_avg_ns, kernel_max_ns])) = (HPET.get(), PUBLISHED.latest())
    else {
        return;
    };
    let histogram = SAMPLES.snapshot();
    let summary = DeviceLatencySummary {
        source: "hpet",
        gsi: hpet.attached.line().gsi(),
        samples: histogram.samples(),
        min_ns: histogram.min_ns().unwrap_or(0),
        avg_ns: histogram.average_ns().unwrap_or(0),
        max_ns: histogram.max_ns().unwrap_or(0),
        p99_ns: histogram.p99_ns().unwrap_or(0),
        p999_ns: histogram.p999_ns().unwrap_or(0),
        lost,
        overflow: histogram.overflow(),
        kernel_avg_ns,
        kernel_max_ns,
    };
    println!("{summary}");
    if TRACE.load(Ordering::Relaxed) {
        bulkhead_rt::report::print_histogram(HistogramOwner::Device("hpet"), &histogram);
    }
}

/// The HPET's registers at `base`.
struct Regs(u64);

impl Regs {
    fn read(&self, offset: u64) -> u64 {
        // SAFETY: the HPET's register page is the partition's (the config's `mmio`, mapped
        // uncached); every offset used here is an aligned 64-bit register of the page.
        unsafe { mmio::read_u64(self.0 + offset) }
    }

    fn write(&self, offset: u64, value: u64) {
        // SAFETY: as in `read`.
        unsafe { mmio::write_u64(self.0 + offset, value) }
    }
}

/// The measuring task.
extern "C" fn task(_: usize) {
    let Some(hpet) = HPET.get() else {
        return;
    };
    let regs = Regs(hpet.base);
    let capabilities = regs.read(reg::CAPABILITIES);
    let tick_fs = capabilities >> 32;
    if capabilities == u64::MAX || tick_fs == 0 || tick_fs > 100_000_000 {
        println!(
            "hpet: no HPET at {:#x} (capabilities {capabilities:#x})",
            hpet.base
        );
        return;
    }
    let gsi = hpet.attached.line().gsi();
    let timers = ((capabilities >> 8) & 0x1f) + 1;
    let Some(timer) = (0..timers).find(|&n| {
        let config = regs.read(reg::timer_config(n));
        gsi < 32 && (config >> 32) & (1 << gsi) != 0
    }) else {
        println!("hpet: none of its {timers} comparators can interrupt on IOAPIC pin {gsi}");
        return;
    };
    // Main counter on, legacy routing off; the comparator one-shot, 64-bit, by the line's
    // trigger mode, to the pin.
    let level = hpet.attached.line().level_triggered();
    let config = regs.read(reg::CONFIGURATION);
    regs.write(
        reg::CONFIGURATION,
        (config | reg::ENABLE) & !reg::LEGACY_ROUTE,
    );
    let timer_config = regs.read(reg::timer_config(timer))
        & !(reg::TIMER_LEVEL
            | reg::TIMER_PERIODIC
            | reg::TIMER_32BIT
            | reg::TIMER_FSB
            | 0x1f << reg::ROUTE_SHIFT);
    let trigger = if level { reg::TIMER_LEVEL } else { 0 };
    regs.write(
        reg::timer_config(timer),
        timer_config | trigger | reg::TIMER_INTERRUPT_ENABLE | u64::from(gsi) << reg::ROUTE_SHIFT,
    );
    let period_ns = PERIOD_NS.load(Ordering::Relaxed);
    let period_ticks = (period_ns * 1_000_000 / tick_fs).max(1);
    println!(
        "hpet: comparator {timer} of {timers} on IOAPIC pin {gsi} ({}), a tick is {} fs, an event every {} us",
        if level { "level" } else { "edge" },
        tick_fs,
        period_ns / 1000
    );

    let mut lost = 0u64;
    let mut next_report = api::now_ns().saturating_add(1_000_000_000);
    loop {
        let due = regs.read(reg::MAIN_COUNTER).wrapping_add(period_ticks);
        regs.write(reg::timer_comparator(timer), due);
        let deadline = api::now_ns().saturating_add(10 * period_ns);
        match hpet.attached.wait(Timeout::Until(deadline)) {
            Ok(_) => {
                let now = regs.read(reg::MAIN_COUNTER);
                let ticks = now.wrapping_sub(due);
                // A counter before the comparator would be a spurious wake-up.
                if ticks < period_ticks {
                    SAMPLES.record(ticks * tick_fs / 1_000_000);
                }
                if level {
                    // Quiet the comparator before the next wait ends its interrupt.
                    regs.write(reg::INTERRUPT_STATUS, 1 << timer);
                }
            }
            Err(Error::TimedOut) => lost += 1,
            Err(e) => {
                println!("hpet: waiting for the line failed: {e}");
                return;
            }
        }
        let now = api::now_ns();
        if now >= next_report {
            next_report = next_report.saturating_add(1_000_000_000).max(now);
            let kernel = hpet.attached.stats();
            PUBLISHED.publish(&[lost, kernel.latency_avg_ns, kernel.latency_max_ns]);
            report::request(APP.name);
        }
    }
}
