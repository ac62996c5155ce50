//! One end-to-end boot, described in a few chained calls: [`Scenario`].
//!
//! A scenario owns the boot plumbing every test used to repeat: the run directory (named after
//! the test), the config (an example by name, any file, a text written into the run directory,
//! or a raw blob in the config module's place), the images `cargo xtask test` hands over in the
//! environment (or files given explicitly), the ISO (the hypervisor's command line, the RT
//! kernel's arguments, the Linux kernel's arguments and its initramfs, or the RT kernel booted
//! alone from GRUB), and the emulator with the machine the config asks for. [`Scenario::start`]
//! builds the ISO and boots it; what the run must print stays in the test, with its [`Expect`]
//! and its checks.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use bulkhead_e2e::{LinuxMode, Scenario};
//! let mut run = Scenario::new("bochs_rt_under_hypervisor")
//!     .config("bochs-2cpu.toml")
//!     .hv_cmdline("exit_report_s=1")
//!     .rt_cmdline("selftest=kernel latency_period_us=1000")
//!     .linux(LinuxMode::Stub)
//!     .start()?;
//! # Ok(()) }
//! ```
//!
//! [`Scenario::com3_peer`] adds a third serial port, COM3, whose other end the test holds
//! ([`Run::com3`]), to send bytes to a UART the guest drives and read what it sends back.
//!
//! A scenario never decides what a run must print, and never picks an image that was not handed
//! over: a missing one fails, saying how to run the tests (the hypervisor and the RT kernel
//! before the run directory is touched).
//!
//! [`Expect`]: crate::Expect

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::config::LoadedConfig;
use crate::{ConfigModule, DEFAULT_BOCHS_IPS, Emulator, Firmware, IsoSpec, Run, RunDir};

/// Emulated CPUs for the RT kernel booted alone, unless told otherwise.
pub const RT_BARE_CPUS: u32 = 2;
/// Emulated RAM in MiB for the RT kernel booted alone, unless told otherwise.
pub const RT_BARE_MEMORY_MIB: u32 = 256;

/// The ISO's file name in the run directory, when the hypervisor boots.
const HYPERVISOR_ISO: &str = "bulkhead.iso";
/// The ISO's file name in the run directory, when the RT kernel boots alone.
const RT_BARE_ISO: &str = "rt.iso";

/// An example config of the workspace (`configs/<name>`), by file name.
pub fn example_config(name: &str) -> PathBuf {
    crate::workspace_root().join("configs").join(name)
}

/// What runs on the Linux partition's CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LinuxMode {
    /// The hypervisor's start-up stub (`linux=stub` on its command line): for the hypervisor's
    /// and the RT side's own tests. No Linux module goes on the ISO.
    #[default]
    Stub,
    /// The real Linux kernel (under the config's `[linux] kernel` module name) with `args`
    /// after the config's command line, and its initramfs (under `[linux] initrd`).
    Kernel {
        /// Words for Linux's command line (for example `bulkhead.init=poweroff`).
        args: String,
    },
}

impl LinuxMode {
    /// [`LinuxMode::Kernel`] with `args` for Linux's command line.
    pub fn kernel(args: impl Into<String>) -> Self {
        Self::Kernel { args: args.into() }
    }
}

/// Which emulator a scenario boots in; the machine's size comes from the scenario (the
/// config's CPUs and RAM unless [`Scenario::cpus`] or [`Scenario::memory_mib`] say otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EmulatorKind {
    /// Bochs, the VT-x test bed, with [`Scenario::ips`] instructions per emulated second.
    #[default]
    Bochs,
    /// QEMU's TCG: no VT-x.
    QemuTcg,
    /// QEMU with KVM and nested VT-x.
    QemuKvm,
}

/// Where the config comes from.
#[derive(Clone, Debug)]
enum ConfigSource {
    /// A TOML file (an example or any path).
    File(PathBuf),
    /// A TOML text, written into the run directory under this file name when the run starts.
    Written { file_name: String, text: String },
}

/// What goes into GRUB's `config` module.
#[derive(Clone, Debug, Default)]
enum ConfigBlob {
    /// The scenario's config, compiled.
    #[default]
    Compiled,
    /// These bytes, written into the run directory under this file name.
    Raw { file_name: String, bytes: Vec<u8> },
    /// No `config` module.
    Omit,
}

