//! The RT kernel's console: whole lines on the 16550 UART of `bulkhead-x86`, and the `log`
//! backend.
//!
//! Until the scheduler runs, lines go straight to the UART and the log channel (direct
//! mode). From then on a line is copied whole into its own CPU's ring
//! (`bulkhead_rt_core::line_ring`, interrupts off for that copy only, no lock: the CPU's ring
//! has one writer at a time) with a stamp from one counter, and CPU 0's idle task drains the
//! rings line by line, oldest stamp first, to the UART and then to the log channel, with
//! interrupts enabled: a UART sends about 11 bytes a millisecond at 115200 baud, and a line's
//! copy into the log channel is several microseconds; doing either with interrupts off would
//! cost real-time tasks that much latency. CPUs printing at once never wait for each other.
//! Lines never interleave; when a CPU's ring is full a line is dropped and counted, and once
//! the rings have emptied the console says so (`[... N console lines dropped: the console
//! fell behind]`). Fatal paths (exceptions, panics) switch back to direct mode, flush what is
//! buffered and write their report synchronously. A line longer than [`LINE_MAX`] is cut and
//! ends in `bulkhead_ring::log::CUT_MARKER`.
//!
//! Under the hypervisor, the UART may be the hypervisor's console too: each line goes out in
//! the console turn the two share (`bulkhead_abi::rt_boot::CONSOLE_TURN_GPA`), so their lines
//! never mix. The idle task's drain only tries for the turn (a line that finds the hypervisor
//! writing waits for the next drain); boot-time direct writes wait for it a bounded while.
//!
//! With `log=CHANNEL`, every line also goes into that `rt-to-linux` channel, one message per
//! line, for Linux's `bulkhead log rt` (`bulkhead_ring::log` owns the framing), in the order
//! of the UART and at its pace. The channel's send end, [`LOG`], is written by direct-mode
//! lines (with interrupts off), then only by the idle task's drain (interrupts on: nothing
//! else takes it, but for the fatal path, which only tries). It never waits for Linux: a line
//! that finds the channel full is dropped and counted, and the next one that fits follows a
//! `[... N lines dropped]` marker. Lines printed before the channel is opened at boot are
//! kept (up to `bulkhead_ring::log::EARLY_BYTES`) and sent first.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};

use bulkhead_rt_core::line_ring::{self, LineRing};

use bulkhead_abi::rt_boot::{CONSOLE_FREE, CONSOLE_RT, CONSOLE_TURN_GPA};

use bulkhead_ring::Producer;
use bulkhead_ring::log::{CUT_MARKER, LogWriter};
use bulkhead_x86::uart::Uart;
use spin::{Mutex, Once};

use crate::MAX_CPUS;
use crate::arch::IrqGuard;

/// COM1's standard I/O base.
pub const COM1: u16 = Uart::COM1;

/// Each CPU's ring: 16 KiB of lines.
const RING_WORDS: usize = 2048;
/// The longest line; longer ones are cut.
const LINE_MAX: usize = 320;
/// The longest block of lines written as one unit.
const BLOCK_MAX: usize = 2048;

static UART_BASE: AtomicU16 = AtomicU16::new(0);
static BUFFERED: AtomicBool = AtomicBool::new(false);
/// Lines dropped because the ring was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// How many of them the console has said it dropped.
static DROPPED_TOLD: AtomicU64 = AtomicU64::new(0);

/// Each CPU's buffered lines, on their way to CPU 0's drain.
static RINGS: [LineRing<RING_WORDS>; MAX_CPUS] = [const { LineRing::new() }; MAX_CPUS];
const _: () = assert!(LINE_MAX <= LineRing::<RING_WORDS>::MAX_LINE);
/// The next line's stamp, whichever CPU prints it: the order the drain restores.
static STAMPS: AtomicU64 = AtomicU64::new(0);
/// Held by the one context that drains the rings (their single consumer): CPU 0's idle task,
/// or a fatal path, which takes it anyway after a bounded wait.
static DRAINING: AtomicBool = AtomicBool::new(false);
/// Serialises direct-mode writers.
static DIRECT: Mutex<()> = Mutex::new(());
/// The log channel's send end (`log=CHANNEL`): every line also goes there.
static LOG: Mutex<LogWriter<'static>> = Mutex::new(LogWriter::new());

