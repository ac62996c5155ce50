//! Building the freestanding images (the hypervisor, the RT kernel) and the bootable ISO
//! around them: GRUB boots the hypervisor with its modules, the RT kernel alone, or Linux alone
//! (a bzImage and its initramfs, for comparisons against the same kernel under the hypervisor).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::config::LoadedConfig;

/// The target the freestanding image is built for (see DESIGN.md, "Building freestanding code").
const IMAGE_TARGET: &str = "x86_64-unknown-linux-gnu";
/// Code generation flags for the image; its link arguments come from its own build script.
const IMAGE_RUSTFLAGS: &str = "-C relocation-model=static -C panic=abort";
/// The image crate (package and binary name).
const IMAGE_PACKAGE: &str = "bulkhead-hypervisor";
/// The RT kernel image crate (package and binary name).
const RT_IMAGE_PACKAGE: &str = "bulkhead-rt-kernel";

/// Where GRUB finds what the ISO holds.
const HYPERVISOR_ON_ISO: &str = "boot/bulkhead/hypervisor.elf";
const RT_KERNEL_ON_ISO: &str = "boot/bulkhead/rt.elf";
const LINUX_ON_ISO: &str = "boot/bulkhead/vmlinuz";
const CONFIG_ON_ISO: &str = "boot/bulkhead/config.bin";

/// Builds the hypervisor image and returns the path of the ELF.
///
/// The image is built for the host target with an explicit `--target`, so that the image flags
/// in `RUSTFLAGS` reach the image crates only and never build scripts or proc-macros, in its own
/// target directory (`target/image`) so that changing flags never rebuilds the host crates.
pub fn build_hypervisor(release: bool) -> Result<PathBuf> {
    build_image(IMAGE_PACKAGE, "the hypervisor image", release)
}

/// Builds the RT kernel image (a multiboot2 ELF that boots alone from GRUB or under the
/// hypervisor) and returns the path of the ELF. Same flags and target directory as
/// [`build_hypervisor`].
pub fn build_rt_kernel(release: bool) -> Result<PathBuf> {
    build_image(RT_IMAGE_PACKAGE, "the RT kernel image", release)
}

