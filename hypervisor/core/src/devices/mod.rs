//! What a partition touches that the hypervisor filters or emulates: Linux's view of the
//! IOAPIC and the RT partition's device lines in it, the x2APIC ICR and emulated start-up of a partition's CPUs, the instruction behind
//! an emulated MMIO access, Linux's port and PCI configuration accesses (and what its writes
//! may do to the functions it owns), the PCI functions the RT partition owns, and the channel device. Each returns what should happen (pass on, refuse, emulate); the image does it.

pub mod ap_start;
pub mod channel_device;
pub mod icr;
pub mod ioapic;
pub mod linux_io;
pub mod mmio;
pub mod pci_owned;
pub mod rt_pci;
pub mod rt_lines;
