//! `cargo xtask bench irq`: a device's interrupt latency, or a NIC's cyclic frame exchange,
//! bare and under the hypervisor, side by side.
//!
//! `--device hpet` (the default): the HPET, whose interrupt time is known exactly: the RT kernel's HPET
//! application (`rt-partition/apps/hpet`) sets a comparator one period ahead, waits for the
//! interrupt on its line and reads the counter, so counter minus comparator is the time from
//! the device raising the interrupt to the handler task running. Bare, the kernel routes the
//! HPET's pin itself (`lines=`); under the hypervisor, the config gives the RT partition the
//! HPET's registers and pin (`bulkhead_e2e::config::example_with_rt_hpet`) and the hypervisor
//! routes it to the RT CPU. Everything else is as in `bench latency`: the same kernel ELF and
//! options, Bochs with the same CPU model, ips and deterministic clock, one RT CPU, both runs
//! at once; each stops after `seconds + 1` cumulative summaries (one a second) and the last is
//! the result. Under the hypervisor the RT CPU's exits after steady state are counted from
//! the exit reports: every interrupt arrives without one. The kernel runs with `trace=on`, so
//! each summary is followed by its histogram (`histogram device=hpet` lines), which go into
//! one chart, `target/bench/irq.svg`.
//!
//! `--device nic`: the Intel 8254x NIC the RT kernel's NIC application drives
//! (`rt-partition/apps/nic`), a frame sent every period and its answer (from the harness's
//! peer on Bochs' socket wire) awaited until the next cycle; the round trips (frame handed to
//! the NIC to answer seen by the driver's task) are the result, with the late and lost
//! frames. Bare, the kernel describes the NIC itself (`pci=`) and routes its INTx pin
//! (`lines=`); under the hypervisor, the config gives the RT partition both
//! (`bulkhead_e2e::config::example_with_rt_nic`). In Bochs the round trip is mostly the
//! emulator's: it reads its socket once per emulated millisecond.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bulkhead_abi::console::{CycleSummary, DeviceLatencySummary, HistogramLine, HistogramOwner};
use bulkhead_e2e::config::{self, LoadedConfig, RT_HPET_GSI};
use bulkhead_e2e::{Expect, Scenario};
use clap::{Args, ValueEnum};

use crate::bench_latency::{ratio, rt_exits_in_window};
use crate::latency_plot::{self, Series};

/// The device `bench irq` measures.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The HPET: device interrupt to handler task.
    Hpet,
    /// The Intel 8254x NIC: a cyclic frame exchange's round trips.
    Nic,
}

impl Device {
    /// The period when `--period-us` does not say.
    fn default_period_us(self) -> u64 {
        match self {
            Self::Hpet => 1000,
            Self::Nic => 2000,
        }
    }

    /// Its summary lines' prefix.
    fn summary_prefix(self) -> &'static str {
        match self {
            Self::Hpet => DeviceLatencySummary::PREFIX,
            Self::Nic => CycleSummary::PREFIX,
        }
    }

    /// The name its histogram lines carry (`histogram device=NAME`).
    fn histogram_name(self) -> &'static str {
        match self {
            Self::Hpet => "hpet",
            Self::Nic => "e1000",
        }
    }

    fn is_summary(self, line: &str) -> bool {
        match self {
            Self::Hpet => DeviceLatencySummary::parse(line).is_some(),
            Self::Nic => CycleSummary::parse(line).is_some(),
        }
    }
}

