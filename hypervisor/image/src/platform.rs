//! The machine as ACPI describes it: CPUs (local APIC and x2APIC entries of the MADT),
//! IOAPICs and interrupt source overrides, and how to power off (FADT PM1 control
//! blocks plus `\_S5` from the DSDT).
//!
//! Table parsing uses the `acpi` crate; the hypervisor identity-maps all of low
//! physical memory, so the handler's "mapping" is the physical address itself.
// Reads the firmware's ACPI tables and enters S5 through the PM1 control ports.
#![allow(unsafe_code)]

use core::fmt;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiTables, fadt::Fadt};
use bulkhead_config::MAX_CPUS;
use bulkhead_x86::acpi::IdentityMapped;
use hv_core::support::fixed::{FixedList, Full};

use crate::arch::port;

/// Most IOAPICs kept.
pub const MAX_IOAPICS: usize = 8;

/// An IOAPIC from the MADT.
#[derive(Debug, Clone, Copy, Default)]
pub struct IoApic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// An ISA interrupt source override from the MADT: legacy IRQ `irq` arrives on
/// `gsi`, with the polarity and trigger mode in `flags` (ACPI MPS INTI flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct IrqOverride {
    pub irq: u8,
    pub gsi: u32,
    pub flags: u16,
}

/// Most interrupt source overrides kept.
pub const MAX_OVERRIDES: usize = 16;

/// How to enter S5 through the FADT's PM1 control registers.
#[derive(Debug, Clone, Copy)]
pub struct PowerOff {
    pm1a_cnt: u16,
    pm1b_cnt: Option<u16>,
    slp_typ: u8,
}

/// What ACPI says about this machine.
#[derive(Debug)]
pub struct Platform {
    apic_ids: FixedList<u32, MAX_CPUS>,
    /// MADT entries (CPUs, IOAPICs, overrides) beyond the tables' capacity, not kept.
    pub dropped_entries: usize,
    ioapics: FixedList<IoApic, MAX_IOAPICS>,
    overrides: FixedList<IrqOverride, MAX_OVERRIDES>,
    pub power_off: Option<PowerOff>,
    /// What the FADT says about power control, for filtering Linux's port accesses.
    pub fadt: FadtFacts,
}

/// The FADT's power-control ports (I/O space only).
#[derive(Debug, Clone, Copy, Default)]
pub struct FadtFacts {
    /// PM1a and PM1b control blocks.
    pub pm1_control: [Option<u16>; 2],
    /// SLP_TYP of `\_S5`, where the DSDT yields it.
    pub s5_sleep_type: Option<u8>,
    /// The reset register (port) and the value that resets.
    pub reset: Option<(u16, u8)>,
}

/// ACPI problems that stop the boot.
#[derive(Debug)]
pub enum PlatformError {
    NoRsdp,
    Tables(acpi::AcpiError),
    NoMadt(acpi::AcpiError),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRsdp => f.write_str("ACPI: the boot loader passed no RSDP"),
            Self::Tables(e) => write!(f, "ACPI: RSDP/XSDT unusable: {e:?}"),
            Self::NoMadt(e) => write!(f, "ACPI: no usable MADT: {e:?}"),
        }
    }
}

