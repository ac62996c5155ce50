//! The NIC application: a driver for the Intel 8254x gigabit controllers (82540EM and
//! 82545EM, "e1000": what Bochs and QEMU emulate and many boards carry) that the RT partition
//! owns as a PCI function, running a cyclic frame exchange the way an EtherCAT master runs
//! its bus (`bulkhead_abi::frame_exchange`).
//!
//! `nic=e1000` on the kernel command line starts it; `nic_period_us=N` sets the cycle
//! (default 1000, 100 to 1000000). The config must give the RT partition the NIC
//! (`pci_devices`) and the IOAPIC pin its INTx is routed to, level-triggered (the hypervisor
//! checks both at boot and describes the function in the boot information: BARs mapped,
//! bus mastering on, the line). The line must arrive on the partition's first CPU, where
//! the task runs at priority 87.
//!
//! The task resets nothing it does not own: it masks the NIC's interrupts, reads the MAC
//! from the EEPROM, sets up one receive and one transmit ring of 16 legacy descriptors with
//! 2 KiB buffers in the partition's RAM (given to the NIC by their bus addresses,
//! `bulkhead_rt::pci::bus_address`), enables receive-timer and overrun interrupts, waits for
//! the link (saying so every 10 s without one), and then runs cycles: at the start of each it hands the NIC the cycle's frame, then handles the
//! line until the next cycle starts (each interrupt: read ICR, which quiets the NIC, then
//! take every received frame: the cycle's answer gives its round trip, an earlier one is
//! late, anything else is counted bad). Once a second its CPU's report task prints
//! `frame-cycle source=e1000 period_us=.. cycles=.. answered=.. late=.. lost=.. bad=.. min_ns=.. avg_ns=.. max_ns=.. p99_ns=.. p999_ns=.. irqs=.. kernel_avg_ns=.. kernel_max_ns=..`
//! (`bulkhead_abi::console::CycleSummary`; the last two are the kernel's share of each
//! answer's way, from its interrupt's top half to the task); with `trace=on` the round trips' histogram
//! follows (`histogram device=e1000 ...`).
//!
//! Hand-written: the register set is the 8254x family's (Intel's PCI/PCI-X Family of Gigabit
//! Ethernet Controllers Software Developer's Manual), of which a driver this small needs a
//! few dozen lines; no `no_std` crate drives it without an allocator.

#![no_std]

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

use bulkhead_abi::console::{CycleSummary, HistogramOwner};
use bulkhead_abi::frame_exchange::{self, Answer, Exchange, FRAME_LEN};
use bulkhead_abi::rt_boot::PciFunctionInfo;
use bulkhead_rt::api::{self, Timeout};
use bulkhead_rt::app::{App, Context, Cpu, STACK_BYTES, TaskDecl};
use bulkhead_rt::core_types::{Error, Once, Policy, SharedHistogram};
use bulkhead_rt::irq::{self, Attached};
use bulkhead_rt::report::{self, Published};
use bulkhead_rt::{mmio, pci, println};

/// The application.
pub const APP: App = App {
    name: "nic",
    tasks: &[TaskDecl {
        name: "nic",
        cpu: Cpu::First,
        priority: 87,
        policy: Policy::Fifo,
        stack_bytes: STACK_BYTES,
        entry: task,
        arg: 0,
    }],
    init: Some(init),
    report: Some(print_latest),
};

/// Intel's vendor ID and the 8254x device IDs this driver knows.
const INTEL: u16 = 0x8086;
const DEVICE_IDS: [u16; 2] = [0x100e, 0x100f];

/// The NIC's registers (BAR 0) and its line, once `init` found both.
struct Nic {
    registers: u64,
    attached: Attached,
}

static NIC: Once<Nic> = Once::new();
static PERIOD_NS: AtomicU64 = AtomicU64::new(1_000_000);
static TRACE: AtomicBool = AtomicBool::new(false);
/// Round trips of the answers in time, 1 us buckets up to 1.2 ms (longer ones are counted
/// beyond the buckets: the summary's maximum is exact, its percentiles then read as the
/// maximum). More buckets would not fit the report task's stack, where the summary is
/// computed.
static ROUND_TRIPS: SharedHistogram<1200> = SharedHistogram::new();

