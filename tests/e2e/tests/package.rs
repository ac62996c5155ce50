//! End-to-end test of the Debian package: `cargo xtask deb` builds it as a user does; dpkg
//! installs it into a root laid out like a Debian system's (its `/boot` with a kernel and its
//! initrd); the packaged `bulkhead install` there, given only a config, installs the
//! packaged images; dpkg removes the package again.
//!
//! `cargo xtask test` hands over its own executable in `BULKHEAD_XTASK`.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use bulkhead_e2e::RunDir;

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Result<Output> {
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    ensure!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{}{}",
        program.to_string_lossy(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// An empty Debian root: dpkg's database, and `/boot` with one kernel and its initrd.
fn debian_root(root: &Path) -> Result<()> {
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "boot"] {
        fs::create_dir_all(root.join(dir))?;
    }
    fs::write(root.join("var/lib/dpkg/status"), "")?;
    fs::write(root.join("boot/vmlinuz-6.1.0-28-amd64"), b"MZ kernel")?;
    fs::write(root.join("boot/initrd.img-6.1.0-28-amd64"), b"initrd")?;
    Ok(())
}

#[test]
#[ignore = "builds the images and the package; run through cargo xtask test"]
fn deb_package_installs_and_its_tool_installs_bulkhead() -> Result<()> {
    let dir = RunDir::create("deb_package")?;
    let deb = dir.join("bulkhead.deb");
    let deb_arg = deb.to_str().context("a UTF-8 path")?;
    let xtask = bulkhead_e2e::xtask_from_env()?;
    run(&xtask, &["deb", "--output", deb_arg])?;

    let fields = String::from_utf8(
        run(
            "dpkg-deb",
            &["--field", deb_arg, "Package", "Architecture", "Depends"],
        )?
        .stdout,
    )?;
    ensure!(
        fields == "Package: bulkhead\nArchitecture: amd64\nDepends: grub2-common\n",
        "the package's fields: {fields}"
    );

    let root = dir.join("root");
    debian_root(&root)?;
    let root_arg = root.to_str().context("a UTF-8 path")?;
    // The fake root has no GRUB: only that dependency is overridden.
    run(
        "dpkg",
        &[
            "--root",
            root_arg,
            "--force-depends",
            "--log=/dev/null",
            "-i",
            deb_arg,
        ],
    )?;
    for file in [
        "usr/bin/bulkhead",
        "usr/lib/bulkhead/hypervisor.elf",
        "usr/lib/bulkhead/rt.elf",
        "usr/share/doc/bulkhead/copyright",
    ] {
        ensure!(
            root.join(file).is_file(),
            "the package did not install {file}"
        );
    }

    // The packaged tool, given only the config, installs the packaged images.
    let config = bulkhead_e2e::example_config("bochs-2cpu.toml");
    run(
        root.join("usr/bin/bulkhead"),
        &[
            "install",
            "--root",
            root_arg,
            "--config",
            config.to_str().context("a UTF-8 path")?,
            "--no-update-grub",
        ],
    )?;
    for (installed, packaged) in [
        (
            "boot/bulkhead/hypervisor.elf",
            "usr/lib/bulkhead/hypervisor.elf",
        ),
        ("boot/bulkhead/rt.elf", "usr/lib/bulkhead/rt.elf"),
    ] {
        ensure!(
            fs::read(root.join(installed))? == fs::read(root.join(packaged))?,
            "{installed} is not the package's {packaged}"
        );
    }
    ensure!(
        root.join("etc/grub.d/05_bulkhead").is_file(),
        "no GRUB script"
    );
    // The log units run the packaged tool; no second copy is made.
    let unit = fs::read_to_string(root.join("etc/systemd/system/bulkhead-log@.service"))?;
    ensure!(
        unit.contains("ExecStart=/usr/bin/bulkhead log %i -f"),
        "the log unit does not run the packaged tool:\n{unit}"
    );
    ensure!(
        !root.join("usr/local/bin/bulkhead").exists(),
        "the install copied the packaged tool to /usr/local/bin"
    );

    run(
        "dpkg",
        &[
            "--root",
            root_arg,
            "--log=/dev/null",
            "--remove",
            "bulkhead",
        ],
    )?;
    ensure!(
        !root.join("usr/lib/bulkhead/hypervisor.elf").exists(),
        "dpkg --remove left the images"
    );
    println!("the package: {fields}installed, its tool installed Bulkhead into the root, removed");
    Ok(())
}