/// Builds an RT image with the default image's applications and those of the crates at
/// `apps` (each a `no_std` library crate that exports `APP`, see `bulkhead_rt::app`), and
/// returns the path of the ELF. The image crate is made in `target/rt-app-image/<packages>/`
/// (its `main.rs` names the applications, its manifest depends on them by path, its build
/// script and lock file are the default image's and the workspace's), and built with the
/// image flags into `target/image-apps/<packages>/`, so that the default image and the
/// images of other sets of applications stay as they are. An application
/// that asks for more tasks or stack than the image has fails this build with the message
/// of `bulkhead_rt::applications!`.
pub fn build_rt_kernel_with_apps(release: bool, apps: &[PathBuf]) -> Result<PathBuf> {
    let root = crate::workspace_root();
    let defaults = default_applications(&root)?;
    let mut dependencies = String::new();
    for (package, path) in &defaults.packages {
        let _ = writeln!(dependencies, "{package} = {{ path = {:?} }}", path.display().to_string());
    }
    let mut packages = Vec::new();
    let mut names = defaults.names;
    for app in apps {
        let app = fs::canonicalize(app)
            .with_context(|| format!("the RT application {}", app.display()))?;
        let manifest = app.join("Cargo.toml");
        let text = fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let doc: toml_edit::DocumentMut = text
            .parse()
            .with_context(|| format!("{} is not TOML", manifest.display()))?;
        let Some(package) = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
        else {
            bail!("{} names no [package] name", manifest.display());
        };
        let _ = writeln!(
            dependencies,
            "{package} = {{ path = {:?} }}",
            app.display().to_string()
        );
        names.push(format!("{}::APP", package.replace('-', "_")));
        packages.push(package.to_string());
    }
    // One image crate and target directory per set of applications, so images of different
    // sets do not overwrite each other.
    let set = packages.join("+");
    let dir = crate::target_dir().join("rt-app-image").join(&set);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = |relative: &str| format!("{:?}", root.join(relative).display().to_string());
    let manifest = format!(
        "# Made by the build tool (`cargo xtask build --rt-app PATH`); remade on every build.
[package]
name = \"{RT_IMAGE_PACKAGE}\"
version = \"0.1.0\"
edition = \"2024\"
publish = false

[[bin]]
name = \"{RT_IMAGE_PACKAGE}\"
path = \"main.rs\"
test = false
bench = false

[dependencies]
bulkhead-rt = {{ path = {} }}
bulkhead-x86 = {{ path = {}, features = [\"runtime\"] }}
{dependencies}
[profile.release]
debug = 1

[workspace]
",
        path("rt-partition/kernel"),
        path("common/x86"),
    );
    let main = format!(
        "//! Made by the build tool: the RT kernel with these applications.
#![no_std]
#![no_main]

bulkhead_rt::applications!({});
",
        names.join(", ")
    );
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    write_if_changed(&dir.join("main.rs"), &main)?;
    let build_script = fs::read_to_string(root.join("rt-partition/image/build.rs"))
        .context("reading the image's build script")?;
    write_if_changed(&dir.join("build.rs"), &build_script)?;
    if !dir.join("Cargo.lock").exists() {
        // The workspace's versions of every crate the kernel uses.
        fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))
            .context("copying the lock file")?;
    }
    let target_dir = crate::target_dir().join("image-apps").join(&set);
    let mut command = image_build_command(release, &target_dir, true);
    command
        .current_dir(&dir)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"));
    let output = command.output().context("cannot run cargo")?;
    if !output.status.success() {
        // The compiler's errors, without cargo's progress lines.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim_start().starts_with("Compiling") && !l.trim().is_empty())
            .collect();
        bail!(
            "building the RT image with the applications {set} failed ({}):\n{}",
            output.status,
            errors.join("\n")
        );
    }
    built_elf(&target_dir, release, RT_IMAGE_PACKAGE)
}

/// The default image's applications, as its crate (`rt-partition/image`) names them: the
/// packages it depends on whose names start with `bulkhead-rt-app-` (their paths from the
/// workspace's dependency table) and the list its `main.rs` gives `applications!`, in order.
struct DefaultApplications {
    packages: Vec<(String, PathBuf)>,
    names: Vec<String>,
}

fn default_applications(root: &Path) -> Result<DefaultApplications> {
    let read = |relative: &str| {
        fs::read_to_string(root.join(relative)).with_context(|| format!("reading {relative}"))
    };
    let image: toml_edit::DocumentMut = read("rt-partition/image/Cargo.toml")?
        .parse()
        .context("rt-partition/image/Cargo.toml is not TOML")?;
    let workspace: toml_edit::DocumentMut = read("Cargo.toml")?
        .parse()
        .context("Cargo.toml is not TOML")?;
    let mut packages = Vec::new();
    if let Some(deps) = image.get("dependencies").and_then(|d| d.as_table_like()) {
        for (package, _) in deps.iter().filter(|(p, _)| p.starts_with("bulkhead-rt-app-")) {
            let path = workspace
                .get("workspace")
                .and_then(|w| w.get("dependencies"))
                .and_then(|d| d.get(package))
                .and_then(|p| p.get("path"))
                .and_then(|p| p.as_str())
                .with_context(|| format!("the workspace gives no path for {package}"))?;
            packages.push((package.to_string(), root.join(path)));
        }
    }
    let main = read("rt-partition/image/src/main.rs")?;
    let list = main
        .split_once("applications!(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(list, _)| list)
        .context("rt-partition/image/src/main.rs has no applications!(...) list")?;
    let names = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    Ok(DefaultApplications { packages, names })
}

/// Writes `text` to `path` unless it holds it already (so its time stamp means something).
fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The Linux tool's crate and binary.
const LINUX_TOOL_PACKAGE: &str = "bulkhead-cli";
const LINUX_TOOL_BINARY: &str = "bulkhead";
/// The hostile-Linux attack program's crate and binary (the test initramfs only).
const HOSTILE_PACKAGE: &str = "bulkhead-hostile";
const HOSTILE_BINARY: &str = "bulkhead-hostile";

/// Builds the Linux side's tool (`bulkhead`: channels, statistics, the ping test) as a static
/// executable for the guest's initramfs, in its own target directory (`target/linux-tools`:
/// the static flag must not rebuild the host crates), and returns its path.
pub fn build_linux_tool() -> Result<PathBuf> {
    build_linux_program(LINUX_TOOL_PACKAGE, LINUX_TOOL_BINARY)
}

/// Builds the hostile-Linux attack program (`tests/hostile`) as [`build_linux_tool`] builds
/// the tool, for the test initramfs.
pub fn build_hostile_tool() -> Result<PathBuf> {
    build_linux_program(HOSTILE_PACKAGE, HOSTILE_BINARY)
}

fn build_linux_program(package: &str, binary: &str) -> Result<PathBuf> {
    let root = crate::workspace_root();
    let target_dir = crate::target_dir().join("linux-tools");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", package])
        .args(["--target", IMAGE_TARGET, "--target-dir"])
        .arg(&target_dir)
        // A static, non-PIE executable without symbols (the initramfs carries it).
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static -C strip=symbols",
        )
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the Linux program {binary} failed ({status})");
    }
    let exe = target_dir.join(IMAGE_TARGET).join("release").join(binary);
    if !exe.is_file() {
        bail!("cargo reported success but {} is missing", exe.display());
    }
    Ok(exe)
}

