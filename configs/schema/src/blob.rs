//! The compiled config: the binary blob the host tool writes and the hypervisor reads at boot.
//!
//! This module owns the layout. It is a fixed-size, little-endian `#[repr(C)]` structure made
//! only of byte-aligned fields (zerocopy's little-endian integers), so it has no padding, no
//! alignment requirement and one meaning on every machine:
//!
//! ```text
//! Header (24 bytes)  magic "BLKHDCFG", format version (4), total length, CRC-32 of the body, 0
//! Body               machine name, hypervisor region, console routing, Linux and RT boot
//!                    settings, both partitions (counts + fixed arrays), shared regions, channels
//! ```
//!
//! Strings are NUL-padded; unused array entries, padding and reserved bytes are zero, so a
//! config has exactly one encoding. [`decode`] trusts nothing: it checks the length, magic,
//! version, checksum, every count, string, enum and reserved byte, and finally runs
//! [`Config::validate`]. It never panics, whatever the bytes. `encode` needs the `alloc`
//! feature; decoding needs nothing.

use core::fmt;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{ConfigError, ErrorKind, FieldPath};
use crate::model::{
    ChannelConfig, ChannelDirection, Cmdline, Config, ConfigBuilder, ConsoleRouting, ConsoleTarget,
    LinuxConfig, Name, Notify, OnExit, PartitionConfig, PartitionId, PciBdf, PinRoute, PortRange,
    Region, RtConfig, SharedRegion,
};
use crate::{
    CMDLINE_LEN, MAX_CHANNELS, MAX_CPUS, MAX_MMIO_REGIONS, MAX_PCI_DEVICES, MAX_PINS,
    MAX_PORT_RANGES, MAX_REGIONS, MAX_SHARED_REGIONS, NAME_LEN,
};

/// First bytes of every blob.
pub const MAGIC: [u8; 8] = *b"BLKHDCFG";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 4;
/// Size of [`Header`].
pub const HEADER_LEN: usize = size_of::<Header>();
/// Size of a whole version-1 blob.
pub const BLOB_LEN: usize = size_of::<Blob>();

/// The blob's header.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: U32,
    /// Length of the whole blob, header included.
    pub total_len: U32,
    /// CRC-32 (IEEE) of everything after the header.
    pub crc32: U32,
    /// Zero.
    pub reserved: U32,
}

/// A memory region.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct RegionLe {
    /// First byte.
    pub base: U64,
    /// Length.
    pub size: U64,
}

/// An I/O port range.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct PortRangeLe {
    /// First port.
    pub base: U16,
    /// Number of ports.
    pub count: U16,
}

/// How one IOAPIC pin is delivered ([`PinRoute`]).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct PinRouteLe {
    /// The CPU (APIC ID); [`NO_CPU`] for the default.
    pub cpu: U32,
    /// [`ROUTE_TRIGGER_GIVEN`], [`ROUTE_LEVEL`], [`ROUTE_POLARITY_GIVEN`], [`ROUTE_ACTIVE_LOW`].
    pub flags: u8,
    /// Zero.
    pub reserved: [u8; 3],
}

/// [`PinRouteLe::cpu`] when the config names no CPU.
pub const NO_CPU: u32 = u32::MAX;
/// [`PinRouteLe::flags`]: the config gives the trigger mode, [`ROUTE_LEVEL`] or edge.
pub const ROUTE_TRIGGER_GIVEN: u8 = 1 << 0;
/// [`PinRouteLe::flags`]: level-triggered.
pub const ROUTE_LEVEL: u8 = 1 << 1;
/// [`PinRouteLe::flags`]: the config gives the polarity, [`ROUTE_ACTIVE_LOW`] or high.
pub const ROUTE_POLARITY_GIVEN: u8 = 1 << 2;
/// [`PinRouteLe::flags`]: active low.
pub const ROUTE_ACTIVE_LOW: u8 = 1 << 3;

impl PinRouteLe {
    fn put(route: &PinRoute) -> Self {
        let flag = |v: Option<bool>, given: u8, set: u8| match v {
            None => 0,
            Some(false) => given,
            Some(true) => given | set,
        };
        Self {
            cpu: U32::new(route.cpu.unwrap_or(NO_CPU)),
            flags: flag(route.level, ROUTE_TRIGGER_GIVEN, ROUTE_LEVEL)
                | flag(route.active_low, ROUTE_POLARITY_GIVEN, ROUTE_ACTIVE_LOW),
            reserved: [0; 3],
        }
    }

