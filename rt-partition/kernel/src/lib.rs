//! The Bulkhead RT partition kernel, as a library that the image crate
//! (`rt-partition/image`) links with its applications ([`app`]) into one multiboot2 ELF,
//! linked identity-mapped at 1 MiB, that boots two ways (see
//! `bulkhead_abi::rt_boot` for the entry protocol): alone from GRUB ("bare", to measure the same
//! code without the hypervisor), or in the RT partition, entered by the hypervisor on every
//! partition CPU. The boot is a straight line; anything that fails ends in one `FATAL:`
//! line and `bulkhead-rt: halted`:
//!
//! 1. every CPU: its boot stack, long mode, descriptor tables, IDT, per-CPU pointer;
//! 2. the boot CPU: the facts (multiboot2 + ACPI MADT, or the validated `RtBootInfo`), the
//!    console, the TSC frequency, the local APIC and timer modes, the kernel's own tasks and
//!    objects (`tasks/`), then the applications' (their `init`, then their tasks);
//! 3. the other CPUs: started with INIT-SIPI-SIPI (bare) or already entered (hypervisor),
//!    each initialises its local APIC and waits for the go;
//! 4. every CPU schedules: its boot context becomes its idle task.
//!
//! Scheduling policy, timers and synchronisation are `bulkhead-rt-core`'s; `sched.rs` wires
//! them to the hardware. What applications use: [`api`] (what tasks call), [`channels`]
//! (the channels to Linux), [`irq`], [`pci`], [`mmio`] and [`port`] (device lines, PCI
//! functions and registers, for drivers), [`report`] (printing at the lowest priority),
//! [`app`] (what an application declares), [`println!`], and `bulkhead-rt-core`'s types
//! ([`core_types`]).
#![no_std]

pub mod api;
pub mod app;
mod arch;
mod boot;
pub mod channels;
mod console;
pub mod irq;
pub mod pci;
mod percpu;
mod sched;
mod smp;
mod tasks;
pub mod trace;

/// What an application's task publishes and has printed by its CPU's report task, at the
/// lowest priority: [`Published`](report::Published) records (written without waiting) and
/// [`request`](report::request); the report period (`latency_report_s=`); and what the
/// kernel publishes of itself for reports: every CPU's tasks as their report tasks last
/// published them when asked ([`request_task_snapshots`](report::request_task_snapshots),
/// [`task_snapshot`](report::task_snapshot)) and a [`TextBuf`](report::TextBuf) to format a
/// line in without allocating.
pub mod report {
    pub use crate::console::TextBuf;
    pub use crate::sched::{MAX_TASKS, task_snapshot};
    pub use crate::tasks::report::{
        Published, period_ns, print_histogram, request, request_task_snapshots,
    };
}



/// The core crate's types an application meets: policies, priorities, errors, periodic
/// releases, timeouts, flag conditions; and [`Once`](core_types::Once), for a handle made in
/// an application's `init` and read by its tasks.
pub mod core_types {
    pub use spin::Once;
    pub use bulkhead_rt_core::clock::Periodic;
    pub use bulkhead_rt_core::latency::{Histogram, NANOS_PER_BUCKET, SharedHistogram, WakePath};
    pub use bulkhead_rt_core::sync::{FlagsCondition, FlagsMode, Received};
    pub use bulkhead_rt_core::{Error, Policy, Priority, Timeout};
}

/// Register access for drivers of the device memory the partition owns (the config's RT
/// `mmio` ranges and its PCI functions' memory BARs, which the kernel maps uncached at their
/// physical addresses): each access is one volatile load or store of its width.
pub mod mmio {
    /// Reads the 64-bit register at physical address `address`.
    ///
    /// # Safety
    /// `address` must be 8-byte aligned, inside a device range the partition owns, and reading
    /// it must be what the driver means (reads may have side effects).
    pub unsafe fn read_u64(address: u64) -> u64 {
        // SAFETY: forwarded to the caller; the kernel identity-maps the top GiB uncached.
        unsafe { core::ptr::read_volatile(address as *const u64) }
    }

