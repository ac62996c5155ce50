//! The boot ABI of the Bulkhead RT partition kernel: what the hypervisor hands the RT kernel
//! when it starts it, and the one place that layout is defined.
//!
//! # Entry protocol
//!
//! The RT kernel is one multiboot2 ELF, linked identity-mapped at 1 MiB, that boots in two
//! modes:
//!
//! - **bare**: GRUB loads it as the multiboot2 kernel and enters `_start` on the bootstrap CPU
//!   in 32-bit protected mode, paging off, with `EAX` = the multiboot2 magic (`0x36d76289`) and
//!   `EBX` = the multiboot2 boot information. The kernel finds its own facts (memory map,
//!   ACPI MADT, TSC frequency) and starts its other CPUs itself.
//! - **under the hypervisor**: the hypervisor maps the partition's RAM at guest-physical 0
//!   upward, loads the ELF's `PT_LOAD` segments at their (guest-)physical addresses and enters
//!   the ELF entry (`_start64`) on **every** CPU of the partition in 64-bit mode, interrupts
//!   off, on start-up page tables that identity-map the first 4 GiB with 2 MiB pages (the top
//!   GiB uncached), with `RDI` = [`RT_BOOT_MAGIC`], `RSI` = the guest-physical address of an
//!   [`RtBootInfo`] (below 4 GiB, 8-byte aligned, inside partition RAM and outside the ELF's
//!   segments), and `RDX` = the CPU's index within the partition (0 = the partition's boot
//!   CPU, which must be entered first or at the same time; the others wait for it). The
//!   hypervisor's side of this (layout, page tables, boot information) is
//!   `bulkhead_hv_core::boot::rt`. A loader that starts guests in 32-bit protected mode may
//!   enter `_start` instead (the multiboot2 entry) with `EAX` = [`RT_BOOT_MAGIC`], `EBX` = the
//!   boot information and `ESI` = the CPU index.
//!
//! The kernel treats an [`RtBootInfo`] as input from outside: it calls
//! [`RtBootInfo::validate`] before using any of it.
//!
//! The vectors its interrupts use are [`crate::vectors`]; the status report it sends Linux is
//! [`crate::status`].
//!
//! # Layout rules
//!
//! `#[repr(C)]` with native little-endian integers at their natural alignment and no padding
//! (checked at compile time by the zerocopy derives and the size assertions below). Every
//! array has a fixed capacity and a count beside it. A change of layout changes
//! [`RT_BOOT_INFO_VERSION`].

use core::fmt;
use core::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::channel::{Direction, Notify};
use crate::limits;

pub mod layout;

/// `EAX` at `_start` when the hypervisor enters the RT kernel ("BKRT" read as a little-endian
/// `u32`). Distinct from the multiboot2 magic `0x36d76289`.
pub const RT_BOOT_MAGIC: u32 = u32::from_le_bytes(*b"BKRT");
/// `EAX` at `_start` when a multiboot2 loader (GRUB) enters the RT kernel.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// First bytes of an [`RtBootInfo`].
pub const RT_BOOT_INFO_MAGIC: [u8; 8] = *b"BLKRTBI\0";
/// Layout version of [`RtBootInfo`] (2: room for [`limits::MAX_RT_CPUS`] CPUs, not 64; 3: the
/// device lines; 4: the PCI functions and the RAM's bus addresses).
pub const RT_BOOT_INFO_VERSION: u32 = 4;

/// Most CPUs the partition can have: the RT kernel's limit.
pub const MAX_CPUS: usize = limits::MAX_RT_CPUS;
/// Most memory regions in an [`RtBootInfo`].
pub const MAX_MEMORY_REGIONS: usize = limits::MAX_MEMORY_REGIONS;
/// Most channels in an [`RtBootInfo`].
pub const MAX_CHANNELS: usize = limits::MAX_CHANNELS;
/// Bytes of a channel name (UTF-8, NUL-padded).
pub const CHANNEL_NAME_LEN: usize = limits::NAME_LEN;
/// Most device lines the boot information lists.
pub const MAX_LINES: usize = limits::MAX_RT_LINES;
/// Most PCI functions the boot information lists.
pub const MAX_PCI_FUNCTIONS: usize = limits::MAX_RT_PCI_FUNCTIONS;

/// Where the doorbell request words lie in the partition's guest-physical space: one `u32` per
/// channel of the boot information, in its order, zero at entry. Before a task sleeps waiting
/// for Linux on a `doorbell` channel, the RT kernel stores 1 in the channel's word; when Linux
/// rings that channel, the hypervisor takes the word (sets it to 0) and interrupts the RT
/// partition only if it was 1. The page is the partition's own RAM, which Linux can neither
/// read nor write: a Linux that rings without being asked costs the RT partition nothing.
pub const DOORBELL_REQUESTS_GPA: u64 = 0x2000;

/// Where the console turn word lies in the partition's guest-physical space: one `u32`, zero
/// at entry, in the partition's own RAM (Linux can neither read nor write it). When the config
/// gives the RT kernel the hypervisor's console UART, the two take turns line by line so that
/// their lines never interleave: a writer changes the word from [`CONSOLE_FREE`] to its own
/// value ([`CONSOLE_RT`], [`CONSOLE_HYPERVISOR`]) with a compare-and-exchange, writes one whole
/// line (or one block of lines), and stores [`CONSOLE_FREE`] again. Neither side ever waits
/// for the other without bound: the RT kernel, which drains its console from its idle task,
/// tries again later; the hypervisor gives up after [`CONSOLE_TURN_WAIT_MS`] and writes anyway
/// (a line that interleaves is the worst outcome, never a hang).
pub const CONSOLE_TURN_GPA: u64 = 0x3000;
/// The console turn word: nobody writes.
pub const CONSOLE_FREE: u32 = 0;
/// The console turn word: the RT kernel writes a line.
pub const CONSOLE_RT: u32 = 1;
/// The console turn word: the hypervisor writes a line.
pub const CONSOLE_HYPERVISOR: u32 = 2;
/// Longest the hypervisor waits for its console turn, in milliseconds of TSC time.
pub const CONSOLE_TURN_WAIT_MS: u64 = 20;

