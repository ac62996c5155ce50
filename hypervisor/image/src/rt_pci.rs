//! The RT partition's PCI functions in the hardware: each is read and checked once at boot
//! (`hv_core::devices::rt_pci`, against what everyone else owns), then its decoding and bus
//! mastering are turned on. The partition builder maps their memory BARs into the RT
//! partition's EPT and passes their ports through ([`memory_windows`], [`port_windows`]);
//! Linux's BAR filter keeps Linux's functions off the same windows; the RT loader lists them
//! in the boot information. An RT CPU's exiting port accesses come here ([`port_access`]):
//! its own functions' configuration space, nothing else.

use bulkhead_abi::rt_boot::NO_LINE;
use bulkhead_config::{Config, MAX_PCI_DEVICES, PartitionId, Region};
use hv_core::devices::linux_io::IoOutcome;
use hv_core::devices::rt_lines::Line;
use hv_core::devices::rt_pci::{self, Described, RtPciError, RtPortOutcome, RtPorts, Surroundings};
use hv_core::support::fixed::FixedList;
use spin::{Mutex, Once};

use crate::linux_devices::{self, Event, Mechanism1, PortResult, RefusedConfig};
use crate::platform::Platform;

/// Most ranges an RT function's BARs are checked against.
const MAX_TAKEN: usize = 192;

static FUNCTIONS: Once<FixedList<Described, { bulkhead_abi::rt_boot::MAX_PCI_FUNCTIONS }>> =
    Once::new();
/// The RT partition's view of the ports that exit, shared by its CPUs (one latch).
static PORTS: Once<Mutex<RtPorts<'static>>> = Once::new();

/// The PCI configuration ports: the hypervisor's (it filters Linux's accesses; the RT
/// partition has none).
const CONFIG_PORTS: Region = Region::new(0xcf8, 8);
/// The local APICs' range, where devices' interrupt messages go.
const LOCAL_APICS: Region = Region::new(0xfee0_0000, 0x10_0000);

