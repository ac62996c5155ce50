//! Initializes every channel's ring in shared memory, once, before any partition runs.
//!
//! The hypervisor is the only party both partitions trust, so it writes each channel's header
//! (geometry, indices at zero, state "ready": `bulkhead_ring::Ring::init`); the RT kernel and
//! the Linux library only attach and check it. A restarted Linux attaches again and finds the
//! messages the RT side sent meanwhile: the rings are never re-initialized while the system
//! runs. Linux learns where the channels are from its command line
//! (`hv_core::channels::compose_linux_cmdline`).
//!
//! Doorbells ([`ring`]): Linux's `DOORBELL` hypercall for a channel with doorbell
//! notification becomes a fixed IPI (vector `bulkhead_abi::vectors::DOORBELL`) to the RT
//! partition's first CPU, only when the RT kernel asked for one on that channel (its request
//! word, in its own RAM) and at most one per channel per
//! `hv_core::channels::DOORBELL_MIN_INTERVAL_US`. The RT CPU takes it without a VM exit.
//! A ring held back by that interval or the RT budget is owed: every Linux CPU's exit
//! delivers what is due ([`deliver_owed`]), and the ringing CPU's preemption timer is set to
//! leave its guest when the interval ends.
//! The RT partition's `DOORBELL` for a doorbell channel ([`ring_linux`]) raises the channel
//! device's interrupt in Linux (`linux_devices`).
//!
//! The config's `hypervisor-to-linux` channel (at most one) is the hypervisor's own: its
//! console lines go there (`crate::console::attach_log`), and the RT partition is not told
//! about it.
// Sends the doorbell IPI to the RT partition through the x2APIC ICR.
#![allow(unsafe_code)]

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bulkhead_abi::hypercall::Status;
use bulkhead_config::{ChannelDirection, Config, MAX_CHANNELS, PartitionId};
use bulkhead_ring::{Ring, RingError};
use hv_core::channels::{DOORBELL_MIN_INTERVAL_US, Doorbells};
use hv_core::memory::addr::GuestPhysAddr;
use spin::Once;

use crate::guest_memory::{self, ChannelMemError};
use crate::println;

/// The doorbell channels, the RT CPU their interrupts go to, and the RT partition's doorbell
/// request words.
static DOORBELLS: Once<(Doorbells, u32, &'static [AtomicU32; MAX_CHANNELS])> = Once::new();
/// Doorbells that interrupted the RT partition.
pub static DOORBELLS_RUNG: AtomicU64 = AtomicU64::new(0);
/// Doorbells merged into an earlier one by the rate limit.
pub static DOORBELLS_COALESCED: AtomicU64 = AtomicU64::new(0);
/// Doorbells the RT side had not asked for: no interrupt.
pub static DOORBELLS_NOT_WAITING: AtomicU64 = AtomicU64::new(0);
/// Doorbells beyond the RT partition's budget for the second (`rt.doorbells_per_s`).
pub static DOORBELLS_OVER_BUDGET: AtomicU64 = AtomicU64::new(0);
/// Interrupts owed to held-back doorbells, delivered once their interval or second was over.
pub static DOORBELLS_DELIVERED_LATE: AtomicU64 = AtomicU64::new(0);

/// A channel whose ring could not be initialized.
#[derive(Debug)]
pub struct ChannelInitError {
    /// Index in the config's `[[channels]]`.
    index: usize,
    /// The field at fault.
    field: &'static str,
    /// Why; `None`: the channel lies outside its shared region.
    cause: Option<RingError>,
}

impl fmt::Display for ChannelInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config: channels[{}].{}: ", self.index, self.field)?;
        match &self.cause {
            Some(e) => write!(f, "{e}"),
            None => f.write_str("the channel does not lie inside its shared region"),
        }
    }
}

/// Initializes every channel of `cfg`; returns how many. The `hypervisor-to-linux` channel,
/// if any, becomes the console's log channel.
pub fn init_all(cfg: &Config) -> Result<usize, ChannelInitError> {
    let mut log_channel = false;
    for (index, channel) in cfg.channels().iter().enumerate() {
        let fail = |field, cause| ChannelInitError {
            index,
            field,
            cause,
        };
        let (memory, region) = guest_memory::channel_region(index).map_err(|e| match e {
            ChannelMemError::Layout(e) => fail("size", Some(RingError::Layout(e))),
            ChannelMemError::OutsideRegion | ChannelMemError::Unavailable => fail("region", None),
        })?;
        let ring =
            Ring::init(region, channel.slot_size()).map_err(|e| fail("slot_size", Some(e)))?;
        if channel.direction() == ChannelDirection::HypervisorToLinux {
            // The config allows one; this side is its only producer.
            crate::console::attach_log(ring.into_producer());
            log_channel = true;
        }
        println!(
            "channel {}: {} KiB at {:#x}, {} slots of {} bytes, ready",
            channel.name().as_str(),
            memory.size / 1024,
            memory.base,
            channel.slot_count(),
            channel.slot_size()
        );
    }
    if !log_channel {
        crate::console::log_off();
    }
    if let (Some(&first_rt_cpu), Some(requests)) = (
        cfg.partition(PartitionId::Rt).cpus().first(),
        guest_memory::rt_doorbell_requests(),
    ) {
        DOORBELLS.call_once(|| (Doorbells::from_config(cfg), first_rt_cpu, requests));
    }
    Ok(cfg.channels().len())
}

