//! The zero page (`struct boot_params`, Linux's `Documentation/arch/x86/zero-page.rst`):
//! the 4 KiB the 64-bit entry point receives in RSI.
//!
//! For a bzImage the setup header is copied from the image (`0x1f1 .. 0x202 + byte at
//! 0x201`) and the loader's fields are filled in; for a `vmlinux` there is no header, so a
//! minimal valid one is written. Everything else is zero, including the sentinel at 0x1ef
//! (a non-zero sentinel makes Linux wipe fields it thinks a careless loader left).

use core::fmt;

use super::bzimage::{
    BOOT_FLAG_MAGIC, BzImage, CAN_USE_HEAP, HEADER_MAGIC, LOADED_HIGH, QUIET_FLAG,
    XLF_CAN_BE_LOADED_ABOVE_4G, XLF_KERNEL_64, hdr,
};
use super::e820::{E820Entry, E820Type, MAX_ENTRIES};
use super::{le_u32, le_u64, put};
use crate::linux::place::FOUR_GIB;
use crate::support::fixed::FixedList;

/// Size of the zero page.
pub const ZERO_PAGE_SIZE: usize = 4096;

/// Offsets of the zero page's own fields (outside the setup header).
pub mod zp {
    /// u64: physical address of the RSDP.
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    /// u32: initrd address, high 32 bits.
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    /// u32: initrd size, high 32 bits.
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    /// u32: command line address, high 32 bits.
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    /// u8: number of e820 entries.
    pub const E820_ENTRIES: usize = 0x1e8;
    /// u8: must stay zero.
    pub const SENTINEL: usize = 0x1ef;
    /// The e820 table: `MAX_ENTRIES` entries of 20 bytes.
    pub const E820_TABLE: usize = 0x2d0;
    /// Size of one e820 entry.
    pub const E820_ENTRY_SIZE: usize = 20;
}

/// `type_of_loader`: a loader without an assigned ID.
pub const LOADER_UNDEFINED: u8 = 0xff;
/// `heap_end_ptr`: the real-mode heap ends at 0xfe00 + 0x200 in the setup segment (unused
/// on the 64-bit entry, but declared as boot loaders do).
pub const HEAP_END_PTR: u16 = 0xfe00;
/// The protocol version written into a `vmlinux`'s made-up header (2.15).
pub const VMLINUX_VERSION: u16 = 0x020f;
/// Longest command line assumed for a `vmlinux` (x86 `COMMAND_LINE_SIZE` is 2048 with
/// the NUL).
pub const VMLINUX_CMDLINE_SIZE: u32 = 2047;

/// Where the kernel's header comes from.
#[derive(Debug, Clone, Copy)]
pub enum Kernel<'a> {
    /// A bzImage: its header is copied.
    BzImage(&'a BzImage<'a>),
    /// A `vmlinux`: a minimal header is made up.
    Vmlinux,
}

impl Kernel<'_> {
    fn cmdline_size(&self) -> u32 {
        match self {
            Self::BzImage(k) => k.cmdline_size,
            Self::Vmlinux => VMLINUX_CMDLINE_SIZE,
        }
    }

    fn above_4g(&self) -> bool {
        match self {
            Self::BzImage(k) => k.can_load_above_4g(),
            Self::Vmlinux => true,
        }
    }

    fn initrd_addr_max(&self) -> u64 {
        match self {
            Self::BzImage(k) => u64::from(k.initrd_addr_max),
            Self::Vmlinux => 0x7fff_ffff,
        }
    }
}

/// The loader's side of the zero page.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootParamsInput<'a> {
    /// Where the kernel was loaded (recorded in `code32_start` when below 4 GiB).
    pub load_address: u64,
    /// Where the NUL-terminated command line lies and its length without the NUL; `None`
    /// for no command line.
    pub cmdline: Option<(u64, u32)>,
    /// Where the initrd lies and its size; `None` for none.
    pub initrd: Option<(u64, u64)>,
    /// Linux's memory map.
    pub e820: &'a [E820Entry],
    /// The RSDP Linux should use; 0 to let it search.
    pub acpi_rsdp: u64,
    /// Keep early boot messages quiet (`QUIET_FLAG`).
    pub quiet: bool,
}

