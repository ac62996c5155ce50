//! The local APIC: x2APIC (MSRs) where the CPU has it, xAPIC (MMIO at its default base)
//! otherwise; the timer in TSC-deadline mode where the CPU has it, one-shot mode counted
//! against the TSC otherwise; EOI, IPIs and the start-up IPIs.
//!
//! Under the hypervisor x2APIC is already on (the isolation model needs it: x2APIC
//! registers are MSRs the hypervisor can filter) and the TSC-deadline timer, EOI and IPIs
//! to the partition's own CPUs go straight to the hardware. The xAPIC and one-shot
//! fallbacks exist for emulators without them (QEMU before 8.1 in TCG mode has no x2APIC).
//! Every CPU uses the mode the bootstrap CPU chose.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::interrupts::{SPURIOUS_VECTOR, TIMER_VECTOR};
use super::{msr, rdtsc};
use bulkhead_x86::apic::{self, APIC_BASE_ENABLE, APIC_BASE_X2APIC, ICR_FIXED, ICR_LEVEL_ASSERT};

/// The architectural default xAPIC base (identity-mapped, uncached, by the boot tables).
const XAPIC_BASE: u64 = 0xfee0_0000;

const REG_ID: u32 = 0x20;
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_TSC_DEADLINE: u32 = 0b10 << 17;
const DIVIDE_BY_1: u32 = 0b1011;

const ICR_DELIVERY_PENDING: u32 = 1 << 12;

/// How the local APIC is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Registers are MSRs `0x800 + offset / 16`.
    X2Apic,
    /// Registers are MMIO at 0xfee00000.
    XApic,
}

/// How the timer is programmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    /// IA32_TSC_DEADLINE holds the absolute TSC value to fire at.
    TscDeadline,
    /// One-shot count-down, converted from TSC ticks with the calibrated APIC timer rate.
    OneShot,
}

const MODE_X2APIC: u8 = 1;
const MODE_XAPIC: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(0);
const TIMER_DEADLINE: u8 = 1;
const TIMER_ONESHOT: u8 = 2;
static TIMER: AtomicU8 = AtomicU8::new(0);
/// APIC timer ticks per second at divide-by-1 (one-shot mode only).
static APIC_TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// TSC ticks per second, for converting deadlines in one-shot mode.
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

fn mode() -> Mode {
    if MODE.load(Ordering::Relaxed) == MODE_XAPIC {
        Mode::XApic
    } else {
        Mode::X2Apic
    }
}

/// The timer mode the bootstrap CPU chose.
pub fn timer_mode() -> TimerMode {
    if TIMER.load(Ordering::Relaxed) == TIMER_ONESHOT {
        TimerMode::OneShot
    } else {
        TimerMode::TscDeadline
    }
}

fn read(reg: u32) -> u32 {
    match mode() {
        // SAFETY: x2APIC mode is on (`init_this_cpu`); the register exists.
        Mode::X2Apic => unsafe { msr::read(0x800 + (reg >> 4)) as u32 },
        // SAFETY: the xAPIC page is identity-mapped uncached; the register exists.
        Mode::XApic => unsafe { ((XAPIC_BASE + u64::from(reg)) as *const u32).read_volatile() },
    }
}

#[inline]
fn write(reg: u32, value: u32) {
    match mode() {
        // SAFETY: x2APIC mode is on; writes go to the register named.
        Mode::X2Apic => unsafe { msr::write(0x800 + (reg >> 4), u64::from(value)) },
        // SAFETY: the xAPIC page is identity-mapped uncached.
        Mode::XApic => unsafe { ((XAPIC_BASE + u64::from(reg)) as *mut u32).write_volatile(value) },
    }
}

fn cpuid_ecx1() -> u32 {
    core::arch::x86_64::__cpuid(1).ecx
}

/// Chooses the APIC and timer modes for every CPU; on the bootstrap CPU, before
/// `init_this_cpu`. `tsc_hz` is the calibrated TSC frequency.
pub fn choose_modes(tsc_hz: u64) -> (Mode, TimerMode) {
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
    let base = unsafe { msr::read(msr::IA32_APIC_BASE) };
    let x2 = base & APIC_BASE_X2APIC != 0 || cpuid_ecx1() & (1 << 21) != 0;
    MODE.store(if x2 { MODE_X2APIC } else { MODE_XAPIC }, Ordering::Relaxed);
    let deadline = cpuid_ecx1() & (1 << 24) != 0;
    TIMER.store(
        if deadline {
            TIMER_DEADLINE
        } else {
            TIMER_ONESHOT
        },
        Ordering::Relaxed,
    );
    (mode(), timer_mode())
}

