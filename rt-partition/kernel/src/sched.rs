//! The scheduler wired to the hardware: one `bulkhead_rt_core::Kernel` per core with the
//! synchronisation objects its tasks wait on, the task contexts and stacks, the context
//! switch, the interrupts, the tickless timer programming, and the mail between cores.
//!
//! **No lock is shared between cores.** Each core's [`State`] (a one-core kernel: its run
//! queue, timer queue, current task, and its objects) is touched only by that core, with
//! interrupts off, once scheduling has begun; before that, the boot CPU builds every core's
//! tasks and objects. (The state sits behind a per-core lock only so that Rust can check the
//! exclusive access; its own core takes it with `try_lock`, so a second taker is a bug that
//! stops the kernel, never a wait.) What a core asks of another, a semaphore post or event
//! flags set for the other core's tasks, goes as a word into the pair's [`Mailbox`] and a
//! rescheduling IPI; the owner applies it in its own state when the IPI arrives. What others
//! read of a core (its tasks' statistics for the status report) it publishes itself.
//!
//! After every entry into the kernel (an API call, the timer interrupt, an IPI) [`finish`]
//! does what the core crate's calling protocol asks: reschedule this core if it must, and
//! program its TSC-deadline timer for `next_event` (unless it is armed for that already).
//! The state is released before the context switch; that is safe because tasks are pinned:
//! only their own core ever switches into or out of them, and it does so with interrupts
//! disabled, so a task's context is always completely saved before anyone can switch back
//! into it.
//!
//! Tasks and the kernel share ring 0 and one address space: a task's "system call" is a
//! plain function call (see `api.rs`). That is a deliberate choice for this kernel: the
//! tasks are built into the image from static tables by the same people who build the
//! kernel, and isolation from Linux is the hypervisor's job, not the RT kernel's.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use bulkhead_abi::status::TaskStatus;
use bulkhead_rt_core::mailbox::Mailbox;
use bulkhead_rt_core::sync::{EventFlags, MessageQueue, Mutex, Semaphore};
use bulkhead_rt_core::{
    CoreId, Error, Kernel, Policy, Priority, Resched, Switch, TaskConfig, TaskId,
};
use spin::{MutexGuard, Once};
use zerocopy::{FromBytes, IntoBytes};

use crate::MAX_CPUS;
use crate::arch::interrupts::{DOORBELL_VECTOR, RESCHED_VECTOR, TIMER_VECTOR};
use crate::arch::{IrqGuard, apic, time};
use crate::tasks::report::Published;

/// Tasks per core, its idle task included.
pub const TASKS_PER_CORE: usize = 24;
/// Tasks of the whole partition.
pub const MAX_TASKS: usize = MAX_CPUS * TASKS_PER_CORE;
/// Stack of each created task.
pub const TASK_STACK_SIZE: usize = 32 * 1024;
/// Capacities of each core's object tables.
pub const MAX_MUTEXES: usize = 16;
pub const MAX_SEMAPHORES: usize = 32;
pub const MAX_EVENT_FLAGS: usize = 16;
pub const MAX_QUEUES: usize = 8;
/// Geometry of every message queue: messages of up to 64 bytes, 16 of them.
pub const QUEUE_MESSAGE_SIZE: usize = 64;
pub const QUEUE_SLOTS: usize = 16;
/// Requests in flight from one core to another.
const MAIL_SLOTS: usize = 32;

/// One core's kernel: the core crate's kernel for one core, which knows itself as core 0
/// ([`LOCAL`]).
pub type CoreKernel = Kernel<TASKS_PER_CORE, 1>;
/// The core id every core's own kernel calls it by.
pub const LOCAL: CoreId = CoreId::new(0);
/// The message queue type of this image.
pub type Queue = MessageQueue<QUEUE_MESSAGE_SIZE, QUEUE_SLOTS>;

/// One core's state: its kernel and the objects its tasks wait on.
#[derive(Debug)]
pub struct State {
    pub kernel: CoreKernel,
    pub mutexes: [Option<Mutex>; MAX_MUTEXES],
    pub semaphores: [Option<Semaphore>; MAX_SEMAPHORES],
    pub event_flags: [Option<EventFlags>; MAX_EVENT_FLAGS],
    pub queues: [Option<Queue>; MAX_QUEUES],
}

