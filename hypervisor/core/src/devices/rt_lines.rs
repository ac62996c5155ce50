//! The RT partition's device lines: the IOAPIC pins the config gives it, each delivered
//! straight to one RT CPU with a vector of its own, so a device interrupt reaches the RT
//! kernel's IDT without a VM exit.
//!
//! [`plan`] turns the config and the MADT's ISA interrupt source overrides into the line
//! table (the `i`-th RT pin, in config order, is line `i` with vector
//! `vectors::DEVICE_FIRST + i`); [`redirection_entry`] is the entry the hypervisor writes for
//! a line. Every line starts masked; the RT kernel unmasks a line when a driver attaches
//! (the `LINE` hypercall), so an interrupt with nobody to take it never arrives. Linux's view
//! of the IOAPIC already hides these pins (`ioapic`): it reads them as masked and cannot
//! write them.
//!
//! Where and how each line is delivered is the config's (`ioapic_pins = [{ pin, cpu,
//! trigger, polarity }]`); what it leaves out: the RT partition's first CPU, and the bus's
//! trigger mode and polarity: an ISA IRQ (GSI below 16) is edge-triggered and active high
//! unless an interrupt source override for its GSI says otherwise; any other GSI is a PCI
//! INTx line: level-triggered, active low.
//!
//! This module only computes: the image writes the entries, under the IOAPIC lock it shares
//! with Linux's view.

use bulkhead_abi::rt_boot::{LINE_ACTIVE_LOW, LINE_LEVEL, LineInfo, MAX_LINES};
use bulkhead_abi::vectors;
use bulkhead_config::{Config, PartitionId};

use crate::support::fixed::FixedList;

/// An ISA interrupt source override of the MADT, as far as lines care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaOverride {
    /// The GSI the ISA IRQ arrives on.
    pub gsi: u32,
    /// The MPS INTI flags: polarity in bits 1:0, trigger mode in bits 3:2.
    pub flags: u16,
}

/// One planned line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Line {
    /// The IOAPIC pin.
    pub gsi: u32,
    /// The RT CPU it goes to: its index in the partition and its APIC ID.
    pub cpu: u16,
    pub apic_id: u32,
    pub vector: u8,
    pub level: bool,
    pub active_low: bool,
}

impl Line {
    /// The line as the RT boot information describes it.
    pub fn info(&self) -> LineInfo {
        LineInfo {
            gsi: self.gsi,
            cpu: self.cpu,
            vector: self.vector,
            flags: if self.level { LINE_LEVEL } else { 0 }
                | if self.active_low { LINE_ACTIVE_LOW } else { 0 },
        }
    }
}

/// Why the lines cannot be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanError {
    /// More RT pins than device vectors.
    TooManyLines(usize),
    /// The RT CPU's APIC ID does not fit an IOAPIC entry's 8-bit destination (no interrupt
    /// remapping here).
    DestinationTooHigh(u32),
    /// The RT partition has no CPU, or a pin names a CPU that is not the partition's.
    NoCpu,
}

impl core::fmt::Display for PlanError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::TooManyLines(n) => write!(
                f,
                "partitions.rt.ioapic_pins: {n} pins, the RT partition takes at most {MAX_LINES} device lines"
            ),
            Self::DestinationTooHigh(id) => write!(
                f,
                "partitions.rt.cpus: APIC ID {id} cannot receive IOAPIC interrupts (above 255, no interrupt remapping)"
            ),
            Self::NoCpu => f.write_str(
                "partitions.rt.ioapic_pins: a pin goes to no CPU of the RT partition",
            ),
        }
    }
}

/// The RT partition's lines, in config order.
pub type Lines = FixedList<Line, MAX_LINES>;

/// Plans the RT partition's lines from the config and the MADT's ISA overrides (`overrides`:
/// each `(GSI, INTI flags)`).
pub fn plan(cfg: &Config, overrides: &[IsaOverride]) -> Result<Lines, PlanError> {
    let rt = cfg.partition(PartitionId::Rt);
    let pins = rt.ioapic_pins();
    if pins.len() > MAX_LINES {
        return Err(PlanError::TooManyLines(pins.len()));
    }
    let mut lines = Lines::new();
    for (index, (&gsi, route)) in pins.iter().zip(rt.pin_routes()).enumerate() {
        // The config check made sure a named CPU is the partition's.
        let cpu = match route.cpu {
            Some(apic_id) => rt.cpus().iter().position(|&c| c == apic_id),
            None => Some(0),
        };
        let (cpu, &apic_id) = cpu
            .and_then(|i| Some((i, rt.cpus().get(i)?)))
            .ok_or(PlanError::NoCpu)?;
        if apic_id > 0xff {
            return Err(PlanError::DestinationTooHigh(apic_id));
        }
        let (bus_level, bus_low) = trigger_and_polarity(gsi, overrides);
        let line = Line {
            gsi,
            cpu: cpu as u16,
            apic_id,
            vector: vectors::device_vector(index).ok_or(PlanError::TooManyLines(pins.len()))?,
            level: route.level.unwrap_or(bus_level),
            active_low: route.active_low.unwrap_or(bus_low),
        };
        lines
            .push(line)
            .map_err(|_| PlanError::TooManyLines(pins.len()))?;
    }
    Ok(lines)
}

