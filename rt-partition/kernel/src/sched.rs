//! The scheduler wired to the hardware: one `bulkhead_rt_core::Kernel` and the
//! synchronisation objects beside it in one static behind one IRQ-safe spin lock, the task
//! contexts and stacks, the context switch, the timer and rescheduling interrupts, and the
//! tickless timer programming.
//!
//! After every entry into the kernel (an API call, the timer interrupt, a rescheduling IPI)
//! [`finish`] does what the core crate's calling protocol asks: IPI the other cores that
//! must reschedule, reschedule this core if it must, and program this core's TSC-deadline
//! timer for `next_event`. The lock is released before the context switch; that is safe
//! because tasks are pinned: only their own core ever switches into or out of them, and it
//! does so with interrupts disabled, so a task's context is always completely saved before
//! anyone can switch back into it.
//!
//! Tasks and the kernel share ring 0 and one address space: a task's "system call" is a
//! plain function call (see `api.rs`). That is a deliberate choice for this kernel: the
//! tasks are built into the image from static tables by the same people who build the
//! kernel, and isolation from Linux is the hypervisor's job, not the RT kernel's.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use bulkhead_rt_core::sync::{EventFlags, MessageQueue, Mutex, Semaphore};
use bulkhead_rt_core::{
    CoreId, Error, Kernel, Policy, Priority, Resched, Switch, TaskConfig, TaskId,
};

use crate::MAX_CPUS;
use crate::arch::interrupts::{DOORBELL_VECTOR, RESCHED_VECTOR, TIMER_VECTOR};
use crate::arch::{IrqGuard, apic, time};

/// Size of the task table, idle tasks (one per possible CPU) included.
pub const MAX_TASKS: usize = 40;
/// Stack of each created task.
pub const TASK_STACK_SIZE: usize = 32 * 1024;
/// Capacities of the object tables.
pub const MAX_MUTEXES: usize = 16;
pub const MAX_SEMAPHORES: usize = 32;
pub const MAX_EVENT_FLAGS: usize = 16;
pub const MAX_QUEUES: usize = 8;
/// Geometry of every message queue: messages of up to 64 bytes, 16 of them.
pub const QUEUE_MESSAGE_SIZE: usize = 64;
pub const QUEUE_SLOTS: usize = 16;

/// The kernel core instantiated for this image.
pub type RtKernel = Kernel<MAX_TASKS, MAX_CPUS>;
/// The message queue type of this image.
pub type Queue = MessageQueue<QUEUE_MESSAGE_SIZE, QUEUE_SLOTS>;

/// Everything the one lock guards.
#[derive(Debug)]
pub struct State {
    pub kernel: RtKernel,
    pub mutexes: [Option<Mutex>; MAX_MUTEXES],
    pub semaphores: [Option<Semaphore>; MAX_SEMAPHORES],
    pub event_flags: [Option<EventFlags>; MAX_EVENT_FLAGS],
    pub queues: [Option<Queue>; MAX_QUEUES],
}

/// The kernel's whole state.
pub static STATE: spin::Mutex<State> = spin::Mutex::new(State {
    kernel: Kernel::new(),
    mutexes: [const { None }; MAX_MUTEXES],
    semaphores: [const { None }; MAX_SEMAPHORES],
    event_flags: [const { None }; MAX_EVENT_FLAGS],
    queues: [const { None }; MAX_QUEUES],
});

/// Saved stack pointer of each task while it is not running.
static SAVED_RSP: [AtomicU64; MAX_TASKS] = [const { AtomicU64::new(0) }; MAX_TASKS];
/// Name of each task, for reports.
static NAMES: spin::Mutex<[&str; MAX_TASKS]> = spin::Mutex::new([""; MAX_TASKS]);
/// APIC ID of each core, for IPIs.
static CORE_APIC: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
/// Cores in use.
static CORES: AtomicUsize = AtomicUsize::new(0);

const STACK_CANARY: u64 = 0x5354_4143_4b5f_4f4b; // "STACK_OK"

/// Stacks of the created tasks, indexed by task id (idle tasks run on their CPU's boot
/// stack and leave their entries unused).
struct Stacks(UnsafeCell<[[u8; TASK_STACK_SIZE]; MAX_TASKS]>);
// SAFETY: stack `i` is written only by `spawn` before task `i` first runs (under the state
// lock), and afterwards only by task `i` itself.
unsafe impl Sync for Stacks {}
static STACKS: Stacks = Stacks(UnsafeCell::new([[0; TASK_STACK_SIZE]; MAX_TASKS]));

