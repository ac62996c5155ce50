//! The facts the kernel starts from, in either boot mode, reduced to one [`Facts`] value:
//!
//! - bare: the multiboot2 information (memory map, command line, ACPI RSDP) and the ACPI
//!   MADT (the CPUs), parsed with the `multiboot2` and `acpi` crates;
//! - under the hypervisor: the [`RtBootInfo`] the hypervisor wrote, validated first.
//!
//! Everything here is input from outside: a malformed structure becomes a [`BootError`]
//! naming it, never a panic. Nothing refers back to the loader's memory afterwards.

use core::fmt;

use acpi::AcpiTables;
use acpi::madt::{Madt, MadtEntry};
use bulkhead_abi::rt_boot::{
    AbiError, ChannelInfo, LineInfo, MAX_CHANNELS, MAX_LINES, MAX_MEMORY_REGIONS,
    MAX_PCI_FUNCTIONS, MULTIBOOT2_MAGIC, MemoryRegion, PciFunctionInfo, RT_BOOT_MAGIC, RtBootInfo,
};
use bulkhead_x86::acpi::IdentityMapped;
use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};

use crate::MAX_CPUS;

const CMDLINE_LEN: usize = 256;

/// How the kernel was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// By GRUB, alone on the machine.
    Bare,
    /// By the Bulkhead hypervisor, in the RT partition.
    Hypervisor,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bare => "bare",
            Self::Hypervisor => "hypervisor",
        })
    }
}

/// Most IOAPICs the kernel drives in bare mode.
pub const MAX_IOAPICS: usize = 8;

/// An IOAPIC the MADT lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct IoApic {
    /// Its registers' physical address.
    pub address: u64,
    /// The GSI of its pin 0.
    pub gsi_base: u32,
}

/// What the kernel knows about its machine.
#[derive(Debug, Clone)]
pub struct Facts {
    pub mode: Mode,
    /// APIC IDs of the kernel's CPUs; index 0 is the boot CPU.
    apic_ids: [u32; MAX_CPUS],
    cpu_count: usize,
    /// CPUs beyond [`MAX_CPUS`] that are left alone.
    pub cpus_ignored: usize,
    /// TSC frequency, if the loader knows it.
    pub tsc_hz: Option<u64>,
    /// The console UART's I/O base, if any.
    pub console: Option<u16>,
    cmdline: [u8; CMDLINE_LEN],
    cmdline_len: usize,
    /// Usable RAM in bytes, and in how many ranges.
    pub ram_bytes: u64,
    pub ram_ranges: usize,
    /// Channels the hypervisor described (none in bare mode): `channel_table[..channels]`.
    pub channels: usize,
    channel_table: [ChannelInfo; MAX_CHANNELS],
    /// Device lines the hypervisor set up (bare: none until `set_bare_lines`):
    /// `line_table[..lines]`.
    pub lines: usize,
    line_table: [LineInfo; MAX_LINES],
    /// The IOAPICs the MADT lists (bare mode only): register base and first GSI.
    ioapics: [IoApic; MAX_IOAPICS],
    ioapic_count: usize,
    /// The PCI functions the hypervisor gave the partition (none in bare mode):
    /// `pci_table[..pci_functions]`.
    pci_functions: usize,
    pci_table: [PciFunctionInfo; MAX_PCI_FUNCTIONS],
    /// The RAM regions and their bus addresses (under the hypervisor; bare, RAM is where it
    /// is on the bus): `ram[..ram_ranges]`, `ram_bus[..ram_ranges]`.
    ram: [MemoryRegion; MAX_MEMORY_REGIONS],
    ram_bus: [u64; MAX_MEMORY_REGIONS],
}

