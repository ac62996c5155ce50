//! What lies in memory at boot and must be neither allocated nor given to a partition
//! (the hypervisor image, the boot information, the boot modules), and the checks of the
//! config's `hypervisor.memory` against it.
//!
//! Pure arithmetic: the image gathers the spans from the linker symbols and the multiboot2
//! information, and turns a failed check into its `FATAL: config: ...` line.

use core::fmt;

use bulkhead_config::Region;

use crate::memory::frames::Span;
use crate::support::fixed::FixedList;

/// The hypervisor maps only the first 4 GiB, so its own memory must end below it (a rule of
/// the config, which refuses such a file already; checked again here before the mapping is
/// relied on).
const HYPERVISOR_MEMORY_END: u64 = bulkhead_config::HYPERVISOR_MAX_END;

/// The memory in use at boot, each range with its name; at most `N` (the image, the boot
/// information, and `N - 2` modules).
#[derive(Debug, Clone, Copy)]
pub struct Occupied<'a, const N: usize> {
    list: FixedList<(&'a str, Span), N>,
}

impl<'a, const N: usize> Occupied<'a, N> {
    /// The hypervisor `image`, the boot information at `boot_info`, then `modules` (name
    /// and span each); modules beyond the capacity are left out (the boot information
    /// parser keeps no more than that).
    pub fn new(
        image: Span,
        boot_info: Span,
        modules: impl IntoIterator<Item = (&'a str, Span)>,
    ) -> Self {
        let mut list = FixedList::new();
        let fixed = [("hypervisor image", image), ("boot information", boot_info)];
        for item in fixed.into_iter().chain(modules) {
            if list.push(item).is_err() {
                break;
            }
        }
        Self { list }
    }

    /// Each range with its name, in the order given.
    pub fn as_slice(&self) -> &[(&'a str, Span)] {
        self.list.as_slice()
    }

    /// The spans alone (the frame allocator's holes).
    pub fn spans(&self) -> FixedList<Span, N> {
        let mut out = FixedList::new();
        for &(_, span) in self.as_slice() {
            // Same capacity as `self.list`.
            let _ = out.push(span);
        }
        out
    }

    /// Each range as a config region with its name (what the config fit check takes).
    pub fn regions(&self) -> FixedList<(&'a str, Region), N> {
        let mut out = FixedList::new();
        for &(name, span) in self.as_slice() {
            let _ = out.push((name, span_region(span)));
        }
        out
    }
}

/// `span` as a region (an inverted span is empty).
pub fn span_region(span: Span) -> Region {
    Region {
        base: span.start,
        size: span.end.saturating_sub(span.start),
    }
}

/// Why `hypervisor.memory` cannot hold the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypervisorMemoryError {
    /// The region does not contain the loaded image.
    MissesImage { region: Region, image: Span },
    /// The region ends above 4 GiB.
    Above4GiB,
}

impl fmt::Display for HypervisorMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissesImage { region, image } => write!(
                f,
                "hypervisor.memory: {:#x}..{:#x} does not contain the hypervisor image at {:#x}..{:#x}",
                region.base,
                region.base + region.size,
                image.start,
                image.end
            ),
            Self::Above4GiB => f.write_str(
                "hypervisor.memory: must end below 4 GiB (the hypervisor maps only the first 4 GiB)",
            ),
        }
    }
}

/// Checks that `hypervisor.memory` (`region`) contains the loaded `image` and ends below
/// 4 GiB.
pub fn check_hypervisor_memory(region: Region, image: Span) -> Result<(), HypervisorMemoryError> {
    let end = region.base.saturating_add(region.size);
    if image.start < region.base || image.end > end {
        return Err(HypervisorMemoryError::MissesImage { region, image });
    }
    if end > HYPERVISOR_MEMORY_END {
        return Err(HypervisorMemoryError::Above4GiB);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    const IMAGE: Span = Span {
        start: 0x10_0000,
        end: 0x14_0000,
    };
    const INFO: Span = Span {
        start: 0x20_0000,
        end: 0x20_1000,
    };

    #[test]
    fn image_and_boot_information_come_first() {
        let o = Occupied::<4>::new(IMAGE, INFO, [("rt", Span::at(0x30_0000, 0x1000))]);
        assert_eq!(
            o.as_slice(),
            [
                ("hypervisor image", IMAGE),
                ("boot information", INFO),
                ("rt", Span::at(0x30_0000, 0x1000)),
            ]
        );
        assert_eq!(
            o.spans().as_slice(),
            [IMAGE, INFO, Span::at(0x30_0000, 0x1000)]
        );
        assert_eq!(
            o.regions().as_slice()[2],
            ("rt", Region::new(0x30_0000, 0x1000))
        );
    }

    #[test]
    fn modules_beyond_capacity_are_left_out() {
        let modules = (0..5).map(|i| ("m", Span::at(0x100_0000 * (i + 1), 0x1000)));
        let o = Occupied::<4>::new(IMAGE, INFO, modules);
        assert_eq!(o.as_slice().len(), 4);
        assert_eq!(o.as_slice()[3].1, Span::at(0x200_0000, 0x1000));
    }

    #[test]
    fn inverted_span_is_an_empty_region() {
        let r = span_region(Span {
            start: 0x2000,
            end: 0x1000,
        });
        assert_eq!(r, Region::new(0x2000, 0));
    }

    #[test]
    fn hypervisor_memory_must_hold_the_image_below_4_gib() {
        assert_eq!(
            check_hypervisor_memory(Region::new(0x10_0000, 0x100_0000), IMAGE),
            Ok(())
        );
        let short = Region::new(0x10_0000, 0x2_0000);
        let e = check_hypervisor_memory(short, IMAGE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "hypervisor.memory: 0x100000..0x120000 does not contain the hypervisor image at 0x100000..0x140000"
        );
        let high = Region::new(0x10_0000, 1 << 32);
        let e = check_hypervisor_memory(high, IMAGE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "hypervisor.memory: must end below 4 GiB (the hypervisor maps only the first 4 GiB)"
        );
        // Ending exactly at 4 GiB is fine.
        let top = Region::new(0x10_0000, (1 << 32) - 0x10_0000);
        assert_eq!(check_hypervisor_memory(top, IMAGE), Ok(()));
    }
}
