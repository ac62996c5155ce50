//! The hypervisor console: the `log` backend on the 16550 UART of `bulkhead-x86`.
//!
//! Every line is written whole under one lock, so lines from different CPUs never
//! interleave. The fatal path may steal the lock (`force_unlock`) so that a CPU that
//! died holding it cannot silence the last words of another.

use core::fmt::{self, Write};

use spin::Mutex;

pub use bulkhead_x86::uart::Uart;

static CONSOLE: Mutex<Option<Uart>> = Mutex::new(None);

/// Sets up the console on `base` (or silences it with `None`) and installs the logger.
pub fn init(base: Option<u16>) {
    // SAFETY: the legacy COM ports are the hypervisor's console (no partition gets them).
    *CONSOLE.lock() = base.map(|base| unsafe { Uart::init(base) });
    // A second call (re-routing after the config is read) keeps the logger installed.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Writes pre-formatted text as one unit.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let _ = uart.write_fmt(args);
    }
}

/// Writes several lines as one unit, so no other CPU's line lands in between.
pub fn write_block(block: impl FnOnce(&mut dyn Write) -> fmt::Result) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let _ = block(uart);
    }
}

/// Breaks a lock held by a CPU that will never release it; used only on the way to halt.
pub fn force_unlock() {
    if CONSOLE.is_locked() {
        // SAFETY: called only on fatal paths where the holder is halted or is this CPU
        // that is about to stop; a torn line is acceptable there, a silent hang is not.
        unsafe { CONSOLE.force_unlock() };
    }
}

/// Prints one line on the hypervisor console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let cpu = crate::percpu::current_index();
            write_fmt(format_args!(
                "[{:<5} cpu{}] {}\n",
                record.level(),
                cpu,
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}