/// Why the kernel cannot start.
#[derive(Debug)]
pub enum BootError {
    UnknownMagic(u32),
    Multiboot(multiboot2::LoadError),
    NoRsdp,
    Acpi(acpi::AcpiError),
    BootInfo(AbiError),
    BootCpuMissing(u32),
    /// `lines=` is not a list of `GSI[:edge|:level][:high|:low]`.
    BadLines,
    /// `pci=` names a function that cannot be described.
    BarePci(crate::pci::BareError),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMagic(m) => write!(
                f,
                "unknown boot magic EAX={m:#x} (expected multiboot2 {MULTIBOOT2_MAGIC:#x} or RT_BOOT_MAGIC {RT_BOOT_MAGIC:#x})"
            ),
            Self::Multiboot(e) => write!(f, "multiboot2 boot information unreadable: {e:?}"),
            Self::NoRsdp => f.write_str("ACPI: the boot loader passed no RSDP"),
            Self::Acpi(e) => write!(f, "ACPI: no usable MADT: {e:?}"),
            Self::BootInfo(e) => write!(f, "{e}"),
            Self::BadLines => f.write_str(
                "lines=: expected comma-separated GSI[:edge|:level][:high|:low], at most 16, each pin once, GSIs below 240",
            ),
            Self::BarePci(e) => write!(f, "{e}"),
            Self::BootCpuMissing(id) => write!(
                f,
                "the boot CPU (APIC ID {id}) is not among the CPUs the firmware lists"
            ),
        }
    }
}

impl Facts {
    fn empty(mode: Mode) -> Self {
        Self {
            mode,
            apic_ids: [0; MAX_CPUS],
            cpu_count: 0,
            cpus_ignored: 0,
            tsc_hz: None,
            console: None,
            cmdline: [0; CMDLINE_LEN],
            cmdline_len: 0,
            ram_bytes: 0,
            ram_ranges: 0,
            channels: 0,
            channel_table: [ChannelInfo::default(); MAX_CHANNELS],
            lines: 0,
            line_table: [LineInfo::default(); MAX_LINES],
            ioapics: [IoApic::default(); MAX_IOAPICS],
            ioapic_count: 0,
            pci_functions: 0,
            pci_table: [PciFunctionInfo::default(); MAX_PCI_FUNCTIONS],
            ram: [MemoryRegion::default(); MAX_MEMORY_REGIONS],
            ram_bus: [0; MAX_MEMORY_REGIONS],
        }
    }

    fn add_cpu(&mut self, apic_id: u32) {
        if self.cpus().contains(&apic_id) {
            return;
        }
        if self.cpu_count < MAX_CPUS {
            self.apic_ids[self.cpu_count] = apic_id;
            self.cpu_count += 1;
        } else {
            self.cpus_ignored += 1;
        }
    }

    fn set_cmdline(&mut self, text: &str) {
        let n = text.len().min(CMDLINE_LEN);
        self.cmdline[..n].copy_from_slice(&text.as_bytes()[..n]);
        self.cmdline_len = n;
    }

    /// APIC IDs of the kernel's CPUs, boot CPU first.
    pub fn cpus(&self) -> &[u32] {
        &self.apic_ids[..self.cpu_count]
    }

    /// The channels to Linux, as the hypervisor described them (validated).
    pub fn channel_infos(&self) -> &[ChannelInfo] {
        &self.channel_table[..self.channels]
    }

    /// The device lines, as the hypervisor described them (validated), or as the command
    /// line's `lines=` named them in bare mode.
    pub fn line_infos(&self) -> &[LineInfo] {
        &self.line_table[..self.lines]
    }

    /// The PCI functions the hypervisor gave the partition (validated; none in bare mode).
    pub fn pci_functions(&self) -> &[PciFunctionInfo] {
        &self.pci_table[..self.pci_functions]
    }

