//! Linux's view of an IOAPIC: which of its register accesses reach the hardware.
//!
//! Both partitions' pins sit in the same IOAPICs, so Linux may not program them freely: its
//! EPT leaves each IOAPIC's MMIO page out, the hypervisor decodes every access and asks
//! [`IoApicView::access`] what to do. Linux sees the whole IOAPIC (ID, version and every
//! redirection entry), but only the pins (GSIs) the config gives it are really its own:
//!
//! - IOREGSEL is virtual: a write only selects, a read returns the selection.
//! - Reads through IOWIN reach the hardware, except the redirection entries of pins Linux
//!   does not own, which read as masked ([`FOREIGN_ENTRY_LOW`], high dword 0).
//! - Writes through IOWIN reach the hardware only for the entries of Linux's pins, and only
//!   when the entry cannot deliver outside Linux's CPUs. Exactly what is checked:
//!   - a low dword: the delivery mode is fixed or lowest priority (never SMI, NMI, INIT,
//!     ExtINT or a reserved mode), masked or not; and when it leaves the pin unmasked, the
//!     pin's high dword has been written since start-up and its destination (bits 31:24) is
//!     allowed in this low dword's destination mode (bit 11);
//!   - a high dword: bits 23:0 are zero (no extended destination ID, no interrupt-remapping
//!     format) and the destination is allowed in the destination mode of the pin's current
//!     low dword, masked or not.
//!
//!   The hardware entry of a Linux pin therefore only ever changes through writes that
//!   passed these checks, so whenever it is unmasked it aims at Linux's CPUs. Which
//!   destinations are Linux's is the hypervisor's call, through [`Destinations`].
//! - A write of the EOI register (IOAPIC version 0x20 and later) is forwarded when its
//!   vector is that of a Linux pin's entry on this IOAPIC. The EOI register clears Remote
//!   IRR on every entry with the vector, so an RT pin given the same vector on the same
//!   IOAPIC would be affected too: vectors are per CPU, and nothing here prevents that.
//! - Everything else is refused: a refused write is dropped, a refused read returns
//!   [`REFUSED_READ`].
//!
//! - An emulated pin ([`IoApicView::with_emulated_pin`]: the channel device's GSI, owned by
//!   no partition) is Linux's in every check above, but its entry lives only here: reads
//!   return what Linux wrote, accepted writes are [`IoApicAction::Emulated`] and never reach
//!   the hardware (whose entry stays masked), and an EOI of its vector is dropped (the
//!   hypervisor delivers it as an edge, so there is no Remote IRR to clear).
//!
//! The view assumes every entry of Linux's pins is masked when Linux starts (the hypervisor
//! masks every entry it hands out): the low-dword shadow starts masked, in physical mode.

use core::fmt;

use bulkhead_config::MAX_IOAPIC_PIN;

/// Offset of IOREGSEL, the register select, in the IOAPIC's MMIO page.
pub const IOREGSEL: u64 = 0x00;
/// Offset of IOWIN, the window onto the selected register.
pub const IOWIN: u64 = 0x10;
/// Offset of the EOI register (version 0x20 and later).
pub const EOI: u64 = 0x40;

/// Register indices selected through IOREGSEL.
pub mod reg {
    /// IOAPIC ID.
    pub const ID: u8 = 0x00;
    /// Version: bits 7:0 the version, bits 23:16 the highest redirection entry.
    pub const VERSION: u8 = 0x01;
    /// Arbitration ID.
    pub const ARBITRATION: u8 = 0x02;
    /// Low dword of redirection entry 0; entry n's low dword is `REDIRECTION + 2n`, its
    /// high dword the next index.
    pub const REDIRECTION: u8 = 0x10;
}

/// Most GSIs a partition can own: config pins are GSIs `0..=MAX_IOAPIC_PIN`.
pub const MAX_GSIS: usize = MAX_IOAPIC_PIN as usize + 1;

/// What a read of a redirection entry's low dword returns for a pin Linux does not own:
/// masked (bit 16), everything else zero. The high dword reads as zero.
pub const FOREIGN_ENTRY_LOW: u32 = MASKED;

/// What a refused read returns to the guest.
pub const REFUSED_READ: u32 = 0xffff_ffff;

/// First IOAPIC version with an EOI register.
const EOI_MIN_VERSION: u8 = 0x20;

