//! The capacities and geometry every layer must agree on: the config tool checks a file against
//! them, the config binary and the RT boot information are sized by them, the RT kernel's
//! per-CPU tables and the channel ring are built for them. The assertions at the bottom are the
//! agreements between them, checked at compile time.

/// Most CPUs (APIC IDs) one machine description can hold, in either partition.
pub const MAX_CPUS: usize = 64;
/// Most CPUs the RT partition can have: the RT kernel's per-CPU tables, the RT boot
/// information's CPU list and the status report's CPU records are all this long. A config that
/// gives the RT partition more is refused by the config tool.
pub const MAX_RT_CPUS: usize = 8;
/// Most memory regions one partition can own (and the RT boot information can list).
pub const MAX_MEMORY_REGIONS: usize = 16;
/// Most device interrupt lines (IOAPIC pins) the RT partition can own and have delivered to
/// its CPUs: the RT boot information's line table and the device vectors are this long.
pub const MAX_RT_LINES: usize = 16;
/// Most PCI functions the RT partition can own (the RT boot information's function table).
pub const MAX_RT_PCI_FUNCTIONS: usize = 8;
/// Most channels in a config (and in the RT boot information).
pub const MAX_CHANNELS: usize = 32;
/// Longest name of a channel, a shared region, a module or a machine, in bytes.
pub const NAME_LEN: usize = 32;

/// Page size: partition memory, shared regions and channels are aligned to it.
pub const PAGE_SIZE: u64 = 4096;
/// Bytes of a channel's header (its first page): the ring's control words and geometry.
pub const CHANNEL_HEADER_SIZE: u64 = 4096;
/// Alignment of a channel's base and size.
pub const CHANNEL_ALIGN: u64 = PAGE_SIZE;
/// Fewest slots a channel's ring may have.
pub const CHANNEL_MIN_SLOTS: u32 = 2;
/// Smallest slot, in bytes (a power of two).
pub const CHANNEL_MIN_SLOT_SIZE: u32 = 16;
/// Largest slot, in bytes (a power of two).
pub const CHANNEL_MAX_SLOT_SIZE: u32 = 65536;
/// Smallest channel: the header and [`CHANNEL_MIN_SLOTS`] slots of [`CHANNEL_MIN_SLOT_SIZE`]
/// bytes.
pub const CHANNEL_MIN_SIZE: u64 =
    CHANNEL_HEADER_SIZE + CHANNEL_MIN_SLOTS as u64 * CHANNEL_MIN_SLOT_SIZE as u64;

const _: () = {
    assert!(MAX_RT_CPUS <= MAX_CPUS);
    // The RT kernel's scheduler keeps a CPU set in one u64.
    assert!(MAX_RT_CPUS <= 64);
    assert!(crate::status::MAX_REPORT_CPUS == MAX_RT_CPUS);
    assert!(crate::rt_boot::MAX_CPUS == MAX_RT_CPUS);
    assert!(crate::rt_boot::MAX_MEMORY_REGIONS == MAX_MEMORY_REGIONS);
    assert!(crate::rt_boot::MAX_CHANNELS == MAX_CHANNELS);
    assert!(crate::rt_boot::MAX_LINES == MAX_RT_LINES);
    assert!(crate::rt_boot::MAX_PCI_FUNCTIONS == MAX_RT_PCI_FUNCTIONS);
    assert!(crate::vectors::DEVICE_LINES == MAX_RT_LINES);
    assert!(crate::rt_boot::CHANNEL_NAME_LEN == NAME_LEN);
    assert!(CHANNEL_HEADER_SIZE.is_multiple_of(CHANNEL_ALIGN));
    assert!(CHANNEL_MIN_SLOT_SIZE.is_power_of_two() && CHANNEL_MAX_SLOT_SIZE.is_power_of_two());
    assert!(CHANNEL_MIN_SLOT_SIZE <= CHANNEL_MAX_SLOT_SIZE);
};
