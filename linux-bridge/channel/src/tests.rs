//! The endpoints on a temporary file standing in for physical memory.

use std::mem::offset_of;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bulkhead_ring::layout::HeaderPage;
use bulkhead_ring::{Armed, Corruption, Ring};

use super::*;

/// Size of each test channel.
const SIZE: u64 = 0x2000;

/// A temporary "physical memory" with three channels: `tx` (Linux sends) at 0, `rx` (Linux
/// receives) at 0x2000, and `loop` (Linux receives) announced on `tx`'s memory, so that a
/// test can receive what it sends through the library's own endpoints.
struct Fixture {
    mem: tempfile::NamedTempFile,
    announcements: Announcements,
}

impl Fixture {
    /// Channels with slots of `slot_size` bytes (`(0x2000 - 0x1000) / slot_size` slots).
    fn new(slot_size: u32) -> Self {
        let mem = tempfile::NamedTempFile::new().unwrap();
        mem.as_file().set_len(0x4000).unwrap();
        let announcements = Announcements::parse(
            "console=ttyS1 bulkhead.channel=tx,linux-to-rt,doorbell,0x0,0x2000 \
             bulkhead.channel=rx,rt-to-linux,poll,0x2000,0x2000 \
             bulkhead.channel=loop,rt-to-linux,poll,0x0,0x2000",
        )
        .unwrap();
        for base in [0, 0x2000] {
            let m = Mapping::open(mem.path(), base, SIZE as usize).unwrap();
            Ring::init(m.region().unwrap(), slot_size).unwrap();
        }
        Self { mem, announcements }
    }

    fn sender(&self) -> ChannelSender {
        ChannelSender::open_with(&self.announcements, self.mem.path(), "tx").unwrap()
    }

    /// Linux's receiver on `tx`'s ring (through the `loop` announcement).
    fn looped(&self) -> ChannelReceiver {
        ChannelReceiver::open_with(&self.announcements, self.mem.path(), "loop").unwrap()
    }

    /// A fresh mapping of the channel at `base`, to look at or corrupt.
    fn map(&self, base: u64) -> Mapping {
        Mapping::open(self.mem.path(), base, SIZE as usize).unwrap()
    }
}

/// Word index of a header field.
macro_rules! word {
    ($field:ident) => {
        offset_of!(HeaderPage, $field) / 8
    };
}

#[test]
fn send_on_one_handle_receive_on_another() {
    let f = Fixture::new(64);
    let mut tx = f.sender();
    let mut rx = f.looped();
    assert_eq!((tx.name(), rx.name()), ("tx", "loop"));
    assert_eq!(tx.max_message(), 56);
    tx.send(b"hello", 3).unwrap();
    tx.try_send(b"", 0).unwrap();
    assert_eq!(
        tx.attr().unwrap(),
        Attr {
            max_messages: 64,
            message_size: 56,
            current: 2
        }
    );
    let mut buf = [0u8; 56];
    assert_eq!(rx.receive(&mut buf).unwrap(), (5, 3));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(rx.try_receive(&mut buf).unwrap(), (0, 0));
    assert_eq!(rx.attr().unwrap().current, 0);
    assert_eq!(
        rx.try_receive(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}

#[test]
fn highest_priority_first_fifo_within_a_priority() {
    let f = Fixture::new(64);
    let mut tx = f.sender();
    let mut rx = f.looped();
    let sent = [
        (&b"a1"[..], 1),
        (b"b0", 0),
        (b"c7", 7),
        (b"d1", 1),
        (b"e7", 7),
        (b"f0", 0),
        (b"g255", 255),
    ];
    for (msg, prio) in sent {
        tx.send(msg, prio).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 56];
    while let Ok((len, prio)) = rx.try_receive(&mut buf) {
        got.push((String::from_utf8(buf[..len].to_vec()).unwrap(), prio));
    }
    let want: Vec<_> = [
        ("g255", 255),
        ("c7", 7),
        ("e7", 7),
        ("a1", 1),
        ("d1", 1),
        ("b0", 0),
        ("f0", 0),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), *p))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn two_threads_block_and_deliver_everything() {
    // Four slots: the sender blocks often, the receiver too.
    let f = Fixture::new(1024);
    let mut tx = f.sender();
    let mut rx = f.looped();
    assert_eq!(tx.attr().unwrap().max_messages, 4);
    const N: u32 = 3000;
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..N {
                let len = 4 + (i as usize * 7) % 1000;
                let mut msg = vec![(i % 251) as u8; len];
                msg[..4].copy_from_slice(&i.to_le_bytes());
                tx.send(&msg, (i % 3) as u8).unwrap();
            }
        });
        // Within a priority, messages come in the order sent.
        let mut last: [Option<u32>; 3] = [None; 3];
        let mut buf = vec![0u8; rx.max_message()];
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..N {
            let (len, prio) = rx.receive_until(&mut buf, deadline).unwrap();
            let i = u32::from_le_bytes(buf[..4].try_into().unwrap());
            assert_eq!(len, 4 + (i as usize * 7) % 1000);
            assert_eq!(u32::from(prio), i % 3);
            assert!(buf[4..len].iter().all(|&b| b == (i % 251) as u8));
            let slot = &mut last[usize::from(prio)];
            assert!(slot.is_none_or(|l| l < i), "{i} after {slot:?}");
            *slot = Some(i);
        }
        assert_eq!(
            rx.try_receive(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    });
}

