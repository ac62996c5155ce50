//! The firmware memory the Linux partition may see besides its RAM, identity-mapped: the
//! ACPI tables and NVS its e820 map lists outside its RAM (read-write: AML and the FACS
//! global lock write there), and the legacy BIOS area below 1 MiB outside its RAM
//! (read-only: the EBDA and the option and system ROMs, which Linux scans for DMI and MP
//! tables). VGA memory (0xA0000-0xBFFFF) stays unmapped.
//!
//! Pure arithmetic on the e820 map: the image maps what [`linux_firmware_ranges`] returns
//! into Linux's EPT.

use bulkhead_config::{Config, PartitionId, Region};

use crate::boot::rt::Mapping;
use crate::linux::e820::{E820Entry, E820Type};
use crate::memory::ept::Perms;
use crate::support::fixed::FixedList;

/// Most firmware ranges mapped into Linux's EPT.
pub const LINUX_FIRMWARE_MAX: usize = 128;

/// Most overflows [`FirmwareRanges::left_out`] remembers.
pub const LEFT_OUT_MAX: usize = 8;

const PAGE: u64 = 0x1000;
/// Start of VGA memory: the legacy area below it that is not RAM is firmware's.
const VGA_START: u64 = 0xa_0000;
/// The option and system ROMs.
const ROMS: (u64, u64) = (0xc_0000, 0x10_0000);

/// The ranges to map, each with its permissions, merged where contiguous.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirmwareRanges {
    /// Identity mappings and their EPT permissions.
    pub ranges: FixedList<(Mapping, Perms), LINUX_FIRMWARE_MAX>,
    /// For each range that did not fit in `ranges`: the first page left out (that page
    /// and the rest of its range are not mapped).
    pub left_out: FixedList<u64, LEFT_OUT_MAX>,
}

impl FirmwareRanges {
    /// Adds `base..end` page by page, leaving out pages Linux owns (`owned`).
    fn add(&mut self, base: u64, end: u64, perms: Perms, owned: &impl Fn(&Region) -> bool) {
        let mut page = base & !(PAGE - 1);
        while page < end {
            if !owned(&Region::new(page, PAGE)) {
                match self.ranges.as_mut_slice().last_mut() {
                    Some((last, p)) if *p == perms && last.gpa_end() == page => {
                        *last = last.grown(PAGE).unwrap_or(*last);
                    }
                    _ => {
                        let pushed = Mapping::identity(Region::new(page, PAGE))
                            .map(|m| self.ranges.push((m, perms)));
                        if !matches!(pushed, Some(Ok(()))) {
                            let _ = self.left_out.push(page);
                            return;
                        }
                    }
                }
            }
            page += PAGE;
        }
    }
}

/// Whether a page is Linux's own (its RAM or a shared region), per `cfg`: such pages are
/// mapped as RAM, not as firmware.
pub fn linux_owns(cfg: &Config) -> impl Fn(&Region) -> bool + '_ {
    let ram = cfg.partition(PartitionId::Linux).memory();
    let shared = cfg.shared_regions();
    move |r: &Region| {
        ram.iter().any(|m| m.overlaps(r)) || shared.iter().any(|s| s.region.overlaps(r))
    }
}

