//! The echo task, an application of the default RT image (`echo=FROM:TO` on the kernel
//! command line, on the partition's last CPU at priority 70): copies every message of the `linux-to-rt` channel FROM to
//! the `rt-to-linux` channel TO, unchanged and with the same priority. It is the RT peer of
//! the Linux tool's `bulkhead ping`, and the smallest example of a task that serves Linux
//! through the channel API: open both ends once, then block in `receive` and `send`.
//!
//! It prints `echo: FROM -> TO ready (...)` when both ends are open, and after a burst of
//! traffic (once no message came for a second) `echo: forwarded N messages, B bytes; woken by
//! doorbells R to receive, S to send; rang linux M for messages, F for room` (waits for a
//! message, or for room in a full ring, that a doorbell from Linux ended rather than the
//! safety-net timer; doorbells rung toward a Linux receiver waiting for a message, and toward a
//! Linux sender waiting for room). A channel that fails (a corrupt ring: Linux is not
//! trusted) is reported in a line naming it (`echo: channel FROM failed: ...; waiting for Linux
//! to ask for it again`); the task then waits for Linux's request (`bulkhead reset FROM`),
//! re-establishes the channel and goes on (`echo: channel FROM re-established`). The rest of
//! the kernel never notices.

#![no_std]

use spin::Once;

use bulkhead_rt::api::{self, Timeout};
use bulkhead_rt::app::{App, Context, Cpu, STACK_BYTES, TaskDecl};
use bulkhead_rt::channels::{self, ChannelError};
use bulkhead_rt::core_types::{Error, Policy};
use bulkhead_rt::println;

/// The application.
pub const APP: App = App {
    name: "echo",
    tasks: &[TaskDecl {
        name: "echo",
        cpu: Cpu::Last,
        priority: 70,
        policy: Policy::Fifo,
        stack_bytes: STACK_BYTES,
        entry: task,
        arg: 0,
    }],
    init: Some(init),
    report: None,
};

/// The two channels, from the kernel options.
static ROUTE: Once<(&'static str, &'static str)> = Once::new();

/// Reads `echo=FROM:TO` (init); without it the task ends at once.
fn init(context: &Context<'static>) -> Result<(), Error> {
    if let Some(route) = context.option("echo") {
        match route.split_once(':') {
            Some((from, to)) if !from.is_empty() && !to.is_empty() => {
                ROUTE.call_once(|| (from, to));
            }
            _ => return Err(Error::InvalidArgument),
        }
    }
    Ok(())
}

/// The message buffer: a slot's largest payload is bigger than a task stack.
static BUFFER: spin::Mutex<[u8; bulkhead_ring::MAX_SLOT_SIZE as usize]> =
    spin::Mutex::new([0; bulkhead_ring::MAX_SLOT_SIZE as usize]);

/// How long the task waits for the next message before it reports a burst.
const QUIET_NS: u64 = 1_000_000_000;

/// The echo task.
extern "C" fn task(_: usize) {
    let Some(&(from, to)) = ROUTE.get() else {
        return;
    };
    let (mut rx, mut tx) = match (channels::open_receiver(from), channels::open_sender(to)) {
        (Ok(rx), Ok(tx)) => (rx, tx),
        (Err(e), _) => return println!("echo: channel {from}: {e}"),
        (_, Err(e)) => return println!("echo: channel {to}: {e}"),
    };
    match (rx.attr(), tx.attr()) {
        (Ok(a), Ok(b)) => println!(
            "echo: {from} -> {to} ready (messages up to {} bytes in, {} bytes out)",
            a.message_size, b.message_size
        ),
        (Err(e), _) => return println!("echo: channel {from}: {e}"),
        (_, Err(e)) => return println!("echo: channel {to}: {e}"),
    }
    // The one echo task holds the buffer for its whole life.
    let Some(mut buf) = BUFFER.try_lock() else {
        return println!("echo: a second echo task");
    };
    let (mut messages, mut bytes, mut reported) = (0u64, 0u64, 0u64);
    loop {
        let deadline = api::now_ns().saturating_add(QUIET_NS);
        let (len, priority) = match rx.receive(&mut buf[..], Timeout::Until(deadline)) {
            Ok(m) => m,
            Err(ChannelError::TimedOut) => {
                if messages != reported {
                    println!(
                        "echo: forwarded {messages} messages, {bytes} bytes; woken by doorbells {} to receive, {} to send; rang linux {} for messages, {} for room",
                        rx.doorbell_wakes(),
                        tx.doorbell_wakes(),
                        tx.linux_rung(),
                        rx.linux_rung()
                    );
                    reported = messages;
                }
                continue;
            }
            Err(e) => {
                if recover(from, e, || rx.await_reestablish(Timeout::Forever)) {
                    continue;
                }
                return;
            }
        };
        if let Err(e) = tx.send(&buf[..len], priority, Timeout::Forever) {
            if recover(to, e, || tx.await_reestablish(Timeout::Forever)) {
                continue;
            }
            return;
        }
        messages += 1;
        bytes += len as u64;
    }
}

/// After `error` on channel `name`: a failed channel is reported, and `reestablish` waits for
/// Linux's request and carries it out. Whether the task goes on (any other error ends it, with
/// a line).
fn recover(
    name: &str,
    error: ChannelError,
    reestablish: impl FnOnce() -> Result<(), ChannelError>,
) -> bool {
    let e = match error {
        ChannelError::Ring(e) if e.is_fatal() => e,
        other => {
            println!("echo: stopped: channel {name}: {other}");
            return false;
        }
    };
    println!("echo: channel {name} failed: {e}; waiting for Linux to ask for it again");
    match reestablish() {
        Ok(()) => {
            println!("echo: channel {name} re-established");
            true
        }
        Err(e) => {
            println!("echo: stopped: channel {name}: {e}");
            false
        }
    }
}
