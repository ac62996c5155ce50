//! `cargo xtask bench wake-path`: the instructions the RT kernel executes from its timer
//! interrupt to the woken latency task, counted one by one and attributed to the kernel's
//! functions: the path issue budgets in instructions, measured exactly.
//!
//! The bare kernel boots in QEMU's TCG with one instruction per translation block
//! (`-singlestep`) and time following the instruction count (`-icount`), so QEMU's execution
//! log (`-d exec`) has a line per executed instruction with its address. Once the kernel has
//! reported twice, the log is turned on through QEMU's monitor for a short while and off
//! again. Each timer interrupt (the `-d int` line `Servicing hardware INT=` with the timer's vector) opens a path;
//! a path that reaches the latency task's function before the next interrupt ends there. The
//! addresses are attributed to functions by the kernel's symbol table (`nm`). No emulator's
//! clock enters the count: the same image gives the same numbers on every machine, and the
//! hypervisor, which takes no part in the RT CPU's steady state (no VM exit), adds nothing.
//!
//! Written here because no tool at hand counts a bare-metal guest's instructions per function
//! (Debian's QEMU ships no TCG plugins; Bochs' instrumentation is a build option Debian leaves
//! off).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bulkhead_e2e::{IsoSpec, RunDir, report};
use clap::Args;

/// What `bench wake-path` takes.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct WakePathArgs {
    /// The RT kernel's options (its latency task wakes every millisecond; the demo control
    /// loop at 10 kHz shares its timer interrupt once a millisecond, as in `bench latency`).
    #[arg(
        long,
        value_name = "STR",
        default_value = "latency_period_us=1000 latency_report_s=1 control_hz=10000 trace=on"
    )]
    pub rt_cmdline: String,
    /// How long the execution log stays on, in wall-clock seconds (about 20 paths a second).
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    pub seconds: u64,
    /// Wall-clock limit for the boot to the kernel's second report, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
}

/// The function whose first instruction ends a path: the latency application's task.
const TASK_FUNCTION: &str = "bulkhead_rt_app_latency::task";
/// QEMU's `-d int` line for a hardware interrupt, with the timer's vector.
fn timer_interrupt_line() -> String {
    format!("Servicing hardware INT={:#04x}", bulkhead_abi::vectors::TIMER)
}

/// The kernel's functions by address, from `nm`.
struct Symbols {
    /// (start address, name), sorted by address.
    functions: Vec<(u64, String)>,
}

impl Symbols {
    fn read(elf: &Path) -> Result<Self> {
        let out = Command::new("nm")
            .args(["-n", "-C"])
            .arg(elf)
            .output()
            .context("cannot run nm (binutils) on the RT kernel")?;
        ensure!(out.status.success(), "nm failed on {}", elf.display());
        Ok(Self::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// `nm -n -C`'s lines: `ADDRESS TYPE NAME`; text symbols only.
    fn parse(listing: &str) -> Self {
        let mut functions: Vec<(u64, String)> = listing
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let address = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then(|| (address, name.to_string()))
            })
            .collect();
        functions.sort_by_key(|(address, _)| *address);
        Self { functions }
    }

    /// The function `pc` lies in (the last symbol at or below it).
    fn function(&self, pc: u64) -> &str {
        match self.functions.partition_point(|(address, _)| *address <= pc) {
            0 => "?",
            i => &self.functions[i - 1].1,
        }
    }
}

/// The address of a `-d exec` line (`Trace N: HOST [CS_BASE/PC/FLAGS/CFLAGS] ...`).
fn executed_pc(line: &str) -> Option<u64> {
    let fields = line.strip_prefix("Trace ")?.split_once('[')?.1;
    u64::from_str_radix(fields.split('/').nth(1)?, 16).ok()
}

/// One wake-up path: the functions it ran through, in order, with their instruction counts
/// (a function entered twice appears twice).
type Steps = Vec<(String, u64)>;

