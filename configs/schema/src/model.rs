//! The config model: plain fixed-capacity data, shared by the host tool and the hypervisor.
//!
//! Everything here is `no_std` and allocation-free. Types whose values have rules ([`Name`],
//! [`Cmdline`], [`PciBdf`]) can only be built through checking constructors; lists can only grow
//! through [`ConfigBuilder`], which reports a full list as an error. A [`Config`] comes only out of
//! [`ConfigBuilder::build`], which lays out the channels and runs [`Config::validate`], so a
//! `Config` in hand is always a valid one.

use core::fmt;
use core::str::FromStr;

use crate::error::{ConfigError, ErrorKind, FieldPath};
use crate::fixed::FixedVec;
use crate::validate::round_up_page;
use crate::{
    CMDLINE_LEN, MAX_CHANNELS, MAX_CPUS, MAX_MMIO_REGIONS, MAX_PCI_DEVICES, MAX_PINS,
    MAX_PORT_RANGES, MAX_REGIONS, MAX_SHARED_REGIONS, NAME_LEN,
};

/// The two partitions: the ABI's vocabulary, under the name the config has always used.
pub use bulkhead_abi::Partition as PartitionId;
/// Which way a channel's messages flow: the ABI's vocabulary.
pub use bulkhead_abi::channel::Direction as ChannelDirection;
/// How a channel's consumer learns about new messages: the ABI's vocabulary.
pub use bulkhead_abi::channel::Notify;

/// A range of physical memory, `base..base + size`.
///
/// The methods never overflow: the end saturates at `u64::MAX`. Validation guarantees that in a
/// [`Config`] every region ends below [`ABSURD_END`](crate::ABSURD_END).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// The region `base..base + size`.
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last byte (saturating).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `addr` lies inside the region.
    pub const fn contains(&self, addr: u64) -> bool {
        self.base <= addr && addr < self.end()
    }

    /// Whether all of `other` lies inside the region (an empty `other` lies anywhere).
    pub const fn contains_region(&self, other: &Region) -> bool {
        other.size == 0 || (self.base <= other.base && other.end() <= self.end())
    }

    /// Whether the two regions share at least one byte.
    pub const fn overlaps(&self, other: &Region) -> bool {
        self.size != 0 && other.size != 0 && self.base < other.end() && other.base < self.end()
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.base, self.end())
    }
}

/// A range of I/O ports, `base..base + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PortRange {
    /// First port.
    pub base: u16,
    /// Number of ports.
    pub count: u16,
}

impl PortRange {
    /// The ports `base..base + count`.
    pub const fn new(base: u16, count: u16) -> Self {
        Self { base, count }
    }

    /// One past the last port (up to 0x1_0000 for a valid range).
    pub const fn end(&self) -> u32 {
        (self.base as u32).saturating_add(self.count as u32)
    }

    /// Whether `port` is in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.base <= port && (port as u32) < self.end()
    }

    /// Whether the two ranges share a port.
    pub const fn overlaps(&self, other: &PortRange) -> bool {
        self.count != 0
            && other.count != 0
            && (self.base as u32) < other.end()
            && (other.base as u32) < self.end()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.base, self.end())
    }
}

/// A PCI function address on segment 0: bus, device (below 32), function (below 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct PciBdf {
    bus: u8,
    device: u8,
    function: u8,
}

impl PciBdf {
    /// The address, or `None` when the device is 32 or more or the function 8 or more.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        if device < 32 && function < 8 {
            Some(Self {
                bus,
                device,
                function,
            })
        } else {
            None
        }
    }

    /// Bus number.
    pub const fn bus(&self) -> u8 {
        self.bus
    }

    /// Device number (below 32).
    pub const fn device(&self) -> u8 {
        self.device
    }

    /// Function number (below 8).
    pub const fn function(&self) -> u8 {
        self.function
    }
}

impl FromStr for PciBdf {
    type Err = ErrorKind;

