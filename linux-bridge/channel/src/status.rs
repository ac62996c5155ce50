//! A look at a channel's header from outside: its state, geometry and indices, read with loads
//! only. An observer (`bulkhead list`, `bulkhead stats`) must never write the header: an
//! endpoint that found the peer's memory impossible would publish a failure in the state word,
//! and an observer's view of the indices is stale by construction, so it does not attach as an
//! endpoint. The layout (word offsets, geometry block, state encoding) is the ring crate's.

use std::fmt;
use std::mem::{offset_of, size_of};
use std::sync::atomic::Ordering::{Acquire, Relaxed};

use bulkhead_ring::layout::{GeometryBlock, HeaderPage};
use bulkhead_ring::{Corruption, Geometry, Ring, RingError, State};

use crate::error::Result;
use crate::mapping::Mapping;

/// Words in the geometry block.
const GEOMETRY_WORDS: usize = size_of::<GeometryBlock>() / 8;

/// A channel's header as read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The state word.
    pub state: State,
    /// The geometry, when the geometry block is valid for the mapped size (whatever the state).
    pub geometry: Option<Geometry>,
    /// The producer index (loaded before the consumer index).
    pub producer_index: u64,
    /// The consumer index.
    pub consumer_index: u64,
    /// The consumer's doorbell flag: it sleeps, waiting for a doorbell on the next message.
    pub consumer_wants_doorbell: bool,
    /// The producer's doorbell flag: it sleeps, waiting for a doorbell when a slot frees.
    pub producer_wants_doorbell: bool,
    /// Why an endpoint attaching now would be refused; `None` if the channel is usable.
    pub problem: Option<RingError>,
}

impl Status {
    /// Reads the header of the channel in `mapping`. Fails only if the mapping cannot hold a
    /// channel at all (smaller than a header page, or not a multiple of 8 bytes).
    pub fn read(mapping: &Mapping) -> Result<Self> {
        let region = mapping.region()?;
        let words = mapping.words();
        let word = |index: usize, order| words.get(index).map_or(0, |w| w.load(order));
        // `Ring::attach` only loads: it validates the state, geometry and indices as an
        // endpoint would.
        let problem = Ring::attach(region).err();
        let state = State::decode(word(offset_of!(HeaderPage, state) / 8, Acquire));
        let mut block = [0u64; GEOMETRY_WORDS];
        for (i, value) in block.iter_mut().enumerate() {
            *value = word(i, Relaxed);
        }
        let block: GeometryBlock = zerocopy::transmute!(block);
        let geometry = Geometry::from_block(&block, mapping.len()).ok();
        // Producer first: then `producer - consumer` can only under-count, never exceed the
        // ring, on a sane channel whose two ends are running.
        let producer_index = word(offset_of!(HeaderPage, producer_index) / 8, Acquire);
        let consumer_index = word(offset_of!(HeaderPage, consumer_index) / 8, Acquire);
        Ok(Self {
            state,
            geometry,
            producer_index,
            consumer_index,
            consumer_wants_doorbell: word(
                offset_of!(HeaderPage, consumer_wants_doorbell) / 8,
                Relaxed,
            ) != 0,
            producer_wants_doorbell: word(
                offset_of!(HeaderPage, producer_wants_doorbell) / 8,
                Relaxed,
            ) != 0,
            problem,
        })
    }

    /// Messages in the ring, if the geometry is valid and the indices are consistent (a
    /// consumer index just ahead of a stale producer index counts as empty).
    pub fn current(&self) -> Option<u32> {
        let geometry = self.geometry?;
        let count = self.producer_index.wrapping_sub(self.consumer_index);
        if (count as i64) < 0 && count.wrapping_neg() <= u64::from(geometry.slot_count()) {
            return Some(0);
        }
        u32::try_from(count)
            .ok()
            .filter(|&c| c <= geometry.slot_count())
    }

    /// Whether an endpoint could attach now.
    pub fn is_usable(&self) -> bool {
        self.problem.is_none()
    }

    /// The state, in words (`ready`, `failed: ...`).
    pub fn state_text(&self) -> StateText {
        StateText(self.state)
    }

    /// Why the channel is not usable, in words, or `None`.
    pub fn problem_text(&self) -> Option<String> {
        self.problem.map(|e| crate::Error::from(e).to_string())
    }
}

/// A [`State`] in words.
#[derive(Debug, Clone, Copy)]
pub struct StateText(pub State);

impl fmt::Display for StateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            State::Uninitialized => f.write_str("uninitialized"),
            State::Ready => f.write_str("ready"),
            State::Failed { code, by_consumer } => {
                let side = if by_consumer { "consumer" } else { "producer" };
                match Corruption::from_code(code) {
                    Some(what) => write!(f, "failed ({side}: {what})"),
                    None => write!(f, "failed ({side}: code {code})"),
                }
            }
            State::Invalid(word) => write!(f, "invalid state word {word:#x}"),
        }
    }
}