/// Low-dword bits (Intel 82093AA datasheet 3.2.4).
const MASKED: u32 = 1 << 16;
const LOGICAL: u32 = 1 << 11;
const DELIVERY_SHIFT: u32 = 8;
/// Delivery modes an entry of Linux may use: fixed and lowest priority.
const DELIVERY_FIXED: u32 = 0;
const DELIVERY_LOWEST_PRIORITY: u32 = 1;
/// High-dword bits below the 8-bit destination: reserved on a plain IOAPIC, used by
/// extended destination IDs and the interrupt-remapping format.
const HIGH_RESERVED: u32 = 0x00ff_ffff;

/// Which interrupt destinations are Linux's, as the hypervisor sees them.
pub trait Destinations {
    /// Whether an entry with destination `dest_apic_id` (the high dword's bits 31:24) in
    /// physical mode, or in logical mode when `logical`, reaches only Linux's CPUs. A
    /// logical destination is allowed only when every CPU it could reach is Linux's.
    fn destination_allowed(&self, dest_apic_id: u32, logical: bool) -> bool;
}

impl<F: Fn(u32, bool) -> bool> Destinations for F {
    fn destination_allowed(&self, dest_apic_id: u32, logical: bool) -> bool {
        self(dest_apic_id, logical)
    }
}

/// Why an access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a 32-bit access at IOREGSEL, IOWIN or EOI (a read of EOI included).
    Access { offset: u64, width: u8 },
    /// A write of the EOI register on an IOAPIC older than version 0x20, which has none.
    NoEoiRegister { version: u8 },
    /// A write of the EOI register with a vector no entry of Linux's pins uses.
    EoiVector { vector: u8 },
    /// A write of a register that is not the redirection entry of a pin (ID, version,
    /// arbitration, or past the last entry).
    Register { index: u8 },
    /// A read of a register the IOAPIC does not define (between arbitration and the first
    /// entry, or past the last entry): only defined registers reach the hardware.
    UndefinedRegister { index: u8 },
    /// A write of the redirection entry of a pin Linux does not own.
    ForeignPin { gsi: u32 },
    /// A delivery mode other than fixed or lowest priority.
    DeliveryMode { gsi: u32, mode: u8 },
    /// A high dword with reserved bits (23:0) set.
    ReservedBits { gsi: u32, high: u32 },
    /// An unmask before the pin's high dword (its destination) was ever written.
    DestinationUnset { gsi: u32 },
    /// A destination that may reach CPUs outside the Linux partition.
    Destination { gsi: u32, dest: u32, logical: bool },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Access { offset, width } => write!(
                f,
                "{width}-byte access at offset {offset:#x} is not a 32-bit IOREGSEL, IOWIN or EOI access"
            ),
            Self::NoEoiRegister { version } => {
                write!(f, "IOAPIC version {version:#x} has no EOI register")
            }
            Self::EoiVector { vector } => {
                write!(f, "EOI of vector {vector} used by no pin Linux owns")
            }
            Self::UndefinedRegister { index } => {
                write!(f, "register {index:#x} is not one this IOAPIC defines")
            }
            Self::Register { index } => {
                write!(f, "register {index:#x} is not a writable redirection entry")
            }
            Self::ForeignPin { gsi } => write!(f, "GSI {gsi} is not Linux's"),
            Self::DeliveryMode { gsi, mode } => {
                write!(f, "GSI {gsi}: delivery mode {mode} is not allowed")
            }
            Self::ReservedBits { gsi, high } => {
                write!(f, "GSI {gsi}: high dword {high:#x} sets reserved bits")
            }
            Self::DestinationUnset { gsi } => {
                write!(f, "GSI {gsi}: unmasked before its destination was written")
            }
            Self::Destination { gsi, dest, logical } => write!(
                f,
                "GSI {gsi}: {} destination {dest:#x} may reach a CPU outside Linux",
                if logical { "logical" } else { "physical" }
            ),
        }
    }
}