    /// Reads `"BB:DD.F"` in hex (`"00:1f.3"`); a leading segment `"0000:"` is accepted.
    fn from_str(s: &str) -> Result<Self, ErrorKind> {
        let s = s.strip_prefix("0000:").unwrap_or(s);
        let (bus, rest) = s.split_once(':').ok_or(ErrorKind::InvalidBdf)?;
        let (device, function) = rest.split_once('.').ok_or(ErrorKind::InvalidBdf)?;
        let hex = |text: &str, max_len: usize| {
            if text.is_empty() || text.len() > max_len {
                return Err(ErrorKind::InvalidBdf);
            }
            u8::from_str_radix(text, 16).map_err(|_| ErrorKind::InvalidBdf)
        };
        let (bus, device, function) = (hex(bus, 2)?, hex(device, 2)?, hex(function, 1)?);
        Self::new(bus, device, function).ok_or(ErrorKind::InvalidBdf)
    }
}

impl fmt::Display for PciBdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus, self.device, self.function
        )
    }
}

/// A short name: at most [`NAME_LEN`] bytes of `[A-Za-z0-9_.-]`. It may be empty (an absent
/// initrd); validation rejects empty names where one is required.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Name {
    bytes: [u8; NAME_LEN],
    len: u8,
}

/// Whether a byte may appear in a [`Name`].
pub(crate) const fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-'
}

impl Name {
    /// The empty name.
    pub const EMPTY: Name = Name {
        bytes: [0; NAME_LEN],
        len: 0,
    };

    /// Checks and stores `s`.
    pub fn new(s: &str) -> Result<Self, ErrorKind> {
        if s.len() > NAME_LEN {
            return Err(ErrorKind::NameTooLong { len: s.len() });
        }
        if let Some((offset, ch)) = s
            .char_indices()
            .find(|&(_, c)| !c.is_ascii() || !is_name_byte(c as u8))
        {
            return Err(ErrorKind::NameBadChar { ch, offset });
        }
        let mut name = Self::EMPTY;
        for (slot, byte) in name.bytes.iter_mut().zip(s.bytes()) {
            *slot = byte;
        }
        name.len = s.len() as u8;
        Ok(name)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Only `new` fills the bytes, with ASCII, so this never falls back.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The name's bytes (no padding).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Whether the name is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The Linux kernel command line: printable ASCII, at most `CMDLINE_LEN - 1` bytes (room for the
/// NUL that Linux's boot protocol expects).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cmdline {
    bytes: [u8; CMDLINE_LEN],
    len: usize,
}

impl Cmdline {
    /// The empty command line.
    pub const EMPTY: Cmdline = Cmdline {
        bytes: [0; CMDLINE_LEN],
        len: 0,
    };

    /// Longest command line, in bytes.
    pub const MAX_LEN: usize = CMDLINE_LEN - 1;

    /// Checks and stores `s`.
    pub fn new(s: &str) -> Result<Self, ErrorKind> {
        if let Some(offset) = s.bytes().position(|b| !(b' '..=b'~').contains(&b)) {
            return Err(ErrorKind::CmdlineNotAscii { offset });
        }
        if s.len() > Self::MAX_LEN {
            return Err(ErrorKind::CmdlineTooLong { len: s.len() });
        }
        let mut line = Self::EMPTY;
        for (slot, byte) in line.bytes.iter_mut().zip(s.bytes()) {
            *slot = byte;
        }
        line.len = s.len();
        Ok(line)
    }