impl Platform {
    /// Reads the MADT and FADT reachable from the RSDP at `rsdp`.
    pub fn discover(rsdp: Option<usize>) -> Result<Self, PlatformError> {
        let rsdp = rsdp.ok_or(PlatformError::NoRsdp)?;
        // SAFETY: `rsdp` points at the RSDP copy inside the boot information, which stays
        // intact (it is excluded from allocation); the crate validates its checksum.
        let tables = unsafe { AcpiTables::from_rsdp(IdentityMapped, rsdp) }
            .map_err(PlatformError::Tables)?;
        let mut platform = Self {
            apic_ids: FixedList::new(),
            dropped_entries: 0,
            ioapics: FixedList::new(),
            overrides: FixedList::new(),
            power_off: None,
            fadt: FadtFacts::default(),
        };
        let madt = tables.find_table::<Madt>().map_err(PlatformError::NoMadt)?;
        for entry in madt.get().entries() {
            let kept = match entry {
                // Flags bit 0: enabled; bit 1: online capable.
                MadtEntry::LocalApic(e) if e.flags & 0b11 != 0 => {
                    platform.add_cpu(u32::from(e.apic_id))
                }
                MadtEntry::LocalX2Apic(e) if e.flags & 0b11 != 0 => platform.add_cpu(e.x2apic_id),
                MadtEntry::IoApic(e) => platform.ioapics.push(IoApic {
                    id: e.io_apic_id,
                    address: e.io_apic_address,
                    gsi_base: e.global_system_interrupt_base,
                }),
                MadtEntry::InterruptSourceOverride(e) => platform.overrides.push(IrqOverride {
                    irq: e.irq,
                    gsi: e.global_system_interrupt,
                    flags: e.flags,
                }),
                _ => Ok(()),
            };
            if kept.is_err() {
                platform.dropped_entries += 1;
            }
        }
        platform.fadt = Self::fadt_facts(&tables);
        let f = platform.fadt;
        platform.power_off = match (f.pm1_control[0], f.s5_sleep_type) {
            (Some(pm1a_cnt), Some(slp_typ)) => Some(PowerOff {
                pm1a_cnt,
                pm1b_cnt: f.pm1_control[1],
                slp_typ,
            }),
            _ => None,
        };
        Ok(platform)
    }

    fn fadt_facts(tables: &AcpiTables<IdentityMapped>) -> FadtFacts {
        let Ok(fadt) = tables.find_table::<Fadt>() else {
            return FadtFacts::default();
        };
        let io_port = |ga: acpi::address::GenericAddress| {
            (ga.address_space == acpi::address::AddressSpace::SystemIo
                && ga.address != 0
                && ga.address <= 0xffff)
                .then_some(ga.address as u16)
        };
        let pm1a_cnt = fadt.pm1a_control_block().ok().and_then(io_port);
        let pm1b_cnt = fadt.pm1b_control_block().ok().flatten().and_then(io_port);
        let s5_sleep_type = tables.dsdt().ok().and_then(|dsdt| {
            // SAFETY: the DSDT's AML stream, identity-mapped, as located by the crate from
            // the validated FADT.
            let aml = unsafe {
                core::slice::from_raw_parts(dsdt.address as *const u8, dsdt.length as usize)
            };
            hv_core::boot::acpi_sleep::s5_sleep_type(aml)
        });
        let flags = { fadt.flags };
        let reset = fadt
            .reset_register()
            .ok()
            .filter(|_| flags.supports_system_reset_via_fadt())
            .and_then(io_port)
            .map(|port| (port, fadt.reset_value));
        FadtFacts {
            pm1_control: [pm1a_cnt, pm1b_cnt],
            s5_sleep_type,
            reset,
        }
    }

    /// Records a CPU once (firmware may list one in both its xAPIC and x2APIC form).
    fn add_cpu(&mut self, apic_id: u32) -> Result<(), Full> {
        if self.apic_ids.as_slice().contains(&apic_id) {
            return Ok(());
        }
        self.apic_ids.push(apic_id)
    }

    /// APIC IDs of the enabled CPUs, in MADT order.
    pub fn apic_ids(&self) -> &[u32] {
        self.apic_ids.as_slice()
    }

    /// The ISA interrupt source overrides.
    pub fn irq_overrides(&self) -> &[IrqOverride] {
        self.overrides.as_slice()
    }

    /// The IOAPICs.
    pub fn ioapics(&self) -> &[IoApic] {
        self.ioapics.as_slice()
    }
}

impl PowerOff {
    /// Writes SLP_TYP | SLP_EN to the PM1 control registers. Returns if the machine is
    /// still running afterwards.
    pub fn enter_s5(&self) {
        let value = (u16::from(self.slp_typ) << 10) | (1 << 13);
        // SAFETY: the FADT names these ports as the PM1 control blocks; writing SLP_EN
        // with the S5 type is the architected power-off.
        unsafe {
            port::outw(self.pm1a_cnt, value);
            if let Some(b) = self.pm1b_cnt {
                port::outw(b, value);
            }
        }
    }
}
