//! `bulkhead install`: puts Bulkhead on a Debian system so that GRUB boots it, with the
//! installed Debian as the Linux partition; `--uninstall` puts the system back.
//!
//! What it writes, under the root (`/`, or an image being built with `--root`), each file
//! listed in `/boot/bulkhead/installed` so that `--uninstall` removes exactly those:
//! - `/boot/bulkhead/`: the hypervisor, the RT image, the compiled config and its source;
//! - `/etc/grub.d/05_bulkhead`: a GRUB script whose entry boots the hypervisor with the RT
//!   image and the installed Debian kernel and initrd as the Linux partition (ahead of
//!   Debian's own entries, which stay as the fallback in the menu);
//! - `/etc/systemd/system/bulkhead-log@.service`, enabled for `hypervisor` and `rt`: the
//!   hypervisor's and the RT kernel's log channels followed into the journal, on a Linux that
//!   runs under Bulkhead only;
//! - `/etc/udev/rules.d/70-bulkhead-channel.rules`: the channel device bound to
//!   `uio_pci_generic`, so that blocked waits sleep on its interrupt;
//! - `/usr/local/bin/bulkhead`: this tool, unless the package installed it in `/usr/bin`
//!   (then that one is what the log units run, and no second copy is made).
//!
//! Then `update-grub` (on `/` only). Refused, with the reason: not root (on `/`), a config
//! that does not validate or does not fit this machine, a machine the probe finds blocked (no
//! VT-x, ...; `--force` installs anyway), an image that is not an ELF file, no kernel in
//! `/boot`.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use bulkhead_abi::{channel_device, package};
use bulkhead_config::Config;
use bulkhead_config::host::load_file;

/// Where the installed files go, relative to the root.
const BOOT_DIR: &str = "boot/bulkhead";
const MANIFEST: &str = "boot/bulkhead/installed";
const GRUB_SCRIPT: &str = "etc/grub.d/05_bulkhead";
const LOG_UNIT: &str = "etc/systemd/system/bulkhead-log@.service";
const WANTS_DIR: &str = "etc/systemd/system/multi-user.target.wants";
const LOGS: [&str; 2] = ["hypervisor", "rt"];
const UDEV_RULE: &str = "etc/udev/rules.d/70-bulkhead-channel.rules";
const TOOL: &str = "usr/local/bin/bulkhead";
/// The names of the images and the config under [`BOOT_DIR`].
const HYPERVISOR_FILE: &str = "hypervisor.elf";
const RT_FILE: &str = "rt.elf";
const CONFIG_BLOB: &str = "config.bin";
const CONFIG_SOURCE: &str = "config.toml";

/// What `bulkhead install` was asked.
#[derive(Debug)]
pub struct Options {
    /// The system to install into (`/`, or an image's root).
    pub root: PathBuf,
    /// The config (from `bulkhead probe`, reviewed).
    pub config: Option<PathBuf>,
    /// The hypervisor and RT images (`cargo xtask build` prints where they are).
    pub hypervisor: Option<PathBuf>,
    pub rt_image: Option<PathBuf>,
    /// The RT kernel's command line [default: its status and log channels, where the config
    /// has them].
    pub rt_cmdline: Option<String>,
    /// The kernel version in `/boot` to boot as the Linux partition [default: the running one
    /// on `/`, else the newest].
    pub kernel: Option<String>,
    /// Install on a machine the probe finds blocked.
    pub force: bool,
    /// Leave `update-grub` to the user.
    pub no_update_grub: bool,
    /// Remove what an earlier install put there.
    pub uninstall: bool,
}

pub fn run(options: &Options) -> ExitCode {
    let result = if options.uninstall {
        uninstall(options)
    } else {
        install(options)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkhead install: {e}");
            ExitCode::from(1)
        }
    }
}

fn is_live_system(root: &Path) -> bool {
    root == Path::new("/")
}

fn require_root_user(root: &Path) -> Result<(), String> {
    let euid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if is_live_system(root) && euid != 0 {
        return Err(
            "run as root: it writes /boot, /etc and /usr/local and runs update-grub".into(),
        );
    }
    Ok(())
}

