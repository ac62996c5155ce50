//! The PCI functions the RT partition owns, checked and described at boot.
//!
//! For each function of `partitions.rt.pci_devices` the hypervisor reads, before any partition
//! runs, what a driver needs and what isolation depends on ([`describe`]):
//!
//! - its identity and class, and its BARs (through [`OwnedFunction::probe`]): every memory BAR
//!   must be assigned, lie in the window where the RT kernel maps device memory
//!   ([`bulkhead_config::MMIO_WINDOW`]) and overlap nothing else ([`Surroundings::memory`]: RAM,
//!   the hypervisor's and the partitions' regions, the RT partition's `mmio`, the IOAPICs' and
//!   the local APICs' pages, the BARs of the RT functions before it); every I/O BAR must keep
//!   off the ports others own ([`Surroundings::ports`]). The image maps the memory BARs into
//!   the RT partition's EPT uncached at their own addresses and passes the I/O BARs' ports
//!   through; Linux's BAR filter keeps Linux's own BARs off them (`pci_owned`);
//! - its INTx: the pin it signals on (configuration byte 0x3d) and the IRQ the firmware routed
//!   that pin to (the interrupt line, byte 0x3c). On a PC chipset a slot's INTx reaches the
//!   interrupt controllers through the chipset's PIRQ routing, which the firmware programs and
//!   records in that byte; the IOAPIC sees an ISA IRQ on the pin of the same number. When
//!   that pin is one of the RT partition's lines, it must be level-triggered (INTx is a level
//!   signal: an edge-triggered pin would lose interrupts once two overlap), and no function of
//!   Linux's may be routed there too (a shared pin would let Linux's device raise RT
//!   interrupts and the RT kernel's masking silence Linux's device). A pin of Linux's is
//!   refused. A pin nobody owns is reported and the function gets no line: chipsets whose
//!   PIRQs reach IOAPIC pins above 15 leave the PIC-mode IRQ in that byte while the IOAPIC
//!   pin is only in the ACPI namespace's `_PRT`, which the hypervisor does not interpret;
//!
//! then turns its decoding and bus mastering on ([`Described::command`]). The RT kernel gets
//! the description in its boot information ([`PciFunctionInfo`]).
//!
//! An RT CPU's port accesses that exit (its I/O bitmap passes its own ports) are [`RtPorts`]'
//! to decide, never Linux's view: configuration mechanism #1 through a latch of the RT
//! partition's own reaches its own functions only, to read any register and to write what a
//! driver configures ([`rt_write_allowed`]): the command register's decoding, bus-master,
//! INTx-disable and error-reporting bits, the status register (whose bits clear on write),
//! the cache line size, latency timer and interrupt line, and the capabilities and
//! device-specific registers (power management, PCI Express device control, a vendor's
//! registers) except the MSI and MSI-X capabilities. Never the BARs and the expansion ROM,
//! which stay where the hypervisor checked and mapped them, nor the read-only identity
//! registers, nor a BIST start. A driver's start-up costs exits then, never steady state.
//! Every other port reads all ones and drops writes.
//!
//! Not handled: bridges (refused: their windows would have to be guarded too), MSI and MSI-X
//! (the RT kernel's device lines are IOAPIC pins; the emulated machines have no device with
//! message interrupts to prove them on: their capabilities are found at boot and kept off),
//! the INTx routing of chipsets whose PIRQs reach IOAPIC pins above 15 (see above), and DMA:
//! without an IOMMU a bus-mastering device reaches all memory. Written by hand: no crate knows
//! which partition owns what.

use core::fmt;

use bulkhead_abi::rt_boot::{BAR_IO, BAR_MEMORY, NO_LINE, PciBar, PciFunctionInfo};
use bulkhead_config::{PciBdf, Region};

use super::pci_owned::{
    BarKind, ConfigSpace, HAS_CAPABILITIES, MSI_CAPABILITY, OwnedFunction, find_capability, reg,
};
use super::rt_lines::Line;

/// Command register bits: I/O and memory decoding, bus mastering, INTx disable.
const IO_DECODE: u32 = 1 << 0;
const MEMORY_DECODE: u32 = 1 << 1;
const BUS_MASTER: u32 = 1 << 2;
const INTX_DISABLE: u32 = 1 << 10;
/// The dword holding the interrupt line (bits 7:0) and pin (bits 15:8).
const INTERRUPT: u8 = 0x3c;
/// The dword holding the revision (7:0) and the class code (31:8).
const CLASS: u8 = 0x08;

/// What an RT function's BARs and line must keep off.
#[derive(Debug, Clone, Copy)]
pub struct Surroundings<'a> {
    /// Memory that is someone else's, each with what it is (`"RAM"`, `"an IOAPIC's
    /// registers"`, `"partitions.rt.mmio[0]"`).
    pub memory: &'a [(Region, &'static str)],
    /// Ports that are someone else's, with what they are.
    pub ports: &'a [(Region, &'static str)],
    /// The RT partition's device lines.
    pub lines: &'a [Line],
    /// Linux's IOAPIC pins.
    pub linux_pins: &'a [u32],
    /// The IRQ each of Linux's functions is routed to (its interrupt line register; functions
    /// without an INTx pin left out).
    pub linux_irqs: &'a [(PciBdf, u8)],
}

