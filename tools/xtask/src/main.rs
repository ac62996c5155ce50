//! `cargo xtask`: the one entry point for building, booting and testing Bulkhead.
//!
//! - `build`: the hypervisor image and the RT kernel image (freestanding multiboot2 ELFs);
//! - `image`: the image plus a compiled config, the RT kernel and the Linux guest (Debian's
//!   kernel and an initramfs, see [`guest`]), in a GRUB ISO;
//! - `run`: boots that ISO headless in an emulator with Linux's console on the terminal, to type
//!   into (see [`console`]; `--rt-bare`: the RT kernel alone, without the hypervisor);
//! - `test`: host tests, then the end-to-end tests that boot emulators;
//! - `guest`: the Linux guest's artefacts alone;
//! - `config check|compile`: the config tool;
//! - `bench ipc`: the host IPC benchmark (the channel ring against its baselines); `bench
//!   latency` and `bench linux-boot`: the RT kernel's latency and Linux's boot time, bare and
//!   under the hypervisor, in Bochs' virtual time;
//! - `install`: the images and the `bulkhead` tool installed into a system's root by the tool's
//!   own `install` (the machine itself, or an image being built);
//! - `install-road`: the whole road from a Debian disk to a partitioned one, in the emulator
//!   (opt-in: see [`install_road`]);
//! - `deps`: the Debian packages the above need.
//!
//! CI calls the same commands a person does (`.ci/run` runs `cargo xtask test`). The work itself
//! lives in the `bulkhead-e2e` library, shared with the end-to-end tests; this crate is the
//! command line around it and never boots anything on its own.

mod bench;
mod bench_irq;
mod bench_latency;
mod bench_linux_boot;
mod bench_wake_path;
mod console;
mod deb;
mod deps;
mod guest;
mod install_road;
mod latency_plot;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bulkhead_abi::console::{HALTED, STEADY_STATE};
use bulkhead_e2e::config::LoadedConfig;
use bulkhead_e2e::{
    ConfigModule, Emulator, Event, Expect, Firmware, IsoSpec, Port, Run, RunDir, WaitErrorKind,
};
use clap::{Args, Parser, Subcommand};

/// The config `image` and `run` use unless told otherwise.
const DEFAULT_CONFIG: &str = "configs/bochs-2cpu.toml";

