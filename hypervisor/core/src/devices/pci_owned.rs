//! Configuration writes to the PCI functions Linux owns, checked against what Linux owns.
//!
//! Linux configures its own functions, but where a function decodes and where it signals are
//! set in its configuration space: a base address register (BAR) moved over a port or a page
//! that is not Linux's (the hypervisor's console UART, the RT partition's RAM or device
//! registers, an IOAPIC) hijacks the accesses meant for them, and an MSI aimed at an RT CPU
//! interrupts it. [`OwnedFunction::check_write`] decides each write from the function's layout,
//! probed by the hypervisor before Linux runs ([`OwnedFunction::probe`]: each BAR's kind, size
//! and boot value, the MSI capability), and from what Linux owns ([`LinuxReach`]):
//!
//! - a BAR may be given a place inside what Linux owns (I/O: Linux's ports; memory: no RAM, no
//!   RT device window, no register page the hypervisor keeps), its boot value (where the
//!   firmware put it), or the sizing pattern (every address bit set) while the function's
//!   decoding of that kind is off;
//! - the command register may turn I/O or memory decoding on only while every BAR of that kind
//!   is at such a place (so a sizing pattern left in a BAR never decodes);
//! - an MSI address must be 0 (disarmed) or name one of Linux's CPUs in physical destination
//!   mode (x2APIC without interrupt remapping: the 8-bit destination field, no extended
//!   bits), its upper half 0; MSI data must ask for fixed or lowest-priority delivery (no SMI,
//!   NMI, INIT or ExtINT); MSI may be enabled only while both are so.
//!
//! - a PCI-to-PCI bridge with an RT function behind it ([`OwnedFunction::guard_rt_behind`])
//!   keeps its routing: its bus numbers, its I/O, memory and prefetchable windows, and its
//!   command register's decoding and bus-master bits may not change, and its secondary bus may
//!   not be reset (any of those cuts the RT partition off its device, or its device's DMA);
//! - any other bridge's forwarding windows (I/O, memory, prefetchable) are held to the rule of
//!   BARs while the bridge forwards that kind: an open window lies inside what Linux owns or
//!   where the firmware put it, and forwarding turns on only with its windows so (a window
//!   over an RT device's registers or the hypervisor's console ports would claim the accesses
//!   meant for them); with forwarding off, or closed (base above limit), a window may be
//!   anything, as Linux's resource assignment leaves windows half-written on the way.
//!
//! A write narrower than a dword is merged into the register's current value first, so a byte
//! write is judged by the register it leaves. Not checked here: MSI-X tables (in BAR memory,
//! which Linux's EPT does not map), and DMA (bus mastering needs an IOMMU). Written by hand:
//! no crate knows which partition owns what.

use core::fmt;

use bulkhead_config::{PciBdf, Region};

/// Registers of the configuration header.
pub mod reg {
    /// Command (low word) and status (high word).
    pub const COMMAND: u8 = 0x04;
    /// Header type in bits 23:16 of this dword.
    pub const HEADER: u8 = 0x0c;
    /// The first BAR.
    pub const BAR0: u8 = 0x10;
    /// The capability list's first pointer.
    pub const CAPABILITIES: u8 = 0x34;
    /// The expansion ROM BAR of a type 0 header.
    pub const ROM: u8 = 0x30;
    /// The expansion ROM BAR of a type 1 (bridge) header.
    pub const BRIDGE_ROM: u8 = 0x38;
    /// A bridge's primary, secondary and subordinate bus numbers (bytes 0 to 2).
    pub const BRIDGE_BUSES: u8 = 0x18;
    /// A bridge's bridge control register (bits 31:16).
    pub const BRIDGE_CONTROL: u8 = 0x3c;
}

/// The command register bits a bridge forwards with: I/O and memory decoding, bus mastering.
const BRIDGE_FORWARDING: u32 = IO_DECODE | MEMORY_DECODE | BUS_MASTER;
const BUS_MASTER: u32 = 1 << 2;
/// Bridge control's secondary bus reset (bit 6 of the register, bit 22 of its dword).
const SECONDARY_BUS_RESET: u32 = 1 << 22;
/// A bridge's routing registers and the bits of each that route: the bus numbers (not the
/// secondary latency timer), the I/O window (not the secondary status, whose bits clear on
/// write), the memory and prefetchable windows with their upper halves, the I/O window's
/// upper halves.
const BRIDGE_ROUTING: [(u8, u32); 6] = [
    (reg::BRIDGE_BUSES, 0x00ff_ffff),
    (0x1c, 0x0000_ffff),
    (0x20, u32::MAX),
    (0x24, u32::MAX),
    (0x28, u32::MAX),
    (0x2c, u32::MAX),
];
/// The I/O window's upper halves.
const BRIDGE_IO_UPPER: u8 = 0x30;
/// A bridge's window registers: the I/O window (and its upper halves), the memory window, the
/// prefetchable window and its upper halves.
const BRIDGE_IO_WINDOW: u8 = 0x1c;
const BRIDGE_MEMORY_WINDOW: u8 = 0x20;
const BRIDGE_PREFETCHABLE_WINDOW: u8 = 0x24;
const BRIDGE_PREFETCHABLE_BASE_UPPER: u8 = 0x28;
const BRIDGE_PREFETCHABLE_LIMIT_UPPER: u8 = 0x2c;
const BRIDGE_WINDOW_REGISTERS: [u8; 6] = [
    BRIDGE_IO_WINDOW,
    BRIDGE_MEMORY_WINDOW,
    BRIDGE_PREFETCHABLE_WINDOW,
    BRIDGE_PREFETCHABLE_BASE_UPPER,
    BRIDGE_PREFETCHABLE_LIMIT_UPPER,
    BRIDGE_IO_UPPER,
];

/// Command register bits.
const IO_DECODE: u32 = 1 << 0;
const MEMORY_DECODE: u32 = 1 << 1;
/// Status register bit: the capability list exists.
pub(crate) const HAS_CAPABILITIES: u32 = 1 << 20;
/// The MSI capability's ID.
pub(crate) const MSI_CAPABILITY: u32 = 0x05;
/// MSI message control: enable (bit 16 of the capability's first dword), 64-bit addresses
/// (bit 23).
const MSI_ENABLE: u32 = 1 << 16;
const MSI_64BIT: u32 = 1 << 23;
/// The expansion ROM's enable bit and address bits.
const ROM_ENABLE: u32 = 1;
const ROM_ADDRESS: u32 = 0xffff_f800;

/// BARs a function can have: six, and its expansion ROM.
pub const MAX_BARS: usize = 7;

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// Memory below 4 GiB.
    Memory32,
    /// Memory anywhere: this register and the next hold the address.
    Memory64,
    /// The expansion ROM (memory, with its own enable bit).
    Rom,
}