/// What the hypervisor does for one access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoApicAction {
    /// IOREGSEL was written; nothing to do in hardware.
    WriteSelect,
    /// Give the guest `value` without touching the hardware (IOREGSEL, or an entry of a
    /// pin Linux does not own).
    ReadValue { value: u32 },
    /// Read register `index` of the hardware and give the guest the value.
    ReadRegister { index: u8 },
    /// Write `value` to register `index` of the hardware.
    WriteRegister { index: u8, value: u32 },
    /// Write `vector` to the hardware's EOI register.
    Eoi { vector: u8 },
    /// The entry of the emulated pin `gsi` changed (the hardware is not touched): the
    /// hypervisor delivers a pending interrupt if Linux just unmasked it.
    Emulated { gsi: u32 },
    /// A write that changes nothing Linux could notice is dropped without complaint: it
    /// masks (or clears the destination of) a pin Linux does not own, as Linux does to
    /// every pin at boot.
    Dropped,
    /// Do nothing in hardware: a write is dropped; for a read, `reply` is what the guest
    /// gets ([`REFUSED_READ`]).
    Refused { reason: Refusal, reply: Option<u32> },
}

/// A set of GSIs `0..MAX_GSIS`.
#[derive(Debug, Clone, Copy, Default)]
struct GsiSet([u64; MAX_GSIS.div_ceil(64)]);

impl GsiSet {
    fn insert(&mut self, gsi: u32) {
        if (gsi as usize) < MAX_GSIS {
            self.0[gsi as usize / 64] |= 1 << (gsi % 64);
        }
    }

    fn contains(&self, gsi: u32) -> bool {
        (gsi as usize) < MAX_GSIS && self.0[gsi as usize / 64] & (1 << (gsi % 64)) != 0
    }
}

/// Linux's view of one IOAPIC.
#[derive(Debug, Clone)]
pub struct IoApicView {
    gsi_base: u32,
    pins: u32,
    version: u8,
    /// The virtual IOREGSEL.
    select: u8,
    /// Linux's GSIs on this IOAPIC.
    linux: GsiSet,
    /// Linux's GSIs whose high dword has been written.
    high_written: GsiSet,
    /// Linux's GSIs whose entry is emulated (a subset of `linux`).
    emulated: GsiSet,
    /// The hardware entries of Linux's pins, by GSI, as last written.
    low: [u32; MAX_GSIS],
    high: [u32; MAX_GSIS],
}

impl IoApicView {
    /// The view of the IOAPIC whose first pin is `gsi_base` and whose version register
    /// (index 1) read `version_register`, for a Linux partition owning the GSIs
    /// `linux_gsis` (the config's `ioapic_pins`; those of other IOAPICs are left out).
    pub fn new(gsi_base: u32, version_register: u32, linux_gsis: &[u32]) -> Self {
        let pins = ((version_register >> 16) & 0xff) + 1;
        let mut linux = GsiSet::default();
        for &gsi in linux_gsis {
            if gsi >= gsi_base && gsi - gsi_base < pins {
                linux.insert(gsi);
            }
        }
        Self {
            gsi_base,
            pins,
            version: version_register as u8,
            select: 0,
            linux,
            high_written: GsiSet::default(),
            emulated: GsiSet::default(),
            low: [MASKED; MAX_GSIS],
            high: [0; MAX_GSIS],
        }
    }

    /// Forgets everything Linux wrote, as for a Linux that starts again (the caller masks
    /// Linux's pins in the hardware, as before the first start).
    pub fn reset(&mut self) {
        self.select = 0;
        self.high_written = GsiSet::default();
        self.low = [MASKED; MAX_GSIS];
        self.high = [0; MAX_GSIS];
    }

    /// Emulates the entry of `gsi` for Linux (when the pin is on this IOAPIC): the channel
    /// device's pin, which no partition owns.
    pub fn with_emulated_pin(mut self, gsi: u32) -> Self {
        if self.on_this_ioapic(gsi) {
            self.linux.insert(gsi);
            self.emulated.insert(gsi);
        }
        self
    }

    fn on_this_ioapic(&self, gsi: u32) -> bool {
        gsi >= self.gsi_base && gsi - self.gsi_base < self.pins
    }

    /// The entry of the emulated pin `gsi` as Linux last wrote it (low dword, high dword),
    /// when it is unmasked with a destination written.
    pub fn emulated_entry(&self, gsi: u32) -> Option<(u32, u32)> {
        let g = gsi as usize;
        (self.emulated.contains(gsi)
            && self.high_written.contains(gsi)
            && self.low.get(g)? & MASKED == 0)
            .then(|| (self.low[g], self.high[g]))
    }

    /// The GSI of the first pin.
    pub fn gsi_base(&self) -> u32 {
        self.gsi_base
    }

    /// Number of redirection entries.
    pub fn pins(&self) -> u32 {
        self.pins
    }

