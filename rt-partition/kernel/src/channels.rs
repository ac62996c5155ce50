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
//! Waiting: on a channel with doorbell notification, a blocked task stores 1 in the channel's
//! doorbell request word (in this partition's own RAM, where Linux cannot reach: the
//! hypervisor interrupts this partition for Linux's doorbell only when it finds the word set),
//! arms the ring's doorbell flag and parks, naming itself as the channel's waiter. Linux,
//! seeing the flag when it sends (or frees a slot), rings the `DOORBELL` hypercall; the
//! hypervisor takes the request (back to 0) and sends `DOORBELL_VECTOR` to this partition's
//! first CPU without any VM exit here, and `on_doorbell` wakes the waiter of each channel
//! whose request was taken, directly by its name (on another CPU through that CPU's mailbox):
//! no search among waiters, and nobody else wakes. A doorbell the hypervisor held back (it
//! limits each channel's rate and this partition's doorbells a second) is delivered when the
//! limit allows: it delays a wake-up, it never loses it. So a waiter needs no periodic timer,
//! and an idle Linux costs this CPU nothing; the park still ends after
//! [`DOORBELL_FALLBACK_NS`], a safety net for a wake-up that cannot come (a full mailbox on
//! the way to another CPU, a hypervisor without a timer to deliver held-back doorbells, a
//! Linux that does not ring). On a `poll` channel a blocked task sleeps [`POLL_NS`] between
//! attempts.
//!
//! Toward Linux: when a send (or a receive that frees a slot) finds Linux's doorbell flag
//! armed on a doorbell channel, this side rings the same `DOORBELL` hypercall with the
//! channel's base; the hypervisor raises its channel device's interrupt in Linux. That costs
//! this CPU one VM exit per doorbell, and only when Linux waits on that very channel (the
//! ring's event suppression); a task that never talks to a waiting Linux never exits. Without
//! the hypervisor (bare metal) nothing is rung and Linux, if any, polls.
//!
//! Linux is not trusted: a corrupt ring stops that channel with an error the caller sees
//! (the ring crate's `Corrupt` / `PeerFailed`), never the kernel.
//!
//! Re-establishment is the RT side's: the endpoint's owner task initializes the ring again,
//! empty, from the geometry it validated at open, never from what the ring's header says now.
//! The cue is Linux's request (a word in the ring's header that Linux's `bulkhead reset` sets):
//! a healthy endpoint honours it whenever it would wait anyway; a failed one (every operation
//! returns the failure) leaves the decision to its task: `reestablish` at once, or
//! `await_reestablish`, which looks for the request at a slow poll ([`REESTABLISH_POLL_NS`]).
//! Either way it happens in the task that owns the channel, at most once per wait or poll, so
//! a Linux that corrupts or resets the channel again and again costs only that task.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bulkhead_abi::channel::{Direction as ChannelDirection, Notify as ChannelNotify};
use bulkhead_abi::hypercall::{Hypercall, Status};
use bulkhead_abi::rt_boot::{ChannelInfo, DOORBELL_REQUESTS_GPA, MAX_CHANNELS};
use bulkhead_ring::mq::{Attr, Receiver, Sender};
use bulkhead_ring::{Armed, Notify, Producer, Ring, RingError, SharedRegion};
use bulkhead_rt_core::{Error, Resched, Switch, TaskId, WakeReason};
use spin::Once;

use crate::api::{self, Timeout};
use crate::sched::{self, Request, State};

/// How long a task blocked on a `poll` channel sleeps between polls.
pub const POLL_NS: u64 = 100_000;
/// The longest a task blocked on a `doorbell` channel sleeps without one (the safety net:
/// held-back doorbells are delivered late, not dropped). Linux's endpoints re-check their
/// rings at the same interval.
pub const DOORBELL_FALLBACK_NS: u64 = 100_000_000;

/// How often a task waiting for Linux to ask for a re-establishment looks.
pub const REESTABLISH_POLL_NS: u64 = 10_000_000;

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
    Kernel(Error),
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
/// Whether doorbells toward Linux are rung (under the hypervisor).
static RING_LINUX: AtomicBool = AtomicBool::new(false);
/// Whether each channel's RT end is open.
static OPEN: [AtomicBool; MAX_CHANNELS] = [const { AtomicBool::new(false) }; MAX_CHANNELS];

