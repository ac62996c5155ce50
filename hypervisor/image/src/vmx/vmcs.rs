//! VMCS access: one checked `vmread`/`vmwrite` pair over the field encodings of the
//! `x86` crate (SDM Vol. 3C, Appendix B), and the error numbers of failed VMX
//! instructions (SDM 31.4, "VM Instruction Error Numbers").

use core::fmt;

pub use x86::vmx::vmcs::{control, guest, host, ro};

/// A VMX instruction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmxError {
    /// VMfailInvalid: no current VMCS.
    Invalid,
    /// VMfailValid with the VM-instruction error number.
    Valid(u32),
}

impl fmt::Display for VmxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Invalid => f.write_str("VMfailInvalid (no current VMCS)"),
            Self::Valid(n) => write!(
                f,
                "VM-instruction error {n} ({})",
                instruction_error_name(n)
            ),
        }
    }
}

/// The SDM's description of a VM-instruction error number.
pub fn instruction_error_name(n: u32) -> &'static str {
    match n {
        1 => "VMCALL executed in VMX root operation",
        2 => "VMCLEAR with invalid physical address",
        3 => "VMCLEAR with VMXON pointer",
        4 => "VMLAUNCH with non-clear VMCS",
        5 => "VMRESUME with non-launched VMCS",
        6 => "VMRESUME after VMXOFF",
        7 => "VM entry with invalid control field(s)",
        8 => "VM entry with invalid host-state field(s)",
        9 => "VMPTRLD with invalid physical address",
        10 => "VMPTRLD with VMXON pointer",
        11 => "VMPTRLD with incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
        13 => "VMWRITE to read-only VMCS component",
        15 => "VMXON executed in VMX root operation",
        16 => "VM entry with invalid executive-VMCS pointer",
        17 => "VM entry with non-launched executive VMCS",
        18 => "VM entry with executive-VMCS pointer not VMXON pointer",
        19 => "VMCALL with non-clear VMCS",
        20 => "VMCALL with invalid VM-exit control fields",
        22 => "VMCALL with incorrect MSEG revision identifier",
        23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
        24 => "VMCALL with invalid SMM-monitor features",
        25 => "VM entry with invalid VM-execution control fields in executive VMCS",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => "unknown error",
    }
}

fn last_error() -> VmxError {
    // SAFETY: reading the VM-instruction error field of the current VMCS.
    match unsafe { x86::bits64::vmx::vmread(ro::VM_INSTRUCTION_ERROR) } {
        Ok(n) => VmxError::Valid(n as u32),
        Err(_) => VmxError::Invalid,
    }
}

/// Reads a field of the current VMCS.
pub fn read(field: u32) -> Result<u64, VmxError> {
    // SAFETY: VMREAD only reads the current VMCS; it fails (not faults) on a bad field
    // in VMX root operation, which is the only place this code runs.
    unsafe { x86::bits64::vmx::vmread(field) }.map_err(|_| last_error())
}

/// Writes a field of the current VMCS.
pub fn write(field: u32, value: u64) -> Result<(), VmxError> {
    // SAFETY: VMWRITE only changes the current VMCS, which belongs to this CPU; the
    // values are checked by the CPU at VM entry, not used before.
    unsafe { x86::bits64::vmx::vmwrite(field, value) }.map_err(|_| last_error())
}