/// [`RtBootInfo::flags`] bit 0: the kernel runs under the Bulkhead hypervisor.
pub const FLAG_UNDER_HYPERVISOR: u64 = 1 << 0;
/// Every flag this version defines; other bits must be 0.
pub const KNOWN_FLAGS: u64 = FLAG_UNDER_HYPERVISOR;

/// Bytes of the kernel command line (UTF-8, NUL-padded).
pub const CMDLINE_LEN: usize = 256;

/// Page size every region is aligned to.
pub const PAGE_SIZE: u64 = 4096;

/// A range of guest-physical RAM the partition owns.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MemoryRegion {
    /// Guest-physical base, a multiple of 4 KiB.
    pub base: u64,
    /// Size in bytes, a non-zero multiple of 4 KiB.
    pub size: u64,
}

impl MemoryRegion {
    /// One past the last byte, if it does not overflow.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }
}

/// A shared-memory channel to the Linux partition.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ChannelInfo {
    /// The channel's name (UTF-8, NUL-padded, not empty).
    pub name: [u8; CHANNEL_NAME_LEN],
    /// Guest-physical base of the channel's memory (header and ring), 4 KiB aligned.
    pub base: u64,
    /// Bytes of channel memory.
    pub size: u64,
    /// Bytes per ring slot (not 0, at most `size`).
    pub slot_size: u32,
    /// A [`Direction`]'s code: `linux-to-rt` or `rt-to-linux`.
    pub direction: u8,
    /// A [`Notify`] mode's code.
    pub notify: u8,
    /// Zero.
    pub reserved: [u8; 2],
}

impl Default for ChannelInfo {
    fn default() -> Self {
        Self {
            name: [0; CHANNEL_NAME_LEN],
            base: 0,
            size: 0,
            slot_size: 0,
            direction: 0,
            notify: 0,
            reserved: [0; 2],
        }
    }
}

/// The text of a NUL-padded UTF-8 field, if it is one.
pub(crate) fn nul_padded(bytes: &[u8]) -> Option<&str> {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    if bytes[len..].iter().any(|&b| b != 0) {
        return None;
    }
    core::str::from_utf8(&bytes[..len]).ok()
}

impl ChannelInfo {
    /// The name, if it is NUL-padded UTF-8.
    pub fn name(&self) -> Option<&str> {
        nul_padded(&self.name)
    }

    /// The direction, if the byte names one.
    /// (The RT partition has no end on a `hypervisor-to-linux` channel: that code is none.)
    pub fn direction(&self) -> Option<Direction> {
        Direction::from_code(self.direction).filter(|d| d.involves_rt())
    }

    /// The notification mode, if the byte names one.
    pub fn notify(&self) -> Option<Notify> {
        Notify::from_code(self.notify)
    }
}

/// One device line (an IOAPIC pin) of the RT partition: the hypervisor programmed the pin's
/// redirection entry to deliver [`LineInfo::vector`] to the RT CPU [`LineInfo::cpu`]
/// (a partition CPU index), with the trigger mode and polarity of [`LineInfo::flags`], and
/// left it masked; the RT kernel unmasks it with the `LINE` hypercall when a driver attaches.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct LineInfo {
    /// The pin's global system interrupt number.
    pub gsi: u32,
    /// The RT partition CPU (index into the boot information's CPU list) it is delivered to.
    pub cpu: u16,
    /// Its vector: `vectors::DEVICE_FIRST` plus its index in the table.
    pub vector: u8,
    /// [`LINE_LEVEL`] and [`LINE_ACTIVE_LOW`].
    pub flags: u8,
}

/// [`LineInfo::flags`]: level-triggered (edge-triggered without it).
pub const LINE_LEVEL: u8 = 1 << 0;
/// [`LineInfo::flags`]: active low (active high without it).
pub const LINE_ACTIVE_LOW: u8 = 1 << 1;
/// Every [`LineInfo::flags`] bit this ABI defines.
pub const LINE_KNOWN_FLAGS: u8 = LINE_LEVEL | LINE_ACTIVE_LOW;

impl LineInfo {
    /// Whether the line is level-triggered.
    pub fn level_triggered(&self) -> bool {
        self.flags & LINE_LEVEL != 0
    }

    /// Whether the line is active low.
    pub fn active_low(&self) -> bool {
        self.flags & LINE_ACTIVE_LOW != 0
    }

    /// The `(low, high)` dwords of the IOAPIC redirection entry that delivers this line to
    /// the CPU with APIC ID `apic_id` (at most 255): fixed delivery, physical destination,
    /// its vector, trigger mode and polarity, masked or not (Intel 82093AA datasheet 3.2.4).
    /// Whoever programs the pin (the hypervisor; the RT kernel itself when it runs bare)
    /// writes these.
    pub fn ioapic_entry(&self, apic_id: u32, masked: bool) -> (u32, u32) {
        const MASKED: u32 = 1 << 16;
        const LEVEL: u32 = 1 << 15;
        const ACTIVE_LOW: u32 = 1 << 13;
        let low = u32::from(self.vector)
            | if self.level_triggered() { LEVEL } else { 0 }
            | if self.active_low() { ACTIVE_LOW } else { 0 }
            | if masked { MASKED } else { 0 };
        (low, (apic_id & 0xff) << 24)
    }
}

/// One base address register of a [`PciFunctionInfo`], as the hypervisor found it at boot and
/// left it: the function decodes there (the hypervisor turned its decoding on), a memory BAR
/// mapped into the partition uncached at the same (guest-physical = host-physical) address, an
/// I/O BAR's ports passed through.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PciBar {
    /// Its address (memory) or first port (I/O); 0 with `size` 0 for a register that is no
    /// BAR (unimplemented, or the upper half of a 64-bit BAR).
    pub base: u64,
    /// Bytes (ports) it decodes, a power of two; 0 for none.
    pub size: u64,
}

/// [`PciFunctionInfo::bar_kinds`]: no BAR at this register.
pub const BAR_NONE: u8 = 0;
/// [`PciFunctionInfo::bar_kinds`]: I/O ports.
pub const BAR_IO: u8 = 1;
/// [`PciFunctionInfo::bar_kinds`]: memory (32- or 64-bit; a 64-bit BAR takes two registers,
/// the second listed as [`BAR_NONE`]).
pub const BAR_MEMORY: u8 = 2;
/// [`PciFunctionInfo::line`] of a function that signals no interrupt the partition owns (no
/// INTx pin, or MSI only).
pub const NO_LINE: u8 = 0xff;

