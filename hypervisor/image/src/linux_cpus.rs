//! The Linux partition's CPUs: how the secondary ones start, and how all of them stop
//! together.
//!
//! Start: Linux starts its other CPUs with INIT and start-up IPIs. The ICR filter turns those
//! into [`StartRequest`]s (`hv_core::devices::icr`); [`deliver`] moves the target's state
//! (`hv_core::devices::ap_start`, one atomic word per CPU of the partition), and the target, spinning
//! in [`wait_for_startup`] since the hypervisor booted, sees it and enters its guest in real
//! mode at the start-up vector's page. No INIT or start-up IPI from Linux ever reaches the
//! hardware: the target never leaves the hypervisor's control.
//!
//! Start again: an INIT to a secondary CPU whose guest runs (Linux bringing back a CPU it took
//! offline) raises that CPU's reset flag the same way as a stop request; at its next exit
//! ([`take_reset_request`]) the CPU leaves its guest alone, without stopping the partition
//! ([`left_for_reset`] keeps its start-up state), and waits for its start-up IPI again.
//!
//! Watchdog: Linux may feed the emulated IB700 watchdog (`hv_core::linux::watchdog`); one
//! deadline for the partition, fed and disarmed by any of its CPUs ([`feed_watchdog`],
//! [`disarm_watchdog`]) and checked at every exit ([`watchdog_expired`]).
//!
//! Stop: when one Linux CPU's guest ends (power-off, reset, triple fault, a fault the
//! hypervisor does not handle), [`stop_others`] asks every other running Linux CPU to end
//! its guest too by raising that CPU's stop flag. Every exit of a Linux CPU looks at its
//! flag first ([`take_stop_request`]), and its VMX-preemption timer makes an exit at least
//! every few milliseconds, so the CPU leaves its guest within that time; Linux's own
//! interrupts and NMIs keep arriving without exits. Only a CPU without the timer
//! ([`set_polls`]) is sent a real INIT, which in VMX non-root operation always causes a VM
//! exit. (Not the general way: Bochs keeps an INIT pending after the VM exit it caused, so
//! every later VM entry of that CPU exits again at once.)
// Sends the INIT that pulls a Linux CPU without a preemption timer out of its guest.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use hv_core::devices::ap_start::{ApState, Delivery};
use hv_core::devices::icr::StartRequest;
use hv_core::linux::watchdog::{FedDeadline, HUNG_AFTER_MS, Watchdog};

const MAX: usize = bulkhead_config::MAX_CPUS;

/// Each Linux CPU's start-up state, by its position in the partition's CPU list.
static STATES: [AtomicU32; MAX] = [const { AtomicU32::new(ApState::Reset.encode()) }; MAX];
/// Whether each Linux CPU is in (or about to enter) its guest.
static RUNNING: [AtomicBool; MAX] = [const { AtomicBool::new(false) }; MAX];
/// Whether each Linux CPU has been asked to end its guest.
static STOP: [AtomicBool; MAX] = [const { AtomicBool::new(false) }; MAX];
/// Whether each Linux CPU has been sent an INIT while its guest ran (it leaves its guest and
/// waits for a start-up IPI).
static RESET: [AtomicBool; MAX] = [const { AtomicBool::new(false) }; MAX];
/// Whether each Linux CPU's preemption timer brings it out of its guest regularly (else a
/// stop request is backed by an INIT).
static POLLS: [AtomicBool; MAX] = [const { AtomicBool::new(false) }; MAX];

/// Since when each Linux CPU has been halted with interrupts off.
static WATCHDOG: Watchdog<MAX> = Watchdog::new();

/// When Linux's fed watchdog expires, and its last timeout.
static FED: FedDeadline = FedDeadline::new();
static FED_TIMEOUT_S: AtomicU64 = AtomicU64::new(0);
/// Watchdog arms and disarms so far (only the first few are logged).
static FED_CHANGES: AtomicU32 = AtomicU32::new(0);
const LOGGED_FED_CHANGES: u32 = 8;

/// ICR low word of an INIT (level assert).
const INIT_ASSERT: u32 = (5 << 8) | (1 << 14);

