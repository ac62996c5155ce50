//! What an `IN` or `OUT` of Linux does when its I/O bitmap makes it exit.
//!
//! Linux's I/O bitmap passes through the config's `io_ports`; every other port exits, and
//! the hypervisor asks [`LinuxIo::access`] what the access means. A few ports are emulated
//! because Linux needs them to boot and to stop; everything else reads as all ones (no
//! device) and ignores writes, reported as [`IoOutcome::UnownedRead`] or
//! [`IoOutcome::UnownedWrite`] so the hypervisor can count and log it.
//!
//! - PCI configuration mechanism #1: the address latch at 0xCF8 (dword accesses only) is
//!   virtual, one per partition. Data accesses at 0xCFC..=0xCFF (naturally aligned bytes,
//!   words and dwords) reach a function Linux owns as [`IoOutcome::PciConfigRead`] or
//!   [`IoOutcome::PciConfigWrite`], which the hypervisor performs through the real 0xCF8 and
//!   0xCFC under its own lock; the [`READ_ONLY_DEVICES`] are read but never written. With the
//!   latch disabled (bit 31 clear), with reserved bits 30:24 set (AMD's extended register
//!   bits: Linux reaches extended space through MMCONFIG), or for any other function, reads
//!   are all ones and writes are dropped. One exception: function 0 of a device of which
//!   Linux owns another function but not function 0 (on a PC, 00:1f.0, the LPC bridge, whose
//!   siblings are the SMBus, audio and network functions) is a *placeholder*: Linux's scan
//!   finds a device's other functions only through function 0, so it reads the function's
//!   identity, class and header type, and zeros everywhere else (no resources, no
//!   interrupt); its writes are refused.
//! - ACPI power-off: a write to the FADT's PM1a or PM1b control register with SLP_EN set and
//!   SLP_TYP equal to the S5 type (from [`crate::boot::acpi_sleep::s5_sleep_type`]) is
//!   [`IoOutcome::PowerOff`]. Other writes there are dropped; reads say SCI_EN (ACPI mode on,
//!   so Linux does not try the SMI command port).
//! - Reset: the FADT's reset value written to its reset register (when in I/O space), a
//!   byte written to 0xCF9 with bit 2 (reset CPU) set, and the keyboard controller's command
//!   0xFE at 0x64 are [`IoOutcome::Reset`]. 0xCF9's bit 1 alone only selects the kind of
//!   reset, so Linux's first write there (0x02) is dropped. The keyboard controller's status
//!   reads as all ones like any other absent device, so Linux's i8042 probe finds none and
//!   its reboot waits out its short input-buffer timeout before writing 0xFE.
//! - Watchdog: writes to the IB700 watchdog's ports (0x443 arms or feeds it, 0x441 disarms
//!   it, `crate::linux::watchdog::ib700`) are [`IoOutcome::WatchdogFeed`] and
//!   [`IoOutcome::WatchdogStop`] (unless the config gives Linux those ports, when they never
//!   exit); reads are all ones.
//!
//! - The channel device (`crate::devices::channel_device`), when there is one: its configuration
//!   accesses are [`IoOutcome::EmulatedConfigRead`] and [`IoOutcome::EmulatedConfigWrite`],
//!   answered by the hypervisor's model of the function and never reaching the hardware.
//!
//! What an owned PCI function does once configured (its BARs, DMA, MSI destinations) is not
//! decided here.

use core::fmt;

use bulkhead_config::PciBdf;

use crate::linux::watchdog::ib700;

/// The PCI configuration address latch (mechanism #1).
pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
/// The first of the four PCI configuration data ports.
pub const PCI_CONFIG_DATA: u16 = 0xcfc;
/// The chipset's reset control register.
pub const RESET_CONTROL: u16 = 0xcf9;
/// The keyboard controller's command port.
pub const KBC_COMMAND: u16 = 0x64;
/// The keyboard controller's "pulse the reset line" command.
pub const KBC_RESET: u8 = 0xfe;

/// The host bridge, 00:00.0.
pub const HOST_BRIDGE: PciBdf = match PciBdf::new(0, 0, 0) {
    Some(bdf) => bdf,
    None => panic!("00:00.0 is a valid address"),
};