/// A fixed buffer that formats text and cuts what does not fit.
#[derive(Debug)]
pub struct TextBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Text was cut.
    cut: bool,
}

impl<const N: usize> TextBuf<N> {
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            cut: false,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text so far (whole characters only: a cut never splits one).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(self.bytes()) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl<const N: usize> Write for TextBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            // Keep room for a final newline.
            if self.len + 1 >= N {
                self.cut = true;
                break;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Writes the console to the UART at `base`, or silences it with `None`, and installs the
/// logger. With `program`, the UART is set up first (115200 baud, 8N1, FIFOs on, interrupts
/// off): in bare mode. Under the hypervisor the port is already set up and may be shared
/// with the hypervisor's own console, whose output a divisor-latch write in the middle would
/// corrupt (and slow to a crawl, where the emulator models the baud rate).
pub fn init(base: Option<u16>, program: bool) {
    if let (Some(base), true) = (base, program) {
        // SAFETY: in bare mode the console UART (COM1) belongs to the kernel.
        unsafe { Uart::init(base) };
    }
    UART_BASE.store(base.unwrap_or(0), Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// The console turn shared with the hypervisor (under the hypervisor only).
static TURN: Once<&'static AtomicU32> = Once::new();

/// Under the hypervisor: from now on lines go out in the console turn it shares.
pub fn take_turns_with_hypervisor() {
    // SAFETY: under the hypervisor (the caller checks) the word at CONSOLE_TURN_GPA is this
    // partition's RAM, identity-mapped, zeroed by the loader and reserved for it by the boot
    // protocol (below the kernel's image, outside every segment); the hypervisor reaches it
    // only through atomics too, and any value is a valid `AtomicU32`.
    TURN.call_once(|| unsafe { &*(CONSOLE_TURN_GPA as *const AtomicU32) });
}

/// Takes the console turn, trying `tries` times; `Ok(None)` without a shared console,
/// `Err(())` when the hypervisor kept it.
fn take_turn(tries: u32) -> Result<Option<&'static AtomicU32>, ()> {
    let Some(&turn) = TURN.get() else {
        return Ok(None);
    };
    for _ in 0..tries {
        if turn
            .compare_exchange(CONSOLE_FREE, CONSOLE_RT, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(Some(turn));
        }
        core::hint::spin_loop();
    }
    Err(())
}

fn give_turn(turn: Option<&'static AtomicU32>) {
    if let Some(turn) = turn {
        turn.store(CONSOLE_FREE, Ordering::Release);
    }
}

/// Boot-time (direct) writes wait this many tries for the turn, then write anyway.
const DIRECT_TURN_TRIES: u32 = 1_000_000;

fn put_bytes(bytes: &[u8]) {
    let base = UART_BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: `UART_BASE` only ever holds the kernel's console port, programmed in `init`.
    unsafe { Uart::at(base) }.write_bytes(bytes);
}

/// One line to the UART and the log channel: into this CPU's ring once buffered (the drain
/// takes it to both), else to each in its own interrupts-off section, a copy of the line long.
fn emit(bytes: &[u8]) {
    let _irq = IrqGuard::new();
    if BUFFERED.load(Ordering::Acquire) {
        let ring = &RINGS[crate::percpu::current_index()];
        if ring.push(bytes, STAMPS.fetch_add(1, Ordering::Relaxed)).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        LOG.lock().write_bytes(bytes);
        let _lock = DIRECT.lock();
        let turn = take_turn(DIRECT_TURN_TRIES).unwrap_or(None);
        put_bytes(bytes);
        give_turn(turn);
    }
}

/// Writes one line (a newline is added).
pub fn write_line(args: fmt::Arguments<'_>) {
    let mut line = TextBuf::<LINE_MAX>::new();
    let _ = line.write_fmt(args);
    if line.cut {
        let mark = CUT_MARKER.as_bytes();
        let at = line.len.min(LINE_MAX - 1 - mark.len());
        line.buf[at..at + mark.len()].copy_from_slice(mark);
        line.len = at + mark.len();
    }
    line.buf[line.len] = b'\n';
    line.len += 1;
    emit(line.bytes());
}

/// From now on, every line also goes to `producer`, the send end of the log channel
/// (`log=CHANNEL`); the lines kept since boot go first.
pub fn attach_log(producer: Producer<'static>) {
    let _irq = IrqGuard::new();
    LOG.lock().attach(producer);
}

/// There is no log channel: lines go to the UART only (the lines kept since boot are
/// forgotten).
pub fn log_off() {
    let _irq = IrqGuard::new();
    LOG.lock().off();
}

/// From now on, lines go through the ring (called when the scheduler starts).
pub fn start_buffering() {
    // The lines dropped before are said at boot (`online`).
    DROPPED_TOLD.store(DROPPED.load(Ordering::Relaxed), Ordering::Relaxed);
    BUFFERED.store(true, Ordering::Release);
}

/// Moves the next buffered line to the UART with interrupts enabled, in the console turn
/// when it is shared; CPU 0's idle task calls it. Returns whether it wrote anything (not
/// when the rings are empty, nor when the hypervisor has the turn: then a later call writes).
pub fn drain() -> bool {
    if DRAINING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    let wrote = drain_line(1) || announce_dropped();
    DRAINING.store(false, Ordering::Release);
    wrote
}

/// Once the rings are empty: says how many lines were dropped since it last said so (a line
/// that found its ring full is lost, and the reader must know). Returns whether it said so.
fn announce_dropped() -> bool {
    let dropped = DROPPED.load(Ordering::Relaxed);
    let told = DROPPED_TOLD.swap(dropped, Ordering::Relaxed);
    if dropped == told {
        return false;
    }
    write_line(format_args!(
        "[... {} console lines dropped: the console fell behind]",
        dropped.wrapping_sub(told)
    ));
    true
}

/// [`drain`], trying `tries` times for the turn (the caller holds [`DRAINING`]).
fn drain_line(tries: u32) -> bool {
    let Some(ring) = line_ring::oldest(RINGS.iter().map(LineRing::front)).map(|cpu| &RINGS[cpu])
    else {
        return false;
    };
    // The line stays in its ring (only the drain frees room) until it is written.
    let mut line = [0u8; LINE_MAX];
    let Some(front) = ring.read_front(&mut line) else {
        return false;
    };
    let line = &line[..front.len.min(LINE_MAX)];
    let Ok(turn) = take_turn(tries) else {
        return false;
    };
    put_bytes(line);
    give_turn(turn);
    // Interrupts stay on: in buffered mode only this drain writes the log channel. Only
    // tried: the fatal path drains too, and the lock's holder may be what failed.
    if let Some(mut log) = LOG.try_lock() {
        log.write_bytes(line);
    }
    ring.pop();
    true
}

/// Lines dropped because the ring was full.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The fatal path: back to direct mode, flush the rings (taking the drain's place from CPU
/// 0's idle task after a bounded wait: it may be what failed), then write `block`
/// synchronously.
pub fn fatal_block(block: impl FnOnce(&mut dyn Write) -> fmt::Result) {
    let _irq = IrqGuard::new();
    BUFFERED.store(false, Ordering::Release);
    for _ in 0..100_000 {
        if DRAINING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            break;
        }
        core::hint::spin_loop();
    }
    DRAINING.store(true, Ordering::Relaxed);
    if DIRECT.is_locked() {
        // SAFETY: as above.
        unsafe { DIRECT.force_unlock() };
    }
    while drain_line(DIRECT_TURN_TRIES) {}
    let mut text = TextBuf::<BLOCK_MAX>::new();
    let _ = block(&mut text);
    let turn = take_turn(DIRECT_TURN_TRIES).unwrap_or(None);
    put_bytes(text.bytes());
    give_turn(turn);
    // The log channel too, unless its lock stays taken (its holder may be the code that
    // failed; it is never broken, so that a torn writer is not used again).
    for _ in 0..10_000 {
        if let Some(mut log) = LOG.try_lock() {
            log.write_bytes(text.bytes());
            break;
        }
        core::hint::spin_loop();
    }
}

/// Prints one line on the RT kernel's console (and its log channel): whole, never waiting
/// for the UART. Formatting costs the caller, so urgent tasks leave it to the report task
/// (`bulkhead_rt::report`).
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::__console_line(format_args!($($arg)*))
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
            write_line(format_args!(
                "[{:<5} cpu{}] {}",
                record.level(),
                crate::percpu::current_index(),
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}
