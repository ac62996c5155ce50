//! Semantic validation of a [`Config`]: the one set of rules that the host tool applies before
//! compiling a config and the hypervisor applies again after decoding it. It needs nothing but the
//! config (hardware is [`platform`](crate::platform)'s business), allocates nothing, and reports
//! the first problem in file order, blaming the later of two conflicting fields and naming the
//! earlier one.

use bulkhead_abi::limits;
use bulkhead_abi::rt_boot::layout;

use crate::MAX_SHARED_REGIONS;
use crate::error::{ConfigError, ErrorKind, FieldPath};
use crate::model::{
    ChannelDirection, Config, ConsoleTarget, Notify, PartitionId, Region, RtConfig,
};

/// Page size: every region base and size, and every channel size, is a multiple of it.
pub const PAGE_SIZE: u64 = limits::PAGE_SIZE;
/// Regions must end at or below this address (64 TiB, the 46-bit physical address width of
/// common x86 parts); anything beyond is a typo.
pub const ABSURD_END: u64 = 1 << 46;
/// The hypervisor region must end at or below this: the hypervisor maps only the first 4 GiB
/// for itself.
pub const HYPERVISOR_MAX_END: u64 = 1 << 32;
/// Smallest hypervisor region: image, module copies, VMCS, EPT and stacks need room.
pub const HYPERVISOR_MIN_SIZE: u64 = 4 << 20;
/// Highest IOAPIC pin (GSI) a partition may own: vectors 0..=255 minus the 16 exception ones.
pub const MAX_IOAPIC_PIN: u32 = 239;
/// Size of a channel's header, ahead of its slots.
pub const CHANNEL_HEADER_SIZE: u64 = limits::CHANNEL_HEADER_SIZE;
/// Fewest slots a channel may have.
pub const CHANNEL_MIN_SLOTS: u64 = limits::CHANNEL_MIN_SLOTS as u64;
/// Smallest slot size.
pub const MIN_SLOT_SIZE: u32 = limits::CHANNEL_MIN_SLOT_SIZE;
/// Largest slot size.
pub const MAX_SLOT_SIZE: u32 = limits::CHANNEL_MAX_SLOT_SIZE;

/// `value` rounded up to a multiple of [`PAGE_SIZE`], saturating.
pub(crate) const fn round_up_page(value: u64) -> u64 {
    match value.checked_next_multiple_of(PAGE_SIZE) {
        Some(rounded) => rounded,
        None => u64::MAX,
    }
}

fn err(path: FieldPath, kind: ErrorKind) -> Result<(), ConfigError> {
    Err(ConfigError::new(path, kind))
}

/// Checks a region on its own: non-zero, 4 KiB-aligned, ending below [`ABSURD_END`].
/// `path` names the region; the error names its `base` or `size` field.
fn check_region(region: &Region, path: FieldPath) -> Result<(), ConfigError> {
    if region.size == 0 {
        return err(path.key("size"), ErrorKind::ZeroSize);
    }
    if !region.base.is_multiple_of(PAGE_SIZE) {
        return err(
            path.key("base"),
            ErrorKind::Unaligned { value: region.base },
        );
    }
    if !region.size.is_multiple_of(PAGE_SIZE) {
        return err(
            path.key("size"),
            ErrorKind::Unaligned { value: region.size },
        );
    }
    match region.base.checked_add(region.size) {
        Some(end) if end <= ABSURD_END => Ok(()),
        _ => err(
            path.key("size"),
            ErrorKind::AbsurdSize {
                base: region.base,
                size: region.size,
            },
        ),
    }
}

fn check_name(name: &crate::Name, path: FieldPath) -> Result<(), ConfigError> {
    if name.is_empty() {
        err(path, ErrorKind::EmptyName)
    } else {
        Ok(())
    }
}

