//! The boot: the steps that build one description of the machine, on the bootstrap CPU,
//! before any other CPU starts. Each step that fails ends in one `FATAL:` line naming the
//! cause (and the config field), then `bulkhead: halted`:
//!
//! 1. boot information, ACPI (CPUs, IOAPICs, power-off), the TSC, the PICs masked
//!    ([`hardware`]);
//! 2. the VT-x feature check on the bootstrap CPU ([`hardware`]);
//! 3. the config module: decoded and validated (`bulkhead-config`), then checked against
//!    this machine: CPUs present, regions in usable RAM, clear of the image and modules
//!    ([`config`]);
//! 4. the partition plan; the channels; the RT kernel loaded into the RT partition, Linux
//!    into the Linux partition (`linux=stub` runs a start-up stub instead); each
//!    partition's EPT, I/O and MSR bitmaps and start-up state ([`partitions`]).
//!
//! The result is one [`Machine`], set once: every CPU reads it afterwards, nothing writes
//! it. Starting the CPUs is `launch`'s.

mod config;
mod hardware;
mod options;
mod partitions;

use bulkhead_config::{Config, PartitionId};
use spin::Once;

pub use options::Options;

use crate::boot_info::BootInfo;
use crate::partition::PartitionResources;

/// What the boot found and built; read-only once set.
#[derive(Debug)]
pub struct Machine {
    /// The multiboot2 information (memory map, modules, command line).
    pub boot: &'static BootInfo,
    /// The config, valid and checked against this machine.
    pub config: &'static Config,
    /// Each partition's EPT, bitmaps and start-up state, by `PartitionId as usize`.
    pub partitions: &'static [PartitionResources; 2],
    /// The hypervisor's command-line options.
    pub options: Options,
    /// CPUs the config assigns (the ones that run guests).
    pub cpu_count: usize,
    /// CPUs whose guest says hello (RT CPUs, and Linux CPUs running the stub): steady
    /// state is when all of them have.
    pub expected_hellos: usize,
}

static MACHINE: Once<Machine> = Once::new();

/// The machine, once the boot has described it.
pub fn machine() -> Option<&'static Machine> {
    MACHINE.get()
}

/// Runs the boot steps on the bootstrap CPU; `magic` and `info_addr` are what the loader
/// passed to `_start`.
pub fn bootstrap(magic: u32, info_addr: u32) -> &'static Machine {
    let (boot, platform) = hardware::discover(magic, info_addr);
    let (_, controls) = hardware::check_vtx();
    let config = config::read(boot, platform);
    let built = partitions::build(config, boot, platform, &controls);
    let options = Options {
        exit_report_s: options::exit_report_s(boot),
        selftest_exception: boot.has_option("selftest", "exception"),
        ..built.options
    };
    let cpu_count = PartitionId::ALL
        .iter()
        .map(|&p| config.partition(p).cpus().len())
        .sum::<usize>();
    MACHINE.call_once(|| Machine {
        boot,
        config,
        partitions: built.partitions,
        options,
        cpu_count,
        expected_hellos: built.expected_hellos,
    })
}
