//! The serial echo application: a 16550 UART owned by the RT partition, driven by its
//! receive interrupt, echoing every byte it receives (the shape of a serial fieldbus master
//! such as Modbus RTU: the interrupt wakes a task, the task talks to the UART).
//!
//! `serial=PORT@GSI` on the kernel command line (for example `serial=0x3e8@4`, COM3 on ISA
//! IRQ 4) names the UART's I/O base and its IOAPIC pin; the config must give the RT
//! partition both (`io_ports = [{ base = PORT, count = 8 }]`, the pin in `ioapic_pins`), so
//! that the port passes straight through and the pin is one of the partition's lines. The
//! line is delivered to the partition's first CPU, where the driver's task runs at priority
//! 75. Without the option the application does nothing.
//!
//! The task sets the UART up (115200 baud, 8N1, FIFOs on, the receive interrupt enabled
//! and OUT2, which gates a PC UART's interrupt, on), then loops: wait for the line
//! (`bulkhead_rt::irq`), read every byte the receiver holds, send each back. Every second
//! with traffic its CPU's report task prints
//! `serial: port=0x3e8 gsi=4 rx=.. tx=.. overruns=.. irqs=.. unhandled=.. irq_to_task_max_ns=..`
//! (`bulkhead_abi::console::SerialSummary`). A port with no UART behind it (its line
//! status reads all ones) is reported once and left alone.

#![no_std]

use bulkhead_abi::console::SerialSummary;
use bulkhead_rt::api::{self, Timeout};
use bulkhead_rt::app::{App, Context, Cpu, STACK_BYTES, TaskDecl};
use bulkhead_rt::core_types::{Error, Once, Policy};
use bulkhead_rt::irq::{self, Attached};
use bulkhead_rt::report::{self, Published};
use bulkhead_rt::{port, println};

/// The application.
pub const APP: App = App {
    name: "serial",
    tasks: &[TaskDecl {
        name: "serial",
        cpu: Cpu::First,
        priority: 75,
        policy: Policy::Fifo,
        stack_bytes: STACK_BYTES,
        entry: task,
        arg: 0,
    }],
    init: Some(init),
    report: Some(print_latest),
};

/// The UART and its line, once `init` found both.
struct Uart {
    base: u16,
    attached: Attached,
}

static UART: Once<Uart> = Once::new();

/// 16550 registers, as offsets from the base (DLAB clear unless said).
mod reg {
    pub const DATA: u16 = 0;
    pub const INTERRUPT_ENABLE: u16 = 1;
    pub const DIVISOR_LOW: u16 = 0; // DLAB set
    pub const DIVISOR_HIGH: u16 = 1; // DLAB set
    pub const FIFO_CONTROL: u16 = 2;
    pub const INTERRUPT_ID: u16 = 2;
    pub const LINE_CONTROL: u16 = 3;
    pub const MODEM_CONTROL: u16 = 4;
    pub const LINE_STATUS: u16 = 5;
    pub const SCRATCH: u16 = 7;
}

/// Line status bits.
const DATA_READY: u8 = 1 << 0;
const OVERRUN: u8 = 1 << 1;
const TRANSMIT_EMPTY: u8 = 1 << 5;

/// Parses `PORT@GSI` (the port in hex with `0x`, or decimal).
fn parse(value: &str) -> Option<(u16, u32)> {
    let (port, gsi) = value.split_once('@')?;
    let port = match port.strip_prefix("0x") {
        Some(hex) => u16::from_str_radix(hex, 16).ok()?,
        None => port.parse().ok()?,
    };
    Some((port, gsi.parse().ok()?))
}

/// Reads `serial=PORT@GSI` and attaches the line (init).
fn init(context: &Context<'static>) -> Result<(), Error> {
    let Some(value) = context.option("serial") else {
        return Ok(());
    };
    let Some((base, gsi)) = parse(value) else {
        println!("serial: option {value:?}: expected PORT@GSI, for example serial=0x3e8@4");
        return Err(Error::InvalidArgument);
    };
    // The task runs on CPU 0 (`Cpu::First`).
    if let Some(attached) = irq::attach_gsi(APP.name, gsi, 0)? {
        UART.call_once(|| Uart { base, attached });
    }
    Ok(())
}

/// What the task counted and what the kernel counted for its line, published together for
/// the report: rx, tx, overruns, interrupts, unhandled ones, longest top half to task.
static PUBLISHED: Published<6> = Published::new();