#[test]
fn full_ring_would_block_and_times_out() {
    let f = Fixture::new(2048);
    let mut tx = f.sender();
    let mut rx = f.looped();
    tx.try_send(b"1", 0).unwrap();
    tx.try_send(b"2", 0).unwrap();
    let e = tx.try_send(b"3", 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert!(e.is_transient());
    assert_eq!(
        std::io::Error::from(e).kind(),
        std::io::ErrorKind::WouldBlock
    );
    let start = Instant::now();
    let e = tx
        .send_until(b"3", 0, start + Duration::from_millis(30))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(30));
    // A receive frees a slot: the timed send goes through.
    let mut buf = [0u8; 8];
    rx.receive(&mut buf).unwrap();
    tx.send_until(b"3", 0, Instant::now() + Duration::from_secs(10))
        .unwrap();
}

#[test]
fn empty_ring_times_out_then_a_late_message_arrives() {
    let f = Fixture::new(64);
    let mut rx = f.looped();
    let mut buf = [0u8; 56];
    let start = Instant::now();
    let e = rx
        .receive_until(&mut buf, start + Duration::from_millis(30))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert_eq!(e.to_string(), "timed out");
    assert!(start.elapsed() >= Duration::from_millis(30));
    let mut tx = f.sender();
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(b"late", 9).unwrap();
        });
        let got = rx
            .receive_until(&mut buf, Instant::now() + Duration::from_secs(10))
            .unwrap();
        assert_eq!(got, (4, 9));
    });
}

#[test]
fn too_long_messages_and_short_buffers() {
    let f = Fixture::new(64);
    let mut tx = f.sender();
    let mut rx = f.looped();
    let e = tx.send(&[0; 57], 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLong);
    assert_eq!(
        e.to_string(),
        "message of 57 bytes is longer than the channel's 56-byte maximum"
    );
    tx.send(&[7; 56], 0).unwrap();
    let mut small = [0u8; 10];
    let e = rx.receive(&mut small).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BufferTooSmall);
    // Nothing was consumed.
    let mut buf = [0u8; 56];
    assert_eq!(rx.receive(&mut buf).unwrap(), (56, 0));
}

#[test]
fn bad_headers_are_refused_on_open() {
    let f = Fixture::new(64);
    let m = f.map(0);
    m.words()[0].store(u64::from_ne_bytes(*b"NOTARING"), Relaxed);
    let e = ChannelSender::open_with(&f.announcements, f.mem.path(), "tx").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidHeader);
    assert_eq!(
        e.to_string(),
        "not a usable channel: channel header has the wrong magic"
    );
    m.words()[word!(state)].store(0, Relaxed);
    let e = ChannelSender::open_with(&f.announcements, f.mem.path(), "tx").unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a usable channel: channel header is not initialized"
    );
}