static STATES: [spin::Mutex<State>; MAX_CPUS] = [const {
    spin::Mutex::new(State {
        kernel: Kernel::new(),
        mutexes: [const { None }; MAX_MUTEXES],
        semaphores: [const { None }; MAX_SEMAPHORES],
        event_flags: [const { None }; MAX_EVENT_FLAGS],
        queues: [const { None }; MAX_QUEUES],
    })
}; MAX_CPUS];

/// Set when the boot CPU lets every CPU schedule: from then on a core's state is its own.
static SCHEDULING: AtomicBool = AtomicBool::new(false);

/// Initialisation is over: from now on each core touches its own state only.
pub fn start_scheduling() {
    SCHEDULING.store(true, Ordering::Release);
}

/// This core's state (interrupts must be off).
fn own_state(core: usize) -> MutexGuard<'static, State> {
    match STATES[core].try_lock() {
        Some(state) => state,
        None => crate::fatal(format_args!(
            "core {core}'s kernel state is held by another CPU or context"
        )),
    }
}

/// Core `core`'s state for a kernel call from this core: its own, or (only before scheduling
/// begins, on the boot CPU) any core's; another scheduling core's state is
/// [`Error::OtherCore`].
fn state_of(core: usize) -> Result<MutexGuard<'static, State>, Error> {
    if core >= cores() {
        return Err(Error::NoSuchCore);
    }
    if !SCHEDULING.load(Ordering::Acquire) {
        return Ok(STATES[core].lock());
    }
    if core != this_core_index() {
        return Err(Error::OtherCore);
    }
    Ok(own_state(core))
}

/// Runs `f` on core `core`'s state with interrupts off (init: any core; afterwards this
/// core's own only).
#[track_caller]
pub fn with_state_of<R>(core: usize, f: impl FnOnce(&mut State) -> Result<R, Error>) -> Result<R, Error> {
    let _irq = IrqGuard::new();
    f(&mut *state_of(core)?)
}

/// A task of the partition: its core and its id in that core's kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRef {
    pub core: usize,
    pub local: TaskId,
}

impl TaskRef {
    /// Its index among the partition's tasks (stacks, contexts, names).
    fn index(self) -> usize {
        self.core * TASKS_PER_CORE + self.local.index()
    }
}

/// Saved stack pointer of each task while it is not running.
static SAVED_RSP: [AtomicU64; MAX_TASKS] = [const { AtomicU64::new(0) }; MAX_TASKS];
/// Name of each task, set when it is created.
static NAMES: [Once<&'static str>; MAX_TASKS] = [const { Once::new() }; MAX_TASKS];
/// APIC ID of each core, for IPIs.
static CORE_APIC: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
/// Cores in use.
static CORES: AtomicUsize = AtomicUsize::new(0);

const STACK_CANARY: u64 = 0x5354_4143_4b5f_4f4b; // "STACK_OK"

/// Stacks of the created tasks, indexed by [`TaskRef::index`] (idle tasks run on their CPU's
/// boot stack and leave their entries unused).
struct Stacks(UnsafeCell<[[u8; TASK_STACK_SIZE]; MAX_TASKS]>);
// SAFETY: stack `i` is written only by `spawn` before task `i` first runs (on the boot CPU,
// during init), and afterwards only by task `i` itself.
unsafe impl Sync for Stacks {}
static STACKS: Stacks = Stacks(UnsafeCell::new([[0; TASK_STACK_SIZE]; MAX_TASKS]));

unsafe extern "C" {
    fn rt_switch(save: *mut u64, next: u64);
    fn task_start();
}

/// This CPU's core index.
#[inline]
pub fn this_core_index() -> usize {
    crate::percpu::current_index()
}

/// Records the cores in use and their APIC IDs (boot CPU, before any task runs).
pub fn set_cores(apic_ids: &[u32]) {
    for (slot, &id) in CORE_APIC.iter().zip(apic_ids) {
        slot.store(id, Ordering::Relaxed);
    }
    CORES.store(apic_ids.len().min(MAX_CPUS), Ordering::Release);
}

/// Cores in use.
pub fn cores() -> usize {
    CORES.load(Ordering::Acquire)
}

/// What a task is created from.
#[derive(Debug, Clone, Copy)]
pub struct TaskSpec {
    pub name: &'static str,
    pub core: usize,
    pub priority: u8,
    pub policy: Policy,
    pub entry: extern "C" fn(usize),
    pub arg: usize,
}

/// Creates a task (at init, on the boot CPU): its kernel entry on its core, its stack with
/// the first frame that `rt_switch` resumes into `task_start`, and its name.
pub fn spawn(spec: TaskSpec) -> Result<TaskRef, Error> {
    let local = with_state_of(spec.core, |state| {
        state.kernel.create_task(TaskConfig {
            core: LOCAL,
            priority: Priority::new(spec.priority),
            policy: spec.policy,
        })
    })?;
    let task = TaskRef {
        core: spec.core,
        local,
    };
    // SAFETY: task `task` was just created and has never run, so nobody else uses its stack;
    // only the boot CPU spawns, during init.
    let stack = unsafe { &mut (*STACKS.0.get())[task.index()] };
    stack[..8].copy_from_slice(&STACK_CANARY.to_le_bytes());
    let top = (stack.as_mut_ptr() as u64 + TASK_STACK_SIZE as u64) & !0xf;
    // rt_switch pops: control words (16 bytes), r15, r14, r13, r12, rbx, rbp, return address.
    let frame: [u64; 10] = [
        0x037f_0000_1f80, // MXCSR = 0x1f80 (all exceptions masked), FCW = 0x037f
        0,
        0,                              // r15
        0,                              // r14
        spec.arg as u64,                // r13: the argument
        spec.entry as *const () as u64, // r12: the entry
        0,                              // rbx
        0,                              // rbp
        task_start as *const () as u64,
        0,
    ];
    let rsp = top - (frame.len() as u64) * 8;
    for (i, word) in frame.iter().enumerate() {
        // SAFETY: the frame lies inside this task's stack, below its top.
        unsafe { ((rsp + 8 * i as u64) as *mut u64).write(*word) };
    }
    SAVED_RSP[task.index()].store(rsp, Ordering::Relaxed);
    NAMES[task.index()].call_once(|| spec.name);
    Ok(task)
}

/// The name a task was created with ("idle" for an idle task).
pub fn task_name(task: TaskRef) -> &'static str {
    if task.local == LOCAL_IDLE {
        return "idle";
    }
    NAMES
        .get(task.index())
        .and_then(Once::get)
        .copied()
        .unwrap_or("?")
}