fn install(options: &Options) -> Result<(), String> {
    let root = options.root.as_path();
    require_root_user(root)?;
    let missing = |what: &str| format!("--{what} is required (see `bulkhead install --help`)");
    let config_path = options.config.as_ref().ok_or_else(|| missing("config"))?;
    // Given, or the Debian package's under the root.
    let image = |given: &Option<PathBuf>, file: &str, option: &str| match given {
        Some(path) => Ok(path.clone()),
        None => {
            let packaged = root.join(package::IMAGES_DIR).join(file);
            if packaged.is_file() {
                Ok(packaged)
            } else {
                Err(format!(
                    "{} (no package's image at /{}/{file})",
                    missing(option),
                    package::IMAGES_DIR
                ))
            }
        }
    };
    let hypervisor = &image(&options.hypervisor, package::HYPERVISOR_IMAGE, "hypervisor")?;
    let rt_image = &image(&options.rt_image, package::RT_IMAGE, "rt-image")?;
    let config = load_file(config_path).map_err(|d| d.to_string())?;
    for image in [hypervisor, rt_image] {
        check_elf(image)?;
    }
    if is_live_system(root) {
        check_machine(&config, options.force)?;
    }
    let version = kernel_version(root, options.kernel.as_deref())?;
    let initrd = format!("boot/initrd.img-{version}");
    let has_initrd = root.join(&initrd).is_file();
    if config.linux().initrd().is_some() && !has_initrd {
        return Err(format!(
            "the config names an initrd for Linux, and /{initrd} does not exist"
        ));
    }
    let rt_cmdline = match &options.rt_cmdline {
        Some(line) => line.clone(),
        None => default_rt_cmdline(&config),
    };
    grub_words(&rt_cmdline).map_err(|c| format!("--rt-cmdline: {c:?} would be read by GRUB"))?;

    let mut installed = Vec::new();
    let mut put = |relative: String, bytes: &[u8], mode: u32| -> Result<(), String> {
        write_file(root, &relative, bytes, mode)?;
        installed.push(relative);
        Ok(())
    };
    let read = |path: &Path| fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    put(
        format!("{BOOT_DIR}/{HYPERVISOR_FILE}"),
        &read(hypervisor)?,
        0o644,
    )?;
    put(format!("{BOOT_DIR}/{RT_FILE}"), &read(rt_image)?, 0o644)?;
    put(
        format!("{BOOT_DIR}/{CONFIG_BLOB}"),
        &bulkhead_config::blob::encode(&config),
        0o644,
    )?;
    put(
        format!("{BOOT_DIR}/{CONFIG_SOURCE}"),
        &read(config_path)?,
        0o644,
    )?;
    let entry = GrubEntry {
        version: &version,
        has_initrd,
        rt_cmdline: &rt_cmdline,
        config: &config,
    };
    put(GRUB_SCRIPT.into(), grub_script(&entry).as_bytes(), 0o755)?;
    let tool = if root.join(package::TOOL).is_file() {
        package::TOOL
    } else {
        let this = std::env::current_exe().map_err(|e| format!("cannot find this tool: {e}"))?;
        put(TOOL.into(), &read(&this)?, 0o755)?;
        TOOL
    };
    put(LOG_UNIT.into(), log_unit(tool).as_bytes(), 0o644)?;
    put(UDEV_RULE.into(), udev_rule().as_bytes(), 0o644)?;
    for log in LOGS {
        let link = format!("{WANTS_DIR}/bulkhead-log@{log}.service");
        let path = root.join(&link);
        make_parent(&path)?;
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(format!("/{LOG_UNIT}"), &path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        installed.push(link);
    }
    installed.push(MANIFEST.into());
    write_file(root, MANIFEST, manifest(&installed).as_bytes(), 0o644)?;
    println!(
        "bulkhead install: installed into {} for Linux {version}: the hypervisor, the RT image, the \
         config, GRUB's entry, the log units (running /{tool}), the channel device's udev rule{}",
        root.display(),
        if tool == TOOL { " and this tool" } else { "" }
    );
    update_grub(options)
}

fn uninstall(options: &Options) -> Result<(), String> {
    let root = options.root.as_path();
    require_root_user(root)?;
    let manifest_path = root.join(MANIFEST);
    let text = fs::read_to_string(&manifest_path).map_err(|e| {
        format!(
            "{}: {e} (nothing was installed here, or it was removed by hand)",
            manifest_path.display()
        )
    })?;
    for relative in installed_files(&text)? {
        let path = root.join(relative);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
        }
    }
    // The folder goes if nothing else was put in it.
    let _ = fs::remove_dir(root.join(BOOT_DIR));
    println!(
        "bulkhead install: removed from {} what the install put there",
        root.display()
    );
    update_grub(options)
}

