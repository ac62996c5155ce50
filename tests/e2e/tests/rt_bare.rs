//! End-to-end tests of the RT kernel booted alone from GRUB ("bare mode": no hypervisor, no
//! config), in QEMU TCG (fast; its time follows the loaded host, so its latency numbers are
//! reported, not judged) and in Bochs (deterministic virtual time: no deadline may be missed).
//!
//! Like `boot.rs`, each test boots an ISO in `target/runs/<test name>/`, waits for the lines it
//! needs and stops the emulator; `cargo xtask test` builds the RT kernel image and hands it over
//! in `BULKHEAD_RT_KERNEL_ELF`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulkhead_abi::console::{CycleSummary, DeviceLatencySummary, RT_HALTED};
use bulkhead_e2e::{
    EmulatorKind, Expect, Firmware, LatencySummary, Pattern, Run, Scenario, SelftestSummary, report,
};

/// Wall-clock limits. Measured: QEMU reaches its first summaries in 2 to 5 s; Bochs (2 CPUs,
/// 50 M instructions per emulated second) boots in about 10 s and then runs about 2.5 emulated
/// seconds per wall second while mostly idle.
const QEMU_LIMIT: Duration = Duration::from_secs(120);
const BOCHS_LIMIT: Duration = Duration::from_secs(240);

const STARTING: &str = r"^bulkhead-rt \S+ starting \(bare\)$";

/// Every CPU's latency summary, at least `times` times.
fn latency_summaries(cpus: u32, times: usize) -> Expect {
    let mut expect = Expect::new()
        .regex(STARTING)
        .line(format!("bulkhead-rt: {cpus} CPUs online, scheduling").as_str())
        .stop_on(RT_HALTED)
        .fail_on("FAIL ");
    for cpu in 0..cpus {
        expect = expect.times(times, report::latency_pattern_for_cpu(cpu));
    }
    expect
}

/// The last summary of each CPU.
fn last_per_cpu(all: &[LatencySummary], cpus: u32) -> Result<Vec<&LatencySummary>> {
    (0..cpus)
        .map(|cpu| {
            all.iter()
                .rev()
                .find(|s| s.cpu == cpu)
                .with_context(|| format!("no summary for cpu {cpu}"))
        })
        .collect()
}

fn report(run: &Run, last: &[&LatencySummary]) {
    println!(
        "{}: done after {:.1}s",
        run.emulator(),
        run.elapsed().as_secs_f64()
    );
    for s in last {
        println!("  {s:?}");
    }
}

/// Checks the self-test outcome: only PASS lines, and `selftest: N passed, 0 failed`.
fn check_selftest(run: &Run, expected_tests: usize) -> Result<()> {
    let log = run.log();
    let passes = run.count(Pattern::regex(r"^PASS \S+$"));
    let fails = run.matching(Pattern::regex(r"^FAIL "));
    ensure!(fails.is_empty(), "self-test failures: {fails:?}\n{log}");
    ensure!(
        passes == expected_tests,
        "{passes} PASS lines, expected {expected_tests}:\n{log}"
    );
    let done = SelftestSummary {
        passed: expected_tests as u32,
        failed: 0,
    };
    ensure!(
        report::selftest_summaries(run.lines()) == [done],
        "no `{done}` line:\n{log}"
    );
    Ok(())
}

/// QEMU TCG, two CPUs: the kernel boots, finds both CPUs, and each prints its latency summary
/// at least twice, with samples. QEMU's time follows a loaded host, so misses are reported only.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn qemu_rt_bare_latency() -> Result<()> {
    qemu_latency("qemu_rt_bare_latency", Firmware::Bios, QEMU_LIMIT)
}

/// The same from UEFI firmware (OVMF): GRUB for UEFI boots the RT kernel alone, which finds
/// its CPUs from the ACPI tables the multiboot2 tags point at, and every CPU reports its
/// latency summary at least twice, with samples.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn qemu_uefi_rt_bare_latency() -> Result<()> {
    // OVMF takes several seconds before GRUB under TCG.
    qemu_latency("qemu_uefi_rt_bare_latency", Firmware::Uefi, QEMU_LIMIT * 2)
}