/// Register offsets and bits (8254x developer's manual, 13).
mod reg {
    pub const CTRL: u64 = 0x0000;
    pub const STATUS: u64 = 0x0008;
    pub const EERD: u64 = 0x0014;
    pub const ICR: u64 = 0x00c0;
    pub const IMS: u64 = 0x00d0;
    pub const IMC: u64 = 0x00d8;
    pub const RCTL: u64 = 0x0100;
    pub const TCTL: u64 = 0x0400;
    pub const TIPG: u64 = 0x0410;
    pub const RDBAL: u64 = 0x2800;
    pub const RDBAH: u64 = 0x2804;
    pub const RDLEN: u64 = 0x2808;
    pub const RDH: u64 = 0x2810;
    pub const RDT: u64 = 0x2818;
    pub const TDBAL: u64 = 0x3800;
    pub const TDBAH: u64 = 0x3804;
    pub const TDLEN: u64 = 0x3808;
    pub const TDH: u64 = 0x3810;
    pub const TDT: u64 = 0x3818;
    pub const MTA: u64 = 0x5200;
    pub const RAL0: u64 = 0x5400;
    pub const RAH0: u64 = 0x5404;

    /// CTRL: set link up.
    pub const CTRL_SLU: u32 = 1 << 6;
    /// STATUS: the link is up (auto-negotiation, where the PHY does it, is done).
    pub const STATUS_LU: u32 = 1 << 1;
    /// EERD: start a read; the read is done (82540EM's bit positions).
    pub const EERD_START: u32 = 1 << 0;
    pub const EERD_DONE: u32 = 1 << 4;
    /// Interrupt causes: receive timer (a frame arrived), receiver overrun.
    pub const INT_RXT0: u32 = 1 << 7;
    pub const INT_RXO: u32 = 1 << 6;
    /// RCTL: enable, accept broadcast, 2 KiB buffers (size bits 0), strip the CRC.
    pub const RCTL_EN: u32 = 1 << 1;
    pub const RCTL_BAM: u32 = 1 << 15;
    pub const RCTL_SECRC: u32 = 1 << 26;
    /// TCTL: enable, pad short packets, collision threshold and distance (the manual's
    /// recommended 0x0f and 0x40 for full duplex).
    pub const TCTL_EN: u32 = 1 << 1;
    pub const TCTL_PSP: u32 = 1 << 3;
    pub const TCTL_CT: u32 = 0x0f << 4;
    pub const TCTL_COLD: u32 = 0x40 << 12;
    /// TIPG for copper (IPGT 10, IPGR1 8, IPGR2 6).
    pub const TIPG_COPPER: u32 = 10 | 8 << 10 | 6 << 20;
    /// RAH: address valid.
    pub const RAH_AV: u32 = 1 << 31;
}

/// Descriptors per ring (a multiple of 8: ring lengths are multiples of 128 bytes).
const RING: usize = 16;
const BUFFER: usize = 2048;

/// A legacy receive descriptor (manual 3.2.3).
#[repr(C)]
#[derive(Clone, Copy)]
struct RxDescriptor {
    address: u64,
    length: u16,
    checksum: u16,
    status: u8,
    errors: u8,
    special: u16,
}

/// A legacy transmit descriptor (manual 3.3.3).
#[repr(C)]
#[derive(Clone, Copy)]
struct TxDescriptor {
    address: u64,
    length: u16,
    checksum_offset: u8,
    command: u8,
    status: u8,
    checksum_start: u8,
    special: u16,
}

/// Descriptor status: done (written back by the NIC); end of packet.
const DESC_DD: u8 = 1 << 0;
const DESC_EOP: u8 = 1 << 1;
/// Transmit command: end of packet, insert FCS, report status.
const TX_EOP: u8 = 1 << 0;
const TX_IFCS: u8 = 1 << 1;
const TX_RS: u8 = 1 << 3;

