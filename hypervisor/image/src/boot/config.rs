//! Boot step 3: the config module, decoded and validated, then checked against this
//! machine (CPUs present, regions in usable RAM, clear of the image, the boot information
//! and the modules; the hypervisor's region holding the image below 4 GiB).

use bulkhead_config::Config;
use bulkhead_config::platform as fit;
use hv_core::boot::memory::{self as boot_memory, Occupied};
use spin::Once;

use crate::boot_info::{self, BootInfo};
use crate::platform::Platform;
use crate::{console, fatal, memory};

/// Name of the GRUB module that carries the compiled config.
const CONFIG_MODULE: &str = "config";

/// Most memory ranges in use at boot: the image, the boot information and the modules.
pub const OCCUPIED_MAX: usize = boot_info::MAX_MODULES + 2;

static CONFIG: Once<Config> = Once::new();

/// What lies in memory at boot and must be neither allocated nor given to a partition.
pub fn occupied(boot: &BootInfo) -> Occupied<'_, OCCUPIED_MAX> {
    Occupied::new(
        memory::image_span(),
        boot.info_span,
        boot.modules().map(|m| (m.name(), m.span)),
    )
}

/// Reads the config, checks it against the machine, and moves the console where it says.
pub fn read(boot: &BootInfo, platform: &Platform) -> &'static Config {
    let Some(module) = boot.module(CONFIG_MODULE) else {
        fatal!(
            "no config module: GRUB must load the compiled config with `module2 <file> {CONFIG_MODULE}`"
        )
    };
    let cfg = match bulkhead_config::blob::decode(module.bytes()) {
        Ok(c) => CONFIG.call_once(|| c),
        Err(e) => fatal!("{e}"),
    };
    check_fits(cfg, boot, platform);
    crate::guest_memory::config_checked(cfg);
    if cfg.console().hypervisor != bulkhead_config::ConsoleTarget::Com1 {
        log::info!("console moves to {}", cfg.console().hypervisor);
        console::init(cfg.console().hypervisor.io_base());
    }
    log::info!(
        "config {:?}: valid and fits this machine",
        cfg.name().as_str()
    );
    cfg
}

/// Re-checks the config against this machine; stops with the config field on failure.
fn check_fits(cfg: &Config, boot: &BootInfo, platform: &Platform) {
    let occupied = occupied(boot).regions();
    let mut kept = [("IOAPIC registers", bulkhead_config::Region::new(0, 0));
        crate::platform::MAX_IOAPICS];
    let ioapics = platform.ioapics().len().min(kept.len());
    for (k, io) in kept.iter_mut().zip(platform.ioapics()) {
        k.1 = bulkhead_config::Region::new(u64::from(io.address) & !0xfff, 0x1000);
    }
    let hw = fit::Platform {
        apic_ids: platform.apic_ids(),
        usable_ram: boot.usable_ram(),
        occupied: occupied.as_slice(),
        kept_registers: &kept[..ioapics],
    };
    if let Err(e) = fit::check_fit(cfg, &hw) {
        fatal!("config: {e}");
    }
    if let Err(e) =
        boot_memory::check_hypervisor_memory(cfg.hypervisor_region(), memory::image_span())
    {
        fatal!("config: {e}");
    }
}
