//! x86-64 machine layer of the RT kernel: boot assembly, descriptor tables, exceptions and
//! interrupt entry, the local APIC and its timer, time, the context switch, and port and
//! MSR access (the parts shared with the hypervisor come from `bulkhead-x86`). Everything
//! here touches hardware; the scheduling policy that drives it lives in `bulkhead-rt-core`
//! and `sched.rs`.

pub mod apic;
pub mod cpu;
pub mod interrupts;
pub mod time;

core::arch::global_asm!(
    // The BOOT_* macros boot.S uses, from bulkhead-x86 (see build.rs).
    include_str!(env!("BULKHEAD_X86_BOOT32_ASM")),
    include_str!("boot.S"),
    max_cpus = const crate::MAX_CPUS,
    options(att_syntax)
);
// The interrupt stubs, one per vector the ABI gives the kernel.
core::arch::global_asm!(
    include_str!("switch.S"),
    timer = const vectors::TIMER,
    reschedule = const vectors::RESCHEDULE,
    doorbell = const vectors::DOORBELL,
    device_first = const vectors::DEVICE_FIRST,
    options(att_syntax)
);
// switch.S spells the device lines out one by one.
const _: () = assert!(vectors::DEVICE_LINES == 16);

use bulkhead_abi::vectors;

pub use bulkhead_x86::{halt_forever, msr, rdtsc};

/// Interrupts disabled on this CPU until dropped; then the interrupt flag is restored to
/// what it was. Nests. The outermost guard opens a measured section (`crate::trace`) at its
/// caller's location (callers that are kernel plumbing pass their own caller's on with
/// `#[track_caller]`).
#[derive(Debug)]
pub struct IrqGuard {
    was_enabled: bool,
}

impl IrqGuard {
    /// Disables interrupts on this CPU.
    #[inline]
    #[track_caller]
    pub fn new() -> Self {
        let flags: u64;
        // SAFETY: reads RFLAGS and clears IF; only this CPU's interrupt delivery changes.
        unsafe {
            core::arch::asm!("pushfq", "pop {}", "cli", out(reg) flags, options(nomem));
        }
        let was_enabled = flags & (1 << 9) != 0;
        if was_enabled {
            crate::trace::irqs_off(crate::trace::Site::Code(core::panic::Location::caller()));
        }
        Self { was_enabled }
    }
}

impl Drop for IrqGuard {
    #[inline]
    fn drop(&mut self) {
        if self.was_enabled {
            crate::trace::irqs_on();
            // SAFETY: interrupts were enabled when the guard was made; restoring that is
            // what the caller asked for.
            unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
        }
    }
}

/// Enables interrupts and waits for one (atomically: STI's shadow covers HLT), then
/// returns with interrupts enabled.
pub fn enable_and_wait() {
    crate::trace::irqs_on();
    // SAFETY: waiting for an interrupt with interrupts enabled is the idle loop's job; the
    // handlers it may run are the kernel's own.
    unsafe { core::arch::asm!("sti; hlt", options(nomem, nostack)) };
}

/// Enables interrupts on this CPU.
pub fn enable_interrupts() {
    crate::trace::irqs_on();
    // SAFETY: called once a CPU's IDT, APIC and scheduler are ready for interrupts.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
}
