//! `cargo xtask bench linux-boot`: Linux's boot from kernel entry to its init, bare and under
//! the hypervisor, in Bochs' virtual time, side by side.
//!
//! Both runs boot Debian's kernel (the same release) with the same initramfs, whose `/init`
//! prints `bulkhead-linux: uptime X` (Linux's `/proc/uptime`: seconds since its clock started,
//! early in `start_kernel`) and then powers off. Both run in Bochs with the same CPU model,
//! instructions per second and deterministic clock (`clock: sync=none`, so time follows the
//! instruction count), Linux on as many CPUs as the config gives it, the machine with the
//! config's default memory. Under the hypervisor, the config's ISO: the vmlinux loaded by the
//! hypervisor, the RT kernel beside it, `exit_report_s=2`; the run ends when the hypervisor
//! reports that the Linux partition powered off, with that CPU's exit counts. Bare, GRUB boots
//! the bzImage the vmlinux was taken out of (GRUB's `linux` needs the boot protocol's image;
//! its decompression ends before Linux's clock starts) with Linux's console on COM1 and two
//! options that do what the hypervisor's CPUID policy does for Linux (see [`bare_cmdline`]).
//! The two runs go at once, one per host core. The ratio compares the uptimes at init; the
//! exits per virtual second divide the Linux CPU's exits (launch to power-off) by that uptime,
//! so they overstate the rate a little (the exits before Linux's clock started and after its
//! init count too). As a check on Linux's clock under the hypervisor, the table also counts the
//! RT kernel's one-second summaries from launch to the power-off. This module measures only:
//! it changes neither the hypervisor nor the guest's files.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bulkhead_e2e::config::LoadedConfig;
use bulkhead_e2e::{
    ConfigModule, Emulator, Event, ExitReport, Expect, IsoSpec, PartitionKind, Pattern, Run,
    RunDir, report,
};
use clap::Args;
use regex::Regex;

use crate::guest::Artefacts;

const UPTIME: &str = r"^bulkhead-linux: uptime (\d+(?:\.\d+)?)$";
const KERNEL: &str = r"^bulkhead-linux: kernel (\S+)$";
const CPUS: &str = r"^bulkhead-linux: cpus online (\S+) count (\d+)$";
const MEMTOTAL: &str = r"^bulkhead-linux: memtotal_kb (\d+)$";
/// The exit counts the hypervisor prints right after `linux partition stopped`.
const STOP_EXITS: &str = r"^\s+exits: cpu \d+ linux: ";
const POWERED_OFF: &str = r"^cpu \d+ apic \d+: linux partition stopped: it powered off$";
/// The hypervisor's command line for the run under it: exit counts every 2 s of guest time.
const HV_CMDLINE: &str = "exit_report_s=2";
const EXIT_REPORT_S: u64 = 2;
/// What the Linux kernel module gets after the config's command line under the hypervisor.
const INIT_ARGS: &str = "bulkhead.init=poweroff";
/// The hypervisor's line at launch.
const LAUNCH: &str = r"^all \d+ CPUs in VMX operation";

/// Linux's whole command line bare: the config's with its console on COM1, `mem=` as much RAM
/// as the config gives Linux (so that both kernels size their memory alike), and what the
/// hypervisor's CPUID policy does for Linux in Bochs, by kernel options:
/// - `clearcpuid=fsrm`: Bochs' CPU model reports FSRM with fast strings disabled, and Linux
///   hangs in its early init (after `LSM: Security Framework initializing`); the hypervisor
///   hides FSRM (Linux notes the option as a taint);
/// - `tsc_early_khz=`: Bochs' TSC counts `ips` a second while its CPUID leaves 15h/16h
///   describe a 1.5 GHz part, so Linux's clock would run 30 times slow; the hypervisor states
///   the frequency it measured against the PIT (about `ips`), bare Linux is told `ips` and
///   refines it against the HPET as usual.
fn bare_cmdline(config_cmdline: &str, ips: u32, linux_ram_bytes: u64) -> String {
    let words: Vec<&str> = config_cmdline
        .split_ascii_whitespace()
        .filter(|w| !w.starts_with("console="))
        .collect();
    format!(
        "console=ttyS0,115200 {} mem={}M clearcpuid=fsrm tsc_early_khz={} bulkhead.init=poweroff",
        words.join(" "),
        linux_ram_bytes.div_ceil(1 << 20),
        ips / 1000
    )
}