    /// The route, or `None` for unknown flags, a flag without its `GIVEN` bit, or reserved
    /// bytes that are not zero.
    fn get(&self) -> Option<PinRoute> {
        let known = ROUTE_TRIGGER_GIVEN | ROUTE_LEVEL | ROUTE_POLARITY_GIVEN | ROUTE_ACTIVE_LOW;
        let f = self.flags;
        if f & !known != 0
            || self.reserved != [0; 3]
            || (f & ROUTE_LEVEL != 0 && f & ROUTE_TRIGGER_GIVEN == 0)
            || (f & ROUTE_ACTIVE_LOW != 0 && f & ROUTE_POLARITY_GIVEN == 0)
        {
            return None;
        }
        let flag = |given: u8, set: u8| (f & given != 0).then_some(f & set != 0);
        Some(PinRoute {
            cpu: (self.cpu.get() != NO_CPU).then_some(self.cpu.get()),
            level: flag(ROUTE_TRIGGER_GIVEN, ROUTE_LEVEL),
            active_low: flag(ROUTE_POLARITY_GIVEN, ROUTE_ACTIVE_LOW),
        })
    }
}

/// A PCI function address.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct PciLe {
    /// Bus.
    pub bus: u8,
    /// Device (below 32).
    pub device: u8,
    /// Function (below 8).
    pub function: u8,
    /// The IOAPIC pin its INTx arrives on, as the config says (`intx`); 0 when it does not
    /// (pin 0 is the timer's, never a PCI function's).
    pub intx: u8,
}

/// One partition: counts, then fixed arrays of which the first `count` entries are used.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct PartitionLe {
    /// Used entries of `cpus`.
    pub cpu_count: U32,
    /// Used entries of `memory`.
    pub memory_count: U32,
    /// Used entries of `ioapic_pins`.
    pub pin_count: U32,
    /// Used entries of `io_ports`.
    pub port_count: U32,
    /// Used entries of `pci_devices`.
    pub pci_count: U32,
    /// Used entries of `mmio`.
    pub mmio_count: U32,
    /// APIC IDs.
    pub cpus: [U32; MAX_CPUS],
    /// RAM regions.
    pub memory: [RegionLe; MAX_REGIONS],
    /// IOAPIC pins (GSIs).
    pub ioapic_pins: [U32; MAX_PINS],
    /// How each pin is delivered (`pin_count` of them, as `ioapic_pins`).
    pub pin_routes: [PinRouteLe; MAX_PINS],
    /// I/O port ranges.
    pub io_ports: [PortRangeLe; MAX_PORT_RANGES],
    /// PCI functions.
    pub pci_devices: [PciLe; MAX_PCI_DEVICES],
    /// Device register ranges.
    pub mmio: [RegionLe; MAX_MMIO_REGIONS],
}

/// A shared region.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct SharedLe {
    /// Name, NUL-padded.
    pub name: [u8; NAME_LEN],
    /// Where it is.
    pub region: RegionLe,
}

/// A channel.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct ChannelLe {
    /// Name, NUL-padded.
    pub name: [u8; NAME_LEN],
    /// Offset in its shared region.
    pub offset: U64,
    /// Size, header included.
    pub size: U64,
    /// Slot size.
    pub slot_size: U32,
    /// Index of its shared region.
    pub region_index: u8,
    /// 0 linux-to-rt, 1 rt-to-linux, 2 hypervisor-to-linux.
    pub direction: u8,
    /// 0 doorbell, 1 poll.
    pub notify: u8,
    /// Zero.
    pub reserved: u8,
}

