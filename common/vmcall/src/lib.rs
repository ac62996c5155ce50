//! The guest side of Bulkhead's hypercall ABI ([`bulkhead_abi::hypercall`]): the one VMCALL stub
//! every guest-side caller uses (the RT kernel and the Linux channel library), and the CPUID check
//! that says whether there is a Bulkhead hypervisor to call.
//!
//! It owns no number and no layout: those are the ABI crate's. It must never be used by the
//! hypervisor itself.
#![no_std]

use bulkhead_abi::cpuid;
use bulkhead_abi::hypercall::{Hypercall, Status};

/// CPUID.1:ECX bit 31: a hypervisor is present.
const HYPERVISOR_PRESENT: u32 = 1 << 31;

/// Whether this code runs in a partition of the Bulkhead hypervisor: CPUID says a hypervisor is
/// present and its leaf carries Bulkhead's signature. Costs two CPUIDs (two VM exits under a
/// hypervisor): callers ask once.
pub fn under_bulkhead() -> bool {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & HYPERVISOR_PRESENT == 0 {
        return false;
    }
    let vendor = core::arch::x86_64::__cpuid(cpuid::HYPERVISOR_LEAF);
    cpuid::is_bulkhead(vendor.ebx, vendor.ecx, vendor.edx)
}

/// What the hypervisor answered: a status the ABI defines, or the raw value of one it does not.
pub type Answer = Result<Status, u64>;

/// Makes `call`: VMCALL with its number in RAX and its argument in RBX. Each call is one VM exit
/// of this CPU. Not `nomem`: a doorbell must come after the memory stores that it announces.
///
/// # Safety
///
/// The caller must run under Bulkhead (see [`under_bulkhead`], or the RT kernel's boot
/// information): on bare metal, or under another hypervisor that does not take VMCALL, the
/// instruction raises #UD.
pub unsafe fn hypercall(call: Hypercall) -> Answer {
    let (number, argument) = call.encode();
    let raw: u64;
    // SAFETY: under Bulkhead (the caller's promise) VMCALL exits to the hypervisor, which reads
    // RAX and RBX, answers in RAX and resumes after the instruction; no other register or memory
    // changes. RBX is reserved by the compiler, hence the exchange around the call.
    unsafe {
        core::arch::asm!(
            "xchg {arg}, rbx",
            "vmcall",
            "xchg {arg}, rbx",
            arg = inout(reg) argument => _,
            inout("rax") number => raw,
            options(nostack),
        );
    }
    Status::from_raw(raw).ok_or(raw)
}
