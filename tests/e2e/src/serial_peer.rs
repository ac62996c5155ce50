//! A serial port of the emulated machine whose other end is a TCP connection the test holds:
//! the test sends bytes to a UART the guest drives and reads what the guest sends back.
//!
//! [`Scenario::com3_peer`] gives the machine a third serial port, COM3 (I/O ports 0x3e8 to
//! 0x3ef, ISA IRQ 4, which it shares with COM1). The harness listens on `127.0.0.1`, on a port
//! the system picks, before the emulator starts; the emulator connects to it as a client while
//! it sets up its devices (Bochs: `com3: mode=socket-client`; QEMU: a third `-serial tcp:`).
//! [`Run::com3`] accepts that connection and hands the test its end, a [`SerialPeer`].
//!
//! Bochs drives the line of IRQ 4 from each port on its own, not wired together: one port
//! lowering it drops what the other raised. A guest that takes COM3's interrupts should keep
//! COM1's off (or poll COM3's line status). Bochs takes the bytes the test sends one at a time,
//! on its emulated clock, as the guest empties the UART's receive buffer.
//!
//! The [`Run`] keeps the connection open until it is dropped, after the emulator is stopped: a
//! test that drops its [`SerialPeer`] does not close it. (Bochs writes to the socket without
//! ignoring SIGPIPE: a closed connection would kill it at the guest's next byte.)
//!
//! [`Scenario::com3_peer`]: crate::Scenario::com3_peer
//! [`Run::com3`]: crate::Run::com3
//! [`Run`]: crate::Run

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::interrupted;

/// How often a wait for the emulator's connection looks again (and checks that the emulator
/// still runs).
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// The longest single read while [`SerialPeer::read_until`] waits, so that an interruption
/// (Ctrl-C in `cargo xtask run`) is noticed.
const READ_SLICE: Duration = Duration::from_millis(100);
/// How long [`SerialPeer::send`] may block before the emulator takes the bytes.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How many of the bytes received so far an error shows (the last ones).
const SHOWN_BYTES: usize = 512;

/// The harness's side of a serial port wired to TCP, from before the emulator starts until the
/// run ends: the listener, and the connection once the emulator has made it.
#[derive(Debug)]
pub(crate) struct PeerListener {
    /// The port's name in messages (`COM3`).
    port: &'static str,
    listener: TcpListener,
    addr: SocketAddrV4,
    /// The emulator's connection, once accepted; every [`SerialPeer`] is a clone of it.
    conn: Option<TcpStream>,
}

impl PeerListener {
    /// Listens on `127.0.0.1`, on a port the system picks, for the emulator's side of `port`.
    pub(crate) fn bind(port: &'static str) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .with_context(|| format!("{port}: cannot listen on 127.0.0.1"))?;
        let addr = match listener.local_addr() {
            Ok(std::net::SocketAddr::V4(addr)) => addr,
            Ok(other) => bail!("{port}: listening on {other}, not on an IPv4 address"),
            Err(e) => {
                return Err(e).with_context(|| format!("{port}: no address for its listener"));
            }
        };
        // The wait for the connection polls, with a time limit.
        listener
            .set_nonblocking(true)
            .with_context(|| format!("{port} ({addr}): cannot make its listener non-blocking"))?;
        Ok(Self {
            port,
            listener,
            addr,
            conn: None,
        })
    }

    /// The address the emulator connects to.
    pub(crate) fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// The test's end of the connection: the emulator's connection accepted within `timeout`
    /// the first time, the same connection again afterwards.
    ///
    /// `exited` says whether the emulator has exited (the wait then stops at once); `dir` is
    /// where its log is, for the message when nothing connected.
    pub(crate) fn peer(
        &mut self,
        timeout: Duration,
        exited: &mut dyn FnMut() -> Option<ExitStatus>,
        dir: &std::path::Path,
    ) -> Result<SerialPeer> {
        let (port, addr) = (self.port, self.addr);
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.accept(timeout, exited, dir)?,
        };
        let stream = self
            .conn
            .insert(conn)
            .try_clone()
            .with_context(|| format!("{port} ({addr}): cannot duplicate its connection"))?;
        Ok(SerialPeer {
            port,
            addr,
            stream,
            pending: Vec::new(),
        })
    }

    fn accept(
        &self,
        timeout: Duration,
        exited: &mut dyn FnMut() -> Option<ExitStatus>,
        dir: &std::path::Path,
    ) -> Result<TcpStream> {
        let (port, addr) = (self.port, self.addr);
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return self.configure(stream),
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("{port} ({addr}): cannot accept a connection"));
                }
            }
            if let Some(status) = exited() {
                bail!(
                    "{port} ({addr}): the emulator exited ({status}) without connecting; see its \
                     log in {}",
                    dir.display()
                );
            }
            if interrupted() {
                bail!("{port} ({addr}): interrupted while waiting for the emulator to connect");
            }
            if Instant::now() >= deadline {
                bail!(
                    "{port} ({addr}): nothing connected within {:.1}s; the emulator connects \
                     when it starts (a refused connection is in Bochs' log as `{}: connect() \
                     failed`, and Bochs then runs with {port} unconnected); see the logs in {}",
                    timeout.as_secs_f64(),
                    port.to_lowercase(),
                    dir.display()
                );
            }
            std::thread::sleep(ACCEPT_POLL);
        }
    }

    /// Makes an accepted connection blocking, with no delay on small writes and a time limit
    /// on writes (reads get theirs per call).
    fn configure(&self, stream: TcpStream) -> Result<TcpStream> {
        let (port, addr) = (self.port, self.addr);
        let what = || format!("{port} ({addr}): cannot set up the emulator's connection");
        stream.set_nonblocking(false).with_context(what)?;
        stream.set_nodelay(true).with_context(what)?;
        stream
            .set_write_timeout(Some(SEND_TIMEOUT))
            .with_context(what)?;
        Ok(stream)
    }
}