/// Why the zero page could not be filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootParamsError {
    /// The command line is longer than the kernel's `cmdline_size`.
    CmdlineTooLong { len: u32, max: u32 },
    /// Something lies above 4 GiB and the kernel does not accept that.
    Above4G { what: &'static str, addr: u64 },
    /// The initrd ends above the kernel's `initrd_addr_max`.
    InitrdTooHigh { end: u64, max: u64 },
    /// The initrd is empty.
    EmptyInitrd,
    /// More e820 entries than the zero page holds.
    TooManyE820 { count: usize },
}

impl fmt::Display for BootParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::CmdlineTooLong { len, max } => write!(
                f,
                "boot params: linux.cmdline is {len} bytes, the kernel accepts at most {max} (cmdline_size)"
            ),
            Self::Above4G { what, addr } => write!(
                f,
                "boot params: the {what} at {addr:#x} is above 4 GiB and the kernel lacks XLF_CAN_BE_LOADED_ABOVE_4G"
            ),
            Self::InitrdTooHigh { end, max } => write!(
                f,
                "boot params: the initrd ends at {end:#x}, above the kernel's initrd_addr_max {max:#x}"
            ),
            Self::EmptyInitrd => f.write_str("boot params: the initrd is empty"),
            Self::TooManyE820 { count } => write!(
                f,
                "boot params: {count} e820 entries, the zero page holds {MAX_ENTRIES}"
            ),
        }
    }
}

fn set_u8(bp: &mut [u8; ZERO_PAGE_SIZE], offset: usize, value: u8) {
    put(bp, offset, &[value]);
}

fn set_u16(bp: &mut [u8; ZERO_PAGE_SIZE], offset: usize, value: u16) {
    put(bp, offset, &value.to_le_bytes());
}

fn set_u32(bp: &mut [u8; ZERO_PAGE_SIZE], offset: usize, value: u32) {
    put(bp, offset, &value.to_le_bytes());
}

fn set_u64(bp: &mut [u8; ZERO_PAGE_SIZE], offset: usize, value: u64) {
    put(bp, offset, &value.to_le_bytes());
}

/// Splits `value` into its low half (written at `low`) and high half (at `high`).
fn set_split(bp: &mut [u8; ZERO_PAGE_SIZE], low: usize, high: usize, value: u64) {
    set_u32(bp, low, value as u32);
    set_u32(bp, high, (value >> 32) as u32);
}

/// Writes the minimal header a `vmlinux` needs: the magic numbers, a 2.15 version and the
/// limits a modern x86-64 kernel has.
fn vmlinux_header(bp: &mut [u8; ZERO_PAGE_SIZE]) {
    set_u16(bp, hdr::VID_MODE, 0xffff);
    set_u16(bp, hdr::BOOT_FLAG, BOOT_FLAG_MAGIC);
    set_u8(bp, hdr::JUMP, 0xeb);
    set_u8(
        bp,
        hdr::JUMP + 1,
        (hdr::KERNEL_INFO_OFFSET + 4 - hdr::HEADER) as u8,
    );
    set_u32(bp, hdr::HEADER, HEADER_MAGIC);
    set_u16(bp, hdr::VERSION, VMLINUX_VERSION);
    set_u8(bp, hdr::LOADFLAGS, LOADED_HIGH);
    set_u32(bp, hdr::INITRD_ADDR_MAX, 0x7fff_ffff);
    set_u32(bp, hdr::KERNEL_ALIGNMENT, 0x20_0000);
    set_u8(bp, hdr::RELOCATABLE_KERNEL, 1);
    set_u8(bp, hdr::MIN_ALIGNMENT, 21);
    set_u16(
        bp,
        hdr::XLOADFLAGS,
        XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
    );
    set_u32(bp, hdr::CMDLINE_SIZE, VMLINUX_CMDLINE_SIZE);
}

