//! The Bulkhead hypervisor image.
//!
//! GRUB loads this ELF with multiboot2 and enters `_start` (arch/boot.S) on the bootstrap
//! CPU. From there the boot is a straight line ([`boot`]), and any step that fails ends in
//! one `FATAL:` line naming the cause, then `bulkhead: halted` and an ACPI power-off
//! ([`fatal`]). Then every configured CPU is started, enters VMX operation and, once all
//! have, launches into its partition ([`launch`]).
//!
//! After launch the hypervisor runs only when a guest exits (on RT CPUs, only while their
//! kernel starts). An exit it does not handle stops that guest, on that CPU only. With
//! `exit_report_s=N` on its command line, the first Linux CPU prints every CPU's exit
//! counts every N seconds (by the TSC, at the first exit after they are due; its
//! VMX-preemption timer makes one at least every 10 ms; [`reports`]).
//!
//! Rooms: `boot` builds the machine's description, `launch` starts the CPUs, `vmx` runs
//! the guests, `linux_life` restarts Linux, `reports` prints what the guests did; the
//! loaders (`rt_loader`, `linux_loader`, `channels`) fill partition memory; `linux_cpus`
//! and `linux_devices` emulate what Linux may not touch directly.
#![no_std]
#![no_main]
// Unsafe code lives only in the modules that touch hardware or raw memory, each of which
// allows it with its reason.
#![deny(unsafe_code)]

extern crate bulkhead_hv_core as hv_core;

mod arch;
mod boot;
mod boot_info;
mod channels;
mod console;
mod fatal;
mod guest_memory;
mod launch;
mod linux_cpus;
mod linux_devices;
mod linux_life;
mod linux_loader;
mod memory;
mod partition;
mod percpu;
mod platform;
mod reports;
mod rt_lines;
mod rt_pci;
mod rt_loader;
mod smp;
mod vmx;

use arch::{apic, halt_forever, interrupts};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::force_unlock();
    println!("PANIC: cpu {}: {}", percpu::current_index(), info);
    println!("cpu {} halted", percpu::current_index());
    halt_forever()
}

/// Rust entry of the bootstrap CPU, called by arch/boot.S in long mode.
// The boot assembly calls it by its unmangled name.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn bsp_entry(magic: u32, info_addr: u32) -> ! {
    let bsp_apic = apic::cpuid_apic_id();
    percpu::set_current(0, bsp_apic);
    console::init(Some(console::Uart::COM1));
    println!("bulkhead {} starting", env!("CARGO_PKG_VERSION"));
    let tables = launch::bsp_tables();
    interrupts::load_idt();

    let machine = boot::bootstrap(magic, info_addr);

    launch::start_aps(machine, bsp_apic);
    log::info!(
        "hypervisor memory in use: {} KiB",
        memory::allocated() >> 10
    );
    if machine.config.partition_of_cpu(bsp_apic).is_some() {
        launch::cpu_main(0, bsp_apic, tables)
    }
    log::info!("bootstrap CPU (APIC ID {bsp_apic}) is in no partition; it idles");
    halt_forever()
}
