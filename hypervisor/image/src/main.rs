//! The Bulkhead hypervisor image.
//!
//! GRUB loads this ELF with multiboot2 and enters `_start` (arch/boot.S) on the bootstrap
//! CPU. From there the boot is a straight line, and any step that fails ends in one
//! `FATAL:` line naming the cause, then `bulkhead: halted` and an ACPI power-off:
//!
//! 1. console, descriptor tables, boot information, ACPI (CPUs, IOAPICs, power-off);
//! 2. the VT-x feature check on the bootstrap CPU;
//! 3. the config module: decoded and validated (`bulkhead-config`), then checked against
//!    this machine (CPUs present, regions in usable RAM, clear of the image and modules);
//! 4. the partition plan; the RT kernel loaded into the RT partition (`rt_loader`), Linux
//!    into the Linux partition (`linux_loader`; `linux=stub` runs a start-up stub instead);
//!    each partition's EPT, I/O and MSR bitmaps and start-up state;
//! 5. every configured CPU started (INIT-SIPI-SIPI), each checks VT-x again, enters VMX
//!    operation and, once all have, launches into its partition.
//!
//! After launch the hypervisor runs only when a guest exits (on RT CPUs, only while their
//! kernel starts). An exit it does not handle stops that guest, on that CPU only. With
//! `exit_report_s=N` on its command line, the first Linux CPU prints every CPU's exit
//! counts every N seconds (by the TSC, at the first exit after they are due; its
//! VMX-preemption timer makes one at least every 10 ms).
#![no_std]
#![no_main]

extern crate bulkhead_hv_core as hv_core;

mod arch;
mod boot_info;
mod channels;
mod console;
mod linux_cpus;
mod linux_devices;
mod linux_loader;
mod memory;
mod partition;
mod percpu;
mod platform;
mod rt_loader;
mod smp;
mod vmx;

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use bulkhead_config::platform as fit;
use bulkhead_config::{Config, PartitionId, Region};
use hv_core::fixed::FixedList;
use hv_core::frames::Span;
use hv_core::restart::{Decision, RestartPolicy, RestartState};
use hv_core::rt_boot::RtLayout;
use hv_core::vmx_caps::{Feature, VmxControls, VmxMsrs};
use spin::Once;

use arch::cpu::CpuTables;
use arch::{apic, halt_forever, interrupts, time};
use boot_info::BootInfo;
use platform::Platform;

/// Name of the GRUB module that carries the compiled config.
const CONFIG_MODULE: &str = "config";

static BOOT: Once<BootInfo> = Once::new();
static PLATFORM: Once<Platform> = Once::new();
static CONFIG: Once<Config> = Once::new();
/// The bootstrap CPU's VT-x capabilities and the controls derived from them.
pub static VMX: Once<(VmxMsrs, VmxControls)> = Once::new();
static PARTITIONS: Once<[partition::PartitionResources; 2]> = Once::new();

/// Number of CPUs the config assigns (the ones that run guests).
static CPU_COUNT: AtomicUsize = AtomicUsize::new(0);
/// CPUs that have entered VMX operation.
static VMX_ON: AtomicUsize = AtomicUsize::new(0);
/// CPUs whose start-up guest has said hello.
static HELLOS: AtomicUsize = AtomicUsize::new(0);
/// CPUs whose guest says hello (RT CPUs, and Linux CPUs running the stub): steady state is
/// when all of them have.
static EXPECTED_HELLOS: AtomicUsize = AtomicUsize::new(0);
/// `selftest=unhandled-exit`: the last Linux CPU's (stub) guest ends in an exit we do not handle.
static SELFTEST_UNHANDLED_EXIT: AtomicBool = AtomicBool::new(false);
/// `selftest=exception`: the last CPU takes an invalid-opcode exception in the
/// hypervisor before VMXON, to exercise the exception path.
static SELFTEST_EXCEPTION: AtomicBool = AtomicBool::new(false);
/// Each CPU's partition (`PartitionId as u8`), set when it starts its guest.
static CPU_PARTITION: [AtomicU8; bulkhead_config::MAX_CPUS] =
    [const { AtomicU8::new(u8::MAX) }; bulkhead_config::MAX_CPUS];
/// Each CPU's exit total at the previous report.
static EXITS_REPORTED: [AtomicU64; bulkhead_config::MAX_CPUS] =
    [const { AtomicU64::new(0) }; bulkhead_config::MAX_CPUS];