/// The test's end of an emulated serial port (COM3, or COM2 for Linux's console): what it
/// sends, the guest reads from the UART's receive buffer; what the guest writes to the UART, it
/// reads.
///
/// [`Run::com3`] and [`Run::linux_console`] hand it out. Every [`SerialPeer`] of a run is a handle on the same
/// connection, with a read-ahead buffer of its own: bytes one handle has read are not seen by
/// another.
///
/// [`Run::com3`]: crate::Run::com3
/// [`Run::linux_console`]: crate::Run::linux_console
pub struct SerialPeer {
    port: &'static str,
    addr: SocketAddrV4,
    stream: TcpStream,
    /// Bytes received and not yet returned by [`SerialPeer::read_until`].
    pending: Vec<u8>,
}

impl fmt::Debug for SerialPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialPeer")
            .field("port", &self.port)
            .field("addr", &self.addr)
            .field("pending", &Shown(&self.pending))
            .finish()
    }
}

impl SerialPeer {
    /// The connection itself, for a reader of the port's output that runs on its own.
    pub(crate) fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// The port's name (`COM3`).
    pub fn port(&self) -> &'static str {
        self.port
    }

    /// The address the harness listened on (`127.0.0.1:<port>`), which the emulator connected
    /// to.
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// Sends `bytes` to the guest's UART. They wait in the connection until the emulator takes
    /// them, a byte at a time as the guest reads its receive buffer.
    ///
    /// Fails when the connection is closed (the emulator exited) or when the emulator has not
    /// taken earlier bytes for 30 seconds and no room is left.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let (port, addr) = (self.port, self.addr);
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .with_context(|| {
                format!(
                    "{port} ({addr}): cannot send {} bytes {:?} to the guest",
                    bytes.len(),
                    Shown(bytes)
                )
            })
    }

    /// What the guest sent up to and including the first `expected`, waiting up to `timeout`
    /// for it. Bytes after it stay for the next call.
    ///
    /// Fails when `timeout` passes or the emulator closes the connection (it exited) first; the
    /// error shows the last bytes received, which also stay for the next call.
    pub fn read_until(&mut self, expected: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let (port, addr) = (self.port, self.addr);
        let deadline = Instant::now() + timeout;
        // Where `expected` may start in bytes not yet searched.
        let mut searched = 0;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = find(&self.pending, expected, searched) {
                return Ok(self.pending.drain(..end).collect());
            }
            searched = (self.pending.len() + 1).saturating_sub(expected.len());
            let now = Instant::now();
            let waiting = || {
                format!(
                    "{port} ({addr}): waiting for {:?} from the guest; received so far (last \
                     {SHOWN_BYTES} bytes at most): {:?}",
                    Shown(expected),
                    Shown(&self.pending)
                )
            };
            if now >= deadline {
                bail!(
                    "{}: not there within {:.1}s",
                    waiting(),
                    timeout.as_secs_f64()
                );
            }
            if interrupted() {
                bail!("{}: interrupted", waiting());
            }
            let slice = (deadline - now).clamp(Duration::from_millis(1), READ_SLICE);
            self.stream
                .set_read_timeout(Some(slice))
                .with_context(waiting)?;
            match self.stream.read(&mut buf) {
                Ok(0) => bail!("{}: the emulator closed the connection", waiting()),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e).with_context(waiting),
            }
        }
    }
}

/// The end of the first `needle` in `haystack` that starts at `from` or later.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at + needle.len())
}