/// Prints the last report (the report task of the driver's CPU).
fn print_latest() {
    let (Some(uart), Some([rx, tx, overruns, irqs, unhandled, max_ns])) =
        (UART.get(), PUBLISHED.latest())
    else {
        return;
    };
    let summary = SerialSummary {
        port: uart.base,
        gsi: uart.attached.line().gsi(),
        rx,
        tx,
        overruns,
        irqs,
        unhandled,
        irq_to_task_max_ns: max_ns,
    };
    println!("{summary}");
}

/// Register access to the UART at `base`.
struct Regs(u16);

impl Regs {
    fn read(&self, offset: u16) -> u8 {
        // SAFETY: the UART's eight ports are the partition's (its config grants them; a port
        // it was not granted exits and reads all ones); reads here are the driver's own.
        unsafe { port::inb(self.0 + offset) }
    }

    fn write(&self, offset: u16, value: u8) {
        // SAFETY: as in `read`.
        unsafe { port::outb(self.0 + offset, value) }
    }

    /// Whether a 16550 answers: its scratch register keeps what is written, and the line
    /// status is not all ones (a port with nothing behind it).
    fn present(&self) -> bool {
        self.write(reg::SCRATCH, 0x5a);
        self.read(reg::SCRATCH) == 0x5a && self.read(reg::LINE_STATUS) != 0xff
    }

    /// 115200 baud 8N1, FIFOs on (receive interrupt at one byte), OUT2, receive interrupt.
    fn set_up(&self) {
        self.write(reg::INTERRUPT_ENABLE, 0);
        self.write(reg::LINE_CONTROL, 0x80);
        self.write(reg::DIVISOR_LOW, 1);
        self.write(reg::DIVISOR_HIGH, 0);
        self.write(reg::LINE_CONTROL, 0x03);
        self.write(reg::FIFO_CONTROL, 0x07);
        self.write(reg::MODEM_CONTROL, 0x0b);
        // Anything pending from before is read and dropped.
        while self.read(reg::LINE_STATUS) & DATA_READY != 0 {
            let _ = self.read(reg::DATA);
        }
        let _ = self.read(reg::INTERRUPT_ID);
        self.write(reg::INTERRUPT_ENABLE, 0x01);
    }

    fn send(&self, byte: u8) {
        while self.read(reg::LINE_STATUS) & TRANSMIT_EMPTY == 0 {
            core::hint::spin_loop();
        }
        self.write(reg::DATA, byte);
    }
}

/// How often the task publishes while bytes flow.
const REPORT_NS: u64 = 1_000_000_000;

/// The driver's task.
extern "C" fn task(_: usize) {
    let Some(uart) = UART.get() else {
        return;
    };
    let regs = Regs(uart.base);
    if !regs.present() {
        println!("serial: no UART at port {:#x}", uart.base);
        return;
    }
    regs.set_up();
    println!(
        "serial: UART at {:#x} on IOAPIC pin {} (line {}), echoing",
        uart.base,
        uart.attached.line().gsi(),
        uart.attached.line().index()
    );
    let (mut rx, mut tx, mut overruns) = (0u64, 0u64, 0u64);
    let mut published = (0, 0);
    let mut next_report = api::now_ns();
    loop {
        // With counts not yet published, wake by the next report time at the latest, so
        // the end of a burst is reported too.
        let unpublished = (rx, tx) != published;
        let timeout = if unpublished {
            Timeout::Until(next_report)
        } else {
            Timeout::Forever
        };
        match uart.attached.wait(timeout) {
            Ok(_) | Err(Error::TimedOut) => {}
            Err(e) => {
                println!("serial: waiting for the line failed: {e}");
                return;
            }
        }
        loop {
            let status = regs.read(reg::LINE_STATUS);
            if status & OVERRUN != 0 {
                overruns += 1;
            }
            if status & DATA_READY == 0 {
                break;
            }
            let byte = regs.read(reg::DATA);
            rx += 1;
            regs.send(byte);
            tx += 1;
        }
        let now = api::now_ns();
        if (rx, tx) != published && now >= next_report {
            next_report = now.saturating_add(REPORT_NS);
            published = (rx, tx);
            let stats = uart.attached.stats();
            PUBLISHED.publish(&[
                rx,
                tx,
                overruns,
                stats.fired,
                stats.unhandled,
                stats.latency_max_ns,
            ]);
            report::request(APP.name);
        }
    }
}
