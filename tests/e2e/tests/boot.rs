//! End-to-end tests: boot the hypervisor image in an emulator and check what it prints.
//!
//! Each test describes its boot as a `Scenario` (its ISO and emulator files in
//! `target/runs/<test name>/`), boots it, waits for the lines it needs (within a wall-clock
//! limit) and stops the emulator. On failure the message shows the tail of the serial console
//! and of the emulator's log; everything stays in the run directory.
//!
//! They are `#[ignore]`d so that a plain `cargo test` stays fast: `cargo xtask test` builds the
//! image and runs them with `--ignored`. They live in one file, so that libtest runs them in
//! parallel (`--test-threads=2`); each Bochs is single-threaded.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulkhead_abi::console::{HALTED, STEADY_STATE};
use bulkhead_e2e::config::LoadedConfig;
use bulkhead_e2e::{EmulatorKind, Expect, Firmware, Pattern, Run, Scenario};

/// Wall-clock limits, generous: on a loaded two-core host, a 2-CPU Bochs boot reaches steady
/// state (or its FATAL line) in 6 to 12 s, a 4-CPU one in 12 to 18 s, QEMU in about 1 s.
const BOCHS_2CPU_LIMIT: Duration = Duration::from_secs(300);
const BOCHS_4CPU_LIMIT: Duration = Duration::from_secs(600);
const QEMU_LIMIT: Duration = Duration::from_secs(120);

const STARTING: &str = r"^bulkhead \S+ starting$";

// These tests exercise the hypervisor's own paths: their scenarios keep the default start-up
// stub on the Linux CPUs (tests/linux.rs boots Linux) and boot in Bochs, sized from the config,
// unless they say otherwise.

fn re(pattern: &str) -> Pattern {
    Pattern::regex(pattern)
}

/// What a healthy boot of `config` prints: every CPU in VMX operation, the plan, every guest's
/// VMCALL handled, steady state.
fn healthy_boot(config: &LoadedConfig) -> Expect {
    let n = config.cpus();
    let mut expect = Expect::new().regex(STARTING).stop_on(HALTED);
    for (partition, cpus) in [("linux", &config.linux_cpus), ("rt", &config.rt_cpus)] {
        for apic in cpus.iter() {
            expect = expect
                .regex(&format!(r"^cpu \d+ apic {apic}: VMX on$"))
                .line(format!("plan: apic {apic} -> {partition}").as_str())
                .regex(&format!(
                    r"^cpu \d+ apic {apic}: vmcall from {partition} guest handled$"
                ));
        }
        let count = cpus.len();
        expect = expect.regex(&format!(
            r"^plan: {partition}: {count} CPUs?, \d+ MiB in \d+ regions?$"
        ));
    }
    expect
        .line(format!("all {n} CPUs in VMX operation").as_str())
        .line(STEADY_STATE)
}

/// Checks the exact counts once the run has settled: one line of each kind per CPU.
fn check_once_per_cpu(run: &Run, config: &LoadedConfig) -> Result<()> {
    let n = config.cpus() as usize;
    let counts = [
        ("VMX on", run.count(re(r"^cpu \d+ apic \d+: VMX on$"))),
        (
            "plan: apic",
            run.count(re(r"^plan: apic \d+ -> (linux|rt)$")),
        ),
        (
            "vmcall handled",
            run.count(re(
                r"^cpu \d+ apic \d+: vmcall from (linux|rt) guest handled$",
            )),
        ),
    ];
    for (what, count) in counts {
        ensure!(
            count == n,
            "{count} `{what}` lines for {n} CPUs:\n{}",
            run.log()
        );
    }
    ensure!(
        run.count(STEADY_STATE) == 1,
        "steady state printed more than once:\n{}",
        run.log()
    );
    Ok(())
}

fn report(run: &Run) {
    println!(
        "{}: done after {:.1}s",
        run.emulator(),
        run.elapsed().as_secs_f64()
    );
}

fn bochs_healthy(test: &str, config: &str, limit: Duration) -> Result<()> {
    let scenario = Scenario::new(test).config(config);
    let config = scenario.loaded_config()?;
    let mut run = scenario.start()?;
    run.wait_for(&healthy_boot(&config), limit)?;
    check_once_per_cpu(&run, &config)?;
    report(&run);
    Ok(())
}

/// Bochs, two CPUs (one per partition): the whole VMX bring-up.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_2cpu_vmx() -> Result<()> {
    bochs_healthy("bochs_2cpu_vmx", "bochs-2cpu.toml", BOCHS_2CPU_LIMIT)
}

/// Bochs, four CPUs (two per partition).
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_4cpu_vmx() -> Result<()> {
    bochs_healthy("bochs_4cpu_vmx", "bochs-4cpu.toml", BOCHS_4CPU_LIMIT)
}

