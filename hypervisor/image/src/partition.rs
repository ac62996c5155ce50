//! What every CPU of a partition shares: its EPT (the partition's RAM and the shared
//! channel regions: identity-mapped for Linux, from guest-physical 0 for the RT partition,
//! see `hv_core::boot::rt`), its I/O bitmap (the ports the config gives it, and the console
//! port it is routed to), its MSR bitmap, and the guest it starts. Built once by the
//! bootstrap CPU before any CPU enters VMX non-root operation.
//!
//! The RT partition starts its kernel (`rt_loader`), the Linux partition its kernel
//! (`linux_loader`). With `linux=stub` on the hypervisor's command line (a diagnostic mode
//! that exercises the partition plumbing without Linux) the Linux CPUs run a few bytes of
//! 32-bit code instead that announce themselves with VMCALL and halt.
//!
//! Some ports always exit on Linux CPUs, whatever the config grants, because the
//! hypervisor must see them: PCI configuration (0xCF8-0xCFF, filtered per device), the
//! reset ports (0xCF9, the keyboard controller's 0x64) and the ACPI PM1 control blocks
//! (power-off stops Linux instead of the machine).

use core::fmt;

use bulkhead_config::{Config, PartitionId};
use hv_core::boot::rt::Mapping;
use hv_core::memory::addr::HostPhysAddr;
use hv_core::memory::ept::{Ept, EptError, MemType, Perms};
use hv_core::memory::frames::OutOfMemory;
use hv_core::vmx::bitmaps::{self, IO_BITMAP_BYTES, MSR_BITMAP_BYTES, MsrAccess};
use hv_core::vmx::msr_policy::LINUX_WRITABLE;

use crate::guest_memory::{GuestMemError, GuestRam, gpa};
use crate::memory::{self, HvTables};
use crate::platform::FadtFacts;

/// The stub guest: `mov eax, HELLO; mov ebx, 0; vmcall; 1: hlt; jmp 1b`.
const STUB: [u8; 16] = [
    0xb8, 0x01, 0x00, 0x48, 0x42, // mov eax, 0x42480001
    0xbb, 0x00, 0x00, 0x00, 0x00, // mov ebx, 0
    0x0f, 0x01, 0xc1, // vmcall
    0xf4, // hlt
    0xeb, 0xfd, // jmp hlt
];
/// The self-test stub: after its VMCALL it executes INVD, which the hypervisor does not
/// handle, to exercise the "stop this guest only" path.
const STUB_UNHANDLED: [u8; 18] = [
    0xb8, 0x01, 0x00, 0x48, 0x42, // mov eax, 0x42480001
    0xbb, 0x00, 0x00, 0x00, 0x00, // mov ebx, 0
    0x0f, 0x01, 0xc1, // vmcall
    0x0f, 0x08, // invd
    0xf4, // hlt
    0xeb, 0xfd, // jmp hlt
];
const STUB_UNHANDLED_OFFSET: u64 = 0x40;

/// MSRs whose writes always exit: they would let a guest change the APIC mode, VMX
/// enablement, the CPU's time stamp counter (the hypervisor's clock on that CPU: its doorbell
/// rate limits and timers read it), or send IPIs to CPUs outside its partition.
const WRITE_INTERCEPTS: [u32; 5] = [
    crate::arch::msr::IA32_TSC,
    crate::arch::msr::IA32_APIC_BASE,
    crate::arch::msr::IA32_TSC_ADJUST,
    crate::arch::msr::IA32_FEATURE_CONTROL,
    crate::arch::msr::X2APIC_ICR,
];

/// How a partition's CPUs start.
#[derive(Debug, Clone, Copy)]
pub enum GuestStart {
    /// The stub guest: 32-bit protected mode, paging off, at `entry`.
    Stub { entry: u64 },
    /// The RT kernel in 64-bit mode (`hv_core::boot::rt`'s entry state).
    Rt(crate::rt_loader::RtStart),
    /// Linux's 64-bit boot protocol entry, on its boot CPU.
    Linux(crate::linux_loader::LinuxStart),
    /// A Linux secondary CPU started by Linux's start-up IPI: real mode at its vector.
    LinuxSecondary(hv_core::devices::ap_start::RealModeEntry),
}

