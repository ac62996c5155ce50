//! Emulated start-up of a partition's secondary CPUs (INIT and start-up IPIs).
//!
//! A stock kernel starts its other CPUs with INIT, then start-up IPIs carrying the page of a
//! real-mode trampoline (SDM Vol. 3A 9.4.4, "MP initialization"). The hypervisor never lets
//! such an IPI reach the hardware: the CPU it is aimed at waits in VMX root operation, and
//! the ICR filter (`icr`) turns the guest's writes into [`StartSignal`]s that move that CPU's
//! [`ApState`] here. Once started, the CPU enters its guest in real mode at the vector's page
//! ([`RealModeEntry`]), under "unrestricted guest".
//!
//! The states follow the architecture: a CPU that has taken INIT waits for a start-up IPI
//! and ignores further INITs; a start-up IPI to a CPU that is not waiting (never got INIT,
//! or already runs) is ignored, as the second of Linux's two start-up IPIs always is. An
//! INIT to a CPU whose guest already runs resets it ([`Delivery::Reset`]): the state moves
//! to waiting at once, and the image pulls the CPU out of its guest, which then waits in
//! the hypervisor like a CPU that never ran. This is how Linux brings back a CPU it took
//! offline (its offlined CPU idles in its guest; `echo 1 > .../online` sends INIT and
//! start-up IPIs). A start-up IPI may arrive before the CPU has left its guest; the CPU
//! then finds itself started as soon as it looks. The state packs into a `u32` so that the
//! image can keep one per CPU in an atomic.

use crate::devices::icr::StartSignal;

/// Where a secondary CPU stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApState {
    /// Not yet sent INIT (the state every secondary CPU starts in).
    Reset,
    /// Took INIT, waits for a start-up IPI.
    WaitForSipi,
    /// Took a start-up IPI with this vector: enters (or runs) its guest.
    Started { vector: u8 },
}

/// What one signal did to a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The state changed to the one given.
    Moved(ApState),
    /// The architecture ignores the signal in this state (a start-up IPI to a CPU that is
    /// not waiting for one, an INIT to a waiting CPU).
    Ignored,
    /// INIT to a CPU whose guest runs: the state is now [`ApState::WaitForSipi`], and the
    /// CPU must leave its guest (its old guest state is gone) before it looks again.
    Reset,
}

impl ApState {
    const RESET: u32 = 0;
    const WAIT_FOR_SIPI: u32 = 1;
    const STARTED: u32 = 0x100;

    /// The state as one word (for an atomic).
    pub const fn encode(self) -> u32 {
        match self {
            Self::Reset => Self::RESET,
            Self::WaitForSipi => Self::WAIT_FOR_SIPI,
            Self::Started { vector } => Self::STARTED | vector as u32,
        }
    }

    /// The state from a word written by [`ApState::encode`]; `None` for any other value.
    pub const fn decode(word: u32) -> Option<Self> {
        match word {
            Self::RESET => Some(Self::Reset),
            Self::WAIT_FOR_SIPI => Some(Self::WaitForSipi),
            w if w & !0xff == Self::STARTED => Some(Self::Started { vector: w as u8 }),
            _ => None,
        }
    }

    /// What `signal` does to a CPU in this state.
    pub const fn deliver(self, signal: StartSignal) -> Delivery {
        match (self, signal) {
            (Self::Reset, StartSignal::Init) => Delivery::Moved(Self::WaitForSipi),
            (Self::WaitForSipi, StartSignal::Startup { vector }) => {
                Delivery::Moved(Self::Started { vector })
            }
            (Self::Started { .. }, StartSignal::Init) => Delivery::Reset,
            (Self::WaitForSipi, StartSignal::Init)
            | (Self::Reset | Self::Started { .. }, StartSignal::Startup { .. }) => {
                Delivery::Ignored
            }
        }
    }
}

/// The guest state a start-up IPI with `vector` asks for: real mode, CS = vector << 8 (base
/// vector << 12), IP = 0 (SDM Vol. 3A 9.4.4.1 and 11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealModeEntry {
    pub cs_selector: u16,
    pub cs_base: u64,
    pub rip: u64,
}

impl RealModeEntry {
    /// The entry for start-up vector `vector`.
    pub const fn for_vector(vector: u8) -> Self {
        Self {
            cs_selector: (vector as u16) << 8,
            cs_base: (vector as u64) << 12,
            rip: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SIPI: StartSignal = StartSignal::Startup { vector: 0x9a };

    #[test]
    fn init_then_startup_starts_the_cpu_at_the_vector() {
        let waiting = match ApState::Reset.deliver(StartSignal::Init) {
            Delivery::Moved(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(waiting, ApState::WaitForSipi);
        let started = ApState::WaitForSipi.deliver(SIPI);
        assert_eq!(started, Delivery::Moved(ApState::Started { vector: 0x9a }));
        let entry = RealModeEntry::for_vector(0x9a);
        assert_eq!(
            (entry.cs_selector, entry.cs_base, entry.rip),
            (0x9a00, 0x9a000, 0)
        );
    }

    #[test]
    fn signals_out_of_order_are_ignored_or_refused() {
        // The second start-up IPI of Linux's pair finds the CPU already started.
        let running = ApState::Started { vector: 0x9a };
        assert_eq!(running.deliver(SIPI), Delivery::Ignored);
        assert_eq!(ApState::Reset.deliver(SIPI), Delivery::Ignored);
        assert_eq!(
            ApState::WaitForSipi.deliver(StartSignal::Init),
            Delivery::Ignored
        );
    }

    #[test]
    fn init_to_a_running_cpu_resets_it_for_a_new_start() {
        // Linux brings an offlined CPU back: INIT, then its two start-up IPIs.
        let running = ApState::Started { vector: 0x9a };
        assert_eq!(running.deliver(StartSignal::Init), Delivery::Reset);
        let again = StartSignal::Startup { vector: 0x9b };
        assert_eq!(
            ApState::WaitForSipi.deliver(again),
            Delivery::Moved(ApState::Started { vector: 0x9b })
        );
    }

    proptest! {
        #[test]
        fn states_survive_encoding_and_other_words_are_rejected(word in any::<u32>()) {
            match ApState::decode(word) {
                Some(state) => prop_assert_eq!(state.encode(), word),
                None => prop_assert!(word > 1 && word & !0xff != 0x100),
            }
        }
    }
}
