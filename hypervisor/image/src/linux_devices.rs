//! The platform devices the Linux partition reaches only through the hypervisor: its view
//! of each IOAPIC (the MMIO page is absent from its EPT; every access is decoded and
//! filtered by `hv_core::devices::ioapic`) and the ports its I/O bitmap does not pass through (PCI
//! configuration, power-off and reset, absent devices: `hv_core::devices::linux_io`).
//!
//! The channel device (`hv_core::devices::channel_device`), when some channel takes doorbells: an
//! emulated PCI function on a bus of its own whose INTA is an IOAPIC pin no partition owns.
//! Its configuration space is answered from the model here, its pin's entry is emulated in
//! Linux's IOAPIC view, and [`raise_channel_interrupt`] (the RT partition's doorbell) sends
//! the vector Linux programmed there to the Linux CPU it named.
//!
//! The PCI functions Linux owns: probed before Linux runs, then every configuration write to
//! one is checked (`hv_core::devices::pci_owned`) against what Linux owns, so that no BAR of
//! Linux's decodes over a port or page that is not Linux's and no MSI of Linux's goes to a CPU
//! that is not Linux's.
//!
//! Both views are per partition and shared by its CPUs, behind one lock each; the real
//! accesses they lead to happen here, under the same lock, so that a select-then-access
//! pair on the real device (IOREGSEL/IOWIN, 0xCF8/0xCFC) is never split by another CPU.
// Reaches the real devices behind Linux's filtered views: IOAPIC registers (MMIO), PCI
// configuration ports, and the x2APIC ICR for the channel device's interrupt.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_config::{Config, MAX_PCI_DEVICES, Notify, PartitionId, PciBdf, Region};
use hv_core::devices::channel_device::{self, ChannelDevice, Delivery};
use hv_core::devices::ioapic::{self, IoApicAction, IoApicView};
use hv_core::devices::linux_io::{FadtIo, IoOutcome, LinuxIo, ResetKind, ResetRegister};
use hv_core::devices::mmio::{self, MmioInsn};
use hv_core::devices::pci_owned::{self, ConfigSpace, LinuxReach, OwnedFunction};
use hv_core::memory::guest_paging::{self, PagingState};
use hv_core::support::fixed::FixedList;
use spin::{Mutex, Once};

use crate::arch::port;
use crate::guest_memory::LinuxRamView;
use crate::platform::{MAX_IOAPICS, Platform};

/// One IOAPIC: where its registers are and Linux's view of it.
struct IoApicSlot {
    base: u64,
    view: IoApicView,
}

impl IoApicSlot {
    /// Masks every pin Linux owns in the hardware.
    fn mask_linux_pins(&self) {
        for pin in 0..self.view.pins() {
            if self.view.owns(self.view.gsi_base() + pin) {
                let index = ioapic::reg::REDIRECTION + 2 * pin as u8;
                ioapic_write(self.base, index, ioapic_read(self.base, index) | 1 << 16);
            }
        }
    }
}

/// The channel device: where it is and its state.
struct ChannelSlot {
    bdf: PciBdf,
    gsi: u32,
    device: Mutex<ChannelDevice>,
}

struct Devices {
    io: Mutex<LinuxIo<'static>>,
    ioapics: Mutex<[Option<IoApicSlot>; MAX_IOAPICS]>,
    channel: Option<ChannelSlot>,
    linux_cpus: &'static [u32],
    linux_ram: &'static [bulkhead_config::Region],
    /// The PCI functions Linux owns, as probed before it ran.
    owned: [Option<OwnedFunction>; MAX_PCI_DEVICES],
    /// Linux's ports, and the memory its BARs must keep off.
    ports: FixedList<Region, LINUX_PORT_RANGES>,
    off_limits: FixedList<Region, OFF_LIMITS>,
}

/// Linux's port ranges: the config's and its console's.
const LINUX_PORT_RANGES: usize = bulkhead_config::MAX_PORT_RANGES + 1;
/// Memory ranges Linux's BARs keep off: RAM, RT windows, register pages.
const OFF_LIMITS: usize = 160;

/// The MSI address range: the local APICs as a device's interrupt messages reach them.
const MSI_WINDOW: Region = Region::new(0xfee0_0000, 0x10_0000);

