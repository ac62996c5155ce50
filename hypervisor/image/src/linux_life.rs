//! The Linux partition's life after its first start: how each of its CPUs starts again
//! once its guest ended, when the config restarts Linux (`on_exit = "restart"`).
//!
//! Linux's boot CPU waits for the partition's other CPUs to leave their guests, decides by
//! the restart limit (`hv_core::linux::restart`: back-off after quick ends, then give up), puts
//! Linux's devices back, and reloads Linux from the retained module copies; the other CPUs
//! wait for the new Linux's start-up IPIs, as at the first start ([`wait_for_linux_start`]).

use core::sync::atomic::{AtomicU32, Ordering};

use bulkhead_config::{Config, OnExit};
use hv_core::linux::restart::{Decision, RestartPolicy, RestartState};

use crate::arch::{self, time};
use crate::partition::GuestStart;
use crate::{boot, linux_cpus, linux_devices, linux_loader, println};

/// How long Linux's boot CPU waits for the partition's other CPUs to leave their guests
/// before a restart.
const LINUX_STOP_WAIT_MS: u64 = 1000;

/// The Linux partition's restarts so far (only Linux's boot CPU decides them).
static LINUX_RESTARTS: spin::Mutex<RestartState> = spin::Mutex::new(RestartState::new());

/// Starts of each CPU by Linux that are logged (Linux may take a CPU offline and back again
/// and again).
const LOGGED_STARTS: u32 = 8;

/// Starts of each CPU by Linux so far, by CPU index.
static STARTS: [AtomicU32; bulkhead_config::MAX_CPUS] =
    [const { AtomicU32::new(0) }; bulkhead_config::MAX_CPUS];

/// A secondary CPU of Linux: waits until Linux sends it INIT and start-up, then says so
/// (the first [`LOGGED_STARTS`] times).
pub fn wait_for_linux_start(index: usize, apic_id: u32, own: &[u32]) -> GuestStart {
    let vector = linux_cpus::wait_for_startup(own, apic_id);
    let entry = hv_core::devices::ap_start::RealModeEntry::for_vector(vector);
    let n = STARTS
        .get(index)
        .map_or(0, |s| s.fetch_add(1, Ordering::Relaxed).saturating_add(1));
    if n <= LOGGED_STARTS {
        let last = if n == LOGGED_STARTS {
            " (later starts of this CPU are not logged)"
        } else {
            ""
        };
        println!(
            "cpu {index} apic {apic_id}: started by Linux, real mode at {:#x}{last}",
            entry.cs_base
        );
    }
    GuestStart::LinuxSecondary(entry)
}

/// After this CPU's guest ended (`first`: how it started the first time; `ran_ms`: how long
/// this run lasted): how it starts again if it belongs to a Linux partition the config
/// restarts, or `None` if it stays stopped.
pub fn next_linux_start(
    cfg: &Config,
    index: usize,
    apic_id: u32,
    own: &[u32],
    first: GuestStart,
    ran_ms: u64,
) -> Option<GuestStart> {
    if cfg.linux().on_exit() != OnExit::Restart {
        return None;
    }
    match first {
        GuestStart::Linux(_) => restart_linux(cfg, index, apic_id, own, ran_ms),
        GuestStart::LinuxSecondary(_) => Some(wait_for_linux_start(index, apic_id, own)),
        GuestStart::Stub { .. } | GuestStart::Rt(_) => None,
    }
}

/// On Linux's boot CPU: waits for the others, decides, reloads Linux.
fn restart_linux(
    cfg: &Config,
    index: usize,
    apic_id: u32,
    own: &[u32],
    ran_ms: u64,
) -> Option<GuestStart> {
    let deadline = arch::rdtsc() + LINUX_STOP_WAIT_MS * (time::tsc_hz() / 1000).max(1);
    if let Err(apic) = linux_cpus::wait_others_left(own, apic_id, deadline) {
        println!(
            "cpu {index} apic {apic_id}: linux partition not restarted: the CPU with APIC ID {apic} did not leave its guest within {LINUX_STOP_WAIT_MS} ms"
        );
        return None;
    }
    let decision = LINUX_RESTARTS
        .lock()
        .on_end(&RestartPolicy::DEFAULT, ran_ms);
    let n = match decision {
        Decision::Restart { number, delay_ms } => {
            if delay_ms > 0 {
                println!(
                    "cpu {index} apic {apic_id}: linux partition ended {ran_ms} ms after its start; restart {number} in {delay_ms} ms"
                );
                time::delay_us(delay_ms.saturating_mul(1000));
            }
            number
        }
        Decision::GiveUp {
            quick_ends,
            within_ms,
        } => {
            println!(
                "cpu {index} apic {apic_id}: linux partition not restarted: it ended {quick_ends} times in a row within {within_ms} ms of its start"
            );
            return None;
        }
    };
    linux_devices::reset();
    let boot = boot::machine()?.boot;
    match linux_loader::load(cfg, boot) {
        Ok(linux) => {
            println!(
                "cpu {index} apic {apic_id}: linux partition restarts (restart {n}, from the retained modules)"
            );
            Some(GuestStart::Linux(linux.start))
        }
        Err(e) => {
            println!("cpu {index} apic {apic_id}: linux partition not restarted: {e}");
            None
        }
    }
}
