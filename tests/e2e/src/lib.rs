//! The emulator harness: everything needed to boot a Bulkhead image in an emulator and check what
//! it prints on its serial consoles (COM1 for the hypervisor and the RT kernel, COM2 for Linux).
//!
//! `cargo xtask run` and the end-to-end tests in `tests/` share it:
//!
//! - [`Scenario`] is how a test boots: a run name, a config, command lines for the hypervisor,
//!   the RT kernel and Linux (or the stub on Linux's CPUs, or the RT kernel alone from GRUB),
//!   an emulator; [`Scenario::start`] does the rest below and returns the [`Run`];
//! - [`build_hypervisor`] builds the freestanding hypervisor image with the flags the image needs
//!   (see DESIGN.md, "Building freestanding code"); [`build_rt_kernel`] the RT kernel image;
//! - [`build_iso`] makes a GRUB rescue ISO that boots from BIOS and from UEFI out of an
//!   [`IsoSpec`]: the hypervisor, the compiled config blob (or any raw file in its place) and
//!   extra multiboot2 modules;
//!   [`IsoSpec::for_config`] is the ISO a config boots with the images `cargo xtask test` hands
//!   over in environment variables (hypervisor, RT kernel, Linux kernel and initramfs);
//! - [`Emulator`] names an emulator and its machine (Bochs, QEMU TCG, QEMU with nested KVM;
//!   QEMU with BIOS or UEFI firmware);
//!   [`Run::start`] boots an ISO in one, in a run directory of its own ([`RunDir`]);
//! - [`Run::wait_for`] follows the serial logs (`serial.log` for COM1, `com2.log` for COM2,
//!   merged into one console in the order it reads them) until the lines an [`Expect`] names
//!   have appeared, and fails with the tail of the console and of the emulator's log otherwise;
//! - [`Scenario::com3_peer`] gives the machine a third serial port, COM3, wired to a TCP
//!   connection: [`Run::com3`] hands the test its end, a [`SerialPeer`] that sends bytes to the
//!   guest's UART and reads what the guest writes to it;
//! - [`Run::start_with_linux_console`] wires COM2 to the harness the same way, for a Linux
//!   console a person types into (`cargo xtask run`): the run copies Linux's output to
//!   `com2.log` and to a terminal, and [`Run::linux_console`] sends keys;
//! - [`report`] parses the numbered lines (latency summaries, exit reports) tests and
//!   benchmarks check.
//!
//! An emulator is always in a process group of its own and is killed with its whole group when
//! its [`Run`] is dropped (on success, failure, timeout or a panicking test), when the process
//! that started it dies, and from [`kill_all_emulators`] (the Ctrl-C path of `cargo xtask run`).
//! The harness never touches the caller's terminal: Bochs gets a pseudo-terminal of its own.
//!
//! This crate is host tooling; it owns no layout that crosses a boundary. The config blob comes
//! from `bulkhead-config` (through [`config`]), the serial line forms from the hypervisor.

mod emulator;
mod image;
mod process;
mod run;
mod scenario;
mod serial_peer;
mod nic_peer;

pub mod config;
pub mod expect;
pub mod report;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

pub use emulator::{
    Boot, DEFAULT_BOCHS_IPS, Emulator, Firmware, NIC_MAC, OVMF_FIRMWARE, Peers,
    kvm_nested_available,
};
pub use expect::{Expect, Pattern};
pub use image::{
    BootKernel, ConfigModule, IsoSpec, Module, build_hostile_tool, build_hypervisor, build_iso,
    build_linux_tool, build_rt_kernel, build_rt_kernel_with_apps, grub_cfg,
};
pub use process::{interrupted, kill_all_emulators, open_pty};
pub use report::{ExitReport, LatencySummary, PartitionKind, SelftestSummary};
pub use run::{Event, Outcome, Port, Run, RunDir, WaitError, WaitErrorKind};
pub use scenario::{
    EmulatorKind, LinuxMode, RT_BARE_CPUS, RT_BARE_MEMORY_MIB, Scenario, example_config,
};
pub use nic_peer::{NicPeer, PEER_MAC};
pub use serial_peer::SerialPeer;

/// Environment variable through which `cargo xtask test` hands the built hypervisor image to the
/// end-to-end tests.
pub const HYPERVISOR_ELF_ENV: &str = "BULKHEAD_HYPERVISOR_ELF";

/// The workspace root (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // This crate lives at `tests/e2e` in the workspace.
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// The workspace's `target/` directory. A `CARGO_TARGET_DIR` that points elsewhere does not move
/// the images and run directories: those live at fixed places under `target/`.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}

/// Environment variable through which `cargo xtask test` hands the built RT kernel image to the
/// end-to-end tests.
pub const RT_KERNEL_ELF_ENV: &str = "BULKHEAD_RT_KERNEL_ELF";
/// The environment variable naming the RT image built with the example application
/// (`examples/rt-app`), which `cargo xtask test` builds for the tests.
pub const RT_EXAMPLE_ELF_ENV: &str = "BULKHEAD_RT_EXAMPLE_ELF";
/// The example RT application's folder, relative to the workspace root.
pub const RT_EXAMPLE_APP: &str = "examples/rt-app";

/// Environment variable through which `cargo xtask test` hands the Linux kernel (by default the
/// uncompressed vmlinux taken out of Debian's bzImage) to the end-to-end tests.
pub const LINUX_KERNEL_ENV: &str = "BULKHEAD_LINUX_KERNEL";