/// The manifest: one path relative to the root per line.
fn manifest(installed: &[String]) -> String {
    let mut text = String::from("# Files `bulkhead install` wrote; `--uninstall` removes them.\n");
    for path in installed {
        let _ = writeln!(text, "{path}");
    }
    text
}

/// The paths a manifest lists; refused when one would leave the root or is not ours.
fn installed_files(text: &str) -> Result<Vec<&str>, String> {
    let ours = [BOOT_DIR, GRUB_SCRIPT, LOG_UNIT, WANTS_DIR, UDEV_RULE, TOOL];
    let mut files = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('/')
            || line.split('/').any(|part| part == "..")
            || !ours.iter().any(|o| line.starts_with(o))
        {
            return Err(format!(
                "/{MANIFEST} lists {line:?}, which an install never writes: remove the files by hand"
            ));
        }
        files.push(line);
    }
    Ok(files)
}

fn update_grub(options: &Options) -> Result<(), String> {
    if options.no_update_grub || !is_live_system(&options.root) {
        println!(
            "bulkhead install: run update-grub {}to make GRUB's menu",
            if is_live_system(&options.root) {
                String::new()
            } else {
                format!("in {} (chroot) ", options.root.display())
            }
        );
        return Ok(());
    }
    let status = Command::new("update-grub")
        .status()
        .map_err(|e| format!("cannot run update-grub: {e}"))?;
    if !status.success() {
        return Err(format!("update-grub failed ({status})"));
    }
    Ok(())
}

fn write_file(root: &Path, relative: &str, bytes: &[u8], mode: u32) -> Result<(), String> {
    let path = root.join(relative);
    make_parent(&path)?;
    fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))
}

fn make_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(dir) => {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
        }
        None => Ok(()),
    }
}

/// An image must at least be an ELF file (GRUB checks the rest, the hypervisor its modules).
fn check_elf(path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !bytes.starts_with(b"\x7fELF") {
        return Err(format!(
            "{} is not an ELF image (`cargo xtask build` prints the images' paths)",
            path.display()
        ));
    }
    Ok(())
}

/// The config must fit this machine, and the machine must have what Bulkhead needs.
fn check_machine(config: &Config, force: bool) -> Result<(), String> {
    let facts = bulkhead_probe::facts::read(Path::new("/"))
        .map_err(|e| format!("cannot read this machine: {e}"))?;
    bulkhead_probe::fits(&facts, config)
        .map_err(|e| format!("the config does not fit this machine: {e}"))?;
    let blockers: Vec<String> = bulkhead_probe::plan::judge(&facts)
        .into_iter()
        .filter(|f| f.severity == bulkhead_probe::Severity::Blocker)
        .map(|f| f.text)
        .collect();
    if !blockers.is_empty() && !force {
        return Err(format!(
            "this machine cannot run Bulkhead as it is: {} (--force installs anyway)",
            blockers.join("; ")
        ));
    }
    Ok(())
}

