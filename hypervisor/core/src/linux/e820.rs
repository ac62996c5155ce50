//! The memory map Linux is given (the zero page's e820 table).
//!
//! Linux must believe exactly what its partition owns: its RAM is firmware RAM inside
//! `partitions.linux.memory`; every shared (channel) region is reserved so that Linux never
//! allocates it; every other firmware range (ACPI tables, NVS, MMIO holes, ...) passes
//! through with its type, because drivers and ACPI need to see them, EXCEPT where it
//! overlaps the hypervisor's or the RT partition's memory: there the map says nothing at
//! all. The caller may add ranges of its own (where it put Linux's rebuilt ACPI tables,
//! as [`E820Type::ACPI`]); those must lie outside the hypervisor, the RT partition and the
//! shared regions.
//!
//! The result is sorted, non-overlapping, with adjacent ranges of one type merged, and at
//! most [`MAX_ENTRIES`] long (what the zero page holds).

use core::fmt;

use bulkhead_config::{Config, PartitionId, Region, SharedRegion};

use crate::support::fixed::FixedList;

/// Most entries the zero page holds.
pub const MAX_ENTRIES: usize = 128;
/// Most firmware entries accepted.
pub const MAX_FIRMWARE_ENTRIES: usize = 256;
/// Most extra ranges accepted.
pub const MAX_EXTRA: usize = 8;

/// An e820 range type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct E820Type(pub u32);

impl E820Type {
    /// Usable RAM.
    pub const RAM: Self = Self(1);
    /// Reserved.
    pub const RESERVED: Self = Self(2);
    /// ACPI tables, reclaimable once read.
    pub const ACPI: Self = Self(3);
    /// ACPI non-volatile storage.
    pub const NVS: Self = Self(4);
    /// Defective RAM.
    pub const UNUSABLE: Self = Self(5);
}

impl fmt::Debug for E820Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "RAM",
            2 => "reserved",
            3 => "ACPI",
            4 => "NVS",
            5 => "unusable",
            n => return write!(f, "type {n}"),
        };
        f.write_str(name)
    }
}

/// One range of the map, as the zero page stores it (`addr`, `size`, `type`; 20 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// What it is.
    pub kind: E820Type,
}

impl E820Entry {
    /// The range `addr..addr + size` of type `kind`.
    pub const fn new(addr: u64, size: u64, kind: E820Type) -> Self {
        Self { addr, size, kind }
    }

    /// One past the last byte (saturating).
    pub const fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// Linux's e820 map.
pub type E820Map = FixedList<E820Entry, MAX_ENTRIES>;

/// Who owns what, as far as the map is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Partitioning<'a> {
    /// `partitions.linux.memory`.
    pub linux: &'a [Region],
    /// `partitions.rt.memory`.
    pub rt: &'a [Region],
    /// `hypervisor.memory`.
    pub hypervisor: Region,
    /// `shared`.
    pub shared: &'a [SharedRegion],
}

impl<'a> Partitioning<'a> {
    /// The partitioning a config describes.
    pub fn from_config(config: &'a Config) -> Self {
        Self {
            linux: config.partition(PartitionId::Linux).memory(),
            rt: config.partition(PartitionId::Rt).memory(),
            hypervisor: config.hypervisor_region(),
            shared: config.shared_regions(),
        }
    }

    /// Whether `r` touches memory Linux must never see (hypervisor or RT partition).
    fn hidden(&self, r: &Region) -> bool {
        self.hypervisor.overlaps(r) || self.rt.iter().any(|m| m.overlaps(r))
    }
}

/// Why the map could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E820Error {
    /// More firmware entries than [`MAX_FIRMWARE_ENTRIES`].
    TooManyFirmwareEntries { count: usize },
    /// More extra ranges than [`MAX_EXTRA`].
    TooManyExtra { count: usize },
    /// An extra range overlaps the hypervisor, the RT partition, a shared region or another
    /// extra range.
    ExtraConflict { addr: u64, size: u64 },
    /// The result needs more entries than the zero page holds.
    TooManyEntries { needed: usize },
}

