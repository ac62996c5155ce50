//! `cargo xtask bench latency`: the RT kernel's latency task bare and under the hypervisor,
//! side by side.
//!
//! Both runs boot the same RT kernel ELF with the same options in Bochs with the same CPU
//! model, instructions per second and deterministic clock (`clock: sync=none`, so time follows
//! the instruction count and the numbers do not depend on the host), and with the kernel on
//! one CPU in both: bare, Bochs emulates that one CPU; under the hypervisor, two, of which the
//! config's Linux CPU runs the start-up stub (halted) and the RT partition owns the other. (A
//! bare kernel on two CPUs is another workload: two latency tasks, one per CPU, waking at the
//! same instant; each CPU has its own kernel state, so they do not wait for each other.) The two
//! runs go at once, one per host core. `--two-rt-cpus` adds that workload, bare and under the
//! hypervisor (`configs/bochs-4cpu.toml`: two Linux CPUs in the start-up stub, two RT CPUs),
//! and compares each CPU's numbers with the one-CPU run's: the cores must not slow each other
//! down. Each stops after each of the kernel's CPUs has printed
//! `seconds + 1` cumulative summaries (one a second); the last one is the result. Under the
//! hypervisor the exits of the RT CPUs are read from the per-second exit reports
//! (`exit_report_s=1`): those after `bulkhead: steady state` fall in the measured window.
//! The kernel runs with `trace=on`, so each run also shows its wake-up path stage by stage,
//! its longest interrupts-off section and where it began, and the control loop's missed
//! deadlines; `--rt-cmdline` adds kernel options to both runs (the status, log and echo tasks,
//! for one: the channels exist only under the hypervisor, so bare runs without them).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bulkhead_abi::console::{
    ControlSummary, HistogramLine, HistogramOwner, STEADY_STATE, SectionSummary, WakePathSummary,
};
use bulkhead_e2e::config::LoadedConfig;
use bulkhead_e2e::{
    ExitReport, Expect, LatencySummary, LinuxMode, PartitionKind, Pattern, Scenario, report,
};
use clap::Args;

use crate::guest::Artefacts;
use crate::latency_plot::{self, Series};

/// What `bench latency` measures.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct LatencyArgs {
    /// The machine config of the hypervisor run: one Linux and one RT CPU
    /// [default: configs/bochs-2cpu.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The latency task's period in microseconds (10 to 1000000).
    #[arg(long, value_name = "US", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
    pub period_us: u64,
    /// Seconds of virtual time measured after the first summary (1 to 600).
    #[arg(long, value_name = "S", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// The demo control loop's rate in Hz, 0 = off (the kernel's default is 10000).
    #[arg(long, value_name = "HZ", default_value_t = 10_000)]
    pub control_hz: u64,
    /// Bochs instructions per emulated second.
    #[arg(long, value_name = "N", default_value_t = bulkhead_e2e::DEFAULT_BOCHS_IPS)]
    pub ips: u32,
    /// More RT kernel options for both runs, after the benchmark's own (e.g.
    /// `status=rt-status log=rt-log echo=commands:telemetry`: the status, log and echo tasks;
    /// a bare kernel has no channels, so it runs without them and says so).
    #[arg(long, value_name = "STR", default_value = "")]
    pub rt_cmdline: String,
    /// Also boot Linux for real in its partition, idle (at its shell) and loaded (the guest's
    /// `bulkhead.init=load`: a CPU hog on every Linux CPU, memory streaming, a fork and exec
    /// loop, console output, channel traffic through `bulkhead ping` and the RT echo task),
    /// and measure from the moment its init runs; takes several more minutes.
    #[arg(long)]
    pub linux_load: bool,
    /// Also boot Linux hostile (the guest's `bulkhead.init=hostile-loop`: the attacks of the
    /// hostile-Linux test, as root and as `nobody`, again and again, each round bringing back
    /// the channels it corrupted; booted with `iomem=relaxed`, so that root's `/dev/mem`
    /// reaches the APIC and IOAPIC pages too), beside Linux idle, and measure from the moment
    /// the attacks start; takes several more minutes.
    #[arg(long)]
    pub linux_hostile: bool,
    /// Also run the kernel on two CPUs whose latency tasks wake at the same instant, bare
    /// (Bochs emulates two CPUs) and under the hypervisor (the config `configs/bochs-4cpu.toml`:
    /// its two Linux CPUs in the start-up stub, two RT CPUs), each CPU's numbers against the
    /// one-CPU run's (the goal: each CPU's maximum within 2 % of one CPU's).
    #[arg(long)]
    pub two_rt_cpus: bool,
    /// Wall-clock limit per run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub timeout: u64,
}

