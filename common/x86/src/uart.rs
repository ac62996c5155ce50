//! A 16550-compatible UART at a legacy I/O port base, polled: the serial console of both
//! images. What goes through it (whole lines, locks, buffering) is each image's console.

use core::fmt;

use crate::port;

/// A 16550-compatible UART at a legacy I/O port base.
#[derive(Debug, Clone, Copy)]
pub struct Uart {
    base: u16,
}

impl Uart {
    /// COM1's standard I/O base.
    pub const COM1: u16 = 0x3f8;

    /// Programs 115200 baud, 8N1, FIFOs on, interrupts off.
    ///
    /// # Safety
    /// The UART's eight ports at `base` must be the caller's (its console).
    pub unsafe fn init(base: u16) -> Self {
        let out = |off: u16, val: u8| {
            // SAFETY: the ports are the caller's console UART; programming them has no
            // memory side effects.
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

    /// The UART at `base`, as [`Uart::init`] left it.
    ///
    /// # Safety
    /// As [`Uart::init`].
    pub unsafe fn at(base: u16) -> Self {
        Self { base }
    }

    /// Sends one byte.
    pub fn put(&mut self, byte: u8) {
        // Bounded wait for the transmit holding register: a missing UART must not hang
        // the image.
        for _ in 0..100_000 {
            // SAFETY: reading the line status register of the caller's UART has no side
            // effects.
            if unsafe { port::inb(self.base + 5) } & 0x20 != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        // SAFETY: writing the transmit register of the caller's UART.
        unsafe { port::outb(self.base, byte) };
    }

    /// Sends `bytes`, each `\n` as `\r\n`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