/// `selftest=unhandled-exit`: the last Linux CPU's guest runs an instruction the hypervisor does
/// not handle; that guest stops with a register dump, the others (the RT kernel too) go on.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_unhandled_exit() -> Result<()> {
    let scenario = Scenario::new("bochs_unhandled_exit")
        .config("bochs-2cpu.toml")
        .hv_cmdline("selftest=unhandled-exit");
    let config = scenario.loaded_config()?;
    let mut run = scenario.start()?;
    let stopped = r"^cpu \d+ apic \d+: guest stopped: unhandled exit [A-Z0-9_]+";
    // The stopped guest may or may not have made its VMCALL before the unhandled instruction;
    // every other CPU's guest (the RT kernel's too) makes its own.
    let mut expect = Expect::new().regex(stopped).line("RIP=").stop_on(HALTED);
    let last_linux = config.linux_cpus.last().copied();
    for apic in config
        .apic_ids()
        .into_iter()
        .filter(|&a| Some(a) != last_linux)
    {
        expect = expect.regex(&format!(
            r"^cpu \d+ apic {apic}: vmcall from (linux|rt) guest handled$"
        ));
    }
    run.wait_for(&expect, BOCHS_2CPU_LIMIT)?;

    let log = run.log();
    let lines: Vec<&str> = log.lines().collect();
    let stopped_re = regex::Regex::new(stopped)?;
    let at = lines
        .iter()
        .position(|l| stopped_re.is_match(l))
        .context("no stopped line")?;
    ensure!(
        lines[at + 1..].iter().any(|l| l.contains("RIP=")),
        "no register dump after {:?}:\n{log}",
        lines[at]
    );
    ensure!(
        run.count(re(stopped)) == 1,
        "more than one guest stopped:\n{log}"
    );
    // The stopped CPU is the Linux partition's last (the RT partition runs its kernel); every
    // other CPU handled its guest's VMCALL.
    let last = config.linux_cpus.last().context("no Linux CPU")?;
    ensure!(
        lines[at].contains(&format!(" apic {last}: ")),
        "expected the CPU with APIC ID {last} to stop, got {:?}",
        lines[at]
    );
    let stopped_apic = lines[at]
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .trim_end_matches(':');
    for apic in config
        .apic_ids()
        .iter()
        .filter(|a| a.to_string() != stopped_apic)
    {
        let line = format!(r"^cpu \d+ apic {apic}: vmcall from (linux|rt) guest handled$");
        ensure!(
            run.count(re(&line)) == 1,
            "no vmcall line for APIC ID {apic}:\n{log}"
        );
    }
    report(&run);
    Ok(())
}

/// `selftest=exception`: the last CPU takes #UD inside the hypervisor. The exception handler
/// reports vector, error code, RIP and CPU and halts that CPU; the others then give up waiting
/// for it with one FATAL line naming how many CPUs reached VMX operation.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_hypervisor_exception() -> Result<()> {
    let scenario = Scenario::new("bochs_hypervisor_exception")
        .config("bochs-2cpu.toml")
        .hv_cmdline("selftest=exception");
    let config = scenario.loaded_config()?;
    let mut run = scenario.start()?;
    let last = config.cpus() - 1;
    let exception = format!(
        r"^EXCEPTION: cpu {last} apic \d+: vector 6 \(#UD invalid opcode\) error 0x0 at RIP=0x[0-9a-f]{{16}} "
    );
    let fatal = format!(
        "FATAL: only {last} of {} CPUs reached VMX operation",
        config.cpus()
    );
    let expect = Expect::new()
        .regex(&exception)
        .line(format!("cpu {last} halted").as_str())
        .line(fatal.as_str())
        .line(HALTED);
    run.wait_for(&expect, BOCHS_2CPU_LIMIT)?;
    check_fatal_then_halted(&run, &fatal)?;
    ensure!(
        run.count(STEADY_STATE) == 0,
        "steady state despite a halted CPU:\n{}",
        run.log()
    );
    report(&run);
    Ok(())
}

/// QEMU's TCG has no VT-x: the hypervisor must say so and halt, not triple-fault.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn qemu_tcg_no_vtx() -> Result<()> {
    let mut run = Scenario::new("qemu_tcg_no_vtx")
        .config("bochs-2cpu.toml")
        .emulator(EmulatorKind::QemuTcg)
        .start()?;
    let expect = Expect::new()
        .regex(STARTING)
        .regex(r"usable RAM in \d+ ranges \(multiboot2 memory map\); 2 CPUs and 1 IOAPICs")
        .line("FATAL: VT-x not available")
        .line(HALTED);
    run.wait_for(&expect, QEMU_LIMIT)?;
    check_fatal_then_halted(&run, "FATAL: VT-x not available")?;
    report(&run);
    Ok(())
}