/// How often a run reports that it is still going.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);
/// How long the bare run may take from its init's lines to Linux's power-off.
const POWER_OFF_LIMIT: Duration = Duration::from_secs(120);

/// What `bench linux-boot` measures.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct LinuxBootArgs {
    /// The machine config of the hypervisor run; the bare run gets as many CPUs as it gives
    /// Linux and the same emulated memory [default: configs/bochs-2cpu.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Bochs instructions per emulated second.
    #[arg(long, value_name = "N", default_value_t = bulkhead_e2e::DEFAULT_BOCHS_IPS)]
    pub ips: u32,
    /// Wall-clock limit per run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub timeout: u64,
}

/// What Linux's `/init` printed.
#[derive(Debug, Clone, PartialEq)]
struct Boot {
    /// `/proc/uptime` at init: virtual seconds since Linux's clock started.
    uptime_s: f64,
    /// `uname -r`.
    kernel: Option<String>,
    /// `/sys/devices/system/cpu/online` and the count.
    cpus_online: Option<(String, u32)>,
    /// `MemTotal` in KiB.
    memtotal_kb: Option<u64>,
}

/// The patterns above, compiled once.
struct Patterns {
    uptime: Regex,
    kernel: Regex,
    cpus: Regex,
    memtotal: Regex,
    powered_off: Regex,
    launch: Regex,
}

static RE: LazyLock<Patterns> = LazyLock::new(|| {
    // The patterns are the constants above; a bad one is a bug the unit tests find.
    let re = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("bad pattern {p:?}: {e}"));
    Patterns {
        uptime: re(UPTIME),
        kernel: re(KERNEL),
        cpus: re(CPUS),
        memtotal: re(MEMTOTAL),
        powered_off: re(POWERED_OFF),
        launch: re(LAUNCH),
    }
});

/// The captures of `re` on the first line it matches.
fn first_capture<'a>(lines: &'a [String], re: &Regex) -> Option<regex::Captures<'a>> {
    lines.iter().find_map(|l| re.captures(l))
}

/// The `/init` lines of one run; `None` without the uptime line.
fn parse_boot(lines: &[String]) -> Option<Boot> {
    let uptime_s = first_capture(lines, &RE.uptime)?[1].parse().ok()?;
    Some(Boot {
        uptime_s,
        kernel: first_capture(lines, &RE.kernel).map(|c| c[1].to_string()),
        cpus_online: first_capture(lines, &RE.cpus)
            .and_then(|c| Some((c[1].to_string(), c[2].parse().ok()?))),
        memtotal_kb: first_capture(lines, &RE.memtotal).and_then(|c| c[1].parse().ok()),
    })
}

/// The latest counts of each Linux CPU (the report with the largest total), by CPU, reasons
/// largest first.
fn linux_exits(lines: &[String]) -> Vec<ExitReport> {
    let mut out: Vec<ExitReport> = Vec::new();
    for exits in ExitReport::all(lines, PartitionKind::Linux) {
        match out.iter_mut().find(|e| e.cpu == exits.cpu) {
            Some(e) if e.total <= exits.total => *e = exits,
            Some(_) => {}
            None => out.push(exits),
        }
    }
    out.sort_by_key(|e| e.cpu);
    for e in &mut out {
        e.reasons
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    }
    out
}

/// Before the power-off under the hypervisor: the periodic exit reports, and the RT kernel's
/// one-second summaries since the launch.
fn until_power_off(lines: &[String]) -> (usize, usize) {
    let off = lines
        .iter()
        .position(|l| RE.powered_off.is_match(l))
        .unwrap_or(lines.len());
    let launch = lines[..off]
        .iter()
        .position(|l| RE.launch.is_match(l))
        .unwrap_or(off);
    let periodic_exits = lines[..off]
        .iter()
        .filter_map(|l| ExitReport::parse(l))
        .filter(|r| r.partition == PartitionKind::Linux && !r.at_stop)
        .count();
    let rt_summaries = report::latency_summaries(&lines[launch..off])
        .iter()
        .filter(|s| s.cpu == 0)
        .count();
    (periodic_exits, rt_summaries)
}

