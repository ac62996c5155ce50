//! `cargo xtask install-road`: the road from a Debian PC to a partitioned one, end to end in
//! the emulator. Opt-in (`cargo xtask test` leaves it out): it takes tens of minutes.
//!
//! 1. **A Debian disk as a PC has one.** `debootstrap` (Debian's own installer of a base
//!    system) makes Debian with systemd and Debian's stock kernel, once
//!    (`target/install-road/rootfs`, made again with `--fresh`); each run copies it onto the
//!    single ext4 partition of a new MBR disk image, installs GRUB (Debian's `grub-pc`) in the
//!    disk's boot sector and writes its menu from the image's own chroot, installs the
//!    project's Debian package (`cargo xtask deb`) with `dpkg -i`, and adds the road's user:
//!    a oneshot unit that runs `road/bulkhead-road` once the system is up.
//! 2. **The road** (the test `long_bochs_install_road`): Bochs boots the disk. Debian comes up
//!    alone; the user runs `bulkhead probe` and `bulkhead install` as the README's "Install on
//!    a PC" says, and reboots. GRUB's first entry is now Bulkhead's: the hypervisor boots that
//!    Debian's own kernel and initrd as the Linux partition beside the RT kernel, Debian comes
//!    up under systemd in it, and the user runs `bulkhead rt`, which shows the RT partition.
//!
//! It runs as root (loop devices, mounts, chroot) and needs Debian's mirror. Written here: no
//! tool at hand makes a bootable Debian disk image without a running installer.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

use crate::{deps, step};

/// What `cargo xtask install-road` does.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RoadArgs {
    /// Make Debian's base system again (else the one from an earlier run is used).
    #[arg(long)]
    pub fresh: bool,
    /// The Debian mirror debootstrap fetches from.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://deb.debian.org/debian"
    )]
    pub mirror: String,
}

/// The Debian release of the disk (the one the project's guest kernel comes from).
const SUITE: &str = "bookworm";
/// What the base system holds beyond debootstrap's minimal one: systemd as init, udev,
/// Debian's stock kernel with its initramfs, GRUB for a BIOS PC, and the tools the road uses.
const INCLUDE: &str =
    "systemd-sysv,udev,kmod,linux-image-amd64,initramfs-tools,grub-pc,procps,e2fsprogs";
/// The disk's size in cylinders of 16 heads * 63 sectors * 512 bytes (Bochs infers that
/// geometry from such a size): about 2 GiB.
const DISK_CYLINDERS: u64 = 4096;
const CYLINDER_BYTES: u64 = 16 * 63 * 512;
/// The root file system's label (the image's `/etc/fstab` mounts it by it).
const ROOT_LABEL: &str = "bulkhead-root";
/// The packages the host needs for the image.
const HOST_PACKAGES: [&str; 3] = ["debootstrap", "fdisk", "e2fsprogs"];

/// The road's user and its unit, installed into the image.
const ROAD_SCRIPT: &str = include_str!("../road/bulkhead-road");
const ROAD_UNIT: &str = include_str!("../road/bulkhead-road.service");

/// Builds the package and the disk, then runs the road's test.
pub fn run(args: &RoadArgs) -> Result<ExitCode> {
    ensure!(
        deps::is_root(),
        "the install road makes a disk image with loop devices, mounts and a chroot: run it as root"
    );
    deps::ensure(true)?;
    deps::ensure_packages(&HOST_PACKAGES, true)?;
    let package = crate::build_deb(None)?;
    let dir = bulkhead_e2e::target_dir().join("install-road");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let rootfs = step("make Debian's base system (debootstrap)", || {
        base_system(&dir, args)
    })?;
    let disk = step("make the Debian disk image", || {
        make_disk(&dir, &rootfs, &package)
    })?;
    let mut command = crate::test::cargo();
    command
        .args([
            "test",
            "-p",
            "bulkhead-e2e",
            "--test",
            "install_road",
            "--",
            "--ignored",
            "--exact",
            "long_bochs_install_road",
            "--nocapture",
        ])
        .env(bulkhead_e2e::ROAD_DISK_ENV, &disk);
    let status = command.status().context("cannot run cargo test")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Debian's base system in `dir/rootfs`, made by debootstrap unless an earlier run made it
/// with the same release and packages (a stamp file says which).
fn base_system(dir: &Path, args: &RoadArgs) -> Result<PathBuf> {
    let root = dir.join("rootfs");
    let stamp = dir.join("rootfs.made");
    let wanted = format!("{SUITE} {INCLUDE}\n");
    if !args.fresh && fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(root);
    }
    let _ = fs::remove_file(&stamp);
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("cannot remove {}", root.display()))?;
    }
    run_checked(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={INCLUDE}"))
            .arg(SUITE)
            .arg(&root)
            .arg(&args.mirror),
    )?;
    fs::write(&stamp, wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(root)
}