/// `exit_report_s=N`: seconds between exit reports (0 = none).
static EXIT_REPORT_S: AtomicU64 = AtomicU64::new(0);
/// How long CPUs wait for each other to enter VMX operation.
const VMX_BARRIER_SECONDS: u64 = 10;

/// The bootstrap CPU's descriptor tables (APs get theirs from the frame allocator).
struct BspTables(UnsafeCell<CpuTables>);
// SAFETY: only the bootstrap CPU touches these tables, once, in `bsp_entry`.
unsafe impl Sync for BspTables {}
static BSP_TABLES: BspTables = BspTables(UnsafeCell::new(CpuTables::zeroed()));

/// Reports a fatal boot error and stops the machine.
macro_rules! fatal {
    ($($arg:tt)*) => { $crate::fatal_stop(format_args!($($arg)*)) };
}

/// Prints `FATAL: ...`, `bulkhead: halted`, powers off where ACPI allows, and halts.
pub fn fatal_stop(args: fmt::Arguments<'_>) -> ! {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if REPORTED.swap(true, Ordering::AcqRel) {
        // Another CPU is already stopping the machine; its report is the one that counts.
        halt_forever()
    }
    console::force_unlock();
    println!("FATAL: {args}");
    println!("bulkhead: halted");
    if let Some(off) = PLATFORM.get().and_then(|p| p.power_off) {
        off.enter_s5();
    }
    halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::force_unlock();
    println!("PANIC: cpu {}: {}", percpu::current_index(), info);
    println!("cpu {} halted", percpu::current_index());
    halt_forever()
}

