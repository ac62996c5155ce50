//! Does a valid config fit the machine it booted on? The hypervisor calls [`check_fit`] at boot
//! with what it found (ACPI MADT APIC IDs, the e820 usable RAM, the ranges its own image and the
//! boot modules occupy) and stops with the error's one line if the answer is no.
//!
//! This module never allocates: the error borrows the hardware facts and prints them itself.

use core::fmt;

use crate::error::FieldPath;
use crate::model::{Config, PartitionId, Region};

/// What the hypervisor found on this machine.
#[derive(Debug, Clone, Copy)]
pub struct Platform<'a> {
    /// APIC IDs of the processors present and enabled.
    pub apic_ids: &'a [u32],
    /// Usable RAM (e820 type 1), in any order; adjacent or overlapping entries are fine.
    pub usable_ram: &'a [Region],
    /// Ranges in use before the partitions start, by name: the hypervisor image, the boot modules.
    pub occupied: &'a [(&'a str, Region)],
    /// Register pages the hypervisor keeps for itself, by name (the IOAPICs): no partition
    /// may own them as device memory.
    pub kept_registers: &'a [(&'a str, Region)],
}

/// A config field that does not fit the machine, and the hardware fact it contradicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitError<'a> {
    /// The config field.
    pub path: FieldPath,
    /// What does not fit.
    pub kind: FitErrorKind<'a>,
}

/// Ways a config can fail to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitErrorKind<'a> {
    /// A configured CPU is not present.
    CpuNotPresent {
        /// Its APIC ID.
        apic_id: u32,
        /// The APIC IDs that are present.
        present: &'a [u32],
    },
    /// A region is not entirely usable RAM.
    NotUsableRam {
        /// The region.
        region: Region,
        /// The first address in it that no usable range covers.
        first_unusable: u64,
    },
    /// A partition or shared region overlaps a range in use.
    OverlapsOccupied {
        /// The region.
        region: Region,
        /// The occupied range's name.
        name: &'a str,
        /// The occupied range.
        occupied: Region,
    },
    /// Device registers (`mmio`) that are RAM the firmware lists as usable.
    MmioIsRam {
        /// The configured range.
        region: Region,
        /// The usable RAM it overlaps.
        ram: Region,
    },
    /// Device registers (`mmio`) over registers the hypervisor keeps.
    MmioIsKept {
        /// The configured range.
        region: Region,
        /// What is there.
        name: &'a str,
        /// Where it is.
        kept: Region,
    },
}

impl fmt::Display for FitError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        match self.kind {
            FitErrorKind::CpuNotPresent { apic_id, present } => {
                write!(
                    f,
                    "APIC ID {apic_id} is not present on this machine (present: "
                )?;
                write_id_list(f, present)?;
                f.write_str(")")
            }
            FitErrorKind::NotUsableRam {
                region,
                first_unusable,
            } => write!(
                f,
                "{region} is not usable RAM on this machine ({first_unusable:#x} is not in any \
                 usable range)"
            ),
            FitErrorKind::MmioIsRam { region, ram } => write!(
                f,
                "{region} is usable RAM on this machine ({ram} in the firmware's memory map), not device registers"
            ),
            FitErrorKind::MmioIsKept { region, name, kept } => {
                write!(f, "{region} overlaps the {name} ({kept}), which the hypervisor keeps")
            }
            FitErrorKind::OverlapsOccupied {
                region,
                name,
                occupied,
            } => {
                write!(f, "{region} overlaps module \"{name}\" at {occupied}")
            }
        }
    }
}

/// Writes `ids` compactly, with runs as ranges: `0-3, 6, 8`.
fn write_id_list(f: &mut fmt::Formatter<'_>, ids: &[u32]) -> fmt::Result {
    if ids.is_empty() {
        return f.write_str("none");
    }
    let mut rest = ids;
    let mut first = true;
    while let Some((&start, tail)) = rest.split_first() {
        let mut end = start;
        let mut tail = tail;
        while let Some((&next, after)) = tail.split_first() {
            if end.checked_add(1) != Some(next) {
                break;
            }
            end = next;
            tail = after;
        }
        if !first {
            f.write_str(", ")?;
        }
        first = false;
        match end.checked_sub(start) {
            Some(0) | None => write!(f, "{start}")?,
            Some(1) => write!(f, "{start}, {end}")?,
            Some(_) => write!(f, "{start}-{end}")?,
        }
        rest = tail;
    }
    Ok(())
}

