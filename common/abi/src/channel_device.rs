//! The channel device's identity: the emulated PCI function through which the RT partition
//! interrupts Linux (the hypervisor's model is `bulkhead_hv_core`'s `channel_device`; the Linux
//! library finds the function by these IDs and reads its counters).

/// PCI vendor ID (as QEMU's ivshmem).
pub const VENDOR_ID: u16 = 0x1af4;
/// PCI device ID (as QEMU's ivshmem).
pub const DEVICE_ID: u16 = 0x1110;
/// Subsystem vendor ID.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1af4;
/// Subsystem ID: "BH", Bulkhead's doorbell-only variant (no BARs, INTx only).
pub const SUBSYSTEM_ID: u16 = 0x4248;
/// Class code: memory controller (0x05), RAM (0x00), as ivshmem.
pub const CLASS: [u8; 3] = [0x00, 0x00, 0x05];
/// Revision ID.
pub const REVISION: u8 = 1;
/// Offset in configuration space of the device-specific counters: doorbells raised (dword),
/// then interrupts delivered (dword), both wrapping.
pub const COUNTERS_OFFSET: u8 = 0x40;
/// Command register bit 10: INTx disable (PCI 2.3). A program re-enables the interrupt by
/// clearing it.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
