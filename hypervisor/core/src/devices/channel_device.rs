//! The channel device: an emulated PCI function through which the RT partition interrupts
//! Linux, so that a stock kernel consumes the interrupt with its own `uio_pci_generic` driver
//! and a Linux program blocked on a channel sleeps in `poll` on `/dev/uioN` instead of polling
//! the ring.
//!
//! Written by hand: it is a few registers of configuration space and a 150-byte ACPI table,
//! and no crate emulates either.
//!
//! # What Linux sees
//!
//! - **A host bridge of its own.** [`ssdt`] builds an ACPI SSDT that declares one more PCI
//!   root bridge (`PNP0A03`) whose only bus is the device's bus, with a `_PRT` that routes the
//!   device's INTA straight to a GSI. Linux scans that bus through configuration mechanism #1
//!   and finds the function at device 0, function 0. Routing through the bridge's own `_PRT`
//!   makes the GSI the hypervisor's choice on every platform, whatever the firmware's routing
//!   for its own buses says.
//! - **An ivshmem-style function**: the vendor, device and class of QEMU's `ivshmem` (which
//!   ACRN emulates too: a "shared memory" device that interrupts), with the subsystem ID
//!   [`SUBSYSTEM_ID`] naming this variant. Unlike ivshmem it has no BARs (the channels'
//!   memory is announced on the kernel command line) and no MSI-X: its one interrupt is
//!   INTx, which is what `uio_pci_generic` drives.
//! - **PCI 2.3 interrupt masking.** The command register's Interrupt Disable bit is
//!   writable and the status register's Interrupt Status bit says that a doorbell is
//!   pending, which is all `uio_pci_generic` asks of a device: its interrupt handler reads
//!   both, and when the status bit is set it sets Interrupt Disable and wakes the readers of
//!   `/dev/uioN`; the program re-enables the interrupt by clearing Interrupt Disable through
//!   the function's `config` file in sysfs.
//!
//! # Doorbell semantics
//!
//! A doorbell ([`ChannelDevice::raise`]) sets Interrupt Status. Masking (setting Interrupt
//! Disable while Interrupt Status is set) hands the pending doorbell to the driver and clears
//! Interrupt Status: the line is then low, so the level-triggered IOAPIC pin is not asserted
//! again at its EOI. A doorbell that comes while Interrupt Disable is set stays pending and
//! is delivered when the program clears it. So Linux takes at most one interrupt per
//! mask-unmask cycle of its own, however often the RT side rings: the device itself is the
//! rate limit, and no doorbell is lost, only merged with others (the waiter re-checks every
//! ring anyway).
//!
//! The line is delivered as an edge: the hypervisor sends the vector Linux programmed into the
//! pin's (virtual) IOAPIC entry as a fixed IPI when the line rises, when Interrupt Disable is
//! cleared with a doorbell pending, and when Linux unmasks the entry with the line high
//! ([`Delivery`]). The counters at [`COUNTERS_OFFSET`] (doorbells raised, interrupts
//! delivered) are readable in configuration space, for diagnostics and tests.

pub use bulkhead_abi::channel_device::{
    CLASS, COUNTERS_OFFSET, DEVICE_ID, REVISION, SUBSYSTEM_ID, SUBSYSTEM_VENDOR_ID, VENDOR_ID,
};

/// Command register bits.
pub mod command {
    /// I/O space enable (no BAR uses it; kept for Linux's enable and disable).
    pub const IO: u16 = 1 << 0;
    /// Memory space enable (likewise).
    pub const MEMORY: u16 = 1 << 1;
    /// Bus master enable (the device does no DMA).
    pub const BUS_MASTER: u16 = 1 << 2;
    /// INTx disable (PCI 2.3).
    pub const INTX_DISABLE: u16 = bulkhead_abi::channel_device::COMMAND_INTX_DISABLE;
    /// The bits a write can change.
    pub const WRITABLE: u16 = IO | MEMORY | BUS_MASTER | INTX_DISABLE;
}

