//! Ringing the RT partition from Linux: the hypervisor's `DOORBELL` hypercall.
//!
//! When a send finds the RT consumer asleep (it armed its doorbell flag), or a receive frees a
//! slot the RT producer waits for, the ring says `Notify::Doorbell`; the endpoint then executes
//! VMCALL with `RAX = DOORBELL` and `RBX` = the channel's physical base (the hypercall ABI is
//! `bulkhead_abi::hypercall`, the stub `bulkhead_vmcall`). VMCALL in VMX non-root operation always exits to the
//! hypervisor, from user space too, so no kernel module is needed; the hypervisor checks the
//! channel and limits each channel's rate, and interrupts the RT partition.
//!
//! Only under Bulkhead: CPUID's hypervisor leaf must carry Bulkhead's signature, and the
//! channel's announcement must say `doorbell`. Elsewhere (on bare metal VMCALL raises #UD) the
//! endpoint does not ring and counts the doorbell as not rung; the RT side's fallback timer
//! wakes it then.

use std::sync::OnceLock;

use bulkhead_abi::hypercall::{Hypercall, Status};
use bulkhead_ring::announce::NotifyMode;

use crate::discover::ChannelInfo;

/// Whether this program runs in a partition of the Bulkhead hypervisor (asked once).
pub fn under_bulkhead() -> bool {
    static UNDER: OnceLock<bool> = OnceLock::new();
    *UNDER.get_or_init(bulkhead_vmcall::under_bulkhead)
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
    /// No interrupt: the RT side had not asked for one on this channel (it is not asleep on
    /// it; it will find the message when it looks).
    NotWaiting,
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
        let call = Hypercall::Doorbell {
            channel_base: self.base,
        };
        // SAFETY: a `Doorbell` exists only where `under_bulkhead` saw Bulkhead's CPUID
        // signature.
        match unsafe { bulkhead_vmcall::hypercall(call) } {
            Ok(Status::Ok) => Rang::Interrupted,
            Ok(Status::Coalesced) => Rang::Coalesced,
            Ok(Status::NotWaiting) => Rang::NotWaiting,
            Ok(other) => Rang::Refused(other.raw()),
            Err(raw) => Rang::Refused(raw),
        }
    }
}
