//! `bulkhead probe`: what a Linux machine is made of, and the Bulkhead config that splits it.
//!
//! [`facts`] reads the machine as a running Linux shows it, under a root directory (`/` on the
//! target; a fixture tree in the tests): the CPUs and their SMT siblings (`/proc/cpuinfo`), the
//! firmware memory map (`/sys/firmware/memmap`), the ACPI MADT, MCFG and DMAR
//! (`/sys/firmware/acpi/tables`), the IOAPIC lines in use (`/proc/interrupts`), the I/O ports
//! (`/proc/ioports`), the PCI functions (`/sys/bus/pci/devices`), the serial ports
//! (`/sys/class/tty`), and VT-x's capabilities from the capability MSRs (`/dev/cpu/0/msr`).
//! [`plan`] turns those facts and what the user asks for (how many RT CPUs, which devices) into
//! a proposed config, every choice commented with where it came from, checked as the
//! hypervisor will check it (valid, and fitting this machine's CPUs and RAM), and a list of
//! what stands in the way of a clean partitioning.
//!
//! Everything read is input from outside: a file that is missing or does not parse is an error
//! naming the file, never a panic. This crate never writes to the machine.

pub mod facts;
pub mod madt;
pub mod plan;
pub mod vmx;

pub use facts::{Facts, ReadError};
pub use plan::{Finding, Proposal, Request, Severity, fits, propose};
