//! The RT partition loader's plan: where the partition's RAM and channel regions appear in
//! its guest-physical space, where the kernel image, the boot information and the start-up
//! page tables go, and what the [`RtBootInfo`] says. The image crate copies the bytes and
//! fills the VMCS; everything it decides is decided here, so it is tested on the host.
//!
//! # Guest-physical layout
//!
//! ```text
//! 0x0000_0000  page 0, left unused (a null pointer faults on nothing, but reads zeros)
//! 0x0000_1000  RtBootInfo                                   (BOOT_INFO_GPA)
//! 0x0000_2000  the doorbell request words, zeroed           (DOORBELL_REQUESTS_GPA)
//! 0x0000_3000  the console turn word, zeroed                (CONSOLE_TURN_GPA)
//! 0x0000_8000  start-up page tables: PML4, PDPT, 4 PDs       (PAGE_TABLES_GPA)
//! 0x0010_0000  the kernel's PT_LOAD segments, at their p_paddr (from IMAGE_MIN_GPA)
//!   ...        the rest of the partition's RAM
//! ram_end      (rounded up to 2 MiB) the shared regions, in config order, each keeping its
//!              host address's offset within 2 MiB so that EPT can use large pages
//! ```
//!
//! The RAM regions of the config follow each other from guest-physical 0 in config order, so
//! the kernel sees one contiguous range whatever the host layout. Everything must end below
//! 3 GiB: the kernel's identity map covers 4 GiB and makes the top GiB uncached (MMIO).
//!
//! # Entry state (what the image programs into the VMCS)
//!
//! 64-bit mode, CR3 = [`PAGE_TABLES_GPA`] (the first 4 GiB identity-mapped with 2 MiB pages,
//! 3-4 GiB uncached), flat 64-bit code segment, interrupts off, `RIP` = the ELF entry,
//! `RDI` = [`RT_BOOT_MAGIC`](bulkhead_abi::rt_boot::RT_BOOT_MAGIC), `RSI` = [`BOOT_INFO_GPA`],
//! `RDX` = the CPU's index in the partition.

use core::fmt;

use bulkhead_abi::rt_boot::{
    AbiError, CHANNEL_NAME_LEN, ChannelInfo, FLAG_UNDER_HYPERVISOR, MemoryRegion, RtBootInfo,
};
use bulkhead_config::{Config, PartitionId, Region};

use crate::boot::elf::LoadPlan;
use crate::memory::addr::{GuestPhysAddr, HostPhysAddr};
use crate::support::fixed::FixedList;

/// Where the [`RtBootInfo`] is written.
pub const BOOT_INFO_GPA: u64 = 0x1000;
/// Where the start-up page tables are written ([`PAGE_TABLE_PAGES`] pages).
pub const PAGE_TABLES_GPA: u64 = 0x8000;
/// The doorbell request words (the ABI's place for them), one `u32` per RT channel.
pub use bulkhead_abi::rt_boot::{CONSOLE_TURN_GPA, DOORBELL_REQUESTS_GPA};
/// Bytes of the doorbell request words.
pub const DOORBELL_REQUESTS_LEN: u64 = 4 * bulkhead_abi::rt_boot::MAX_CHANNELS as u64;

const _: () = {
    assert!(BOOT_INFO_GPA + core::mem::size_of::<RtBootInfo>() as u64 <= DOORBELL_REQUESTS_GPA);
    assert!(DOORBELL_REQUESTS_GPA + DOORBELL_REQUESTS_LEN <= CONSOLE_TURN_GPA);
    assert!(CONSOLE_TURN_GPA + 4 <= PAGE_TABLES_GPA);
};
/// Pages of start-up page tables: PML4, PDPT and one page directory per GiB.
pub const PAGE_TABLE_PAGES: usize = 6;
use bulkhead_abi::rt_boot::layout::{self, LARGE_PAGE, Piece};
pub use bulkhead_abi::rt_boot::layout::{GPA_LIMIT, IMAGE_MIN_GPA, LayoutError};

const PAGE: u64 = 0x1000;
/// RAM regions a partition may have (the config's limit).
const MAX_RAM: usize = bulkhead_config::MAX_REGIONS;
/// Shared regions a config may have.
const MAX_SHARED: usize = bulkhead_config::MAX_SHARED_REGIONS;

/// One piece of a partition's guest-physical space and the host memory behind it. Both ends
/// lie within the physical address width ([`Mapping::new`] checks), so its arithmetic cannot
/// overflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mapping {
    gpa: GuestPhysAddr,
    hpa: HostPhysAddr,
    size: u64,
}

