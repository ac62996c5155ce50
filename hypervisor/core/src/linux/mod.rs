//! Booting a stock Linux kernel in the Linux partition: the loader's side of the x86 boot
//! protocol (Linux's `Documentation/arch/x86/boot.rst`, protocol 2.12 and later, 64-bit
//! entry).
//!
//! - [`bzimage`] reads a bzImage's real-mode header and splits it into setup and kernel;
//! - an uncompressed 64-bit `vmlinux` is read by [`crate::boot::elf`], like the RT kernel image;
//! - [`place`] chooses where the kernel (and the initrd, command line, zero page) go in
//!   the partition's RAM;
//! - [`e820`] builds the memory map Linux is given from the firmware's map and the config;
//! - [`boot_params`] fills the 4 KiB zero page;
//! - [`acpi`] builds the ACPI tables Linux sees (the MADT lists only its CPUs), and
//!   [`firmware`] the firmware ranges its EPT maps besides its RAM;
//! - [`restart`] decides, when a Linux the config restarts has ended, whether and when;
//!   [`watchdog`] notices a Linux that hangs (every CPU halted with interrupts off).
//!
//! Everything a boot module or the firmware hands over is hostile: these parsers check
//! every offset and length, return an error that names what is wrong, allocate nothing
//! and never panic, whatever the bytes. They write only into buffers the caller provides;
//! copying bytes into guest memory and entering the guest is the image's business.

pub mod acpi;
pub mod boot_params;
pub mod bzimage;
pub mod e820;
pub mod firmware;
pub mod place;
pub mod restart;
pub mod watchdog;

pub(crate) use crate::support::le::{le_u16, le_u32, le_u64, put};