/// A new disk image `dir/disk.img`: `rootfs` on its one partition, GRUB in its boot sector,
/// the package installed, the road's user enabled.
fn make_disk(dir: &Path, rootfs: &Path, package: &Path) -> Result<PathBuf> {
    let disk = dir.join("disk.img");
    let _ = fs::remove_file(&disk);
    // Bochs locks the image it runs with `<image>.lock`; an emulator stopped hard leaves it.
    let _ = fs::remove_file(dir.join("disk.img.lock"));
    fs::File::create(&disk)
        .and_then(|f| f.set_len(DISK_CYLINDERS * CYLINDER_BYTES))
        .with_context(|| format!("cannot create {}", disk.display()))?;
    // One bootable Linux partition from 1 MiB to the end (GRUB's core goes before it).
    run_with_input(
        Command::new("sfdisk").arg("--quiet").arg(&disk),
        "start=2048, type=83, bootable\n",
    )?;
    let device = LoopDevice::attach(&disk)?;
    let partition = device.partition();
    run_checked(
        Command::new("mkfs.ext4")
            .args(["-q", "-L", ROOT_LABEL])
            .arg(&partition),
    )?;
    let root = dir.join("mnt");
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut mounts = Mounts::default();
    mounts.mount(Command::new("mount").arg(&partition).arg(&root), &root)?;
    run_checked(
        Command::new("cp")
            .arg("-a")
            .arg(rootfs.join("."))
            .arg(&root),
    )?;
    configure(&root)?;
    let package_in_root = Path::new("/tmp").join(
        package
            .file_name()
            .context("the package has no file name")?,
    );
    fs::copy(package, root.join(package_in_root.strip_prefix("/")?))
        .with_context(|| format!("cannot copy {} into the image", package.display()))?;

    // The chroot's /dev is its own: the disk and its partition (GRUB installs to the one and
    // names the other by its UUID, which it finds under /dev/disk/by-uuid as udev would have
    // made it) and the usual character devices.
    for (fs_type, target) in [("proc", "proc"), ("sysfs", "sys")] {
        let at = root.join(target);
        mounts.mount(
            Command::new("mount")
                .args(["-t", fs_type, fs_type])
                .arg(&at),
            &at,
        )?;
    }
    let dev = root.join("dev");
    mounts.mount(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=755", "tmpfs"])
            .arg(&dev),
        &dev,
    )?;
    device.make_nodes(&dev)?;
    let chroot = |args: &[&str]| run_checked(Command::new("chroot").arg(&root).args(args));
    chroot(&["grub-install", "--target=i386-pc", &device.path])?;
    chroot(&["update-grub"])?;
    let menu = fs::read_to_string(root.join("boot/grub/grub.cfg"))
        .context("update-grub wrote no boot/grub/grub.cfg")?;
    ensure!(
        menu.contains("root=UUID="),
        "GRUB's menu does not name the root file system by its UUID"
    );
    chroot(&["dpkg", "-i", &package_in_root.to_string_lossy()])?;
    chroot(&["systemctl", "enable", "bulkhead-road.service"])?;
    fs::remove_file(root.join(package_in_root.strip_prefix("/")?))?;
    drop(mounts);
    drop(device);
    Ok(disk)
}

/// The image's own files: how it mounts its root, its name, GRUB's settings (the console on
/// COM2 as the project's emulator configs have it, the kernel options Linux needs on the
/// emulated machine), and the road's user.
fn configure(root: &Path) -> Result<()> {
    let cmdline = format!(
        "console=ttyS1,115200 quiet cryptomgr.notests clearcpuid=fsrm tsc_early_khz={}",
        bulkhead_e2e::DEFAULT_BOCHS_IPS / 1000
    );
    let files = [
        (
            "etc/fstab",
            format!("LABEL={ROOT_LABEL} / ext4 errors=remount-ro 0 1\n"),
        ),
        ("etc/hostname", "bulkhead-road\n".to_string()),
        (
            "etc/default/grub",
            format!(
                "GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_DISTRIBUTOR=Debian\n\
                 GRUB_CMDLINE_LINUX_DEFAULT=\"\"\nGRUB_CMDLINE_LINUX=\"{cmdline}\"\n\
                 GRUB_TERMINAL=console\nGRUB_DISABLE_OS_PROBER=true\n"
            ),
        ),
        ("usr/local/sbin/bulkhead-road", ROAD_SCRIPT.to_string()),
        (
            "etc/systemd/system/bulkhead-road.service",
            ROAD_UNIT.to_string(),
        ),
    ];
    for (path, text) in files {
        let at = root.join(path);
        fs::write(&at, text).with_context(|| format!("cannot write {}", at.display()))?;
    }
    run_checked(
        Command::new("chmod")
            .arg("755")
            .arg(root.join("usr/local/sbin/bulkhead-road")),
    )
}

/// A loop device over a disk image, with its partitions; detached when dropped.
struct LoopDevice {
    path: String,
}

