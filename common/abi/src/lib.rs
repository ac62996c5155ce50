//! Bulkhead's ABI: every number, layout, word and line that crosses a boundary between its parts,
//! defined once. The hypervisor, the RT kernel, the config tool, the channel ring, the Linux
//! library and tool, and the end-to-end tests all take these from here; nothing here knows any of
//! them.
//!
//! - [`hypercall`]: the VMCALL interface guests use (typed call numbers and statuses);
//! - [`cpuid`]: the signature by which a guest knows it runs under Bulkhead;
//! - [`partition`]: the two partitions' names;
//! - [`channel`]: a channel's vocabulary (direction, notification) that the config, the ring's
//!   announcement and the RT boot information all spell with it;
//! - [`channel_device`]: the PCI identity of the device that rings Linux;
//! - [`vectors`]: the interrupt vectors the RT partition's IDT and the hypervisor agree on;
//! - [`limits`]: the capacities every layer must agree on, checked against each other at compile
//!   time;
//! - [`rt_boot`]: what the hypervisor hands the RT kernel when it starts it;
//! - [`status`]: the RT kernel's status report to Linux;
//! - [`frame_exchange`]: the cyclic frame exchange an RT NIC driver runs with its peer (frame
//!   layout, the master's bookkeeping);
//! - [`console`]: the console lines that tools and tests read, each with its one writer and its
//!   one parser;
//! - [`package`]: where the Debian package puts the tool and the images.
//!
//! What it must never do: depend on another Bulkhead crate, touch hardware (`unsafe` is
//! forbidden; the one guest-side VMCALL stub is `bulkhead-vmcall`), or allocate.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod channel;
pub mod channel_device;
pub mod console;
pub mod cpuid;
pub mod frame_exchange;
pub mod hypercall;
pub mod limits;
pub mod package;
pub mod partition;
pub mod rt_boot;
pub mod status;
pub mod vectors;

pub use partition::Partition;