/// Which kernel GRUB boots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Boots {
    #[default]
    Hypervisor,
    RtBare,
}

/// One end-to-end boot: what goes on the ISO and which emulator boots it. See the module
/// documentation.
#[derive(Clone, Debug)]
pub struct Scenario {
    name: String,
    boots: Boots,
    config: Option<ConfigSource>,
    blob: ConfigBlob,
    hv_cmdline: String,
    rt_cmdline: String,
    linux: LinuxMode,
    hypervisor_file: Option<PathBuf>,
    rt_file: Option<PathBuf>,
    linux_files: Option<(PathBuf, PathBuf)>,
    emulator: EmulatorKind,
    cpus: Option<u32>,
    memory_mib: Option<u32>,
    ips: Option<u32>,
    com3_peer: bool,
    nic_peer: bool,
    firmware: Firmware,
}

impl Scenario {
    /// A boot of the hypervisor, in the run directory `target/runs/<name>/` (the test's name).
    /// It needs a config ([`Scenario::config`] and its siblings); the Linux CPUs run the
    /// start-up stub unless [`Scenario::linux`] says otherwise; Bochs boots it.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            boots: Boots::Hypervisor,
            config: None,
            blob: ConfigBlob::Compiled,
            hv_cmdline: String::new(),
            rt_cmdline: String::new(),
            linux: LinuxMode::Stub,
            hypervisor_file: None,
            rt_file: None,
            linux_files: None,
            emulator: EmulatorKind::Bochs,
            cpus: None,
            memory_mib: None,
            ips: None,
            com3_peer: false,
            nic_peer: false,
            firmware: Firmware::Bios,
        }
    }

    /// The RT kernel booted alone from GRUB ("bare mode": no hypervisor, no config), with
    /// [`Scenario::rt_cmdline`] as its command line, on [`RT_BARE_CPUS`] CPUs and
    /// [`RT_BARE_MEMORY_MIB`] MiB unless told otherwise.
    pub fn rt_bare(name: impl Into<String>) -> Self {
        Self {
            boots: Boots::RtBare,
            ..Self::new(name)
        }
    }

    /// The run's name (its directory under `target/runs/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Boots the example config `name` (`configs/<name>`, e.g. `bochs-2cpu.toml`).
    pub fn config(self, name: &str) -> Self {
        self.config_path(example_config(name))
    }

    /// Boots the config file at `path`.
    pub fn config_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(ConfigSource::File(path.into()));
        self
    }

    /// Boots the config `text`, written into the run directory as `file_name` when the run
    /// starts (a variant of an example, say).
    pub fn config_text(mut self, file_name: impl Into<String>, text: impl Into<String>) -> Self {
        self.config = Some(ConfigSource::Written {
            file_name: file_name.into(),
            text: text.into(),
        });
        self
    }

    /// Puts `bytes` (written into the run directory as `file_name`) in the config module's
    /// place, to test how the hypervisor treats a bad blob. The scenario's config still sizes
    /// the machine; the ISO holds the hypervisor alone: nothing readable names the RT and Linux
    /// modules.
    pub fn config_blob(mut self, file_name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.blob = ConfigBlob::Raw {
            file_name: file_name.into(),
            bytes: bytes.into(),
        };
        self
    }

    /// Leaves the config module off the ISO. As with [`Scenario::config_blob`], the scenario's
    /// config still sizes the machine and the ISO holds the hypervisor alone.
    pub fn without_config_module(mut self) -> Self {
        self.blob = ConfigBlob::Omit;
        self
    }

    /// Words for the hypervisor's command line (`exit_report_s=1`, `selftest=exception`).
    pub fn hv_cmdline(mut self, words: impl Into<String>) -> Self {
        self.hv_cmdline = words.into();
        self
    }

    /// Words for the RT kernel: its module's arguments under the hypervisor, its command line
    /// when it boots alone.
    pub fn rt_cmdline(mut self, words: impl Into<String>) -> Self {
        self.rt_cmdline = words.into();
        self
    }

    /// What runs on the Linux CPUs: the stub (the default) or the real kernel.
    pub fn linux(mut self, mode: LinuxMode) -> Self {
        self.linux = mode;
        self
    }

    /// Boots `path` as the hypervisor instead of the image `cargo xtask test` hands over.
    pub fn hypervisor_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.hypervisor_file = Some(path.into());
        self
    }

    /// Puts `path` where the RT kernel goes (any file: a test of how a bad image is treated)
    /// instead of the image `cargo xtask test` hands over.
    pub fn rt_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.rt_file = Some(path.into());
        self
    }

    /// Gives Linux `kernel` and `initrd` instead of the files `cargo xtask test` hands over
    /// (with [`LinuxMode::Kernel`]).
    pub fn linux_files(mut self, kernel: impl Into<PathBuf>, initrd: impl Into<PathBuf>) -> Self {
        self.linux_files = Some((kernel.into(), initrd.into()));
        self
    }

    /// The emulator (Bochs unless told otherwise).
    pub fn emulator(mut self, kind: EmulatorKind) -> Self {
        self.emulator = kind;
        self
    }

    /// The firmware QEMU boots with (BIOS unless told otherwise; Bochs has its BIOS only).
    pub fn firmware(mut self, firmware: Firmware) -> Self {
        self.firmware = firmware;
        self
    }

    /// Emulated CPUs, instead of one per CPU the config names.
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Emulated RAM in MiB, instead of what the config needs
    /// ([`LoadedConfig::default_memory_mib`]).
    pub fn memory_mib(mut self, memory_mib: u32) -> Self {
        self.memory_mib = Some(memory_mib);
        self
    }

    /// Bochs' instructions per emulated second, instead of [`DEFAULT_BOCHS_IPS`].
    pub fn ips(mut self, ips: u32) -> Self {
        self.ips = Some(ips);
        self
    }

    /// Gives the machine a third serial port, COM3 (I/O ports 0x3e8 to 0x3ef, ISA IRQ 4, shared
    /// with COM1), whose other end is a TCP connection the test holds: [`Scenario::start`]
    /// listens on `127.0.0.1` (a port the system picks) before the emulator starts, the emulator
    /// connects to it, and [`Run::com3`] hands the test its end.
    ///
    /// In Bochs the port is `com3: enabled=1, mode=socket-client, dev=127.0.0.1:PORT` in the
    /// `bochsrc`; in QEMU (TCG or KVM) a third `-serial tcp:127.0.0.1:PORT`. Without this call
    /// the machine has COM1 and COM2 only and its `bochsrc` or QEMU command line is unchanged.
    pub fn com3_peer(mut self) -> Self {
        self.com3_peer = true;
        self
    }

    /// Gives the machine an Intel 8254x NIC (function 00:03.0, INTA routed to IRQ 11 by the
    /// firmware; `crate::Peers::nic`) whose wire is a [`crate::NicPeer`] of the harness,
    /// which answers the RT NIC driver's cyclic frames; [`Run::nic`] reads what it counted.
    pub fn nic_peer(mut self) -> Self {
        self.nic_peer = true;
        self
    }

    /// The config file this scenario boots, checked and compiled (what a test builds its
    /// expectations from). Fails for a config given as text, which exists once the run starts,
    /// and for a scenario without a config.
    pub fn loaded_config(&self) -> Result<LoadedConfig> {
        match &self.config {
            Some(ConfigSource::File(path)) => crate::config::load(path),
            Some(ConfigSource::Written { file_name, .. }) => bail!(
                "{}: the config {file_name} is written when the run starts",
                self.name
            ),
            None => bail!("{}: no config", self.name),
        }
    }

    /// Makes the run directory, builds the ISO and boots it (listening for COM3's connection
    /// first with [`Scenario::com3_peer`], the NIC's peer bound first with
    /// [`Scenario::nic_peer`]).
    pub fn start(&self) -> Result<Run> {
        let images = self.images()?;
        let dir = RunDir::create(&self.name)?;
        let (spec, emulator) = self.plan(&images, dir.path())?;
        let iso = crate::build_iso(&spec).with_context(|| format!("{}: the ISO", self.name))?;
        Run::start_with_test_peers(&dir, &iso, &emulator, self.com3_peer, self.nic_peer)
    }

    /// The images this scenario boots: given, or handed over in the environment.
    fn images(&self) -> Result<Images> {
        let given_or = |given: &Option<PathBuf>, from_env: fn() -> Result<PathBuf>| match given {
            Some(path) => Ok(path.clone()),
            None => from_env(),
        };
        let compiled = matches!(self.blob, ConfigBlob::Compiled);
        Ok(Images {
            hypervisor: match self.boots {
                Boots::Hypervisor => Some(given_or(
                    &self.hypervisor_file,
                    crate::hypervisor_elf_from_env,
                )?),
                Boots::RtBare => None,
            },
            // Under the hypervisor, only a compiled config names the RT module.
            rt: if self.boots == Boots::RtBare || compiled {
                Some(given_or(&self.rt_file, crate::rt_kernel_elf_from_env)?)
            } else {
                None
            },
        })
    }

    /// The ISO (its files written into `dir`) and the emulator.
    fn plan(&self, images: &Images, dir: &Path) -> Result<(IsoSpec, Emulator)> {
        let config = match &self.config {
            Some(ConfigSource::File(path)) => Some(crate::config::load(path)?),
            Some(ConfigSource::Written { file_name, text }) => {
                let path = dir.join(file_name);
                write(&path, text.as_bytes())?;
                Some(crate::config::load(&path)?)
            }
            None => None,
        };
        let spec = match self.boots {
            Boots::Hypervisor => self.hypervisor_spec(images, config.as_ref(), dir)?,
            Boots::RtBare => self.rt_bare_spec(images, dir)?,
        };
        Ok((spec, self.machine(config.as_ref())?))
    }

    fn hypervisor_spec(
        &self,
        images: &Images,
        config: Option<&LoadedConfig>,
        dir: &Path,
    ) -> Result<IsoSpec> {
        let name = &self.name;
        let Some(config) = config else {
            bail!("{name}: the hypervisor needs a config (Scenario::config)");
        };
        let hypervisor = images.hypervisor.clone().context("no hypervisor image")?;
        let stub = match self.linux {
            LinuxMode::Stub => "linux=stub",
            LinuxMode::Kernel { .. } => "",
        };
        let cmdline = format!("{stub} {}", self.hv_cmdline);
        let module = match &self.blob {
            ConfigBlob::Compiled => ConfigModule::Toml(config.path.clone()),
            ConfigBlob::Raw { file_name, bytes } => {
                let path = dir.join(file_name);
                write(&path, bytes)?;
                ConfigModule::Raw(path)
            }
            ConfigBlob::Omit => ConfigModule::Omit,
        };
        let spec =
            IsoSpec::new(dir.join(HYPERVISOR_ISO), hypervisor, module).cmdline(cmdline.trim());
        if !matches!(self.blob, ConfigBlob::Compiled) {
            if !self.rt_cmdline.is_empty()
                || self.rt_file.is_some()
                || self.linux != LinuxMode::Stub
            {
                bail!(
                    "{name}: without the compiled config on the ISO nothing names the RT and \
                     Linux modules: leave out the RT kernel's and Linux's settings"
                );
            }
            return Ok(spec);
        }
        let rt = images.rt.clone().context("no RT kernel image")?;
        let spec = spec.module_with_args(&config.rt_image, rt, self.rt_cmdline.as_str());
        let LinuxMode::Kernel { args } = &self.linux else {
            return Ok(spec);
        };
        Ok(match &self.linux_files {
            Some((kernel, initrd)) => {
                let spec = spec.module_with_args(&config.linux_kernel, kernel, args.as_str());
                match &config.linux_initrd {
                    Some(initrd_name) => spec.module(initrd_name, initrd),
                    None => spec,
                }
            }
            None => {
                let kernel = crate::linux_kernel_from_env(&config.linux_kernel)?;
                spec.module_with_args(&config.linux_kernel, kernel, args.as_str())
                    .linux_modules_from_env(config)?
            }
        })
    }

    fn rt_bare_spec(&self, images: &Images, dir: &Path) -> Result<IsoSpec> {
        let name = &self.name;
        if self.config.is_some() || !matches!(self.blob, ConfigBlob::Compiled) {
            bail!("{name}: the RT kernel booted alone takes no config");
        }
        if !self.hv_cmdline.is_empty()
            || self.hypervisor_file.is_some()
            || self.linux != LinuxMode::Stub
            || self.linux_files.is_some()
        {
            bail!("{name}: the RT kernel booted alone has no hypervisor and no Linux");
        }
        let rt = images.rt.clone().context("no RT kernel image")?;
        Ok(IsoSpec::rt_bare(dir.join(RT_BARE_ISO), rt).cmdline(self.rt_cmdline.as_str()))
    }

    /// The emulator and its machine: the CPUs and RAM given, else those the config asks for
    /// (the defaults of bare mode for the RT kernel alone).
    fn machine(&self, config: Option<&LoadedConfig>) -> Result<Emulator> {
        let (cpus, memory_mib) = match (self.boots, config) {
            (Boots::RtBare, _) => (
                self.cpus.unwrap_or(RT_BARE_CPUS),
                self.memory_mib.unwrap_or(RT_BARE_MEMORY_MIB),
            ),
            (Boots::Hypervisor, Some(config)) => (
                self.cpus.unwrap_or_else(|| config.cpus()),
                self.memory_mib
                    .unwrap_or_else(|| config.default_memory_mib()),
            ),
            (Boots::Hypervisor, None) => bail!("{}: no config to size the machine", self.name),
        };
        if self.ips.is_some() && self.emulator != EmulatorKind::Bochs {
            bail!("{}: ips is for Bochs", self.name);
        }
        if self.firmware == Firmware::Uefi && self.emulator == EmulatorKind::Bochs {
            bail!("{}: UEFI is for QEMU (Bochs boots its BIOS)", self.name);
        }
        let emulator = match self.emulator {
            EmulatorKind::Bochs => Emulator::Bochs {
                cpus,
                memory_mib,
                ips: self.ips.unwrap_or(DEFAULT_BOCHS_IPS),
            },
            EmulatorKind::QemuTcg => Emulator::QemuTcg {
                cpus,
                memory_mib,
                firmware: self.firmware,
            },
            EmulatorKind::QemuKvm => Emulator::QemuKvm {
                cpus,
                memory_mib,
                firmware: self.firmware,
            },
        };
        emulator.validate()?;
        Ok(emulator)
    }
}

