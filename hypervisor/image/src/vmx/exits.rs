//! The exit handlers: what each VM exit the hypervisor understands means, decided as an
//! [`Action`] that the run loop (`vcpu`) carries out. A handler never ends the guest
//! itself and never reaches above the VMX layer: it answers the guest (registers, the
//! devices Linux reaches only through the hypervisor), and says what comes next.
//!
//! Handled: VMCALL (the hypercall ABI; from user space only the doorbell), CPUID
//! (sanitized), writes to the MSRs the bitmap intercepts (the x2APIC ICR, filtered to the
//! partition's own CPUs, with INIT and start-up IPIs among Linux's CPUs emulated,
//! `linux_cpus`; IA32_APIC_BASE, IA32_FEATURE_CONTROL, IA32_TSC and IA32_TSC_ADJUST,
//! refused), reads of MSRs outside the bitmap (#GP), the VMX instructions (#UD, as on a CPU
//! without VMX), XSETBV (checked, then executed), IN and OUT on ports the I/O bitmap does not
//! pass (Linux's platform view, `linux_devices`), Linux's accesses to the IOAPIC (decoded and
//! filtered, `linux_devices`) and to the xAPIC page (completed as if nothing answered), a
//! stale INIT and the preemption timer. Linux's ACPI power-off or reset ends its guest.
//! Anything else (another access to memory the partition does not own included) stops the
//! guest as unhandled. Every refusal is counted per partition and kind (`reports::refused`)
//! and logged within a per-CPU budget.
// Executes XSETBV for the guest and writes the x2APIC ICR for the IPIs it may send.
#![allow(unsafe_code)]

use bulkhead_abi::console::Refusal;
use bulkhead_abi::hypercall::{Call, Hypercall, Status};
use bulkhead_config::PartitionId;
use hv_core::devices::icr;
use hv_core::memory::addr::GuestPhysAddr;
use hv_core::reports::log_budget::LogBudget;
use hv_core::vmx::cpuid::{self, CpuidRegs, HostFacts};
use hv_core::vmx::exit::{ExitReason, reason};

use super::vcpu::GuestRegs;
use super::vmcs::{self, VmxError, guest, ro};
use crate::arch::msr;
use crate::linux_devices::RefusedConfig;
use crate::{channels, linux_cpus, linux_devices, reports};

/// What the run loop does after an exit.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Resume the guest where it is (the handler set RIP if it had to).
    Resume,
    /// Step over the exiting instruction, then resume.
    Skip,
    /// Deliver #GP(0) to the guest (the instruction does not complete), then resume.
    InjectGp,
    /// Deliver #UD to the guest (the instruction does not exist for it), then resume.
    InjectUd,
    /// A start-up guest said hello (VMCALL `HELLO`): step over the VMCALL, tell the CPU's
    /// launch code, resume.
    GuestHello,
    /// Stop the guest.
    Stop(StopCause),
}

/// Why a handler stops the guest.
#[derive(Debug, Clone, Copy)]
pub enum StopCause {
    /// The exit is not one the hypervisor handles (or not in this form).
    Unhandled,
    /// The guest asked to end.
    Ended(GuestEnd),
}

/// A guest's own request to end.
#[derive(Debug, Clone, Copy)]
pub enum GuestEnd {
    PowerOff,
    Reset(hv_core::devices::linux_io::ResetKind),
    /// Another CPU of the partition ended its guest, and with it the partition's.
    WithPartition,
    /// Every CPU of the partition stayed halted with interrupts off for the watchdog's
    /// limit: it hangs.
    Hung,
    /// Linux armed its watchdog and did not feed it within this many seconds.
    WatchdogExpired {
        timeout_s: u64,
    },
    /// Another CPU of the partition sent this one an INIT: this CPU alone leaves its guest
    /// and waits for a start-up IPI; the partition goes on.
    Init,
}

/// Accesses to unowned ports per CPU that are logged.
const LOGGED_PORTS: u64 = 16;

/// The local APIC's MMIO page in xAPIC mode (its reset base); the hypervisor runs every CPU
/// in x2APIC mode, where nothing answers there.
const XAPIC_PAGE: u64 = 0xfee0_0000;

