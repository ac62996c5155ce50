//! The machine as a running Linux shows it, read under a root directory.
//!
//! Required (an error naming the file when missing or malformed): `/proc/cpuinfo`,
//! `/sys/firmware/memmap`, `/proc/interrupts`, `/sys/firmware/acpi/tables/APIC`. Read when
//! present: `/proc/ioports`, `/sys/bus/pci/devices`, `/sys/class/tty/ttyS*`, the MCFG and
//! DMAR tables (only whether they exist), `/proc/cmdline`, `/proc/consoles`, the host name,
//! and `/dev/cpu/0/msr` (root with the `msr` module; without it the VT-x capabilities are
//! unknown, which the plan reports).
//!
//! A dump of a machine ([`dump`]) is those files copied under a directory as they were read,
//! with CPU 0's MSRs in [`DUMP_MSRS`] (the msr driver's file, read at the MSR's number as
//! offset, is no regular file); [`read`] reads a dump as it reads the machine, so a report
//! from the field is probed again exactly, and test fixtures are made the same way.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::madt::{Madt, MadtError};
use crate::vmx::Vmx;

/// A file that could not be read or understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// The file, as the machine names it (`/proc/cpuinfo`).
    pub file: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

impl std::error::Error for ReadError {}

/// A logical CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// Linux's number for it.
    pub linux: u32,
    /// Its APIC ID (what the config names).
    pub apic_id: u32,
    /// Its package (`physical id`).
    pub package: u32,
    /// Its core in the package (`core id`): CPUs with one (package, core) are SMT siblings.
    pub core: u32,
}

/// One range of the firmware's memory map (end exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Linux's name for its type (`System RAM`, `Reserved`, `ACPI Tables`, ...).
    pub kind: String,
}

impl MemoryRange {
    /// Usable RAM.
    pub fn is_ram(&self) -> bool {
        self.kind == "System RAM"
    }
}

/// An IOAPIC line Linux has a handler on (`/proc/interrupts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoApicLine {
    /// Linux's IRQ number.
    pub irq: u32,
    /// The GSI (IOAPIC pin) it is on.
    pub gsi: u32,
    /// Level-triggered (`fasteoi`) rather than edge.
    pub level: bool,
    /// The handlers' names (drivers or devices: `ttyS1`, `ata_piix`, `i8042`).
    pub names: Vec<String>,
}

/// A range of `/proc/ioports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub last: u16,
    /// Who claimed it.
    pub name: String,
}

/// A PCI function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    /// `BB:DD.F` (segment 0).
    pub bdf: String,
    /// Vendor and device IDs.
    pub vendor: u16,
    pub device: u16,
    /// Class, subclass and programming interface.
    pub class: u32,
    /// Linux's IRQ for its legacy interrupt, if it has one routed (0 in sysfs: none); see
    /// [`Facts::gsi_of_irq`].
    pub irq: Option<u32>,
    /// Linux drives it with MSI: its sysfs `irq` was a message-signalled IRQ of
    /// `/proc/interrupts` (Linux puts the first MSI's there), so its legacy pin is not known
    /// and `irq` is `None`.
    pub message_signalled: bool,
    /// The Linux driver bound to it.
    pub driver: Option<String>,
    /// For a PCI-to-PCI bridge: the buses behind it (secondary to subordinate).
    pub buses: Option<(u8, u8)>,
}

impl PciFunction {
    /// Its bus number.
    pub fn bus(&self) -> u8 {
        u8::from_str_radix(&self.bdf[..2], 16).unwrap_or(0)
    }

    /// A host bridge (class 06 00).
    pub fn is_host_bridge(&self) -> bool {
        self.class >> 8 == 0x0600
    }

    /// An ISA bridge (class 06 01): the chipset's legacy interrupt router among others.
    pub fn is_isa_bridge(&self) -> bool {
        self.class >> 8 == 0x0601
    }

    /// A PCI-to-PCI bridge (class 06 04).
    pub fn is_bridge(&self) -> bool {
        self.class >> 8 == 0x0604
    }
}