/// Fills `bp` with the zero page for `kernel` and `input`. `bp` is cleared first.
pub fn build(
    bp: &mut [u8; ZERO_PAGE_SIZE],
    kernel: Kernel<'_>,
    input: &BootParamsInput<'_>,
) -> Result<(), BootParamsError> {
    // Check everything before writing anything.
    let above_4g = kernel.above_4g();
    let low = |what, addr: u64, size: u64| {
        if above_4g || addr.saturating_add(size) <= FOUR_GIB {
            Ok(())
        } else {
            Err(BootParamsError::Above4G { what, addr })
        }
    };
    if let Some((addr, len)) = input.cmdline {
        let max = kernel.cmdline_size();
        if len > max {
            return Err(BootParamsError::CmdlineTooLong { len, max });
        }
        low("command line", addr, u64::from(len) + 1)?;
    }
    if let Some((addr, size)) = input.initrd {
        if size == 0 {
            return Err(BootParamsError::EmptyInitrd);
        }
        low("initrd", addr, size)?;
        let end = addr.saturating_add(size);
        let max = kernel.initrd_addr_max();
        if !above_4g && end - 1 > max {
            return Err(BootParamsError::InitrdTooHigh { end, max });
        }
    }
    if input.e820.len() > MAX_ENTRIES {
        return Err(BootParamsError::TooManyE820 {
            count: input.e820.len(),
        });
    }

    bp.fill(0);
    match kernel {
        Kernel::BzImage(k) => {
            put(bp, hdr::START, k.header());
        }
        Kernel::Vmlinux => vmlinux_header(bp),
    }
    // Fields a hostile image could have pre-filled and the kernel would act on.
    set_u64(bp, hdr::SETUP_DATA, 0);
    set_u32(bp, hdr::HARDWARE_SUBARCH, 0);
    set_u64(bp, hdr::HARDWARE_SUBARCH_DATA, 0);
    set_u8(bp, zp::SENTINEL, 0);

    set_u8(bp, hdr::TYPE_OF_LOADER, LOADER_UNDEFINED);
    set_u8(bp, hdr::EXT_LOADER_VER, 0);
    set_u8(bp, hdr::EXT_LOADER_TYPE, 0);
    let loadflags = bp.get(hdr::LOADFLAGS).copied().unwrap_or(0);
    let mut loadflags = (loadflags | LOADED_HIGH | CAN_USE_HEAP) & !QUIET_FLAG;
    if input.quiet {
        loadflags |= QUIET_FLAG;
    }
    set_u8(bp, hdr::LOADFLAGS, loadflags);
    set_u16(bp, hdr::HEAP_END_PTR, HEAP_END_PTR);
    set_u32(
        bp,
        hdr::CODE32_START,
        u32::try_from(input.load_address).unwrap_or(0),
    );

    let (cmd_addr, _) = input.cmdline.unwrap_or((0, 0));
    set_split(bp, hdr::CMD_LINE_PTR, zp::EXT_CMD_LINE_PTR, cmd_addr);
    let (rd_addr, rd_size) = input.initrd.unwrap_or((0, 0));
    set_split(bp, hdr::RAMDISK_IMAGE, zp::EXT_RAMDISK_IMAGE, rd_addr);
    set_split(bp, hdr::RAMDISK_SIZE, zp::EXT_RAMDISK_SIZE, rd_size);
    set_u64(bp, zp::ACPI_RSDP_ADDR, input.acpi_rsdp);

    set_u8(bp, zp::E820_ENTRIES, input.e820.len() as u8);
    for (i, e) in input.e820.iter().enumerate() {
        let at = zp::E820_TABLE + i * zp::E820_ENTRY_SIZE;
        set_u64(bp, at, e.addr);
        set_u64(bp, at + 8, e.size);
        set_u32(bp, at + 16, e.kind.0);
    }
    Ok(())
}