/// Rust entry of the bootstrap CPU, called by arch/boot.S in long mode.
#[unsafe(no_mangle)]
extern "C" fn bsp_entry(magic: u32, info_addr: u32) -> ! {
    let bsp_apic = apic::cpuid_apic_id();
    percpu::set_current(0, bsp_apic);
    console::init(Some(console::Uart::COM1));
    println!("bulkhead {} starting", env!("CARGO_PKG_VERSION"));

    // SAFETY: the bootstrap CPU's tables are used by this CPU only, initialised here
    // once, and live in a static for ever.
    let tables = unsafe { &mut *BSP_TABLES.0.get() };
    tables.init();
    // SAFETY: `init` ran and the tables are static.
    unsafe { tables.load() };
    interrupts::load_idt();

    // SAFETY: `magic` and `info_addr` are what the loader passed to `_start`.
    let boot = match unsafe { BootInfo::parse(magic, info_addr as usize) } {
        Ok(b) => BOOT.call_once(|| b),
        Err(e) => fatal!("{e}"),
    };
    let platform = match Platform::discover(boot.rsdp) {
        Ok(p) => PLATFORM.call_once(|| p),
        Err(e) => fatal!("{e}"),
    };
    if boot.dropped_entries > 0 {
        log::warn!(
            "{} memory-map ranges or modules beyond the boot tables' capacity were ignored",
            boot.dropped_entries
        );
    }
    if platform.dropped_entries > 0 {
        log::warn!(
            "{} MADT entries beyond the platform tables' capacity were ignored",
            platform.dropped_entries
        );
    }
    log::info!(
        "{} MiB usable RAM in {} ranges; {} CPUs and {} IOAPICs in the MADT; hypervisor command line {:?}",
        boot.total_ram() >> 20,
        boot.usable_ram().len(),
        platform.apic_ids().len(),
        platform.ioapics().len(),
        boot.cmdline()
    );
    for io in platform.ioapics() {
        log::info!(
            "IOAPIC {} at {:#x}, GSI base {}",
            io.id,
            io.address,
            io.gsi_base
        );
    }
    for o in platform.irq_overrides() {
        log::info!("ISA IRQ {} -> GSI {} (flags {:#x})", o.irq, o.gsi, o.flags);
    }
    // SAFETY: the PIT and port 0x61 are the hypervisor's during boot (no partition runs yet),
    // and only the bootstrap CPU runs.
    match unsafe { time::calibrate_tsc() } {
        Some(hz) => log::info!("TSC {} kHz", hz / 1000),
        None => log::warn!("TSC calibration failed: the PIT did not count; delays are rough"),
    }

    // The 8259 PICs stay as firmware left them until a partition's kernel programs them:
    // masked, so that no legacy interrupt (firmware maps IRQ 0 onto vector 8) reaches a
    // CPU through its LINT0 virtual wire in the meantime.
    // SAFETY: no partition runs yet; writing the PICs' interrupt mask registers only masks.
    unsafe {
        arch::port::outb(0x21, 0xff);
        arch::port::outb(0xa1, 0xff);
    }

    // Step 2: VT-x on the bootstrap CPU.
    let (msrs, controls) = match vmx::check_this_cpu() {
        Ok(v) => v,
        Err(m) if m.0.contains(Feature::VMX) => fatal!(
            "VT-x not available: CPUID.1:ECX.VMX is clear on this CPU (on QEMU, use KVM with -cpu host,+vmx; in firmware, enable Intel VT-x)"
        ),
        Err(m) => fatal!("VT-x not usable: this CPU lacks {m}"),
    };
    VMX.call_once(|| (msrs, controls));
    // SAFETY: x2APIC support is part of the feature check that just passed.
    unsafe { apic::enable_x2apic() };

    // Step 3: the config.
    let Some(module) = boot.module(CONFIG_MODULE) else {
        fatal!(
            "no config module: GRUB must load the compiled config with `module2 <file> {CONFIG_MODULE}`"
        )
    };
    let cfg = match bulkhead_config::blob::decode(module.bytes()) {
        Ok(c) => CONFIG.call_once(|| c),
        Err(e) => fatal!("{e}"),
    };
    check_config_fits(cfg, boot, platform);
    if cfg.console().hypervisor != bulkhead_config::ConsoleTarget::Com1 {
        log::info!("console moves to {}", cfg.console().hypervisor);
        console::init(cfg.console().hypervisor.io_base());
    }
    log::info!(
        "config {:?}: valid and fits this machine",
        cfg.name().as_str()
    );

    // Step 4: plan and partitions.
    let hv = cfg.hypervisor_region();
    let occupied = occupied_ranges(boot);
    let mut holes = [Span::default(); OCCUPIED_MAX];
    for (hole, (_, span)) in holes.iter_mut().zip(occupied.as_slice()) {
        *hole = *span;
    }
    if memory::init(
        Span::at(hv.base, hv.size),
        &holes[..occupied.as_slice().len()],
    )
    .is_err()
    {
        fatal!("too many boot modules to track");
    }
    print_plan(cfg);
    let layout = match RtLayout::plan(cfg) {
        Ok(l) => l,
        Err(e) => fatal!("config: {e}"),
    };
    // The RT kernel writes its console without setting the UART up (it may share the port
    // with the hypervisor): set up a port it does not share.
    if let Some(port) = cfg.console().rt.io_base()
        && Some(port) != cfg.console().hypervisor.io_base()
    {
        // SAFETY: the config routes this port to the RT partition's console; no partition
        // runs yet, so nothing else uses it.
        unsafe { console::Uart::init(port) };
    }
    if let Err(e) = channels::init_all(cfg) {
        fatal!("{e}");
    }
    let rt_start = match rt_loader::load(cfg, boot, &layout, time::tsc_hz()) {
        Ok(s) => s,
        Err(e) => fatal!("{e}"),
    };
    SELFTEST_UNHANDLED_EXIT.store(
        boot.has_option("selftest", "unhandled-exit"),
        Ordering::Relaxed,
    );
    // `linux=stub` (implied by the unhandled-exit self-test, which needs the stub): the
    // Linux CPUs run the start-up stub instead of Linux.
    let linux_stub =
        boot.has_option("linux", "stub") || SELFTEST_UNHANDLED_EXIT.load(Ordering::Relaxed);
    // Linux's devices first: the loader describes the channel device in Linux's ACPI tables.
    linux_devices::init(cfg, platform);
    let linux = if linux_stub {
        log::info!("partition linux: start-up stub instead of Linux (linux=stub)");
        None
    } else {
        match linux_loader::load(cfg, boot) {
            Ok(l) => Some(l),
            Err(e) => fatal!("{e}"),
        }
    };
    let rt_cpus = cfg.partition(PartitionId::Rt).cpus().len();
    let linux_cpus = cfg.partition(PartitionId::Linux).cpus().len();
    EXPECTED_HELLOS.store(
        rt_cpus + if linux.is_some() { 0 } else { linux_cpus },
        Ordering::Release,
    );
    let linux_ram = partition::identity(cfg.partition(PartitionId::Linux).memory().iter().copied());
    let linux_shared = partition::identity(cfg.shared_regions().iter().map(|s| s.region));
    let linux_firmware = linux_firmware_ranges(cfg, linux.as_ref().map(|l| &l.e820));
    let parts = PARTITIONS.call_once(|| {
        let linux = partition::build(
            cfg,
            PartitionId::Linux,
            linux_ram,
            linux_shared,
            linux_firmware.as_slice().iter().copied(),
            linux.map(|l| partition::GuestStart::Linux(l.start)),
        );
        let rt = partition::build(
            cfg,
            PartitionId::Rt,
            layout.ram().iter().copied(),
            // Not the hypervisor's log region: the RT partition cannot write that log.
            layout
                .shared()
                .iter()
                .enumerate()
                .filter(|&(i, _)| cfg.rt_maps_shared(i))
                .map(|(_, m)| *m),
            core::iter::empty(),
            Some(partition::GuestStart::Rt(rt_start)),
        );
        match (linux, rt) {
            (Ok(linux), Ok(rt)) => [linux, rt],
            (Err(e), _) => fatal!("partition linux: {e}"),
            (_, Err(e)) => fatal!("partition rt: {e}"),
        }
    });
    for p in parts {
        let start = match p.start {
            partition::GuestStart::Stub { entry } => (entry, "start-up stub"),
            partition::GuestStart::Rt(rt) => (rt.entry, "64-bit kernel entry"),
            partition::GuestStart::Linux(l) => (l.entry, "Linux 64-bit entry"),
            partition::GuestStart::LinuxSecondary(e) => (e.cs_base, "real-mode start-up"),
        };
        log::info!(
            "partition {}: EPT in {} tables, {} at {:#x}",
            p.id,
            p.ept_tables,
            start.1,
            start.0
        );
    }
    if let Some(v) = boot.option("exit_report_s") {
        match v.parse::<u64>() {
            Ok(n) if n <= 3600 => EXIT_REPORT_S.store(n, Ordering::Relaxed),
            _ => log::warn!("exit_report_s={v}: not a number of seconds from 0 to 3600; ignored"),
        }
    }
    SELFTEST_EXCEPTION.store(boot.has_option("selftest", "exception"), Ordering::Relaxed);

    // Step 5: every configured CPU.
    let configured = |apic: u32| cfg.partition_of_cpu(apic).is_some();
    let count = PartitionId::ALL
        .iter()
        .map(|&p| cfg.partition(p).cpus().len())
        .sum::<usize>();
    CPU_COUNT.store(count, Ordering::Release);
    let mut index = 1;
    for &p in &PartitionId::ALL {
        for &apic_id in cfg.partition(p).cpus() {
            if apic_id == bsp_apic {
                continue;
            }
            if let Err(e) = smp::start_ap(index, apic_id, ap_entry) {
                fatal!("CPU with APIC ID {apic_id} (partitions.{p}.cpus) did not start: {e:?}");
            }
            index += 1;
        }
    }
    log::info!(
        "hypervisor memory in use: {} KiB",
        memory::allocated() >> 10
    );
    if configured(bsp_apic) {
        cpu_main(0, bsp_apic, tables)
    }
    log::info!("bootstrap CPU (APIC ID {bsp_apic}) is in no partition; it idles");
    halt_forever()
}

