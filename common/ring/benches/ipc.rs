//! IPC benchmark: the channel ring against baselines, in one run, on two threads pinned to CPUs
//! 0 and 1, for 8 B, 64 B, 1 KiB and 64 KiB messages (the largest is a 64 KiB slot's payload,
//! 65528 bytes, for every transport):
//!
//! - latency (p50, p99, p99.9, max) of a ping-pong: one-way, from the send on CPU 0 to the
//!   receive on CPU 1 (both read the one monotonic clock, which Linux keeps in step across
//!   CPUs), and the round trip, back on CPU 0;
//! - throughput (messages/s and MB/s, one direction, as fast as the consumer drains).
//!
//! Transports: a cache-line ping-pong of two atomics (the physical floor; latency only), the ring
//! busy-polling, the ring blocking on futex doorbells (event suppression: a futex call only when
//! the peer armed its doorbell), `rtrb` (a well-kept SPSC byte ring, busy-polling), a POSIX
//! message queue, a Unix pipe and a Unix `SOCK_SEQPACKET` socketpair (the last three blocking in
//! the kernel). A transport that cannot carry a size on this system (a message queue above
//! `/proc/sys/fs/mqueue/msgsize_max` when the limit may not be raised) gets an `n/a (why)` row;
//! it never stops the run.
//!
//! `cargo xtask bench ipc [--quick] [--only WORD] [--latency | --throughput]`, or the same
//! arguments after `cargo bench -p bulkhead-ring --bench ipc --`; the default run takes well
//! under a minute (each measurement stops after a second). Ratios are ring (busy-polling) / transport:
//! for latency, below 1 means the ring is faster; for throughput, above 1 means the ring is
//! faster.

use std::ffi::CString;
use std::hint::spin_loop;
use std::io;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bulkhead_ring::{
    Armed, Consumer, HEADER_SIZE, HeapRegion, MAX_SLOT_SIZE, Notify, Producer, Ring, RingError,
    SLOT_HEADER_SIZE,
};

/// Message sizes: 8 B, 64 B, 1 KiB, and what a 64 KiB slot holds.
const SIZES: [usize; 4] = [8, 64, 1024, MAX_SLOT_SIZE as usize - SLOT_HEADER_SIZE];

// ---------------------------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------------------------

/// One direction of a transport: the sending half.
trait Tx: Send {
    fn send(&mut self, msg: &[u8]);
}

/// One direction of a transport: the receiving half; returns the message length.
trait Rx: Send {
    fn recv(&mut self, buf: &mut [u8]) -> usize;
}

/// A one-way link.
type Link = (Box<dyn Tx>, Box<dyn Rx>);

/// Why a transport cannot run a measurement on this system (printed as `n/a (why)`).
type NotAvailable = String;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Atomics,
    Ring,
    RingFutex,
    Rtrb,
    Mqueue,
    Pipe,
    Socketpair,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Atomics,
        Kind::Ring,
        Kind::RingFutex,
        Kind::Rtrb,
        Kind::Mqueue,
        Kind::Pipe,
        Kind::Socketpair,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Atomics => "atomics ping-pong",
            Kind::Ring => "ring (spin)",
            Kind::RingFutex => "ring (futex doorbell)",
            Kind::Rtrb => "rtrb (spin)",
            Kind::Mqueue => "posix mqueue",
            Kind::Pipe => "pipe",
            Kind::Socketpair => "socketpair seqpacket",
        }
    }

    /// A one-way link for messages of `size` bytes.
    fn link(self, size: usize) -> Result<Link, NotAvailable> {
        Ok(match self {
            Kind::Atomics => unreachable!("the atomics ping-pong has its own loop"),
            Kind::Ring => ring_link(size, false),
            Kind::RingFutex => ring_link(size, true),
            Kind::Rtrb => rtrb_link(size),
            Kind::Mqueue => return mq_link(size),
            Kind::Pipe => fd_link(size, false),
            Kind::Socketpair => fd_link(size, true),
        })
    }
}

