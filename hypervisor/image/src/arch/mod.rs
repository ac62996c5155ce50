//! x86-64 machine layer: boot assembly, descriptor tables, exceptions, the local APIC,
//! time, and port and MSR access (the parts shared with the RT kernel come from
//! `bulkhead-x86`). Everything here touches hardware; the policy that drives it lives
//! elsewhere.

pub mod apic;
pub mod cpu;
pub mod interrupts;

pub use bulkhead_x86::{GprDump, halt_forever, msr, port, rdtsc, time};

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));
core::arch::global_asm!(include_str!("trampoline.S"), options(att_syntax));
