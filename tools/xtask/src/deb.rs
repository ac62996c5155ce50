//! `cargo xtask deb`: the Debian package of what a PC needs to be partitioned without the
//! source tree on it: the `bulkhead` tool (static), the hypervisor's and the RT kernel's
//! images where `bulkhead install` takes them by default, and the README and licence terms.
//! The package installs nothing into `/boot` and touches no boot entry: `bulkhead probe` and
//! `bulkhead install --config FILE` do that, with the user's reviewed config.
//!
//! The layout is `bulkhead_abi::package`'s; the archive is made by `dpkg-deb`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use bulkhead_abi::package;

/// What goes into the package.
pub struct Contents<'a> {
    pub version: &'a str,
    pub tool: &'a Path,
    pub hypervisor: &'a Path,
    pub rt_image: &'a Path,
    pub readme: &'a Path,
}

/// The package's control file, for `installed_kib` KiB of files.
pub fn control(version: &str, installed_kib: u64) -> String {
    format!(
        "Package: {name}\n\
         Version: {version}\n\
         Architecture: amd64\n\
         Maintainer: Bulkhead developers <bulkhead@users.noreply.invalid>\n\
         Installed-Size: {installed_kib}\n\
         Depends: grub2-common\n\
         Recommends: grub-pc | grub-efi-amd64\n\
         Section: admin\n\
         Priority: optional\n\
         Description: real-time partitioning hypervisor for x86-64 (VT-x)\n \
         Bulkhead splits a PC's cores: isolated cores run its real-time kernel with their\n \
         devices' interrupts, the others run this Debian, unmodified; the two talk through\n \
         shared-memory channels. This package holds the `bulkhead` tool and the hypervisor's\n \
         and the RT kernel's images. `bulkhead probe` proposes a config for this machine;\n \
         `bulkhead install --config FILE` adds the boot entry.\n",
        name = package::NAME
    )
}

/// Lays the package's tree out under `stage` (emptied first): the files and `DEBIAN/control`.
pub fn stage(stage: &Path, contents: &Contents<'_>) -> Result<()> {
    if stage.exists() {
        fs::remove_dir_all(stage).with_context(|| format!("cannot empty {}", stage.display()))?;
    }
    let images = Path::new(package::IMAGES_DIR);
    let doc = Path::new(package::DOC_DIR);
    let copied: [(&Path, PathBuf, u32); 4] = [
        (contents.tool, PathBuf::from(package::TOOL), 0o755),
        (
            contents.hypervisor,
            images.join(package::HYPERVISOR_IMAGE),
            0o644,
        ),
        (contents.rt_image, images.join(package::RT_IMAGE), 0o644),
        (contents.readme, doc.join("README.md"), 0o644),
    ];
    let mut bytes = 0u64;
    let mut place = |to: &Path, mode: u32, write: &dyn Fn(&Path) -> std::io::Result<()>| {
        let path = stage.join(to);
        fs::create_dir_all(path.parent().context("a file in a directory")?)?;
        write(&path).with_context(|| format!("cannot write {} into the package", to.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        bytes += fs::metadata(&path)?.len();
        anyhow::Ok(())
    };
    for (from, to, mode) in &copied {
        place(to, *mode, &|path| fs::copy(from, path).map(drop))?;
    }
    place(&doc.join("copyright"), 0o644, &|path| {
        fs::write(path, copyright())
    })?;
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    fs::write(
        debian.join("control"),
        control(contents.version, bytes.div_ceil(1024)),
    )?;
    Ok(())
}

/// The package's copyright file (Debian's machine-readable format).
fn copyright() -> String {
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
     Upstream-Name: bulkhead\n\
     \n\
     Files: *\n\
     Copyright: the Bulkhead developers\n\
     License: MIT or Apache-2.0\n \
     The project's files are offered under the terms of the MIT licence or the Apache\n \
     Licence, version 2.0, at the user's choice; on Debian systems the Apache licence is\n \
     in /usr/share/common-licenses/Apache-2.0.\n"
        .to_string()
}

/// Builds the package from `stage` into `output` with `dpkg-deb`.
pub fn build(stage: &Path, output: &Path) -> Result<()> {
    if let Some(dir) = output.parent() {
        fs::create_dir_all(dir)?;
    }
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(stage)
        .arg(output)
        .status()
        .context("cannot run dpkg-deb (Debian's dpkg package)")?;
    if !status.success() {
        bail!("dpkg-deb failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_file_has_the_fields_dpkg_needs() {
        let text = control("0.1.0", 6144);
        for field in [
            "Package: bulkhead\n",
            "Version: 0.1.0\n",
            "Architecture: amd64\n",
            "Installed-Size: 6144\n",
            "Depends: grub2-common\n",
            "Description: real-time partitioning hypervisor for x86-64 (VT-x)\n",
        ] {
            assert!(text.contains(field), "{field:?} missing:\n{text}");
        }
        // The long description's lines start with a space; the file ends with a newline.
        let description = text.split_once("Description:").unwrap().1;
        assert!(description.lines().skip(1).all(|l| l.starts_with(' ')));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn the_stage_holds_the_layout_install_reads() {
        let dir = tempfile_dir();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            fs::write(&path, bytes).unwrap();
            path
        };
        let (tool, hv, rt, readme) = (
            file("tool", b"\x7fELF tool"),
            file("hv", b"\x7fELF hv"),
            file("rt", b"\x7fELF rt"),
            file("readme", b"# Bulkhead"),
        );
        let stage_dir = dir.join("stage");
        let contents = Contents {
            version: "0.1.0",
            tool: &tool,
            hypervisor: &hv,
            rt_image: &rt,
            readme: &readme,
        };
        stage(&stage_dir, &contents).unwrap();
        let mode = |p: &str| {
            fs::metadata(stage_dir.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("usr/bin/bulkhead"), 0o755);
        assert_eq!(
            fs::read(stage_dir.join("usr/lib/bulkhead/hypervisor.elf")).unwrap(),
            b"\x7fELF hv"
        );
        assert_eq!(mode("usr/lib/bulkhead/rt.elf"), 0o644);
        assert!(
            fs::read_to_string(stage_dir.join("usr/share/doc/bulkhead/copyright"))
                .unwrap()
                .contains("License: MIT or Apache-2.0")
        );
        let control = fs::read_to_string(stage_dir.join("DEBIAN/control")).unwrap();
        assert!(control.contains("Installed-Size: 1\n"), "{control}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh directory under the target directory (xtask's tests use no tempfile crate).
    fn tempfile_dir() -> PathBuf {
        let dir = bulkhead_e2e::target_dir()
            .join("tmp")
            .join(format!("deb-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