fn position(own: &[u32], apic_id: u32) -> Option<usize> {
    own.iter().position(|&a| a == apic_id).filter(|&i| i < MAX)
}

/// Applies one emulated INIT or start-up IPI to its target among `own` (the partition's
/// secondary CPUs: the caller refuses signals to the boot CPU, which the hypervisor started).
/// Returns what it did; a target outside `own` is ignored (the filter never makes one). On
/// [`Delivery::Reset`] the target is asked to leave its guest.
pub fn deliver(own: &[u32], request: StartRequest) -> Delivery {
    let Some(i) = position(own, request.target) else {
        return Delivery::Ignored;
    };
    let state = &STATES[i];
    let mut word = state.load(Ordering::Acquire);
    let delivery = loop {
        let Some(current) = ApState::decode(word) else {
            return Delivery::Ignored;
        };
        let delivery = current.deliver(request.signal);
        let next = match delivery {
            Delivery::Moved(next) => next,
            Delivery::Reset => ApState::WaitForSipi,
            Delivery::Ignored => return delivery,
        };
        match state.compare_exchange(word, next.encode(), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break delivery,
            Err(now) => word = now,
        }
    };
    if delivery == Delivery::Reset {
        RESET[i].store(true, Ordering::Release);
        pull_out(i, request.target);
    }
    delivery
}

/// Makes Linux CPU `i` (APIC ID `apic_id`), asked to stop or reset, exit soon: its
/// preemption timer does that by itself; a CPU without one is sent a real INIT.
fn pull_out(i: usize, apic_id: u32) {
    if POLLS[i].load(Ordering::Acquire) {
        return;
    }
    // SAFETY: x2APIC mode is on on every CPU the hypervisor runs; the target is a CPU of the
    // same partition in VMX operation, where an INIT causes a VM exit (in VMX non-root
    // operation) or waits for the next VM entry (in root operation): it never resets the CPU.
    unsafe { crate::arch::apic::x2apic_send_icr(apic_id, INIT_ASSERT) };
}

/// Spins until this CPU (`apic_id`, one of `own`) has been sent INIT and a start-up IPI;
/// returns the start-up vector.
pub fn wait_for_startup(own: &[u32], apic_id: u32) -> u8 {
    let Some(state) = position(own, apic_id).map(|i| &STATES[i]) else {
        // Not a CPU of this partition: nothing can ever start it.
        loop {
            core::hint::spin_loop();
        }
    };
    loop {
        if let Some(ApState::Started { vector }) = ApState::decode(state.load(Ordering::Acquire)) {
            return vector;
        }
        core::hint::spin_loop();
    }
}

/// Marks this CPU as entering its guest (before its first VM entry), with no stop request
/// pending from an earlier run.
pub fn entering(own: &[u32], apic_id: u32) {
    if let Some(i) = position(own, apic_id) {
        STOP[i].store(false, Ordering::Release);
        RUNNING[i].store(true, Ordering::Release);
    }
}

/// Records whether this CPU's guest exits regularly by its preemption timer (before it
/// first enters its guest).
pub fn set_polls(own: &[u32], apic_id: u32, polls: bool) {
    if let Some(i) = position(own, apic_id) {
        POLLS[i].store(polls, Ordering::Release);
    }
}

/// Marks this CPU's guest as ended; a secondary CPU goes back to the reset state (a Linux
/// that restarts must send it INIT and start-up again).
pub fn left(own: &[u32], apic_id: u32) {
    if let Some(i) = position(own, apic_id) {
        STATES[i].store(ApState::Reset.encode(), Ordering::Release);
        RESET[i].store(false, Ordering::Release);
        RUNNING[i].store(false, Ordering::Release);
        WATCHDOG.forget(i);
    }
    // The partition ends: a restarted Linux starts with its watchdog disarmed.
    disarm_watchdog();
}

/// Marks this CPU's guest as left for an INIT: its start-up state stays as the INIT and any
/// start-up IPI since left it (waiting, or already started again).
pub fn left_for_reset(own: &[u32], apic_id: u32) {
    if let Some(i) = position(own, apic_id) {
        RUNNING[i].store(false, Ordering::Release);
        WATCHDOG.forget(i);
    }
}