/// Everything the NIC reads or writes by DMA, in the partition's RAM.
#[repr(C, align(4096))]
struct DmaArea {
    rx: [RxDescriptor; RING],
    tx: [TxDescriptor; RING],
    rx_buffers: [[u8; BUFFER]; RING],
    tx_buffers: [[u8; BUFFER]; RING],
}

/// The DMA area: the NIC's task alone touches it (and the NIC).
struct Dma(UnsafeCell<DmaArea>);

// SAFETY: only the NIC's task (one task on one CPU) ever accesses the area.
unsafe impl Sync for Dma {}

static DMA: Dma = Dma(UnsafeCell::new(DmaArea {
    rx: [RxDescriptor {
        address: 0,
        length: 0,
        checksum: 0,
        status: 0,
        errors: 0,
        special: 0,
    }; RING],
    tx: [TxDescriptor {
        address: 0,
        length: 0,
        checksum_offset: 0,
        command: 0,
        status: 0,
        checksum_start: 0,
        special: 0,
    }; RING],
    rx_buffers: [[0; BUFFER]; RING],
    tx_buffers: [[0; BUFFER]; RING],
}));

/// Finds the NIC, reads the options and attaches its line (init).
fn init(context: &Context<'static>) -> Result<(), Error> {
    match context.option("nic") {
        None => return Ok(()),
        Some("e1000") => {}
        Some(other) => {
            println!("nic: option nic={other}: expected nic=e1000");
            return Err(Error::InvalidArgument);
        }
    }
    TRACE.store(context.option("trace") == Some("on"), Ordering::Relaxed);
    if let Some(us) = context.number(APP.name, "nic_period_us", 100..=1_000_000)? {
        PERIOD_NS.store(us * 1000, Ordering::Relaxed);
    }
    let Some(function) = DEVICE_IDS.iter().find_map(|&d| pci::find(INTEL, d)) else {
        println!(
            "nic: the RT partition owns no 8254x NIC (PCI {INTEL:04x}:100e or 100f in partitions.rt.pci_devices)"
        );
        return Ok(());
    };
    let Some(registers) = function.memory_bar(0).filter(|b| b.size >= 0x2_0000) else {
        println!(
            "nic: {}: BAR 0 is not a 128 KiB memory BAR",
            function.address()
        );
        return Err(Error::InvalidArgument);
    };
    let Some(line) = pci::line(function) else {
        println!(
            "nic: {}: its INTx reaches no line of the RT partition",
            function.address()
        );
        return Err(Error::InvalidArgument);
    };
    // The function's own configuration space (under the hypervisor, exits allowed for the
    // partition's own functions, here at start-up) says what the boot information says.
    let id = pci::config_read(function, 0x00);
    let expected = u32::from(function.device_id) << 16 | u32::from(function.vendor_id);
    if id != expected {
        println!(
            "nic: {}: its configuration space reads {id:#010x}, not {expected:#010x}",
            function.address()
        );
        return Err(Error::InvalidArgument);
    }
    // A bus master's latency timer below 16 clocks is raised to 64, as PCI bus masters are
    // set up (the hypervisor lets a driver write it; a device without one reads 0 again).
    let header = pci::config_read(function, 0x0c);
    let latency = (header >> 8) & 0xff;
    if latency < 16 {
        pci::config_write(function, 0x0c, (header & 0x00ff_00ff) | 64 << 8);
        let now = (pci::config_read(function, 0x0c) >> 8) & 0xff;
        if now == 64 {
            println!(
                "nic: {}: latency timer raised from {latency} to 64 clocks",
                function.address()
            );
        } else {
            println!(
                "nic: {}: latency timer {latency}: wrote 64, the device keeps {now} (it has none)",
                function.address()
            );
        }
    }
    // The task runs on CPU 0 (`Cpu::First`).
    let Some(attached) = irq::attach_gsi(APP.name, line.gsi(), 0)? else {
        return Ok(());
    };
    report_found(function, line.gsi());
    NIC.call_once(|| Nic {
        registers: registers.base,
        attached,
    });
    Ok(())
}

