//! Ringing the RT partition from Linux: the hypervisor's `DOORBELL` hypercall.
//!
//! When a send finds the RT consumer asleep (it armed its doorbell flag), or a receive frees a
//! slot the RT producer waits for, the ring says `Notify::Doorbell`; the endpoint then executes
//! VMCALL with `RAX = DOORBELL` and `RBX` = the channel's physical base (the hypercall ABI is
//! `bulkhead_hv_core::hypercall`). VMCALL in VMX non-root operation always exits to the
//! hypervisor, from user space too, so no kernel module is needed; the hypervisor checks the
//! channel and limits each channel's rate, and interrupts the RT partition.
//!
//! Only under Bulkhead: CPUID's hypervisor leaf must carry Bulkhead's signature, and the
//! channel's announcement must say `doorbell`. Elsewhere (on bare metal VMCALL raises #UD) the
//! endpoint does not ring and counts the doorbell as not rung; the RT side's fallback timer
//! wakes it then.

use std::sync::OnceLock;

use bulkhead_hv_core::cpuid::{HYPERVISOR_LEAF, SIGNATURE};
use bulkhead_hv_core::hypercall::{COALESCED, DOORBELL, OK};
use bulkhead_ring::announce::NotifyMode;

use crate::discover::ChannelInfo;

/// CPUID.1:ECX bit 31: a hypervisor is present.
const HYPERVISOR_PRESENT: u32 = 1 << 31;

/// Whether this program runs in a partition of the Bulkhead hypervisor (asked once).
pub fn under_bulkhead() -> bool {
    static UNDER: OnceLock<bool> = OnceLock::new();
    *UNDER.get_or_init(|| {
        let leaf1 = std::arch::x86_64::__cpuid(1);
        if leaf1.ecx & HYPERVISOR_PRESENT == 0 {
            return false;
        }
        let vendor = std::arch::x86_64::__cpuid(HYPERVISOR_LEAF);
        let mut signature = [0u8; 12];
        signature[..4].copy_from_slice(&vendor.ebx.to_le_bytes());
        signature[4..8].copy_from_slice(&vendor.ecx.to_le_bytes());
        signature[8..].copy_from_slice(&vendor.edx.to_le_bytes());
        &signature == SIGNATURE
    })
}

/// A channel's doorbell, where it can be rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doorbell {
    base: u64,
}

/// What a ring did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rang {
    /// The RT partition was interrupted.
    Interrupted,
    /// Merged into a recent doorbell of the same channel (the hypervisor's rate limit).
    Coalesced,
    /// The hypervisor refused (not a doorbell channel, or an unknown call): its status.
    Refused(u64),
}

impl Doorbell {
    /// The doorbell of `info`, if the channel takes doorbells and this runs under Bulkhead.
    pub fn for_channel(info: &ChannelInfo) -> Option<Self> {
        (info.notify == NotifyMode::Doorbell && under_bulkhead())
            .then_some(Self { base: info.base })
    }

    /// Rings it.
    pub fn ring(&self) -> Rang {
        let status: u64;
        // SAFETY: `under_bulkhead` saw Bulkhead's CPUID signature, so VMCALL exits to the
        // hypervisor, which reads RAX and RBX, writes the status to RAX, and resumes after the
        // instruction; no other register or memory changes. RBX is reserved by the compiler,
        // hence the exchange around the call.
        unsafe {
            core::arch::asm!(
                "xchg {base}, rbx",
                "vmcall",
                "xchg {base}, rbx",
                base = inout(reg) self.base => _,
                inout("rax") DOORBELL => status,
                options(nostack),
            );
        }
        match status {
            OK => Rang::Interrupted,
            COALESCED => Rang::Coalesced,
            other => Rang::Refused(other),
        }
    }
}