/// Refusals of each kind per CPU that are logged; every one is counted (`reports::refused`).
const LOGGED_REFUSALS: u64 = 8;

/// The current privilege level of the guest: its SS's DPL (SDM Vol. 3A, 5.5).
fn guest_cpl() -> Result<u64, VmxError> {
    Ok((vmcs::read(guest::SS_ACCESS_RIGHTS)? >> 5) & 3)
}

/// The call a decoded hypercall is, if the ABI defines it.
fn call_number(call: Hypercall) -> Option<Call> {
    Call::from_number(call.encode().0)
}

/// How much of each of a CPU's log budgets is spent: only the first few of each kind of
/// event a guest can repeat are logged. Kept across the CPU's guest restarts.
#[derive(Debug, Clone, Copy)]
struct LogBudgets {
    /// Refusals, a budget per kind (in `Refusal::ALL`'s order): a flood of one kind (a user
    /// process's hypercalls) never silences another (root's IOAPIC accesses).
    refusals: [LogBudget; Refusal::ALL.len()],
    /// Accesses to ports without a device.
    unowned_ports: LogBudget,
    /// Refused PCI configuration writes (Linux's own probing writes to functions it may only
    /// read, such as the host bridge's BARs, use some).
    refused_config: LogBudget,
    /// Refused configuration writes to functions Linux owns.
    refused_owned_config: LogBudget,
    /// INITs this CPU sent to running CPUs of its partition.
    cpu_resets: LogBudget,
}

impl LogBudgets {
    const fn new() -> Self {
        Self {
            refusals: [LogBudget::new(LOGGED_REFUSALS); Refusal::ALL.len()],
            unowned_ports: LogBudget::new(LOGGED_PORTS),
            refused_config: LogBudget::new(LOGGED_PORTS),
            refused_owned_config: LogBudget::new(LOGGED_REFUSALS),
            cpu_resets: LogBudget::new(LOGGED_REFUSALS),
        }
    }
}

/// One CPU's exit handlers and what they remember of its guest.
pub struct ExitHandler {
    index: usize,
    apic_id: u32,
    partition: PartitionId,
    host_facts: HostFacts,
    /// The partition's CPUs (x2APIC IDs): where this CPU's IPIs may go.
    own_cpus: &'static [u32],
    /// What this CPU has logged of the events its guest can repeat.
    budgets: LogBudgets,
    /// Whether the guest may still say hello: a start-up guest (the RT kernel, Linux's stub)
    /// that has not yet.
    hello_expected: bool,
}

impl ExitHandler {
    /// The handlers of CPU `index` (`apic_id`, one of `own_cpus`) in `partition`, with
    /// nothing remembered yet.
    pub fn new(
        index: usize,
        apic_id: u32,
        partition: PartitionId,
        host_facts: HostFacts,
        own_cpus: &'static [u32],
        hello_expected: bool,
    ) -> Self {
        Self {
            hello_expected,
            index,
            apic_id,
            partition,
            host_facts,
            own_cpus,
            budgets: LogBudgets::new(),
        }
    }

    /// Carries over what `old` (the handlers of this CPU's previous guest) spent of its log
    /// budgets.
    pub fn keep_log_budgets(&mut self, old: &Self) {
        self.budgets = old.budgets;
    }

