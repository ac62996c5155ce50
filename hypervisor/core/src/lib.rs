//! Host-testable core of the Bulkhead hypervisor: every decision the hypervisor image makes
//! that can be made without hardware, tested with plain `cargo test`. The image
//! (`hypervisor/image`) supplies the memory and the privileged instructions; the contracts with
//! the partitions (hypercalls, boot information, channel vocabulary, console lines) are
//! `bulkhead-abi`'s, not this crate's.
//!
//! - [`memory`]: addresses, the hypervisor's frames, EPT, guest page walks;
//! - [`vmx`]: capabilities and controls, bitmaps, exit decoding and counting, CPUID policy;
//! - [`devices`]: what a partition touches that the hypervisor filters or emulates (IOAPIC,
//!   ICR and CPU start-up, MMIO instructions, ports and PCI configuration, the channel device);
//! - [`boot`]: memory in use at boot, ELF images, the RT partition's loader plan, the
//!   firmware's soft-off;
//! - [`linux`]: the Linux partition: boot protocol, its ACPI tables and firmware ranges, restart;
//! - [`channels`]: where each channel lies, how Linux is told, doorbell rate limits;
//! - [`reports`]: the exit report's lines and the console budget for refusals;
//! - [`support`]: fixed-capacity lists and bounds-checked byte fields.
//!
//! What it must never do: touch hardware (`unsafe` is forbidden), allocate, or panic on input
//! from a guest, a boot module or the firmware.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod boot;
pub mod channels;
pub mod devices;
pub mod linux;
pub mod memory;
pub mod reports;
pub mod support;
pub mod vmx;
