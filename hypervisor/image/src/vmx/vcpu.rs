//! One virtual CPU: its VMCS (host state, controls, initial guest state), the
//! enter/exit loop, and the exit handler.
//!
//! Exits the hypervisor understands are handled and the guest resumed: VMCALL (the
//! hypercall ABI), CPUID (sanitized), writes to the MSRs the bitmap intercepts (the x2APIC
//! ICR, filtered to the partition's own CPUs, with INIT and start-up IPIs among Linux's
//! CPUs emulated, `linux_cpus`; IA32_APIC_BASE and IA32_FEATURE_CONTROL, ignored), reads
//! of MSRs outside the bitmap (#GP), XSETBV (checked, then executed), IN and OUT on ports
//! the I/O bitmap does not pass (Linux's platform view, `linux_devices`), Linux's accesses
//! to the IOAPIC (decoded and filtered, `linux_devices`) and the preemption timer of the
//! CPU that reports exit counts. Linux's ACPI power-off or reset ends its guest with a line
//! saying so. Any other exit (an access to memory the partition does not own included), a
//! failed VM entry, or a guest triple fault stops this guest with the exit and a register
//! dump; the CPU then spins in VMX root operation. Whenever a Linux CPU's guest ends, the
//! guests of the partition's other CPUs end with it (a real INIT, sent by the hypervisor,
//! pulls each out of VMX non-root operation: `linux_cpus`). The other partition is
//! unaffected.
//!
//! The VMCS asks for nothing an RT kernel does in steady state: no external-interrupt, NMI
//! or HLT exiting, no exception exits, the TSC-deadline and x2APIC MSRs (EOI, TPR, timer
//! LVT) passed through, so its timer interrupts arrive through its own IDT.

use core::mem::offset_of;

use bulkhead_config::PartitionId;
use hv_core::cpuid::{self, CpuidRegs, HostFacts};
use hv_core::exit::{ExitCounters, ExitReason, reason};
use hv_core::hypercall::{self, Hypercall};
use hv_core::icr;
use hv_core::vmx_caps::{
    EntryControls, PIN_PREEMPTION_TIMER, SecondaryControls, VmxControls, VmxMsrs,
};

use super::vmcs::{self, VmxError, control, guest, host, ro};
use crate::arch::cpu::{CpuTables, KERNEL_CS, KERNEL_DS, KERNEL_TR};
use crate::arch::{GprDump, msr};
use crate::memory;
use crate::partition::{GuestStart, PartitionResources};

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

/// Why a guest was stopped.
enum Stop {
    Unhandled(ExitReason),
    Ended(GuestEnd),
    EntryFailed(VmxError),
    Vmcs(VmxError),
}

fn read_cr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reading control registers has no side effects.
    unsafe {
        match n {
            0 => core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)),
            3 => core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)),
            _ => core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)),
        }
    }
    v
}

/// The virtual CPU of one physical CPU.
pub struct Vcpu {
    pub index: usize,
    pub apic_id: u32,
    pub partition: PartitionId,
    /// Physical address of this CPU's VMCS region.
    vmcs: u64,
    state: &'static mut VcpuState,
    launched: bool,
    host_facts: HostFacts,
    /// The partition's CPUs (x2APIC IDs): where this CPU's IPIs may go.
    own_cpus: &'static [u32],
    /// The VMX-preemption timer of a Linux CPU (none on RT CPUs, or where VT-x lacks it).
    timer: Option<LinuxTimer>,
    /// When the reporting CPU prints the exit counts next (TSC).
    next_report_tsc: u64,
    /// Guest MSR writes refused so far (only the first few are logged).
    refused_writes: LogBudget,
    /// Accesses to ports without a device so far (only the first few are logged).
    unowned_ports: LogBudget,
    /// Why the guest ended, when it asked to (power-off, reset).
    stop_reason: Option<GuestEnd>,
}

/// A guest's own request to end.
#[derive(Debug, Clone, Copy)]
enum GuestEnd {
    PowerOff,
    Reset(hv_core::linux_io::ResetKind),
    /// Another CPU of the partition ended its guest, and with it the partition's.
    WithPartition,
}

/// Counts events of one kind and lets only the first few be logged.
struct LogBudget {
    seen: u64,
    logged: u64,
}

impl LogBudget {
    const fn new(logged: u64) -> Self {
        Self { seen: 0, logged }
    }