    /// Handles one exit of the guest whose registers are `regs`.
    pub fn handle(&mut self, exit: ExitReason, regs: &mut GuestRegs) -> Result<Action, VmxError> {
        match exit.basic() {
            reason::VMCALL => {
                let mut action = Action::Skip;
                let call = Hypercall::decode(regs.rax, regs.rbx);
                let user_space = guest_cpl()? == 3;
                regs.rax = match call {
                    _ if user_space
                        && !call_number(call).is_some_and(Call::user_space_may_call) =>
                    {
                        self.refused(
                            Refusal::Hypercall,
                            format_args!("hypercall {:#x} from user space refused", regs.rax),
                        );
                        Status::NotPermitted
                    }
                    Hypercall::Hello { .. } if !self.hello_expected => {
                        self.refused(
                            Refusal::Hypercall,
                            format_args!(
                                "HELLO from a CPU that runs no start-up guest or said it already"
                            ),
                        );
                        Status::NotPermitted
                    }
                    Hypercall::Hello { .. } => {
                        self.hello_expected = false;
                        action = Action::GuestHello;
                        Status::Ok
                    }
                    // Each side rings the other, naming the channel by its base in its own
                    // guest-physical space; Linux from any privilege level (a Linux program
                    // uses its channels without a kernel module).
                    // The base is the guest's claim: an address no partition can have is no
                    // channel.
                    Hypercall::Doorbell { channel_base } => {
                        match (GuestPhysAddr::new(channel_base), self.partition) {
                            (None, _) => Status::NoSuchChannel,
                            (Some(base), PartitionId::Linux) => channels::ring(base),
                            (Some(base), PartitionId::Rt) => channels::ring_linux(base),
                        }
                    }
                    // The RT kernel's own device lines; Linux has none to mask.
                    Hypercall::Line { .. } if self.partition != PartitionId::Rt => {
                        self.refused(
                            Refusal::Hypercall,
                            format_args!("LINE from the Linux partition refused"),
                        );
                        Status::NotPermitted
                    }
                    Hypercall::Line { line: None, .. } => Status::NoSuchLine,
                    Hypercall::Line {
                        line: Some(line),
                        unmask,
                    } => crate::rt_lines::set_masked(line, !unmask),
                    Hypercall::Unknown { number } => {
                        self.refused(
                            Refusal::Hypercall,
                            format_args!("unknown hypercall {number:#x}"),
                        );
                        Status::UnknownCall
                    }
                }
                .raw();
                Ok(action)
            }
            reason::CPUID => {
                let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
                let real = core::arch::x86_64::__cpuid_count(leaf, subleaf);
                let r = cpuid::sanitize(
                    leaf,
                    subleaf,
                    CpuidRegs {
                        eax: real.eax,
                        ebx: real.ebx,
                        ecx: real.ecx,
                        edx: real.edx,
                    },
                    self.host_facts,
                );
                let r = cpuid::reflect_guest_cr4(leaf, subleaf, r, vmcs::read(guest::CR4)?);
                regs.rax = u64::from(r.eax);
                regs.rbx = u64::from(r.ebx);
                regs.rcx = u64::from(r.ecx);
                regs.rdx = u64::from(r.edx);
                Ok(Action::Skip)
            }
            reason::WRMSR => {
                self.write_msr(regs);
                Ok(Action::Skip)
            }
            reason::RDMSR => {
                // The MSR bitmap passes every read it covers; reads that exit are of MSRs
                // outside its ranges, which a partition has no business with: #GP, as for
                // an MSR the CPU does not have.
                Ok(Action::InjectGp)
            }
            reason::XSETBV => Ok(self.xsetbv(regs)),
            reason::IO_INSTRUCTION => self.io_instruction(regs),
            reason::EPT_VIOLATION => self.ept_violation(regs),
            reason::TRIPLE_FAULT => Ok(Action::Stop(StopCause::Unhandled)),
            // A CPU without VMX (which is what CPUID shows the guest) raises #UD: only the
            // program that tried, user space included, is affected.
            r if hv_core::vmx::exit::undefined_in_guest(r) => {
                self.refused(
                    Refusal::Instruction,
                    format_args!("{exit} in the guest: #UD (no VMX in a partition)"),
                );
                Ok(Action::InjectUd)
            }
            // A real INIT is sent only by the hypervisor, to end this guest with its partition
            // where the CPU has no preemption timer (the run loop saw the stop request). One
            // without a request is stale: ignored.
            reason::INIT => Ok(Action::Resume),
            // Its work (the stop request, the exit report) is the run loop's, for every exit.
            reason::PREEMPTION_TIMER => Ok(Action::Resume),
            _ => Ok(Action::Stop(StopCause::Unhandled)),
        }
    }