/// Everything after the header.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Body {
    /// Machine name, NUL-padded.
    pub name: [u8; NAME_LEN],
    /// The hypervisor's region.
    pub hypervisor: RegionLe,
    /// Console of the hypervisor: 0 com1, 1 com2, 2 none.
    pub console_hypervisor: u8,
    /// Console of the RT partition.
    pub console_rt: u8,
    /// Console of the Linux partition.
    pub console_linux: u8,
    /// 0 stop, 1 restart.
    pub linux_on_exit: u8,
    /// Linux kernel module name, NUL-padded.
    pub linux_kernel: [u8; NAME_LEN],
    /// Linux initrd module name, NUL-padded (all zero: none).
    pub linux_initrd: [u8; NAME_LEN],
    /// Linux command line, NUL-padded (so at most `CMDLINE_LEN - 1` bytes).
    pub linux_cmdline: [u8; CMDLINE_LEN],
    /// RT image module name, NUL-padded.
    pub rt_image: [u8; NAME_LEN],
    /// Doorbell interrupts from Linux the RT partition takes per second.
    pub rt_doorbells_per_s: U32,
    /// Linux, then RT.
    pub partitions: [PartitionLe; 2],
    /// Used entries of `shared`.
    pub shared_count: U32,
    /// Used entries of `channels`.
    pub channel_count: U32,
    /// Shared regions.
    pub shared: [SharedLe; MAX_SHARED_REGIONS],
    /// Channels.
    pub channels: [ChannelLe; MAX_CHANNELS],
}

/// A whole blob.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Blob {
    /// The header.
    pub header: Header,
    /// The body.
    pub body: Body,
}

const _: () = assert!(size_of::<Header>() == 24);
const _: () = assert!(size_of::<RegionLe>() == 16);
const _: () = assert!(size_of::<PortRangeLe>() == 4);
const _: () = assert!(size_of::<PciLe>() == 4);
const _: () = assert!(size_of::<PartitionLe>() == 1688);
const _: () = assert!(size_of::<SharedLe>() == 48);
const _: () = assert!(size_of::<ChannelLe>() == 56);
const _: () = assert!(size_of::<Body>() == 8144);
const _: () = assert!(size_of::<Blob>() == 8168);
const _: () = assert!(BLOB_LEN <= u32::MAX as usize);

/// CRC-32 as in IEEE 802.3, zlib and gzip (reflected polynomial 0xEDB88320, initial value and
/// final XOR 0xFFFFFFFF). Computed bit by bit, table-free: the blob is a few KiB read once at boot,
/// so the 8x slowdown against a 256-entry table costs nothing and saves the table.
pub fn crc32(bytes: &[u8]) -> u32 {
    const POLY: u32 = 0xEDB8_8320;
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (POLY & mask);
        }
    }
    !crc
}

/// What is wrong with a string field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringProblem {
    /// Bytes after the first NUL are not all NUL.
    NotNulPadded,
    /// Not UTF-8.
    NotUtf8,
    /// UTF-8 but not allowed in this field.
    Invalid(ErrorKind),
}

/// Why a blob was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobError {
    /// Shorter than the header.
    TruncatedHeader {
        /// Bytes given.
        len: usize,
    },
    /// Shorter than its length field says.
    Truncated {
        /// Bytes given.
        len: usize,
        /// The length field.
        total: usize,
    },
    /// Longer than its length field says.
    TrailingBytes {
        /// Bytes given.
        len: usize,
        /// The length field.
        total: usize,
    },
    /// Not a config blob.
    BadMagic {
        /// The first eight bytes.
        found: [u8; 8],
    },
    /// A format version this build cannot read.
    UnsupportedVersion {
        /// The version field.
        found: u32,
    },
    /// The length field does not match the size of this version's layout.
    BadLength {
        /// The length field.
        field: u32,
    },
    /// The body does not match its checksum.
    ChecksumMismatch {
        /// Checksum in the header.
        stored: u32,
        /// Checksum of the body.
        computed: u32,
    },
    /// Reserved bytes, or unused entries past a count, are not zero.
    NotZero {
        /// The field.
        path: FieldPath,
        /// What is not zero.
        what: &'static str,
    },
    /// A count larger than its array.
    CountExceedsCapacity {
        /// The list.
        path: FieldPath,
        /// The count field.
        count: u32,
        /// The array's size.
        capacity: usize,
    },
    /// A bad string field.
    BadString {
        /// The field.
        path: FieldPath,
        /// What is wrong.
        problem: StringProblem,
    },
    /// An enum field with an unknown value.
    BadDiscriminant {
        /// The field.
        path: FieldPath,
        /// The value.
        value: u8,
        /// What the field is.
        what: &'static str,
    },
    /// A PCI address with device >= 32 or function >= 8.
    BadBdf {
        /// The field.
        path: FieldPath,
        /// Bus.
        bus: u8,
        /// Device.
        device: u8,
        /// Function.
        function: u8,
    },
    /// A channel whose region index is not a shared region.
    BadRegionIndex {
        /// The field.
        path: FieldPath,
        /// The index.
        index: u8,
        /// Number of shared regions.
        count: usize,
    },
    /// A channel offset that is not where the packing rule puts it.
    ChannelOffset {
        /// The field.
        path: FieldPath,
        /// Offset in the blob.
        stored: u64,
        /// Offset the packing rule gives.
        computed: u64,
    },
    /// Well-formed, but the config it holds is not valid.
    Invalid(ConfigError),
}

