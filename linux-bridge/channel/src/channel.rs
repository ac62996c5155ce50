//! The endpoints: [`ChannelSender`] (Linux produces: `linux-to-rt`) and [`ChannelReceiver`]
//! (Linux consumes: `rt-to-linux`), with blocking, non-blocking and timed operations in the
//! manner of POSIX message queues.
//!
//! # Owning the memory
//!
//! The ring crate's endpoints borrow the region they run on. Here an endpoint owns the
//! [`Mapping`] and the ring endpoint that borrows it, side by side: the borrow is made with a
//! lifetime of `'static` that really means "as long as this struct's `mapping` field". That is
//! sound because (1) the mapped range does not move when the struct (or the `Mapping` in it)
//! moves; (2) the borrowing field is private and no method hands out anything that borrows from
//! it; (3) fields drop in declaration order, and the borrowing field is declared before
//! `mapping`, so it is gone before the range is unmapped.
//!
//! # Doorbells
//!
//! An endpoint rings the RT side's doorbell when the ring says the peer sleeps waiting for
//! this side ([`crate::doorbell`]: the hypervisor's hypercall, only under Bulkhead and for
//! channels announced `doorbell`; [`ChannelSender::doorbells_rung`]). A doorbell this side
//! could not ring (no hypervisor, a `poll` channel, an endpoint attached without an
//! announcement) is counted ([`ChannelSender::doorbells_not_rung`]); the RT side then wakes
//! on its own timer.
//!
//! Toward Linux: an endpoint of a `doorbell` channel opens the channel device's interrupt
//! when Linux has it bound to `uio_pci_generic` ([`crate::interrupt`]). Blocked, it arms its
//! own doorbell flag in the ring, re-checks, and sleeps on the interrupt, which the RT side
//! raises when it sees the flag; it also wakes every [`INTERRUPT_FALLBACK`] to re-check.
//! Without the interrupt it polls ([`crate::poll`]) and never arms its flag.
//!
//! # One endpoint per end
//!
//! The ring is single-producer single-consumer. Opening an end takes a lock on the memory file
//! ([`Mapping::lock_end`]); a second opener of the same end, in this process or another that uses
//! this library, gets [`Error::Busy`].

use std::fmt;
use std::path::Path;
use std::time::Instant;

use bulkhead_ring::announce::Direction;
use bulkhead_ring::mq::{self, Attr};
use bulkhead_ring::{Armed, Geometry, Notify, Ring, RingError};

use crate::discover::{Announcements, ChannelInfo};
use crate::doorbell::{Doorbell, Rang};
use crate::error::{Error, Result};
use crate::interrupt::ChannelInterrupt;
use crate::mapping::{DEV_MEM, End, Mapping};
use crate::poll::Backoff;

/// How long a call may wait.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// Not at all (`O_NONBLOCK`).
    No,
    /// Until the deadline.
    Until(Instant),
    /// As long as it takes.
    Forever,
}

/// The longest a blocked endpoint sleeps on the channel device's interrupt before it
/// re-checks its ring anyway.
pub const INTERRUPT_FALLBACK: std::time::Duration = std::time::Duration::from_millis(100);

/// Retries `attempt` on `end` while it answers [`RingError::WouldBlock`], waiting as `wait`
/// allows: on `bell`'s interrupt after `arm` (when it has one), else by polling.
fn blocking<E, T>(
    wait: Wait,
    end: &mut E,
    bell: &mut Bell,
    mut attempt: impl FnMut(&mut E) -> Result<T, RingError>,
    mut arm: impl FnMut(&mut E) -> Result<Armed, RingError>,
) -> Result<T> {
    let mut backoff = Backoff::new();
    loop {
        match attempt(end) {
            Err(RingError::WouldBlock) => {}
            other => return other.map_err(Error::from),
        }
        let deadline = match wait {
            Wait::No => return Err(Error::WouldBlock),
            Wait::Until(deadline) if Instant::now() >= deadline => return Err(Error::TimedOut),
            Wait::Until(deadline) => Some(deadline),
            Wait::Forever => None,
        };
        match bell.interrupt.as_mut() {
            Some(interrupt) => {
                if arm(end)? == Armed::Ready {
                    continue;
                }
                match interrupt.wait(deadline, INTERRUPT_FALLBACK) {
                    Ok(true) => bell.interrupt_wakes += 1,
                    Ok(false) => {}
                    // The device went away (driver unbound): poll from now on.
                    Err(_) => bell.interrupt = None,
                }
            }
            None => backoff.wait(deadline),
        }
    }
}