/// Status register bit: an interrupt is pending (PCI 2.3).
pub const STATUS_INTERRUPT: u16 = 1 << 3;

/// Whether the hypervisor should send the interrupt to Linux now (if the pin's IOAPIC entry
/// is unmasked; if not, Linux's unmasking delivers it later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Delivery {
    /// The line rose: send the interrupt.
    Send,
    /// Nothing new for Linux.
    None,
}

/// The function's state: what Linux wrote and what is pending.
#[derive(Debug, Clone)]
pub struct ChannelDevice {
    command: u16,
    pending: bool,
    interrupt_line: u8,
    raised: u32,
    delivered: u32,
}

impl ChannelDevice {
    /// A function whose INTA is routed to `gsi` (reported in Interrupt Line when it fits).
    pub fn new(gsi: u32) -> Self {
        Self {
            command: 0,
            pending: false,
            interrupt_line: u8::try_from(gsi).unwrap_or(0xff),
            raised: 0,
            delivered: 0,
        }
    }

    /// As after a reset, for a Linux that starts again. A pending doorbell stays pending:
    /// the new Linux finds it when it enables the interrupt (its rings are re-checked anyway).
    pub fn reset(&mut self) {
        self.command = 0;
    }

    /// Whether the INTx line is asserted: a doorbell is pending and not masked.
    pub fn line(&self) -> bool {
        self.pending && self.command & command::INTX_DISABLE == 0
    }

    /// Doorbells raised and interrupts delivered so far.
    pub fn counts(&self) -> (u32, u32) {
        (self.raised, self.delivered)
    }

    /// The RT partition rang a doorbell toward Linux.
    pub fn raise(&mut self) -> Delivery {
        self.raised = self.raised.wrapping_add(1);
        let was = self.line();
        self.pending = true;
        if self.line() && !was {
            Delivery::Send
        } else {
            Delivery::None
        }
    }

    /// The hypervisor sent the interrupt.
    pub fn delivered(&mut self) {
        self.delivered = self.delivered.wrapping_add(1);
    }

    /// A configuration read of `width` bytes (1, 2 or 4, naturally aligned) at `offset`.
    pub fn read(&self, offset: u8, width: u8) -> u32 {
        let dword = self.dword(offset & 0xfc);
        let shift = 8 * u32::from(offset & 3);
        let mask = match width {
            1 => 0xff,
            2 => 0xffff,
            _ => u32::MAX,
        };
        (dword >> shift) & mask
    }

    fn dword(&self, offset: u8) -> u32 {
        let word = |lo: u16, hi: u16| u32::from(lo) | u32::from(hi) << 16;
        let bytes = |b: [u8; 4]| u32::from_le_bytes(b);
        let status = if self.pending { STATUS_INTERRUPT } else { 0 };
        match offset {
            0x00 => word(VENDOR_ID, DEVICE_ID),
            0x04 => word(self.command, status),
            0x08 => bytes([REVISION, CLASS[0], CLASS[1], CLASS[2]]),
            // Cache line size, latency timer, header type 0 (one function), no BIST.
            0x0c => 0,
            0x2c => word(SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID),
            // Interrupt line, pin INTA, no grant or latency needs.
            0x3c => bytes([self.interrupt_line, 1, 0, 0]),
            COUNTERS_OFFSET => self.raised,
            0x44 => self.delivered,
            // BARs (none implemented), CardBus, expansion ROM, capabilities: zero.
            _ => 0,
        }
    }

    /// A configuration write of `width` bytes (1, 2 or 4, naturally aligned) at `offset`:
    /// only the command register's writable bits and Interrupt Line change.
    pub fn write(&mut self, offset: u8, width: u8, value: u32) -> Delivery {
        let was = self.line();
        for i in 0..width.min(4) {
            let byte = (value >> (8 * u32::from(i))) as u8;
            match offset.wrapping_add(i) {
                0x04 => {
                    self.command = (self.command & 0xff00) | u16::from(byte) & command::WRITABLE
                }
                0x05 => {
                    self.command = (self.command & 0x00ff)
                        | (u16::from(byte) << 8) & command::WRITABLE & 0xff00
                }
                0x3c => self.interrupt_line = byte,
                _ => {}
            }
        }
        if self.command & command::INTX_DISABLE != 0 && self.pending {
            // The driver masked a pending doorbell: it has it now.
            self.pending = false;
        }
        if self.line() && !was {
            Delivery::Send
        } else {
            Delivery::None
        }
    }
}