    /// Reads the 32-bit register at physical address `address`.
    ///
    /// # Safety
    /// As [`read_u64`], 4-byte aligned.
    pub unsafe fn read_u32(address: u64) -> u32 {
        // SAFETY: forwarded to the caller; the kernel identity-maps the top GiB uncached.
        unsafe { core::ptr::read_volatile(address as *const u32) }
    }

    /// Writes the 32-bit register at physical address `address`.
    ///
    /// # Safety
    /// As [`read_u32`], for a write.
    pub unsafe fn write_u32(address: u64, value: u32) {
        // SAFETY: forwarded to the caller.
        unsafe { core::ptr::write_volatile(address as *mut u32, value) }
    }

    /// Writes the 64-bit register at physical address `address`.
    ///
    /// # Safety
    /// As [`read_u64`], for a write.
    pub unsafe fn write_u64(address: u64, value: u64) {
        // SAFETY: forwarded to the caller.
        unsafe { core::ptr::write_volatile(address as *mut u64, value) }
    }
}

/// Port I/O for drivers of the devices the partition owns: the config's RT `io_ports` pass
/// straight through (no VM exit); any other port exits to the hypervisor, which refuses it.
pub use bulkhead_x86::port;

/// [`println!`]'s way to the console (not for direct use).
#[doc(hidden)]
pub fn __console_line(args: fmt::Arguments<'_>) {
    console::write_line(args);
}

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bulkhead_abi::hypercall::Hypercall;
use bulkhead_abi::rt_boot::MULTIBOOT2_MAGIC;
use spin::Once;

use arch::apic::{self, TimerMode};
use arch::{halt_forever, interrupts, time};
use boot::{Facts, Mode, Options};

/// Most CPUs the kernel runs on: the ABI's limit, which the config tool enforces.
pub const MAX_CPUS: usize = bulkhead_abi::limits::MAX_RT_CPUS;

static FACTS: Once<Facts> = Once::new();

/// Whether the Bulkhead hypervisor entered the kernel (else GRUB did: bare mode).
pub fn under_hypervisor() -> bool {
    FACTS.get().is_some_and(|f| f.mode == Mode::Hypervisor)
}
/// The boot CPU has set up what every CPU needs (clock, APIC modes, tasks).
static SHARED_READY: AtomicBool = AtomicBool::new(false);
/// Every CPU may start scheduling.
static GO: AtomicBool = AtomicBool::new(false);
/// CPUs that have started scheduling.
static ONLINE: AtomicUsize = AtomicUsize::new(0);

/// Prints `FATAL: ...` and `bulkhead-rt: halted`, and halts this CPU.
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if !REPORTED.swap(true, Ordering::AcqRel) {
        console::fatal_block(|w| {
            writeln!(w, "FATAL: {args}")?;
            writeln!(w, "{}", bulkhead_abi::console::RT_HALTED)
        });
    }
    halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let cpu = percpu::current_index();
    console::fatal_block(|w| {
        writeln!(w, "PANIC: cpu {cpu}: {info}")?;
        writeln!(w, "cpu {cpu} halted")
    });
    halt_forever()
}

/// Rust entry of every CPU, called by arch/boot.S in long mode on the CPU's boot stack.
#[unsafe(no_mangle)]
extern "C" fn rt_entry(magic: u32, info: u32, index: u32) -> ! {
    let index = index as usize;
    percpu::set_current(index);
    arch::cpu::load_for_cpu(index);
    interrupts::load_idt();
    if index == 0 {
        boot_cpu(magic, info as usize)
    }
    smp::signal_alive(index);
    secondary_cpu(index)
}

/// Rust entry of an AP started by `smp::start_ap` (bare mode).
extern "C" fn ap_entry(index: u64) -> ! {
    let index = index as usize;
    percpu::set_current(index);
    arch::cpu::load_for_cpu(index);
    interrupts::load_idt();
    smp::signal_alive(index);
    secondary_cpu(index)
}