impl BarKind {
    /// The address bits of the register's low dword.
    const fn address_mask(self) -> u32 {
        match self {
            Self::Io => 0xffff_fffc,
            Self::Memory32 | Self::Memory64 => 0xffff_fff0,
            Self::Rom => ROM_ADDRESS,
        }
    }

    /// The command register bit that turns decoding of this kind on.
    const fn decode_bit(self) -> u32 {
        match self {
            Self::Io => IO_DECODE,
            _ => MEMORY_DECODE,
        }
    }
}

impl fmt::Display for BarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Io => "I/O",
            Self::Memory32 => "32-bit memory",
            Self::Memory64 => "64-bit memory",
            Self::Rom => "expansion ROM",
        })
    }
}

/// One BAR as probed before Linux ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Its register (the low dword of a 64-bit BAR).
    pub register: u8,
    pub kind: BarKind,
    /// Bytes (or ports) it decodes, a power of two.
    pub size: u64,
    /// Its address at boot (where the firmware put it).
    pub boot_base: u64,
}

impl Bar {
    /// Whether the dword at `register` is part of this BAR.
    const fn holds(&self, register: u8) -> bool {
        register == self.register
            || (matches!(self.kind, BarKind::Memory64) && register == self.register + 4)
    }

    /// The address the BAR decodes at given its low and high dwords (the hardware ignores
    /// the address bits below the size).
    fn base(&self, low: u32, high: u32) -> u64 {
        let low = u64::from(low & self.kind.address_mask());
        let base = match self.kind {
            BarKind::Memory64 => u64::from(high) << 32 | low,
            BarKind::Io => low & 0xffff,
            _ => low,
        };
        base & !(self.size.max(1) - 1)
    }
}

/// A function's MSI capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msi {
    /// Offset of the capability.
    pub capability: u8,
    /// Whether its address has an upper dword.
    pub is_64: bool,
}

impl Msi {
    const fn address(&self) -> u8 {
        self.capability + 4
    }

    const fn address_high(&self) -> Option<u8> {
        if self.is_64 {
            Some(self.capability + 8)
        } else {
            None
        }
    }

    const fn data(&self) -> u8 {
        if self.is_64 {
            self.capability + 12
        } else {
            self.capability + 8
        }
    }
}

/// What Linux owns: where its functions may decode and whom they may interrupt.
#[derive(Debug, Clone, Copy)]
pub struct LinuxReach<'a> {
    /// Linux's I/O ports (as ranges of port numbers).
    pub ports: &'a [Region],
    /// Memory no BAR of Linux's may overlap: RAM, the RT partition's device windows, the
    /// register pages the hypervisor keeps.
    pub off_limits: &'a [Region],
    /// Linux's CPUs (x2APIC IDs).
    pub cpus: &'a [u32],
}

impl LinuxReach<'_> {
    /// Whether `kind`'s range `base..base + size` lies in what Linux owns.
    fn owns(&self, kind: BarKind, base: u64, size: u64) -> bool {
        if base.checked_add(size).is_none() {
            return false;
        }
        let wanted = Region::new(base, size);
        match kind {
            BarKind::Io => covered(self.ports, wanted),
            _ => !self.off_limits.iter().any(|r| r.overlaps(&wanted)),
        }
    }

    /// Whether an MSI address is refused: it is neither 0 (disarmed) nor one of Linux's CPUs.
    fn msi_address_refused(&self, address: u64) -> bool {
        const FEE: u64 = 0xfee;
        const DESTINATION_LOGICAL: u64 = 1 << 2;
        const EXTENDED_DESTINATION: u64 = 0x7f << 5;
        if address == 0 {
            return false;
        }
        let destination = ((address >> 12) & 0xff) as u32;
        address >> 20 != FEE
            || address & (DESTINATION_LOGICAL | EXTENDED_DESTINATION) != 0
            || !self.cpus.contains(&destination)
    }
}

/// Whether `regions` together cover all of `wanted`.
fn covered(regions: &[Region], wanted: Region) -> bool {
    let mut at = wanted.base;
    while at < wanted.end() {
        match regions.iter().find(|r| r.contains(at)) {
            Some(r) => at = r.end(),
            None => return false,
        }
    }
    true
}

/// Why a configuration write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A BAR would have decoded outside what Linux owns.
    Bar {
        register: u8,
        kind: BarKind,
        base: u64,
        size: u64,
    },
    /// Decoding would have been turned on while a BAR is outside what Linux owns.
    Decode {
        register: u8,
        kind: BarKind,
        base: u64,
        size: u64,
    },
    /// A bridge with an RT function behind it would have changed how it routes to it.
    BridgeRouting { register: u8 },
    /// A bridge would have forwarded a window outside what Linux owns.
    BridgeWindow { window: Window, base: u64, end: u64 },
    /// An MSI address (both halves) naming no CPU of Linux's.
    MsiAddress { address: u64 },
    /// MSI data asking for a delivery mode other than fixed or lowest priority.
    MsiDelivery { mode: u8 },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Bar {
                register,
                kind,
                base,
                size,
            } => write!(
                f,
                "{kind} BAR at {register:#x} moved to {base:#x}..{:#x}, outside what Linux owns",
                base.saturating_add(size)
            ),
            Self::Decode {
                register,
                kind,
                base,
                size,
            } => write!(
                f,
                "decoding turned on while the {kind} BAR at {register:#x} is at {base:#x}..{:#x}, outside what Linux owns",
                base.saturating_add(size)
            ),
            Self::BridgeRouting { register } => write!(
                f,
                "bridge register {register:#x} routes to a function of the RT partition's behind it"
            ),
            Self::BridgeWindow { window, base, end } => write!(
                f,
                "bridge {window} window {base:#x}..{end:#x} would forward outside what Linux owns"
            ),
            Self::MsiAddress { address } => {
                write!(f, "MSI address {address:#x} names no CPU of Linux's")
            }
            Self::MsiDelivery { mode } => write!(
                f,
                "MSI delivery mode {mode:#05b} (only fixed and lowest priority are allowed)"
            ),
        }
    }
}

/// Configuration space accesses, by dword (the probe's and the check's view of the function).
pub trait ConfigSpace {
    /// The dword at `offset` (a multiple of 4).
    fn read(&mut self, offset: u8) -> u32;
    /// Writes the dword at `offset` (a multiple of 4).
    fn write(&mut self, offset: u8, value: u32);
}

