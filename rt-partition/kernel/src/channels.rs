//! The RT side of the channels to Linux: `mq_*`-like endpoints on the rings the hypervisor
//! initialized in shared memory (`bulkhead-ring` owns the layout and the protocol; this module
//! only finds the rings and adds blocking).
//!
//! A task opens a channel by its config name, as a sender (`rt-to-linux` channels) or a
//! receiver (`linux-to-rt`), once: each endpoint has one owner, as the single-producer
//! single-consumer protocol requires. Operations take a [`Timeout`] like the kernel's other
//! waits: `NonBlocking` fails with `WouldBlock` at once (`EAGAIN`), `Until(t)` with `TimedOut`
//! at `t` (`mq_timedsend` / `mq_timedreceive`), `Forever` waits.
//!
//! Waiting polls for now: the doorbells (Linux's hypercall that becomes an IPI to the RT CPU,
//! and the RT side's interrupt into Linux) are not built yet, so a blocked task sleeps
//! [`POLL_NS`] between attempts, giving its CPU to lower-priority tasks meanwhile. The ring's
//! `Notify` results are therefore dropped here.
//!
//! Linux is not trusted: a corrupt ring stops that channel with an error the caller sees
//! (the ring crate's `Corrupt` / `PeerFailed`), never the kernel.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use bulkhead_ring::mq::{Attr, Receiver, Sender};
use bulkhead_ring::{Ring, RingError, SharedRegion};
use bulkhead_rt_abi::{ChannelDirection, ChannelInfo, MAX_CHANNELS};
use spin::Once;

use crate::api::{self, Timeout};

/// How long a task blocked on a channel sleeps between polls.
pub const POLL_NS: u64 = 100_000;

/// What a channel operation can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// No channel of that name in the partition.
    NoSuchChannel,
    /// The channel goes the other way (a sender asked of a `linux-to-rt` channel, ...).
    WrongDirection,
    /// That end of the channel is already open.
    AlreadyOpen,
    /// Non-blocking and the ring is full (send) or empty (receive) (`EAGAIN`).
    WouldBlock,
    /// The deadline passed (`ETIMEDOUT`).
    TimedOut,
    /// The ring refused: message too long, buffer too small, a corrupt or failed channel.
    Ring(RingError),
    /// The kernel refused the wait (called from an idle task, ...).
    Kernel(bulkhead_rt_core::Error),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchChannel => f.write_str("no channel of that name"),
            Self::WrongDirection => f.write_str("the channel goes the other way"),
            Self::AlreadyOpen => f.write_str("that end of the channel is already open"),
            Self::WouldBlock => f.write_str("would block"),
            Self::TimedOut => f.write_str("timed out"),
            Self::Ring(e) => write!(f, "{e}"),
            Self::Kernel(e) => write!(f, "{e:?}"),
        }
    }
}

/// The partition's channels, from the boot information.
static CHANNELS: Once<&'static [ChannelInfo]> = Once::new();
/// Whether each channel's RT end is open.
static OPEN: [AtomicBool; MAX_CHANNELS] = [const { AtomicBool::new(false) }; MAX_CHANNELS];

/// Takes the channel table (init, boot CPU) and checks each ring's header; returns how many
/// are usable and logs each one.
pub fn init(infos: &'static [ChannelInfo]) -> usize {
    CHANNELS.call_once(|| infos);
    let mut usable = 0;
    for info in infos {
        let name = info.name().unwrap_or("?");
        match attach(info) {
            Ok(ring) => {
                let g = ring.geometry();
                usable += 1;
                log::info!(
                    "channel {name}: {}, {} slots of {} bytes at {:#x}",
                    match info.direction() {
                        Some(ChannelDirection::LinuxToRt) => "linux-to-rt",
                        _ => "rt-to-linux",
                    },
                    g.slot_count(),
                    g.slot_size(),
                    info.base
                );
            }
            Err(e) => log::warn!("channel {name}: unusable: {e}"),
        }
    }
    usable
}