    /// Whether Linux owns `gsi` on this IOAPIC.
    pub fn owns(&self, gsi: u32) -> bool {
        self.linux.contains(gsi)
    }

    /// One access by Linux: `width` bytes at `offset` in the MMIO page, a write of the
    /// value in `write` or a read. `cpus` says which destinations are Linux's.
    pub fn access(
        &mut self,
        offset: u64,
        width: u8,
        write: Option<u32>,
        cpus: &impl Destinations,
    ) -> IoApicAction {
        let refuse = |reason| IoApicAction::Refused {
            reason,
            reply: write.is_none().then_some(REFUSED_READ),
        };
        match (offset, width, write) {
            (IOREGSEL, 4, Some(value)) => {
                // IOREGSEL is 8 bits wide; the rest is reserved.
                self.select = value as u8;
                IoApicAction::WriteSelect
            }
            (IOREGSEL, 4, None) => IoApicAction::ReadValue {
                value: self.select.into(),
            },
            (IOWIN, 4, None) => match self.read_window() {
                Ok(action) => action,
                Err(reason) => refuse(reason),
            },
            (IOWIN, 4, Some(value)) => match self.write_window(value, cpus) {
                Ok(action) => action,
                Err(reason) => refuse(reason),
            },
            (EOI, 4, Some(value)) => match self.eoi(value as u8) {
                Ok(action) => action,
                Err(reason) => refuse(reason),
            },
            _ => refuse(Refusal::Access { offset, width }),
        }
    }

    /// The pin's GSI and whether `index` is its high dword, if `index` selects a
    /// redirection entry of this IOAPIC.
    fn entry(&self, index: u8) -> Option<(u32, bool)> {
        let n = u32::from(index.checked_sub(reg::REDIRECTION)?);
        (n / 2 < self.pins).then_some((self.gsi_base.saturating_add(n / 2), n % 2 == 1))
    }

    fn read_window(&self) -> Result<IoApicAction, Refusal> {
        let index = self.select;
        Ok(match self.entry(index) {
            Some((gsi, high)) if !self.owns(gsi) => IoApicAction::ReadValue {
                value: if high { 0 } else { FOREIGN_ENTRY_LOW },
            },
            Some((gsi, high)) if self.emulated.contains(gsi) => IoApicAction::ReadValue {
                value: if high {
                    self.high[gsi as usize]
                } else {
                    self.low[gsi as usize]
                },
            },
            Some(_) => IoApicAction::ReadRegister { index },
            None if matches!(index, reg::ID | reg::VERSION | reg::ARBITRATION) => {
                IoApicAction::ReadRegister { index }
            }
            None => return Err(Refusal::UndefinedRegister { index }),
        })
    }

    fn write_window(
        &mut self,
        value: u32,
        cpus: &impl Destinations,
    ) -> Result<IoApicAction, Refusal> {
        let index = self.select;
        let (gsi, is_high) = self.entry(index).ok_or(Refusal::Register { index })?;
        if !self.owns(gsi) {
            // Foreign entries read as masked with destination 0: writing that back is a no-op.
            let harmless = if is_high {
                value == 0
            } else {
                value & MASKED != 0
            };
            return if harmless {
                Ok(IoApicAction::Dropped)
            } else {
                Err(Refusal::ForeignPin { gsi })
            };
        }
        let g = gsi as usize;
        if is_high {
            if value & HIGH_RESERVED != 0 {
                return Err(Refusal::ReservedBits { gsi, high: value });
            }
            check_destination(gsi, self.low[g], value, cpus)?;
            self.high[g] = value;
            self.high_written.insert(gsi);
        } else {
            let mode = (value >> DELIVERY_SHIFT) & 0x7;
            if mode != DELIVERY_FIXED && mode != DELIVERY_LOWEST_PRIORITY {
                return Err(Refusal::DeliveryMode {
                    gsi,
                    mode: mode as u8,
                });
            }
            if value & MASKED == 0 {
                if !self.high_written.contains(gsi) {
                    return Err(Refusal::DestinationUnset { gsi });
                }
                check_destination(gsi, value, self.high[g], cpus)?;
            }
            self.low[g] = value;
        }
        if self.emulated.contains(gsi) {
            return Ok(IoApicAction::Emulated { gsi });
        }
        Ok(IoApicAction::WriteRegister { index, value })
    }

