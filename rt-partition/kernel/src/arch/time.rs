//! Time for the RT kernel: the TSC, calibrated once against the PIT on the bootstrap CPU
//! (bare mode) or taken from the boot information (under the hypervisor), and the kernel's
//! monotonic nanoseconds since boot, converted by `bulkhead_rt_core::clock::Tsc`.

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_rt_core::clock::Tsc;

use super::{port, rdtsc};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// The TSC value that is the kernel's time 0.
static EPOCH_TSC: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;

/// Measures the TSC frequency over 10 ms of PIT channel 2. Returns the frequency in Hz,
/// or `None` if the PIT never reported the end of the interval.
pub fn calibrate_tsc() -> Option<u64> {
    const TICKS: u64 = PIT_HZ / 100; // 10 ms
    // SAFETY: in bare mode the PIT and port 0x61 belong to the kernel; channel 2 drives only
    // the PC speaker, whose output stays disabled.
    unsafe {
        let gate = port::inb(0x61);
        port::outb(0x61, (gate & !0x02) | 0x01); // speaker off, gate on
        port::outb(0x43, 0xb0); // channel 2, lo/hi byte, mode 0, binary
        port::outb(0x42, (TICKS & 0xff) as u8);
        port::outb(0x42, (TICKS >> 8) as u8);
        let gate = port::inb(0x61);
        port::outb(0x61, gate & !0x01); // restart counting on the gate's rising edge
        port::outb(0x61, gate | 0x01);
        let start = rdtsc();
        for _ in 0..50_000_000u32 {
            if port::inb(0x61) & 0x20 != 0 {
                let end = rdtsc();
                return Some((end - start) * 100);
            }
        }
        None
    }
}

/// Sets the TSC frequency and makes now the kernel's time 0.
pub fn start_clock(tsc_hz: u64) {
    TSC_HZ.store(tsc_hz.max(1), Ordering::Relaxed);
    TSC.call_once(|| Tsc::new(tsc_hz.max(1)).unwrap_or(BEFORE_START));
    EPOCH_TSC.store(rdtsc(), Ordering::Release);
}

/// The converter used before `start_clock` (1 GHz); evaluated at compile time.
const BEFORE_START: Tsc = match Tsc::new(1_000_000_000) {
    Ok(t) => t,
    Err(_) => panic!("1 GHz is a valid TSC frequency"),
};
static TSC: spin::Once<Tsc> = spin::Once::new();

/// The TSC converter.
#[inline]
pub fn tsc() -> Tsc {
    TSC.get().copied().unwrap_or(BEFORE_START)
}

/// The TSC frequency in Hz.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Monotonic nanoseconds since the kernel's clock started.
#[inline]
pub fn now_ns() -> u64 {
    tsc().ticks_to_ns(rdtsc().saturating_sub(EPOCH_TSC.load(Ordering::Relaxed)))
}

/// The TSC value at which kernel time `ns` is reached (rounded up: never early).
pub fn deadline_tsc(ns: u64) -> u64 {
    EPOCH_TSC
        .load(Ordering::Relaxed)
        .saturating_add(tsc().ns_to_ticks(ns))
}

/// Spins for at least `us` microseconds.
pub fn delay_us(us: u64) {
    let hz = tsc_hz().max(1_000_000);
    let ticks = hz / 1_000_000 * us;
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}