/// The summaries of the latency task on the RT kernel's CPU `cpu` among `lines`.
fn summaries_of(lines: &[String], cpu: u32) -> Vec<LatencySummary> {
    report::latency_summaries(lines)
        .into_iter()
        .filter(|s| s.cpu == cpu)
        .collect()
}

/// RT exits after steady state, per RT CPU: `(cpu, total before, new after, reasons)`.
pub(crate) fn rt_exits_in_window(lines: &[String]) -> Vec<(u32, u64, u64, String)> {
    let mut out: Vec<(u32, u64, u64, String)> = Vec::new();
    let mut after_steady = false;
    for line in lines {
        if line.trim() == STEADY_STATE {
            after_steady = true;
            continue;
        }
        let Some(report) = ExitReport::parse(line) else {
            continue;
        };
        if report.partition != PartitionKind::Rt {
            continue;
        }
        let reasons = report.reasons_text();
        match out.iter_mut().find(|e| e.0 == report.cpu) {
            Some(e) if after_steady => {
                e.2 += report.new;
                e.3 = reasons;
            }
            Some(e) => *e = (report.cpu, report.total, 0, reasons),
            None => out.push((report.cpu, report.total, 0, reasons)),
        }
    }
    out
}

fn kernel_options(args: &LatencyArgs) -> String {
    format!(
        "latency_period_us={} latency_report_s=1 control_hz={} trace=on {}",
        args.period_us, args.control_hz, args.rt_cmdline
    )
    .trim_end()
    .to_string()
}

/// What the kernel said of itself on its CPU 0 by the end of the measured window: its
/// longest interrupts-off section (its length, its stages and where it began), its wake-up
/// path, and the control loop's last report.
#[derive(Debug, Default)]
struct KernelView {
    section: Option<(u64, [u64; 3], String)>,
    path: Option<WakePathSummary>,
    control: Option<ControlSummary>,
    /// The non-empty 1 µs buckets of CPU 0's histogram after its last summary counted.
    histogram: Vec<(u64, u64)>,
}

/// The kernel's view among `lines` up to the `want`-th latency summary of CPU 0.
fn kernel_view(lines: &[String], want: usize) -> KernelView {
    let mut view = KernelView::default();
    let mut summaries = 0;
    for line in lines {
        if LatencySummary::parse(line).is_some_and(|s| s.cpu == 0) {
            summaries += 1;
            if summaries > want {
                break;
            }
            view.histogram.clear();
        } else if let Some(h) =
            HistogramLine::parse(line).filter(|h| h.owner == HistogramOwner::Cpu(0))
        {
            view.histogram.extend(h.pairs());
        } else if let Some(s) = SectionSummary::parse(line).filter(|s| s.cpu == 0) {
            view.section = Some((s.irq_off_max_ns, s.stages_ns, s.at.to_string()));
        } else if let Some(p) = WakePathSummary::parse(line).filter(|p| p.cpu == 0) {
            view.path = Some(p);
        } else if let Some(c) = ControlSummary::parse(line) {
            view.control = Some(c);
        }
    }
    view
}

/// One run of the benchmark: its name, what boots, how many of the kernel's CPUs run a
/// latency task, and the line its window starts after (if not from boot).
struct Run {
    name: &'static str,
    scenario: Scenario,
    cpus: u32,
    from: Option<&'static str>,
}

