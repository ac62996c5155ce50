//! Booting a stock Linux kernel in the Linux partition: the loader's side of the x86 boot
//! protocol (Linux's `Documentation/arch/x86/boot.rst`, protocol 2.12 and later, 64-bit
//! entry).
//!
//! - [`bzimage`] reads a bzImage's real-mode header and splits it into setup and kernel;
//! - [`vmlinux`] reads an uncompressed 64-bit `vmlinux` ELF into a load plan;
//! - [`place`] chooses where the kernel (and the initrd, command line, zero page) go in
//!   the partition's RAM;
//! - [`e820`] builds the memory map Linux is given from the firmware's map and the config;
//! - [`boot_params`] fills the 4 KiB zero page.
//!
//! Everything a boot module or the firmware hands over is hostile: these parsers check
//! every offset and length, return an error that names what is wrong, allocate nothing
//! and never panic, whatever the bytes. They write only into buffers the caller provides;
//! copying bytes into guest memory and entering the guest is the image's business.

pub mod boot_params;
pub mod bzimage;
pub mod e820;
pub mod place;
pub mod vmlinux;

/// `N` little-endian bytes at `offset`, if they are all inside `bytes`.
fn bytes_at<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    bytes.get(offset..end)?.try_into().ok()
}

fn le_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    bytes_at(bytes, offset).map(u16::from_le_bytes)
}

fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    bytes_at(bytes, offset).map(u32::from_le_bytes)
}

fn le_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    bytes_at(bytes, offset).map(u64::from_le_bytes)
}

/// Writes `value`'s little-endian bytes at `offset`; `false` if they do not fit.
fn put(bytes: &mut [u8], offset: usize, value: &[u8]) -> bool {
    let Some(end) = offset.checked_add(value.len()) else {
        return false;
    };
    match bytes.get_mut(offset..end) {
        Some(dst) => {
            dst.copy_from_slice(value);
            true
        }
        None => false,
    }
}