/// One PCI function the RT partition owns. The hypervisor read its identity and BARs at boot,
/// turned on its memory and I/O decoding and its bus mastering, and found the IOAPIC pin its
/// INTx reaches (through the chipset's PIRQ routing, as the firmware set it up): that pin is
/// one of the partition's device lines, [`PciFunctionInfo::line`]. Its configuration space is
/// the hypervisor's (the RT kernel never needs it: everything a driver needs is here).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PciFunctionInfo {
    /// Bus (bits 15:8), device (7:3) and function (2:0).
    pub bdf: u16,
    pub vendor_id: u16,
    pub device_id: u16,
    /// The index in the boot information's `lines` of the line its INTx reaches, or
    /// [`NO_LINE`].
    pub line: u8,
    /// Its INTx pin: 1 to 4 for INTA to INTD, 0 for none.
    pub interrupt_pin: u8,
    /// Class code (bits 23:16), subclass (15:8) and programming interface (7:0).
    pub class: u32,
    /// [`BAR_NONE`], [`BAR_IO`] or [`BAR_MEMORY`] for each of the six BARs.
    pub bar_kinds: [u8; 6],
    /// Zero.
    pub reserved: [u8; 6],
    /// The six BARs.
    pub bars: [PciBar; 6],
}

impl PciFunctionInfo {
    /// The function's address as `BB:DD.F`.
    pub fn address(&self) -> PciAddress {
        PciAddress(self.bdf)
    }

    /// BAR `index`'s address and size if it is a memory BAR.
    pub fn memory_bar(&self, index: usize) -> Option<PciBar> {
        (*self.bar_kinds.get(index)? == BAR_MEMORY).then(|| self.bars[index])
    }

    /// BAR `index`'s first port and count if it is an I/O BAR.
    pub fn io_bar(&self, index: usize) -> Option<PciBar> {
        (*self.bar_kinds.get(index)? == BAR_IO).then(|| self.bars[index])
    }

    fn sane(&self, line_count: u32) -> bool {
        let line = self.line == NO_LINE || u32::from(self.line) < line_count;
        let bars = self
            .bar_kinds
            .iter()
            .zip(&self.bars)
            .all(|(&kind, bar)| match kind {
                BAR_NONE => bar.base == 0 && bar.size == 0,
                BAR_IO => {
                    bar.size.is_power_of_two()
                        && bar.base % bar.size == 0
                        && bar.base + bar.size <= 0x1_0000
                }
                BAR_MEMORY => {
                    bar.size.is_power_of_two()
                        && bar.base % bar.size == 0
                        && bar.base.checked_add(bar.size).is_some()
                }
                _ => false,
            });
        line && bars && self.interrupt_pin <= 4 && self.reserved == [0; 6] && self.class >> 24 == 0
    }
}

/// A PCI function's bus, device and function, shown as `BB:DD.F` (hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddress(pub u16);

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.0 >> 8,
            (self.0 >> 3) & 0x1f,
            self.0 & 7
        )
    }
}

/// What the hypervisor tells the RT kernel about its partition.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct RtBootInfo {
    /// [`RT_BOOT_INFO_MAGIC`].
    pub magic: [u8; 8],
    /// [`RT_BOOT_INFO_VERSION`].
    pub version: u32,
    /// `size_of::<RtBootInfo>()`.
    pub size: u32,
    /// [`FLAG_UNDER_HYPERVISOR`] and nothing else defined yet.
    pub flags: u64,
    /// The TSC frequency in Hz; 0 = unknown, the kernel calibrates it.
    pub tsc_hz: u64,
    /// CPUs of the partition, 1 to [`MAX_CPUS`].
    pub cpu_count: u32,
    /// The console's 16550 I/O port base (for example `0x3f8`); 0 = no console.
    pub console_port: u16,
    /// Zero.
    pub reserved0: u16,
    /// x2APIC ID of partition CPU `i` at index `i`; entries from `cpu_count` on are 0.
    pub apic_ids: [u32; MAX_CPUS],
    /// Valid entries of `memory_regions`.
    pub memory_region_count: u32,
    /// Valid entries of `channels`.
    pub channel_count: u32,
    /// The partition's RAM (guest-physical), sorted by base, not overlapping.
    pub memory_regions: [MemoryRegion; MAX_MEMORY_REGIONS],
    /// The partition's channels.
    pub channels: [ChannelInfo; MAX_CHANNELS],
    /// The RT kernel's command line (`selftest=kernel latency_period_us=100`), UTF-8,
    /// NUL-padded; all NUL for none.
    pub cmdline: [u8; CMDLINE_LEN],
    /// Used entries of `lines`.
    pub line_count: u32,
    pub reserved1: u32,
    /// The partition's device lines (version 3 and later).
    pub lines: [LineInfo; MAX_LINES],
    /// The bus address (host-physical: what a device's DMA uses, there being no IOMMU) of
    /// `memory_regions[i]` at index `i` (version 4 and later; equal to the guest-physical base
    /// when the kernel runs bare).
    pub ram_bus: [u64; MAX_MEMORY_REGIONS],
    /// Used entries of `pci_functions`.
    pub pci_function_count: u32,
    pub reserved2: u32,
    /// The PCI functions the partition owns (version 4 and later).
    pub pci_functions: [PciFunctionInfo; MAX_PCI_FUNCTIONS],
}

const _: () = assert!(size_of::<MemoryRegion>() == 16);
const _: () = assert!(size_of::<ChannelInfo>() == 56);
const _: () = assert!(size_of::<LineInfo>() == 8);
const _: () = assert!(size_of::<PciBar>() == 16);
const _: () = assert!(size_of::<PciFunctionInfo>() == 120);
const _: () = assert!(
    size_of::<RtBootInfo>()
        == 2384 + 8 + 8 * MAX_LINES + 8 * MAX_MEMORY_REGIONS + 8 + 120 * MAX_PCI_FUNCTIONS
);
// The boot information and the doorbell words share the partition's second and third pages.
const _: () = assert!(size_of::<RtBootInfo>() <= 4096);
const _: () = assert!(core::mem::align_of::<RtBootInfo>() == 8);