impl From<ConfigError> for BlobError {
    fn from(e: ConfigError) -> Self {
        Self::Invalid(e)
    }
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("config blob: ")?;
        match self {
            Self::TruncatedHeader { len } => {
                write!(f, "truncated: {len} bytes, header needs {HEADER_LEN}")
            }
            Self::Truncated { len, total } => {
                write!(f, "truncated: {len} bytes, length field says {total}")
            }
            Self::TrailingBytes { len, total } => {
                write!(f, "{len} bytes, but the length field says {total}")
            }
            Self::BadMagic { found } => write!(
                f,
                "bad magic \"{}\" (expected \"{}\")",
                found.escape_ascii(),
                MAGIC.escape_ascii()
            ),
            Self::UnsupportedVersion { found } => write!(
                f,
                "format version {found}; this build reads version {FORMAT_VERSION} (recompile \
                 the config with the matching tool)"
            ),
            Self::BadLength { field } => write!(
                f,
                "length field says {field} bytes; version {FORMAT_VERSION} blobs are {BLOB_LEN}"
            ),
            Self::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::NotZero { path, what } => write!(f, "{path}: {what} not zero"),
            Self::CountExceedsCapacity {
                path,
                count,
                capacity,
            } => {
                write!(f, "{path} count {count} exceeds capacity {capacity}")
            }
            Self::BadString { path, problem } => match problem {
                StringProblem::NotNulPadded => {
                    write!(f, "{path}: bytes after the terminating NUL are not NUL")
                }
                StringProblem::NotUtf8 => write!(f, "{path}: not UTF-8"),
                StringProblem::Invalid(kind) => write!(f, "{path}: {kind}"),
            },
            Self::BadDiscriminant { path, value, what } => {
                write!(f, "{path}: {value} is not a valid {what}")
            }
            Self::BadBdf {
                path,
                bus,
                device,
                function,
            } => write!(
                f,
                "{path}: bus {bus:#x} device {device:#x} function {function:#x} is not a PCI \
                 address"
            ),
            Self::BadRegionIndex { path, index, count } => write!(
                f,
                "{path}: region index {index}, but there are {count} shared regions"
            ),
            Self::ChannelOffset {
                path,
                stored,
                computed,
            } => write!(
                f,
                "{path}: offset {stored:#x} is not where the packing rule puts the channel \
                 ({computed:#x})"
            ),
            Self::Invalid(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BlobError {}

// Enum encodings.

fn console_code(target: ConsoleTarget) -> u8 {
    match target {
        ConsoleTarget::Com1 => 0,
        ConsoleTarget::Com2 => 1,
        ConsoleTarget::None => 2,
    }
}

fn console_from(path: FieldPath, value: u8) -> Result<ConsoleTarget, BlobError> {
    match value {
        0 => Ok(ConsoleTarget::Com1),
        1 => Ok(ConsoleTarget::Com2),
        2 => Ok(ConsoleTarget::None),
        _ => Err(BlobError::BadDiscriminant {
            path,
            value,
            what: "console target",
        }),
    }
}

fn on_exit_code(on_exit: OnExit) -> u8 {
    match on_exit {
        OnExit::Stop => 0,
        OnExit::Restart => 1,
    }
}

fn on_exit_from(path: FieldPath, value: u8) -> Result<OnExit, BlobError> {
    match value {
        0 => Ok(OnExit::Stop),
        1 => Ok(OnExit::Restart),
        _ => Err(BlobError::BadDiscriminant {
            path,
            value,
            what: "on-exit action",
        }),
    }
}

fn direction_from(path: FieldPath, value: u8) -> Result<ChannelDirection, BlobError> {
    ChannelDirection::from_code(value).ok_or(BlobError::BadDiscriminant {
        path,
        value,
        what: "channel direction",
    })
}

fn notify_from(path: FieldPath, value: u8) -> Result<Notify, BlobError> {
    Notify::from_code(value).ok_or(BlobError::BadDiscriminant {
        path,
        value,
        what: "notification mode",
    })
}

// Encoding.

fn put_str(dst: &mut [u8], s: &str) {
    for (d, b) in dst.iter_mut().zip(s.bytes()) {
        *d = b;
    }
}

fn put_region(region: &Region) -> RegionLe {
    RegionLe {
        base: U64::new(region.base),
        size: U64::new(region.size),
    }
}

fn put_count(len: usize) -> U32 {
    U32::new(u32::try_from(len).unwrap_or(u32::MAX))
}

fn put_partition(dst: &mut PartitionLe, part: &PartitionConfig) {
    dst.cpu_count = put_count(part.cpus().len());
    for (d, &c) in dst.cpus.iter_mut().zip(part.cpus()) {
        *d = U32::new(c);
    }
    dst.memory_count = put_count(part.memory().len());
    for (d, r) in dst.memory.iter_mut().zip(part.memory()) {
        *d = put_region(r);
    }
    dst.pin_count = put_count(part.ioapic_pins().len());
    for (d, &p) in dst.ioapic_pins.iter_mut().zip(part.ioapic_pins()) {
        *d = U32::new(p);
    }
    for (d, r) in dst.pin_routes.iter_mut().zip(part.pin_routes()) {
        *d = PinRouteLe::put(r);
    }
    dst.port_count = put_count(part.io_ports().len());
    for (d, r) in dst.io_ports.iter_mut().zip(part.io_ports()) {
        *d = PortRangeLe {
            base: U16::new(r.base),
            count: U16::new(r.count),
        };
    }
    dst.mmio_count = put_count(part.mmio().len());
    for (d, r) in dst.mmio.iter_mut().zip(part.mmio()) {
        *d = put_region(r);
    }
    dst.pci_count = put_count(part.pci_devices().len());
    for ((d, b), intx) in dst
        .pci_devices
        .iter_mut()
        .zip(part.pci_devices())
        .zip(part.pci_intx())
    {
        *d = PciLe {
            bus: b.bus(),
            device: b.device(),
            function: b.function(),
            // A validated config's `intx` is an RT pin, 1 to 239.
            intx: intx.map_or(0, |pin| u8::try_from(pin).unwrap_or(0)),
        };
    }
}

/// Writes `cfg` into a zeroed `blob`, checksum included.
pub fn encode_into(cfg: &Config, blob: &mut Blob) {
    let body = &mut blob.body;
    put_str(&mut body.name, cfg.name().as_str());
    body.hypervisor = put_region(&cfg.hypervisor_region());
    let console = cfg.console();
    body.console_hypervisor = console_code(console.hypervisor);
    body.console_rt = console_code(console.rt);
    body.console_linux = console_code(console.linux);
    let linux = cfg.linux();
    body.linux_on_exit = on_exit_code(linux.on_exit());
    put_str(&mut body.linux_kernel, linux.kernel().as_str());
    put_str(
        &mut body.linux_initrd,
        linux.initrd().map_or("", Name::as_str),
    );
    put_str(&mut body.linux_cmdline, linux.cmdline());
    put_str(&mut body.rt_image, cfg.rt().image().as_str());
    body.rt_doorbells_per_s = U32::new(cfg.rt().doorbells_per_s());
    for (dst, id) in body.partitions.iter_mut().zip(PartitionId::ALL) {
        put_partition(dst, cfg.partition(id));
    }
    body.shared_count = put_count(cfg.shared_regions().len());
    for (d, s) in body.shared.iter_mut().zip(cfg.shared_regions()) {
        put_str(&mut d.name, s.name.as_str());
        d.region = put_region(&s.region);
    }
    body.channel_count = put_count(cfg.channels().len());
    for (d, c) in body.channels.iter_mut().zip(cfg.channels()) {
        put_str(&mut d.name, c.name().as_str());
        d.offset = U64::new(c.offset());
        d.size = U64::new(c.size());
        d.slot_size = U32::new(c.slot_size());
        d.region_index = u8::try_from(c.region_index()).unwrap_or(u8::MAX);
        d.direction = c.direction().code();
        d.notify = c.notify().code();
    }
    blob.header = Header {
        magic: MAGIC,
        version: U32::new(FORMAT_VERSION),
        total_len: put_count(BLOB_LEN),
        crc32: U32::new(crc32(blob.body.as_bytes())),
        reserved: U32::new(0),
    };
}

/// Compiles `cfg` into a blob of [`BLOB_LEN`] bytes.
#[cfg(feature = "alloc")]
pub fn encode(cfg: &Config) -> alloc::vec::Vec<u8> {
    let mut blob = alloc::boxed::Box::new(<Blob as zerocopy::FromZeros>::new_zeroed());
    encode_into(cfg, &mut blob);
    blob.as_bytes().to_vec()
}

// Decoding.

/// The first `count` entries of `items`, checking the count and that the rest is zero.
fn used<T: IntoBytes + Immutable>(
    path: FieldPath,
    count: U32,
    items: &[T],
) -> Result<&[T], BlobError> {
    let count = count.get();
    let too_many = BlobError::CountExceedsCapacity {
        path,
        count,
        capacity: items.len(),
    };
    let n = usize::try_from(count).map_err(|_| too_many)?;
    let (used, unused) = items.split_at_checked(n).ok_or(too_many)?;
    if unused.as_bytes().iter().any(|&b| b != 0) {
        return Err(BlobError::NotZero {
            path,
            what: "unused entries past the count are",
        });
    }
    Ok(used)
}

/// The text of a NUL-padded string field.
fn get_str(path: FieldPath, bytes: &[u8]) -> Result<&str, BlobError> {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let (text, padding) = bytes.split_at_checked(len).unwrap_or((bytes, &[]));
    if padding.iter().any(|&b| b != 0) {
        return Err(BlobError::BadString {
            path,
            problem: StringProblem::NotNulPadded,
        });
    }
    core::str::from_utf8(text).map_err(|_| BlobError::BadString {
        path,
        problem: StringProblem::NotUtf8,
    })
}

fn get_name(path: FieldPath, bytes: &[u8]) -> Result<Name, BlobError> {
    Name::new(get_str(path, bytes)?).map_err(|kind| BlobError::BadString {
        path,
        problem: StringProblem::Invalid(kind),
    })
}

fn get_region(r: &RegionLe) -> Region {
    Region::new(r.base.get(), r.size.get())
}

fn get_partition(b: &mut ConfigBuilder, id: PartitionId, p: &PartitionLe) -> Result<(), BlobError> {
    let path = FieldPath::partition(id);
    for c in used(path.key("cpus"), p.cpu_count, &p.cpus)? {
        b.push_cpu(id, c.get())?;
    }
    for r in used(path.key("memory"), p.memory_count, &p.memory)? {
        b.push_memory(id, get_region(r))?;
    }
    let pins = used(path.key("ioapic_pins"), p.pin_count, &p.ioapic_pins)?;
    let routes = used(path.key("ioapic_pins"), p.pin_count, &p.pin_routes)?;
    for (i, (pin, route)) in pins.iter().zip(routes).enumerate() {
        let route = route.get().ok_or(BlobError::NotZero {
            path: path.key("ioapic_pins").index(i),
            what: "route's unknown flag bits, flags without their GIVEN bit, or reserved bytes are",
        })?;
        b.push_routed_ioapic_pin(id, pin.get(), route)?;
    }
    for r in used(path.key("io_ports"), p.port_count, &p.io_ports)? {
        b.push_io_ports(id, PortRange::new(r.base.get(), r.count.get()))?;
    }
    for r in used(path.key("mmio"), p.mmio_count, &p.mmio)? {
        b.push_mmio(id, get_region(r))?;
    }
    let pci_path = path.key("pci_devices");
    for (i, d) in used(pci_path, p.pci_count, &p.pci_devices)?
        .iter()
        .enumerate()
    {
        let path = pci_path.index(i);
        let bdf = PciBdf::new(d.bus, d.device, d.function).ok_or(BlobError::BadBdf {
            path,
            bus: d.bus,
            device: d.device,
            function: d.function,
        })?;
        let intx = (d.intx != 0).then_some(u32::from(d.intx));
        b.push_pci_device_with_intx(id, bdf, intx)?;
    }
    Ok(())
}

/// Reads and checks a blob. Never panics; every problem is an error.
pub fn decode(bytes: &[u8]) -> Result<Config, BlobError> {
    let (header, _) = Header::ref_from_prefix(bytes)
        .map_err(|_| BlobError::TruncatedHeader { len: bytes.len() })?;
    if header.magic != MAGIC {
        return Err(BlobError::BadMagic {
            found: header.magic,
        });
    }
    let version = header.version.get();
    if version != FORMAT_VERSION {
        return Err(BlobError::UnsupportedVersion { found: version });
    }
    if header.reserved.get() != 0 {
        return Err(BlobError::NotZero {
            path: FieldPath::at("header"),
            what: "reserved field is",
        });
    }
    let field = header.total_len.get();
    let total = usize::try_from(field).map_err(|_| BlobError::BadLength { field })?;
    if total != BLOB_LEN {
        return Err(BlobError::BadLength { field });
    }
    if bytes.len() < total {
        return Err(BlobError::Truncated {
            len: bytes.len(),
            total,
        });
    }
    if bytes.len() > total {
        return Err(BlobError::TrailingBytes {
            len: bytes.len(),
            total,
        });
    }
    let body_bytes = bytes.get(HEADER_LEN..).unwrap_or(&[]);
    let (stored, computed) = (header.crc32.get(), crc32(body_bytes));
    if stored != computed {
        return Err(BlobError::ChecksumMismatch { stored, computed });
    }
    let body = Body::ref_from_bytes(body_bytes).map_err(|_| BlobError::BadLength { field })?;
    decode_body(body)
}

fn decode_body(body: &Body) -> Result<Config, BlobError> {
    let name = get_name(FieldPath::at("machine").key("name"), &body.name)?;
    let mut b = ConfigBuilder::new(name, get_region(&body.hypervisor));

    let console = FieldPath::at("console");
    b.console(ConsoleRouting {
        hypervisor: console_from(console.key("hypervisor"), body.console_hypervisor)?,
        rt: console_from(console.key("rt"), body.console_rt)?,
        linux: console_from(console.key("linux"), body.console_linux)?,
    });

    let linux = FieldPath::at("linux");
    let cmdline_path = linux.key("cmdline");
    let cmdline_text = get_str(cmdline_path, &body.linux_cmdline)?;
    let cmdline = Cmdline::new(cmdline_text).map_err(|kind| BlobError::BadString {
        path: cmdline_path,
        problem: StringProblem::Invalid(kind),
    })?;
    b.linux(LinuxConfig::new(
        get_name(linux.key("kernel"), &body.linux_kernel)?,
        get_name(linux.key("initrd"), &body.linux_initrd)?,
        cmdline,
        on_exit_from(linux.key("on_exit"), body.linux_on_exit)?,
    ));
    b.rt(
        RtConfig::new(get_name(FieldPath::at("rt").key("image"), &body.rt_image)?)
            .with_doorbells_per_s(body.rt_doorbells_per_s.get()),
    );

    for (id, p) in PartitionId::ALL.into_iter().zip(&body.partitions) {
        get_partition(&mut b, id, p)?;
    }

    let shared_path = FieldPath::at("shared");
    let shared = used(shared_path, body.shared_count, &body.shared)?;
    for (i, s) in shared.iter().enumerate() {
        let name = get_name(shared_path.index(i).key("name"), &s.name)?;
        b.push_shared(SharedRegion::new(name, get_region(&s.region)))?;
    }

    let channels_path = FieldPath::at("channels");
    let channels = used(channels_path, body.channel_count, &body.channels)?;
    for (i, c) in channels.iter().enumerate() {
        let path = channels_path.index(i);
        if c.reserved != 0 {
            return Err(BlobError::NotZero {
                path,
                what: "reserved byte is",
            });
        }
        let region = shared
            .get(usize::from(c.region_index))
            .ok_or(BlobError::BadRegionIndex {
                path: path.key("region"),
                index: c.region_index,
                count: shared.len(),
            })?;
        b.push_channel(ChannelConfig::new(
            get_name(path.key("name"), &c.name)?,
            get_name(path.key("region"), &region.name)?,
            c.size.get(),
            c.slot_size.get(),
            direction_from(path.key("direction"), c.direction)?,
            notify_from(path.key("notify"), c.notify)?,
        ))?;
    }

    let cfg = b.build()?;

    // The placement is recomputed by `build`; the stored one must agree.
    for (i, (c, stored)) in cfg.channels().iter().zip(channels).enumerate() {
        let (stored_offset, stored_index) = (stored.offset.get(), usize::from(stored.region_index));
        if c.offset() != stored_offset || c.region_index() != stored_index {
            return Err(BlobError::ChannelOffset {
                path: channels_path.index(i).key("offset"),
                stored: stored_offset,
                computed: c.offset(),
            });
        }
    }
    Ok(cfg)
}
