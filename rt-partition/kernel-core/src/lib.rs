//! Host-testable core of the Bulkhead RT partition kernel.
//!
//! This crate is the RT kernel's policy and bookkeeping with no hardware in it: the
//! fixed-priority scheduler with its per-core run queues, the per-core timer queues, the
//! synchronisation objects (priority-inheritance mutexes, counting semaphores, event flags,
//! message queues), sleeps and periodic releases, and the latency statistics. The arch layer
//! (a separate crate) owns the context switch, the TSC-deadline timer, IPIs and the syscall
//! entry; it calls in here from the timer interrupt, from syscalls and from IPIs, and acts on
//! the decisions it gets back.
//!
//! # Design principles
//!
//! - **No hardware, no `unsafe`, no allocation.** Every table has a fixed capacity chosen by
//!   const generics; everything is created at init. Nothing here may ever touch a register,
//!   an address or a lock (the mailbox's atomics are memory, not a lock: neither side waits).
//! - **Time is an argument.** Every operation that depends on time takes `now` as monotonic
//!   nanoseconds (`u64`). The crate never reads a clock, so tests drive time by hand and the
//!   arch layer decides where the nanoseconds come from (TSC through [`clock::Tsc`]).
//! - **Decisions, not actions.** The scheduler entry points ([`Kernel::schedule`],
//!   [`Kernel::block_current`], [`Kernel::park_until`], [`Kernel::yield_current`],
//!   [`Kernel::tick`], and [`Kernel::wake_parked_and_schedule`] for an interrupt that wakes
//!   one task) return a [`Switch`]: which task the core should run next. Everything else that can change what a
//!   core should run returns the set of cores that must reschedule ([`Resched`]) or, for a
//!   single wake-up, a [`Preempt`]. The arch layer calls [`Kernel::schedule`] for its own core
//!   and sends a rescheduling IPI to the others.
//! - **Tickless.** There is no periodic tick: after every kernel entry the arch layer programs
//!   the core's one-shot timer for [`Kernel::next_event`] (the earliest timer deadline or
//!   round-robin slice end) and calls [`Kernel::timer_interrupt`] when it fires (the same as
//!   [`Kernel::expire_timers`] then [`Kernel::tick`], without queueing the task it switches
//!   to).
//! - **One kernel per core.** A [`Kernel`] is a plain value mutated through `&mut`. The RT
//!   image keeps one per core (a one-core `Kernel<TASKS, 1>`, beside the objects that core's
//!   tasks wait on), and only that core touches it, with interrupts off; what one core asks of
//!   another travels through a [`mailbox`] and an IPI. (A `Kernel` of several cores behind one
//!   lock is still a valid use, and its tests keep the multi-core semantics.)
//!
//! # Modules
//!
//! - [`sched`]: task identities, states, policies, per-core run queues, the [`Kernel`] state
//!   object and the scheduler entry points.
//! - [`timer`]: the per-core timer queue of absolute deadlines.
//! - [`sync`]: priority-inheritance mutexes, semaphores, event flags and message queues.
//! - [`clock`]: absolute and relative sleeps, TSC to nanosecond conversion, periodic releases.
//! - [`latency`]: latency histograms, percentiles and the one-line summary; the wake-up
//!   path's stages.
//! - [`mailbox`]: the lock-free single-producer single-consumer queue of requests from one
//!   core to another (model-checked with loom).
//! - [`line_ring`]: the lock-free ring of whole console lines from one core to the core that
//!   prints them, stamped for merging in order (model-checked with loom).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, loom))]
extern crate std;

pub mod clock;
mod error;
pub mod latency;
pub mod line_ring;
pub mod mailbox;
pub mod sched;
pub mod sync;
#[cfg(test)]
mod testing;
pub mod timer;

pub use error::Error;
pub use sched::{
    BlockReason, CoreId, Kernel, Policy, Preempt, Priority, Resched, Switch, TaskConfig, TaskId,
    TaskState, TaskStats, WakeReason,
};
pub use sync::Timeout;
