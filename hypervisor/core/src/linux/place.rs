//! Where things go in the Linux partition's RAM: the kernel (at its preferred address when
//! it fits, otherwise the lowest suitable aligned address) and the smaller pieces the
//! loader places around it (initrd, command line, zero page, rebuilt ACPI tables).
//!
//! RAM is given as ranges the kernel may use (the partition's memory, best intersected
//! with firmware RAM: the type-1 entries of [`e820`](super::e820)); `avoid` lists what is
//! already taken. Placement never returns a range that leaves one RAM range or touches an
//! avoided one.

use core::fmt;

use bulkhead_config::Region;

/// 16 MiB: the kernel goes at or above this when it can (the default `pref_address`, and
/// clear of low memory that firmware and DMA-limited devices care about).
pub const PREFERRED_FLOOR: u64 = 16 << 20;
/// 1 MiB: nothing of the kernel goes below this.
pub const LOW_LIMIT: u64 = 1 << 20;
/// 4 GiB.
pub const FOUR_GIB: u64 = 1 << 32;

/// What placing a kernel needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelNeeds {
    /// The address it was linked for.
    pub pref_address: u64,
    /// Bytes of linear memory it needs from its load address (a multiple of 4 KiB).
    pub size: u64,
    /// Alignment of the load address (a power of two).
    pub alignment: u64,
    /// Whether it may be loaded anywhere other than `pref_address`.
    pub relocatable: bool,
    /// Whether it may lie above 4 GiB.
    pub above_4g: bool,
}

/// No room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceError {
    /// A non-relocatable kernel's preferred address is not free Linux RAM.
    PrefNotAvailable { pref_address: u64, size: u64 },
    /// No aligned free range of the size needed.
    NoRoom {
        what: &'static str,
        size: u64,
        alignment: u64,
    },
}

impl fmt::Display for PlaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::PrefNotAvailable { pref_address, size } => write!(
                f,
                "the kernel is not relocatable and needs {pref_address:#x}..{:#x}, which is not free RAM of partitions.linux.memory",
                pref_address.saturating_add(size)
            ),
            Self::NoRoom {
                what,
                size,
                alignment,
            } => write!(
                f,
                "no room for the {what} ({size:#x} bytes, {alignment:#x}-aligned) in partitions.linux.memory"
            ),
        }
    }
}

/// Where a request may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Bytes needed.
    pub size: u64,
    /// Alignment of the start (a power of two; 0 or 1 for none).
    pub alignment: u64,
    /// Lowest start.
    pub min: u64,
    /// One past the highest byte the range may occupy.
    pub max_end: u64,
}

fn align_up(value: u64, alignment: u64) -> Option<u64> {
    value.checked_next_multiple_of(alignment.max(1))
}

fn align_down(value: u64, alignment: u64) -> u64 {
    let a = alignment.max(1);
    value - value % a
}

fn overlapping(avoid: &[Region], start: u64, end: u64) -> Option<&Region> {
    let probe = Region::new(start, end - start);
    avoid.iter().find(|a| a.overlaps(&probe))
}

fn valid(req: &Request) -> bool {
    req.size != 0 && (req.alignment <= 1 || req.alignment.is_power_of_two())
}

/// The lowest start satisfying `req` inside one of `ram` and clear of `avoid`.
pub fn lowest(ram: &[Region], avoid: &[Region], req: &Request) -> Option<u64> {
    if !valid(req) {
        return None;
    }
    let mut best: Option<u64> = None;
    for r in ram {
        let limit = r.end().min(req.max_end);
        let mut start = align_up(r.base.max(req.min), req.alignment)?;
        // Each step moves `start` past one avoided range, so this runs at most
        // `avoid.len() + 1` times.
        for _ in 0..=avoid.len() {
            let Some(end) = start.checked_add(req.size).filter(|&e| e <= limit) else {
                break;
            };
            match overlapping(avoid, start, end) {
                None => {
                    best = Some(best.map_or(start, |b| b.min(start)));
                    break;
                }
                Some(a) => match align_up(a.end(), req.alignment) {
                    Some(next) => start = next,
                    None => break,
                },
            }
        }
    }
    best
}

/// The highest start satisfying `req` inside one of `ram` and clear of `avoid`.
pub fn highest(ram: &[Region], avoid: &[Region], req: &Request) -> Option<u64> {
    if !valid(req) {
        return None;
    }
    let mut best: Option<u64> = None;
    for r in ram {
        let mut limit = r.end().min(req.max_end);
        let floor = r.base.max(req.min);
        for _ in 0..=avoid.len() {
            let Some(top) = limit.checked_sub(req.size) else {
                break;
            };
            let start = align_down(top, req.alignment);
            if start < floor {
                break;
            }
            match overlapping(avoid, start, start + req.size) {
                None => {
                    best = Some(best.map_or(start, |b| b.max(start)));
                    break;
                }
                Some(a) => limit = a.base,
            }
        }
    }
    best
}

fn fits(ram: &[Region], avoid: &[Region], start: u64, size: u64, max_end: u64) -> bool {
    let Some(end) = start.checked_add(size).filter(|&e| e <= max_end) else {
        return false;
    };
    let want = Region::new(start, size);
    ram.iter().any(|r| r.contains_region(&want)) && overlapping(avoid, start, end).is_none()
}