/// A PCI function's configuration space through the real mechanism #1 ports (callers hold
/// the I/O lock, or no partition runs yet, so an address-then-data pair is never split).
pub struct Mechanism1(pub PciBdf);

impl ConfigSpace for Mechanism1 {
    fn read(&mut self, offset: u8) -> u32 {
        // SAFETY: mechanism #1 through the real ports, under the partition's I/O lock (or
        // before any partition runs); reads of the BARs and capabilities have no effect.
        unsafe {
            port::outl(0xcf8, pci_address(self.0, offset));
            port::inl(0xcfc)
        }
    }

    fn write(&mut self, offset: u8, value: u32) {
        // SAFETY: as above; only the probe writes through this (the BARs' sizing pattern
        // with decoding off, then their values back), before Linux runs.
        unsafe {
            port::outl(0xcf8, pci_address(self.0, offset));
            port::outl(0xcfc, value);
        }
    }
}

/// What Linux owns, for the BAR and MSI checks: its ports (the config's and its console's)
/// and the memory its BARs must keep off (all RAM, every partition's and the hypervisor's
/// regions, the RT partition's device windows, the IOAPICs' pages, the MSI range).
fn linux_reach(
    cfg: &Config,
    platform: &Platform,
    usable_ram: &[Region],
) -> (
    FixedList<Region, LINUX_PORT_RANGES>,
    FixedList<Region, OFF_LIMITS>,
) {
    let linux = cfg.partition(PartitionId::Linux);
    let mut ports = FixedList::new();
    let console = cfg
        .console()
        .linux
        .io_base()
        .map(|p| Region::new(u64::from(p), 8));
    for r in linux
        .io_ports()
        .iter()
        .map(|p| Region::new(u64::from(p.base), u64::from(p.count)))
        .chain(console)
    {
        // Never full: the config holds at most MAX_PORT_RANGES.
        let _ = ports.push(r);
    }
    let mut off = FixedList::new();
    let rt = cfg.partition(PartitionId::Rt);
    let regions = usable_ram
        .iter()
        .chain(linux.memory())
        .chain(rt.memory())
        .chain(rt.mmio())
        .copied()
        .chain(crate::rt_pci::memory_windows())
        .chain(core::iter::once(cfg.hypervisor_region()))
        .chain(cfg.shared_regions().iter().map(|s| s.region))
        .chain(
            platform
                .ioapics()
                .iter()
                .map(|io| Region::new(u64::from(io.address) & !0xfff, 0x1000)),
        )
        .chain(core::iter::once(MSI_WINDOW));
    for r in regions {
        if off.push(r).is_err() {
            log::warn!(
                "linux PCI: more than {OFF_LIMITS} memory ranges to keep Linux's BARs off; {r} and later ones not checked"
            );
            break;
        }
    }
    (ports, off)
}

/// Channel-device interrupts sent while the pin's entry was masked or aimed nowhere: they
/// stay pending in the device and come when Linux unmasks.
static CHANNEL_UNDELIVERED: AtomicU64 = AtomicU64::new(0);

static DEVICES: Once<Devices> = Once::new();

/// What an emulated access means for the partition.
pub enum Event {
    /// Handled; the guest goes on.
    Done,
    /// Linux asked for ACPI power-off.
    PowerOff,
    /// Linux asked for a reset, by the mechanism named.
    Reset(ResetKind),
}

fn ioapic_read(base: u64, index: u8) -> u32 {
    // SAFETY: `base` is an IOAPIC's register page from the MADT (identity-mapped,
    // uncached); selecting a register and reading the window has no other effect. Callers
    // hold the IOAPIC lock, so the pair is not split.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, u32::from(index));
        core::ptr::read_volatile((base + ioapic::IOWIN) as *const u32)
    }
}

fn ioapic_write(base: u64, index: u8, value: u32) {
    // SAFETY: as in `ioapic_read`; the filter allowed this register write.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, u32::from(index));
        core::ptr::write_volatile((base + ioapic::IOWIN) as *mut u32, value);
    }
}

