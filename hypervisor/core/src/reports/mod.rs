//! What the hypervisor says about itself: the exit report's lines and the budget that keeps a
//! guest from flooding the console with refusals, and the count of every refusal by kind.

pub mod exits;
pub mod log_budget;
pub mod refusals;