/// Takes the lock on `end`; a file system without locks is not an error.
fn lock(mapping: &Mapping, end: End, name: &str) -> Result<()> {
    match mapping.lock_end(end) {
        Ok(false) => Err(Error::Busy {
            name: name.to_owned(),
            end: end.as_str(),
        }),
        Ok(true) | Err(_) => Ok(()),
    }
}

/// Maps the announced channel `info` from `mem` for Linux's end on it, the producer's when
/// `linux_produces` ([`Error::WrongDirection`] when Linux holds the other end).
fn map_for(info: &ChannelInfo, linux_produces: bool, mem: impl AsRef<Path>) -> Result<Mapping> {
    if info.direction.linux_produces() != linux_produces {
        return Err(Error::WrongDirection {
            name: info.name.clone(),
            direction: info.direction,
        });
    }
    info.map(mem)
}

/// Takes `end` of the ring in `mapping` ([`Error::Busy`] if another opener has it) and
/// attaches to it.
///
/// # Safety
/// The ring borrows `mapping` although its lifetime says `'static`: the caller keeps it beside
/// `mapping` in the endpoint and drops it first (see the module docs).
unsafe fn attach_end(mapping: &Mapping, end: End, name: &str) -> Result<Ring<'static>> {
    lock(mapping, end, name)?;
    // SAFETY: the caller keeps the ring no longer than `mapping` (this function's contract);
    // the mapped range does not move when the `Mapping` does.
    let region = unsafe { mapping.region_unbounded() }?;
    Ok(Ring::attach(region)?)
}

/// The name of a channel attached without an announcement: where it is.
fn place(mapping: &Mapping) -> String {
    format!("{}@{:#x}", mapping.path().display(), mapping.offset())
}

/// The sending end of a channel (`linux-to-rt`): Linux is its producer.
pub struct ChannelSender {
    /// Borrows the memory `mapping` maps (see the module docs): declared first, dropped first.
    sender: mq::Sender<'static>,
    /// The channel's memory; unmapped (and the end's lock released) when dropped.
    mapping: Mapping,
    geometry: Geometry,
    name: String,
    bell: Bell,
}

/// An endpoint's doorbells: toward the RT side and from it, with their counts.
#[derive(Debug, Default)]
struct Bell {
    doorbell: Option<Doorbell>,
    rung: u64,
    not_rung: u64,
    /// The channel device's interrupt, when this channel takes doorbells and Linux has it.
    interrupt: Option<ChannelInterrupt>,
    interrupt_wakes: u64,
}

impl Bell {
    fn for_info(info: &ChannelInfo) -> Self {
        let doorbell = Doorbell::for_channel(info);
        Self {
            interrupt: doorbell.and_then(|_| ChannelInterrupt::open().ok()),
            doorbell,
            ..Self::default()
        }
    }

    /// The ring said the peer waits for this side.
    fn peer_waits(&mut self) {
        match self.doorbell.map(|d| d.ring()) {
            Some(Rang::Interrupted | Rang::Coalesced | Rang::NotWaiting) => self.rung += 1,
            Some(Rang::Refused(_)) | None => self.not_rung += 1,
        }
    }
}