/// Slot size and count for messages of `size` bytes: about 256 KiB of slots, at least 16.
fn ring_shape(size: usize) -> (u32, usize) {
    let slot = (size + SLOT_HEADER_SIZE).next_power_of_two().max(16) as u32;
    let slots = (256 * 1024 / slot as usize).max(16);
    (slot, slots)
}

// --- the ring ---------------------------------------------------------------------------------

/// A futex-backed binary semaphore: the doorbell the Linux side would ring.
#[derive(Default)]
struct Bell(AtomicU32);

impl Bell {
    fn ring(&self) {
        self.0.store(1, Release);
        // SAFETY: FUTEX_WAKE on a live, aligned u32; the kernel only reads the address.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.0.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
        }
    }

    fn wait(&self) {
        while self.0.swap(0, Acquire) == 0 {
            // SAFETY: FUTEX_WAIT on a live, aligned u32 with no timeout; returns at once if the
            // word is no longer 0.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.0.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    0,
                    std::ptr::null::<libc::timespec>(),
                );
            }
        }
    }
}

/// A ring, its memory, and the two doorbells (to the consumer, to the producer).
struct RingShared {
    heap: HeapRegion,
    to_consumer: Bell,
    to_producer: Bell,
}

struct RingTx {
    shared: &'static RingShared,
    tx: Producer<'static>,
    block: bool,
}

struct RingRx {
    shared: &'static RingShared,
    rx: Consumer<'static>,
    block: bool,
}

fn ring_link(size: usize, block: bool) -> Link {
    let (slot, slots) = ring_shape(size);
    // Leaked: a benchmark makes a few dozen links of at most a few MiB, and both threads need
    // the region for as long as they run.
    let shared: &'static RingShared = Box::leak(Box::new(RingShared {
        heap: HeapRegion::new(HEADER_SIZE + slots * slot as usize),
        to_consumer: Bell::default(),
        to_producer: Bell::default(),
    }));
    let (tx, rx) = Ring::init(shared.heap.region().expect("region"), slot)
        .expect("init")
        .split();
    (
        Box::new(RingTx { shared, tx, block }),
        Box::new(RingRx { shared, rx, block }),
    )
}

impl Tx for RingTx {
    fn send(&mut self, msg: &[u8]) {
        loop {
            match self.tx.try_send(msg, 0) {
                Ok(Notify::Doorbell) => return self.shared.to_consumer.ring(),
                Ok(Notify::Suppressed) => return,
                Err(RingError::WouldBlock) if self.block => {
                    if self.tx.arm_doorbell().expect("arm") == Armed::Sleep {
                        self.shared.to_producer.wait();
                    }
                }
                Err(RingError::WouldBlock) => spin_loop(),
                Err(e) => panic!("ring send: {e}"),
            }
        }
    }
}

impl Rx for RingRx {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        loop {
            match self.rx.try_receive(buf) {
                Ok(m) => {
                    if m.notify.needed() {
                        self.shared.to_producer.ring();
                    }
                    return m.len;
                }
                Err(RingError::WouldBlock) if self.block => {
                    if self.rx.arm_doorbell().expect("arm") == Armed::Sleep {
                        self.shared.to_consumer.wait();
                    }
                }
                Err(RingError::WouldBlock) => spin_loop(),
                Err(e) => panic!("ring receive: {e}"),
            }
        }
    }
}

// --- rtrb -------------------------------------------------------------------------------------

struct RtrbTx(rtrb::Producer<u8>);
struct RtrbRx(rtrb::Consumer<u8>);

fn rtrb_link(size: usize) -> Link {
    let (slot, slots) = ring_shape(size);
    let (tx, rx) = rtrb::RingBuffer::new(slot as usize * slots);
    (Box::new(RtrbTx(tx)), Box::new(RtrbRx(rx)))
}

impl Tx for RtrbTx {
    fn send(&mut self, msg: &[u8]) {
        let mut chunk = loop {
            match self.0.write_chunk(msg.len()) {
                Ok(chunk) => break chunk,
                Err(_) => spin_loop(),
            }
        };
        let (a, b) = chunk.as_mut_slices();
        let (first, second) = msg.split_at(a.len());
        a.copy_from_slice(first);
        b.copy_from_slice(second);
        chunk.commit_all();
    }
}

