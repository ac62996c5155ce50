//! The hypervisor console: the `log` backend on the 16550 UART of `bulkhead-x86`, and the
//! hypervisor's log channel.
//!
//! Every line is written whole under one lock, so lines from different CPUs never
//! interleave. When the RT kernel writes the same UART, each line (or block) is also written
//! in the console turn the two share in the RT partition's RAM
//! (`bulkhead_abi::rt_boot::CONSOLE_TURN_GPA`), so its lines and the hypervisor's never mix;
//! the hypervisor waits for its turn at most `CONSOLE_TURN_WAIT_MS`. The fatal path may steal the lock (`force_unlock`) so that a CPU that
//! died holding it cannot silence the last words of another.
//!
//! The same text also goes, one message per line, into the config's `hypervisor-to-linux`
//! channel, when it has one (`bulkhead log hypervisor` on Linux; `bulkhead_ring::log` owns
//! the framing). Its send end lives under the console's lock, so the hypervisor is its one
//! producer whichever CPU prints. It never waits for Linux: a line that finds the channel
//! full is dropped and counted, and the next one that fits follows a `[... N lines dropped]`
//! marker. Lines printed before the channels are initialized are kept (up to
//! `bulkhead_ring::log::EARLY_BYTES`) and sent first ([`attach_log`]).
// Drives the UARTs through their ports, and breaks the console lock on the fatal path.
#![allow(unsafe_code)]

use core::fmt::{self, Write};

use core::sync::atomic::{AtomicU32, Ordering};

use bulkhead_abi::rt_boot::{CONSOLE_FREE, CONSOLE_HYPERVISOR, CONSOLE_TURN_WAIT_MS};
use bulkhead_ring::Producer;
use bulkhead_ring::log::LogWriter;
use spin::{Mutex, Once};

pub use bulkhead_x86::uart::Uart;

/// Where console text goes.
struct Console {
    uart: Option<Uart>,
    log: LogWriter<'static>,
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(uart) = self.uart.as_mut() {
            let _ = uart.write_str(s);
        }
        self.log.write_bytes(s.as_bytes());
        Ok(())
    }
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    uart: None,
    log: LogWriter::new(),
});

/// Sets up the console on `base` (or silences it with `None`) and installs the logger.
pub fn init(base: Option<u16>) {
    // SAFETY: the legacy COM ports are the hypervisor's console (no partition gets them).
    CONSOLE.lock().uart = base.map(|base| unsafe { Uart::init(base) });
    // A second call (re-routing after the config is read) keeps the logger installed.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Sets up the UART at `port` for a partition's console (one the config routes to a
/// partition and the hypervisor does not share), before any partition runs.
pub fn init_partition_port(port: u16) {
    // SAFETY: the config routes this port to a partition's console; no partition runs yet,
    // so nothing else uses it.
    unsafe { Uart::init(port) };
}

/// From now on, console lines also go to `producer`, the send end of the hypervisor's log
/// channel; the lines kept since boot go first.
pub fn attach_log(producer: Producer<'static>) {
    CONSOLE.lock().log.attach(producer);
}

/// The config has no log channel: the lines kept since boot are forgotten, and no more kept.
pub fn log_off() {
    CONSOLE.lock().log.off();
}

/// The console turn shared with the RT kernel, when it writes this console's UART too.
static RT_TURN: Once<&'static AtomicU32> = Once::new();

/// The RT kernel writes this console's UART too: from now on, lines are written in the turn
/// `turn` they share.
pub fn share_with_rt(turn: &'static AtomicU32) {
    RT_TURN.call_once(|| turn);
}

/// Holds the console turn shared with the RT kernel (if any) while it lives.
struct Turn(Option<&'static AtomicU32>);

impl Turn {
    /// Waits for the turn, at most `CONSOLE_TURN_WAIT_MS`; after that it writes anyway.
    fn take() -> Self {
        let Some(&turn) = RT_TURN.get() else {
            return Self(None);
        };
        let give_up = bulkhead_x86::rdtsc()
            .saturating_add(bulkhead_x86::time::tsc_hz() / 1000 * CONSOLE_TURN_WAIT_MS);
        loop {
            if turn
                .compare_exchange(CONSOLE_FREE, CONSOLE_HYPERVISOR, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Self(Some(turn));
            }
            if bulkhead_x86::rdtsc() >= give_up {
                return Self(None);
            }
            core::hint::spin_loop();
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(turn) = self.0 {
            turn.store(CONSOLE_FREE, Ordering::Release);
        }
    }
}

/// Writes pre-formatted text as one unit.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut console = CONSOLE.lock();
    let _turn = Turn::take();
    let _ = console.write_fmt(args);
}

/// Writes several lines as one unit, so no other CPU's line lands in between.
pub fn write_block(block: impl FnOnce(&mut dyn Write) -> fmt::Result) {
    let mut console = CONSOLE.lock();
    let _turn = Turn::take();
    let _ = block(&mut *console);
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
