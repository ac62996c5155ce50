//! The ring protocol: initialization, attach, and the two endpoints of a single-producer
//! single-consumer ring of fixed-size slots.
//!
//! # Protocol
//!
//! - The producer owns the slots of indices `producer..consumer + slot_count` and the producer
//!   index; the consumer owns the slots of indices `consumer..producer` and the consumer index.
//! - Send: write the slot's payload and header (relaxed atomic word stores), then Release-store
//!   the producer index. Receive: Acquire-load the producer index, read the slot, then
//!   Release-store the consumer index, which hands the slot back.
//! - Each side keeps its own index privately and only publishes it; it reads the other's index,
//!   checks it (see below), and caches it: the producer reloads the consumer index only when the
//!   ring looks full, the FIFO consumer reloads the producer index only when it has used up the
//!   messages it saw last time, so in a stream neither side reads the line the other writes on
//!   every message.
//!
//! # Event suppression
//!
//! A side that is about to sleep *arms* its doorbell flag, issues a `SeqCst` fence, and checks
//! the ring again ([`Consumer::arm_doorbell`], [`Producer::arm_doorbell`]); only if the ring is
//! still empty (full) may it sleep. The other side publishes its index, issues a `SeqCst` fence,
//! and then reads the flag; if set, it clears it and reports [`Notify::Doorbell`]: the caller
//! must ring the peer's doorbell (hypercall, interrupt, futex wake). The two fences make the race
//! close both ways: either the sleeper sees the new index, or the waker sees the flag. Since the
//! waker clears the flag, one arming buys at most one doorbell, so a peer cannot make this side
//! flood it.
//!
//! # Hostile peer
//!
//! The geometry is validated once ([`Ring::attach`]) and kept privately; the shared geometry
//! block is never read again. The peer's index is checked on every load: it must stay within a
//! ring of ours and never move backwards, else the endpoint stops with [`RingError::Corrupt`] and
//! publishes the failure in the state word (messages validated by an earlier load are still
//! delivered first). A slot header is loaded once; its length is checked
//! against the slot before any copy, and its sequence number against the index. A failure is
//! sticky: every later call returns the same error. Nothing here panics on a value read from the
//! region, and every access is bounds-checked against the region (see [`crate::shared`]).

use core::fmt;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use crate::error::{Corruption, LayoutError, RingError};
use crate::layout::{GEOMETRY_WORDS, Geometry, GeometryBlock, SlotHeader, State, W_REINIT_REQUEST};
use crate::shared::{Control, SharedRegion, fence};

/// Whether the peer must be woken after a send or a receive.
#[must_use = "the peer may be asleep waiting for this doorbell"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// The peer armed its doorbell: ring it (the flag has been cleared).
    Doorbell,
    /// The peer is not waiting: no doorbell.
    Suppressed,
}

impl Notify {
    /// Whether the peer must be notified.
    pub fn needed(self) -> bool {
        self == Self::Doorbell
    }
}

/// The outcome of arming a doorbell before sleeping.
#[must_use = "sleeping after `Armed::Ready` would wait for a doorbell that may never come"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Armed {
    /// The ring is still empty (for a consumer) or full (for a producer) with the doorbell
    /// armed: the caller may sleep; the peer's next send (receive) will report
    /// [`Notify::Doorbell`].
    Sleep,
    /// Work arrived while arming; the doorbell is disarmed again: do not sleep, retry now.
    Ready,
}

/// A message taken from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its length: it is in `buf[..len]`.
    pub len: usize,
    /// Its priority.
    pub priority: u8,
    /// Whether the producer must be woken (it was waiting for a free slot).
    pub notify: Notify,
}

/// An initialized or attached channel, not yet split into its endpoints.
#[derive(Debug, Clone)]
pub struct Ring<'a> {
    region: SharedRegion<'a>,
    geometry: Geometry,
    producer: u64,
    consumer: u64,
}

impl<'a> Ring<'a> {
    /// Formats `region` as an empty channel with slots of `slot_size` bytes (the initializer: the
    /// hypervisor or the RT side, before anyone attaches).
    ///
    /// The whole region is the channel: `slot_count = (region.len() - HEADER_SIZE) / slot_size`.
    /// Nobody may be using the region meanwhile: an endpoint attached before would see its peer's
    /// index jump and stop with [`RingError::Corrupt`]. Slot contents are left as they are.
    pub fn init(region: SharedRegion<'a>, slot_size: u32) -> Result<Self, RingError> {
        let geometry = Geometry::new(region.len(), slot_size)?;
        region.control(Control::State).store(0, Relaxed);
        for word in region.header_words() {
            word.store(0, Relaxed);
        }
        Ok(Self::reinit(region, geometry))
    }