/// What `bench irq` measures.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct IrqArgs {
    /// The device: `hpet` (its interrupt's latency) or `nic` (a cyclic frame exchange's
    /// round trips).
    #[arg(long, value_enum, default_value = "hpet")]
    pub device: Device,
    /// The example config of the hypervisor run (one Linux and one RT CPU), to which the
    /// benchmark gives the device [default: bochs-2cpu.toml].
    #[arg(long, value_name = "NAME", default_value = "bochs-2cpu.toml")]
    pub config: String,
    /// The interval between HPET events, or the NIC's cycle, in microseconds (100 to
    /// 1000000) [default: 1000 for the HPET, 2000 for the NIC: Bochs reads one frame from
    /// its socket per emulated millisecond, so at 1 ms an answer that missed one read waits
    /// behind the next cycle's for good].
    #[arg(long, value_name = "US",
          value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    pub period_us: Option<u64>,
    /// Seconds of virtual time measured after the first summary (1 to 600).
    #[arg(long, value_name = "S", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// The demo control loop's rate in Hz, 0 = off, in both runs (it runs below the HPET
    /// task's priority).
    #[arg(long, value_name = "HZ", default_value_t = 0)]
    pub control_hz: u64,
    /// Bochs instructions per emulated second.
    #[arg(long, value_name = "N", default_value_t = bulkhead_e2e::DEFAULT_BOCHS_IPS)]
    pub ips: u32,
    /// Wall-clock limit per run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub timeout: u64,
}

/// One run's result: its last summary line, the histogram printed after it (non-empty 1 µs
/// buckets), and its RT CPU's exits in the window.
struct Measured {
    name: &'static str,
    line: String,
    histogram: Vec<(u64, u64)>,
    exits: Vec<(u32, u64, u64, String)>,
}

impl Measured {
    fn hpet(&self) -> DeviceLatencySummary<'_> {
        // `measure` kept only a line that parses.
        DeviceLatencySummary::parse(&self.line).unwrap_or_default()
    }

    fn nic(&self) -> CycleSummary<'_> {
        // As in `hpet`.
        CycleSummary::parse(&self.line).unwrap_or_default()
    }
}

/// Boots `scenario` and waits for `seconds + 1` summaries; returns the `seconds + 1`-th.
fn measure(name: &'static str, scenario: &Scenario, args: &IrqArgs) -> Result<Measured> {
    let mut run = scenario.start()?;
    let want = usize::try_from(args.seconds + 1).unwrap_or(usize::MAX);
    let device = args.device;
    let expect = Expect::new()
        .times(want, device.summary_prefix())
        .fail_on("FATAL")
        .stop_on("halted");
    run.wait_for(&expect, Duration::from_secs(args.timeout))
        .with_context(|| format!("{}: the run did not finish", scenario.name()))?;
    let lines = run.lines().to_vec();
    let (at, line) = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| device.is_summary(l))
        .nth(want - 1)
        .with_context(|| format!("{}: no {device:?} summary", scenario.name()))?;
    let line = line.clone();
    let histogram = histogram_after(device, &lines[at + 1..]);
    eprintln!(
        "[xtask] {}: done after {:.0} s wall",
        scenario.name(),
        run.elapsed().as_secs_f64()
    );
    Ok(Measured {
        name,
        line,
        histogram,
        exits: rt_exits_in_window(&lines),
    })
}

/// The device's histogram in the lines after its summary, up to its next summary.
fn histogram_after(device: Device, lines: &[String]) -> Vec<(u64, u64)> {
    lines
        .iter()
        .take_while(|l| !device.is_summary(l))
        .filter_map(|l| HistogramLine::parse(l))
        .filter(|h| h.owner == HistogramOwner::Device(device.histogram_name()))
        .flat_map(|h| h.pairs().collect::<Vec<_>>())
        .collect()
}

