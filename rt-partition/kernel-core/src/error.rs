//! The one error type of the kernel core. Every variant is something the syscall layer can
//! turn into a status for the calling task (the POSIX name it corresponds to is given); none
//! of them means the kernel's own state is damaged, so none of them is a reason to stop.

use core::fmt;

/// Why a kernel operation was refused. The kernel's state is unchanged when one is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The task id does not name a created task (`ESRCH`).
    NoSuchTask,
    /// The core id is not one of this kernel's cores (`EINVAL`).
    NoSuchCore,
    /// The task table is full (`EAGAIN` at creation).
    TooManyTasks,
    /// An argument is out of range: a zero time slice, a zero period, an empty flag mask, a
    /// semaphore whose initial count exceeds its maximum (`EINVAL`).
    InvalidArgument,
    /// The task is not in a state that allows the operation: waking a task blocked on a kernel
    /// object, suspending a sleeping task, touching an idle task (`EINVAL`).
    InvalidState,
    /// The core is running its idle task, which may not block or own a mutex (`EPERM`).
    IdleTask,
    /// A non-blocking operation would have had to wait (`EAGAIN` / `EBUSY`).
    WouldBlock,
    /// The absolute deadline passed before the operation could complete (`ETIMEDOUT`).
    TimedOut,
    /// Blocking would close a cycle of tasks waiting on each other's mutexes, or the caller
    /// already owns the mutex (`EDEADLK`).
    Deadlock,
    /// The caller does not own the mutex it tries to unlock (`EPERM`).
    NotOwner,
    /// A semaphore post would exceed the semaphore's maximum count (`EOVERFLOW`).
    CountOverflow,
    /// The message is longer than the queue's slot size (`EMSGSIZE` on send).
    MessageTooLong,
    /// The receive buffer is shorter than the queue's slot size (`EMSGSIZE` on receive).
    BufferTooSmall,
    /// The object belongs to another core's tasks: only they may wait on it or own it
    /// (`EPERM`); other cores may only post to it.
    OtherCore,
    /// The per-core timer queue is full. Cannot happen while every task has at most one timer;
    /// reported rather than assumed.
    TimerQueueFull,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Error::NoSuchTask => "no such task",
            Error::NoSuchCore => "no such core",
            Error::TooManyTasks => "task table full",
            Error::InvalidArgument => "invalid argument",
            Error::InvalidState => "task is not in a state that allows this",
            Error::IdleTask => "the idle task may not do this",
            Error::WouldBlock => "operation would block",
            Error::TimedOut => "timed out",
            Error::Deadlock => "deadlock",
            Error::NotOwner => "not the owner",
            Error::CountOverflow => "count overflow",
            Error::MessageTooLong => "message too long",
            Error::BufferTooSmall => "buffer too small",
            Error::OtherCore => "the object belongs to another CPU's tasks",
            Error::TimerQueueFull => "timer queue full",
        };
        f.write_str(text)
    }
}