    /// A guest write to an intercepted MSR (`partition::WRITE_INTERCEPTS`).
    fn write_msr(&mut self, regs: &GuestRegs) {
        let (number, value) = (regs.rcx as u32, (regs.rdx << 32) | (regs.rax & 0xffff_ffff));
        match number {
            msr::X2APIC_ICR => {
                let action = icr::filter(value, self.apic_id, self.own_cpus);
                for &send in action.sends.as_slice() {
                    // SAFETY: x2APIC is on (the feature check enabled it); the filter
                    // addresses only this partition's CPUs, by physical ID.
                    unsafe { msr::write(msr::X2APIC_ICR, send) };
                }
                for &start in action.starts.as_slice() {
                    self.start_cpu(value, start);
                }
                if let Some(why) = action.refused {
                    self.refused(Refusal::Ipi, format_args!("IPI (ICR {value:#x}): {why}"));
                }
            }
            // SAFETY: reading the APIC base MSR of this CPU has no side effects.
            msr::IA32_APIC_BASE if value == unsafe { msr::read(msr::IA32_APIC_BASE) } => {}
            msr::IA32_TSC | msr::IA32_TSC_ADJUST => self.refused(
                Refusal::Msr,
                format_args!(
                    "write of {value:#x} to MSR {number:#x} ignored: the time stamp counter is the hypervisor's clock"
                ),
            ),
            _ => self.refused(
                Refusal::Msr,
                format_args!(
                    "write of {value:#x} to MSR {number:#x} ignored{}",
                    if self.partition == PartitionId::Linux {
                        ": not one of the MSRs Linux's CPUs may write"
                    } else {
                        ""
                    }
                ),
            ),
        }
    }

    /// An INIT or start-up IPI for another CPU of the partition, emulated: only Linux
    /// starts CPUs (the RT kernel's are started by the hypervisor), and only its secondary
    /// ones (the boot CPU, started by the hypervisor, cannot be reset). An INIT to a running
    /// secondary CPU resets it (`linux_cpus::deliver`).
    fn start_cpu(&mut self, value: u64, start: icr::StartRequest) {
        use hv_core::devices::ap_start::Delivery;
        if self.partition != PartitionId::Linux {
            self.refused(
                Refusal::Ipi,
                format_args!(
                    "IPI (ICR {value:#x}): INIT and start-up are for the Linux partition only"
                ),
            );
            return;
        }
        if self.own_cpus.first() == Some(&start.target) {
            self.refused(
                Refusal::Ipi,
                format_args!(
                    "IPI (ICR {value:#x}): INIT or start-up to Linux's boot CPU (APIC ID {}), which only the hypervisor starts",
                    start.target
                ),
            );
            return;
        }
        if linux_cpus::deliver(self.own_cpus, start) == Delivery::Reset
            && let Some(tail) = self
                .budgets
                .cpu_resets
                .next("further INITs from this CPU are not logged")
        {
            log::info!(
                "cpu {} (linux partition): INIT to the running CPU with APIC ID {}: it leaves its guest and waits for a start-up IPI{tail}",
                self.index,
                start.target
            );
        }
    }

