//! Loading the RT partition: the kernel image from its GRUB module into the partition's RAM,
//! the boot information and the start-up page tables beside it.
//!
//! The decisions (guest-physical layout, image checks, boot information, page tables) are
//! `hv_core::boot::rt`'s; this module copies the bytes. It runs once, on the bootstrap CPU,
//! before any partition CPU enters its guest. The module's bytes are hostile input: the ELF
//! is parsed and checked before a byte is copied, and every copy lands in partition RAM
//! through `GuestRam`, which checks it.

use core::fmt;

use bulkhead_config::{Config, PartitionId};
use hv_core::boot::elf::{ElfError, LoadPlan};
use hv_core::boot::rt::{
    self as rt_boot, BOOT_INFO_GPA, IMAGE_MIN_GPA, PAGE_TABLE_PAGES, PAGE_TABLES_GPA, RtLayout,
    RtLoadError,
};

use crate::boot_info::BootInfo;
use crate::guest_memory::{GuestMemError, GuestRam, gpa};

/// Where the RT kernel starts on every RT CPU.
#[derive(Debug, Clone, Copy)]
pub struct RtStart {
    /// Guest-physical (= virtual) address of the kernel's 64-bit entry.
    pub entry: u64,
    /// Guest-physical address of the start-up PML4.
    pub cr3: u64,
    /// Guest-physical address of the boot information.
    pub boot_info: u64,
}

/// Why the RT partition could not be loaded.
#[derive(Debug)]
pub enum LoadError<'a> {
    /// GRUB loaded no module with the name `rt.image` gives.
    NoModule(&'a str),
    /// The module's command line was cut.
    ArgsTooLong(&'a str),
    /// The module is not a loadable ELF.
    Elf(&'a str, ElfError),
    /// The layout, the image placement or the boot information.
    Layout(&'a str, RtLoadError),
    /// Partition RAM refused a write (a layout the checks should have refused).
    Memory(&'a str, GuestMemError),
}

impl fmt::Display for LoadError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoModule(name) => write!(
                f,
                "config: rt.image: no boot module named {name:?} (GRUB needs `module2 <file> {name} [RT kernel options]`)"
            ),
            Self::ArgsTooLong(name) => write!(
                f,
                "module {name:?}: its command line (the RT kernel's options) is longer than 255 bytes"
            ),
            Self::Elf(name, e) => write!(f, "module {name:?} (rt.image): {e}"),
            Self::Layout(name, e) => write!(f, "module {name:?} (rt.image): {e}"),
            Self::Memory(name, e) => write!(f, "module {name:?} (rt.image): partition rt: {e}"),
        }
    }
}

/// Loads the RT kernel named by `cfg.rt().image()` into the partition laid out as `layout`.
pub fn load<'a>(
    cfg: &'a Config,
    boot: &'a BootInfo,
    layout: &RtLayout,
    tsc_hz: u64,
    lines: &[hv_core::devices::rt_lines::Line],
    pci: impl IntoIterator<Item = bulkhead_abi::rt_boot::PciFunctionInfo>,
) -> Result<RtStart, LoadError<'a>> {
    let name = cfg.rt().image().as_str();
    let module = boot.module(name).ok_or(LoadError::NoModule(name))?;
    if module.line_truncated {
        return Err(LoadError::ArgsTooLong(name));
    }
    let bytes = module.bytes();
    let plan = LoadPlan::parse(bytes).map_err(|e| LoadError::Elf(name, e))?;
    layout
        .check_image(&plan)
        .map_err(|e| LoadError::Layout(name, e))?;
    let info = layout
        .boot_info(cfg, tsc_hz, module.args(), lines, pci)
        .map_err(|e| LoadError::Layout(name, e))?;

    let ram = GuestRam::claim(PartitionId::Rt).map_err(|e| LoadError::Memory(name, e))?;
    let copy = || -> Result<(), GuestMemError> {
        // The loader's first MiB: zeroed, then the boot information and the page tables.
        ram.zero(gpa(0)?, IMAGE_MIN_GPA)?;
        ram.write(gpa(BOOT_INFO_GPA)?, zerocopy::IntoBytes::as_bytes(&info))?;
        let tables = ram.take_table::<[[u64; 512]; PAGE_TABLE_PAGES]>(gpa(PAGE_TABLES_GPA)?)?;
        rt_boot::fill_page_tables(tables);
        for s in plan.segments.as_slice() {
            ram.load(gpa(s.phys)?, s.bytes(bytes), s.mem_size)?;
        }
        Ok(())
    };
    copy().map_err(|e| LoadError::Memory(name, e))?;
    log::info!(
        "partition rt: kernel {name:?} ({} KiB in {} segments at {:#x}..{:#x}), entry {:#x}, options {:?}",
        plan.span() >> 10,
        plan.segments.as_slice().len(),
        plan.phys_start,
        plan.phys_end,
        plan.entry,
        module.args()
    );
    Ok(RtStart {
        entry: plan.entry,
        cr3: PAGE_TABLES_GPA,
        boot_info: BOOT_INFO_GPA,
    })
}