/// Whether this CPU was sent an INIT while its guest ran (clearing the request).
pub fn take_reset_request(own: &[u32], apic_id: u32) -> bool {
    position(own, apic_id)
        .is_some_and(|i| RESET[i].load(Ordering::Acquire) && RESET[i].swap(false, Ordering::AcqRel))
}

/// Records what this CPU's guest was doing at an exit (`dead`: halted with interrupts off);
/// whether the whole partition now hangs: every CPU in its guest has been so for
/// `HUNG_AFTER_MS` (`hv_core::linux::watchdog`).
pub fn watch(own: &[u32], apic_id: u32, dead: bool) -> bool {
    let Some(me) = position(own, apic_id) else {
        return false;
    };
    let now = crate::arch::rdtsc();
    WATCHDOG.observe(me, dead, now);
    if !dead {
        return false;
    }
    let limit = crate::arch::time::tsc_hz() / 1000 * HUNG_AFTER_MS;
    let running = (0..own.len().min(MAX)).filter(|&i| RUNNING[i].load(Ordering::Acquire));
    WATCHDOG.hung(running, now, limit)
}

/// Linux armed or fed its watchdog for `timeout_s` seconds.
pub fn feed_watchdog(timeout_s: u64) {
    FED_TIMEOUT_S.store(timeout_s, Ordering::Relaxed);
    let ticks = timeout_s.saturating_mul(crate::arch::time::tsc_hz());
    if FED.feed(crate::arch::rdtsc(), ticks) {
        log_fed_change(format_args!(
            "linux watchdog armed: the partition ends if not fed within {timeout_s} s"
        ));
    }
}

/// Linux disarmed its watchdog (or its partition ended).
pub fn disarm_watchdog() {
    if FED.disarm() {
        log_fed_change(format_args!("linux watchdog disarmed"));
    }
}

fn log_fed_change(what: core::fmt::Arguments<'_>) {
    let n = FED_CHANGES.fetch_add(1, Ordering::Relaxed) + 1;
    if n < LOGGED_FED_CHANGES {
        log::info!("{what}");
    } else if n == LOGGED_FED_CHANGES {
        log::info!("{what} (later arms and disarms are not logged)");
    }
}

/// Whether Linux's fed watchdog has expired: `Some(timeout_s)` for exactly one caller.
pub fn watchdog_expired() -> Option<u64> {
    FED.claim_expiry(crate::arch::rdtsc)
        .then(|| FED_TIMEOUT_S.load(Ordering::Relaxed))
}

/// Spins until every CPU of the partition but `apic_id` has left its guest, or the TSC
/// passes `deadline`; then `Err` names a CPU still in its guest.
pub fn wait_others_left(own: &[u32], apic_id: u32, deadline: u64) -> Result<(), u32> {
    loop {
        let running = own
            .iter()
            .enumerate()
            .take(MAX)
            .find(|&(i, &a)| a != apic_id && RUNNING[i].load(Ordering::Acquire));
        match running {
            None => return Ok(()),
            Some((_, &a)) if crate::arch::rdtsc() > deadline => return Err(a),
            Some(_) => core::hint::spin_loop(),
        }
    }
}

/// Whether this CPU was asked to end its guest (clearing the request).
pub fn take_stop_request(own: &[u32], apic_id: u32) -> bool {
    // Read first: every exit of a Linux CPU asks, and a store each time would only move the
    // cache line about.
    position(own, apic_id)
        .is_some_and(|i| STOP[i].load(Ordering::Acquire) && STOP[i].swap(false, Ordering::AcqRel))
}

/// Asks every other CPU of the partition whose guest runs to end it; returns how many were
/// asked. CPUs still waiting for their start-up IPI keep waiting (their state is set back to
/// the reset state, so that a restarted Linux can start them again).
pub fn stop_others(own: &[u32], apic_id: u32) -> usize {
    let mut asked = 0;
    for (i, &other) in own.iter().enumerate().take(MAX) {
        if other == apic_id {
            continue;
        }
        if RUNNING[i].load(Ordering::Acquire) {
            STOP[i].store(true, Ordering::Release);
            asked += 1;
            pull_out(i, other);
        } else {
            STATES[i].store(ApState::Reset.encode(), Ordering::Release);
        }
    }
    asked
}