/// Environment variable through which `cargo xtask test` hands Linux's initramfs to the
/// end-to-end tests.
pub const LINUX_INITRD_ENV: &str = "BULKHEAD_LINUX_INITRD";

/// Environment variable through which `cargo xtask test` hands Debian's compressed bzImage (the
/// kernel GRUB boots when Linux runs alone on the machine) to the end-to-end tests.
pub const LINUX_BZIMAGE_ENV: &str = "BULKHEAD_LINUX_BZIMAGE";

/// The bzImage handed over by `cargo xtask test` in [`LINUX_BZIMAGE_ENV`].
pub fn linux_bzimage_from_env() -> Result<PathBuf> {
    file_from_env(LINUX_BZIMAGE_ENV, "boots Linux alone from Debian's bzImage")
}

/// Environment variable through which `cargo xtask install-road` hands the Debian disk image
/// it made to the install road's test.
pub const ROAD_DISK_ENV: &str = "BULKHEAD_ROAD_DISK";

/// Environment variable through which `cargo xtask test` hands its own executable to the
/// end-to-end tests that run the build tool's commands as a user does.
pub const XTASK_ENV: &str = "BULKHEAD_XTASK";

/// The build tool handed over by `cargo xtask test` in [`XTASK_ENV`].
pub fn xtask_from_env() -> Result<PathBuf> {
    file_from_env(XTASK_ENV, "runs the build tool's own commands")
}

/// The file `cargo xtask test` hands over in `var`, for a test that `does` something with it.
fn file_from_env(var: &str, does: &str) -> Result<PathBuf> {
    match std::env::var_os(var).map(PathBuf::from) {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => bail!(
            "{var}={} does not name a file; run the tests with `cargo xtask test`",
            path.display()
        ),
        None => bail!(
            "{var} is not set: this test {does}; run it with `cargo xtask test` (or `cargo \
             xtask test --e2e-only --filter NAME`), which sets it"
        ),
    }
}

/// The RT kernel image handed over by `cargo xtask test` in [`RT_KERNEL_ELF_ENV`].
pub fn rt_kernel_elf_from_env() -> Result<PathBuf> {
    image_from_env(RT_KERNEL_ELF_ENV, "RT kernel")
}

/// The RT image with the example application, handed over by `cargo xtask test` in
/// [`RT_EXAMPLE_ELF_ENV`].
pub fn rt_example_elf_from_env() -> Result<PathBuf> {
    image_from_env(RT_EXAMPLE_ELF_ENV, "RT image with the example application")
}

/// The hypervisor image handed over by `cargo xtask test` in [`HYPERVISOR_ELF_ENV`].
///
/// The end-to-end tests call this first; run directly (without `cargo xtask test`) they fail here
/// with a message that says how to run them.
pub fn hypervisor_elf_from_env() -> Result<PathBuf> {
    image_from_env(HYPERVISOR_ELF_ENV, "hypervisor")
}

/// The Linux kernel handed over by `cargo xtask test` in [`LINUX_KERNEL_ENV`], for the module
/// the config names `module` (`[linux] kernel`).
pub fn linux_kernel_from_env(module: &str) -> Result<PathBuf> {
    linux_file_from_env(
        LINUX_KERNEL_ENV,
        std::env::var_os(LINUX_KERNEL_ENV),
        &format!("the Linux kernel module {module:?} ([linux] kernel)"),
    )
}

/// Linux's initramfs handed over by `cargo xtask test` in [`LINUX_INITRD_ENV`], for the module
/// the config names `module` (`[linux] initrd`).
pub fn linux_initrd_from_env(module: &str) -> Result<PathBuf> {
    linux_file_from_env(
        LINUX_INITRD_ENV,
        std::env::var_os(LINUX_INITRD_ENV),
        &format!("the Linux initrd module {module:?} ([linux] initrd)"),
    )
}

fn linux_file_from_env(
    var: &str,
    value: Option<std::ffi::OsString>,
    module: &str,
) -> Result<PathBuf> {
    let Some(path) = value else {
        bail!(
            "the config names {module} but {var} is not set: run the tests with `cargo xtask \
             test` (or `cargo xtask test --e2e-only --filter NAME`), which prepares Debian's \
             kernel and the initramfs and sets {LINUX_KERNEL_ENV} and {LINUX_INITRD_ENV}, or set \
             them to the files `cargo xtask guest` prints"
        );
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!(
            "{var}={} does not name a file; run the tests with `cargo xtask test`",
            path.display()
        );
    }
    Ok(path)
}

fn image_from_env(var: &str, what: &str) -> Result<PathBuf> {
    file_from_env(
        var,
        &format!("boots a freshly built {what} image, which `cargo xtask test` builds"),
    )
}

/// A file in the workspace, by its path relative to the root (for example `configs/bochs-2cpu.toml`).
pub fn workspace_file(relative: &str) -> Result<PathBuf> {
    let path = workspace_root().join(relative);
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_linux_files_say_how_to_run() {
        let err = linux_file_from_env(
            LINUX_KERNEL_ENV,
            None,
            "the Linux kernel module \"vmlinuz\"",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cargo xtask test"), "{err}");
        assert!(
            err.contains(LINUX_KERNEL_ENV) && err.contains("\"vmlinuz\""),
            "{err}"
        );
        let err = linux_file_from_env(LINUX_INITRD_ENV, Some("/nonexistent/initrd".into()), "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not name a file"), "{err}");
        let here = workspace_root().join("Cargo.toml");
        assert_eq!(
            linux_file_from_env(LINUX_INITRD_ENV, Some(here.clone().into()), "x").unwrap(),
            here
        );
    }
}
