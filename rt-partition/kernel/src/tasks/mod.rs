//! The kernel's own tasks, created at init from static tables (no task is created later and
//! nothing is allocated); the applications' tasks come after them (`crate::app`):
//!
//! - per CPU a **latency** task (`latency.rs`): cyclictest's measurement, at the highest
//!   priority;
//! - per CPU a **report** task (`report.rs`) at the lowest priority: it prints what the
//!   latency task and the applications of its CPU published, so they never format text;
//! - with `selftest=kernel`, the **self-test** task set (`selftest.rs`);
//! - with `status=CHANNEL`, the **status** task (`status.rs`) on CPU 0, reporting latency
//!   and task statistics to Linux every report period.
//!
//! Priorities (higher is more urgent): latency 90, self-tests 20 to 60, status 10, report 5
//! (the default image's applications: control loop 80, echo 70).

mod latency;
pub mod report;
mod selftest;
mod status;

use bulkhead_rt_core::{Error, Policy};

use crate::boot::Options;
use crate::sched::{TaskSpec, spawn};

/// Priority of the latency tasks.
pub const LATENCY_PRIORITY: u8 = 90;
/// Priority of the status task.
pub const STATUS_PRIORITY: u8 = 10;
/// Priority of the report tasks.
pub const REPORT_PRIORITY: u8 = 5;

/// Creates every task and object for `cpus` CPUs.
pub fn create_all(options: &Options<'static>, cpus: usize) -> Result<(), Error> {
    latency::configure(options);
    for cpu in 0..cpus {
        spawn(TaskSpec {
            name: "latency",
            core: cpu,
            priority: LATENCY_PRIORITY,
            policy: Policy::Fifo,
            entry: latency::task,
            arg: cpu,
        })?;
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
    if let Some(channel) = options.status {
        status::configure(channel, options.latency_report_s, cpus);
        spawn(TaskSpec {
            name: "status",
            core: 0,
            priority: STATUS_PRIORITY,
            policy: Policy::Fifo,
            entry: status::task,
            arg: 0,
        })?;
    }
    if options.selftest {
        selftest::create(cpus)?;
    }
    log::info!(
        "tasks: latency on {cpus} CPUs every {} us (summary every {} s), status {}, self-tests {}",
        options.latency_period_us,
        options.latency_report_s,
        if options.status.is_some() {
            "on"
        } else {
            "off"
        },
        if options.selftest { "on" } else { "off" }
    );
    Ok(())
}
