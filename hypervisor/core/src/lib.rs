//! Host-testable core of the Bulkhead hypervisor.
//!
//! Everything here is pure logic with no hardware access, so it is tested with plain
//! `cargo test`: typed addresses, VM-exit decoding and statistics, the VMX capability
//! check, the EPT builder, the frame allocator, the hypercall ABI and the small ACPI
//! helpers the image needs. The image crate (`hypervisor/image`) supplies the memory
//! and the privileged instructions.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod acpi_build;
pub mod acpi_sleep;
pub mod addr;
pub mod ap_start;
pub mod bitmaps;
pub mod boot_memory;
pub mod channel_device;
pub mod channels;
pub mod cpuid;
pub mod elf;
pub mod ept;
pub mod exit;
pub mod exit_report;
pub mod fixed;
pub mod frames;
pub mod guest_paging;
pub mod icr;
pub mod ioapic;
mod le;
pub mod linux;
pub mod linux_firmware;
pub mod linux_io;
pub mod log_budget;
pub mod mmio;
pub mod restart;
pub mod rt_boot;
pub mod vmx_caps;