    /// The command line as text.
    pub fn as_str(&self) -> &str {
        // Only `new` fills the bytes, with ASCII, so this never falls back.
        core::str::from_utf8(self.bytes.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl Default for Cmdline {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Debug for Cmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// How one of the RT partition's IOAPIC pins is delivered, as far as the config says
/// (`ioapic_pins = [{ pin = 4, cpu = 3, trigger = "edge", polarity = "high" }]`); what it
/// leaves out takes the defaults: the partition's first CPU, and the trigger mode and
/// polarity of the bus (ISA pins below 16 edge and active high unless the MADT overrides
/// them, PCI pins level and active low). Linux programs its own pins: its routes are all
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PinRoute {
    /// The CPU (APIC ID) the pin's interrupts go to.
    pub cpu: Option<u32>,
    /// Level-triggered (`Some(false)`: edge-triggered).
    pub level: Option<bool>,
    /// Active low (`Some(false)`: active high).
    pub active_low: Option<bool>,
}

impl PinRoute {
    /// Whether the config said nothing but the pin.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// What one partition owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionConfig {
    cpus: FixedVec<u32, MAX_CPUS>,
    memory: FixedVec<Region, MAX_REGIONS>,
    ioapic_pins: FixedVec<u32, MAX_PINS>,
    /// `pin_routes[i]` is how `ioapic_pins[i]` is delivered.
    pin_routes: FixedVec<PinRoute, MAX_PINS>,
    io_ports: FixedVec<PortRange, MAX_PORT_RANGES>,
    pci_devices: FixedVec<PciBdf, MAX_PCI_DEVICES>,
    /// `pci_intx[i]` is the IOAPIC pin the config says `pci_devices[i]`'s INTx arrives on
    /// (the RT partition's only), `None` to take the function's own routing.
    pci_intx: FixedVec<Option<u32>, MAX_PCI_DEVICES>,
    mmio: FixedVec<Region, MAX_MMIO_REGIONS>,
}

impl PartitionConfig {
    /// The partition's CPUs, by APIC ID.
    pub fn cpus(&self) -> &[u32] {
        self.cpus.as_slice()
    }

    /// The partition's RAM (guest-physical = host-physical).
    pub fn memory(&self) -> &[Region] {
        self.memory.as_slice()
    }

    /// The IOAPIC pins (GSIs) routed to the partition.
    pub fn ioapic_pins(&self) -> &[u32] {
        self.ioapic_pins.as_slice()
    }

    /// How each of [`PartitionConfig::ioapic_pins`] is delivered, in the same order.
    pub fn pin_routes(&self) -> &[PinRoute] {
        self.pin_routes.as_slice()
    }

    /// The I/O ports the partition may access directly.
    pub fn io_ports(&self) -> &[PortRange] {
        self.io_ports.as_slice()
    }

    /// Device register ranges the partition owns (the RT partition's only): mapped uncached at
    /// the same guest-physical addresses.
    pub fn mmio(&self) -> &[Region] {
        self.mmio.as_slice()
    }

    /// The PCI functions the partition owns.
    pub fn pci_devices(&self) -> &[PciBdf] {
        self.pci_devices.as_slice()
    }

    /// For each of [`PartitionConfig::pci_devices`], in the same order, the IOAPIC pin the
    /// config says its INTx arrives on (`intx`), or `None`: the function's interrupt line
    /// register, as the firmware routed it, says.
    pub fn pci_intx(&self) -> &[Option<u32>] {
        self.pci_intx.as_slice()
    }

    /// Total RAM in bytes (saturating).
    pub fn memory_bytes(&self) -> u64 {
        self.memory()
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.size))
    }
}

/// A named region of RAM mapped into both partitions, holding channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SharedRegion {
    /// Its name, which channels refer to.
    pub name: Name,
    /// Where it is.
    pub region: Region,
}

impl SharedRegion {
    /// A shared region.
    pub const fn new(name: Name, region: Region) -> Self {
        Self { name, region }
    }
}

/// A channel: a ring of fixed-size slots behind a header, placed in a shared region.
///
/// Channels are packed into their region in config order, each at a 4 KiB-aligned offset; the
/// placement ([`region_index`](Self::region_index), [`offset`](Self::offset)) is computed by
/// [`ConfigBuilder::build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelConfig {
    name: Name,
    region_name: Name,
    region_index: usize,
    offset: u64,
    size: u64,
    slot_size: u32,
    direction: ChannelDirection,
    notify: Notify,
}

impl ChannelConfig {
    /// A channel of `size` bytes (header included) in the shared region named `region`.
    pub const fn new(
        name: Name,
        region: Name,
        size: u64,
        slot_size: u32,
        direction: ChannelDirection,
        notify: Notify,
    ) -> Self {
        Self {
            name,
            region_name: region,
            region_index: 0,
            offset: 0,
            size,
            slot_size,
            direction,
            notify,
        }
    }