/// A function Linux owns: where it stood before Linux ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedFunction {
    pub bdf: PciBdf,
    bars: [Option<Bar>; MAX_BARS],
    msi: Option<Msi>,
    /// For a PCI-to-PCI bridge: its secondary and subordinate bus numbers at boot.
    buses: Option<(u8, u8)>,
    /// A function of the RT partition's sits behind this bridge.
    guards_rt: bool,
    /// For a PCI-to-PCI bridge: its windows at boot, where the firmware put them.
    boot_windows: Option<Windows>,
}

impl OwnedFunction {
    /// Probes the function at `bdf` through `space`: every BAR's kind, size and address
    /// (with the function's decoding off meanwhile, restored after), the MSI capability.
    /// An absent function (vendor ID all ones) has nothing.
    pub fn probe(bdf: PciBdf, space: &mut impl ConfigSpace) -> Self {
        let mut f = Self {
            bdf,
            bars: [None; MAX_BARS],
            msi: None,
            buses: None,
            guards_rt: false,
            boot_windows: None,
        };
        if space.read(0) & 0xffff == 0xffff {
            return f;
        }
        let (bar_count, rom) = match (space.read(reg::HEADER) >> 16) & 0x7f {
            0 => (6, Some(reg::ROM)),
            1 => {
                let buses = space.read(reg::BRIDGE_BUSES);
                f.buses = Some(((buses >> 8) as u8, (buses >> 16) as u8));
                f.boot_windows = Some(Windows::read(|register| space.read(register)));
                (2, Some(reg::BRIDGE_ROM))
            }
            _ => (0, None),
        };
        let command = space.read(reg::COMMAND);
        space.write(
            reg::COMMAND,
            command & !(IO_DECODE | MEMORY_DECODE) & 0xffff,
        );
        let mut slot = 0;
        let mut i = 0;
        while i < bar_count {
            let register = reg::BAR0 + 4 * i;
            let bar = probe_bar(space, register);
            i += if bar.is_some_and(|b| b.kind == BarKind::Memory64) {
                2
            } else {
                1
            };
            if let Some(bar) = bar {
                f.bars[slot] = Some(bar);
                slot += 1;
            }
        }
        if let Some(register) = rom {
            f.bars[slot] = probe_rom(space, register);
        }
        space.write(reg::COMMAND, command & 0xffff);
        if command & HAS_CAPABILITIES != 0 {
            f.msi = find_msi(space);
        }
        f
    }

    /// Marks a bridge that has one of `rt_functions` behind it (on a bus from its secondary to
    /// its subordinate bus number at boot): from now on its routing may not change. Returns
    /// whether it has; a function that is not a bridge never has.
    pub fn guard_rt_behind(&mut self, rt_functions: &[PciBdf]) -> bool {
        self.guards_rt = self.buses.is_some_and(|(secondary, subordinate)| {
            rt_functions
                .iter()
                .any(|f| (secondary..=subordinate).contains(&f.bus()))
        });
        self.guards_rt
    }

    /// The BARs found.
    pub fn bars(&self) -> impl Iterator<Item = &Bar> {
        self.bars.iter().flatten()
    }

    /// The MSI capability, if any.
    pub fn msi(&self) -> Option<Msi> {
        self.msi
    }

    /// Whether Linux's write of `value` (`width` bytes at `offset`) may reach the function;
    /// `space` reads the registers' current values.
    pub fn check_write(
        &self,
        reach: &LinuxReach<'_>,
        offset: u8,
        width: u8,
        value: u32,
        space: &mut impl ConfigSpace,
    ) -> Result<(), Refused> {
        let register = offset & !3;
        let current = space.read(register);
        let merged = merge(current, offset & 3, width, value);
        if self.guards_rt {
            check_bridge_routing(register, current, merged)?;
        }
        if let Some(boot) = self.boot_windows
            && (register == reg::COMMAND || BRIDGE_WINDOW_REGISTERS.contains(&register))
        {
            let mut read = |at: u8| {
                if at == register {
                    merged
                } else {
                    space.read(at)
                }
            };
            let command = read(reg::COMMAND);
            check_bridge_windows(reach, &boot, &Windows::read(&mut read), command)?;
        }
        if register == reg::COMMAND {
            return self.check_command(reach, merged, space);
        }
        if let Some(bar) = self.bars().find(|b| b.holds(register)) {
            return self.check_bar(reach, bar, register, merged, space);
        }
        if let Some(msi) = self.msi {
            return check_msi(reach, msi, register, merged, space);
        }
        Ok(())
    }

    /// A command register write: decoding of a kind turns on only with its BARs in place.
    fn check_command(
        &self,
        reach: &LinuxReach<'_>,
        command: u32,
        space: &mut impl ConfigSpace,
    ) -> Result<(), Refused> {
        for bar in self.bars() {
            if command & bar.kind.decode_bit() == 0 {
                continue;
            }
            let (low, high) = bar_dwords(bar, space);
            if bar.kind == BarKind::Rom && low & ROM_ENABLE == 0 {
                continue;
            }
            let base = bar.base(low, high);
            if !placed(reach, bar, base) {
                return Err(Refused::Decode {
                    register: bar.register,
                    kind: bar.kind,
                    base,
                    size: bar.size,
                });
            }
        }
        Ok(())
    }

    /// A write into `bar` leaving its dword at `register` as `merged`.
    fn check_bar(
        &self,
        reach: &LinuxReach<'_>,
        bar: &Bar,
        register: u8,
        merged: u32,
        space: &mut impl ConfigSpace,
    ) -> Result<(), Refused> {
        // The dword written is `merged`; only the other half of a 64-bit BAR is read.
        let (low, high) = if register == bar.register {
            let high = if bar.kind == BarKind::Memory64 {
                space.read(bar.register + 4)
            } else {
                0
            };
            (merged, high)
        } else {
            (space.read(bar.register), merged)
        };
        let base = bar.base(low, high);
        if placed(reach, bar, base) {
            return Ok(());
        }
        // The sizing pattern in the dword written, with decoding of its kind off.
        let mask = if register == bar.register {
            bar.kind.address_mask()
        } else {
            u32::MAX
        };
        let command = space.read(reg::COMMAND);
        let decodes = command & bar.kind.decode_bit() != 0
            && (bar.kind != BarKind::Rom || low & ROM_ENABLE != 0);
        if merged & mask == mask && !decodes {
            return Ok(());
        }
        Err(Refused::Bar {
            register: bar.register,
            kind: bar.kind,
            base,
            size: bar.size,
        })
    }
}

