//! From a machine's [`Facts`] and what the user asks for, the proposed config and what stands
//! in the way of a clean partitioning.
//!
//! The rules, each written into the config as a comment where it decided something:
//! - **CPUs**: Linux keeps the boot CPU's core; the RT partition gets whole cores, the last ones
//!   in Linux's order, never an SMT sibling of a Linux CPU (a request that would split a core
//!   is refused, naming the core).
//! - **Memory**: the hypervisor takes 127 MiB at 1 MiB (where GRUB loads it); the RT partition,
//!   then the shared region of the channels and the hypervisor's log region, are carved from
//!   the top of the highest RAM range below 4 GiB that holds them (2 MiB-aligned); Linux gets
//!   the RAM below 640 KiB and every other piece of RAM of at least 2 MiB.
//! - **Devices**: the RT partition gets the PCI functions and serial ports asked for, with their
//!   interrupt pins delivered to its first CPU and the ports of each UART; Linux gets every
//!   other PCI function but the host bridges (which the hypervisor shows it read-only) and the
//!   ISA bridge (whose interrupt router could steer interrupts onto RT pins), the IOAPIC pins
//!   its handlers and devices use, and the legacy platform ports it drives (PICs, PIT, RTC,
//!   ACPI registers).
//! - **Consoles**: Linux keeps its serial console; the hypervisor and the RT kernel share
//!   another of COM1 and COM2 when there is one.
//! - **Channels**: the standard set (`telemetry`, `commands`, `rt-status`, `rt-log`, `hv-log`).
//!
//! The result is checked as the hypervisor checks it (valid; its CPUs and RAM on this machine),
//! so a proposal that comes out of [`propose`] is one the hypervisor accepts on this machine.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_config::host::load_str;
use bulkhead_config::platform::{Platform, check_fit};
use bulkhead_config::{Config, Region};

use crate::facts::{Facts, PciFunction, SerialPort};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
/// The hypervisor's region: GRUB loads its image at 1 MiB.
const HYPERVISOR_BASE: u64 = MIB;
const HYPERVISOR_SIZE: u64 = 127 * MIB;
/// The channels' shared region and the hypervisor's log region.
const SHARED_SIZE: u64 = 2 * MIB;
const HVLOG_SIZE: u64 = 256 * KIB;
/// Low memory Linux may have: below the EBDA and the VGA window.
const LOW_MEMORY_END: u64 = 0xa_0000;
/// The smallest piece of RAM worth a Linux region (the low memory excepted).
const SMALLEST_LINUX_REGION: u64 = 2 * MIB;
/// The config's limits.
const MAX_RT_CPUS: usize = 8;
const MAX_MEMORY_REGIONS: usize = 16;
const MAX_PINS: usize = 64;
const MAX_PCI: usize = 32;
const HIGHEST_PIN: u32 = 239;
/// Where the hypervisor can reach memory it writes (the RT image, the log region).
const HYPERVISOR_REACH: u64 = 4 * GIB;

/// What the user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Logical CPUs for the RT partition (whole cores).
    pub rt_cpus: u32,
    /// PCI functions for the RT partition (`BB:DD.F`).
    pub rt_devices: Vec<String>,
    /// Serial ports for the RT partition (`ttyS2`).
    pub rt_serial: Vec<String>,
    /// RAM for the RT partition, in MiB.
    pub rt_memory_mib: u64,
    /// The machine's name in the config; the host name when `None`.
    pub name: Option<String>,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            rt_cpus: 1,
            rt_devices: Vec::new(),
            rt_serial: Vec::new(),
            rt_memory_mib: 128,
            name: None,
        }
    }
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The partitioning would not work, or would not be watertight, until this is fixed.
    Blocker,
    /// It works, with a weakness the user should know.
    Warning,
    /// Worth knowing.
    Note,
}

/// Something the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub text: String,
}

/// The proposed config and what the probe found.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// The config file's text.
    pub toml: String,
    /// Blockers first, then warnings, then notes.
    pub findings: Vec<Finding>,
}

impl Proposal {
    /// Whether anything blocks a clean partitioning.
    pub fn blocked(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Blocker)
    }
}

