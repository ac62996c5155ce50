//! Time for the RT kernel: the TSC, calibrated once against the PIT on the bootstrap CPU
//! (bare mode) or taken from the boot information (under the hypervisor), and the kernel's
//! monotonic nanoseconds since boot, converted by `bulkhead_rt_core::clock::Tsc`. The
//! calibration and the frequency itself are `bulkhead_x86::time`'s.

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_rt_core::clock::{SharedTsc, Tsc};

use super::rdtsc;
use bulkhead_x86::time::set_tsc_hz;
pub use bulkhead_x86::time::{calibrate_tsc, tsc_hz};

/// The TSC value that is the kernel's time 0.
static EPOCH_TSC: AtomicU64 = AtomicU64::new(0);

/// Sets the TSC frequency and makes now the kernel's time 0.
pub fn start_clock(tsc_hz: u64) {
    set_tsc_hz(tsc_hz.max(1));
    TSC.set(Tsc::new(tsc_hz.max(1)).unwrap_or(BEFORE_START));
    EPOCH_TSC.store(rdtsc(), Ordering::Release);
}

/// The converter used before `start_clock` (1 GHz); evaluated at compile time.
const BEFORE_START: Tsc = match Tsc::new(1_000_000_000) {
    Ok(t) => t,
    Err(_) => panic!("1 GHz is a valid TSC frequency"),
};
/// Set by the boot CPU before any other CPU starts.
static TSC: SharedTsc = SharedTsc::new(BEFORE_START);

/// The TSC converter.
#[inline]
pub fn tsc() -> Tsc {
    TSC.get()
}

/// Monotonic nanoseconds since the kernel's clock started.
#[inline]
pub fn now_ns() -> u64 {
    ns_at(rdtsc())
}

/// The kernel time at TSC value `tsc` (0 for a value before the clock started).
pub fn ns_at(tsc: u64) -> u64 {
    self::tsc().ticks_to_ns(tsc.saturating_sub(EPOCH_TSC.load(Ordering::Relaxed)))
}

/// The TSC value at which kernel time `ns` is reached (rounded up: never early).
pub fn deadline_tsc(ns: u64) -> u64 {
    EPOCH_TSC
        .load(Ordering::Relaxed)
        .saturating_add(tsc().ns_to_ticks(ns))
}