fn build_image(package: &str, what: &str, release: bool) -> Result<PathBuf> {
    let target_dir = crate::target_dir().join("image");
    let mut command = image_build_command(release, &target_dir, package == RT_IMAGE_PACKAGE);
    command
        .current_dir(crate::workspace_root())
        .args(["-p", package]);
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("building {what} failed ({status})");
    }
    built_elf(&target_dir, release, package)
}

/// `cargo build` of an image for [`IMAGE_TARGET`] with the image flags into `target_dir`
/// (the caller says what and from where).
fn image_build_command(release: bool, target_dir: &Path, lto: bool) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.arg("build");
    if release {
        command.arg("--release");
    }
    command
        .args(["--target", IMAGE_TARGET, "--target-dir"])
        .arg(target_dir)
        .env("RUSTFLAGS", IMAGE_RUSTFLAGS)
        // Would take precedence over RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if release && lto {
        // One optimisation unit across crates: an application's calls into the kernel's API
        // (a separate crate) are inlined as the kernel's own are; the images are small, so
        // this costs seconds.
        command
            .env("CARGO_PROFILE_RELEASE_LTO", "thin");
    }
    command
}

/// The ELF a successful image build left in `target_dir`.
fn built_elf(target_dir: &Path, release: bool, binary: &str) -> Result<PathBuf> {
    let profile = if release { "release" } else { "debug" };
    let elf = target_dir.join(IMAGE_TARGET).join(profile).join(binary);
    if !elf.is_file() {
        bail!("cargo reported success but {} is missing", elf.display());
    }
    Ok(elf)
}

/// What goes into GRUB's `config` module.
#[derive(Clone, Debug)]
pub enum ConfigModule {
    /// A TOML config, checked and compiled into the blob.
    Toml(PathBuf),
    /// Any file, as is (for testing how the hypervisor treats a bad blob).
    Raw(PathBuf),
    /// No `config` module at all.
    Omit,
}

