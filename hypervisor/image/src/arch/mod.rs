//! x86-64 machine layer: boot assembly, descriptor tables, exceptions, the local APIC,
//! time, and port and MSR access (the parts shared with the RT kernel come from
//! `bulkhead-x86`). Everything here touches hardware; the policy that drives it lives
//! elsewhere.
// The machine layer: boot assembly, descriptor tables, port and MSR access.
#![allow(unsafe_code)]

pub mod interrupts;

/// Per-CPU descriptor tables (`bulkhead_x86::cpu`). The hypervisor takes no interrupt
/// vectors, only exceptions, so its CPUs need only the exceptions' interrupt stacks.
pub mod cpu {
    pub use bulkhead_x86::cpu::{KERNEL_CS, KERNEL_DS, KERNEL_TR};

    /// One CPU's GDT, TSS and interrupt stacks.
    pub type CpuTables = bulkhead_x86::cpu::CpuTables<{ bulkhead_x86::cpu::IST_EXCEPTIONS }>;
}

pub use bulkhead_x86::{GprDump, apic, halt_forever, msr, port, rdtsc, time};

core::arch::global_asm!(
    // The BOOT_* macros boot.S uses, from bulkhead-x86 (see build.rs).
    include_str!(env!("BULKHEAD_X86_BOOT32_ASM")),
    include_str!("boot.S"),
    options(att_syntax)
);