impl Rx for RtrbRx {
    /// Messages have a fixed size per run, so the buffer's length is the message's.
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let chunk = loop {
            match self.0.read_chunk(buf.len()) {
                Ok(chunk) => break chunk,
                Err(_) => spin_loop(),
            }
        };
        let (a, b) = chunk.as_slices();
        buf[..a.len()].copy_from_slice(a);
        buf[a.len()..].copy_from_slice(b);
        chunk.commit_all();
        buf.len()
    }
}

// --- POSIX message queues ---------------------------------------------------------------------

/// One end of a POSIX message queue: a send or a receive descriptor.
struct Mq(libc::mqd_t);

impl Drop for Mq {
    fn drop(&mut self) {
        // SAFETY: this struct owns the descriptor and closes it once.
        unsafe {
            libc::mq_close(self.0);
        }
    }
}

/// A limit from `/proc/sys/fs/mqueue` (`msg_max`, `msgsize_max`), if it can be read.
fn mq_limit(name: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How many messages of `size` bytes a queue holds: as many as an unprivileged process may ask
/// for (`msg_max`, usually 10), fewer where `RLIMIT_MSGQUEUE` (the bytes of every queue a user
/// has open, messages and bookkeeping) would not cover the two queues of a ping-pong.
fn mq_depth(size: usize) -> usize {
    // SAFETY: a zeroed rlimit is valid; getrlimit writes inside it.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `limit` is a live rlimit.
    let bytes = if unsafe { libc::getrlimit(libc::RLIMIT_MSGQUEUE, &mut limit) } == 0 {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        800 * 1024
    };
    let msg_max = mq_limit("msg_max").unwrap_or(10);
    msg_max.min(bytes / 3 / (size + 128)).max(1)
}

/// A `/proc/sys` value raised for as long as this lives, then put back.
struct Raised {
    path: String,
    old: String,
}

impl Raised {
    /// Raises `path` to `value`; `None` if it may not be written (not root).
    fn new(path: String, value: usize) -> Option<Raised> {
        let old = std::fs::read_to_string(&path).ok()?;
        std::fs::write(&path, value.to_string()).ok()?;
        Some(Raised { path, old })
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, self.old.trim()) {
            eprintln!(
                "warning: cannot restore {} to {}: {e}",
                self.path,
                self.old.trim()
            );
        }
    }
}

/// A queue for messages of `size` bytes, opened at both ends. The name is unlinked as soon as
/// both ends are open: the queue lives on until both are closed, and no name outlives the run,
/// however the run ends.
fn mq_pair(size: usize, depth: usize) -> io::Result<Link> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = CString::new(format!(
        "/bulkhead-ipc-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Relaxed)
    ))
    .expect("no NUL in the name");
    // SAFETY: a zeroed mq_attr is valid (no flags, no messages).
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = depth as libc::c_long;
    attr.mq_msgsize = size as libc::c_long;
    // SAFETY: `name` is a NUL-terminated string and `attr` a live mq_attr; the variadic mode and
    // attribute arguments are the ones O_CREAT requires.
    let rx = unsafe {
        libc::mq_open(
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600 as libc::mode_t,
            &raw const attr,
        )
    };
    if rx < 0 {
        return Err(io::Error::last_os_error());
    }
    let rx = Mq(rx);
    // SAFETY: `name` is a NUL-terminated string; without O_CREAT no more arguments are read.
    let tx = unsafe { libc::mq_open(name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    let error = io::Error::last_os_error();
    // SAFETY: `name` is a NUL-terminated string naming the queue this function created.
    unsafe {
        libc::mq_unlink(name.as_ptr());
    }
    if tx < 0 {
        return Err(error);
    }
    Ok((Box::new(Mq(tx)), Box::new(rx)))
}

/// A message queue link; `Err` when the system's limits do not allow messages of `size` bytes.
fn mq_link(size: usize) -> Result<Link, NotAvailable> {
    let depth = mq_depth(size);
    match mq_pair(size, depth) {
        // Without CAP_SYS_RESOURCE a queue's message size may not exceed `msgsize_max` (8192
        // by default). Root may raise the limit: only for the open, which is where it counts.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let Some(max) = mq_limit("msgsize_max").filter(|&max| size > max) else {
                return Err(format!("mq_open: {e}"));
            };
            let raised = Raised::new("/proc/sys/fs/mqueue/msgsize_max".into(), size);
            let Some(_raised) = raised else {
                return Err(format!("msgsize_max {max}"));
            };
            mq_pair(size, depth).map_err(|e| format!("msgsize_max {max}: mq_open: {e}"))
        }
        other => other.map_err(|e| format!("mq_open: {e}")),
    }
}