/// Rust entry of an application processor, called by the trampoline.
extern "C" fn ap_entry(start: &'static mut smp::ApStart) -> ! {
    percpu::set_current(start.index, start.apic_id);
    smp::signal_started(start.index);
    start.tables.init();
    // SAFETY: the tables were allocated for this CPU, live for ever, and `init` ran.
    unsafe { start.tables.load() };
    interrupts::load_idt();
    // A CPU without x2APIC fails its own feature check in `cpu_main` before it uses
    // the APIC.
    if core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0 {
        // SAFETY: CPUID just reported x2APIC support.
        unsafe { apic::enable_x2apic() };
    }
    cpu_main(start.index, start.apic_id, start.tables)
}

/// The part every configured CPU runs: VT-x check, VMXON, wait for the others, launch.
fn cpu_main(index: usize, apic_id: u32, tables: &'static CpuTables) -> ! {
    let count = CPU_COUNT.load(Ordering::Acquire);
    if SELFTEST_EXCEPTION.load(Ordering::Relaxed) && index + 1 == count {
        // SAFETY: UD2 raises #UD, which the IDT routes to the reporting handler; this
        // CPU halts there by design.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    }
    let (msrs, controls) = match vmx::check_this_cpu() {
        Ok(v) => v,
        Err(m) => fatal!("VT-x not usable on cpu {index} (APIC ID {apic_id}): it lacks {m}"),
    };
    if let Err(e) = vmx::vmxon(&msrs, &controls) {
        fatal!("cpu {index} (APIC ID {apic_id}): {e}");
    }
    println!("cpu {index} apic {apic_id}: VMX on");
    if VMX_ON.fetch_add(1, Ordering::AcqRel) + 1 == count {
        // The TSC counts from reset, so this is the time since power-on (virtual time
        // under an emulator with a deterministic clock).
        let ms = arch::rdtsc() / (time::tsc_hz() / 1000).max(1);
        println!("all {count} CPUs in VMX operation ({ms} ms after power-on by the TSC)");
    }
    let deadline = arch::rdtsc() + VMX_BARRIER_SECONDS * time::tsc_hz().max(1_000_000);
    while VMX_ON.load(Ordering::Acquire) < count {
        if arch::rdtsc() > deadline {
            fatal!(
                "only {} of {count} CPUs reached VMX operation within {VMX_BARRIER_SECONDS} s",
                VMX_ON.load(Ordering::Acquire)
            );
        }
        core::hint::spin_loop();
    }

    let (Some(cfg), Some(parts)) = (CONFIG.get(), PARTITIONS.get()) else {
        fatal!("cpu {index}: started before the partitions were built")
    };
    let Some(pid) = cfg.partition_of_cpu(apic_id) else {
        fatal!("cpu {index}: APIC ID {apic_id} is in no partition")
    };
    let res = &parts[pid as usize];
    let own = cfg.partition(pid).cpus();
    let last_linux_cpu = pid == PartitionId::Linux && own.last() == Some(&apic_id);
    let start = match res.unhandled_exit_stub() {
        Some(stub) if SELFTEST_UNHANDLED_EXIT.load(Ordering::Relaxed) && last_linux_cpu => stub,
        _ => res.start,
    };
    CPU_PARTITION[index].store(pid as u8, Ordering::Relaxed);
    let start = if matches!(start, partition::GuestStart::Linux(_)) && own.first() != Some(&apic_id)
    {
        wait_for_linux_start(index, apic_id, own)
    } else {
        start
    };
    let reporter = pid == PartitionId::Linux && own.first() == Some(&apic_id);
    let report_s = if reporter {
        EXIT_REPORT_S.load(Ordering::Relaxed)
    } else {
        0
    };
    let timer = match (pid, controls.preemption_timer_shift) {
        (PartitionId::Linux, Some(shift)) => Some(vmx::vcpu::LinuxTimer {
            ticks: u32::try_from((time::tsc_hz() / 1000 * LINUX_TIMER_MS) >> shift)
                .unwrap_or(u32::MAX)
                .max(1),
            report_every_tsc: (report_s > 0).then(|| time::tsc_hz().saturating_mul(report_s)),
        }),
        (PartitionId::Linux, None) => {
            if report_s > 0 {
                log::warn!("exit_report_s: this CPU has no VMX-preemption timer; no reports");
            }
            None
        }
        _ => None,
    };
    if pid == PartitionId::Linux {
        linux_cpus::set_polls(own, apic_id, timer.is_some());
    }
    match vmx::vcpu::Vcpu::new(
        index, apic_id, tables, &msrs, &controls, res, start, own, timer,
    ) {
        Ok(mut vcpu) => loop {
            let entered = arch::rdtsc();
            vcpu.run();
            let ran_ms = arch::rdtsc().wrapping_sub(entered) / (time::tsc_hz() / 1000).max(1);
            let Some(next) = next_linux_start(cfg, index, apic_id, own, start, ran_ms) else {
                break;
            };
            if let Err(e) = vcpu.restart(tables, &msrs, &controls, res, next) {
                println!("cpu {index} apic {apic_id}: guest not restarted: VMCS setup failed: {e}");
                break;
            }
        },
        Err(e) => println!("cpu {index} apic {apic_id}: guest not started: VMCS setup failed: {e}"),
    }
    println!("cpu {index} halted");
    // Spin rather than `cli; hlt`: the other partition goes on, and Bochs stops advancing
    // time for every CPU while its bootstrap CPU halts with interrupts off.
    loop {
        core::hint::spin_loop();
    }
}

/// A secondary CPU of Linux: waits until Linux sends it INIT and start-up, then says so.
fn wait_for_linux_start(index: usize, apic_id: u32, own: &[u32]) -> partition::GuestStart {
    let vector = linux_cpus::wait_for_startup(own, apic_id);
    let entry = hv_core::ap_start::RealModeEntry::for_vector(vector);
    println!(
        "cpu {index} apic {apic_id}: started by Linux, real mode at {:#x}",
        entry.cs_base
    );
    partition::GuestStart::LinuxSecondary(entry)
}

/// A Linux CPU's VMX-preemption timer period (guest time): the longest a Linux CPU runs
/// without an exit, so the longest it takes to notice that its partition stops.
const LINUX_TIMER_MS: u64 = 10;

/// How long Linux's boot CPU waits for the partition's other CPUs to leave their guests
/// before a restart.
const LINUX_STOP_WAIT_MS: u64 = 1000;

/// The Linux partition's restarts so far (only Linux's boot CPU decides them).
static LINUX_RESTARTS: spin::Mutex<RestartState> = spin::Mutex::new(RestartState::new());

/// After this CPU's guest ended (`first`: how it started the first time; `ran_ms`: how long
/// this run lasted): how it starts again if it belongs to a Linux partition the config
/// restarts (`on_exit = "restart"`), or `None` if it stays stopped. Linux's boot CPU waits for
/// the partition's other CPUs to leave their guests, decides by the restart limit
/// (`hv_core::restart`: back-off after quick ends, then give up), puts Linux's devices back,
/// and reloads Linux from the retained module copies; the other CPUs wait for the new Linux's
/// start-up IPIs.
fn next_linux_start(
    cfg: &Config,
    index: usize,
    apic_id: u32,
    own: &[u32],
    first: partition::GuestStart,
    ran_ms: u64,
) -> Option<partition::GuestStart> {
    if cfg.linux().on_exit() != bulkhead_config::OnExit::Restart {
        return None;
    }
    match first {
        partition::GuestStart::Linux(_) => {
            let deadline = arch::rdtsc() + LINUX_STOP_WAIT_MS * (time::tsc_hz() / 1000).max(1);
            if let Err(apic) = linux_cpus::wait_others_left(own, apic_id, deadline) {
                println!(
                    "cpu {index} apic {apic_id}: linux partition not restarted: the CPU with APIC ID {apic} did not leave its guest within {LINUX_STOP_WAIT_MS} ms"
                );
                return None;
            }
            let decision = LINUX_RESTARTS
                .lock()
                .on_end(&RestartPolicy::DEFAULT, ran_ms);
            let n = match decision {
                Decision::Restart { number, delay_ms } => {
                    if delay_ms > 0 {
                        println!(
                            "cpu {index} apic {apic_id}: linux partition ended {ran_ms} ms after its start; restart {number} in {delay_ms} ms"
                        );
                        time::delay_us(delay_ms.saturating_mul(1000));
                    }
                    number
                }
                Decision::GiveUp {
                    quick_ends,
                    within_ms,
                } => {
                    println!(
                        "cpu {index} apic {apic_id}: linux partition not restarted: it ended {quick_ends} times in a row within {within_ms} ms of its start"
                    );
                    return None;
                }
            };
            linux_devices::reset();
            let boot = BOOT.get()?;
            match linux_loader::load(cfg, boot) {
                Ok(linux) => {
                    println!(
                        "cpu {index} apic {apic_id}: linux partition restarts (restart {n}, from the retained modules)"
                    );
                    Some(partition::GuestStart::Linux(linux.start))
                }
                Err(e) => {
                    println!("cpu {index} apic {apic_id}: linux partition not restarted: {e}");
                    None
                }
            }
        }
        partition::GuestStart::LinuxSecondary(_) => Some(wait_for_linux_start(index, apic_id, own)),
        partition::GuestStart::Stub { .. } | partition::GuestStart::Rt(_) => None,
    }
}

/// Called by the exit handler when a start-up guest says hello.
pub fn guest_said_hello(index: usize, apic_id: u32, partition: PartitionId) {
    println!("cpu {index} apic {apic_id}: vmcall from {partition} guest handled");
    let count = EXPECTED_HELLOS.load(Ordering::Acquire);
    if HELLOS.fetch_add(1, Ordering::AcqRel) + 1 == count {
        report_exits_then(Some("bulkhead: steady state"));
    }
}

/// Prints every CPU's exit counts (an `ExitCountsLine` each, in one block).
pub fn report_exits() {
    report_exits_then(None);
}

fn report_exits_then(last_line: Option<&str>) {
    let count = CPU_COUNT.load(Ordering::Acquire);
    console::write_block(|w| {
        for cpu in 0..count {
            writeln!(w, "{}", ExitCountsLine::new(cpu))?;
        }
        let rung = channels::DOORBELLS_RUNG.load(Ordering::Relaxed);
        let coalesced = channels::DOORBELLS_COALESCED.load(Ordering::Relaxed);
        if rung + coalesced > 0 {
            writeln!(w, "doorbells: rung {rung} coalesced {coalesced}")?;
        }
        if let Some((raised, delivered, undelivered)) = linux_devices::channel_interrupt_counts()
            && raised > 0
        {
            writeln!(
                w,
                "doorbells to linux: raised {raised} interrupts {delivered} held {undelivered}"
            )?;
        }
        match last_line {
            Some(line) => writeln!(w, "{line}"),
            None => Ok(()),
        }
    });
}

/// One CPU's exit counters as
/// `exits: cpu N PARTITION: total T new D: REASON=n ...`, where D is the number of exits
/// since the previous line for that CPU.
#[derive(Debug, Clone, Copy)]
pub struct ExitCountsLine {
    cpu: usize,
    new: u64,
}

impl ExitCountsLine {
    /// Reads CPU `cpu`'s counters and starts its next "new" count from here.
    pub fn new(cpu: usize) -> Self {
        let total = vmx::vcpu::EXIT_COUNTERS.get(cpu).map_or(0, |c| c.total());
        let before = EXITS_REPORTED
            .get(cpu)
            .map_or(0, |r| r.swap(total, Ordering::Relaxed));
        Self {
            cpu,
            new: total.saturating_sub(before),
        }
    }
}

impl fmt::Display for ExitCountsLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(counters) = vmx::vcpu::EXIT_COUNTERS.get(self.cpu) else {
            return Ok(());
        };
        let partition = match CPU_PARTITION[self.cpu].load(Ordering::Relaxed) {
            0 => "linux",
            1 => "rt",
            _ => "none",
        };
        write!(
            f,
            "exits: cpu {} {partition}: total {} new {}:",
            self.cpu,
            counters.total(),
            self.new
        )?;
        for (reason, n) in counters.nonzero() {
            write!(f, " {reason}={n}")?;
        }
        Ok(())
    }
}