/// Sets up Linux's views, once, before any Linux CPU runs. Every pin Linux owns is masked
/// first (the filter assumes Linux starts with its pins masked).
pub fn init(cfg: &'static Config, platform: &Platform, usable_ram: &[Region]) {
    let linux = cfg.partition(PartitionId::Linux);
    let mut slots = [const { None }; MAX_IOAPICS];
    let mut pins = [(0u32, 0u32); MAX_IOAPICS];
    for ((slot, io), pins) in slots
        .iter_mut()
        .zip(platform.ioapics())
        .zip(pins.iter_mut())
    {
        let base = u64::from(io.address);
        let version = ioapic_read(base, ioapic::reg::VERSION);
        let view = IoApicView::new(io.gsi_base, version, linux.ioapic_pins());
        *pins = (io.gsi_base, view.pins());
        *slot = Some(IoApicSlot { base, view });
    }
    let channel = channel_slot(cfg, &pins[..platform.ioapics().len().min(MAX_IOAPICS)]);
    for slot in slots.iter_mut().flatten() {
        if let Some(c) = &channel {
            // The device's pin: emulated for Linux, masked in the hardware for good.
            slot.view = slot.view.clone().with_emulated_pin(c.gsi);
        }
        slot.mask_linux_pins();
    }
    let f = platform.fadt;
    let fadt = FadtIo {
        pm1a_control: f.pm1_control[0],
        pm1b_control: f.pm1_control[1],
        s5_sleep_type: f.s5_sleep_type,
        reset: f.reset.map(|(port, value)| ResetRegister { port, value }),
    };
    let mut io = LinuxIo::new(linux.pci_devices(), fadt);
    if let Some(c) = &channel {
        io = io.with_emulated(c.bdf);
    }
    let mut owned = [None; MAX_PCI_DEVICES];
    let rt_functions = cfg.partition(PartitionId::Rt).pci_devices();
    for (slot, &bdf) in owned.iter_mut().zip(linux.pci_devices()) {
        let mut f = OwnedFunction::probe(bdf, &mut Mechanism1(bdf));
        let guards = f.guard_rt_behind(rt_functions);
        log::info!(
            "linux PCI {bdf}: {} BARs{}; writes moving them outside what Linux owns are refused{}",
            f.bars().count(),
            if f.msi().is_some() { ", MSI" } else { "" },
            if guards {
                "; a bridge with an RT function behind it: its routing is fixed"
            } else {
                ""
            }
        );
        *slot = Some(f);
    }
    let (ports, off_limits) = linux_reach(cfg, platform, usable_ram);
    DEVICES.call_once(|| Devices {
        io: Mutex::new(io),
        ioapics: Mutex::new(slots),
        channel,
        linux_cpus: linux.cpus(),
        linux_ram: linux.memory(),
        owned,
        ports,
        off_limits,
    });
}

/// Runs `f` on the redirection entry of `gsi` (its `(low, high)` dwords) in the IOAPIC that
/// has the pin, under the IOAPIC lock, and writes back what `f` returns: high dword first,
/// then low (so an entry is unmasked only once it aims where it should). For the RT
/// partition's lines (`rt_lines`), which Linux's view already refuses; `false` when no IOAPIC
/// has the pin or the views are not set up.
pub fn update_redirection(gsi: u32, f: impl FnOnce(u32, u32) -> (u32, u32)) -> bool {
    let Some(d) = DEVICES.get() else {
        return false;
    };
    let ioapics = d.ioapics.lock();
    let Some(slot) = ioapics.iter().flatten().find(|s| {
        gsi.checked_sub(s.view.gsi_base())
            .is_some_and(|pin| pin < s.view.pins())
    }) else {
        return false;
    };
    let index = ioapic::reg::REDIRECTION + 2 * (gsi - slot.view.gsi_base()) as u8;
    let (low, high) = f(
        ioapic_read(slot.base, index),
        ioapic_read(slot.base, index + 1),
    );
    ioapic_write(slot.base, index + 1, high);
    ioapic_write(slot.base, index, low);
    true
}

