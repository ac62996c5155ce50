//! End-to-end tests of the RT kernel under the hypervisor, in Bochs (deterministic virtual
//! time): the hypervisor loads the kernel from its module into the RT partition and enters it
//! in 64-bit mode; the kernel's self-tests pass, its latency task misses no deadline for more
//! than 10 s of virtual time, and its CPU takes no VM exit after it said hello.
//!
//! Like `boot.rs`, each test boots an ISO in `target/runs/<test name>/`; `cargo xtask test`
//! hands over both images in `BULKHEAD_HYPERVISOR_ELF` and `BULKHEAD_RT_KERNEL_ELF`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulkhead_abi::console::{
    ControlSummary, HALTED, STEADY_STATE, SectionSummary, WakePathSummary,
};
use bulkhead_e2e::{ExitReport, Expect, PartitionKind, Pattern, Scenario, SelftestSummary, report};

/// Wall-clock limit: Bochs boots to steady state in 10 to 20 s and then runs 1 to 2.5 virtual
/// seconds per wall second, slower on a loaded host.
const BOCHS_LIMIT: Duration = Duration::from_secs(900);

// The Linux CPU runs the start-up stub (the scenario's default): these are the RT side's
// tests (tests/linux.rs measures the RT side while Linux boots).

/// bochs-2cpu (Linux stub on CPU 0, the RT kernel on CPU 1), `selftest=kernel`, latency task
/// at 1 ms, exit reports every second, `trace=on`: every self-test passes; the latency task
/// runs at least 11 summaries (over 10 s of virtual time) with 0 misses; the kernel's own
/// measurements (longest interrupts-off section, wake-up path) and the control loop's
/// report are printed and hang together; the RT CPU's exit counts do not
/// move after steady state (its only exits are the start-up CPUIDs and the hello VMCALL).
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_rt_under_hypervisor() -> Result<()> {
    let mut run = Scenario::new("bochs_rt_under_hypervisor")
        .config("bochs-2cpu.toml")
        .hv_cmdline("exit_report_s=1")
        .rt_cmdline("selftest=kernel latency_period_us=1000 control_hz=1000 trace=on")
        .start()?;
    let expect = Expect::new()
        .regex(r"partition rt: EPT in \d+ tables, 64-bit kernel entry at 0x[0-9a-f]+$")
        .regex(r"^bulkhead-rt \S+ starting \(hypervisor\)$")
        .regex(r"^cpu \d+ apic 1: vmcall from rt guest handled$")
        .line(STEADY_STATE)
        .line(report::selftest_pattern())
        .times(12, report::latency_pattern_for_cpu(0))
        .fail_on("FAIL ")
        .fail_on("guest stopped")
        .stop_on(HALTED);
    run.wait_for(&expect, BOCHS_LIMIT)?;
    let log = run.log();

    let passes = run.count(Pattern::regex(r"^PASS \S+$"));
    ensure!(passes >= 5, "only {passes} PASS lines:\n{log}");
    let done = SelftestSummary {
        passed: passes as u32,
        failed: 0,
    };
    ensure!(
        report::selftest_summaries(run.lines()) == [done],
        "no `{done}` line:\n{log}"
    );

    let summaries = report::latency_summaries(run.lines());
    for s in &summaries {
        ensure!(s.misses == 0, "deadline missed: {s:?}\n{log}");
    }
    let last = summaries.last().context("no latency summary")?;
    ensure!(
        last.samples >= 10_000,
        "only {} samples at 1 ms (less than 10 s):\n{log}",
        last.samples
    );

    // trace=on: the kernel names its longest interrupts-off section and breaks its wake-up
    // path into stages that add up to the latency task's mean; the control loop reports.
    let section = run
        .lines()
        .iter()
        .filter_map(|l| SectionSummary::parse(l))
        .next_back()
        .context("no `sections` line (trace=on)")?;
    ensure!(
        section.cpu == 0 && section.count > 0 && section.irq_off_max_ns > 0 && section.at != "none",
        "{section}\n{log}"
    );
    // Its stages add up to it (each converted from TSC ticks on its own: within rounding).
    let stages: u64 = section.stages_ns.iter().sum();
    ensure!(
        stages.abs_diff(section.irq_off_max_ns) <= 3,
        "the section's stages do not add up to it: {section}"
    );
    let path = run
        .lines()
        .iter()
        .filter_map(|l| WakePathSummary::parse(l))
        .next_back()
        .context("no `wake` line (trace=on)")?;
    ensure!(
        path.samples > 0 && path.total_avg_ns() > 0 && path.total_avg_ns() <= last.max_ns,
        "{path} against {last}\n{log}"
    );
    ensure!(
        run.lines().iter().any(|l| ControlSummary::parse(l).is_some()),
        "no control loop report:\n{log}"
    );

    // Exit reports: the first RT line is the steady-state one; every later one shows no new exit
    // and the same total.
    let exits = ExitReport::all(run.lines(), PartitionKind::Rt);
    ensure!(
        exits.len() >= 10,
        "only {} RT exit reports (exit_report_s=1):\n{log}",
        exits.len()
    );
    let at_steady_state = exits[0].total;
    for e in &exits[1..] {
        ensure!(
            e.new == 0 && e.total == at_steady_state,
            "the RT CPU took VM exits in steady state: {e:?}\n{log}"
        );
    }
    println!(
        "done after {:.1}s: {} latency summaries, last: {last:?}; RT exits: {at_steady_state} before steady state, 0 in {} reports after",
        run.elapsed().as_secs_f64(),
        summaries.len(),
        exits.len() - 1
    );
    Ok(())
}

/// A module that is not an ELF where the config's `rt.image` points: the hypervisor stops with
/// one FATAL line naming the module and the problem.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_rt_image_not_elf() -> Result<()> {
    let not_elf = bulkhead_e2e::example_config("bochs-2cpu.toml");
    let mut run = Scenario::new("bochs_rt_image_not_elf")
        .config("bochs-2cpu.toml")
        .rt_file(not_elf)
        .start()?;
    let expect = Expect::new()
        .no_fail_patterns()
        .line(r#"FATAL: module "rt.elf" (rt.image): no ELF magic at 0"#)
        .line(HALTED);
    run.wait_for(&expect, BOCHS_LIMIT)?;
    Ok(())
}