/// Shared per-partition state.
#[derive(Debug, Clone, Copy)]
pub struct PartitionResources {
    pub id: PartitionId,
    pub eptp: u64,
    pub io_bitmaps: HostPhysAddr,
    pub msr_bitmap: HostPhysAddr,
    pub start: GuestStart,
    pub ept_tables: usize,
}

impl PartitionResources {
    /// Entry point of the self-test stub that ends in an unhandled exit, for a partition
    /// that starts the stub.
    pub fn unhandled_exit_stub(&self) -> Option<GuestStart> {
        match self.start {
            GuestStart::Stub { entry } => Some(GuestStart::Stub {
                entry: entry + STUB_UNHANDLED_OFFSET,
            }),
            GuestStart::Rt(_) | GuestStart::Linux(_) | GuestStart::LinuxSecondary(_) => None,
        }
    }
}

/// The identity mappings of `cfg`'s regions (RAM of partition `id`, or the shared regions);
/// the config's regions end below 64 TiB, so each is a valid mapping.
pub fn identity(
    regions: impl Iterator<Item = bulkhead_config::Region>,
) -> impl Iterator<Item = Mapping> {
    regions.filter_map(Mapping::identity)
}

/// Why a partition could not be built.
#[derive(Debug)]
pub enum BuildError {
    Memory(OutOfMemory),
    Ept {
        field: &'static str,
        index: usize,
        err: EptError,
    },
    NoStubRoom,
    StubMemory(GuestMemError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory(e) => write!(
                f,
                "out of hypervisor memory ({} bytes requested): enlarge hypervisor.memory",
                e.requested
            ),
            Self::Ept { field, index, err } => write!(f, "{field}[{index}]: {err}"),
            Self::StubMemory(e) => write!(f, "start-up guest: {e}"),
            Self::NoStubRoom => {
                f.write_str("no memory region of at least 8 KiB below 4 GiB for the start-up guest")
            }
        }
    }
}

/// What the partitions' build takes from the machine besides the config.
#[derive(Debug, Clone, Copy)]
pub struct BuildEnv {
    /// Whether the EPT may use 1 GiB pages (the bootstrap CPU's VT-x capabilities).
    pub allow_1g: bool,
    /// The FADT's power-control ports, which always exit on Linux CPUs.
    pub fadt: FadtFacts,
}