/// An RT function as the boot information describes it, and what to do to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Described {
    pub info: PciFunctionInfo,
    /// The IRQ (IOAPIC pin) its INTx is routed to, if the firmware routed it.
    pub irq: Option<u8>,
    /// The command register value that turns its decoding and bus mastering on.
    pub command: u32,
    /// Its MSI and MSI-X capabilities' registers (offset, bytes), which RT drivers may not
    /// write ([`rt_write_allowed`]).
    pub message_capabilities: [Option<(u8, u8)>; 2],
}

/// The MSI-X capability's ID.
const MSIX_CAPABILITY: u32 = 0x11;

/// The registers of the message-interrupt capabilities of a function with a capability
/// list: MSI (10 bytes, 4 more with 64-bit addresses, 10 more with per-vector masking) and
/// MSI-X (12 bytes).
fn message_capabilities(space: &mut impl ConfigSpace) -> [Option<(u8, u8)>; 2] {
    if space.read(reg::COMMAND) & HAS_CAPABILITIES == 0 {
        return [None; 2];
    }
    let msi = find_capability(space, MSI_CAPABILITY).map(|(at, header)| {
        let control = header >> 16;
        let len = 10
            + if control & (1 << 7) != 0 { 4 } else { 0 }
            + if control & (1 << 8) != 0 { 10 } else { 0 };
        (at, len)
    });
    let msix = find_capability(space, MSIX_CAPABILITY).map(|(at, _)| (at, 12));
    [msi, msix]
}

impl Described {
    /// Its address.
    pub fn bdf(&self) -> Option<PciBdf> {
        let bdf = self.info.bdf;
        PciBdf::new((bdf >> 8) as u8, ((bdf >> 3) & 0x1f) as u8, (bdf & 7) as u8)
    }

    /// Its memory BARs, as regions.
    pub fn memory_windows(&self) -> impl Iterator<Item = Region> + '_ {
        (0..6)
            .filter_map(|i| self.info.memory_bar(i))
            .map(|b| Region::new(b.base, b.size))
    }

    /// Its I/O BARs, as port regions.
    pub fn port_windows(&self) -> impl Iterator<Item = Region> + '_ {
        (0..6)
            .filter_map(|i| self.info.io_bar(i))
            .map(|b| Region::new(b.base, b.size))
    }
}

/// Why an RT function cannot be given to the RT partition. Each names the function by its
/// place in `partitions.rt.pci_devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtPciError {
    /// No function answers there.
    Absent { index: usize, bdf: PciBdf },
    /// It is a bridge (or another header type than a device's).
    NotADevice { index: usize, bdf: PciBdf },
    /// A memory BAR the firmware left unassigned (at 0).
    BarUnassigned {
        index: usize,
        bdf: PciBdf,
        register: u8,
    },
    /// A memory BAR outside the RT kernel's device window.
    BarOutsideWindow {
        index: usize,
        bdf: PciBdf,
        register: u8,
        window: Region,
    },
    /// A BAR over memory or ports that are someone else's.
    BarOverlaps {
        index: usize,
        bdf: PciBdf,
        register: u8,
        io: bool,
        window: Region,
        what_else: &'static str,
    },
    /// Its INTx is routed to one of Linux's pins.
    LineLinux {
        index: usize,
        bdf: PciBdf,
        pin: u8,
        irq: u8,
    },
    /// The config names an INTx pin for a function that signals no INTx.
    NoIntxPin { index: usize, bdf: PciBdf },
    /// Its INTx's RT line is edge-triggered.
    LineEdge { index: usize, bdf: PciBdf, irq: u8 },
    /// A function of Linux's is routed to the same IRQ.
    LineShared {
        index: usize,
        bdf: PciBdf,
        irq: u8,
        linux: PciBdf,
    },
}