/// The GSI for the device's INTA: the highest pin of the IOAPICs (`(gsi_base, pins)` each)
/// that no partition owns (`owned`), at 16 or above (GSIs below 16 are the ISA IRQs, which
/// Linux treats by their own rules) and below `limit`.
pub fn choose_gsi(ioapics: &[(u32, u32)], owned: impl Fn(u32) -> bool, limit: u32) -> Option<u32> {
    ioapics
        .iter()
        .flat_map(|&(base, pins)| base..base.saturating_add(pins))
        .filter(|&gsi| (16..limit).contains(&gsi) && !owned(gsi))
        .max()
}

/// The bus for the device's host bridge: the highest bus number from 255 down to 1 that
/// `taken` (a partition's device on it, or a function that answers there) does not rule out.
pub fn choose_bus(taken: impl Fn(u8) -> bool) -> Option<u8> {
    (1..=u8::MAX).rev().find(|&bus| !taken(bus))
}

// ---------------------------------------------------------------------------------------------
// The SSDT that declares the device's host bridge.

/// Largest table [`ssdt`] writes.
pub const SSDT_MAX_LEN: usize = 192;

const HEADER_LEN: usize = 36;

/// AML opcodes and prefixes used here (ACPI 6.5, chapter 20).
mod aml {
    pub const ZERO: u8 = 0x00;
    pub const ONE: u8 = 0x01;
    pub const NAME: u8 = 0x08;
    pub const BYTE: u8 = 0x0a;
    pub const WORD: u8 = 0x0b;
    pub const DWORD: u8 = 0x0c;
    pub const SCOPE: u8 = 0x10;
    pub const BUFFER: u8 = 0x11;
    pub const PACKAGE: u8 = 0x12;
    pub const EXT: u8 = 0x5b;
    pub const DEVICE: u8 = 0x82;
    pub const ROOT: u8 = 0x5c;
}

/// Bytes being assembled, with room for the largest table.
struct Aml {
    buf: [u8; SSDT_MAX_LEN],
    len: usize,
}

