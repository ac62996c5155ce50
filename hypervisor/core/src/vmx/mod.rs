//! What VT-x is asked and what it answers, as data: the capability check and the VMCS controls
//! derived from it, the I/O and MSR bitmaps, VM-exit decoding and counting, and the CPUID a
//! guest is shown. The image executes VMX instructions; nothing here does.

pub mod bitmaps;
pub mod caps;
pub mod cpuid;
pub mod exit;
pub mod msr_policy;