/// Most firmware ranges mapped into Linux's EPT.
const LINUX_FIRMWARE_MAX: usize = 128;

/// Firmware memory Linux may see besides its RAM, identity-mapped: the ACPI tables and NVS
/// its e820 map lists outside its RAM (read-write: AML and the FACS global lock write
/// there), and the legacy BIOS area below 1 MiB outside its RAM (read-only: the EBDA and
/// the option and system ROMs, which Linux scans for DMI and MP tables). VGA memory
/// (0xA0000-0xBFFFF) stays unmapped.
fn linux_firmware_ranges(
    cfg: &Config,
    e820: Option<&hv_core::linux::e820::E820Map>,
) -> FixedList<(hv_core::rt_boot::Mapping, hv_core::ept::Perms), LINUX_FIRMWARE_MAX> {
    use hv_core::ept::Perms;
    use hv_core::linux::e820::E820Type;
    use hv_core::rt_boot::Mapping;
    let mut list = FixedList::new();
    let Some(e820) = e820 else {
        return list;
    };
    let ram = cfg.partition(PartitionId::Linux).memory();
    let shared = cfg.shared_regions();
    let owned = |r: &Region| {
        ram.iter().any(|m| m.overlaps(r)) || shared.iter().any(|s| s.region.overlaps(r))
    };
    let mut add = |base: u64, end: u64, perms: Perms| {
        // Page by page where a range is only partly Linux RAM.
        let mut page = base & !0xfff;
        while page < end {
            let r = Region::new(page, 0x1000);
            if !owned(&r) {
                let m = Mapping {
                    gpa: page,
                    hpa: page,
                    size: 0x1000,
                };
                match list.as_mut_slice().last_mut() {
                    Some((last, p)) if *p == perms && last.gpa + last.size == page => {
                        last.size += 0x1000;
                    }
                    _ => {
                        if list.push((m, perms)).is_err() {
                            log::warn!(
                                "linux: too many firmware ranges to map; {page:#x} and above left out"
                            );
                            return;
                        }
                    }
                }
            }
            page += 0x1000;
        }
    };
    for e in e820.as_slice() {
        if e.kind == E820Type::ACPI || e.kind == E820Type::NVS {
            add(e.addr, e.end(), Perms::READ | Perms::WRITE);
        }
    }
    let low_reserved = e820
        .as_slice()
        .iter()
        .filter(|e| e.addr < 0xa_0000 && e.kind != E820Type::RAM)
        .map(|e| (e.addr, e.end().min(0xa_0000)));
    for (base, end) in low_reserved {
        add(base, end, Perms::READ);
    }
    add(0xc_0000, 0x10_0000, Perms::READ);
    list
}

