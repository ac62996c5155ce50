//! Why a guest stopped, and the report of it: one line naming the cause, for a fault
//! the guest's registers and the exit's details, then the CPU's exit counts.

use core::fmt;

use hv_core::vmx::exit::ExitReason;

use super::exits::GuestEnd;
use super::vcpu::{GuestRegs, Vcpu};
use super::vmcs::{self, VmxError, guest, ro};
use crate::arch::GprDump;
use crate::console;

/// Why a guest was stopped.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// An exit the hypervisor does not handle.
    Unhandled(ExitReason),
    /// The guest asked to end (or ended with its partition).
    Ended(GuestEnd),
    /// VMLAUNCH or VMRESUME failed.
    EntryFailed(VmxError),
    /// A VMCS field could not be read or written.
    Vmcs(VmxError),
}

/// A stopped guest: why, and how many other CPUs of the partition were asked to end their
/// guests with it.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    pub stop: Stop,
    pub others: usize,
}

impl Stopped {
    /// Whether only this CPU's guest was reset (an INIT from its partition): the partition
    /// goes on, and this CPU waits for a start-up IPI.
    pub fn reset_by_init(&self) -> bool {
        matches!(self.stop, Stop::Ended(GuestEnd::Init))
    }
}

/// Reports why the guest of CPU `vcpu` stopped (registers `r`), then its exit counts
/// `counts`; reads the guest state from the current VMCS.
pub fn report(vcpu: &Vcpu, r: &GuestRegs, stopped: Stopped, counts: impl fmt::Display) {
    let (i, a) = (vcpu.index, vcpu.apic_id);
    let Stopped { stop, others } = stopped;
    let rd = |f| vmcs::read(f).unwrap_or(u64::MAX);
    if let Stop::Ended(GuestEnd::Init) = stop {
        // Not an end: the CPU waits for its start-up IPI, and says so when it comes.
        return;
    }
    if let Stop::Ended(end) = stop {
        console::write_block(|w| {
            match end {
                GuestEnd::PowerOff => writeln!(
                    w,
                    "cpu {i} apic {a}: {} partition stopped: it powered off",
                    vcpu.partition
                )?,
                GuestEnd::Reset(how) => writeln!(
                    w,
                    "cpu {i} apic {a}: {} partition stopped: it reset the machine ({how}); the reset is not passed on",
                    vcpu.partition
                )?,
                GuestEnd::Hung => writeln!(
                    w,
                    "cpu {i} apic {a}: {} partition stopped: it hung (every CPU halted with interrupts off for {} ms)",
                    vcpu.partition,
                    hv_core::linux::watchdog::HUNG_AFTER_MS
                )?,
                GuestEnd::WatchdogExpired { timeout_s } => writeln!(
                    w,
                    "cpu {i} apic {a}: {} partition stopped: it hung (its watchdog was not fed within {timeout_s} s)",
                    vcpu.partition
                )?,
                GuestEnd::Init => {}
                GuestEnd::WithPartition => writeln!(
                    w,
                    "cpu {i} apic {a}: {} guest ended with its partition",
                    vcpu.partition
                )?,
            }
            if others > 0 {
                writeln!(w, "  {others} other CPUs of the partition asked to stop")?;
            }
            writeln!(w, "{counts}")
        });
        return;
    }
    console::write_block(|w| {
        match stop {
            Stop::Ended(_) => {}
            Stop::Unhandled(exit) => {
                writeln!(w, "cpu {i} apic {a}: guest stopped: unhandled exit {exit}")?
            }
            Stop::EntryFailed(e) => {
                writeln!(w, "cpu {i} apic {a}: guest stopped: VM entry failed: {e}")?
            }
            Stop::Vmcs(e) => writeln!(
                w,
                "cpu {i} apic {a}: guest stopped: VMCS access failed: {e}"
            )?,
        }
        writeln!(
            w,
            "  partition={} RIP={:#x} RSP={:#x} RFLAGS={:#x} CR0={:#x} CR3={:#x} CR4={:#x}",
            vcpu.partition,
            rd(guest::RIP),
            rd(guest::RSP),
            rd(guest::RFLAGS),
            rd(guest::CR0),
            rd(guest::CR3),
            rd(guest::CR4)
        )?;
        writeln!(
            w,
            "{}",
            GprDump([
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
                r.r13, r.r14, r.r15,
            ])
        )?;
        writeln!(
            w,
            "  exit qualification={:#x} guest-physical={:#x} guest-linear={:#x} instruction length={}",
            rd(ro::EXIT_QUALIFICATION),
            rd(ro::GUEST_PHYSICAL_ADDR_FULL),
            rd(ro::GUEST_LINEAR_ADDR),
            rd(ro::VMEXIT_INSTRUCTION_LEN)
        )?;
        if others > 0 {
            writeln!(w, "  {others} other CPUs of the partition asked to stop")?;
        }
        writeln!(w, "{counts}")
    });
}