impl fmt::Display for RtPciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (index, bdf) = match *self {
            Self::Absent { index, bdf }
            | Self::NotADevice { index, bdf }
            | Self::BarUnassigned { index, bdf, .. }
            | Self::BarOutsideWindow { index, bdf, .. }
            | Self::BarOverlaps { index, bdf, .. }
            | Self::LineLinux { index, bdf, .. }
            | Self::NoIntxPin { index, bdf }
            | Self::LineEdge { index, bdf, .. }
            | Self::LineShared { index, bdf, .. } => (index, bdf),
        };
        write!(f, "partitions.rt.pci_devices[{index}]: {bdf}")?;
        match *self {
            Self::Absent { .. } => f.write_str(": no PCI function answers there"),
            Self::NotADevice { .. } => f.write_str(
                ": not a device function (a bridge's windows would have to be guarded too: give the RT partition the functions behind it)",
            ),
            Self::BarUnassigned { register, .. } => write!(
                f,
                ": the memory BAR at {register:#x} is unassigned (the firmware gave it no address)"
            ),
            Self::BarOutsideWindow {
                register, window, ..
            } => write!(
                f,
                ": the memory BAR at {register:#x} decodes {window}, outside {:#x}..{:#x} where the RT kernel maps device memory",
                bulkhead_config::MMIO_WINDOW.start,
                bulkhead_config::MMIO_WINDOW.end
            ),
            Self::BarOverlaps {
                register,
                io,
                window,
                what_else,
                ..
            } => write!(
                f,
                ": the {} BAR at {register:#x} decodes {window}, over {what_else}",
                if io { "I/O" } else { "memory" }
            ),
            Self::LineLinux { pin, irq, .. } => write!(
                f,
                ": its INT{} is routed to IRQ {irq} (its interrupt line, as the firmware set up the chipset's PIRQ routing), which is in partitions.linux.ioapic_pins: give the pin to the RT partition, {{ pin = {irq}, trigger = \"level\" }}",
                char::from(b'A' + pin - 1)
            ),
            Self::NoIntxPin { .. } => f.write_str(
                ": intx names a pin, but the function signals no INTx (its interrupt pin register is 0)",
            ),
            Self::LineEdge { irq, .. } => write!(
                f,
                ": its INTx arrives on IOAPIC pin {irq}, which partitions.rt.ioapic_pins makes edge-triggered: PCI interrupts are level signals (write trigger = \"level\")"
            ),
            Self::LineShared { irq, linux, .. } => write!(
                f,
                ": its INTx shares IRQ {irq} with {linux}, a function of Linux's (a shared pin cannot be split between partitions: move one of them to another slot)"
            ),
        }
    }
}

/// Reads and checks the function at `bdf`, the `index`-th of the RT partition's, through
/// `space` (the probe sizes its BARs with decoding off and restores them). `lines` is in
/// `surroundings`; its index is the function's line in the boot information. `intx` is the
/// IOAPIC pin the config says its INTx arrives on (`None`: its interrupt line register says).
pub fn describe(
    index: usize,
    bdf: PciBdf,
    intx: Option<u32>,
    space: &mut impl ConfigSpace,
    surroundings: &Surroundings<'_>,
) -> Result<Described, RtPciError> {
    let id = space.read(0);
    if id & 0xffff == 0xffff {
        return Err(RtPciError::Absent { index, bdf });
    }
    if (space.read(reg::HEADER) >> 16) & 0x7f != 0 {
        return Err(RtPciError::NotADevice { index, bdf });
    }
    let probed = OwnedFunction::probe(bdf, space);
    let mut info = PciFunctionInfo {
        bdf: u16::from(bdf.bus()) << 8 | u16::from(bdf.device()) << 3 | u16::from(bdf.function()),
        vendor_id: id as u16,
        device_id: (id >> 16) as u16,
        line: NO_LINE,
        class: space.read(CLASS) >> 8,
        ..PciFunctionInfo::default()
    };
    let mut decode = 0;
    for bar in probed.bars() {
        let slot = usize::from((bar.register - reg::BAR0) / 4);
        let window = Region::new(bar.boot_base, bar.size);
        let (kind, taken, io) = match bar.kind {
            // The expansion ROM stays as the firmware left it (off): no driver here runs it.
            BarKind::Rom => continue,
            BarKind::Io => (BAR_IO, surroundings.ports, true),
            BarKind::Memory32 | BarKind::Memory64 => {
                if bar.boot_base == 0 {
                    return Err(RtPciError::BarUnassigned {
                        index,
                        bdf,
                        register: bar.register,
                    });
                }
                let inside = bar.boot_base >= bulkhead_config::MMIO_WINDOW.start
                    && window.end() <= bulkhead_config::MMIO_WINDOW.end;
                if !inside {
                    return Err(RtPciError::BarOutsideWindow {
                        index,
                        bdf,
                        register: bar.register,
                        window,
                    });
                }
                (BAR_MEMORY, surroundings.memory, false)
            }
        };
        if let Some(&(_, what_else)) = taken.iter().find(|(r, _)| r.overlaps(&window)) {
            return Err(RtPciError::BarOverlaps {
                index,
                bdf,
                register: bar.register,
                io,
                window,
                what_else,
            });
        }
        decode |= if io { IO_DECODE } else { MEMORY_DECODE };
        info.bar_kinds[slot] = kind;
        info.bars[slot] = PciBar {
            base: bar.boot_base,
            size: bar.size,
        };
    }
    let interrupt = space.read(INTERRUPT);
    let (register_irq, pin) = (interrupt as u8, (interrupt >> 8) as u8);
    info.interrupt_pin = if pin <= 4 { pin } else { 0 };
    if intx.is_some() && info.interrupt_pin == 0 {
        return Err(RtPciError::NoIntxPin { index, bdf });
    }
    // The config's pin (the config check made it an RT pin, 1 to 239), or the firmware's
    // routing; a pin the firmware left unrouted (line 0xff, or 0, which no PCI slot is routed
    // to) means the device can be polled, never interrupt.
    let irq = intx.map_or(register_irq, |gsi| gsi as u8);
    let routed = info.interrupt_pin != 0 && irq != 0xff && irq != 0;
    let line = routed
        .then(|| {
            surroundings
                .lines
                .iter()
                .position(|l| l.gsi == u32::from(irq))
        })
        .flatten();
    if routed && line.is_none() && surroundings.linux_pins.contains(&u32::from(irq)) {
        return Err(RtPciError::LineLinux {
            index,
            bdf,
            pin,
            irq,
        });
    }
    if let Some(line) = line {
        if !surroundings.lines[line].level {
            return Err(RtPciError::LineEdge { index, bdf, irq });
        }
        // Linux's functions' interrupt line registers say where their INTx go the way this
        // one's does: compared only when this one's is what counts too.
        let shared = surroundings.linux_irqs.iter().find(|&&(_, i)| i == irq);
        if let (None, Some(&(linux, _))) = (intx, shared) {
            return Err(RtPciError::LineShared {
                index,
                bdf,
                irq,
                linux,
            });
        }
        // At most MAX_LINES lines, fewer than NO_LINE.
        info.line = line as u8;
    }
    let command = (space.read(reg::COMMAND) & 0xffff & !INTX_DISABLE) | decode | BUS_MASTER;
    Ok(Described {
        info,
        irq: routed.then_some(irq),
        command,
        message_capabilities: message_capabilities(space),
    })
}