/// A serial port Linux found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPort {
    /// `ttyS1`.
    pub name: String,
    /// Its I/O base.
    pub port: u16,
    /// Linux's IRQ for it; see [`Facts::gsi_of_irq`].
    pub irq: u32,
}

/// Everything the plan is made from.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Online logical CPUs, in Linux's order.
    pub cpus: Vec<Cpu>,
    /// Flags every CPU reports (`vmx`, `x2apic`, `constant_tsc`, ...), from the first CPU.
    pub cpu_flags: BTreeSet<String>,
    /// The firmware's memory map.
    pub memory: Vec<MemoryRange>,
    /// The MADT.
    pub madt: Madt,
    /// Whether the firmware has an MCFG (PCI Express configuration space) and a DMAR (an
    /// Intel IOMMU, VT-d).
    pub has_mcfg: bool,
    pub has_dmar: bool,
    /// IOAPIC lines with handlers.
    pub lines: Vec<IoApicLine>,
    /// `/proc/ioports`, every level.
    pub ports: Vec<PortRange>,
    /// PCI functions.
    pub pci: Vec<PciFunction>,
    /// Serial ports that exist.
    pub serial: Vec<SerialPort>,
    /// VT-x as the capability MSRs describe it, when they could be read.
    pub vmx: Option<Vmx>,
    /// Why the MSRs could not be read.
    pub vmx_unknown: Option<String>,
    /// Linux's command line.
    pub cmdline: String,
    /// Linux's console (`ttyS1`), if it is a serial port.
    pub console: Option<String>,
    /// The host name.
    pub hostname: String,
}

/// Where a dump keeps CPU 0's MSRs, beside the machine's files: a `NUMBER VALUE` line (both
/// hexadecimal, `0x3a 0x5`) per MSR the probe read.
pub const DUMP_MSRS: &str = "msr.txt";

/// Reads a machine under `root` (`/` for this one): its MSRs from the dump's [`DUMP_MSRS`]
/// when `root` holds one, else through `root`'s `/dev/cpu/0/msr`.
pub fn read(root: &Path) -> Result<Facts, ReadError> {
    let msrs = Msrs::open(root)?;
    read_machine(&Machine::new(root), |number| msrs.read(number))
}

/// [`read`], copying every file it reads under `dump` (created if need be), and the MSRs it
/// reads into `dump`'s [`DUMP_MSRS`]: `read(dump)` then reads the same machine. A file the
/// dump cannot write is an error naming it.
pub fn dump(root: &Path, dump: &Path) -> Result<Facts, ReadError> {
    let msrs = Msrs::open(root)?;
    let machine = Machine {
        root,
        dump: Some(Dump {
            dir: dump,
            failed: RefCell::new(None),
        }),
    };
    let mut read_values = BTreeMap::new();
    let facts = read_machine(&machine, |number| {
        let value = msrs.read(number)?;
        read_values.insert(number, value);
        Ok(value)
    })?;
    if !read_values.is_empty() {
        let text: String = read_values
            .iter()
            .map(|(number, value)| format!("{number:#x} {value:#x}\n"))
            .collect();
        machine.record(&format!("/{DUMP_MSRS}"), |path| fs::write(path, &text));
    }
    match machine.dump.and_then(|d| d.failed.into_inner()) {
        Some(e) => Err(e),
        None => Ok(facts),
    }
}

/// CPU 0's MSRs: a dump's [`DUMP_MSRS`], or the msr driver's file (or why neither).
enum Msrs {
    Dumped(BTreeMap<u32, u64>),
    Device(Result<fs::File, String>),
}