/// The e820 table a zero page holds (a count above [`MAX_ENTRIES`] is cut there).
pub fn read_e820(bp: &[u8; ZERO_PAGE_SIZE]) -> FixedList<E820Entry, MAX_ENTRIES> {
    let mut list = FixedList::new();
    let count = usize::from(bp.get(zp::E820_ENTRIES).copied().unwrap_or(0)).min(MAX_ENTRIES);
    for i in 0..count {
        let at = zp::E820_TABLE + i * zp::E820_ENTRY_SIZE;
        let entry = E820Entry::new(
            le_u64(bp, at).unwrap_or(0),
            le_u64(bp, at + 8).unwrap_or(0),
            E820Type(le_u32(bp, at + 16).unwrap_or(0)),
        );
        let _ = list.push(entry);
    }
    list
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use proptest::prelude::*;

    use super::super::bzimage::testing::{image, set};
    use super::*;
    use crate::linux::{le_u16, le_u32, le_u64};

    const MIB: u64 = 1 << 20;

    fn e820() -> [E820Entry; 3] {
        [
            E820Entry::new(0, 0x9f000, E820Type::RAM),
            E820Entry::new(0xf0000, 0x10000, E820Type::RESERVED),
            E820Entry::new(16 * MIB, 64 * MIB, E820Type::RAM),
        ]
    }

    fn input(map: &[E820Entry]) -> BootParamsInput<'_> {
        BootParamsInput {
            load_address: 16 * MIB,
            cmdline: Some((0x2_0000, 26)),
            initrd: Some((0x1_2345_6000, 0x1_0000_1000)),
            e820: map,
            acpi_rsdp: 0xe_0000,
            quiet: false,
        }
    }

    #[test]
    fn fields_by_offset_for_a_bzimage() {
        let mut b = image(27, 0x1000);
        b[hdr::LOADFLAGS] |= QUIET_FLAG;
        set(&mut b, hdr::SETUP_DATA, 8, 0xdead_0000);
        let k = BzImage::parse(&b).unwrap();
        let map = e820();
        let mut bp = [0xaau8; ZERO_PAGE_SIZE];
        build(&mut bp, Kernel::BzImage(&k), &input(&map)).unwrap();

        // The header is copied (setup_sects, version, xloadflags, ...).
        assert_eq!(bp[0x1f1], 27);
        assert_eq!(le_u16(&bp, 0x1fe), Some(0xaa55));
        assert_eq!(&bp[0x202..0x206], b"HdrS");
        assert_eq!(le_u16(&bp, 0x206), Some(0x020f));
        assert_eq!(le_u32(&bp, 0x230), Some(0x20_0000));
        assert_eq!(le_u64(&bp, 0x258), Some(16 * MIB));
        // Loader fields.
        assert_eq!(bp[0x210], 0xff);
        assert_eq!(bp[0x211], LOADED_HIGH | CAN_USE_HEAP);
        assert_eq!(le_u16(&bp, 0x224), Some(0xfe00));
        assert_eq!(le_u32(&bp, 0x214), Some(16 * MIB as u32));
        assert_eq!(le_u32(&bp, 0x228), Some(0x2_0000));
        assert_eq!(le_u32(&bp, 0x0c8), Some(0));
        assert_eq!(le_u32(&bp, 0x218), Some(0x2345_6000));
        assert_eq!(le_u32(&bp, 0x0c0), Some(1));
        assert_eq!(le_u32(&bp, 0x21c), Some(0x1000));
        assert_eq!(le_u32(&bp, 0x0c4), Some(1));
        assert_eq!(le_u64(&bp, 0x070), Some(0xe_0000));
        assert_eq!(le_u64(&bp, 0x250), Some(0));
        assert_eq!(bp[0x1ef], 0);
        // Outside the header and the fields set, everything is zero.
        assert!(bp[0x000..0x070].iter().all(|&x| x == 0));
        assert!(bp[0x26c..0x2d0].iter().all(|&x| x == 0));
        // e820.
        assert_eq!(bp[0x1e8], 3);
        assert_eq!(le_u64(&bp, 0x2d0 + 40), Some(16 * MIB));
        assert_eq!(le_u64(&bp, 0x2d0 + 48), Some(64 * MIB));
        assert_eq!(le_u32(&bp, 0x2d0 + 56), Some(1));
        assert_eq!(read_e820(&bp).as_slice(), &map);
        assert!(bp[0x2d0 + 60..].iter().all(|&x| x == 0));
    }

    #[test]
    fn quiet_only_when_asked() {
        let b = image(4, 0x100);
        let k = BzImage::parse(&b).unwrap();
        let mut bp = [0u8; ZERO_PAGE_SIZE];
        let mut inp = input(&[]);
        inp.quiet = true;
        build(&mut bp, Kernel::BzImage(&k), &inp).unwrap();
        assert_eq!(bp[0x211], LOADED_HIGH | CAN_USE_HEAP | QUIET_FLAG);
    }

    #[test]
    fn vmlinux_gets_a_minimal_header() {
        let mut bp = [0u8; ZERO_PAGE_SIZE];
        let map = e820();
        build(&mut bp, Kernel::Vmlinux, &input(&map)).unwrap();
        assert_eq!(le_u16(&bp, 0x1fe), Some(0xaa55));
        assert_eq!(&bp[0x202..0x206], b"HdrS");
        assert_eq!(le_u16(&bp, 0x206), Some(0x020f));
        assert_eq!(bp[0x211], LOADED_HIGH | CAN_USE_HEAP);
        assert_eq!(bp[0x210], 0xff);
        assert_eq!(le_u16(&bp, 0x236), Some(3));
        assert_eq!(le_u32(&bp, 0x238), Some(2047));
        assert_eq!(0x202 + usize::from(bp[0x201]), 0x26c);
        assert_eq!(le_u32(&bp, 0x228), Some(0x2_0000));
        assert_eq!(read_e820(&bp).as_slice(), &map);
    }

    #[test]
    fn limits() {
        let mut b = image(4, 0x100);
        set(&mut b, hdr::CMDLINE_SIZE, 4, 10);
        set(&mut b, hdr::XLOADFLAGS, 2, 1);
        let k = BzImage::parse(&b).unwrap();
        let mut bp = [0u8; ZERO_PAGE_SIZE];
        let err = |inp: &BootParamsInput<'_>| {
            let mut bp = [0u8; ZERO_PAGE_SIZE];
            build(&mut bp, Kernel::BzImage(&k), inp)
                .unwrap_err()
                .to_string()
        };
        let mut inp = input(&[]);
        assert!(err(&inp).contains("linux.cmdline is 26 bytes, the kernel accepts at most 10"));
        inp.cmdline = Some((0x2_0000, 10));
        assert!(err(&inp).contains("initrd at 0x123456000 is above 4 GiB"));
        inp.initrd = Some((0x7fff_0000, 0x2_0000));
        assert!(err(&inp).contains("initrd_addr_max 0x7fffffff"));
        inp.initrd = Some((0x7ffe_0000, 0x2_0000));
        build(&mut bp, Kernel::BzImage(&k), &inp).unwrap();
        inp.cmdline = Some((FOUR_GIB, 1));
        assert!(err(&inp).contains("command line"));
        inp.cmdline = None;
        let many = [E820Entry::default(); 129];
        inp.e820 = &many;
        assert!(err(&inp).contains("129 e820 entries"));
    }

    proptest! {
        #[test]
        fn any_header_and_input_never_panics(
            pokes in proptest::collection::vec((0x1f0usize..0x270, any::<u8>()), 0..24),
            cmd in proptest::option::of((any::<u64>(), any::<u32>())),
            rd in proptest::option::of((any::<u64>(), any::<u64>())),
            n in 0usize..140,
        ) {
            let mut b = image(4, 0x100);
            for (off, v) in pokes {
                b[off] = v;
            }
            let map = [E820Entry::new(0, 0x1000, E820Type::RAM); 140];
            let inp = BootParamsInput { cmdline: cmd, initrd: rd, e820: &map[..n], ..BootParamsInput::default() };
            let mut bp = [0u8; ZERO_PAGE_SIZE];
            if let Ok(k) = BzImage::parse(&b)
                && build(&mut bp, Kernel::BzImage(&k), &inp).is_ok()
            {
                prop_assert_eq!(read_e820(&bp).as_slice().len(), n);
                prop_assert_eq!(bp[0x1ef], 0);
            }
            let _ = build(&mut bp, Kernel::Vmlinux, &inp);
        }
    }
}