/// The ring at `info`'s memory.
fn attach(info: &ChannelInfo) -> Result<Ring<'static>, RingError> {
    // SAFETY: the hypervisor validated the channel (boot information checks: 4 KiB aligned,
    // non-empty, no overflow) and maps it into this partition, identity-mapped below 4 GiB by
    // the start-up page tables, for the partition's whole life; it is shared memory that only
    // the ring crate touches, through atomics and volatile copies.
    let region = unsafe { SharedRegion::new(info.base as *mut u8, info.size as usize) }?;
    Ring::attach(region)
}

/// Finds `name`, checks its direction and marks that end open.
fn open(name: &str, direction: ChannelDirection) -> Result<Ring<'static>, ChannelError> {
    let infos = CHANNELS.get().copied().unwrap_or(&[]);
    let (index, info) = infos
        .iter()
        .enumerate()
        .find(|(_, c)| c.name() == Some(name))
        .ok_or(ChannelError::NoSuchChannel)?;
    if info.direction() != Some(direction) {
        return Err(ChannelError::WrongDirection);
    }
    if OPEN[index].swap(true, Ordering::AcqRel) {
        return Err(ChannelError::AlreadyOpen);
    }
    attach(info).map_err(|e| {
        OPEN[index].store(false, Ordering::Release);
        ChannelError::Ring(e)
    })
}

/// Runs `attempt` until it stops saying `WouldBlock`, polling until `timeout`.
fn blocking<T>(
    timeout: Timeout,
    mut attempt: impl FnMut() -> Result<T, RingError>,
) -> Result<T, ChannelError> {
    loop {
        match attempt() {
            Err(RingError::WouldBlock) => {}
            other => return other.map_err(ChannelError::Ring),
        }
        let now = api::now_ns();
        let wake = match timeout {
            Timeout::NonBlocking => return Err(ChannelError::WouldBlock),
            Timeout::Until(deadline) if now >= deadline => return Err(ChannelError::TimedOut),
            Timeout::Until(deadline) => deadline.min(now.saturating_add(POLL_NS)),
            Timeout::Forever => now.saturating_add(POLL_NS),
        };
        api::sleep_until(wake).map_err(ChannelError::Kernel)?;
    }
}

/// The RT end of an `rt-to-linux` channel.
pub struct ChannelSender {
    sender: Sender<'static>,
}

/// Opens `name` for sending.
pub fn open_sender(name: &str) -> Result<ChannelSender, ChannelError> {
    let ring = open(name, ChannelDirection::RtToLinux)?;
    Ok(ChannelSender {
        sender: Sender::new(ring.into_producer()),
    })
}

impl ChannelSender {
    /// Sends `msg` with `priority` (higher is more urgent), waiting for a free slot until
    /// `timeout` (`mq_send` / `mq_timedsend`).
    pub fn send(&mut self, msg: &[u8], priority: u8, timeout: Timeout) -> Result<(), ChannelError> {
        blocking(timeout, || self.sender.try_send(msg, priority)).map(|_notify| ())
    }

    /// The queue's attributes (`mq_getattr`).
    pub fn attr(&mut self) -> Result<Attr, ChannelError> {
        self.sender.attr().map_err(ChannelError::Ring)
    }
}

/// The RT end of a `linux-to-rt` channel.
pub struct ChannelReceiver {
    receiver: Receiver<'static>,
}

/// Opens `name` for receiving.
pub fn open_receiver(name: &str) -> Result<ChannelReceiver, ChannelError> {
    let ring = open(name, ChannelDirection::LinuxToRt)?;
    Ok(ChannelReceiver {
        receiver: Receiver::new(ring.into_consumer()),
    })
}

impl ChannelReceiver {
    /// Receives the most urgent message (the oldest of the highest priority) into `buf`,
    /// waiting until `timeout` (`mq_receive` / `mq_timedreceive`); returns its length and
    /// priority.
    pub fn receive(
        &mut self,
        buf: &mut [u8],
        timeout: Timeout,
    ) -> Result<(usize, u8), ChannelError> {
        blocking(timeout, || self.receiver.try_receive(buf)).map(|r| (r.len, r.priority))
    }

    /// The queue's attributes (`mq_getattr`).
    pub fn attr(&mut self) -> Result<Attr, ChannelError> {
        self.receiver.attr().map_err(ChannelError::Ring)
    }
}