impl Msrs {
    fn open(root: &Path) -> Result<Self, ReadError> {
        let machine = Machine::new(root);
        let file = format!("/{DUMP_MSRS}");
        let text = match fs::read_to_string(machine.path(&file)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::Device(machine.msr_file()));
            }
            Err(e) => return Err(machine.error(&file, e.to_string())),
        };
        let mut values = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let parsed = line.split_once(' ').and_then(|(number, value)| {
                Some((u32::try_from(parse_hex(number)?).ok()?, parse_hex(value)?))
            });
            let Some((number, value)) = parsed else {
                let problem = format!("line {}: not `NUMBER VALUE` in hexadecimal", i + 1);
                return Err(machine.error(&file, problem));
            };
            values.insert(number, value);
        }
        Ok(Self::Dumped(values))
    }

    fn read(&self, number: u32) -> Result<u64, String> {
        match self {
            Self::Dumped(values) => values
                .get(&number)
                .copied()
                .ok_or_else(|| format!("{DUMP_MSRS}: no MSR {number:#x} (the dumped machine's msr module was not loaded?)")),
            Self::Device(file) => {
                let file = file.as_ref().map_err(Clone::clone)?;
                let mut value = [0u8; 8];
                file.read_exact_at(&mut value, u64::from(number))
                    .map_err(|e| format!("MSR {number:#x} through /dev/cpu/0/msr: {e}"))?;
                Ok(u64::from_le_bytes(value))
            }
        }
    }
}

/// The machine `machine` reads, with CPU 0's MSRs from `msr` (an MSR number to its value, or
/// why it could not be read).
fn read_machine(
    machine: &Machine<'_>,
    msr: impl FnMut(u32) -> Result<u64, String>,
) -> Result<Facts, ReadError> {
    let (cpus, cpu_flags) = parse_cpuinfo(&machine.text("/proc/cpuinfo")?)
        .map_err(|problem| machine.error("/proc/cpuinfo", problem))?;
    let memory = machine.memmap()?;
    let madt_bytes = machine.bytes("/sys/firmware/acpi/tables/APIC")?;
    let madt = Madt::parse(&madt_bytes)
        .map_err(|e: MadtError| machine.error("/sys/firmware/acpi/tables/APIC", e.to_string()))?;
    let interrupts = machine.text("/proc/interrupts")?;
    let lines = parse_interrupts(&interrupts, &madt)
        .map_err(|problem| machine.error("/proc/interrupts", problem))?;
    let mut pci = machine.pci()?;
    let message_irqs = message_signalled_irqs(&interrupts);
    for function in &mut pci {
        if function.irq.is_some_and(|irq| message_irqs.contains(&irq)) {
            function.irq = None;
            function.message_signalled = true;
        }
    }
    let ports = match machine.optional_text("/proc/ioports") {
        Some(text) => {
            parse_ioports(&text).map_err(|problem| machine.error("/proc/ioports", problem))?
        }
        None => Vec::new(),
    };
    let (vmx, vmx_unknown) = match crate::vmx::read(msr) {
        Ok(vmx) => (Some(vmx), None),
        Err(why) => (None, Some(why)),
    };
    let cmdline = machine
        .optional_text("/proc/cmdline")
        .unwrap_or_default()
        .trim()
        .to_string();
    let console = machine
        .optional_text("/proc/consoles")
        .and_then(|text| serial_console(&text))
        .or_else(|| console_from_cmdline(&cmdline));
    Ok(Facts {
        cpus,
        cpu_flags,
        memory,
        has_mcfg: machine.exists("/sys/firmware/acpi/tables/MCFG"),
        has_dmar: machine.exists("/sys/firmware/acpi/tables/DMAR"),
        madt,
        lines,
        ports,
        pci,
        serial: machine.serial()?,
        vmx,
        vmx_unknown,
        cmdline,
        console,
        hostname: machine
            .optional_text("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string(),
    })
}

impl Facts {
    /// The CPU Linux calls `linux`.
    pub fn cpu(&self, linux: u32) -> Option<&Cpu> {
        self.cpus.iter().find(|c| c.linux == linux)
    }

    /// The GSI (IOAPIC pin) of Linux's IRQ `irq`, as sysfs gives it for serial ports and PCI
    /// functions: the pin `/proc/interrupts` shows it on when it has a handler; otherwise, below
    /// 16, an ISA IRQ through the MADT's overrides, and from 16 on the GSI itself (how x86 Linux
    /// numbers IOAPIC lines unless it renumbered them, which `/proc/interrupts` would show).
    pub fn gsi_of_irq(&self, irq: u32) -> u32 {
        match self.lines.iter().find(|l| l.irq == irq) {
            Some(line) => line.gsi,
            None if irq < 16 => self.madt.gsi_of_isa_irq(irq as u8),
            None => irq,
        }
    }

    /// Whether every CPU has `flag` in `/proc/cpuinfo`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.cpu_flags.contains(flag)
    }
}

