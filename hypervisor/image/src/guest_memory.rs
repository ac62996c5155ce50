//! Partition memory as the hypervisor writes it: the one place that turns guest-physical
//! addresses into host pointers.
//!
//! [`GuestRam`] owns one partition's RAM while a loader fills it. The RAM it covers comes
//! from the config that passed the fit check ([`config_checked`]): usable RAM, clear of the
//! hypervisor, its modules and the other partition; the hypervisor maps it identically
//! (host-physical = host-virtual) below 4 GiB, and every access is checked against both.
//! A claim is exclusive: while a `GuestRam` of a partition lives, no other exists and no CPU
//! of that partition enters its guest ([`enter_guest`] waits; a claim fails while one is
//! in). The byte ranges it lends out as `&mut` are recorded, so none is lent twice or
//! written behind a borrower's back. Those are the facts every loader's write rests on,
//! checked here once instead of argued at each write.
//!
//! Also here: the live, read-only view of Linux's RAM that instruction decoding uses
//! ([`LinuxRamView`]), and the channels' shared memory, each channel handed out once
//! ([`channel_region`]).
// Dereferences host-physical addresses of partition RAM and shared memory: the checks above
// are what make those accesses sound.
#![allow(unsafe_code)]

use core::cell::RefCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use bulkhead_config::{Config, MAX_CHANNELS, MAX_REGIONS, PartitionId, Region};
use bulkhead_ring::{LayoutError, SharedRegion};
use hv_core::boot::rt::{
    CONSOLE_TURN_GPA, DOORBELL_REQUESTS_GPA, DOORBELL_REQUESTS_LEN, Mapping, RtLayout,
};
use hv_core::memory::addr::GuestPhysAddr;
use hv_core::memory::guest_paging::GuestMemory;
use hv_core::support::fixed::FixedList;
use spin::Once;
use zerocopy::{FromBytes, IntoBytes, KnownLayout};

/// The hypervisor maps only the first 4 GiB.
const MAPPED_END: u64 = 1 << 32;
/// Most ranges one claim lends out at a time.
const MAX_LOANS: usize = 16;

/// The config after the fit check: what partition RAM and shared memory are.
static CHECKED: Once<&'static Config> = Once::new();
/// Whether a `GuestRam` of each partition exists.
static CLAIMED: [AtomicBool; 2] = [const { AtomicBool::new(false) }; 2];
/// CPUs of each partition in (or about to enter) their guest.
static IN_GUEST: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];
/// Channels whose memory has been handed out.
static CHANNELS_TAKEN: [AtomicBool; MAX_CHANNELS] =
    [const { AtomicBool::new(false) }; MAX_CHANNELS];

/// Records `cfg` as the config that passed the fit check against this machine (once).
pub fn config_checked(cfg: &'static Config) {
    CHECKED.call_once(|| cfg);
}

/// A CPU of `id` is about to enter its guest: waits while the partition's RAM is claimed.
pub fn enter_guest(id: PartitionId) {
    let (in_guest, claimed) = (&IN_GUEST[id as usize], &CLAIMED[id as usize]);
    loop {
        in_guest.fetch_add(1, Ordering::SeqCst);
        if !claimed.load(Ordering::SeqCst) {
            return;
        }
        in_guest.fetch_sub(1, Ordering::SeqCst);
        while claimed.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
    }
}

/// A CPU of `id` has left its guest.
pub fn left_guest(id: PartitionId) {
    IN_GUEST[id as usize].fetch_sub(1, Ordering::SeqCst);
}

/// Why partition memory could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMemError {
    /// Nothing has passed the fit check yet.
    NotChecked,
    /// Another claim of the partition's RAM lives.
    Claimed(PartitionId),
    /// A CPU of the partition is in its guest.
    GuestRunning(PartitionId),
    /// The partition's layout could not be planned.
    NoLayout,
    /// The range is not inside one RAM region of the partition.
    OutsideRam { gpa: u64, len: u64 },
    /// The range lies (in host memory) above what the hypervisor maps.
    Unmapped { gpa: u64, len: u64 },
    /// The range overlaps one already lent out.
    Lent { gpa: u64, len: u64 },
    /// Too many ranges lent out at once.
    TooManyLoans,
    /// Not a guest-physical address (beyond the architectural width).
    BadAddress(u64),
    /// The range does not suit the table's size or alignment.
    Table { gpa: u64 },
}

