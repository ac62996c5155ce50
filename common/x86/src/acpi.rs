//! The `acpi` crate's handler for images that identity-map low physical memory: the
//! "mapping" of a table is its physical address.

use core::ptr::NonNull;

use ::acpi::{AcpiHandler, PhysicalMapping};

/// Maps ACPI tables at their physical address (both images identity-map the first 4 GiB).
#[derive(Clone, Copy, Debug)]
pub struct IdentityMapped;

impl AcpiHandler for IdentityMapped {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let ptr = NonNull::new(physical_address as *mut T).unwrap_or(NonNull::dangling());
        // SAFETY: physical memory below 4 GiB is identity-mapped by the boot page tables,
        // and ACPI tables lie there on every machine Bulkhead supports.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, Self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}
