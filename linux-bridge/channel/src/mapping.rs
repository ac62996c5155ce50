//! Memory mappings of a file: `/dev/mem` at a channel's physical address, or an ordinary file
//! standing in for physical memory in tests. This module and the endpoints' construction of a
//! ring view over it hold the library's only `unsafe` code.
//!
//! A [`Mapping`] never hands out the mapped bytes as `&[u8]` or `&mut [u8]`: the only view of
//! them is as aligned 8-byte atomics ([`Mapping::words`], [`Mapping::region`]), which is what
//! [`SharedRegion`] requires. Whatever another process, partition or device writes there is data
//! the ring crate treats as untrusted; it cannot cause a data race inside this program.
//!
//! Two ends of a channel must not be driven by two producers (or two consumers) at once. An
//! endpoint takes an open-file-description lock on one byte of the mapped file
//! ([`Mapping::lock_end`]): the byte at the channel's offset for its producer, the next one for
//! its consumer. The lock is released when the mapping (and its file) is dropped.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use bulkhead_ring::{LayoutError, SharedRegion};

use crate::error::{Error, Result};

/// The device that maps physical memory.
pub const DEV_MEM: &str = "/dev/mem";

/// How the mapped file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Caching {
    /// `O_SYNC`: on `/dev/mem` the kernel maps the range uncached (`UC-`). The default, and
    /// what the channel announcement's physical ranges are opened with.
    #[default]
    Sync,
    /// No `O_SYNC`: on `/dev/mem` the kernel maps the range write-back, like the RT side does.
    Cached,
}

/// Which end of a channel an endpoint drives (for [`Mapping::lock_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The sending end.
    Producer,
    /// The receiving end.
    Consumer,
}

impl End {
    /// `"producer"` or `"consumer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Consumer => "consumer",
        }
    }
}

/// `len` bytes of a file at `offset`, mapped shared, readable and writable; unmapped on drop.
///
/// On an ordinary file, the file must not be truncated below the mapping's end while it is
/// mapped (the kernel would raise `SIGBUS` on the next access); `/dev/mem` has no such issue.
#[derive(Debug)]
pub struct Mapping {
    /// Start of the kernel's mapping (page-aligned).
    base: NonNull<u8>,
    /// Length of the kernel's mapping.
    map_len: usize,
    /// Where the requested range starts within the kernel's mapping (a multiple of 8).
    delta: usize,
    /// Length of the requested range.
    len: usize,
    /// File offset of the requested range.
    offset: u64,
    /// The mapped file.
    path: PathBuf,
    /// Kept open for the locks on it (closing it releases them).
    file: File,
}