impl ChannelSender {
    /// Opens channel `name` from `/proc/cmdline` on `/dev/mem`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(&Announcements::from_proc()?, DEV_MEM, name)
    }

    /// Opens channel `name` of `announcements` on `mem` (`/dev/mem`, or a file standing in
    /// for it). [`Error::WrongDirection`] if Linux is its consumer.
    pub fn open_with(
        announcements: &Announcements,
        mem: impl AsRef<Path>,
        name: &str,
    ) -> Result<Self> {
        Self::open_info(announcements.find(name)?, mem)
    }

    /// Opens the announced channel `info` on `mem`.
    pub fn open_info(info: &ChannelInfo, mem: impl AsRef<Path>) -> Result<Self> {
        let mapping = map_for(info, true, mem)?;
        let mut sender = Self::attach_named(mapping, info.name.clone())?;
        sender.bell = Bell::for_info(info);
        Ok(sender)
    }

    /// The producer end of the channel initialized in `mapping`, whatever its direction (tests,
    /// and tools standing in for the RT side). Its name is `PATH@OFFSET`.
    pub fn attach(mapping: Mapping) -> Result<Self> {
        let name = place(&mapping);
        Self::attach_named(mapping, name)
    }

    fn attach_named(mapping: Mapping, name: String) -> Result<Self> {
        // SAFETY: `mapping` moves into the returned endpoint beside the ring endpoint built on
        // it, declared after it, so it outlives it (see the module docs: the range does not
        // move, the borrow never leaves the private field, and that field is dropped first).
        let ring = unsafe { attach_end(&mapping, End::Producer, &name) }?;
        let geometry = ring.geometry();
        Ok(Self {
            sender: mq::Sender::new(ring.into_producer()),
            mapping,
            geometry,
            name,
            bell: Bell::default(),
        })
    }

    /// Sends `msg` with `priority` (higher is more urgent), waiting as long as the ring is
    /// full.
    pub fn send(&mut self, msg: &[u8], priority: u8) -> Result<()> {
        self.send_waiting(msg, priority, Wait::Forever)
    }

    /// Sends without waiting: [`Error::WouldBlock`] if the ring is full.
    pub fn try_send(&mut self, msg: &[u8], priority: u8) -> Result<()> {
        self.send_waiting(msg, priority, Wait::No)
    }

    /// Sends, waiting until `deadline` at most: [`Error::TimedOut`] if the ring is still full
    /// then.
    pub fn send_until(&mut self, msg: &[u8], priority: u8, deadline: Instant) -> Result<()> {
        self.send_waiting(msg, priority, Wait::Until(deadline))
    }

    fn send_waiting(&mut self, msg: &[u8], priority: u8, wait: Wait) -> Result<()> {
        let notify = blocking(
            wait,
            &mut self.sender,
            &mut self.bell,
            |s| s.try_send(msg, priority),
            |s| s.arm_doorbell(),
        )?;
        if notify == Notify::Doorbell {
            self.bell.peer_waits();
        }
        Ok(())
    }

    /// The queue's attributes: most messages, largest message, messages in the ring now.
    pub fn attr(&mut self) -> Result<Attr> {
        Ok(self.sender.attr()?)
    }

    /// Largest message in bytes.
    pub fn max_message(&self) -> usize {
        self.geometry.max_message()
    }

    /// The channel's geometry (validated on open).
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The channel's memory.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Doorbells the peer asked for (it slept waiting for a message) that were rung.
    pub fn doorbells_rung(&self) -> u64 {
        self.bell.rung
    }

    /// Doorbells the peer asked for (it slept waiting for a message) that Linux could not ring.
    pub fn doorbells_not_rung(&self) -> u64 {
        self.bell.not_rung
    }

    /// Waits for a free slot that the channel device's interrupt ended.
    pub fn interrupt_wakes(&self) -> u64 {
        self.bell.interrupt_wakes
    }
}

impl fmt::Debug for ChannelSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSender")
            .field("name", &self.name)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// The receiving end of a channel (`rt-to-linux`, or the hypervisor's `hypervisor-to-linux`):
/// Linux is its consumer. Messages come highest priority first, oldest first within a
/// priority.
pub struct ChannelReceiver {
    /// Borrows the memory `mapping` maps (see the module docs): declared first, dropped first.
    /// Boxed: its priority bookkeeping is over a kilobyte.
    receiver: Box<mq::Receiver<'static>>,
    /// The channel's memory; unmapped (and the end's lock released) when dropped.
    mapping: Mapping,
    geometry: Geometry,
    name: String,
    /// `rt-to-linux` unless the announcement said otherwise.
    direction: Direction,
    bell: Bell,
}