/// QEMU TCG with `firmware`, two CPUs: each reports its summary at least twice, with samples.
fn qemu_latency(name: &str, firmware: Firmware, limit: Duration) -> Result<()> {
    let mut run = Scenario::rt_bare(name)
        .emulator(EmulatorKind::QemuTcg)
        .firmware(firmware)
        .cpus(2)
        .start()?;
    run.wait_for(&latency_summaries(2, 2), limit)?;
    let all = report::latency_summaries(run.lines());
    let last = last_per_cpu(&all, 2)?;
    for s in &last {
        ensure!(s.samples > 0, "no samples: {s:?}");
    }
    report(&run, &last);
    Ok(())
}

/// QEMU TCG, two CPUs, `selftest=kernel`: every self-test passes.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn qemu_rt_bare_selftest() -> Result<()> {
    let mut run = Scenario::rt_bare("qemu_rt_bare_selftest")
        .rt_cmdline("selftest=kernel")
        .emulator(EmulatorKind::QemuTcg)
        .cpus(2)
        .start()?;
    let expect = Expect::new()
        .regex(STARTING)
        .line(report::selftest_pattern())
        .fail_on("FAIL ")
        .stop_on(RT_HALTED);
    run.wait_for(&expect, QEMU_LIMIT)?;
    check_selftest(&run, 6)?;
    println!(
        "{}: done after {:.1}s",
        run.emulator(),
        run.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Bochs, two CPUs (x2APIC, TSC-deadline timer), 1 ms latency period, `selftest=kernel` (the
/// self-test tasks load CPU 0 below the latency task's priority): every self-test passes, and
/// every CPU prints its summary at least twice with samples and no missed deadline. Time in
/// Bochs follows the instruction count, so the numbers are the same on any host.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_rt_bare_latency_and_selftest() -> Result<()> {
    let mut run = Scenario::rt_bare("bochs_rt_bare_latency_and_selftest")
        .rt_cmdline("selftest=kernel latency_period_us=1000 control_hz=1000")
        .cpus(2)
        .start()?;
    let expect = latency_summaries(2, 2).line(report::selftest_pattern());
    run.wait_for(&expect, BOCHS_LIMIT)?;
    check_selftest(&run, 6)?;
    let all = report::latency_summaries(run.lines());
    for s in &all {
        ensure!(s.misses == 0, "a deadline was missed: {s:?}");
        ensure!(
            s.max_ns < 1_000_000 && s.p99_ns <= s.max_ns,
            "implausible latency: {s:?}"
        );
    }
    let last = last_per_cpu(&all, 2)?;
    report(&run, &last);
    Ok(())
}

/// Bochs, one CPU, the kernel alone programming the IOAPIC itself for the HPET's pin 20,
/// level-triggered (`lines=20:level:high`): the HPET application measures 5 s of events, none
/// lost, each interrupt ended only when its handler waited again (a level line whose
/// interrupt ended early, before the comparator's status was cleared, would fire again at
/// once and starve the CPU).
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_rt_bare_hpet_level_line() -> Result<()> {
    let mut run = Scenario::rt_bare("bochs_rt_bare_hpet_level_line")
        .rt_cmdline(format!(
            "lines={}:level:high {} control_hz=0",
            bulkhead_e2e::config::RT_HPET_GSI,
            bulkhead_e2e::config::rt_hpet_option()
        ))
        .cpus(1)
        .start()?;
    let expect = Expect::new()
        .regex(STARTING)
        .regex(r"^hpet: comparator \d+ of \d+ on IOAPIC pin 20 \(level\), ")
        .times(6, DeviceLatencySummary::PREFIX)
        .fail_on("FATAL")
        .stop_on(RT_HALTED);
    run.wait_for(&expect, BOCHS_LIMIT)?;
    let last = run
        .lines()
        .iter()
        .rev()
        .find_map(|l| DeviceLatencySummary::parse(l))
        .context("no device-latency summary")?;
    ensure!(
        last.samples >= 5_000 && last.lost == 0 && last.overflow == 0,
        "level-triggered HPET events lost or missing: {last}\n{}",
        run.log()
    );
    println!("{}: {last}", run.emulator());
    Ok(())
}

/// Bochs, one CPU, the kernel alone with the Intel 8254x NIC (`pci=00:03.0`: it reads the
/// function's BARs and routing itself) and its INTx pin (`lines=11:level:high`): the NIC
/// application exchanges frames with the harness's peer every 2 ms for 5 s, four in five or
/// more answered in their cycle, every frame received a checked answer (the only bad ones
/// being answers that came after their frame was given up on), at most 15% lost (the
/// baseline of `cargo xtask bench irq --device nic`). Bare, the machine idles and Bochs'
/// clock runs ahead of the real-time peer between the points where it is held back, so
/// answers come late in bursts: the bounds are looser than under the hypervisor, where the
/// same exchange keeps 95% in time and loses none. (Four runs of this test on one machine
/// answered 89.6 to 94.4% in time and lost 1.8 to 4.6%, with the driver as it is and as it
/// was before; the bounds were nine in ten and 5%, which one of them missed. A later full run,
/// beside another emulator on a two-core host, answered 83.7% and lost 10.1%; the same image
/// alone then answered 94.7% and lost 2.7%.)
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_rt_bare_nic_frame_exchange() -> Result<()> {
    let run = bare_nic_run("bochs_rt_bare_nic_frame_exchange", EmulatorKind::Bochs)?;
    let summaries = cycle_summaries(&run);
    let last = summaries.last().context("no frame-cycle summary")?;
    ensure!(
        last.cycles >= 2_500
            && last.answered * 5 >= last.cycles * 4
            && last.bad <= last.lost
            && last.lost * 100 <= last.cycles * 15,
        "too few answers in time, or bad ones: {last}\n{}",
        run.log()
    );
    println!("{}: {last}", run.emulator());
    Ok(())
}

/// QEMU TCG, one CPU, the kernel alone with QEMU's own 8254x model (another implementation
/// of the same NIC than Bochs', in place of the machine's default NIC at 00:03.0, its INTA
/// routed to IRQ 11 by SeaBIOS): the NIC application exchanges frames with the harness's
/// peer every 2 ms, and from the second summary to the last (4 s) none is lost or bad and at
/// most 5% are late. The first second is left out: QEMU's model receives nothing for one
/// second after its receiver is enabled (its flush-queue timer), meanwhile the host's socket
/// buffer keeps a few hundred answers, which then arrive too late (about 460 frames lost and
/// 257 answers bad there, the same in every run).
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn qemu_rt_bare_nic_frame_exchange() -> Result<()> {
    let run = bare_nic_run("qemu_rt_bare_nic_frame_exchange", EmulatorKind::QemuTcg)?;
    let summaries = cycle_summaries(&run);
    let (first, last) = match summaries.as_slice() {
        [_, first, .., last] => (*first, *last),
        _ => anyhow::bail!("fewer than three frame-cycle summaries:\n{}", run.log()),
    };
    let cycles = last.cycles - first.cycles;
    let late = last.late - first.late;
    ensure!(
        cycles >= 1_500 && last.lost == first.lost && last.bad == first.bad && late * 20 <= cycles,
        "from {first}\nto {last}: frames lost, bad or too many late\n{}",
        run.log()
    );
    println!("{}: from {first}\nto {last}", run.emulator());
    Ok(())
}

/// Boots the kernel alone on one CPU of `emulator` with the 8254x NIC and its pin
/// (`pci=00:03.0 lines=11:level:high`), its NIC application exchanging frames every 2 ms with
/// the harness's peer, and waits for six summaries.
fn bare_nic_run(name: &str, emulator: EmulatorKind) -> Result<Run> {
    let limit = match emulator {
        EmulatorKind::Bochs => BOCHS_LIMIT,
        _ => QEMU_LIMIT,
    };
    let mut run = Scenario::rt_bare(name)
        .emulator(emulator)
        .rt_cmdline(format!(
            "{} nic=e1000 nic_period_us=2000 control_hz=0",
            bulkhead_e2e::config::rt_nic_bare_options()
        ))
        .cpus(1)
        .nic_peer()
        .start()?;
    let expect = Expect::new()
        .regex(STARTING)
        .regex(r"^nic: 00:03\.0 \(8086:100e\) registers at 0x[0-9a-f]+, INTx on IOAPIC pin 11, a frame every 2000 us$")
        .line("nic: MAC 52:54:00:12:34:56, link up, exchanging frames")
        .times(6, CycleSummary::PREFIX)
        .fail_on("FATAL")
        .stop_on(RT_HALTED);
    run.wait_for(&expect, limit)?;
    Ok(run)
}

/// The run's frame-cycle summaries, in order.
fn cycle_summaries(run: &Run) -> Vec<CycleSummary<'_>> {
    run.lines()
        .iter()
        .filter_map(|l| CycleSummary::parse(l))
        .collect()
}