/// The channel device, when some channel takes doorbells and the machine has room for it: a
/// free IOAPIC pin and a free bus.
fn channel_slot(cfg: &Config, ioapics: &[(u32, u32)]) -> Option<ChannelSlot> {
    if !cfg
        .channels()
        .iter()
        .any(|c| c.notify() == Notify::Doorbell)
    {
        return None;
    }
    let owned = |gsi| cfg.partition_of_pin(gsi).is_some();
    let Some(gsi) = channel_device::choose_gsi(ioapics, owned, ioapic::MAX_GSIS as u32) else {
        log::warn!(
            "channel device: no IOAPIC pin at GSI 16 or above is free; Linux polls its channels"
        );
        return None;
    };
    let taken = |bus: u8| {
        let mine = |id| {
            cfg.partition(id)
                .pci_devices()
                .iter()
                .any(|d| d.bus() == bus)
        };
        mine(PartitionId::Linux)
            || mine(PartitionId::Rt)
            || (0..32).any(|dev| {
                PciBdf::new(bus, dev, 0).is_some_and(|bdf| {
                    // SAFETY: a configuration read through mechanism #1 before any partition
                    // runs; reading a vendor ID has no side effect.
                    unsafe {
                        port::outl(0xcf8, pci_address(bdf, 0));
                        port::inw(0xcfc) != 0xffff
                    }
                })
            })
    };
    let Some(bdf) = channel_device::choose_bus(taken).and_then(|bus| PciBdf::new(bus, 0, 0)) else {
        log::warn!("channel device: no free PCI bus; Linux polls its channels");
        return None;
    };
    crate::println!(
        "channel device: PCI 0000:{bdf} ({:04x}:{:04x}), INTA on GSI {gsi}: the RT partition's doorbells interrupt Linux",
        channel_device::VENDOR_ID,
        channel_device::DEVICE_ID
    );
    Some(ChannelSlot {
        bdf,
        gsi,
        device: Mutex::new(ChannelDevice::new(gsi)),
    })
}

/// Where Linux finds the channel device: its bus and GSI (for the SSDT Linux is given).
pub fn channel_device() -> Option<(u8, u32)> {
    let c = DEVICES.get()?.channel.as_ref()?;
    Some((c.bdf.bus(), c.gsi))
}

/// The RT partition's doorbell toward Linux: raises the channel device's interrupt. Returns
/// whether there is a device.
pub fn raise_channel_interrupt() -> bool {
    let Some(c) = DEVICES.get().and_then(|d| d.channel.as_ref()) else {
        return false;
    };
    if c.device.lock().raise() == Delivery::Send {
        deliver_channel_interrupt();
    }
    true
}

/// Doorbells the RT side raised, interrupts sent to Linux, and sends that found the pin
/// masked (they come when Linux unmasks it).
pub fn channel_interrupt_counts() -> Option<(u32, u32, u64)> {
    let c = DEVICES.get()?.channel.as_ref()?;
    let (raised, delivered) = c.device.lock().counts();
    Some((
        raised,
        delivered,
        CHANNEL_UNDELIVERED.load(Ordering::Relaxed),
    ))
}

