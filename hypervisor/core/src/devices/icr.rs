//! The x2APIC interrupt command register (MSR 0x830) as a partition may use it.
//!
//! Writes to the ICR always exit (MSR bitmap): an IPI is the one thing a partition could use
//! to reach a CPU it does not own (an INIT resets it, an NMI or a fixed vector disturbs it).
//! [`filter`] turns one guest write into the IPIs the hypervisor sends on its behalf: each to
//! one CPU of the sender's partition, by physical x2APIC ID. Shorthands and logical
//! destinations are expanded into those unicasts; anything aimed at another partition's CPU
//! is left out and reported. INIT and start-up IPIs are never sent for real: one aimed at
//! another CPU of the partition comes back as a [`StartRequest`], which the hypervisor
//! emulates (`ap_start`); the target stays in the hypervisor's hands throughout.
//!
//! Layout (SDM Vol. 3A 11.12.9): vector 7:0, delivery mode 10:8, destination mode 11
//! (logical), level 14, trigger mode 15, shorthand 19:18, destination 63:32.

use core::fmt;

use crate::support::fixed::FixedList;

/// Most CPUs one write can reach after filtering (a partition's CPUs).
pub const MAX_TARGETS: usize = bulkhead_config::MAX_CPUS;

/// The x2APIC ICR's MSR number.
pub const X2APIC_ICR: u32 = 0x830;

/// Delivery modes.
mod mode {
    pub const FIXED: u64 = 0;
    pub const LOWEST_PRIORITY: u64 = 1;
    pub const NMI: u64 = 4;
    pub const INIT: u64 = 5;
    pub const STARTUP: u64 = 6;
}

/// ICR bit 14: level assert (an INIT with it clear is the obsolete INIT level de-assert).
const LEVEL_ASSERT: u64 = 1 << 14;

/// Why (part of) an ICR write was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// SMI or a reserved delivery mode.
    DeliveryMode(u8),
    /// INIT or start-up aimed at the sending CPU itself.
    StartSelf,
    /// A fixed or lowest-priority IPI with a vector below 16 (illegal).
    Vector(u8),
    /// The destination included CPUs (x2APIC IDs, or a logical destination) outside the
    /// partition; the IPIs to the partition's own CPUs in it were still sent.
    Foreign { destination: u32 },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::DeliveryMode(m) => write!(f, "delivery mode {m} is not allowed"),
            Self::Vector(v) => write!(f, "vector {v} is illegal"),
            Self::StartSelf => write!(f, "INIT or start-up IPI to the sending CPU itself"),
            Self::Foreign { destination } => write!(
                f,
                "destination {destination:#x} includes CPUs outside the partition"
            ),
        }
    }
}

/// An INIT or start-up IPI for one CPU, which the hypervisor emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartSignal {
    /// INIT (level assert): the CPU goes to wait-for-SIPI.
    #[default]
    Init,
    /// Start-up with its vector: real-mode entry at `vector << 12`.
    Startup { vector: u8 },
}

/// One CPU of the partition (x2APIC ID) and the signal it is to get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartRequest {
    pub target: u32,
    pub signal: StartSignal,
}

/// What to do for one guest ICR write.
#[derive(Debug, Clone, Copy)]
pub struct IcrAction {
    /// ICR values to write, one per target: physical destination, no shorthand.
    pub sends: FixedList<u64, MAX_TARGETS>,
    /// INIT and start-up IPIs to emulate, one per target.
    pub starts: FixedList<StartRequest, MAX_TARGETS>,
    /// What was left out, if anything.
    pub refused: Option<Refused>,
}

/// Whether logical x2APIC destination `dest` (cluster in 31:16, member bits in 15:0)
/// addresses the CPU with x2APIC ID `apic_id` (SDM 11.12.10.2: cluster = ID >> 4,
/// member bit = 1 << (ID & 15)).
fn logical_match(dest: u32, apic_id: u32) -> bool {
    dest >> 16 == apic_id >> 4 && dest & (1 << (apic_id & 0xf)) != 0
}