/// A write to a bridge with an RT function behind it, leaving `register` (now `current`) as
/// `merged`: refused when it changes a routing bit, turns forwarding off or on, or resets the
/// secondary bus.
fn check_bridge_routing(register: u8, current: u32, merged: u32) -> Result<(), Refused> {
    let routing = match register {
        reg::COMMAND => BRIDGE_FORWARDING,
        BRIDGE_IO_UPPER => u32::MAX,
        r => BRIDGE_ROUTING
            .iter()
            .find(|(at, _)| *at == r)
            .map_or(0, |(_, mask)| *mask),
    };
    let resets = register == reg::BRIDGE_CONTROL && merged & SECONDARY_BUS_RESET != 0;
    if (current ^ merged) & routing != 0 || resets {
        return Err(Refused::BridgeRouting { register });
    }
    Ok(())
}

/// A bridge's forwarding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Io,
    Memory,
    Prefetchable,
}

impl Window {
    /// The command register bit that turns its forwarding on.
    const fn forwarding_bit(self) -> u32 {
        match self {
            Self::Io => IO_DECODE,
            Self::Memory | Self::Prefetchable => MEMORY_DECODE,
        }
    }

    /// The BAR kind whose placement rule applies to it.
    const fn placed_like(self) -> BarKind {
        match self {
            Self::Io => BarKind::Io,
            Self::Memory => BarKind::Memory32,
            Self::Prefetchable => BarKind::Memory64,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Io => "I/O",
            Self::Memory => "memory",
            Self::Prefetchable => "prefetchable memory",
        })
    }
}

/// A bridge's three windows as its registers set them: `(base, end)` (end exclusive) when
/// open, `None` when closed (base above limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Windows([(Window, Option<(u64, u64)>); 3]);

impl Windows {
    /// The windows from the bridge's registers (`read` gives a dword).
    fn read(mut read: impl FnMut(u8) -> u32) -> Self {
        let open = |base: u64, limit: u64| (base <= limit).then(|| (base, limit + 1));
        let io = read(BRIDGE_IO_WINDOW);
        // The low nibble of the base says whether the upper halves exist (32-bit I/O).
        let io_upper = if io & 0xf == 1 {
            read(BRIDGE_IO_UPPER)
        } else {
            0
        };
        let io_base = u64::from(io & 0xf0) << 8 | u64::from(io_upper & 0xffff) << 16;
        let io_limit = u64::from(io & 0xf000) | 0xfff | u64::from(io_upper >> 16) << 16;
        let memory = read(BRIDGE_MEMORY_WINDOW);
        let memory_base = u64::from(memory & 0xfff0) << 16;
        let memory_limit = u64::from(memory >> 16 & 0xfff0) << 16 | 0xf_ffff;
        let prefetchable = read(BRIDGE_PREFETCHABLE_WINDOW);
        // The low nibble of the base says whether the upper halves exist (64-bit).
        let (base_upper, limit_upper) = if prefetchable & 0xf == 1 {
            (
                read(BRIDGE_PREFETCHABLE_BASE_UPPER),
                read(BRIDGE_PREFETCHABLE_LIMIT_UPPER),
            )
        } else {
            (0, 0)
        };
        let prefetchable_base =
            u64::from(prefetchable & 0xfff0) << 16 | u64::from(base_upper) << 32;
        let prefetchable_limit =
            u64::from(prefetchable >> 16 & 0xfff0) << 16 | 0xf_ffff | u64::from(limit_upper) << 32;
        Self([
            (Window::Io, open(io_base, io_limit)),
            (Window::Memory, open(memory_base, memory_limit)),
            (
                Window::Prefetchable,
                open(prefetchable_base, prefetchable_limit),
            ),
        ])
    }
}

/// A write leaving a bridge with `windows` and `command`: every open window the bridge
/// forwards is inside what Linux owns, or is the window the firmware set (`boot`).
fn check_bridge_windows(
    reach: &LinuxReach<'_>,
    boot: &Windows,
    windows: &Windows,
    command: u32,
) -> Result<(), Refused> {
    for (&(window, range), &(_, boot_range)) in windows.0.iter().zip(&boot.0) {
        let Some((base, end)) = range else {
            continue;
        };
        if command & window.forwarding_bit() == 0 || range == boot_range {
            continue;
        }
        if !reach.owns(window.placed_like(), base, end - base) {
            return Err(Refused::BridgeWindow { window, base, end });
        }
    }
    Ok(())
}

/// Whether `bar` at `base` is where Linux may have it: inside what it owns, or where the
/// firmware put it.
fn placed(reach: &LinuxReach<'_>, bar: &Bar, base: u64) -> bool {
    base == bar.boot_base || reach.owns(bar.kind, base, bar.size)
}

/// The BAR's low and high dwords now (high 0 unless 64-bit).
fn bar_dwords(bar: &Bar, space: &mut impl ConfigSpace) -> (u32, u32) {
    let low = space.read(bar.register);
    let high = if bar.kind == BarKind::Memory64 {
        space.read(bar.register + 4)
    } else {
        0
    };
    (low, high)
}

/// A write into the MSI capability leaving the dword at `register` as `merged`.
fn check_msi(
    reach: &LinuxReach<'_>,
    msi: Msi,
    register: u8,
    merged: u32,
    space: &mut impl ConfigSpace,
) -> Result<(), Refused> {
    let address = |space: &mut _, low: Option<u32>, high: Option<u32>| {
        let low = low.unwrap_or_else(|| ConfigSpace::read(space, msi.address()));
        let high = match msi.address_high() {
            Some(r) => high.unwrap_or_else(|| ConfigSpace::read(space, r)),
            None => 0,
        };
        u64::from(high) << 32 | u64::from(low)
    };
    let check_address = |address: u64| {
        if reach.msi_address_refused(address) {
            Err(Refused::MsiAddress { address })
        } else {
            Ok(())
        }
    };
    let check_data = |data: u32| {
        let mode = ((data >> 8) & 7) as u8;
        if mode > 1 {
            Err(Refused::MsiDelivery { mode })
        } else {
            Ok(())
        }
    };
    if register == msi.capability {
        if merged & MSI_ENABLE != 0 {
            check_address(address(space, None, None))?;
            check_data(space.read(msi.data()))?;
        }
        return Ok(());
    }
    if register == msi.address() {
        return check_address(address(space, Some(merged), None));
    }
    if Some(register) == msi.address_high() {
        return check_address(address(space, None, Some(merged)));
    }
    if register == msi.data() {
        return check_data(merged);
    }
    Ok(())
}

/// The dword `current` after writing `value` (`width` bytes) at byte `at` of it.
fn merge(current: u32, at: u8, width: u8, value: u32) -> u32 {
    let bits = 8 * u32::from(width.clamp(1, 4));
    let mask = if bits == 32 {
        u32::MAX
    } else {
        (1 << bits) - 1
    };
    let shift = 8 * u32::from(at & 3);
    (current & !(mask << shift)) | ((value & mask) << shift)
}