impl Config {
    /// Every memory region in the config with the path of its field: the hypervisor region,
    /// each partition's memory, each shared region, each partition's device registers (in
    /// that order).
    fn regions(&self) -> impl Iterator<Item = (FieldPath, Region)> + '_ {
        let hypervisor =
            core::iter::once((FieldPath::at("hypervisor").key("memory"), self.hypervisor));
        let partitions = PartitionId::ALL.into_iter().flat_map(move |id| {
            self.partition(id)
                .memory()
                .iter()
                .enumerate()
                .map(move |(i, r)| (FieldPath::partition(id).key("memory").index(i), *r))
        });
        let shared = self
            .shared_regions()
            .iter()
            .enumerate()
            .map(|(i, s)| (FieldPath::at("shared").index(i).name(s.name), s.region));
        let mmio = PartitionId::ALL.into_iter().flat_map(move |id| {
            self.partition(id)
                .mmio()
                .iter()
                .enumerate()
                .map(move |(i, r)| (FieldPath::partition(id).key("mmio").index(i), *r))
        });
        hypervisor.chain(partitions).chain(shared).chain(mmio)
    }

    /// Items of one kind owned by the partitions, in config order, with their paths.
    fn owned<'a, T: Copy + 'a>(
        &'a self,
        key: &'static str,
        list: impl Fn(PartitionId) -> &'a [T] + Copy + 'a,
    ) -> impl Iterator<Item = (FieldPath, T)> + Clone + 'a {
        PartitionId::ALL.into_iter().flat_map(move |id| {
            list(id)
                .iter()
                .enumerate()
                .map(move |(i, item)| (FieldPath::partition(id).key(key).index(i), *item))
        })
    }

    /// Checks every rule that needs only the config. Returns the first problem in file order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name(&self.name, FieldPath::at("machine").key("name"))?;

        let hypervisor = FieldPath::at("hypervisor").key("memory");
        check_region(&self.hypervisor, hypervisor)?;
        if self.hypervisor.size < HYPERVISOR_MIN_SIZE {
            return err(
                hypervisor.key("size"),
                ErrorKind::HypervisorTooSmall {
                    size: self.hypervisor.size,
                },
            );
        }
        if self.hypervisor.end() > HYPERVISOR_MAX_END {
            return err(
                hypervisor,
                ErrorKind::HypervisorAbove4G {
                    region: self.hypervisor,
                },
            );
        }

        self.check_console()?;

        for id in PartitionId::ALL {
            self.check_partition(id)?;
        }
        self.check_ownership()?;
        self.check_shared()?;
        self.check_rt_layout()?;

        // Overlaps between any two regions, blaming the later one.
        for (j, (path, region)) in self.regions().enumerate() {
            if let Some((other, other_region)) =
                self.regions().take(j).find(|(_, r)| r.overlaps(&region))
            {
                return err(
                    path,
                    ErrorKind::Overlap {
                        region,
                        other,
                        other_region,
                    },
                );
            }
        }

        check_name(self.linux.kernel(), FieldPath::at("linux").key("kernel"))?;
        check_name(self.rt.image(), FieldPath::at("rt").key("image"))?;
        let per_s = self.rt.doorbells_per_s();
        if !(1..=RtConfig::MAX_DOORBELLS_PER_S).contains(&per_s) {
            return err(
                FieldPath::at("rt").key("doorbells_per_s"),
                ErrorKind::DoorbellBudget { per_s },
            );
        }

        self.check_channels()
    }

    /// Linux's console UART is Linux's alone: Linux drives it with interrupts, and another writer
    /// on the port (the hypervisor or the RT kernel, which poll) makes it miss the
    /// transmitter-empty interrupt, so that its console stalls. The hypervisor and the RT
    /// partition may share a UART with each other.
    fn check_console(&self) -> Result<(), ConfigError> {
        let console = self.console;
        let port = console.linux;
        if port == ConsoleTarget::None {
            return Ok(());
        }
        let hypervisor = console.hypervisor == port;
        let rt = console.rt == port;
        if hypervisor || rt {
            return err(
                FieldPath::at("console").key("linux"),
                ErrorKind::ConsoleShared {
                    port,
                    hypervisor,
                    rt,
                },
            );
        }
        Ok(())
    }

    /// The RT partition's RAM and the shared regions fit its guest-physical space, placed as
    /// the RT boot protocol places them (`bulkhead_abi::rt_boot::layout`, the function the
    /// hypervisor's loader uses).
    fn check_rt_layout(&self) -> Result<(), ConfigError> {
        let ram = self.partition(PartitionId::Rt).memory();
        let mut last = None;
        let placed = layout::place(
            ram.iter().map(|r| (r.base, r.size)),
            self.shared_regions()
                .iter()
                .map(|s| (s.region.base, s.region.size)),
            |piece, _| last = Some(piece),
        );
        match placed {
            Ok(()) => Ok(()),
            Err(e) => {
                // Blame the piece that did not fit: the one after the last placed.
                let rt_memory = FieldPath::partition(PartitionId::Rt).key("memory");
                let next = |i: usize| i.saturating_add(1);
                let path = match (e, last) {
                    (layout::LayoutError::RamTooSmall { .. }, _) => rt_memory,
                    (_, None) => rt_memory.index(0),
                    (_, Some(layout::Piece::Ram(i))) if next(i) < ram.len() => {
                        rt_memory.index(next(i))
                    }
                    (_, Some(layout::Piece::Ram(_))) => self.shared_path(0),
                    (_, Some(layout::Piece::Shared(i))) => self.shared_path(next(i)),
                };
                err(path, ErrorKind::RtLayout(e))
            }
        }
    }

    /// `shared[index] (name)`.
    fn shared_path(&self, index: usize) -> FieldPath {
        let path = FieldPath::at("shared").index(index);
        match self.shared_regions().get(index) {
            Some(s) => path.name(s.name),
            None => path,
        }
    }

    /// A partition on its own: has CPUs and memory, regions sane, pins and ports in range.
    fn check_partition(&self, id: PartitionId) -> Result<(), ConfigError> {
        let part = self.partition(id);
        let path = FieldPath::partition(id);
        if part.cpus().is_empty() {
            return err(path.key("cpus"), ErrorKind::NoCpu);
        }
        if id == PartitionId::Rt && part.cpus().len() > crate::MAX_RT_CPUS {
            return err(
                path.key("cpus").index(crate::MAX_RT_CPUS),
                ErrorKind::TooManyRtCpus {
                    count: part.cpus().len(),
                    max: crate::MAX_RT_CPUS,
                },
            );
        }
        if id == PartitionId::Rt && part.pci_devices().len() > crate::MAX_RT_PCI_FUNCTIONS {
            return err(
                path.key("pci_devices").index(crate::MAX_RT_PCI_FUNCTIONS),
                ErrorKind::TooManyRtPciFunctions {
                    count: part.pci_devices().len(),
                    max: crate::MAX_RT_PCI_FUNCTIONS,
                },
            );
        }
        if part.memory().is_empty() {
            return err(path.key("memory"), ErrorKind::NoMemory);
        }
        for (i, region) in part.memory().iter().enumerate() {
            check_region(region, path.key("memory").index(i))?;
        }
        for (i, (&pin, route)) in part.ioapic_pins().iter().zip(part.pin_routes()).enumerate() {
            let at = path.key("ioapic_pins").index(i);
            if pin > MAX_IOAPIC_PIN {
                return err(at, ErrorKind::PinOutOfRange { pin });
            }
            if id == PartitionId::Linux && !route.is_default() {
                return err(at, ErrorKind::LinuxPinRouted { pin });
            }
            if let Some(apic_id) = route.cpu
                && !part.cpus().contains(&apic_id)
            {
                return err(at.key("cpu"), ErrorKind::PinCpuOutside { pin, apic_id });
            }
        }
        for (i, (&bdf, &intx)) in part.pci_devices().iter().zip(part.pci_intx()).enumerate() {
            let Some(pin) = intx else { continue };
            let at = path.key("pci_devices").index(i).key("intx");
            if id == PartitionId::Linux {
                return err(at, ErrorKind::LinuxPciIntx { bdf });
            }
            if pin == 0 || !part.ioapic_pins().contains(&pin) {
                return err(at, ErrorKind::PciIntxNotRtPin { bdf, pin });
            }
        }
        for (i, region) in part.mmio().iter().enumerate() {
            let at = path.key("mmio").index(i);
            if id == PartitionId::Linux {
                return err(at, ErrorKind::LinuxMmio);
            }
            check_region(region, at)?;
            if region.base < crate::MMIO_WINDOW.start || region.end() > crate::MMIO_WINDOW.end {
                return err(at, ErrorKind::MmioOutsideWindow { region: *region });
            }
            let apic = Region::new(
                crate::LOCAL_APIC_RANGE.start,
                crate::LOCAL_APIC_RANGE.end - crate::LOCAL_APIC_RANGE.start,
            );
            if region.overlaps(&apic) {
                return err(at, ErrorKind::MmioIsLocalApic { region: *region });
            }
        }
        for (i, &range) in part.io_ports().iter().enumerate() {
            let at = path.key("io_ports").index(i);
            if range.count == 0 {
                return err(at.key("count"), ErrorKind::PortCountZero);
            }
            if range.end() > 0x1_0000 {
                return err(at.key("count"), ErrorKind::PortPastEnd { range });
            }
        }
        Ok(())
    }

    /// Each CPU, pin, port and PCI device owned once, across both partitions.
    fn check_ownership(&self) -> Result<(), ConfigError> {
        let cpus = self.owned("cpus", |id| self.partition(id).cpus());
        for (j, (path, apic_id)) in cpus.clone().enumerate() {
            if let Some((other, _)) = cpus.clone().take(j).find(|&(_, a)| a == apic_id) {
                return err(path, ErrorKind::CpuOwnedTwice { apic_id, other });
            }
        }
        let pins = self.owned("ioapic_pins", |id| self.partition(id).ioapic_pins());
        for (j, (path, pin)) in pins.clone().enumerate() {
            if let Some((other, _)) = pins.clone().take(j).find(|&(_, p)| p == pin) {
                return err(path, ErrorKind::PinOwnedTwice { pin, other });
            }
        }
        let ports = self.owned("io_ports", |id| self.partition(id).io_ports());
        for (j, (path, range)) in ports.clone().enumerate() {
            if let Some((other, other_range)) =
                ports.clone().take(j).find(|(_, r)| r.overlaps(&range))
            {
                return err(
                    path,
                    ErrorKind::PortOwnedTwice {
                        range,
                        other,
                        other_range,
                    },
                );
            }
        }
        let pci = self.owned("pci_devices", |id| self.partition(id).pci_devices());
        for (j, (path, bdf)) in pci.clone().enumerate() {
            if let Some((other, _)) = pci.clone().take(j).find(|&(_, b)| b == bdf) {
                return err(path, ErrorKind::PciOwnedTwice { bdf, other });
            }
        }
        Ok(())
    }

    /// Shared regions: named, uniquely, and sane.
    fn check_shared(&self) -> Result<(), ConfigError> {
        let shared = self.shared_regions();
        for (j, s) in shared.iter().enumerate() {
            let path = FieldPath::at("shared").index(j);
            check_name(&s.name, path.key("name"))?;
            if let Some(i) = shared.iter().take(j).position(|o| o.name == s.name) {
                let other = FieldPath::at("shared").index(i).key("name");
                return err(
                    path.key("name"),
                    ErrorKind::DuplicateName {
                        name: s.name,
                        other,
                    },
                );
            }
            check_region(&s.region, path)?;
        }
        Ok(())
    }

    /// Channels: named uniquely, sound geometry, in a known region, fitting in it; at most one
    /// `hypervisor-to-linux` channel (the hypervisor's log), polled, alone in its region (which
    /// the RT partition does not map, so it cannot write the hypervisor's log).
    fn check_channels(&self) -> Result<(), ConfigError> {
        let channels = self.channels();
        let mut used = [0u64; MAX_SHARED_REGIONS];
        for (j, ch) in channels.iter().enumerate() {
            let path = FieldPath::at("channels").index(j);
            check_name(ch.name(), path.key("name"))?;
            if let Some(i) = channels.iter().take(j).position(|o| o.name() == ch.name()) {
                let other = FieldPath::at("channels").index(i).key("name");
                return err(
                    path.key("name"),
                    ErrorKind::DuplicateName {
                        name: *ch.name(),
                        other,
                    },
                );
            }
            if ch.direction() == ChannelDirection::HypervisorToLinux {
                if let Some(i) = channels
                    .iter()
                    .take(j)
                    .position(|o| o.direction() == ChannelDirection::HypervisorToLinux)
                {
                    let other = FieldPath::at("channels").index(i).key("direction");
                    return err(
                        path.key("direction"),
                        ErrorKind::SecondHypervisorChannel { other },
                    );
                }
                if ch.notify() != Notify::Poll {
                    return err(path.key("notify"), ErrorKind::HypervisorChannelNotify);
                }
            }
            let hv = ChannelDirection::HypervisorToLinux;
            if let Some(i) = channels.iter().take(j).position(|o| {
                o.region_name() == ch.region_name() && (o.direction() == hv || ch.direction() == hv)
            }) {
                let other = FieldPath::at("channels").index(i).key("region");
                return err(
                    path.key("region"),
                    ErrorKind::HypervisorRegionShared { other },
                );
            }
            let slot_size = ch.slot_size();
            if !slot_size.is_power_of_two() || !(MIN_SLOT_SIZE..=MAX_SLOT_SIZE).contains(&slot_size)
            {
                return err(path.key("slot_size"), ErrorKind::BadSlotSize { slot_size });
            }
            let size = ch.size();
            if size == 0 {
                return err(path.key("size"), ErrorKind::ZeroSize);
            }
            if !size.is_multiple_of(PAGE_SIZE) {
                return err(path.key("size"), ErrorKind::Unaligned { value: size });
            }
            let slots_room = u64::from(slot_size).saturating_mul(CHANNEL_MIN_SLOTS);
            if size < CHANNEL_HEADER_SIZE.saturating_add(slots_room) {
                return err(
                    path.key("size"),
                    ErrorKind::ChannelTooSmall { size, slot_size },
                );
            }
            let Some((index, shared)) = self
                .shared_regions()
                .iter()
                .enumerate()
                .find(|(_, s)| s.name == *ch.region_name())
            else {
                return err(
                    path.key("region"),
                    ErrorKind::UnknownRegion {
                        name: *ch.region_name(),
                    },
                );
            };
            if let Some(slot) = used.get_mut(index) {
                *slot = slot.saturating_add(round_up_page(size));
                if *slot > shared.region.size {
                    return err(
                        path.key("size"),
                        ErrorKind::ChannelsExceedRegion {
                            region: shared.name,
                            needed: *slot,
                            available: shared.region.size,
                        },
                    );
                }
            }
        }
        Ok(())
    }
}