/// The images a scenario boots, resolved before its run directory is made.
#[derive(Debug)]
struct Images {
    /// The hypervisor (none when the RT kernel boots alone).
    hypervisor: Option<PathBuf>,
    /// The RT kernel (none when nothing names its module).
    rt: Option<PathBuf>,
}

fn write(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty directory for one test.
    fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "bulkhead-e2e-scenario-{test}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Images given as files, so that nothing is read from the environment.
    fn given(scenario: Scenario) -> Scenario {
        scenario
            .hypervisor_file("/i/hv.elf")
            .linux_files("/g/vmlinux-6.1", "/g/initramfs.cpio")
    }

    fn plan(scenario: &Scenario, dir: &Path) -> Result<(String, Emulator)> {
        let images = scenario.images()?;
        let (spec, emulator) = scenario.plan(&images, dir)?;
        Ok((crate::grub_cfg(&spec)?, emulator))
    }

    /// The lines of `grub.cfg` between `menuentry` and `boot`.
    fn entry(cfg: &str) -> Vec<&str> {
        cfg.lines()
            .skip_while(|l| !l.starts_with("menuentry"))
            .skip(1)
            .map(str::trim)
            .take_while(|l| *l != "boot")
            .collect()
    }

    #[test]
    fn stub_boot_has_the_rt_module_and_a_machine_from_the_config() {
        let dir = temp_dir("stub");
        let scenario = given(Scenario::new("x"))
            .config("bochs-2cpu.toml")
            .rt_file("/r/rt-kernel")
            .hv_cmdline("exit_report_s=1")
            .rt_cmdline("selftest=kernel  latency_period_us=1000");
        let (cfg, emulator) = plan(&scenario, &dir).unwrap();
        assert_eq!(
            entry(&cfg),
            [
                "multiboot2 /boot/bulkhead/hypervisor.elf linux=stub exit_report_s=1",
                "module2 /boot/bulkhead/config.bin config",
                "module2 /boot/bulkhead/rt-kernel rt.elf selftest=kernel latency_period_us=1000",
            ]
        );
        assert_eq!(
            emulator,
            Emulator::Bochs {
                cpus: 2,
                memory_mib: 1024,
                ips: DEFAULT_BOCHS_IPS
            }
        );
        assert_eq!(scenario.loaded_config().unwrap().cpus(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn linux_kernel_gets_its_args_and_initrd() {
        let dir = temp_dir("linux");
        let scenario = given(Scenario::new("x"))
            .config("bochs-4cpu.toml")
            .rt_file("/r/rt-kernel")
            .linux(LinuxMode::kernel("bulkhead.init=poweroff"))
            .emulator(EmulatorKind::QemuTcg)
            .cpus(3);
        let (cfg, emulator) = plan(&scenario, &dir).unwrap();
        assert_eq!(
            entry(&cfg),
            [
                "multiboot2 /boot/bulkhead/hypervisor.elf",
                "module2 /boot/bulkhead/config.bin config",
                "module2 /boot/bulkhead/rt-kernel rt.elf",
                "module2 /boot/bulkhead/vmlinux-6.1 vmlinuz bulkhead.init=poweroff",
                "module2 /boot/bulkhead/initramfs.cpio initrd.img",
            ]
        );
        assert_eq!(
            emulator,
            Emulator::QemuTcg {
                cpus: 3,
                memory_mib: 2048,
                firmware: Firmware::Bios,
            }
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn written_config_and_raw_blob_land_in_the_run_directory() {
        let dir = temp_dir("files");
        let text = fs::read_to_string(example_config("bochs-2cpu.toml")).unwrap();
        let scenario = given(Scenario::new("x"))
            .config_text("mine.toml", text)
            .rt_file("/r/rt-kernel");
        assert!(scenario.loaded_config().is_err());
        plan(&scenario, &dir).unwrap();
        assert!(dir.join("mine.toml").is_file());

        let scenario = given(Scenario::new("x"))
            .config("bochs-2cpu.toml")
            .config_blob("corrupt.bin", vec![0xa5; 16]);
        let (cfg, emulator) = plan(&scenario, &dir).unwrap();
        assert_eq!(fs::read(dir.join("corrupt.bin")).unwrap(), [0xa5; 16]);
        assert_eq!(
            entry(&cfg),
            [
                "multiboot2 /boot/bulkhead/hypervisor.elf linux=stub",
                "module2 /boot/bulkhead/config.bin config",
            ]
        );
        assert_eq!(emulator.cpus(), 2);

        let omitted = given(Scenario::new("x"))
            .config("bochs-2cpu.toml")
            .without_config_module();
        let (cfg, _) = plan(&omitted, &dir).unwrap();
        assert_eq!(
            entry(&cfg),
            ["multiboot2 /boot/bulkhead/hypervisor.elf linux=stub"]
        );
        let confused = omitted.rt_cmdline("selftest=kernel");
        assert!(plan(&confused, &dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rt_bare_boots_the_kernel_alone() {
        let dir = temp_dir("bare");
        let scenario = Scenario::rt_bare("x")
            .rt_file("/r/rt-kernel")
            .rt_cmdline("selftest=kernel")
            .emulator(EmulatorKind::QemuTcg);
        let (cfg, emulator) = plan(&scenario, &dir).unwrap();
        assert_eq!(
            entry(&cfg),
            ["multiboot2 /boot/bulkhead/rt.elf selftest=kernel"]
        );
        assert_eq!(
            emulator,
            Emulator::QemuTcg {
                cpus: RT_BARE_CPUS,
                memory_mib: RT_BARE_MEMORY_MIB,
                firmware: Firmware::Bios,
            }
        );
        let with_config = scenario.clone().config("bochs-2cpu.toml");
        assert!(plan(&with_config, &dir).is_err());
        let with_ips = scenario.ips(1);
        assert!(plan(&with_ips, &dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_hypervisor_boot_needs_a_config() {
        let dir = temp_dir("noconfig");
        let scenario = given(Scenario::new("x")).rt_file("/r/rt-kernel");
        assert!(plan(&scenario, &dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
