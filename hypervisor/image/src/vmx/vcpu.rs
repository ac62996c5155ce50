//! One virtual CPU: its VMCS and save area, and the run loop that enters the guest and
//! carries out what the exit handlers (`exits`) decide.
//!
//! Set-up is `setup`'s; the handlers are `exits`'s. The loop itself does what every exit
//! shares: it counts the exit, asks (on a Linux CPU) whether the partition is stopping,
//! tells the launch code when the exit report is due, then acts on the handler's
//! [`Action`]. A failed VM entry, a guest triple fault or an exit nobody handles stops the
//! guest; the report of it is `stop`'s. Whenever a Linux CPU's guest ends, the guests of
//! the partition's other CPUs end with it (`linux_cpus`). The other partition is
//! unaffected.
// Enters the guest through entry.S and writes the VMCS region's revision identifier.
#![allow(unsafe_code)]

use core::fmt;
use core::mem::offset_of;

use bulkhead_config::PartitionId;
use hv_core::memory::addr::HostPhysAddr;
use hv_core::vmx::caps::{SecondaryControls, VmxControls, VmxMsrs};
use hv_core::vmx::cpuid::HostFacts;
use hv_core::vmx::exit::{ExitCounters, ExitReason};

use super::exits::{Action, ExitHandler, GuestEnd, StopCause};
use super::setup;
use super::stop::{self, Stop, Stopped};
use super::vmcs::{self, VmxError, control, guest, ro};
use crate::arch::cpu::CpuTables;
use crate::arch::msr;
use crate::memory;
use crate::partition::{GuestStart, PartitionResources};
use crate::{guest_memory, linux_cpus};

unsafe extern "C" {
    fn vmx_enter(state: *mut VcpuState, resume: u64) -> u64;
    fn vmx_exit_entry();
}

core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

/// Guest general-purpose registers, in the order entry.S stores them.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GuestRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// Everything entry.S saves and restores around a VM entry.
#[repr(C, align(64))]
pub struct VcpuState {
    pub regs: GuestRegs,
    _pad: u64,
    guest_fx: [u8; 512],
    host_fx: [u8; 512],
}

const _: () = {
    assert!(offset_of!(VcpuState, regs) == 0);
    assert!(offset_of!(GuestRegs, rdi) == 40);
    assert!(offset_of!(GuestRegs, r15) == 112);
    assert!(offset_of!(VcpuState, guest_fx) == 128);
    assert!(offset_of!(VcpuState, host_fx) == 640);
};

/// Per-CPU exit counters, readable from every CPU.
pub static EXIT_COUNTERS: [ExitCounters; bulkhead_config::MAX_CPUS] =
    [const { ExitCounters::new() }; bulkhead_config::MAX_CPUS];

/// What the code that runs a vCPU does for it while its guest runs: the run loop's only
/// way out of the VMX layer.
pub trait RunEvents {
    /// A start-up guest said hello (its VMCALL `HELLO`, already answered).
    fn guest_hello(&self, index: usize, apic_id: u32, partition: PartitionId);
    /// The exit report this CPU prints (see [`LinuxTimer::report_every_tsc`]) is due.
    fn exit_report_due(&self);
}

/// A Linux CPU's VMX-preemption timer: it brings the CPU out of its guest at least every
/// `ticks` timer ticks of guest time, so that the CPU notices that its partition is stopping
/// (`linux_cpus`) and, on the reporting CPU, prints the exit counts when they are due.
#[derive(Debug, Clone, Copy)]
pub struct LinuxTimer {
    /// Timer ticks (TSC ticks shifted by the CPU's timer rate) between timer exits.
    pub ticks: u32,
    /// The timer's rate: one timer tick is `1 << shift` TSC ticks.
    pub shift: u8,
    /// TSC ticks between exit reports, on the CPU that prints them.
    pub report_every_tsc: Option<u64>,
}

