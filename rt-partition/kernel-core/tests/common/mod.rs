//! Helpers shared by the property tests.
#![allow(dead_code, reason = "each test file uses a different subset")]

use bulkhead_rt_core::{CoreId, Kernel, Policy, Priority, TaskConfig, TaskId};

pub fn core(index: u8) -> CoreId {
    CoreId::new(index)
}

pub fn fifo(core_index: u8, priority: u8) -> TaskConfig {
    TaskConfig {
        core: core(core_index),
        priority: Priority::new(priority),
        policy: Policy::Fifo,
    }
}

/// Creates a FIFO task alone on its core and makes it the core's current task.
pub fn running_task<const T: usize, const C: usize>(
    kernel: &mut Kernel<T, C>,
    core_index: u8,
    priority: u8,
    now: u64,
) -> TaskId {
    let task = kernel.create_task(fifo(core_index, priority)).unwrap();
    let _ = kernel.schedule(core(core_index), now).unwrap();
    assert_eq!(kernel.current(core(core_index)), Ok(task));
    task
}

/// A small deterministic generator, for long simulations whose inputs would be too many
/// for proptest to generate one by one.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
}