/// Everything the table shows.
#[derive(Debug, Clone)]
struct Report {
    ips: u32,
    /// Linux's command line in the bare run.
    bare_cmdline: String,
    /// The config, as shown.
    config: String,
    /// Linux's CPUs and all CPUs of the hypervisor run.
    linux_cpus: u32,
    machine_cpus: u32,
    memory_mib: u32,
    bare: Boot,
    hv: Boot,
    exits: Vec<ExitReport>,
    /// Periodic exit reports seen before the power-off (one per `EXIT_REPORT_S` of guest time).
    reports: usize,
    /// The RT kernel's one-second summaries from launch to the power-off.
    rt_seconds: usize,
}

fn ratio(hv: f64, bare: f64) -> String {
    if bare > 0.0 {
        format!("{:.2}", hv / bare)
    } else {
        "-".into()
    }
}

fn per_second(count: u64, seconds: f64) -> String {
    if seconds > 0.0 {
        format!("{:.0}", count as f64 / seconds)
    } else {
        "-".into()
    }
}

fn cpus_cell(boot: &Boot) -> String {
    boot.cpus_online
        .as_ref()
        .map_or("-".into(), |(list, n)| format!("{list} ({n})"))
}

fn memtotal_cell(boot: &Boot) -> String {
    boot.memtotal_kb.map_or("-".into(), |kb| kb.to_string())
}

/// The side-by-side table.
fn table(r: &Report) -> String {
    let mut out = String::new();
    let kernel = r.hv.kernel.as_deref().unwrap_or("?");
    let bare_kernel = r.bare.kernel.as_deref().unwrap_or("?");
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "Linux boot, kernel entry to /init (its /proc/uptime there), virtual time; Bochs \
         corei7_icelake_u, ips {}, clock sync=none",
        r.ips
    );
    if kernel == bare_kernel {
        let _ = writeln!(out, "kernel {kernel}, same initramfs in both");
    } else {
        let _ = writeln!(
            out,
            "kernels differ: bare {bare_kernel}, under the hypervisor {kernel}"
        );
    }
    let _ = writeln!(
        out,
        "bare:       bzImage from GRUB, {} CPU(s), {} MiB, \"{}\"",
        r.linux_cpus, r.memory_mib, r.bare_cmdline
    );
    let _ = writeln!(
        out,
        "hypervisor: vmlinux, {} (Linux on {} of {} CPUs), {} MiB, {HV_CMDLINE}",
        r.config, r.linux_cpus, r.machine_cpus, r.memory_mib
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<20}{:>12}{:>14}{:>12}",
        "", "bare", "hypervisor", "hv / bare"
    );
    let _ = writeln!(
        out,
        "{:<20}{:>12.2}{:>14.2}{:>12}",
        "entry -> init (s)",
        r.bare.uptime_s,
        r.hv.uptime_s,
        ratio(r.hv.uptime_s, r.bare.uptime_s)
    );
    let memtotal_ratio = match (r.hv.memtotal_kb, r.bare.memtotal_kb) {
        (Some(hv), Some(bare)) => ratio(hv as f64, bare as f64),
        _ => "-".into(),
    };
    let _ = writeln!(
        out,
        "{:<20}{:>12}{:>14}{:>12}",
        "MemTotal (KiB)",
        memtotal_cell(&r.bare),
        memtotal_cell(&r.hv),
        memtotal_ratio
    );
    let _ = writeln!(
        out,
        "{:<20}{:>12}{:>14}",
        "CPUs online",
        cpus_cell(&r.bare),
        cpus_cell(&r.hv)
    );
    let _ = writeln!(
        out,
        "check: {} RT kernel summaries (one a second) from the hypervisor's launch to Linux's \
         power-off, which includes Linux's time before its clock and after its init",
        r.rt_seconds
    );
    let _ = writeln!(out);
    if r.exits.is_empty() {
        let _ = writeln!(
            out,
            "Linux CPU exits: no exit report seen (the hypervisor prints them with exit_report_s)"
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Linux CPU exits under the hypervisor, launch to power-off; per s: over the {:.2} s to \
         init ({} exit reports, one per {EXIT_REPORT_S} s of guest time)",
        r.hv.uptime_s, r.reports
    );
    let _ = writeln!(
        out,
        "{:<28}{:>10}{:>9}{:>10}",
        "", "exits", "share", "per s"
    );
    for cpu in &r.exits {
        let _ = writeln!(
            out,
            "{:<28}{:>10}{:>9}{:>10}",
            format!("cpu {}", cpu.cpu),
            cpu.total,
            "",
            per_second(cpu.total, r.hv.uptime_s)
        );
        for (reason, n) in &cpu.reasons {
            let share = if cpu.total > 0 {
                format!("{:.1}%", *n as f64 * 100.0 / cpu.total as f64)
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "  {reason:<26}{n:>10}{share:>9}{:>10}",
                per_second(*n, r.hv.uptime_s)
            );
        }
    }
    out
}

