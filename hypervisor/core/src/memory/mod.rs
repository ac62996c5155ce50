//! Memory as the hypervisor sees it: typed host-physical and guest-physical addresses, the
//! hypervisor's own page frames, the EPT that gives each partition its memory, and walks of a
//! guest's own page tables. Decisions only: the image owns the bytes.

pub mod addr;
pub mod ept;
pub mod frames;
pub mod guest_paging;
