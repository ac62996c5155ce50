//! The hypervisor's IDT and exception reporting.
//!
//! The hypervisor runs with interrupts disabled; the only vectors it can take are
//! CPU exceptions (and NMIs). An exception in the hypervisor is a bug: it is reported
//! with vector, error code, RIP and CPU, and that CPU halts. Other CPUs keep running.

use core::mem::size_of;

use spin::Once;

use super::cpu::{DescriptorPointer, KERNEL_CS};

core::arch::global_asm!(include_str!("exceptions.S"), options(att_syntax));

unsafe extern "C" {
    static exception_stubs: [u64; 32];
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

const EXCEPTION_NAMES: [&str; 32] = [
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

#[repr(C, align(16))]
struct Idt([u128; 32]);

static IDT: Once<Idt> = Once::new();

/// IST slot (1-based) used for a vector; see `cpu::IST_COUNT`.
fn ist_for(vector: usize) -> u128 {
    match vector {
        8 => 1,
        2 => 2,
        18 => 3,
        _ => 4,
    }
}

fn build_idt() -> Idt {
    let mut idt = Idt([0; 32]);
    for (vector, entry) in idt.0.iter_mut().enumerate() {
        // SAFETY: `exception_stubs` is an immutable table defined in exceptions.S.
        let handler = u128::from(unsafe { exception_stubs[vector] });
        *entry = (handler & 0xffff)
            | (u128::from(KERNEL_CS) << 16)
            | (ist_for(vector) << 32)
            | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
            | (((handler >> 16) & 0xffff) << 48)
            | (((handler >> 32) & 0xffff_ffff) << 64);
    }
    idt
}

/// Loads the shared IDT on this CPU (building it on first use).
pub fn load_idt() {
    let idt = IDT.call_once(build_idt);
    let idtr = DescriptorPointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: idt.0.as_ptr() as u64,
    };
    // SAFETY: the IDT is a static that lives for ever and holds valid gates.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack)) };
}

/// Base address of the IDT (the VMCS host-state area needs it).
pub fn idt_base() -> u64 {
    IDT.get().map_or(0, |idt| idt.0.as_ptr() as u64)
}

#[unsafe(no_mangle)]
extern "C" fn exception_handler(frame: &ExceptionFrame) -> ! {
    crate::console::force_unlock();
    let vector = frame.vector as usize;
    let name = EXCEPTION_NAMES.get(vector).copied().unwrap_or("unknown");
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    let (cpu, apic) = (
        crate::percpu::current_index(),
        crate::percpu::current_apic_id(),
    );
    let f = frame;
    crate::console::write_block(|w| {
        writeln!(
            w,
            "EXCEPTION: cpu {cpu} apic {apic}: vector {vector} ({name}) error {:#x} at RIP={:#018x} RSP={:#018x} RFLAGS={:#x} CR2={cr2:#x}",
            f.error_code, f.rip, f.rsp, f.rflags
        )?;
        writeln!(
            w,
            "{}",
            super::GprDump([
                f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.r8, f.r9, f.r10, f.r11, f.r12,
                f.r13, f.r14, f.r15,
            ])
        )?;
        writeln!(w, "cpu {cpu} halted")
    });
    super::halt_forever()
}