/// Takes the channel table (init, boot CPU) and checks each ring's header; returns how many
/// are usable and logs each one.
/// `under_hypervisor`: whether Linux may be rung.
pub(crate) fn init(infos: &'static [ChannelInfo], under_hypervisor: bool) -> usize {
    CHANNELS.call_once(|| infos);
    RING_LINUX.store(under_hypervisor, Ordering::Relaxed);
    let mut usable = 0;
    for info in infos {
        let name = info.name().unwrap_or("?");
        match attach(info) {
            Ok(ring) => {
                let g = ring.geometry();
                usable += 1;
                log::info!(
                    "channel {name}: {}, {} slots of {} bytes at {:#x}",
                    info.direction().unwrap_or(ChannelDirection::RtToLinux),
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

/// Each channel's waiter for Linux's doorbell, as [`waiter_word`] names it (0: none): the
/// task stores itself in the same kernel entry that parks it, and the doorbell interrupt
/// takes the word (so one doorbell wakes at most once). A word left by a wait that ended
/// otherwise (its deadline) names a task that is no longer parked on that channel: a
/// doorbell for it then wakes nothing ([`Kernel::wake_parked`] checks the park's tag).
///
/// [`Kernel::wake_parked`]: bulkhead_rt_core::Kernel::wake_parked
static WAITER: [AtomicU32; MAX_CHANNELS] = [const { AtomicU32::new(0) }; MAX_CHANNELS];

/// The park tag of a wait for channel `index`'s doorbell (apart from the device lines' tags).
const DOORBELL_PARK_TAG: u32 = 0x2_0000;

fn park_tag(index: usize) -> u32 {
    DOORBELL_PARK_TAG + index as u32
}

/// Names task `local` of CPU `cpu` in one nonzero word.
fn waiter_word(cpu: usize, local: TaskId) -> u32 {
    ((cpu as u32) << 16 | local.index() as u32) + 1
}

/// The CPU and the task a nonzero [`waiter_word`] names.
fn waiter_of(word: u32) -> (usize, TaskId) {
    let word = word - 1;
    ((word >> 16) as usize, TaskId::new(word as u16))
}

/// The doorbell interrupt on CPU `cpu` (its state held): wakes the waiter of each channel
/// whose request the hypervisor took (the request word is back to 0), by its name: on this
/// CPU directly, on another through that CPU's mailbox. A flood from Linux on one channel
/// therefore wakes that channel's task only, never the others', and costs no search. Returns
/// what to reschedule and this CPU's decision: this CPU's last waiter (its only one, as a
/// rule) is woken and decided on in one call, and switched to without the run queue when it
/// outranks every ready task.
///
/// A request stored again between the hypervisor's take and this interrupt leaves its
/// channel alone: the waiting task looks at its ring after storing the request, so whatever
/// Linux sent before then is seen there, and the take of the new request brings an interrupt
/// of its own.
pub(crate) fn on_doorbell(state: &mut State, cpu: usize, now: u64) -> (Resched, Switch) {
    let channels = CHANNELS.get().map_or(0, |c| c.len());
    let mut resched = Resched::NONE;
    // The last waiter of this CPU found so far: woken with the decision if no other follows.
    let mut last: Option<(TaskId, u32)> = None;
    for (index, waiter) in WAITER.iter().enumerate().take(channels) {
        let word = waiter.load(Ordering::Acquire);
        let taken = || doorbell_request(index).is_some_and(|w| w.load(Ordering::Acquire) == 0);
        if word == 0
            || !taken()
            || waiter
                .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        let (owner, task) = waiter_of(word);
        let tag = park_tag(index);
        if owner != cpu {
            // A full mailbox loses this wake-up, not the data: the park's deadline ends it.
            let _ = sched::send_request(owner, Request::WakeParked(task, tag));
        } else if let Some((earlier, earlier_tag)) = last.replace((task, tag))
            && let Ok(preempt) = state.kernel.wake_parked(earlier, earlier_tag, now)
        {
            resched.merge(preempt.into());
        }
    }
    let switch = last
        .and_then(|(task, tag)| {
            state
                .kernel
                .wake_parked_and_schedule(sched::LOCAL, task, tag, now)
                .ok()
        })
        .unwrap_or(Switch::Stay);
    (resched, switch)
}

/// Parks the calling task as channel `index`'s doorbell waiter until the doorbell or
/// `deadline`; `Ok(true)` when the doorbell ended the park. `request` (the channel's request
/// word) was stored before the ring's flag was armed: if the hypervisor took it since, a
/// doorbell is here or on its way and the task does not park (`Ok(false)`). The waiter is
/// named before the word is looked at, both in one kernel entry: a take after that look
/// finds the name, so the interrupt wakes the parked task; no wake-up is lost between them.
fn park_for_doorbell(index: usize, request: &AtomicU32, deadline: u64) -> Result<bool, Error> {
    let waiter = &WAITER[index];
    let parked = sched::enter(|state, core, now| {
        let task = match state.kernel.current(core) {
            Ok(task) => task,
            Err(e) => return (Err(e), Resched::NONE, Switch::Stay),
        };
        let word = waiter_word(api::cpu(), task);
        waiter.store(word, Ordering::SeqCst);
        if request.load(Ordering::SeqCst) == 0 {
            let _ = waiter.compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed);
            return (Ok(false), Resched::NONE, Switch::Stay);
        }
        match state
            .kernel
            .park_until(core, park_tag(index), deadline, now)
        {
            Ok(switch) => (Ok(true), Resched::NONE, switch),
            Err(Error::TimedOut) => (Ok(false), Resched::NONE, Switch::Stay),
            Err(e) => (Err(e), Resched::NONE, Switch::Stay),
        }
    })?;
    Ok(parked && api::wake_reason() == Some(WakeReason::Woken))
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

/// An open end: the ring, and how its channel takes doorbells.
struct Opened {
    ring: Ring<'static>,
    /// The channel's index and doorbell request word, when it takes doorbells (under the
    /// hypervisor).
    doorbell: Option<(usize, &'static AtomicU32)>,
    /// The channel's base, when Linux is rung for it.
    linux_doorbell: Option<u64>,
}

/// Finds `name`, checks its direction and marks that end open.
fn open(name: &str, direction: ChannelDirection) -> Result<Opened, ChannelError> {
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
    let ring = attach(info).map_err(|e| {
        OPEN[index].store(false, Ordering::Release);
        ChannelError::Ring(e)
    })?;
    let takes_doorbells = info.notify() == Some(ChannelNotify::Doorbell);
    let linux_doorbell =
        (takes_doorbells && RING_LINUX.load(Ordering::Relaxed)).then_some(info.base);
    let doorbell = (takes_doorbells && crate::under_hypervisor())
        .then(|| doorbell_request(index))
        .flatten()
        .map(|request| (index, request));
    Ok(Opened {
        ring,
        doorbell,
        linux_doorbell,
    })
}

/// Channel `index`'s doorbell request word: the hypervisor interrupts this partition for
/// Linux's doorbell on the channel only after the kernel stored 1 there (and takes it back to
/// 0), so Linux cannot interrupt it unasked.
fn doorbell_request(index: usize) -> Option<&'static AtomicU32> {
    static WORDS: Once<&'static [AtomicU32; MAX_CHANNELS]> = Once::new();
    let words = WORDS.call_once(|| {
        // SAFETY: under the hypervisor (the caller checks) the page at DOORBELL_REQUESTS_GPA
        // is this partition's RAM, identity-mapped, zeroed by the loader and reserved for
        // these words by the boot protocol (below the kernel's image, outside every segment);
        // the hypervisor reaches them only through atomics too, and any value is a valid
        // `AtomicU32`.
        unsafe { &*(DOORBELL_REQUESTS_GPA as *const [AtomicU32; MAX_CHANNELS]) }
    });
    words.get(index)
}

/// How an endpoint waits for Linux, and rings it.
#[derive(Debug)]
struct Waiting {
    /// The channel's index and doorbell request word (set before each park on the doorbell).
    doorbell: Option<(usize, &'static AtomicU32)>,
    /// Parks that a doorbell ended.
    doorbell_wakes: u64,
    linux_doorbell: Option<u64>,
    /// Doorbells rung toward Linux.
    linux_rung: u64,
    /// Re-establishments Linux asked for that a wait carried out.
    reestablished: u64,
}

impl Waiting {
    fn new(opened: &Opened) -> Self {
        Self {
            doorbell: opened.doorbell,
            doorbell_wakes: 0,
            linux_doorbell: opened.linux_doorbell,
            linux_rung: 0,
            reestablished: 0,
        }
    }

    /// Rings Linux when the ring says it waits.
    fn notify(&mut self, notify: Notify) {
        if notify != Notify::Doorbell {
            return;
        }
        if let Some(base) = self.linux_doorbell
            && crate::arch::cpu::hypercall(Hypercall::Doorbell { channel_base: base })
                == Some(Ok(Status::Ok))
        {
            self.linux_rung += 1;
        }
    }
}

/// What [`blocking`] needs of an endpoint besides its attempt: Linux's re-establishment
/// request, honoured whenever the endpoint would wait.
trait Reinit {
    fn reinit_requested(&self) -> bool;
    fn reinit(&mut self) -> Result<(), RingError>;
}

impl Reinit for Sender<'static> {
    fn reinit_requested(&self) -> bool {
        Sender::reinit_requested(self)
    }
    fn reinit(&mut self) -> Result<(), RingError> {
        Sender::reinit(self)
    }
}

impl Reinit for Receiver<'static> {
    fn reinit_requested(&self) -> bool {
        Receiver::reinit_requested(self)
    }
    fn reinit(&mut self) -> Result<(), RingError> {
        Receiver::reinit(self)
    }
}

/// Runs `attempt` on `end` until it stops saying `WouldBlock`, waiting until `timeout`: on the
/// doorbell (after `arm`) with a fallback timer, or by polling. Before each wait, a
/// re-establishment Linux asked for is carried out (the channel starts over, empty).
fn blocking<E: Reinit, T>(
    end: &mut E,
    waiting: &mut Waiting,
    timeout: Timeout,
    mut attempt: impl FnMut(&mut E) -> Result<T, RingError>,
    mut arm: impl FnMut(&mut E) -> Result<Armed, RingError>,
) -> Result<T, ChannelError> {
    loop {
        match attempt(end) {
            Err(RingError::WouldBlock) => {}
            other => return other.map_err(ChannelError::Ring),
        }
        if end.reinit_requested() {
            reestablish(end, waiting)?;
            continue;
        }
        let now = api::now_ns();
        let limit = match timeout {
            Timeout::NonBlocking => return Err(ChannelError::WouldBlock),
            Timeout::Until(deadline) if now >= deadline => return Err(ChannelError::TimedOut),
            Timeout::Until(deadline) => Some(deadline),
            Timeout::Forever => None,
        };
        match waiting.doorbell {
            Some((index, request)) => {
                // Ask the hypervisor for Linux's doorbell before arming the ring's flag, so
                // that whenever Linux sees the flag and rings, the request is there.
                request.store(1, Ordering::SeqCst);
                if arm(end).map_err(ChannelError::Ring)? == Armed::Ready {
                    continue;
                }
                let fallback = now.saturating_add(DOORBELL_FALLBACK_NS);
                let wake = limit.map_or(fallback, |d| d.min(fallback));
                if park_for_doorbell(index, request, wake).map_err(ChannelError::Kernel)? {
                    waiting.doorbell_wakes += 1;
                }
            }
            None => {
                let poll = now.saturating_add(POLL_NS);
                let wake = limit.map_or(poll, |d| d.min(poll));
                api::sleep_until(wake).map_err(ChannelError::Kernel)?;
            }
        }
    }
}

/// Initializes `end`'s channel again, empty, and counts it.
fn reestablish<E: Reinit>(end: &mut E, waiting: &mut Waiting) -> Result<(), ChannelError> {
    end.reinit().map_err(ChannelError::Ring)?;
    waiting.reestablished += 1;
    Ok(())
}

/// Sleeps in steps of [`REESTABLISH_POLL_NS`] until Linux asks for `end`'s channel to be
/// re-established, or `timeout`; then re-establishes it.
fn await_reestablish<E: Reinit>(
    end: &mut E,
    waiting: &mut Waiting,
    timeout: Timeout,
) -> Result<(), ChannelError> {
    loop {
        if end.reinit_requested() {
            return reestablish(end, waiting);
        }
        let now = api::now_ns();
        let next = now.saturating_add(REESTABLISH_POLL_NS);
        let wake = match timeout {
            Timeout::NonBlocking => return Err(ChannelError::WouldBlock),
            Timeout::Until(deadline) if now >= deadline => return Err(ChannelError::TimedOut),
            Timeout::Until(deadline) => next.min(deadline),
            Timeout::Forever => next,
        };
        api::sleep_until(wake).map_err(ChannelError::Kernel)?;
    }
}

/// Opens `name` (an `rt-to-linux` channel) as the bare ring producer, for a sender that never
/// waits and serializes its own calls: the console's log (`log=CHANNEL`).
pub(crate) fn open_log(name: &str) -> Result<Producer<'static>, ChannelError> {
    Ok(open(name, ChannelDirection::RtToLinux)?
        .ring
        .into_producer())
}

/// The RT end of an `rt-to-linux` channel.
#[derive(Debug)]
pub struct ChannelSender {
    sender: Sender<'static>,
    waiting: Waiting,
}

/// Opens `name` for sending.
pub fn open_sender(name: &str) -> Result<ChannelSender, ChannelError> {
    let opened = open(name, ChannelDirection::RtToLinux)?;
    Ok(ChannelSender {
        waiting: Waiting::new(&opened),
        sender: Sender::new(opened.ring.into_producer()),
    })
}

impl ChannelSender {
    /// Sends `msg` with `priority` (higher is more urgent), waiting for a free slot until
    /// `timeout` (`mq_send` / `mq_timedsend`).
    pub fn send(&mut self, msg: &[u8], priority: u8, timeout: Timeout) -> Result<(), ChannelError> {
        blocking(
            &mut self.sender,
            &mut self.waiting,
            timeout,
            |s| s.try_send(msg, priority),
            |s| s.arm_doorbell(),
        )
        .map(|notify| self.waiting.notify(notify))
    }

    /// The queue's attributes (`mq_getattr`).
    pub fn attr(&mut self) -> Result<Attr, ChannelError> {
        self.sender.attr().map_err(ChannelError::Ring)
    }

    /// Whether Linux asked for the channel to be re-established.
    pub fn reestablish_requested(&self) -> bool {
        self.sender.reinit_requested()
    }

    /// Initializes the channel again, empty (messages in it are lost), and goes on from there
    /// (`bulkhead_ring::Producer::reinit`).
    pub fn reestablish(&mut self) -> Result<(), ChannelError> {
        reestablish(&mut self.sender, &mut self.waiting)
    }

    /// Times the channel was re-established (by [`ChannelSender::reestablish`], or by a wait
    /// that found Linux's request).
    pub fn reestablished(&self) -> u64 {
        self.waiting.reestablished
    }

    /// Waits until `timeout` for Linux to ask for a re-establishment, then re-establishes.
    pub fn await_reestablish(&mut self, timeout: Timeout) -> Result<(), ChannelError> {
        await_reestablish(&mut self.sender, &mut self.waiting, timeout)
    }

    /// Waits for a free slot that a doorbell ended.
    pub fn doorbell_wakes(&self) -> u64 {
        self.waiting.doorbell_wakes
    }

    /// Doorbells rung toward Linux (a message for a waiting receiver).
    pub fn linux_rung(&self) -> u64 {
        self.waiting.linux_rung
    }
}

/// The RT end of a `linux-to-rt` channel.
#[derive(Debug)]
pub struct ChannelReceiver {
    receiver: Receiver<'static>,
    waiting: Waiting,
}

/// Opens `name` for receiving.
pub fn open_receiver(name: &str) -> Result<ChannelReceiver, ChannelError> {
    let opened = open(name, ChannelDirection::LinuxToRt)?;
    Ok(ChannelReceiver {
        waiting: Waiting::new(&opened),
        receiver: Receiver::new(opened.ring.into_consumer()),
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
        blocking(
            &mut self.receiver,
            &mut self.waiting,
            timeout,
            |r| r.try_receive(buf),
            |r| r.arm_doorbell(),
        )
        .map(|r| {
            self.waiting.notify(r.notify);
            (r.len, r.priority)
        })
    }

    /// The queue's attributes (`mq_getattr`).
    pub fn attr(&mut self) -> Result<Attr, ChannelError> {
        self.receiver.attr().map_err(ChannelError::Ring)
    }

    /// Whether Linux asked for the channel to be re-established.
    pub fn reestablish_requested(&self) -> bool {
        self.receiver.reinit_requested()
    }

    /// Initializes the channel again, empty (messages in it are lost), and goes on from there
    /// (`bulkhead_ring::Consumer::reinit`).
    pub fn reestablish(&mut self) -> Result<(), ChannelError> {
        reestablish(&mut self.receiver, &mut self.waiting)
    }

    /// Times the channel was re-established (by [`ChannelReceiver::reestablish`], or by a
    /// wait that found Linux's request).
    pub fn reestablished(&self) -> u64 {
        self.waiting.reestablished
    }

    /// Waits until `timeout` for Linux to ask for a re-establishment, then re-establishes.
    pub fn await_reestablish(&mut self, timeout: Timeout) -> Result<(), ChannelError> {
        await_reestablish(&mut self.receiver, &mut self.waiting, timeout)
    }

    /// Waits for a message that a doorbell ended.
    pub fn doorbell_wakes(&self) -> u64 {
        self.waiting.doorbell_wakes
    }

    /// Doorbells rung toward Linux (a slot freed for a waiting sender).
    pub fn linux_rung(&self) -> u64 {
        self.waiting.linux_rung
    }
}