/// Most memory ranges in use at boot: the image, the boot information and the modules.
const OCCUPIED_MAX: usize = boot_info::MAX_MODULES + 2;

/// What lies in memory at boot and must be neither allocated nor given to a partition.
fn occupied_ranges(boot: &BootInfo) -> FixedList<(&str, Span), OCCUPIED_MAX> {
    let mut list = FixedList::new();
    // Capacity covers every module `BootInfo` keeps, so these pushes cannot fail.
    let _ = list.push(("hypervisor image", memory::image_span()));
    let _ = list.push(("boot information", boot.info_span));
    for m in boot.modules() {
        let _ = list.push((m.name(), m.span));
    }
    list
}

/// Re-checks the config against this machine; stops with the config field on failure.
fn check_config_fits(cfg: &Config, boot: &BootInfo, platform: &Platform) {
    let image = memory::image_span();
    let as_region = |s: Span| Region {
        base: s.start,
        size: s.end.saturating_sub(s.start),
    };
    let ranges = occupied_ranges(boot);
    let mut occupied = [("", Region { base: 0, size: 0 }); OCCUPIED_MAX];
    for (slot, &(name, span)) in occupied.iter_mut().zip(ranges.as_slice()) {
        *slot = (name, as_region(span));
    }
    let hw = fit::Platform {
        apic_ids: platform.apic_ids(),
        usable_ram: boot.usable_ram(),
        occupied: &occupied[..ranges.as_slice().len()],
    };
    if let Err(e) = fit::check_fit(cfg, &hw) {
        fatal!("config: {e}");
    }
    let hv = cfg.hypervisor_region();
    if image.start < hv.base || image.end > hv.base + hv.size {
        fatal!(
            "config: hypervisor.memory: {:#x}..{:#x} does not contain the hypervisor image at {:#x}..{:#x}",
            hv.base,
            hv.base + hv.size,
            image.start,
            image.end
        );
    }
    if hv.base + hv.size > 1 << 32 {
        fatal!(
            "config: hypervisor.memory: must end below 4 GiB (the hypervisor maps only the first 4 GiB)"
        );
    }
}

fn print_plan(cfg: &Config) {
    for &p in &PartitionId::ALL {
        for &apic_id in cfg.partition(p).cpus() {
            println!("plan: apic {apic_id} -> {p}");
        }
    }
    for &p in &PartitionId::ALL {
        let part = cfg.partition(p);
        println!(
            "plan: {p}: {} CPUs, {} MiB in {} regions",
            part.cpus().len(),
            part.memory_bytes() >> 20,
            part.memory().len()
        );
    }
    let hv = cfg.hypervisor_region();
    println!("plan: hypervisor: {} MiB at {:#x}", hv.size >> 20, hv.base);
    for s in cfg.shared_regions() {
        println!(
            "plan: shared {}: {} KiB at {:#x}",
            s.name.as_str(),
            s.region.size >> 10,
            s.region.base
        );
    }
}
