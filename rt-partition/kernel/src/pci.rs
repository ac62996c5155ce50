//! The PCI functions the partition owns, for drivers: what the hypervisor found at boot (the
//! boot information's function table: identity, BARs already decoding and mapped uncached at
//! their addresses, bus mastering on, the device line its INTx arrives on), and the bus
//! addresses a driver gives its device for DMA.
//!
//! A driver may read its function's configuration space ([`config_read`]: capabilities, a
//! device-specific register), write its command register ([`set_command`]) and write what
//! it configures ([`config_write`]); under the hypervisor each access is a VM exit, which the
//! hypervisor allows for the partition's own functions only (reads; the command register's
//! decoding, bus-master, INTx-disable and error-reporting bits; the status register, cache
//! line size, latency timer and interrupt line; the capabilities and device-specific
//! registers but MSI's and MSI-X's; never the BARs, which it placed and mapped): do it in the
//! application's `init`, never in steady state. Booted
//! bare (to measure the same drivers without the hypervisor), the kernel describes the
//! functions its command line names itself (`pci=BB:DD.F,...`, [`describe_bare`]), the way
//! the hypervisor would: identity, BARs (sized with decoding off), the `lines=` line its INTx
//! is routed to, decoding and bus mastering on.
//!
//! DMA: the partition's RAM is mapped from guest-physical 0 while it lies elsewhere on the
//! bus, and there is no IOMMU to translate, so a device must be given [`bus_address`]es,
//! never pointers. A device that masters the bus reaches all memory, the hypervisor's and
//! Linux's included: owning one is trusting its driver.

use bulkhead_abi::rt_boot::{
    BAR_IO, BAR_MEMORY, LineInfo, MAX_PCI_FUNCTIONS, NO_LINE, PciAddress, PciBar, PciFunctionInfo,
};
use bulkhead_x86::port;

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

/// The configuration dword at `offset` (rounded down to a multiple of 4) of `function`.
/// Under the hypervisor a VM exit; all ones for a function that is not the partition's.
pub fn config_read(function: &PciFunctionInfo, offset: u8) -> u32 {
    Config(function.bdf).read(offset)
}

/// Writes `function`'s command register (bits 15:0 of the dword at 0x04; its status half
/// written as 0, which clears nothing). Under the hypervisor a VM exit, refused (and logged
/// there) when it sets a bit other than decoding, bus mastering, memory-write-and-invalidate,
/// parity and SERR reporting and INTx disable.
pub fn set_command(function: &PciFunctionInfo, command: u16) {
    Config(function.bdf).write(0x04, u32::from(command));
}

/// Writes the configuration dword at `offset` (rounded down to a multiple of 4) of
/// `function`: a capability's control register, a device-specific register. Under the
/// hypervisor a VM exit, refused (and logged there) for a register a driver may not write
/// (the module comment lists them); bare, the kernel owns the machine and writes it.
pub fn config_write(function: &PciFunctionInfo, offset: u8, value: u32) {
    Config(function.bdf).write(offset, value);
}

/// Why `pci=` could not be followed (bare mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareError {
    /// Its word at this index (from 0) is not `BB:DD.F`, or one more than
    /// [`MAX_PCI_FUNCTIONS`].
    BadWord(usize),
    /// No function answers at this address.
    Absent(u16),
    /// The function is a bridge, not a device.
    NotADevice(u16),
}

impl core::fmt::Display for BareError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::BadWord(i) => write!(
                f,
                "pci=: word {i}: expected comma-separated BB:DD.F (hex), at most {MAX_PCI_FUNCTIONS}"
            ),
            Self::Absent(bdf) => write!(f, "pci=: no PCI function answers at {}", PciAddress(bdf)),
            Self::NotADevice(bdf) => {
                write!(
                    f,
                    "pci=: {} is a bridge, not a device function",
                    PciAddress(bdf)
                )
            }
        }
    }
}