    /// Formats `region` as an empty channel of `geometry` (validated for this region): writes
    /// the words that mean something (the geometry block, the state, the indices, the doorbell
    /// flags, the re-initialization request), a few dozen stores, and publishes the state
    /// last. [`Ring::init`] zeroes the rest of the header page first; an endpoint's `reinit`
    /// does only this, so that a producer that never waits (a log) can do it where it stands.
    fn reinit(region: SharedRegion<'a>, geometry: Geometry) -> Self {
        let state = region.control(Control::State);
        state.store(0, Relaxed);
        let block: [u64; GEOMETRY_WORDS] = zerocopy::transmute!(geometry.block());
        for (word, value) in region.geometry_words().iter().zip(block) {
            word.store(value, Relaxed);
        }
        for control in [
            Control::ProducerIndex,
            Control::ConsumerIndex,
            Control::ConsumerWants,
            Control::ProducerWants,
        ] {
            region.control(control).store(0, Relaxed);
        }
        region.header_words()[W_REINIT_REQUEST].store(0, Relaxed);
        // Publishes everything above to an attacher's Acquire load of the state word.
        state.store(State::READY, Release);
        Self {
            region,
            geometry,
            producer: 0,
            consumer: 0,
        }
    }

    /// Attaches to a channel another party initialized, validating its header against the
    /// region's real length: wrong magic, version, sizes, or indices more than a ring apart are
    /// refused. The geometry read here is the only one used afterwards.
    pub fn attach(region: SharedRegion<'a>) -> Result<Self, RingError> {
        match State::decode(region.control(Control::State).load(Acquire)) {
            State::Ready => {}
            State::Uninitialized => return Err(LayoutError::NotInitialized.into()),
            State::Failed { code, .. } => {
                return Err(RingError::PeerFailed {
                    what: Corruption::from_code(code),
                });
            }
            State::Invalid(_) => {
                return Err(RingError::Corrupt {
                    what: Corruption::StateWord,
                });
            }
        }
        let mut words = [0u64; GEOMETRY_WORDS];
        for (value, word) in words.iter_mut().zip(region.geometry_words()) {
            *value = word.load(Relaxed);
        }
        let block: GeometryBlock = zerocopy::transmute!(words);
        let geometry = Geometry::from_block(&block, region.len())?;
        let producer = region.control(Control::ProducerIndex).load(Acquire);
        let consumer = region.control(Control::ConsumerIndex).load(Acquire);
        if producer.wrapping_sub(consumer) > u64::from(geometry.slot_count()) {
            return Err(LayoutError::Indices { producer, consumer }.into());
        }
        Ok(Self {
            region,
            geometry,
            producer,
            consumer,
        })
    }

    /// The channel's geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// This side's producer endpoint.
    pub fn into_producer(self) -> Producer<'a> {
        Producer {
            end: End::new(self.region, self.geometry, false),
            tail: self.producer,
            tail_slot: self.geometry.slot_of(self.producer),
            head_cache: self.consumer,
        }
    }

    /// This side's consumer endpoint.
    pub fn into_consumer(self) -> Consumer<'a> {
        Consumer {
            end: End::new(self.region, self.geometry, true),
            head: self.consumer,
            head_slot: self.geometry.slot_of(self.consumer),
            last_producer: self.producer,
        }
    }

    /// Both endpoints, for a channel whose two ends live in this program (tests, benchmarks).
    pub fn split(self) -> (Producer<'a>, Consumer<'a>) {
        (self.clone().into_producer(), self.into_consumer())
    }
}

/// Asks the side that re-establishes the channel in `region` to initialize it again (Linux,
/// after the channel failed or when it starts afresh). The request is one word that
/// initializing clears; it never touches the ring itself, so a request to a healthy channel
/// only costs its messages in flight once the other side acts on it.
pub fn request_reinit(region: SharedRegion<'_>) {
    region.header_words()[W_REINIT_REQUEST].store(1, Release);
}

/// Whether a re-initialization of the channel in `region` was asked for and not yet done.
pub fn reinit_requested(region: SharedRegion<'_>) -> bool {
    region.header_words()[W_REINIT_REQUEST].load(Acquire) != 0
}

/// What both endpoints share: the region, the private geometry, and the sticky failure.
struct End<'a> {
    region: SharedRegion<'a>,
    geometry: Geometry,
    failed: Option<RingError>,
    is_consumer: bool,
}

/// One slot: its header word, its payload words, and its slot number.
pub(crate) struct Slot<'a> {
    header: &'a AtomicU64,
    payload: &'a [AtomicU64],
    number: usize,
}

impl<'a> End<'a> {
    fn new(region: SharedRegion<'a>, geometry: Geometry, is_consumer: bool) -> Self {
        Self {
            region,
            geometry,
            failed: None,
            is_consumer,
        }
    }