/// A machine's files under a root, and the dump they are copied into as they are read.
struct Machine<'a> {
    root: &'a Path,
    dump: Option<Dump<'a>>,
}

/// Where a dump goes, and the first write that failed there.
struct Dump<'a> {
    dir: &'a Path,
    failed: RefCell<Option<ReadError>>,
}

impl<'a> Machine<'a> {
    fn new(root: &'a Path) -> Self {
        Self { root, dump: None }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.root.join(file.trim_start_matches('/'))
    }

    fn error(&self, file: &str, problem: impl Into<String>) -> ReadError {
        ReadError {
            file: file.to_string(),
            problem: problem.into(),
        }
    }

    /// Writes `file`'s copy into the dump with `write` (its directory made first); the first
    /// failure is kept for [`dump`] to return.
    fn record(&self, file: &str, write: impl FnOnce(&Path) -> std::io::Result<()>) {
        let Some(dump) = &self.dump else {
            return;
        };
        let path = dump.dir.join(file.trim_start_matches('/'));
        let written = match path.parent() {
            Some(dir) => fs::create_dir_all(dir).and_then(|()| write(&path)),
            None => write(&path),
        };
        if let Err(e) = written {
            dump.failed.borrow_mut().get_or_insert_with(|| ReadError {
                file: path.display().to_string(),
                problem: format!("cannot write the dump: {e}"),
            });
        }
    }

    fn exists(&self, file: &str) -> bool {
        let exists = self.path(file).exists();
        if exists {
            // Its contents where they can be read (ACPI tables need root), else an empty file:
            // the dump says it exists either way. Read only when dumping.
            self.record(file, |path| {
                fs::write(path, fs::read(self.path(file)).unwrap_or_default())
            });
        }
        exists
    }

    fn bytes(&self, file: &str) -> Result<Vec<u8>, ReadError> {
        let bytes = fs::read(self.path(file)).map_err(|e| self.error(file, e.to_string()))?;
        self.record(file, |path| fs::write(path, &bytes));
        Ok(bytes)
    }

    fn text(&self, file: &str) -> Result<String, ReadError> {
        let text =
            fs::read_to_string(self.path(file)).map_err(|e| self.error(file, e.to_string()))?;
        self.record(file, |path| fs::write(path, &text));
        Ok(text)
    }

    fn optional_text(&self, file: &str) -> Option<String> {
        self.text(file).ok()
    }