#[test]
fn corruption_stops_the_endpoint_and_says_why() {
    let f = Fixture::new(64);
    let mut tx = f.sender();
    let mut rx = f.looped();
    tx.send(b"a", 0).unwrap();
    tx.send(b"b", 0).unwrap();
    let mut buf = [0u8; 56];
    rx.receive(&mut buf).unwrap();
    rx.receive(&mut buf).unwrap();
    // A hostile producer moves its index backwards.
    let m = f.map(0);
    m.words()[word!(producer_index)].store(1, Relaxed);
    let e = rx.try_receive(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert_eq!(
        e.to_string(),
        "channel corrupt: producer index moved backwards"
    );
    assert!(matches!(
        e,
        Error::Corrupt(RingError::Corrupt {
            what: Corruption::ProducerIndexBackwards
        })
    ));
    // Sticky, and published: the other end stops too, and a look from outside says so.
    assert_eq!(rx.receive(&mut buf).unwrap_err().kind(), ErrorKind::Corrupt);
    let e = tx.send(b"c", 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "peer stopped the channel: producer index moved backwards"
    );
    let status = Status::read(&m).unwrap();
    assert!(!status.is_usable());
    assert_eq!(
        status.state_text().to_string(),
        "failed (consumer: producer index moved backwards)"
    );
    assert_eq!(
        status.problem_text().unwrap(),
        "peer stopped the channel: producer index moved backwards"
    );
    assert_eq!(status.geometry.unwrap().slot_count(), 64);
}

#[test]
fn directions_are_enforced() {
    let f = Fixture::new(64);
    let e = ChannelReceiver::open_with(&f.announcements, f.mem.path(), "tx").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongDirection);
    assert_eq!(
        e.to_string(),
        "channel `tx` is linux-to-rt: Linux is its producer and cannot receive from it"
    );
    let e = ChannelSender::open_with(&f.announcements, f.mem.path(), "rx").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongDirection);
    let tx = Channel::open_with(&f.announcements, f.mem.path(), "tx").unwrap();
    assert_eq!((tx.name(), tx.direction()), ("tx", Direction::LinuxToRt));
    let e = tx.into_receiver().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongDirection);
    let mut rx = Channel::open_with(&f.announcements, f.mem.path(), "rx").unwrap();
    assert_eq!(rx.attr().unwrap().current, 0);
    assert!(rx.into_receiver().is_ok());
    let e = Channel::open_with(&f.announcements, f.mem.path(), "nope").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn linux_receives_on_the_hypervisors_channel() {
    let f = Fixture::new(64);
    let hv =
        Announcements::parse("bulkhead.channel=hv,hypervisor-to-linux,poll,0x2000,0x2000").unwrap();
    let e = ChannelSender::open_with(&hv, f.mem.path(), "hv").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongDirection);
    assert_eq!(
        e.to_string(),
        "channel `hv` is hypervisor-to-linux: Linux is its consumer and cannot send to it"
    );
    let ch = Channel::open_with(&hv, f.mem.path(), "hv").unwrap();
    assert_eq!(ch.direction(), Direction::HypervisorToLinux);
    let e = ch.into_sender().unwrap_err();
    assert!(e.to_string().contains("is hypervisor-to-linux"), "{e}");
    let mut rx = ChannelReceiver::open_with(&hv, f.mem.path(), "hv").unwrap();
    assert_eq!(rx.direction(), Direction::HypervisorToLinux);
    let mut peer = ChannelSender::attach(f.map(0x2000)).unwrap();
    peer.send(b"hypervisor line", 0).unwrap();
    let mut buf = [0u8; 56];
    assert_eq!(rx.try_receive(&mut buf).unwrap(), (15, 0));
    assert_eq!(&buf[..15], b"hypervisor line");
}

#[test]
fn one_endpoint_per_end_until_dropped() {
    let f = Fixture::new(64);
    let tx = f.sender();
    let e = ChannelSender::open_with(&f.announcements, f.mem.path(), "tx").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert_eq!(
        e.to_string(),
        "the producer end of channel `tx` is in use by another endpoint"
    );
    // The other end of the same ring is free.
    let rx = f.looped();
    drop(tx);
    let mut tx = f.sender();
    tx.send(b"again", 0).unwrap();
    drop(rx);
    let mut rx = ChannelReceiver::attach(f.map(0)).unwrap();
    assert!(rx.name().ends_with("@0x0"), "{}", rx.name());
    assert_eq!(rx.receive(&mut [0u8; 56]).unwrap(), (5, 0));
}