/// An extra multiboot2 module: staged as `boot/bulkhead/<file name>` and given to GRUB as
/// `module2 /boot/bulkhead/<file name> <name> [<args>]`.
#[derive(Clone, Debug)]
pub struct Module {
    /// The module's name on the `module2` line (what the config refers to), e.g. `vmlinuz`.
    pub name: String,
    /// The file.
    pub file: PathBuf,
    /// Words after the name: options for what the module holds (the RT kernel's command
    /// line for the RT image).
    pub args: String,
}

/// Which image GRUB boots as the multiboot2 kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BootKernel {
    /// The hypervisor (`/boot/bulkhead/hypervisor.elf`), with its config and modules.
    #[default]
    Hypervisor,
    /// The RT kernel alone (`/boot/bulkhead/rt.elf`, "bare mode").
    RtKernel,
    /// Linux alone, by GRUB's `linux` command (x86 boot protocol, so a bzImage), at
    /// `/boot/bulkhead/vmlinuz`; the modules are its initrds, in order (GRUB's `initrd`).
    Linux,
}

/// Everything that goes into a bootable ISO.
#[derive(Clone, Debug)]
pub struct IsoSpec {
    /// The ISO to write.
    pub output: PathBuf,
    /// The kernel GRUB boots: the hypervisor ELF, the RT kernel ELF when `boots` is
    /// [`BootKernel::RtKernel`], a Linux bzImage when it is [`BootKernel::Linux`].
    pub hypervisor: PathBuf,
    /// Which image `hypervisor` is.
    pub boots: BootKernel,
    /// The config module.
    pub config: ConfigModule,
    /// The booted kernel's command line (the hypervisor's: words such as
    /// `selftest=unhandled-exit`).
    pub hv_cmdline: String,
    /// Extra modules, in order (RT image, Linux kernel, initrd); Linux's initrds when `boots`
    /// is [`BootKernel::Linux`].
    pub modules: Vec<Module>,
}

impl IsoSpec {
    /// An ISO at `output` with `hypervisor` and the compiled `config`, no command line, no
    /// other modules.
    pub fn new(
        output: impl Into<PathBuf>,
        hypervisor: impl Into<PathBuf>,
        config: ConfigModule,
    ) -> Self {
        Self {
            output: output.into(),
            hypervisor: hypervisor.into(),
            boots: BootKernel::Hypervisor,
            config,
            hv_cmdline: String::new(),
            modules: Vec::new(),
        }
    }

    /// An ISO at `output` that boots the RT kernel `rt_elf` alone (bare mode): no config, no
    /// modules. [`IsoSpec::cmdline`] sets the RT kernel's command line.
    pub fn rt_bare(output: impl Into<PathBuf>, rt_elf: impl Into<PathBuf>) -> Self {
        Self {
            boots: BootKernel::RtKernel,
            ..Self::new(output, rt_elf, ConfigModule::Omit)
        }
    }

    /// An ISO at `output` that boots the Linux kernel `bzimage` alone with `initrd` (bare, no
    /// hypervisor, no config). [`IsoSpec::cmdline`] sets Linux's command line.
    pub fn linux_bare(
        output: impl Into<PathBuf>,
        bzimage: impl Into<PathBuf>,
        initrd: impl Into<PathBuf>,
    ) -> Self {
        Self {
            boots: BootKernel::Linux,
            ..Self::new(output, bzimage, ConfigModule::Omit)
        }
        .module("initrd", initrd)
    }

