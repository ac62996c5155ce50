//! The time-stamp counter's frequency, measured once against the PIT on the bootstrap CPU
//! (or set from what the loader reports), and busy-wait delays in microseconds.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::{port, rdtsc};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;

/// Measures the TSC frequency over 10 ms of PIT channel 2 and, on success, records it (see
/// [`tsc_hz`]). Returns the frequency in Hz, or `None` if the PIT never reported the end of
/// the interval.
///
/// # Safety
/// The PIT and port 0x61 must belong to the caller (nobody else programs them meanwhile).
pub unsafe fn calibrate_tsc() -> Option<u64> {
    const TICKS: u64 = PIT_HZ / 100; // 10 ms
    // SAFETY: the caller owns the PIT and port 0x61; channel 2 drives only the PC speaker,
    // whose output stays disabled.
    let hz = unsafe {
        let gate = port::inb(0x61);
        port::outb(0x61, (gate & !0x02) | 0x01); // speaker off, gate on
        port::outb(0x43, 0xb0); // channel 2, lo/hi byte, mode 0, binary
        port::outb(0x42, (TICKS & 0xff) as u8);
        port::outb(0x42, (TICKS >> 8) as u8);
        let gate = port::inb(0x61);
        port::outb(0x61, gate & !0x01); // restart counting on the gate's rising edge
        port::outb(0x61, gate | 0x01);
        let start = rdtsc();
        let mut done = false;
        for _ in 0..50_000_000u32 {
            if port::inb(0x61) & 0x20 != 0 {
                done = true;
                break;
            }
        }
        let end = rdtsc();
        done.then(|| (end - start) * 100)
    };
    if let Some(hz) = hz {
        set_tsc_hz(hz);
    }
    hz
}

/// Records the TSC frequency (when the loader reports it instead of a measurement).
pub fn set_tsc_hz(hz: u64) {
    TSC_HZ.store(hz, Ordering::Relaxed);
}

/// The TSC frequency in Hz (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
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
