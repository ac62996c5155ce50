//! Machine configs as the harness needs them: the compiled blob for the ISO, the summary for
//! people, and the machine an emulator must provide (CPUs, RAM).
//!
//! [`load`] is the one place that calls the config crate (`bulkhead-config`, which owns the
//! schema, the validation and the blob layout).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bulkhead_config::{PartitionId, blob, host};

/// Room left above the highest configured region for what the firmware puts at the top of RAM
/// (the emulators' BIOSes place their ACPI tables there).
const FIRMWARE_HEADROOM_MIB: u64 = 64;
/// Emulated RAM is a multiple of this.
const RAM_GRANULE_MIB: u64 = 256;

/// A config file, checked and compiled.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The file.
    pub path: PathBuf,
    /// The binary blob the hypervisor reads (GRUB module `config`).
    pub blob: Vec<u8>,
    /// The plan in words, for people.
    pub description: String,
    /// APIC IDs of the Linux partition's CPUs.
    pub linux_cpus: Vec<u32>,
    /// APIC IDs of the RT partition's CPUs.
    pub rt_cpus: Vec<u32>,
    /// One past the highest byte of RAM the config names (hypervisor, partitions, shared).
    pub ram_end: u64,
    /// The boot module name of the RT kernel image (`rt.image`).
    pub rt_image: String,
    /// The boot module name of the Linux kernel (`linux.kernel`).
    pub linux_kernel: String,
    /// The boot module name of Linux's initrd (`linux.initrd`), if the config names one.
    pub linux_initrd: Option<String>,
    /// Linux's command line from the config (`linux.cmdline`).
    pub linux_cmdline: String,
    /// Bytes of RAM the Linux partition owns.
    pub linux_ram_bytes: u64,
}

impl LoadedConfig {
    /// APIC IDs of every CPU either partition owns (Linux's first).
    pub fn apic_ids(&self) -> Vec<u32> {
        self.linux_cpus
            .iter()
            .chain(&self.rt_cpus)
            .copied()
            .collect()
    }

    /// How many CPUs the machine needs: one per configured APIC ID.
    pub fn cpus(&self) -> u32 {
        (self.linux_cpus.len() + self.rt_cpus.len()) as u32
    }

    /// Emulated RAM for this config: the highest configured address plus room for the firmware,
    /// rounded up to 256 MiB.
    pub fn default_memory_mib(&self) -> u32 {
        memory_mib_for(self.ram_end)
    }
}

fn memory_mib_for(ram_end: u64) -> u32 {
    let end_mib = ram_end.div_ceil(1 << 20);
    let mib = (end_mib + FIRMWARE_HEADROOM_MIB).div_ceil(RAM_GRANULE_MIB) * RAM_GRANULE_MIB;
    mib.clamp(RAM_GRANULE_MIB, u64::from(u32::MAX)) as u32
}