fn report_found(function: &PciFunctionInfo, gsi: u32) {
    println!(
        "nic: {} ({:04x}:{:04x}) registers at {:#x}, INTx on IOAPIC pin {gsi}, a frame every {} us",
        function.address(),
        function.vendor_id,
        function.device_id,
        function.bars[0].base,
        PERIOD_NS.load(Ordering::Relaxed) / 1000
    );
}

/// The task's last cumulative counts: period (us), cycles, answered, late, lost, bad,
/// interrupts, and the kernel's share (top half to task) on average and at most.
static PUBLISHED: Published<9> = Published::new();

/// Prints the last summary (the report task of the NIC's CPU, at the lowest priority: the
/// round trips' statistics scan every bucket, work the driver's task never does, so that
/// the tasks below it keep their deadlines).
fn print_latest() {
    let Some(
        [
            period_us,
            cycles,
            answered,
            late,
            lost,
            bad,
            irqs,
            kernel_avg_ns,
            kernel_max_ns,
        ],
    ) = PUBLISHED.latest()
    else {
        return;
    };
    let h = ROUND_TRIPS.snapshot();
    let summary = CycleSummary {
        source: "e1000",
        period_us,
        cycles,
        answered,
        late,
        lost,
        bad,
        min_ns: h.min_ns().unwrap_or(0),
        avg_ns: h.average_ns().unwrap_or(0),
        max_ns: h.max_ns().unwrap_or(0),
        p99_ns: h.p99_ns().unwrap_or(0),
        p999_ns: h.p999_ns().unwrap_or(0),
        irqs,
        kernel_avg_ns,
        kernel_max_ns,
    };
    println!("{summary}");
    if TRACE.load(Ordering::Relaxed) {
        report::print_histogram(HistogramOwner::Device("e1000"), &h);
    }
}

/// The NIC's registers at `base`.
struct Regs(u64);

impl Regs {
    fn read(&self, offset: u64) -> u32 {
        // SAFETY: BAR 0 is the partition's (the hypervisor mapped it uncached and checked it
        // is 128 KiB); every offset used is an aligned 32-bit register inside it.
        unsafe { mmio::read_u32(self.0 + offset) }
    }

    fn write(&self, offset: u64, value: u32) {
        // SAFETY: as in `read`.
        unsafe { mmio::write_u32(self.0 + offset, value) }
    }
}

/// Reads EEPROM word `word` (the MAC is words 0 to 2); `None` if the read never completes.
fn eeprom_word(regs: &Regs, word: u32) -> Option<u16> {
    regs.write(reg::EERD, word << 8 | reg::EERD_START);
    for _ in 0..10_000 {
        let value = regs.read(reg::EERD);
        if value & reg::EERD_DONE != 0 {
            return Some((value >> 16) as u16);
        }
    }
    None
}

/// The rings and where the NIC finds them.
struct Rings {
    area: *mut DmaArea,
    rx_next: usize,
    tx_next: usize,
}