/// Every core's idle task in its own kernel.
const LOCAL_IDLE: TaskId = TaskId::new(0);

/// A [`TaskStatus`] as 64-bit words.
const STATUS_WORDS: usize = size_of::<TaskStatus>() / 8;
const _: () = assert!(STATUS_WORDS * 8 == size_of::<TaskStatus>());
/// One core's published task table: how many, then their records.
const SNAPSHOT_WORDS: usize = 1 + TASKS_PER_CORE * STATUS_WORDS;
static SNAPSHOTS: [Published<SNAPSHOT_WORDS>; MAX_CPUS] = [const { Published::new() }; MAX_CPUS];

/// Publishes this core's tasks as the status report shows them (name, CPU, priority, state,
/// what the kernel measured), for the status task of any core to read; each core's report
/// task calls it once a report period.
pub fn publish_own_tasks() {
    use bulkhead_abi::status::TaskState as Shown;
    use bulkhead_rt_core::TaskState;

    let core = this_core_index();
    let mut words = [0u64; SNAPSHOT_WORDS];
    let mut records = [TaskStatus::default(); TASKS_PER_CORE];
    let mut filled = 0;
    // One kernel entry per task: a short section each, not one as long as the table.
    for index in 0..TASKS_PER_CORE {
        let local = TaskId::new(index as u16);
        let record = enter(|state, _core, _now| {
            let k = &state.kernel;
            let record = match (k.task_stats(local), k.base_priority(local), k.task_state(local)) {
                (Ok(stats), Ok(priority), Ok(st)) => Some(TaskStatus {
                    name: [0; bulkhead_abi::status::TASK_NAME_LEN],
                    cpu: core as u16,
                    priority: priority.level(),
                    state: match st {
                        TaskState::Ready => Shown::Ready,
                        TaskState::Running => Shown::Running,
                        TaskState::Blocked(_) => Shown::Blocked,
                        TaskState::Sleeping => Shown::Sleeping,
                        TaskState::Suspended => Shown::Suspended,
                    } as u8,
                    reserved: 0,
                    cpu_time_ns: stats.cpu_time_ns,
                    wakeups: stats.wakeups,
                    deadline_misses: stats.deadline_misses,
                    wake_max_ns: stats.wake_max_ns,
                }),
                _ => None,
            };
            (record, Resched::NONE, Switch::Stay)
        });
        if let Some(mut record) = record {
            record.name = TaskStatus::name_bytes(task_name(TaskRef { core, local }));
            records[filled] = record;
            filled += 1;
        }
    }
    words[0] = filled as u64;
    for (record, chunk) in records
        .iter()
        .take(filled)
        .zip(words[1..].chunks_exact_mut(STATUS_WORDS))
    {
        if let Ok(w) = <[u64; STATUS_WORDS]>::read_from_bytes(record.as_bytes()) {
            chunk.copy_from_slice(&w);
        }
    }
    SNAPSHOTS[core].publish(&words);
}

