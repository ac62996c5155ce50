//! The way a boot error ends: one `FATAL:` line naming the cause, `bulkhead: halted`, an
//! ACPI power-off where the platform allows it, and a halt. Never a triple fault.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Once;

use crate::arch::halt_forever;
use crate::platform::PowerOff;
use crate::{console, println};

/// How to power the machine off, once ACPI has told.
static POWER_OFF: Once<PowerOff> = Once::new();

/// Reports a fatal boot error and stops the machine.
#[macro_export]
macro_rules! fatal {
    ($($arg:tt)*) => { $crate::fatal::stop(format_args!($($arg)*)) };
}

/// From now on a fatal stop powers the machine off through `off`.
pub fn set_power_off(off: PowerOff) {
    POWER_OFF.call_once(|| off);
}

/// Prints `FATAL: ...`, `bulkhead: halted`, powers off where ACPI allows, and halts.
pub fn stop(args: fmt::Arguments<'_>) -> ! {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if REPORTED.swap(true, Ordering::AcqRel) {
        // Another CPU is already stopping the machine; its report is the one that counts.
        halt_forever()
    }
    console::force_unlock();
    println!("FATAL: {args}");
    println!("bulkhead: halted");
    if let Some(off) = POWER_OFF.get() {
        off.enter_s5();
    }
    halt_forever()
}
