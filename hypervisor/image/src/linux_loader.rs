//! Loading the Linux partition per the x86 Linux boot protocol (64-bit entry): the kernel
//! from the GRUB module `linux.kernel` names (a bzImage, or an uncompressed `vmlinux` ELF,
//! which boots much faster in an emulator because nothing is decompressed), the initrd
//! from the module `linux.initrd` names, the command line, Linux's own ACPI tables (a MADT
//! with only its CPUs), its e820 map, the zero page, and start-up page tables and a GDT.
//!
//! The decisions are `hv_core::linux`'s (placement, e820, zero page) and
//! `hv_core::linux::acpi`'s; this module finds the modules and copies bytes. Modules are
//! hostile input: each is parsed and checked before a byte is copied, and every copy lands
//! in the partition's RAM (the config's `partitions.linux.memory`, which the fit check put
//! in usable RAM clear of the hypervisor, its modules and the other partition). Linux's
//! RAM is identity-mapped (guest-physical = host-physical), so addresses are the same on
//! both sides. The module copies stay in hypervisor memory, out of Linux's reach, so the
//! partition can be loaded again from them.

use core::fmt;

use bulkhead_config::{Config, PartitionId, Region};
use hv_core::boot::elf::{ElfError, LoadPlan};
use hv_core::boot::rt::{self as rt_boot, PAGE_TABLE_PAGES};
use hv_core::linux::acpi::{self as acpi_build, AcpiBuildError, LinuxCpus, PhysRead, ReadError};
use hv_core::linux::boot_params::{self, BootParamsError, BootParamsInput, Kernel, ZERO_PAGE_SIZE};
use hv_core::linux::bzimage::{BzImage, BzImageError};
use hv_core::linux::e820::{self, E820Entry, E820Error, E820Map, E820Type, Partitioning};
use hv_core::linux::place::{self, FOUR_GIB, KernelNeeds, PlaceError, Request};

use zerocopy::FromBytes;

use crate::boot_info::BootInfo;
use crate::guest_memory::{GuestMemError, GuestRam, gpa};

const PAGE: u64 = 0x1000;
/// The boot area: zero page, command line (two pages), GDT, start-up page tables.
const BOOT_AREA_PAGES: u64 = 4 + PAGE_TABLE_PAGES as u64;
const ZERO_PAGE_OFFSET: u64 = 0;
const CMDLINE_OFFSET: u64 = PAGE;
const CMDLINE_ROOM: usize = 2 * PAGE as usize;
const GDT_OFFSET: u64 = 3 * PAGE;
const PAGE_TABLES_OFFSET: u64 = 4 * PAGE;
/// Room for Linux's rebuilt RSDP, XSDT, RSDT and MADT.
const ACPI_ROOM: u64 = 16 * PAGE;
/// Firmware tables Linux must not see: the HPET and PCI ECAM (MCFG) would lead it to MMIO
/// the hypervisor does not give it (it uses the PIT and port-based PCI configuration, which
/// are filtered), and the IOMMU (DMAR) is not Linux's to program.
const HIDDEN_TABLES: [[u8; 4]; 3] = [*b"HPET", *b"MCFG", *b"DMAR"];
/// `__BOOT_CS` and `__BOOT_DS` of the 64-bit boot protocol.
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
/// The boot GDT: null, unused, 64-bit code (selector 0x10), data (0x18).
const GDT: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

/// Where Linux starts on its boot CPU.
#[derive(Debug, Clone, Copy)]
pub struct LinuxStart {
    /// The kernel's 64-bit entry point.
    pub entry: u64,
    /// The start-up PML4 (identity map of the first 4 GiB).
    pub cr3: u64,
    /// The boot GDT (`BOOT_CS`, `BOOT_DS`) and its limit.
    pub gdt: u64,
    pub gdt_limit: u16,
    /// The zero page (RSI at entry).
    pub boot_params: u64,
}

/// What the loader decided, for the boot log and for mapping firmware ranges.
#[derive(Debug)]
pub struct LinuxLoad {
    pub start: LinuxStart,
    /// Linux's e820 map.
    pub e820: E820Map,
}