/// Policy: PCI functions Linux may read but never write, whoever owns them. Linux's PCI
/// probe (`pci_sanity_check`) looks for a host bridge on bus 0 before it trusts mechanism #1,
/// and the host bridge's config space holds nothing Linux needs to change.
pub const READ_ONLY_DEVICES: [PciBdf; 1] = [HOST_BRIDGE];

/// The registers of a placeholder function 0 (see [`LinuxIo`]'s module comment) that are
/// read from the real function: its identity (0x00), class and revision (0x08) and header
/// type with the multi-function bit (0x0c). Every other register reads 0 (no command, no
/// status, no capabilities, no BARs, no interrupt pin) and every write is refused.
const PLACEHOLDER_REGISTERS: [u8; 3] = [0x00, 0x08, 0x0c];

/// Latch bits.
const ADDRESS_ENABLE: u32 = 1 << 31;
const ADDRESS_RESERVED: u32 = 0x7f00_0000;

/// PM1 control bits (ACPI 6.5, 4.8.3.2.1).
const SCI_EN: u32 = 1 << 0;
const SLP_TYP_SHIFT: u32 = 10;
const SLP_EN: u32 = 1 << 13;

/// 0xCF9 bit 2: reset the CPU (bit 1 only chooses a hard or soft reset).
const RESET_CPU: u8 = 1 << 2;

/// A reset register in I/O space, from the FADT's RESET_REG and RESET_VALUE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetRegister {
    /// The port.
    pub port: u16,
    /// The byte that resets the machine when written there.
    pub value: u8,
}

/// What the hypervisor read from the firmware's FADT and DSDT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FadtIo {
    /// PM1a control block port.
    pub pm1a_control: Option<u16>,
    /// PM1b control block port, if the machine has one.
    pub pm1b_control: Option<u16>,
    /// SLP_TYPa of `\_S5`, if found. Without it no write powers off.
    pub s5_sleep_type: Option<u8>,
    /// The reset register, if the FADT has one in I/O space.
    pub reset: Option<ResetRegister>,
}

/// Which mechanism Linux used to reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// The FADT's reset register.
    Fadt,
    /// The reset control register at 0xCF9.
    Cf9,
    /// The keyboard controller's command 0xFE.
    Keyboard,
}

impl fmt::Display for ResetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fadt => "the FADT reset register",
            Self::Cf9 => "port 0xcf9",
            Self::Keyboard => "the keyboard controller",
        })
    }
}

/// What the hypervisor does for one port access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOutcome {
    /// Give the guest this value (emulated).
    Read(u32),
    /// Drop the write.
    Ignored,
    /// Read `width` bytes at `offset` of `bdf`'s config space and give them to the guest.
    PciConfigRead { bdf: PciBdf, offset: u8, width: u8 },
    /// Write `value` (`width` bytes) at `offset` of `bdf`'s config space.
    PciConfigWrite {
        bdf: PciBdf,
        offset: u8,
        width: u8,
        value: u32,
    },
    /// A configuration-space write to a function Linux does not own (the RT partition's, a
    /// host bridge it may only read, one that is not there), or with the address latch not
    /// naming a function (`bdf` `None`): dropped, and counted as a refusal.
    RefusedConfigWrite { bdf: Option<PciBdf>, offset: u8 },
    /// Read `width` bytes at `offset` of the emulated channel device's config space.
    EmulatedConfigRead { offset: u8, width: u8 },
    /// Write `value` (`width` bytes) at `offset` of the emulated channel device.
    EmulatedConfigWrite { offset: u8, width: u8, value: u32 },
    /// Linux armed or fed its watchdog (`crate::linux::watchdog::ib700`) for this long.
    WatchdogFeed { timeout_s: u64 },
    /// Linux disarmed its watchdog.
    WatchdogStop,
    /// Linux asked for S5: power the machine off.
    PowerOff,
    /// Linux asked to reset the machine.
    Reset { how: ResetKind },
    /// A read of a port Linux does not own: give the guest `value` (all ones).
    UnownedRead { port: u16, width: u8, value: u32 },
    /// A write of a port Linux does not own: dropped.
    UnownedWrite { port: u16, width: u8, value: u32 },
}