    /// Where the kernel lies on the ISO.
    fn kernel_on_iso(&self) -> &'static str {
        match self.boots {
            BootKernel::Hypervisor => HYPERVISOR_ON_ISO,
            BootKernel::RtKernel => RT_KERNEL_ON_ISO,
            BootKernel::Linux => LINUX_ON_ISO,
        }
    }

    /// Sets the hypervisor's command line.
    pub fn cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.hv_cmdline = cmdline.into();
        self
    }

    /// Adds a module.
    pub fn module(self, name: impl Into<String>, file: impl Into<PathBuf>) -> Self {
        self.module_with_args(name, file, "")
    }

    /// Adds the Linux kernel and initrd under the module names `config` gives: `kernel` as
    /// `[linux] kernel`, `initrd` as `[linux] initrd` (left out when the config names none).
    pub fn linux_modules(
        self,
        config: &LoadedConfig,
        kernel: impl Into<PathBuf>,
        initrd: impl Into<PathBuf>,
    ) -> Self {
        let spec = self.module(&config.linux_kernel, kernel);
        match &config.linux_initrd {
            Some(name) => spec.module(name, initrd),
            None => spec,
        }
    }

    /// [`IsoSpec::linux_modules`] with the files `cargo xtask test` hands over in
    /// [`LINUX_KERNEL_ENV`](crate::LINUX_KERNEL_ENV) and
    /// [`LINUX_INITRD_ENV`](crate::LINUX_INITRD_ENV). A module already added under the
    /// config's name stays as it is (a test's own file in its place). Fails, saying how to run
    /// the tests, when the config names a module whose variable is not set.
    pub fn linux_modules_from_env(mut self, config: &LoadedConfig) -> Result<Self> {
        let has = |spec: &Self, name: &str| spec.modules.iter().any(|m| m.name == name);
        if !has(&self, &config.linux_kernel) {
            let kernel = crate::linux_kernel_from_env(&config.linux_kernel)?;
            self = self.module(&config.linux_kernel, kernel);
        }
        if let Some(name) = &config.linux_initrd
            && !has(&self, name)
        {
            let initrd = crate::linux_initrd_from_env(name)?;
            self = self.module(name, initrd);
        }
        Ok(self)
    }

    /// The ISO that boots `config` with everything `cargo xtask test` hands over: the
    /// hypervisor, the config compiled, the RT kernel under `rt.image`, and Linux's kernel and
    /// initrd under `[linux] kernel` and `[linux] initrd`.
    pub fn for_config(output: impl Into<PathBuf>, config: &LoadedConfig) -> Result<Self> {
        Self::new(
            output,
            crate::hypervisor_elf_from_env()?,
            ConfigModule::Toml(config.path.clone()),
        )
        .module(&config.rt_image, crate::rt_kernel_elf_from_env()?)
        .linux_modules_from_env(config)
    }

    /// Adds a module whose `module2` line carries `args` after its name.
    pub fn module_with_args(
        mut self,
        name: impl Into<String>,
        file: impl Into<PathBuf>,
        args: impl Into<String>,
    ) -> Self {
        self.modules.push(Module {
            name: name.into(),
            file: file.into(),
            args: args.into(),
        });
        self
    }
}

/// Where GRUB keeps its modules, one folder per platform.
const GRUB_MODULES: &str = "/usr/lib/grub";
/// The platforms every ISO boots on, with the Debian package of their GRUB modules.
const GRUB_PLATFORMS: [(&str, &str); 2] = [
    ("i386-pc", "grub-pc-bin"),
    ("x86_64-efi", "grub-efi-amd64-bin"),
];

/// GRUB's `grub.cfg` for `spec`: serial console at 115200, no menu delay, one entry.
pub fn grub_cfg(spec: &IsoSpec) -> Result<String> {
    if spec.boots == BootKernel::Linux {
        return grub_cfg_linux(spec);
    }
    let cmdline = grub_words(&spec.hv_cmdline, "hypervisor command line")?;
    let mut cfg = grub_cfg_head();
    // Writing to a String cannot fail.
    let _ = writeln!(
        cfg,
        "    multiboot2 /{}{}",
        spec.kernel_on_iso(),
        prefixed(&cmdline)
    );
    if !matches!(spec.config, ConfigModule::Omit) {
        let _ = writeln!(cfg, "    module2 /{CONFIG_ON_ISO} config");
    }
    for module in &spec.modules {
        let name = grub_words(&module.name, "module name")?;
        if name.is_empty() || name.contains(' ') {
            bail!("module name {:?} must be one word", module.name);
        }
        let args = grub_words(&module.args, "module arguments")?;
        let file = staged_name(spec, module)?;
        let _ = writeln!(
            cfg,
            "    module2 /boot/bulkhead/{file} {name}{}",
            prefixed(&args)
        );
    }
    cfg.push_str("    boot\n}\n");
    Ok(cfg)
}