/// The BAR at `register`: its kind, size and address; `None` if not implemented.
fn probe_bar(space: &mut impl ConfigSpace, register: u8) -> Option<Bar> {
    let original = space.read(register);
    let kind = match (original & 1 != 0, (original >> 1) & 3 == 2) {
        (true, _) => BarKind::Io,
        (false, true) => BarKind::Memory64,
        (false, false) => BarKind::Memory32,
    };
    let is_64 = kind == BarKind::Memory64;
    let original_high = if is_64 { space.read(register + 4) } else { 0 };
    space.write(register, u32::MAX);
    let sized = space.read(register) & kind.address_mask();
    space.write(register, original);
    let sized_high = if is_64 {
        space.write(register + 4, u32::MAX);
        let h = space.read(register + 4);
        space.write(register + 4, original_high);
        h
    } else {
        0
    };
    if sized == 0 && sized_high == 0 {
        return None;
    }
    // The bits that stayed clear are the size's; above what the kind can hold count as set.
    let mask = match kind {
        BarKind::Io => u64::from(sized) | 0xffff_ffff_ffff_0000,
        BarKind::Memory64 => u64::from(sized_high) << 32 | u64::from(sized),
        _ => u64::from(sized) | 0xffff_ffff_0000_0000,
    };
    let size = (!mask).wrapping_add(1);
    if size == 0 || !size.is_power_of_two() {
        return None;
    }
    let bar = Bar {
        register,
        kind,
        size,
        boot_base: 0,
    };
    Some(Bar {
        boot_base: bar.base(original, original_high),
        ..bar
    })
}

/// The expansion ROM BAR at `register`, if implemented.
fn probe_rom(space: &mut impl ConfigSpace, register: u8) -> Option<Bar> {
    let original = space.read(register);
    space.write(register, ROM_ADDRESS);
    let sized = space.read(register) & ROM_ADDRESS;
    space.write(register, original);
    let mask = u64::from(sized) | 0xffff_ffff_0000_0000;
    let size = (!mask).wrapping_add(1);
    (sized != 0 && size.is_power_of_two()).then_some(Bar {
        register,
        kind: BarKind::Rom,
        size,
        boot_base: u64::from(original & ROM_ADDRESS),
    })
}

/// The MSI capability, walking at most 48 entries of the list.
fn find_msi(space: &mut impl ConfigSpace) -> Option<Msi> {
    find_capability(space, MSI_CAPABILITY).map(|(at, header)| Msi {
        capability: at,
        is_64: header & MSI_64BIT != 0,
    })
}