    fn eoi(&self, vector: u8) -> Result<IoApicAction, Refusal> {
        if self.version < EOI_MIN_VERSION {
            return Err(Refusal::NoEoiRegister {
                version: self.version,
            });
        }
        let uses = |gsi: u32| self.owns(gsi) && self.low[gsi as usize] as u8 == vector;
        let pins = self.gsi_base..self.gsi_base.saturating_add(self.pins);
        if pins
            .clone()
            .any(|gsi| uses(gsi) && !self.emulated.contains(gsi))
        {
            Ok(IoApicAction::Eoi { vector })
        } else if pins.into_iter().any(uses) {
            Ok(IoApicAction::Dropped)
        } else {
            Err(Refusal::EoiVector { vector })
        }
    }
}

/// Whether the entry `low`/`high` of `gsi` aims only at Linux's CPUs.
fn check_destination(
    gsi: u32,
    low: u32,
    high: u32,
    cpus: &impl Destinations,
) -> Result<(), Refusal> {
    let dest = high >> 24;
    let logical = low & LOGICAL != 0;
    if cpus.destination_allowed(dest, logical) {
        Ok(())
    } else {
        Err(Refusal::Destination { gsi, dest, logical })
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    /// Linux owns APIC IDs 0 and 1 (logical bits 0 and 1, flat model); RT owns 2 and 3.
    fn linux_cpus(dest: u32, logical: bool) -> bool {
        if logical {
            dest & !0b11 == 0
        } else {
            dest <= 1
        }
    }

    /// A 24-pin IOAPIC at GSI 0, version 0x20; Linux owns GSIs 1, 4 and 9.
    fn view() -> IoApicView {
        IoApicView::new(0, 23 << 16 | 0x20, &[1, 4, 9, 30])
    }

    fn write(v: &mut IoApicView, index: u8, value: u32) -> IoApicAction {
        assert_eq!(
            v.access(IOREGSEL, 4, Some(index.into()), &linux_cpus),
            IoApicAction::WriteSelect
        );
        v.access(IOWIN, 4, Some(value), &linux_cpus)
    }

    fn read(v: &mut IoApicView, index: u8) -> IoApicAction {
        v.access(IOREGSEL, 4, Some(index.into()), &linux_cpus);
        v.access(IOWIN, 4, None, &linux_cpus)
    }

    fn low(pin: u8) -> u8 {
        reg::REDIRECTION + 2 * pin
    }

    fn refusal(action: IoApicAction) -> Option<Refusal> {
        match action {
            IoApicAction::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Only registers the IOAPIC defines reach it: an undefined index (0xff ends the whole
    /// machine in an emulator's IOAPIC) is refused, read or written, and reads as all ones.
    #[test]
    fn undefined_registers_never_reach_the_hardware() {
        let mut v = view();
        for index in [0x03, 0x0f, low(24), 0x7f, 0xff] {
            assert_eq!(
                read(&mut v, index),
                IoApicAction::Refused {
                    reason: Refusal::UndefinedRegister { index },
                    reply: Some(REFUSED_READ),
                },
                "read {index:#x}"
            );
            assert!(
                refusal(write(&mut v, index, 0)).is_some(),
                "write {index:#x}"
            );
        }
        for index in [reg::ID, reg::VERSION, reg::ARBITRATION, low(4), low(23) + 1] {
            assert!(
                matches!(
                    read(&mut v, index),
                    IoApicAction::ReadRegister { .. } | IoApicAction::ReadValue { .. }
                ),
                "read {index:#x}"
            );
        }
    }

    #[test]
    fn only_pins_of_this_ioapic_are_owned() {
        let v = view();
        assert_eq!(v.pins(), 24);
        assert!(v.owns(4) && v.owns(9) && !v.owns(5) && !v.owns(30));
        let second = IoApicView::new(24, 23 << 16 | 0x20, &[1, 30]);
        assert!(second.owns(30) && !second.owns(1));
    }

    #[test]
    fn an_owned_pin_is_programmed_and_unmasked() {
        let mut v = view();
        assert_eq!(
            write(&mut v, low(4) + 1, 1 << 24),
            IoApicAction::WriteRegister {
                index: low(4) + 1,
                value: 1 << 24
            }
        );
        // Level-triggered, vector 0x31, masked; then unmasked.
        let entry = 1 << 15 | 0x31;
        assert_eq!(
            write(&mut v, low(4), entry | MASKED),
            IoApicAction::WriteRegister {
                index: low(4),
                value: entry | MASKED
            }
        );
        assert_eq!(
            write(&mut v, low(4), entry),
            IoApicAction::WriteRegister {
                index: low(4),
                value: entry
            }
        );
        assert_eq!(
            v.access(EOI, 4, Some(0x31), &linux_cpus),
            IoApicAction::Eoi { vector: 0x31 }
        );
        assert_eq!(
            read(&mut v, low(4)),
            IoApicAction::ReadRegister { index: low(4) }
        );
    }

    #[test]
    fn an_emulated_pin_is_checked_like_linux_pins_but_never_reaches_the_hardware() {
        let mut v = view().with_emulated_pin(23);
        assert!(v.owns(23));
        assert_eq!(v.emulated_entry(23), None, "masked at start");
        // The destination must be Linux's, as for any pin of Linux.
        assert_eq!(
            refusal(write(&mut v, low(23) + 1, 2 << 24)),
            Some(Refusal::Destination {
                gsi: 23,
                dest: 2,
                logical: false
            })
        );
        assert_eq!(
            write(&mut v, low(23) + 1, 1 << 24),
            IoApicAction::Emulated { gsi: 23 }
        );
        let entry = 1 << 15 | 1 << 13 | 0x41;
        assert_eq!(
            write(&mut v, low(23), entry | MASKED),
            IoApicAction::Emulated { gsi: 23 }
        );
        assert_eq!(v.emulated_entry(23), None);
        assert_eq!(
            write(&mut v, low(23), entry),
            IoApicAction::Emulated { gsi: 23 }
        );
        assert_eq!(v.emulated_entry(23), Some((entry, 1 << 24)));
        // Reads come from the shadow; the EOI of its vector is dropped.
        assert_eq!(
            read(&mut v, low(23)),
            IoApicAction::ReadValue { value: entry }
        );
        assert_eq!(
            read(&mut v, low(23) + 1),
            IoApicAction::ReadValue { value: 1 << 24 }
        );
        assert_eq!(
            v.access(EOI, 4, Some(0x41), &linux_cpus),
            IoApicAction::Dropped
        );
        // NMI delivery is refused as anywhere.
        assert!(refusal(write(&mut v, low(23), 4 << 8)).is_some());
        v.reset();
        assert_eq!(v.emulated_entry(23), None);
        // A pin of another IOAPIC is not emulated here.
        assert!(
            !IoApicView::new(24, 23 << 16 | 0x20, &[])
                .with_emulated_pin(23)
                .owns(23)
        );
    }

    #[test]
    fn masking_a_foreign_pin_is_dropped_quietly() {
        let mut v = view();
        assert_eq!(write(&mut v, low(5), MASKED), IoApicAction::Dropped);
        assert_eq!(write(&mut v, low(5) + 1, 0), IoApicAction::Dropped);
        assert_eq!(
            refusal(write(&mut v, low(5), 0x31)),
            Some(Refusal::ForeignPin { gsi: 5 })
        );
        assert_eq!(
            refusal(write(&mut v, low(5) + 1, 1 << 24)),
            Some(Refusal::ForeignPin { gsi: 5 })
        );
    }

    #[test]
    fn a_reset_view_forgets_what_linux_wrote() {
        let mut v = view();
        write(&mut v, low(4) + 1, 1 << 24);
        write(&mut v, low(4), 1 << 15 | 0x31);
        let eoi = IoApicAction::Eoi { vector: 0x31 };
        assert_eq!(v.access(EOI, 4, Some(0x31), &linux_cpus), eoi);
        v.reset();
        assert_ne!(v.access(EOI, 4, Some(0x31), &linux_cpus), eoi);
        assert_eq!(v.pins(), 24);
        assert!(v.owns(4));
    }

    #[test]
    fn writes_to_an_rt_pin_are_refused() {
        let mut v = view();
        assert_eq!(
            write(&mut v, low(5), 0x40),
            IoApicAction::Refused {
                reason: Refusal::ForeignPin { gsi: 5 },
                reply: None
            }
        );
        assert_eq!(
            refusal(write(&mut v, low(5) + 1, 2 << 24)),
            Some(Refusal::ForeignPin { gsi: 5 })
        );
    }

    #[test]
    fn a_foreign_pin_reads_as_masked() {
        let mut v = view();
        assert_eq!(
            read(&mut v, low(5)),
            IoApicAction::ReadValue { value: 1 << 16 }
        );
        assert_eq!(
            read(&mut v, low(5) + 1),
            IoApicAction::ReadValue { value: 0 }
        );
        // ID, version and arbitration read from the hardware (past the last entry is refused:
        // `undefined_registers_never_reach_the_hardware`).
        for index in [reg::ID, reg::VERSION, reg::ARBITRATION] {
            assert_eq!(read(&mut v, index), IoApicAction::ReadRegister { index });
        }
    }

    #[test]
    fn id_version_and_arbitration_writes_are_refused() {
        let mut v = view();
        for index in [reg::ID, reg::VERSION, reg::ARBITRATION, 0x0f, low(24), 0xff] {
            assert_eq!(
                refusal(write(&mut v, index, 0)),
                Some(Refusal::Register { index })
            );
        }
    }

    #[test]
    fn a_destination_on_an_rt_cpu_is_refused() {
        let mut v = view();
        assert_eq!(
            refusal(write(&mut v, low(4) + 1, 2 << 24)),
            Some(Refusal::Destination {
                gsi: 4,
                dest: 2,
                logical: false
            })
        );
        // Physical CPU 1 is Linux's, but in logical mode 0b10 is fine and 0b100 is not.
        assert!(refusal(write(&mut v, low(4) + 1, 1 << 24)).is_none());
        assert!(refusal(write(&mut v, low(4), LOGICAL | 0x31)).is_none());
        assert!(refusal(write(&mut v, low(4) + 1, 0b10 << 24)).is_none());
        assert_eq!(
            refusal(write(&mut v, low(4) + 1, 0b110 << 24)),
            Some(Refusal::Destination {
                gsi: 4,
                dest: 0b110,
                logical: true
            })
        );
    }

    #[test]
    fn an_unmask_is_checked_against_the_written_destination() {
        let mut v = view();
        assert_eq!(
            refusal(write(&mut v, low(9), 0x41)),
            Some(Refusal::DestinationUnset { gsi: 9 })
        );
        // Destination 3 in logical mode (CPUs 0 and 1): allowed while masked in logical
        // mode, refused when unmasking in physical mode (APIC ID 3 is RT's).
        assert!(refusal(write(&mut v, low(9), MASKED | LOGICAL | 0x41)).is_none());
        assert!(refusal(write(&mut v, low(9) + 1, 3 << 24)).is_none());
        assert_eq!(
            refusal(write(&mut v, low(9), 0x41)),
            Some(Refusal::Destination {
                gsi: 9,
                dest: 3,
                logical: false
            })
        );
        assert!(refusal(write(&mut v, low(9), LOGICAL | 0x41)).is_none());
    }

    #[test]
    fn smi_nmi_init_extint_and_reserved_delivery_modes_are_refused() {
        let mut v = view();
        write(&mut v, low(1) + 1, 0);
        for mode in [2u8, 3, 4, 5, 6, 7] {
            let value = MASKED | u32::from(mode) << 8;
            assert_eq!(
                refusal(write(&mut v, low(1), value)),
                Some(Refusal::DeliveryMode { gsi: 1, mode })
            );
        }
        assert!(refusal(write(&mut v, low(1), 1 << 8 | 0x50)).is_none());
    }

    #[test]
    fn reserved_high_bits_are_refused() {
        let mut v = view();
        assert_eq!(
            refusal(write(&mut v, low(1) + 1, 1 << 17)),
            Some(Refusal::ReservedBits {
                gsi: 1,
                high: 1 << 17
            })
        );
    }

    #[test]
    fn bad_accesses_and_foreign_eois_are_refused() {
        let mut v = view();
        assert_eq!(
            v.access(IOWIN, 8, None, &linux_cpus),
            IoApicAction::Refused {
                reason: Refusal::Access {
                    offset: IOWIN,
                    width: 8
                },
                reply: Some(REFUSED_READ)
            }
        );
        for (offset, width) in [(0x04, 4), (0x11, 4), (0x20, 4), (IOREGSEL, 1), (IOWIN, 2)] {
            assert_eq!(
                refusal(v.access(offset, width, Some(0), &linux_cpus)),
                Some(Refusal::Access { offset, width })
            );
        }
        assert_eq!(
            v.access(EOI, 4, None, &linux_cpus),
            IoApicAction::Refused {
                reason: Refusal::Access {
                    offset: EOI,
                    width: 4
                },
                reply: Some(REFUSED_READ)
            }
        );
        assert_eq!(
            refusal(v.access(EOI, 4, Some(0x77), &linux_cpus)),
            Some(Refusal::EoiVector { vector: 0x77 })
        );
        let mut old = IoApicView::new(0, 23 << 16 | 0x11, &[1]);
        assert_eq!(
            refusal(old.access(EOI, 4, Some(0), &linux_cpus)),
            Some(Refusal::NoEoiRegister { version: 0x11 })
        );
    }

    #[test]
    fn ioregsel_reads_back_its_low_byte() {
        let mut v = view();
        v.access(IOREGSEL, 4, Some(0x1234_5613), &linux_cpus);
        assert_eq!(
            v.access(IOREGSEL, 4, None, &linux_cpus),
            IoApicAction::ReadValue { value: 0x13 }
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let text = std::format!(
            "{}",
            Refusal::Destination {
                gsi: 4,
                dest: 2,
                logical: false
            }
        );
        assert_eq!(
            text,
            "GSI 4: physical destination 0x2 may reach a CPU outside Linux"
        );
    }

    /// One step of Linux: a select-then-window pair (mostly at redirection entries), or
    /// any access at all.
    fn arb_step() -> impl Strategy<Value = std::vec::Vec<(u64, u8, Option<u32>)>> {
        let value = prop_oneof![
            (0u32..8).prop_map(|dest| dest << 24),
            (
                any::<u8>(),
                prop_oneof![3 => 0u32..2, 1 => 0u32..8],
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(vector, mode, logical, masked)| {
                    u32::from(vector)
                        | mode << 8
                        | if logical { LOGICAL } else { 0 }
                        | if masked { MASKED } else { 0 }
                }),
            any::<u32>(),
        ];
        // Mostly the entries of Linux's pins 1, 4 and 9, and of RT's pin 5.
        let index = prop_oneof![
            2 => proptest::sample::select(&[0x12u32, 0x13, 0x18, 0x19, 0x1a, 0x1b, 0x22, 0x23][..]),
            1 => 0u32..0x40,
        ];
        let pair = (index, proptest::option::of(value.clone()))
            .prop_map(|(index, write)| std::vec![(IOREGSEL, 4, Some(index)), (IOWIN, 4, write)]);
        let offset = prop_oneof![Just(IOREGSEL), Just(IOWIN), Just(EOI), 0u64..0x100];
        let width = prop_oneof![4 => Just(4u8), 1 => any::<u8>()];
        let raw = (offset, width, proptest::option::of(value)).prop_map(|access| std::vec![access]);
        prop_oneof![4 => pair, 1 => raw]
    }

    proptest! {
        /// Whatever Linux does, no write reaches an entry of a pin it does not own, and
        /// the hardware entries of its pins, followed write by write from masked, never
        /// aim an unmasked pin outside Linux's CPUs nor use a forbidden delivery mode.
        #[test]
        fn foreign_pins_and_cpus_are_never_reached(
            steps in proptest::collection::vec(arb_step(), 0..200)
        ) {
            let mut v = view();
            let mut hw: Vec<(u32, u32)> = std::vec![(MASKED, 0); 24];
            for (offset, width, write) in steps.into_iter().flatten() {
                let action = v.access(offset, width, write, &linux_cpus);
                if let IoApicAction::WriteRegister { index, value } = action {
                    prop_assert!(index >= reg::REDIRECTION);
                    let n = usize::from(index - reg::REDIRECTION);
                    let pin = n / 2;
                    prop_assert!(pin < 24 && v.owns(pin as u32));
                    if n % 2 == 1 {
                        hw[pin].1 = value;
                        let logical = hw[pin].0 & LOGICAL != 0;
                        prop_assert!(linux_cpus(value >> 24, logical));
                        prop_assert_eq!(value & HIGH_RESERVED, 0);
                    } else {
                        hw[pin].0 = value;
                    }
                    let (lo, hi) = hw[pin];
                    prop_assert!(matches!((lo >> 8) & 7, 0 | 1));
                    if lo & MASKED == 0 {
                        prop_assert!(linux_cpus(hi >> 24, lo & LOGICAL != 0));
                    }
                }
                if let IoApicAction::Refused { reply, .. } = action {
                    prop_assert_eq!(reply, write.is_none().then_some(REFUSED_READ));
                }
            }
        }
    }
}