/// Why an [`RtBootInfo`] was refused. Names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiError {
    /// Fewer bytes than an `RtBootInfo`, or misaligned.
    Truncated,
    /// `magic` is not [`RT_BOOT_INFO_MAGIC`].
    BadMagic,
    /// `version` is not one this kernel knows.
    UnsupportedVersion(u32),
    /// `size` is not `size_of::<RtBootInfo>()`.
    BadSize(u32),
    /// `flags` has bits this version does not define.
    UnknownFlags(u64),
    /// A reserved field is not 0.
    ReservedNotZero,
    /// `cpu_count` is 0 or above [`MAX_CPUS`].
    CpuCount(u32),
    /// Two CPUs have the same APIC ID.
    DuplicateApicId(u32),
    /// `memory_region_count` is 0 or above [`MAX_MEMORY_REGIONS`].
    MemoryRegionCount(u32),
    /// Region `index` is empty, misaligned, overflows, overlaps or is out of order.
    BadMemoryRegion(usize),
    /// `channel_count` is above [`MAX_CHANNELS`].
    ChannelCount(u32),
    /// Channel `index` has a bad name, geometry, direction or notification byte.
    BadChannel(usize),
    /// The command line is not NUL-padded UTF-8.
    BadCmdline,
    /// `line_count` is above [`MAX_LINES`].
    LineCount(u32),
    /// Line `index` is on a CPU outside the partition, has another vector, unknown flags or
    /// a pin listed before.
    BadLine(usize),
    /// `pci_function_count` is above [`MAX_PCI_FUNCTIONS`].
    PciFunctionCount(u32),
    /// PCI function `index` names no line of the table, has an unknown or misplaced BAR, or
    /// an address listed before.
    BadPciFunction(usize),
    /// The bus address of memory region `index` overflows.
    BadRamBus(usize),
}

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated => f.write_str("boot info: truncated or misaligned"),
            Self::BadMagic => f.write_str("boot info: magic: not BLKRTBI"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "boot info: version: {v} (this kernel knows {RT_BOOT_INFO_VERSION})"
            ),
            Self::BadSize(s) => write!(
                f,
                "boot info: size: {s} (expected {})",
                size_of::<RtBootInfo>()
            ),
            Self::UnknownFlags(x) => write!(f, "boot info: flags: unknown bits {x:#x}"),
            Self::ReservedNotZero => f.write_str("boot info: a reserved field is not 0"),
            Self::CpuCount(n) => write!(f, "boot info: cpu_count: {n} (1 to {MAX_CPUS})"),
            Self::DuplicateApicId(id) => write!(f, "boot info: apic_ids: {id} appears twice"),
            Self::MemoryRegionCount(n) => write!(
                f,
                "boot info: memory_region_count: {n} (1 to {MAX_MEMORY_REGIONS})"
            ),
            Self::BadMemoryRegion(i) => write!(
                f,
                "boot info: memory_regions[{i}]: empty, not 4 KiB aligned, overflowing, or not above the previous one"
            ),
            Self::ChannelCount(n) => {
                write!(f, "boot info: channel_count: {n} (at most {MAX_CHANNELS})")
            }
            Self::BadChannel(i) => write!(
                f,
                "boot info: channels[{i}]: bad name, geometry, direction or notify"
            ),
            Self::BadCmdline => f.write_str("boot info: cmdline: not NUL-padded UTF-8"),
            Self::LineCount(n) => write!(f, "boot info: line_count: {n} (at most {MAX_LINES})"),
            Self::BadLine(i) => write!(
                f,
                "boot info: lines[{i}]: CPU outside the partition, vector not the line's, unknown flags, or a pin listed twice"
            ),
            Self::PciFunctionCount(n) => write!(
                f,
                "boot info: pci_function_count: {n} (at most {MAX_PCI_FUNCTIONS})"
            ),
            Self::BadPciFunction(i) => write!(
                f,
                "boot info: pci_functions[{i}]: line not in the table, a BAR of unknown kind, unaligned or out of range, or an address listed twice"
            ),
            Self::BadRamBus(i) => write!(
                f,
                "boot info: ram_bus[{i}]: the region's bus addresses overflow"
            ),
        }
    }
}

impl Default for RtBootInfo {
    fn default() -> Self {
        Self::new()
    }
}

impl RtBootInfo {
    /// An empty block with magic, version and size filled in, no flags, no CPUs, no regions.
    pub const fn new() -> Self {
        Self {
            magic: RT_BOOT_INFO_MAGIC,
            version: RT_BOOT_INFO_VERSION,
            size: size_of::<RtBootInfo>() as u32,
            flags: 0,
            tsc_hz: 0,
            cpu_count: 0,
            console_port: 0,
            reserved0: 0,
            apic_ids: [0; MAX_CPUS],
            memory_region_count: 0,
            channel_count: 0,
            memory_regions: [MemoryRegion { base: 0, size: 0 }; MAX_MEMORY_REGIONS],
            channels: [ChannelInfo {
                name: [0; CHANNEL_NAME_LEN],
                base: 0,
                size: 0,
                slot_size: 0,
                direction: 0,
                notify: 0,
                reserved: [0; 2],
            }; MAX_CHANNELS],
            cmdline: [0; CMDLINE_LEN],
            line_count: 0,
            reserved1: 0,
            lines: [LineInfo {
                gsi: 0,
                cpu: 0,
                vector: 0,
                flags: 0,
            }; MAX_LINES],
            ram_bus: [0; MAX_MEMORY_REGIONS],
            pci_function_count: 0,
            reserved2: 0,
            pci_functions: [PciFunctionInfo {
                bdf: 0,
                vendor_id: 0,
                device_id: 0,
                line: 0,
                interrupt_pin: 0,
                class: 0,
                bar_kinds: [0; 6],
                reserved: [0; 6],
                bars: [PciBar { base: 0, size: 0 }; 6],
            }; MAX_PCI_FUNCTIONS],
        }
    }