impl Mapping {
    /// `size` bytes of host memory at `hpa` seen at `gpa`; `None` if either range leaves the
    /// physical address width.
    pub const fn new(gpa: GuestPhysAddr, hpa: HostPhysAddr, size: u64) -> Option<Self> {
        match (gpa.checked_add(size), hpa.checked_add(size)) {
            (Some(_), Some(_)) => Some(Self { gpa, hpa, size }),
            _ => None,
        }
    }

    /// Host `region` at the same guest-physical address (Linux's memory, firmware ranges).
    pub fn identity(region: Region) -> Option<Self> {
        Self::at(region.base, region)
    }

    /// Host `region` seen at guest-physical `gpa`.
    pub fn at(gpa: u64, region: Region) -> Option<Self> {
        Self::new(
            GuestPhysAddr::new(gpa)?,
            HostPhysAddr::new(region.base)?,
            region.size,
        )
    }

    /// Guest-physical base.
    pub const fn gpa(&self) -> GuestPhysAddr {
        self.gpa
    }

    /// Host-physical base.
    pub const fn hpa(&self) -> HostPhysAddr {
        self.hpa
    }

    /// Bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// One past the last guest-physical byte.
    pub const fn gpa_end(&self) -> u64 {
        self.gpa.as_u64() + self.size
    }

    /// The same mapping `bytes` longer, if it stays within the address width.
    pub const fn grown(self, bytes: u64) -> Option<Self> {
        match self.size.checked_add(bytes) {
            Some(size) => Self::new(self.gpa, self.hpa, size),
            None => None,
        }
    }

    /// The host address of `[gpa, gpa + len)` if it lies inside this mapping.
    pub fn host(&self, gpa: GuestPhysAddr, len: u64) -> Option<HostPhysAddr> {
        let (g, base) = (gpa.as_u64(), self.gpa.as_u64());
        let end = g.checked_add(len)?;
        if g < base || end > self.gpa_end() {
            return None;
        }
        self.hpa.checked_add(g - base)
    }
}

/// Why the RT partition cannot be loaded. Each names the config field or the image part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtLoadError {
    /// The partition's RAM and shared regions cannot be placed (the config tool refuses such a
    /// config too).
    Layout(LayoutError),
    /// A kernel segment starts below [`IMAGE_MIN_GPA`].
    SegmentTooLow { index: usize, phys: u64 },
    /// A kernel segment does not lie inside one RAM region of the partition.
    SegmentOutsideRam { index: usize, phys: u64, size: u64 },
    /// The boot information cannot hold what the config describes.
    BootInfo(AbiError),
}

impl fmt::Display for RtLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Layout(e) => write!(f, "partitions.rt.memory: {e}"),
            Self::SegmentTooLow { index, phys } => write!(
                f,
                "segment {index} at {phys:#x} lies below {IMAGE_MIN_GPA:#x}, where the loader puts the boot information"
            ),
            Self::SegmentOutsideRam { index, phys, size } => write!(
                f,
                "segment {index} ({size:#x} bytes at {phys:#x}) does not fit in one region of partitions.rt.memory (mapped from guest-physical 0)"
            ),
            Self::BootInfo(e) => write!(f, "boot information: {e:?}"),
        }
    }
}

/// The RT partition's guest-physical space.
#[derive(Debug, Clone, Copy)]
pub struct RtLayout {
    ram: FixedList<Mapping, MAX_RAM>,
    shared: FixedList<Mapping, MAX_SHARED>,
}

impl RtLayout {
    /// Places the RT partition's RAM from guest-physical 0 and the shared regions after it.
    pub fn plan(cfg: &Config) -> Result<Self, RtLoadError> {
        let ram_regions = cfg.partition(PartitionId::Rt).memory();
        let shared_regions = cfg.shared_regions();
        let mut ram = FixedList::new();
        let mut shared = FixedList::new();
        layout::place(
            ram_regions.iter().map(|r| (r.base, r.size)),
            shared_regions
                .iter()
                .map(|s| (s.region.base, s.region.size)),
            |piece, gpa| {
                // The config allows no more regions than the lists hold.
                // The config's regions end below 64 TiB and the placement below 3 GiB: the
                // mappings are valid.
                let _ = match piece {
                    Piece::Ram(i) => ram_regions
                        .get(i)
                        .and_then(|r| Mapping::at(gpa, *r))
                        .map(|m| ram.push(m)),
                    Piece::Shared(i) => shared_regions
                        .get(i)
                        .and_then(|s| Mapping::at(gpa, s.region))
                        .map(|m| shared.push(m)),
                };
            },
        )
        .map_err(RtLoadError::Layout)?;
        Ok(Self { ram, shared })
    }