    /// Where the symbolic link `file` points, if it is one (a PCI function's `driver`).
    fn link(&self, file: &str) -> Option<PathBuf> {
        let target = fs::read_link(self.path(file)).ok()?;
        self.record(file, |path| {
            // A link left by an earlier dump into the same directory is replaced.
            match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => std::os::unix::fs::symlink(&target, path),
            }
        });
        Some(target)
    }

    /// Entries of a directory, sorted by name; none if it does not exist.
    fn entries(&self, dir: &str) -> Result<Vec<String>, ReadError> {
        let read = match fs::read_dir(self.path(dir)) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(dir, e.to_string())),
        };
        let mut names = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| self.error(dir, e.to_string()))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        // The directory itself, so that an empty one reads as empty (not absent) in the dump.
        self.record(dir, |path| fs::create_dir_all(path));
        Ok(names)
    }

    fn memmap(&self) -> Result<Vec<MemoryRange>, ReadError> {
        const DIR: &str = "/sys/firmware/memmap";
        let mut ranges = Vec::new();
        for entry in self.entries(DIR)? {
            let field = |name: &str| self.text(&format!("{DIR}/{entry}/{name}"));
            let number = |name: &str| {
                let text = field(name)?;
                parse_hex(text.trim())
                    .ok_or_else(|| self.error(&format!("{DIR}/{entry}/{name}"), "not a number"))
            };
            let (start, last) = (number("start")?, number("end")?);
            if last < start {
                return Err(self.error(&format!("{DIR}/{entry}"), "ends before it starts"));
            }
            ranges.push(MemoryRange {
                start,
                end: last.saturating_add(1),
                kind: field("type")?.trim().to_string(),
            });
        }
        if ranges.is_empty() {
            return Err(self.error(
                DIR,
                "no firmware memory map (a kernel built without CONFIG_FIRMWARE_MEMMAP?)",
            ));
        }
        ranges.sort_by_key(|r| r.start);
        Ok(ranges)
    }

    fn pci(&self) -> Result<Vec<PciFunction>, ReadError> {
        const DIR: &str = "/sys/bus/pci/devices";
        let mut functions = Vec::new();
        for entry in self.entries(DIR)? {
            let file = |name: &str| format!("{DIR}/{entry}/{name}");
            // Segment 0 only: the config names "BB:DD.F".
            let Some(bdf) = entry.strip_prefix("0000:") else {
                continue;
            };
            let hex = |name: &str| -> Result<u64, ReadError> {
                let text = self.text(&file(name))?;
                parse_hex(text.trim()).ok_or_else(|| self.error(&file(name), "not a number"))
            };
            let irq = self
                .optional_text(&file("irq"))
                .and_then(|t| t.trim().parse::<u32>().ok())
                .filter(|&irq| irq != 0);
            let driver = self
                .link(&file("driver"))
                .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()));
            let class = hex("class")? as u32;
            let buses = if class >> 8 == 0x0604 {
                // Bridge header: secondary and subordinate bus numbers at 0x19 and 0x1a.
                self.bytes(&file("config"))
                    .ok()
                    .filter(|config| config.len() > 0x1a)
                    .map(|config| (config[0x19], config[0x1a]))
            } else {
                None
            };
            functions.push(PciFunction {
                bdf: bdf.to_string(),
                vendor: hex("vendor")? as u16,
                device: hex("device")? as u16,
                class,
                irq,
                message_signalled: false,
                driver,
                buses,
            });
        }
        Ok(functions)
    }

    fn serial(&self) -> Result<Vec<SerialPort>, ReadError> {
        const DIR: &str = "/sys/class/tty";
        let mut ports = Vec::new();
        for name in self.entries(DIR)? {
            if !name.starts_with("ttyS") {
                continue;
            }
            let field = |f: &str| self.optional_text(&format!("{DIR}/{name}/{f}"));
            // Type 0: no UART answers there.
            if field("type").is_some_and(|t| t.trim() == "0") {
                continue;
            }
            let port = field("port").and_then(|t| parse_hex(t.trim()));
            let irq = field("irq").and_then(|t| t.trim().parse::<u32>().ok());
            if let (Some(port), Some(irq)) = (port, irq)
                && port != 0
                && port <= 0xfff8
            {
                ports.push(SerialPort {
                    name,
                    port: port as u16,
                    irq,
                });
            }
        }
        ports.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ports)
    }

    /// CPU 0's MSRs through the msr driver's file (read at the MSR's number as offset).
    fn msr_file(&self) -> Result<fs::File, String> {
        fs::File::open(self.path("/dev/cpu/0/msr")).map_err(|e| {
            format!("/dev/cpu/0/msr: {e} (load the msr module with `modprobe msr` and run as root)")
        })
    }
}

fn parse_hex(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    u64::from_str_radix(digits, 16).ok()
}