/// Boots `spec` in `emulator`, follows it until `expect` is met (printing progress), then, if
/// given, waits for `then` (a failure there is a warning). Returns the run directory and the
/// console's lines.
fn measure(
    name: &str,
    spec: IsoSpec,
    emulator: &Emulator,
    expect: &Expect,
    limit: Duration,
    then: Option<(&Expect, Duration)>,
) -> Result<(PathBuf, Vec<String>)> {
    let dir = RunDir::create(name)?;
    let spec = IsoSpec {
        output: dir.join("bench.iso"),
        ..spec
    };
    let iso = bulkhead_e2e::build_iso(&spec).with_context(|| format!("{name}: the ISO"))?;
    eprintln!(
        "[xtask] {name}: booting in {emulator}; console in {}",
        crate::shown(dir.path())
    );
    let mut run = Run::start(&dir, &iso, emulator)?;
    let mut next_report = PROGRESS_EVERY;
    run.watch(expect, Some(limit), &mut |event| match event {
        Event::Line(_, line) => {
            if line.starts_with("bulkhead-linux: ") || RE.powered_off.is_match(line) {
                eprintln!("[xtask] {name}: {line}");
            }
        }
        Event::Tick {
            elapsed,
            serial_bytes,
        } => {
            if elapsed >= next_report {
                next_report += PROGRESS_EVERY;
                eprintln!(
                    "[xtask] {name}: running, {} s wall, console {:.1} KiB",
                    elapsed.as_secs(),
                    serial_bytes as f64 / 1024.0
                );
            }
        }
    })
    .with_context(|| format!("{name}: the run did not get through Linux's boot"))?;
    if let Some((then, limit)) = then
        && let Err(e) = run.wait_for(then, limit)
    {
        eprintln!(
            "[xtask] {name}: warning: {:?} after {:.0} s wall (the measurement stands)",
            e.kind,
            e.elapsed.as_secs_f64()
        );
    }
    eprintln!(
        "[xtask] {name}: done after {:.0} s wall",
        run.elapsed().as_secs_f64()
    );
    run.stop();
    Ok((dir.path().to_path_buf(), run.matching(Pattern::regex("."))))
}