/// The kernel's load address: `pref_address` when it is aligned and `size` bytes from it
/// are free Linux RAM; otherwise (for a relocatable kernel) the lowest aligned address at
/// or above 16 MiB with room, or failing that at or above 1 MiB.
pub fn kernel_load_address(
    needs: &KernelNeeds,
    ram: &[Region],
    avoid: &[Region],
) -> Result<u64, PlaceError> {
    let max_end = if needs.above_4g { u64::MAX } else { FOUR_GIB };
    let alignment = needs.alignment.max(1);
    let pref = needs.pref_address;
    let pref_ok = pref >= LOW_LIMIT
        && (!needs.relocatable || pref.is_multiple_of(alignment))
        && fits(ram, avoid, pref, needs.size, max_end);
    if pref_ok && needs.size != 0 {
        return Ok(pref);
    }
    if !needs.relocatable {
        return Err(PlaceError::PrefNotAvailable {
            pref_address: pref,
            size: needs.size,
        });
    }
    let request = |min| Request {
        size: needs.size,
        alignment,
        min,
        max_end,
    };
    lowest(ram, avoid, &request(PREFERRED_FLOOR))
        .or_else(|| lowest(ram, avoid, &request(LOW_LIMIT)))
        .ok_or(PlaceError::NoRoom {
            what: "kernel",
            size: needs.size,
            alignment,
        })
}

#[cfg(test)]
mod tests {
    use std::string::ToString;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    const MIB: u64 = 1 << 20;

    fn needs(pref: u64, size: u64) -> KernelNeeds {
        KernelNeeds {
            pref_address: pref,
            size,
            alignment: 2 * MIB,
            relocatable: true,
            above_4g: false,
        }
    }

    #[test]
    fn takes_pref_address_when_free() {
        let ram = [Region::new(0, 640 << 10), Region::new(8 * MIB, 512 * MIB)];
        assert_eq!(
            kernel_load_address(&needs(16 * MIB, 32 * MIB), &ram, &[]),
            Ok(16 * MIB)
        );
    }

    #[test]
    fn moves_when_pref_is_taken_or_outside() {
        let ram = [Region::new(128 * MIB, 512 * MIB)];
        assert_eq!(
            kernel_load_address(&needs(16 * MIB, 32 * MIB), &ram, &[]),
            Ok(128 * MIB)
        );
        let avoid = [Region::new(130 * MIB, 0x1000)];
        assert_eq!(
            kernel_load_address(&needs(16 * MIB, 32 * MIB), &ram, &avoid),
            Ok(132 * MIB)
        );
        // Prefers 16 MiB and up, but takes lower RAM above 1 MiB when that is all there is.
        let ram = [
            Region::new(MIB + 0x1000, 40 * MIB),
            Region::new(60 * MIB, 4 * MIB),
        ];
        assert_eq!(
            kernel_load_address(&needs(0, 8 * MIB), &ram, &[]),
            Ok(16 * MIB)
        );
        assert_eq!(
            kernel_load_address(&needs(0, 30 * MIB), &ram, &[]),
            Ok(2 * MIB)
        );
    }

    #[test]
    fn no_room_names_the_config_field() {
        let ram = [Region::new(16 * MIB, 8 * MIB)];
        let e = kernel_load_address(&needs(16 * MIB, 32 * MIB), &ram, &[]).unwrap_err();
        assert!(e.to_string().contains("partitions.linux.memory"), "{e}");
        let mut n = needs(16 * MIB, 32 * MIB);
        n.relocatable = false;
        let e = kernel_load_address(&n, &ram, &[]).unwrap_err();
        assert!(matches!(e, PlaceError::PrefNotAvailable { .. }));
        assert!(e.to_string().contains("partitions.linux.memory"), "{e}");
    }

    #[test]
    fn stays_below_4g_unless_allowed() {
        let ram = [Region::new(FOUR_GIB, FOUR_GIB)];
        assert!(kernel_load_address(&needs(0, 32 * MIB), &ram, &[]).is_err());
        let mut n = needs(0, 32 * MIB);
        n.above_4g = true;
        assert_eq!(kernel_load_address(&n, &ram, &[]), Ok(FOUR_GIB));
    }

    #[test]
    fn highest_steps_below_avoided_ranges() {
        let ram = [Region::new(0, 100 * MIB)];
        let avoid = [Region::new(90 * MIB, 20 * MIB)];
        let req = Request {
            size: 4 * MIB,
            alignment: 0x1000,
            min: 0,
            max_end: u64::MAX,
        };
        assert_eq!(highest(&ram, &avoid, &req), Some(86 * MIB));
        assert_eq!(lowest(&ram, &avoid, &req), Some(0));
    }

    fn region() -> impl Strategy<Value = Region> {
        (0u64..64, 1u64..32).prop_map(|(b, s)| Region::new(b * MIB, s * MIB))
    }

    proptest! {
        #[test]
        fn placements_are_inside_ram_and_clear(
            ram in proptest::collection::vec(region(), 0..4),
            avoid in proptest::collection::vec(region(), 0..4),
            size in 1u64..16,
            align_log in 16u32..24,
            high in any::<bool>(),
        ) {
            let req = Request { size: size * MIB / 2, alignment: 1 << align_log, min: 0, max_end: u64::MAX };
            let got = if high { highest(&ram, &avoid, &req) } else { lowest(&ram, &avoid, &req) };
            if let Some(start) = got {
                let want = Region::new(start, req.size);
                prop_assert!(start.is_multiple_of(req.alignment));
                prop_assert!(ram.iter().any(|r| r.contains_region(&want)));
                prop_assert!(avoid.iter().all(|a| !a.overlaps(&want)));
            } else {
                // Check by brute force on the alignment grid that nothing fits.
                let ends: Vec<u64> = ram.iter().map(|r| r.end()).collect();
                let top = ends.iter().copied().max().unwrap_or(0);
                let mut s = 0;
                while s + req.size <= top {
                    let want = Region::new(s, req.size);
                    prop_assert!(!(ram.iter().any(|r| r.contains_region(&want))
                        && avoid.iter().all(|a| !a.overlaps(&want))), "missed {s:#x}");
                    s += req.alignment;
                }
            }
        }
    }
}