impl fmt::Display for GuestMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotChecked => f.write_str("partition memory used before the config fit check"),
            Self::Claimed(id) => write!(f, "partition {id}: its RAM is already being written"),
            Self::GuestRunning(id) => write!(f, "partition {id}: a CPU is still in its guest"),
            Self::NoLayout => f.write_str("the partition's memory layout could not be planned"),
            Self::OutsideRam { gpa, len } => {
                write!(f, "{gpa:#x}+{len:#x} is not inside the partition's RAM")
            }
            Self::Unmapped { gpa, len } => write!(
                f,
                "{gpa:#x}+{len:#x} lies above 4 GiB, which the hypervisor does not map"
            ),
            Self::Lent { gpa, len } => write!(f, "{gpa:#x}+{len:#x} is already in use"),
            Self::TooManyLoans => f.write_str("too many pieces of partition RAM in use at once"),
            Self::BadAddress(a) => write!(f, "{a:#x} is not a guest-physical address"),
            Self::Table { gpa } => write!(f, "no table fits at {gpa:#x}"),
        }
    }
}

/// One partition's RAM, owned while a loader fills it (see the module comment).
#[derive(Debug)]
pub struct GuestRam {
    id: PartitionId,
    ram: FixedList<Mapping, MAX_REGIONS>,
    /// Ranges lent out as `&mut [u8]` (guest-physical base and length).
    lent: RefCell<FixedList<(u64, u64), MAX_LOANS>>,
}

impl GuestRam {
    /// Claims partition `id`'s RAM; fails while another claim lives or a CPU of the
    /// partition is in its guest.
    pub fn claim(id: PartitionId) -> Result<Self, GuestMemError> {
        let cfg = *CHECKED.get().ok_or(GuestMemError::NotChecked)?;
        let mut ram = FixedList::new();
        match id {
            PartitionId::Linux => {
                for r in cfg.partition(id).memory() {
                    let identity = Mapping::identity(*r).ok_or(GuestMemError::NoLayout)?;
                    ram.push(identity).map_err(|_| GuestMemError::NoLayout)?;
                }
            }
            PartitionId::Rt => {
                let layout = RtLayout::plan(cfg).map_err(|_| GuestMemError::NoLayout)?;
                for &m in layout.ram() {
                    ram.push(m).map_err(|_| GuestMemError::NoLayout)?;
                }
            }
        }
        let claimed = &CLAIMED[id as usize];
        if claimed.swap(true, Ordering::SeqCst) {
            return Err(GuestMemError::Claimed(id));
        }
        if IN_GUEST[id as usize].load(Ordering::SeqCst) != 0 {
            claimed.store(false, Ordering::SeqCst);
            return Err(GuestMemError::GuestRunning(id));
        }
        Ok(Self {
            id,
            ram,
            lent: RefCell::new(FixedList::new()),
        })
    }

    /// The host address of `[gpa, gpa + len)`, which must lie in one RAM region, mapped.
    fn host(&self, gpa: GuestPhysAddr, len: u64) -> Result<*mut u8, GuestMemError> {
        let g = gpa.as_u64();
        let outside = GuestMemError::OutsideRam { gpa: g, len };
        let host = self
            .ram
            .as_slice()
            .iter()
            .find_map(|m| m.host(gpa, len))
            .ok_or(outside)?
            .as_u64();
        if host.saturating_add(len) > MAPPED_END {
            return Err(GuestMemError::Unmapped { gpa: g, len });
        }
        Ok(host as *mut u8)
    }

    /// Fails if `[gpa, gpa + len)` overlaps a range lent out.
    fn not_lent(&self, gpa: GuestPhysAddr, len: u64) -> Result<(), GuestMemError> {
        let want = Region::new(gpa.as_u64(), len);
        let lent = self.lent.borrow();
        if lent
            .as_slice()
            .iter()
            .any(|&(base, size)| Region::new(base, size).overlaps(&want))
        {
            return Err(GuestMemError::Lent {
                gpa: gpa.as_u64(),
                len,
            });
        }
        Ok(())
    }

