//! The I/O and MSR bitmaps of the VMCS (SDM Vol. 3C, 25.6.4 and 25.6.9): which port
//! accesses and MSR accesses of a guest cause a VM exit. A set bit means "exit".

use core::ops::Range;

/// Size of the two I/O bitmaps together (A: ports 0..0x8000, B: 0x8000..0x10000).
pub const IO_BITMAP_BYTES: usize = 8192;
/// Size of the MSR bitmap page.
pub const MSR_BITMAP_BYTES: usize = 4096;

/// Sets every bit: every port access exits.
pub fn io_deny_all(bitmap: &mut [u8; IO_BITMAP_BYTES]) {
    bitmap.fill(0xff);
}

/// Lets the guest access `ports` without an exit.
pub fn io_allow(bitmap: &mut [u8; IO_BITMAP_BYTES], ports: Range<u32>) {
    for port in ports.start..ports.end.min(0x1_0000) {
        bitmap[(port / 8) as usize] &= !(1 << (port % 8));
    }
}

/// Makes accesses to `ports` exit again (after [`io_allow`]).
pub fn io_deny(bitmap: &mut [u8; IO_BITMAP_BYTES], ports: Range<u32>) {
    for port in ports.start..ports.end.min(0x1_0000) {
        bitmap[(port / 8) as usize] |= 1 << (port % 8);
    }
}

/// Whether an access to `port` exits.
pub fn io_exits(bitmap: &[u8; IO_BITMAP_BYTES], port: u16) -> bool {
    bitmap[usize::from(port / 8)] & (1 << (port % 8)) != 0
}

/// The two MSR ranges the bitmap covers.
fn msr_slot(msr: u32) -> Option<usize> {
    match msr {
        0..=0x1fff => Some(msr as usize),
        0xc000_0000..=0xc000_1fff => Some(1024 * 8 + (msr - 0xc000_0000) as usize),
        _ => None,
    }
}

/// Which accesses to intercept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrAccess {
    Read,
    Write,
    ReadWrite,
}

/// Makes accesses to `msr` exit. Returns `false` for an MSR outside the bitmap's
/// ranges (those always exit anyway).
pub fn msr_intercept(bitmap: &mut [u8; MSR_BITMAP_BYTES], msr: u32, access: MsrAccess) -> bool {
    let Some(bit) = msr_slot(msr) else {
        return false;
    };
    if matches!(access, MsrAccess::Read | MsrAccess::ReadWrite) {
        bitmap[bit / 8] |= 1 << (bit % 8);
    }
    if matches!(access, MsrAccess::Write | MsrAccess::ReadWrite) {
        let bit = bit + 2048 * 8;
        bitmap[bit / 8] |= 1 << (bit % 8);
    }
    true
}

/// Makes every write of an MSR in the bitmap's two ranges exit (writes outside them always do).
pub fn msr_intercept_all_writes(bitmap: &mut [u8; MSR_BITMAP_BYTES]) {
    bitmap[MSR_BITMAP_BYTES / 2..].fill(0xff);
}

/// Lets writes of `msr` reach the hardware without an exit. Returns `false` for an MSR outside
/// the bitmap's ranges (those always exit).
pub fn msr_pass_writes(bitmap: &mut [u8; MSR_BITMAP_BYTES], msr: u32) -> bool {
    let Some(bit) = msr_slot(msr) else {
        return false;
    };
    let bit = bit + 2048 * 8;
    bitmap[bit / 8] &= !(1 << (bit % 8));
    true
}

/// Whether a read (`write = false`) or write of `msr` exits.
pub fn msr_exits(bitmap: &[u8; MSR_BITMAP_BYTES], msr: u32, write: bool) -> bool {
    match msr_slot(msr) {
        None => true,
        Some(bit) => {
            let bit = if write { bit + 2048 * 8 } else { bit };
            bitmap[bit / 8] & (1 << (bit % 8)) != 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn io_allow_opens_exactly_the_range() {
        let mut b = [0u8; IO_BITMAP_BYTES];
        io_deny_all(&mut b);
        io_allow(&mut b, 0x3f8..0x400);
        io_allow(&mut b, 0xfff0..0x1_0000);
        assert!(io_exits(&b, 0x3f7));
        assert!(!io_exits(&b, 0x3f8));
        assert!(!io_exits(&b, 0x3ff));
        assert!(io_exits(&b, 0x400));
        assert!(!io_exits(&b, 0xffff));
        assert!(io_exits(&b, 0x8000));
    }

    #[test]
    fn all_writes_exit_but_those_let_through() {
        let mut b = [0u8; MSR_BITMAP_BYTES];
        msr_intercept_all_writes(&mut b);
        assert!(msr_pass_writes(&mut b, 0x6e0));
        assert!(msr_pass_writes(&mut b, 0xc000_0100));
        assert!(!msr_pass_writes(&mut b, 0x4000_0000));
        assert!(!msr_exits(&b, 0x6e0, true));
        assert!(!msr_exits(&b, 0xc000_0100, true));
        assert!(msr_exits(&b, 0x6df, true));
        assert!(msr_exits(&b, 0x610, true));
        assert!(msr_exits(&b, 0xc000_0101, true));
        assert!(!msr_exits(&b, 0x610, false), "reads are untouched");
    }

    #[test]
    fn msr_bitmap_quadrants() {
        let mut b = [0u8; MSR_BITMAP_BYTES];
        assert!(msr_intercept(&mut b, 0x830, MsrAccess::Write));
        assert!(msr_intercept(&mut b, 0xc000_0080, MsrAccess::ReadWrite));
        assert!(!msr_intercept(&mut b, 0x4000_0000, MsrAccess::Read));
        assert!(msr_exits(&b, 0x830, true));
        assert!(!msr_exits(&b, 0x830, false));
        assert!(msr_exits(&b, 0xc000_0080, false));
        assert!(msr_exits(&b, 0xc000_0080, true));
        assert!(!msr_exits(&b, 0x10, false));
        assert!(
            msr_exits(&b, 0x4000_0000, false),
            "outside the ranges always exits"
        );
        // Write-low quadrant starts at byte 2048.
        assert_eq!(b[2048 + 0x830 / 8], 1 << (0x830 % 8));
    }

    proptest! {
        #[test]
        fn io_ranges_compose(ranges in proptest::collection::vec((0u32..0x1_0000, 0u32..64), 0..20), probe in 0u16..=u16::MAX) {
            let mut b = [0u8; IO_BITMAP_BYTES];
            io_deny_all(&mut b);
            for &(base, n) in &ranges { io_allow(&mut b, base..base + n); }
            let inside = ranges.iter().any(|&(base, n)| u32::from(probe) >= base && u32::from(probe) < base + n);
            prop_assert_eq!(io_exits(&b, probe), !inside);
        }
    }
}
