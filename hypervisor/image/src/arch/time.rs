//! Time for the hypervisor: the TSC, calibrated once against the PIT on the bootstrap
//! CPU, and busy-wait delays for the AP start-up sequence.

use core::sync::atomic::{AtomicU64, Ordering};

use super::{port, rdtsc};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;

/// Measures the TSC frequency over 10 ms of PIT channel 2. Returns the frequency in Hz,
/// or `None` if the PIT never reported the end of the interval.
pub fn calibrate_tsc() -> Option<u64> {
    const TICKS: u64 = PIT_HZ / 100; // 10 ms
    // SAFETY: the PIT and port 0x61 belong to the hypervisor during boot; channel 2 drives
    // only the PC speaker, whose output we keep disabled.
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
        TSC_HZ.store(hz, Ordering::Relaxed);
    }
    hz
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