/// What an exiting `IN` or `OUT` of an RT CPU does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtPortOutcome {
    /// An `IN` answered from the partition's own latch.
    Read(u32),
    /// An `OUT` to the latch, taken.
    Ignored,
    /// Read `width` bytes at `offset` of `bdf`'s configuration space (the hardware's).
    ConfigRead { bdf: PciBdf, offset: u8, width: u8 },
    /// Write them.
    ConfigWrite {
        bdf: PciBdf,
        offset: u8,
        width: u8,
        value: u32,
    },
    /// A configuration read of a function that is not the partition's, or with no function
    /// selected: all ones.
    Absent(u32),
    /// A configuration write that does not reach the hardware (another function, no
    /// function selected, or a register an RT driver may not write: [`rt_write_allowed`]).
    RefusedConfigWrite { bdf: Option<PciBdf>, offset: u8 },
    /// A port the partition does not own: reads all ones, writes dropped.
    Unowned,
}

/// The command register bits an RT driver may write: I/O and memory decoding (its BARs stay
/// where the hypervisor checked them), bus mastering, memory-write-and-invalidate, parity and
/// SERR reporting, INTx disable.
const RT_COMMAND_BITS: u32 = 0b0000_0101_0101_0111;

/// The RT partition's view of the ports that exit (see the module comment).
#[derive(Debug, Clone)]
pub struct RtPorts<'a> {
    functions: &'a [Described],
    /// The partition's virtual 0xCF8.
    address: u32,
}

impl<'a> RtPorts<'a> {
    /// The view of a partition owning `functions`.
    pub fn new(functions: &'a [Described]) -> Self {
        Self {
            functions,
            address: 0,
        }
    }

    /// One `IN` (`write` is `None`) or `OUT` of `width` bytes (1, 2 or 4) at `port`.
    pub fn access(&mut self, port: u16, width: u8, write: Option<u32>) -> RtPortOutcome {
        use super::linux_io::{PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA, latched, ones};
        if !matches!(width, 1 | 2 | 4) {
            return RtPortOutcome::Unowned;
        }
        let write = write.map(|v| v & ones(width));
        if port == PCI_CONFIG_ADDRESS && width == 4 {
            return match write {
                Some(v) => {
                    self.address = v;
                    RtPortOutcome::Ignored
                }
                None => RtPortOutcome::Read(self.address),
            };
        }
        let byte = port.wrapping_sub(PCI_CONFIG_DATA);
        if byte > 3 || !(byte as u8).is_multiple_of(width) {
            return RtPortOutcome::Unowned;
        }
        let (bdf, offset) = latched(self.address, byte as u8);
        let own = bdf.and_then(|b| self.functions.iter().find(|f| f.bdf() == Some(b)));
        match (own.zip(bdf), write) {
            (Some((_, bdf)), None) => RtPortOutcome::ConfigRead { bdf, offset, width },
            (None, None) => RtPortOutcome::Absent(ones(width)),
            (Some((function, bdf)), Some(value))
                if rt_write_allowed(function, offset, width, value) =>
            {
                RtPortOutcome::ConfigWrite {
                    bdf,
                    offset,
                    width,
                    value,
                }
            }
            (_, Some(_)) => RtPortOutcome::RefusedConfigWrite { bdf, offset },
        }
    }
}