/// Boots `run` and waits for `seconds + 1` summaries of each of its CPUs (after a line
/// matching its `from`, when given: the summaries are cumulative, so the window then covers
/// what came before too); returns the run's lines, each CPU's last summary (CPU 0 first) and
/// the kernel's view of itself on CPU 0 then.
fn measure(
    run: &Run,
    args: &LatencyArgs,
) -> Result<(Vec<String>, Vec<LatencySummary>, KernelView)> {
    let name = run.scenario.name();
    let mut emulator = run.scenario.start()?;
    let limit = Duration::from_secs(args.timeout);
    let mut before = vec![0; run.cpus as usize];
    if let Some(from) = run.from {
        let start = Expect::new().line(Pattern::regex(from)).stop_on("halted");
        emulator
            .wait_for(&start, limit)
            .with_context(|| format!("{name}: no `{from}` line"))?;
        for (cpu, count) in (0..run.cpus).zip(&mut before) {
            *count = summaries_of(emulator.lines(), cpu).len();
        }
    }
    let window = usize::try_from(args.seconds + 1).unwrap_or(usize::MAX);
    let want: Vec<usize> = before.iter().map(|b| b + window).collect();
    let expect = (0..run.cpus)
        .zip(&want)
        .fold(Expect::new(), |expect, (cpu, &n)| {
            expect.times(n, report::latency_pattern_for_cpu(cpu))
        })
        .stop_on("halted");
    emulator
        .wait_for(&expect, limit)
        .with_context(|| format!("{name}: the run did not finish"))?;
    let lines = emulator.lines().to_vec();
    // The `want`-th summary, so that every run covers the same virtual time even when one
    // printed more before it was stopped.
    let mut last = Vec::new();
    for (cpu, &n) in (0..run.cpus).zip(&want) {
        let summaries = summaries_of(&lines, cpu);
        last.push(
            summaries
                .get(n - 1)
                .or(summaries.last())
                .copied()
                .with_context(|| format!("{name}: no latency summary of CPU {cpu}"))?,
        );
    }
    eprintln!(
        "[xtask] {name}: done after {:.0} s wall",
        emulator.elapsed().as_secs_f64()
    );
    let view = kernel_view(&lines, want[0]);
    Ok((lines, last, view))
}

/// One column of the table: a run's name, its last summary (CPU 0's) and every CPU's, the
/// kernel's view, and its RT CPUs' exits in the measured window.
struct Measured {
    name: &'static str,
    summary: LatencySummary,
    per_cpu: Vec<LatencySummary>,
    view: KernelView,
    exits: Vec<(u32, u64, u64, String)>,
}

/// Runs `runs` two at a time (one per host core).
fn measure_all(runs: Vec<Run>, args: &LatencyArgs) -> Result<Vec<Measured>> {
    let mut out = Vec::new();
    for pair in runs.chunks(2) {
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = pair
                .iter()
                .map(|run| s.spawn(move || measure(run, args)))
                .collect();
            handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
        });
        for (run, result) in pair.iter().zip(results) {
            let Ok(result) = result else {
                bail!("the benchmark thread of {} panicked", run.name);
            };
            let (lines, per_cpu, view) = result?;
            out.push(Measured {
                name: run.name,
                summary: per_cpu[0],
                per_cpu,
                view,
                exits: rt_exits_in_window(&lines),
            });
        }
    }
    Ok(out)
}

pub(crate) fn ratio(hv: u64, bare: u64) -> String {
    if bare == 0 {
        "-".into()
    } else {
        format!("{:.2}", hv as f64 / bare as f64)
    }
}

/// The guest's line when its load runs (`bulkhead.init=load`).
const LOAD_RUNNING: &str = r"^bulkhead-linux: load running on \d+ CPUs$";
/// The guest's line when its init runs.
const INIT_REACHED: &str = r"^bulkhead-linux: init reached$";
/// The guest's line when its attacks start (`bulkhead.init=hostile-loop`).
const HOSTILE_RUNNING: &str = r"^bulkhead-linux: hostile loop running$";

/// The two-RT-CPU runs' names: each compares with the one-CPU run named beside it.
const TWO_CPU_RUNS: [(&str, &str); 2] = [("bare 2 cpus", "bare"), ("hv 2 rt cpus", "hypervisor")];

