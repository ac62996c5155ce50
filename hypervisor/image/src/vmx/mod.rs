//! VMX operation: the feature check every CPU runs, VMXON, and the virtual CPUs: their
//! VMCS set-up (`setup`), run loop (`vcpu`), exit handlers (`exits`) and stop reports
//! (`stop`).
// VMX instructions, the VMX capability MSRs and the control registers VMXON needs.
#![allow(unsafe_code)]

mod exits;
mod setup;
mod stop;
pub mod vcpu;
pub mod vmcs;

use hv_core::memory::addr::HostPhysAddr;
use hv_core::vmx::caps::{Feature, Missing, VmxControls, VmxMsrs};

use crate::arch::msr;
use crate::memory;

const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
const CPUID1_ECX_VMX: u32 = 1 << 5;
const CPUID1_ECX_X2APIC: u32 = 1 << 21;
const CPUID1_ECX_XSAVE: u32 = 1 << 26;
const CR4_OSXSAVE: u64 = 1 << 18;

/// Reads this CPU's capability MSRs (TRUE variants where the CPU has them).
///
/// # Safety
/// The CPU must report VMX in CPUID (the MSRs #GP otherwise).
unsafe fn read_msrs() -> VmxMsrs {
    VmxMsrs::read_with(|number| {
        // SAFETY: VMX is present (caller), so the capability MSRs exist; `read_with` asks for
        // the TRUE ones only when IA32_VMX_BASIC[55] says they exist, and for
        // IA32_VMX_PROCBASED_CTLS2 and EPT_VPID_CAP only when secondary controls may be 1.
        Some(unsafe { msr::read(number) })
    })
    .unwrap_or_default()
}

/// Checks, on the running CPU, every VT-x feature Bulkhead needs. Also enables VMX in
/// IA32_FEATURE_CONTROL when firmware left it unlocked.
pub fn check_this_cpu() -> Result<(VmxMsrs, VmxControls), Missing> {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    let mut missing = Feature::empty();
    if leaf1.ecx & CPUID1_ECX_X2APIC == 0 {
        missing |= Feature::X2APIC;
    }
    if leaf1.ecx & CPUID1_ECX_VMX == 0 {
        return Err(Missing(missing | Feature::VMX));
    }
    // SAFETY: IA32_FEATURE_CONTROL exists on CPUs with VMX. Writing it is allowed only
    // while unlocked; we then set "VMX outside SMX" and lock, as firmware would.
    unsafe {
        let fc = msr::read(msr::IA32_FEATURE_CONTROL);
        if fc & FEATURE_CONTROL_LOCK == 0 {
            msr::write(
                msr::IA32_FEATURE_CONTROL,
                fc | FEATURE_CONTROL_VMX_OUTSIDE_SMX | FEATURE_CONTROL_LOCK,
            );
        } else if fc & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
            missing |= Feature::VMX_ENABLED_BY_FIRMWARE;
        }
    }
    // SAFETY: CPUID reports VMX.
    let msrs = unsafe { read_msrs() };
    match msrs.check() {
        Ok(controls) if missing.is_empty() => Ok((msrs, controls)),
        Ok(_) => Err(Missing(missing)),
        Err(Missing(more)) => Err(Missing(missing | more)),
    }
}

/// Enters VMX root operation on this CPU.
pub fn vmxon(msrs: &VmxMsrs, controls: &VmxControls) -> Result<HostPhysAddr, &'static str> {
    let region =
        memory::alloc_zeroed(0x1000, 0x1000).map_err(|_| "out of memory for the VMXON region")?;
    // SAFETY: the region is a fresh, page-aligned page owned by this CPU; the revision
    // identifier goes in its first dword (SDM 25.11.5). CR0/CR4 get the fixed bits VMX
    // operation requires; the hypervisor already runs with PE, PG and NE set, so only
    // CR4.VMXE changes in practice. VMXON then takes the region.
    unsafe {
        core::ptr::write_volatile(region.as_u64() as *mut u32, controls.revision_id);
        let (mut cr0, mut cr4): (u64, u64);
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        cr0 = msrs.fix_cr0(cr0, false);
        cr4 = msrs.fix_cr4(cr4);
        // XSETBV, which a guest's exit hands to the hypervisor to execute, needs
        // CR4.OSXSAVE in the host too (the host CR4 is what runs after an exit).
        if core::arch::x86_64::__cpuid(1).ecx & CPUID1_ECX_XSAVE != 0 {
            cr4 |= CR4_OSXSAVE;
        }
        core::arch::asm!("mov cr0, {}", in(reg) cr0, options(nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack));
        x86::bits64::vmx::vmxon(region.as_u64()).map_err(|_| "VMXON failed")?;
    }
    Ok(region)
}
