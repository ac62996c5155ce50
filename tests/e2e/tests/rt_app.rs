//! End-to-end tests of RT applications written outside the kernel: the example application
//! (`examples/rt-app`), linked into an RT image by the build tool, boots and runs under the
//! hypervisor; an application that asks for more than the image has fails the build with the
//! kernel's message.

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulkhead_abi::console::{HALTED, STEADY_STATE};
use bulkhead_e2e::{Expect, Pattern, Scenario, report};

/// Wall-clock limit for the Bochs run.
const BOCHS_LIMIT: Duration = Duration::from_secs(900);

/// The example application's report line.
const EXAMPLE: &str = r"^example: samples=(\d+) batches=(\d+) late=(\d+)$";

/// bochs-2cpu (Linux stub), the RT image with the default applications and the example one,
/// `example_period_us=500`: the kernel starts all three applications; the example's periodic
/// task runs at 2 kHz without a late period, and its event-driven task consumes every batch
/// of ten samples that the periodic one posts (its reports, printed by the report task, add
/// up); the control loop misses nothing beside them.
#[test]
#[ignore = "boots an emulator; run through cargo xtask test"]
fn bochs_rt_example_application() -> Result<()> {
    let image = bulkhead_e2e::rt_example_elf_from_env()?;
    let mut run = Scenario::new("bochs_rt_example_application")
        .config("bochs-2cpu.toml")
        .rt_file(image)
        .rt_cmdline("example_period_us=500 control_hz=1000")
        .start()?;
    let expect = Expect::new()
        .line(STEADY_STATE)
        .line(Pattern::contains("application control: 1 tasks"))
        .line(Pattern::contains("application echo: 1 tasks"))
        .line(Pattern::contains("application example: 2 tasks"))
        .times(4, Pattern::regex(EXAMPLE))
        .times(3, report::latency_pattern_for_cpu(0))
        .stop_on(HALTED);
    run.wait_for(&expect, BOCHS_LIMIT)?;
    let log = run.log();
    let re = regex::Regex::new(EXAMPLE)?;
    let mut last_samples = 0;
    for line in run.matching(Pattern::regex(EXAMPLE)) {
        let caps = re.captures(&line).context("captures")?;
        let [samples, batches, late] = [1, 2, 3].map(|i| caps[i].parse::<u64>().unwrap_or(0));
        ensure!(late == 0, "the example's periodic task was late:\n{log}");
        ensure!(
            batches * 10 <= samples && samples < batches * 10 + 10,
            "{batches} batches for {samples} samples:\n{log}"
        );
        ensure!(samples > last_samples, "no progress:\n{log}");
        last_samples = samples;
    }
    // About a second between reports at 2 kHz.
    ensure!(last_samples >= 4 * 1900, "only {last_samples} samples:\n{log}");
    for s in report::latency_summaries(run.lines()) {
        ensure!(s.misses == 0, "latency task missed: {s:?}\n{log}");
    }
    Ok(())
}

/// An application that declares more tasks than the image has room for: building the image
/// with it fails, and the error says why.
#[test]
#[ignore = "builds an RT image; run through cargo xtask test"]
fn an_application_that_asks_too_much_fails_the_build() -> Result<()> {
    let root = bulkhead_e2e::workspace_root();
    let app = bulkhead_e2e::target_dir().join("rt-app-too-big");
    fs::create_dir_all(app.join("src"))?;
    fs::write(
        app.join("Cargo.toml"),
        format!(
            "[package]\nname = \"rt-app-too-big\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nbulkhead-rt = {{ path = {:?} }}\n",
            root.join("rt-partition/kernel").display().to_string()
        ),
    )?;
    let task = "TaskDecl { name: \"t\", cpu: Cpu::First, priority: 1, policy: Policy::Fifo, \
                stack_bytes: 4096, entry: t, arg: 0 },";
    fs::write(
        app.join("src/lib.rs"),
        format!(
            "#![no_std]\nuse bulkhead_rt::app::{{App, Cpu, TaskDecl}};\n\
             use bulkhead_rt::core_types::Policy;\n\
             extern \"C\" fn t(_: usize) {{}}\n\
             pub const APP: App = App {{ name: \"too-big\", tasks: &[{}], init: None, report: None }};\n",
            task.repeat(64)
        ),
    )?;
    let built = bulkhead_e2e::build_rt_kernel_with_apps(true, &[app]);
    let error = match built {
        Ok(elf) => anyhow::bail!("an image with 64 more tasks was built: {}", elf.display()),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        error.contains("the RT applications ask for more than the image has"),
        "the build failed without the kernel's message:\n{error}"
    );
    Ok(())
}