impl Tx for Mq {
    fn send(&mut self, msg: &[u8]) {
        loop {
            // SAFETY: `msg` is a live buffer of `msg.len()` bytes.
            if unsafe { libc::mq_send(self.0, msg.as_ptr().cast(), msg.len(), 0) } == 0 {
                return;
            }
            let e = io::Error::last_os_error();
            assert_eq!(e.kind(), io::ErrorKind::Interrupted, "mq_send: {e}");
        }
    }
}

impl Rx for Mq {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        loop {
            // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes (the queue's message
            // size); the priority pointer may be null.
            let n = unsafe {
                libc::mq_receive(
                    self.0,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                return n as usize;
            }
            let e = io::Error::last_os_error();
            assert_eq!(e.kind(), io::ErrorKind::Interrupted, "mq_receive: {e}");
        }
    }
}

// --- pipe and socketpair ----------------------------------------------------------------------

struct Fd {
    fd: libc::c_int,
    /// Whether the fd keeps message boundaries (seqpacket) or is a byte stream (pipe).
    packets: bool,
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: this struct owns the descriptor and closes it once.
        unsafe {
            libc::close(self.fd);
        }
    }
}

fn fd_link(size: usize, socketpair: bool) -> Link {
    let mut fds = [0 as libc::c_int; 2];
    if socketpair {
        // SAFETY: `fds` has room for the two descriptors the call writes.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0, "socketpair");
        let bytes = (4 * size).max(256 * 1024) as libc::c_int;
        for fd in fds {
            for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
                // SAFETY: `bytes` is a live c_int and its size is passed.
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        opt,
                        (&raw const bytes).cast(),
                        size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
            }
        }
        (
            Box::new(Fd {
                fd: fds[0],
                packets: true,
            }),
            Box::new(Fd {
                fd: fds[1],
                packets: true,
            }),
        )
    } else {
        // SAFETY: `fds` has room for the two descriptors the call writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        // Read end first in `fds`: fds[0] reads, fds[1] writes.
        (
            Box::new(Fd {
                fd: fds[1],
                packets: false,
            }),
            Box::new(Fd {
                fd: fds[0],
                packets: false,
            }),
        )
    }
}

impl Tx for Fd {
    fn send(&mut self, msg: &[u8]) {
        let mut done = 0;
        while done < msg.len() {
            let rest = &msg[done..];
            // SAFETY: `rest` is a live buffer of `rest.len()` bytes.
            let n = unsafe { libc::write(self.fd, rest.as_ptr().cast(), rest.len()) };
            assert!(n > 0, "write: {}", std::io::Error::last_os_error());
            assert!(!self.packets || n as usize == msg.len(), "short packet");
            done += n as usize;
        }
    }
}

impl Rx for Fd {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        if self.packets {
            // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            assert!(n >= 0, "read: {}", std::io::Error::last_os_error());
            return n as usize;
        }
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: `rest` is a live, writable buffer of `rest.len()` bytes.
            let n = unsafe { libc::read(self.fd, rest.as_mut_ptr().cast(), rest.len()) };
            assert!(n > 0, "read: {}", std::io::Error::last_os_error());
            done += n as usize;
        }
        done
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------------