/// The virtual CPU of one physical CPU.
pub struct Vcpu {
    pub index: usize,
    pub apic_id: u32,
    pub partition: PartitionId,
    /// This CPU's VMCS region.
    vmcs: HostPhysAddr,
    state: &'static mut VcpuState,
    launched: bool,
    /// The partition's CPUs (x2APIC IDs).
    own_cpus: &'static [u32],
    /// The VMX-preemption timer of a Linux CPU (none on RT CPUs, or where VT-x lacks it).
    timer: Option<LinuxTimer>,
    /// The timer value every VM entry loads now: `timer`'s ticks, or less while a doorbell
    /// is owed to the RT partition (`crate::channels::deliver_owed`).
    timer_loaded: u32,
    /// When the reporting CPU prints the exit counts next (TSC).
    next_report_tsc: u64,
    /// Whether the hung-Linux watchdog looks at this CPU: it runs Linux itself, not a
    /// start-up stub (which halts with interrupts off on purpose).
    watched: bool,
    host_facts: HostFacts,
    exits: ExitHandler,
}

impl Vcpu {
    /// Allocates and loads a VMCS for this CPU and fills it for `res`'s partition, with
    /// the guest starting as `start`. `timer`: a Linux CPU's preemption timer (and whether
    /// this CPU reports every CPU's exit counts, how often).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        apic_id: u32,
        tables: &CpuTables,
        msrs: &VmxMsrs,
        controls: &VmxControls,
        res: &PartitionResources,
        start: GuestStart,
        own_cpus: &'static [u32],
        timer: Option<LinuxTimer>,
    ) -> Result<Self, VmxError> {
        let vmcs_region = memory::alloc_zeroed(0x1000, 0x1000).map_err(|_| VmxError::Invalid)?;
        let state = memory::alloc_static::<VcpuState>().map_err(|_| VmxError::Invalid)?;
        // SAFETY: a fresh page with the revision identifier in its first dword is a valid
        // VMCS region (SDM 25.2).
        unsafe {
            core::ptr::write_volatile(vmcs_region.as_u64() as *mut u32, controls.revision_id);
        }
        setup::make_current(vmcs_region)?;
        // Fast strings (IA32_MISC_ENABLE bit 0) decide whether FSRM may be shown.
        // SAFETY: IA32_MISC_ENABLE exists on every CPU with VMX.
        let misc_enable = unsafe { msr::read(0x1a0) };
        let host_facts = HostFacts {
            fast_strings_enabled: misc_enable & 1 != 0,
            kvm_compat_leaf: res.id == PartitionId::Linux,
            invpcid: controls.secondary & SecondaryControls::ENABLE_INVPCID.bits() != 0,
            xsaves: controls.secondary & SecondaryControls::ENABLE_XSAVES.bits() != 0,
            tsc_hz: crate::arch::time::tsc_hz(),
        };
        let mut vcpu = Self {
            index,
            apic_id,
            partition: res.id,
            vmcs: vmcs_region,
            state,
            launched: false,
            own_cpus,
            timer,
            timer_loaded: 0,
            next_report_tsc: 0,
            watched: runs_linux(&start),
            host_facts,
            exits: ExitHandler::new(
                index,
                apic_id,
                res.id,
                host_facts,
                own_cpus,
                says_hello(&start),
            ),
        };
        vcpu.program(tables, msrs, controls, res, start)?;
        Ok(vcpu)
    }

    /// Fills the current VMCS: host state, controls, and the guest starting as `start`.
    fn program(
        &mut self,
        tables: &CpuTables,
        msrs: &VmxMsrs,
        controls: &VmxControls,
        res: &PartitionResources,
        start: GuestStart,
    ) -> Result<(), VmxError> {
        setup::host_state(tables, vmx_exit_entry as *const () as u64)?;
        let long_mode = matches!(start, GuestStart::Rt(_) | GuestStart::Linux(_));
        setup::exec_controls(
            controls,
            res,
            self.index,
            long_mode,
            self.timer.map(|t| t.ticks),
        )?;
        self.timer_loaded = self.timer.map_or(0, |t| t.ticks);
        let cpu_in_partition = self.own_cpus.iter().position(|&a| a == self.apic_id);
        setup::guest_state(
            msrs,
            start,
            cpu_in_partition.unwrap_or(0),
            &mut self.state.regs,
        )
    }

    /// Makes the guest start again from scratch as `start` (a Linux that restarts), on the
    /// same VMCS: cleared, refilled, launched anew; registers, FPU state and the exit
    /// handlers' memory of the old guest forgotten, except how much of this CPU's log budgets
    /// is spent (a guest that restarts again and again does not log more).
    pub fn restart(
        &mut self,
        tables: &CpuTables,
        msrs: &VmxMsrs,
        controls: &VmxControls,
        res: &PartitionResources,
        start: GuestStart,
    ) -> Result<(), VmxError> {
        setup::make_current(self.vmcs)?;
        self.launched = false;
        self.watched = runs_linux(&start);
        self.state.regs = GuestRegs::default();
        self.state.guest_fx = [0; 512];
        let old = core::mem::replace(
            &mut self.exits,
            ExitHandler::new(
                self.index,
                self.apic_id,
                self.partition,
                self.host_facts,
                self.own_cpus,
                says_hello(&start),
            ),
        );
        self.exits.keep_log_budgets(&old);
        self.program(tables, msrs, controls, res, start)
    }

    /// Runs the guest until it stops, handling its exits; returns why it stopped.
    pub fn run(&mut self, events: &impl RunEvents) -> Stopped {
        let linux = self.partition == PartitionId::Linux;
        guest_memory::enter_guest(self.partition);
        if linux {
            linux_cpus::entering(self.own_cpus, self.apic_id);
        }
        let stop = loop {
            // SAFETY: the VMCS of this CPU is current and complete (`new`); `state` is
            // this vCPU's own save area, laid out as entry.S expects (asserted above).
            let failed = unsafe { vmx_enter(self.state, u64::from(self.launched)) };
            if failed != 0 {
                let err = if failed & 1 != 0 {
                    VmxError::Invalid
                } else {
                    vmcs::read(ro::VM_INSTRUCTION_ERROR)
                        .map_or(VmxError::Invalid, |n| VmxError::Valid(n as u32))
                };
                break Stop::EntryFailed(err);
            }
            self.launched = true;
            let raw = match vmcs::read(ro::EXIT_REASON) {
                Ok(r) => r as u32,
                Err(e) => break Stop::Vmcs(e),
            };
            let exit = ExitReason::from_raw(raw);
            EXIT_COUNTERS[self.index].record(exit);
            if exit.entry_failed() {
                break Stop::Unhandled(exit);
            }
            match self
                .next_action(exit, events)
                .and_then(|a| self.act(a, events))
                .and_then(|stop| {
                    if linux && stop.is_none() {
                        self.deliver_owed_doorbells()?;
                    }
                    Ok(stop)
                }) {
                Ok(None) => {}
                Ok(Some(StopCause::Unhandled)) => break Stop::Unhandled(exit),
                Ok(Some(StopCause::Ended(end))) => break Stop::Ended(end),
                Err(e) => break Stop::Vmcs(e),
            }
        };
        let others = match stop {
            Stop::Ended(GuestEnd::WithPartition | GuestEnd::Init) => 0,
            _ if linux => linux_cpus::stop_others(self.own_cpus, self.apic_id),
            _ => 0,
        };
        guest_memory::left_guest(self.partition);
        match stop {
            Stop::Ended(GuestEnd::Init) => linux_cpus::left_for_reset(self.own_cpus, self.apic_id),
            _ if linux => linux_cpus::left(self.own_cpus, self.apic_id),
            _ => {}
        }
        Stopped { stop, others }
    }

    /// After each exit of a Linux CPU: the doorbells owed to the RT partition that are due
    /// go now, and this CPU's preemption timer brings it back out of its guest when the
    /// earliest one still owed is due (else after its usual interval).
    fn deliver_owed_doorbells(&mut self) -> Result<(), VmxError> {
        let due_in = crate::channels::deliver_owed();
        let Some(timer) = self.timer else {
            return Ok(());
        };
        let ticks = due_in.map_or(timer.ticks, |tsc| {
            u32::try_from(tsc >> timer.shift)
                .unwrap_or(u32::MAX)
                .clamp(1, timer.ticks)
        });
        if ticks != self.timer_loaded {
            vmcs::write(guest::VMX_PREEMPTION_TIMER_VALUE, u64::from(ticks))?;
            self.timer_loaded = ticks;
        }
        Ok(())
    }

    /// What every exit shares, then the exit's handler.
    fn next_action(
        &mut self,
        exit: ExitReason,
        events: &impl RunEvents,
    ) -> Result<Action, VmxError> {
        // Every exit of a Linux CPU (the preemption timer makes one at least every few
        // milliseconds) first looks whether its partition is stopping.
        if self.partition == PartitionId::Linux
            && linux_cpus::take_stop_request(self.own_cpus, self.apic_id)
        {
            return Ok(Action::Stop(StopCause::Ended(GuestEnd::WithPartition)));
        }
        // Linux's fed watchdog: a Linux that stopped feeding it hangs, whatever its CPUs do.
        if self.partition == PartitionId::Linux
            && let Some(timeout_s) = linux_cpus::watchdog_expired()
        {
            return Ok(Action::Stop(StopCause::Ended(GuestEnd::WatchdogExpired {
                timeout_s,
            })));
        }
        // An INIT from another CPU of the partition (Linux bringing this CPU back online).
        if self.partition == PartitionId::Linux
            && linux_cpus::take_reset_request(self.own_cpus, self.apic_id)
        {
            return Ok(Action::Stop(StopCause::Ended(GuestEnd::Init)));
        }
        // The watchdog: a Linux whose every CPU stays halted with interrupts off never goes
        // on by itself (its CPUs' preemption timers still bring them here).
        if self.watched && self.timer.is_some() {
            const ACTIVITY_HLT: u64 = 1;
            const RFLAGS_IF: u64 = 1 << 9;
            let dead = vmcs::read(guest::ACTIVITY_STATE)? == ACTIVITY_HLT
                && vmcs::read(guest::RFLAGS)? & RFLAGS_IF == 0;
            if linux_cpus::watch(self.own_cpus, self.apic_id, dead) {
                return Ok(Action::Stop(StopCause::Ended(GuestEnd::Hung)));
            }
        }
        if let Some(every) = self.timer.and_then(|t| t.report_every_tsc) {
            let now = crate::arch::rdtsc();
            if now >= self.next_report_tsc {
                if self.next_report_tsc != 0 {
                    events.exit_report_due();
                }
                self.next_report_tsc = now.saturating_add(every);
            }
        }
        self.exits.handle(exit, &mut self.state.regs)
    }

    /// Carries out `action`; `Some` if the guest stops.
    fn act(
        &mut self,
        action: Action,
        events: &impl RunEvents,
    ) -> Result<Option<StopCause>, VmxError> {
        match action {
            Action::Resume => {}
            Action::Skip => skip_instruction()?,
            Action::InjectGp => inject_gp()?,
            Action::InjectUd => inject_ud()?,
            Action::GuestHello => {
                events.guest_hello(self.index, self.apic_id, self.partition);
                skip_instruction()?;
            }
            Action::Stop(cause) => return Ok(Some(cause)),
        }
        Ok(None)
    }

    /// Reports why the guest stopped, then `counts` (this CPU's exit counts line).
    pub fn report_stop(&self, stopped: Stopped, counts: impl fmt::Display) {
        stop::report(self, &self.state.regs, stopped, counts);
    }
}