/// How often `run` reports that the emulator is still running.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// `run --until-settled`'s time limit unless `--timeout` says otherwise.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Build, boot and test Bulkhead", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build the hypervisor and RT kernel images and print their paths and sizes.
    Build {
        /// Build with the dev profile instead of release.
        #[arg(long)]
        debug: bool,
        /// Link this RT application crate into the RT image too (repeatable; see "Writing an
        /// RT application" in the README).
        #[arg(long = "rt-app", value_name = "PATH")]
        rt_apps: Vec<PathBuf>,
    },
    /// Build the image and a bootable GRUB ISO with a compiled config.
    Image {
        #[command(flatten)]
        iso: IsoArgs,
        /// Where to write the ISO [default: target/bulkhead.iso].
        #[arg(short = 'o', long = "out", value_name = "OUT")]
        out: Option<PathBuf>,
    },
    /// Build, make the ISO and boot it headless, streaming the serial consoles.
    ///
    /// COM1 (the hypervisor and the RT kernel) is also written to target/runs/run/serial.log,
    /// COM2 (Linux) to target/runs/run/com2.log; the terminal shows both. Exit status: 0 when the
    /// hypervisor reached steady state (and printed no failure), 1 otherwise, 130 on Ctrl-C.
    Run(RunArgs),
    /// Run the host tests, build the image, then run the end-to-end (emulator) tests.
    Test {
        /// Only the host tests (`cargo test` at the workspace root).
        #[arg(long, conflicts_with = "e2e_only")]
        host_only: bool,
        /// Only the end-to-end tests.
        #[arg(long)]
        e2e_only: bool,
        /// Run only the tests whose names contain PAT.
        #[arg(long, value_name = "PAT")]
        filter: Option<String>,
    },
    /// Check or compile a machine config.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Run a benchmark.
    Bench {
        #[command(subcommand)]
        command: BenchCmd,
    },
    /// Check the Debian packages the emulator runs need; install them when root.
    Deps,
    /// Build the Debian package for a PC to partition: the `bulkhead` tool (static) and the
    /// hypervisor's and the RT kernel's images, which `bulkhead install` takes by default.
    Deb {
        /// Where the package goes [default: target/bulkhead_VERSION_amd64.deb].
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Fetch Debian's kernel and busybox-static (cached in target/linux-guest/), make the
    /// uncompressed vmlinux and the initramfs, and print where they are.
    Guest,
    /// Build the images and the `bulkhead` tool, and install them into a system's root with
    /// `bulkhead install` (`/` on the machine itself, as root; an image's root when building
    /// one, where update-grub is left to its chroot).
    Install {
        /// The system's root.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// The config to install (from `bulkhead probe`, reviewed).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The RT kernel's command line [default: its status and log channels].
        #[arg(long, value_name = "STR")]
        rt_cmdline: Option<String>,
        /// The kernel in the root's /boot to boot as the Linux partition, by version.
        #[arg(long, value_name = "VERSION")]
        kernel: Option<String>,
        /// Do not run update-grub.
        #[arg(long)]
        no_update_grub: bool,
        /// Install even where the probe finds the machine cannot run Bulkhead.
        #[arg(long)]
        force: bool,
    },
    /// The whole road, end to end in Bochs (opt-in, tens of minutes; as root): a Debian disk
    /// image made with debootstrap boots alone, probes its machine and installs Bulkhead's
    /// package as a user would, reboots into Bulkhead, and shows the RT partition from the
    /// installed Debian under systemd.
    InstallRoad(install_road::RoadArgs),
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Validate a config; print the plan, or the problem with its file:line:col and field.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Compile a config into the binary blob the hypervisor reads.
    Compile {
        /// The TOML file.
        file: PathBuf,
        /// Where to write the blob.
        #[arg(short = 'o', long = "out", value_name = "OUT")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// The channel ring against a cache-line ping-pong, rtrb, POSIX message queues, a pipe and
    /// a Unix socket: latency and throughput, 8 B to 64 KiB, with ratios.
    Ipc(bench::IpcArgs),
    /// The RT kernel's latency task bare and under the hypervisor in Bochs (same kernel, CPU
    /// model, ips and virtual clock), side by side with the ratio and the RT CPU's VM exits,
    /// the wake-up path stage by stage, the longest interrupts-off section, the control
    /// loop's misses, and the histograms as an SVG; `--linux-load` adds real Linux, idle and
    /// loaded.
    Latency(bench_latency::LatencyArgs),
    /// A device interrupt's latency (the HPET's, whose event time is known) from the device to
    /// the RT handler task, or (`--device nic`) an RT NIC driver's cyclic frame exchange and
    /// its round trips, bare and under the hypervisor in Bochs, side by side with the ratio
    /// and the RT CPU's VM exits while it takes the interrupts.
    Irq(bench_irq::IrqArgs),
    /// Linux's boot from kernel entry to its init in Bochs' virtual time, bare and under the
    /// hypervisor (same kernel, initramfs, number of Linux CPUs, emulated RAM), side by side
    /// with the ratio and the Linux CPU's VM exits per reason.
    ///
    /// Bare, GRUB boots Debian's bzImage on as many CPUs as the config gives Linux; under the
    /// hypervisor, the config's ISO with the vmlinux (the same kernel) beside the RT kernel.
    /// Both runs go at once and take several minutes of wall time; their files stay in
    /// target/runs/bench_linux_boot_bare/ and target/runs/bench_linux_boot_hypervisor/.
    LinuxBoot(bench_linux_boot::LinuxBootArgs),
    /// The instructions the RT kernel executes from its timer interrupt to the woken latency
    /// task, counted exactly (the bare kernel in QEMU, one instruction per translation block)
    /// and attributed to its functions: min, median and max over the paths logged, and the
    /// median path function by function.
    WakePath(bench_wake_path::WakePathArgs),
}

#[derive(Args, Debug)]
struct IsoArgs {
    /// The machine config [default: configs/bochs-2cpu.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The hypervisor's command line (e.g. `selftest=unhandled-exit exit_report_s=1`).
    #[arg(long, value_name = "STR", default_value = "")]
    hv_cmdline: String,
    /// The RT kernel's command line (e.g. `selftest=kernel latency_period_us=100`), on its
    /// module line under the hypervisor, on the kernel line with --rt-bare.
    #[arg(long, value_name = "STR", default_value = "")]
    rt_cmdline: String,
    /// Give Linux Debian's compressed bzImage under the config's `[linux] kernel` module name
    /// instead of the uncompressed vmlinux taken out of it (which boots faster in an emulator).
    #[arg(long)]
    linux_bzimage: bool,
    /// Link this RT application crate into the RT image too (repeatable).
    #[arg(long = "rt-app", value_name = "PATH")]
    rt_apps: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    iso: IsoArgs,
    /// Emulated CPUs [default: the CPUs the config names].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=255))]
    cpus: Option<u32>,
    /// Emulated RAM in MiB [default: the config's highest address plus room for the firmware,
    /// rounded up to 256 MiB].
    #[arg(long, value_name = "MIB")]
    memory: Option<u32>,
    /// Boot in QEMU (TCG, no VT-x) instead of the default emulator.
    #[arg(long, conflicts_with = "kvm")]
    qemu: bool,
    /// Boot in QEMU with KVM and nested VT-x (the default where the host offers it).
    #[arg(long)]
    kvm: bool,
    /// Boot in Bochs with this many emulated instructions per second (1 to 2147483647)
    /// [default emulator's default: 50000000].
    #[arg(long, value_name = "N", conflicts_with_all = ["qemu", "kvm"])]
    ips: Option<u32>,
    /// Wall-clock limit in seconds; 0 for none [default: 600 with --until-settled, else none].
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Stop at `bulkhead: steady state` or `bulkhead: halted` instead of running on.
    #[arg(long)]
    until_settled: bool,
    /// Build the image with the dev profile.
    #[arg(long)]
    debug: bool,
    /// Boot the RT kernel alone from GRUB (bare mode, no hypervisor, no config); stops at
    /// nothing but the time limit [default CPUs: 2].
    #[arg(long, conflicts_with_all = ["kvm", "until_settled", "linux_bzimage", "console"])]
    rt_bare: bool,
    /// What the terminal shows: Linux's console, the hypervisor's and the RT kernel's lines,
    /// or both [default: linux on a terminal, both with --until-settled or without a
    /// terminal]. Keys always go to Linux's console; Ctrl-] quits.
    #[arg(long, value_enum, value_name = "VIEW")]
    console: Option<console::View>,
    /// The run directory's name under target/runs/.
    #[arg(long, value_name = "NAME", default_value = "run")]
    name: String,
    /// Boot QEMU's machine with UEFI firmware (OVMF) instead of its BIOS; the ISO boots
    /// either way (with --qemu or --kvm).
    #[arg(long, conflicts_with = "ips")]
    uefi: bool,
}

impl RunArgs {
    fn firmware(&self) -> Firmware {
        if self.uefi {
            Firmware::Uefi
        } else {
            Firmware::Bios
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ctrl-C: stop the emulators (they are in process groups of their own, out of the
    // terminal's reach), then leave with the conventional status.
    if let Err(e) = ctrlc::set_handler(|| {
        console::restore_terminal();
        eprintln!("\n[xtask] interrupted: stopping the emulator");
        bulkhead_e2e::kill_all_emulators();
        std::process::exit(130);
    }) {
        eprintln!("[xtask] warning: cannot install the Ctrl-C handler: {e}");
    }
    let result = match cli.command {
        Cmd::Build { debug, rt_apps } => build(debug, &rt_apps),
        Cmd::Image { iso, out } => image(&iso, out),
        Cmd::Run(args) => run(&args),
        Cmd::Test {
            host_only,
            e2e_only,
            filter,
        } => test::run(!e2e_only, !host_only, filter.as_deref()),
        Cmd::Config {
            command: ConfigCmd::Check { file },
        } => config_check(&file),
        Cmd::Config {
            command: ConfigCmd::Compile { file, out },
        } => config_compile(&file, &out),
        Cmd::Bench {
            command: BenchCmd::Ipc(args),
        } => bench::ipc(&args),
        Cmd::Bench {
            command: BenchCmd::Latency(args),
        } => bench_latency(&args),
        Cmd::Bench {
            command: BenchCmd::Irq(args),
        } => bench_irq(&args),
        Cmd::Bench {
            command: BenchCmd::LinuxBoot(args),
        } => bench_linux_boot(&args),
        Cmd::Bench {
            command: BenchCmd::WakePath(args),
        } => bench_wake_path(&args),
        Cmd::Deps => deps::ensure(false).map(|()| ExitCode::SUCCESS),
        Cmd::Deb { output } => deb(output),
        Cmd::InstallRoad(args) => install_road::run(&args),
        Cmd::Guest => guest(),
        Cmd::Install {
            root,
            config,
            rt_cmdline,
            kernel,
            no_update_grub,
            force,
        } => install(
            &root,
            &config,
            rt_cmdline.as_deref(),
            kernel.as_deref(),
            no_update_grub,
            force,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if bulkhead_e2e::interrupted() {
                // The Ctrl-C handler is exiting the process.
                loop {
                    std::thread::park();
                }
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one step between `[xtask] <step> ...` progress lines that give its wall time.
pub(crate) fn step<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("[xtask] {what} ...");
    let started = Instant::now();
    let result = f();
    let verdict = if result.is_ok() { "done" } else { "failed" };
    eprintln!(
        "[xtask] {what} ... {verdict} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    result
}

/// A path as given on the command line (relative to where `cargo xtask` was started), or the
/// default, relative to the workspace root.
fn user_path(given: Option<&Path>, default: &str) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| bulkhead_e2e::workspace_root().join(default))
}

/// `path` relative to the workspace root where it lies inside it, for shorter messages.
pub(crate) fn shown(path: &Path) -> String {
    let root = bulkhead_e2e::workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn build_image(debug: bool) -> Result<PathBuf> {
    let profile = if debug { "dev" } else { "release" };
    step(&format!("build hypervisor image ({profile})"), || {
        bulkhead_e2e::build_hypervisor(!debug)
    })
}

pub(crate) fn build_rt_image(debug: bool) -> Result<PathBuf> {
    build_rt_image_with(debug, &[])
}

/// The RT image, with the applications at `apps` beside the default ones.
pub(crate) fn build_rt_image_with(debug: bool, apps: &[PathBuf]) -> Result<PathBuf> {
    let profile = if debug { "dev" } else { "release" };
    if apps.is_empty() {
        return step(&format!("build RT kernel image ({profile})"), || {
            bulkhead_e2e::build_rt_kernel(!debug)
        });
    }
    step(
        &format!(
            "build RT kernel image with {} more applications ({profile})",
            apps.len()
        ),
        || bulkhead_e2e::build_rt_kernel_with_apps(!debug, apps),
    )
}

fn build(debug: bool, rt_apps: &[PathBuf]) -> Result<ExitCode> {
    for elf in [build_image(debug)?, build_rt_image_with(debug, rt_apps)?] {
        let size = std::fs::metadata(&elf)?.len();
        println!(
            "{} ({size} bytes, {:.1} KiB)",
            shown(&elf),
            size as f64 / 1024.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_latency(args: &bench_latency::LatencyArgs) -> Result<ExitCode> {
    deps::ensure(true)?;
    let config = bulkhead_e2e::config::load(&user_path(args.config.as_deref(), DEFAULT_CONFIG))?;
    let (hypervisor, rt_kernel) = (build_image(false)?, build_rt_image(false)?);
    let two_cpu_config = if args.two_rt_cpus {
        Some(bulkhead_e2e::config::load(&bulkhead_e2e::example_config(
            "bochs-4cpu.toml",
        ))?)
    } else {
        None
    };
    let linux = if args.linux_load || args.linux_hostile {
        Some(guest::prepare_step()?)
    } else {
        None
    };
    bench_latency::run(
        args,
        &config,
        two_cpu_config.as_ref(),
        hypervisor,
        rt_kernel,
        linux.as_ref(),
    )
}

fn bench_irq(args: &bench_irq::IrqArgs) -> Result<ExitCode> {
    deps::ensure(true)?;
    let config = bulkhead_e2e::config::load(&bulkhead_e2e::example_config(&args.config))?;
    let (hypervisor, rt_kernel) = (build_image(false)?, build_rt_image(false)?);
    bench_irq::run(args, &config, hypervisor, rt_kernel)
}

fn bench_wake_path(args: &bench_wake_path::WakePathArgs) -> Result<ExitCode> {
    deps::ensure(true)?;
    let rt_kernel = build_rt_image(false)?;
    bench_wake_path::run(args, &rt_kernel)
}

fn bench_linux_boot(args: &bench_linux_boot::LinuxBootArgs) -> Result<ExitCode> {
    deps::ensure(true)?;
    let config = bulkhead_e2e::config::load(&user_path(args.config.as_deref(), DEFAULT_CONFIG))?;
    let (hypervisor, rt_kernel) = (build_image(false)?, build_rt_image(false)?);
    let linux = guest::prepare_step()?;
    bench_linux_boot::run(args, &config, hypervisor, rt_kernel, &linux)
}

/// The hypervisor's ISO: its config, command line, the RT kernel under the module name the
/// config gives (`rt.image`) with the RT command line, and the Linux kernel (the vmlinux, or
/// the bzImage with `--linux-bzimage`) and initramfs under `[linux] kernel` and `initrd`.
fn iso_spec(
    args: &IsoArgs,
    config: &LoadedConfig,
    debug: bool,
    output: PathBuf,
) -> Result<IsoSpec> {
    let elf = build_image(debug)?;
    let rt_elf = build_rt_image_with(debug, &args.rt_apps)?;
    let linux = guest::prepare_step()?;
    Ok(
        IsoSpec::new(output, elf, ConfigModule::Toml(config.path.clone()))
            .cmdline(args.hv_cmdline.clone())
            .module_with_args(&config.rt_image, rt_elf, args.rt_cmdline.clone())
            .linux_modules(config, linux.kernel(args.linux_bzimage), &linux.initramfs),
    )
}

/// `cargo xtask install`: the release images and the static tool, installed by the tool itself.
fn install(
    root: &Path,
    config: &Path,
    rt_cmdline: Option<&str>,
    kernel: Option<&str>,
    no_update_grub: bool,
    force: bool,
) -> Result<ExitCode> {
    // Check the config before spending time on the build.
    bulkhead_e2e::config::load(config)?;
    let (hypervisor, rt_image) = (build_image(false)?, build_rt_image(false)?);
    let tool = step(
        "build the Linux tool (static)",
        bulkhead_e2e::build_linux_tool,
    )?;
    let mut command = std::process::Command::new(&tool);
    command
        .arg("install")
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(config)
        .arg("--hypervisor")
        .arg(&hypervisor)
        .arg("--rt-image")
        .arg(&rt_image);
    if let Some(line) = rt_cmdline {
        command.args(["--rt-cmdline", line]);
    }
    if let Some(version) = kernel {
        command.args(["--kernel", version]);
    }
    if no_update_grub {
        command.arg("--no-update-grub");
    }
    if force {
        command.arg("--force");
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run {}", tool.display()))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `cargo xtask deb`.
fn deb(output: Option<PathBuf>) -> Result<ExitCode> {
    println!("{}", build_deb(output)?.display());
    Ok(ExitCode::SUCCESS)
}

/// The Debian package: the images and the static tool built, staged and packed by
/// `dpkg-deb`; returns where it is.
pub(crate) fn build_deb(output: Option<PathBuf>) -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let (hypervisor, rt_image) = (build_image(false)?, build_rt_image(false)?);
    let tool = step(
        "build the Linux tool (static)",
        bulkhead_e2e::build_linux_tool,
    )?;
    let target = bulkhead_e2e::target_dir();
    let output =
        output.unwrap_or_else(|| target.join(format!("bulkhead_{version}_amd64.deb")));
    let stage = target.join("deb").join("stage");
    deb::stage(
        &stage,
        &deb::Contents {
            version,
            tool: &tool,
            hypervisor: &hypervisor,
            rt_image: &rt_image,
            readme: &bulkhead_e2e::workspace_root().join("README.md"),
        },
    )?;
    deb::build(&stage, &output)?;
    Ok(output)
}

/// `cargo xtask guest`: the Linux guest's artefacts, where they are and how big.
fn guest() -> Result<ExitCode> {
    let linux = guest::prepare_step()?;
    println!(
        "kernel {} (release {}); busybox {}",
        linux.kernel_package, linux.release, linux.busybox_package
    );
    for (what, path) in [
        ("bzImage", &linux.bzimage),
        ("vmlinux", &linux.vmlinux),
        ("initramfs", &linux.initramfs),
    ] {
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        println!(
            "{what:<9}  {} ({:.1} MiB)",
            shown(path),
            size as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn image(args: &IsoArgs, out: Option<PathBuf>) -> Result<ExitCode> {
    deps::ensure(true)?;
    // Check the config before spending time on the build.
    let config = user_path(args.config.as_deref(), DEFAULT_CONFIG);
    let config = bulkhead_e2e::config::load(&config)?;
    let output = user_path(out.as_deref(), "target/bulkhead.iso");
    let spec = iso_spec(args, &config, false, output)?;
    let iso = step("make ISO", || bulkhead_e2e::build_iso(&spec))?;
    let size = std::fs::metadata(&iso)?.len();
    println!(
        "{} ({:.1} MiB)",
        shown(&iso),
        size as f64 / (1024.0 * 1024.0)
    );
    Ok(ExitCode::SUCCESS)
}

fn run(args: &RunArgs) -> Result<ExitCode> {
    deps::ensure(true)?;
    if args.rt_bare {
        return run_rt_bare(args);
    }
    let config_path = user_path(args.iso.config.as_deref(), DEFAULT_CONFIG);
    let config = bulkhead_e2e::config::load(&config_path)?;
    let cpus = match args.cpus {
        Some(n) => n,
        None if config.cpus() > 0 => config.cpus(),
        None => bail!("{} names no CPUs; give --cpus", config_path.display()),
    };
    let memory_mib = args.memory.unwrap_or_else(|| config.default_memory_mib());
    let firmware = args.firmware();
    let emulator = if args.qemu {
        Emulator::QemuTcg {
            cpus,
            memory_mib,
            firmware,
        }
    } else if args.kvm {
        if !bulkhead_e2e::kvm_nested_available() {
            eprintln!("[xtask] warning: this host does not announce nested VT-x; trying anyway");
        }
        Emulator::QemuKvm {
            cpus,
            memory_mib,
            firmware,
        }
    } else if let Some(ips) = args.ips {
        Emulator::Bochs {
            cpus,
            memory_mib,
            ips,
        }
    } else {
        Emulator::default_for(cpus, memory_mib)
    };
    if args.uefi && matches!(emulator, Emulator::Bochs { .. }) {
        bail!(
            "--uefi boots QEMU's machine with OVMF: give --qemu or --kvm (Bochs has its BIOS only)"
        );
    }
    emulator.validate()?;
    let timeout = match args.timeout {
        Some(0) => None,
        Some(secs) => Some(Duration::from_secs(secs)),
        None if args.until_settled => Some(SETTLE_TIMEOUT),
        None => None,
    };

    let dir = RunDir::create(&args.name)?;
    let spec = iso_spec(&args.iso, &config, args.debug, dir.join("bulkhead.iso"))?;
    let iso = step("make ISO", || bulkhead_e2e::build_iso(&spec))?;

    let mut expect = Expect::new().line(STEADY_STATE);
    expect = if args.until_settled {
        expect.stop_on(HALTED)
    } else {
        expect.to_the_end()
    };
    let keyboard = console::Keyboard::of_stdin();
    let on_terminal = keyboard == console::Keyboard::Terminal;
    let view = args
        .console
        .unwrap_or_else(|| console::View::default_for(on_terminal, args.until_settled));
    let (com1, com2) = (shown(&dir.join("serial.log")), shown(&dir.join("com2.log")));
    eprintln!(
        "[xtask] booting in {emulator}{}",
        timeout.map_or(String::new(), |t| format!(", limit {}s", t.as_secs()))
    );
    eprintln!(
        "[xtask] this terminal shows {}; the hypervisor's and the RT kernel's console (COM1) \
         is in {com1}, Linux's (COM2) in {com2}",
        match view {
            console::View::Linux => "Linux's console",
            console::View::Hypervisor => "the hypervisor's and the RT kernel's lines",
            console::View::Both => "both consoles' lines",
        }
    );
    if on_terminal {
        eprintln!(
            "[xtask] what you type goes to Linux's console; {} quits",
            console::QUIT_KEY_NAME
        );
    }
    let mut run = Run::start_with_linux_console(&dir, &iso, &emulator, view.linux_tap())?;
    let terminal = if keyboard == console::Keyboard::Background {
        None
    } else {
        let keys = run.linux_console()?;
        let terminal = console::TerminalGuard::keys_to_linux();
        std::thread::Builder::new()
            .name("keys".into())
            .spawn(move || console::forward_keys(keys))
            .context("cannot start the thread that forwards keys to Linux")?;
        terminal
    };
    let name = emulator.name();
    let mut next_report = PROGRESS_EVERY;
    let mut linux_spoke = false;
    let result = run.watch(&expect, timeout, &mut |event| match event {
        Event::Line(port, line) => {
            linux_spoke |= port == Port::Com2;
            if view.prints_line(port) {
                println!("{line}");
            } else if console::is_milestone(port, line) {
                eprintln!("\r[xtask] COM1: {line}");
            }
        }
        Event::Tick {
            elapsed,
            serial_bytes,
        } => {
            // Once Linux writes its console, progress lines would cut into it.
            if elapsed >= next_report && (view != console::View::Linux || !linux_spoke) {
                next_report += PROGRESS_EVERY;
                eprintln!(
                    "[xtask] {name} running, {}s, serial {:.1} KiB",
                    elapsed.as_secs(),
                    serial_bytes as f64 / 1024.0
                );
            }
        }
    });
    drop(terminal);
    if console::quit_requested() {
        run.stop();
        eprintln!(
            "\n[xtask] {name}: quit with {}; run ended after {:.1}s",
            console::QUIT_KEY_NAME,
            run.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let stopped = run.stop();
    match result {
        Ok(outcome) => {
            eprintln!(
                "[xtask] {name}: steady state reached; run ended after {:.1}s{}",
                outcome.elapsed.as_secs_f64(),
                stopped
                    .map(|s| format!(" (emulator: {s})"))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if matches!(e.kind, WaitErrorKind::Interrupted) => Ok(ExitCode::from(130)),
        Err(e) => {
            let why = match &e.kind {
                WaitErrorKind::Timeout(limit) => {
                    format!("no steady state within {}s", limit.as_secs())
                }
                WaitErrorKind::FailLine(line) => format!("failure on the console: {line}"),
                WaitErrorKind::Stopped(line) => {
                    format!("stopped with {line:?} before steady state")
                }
                WaitErrorKind::Exited(status) => format!(
                    "emulator exited{} before steady state (see {})",
                    status.map(|s| format!(" ({s})")).unwrap_or_default(),
                    shown(&dir.join(emulator.log_name()))
                ),
                WaitErrorKind::Interrupted => "interrupted".into(),
            };
            eprintln!(
                "[xtask] {name}: {why}; run ended after {:.1}s",
                e.elapsed.as_secs_f64()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `run --rt-bare`: the RT kernel alone from GRUB, in Bochs (default) or QEMU TCG.
fn run_rt_bare(args: &RunArgs) -> Result<ExitCode> {
    let cpus = args.cpus.unwrap_or(2);
    let memory_mib = args.memory.unwrap_or(256);
    let emulator = if args.qemu {
        Emulator::QemuTcg {
            cpus,
            memory_mib,
            firmware: args.firmware(),
        }
    } else {
        Emulator::Bochs {
            cpus,
            memory_mib,
            ips: args.ips.unwrap_or(bulkhead_e2e::DEFAULT_BOCHS_IPS),
        }
    };
    if args.uefi && matches!(emulator, Emulator::Bochs { .. }) {
        bail!(
            "--uefi boots QEMU's machine with OVMF: give --qemu or --kvm (Bochs has its BIOS only)"
        );
    }
    emulator.validate()?;
    let timeout = match args.timeout {
        Some(0) | None => None,
        Some(secs) => Some(Duration::from_secs(secs)),
    };
    let elf = build_rt_image_with(args.debug, &args.iso.rt_apps)?;
    let dir = RunDir::create("run")?;
    let spec =
        IsoSpec::rt_bare(dir.join("bulkhead-rt.iso"), elf).cmdline(args.iso.rt_cmdline.clone());
    let iso = step("make ISO", || bulkhead_e2e::build_iso(&spec))?;
    let expect = Expect::new()
        .line("latency cpu=")
        .stop_on("bulkhead-rt: halted")
        .to_the_end();
    eprintln!(
        "[xtask] booting the RT kernel alone in {emulator}; serial console in {}{}",
        shown(&dir.join("serial.log")),
        timeout.map_or(String::new(), |t| format!(", limit {}s", t.as_secs()))
    );
    let mut run = Run::start(&dir, &iso, &emulator)?;
    let result = run.watch(&expect, timeout, &mut |event| {
        if let Event::Line(_, line) = event {
            println!("{line}");
        }
    });
    run.stop();
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) if matches!(e.kind, WaitErrorKind::Interrupted) => Ok(ExitCode::from(130)),
        Err(e) => {
            eprintln!("[xtask] {}: run ended: {:?}", emulator.name(), e.kind);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn config_check(file: &Path) -> Result<ExitCode> {
    match bulkhead_e2e::config::load(file) {
        Ok(config) => {
            print!("{}", config.description);
            if !config.description.ends_with('\n') {
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn config_compile(file: &Path, out: &Path) -> Result<ExitCode> {
    let config = match bulkhead_e2e::config::load(file) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    std::fs::write(out, &config.blob).with_context(|| format!("cannot write {}", out.display()))?;
    println!("{}: {} bytes", out.display(), config.blob.len());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_from([
            "xtask",
            "run",
            "--cpus",
            "4",
            "--memory",
            "2048",
            "--ips",
            "100000000",
            "--timeout",
            "300",
            "--until-settled",
            "--hv-cmdline",
            "selftest=unhandled-exit",
        ])
        .unwrap();
        let Cmd::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.cpus, Some(4));
        assert_eq!(args.ips, Some(100_000_000));
        assert!(args.until_settled);
        assert_eq!(args.iso.hv_cmdline, "selftest=unhandled-exit");
        assert!(Cli::try_parse_from(["xtask", "run", "--qemu", "--kvm"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "run", "--qemu", "--ips", "5"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "test", "--host-only", "--e2e-only"]).is_err());
        let cli = Cli::try_parse_from([
            "xtask",
            "run",
            "--rt-bare",
            "--qemu",
            "--rt-cmdline",
            "selftest=kernel",
        ])
        .unwrap();
        let Cmd::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.rt_bare && args.qemu);
        assert_eq!(args.iso.rt_cmdline, "selftest=kernel");
        // Under the hypervisor, the RT command line goes on the RT module's line.
        let cli =
            Cli::try_parse_from(["xtask", "run", "--rt-cmdline", "latency_period_us=100"]).unwrap();
        let Cmd::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(!args.rt_bare && !args.iso.linux_bzimage);
        assert_eq!(args.iso.rt_cmdline, "latency_period_us=100");
        let cli = Cli::try_parse_from(["xtask", "image", "--linux-bzimage"]).unwrap();
        let Cmd::Image { iso, .. } = cli.command else {
            panic!("not image")
        };
        assert!(iso.linux_bzimage);
        let cli = Cli::try_parse_from(["xtask", "run", "--linux-bzimage"]).unwrap();
        let Cmd::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.iso.linux_bzimage);
        assert!(Cli::try_parse_from(["xtask", "run", "--rt-bare", "--linux-bzimage"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["xtask", "guest"]).unwrap().command,
            Cmd::Guest
        ));
        let cli = Cli::try_parse_from(["xtask", "bench", "latency", "--seconds", "3"]).unwrap();
        let Cmd::Bench {
            command: BenchCmd::Latency(args),
        } = cli.command
        else {
            panic!("not bench latency")
        };
        assert_eq!((args.seconds, args.period_us), (3, 1000));
        assert!(Cli::try_parse_from(["xtask", "bench", "latency", "--period-us", "5"]).is_err());
        let cli = Cli::try_parse_from(["xtask", "bench", "irq", "--device", "nic"]).unwrap();
        let Cmd::Bench {
            command: BenchCmd::Irq(args),
        } = cli.command
        else {
            panic!("not bench irq")
        };
        assert_eq!(
            (args.device, args.period_us),
            (bench_irq::Device::Nic, None)
        );
        assert!(Cli::try_parse_from(["xtask", "bench", "irq", "--device", "usb"]).is_err());
        let cli = Cli::try_parse_from([
            "xtask",
            "bench",
            "linux-boot",
            "--config",
            "configs/bochs-4cpu.toml",
        ])
        .unwrap();
        let Cmd::Bench {
            command: BenchCmd::LinuxBoot(args),
        } = cli.command
        else {
            panic!("not bench linux-boot")
        };
        assert_eq!(
            args.config.as_deref(),
            Some(Path::new("configs/bochs-4cpu.toml"))
        );
        assert_eq!(
            (args.ips, args.timeout),
            (bulkhead_e2e::DEFAULT_BOCHS_IPS, 1800)
        );
        assert!(Cli::try_parse_from(["xtask", "bench", "linux-boot", "--quick"]).is_err());
    }

    #[test]
    fn default_ips_fits_bochs() {
        let bochs = Emulator::Bochs {
            cpus: 2,
            memory_mib: 1024,
            ips: bulkhead_e2e::DEFAULT_BOCHS_IPS,
        };
        bochs.validate().unwrap();
    }
}