fn boot_cpu(magic: u32, info: usize) -> ! {
    let bare = magic == MULTIBOOT2_MAGIC;
    if bare {
        console::init(Some(console::COM1), true);
        println!("bulkhead-rt {} starting (bare)", env!("CARGO_PKG_VERSION"));
    }
    // SAFETY: `magic` and `info` are what the loader passed to `_start`.
    let facts = match unsafe { Facts::gather(magic, info, bulkhead_x86::apic::cpuid_apic_id()) } {
        Ok(f) => FACTS.call_once(|| f),
        Err(e) => {
            if !bare {
                // The boot information names the console; without it, COM1 is the best guess.
                console::init(Some(console::COM1), false);
            }
            fatal(format_args!("{e}"))
        }
    };
    if !bare {
        console::init(facts.console, false);
        console::take_turns_with_hypervisor();
        println!(
            "bulkhead-rt {} starting ({})",
            env!("CARGO_PKG_VERSION"),
            facts.mode
        );
    }
    let options = Options::parse(facts.cmdline());
    if !bare && options.lines.is_some() {
        log::warn!("lines= is for a kernel booted bare: under the hypervisor the config gives the device lines");
    }
    log::info!(
        "{} CPUs (APIC IDs {:?}), {} MiB RAM in {} ranges, command line {:?}",
        facts.cpus().len(),
        facts.cpus(),
        facts.ram_bytes >> 20,
        facts.ram_ranges,
        facts.cmdline()
    );
    if facts.cpus_ignored > 0 {
        log::warn!(
            "{} CPUs beyond the kernel's {MAX_CPUS} are left alone",
            facts.cpus_ignored
        );
    }
    if facts.channels > 0 {
        let usable = channels::init(facts.channel_infos(), facts.mode == Mode::Hypervisor);
        log::info!("{usable} of {} channels usable", facts.channels);
    }
    match options.log.map(|name| (name, channels::open_log(name))) {
        Some((name, Ok(producer))) => {
            console::attach_log(producer);
            log::info!("log: console lines also go to Linux on channel {name}");
        }
        Some((name, Err(e))) => {
            console::log_off();
            log::warn!("log: channel {name}: {e}; console lines go to the UART only");
        }
        None => console::log_off(),
    }

    let tsc_hz = match facts.tsc_hz {
        Some(hz) => hz,
        // SAFETY: only the boot CPU runs here, before any other CPU starts; in bare mode the
        // PIT is the kernel's, and a hypervisor that reports no TSC frequency leaves it to
        // the kernel to measure.
        None => match unsafe { time::calibrate_tsc() } {
            Some(hz) => hz,
            None => fatal(format_args!(
                "TSC calibration failed: the PIT did not count (no timer to run on)"
            )),
        },
    };
    time::start_clock(tsc_hz);
    log::info!("TSC {} kHz", tsc_hz / 1000);
    if bare {
        // SAFETY: in bare mode the legacy PICs are the kernel's; masking every line keeps
        // their vectors (BIOS layout: 8..15, exception vectors) from ever arriving.
        unsafe {
            port::outb(0x21, 0xff);
            port::outb(0xa1, 0xff);
        }
    }
    let (apic_mode, timer_mode) = apic::choose_modes(tsc_hz);
    let apic_id = apic::init_this_cpu();
    percpu::set_apic_id(apic_id);
    match timer_mode {
        TimerMode::TscDeadline => {
            log::info!("local APIC: {apic_mode:?}, TSC-deadline timer");
        }
        TimerMode::OneShot => {
            let hz = apic::calibrate_oneshot();
            log::warn!(
                "local APIC: {apic_mode:?}; this CPU has no TSC-deadline timer: using the one-shot APIC timer at {} kHz, calibrated against the TSC",
                hz / 1000
            );
        }
    }
    sched::set_cores(facts.cpus());
    irq::init(
        facts.line_infos(),
        bare.then(|| facts.ioapics()),
        facts.cpus().first().copied().unwrap_or(0),
    );
    if let Err(e) = tasks::create_all(&options, facts.cpus().len()) {
        fatal(format_args!("creating the tasks: {e}"));
    }
    if let Err(e) = app::start_all(facts.cmdline(), facts.cpus().len()) {
        fatal(format_args!("{e}"));
    }
    for a in app::all() {
        log::info!("application {}: {} tasks", a.name, a.tasks.len());
    }
    SHARED_READY.store(true, Ordering::Release);

    for (index, &apic_id) in facts.cpus().iter().enumerate().skip(1) {
        let started = match facts.mode {
            Mode::Bare => smp::start_ap(index, apic_id, ap_entry).is_ok(),
            Mode::Hypervisor => wait_alive(index),
        };
        if !started {
            log::warn!("CPU {index} (APIC ID {apic_id}) did not start; its tasks will not run");
        }
    }
    // Wait until every started CPU has its APIC ready.
    let deadline = arch::rdtsc() + tsc_hz;
    while (1..facts.cpus().len())
        .any(|i| smp::is_alive(i) && !APIC_READY[i].load(Ordering::Acquire))
        && arch::rdtsc() < deadline
    {
        core::hint::spin_loop();
    }
    sched::start_scheduling();
    GO.store(true, Ordering::Release);
    online(0, apic_id)
}

