//! Per-CPU descriptor tables (`bulkhead_x86::cpu`): a GDT, a TSS and interrupt stacks for
//! the exceptions plus one for interrupts (the prebuilt `core` uses the red zone, so nothing
//! may be pushed onto an interrupted stack). The tables of every CPU are statics, indexed by
//! the CPU's partition index. One IDT is shared by all CPUs; see `interrupts.rs`.

use bulkhead_x86::cpu::IST_EXCEPTIONS;

/// The interrupt stack slot (1-based) the interrupt gates use, after the exceptions' ones.
pub const IST_INTERRUPTS: u8 = IST_EXCEPTIONS as u8 + 1;

/// One CPU's GDT, TSS and interrupt stacks (the exceptions', then the interrupts').
type CpuTables = bulkhead_x86::cpu::CpuTables<{ IST_EXCEPTIONS + 1 }>;

/// The descriptor tables of every CPU the kernel can run on.
struct AllTables([core::cell::UnsafeCell<CpuTables>; crate::MAX_CPUS]);
// SAFETY: entry `i` is only touched by CPU `i`, once, in `load_for_cpu`.
unsafe impl Sync for AllTables {}
static TABLES: AllTables =
    AllTables([const { core::cell::UnsafeCell::new(CpuTables::zeroed()) }; crate::MAX_CPUS]);

/// Fills and loads CPU `index`'s GDT and TSS. Call once per CPU, on that CPU.
pub fn load_for_cpu(index: usize) {
    let Some(cell) = TABLES.0.get(index) else {
        return;
    };
    // SAFETY: each CPU calls this once for its own index (the boot paths guarantee distinct
    // indices), so nobody else holds a reference to this entry; it is a static.
    let tables = unsafe { &mut *cell.get() };
    tables.init();
    // SAFETY: `init` ran and the tables are static.
    unsafe { tables.load() };
}

/// Makes a hypercall (`bulkhead_abi::hypercall`) through the one guest-side stub; `None`
/// when the kernel runs bare (there VMCALL would raise #UD). Each call is one VM exit of this
/// CPU.
pub fn hypercall(call: bulkhead_abi::hypercall::Hypercall) -> Option<bulkhead_vmcall::Answer> {
    if !crate::under_hypervisor() {
        return None;
    }
    // SAFETY: the kernel was entered by the Bulkhead hypervisor (checked just above).
    Some(unsafe { bulkhead_vmcall::hypercall(call) })
}