/// [`grub_cfg`] for Linux alone: `linux` with the command line, one `initrd` line with every
/// module (GRUB concatenates them).
fn grub_cfg_linux(spec: &IsoSpec) -> Result<String> {
    if !matches!(spec.config, ConfigModule::Omit) {
        bail!("Linux booted alone takes no config module");
    }
    let cmdline = grub_words(&spec.hv_cmdline, "Linux command line")?;
    let mut cfg = grub_cfg_head();
    let _ = writeln!(cfg, "    linux /{LINUX_ON_ISO}{}", prefixed(&cmdline));
    if !spec.modules.is_empty() {
        let mut files = Vec::with_capacity(spec.modules.len());
        for module in &spec.modules {
            files.push(format!("/boot/bulkhead/{}", staged_name(spec, module)?));
        }
        let _ = writeln!(cfg, "    initrd {}", files.join(" "));
    }
    cfg.push_str("    boot\n}\n");
    Ok(cfg)
}

/// The part of `grub.cfg` before the entry's commands.
fn grub_cfg_head() -> String {
    String::from(
        "set timeout=0\n\
         set default=0\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         menuentry \"Bulkhead\" {\n",
    )
}

fn prefixed(words: &str) -> String {
    if words.is_empty() {
        String::new()
    } else {
        format!(" {words}")
    }
}

