//! Boot step 4: the hypervisor's memory, the partition plan, the channels, both
//! partitions' guests loaded, and each partition's EPT, I/O and MSR bitmaps and start-up
//! state built.

use bulkhead_config::{Config, PartitionId};
use hv_core::boot::rt::RtLayout;
use hv_core::linux::firmware::{self as linux_firmware, FirmwareRanges};
use hv_core::memory::frames::Span;
use hv_core::vmx::caps::VmxControls;
use spin::Once;

use super::Options;
use crate::arch::time;
use crate::boot_info::BootInfo;
use crate::partition::{self, GuestStart, PartitionResources};
use crate::platform::Platform;
use crate::{
    channels, console, fatal, linux_devices, linux_loader, memory, println, rt_lines, rt_loader,
    rt_pci,
};

static PARTITIONS: Once<[PartitionResources; 2]> = Once::new();

/// What step 4 built.
pub struct Built {
    pub partitions: &'static [PartitionResources; 2],
    /// The options the build followed (`linux=stub`, the unhandled-exit self-test).
    pub options: Options,
    /// CPUs whose guest says hello.
    pub expected_hellos: usize,
}

/// Builds both partitions (see the module comment).
pub fn build(
    cfg: &'static Config,
    boot: &'static BootInfo,
    platform: &Platform,
    controls: &VmxControls,
) -> Built {
    let hv = cfg.hypervisor_region();
    let holes = super::config::occupied(boot).spans();
    if memory::init(Span::at(hv.base, hv.size), holes.as_slice()).is_err() {
        fatal!("too many boot modules to track");
    }
    print_plan(cfg);
    let layout = match RtLayout::plan(cfg) {
        Ok(l) => l,
        Err(e) => fatal!("config: {e}"),
    };
    // The RT kernel writes its console without setting the UART up (it may share the port
    // with the hypervisor): set up a port it does not share.
    let rt_port = cfg.console().rt.io_base();
    let shared_port = rt_port.is_some() && rt_port == cfg.console().hypervisor.io_base();
    if let (Some(port), false) = (rt_port, shared_port) {
        console::init_partition_port(port);
    }
    if let Err(e) = channels::init_all(cfg) {
        fatal!("{e}");
    }
    let lines = match rt_lines::plan(cfg, platform) {
        Ok(l) => l,
        Err(e) => fatal!("config: {e}"),
    };
    // Before Linux's devices: their BAR filter keeps off the RT functions' windows.
    let pci = match rt_pci::plan(cfg, platform, boot.usable_ram(), lines.as_slice()) {
        Ok(p) => p,
        Err(e) => fatal!("config: {e}"),
    };
    let pci_infos = pci.iter().map(|d| d.info);
    let rt_start = match rt_loader::load(
        cfg,
        boot,
        &layout,
        time::tsc_hz(),
        lines.as_slice(),
        pci_infos,
    ) {
        Ok(s) => s,
        Err(e) => fatal!("{e}"),
    };
    // A shared port: the two take turns line by line (the loader has zeroed the turn word).
    if shared_port && let Some(turn) = crate::guest_memory::rt_console_turn() {
        console::share_with_rt(turn);
    }
    let options = Options::for_partitions(boot);
    // Linux's devices first: the loader describes the channel device in Linux's ACPI tables.
    linux_devices::init(cfg, platform, boot.usable_ram());
    // The RT partition's pins, in the IOAPICs whose lock Linux's views now hold.
    rt_lines::program();
    let linux = if options.linux_stub {
        log::info!("partition linux: start-up stub instead of Linux (linux=stub)");
        None
    } else {
        match linux_loader::load(cfg, boot) {
            Ok(l) => Some(l),
            Err(e) => fatal!("{e}"),
        }
    };
    let rt_cpus = cfg.partition(PartitionId::Rt).cpus().len();
    let linux_cpus = cfg.partition(PartitionId::Linux).cpus().len();
    let expected_hellos = rt_cpus + if linux.is_some() { 0 } else { linux_cpus };
    let linux_ram = partition::identity(cfg.partition(PartitionId::Linux).memory().iter().copied());
    let linux_shared = partition::identity(cfg.shared_regions().iter().map(|s| s.region));
    let linux_firmware = match &linux {
        Some(l) => linux_firmware::linux_firmware_ranges(
            l.e820.as_slice(),
            linux_firmware::linux_owns(cfg),
        ),
        None => FirmwareRanges::default(),
    };
    for page in linux_firmware.left_out.as_slice() {
        log::warn!("linux: too many firmware ranges to map; {page:#x} and above left out");
    }
    let env = partition::BuildEnv {
        allow_1g: controls.ept_1g_pages,
        fadt: platform.fadt,
    };
    let parts = PARTITIONS.call_once(|| {
        let linux = partition::build(
            cfg,
            &env,
            PartitionId::Linux,
            linux_ram,
            linux_shared,
            linux_firmware.ranges.as_slice().iter().copied(),
            linux.map(|l| GuestStart::Linux(l.start)),
        );
        let rt = partition::build(
            cfg,
            &env,
            PartitionId::Rt,
            layout.ram().iter().copied(),
            // Not the hypervisor's log region: the RT partition cannot write that log.
            layout
                .shared()
                .iter()
                .enumerate()
                .filter(|&(i, _)| cfg.rt_maps_shared(i))
                .map(|(_, m)| *m),
            core::iter::empty(),
            Some(GuestStart::Rt(rt_start)),
        );
        match (linux, rt) {
            (Ok(linux), Ok(rt)) => [linux, rt],
            (Err(e), _) => fatal!("partition linux: {e}"),
            (_, Err(e)) => fatal!("partition rt: {e}"),
        }
    });
    for p in parts {
        let start = match p.start {
            GuestStart::Stub { entry } => (entry, "start-up stub"),
            GuestStart::Rt(rt) => (rt.entry, "64-bit kernel entry"),
            GuestStart::Linux(l) => (l.entry, "Linux 64-bit entry"),
            GuestStart::LinuxSecondary(e) => (e.cs_base, "real-mode start-up"),
        };
        log::info!(
            "partition {}: EPT in {} tables, {} at {:#x}",
            p.id,
            p.ept_tables,
            start.1,
            start.0
        );
    }
    Built {
        partitions: parts,
        options,
        expected_hellos,
    }
}

fn print_plan(cfg: &Config) {
    for &p in &PartitionId::ALL {
        for &apic_id in cfg.partition(p).cpus() {
            println!("plan: apic {apic_id} -> {p}");
        }
    }
    for &p in &PartitionId::ALL {
        let part = cfg.partition(p);
        println!(
            "plan: {p}: {} CPUs, {} MiB in {} regions",
            part.cpus().len(),
            part.memory_bytes() >> 20,
            part.memory().len()
        );
    }
    let hv = cfg.hypervisor_region();
    println!("plan: hypervisor: {} MiB at {:#x}", hv.size >> 20, hv.base);
    for s in cfg.shared_regions() {
        println!(
            "plan: shared {}: {} KiB at {:#x}",
            s.name.as_str(),
            s.region.size >> 10,
            s.region.base
        );
    }
}
