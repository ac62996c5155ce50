//! The hypercall ABI between guests and the hypervisor.
//!
//! A guest executes VMCALL with the call number in RAX and arguments in RBX, RCX,
//! RDX; the hypervisor returns a status in RAX (0 = success, negative = error) and
//! advances RIP past the VMCALL. Unknown numbers return `UNKNOWN_CALL` and do not stop
//! the guest: a wrong call is the caller's error, not a reason to kill it.

/// "Hello": a guest announces that it runs. Argument RBX: a guest-defined tag.
pub const HELLO: u64 = 0x4248_0001;
/// "Doorbell": a partition asks the hypervisor to notify the other one that a channel
/// changed. Argument RBX: the channel's base in the caller's guest-physical space (for Linux,
/// as announced on its command line; for the RT kernel, as in its boot information).
///
/// From Linux (kernel or user space): returns [`OK`] (the RT partition was interrupted),
/// [`COALESCED`] (rung too soon after the last doorbell of that channel: no new interrupt;
/// the RT side still re-checks its rings within its poll interval) or [`NO_SUCH_CHANNEL`].
/// From the RT partition: raises the channel device's interrupt in Linux and returns [`OK`],
/// or [`NO_SUCH_CHANNEL`] (not a doorbell channel, or no channel device).
pub const DOORBELL: u64 = 0x4248_0002;

/// Status: success.
pub const OK: u64 = 0;
/// Status: the doorbell was merged into an earlier one (not an error).
pub const COALESCED: u64 = 1;
/// Status: the call number is not known (-1 as two's complement).
pub const UNKNOWN_CALL: u64 = u64::MAX;
/// Status: no doorbell channel at that base, or not one this caller may ring (-2).
pub const NO_SUCH_CHANNEL: u64 = u64::MAX - 1;

/// Decoded hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypercall {
    /// See [`HELLO`].
    Hello { tag: u64 },
    /// See [`DOORBELL`].
    Doorbell { channel_base: u64 },
    /// A number this hypervisor does not implement.
    Unknown { number: u64 },
}

impl Hypercall {
    /// Decodes the guest's registers.
    pub fn decode(rax: u64, rbx: u64) -> Self {
        match rax {
            HELLO => Self::Hello { tag: rbx },
            DOORBELL => Self::Doorbell { channel_base: rbx },
            number => Self::Unknown { number },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hello_and_unknown() {
        assert_eq!(Hypercall::decode(HELLO, 7), Hypercall::Hello { tag: 7 });
        assert_eq!(Hypercall::decode(42, 0), Hypercall::Unknown { number: 42 });
        assert_eq!(
            Hypercall::decode(DOORBELL, 0x3801_0000),
            Hypercall::Doorbell {
                channel_base: 0x3801_0000
            }
        );
    }
}
