//! The PCI functions the partition owns, for drivers: what the hypervisor found at boot (the
//! boot information's function table: identity, BARs already decoding and mapped uncached at
//! their addresses, bus mastering on, the device line its INTx arrives on), and the bus
//! addresses a driver gives its device for DMA.
//!
//! The kernel never touches a function's configuration space: under the hypervisor those
//! ports are not the partition's. Booted bare, the kernel has no function table (a bare
//! kernel drives no PCI device yet).
//!
//! DMA: the partition's RAM is mapped from guest-physical 0 while it lies elsewhere on the
//! bus, and there is no IOMMU to translate, so a device must be given [`bus_address`]es,
//! never pointers. A device that masters the bus reaches all memory, the hypervisor's and
//! Linux's included: owning one is trusting its driver.

use bulkhead_abi::rt_boot::{NO_LINE, PciFunctionInfo};

use crate::irq::Line;

/// The partition's functions.
pub fn functions() -> &'static [PciFunctionInfo] {
    crate::FACTS.get().map_or(&[], |f| f.pci_functions())
}

/// The first function with this vendor and device ID.
pub fn find(vendor_id: u16, device_id: u16) -> Option<&'static PciFunctionInfo> {
    functions()
        .iter()
        .find(|f| f.vendor_id == vendor_id && f.device_id == device_id)
}

/// The device line `function`'s INTx arrives on, if the hypervisor routed it to one.
pub fn line(function: &PciFunctionInfo) -> Option<Line> {
    if function.line == NO_LINE {
        return None;
    }
    Line::at(usize::from(function.line))
}

/// The bus address of the `len` bytes at `address` (a pointer into the partition's RAM, which
/// is identity-mapped), for a device's DMA; `None` when they are not all in one RAM region.
pub fn bus_address(address: *const u8, len: usize) -> Option<u64> {
    let facts = crate::FACTS.get()?;
    let gpa = address as u64;
    match facts.bus_map() {
        Some(map) => map.bus_address(gpa, len as u64),
        None => Some(gpa),
    }
}