/// Loads, validates and compiles a config file. The error is the config crate's diagnostic
/// (`file:line:col: field path: message`).
pub fn load(path: &Path) -> Result<LoadedConfig> {
    let cfg = match host::load_file(path) {
        Ok(cfg) => cfg,
        Err(diagnostic) => bail!("{diagnostic}"),
    };
    let linux = cfg.partition(PartitionId::Linux);
    let rt = cfg.partition(PartitionId::Rt);
    let regions = std::iter::once(cfg.hypervisor_region())
        .chain(linux.memory().iter().copied())
        .chain(rt.memory().iter().copied())
        .chain(cfg.shared_regions().iter().map(|s| s.region));
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        blob: blob::encode(&cfg),
        description: host::describe(&cfg),
        linux_cpus: linux.cpus().to_vec(),
        rt_cpus: rt.cpus().to_vec(),
        ram_end: regions.map(|r| r.end()).max().unwrap_or(0),
        rt_image: cfg.rt().image().as_str().to_string(),
        linux_kernel: cfg.linux().kernel().as_str().to_string(),
        linux_initrd: cfg.linux().initrd().map(|n| n.as_str().to_string()),
        linux_cmdline: cfg.linux().cmdline().to_string(),
        linux_ram_bytes: linux.memory().iter().map(|r| r.size).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_covers_the_highest_region_and_the_firmware() {
        // bochs-2cpu: shared region ends at 0x3820_0000 (898 MiB).
        assert_eq!(memory_mib_for(0x3820_0000), 1024);
        // bochs-4cpu: shared region ends at 0x7020_0000 (1794 MiB).
        assert_eq!(memory_mib_for(0x7020_0000), 2048);
        // Exactly 1 GiB leaves no room for the firmware's tables.
        assert_eq!(memory_mib_for(1 << 30), 1280);
        assert_eq!(memory_mib_for(0), 256);
    }

    #[test]
    fn example_configs_load() {
        let two = load(&crate::workspace_root().join("configs/bochs-2cpu.toml")).unwrap();
        assert_eq!(two.cpus(), 2);
        assert_eq!(two.default_memory_mib(), 1024);
        assert!(two.blob.starts_with(b"BLKHDCFG"));
        assert_eq!(two.rt_image, "rt.elf");
        assert_eq!(two.linux_kernel, "vmlinuz");
        assert_eq!(two.linux_initrd.as_deref(), Some("initrd.img"));
        let four = load(&crate::workspace_root().join("configs/bochs-4cpu.toml")).unwrap();
        assert_eq!(four.cpus(), 4);
        assert_eq!(four.default_memory_mib(), 2048);
    }

    #[test]
    fn diagnostics_name_the_file() {
        let dir = std::env::temp_dir().join(format!("bulkhead-e2e-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[machine]\nname = 5\n").unwrap();
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.starts_with(&bad.display().to_string()), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The HPET's register page and the IOAPIC pin its comparator is routed to, as the device
/// tests and `cargo xtask bench irq` give them to the RT partition.
pub const RT_HPET_BASE: u64 = 0xfed0_0000;
/// See [`RT_HPET_BASE`].
pub const RT_HPET_GSI: u32 = 20;

/// The RT kernel options that measure the HPET's interrupt on its line.
pub fn rt_hpet_option() -> String {
    format!("hpet={RT_HPET_BASE:#x}@{RT_HPET_GSI}")
}

/// The example config `example` (a one-RT-CPU plan such as `bochs-2cpu.toml`) with the HPET
/// given to the RT partition: its register page as `mmio` and pin [`RT_HPET_GSI`], active
/// high, edge-triggered or, with `level`, level-triggered (the HPET's application programs
/// its comparator to match the line).
pub fn example_with_rt_hpet(example: &str, level: bool) -> Result<String> {
    let trigger = if level { "level" } else { "edge" };
    let extra = format!(
        "ioapic_pins = [{{ pin = {RT_HPET_GSI}, trigger = \"{trigger}\", polarity = \"high\" }}]\nmmio = [{{ base = {RT_HPET_BASE:#x}, size = \"4 KiB\" }}]\n"
    );
    with_rt_lines(example, &extra, None)
}

/// The example config `example` with COM3 (ports 0x3e8..0x3ef, ISA IRQ 4 on pin 4) given to
/// the RT partition instead of Linux.
pub fn example_with_rt_uart(example: &str) -> Result<String> {
    let extra = "ioapic_pins = [4]\nio_ports = [{ base = 0x3e8, count = 8 }]\n";
    with_rt_lines(example, extra, Some(4))
}

/// The PCI function of the NIC a run with a NIC peer has ([`crate::Scenario::nic_peer`]), and
/// the IRQ the Bochs BIOS routes its INTA to.
pub const RT_NIC_FUNCTION: &str = "00:03.0";
/// See [`RT_NIC_FUNCTION`].
pub const RT_NIC_IRQ: u32 = 11;

/// What a bare RT kernel is told of that NIC instead of a config: the function to describe
/// and its INTx pin, level-triggered (`pci=00:03.0 lines=11:level:high`).
pub fn rt_nic_bare_options() -> String {
    format!("lines={RT_NIC_IRQ}:level:high pci={RT_NIC_FUNCTION}")
}

/// The example config `example` with the NIC of a run with a NIC peer given to the RT
/// partition: its PCI function and the IOAPIC pin its INTx arrives on, level-triggered (PCI
/// INTx; active high, as the chipset drives an ISA IRQ input).
pub fn example_with_rt_nic(example: &str) -> Result<String> {
    let extra = format!(
        "pci_devices = [\"{RT_NIC_FUNCTION}\"]\nioapic_pins = [{{ pin = {RT_NIC_IRQ}, trigger = \"level\", polarity = \"high\" }}]\n"
    );
    with_rt_lines(example, &extra, Some(RT_NIC_IRQ))
}

/// `example`'s text with `extra` added to `[partitions.rt]` right after its `cpus`, and pin
/// `from_linux` taken out of Linux's `ioapic_pins`. Fails, naming the file, when the text no
/// longer has the shape this edits.
fn with_rt_lines(example: &str, extra: &str, from_linux: Option<u32>) -> Result<String> {
    let path = crate::example_config(example);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut out = String::new();
    let (mut in_rt, mut in_linux, mut added) = (false, false, false);
    for line in text.lines() {
        if line.starts_with('[') {
            in_rt = line.trim() == "[partitions.rt]";
            in_linux = line.trim() == "[partitions.linux]";
        }
        let mut line = line.to_string();
        if let (true, Some(pin), Some(list)) =
            (in_linux, from_linux, line.strip_prefix("ioapic_pins = ["))
        {
            let pins: Vec<&str> = list
                .trim_end_matches(']')
                .split(',')
                .map(str::trim)
                .filter(|p| *p != pin.to_string())
                .collect();
            line = format!("ioapic_pins = [{}]", pins.join(", "));
        }
        out.push_str(&line);
        out.push('\n');
        if in_rt && !added && line.starts_with("cpus = ") {
            out.push_str(extra);
            added = true;
        }
    }
    anyhow::ensure!(
        added,
        "{} has no [partitions.rt] cpus line to add devices after",
        path.display()
    );
    Ok(out)
}

#[cfg(test)]
mod device_tests {
    use super::*;

    fn load_text(text: &str) -> bulkhead_config::Config {
        host::load_str(text, "test.toml").unwrap_or_else(|d| panic!("{d}\n{text}"))
    }

    #[test]
    fn example_configs_with_rt_devices_are_valid() {
        let hpet = load_text(&example_with_rt_hpet("bochs-2cpu.toml", false).unwrap());
        let rt = hpet.partition(PartitionId::Rt);
        assert_eq!(rt.ioapic_pins(), &[RT_HPET_GSI]);
        assert_eq!(rt.mmio().len(), 1);
        let uart = load_text(&example_with_rt_uart("bochs-2cpu.toml").unwrap());
        assert_eq!(uart.partition(PartitionId::Rt).ioapic_pins(), &[4]);
        assert!(!uart.partition(PartitionId::Linux).ioapic_pins().contains(&4));
        assert!(uart.partition(PartitionId::Linux).ioapic_pins().contains(&3));
        let nic = load_text(&example_with_rt_nic("bochs-2cpu.toml").unwrap());
        let rt = nic.partition(PartitionId::Rt);
        assert_eq!(rt.ioapic_pins(), &[RT_NIC_IRQ]);
        assert_eq!(rt.pci_devices().len(), 1);
        assert_eq!(rt.pci_devices()[0].to_string(), RT_NIC_FUNCTION);
        assert!(
            !nic.partition(PartitionId::Linux)
                .ioapic_pins()
                .contains(&RT_NIC_IRQ)
        );
    }
}