/// Proposes a config for the machine `facts` describes. Fails, naming the option, for a
/// request the machine cannot meet (a device it lacks, more CPUs than it can give, a core's
/// SMT siblings split), and for a machine without room for the partitions.
pub fn propose(facts: &Facts, request: &Request) -> Result<Proposal, String> {
    let mut findings = Vec::new();
    let mut out = Toml::default();
    let cpus = split_cpus(facts, request)?;
    let memory = carve_memory(facts, request)?;
    let devices = assign_devices(facts, request, &cpus, &mut findings)?;
    judge_machine(facts, &mut findings);
    findings.sort_by_key(|f| f.severity);

    let name = machine_name(request.name.as_deref().unwrap_or(&facts.hostname));
    out.line(&format!(
        "# Bulkhead config proposed by `bulkhead probe` for the machine \"{}\".",
        facts.hostname
    ));
    out.line("# Review every section before installing it; each choice says where it came from.");
    out.line("# Reference: configs/README.md.");
    for f in &findings {
        out.line(&format!("# {}: {}", f.severity.word(), f.text));
    }
    out.blank();
    out.line("[machine]");
    out.line(&format!("name = \"{name}\""));
    out.blank();
    out.line("[hypervisor]");
    out.line(
        "# GRUB loads the hypervisor's image at 1 MiB; it keeps copies of the boot modules here.",
    );
    out.line(&format!(
        "memory = {}",
        region(HYPERVISOR_BASE, HYPERVISOR_SIZE)
    ));
    out.blank();
    out.line("[console]");
    out.line(&devices.console_comment);
    out.line(&format!("hypervisor = \"{}\"", devices.hv_console));
    out.line(&format!("rt = \"{}\"", devices.hv_console));
    out.line(&format!("linux = \"{}\"", devices.linux_console));
    out.blank();

    out.line("[partitions.linux]");
    out.line(&cpus.linux_comment);
    out.line(&format!("cpus = {}", list(&cpus.linux)));
    out.line("# System RAM from /sys/firmware/memmap, less what the hypervisor and the RT partition take.");
    out.line("memory = [");
    for &(base, size) in &memory.linux {
        out.line(&format!("    {},", region(base, size)));
    }
    out.line("]");
    out.line("# IOAPIC pins of Linux's interrupt handlers (/proc/interrupts) and devices.");
    out.line("ioapic_pins = [");
    for (gsi, why) in &devices.linux_pins {
        out.line(&format!("    {gsi}, # {why}"));
    }
    out.line("]");
    out.line("# The legacy platform devices Linux drives and its PCI functions' I/O registers (/proc/ioports), its IDE channels' fixed ports.");
    out.line("io_ports = [");
    for (base, count, why) in &devices.linux_ports {
        out.line(&format!(
            "    {{ base = {base:#x}, count = {count:#x} }}, # {why}"
        ));
    }
    out.line("]");
    out.line("# Every PCI function but the host and ISA bridges and the RT partition's (/sys/bus/pci/devices).");
    out.line("pci_devices = [");
    for (bdf, why) in &devices.linux_pci {
        out.line(&format!("    \"{bdf}\", # {why}"));
    }
    out.line("]");
    for left in &devices.left_out {
        out.line(&format!("# Left out: {left}"));
    }
    out.blank();

    out.line("[partitions.rt]");
    out.line(&cpus.rt_comment);
    out.line(&format!("cpus = {}", list(&cpus.rt)));
    out.line(&format!(
        "memory = [{}] # {} MiB at the top of RAM below 4 GiB",
        region(memory.rt, request.rt_memory_mib * MIB),
        request.rt_memory_mib
    ));
    if !devices.rt_pins.is_empty() {
        out.line("ioapic_pins = [");
        for pin in &devices.rt_pins {
            out.line(&format!("    {pin},"));
        }
        out.line("]");
    }
    if !devices.rt_ports.is_empty() {
        out.line("io_ports = [");
        for (base, count, why) in &devices.rt_ports {
            out.line(&format!(
                "    {{ base = {base:#x}, count = {count} }}, # {why}"
            ));
        }
        out.line("]");
    }
    if !devices.rt_pci.is_empty() {
        out.line("pci_devices = [");
        // The pin Linux found (ACPI's routing, which the hypervisor does not read; the
        // function's interrupt line register may hold the PIC-mode IRQ instead).
        for (bdf, intx, why) in &devices.rt_pci {
            match intx {
                Some(gsi) => out.line(&format!(
                    "    {{ function = \"{bdf}\", intx = {gsi} }}, # {why}"
                )),
                None => out.line(&format!("    \"{bdf}\", # {why}")),
            }
        }
        out.line("]");
    }
    out.blank();

    out.line("[linux]");
    out.line("# The installed kernel and initrd, under these module names on GRUB's lines.");
    out.line("kernel = \"vmlinuz\"");
    out.line("initrd = \"initrd.img\"");
    out.line("# This Linux's own command line (/proc/cmdline), less the boot loader's words.");
    out.line(&format!("cmdline = \"{}\"", linux_cmdline(&facts.cmdline)));
    out.line("on_exit = \"stop\" # \"restart\" reloads Linux after a crash or reboot");
    out.blank();
    out.line("[rt]");
    out.line("image = \"rt.elf\"");
    out.blank();
    out.line("[[shared]]");
    out.line("# The channels between the partitions.");
    out.line("name = \"shm0\"");
    out.line(&format!("base = {:#x}", memory.shared));
    out.line("size = \"2 MiB\"");
    out.blank();
    out.line("[[shared]]");
    out.line("# The hypervisor's log channel alone (the RT partition does not map it).");
    out.line("name = \"hvlog\"");
    out.line(&format!("base = {:#x}", memory.hvlog));
    out.line("size = \"256 KiB\"");
    for (name, direction, size, slot, notify) in CHANNELS {
        out.blank();
        out.line("[[channels]]");
        out.line(&format!("name = \"{name}\""));
        let region = if direction == "hypervisor-to-linux" {
            "hvlog"
        } else {
            "shm0"
        };
        out.line(&format!("region = \"{region}\""));
        out.line(&format!("direction = \"{direction}\""));
        out.line(&format!("size = \"{size}\""));
        out.line(&format!("slot_size = {slot}"));
        out.line(&format!("notify = \"{notify}\""));
    }

    check(facts, &out.text)?;
    Ok(Proposal {
        toml: out.text,
        findings,
    })
}