/// Every task of the first `cores` cores as their cores last published them (idle tasks
/// first on each core); returns how many of `out` were filled.
pub fn task_snapshot(out: &mut [TaskStatus], cores: usize) -> usize {
    let mut n = 0;
    for snapshot in SNAPSHOTS.iter().take(cores) {
        let Some(words) = snapshot.latest() else {
            continue;
        };
        let count = (words[0] as usize).min(TASKS_PER_CORE);
        for chunk in words[1..].chunks_exact(STATUS_WORDS).take(count) {
            let (Some(slot), Ok(record)) = (out.get_mut(n), TaskStatus::read_from_bytes(chunk.as_bytes())) else {
                return n;
            };
            *slot = record;
            n += 1;
        }
    }
    n
}

/// Combines two decisions taken one after the other on one core.
fn combine(first: Switch, second: Switch) -> Switch {
    match (first, second) {
        (s, Switch::Stay) => s,
        (Switch::Stay, s) => s,
        (Switch::To { from, .. }, Switch::To { to, .. }) if from == to => Switch::Stay,
        (Switch::To { from, .. }, Switch::To { to, .. }) => Switch::To { from, to },
    }
}

/// The end of every kernel entry on core `core`, its state held: its own rescheduling if
/// `resched` asks for it (a core's kernel names no other core), and its timer for the next
/// event. Returns the switch to perform once the state is released.
#[inline(always)]
pub fn finish(state: &mut State, core: usize, now: u64, resched: Resched, switch: Switch) -> Switch {
    let mut switch = switch;
    if !resched.is_empty() {
        let again = state.kernel.schedule(LOCAL, now).unwrap_or(Switch::Stay);
        switch = combine(switch, again);
    }
    crate::trace::decided();
    let next = state.kernel.next_event(LOCAL).ok().flatten();
    arm_timer(core, next);
    switch
}

/// What each core's TSC-deadline timer is armed for (kernel nanoseconds), `u64::MAX` for
/// nothing known: most kernel entries leave the next event where it was, and then the
/// timer is not written again.
static ARMED_NS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
/// `ARMED_NS` for "disarmed".
const DISARMED: u64 = u64::MAX - 1;

/// Arms core `core`'s timer for `next` (`None` disarms) unless it already is.
fn arm_timer(core: usize, next: Option<u64>) {
    let want = next.map_or(DISARMED, |ns| ns.min(DISARMED - 1));
    let armed = &ARMED_NS[core];
    if armed.load(Ordering::Relaxed) != want {
        armed.store(want, Ordering::Relaxed);
        apic::arm_timer(next.map(time::deadline_tsc));
    }
}

/// Performs on core `core` a switch decided by [`finish`]: interrupts disabled, the state
/// released.
pub fn switch_to(core: usize, switch: Switch) {
    let Switch::To { from, to } = switch else {
        return;
    };
    let (from, to) = (TaskRef { core, local: from }, TaskRef { core, local: to });
    if from.local != LOCAL_IDLE {
        check_canary(from);
    }
    let save = SAVED_RSP[from.index()].as_ptr();
    let next = SAVED_RSP[to.index()].load(Ordering::Relaxed);
    crate::trace::switching();
    // SAFETY: interrupts are off and only this core switches its own (pinned) tasks, so
    // `from` is the running context and `next` is the complete saved context of `to`
    // (its first frame from `spawn`, or what an earlier `rt_switch` saved).
    unsafe { rt_switch(save, next) };
}

fn check_canary(task: TaskRef) {
    // SAFETY: the bottom word of a created task's stack is only written by `spawn`; reading
    // it races with nothing but a stack overflow, which is what we look for.
    let word = unsafe { ((*STACKS.0.get())[task.index()].as_ptr() as *const u64).read_volatile() };
    if word != STACK_CANARY {
        crate::fatal(format_args!(
            "task {} of CPU {} ({}) overflowed its {} KiB stack",
            task.local.index(),
            task.core,
            task_name(task),
            TASK_STACK_SIZE / 1024
        ));
    }
}