/// Filters one write of `value` to the ICR by the CPU `self_id` of a partition owning the
/// CPUs `own` (x2APIC IDs, `self_id` among them).
pub fn filter(value: u64, self_id: u32, own: &[u32]) -> IcrAction {
    let mut action = IcrAction {
        sends: FixedList::new(),
        starts: FixedList::new(),
        refused: None,
    };
    let vector = value as u8;
    let delivery = (value >> 8) & 0x7;
    let start = match delivery {
        mode::FIXED | mode::LOWEST_PRIORITY if vector < 16 => {
            action.refused = Some(Refused::Vector(vector));
            return action;
        }
        mode::FIXED | mode::LOWEST_PRIORITY | mode::NMI => None,
        // INIT level de-assert only synchronises arbitration IDs on old buses: nothing to do.
        mode::INIT if value & LEVEL_ASSERT == 0 => return action,
        mode::INIT => Some(StartSignal::Init),
        mode::STARTUP => Some(StartSignal::Startup { vector }),
        _ => {
            // SMI and the reserved modes.
            action.refused = Some(Refused::DeliveryMode(delivery as u8));
            return action;
        }
    };
    // Keep vector, delivery mode (lowest priority becomes fixed: one target each), level
    // and trigger mode; clear destination mode, shorthand and destination.
    let keep = (value & 0xc0ff)
        | if delivery == mode::NMI {
            mode::NMI << 8
        } else {
            0
        };
    let (targets, foreign) = targets(value, self_id, own);
    if let Some(destination) = foreign {
        action.refused = Some(Refused::Foreign { destination });
    }
    for &id in targets.as_slice() {
        // Both lists hold at most MAX_TARGETS entries, as `targets` does.
        match start {
            None => {
                let _ = action.sends.push(keep | (u64::from(id) << 32));
            }
            Some(_) if id == self_id => action.refused = Some(Refused::StartSelf),
            Some(signal) => {
                let _ = action.starts.push(StartRequest { target: id, signal });
            }
        }
    }
    action
}