/// `(level-triggered, active low)` of `gsi`: an override's flags where one names the GSI
/// ("conforming" meaning the ISA default), else ISA (edge, high) below 16 and PCI (level,
/// low) from 16 on.
pub fn trigger_and_polarity(gsi: u32, overrides: &[IsaOverride]) -> (bool, bool) {
    let isa_default = gsi < 16;
    let (default_level, default_low) = if isa_default { (false, false) } else { (true, true) };
    let Some(o) = overrides.iter().find(|o| o.gsi == gsi) else {
        return (default_level, default_low);
    };
    let active_low = match o.flags & 0b11 {
        0b01 => false,
        0b11 => true,
        _ => default_low,
    };
    let level = match (o.flags >> 2) & 0b11 {
        0b01 => false,
        0b11 => true,
        _ => default_level,
    };
    (level, active_low)
}

/// The `(low, high)` dwords of `line`'s redirection entry: fixed delivery, physical
/// destination (its CPU's APIC ID), its vector, trigger mode and polarity, masked or not
/// (the encoding is the ABI's, shared with the RT kernel when it runs bare).
pub fn redirection_entry(line: &Line, masked: bool) -> (u32, u32) {
    line.info().ioapic_entry(line.apic_id, masked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_cpu_trigger_and_polarity() {
        let cfg = cfg(
            r#"[{ pin = 4, cpu = 3, trigger = "level", polarity = "low" }, { pin = 20, trigger = "edge" }]"#,
            "[2, 3]",
        );
        let lines = plan(&cfg, &[]).unwrap();
        let lines = lines.as_slice();
        assert_eq!((lines[0].cpu, lines[0].apic_id), (1, 3));
        assert!(lines[0].level && lines[0].active_low);
        assert_eq!((lines[1].cpu, lines[1].apic_id), (0, 2));
        assert!(!lines[1].level && lines[1].active_low, "polarity from the bus");
    }

    fn cfg(rt_pins: &str, rt_cpus: &str) -> Config {
        let text = std::format!(
            r#"
[machine]
name = "t"
[hypervisor]
memory = {{ base = 0x100000, size = "15 MiB" }}
[partitions.linux]
cpus = [0]
memory = [{{ base = 0x1000000, size = "16 MiB" }}]
[partitions.rt]
cpus = {rt_cpus}
memory = [{{ base = 0x2000000, size = "16 MiB" }}]
ioapic_pins = {rt_pins}
[linux]
kernel = "vmlinuz"
cmdline = "quiet"
[rt]
image = "rt.elf"
"#
        );
        bulkhead_config::host::load_str(&text, "test").expect("test config")
    }

    #[test]
    fn isa_and_pci_defaults_and_overrides() {
        assert_eq!(trigger_and_polarity(4, &[]), (false, false));
        assert_eq!(trigger_and_polarity(19, &[]), (true, true));
        // The SCI on GSI 9: level, active high (a typical override).
        let sci = IsaOverride {
            gsi: 9,
            flags: 0b1101,
        };
        assert_eq!(trigger_and_polarity(9, &[sci]), (true, false));
        // Conforming bits keep the bus default.
        let conforming = IsaOverride { gsi: 2, flags: 0 };
        assert_eq!(trigger_and_polarity(2, &[conforming]), (false, false));
    }

    #[test]
    fn lines_follow_the_config_and_start_masked() {
        let cfg = cfg("[4, 20]", "[2, 3]");
        let lines = plan(&cfg, &[]).unwrap();
        let lines = lines.as_slice();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].gsi, 4);
        assert_eq!(lines[0].vector, vectors::DEVICE_FIRST);
        assert_eq!(lines[0].apic_id, 2);
        assert_eq!(lines[1].vector, vectors::DEVICE_FIRST + 1);
        assert!(lines[1].level && lines[1].active_low);
        let (low, high) = redirection_entry(&lines[0], true);
        assert_eq!(low, u32::from(vectors::DEVICE_FIRST) | 1 << 16, "masked");
        assert_eq!(high, 2 << 24);
        let (low, _) = redirection_entry(&lines[1], false);
        assert_eq!(
            low,
            u32::from(vectors::DEVICE_FIRST + 1) | 1 << 15 | 1 << 13,
            "level, active low"
        );
        assert_eq!(lines[1].info().flags, LINE_LEVEL | LINE_ACTIVE_LOW);
    }

    #[test]
    fn no_pins_no_lines() {
        assert!(plan(&cfg("[]", "[1]"), &[]).unwrap().as_slice().is_empty());
    }

    #[test]
    fn apic_ids_above_255_cannot_take_lines() {
        assert_eq!(
            plan(&cfg("[4]", "[300]"), &[]).err(),
            Some(PlanError::DestinationTooHigh(300))
        );
        assert!(plan(&cfg("[]", "[300]"), &[]).is_ok());
        assert!(plan(&cfg("[{ pin = 4, cpu = 2 }]", "[2, 300]"), &[]).is_ok());
    }
}
