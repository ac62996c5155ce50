//! The kernel's IDT and exception reporting.
//!
//! Vectors 0..31 are CPU exceptions: an exception in the RT kernel (which runs its tasks in
//! ring 0 too) is a bug; it is reported with vector, error code, RIP and CPU, and that CPU
//! halts. The other CPUs keep running. Vectors [`TIMER_VECTOR`] and [`RESCHED_VECTOR`] go
//! through the interrupt stubs of `switch.S` to `sched::irq_handler`; [`SPURIOUS_VECTOR`]
//! is ignored. Every gate uses an IST stack (see `cpu.rs`).

use core::mem::size_of;

use spin::Once;

use super::cpu::{DescriptorPointer, KERNEL_CS};

core::arch::global_asm!(include_str!("exceptions.S"), options(att_syntax));

/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = 32;
/// The rescheduling IPI's vector.
pub const RESCHED_VECTOR: u8 = 33;
/// A vector reserved for doorbells from the Linux partition (not yet used).
pub const DOORBELL_VECTOR: u8 = 34;
/// The local APIC's spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;

unsafe extern "C" {
    static exception_stubs: [u64; 32];
    fn irq_stub_32();
    fn irq_stub_33();
    fn irq_stub_34();
    fn irq_spurious();
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
struct Idt([u128; 256]);

static IDT: Once<Idt> = Once::new();

/// IST slot (1-based) used for a vector; see `cpu::IST_COUNT`.
fn ist_for(vector: usize) -> u128 {
    match vector {
        8 => 1,
        2 => 2,
        18 => 3,
        0..32 => 4,
        _ => 5,
    }
}

fn gate(handler: u64, vector: usize) -> u128 {
    let handler = u128::from(handler);
    (handler & 0xffff)
        | (u128::from(KERNEL_CS) << 16)
        | (ist_for(vector) << 32)
        | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
        | (((handler >> 16) & 0xffff) << 48)
        | (((handler >> 32) & 0xffff_ffff) << 64)
}

fn build_idt() -> Idt {
    let mut idt = Idt([0; 256]);
    // SAFETY: `exception_stubs` is an immutable table defined in exceptions.S.
    let stubs = unsafe { &exception_stubs };
    for (vector, (entry, &handler)) in idt.0.iter_mut().zip(stubs).enumerate() {
        *entry = gate(handler, vector);
    }
    let irqs: [(u8, unsafe extern "C" fn()); 4] = [
        (TIMER_VECTOR, irq_stub_32),
        (RESCHED_VECTOR, irq_stub_33),
        (DOORBELL_VECTOR, irq_stub_34),
        (SPURIOUS_VECTOR, irq_spurious),
    ];
    for (vector, stub) in irqs {
        idt.0[usize::from(vector)] = gate(stub as *const () as u64, usize::from(vector));
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

#[unsafe(no_mangle)]
extern "C" fn exception_handler(frame: &ExceptionFrame) -> ! {
    let vector = frame.vector as usize;
    let name = EXCEPTION_NAMES.get(vector).copied().unwrap_or("unknown");
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    let cpu = crate::percpu::current_index();
    let f = frame;
    crate::console::fatal_block(|w| {
        writeln!(
            w,
            "EXCEPTION: cpu {cpu}: vector {vector} ({name}) error {:#x} at RIP={:#018x} RSP={:#018x} RFLAGS={:#x} CR2={cr2:#x}",
            f.error_code, f.rip, f.rsp, f.rflags
        )?;
        writeln!(
            w,
            "  RAX={:#x} RBX={:#x} RCX={:#x} RDX={:#x} RSI={:#x} RDI={:#x} RBP={:#x}",
            f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp
        )?;
        writeln!(
            w,
            "  R8={:#x} R9={:#x} R10={:#x} R11={:#x} R12={:#x} R13={:#x} R14={:#x} R15={:#x}",
            f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15
        )?;
        writeln!(w, "cpu {cpu} halted")
    });
    super::halt_forever()
}