#[test]
fn inspect_reads_without_attaching() {
    let f = Fixture::new(256);
    let mut tx = f.sender();
    for i in 0..5u8 {
        tx.send(&[i], i).unwrap();
    }
    let info = f.announcements.find("tx").unwrap();
    let status = info.inspect(f.mem.path()).unwrap();
    assert!(status.is_usable());
    assert_eq!(status.state_text().to_string(), "ready");
    let g = status.geometry.unwrap();
    assert_eq!(
        (g.slot_size(), g.slot_count(), g.max_message()),
        (256, 16, 248)
    );
    assert_eq!(
        (
            status.producer_index,
            status.consumer_index,
            status.current()
        ),
        (5, 0, Some(5))
    );
    // Indices more than a ring apart: listed, with the problem.
    f.map(0x2000).words()[word!(producer_index)].store(100, Relaxed);
    let rx = f
        .announcements
        .find("rx")
        .unwrap()
        .inspect(f.mem.path())
        .unwrap();
    assert_eq!(rx.current(), None);
    assert_eq!(
        rx.problem_text().unwrap(),
        "not a usable channel: channel indices are impossible (producer 100, consumer 0)"
    );
}

#[test]
fn a_sleeping_peer_gets_no_doorbell_but_is_counted() {
    let f = Fixture::new(64);
    let mut tx = f.sender();
    let m = f.map(0);
    let mut peer = Ring::attach(m.region().unwrap()).unwrap().into_consumer();
    assert_eq!(peer.arm_doorbell().unwrap(), Armed::Sleep);
    tx.send(b"x", 0).unwrap();
    tx.send(b"y", 0).unwrap();
    assert_eq!(tx.doorbells_not_rung(), 1);
    // Linux's own blocking receive does not arm: the flag stays clear while it waits.
    let mut rx = ChannelReceiver::open_with(&f.announcements, f.mem.path(), "rx").unwrap();
    let _ = rx.receive_until(&mut [0u8; 56], Instant::now() + Duration::from_millis(20));
    assert_eq!(
        f.map(0x2000).words()[word!(consumer_wants_doorbell)].load(Relaxed),
        0
    );
}

/// A channel an endpoint found corrupt comes back through `reestablish`: the side that
/// re-establishes it (a thread standing for the RT side, holding its producer) sees the
/// request, initializes the ring again, and Linux's receiver opened afterwards gets its
/// messages; with nobody to answer, the request times out.
#[test]
fn a_failed_channel_is_reestablished_on_request() {
    let f = Fixture::new(256);
    let words = f.map(0x2000);
    let mut rt = Ring::attach(words.region().unwrap())
        .unwrap()
        .into_producer();
    // The RT side stops the channel (as after finding Linux's scribbles).
    words.words()[word!(state)].store(bulkhead_ring::State::failed(3, true), Relaxed);
    let err = ChannelReceiver::open_with(&f.announcements, f.mem.path(), "rx").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let info = f.announcements.find("rx").unwrap().clone();
    let timed_out = info.reestablish(f.mem.path(), Instant::now() + Duration::from_millis(20));
    assert!(matches!(timed_out, Err(Error::TimedOut)), "{timed_out:?}");

    std::thread::scope(|scope| {
        scope.spawn(move || {
            while !rt.reinit_requested() {
                std::thread::sleep(Duration::from_millis(1));
            }
            rt.reinit().unwrap();
            let _ = rt.try_send(b"back", 3).unwrap();
        });
        info.reestablish(f.mem.path(), Instant::now() + Duration::from_secs(10))
            .unwrap();
    });
    let mut rx = ChannelReceiver::open_with(&f.announcements, f.mem.path(), "rx").unwrap();
    let mut buf = [0u8; 64];
    let (len, priority) = rx
        .receive_until(&mut buf, Instant::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!((&buf[..len], priority), (&b"back"[..], 3));
}