impl Rings {
    /// Fills the descriptors with their buffers' bus addresses and programs the NIC's ring
    /// registers; `None` when the area is not in one RAM region (cannot happen: it is one
    /// static).
    fn set_up(regs: &Regs) -> Option<Self> {
        let area = DMA.0.get();
        let base = pci::bus_address(area.cast(), core::mem::size_of::<DmaArea>())?;
        let start = area as u64;
        let offset = move |field: *const u8| base + (field as u64 - start);
        // SAFETY: the area is this task's alone (see `Dma`); the NIC's DMA is off until the
        // rings are programmed below.
        let dma = unsafe { &mut *area };
        for (d, buffer) in dma.rx.iter_mut().zip(&dma.rx_buffers) {
            *d = RxDescriptor {
                address: offset(buffer.as_ptr()),
                length: 0,
                checksum: 0,
                status: 0,
                errors: 0,
                special: 0,
            };
        }
        for (d, buffer) in dma.tx.iter_mut().zip(&dma.tx_buffers) {
            *d = TxDescriptor {
                address: offset(buffer.as_ptr()),
                length: 0,
                checksum_offset: 0,
                command: 0,
                // Free to use.
                status: DESC_DD,
                checksum_start: 0,
                special: 0,
            };
        }
        let rx = offset(dma.rx.as_ptr().cast());
        let tx = offset(dma.tx.as_ptr().cast());
        fence(Ordering::SeqCst);
        let ring_bytes = (RING * 16) as u32;
        regs.write(reg::RDBAL, rx as u32);
        regs.write(reg::RDBAH, (rx >> 32) as u32);
        regs.write(reg::RDLEN, ring_bytes);
        regs.write(reg::RDH, 0);
        regs.write(reg::RDT, (RING - 1) as u32);
        regs.write(reg::TDBAL, tx as u32);
        regs.write(reg::TDBAH, (tx >> 32) as u32);
        regs.write(reg::TDLEN, ring_bytes);
        regs.write(reg::TDH, 0);
        regs.write(reg::TDT, 0);
        Some(Self {
            area,
            rx_next: 0,
            tx_next: 0,
        })
    }

    /// Hands the NIC one frame; false when the ring is full (the NIC has not sent the
    /// descriptor's last frame yet).
    fn send(&mut self, regs: &Regs, frame: &[u8]) -> bool {
        let i = self.tx_next;
        // SAFETY: the descriptor and buffer are this task's; the NIC writes a descriptor's
        // status only after the tail passes it, read volatile below.
        unsafe {
            let d = &raw mut (*self.area).tx[i];
            if core::ptr::read_volatile(&raw const (*d).status) & DESC_DD == 0 {
                return false;
            }
            let buffer = &mut (*self.area).tx_buffers[i];
            buffer[..frame.len()].copy_from_slice(frame);
            core::ptr::write_volatile(
                d,
                TxDescriptor {
                    address: (*d).address,
                    length: frame.len() as u16,
                    checksum_offset: 0,
                    command: TX_EOP | TX_IFCS | TX_RS,
                    status: 0,
                    checksum_start: 0,
                    special: 0,
                },
            );
        }
        self.tx_next = (i + 1) % RING;
        fence(Ordering::SeqCst);
        regs.write(reg::TDT, self.tx_next as u32);
        true
    }

    /// Takes every frame the NIC has written, in order, giving each to `take`, and returns
    /// its descriptors to the NIC.
    fn receive(&mut self, regs: &Regs, mut take: impl FnMut(&[u8])) {
        loop {
            let i = self.rx_next;
            // SAFETY: as in `send`: the NIC writes the descriptor back (status last), then
            // this task reads it and the buffer, then gives both back by moving the tail.
            unsafe {
                let d = &raw mut (*self.area).rx[i];
                let status = core::ptr::read_volatile(&raw const (*d).status);
                if status & DESC_DD == 0 {
                    return;
                }
                fence(Ordering::SeqCst);
                let length = usize::from(core::ptr::read_volatile(&raw const (*d).length));
                if status & DESC_EOP != 0 {
                    let buffer = &(*self.area).rx_buffers[i];
                    take(&buffer[..length.min(BUFFER)]);
                }
                core::ptr::write_volatile(&raw mut (*d).status, 0);
            }
            self.rx_next = (i + 1) % RING;
            fence(Ordering::SeqCst);
            regs.write(reg::RDT, i as u32);
        }
    }
}