/// Under the hypervisor: waits up to a second for CPU `index` to enter.
fn wait_alive(index: usize) -> bool {
    let deadline = arch::rdtsc() + time::tsc_hz().max(1_000_000);
    while arch::rdtsc() < deadline {
        if smp::is_alive(index) {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// CPU 0 has printed its `scheduling` line.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);
static APIC_READY: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

fn secondary_cpu(index: usize) -> ! {
    while !SHARED_READY.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let apic_id = apic::init_this_cpu();
    percpu::set_apic_id(apic_id);
    if let Some(facts) = FACTS.get()
        && facts.cpus().get(index) != Some(&apic_id)
    {
        log::warn!(
            "CPU {index} has APIC ID {apic_id}, the boot information says {:?}",
            facts.cpus().get(index)
        );
    }
    APIC_READY[index].store(true, Ordering::Release);
    while !GO.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    online(index, apic_id)
}

fn online(index: usize, apic_id: u32) -> ! {
    println!("cpu {index} apic {apic_id}: online");
    let n = ONLINE.fetch_add(1, Ordering::AcqRel) + 1;
    if index == 0 {
        // Wait (briefly) for the others' `online` lines, then go through the ring.
        let deadline = arch::rdtsc() + time::tsc_hz() / 10;
        let want = (0..FACTS.get().map_or(1, |f| f.cpus().len()))
            .filter(|&i| i == 0 || smp::is_alive(i))
            .count();
        while ONLINE.load(Ordering::Acquire) < want && arch::rdtsc() < deadline {
            core::hint::spin_loop();
        }
        println!(
            "bulkhead-rt: {} CPUs online, scheduling",
            ONLINE.load(Ordering::Acquire).max(n)
        );
        if console::dropped_lines() > 0 {
            log::warn!("{} console lines dropped", console::dropped_lines());
        }
        console::start_buffering();
        ANNOUNCED.store(true, Ordering::Release);
    }
    if under_hypervisor() {
        // The hypervisor prints a line for the hello on the console the kernel may share:
        // wait (briefly) until CPU 0's `scheduling` line is out, so the two do not mix.
        let deadline = arch::rdtsc() + time::tsc_hz();
        while !ANNOUNCED.load(Ordering::Acquire) && arch::rdtsc() < deadline {
            core::hint::spin_loop();
        }
        // The one exit this CPU takes on purpose: it tells the hypervisor it is up. From
        // here on it runs without exits.
        let _ = arch::cpu::hypercall(Hypercall::Hello { tag: 0 });
    }
    sched::run_idle()
}