/// The complete paths in QEMU's log: from a timer interrupt to the task's first instruction.
fn paths(log: impl BufRead, symbols: &Symbols) -> Result<Vec<Steps>> {
    let interrupt = timer_interrupt_line();
    let mut done = Vec::new();
    let mut open: Option<Steps> = None;
    for line in log.lines() {
        let line = line.context("reading QEMU's log")?;
        if line.starts_with("Servicing hardware INT=") {
            open = (line == interrupt).then(Vec::new);
            continue;
        }
        let (Some(path), Some(pc)) = (open.as_mut(), executed_pc(&line)) else {
            continue;
        };
        let function = symbols.function(pc);
        if function.starts_with(TASK_FUNCTION) {
            done.extend(open.take());
            continue;
        }
        match path.last_mut() {
            Some((last, count)) if last == function => *count += 1,
            _ => path.push((function.to_string(), 1)),
        }
    }
    Ok(done)
}

fn total(steps: &Steps) -> u64 {
    steps.iter().map(|(_, n)| n).sum()
}

/// Runs the benchmark and prints the count and its breakdown.
pub fn run(args: &WakePathArgs, rt_kernel: &Path) -> Result<ExitCode> {
    let dir = RunDir::create("bench_wake_path")?;
    let iso = bulkhead_e2e::build_iso(
        &IsoSpec::rt_bare(dir.path().join("rt.iso"), rt_kernel).cmdline(args.rt_cmdline.as_str()),
    )?;
    let log = dir.path().join("exec.log");
    trace(args, dir.path(), &iso, &log)?;
    let symbols = Symbols::read(rt_kernel)?;
    let file = File::open(&log).with_context(|| format!("cannot open {}", log.display()))?;
    let mut found = paths(BufReader::new(file), &symbols)?;
    // The log starts and stops anywhere: only whole paths count.
    ensure!(
        !found.is_empty(),
        "no timer interrupt reached {TASK_FUNCTION} in {} (is the latency task running?)",
        log.display()
    );
    found.sort_by_key(total);
    let median = &found[found.len() / 2];
    println!(
        "RT wake-up path, bare kernel in QEMU (TCG, one instruction per block, time by instruction count); kernel options: {}",
        args.rt_cmdline
    );
    println!(
        "instructions from the timer interrupt to the latency task, {} paths: min {} median {} max {}",
        found.len(),
        total(&found[0]),
        total(median),
        total(&found[found.len() - 1])
    );
    println!("the median path, function by function:");
    for (function, count) in median {
        println!("{count:>6}  {function}");
    }
    println!("the median path, per function:");
    let mut per_function: BTreeMap<&str, u64> = BTreeMap::new();
    for (function, count) in median {
        *per_function.entry(function).or_default() += count;
    }
    let mut ranked: Vec<_> = per_function.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (function, count) in ranked {
        println!("{count:>6}  {function}");
    }
    println!("log: {}", log.display());
    Ok(ExitCode::SUCCESS)
}