/// Sets the NIC up; its MAC, or a line saying why not.
fn set_up(regs: &Regs) -> Option<([u8; 6], Rings)> {
    regs.write(reg::IMC, u32::MAX);
    regs.read(reg::ICR);
    regs.write(reg::CTRL, regs.read(reg::CTRL) | reg::CTRL_SLU);
    let mut mac = [0u8; 6];
    for word in 0..3u32 {
        let Some(value) = eeprom_word(regs, word) else {
            println!("nic: the EEPROM does not answer: no MAC address");
            return None;
        };
        let at = 2 * word as usize;
        mac[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }
    regs.write(
        reg::RAL0,
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
    );
    regs.write(
        reg::RAH0,
        u32::from(u16::from_le_bytes([mac[4], mac[5]])) | reg::RAH_AV,
    );
    for i in 0..128 {
        regs.write(reg::MTA + 4 * i, 0);
    }
    let Some(rings) = Rings::set_up(regs) else {
        println!("nic: the DMA area is not in one RAM region");
        return None;
    };
    regs.write(reg::RCTL, reg::RCTL_EN | reg::RCTL_BAM | reg::RCTL_SECRC);
    regs.write(reg::TIPG, reg::TIPG_COPPER);
    regs.write(
        reg::TCTL,
        reg::TCTL_EN | reg::TCTL_PSP | reg::TCTL_CT | reg::TCTL_COLD,
    );
    regs.write(reg::IMS, reg::INT_RXT0 | reg::INT_RXO);
    Some((mac, rings))
}

/// The NIC's task: sets it up, then runs the cycles.
extern "C" fn task(_: usize) {
    let Some(nic) = NIC.get() else {
        return;
    };
    let regs = Regs(nic.registers);
    let Some((mac, mut rings)) = set_up(&regs) else {
        return;
    };
    // No frame before the link is up: a NIC without link holds what arrives (QEMU's model
    // negotiates for half a second and then hands over everything it queued meanwhile).
    let mut waited_ms = 0u64;
    while regs.read(reg::STATUS) & reg::STATUS_LU == 0 {
        if waited_ms > 0 && waited_ms.is_multiple_of(10_000) {
            println!("nic: no link after {} s, still waiting", waited_ms / 1000);
        }
        if api::sleep_for(1_000_000).is_err() {
            return;
        }
        waited_ms += 1;
    }
    println!(
        "nic: MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, link up, exchanging frames",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    );
    let period_ns = PERIOD_NS.load(Ordering::Relaxed);
    let mut exchange = Exchange::new();
    let mut irqs = 0u64;
    let mut next_cycle = api::now_ns();
    let mut next_report = next_cycle.saturating_add(1_000_000_000);
    loop {
        let sequence = exchange.start_cycle(api::now_ns());
        // A frame the NIC has no free descriptor for (it has not sent the ones before) is
        // not sent: its answer never comes, and the exchange counts it lost.
        let _sent = rings.send(&regs, &frame_exchange::request(mac, sequence));
        next_cycle = next_cycle.saturating_add(period_ns);
        // Handle the line until the next cycle; every wait first ends the interrupt before
        // (the NIC was quieted by reading ICR).
        loop {
            match nic.attached.wait(Timeout::Until(next_cycle)) {
                Ok(count) => {
                    irqs += count;
                    regs.read(reg::ICR);
                    rings.receive(&regs, |frame| {
                        let now = api::now_ns();
                        match frame_exchange::answered_sequence(frame, mac) {
                            Some(s) => {
                                if let Answer::InTime(ns) = exchange.answer(s, now) {
                                    ROUND_TRIPS.record(ns);
                                }
                            }
                            None => exchange.bad += 1,
                        }
                    });
                }
                Err(Error::TimedOut) => break,
                Err(e) => {
                    println!("nic: waiting for the line failed: {e}");
                    return;
                }
            }
        }
        let now = api::now_ns();
        // A cycle that overran (the task was held off longer than a period) starts late,
        // not twice.
        if next_cycle < now {
            next_cycle = now;
        }
        if now >= next_report {
            next_report = next_report.saturating_add(1_000_000_000).max(now);
            let kernel = nic.attached.stats();
            PUBLISHED.publish(&[
                period_ns / 1000,
                exchange.cycles,
                exchange.answered,
                exchange.late,
                exchange.lost,
                exchange.bad,
                irqs,
                kernel.latency_avg_ns,
                kernel.latency_max_ns,
            ]);
            report::request(APP.name);
        }
    }
}

// Frames are the Ethernet minimum: the NIC pads nothing the driver did not fill.
const _: () = assert!(FRAME_LEN <= BUFFER);
