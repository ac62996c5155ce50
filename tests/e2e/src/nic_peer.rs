//! The other end of the emulated machine's NIC: a thread of the harness that answers the RT
//! NIC driver's cyclic frames (`bulkhead_abi::frame_exchange`), the way the slaves of a
//! fieldbus do, over the emulator's UDP socket wire (Bochs' `ethmod=socket`, QEMU's
//! `-nic socket,udp=`).
//!
//! That wire is UDP on localhost, one Ethernet frame (without FCS) per datagram: the emulator
//! receives on one port and sends every frame the guest transmits to the next port up.
//! [`NicPeer::start`] binds that next port (one the system picks, whose predecessor is free)
//! before the emulator starts, and answers every request it receives at once, counting them;
//! anything else it receives is counted and dropped. Bochs reads one datagram per poll of its
//! socket, once a millisecond of emulated time; QEMU reads them as they come.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bulkhead_abi::frame_exchange;

/// The peer's own MAC address (a locally administered one).
pub const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// How often the thread looks whether it is to stop.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Tries at finding a pair of free ports.
const PORT_TRIES: usize = 32;

/// What the peer counted.
#[derive(Debug, Default)]
struct Counts {
    answered: AtomicU64,
    ignored: AtomicU64,
}

/// The running peer; dropping it stops the thread.
#[derive(Debug)]
pub struct NicPeer {
    emulator_port: u16,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NicPeer {
    /// Binds the peer's port and starts answering; [`NicPeer::emulator_port`] is the port the
    /// emulator's NIC is to receive on.
    pub fn start() -> Result<Self> {
        let (socket, emulator_port) = bind_pair()?;
        socket
            .set_read_timeout(Some(STOP_POLL))
            .context("NIC peer: cannot set a read timeout")?;
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counts, stop) = (Arc::clone(&counts), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("nic-peer".into())
                .spawn(move || answer(&socket, emulator_port, &counts, &stop))
                .context("NIC peer: cannot start its thread")?
        };
        Ok(Self {
            emulator_port,
            counts,
            stop,
            thread: Some(thread),
        })
    }

    /// The UDP port the emulator's NIC receives on (its `ethdev`).
    pub fn emulator_port(&self) -> u16 {
        self.emulator_port
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.counts.answered.load(Ordering::Relaxed)
    }

    /// Datagrams received that were no request.
    pub fn ignored(&self) -> u64 {
        self.counts.ignored.load(Ordering::Relaxed)
    }
}

impl Drop for NicPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A socket on a port `p + 1` the system picked, with `p` free too (for the emulator).
fn bind_pair() -> Result<(UdpSocket, u16)> {
    for _ in 0..PORT_TRIES {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .context("NIC peer: cannot bind a UDP port on 127.0.0.1")?;
        let port = socket.local_addr()?.port();
        let Some(emulator_port) = port.checked_sub(1).filter(|&p| p >= 1024) else {
            continue;
        };
        // The emulator binds every address; the probe does the same, then lets go.
        if UdpSocket::bind((Ipv4Addr::UNSPECIFIED, emulator_port)).is_ok() {
            return Ok((socket, emulator_port));
        }
    }
    bail!("NIC peer: found no two adjacent free UDP ports on 127.0.0.1 in {PORT_TRIES} tries")
}

fn answer(socket: &UdpSocket, emulator_port: u16, counts: &Counts, stop: &AtomicBool) {
    let mut frame = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok(len) = socket.recv(&mut frame) else {
            continue;
        };
        let frame = &mut frame[..len];
        if frame_exchange::answer_in_place(frame, PEER_MAC)
            && socket
                .send_to(frame, (Ipv4Addr::LOCALHOST, emulator_port))
                .is_ok()
        {
            counts.answered.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.ignored.fetch_add(1, Ordering::Relaxed);
        }
    }
}