/// Runs both and prints the table.
pub fn run(
    args: &LinuxBootArgs,
    config: &LoadedConfig,
    hypervisor: PathBuf,
    rt_kernel: PathBuf,
    linux: &Artefacts,
) -> Result<ExitCode> {
    let Some(initrd_name) = &config.linux_initrd else {
        bail!(
            "{} names no [linux] initrd: the benchmark needs the initramfs whose init prints \
             the uptime",
            config.path.display()
        );
    };
    let linux_cpus = u32::try_from(config.linux_cpus.len()).unwrap_or(u32::MAX);
    ensure!(
        linux_cpus > 0,
        "{} gives Linux no CPU",
        config.path.display()
    );
    let memory_mib = config.default_memory_mib();
    let bochs = |cpus| Emulator::Bochs {
        cpus,
        memory_mib,
        ips: args.ips,
    };
    let (bare_emulator, hv_emulator) = (bochs(linux_cpus), bochs(config.cpus()));
    bare_emulator.validate()?;
    hv_emulator.validate()?;

    let bare_spec = IsoSpec::linux_bare("bare.iso", &linux.bzimage, &linux.initramfs).cmdline(
        bare_cmdline(&config.linux_cmdline, args.ips, config.linux_ram_bytes),
    );
    let hv_spec = IsoSpec::new(
        "hv.iso",
        hypervisor,
        ConfigModule::Toml(config.path.clone()),
    )
    .cmdline(HV_CMDLINE)
    .module(&config.rt_image, rt_kernel)
    .module_with_args(&config.linux_kernel, &linux.vmlinux, INIT_ARGS)
    .module(initrd_name, &linux.initramfs);

    let init_lines = |expect: Expect| {
        expect
            .regex(UPTIME)
            .regex(MEMTOTAL)
            .regex(CPUS)
            .fail_on("Kernel panic")
    };
    let bare_expect = init_lines(Expect::new()).line("bulkhead-linux: powering off");
    let bare_then = Expect::new().line("reboot: Power down");
    let hv_expect = init_lines(Expect::new())
        .regex(POWERED_OFF)
        .regex(STOP_EXITS)
        .fail_on("guest stopped")
        .stop_on(bulkhead_abi::console::HALTED);
    let limit = Duration::from_secs(args.timeout);
    eprintln!(
        "[xtask] bench linux-boot: Linux {} bare ({linux_cpus} CPU(s)) and under the hypervisor \
         ({}), in parallel; GRUB alone takes a minute or more of wall time in Bochs",
        linux.release,
        crate::shown(&config.path)
    );
    let (bare, hv) = std::thread::scope(|s| {
        let bare = s.spawn(|| {
            measure(
                "bench_linux_boot_bare",
                bare_spec,
                &bare_emulator,
                &bare_expect,
                limit,
                Some((&bare_then, POWER_OFF_LIMIT)),
            )
        });
        let hv = s.spawn(|| {
            measure(
                "bench_linux_boot_hypervisor",
                hv_spec,
                &hv_emulator,
                &hv_expect,
                limit,
                None,
            )
        });
        (bare.join(), hv.join())
    });
    let (Ok(bare), Ok(hv)) = (bare, hv) else {
        bail!("a benchmark thread panicked");
    };
    let ((bare_dir, bare_lines), (hv_dir, hv_lines)) = match (bare, hv) {
        (Ok(bare), Ok(hv)) => (bare, hv),
        (bare, hv) => {
            let mut why = String::new();
            for (name, result) in [("bare", &bare), ("under the hypervisor", &hv)] {
                match result {
                    Ok((_, lines)) => {
                        let uptime = parse_boot(lines).map(|b| b.uptime_s);
                        let _ = writeln!(
                            why,
                            "{name}: finished (uptime at init {} s)",
                            uptime.map_or("?".into(), |u| format!("{u:.2}"))
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(why, "{name}: failed: {e:#}\n");
                    }
                }
            }
            bail!("bench linux-boot: a run failed\n{}", why.trim_end());
        }
    };
    let bare_boot = parse_boot(&bare_lines).context("bare: no uptime line")?;
    let hv_boot = parse_boot(&hv_lines).context("under the hypervisor: no uptime line")?;
    let (reports, rt_seconds) = until_power_off(&hv_lines);
    let report = Report {
        ips: args.ips,
        bare_cmdline: bare_cmdline(&config.linux_cmdline, args.ips, config.linux_ram_bytes),
        config: crate::shown(&config.path),
        linux_cpus,
        machine_cpus: config.cpus(),
        memory_mib,
        bare: bare_boot,
        hv: hv_boot,
        exits: linux_exits(&hv_lines),
        reports,
        rt_seconds,
    };
    print!("{}", table(&report));
    println!();
    println!(
        "runs: {} (bare), {} (hypervisor)",
        crate::shown(&bare_dir),
        crate::shown(&hv_dir)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn init_lines_parse() {
        let boot = parse_boot(&lines(&[
            "Booting `Bulkhead'",
            "bulkhead-linux: init reached",
            "bulkhead-linux: kernel 6.1.0-56-amd64",
            "bulkhead-linux: cpus online 0-1 count 2",
            "bulkhead-linux: memtotal_kb 595712",
            "bulkhead-linux: uptime 1.42",
            "bulkhead-linux: powering off",
        ]))
        .unwrap();
        assert_eq!(
            boot,
            Boot {
                uptime_s: 1.42,
                kernel: Some("6.1.0-56-amd64".into()),
                cpus_online: Some(("0-1".into(), 2)),
                memtotal_kb: Some(595_712),
            }
        );
        let only = parse_boot(&lines(&["bulkhead-linux: uptime 3"])).unwrap();
        assert_eq!(only.uptime_s, 3.0);
        assert_eq!((only.kernel, only.memtotal_kb), (None, None));
        assert!(parse_boot(&lines(&["bulkhead-linux: uptime x"])).is_none());
        assert!(parse_boot(&lines(&["bulkhead-linux: init reached"])).is_none());
    }

    #[test]
    fn latest_counts_per_cpu() {
        let all = linux_exits(&lines(&[
            "exits: cpu 0 linux: total 8 new 8: CPUID=8",
            "exits: cpu 1 rt: total 4 new 4: CPUID=3 VMCALL=1",
            "exits: cpu 2 linux: total 3 new 3: CPUID=3",
            "exits: cpu 0 linux: total 50 new 42: CPUID=8 IO=42",
            "cpu 0 apic 0: linux partition stopped: it powered off",
            "  exits: cpu 0 linux: total 51 new 1: CPUID=8 IO=43",
        ]));
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].cpu, all[0].total), (0, 51));
        assert_eq!(all[0].reasons_text(), "IO=43 CPUID=8", "largest first");
        assert_eq!((all[1].cpu, all[1].total), (2, 3));
        assert!(
            RE.powered_off
                .is_match("cpu 0 apic 0: linux partition stopped: it powered off")
        );
        let stop = Regex::new(STOP_EXITS).unwrap();
        assert!(stop.is_match("  exits: cpu 0 linux: total 51 new 1: IO=51"));
        assert!(!stop.is_match("exits: cpu 0 linux: total 51 new 1: IO=51"));
    }

    #[test]
    fn counts_stop_at_the_power_off() {
        let summary = "latency cpu=0 samples=1001 min_ns=1 avg_ns=1 max_ns=1 p99_ns=1 p999_ns=1 misses=0 overflow=0";
        let run = lines(&[
            summary,
            "all 2 CPUs in VMX operation (22960 ms after power-on by the TSC)",
            "exits: cpu 0 linux: total 8 new 8: CPUID=8",
            "exits: cpu 1 rt: total 4 new 4: CPUID=3 VMCALL=1",
            summary,
            "latency cpu=1 samples=1001",
            summary,
            "exits: cpu 0 linux: total 9 new 1: CPUID=9",
            "cpu 0 apic 0: linux partition stopped: it powered off",
            "  exits: cpu 0 linux: total 10 new 1: CPUID=10",
            summary,
        ]);
        assert_eq!(until_power_off(&run), (2, 2));
        // Without a power-off, to the end.
        assert_eq!(until_power_off(&run[..5]), (1, 1));
    }

    #[test]
    fn table_shows_both_and_the_ratio() {
        let boot = |uptime_s, cpus: &str, kb| Boot {
            uptime_s,
            kernel: Some("6.1.0-56-amd64".into()),
            cpus_online: Some((cpus.into(), 1)),
            memtotal_kb: Some(kb),
        };
        let report = Report {
            ips: 50_000_000,
            bare_cmdline: bare_cmdline(
                "console=ttyS1,115200 quiet cryptomgr.notests",
                50_000_000,
                (640 << 20) + 0x9f000,
            ),
            config: "configs/bochs-2cpu.toml".into(),
            linux_cpus: 1,
            machine_cpus: 2,
            memory_mib: 1024,
            bare: boot(1.0, "0", 1_000_000),
            hv: boot(1.5, "0", 600_000),
            exits: vec![ExitReport {
                cpu: 0,
                partition: PartitionKind::Linux,
                total: 3000,
                new: 10,
                reasons: vec![("IO".into(), 2400), ("CPUID".into(), 600)],
                at_stop: true,
            }],
            reports: 1,
            rt_seconds: 3,
        };
        let text = table(&report);
        assert!(text.contains("ips 50000000"), "{text}");
        assert!(
            text.contains("\"console=ttyS0,115200 quiet cryptomgr.notests mem=641M clearcpuid=fsrm tsc_early_khz=50000 bulkhead.init=poweroff\""),
            "{text}"
        );
        assert!(text.contains("check: 3 RT kernel summaries"), "{text}");
        assert!(
            text.contains("kernel 6.1.0-56-amd64, same initramfs"),
            "{text}"
        );
        assert!(
            text.contains("entry -> init (s)           1.00          1.50        1.50\n"),
            "{text}"
        );
        assert!(
            text.contains("MemTotal (KiB)           1000000        600000        0.60\n"),
            "{text}"
        );
        assert!(
            text.contains("CPUs online                0 (1)         0 (1)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "                                 exits    share     per s\n\
                 cpu 0                             3000               2000\n\
                 \x20 IO                              2400    80.0%      1600\n\
                 \x20 CPUID                            600    20.0%       400\n"
            ),
            "{text}"
        );
        let no_exits = table(&Report {
            exits: Vec::new(),
            hv: Boot {
                kernel: Some("6.1.0-57-amd64".into()),
                ..report.hv.clone()
            },
            ..report
        });
        assert!(no_exits.contains("no exit report seen"), "{no_exits}");
        assert!(no_exits.contains("kernels differ"), "{no_exits}");
    }
}