impl Aml {
    fn new() -> Self {
        Self {
            buf: [0; SSDT_MAX_LEN],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn put(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(SSDT_MAX_LEN);
        self.buf[self.len..end].copy_from_slice(&bytes[..end - self.len]);
        self.len = end;
    }

    /// An integer in its shortest constant encoding.
    fn integer(&mut self, v: u32) {
        match v {
            0 => self.put(&[aml::ZERO]),
            1 => self.put(&[aml::ONE]),
            2..=0xff => self.put(&[aml::BYTE, v as u8]),
            0x100..=0xffff => {
                self.put(&[aml::WORD]);
                self.put(&(v as u16).to_le_bytes());
            }
            _ => {
                self.put(&[aml::DWORD]);
                self.put(&v.to_le_bytes());
            }
        }
    }

    /// `opcode` (one or two bytes), then PkgLength, then `body`. PkgLength counts its own
    /// bytes and the body; one byte up to 63, two up to 4095.
    fn package(&mut self, opcode: &[u8], body: &[u8]) {
        self.put(opcode);
        let one = 1 + body.len();
        if one < 0x40 {
            self.put(&[one as u8]);
        } else {
            let two = 2 + body.len();
            self.put(&[0x40 | (two & 0xf) as u8, (two >> 4) as u8]);
        }
        self.put(body);
    }
}

/// The SSDT declaring the host bridge `\_SB.BHCD` of bus `bus`, whose `_PRT` routes INTA of
/// device 0 to `gsi`. The table's checksum is set.
pub fn ssdt(bus: u8, gsi: u32) -> ([u8; SSDT_MAX_LEN], usize) {
    // _CRS: a Word Address Space Descriptor for the bus range bus..=bus (producer, fixed
    // minimum and maximum), then the end tag.
    let mut crs = [0u8; 18];
    crs[0] = 0x88;
    crs[1..3].copy_from_slice(&13u16.to_le_bytes());
    crs[3] = 2; // bus number range
    crs[4] = 0b1100; // min fixed, max fixed, positive decode, producer
    crs[8..10].copy_from_slice(&u16::from(bus).to_le_bytes());
    crs[10..12].copy_from_slice(&u16::from(bus).to_le_bytes());
    crs[14..16].copy_from_slice(&1u16.to_le_bytes());
    crs[16] = 0x79; // end tag, checksum 0 ("ignore")

    let mut buffer = Aml::new();
    buffer.integer(crs.len() as u32);
    buffer.put(&crs);

    // _PRT: { { 0x0000FFFF (device 0, any function), 0 (INTA), 0 (no link), gsi } }.
    let mut entry = Aml::new();
    entry.put(&[4]);
    entry.put(&[aml::DWORD]);
    entry.put(&0x0000_ffffu32.to_le_bytes());
    entry.integer(0);
    entry.integer(0);
    entry.integer(gsi);
    let mut prt = Aml::new();
    prt.put(&[1]);
    prt.package(&[aml::PACKAGE], entry.bytes());

    let mut device = Aml::new();
    device.put(b"BHCD");
    device.put(&[aml::NAME]);
    device.put(b"_HID");
    // EISAID("PNP0A03"), a PCI host bridge.
    device.put(&[aml::DWORD, 0x41, 0xd0, 0x0a, 0x03]);
    device.put(&[aml::NAME]);
    device.put(b"_UID");
    device.put(&[aml::BYTE, 0xbc]);
    device.put(&[aml::NAME]);
    device.put(b"_BBN");
    device.put(&[aml::BYTE, bus]);
    device.put(&[aml::NAME]);
    device.put(b"_CRS");
    device.package(&[aml::BUFFER], buffer.bytes());
    device.put(&[aml::NAME]);
    device.put(b"_PRT");
    device.package(&[aml::PACKAGE], prt.bytes());

    let mut scope = Aml::new();
    scope.put(&[aml::ROOT]);
    scope.put(b"_SB_");
    scope.package(&[aml::EXT, aml::DEVICE], device.bytes());

    let mut table = Aml::new();
    table.put(&[0; HEADER_LEN]);
    table.package(&[aml::SCOPE], scope.bytes());
    let len = table.len;
    let h = &mut table.buf[..HEADER_LEN];
    h[..4].copy_from_slice(b"SSDT");
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    h[8] = 2; // revision: 64-bit integers
    h[10..16].copy_from_slice(b"BLKHD ");
    h[16..24].copy_from_slice(b"CHANNELS");
    h[24..28].copy_from_slice(&1u32.to_le_bytes());
    h[28..32].copy_from_slice(b"BLKH");
    h[32..36].copy_from_slice(&1u32.to_le_bytes());
    let sum = table.buf[..len].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    table.buf[9] = 0u8.wrapping_sub(sum);
    (table.buf, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uio_handler(d: &mut ChannelDevice) -> bool {
        // uio_pci_generic's handler: a dword read at 4, then a word write of the command
        // with Interrupt Disable set when Interrupt Status was.
        let dword = d.read(4, 4);
        if dword >> 16 & u32::from(STATUS_INTERRUPT) == 0 {
            return false;
        }
        let cmd = dword as u16 | command::INTX_DISABLE;
        assert_eq!(d.write(4, 2, cmd.into()), Delivery::None);
        true
    }

    fn unmask(d: &mut ChannelDevice) -> Delivery {
        // What a program writes to the `config` file: the command's high byte, cleared.
        d.write(5, 1, 0)
    }

    #[test]
    fn identifies_as_an_ivshmem_style_function_with_inta() {
        let d = ChannelDevice::new(23);
        assert_eq!(d.read(0, 2), 0x1af4);
        assert_eq!(d.read(2, 2), 0x1110);
        assert_eq!(d.read(0, 4), 0x1110_1af4);
        assert_eq!(d.read(0x0b, 1), 0x05, "class: memory controller");
        assert_eq!(d.read(0x0e, 1), 0, "header type 0, single function");
        assert_eq!(d.read(0x2e, 2), u32::from(SUBSYSTEM_ID));
        assert_eq!(d.read(0x3c, 1), 23);
        assert_eq!(d.read(0x3d, 1), 1, "INTA");
        for bar in (0x10..0x28).step_by(4) {
            assert_eq!(d.read(bar, 4), 0, "no BAR");
        }
        assert_eq!(d.read(0x34, 1), 0, "no capabilities");
        assert_eq!(ChannelDevice::new(300).read(0x3c, 1), 0xff, "unknown line");
    }

    #[test]
    fn interrupt_disable_is_writable_as_pci_2_3_masking_needs() {
        // Linux's pci_intx_mask_broken: toggle, read back, restore.
        let mut d = ChannelDevice::new(23);
        let orig = d.read(4, 2);
        let _ = d.write(4, 2, orig ^ u32::from(command::INTX_DISABLE));
        assert_eq!(d.read(4, 2), orig ^ u32::from(command::INTX_DISABLE));
        let _ = d.write(4, 2, orig);
        assert_eq!(d.read(4, 2), orig);
        // Read-only registers stay.
        let _ = d.write(0, 4, 0);
        let _ = d.write(0x10, 4, u32::MAX);
        let _ = d.write(6, 2, 0xffff);
        assert_eq!(d.read(0, 4), 0x1110_1af4);
        assert_eq!(d.read(0x10, 4), 0);
        assert_eq!(d.read(6, 2), 0);
        let _ = d.write(4, 2, 0xffff);
        assert_eq!(d.read(4, 2), u32::from(command::WRITABLE));
    }

    #[test]
    fn one_interrupt_per_mask_cycle_and_no_doorbell_lost() {
        let mut d = ChannelDevice::new(23);
        assert_eq!(d.raise(), Delivery::Send, "enabled at reset");
        assert_eq!(d.raise(), Delivery::None, "the line is already high");
        assert!(uio_handler(&mut d));
        assert!(!d.line());
        assert_eq!(d.read(6, 2) & u32::from(STATUS_INTERRUPT), 0, "handed over");
        assert!(!uio_handler(&mut d), "a second handler call finds nothing");
        // Doorbells while masked stay pending ...
        assert_eq!(d.raise(), Delivery::None);
        assert_eq!(d.raise(), Delivery::None);
        assert_ne!(d.read(6, 2) & u32::from(STATUS_INTERRUPT), 0);
        // ... and come when the program unmasks.
        assert_eq!(unmask(&mut d), Delivery::Send);
        assert!(uio_handler(&mut d));
        assert_eq!(unmask(&mut d), Delivery::None, "nothing pending");
        assert_eq!(d.counts().0, 4);
        assert_eq!(d.read(COUNTERS_OFFSET, 4), 4);
        d.delivered();
        assert_eq!(d.read(COUNTERS_OFFSET + 4, 4), 1);
    }

    #[test]
    fn reset_keeps_a_pending_doorbell_for_the_next_linux() {
        let mut d = ChannelDevice::new(23);
        let _ = d.write(5, 1, 0x04);
        assert_eq!(d.raise(), Delivery::None, "masked");
        d.reset();
        assert!(d.line(), "unmasked by the reset, still pending");
    }

    proptest! {
        /// Whatever Linux writes and however often the RT side rings: reads never panic,
        /// `Send` only comes when the line rises, and the line is low after each `Send`
        /// once the handler ran.
        #[test]
        fn sends_only_on_rising_edges(ops in proptest::collection::vec((0u8..4, any::<u8>(), any::<u32>()), 0..200)) {
            let mut d = ChannelDevice::new(23);
            for (op, offset, value) in ops {
                let before = d.line();
                let delivery = match op {
                    0 => d.raise(),
                    1 => d.write(offset & 0xfc, 4, value),
                    2 => d.write(offset & 0xfe, 2, value),
                    _ => d.write(offset, 1, value),
                };
                let _ = d.read(offset, 1);
                prop_assert_eq!(delivery == Delivery::Send, !before && d.line());
            }
        }
    }

    #[test]
    fn picks_the_highest_free_pin_above_the_isa_irqs_and_the_highest_free_bus() {
        let two = [(0, 24), (24, 16)];
        assert_eq!(choose_gsi(&two, |g| g == 39, 64), Some(38));
        assert_eq!(choose_gsi(&two, |_| false, 32), Some(31), "below the limit");
        assert_eq!(choose_gsi(&[(0, 24)], |g| g >= 16, 64), None);
        assert_eq!(choose_gsi(&[], |_| false, 64), None);
        assert_eq!(choose_bus(|b| b >= 0xfe), Some(0xfd));
        assert_eq!(choose_bus(|_| true), None);
    }

    /// Reads a PkgLength at `at`: (value, bytes used).
    fn pkg_length(t: &[u8], at: usize) -> (usize, usize) {
        let lead = t[at];
        let follow = (lead >> 6) as usize;
        if follow == 0 {
            return ((lead & 0x3f) as usize, 1);
        }
        let mut v = (lead & 0xf) as usize;
        for i in 0..follow {
            v |= (t[at + 1 + i] as usize) << (4 + 8 * i);
        }
        (v, 1 + follow)
    }

    #[test]
    fn ssdt_is_a_well_formed_table() {
        for (bus, gsi) in [(0xff, 23), (0x80, 16), (1, 255), (0xfe, 0x1_0000)] {
            let (t, len) = ssdt(bus, gsi);
            let t = &t[..len];
            assert_eq!(&t[..4], b"SSDT");
            assert_eq!(
                u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize,
                len
            );
            assert_eq!(t.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0, "checksum");
            // The Scope's PkgLength covers the rest of the table exactly.
            assert_eq!(t[36], aml::SCOPE);
            let (scope_len, _) = pkg_length(t, 37);
            assert_eq!(37 + scope_len, len);
            let at = t.windows(4).position(|w| w == b"\\_SB").unwrap();
            assert_eq!(at, 36 + 1 + pkg_length(t, 37).1);
            // The device and its names.
            let dev = t
                .windows(2)
                .position(|w| w == [aml::EXT, aml::DEVICE])
                .unwrap();
            let (dev_len, used) = pkg_length(t, dev + 2);
            assert_eq!(
                dev + 2 + dev_len,
                len,
                "the device is the scope's last object"
            );
            assert_eq!(&t[dev + 2 + used..dev + 6 + used], b"BHCD");
            for name in [b"_HID", b"_UID", b"_BBN", b"_CRS", b"_PRT"] {
                assert!(t.windows(4).any(|w| w == name), "{name:?}");
            }
            let bbn = t.windows(4).position(|w| w == b"_BBN").unwrap();
            assert_eq!(&t[bbn + 4..bbn + 6], &[aml::BYTE, bus]);
            // The bus range in _CRS.
            let crs = t.windows(2).position(|w| w == [0x88, 13]).unwrap();
            assert_eq!(&t[crs + 8..crs + 12], &[bus, 0, bus, 0]);
            // The _PRT entry's last element is the GSI.
            let prt = t.windows(4).position(|w| w == b"_PRT").unwrap();
            let entry = &t[prt + 4..];
            assert_eq!(entry[0], aml::PACKAGE);
            let tail = &t[len - 5..];
            match gsi {
                0x100.. if gsi > 0xffff => assert_eq!(tail, [aml::DWORD, 0, 0, 1, 0]),
                _ if gsi >= 0x100 => {
                    assert_eq!(&tail[2..], [aml::WORD, gsi as u8, (gsi >> 8) as u8])
                }
                _ => assert_eq!(&tail[3..], [aml::BYTE, gsi as u8]),
            }
        }
    }
}