/// The first address of `region` that no usable range covers, if any. Ranges may come in any
/// order and may touch or overlap, so a region can span several of them.
fn first_unusable(region: &Region, usable: &[Region]) -> Option<u64> {
    let end = region.end();
    let mut cursor = region.base;
    // Each round moves the cursor to the end of a different range, so it ends after at most
    // `usable.len()` rounds; the bound is belt and braces.
    for _ in 0..=usable.len() {
        if cursor >= end {
            return None;
        }
        let Some(reach) = usable
            .iter()
            .filter(|r| r.contains(cursor))
            .map(Region::end)
            .max()
        else {
            return Some(cursor);
        };
        cursor = reach;
    }
    (cursor < end).then_some(cursor)
}

/// Checks that `cfg` fits the machine: every configured CPU present; the hypervisor region, each
/// partition region and each shared region entirely in usable RAM; device registers neither
/// usable RAM nor registers the hypervisor keeps; no partition or shared region overlapping an
/// occupied range. (Occupied ranges are expected inside the hypervisor region.)
pub fn check_fit<'a>(cfg: &Config, hw: &Platform<'a>) -> Result<(), FitError<'a>> {
    for id in PartitionId::ALL {
        for (i, &apic_id) in cfg.partition(id).cpus().iter().enumerate() {
            if !hw.apic_ids.contains(&apic_id) {
                return Err(FitError {
                    path: FieldPath::partition(id).key("cpus").index(i),
                    kind: FitErrorKind::CpuNotPresent {
                        apic_id,
                        present: hw.apic_ids,
                    },
                });
            }
        }
    }

    let hypervisor = (
        FieldPath::at("hypervisor").key("memory"),
        cfg.hypervisor_region(),
    );
    let partitions = PartitionId::ALL.into_iter().flat_map(|id| {
        cfg.partition(id)
            .memory()
            .iter()
            .enumerate()
            .map(move |(i, r)| (FieldPath::partition(id).key("memory").index(i), *r))
    });
    let shared = cfg
        .shared_regions()
        .iter()
        .enumerate()
        .map(|(i, s)| (FieldPath::at("shared").index(i).name(s.name), s.region));
    let guest_regions = partitions.chain(shared);

    for (path, region) in core::iter::once(hypervisor).chain(guest_regions.clone()) {
        if let Some(first_unusable) = first_unusable(&region, hw.usable_ram) {
            return Err(FitError {
                path,
                kind: FitErrorKind::NotUsableRam {
                    region,
                    first_unusable,
                },
            });
        }
    }
    let mmio = PartitionId::ALL.into_iter().flat_map(|id| {
        cfg.partition(id)
            .mmio()
            .iter()
            .enumerate()
            .map(move |(i, r)| (FieldPath::partition(id).key("mmio").index(i), *r))
    });
    for (path, region) in mmio {
        if let Some(&ram) = hw.usable_ram.iter().find(|r| r.overlaps(&region)) {
            return Err(FitError {
                path,
                kind: FitErrorKind::MmioIsRam { region, ram },
            });
        }
        if let Some(&(name, kept)) = hw.kept_registers.iter().find(|(_, k)| k.overlaps(&region)) {
            return Err(FitError {
                path,
                kind: FitErrorKind::MmioIsKept { region, name, kept },
            });
        }
    }
    for (path, region) in guest_regions {
        if let Some(&(name, occupied)) = hw.occupied.iter().find(|(_, o)| o.overlaps(&region)) {
            return Err(FitError {
                path,
                kind: FitErrorKind::OverlapsOccupied {
                    region,
                    name,
                    occupied,
                },
            });
        }
    }
    Ok(())
}