/// The kernel to boot as the Linux partition: `wanted`, else the running one on the live
/// system, else the newest in `/boot`.
fn kernel_version(root: &Path, wanted: Option<&str>) -> Result<String, String> {
    let boot = root.join("boot");
    let mut versions: Vec<String> = fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .collect();
    versions.sort_by_key(|v| version_key(v));
    let running = is_live_system(root)
        .then(|| fs::read_to_string("/proc/sys/kernel/osrelease").ok())
        .flatten()
        .map(|v| v.trim().to_string());
    let chosen = match wanted {
        Some(v) => Some(v.to_string()),
        None => running
            .filter(|r| versions.contains(r))
            .or_else(|| versions.last().cloned()),
    };
    match chosen {
        Some(v) if versions.contains(&v) => Ok(v),
        Some(v) => Err(format!(
            "--kernel {v}: no /boot/vmlinuz-{v} (present: {})",
            versions.join(", ")
        )),
        None => Err(format!("no kernel in {} (vmlinuz-VERSION)", boot.display())),
    }
}

/// A version's sort key: its numbers compared as numbers, the rest as text.
fn version_key(version: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = version;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            key.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            key.push((0, rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    key
}

/// The RT kernel's options that send its status reports and its log to Linux, where the
/// config has the channels by their conventional names.
fn default_rt_cmdline(config: &Config) -> String {
    let has = |name: &str| config.channels().iter().any(|c| c.name().as_str() == name);
    let mut words = Vec::new();
    if has("rt-status") {
        words.push("status=rt-status");
    }
    if has("rt-log") {
        words.push("log=rt-log");
    }
    words.join(" ")
}

/// `Err` with the first character GRUB's script parser would interpret.
fn grub_words(text: &str) -> Result<(), char> {
    match text
        .chars()
        .find(|&c| c.is_control() || "\"'\\$;|&<>{}#`".contains(c))
    {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// What GRUB's entry boots.
struct GrubEntry<'a> {
    version: &'a str,
    has_initrd: bool,
    rt_cmdline: &'a str,
    config: &'a Config,
}

/// The `/etc/grub.d` script: run by `grub-mkconfig` (`update-grub`), it prints the entry,
/// with GRUB's own helpers finding the device and path of `/boot`. Debian's kernel and initrd
/// are loaded as they are (`--nounzip`): GRUB would otherwise unpack a gzip'ed initrd into
/// the hypervisor's memory, several times its size (Debian's 36 MB initrd became 130 MB,
/// more than the hypervisor's region holds); Linux unpacks it itself.
fn grub_script(entry: &GrubEntry<'_>) -> String {
    let config = entry.config;
    let linux = config.linux();
    let mut modules = format!(
        "\tmodule2 ${{bulkhead}}/{CONFIG_BLOB} config\n\tmodule2 ${{bulkhead}}/{RT_FILE} {}{}\n\tmodule2 --nounzip ${{boot}}/vmlinuz-{} {}\n",
        config.rt().image().as_str(),
        if entry.rt_cmdline.is_empty() {
            String::new()
        } else {
            format!(" {}", entry.rt_cmdline)
        },
        entry.version,
        linux.kernel().as_str(),
    );
    if let (Some(name), true) = (linux.initrd(), entry.has_initrd) {
        let _ = writeln!(
            modules,
            "\tmodule2 --nounzip ${{boot}}/initrd.img-{} {}",
            entry.version,
            name.as_str()
        );
    }
    format!(
        "#!/bin/sh
# Made by `bulkhead install`; `bulkhead install --uninstall` removes it.
# The entry boots the Bulkhead hypervisor with its RT partition and Linux {version} as its Linux
# partition (machine \"{machine}\"); Debian's own entries follow it in the menu.
set -e

prefix=\"/usr\"
exec_prefix=\"/usr\"
datarootdir=\"/usr/share\"
. \"${{pkgdatadir:-/usr/share/grub}}/grub-mkconfig_lib\"

bulkhead=$(make_system_path_relative_to_its_root /boot/bulkhead)
boot=$(make_system_path_relative_to_its_root /boot)
device=\"\"
if [ -n \"${{GRUB_DEVICE_BOOT}}\" ]; then
\tdevice=$(prepare_grub_to_access_device \"${{GRUB_DEVICE_BOOT}}\" | sed -e 's/^/\\t/')
fi
echo \"Found Bulkhead with Linux {version}\" >&2

cat << EOF
menuentry 'Debian GNU/Linux {version}, partitioned by Bulkhead' --class debian --class os {{
${{device}}
\techo 'Loading the Bulkhead hypervisor ...'
\tmultiboot2 ${{bulkhead}}/{HYPERVISOR_FILE}
{modules}}}
EOF
",
        version = entry.version,
        machine = config.name().as_str(),
    )
}

/// The systemd unit template that follows one log channel into the journal with the tool at
/// `tool` (relative to the root).
fn log_unit(tool: &str) -> String {
    format!(
        "# Made by `bulkhead install`: the hypervisor's (%i = hypervisor) or the RT kernel's
# (%i = rt) console lines, from their log channel into the journal.
[Unit]
Description=Bulkhead %i log
# Only a Linux that runs under Bulkhead has channels on its command line.
ConditionKernelCommandLine=bulkhead.channel

[Service]
ExecStart=/{tool} log %i -f
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
"
    )
}

/// The udev rule that binds the channel device to `uio_pci_generic`.
fn udev_rule() -> String {
    let (v, d, sv, sd) = (
        channel_device::VENDOR_ID,
        channel_device::DEVICE_ID,
        channel_device::SUBSYSTEM_VENDOR_ID,
        channel_device::SUBSYSTEM_ID,
    );
    format!(
        "# Made by `bulkhead install`: Bulkhead's channel device (the RT partition's doorbells as an
# interrupt) bound to Linux's uio_pci_generic, so that `bulkhead` and the channel library sleep
# on its interrupt instead of polling.
ACTION==\"add\", SUBSYSTEM==\"pci\", ATTR{{vendor}}==\"{v:#06x}\", ATTR{{device}}==\"{d:#06x}\", \\
  ATTR{{subsystem_vendor}}==\"{sv:#06x}\", ATTR{{subsystem_device}}==\"{sd:#06x}\", \\
  RUN+=\"/sbin/modprobe uio_pci_generic\", \\
  RUN+=\"/bin/sh -c 'echo {v:04x} {d:04x} {sv:04x} {sd:04x} > /sys/bus/pci/drivers/uio_pci_generic/new_id'\"
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_their_numbers() {
        let mut v = vec![
            "6.1.0-9-amd64",
            "6.1.0-28-amd64",
            "5.10.0-30-amd64",
            "6.1.0-28-rt-amd64",
        ];
        v.sort_by_key(|v| version_key(v));
        assert_eq!(
            v,
            [
                "5.10.0-30-amd64",
                "6.1.0-9-amd64",
                "6.1.0-28-amd64",
                "6.1.0-28-rt-amd64"
            ]
        );
    }

    #[test]
    fn a_manifest_lists_only_what_an_install_writes() {
        let text = manifest(&["boot/bulkhead/rt.elf".into(), TOOL.into()]);
        assert_eq!(
            installed_files(&text).unwrap(),
            ["boot/bulkhead/rt.elf", TOOL]
        );
        for bad in ["/etc/passwd", "boot/bulkhead/../../etc/passwd", "etc/fstab"] {
            assert!(installed_files(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_udev_rule_names_the_channel_device() {
        let rule = udev_rule();
        assert!(
            rule.contains("ATTR{vendor}==\"0x1af4\", ATTR{device}==\"0x1110\""),
            "{rule}"
        );
        assert!(
            rule.contains("echo 1af4 1110 1af4 4248 > /sys/bus/pci/drivers/uio_pci_generic/new_id")
        );
    }

    #[test]
    fn grub_words_refuse_what_grub_interprets() {
        assert!(grub_words("status=rt-status log=rt-log").is_ok());
        assert_eq!(grub_words("a;b"), Err(';'));
        assert_eq!(grub_words("$x"), Err('$'));
    }
}