    /// The partition's RAM, in guest-physical order.
    pub fn ram(&self) -> &[Mapping] {
        self.ram.as_slice()
    }

    /// The shared regions, in config order.
    pub fn shared(&self) -> &[Mapping] {
        self.shared.as_slice()
    }

    /// The host address of `len` bytes of partition RAM at `gpa`, if they lie in one region.
    pub fn ram_host(&self, gpa: GuestPhysAddr, len: u64) -> Option<HostPhysAddr> {
        self.ram().iter().find_map(|m| m.host(gpa, len))
    }

    /// Checks that every segment of the kernel image lies in partition RAM above the
    /// loader's first MiB.
    pub fn check_image(&self, plan: &LoadPlan) -> Result<(), RtLoadError> {
        for s in plan.segments.as_slice() {
            if s.phys < IMAGE_MIN_GPA {
                return Err(RtLoadError::SegmentTooLow {
                    index: s.index,
                    phys: s.phys,
                });
            }
            let at = GuestPhysAddr::new(s.phys);
            if at.and_then(|g| self.ram_host(g, s.mem_size)).is_none() {
                return Err(RtLoadError::SegmentOutsideRam {
                    index: s.index,
                    phys: s.phys,
                    size: s.mem_size,
                });
            }
        }
        Ok(())
    }

    /// The boot information for this layout: the partition's CPUs (partition index = config
    /// order), its RAM, its channels at their guest-physical addresses (not the hypervisor's
    /// `hypervisor-to-linux` one), the console port the
    /// config routes it to, the TSC frequency, the kernel command line, its device lines
    /// (`lines`, planned by `devices::rt_lines`) and its PCI functions (`pci`, described by
    /// `devices::rt_pci`); each RAM region's bus address is its host-physical one.
    pub fn boot_info(
        &self,
        cfg: &Config,
        tsc_hz: u64,
        cmdline: &str,
        lines: &[crate::devices::rt_lines::Line],
        pci: impl IntoIterator<Item = bulkhead_abi::rt_boot::PciFunctionInfo>,
    ) -> Result<RtBootInfo, RtLoadError> {
        let mut info = RtBootInfo::new();
        info.flags = FLAG_UNDER_HYPERVISOR;
        info.tsc_hz = tsc_hz;
        info.console_port = cfg.console().rt.io_base().unwrap_or(0);
        for &apic_id in cfg.partition(PartitionId::Rt).cpus() {
            info.push_cpu(apic_id).map_err(RtLoadError::BootInfo)?;
        }
        for m in self.ram() {
            info.push_memory_region(
                MemoryRegion {
                    base: m.gpa().as_u64(),
                    size: m.size,
                },
                m.hpa().as_u64(),
            )
            .map_err(RtLoadError::BootInfo)?;
        }
        for c in cfg.channels() {
            // The hypervisor's own log: the RT partition has no end on it.
            if !c.direction().involves_rt() {
                continue;
            }
            let Some(region) = self.shared.as_slice().get(c.region_index()) else {
                continue;
            };
            let mut name = [0u8; CHANNEL_NAME_LEN];
            let src = c.name().as_str().as_bytes();
            let len = src.len().min(CHANNEL_NAME_LEN);
            name[..len].copy_from_slice(&src[..len]);
            info.push_channel(ChannelInfo {
                name,
                base: region.gpa().as_u64() + c.offset(),
                size: c.size(),
                slot_size: c.slot_size(),
                direction: c.direction().code(),
                notify: c.notify().code(),
                reserved: [0; 2],
            })
            .map_err(RtLoadError::BootInfo)?;
        }
        for line in lines {
            info.push_line(line.info()).map_err(RtLoadError::BootInfo)?;
        }
        for function in pci {
            info.push_pci_function(function)
                .map_err(RtLoadError::BootInfo)?;
        }
        info.set_cmdline(cmdline).map_err(RtLoadError::BootInfo)?;
        info.validate().map_err(RtLoadError::BootInfo)?;
        Ok(info)
    }
}

/// Fills the start-up page tables that will lie at [`PAGE_TABLES_GPA`]: see
/// [`fill_identity_tables`].
pub fn fill_page_tables(tables: &mut [[u64; 512]; PAGE_TABLE_PAGES]) {
    fill_identity_tables(tables, PAGE_TABLES_GPA);
}