/// Runs the benchmark and prints the table; `two_cpu_config` is the config of the
/// hypervisor's two-RT-CPU run (`--two-rt-cpus`).
pub fn run(
    args: &LatencyArgs,
    config: &LoadedConfig,
    two_cpu_config: Option<&LoadedConfig>,
    hypervisor: PathBuf,
    rt_kernel: PathBuf,
    linux: Option<&Artefacts>,
) -> Result<ExitCode> {
    ensure!(
        config.rt_cpus.len() == 1 && config.cpus() == 2,
        "the latency benchmark compares one RT CPU: use a config with one Linux and one RT CPU"
    );
    if let Some(two) = two_cpu_config {
        ensure!(
            two.rt_cpus.len() == 2,
            "{}: the two-RT-CPU run needs a config with two RT CPUs, not {}",
            two.path.display(),
            two.rt_cpus.len()
        );
    }
    let options = kernel_options(args);
    // Bare, Bochs emulates the kernel's one CPU; under the hypervisor, the config's machine
    // with the start-up stub on its Linux CPU.
    let bare_on = |name: &str, cpus: u32| {
        Scenario::rt_bare(name)
            .rt_file(&rt_kernel)
            .rt_cmdline(options.as_str())
            .cpus(cpus)
            .memory_mib(256)
            .ips(args.ips)
    };
    let hv_of = |config: &LoadedConfig, name: &str| {
        Scenario::new(name)
            .config_path(&config.path)
            .hypervisor_file(&hypervisor)
            .hv_cmdline("exit_report_s=1")
            .rt_file(&rt_kernel)
            .ips(args.ips)
    };
    let hv = |name: &str| hv_of(config, name);
    let one = |name, scenario| Run {
        name,
        scenario,
        cpus: 1,
        from: None,
    };
    let mut runs = vec![
        one("bare", bare_on("bench_latency_bare", 1)),
        one(
            "hypervisor",
            hv("bench_latency_hypervisor").rt_cmdline(options.as_str()),
        ),
    ];
    if let Some(two) = two_cpu_config {
        let [(bare_two, _), (hv_two, _)] = TWO_CPU_RUNS;
        runs.push(Run {
            name: bare_two,
            scenario: bare_on("bench_latency_bare_2cpu", 2),
            cpus: 2,
            from: None,
        });
        runs.push(Run {
            name: hv_two,
            scenario: hv_of(two, "bench_latency_hypervisor_2rt").rt_cmdline(options.as_str()),
            cpus: 2,
            from: None,
        });
    }
    if let Some(linux) = linux {
        ensure!(
            config.linux_initrd.is_some(),
            "{} names no [linux] initrd: the Linux runs need the guest's initramfs",
            config.path.display()
        );
        // Both with the echo task, which the load's channel traffic goes through.
        let with_echo = format!("{options} echo=commands:telemetry");
        let linux_run = |name: &str, init: &str| {
            hv(name)
                .rt_cmdline(with_echo.as_str())
                .linux(LinuxMode::kernel(init))
                .linux_files(&linux.vmlinux, &linux.initramfs)
        };
        let from_line = |name, scenario, from| Run {
            name,
            scenario,
            cpus: 1,
            from: Some(from),
        };
        runs.push(from_line(
            "linux idle",
            linux_run("bench_latency_linux_idle", ""),
            INIT_REACHED,
        ));
        if args.linux_load {
            runs.push(from_line(
                "linux loaded",
                linux_run("bench_latency_linux_loaded", "bulkhead.init=load"),
                LOAD_RUNNING,
            ));
        }
        if args.linux_hostile {
            runs.push(from_line(
                "linux hostile",
                linux_run(
                    "bench_latency_linux_hostile",
                    "bulkhead.init=hostile-loop iomem=relaxed",
                ),
                HOSTILE_RUNNING,
            ));
        }
    }
    eprintln!(
        "[xtask] bench latency: {} s at {} us, {} runs, two at a time",
        args.seconds,
        args.period_us,
        runs.len()
    );
    let measured = measure_all(runs, args)?;
    print_table(args, &options, &measured);
    let series: Vec<Series<'_>> = measured
        .iter()
        .map(|m| Series {
            name: m.name,
            buckets: &m.view.histogram,
        })
        .collect();
    let title = format!(
        "RT wake-up latency, {} us period, {} s; Bochs, ips {}, virtual time",
        args.period_us, args.seconds, args.ips
    );
    let chart = latency_plot::write(&title, &series, "latency.svg")?;
    println!("histograms: {}", crate::shown(&chart));
    Ok(ExitCode::SUCCESS)
}