/// Why the Linux partition could not be loaded.
#[derive(Debug)]
pub enum LoadError<'a> {
    NoModule(&'static str, &'a str),
    Bz(&'a str, BzImageError),
    Elf(&'a str, ElfError),
    Place(PlaceError),
    InitrdTooBig(&'a str, u64),
    NoLowRoom,
    Cmdline(usize),
    Acpi(AcpiBuildError),
    NoRsdp,
    E820(E820Error),
    BootParams(BootParamsError),
    /// Linux's RAM refused a write (a placement the checks should have refused).
    Memory(GuestMemError),
}

impl From<GuestMemError> for LoadError<'_> {
    fn from(e: GuestMemError) -> Self {
        Self::Memory(e)
    }
}

impl fmt::Display for LoadError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoModule(field, name) => write!(
                f,
                "config: {field}: no boot module named {name:?} (GRUB needs `module2 <file> {name}`)"
            ),
            Self::Bz(name, e) => write!(
                f,
                "module {name:?} (linux.kernel): neither an ELF vmlinux nor a usable bzImage: {e}"
            ),
            Self::Elf(name, e) => write!(f, "module {name:?} (linux.kernel): {e}"),
            Self::Place(e) => write!(f, "linux: {e}"),
            Self::InitrdTooBig(name, size) => write!(
                f,
                "module {name:?} (linux.initrd): {size} bytes do not fit in partitions.linux.memory below the kernel's initrd limit"
            ),
            Self::NoLowRoom => write!(
                f,
                "linux: partitions.linux.memory has no {} KiB below 4 GiB for the zero page, command line and start-up page tables",
                BOOT_AREA_PAGES * 4
            ),
            Self::Cmdline(len) => write!(
                f,
                "linux: the command line (linux.cmdline, the kernel module's arguments and one bulkhead.channel= word per channel) is {len} bytes, more than {}",
                CMDLINE_ROOM - 1
            ),
            Self::Acpi(e) => write!(f, "linux: ACPI tables: {e}"),
            Self::NoRsdp => f.write_str(
                "linux: the boot loader passed no ACPI RSDP to rebuild Linux's tables from",
            ),
            Self::E820(e) => write!(f, "linux: {e}"),
            Self::BootParams(e) => write!(f, "linux: {e}"),
            Self::Memory(e) => write!(f, "linux: partition RAM: {e}"),
        }
    }
}

/// Firmware memory as the ACPI builder may read it (`BootInfo::read_firmware`).
struct FirmwareMemory<'a> {
    boot: &'a BootInfo,
}

impl PhysRead for FirmwareMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.boot.read_firmware(addr, buf).ok_or(ReadError)
    }
}

/// The kernel as found in its module (one lives on the stack for the load only).
#[allow(clippy::large_enum_variant)]
enum Image<'a> {
    Vmlinux(LoadPlan),
    BzImage(BzImage<'a>),
}