    /// Writes `bytes` at `gpa`, then zeroes up to `len` bytes from `gpa` (`len` at least
    /// `bytes.len()`): a loaded segment and its zero-filled tail.
    pub fn load(&self, gpa: GuestPhysAddr, bytes: &[u8], len: u64) -> Result<(), GuestMemError> {
        let len = len.max(bytes.len() as u64);
        let dst = self.host(gpa, len)?;
        self.not_lent(gpa, len)?;
        // SAFETY: `host` checked that the range lies in this partition's RAM below 4 GiB
        // (identity-mapped, fit-checked, owned by this claim while no guest of the partition
        // runs), and `not_lent` that no borrow of it is live; `bytes` is hypervisor memory
        // (a module copy or a value), so the ranges do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
            core::ptr::write_bytes(dst.add(bytes.len()), 0, (len as usize) - bytes.len());
        }
        Ok(())
    }

    /// Writes `bytes` at `gpa`.
    pub fn write(&self, gpa: GuestPhysAddr, bytes: &[u8]) -> Result<(), GuestMemError> {
        self.load(gpa, bytes, bytes.len() as u64)
    }

    /// Zeroes `len` bytes at `gpa`.
    pub fn zero(&self, gpa: GuestPhysAddr, len: u64) -> Result<(), GuestMemError> {
        self.load(gpa, &[], len)
    }

    /// Lends out `len` bytes at `gpa`, zeroed, for the caller to fill in place; the range
    /// stays lent (no other loan or write may touch it) until this claim ends.
    #[allow(
        clippy::mut_from_ref,
        reason = "each range is lent once, recorded in `lent`"
    )]
    pub fn take_zeroed(&self, gpa: GuestPhysAddr, len: u64) -> Result<&mut [u8], GuestMemError> {
        let dst = self.host(gpa, len)?;
        self.not_lent(gpa, len)?;
        self.lent
            .borrow_mut()
            .push((gpa.as_u64(), len))
            .map_err(|_| GuestMemError::TooManyLoans)?;
        // SAFETY: as in `load`; the range is now recorded as lent, so no other loan or write
        // of this claim touches it while the slice lives (it lives no longer than the claim).
        unsafe {
            core::ptr::write_bytes(dst, 0, len as usize);
            Ok(core::slice::from_raw_parts_mut(dst, len as usize))
        }
    }

    /// Lends out a zeroed `T` (a table: any bytes valid) at `gpa`, as [`take_zeroed`](Self::take_zeroed).
    #[allow(
        clippy::mut_from_ref,
        reason = "each range is lent once, recorded in `lent`"
    )]
    pub fn take_table<T: FromBytes + IntoBytes + KnownLayout>(
        &self,
        gpa: GuestPhysAddr,
    ) -> Result<&mut T, GuestMemError> {
        let bytes = self.take_zeroed(gpa, size_of::<T>() as u64)?;
        T::mut_from_bytes(bytes).map_err(|_| GuestMemError::Table { gpa: gpa.as_u64() })
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        CLAIMED[self.id as usize].store(false, Ordering::SeqCst);
    }
}

/// `addr` as a guest-physical address, for the loaders' computed addresses.
pub fn gpa(addr: u64) -> Result<GuestPhysAddr, GuestMemError> {
    GuestPhysAddr::new(addr).ok_or(GuestMemError::BadAddress(addr))
}

/// Linux's RAM as instruction decoding reads it while Linux runs: copies of its bytes
/// (Linux may change them meanwhile, which only affects what is decoded).
#[derive(Debug, Clone, Copy)]
pub struct LinuxRamView(pub &'static [Region]);

impl GuestMemory for LinuxRamView {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Some(u64::from_le_bytes(b))
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
        let want = Region::new(gpa, buf.len() as u64);
        if !self.0.iter().any(|r| r.contains_region(&want)) || gpa + buf.len() as u64 > MAPPED_END {
            return None;
        }
        // SAFETY: the range is Linux RAM (identity-mapped, GPA = HPA) below 4 GiB, which the
        // hypervisor maps; reading it has no side effects.
        unsafe { core::ptr::copy_nonoverlapping(gpa as *const u8, buf.as_mut_ptr(), buf.len()) };
        Some(())
    }
}

