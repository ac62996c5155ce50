//! The x86-64 machine layer shared by the two freestanding Bulkhead images: the hypervisor
//! image and the RT kernel image.
//!
//! It owns what both images do to the hardware in the same way: port and MSR access; the
//! per-CPU GDT and TSS with their interrupt stacks; the IDT with the exception stubs and the
//! exception path (reporting through a hook each image installs, since each prints with its
//! own console); the AP start-up trampoline and INIT-SIPI-SIPI; switching x2APIC on and its
//! IPI commands; the time-stamp counter, its calibration against the PIT and delays; the
//! 16550 serial port; the ACPI handler for identity-mapped memory; and, behind the `runtime` feature, the `mem*`
//! functions and unwinding personality the prebuilt `core` expects. Policy (which CPUs to
//! start, what to print, which devices an image owns) and what differs on purpose (the boot
//! entry, interrupt entry and task switch, the APIC timer) stay in the images.
//!
//! This crate holds the `unsafe` hardware access, each block with a `// SAFETY:` comment
//! saying why it is sound; what it exports is either safe to call or says in `# Safety` what
//! its caller must guarantee. It must never print, allocate or decide policy.
//!
//! It is an ordinary `#![no_std]` library: it builds and its host tests run on the host too.
#![no_std]

pub mod acpi;
pub mod apic;
pub mod cpu;
pub mod idt;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod smp;
pub mod time;
pub mod uart;

/// Legacy I/O port access.
pub mod port {
    /// Reads a byte from an I/O port.
    ///
    /// # Safety
    /// The port must belong to a device the calling image owns; reads may have side effects.
    pub unsafe fn inb(port: u16) -> u8 {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::inb(port) }
    }

    /// Writes a byte to an I/O port.
    ///
    /// # Safety
    /// The port must belong to a device the calling image owns.
    pub unsafe fn outb(port: u16, value: u8) {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::outb(port, value) }
    }

    /// Writes a word to an I/O port.
    ///
    /// # Safety
    /// The port must belong to a device the calling image owns.
    pub unsafe fn outw(port: u16, value: u16) {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::outw(port, value) }
    }

    /// Reads a word from an I/O port.
    ///
    /// # Safety
    /// As [`inb`].
    pub unsafe fn inw(port: u16) -> u16 {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::inw(port) }
    }

    /// Reads a dword from an I/O port.
    ///
    /// # Safety
    /// As [`inb`].
    pub unsafe fn inl(port: u16) -> u32 {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::inl(port) }
    }

    /// Writes a dword to an I/O port.
    ///
    /// # Safety
    /// As [`outb`].
    pub unsafe fn outl(port: u16, value: u32) {
        // SAFETY: forwarded to the caller.
        unsafe { x86::io::outl(port, value) }
    }
}

/// Model-specific registers used by the images.
pub mod msr {
    pub const IA32_TSC: u32 = 0x10;
    pub const IA32_APIC_BASE: u32 = 0x1b;
    pub const IA32_TSC_ADJUST: u32 = 0x3b;
    pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
    pub const IA32_PAT: u32 = 0x277;
    pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
    pub const X2APIC_ICR: u32 = 0x830;
    pub const IA32_EFER: u32 = 0xc000_0080;
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
    /// The MSR must exist and the value must be valid and not break the calling image's own
    /// invariants (paging, segmentation, APIC mode).
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
        // SAFETY: cli/hlt only stop this CPU; callers reach here on their terminal path.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; neither image sets CR4.TSD.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(test)]
mod tests {
    use super::GprDump;

    #[test]
    fn register_dump_is_two_indented_lines() {
        let dump = GprDump(core::array::from_fn(|i| i as u64));
        let mut text = [0u8; 256];
        let mut w = Buf(&mut text, 0);
        core::fmt::write(&mut w, format_args!("{dump}")).unwrap();
        let s = core::str::from_utf8(&w.0[..w.1]).unwrap();
        assert_eq!(
            s,
            "  RAX=0x0 RBX=0x1 RCX=0x2 RDX=0x3 RSI=0x4 RDI=0x5 RBP=0x6\n  R8=0x7 R9=0x8 R10=0x9 R11=0xa R12=0xb R13=0xc R14=0xd R15=0xe"
        );
    }

    struct Buf<'a>(&'a mut [u8], usize);
    impl core::fmt::Write for Buf<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            self.0
                .get_mut(self.1..end)
                .ok_or(core::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
}