    /// Fails if this endpoint stopped, or if the state word says the channel is not usable.
    fn check(&mut self) -> Result<(), RingError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let word = self.region.control(Control::State).load(Relaxed);
        if word == State::READY {
            return Ok(());
        }
        let e = match State::decode(word) {
            State::Failed { code, .. } => RingError::PeerFailed {
                what: Corruption::from_code(code),
            },
            _ => RingError::Corrupt {
                what: Corruption::StateWord,
            },
        };
        self.failed = Some(e);
        Err(e)
    }

    /// Stops this endpoint for good and tells the peer why (unless the state word already says
    /// something else).
    fn fail(&mut self, what: Corruption) -> RingError {
        let e = RingError::Corrupt { what };
        self.failed = Some(e);
        let _ = self.region.control(Control::State).compare_exchange(
            State::READY,
            State::failed(what.code(), self.is_consumer),
            Relaxed,
            Relaxed,
        );
        e
    }

    /// The slot holding message `index`, bounds-checked against the region.
    fn slot(&self, index: u64) -> Result<Slot<'a>, RingError> {
        self.slot_number(self.geometry.slot_of(index))
    }

    /// Slot `number`, bounds-checked against the region.
    fn slot_number(&self, number: usize) -> Result<Slot<'a>, RingError> {
        let words = self.geometry.slot_words();
        let start = number.saturating_mul(words);
        let cell = self
            .region
            .slot_area()
            .get(start..start.saturating_add(words));
        // The geometry was checked against the region's length, so this cannot fail; if it
        // did, refuse rather than panic.
        let (header, payload) =
            cell.and_then(<[AtomicU64]>::split_first)
                .ok_or(LayoutError::TooSmall {
                    len: self.region.len(),
                })?;
        Ok(Slot {
            header,
            payload,
            number,
        })
    }

    /// The slot after slot `number` (the streaming sides keep a cursor instead of dividing).
    fn next_slot(&self, number: usize) -> usize {
        let next = number.wrapping_add(1);
        if next >= self.geometry.slot_count() as usize {
            0
        } else {
            next
        }
    }

    /// The waker half of event suppression: Release-stores this side's index `value` in
    /// `index` (handing over what it covers), issues the `SeqCst` fence, then takes the peer's
    /// doorbell `flag`.
    fn publish(&self, index: Control, value: u64, flag: Control) -> Notify {
        self.region.control(index).store(value, Release);
        fence(SeqCst);
        self.take_doorbell(flag)
    }

    /// Reads and clears the peer's doorbell flag (after this side's `SeqCst` fence).
    fn take_doorbell(&self, flag: Control) -> Notify {
        let flag = self.region.control(flag);
        // The plain load keeps the common case (no sleeper) from taking the line exclusive.
        if flag.load(Relaxed) != 0 && flag.swap(0, Relaxed) != 0 {
            Notify::Doorbell
        } else {
            Notify::Suppressed
        }
    }

    /// Arms this side's doorbell flag and issues the `SeqCst` fence; the caller must then
    /// re-check the ring.
    fn arm(&self, flag: Control) {
        self.region.control(flag).store(1, Relaxed);
        fence(SeqCst);
    }

    /// Clears this side's doorbell flag.
    fn disarm(&self, flag: Control) {
        self.region.control(flag).store(0, Relaxed);
    }
}

impl fmt::Debug for End<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("End")
            .field("region", &self.region)
            .field("geometry", &self.geometry)
            .field("failed", &self.failed)
            .finish()
    }
}

/// Copies `msg` into payload words (the last word zero-padded). `msg` fits: checked by callers.
///
/// One relaxed 8-byte store per word: with both sides' slices of equal length the loop has one
/// counter and no checks, so it runs at about a store per cycle.
fn write_payload(payload: &[AtomicU64], msg: &[u8]) {
    let (chunks, rest) = msg.as_chunks::<8>();
    let (words, spare) = payload.split_at(chunks.len().min(payload.len()));
    for (chunk, word) in chunks.iter().zip(words) {
        word.store(u64::from_ne_bytes(*chunk), Relaxed);
    }
    if let Some(word) = spare.first()
        && !rest.is_empty()
    {
        let mut last = [0u8; 8];
        for (to, from) in last.iter_mut().zip(rest) {
            *to = *from;
        }
        word.store(u64::from_ne_bytes(last), Relaxed);
    }
}

/// Copies payload words into `buf` (each word loaded once).
fn read_payload(payload: &[AtomicU64], buf: &mut [u8]) {
    let (chunks, rest) = buf.as_chunks_mut::<8>();
    let (words, spare) = payload.split_at(chunks.len().min(payload.len()));
    for (chunk, word) in chunks.iter_mut().zip(words) {
        *chunk = word.load(Relaxed).to_ne_bytes();
    }
    if let Some(word) = spare.first()
        && !rest.is_empty()
    {
        for (to, from) in rest.iter_mut().zip(word.load(Relaxed).to_ne_bytes()) {
            *to = from;
        }
    }
}

/// The sending end of a channel.
#[derive(Debug)]
pub struct Producer<'a> {
    end: End<'a>,
    /// Index of the next message to write (this side's, published as the producer index).
    tail: u64,
    /// Its slot: `tail % slot_count`.
    tail_slot: usize,
    /// The consumer index as last loaded and checked.
    head_cache: u64,
}

impl<'a> Producer<'a> {
    /// Sends `msg` with `priority` without blocking.
    ///
    /// Returns whether the consumer must be notified, [`RingError::WouldBlock`] if every slot is
    /// in use, [`RingError::MessageTooLong`] if `msg` is longer than
    /// [`Geometry::max_message`].
    pub fn try_send(&mut self, msg: &[u8], priority: u8) -> Result<Notify, RingError> {
        self.end.check()?;
        let max = self.end.geometry.max_message();
        if msg.len() > max {
            return Err(RingError::MessageTooLong {
                len: msg.len(),
                max,
            });
        }
        if self.in_flight() >= self.capacity() {
            self.refresh_head()?;
            if self.in_flight() >= self.capacity() {
                return Err(RingError::WouldBlock);
            }
        }
        let slot = self.end.slot_number(self.tail_slot)?;
        self.end.region.track_write(slot.number);
        write_payload(slot.payload, msg);
        let header = SlotHeader {
            len: msg.len() as u32,
            seq: self.tail as u16,
            priority,
            flags: 0,
        };
        slot.header.store(header.to_word(), Relaxed);
        self.tail = self.tail.wrapping_add(1);
        self.tail_slot = self.end.next_slot(self.tail_slot);
        Ok(self
            .end
            .publish(Control::ProducerIndex, self.tail, Control::ConsumerWants))
    }

