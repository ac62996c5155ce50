//! Initializes every channel's ring in shared memory, once, before any partition runs.
//!
//! The hypervisor is the only party both partitions trust, so it writes each channel's header
//! (geometry, indices at zero, state "ready": `bulkhead_ring::Ring::init`); the RT kernel and
//! the Linux library only attach and check it. A restarted Linux attaches again and finds the
//! messages the RT side sent meanwhile: the rings are never re-initialized while the system
//! runs. Linux learns where the channels are from its command line
//! (`hv_core::channels::compose_linux_cmdline`).

use core::fmt;

use bulkhead_config::Config;
use bulkhead_ring::{Ring, RingError, SharedRegion};

use crate::println;

/// A channel whose ring could not be initialized.
#[derive(Debug)]
pub struct ChannelInitError {
    /// Index in the config's `[[channels]]`.
    index: usize,
    /// The field at fault.
    field: &'static str,
    /// Why; `None`: the channel lies outside its shared region.
    cause: Option<RingError>,
}

impl fmt::Display for ChannelInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config: channels[{}].{}: ", self.index, self.field)?;
        match &self.cause {
            Some(e) => write!(f, "{e}"),
            None => f.write_str("the channel does not lie inside its shared region"),
        }
    }
}

/// Initializes every channel of `cfg`; returns how many.
pub fn init_all(cfg: &Config) -> Result<usize, ChannelInitError> {
    for (index, channel) in cfg.channels().iter().enumerate() {
        let fail = |field, cause| ChannelInitError {
            index,
            field,
            cause,
        };
        let memory = cfg.channel_memory(channel).ok_or(fail("region", None))?;
        // SAFETY: the channel lies inside one of the config's shared regions (channel_memory
        // checks), which the config fit check put in usable RAM clear of the hypervisor, its
        // modules and both partitions' private RAM; memory is identity-mapped, no partition
        // runs yet, and channels of one region do not overlap (config validation), so nothing
        // else reads or writes these bytes now.
        let region = unsafe { SharedRegion::new(memory.base as *mut u8, memory.size as usize) }
            .map_err(|e| fail("size", Some(RingError::Layout(e))))?;
        Ring::init(region, channel.slot_size()).map_err(|e| fail("slot_size", Some(e)))?;
        println!(
            "channel {}: {} KiB at {:#x}, {} slots of {} bytes, ready",
            channel.name().as_str(),
            memory.size / 1024,
            memory.base,
            channel.slot_count(),
            channel.slot_size()
        );
    }
    Ok(cfg.channels().len())
}
