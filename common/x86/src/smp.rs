//! Starting an application processor: INIT-SIPI-SIPI (Intel SDM Vol. 3A, 10.4.4 and the
//! MultiProcessor Specification's timing) through the real-mode trampoline (`trampoline.S`),
//! copied to [`AP_TRAMPOLINE_BASE`] with its parameter block filled in.
//!
//! Which CPU, on which stack, into which entry with which argument, how the IPIs are sent
//! and how the AP says it runs are the image's; one AP is started at a time.

use crate::apic::{ICR_INIT, ICR_LEVEL_ASSERT, ICR_STARTUP};
use crate::{rdtsc, time};

core::arch::global_asm!(
    include_str!("boot32.S"),
    include_str!("trampoline.S"),
    options(att_syntax)
);

/// Physical address the trampoline runs at (SIPI vector 0x08).
pub const AP_TRAMPOLINE_BASE: u64 = 0x8000;
const SIPI_VECTOR: u8 = (AP_TRAMPOLINE_BASE >> 12) as u8;

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_trampoline_params: u8;
}

/// The parameter block at the end of the trampoline (trampoline.S).
#[repr(C)]
struct TrampolineParams {
    cr3: u64,
    stack_top: u64,
    entry: u64,
    arg: u64,
}

/// The AP did not signal within a second of TSC time.
#[derive(Debug, Clone, Copy)]
pub struct NoResponse;

/// How an AP starts: its stack, its Rust entry and the entry's one argument.
#[derive(Debug, Clone, Copy)]
pub struct ApLaunch {
    /// Top of the AP's stack (16-byte aligned).
    pub stack_top: u64,
    /// Address of an `extern "C" fn(arg) -> !`, run in long mode on this CPU's page tables
    /// with interrupts off.
    pub entry: u64,
    /// The entry's argument.
    pub arg: u64,
}

/// Starts the CPU with APIC ID `apic_id`: copies the trampoline, sends INIT and up to two
/// start-up IPIs with `send_icr(dest, icr_low)`, and waits until `alive()` (which the AP's
/// entry makes true as soon as it runs) or a second of TSC time has passed.
///
/// # Safety
/// - `launch.entry` must be the address of an `extern "C"` function that takes one
///   argument of `launch.arg`'s meaning and never returns, sound to run on a fresh CPU;
///   `launch.stack_top` must be the top of a stack only this AP uses, identity-mapped;
/// - the memory at [`AP_TRAMPOLINE_BASE`] (a page, below 1 MiB) must be free for the
///   trampoline, and no other `start_ap` may run at the same time;
/// - `send_icr` must send the given ICR command to `dest`, a CPU that is the caller's to
///   start.
pub unsafe fn start_ap(
    apic_id: u32,
    launch: ApLaunch,
    send_icr: fn(u32, u32),
    alive: impl Fn() -> bool,
) -> Result<(), NoResponse> {
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    // SAFETY: the trampoline symbols delimit the code and its parameter block in the
    // image; the memory at AP_TRAMPOLINE_BASE is free and nobody else reads the copy while
    // it is rewritten (caller).
    unsafe {
        let src = &raw const ap_trampoline_start;
        let len = (&raw const ap_trampoline_end as usize) - src as usize;
        core::ptr::copy_nonoverlapping(src, AP_TRAMPOLINE_BASE as *mut u8, len);
        let params_off = (&raw const ap_trampoline_params as usize) - src as usize;
        let params = (AP_TRAMPOLINE_BASE as usize + params_off) as *mut TrampolineParams;
        params.write_volatile(TrampolineParams {
            cr3,
            stack_top: launch.stack_top,
            entry: launch.entry,
            arg: launch.arg,
        });
    }

    send_icr(apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
    time::delay_us(10_000);
    for _ in 0..2 {
        send_icr(
            apic_id,
            ICR_STARTUP | ICR_LEVEL_ASSERT | u32::from(SIPI_VECTOR),
        );
        time::delay_us(200);
        if alive() {
            return Ok(());
        }
    }
    // Give a slow (emulated) CPU up to a second of TSC time.
    let deadline = rdtsc() + time::tsc_hz().max(1_000_000);
    while rdtsc() < deadline {
        if alive() {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(NoResponse)
}
