//! Filling a VMCS: the host state (what the CPU returns to on every exit), the execution
//! controls (which guest actions exit: the partition's I/O and MSR bitmaps, its EPT, the
//! VMX-preemption timer of a Linux CPU), and the guest's first state for each way a
//! partition's CPU starts. Every function works on the current VMCS of this CPU.
//!
//! The VMCS asks for nothing an RT kernel does in steady state: no external-interrupt, NMI
//! or HLT exiting, no exception exits, the TSC-deadline and x2APIC MSRs (EOI, TPR, timer
//! LVT) passed through, so its timer interrupts arrive through its own IDT.
// Reads the control registers and makes a VMCS current (VMCLEAR, VMPTRLD).
#![allow(unsafe_code)]

use hv_core::memory::addr::HostPhysAddr;
use hv_core::vmx::caps::{
    EntryControls, PIN_PREEMPTION_TIMER, SecondaryControls, VmxControls, VmxMsrs,
};

use super::vcpu::GuestRegs;
use super::vmcs::{self, VmxError, control, guest, host};
use crate::arch::cpu::{CpuTables, KERNEL_CS, KERNEL_DS, KERNEL_TR};
use crate::arch::msr;
use crate::partition::{GuestStart, PartitionResources};

/// VMCLEAR then VMPTRLD: the VMCS at `region` becomes current on this CPU, in the clear
/// launch state.
pub fn make_current(region: HostPhysAddr) -> Result<(), VmxError> {
    // SAFETY: `region` is this CPU's own VMCS region (allocated by `Vcpu::new`, revision
    // identifier written); no other CPU uses it.
    unsafe {
        x86::bits64::vmx::vmclear(region.as_u64()).map_err(|_| VmxError::Invalid)?;
        x86::bits64::vmx::vmptrld(region.as_u64()).map_err(|_| VmxError::Invalid)?;
    }
    Ok(())
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

pub fn host_state(tables: &CpuTables, exit_entry: u64) -> Result<(), VmxError> {
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
    vmcs::write(host::RIP, exit_entry)?;
    Ok(())
}

/// The VM-execution, exit and entry controls for a CPU of `res`'s partition (VPID
/// `index + 1`), its guest starting in 64-bit mode if `long_mode`, with the
/// VMX-preemption timer at `timer_ticks` if any.
pub fn exec_controls(
    c: &VmxControls,
    res: &PartitionResources,
    index: usize,
    long_mode: bool,
    timer_ticks: Option<u32>,
) -> Result<(), VmxError> {
    // Without the "save VMX-preemption timer value" exit control, every VM entry loads
    // the timer from this field again (rewritten only while a doorbell is owed: vcpu.rs).
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
/// RT kernel in 64-bit mode on its start-up page tables (`hv_core::boot::rt`), with
/// RDI = RT_BOOT_MAGIC, RSI = boot information, RDX = `cpu_in_partition`; Linux's boot
/// CPU per the 64-bit boot protocol; or a Linux secondary CPU in real mode where its
/// start-up IPI points.
pub fn guest_state(
    msrs: &VmxMsrs,
    start: GuestStart,
    cpu_in_partition: usize,
    regs: &mut GuestRegs,
) -> Result<(), VmxError> {
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
            regs.rdi = u64::from(bulkhead_abi::rt_boot::RT_BOOT_MAGIC);
            regs.rsi = rt.boot_info;
            regs.rdx = cpu_in_partition as u64;
            (rt.entry, CODE64)
        }
        GuestStart::Linux(l) => {
            let cr0 = msrs.fix_cr0(CR0_PE_MP_ET_NE | CR0_WP_PG, true);
            vmcs::write(guest::CR0, cr0)?;
            vmcs::write(guest::CR3, l.cr3)?;
            vmcs::write(guest::CR4, msrs.fix_cr4(CR4_PAE_OSFXSR_OSXMMEXCPT))?;
            vmcs::write(guest::IA32_EFER_FULL, EFER_LME_LMA_NXE)?;
            regs.rsi = l.boot_params;
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
