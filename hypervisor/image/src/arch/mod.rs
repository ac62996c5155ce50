//! x86-64 machine layer: boot assembly, descriptor tables, exceptions, the local APIC,
//! time, and thin wrappers over port and MSR access. Everything here touches hardware;
//! the policy that drives it lives elsewhere.

pub mod apic;
pub mod cpu;
pub mod interrupts;
pub mod time;

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));
core::arch::global_asm!(include_str!("trampoline.S"), options(att_syntax));

/// Legacy I/O port access.
pub mod port {
    /// Reads a byte from an I/O port.
    ///
    /// # Safety
    /// The port must belong to a device the hypervisor owns; reads may have side effects.
    pub unsafe fn inb(port: u16) -> u8 {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::inb(port) }
    }

    /// Writes a byte to an I/O port.
    ///
    /// # Safety
    /// The port must belong to a device the hypervisor owns.
    pub unsafe fn outb(port: u16, value: u8) {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::outb(port, value) }
    }

    /// Writes a word to an I/O port.
    ///
    /// # Safety
    /// The port must belong to a device the hypervisor owns.
    pub unsafe fn outw(port: u16, value: u16) {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::outw(port, value) }
    }
}

/// Model-specific registers used by the hypervisor.
pub mod msr {
    pub const IA32_APIC_BASE: u32 = 0x1b;
    pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
    pub const IA32_PAT: u32 = 0x277;
    pub const IA32_EFER: u32 = 0xc000_0080;
    pub const IA32_GS_BASE: u32 = 0xc000_0101;
    pub const X2APIC_ICR: u32 = 0x830;

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
    /// The MSR must exist and the value must be valid and not break the hypervisor's
    /// own invariants (paging, segmentation, APIC mode).
    pub unsafe fn write(msr: u32, value: u64) {
        // SAFETY: forwarded to the caller.
        unsafe { x86::msr::wrmsr(msr, value) }
    }
}

/// The 15 general-purpose registers, in the order RAX RBX RCX RDX RSI RDI RBP R8..R15,
/// displayed as the two indented lines of a register dump (exceptions, stopped guests).
#[derive(Debug, Clone, Copy)]
pub struct GprDump(pub [u64; 15]);

impl core::fmt::Display for GprDump {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [&str; 15] = [
            "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R8", "R9", "R10", "R11", "R12",
            "R13", "R14", "R15",
        ];
        for (i, (name, value)) in NAMES.iter().zip(self.0).enumerate() {
            let sep = match i {
                0 => " ",
                7 => "\n ",
                _ => "",
            };
            write!(f, "{sep} {name}={value:#x}")?;
        }
        Ok(())
    }
}

/// Halts this CPU forever with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli/hlt only stop this CPU; nothing is left half-done by design
        // (callers reach here on their terminal path).
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is clear in the hypervisor.
    unsafe { core::arch::x86_64::_rdtsc() }
}