    /// Number of free slots, loading the consumer index afresh.
    pub fn free_slots(&mut self) -> Result<u32, RingError> {
        self.end.check()?;
        self.refresh_head()?;
        Ok(self.capacity().saturating_sub(self.in_flight()) as u32)
    }

    /// Number of messages sent and not yet received, loading the consumer index afresh.
    pub fn in_ring(&mut self) -> Result<u32, RingError> {
        self.end.check()?;
        self.refresh_head()?;
        Ok(self.in_flight() as u32)
    }

    /// Before sleeping on a full ring: asks the consumer for a doorbell when it frees a slot,
    /// then checks again. See [`Armed`].
    pub fn arm_doorbell(&mut self) -> Result<Armed, RingError> {
        self.end.check()?;
        self.end.arm(Control::ProducerWants);
        self.refresh_head()?;
        if self.in_flight() < self.capacity() {
            self.disarm_doorbell();
            Ok(Armed::Ready)
        } else {
            Ok(Armed::Sleep)
        }
    }

    /// Withdraws a doorbell request (after a timeout, say). Optional: a stale request costs at
    /// most one spurious doorbell.
    pub fn disarm_doorbell(&self) {
        self.end.disarm(Control::ProducerWants);
    }

    /// The channel's geometry (the private, validated copy).
    pub fn geometry(&self) -> Geometry {
        self.end.geometry
    }

    /// The error that stopped this endpoint, if any.
    pub fn failure(&self) -> Option<RingError> {
        self.end.failed
    }

    /// Whether Linux asked for the channel to be initialized again (see [`Producer::reinit`]).
    pub fn reinit_requested(&self) -> bool {
        reinit_requested(self.end.region)
    }

    /// Initializes the channel again, empty, with the geometry this side validated when it
    /// attached (never the one the region holds now), and starts over on it: the way back
    /// from a failure, for the side that re-establishes the channel (the RT side, or the
    /// hypervisor for its log), on its own decision or when [`Producer::reinit_requested`].
    /// Messages in the ring are lost; a peer still attached sees the indices move under it and
    /// stops, and attaches again. Never fails today (the geometry was checked at attach).
    pub fn reinit(&mut self) -> Result<(), RingError> {
        *self = Ring::reinit(self.end.region, self.end.geometry).into_producer();
        Ok(())
    }

    fn capacity(&self) -> u64 {
        u64::from(self.end.geometry.slot_count())
    }

    fn in_flight(&self) -> u64 {
        self.tail.wrapping_sub(self.head_cache)
    }

    /// Loads the consumer index; it must lie between the last one seen and this side's tail.
    fn refresh_head(&mut self) -> Result<(), RingError> {
        let head = self
            .end
            .region
            .control(Control::ConsumerIndex)
            .load(Acquire);
        let advanced = head.wrapping_sub(self.head_cache);
        if advanced > self.in_flight() {
            let what = if (advanced as i64) < 0 {
                Corruption::ConsumerIndexBackwards
            } else {
                Corruption::ConsumerIndexAhead
            };
            return Err(self.end.fail(what));
        }
        self.head_cache = head;
        Ok(())
    }
}

/// The receiving end of a channel, in FIFO order (see [`crate::mq::Receiver`] for priority
/// order).
#[derive(Debug)]
pub struct Consumer<'a> {
    end: End<'a>,
    /// Index of the next message to read (this side's, published as the consumer index).
    head: u64,
    /// Its slot: `head % slot_count`.
    head_slot: usize,
    /// The producer index as last loaded and checked.
    last_producer: u64,
}

impl<'a> Consumer<'a> {
    /// Receives the oldest message into `buf` without blocking.
    ///
    /// Returns [`RingError::WouldBlock`] if the ring is empty, and
    /// [`RingError::BufferTooSmall`] (consuming nothing) if the message is longer than `buf`.
    pub fn try_receive(&mut self, buf: &mut [u8]) -> Result<Received, RingError> {
        self.end.check()?;
        // Messages up to the last producer index loaded are published already: load it again
        // only when they are used up (the line it sits on is the one the producer writes).
        if self.head == self.last_producer && self.poll()? == self.head {
            return Err(RingError::WouldBlock);
        }
        let slot = self.end.slot_number(self.head_slot)?;
        self.end.region.track_read(slot.number);
        let header = SlotHeader::from_word(slot.header.load(Relaxed));
        if header.seq != self.head as u16 {
            return Err(self.end.fail(Corruption::SlotSequence));
        }
        let len = self.check_len(header)?;
        let capacity = buf.len();
        let dst = buf
            .get_mut(..len)
            .ok_or(RingError::BufferTooSmall { len, capacity })?;
        read_payload(slot.payload, dst);
        let notify = self.release_one();
        Ok(Received {
            len,
            priority: header.priority,
            notify,
        })
    }

