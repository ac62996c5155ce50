//! Validation errors that need no allocation: a [`FieldPath`] naming the offending field the way
//! the TOML file spells it (`partitions.rt.cpus[1]`), and an [`ErrorKind`] saying what is wrong,
//! often naming a second field (`... is already owned by partitions.linux.cpus[0]`). The host
//! loader maps the path back to a line of the file; the hypervisor prints it as is.

use core::fmt;

use crate::model::{ConsoleTarget, Name, PciBdf, PortRange, Region};
use crate::{CMDLINE_LEN, NAME_LEN};

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// A table key: `partitions`, `cpus`.
    Key(&'static str),
    /// An array element: `[1]`.
    Index(usize),
    /// The name of the element just before, shown for readability (`shared[0] (shm0)`); it is not
    /// part of the TOML path.
    Name(Name),
}

impl Default for Segment {
    fn default() -> Self {
        Self::Key("")
    }
}

/// Deepest path the config schema has (`partitions.linux.memory[1].size` is 5).
const MAX_DEPTH: usize = 6;

/// Where in the config something is, as a TOML path: `partitions.rt.memory[0].base`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldPath {
    segments: [Segment; MAX_DEPTH],
    len: usize,
}

impl FieldPath {
    /// The empty path (the whole file).
    pub fn root() -> Self {
        Self::default()
    }

    /// A path of one key.
    pub fn at(key: &'static str) -> Self {
        Self::root().key(key)
    }

    /// The path of a partition's table: `partitions.<key>`.
    pub fn partition(id: crate::PartitionId) -> Self {
        Self::at("partitions").key(id.key())
    }

    /// This path followed by `.key`.
    #[must_use]
    pub fn key(self, key: &'static str) -> Self {
        self.with(Segment::Key(key))
    }

