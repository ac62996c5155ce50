//! The interrupt descriptor table, the exception entry stubs (`exceptions.S`) and the
//! exception path they lead to.
//!
//! An exception in either image is a bug: the stubs push an [`ExceptionFrame`] and call
//! `exception_handler`, which hands the frame to the report hook the image installed with
//! [`set_exception_hook`] (each image prints with its own console) and then halts the CPU.
//! Other CPUs keep running. Images add their own interrupt gates with [`Idt::set_gate`].

use core::mem::size_of;

use spin::Once;

use crate::GprDump;
use crate::cpu::{
    DescriptorPointer, IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI, IST_OTHER_EXCEPTION, KERNEL_CS,
};

core::arch::global_asm!(include_str!("exceptions.S"), options(att_syntax));

/// Number of CPU exception vectors (0..31).
pub const EXCEPTION_VECTORS: usize = 32;

unsafe extern "C" {
    static exception_stubs: [u64; EXCEPTION_VECTORS];
}

/// Register state pushed by `exceptions.S`, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const EXCEPTION_NAMES: [&str; EXCEPTION_VECTORS] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 floating point",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating point",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

impl ExceptionFrame {
    /// The exception's name, e.g. `#UD invalid opcode`.
    pub fn name(&self) -> &'static str {
        usize::try_from(self.vector)
            .ok()
            .and_then(|v| EXCEPTION_NAMES.get(v))
            .copied()
            .unwrap_or("unknown")
    }

    /// The general-purpose registers at the time of the exception.
    pub fn gprs(&self) -> GprDump {
        GprDump([
            self.rax, self.rbx, self.rcx, self.rdx, self.rsi, self.rdi, self.rbp, self.r8, self.r9,
            self.r10, self.r11, self.r12, self.r13, self.r14, self.r15,
        ])
    }
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn cr2() -> u64 {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    cr2
}

/// An IDT of `N` gates (`N` >= 32): the exceptions, then the image's interrupt vectors.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct Idt<const N: usize>([u128; N]);

impl<const N: usize> Default for Idt<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// IST slot (1-based) of an exception vector; see `cpu::IST_EXCEPTIONS`.
fn exception_ist(vector: usize) -> u8 {
    match vector {
        8 => IST_DOUBLE_FAULT,
        2 => IST_NMI,
        18 => IST_MACHINE_CHECK,
        _ => IST_OTHER_EXCEPTION,
    }
}

fn gate(handler: u64, ist: u8) -> u128 {
    let handler = u128::from(handler);
    (handler & 0xffff)
        | (u128::from(KERNEL_CS) << 16)
        | (u128::from(ist) << 32)
        | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
        | (((handler >> 16) & 0xffff) << 48)
        | (((handler >> 32) & 0xffff_ffff) << 64)
}

impl<const N: usize> Idt<N> {
    const HOLDS_EXCEPTIONS: () = assert!(N >= EXCEPTION_VECTORS && N <= 256);

    /// An IDT whose vectors 0..31 lead to the exception stubs, each on its IST stack; the
    /// other vectors are not present.
    pub fn new() -> Self {
        let () = Self::HOLDS_EXCEPTIONS;
        let mut idt = Self([0; N]);
        // SAFETY: `exception_stubs` is an immutable table defined in exceptions.S.
        let stubs = unsafe { &exception_stubs };
        for (vector, (entry, &handler)) in idt.0.iter_mut().zip(stubs).enumerate() {
            *entry = gate(handler, exception_ist(vector));
        }
        idt
    }

    /// Points `vector` at `handler`, run on interrupt stack `ist` (1-based).
    ///
    /// # Safety
    /// `handler` must be an interrupt entry point (it returns with `iretq` and preserves the
    /// interrupted state), `ist` must be a stack slot every CPU loading this IDT has, and
    /// `vector` must be below `N`.
    pub unsafe fn set_gate(&mut self, vector: u8, handler: u64, ist: u8) {
        if let Some(entry) = self.0.get_mut(usize::from(vector)) {
            *entry = gate(handler, ist);
        }
    }

    /// Loads this IDT on this CPU.
    pub fn load(&'static self) {
        let idtr = DescriptorPointer {
            limit: (size_of::<Self>() - 1) as u16,
            base: self.0.as_ptr() as u64,
        };
        // SAFETY: the IDT lives for ever and holds valid gates (the exception stubs, and
        // the interrupt entries `set_gate`'s callers vouched for).
        unsafe { core::arch::asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack)) };
    }

    /// Base address of the IDT.
    pub fn base(&self) -> u64 {
        self.0.as_ptr() as u64
    }
}

/// What an image does with an exception before its CPU halts: report it on its console.
pub type ExceptionHook = fn(&ExceptionFrame);

static HOOK: Once<ExceptionHook> = Once::new();

/// Installs the image's exception report (the first call wins; later calls do nothing).
pub fn set_exception_hook(hook: ExceptionHook) {
    HOOK.call_once(|| hook);
}

#[unsafe(no_mangle)]
extern "C" fn exception_handler(frame: &ExceptionFrame) -> ! {
    if let Some(hook) = HOOK.get() {
        hook(frame);
    }
    crate::halt_forever()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_gates_use_their_ist_slots() {
        let idt = Idt::<256>::new();
        let ist = |v: usize| (idt.0[v] >> 32) & 0x7;
        assert_eq!(ist(8), 1);
        assert_eq!(ist(2), 2);
        assert_eq!(ist(18), 3);
        assert_eq!(ist(14), 4);
        assert_eq!(idt.0[32], 0);
        assert_eq!((idt.0[13] >> 40) & 0xff, 0x8e);
    }

    #[test]
    fn frame_names_its_vector() {
        let mut frame = zero_frame();
        frame.vector = 6;
        assert_eq!(frame.name(), "#UD invalid opcode");
        frame.vector = 99;
        assert_eq!(frame.name(), "unknown");
    }

    fn zero_frame() -> ExceptionFrame {
        ExceptionFrame {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rbp: 0,
            rdi: 0,
            rsi: 0,
            rdx: 0,
            rcx: 0,
            rbx: 0,
            rax: 0,
            vector: 0,
            error_code: 0,
            rip: 0,
            cs: 0,
            rflags: 0,
            ss: 0,
            rsp: 0,
        }
    }
}
