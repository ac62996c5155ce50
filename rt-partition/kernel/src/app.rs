//! RT applications: what an application crate declares, and how the kernel starts it.
//!
//! An application is a `no_std` crate that depends on `bulkhead-rt` and exports one
//! [`App`] as a `const`: its tasks ([`TaskDecl`]: name, CPU, priority, policy, stack, entry),
//! an `init` that creates its objects (semaphores, queues, event flags, mutexes: `api`) and
//! reads its options from the kernel command line, and an optional `report` that prints what
//! its tasks published (`crate::report`), run by its CPU's report task at the lowest
//! priority. The image crate names its applications once, with [`applications!`]:
//!
//! ```ignore
//! bulkhead_rt::applications!(bulkhead_rt_app_control::APP, my_app::APP);
//! ```
//!
//! and the build fails, with a message, when they ask for more than the image has: more
//! tasks on one CPU than [`TASK_ROOM_PER_CPU`] (counted as if every task landed on one CPU,
//! since the CPU count is known only at boot), or a stack larger than [`STACK_BYTES`].
//! Everything is static: tasks and objects are created once at boot, nothing is allocated.
//!
//! The kernel's own tasks are not applications: the report task on every CPU and the
//! self-tests (`tasks/`). The latency measurement and the status report are applications of
//! the default image like any other (`rt-partition/apps/latency`, `rt-partition/apps/status`).

use bulkhead_rt_core::{Error, Policy};

/// Where a declared task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cpu {
    /// The partition's first CPU.
    First,
    /// Its last CPU (the only one with a single RT CPU).
    Last,
    /// This CPU index; an index beyond the partition's CPUs fails the boot with a message.
    Index(usize),
    /// One task on every CPU, each given its CPU index as its argument.
    Each,
}

/// One task of an application.
#[derive(Debug, Clone, Copy)]
pub struct TaskDecl {
    /// Its name in reports (up to 15 bytes are shown).
    pub name: &'static str,
    /// Where it runs.
    pub cpu: Cpu,
    /// Its priority, 1 (least urgent) to 255; the kernel's report tasks have 5, the default
    /// image's latency tasks 90 and its status task 10.
    pub priority: u8,
    /// FIFO or round-robin within its priority.
    pub policy: Policy,
    /// The stack it needs, at most [`STACK_BYTES`].
    pub stack_bytes: usize,
    /// Its code; returning ends the task.
    pub entry: extern "C" fn(usize),
    /// Its argument (with [`Cpu::Each`], its CPU index instead).
    pub arg: usize,
}

/// What the kernel tells an application's `init`.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The kernel command line (its words are the applications' options too).
    pub cmdline: &'a str,
    /// The partition's CPUs.
    pub cpus: usize,
}

