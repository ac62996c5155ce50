//! Starting every configured CPU and launching it into its partition.
//!
//! The bootstrap CPU starts the others (INIT-SIPI-SIPI, `smp`), one at a time; each,
//! bootstrap CPU included, then runs [`cpu_main`]: the VT-x check again, VMXON, the VMX
//! barrier (every CPU in VMX operation before any guest runs, or a `FATAL:` line after
//! [`VMX_BARRIER_SECONDS`]), and its vCPU's life: run the guest, and when it ends, start it
//! again if it is a Linux the config restarts (`linux_life`), else halt that CPU only.
// The bootstrap CPU's descriptor tables live in a static that this module hands out once,
// and the exception self-test executes UD2 on purpose.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bulkhead_config::PartitionId;
use hv_core::vmx::caps::VmxControls;

use crate::arch::cpu::CpuTables;
use crate::arch::{self, apic, interrupts, time};
use crate::boot::Machine;
use crate::linux_life::{next_linux_start, wait_for_linux_start};
use crate::partition::GuestStart;
use crate::vmx::vcpu::{LinuxTimer, RunEvents, Vcpu};
use crate::{fatal, linux_cpus, percpu, println, reports, smp, vmx};

/// How long CPUs wait for each other to enter VMX operation.
pub const VMX_BARRIER_SECONDS: u64 = 10;

/// A Linux CPU's VMX-preemption timer period (guest time): the longest a Linux CPU runs
/// without an exit, so the longest it takes to notice that its partition stops.
const LINUX_TIMER_MS: u64 = 10;

/// What a guest's run tells this layer: hellos and due exit reports, both `reports`'.
struct Events;

impl RunEvents for Events {
    fn guest_hello(&self, index: usize, apic_id: u32, partition: PartitionId) {
        reports::guest_said_hello(index, apic_id, partition);
    }

    fn exit_report_due(&self) {
        reports::report_exits();
    }
}

/// CPUs that have entered VMX operation.
static VMX_ON: AtomicUsize = AtomicUsize::new(0);

/// The bootstrap CPU's descriptor tables (APs get theirs from the frame allocator).
struct BspTables(UnsafeCell<CpuTables>);
// SAFETY: only the bootstrap CPU touches these tables, once, through `bsp_tables`.
unsafe impl Sync for BspTables {}
static BSP_TABLES: BspTables = BspTables(UnsafeCell::new(CpuTables::zeroed()));

/// The bootstrap CPU's descriptor tables, set up and loaded on this CPU. The first call
/// only: a second one stops the machine.
pub fn bsp_tables() -> &'static CpuTables {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::AcqRel) {
        fatal!("the bootstrap CPU's descriptor tables were set up twice");
    }
    // SAFETY: the flag above lets exactly one caller (the bootstrap CPU, first thing) reach
    // here; the tables live in a static for ever and nothing else refers to them.
    let tables = unsafe { &mut *BSP_TABLES.0.get() };
    tables.init();
    // SAFETY: `init` ran and the tables are static.
    unsafe { tables.load() };
    tables
}

/// Starts every configured CPU but the bootstrap CPU (`bsp_apic`), in config order.
pub fn start_aps(machine: &Machine, bsp_apic: u32) {
    let cfg = machine.config;
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
pub fn cpu_main(index: usize, apic_id: u32, tables: &'static CpuTables) -> ! {
    let Some(machine) = crate::boot::machine() else {
        fatal!("cpu {index}: started before the partitions were built")
    };
    let count = machine.cpu_count;
    if machine.options.selftest_exception && index + 1 == count {
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
    vmx_barrier(count);

    let cfg = machine.config;
    let Some(pid) = cfg.partition_of_cpu(apic_id) else {
        fatal!("cpu {index}: APIC ID {apic_id} is in no partition")
    };
    let res = &machine.partitions[pid as usize];
    let own = cfg.partition(pid).cpus();
    let last_linux_cpu = pid == PartitionId::Linux && own.last() == Some(&apic_id);
    let start = match res.unhandled_exit_stub() {
        Some(stub) if machine.options.selftest_unhandled_exit && last_linux_cpu => stub,
        _ => res.start,
    };
    reports::set_partition(index, pid);
    let start = if matches!(start, GuestStart::Linux(_)) && own.first() != Some(&apic_id) {
        wait_for_linux_start(index, apic_id, own)
    } else {
        start
    };
    let reporter = pid == PartitionId::Linux && own.first() == Some(&apic_id);
    let report_s = if reporter {
        machine.options.exit_report_s
    } else {
        0
    };
    let timer = linux_timer(pid, &controls, report_s);
    if pid == PartitionId::Linux {
        linux_cpus::set_polls(own, apic_id, timer.is_some());
    }
    match Vcpu::new(
        index, apic_id, tables, &msrs, &controls, res, start, own, timer,
    ) {
        Ok(mut vcpu) => loop {
            let entered = arch::rdtsc();
            let stopped = vcpu.run(&Events);
            let reset = stopped.reset_by_init();
            vcpu.report_stop(
                stopped,
                reports::ExitCounts(reports::exit_counts_line(index, true)),
            );
            let ran_ms = arch::rdtsc().wrapping_sub(entered) / (time::tsc_hz() / 1000).max(1);
            let next = if reset {
                // Only this CPU was reset; its partition goes on and starts it again.
                Some(wait_for_linux_start(index, apic_id, own))
            } else {
                next_linux_start(cfg, index, apic_id, own, start, ran_ms)
            };
            let Some(next) = next else {
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

/// Counts this CPU in VMX operation and waits for the other `count - 1`.
fn vmx_barrier(count: usize) {
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
}

/// A Linux CPU's preemption timer (and, on the reporting CPU, how often it reports every
/// `report_s` seconds); none on RT CPUs or without the timer.
fn linux_timer(pid: PartitionId, controls: &VmxControls, report_s: u64) -> Option<LinuxTimer> {
    match (pid, controls.preemption_timer_shift) {
        (PartitionId::Linux, Some(shift)) => Some(LinuxTimer {
            ticks: u32::try_from((time::tsc_hz() / 1000 * LINUX_TIMER_MS) >> shift)
                .unwrap_or(u32::MAX)
                .max(1),
            shift,
            report_every_tsc: (report_s > 0).then(|| time::tsc_hz().saturating_mul(report_s)),
        }),
        (PartitionId::Linux, None) => {
            if report_s > 0 {
                log::warn!("exit_report_s: this CPU has no VMX-preemption timer; no reports");
            }
            None
        }
        _ => None,
    }
}