/// Online CPUs (not this thread's affinity mask, which pinning narrows).
fn online_cpus() -> usize {
    // SAFETY: sysconf only reads system information.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Pins the calling thread to `cpu` if the machine has two CPUs; returns whether it did.
fn pin(cpu: usize) -> bool {
    if online_cpus() < 2 {
        return false;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE; CPU_SET writes inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t and its size is passed; pid 0 is this thread.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Each measurement stops after this long even if it has not done all its rounds (on a busy
/// machine a spinning thread can lose its CPU for a whole scheduler tick per round trip).
const BUDGET: Duration = Duration::from_millis(1000);

/// The sequence number at the start of a message; `END` tells the other thread to stop.
const END: u64 = u64::MAX;

fn stamp(msg: &mut [u8], seq: u64) {
    msg[..8].copy_from_slice(&seq.to_le_bytes());
}

fn seq_of(msg: &[u8]) -> u64 {
    u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"))
}

/// Latencies of one measurement in nanoseconds, each sorted.
struct Latency {
    /// From the send on CPU 0 to the receive on CPU 1.
    one_way: Vec<u64>,
    /// From the send on CPU 0 to the echo's receive there.
    round_trip: Vec<u64>,
}

impl Latency {
    /// From the time each message was sent and the time the echo thread received it, and the
    /// round trips, all over the same rounds; drops the first `warmup`.
    fn new(
        sent: &[Duration],
        arrived: &[Duration],
        round_trip: &[Duration],
        warmup: usize,
    ) -> Self {
        let ns = |d: Duration| d.as_nanos() as u64;
        let mut one_way: Vec<u64> = sent
            .iter()
            .zip(arrived)
            .skip(warmup)
            .map(|(&t0, &t1)| ns(t1.saturating_sub(t0)))
            .collect();
        let mut round_trip: Vec<u64> = round_trip.iter().skip(warmup).map(|&d| ns(d)).collect();
        one_way.sort_unstable();
        round_trip.sort_unstable();
        Latency {
            one_way,
            round_trip,
        }
    }
}

/// A ping-pong of up to `rounds` messages after a warm-up: CPU 0 sends, CPU 1 echoes. Times are
/// read from one clock, as offsets from one `Instant` both threads share.
fn latency(kind: Kind, size: usize, rounds: usize) -> Result<Latency, NotAvailable> {
    let warmup = rounds / 20 + 100;
    if kind == Kind::Atomics {
        return Ok(atomics_latency(rounds, warmup));
    }
    let (mut a_tx, mut b_rx) = kind.link(size)?;
    let (mut b_tx, mut a_rx) = kind.link(size)?;
    let base = Instant::now();
    let echo = thread::spawn(move || {
        pin(1);
        let mut buf = vec![0u8; size];
        let mut arrived = Vec::with_capacity(rounds + warmup);
        loop {
            let n = b_rx.recv(&mut buf);
            let t1 = base.elapsed();
            b_tx.send(&buf[..n]);
            if seq_of(&buf) == END {
                return arrived;
            }
            arrived.push(t1);
        }
    });
    pin(0);
    let mut msg = vec![0xa5u8; size];
    let mut buf = vec![0u8; size];
    let mut sent = Vec::with_capacity(rounds + warmup);
    let mut round_trip = Vec::with_capacity(rounds + warmup);
    let start = base.elapsed();
    for i in 0..(rounds + warmup) as u64 {
        stamp(&mut msg, i);
        let t0 = base.elapsed();
        a_tx.send(&msg);
        let n = a_rx.recv(&mut buf);
        let t2 = base.elapsed();
        assert_eq!((n, seq_of(&buf)), (size, i), "{}: bad echo", kind.name());
        sent.push(t0);
        round_trip.push(t2 - t0);
        if t2 - start > BUDGET {
            break;
        }
    }
    stamp(&mut msg, END);
    a_tx.send(&msg);
    a_rx.recv(&mut buf);
    let arrived = echo.join().expect("echo thread");
    Ok(Latency::new(&sent, &arrived, &round_trip, warmup))
}

/// Two cache lines, one written by each thread.
#[repr(C, align(128))]
struct Line(AtomicU64);

fn atomics_latency(rounds: usize, warmup: usize) -> Latency {
    let lines = Arc::new([Line(AtomicU64::new(0)), Line(AtomicU64::new(0))]);
    let l = lines.clone();
    let base = Instant::now();
    let echo = thread::spawn(move || {
        pin(1);
        let mut last = 0;
        let mut arrived = Vec::with_capacity(rounds + warmup);
        loop {
            let i = loop {
                let i = l[0].0.load(Acquire);
                if i != last {
                    break i;
                }
                spin_loop();
            };
            let t1 = base.elapsed();
            l[1].0.store(i, Release);
            if i == END {
                return arrived;
            }
            arrived.push(t1);
            last = i;
        }
    });
    pin(0);
    let mut sent = Vec::with_capacity(rounds + warmup);
    let mut round_trip = Vec::with_capacity(rounds + warmup);
    let start = base.elapsed();
    for i in 1..=(rounds + warmup) as u64 {
        let t0 = base.elapsed();
        lines[0].0.store(i, Release);
        while lines[1].0.load(Acquire) != i {
            spin_loop();
        }
        let t2 = base.elapsed();
        sent.push(t0);
        round_trip.push(t2 - t0);
        if t2 - start > BUDGET {
            break;
        }
    }
    lines[0].0.store(END, Release);
    let arrived = echo.join().expect("echo thread");
    Latency::new(&sent, &arrived, &round_trip, warmup)
}

/// Sends up to `count` messages one way (fewer if the time budget runs out); returns how many
/// were received and how long that took.
fn throughput(kind: Kind, size: usize, count: usize) -> Result<(usize, Duration), NotAvailable> {
    let (mut tx, mut rx) = kind.link(size)?;
    let start = Arc::new(Barrier::new(2));
    let go = start.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let sender = thread::spawn(move || {
        pin(1);
        let mut msg = vec![0x5au8; size];
        go.wait();
        for i in 0..count as u64 {
            if stopped.load(Relaxed) {
                break;
            }
            stamp(&mut msg, i);
            tx.send(&msg);
        }
        stamp(&mut msg, END);
        tx.send(&msg);
        tx
    });
    pin(0);
    let mut buf = vec![0u8; size];
    start.wait();
    let t0 = Instant::now();
    let mut received = 0;
    loop {
        rx.recv(&mut buf);
        let seq = seq_of(&buf);
        if seq == END {
            break;
        }
        assert_eq!(seq, received as u64, "{}: out of order", kind.name());
        received += 1;
        if received % 256 == 0 && t0.elapsed() > BUDGET {
            stop.store(true, Relaxed);
        }
    }
    let elapsed = t0.elapsed();
    drop(sender.join().expect("sender thread"));
    Ok((received, elapsed))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(i.min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

fn size_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// p50, p99, p99.9 and max of sorted samples.
fn percentiles(sorted: &[u64]) -> [u64; 4] {
    [0.5, 0.99, 0.999, 1.0].map(|p| pct(sorted, p))
}

/// `ring / x`, two decimals.
fn ratio(ring: f64, x: f64) -> String {
    format!("{:.2}", ring / x.max(f64::MIN_POSITIVE))
}

/// Latency of every selected transport for every size; the ring (spin) is measured first at
/// each size so that every row, the floor's included, has its ratios.
fn latency_table(scale: usize, selected: &dyn Fn(&Kind) -> bool) {
    println!(
        "latency, ns: one-way = sent on CPU 0 to received on CPU 1; round trip = back on CPU 0"
    );
    println!(
        "{:>8}  {:<22} {:>7}  {:<35}  {:<35}  ring/x",
        "", "", "", "one-way", "round trip"
    );
    println!(
        "{:>8}  {:<22} {:>7}  {:>8} {:>8} {:>8} {:>8}  {:>8} {:>8} {:>8} {:>8}  {:>6} {:>6} {:>6}",
        "size",
        "transport",
        "samples",
        "p50",
        "p99",
        "p99.9",
        "max",
        "p50",
        "p99",
        "p99.9",
        "max",
        "1w p50",
        "1w p99",
        "rt p50"
    );
    for size in SIZES {
        let rounds = if size > 4096 { 10_000 } else { 100_000 } / scale;
        let ring = latency(Kind::Ring, size, rounds).expect("the ring runs everywhere");
        let ring_one_way = percentiles(&ring.one_way);
        let ring_round_trip = percentiles(&ring.round_trip);
        for kind in Kind::ALL.into_iter().filter(|k| selected(k)) {
            let label = if kind == Kind::Atomics {
                "(8 B)".to_string()
            } else {
                size_name(size)
            };
            let measured;
            let l = match kind {
                Kind::Ring => &ring,
                _ => match latency(kind, size, rounds) {
                    Ok(l) => {
                        measured = l;
                        &measured
                    }
                    Err(why) => {
                        println!("{label:>8}  {:<22} n/a ({why})", kind.name());
                        continue;
                    }
                },
            };
            let one_way = percentiles(&l.one_way);
            let round_trip = percentiles(&l.round_trip);
            let ratios = if kind == Kind::Ring {
                [String::new(), String::new(), String::new()]
            } else {
                [
                    ratio(ring_one_way[0] as f64, one_way[0] as f64),
                    ratio(ring_one_way[1] as f64, one_way[1] as f64),
                    ratio(ring_round_trip[0] as f64, round_trip[0] as f64),
                ]
            };
            let [a, b, c, d] = one_way;
            let [e, f, g, h] = round_trip;
            let [r1, r2, r3] = ratios;
            println!(
                "{label:>8}  {:<22} {:>7}  {a:>8} {b:>8} {c:>8} {d:>8}  {e:>8} {f:>8} {g:>8} {h:>8}  \
                 {r1:>6} {r2:>6} {r3:>6}",
                kind.name(),
                l.one_way.len(),
            );
        }
    }
}

/// Throughput of every selected transport but the ping-pong for every size.
fn throughput_table(scale: usize, selected: &dyn Fn(&Kind) -> bool) {
    println!("throughput, one direction");
    println!(
        "{:>8}  {:<22} {:>10} {:>12} {:>10}   {:>10}",
        "size", "transport", "messages", "msgs/s", "MB/s", "ring/x"
    );
    for size in SIZES {
        let count = (1_000_000usize).min((1usize << 30) / size).max(4096) / scale;
        let mut ring_rate = None;
        for kind in Kind::ALL
            .into_iter()
            .filter(|k| *k != Kind::Atomics && selected(k))
        {
            let (count, t) = match throughput(kind, size, count) {
                Ok(m) => m,
                Err(why) => {
                    println!("{:>8}  {:<22} n/a ({why})", size_name(size), kind.name());
                    continue;
                }
            };
            let rate = count as f64 / t.as_secs_f64();
            if kind == Kind::Ring {
                ring_rate = Some(rate);
            }
            let ratio = match (kind, ring_rate) {
                (Kind::Ring, _) | (_, None) => String::new(),
                (_, Some(r)) => ratio(r, rate),
            };
            println!(
                "{:>8}  {:<22} {:>10} {:>12.0} {:>10.1}   {:>10}",
                size_name(size),
                kind.name(),
                count,
                rate,
                rate * size as f64 / 1e6,
                ratio
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    // `--only WORD`: just the transports whose name contains WORD (the ring's rows always run,
    // for the ratios); `--latency` / `--throughput`: just that table.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let selected =
        |k: &Kind| *k == Kind::Ring || only.as_ref().is_none_or(|w| k.name().contains(w.as_str()));
    let tables = (
        !args.iter().any(|a| a == "--throughput"),
        !args.iter().any(|a| a == "--latency"),
    );
    let cpus = online_cpus();
    println!(
        "IPC benchmark: {} CPUs, threads pinned to CPUs 0 and 1: {}",
        cpus,
        if cpus >= 2 { "yes" } else { "no (one CPU)" }
    );
    println!(
        "ring: slots of the next power of two >= message + {SLOT_HEADER_SIZE} B, about 256 KiB of \
         slots; rtrb: a byte ring of the same size"
    );
    println!(
        "each measurement stops after {} ms; load average before: {}",
        BUDGET.as_millis(),
        load_average()
    );
    let started = Instant::now();

    if tables.0 {
        println!();
        latency_table(scale, &selected);
    }
    if tables.1 {
        println!();
        throughput_table(scale, &selected);
    }
    println!();
    println!("ratios: ring (spin) / transport; latency < 1 and throughput > 1 favour the ring");
    println!(
        "total time {:.1} s; load average after: {} (other work on these CPUs inflates the \
         busy-polling rows most)",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