/// The RT partition's doorbell for the channel at `rt_base` (its guest-physical address):
/// the hypercall's status.
pub fn ring_linux(rt_base: GuestPhysAddr) -> Status {
    let known = DOORBELLS
        .get()
        .is_some_and(|(doorbells, ..)| doorbells.rt_channel(rt_base.as_u64()));
    if known && crate::linux_devices::raise_channel_interrupt() {
        Status::Ok
    } else {
        Status::NoSuchChannel
    }
}

/// Linux's doorbell for the channel at `base`: the hypercall's status.
pub fn ring(base: GuestPhysAddr) -> Status {
    let Some((doorbells, target, requests)) = DOORBELLS.get() else {
        return Status::NoSuchChannel;
    };
    let (second, min_interval) = intervals();
    let now = crate::arch::rdtsc();
    // Linux's memory is identity-mapped: its guest-physical base is the channel's address.
    let take = |rt_index| take_request(requests, rt_index);
    match doorbells.ring(base.as_u64(), now, min_interval, second, take) {
        hv_core::channels::Ring::Interrupt => {
            interrupt_rt(*target);
            DOORBELLS_RUNG.fetch_add(1, Ordering::Relaxed);
            Status::Ok
        }
        hv_core::channels::Ring::Coalesced => {
            DOORBELLS_COALESCED.fetch_add(1, Ordering::Relaxed);
            Status::Coalesced
        }
        hv_core::channels::Ring::OverBudget => {
            DOORBELLS_OVER_BUDGET.fetch_add(1, Ordering::Relaxed);
            Status::Coalesced
        }
        hv_core::channels::Ring::NotWaiting => {
            DOORBELLS_NOT_WAITING.fetch_add(1, Ordering::Relaxed);
            Status::NotWaiting
        }
        hv_core::channels::Ring::NoSuchChannel => Status::NoSuchChannel,
    }
}

/// Delivers the owed doorbells that are due (a Linux CPU's exit calls this); returns how many
/// TSC ticks from now the earliest one still owed is due, if one is.
pub fn deliver_owed() -> Option<u64> {
    let (doorbells, target, requests) = DOORBELLS.get()?;
    // Nothing owed, as a rule: no clock read on this exit.
    if !doorbells.owes_any() {
        return None;
    }
    let (second, min_interval) = intervals();
    let now = crate::arch::rdtsc();
    let take = |rt_index| take_request(requests, rt_index);
    let owed = doorbells.deliver_owed(now, min_interval, second, take);
    if owed.delivered > 0 {
        // One interrupt: the RT kernel looks at every channel's request word.
        interrupt_rt(*target);
        DOORBELLS_DELIVERED_LATE.fetch_add(u64::from(owed.delivered), Ordering::Relaxed);
    }
    owed.next_due.map(|due| due.saturating_sub(now))
}

/// One second and the shortest interval between one channel's interrupts, in TSC ticks.
fn intervals() -> (u64, u64) {
    let second = crate::arch::time::tsc_hz().max(1);
    (second, second / 1_000_000 * DOORBELL_MIN_INTERVAL_US)
}

/// Takes the RT kernel's request for a doorbell on its channel `rt_index`: it stores 1 before
/// it sleeps on the channel; taking it lets one interrupt through.
fn take_request(requests: &[AtomicU32; MAX_CHANNELS], rt_index: usize) -> bool {
    requests
        .get(rt_index)
        .is_some_and(|w| w.swap(0, Ordering::AcqRel) == 1)
}

/// Sends the doorbell vector to the RT partition's CPU `target`.
fn interrupt_rt(target: u32) {
    // Fixed delivery, physical destination, level assert.
    let icr = u32::from(bulkhead_abi::vectors::DOORBELL) | (1 << 14);
    // SAFETY: x2APIC mode is on on every CPU the hypervisor runs; the target is the RT
    // partition's first CPU, whose kernel handles this vector (the RT boot ABI).
    unsafe { crate::arch::apic::x2apic_send_icr(target, icr) };
}
