//! x86-64 machine layer of the RT kernel: boot assembly, descriptor tables, exceptions and
//! interrupt entry, the local APIC and its timer, time, the context switch, and thin
//! wrappers over port and MSR access. Everything here touches hardware; the scheduling
//! policy that drives it lives in `bulkhead-rt-core` and `sched.rs`.

pub mod apic;
pub mod cpu;
pub mod interrupts;
pub mod time;

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));
core::arch::global_asm!(include_str!("trampoline.S"), options(att_syntax));
core::arch::global_asm!(include_str!("switch.S"), options(att_syntax));

/// Legacy I/O port access.
pub mod port {
    /// Reads a byte from an I/O port.
    ///
    /// # Safety
    /// The port must belong to a device the kernel owns; reads may have side effects.
    pub unsafe fn inb(port: u16) -> u8 {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::inb(port) }
    }

    /// Writes a byte to an I/O port.
    ///
    /// # Safety
    /// The port must belong to a device the kernel owns.
    pub unsafe fn outb(port: u16, value: u8) {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::outb(port, value) }
    }
}

/// Model-specific registers used by the kernel.
pub mod msr {
    pub const IA32_APIC_BASE: u32 = 0x1b;
    pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
    pub const IA32_GS_BASE: u32 = 0xc000_0101;

    /// Reads an MSR.
    ///
    /// # Safety
    /// The MSR must exist on this CPU (otherwise #GP).
    pub unsafe fn read(msr: u32) -> u64 {
        // SAFETY: forwarded to the caller.
        unsafe { x86::msr::rdmsr(msr) }
    }

    /// Writes an MSR.
    ///
    /// # Safety
    /// The MSR must exist and the value must be valid and not break the kernel's own
    /// invariants (paging, segmentation, APIC mode).
    pub unsafe fn write(msr: u32, value: u64) {
        // SAFETY: forwarded to the caller.
        unsafe { x86::msr::wrmsr(msr, value) }
    }
}

/// Halts this CPU forever with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli/hlt only stop this CPU; callers reach here on their terminal path.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is clear.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Interrupts disabled on this CPU until dropped; then the interrupt flag is restored to
/// what it was. Nests.
#[derive(Debug)]
pub struct IrqGuard {
    was_enabled: bool,
}

impl IrqGuard {
    /// Disables interrupts on this CPU.
    #[inline]
    pub fn new() -> Self {
        let flags: u64;
        // SAFETY: reads RFLAGS and clears IF; only this CPU's interrupt delivery changes.
        unsafe {
            core::arch::asm!("pushfq", "pop {}", "cli", out(reg) flags, options(nomem));
        }
        Self {
            was_enabled: flags & (1 << 9) != 0,
        }
    }
}

impl Drop for IrqGuard {
    #[inline]
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: interrupts were enabled when the guard was made; restoring that is
            // what the caller asked for.
            unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
        }
    }
}

/// Enables interrupts and waits for one (atomically: STI's shadow covers HLT), then
/// returns with interrupts enabled.
pub fn enable_and_wait() {
    // SAFETY: waiting for an interrupt with interrupts enabled is the idle loop's job; the
    // handlers it may run are the kernel's own.
    unsafe { core::arch::asm!("sti; hlt", options(nomem, nostack)) };
}

/// Enables interrupts on this CPU.
pub fn enable_interrupts() {
    // SAFETY: called once a CPU's IDT, APIC and scheduler are ready for interrupts.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
}