    /// Number of messages waiting, loading the producer index afresh.
    pub fn pending(&mut self) -> Result<u32, RingError> {
        self.end.check()?;
        let producer = self.poll()?;
        Ok(producer.wrapping_sub(self.head) as u32)
    }

    /// Before sleeping on an empty ring: asks the producer for a doorbell on its next message,
    /// then checks again. See [`Armed`].
    pub fn arm_doorbell(&mut self) -> Result<Armed, RingError> {
        self.end.check()?;
        self.end.arm(Control::ConsumerWants);
        if self.poll()? != self.head {
            self.disarm_doorbell();
            Ok(Armed::Ready)
        } else {
            Ok(Armed::Sleep)
        }
    }

    /// Withdraws a doorbell request. Optional: a stale request costs at most one spurious
    /// doorbell.
    pub fn disarm_doorbell(&self) {
        self.end.disarm(Control::ConsumerWants);
    }

    /// The channel's geometry (the private, validated copy).
    pub fn geometry(&self) -> Geometry {
        self.end.geometry
    }

    /// The error that stopped this endpoint, if any.
    pub fn failure(&self) -> Option<RingError> {
        self.end.failed
    }

    /// Whether Linux asked for the channel to be initialized again (see [`Consumer::reinit`]).
    pub fn reinit_requested(&self) -> bool {
        reinit_requested(self.end.region)
    }

    /// As [`Producer::reinit`], for the consuming side.
    pub fn reinit(&mut self) -> Result<(), RingError> {
        *self = Ring::reinit(self.end.region, self.end.geometry).into_consumer();
        Ok(())
    }

    /// Checks the endpoint is usable (see `End::check`).
    pub(crate) fn check(&mut self) -> Result<(), RingError> {
        self.end.check()
    }

    /// Stops the endpoint (see `End::fail`).
    pub(crate) fn fail(&mut self, what: Corruption) -> RingError {
        self.end.fail(what)
    }

    /// Index of the next message to read.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Loads the producer index; it must not move backwards nor get more than a ring ahead.
    pub(crate) fn poll(&mut self) -> Result<u64, RingError> {
        let producer = self
            .end
            .region
            .control(Control::ProducerIndex)
            .load(Acquire);
        if (producer.wrapping_sub(self.last_producer) as i64) < 0 {
            return Err(self.end.fail(Corruption::ProducerIndexBackwards));
        }
        if producer.wrapping_sub(self.head) > u64::from(self.end.geometry.slot_count()) {
            return Err(self.end.fail(Corruption::ProducerIndexAhead));
        }
        self.last_producer = producer;
        Ok(producer)
    }

    /// The header of message `index` (one load).
    pub(crate) fn header_at(&self, index: u64) -> Result<SlotHeader, RingError> {
        let slot = self.end.slot(index)?;
        self.end.region.track_read(slot.number);
        Ok(SlotHeader::from_word(slot.header.load(Relaxed)))
    }

    /// A header's length, checked against the slot.
    pub(crate) fn check_len(&mut self, header: SlotHeader) -> Result<usize, RingError> {
        let len = header.len as usize;
        if len > self.end.geometry.max_message() {
            return Err(self.end.fail(Corruption::MessageLength));
        }
        Ok(len)
    }

    /// Copies message `index`'s payload into `buf` (whose length is the message's).
    pub(crate) fn read_at(&self, index: u64, buf: &mut [u8]) -> Result<(), RingError> {
        let slot = self.end.slot(index)?;
        self.end.region.track_read(slot.number);
        read_payload(slot.payload, buf);
        Ok(())
    }

    /// Moves message `from` into the slot of message `to` (both owned by this side), giving it
    /// `to`'s sequence number.
    pub(crate) fn move_message(&self, from: u64, to: u64) -> Result<(), RingError> {
        let src = self.end.slot(from)?;
        let dst = self.end.slot(to)?;
        self.end.region.track_read(src.number);
        self.end.region.track_write(dst.number);
        let header = SlotHeader::from_word(src.header.load(Relaxed));
        // A length the peer changed is clamped here and rejected when the message is taken.
        let words = (header.len as usize)
            .min(self.end.geometry.max_message())
            .div_ceil(8);
        for (to_word, from_word) in dst.payload.iter().zip(src.payload).take(words) {
            to_word.store(from_word.load(Relaxed), Relaxed);
        }
        dst.header.store(
            SlotHeader {
                seq: to as u16,
                ..header
            }
            .to_word(),
            Relaxed,
        );
        Ok(())
    }