/// Checks that `text` reaches the kernel as written: words of characters that GRUB's script
/// parser leaves alone, separated by single spaces.
fn grub_words(text: &str, what: &str) -> Result<String> {
    if let Some(c) = text.chars().find(|&c| {
        c.is_control()
            || matches!(
                c,
                '"' | '\'' | '\\' | '$' | ';' | '|' | '&' | '<' | '>' | '{' | '}' | '#'
            )
    }) {
        bail!("{what} {text:?}: {c:?} would be interpreted by GRUB; use plain words");
    }
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn staged_name(spec: &IsoSpec, module: &Module) -> Result<String> {
    let name = module
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
        .with_context(|| {
            format!(
                "module file {}: use a name of letters, digits, '.', '_', '-'",
                module.file.display()
            )
        })?;
    let kernel_name = spec.kernel_on_iso().rsplit('/').next().unwrap_or_default();
    if name == kernel_name || name == "config.bin" {
        bail!(
            "module file {}: the name {name} is taken",
            module.file.display()
        );
    }
    Ok(name.to_string())
}

/// Builds the ISO `spec` describes with `grub-mkrescue` and returns its path. The ISO boots
/// from BIOS (El Torito and a hybrid MBR) and from UEFI (an EFI system partition image with
/// GRUB for x86-64 UEFI), with one `grub.cfg`; it fails when GRUB's UEFI modules are missing
/// rather than make an ISO that boots one way only.
///
/// The files are staged in `<output>.staging/`, which is removed afterwards.
pub fn build_iso(spec: &IsoSpec) -> Result<PathBuf> {
    for (platform, package) in GRUB_PLATFORMS {
        let dir = Path::new(GRUB_MODULES).join(platform);
        if !dir.is_dir() {
            bail!(
                "no GRUB modules for {platform} in {}: install Debian's {package} (`cargo xtask \
                 deps`), or the ISO would not boot that way",
                dir.display()
            );
        }
    }
    let cfg = grub_cfg(spec)?;
    let staging = spec.output.with_extension("staging");
    let _ = fs::remove_dir_all(&staging);
    let bulkhead = staging.join("boot/bulkhead");
    fs::create_dir_all(&bulkhead)
        .with_context(|| format!("cannot create {}", bulkhead.display()))?;
    fs::create_dir_all(staging.join("boot/grub"))?;
    fs::write(staging.join("boot/grub/grub.cfg"), &cfg)?;
    copy(&spec.hypervisor, &staging.join(spec.kernel_on_iso()))?;
    match &spec.config {
        ConfigModule::Toml(path) => {
            let loaded = crate::config::load(path)?;
            fs::write(staging.join(CONFIG_ON_ISO), &loaded.blob)?;
        }
        ConfigModule::Raw(path) => copy(path, &staging.join(CONFIG_ON_ISO))?,
        ConfigModule::Omit => {}
    }
    let mut seen = Vec::new();
    for module in &spec.modules {
        let name = staged_name(spec, module)?;
        if seen.contains(&name) {
            bail!("two modules are staged as {name}");
        }
        copy(&module.file, &bulkhead.join(&name))?;
        seen.push(name);
    }

    if let Some(dir) = spec.output.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&spec.output)
        .arg(&staging)
        .output()
        .context("cannot run grub-mkrescue (install the tools with `cargo xtask deps`)")?;
    if !output.status.success() {
        bail!(
            "grub-mkrescue failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    fs::remove_dir_all(&staging).with_context(|| format!("cannot remove {}", staging.display()))?;
    Ok(spec.output.clone())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_boots_the_hypervisor_with_its_modules() {
        let spec = IsoSpec::new("x.iso", "hv.elf", ConfigModule::Raw("c".into()))
            .cmdline("selftest=unhandled-exit  log=debug")
            .module("vmlinuz", "/k/vmlinuz-6.1")
            .module_with_args("rt", "/r/rt.elf", "latency_period_us=100  selftest=kernel");
        let cfg = grub_cfg(&spec).unwrap();
        assert_eq!(
            cfg,
            "set timeout=0\nset default=0\nserial --unit=0 --speed=115200\n\
             terminal_input serial\nterminal_output serial\nmenuentry \"Bulkhead\" {\n    \
             multiboot2 /boot/bulkhead/hypervisor.elf selftest=unhandled-exit log=debug\n    \
             module2 /boot/bulkhead/config.bin config\n    \
             module2 /boot/bulkhead/vmlinuz-6.1 vmlinuz\n    \
             module2 /boot/bulkhead/rt.elf rt latency_period_us=100 selftest=kernel\n    boot\n}\n"
        );
    }

    #[test]
    fn linux_modules_take_the_config_names() {
        let config =
            crate::config::load(&crate::workspace_root().join("configs/bochs-2cpu.toml")).unwrap();
        let spec = IsoSpec::new("x.iso", "hv.elf", ConfigModule::Omit)
            .module(&config.rt_image, "/r/rt.elf")
            .linux_modules(&config, "/g/vmlinux-6.1.0-56-amd64", "/g/initramfs.cpio");
        let cfg = grub_cfg(&spec).unwrap();
        assert!(
            cfg.ends_with(
                "    module2 /boot/bulkhead/rt.elf rt.elf\n    \
                 module2 /boot/bulkhead/vmlinux-6.1.0-56-amd64 vmlinuz\n    \
                 module2 /boot/bulkhead/initramfs.cpio initrd.img\n    boot\n}\n"
            ),
            "{cfg}"
        );
        // Modules a test added itself under the config's names stay; nothing is read from the
        // environment for them.
        let own = spec.clone().linux_modules_from_env(&config).unwrap();
        assert_eq!(own.modules.len(), 3);
        assert_eq!(own.modules[1].file, Path::new("/g/vmlinux-6.1.0-56-amd64"));
        // Without an initrd in the config, only the kernel.
        let no_initrd = LoadedConfig {
            linux_initrd: None,
            ..config
        };
        let spec = IsoSpec::new("x.iso", "hv.elf", ConfigModule::Omit).linux_modules(
            &no_initrd,
            "/g/vmlinuz-6.1.0-56-amd64",
            "/g/initramfs.cpio",
        );
        assert_eq!(spec.modules.len(), 1);
        assert_eq!(spec.modules[0].name, "vmlinuz");
        let own = spec.linux_modules_from_env(&no_initrd).unwrap();
        assert_eq!(own.modules.len(), 1);
    }

    #[test]
    fn grub_cfg_without_config_or_cmdline() {
        let spec = IsoSpec::new("x.iso", "hv.elf", ConfigModule::Omit);
        let cfg = grub_cfg(&spec).unwrap();
        assert!(cfg.contains("    multiboot2 /boot/bulkhead/hypervisor.elf\n    boot\n"));
    }

    #[test]
    fn grub_cfg_boots_the_rt_kernel_alone() {
        let spec = IsoSpec::rt_bare("x.iso", "/k/bulkhead-rt-kernel").cmdline("selftest=kernel");
        let cfg = grub_cfg(&spec).unwrap();
        assert!(cfg.contains("    multiboot2 /boot/bulkhead/rt.elf selftest=kernel\n    boot\n"));
        assert!(!cfg.contains("config"));
        let clash = IsoSpec::rt_bare("x.iso", "rt").module("m", "/x/rt.elf");
        assert!(grub_cfg(&clash).is_err());
    }

    #[test]
    fn grub_cfg_boots_linux_alone() {
        let spec = IsoSpec::linux_bare("x.iso", "/g/vmlinuz-6.1.0-56-amd64", "/g/initramfs.cpio")
            .cmdline("console=ttyS0,115200  quiet bulkhead.init=poweroff");
        let cfg = grub_cfg(&spec).unwrap();
        assert_eq!(
            cfg,
            "set timeout=0\nset default=0\nserial --unit=0 --speed=115200\n\
             terminal_input serial\nterminal_output serial\nmenuentry \"Bulkhead\" {\n    \
             linux /boot/bulkhead/vmlinuz console=ttyS0,115200 quiet bulkhead.init=poweroff\n    \
             initrd /boot/bulkhead/initramfs.cpio\n    boot\n}\n"
        );
        let two = spec.clone().module("extra", "/g/extra.cpio");
        assert!(
            grub_cfg(&two)
                .unwrap()
                .contains("    initrd /boot/bulkhead/initramfs.cpio /boot/bulkhead/extra.cpio\n")
        );
        // The kernel is staged as `vmlinuz`: an initrd of that name would overwrite it.
        let clash = IsoSpec::linux_bare("x.iso", "/g/bzImage", "/g/vmlinuz");
        assert!(grub_cfg(&clash).is_err());
        let with_config = IsoSpec {
            config: ConfigModule::Raw("c".into()),
            ..spec
        };
        assert!(grub_cfg(&with_config).is_err());
    }

    #[test]
    fn grub_cfg_rejects_what_grub_would_interpret() {
        let spec = IsoSpec::new("x.iso", "hv.elf", ConfigModule::Omit).cmdline("a=$b");
        assert!(grub_cfg(&spec).is_err());
        let spec = IsoSpec::new("x.iso", "hv.elf", ConfigModule::Omit).module("a b", "f");
        assert!(grub_cfg(&spec).is_err());
        let spec = IsoSpec::new("x.iso", "hv.elf", ConfigModule::Omit).module("c", "/x/config.bin");
        assert!(grub_cfg(&spec).is_err());
    }
}

#[cfg(test)]
mod default_application_tests {
    use super::*;

    #[test]
    fn an_image_with_more_applications_keeps_the_default_ones() {
        let defaults = default_applications(&crate::workspace_root()).unwrap();
        assert!(defaults.names.len() >= 2, "{:?}", defaults.names);
        assert_eq!(defaults.names.len(), defaults.packages.len());
        for (package, path) in &defaults.packages {
            let name = format!("{}::APP", package.replace('-', "_"));
            assert!(defaults.names.contains(&name), "{name} not in {:?}", defaults.names);
            assert!(path.join("Cargo.toml").is_file(), "{}", path.display());
        }
    }
}
