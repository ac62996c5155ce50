//! End-to-end test of `bulkhead probe`: Linux booted alone on the emulator's machine (the one
//! `configs/bochs-2cpu.toml` describes by hand) runs `bulkhead probe --rt-cpus 1` as root with
//! the msr module (and once more with `--dump`, whose dump `--root` reads back to the same
//! config); the config it writes is read back from Linux's console, validated and
//! compiled by the build tool's config loader, compared with the hand-written one, and booted:
//! the hypervisor splits the machine as the hand-written config does, and Linux comes up in its
//! partition beside the RT kernel.
//!
//! `cargo xtask test` hands over the images, the Linux guest and Debian's bzImage (for Linux
//! alone) in `BULKHEAD_*` variables.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulkhead_abi::console::STEADY_STATE;
use bulkhead_e2e::{
    DEFAULT_BOCHS_IPS, Emulator, Expect, IsoSpec, LinuxMode, Pattern, Run, RunDir, Scenario,
};

/// Linux alone decompresses its bzImage and boots on two emulated CPUs in about two minutes of
/// wall time; under the hypervisor the vmlinux reaches its init in about one. Both generous.
const LIMIT: Duration = Duration::from_secs(1200);

const CONFIG_PREFIX: &str = "bulkhead-linux: probe-config:";
const FINDING_PREFIX: &str = "bulkhead-linux: probe-finding:";

/// The probed config as Linux printed it, and what the probe found.
fn printed(run: &Run) -> (String, Vec<String>) {
    let mut config = String::new();
    let mut findings = Vec::new();
    for line in run.lines() {
        if let Some(text) = line.strip_prefix(CONFIG_PREFIX) {
            // The prefix's space is gone from an empty line.
            config.push_str(text.strip_prefix(' ').unwrap_or(text));
            config.push('\n');
        } else if let Some(text) = line.strip_prefix(FINDING_PREFIX) {
            findings.push(text.trim().to_string());
        }
    }
    (config, findings)
}

#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_probe_proposes_the_hand_written_partitioning() -> Result<()> {
    let hand_written =
        bulkhead_e2e::config::load(&bulkhead_e2e::example_config("bochs-2cpu.toml"))?;

    // Linux alone on the machine, its console on COM2 as in the hand-written config.
    let dir = RunDir::create("bochs_probe_bare_linux")?;
    let cmdline = format!(
        "console=ttyS1,115200 quiet cryptomgr.notests clearcpuid=fsrm tsc_early_khz={} \
         bulkhead.init=probe",
        DEFAULT_BOCHS_IPS / 1000
    );
    let spec = IsoSpec::linux_bare(
        dir.join("linux.iso"),
        bulkhead_e2e::linux_bzimage_from_env()?,
        bulkhead_e2e::linux_initrd_from_env("initrd")?,
    )
    .cmdline(cmdline);
    let iso = bulkhead_e2e::build_iso(&spec)?;
    let machine = Emulator::Bochs {
        cpus: 2,
        memory_mib: 1024,
        ips: DEFAULT_BOCHS_IPS,
    };
    let mut bare = Run::start(&dir, &iso, &machine)?;
    let expect = Expect::new()
        .line("bulkhead-linux: init reached")
        .regex(r"^bulkhead-linux: probe exit status \d+$")
        .regex(r"^bulkhead-linux: probe dump of \d+ files reads back the same config$")
        .line("bulkhead-linux: powering off");
    bare.wait_for(&expect, LIMIT)?;
    let (config, findings) = printed(&bare);
    let status = bare
        .matching(Pattern::regex(r"^bulkhead-linux: probe exit status \d+$"))
        .first()
        .and_then(|l| l.rsplit(' ').next().map(str::to_string))
        .unwrap_or_default();
    bare.stop();
    println!("--- the probe's findings ---\n{}", findings.join("\n"));
    println!("--- the probed config ---\n{config}");
    ensure!(
        status == "0",
        "bulkhead probe exited {status}, findings: {findings:#?}"
    );
    ensure!(
        findings.iter().all(|f| !f.contains("BLOCKER")),
        "blockers on a machine with VT-x: {findings:#?}"
    );

    // The config validates and compiles, and splits the machine as the hand-written one does.
    let probed_path = dir.join("probed.toml");
    std::fs::write(&probed_path, &config)?;
    let probed = bulkhead_e2e::config::load(&probed_path).context("the probed config")?;
    ensure!(
        probed.linux_cpus == hand_written.linux_cpus && probed.rt_cpus == hand_written.rt_cpus,
        "CPUs: probed Linux {:?} RT {:?}, hand-written Linux {:?} RT {:?}",
        probed.linux_cpus,
        probed.rt_cpus,
        hand_written.linux_cpus,
        hand_written.rt_cpus
    );
    for line in [
        "hypervisor = \"com1\"",
        "linux = \"com2\"",
        "\"00:01.1\", # [8086:7010] class 010180",
        "    14, # 00:01.1's legacy IDE channel",
        "cmdline = \"console=ttyS1,115200 quiet cryptomgr.notests",
    ] {
        ensure!(config.contains(line), "the probed config lacks {line:?}");
    }

    // Booted: the hypervisor partitions the machine by it, Linux reaches its init on its CPU.
    let mut run = Scenario::new("bochs_probe_boot_probed_config")
        .config_path(&probed_path)
        .linux(LinuxMode::kernel("bulkhead.init=poweroff"))
        .start()?;
    let expect = Expect::new()
        .line(STEADY_STATE)
        .line("bulkhead-linux: init reached")
        .line("bulkhead-linux: cpus online 0 count 1")
        .regex(r"^latency cpu=0 samples=\d+ ")
        .line("bulkhead-linux: powering off");
    run.wait_for(&expect, LIMIT)?;
    println!(
        "{}: the probed config booted; Linux reached its init after {:.1}s",
        run.emulator(),
        run.elapsed().as_secs_f64()
    );
    Ok(())
}