unsafe extern "C" {
    fn rt_switch(save: *mut u64, next: u64);
    fn task_start();
}

/// This CPU's core id.
#[inline]
pub fn this_core() -> CoreId {
    CoreId::new(crate::percpu::current_index() as u8)
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

/// Creates a task (at init): its kernel entry, its stack with the first frame that
/// `rt_switch` resumes into `task_start`, and its name.
pub fn spawn(spec: TaskSpec) -> Result<TaskId, Error> {
    if spec.core >= cores() {
        return Err(Error::NoSuchCore);
    }
    let _irq = IrqGuard::new();
    let mut state = STATE.lock();
    let id = state.kernel.create_task(TaskConfig {
        core: CoreId::new(spec.core as u8),
        priority: Priority::new(spec.priority),
        policy: spec.policy,
    })?;
    // SAFETY: task `id` was just created and has never run, so nobody else uses its stack;
    // the state lock is held, so no other `spawn` runs.
    let stack = unsafe { &mut (*STACKS.0.get())[id.index()] };
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
    SAVED_RSP[id.index()].store(rsp, Ordering::Relaxed);
    NAMES.lock()[id.index()] = spec.name;
    Ok(id)
}

/// Every task of the first `cores` cores (the idle tasks of cores that do not exist left out)
/// as the status report shows it (name, CPU, priority, state, what the kernel measured);
/// returns how many of `out` were filled.
pub fn task_snapshot(out: &mut [bulkhead_abi::status::TaskStatus], cores: usize) -> usize {
    use bulkhead_abi::status::{TaskState as Shown, TaskStatus};
    use bulkhead_rt_core::TaskState;

    let mut ids = [None; MAX_TASKS];
    let filled = enter(|state, _core, _now| {
        let k = &state.kernel;
        let mut n = 0;
        for task in k.tasks() {
            let (Some(slot), Some(id)) = (out.get_mut(n), ids.get_mut(n)) else {
                break;
            };
            let (Ok(stats), Ok(core), Ok(priority), Ok(st)) = (
                k.task_stats(task),
                k.task_core(task),
                k.base_priority(task),
                k.task_state(task),
            ) else {
                continue;
            };
            if core.index() >= cores {
                continue;
            }
            *slot = TaskStatus {
                name: [0; bulkhead_abi::status::TASK_NAME_LEN],
                cpu: core.index() as u16,
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
                wake_max_ns: stats.wake_latency.max_ns().unwrap_or(0),
            };
            *id = Some(task);
            n += 1;
        }
        (n, Resched::NONE, Switch::Stay)
    });
    // Names after the kernel lock is released (they have a lock of their own).
    for (slot, id) in out.iter_mut().zip(ids).take(filled) {
        if let Some(task) = id {
            let name = match task_name(task) {
                "" => "idle",
                n => n,
            };
            slot.name = TaskStatus::name_bytes(name);
        }
    }
    filled
}

/// The name a task was created with.
pub fn task_name(task: TaskId) -> &'static str {
    NAMES.lock().get(task.index()).copied().unwrap_or("?")
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

/// The end of every kernel entry, under the lock: IPIs to the other cores in `resched`,
/// this core's own rescheduling, and its timer for the next event. Returns the switch to
/// perform once the lock is released.
pub fn finish(
    state: &mut State,
    core: CoreId,
    now: u64,
    resched: Resched,
    switch: Switch,
) -> Switch {
    let mut switch = switch;
    for other in resched.cores() {
        if other == core {
            let again = state.kernel.schedule(core, now).unwrap_or(Switch::Stay);
            switch = combine(switch, again);
        } else if let Some(apic_id) = CORE_APIC.get(other.index()) {
            let apic_id = apic_id.load(Ordering::Relaxed);
            if apic_id != u32::MAX {
                apic::send_ipi(apic_id, RESCHED_VECTOR);
            }
        }
    }
    let next = state.kernel.next_event(core).ok().flatten();
    arm_timer(core, next);
    switch
}

/// What each core's TSC-deadline timer is armed for (kernel nanoseconds), `u64::MAX` for
/// nothing known: most kernel entries leave the next event where it was, and then the
/// timer is not written again.
static ARMED_NS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
/// `ARMED_NS` for "disarmed".
const DISARMED: u64 = u64::MAX - 1;

/// Arms `core`'s timer for `next` (`None` disarms) unless it already is.
fn arm_timer(core: CoreId, next: Option<u64>) {
    let want = next.map_or(DISARMED, |ns| ns.min(DISARMED - 1));
    let armed = &ARMED_NS[core.index()];
    if armed.load(Ordering::Relaxed) != want {
        armed.store(want, Ordering::Relaxed);
        apic::arm_timer(next.map(time::deadline_tsc));
    }
}

/// Performs a switch decided by [`finish`]: interrupts disabled, the lock released.
pub fn switch_to(switch: Switch) {
    let Switch::To { from, to } = switch else {
        return;
    };
    if from.index() >= MAX_CPUS {
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

fn check_canary(task: TaskId) {
    // SAFETY: the bottom word of a created task's stack is only written by `spawn`; reading
    // it races with nothing but a stack overflow, which is what we look for.
    let word = unsafe { ((*STACKS.0.get())[task.index()].as_ptr() as *const u64).read_volatile() };
    if word != STACK_CANARY {
        crate::fatal(format_args!(
            "task {} ({}) overflowed its {} KiB stack",
            task.index(),
            task_name(task),
            TASK_STACK_SIZE / 1024
        ));
    }
}

/// One entry into the kernel from a task: `f` runs under the lock with this core and the
/// time, and returns its result, the cores that must reschedule and its own switch
/// decision. Interrupts stay off until this task runs again.
#[track_caller]
pub fn enter<R>(f: impl FnOnce(&mut State, CoreId, u64) -> (R, Resched, Switch)) -> R {
    let _irq = IrqGuard::new();
    let core = this_core();
    let (result, switch) = {
        let mut state = STATE.lock();
        let now = time::now_ns();
        let (result, resched, switch) = f(&mut state, core, now);
        let switch = finish(&mut state, core, now, resched, switch);
        (result, switch)
    };
    switch_to(switch);
    result
}

/// Starts scheduling on this CPU; its boot context becomes its idle task. Never returns.
pub fn run_idle() -> ! {
    let core = this_core();
    crate::trace::start();
    {
        let _irq = IrqGuard::new();
        let switch = {
            let mut state = STATE.lock();
            let now = time::now_ns();
            let switch = state.kernel.schedule(core, now).unwrap_or(Switch::Stay);
            finish(&mut state, core, now, Resched::NONE, switch)
        };
        switch_to(switch);
    }
    crate::arch::enable_interrupts();
    loop {
        if core.index() == 0 && crate::console::drain() {
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
    let entry = crate::trace::irq_entry(vector);
    apic::eoi();
    let core = this_core();
    let switch = {
        let mut state = STATE.lock();
        let now = time::now_ns();
        match vector {
            TIMER_VECTOR => {
                TIMER_IRQS[core.index()].fetch_add(1, Ordering::Relaxed);
                // The timer fired, so it is disarmed now (whatever it was armed for).
                ARMED_NS[core.index()].store(u64::MAX, Ordering::Relaxed);
                let resched = state
                    .kernel
                    .expire_timers(core, now)
                    .unwrap_or(Resched::NONE);
                // `tick` decides for this core after the expiries: only the others are
                // left in `resched`.
                let switch = state.kernel.tick(core, now).unwrap_or(Switch::Stay);
                crate::trace::timer_decided(entry);
                finish(&mut state, core, now, resched.without(core), switch)
            }
            RESCHED_VECTOR => {
                let switch = state.kernel.schedule(core, now).unwrap_or(Switch::Stay);
                finish(&mut state, core, now, Resched::NONE, switch)
            }
            DOORBELL_VECTOR => {
                let resched = crate::channels::on_doorbell(&mut state, now);
                finish(&mut state, core, now, resched, Switch::Stay)
            }
            _ => Switch::Stay,
        }
    };
    switch_to(switch);
    // Back in the task this interrupt came to; IRETQ enables interrupts.
    crate::trace::irqs_on();
}

/// Timer interrupts taken per core.
pub static TIMER_IRQS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

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