/// Runs the benchmark and prints the table.
pub fn run(
    args: &IrqArgs,
    config: &LoadedConfig,
    hypervisor: PathBuf,
    rt_kernel: PathBuf,
) -> Result<ExitCode> {
    ensure!(
        config.rt_cpus.len() == 1 && config.cpus() == 2,
        "the irq benchmark compares one RT CPU: use a config with one Linux and one RT CPU"
    );
    let period_us = args
        .period_us
        .unwrap_or_else(|| args.device.default_period_us());
    let (options, bare_options, config_text) = match args.device {
        Device::Hpet => {
            let options = format!(
                "{} hpet_period_us={} control_hz={} trace=on",
                config::rt_hpet_option(),
                period_us,
                args.control_hz
            );
            let bare = format!("lines={RT_HPET_GSI}:edge:high {options}");
            (
                options,
                bare,
                config::example_with_rt_hpet(&args.config, false)?,
            )
        }
        Device::Nic => {
            let options = format!(
                "nic=e1000 nic_period_us={period_us} control_hz={} trace=on",
                args.control_hz
            );
            let bare = format!("{} {options}", config::rt_nic_bare_options());
            (options, bare, config::example_with_rt_nic(&args.config)?)
        }
    };
    let mut bare = Scenario::rt_bare("bench_irq_bare")
        .rt_file(&rt_kernel)
        .rt_cmdline(bare_options.as_str())
        .cpus(1)
        .memory_mib(256)
        .ips(args.ips);
    let mut hv = Scenario::new("bench_irq_hypervisor")
        .config_text("bench-irq.toml", config_text)
        .hypervisor_file(&hypervisor)
        .hv_cmdline("exit_report_s=1")
        .rt_file(&rt_kernel)
        .rt_cmdline(options.as_str())
        .ips(args.ips);
    if args.device == Device::Nic {
        (bare, hv) = (bare.nic_peer(), hv.nic_peer());
    }
    // The HPET runs measure emulated time only: both at once. The NIC's peer answers in real
    // time, beside the emulator: one run at a time, so that it has a CPU of its own.
    let at_once = args.device == Device::Hpet;
    eprintln!(
        "[xtask] bench irq: {} s of {:?} events every {period_us} us, bare and under the hypervisor, {}",
        args.seconds,
        args.device,
        if at_once {
            "at once"
        } else {
            "one after the other"
        }
    );
    let measured = if at_once {
        let results = std::thread::scope(|s| {
            let bare = s.spawn(|| measure("bare", &bare, args));
            let hv = s.spawn(|| measure("hypervisor", &hv, args));
            [bare.join(), hv.join()]
        });
        let mut measured = Vec::new();
        for result in results {
            match result {
                Ok(m) => measured.push(m?),
                Err(_) => bail!("a benchmark thread panicked"),
            }
        }
        measured
    } else {
        vec![
            measure("bare", &bare, args)?,
            measure("hypervisor", &hv, args)?,
        ]
    };
    match args.device {
        Device::Hpet => print_hpet_table(args, period_us, &bare_options, &options, &measured),
        Device::Nic => print_nic_table(args, period_us, &bare_options, &options, &measured),
    }
    let series: Vec<Series<'_>> = measured
        .iter()
        .map(|m| Series {
            name: m.name,
            buckets: &m.histogram,
        })
        .collect();
    let what = match args.device {
        Device::Hpet => "HPET interrupt to handler task, an event every",
        Device::Nic => "NIC frame round trip, a cycle every",
    };
    let title = format!(
        "{what} {period_us} us, {} s; Bochs, ips {}, virtual time",
        args.seconds, args.ips
    );
    let chart = latency_plot::write(&title, &series, "irq.svg")?;
    println!("histograms: {}", crate::shown(&chart));
    Ok(ExitCode::SUCCESS)
}

fn print_hpet_table(
    args: &IrqArgs,
    period_us: u64,
    bare_options: &str,
    options: &str,
    measured: &[Measured],
) {
    println!(
        "device interrupt latency: HPET comparator to handler task, an event every {period_us} us, {} s measured; Bochs corei7_icelake_u, ips {}, virtual time",
        args.seconds, args.ips
    );
    println!("kernel options: bare `{bare_options}`, hypervisor `{options}`");
    println!(
        "{:<12}{:>9}{:>10}{:>10}{:>10}{:>10}{:>11}{:>6}{:>9}  kernel share avg/max (top half to task)",
        "", "samples", "min_ns", "avg_ns", "max_ns", "p99_ns", "p99.9_ns", "lost", "overflow"
    );
    for m in measured {
        let s = m.hpet();
        println!(
            "{:<12}{:>9}{:>10}{:>10}{:>10}{:>10}{:>11}{:>6}{:>9}  {} / {} ns",
            m.name,
            s.samples,
            s.min_ns,
            s.avg_ns,
            s.max_ns,
            s.p99_ns,
            s.p999_ns,
            s.lost,
            s.overflow,
            s.kernel_avg_ns,
            s.kernel_max_ns
        );
    }
    if let [bare, hv] = measured {
        let (b, h) = (bare.hpet(), hv.hpet());
        println!(
            "{:<12}{:>9}{:>10}{:>10}{:>10}{:>10}{:>11}",
            "hv / bare",
            "",
            ratio(h.min_ns, b.min_ns),
            ratio(h.avg_ns, b.avg_ns),
            ratio(h.max_ns, b.max_ns),
            ratio(h.p99_ns, b.p99_ns),
            ratio(h.p999_ns, b.p999_ns)
        );
        print_exits(hv, h.samples + h.lost);
    }
}