fn print_table(args: &LatencyArgs, options: &str, measured: &[Measured]) {
    println!(
        "RT latency, {} us period, {} s measured; Bochs corei7_icelake_u, ips {}, virtual time",
        args.period_us, args.seconds, args.ips
    );
    println!("kernel options: {options}");
    if measured.len() > 2 {
        println!(
            "linux runs: measured from Linux's init (idle: at its shell; loaded: from `load running`; hostile: from `hostile loop running`), the RT echo task on; summaries are cumulative since boot"
        );
    }
    println!(
        "{:<14}{:>9}{:>10}{:>10}{:>10}{:>10}{:>11}{:>8}{:>10}",
        "", "samples", "min_ns", "avg_ns", "max_ns", "p99_ns", "p99.9_ns", "misses", "overflow"
    );
    for m in measured {
        for s in &m.per_cpu {
            let name = if m.per_cpu.len() > 1 {
                format!("{} cpu{}", short(m.name), s.cpu)
            } else {
                m.name.to_string()
            };
            println!(
                "{:<14}{:>9}{:>10}{:>10}{:>10}{:>10}{:>11}{:>8}{:>10}",
                name,
                s.samples,
                s.min_ns,
                s.avg_ns,
                s.max_ns,
                s.p99_ns,
                s.p999_ns,
                s.misses,
                s.overflow
            );
        }
    }
    let bare = measured[0].summary;
    for m in measured[1..].iter().filter(|m| m.per_cpu.len() == 1) {
        print_ratio_row(&format!("{} / bare", short(m.name)), m.summary, bare);
    }
    let run = |name| measured.iter().find(|m| m.name == name).map(|m| m.summary);
    for (two, one) in TWO_CPU_RUNS {
        let (Some(two), Some(one)) = (measured.iter().find(|m| m.name == two), run(one)) else {
            continue;
        };
        for s in &two.per_cpu {
            print_ratio_row(&format!("{} cpu{} / 1", short(two.name), s.cpu), *s, one);
        }
    }
    if measured.iter().any(|m| m.per_cpu.len() > 1) {
        println!(
            "two RT CPUs: both latency tasks wake at the same instant, the control loop runs on the last CPU (as on the one CPU of the one-CPU runs); `/ 1` is each CPU against the one-CPU run (goal: max within 1.02)"
        );
    }
    if let Some(idle) = run("linux idle") {
        for (row, name) in [
            ("loaded / idle", "linux loaded"),
            ("hostile / idle", "linux hostile"),
        ] {
            if let Some(of) = run(name) {
                print_ratio_row(row, of, idle);
            }
        }
    }
    println!(
        "{:<14}{:>12}{:>12}{:>12}{:>12}{:>12}  longest interrupts-off section",
        "wake path avg", "to_irq", "to_decision", "to_switch", "to_task", "total"
    );
    for m in measured {
        let path = m.view.path.unwrap_or_default();
        let (longest, [decide, switch, resume], at) =
            m.view.section.clone().unwrap_or((0, [0; 3], "-".into()));
        println!(
            "{:<14}{:>12}{:>12}{:>12}{:>12}{:>12}  {longest} ns at {at} \
             (decide {decide}, switch {switch}, resume {resume})",
            m.name,
            path.avg_ns[0],
            path.avg_ns[1],
            path.avg_ns[2],
            path.avg_ns[3],
            path.total_avg_ns()
        );
    }
    for m in measured {
        match m.view.control {
            Some(c) => println!(
                "control loop, {}: {} jobs, {} missed deadlines, longest job {} ns",
                m.name, c.jobs, c.misses, c.max_job_ns
            ),
            None if args.control_hz > 0 => println!("control loop, {}: no report seen", m.name),
            None => {}
        }
    }
    for m in &measured[1..] {
        if m.exits.is_empty() {
            println!(
                "RT CPU exits, {}: no exit report seen (the hypervisor prints them with exit_report_s)",
                m.name
            );
        }
        for (cpu, before, window, reasons) in &m.exits {
            println!(
                "RT CPU {cpu} exits, {}: {window} after steady state ({before} at start-up; all: {reasons})",
                m.name
            );
        }
    }
}

