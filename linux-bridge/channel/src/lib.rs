//! Bulkhead channels from Linux user space.
//!
//! The hypervisor initializes each channel's ring header in shared physical memory before Linux
//! boots and announces the channel on the kernel command line,
//! `bulkhead.channel=NAME,DIRECTION,NOTIFY,BASE,SIZE` (see [`bulkhead_ring::announce`]). Linux
//! sees that memory as e820-reserved; this library finds the channels in `/proc/cmdline`, maps
//! each from `/dev/mem` at its physical base, and runs Linux's end of the ring crate's protocol
//! on it: the producer of a `linux-to-rt` channel, the consumer of an `rt-to-linux` one.
//!
//! - [`Announcements`], [`ChannelInfo`]: discovery (owned copies of the command-line words);
//! - [`Mapping`]: `mmap` of a file at an offset (`/dev/mem`, or an ordinary file standing in for
//!   physical memory in tests), unmapped on drop;
//! - [`Channel`], [`ChannelSender`], [`ChannelReceiver`]: the endpoints, with POSIX-mq-like
//!   operations (`send`/`try_send`/`send_until`, `receive`/`try_receive`/`receive_until`,
//!   `attr`): priorities `0..=255`, highest first, FIFO within a priority;
//! - [`Status`]: a channel's header read from outside, with loads only (for listing);
//! - [`ChannelInterrupt`]: the channel device's interrupt (the RT side's doorbells), through
//!   `uio_pci_generic`;
//! - [`Error`], [`ErrorKind`]: one error type, classified like [`std::io::ErrorKind`].
//!
//! ```no_run
//! use bulkhead_channel::{ChannelReceiver, ChannelSender};
//!
//! let mut commands = ChannelSender::open("commands")?;
//! commands.send(b"start", 1)?;
//! let mut events = ChannelReceiver::open("events")?;
//! let mut buf = vec![0; events.max_message()];
//! let (len, priority) = events.receive(&mut buf)?;
//! println!("{priority}: {:?}", &buf[..len]);
//! # Ok::<(), bulkhead_channel::Error>(())
//! ```
//!
//! # Doorbells and polling
//!
//! Toward the RT side, doorbells work: when a send finds the RT consumer asleep, or a receive
//! frees a slot the RT producer waits for, the endpoint rings the channel's doorbell with the
//! hypervisor's `DOORBELL` hypercall ([`doorbell`]; under Bulkhead only, and for channels
//! announced `doorbell`). Toward Linux, a blocked endpoint of a `doorbell` channel arms its
//! own flag and sleeps on the channel device's interrupt ([`interrupt`]: an emulated PCI
//! function bound to Linux's `uio_pci_generic`), which the RT side raises when it sees the
//! flag. Without that device (or its driver), Linux's blocking calls poll ([`poll`]: a short
//! spin, then sleeps growing from 20 µs to 1 ms), so a message sent to a blocked Linux
//! receiver is seen within about a millisecond.
//!
//! # One endpoint per end
//!
//! The ring is single-producer single-consumer. Opening an end takes a lock on one byte of the
//! memory file ([`Mapping::lock_end`]); a second opener of the same end, in this process or
//! another that uses this library, gets [`Error::Busy`].
//!
//! # Trust and `unsafe`
//!
//! The peer's memory is untrusted; the ring crate checks everything it reads, and a ring it
//! finds impossible stops with [`ErrorKind::Corrupt`] (every later call on that endpoint fails
//! the same way). The only `unsafe` code is in [`mapping`] (the `mmap`, its view as atomic
//! words, the end locks) and in the endpoints' construction of a ring view that lives as long
//! as the mapping they own (each block says why it is sound).
//!
//! # Privileges
//!
//! Mapping `/dev/mem` needs `CAP_SYS_RAWIO` (root) and a kernel that lets `/dev/mem` reach the
//! range: with `CONFIG_STRICT_DEVMEM`, e820-reserved ranges are allowed, System RAM is not.

#![cfg(target_os = "linux")]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[allow(
    unsafe_code,
    reason = "an endpoint's ring view borrows the mapping it owns, for as long as it owns it"
)]
mod channel;
mod discover;
#[allow(
    unsafe_code,
    reason = "the doorbell hypercall is one VMCALL instruction"
)]
pub mod doorbell;
mod error;
#[allow(unsafe_code, reason = "poll(2) on the uio device")]
pub mod interrupt;
#[allow(
    unsafe_code,
    reason = "mmap, munmap, the view of the mapping as atomics, and the end locks"
)]
pub mod mapping;
pub mod poll;
mod status;

pub use bulkhead_ring::announce::{Direction, NotifyMode};
pub use bulkhead_ring::mq::Attr;
pub use bulkhead_ring::{Geometry, RingError, State};
pub use channel::{Channel, ChannelReceiver, ChannelSender};
pub use discover::{Announcements, ChannelInfo, PROC_CMDLINE};
pub use doorbell::{Doorbell, Rang};
pub use error::{Error, ErrorKind, Result};
pub use interrupt::{ChannelInterrupt, Unavailable};
pub use mapping::{DEV_MEM, Mapping};
pub use status::{StateText, Status};

#[cfg(test)]
mod tests;