/// The same ISO from UEFI firmware (OVMF): GRUB for UEFI boots the hypervisor, which reads the
/// firmware's memory map and ACPI tables from the multiboot2 tags (nothing from BIOS areas) and
/// then says that VT-x is missing, as from the BIOS.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn qemu_uefi_no_vtx() -> Result<()> {
    let mut run = Scenario::new("qemu_uefi_no_vtx")
        .config("bochs-2cpu.toml")
        .emulator(EmulatorKind::QemuTcg)
        .firmware(Firmware::Uefi)
        .start()?;
    let expect = Expect::new()
        .regex(STARTING)
        .regex(r"usable RAM in \d+ ranges \(UEFI memory map\); 2 CPUs and 1 IOAPICs in the MADT")
        .regex(r"^\[INFO  cpu0\] ISA IRQ 0 -> GSI 2 ")
        .line("FATAL: VT-x not available")
        .line(HALTED);
    // OVMF takes several seconds before GRUB under TCG.
    run.wait_for(&expect, QEMU_LIMIT * 2)?;
    check_fatal_then_halted(&run, "FATAL: VT-x not available")?;
    // (GRUB itself warns that the OS gets no screen console: the hypervisor's is serial.)
    ensure!(
        run.count(re(r"^\[WARN ")) == 0,
        "the hypervisor warned on the way:\n{}",
        run.log()
    );
    report(&run);
    Ok(())
}

/// The one FATAL line comes before `bulkhead: halted`, and nothing comes after it.
fn check_fatal_then_halted(run: &Run, fatal: &str) -> Result<()> {
    let log = run.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    let fatal_at = lines.iter().position(|l| l.starts_with(fatal));
    let halted_at = lines.iter().position(|l| *l == HALTED);
    ensure!(
        matches!((fatal_at, halted_at), (Some(f), Some(h)) if f < h),
        "expected {fatal:?} and then {HALTED:?}:\n{log}"
    );
    ensure!(run.count("FATAL") == 1, "more than one FATAL line:\n{log}");
    Ok(())
}

/// A config that names a CPU the machine does not have: the hypervisor names the field.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_missing_cpu() -> Result<()> {
    let base = bulkhead_e2e::example_config("bochs-2cpu.toml");
    let mut doc: toml_edit::DocumentMut = std::fs::read_to_string(&base)?.parse()?;
    let mut cpus = toml_edit::Array::new();
    cpus.push(7);
    doc["partitions"]["rt"]["cpus"] = toml_edit::value(cpus);
    // Valid on the host (it cannot know the machine: the scenario checks and compiles it); the
    // hypervisor checks it against the MADT of a machine with two CPUs.
    let mut run = Scenario::new("bochs_missing_cpu")
        .config_text("missing-cpu.toml", doc.to_string())
        .cpus(2)
        .start()?;
    let fatal = "FATAL: config: partitions.rt.cpus[0]: APIC ID 7 is not present";
    let expect = Expect::new().line(fatal).line(HALTED);
    run.wait_for(&expect, BOCHS_2CPU_LIMIT)?;
    check_fatal_then_halted(&run, fatal)?;
    report(&run);
    Ok(())
}

/// Bytes that are not a config blob in place of the config module.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_corrupt_config() -> Result<()> {
    let mut run = Scenario::new("bochs_corrupt_config")
        .config("bochs-2cpu.toml")
        .config_blob("corrupt.bin", pseudo_random_bytes(4096, 0x5eed_b10b))
        .start()?;
    let expect = Expect::new().line("FATAL: config blob:").line(HALTED);
    run.wait_for(&expect, BOCHS_2CPU_LIMIT)?;
    check_fatal_then_halted(&run, "FATAL: config blob:")?;
    report(&run);
    Ok(())
}

/// No config module at all.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_no_config_module() -> Result<()> {
    let mut run = Scenario::new("bochs_no_config_module")
        .config("bochs-2cpu.toml")
        .without_config_module()
        .start()?;
    let expect = Expect::new().line("FATAL: no config module").line(HALTED);
    run.wait_for(&expect, BOCHS_2CPU_LIMIT)?;
    check_fatal_then_halted(&run, "FATAL: no config module")?;
    report(&run);
    Ok(())
}

/// Reproducible noise (xorshift64): the same "corrupt" blob on every run.
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Without `cargo xtask test` the tests say how to run them.
#[test]
fn tests_need_the_image_from_xtask() {
    if std::env::var_os(bulkhead_e2e::HYPERVISOR_ELF_ENV).is_some() {
        return;
    }
    let err = bulkhead_e2e::hypervisor_elf_from_env()
        .unwrap_err()
        .to_string();
    assert!(err.contains("cargo xtask test"), "{err}");
}