/// The firmware ranges of Linux's e820 map `e820`, without the pages `owned` says are
/// Linux's (see the module comment).
pub fn linux_firmware_ranges(
    e820: &[E820Entry],
    owned: impl Fn(&Region) -> bool,
) -> FirmwareRanges {
    let mut out = FirmwareRanges::default();
    for e in e820 {
        if e.kind == E820Type::ACPI || e.kind == E820Type::NVS {
            out.add(e.addr, e.end(), Perms::READ | Perms::WRITE, &owned);
        }
    }
    let low_reserved = e820
        .iter()
        .filter(|e| e.addr < VGA_START && e.kind != E820Type::RAM)
        .map(|e| (e.addr, e.end().min(VGA_START)));
    for (base, end) in low_reserved {
        out.add(base, end, Perms::READ, &owned);
    }
    out.add(ROMS.0, ROMS.1, Perms::READ, &owned);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram_at(regions: &'static [Region]) -> impl Fn(&Region) -> bool {
        move |r| regions.iter().any(|m| m.overlaps(r))
    }

    fn mapped(f: &FirmwareRanges) -> std::vec::Vec<(u64, u64, Perms)> {
        f.ranges
            .as_slice()
            .iter()
            .map(|(m, p)| (m.gpa().as_u64(), m.size(), *p))
            .collect()
    }

    const LOW_RAM: &[Region] = &[
        Region::new(0, 0x9_f000),
        Region::new(0x10_0000, 0x1000_0000),
    ];

    #[test]
    fn acpi_nvs_low_reserved_and_roms() {
        let e820 = [
            E820Entry::new(0, 0x9_f000, E820Type::RAM),
            E820Entry::new(0x9_f000, 0x1000, E820Type::RESERVED),
            E820Entry::new(0xe_8000, 0x1_8000, E820Type::RESERVED),
            E820Entry::new(0x10_0000, 0x1000_0000, E820Type::RAM),
            E820Entry::new(0x1fff_0000, 0x1_0000, E820Type::ACPI),
            E820Entry::new(0x2000_0000, 0x2000, E820Type::NVS),
        ];
        let f = linux_firmware_ranges(&e820, ram_at(LOW_RAM));
        let rw = Perms::READ | Perms::WRITE;
        assert_eq!(
            mapped(&f),
            [
                // ACPI and NVS are contiguous with equal rights: one range.
                (0x1fff_0000, 0x1_2000, rw),
                // The EBDA page below VGA memory.
                (0x9_f000, 0x1000, Perms::READ),
                // The ROMs (the reserved 0xe8000.. range lies inside them).
                (0xc_0000, 0x4_0000, Perms::READ),
            ]
        );
        assert!(f.left_out.as_slice().is_empty());
    }

    #[test]
    fn pages_linux_owns_are_left_out() {
        // ACPI data inside Linux's RAM is RAM to it, not firmware.
        let e820 = [E820Entry::new(0x10_0000, 0x3000, E820Type::ACPI)];
        static OWN: &[Region] = &[Region::new(0x10_1000, 0x1000)];
        let f = linux_firmware_ranges(&e820, ram_at(OWN));
        let rw = Perms::READ | Perms::WRITE;
        assert_eq!(
            mapped(&f),
            [
                (0x10_0000, 0x1000, rw),
                (0x10_2000, 0x1000, rw),
                (0xc_0000, 0x4_0000, Perms::READ),
            ]
        );
    }

    #[test]
    fn no_map_maps_only_the_roms() {
        let f = linux_firmware_ranges(&[], |_| false);
        assert_eq!(mapped(&f), [(0xc_0000, 0x4_0000, Perms::READ)]);
    }

    #[test]
    fn overflow_is_reported_not_silent() {
        // Every other page is Linux's: no range merges, and the list fills up.
        let e820 = [E820Entry::new(
            0x1000_0000,
            2 * PAGE * (LINUX_FIRMWARE_MAX as u64 + 4),
            E820Type::ACPI,
        )];
        let f = linux_firmware_ranges(&e820, |r: &Region| (r.base / PAGE) % 2 == 1);
        assert_eq!(f.ranges.as_slice().len(), LINUX_FIRMWARE_MAX);
        let first_left_out = 0x1000_0000 + 2 * PAGE * LINUX_FIRMWARE_MAX as u64;
        // The ACPI range and the ROMs each ran out.
        assert_eq!(f.left_out.as_slice(), [first_left_out, 0xc_0000]);
    }

    #[test]
    fn from_a_config() {
        let toml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../configs/bochs-2cpu.toml"
        ))
        .unwrap();
        let cfg = bulkhead_config::host::load_str(&toml, "bochs-2cpu.toml").unwrap();
        let owns = linux_owns(&cfg);
        let ram = cfg.partition(PartitionId::Linux).memory()[0];
        assert!(owns(&Region::new(ram.base, PAGE)));
        assert!(!owns(&Region::new(0xc_0000, PAGE)));
    }
}