/// Fills page tables that will lie at guest-physical `at` (page-aligned): the first 4 GiB
/// of guest-physical space identity-mapped with 2 MiB pages, writable, the top GiB
/// uncached. Page 0 is the PML4, page 1 the PDPT, pages 2-5 the page directories. The RT
/// kernel and Linux's 64-bit entry both start on such tables.
pub fn fill_identity_tables(tables: &mut [[u64; 512]; PAGE_TABLE_PAGES], at: u64) {
    const PRESENT_WRITABLE: u64 = 0b11;
    const LARGE: u64 = 1 << 7;
    const UNCACHED: u64 = (1 << 3) | (1 << 4); // PWT | PCD
    for page in tables.iter_mut() {
        page.fill(0);
    }
    let page_gpa = |i: usize| at + i as u64 * PAGE;
    tables[0][0] = page_gpa(1) | PRESENT_WRITABLE;
    for gib in 0..4usize {
        tables[1][gib] = page_gpa(2 + gib) | PRESENT_WRITABLE;
        let cache = if gib == 3 { UNCACHED } else { 0 };
        for (i, entry) in tables[2 + gib].iter_mut().enumerate() {
            let addr = ((gib as u64) << 30) + i as u64 * LARGE_PAGE;
            *entry = addr | PRESENT_WRITABLE | LARGE | cache;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use super::*;
    use crate::boot::elf::testing::elf;

    const MIB: u64 = 1 << 20;

    fn config_text(rt_memory: &str, shared_base: u64) -> std::string::String {
        let hvlog_base = shared_base + 0x20_0000;
        std::format!(
            r#"
[machine]
name = "t"
[hypervisor]
memory = {{ base = 0x100000, size = "15 MiB" }}
[partitions.linux]
cpus = [0]
memory = [{{ base = 0x1000000, size = "16 MiB" }}]
[partitions.rt]
cpus = [1, 3]
memory = {rt_memory}
[linux]
kernel = "vmlinuz"
cmdline = "quiet"
[rt]
image = "rt.elf"
[[shared]]
name = "shm0"
base = {shared_base:#x}
size = "2 MiB"
[[shared]]
name = "hvlog"
base = {hvlog_base:#x}
size = "64 KiB"
[[channels]]
name = "telemetry"
region = "shm0"
direction = "rt-to-linux"
size = "64 KiB"
slot_size = 256
[[channels]]
name = "hv-log"
region = "hvlog"
direction = "hypervisor-to-linux"
size = "64 KiB"
slot_size = 1024
[[channels]]
name = "commands"
region = "shm0"
direction = "linux-to-rt"
size = "64 KiB"
slot_size = 256
notify = "poll"
"#
        )
    }

    fn config(rt_memory: &str, shm_base: u64) -> Config {
        bulkhead_config::host::load_str(&config_text(rt_memory, shm_base), "test").unwrap()
    }

    fn map(gpa: u64, hpa: u64, size: u64) -> Mapping {
        Mapping::new(
            GuestPhysAddr::new(gpa).unwrap(),
            HostPhysAddr::new(hpa).unwrap(),
            size,
        )
        .unwrap()
    }

    fn two_regions() -> Config {
        config(
            r#"[{ base = 0x3000000, size = "16 MiB" }, { base = 0x5000000, size = "8 MiB" }]"#,
            0x4100_0000,
        )
    }

    #[test]
    fn ram_follows_from_zero_and_shared_regions_follow_ram() {
        let layout = RtLayout::plan(&two_regions()).unwrap();
        assert_eq!(
            layout.ram(),
            &[
                map(0, 0x300_0000, 16 * MIB),
                map(16 * MIB, 0x500_0000, 8 * MIB),
            ]
        );
        // The hypervisor's log region gets guest-physical room too; the image leaves it out
        // of the RT partition's EPT (`Config::rt_maps_shared`).
        assert_eq!(
            layout.shared(),
            &[
                map(24 * MIB, 0x4100_0000, 2 * MIB),
                map(26 * MIB, 0x4120_0000, 64 * 1024)
            ]
        );
        let host = |gpa: u64, len| {
            layout
                .ram_host(GuestPhysAddr::new(gpa).unwrap(), len)
                .map(HostPhysAddr::as_u64)
        };
        assert_eq!(host(0x1000, 8), Some(0x300_1000));
        assert_eq!(host(17 * MIB, 8), Some(0x510_0000));
        assert_eq!(host(16 * MIB - 4, 8), None, "straddles two regions");
        assert_eq!(host(24 * MIB, 1), None, "shared is not RAM");
    }

    #[test]
    fn shared_regions_keep_their_offset_within_a_large_page() {
        let cfg = config(r#"[{ base = 0x3000000, size = "3 MiB" }]"#, 0x4103_0000);
        let layout = RtLayout::plan(&cfg).unwrap();
        assert_eq!(layout.shared()[0].gpa().as_u64(), 4 * MIB + 0x3_0000);
    }

    /// Memory the loader cannot place never reaches it: the config is refused, with the
    /// placement's own words (the arithmetic is tested in `bulkhead_abi::rt_boot::layout`).
    #[test]
    fn memory_the_loader_cannot_place_is_refused_by_the_config() {
        for (memory, words) in [
            (
                r#"[{ base = 0x40000000, size = "3 GiB" }, { base = 0x10000000, size = "4 MiB" }]"#,
                "past the RT kernel's 0xc0000000",
            ),
            (
                r#"[{ base = 0x3000000, size = "1 MiB" }]"#,
                "must hold the loader's first MiB",
            ),
        ] {
            let text = config_text(memory, 0x1_0000_0000);
            let e = bulkhead_config::host::load_str(&text, "test").unwrap_err();
            assert!(e.to_string().contains(words), "{e}");
        }
    }

    #[test]
    fn image_must_lie_in_ram_above_the_first_mib() {
        let layout = RtLayout::plan(&two_regions()).unwrap();
        let image = |phys: u64, size: u64| {
            let bytes = elf(phys, &[(1, 5, 0x1000, phys, phys, 0x100, size)], 0x2000);
            layout.check_image(&LoadPlan::parse(&bytes).unwrap())
        };
        assert_eq!(image(MIB, 0x10_0000), Ok(()));
        assert_eq!(
            image(0x8000, 0x1000),
            Err(RtLoadError::SegmentTooLow {
                index: 0,
                phys: 0x8000
            })
        );
        assert_eq!(
            image(15 * MIB, 2 * MIB),
            Err(RtLoadError::SegmentOutsideRam {
                index: 0,
                phys: 15 * MIB,
                size: 2 * MIB
            })
        );
        assert!(image(30 * MIB, 0x1000).is_err());
    }

    #[test]
    fn boot_info_describes_the_partition_and_validates() {
        let cfg = two_regions();
        let layout = RtLayout::plan(&cfg).unwrap();
        let info = layout
            .boot_info(&cfg, 2_000_000_000, "latency_period_us=100", &[], [])
            .unwrap();
        assert!(info.under_hypervisor());
        assert_eq!(info.apic_ids(), &[1, 3]);
        assert_eq!(info.tsc_hz, 2_000_000_000);
        assert_eq!(info.console_port, 0x3f8);
        assert_eq!(info.memory_regions().len(), 2);
        assert_eq!(info.memory_regions()[1].base, 16 * MIB);
        let ch = info.channels();
        assert_eq!(ch.len(), 2);
        assert_eq!(ch[0].name(), Some("telemetry"));
        assert_eq!(ch[0].base, 24 * MIB);
        assert_eq!(
            ch[0].direction(),
            Some(bulkhead_abi::channel::Direction::RtToLinux)
        );
        // The hypervisor's log channel between the two is left out.
        assert_eq!(ch[1].name(), Some("commands"));
        assert_eq!(ch[1].base, 24 * MIB + 64 * 1024);
        assert_eq!(ch[1].notify(), Some(bulkhead_abi::channel::Notify::Poll));
        assert_eq!(info.cmdline(), Some("latency_period_us=100"));
        assert!(
            layout
                .boot_info(&cfg, 1, &"x".repeat(300), &[], [])
                .unwrap_err()
                .to_string()
                .contains("boot information")
        );
    }

    #[test]
    fn page_tables_map_four_gib_with_the_top_uncached() {
        let mut t = [[0u64; 512]; PAGE_TABLE_PAGES];
        fill_page_tables(&mut t);
        assert_eq!(t[0][0], (PAGE_TABLES_GPA + 0x1000) | 3);
        assert!(t[0][1..].iter().all(|&e| e == 0));
        assert_eq!(t[1][3], (PAGE_TABLES_GPA + 0x5000) | 3);
        assert_eq!(t[2][0], 0x83);
        assert_eq!(t[2][1], 0x20_0083);
        assert_eq!(t[5][511], 0xffe0_0000 | 0x83 | 0x18);
        assert_eq!(t[4][0] & 0x18, 0, "the third GiB is cached");
        // The tables fit between the boot information and the image.
        assert!(PAGE_TABLES_GPA + PAGE_TABLE_PAGES as u64 * 0x1000 <= IMAGE_MIN_GPA);
        assert!(BOOT_INFO_GPA + size_of::<RtBootInfo>() as u64 <= PAGE_TABLES_GPA);
    }
}