/// Boots `iso` in QEMU and logs its execution for `args.seconds` once the kernel reports.
fn trace(args: &WakePathArgs, dir: &Path, iso: &Path, log: &Path) -> Result<()> {
    let serial = dir.join("serial.log");
    let monitor = dir.join("monitor.sock");
    let _ = std::fs::remove_file(&monitor);
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc", "-cpu", "max", "-smp", "1", "-m", "256"])
        .args(["-display", "none", "-no-reboot"])
        // One instruction per block, 2^4 ns of virtual time per instruction.
        .args(["-singlestep", "-icount", "shift=4"])
        .arg("-cdrom")
        .arg(iso)
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-monitor")
        .arg(format!("unix:{},server,nowait", monitor.display()))
        .arg("-D")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start qemu-system-x86_64")?;
    let result = (|| {
        wait_for_reports(&serial, &mut qemu, Duration::from_secs(args.timeout))?;
        monitor_command(&monitor, "log exec,int")?;
        std::thread::sleep(Duration::from_secs(args.seconds));
        monitor_command(&monitor, "log none")?;
        monitor_command(&monitor, "quit")
    })();
    // The log grows by tens of MB a second while on: QEMU never outlives this function.
    let deadline = Instant::now() + Duration::from_secs(10);
    while qemu.try_wait()?.is_none() {
        if result.is_err() || Instant::now() > deadline {
            let _ = qemu.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = qemu.wait();
    result
}

/// Gives QEMU's monitor one command on a connection of its own (the monitor acts on a line
/// once the connection's sending side closes), and waits for its answer.
fn monitor_command(socket: &Path, command: &str) -> Result<()> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach QEMU's monitor at {}", socket.display()))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut answer = Vec::new();
    // The monitor closes the connection after the command (or QEMU ends, for `quit`); a
    // timeout only means it kept the connection open.
    let _ = stream.read_to_end(&mut answer);
    Ok(())
}

/// Waits until the kernel has printed two latency summaries (it runs steadily by then).
fn wait_for_reports(serial: &Path, qemu: &mut std::process::Child, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(serial).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if report::latency_summaries(&lines).len() >= 2 {
            return Ok(());
        }
        if let Some(status) = qemu.try_wait()? {
            bail!("QEMU ended ({status}) before the kernel reported; see {}", serial.display());
        }
        if start.elapsed() > limit {
            bail!(
                "no two latency summaries in {} s; see {}",
                limit.as_secs(),
                serial.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NM: &str = "\
0000000000100000 T irq_stub_timer
0000000000100040 t irq_common
0000000000100100 T bulkhead_rt::sched::irq_handler
0000000000100800 T bulkhead_rt_app_latency::task
0000000000200000 D DATA
";

    fn trace(pc: u64) -> String {
        format!("Trace 0: 0x7fa9a8da5700 [0000000000000000/{pc:016x}/0040c290/ff020201] ")
    }

    #[test]
    fn symbols_name_the_function_an_address_lies_in() {
        let symbols = Symbols::parse(NM);
        assert_eq!(symbols.function(0x100000), "irq_stub_timer");
        assert_eq!(symbols.function(0x10003f), "irq_stub_timer");
        assert_eq!(symbols.function(0x100105), "bulkhead_rt::sched::irq_handler");
        assert_eq!(symbols.function(0xff), "?");
        // Data symbols are not functions.
        assert_eq!(symbols.function(0x200010), "bulkhead_rt_app_latency::task");
    }

    #[test]
    fn a_path_runs_from_the_timer_interrupt_to_the_task() {
        let symbols = Symbols::parse(NM);
        let int = timer_interrupt_line();
        let log = [
            // Before any interrupt, and a path cut off by another vector: not counted.
            trace(0x100800),
            int.clone(),
            "     0: v=e0 e=0000 i=0 cpl=0".to_string(),
            trace(0x100000),
            trace(0x100001),
            trace(0x100040),
            trace(0x100100),
            trace(0x100101),
            trace(0x100040),
            trace(0x100800),
            trace(0x100801),
            "Servicing hardware INT=0xe1".to_string(),
            trace(0x100100),
            trace(0x100800),
            int.clone(),
            trace(0x100000),
        ]
        .join("\n");
        let found = paths(log.as_bytes(), &symbols).unwrap();
        assert_eq!(
            found,
            [vec![
                ("irq_stub_timer".to_string(), 2),
                ("irq_common".to_string(), 1),
                ("bulkhead_rt::sched::irq_handler".to_string(), 2),
                ("irq_common".to_string(), 1),
            ]]
        );
        assert_eq!(total(&found[0]), 6);
    }

    #[test]
    fn exec_lines_give_their_guest_address() {
        assert_eq!(executed_pc(&trace(0x11bf90)), Some(0x11bf90));
        assert_eq!(executed_pc("Trace 0: junk"), None);
        assert_eq!(executed_pc("RAX=0000"), None);
    }
}
