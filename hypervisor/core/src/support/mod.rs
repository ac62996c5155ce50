//! Small helpers every part uses: a fixed-capacity list for boot-time tables and bounds-checked
//! little-endian fields in untrusted byte buffers.

pub mod fixed;
pub(crate) mod le;
