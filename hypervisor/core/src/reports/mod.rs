//! What the hypervisor says about itself: the exit report's lines and the budget that keeps a
//! guest from flooding the console with refusals.

pub mod exits;
pub mod log_budget;