fn print_nic_table(
    args: &IrqArgs,
    period_us: u64,
    bare_options: &str,
    options: &str,
    measured: &[Measured],
) {
    println!(
        "NIC cyclic frame exchange: Intel 8254x, a frame every {period_us} us, {} s measured; round trip = frame handed to the NIC to its answer seen by the driver's task (Bochs reads its socket once per emulated ms: most of it is that); Bochs corei7_icelake_u, ips {}, virtual time, clock held back to real time (the peer's)",
        args.seconds, args.ips
    );
    println!("kernel options: bare `{bare_options}`, hypervisor `{options}`");
    println!(
        "{:<12}{:>8}{:>9}{:>6}{:>6}{:>5}{:>10}{:>10}{:>10}{:>10}{:>11}{:>8}  kernel share avg/max (top half to task)",
        "",
        "cycles",
        "answered",
        "late",
        "lost",
        "bad",
        "min_ns",
        "avg_ns",
        "max_ns",
        "p99_ns",
        "p99.9_ns",
        "irqs"
    );
    for m in measured {
        let s = m.nic();
        println!(
            "{:<12}{:>8}{:>9}{:>6}{:>6}{:>5}{:>10}{:>10}{:>10}{:>10}{:>11}{:>8}  {} / {} ns",
            m.name,
            s.cycles,
            s.answered,
            s.late,
            s.lost,
            s.bad,
            s.min_ns,
            s.avg_ns,
            s.max_ns,
            s.p99_ns,
            s.p999_ns,
            s.irqs,
            s.kernel_avg_ns,
            s.kernel_max_ns
        );
    }
    if let [bare, hv] = measured {
        let (b, h) = (bare.nic(), hv.nic());
        println!(
            "{:<12}{:>8}{:>9}{:>6}{:>6}{:>5}{:>10}{:>10}{:>10}{:>10}{:>11}{:>8}  {} / {}",
            "hv / bare",
            "",
            "",
            "",
            "",
            "",
            ratio(h.min_ns, b.min_ns),
            ratio(h.avg_ns, b.avg_ns),
            ratio(h.max_ns, b.max_ns),
            ratio(h.p99_ns, b.p99_ns),
            ratio(h.p999_ns, b.p999_ns),
            "",
            ratio(h.kernel_avg_ns, b.kernel_avg_ns),
            ratio(h.kernel_max_ns, b.kernel_max_ns)
        );
        print_exits(hv, h.irqs);
    }
}

/// The hypervisor run's RT CPU exits in the window, beside the device interrupts it took.
fn print_exits(hv: &Measured, interrupts: u64) {
    if hv.exits.is_empty() {
        println!("RT CPU exits, hypervisor: no exit report seen");
    }
    for (cpu, before, window, reasons) in &hv.exits {
        println!(
            "RT CPU {cpu} exits, hypervisor: {window} after steady state while it took {interrupts} device interrupts ({before} at start-up; all: {reasons})"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_the_one_after_the_summary() {
        let lines: Vec<String> = [
            "histogram device=hpet us:count=3:5,4:1",
            "latency cpu=0 samples=1",
            "histogram cpu=0 us:count=15:9",
            "histogram device=hpet us:count=2:1",
            "device-latency source=hpet gsi=20 samples=2 min_ns=1 avg_ns=1 max_ns=1 p99_ns=1 p999_ns=1 lost=0 overflow=0 kernel_avg_ns=1 kernel_max_ns=1",
            "histogram device=hpet us:count=9:9",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            histogram_after(Device::Hpet, &lines),
            [(3, 5), (4, 1), (2, 1)]
        );
        assert_eq!(histogram_after(Device::Hpet, &lines[5..]), [(9, 9)]);
        assert_eq!(histogram_after(Device::Nic, &lines), []);
    }
}
