//! The hypervisor's IDT and exception reporting.
//!
//! The hypervisor runs with interrupts disabled; the only vectors it can take are
//! CPU exceptions (and NMIs). An exception in the hypervisor is a bug: it is reported
//! with vector, error code, RIP and CPU, and that CPU halts. Other CPUs keep running.
//! The gates, stubs and frame are `bulkhead_x86::idt`'s; the report is this module's.

use bulkhead_x86::idt::{self, EXCEPTION_VECTORS, ExceptionFrame, Idt};
use spin::Once;

static IDT: Once<Idt<EXCEPTION_VECTORS>> = Once::new();

/// Loads the shared IDT on this CPU (building it on first use).
pub fn load_idt() {
    idt::set_exception_hook(report);
    IDT.call_once(Idt::new).load();
}

/// Base address of the IDT (the VMCS host-state area needs it).
pub fn idt_base() -> u64 {
    IDT.get().map_or(0, Idt::base)
}

/// Reports an exception on the console; the CPU halts afterwards.
fn report(f: &ExceptionFrame) {
    crate::console::force_unlock();
    let (vector, name, cr2) = (f.vector, f.name(), idt::cr2());
    let (cpu, apic) = (
        crate::percpu::current_index(),
        crate::percpu::current_apic_id(),
    );
    crate::console::write_block(|w| {
        writeln!(
            w,
            "EXCEPTION: cpu {cpu} apic {apic}: vector {vector} ({name}) error {:#x} at RIP={:#018x} RSP={:#018x} RFLAGS={:#x} CR2={cr2:#x}",
            f.error_code, f.rip, f.rsp, f.rflags
        )?;
        writeln!(w, "{}", f.gprs())?;
        writeln!(w, "cpu {cpu} halted")
    });
}
