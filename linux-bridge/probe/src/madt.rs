//! The ACPI MADT as `/sys/firmware/acpi/tables/APIC` holds it: the processors' local APICs
//! (and x2APICs), the IOAPICs, and the ISA interrupt source overrides.
//!
//! Written by hand because the `acpi` crate reads tables through a physical-memory mapper, not
//! from a byte slice; the format is a header and a list of type-length entries (ACPI 6.5,
//! 5.2.12). Every length is checked; an entry type this reader does not know is skipped.

use std::fmt;

/// Bytes of the MADT before its entries: the ACPI header (36), the local APIC address (4) and
/// the flags (4).
const ENTRIES_AT: usize = 44;

/// A processor the MADT lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalApic {
    /// Its APIC ID.
    pub apic_id: u32,
    /// Enabled, or online-capable (flags bit 0 or 1).
    pub usable: bool,
}

/// An IOAPIC the MADT lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApic {
    /// Its IOAPIC ID.
    pub id: u8,
    /// Its register page.
    pub address: u32,
    /// The GSI of its pin 0.
    pub gsi_base: u32,
}

/// An ISA interrupt the firmware routes to another GSI, or with other flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqOverride {
    /// The ISA IRQ.
    pub irq: u8,
    /// The GSI it arrives on.
    pub gsi: u32,
    /// MPS INTI flags: polarity in bits 0-1, trigger mode in bits 2-3.
    pub flags: u16,
}

/// What the MADT says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Madt {
    /// Processors, in table order.
    pub local_apics: Vec<LocalApic>,
    /// IOAPICs, in table order.
    pub ioapics: Vec<IoApic>,
    /// ISA overrides.
    pub overrides: Vec<IrqOverride>,
}

/// Why a MADT could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MadtError {
    /// Not an `APIC` table, or shorter than its header.
    NotMadt,
    /// The header's length is not the table's.
    Length { header: u32, actual: usize },
    /// The bytes do not add up to 0.
    Checksum,
    /// An entry's length is below its type's or runs past the table.
    Entry { offset: usize },
}

impl fmt::Display for MadtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotMadt => f.write_str("not an ACPI MADT (signature APIC, 44-byte header)"),
            Self::Length { header, actual } => {
                write!(f, "its header says {header} bytes, the table has {actual}")
            }
            Self::Checksum => f.write_str("its checksum does not add up"),
            Self::Entry { offset } => write!(f, "the entry at byte {offset} is cut short"),
        }
    }
}

