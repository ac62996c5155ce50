//! Little-endian field access in byte buffers that came from outside: every read and
//! write is bounds-checked and returns `None`/`false` instead of panicking.

/// `N` little-endian bytes at `offset`, if they are all inside `bytes`.
pub(crate) fn bytes_at<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    bytes.get(offset..end)?.try_into().ok()
}

pub(crate) fn le_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    bytes_at(bytes, offset).map(u16::from_le_bytes)
}

pub(crate) fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    bytes_at(bytes, offset).map(u32::from_le_bytes)
}

pub(crate) fn le_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    bytes_at(bytes, offset).map(u64::from_le_bytes)
}

/// Writes `value`'s little-endian bytes at `offset`; `false` if they do not fit.
pub(crate) fn put(bytes: &mut [u8], offset: usize, value: &[u8]) -> bool {
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
