//! The kernel's own tasks, created at init from static tables (no task is created later and
//! nothing is allocated); the applications' tasks come after them (`crate::app`):
//!
//! - per CPU a **report** task (`report.rs`) at the lowest priority: it prints what the
//!   applications of its CPU published, so that their urgent tasks never format text, and
//!   publishes its CPU's task statistics when the status report asks;
//! - with `selftest=kernel`, the **self-test** task set (`selftest.rs`).
//!
//! The latency measurement and the status report are applications of the default image
//! (`rt-partition/apps/latency`, `rt-partition/apps/status`). Priorities (higher is more
//! urgent): self-tests 20 to 60, report 5 (the default image's applications: latency 90,
//! hpet 85, control loop 80, serial 75, echo 70, status 10).

pub mod report;
mod selftest;

use bulkhead_rt_core::{Error, Policy};

use crate::boot::Options;
use crate::sched::{TaskSpec, spawn};

/// Priority of the report tasks.
pub const REPORT_PRIORITY: u8 = 5;

/// Creates every task and object for `cpus` CPUs.
pub fn create_all(options: &Options<'static>, cpus: usize) -> Result<(), Error> {
    report::set_period_s(options.latency_report_s);
    for cpu in 0..cpus {
        report::create_flags(cpu)?;
        spawn(TaskSpec {
            name: "report",
            core: cpu,
            priority: REPORT_PRIORITY,
            policy: Policy::Fifo,
            entry: report::task,
            arg: cpu,
        })?;
    }
    if options.selftest {
        selftest::create(cpus)?;
    }
    log::info!(
        "tasks: a report task on each of {cpus} CPUs, self-tests {}",
        if options.selftest { "on" } else { "off" }
    );
    Ok(())
}