/// BIST's start bit (bit 6 of the byte at 0x0f, bit 30 of its dword).
const BIST_START: u32 = 1 << 30;

/// Whether an RT driver may write `value` (`width` bytes at `offset`, within one dword) to
/// its own `function`: the command register's [`RT_COMMAND_BITS`] and the status register;
/// the cache line size and latency timer (not a BIST start; the header type is read-only);
/// the interrupt line (the pin and the rest of that dword are read-only); and the
/// capabilities and device-specific registers from 0x40 on, but for the MSI and MSI-X
/// capabilities. Nothing else: the identity, class and subsystem registers, the BARs, the
/// expansion ROM and the capability pointer.
pub fn rt_write_allowed(function: &Described, offset: u8, width: u8, value: u32) -> bool {
    // The value as it lands in its dword, and the bytes of the dword it covers.
    let shift = 8 * u32::from(offset & 3);
    let dword = value << shift;
    let covered = (u32::MAX >> (32 - 8 * u32::from(width.clamp(1, 4)))) << shift;
    match offset & 0xfc {
        reg::COMMAND => dword & covered & 0xffff & !RT_COMMAND_BITS == 0,
        reg::HEADER => dword & covered & BIST_START == 0,
        INTERRUPT => true,
        0x40.. => {
            let (start, end) = (u16::from(offset), u16::from(offset) + u16::from(width));
            function
                .message_capabilities
                .iter()
                .flatten()
                .all(|&(at, len)| end <= u16::from(at) || start >= u16::from(at) + u16::from(len))
        }
        _ => false,
    }
}