impl fmt::Display for IoOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Read(value) => write!(f, "emulated read {value:#x}"),
            Self::Ignored => f.write_str("write ignored"),
            Self::RefusedConfigWrite {
                bdf: Some(bdf),
                offset,
            } => {
                write!(f, "configuration write to {bdf} offset {offset:#x} refused")
            }
            Self::RefusedConfigWrite { bdf: None, offset } => {
                write!(
                    f,
                    "configuration write at offset {offset:#x} with no function selected refused"
                )
            }
            Self::PciConfigRead { bdf, offset, width } => {
                write!(f, "PCI {bdf} config read of {width} bytes at {offset:#x}")
            }
            Self::PciConfigWrite {
                bdf,
                offset,
                width,
                value,
            } => write!(
                f,
                "PCI {bdf} config write of {value:#x} ({width} bytes) at {offset:#x}"
            ),
            Self::EmulatedConfigRead { offset, width } => {
                write!(
                    f,
                    "channel device config read of {width} bytes at {offset:#x}"
                )
            }
            Self::EmulatedConfigWrite {
                offset,
                width,
                value,
            } => write!(
                f,
                "channel device config write of {value:#x} ({width} bytes) at {offset:#x}"
            ),
            Self::WatchdogFeed { timeout_s } => write!(f, "watchdog fed for {timeout_s} s"),
            Self::WatchdogStop => f.write_str("watchdog disarmed"),
            Self::PowerOff => f.write_str("power off (S5)"),
            Self::Reset { how } => write!(f, "reset through {how}"),
            Self::UnownedRead { port, width, .. } => {
                write!(f, "{width}-byte read of unowned port {port:#x}")
            }
            Self::UnownedWrite { port, width, value } => {
                write!(
                    f,
                    "{width}-byte write of {value:#x} to unowned port {port:#x}"
                )
            }
        }
    }
}

/// SLP_TYP of a PM1 control value.
fn slp_typ(value: u32) -> u8 {
    ((value >> SLP_TYP_SHIFT) & 0x7) as u8
}

