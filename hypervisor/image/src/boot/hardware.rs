//! Boot steps 1 and 2: what the boot loader and the firmware say about the machine (the
//! multiboot2 information, ACPI), the TSC's rate, the legacy PICs masked, and the VT-x
//! features on the bootstrap CPU.
// Reads the multiboot2 information at the address the loader passed, and programs the PIT
// and the PICs through their ports: boot-time hardware access, before any partition runs.
#![allow(unsafe_code)]

use hv_core::vmx::caps::{Feature, VmxControls, VmxMsrs};
use spin::Once;

use crate::arch::{apic, port, time};
use crate::boot_info::BootInfo;
use crate::platform::Platform;
use crate::{fatal, vmx};

static BOOT: Once<BootInfo> = Once::new();
static PLATFORM: Once<Platform> = Once::new();

/// Step 1: the boot information and the platform, logged; the TSC calibrated; the PICs
/// masked.
pub fn discover(magic: u32, info_addr: u32) -> (&'static BootInfo, &'static Platform) {
    // SAFETY: `magic` and `info_addr` are what the loader passed to `_start` (the caller's
    // contract); nothing has written to the information since.
    let boot = match unsafe { BootInfo::parse(magic, info_addr as usize) } {
        Ok(b) => BOOT.call_once(|| b),
        Err(e) => fatal!("{e}"),
    };
    let platform = match Platform::discover(boot.rsdp) {
        Ok(p) => PLATFORM.call_once(|| p),
        Err(e) => fatal!("{e}"),
    };
    if let Some(off) = platform.power_off {
        crate::fatal::set_power_off(off);
    }
    if boot.dropped_entries > 0 {
        log::warn!(
            "{} memory-map ranges or modules beyond the boot tables' capacity were ignored",
            boot.dropped_entries
        );
    }
    if platform.dropped_entries > 0 {
        log::warn!(
            "{} MADT entries beyond the platform tables' capacity were ignored",
            platform.dropped_entries
        );
    }
    if let Some(e) = boot.efi_map_refused {
        log::warn!("{e}: the boot loader's own memory map is used instead");
    }
    log::info!(
        "{} MiB usable RAM in {} ranges ({}); {} CPUs and {} IOAPICs in the MADT; hypervisor command line {:?}",
        boot.total_ram() >> 20,
        boot.usable_ram().len(),
        boot.memory_map_source,
        platform.apic_ids().len(),
        platform.ioapics().len(),
        boot.cmdline()
    );
    for io in platform.ioapics() {
        log::info!(
            "IOAPIC {} at {:#x}, GSI base {}",
            io.id,
            io.address,
            io.gsi_base
        );
    }
    for o in platform.irq_overrides() {
        log::info!("ISA IRQ {} -> GSI {} (flags {:#x})", o.irq, o.gsi, o.flags);
    }
    // SAFETY: the PIT and port 0x61 are the hypervisor's during boot (no partition runs yet),
    // and only the bootstrap CPU runs.
    match unsafe { time::calibrate_tsc() } {
        Some(hz) => log::info!("TSC {} kHz", hz / 1000),
        None => log::warn!("TSC calibration failed: the PIT did not count; delays are rough"),
    }

    // The 8259 PICs stay as firmware left them until a partition's kernel programs them:
    // masked, so that no legacy interrupt (firmware maps IRQ 0 onto vector 8) reaches a
    // CPU through its LINT0 virtual wire in the meantime.
    // SAFETY: no partition runs yet; writing the PICs' interrupt mask registers only masks.
    unsafe {
        port::outb(0x21, 0xff);
        port::outb(0xa1, 0xff);
    }
    (boot, platform)
}

/// Step 2: VT-x on the bootstrap CPU, and x2APIC mode on.
pub fn check_vtx() -> (VmxMsrs, VmxControls) {
    let (msrs, controls) = match vmx::check_this_cpu() {
        Ok(v) => v,
        Err(m) if m.0.contains(Feature::VMX) => fatal!(
            "VT-x not available: CPUID.1:ECX.VMX is clear on this CPU (on QEMU, use KVM with -cpu host,+vmx; in firmware, enable Intel VT-x)"
        ),
        Err(m) => fatal!("VT-x not usable: this CPU lacks {m}"),
    };
    // SAFETY: x2APIC support is part of the feature check that just passed.
    unsafe { apic::enable_x2apic() };
    (msrs, controls)
}
