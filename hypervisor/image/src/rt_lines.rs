//! The RT partition's device lines in the hardware: each planned line's IOAPIC entry is
//! written once at boot (delivering its vector to its RT CPU, masked), and the RT kernel's
//! `LINE` hypercall masks or unmasks it afterwards. The plan is `hv_core::devices::rt_lines`'s;
//! the entries are written through `linux_devices`, under the IOAPIC lock Linux's view takes
//! too.

use bulkhead_abi::hypercall::Status;
use bulkhead_config::Config;
use hv_core::devices::rt_lines::{self, IsaOverride, Lines};
use spin::Once;

use crate::linux_devices;
use crate::platform::Platform;

static LINES: Once<Lines> = Once::new();

/// Plans the lines from the config and the MADT (once; the boot information lists them).
pub fn plan(cfg: &Config, platform: &Platform) -> Result<&'static Lines, rt_lines::PlanError> {
    let mut overrides = [IsaOverride { gsi: 0, flags: 0 }; crate::platform::MAX_OVERRIDES];
    let count = platform.irq_overrides().len().min(overrides.len());
    for (o, from) in overrides.iter_mut().zip(platform.irq_overrides()) {
        *o = IsaOverride {
            gsi: from.gsi,
            flags: from.flags,
        };
    }
    let lines = rt_lines::plan(cfg, &overrides[..count])?;
    Ok(LINES.call_once(|| lines))
}

/// Writes every planned line's entry, masked (after `linux_devices::init`). A pin no IOAPIC
/// has is reported; its line never fires.
pub fn program() {
    let Some(lines) = LINES.get() else {
        return;
    };
    for line in lines.as_slice() {
        let written = linux_devices::update_redirection(line.gsi, |_, _| {
            rt_lines::redirection_entry(line, true)
        });
        if written {
            log::info!(
                "partition rt: line {} = IOAPIC pin {} -> RT CPU {} (APIC ID {}) vector {}, {} {}, masked until attached",
                line.vector - bulkhead_abi::vectors::DEVICE_FIRST,
                line.gsi,
                line.cpu,
                line.apic_id,
                line.vector,
                if line.level { "level" } else { "edge" },
                if line.active_low { "active low" } else { "active high" },
            );
        } else {
            log::warn!("partition rt: IOAPIC pin {} is on no IOAPIC of this machine: its line never fires", line.gsi);
        }
    }
}

/// The `LINE` hypercall of an RT CPU: masks or unmasks line `line`.
pub fn set_masked(line: u16, masked: bool) -> Status {
    let Some(planned) = LINES.get().and_then(|l| l.as_slice().get(usize::from(line))) else {
        return Status::NoSuchLine;
    };
    let written = linux_devices::update_redirection(planned.gsi, |_, _| {
        rt_lines::redirection_entry(planned, masked)
    });
    if written {
        Status::Ok
    } else {
        Status::NoSuchLine
    }
}