    /// The channel's name.
    pub const fn name(&self) -> &Name {
        &self.name
    }

    /// The name of the shared region holding it.
    pub const fn region_name(&self) -> &Name {
        &self.region_name
    }

    /// Index of that region in [`Config::shared_regions`].
    pub const fn region_index(&self) -> usize {
        self.region_index
    }

    /// Offset of the channel from the start of its region (a multiple of 4 KiB).
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// Size in bytes, header included (a multiple of 4 KiB).
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Size of one slot in bytes (a power of two).
    pub const fn slot_size(&self) -> u32 {
        self.slot_size
    }

    /// Number of slots after the header.
    pub const fn slot_count(&self) -> u64 {
        match self.size.checked_sub(crate::CHANNEL_HEADER_SIZE) {
            Some(room) => match room.checked_div(self.slot_size as u64) {
                Some(slots) => slots,
                None => 0,
            },
            None => 0,
        }
    }

    /// Which way messages flow.
    pub const fn direction(&self) -> ChannelDirection {
        self.direction
    }

    /// How the consumer is notified.
    pub const fn notify(&self) -> Notify {
        self.notify
    }
}

/// A serial port for a console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "std",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum ConsoleTarget {
    /// COM1, I/O port 0x3f8.
    Com1,
    /// COM2, I/O port 0x2f8.
    Com2,
    /// No console output.
    None,
}

impl ConsoleTarget {
    /// The UART's I/O base, if any.
    pub const fn io_base(self) -> Option<u16> {
        match self {
            Self::Com1 => Some(0x3f8),
            Self::Com2 => Some(0x2f8),
            Self::None => None,
        }
    }
}

impl fmt::Display for ConsoleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Com1 => "com1",
            Self::Com2 => "com2",
            Self::None => "none",
        })
    }
}

/// Where each party's console output goes.
///
/// Linux's UART may not be the hypervisor's or the RT partition's (validation rejects that):
/// Linux drives it with interrupts, and a second writer stalls its console. The hypervisor and
/// the RT partition print by polling and may share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsoleRouting {
    /// The hypervisor's own messages.
    pub hypervisor: ConsoleTarget,
    /// The RT partition's console.
    pub rt: ConsoleTarget,
    /// The Linux partition's console.
    pub linux: ConsoleTarget,
}

impl Default for ConsoleRouting {
    /// The routing of a config without `[console]`: the hypervisor and the RT partition on COM1,
    /// Linux on COM2.
    fn default() -> Self {
        Self {
            hypervisor: ConsoleTarget::Com1,
            rt: ConsoleTarget::Com1,
            linux: ConsoleTarget::Com2,
        }
    }
}

/// What the hypervisor does when Linux stops (power-off, reboot, triple fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(
    feature = "std",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum OnExit {
    /// Leave the Linux partition stopped; the RT partition keeps running.
    #[default]
    Stop,
    /// Reload Linux from the retained module copies and start it again.
    Restart,
}

impl fmt::Display for OnExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stop => "stop",
            Self::Restart => "restart",
        })
    }
}

/// How to boot the Linux partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinuxConfig {
    kernel: Name,
    initrd: Name,
    cmdline: Cmdline,
    on_exit: OnExit,
}

impl LinuxConfig {
    /// Boot the module named `kernel` with the module named `initrd` (empty for none).
    pub const fn new(kernel: Name, initrd: Name, cmdline: Cmdline, on_exit: OnExit) -> Self {
        Self {
            kernel,
            initrd,
            cmdline,
            on_exit,
        }
    }

    /// The boot module holding the kernel.
    pub const fn kernel(&self) -> &Name {
        &self.kernel
    }

    /// The boot module holding the initrd, if there is one.
    pub const fn initrd(&self) -> Option<&Name> {
        if self.initrd.is_empty() {
            None
        } else {
            Some(&self.initrd)
        }
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> &str {
        self.cmdline.as_str()
    }

    /// What to do when Linux stops.
    pub const fn on_exit(&self) -> OnExit {
        self.on_exit
    }
}

/// How to boot the RT partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtConfig {
    image: Name,
    doorbells_per_s: u32,
}