// SAFETY: a `Mapping` owns its mapping (a range of the address space that stays valid until
// `Drop`) and its file; it hands out the mapped bytes only as atomics, which any thread may use.
unsafe impl Send for Mapping {}
// SAFETY: as above: `&Mapping` gives only atomic access to the mapped bytes.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `path` at `offset` with [`Caching::Sync`].
    ///
    /// `offset` must be a multiple of 8 (channels are page-aligned); it need not be
    /// page-aligned. For a regular file, the file must be at least `offset + len` bytes long.
    pub fn open(path: impl AsRef<Path>, offset: u64, len: usize) -> Result<Self> {
        Self::open_with(path, offset, len, Caching::default())
    }

    /// Maps `len` bytes of `path` at `offset`, opened as `caching` says.
    pub fn open_with(
        path: impl AsRef<Path>,
        offset: u64,
        len: usize,
        caching: Caching,
    ) -> Result<Self> {
        let path = path.as_ref();
        let invalid = |why: String| {
            Error::io_path(
                "map",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, why),
            )
        };
        if len == 0 || !offset.is_multiple_of(8) {
            return Err(invalid(format!(
                "{len} bytes at {offset:#x}: need a nonzero length at a multiple of 8"
            )));
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if caching == Caching::Sync {
            options.custom_flags(libc::O_SYNC);
        }
        let file = options
            .open(path)
            .map_err(|e| Error::io_path("open", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io_path("stat", path, e))?;
        let end = offset.checked_add(len as u64);
        if meta.is_file() && end.is_none_or(|end| meta.len() < end) {
            return Err(invalid(format!(
                "the file is {:#x} bytes, shorter than {offset:#x} + {len:#x}",
                meta.len()
            )));
        }
        let page = page_size();
        let delta = (offset % page as u64) as usize;
        let start = offset - delta as u64;
        let map_len = len
            .checked_add(delta)
            .and_then(|l| l.checked_next_multiple_of(page))
            .filter(|&l| l <= isize::MAX as usize)
            .ok_or_else(|| invalid(format!("{len:#x} bytes is too long")))?;
        let file_offset = libc::off_t::try_from(start)
            .map_err(|_| invalid(format!("offset {offset:#x} is too large")))?;
        // SAFETY: a fresh shared mapping chosen by the kernel (null hint, no MAP_FIXED), so it
        // replaces nothing of this program's; the arguments are checked by the kernel, and the
        // result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::io(
                format!("map {len:#x} bytes of {} at {offset:#x}", path.display()),
                io::Error::last_os_error(),
            ));
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| invalid("mapped at 0".into()))?;
        Ok(Self {
            base,
            map_len,
            delta,
            len,
            offset,
            path: path.to_owned(),
            file,
        })
    }

    /// Length of the mapped range in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a mapping has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The range's offset in the file (a physical address, for `/dev/mem`).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The mapped file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mapped range as 8-byte atomic words (`len / 8` of them).
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the returned slice borrows `self`, which keeps the range mapped.
        unsafe { self.words_unbounded() }
    }

    /// The mapped range as a channel region (fails if it is smaller than a header page or its
    /// length is not a multiple of 8).
    pub fn region(&self) -> Result<SharedRegion<'_>, LayoutError> {
        if !self.len.is_multiple_of(8) {
            return Err(LayoutError::Misaligned);
        }
        SharedRegion::from_words(self.words())
    }

    /// [`Mapping::region`], borrowing for any lifetime the caller picks.
    ///
    /// # Safety
    ///
    /// The caller must keep this `Mapping` alive (not dropped, so the range stays mapped) for
    /// all of `'a`. Moving it is fine: the range does not move with it.
    pub(crate) unsafe fn region_unbounded<'a>(&self) -> Result<SharedRegion<'a>, LayoutError> {
        if !self.len.is_multiple_of(8) {
            return Err(LayoutError::Misaligned);
        }
        // SAFETY: the caller keeps `self` alive for `'a`.
        SharedRegion::from_words(unsafe { self.words_unbounded() })
    }

    /// The words of the range, for any lifetime the caller picks.
    ///
    /// # Safety
    ///
    /// The caller must keep this `Mapping` alive for all of `'a`.
    unsafe fn words_unbounded<'a>(&self) -> &'a [AtomicU64] {
        // SAFETY: `base + delta` is inside the kernel's mapping of `map_len >= delta + len`
        // bytes, which stays mapped, readable and writable until `Drop`, and the caller keeps
        // `self` from being dropped for `'a`. `base` is page-aligned and `delta` a multiple of
        // 8 (checked in `open_with`), so the pointer is aligned for `AtomicU64`; `len / 8` words
        // fit in the range, and the mapping is at most `isize::MAX` bytes (checked). Every bit
        // pattern is a valid `AtomicU64`. Nothing in this program accesses the range other
        // than through this slice of atomics (the type hands out no other view); writes by
        // other processes or partitions are outside the program and are atomic word stores or
        // untrusted data as far as the ring crate is concerned.
        unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(self.delta).cast::<AtomicU64>(),
                self.len / 8,
            )
        }
    }

    /// Takes the lock on `end` of the channel at this mapping's offset, for as long as this
    /// mapping lives: `Ok(false)` if another open file description (in this program or another)
    /// holds it. A file system that has no such locks answers with an error.
    pub fn lock_end(&self, end: End) -> io::Result<bool> {
        let byte = match end {
            End::Producer => self.offset,
            End::Consumer => self.offset.saturating_add(1),
        };
        let start = libc::off_t::try_from(byte)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `flock` is a plain C struct of integers; all zeroes is a valid value.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = start;
        lock.l_len = 1;
        // SAFETY: `F_OFD_SETLK` reads the `flock` we pass, which lives across the call; the
        // descriptor is owned by `self.file`, open for writing.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &raw mut lock) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => Ok(false),
            _ => Err(e),
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base + map_len` is the mapping `open_with` made, unmapped only here;
        // every view of it borrows `self` (or, inside the endpoints, is dropped before it).
        let rc = unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
        debug_assert_eq!(rc, 0, "munmap failed: {}", io::Error::last_os_error());
    }
}

/// The system's page size.
fn page_size() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    fn file(len: u64) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(len).unwrap();
        f
    }

    #[test]
    fn maps_at_an_offset_and_shares_with_another_mapping() {
        let f = file(0x6000);
        let a = Mapping::open(f.path(), 0x2000, 0x2000).unwrap();
        // Not page-aligned: the mapping rounds down and keeps the offset.
        let b = Mapping::open_with(f.path(), 0x2008, 0x1000, Caching::Cached).unwrap();
        assert_eq!(
            (a.len(), a.offset(), a.words().len()),
            (0x2000, 0x2000, 0x400)
        );
        a.words()[1].store(0x1234, Relaxed);
        assert_eq!(b.words()[0].load(Relaxed), 0x1234);
        drop(a);
        drop(b);
        let bytes = std::fs::read(f.path()).unwrap();
        assert_eq!(bytes[0x2008..0x2010], 0x1234u64.to_ne_bytes());
        assert!(a_region_needs_a_header(&f));
    }

    fn a_region_needs_a_header(f: &tempfile::NamedTempFile) -> bool {
        let m = Mapping::open(f.path(), 0, 0x800).unwrap();
        matches!(m.region(), Err(LayoutError::TooSmall { len: 0x800 }))
    }

    #[test]
    fn refuses_bad_ranges() {
        let f = file(0x2000);
        let e = Mapping::open(f.path(), 0x1000, 0x2000).unwrap_err();
        assert!(e.to_string().contains("shorter than"), "{e}");
        assert!(Mapping::open(f.path(), 4, 8).is_err());
        assert!(Mapping::open(f.path(), 0, 0).is_err());
        let e = Mapping::open("/nonexistent/mem", 0, 0x2000).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Io);
        assert!(
            e.to_string().starts_with("cannot open /nonexistent/mem: "),
            "{e}"
        );
    }

    #[test]
    fn end_locks_exclude_a_second_holder_until_dropped() {
        let f = file(0x4000);
        let a = Mapping::open(f.path(), 0x2000, 0x2000).unwrap();
        let b = Mapping::open(f.path(), 0x2000, 0x2000).unwrap();
        assert!(a.lock_end(End::Producer).unwrap());
        assert!(!b.lock_end(End::Producer).unwrap());
        assert!(b.lock_end(End::Consumer).unwrap());
        drop(a);
        assert!(b.lock_end(End::Producer).unwrap());
    }
}