/// One row of ratios `of / to`, under the table's statistics columns.
fn print_ratio_row(name: &str, of: LatencySummary, to: LatencySummary) {
    println!(
        "{:<14}{:>9}{:>10}{:>10}{:>10}{:>10}{:>11}",
        name,
        "",
        ratio(of.min_ns, to.min_ns),
        ratio(of.avg_ns, to.avg_ns),
        ratio(of.max_ns, to.max_ns),
        ratio(of.p99_ns, to.p99_ns),
        ratio(of.p999_ns, to.p999_ns)
    );
}

/// A run's name for a ratio's row.
fn short(name: &str) -> &str {
    match name {
        "hypervisor" => "hv",
        "linux idle" => "idle",
        "linux loaded" => "loaded",
        "linux hostile" => "hostile",
        "bare 2 cpus" => "bare2",
        "hv 2 rt cpus" => "hv2",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_taken_per_cpu() {
        let lines: Vec<String> = [
            "latency cpu=1 samples=1 min_ns=1 avg_ns=1 max_ns=1 p99_ns=1 p999_ns=1 misses=0 overflow=0",
            "latency cpu=0 samples=1001 min_ns=41400 avg_ns=41825 max_ns=105842 p99_ns=47999 p999_ns=81999 misses=0 overflow=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = summaries_of(&lines, 0);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].samples, s[0].avg_ns, s[0].p999_ns),
            (1001, 41825, 81999)
        );
        let s = summaries_of(&lines, 1);
        assert_eq!((s.len(), s[0].samples), (1, 1));
        assert!(summaries_of(&lines, 2).is_empty());
    }

    #[test]
    fn the_kernel_view_is_taken_up_to_the_wanted_summary() {
        let lines: Vec<String> = [
            "latency cpu=0 samples=1 min_ns=1 avg_ns=1 max_ns=1 p99_ns=1 p999_ns=1 misses=0 overflow=0",
            "histogram cpu=0 us:count=1:1",
            "histogram cpu=1 us:count=9:1",
            "sections cpu=0 count=10 irq_off_max_ns=500 decide_ns=300 switch_ns=100 resume_ns=100 at=irq:32",
            "wake cpu=0 samples=1 to_irq_ns=1 to_decision_ns=2 to_switch_ns=3 to_task_ns=4 max_to_irq_ns=1 max_to_decision_ns=2 max_to_switch_ns=3 max_to_task_ns=4",
            "sections cpu=1 count=10 irq_off_max_ns=900 decide_ns=900 switch_ns=0 resume_ns=0 at=irq:33",
            "control: jobs=20001 misses=0 max_err_urad=1 mean_err_urad=1 max_job_ns=2700",
            "latency cpu=0 samples=2 min_ns=1 avg_ns=1 max_ns=1 p99_ns=1 p999_ns=1 misses=0 overflow=0",
            "sections cpu=0 count=20 irq_off_max_ns=700 decide_ns=700 switch_ns=0 resume_ns=0 at=src/a.rs:1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let view = kernel_view(&lines, 1);
        assert_eq!(
            view.section,
            Some((500, [300, 100, 100], "irq:32".to_string()))
        );
        assert_eq!(view.path.map(|p| p.total_avg_ns()), Some(10));
        assert_eq!(view.control.map(|c| c.jobs), Some(20001));
        assert_eq!(view.histogram, [(1, 1)]);
        let view = kernel_view(&lines, 2);
        assert!(view.histogram.is_empty());
        assert_eq!(
            view.section,
            Some((700, [700, 0, 0], "src/a.rs:1".to_string()))
        );
    }

    #[test]
    fn exits_after_steady_state_are_the_window() {
        let lines: Vec<String> = [
            "exits: cpu 0 linux: total 1 new 1: VMCALL=1",
            "exits: cpu 1 rt: total 4 new 4: CPUID=3 VMCALL=1",
            STEADY_STATE,
            "exits: cpu 1 rt: total 4 new 0: CPUID=3 VMCALL=1",
            "exits: cpu 1 rt: total 6 new 2: CPUID=3 VMCALL=1 WRMSR=2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            rt_exits_in_window(&lines),
            vec![(1, 4, 2, "CPUID=3 VMCALL=1 WRMSR=2".to_string())]
        );
    }
}