/// Builds the EPT, bitmaps and start-up state of partition `id`: its RAM as `ram`, the
/// shared regions as `shared`, firmware ranges it may see as `firmware` (identity, with
/// their permissions), starting as `start` (`None`: the stub guest, written here).
pub fn build(
    cfg: &Config,
    env: &BuildEnv,
    id: PartitionId,
    ram: impl Iterator<Item = Mapping>,
    shared: impl Iterator<Item = Mapping>,
    firmware: impl Iterator<Item = (Mapping, Perms)>,
    start: Option<GuestStart>,
) -> Result<PartitionResources, BuildError> {
    let part = cfg.partition(id);
    let mut ept = Ept::new(HvTables::default(), env.allow_1g).map_err(|err| BuildError::Ept {
        field: "partitions.memory",
        index: 0,
        err,
    })?;
    let field = match id {
        PartitionId::Linux => "partitions.linux.memory",
        PartitionId::Rt => "partitions.rt.memory",
    };
    let regions = ram
        .enumerate()
        .map(|(i, m)| (field, i, m, Perms::RWX))
        .chain(
            shared
                .enumerate()
                .map(|(i, m)| ("shared", i, m, Perms::READ | Perms::WRITE)),
        )
        .chain(
            firmware
                .enumerate()
                .map(|(i, (m, perms))| ("firmware ranges", i, m, perms)),
        );
    for (field, index, m, perms) in regions {
        ept.map(m.gpa(), m.hpa(), m.size(), perms, MemType::WriteBack)
            .map_err(|err| BuildError::Ept { field, index, err })?;
    }
    // Device registers the config gives the partition (the RT partition's only: the config
    // check refuses Linux's), and the memory BARs of the RT partition's PCI functions
    // (`rt_pci`): identity-mapped, uncached, never executable.
    let pci_windows = (id == PartitionId::Rt)
        .then(crate::rt_pci::memory_windows)
        .into_iter()
        .flatten();
    let device_windows = identity(part.mmio().iter().copied())
        .enumerate()
        .map(|(i, m)| ("partitions.rt.mmio", i, m))
        .chain(
            identity(pci_windows)
                .enumerate()
                .map(|(i, m)| ("partitions.rt.pci_devices (memory BARs)", i, m)),
        );
    for (field, index, m) in device_windows {
        ept.map(
            m.gpa(),
            m.hpa(),
            m.size(),
            Perms::READ | Perms::WRITE,
            MemType::Uncacheable,
        )
        .map_err(|err| BuildError::Ept { field, index, err })?;
    }

    let io = memory::alloc_static::<[u8; IO_BITMAP_BYTES]>().map_err(BuildError::Memory)?;
    bitmaps::io_deny_all(io);
    for p in part.io_ports() {
        let base = u32::from(p.base);
        bitmaps::io_allow(io, base..base + u32::from(p.count));
    }
    let console = match id {
        PartitionId::Linux => cfg.console().linux,
        PartitionId::Rt => cfg.console().rt,
    };
    if let Some(port) = console.io_base() {
        let base = u32::from(port);
        bitmaps::io_allow(io, base..base + 8);
    }
    if id == PartitionId::Rt {
        for ports in crate::rt_pci::port_windows() {
            bitmaps::io_allow(io, ports.base as u32..ports.end() as u32);
        }
    }
    if id == PartitionId::Linux {
        for ports in always_exiting_ports(&env.fadt) {
            bitmaps::io_deny(io, ports);
        }
    }
    let msr = memory::alloc_static::<[u8; MSR_BITMAP_BYTES]>().map_err(BuildError::Memory)?;
    if id == PartitionId::Linux {
        // Linux writes only its own CPU's MSRs directly (`hv_core::vmx::msr_policy`).
        bitmaps::msr_intercept_all_writes(msr);
        for msr_range in LINUX_WRITABLE {
            for m in msr_range {
                bitmaps::msr_pass_writes(msr, m);
            }
        }
    }
    for m in WRITE_INTERCEPTS {
        bitmaps::msr_intercept(msr, m, MsrAccess::Write);
    }

    let start = match start {
        Some(start) => start,
        None => GuestStart::Stub {
            entry: write_stub(cfg, id)?,
        },
    };
    Ok(PartitionResources {
        id,
        eptp: ept.eptp(),
        io_bitmaps: HostPhysAddr::new(core::ptr::from_mut(io) as u64).unwrap_or_default(),
        msr_bitmap: HostPhysAddr::new(core::ptr::from_mut(msr) as u64).unwrap_or_default(),
        start,
        ept_tables: ept.memory().tables,
    })
}

/// Ports that exit on Linux CPUs whatever the config grants (see the module comment).
fn always_exiting_ports(fadt: &FadtFacts) -> impl Iterator<Item = core::ops::Range<u32>> {
    let reset = fadt.reset.map(|(port, _)| port);
    [0xcf8..0xd00, 0x64..0x65].into_iter().chain(
        fadt.pm1_control
            .into_iter()
            .chain([reset])
            .flatten()
            .map(|p| u32::from(p)..u32::from(p) + 2),
    )
}

/// Writes the stub guests into partition `id`'s first RAM page above 4 KiB; returns the
/// entry of the plain one.
fn write_stub(cfg: &Config, id: PartitionId) -> Result<u64, BuildError> {
    let stub_page = cfg
        .partition(id)
        .memory()
        .iter()
        .find(|r| r.size >= 0x2000 && r.base + r.size <= 1 << 32)
        .map(|r| r.base + 0x1000)
        .ok_or(BuildError::NoStubRoom)?;
    let ram = GuestRam::claim(id).map_err(BuildError::StubMemory)?;
    let write = |offset: u64, code: &[u8]| ram.write(gpa(stub_page + offset)?, code);
    write(0, &STUB).map_err(BuildError::StubMemory)?;
    write(STUB_UNHANDLED_OFFSET, &STUB_UNHANDLED).map_err(BuildError::StubMemory)?;
    Ok(stub_page)
}
