//! The hypercall ABI between guests and the hypervisor.
//!
//! A guest executes VMCALL with the call number in RAX and its argument in RBX; the hypervisor
//! puts a [`Status`] in RAX and advances RIP past the VMCALL. An unknown number returns
//! [`Status::UnknownCall`] and does not stop the guest: a wrong call is the caller's error, not a
//! reason to end it. The only guest-side stub is `bulkhead-vmcall`.

use core::fmt;

/// A call a guest can make; its `u64` is the value in RAX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Call {
    /// "Hello": a guest announces that it runs. Argument (RBX): a guest-defined tag. Returns
    /// [`Status::Ok`].
    Hello = 0x4248_0001,
    /// "Doorbell": a partition asks the hypervisor to notify the other one that a channel
    /// changed. Argument (RBX): the channel's base in the caller's guest-physical space (for
    /// Linux, as announced on its command line; for the RT kernel, as in its boot information).
    ///
    /// From Linux (kernel or user space): returns [`Status::Ok`] (the RT partition was
    /// interrupted), [`Status::Coalesced`] (rung too soon after the last doorbell of that
    /// channel, or beyond the RT partition's doorbell budget for this second: no new
    /// interrupt; the RT side still re-checks its rings within its poll interval), [`Status::NotWaiting`] (the RT kernel has not asked for a doorbell on that
    /// channel, through its request word, see `rt_boot::DOORBELL_REQUESTS_GPA`) or
    /// [`Status::NoSuchChannel`]. From the RT partition: raises the channel
    /// device's interrupt in Linux and returns [`Status::Ok`], or [`Status::NoSuchChannel`] (not
    /// a doorbell channel, or no channel device).
    Doorbell = 0x4248_0002,
    /// "Line": the RT kernel masks or unmasks one of its device lines (the IOAPIC pins of its
    /// boot information's line table) — when a driver attaches or detaches, or a line fires
    /// with nobody attached; never on the path of an interrupt that is handled. Argument
    /// (RBX): the line's index in bits 15:0, [`LINE_UNMASK`] to unmask (masks without it), every
    /// other bit 0. Returns [`Status::Ok`], [`Status::NoSuchLine`] (no such line, or other
    /// bits set), or [`Status::NotPermitted`] from Linux.
    Line = 0x4248_0003,
}

/// [`Call::Line`]'s argument bit that unmasks the line.
pub const LINE_UNMASK: u64 = 1 << 63;

impl Call {
    /// Every call, in number order.
    pub const ALL: [Call; 3] = [Call::Hello, Call::Doorbell, Call::Line];

    /// The value in RAX.
    pub const fn number(self) -> u64 {
        self as u64
    }

    /// The call with this number, if there is one.
    pub const fn from_number(number: u64) -> Option<Self> {
        match number {
            0x4248_0001 => Some(Self::Hello),
            0x4248_0002 => Some(Self::Doorbell),
            0x4248_0003 => Some(Self::Line),
            _ => None,
        }
    }

    /// Whether a guest's user space (CPL 3) may make the call: only a doorbell, which a Linux
    /// program rings for its channels without a kernel module. Every other call is refused
    /// there with [`Status::NotPermitted`].
    pub const fn user_space_may_call(self) -> bool {
        matches!(self, Self::Doorbell)
    }

    /// The call's name in log lines.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hello => "HELLO",
            Self::Doorbell => "DOORBELL",
            Self::Line => "LINE",
        }
    }
}

impl TryFrom<u64> for Call {
    type Error = u64;

    /// The call numbered `number`; the number itself if there is none.
    fn try_from(number: u64) -> Result<Self, u64> {
        Self::from_number(number).ok_or(number)
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a hypercall returns in RAX: 0 success, small positive numbers success with a remark,
/// negative numbers (as two's complement) errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The doorbell was merged into an earlier one (not an error).
    Coalesced = 1,
    /// No interrupt: the other side has not asked for a doorbell on that channel since its
    /// last one (it is not waiting; not an error).
    NotWaiting = 2,
    /// The caller may not make this call: from user space (see
    /// [`Call::user_space_may_call`]), or a hello from a CPU that said it already or runs no
    /// start-up guest (-3).
    NotPermitted = u64::MAX - 2,
    /// No doorbell channel at that base, or not one this caller may ring (-2).
    NoSuchChannel = u64::MAX - 1,
    /// No device line with that index, or a malformed argument (-4).
    NoSuchLine = u64::MAX - 3,
    /// The call number is not known (-1).
    UnknownCall = u64::MAX,
}

impl Status {
    /// The value in RAX.
    pub const fn raw(self) -> u64 {
        self as u64
    }

