//! The platform devices the Linux partition reaches only through the hypervisor: its view
//! of each IOAPIC (the MMIO page is absent from its EPT; every access is decoded and
//! filtered by `hv_core::ioapic`) and the ports its I/O bitmap does not pass through (PCI
//! configuration, power-off and reset, absent devices: `hv_core::linux_io`).
//!
//! Both views are per partition and shared by its CPUs, behind one lock each; the real
//! accesses they lead to happen here, under the same lock, so that a select-then-access
//! pair on the real device (IOREGSEL/IOWIN, 0xCF8/0xCFC) is never split by another CPU.

use bulkhead_config::{Config, PartitionId, PciBdf};
use hv_core::guest_paging::{self, GuestMemory, PagingState};
use hv_core::ioapic::{self, IoApicAction, IoApicView};
use hv_core::linux_io::{FadtIo, IoOutcome, LinuxIo, ResetKind, ResetRegister};
use hv_core::mmio::{self, MmioInsn};
use spin::{Mutex, Once};

use crate::arch::port;
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

struct Devices {
    io: Mutex<LinuxIo<'static>>,
    ioapics: Mutex<[Option<IoApicSlot>; MAX_IOAPICS]>,
    linux_cpus: &'static [u32],
    linux_ram: &'static [bulkhead_config::Region],
}

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
pub fn init(cfg: &'static Config, platform: &Platform) {
    let linux = cfg.partition(PartitionId::Linux);
    let mut slots = [const { None }; MAX_IOAPICS];
    for (slot, io) in slots.iter_mut().zip(platform.ioapics()) {
        let base = u64::from(io.address);
        let version = ioapic_read(base, ioapic::reg::VERSION);
        let view = IoApicView::new(io.gsi_base, version, linux.ioapic_pins());
        let slot = slot.insert(IoApicSlot { base, view });
        slot.mask_linux_pins();
    }
    let f = platform.fadt;
    let fadt = FadtIo {
        pm1a_control: f.pm1_control[0],
        pm1b_control: f.pm1_control[1],
        s5_sleep_type: f.s5_sleep_type,
        reset: f.reset.map(|(port, value)| ResetRegister { port, value }),
    };
    DEVICES.call_once(|| Devices {
        io: Mutex::new(LinuxIo::new(linux.pci_devices(), fadt)),
        ioapics: Mutex::new(slots),
        linux_cpus: linux.cpus(),
        linux_ram: linux.memory(),
    });
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
}

fn pci_address(bdf: PciBdf, offset: u8) -> u32 {
    0x8000_0000
        | u32::from(bdf.bus()) << 16
        | u32::from(bdf.device()) << 11
        | u32::from(bdf.function()) << 8
        | u32::from(offset & 0xfc)
}

/// What an IN or OUT did: the value read (for IN), its meaning for the partition, and
/// whether the port has no device for Linux (to count and log).
pub struct PortResult {
    pub read: Option<u32>,
    pub event: Event,
    pub unowned: bool,
}

/// An IN (`write` = `None`) or OUT of `width` bytes on `port`.
pub fn port_access(port: u16, width: u8, write: Option<u32>) -> PortResult {
    let (read, event, unowned) = port_access_inner(port, width, write);
    PortResult {
        read,
        event,
        unowned,
    }
}

fn port_access_inner(port: u16, width: u8, write: Option<u32>) -> (Option<u32>, Event, bool) {
    let Some(d) = DEVICES.get() else {
        let all_ones = u32::MAX >> (32 - 8 * u32::from(width.clamp(1, 4)));
        return (write.is_none().then_some(all_ones), Event::Done, true);
    };
    let mut io = d.io.lock();
    let outcome = io.access(port, width, write);
    let data = 0xcfc;
    match outcome {
        IoOutcome::Read(v) => (Some(v), Event::Done, false),
        IoOutcome::Ignored => (None, Event::Done, false),
        IoOutcome::PciConfigRead { bdf, offset, width } => {
            let at = data + u16::from(offset & 3);
            // SAFETY: mechanism #1 through the real ports, for a function Linux may read
            // (the filter's decision), under the partition's I/O lock.
            let v = unsafe {
                port::outl(0xcf8, pci_address(bdf, offset));
                match width {
                    1 => u32::from(port::inb(at)),
                    2 => u32::from(port::inw(at)),
                    _ => port::inl(at),
                }
            };
            (Some(v), Event::Done, false)
        }
        IoOutcome::PciConfigWrite {
            bdf,
            offset,
            width,
            value,
        } => {
            let at = data + u16::from(offset & 3);
            // SAFETY: as above, for a function Linux owns.
            unsafe {
                port::outl(0xcf8, pci_address(bdf, offset));
                match width {
                    1 => port::outb(at, value as u8),
                    2 => port::outw(at, value as u16),
                    _ => port::outl(at, value),
                }
            }
            (None, Event::Done, false)
        }
        IoOutcome::PowerOff => (None, Event::PowerOff, false),
        IoOutcome::Reset { how } => (None, Event::Reset(how), false),
        IoOutcome::UnownedRead { value, .. } => (Some(value), Event::Done, true),
        IoOutcome::UnownedWrite { .. } => (None, Event::Done, true),
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

/// Linux's RAM, read for instruction fetches.
struct LinuxRam(&'static [bulkhead_config::Region]);

impl GuestMemory for LinuxRam {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Some(u64::from_le_bytes(b))
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
        let want = bulkhead_config::Region::new(gpa, buf.len() as u64);
        if !self.0.iter().any(|r| r.contains_region(&want)) || gpa + buf.len() as u64 > 1 << 32 {
            return None;
        }
        // SAFETY: the range is Linux RAM (identity-mapped, GPA = HPA) below 4 GiB, which the
        // hypervisor maps; reading it has no side effects (Linux may change it meanwhile,
        // which only affects what we decode).
        unsafe { core::ptr::copy_nonoverlapping(gpa as *const u8, buf.as_mut_ptr(), buf.len()) };
        Some(())
    }
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

/// Emulates the guest instruction at `rip` that accessed the IOAPIC page at `gpa`.
/// `regs` is the guest's register file (RAX RCX RDX RBX RSP RBP RSI RDI R8..R15); returns
/// the instruction's length, and a refusal to log if the filter refused the access.
pub fn ioapic_access(
    gpa: u64,
    write: bool,
    rip: u64,
    paging: &PagingState,
    regs: &mut [u64; 16],
) -> Result<(u8, Option<ioapic::Refusal>), MmioError> {
    let Some(d) = DEVICES.get() else {
        return Err(MmioError::Direction);
    };
    let ram = LinuxRam(d.linux_ram);
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
        insn.complete_load(regs, u64::from(v));
    }
    Ok((insn.len, refusal))
}