    /// Reads a block from the start of `bytes` (which must be 8-byte aligned). The result is
    /// not validated yet.
    pub fn ref_from_prefix(bytes: &[u8]) -> Result<&Self, AbiError> {
        <Self as FromBytes>::ref_from_prefix(bytes)
            .map(|(info, _)| info)
            .map_err(|_| AbiError::Truncated)
    }

    /// Adds a CPU (its x2APIC ID) as the next partition CPU index.
    pub fn push_cpu(&mut self, apic_id: u32) -> Result<(), AbiError> {
        push_counted(
            &mut self.apic_ids,
            &mut self.cpu_count,
            apic_id,
            AbiError::CpuCount,
        )
    }

    /// Adds a memory region whose bus address (what DMA uses) is `bus`.
    pub fn push_memory_region(&mut self, region: MemoryRegion, bus: u64) -> Result<(), AbiError> {
        let index = self.memory_region_count as usize;
        push_counted(
            &mut self.memory_regions,
            &mut self.memory_region_count,
            region,
            AbiError::MemoryRegionCount,
        )?;
        self.ram_bus[index] = bus;
        Ok(())
    }

    /// Adds a PCI function.
    pub fn push_pci_function(&mut self, function: PciFunctionInfo) -> Result<(), AbiError> {
        push_counted(
            &mut self.pci_functions,
            &mut self.pci_function_count,
            function,
            AbiError::PciFunctionCount,
        )
    }

    /// Adds a channel.
    pub fn push_channel(&mut self, channel: ChannelInfo) -> Result<(), AbiError> {
        push_counted(
            &mut self.channels,
            &mut self.channel_count,
            channel,
            AbiError::ChannelCount,
        )
    }

    /// Adds a device line; its vector must be the next device vector.
    pub fn push_line(&mut self, line: LineInfo) -> Result<(), AbiError> {
        push_counted(
            &mut self.lines,
            &mut self.line_count,
            line,
            AbiError::LineCount,
        )
    }

    /// The command line, if it is NUL-padded UTF-8.
    pub fn cmdline(&self) -> Option<&str> {
        nul_padded(&self.cmdline)
    }

    /// Sets the command line; fails if it does not fit.
    pub fn set_cmdline(&mut self, cmdline: &str) -> Result<(), AbiError> {
        if cmdline.len() > CMDLINE_LEN || cmdline.as_bytes().contains(&0) {
            return Err(AbiError::BadCmdline);
        }
        self.cmdline = [0; CMDLINE_LEN];
        self.cmdline[..cmdline.len()].copy_from_slice(cmdline.as_bytes());
        Ok(())
    }

    /// Whether [`FLAG_UNDER_HYPERVISOR`] is set.
    pub fn under_hypervisor(&self) -> bool {
        self.flags & FLAG_UNDER_HYPERVISOR != 0
    }

    /// The partition's CPUs' APIC IDs (clamped to the capacity; validate first).
    pub fn apic_ids(&self) -> &[u32] {
        &self.apic_ids[..(self.cpu_count as usize).min(MAX_CPUS)]
    }

    /// The partition's memory regions (clamped to the capacity; validate first).
    pub fn memory_regions(&self) -> &[MemoryRegion] {
        &self.memory_regions[..(self.memory_region_count as usize).min(MAX_MEMORY_REGIONS)]
    }

    /// The partition's channels (clamped to the capacity; validate first).
    pub fn channels(&self) -> &[ChannelInfo] {
        &self.channels[..(self.channel_count as usize).min(MAX_CHANNELS)]
    }

    /// The partition's device lines (clamped to the capacity; validate first).
    pub fn lines(&self) -> &[LineInfo] {
        &self.lines[..(self.line_count as usize).min(MAX_LINES)]
    }

    /// The partition's PCI functions (clamped to the capacity; validate first).
    pub fn pci_functions(&self) -> &[PciFunctionInfo] {
        &self.pci_functions[..(self.pci_function_count as usize).min(MAX_PCI_FUNCTIONS)]
    }

    /// The bus addresses of the memory regions, in their order (validate first).
    pub fn ram_bus(&self) -> &[u64] {
        &self.ram_bus[..self.memory_regions().len()]
    }