    /// The status RAX holds, if it is one this ABI defines.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            0 => Some(Self::Ok),
            1 => Some(Self::Coalesced),
            2 => Some(Self::NotWaiting),
            r if r == u64::MAX - 3 => Some(Self::NoSuchLine),
            r if r == u64::MAX - 2 => Some(Self::NotPermitted),
            r if r == u64::MAX - 1 => Some(Self::NoSuchChannel),
            u64::MAX => Some(Self::UnknownCall),
            _ => None,
        }
    }

    /// Whether the call did what was asked ([`Status::Ok`], [`Status::Coalesced`] or
    /// [`Status::NotWaiting`]).
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Ok | Self::Coalesced | Self::NotWaiting)
    }
}

/// A decoded hypercall: the call and its argument, or a number this ABI does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypercall {
    /// See [`Call::Hello`].
    Hello { tag: u64 },
    /// See [`Call::Doorbell`].
    Doorbell { channel_base: u64 },
    /// See [`Call::Line`]; `line` is `None` for a malformed argument.
    Line { line: Option<u16>, unmask: bool },
    /// A number this hypervisor does not implement.
    Unknown { number: u64 },
}

impl Hypercall {
    /// Decodes the guest's registers.
    pub const fn decode(rax: u64, rbx: u64) -> Self {
        match Call::from_number(rax) {
            Some(Call::Hello) => Self::Hello { tag: rbx },
            Some(Call::Doorbell) => Self::Doorbell { channel_base: rbx },
            Some(Call::Line) => Self::Line {
                line: if rbx & !(LINE_UNMASK | 0xffff) == 0 {
                    Some(rbx as u16)
                } else {
                    None
                },
                unmask: rbx & LINE_UNMASK != 0,
            },
            None => Self::Unknown { number: rax },
        }
    }

    /// The registers that make this call: `(RAX, RBX)`.
    pub const fn encode(self) -> (u64, u64) {
        match self {
            Self::Hello { tag } => (Call::Hello.number(), tag),
            Self::Doorbell { channel_base } => (Call::Doorbell.number(), channel_base),
            Self::Line { line, unmask } => (
                Call::Line.number(),
                match line {
                    Some(line) => line as u64,
                    None => !LINE_UNMASK,
                } | if unmask { LINE_UNMASK } else { 0 },
            ),
            Self::Unknown { number } => (number, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_decode_and_encode_both_ways() {
        assert_eq!(
            Hypercall::decode(Call::Hello.number(), 7),
            Hypercall::Hello { tag: 7 }
        );
        assert_eq!(Hypercall::decode(42, 0), Hypercall::Unknown { number: 42 });
        let doorbell = Hypercall::Doorbell {
            channel_base: 0x3801_0000,
        };
        let (rax, rbx) = doorbell.encode();
        assert_eq!(rax, 0x4248_0002);
        assert_eq!(Hypercall::decode(rax, rbx), doorbell);
        for call in Call::ALL {
            assert_eq!(Call::try_from(call.number()), Ok(call));
        }
        assert_eq!(Call::try_from(0x4248_0004), Err(0x4248_0004));
        for line in [
            Hypercall::Line { line: Some(3), unmask: true },
            Hypercall::Line { line: Some(0xffff), unmask: false },
            Hypercall::Line { line: None, unmask: true },
        ] {
            let (rax, rbx) = line.encode();
            assert_eq!(Hypercall::decode(rax, rbx), line);
        }
        assert_eq!(
            Hypercall::decode(Call::Line.number(), 1 << 20),
            Hypercall::Line { line: None, unmask: false }
        );
    }

    #[test]
    fn statuses_round_trip_and_errors_are_negative() {
        for s in [
            Status::Ok,
            Status::Coalesced,
            Status::NotWaiting,
            Status::NotPermitted,
            Status::NoSuchChannel,
            Status::NoSuchLine,
            Status::UnknownCall,
        ] {
            assert_eq!(Status::from_raw(s.raw()), Some(s));
        }
        assert_eq!(Status::UnknownCall.raw() as i64, -1);
        assert_eq!(Status::NoSuchChannel.raw() as i64, -2);
        assert_eq!(Status::NotPermitted.raw() as i64, -3);
        assert_eq!(Status::NoSuchLine.raw() as i64, -4);
        assert!(Call::Doorbell.user_space_may_call());
        assert!(!Call::Hello.user_space_may_call());
        assert_eq!(Status::from_raw(3), None);
        assert!(Status::Coalesced.is_success());
        assert!(!Status::NoSuchChannel.is_success());
    }
}