/// Enables this CPU's local APIC in the chosen mode, sets the spurious vector, masks the
/// error LVT and programs the timer LVT. Returns this CPU's APIC ID.
pub fn init_this_cpu() -> u32 {
    // SAFETY: x2APIC mode was chosen only where the CPU has it (or the hypervisor already
    // turned it on, which `enable_x2apic` keeps); nothing uses the xAPIC page before this.
    // IA32_APIC_BASE exists on every x86-64 CPU; for xAPIC it is enabled at its default base.
    unsafe {
        match mode() {
            Mode::X2Apic => apic::enable_x2apic(),
            Mode::XApic => {
                let base = msr::read(msr::IA32_APIC_BASE);
                let new = (base & 0xfff & !APIC_BASE_X2APIC) | XAPIC_BASE | APIC_BASE_ENABLE;
                msr::write(msr::IA32_APIC_BASE, new);
            }
        }
    }
    write(REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(REG_TPR, 0);
    write(REG_LVT_ERROR, LVT_MASKED | u32::from(SPURIOUS_VECTOR));
    match timer_mode() {
        TimerMode::TscDeadline => {
            write(REG_LVT_TIMER, LVT_TSC_DEADLINE | u32::from(TIMER_VECTOR));
        }
        TimerMode::OneShot => {
            write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
            write(REG_TIMER_INITIAL, 0);
            write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
        }
    }
    id()
}

/// This CPU's APIC ID (after `init_this_cpu`).
pub fn id() -> u32 {
    match mode() {
        Mode::X2Apic => read(REG_ID),
        Mode::XApic => read(REG_ID) >> 24,
    }
}

/// Measures the APIC timer rate against the TSC (one-shot mode only); bootstrap CPU, after
/// `init_this_cpu`. Returns ticks per second.
pub fn calibrate_oneshot() -> u64 {
    let tsc_hz = TSC_HZ.load(Ordering::Relaxed).max(1_000_000);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    write(REG_TIMER_INITIAL, u32::MAX);
    let start = rdtsc();
    while rdtsc() - start < tsc_hz / 100 {
        core::hint::spin_loop();
    }
    let elapsed = rdtsc() - start;
    let counted = u64::from(u32::MAX - read(REG_TIMER_CURRENT));
    write(REG_TIMER_INITIAL, 0);
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    let hz = (u128::from(counted) * u128::from(tsc_hz) / u128::from(elapsed.max(1))) as u64;
    APIC_TIMER_HZ.store(hz.max(1), Ordering::Relaxed);
    hz
}

/// Programs this CPU's timer to fire at TSC value `deadline` (at once if it has passed),
/// or disarms it.
pub fn arm_timer(deadline: Option<u64>) {
    match timer_mode() {
        TimerMode::TscDeadline => {
            // SAFETY: TSC-deadline mode is on (CPUID checked); 0 disarms.
            unsafe { msr::write(msr::IA32_TSC_DEADLINE, deadline.map_or(0, |d| d.max(1))) };
        }
        TimerMode::OneShot => {
            let count = match deadline {
                None => 0,
                Some(d) => {
                    let delta = d.saturating_sub(rdtsc());
                    let hz = APIC_TIMER_HZ.load(Ordering::Relaxed);
                    let tsc_hz = TSC_HZ.load(Ordering::Relaxed).max(1);
                    // Round up so it never fires early; at least one tick.
                    let ticks = (u128::from(delta) * u128::from(hz)).div_ceil(u128::from(tsc_hz));
                    ticks.clamp(1, u128::from(u32::MAX)) as u32
                }
            };
            write(REG_TIMER_INITIAL, count);
        }
    }
}

/// Signals the end of the interrupt being handled.
#[inline]
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Sends the IPI `low` (the ICR's low word) to the CPU with APIC ID `dest`.
pub fn send_icr(dest: u32, low: u32) {
    // Make earlier stores visible before the IPI (SDM 10.12.3 for x2APIC MSR writes).
    // SAFETY: fences have no effect besides ordering.
    unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
    match mode() {
        Mode::X2Apic => {
            // SAFETY: x2APIC mode is on; the ICR write sends the IPI the caller asked for, to
            // one of the kernel's own CPUs.
            unsafe { apic::x2apic_send_icr(dest, low) };
        }
        Mode::XApic => {
            write(REG_ICR_HIGH, dest << 24);
            write(REG_ICR_LOW, low);
            for _ in 0..1_000_000 {
                if read(REG_ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
                    break;
                }
                core::hint::spin_loop();
            }
        }
    }
}

/// Sends a fixed interrupt `vector` to the CPU with APIC ID `dest`.
pub fn send_ipi(dest: u32, vector: u8) {
    send_icr(dest, ICR_FIXED | ICR_LEVEL_ASSERT | u32::from(vector));
}