/// Loads Linux into its partition and returns where its boot CPU starts. Kept out of line:
/// the boot CPU's stack is small, and everything large is built in Linux's RAM directly.
#[inline(never)]
pub fn load<'a>(cfg: &'a Config, boot: &'a BootInfo) -> Result<LinuxLoad, LoadError<'a>> {
    let linux = cfg.linux();
    let name = linux.kernel().as_str();
    let module = boot
        .module(name)
        .ok_or(LoadError::NoModule("linux.kernel", name))?;
    let bytes = module.bytes();
    let image = if bytes.starts_with(b"\x7fELF") {
        Image::Vmlinux(LoadPlan::parse(bytes).map_err(|e| LoadError::Elf(name, e))?)
    } else {
        Image::BzImage(BzImage::parse(bytes).map_err(|e| LoadError::Bz(name, e))?)
    };
    let initrd = match linux.initrd() {
        Some(n) => {
            let n = n.as_str();
            let m = boot
                .module(n)
                .ok_or(LoadError::NoModule("linux.initrd", n))?;
            Some((n, m.bytes()))
        }
        None => None,
    };
    let ram = cfg.partition(PartitionId::Linux).memory();
    let mem = GuestRam::claim(PartitionId::Linux).map_err(LoadError::Memory)?;

    // The kernel, low in RAM from 16 MiB; our page tables map only the first 4 GiB.
    let needs = match &image {
        Image::Vmlinux(plan) => KernelNeeds {
            pref_address: plan.phys_start,
            size: plan.span().next_multiple_of(PAGE),
            alignment: 2 << 20,
            relocatable: true,
            above_4g: false,
        },
        Image::BzImage(k) => KernelNeeds {
            above_4g: false,
            ..k.needs()
        },
    };
    let load_address = place::kernel_load_address(&needs, ram, &[]).map_err(LoadError::Place)?;
    let kernel = Region::new(load_address, needs.size);

    // Boot area: low memory first (Linux reserves the first MiB for itself anyway), else
    // anywhere below 4 GiB.
    let area_req = |max_end| Request {
        size: BOOT_AREA_PAGES * PAGE,
        alignment: PAGE,
        min: PAGE,
        max_end,
    };
    let area = place::lowest(ram, &[kernel], &area_req(1 << 20))
        .or_else(|| place::lowest(ram, &[kernel], &area_req(FOUR_GIB)))
        .ok_or(LoadError::NoLowRoom)?;
    let area_region = Region::new(area, BOOT_AREA_PAGES * PAGE);

    // Linux's ACPI tables: high below 4 GiB, marked as ACPI data in its e820 map.
    let acpi_req = Request {
        size: ACPI_ROOM,
        alignment: PAGE,
        min: 1 << 20,
        max_end: FOUR_GIB,
    };
    let acpi_at = place::highest(ram, &[kernel, area_region], &acpi_req).ok_or(
        LoadError::Place(PlaceError::NoRoom {
            what: "ACPI tables",
            size: ACPI_ROOM,
            alignment: PAGE,
        }),
    )?;
    let acpi_region = Region::new(acpi_at, ACPI_ROOM);

    // The initrd: as high as the kernel accepts.
    let initrd_max = match &image {
        Image::BzImage(k) => u64::from(k.initrd_addr_max) + 1,
        Image::Vmlinux(_) => 0x8000_0000,
    }
    .min(FOUR_GIB);
    let initrd_at = match initrd {
        Some((n, b)) => {
            let req = Request {
                size: (b.len() as u64).next_multiple_of(PAGE),
                alignment: PAGE,
                min: 1 << 20,
                max_end: initrd_max,
            };
            let at = place::highest(ram, &[kernel, area_region, acpi_region], &req)
                .ok_or(LoadError::InitrdTooBig(n, b.len() as u64))?;
            Some((at, b))
        }
        None => None,
    };

    // From here on the pieces are written in place: the boot area first.
    let boot_area = mem
        .take_zeroed(gpa(area)?, BOOT_AREA_PAGES * PAGE)
        .map_err(LoadError::Memory)?;
    let (zero_page, rest) = boot_area.split_at_mut(PAGE as usize);
    let (cmdline, rest) = rest.split_at_mut(CMDLINE_ROOM);
    let (gdt, page_tables) = rest.split_at_mut(PAGE as usize);

    // Command line: the config's, the kernel module's arguments, then where the channels are.
    let len =
        hv_core::channels::compose_linux_cmdline(cmdline, &[linux.cmdline(), module.args()], cfg)
            .map_err(|e| LoadError::Cmdline(e.0))?;

    // ACPI: a MADT with only Linux's CPUs, the boot CPU first; Linux starts the others with
    // INIT and start-up IPIs, which the hypervisor emulates (`linux_cpus`).
    let cpus = cfg.partition(PartitionId::Linux).cpus();
    let rsdp = boot.rsdp.ok_or(LoadError::NoRsdp)? as u64;
    let acpi_buf = mem
        .take_zeroed(gpa(acpi_at)?, ACPI_ROOM)
        .map_err(LoadError::Memory)?;
    // The channel device's host bridge, when there is a device.
    let ssdt = crate::linux_devices::channel_device()
        .map(|(bus, gsi)| hv_core::devices::channel_device::ssdt(bus, gsi));
    let added: &[&[u8]] = match &ssdt {
        Some((table, len)) => &[&table[..*len]],
        None => &[],
    };
    let tables = acpi_build::build_linux_tables(
        &FirmwareMemory { boot },
        rsdp,
        &LinuxCpus {
            apic_ids: cpus,
            boot: cpus.first().copied().unwrap_or(0),
        },
        &HIDDEN_TABLES,
        added,
        acpi_buf,
        acpi_at,
    )
    .map_err(LoadError::Acpi)?;
    for w in tables.warnings.as_slice() {
        log::warn!("linux: firmware ACPI: {w}");
    }

    // e820: firmware map cut to Linux's share, with its ACPI tables as ACPI data.
    let extra = [E820Entry::new(acpi_at, ACPI_ROOM, E820Type::ACPI)];
    let map = e820::build(boot.firmware_map(), &Partitioning::from_config(cfg), &extra)
        .map_err(LoadError::E820)?;

    // The zero page.
    let zero_page: &mut [u8; ZERO_PAGE_SIZE] = zero_page
        .try_into()
        .unwrap_or_else(|_| unreachable!("the zero page is one page"));
    let kernel_kind = match &image {
        Image::BzImage(k) => Kernel::BzImage(k),
        Image::Vmlinux(_) => Kernel::Vmlinux,
    };
    boot_params::build(
        zero_page,
        kernel_kind,
        &BootParamsInput {
            load_address,
            cmdline: Some((area + CMDLINE_OFFSET, len as u32)),
            initrd: initrd_at.map(|(at, b)| (at, b.len() as u64)),
            e820: map.as_slice(),
            acpi_rsdp: tables.rsdp,
            quiet: false,
        },
    )
    .map_err(LoadError::BootParams)?;

    // Everything is decided and checked: copy.
    let entry = match &image {
        Image::Vmlinux(plan) => {
            for s in plan.segments.as_slice() {
                let at = load_address + (s.phys - plan.phys_start);
                mem.load(gpa(at)?, s.bytes(bytes), s.mem_size)
                    .map_err(LoadError::Memory)?;
            }
            load_address + (plan.entry - plan.phys_start)
        }
        Image::BzImage(k) => {
            mem.write(gpa(load_address)?, k.kernel())
                .map_err(LoadError::Memory)?;
            k.entry_64(load_address).unwrap_or(load_address)
        }
    };
    if let Some((at, b)) = initrd_at {
        mem.write(gpa(at)?, b).map_err(LoadError::Memory)?;
    }
    for (chunk, d) in gdt.chunks_exact_mut(8).zip(GDT) {
        chunk.copy_from_slice(&d.to_le_bytes());
    }
    let tables_at = area + PAGE_TABLES_OFFSET;
    // The page-aligned rest of the boot area: exactly PAGE_TABLE_PAGES pages.
    let pt = <[[u64; 512]; PAGE_TABLE_PAGES]>::mut_from_bytes(page_tables)
        .map_err(|_| LoadError::Memory(GuestMemError::Table { gpa: tables_at }))?;
    rt_boot::fill_identity_tables(pt, tables_at);

    log::info!(
        "partition linux: kernel {name:?} ({}, {} KiB) at {load_address:#x}, entry {entry:#x}; initrd {}; ACPI at {acpi_at:#x} ({} CPUs in the MADT, {} tables); zero page at {area:#x}; command line {:?}",
        match image {
            Image::Vmlinux(_) => "vmlinux",
            Image::BzImage(_) => "bzImage",
        },
        bytes.len() >> 10,
        match initrd_at {
            Some((at, b)) => InitrdNote(Some((at, b.len()))),
            None => InitrdNote(None),
        },
        tables.cpus,
        tables.tables,
        core::str::from_utf8(cmdline.get(..len).unwrap_or(&[])).unwrap_or("")
    );
    for e in map.as_slice() {
        log::info!(
            "linux e820: {:#012x}..{:#012x} {:?}",
            e.addr,
            e.end(),
            e.kind
        );
    }
    Ok(LinuxLoad {
        start: LinuxStart {
            entry,
            cr3: tables_at,
            gdt: area + GDT_OFFSET,
            gdt_limit: (GDT.len() * 8 - 1) as u16,
            boot_params: area + ZERO_PAGE_OFFSET,
        },
        e820: map,
    })
}

struct InitrdNote(Option<(u64, usize)>);

impl fmt::Display for InitrdNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((at, len)) => write!(f, "{} KiB at {at:#x}", len >> 10),
            None => f.write_str("none"),
        }
    }
}