    /// XSETBV always exits: check the new XCR0 as the CPU would (#GP otherwise), then
    /// load it. The guest's XCR0 stays loaded while the hypervisor runs; the hypervisor's
    /// own code uses only legacy SSE, whose state FXSAVE covers.
    fn xsetbv(&mut self, regs: &GuestRegs) -> Action {
        let (index, value) = (regs.rcx as u32, (regs.rdx << 32) | (regs.rax & 0xffff_ffff));
        let d = core::arch::x86_64::__cpuid_count(0xd, 0);
        let supported = u64::from(d.eax) | (u64::from(d.edx) << 32);
        if index != 0 || !hv_core::vmx::cpuid::xcr0_valid(value, supported) {
            return Action::InjectGp;
        }
        // SAFETY: XCR0 value checked against what the CPU supports and the architectural
        // rules, so XSETBV does not fault; it affects only this CPU's extended state.
        unsafe {
            core::arch::asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack));
        }
        Action::Skip
    }

    /// IN/OUT to a port the I/O bitmap does not pass through: the port has no device for
    /// this partition (reads return all ones, writes are dropped).
    fn io_instruction(&mut self, regs: &mut GuestRegs) -> Result<Action, VmxError> {
        let q = vmcs::read(ro::EXIT_QUALIFICATION)?;
        let size = (q & 7) as u32 + 1;
        let input = q & (1 << 3) != 0;
        let string = q & (1 << 4) != 0;
        let port = (q >> 16) as u16;
        if string {
            log::warn!(
                "cpu {} ({} partition): string I/O on port {port:#x} is not emulated",
                self.index,
                self.partition
            );
            return Ok(Action::Stop(StopCause::Unhandled));
        }
        let write = (!input).then_some(regs.rax as u32);
        // Each partition's own view: Linux's emulated devices are never the RT partition's.
        let result = match self.partition {
            PartitionId::Linux => linux_devices::port_access(port, size as u8, write),
            PartitionId::Rt => crate::rt_pci::port_access(port, size as u8, write),
        };
        if result.unowned {
            self.unowned_port(port, !input);
        }
        if let Some(refused) = &result.refused {
            reports::refused(self.partition, Refusal::PciConfig);
            // Linux's own boot probing writes to functions it may only read; a write that
            // would move a function of its own outside what it owns never comes from it.
            let budget = match refused {
                RefusedConfig::Filtered(_) => &mut self.budgets.refused_config,
                RefusedConfig::Owned { .. } => &mut self.budgets.refused_owned_config,
            };
            if let Some(tail) =
                budget.next("further ones are counted in the exit report's refusals")
            {
                log::info!(
                    "cpu {} ({} partition): PCI {refused}{tail}",
                    self.index,
                    self.partition
                );
            }
        }
        if let Some(v) = result.read.filter(|_| input) {
            regs.rax = match size {
                4 => u64::from(v),
                2 => (regs.rax & !0xffff) | u64::from(v & 0xffff),
                _ => (regs.rax & !0xff) | u64::from(v & 0xff),
            };
        }
        Ok(match result.event {
            linux_devices::Event::Done => Action::Skip,
            linux_devices::Event::PowerOff => Action::Stop(StopCause::Ended(GuestEnd::PowerOff)),
            linux_devices::Event::Reset(how) => {
                Action::Stop(StopCause::Ended(GuestEnd::Reset(how)))
            }
        })
    }

    fn unowned_port(&mut self, port: u16, write: bool) {
        reports::refused(self.partition, Refusal::Port);
        if let Some(tail) = self
            .budgets
            .unowned_ports
            .next("further accesses are counted in the exit report's refusals")
        {
            log::info!(
                "cpu {} ({} partition): {} port {port:#x}: no device of this partition{tail}",
                self.index,
                self.partition,
                if write { "write to" } else { "read of" },
            );
        }
    }

    /// A guest touched guest-physical memory its EPT does not map (or maps otherwise):
    /// Linux's IOAPIC accesses are emulated; anything else stops the guest.
    fn ept_violation(&mut self, regs: &mut GuestRegs) -> Result<Action, VmxError> {
        let gpa = vmcs::read(ro::GUEST_PHYSICAL_ADDR_FULL)?;
        let q = vmcs::read(ro::EXIT_QUALIFICATION)?;
        let (is_write, is_fetch) = (q & 2 != 0, q & 4 != 0);
        if self.partition == PartitionId::Linux && !is_fetch && linux_devices::is_ioapic(gpa) {
            return self.emulate_ioapic(gpa, is_write, regs);
        }
        if self.partition == PartitionId::Linux && !is_fetch && gpa & !0xfff == XAPIC_PAGE {
            return self.emulate_absent_xapic(gpa, is_write, regs);
        }
        log::warn!(
            "cpu {} ({} partition): {} of guest-physical {gpa:#x}, which the partition does not own",
            self.index,
            self.partition,
            if q & 2 != 0 {
                "write"
            } else if q & 4 != 0 {
                "instruction fetch"
            } else {
                "read"
            }
        );
        Ok(Action::Stop(StopCause::Unhandled))
    }

    fn emulate_ioapic(
        &mut self,
        gpa: u64,
        write: bool,
        r: &mut GuestRegs,
    ) -> Result<Action, VmxError> {
        let mut refusal = None;
        let action = self.emulate_mmio(gpa, r, |rip, paging, file, rflags| {
            let (len, refused) =
                linux_devices::ioapic_access(gpa, write, rip, paging, file, rflags)?;
            refusal = refused;
            Ok(len)
        })?;
        if let Some(why) = refusal {
            self.refused(
                Refusal::Ioapic,
                format_args!("IOAPIC access at {gpa:#x}: {why}"),
            );
        }
        Ok(action)
    }

    /// A Linux access to the xAPIC page: in x2APIC mode no device answers there, so it is
    /// completed as a PC completes an access nobody answers (reads all ones, writes dropped),
    /// counted and logged; Linux goes on.
    fn emulate_absent_xapic(
        &mut self,
        gpa: u64,
        write: bool,
        r: &mut GuestRegs,
    ) -> Result<Action, VmxError> {
        let action = self.emulate_mmio(gpa, r, |rip, paging, file, rflags| {
            linux_devices::absent_device_access(write, rip, paging, file, rflags)
        })?;
        if matches!(action, Action::Resume) {
            self.refused(
                Refusal::Memory,
                format_args!(
                    "{} of the xAPIC page at {gpa:#x}: no device there in x2APIC mode ({})",
                    if write { "write" } else { "read" },
                    if write { "dropped" } else { "all ones" }
                ),
            );
        }
        Ok(action)
    }

    /// Runs `emulate` on the guest's instruction (at its RIP, with its paging state, its
    /// register file in decoding order and its RFLAGS), then steps over it; an instruction
    /// that cannot be emulated stops the guest.
    fn emulate_mmio(
        &mut self,
        gpa: u64,
        r: &mut GuestRegs,
        emulate: impl FnOnce(
            u64,
            &hv_core::memory::guest_paging::PagingState,
            &mut [u64; 16],
            &mut u64,
        ) -> Result<u8, linux_devices::MmioError>,
    ) -> Result<Action, VmxError> {
        let paging = hv_core::memory::guest_paging::PagingState {
            cr0: vmcs::read(guest::CR0)?,
            cr3: vmcs::read(guest::CR3)?,
            cr4: vmcs::read(guest::CR4)?,
            efer: vmcs::read(guest::IA32_EFER_FULL)?,
        };
        let rip = vmcs::read(guest::RIP)?;
        let mut file = [
            r.rax,
            r.rcx,
            r.rdx,
            r.rbx,
            vmcs::read(guest::RSP)?,
            r.rbp,
            r.rsi,
            r.rdi,
            r.r8,
            r.r9,
            r.r10,
            r.r11,
            r.r12,
            r.r13,
            r.r14,
            r.r15,
        ];
        let rflags = vmcs::read(guest::RFLAGS)?;
        let mut new_rflags = rflags;
        match emulate(rip, &paging, &mut file, &mut new_rflags) {
            Ok(len) => {
                if new_rflags != rflags {
                    vmcs::write(guest::RFLAGS, new_rflags)?;
                }
                [
                    r.rax,
                    r.rcx,
                    r.rdx,
                    r.rbx,
                    _,
                    r.rbp,
                    r.rsi,
                    r.rdi,
                    r.r8,
                    r.r9,
                    r.r10,
                    r.r11,
                    r.r12,
                    r.r13,
                    r.r14,
                    r.r15,
                ] = file;
                vmcs::write(guest::RIP, rip.wrapping_add(u64::from(len)))?;
                Ok(Action::Resume)
            }
            Err(e) => {
                log::warn!(
                    "cpu {} ({} partition): access at {gpa:#x} from RIP {rip:#x} not emulated: {e}",
                    self.index,
                    self.partition
                );
                Ok(Action::Stop(StopCause::Unhandled))
            }
        }
    }

    /// Counts a refusal of `kind` for the partition, and logs it within this CPU's budget
    /// for its kind (Linux's own boot writes a few MSRs it may not, a user process may flood
    /// hypercalls: neither uses up the lines of another kind).
    fn refused(&mut self, kind: Refusal, what: core::fmt::Arguments<'_>) {
        reports::refused(self.partition, kind);
        let index = Refusal::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let budget = &mut self.budgets.refusals[index];
        let later =
            "further refusals of this kind on this CPU are counted in the exit report's refusals";
        if let Some(tail) = budget.next(later) {
            log::warn!(
                "cpu {} ({} partition): {what}{tail}",
                self.index,
                self.partition
            );
        }
    }
}