/// Describes, checks and enables the RT partition's functions (once, before Linux's devices
/// are set up and before the RT loader writes the boot information).
pub fn plan(
    cfg: &'static Config,
    platform: &Platform,
    usable_ram: &[Region],
    lines: &[Line],
) -> Result<&'static [Described], RtPciError> {
    let rt = cfg.partition(PartitionId::Rt);
    let linux = cfg.partition(PartitionId::Linux);
    let mut memory: FixedList<(Region, &'static str), MAX_TAKEN> = FixedList::new();
    let add = |list: &mut FixedList<(Region, &'static str), MAX_TAKEN>, r, what| {
        if list.push((r, what)).is_err() {
            log::warn!("partition rt: too many ranges to check PCI BARs against; {r} not checked");
        }
    };
    for &r in usable_ram {
        add(&mut memory, r, "RAM");
    }
    add(
        &mut memory,
        cfg.hypervisor_region(),
        "the hypervisor's memory",
    );
    let partition_regions = linux
        .memory()
        .iter()
        .chain(rt.memory())
        .copied()
        .chain(cfg.shared_regions().iter().map(|s| s.region));
    for r in partition_regions {
        add(&mut memory, r, "a partition's memory or a shared region");
    }
    for &r in rt.mmio() {
        add(&mut memory, r, "partitions.rt.mmio");
    }
    for io in platform.ioapics() {
        let page = Region::new(u64::from(io.address) & !0xfff, 0x1000);
        add(&mut memory, page, "an IOAPIC's registers");
    }
    add(&mut memory, LOCAL_APICS, "the local APICs' range");

    let mut ports: FixedList<(Region, &'static str), MAX_TAKEN> = FixedList::new();
    add(&mut ports, CONFIG_PORTS, "the PCI configuration ports");
    let consoles = [cfg.console().linux, cfg.console().hypervisor]
        .into_iter()
        .filter_map(|c| c.io_base())
        .map(|p| Region::new(u64::from(p), 8));
    let linux_ports = linux
        .io_ports()
        .iter()
        .map(|p| Region::new(u64::from(p.base), u64::from(p.count)))
        .chain(consoles);
    for r in linux_ports {
        add(&mut ports, r, "ports another owner has");
    }

    let mut linux_irqs: FixedList<_, MAX_PCI_DEVICES> = FixedList::new();
    for &bdf in linux.pci_devices() {
        let interrupt = hv_core::devices::pci_owned::ConfigSpace::read(&mut Mechanism1(bdf), 0x3c);
        let (irq, pin) = (interrupt as u8, (interrupt >> 8) as u8);
        if interrupt != u32::MAX && pin != 0 && irq != 0 && irq != 0xff {
            // Never full: as many as Linux's functions.
            let _ = linux_irqs.push((bdf, irq));
        }
    }

    let mut described = FixedList::new();
    for (index, (&bdf, &intx)) in rt.pci_devices().iter().zip(rt.pci_intx()).enumerate() {
        let surroundings = Surroundings {
            memory: memory.as_slice(),
            ports: ports.as_slice(),
            lines,
            linux_pins: linux.ioapic_pins(),
            linux_irqs: linux_irqs.as_slice(),
        };
        let function = rt_pci::describe(index, bdf, intx, &mut Mechanism1(bdf), &surroundings)?;
        rt_pci::enable(&mut Mechanism1(bdf), &function);
        for window in function.memory_windows() {
            add(&mut memory, window, "another RT PCI function's BAR");
        }
        for window in function.port_windows() {
            add(&mut ports, window, "another RT PCI function's BAR");
        }
        let info = function.info;
        log::info!(
            "partition rt: PCI {bdf} ({:04x}:{:04x}, class {:06x}): {} memory and {} I/O BARs mapped, bus mastering on, {}",
            info.vendor_id,
            info.device_id,
            info.class,
            function.memory_windows().count(),
            function.port_windows().count(),
            LineText(
                function
                    .irq
                    .filter(|_| info.line != NO_LINE)
                    .map(|irq| (irq, info.line))
            ),
        );
        if let (Some(irq), NO_LINE) = (function.irq, info.line) {
            log::warn!(
                "partition rt: PCI {bdf}: its INTx is routed to IRQ {irq} (its interrupt line register), which no partition owns: it gets no line (on a chipset whose PCI interrupts reach IOAPIC pins 16 and above, that register holds the PIC-mode IRQ: name the pin, as Linux's /proc/interrupts showed it, with intx in the config)"
            );
        }
        // The config holds at most MAX_PCI_FUNCTIONS RT functions.
        if described.push(function).is_err() {
            break;
        }
    }
    let functions = FUNCTIONS.call_once(|| described).as_slice();
    PORTS.call_once(|| Mutex::new(RtPorts::new(functions)));
    Ok(functions)
}

/// An RT CPU's `IN` or `OUT` that exited (see `hv_core::devices::rt_pci::RtPorts`).
pub fn port_access(port: u16, width: u8, write: Option<u32>) -> PortResult {
    let outcome = match PORTS.get() {
        Some(ports) => ports.lock().access(port, width, write),
        None => RtPortOutcome::Unowned,
    };
    let ones = u32::MAX >> (32 - 8 * u32::from(width.clamp(1, 4)));
    let (read, unowned, refused) = match outcome {
        RtPortOutcome::Read(v) | RtPortOutcome::Absent(v) => (Some(v), false, None),
        RtPortOutcome::Ignored => (None, false, None),
        RtPortOutcome::ConfigRead { bdf, offset, width } => (
            Some(linux_devices::config_access(bdf, offset, width, None)),
            false,
            None,
        ),
        RtPortOutcome::ConfigWrite {
            bdf,
            offset,
            width,
            value,
        } => {
            linux_devices::config_access(bdf, offset, width, Some(value));
            (None, false, None)
        }
        RtPortOutcome::RefusedConfigWrite { bdf, offset } => (
            None,
            false,
            Some(RefusedConfig::Filtered(IoOutcome::RefusedConfigWrite {
                bdf,
                offset,
            })),
        ),
        RtPortOutcome::Unowned => (write.is_none().then_some(ones), true, None),
    };
    PortResult {
        read,
        event: Event::Done,
        unowned,
        refused,
    }
}

/// How the boot report names a function's interrupt: its IRQ and line, if routed.
struct LineText(Option<(u8, u8)>);

impl core::fmt::Display for LineText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some((irq, line)) => write!(f, "INTx on IOAPIC pin {irq} (line {line})"),
            None => f.write_str("no INTx routed (polled only)"),
        }
    }
}

/// Every memory BAR of the RT partition's functions.
pub fn memory_windows() -> impl Iterator<Item = Region> {
    described().iter().flat_map(Described::memory_windows)
}

/// Every I/O BAR of the RT partition's functions.
pub fn port_windows() -> impl Iterator<Item = Region> {
    described().iter().flat_map(Described::port_windows)
}

fn described() -> &'static [Described] {
    FUNCTIONS.get().map(FixedList::as_slice).unwrap_or(&[])
}
