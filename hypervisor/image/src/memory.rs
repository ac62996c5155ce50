//! The hypervisor's memory: page frames carved out of the config's hypervisor region
//! (around the image, the GRUB modules and the boot information), zeroed on allocation,
//! and the EPT builder's table storage on top of them.
// Hands out and zeroes the hypervisor's own frames, and reads the linker's symbols.
#![allow(unsafe_code)]

use hv_core::memory::addr::HostPhysAddr;
use hv_core::memory::ept::TableMemory;
use hv_core::memory::frames::{FrameAllocator, OutOfMemory, Span};
use spin::Mutex;

static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

/// Start and end of the loaded image (from the linker script).
pub fn image_span() -> Span {
    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }
    // Only the addresses of the linker-defined symbols are taken, never their contents.
    Span {
        start: &raw const __image_start as u64,
        end: &raw const __image_end as u64,
    }
}

/// Sets up the allocator over `region` minus `holes`. Returns the hole capacity on
/// overflow.
pub fn init(region: Span, holes: &[Span]) -> Result<(), usize> {
    *FRAMES.lock() = Some(FrameAllocator::new(region, holes)?);
    Ok(())
}

/// Allocates `bytes` (rounded up to pages) aligned to `align`, zeroed.
pub fn alloc_zeroed(bytes: u64, align: u64) -> Result<HostPhysAddr, OutOfMemory> {
    let addr = FRAMES
        .lock()
        .as_mut()
        .ok_or(OutOfMemory { requested: bytes })?
        .alloc(bytes, align)?;
    let len = bytes.div_ceil(0x1000) * 0x1000;
    // SAFETY: the allocator hands out each range once, inside the hypervisor region,
    // which is identity-mapped below 4 GiB (checked at boot) and used by nothing else.
    unsafe { core::ptr::write_bytes(addr.as_u64() as *mut u8, 0, len as usize) };
    Ok(addr)
}

/// Allocates a zeroed `T` for the lifetime of the hypervisor.
pub fn alloc_static<T>() -> Result<&'static mut T, OutOfMemory> {
    let size = core::mem::size_of::<T>().max(1) as u64;
    let align = core::mem::align_of::<T>() as u64;
    let addr = alloc_zeroed(size, align)?;
    // SAFETY: fresh, exclusively owned, suitably aligned memory; every `T` used here is
    // valid when all-zero (plain data: tables, stacks, bitmaps, counters).
    Ok(unsafe { &mut *(addr.as_u64() as *mut T) })
}

/// Moves `value` into hypervisor memory for the lifetime of the hypervisor.
pub fn leak<T>(value: T) -> Result<&'static mut T, OutOfMemory> {
    let size = core::mem::size_of::<T>().max(1) as u64;
    let addr = alloc_zeroed(size, core::mem::align_of::<T>() as u64)?.as_u64() as *mut T;
    // SAFETY: fresh, exclusively owned, suitably aligned memory, initialised by the write.
    unsafe {
        addr.write(value);
        Ok(&mut *addr)
    }
}

/// Bytes allocated so far.
pub fn allocated() -> u64 {
    FRAMES.lock().as_ref().map_or(0, FrameAllocator::allocated)
}

/// EPT table storage in hypervisor frames.
#[derive(Debug, Default)]
pub struct HvTables {
    pub tables: usize,
}

impl TableMemory for HvTables {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        let t = alloc_zeroed(0x1000, 0x1000).ok()?;
        self.tables += 1;
        Some(t)
    }

    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        // SAFETY: `table` came from `alloc_table` (identity-mapped, 512 entries) and
        // `index` < 512 by the builder's construction.
        unsafe { core::ptr::read_volatile((table.as_u64() as *const u64).add(index % 512)) }
    }

    fn write(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((table.as_u64() as *mut u64).add(index % 512), value) }
    }
}