    /// This path followed by `[index]`.
    #[must_use]
    pub fn index(self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    /// This path with the element's name shown after it: `shared[0] (shm0)`.
    #[must_use]
    pub fn name(self, name: Name) -> Self {
        self.with(Segment::Name(name))
    }

    /// Appends a segment; the schema is never deeper than the fixed capacity, and a path that
    /// somehow were would lose its tail rather than panic.
    #[must_use]
    pub fn with(mut self, segment: Segment) -> Self {
        if let Some(slot) = self.segments.get_mut(self.len) {
            *slot = segment;
            self.len = self.len.saturating_add(1);
        }
        self
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        self.segments.get(..self.len).unwrap_or(&[])
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for segment in self.segments() {
            match segment {
                Segment::Key(key) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Name(name) => write!(f, " ({name})")?,
            }
            first = false;
        }
        if first {
            f.write_str("(config)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({self})")
    }
}

/// A config that is wrong: which field, and what about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending field.
    pub path: FieldPath,
    /// What is wrong with it.
    pub kind: ErrorKind,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: FieldPath, kind: ErrorKind) -> Self {
        Self { path, kind }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

/// Everything [`Config::validate`](crate::Config::validate) and the builders can reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A name that must be given is empty.
    EmptyName,
    /// A name longer than [`NAME_LEN`] bytes.
    NameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A name with a character outside `[A-Za-z0-9_.-]`.
    NameBadChar {
        /// The character.
        ch: char,
        /// Its byte offset in the name.
        offset: usize,
    },
    /// A Linux command line longer than `CMDLINE_LEN - 1` bytes.
    CmdlineTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A Linux command line with a byte that is not printable ASCII.
    CmdlineNotAscii {
        /// Byte offset of the first such character.
        offset: usize,
    },
    /// More entries than the list's capacity; the path names the first one that does not fit.
    TooMany {
        /// The capacity.
        capacity: usize,
    },
    /// The RT partition has more CPUs than the RT kernel runs.
    TooManyRtCpus {
        /// CPUs given.
        count: usize,
        /// The RT kernel's limit.
        max: usize,
    },
    /// A Linux function with `intx`: Linux routes its own interrupts.
    LinuxPciIntx {
        /// The function.
        bdf: PciBdf,
    },
    /// An RT function's `intx` names a pin that is not the RT partition's.
    PciIntxNotRtPin {
        /// The function.
        bdf: PciBdf,
        /// The pin named.
        pin: u32,
    },
    /// More PCI functions in the RT partition than its kernel's boot information lists.
    TooManyRtPciFunctions {
        /// Functions given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A size or address the host loader could not read (`"64 MB"`, `"lots"`).
    InvalidSize,
    /// A PCI address the host loader could not read (expected `"BB:DD.F"`).
    InvalidBdf,
    /// A region of size zero.
    ZeroSize,
    /// A region base or size (or channel size) that is not a multiple of 4 KiB.
    Unaligned {
        /// The value.
        value: u64,
    },
    /// A region whose end overflows or lies beyond [`ABSURD_END`](crate::ABSURD_END).
    AbsurdSize {
        /// The region's base.
        base: u64,
        /// The region's size.
        size: u64,
    },
    /// The hypervisor region is smaller than [`HYPERVISOR_MIN_SIZE`](crate::HYPERVISOR_MIN_SIZE).
    HypervisorTooSmall {
        /// Its size.
        size: u64,
    },
    /// `rt.doorbells_per_s` is 0 or above the most a config may allow.
    DoorbellBudget {
        /// The value given.
        per_s: u32,
    },
    /// The hypervisor region ends above 4 GiB.
    HypervisorAbove4G {
        /// The region.
        region: Region,
    },
    /// The RT partition's RAM and the shared regions do not fit its guest-physical space.
    RtLayout(bulkhead_abi::rt_boot::layout::LayoutError),
    /// Two memory regions (hypervisor, partition or shared) overlap.
    Overlap {
        /// This region.
        region: Region,
        /// The field holding the region it overlaps.
        other: FieldPath,
        /// That region.
        other_region: Region,
    },
    /// A CPU listed twice (in one partition or in both).
    CpuOwnedTwice {
        /// Its APIC ID.
        apic_id: u32,
        /// Where it was listed first.
        other: FieldPath,
    },
    /// A partition with no CPU.
    NoCpu,
    /// A partition with no memory region.
    NoMemory,
    /// An IOAPIC pin listed twice.
    PinOwnedTwice {
        /// The pin (GSI).
        pin: u32,
        /// Where it was listed first.
        other: FieldPath,
    },
    /// An IOAPIC pin above [`MAX_IOAPIC_PIN`](crate::MAX_IOAPIC_PIN).
    PinOutOfRange {
        /// The pin (GSI).
        pin: u32,
    },
    /// Device registers (`mmio`) given to Linux: only the RT partition owns device memory.
    LinuxMmio,
    /// RT device registers outside [`MMIO_WINDOW`](crate::MMIO_WINDOW).
    MmioOutsideWindow {
        /// The range.
        region: Region,
    },
    /// RT device registers on the local APIC's page.
    MmioIsLocalApic {
        /// The range.
        region: Region,
    },
    /// A Linux pin with a CPU, trigger mode or polarity: Linux programs its own pins.
    LinuxPinRouted {
        /// The pin.
        pin: u32,
    },
    /// An RT pin delivered to a CPU that is not the RT partition's.
    PinCpuOutside {
        /// The pin.
        pin: u32,
        /// The CPU named.
        apic_id: u32,
    },
    /// An I/O port range with count 0.
    PortCountZero,
    /// An I/O port range running past port 0xffff.
    PortPastEnd {
        /// The range.
        range: PortRange,
    },
    /// Two I/O port ranges overlap.
    PortOwnedTwice {
        /// This range.
        range: PortRange,
        /// The field holding the range it overlaps.
        other: FieldPath,
        /// That range.
        other_range: PortRange,
    },
    /// A PCI device listed twice.
    PciOwnedTwice {
        /// The device.
        bdf: PciBdf,
        /// Where it was listed first.
        other: FieldPath,
    },
    /// Two shared regions, or two channels, with the same name.
    DuplicateName {
        /// The name.
        name: Name,
        /// Where it was used first.
        other: FieldPath,
    },
    /// A channel naming a shared region that does not exist.
    UnknownRegion {
        /// The name it gave.
        name: Name,
    },
    /// A `hypervisor-to-linux` channel whose notification is not `poll`: the hypervisor rings
    /// no doorbell into Linux, which polls its log.
    HypervisorChannelNotify,
    /// A second `hypervisor-to-linux` channel: the hypervisor writes its log into one.
    SecondHypervisorChannel {
        /// The first one's direction field.
        other: FieldPath,
    },
    /// The `hypervisor-to-linux` channel and another channel in one shared region: the
    /// hypervisor's log needs a region of its own, which the RT partition does not map.
    HypervisorRegionShared {
        /// The other channel's region field.
        other: FieldPath,
    },
    /// The channels placed in one shared region do not fit in it.
    ChannelsExceedRegion {
        /// The region's name.
        region: Name,
        /// Bytes the channels up to and including this one need.
        needed: u64,
        /// The region's size.
        available: u64,
    },
    /// A slot size that is not a power of two in `MIN_SLOT_SIZE..=MAX_SLOT_SIZE`.
    BadSlotSize {
        /// The slot size.
        slot_size: u32,
    },
    /// A channel too small for its header and two slots.
    ChannelTooSmall {
        /// Its size.
        size: u64,
        /// Its slot size.
        slot_size: u32,
    },
    /// Linux's console UART is also the hypervisor's or the RT partition's console. Linux drives
    /// its UART with interrupts; a second writer on the port makes it miss the transmitter-empty
    /// interrupt, and Linux's console stalls.
    ConsoleShared {
        /// The UART.
        port: ConsoleTarget,
        /// Whether the hypervisor prints on it too.
        hypervisor: bool,
        /// Whether the RT partition prints on it too.
        rt: bool,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyName => f.write_str("name is empty"),
            Self::NameTooLong { len } => {
                write!(
                    f,
                    "name is {len} bytes long; at most {NAME_LEN} are allowed"
                )
            }
            Self::NameBadChar { ch, offset } => write!(
                f,
                "name has {ch:?} at byte {offset}; allowed are letters, digits, '_', '.' and '-'"
            ),
            Self::CmdlineTooLong { len } => write!(
                f,
                "command line is {len} bytes long; at most {} are allowed",
                CMDLINE_LEN.saturating_sub(1)
            ),
            Self::CmdlineNotAscii { offset } => write!(
                f,
                "command line has a character that is not printable ASCII at byte {offset}"
            ),
            Self::TooMany { capacity } => {
                write!(f, "too many entries: at most {capacity} are allowed")
            }
            Self::TooManyRtCpus { count, max } => write!(
                f,
                "{count} CPUs, but the RT kernel runs on at most {max}: give the others to Linux"
            ),
            Self::LinuxPciIntx { bdf } => write!(
                f,
                "{bdf}: intx is for the RT partition's functions (Linux routes its own interrupts)"
            ),
            Self::PciIntxNotRtPin { bdf, pin } => write!(
                f,
                "{bdf}: its INTx is to arrive on IOAPIC pin {pin}, which is not among partitions.rt.ioapic_pins{}",
                if *pin == 0 { " (and pin 0 carries no PCI interrupt)" } else { "" }
            ),
            Self::TooManyRtPciFunctions { count, max } => write!(
                f,
                "{count} PCI functions, but the RT partition owns at most {max}"
            ),
            Self::InvalidSize => f.write_str(
                "not a size or address: expected an integer or a string like \"64 MiB\", \
                 \"4 KiB\", \"2 GiB\" or \"0x1000\"",
            ),
            Self::InvalidBdf => f.write_str(
                "not a PCI address: expected \"BB:DD.F\" in hex (device below 0x20, function \
                 below 8), like \"00:1f.3\"",
            ),
            Self::ZeroSize => f.write_str("size is zero"),
            Self::Unaligned { value } => write!(f, "{value:#x} is not a multiple of 4 KiB"),
            Self::AbsurdSize { base, size } => write!(
                f,
                "region at {base:#x} of size {size:#x} ends beyond {:#x} (64 TiB)",
                crate::ABSURD_END
            ),
            Self::HypervisorTooSmall { size } => write!(
                f,
                "hypervisor region is {size:#x} bytes; it needs at least {:#x} (4 MiB)",
                crate::HYPERVISOR_MIN_SIZE
            ),
            Self::DoorbellBudget { per_s } => write!(
                f,
                "{per_s} doorbells a second: allow 1 to {} (one every 10 us)",
                crate::RtConfig::MAX_DOORBELLS_PER_S
            ),
            Self::HypervisorAbove4G { region } => write!(
                f,
                "{region} ends above 4 GiB; the hypervisor maps only the first 4 GiB for itself"
            ),
            Self::RtLayout(e) => write!(f, "{e}"),
            Self::Overlap {
                region,
                other,
                other_region,
            } => {
                write!(f, "{region} overlaps {other} ({other_region})")
            }
            Self::CpuOwnedTwice { apic_id, other } => {
                write!(f, "APIC ID {apic_id} is already owned by {other}")
            }
            Self::NoCpu => f.write_str("partition has no CPU"),
            Self::NoMemory => f.write_str("partition has no memory region"),
            Self::PinOwnedTwice { pin, other } => {
                write!(f, "IOAPIC pin {pin} is already owned by {other}")
            }
            Self::LinuxMmio => f.write_str(
                "device registers (mmio) are for the RT partition; Linux reaches its devices' memory through its PCI devices",
            ),
            Self::MmioOutsideWindow { region } => write!(
                f,
                "{region} is outside 0xc0000000..0x100000000, the top GiB below 4 GiB where device registers lie (the RT kernel maps it uncached)"
            ),
            Self::MmioIsLocalApic { region } => write!(
                f,
                "{region} covers the local APIC's registers (0xfee00000..0xfef00000), which stay each CPU's own"
            ),
            Self::LinuxPinRouted { pin } => write!(
                f,
                "IOAPIC pin {pin}: Linux programs its own pins; give the pin number only (cpu, trigger and polarity are for the RT partition's pins)"
            ),
            Self::PinCpuOutside { pin, apic_id } => write!(
                f,
                "IOAPIC pin {pin} is to go to APIC ID {apic_id}, which is not a CPU of the RT partition"
            ),
            Self::PinOutOfRange { pin } => write!(
                f,
                "IOAPIC pin {pin} is out of range (at most {})",
                crate::MAX_IOAPIC_PIN
            ),
            Self::PortCountZero => f.write_str("I/O port range has count 0"),
            Self::PortPastEnd { range } => write!(f, "I/O ports {range} run past port 0xffff"),
            Self::PortOwnedTwice {
                range,
                other,
                other_range,
            } => {
                write!(f, "I/O ports {range} overlap {other} ({other_range})")
            }
            Self::PciOwnedTwice { bdf, other } => {
                write!(f, "PCI device {bdf} is already owned by {other}")
            }
            Self::DuplicateName { name, other } => {
                write!(f, "name \"{name}\" is already used by {other}")
            }
            Self::UnknownRegion { name } => write!(f, "no shared region is named \"{name}\""),
            Self::HypervisorChannelNotify => f.write_str(
                "a hypervisor-to-linux channel must have notify = \"poll\": the hypervisor rings \
                 no doorbell into Linux, which polls its log",
            ),
            Self::SecondHypervisorChannel { other } => write!(
                f,
                "only one hypervisor-to-linux channel is allowed (the hypervisor writes its log \
                 into one), and {other} is one already"
            ),
            Self::HypervisorRegionShared { other } => write!(
                f,
                "the hypervisor-to-linux channel needs a shared region of its own (the RT \
                 partition does not map it, so it cannot write the hypervisor's log), and {other} \
                 puts a channel in the same region"
            ),
            Self::ChannelsExceedRegion {
                region,
                needed,
                available,
            } => write!(
                f,
                "channels in shared region \"{region}\" need {needed:#x} bytes (each rounded up \
                 to 4 KiB) but the region holds {available:#x}"
            ),
            Self::BadSlotSize { slot_size } => write!(
                f,
                "slot size {slot_size} is not a power of two between {} and {}",
                crate::MIN_SLOT_SIZE,
                crate::MAX_SLOT_SIZE
            ),
            Self::ChannelTooSmall { size, slot_size } => write!(
                f,
                "a channel of {size:#x} bytes cannot hold its {:#x}-byte header and {} slots of \
                 {slot_size} bytes",
                crate::CHANNEL_HEADER_SIZE,
                crate::CHANNEL_MIN_SLOTS
            ),
            Self::ConsoleShared {
                port,
                hypervisor,
                rt,
            } => {
                let port = match port {
                    ConsoleTarget::Com1 => "COM1",
                    ConsoleTarget::Com2 => "COM2",
                    ConsoleTarget::None => "no UART",
                };
                let with = match (hypervisor, rt) {
                    (true, true) => "the hypervisor and the RT partition",
                    (true, false) => "the hypervisor",
                    _ => "the RT partition",
                };
                write!(
                    f,
                    "Linux drives its console UART with interrupts and cannot share {port} with \
                     {with}"
                )
            }
        }
    }
}
