//! Helpers shared by the unit tests.

use crate::{CoreId, Kernel, Policy, Priority, TaskConfig, TaskId};

pub(crate) fn core(index: u8) -> CoreId {
    CoreId::new(index)
}

/// Creates a FIFO task alone on core `core_index` and makes it the core's current task.
pub(crate) fn running_task<const TASKS: usize, const CORES: usize>(
    kernel: &mut Kernel<TASKS, CORES>,
    core_index: u8,
    priority: u8,
) -> TaskId {
    let task = kernel
        .create_task(TaskConfig {
            core: core(core_index),
            priority: Priority::new(priority),
            policy: Policy::Fifo,
        })
        .unwrap();
    let _ = kernel.schedule(core(core_index), 0).unwrap();
    assert_eq!(kernel.current(core(core_index)), Ok(task));
    task
}