    /// Counts one event. `Some(tail)` if it is to be logged: `tail` is empty, or on the last
    /// logged one says that `later` (further ones are not logged).
    fn next(&mut self, later: &'static str) -> Option<LogTail> {
        self.seen += 1;
        (self.seen <= self.logged).then_some(LogTail((self.seen == self.logged).then_some(later)))
    }
}

/// The end of a rate-limited log line.
struct LogTail(Option<&'static str>);

impl core::fmt::Display for LogTail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(later) => write!(f, " ({later})"),
            None => Ok(()),
        }
    }
}

/// Accesses to unowned ports per CPU that are logged.
const LOGGED_PORTS: u64 = 16;

/// Guest MSR writes refused per CPU that are logged; the rest are only counted.
const LOGGED_REFUSALS: u64 = 8;

/// A Linux CPU's VMX-preemption timer: it brings the CPU out of its guest at least every
/// `ticks` timer ticks of guest time, so that the CPU notices that its partition is stopping
/// (`linux_cpus`) and, on the reporting CPU, prints the exit counts when they are due.
#[derive(Debug, Clone, Copy)]
pub struct LinuxTimer {
    /// Timer ticks (TSC ticks shifted by the CPU's timer rate) between timer exits.
    pub ticks: u32,
    /// TSC ticks between exit reports, on the CPU that prints them.
    pub report_every_tsc: Option<u64>,
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
        Self::make_current(vmcs_region.as_u64())?;
        // Fast strings (IA32_MISC_ENABLE bit 0) decide whether FSRM may be shown.
        // SAFETY: IA32_MISC_ENABLE exists on every CPU with VMX.
        let misc_enable = unsafe { msr::read(0x1a0) };
        let mut vcpu = Self {
            index,
            apic_id,
            partition: res.id,
            vmcs: vmcs_region.as_u64(),
            state,
            launched: false,
            host_facts: HostFacts {
                fast_strings_enabled: misc_enable & 1 != 0,
                kvm_compat_leaf: res.id == PartitionId::Linux,
                invpcid: controls.secondary & SecondaryControls::ENABLE_INVPCID.bits() != 0,
                xsaves: controls.secondary & SecondaryControls::ENABLE_XSAVES.bits() != 0,
                tsc_hz: crate::arch::time::tsc_hz(),
            },
            own_cpus,
            timer,
            next_report_tsc: 0,
            refused_writes: LogBudget::new(LOGGED_REFUSALS),
            unowned_ports: LogBudget::new(LOGGED_PORTS),
            stop_reason: None,
        };
        vcpu.program(tables, msrs, controls, res, start)?;
        Ok(vcpu)
    }

    /// VMCLEAR then VMPTRLD: the VMCS at `region` becomes current on this CPU, in the clear
    /// launch state.
    fn make_current(region: u64) -> Result<(), VmxError> {
        // SAFETY: `region` is this CPU's own VMCS region (allocated in `new`, revision
        // identifier written); no other CPU uses it.
        unsafe {
            x86::bits64::vmx::vmclear(region).map_err(|_| VmxError::Invalid)?;
            x86::bits64::vmx::vmptrld(region).map_err(|_| VmxError::Invalid)?;
        }
        Ok(())
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
        Self::setup_host(tables)?;
        let long_mode = matches!(start, GuestStart::Rt(_) | GuestStart::Linux(_));
        Self::setup_controls(
            controls,
            res,
            self.index,
            long_mode,
            self.timer.map(|t| t.ticks),
        )?;
        self.setup_guest(msrs, start)
    }

    /// Makes the guest start again from scratch as `start` (a Linux that restarts), on the
    /// same VMCS: cleared, refilled, launched anew; registers, FPU state and the exit
    /// handler's memory of the old guest forgotten.
    pub fn restart(
        &mut self,
        tables: &CpuTables,
        msrs: &VmxMsrs,
        controls: &VmxControls,
        res: &PartitionResources,
        start: GuestStart,
    ) -> Result<(), VmxError> {
        Self::make_current(self.vmcs)?;
        self.launched = false;
        self.stop_reason = None;
        self.state.regs = GuestRegs::default();
        self.state.guest_fx = [0; 512];
        self.refused_writes = LogBudget::new(LOGGED_REFUSALS);
        self.unowned_ports = LogBudget::new(LOGGED_PORTS);
        self.program(tables, msrs, controls, res, start)
    }

    fn setup_host(tables: &CpuTables) -> Result<(), VmxError> {
        // SAFETY: reading MSRs that exist on every x86-64 CPU.
        let (efer, pat, gs_base) = unsafe {
            (
                msr::read(msr::IA32_EFER),
                msr::read(msr::IA32_PAT),
                msr::read(msr::IA32_GS_BASE),
            )
        };
        vmcs::write(host::CR0, read_cr(0))?;
        vmcs::write(host::CR3, read_cr(3))?;
        vmcs::write(host::CR4, read_cr(4))?;
        vmcs::write(host::CS_SELECTOR, u64::from(KERNEL_CS))?;
        for f in [host::SS_SELECTOR, host::DS_SELECTOR, host::ES_SELECTOR] {
            vmcs::write(f, u64::from(KERNEL_DS))?;
        }
        vmcs::write(host::FS_SELECTOR, 0)?;
        vmcs::write(host::GS_SELECTOR, 0)?;
        vmcs::write(host::TR_SELECTOR, u64::from(KERNEL_TR))?;
        vmcs::write(host::FS_BASE, 0)?;
        vmcs::write(host::GS_BASE, gs_base)?;
        vmcs::write(host::TR_BASE, tables.tss_base())?;
        vmcs::write(host::GDTR_BASE, tables.gdt_base())?;
        vmcs::write(host::IDTR_BASE, crate::arch::interrupts::idt_base())?;
        vmcs::write(host::IA32_SYSENTER_CS, 0)?;
        vmcs::write(host::IA32_SYSENTER_ESP, 0)?;
        vmcs::write(host::IA32_SYSENTER_EIP, 0)?;
        vmcs::write(host::IA32_EFER_FULL, efer)?;
        vmcs::write(host::IA32_PAT_FULL, pat)?;
        vmcs::write(host::RIP, vmx_exit_entry as *const () as u64)?;
        Ok(())
    }

    fn setup_controls(
        c: &VmxControls,
        res: &PartitionResources,
        index: usize,
        long_mode: bool,
        timer_ticks: Option<u32>,
    ) -> Result<(), VmxError> {
        // Without the "save VMX-preemption timer value" exit control, every VM entry loads
        // the timer from this field again: it never needs rewriting.
        let pin = match timer_ticks {
            Some(ticks) => {
                vmcs::write(guest::VMX_PREEMPTION_TIMER_VALUE, u64::from(ticks))?;
                c.pin | PIN_PREEMPTION_TIMER
            }
            None => c.pin,
        };
        vmcs::write(control::PINBASED_EXEC_CONTROLS, u64::from(pin))?;
        vmcs::write(
            control::PRIMARY_PROCBASED_EXEC_CONTROLS,
            u64::from(c.primary),
        )?;
        vmcs::write(
            control::SECONDARY_PROCBASED_EXEC_CONTROLS,
            u64::from(c.secondary),
        )?;
        vmcs::write(control::VMEXIT_CONTROLS, u64::from(c.exit))?;
        let ia32e = EntryControls::IA32E_MODE_GUEST.bits();
        let entry = if long_mode {
            c.entry | ia32e
        } else {
            c.entry & !ia32e
        };
        vmcs::write(control::VMENTRY_CONTROLS, u64::from(entry))?;
        if c.secondary & SecondaryControls::ENABLE_XSAVES.bits() != 0 {
            // No XSAVES/XRSTORS exits for any supervisor state component.
            vmcs::write(control::XSS_EXITING_BITMAP_FULL, 0)?;
        }
        vmcs::write(control::EXCEPTION_BITMAP, 0)?;
        vmcs::write(control::PAGE_FAULT_ERR_CODE_MASK, 0)?;
        vmcs::write(control::PAGE_FAULT_ERR_CODE_MATCH, 0)?;
        vmcs::write(control::CR3_TARGET_COUNT, 0)?;
        vmcs::write(control::VMEXIT_MSR_STORE_COUNT, 0)?;
        vmcs::write(control::VMEXIT_MSR_LOAD_COUNT, 0)?;
        vmcs::write(control::VMENTRY_MSR_LOAD_COUNT, 0)?;
        vmcs::write(control::VMENTRY_INTERRUPTION_INFO_FIELD, 0)?;
        vmcs::write(control::IO_BITMAP_A_ADDR_FULL, res.io_bitmaps.as_u64())?;
        vmcs::write(
            control::IO_BITMAP_B_ADDR_FULL,
            res.io_bitmaps.as_u64() + 0x1000,
        )?;
        vmcs::write(control::MSR_BITMAPS_ADDR_FULL, res.msr_bitmap.as_u64())?;
        vmcs::write(control::EPTP_FULL, res.eptp)?;
        // VPID 0 belongs to the host; give each CPU its own tag.
        vmcs::write(control::VPID, index as u64 + 1)?;
        // The guest sees CR4.VMXE clear; writes that would clear it exit.
        vmcs::write(control::CR4_GUEST_HOST_MASK, 1 << 13)?;
        vmcs::write(control::CR4_READ_SHADOW, 0)?;
        vmcs::write(control::CR0_GUEST_HOST_MASK, 0)?;
        vmcs::write(control::CR0_READ_SHADOW, 0)?;
        Ok(())
    }

    /// The guest's first state: the stub in 32-bit protected mode with paging off; the
    /// RT kernel in 64-bit mode on its start-up page tables (`hv_core::rt_boot`), with
    /// RDI = RT_BOOT_MAGIC, RSI = boot information, RDX = partition CPU index; Linux's boot
    /// CPU per the 64-bit boot protocol; or a Linux secondary CPU in real mode where its
    /// start-up IPI points.
    fn setup_guest(&mut self, msrs: &VmxMsrs, start: GuestStart) -> Result<(), VmxError> {
        const CODE32: u64 = 0xc09b; // present, DPL 0, code exec/read accessed, D, G
        const CODE64: u64 = 0xa09b; // present, DPL 0, code exec/read accessed, L, G
        const DATA32: u64 = 0xc093; // present, DPL 0, data read/write accessed, B, G
        const TSS_BUSY: u64 = 0x8b;
        const UNUSABLE: u64 = 1 << 16;
        const CR0_PE_MP_ET_NE: u64 = 0x33;
        const CR0_ET_NE: u64 = 0x30;
        const CODE16: u64 = 0x9b; // present, DPL 0, code exec/read accessed, 16-bit, byte limit
        const DATA16: u64 = 0x93; // present, DPL 0, data read/write accessed, byte limit
        const CR0_WP_PG: u64 = (1 << 16) | (1 << 31);
        const CR4_PAE_OSFXSR_OSXMMEXCPT: u64 = (1 << 5) | (1 << 9) | (1 << 10);
        const EFER_LME_LMA_NXE: u64 = (1 << 8) | (1 << 10) | (1 << 11);
        // Selectors of the flat code and data segments (the boot GDT's for Linux).
        let (mut cs_sel, mut ds_sel, mut gdtr) = (0x08, 0x10, (0, 0));
        let mut real_mode = None;
        let (entry, cs_rights) = match start {
            GuestStart::Stub { entry } => {
                vmcs::write(guest::CR0, msrs.fix_cr0(CR0_PE_MP_ET_NE, true))?;
                vmcs::write(guest::CR3, 0)?;
                vmcs::write(guest::CR4, msrs.fix_cr4(0))?;
                vmcs::write(guest::IA32_EFER_FULL, 0)?;
                (entry, CODE32)
            }
            GuestStart::Rt(rt) => {
                let cr0 = msrs.fix_cr0(CR0_PE_MP_ET_NE | CR0_WP_PG, true);
                vmcs::write(guest::CR0, cr0)?;
                vmcs::write(guest::CR3, rt.cr3)?;
                vmcs::write(guest::CR4, msrs.fix_cr4(CR4_PAE_OSFXSR_OSXMMEXCPT))?;
                vmcs::write(guest::IA32_EFER_FULL, EFER_LME_LMA_NXE)?;
                let index = self.own_cpus.iter().position(|&a| a == self.apic_id);
                let regs = &mut self.state.regs;
                regs.rdi = u64::from(bulkhead_rt_abi::RT_BOOT_MAGIC);
                regs.rsi = rt.boot_info;
                regs.rdx = index.unwrap_or(0) as u64;
                (rt.entry, CODE64)
            }
            GuestStart::Linux(l) => {
                let cr0 = msrs.fix_cr0(CR0_PE_MP_ET_NE | CR0_WP_PG, true);
                vmcs::write(guest::CR0, cr0)?;
                vmcs::write(guest::CR3, l.cr3)?;
                vmcs::write(guest::CR4, msrs.fix_cr4(CR4_PAE_OSFXSR_OSXMMEXCPT))?;
                vmcs::write(guest::IA32_EFER_FULL, EFER_LME_LMA_NXE)?;
                self.state.regs.rsi = l.boot_params;
                cs_sel = crate::linux_loader::BOOT_CS;
                ds_sel = crate::linux_loader::BOOT_DS;
                gdtr = (l.gdt, l.gdt_limit);
                (l.entry, CODE64)
            }
            GuestStart::LinuxSecondary(e) => {
                // As after INIT and start-up: real mode, paging off (unrestricted guest).
                vmcs::write(guest::CR0, msrs.fix_cr0(CR0_ET_NE, true))?;
                vmcs::write(guest::CR3, 0)?;
                vmcs::write(guest::CR4, msrs.fix_cr4(0))?;
                vmcs::write(guest::IA32_EFER_FULL, 0)?;
                real_mode = Some(e);
                (e.rip, CODE16)
            }
        };
        // Flat 4 GiB segments, or real mode's: selector * 16 = base, 64 KiB limits, IVT at 0.
        let (cs_base, limit, data_rights, idtr_limit) = match real_mode {
            Some(e) => {
                cs_sel = e.cs_selector;
                ds_sel = 0;
                gdtr = (0, 0xffff);
                (e.cs_base, 0xffff, DATA16, 0x3ff)
            }
            None => (0, 0xffff_ffff, DATA32, 0),
        };
        vmcs::write(guest::DR7, 0x400)?;
        vmcs::write(guest::RSP, 0)?;
        vmcs::write(guest::RIP, entry)?;
        vmcs::write(guest::RFLAGS, 0x2)?;
        vmcs::write(guest::CS_SELECTOR, u64::from(cs_sel))?;
        vmcs::write(guest::CS_BASE, cs_base)?;
        vmcs::write(guest::CS_LIMIT, limit)?;
        vmcs::write(guest::CS_ACCESS_RIGHTS, cs_rights)?;
        for (sel, base, limit_field, ar) in [
            (
                guest::SS_SELECTOR,
                guest::SS_BASE,
                guest::SS_LIMIT,
                guest::SS_ACCESS_RIGHTS,
            ),
            (
                guest::DS_SELECTOR,
                guest::DS_BASE,
                guest::DS_LIMIT,
                guest::DS_ACCESS_RIGHTS,
            ),
            (
                guest::ES_SELECTOR,
                guest::ES_BASE,
                guest::ES_LIMIT,
                guest::ES_ACCESS_RIGHTS,
            ),
            (
                guest::FS_SELECTOR,
                guest::FS_BASE,
                guest::FS_LIMIT,
                guest::FS_ACCESS_RIGHTS,
            ),
            (
                guest::GS_SELECTOR,
                guest::GS_BASE,
                guest::GS_LIMIT,
                guest::GS_ACCESS_RIGHTS,
            ),
        ] {
            vmcs::write(sel, u64::from(ds_sel))?;
            vmcs::write(base, 0)?;
            vmcs::write(limit_field, limit)?;
            vmcs::write(ar, data_rights)?;
        }
        vmcs::write(guest::LDTR_SELECTOR, 0)?;
        vmcs::write(guest::LDTR_BASE, 0)?;
        vmcs::write(guest::LDTR_LIMIT, 0)?;
        vmcs::write(guest::LDTR_ACCESS_RIGHTS, UNUSABLE)?;
        vmcs::write(guest::TR_SELECTOR, 0)?;
        vmcs::write(guest::TR_BASE, 0)?;
        vmcs::write(guest::TR_LIMIT, 0xffff)?;
        vmcs::write(guest::TR_ACCESS_RIGHTS, TSS_BUSY)?;
        vmcs::write(guest::GDTR_BASE, gdtr.0)?;
        vmcs::write(guest::GDTR_LIMIT, u64::from(gdtr.1))?;
        vmcs::write(guest::IDTR_BASE, 0)?;
        vmcs::write(guest::IDTR_LIMIT, idtr_limit)?;
        vmcs::write(guest::IA32_DEBUGCTL_FULL, 0)?;
        vmcs::write(guest::IA32_PAT_FULL, 0x0007_0406_0007_0406)?;
        vmcs::write(guest::IA32_SYSENTER_CS, 0)?;
        vmcs::write(guest::IA32_SYSENTER_ESP, 0)?;
        vmcs::write(guest::IA32_SYSENTER_EIP, 0)?;
        vmcs::write(guest::INTERRUPTIBILITY_STATE, 0)?;
        vmcs::write(guest::ACTIVITY_STATE, 0)?;
        vmcs::write(guest::PENDING_DBG_EXCEPTIONS, 0)?;
        vmcs::write(guest::LINK_PTR_FULL, u64::MAX)?;
        Ok(())
    }

    /// Runs the guest for ever, handling its exits. Returns only when the guest was
    /// stopped (after reporting why).
    pub fn run(&mut self) {
        let linux = self.partition == PartitionId::Linux;
        if linux {
            crate::linux_cpus::entering(self.own_cpus, self.apic_id);
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
            match self.handle(exit) {
                Ok(true) => {}
                Ok(false) => match self.stop_reason {
                    Some(end) => break Stop::Ended(end),
                    None => break Stop::Unhandled(exit),
                },
                Err(e) => break Stop::Vmcs(e),
            }
        };
        let others = match stop {
            Stop::Ended(GuestEnd::WithPartition) => 0,
            _ if linux => crate::linux_cpus::stop_others(self.own_cpus, self.apic_id),
            _ => 0,
        };
        if linux {
            crate::linux_cpus::left(self.own_cpus, self.apic_id);
        }
        self.report_stop(stop, others);
    }

    /// Handles one exit. `Ok(false)` means "not handled: stop the guest".
    fn handle(&mut self, exit: ExitReason) -> Result<bool, VmxError> {
        // Every exit of a Linux CPU (the preemption timer makes one at least every few
        // milliseconds) first looks whether its partition is stopping.
        if self.partition == PartitionId::Linux
            && crate::linux_cpus::take_stop_request(self.own_cpus, self.apic_id)
        {
            self.stop_reason = Some(GuestEnd::WithPartition);
            return Ok(false);
        }
        if let Some(every) = self.timer.and_then(|t| t.report_every_tsc) {
            let now = crate::arch::rdtsc();
            if now >= self.next_report_tsc {
                if self.next_report_tsc != 0 {
                    crate::reports::report_exits();
                }
                self.next_report_tsc = now.saturating_add(every);
            }
        }
        match exit.basic() {
            reason::VMCALL => {
                let regs = &mut self.state.regs;
                regs.rax = match Hypercall::decode(regs.rax, regs.rbx) {
                    Hypercall::Hello { .. } => {
                        crate::reports::guest_said_hello(self.index, self.apic_id, self.partition);
                        hypercall::OK
                    }
                    // Each side rings the other, naming the channel by its base in its own
                    // guest-physical space; Linux from any privilege level (a Linux program
                    // uses its channels without a kernel module).
                    Hypercall::Doorbell { channel_base } => match self.partition {
                        PartitionId::Linux => crate::channels::ring(channel_base),
                        PartitionId::Rt => crate::channels::ring_linux(channel_base),
                    },
                    Hypercall::Unknown { number } => {
                        log::warn!("{} guest: unknown hypercall {number:#x}", self.partition);
                        hypercall::UNKNOWN_CALL
                    }
                };
                self.skip_instruction()?;
                Ok(true)
            }
            reason::CPUID => {
                let regs = &mut self.state.regs;
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
                self.skip_instruction()?;
                Ok(true)
            }
            reason::WRMSR => {
                self.write_msr()?;
                self.skip_instruction()?;
                Ok(true)
            }
            reason::RDMSR => {
                // The MSR bitmap passes every read it covers; reads that exit are of MSRs
                // outside its ranges, which a partition has no business with: #GP, as for
                // an MSR the CPU does not have.
                self.inject_gp()?;
                Ok(true)
            }
            reason::XSETBV => self.xsetbv(),
            reason::IO_INSTRUCTION => self.io_instruction(),
            reason::EPT_VIOLATION => self.ept_violation(),
            reason::TRIPLE_FAULT => Ok(false),
            // A real INIT is sent only by the hypervisor, to end this guest with its partition
            // where the CPU has no preemption timer (the stop request was seen above). One
            // without a request is stale: ignored.
            reason::INIT => Ok(true),
            // Its work (the stop request, the exit report) is done above for every exit.
            reason::PREEMPTION_TIMER => Ok(true),
            _ => Ok(false),
        }
    }

    /// A guest write to an intercepted MSR (the bitmap intercepts only these three).
    fn write_msr(&mut self) -> Result<(), VmxError> {
        let regs = &self.state.regs;
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
                    self.refused(format_args!("IPI (ICR {value:#x}): {why}"));
                }
            }
            // SAFETY: reading the APIC base MSR of this CPU has no side effects.
            msr::IA32_APIC_BASE if value == unsafe { msr::read(msr::IA32_APIC_BASE) } => {}
            _ => self.refused(format_args!(
                "write of {value:#x} to MSR {number:#x} ignored"
            )),
        }
        Ok(())
    }

    /// An INIT or start-up IPI for another CPU of the partition, emulated: only Linux
    /// starts CPUs (the RT kernel's are started by the hypervisor), and a running CPU
    /// cannot be reset.
    fn start_cpu(&mut self, value: u64, start: icr::StartRequest) {
        use hv_core::ap_start::Delivery;
        if self.partition != PartitionId::Linux {
            self.refused(format_args!(
                "IPI (ICR {value:#x}): INIT and start-up are for the Linux partition only"
            ));
            return;
        }
        if crate::linux_cpus::deliver(self.own_cpus, start) == Delivery::RunningCpu {
            self.refused(format_args!(
                "IPI (ICR {value:#x}): INIT to CPU with APIC ID {} whose guest runs (resetting a running CPU is not emulated)",
                start.target
            ));
        }
    }

    /// XSETBV always exits: check the new XCR0 as the CPU would (#GP otherwise), then
    /// load it. The guest's XCR0 stays loaded while the hypervisor runs; the hypervisor's
    /// own code uses only legacy SSE, whose state FXSAVE covers.
    fn xsetbv(&mut self) -> Result<bool, VmxError> {
        let regs = &self.state.regs;
        let (index, value) = (regs.rcx as u32, (regs.rdx << 32) | (regs.rax & 0xffff_ffff));
        let d = core::arch::x86_64::__cpuid_count(0xd, 0);
        let supported = u64::from(d.eax) | (u64::from(d.edx) << 32);
        if index != 0 || !hv_core::cpuid::xcr0_valid(value, supported) {
            self.inject_gp()?;
            return Ok(true);
        }
        // SAFETY: XCR0 value checked against what the CPU supports and the architectural
        // rules, so XSETBV does not fault; it affects only this CPU's extended state.
        unsafe {
            core::arch::asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack));
        }
        self.skip_instruction()?;
        Ok(true)
    }

    /// IN/OUT to a port the I/O bitmap does not pass through: the port has no device for
    /// this partition (reads return all ones, writes are dropped).
    fn io_instruction(&mut self) -> Result<bool, VmxError> {
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
            return Ok(false);
        }
        let write = (!input).then_some(self.state.regs.rax as u32);
        let result = crate::linux_devices::port_access(port, size as u8, write);
        if result.unowned {
            self.unowned_port(port, !input);
        }
        if let Some(v) = result.read.filter(|_| input) {
            let regs = &mut self.state.regs;
            regs.rax = match size {
                4 => u64::from(v),
                2 => (regs.rax & !0xffff) | u64::from(v & 0xffff),
                _ => (regs.rax & !0xff) | u64::from(v & 0xff),
            };
        }
        self.skip_instruction()?;
        match result.event {
            crate::linux_devices::Event::Done => Ok(true),
            crate::linux_devices::Event::PowerOff => {
                self.stop_reason = Some(GuestEnd::PowerOff);
                Ok(false)
            }
            crate::linux_devices::Event::Reset(how) => {
                self.stop_reason = Some(GuestEnd::Reset(how));
                Ok(false)
            }
        }
    }

    fn unowned_port(&mut self, port: u16, write: bool) {
        if let Some(tail) = self.unowned_ports.next("further accesses are not logged") {
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
    fn ept_violation(&mut self) -> Result<bool, VmxError> {
        let gpa = vmcs::read(ro::GUEST_PHYSICAL_ADDR_FULL)?;
        let q = vmcs::read(ro::EXIT_QUALIFICATION)?;
        let (is_write, is_fetch) = (q & 2 != 0, q & 4 != 0);
        if self.partition == PartitionId::Linux && !is_fetch && crate::linux_devices::is_ioapic(gpa)
        {
            return self.emulate_ioapic(gpa, is_write);
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
        Ok(false)
    }

    fn emulate_ioapic(&mut self, gpa: u64, write: bool) -> Result<bool, VmxError> {
        let paging = hv_core::guest_paging::PagingState {
            cr0: vmcs::read(guest::CR0)?,
            cr3: vmcs::read(guest::CR3)?,
            cr4: vmcs::read(guest::CR4)?,
            efer: vmcs::read(guest::IA32_EFER_FULL)?,
        };
        let rip = vmcs::read(guest::RIP)?;
        let r = &mut self.state.regs;
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
        match crate::linux_devices::ioapic_access(gpa, write, rip, &paging, &mut file) {
            Ok((len, refusal)) => {
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
                if let Some(why) = refusal {
                    self.refused(format_args!("IOAPIC access at {gpa:#x}: {why}"));
                }
                Ok(true)
            }
            Err(e) => {
                log::warn!(
                    "cpu {} ({} partition): IOAPIC access at {gpa:#x} from RIP {rip:#x} not emulated: {e}",
                    self.index,
                    self.partition
                );
                Ok(false)
            }
        }
    }

    /// Makes the next VM entry deliver #GP(0) to the guest.
    fn inject_gp(&self) -> Result<(), VmxError> {
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

    fn refused(&mut self, what: core::fmt::Arguments<'_>) {
        if let Some(tail) = self
            .refused_writes
            .next("further refusals on this CPU are not logged")
        {
            log::warn!(
                "cpu {} ({} partition): {what}{tail}",
                self.index,
                self.partition
            );
        }
    }

    fn skip_instruction(&self) -> Result<(), VmxError> {
        let len = vmcs::read(ro::VMEXIT_INSTRUCTION_LEN)?;
        let rip = vmcs::read(guest::RIP)?;
        vmcs::write(guest::RIP, rip.wrapping_add(len))
    }

    /// Reports why the guest stopped; `others`: how many other CPUs of the partition were
    /// asked to end their guests.
    fn report_stop(&self, stop: Stop, others: usize) {
        let (i, a) = (self.index, self.apic_id);
        let rd = |f| vmcs::read(f).unwrap_or(u64::MAX);
        let r = &self.state.regs;
        if let Stop::Ended(end) = stop {
            crate::console::write_block(|w| {
                match end {
                    GuestEnd::PowerOff => writeln!(
                        w,
                        "cpu {i} apic {a}: {} partition stopped: it powered off",
                        self.partition
                    )?,
                    GuestEnd::Reset(how) => writeln!(
                        w,
                        "cpu {i} apic {a}: {} partition stopped: it reset the machine ({how}); the reset is not passed on",
                        self.partition
                    )?,
                    GuestEnd::WithPartition => writeln!(
                        w,
                        "cpu {i} apic {a}: {} guest ended with its partition",
                        self.partition
                    )?,
                }
                if others > 0 {
                    writeln!(w, "  {others} other CPUs of the partition asked to stop")?;
                }
                match crate::reports::exit_counts_line(i) {
                    Some(line) => writeln!(w, "  {line}"),
                    None => writeln!(w, "  "),
                }
            });
            return;
        }
        crate::console::write_block(|w| {
            match stop {
                Stop::Ended(_) => {}
                Stop::Unhandled(exit) => {
                    writeln!(w, "cpu {i} apic {a}: guest stopped: unhandled exit {exit}")?
                }
                Stop::EntryFailed(e) => {
                    writeln!(w, "cpu {i} apic {a}: guest stopped: VM entry failed: {e}")?
                }
                Stop::Vmcs(e) => writeln!(
                    w,
                    "cpu {i} apic {a}: guest stopped: VMCS access failed: {e}"
                )?,
            }
            writeln!(
                w,
                "  partition={} RIP={:#x} RSP={:#x} RFLAGS={:#x} CR0={:#x} CR3={:#x} CR4={:#x}",
                self.partition,
                rd(guest::RIP),
                rd(guest::RSP),
                rd(guest::RFLAGS),
                rd(guest::CR0),
                rd(guest::CR3),
                rd(guest::CR4)
            )?;
            writeln!(
                w,
                "{}",
                GprDump([
                    r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11,
                    r.r12, r.r13, r.r14, r.r15,
                ])
            )?;
            writeln!(
                w,
                "  exit qualification={:#x} guest-physical={:#x} guest-linear={:#x} instruction length={}",
                rd(ro::EXIT_QUALIFICATION),
                rd(ro::GUEST_PHYSICAL_ADDR_FULL),
                rd(ro::GUEST_LINEAR_ADDR),
                rd(ro::VMEXIT_INSTRUCTION_LEN)
            )?;
            if others > 0 {
                writeln!(w, "  {others} other CPUs of the partition asked to stop")?;
            }
            match crate::reports::exit_counts_line(i) {
                Some(line) => writeln!(w, "  {line}"),
                None => writeln!(w, "  "),
            }
        });
    }
}
