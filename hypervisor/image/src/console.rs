//! The hypervisor console: a 16550 UART driver and the `log` backend on top of it.
//!
//! Every line is written whole under one lock, so lines from different CPUs never
//! interleave. The fatal path may steal the lock (`force_unlock`) so that a CPU that
//! died holding it cannot silence the last words of another.

use core::fmt::{self, Write};

use spin::Mutex;

use crate::arch::port;

/// A 16550-compatible UART at a legacy I/O port base.
#[derive(Debug)]
pub struct Uart {
    base: u16,
}

impl Uart {
    /// COM1's standard I/O base.
    pub const COM1: u16 = 0x3f8;

    /// Programs 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init(base: u16) -> Self {
        let out = |off: u16, val: u8| {
            // SAFETY: the legacy COM ports are the hypervisor's console; programming
            // them has no memory side effects.
            unsafe { port::outb(base + off, val) }
        };
        out(1, 0x00); // interrupts off
        out(3, 0x80); // DLAB
        out(0, 0x01); // divisor 1 = 115200
        out(1, 0x00);
        out(3, 0x03); // 8N1
        out(2, 0xc7); // FIFO on, cleared, 14-byte threshold
        out(4, 0x03); // DTR | RTS
        Self { base }
    }

    fn put(&mut self, byte: u8) {
        // Bounded wait for the transmit holding register: a missing UART must not
        // hang the hypervisor.
        for _ in 0..100_000 {
            // SAFETY: reading the line status register has no side effects.
            if unsafe { port::inb(self.base + 5) } & 0x20 != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        // SAFETY: writing the transmit register of a UART we own.
        unsafe { port::outb(self.base, byte) };
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Option<Uart>> = Mutex::new(None);

/// Sets up the console on `base` (or silences it with `None`) and installs the logger.
pub fn init(base: Option<u16>) {
    *CONSOLE.lock() = base.map(Uart::init);
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