/// Sends the vector of the channel device's pin to the CPU its entry names, if Linux has
/// unmasked it. Takes the IOAPIC lock, then the device's; the caller holds neither.
fn deliver_channel_interrupt() {
    let Some(d) = DEVICES.get() else { return };
    let Some(c) = d.channel.as_ref() else { return };
    let entry = d
        .ioapics
        .lock()
        .iter()
        .flatten()
        .find_map(|s| s.view.emulated_entry(c.gsi));
    let Some((low, high)) = entry else {
        CHANNEL_UNDELIVERED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let dest = high >> 24;
    // The view allowed only destinations of Linux's CPUs: a physical APIC ID, or (flat
    // logical mode) a set of them, of which the first takes it.
    let target = if low & (1 << 11) == 0 {
        Some(dest)
    } else {
        (0..8).find(|b| dest & (1 << b) != 0)
    };
    let vector = low & 0xff;
    match target.filter(|t| d.linux_cpus.contains(t)) {
        Some(target) if vector >= 0x20 => {
            // Fixed delivery, physical destination, level assert.
            // SAFETY: x2APIC mode is on on every CPU the hypervisor runs; the target is a
            // Linux CPU and the vector one Linux programmed for this pin.
            unsafe { crate::arch::apic::x2apic_send_icr(target, vector | 1 << 14) };
            c.device.lock().delivered();
        }
        _ => {
            CHANNEL_UNDELIVERED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Puts Linux's devices back as before its first start, for a Linux that restarts: its
/// IOAPIC pins masked and the views forgetting what the old Linux wrote; the PCI address
/// latch cleared.
pub fn reset() {
    let Some(d) = DEVICES.get() else { return };
    for slot in d.ioapics.lock().iter_mut().flatten() {
        slot.view.reset();
        slot.mask_linux_pins();
    }
    d.io.lock().reset();
    if let Some(c) = &d.channel {
        c.device.lock().reset();
    }
}

fn pci_address(bdf: PciBdf, offset: u8) -> u32 {
    0x8000_0000
        | u32::from(bdf.bus()) << 16
        | u32::from(bdf.device()) << 11
        | u32::from(bdf.function()) << 8
        | u32::from(offset & 0xfc)
}

/// What an IN or OUT did: the value read (for IN), its meaning for the partition, whether
/// the port has no device for Linux, and a refused PCI configuration write (both to count
/// and log).
pub struct PortResult {
    pub read: Option<u32>,
    pub event: Event,
    pub unowned: bool,
    pub refused: Option<RefusedConfig>,
}

/// A PCI configuration write that did not reach the hardware.
pub enum RefusedConfig {
    /// To a function the partition does not own or may only read, or with no function
    /// selected (or, from the RT partition, to a register it may not write).
    Filtered(IoOutcome),
    /// To a function Linux owns, but it would have made the function decode or signal
    /// outside what Linux owns.
    Owned {
        bdf: PciBdf,
        offset: u8,
        why: pci_owned::Refused,
    },
}

impl core::fmt::Display for RefusedConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Filtered(outcome) => write!(f, "{outcome}"),
            Self::Owned { bdf, offset, why } => {
                write!(
                    f,
                    "configuration write to {bdf} offset {offset:#x} refused: {why}"
                )
            }
        }
    }
}

/// An IN (`write` = `None`) or OUT of `width` bytes on `port`.
pub fn port_access(port: u16, width: u8, write: Option<u32>) -> PortResult {
    let (read, event, unowned, refused) = port_access_inner(port, width, write);
    PortResult {
        read,
        event,
        unowned,
        refused,
    }
}

/// The value read, the event, whether the port is unowned, and a refused configuration write.
type PortOutcome = (Option<u32>, Event, bool, Option<RefusedConfig>);

/// Reads (`write` `None`, returning the value) or writes `width` bytes at `offset` of `bdf`'s
/// configuration space through the real mechanism #1 ports. The caller holds the I/O lock
/// (the address-then-data pair is never split) and has decided the access may happen.
fn real_config(bdf: PciBdf, offset: u8, width: u8, write: Option<u32>) -> u32 {
    let at = 0xcfc + u16::from(offset & 3);
    // SAFETY: mechanism #1 through the real ports, under the I/O lock, for an access the
    // caller's filter allowed.
    unsafe {
        port::outl(0xcf8, pci_address(bdf, offset));
        match (width, write) {
            (1, None) => u32::from(port::inb(at)),
            (2, None) => u32::from(port::inw(at)),
            (_, None) => port::inl(at),
            (1, Some(v)) => {
                port::outb(at, v as u8);
                0
            }
            (2, Some(v)) => {
                port::outw(at, v as u16);
                0
            }
            (_, Some(v)) => {
                port::outl(at, v);
                0
            }
        }
    }
}

/// [`real_config`] under the I/O lock Linux's accesses take: for the RT partition's own
/// functions (`rt_pci::port_access`). Before Linux's views exist, no other CPU runs.
pub fn config_access(bdf: PciBdf, offset: u8, width: u8, write: Option<u32>) -> u32 {
    match DEVICES.get() {
        Some(d) => {
            let _io = d.io.lock();
            real_config(bdf, offset, width, write)
        }
        None => real_config(bdf, offset, width, write),
    }
}

fn port_access_inner(port: u16, width: u8, write: Option<u32>) -> PortOutcome {
    let Some(d) = DEVICES.get() else {
        let all_ones = u32::MAX >> (32 - 8 * u32::from(width.clamp(1, 4)));
        return (write.is_none().then_some(all_ones), Event::Done, true, None);
    };
    let mut io = d.io.lock();
    let outcome = io.access(port, width, write);
    match outcome {
        IoOutcome::Read(v) => (Some(v), Event::Done, false, None),
        IoOutcome::Ignored => (None, Event::Done, false, None),
        refused @ IoOutcome::RefusedConfigWrite { .. } => (
            None,
            Event::Done,
            false,
            Some(RefusedConfig::Filtered(refused)),
        ),
        IoOutcome::PciConfigRead { bdf, offset, width } => {
            // A function Linux may read (the filter's decision), under the I/O lock.
            let v = real_config(bdf, offset, width, None);
            (Some(v), Event::Done, false, None)
        }
        IoOutcome::PciConfigWrite {
            bdf,
            offset,
            width,
            value,
        } => {
            let reach = LinuxReach {
                ports: d.ports.as_slice(),
                off_limits: d.off_limits.as_slice(),
                cpus: d.linux_cpus,
            };
            let checked = d
                .owned
                .iter()
                .flatten()
                .find(|f| f.bdf == bdf)
                .map(|f| f.check_write(&reach, offset, width, value, &mut Mechanism1(bdf)));
            if let Some(Err(why)) = checked {
                let refused = RefusedConfig::Owned { bdf, offset, why };
                return (None, Event::Done, false, Some(refused));
            }
            // A function Linux owns, and a write the check allowed, under the I/O lock.
            real_config(bdf, offset, width, Some(value));
            (None, Event::Done, false, None)
        }
        IoOutcome::EmulatedConfigRead { offset, width } => {
            let v = d
                .channel
                .as_ref()
                .map_or(u32::MAX, |c| c.device.lock().read(offset, width));
            (Some(v), Event::Done, false, None)
        }
        IoOutcome::EmulatedConfigWrite {
            offset,
            width,
            value,
        } => {
            let send = d
                .channel
                .as_ref()
                .is_some_and(|c| c.device.lock().write(offset, width, value) == Delivery::Send);
            drop(io);
            if send {
                deliver_channel_interrupt();
            }
            (None, Event::Done, false, None)
        }
        IoOutcome::WatchdogFeed { timeout_s } => {
            crate::linux_cpus::feed_watchdog(timeout_s);
            (None, Event::Done, false, None)
        }
        IoOutcome::WatchdogStop => {
            crate::linux_cpus::disarm_watchdog();
            (None, Event::Done, false, None)
        }
        IoOutcome::PowerOff => (None, Event::PowerOff, false, None),
        IoOutcome::Reset { how } => (None, Event::Reset(how), false, None),
        IoOutcome::UnownedRead { value, .. } => (Some(value), Event::Done, true, None),
        IoOutcome::UnownedWrite { .. } => (None, Event::Done, true, None),
    }
}

/// Whether `gpa` lies in an IOAPIC's register page.
pub fn is_ioapic(gpa: u64) -> bool {
    DEVICES.get().is_some_and(|d| {
        d.ioapics
            .lock()
            .iter()
            .flatten()
            .any(|s| gpa & !0xfff == s.base)
    })
}

/// Why an IOAPIC access could not be emulated.
pub enum MmioError {
    Fetch(guest_paging::WalkError),
    Decode(mmio::DecodeError),
    Direction,
}

impl core::fmt::Display for MmioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Fetch(e) => write!(f, "instruction fetch: {e}"),
            Self::Decode(e) => write!(f, "{e}"),
            Self::Direction => f.write_str("the instruction's direction disagrees with the exit"),
        }
    }
}

