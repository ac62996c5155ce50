//! VT-x as the capability MSRs describe it, judged by the hypervisor's own rules
//! (`bulkhead_hv_core::vmx::caps`: the one list of features Bulkhead needs), and whether the firmware
//! left VT-x on.

use bulkhead_hv_core::vmx::caps::{PIN_PREEMPTION_TIMER, VmxMsrs};

/// IA32_FEATURE_CONTROL.
const IA32_FEATURE_CONTROL: u32 = 0x3a;
const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;

/// What the MSRs say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmx {
    /// The firmware locked IA32_FEATURE_CONTROL with VMX off: VT-x is disabled in its setup.
    pub disabled_by_firmware: bool,
    /// The features Bulkhead needs that this CPU lacks, by name; empty when it has them all.
    pub missing: String,
    /// The VMX-preemption timer (the hypervisor uses it to notice a Linux CPU taken offline
    /// and re-onlined without a VM exit of its own).
    pub preemption_timer: bool,
}

/// Reads the MSRs through `read_msr` and judges them.
pub fn read(mut read_msr: impl FnMut(u32) -> Result<u64, String>) -> Result<Vmx, String> {
    let feature_control = read_msr(IA32_FEATURE_CONTROL)?;
    let mut failure = None;
    let msrs = VmxMsrs::read_with(|number| match read_msr(number) {
        Ok(value) => Some(value),
        Err(e) => {
            failure.get_or_insert(e);
            None
        }
    });
    let msrs = match (msrs, failure) {
        (Some(msrs), _) => msrs,
        (None, Some(e)) => return Err(e),
        (None, None) => return Err("the VMX capability MSRs could not be read".into()),
    };
    Ok(judge(feature_control, &msrs))
}

/// The verdict on IA32_FEATURE_CONTROL and the capability MSRs.
pub fn judge(feature_control: u64, msrs: &VmxMsrs) -> Vmx {
    Vmx {
        disabled_by_firmware: feature_control & FEATURE_CONTROL_LOCK != 0
            && feature_control & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0,
        missing: match msrs.check() {
            Ok(_) => String::new(),
            Err(missing) => missing.to_string(),
        },
        preemption_timer: (msrs.pin >> 32) as u32 & PIN_PREEMPTION_TIMER != 0,
    }
}
