//! The hypervisor's own command-line options (GRUB's `multiboot2 hypervisor.elf ...`).

use crate::boot_info::BootInfo;

/// Most seconds `exit_report_s` takes.
const EXIT_REPORT_MAX_S: u64 = 3600;

/// What the command line asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `selftest=unhandled-exit`: the last Linux CPU's (stub) guest ends in an exit the
    /// hypervisor does not handle.
    pub selftest_unhandled_exit: bool,
    /// `selftest=exception`: the last CPU takes an invalid-opcode exception in the
    /// hypervisor before VMXON, to exercise the exception path.
    pub selftest_exception: bool,
    /// `linux=stub` (implied by the unhandled-exit self-test, which needs the stub): the
    /// Linux CPUs run the start-up stub instead of Linux.
    pub linux_stub: bool,
    /// `exit_report_s=N`: seconds between exit reports (0 = none).
    pub exit_report_s: u64,
}

impl Options {
    /// The options the partitions' build depends on.
    pub fn for_partitions(boot: &BootInfo) -> Self {
        let selftest_unhandled_exit = boot.has_option("selftest", "unhandled-exit");
        Self {
            selftest_unhandled_exit,
            linux_stub: boot.has_option("linux", "stub") || selftest_unhandled_exit,
            ..Self::default()
        }
    }
}

/// `exit_report_s=N`; a value out of range is reported and ignored.
pub fn exit_report_s(boot: &BootInfo) -> u64 {
    let Some(v) = boot.option("exit_report_s") else {
        return 0;
    };
    match v.parse::<u64>() {
        Ok(n) if n <= EXIT_REPORT_MAX_S => n,
        _ => {
            log::warn!("exit_report_s={v}: not a number of seconds from 0 to 3600; ignored");
            0
        }
    }
}