/// Fetches and decodes Linux's instruction at `rip`, which made a `write` (or read) access.
fn decode_access(
    d: &Devices,
    write: bool,
    rip: u64,
    paging: &PagingState,
) -> Result<MmioInsn, MmioError> {
    let ram = LinuxRamView(d.linux_ram);
    let mut bytes = [0u8; mmio::MAX_INSN_LEN];
    // Fetch up to the end of the page first, then the rest if the decoder needs it.
    let in_page = (0x1000 - (rip & 0xfff)) as usize;
    let first = in_page.min(bytes.len());
    guest_paging::read_linear(paging, rip, &mut bytes[..first], &ram).map_err(MmioError::Fetch)?;
    let insn: MmioInsn = match mmio::decode(&bytes[..first]) {
        Err(mmio::DecodeError::Truncated { .. }) if first < bytes.len() => {
            guest_paging::read_linear(paging, rip + first as u64, &mut bytes[first..], &ram)
                .map_err(MmioError::Fetch)?;
            mmio::decode(&bytes).map_err(MmioError::Decode)?
        }
        other => other.map_err(MmioError::Decode)?,
    };
    if insn.is_write() != write {
        return Err(MmioError::Direction);
    }
    Ok(insn)
}

/// Emulates Linux's instruction at `rip` that accessed a page where the platform has no
/// device for it (the xAPIC page, which x2APIC mode switches off): a write is dropped, a
/// read gets all ones, as an access no device answers does on a PC. Returns the
/// instruction's length.
pub fn absent_device_access(
    write: bool,
    rip: u64,
    paging: &PagingState,
    regs: &mut [u64; 16],
    rflags: &mut u64,
) -> Result<u8, MmioError> {
    let Some(d) = DEVICES.get() else {
        return Err(MmioError::Direction);
    };
    let insn = decode_access(d, write, rip, paging)?;
    if !write {
        insn.complete_read(
            regs,
            rflags,
            u64::MAX >> (64 - 8 * u32::from(insn.width.clamp(1, 8))),
        );
    }
    Ok(insn.len)
}