/// All ones for an access of `width` bytes (1, 2 or 4).
pub(crate) fn ones(width: u8) -> u32 {
    match width {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

/// The Linux partition's emulated ports.
#[derive(Debug, Clone)]
pub struct LinuxIo<'a> {
    /// The PCI functions Linux owns (the config's `pci_devices`).
    devices: &'a [PciBdf],
    fadt: FadtIo,
    /// The emulated channel device's address, if there is one.
    emulated: Option<PciBdf>,
    /// The virtual 0xCF8 latch.
    address: u32,
}

impl<'a> LinuxIo<'a> {
    /// The ports of a Linux partition owning the PCI functions `devices`, on a machine whose
    /// FADT says `fadt`.
    pub fn new(devices: &'a [PciBdf], fadt: FadtIo) -> Self {
        Self {
            devices,
            fadt,
            emulated: None,
            address: 0,
        }
    }

    /// Puts the emulated channel device at `bdf` (a function no partition owns).
    pub fn with_emulated(mut self, bdf: PciBdf) -> Self {
        self.emulated = Some(bdf);
        self
    }

    /// Clears the virtual PCI address latch, as for a Linux that starts again.
    pub fn reset(&mut self) {
        self.address = 0;
    }

    /// The virtual PCI address latch, as Linux last wrote it.
    pub fn config_address(&self) -> u32 {
        self.address
    }

    /// One `IN` (`write` is `None`) or `OUT` of `width` bytes (1, 2 or 4) at `port`.
    pub fn access(&mut self, port: u16, width: u8, write: Option<u32>) -> IoOutcome {
        if !matches!(width, 1 | 2 | 4) {
            return unowned(port, width, write);
        }
        let write = write.map(|value| value & ones(width));
        if port == PCI_CONFIG_ADDRESS && width == 4 {
            return match write {
                Some(value) => {
                    self.address = value;
                    IoOutcome::Ignored
                }
                None => IoOutcome::Read(self.address),
            };
        }
        if (PCI_CONFIG_DATA..=PCI_CONFIG_DATA + 3).contains(&port) {
            return self.config_data(port, width, write);
        }
        let fadt = self.fadt;
        if Some(port) == fadt.pm1a_control || Some(port) == fadt.pm1b_control {
            return match write {
                None => IoOutcome::Read(SCI_EN),
                Some(value)
                    if value & SLP_EN != 0 && fadt.s5_sleep_type == Some(slp_typ(value)) =>
                {
                    IoOutcome::PowerOff
                }
                Some(_) => IoOutcome::Ignored,
            };
        }
        match (port, write) {
            (ib700::START, Some(level)) => {
                return IoOutcome::WatchdogFeed {
                    timeout_s: ib700::timeout_s(level as u8),
                };
            }
            (ib700::STOP, Some(_)) => return IoOutcome::WatchdogStop,
            _ => {}
        }
        match (width, write) {
            (1, Some(value)) => match self.reset_kind(port, value as u8) {
                Some(how) => IoOutcome::Reset { how },
                None => unowned(port, width, write),
            },
            _ => unowned(port, width, write),
        }
    }

    /// Which reset, if any, writing the byte `value` to `port` asks for.
    fn reset_kind(&self, port: u16, value: u8) -> Option<ResetKind> {
        if self.fadt.reset == Some(ResetRegister { port, value }) {
            Some(ResetKind::Fadt)
        } else if port == RESET_CONTROL && value & RESET_CPU != 0 {
            Some(ResetKind::Cf9)
        } else if port == KBC_COMMAND && value == KBC_RESET {
            Some(ResetKind::Keyboard)
        } else {
            None
        }
    }

    /// An access at 0xCFC..=0xCFF (`write` already cut to `width`).
    fn config_data(&self, port: u16, width: u8, write: Option<u32>) -> IoOutcome {
        let byte = (port - PCI_CONFIG_DATA) as u8;
        if !byte.is_multiple_of(width) {
            return unowned(port, width, write);
        }
        let (bdf, offset) = latched(self.address, byte);
        if bdf.is_some() && bdf == self.emulated {
            return match write {
                None => IoOutcome::EmulatedConfigRead { offset, width },
                Some(value) => IoOutcome::EmulatedConfigWrite {
                    offset,
                    width,
                    value,
                },
            };
        }
        if write.is_none()
            && let Some(placeholder) = bdf.filter(|&bdf| self.is_placeholder(bdf))
        {
            return if PLACEHOLDER_REGISTERS.contains(&(offset & 0xfc)) {
                IoOutcome::PciConfigRead {
                    bdf: placeholder,
                    offset,
                    width,
                }
            } else {
                IoOutcome::Read(0)
            };
        }
        let readable =
            bdf.filter(|bdf| self.devices.contains(bdf) || READ_ONLY_DEVICES.contains(bdf));
        let writable =
            bdf.filter(|bdf| self.devices.contains(bdf) && !READ_ONLY_DEVICES.contains(bdf));
        match write {
            None => match readable {
                Some(bdf) => IoOutcome::PciConfigRead { bdf, offset, width },
                None => IoOutcome::Read(ones(width)),
            },
            Some(value) => match writable {
                Some(bdf) => IoOutcome::PciConfigWrite {
                    bdf,
                    offset,
                    width,
                    value,
                },
                None => IoOutcome::RefusedConfigWrite { bdf, offset },
            },
        }
    }
}

impl LinuxIo<'_> {
    /// Whether `bdf` is function 0 of a device of which Linux owns another function but not
    /// this one: Linux's PCI scan looks at a device's other functions only when its function
    /// 0 answers (and says it has more), so Linux sees it as a placeholder.
    fn is_placeholder(&self, bdf: PciBdf) -> bool {
        bdf.function() == 0
            && !self.devices.contains(&bdf)
            && !READ_ONLY_DEVICES.contains(&bdf)
            && self
                .devices
                .iter()
                .any(|d| d.bus() == bdf.bus() && d.device() == bdf.device() && d.function() != 0)
    }
}

/// The function and register a configuration data access at byte `byte` of the data port
/// reaches, given the latch `address`: no function while the latch is disabled or has
/// reserved bits set.
pub(crate) fn latched(address: u32, byte: u8) -> (Option<PciBdf>, u8) {
    let a = address;
    let bdf = PciBdf::new(
        (a >> 16) as u8,
        (a >> 11) as u8 & 0x1f,
        (a >> 8) as u8 & 0x7,
    )
    .filter(|_| a & ADDRESS_ENABLE != 0 && a & ADDRESS_RESERVED == 0);
    (bdf, (a & 0xfc) as u8 | byte)
}