impl<'a> Context<'a> {
    /// The value of the command-line word `key=value`, if there is one.
    pub fn option(&self, key: &str) -> Option<&'a str> {
        self.cmdline
            .split_ascii_whitespace()
            .filter_map(|word| word.split_once('='))
            .find(|&(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The number of the command-line word `key=N`, if there is one: a decimal in `range`,
    /// or else [`Error::InvalidArgument`] after a line naming the application `app`, the word
    /// and the range (`hpet: hpet_period_us=5: expected 100 to 1000000`).
    pub fn number(
        &self,
        app: &str,
        key: &str,
        range: core::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, Error> {
        let Some(value) = self.option(key) else {
            return Ok(None);
        };
        match value.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => {
                crate::println!(
                    "{app}: {key}={value}: expected {} to {}",
                    range.start(),
                    range.end()
                );
                Err(Error::InvalidArgument)
            }
        }
    }
}

/// An application.
#[derive(Debug, Clone, Copy)]
pub struct App {
    /// Its name, in boot messages.
    pub name: &'static str,
    /// Its tasks, created after `init`.
    pub tasks: &'static [TaskDecl],
    /// Runs once on the boot CPU before any task: creates the application's objects, reads
    /// its options. An error stops the boot with a line naming the application.
    pub init: Option<fn(&Context<'static>) -> Result<(), Error>>,
    /// Prints what the application's tasks published; run by the report task of a CPU when
    /// one of them asked (`report::request(APP.name)`).
    pub report: Option<fn()>,
}

/// Each task's stack.
pub const STACK_BYTES: usize = crate::sched::TASK_STACK_SIZE;
/// Tasks an image's applications may declare: what a CPU's task table holds beyond the
/// kernel's own tasks on its busiest CPU (idle, report, six self-tests).
pub const TASK_ROOM_PER_CPU: usize = crate::sched::TASKS_PER_CORE - 8;

/// Whether `apps` fit the image (see the module docs); [`applications!`] checks it at
/// compile time.
pub const fn fits(apps: &[&App]) -> bool {
    let mut tasks = 0;
    let mut a = 0;
    while a < apps.len() {
        let mut t = 0;
        while t < apps[a].tasks.len() {
            if apps[a].tasks[t].stack_bytes > STACK_BYTES {
                return false;
            }
            tasks += 1;
            t += 1;
        }
        a += 1;
    }
    tasks <= TASK_ROOM_PER_CPU
}

/// Names the image's applications (once, in the image crate) and checks at compile time
/// that they fit it.
#[macro_export]
macro_rules! applications {
    ($($app:expr),* $(,)?) => {
        const _: () = assert!(
            $crate::app::fits(&[$(&$app),*]),
            "the RT applications ask for more than the image has: more tasks than \
             bulkhead_rt::app::TASK_ROOM_PER_CPU, or a stack over bulkhead_rt::app::STACK_BYTES"
        );

        /// The image's applications, for the kernel (see `bulkhead_rt::app`).
        #[unsafe(no_mangle)]
        pub fn bulkhead_rt_applications() -> &'static [&'static $crate::app::App] {
            static APPS: &[&$crate::app::App] = &[$(&$app),*];
            APPS
        }
    };
}

unsafe extern "Rust" {
    /// Defined by the image crate through [`applications!`] (a missing definition fails the
    /// link, never the boot).
    fn bulkhead_rt_applications() -> &'static [&'static App];
}

/// The image's applications.
pub(crate) fn all() -> &'static [&'static App] {
    // SAFETY: `applications!` defines the function with exactly this signature; it only
    // returns a static slice.
    unsafe { bulkhead_rt_applications() }
}

/// Runs every application's `init` and creates its tasks on `cpus` CPUs (boot CPU, init).
pub(crate) fn start_all(cmdline: &'static str, cpus: usize) -> Result<(), AppError> {
    let context = Context { cmdline, cpus };
    for app in all() {
        if let Some(init) = app.init {
            init(&context).map_err(|error| AppError { app: app.name, task: None, error })?;
        }
        for task in app.tasks {
            let fail = |error| AppError {
                app: app.name,
                task: Some(task.name),
                error,
            };
            let on = |cpu: usize, arg: usize| {
                crate::sched::spawn(crate::sched::TaskSpec {
                    name: task.name,
                    core: cpu,
                    priority: task.priority,
                    policy: task.policy,
                    entry: task.entry,
                    arg,
                })
                .map(drop)
            };
            match task.cpu {
                Cpu::First => on(0, task.arg),
                Cpu::Last => on(cpus - 1, task.arg),
                Cpu::Index(i) if i < cpus => on(i, task.arg),
                Cpu::Index(_) => Err(Error::NoSuchCore),
                Cpu::Each => (0..cpus).try_for_each(|cpu| on(cpu, cpu)),
            }
            .map_err(fail)?;
        }
    }
    Ok(())
}

/// Why an application could not start.
#[derive(Debug, Clone, Copy)]
pub struct AppError {
    app: &'static str,
    task: Option<&'static str>,
    error: Error,
}

impl core::fmt::Display for AppError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.task {
            Some(task) => write!(f, "application {}: task {task}: {}", self.app, self.error),
            None => write!(f, "application {}: init: {}", self.app, self.error),
        }
    }
}
