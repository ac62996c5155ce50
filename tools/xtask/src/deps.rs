//! The host packages the build and the emulator runs need, checked with `dpkg-query` and installed
//! with `apt-get` when we are root.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Debian packages: the emulators (Bochs with its BIOS, VGA BIOS and terminal display; QEMU and
/// its UEFI firmware, OVMF), what `grub-mkrescue` needs for an ISO that boots from BIOS and
/// UEFI (GRUB for both platforms, xorriso, mtools for the EFI system partition), `xz` (the
/// Linux guest's vmlinux is
/// decompressed from Debian's xz-compressed bzImage), and glibc's static libraries (the Linux
/// tool in the initramfs is a static executable).
pub const PACKAGES: [&str; 13] = [
    "bochs",
    "bochsbios",
    "vgabios",
    "bochs-term",
    "qemu-system-x86",
    "ovmf",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub-common",
    "xorriso",
    "mtools",
    "xz-utils",
    "libc6-dev",
];

/// The packages of `packages` that are not installed, or `None` where `dpkg-query` cannot be
/// run.
fn missing<'a>(packages: &[&'a str]) -> Option<Vec<&'a str>> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(packages)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    // Unknown packages make dpkg-query exit 1; what it printed is still right.
    let installed: BTreeSet<&str> = std::str::from_utf8(&output.stdout)
        .unwrap_or("")
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, status)| status.starts_with("ii"))
        .map(|(package, _)| package.split(':').next().unwrap_or(package))
        .collect();
    Some(
        packages
            .iter()
            .copied()
            .filter(|p| !installed.contains(p))
            .collect(),
    )
}

/// Checks the packages and installs the missing ones when running as root; otherwise fails with
/// the command that installs them. With `quiet`, says nothing when all are present.
pub fn ensure(quiet: bool) -> Result<()> {
    ensure_packages(&PACKAGES, quiet)
}

/// [`ensure`] for `packages`.
pub fn ensure_packages(packages: &[&str], quiet: bool) -> Result<()> {
    let Some(missing) = missing(packages) else {
        eprintln!(
            "[xtask] warning: cannot run dpkg-query; make sure these Debian packages (or their \
             equivalents) are installed: {}",
            packages.join(" ")
        );
        return Ok(());
    };
    if missing.is_empty() {
        if !quiet {
            println!(
                "all {} packages present: {}",
                packages.len(),
                packages.join(" ")
            );
        }
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages: {list}\ninstall them with:\n  sudo apt-get install -y {list}"
        );
    }
    eprintln!("[xtask] installing missing packages: {list}");
    apt_get(&["update"])?;
    let mut install = vec!["install", "-y"];
    install.extend(&missing);
    apt_get(&install)?;
    match self::missing(packages) {
        Some(still) if !still.is_empty() => {
            bail!(
                "apt-get succeeded but these are still missing: {}",
                still.join(" ")
            )
        }
        _ => Ok(()),
    }
}

/// Whether we run as root: `/proc/self` belongs to the effective user.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn apt_get(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("`apt-get {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