/// `/proc/cpuinfo`: one block per online CPU.
pub fn parse_cpuinfo(text: &str) -> Result<(Vec<Cpu>, BTreeSet<String>), String> {
    let mut cpus = Vec::new();
    let mut flags: Option<BTreeSet<String>> = None;
    for (index, block) in text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .enumerate()
    {
        let field = |key: &str| {
            block.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let number = |key: &str| -> Result<u32, String> {
            field(key)
                .ok_or_else(|| format!("CPU block {index} has no `{key}`"))?
                .parse()
                .map_err(|_| format!("CPU block {index}: `{key}` is not a number"))
        };
        let cpu = Cpu {
            linux: number("processor")?,
            apic_id: number("apicid")?,
            // Missing on single-core machines' kernels without SMP topology: one package.
            package: number("physical id").unwrap_or(0),
            core: number("core id").unwrap_or(index as u32),
        };
        let these: BTreeSet<String> = field("flags")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        flags = Some(match flags {
            None => these,
            Some(all) => all.intersection(&these).cloned().collect(),
        });
        cpus.push(cpu);
    }
    if cpus.is_empty() {
        return Err("no CPU".into());
    }
    Ok((cpus, flags.unwrap_or_default()))
}

/// `/proc/interrupts`: the IOAPIC lines. The hardware IRQ Linux shows for an IOAPIC line is
/// the pin on its chip; with one IOAPIC (GSI base 0) that is the GSI, and on a machine with
/// several, Linux numbers IOAPIC IRQs from 16 on by GSI, so the IRQ is the GSI.
pub fn parse_interrupts(text: &str, madt: &Madt) -> Result<Vec<IoApicLine>, String> {
    let mut lines = Vec::new();
    for (irq, chip, detail) in interrupt_rows(text)? {
        if !chip.ends_with("IO-APIC") {
            continue;
        }
        let (hwirq, mode) = detail
            .first()
            .and_then(|w| w.split_once('-'))
            .ok_or_else(|| format!("IRQ {irq}: no `PIN-mode` after {chip}"))?;
        let pin: u32 = hwirq
            .parse()
            .map_err(|_| format!("IRQ {irq}: pin {hwirq:?} is not a number"))?;
        let gsi = if madt.ioapics.len() > 1 && irq >= 16 {
            irq
        } else {
            pin
        };
        let names = detail[1..]
            .join(" ")
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        lines.push(IoApicLine {
            irq,
            gsi,
            level: mode == "fasteoi" || mode == "level",
            names,
        });
    }
    Ok(lines)
}

/// `/proc/interrupts`: the IRQs whose chip is message-signalled (`PCI-MSI`, `IR-PCI-MSI`,
/// `PCI-MSIX-...`): no IOAPIC pin. None for a file without its header.
pub fn message_signalled_irqs(text: &str) -> BTreeSet<u32> {
    interrupt_rows(text)
        .map(|rows| {
            rows.filter(|(_, chip, _)| chip.contains("MSI"))
                .map(|(irq, _, _)| irq)
                .collect()
        })
        .unwrap_or_default()
}

/// `/proc/interrupts`' numbered rows: the IRQ, its chip, and the words after the chip (the
/// per-CPU counts skipped, one for each CPU the header names). The rows without a number
/// (NMI, LOC, ...) and without a chip are left out.
fn interrupt_rows(text: &str) -> Result<impl Iterator<Item = (u32, &str, Vec<&str>)>, String> {
    let mut rows = text.lines();
    let cpus = rows
        .next()
        .ok_or("empty")?
        .split_whitespace()
        .filter(|w| w.starts_with("CPU"))
        .count();
    Ok(rows.filter_map(move |row| {
        let mut words = row.split_whitespace();
        let irq = words.next()?.strip_suffix(':')?.parse::<u32>().ok()?;
        let mut rest = words.skip(cpus);
        let chip = rest.next()?;
        Some((irq, chip, rest.collect()))
    }))
}

/// `/proc/ioports`: `start-last : name`, nested by indentation.
pub fn parse_ioports(text: &str) -> Result<Vec<PortRange>, String> {
    let mut ranges = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (span, name) = line
            .trim()
            .split_once(" : ")
            .ok_or_else(|| format!("line {line:?} is not `start-end : name`"))?;
        let (start, last) = span
            .split_once('-')
            .ok_or_else(|| format!("line {line:?} has no range"))?;
        let port = |t: &str| {
            u16::from_str_radix(t, 16).map_err(|_| format!("line {line:?}: {t:?} is not a port"))
        };
        ranges.push(PortRange {
            start: port(start)?,
            last: port(last)?,
            name: name.trim().to_string(),
        });
    }
    Ok(ranges)
}

