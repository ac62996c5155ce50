//! The kernel's IDT and exception reporting.
//!
//! Vectors 0..31 are CPU exceptions: an exception in the RT kernel (which runs its tasks in
//! ring 0 too) is a bug; it is reported with vector, error code, RIP and CPU, and that CPU
//! halts. The other CPUs keep running. Vectors [`TIMER_VECTOR`], [`RESCHED_VECTOR`],
//! [`DOORBELL_VECTOR`] and the device lines' (`vectors::DEVICE_FIRST` on) go through the
//! interrupt stubs of `switch.S` to `sched::irq_handler`; [`SPURIOUS_VECTOR`]
//! is ignored. Every gate uses an IST stack (see `cpu.rs`). The exception gates, stubs and
//! frame are `bulkhead_x86::idt`'s; the interrupt gates and the report are this module's.

use bulkhead_abi::vectors;
use bulkhead_x86::idt::{self, ExceptionFrame, Idt};
use spin::Once;

use super::cpu::IST_INTERRUPTS;

/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = vectors::TIMER;
/// The rescheduling IPI's vector.
pub const RESCHED_VECTOR: u8 = vectors::RESCHEDULE;
/// Doorbells from the Linux partition.
pub const DOORBELL_VECTOR: u8 = vectors::DOORBELL;
/// The local APIC's spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = vectors::SPURIOUS;

// The stubs of switch.S, generated there from the same constants.
unsafe extern "C" {
    fn irq_stub_timer();
    fn irq_stub_reschedule();
    fn irq_stub_doorbell();
    fn irq_spurious();
    /// The device lines' stubs, line by line (switch.S).
    static irq_device_stubs: [u64; vectors::DEVICE_LINES];
}

static IDT: Once<Idt<256>> = Once::new();

fn build_idt() -> Idt<256> {
    let mut idt = Idt::new();
    let irqs: [(u8, unsafe extern "C" fn()); 4] = [
        (TIMER_VECTOR, irq_stub_timer),
        (RESCHED_VECTOR, irq_stub_reschedule),
        (DOORBELL_VECTOR, irq_stub_doorbell),
        (SPURIOUS_VECTOR, irq_spurious),
    ];
    for (vector, stub) in irqs {
        // SAFETY: the stubs of switch.S are interrupt entries (they save the interrupted
        // context and end in `iretq`); every CPU's tables have the interrupt stack (cpu.rs).
        unsafe { idt.set_gate(vector, stub as *const () as u64, IST_INTERRUPTS) };
    }
    for line in 0..vectors::DEVICE_LINES {
        let Some(vector) = vectors::device_vector(line) else {
            continue;
        };
        // SAFETY: as above; the table holds the addresses of switch.S's device-line stubs.
        unsafe { idt.set_gate(vector, irq_device_stubs[line], IST_INTERRUPTS) };
    }
    idt
}

/// Loads the shared IDT on this CPU (building it on first use).
pub fn load_idt() {
    idt::set_exception_hook(report);
    IDT.call_once(build_idt).load();
}

/// Reports an exception on the console; the CPU halts afterwards.
fn report(f: &ExceptionFrame) {
    let (vector, name, cr2) = (f.vector, f.name(), idt::cr2());
    let cpu = crate::percpu::current_index();
    crate::console::fatal_block(|w| {
        writeln!(
            w,
            "EXCEPTION: cpu {cpu}: vector {vector} ({name}) error {:#x} at RIP={:#018x} RSP={:#018x} RFLAGS={:#x} CR2={cr2:#x}",
            f.error_code, f.rip, f.rsp, f.rflags
        )?;
        writeln!(w, "{}", f.gprs())?;
        writeln!(w, "cpu {cpu} halted")
    });
}