/// One entry into the kernel from a task: `f` runs on this core's state with its kernel's
/// core id ([`LOCAL`]) and the time, and returns its result, whether the core must
/// reschedule, and its own switch decision. Interrupts stay off until this task runs again.
#[track_caller]
pub fn enter<R>(f: impl FnOnce(&mut State, CoreId, u64) -> (R, Resched, Switch)) -> R {
    let _irq = IrqGuard::new();
    let core = this_core_index();
    let (result, switch) = {
        let mut state = own_state(core);
        let now = time::now_ns();
        let (result, resched, switch) = f(&mut state, LOCAL, now);
        let switch = finish(&mut state, core, now, resched, switch);
        (result, switch)
    };
    switch_to(core, switch);
    result
}

/// A look at this core's state that decides nothing (the running task's own bookkeeping,
/// such as why its wait ended): no clock read, no rescheduling, the timer left as it is.
/// Interrupts stay off while `f` runs.
pub fn peek_own<R>(f: impl FnOnce(&mut State, CoreId) -> R) -> R {
    let _irq = IrqGuard::new();
    let core = this_core_index();
    let mut state = own_state(core);
    f(&mut state, LOCAL)
}

// ----- mail between cores ----------------------------------------------------------------

/// What one core asks of another, as a mailbox word: the kind in bits 0..8, the object's
/// index in its core's table in bits 8..24, the argument in bits 32..64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Post the semaphore with this index.
    SemaphorePost(usize),
    /// Set these bits of the event flags with this index.
    EventSet(usize, u32),
    /// End this task's park if it is parked with this tag (`Kernel::wake_parked`).
    WakeParked(TaskId, u32),
}

impl Request {
    fn encode(self) -> u64 {
        match self {
            Request::SemaphorePost(index) => 1 | (index as u64 & 0xffff) << 8,
            Request::EventSet(index, bits) => {
                2 | (index as u64 & 0xffff) << 8 | u64::from(bits) << 32
            }
            Request::WakeParked(task, tag) => {
                3 | (task.index() as u64 & 0xffff) << 8 | u64::from(tag) << 32
            }
        }
    }

    fn decode(word: u64) -> Option<Self> {
        let index = ((word >> 8) & 0xffff) as usize;
        match word & 0xff {
            1 => Some(Request::SemaphorePost(index)),
            2 => Some(Request::EventSet(index, (word >> 32) as u32)),
            3 => Some(Request::WakeParked(TaskId::new(index as u16), (word >> 32) as u32)),
            _ => None,
        }
    }
}

/// `MAIL[to][from]`: the requests of core `from` to core `to`.
static MAIL: [[Mailbox<MAIL_SLOTS>; MAX_CPUS]; MAX_CPUS] =
    [const { [const { Mailbox::new() }; MAX_CPUS] }; MAX_CPUS];
/// Requests each core received that named no object of it, or that its object refused (a
/// semaphore at its maximum).
static MAIL_REFUSED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Sends `request` to core `to` (not this one) and interrupts it; [`Error::WouldBlock`] when
/// its mailbox from this core is full (nothing was sent).
pub fn send_request(to: usize, request: Request) -> Result<(), Error> {
    let _irq = IrqGuard::new();
    let from = this_core_index();
    let mailbox = MAIL
        .get(to)
        .and_then(|m| m.get(from))
        .filter(|_| to != from && to < cores())
        .ok_or(Error::NoSuchCore)?;
    mailbox
        .send(request.encode())
        .map_err(|_| Error::WouldBlock)?;
    let apic_id = CORE_APIC[to].load(Ordering::Relaxed);
    if apic_id != u32::MAX {
        apic::send_ipi(apic_id, RESCHED_VECTOR);
    }
    Ok(())
}