impl Madt {
    /// Reads a MADT from its bytes.
    pub fn parse(table: &[u8]) -> Result<Self, MadtError> {
        if table.len() < ENTRIES_AT || &table[..4] != b"APIC" {
            return Err(MadtError::NotMadt);
        }
        let length = u32::from_le_bytes([table[4], table[5], table[6], table[7]]);
        if length as usize != table.len() {
            return Err(MadtError::Length {
                header: length,
                actual: table.len(),
            });
        }
        if table.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) != 0 {
            return Err(MadtError::Checksum);
        }
        let mut madt = Madt::default();
        let mut at = ENTRIES_AT;
        while at < table.len() {
            let entry = table
                .get(at..at + 2)
                .ok_or(MadtError::Entry { offset: at })?;
            let (kind, len) = (entry[0], usize::from(entry[1]));
            let body = table
                .get(at..at + len)
                .filter(|_| len >= 2)
                .ok_or(MadtError::Entry { offset: at })?;
            let need = |n: usize| {
                if len >= n {
                    Ok(())
                } else {
                    Err(MadtError::Entry { offset: at })
                }
            };
            match kind {
                // Processor local APIC: ACPI processor UID, APIC ID, flags.
                0 => {
                    need(8)?;
                    madt.local_apics.push(LocalApic {
                        apic_id: u32::from(body[3]),
                        usable: u32_at(body, 4) & 0b11 != 0,
                    });
                }
                // IOAPIC: ID, reserved, address, GSI base.
                1 => {
                    need(12)?;
                    madt.ioapics.push(IoApic {
                        id: body[2],
                        address: u32_at(body, 4),
                        gsi_base: u32_at(body, 8),
                    });
                }
                // Interrupt source override: bus, source, GSI, flags.
                2 => {
                    need(10)?;
                    madt.overrides.push(IrqOverride {
                        irq: body[3],
                        gsi: u32_at(body, 4),
                        flags: u16::from_le_bytes([body[8], body[9]]),
                    });
                }
                // Processor local x2APIC: reserved, x2APIC ID, flags, UID.
                9 => {
                    need(16)?;
                    madt.local_apics.push(LocalApic {
                        apic_id: u32_at(body, 4),
                        usable: u32_at(body, 8) & 0b11 != 0,
                    });
                }
                _ => {}
            }
            at += len;
        }
        Ok(madt)
    }

    /// The GSI ISA IRQ `irq` arrives on.
    pub fn gsi_of_isa_irq(&self, irq: u8) -> u32 {
        self.overrides
            .iter()
            .find(|o| o.irq == irq)
            .map_or(u32::from(irq), |o| o.gsi)
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A MADT's bytes from its parts, checksum included (for fixtures and tests).
pub fn build(local_apic_ids: &[u32], ioapics: &[IoApic], overrides: &[IrqOverride]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"APIC");
    t.extend_from_slice(&[0; 4]); // length, below
    t.push(4); // revision
    t.push(0); // checksum, below
    t.extend_from_slice(b"BLKHD ");
    t.extend_from_slice(b"PROBETST");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"BLKH");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
    for (uid, &id) in local_apic_ids.iter().enumerate() {
        t.extend_from_slice(&[0, 8, uid as u8, id as u8]);
        t.extend_from_slice(&1u32.to_le_bytes());
    }
    for io in ioapics {
        t.extend_from_slice(&[1, 12, io.id, 0]);
        t.extend_from_slice(&io.address.to_le_bytes());
        t.extend_from_slice(&io.gsi_base.to_le_bytes());
    }
    for o in overrides {
        t.extend_from_slice(&[2, 10, 0, o.irq]);
        t.extend_from_slice(&o.gsi.to_le_bytes());
        t.extend_from_slice(&o.flags.to_le_bytes());
    }
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(sum);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build(
            &[0, 2],
            &[IoApic {
                id: 2,
                address: 0xfec0_0000,
                gsi_base: 0,
            }],
            &[IrqOverride {
                irq: 0,
                gsi: 2,
                flags: 0,
            }],
        )
    }

    #[test]
    fn a_built_table_reads_back() {
        let madt = Madt::parse(&sample()).unwrap();
        assert_eq!(
            madt.local_apics,
            [
                LocalApic {
                    apic_id: 0,
                    usable: true
                },
                LocalApic {
                    apic_id: 2,
                    usable: true
                }
            ]
        );
        assert_eq!(madt.ioapics[0].address, 0xfec0_0000);
        assert_eq!(madt.gsi_of_isa_irq(0), 2);
        assert_eq!(madt.gsi_of_isa_irq(4), 4);
    }

    #[test]
    fn broken_tables_are_refused() {
        let good = sample();
        assert_eq!(Madt::parse(&good[..40]), Err(MadtError::NotMadt));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Madt::parse(&bad), Err(MadtError::NotMadt));
        let mut bad = good.clone();
        bad[50] ^= 1;
        assert_eq!(Madt::parse(&bad), Err(MadtError::Checksum));
        assert!(matches!(
            Madt::parse(&good[..good.len() - 1]),
            Err(MadtError::Length { .. })
        ));
        // An entry whose length runs past the end.
        let mut cut = good.clone();
        let last = cut.len() - 10;
        cut[last + 1] = 200;
        let sum = cut.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        cut[9] = cut[9].wrapping_sub(sum);
        assert_eq!(Madt::parse(&cut), Err(MadtError::Entry { offset: last }));
        // A zero-length entry would never advance.
        let mut zero = good;
        zero[45] = 0;
        let sum = zero.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        zero[9] = zero[9].wrapping_sub(sum);
        assert_eq!(Madt::parse(&zero), Err(MadtError::Entry { offset: 44 }));
    }
}
