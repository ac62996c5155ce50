//! The install road, end to end (opt-in: `cargo xtask install-road` makes the disk image and
//! runs this test; `cargo xtask test` skips the `long_` tests).
//!
//! The disk holds Debian as debootstrap installs it (systemd, Debian's stock kernel, GRUB in
//! the boot sector) with the project's Debian package installed and a oneshot unit that plays
//! the user (`tools/xtask/road/bulkhead-road`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bulkhead_abi::console::STEADY_STATE;
use bulkhead_e2e::{DEFAULT_BOCHS_IPS, Emulator, Expect, Pattern, Run, RunDir};

/// Each boot of Debian under systemd (the first with the install's update-grub), in Bochs.
const LIMIT: Duration = Duration::from_secs(3600);

/// The machine of `configs/bochs-2cpu.toml`: two CPUs (the probe gives the second to the RT
/// partition), 1 GiB.
fn machine() -> Emulator {
    Emulator::Bochs {
        cpus: 2,
        memory_mib: 1024,
        ips: DEFAULT_BOCHS_IPS,
    }
}

/// Bochs boots the Debian disk: Debian comes up alone under systemd, and its user runs
/// `bulkhead probe --rt-cpus 1` and `bulkhead install` with the probed config (both exit 0)
/// and powers off. The machine is switched on again (a cold boot: Bochs' BIOS triple-faults on
/// a warm reset of this two-CPU machine): GRUB boots Bulkhead's entry, the hypervisor reaches
/// steady state with the RT kernel beside the same Debian, now in the Linux partition, up
/// under systemd again from its own disk; there `bulkhead rt` shows the RT partition's status
/// report (its uptime, CPU and tasks) and exits 0.
#[test]
#[ignore = "the install road: tens of minutes; run through cargo xtask install-road"]
fn long_bochs_install_road() -> Result<()> {
    let disk = std::env::var_os(bulkhead_e2e::ROAD_DISK_ENV)
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "no disk image in {}: run cargo xtask install-road",
                bulkhead_e2e::ROAD_DISK_ENV
            )
        })?;
    let started = Instant::now();
    let alone = RunDir::create("long_bochs_install_road")?;
    let mut run = Run::start_from_disk(&alone, &disk, &machine())?;
    let installed = Expect::new()
        // Getty's login prompt may come first on the console's line.
        .regex(r"road: debian alone, systemd \S+$")
        .line("road: probe exit status 0")
        .line("road: install exit status 0")
        // The kernel's last line: the disk is written and unmounted.
        .regex(r"reboot: Power down$")
        .fail_on("Kernel panic");
    run.wait_for(&installed, LIMIT)?;
    run.stop();
    let first_boot = started.elapsed();

    let partitioned = RunDir::create("long_bochs_install_road_bulkhead")?;
    let mut run = Run::start_from_disk(&partitioned, &disk, &machine())?;
    let expect = Expect::new()
        .line(STEADY_STATE)
        .regex(r"road: debian under bulkhead, systemd \S+$")
        .regex(r"^rt: uptime \d+\.\d{3} s, 1 CPUs, \d+ tasks$")
        .line("road: rt exit status 0")
        .fail_on("Kernel panic")
        .fail_on("FATAL")
        .fail_on("guest stopped");
    run.wait_for(&expect, LIMIT)?;
    let log = run.log();
    ensure!(
        run.count(Pattern::regex(r"road: debian alone")) == 0,
        "Debian came up alone again: GRUB did not boot Bulkhead's entry\n{log}"
    );
    println!(
        "done after {:.0} s: Debian installed Bulkhead in {:.0} s and came up in its Linux \
         partition {:.0} s later",
        started.elapsed().as_secs_f64(),
        first_boot.as_secs_f64(),
        run.elapsed().as_secs_f64()
    );
    Ok(())
}