/// Emulates the guest instruction at `rip` that accessed the IOAPIC page at `gpa`.
/// `regs` is the guest's register file (RAX RCX RDX RBX RSP RBP RSI RDI R8..R15) and
/// `rflags` its RFLAGS (a compare sets its arithmetic flags); returns the instruction's
/// length, and a refusal to log if the filter refused the access.
pub fn ioapic_access(
    gpa: u64,
    write: bool,
    rip: u64,
    paging: &PagingState,
    regs: &mut [u64; 16],
    rflags: &mut u64,
) -> Result<(u8, Option<ioapic::Refusal>), MmioError> {
    let Some(d) = DEVICES.get() else {
        return Err(MmioError::Direction);
    };
    let insn = decode_access(d, write, rip, paging)?;
    let cpus = d.linux_cpus;
    let destinations = |dest: u32, logical: bool| {
        if logical {
            // Flat logical mode: each set bit is a CPU; x2APIC cluster mode is not used
            // by the IOAPIC. Allow only a destination whose CPUs are all Linux's.
            (0..8)
                .filter(|b| dest & (1 << b) != 0)
                .all(|b| cpus.contains(&b))
        } else {
            cpus.contains(&dest)
        }
    };
    let mut ioapics = d.ioapics.lock();
    let Some(slot) = ioapics
        .iter_mut()
        .flatten()
        .find(|s| gpa & !0xfff == s.base)
    else {
        return Err(MmioError::Direction);
    };
    let value = write.then(|| insn.store_value(regs) as u32);
    let action = slot
        .view
        .access(gpa & 0xfff, insn.width, value, &destinations);
    let mut refusal = None;
    let read = match action {
        IoApicAction::WriteSelect | IoApicAction::Dropped => None,
        IoApicAction::Emulated { .. } => {
            // Linux may just have unmasked the channel device's pin with a doorbell pending.
            let line = d.channel.as_ref().is_some_and(|c| c.device.lock().line());
            if line {
                drop(ioapics);
                deliver_channel_interrupt();
                return Ok((insn.len, None));
            }
            None
        }
        IoApicAction::ReadValue { value } => Some(value),
        IoApicAction::ReadRegister { index } => Some(ioapic_read(slot.base, index)),
        IoApicAction::WriteRegister { index, value } => {
            ioapic_write(slot.base, index, value);
            None
        }
        IoApicAction::Eoi { vector } => {
            // SAFETY: the EOI register of an IOAPIC whose version has one (the filter
            // checked), for a vector of one of Linux's pins.
            unsafe {
                core::ptr::write_volatile((slot.base + ioapic::EOI) as *mut u32, u32::from(vector));
            }
            None
        }
        IoApicAction::Refused { reason, reply } => {
            refusal = Some(reason);
            reply
        }
    };
    if let Some(v) = read {
        insn.complete_read(regs, rflags, u64::from(v));
    }
    Ok((insn.len, refusal))
}