impl ChannelReceiver {
    /// Opens channel `name` from `/proc/cmdline` on `/dev/mem`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(&Announcements::from_proc()?, DEV_MEM, name)
    }

    /// Opens channel `name` of `announcements` on `mem`. [`Error::WrongDirection`] if Linux is
    /// its producer.
    pub fn open_with(
        announcements: &Announcements,
        mem: impl AsRef<Path>,
        name: &str,
    ) -> Result<Self> {
        Self::open_info(announcements.find(name)?, mem)
    }

    /// Opens the announced channel `info` on `mem`.
    pub fn open_info(info: &ChannelInfo, mem: impl AsRef<Path>) -> Result<Self> {
        let mapping = map_for(info, false, mem)?;
        let mut receiver = Self::attach_named(mapping, info.name.clone())?;
        receiver.bell = Bell::for_info(info);
        receiver.direction = info.direction;
        Ok(receiver)
    }

    /// The consumer end of the channel initialized in `mapping`, whatever its direction (tests,
    /// and tools standing in for the RT side). Its name is `PATH@OFFSET`.
    pub fn attach(mapping: Mapping) -> Result<Self> {
        let name = place(&mapping);
        Self::attach_named(mapping, name)
    }

    fn attach_named(mapping: Mapping, name: String) -> Result<Self> {
        // SAFETY: as in `ChannelSender::attach_named`: `mapping` moves into the endpoint and
        // outlives the ring endpoint borrowing it.
        let ring = unsafe { attach_end(&mapping, End::Consumer, &name) }?;
        let geometry = ring.geometry();
        Ok(Self {
            receiver: Box::new(mq::Receiver::new(ring.into_consumer())),
            mapping,
            geometry,
            name,
            direction: Direction::RtToLinux,
            bell: Bell::default(),
        })
    }

    /// Receives the next message into `buf`, waiting as long as the ring is empty: its length
    /// (it is in `buf[..len]`) and priority. [`Error::BufferTooSmall`] (consuming nothing) if
    /// `buf` is shorter than the message; a buffer of [`ChannelReceiver::max_message`] bytes
    /// always fits.
    pub fn receive(&mut self, buf: &mut [u8]) -> Result<(usize, u8)> {
        self.receive_waiting(buf, Wait::Forever)
    }

    /// Receives without waiting: [`Error::WouldBlock`] if the ring is empty.
    pub fn try_receive(&mut self, buf: &mut [u8]) -> Result<(usize, u8)> {
        self.receive_waiting(buf, Wait::No)
    }

    /// Receives, waiting until `deadline` at most: [`Error::TimedOut`] if the ring is still
    /// empty then.
    pub fn receive_until(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(usize, u8)> {
        self.receive_waiting(buf, Wait::Until(deadline))
    }

    fn receive_waiting(&mut self, buf: &mut [u8], wait: Wait) -> Result<(usize, u8)> {
        let got = blocking(
            wait,
            &mut *self.receiver,
            &mut self.bell,
            |r| r.try_receive(buf),
            |r| r.arm_doorbell(),
        )?;
        if got.notify == Notify::Doorbell {
            self.bell.peer_waits();
        }
        Ok((got.len, got.priority))
    }

    /// The queue's attributes: most messages, largest message, messages in the ring now.
    pub fn attr(&mut self) -> Result<Attr> {
        Ok(self.receiver.attr()?)
    }

    /// Largest message in bytes.
    pub fn max_message(&self) -> usize {
        self.geometry.max_message()
    }

    /// The channel's geometry (validated on open).
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its direction as announced (`rt-to-linux` for an endpoint attached without an
    /// announcement).
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The channel's memory.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Doorbells the peer asked for (it slept waiting for a free slot) that were rung.
    pub fn doorbells_rung(&self) -> u64 {
        self.bell.rung
    }

    /// Doorbells the peer asked for (it slept waiting for a free slot) that Linux could not
    /// ring.
    pub fn doorbells_not_rung(&self) -> u64 {
        self.bell.not_rung
    }

    /// Waits for a message that the channel device's interrupt ended.
    pub fn interrupt_wakes(&self) -> u64 {
        self.bell.interrupt_wakes
    }
}

impl fmt::Debug for ChannelReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelReceiver")
            .field("name", &self.name)
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

/// An announced channel opened as the end Linux has on it.
#[derive(Debug)]
pub enum Channel {
    /// A `linux-to-rt` channel.
    Sender(ChannelSender),
    /// An `rt-to-linux` or `hypervisor-to-linux` channel.
    Receiver(ChannelReceiver),
}

impl Channel {
    /// Opens channel `name` from `/proc/cmdline` on `/dev/mem`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(&Announcements::from_proc()?, DEV_MEM, name)
    }

    /// Opens channel `name` of `announcements` on `mem` (`/dev/mem`, or a file standing in for
    /// it), as a sender or a receiver according to its direction.
    pub fn open_with(
        announcements: &Announcements,
        mem: impl AsRef<Path>,
        name: &str,
    ) -> Result<Self> {
        let info = announcements.find(name)?;
        Ok(if info.direction.linux_produces() {
            Self::Sender(ChannelSender::open_info(info, mem)?)
        } else {
            Self::Receiver(ChannelReceiver::open_info(info, mem)?)
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Sender(s) => s.name(),
            Self::Receiver(r) => r.name(),
        }
    }

    /// Its direction.
    pub fn direction(&self) -> Direction {
        match self {
            Self::Sender(_) => Direction::LinuxToRt,
            Self::Receiver(r) => r.direction,
        }
    }

    /// The queue's attributes.
    pub fn attr(&mut self) -> Result<Attr> {
        match self {
            Self::Sender(s) => s.attr(),
            Self::Receiver(r) => r.attr(),
        }
    }

    /// The sender, or [`Error::WrongDirection`].
    pub fn into_sender(self) -> Result<ChannelSender> {
        match self {
            Self::Sender(s) => Ok(s),
            Self::Receiver(r) => Err(Error::WrongDirection {
                name: r.name,
                direction: r.direction,
            }),
        }
    }

    /// The receiver, or [`Error::WrongDirection`].
    pub fn into_receiver(self) -> Result<ChannelReceiver> {
        match self {
            Self::Receiver(r) => Ok(r),
            Self::Sender(s) => Err(Error::WrongDirection {
                name: s.name,
                direction: Direction::LinuxToRt,
            }),
        }
    }
}