/// Turns the function's decoding and bus mastering on (after [`describe`]).
pub fn enable(space: &mut impl ConfigSpace, described: &Described) {
    space.write(reg::COMMAND, described.command);
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use super::super::pci_owned::tests::Function as Device;
    use super::*;

    /// An 8254x-like NIC: 128 KiB memory BAR0 at 0xfebc0000, 64 ports at 0xc040 (BAR1),
    /// INTA routed to IRQ 11, decoding off.
    fn nic() -> Device {
        let mut d = Device::blank();
        d.dwords[0] = 0x100e_8086;
        d.writable[1] = 0xffff;
        d.dwords[2] = 0x0200_0003;
        d.dwords[4] = 0xfebc_0000;
        d.writable[4] = 0xfffe_0000;
        d.dwords[5] = 0xc041;
        d.writable[5] = 0xffff_ffc0;
        d.dwords[15] = 0x0000_010b;
        d
    }

    fn bdf() -> PciBdf {
        PciBdf::new(0, 2, 0).unwrap()
    }

    fn line(gsi: u32, level: bool) -> Line {
        Line {
            gsi,
            cpu: 0,
            apic_id: 2,
            vector: 48,
            level,
            active_low: false,
        }
    }

    const MEMORY: [(Region, &str); 3] = [
        (Region::new(0, 0x8000_0000), "RAM"),
        (Region::new(0xfec0_0000, 0x1000), "an IOAPIC's registers"),
        (
            Region::new(0xfee0_0000, 0x10_0000),
            "the local APICs' range",
        ),
    ];
    const PORTS: [(Region, &str); 1] = [(Region::new(0xcf8, 8), "the PCI configuration ports")];

    const LINUX_PINS: [u32; 3] = [1, 9, 14];

    fn with<R>(lines: &[Line], linux: &[(PciBdf, u8)], f: impl FnOnce(Surroundings<'_>) -> R) -> R {
        f(Surroundings {
            memory: &MEMORY,
            ports: &PORTS,
            lines,
            linux_pins: &LINUX_PINS,
            linux_irqs: linux,
        })
    }

    #[test]
    fn a_nic_is_described_and_enabled() {
        let lines = [line(4, false), line(11, true)];
        let mut d = nic();
        let described = with(&lines, &[], |s| describe(0, bdf(), None, &mut d, &s)).unwrap();
        let info = described.info;
        assert_eq!((info.vendor_id, info.device_id), (0x8086, 0x100e));
        assert_eq!(info.class, 0x02_0000);
        assert_eq!(info.address().to_string(), "00:02.0");
        assert_eq!(
            info.memory_bar(0),
            Some(PciBar {
                base: 0xfebc_0000,
                size: 0x2_0000
            })
        );
        assert_eq!(
            info.io_bar(1),
            Some(PciBar {
                base: 0xc040,
                size: 0x40
            })
        );
        assert_eq!(
            (info.line, info.interrupt_pin, described.irq),
            (1, 1, Some(11))
        );
        assert_eq!(d.dwords[4], 0xfebc_0000, "the probe restored the BAR");
        enable(&mut d, &described);
        assert_eq!(d.dwords[1] & 0x7, 0x7, "I/O, memory and bus master on");
        assert_eq!(described.memory_windows().count(), 1);
        assert_eq!(described.port_windows().count(), 1);
    }

    #[test]
    fn what_cannot_be_given_is_named() {
        let lines = [line(11, true)];
        let describe_with = |mutate: fn(&mut Device), lines: &[Line], linux: &[(PciBdf, u8)]| {
            let mut d = nic();
            mutate(&mut d);
            with(lines, linux, |s| describe(3, bdf(), None, &mut d, &s))
                .unwrap_err()
                .to_string()
        };
        type Mutation = fn(&mut Device);
        let cases: [(Mutation, &str); 5] = [
            (|d| d.dwords[0] = u32::MAX, "no PCI function answers there"),
            (|d| d.dwords[3] = 0x0001_0000, "not a device function"),
            (|d| d.dwords[4] = 0, "the memory BAR at 0x10 is unassigned"),
            (
                |d| d.dwords[4] = 0x8000_0000,
                "decodes 0x80000000..0x80020000, outside 0xc0000000..0x100000000",
            ),
            (
                |d| d.dwords[4] = 0xfee0_0000,
                "the memory BAR at 0x10 decodes 0xfee00000..0xfee20000, over the local APICs' range",
            ),
        ];
        for (mutate, expected) in cases {
            let message = describe_with(mutate, &lines, &[]);
            assert!(
                message.starts_with("partitions.rt.pci_devices[3]: 00:02.0"),
                "{message}"
            );
            assert!(message.contains(expected), "{message} lacks {expected}");
        }
        let message = describe_with(|d| d.dwords[5] = 0xcf9, &lines, &[]);
        assert!(message.contains("the I/O BAR at 0x14 decodes"), "{message}");
        assert!(
            message.contains("over the PCI configuration ports"),
            "{message}"
        );
        let message = describe_with(|d| d.dwords[15] = 0x0000_0109, &[line(10, true)], &[]);
        assert!(
            message.contains("its INTA is routed to IRQ 9 (its interrupt line, as the firmware set up the chipset's PIRQ routing), which is in partitions.linux.ioapic_pins"),
            "{message}"
        );
        let message = describe_with(|_| {}, &[line(11, false)], &[]);
        assert!(
            message.contains("IOAPIC pin 11, which partitions.rt.ioapic_pins makes edge-triggered"),
            "{message}"
        );
        let ide = PciBdf::new(0, 1, 1).unwrap();
        let message = describe_with(|_| {}, &lines, &[(ide, 14), (ide, 11)]);
        assert!(message.contains("shares IRQ 11 with 00:01.1"), "{message}");
    }

    #[test]
    fn the_configs_intx_pin_wins_over_the_line_register() {
        // A chipset whose PIRQs reach pin 17 while the register keeps the PIC-mode IRQ 11.
        let lines = [line(17, true)];
        let mut d = nic();
        let described = with(&lines, &[], |s| describe(0, bdf(), Some(17), &mut d, &s)).unwrap();
        assert_eq!((described.info.line, described.irq), (0, Some(17)));
        let mut d = nic();
        d.dwords[15] = 0x0000_00ff;
        let message = with(&lines, &[], |s| describe(2, bdf(), Some(17), &mut d, &s))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(
                "pci_devices[2]: 00:02.0: intx names a pin, but the function signals no INTx"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_pin_nobody_owns_is_no_line() {
        // The firmware's PIC-mode IRQ on a chipset whose PIRQs reach higher IOAPIC pins.
        let mut d = nic();
        let described = with(&[line(17, true)], &[], |s| {
            describe(0, bdf(), None, &mut d, &s)
        })
        .unwrap();
        assert_eq!((described.info.line, described.irq), (NO_LINE, Some(11)));
    }

    #[test]
    fn an_unrouted_pin_is_no_line() {
        for interrupt in [0x0000_01ff, 0x0000_0100, 0x0000_000b] {
            let mut d = nic();
            d.dwords[15] = interrupt;
            let described = with(&[], &[], |s| describe(0, bdf(), None, &mut d, &s)).unwrap();
            assert_eq!(described.info.line, NO_LINE, "{interrupt:#x}");
            assert_eq!(described.irq, None);
        }
    }

    proptest::proptest! {
        /// Whatever a device's registers say (its BARs' values and writable bits, its header
        /// type, its interrupt registers), describing it never panics, and a function that
        /// is given to the partition decodes only inside the device window and off everything
        /// taken, and its description passes the RT kernel's checks.
        #[test]
        fn a_hostile_device_is_refused_or_described_within_bounds(
            header in proptest::prop_oneof![proptest::strategy::Just(0u32), 0u32..=u32::MAX],
            bars in proptest::array::uniform6((
                proptest::prop_oneof![
                    proptest::strategy::Just(0u32),
                    proptest::strategy::Just(0xfebc_0000u32),
                    proptest::strategy::Just(0xc041u32),
                    0u32..=u32::MAX
                ],
                proptest::prop_oneof![
                    proptest::strategy::Just(0u32),
                    proptest::strategy::Just(0xfffe_0000u32),
                    proptest::strategy::Just(0xffff_ffc0u32),
                    0u32..=u32::MAX
                ],
            )),
            interrupt in 0u32..=u32::MAX,
            intx in proptest::option::of(proptest::prop_oneof![
                proptest::strategy::Just(11u32),
                proptest::strategy::Just(4u32)
            ]),
        ) {
            let mut d = nic();
            d.dwords[3] = header;
            for (i, (value, writable)) in bars.into_iter().enumerate() {
                d.dwords[4 + i] = value;
                d.writable[4 + i] = writable;
            }
            d.dwords[15] = interrupt;
            let lines = [line(4, false), Line { vector: 49, ..line(11, true) }];
            let described = with(&lines, &[], |s| describe(0, bdf(), intx, &mut d, &s));
            let Ok(described) = described else {
                return Ok(());
            };
            for window in described.memory_windows() {
                proptest::prop_assert!(window.base >= bulkhead_config::MMIO_WINDOW.start);
                proptest::prop_assert!(window.end() <= bulkhead_config::MMIO_WINDOW.end);
                proptest::prop_assert!(!MEMORY.iter().any(|(r, _)| r.overlaps(&window)));
            }
            for window in described.port_windows() {
                proptest::prop_assert!(window.end() <= 0x1_0000);
                proptest::prop_assert!(!PORTS.iter().any(|(r, _)| r.overlaps(&window)));
            }
            let mut info = bulkhead_abi::rt_boot::RtBootInfo::new();
            info.push_cpu(2).unwrap();
            info.push_memory_region(
                bulkhead_abi::rt_boot::MemoryRegion { base: 0, size: 0x10_0000 },
                0x6000_0000,
            )
            .unwrap();
            for l in &lines {
                info.push_line(l.info()).unwrap();
            }
            info.push_pci_function(described.info).unwrap();
            proptest::prop_assert_eq!(info.validate(), Ok(()));
        }
    }

    /// The NIC with a capability list: MSI at 0x50 (64-bit addresses, 14 bytes) and MSI-X
    /// at 0x70, a power-management capability at 0x60 between them.
    fn nic_with_message_interrupts() -> Device {
        let mut d = nic();
        d.dwords[1] |= HAS_CAPABILITIES;
        d.dwords[0x34 / 4] = 0x50;
        d.dwords[0x50 / 4] = 0x0080_6005;
        d.dwords[0x60 / 4] = 0x0002_7001;
        d.dwords[0x70 / 4] = 0x0000_0011;
        d
    }

    fn described(device: &mut Device) -> Described {
        with(&[line(11, true)], &[], |s| {
            describe(0, bdf(), None, device, &s)
        })
        .unwrap()
    }

    #[test]
    fn message_interrupt_capabilities_are_found() {
        assert_eq!(
            described(&mut nic_with_message_interrupts()).message_capabilities,
            [Some((0x50, 14)), Some((0x70, 12))]
        );
        assert_eq!(described(&mut nic()).message_capabilities, [None, None]);
        // A list that loops ends; a pointer into the header ends it.
        let mut looping = nic_with_message_interrupts();
        looping.dwords[0x50 / 4] = 0x0080_5009;
        assert_eq!(described(&mut looping).message_capabilities, [None, None]);
        let mut short = nic_with_message_interrupts();
        short.dwords[0x34 / 4] = 0x20;
        assert_eq!(described(&mut short).message_capabilities, [None, None]);
    }

    #[test]
    fn an_rt_driver_configures_its_function_but_not_its_bars_or_message_interrupts() {
        let f = described(&mut nic_with_message_interrupts());
        let allowed =
            |offset: u8, width: u8, value: u32| rt_write_allowed(&f, offset, width, value);
        // Command (its bits only) and status.
        assert!(allowed(0x04, 4, 0xffff_0407));
        assert!(!allowed(0x04, 2, 0x0008));
        // Cache line size and latency timer; a BIST start is not a driver's.
        assert!(allowed(0x0c, 1, 0x10));
        assert!(allowed(0x0d, 1, 0x40));
        assert!(allowed(0x0c, 4, 0x0000_4010));
        assert!(!allowed(0x0f, 1, 0x40));
        assert!(!allowed(0x0c, 4, 0x4000_4010));
        // The interrupt line.
        assert!(allowed(0x3c, 1, 0x0b));
        // The power-management capability and device-specific registers.
        assert!(allowed(0x64, 2, 0x0003));
        assert!(allowed(0x7c, 4, 0x1234_5678));
        assert!(allowed(0xfc, 4, 0));
        // MSI (0x50..0x5e) and MSI-X (0x70..0x7c): not a byte of them.
        for (offset, width) in [
            (0x50, 4),
            (0x52, 2),
            (0x54, 4),
            (0x5c, 2),
            (0x70, 4),
            (0x78, 4),
        ] {
            assert!(!allowed(offset, width, 0), "{offset:#x}");
        }
        assert!(allowed(0x5e, 2, 0), "just past MSI");
        // Identity, BARs, subsystem, ROM, capability pointer: never.
        for offset in [0x00, 0x08, 0x10, 0x14, 0x24, 0x2c, 0x30, 0x34] {
            assert!(!allowed(offset, 4, 0), "{offset:#x}");
        }
    }

    #[test]
    fn an_rt_cpu_reaches_the_configuration_of_its_own_functions_only() {
        let nic = bdf();
        let other = PciBdf::new(0, 1, 1).unwrap();
        let own = [described(&mut nic_with_message_interrupts())];
        let mut ports = RtPorts::new(&own);
        let select = |ports: &mut RtPorts<'_>, f: PciBdf, register: u32| {
            let address = 0x8000_0000
                | u32::from(f.bus()) << 16
                | u32::from(f.device()) << 11
                | u32::from(f.function()) << 8
                | register;
            assert_eq!(
                ports.access(0xcf8, 4, Some(address)),
                RtPortOutcome::Ignored
            );
            assert_eq!(ports.access(0xcf8, 4, None), RtPortOutcome::Read(address));
        };
        select(&mut ports, nic, 0x00);
        assert_eq!(
            ports.access(0xcfe, 2, None),
            RtPortOutcome::ConfigRead {
                bdf: nic,
                offset: 2,
                width: 2
            }
        );
        select(&mut ports, nic, 0x04);
        // Decoding, bus mastering, INTx disable; status bits cleared by writing ones.
        for (port, width, value) in [
            (0xcfc, 4, 0xffff_0407),
            (0xcfd, 1, 0x04),
            (0xcfc, 2, 0x0006),
        ] {
            assert!(
                matches!(ports.access(port, width, Some(value)), RtPortOutcome::ConfigWrite { bdf, .. } if bdf == nic),
                "{port:#x} {value:#x}"
            );
        }
        // Special cycles (bit 3): refused.
        assert_eq!(
            ports.access(0xcfc, 2, Some(0x0008)),
            RtPortOutcome::RefusedConfigWrite {
                bdf: Some(nic),
                offset: 4
            }
        );
        // The interrupt line, and the power-management capability: written.
        select(&mut ports, nic, 0x3c);
        assert!(matches!(
            ports.access(0xcfc, 1, Some(0x0b)),
            RtPortOutcome::ConfigWrite { offset: 0x3c, .. }
        ));
        select(&mut ports, nic, 0x64);
        assert!(matches!(
            ports.access(0xcfc, 2, Some(0x0003)),
            RtPortOutcome::ConfigWrite { offset: 0x64, .. }
        ));
        // MSI's message control: refused.
        select(&mut ports, nic, 0x50);
        assert_eq!(
            ports.access(0xcfe, 2, Some(0x0081)),
            RtPortOutcome::RefusedConfigWrite {
                bdf: Some(nic),
                offset: 0x52
            }
        );
        select(&mut ports, nic, 0x10);
        assert_eq!(
            ports.access(0xcfc, 4, Some(0xfee0_0000)),
            RtPortOutcome::RefusedConfigWrite {
                bdf: Some(nic),
                offset: 0x10
            }
        );
        // Another function: absent, and never written.
        select(&mut ports, other, 0x04);
        assert_eq!(
            ports.access(0xcfc, 4, None),
            RtPortOutcome::Absent(u32::MAX)
        );
        assert_eq!(
            ports.access(0xcfc, 2, Some(0x0007)),
            RtPortOutcome::RefusedConfigWrite {
                bdf: Some(other),
                offset: 4
            }
        );
        // Any other port: unowned (no power-off, no reset, nothing of Linux's).
        for port in [0x64, 0xcf9, 0x604, 0x443, 0x3f8] {
            assert_eq!(ports.access(port, 1, Some(0xfe)), RtPortOutcome::Unowned);
        }
        assert_eq!(
            ports.access(0xcfd, 2, None),
            RtPortOutcome::Unowned,
            "misaligned"
        );
    }

    #[test]
    fn a_64_bit_bar_takes_two_registers() {
        let mut d = nic();
        d.dwords[4] = 0xfebc_0004;
        d.dwords[5] = 0;
        d.writable[5] = u32::MAX;
        let described = with(&[line(11, true)], &[], |s| {
            describe(0, bdf(), None, &mut d, &s)
        })
        .unwrap();
        assert_eq!(described.info.bar_kinds[..2], [BAR_MEMORY, 0]);
        assert_eq!(described.info.bars[0].base, 0xfebc_0000);
    }
}