impl fmt::Display for E820Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooManyFirmwareEntries { count } => write!(
                f,
                "e820: the firmware memory map has {count} entries (at most {MAX_FIRMWARE_ENTRIES} supported)"
            ),
            Self::TooManyExtra { count } => {
                write!(f, "e820: {count} extra ranges (at most {MAX_EXTRA})")
            }
            Self::ExtraConflict { addr, size } => write!(
                f,
                "e820: the range {addr:#x}..{:#x} added for Linux overlaps the hypervisor, the RT partition, a shared region or another added range",
                addr.saturating_add(size)
            ),
            Self::TooManyEntries { needed } => write!(
                f,
                "e820: Linux's memory map needs {needed} entries, more than the {MAX_ENTRIES} the zero page holds (fewer, larger partitions.linux.memory regions help)"
            ),
        }
    }
}

const MAX_POINTS: usize = 2
    * (MAX_FIRMWARE_ENTRIES
        + 2 * bulkhead_config::MAX_REGIONS
        + bulkhead_config::MAX_SHARED_REGIONS
        + MAX_EXTRA
        + 1);

fn region_of(e: &E820Entry) -> Region {
    Region::new(e.addr, e.end() - e.addr)
}

/// The firmware's word on `piece` (which lies wholly inside or outside each entry): RAM
/// only where no other type claims it; among other types the highest number wins; type 0
/// is taken as reserved. `None` where the firmware says nothing.
fn firmware_type(firmware: &[E820Entry], piece: &Region) -> Option<E820Type> {
    firmware
        .iter()
        .filter(|e| region_of(e).overlaps(piece))
        .map(|e| match e.kind.0 {
            0 => E820Type::RESERVED,
            _ => e.kind,
        })
        .max_by_key(|t| (*t != E820Type::RAM, t.0))
}