/// The first capability with ID `id` in the function's list (whose status bit the caller
/// checked): its offset and its first dword. The walk is bounded (48 entries fill the 192
/// bytes after the header), so a list that loops ends.
pub(crate) fn find_capability(space: &mut impl ConfigSpace, id: u32) -> Option<(u8, u32)> {
    let mut at = (space.read(reg::CAPABILITIES) & 0xfc) as u8;
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        let header = space.read(at);
        if header & 0xff == id {
            return Some((at, header));
        }
        at = ((header >> 8) & 0xfc) as u8;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;
    use std::string::ToString;
    use std::vec::Vec;

    use super::*;

    /// A function's configuration space with BARs that keep only their writable bits, as the
    /// hardware does (a model of the register semantics the probe relies on; the RT
    /// functions' tests use it too).
    pub(crate) struct Function {
        pub(crate) dwords: [u32; 64],
        /// Writable address bits of each register (0 = read-only).
        pub(crate) writable: [u32; 64],
        pub(crate) writes: Vec<(u8, u32)>,
    }

    impl Function {
        /// A function whose every register reads 0 and none is writable.
        pub(crate) fn blank() -> Self {
            Self {
                dwords: [0; 64],
                writable: [0; 64],
                writes: Vec::new(),
            }
        }
    }

    impl ConfigSpace for Function {
        fn read(&mut self, offset: u8) -> u32 {
            self.dwords[usize::from(offset / 4)]
        }
        fn write(&mut self, offset: u8, value: u32) {
            let i = usize::from(offset / 4);
            let w = self.writable[i];
            self.dwords[i] = (self.dwords[i] & !w) | (value & w);
            self.writes.push((offset, value));
        }
    }

    const IO_BAR: u8 = 0x20;
    const MEM_BAR: u8 = 0x10;
    const MEM64_BAR: u8 = 0x14;
    const MSI_AT: u8 = 0x50;

    /// An IDE-like function: a 16-port I/O BAR at 0xc000 (BAR4), a 4 KiB memory BAR at
    /// 0xfebf0000 (BAR0), a 64-bit 1 MiB BAR at 0x8_0000_0000 (BAR1/2), a 64 KiB ROM, and a
    /// 64-bit MSI capability.
    fn function() -> Function {
        let mut f = Function::blank();
        f.dwords[0] = 0x7010_8086;
        f.dwords[1] = HAS_CAPABILITIES | IO_DECODE | MEMORY_DECODE;
        f.writable[1] = 0xffff;
        f.dwords[3] = 0;
        f.dwords[usize::from(IO_BAR / 4)] = 0xc001;
        f.writable[usize::from(IO_BAR / 4)] = 0xffff_fff0;
        f.dwords[usize::from(MEM_BAR / 4)] = 0xfebf_0000;
        f.writable[usize::from(MEM_BAR / 4)] = 0xffff_f000;
        f.dwords[usize::from(MEM64_BAR / 4)] = 0x4; // 64-bit, low address 0
        f.writable[usize::from(MEM64_BAR / 4)] = 0xfff0_0000;
        f.dwords[usize::from(MEM64_BAR / 4) + 1] = 0x8;
        f.writable[usize::from(MEM64_BAR / 4) + 1] = u32::MAX;
        f.dwords[usize::from(reg::ROM / 4)] = 0xfeb0_0000;
        f.writable[usize::from(reg::ROM / 4)] = 0xffff_0001;
        f.dwords[usize::from(reg::CAPABILITIES / 4)] = 0x40;
        f.dwords[0x40 / 4] = u32::from(MSI_AT) << 8 | 0x01; // power management, then MSI
        f.dwords[usize::from(MSI_AT / 4)] = MSI_64BIT | MSI_CAPABILITY;
        for r in [MSI_AT, MSI_AT + 4, MSI_AT + 8, MSI_AT + 12] {
            f.writable[usize::from(r / 4)] = u32::MAX;
        }
        f
    }

    const PORTS: [Region; 2] = [Region::new(0x1f0, 8), Region::new(0xc000, 0x100)];
    const OFF_LIMITS: [Region; 4] = [
        Region::new(0, 0x8000_0000),         // RAM
        Region::new(0xfec0_0000, 0x1000),    // an IOAPIC
        Region::new(0xc000_0000, 0x10_0000), // an RT device window
        Region::new(0xffff_0000, 0x1_0000),  // where the sizing pattern of a 32-bit BAR lands
    ];
    const CPUS: [u32; 2] = [0, 1];

    fn reach() -> LinuxReach<'static> {
        LinuxReach {
            ports: &PORTS,
            off_limits: &OFF_LIMITS,
            cpus: &CPUS,
        }
    }

    fn bdf() -> PciBdf {
        PciBdf::new(0, 1, 1).unwrap()
    }

    fn check(f: &mut Function, offset: u8, width: u8, value: u32) -> Result<(), Refused> {
        let owned = OwnedFunction::probe(bdf(), f);
        owned.check_write(&reach(), offset, width, value, f)
    }

    #[test]
    fn probe_finds_every_bar_and_msi_and_restores_the_function() {
        let mut f = function();
        let before = f.dwords;
        let owned = OwnedFunction::probe(bdf(), &mut f);
        let bars: Vec<_> = owned.bars().copied().collect();
        assert_eq!(
            bars,
            [
                Bar {
                    register: MEM_BAR,
                    kind: BarKind::Memory32,
                    size: 0x1000,
                    boot_base: 0xfebf_0000
                },
                Bar {
                    register: MEM64_BAR,
                    kind: BarKind::Memory64,
                    size: 0x10_0000,
                    boot_base: 0x8_0000_0000
                },
                Bar {
                    register: IO_BAR,
                    kind: BarKind::Io,
                    size: 16,
                    boot_base: 0xc000
                },
                Bar {
                    register: reg::ROM,
                    kind: BarKind::Rom,
                    size: 0x1_0000,
                    boot_base: 0xfeb0_0000
                },
            ]
        );
        assert_eq!(
            owned.msi(),
            Some(Msi {
                capability: MSI_AT,
                is_64: true
            })
        );
        assert_eq!(f.dwords, before, "the probe left the function as it was");
        // Decoding was off while the BARs held the sizing pattern.
        let off_at = f
            .writes
            .iter()
            .position(|&(o, _)| o == reg::COMMAND)
            .unwrap();
        let on_at = f
            .writes
            .iter()
            .rposition(|&(o, _)| o == reg::COMMAND)
            .unwrap();
        assert!(f.writes[off_at].1 & (IO_DECODE | MEMORY_DECODE) == 0);
        assert!(
            f.writes[off_at + 1..on_at]
                .iter()
                .all(|&(o, _)| o != reg::COMMAND)
        );
    }

    #[test]
    fn an_absent_function_has_nothing() {
        let mut f = function();
        f.dwords[0] = u32::MAX;
        let owned = OwnedFunction::probe(bdf(), &mut f);
        assert_eq!(owned.bars().count(), 0);
        assert_eq!(owned.msi(), None);
        assert!(
            owned
                .check_write(&reach(), IO_BAR, 4, 0x3f9, &mut f)
                .is_ok()
        );
    }

    #[test]
    fn an_io_bar_stays_in_linux_ports_or_where_the_firmware_put_it() {
        let mut f = function();
        // Over the hypervisor's console UART (0x3f8): refused, named.
        let refused = check(&mut f, IO_BAR, 4, 0x3f9).unwrap_err();
        assert_eq!(
            refused,
            Refused::Bar {
                register: IO_BAR,
                kind: BarKind::Io,
                base: 0x3f0,
                size: 16
            }
        );
        assert_eq!(
            refused.to_string(),
            "I/O BAR at 0x20 moved to 0x3f0..0x400, outside what Linux owns"
        );
        // The last 16 of Linux's ports: allowed; a range half in Linux's ports: refused.
        assert!(
            check(&mut f, IO_BAR, 4, 0xc0f1).is_ok(),
            "0xc0f0..0xc100 is Linux's"
        );
        assert!(
            check(&mut f, IO_BAR, 4, 0x1f1).is_err(),
            "0x1f0..0x200 is half Linux's"
        );
        // Address bits below the size are ignored, as the hardware does: 0xc0f8 is 0xc0f0.
        assert!(check(&mut f, IO_BAR, 4, 0xc0f9).is_ok());
        // Inside Linux's ports, or back to the boot value: allowed.
        assert!(check(&mut f, IO_BAR, 4, 0xc041).is_ok());
        assert!(check(&mut f, IO_BAR, 4, 0xc001).is_ok());
        // A byte write is judged by the register it leaves: 0xc001 -> 0x0301.
        assert!(check(&mut f, IO_BAR + 1, 1, 0x03).is_err());
    }

    #[test]
    fn the_sizing_pattern_is_allowed_only_with_decoding_off() {
        let mut f = function();
        assert!(
            check(&mut f, IO_BAR, 4, u32::MAX).is_err(),
            "I/O decoding is on"
        );
        f.dwords[1] &= !IO_DECODE;
        assert!(check(&mut f, IO_BAR, 4, u32::MAX).is_ok());
        // Memory decoding is still on.
        assert!(check(&mut f, MEM_BAR, 4, u32::MAX).is_err());
        f.dwords[1] &= !MEMORY_DECODE;
        assert!(check(&mut f, MEM_BAR, 4, u32::MAX).is_ok());
        assert!(check(&mut f, MEM64_BAR + 4, 4, u32::MAX).is_ok());
        // The ROM's pattern keeps its enable bit clear.
        assert!(check(&mut f, reg::ROM, 4, ROM_ADDRESS).is_ok());
    }

    #[test]
    fn decoding_turns_on_only_with_every_bar_in_place() {
        let mut f = function();
        let owned = OwnedFunction::probe(bdf(), &mut f);
        f.dwords[1] &= !(IO_DECODE | MEMORY_DECODE);
        // The sizing pattern left in the I/O BAR (it reads back as 0xfff1).
        f.write(IO_BAR, u32::MAX);
        let r = owned.check_write(&reach(), reg::COMMAND, 2, IO_DECODE, &mut f);
        assert_eq!(
            r,
            Err(Refused::Decode {
                register: IO_BAR,
                kind: BarKind::Io,
                base: 0xfff0,
                size: 16
            })
        );
        // Memory decoding does not care about the I/O BAR.
        assert!(
            owned
                .check_write(&reach(), reg::COMMAND, 2, MEMORY_DECODE, &mut f)
                .is_ok()
        );
        f.write(IO_BAR, 0xc001);
        assert!(
            owned
                .check_write(&reach(), reg::COMMAND, 2, IO_DECODE | MEMORY_DECODE, &mut f)
                .is_ok()
        );
        // An enabled ROM over RAM stops memory decoding; a disabled one does not.
        f.write(reg::ROM, 0x0001_0000);
        assert!(
            owned
                .check_write(&reach(), reg::COMMAND, 2, MEMORY_DECODE, &mut f)
                .is_ok()
        );
        f.write(reg::ROM, 0x0001_0001);
        assert!(
            owned
                .check_write(&reach(), reg::COMMAND, 2, MEMORY_DECODE, &mut f)
                .is_err()
        );
    }

    #[test]
    fn a_memory_bar_keeps_off_ram_device_windows_and_kept_registers() {
        let mut f = function();
        assert!(check(&mut f, MEM_BAR, 4, 0x3000_0000).is_err(), "RAM");
        assert!(
            check(&mut f, MEM_BAR, 4, 0xfec0_0000).is_err(),
            "the IOAPIC"
        );
        assert!(
            check(&mut f, MEM_BAR, 4, 0xc00f_f000).is_err(),
            "the RT window"
        );
        assert!(
            check(&mut f, MEM_BAR, 4, 0xd000_0000).is_ok(),
            "free MMIO space"
        );
        // A 64-bit BAR, judged by both halves: its high half 0 puts it at 0, in RAM.
        assert!(check(&mut f, MEM64_BAR + 4, 4, 0).is_err(), "0x0 is RAM");
        assert!(check(&mut f, MEM64_BAR + 4, 4, 0x10).is_ok());
        assert!(check(&mut f, MEM64_BAR, 4, 0x4010_0004).is_ok());
    }

    /// A PCIe root port: buses 3 to 4 behind it, a memory window 0xfe00_0000..0xfe1f_ffff, an
    /// I/O window 0x1000..0x1fff, forwarding on.
    fn bridge() -> Function {
        let mut f = Function {
            dwords: [0; 64],
            writable: [u32::MAX; 64],
            writes: Vec::new(),
        };
        f.dwords[0] = 0xa338_8086;
        f.dwords[1] = IO_DECODE | MEMORY_DECODE | BUS_MASTER;
        f.dwords[3] = 1 << 16; // header type 1
        f.writable[3] = 0;
        f.writable[usize::from(reg::BAR0 / 4)] = 0;
        f.writable[usize::from(reg::BAR0 / 4) + 1] = 0;
        f.writable[usize::from(reg::BRIDGE_ROM / 4)] = 0;
        f.dwords[usize::from(reg::BRIDGE_BUSES / 4)] = 0x0004_0300;
        f.dwords[0x1c / 4] = 0x1010;
        f.dwords[0x20 / 4] = 0xfe10_fe00;
        f
    }

    #[test]
    fn a_bridge_in_front_of_an_rt_function_keeps_its_routing() {
        let rt_device = PciBdf::new(3, 0, 0).unwrap();
        let elsewhere = PciBdf::new(5, 0, 0).unwrap();
        let mut space = bridge();
        let mut f = OwnedFunction::probe(PciBdf::new(0, 0x1c, 0).unwrap(), &mut space);
        assert!(!f.guard_rt_behind(&[elsewhere]));
        // Nothing of the RT partition's behind it: Linux may re-route it.
        assert_eq!(check_on(&f, &mut space, 0x20, 4, 0xfe30_fe20), Ok(()));
        assert!(f.guard_rt_behind(&[elsewhere, rt_device]));
        let refused = |register| Err(Refused::BridgeRouting { register });
        for (offset, width, value, register) in [
            (0x20, 4, 0xfe30_fe20, 0x20),               // the memory window moved
            (0x22, 2, 0x0000, 0x20),                    // its limit alone, by a word write
            (0x19, 1, 0x07, 0x18),                      // the secondary bus renumbered
            (0x1c, 1, 0xf0, 0x1c),                      // the I/O window's base
            (0x24, 4, 0x0001_fff1, 0x24),               // a prefetchable window opened
            (0x04, 2, IO_DECODE | BUS_MASTER, 0x04),    // memory forwarding turned off
            (0x04, 2, IO_DECODE | MEMORY_DECODE, 0x04), // bus mastering (the device's DMA) off
            (0x3e, 1, 0x40, 0x3c),                      // the secondary bus reset
        ] {
            assert_eq!(
                check_on(&f, &mut space, offset, width, value),
                refused(register),
                "write of {value:#x} at {offset:#x}"
            );
        }
        // What does not route still goes through: the latency timer, a status bit cleared,
        // the interrupt line, the same window written again, SERR enabled in the command.
        for (offset, width, value) in [
            (0x1b, 1, 0x40),
            (0x1e, 2, 0x8000),
            (0x3c, 1, 0x0b),
            (0x20, 4, 0xfe10_fe00),
            (0x04, 2, IO_DECODE | MEMORY_DECODE | BUS_MASTER | 1 << 8),
        ] {
            assert_eq!(
                check_on(&f, &mut space, offset, width, value),
                Ok(()),
                "write of {value:#x} at {offset:#x}"
            );
        }
        assert_eq!(
            Refused::BridgeRouting { register: 0x20 }.to_string(),
            "bridge register 0x20 routes to a function of the RT partition's behind it"
        );
        // An ordinary function is never a bridge.
        let mut ide = function();
        let mut ide = OwnedFunction::probe(bdf(), &mut ide);
        assert!(!ide.guard_rt_behind(&[rt_device, PciBdf::new(0, 1, 1).unwrap()]));
    }

    #[test]
    fn a_bridge_forwards_only_windows_linux_owns() {
        let mut space = bridge();
        // The prefetchable window closed by the firmware (base above limit), 64-bit capable.
        space.dwords[0x24 / 4] = 0x0000_fff1;
        let f = OwnedFunction::probe(PciBdf::new(0, 0x1c, 0).unwrap(), &mut space);
        let window = |window, base, end| Err(Refused::BridgeWindow { window, base, end });
        for (offset, width, value, refused) in [
            // The memory window over an RT device's registers, over an IOAPIC's page.
            (
                0x20,
                4,
                0xc000_c000,
                window(Window::Memory, 0xc000_0000, 0xc010_0000),
            ),
            (
                0x20,
                4,
                0xfec0_fec0,
                window(Window::Memory, 0xfec0_0000, 0xfed0_0000),
            ),
            // The I/O window's base lowered to 0: it takes the hypervisor's console ports.
            (0x1c, 1, 0x00, window(Window::Io, 0, 0x2000)),
            // The prefetchable window opened over RAM.
            (
                0x24,
                4,
                0x0010_0001,
                window(Window::Prefetchable, 0, 0x20_0000),
            ),
        ] {
            assert_eq!(
                check_on(&f, &mut space, offset, width, value),
                refused,
                "write of {value:#x} at {offset:#x}"
            );
        }
        // Allowed: elsewhere in memory Linux may use, the firmware's own window again, a
        // window closed, the upper halves of a closed window, secondary status bits.
        for (offset, width, value) in [
            (0x20, 4, 0xfe30_fe20),
            (0x20, 4, 0xfe10_fe00),
            (0x1c, 2, 0x00f0),
            (0x28, 4, 0x8),
            (0x1e, 2, 0x8000),
        ] {
            assert_eq!(
                check_on(&f, &mut space, offset, width, value),
                Ok(()),
                "write of {value:#x} at {offset:#x}"
            );
        }
        // With memory forwarding off, a window may be anything on the way; forwarding turns
        // back on only once it is somewhere Linux owns.
        let io_only = IO_DECODE | BUS_MASTER;
        assert_eq!(check_on(&f, &mut space, 0x04, 2, io_only), Ok(()));
        space.dwords[1] = io_only;
        assert_eq!(check_on(&f, &mut space, 0x20, 4, 0xc000_c000), Ok(()));
        space.dwords[0x20 / 4] = 0xc000_c000;
        assert_eq!(
            check_on(&f, &mut space, 0x04, 2, io_only | MEMORY_DECODE),
            window(Window::Memory, 0xc000_0000, 0xc010_0000)
        );
        space.dwords[0x20 / 4] = 0xfe30_fe20;
        assert_eq!(
            check_on(&f, &mut space, 0x04, 2, io_only | MEMORY_DECODE),
            Ok(())
        );
        assert_eq!(
            Refused::BridgeWindow {
                window: Window::Io,
                base: 0,
                end: 0x2000
            }
            .to_string(),
            "bridge I/O window 0x0..0x2000 would forward outside what Linux owns"
        );
    }

    #[test]
    fn bridge_windows_decode_as_the_bridge_does() {
        let mut dwords = [0u32; 64];
        dwords[0x1c / 4] = 0x2011; // I/O 0x1_1000..0x1_2fff with the upper halves below
        dwords[0x30 / 4] = 0x0001_0001;
        dwords[0x20 / 4] = 0xfe10_fe00;
        dwords[0x24 / 4] = 0x0011_0001; // 64-bit: 0x8_0000_0000..0x9_001f_ffff
        dwords[0x28 / 4] = 0x8;
        dwords[0x2c / 4] = 0x9;
        let windows = Windows::read(|at| dwords[usize::from(at / 4)]);
        assert_eq!(
            windows,
            Windows([
                (Window::Io, Some((0x1_1000, 0x1_3000))),
                (Window::Memory, Some((0xfe00_0000, 0xfe20_0000))),
                (Window::Prefetchable, Some((0x8_0000_0000, 0x9_0020_0000))),
            ])
        );
        // 16-bit I/O ignores the upper halves; 32-bit prefetchable ignores its upper halves.
        dwords[0x1c / 4] = 0x2010;
        dwords[0x24 / 4] = 0x0010_fff0;
        let windows = Windows::read(|at| dwords[usize::from(at / 4)]);
        assert_eq!(windows.0[0], (Window::Io, Some((0x1000, 0x3000))));
        assert_eq!(windows.0[2], (Window::Prefetchable, None));
    }

    fn check_on(
        f: &OwnedFunction,
        space: &mut Function,
        offset: u8,
        width: u8,
        value: u32,
    ) -> Result<(), Refused> {
        f.check_write(&reach(), offset, width, value, space)
    }

    #[test]
    fn msi_goes_only_to_linux_cpus_with_ordinary_delivery() {
        let mut f = function();
        let to_cpu = |apic: u32| 0xfee0_0000 | apic << 12;
        assert!(check(&mut f, MSI_AT + 4, 4, to_cpu(1)).is_ok());
        assert_eq!(
            check(&mut f, MSI_AT + 4, 4, to_cpu(2)),
            Err(Refused::MsiAddress {
                address: 0xfee0_2000
            }),
            "an RT CPU"
        );
        assert!(
            check(&mut f, MSI_AT + 4, 4, to_cpu(1) | 4).is_err(),
            "logical mode"
        );
        assert!(
            check(&mut f, MSI_AT + 4, 4, 0x3000_0000).is_err(),
            "a memory write"
        );
        assert!(check(&mut f, MSI_AT + 4, 4, 0).is_ok(), "disarmed");
        assert!(check(&mut f, MSI_AT + 8, 4, 1).is_err(), "upper half");
        assert!(
            check(&mut f, MSI_AT + 12, 2, 0x0141).is_ok(),
            "lowest priority"
        );
        assert_eq!(
            check(&mut f, MSI_AT + 12, 2, 0x0441),
            Err(Refused::MsiDelivery { mode: 4 }),
            "NMI"
        );
        assert_eq!(
            Refused::MsiDelivery { mode: 2 }.to_string(),
            "MSI delivery mode 0b010 (only fixed and lowest priority are allowed)"
        );
        // Enabling checks what is there.
        f.write(MSI_AT + 4, to_cpu(3));
        assert!(check(&mut f, MSI_AT + 2, 2, 1).is_err());
        f.write(MSI_AT + 4, to_cpu(0));
        assert!(check(&mut f, MSI_AT + 2, 2, 1).is_ok());
    }

    proptest! {
        /// Whatever Linux writes wherever, a write the check lets through leaves every BAR
        /// where Linux may have it (or in the sizing pattern with its decoding off), and every
        /// armed MSI address at a Linux CPU.
        #[test]
        fn allowed_writes_keep_the_function_inside_linux(
            writes in proptest::collection::vec((0u8..0x60, 0u8..3, any::<u32>()), 1..40)
        ) {
            let mut f = function();
            let owned = OwnedFunction::probe(bdf(), &mut f);
            let reach = reach();
            for (offset, w, value) in writes {
                let width = 1 << w;
                let offset = offset & !(width - 1);
                if owned.check_write(&reach, offset, width, value, &mut f).is_err() {
                    continue;
                }
                let dword = offset & !3;
                let current = f.read(dword);
                f.write(dword, merge(current, offset & 3, width, value));
                let command = f.read(reg::COMMAND);
                for bar in owned.bars() {
                    let (low, high) = bar_dwords(bar, &mut f);
                    let on = command & bar.kind.decode_bit() != 0
                        && (bar.kind != BarKind::Rom || low & ROM_ENABLE != 0);
                    if on {
                        prop_assert!(placed(&reach, bar, bar.base(low, high)), "{bar:?} at {low:#x}/{high:#x}");
                    }
                }
                let msi = owned.msi().unwrap();
                if f.read(msi.capability) & MSI_ENABLE != 0 {
                    let address = u64::from(f.read(msi.address() + 4)) << 32 | u64::from(f.read(msi.address()));
                    prop_assert!(!reach.msi_address_refused(address), "{address:#x}");
                }
            }
        }
    }
}