impl RtConfig {
    /// Doorbell interrupts from Linux the RT partition takes per second unless the config says
    /// otherwise (`rt.doorbells_per_s`).
    pub const DEFAULT_DOORBELLS_PER_S: u32 = 2000;
    /// The most a config may allow: one every 10 us.
    pub const MAX_DOORBELLS_PER_S: u32 = 100_000;

    /// Boot the module named `image`, taking at most [`Self::DEFAULT_DOORBELLS_PER_S`]
    /// doorbells a second.
    pub const fn new(image: Name) -> Self {
        Self {
            image,
            doorbells_per_s: Self::DEFAULT_DOORBELLS_PER_S,
        }
    }

    /// The same with a budget of `per_s` doorbell interrupts a second (checked by
    /// validation: 1 to [`Self::MAX_DOORBELLS_PER_S`]).
    #[must_use]
    pub const fn with_doorbells_per_s(mut self, per_s: u32) -> Self {
        self.doorbells_per_s = per_s;
        self
    }

    /// The boot module holding the RT kernel image.
    pub const fn image(&self) -> &Name {
        &self.image
    }

    /// Doorbell interrupts from Linux the RT partition takes per second, all channels
    /// together; the hypervisor drops (and counts) the rest.
    pub const fn doorbells_per_s(&self) -> u32 {
        self.doorbells_per_s
    }
}

/// A whole machine config. Only [`ConfigBuilder::build`] and [`blob::decode`](crate::blob::decode)
/// make one, and both validate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) name: Name,
    pub(crate) hypervisor: Region,
    pub(crate) console: ConsoleRouting,
    pub(crate) partitions: [PartitionConfig; 2],
    pub(crate) shared: FixedVec<SharedRegion, MAX_SHARED_REGIONS>,
    pub(crate) channels: FixedVec<ChannelConfig, MAX_CHANNELS>,
    pub(crate) linux: LinuxConfig,
    pub(crate) rt: RtConfig,
}

impl Config {
    /// The machine's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The RAM the hypervisor keeps for itself (its image, module copies, VMCS, EPT, stacks).
    pub fn hypervisor_region(&self) -> Region {
        self.hypervisor
    }

    /// What one partition owns.
    pub fn partition(&self, id: PartitionId) -> &PartitionConfig {
        match id {
            PartitionId::Linux => &self.partitions[0],
            PartitionId::Rt => &self.partitions[1],
        }
    }

    /// The shared regions.
    pub fn shared_regions(&self) -> &[SharedRegion] {
        self.shared.as_slice()
    }

    /// The channels, in config order.
    pub fn channels(&self) -> &[ChannelConfig] {
        self.channels.as_slice()
    }

    /// Where `channel` lies in physical memory (`None` only for a channel of another config).
    pub fn channel_memory(&self, channel: &ChannelConfig) -> Option<Region> {
        let shared = self.shared_regions().get(channel.region_index)?;
        let base = shared.region.base.checked_add(channel.offset)?;
        let memory = Region::new(base, channel.size);
        shared.region.contains_region(&memory).then_some(memory)
    }

    /// Whether the RT partition maps shared region `index`: every region but the one holding
    /// the hypervisor's log channel (`hypervisor-to-linux`), which only the hypervisor writes.
    pub fn rt_maps_shared(&self, index: usize) -> bool {
        !self.channels().iter().any(|c| {
            c.region_index == index && c.direction() == ChannelDirection::HypervisorToLinux
        })
    }

    /// How to boot Linux.
    pub fn linux(&self) -> &LinuxConfig {
        &self.linux
    }

    /// How to boot the RT partition.
    pub fn rt(&self) -> &RtConfig {
        &self.rt
    }

    /// Console routing.
    pub fn console(&self) -> &ConsoleRouting {
        &self.console
    }