/// The standard channels: name, direction, size, slot size, notification.
const CHANNELS: [(&str, &str, &str, u32, &str); 5] = [
    ("telemetry", "rt-to-linux", "64 KiB", 256, "doorbell"),
    ("commands", "linux-to-rt", "64 KiB", 256, "doorbell"),
    ("rt-status", "rt-to-linux", "64 KiB", 2048, "poll"),
    ("rt-log", "rt-to-linux", "256 KiB", 256, "poll"),
    ("hv-log", "hypervisor-to-linux", "256 KiB", 1024, "poll"),
];

impl Severity {
    /// How a finding line starts.
    pub fn word(self) -> &'static str {
        match self {
            Severity::Blocker => "BLOCKER",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

#[derive(Default)]
struct Toml {
    text: String,
}

impl Toml {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn blank(&mut self) {
        self.text.push('\n');
    }
}

fn list(values: &[u32]) -> String {
    let items: Vec<String> = values.iter().map(u32::to_string).collect();
    format!("[{}]", items.join(", "))
}

fn region(base: u64, size: u64) -> String {
    format!("{{ base = {base:#x}, size = {} }}", size_text(size))
}

fn size_text(size: u64) -> String {
    if size.is_multiple_of(GIB) {
        format!("\"{} GiB\"", size / GIB)
    } else if size.is_multiple_of(MIB) {
        format!("\"{} MiB\"", size / MIB)
    } else if size.is_multiple_of(KIB) {
        format!("\"{} KiB\"", size / KIB)
    } else {
        format!("{size:#x}")
    }
}

/// A config name from a host name: its allowed characters, at most 32.
fn machine_name(hostname: &str) -> String {
    let name: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(32)
        .collect();
    if name.is_empty() {
        "this-machine".into()
    } else {
        name
    }
}

/// Linux's command line for the partition: this one's, less what the boot loader adds and
/// what Bulkhead itself sets.
fn linux_cmdline(cmdline: &str) -> String {
    cmdline
        .split_whitespace()
        .filter(|w| !w.starts_with("BOOT_IMAGE=") && !w.starts_with("initrd="))
        .filter(|w| !w.starts_with("bulkhead."))
        .filter(|w| {
            w.chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ----- CPUs ----------------------------------------------------------------------------------

struct CpuSplit {
    linux: Vec<u32>,
    rt: Vec<u32>,
    linux_comment: String,
    rt_comment: String,
}

fn split_cpus(facts: &Facts, request: &Request) -> Result<CpuSplit, String> {
    // Cores in the order Linux numbers their first CPU.
    let mut cores: Vec<((u32, u32), Vec<&crate::facts::Cpu>)> = Vec::new();
    let mut ordered: Vec<&crate::facts::Cpu> = facts.cpus.iter().collect();
    ordered.sort_by_key(|c| c.linux);
    for cpu in ordered {
        let key = (cpu.package, cpu.core);
        match cores.iter_mut().find(|(k, _)| *k == key) {
            Some((_, threads)) => threads.push(cpu),
            None => cores.push((key, vec![cpu])),
        }
    }
    let boot = facts
        .cpu(0)
        .map(|c| (c.package, c.core))
        .ok_or("/proc/cpuinfo has no CPU 0")?;
    let wanted = request.rt_cpus as usize;
    if wanted == 0 {
        return Err("--rt-cpus: the RT partition needs at least one CPU".into());
    }
    if wanted > MAX_RT_CPUS {
        return Err(format!(
            "--rt-cpus {wanted}: the RT partition takes at most {MAX_RT_CPUS} CPUs"
        ));
    }
    let mut rt: Vec<&crate::facts::Cpu> = Vec::new();
    let mut rt_cores = Vec::new();
    for (key, threads) in cores.iter().rev().filter(|(k, _)| *k != boot) {
        if rt.len() >= wanted {
            break;
        }
        if rt.len() + threads.len() > wanted {
            let siblings: Vec<String> = threads.iter().map(|c| c.linux.to_string()).collect();
            return Err(format!(
                "--rt-cpus {wanted}: the RT partition gets whole cores, and core {} of package \
                 {} has {} SMT siblings (Linux CPUs {}): ask for a number that takes whole cores, \
                 or turn SMT (hyper-threading) off in the firmware",
                key.1,
                key.0,
                threads.len(),
                siblings.join(", ")
            ));
        }
        rt.extend(threads.iter().copied());
        rt_cores.push(*key);
    }
    if rt.len() < wanted {
        let boot_threads = cores
            .iter()
            .find(|(k, _)| *k == boot)
            .map_or(1, |(_, t)| t.len());
        return Err(format!(
            "--rt-cpus {wanted}: this machine has {} CPUs, and Linux keeps the boot CPU's core \
             ({boot_threads} CPUs); at most {} can go to the RT partition",
            facts.cpus.len(),
            facts.cpus.len() - boot_threads
        ));
    }
    rt.sort_by_key(|c| c.linux);
    let linux: Vec<&crate::facts::Cpu> = facts
        .cpus
        .iter()
        .filter(|c| !rt.iter().any(|r| r.apic_id == c.apic_id))
        .collect();
    let describe = |cpus: &[&crate::facts::Cpu]| {
        cpus.iter()
            .map(|c| format!("CPU {} (core {})", c.linux, c.core))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let smt = cores.iter().any(|(_, t)| t.len() > 1);
    Ok(CpuSplit {
        linux: linux.iter().map(|c| c.apic_id).collect(),
        rt: rt.iter().map(|c| c.apic_id).collect(),
        linux_comment: format!(
            "# APIC IDs (/proc/cpuinfo) of Linux's {}: the boot CPU's core and every core not given to the RT partition.",
            describe(&linux)
        ),
        rt_comment: format!(
            "# APIC IDs of {}: the last {}{}.",
            describe(&rt),
            match rt_cores.len() {
                1 => "whole core".to_string(),
                n => format!("{n} whole cores"),
            },
            if smt { ", with their SMT siblings" } else { "" }
        ),
    })
}

// ----- memory --------------------------------------------------------------------------------

struct MemoryPlan {
    linux: Vec<(u64, u64)>,
    rt: u64,
    shared: u64,
    hvlog: u64,
}

fn carve_memory(facts: &Facts, request: &Request) -> Result<MemoryPlan, String> {
    let page_down = |x: u64| x & !0xfff;
    let page_up = |x: u64| x.saturating_add(0xfff) & !0xfff;
    let ram: Vec<(u64, u64)> = facts
        .memory
        .iter()
        .filter(|r| r.is_ram())
        .map(|r| (page_up(r.start), page_down(r.end)))
        .filter(|(s, e)| e > s)
        .collect();
    let hv_end = HYPERVISOR_BASE + HYPERVISOR_SIZE;
    if !ram
        .iter()
        .any(|&(s, e)| s <= HYPERVISOR_BASE && e >= hv_end)
    {
        return Err(format!(
            "the hypervisor needs RAM from 1 MiB to {} MiB (where GRUB loads it), and the \
             firmware memory map has no such range",
            hv_end / MIB
        ));
    }
    let rt_size = request
        .rt_memory_mib
        .checked_mul(MIB)
        .filter(|&s| s >= 4 * MIB)
        .ok_or("--rt-memory: at least 4 MiB")?;
    let block = rt_size + SHARED_SIZE + HVLOG_SIZE;
    const ALIGN: u64 = 2 * MIB;
    // The highest place below 4 GiB, above the hypervisor, where the block fits.
    let mut best: Option<u64> = None;
    for &(s, e) in &ram {
        let start = s.max(hv_end);
        let end = e.min(HYPERVISOR_REACH);
        if end <= start || end - start < block {
            continue;
        }
        let base = (end - block) & !(ALIGN - 1);
        if base >= start && best.is_none_or(|b| base > b) {
            best = Some(base);
        }
    }
    let rt = best.ok_or_else(|| {
        format!(
            "--rt-memory {}: no RAM range above {} MiB and below 4 GiB holds the RT partition \
             and the channels' {} KiB",
            request.rt_memory_mib,
            hv_end / MIB,
            (SHARED_SIZE + HVLOG_SIZE) / KIB
        )
    })?;
    let taken = [(HYPERVISOR_BASE, hv_end), (rt, rt + block)];
    let mut linux = Vec::new();
    for &(s, e) in &ram {
        if s < LOW_MEMORY_END {
            let end = e.min(LOW_MEMORY_END);
            if end > s {
                linux.push((s, end - s));
            }
        }
        // What is left of [max(s, 1 MiB), e) once the taken ranges are cut out.
        let mut pieces = vec![(s.max(MIB), e)];
        for &(ts, te) in &taken {
            pieces = pieces
                .into_iter()
                .flat_map(|(ps, pe)| {
                    let mut out = Vec::new();
                    if ps < ts.min(pe) {
                        out.push((ps, ts.min(pe)));
                    }
                    if te.max(ps) < pe {
                        out.push((te.max(ps), pe));
                    }
                    out
                })
                .collect();
        }
        for (ps, pe) in pieces {
            if pe > ps && pe - ps >= SMALLEST_LINUX_REGION {
                linux.push((ps, pe - ps));
            }
        }
    }
    linux.sort_unstable();
    linux.truncate(MAX_MEMORY_REGIONS);
    Ok(MemoryPlan {
        linux,
        rt,
        shared: rt + rt_size,
        hvlog: rt + rt_size + SHARED_SIZE,
    })
}

// ----- devices -------------------------------------------------------------------------------

struct DevicePlan {
    linux_pins: BTreeMap<u32, String>,
    linux_ports: Vec<(u16, u16, String)>,
    linux_pci: Vec<(String, String)>,
    left_out: Vec<String>,
    rt_pins: Vec<String>,
    rt_ports: Vec<(u16, u16, String)>,
    /// Each RT function, the IOAPIC pin its INTx arrives on (as Linux found it), and why.
    rt_pci: Vec<(String, Option<u32>, String)>,
    hv_console: &'static str,
    linux_console: &'static str,
    console_comment: String,
}

/// The config's name for a UART at `port`.
fn com_name(port: u16) -> Option<&'static str> {
    match port {
        0x3f8 => Some("com1"),
        0x2f8 => Some("com2"),
        _ => None,
    }
}

fn describe_pci(f: &PciFunction) -> String {
    format!(
        "[{:04x}:{:04x}] class {:06x}{}",
        f.vendor,
        f.device,
        f.class,
        f.driver
            .as_ref()
            .map_or(String::new(), |d| format!(", driver {d}"))
    )
}

fn assign_devices(
    facts: &Facts,
    request: &Request,
    cpus: &CpuSplit,
    findings: &mut Vec<Finding>,
) -> Result<DevicePlan, String> {
    let rt_cpu = cpus.rt[0];
    let mut rt_pins: BTreeMap<u32, (String, String)> = BTreeMap::new();
    let mut rt_ports = Vec::new();
    let mut rt_pci = Vec::new();

    // Serial ports asked for.
    let mut rt_serial: Vec<&SerialPort> = Vec::new();
    for name in &request.rt_serial {
        let port = facts
            .serial
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| {
                let present: Vec<&str> = facts.serial.iter().map(|p| p.name.as_str()).collect();
                format!(
                    "--rt-serial {name}: no such serial port on this machine (present: {})",
                    present.join(", ")
                )
            })?;
        if facts.console.as_deref() == Some(name.as_str()) {
            return Err(format!(
                "--rt-serial {name}: it is Linux's console; give Linux another console= first"
            ));
        }
        let gsi = facts.gsi_of_irq(port.irq);
        rt_ports.push((port.port, 8, format!("{name}'s registers")));
        rt_pins.insert(
            gsi,
            (
                format!("{{ pin = {gsi}, cpu = {rt_cpu} }}"),
                format!("{name} (IRQ {})", port.irq),
            ),
        );
        rt_serial.push(port);
    }

    // PCI functions asked for.
    let mut rt_functions: Vec<&PciFunction> = Vec::new();
    for wanted in &request.rt_devices {
        let bdf = wanted
            .strip_prefix("0000:")
            .unwrap_or(wanted)
            .to_ascii_lowercase();
        let f = facts.pci.iter().find(|f| f.bdf == bdf).ok_or_else(|| {
            format!("--rt-device {wanted}: no PCI function {bdf} on this machine")
        })?;
        if f.is_host_bridge() || f.is_bridge() {
            return Err(format!(
                "--rt-device {wanted}: {bdf} is a bridge, not a device the RT partition can drive"
            ));
        }
        let intx = f
            .irq
            .map(|irq| facts.gsi_of_irq(irq))
            .filter(|&g| g <= HIGHEST_PIN);
        if f.message_signalled {
            findings.push(Finding {
                severity: Severity::Warning,
                text: format!(
                    "{bdf} runs on MSI under Linux, so Linux does not show which IOAPIC pin its \
                     legacy interrupt (INTx) reaches, and the RT partition does not take MSI \
                     yet: the proposal gives it no interrupt pin (probe again with its Linux \
                     driver unbound, or add the pin by hand from the board's manual)"
                ),
            });
        }
        rt_pci.push((bdf.clone(), intx, describe_pci(f)));
        if let Some(gsi) = intx {
            rt_pins.insert(
                gsi,
                (
                    format!(
                        "{{ pin = {gsi}, cpu = {rt_cpu}, trigger = \"level\", polarity = \"low\" }}"
                    ),
                    format!("{bdf}'s INTx"),
                ),
            );
        }
        // The bridge in front of it, if Linux keeps it.
        if let Some(bridge) = facts.pci.iter().find(|b| {
            b.buses
                .is_some_and(|(sec, sub)| (sec..=sub).contains(&f.bus()))
        }) {
            findings.push(Finding {
                severity: Severity::Note,
                text: format!(
                    "{bdf} sits behind the bridge {}, which Linux keeps: the hypervisor keeps \
                     that bridge's routing (bus numbers, windows, forwarding, no secondary bus \
                     reset) as the firmware set it",
                    bridge.bdf
                ),
            });
        }
        rt_functions.push(f);
    }

    // A pin is one partition's: an RT pin that a Linux device or handler also uses blocks.
    let rt_names: BTreeSet<&str> = rt_serial.iter().map(|p| p.name.as_str()).collect();
    for (&gsi, (_, what)) in &rt_pins {
        let mut sharers: Vec<String> = facts
            .pci
            .iter()
            .filter(|f| {
                f.irq.map(|irq| facts.gsi_of_irq(irq)) == Some(gsi)
                    && !rt_functions.iter().any(|r| r.bdf == f.bdf)
            })
            .map(|f| format!("{} ({})", f.bdf, f.driver.as_deref().unwrap_or("no driver")))
            .collect();
        sharers.extend(
            facts
                .serial
                .iter()
                .filter(|p| facts.gsi_of_irq(p.irq) == gsi && !rt_names.contains(p.name.as_str()))
                .map(|p| p.name.clone()),
        );
        if !sharers.is_empty() {
            findings.push(Finding {
                severity: Severity::Blocker,
                text: format!(
                    "{what} is on IOAPIC pin {gsi}, which {} also use{}: a pin belongs to one \
                     partition, so Linux would lose those devices' interrupts (move the card to \
                     another slot, or disable the other device in the firmware)",
                    sharers.join(", "),
                    if sharers.len() == 1 { "s" } else { "" }
                ),
            });
        }
    }

    // Linux's PCI functions.
    let mut linux_pci = Vec::new();
    let mut left_out = Vec::new();
    for f in &facts.pci {
        if rt_functions.iter().any(|r| r.bdf == f.bdf) {
            continue;
        }
        if f.is_host_bridge() {
            left_out.push(format!(
                "{} {} (a host bridge: Linux reads it, the hypervisor keeps it)",
                f.bdf,
                describe_pci(f)
            ));
        } else if f.is_isa_bridge() {
            left_out.push(format!(
                "{} {} (the ISA bridge: its interrupt router could steer PCI interrupts onto \
                 the RT partition's pins; Linux routes by ACPI without it, and sees it as a \
                 placeholder so that it still finds the bridge's sibling functions)",
                f.bdf,
                describe_pci(f)
            ));
        } else {
            let mut why = describe_pci(f);
            if f.driver.is_none() && !f.is_bridge() {
                why.push_str(", no Linux driver bound now");
            }
            linux_pci.push((f.bdf.clone(), why));
        }
    }
    if linux_pci.len() > MAX_PCI {
        return Err(format!(
            "Linux has {} PCI functions, more than a partition's {MAX_PCI}",
            linux_pci.len()
        ));
    }

    // Consoles: Linux keeps its own; the hypervisor and the RT kernel take another of COM1, COM2.
    let linux_console_port = facts
        .console
        .as_ref()
        .and_then(|c| facts.serial.iter().find(|p| &p.name == c));
    let linux_console = linux_console_port
        .and_then(|p| com_name(p.port))
        .unwrap_or("none");
    if facts.console.is_some() && linux_console == "none" {
        findings.push(Finding {
            severity: Severity::Warning,
            text: format!(
                "Linux's console {} is not COM1 or COM2, the UARTs the config can name: Linux \
                 keeps its driver, but the hypervisor does not reserve that UART for it",
                facts.console.as_deref().unwrap_or("?")
            ),
        });
    }
    let hv_port = facts.serial.iter().find(|p| {
        com_name(p.port).is_some()
            && Some(p.name.as_str()) != facts.console.as_deref()
            && !rt_names.contains(p.name.as_str())
    });
    let hv_console = hv_port.and_then(|p| com_name(p.port)).unwrap_or("none");
    let console_comment = match hv_port {
        Some(p) => format!(
            "# Linux keeps its console ({}); the hypervisor and the RT kernel print without \
             interrupts and share {} ({}).",
            facts.console.as_deref().unwrap_or("none"),
            p.name,
            hv_console
        ),
        None => {
            findings.push(Finding {
                severity: Severity::Warning,
                text: "no second COM1/COM2 UART for the hypervisor and the RT kernel: their lines \
                       go only to their log channels (`bulkhead log`)"
                    .into(),
            });
            "# No free COM1/COM2 UART: the hypervisor's and the RT kernel's lines go to their log channels only.".into()
        }
    };

    // Linux's pins: its handlers', its devices' and its serial ports', less the RT ones.
    let mut linux_pins: BTreeMap<u32, String> = BTreeMap::new();
    for line in &facts.lines {
        linux_pins
            .entry(line.gsi)
            .or_insert_with(|| line.names.join(", "));
    }
    for (bdf, _) in &linux_pci {
        if let Some(f) = facts.pci.iter().find(|f| &f.bdf == bdf)
            && let Some(irq) = f.irq
        {
            linux_pins
                .entry(facts.gsi_of_irq(irq))
                .or_insert_with(|| format!("{bdf}'s INTx"));
        }
    }
    // An IDE controller in compatibility mode interrupts on ISA IRQs 14 and 15, whatever its
    // PCI interrupt pin (programming interface bits 0 and 2: the channels' native mode).
    for (bdf, _) in &linux_pci {
        if let Some(f) = facts.pci.iter().find(|f| &f.bdf == bdf)
            && f.class >> 8 == 0x0101
        {
            for (native_bit, irq) in [(0, 14u32), (2, 15)] {
                if f.class & (1 << native_bit) == 0 {
                    linux_pins
                        .entry(facts.gsi_of_irq(irq))
                        .or_insert_with(|| format!("{bdf}'s legacy IDE channel"));
                }
            }
        }
    }
    for p in &facts.serial {
        if !rt_names.contains(p.name.as_str()) && Some(p) != hv_port {
            linux_pins
                .entry(facts.gsi_of_irq(p.irq))
                .or_insert_with(|| p.name.clone());
        }
    }
    // The hypervisor's console UART prints by polling: its pin stays with nobody unless a
    // Linux device shares it.
    linux_pins.retain(|gsi, _| !rt_pins.contains_key(gsi) && *gsi <= HIGHEST_PIN);
    if let Some(p) = hv_port {
        let gsi = facts.gsi_of_irq(p.irq);
        if linux_pins.get(&gsi).is_some_and(|who| who == &p.name) {
            linux_pins.remove(&gsi);
        }
    }
    if linux_pins.len() > MAX_PINS {
        return Err(format!(
            "Linux uses {} IOAPIC pins, more than a partition's {MAX_PINS}",
            linux_pins.len()
        ));
    }

    let mut linux_ports = legacy_ports(facts, findings);
    linux_ports.extend(legacy_ide_ports(facts, &linux_pci));
    for port in function_ports(facts, &linux_pci) {
        let (base, count, _) = port;
        // A range the list already touches (an IDE command block, the ACPI registers inside
        // their function's range) stays as listed there.
        let end = u32::from(base) + u32::from(count);
        let touched = linux_ports
            .iter()
            .any(|&(b, c, _)| u32::from(b) < end && u32::from(base) < u32::from(b) + u32::from(c));
        if !touched {
            linux_ports.push(port);
        }
    }
    Ok(DevicePlan {
        linux_pins,
        linux_ports,
        linux_pci,
        left_out,
        rt_pins: rt_pins.into_values().map(|(pin, _)| pin).collect(),
        rt_ports,
        rt_pci,
        hv_console,
        linux_console,
        console_comment,
    })
}

/// The I/O ports `/proc/ioports` shows claimed by Linux's PCI functions (their I/O BARs, an
/// IDE controller's bus-master registers, a USB controller's): the hypervisor passes a
/// partition only the ports its config lists, a function's BARs included.
fn function_ports(facts: &Facts, linux_pci: &[(String, String)]) -> Vec<(u16, u16, String)> {
    let mut ports = Vec::new();
    for (bdf, _) in linux_pci {
        let name = format!("0000:{bdf}");
        for range in facts
            .ports
            .iter()
            .filter(|r| r.name == name && r.last >= r.start)
        {
            let count = range.last - range.start + 1;
            ports.push((range.start, count, format!("{bdf}'s I/O registers")));
        }
    }
    ports
}

/// The fixed ports of Linux's IDE controllers' channels in compatibility mode (programming
/// interface bits 0 and 2 clear: the channels' native mode off), which no BAR names: the
/// primary channel's command block at 0x1f0 and control register at 0x3f6, the secondary's at
/// 0x170 and 0x376 (the PCI IDE controller specification).
fn legacy_ide_ports(facts: &Facts, linux_pci: &[(String, String)]) -> Vec<(u16, u16, String)> {
    let mut ports = Vec::new();
    for (bdf, _) in linux_pci {
        let Some(f) = facts.pci.iter().find(|f| &f.bdf == bdf) else {
            continue;
        };
        if f.class >> 8 != 0x0101 {
            continue;
        }
        for (native_bit, channel, command, control) in
            [(0, "primary", 0x1f0, 0x3f6), (2, "secondary", 0x170, 0x376)]
        {
            if f.class & (1 << native_bit) == 0 {
                let name = |what: &str| format!("{bdf}'s {channel} IDE channel, {what}");
                ports.push((command, 8, name("commands")));
                ports.push((control, 1, name("control")));
            }
        }
    }
    ports
}

/// The legacy platform ports Linux drives, where `/proc/ioports` shows them.
fn legacy_ports(facts: &Facts, findings: &mut Vec<Finding>) -> Vec<(u16, u16, String)> {
    const LEGACY: [(u16, u16, &str); 7] = [
        (0x20, 2, "the first 8259 PIC"),
        (0x40, 4, "the PIT"),
        (0x61, 1, "the PIT's gate and speaker"),
        (0x70, 2, "the RTC and CMOS"),
        (0x80, 1, "the POST and I/O delay port"),
        (0xa0, 2, "the second 8259 PIC"),
        (0x4d0, 2, "the PICs' edge/level registers"),
    ];
    let known = facts.ports.iter().any(|r| r.last != 0);
    if !known {
        findings.push(Finding {
            severity: Severity::Warning,
            text: "/proc/ioports shows no ports (it does to root only): Linux's legacy ports are \
                   the usual PC ones, not read from this machine"
                .into(),
        });
    }
    let covered = |port: u16| {
        facts
            .ports
            .iter()
            .any(|r| r.start <= port && port <= r.last)
    };
    let mut ports: Vec<(u16, u16, String)> = LEGACY
        .iter()
        .filter(|(base, _, _)| !known || covered(*base) || *base == 0x80 || *base == 0x61)
        .map(|&(base, count, what)| (base, count, what.to_string()))
        .collect();
    // The ACPI fixed-hardware registers, as one range (the PM1 control register always
    // exits, whatever the config says: power-off stops Linux, not the machine).
    let acpi: Vec<_> = facts
        .ports
        .iter()
        .filter(|r| r.name.starts_with("ACPI ") && r.last >= r.start && r.start != 0)
        .collect();
    if let (Some(first), Some(last)) = (
        acpi.iter().map(|r| r.start).min(),
        acpi.iter().map(|r| r.last).max(),
    ) {
        ports.push((
            first,
            last - first + 1,
            "the ACPI registers (PM1 events and control, PM timer, GPEs)".into(),
        ));
    }
    ports
}

// ----- the machine ---------------------------------------------------------------------------

/// What the machine itself (not a request) has against running Bulkhead: VT-x, x2APIC, the
/// capability MSRs, the TSC, the IOMMU, the ACPI tables; blockers first.
pub fn judge(facts: &Facts) -> Vec<Finding> {
    let mut findings = Vec::new();
    judge_machine(facts, &mut findings);
    findings.sort_by_key(|f| f.severity);
    findings
}

fn judge_machine(facts: &Facts, findings: &mut Vec<Finding>) {
    let mut add = |severity, text: String| findings.push(Finding { severity, text });
    if !facts.has_flag("vmx") {
        add(
            Severity::Blocker,
            "the CPU does not report VT-x (no `vmx` in /proc/cpuinfo): enable Intel \
             Virtualization Technology in the firmware setup, or this is not an Intel CPU with \
             VT-x"
                .into(),
        );
    }
    if !facts.has_flag("x2apic") {
        add(
            Severity::Blocker,
            "the CPU does not report x2APIC, which the hypervisor needs".into(),
        );
    }
    match (&facts.vmx, &facts.vmx_unknown) {
        (Some(vmx), _) => {
            if vmx.disabled_by_firmware {
                add(
                    Severity::Blocker,
                    "VT-x is disabled and locked by the firmware (IA32_FEATURE_CONTROL): enable \
                     Intel Virtualization Technology in the firmware setup"
                        .into(),
                );
            }
            if !vmx.missing.is_empty() {
                add(
                    Severity::Blocker,
                    format!("VT-x lacks what the hypervisor needs: {}", vmx.missing),
                );
            }
            if !vmx.preemption_timer {
                add(
                    Severity::Warning,
                    "no VMX-preemption timer: a Linux CPU taken offline and back needs a real \
                     INIT to be noticed"
                        .into(),
                );
            }
        }
        (None, Some(why)) => add(
            Severity::Warning,
            format!("VT-x's capabilities (EPT, unrestricted guest, VPID) are unknown: {why}"),
        ),
        (None, None) => {}
    }
    if !(facts.has_flag("constant_tsc") && facts.has_flag("nonstop_tsc")) {
        add(
            Severity::Warning,
            "no invariant TSC (`constant_tsc` and `nonstop_tsc`): the RT kernel's clock and timer \
             deadlines drift with frequency changes and stop in deep sleep states"
                .into(),
        );
    }
    if facts.has_dmar {
        add(
            Severity::Note,
            "the machine has an IOMMU (a DMAR table); Bulkhead does not program it yet, so \
             Linux's PCI devices can still reach the RT partition's memory by DMA"
                .into(),
        );
    } else {
        add(
            Severity::Warning,
            "no IOMMU (no DMAR table, or VT-d off in the firmware): Linux's PCI devices can reach \
             all memory by DMA, the RT partition's included; give Linux only devices you trust"
                .into(),
        );
    }
    if facts.has_mcfg {
        add(
            Severity::Note,
            "PCI Express configuration space (an MCFG table): the hypervisor hides it from \
             Linux, which reaches its devices' configuration through the filtered ports only \
             (the first 256 bytes of each function: no extended capabilities such as AER)"
                .into(),
        );
    }
    let online: BTreeSet<u32> = facts.cpus.iter().map(|c| c.apic_id).collect();
    let offline: Vec<String> = facts
        .madt
        .local_apics
        .iter()
        .filter(|l| l.usable && !online.contains(&l.apic_id))
        .map(|l| l.apic_id.to_string())
        .collect();
    if !offline.is_empty() {
        add(
            Severity::Note,
            format!(
                "APIC IDs {} are in the MADT but offline in Linux: left out of both partitions",
                offline.join(", ")
            ),
        );
    }
}

// ----- the check -----------------------------------------------------------------------------

/// Checks `toml` as the hypervisor will: a valid config whose CPUs and RAM this machine has.
fn check(facts: &Facts, toml: &str) -> Result<(), String> {
    let config = load_str(toml, "the proposed config")
        .map_err(|d| format!("the proposal does not validate (a bug in the probe): {d}"))?;
    fits(facts, &config)
        .map_err(|e| format!("the proposal does not fit this machine (a bug in the probe): {e}"))
}

/// Whether a valid `config` fits the machine `facts` describes as the hypervisor checks it at
/// boot: every CPU present, every region in usable RAM, no device range on RAM or on an
/// IOAPIC's registers. The error names the config field and the fact.
pub fn fits(facts: &Facts, config: &Config) -> Result<(), String> {
    let apic_ids: Vec<u32> = facts
        .madt
        .local_apics
        .iter()
        .filter(|l| l.usable)
        .map(|l| l.apic_id)
        .collect();
    let usable_ram: Vec<Region> = facts
        .memory
        .iter()
        .filter(|r| r.is_ram())
        .map(|r| Region {
            base: r.start,
            size: r.end - r.start,
        })
        .collect();
    let kept: Vec<(&str, Region)> = facts
        .madt
        .ioapics
        .iter()
        .map(|io| {
            (
                "an IOAPIC",
                Region {
                    base: u64::from(io.address) & !0xfff,
                    size: 0x1000,
                },
            )
        })
        .collect();
    let platform = Platform {
        apic_ids: &apic_ids,
        usable_ram: &usable_ram,
        occupied: &[],
        kept_registers: &kept,
    };
    check_fit(config, &platform).map_err(|e| e.to_string())
}