    /// Hands the slot of message `head` back to the producer.
    pub(crate) fn release_one(&mut self) -> Notify {
        self.head = self.head.wrapping_add(1);
        self.head_slot = self.end.next_slot(self.head_slot);
        self.end
            .publish(Control::ConsumerIndex, self.head, Control::ProducerWants)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::HeapRegion;
    use crate::layout::{W_CONSUMER_INDEX, W_PRODUCER_INDEX, W_STATE};

    fn heap(slots: usize, slot_size: u32) -> HeapRegion {
        HeapRegion::new(crate::HEADER_SIZE + slots * slot_size as usize)
    }

    fn pair(heap: &HeapRegion, slot_size: u32) -> (Producer<'_>, Consumer<'_>) {
        Ring::init(heap.region().unwrap(), slot_size)
            .unwrap()
            .split()
    }

    /// The word of message `index`'s slot header.
    fn slot_header_word(heap: &HeapRegion, geometry: Geometry, index: u64) -> &AtomicU64 {
        let slot = geometry.slot_of(index);
        &heap.words()[crate::HEADER_SIZE / 8 + slot * geometry.slot_words()]
    }

    #[test]
    fn init_then_attach_sees_the_same_geometry() {
        let heap = heap(5, 64);
        let ring = Ring::init(heap.region().unwrap(), 64).unwrap();
        let attached = Ring::attach(heap.region().unwrap()).unwrap();
        assert_eq!(ring.geometry(), attached.geometry());
        assert_eq!(attached.geometry().slot_count(), 5);
        assert_eq!(attached.geometry().max_message(), 56);
        let words = heap.words();
        assert_eq!(words[0].load(Relaxed).to_ne_bytes(), *b"BLKRING\0");
        assert_eq!(words[W_STATE].load(Relaxed), State::READY);
    }

    #[test]
    fn attach_refuses_bad_headers() {
        let heap = heap(4, 64);
        assert_eq!(
            Ring::attach(heap.region().unwrap()).unwrap_err(),
            RingError::Layout(LayoutError::NotInitialized)
        );
        Ring::init(heap.region().unwrap(), 64).unwrap();
        heap.words()[W_PRODUCER_INDEX].store(5, Relaxed);
        assert_eq!(
            Ring::attach(heap.region().unwrap()).unwrap_err(),
            RingError::Layout(LayoutError::Indices {
                producer: 5,
                consumer: 0
            })
        );
        heap.words()[W_PRODUCER_INDEX].store(4, Relaxed);
        assert!(Ring::attach(heap.region().unwrap()).is_ok());
        // The header claims a larger region than the one mapped here.
        let words = heap.words();
        let smaller = SharedRegion::from_words(&words[..words.len() - 8]).unwrap();
        assert_eq!(
            Ring::attach(smaller).unwrap_err(),
            RingError::Layout(LayoutError::RegionSize {
                header: heap.region().unwrap().len() as u64,
                mapped: heap.region().unwrap().len() - 64
            })
        );
        words[W_STATE].store(
            State::failed(Corruption::MessageLength.code(), true),
            Relaxed,
        );
        assert_eq!(
            Ring::attach(heap.region().unwrap()).unwrap_err(),
            RingError::PeerFailed {
                what: Some(Corruption::MessageLength)
            }
        );
    }

    #[test]
    fn init_refuses_bad_geometry() {
        let heap = heap(1, 64);
        assert_eq!(
            Ring::init(heap.region().unwrap(), 64).unwrap_err(),
            RingError::Layout(LayoutError::TooFewSlots {
                region_size: 4096 + 64,
                slot_size: 64
            })
        );
        assert_eq!(
            Ring::init(heap.region().unwrap(), 24).unwrap_err(),
            RingError::Layout(LayoutError::SlotSize { slot_size: 24 })
        );
    }

    #[test]
    fn fifo_through_many_wraps() {
        let heap = heap(3, 32);
        let (mut tx, mut rx) = pair(&heap, 32);
        let mut buf = [0u8; 64];
        for round in 0u32..100 {
            let len = (round % 25) as usize;
            let msg: Vec<u8> = (0..len).map(|i| (i as u32 ^ round) as u8).collect();
            let _ = tx.try_send(&msg, round as u8).unwrap();
            let got = rx.try_receive(&mut buf).unwrap();
            assert_eq!((got.len, got.priority), (len, round as u8));
            assert_eq!(&buf[..len], &msg[..]);
        }
        assert_eq!(rx.try_receive(&mut buf), Err(RingError::WouldBlock));
    }

    #[test]
    fn full_empty_and_sizes() {
        let heap = heap(2, 16);
        let (mut tx, mut rx) = pair(&heap, 16);
        assert_eq!(
            tx.try_send(&[0; 9], 0),
            Err(RingError::MessageTooLong { len: 9, max: 8 })
        );
        let _ = tx.try_send(&[1; 8], 0).unwrap();
        let _ = tx.try_send(&[], 0).unwrap();
        assert_eq!(tx.try_send(&[3], 0), Err(RingError::WouldBlock));
        assert_eq!(tx.free_slots(), Ok(0));
        assert_eq!(rx.pending(), Ok(2));
        let mut small = [0u8; 4];
        assert_eq!(
            rx.try_receive(&mut small),
            Err(RingError::BufferTooSmall {
                len: 8,
                capacity: 4
            })
        );
        let mut buf = [0u8; 8];
        assert_eq!(rx.try_receive(&mut buf).unwrap().len, 8);
        assert_eq!(buf, [1; 8]);
        assert_eq!(rx.try_receive(&mut small).unwrap().len, 0);
        assert_eq!(tx.free_slots(), Ok(2));
        // Errors that answer one call do not stop the endpoint.
        assert_eq!(tx.failure(), None);
        assert_eq!(rx.failure(), None);
    }

    #[test]
    fn consumer_doorbell_once_per_arming() {
        let heap = heap(4, 64);
        let (mut tx, mut rx) = pair(&heap, 64);
        assert_eq!(tx.try_send(b"a", 0), Ok(Notify::Suppressed));
        // Work is there: arming says so and disarms.
        assert_eq!(rx.arm_doorbell(), Ok(Armed::Ready));
        assert_eq!(tx.try_send(b"b", 0), Ok(Notify::Suppressed));
        let mut buf = [0u8; 64];
        rx.try_receive(&mut buf).unwrap();
        rx.try_receive(&mut buf).unwrap();
        assert_eq!(rx.arm_doorbell(), Ok(Armed::Sleep));
        assert_eq!(tx.try_send(b"c", 0), Ok(Notify::Doorbell));
        assert_eq!(tx.try_send(b"d", 0), Ok(Notify::Suppressed));
        // Disarming withdraws the request.
        rx.try_receive(&mut buf).unwrap();
        rx.try_receive(&mut buf).unwrap();
        assert_eq!(rx.arm_doorbell(), Ok(Armed::Sleep));
        rx.disarm_doorbell();
        assert_eq!(tx.try_send(b"e", 0), Ok(Notify::Suppressed));
    }

    #[test]
    fn producer_doorbell_when_space_frees() {
        let heap = heap(2, 64);
        let (mut tx, mut rx) = pair(&heap, 64);
        let mut buf = [0u8; 64];
        let _ = tx.try_send(b"a", 0).unwrap();
        assert_eq!(tx.arm_doorbell(), Ok(Armed::Ready));
        let _ = tx.try_send(b"b", 0).unwrap();
        assert_eq!(tx.try_send(b"c", 0), Err(RingError::WouldBlock));
        assert_eq!(tx.arm_doorbell(), Ok(Armed::Sleep));
        assert_eq!(rx.try_receive(&mut buf).unwrap().notify, Notify::Doorbell);
        assert_eq!(rx.try_receive(&mut buf).unwrap().notify, Notify::Suppressed);
    }

    #[test]
    fn producer_index_backwards_stops_the_consumer_and_tells_the_producer() {
        let heap = heap(4, 64);
        let (mut tx, mut rx) = pair(&heap, 64);
        let _ = tx.try_send(b"a", 0).unwrap();
        let _ = tx.try_send(b"b", 0).unwrap();
        assert_eq!(rx.pending(), Ok(2));
        heap.words()[W_PRODUCER_INDEX].store(1, Relaxed);
        let corrupt = RingError::Corrupt {
            what: Corruption::ProducerIndexBackwards,
        };
        let mut buf = [0u8; 64];
        // The two messages were published before: they are delivered from the cached index.
        assert_eq!(rx.try_receive(&mut buf).unwrap().len, 1);
        assert_eq!(rx.try_receive(&mut buf).unwrap().len, 1);
        // The next load of the producer index finds it behind.
        assert_eq!(rx.try_receive(&mut buf), Err(corrupt));
        // Sticky, whatever the peer writes next.
        heap.words()[W_PRODUCER_INDEX].store(2, Relaxed);
        assert_eq!(rx.try_receive(&mut buf), Err(corrupt));
        assert_eq!(rx.arm_doorbell(), Err(corrupt));
        assert_eq!(rx.failure(), Some(corrupt));
        // Published for the peer.
        let peer = RingError::PeerFailed {
            what: Some(Corruption::ProducerIndexBackwards),
        };
        assert_eq!(tx.try_send(b"c", 0), Err(peer));
        assert_eq!(
            State::decode(heap.words()[W_STATE].load(Relaxed)),
            State::Failed {
                code: Corruption::ProducerIndexBackwards.code(),
                by_consumer: true
            }
        );
    }

    #[test]
    fn producer_index_too_far_ahead() {
        let heap = heap(4, 64);
        let (_tx, mut rx) = pair(&heap, 64);
        heap.words()[W_PRODUCER_INDEX].store(5, Relaxed);
        assert_eq!(
            rx.try_receive(&mut [0u8; 64]),
            Err(RingError::Corrupt {
                what: Corruption::ProducerIndexAhead
            })
        );
    }

    #[test]
    fn consumer_index_checks() {
        let heap = heap(2, 64);
        let (mut tx, _rx) = pair(&heap, 64);
        let _ = tx.try_send(b"a", 0).unwrap();
        let _ = tx.try_send(b"b", 0).unwrap();
        // The consumer claims a message that was never sent.
        heap.words()[W_CONSUMER_INDEX].store(3, Relaxed);
        assert_eq!(
            tx.try_send(b"c", 0),
            Err(RingError::Corrupt {
                what: Corruption::ConsumerIndexAhead
            })
        );

        let heap2 = self::heap(2, 64);
        let (mut tx, mut rx) = pair(&heap2, 64);
        let mut buf = [0u8; 64];
        let _ = tx.try_send(b"a", 0).unwrap();
        rx.try_receive(&mut buf).unwrap();
        let _ = tx.try_send(b"b", 0).unwrap();
        let _ = tx.try_send(b"c", 0).unwrap();
        assert_eq!(tx.free_slots(), Ok(0));
        heap2.words()[W_CONSUMER_INDEX].store(0, Relaxed);
        assert_eq!(
            tx.free_slots(),
            Err(RingError::Corrupt {
                what: Corruption::ConsumerIndexBackwards
            })
        );
    }

    #[test]
    fn bad_slot_headers() {
        let heap = heap(4, 64);
        let (mut tx, mut rx) = pair(&heap, 64);
        let geometry = tx.geometry();
        let _ = tx.try_send(b"hello", 0).unwrap();
        let word = slot_header_word(&heap, geometry, 0);
        let good = word.load(Relaxed);
        word.store(
            SlotHeader {
                len: 57,
                ..SlotHeader::from_word(good)
            }
            .to_word(),
            Relaxed,
        );
        let mut buf = [0u8; 1024];
        assert_eq!(
            rx.try_receive(&mut buf),
            Err(RingError::Corrupt {
                what: Corruption::MessageLength
            })
        );

        let heap = self::heap(4, 64);
        let (mut tx, mut rx) = pair(&heap, 64);
        let _ = tx.try_send(b"hello", 0).unwrap();
        let word = slot_header_word(&heap, geometry, 0);
        word.store(
            SlotHeader {
                seq: 9,
                ..SlotHeader::from_word(word.load(Relaxed))
            }
            .to_word(),
            Relaxed,
        );
        assert_eq!(
            rx.try_receive(&mut buf),
            Err(RingError::Corrupt {
                what: Corruption::SlotSequence
            })
        );
    }

    #[test]
    fn garbage_state_word_stops_both_sides() {
        let heap = heap(4, 64);
        let (mut tx, mut rx) = pair(&heap, 64);
        heap.words()[W_STATE].store(0xdead_beef, Relaxed);
        let e = RingError::Corrupt {
            what: Corruption::StateWord,
        };
        assert_eq!(tx.try_send(b"x", 0), Err(e));
        assert_eq!(rx.try_receive(&mut [0; 8]), Err(e));
    }

    #[test]
    fn reattach_resumes_where_the_indices_are() {
        let heap = heap(4, 64);
        let (mut tx, mut rx) = pair(&heap, 64);
        for m in [b"1", b"2", b"3"] {
            let _ = tx.try_send(m, 0).unwrap();
        }
        let mut buf = [0u8; 8];
        rx.try_receive(&mut buf).unwrap();
        let mut rx = Ring::attach(heap.region().unwrap())
            .unwrap()
            .into_consumer();
        assert_eq!(rx.pending(), Ok(2));
        rx.try_receive(&mut buf).unwrap();
        assert_eq!(buf[0], b'2');
        let mut tx = Ring::attach(heap.region().unwrap())
            .unwrap()
            .into_producer();
        assert_eq!(tx.free_slots(), Ok(3));
        let _ = tx.try_send(b"4", 0).unwrap();
        rx.try_receive(&mut buf).unwrap();
        rx.try_receive(&mut buf).unwrap();
        assert_eq!(buf[0], b'4');
    }

    #[test]
    fn reinit_under_an_attached_consumer_is_detected() {
        let heap = heap(4, 64);
        let (mut tx, mut rx) = pair(&heap, 64);
        let _ = tx.try_send(b"1", 0).unwrap();
        let _ = tx.try_send(b"2", 0).unwrap();
        let _ = rx.pending().unwrap();
        Ring::init(heap.region().unwrap(), 64).unwrap();
        assert_eq!(
            rx.pending(),
            Err(RingError::Corrupt {
                what: Corruption::ProducerIndexBackwards
            })
        );
    }

    #[test]
    fn threads_deliver_everything_in_order() {
        let heap = heap(8, 64);
        let (mut tx, mut rx) = pair(&heap, 64);
        const N: u32 = 200_000;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        std::thread::scope(|s| {
            s.spawn(move || {
                for i in 0..N {
                    let len = (i % 57) as usize;
                    let mut msg = [0u8; 56];
                    msg[..4.min(len)].copy_from_slice(&i.to_le_bytes()[..4.min(len)]);
                    while tx.try_send(&msg[..len], (i % 256) as u8) == Err(RingError::WouldBlock) {
                        // If the consumer died, give up rather than spin forever.
                        assert!(std::time::Instant::now() < deadline, "consumer stopped");
                        std::hint::spin_loop();
                    }
                }
            });
            let mut buf = [0u8; 56];
            for i in 0..N {
                let got = loop {
                    match rx.try_receive(&mut buf) {
                        Err(RingError::WouldBlock) => {
                            assert!(std::time::Instant::now() < deadline, "producer stopped");
                            std::hint::spin_loop()
                        }
                        other => break other.unwrap(),
                    }
                };
                let len = (i % 57) as usize;
                assert_eq!((got.len, got.priority), (len, (i % 256) as u8));
                assert_eq!(buf[..4.min(len)], i.to_le_bytes()[..4.min(len)]);
            }
        });
    }
}