/// Describes the functions `spec` names (`BB:DD.F`, comma-separated) through the
/// configuration ports, with `lines` the bare kernel's device lines; fills `out` and returns
/// how many. Turns each function's decoding and bus mastering on. Bare mode only: the kernel
/// owns the machine.
pub(crate) fn describe_bare(
    spec: &str,
    lines: &[LineInfo],
    out: &mut [PciFunctionInfo; MAX_PCI_FUNCTIONS],
) -> Result<usize, BareError> {
    let mut count = 0;
    for word in spec.split(',') {
        let bdf = parse_bdf(word).ok_or(BareError::BadWord(count))?;
        let slot = out.get_mut(count).ok_or(BareError::BadWord(count))?;
        let config = Config(bdf);
        let id = config.read(0x00);
        if id & 0xffff == 0xffff {
            return Err(BareError::Absent(bdf));
        }
        if (config.read(0x0c) >> 16) & 0x7f != 0 {
            return Err(BareError::NotADevice(bdf));
        }
        let interrupt = config.read(0x3c);
        let (irq, pin) = (interrupt as u8, (interrupt >> 8) as u8 & 7);
        let line = lines
            .iter()
            .position(|l| pin != 0 && l.gsi == u32::from(irq))
            .map_or(NO_LINE, |i| i as u8);
        *slot = PciFunctionInfo {
            bdf,
            vendor_id: id as u16,
            device_id: (id >> 16) as u16,
            line,
            interrupt_pin: pin.min(4),
            class: config.read(0x08) >> 8,
            ..PciFunctionInfo::default()
        };
        let command = config.read(0x04) & 0xffff;
        config.write(0x04, command & !0b11);
        let mut decode = 0;
        let mut index = 0;
        while index < 6 {
            let register = 0x10 + 4 * index as u8;
            let low = config.read(register);
            config.write(register, u32::MAX);
            let mask = config.read(register);
            config.write(register, low);
            let io = low & 1 != 0;
            let wide = !io && low & 0b110 == 0b100;
            let size_mask = if io {
                mask & !0b11 | 0xffff_0000
            } else {
                mask & !0xf
            };
            if size_mask != 0 {
                let mut base = u64::from(low & if io { !0b11 } else { !0xf });
                if wide {
                    base |= u64::from(config.read(register + 4)) << 32;
                }
                slot.bar_kinds[index] = if io { BAR_IO } else { BAR_MEMORY };
                slot.bars[index] = PciBar {
                    base,
                    size: u64::from(!size_mask) + 1,
                };
                decode |= if io { 0b01 } else { 0b10 };
            }
            index += if wide { 2 } else { 1 };
        }
        // Decoding of what it has, bus mastering on, INTx not disabled.
        config.write(0x04, (command | decode | 0b100) & !(1 << 10));
        count += 1;
    }
    Ok(count)
}

/// `BB:DD.F` (hex) as bus (15:8), device (7:3), function (2:0).
fn parse_bdf(word: &str) -> Option<u16> {
    let (bus, rest) = word.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let bus = u16::from_str_radix(bus, 16).ok().filter(|&b| b < 256)?;
    let device = u16::from_str_radix(device, 16).ok().filter(|&d| d < 32)?;
    let function = u16::from_str_radix(function, 16).ok().filter(|&f| f < 8)?;
    Some(bus << 8 | device << 3 | function)
}

/// A function's configuration space through the configuration ports (mechanism #1): in bare
/// mode the kernel's own (the boot CPU describes the functions before any other CPU runs; a
/// driver's accesses come from its `init`, on the boot CPU too); under the hypervisor each
/// access exits and the hypervisor decides.
struct Config(u16);

impl Config {
    fn select(&self, offset: u8) {
        let address = 0x8000_0000 | u32::from(self.0) << 8 | u32::from(offset & 0xfc);
        // SAFETY: the address port selects a register (bare: the kernel owns the machine;
        // under the hypervisor: the partition's own latch).
        unsafe { port::outl(0xcf8, address) }
    }

    fn read(&self, offset: u8) -> u32 {
        self.select(offset);
        // SAFETY: as in `select`; reading a header register has no effect.
        unsafe { port::inl(0xcfc) }
    }

    fn write(&self, offset: u8, value: u32) {
        self.select(offset);
        // SAFETY: as in `select`; the writes are the BAR sizing (with decoding off, each
        // value restored), the command register and what a driver configures through
        // `config_write` (never a BAR).
        unsafe { port::outl(0xcfc, value) }
    }
}