/// The first serial console of `/proc/consoles` (`ttyS1 -W- (EC p a) 4:65`).
fn serial_console(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|name| name.starts_with("ttyS"))
        .map(str::to_string)
}

/// The last `console=ttySN...` of a command line (the one Linux makes /dev/console).
fn console_from_cmdline(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .rev()
        .filter_map(|w| w.strip_prefix("console="))
        .filter_map(|c| c.split(',').next())
        .find(|c| c.starts_with("ttyS"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_give_the_ioapic_lines_with_their_handlers() {
        let text = "           CPU0       CPU1
  0:         45          0   IO-APIC   2-edge      timer
  1:          9          0   IO-APIC   1-edge      i8042
  3:        300          0   IO-APIC   3-edge      ttyS1
 14:          0          0   IO-APIC  14-edge      ata_piix
 16:        120          0   IO-APIC  16-fasteoi   ehci_hcd:usb1, eth1
 24:          0          0   PCI-MSI 512000-edge      ahci[0000:00:1f.2]
NMI:          0          0   Non-maskable interrupts
";
        let lines = parse_interrupts(text, &Madt::default()).unwrap();
        let gsis: Vec<u32> = lines.iter().map(|l| l.gsi).collect();
        assert_eq!(gsis, [2, 1, 3, 14, 16]);
        assert!(lines[4].level && !lines[0].level);
        assert_eq!(lines[4].names, ["ehci_hcd:usb1", "eth1"]);
        assert_eq!(lines[0].irq, 0);
        assert_eq!(message_signalled_irqs(text), BTreeSet::from([24]));
        let remapped = "            CPU0\n \
            122:          7   IR-PCI-MSI 327680-edge      xhci_hcd\n \
            123:          0  PCI-MSIX-0000:00:1f.6 0-edge  eno1\n \
            NMI:          0   Non-maskable interrupts\n";
        assert_eq!(message_signalled_irqs(remapped), BTreeSet::from([122, 123]));
    }

    #[test]
    fn ioports_keep_their_nesting_names() {
        let text = "0000-0cf7 : PCI Bus 0000:00\n  0020-0021 : pic1\n  0070-0071 : rtc0\nb000-b03f : 0000:00:01.3\n  b000-b003 : ACPI PM1a_EVT_BLK\n";
        let ports = parse_ioports(text).unwrap();
        assert_eq!(ports.len(), 5);
        assert_eq!(
            ports[4],
            PortRange {
                start: 0xb000,
                last: 0xb003,
                name: "ACPI PM1a_EVT_BLK".into()
            }
        );
        assert!(parse_ioports("garbage").is_err());
        assert!(parse_ioports("zz-0001 : x").is_err());
    }

    #[test]
    fn cpuinfo_gives_apic_ids_cores_and_common_flags() {
        let text = "processor\t: 0\nphysical id\t: 0\ncore id\t\t: 0\napicid\t\t: 0\nflags\t\t: fpu vmx x2apic\n\nprocessor\t: 1\nphysical id\t: 0\ncore id\t\t: 0\napicid\t\t: 1\nflags\t\t: fpu vmx\n\n";
        let (cpus, flags) = parse_cpuinfo(text).unwrap();
        assert_eq!(cpus[1].apic_id, 1);
        assert_eq!(cpus[0].core, cpus[1].core);
        assert!(flags.contains("vmx") && !flags.contains("x2apic"));
        assert!(parse_cpuinfo("").is_err());
        assert!(parse_cpuinfo("processor : 0\n").is_err(), "no apicid");
    }

    #[test]
    fn the_console_comes_from_consoles_or_the_command_line() {
        assert_eq!(
            serial_console("tty0 -WU (E p ) 4:1\nttyS1 -W- (EC p a) 4:65\n").as_deref(),
            Some("ttyS1")
        );
        assert_eq!(serial_console("tty0 -WU (E p ) 4:1\n"), None);
        assert_eq!(
            console_from_cmdline("root=/dev/sda1 console=tty0 console=ttyS0,115200n8").as_deref(),
            Some("ttyS0")
        );
    }
}
