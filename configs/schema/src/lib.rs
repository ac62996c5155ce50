//! The Bulkhead machine configuration: what a machine's owner writes down about how its CPUs,
//! memory and devices are split between the RT partition and the Linux partition, and the
//! shared-memory channels between them.
//!
//! This crate owns the whole config pipeline and every layout in it:
//!
//! - [`Config`] and its parts: a fixed-capacity model with no allocation, built only through
//!   [`ConfigBuilder`] (capacity is enforced with errors, never a panic);
//! - [`Config::validate`]: the semantic checks (overlaps, alignment, ownership, channel geometry),
//!   the same code on the host and in the hypervisor;
//! - [`blob`]: the small versioned binary the hypervisor reads at boot (decode is `no_std`; encode
//!   needs the `alloc` feature);
//! - [`platform`]: checking a config against the hardware the hypervisor found;
//! - `host` (feature `std`): the TOML loader with `file:line:col` diagnostics and a human summary.
//!
//! Without the `std` feature the crate is freestanding: no TOML parser, no allocation, and no
//! panics on any input (indexing, unchecked arithmetic and unwraps are denied by lint below).

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
// Config data comes from files and blobs we do not trust: no code path may panic on it.
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
// Errors carry their field paths inline (no allocation to box them into), which makes them a few
// hundred bytes; they travel only on the failure path, once per config.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod blob;
mod error;
mod fixed;
mod model;
pub mod platform;
mod validate;

#[cfg(feature = "std")]
pub mod host;

pub use error::{ConfigError, ErrorKind, FieldPath, Segment};
pub use model::{
    ChannelConfig, ChannelDirection, Cmdline, Config, ConfigBuilder, ConsoleRouting, ConsoleTarget,
    LinuxConfig, Name, Notify, OnExit, PartitionConfig, PartitionId, PciBdf, PinRoute, PortRange,
    Region, RtConfig, SharedRegion,
};
pub use validate::{
    ABSURD_END, CHANNEL_HEADER_SIZE, CHANNEL_MIN_SLOTS, HYPERVISOR_MAX_END, HYPERVISOR_MIN_SIZE,
    MAX_IOAPIC_PIN, MAX_SLOT_SIZE, MIN_SLOT_SIZE, PAGE_SIZE,
};

/// Most CPUs (APIC IDs) one partition can own (the RT partition: at most
/// [`MAX_RT_CPUS`]).
pub const MAX_CPUS: usize = bulkhead_abi::limits::MAX_CPUS;
/// Most CPUs the RT partition can own: the RT kernel's limit.
pub const MAX_RT_CPUS: usize = bulkhead_abi::limits::MAX_RT_CPUS;
/// Most PCI functions the RT partition can own: the RT boot information's limit.
pub const MAX_RT_PCI_FUNCTIONS: usize = bulkhead_abi::limits::MAX_RT_PCI_FUNCTIONS;
/// Most memory regions one partition can own.
pub const MAX_REGIONS: usize = bulkhead_abi::limits::MAX_MEMORY_REGIONS;
/// Most IOAPIC pins (GSIs) one partition can own.
pub const MAX_PINS: usize = 64;
/// Most I/O port ranges one partition can own.
pub const MAX_PORT_RANGES: usize = 32;
/// Most PCI devices one partition can own.
pub const MAX_PCI_DEVICES: usize = 32;
/// Most device register ranges (`mmio`) the RT partition can own.
pub const MAX_MMIO_REGIONS: usize = 8;
/// Where device registers the RT partition owns may lie: the top GiB below 4 GiB, which the RT
/// kernel maps uncached at the same guest-physical addresses (its RAM ends below 3 GiB).
pub const MMIO_WINDOW: core::ops::Range<u64> = 0xC000_0000..0x1_0000_0000;
/// The local APIC's register page range, which no partition may own as device memory.
pub const LOCAL_APIC_RANGE: core::ops::Range<u64> = 0xFEE0_0000..0xFEF0_0000;
/// Most shared-memory regions in a config.
pub const MAX_SHARED_REGIONS: usize = 16;
/// Most channels in a config.
pub const MAX_CHANNELS: usize = bulkhead_abi::limits::MAX_CHANNELS;
/// Longest name (machine, module, shared region, channel), in bytes.
pub const NAME_LEN: usize = bulkhead_abi::limits::NAME_LEN;
/// Size of the Linux command-line buffer. As with Linux's own `COMMAND_LINE_SIZE` on x86, it
/// includes the terminating NUL, so a command line holds at most `CMDLINE_LEN - 1` bytes.
pub const CMDLINE_LEN: usize = 2048;