/// The partition's CPUs that an ICR value addresses, and the destination field if it also
/// addresses CPUs outside the partition.
fn targets(value: u64, self_id: u32, own: &[u32]) -> (FixedList<u32, MAX_TARGETS>, Option<u32>) {
    let mut targets = FixedList::new();
    let dest = (value >> 32) as u32;
    let logical = value & (1 << 11) != 0;
    let shorthand = (value >> 18) & 0x3;
    let mut push = |id: u32| {
        // `own` holds at most MAX_TARGETS CPUs.
        let _ = targets.push(id);
    };
    let mut foreign = None;
    match shorthand {
        1 => push(self_id),
        2 => own.iter().for_each(|&id| push(id)),
        3 => own
            .iter()
            .filter(|&&id| id != self_id)
            .for_each(|&id| push(id)),
        _ if logical => {
            own.iter()
                .filter(|&&id| logical_match(dest, id))
                .for_each(|&id| push(id));
            // Any member bit that is not one of ours addresses someone else's CPU.
            let ours = own
                .iter()
                .filter(|&&id| id >> 4 == dest >> 16)
                .fold(0u32, |bits, &id| bits | 1 << (id & 0xf));
            if dest & 0xffff & !ours != 0 {
                foreign = Some(dest);
            }
        }
        _ if own.contains(&dest) => push(dest),
        _ => foreign = Some(dest),
    }
    (targets, foreign)
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    const OWN: [u32; 2] = [2, 3];

    fn sends(value: u64, self_id: u32) -> (Vec<u64>, Option<Refused>) {
        let a = filter(value, self_id, &OWN);
        (a.sends.as_slice().to_vec(), a.refused)
    }

    fn fixed(vector: u64, dest: u32) -> u64 {
        vector | u64::from(dest) << 32
    }

    #[test]
    fn a_fixed_ipi_to_an_own_cpu_goes_through() {
        assert_eq!(sends(fixed(33, 3), 2), (vec![fixed(33, 3)], None));
    }

    #[test]
    fn a_fixed_ipi_to_another_partition_is_dropped() {
        assert_eq!(
            sends(fixed(33, 0), 2),
            (vec![], Some(Refused::Foreign { destination: 0 }))
        );
    }

    #[test]
    fn shorthands_become_unicasts_to_own_cpus() {
        let self_only = 33 | 1 << 18;
        let all = 33 | 2 << 18;
        let others = 33 | 3 << 18;
        assert_eq!(sends(self_only, 2).0, vec![fixed(33, 2)]);
        assert_eq!(sends(all, 2).0, vec![fixed(33, 2), fixed(33, 3)]);
        assert_eq!(sends(others, 2).0, vec![fixed(33, 3)]);
    }

    #[test]
    fn logical_destinations_reach_only_own_cpus() {
        // Cluster 0, members 0..3: CPUs 0 and 1 are not ours.
        let value = 40 | 1 << 11 | 0xfu64 << 32;
        let (out, refused) = sends(value, 2);
        assert_eq!(out, vec![fixed(40, 2), fixed(40, 3)]);
        assert_eq!(refused, Some(Refused::Foreign { destination: 0xf }));
        let only_ours = 40 | 1 << 11 | 0xcu64 << 32;
        assert_eq!(
            sends(only_ours, 2),
            (vec![fixed(40, 2), fixed(40, 3)], None)
        );
    }

    #[test]
    fn smi_reserved_modes_and_illegal_vectors_are_refused() {
        for (mode, refused) in [
            (2u64, Refused::DeliveryMode(2)),
            (3, Refused::DeliveryMode(3)),
            (7, Refused::DeliveryMode(7)),
        ] {
            assert_eq!(sends(mode << 8 | 3u64 << 32, 2), (vec![], Some(refused)));
        }
        assert_eq!(sends(fixed(2, 3), 2), (vec![], Some(Refused::Vector(2))));
    }

    fn starts(value: u64, self_id: u32) -> (Vec<StartRequest>, Option<Refused>) {
        let a = filter(value, self_id, &OWN);
        assert!(
            a.sends.as_slice().is_empty(),
            "INIT/SIPI are never sent for real"
        );
        (a.starts.as_slice().to_vec(), a.refused)
    }

    #[test]
    fn init_and_startup_to_an_own_cpu_become_start_requests() {
        // Linux's sequence in x2APIC mode: INIT assert (level trigger), INIT de-assert,
        // then two start-up IPIs with the trampoline's page.
        let init_assert = 0xc500 | 3u64 << 32;
        let init_deassert = 0x8500 | 3u64 << 32;
        let startup = 0x0699 | 3u64 << 32;
        let init = StartRequest {
            target: 3,
            signal: StartSignal::Init,
        };
        assert_eq!(starts(init_assert, 2), (vec![init], None));
        assert_eq!(starts(init_deassert, 2), (vec![], None));
        let sipi = StartRequest {
            target: 3,
            signal: StartSignal::Startup { vector: 0x99 },
        };
        assert_eq!(starts(startup, 2), (vec![sipi], None));
    }

    #[test]
    fn init_and_startup_never_reach_self_or_other_partitions() {
        assert_eq!(
            starts(0xc500 | 2u64 << 32, 2),
            (vec![], Some(Refused::StartSelf))
        );
        assert_eq!(
            starts(0x0699, 2),
            (vec![], Some(Refused::Foreign { destination: 0 }))
        );
        // "All excluding self" reaches the partition's other CPUs only.
        let (out, refused) = starts(0xc500 | 3 << 18, 2);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].target, refused), (3, None));
    }

    #[test]
    fn nmi_and_lowest_priority_keep_their_meaning_per_target() {
        assert_eq!(sends(4 << 8 | 3u64 << 32, 2).0, vec![4 << 8 | 3u64 << 32]);
        assert_eq!(sends(1 << 8 | 50 | 3u64 << 32, 2).0, vec![fixed(50, 3)]);
    }

    proptest! {
        /// Whatever the guest writes, every IPI sent goes to one of its own CPUs, by physical
        /// ID without shorthand, and is never INIT, start-up or SMI; INIT and start-up are
        /// only ever emulated, for another of its own CPUs.
        #[test]
        fn only_own_cpus_are_ever_reached(value in any::<u64>(), self_index in 0usize..2) {
            let self_id = OWN[self_index];
            let a = filter(value, self_id, &OWN);
            for &send in a.sends.as_slice() {
                prop_assert!(OWN.contains(&((send >> 32) as u32)));
                prop_assert_eq!(send & (1 << 11 | 3 << 18), 0);
                prop_assert!(matches!((send >> 8) & 7, 0 | 4));
            }
            for start in a.starts.as_slice() {
                prop_assert!(OWN.contains(&start.target) && start.target != self_id);
            }
        }
    }
}