    /// The partition owning the CPU with this APIC ID.
    pub fn partition_of_cpu(&self, apic_id: u32) -> Option<PartitionId> {
        PartitionId::ALL
            .into_iter()
            .find(|&p| self.partition(p).cpus().contains(&apic_id))
    }

    /// The partition owning this IOAPIC pin (GSI).
    pub fn partition_of_pin(&self, pin: u32) -> Option<PartitionId> {
        PartitionId::ALL
            .into_iter()
            .find(|&p| self.partition(p).ioapic_pins().contains(&pin))
    }

    /// The partition owning this I/O port.
    pub fn partition_of_port(&self, port: u16) -> Option<PartitionId> {
        PartitionId::ALL.into_iter().find(|&p| {
            self.partition(p)
                .io_ports()
                .iter()
                .any(|r| r.contains(port))
        })
    }

    /// The partition owning this PCI function.
    pub fn partition_of_pci_device(&self, bdf: PciBdf) -> Option<PartitionId> {
        PartitionId::ALL
            .into_iter()
            .find(|&p| self.partition(p).pci_devices().contains(&bdf))
    }

    /// The partition whose memory contains `addr` (shared regions belong to neither).
    pub fn partition_of_address(&self, addr: u64) -> Option<PartitionId> {
        PartitionId::ALL
            .into_iter()
            .find(|&p| self.partition(p).memory().iter().any(|r| r.contains(addr)))
    }

    /// The shared region named `name`, with its index.
    pub fn shared_region(&self, name: &str) -> Option<(usize, &SharedRegion)> {
        self.shared_regions()
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }
}

/// Builds a [`Config`], enforcing every list's capacity with an error (naming the first entry that
/// does not fit) rather than a panic. [`build`](Self::build) places the channels and validates.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

fn full(path: FieldPath, index: usize, capacity: usize) -> ConfigError {
    ConfigError::new(path.index(index), ErrorKind::TooMany { capacity })
}

impl ConfigBuilder {
    /// A config for the machine `name` whose hypervisor keeps `hypervisor_region`; everything
    /// else starts empty (the default [`ConsoleRouting`], Linux stopped on exit).
    pub fn new(name: Name, hypervisor_region: Region) -> Self {
        Self {
            config: Config {
                name,
                hypervisor: hypervisor_region,
                console: ConsoleRouting::default(),
                partitions: [PartitionConfig::default(); 2],
                shared: FixedVec::new(),
                channels: FixedVec::new(),
                linux: LinuxConfig::default(),
                rt: RtConfig::default(),
            },
        }
    }

    fn partition_mut(&mut self, id: PartitionId) -> &mut PartitionConfig {
        match id {
            PartitionId::Linux => &mut self.config.partitions[0],
            PartitionId::Rt => &mut self.config.partitions[1],
        }
    }

    /// Sets the console routing.
    pub fn console(&mut self, console: ConsoleRouting) -> &mut Self {
        self.config.console = console;
        self
    }

    /// Sets how Linux boots.
    pub fn linux(&mut self, linux: LinuxConfig) -> &mut Self {
        self.config.linux = linux;
        self
    }

    /// Sets how the RT partition boots.
    pub fn rt(&mut self, rt: RtConfig) -> &mut Self {
        self.config.rt = rt;
        self
    }

    /// Gives a CPU (APIC ID) to a partition.
    pub fn push_cpu(&mut self, id: PartitionId, apic_id: u32) -> Result<(), ConfigError> {
        let list = &mut self.partition_mut(id).cpus;
        let len = list.len();
        list.push(apic_id)
            .map_err(|_| full(FieldPath::partition(id).key("cpus"), len, MAX_CPUS))
    }

    /// Gives a memory region to a partition.
    pub fn push_memory(&mut self, id: PartitionId, region: Region) -> Result<(), ConfigError> {
        let list = &mut self.partition_mut(id).memory;
        let len = list.len();
        list.push(region)
            .map_err(|_| full(FieldPath::partition(id).key("memory"), len, MAX_REGIONS))
    }