/// Makes the guest step over the instruction that exited.
fn skip_instruction() -> Result<(), VmxError> {
    let len = vmcs::read(ro::VMEXIT_INSTRUCTION_LEN)?;
    let rip = vmcs::read(guest::RIP)?;
    vmcs::write(guest::RIP, rip.wrapping_add(len))
}

/// Makes the next VM entry deliver #GP(0) to the guest.
/// Whether a guest started this way is Linux itself (the watchdog's business).
fn runs_linux(start: &GuestStart) -> bool {
    matches!(start, GuestStart::Linux(_) | GuestStart::LinuxSecondary(_))
}

/// Whether a guest started this way says hello once (the RT kernel and the start-up stub do;
/// Linux does not).
fn says_hello(start: &GuestStart) -> bool {
    matches!(start, GuestStart::Rt(_) | GuestStart::Stub { .. })
}

/// Delivers #UD at the next entry (no error code): the instruction does not complete.
fn inject_ud() -> Result<(), VmxError> {
    const UD: u64 = 6;
    const HARDWARE_EXCEPTION: u64 = 3 << 8;
    const VALID: u64 = 1 << 31;
    vmcs::write(
        control::VMENTRY_INTERRUPTION_INFO_FIELD,
        UD | HARDWARE_EXCEPTION | VALID,
    )
}

fn inject_gp() -> Result<(), VmxError> {
    const GP: u64 = 13;
    const HARDWARE_EXCEPTION: u64 = 3 << 8;
    const DELIVER_ERROR_CODE: u64 = 1 << 11;
    const VALID: u64 = 1 << 31;
    vmcs::write(control::VMENTRY_EXCEPTION_ERR_CODE, 0)?;
    vmcs::write(
        control::VMENTRY_INTERRUPTION_INFO_FIELD,
        GP | HARDWARE_EXCEPTION | DELIVER_ERROR_CODE | VALID,
    )
}
