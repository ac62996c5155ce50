//! Building the machine at boot: the UEFI memory map, what memory is in use before any
//! partition runs, kernel images (ELF load plans), the RT partition's loader plan and boot
//! information, and the firmware's soft-off sleep type. The Linux partition's boot is [`crate::linux`].

pub mod acpi_sleep;
pub mod efi_memory_map;
pub mod elf;
pub mod memory;
pub mod rt;