/// Applies the requests waiting in core `core`'s mailboxes to its state.
fn deliver_mail(state: &mut State, core: usize, now: u64) -> Resched {
    let mut resched = Resched::NONE;
    for mailbox in MAIL[core].iter().take(cores()) {
        while let Some(word) = mailbox.receive() {
            let done = match Request::decode(word) {
                Some(Request::SemaphorePost(index)) => state
                    .semaphores
                    .get_mut(index)
                    .and_then(Option::as_mut)
                    .ok_or(Error::InvalidArgument)
                    .and_then(|s| state.kernel.semaphore_post(s, now)),
                Some(Request::EventSet(index, bits)) => state
                    .event_flags
                    .get_mut(index)
                    .and_then(Option::as_mut)
                    .ok_or(Error::InvalidArgument)
                    .map(|f| state.kernel.event_flags_set(f, bits, now)),
                Some(Request::WakeParked(task, tag)) => state
                    .kernel
                    .wake_parked(task, tag, now)
                    .map(Resched::from),
                None => Err(Error::InvalidArgument),
            };
            match done {
                Ok(r) => resched.merge(r),
                Err(_) => {
                    MAIL_REFUSED[core].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    resched
}

/// Requests core `core` received that it could not apply.
pub fn mail_refused(core: usize) -> u64 {
    MAIL_REFUSED.get(core).map_or(0, |n| n.load(Ordering::Relaxed))
}

// ----- idle, interrupts, task exit -------------------------------------------------------

/// Starts scheduling on this CPU; its boot context becomes its idle task. Never returns.
pub fn run_idle() -> ! {
    let core = this_core_index();
    crate::trace::start();
    {
        let _irq = IrqGuard::new();
        let switch = {
            let mut state = own_state(core);
            let now = time::now_ns();
            let switch = state.kernel.schedule(LOCAL, now).unwrap_or(Switch::Stay);
            finish(&mut state, core, now, Resched::NONE, switch)
        };
        switch_to(core, switch);
    }
    crate::arch::enable_interrupts();
    loop {
        if core == 0 && crate::console::drain() {
            continue;
        }
        crate::arch::enable_and_wait();
    }
}

/// Rust side of the interrupt stubs (switch.S), on the interrupted task's stack with
/// interrupts disabled.
#[unsafe(no_mangle)]
extern "C" fn irq_handler(vector: u64) {
    let vector = vector as u8;
    let entry_tsc = crate::trace::irq_entry(vector);
    let core = this_core_index();
    let switch = {
        let mut state = own_state(core);
        let now = time::ns_at(entry_tsc);
        // Each arm ends its interrupt at the local APIC (interrupts stay off until IRETQ); a
        // device line's top half decides for its line (a level-triggered one's ends when its
        // handler waits again).
        match vector {
            TIMER_VECTOR => {
                apic::eoi();
                // The timer fired, so it is disarmed now: a one-shot timer (TSC deadline or
                // count) that fired is stopped. (Its interrupt may have been pending while
                // the timer was armed again, later: then the later expiry comes as one
                // timer interrupt that finds nothing due, not as a missed event.)
                ARMED_NS[core].store(DISARMED, Ordering::Relaxed);
                // The expiries and the decision; a core's kernel names no other core.
                let switch = state
                    .kernel
                    .timer_interrupt(LOCAL, now)
                    .map_or(Switch::Stay, |(_, switch)| switch);
                finish(&mut state, core, now, Resched::NONE, switch)
            }
            // The others apart: in one match the compiler orders the tests by vector, and
            // the timer's (the deadlines' path) is to be the first.
            vector => other_interrupt(&mut state, core, vector, now),
        }
    };
    switch_to(core, switch);
    // Back in the task this interrupt came to; IRETQ enables interrupts.
    crate::trace::irqs_on();
}

/// [`irq_handler`] for every vector but the timer's, its core's state held.
#[inline(never)]
fn other_interrupt(state: &mut State, core: usize, vector: u8, now: u64) -> Switch {
    match vector {
        RESCHED_VECTOR => {
            apic::eoi();
            let resched = deliver_mail(state, core, now);
            finish(state, core, now, resched, Switch::Stay)
        }
        DOORBELL_VECTOR => {
            apic::eoi();
            let (resched, switch) = crate::channels::on_doorbell(state, core, now);
            finish(state, core, now, resched, switch)
        }
        v => match bulkhead_abi::vectors::device_line(v) {
            Some(line) => {
                let resched = crate::irq::top_half(state, line, now);
                finish(state, core, now, resched, Switch::Stay)
            }
            None => {
                apic::eoi();
                Switch::Stay
            }
        },
    }
}

/// Where a task's entry function returns to (from `task_start`): it is suspended for good.
#[unsafe(no_mangle)]
extern "C" fn task_exited() -> ! {
    enter(|state, core, _now| {
        let resched = match state.kernel.current(core) {
            Ok(task) => state.kernel.suspend(task).unwrap_or(Resched::NONE),
            Err(_) => Resched::NONE,
        };
        ((), resched, Switch::Stay)
    });
    // A suspended task is never switched back in.
    crate::arch::halt_forever()
}
