//! The Bulkhead channel ring: the one owner of a channel's shared-memory layout and of the
//! lock-free single-producer single-consumer protocol on it. The RT kernel uses it `no_std`; the
//! Linux library uses it with `std`. Nothing else may define or parse a channel's bytes.
//!
//! - [`layout`]: the header page and slot layout ([`HeaderPage`], [`SlotHeader`]), its constants,
//!   and [`Geometry`], the validated private copy of a channel's shape.
//! - [`SharedRegion`]: the region as 8-byte atomic words; the crate's only `unsafe` is in its
//!   constructor.
//! - [`Ring`], [`Producer`], [`Consumer`]: initialize or attach, then send and receive in FIFO
//!   order, with event suppression ([`Notify`], [`Armed`]).
//! - [`mq`]: message-queue semantics on top (priorities, attributes).
//! - [`announce`]: the kernel command-line words that tell Linux where its channels are.
//! - [`log`]: log channels, console lines one per message from a producer that never waits
//!   (the hypervisor's and the RT kernel's logs), with drop and cut markers.
//!
//! # Trust
//!
//! The region is shared with another partition that may be buggy or hostile. This crate never
//! trusts what the peer writes: the geometry is validated once on attach and kept privately;
//! every index and length is checked before use; each shared word is loaded once into a local;
//! an impossible value stops the endpoint with [`RingError::Corrupt`] and is published in the
//! state word. No value read from the region can cause a panic or an access outside the region.
//!
//! # No allocation
//!
//! The crate never allocates (a receiver's priority bookkeeping is a fixed 1 KiB array); the
//! `std` feature only adds `HeapRegion`, a stand-in region for tests and benchmarks.
//!
//! # Checking
//!
//! - `cargo test -p bulkhead-ring`: unit tests, model proptests, hostile-peer proptests;
//! - `RUSTFLAGS="--cfg loom" cargo test -p bulkhead-ring --release --test loom`: the protocol
//!   under the loom model checker (every interleaving of small rings);
//! - `cargo bench -p bulkhead-ring --bench ipc`: latency and throughput against baselines;
//! - `common/ring/fuzz`: cargo-fuzz targets for a hostile peer (`hostile_peer`) and for
//!   the command-line announcements (`announce`), outside the workspace (how to build them on
//!   stable is in its `Cargo.toml`).

#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]
// The region is written by a peer we do not trust: no code path may panic on what it reads.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

#[cfg(any(feature = "std", loom, test))]
extern crate std;

pub mod announce;
mod error;
#[cfg(any(feature = "std", loom, test))]
mod heap;
pub mod layout;
pub mod log;
pub mod mq;
mod ring;
#[allow(
    unsafe_code,
    reason = "raw shared memory: the one place that turns a pointer into a view"
)]
mod shared;

pub use error::{Corruption, LayoutError, RingError};
#[cfg(any(feature = "std", loom, test))]
pub use heap::HeapRegion;
pub use layout::{
    Geometry, HEADER_SIZE, HeaderPage, MAGIC, MAX_SLOT_SIZE, MIN_SLOT_SIZE, MIN_SLOTS,
    SLOT_HEADER_SIZE, SlotHeader, State, VERSION,
};
pub use ring::{
    Armed, Consumer, Notify, Producer, Received, Ring, reinit_requested, request_reinit,
};
pub use shared::SharedRegion;