/// Why a channel's memory could not be handed out.
#[derive(Debug, Clone, Copy)]
pub enum ChannelMemError {
    /// Before the fit check, an index beyond the config's channels, or a channel handed
    /// out before.
    Unavailable,
    /// The channel does not lie inside its shared region.
    OutsideRegion,
    /// The ring crate refuses the region's size or alignment.
    Layout(LayoutError),
}

/// The shared memory of the config's channel `index`, for the hypervisor's whole life;
/// each channel's once.
pub fn channel_region(index: usize) -> Result<(Region, SharedRegion<'static>), ChannelMemError> {
    let cfg = *CHECKED.get().ok_or(ChannelMemError::Unavailable)?;
    let channel = cfg
        .channels()
        .get(index)
        .ok_or(ChannelMemError::Unavailable)?;
    let memory = cfg
        .channel_memory(channel)
        .ok_or(ChannelMemError::OutsideRegion)?;
    if memory.base.saturating_add(memory.size) > MAPPED_END {
        return Err(ChannelMemError::OutsideRegion);
    }
    let taken = CHANNELS_TAKEN
        .get(index)
        .ok_or(ChannelMemError::Unavailable)?;
    if taken.swap(true, Ordering::AcqRel) {
        return Err(ChannelMemError::Unavailable);
    }
    // SAFETY: the channel lies inside one of the fit-checked config's shared regions (usable
    // RAM clear of the hypervisor, its modules and both partitions' private RAM), below
    // 4 GiB where memory is identity-mapped; channels of one region do not overlap (config
    // validation) and each is handed out once (`CHANNELS_TAKEN`), for good. The partitions
    // reach it only through the ring crate's atomics.
    let region = unsafe { SharedRegion::new(memory.base as *mut u8, memory.size as usize) }
        .map_err(ChannelMemError::Layout)?;
    Ok((memory, region))
}

/// The RT partition's doorbell request words (`bulkhead_abi::rt_boot::DOORBELL_REQUESTS_GPA`),
/// for the hypervisor's whole life; handed out once. `None` without a placeable RT partition.
pub fn rt_doorbell_requests() -> Option<&'static [AtomicU32; MAX_CHANNELS]> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let cfg = *CHECKED.get()?;
    let layout = RtLayout::plan(cfg).ok()?;
    let host = layout
        .ram_host(
            GuestPhysAddr::new(DOORBELL_REQUESTS_GPA)?,
            DOORBELL_REQUESTS_LEN,
        )?
        .as_u64();
    if host.saturating_add(DOORBELL_REQUESTS_LEN) > MAPPED_END || TAKEN.swap(true, Ordering::AcqRel)
    {
        return None;
    }
    // SAFETY: the words lie in the RT partition's first MiB of RAM (the fit-checked config's,
    // identity-mapped below 4 GiB), in the loader's page between the boot information and the
    // page tables (`hv_core::boot::rt`, asserted there), 4-byte aligned, zeroed by the loader
    // and used by nobody else in the hypervisor (handed out once). The RT kernel reaches them
    // only through atomics too; any value is a valid `AtomicU32`.
    Some(unsafe { &*(host as *const [AtomicU32; MAX_CHANNELS]) })
}

/// The RT partition's console turn word (`bulkhead_abi::rt_boot::CONSOLE_TURN_GPA`), for the
/// hypervisor's whole life; handed out once. `None` without a placeable RT partition.
pub fn rt_console_turn() -> Option<&'static AtomicU32> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let cfg = *CHECKED.get()?;
    let layout = RtLayout::plan(cfg).ok()?;
    let host = layout
        .ram_host(GuestPhysAddr::new(CONSOLE_TURN_GPA)?, 4)?
        .as_u64();
    if host.saturating_add(4) > MAPPED_END || TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: the word lies in the RT partition's first MiB of RAM (the fit-checked config's,
    // identity-mapped below 4 GiB), in the loader's page between the doorbell requests and the
    // page tables (`hv_core::boot::rt`, asserted there), 4-byte aligned, zeroed by the loader
    // and used by nobody else in the hypervisor (handed out once). The RT kernel reaches it
    // only through atomics too; any value is a valid `AtomicU32`.
    Some(unsafe { &*(host as *const AtomicU32) })
}