/// Bytes shown in a message: their last [`SHOWN_BYTES`], as an escaped byte string.
struct Shown<'a>(&'a [u8]);

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = &self.0[self.0.len().saturating_sub(SHOWN_BYTES)..];
        write!(f, "\"{}\"", bytes.escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Option<ExitStatus> {
        None
    }

    /// A listener and a connection to it, made the way the emulator makes it.
    fn connected() -> (PeerListener, TcpStream) {
        let listener = PeerListener::bind("COM3").unwrap();
        let emulator = TcpStream::connect(listener.addr()).unwrap();
        (listener, emulator)
    }

    #[test]
    fn bytes_go_both_ways_and_what_follows_the_match_stays() {
        let (mut listener, mut emulator) = connected();
        assert_eq!(*listener.addr().ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(listener.addr().port(), 0);
        let dir = std::env::temp_dir();
        let mut peer = listener
            .peer(Duration::from_secs(5), &mut running, &dir)
            .unwrap();
        peer.send(b"ping\n").unwrap();
        let mut got = [0u8; 5];
        emulator.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping\n");

        emulator.write_all(b"boot\r\npo").unwrap();
        let timeout = Duration::from_secs(5);
        assert_eq!(peer.read_until(b"\r\n", timeout).unwrap(), b"boot\r\n");
        emulator.write_all(b"ng\nrest").unwrap();
        assert_eq!(peer.read_until(b"pong\n", timeout).unwrap(), b"pong\n");
        assert_eq!(peer.read_until(b"", timeout).unwrap(), b"");
        assert_eq!(peer.read_until(b"st", timeout).unwrap(), b"rest");
    }

    #[test]
    fn a_missing_reply_times_out_and_keeps_what_came() {
        let (mut listener, mut emulator) = connected();
        let dir = std::env::temp_dir();
        let mut peer = listener
            .peer(Duration::from_secs(5), &mut running, &dir)
            .unwrap();
        emulator.write_all(b"half a li").unwrap();
        let started = Instant::now();
        let err = peer
            .read_until(b"\n", Duration::from_millis(300))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        let text = format!("{err:#}");
        assert!(
            text.contains("COM3") && text.contains(&listener.addr().to_string()),
            "{text}"
        );
        assert!(
            text.contains("half a li") && text.contains("within"),
            "{text}"
        );
        emulator.write_all(b"ne\n").unwrap();
        assert_eq!(
            peer.read_until(b"\n", Duration::from_secs(5)).unwrap(),
            b"half a line\n"
        );
        drop(emulator);
        let err = peer.read_until(b"\n", Duration::from_secs(5)).unwrap_err();
        assert!(
            format!("{err:#}").contains("closed the connection"),
            "{err:#}"
        );
    }

    #[test]
    fn a_second_peer_is_the_same_connection() {
        let (mut listener, mut emulator) = connected();
        let dir = std::env::temp_dir();
        let first = listener
            .peer(Duration::from_secs(5), &mut running, &dir)
            .unwrap();
        // Nothing else connects: a second accept would wait out its time limit and fail.
        let mut second = listener
            .peer(Duration::from_millis(1), &mut running, &dir)
            .unwrap();
        drop(first);
        second.send(b"x").unwrap();
        let mut got = [0u8; 1];
        emulator.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
    }

    #[test]
    fn nothing_connecting_fails_in_time_naming_the_port() {
        let mut listener = PeerListener::bind("COM3").unwrap();
        let dir = std::env::temp_dir();
        let started = Instant::now();
        let err = listener
            .peer(Duration::from_millis(200), &mut running, &dir)
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        let text = format!("{err:#}");
        let port = listener.addr().port().to_string();
        assert!(text.contains("COM3") && text.contains(&port), "{text}");
        assert!(text.contains("nothing connected"), "{text}");

        // The emulator's exit ends the wait at once.
        let mut exited = || {
            use std::os::unix::process::ExitStatusExt;
            Some(ExitStatus::from_raw(1 << 8))
        };
        let started = Instant::now();
        let err = listener
            .peer(Duration::from_secs(30), &mut exited, &dir)
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(format!("{err:#}").contains("exited"), "{err:#}");
    }

    #[test]
    fn find_looks_from_where_the_last_search_stopped() {
        assert_eq!(find(b"abcabc", b"bc", 0), Some(3));
        assert_eq!(find(b"abcabc", b"bc", 2), Some(6));
        assert_eq!(find(b"abc", b"x", 0), None);
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"ab", b"b", 5), None);
        assert_eq!(find(b"ab", b"", 1), Some(0));
        assert_eq!(format!("{:?}", Shown(b"a\r\n\x01")), "\"a\\r\\n\\x01\"");
    }
}