    /// Checks everything the kernel relies on: header, counts within capacity, distinct APIC
    /// IDs, regions non-empty, 4 KiB aligned, not overflowing, sorted and disjoint, channels
    /// named, with sane geometry and known direction and notification bytes, device lines on
    /// the partition's CPUs with their own vectors, known flags and distinct pins.
    pub fn validate(&self) -> Result<(), AbiError> {
        if self.magic != RT_BOOT_INFO_MAGIC {
            return Err(AbiError::BadMagic);
        }
        if self.version != RT_BOOT_INFO_VERSION {
            return Err(AbiError::UnsupportedVersion(self.version));
        }
        if self.size as usize != size_of::<RtBootInfo>() {
            return Err(AbiError::BadSize(self.size));
        }
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(AbiError::UnknownFlags(self.flags & !KNOWN_FLAGS));
        }
        if self.reserved0 != 0 {
            return Err(AbiError::ReservedNotZero);
        }
        if self.cpu_count == 0 || self.cpu_count as usize > MAX_CPUS {
            return Err(AbiError::CpuCount(self.cpu_count));
        }
        let ids = self.apic_ids();
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err(AbiError::DuplicateApicId(*id));
            }
        }
        if self.memory_region_count == 0 || self.memory_region_count as usize > MAX_MEMORY_REGIONS {
            return Err(AbiError::MemoryRegionCount(self.memory_region_count));
        }
        let mut previous_end = 0u64;
        for (i, region) in self.memory_regions().iter().enumerate() {
            let end = region.end().ok_or(AbiError::BadMemoryRegion(i))?;
            if region.size == 0
                || region.base % PAGE_SIZE != 0
                || region.size % PAGE_SIZE != 0
                || (i > 0 && region.base < previous_end)
            {
                return Err(AbiError::BadMemoryRegion(i));
            }
            previous_end = end;
        }
        if self.cmdline().is_none() {
            return Err(AbiError::BadCmdline);
        }
        if self.channel_count as usize > MAX_CHANNELS {
            return Err(AbiError::ChannelCount(self.channel_count));
        }
        for (i, channel) in self.channels().iter().enumerate() {
            let sane = channel.name().is_some_and(|n| !n.is_empty())
                && channel.direction().is_some()
                && channel.notify().is_some()
                && channel.reserved == [0; 2]
                && channel.base % PAGE_SIZE == 0
                && channel.size > 0
                && channel.base.checked_add(channel.size).is_some()
                && channel.slot_size > 0
                && u64::from(channel.slot_size) <= channel.size;
            if !sane {
                return Err(AbiError::BadChannel(i));
            }
        }
        if self.reserved1 != 0 {
            return Err(AbiError::ReservedNotZero);
        }
        if self.line_count as usize > MAX_LINES {
            return Err(AbiError::LineCount(self.line_count));
        }
        let lines = self.lines();
        for (i, line) in lines.iter().enumerate() {
            let sane = u32::from(line.cpu) < self.cpu_count
                && Some(line.vector) == crate::vectors::device_vector(i)
                && line.flags & !LINE_KNOWN_FLAGS == 0
                && !lines[..i].iter().any(|l| l.gsi == line.gsi);
            if !sane {
                return Err(AbiError::BadLine(i));
            }
        }
        for (i, (region, &bus)) in self.memory_regions().iter().zip(self.ram_bus()).enumerate() {
            if bus % PAGE_SIZE != 0 || bus.checked_add(region.size).is_none() {
                return Err(AbiError::BadRamBus(i));
            }
        }
        if self.reserved2 != 0 {
            return Err(AbiError::ReservedNotZero);
        }
        if self.pci_function_count as usize > MAX_PCI_FUNCTIONS {
            return Err(AbiError::PciFunctionCount(self.pci_function_count));
        }
        let functions = self.pci_functions();
        for (i, function) in functions.iter().enumerate() {
            if !function.sane(self.line_count)
                || functions[..i].iter().any(|f| f.bdf == function.bdf)
            {
                return Err(AbiError::BadPciFunction(i));
            }
        }
        Ok(())
    }
}

/// Where guest-physical RAM lies on the bus: each memory region's guest-physical range and
/// its bus address (from an [`RtBootInfo`]'s `memory_regions` and `ram_bus`). A driver gives a
/// device the bus address of a buffer, never its guest-physical one: under the hypervisor the
/// two differ (the partition's RAM is mapped from guest-physical 0), and no IOMMU translates.
#[derive(Debug, Clone, Copy)]
pub struct BusMap<'a> {
    regions: &'a [MemoryRegion],
    bus: &'a [u64],
}

impl<'a> BusMap<'a> {
    /// The map of `regions`, whose bus addresses are `bus` (index by index).
    pub fn new(regions: &'a [MemoryRegion], bus: &'a [u64]) -> Self {
        Self { regions, bus }
    }

    /// The bus address of the `len` bytes at guest-physical `gpa`, if they lie in one region
    /// (a DMA buffer never spans two: they need not be adjacent on the bus).
    pub fn bus_address(&self, gpa: u64, len: u64) -> Option<u64> {
        let end = gpa.checked_add(len)?;
        self.regions
            .iter()
            .zip(self.bus)
            .find(|(r, _)| r.base <= gpa && r.end().is_some_and(|e| end <= e))
            .map(|(r, &bus)| bus + (gpa - r.base))
    }
}