/// A port Linux does not own: reads are all ones, writes are dropped.
fn unowned(port: u16, width: u8, write: Option<u32>) -> IoOutcome {
    match write {
        None => IoOutcome::UnownedRead {
            port,
            width,
            value: ones(width),
        },
        Some(value) => IoOutcome::UnownedWrite { port, width, value },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bdf(bus: u8, device: u8, function: u8) -> PciBdf {
        PciBdf::new(bus, device, function).unwrap()
    }

    /// Linux owns 00:03.0 and 02:00.1; the FADT is QEMU's (PM1a control at 0x604, S5 type
    /// 0, reset by writing 0x06 to 0xcf9) with a PM1b at 0x608 added.
    const DEVICES: [PciBdf; 2] = [
        match PciBdf::new(0, 3, 0) {
            Some(b) => b,
            None => panic!(),
        },
        match PciBdf::new(2, 0, 1) {
            Some(b) => b,
            None => panic!(),
        },
    ];

    const FADT: FadtIo = FadtIo {
        pm1a_control: Some(0x604),
        pm1b_control: Some(0x608),
        s5_sleep_type: Some(0),
        reset: Some(ResetRegister {
            port: 0xcf9,
            value: 0x06,
        }),
    };

    fn io() -> LinuxIo<'static> {
        LinuxIo::new(&DEVICES, FADT)
    }

    fn address(bdf: PciBdf, register: u8) -> u32 {
        ADDRESS_ENABLE
            | u32::from(bdf.bus()) << 16
            | u32::from(bdf.device()) << 11
            | u32::from(bdf.function()) << 8
            | u32::from(register)
    }

    #[test]
    fn the_latch_is_virtual_and_reads_back() {
        let mut io = io();
        assert_eq!(io.access(0xcf8, 4, Some(0x8000_0000)), IoOutcome::Ignored);
        assert_eq!(io.access(0xcf8, 4, None), IoOutcome::Read(0x8000_0000));
        assert_eq!(io.config_address(), 0x8000_0000);
    }

    #[test]
    fn the_channel_device_is_emulated_and_its_neighbours_are_absent() {
        let dev = bdf(0xff, 0, 0);
        let mut io = io().with_emulated(dev);
        let _ = io.access(0xcf8, 4, Some(address(dev, 0x04)));
        assert_eq!(
            io.access(0xcfd, 1, Some(0x04)),
            IoOutcome::EmulatedConfigWrite {
                offset: 5,
                width: 1,
                value: 4
            }
        );
        assert_eq!(
            io.access(0xcfc, 4, None),
            IoOutcome::EmulatedConfigRead {
                offset: 4,
                width: 4
            }
        );
        // Another function of the same device, or the latch disabled: no device.
        let _ = io.access(0xcf8, 4, Some(address(bdf(0xff, 0, 1), 0)));
        assert_eq!(io.access(0xcfc, 4, None), IoOutcome::Read(u32::MAX));
        let _ = io.access(0xcf8, 4, Some(address(dev, 0) & !ADDRESS_ENABLE));
        assert_eq!(io.access(0xcfc, 4, None), IoOutcome::Read(u32::MAX));
    }

    #[test]
    fn function_0_of_a_device_linux_owns_part_of_is_a_placeholder() {
        // Linux owns 00:1f.3 but not 00:1f.0: 00:1f.0 answers with its identity, class and
        // header type only; 00:1f.1 (not Linux's) stays absent.
        let devices = [bdf(0, 0x1f, 3)];
        let mut io = LinuxIo::new(&devices, FADT);
        let lpc = bdf(0, 0x1f, 0);
        for (register, width, expected) in [
            (
                0x00,
                4,
                IoOutcome::PciConfigRead {
                    bdf: lpc,
                    offset: 0x00,
                    width: 4,
                },
            ),
            (
                0x08,
                4,
                IoOutcome::PciConfigRead {
                    bdf: lpc,
                    offset: 0x08,
                    width: 4,
                },
            ),
            (
                0x0c,
                1,
                IoOutcome::PciConfigRead {
                    bdf: lpc,
                    offset: 0x0e,
                    width: 1,
                },
            ),
            (0x04, 4, IoOutcome::Read(0)),
            (0x10, 4, IoOutcome::Read(0)),
            (0x3c, 2, IoOutcome::Read(0)),
        ] {
            let _ = io.access(0xcf8, 4, Some(address(lpc, register)));
            let port = if register == 0x0c { 0xcfe } else { 0xcfc };
            assert_eq!(
                io.access(port, width, None),
                expected,
                "register {register:#x}"
            );
        }
        let _ = io.access(0xcf8, 4, Some(address(lpc, 0x60)));
        assert_eq!(
            io.access(0xcfc, 4, Some(0x8080_8080)),
            IoOutcome::RefusedConfigWrite {
                bdf: Some(lpc),
                offset: 0x60
            }
        );
        let _ = io.access(0xcf8, 4, Some(address(bdf(0, 0x1f, 1), 0)));
        assert_eq!(io.access(0xcfc, 4, None), IoOutcome::Read(u32::MAX));
        // A device of which Linux owns nothing has no placeholder.
        let _ = io.access(0xcf8, 4, Some(address(bdf(0, 0x1e, 0), 0)));
        assert_eq!(io.access(0xcfc, 4, None), IoOutcome::Read(u32::MAX));
    }

    #[test]
    fn the_ib700_watchdog_ports_arm_feed_and_disarm() {
        let mut io = io();
        // Linux's ib700wdt writes the level as a byte; 13 is 4 s.
        assert_eq!(
            io.access(0x443, 1, Some(13)),
            IoOutcome::WatchdogFeed { timeout_s: 4 }
        );
        assert_eq!(io.access(0x441, 1, Some(0)), IoOutcome::WatchdogStop);
        assert!(matches!(
            io.access(0x443, 1, None),
            IoOutcome::UnownedRead { value: 0xff, .. }
        ));
    }

    #[test]
    fn non_dword_latch_accesses_are_unowned() {
        let mut io = io();
        // Linux's pci_check_type1 writes a byte to 0xcfb first.
        assert_eq!(
            io.access(0xcfb, 1, Some(1)),
            IoOutcome::UnownedWrite {
                port: 0xcfb,
                width: 1,
                value: 1
            }
        );
        assert_eq!(
            io.access(0xcf8, 2, None),
            IoOutcome::UnownedRead {
                port: 0xcf8,
                width: 2,
                value: 0xffff
            }
        );
        assert_eq!(io.config_address(), 0);
    }

    #[test]
    fn an_owned_function_is_read_and_written_at_every_width() {
        let mut io = io();
        let dev = DEVICES[1];
        io.access(0xcf8, 4, Some(address(dev, 0x10)));
        assert_eq!(
            io.access(0xcfc, 4, None),
            IoOutcome::PciConfigRead {
                bdf: dev,
                offset: 0x10,
                width: 4
            }
        );
        assert_eq!(
            io.access(0xcfe, 2, Some(0x1234_5678)),
            IoOutcome::PciConfigWrite {
                bdf: dev,
                offset: 0x12,
                width: 2,
                value: 0x5678
            }
        );
        assert_eq!(
            io.access(0xcff, 1, None),
            IoOutcome::PciConfigRead {
                bdf: dev,
                offset: 0x13,
                width: 1
            }
        );
    }

    #[test]
    fn misaligned_data_accesses_are_unowned() {
        let mut io = io();
        io.access(0xcf8, 4, Some(address(DEVICES[0], 0)));
        for (port, width) in [(0xcfd, 2), (0xcfd, 4), (0xcfe, 4), (0xcff, 2)] {
            assert!(matches!(
                io.access(port, width, None),
                IoOutcome::UnownedRead { .. }
            ));
        }
    }

    #[test]
    fn another_partitions_function_reads_as_absent() {
        let mut io = io();
        io.access(0xcf8, 4, Some(address(bdf(0, 3, 1), 0)));
        assert_eq!(io.access(0xcfc, 4, None), IoOutcome::Read(0xffff_ffff));
        assert_eq!(io.access(0xcfc, 2, None), IoOutcome::Read(0xffff));
        assert_eq!(
            io.access(0xcfc, 4, Some(0)),
            IoOutcome::RefusedConfigWrite {
                bdf: Some(bdf(0, 3, 1)),
                offset: 0
            }
        );
    }

    #[test]
    fn a_disabled_or_reserved_latch_addresses_nothing() {
        let mut io = io();
        io.access(0xcf8, 4, Some(address(DEVICES[0], 0) & !ADDRESS_ENABLE));
        assert_eq!(io.access(0xcfc, 4, None), IoOutcome::Read(0xffff_ffff));
        assert_eq!(
            io.access(0xcfc, 1, Some(0)),
            IoOutcome::RefusedConfigWrite {
                bdf: None,
                offset: 0
            }
        );
        io.access(0xcf8, 4, Some(address(DEVICES[0], 0) | 1 << 24));
        assert_eq!(io.access(0xcfc, 4, None), IoOutcome::Read(0xffff_ffff));
    }

    #[test]
    fn the_host_bridge_is_read_only() {
        let mut io = io();
        io.access(0xcf8, 4, Some(address(HOST_BRIDGE, 0x08)));
        assert_eq!(
            io.access(0xcfc, 4, None),
            IoOutcome::PciConfigRead {
                bdf: HOST_BRIDGE,
                offset: 0x08,
                width: 4
            }
        );
        let refused = |offset| IoOutcome::RefusedConfigWrite {
            bdf: Some(HOST_BRIDGE),
            offset,
        };
        assert_eq!(io.access(0xcfc, 4, Some(0)), refused(0x08));
        // Even when the config gives it to Linux.
        let mut owner = LinuxIo::new(&READ_ONLY_DEVICES, FADT);
        owner.access(0xcf8, 4, Some(address(HOST_BRIDGE, 0x04)));
        assert_eq!(owner.access(0xcfc, 2, Some(7)), refused(0x04));
    }

    #[test]
    fn s5_on_pm1a_or_pm1b_powers_off() {
        let mut io = io();
        assert_eq!(io.access(0x604, 2, None), IoOutcome::Read(SCI_EN));
        // Linux writes SLP_TYP first, then SLP_TYP | SLP_EN.
        assert_eq!(io.access(0x604, 2, Some(1)), IoOutcome::Ignored);
        assert_eq!(io.access(0x604, 2, Some(SLP_EN | 1)), IoOutcome::PowerOff);
        assert_eq!(io.access(0x608, 2, Some(SLP_EN)), IoOutcome::PowerOff);
        // Another sleep type (S3 here) is not a power-off.
        assert_eq!(
            io.access(0x604, 2, Some(SLP_EN | 5 << SLP_TYP_SHIFT)),
            IoOutcome::Ignored
        );
        let mut qemu_s5_7 = LinuxIo::new(
            &DEVICES,
            FadtIo {
                s5_sleep_type: Some(7),
                ..FADT
            },
        );
        assert_eq!(
            qemu_s5_7.access(0x604, 2, Some(SLP_EN | 7 << SLP_TYP_SHIFT)),
            IoOutcome::PowerOff
        );
    }

    #[test]
    fn without_an_s5_type_nothing_powers_off() {
        let mut io = LinuxIo::new(&DEVICES, FadtIo::default());
        assert!(matches!(
            io.access(0x604, 2, Some(SLP_EN)),
            IoOutcome::UnownedWrite { .. }
        ));
        let mut io = LinuxIo::new(
            &DEVICES,
            FadtIo {
                s5_sleep_type: None,
                ..FADT
            },
        );
        assert_eq!(io.access(0x604, 2, Some(SLP_EN)), IoOutcome::Ignored);
    }

    #[test]
    fn resets_through_fadt_cf9_and_keyboard_controller() {
        let mut io = io();
        assert_eq!(
            io.access(0xcf9, 1, Some(0x06)),
            IoOutcome::Reset {
                how: ResetKind::Fadt
            }
        );
        // Linux's reboot=pci: 0x02 selects a hard reset, 0x06 resets.
        assert_eq!(
            io.access(0xcf9, 1, Some(0x02)),
            IoOutcome::UnownedWrite {
                port: 0xcf9,
                width: 1,
                value: 0x02
            }
        );
        assert_eq!(
            io.access(0xcf9, 1, Some(0x0e)),
            IoOutcome::Reset {
                how: ResetKind::Cf9
            }
        );
        assert_eq!(
            io.access(0x64, 1, Some(0xfe)),
            IoOutcome::Reset {
                how: ResetKind::Keyboard
            }
        );
        assert!(matches!(
            io.access(0x64, 1, Some(0xd1)),
            IoOutcome::UnownedWrite { .. }
        ));
        assert!(matches!(
            io.access(0x64, 1, None),
            IoOutcome::UnownedRead { value: 0xff, .. }
        ));
        let mut elsewhere = LinuxIo::new(
            &DEVICES,
            FadtIo {
                reset: Some(ResetRegister {
                    port: 0xb2,
                    value: 0x42,
                }),
                ..FADT
            },
        );
        assert_eq!(
            elsewhere.access(0xb2, 1, Some(0x42)),
            IoOutcome::Reset {
                how: ResetKind::Fadt
            }
        );
        assert!(matches!(
            elsewhere.access(0xb2, 2, Some(0x42)),
            IoOutcome::UnownedWrite { .. }
        ));
    }

    #[test]
    fn other_ports_are_unowned_at_their_width() {
        let mut io = io();
        assert_eq!(
            io.access(0x61, 1, None),
            IoOutcome::UnownedRead {
                port: 0x61,
                width: 1,
                value: 0xff
            }
        );
        assert_eq!(
            io.access(0x3f8, 4, Some(0x41)),
            IoOutcome::UnownedWrite {
                port: 0x3f8,
                width: 4,
                value: 0x41
            }
        );
        assert_eq!(
            io.access(0x70, 3, None),
            IoOutcome::UnownedRead {
                port: 0x70,
                width: 3,
                value: 0xffff_ffff
            }
        );
    }

    #[test]
    fn outcomes_name_what_happened() {
        let text = std::format!(
            "{}",
            IoOutcome::UnownedWrite {
                port: 0x80,
                width: 1,
                value: 0x12
            }
        );
        assert_eq!(text, "1-byte write of 0x12 to unowned port 0x80");
        let text = std::format!(
            "{}",
            IoOutcome::Reset {
                how: ResetKind::Cf9
            }
        );
        assert_eq!(text, "reset through port 0xcf9");
    }

    /// One step of Linux: a latch write then a data access (mostly at Linux's functions,
    /// their neighbours and the host bridge), or any access at all.
    fn arb_step() -> impl Strategy<Value = std::vec::Vec<(u16, u8, Option<u32>)>> {
        let near = [
            HOST_BRIDGE,
            DEVICES[0],
            DEVICES[1],
            bdf(0, 3, 1),
            bdf(2, 0, 0),
            bdf(1, 0, 1),
        ];
        let latch = prop_oneof![
            3 => (proptest::sample::select(near.to_vec()), any::<u8>())
                .prop_map(|(bdf, register)| address(bdf, register)),
            1 => any::<u32>(),
        ];
        let width = prop_oneof![Just(1u8), Just(2), Just(4), any::<u8>()];
        let write = proptest::option::of(any::<u32>());
        let pair = (latch, 0xcfcu16..=0xcff, width.clone(), write.clone()).prop_map(
            |(latch, port, width, write)| {
                std::vec![(PCI_CONFIG_ADDRESS, 4, Some(latch)), (port, width, write)]
            },
        );
        let port = prop_oneof![
            2 => 0xcf8u16..=0xcff,
            1 => prop_oneof![Just(0x64u16), Just(0x604), Just(0x608)],
            1 => any::<u16>(),
        ];
        let raw = (port, width, write).prop_map(|access| std::vec![access]);
        prop_oneof![pair, raw]
    }

    proptest! {
        /// Whatever Linux does, config writes reach only the functions it owns, never the
        /// host bridge, and config reads only those, the host bridge, or a placeholder's
        /// identity, class and header registers (02:00.0, function 0 beside Linux's 02:00.1);
        /// every access stays within one dword.
        #[test]
        fn pci_config_reaches_only_owned_functions(
            steps in proptest::collection::vec(arb_step(), 0..200)
        ) {
            let mut io = io();
            for (port, width, write) in steps.into_iter().flatten() {
                match io.access(port, width, write) {
                    IoOutcome::PciConfigWrite { bdf, offset, width, value } => {
                        prop_assert!(DEVICES.contains(&bdf));
                        prop_assert_ne!(bdf, HOST_BRIDGE);
                        prop_assert!(u32::from(offset % 4) + u32::from(width) <= 4);
                        prop_assert_eq!(value & !ones(width), 0);
                    }
                    IoOutcome::PciConfigRead { bdf, offset, width } => {
                        let placeholder = bdf == PciBdf::new(2, 0, 0).unwrap()
                            && PLACEHOLDER_REGISTERS.contains(&(offset & 0xfc));
                        prop_assert!(DEVICES.contains(&bdf) || bdf == HOST_BRIDGE || placeholder);
                        prop_assert!(u32::from(offset % 4) + u32::from(width) <= 4);
                    }
                    _ => {}
                }
            }
        }
    }
}