/// Builds Linux's map from the firmware's `firmware` map, the partitioning and the
/// caller's `extra` ranges.
pub fn build(
    firmware: &[E820Entry],
    parts: &Partitioning<'_>,
    extra: &[E820Entry],
) -> Result<E820Map, E820Error> {
    if firmware.len() > MAX_FIRMWARE_ENTRIES {
        return Err(E820Error::TooManyFirmwareEntries {
            count: firmware.len(),
        });
    }
    if extra.len() > MAX_EXTRA {
        return Err(E820Error::TooManyExtra { count: extra.len() });
    }
    for (i, x) in extra.iter().enumerate() {
        let r = region_of(x);
        let conflict = parts.hidden(&r)
            || parts.shared.iter().any(|s| s.region.overlaps(&r))
            || extra
                .get(..i)
                .is_some_and(|before| before.iter().any(|y| region_of(y).overlaps(&r)));
        if conflict {
            return Err(E820Error::ExtraConflict {
                addr: x.addr,
                size: x.size,
            });
        }
    }

    // Every boundary of every range; between two neighbouring boundaries each range
    // either covers everything or nothing.
    let mut points = FixedList::<u64, MAX_POINTS>::new();
    let ranges = firmware
        .iter()
        .chain(extra)
        .map(region_of)
        .chain(parts.linux.iter().copied())
        .chain(parts.rt.iter().copied())
        .chain(parts.shared.iter().map(|s| s.region))
        .chain(core::iter::once(parts.hypervisor));
    for r in ranges {
        // Capacity covers every input accepted above and the config's own limits; a
        // config built past those limits only loses boundaries, never safety, because
        // every piece is checked against every range below.
        let _ = points.push(r.base);
        let _ = points.push(r.end());
    }
    let points = points.as_mut_slice();
    points.sort_unstable();

    let mut map = E820Map::new();
    // The true last entry, which `map` no longer holds once it is full; counting goes on so
    // that the error says how many entries are needed.
    let mut tail: Option<E820Entry> = None;
    let mut needed = 0usize;
    for pair in points.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        if start == end {
            continue;
        }
        let piece = Region::new(start, end - start);
        let kind = if parts.hidden(&piece) {
            None
        } else if let Some(x) = extra.iter().find(|x| region_of(x).overlaps(&piece)) {
            Some(x.kind)
        } else if parts.shared.iter().any(|s| s.region.overlaps(&piece)) {
            Some(E820Type::RESERVED)
        } else {
            match firmware_type(firmware, &piece) {
                Some(E820Type::RAM) => parts
                    .linux
                    .iter()
                    .any(|l| l.overlaps(&piece))
                    .then_some(E820Type::RAM),
                other => other,
            }
        };
        let Some(kind) = kind else { continue };
        match tail.as_mut() {
            Some(last) if last.kind == kind && last.end() == start => {
                last.size += piece.size;
                if let Some(stored) = map.as_mut_slice().get_mut(needed - 1) {
                    stored.size = last.size;
                }
            }
            _ => {
                let entry = E820Entry::new(start, piece.size, kind);
                tail = Some(entry);
                needed += 1;
                let _ = map.push(entry);
            }
        }
    }
    if needed > MAX_ENTRIES {
        return Err(E820Error::TooManyEntries { needed });
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use std::string::ToString;
    use std::vec::Vec;

    use bulkhead_config::Name;
    use proptest::prelude::*;

    use super::*;

    const MIB: u64 = 1 << 20;

    fn e(addr: u64, end: u64, kind: E820Type) -> E820Entry {
        E820Entry::new(addr, end - addr, kind)
    }

    fn shared(base: u64, size: u64) -> SharedRegion {
        SharedRegion::new(Name::new("shm0").unwrap(), Region::new(base, size))
    }

    /// Linux at 0..16 MiB, the RT partition at 16..32 MiB, the hypervisor at 32..36 MiB,
    /// nothing shared.
    fn small_partitioning() -> Partitioning<'static> {
        const LINUX: &[Region] = &[Region::new(0, 16 * MIB)];
        const RT: &[Region] = &[Region::new(16 * MIB, 16 * MIB)];
        Partitioning {
            linux: LINUX,
            rt: RT,
            hypervisor: Region::new(32 * MIB, 4 * MIB),
            shared: &[],
        }
    }

    /// A Bochs-like firmware map and the layout of the two-CPU Bochs config.
    #[test]
    fn bochs_layout() {
        use E820Type as T;
        let firmware = [
            e(0, 0x9f000, T::RAM),
            e(0x9f000, 0xa0000, T::RESERVED),
            e(0xe8000, 0x10_0000, T::RESERVED),
            e(0x10_0000, 0x3fff_0000, T::RAM),
            e(0x3fff_0000, 0x4000_0000, T::ACPI),
            e(0xfec0_0000, 0xfec0_1000, T::RESERVED),
            e(0xfffc_0000, 0x1_0000_0000, T::RESERVED),
        ];
        let linux = [Region::new(0, 0x9f000), Region::new(0x800_0000, 640 * MIB)];
        let rt = [Region::new(0x3000_0000, 128 * MIB)];
        let sh = [shared(0x3800_0000, 2 * MIB)];
        let parts = Partitioning {
            linux: &linux,
            rt: &rt,
            hypervisor: Region::new(MIB, 127 * MIB),
            shared: &sh,
        };
        let acpi = [e(0x2fff_0000, 0x3000_0000, T::ACPI)];
        let map = build(&firmware, &parts, &acpi).unwrap();
        assert_eq!(
            map.as_slice(),
            &[
                e(0, 0x9f000, T::RAM),
                e(0x9f000, 0xa0000, T::RESERVED),
                e(0xe8000, 0x10_0000, T::RESERVED),
                e(0x800_0000, 0x2fff_0000, T::RAM),
                e(0x2fff_0000, 0x3000_0000, T::ACPI),
                e(0x3800_0000, 0x3820_0000, T::RESERVED),
                e(0x3fff_0000, 0x4000_0000, T::ACPI),
                e(0xfec0_0000, 0xfec0_1000, T::RESERVED),
                e(0xfffc_0000, 0x1_0000_0000, T::RESERVED),
            ]
        );
    }

    #[test]
    fn non_ram_over_hidden_memory_is_cut_out() {
        use E820Type as T;
        let firmware = [e(0, 64 * MIB, T::RAM), e(8 * MIB, 40 * MIB, T::NVS)];
        let parts = small_partitioning();
        let map = build(&firmware, &parts, &[]).unwrap();
        assert_eq!(
            map.as_slice(),
            &[
                e(0, 8 * MIB, T::RAM),
                e(8 * MIB, 16 * MIB, T::NVS),
                e(36 * MIB, 40 * MIB, T::NVS),
            ]
        );
    }

    #[test]
    fn errors() {
        let parts = small_partitioning();
        let x = [E820Entry::new(30 * MIB, MIB, E820Type::ACPI)];
        let err = build(&[], &parts, &x).unwrap_err();
        assert!(err.to_string().contains("0x1e00000..0x1f00000"), "{err}");

        // 300 alternating ranges cannot fit the zero page.
        let fw: Vec<E820Entry> = (0..200u64)
            .map(|i| {
                let kind = if i % 2 == 0 {
                    E820Type::RAM
                } else {
                    E820Type::RESERVED
                };
                E820Entry::new(i * 0x1000, 0x1000, kind)
            })
            .collect();
        let err = build(&fw, &parts, &[]).unwrap_err();
        assert_eq!(err, E820Error::TooManyEntries { needed: 200 });
        assert!(err.to_string().contains("200 entries"));
        let fw: Vec<E820Entry> = (0..300u64)
            .map(|i| E820Entry::new(i * 0x1000, 0x1000, E820Type::RAM))
            .collect();
        assert_eq!(
            build(&fw, &parts, &[]).unwrap_err(),
            E820Error::TooManyFirmwareEntries { count: 300 }
        );
    }

    fn range(max_mib: u64) -> impl Strategy<Value = Region> {
        (0..max_mib, 1..max_mib / 4).prop_map(|(b, s)| Region::new(b * MIB / 4, s * MIB / 4))
    }

    fn covers(map: &[E820Entry], r: &Region) -> bool {
        map.iter().any(|m| region_of(m).overlaps(r))
    }

    proptest! {
        #[test]
        fn invariants(
            fw in proptest::collection::vec((range(64), 0u32..8), 0..24),
            linux in proptest::collection::vec(range(64), 0..4),
            rt in proptest::collection::vec(range(64), 0..3),
            hv in range(64),
            sh in proptest::collection::vec(range(64), 0..2),
            extra in proptest::collection::vec(range(64), 0..2),
        ) {
            let firmware: Vec<E820Entry> = fw
                .iter()
                .map(|(r, t)| E820Entry::new(r.base, r.size, E820Type(*t)))
                .collect();
            let shared: Vec<SharedRegion> = sh.iter().map(|r| shared(r.base, r.size)).collect();
            let extra: Vec<E820Entry> = extra
                .iter()
                .map(|r| E820Entry::new(r.base, r.size, E820Type::ACPI))
                .collect();
            let parts = Partitioning { linux: &linux, rt: &rt, hypervisor: hv, shared: &shared };
            let Ok(map) = build(&firmware, &parts, &extra) else {
                return Ok(());
            };
            let map = map.as_slice();
            // Sorted, non-overlapping, merged, non-empty.
            for w in map.windows(2) {
                prop_assert!(w[0].end() <= w[1].addr);
                prop_assert!(!(w[0].end() == w[1].addr && w[0].kind == w[1].kind));
            }
            prop_assert!(map.iter().all(|m| m.size > 0));
            // Never a byte of the RT partition or the hypervisor.
            for r in rt.iter().chain(core::iter::once(&hv)) {
                prop_assert!(!covers(map, r), "exposes {r}");
            }
            // RAM only inside Linux memory and firmware RAM.
            let ram: Vec<&E820Entry> = map.iter().filter(|m| m.kind == E820Type::RAM).collect();
            for m in &ram {
                let piece = region_of(m);
                let mut a = piece.base;
                while a < piece.end() {
                    let byte = Region::new(a, 1);
                    prop_assert!(linux.iter().any(|l| l.overlaps(&byte)));
                    prop_assert!(firmware.iter().any(|f| f.kind == E820Type::RAM && region_of(f).overlaps(&byte)));
                    a += MIB / 4;
                }
            }
            // Every quarter-MiB of Linux RAM that only firmware RAM covers, and nothing
            // else claims, is RAM.
            for l in &linux {
                let mut a = l.base;
                while a < l.end() {
                    let q = Region::new(a, MIB / 4);
                    let fw_here: Vec<&E820Entry> = firmware.iter().filter(|f| region_of(f).overlaps(&q)).collect();
                    let only_ram = !fw_here.is_empty() && fw_here.iter().all(|f| f.kind == E820Type::RAM);
                    let claimed = parts.hidden(&q)
                        || shared.iter().any(|s| s.region.overlaps(&q))
                        || extra.iter().any(|x| region_of(x).overlaps(&q));
                    if only_ram && !claimed {
                        prop_assert!(ram.iter().any(|m| region_of(m).contains_region(&q)), "lost RAM at {a:#x}");
                    }
                    a += MIB / 4;
                }
            }
            // Shared regions are reserved where not hidden.
            for s in &shared {
                if !parts.hidden(&s.region) {
                    prop_assert!(map.iter().any(|m| m.kind == E820Type::RESERVED && region_of(m).contains_region(&s.region)));
                }
            }
        }
    }
}