/// The device lines of an RT kernel booted bare (no hypervisor to program the IOAPIC):
/// `lines=SPEC` on its command line, SPEC being comma-separated
/// `GSI[:edge|:level][:high|:low]` (an ISA pin, below 16, defaults to edge and active high,
/// any other to level and active low). Line `i` is the `i`-th, delivered with vector
/// `vectors::DEVICE_FIRST + i` to the boot CPU (partition CPU 0). Fills `out`; returns how
/// many, or the first word that is wrong.
pub fn parse_bare_lines<'a>(
    spec: &'a str,
    out: &mut [LineInfo; MAX_LINES],
) -> Result<usize, &'a str> {
    let mut count = 0;
    for word in spec.split(',') {
        let mut parts = word.split(':');
        let gsi: u32 = parts
            .next()
            .and_then(|g| g.parse().ok())
            .filter(|&g| g < 240)
            .ok_or(word)?;
        let (mut level, mut active_low) = (gsi >= 16, gsi >= 16);
        for part in parts {
            match part {
                "edge" => level = false,
                "level" => level = true,
                "high" => active_low = false,
                "low" => active_low = true,
                _ => return Err(word),
            }
        }
        let vector = crate::vectors::device_vector(count).ok_or(word)?;
        if out[..count].iter().any(|l| l.gsi == gsi) {
            return Err(word);
        }
        out[count] = LineInfo {
            gsi,
            cpu: 0,
            vector,
            flags: if level { LINE_LEVEL } else { 0 }
                | if active_low { LINE_ACTIVE_LOW } else { 0 },
        };
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
extern crate std;

/// Appends `item` to the fixed array `items` whose used length is `count`; a full array is
/// reported as `too_many(count + 1)`.
fn push_counted<T>(
    items: &mut [T],
    count: &mut u32,
    item: T,
    too_many: fn(u32) -> AbiError,
) -> Result<(), AbiError> {
    let slot = items
        .get_mut(*count as usize)
        .ok_or(too_many(count.saturating_add(1)))?;
    *slot = item;
    *count += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString as _;

    fn good() -> RtBootInfo {
        let mut info = RtBootInfo::new();
        info.flags = FLAG_UNDER_HYPERVISOR;
        info.tsc_hz = 2_000_000_000;
        info.console_port = 0x3f8;
        info.set_cmdline("selftest=kernel").unwrap();
        info.push_cpu(1).unwrap();
        info.push_cpu(3).unwrap();
        info.push_memory_region(
            MemoryRegion {
                base: 0,
                size: 128 << 20,
            },
            0x6000_0000,
        )
        .unwrap();
        let mut name = [0u8; CHANNEL_NAME_LEN];
        name[..9].copy_from_slice(b"telemetry");
        info.push_channel(ChannelInfo {
            name,
            base: 0x0800_0000,
            size: 64 << 10,
            slot_size: 256,
            direction: Direction::RtToLinux.code(),
            notify: Notify::Doorbell.code(),
            reserved: [0; 2],
        })
        .unwrap();
        info.push_line(LineInfo {
            gsi: 4,
            cpu: 1,
            vector: crate::vectors::DEVICE_FIRST,
            flags: 0,
        })
        .unwrap();
        info
    }

    #[test]
    fn bare_line_specs() {
        let mut lines = [LineInfo::default(); MAX_LINES];
        assert_eq!(parse_bare_lines("20:edge:high,4,17", &mut lines), Ok(3));
        assert_eq!(lines[0].gsi, 20);
        assert_eq!(lines[0].flags, 0);
        assert_eq!(lines[0].vector, crate::vectors::DEVICE_FIRST);
        assert_eq!(lines[1].flags, 0, "ISA default");
        assert_eq!(lines[2].flags, LINE_LEVEL | LINE_ACTIVE_LOW, "PCI default");
        assert_eq!(lines[2].vector, crate::vectors::DEVICE_FIRST + 2);
        assert_eq!(parse_bare_lines("20:rising", &mut lines), Err("20:rising"));
        assert_eq!(parse_bare_lines("4,4", &mut lines), Err("4"));
        assert_eq!(parse_bare_lines("x", &mut lines), Err("x"));
        assert_eq!(parse_bare_lines("240", &mut lines), Err("240"));
        let too_many = "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16";
        assert_eq!(parse_bare_lines(too_many, &mut lines), Err("16"));
    }

    #[test]
    fn lines_are_checked() {
        assert_eq!(good().validate(), Ok(()));
        let mut info = good();
        info.lines[0].cpu = 2;
        assert_eq!(info.validate(), Err(AbiError::BadLine(0)));
        let mut info = good();
        info.lines[0].vector += 1;
        assert_eq!(info.validate(), Err(AbiError::BadLine(0)));
        let mut info = good();
        info.lines[0].flags = 0x80;
        assert_eq!(info.validate(), Err(AbiError::BadLine(0)));
        let mut info = good();
        info.push_line(LineInfo {
            gsi: 4,
            cpu: 0,
            vector: crate::vectors::DEVICE_FIRST + 1,
            flags: LINE_LEVEL | LINE_ACTIVE_LOW,
        })
        .unwrap();
        assert_eq!(info.validate(), Err(AbiError::BadLine(1)));
        let mut info = good();
        info.line_count = MAX_LINES as u32 + 1;
        assert_eq!(
            info.validate(),
            Err(AbiError::LineCount(MAX_LINES as u32 + 1))
        );
    }

    #[test]
    fn magic_reads_bkrt_and_differs_from_multiboot2() {
        assert_eq!(RT_BOOT_MAGIC.to_le_bytes(), *b"BKRT");
        assert_ne!(RT_BOOT_MAGIC, MULTIBOOT2_MAGIC);
    }

    #[test]
    fn a_good_block_validates_and_round_trips_through_bytes() {
        let info = good();
        info.validate().unwrap();
        assert!(info.under_hypervisor());
        assert_eq!(info.apic_ids(), &[1, 3]);
        assert_eq!(info.channels()[0].name(), Some("telemetry"));
        assert_eq!(info.cmdline(), Some("selftest=kernel"));
        assert_eq!(info.channels()[0].direction(), Some(Direction::RtToLinux));
        // Through an aligned byte buffer, as the kernel reads it from guest memory.
        #[repr(C, align(8))]
        struct Aligned([u8; size_of::<RtBootInfo>() + 8]);
        let mut buf = Aligned([0; size_of::<RtBootInfo>() + 8]);
        buf.0[..size_of::<RtBootInfo>()].copy_from_slice(info.as_bytes());
        let back = RtBootInfo::ref_from_prefix(&buf.0).unwrap();
        assert_eq!(back, &info);
        assert_eq!(
            RtBootInfo::ref_from_prefix(&buf.0[..100]),
            Err(AbiError::Truncated)
        );
        assert_eq!(
            RtBootInfo::ref_from_prefix(&buf.0[4..]),
            Err(AbiError::Truncated)
        );
    }

    #[test]
    fn header_errors_name_the_field() {
        let mut info = good();
        info.magic[0] = b'X';
        assert_eq!(info.validate(), Err(AbiError::BadMagic));
        let mut info = good();
        info.version = RT_BOOT_INFO_VERSION + 1;
        assert_eq!(
            info.validate(),
            Err(AbiError::UnsupportedVersion(RT_BOOT_INFO_VERSION + 1))
        );
        let mut info = good();
        info.size = 10;
        assert_eq!(info.validate(), Err(AbiError::BadSize(10)));
        let mut info = good();
        info.flags |= 1 << 7;
        assert_eq!(info.validate(), Err(AbiError::UnknownFlags(1 << 7)));
        let mut info = good();
        info.cmdline[200] = b'x';
        assert_eq!(info.validate(), Err(AbiError::BadCmdline));
        let long: std::string::String = core::iter::repeat_n('x', CMDLINE_LEN + 1).collect();
        assert!(info.set_cmdline(&long).is_err());
        let mut info = good();
        info.reserved0 = 1;
        assert_eq!(info.validate(), Err(AbiError::ReservedNotZero));
    }

    #[test]
    fn counts_must_fit_their_arrays() {
        let mut info = good();
        info.cpu_count = 0;
        assert_eq!(info.validate(), Err(AbiError::CpuCount(0)));
        info.cpu_count = 65;
        assert_eq!(info.validate(), Err(AbiError::CpuCount(65)));
        assert_eq!(info.apic_ids().len(), MAX_CPUS, "accessors clamp");
        let mut info = good();
        info.memory_region_count = 17;
        assert_eq!(info.validate(), Err(AbiError::MemoryRegionCount(17)));
        info.memory_region_count = 0;
        assert_eq!(info.validate(), Err(AbiError::MemoryRegionCount(0)));
        let mut info = good();
        info.channel_count = 33;
        assert_eq!(info.validate(), Err(AbiError::ChannelCount(33)));
        assert_eq!(info.channels().len(), MAX_CHANNELS);
        let mut info = RtBootInfo::new();
        for i in 0..MAX_CPUS as u32 {
            info.push_cpu(i).unwrap();
        }
        assert!(info.push_cpu(99).is_err());
    }

    #[test]
    fn duplicate_apic_ids_are_refused() {
        let mut info = good();
        info.push_cpu(3).unwrap();
        assert_eq!(info.validate(), Err(AbiError::DuplicateApicId(3)));
    }

    #[test]
    fn regions_must_be_sane() {
        let bad = [
            MemoryRegion {
                base: 0x1000_0000,
                size: 0,
            },
            MemoryRegion {
                base: 0x1000_0800,
                size: 0x1000,
            },
            MemoryRegion {
                base: 0x1000_0000,
                size: 0x1001,
            },
            MemoryRegion {
                base: u64::MAX - 0xfff,
                size: 0x2000,
            },
            // Overlaps the first region (0 .. 128 MiB).
            MemoryRegion {
                base: 0x0400_0000,
                size: 0x1000,
            },
        ];
        for region in bad {
            let mut info = good();
            info.push_memory_region(region, 0x1_0000_0000).unwrap();
            assert_eq!(
                info.validate(),
                Err(AbiError::BadMemoryRegion(1)),
                "{region:?}"
            );
        }
        let mut info = good();
        info.push_memory_region(
            MemoryRegion {
                base: 0x1000_0000,
                size: 0x1000,
            },
            0x1_0000_0000,
        )
        .unwrap();
        info.validate().unwrap();
    }

    fn nic() -> PciFunctionInfo {
        let mut f = PciFunctionInfo {
            bdf: 2 << 3,
            vendor_id: 0x8086,
            device_id: 0x100e,
            line: 0,
            interrupt_pin: 1,
            class: 0x02_00_00,
            ..PciFunctionInfo::default()
        };
        f.bar_kinds[0] = BAR_MEMORY;
        f.bars[0] = PciBar {
            base: 0xfebc_0000,
            size: 0x2_0000,
        };
        f.bar_kinds[1] = BAR_IO;
        f.bars[1] = PciBar {
            base: 0xc000,
            size: 0x40,
        };
        f
    }

    #[test]
    fn pci_functions_are_checked() {
        let mut info = good();
        info.push_pci_function(nic()).unwrap();
        assert_eq!(info.validate(), Ok(()));
        let f = &info.pci_functions()[0];
        assert_eq!(f.address().to_string(), "00:02.0");
        assert_eq!(f.memory_bar(0).map(|b| b.base), Some(0xfebc_0000));
        assert_eq!(f.io_bar(0), None);
        assert_eq!(f.io_bar(1).map(|b| b.size), Some(0x40));
        assert_eq!(f.memory_bar(6), None);
        let mutations: [fn(&mut PciFunctionInfo); 8] = [
            |f| f.line = 1,
            |f| f.interrupt_pin = 5,
            |f| f.bar_kinds[2] = 7,
            |f| f.bars[3].size = 0x1000,
            |f| f.bars[0].base = 0xfebc_1000,
            |f| f.bars[0].size = 0x3_0000,
            |f| f.bars[1].base = 0xffe0,
            |f| f.reserved[1] = 1,
        ];
        for (i, mutate) in mutations.iter().enumerate() {
            let mut info = good();
            let mut f = nic();
            mutate(&mut f);
            info.push_pci_function(f).unwrap();
            assert_eq!(
                info.validate(),
                Err(AbiError::BadPciFunction(0)),
                "mutation {i}"
            );
        }
        let mut info = good();
        info.push_pci_function(nic()).unwrap();
        info.push_pci_function(nic()).unwrap();
        assert_eq!(
            info.validate(),
            Err(AbiError::BadPciFunction(1)),
            "listed twice"
        );
        let mut info = good();
        info.line_count = 0;
        info.push_pci_function(PciFunctionInfo {
            line: NO_LINE,
            ..nic()
        })
        .unwrap();
        assert_eq!(info.validate(), Ok(()), "no line");
        let mut info = good();
        info.ram_bus[0] = 0x6000_0800;
        assert_eq!(info.validate(), Err(AbiError::BadRamBus(0)));
        let mut info = good();
        info.ram_bus[0] = u64::MAX - 0xfff;
        assert_eq!(info.validate(), Err(AbiError::BadRamBus(0)));
    }

    #[test]
    fn bus_addresses_follow_the_regions() {
        let regions = [
            MemoryRegion {
                base: 0,
                size: 0x10_0000,
            },
            MemoryRegion {
                base: 0x10_0000,
                size: 0x10_0000,
            },
        ];
        let map = BusMap::new(&regions, &[0x6000_0000, 0x9000_0000]);
        assert_eq!(map.bus_address(0x1000, 0x800), Some(0x6000_1000));
        assert_eq!(map.bus_address(0x10_0000, 0x1000), Some(0x9000_0000));
        assert_eq!(map.bus_address(0xf_f800, 0x1000), None, "spans two regions");
        assert_eq!(map.bus_address(0x20_0000, 1), None, "outside RAM");
        assert_eq!(map.bus_address(u64::MAX, 2), None);
    }

    #[test]
    fn channels_must_be_sane() {
        let mutations: [fn(&mut ChannelInfo); 7] = [
            |c| c.name = [0; CHANNEL_NAME_LEN],
            |c| c.name[20] = b'x',
            |c| c.name[0] = 0xff,
            |c| c.direction = 2,
            |c| c.notify = 9,
            |c| c.slot_size = 0,
            |c| c.slot_size = (c.size + 1) as u32,
        ];
        for mutate in mutations {
            let mut info = good();
            mutate(&mut info.channels[0]);
            assert_eq!(info.validate(), Err(AbiError::BadChannel(0)));
        }
        let mut info = good();
        info.channels[0].base = !0xfff;
        assert_eq!(info.validate(), Err(AbiError::BadChannel(0)));
    }

    #[test]
    fn errors_display_the_field() {
        assert!(
            AbiError::BadMemoryRegion(2)
                .to_string()
                .contains("memory_regions[2]")
        );
        assert!(AbiError::CpuCount(0).to_string().contains("cpu_count"));
    }
}