impl LoopDevice {
    fn attach(image: &Path) -> Result<Self> {
        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .context("cannot run losetup")?;
        ensure!(
            output.status.success(),
            "losetup failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let device = Self {
            path: String::from_utf8_lossy(&output.stdout).trim().to_string(),
        };
        // The kernel learns the partitions now, whether or not it scanned the disk when it
        // was attached (`partx -u` adds what it lacks; the devices' nodes come with them).
        run_checked(Command::new("partx").arg("-u").arg(&device.path))?;
        Ok(device)
    }

    fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The first partition's device.
    fn partition(&self) -> String {
        format!("{}p1", self.path)
    }

    /// Makes the disk's and its first partition's nodes, the usual character devices and the
    /// partition's `/dev/disk/by-uuid` link in `dev`.
    fn make_nodes(&self, dev: &Path) -> Result<()> {
        let name = self.name();
        let numbers = |sys: String| -> Result<(String, String)> {
            let text = fs::read_to_string(&sys).with_context(|| format!("cannot read {sys}"))?;
            let (major, minor) = text
                .trim()
                .split_once(':')
                .with_context(|| format!("{sys}: not MAJOR:MINOR"))?;
            Ok((major.to_string(), minor.to_string()))
        };
        let disk = numbers(format!("/sys/block/{name}/dev"))?;
        let part = numbers(format!("/sys/block/{name}/{name}p1/dev"))?;
        let nodes = [
            (name.to_string(), "b", disk, "600"),
            (format!("{name}p1"), "b", part, "600"),
            ("null".into(), "c", ("1".into(), "3".into()), "666"),
            ("zero".into(), "c", ("1".into(), "5".into()), "666"),
            ("random".into(), "c", ("1".into(), "8".into()), "666"),
            ("urandom".into(), "c", ("1".into(), "9".into()), "666"),
        ];
        for (node, kind, (major, minor), mode) in nodes {
            run_checked(
                Command::new("mknod")
                    .args(["-m", mode])
                    .arg(dev.join(node))
                    .args([kind, &major, &minor]),
            )?;
        }
        let uuid = crate::guest::output(
            Command::new("blkid")
                .args(["-s", "UUID", "-o", "value"])
                .arg(self.partition()),
            "blkid",
        )?;
        let by_uuid = dev.join("disk/by-uuid");
        fs::create_dir_all(&by_uuid)?;
        std::os::unix::fs::symlink(format!("../../{name}p1"), by_uuid.join(uuid.trim()))
            .context("cannot link the partition's UUID")?;
        Ok(())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.path)
            .stderr(Stdio::null())
            .status();
    }
}

/// File systems mounted for the image; unmounted, the last first, when dropped.
#[derive(Default)]
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn mount(&mut self, command: &mut Command, at: &Path) -> Result<()> {
        run_checked(command)?;
        self.0.push(at.to_path_buf());
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for at in self.0.iter().rev() {
            let _ = Command::new("umount")
                .arg(at)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `command`, failing with its command line if it does not succeed.
fn run_checked(command: &mut Command) -> Result<()> {
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// Runs `command` with `input` on its standard input.
fn run_with_input(command: &mut Command, input: &str) -> Result<()> {
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))?;
    child
        .stdin
        .take()
        .context("no standard input")?
        .write_all(input.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image mounts its root by the label it gets, boots with Linux's console on COM2 and
    /// the emulator's TSC rate, and runs the road's user once it is up.
    #[test]
    fn the_image_is_configured_for_the_road() {
        let root = std::env::temp_dir().join(format!("bulkhead-xtask-road-{}", std::process::id()));
        for dir in ["etc/default", "etc/systemd/system", "usr/local/sbin"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        configure(&root).unwrap();
        let read = |path: &str| fs::read_to_string(root.join(path)).unwrap();
        assert_eq!(
            read("etc/fstab"),
            "LABEL=bulkhead-root / ext4 errors=remount-ro 0 1\n"
        );
        let grub = read("etc/default/grub");
        assert!(grub.contains(
            "GRUB_CMDLINE_LINUX=\"console=ttyS1,115200 quiet cryptomgr.notests clearcpuid=fsrm tsc_early_khz=50000\"\n"
        ));
        assert!(grub.contains("GRUB_TIMEOUT=1\n"));
        let script = read("usr/local/sbin/bulkhead-road");
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("bulkhead probe --rt-cpus 1 -o /root/pc.toml"));
        assert!(script.contains("bulkhead install --config /root/pc.toml"));
        assert!(
            read("etc/systemd/system/bulkhead-road.service")
                .contains("ExecStart=/usr/local/sbin/bulkhead-road\n")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(root.join("usr/local/sbin/bulkhead-road"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_disk_has_a_geometry_bochs_infers() {
        assert_eq!(CYLINDER_BYTES, 516_096);
        let size = DISK_CYLINDERS * CYLINDER_BYTES;
        assert!(size > 2_000_000_000 && size.is_multiple_of(CYLINDER_BYTES));
    }
}
