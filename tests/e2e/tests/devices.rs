//! End-to-end tests of devices the RT partition owns, in Bochs: their interrupts are
//! delivered by the IOAPIC straight to an RT CPU and served by a driver task of an RT
//! application, with no VM exit.
//!
//! `cargo xtask test` hands over the images in `BULKHEAD_HYPERVISOR_ELF` and
//! `BULKHEAD_RT_KERNEL_ELF`; each test boots in `target/runs/<test name>/`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulkhead_abi::console::{DeviceLatencySummary, HALTED, STEADY_STATE, SerialSummary};
use bulkhead_e2e::{Expect, Scenario, config, report};

/// Wall-clock limit of a run.
const BOCHS_LIMIT: Duration = Duration::from_secs(600);

/// The RT partition owns the HPET and pin 20; the HPET application (`hpet=0xfed00000@20`)
/// sets a comparator 1 ms ahead, again and again, and measures from each comparator match to
/// its task running: at least 10 s of events, none lost, the latency summary consistent, and
/// the RT CPU takes no VM exit after steady state while it takes those interrupts (with the
/// latency task and a 1 kHz control loop beside it).
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_rt_hpet_interrupts() -> Result<()> {
    hpet_interrupts("bochs_rt_hpet_interrupts", false)
}

/// The same with the HPET's pin level-triggered: the comparator interrupts by level, the RT
/// kernel leaves the interrupt in service until the handler task (which clears the
/// comparator's status) waits again, and every event is measured once, none lost, with no
/// VM exit on the RT CPU.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_rt_hpet_level_interrupts() -> Result<()> {
    hpet_interrupts("bochs_rt_hpet_level_interrupts", true)
}

fn hpet_interrupts(name: &str, level: bool) -> Result<()> {
    let trigger = if level { "level" } else { "edge" };
    let mut run = Scenario::new(name)
        .config_text(
            "bochs-2cpu-rt-hpet.toml",
            config::example_with_rt_hpet("bochs-2cpu.toml", level)?,
        )
        .hv_cmdline("exit_report_s=1")
        .rt_cmdline(format!("{} control_hz=1000", config::rt_hpet_option()))
        .start()?;
    let expect = Expect::new()
        .regex(&format!(
            r"partition rt: line 0 = IOAPIC pin 20 -> RT CPU 0 \(APIC ID 1\) vector 48, {trigger} active high"
        ))
        .line(STEADY_STATE)
        .regex(&format!(
            r"^hpet: comparator \d+ of \d+ on IOAPIC pin 20 \({trigger}\), a tick is \d+ fs, an event every 1000 us$"
        ))
        .times(11, DeviceLatencySummary::PREFIX)
        .fail_on("FATAL")
        .stop_on(HALTED);
    run.wait_for(&expect, BOCHS_LIMIT)?;
    let log = run.log();
    let summaries: Vec<_> = run
        .lines()
        .iter()
        .filter_map(|l| DeviceLatencySummary::parse(l))
        .collect();
    let last = summaries.last().context("no device-latency summary")?;
    ensure!(
        last.source == "hpet" && last.gsi == 20 && last.samples >= 10_000,
        "fewer than 10 s of HPET events: {last}\n{log}"
    );
    ensure!(
        last.lost == 0
            && last.overflow == 0
            && last.min_ns > 0
            && last.min_ns <= last.avg_ns
            && last.avg_ns <= last.max_ns
            && last.p99_ns <= last.p999_ns,
        "inconsistent or lost: {last}\n{log}"
    );
    let (at_steady_state, reports) =
        report::rt_cpu_took_no_exits(&run, 1, "taking HPET interrupts")?;
    ensure!(reports >= 10, "only {reports} RT exit reports:\n{log}");
    println!(
        "HPET interrupts ({trigger}) on the RT CPU after {:.1}s: {last}; RT exits: {at_steady_state} before steady state, 0 in {} reports after",
        run.elapsed().as_secs_f64(),
        reports - 1
    );
    Ok(())
}

/// The RT partition owns COM3 and its pin; the serial echo application drives it
/// (`serial=0x3e8@4`): bytes the test sends to COM3 come back unchanged, the driver
/// counts each of them and the interrupts that woke it, no interrupt arrives without a
/// handler, and the RT CPU takes no VM exit after steady state while it serves them.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_rt_serial_echo() -> Result<()> {
    let mut run = Scenario::new("bochs_rt_serial_echo")
        .config_text(
            "bochs-2cpu-rt-uart.toml",
            config::example_with_rt_uart("bochs-2cpu.toml")?,
        )
        .hv_cmdline("exit_report_s=1")
        .rt_cmdline("serial=0x3e8@4 control_hz=1000")
        .com3_peer()
        .start()?;
    let ready = Expect::new()
        .regex(r"partition rt: line 0 = IOAPIC pin 4 -> RT CPU 0 \(APIC ID 1\) vector 48, edge active high")
        .line(STEADY_STATE)
        .regex(r"^serial: UART at 0x3e8 on IOAPIC pin 4 \(line 0\), echoing$")
        .fail_on("FATAL")
        .stop_on(HALTED);
    run.wait_for(&ready, BOCHS_LIMIT)?;

    let mut peer = run.com3(Duration::from_secs(60))?;
    let mut sent = 0u64;
    for message in [
        &b"hello, RT partition\n"[..],
        b"0123456789abcdef",
        b"\x00\x7f\xff\r\n",
    ] {
        peer.send(message)?;
        let back = peer.read_until(message, Duration::from_secs(120))?;
        ensure!(
            back.ends_with(message) && back.len() == message.len(),
            "sent {message:?}, got back {back:?}\n{}",
            run.log()
        );
        sent += message.len() as u64;
    }

    let counted = Expect::new()
        .regex(&format!(r"^serial: port=0x3e8 gsi=4 rx={sent} tx={sent} "))
        .fail_on("FATAL")
        .stop_on(HALTED);
    run.wait_for(&counted, BOCHS_LIMIT)?;
    let log = run.log();
    let summary = run
        .lines()
        .iter()
        .filter_map(|l| SerialSummary::parse(l))
        .next_back()
        .context("no serial summary")?;
    ensure!(
        summary.overruns == 0 && summary.unhandled == 0 && summary.irqs > 0 && summary.irqs <= sent,
        "{summary}\n{log}"
    );

    // The RT CPU's exits: none after steady state (the line was unmasked before it), while
    // it took every one of those interrupts.
    let (at_steady_state, reports) = report::rt_cpu_took_no_exits(&run, 1, "serving its UART")?;
    ensure!(reports >= 2, "only {reports} RT exit reports:\n{log}");
    println!(
        "{sent} bytes echoed by the RT UART driver after {:.1}s: {summary}; RT exits: {at_steady_state} before steady state, 0 in {} reports after",
        run.elapsed().as_secs_f64(),
        reports - 1
    );
    Ok(())
}
