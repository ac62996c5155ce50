//! The demo control loop, an application of the default RT image: how a user writes a
//! periodic real-time task.
//!
//! A simulated motor (inertia, viscous friction, a load torque that steps now and then) is
//! driven by a cascaded controller at `control_hz` (the kernel command line's word; 10 kHz by
//! default, 0 = off; at most 100 kHz), on the partition's last CPU: a proportional
//! position loop commands a velocity, a PI velocity loop with anti-windup commands a
//! saturated torque. The position reference is a triangle wave (±1 rad, 2 s period). Each
//! job is released at an absolute time (`wait_next_period`), so the loop never drifts.
//! Every 2 s of kernel time it publishes its tracking error and timing, which its CPU's
//! report task prints (this application's `report`):
//!
//! `control: jobs=.. misses=.. max_err_urad=.. mean_err_urad=.. max_job_ns=..`
//! (`bulkhead_abi::console::ControlSummary`)
//!
//! The pattern is: create a `Periodic` once, then `loop { read inputs, compute, write
//! outputs, api::wait_next_period(&mut periodic) }`. Nothing in the loop allocates, blocks
//! on I/O or prints more than a line now and then.

#![no_std]

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_abi::console::ControlSummary;
use bulkhead_rt::app::{App, Context, Cpu, STACK_BYTES, TaskDecl};
use bulkhead_rt::core_types::{Error, Periodic, Policy};
use bulkhead_rt::report::{self, Published};
use bulkhead_rt::{api, println};

/// The application.
pub const APP: App = App {
    name: "control",
    tasks: &[TaskDecl {
        name: "control",
        cpu: Cpu::Last,
        priority: 80,
        policy: Policy::Fifo,
        stack_bytes: STACK_BYTES,
        entry: task,
        arg: 0,
    }],
    init: Some(init),
    report: Some(print_latest),
};

/// The loop's rate; 0 = off.
static RATE_HZ: AtomicU64 = AtomicU64::new(10_000);

/// Reads `control_hz=` (init).
fn init(context: &Context<'static>) -> Result<(), Error> {
    if let Some(hz) = context.number(APP.name, "control_hz", 0..=100_000)? {
        RATE_HZ.store(hz, Ordering::Relaxed);
    }
    Ok(())
}

/// The last report: jobs, misses, max and mean error, longest job.
static PUBLISHED: Published<5> = Published::new();

/// Prints the last report (the report task of the loop's CPU).
fn print_latest() {
    if let Some([jobs, misses, max_err_urad, mean_err_urad, max_job_ns]) = PUBLISHED.latest() {
        let summary = ControlSummary {
            jobs,
            misses,
            max_err_urad,
            mean_err_urad,
            max_job_ns,
        };
        println!("{summary}");
    }
}

/// The simulated plant: a motor shaft.
struct Motor {
    position: f64,
    velocity: f64,
}

impl Motor {
    const INERTIA: f64 = 0.01; // kg m^2
    const FRICTION: f64 = 0.05; // N m s / rad

    /// Advances the plant by `dt` seconds under `torque` and `load` (explicit Euler).
    fn step(&mut self, torque: f64, load: f64, dt: f64) {
        let acceleration = (torque - load - Self::FRICTION * self.velocity) / Self::INERTIA;
        self.velocity += acceleration * dt;
        self.position += self.velocity * dt;
    }
}

/// Cascaded position-velocity controller.
struct Controller {
    integral: f64,
}

impl Controller {
    const KP_POSITION: f64 = 40.0; // (rad/s) / rad
    const KP_VELOCITY: f64 = 0.8; // N m / (rad/s)
    const KI_VELOCITY: f64 = 20.0; // N m / rad
    const MAX_TORQUE: f64 = 5.0; // N m

    fn torque(&mut self, reference: f64, reference_velocity: f64, motor: &Motor, dt: f64) -> f64 {
        let velocity_command =
            reference_velocity + Self::KP_POSITION * (reference - motor.position);
        let error = velocity_command - motor.velocity;
        let unsaturated =
            Self::KP_VELOCITY * error + self.integral + Self::KI_VELOCITY * error * dt;
        let torque = unsaturated.clamp(-Self::MAX_TORQUE, Self::MAX_TORQUE);
        // Anti-windup: integrate only while not saturated.
        if torque == unsaturated {
            self.integral += Self::KI_VELOCITY * error * dt;
        }
        torque
    }
}

/// The triangle-wave reference at time `t` seconds: position and velocity.
fn reference(t: f64) -> (f64, f64) {
    const PERIOD: f64 = 2.0;
    const AMPLITUDE: f64 = 1.0;
    let phase = (t / PERIOD) - ((t / PERIOD) as u64) as f64;
    let slope = 4.0 * AMPLITUDE / PERIOD;
    if phase < 0.5 {
        (-AMPLITUDE + slope * phase * PERIOD, slope)
    } else {
        (AMPLITUDE - slope * (phase - 0.5) * PERIOD, -slope)
    }
}

/// The control loop task.
extern "C" fn task(_: usize) {
    let hz = RATE_HZ.load(Ordering::Relaxed);
    if hz == 0 {
        return;
    }
    let period_ns = 1_000_000_000 / hz;
    let dt = 1.0 / hz as f64;
    let start = (api::now_ns() / period_ns + 10) * period_ns;
    let Ok(mut periodic) = Periodic::new(start, period_ns) else {
        return;
    };
    let mut motor = Motor {
        position: -1.0,
        velocity: 0.0,
    };
    let mut controller = Controller { integral: 0.0 };
    let (mut jobs, mut misses, mut max_job_ns) = (0u64, 0u64, 0u64);
    let (mut max_err, mut sum_err, mut window_jobs) = (0.0f64, 0.0f64, 0u64);
    let report_every = 2_000_000_000u64;
    let mut next_report = start + report_every;
    let mut k = 0u64;
    loop {
        match api::wait_next_period(&mut periodic) {
            Ok(missed) => misses += u64::from(missed),
            Err(_) => return,
        }
        let job_start = api::now_ns();
        // Simulated time advances one period per job, whatever the jitter.
        let t = k as f64 * dt;
        k += 1;
        let load = if (k / (hz * 3)) % 2 == 1 { 0.5 } else { 0.0 };
        let (reference, reference_velocity) = reference(t);
        let torque = controller.torque(reference, reference_velocity, &motor, dt);
        motor.step(torque, load, dt);
        let error = reference - motor.position;
        let error = if error < 0.0 { -error } else { error };
        // Skip the first second: the start-up transient is not tracking error.
        if t > 1.0 {
            max_err = if error > max_err { error } else { max_err };
            sum_err += error;
            window_jobs += 1;
        }
        jobs += 1;
        let now = api::now_ns();
        max_job_ns = max_job_ns.max(now.saturating_sub(job_start));
        if now >= next_report {
            next_report += report_every;
            let mean = if window_jobs > 0 {
                sum_err / window_jobs as f64
            } else {
                0.0
            };
            // Printed by this CPU's report task: formatting is not this task's job.
            PUBLISHED.publish(&[
                jobs,
                misses,
                (max_err * 1e6) as u64,
                (mean * 1e6) as u64,
                max_job_ns,
            ]);
            report::request(APP.name);
            max_err = 0.0;
            sum_err = 0.0;
            window_jobs = 0;
        }
    }
}