    /// Where the partition's RAM lies on the bus, for DMA; `None` in bare mode, where
    /// physical addresses are bus addresses.
    pub fn bus_map(&self) -> Option<bulkhead_abi::rt_boot::BusMap<'_>> {
        (self.mode == Mode::Hypervisor).then(|| {
            bulkhead_abi::rt_boot::BusMap::new(
                &self.ram[..self.ram_ranges],
                &self.ram_bus[..self.ram_ranges],
            )
        })
    }

    /// The IOAPICs (bare mode).
    pub fn ioapics(&self) -> &[IoApic] {
        &self.ioapics[..self.ioapic_count]
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// Reads the facts for the loader that left `magic` and `info`; `boot_apic_id` is the
    /// running CPU's.
    ///
    /// # Safety
    /// `info` must be the address the loader passed in EBX, still intact and identity-mapped.
    pub unsafe fn gather(magic: u32, info: usize, boot_apic_id: u32) -> Result<Self, BootError> {
        match magic {
            // SAFETY: forwarded.
            MULTIBOOT2_MAGIC => unsafe { Self::from_multiboot2(info, boot_apic_id) },
            // SAFETY: forwarded.
            RT_BOOT_MAGIC => unsafe { Self::from_rt_boot_info(info) },
            other => Err(BootError::UnknownMagic(other)),
        }
    }

    /// # Safety
    /// As [`Facts::gather`].
    unsafe fn from_multiboot2(info: usize, boot_apic_id: u32) -> Result<Self, BootError> {
        // SAFETY: the multiboot2 magic was checked; the caller vouches for the address.
        let mbi = unsafe { BootInformation::load(info as *const BootInformationHeader) }
            .map_err(BootError::Multiboot)?;
        let mut facts = Self::empty(Mode::Bare);
        facts.console = Some(crate::console::COM1);
        if let Some(map) = mbi.memory_map_tag() {
            for area in map.memory_areas() {
                if area.typ() == MemoryAreaType::Available {
                    facts.ram_bytes += area.size();
                    facts.ram_ranges += 1;
                }
            }
        }
        if let Some(Ok(cmdline)) = mbi.command_line_tag().map(|t| t.cmdline()) {
            facts.set_cmdline(cmdline);
            // No hypervisor programs the IOAPIC: the command line names the device lines.
            let options = Options::parse(cmdline);
            if let Some(spec) = options.lines {
                facts.lines = bulkhead_abi::rt_boot::parse_bare_lines(spec, &mut facts.line_table)
                    .map_err(|_| BootError::BadLines)?;
            }
            // Nor describes the PCI functions: the command line names them too.
            if let Some(spec) = options.pci {
                facts.pci_functions = crate::pci::describe_bare(
                    spec,
                    &facts.line_table[..facts.lines],
                    &mut facts.pci_table,
                )
                .map_err(BootError::BarePci)?;
            }
        }
        // The RSDP tags carry a copy of the RSDP after the 8-byte tag header.
        let rsdp = if let Some(tag) = mbi.rsdp_v2_tag() {
            core::ptr::from_ref(tag).cast::<u8>() as usize + 8
        } else if let Some(tag) = mbi.rsdp_v1_tag() {
            core::ptr::from_ref(tag).cast::<u8>() as usize + 8
        } else {
            return Err(BootError::NoRsdp);
        };
        // The boot CPU is partition CPU 0; the others follow in MADT order.
        facts.add_cpu(boot_apic_id);
        // SAFETY: `rsdp` points at the RSDP copy inside the boot information; the crate
        // validates checksums; ACPI tables lie in identity-mapped memory below 4 GiB.
        let tables =
            unsafe { AcpiTables::from_rsdp(IdentityMapped, rsdp) }.map_err(BootError::Acpi)?;
        let madt = tables.find_table::<Madt>().map_err(BootError::Acpi)?;
        let mut boot_listed = false;
        for entry in madt.get().entries() {
            if let MadtEntry::IoApic(e) = entry {
                if let Some(slot) = facts.ioapics.get_mut(facts.ioapic_count) {
                    *slot = IoApic {
                        address: u64::from(e.io_apic_address),
                        gsi_base: e.global_system_interrupt_base,
                    };
                    facts.ioapic_count += 1;
                }
                continue;
            }
            let id = match entry {
                // Flags bit 0: enabled; bit 1: online capable.
                MadtEntry::LocalApic(e) if e.flags & 0b11 != 0 => u32::from(e.apic_id),
                MadtEntry::LocalX2Apic(e) if e.flags & 0b11 != 0 => e.x2apic_id,
                _ => continue,
            };
            boot_listed |= id == boot_apic_id;
            facts.add_cpu(id);
        }
        if !boot_listed {
            return Err(BootError::BootCpuMissing(boot_apic_id));
        }
        Ok(facts)
    }

    /// # Safety
    /// As [`Facts::gather`].
    unsafe fn from_rt_boot_info(info: usize) -> Result<Self, BootError> {
        if !info.is_multiple_of(8) {
            return Err(BootError::BootInfo(AbiError::Truncated));
        }
        // SAFETY: the hypervisor placed an RtBootInfo at `info` in partition RAM, which is
        // identity-mapped; it is read once here and copied out.
        let bytes = unsafe {
            core::slice::from_raw_parts(info as *const u8, core::mem::size_of::<RtBootInfo>())
        };
        let boot = RtBootInfo::ref_from_prefix(bytes).map_err(BootError::BootInfo)?;
        boot.validate().map_err(BootError::BootInfo)?;
        let mut facts = Self::empty(Mode::Hypervisor);
        for &id in boot.apic_ids() {
            facts.add_cpu(id);
        }
        facts.tsc_hz = (boot.tsc_hz != 0).then_some(boot.tsc_hz);
        facts.console = (boot.console_port != 0).then_some(boot.console_port);
        for (i, (region, &bus)) in boot.memory_regions().iter().zip(boot.ram_bus()).enumerate() {
            facts.ram_bytes += region.size;
            facts.ram_ranges += 1;
            facts.ram[i] = *region;
            facts.ram_bus[i] = bus;
        }
        facts.pci_functions = boot.pci_functions().len();
        facts.pci_table[..facts.pci_functions].copy_from_slice(boot.pci_functions());
        facts.channels = boot.channels().len();
        facts.channel_table[..facts.channels].copy_from_slice(boot.channels());
        facts.lines = boot.lines().len();
        facts.line_table[..facts.lines].copy_from_slice(boot.lines());
        facts.set_cmdline(boot.cmdline().unwrap_or(""));
        Ok(facts)
    }
}