    /// Gives an IOAPIC pin (GSI) to a partition, delivered the default way.
    pub fn push_ioapic_pin(&mut self, id: PartitionId, pin: u32) -> Result<(), ConfigError> {
        self.push_routed_ioapic_pin(id, pin, PinRoute::default())
    }

    /// Gives an IOAPIC pin (GSI) to a partition, delivered as `route` says.
    pub fn push_routed_ioapic_pin(
        &mut self,
        id: PartitionId,
        pin: u32,
        route: PinRoute,
    ) -> Result<(), ConfigError> {
        let part = self.partition_mut(id);
        let len = part.ioapic_pins.len();
        let too_many = || full(FieldPath::partition(id).key("ioapic_pins"), len, MAX_PINS);
        part.ioapic_pins.push(pin).map_err(|_| too_many())?;
        part.pin_routes.push(route).map_err(|_| too_many())
    }

    /// Gives a range of device registers (MMIO) to a partition.
    pub fn push_mmio(&mut self, id: PartitionId, region: Region) -> Result<(), ConfigError> {
        let list = &mut self.partition_mut(id).mmio;
        let len = list.len();
        list.push(region)
            .map_err(|_| full(FieldPath::partition(id).key("mmio"), len, MAX_MMIO_REGIONS))
    }

    /// Gives a range of I/O ports to a partition.
    pub fn push_io_ports(&mut self, id: PartitionId, range: PortRange) -> Result<(), ConfigError> {
        let list = &mut self.partition_mut(id).io_ports;
        let len = list.len();
        list.push(range).map_err(|_| {
            full(
                FieldPath::partition(id).key("io_ports"),
                len,
                MAX_PORT_RANGES,
            )
        })
    }

    /// Gives a PCI function to a partition.
    pub fn push_pci_device(&mut self, id: PartitionId, bdf: PciBdf) -> Result<(), ConfigError> {
        self.push_pci_device_with_intx(id, bdf, None)
    }

    /// Gives a PCI function to a partition, saying which IOAPIC pin its INTx arrives on
    /// (`None`: as its interrupt line register says).
    pub fn push_pci_device_with_intx(
        &mut self,
        id: PartitionId,
        bdf: PciBdf,
        intx: Option<u32>,
    ) -> Result<(), ConfigError> {
        let part = self.partition_mut(id);
        let len = part.pci_devices.len();
        let too_many = || {
            full(
                FieldPath::partition(id).key("pci_devices"),
                len,
                MAX_PCI_DEVICES,
            )
        };
        part.pci_devices.push(bdf).map_err(|_| too_many())?;
        part.pci_intx.push(intx).map_err(|_| too_many())
    }

    /// Adds a shared region.
    pub fn push_shared(&mut self, shared: SharedRegion) -> Result<(), ConfigError> {
        let len = self.config.shared.len();
        self.config
            .shared
            .push(shared)
            .map_err(|_| full(FieldPath::at("shared"), len, MAX_SHARED_REGIONS))
    }

    /// Adds a channel (its placement is computed by [`build`](Self::build)).
    pub fn push_channel(&mut self, channel: ChannelConfig) -> Result<(), ConfigError> {
        let len = self.config.channels.len();
        self.config
            .channels
            .push(channel)
            .map_err(|_| full(FieldPath::at("channels"), len, MAX_CHANNELS))
    }

    /// Places the channels (packed in config order within their region, each 4 KiB-aligned) and
    /// validates the result.
    pub fn build(mut self) -> Result<Config, ConfigError> {
        let mut next_offset = [0u64; MAX_SHARED_REGIONS];
        let shared = self.config.shared;
        for channel in self.config.channels.as_mut_slice() {
            let found = shared
                .as_slice()
                .iter()
                .position(|s| s.name == channel.region_name);
            if let Some((index, next)) = found.and_then(|i| Some((i, next_offset.get_mut(i)?))) {
                channel.region_index = index;
                channel.offset = *next;
                *next = next.saturating_add(round_up_page(channel.size));
            }
        }
        self.config.validate()?;
        Ok(self.config)
    }
}