/// Kernel options from the command line (`key=value` words; unknown words are ignored).
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// `latency_report_s=`: the report period in seconds (default 1): how often the report
    /// tasks publish their CPUs' tasks and the latency application prints its summaries.
    pub latency_report_s: u64,
    /// `selftest=kernel`: run the kernel self-tests.
    pub selftest: bool,
    /// `log=CHANNEL`: every console line also goes to Linux on the `rt-to-linux` channel
    /// CHANNEL (`bulkhead log rt`).
    pub log: Option<&'a str>,
    /// `lines=SPEC`: the device lines of a bare kernel (`GSI[:edge|:level][:high|:low],...`;
    /// under the hypervisor the config decides and this is ignored).
    pub lines: Option<&'a str>,
    /// `pci=BB:DD.F,...`: the PCI functions a bare kernel describes for its drivers (under the
    /// hypervisor the config decides and this is ignored).
    pub pci: Option<&'a str>,
}

impl<'a> Options<'a> {
    /// Parses `cmdline`.
    pub fn parse(cmdline: &'a str) -> Self {
        let mut options = Self {
            latency_report_s: 1,
            selftest: false,
            log: None,
            lines: None,
            pci: None,
        };
        for word in cmdline.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let number = value.parse::<u64>().ok();
            match (key, number) {
                ("latency_report_s", Some(n)) if (1..=3600).contains(&n) => {
                    options.latency_report_s = n;
                }
                ("selftest", _) => options.selftest = value == "kernel",
                ("log", _) if !value.is_empty() => options.log = Some(value),
                ("lines", _) if !value.is_empty() => options.lines = Some(value),
                ("pci", _) if !value.is_empty() => options.pci = Some(value),
                _ => {}
            }
        }
        options
    }
}
