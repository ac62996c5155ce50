//! A bzImage's real-mode header (boot protocol 2.12+, `boot.rst` "THE REAL-MODE KERNEL
//! HEADER"), read from a boot module we do not trust.
//!
//! A bzImage is a real-mode setup part of `(setup_sects + 1) * 512` bytes (the legacy
//! boot sector plus `setup_sects` sectors) followed by the protected-mode kernel, whose
//! 64-bit entry point lies 0x200 bytes into it once loaded. The setup header inside the
//! setup part tells the loader how to place the kernel; [`BzImage`] is a checked view of
//! it. Bytes after the kernel (a signed kernel's appended signature) are ignored.

use core::fmt;

use super::place::KernelNeeds;
use super::{le_u16, le_u32, le_u64};
use crate::memory::addr::PAGE_4K;

/// Offsets of the setup header's fields, the same in a bzImage file and in the zero page
/// (`boot.rst`, "THE REAL-MODE KERNEL HEADER").
pub mod hdr {
    /// Start of the setup header.
    pub const START: usize = 0x1f1;
    /// u8: size of the setup in 512-byte sectors, after the boot sector (0 means 4).
    pub const SETUP_SECTS: usize = 0x1f1;
    /// u16: mount the root read-only.
    pub const ROOT_FLAGS: usize = 0x1f2;
    /// u32: size of the protected-mode kernel in 16-byte paragraphs.
    pub const SYSSIZE: usize = 0x1f4;
    /// u16: video mode.
    pub const VID_MODE: usize = 0x1fa;
    /// u16: default root device.
    pub const ROOT_DEV: usize = 0x1fc;
    /// u16: 0xAA55.
    pub const BOOT_FLAG: usize = 0x1fe;
    /// u8 0xEB, then u8: the header ends at 0x202 plus this byte.
    pub const JUMP: usize = 0x200;
    /// u32: "HdrS".
    pub const HEADER: usize = 0x202;
    /// u16: boot protocol version, major in the high byte.
    pub const VERSION: usize = 0x206;
    /// u8: the boot loader's identifier.
    pub const TYPE_OF_LOADER: usize = 0x210;
    /// u8: [`LOADED_HIGH`](super::LOADED_HIGH) and friends.
    pub const LOADFLAGS: usize = 0x211;
    /// u32: 32-bit entry (the load address for a relocated kernel).
    pub const CODE32_START: usize = 0x214;
    /// u32: initrd address (low 32 bits).
    pub const RAMDISK_IMAGE: usize = 0x218;
    /// u32: initrd size (low 32 bits).
    pub const RAMDISK_SIZE: usize = 0x21c;
    /// u16: end of the real-mode heap, minus 0x200.
    pub const HEAP_END_PTR: usize = 0x224;
    /// u8: extended loader version.
    pub const EXT_LOADER_VER: usize = 0x226;
    /// u8: extended loader type.
    pub const EXT_LOADER_TYPE: usize = 0x227;
    /// u32: command line address (low 32 bits).
    pub const CMD_LINE_PTR: usize = 0x228;
    /// u32: highest address the initrd may occupy.
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    /// u32: physical alignment the kernel wants.
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    /// u8: whether the kernel may be loaded anywhere.
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    /// u8: log2 of the minimum alignment.
    pub const MIN_ALIGNMENT: usize = 0x235;
    /// u16: [`XLF_KERNEL_64`](super::XLF_KERNEL_64) and friends.
    pub const XLOADFLAGS: usize = 0x236;
    /// u32: longest command line, without its NUL.
    pub const CMDLINE_SIZE: usize = 0x238;
    /// u32: hardware subarchitecture (0: a PC).
    pub const HARDWARE_SUBARCH: usize = 0x23c;
    /// u64: subarchitecture data.
    pub const HARDWARE_SUBARCH_DATA: usize = 0x240;
    /// u64: physical address of a `setup_data` list.
    pub const SETUP_DATA: usize = 0x250;
    /// u64: preferred load address.
    pub const PREF_ADDRESS: usize = 0x258;
    /// u32: linear memory the kernel needs from its load address while it starts.
    pub const INIT_SIZE: usize = 0x260;
    /// u32: EFI handover entry offset.
    pub const HANDOVER_OFFSET: usize = 0x264;
    /// u32: offset of `kernel_info` in the protected-mode kernel.
    pub const KERNEL_INFO_OFFSET: usize = 0x268;
    /// The zero page's next field after the setup header: a header never runs past it.
    pub const LIMIT: usize = 0x290;
}

/// `loadflags`: the protected-mode kernel is loaded at 0x100000 or above (a bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// `loadflags`: suppress early messages.
pub const QUIET_FLAG: u8 = 1 << 5;
/// `loadflags`: `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 1 << 7;
/// `xloadflags`: the kernel has the 64-bit entry point at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags`: kernel, zero page, command line and initrd may lie above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;

/// The oldest boot protocol accepted: 2.12 brought `xloadflags` and so a declared 64-bit
/// entry point.
pub const MIN_VERSION: u16 = 0x020c;
/// The 64-bit entry point's offset from the load address.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// "HdrS".
pub const HEADER_MAGIC: u32 = u32::from_le_bytes(*b"HdrS");
/// The boot sector's signature.
pub const BOOT_FLAG_MAGIC: u16 = 0xaa55;

const SECTOR: usize = 512;

/// Why a boot module is not a bootable bzImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BzImageError {
    /// The file ends before the setup header does.
    TooShort { len: usize },
    /// No 0xAA55 at 0x1fe.
    NoBootFlag { found: u16 },
    /// No "HdrS" at 0x202.
    NoHeader,
    /// Boot protocol older than 2.12.
    TooOld { version: u16 },
    /// The setup part runs past the end of the file (sector counts include the boot sector).
    SetupTruncated {
        setup_sectors: usize,
        file_sectors: usize,
    },
    /// `syssize` is zero.
    NoKernel,
    /// The protected-mode kernel runs past the end of the file.
    KernelTruncated { claims: u64, has: usize },
    /// `loadflags` lacks `LOADED_HIGH`: an old zImage.
    NotLoadedHigh,
    /// `xloadflags` lacks `XLF_KERNEL_64`: no 64-bit entry point (a 32-bit kernel).
    No64BitEntry,
    /// `kernel_alignment` is not a power of two.
    BadAlignment { value: u32 },
    /// `init_size` is zero.
    NoInitSize,
}

impl fmt::Display for BzImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { len } => write!(
                f,
                "bzImage: only {len} bytes, too short for a setup header (need {:#x})",
                hdr::INIT_SIZE + 4
            ),
            Self::NoBootFlag { found } => write!(
                f,
                "bzImage: no boot flag 0xaa55 at 0x1fe (found {found:#06x}): not a Linux kernel"
            ),
            Self::NoHeader => f.write_str("bzImage: no \"HdrS\" signature at 0x202"),
            Self::TooOld { version } => write!(
                f,
                "bzImage: boot protocol {}.{:02} is too old (need {}.{:02})",
                version >> 8,
                version & 0xff,
                MIN_VERSION >> 8,
                MIN_VERSION & 0xff
            ),
            Self::SetupTruncated {
                setup_sectors,
                file_sectors,
            } => write!(
                f,
                "bzImage: truncated: setup claims {setup_sectors} sectors, file has {file_sectors}"
            ),
            Self::NoKernel => f.write_str("bzImage: syssize at 0x1f4 is 0: no protected-mode kernel"),
            Self::KernelTruncated { claims, has } => write!(
                f,
                "bzImage: truncated: syssize claims {claims} bytes of kernel, file has {has} after the setup"
            ),
            Self::NotLoadedHigh => f.write_str(
                "bzImage: loadflags at 0x211 lacks LOADED_HIGH: an old zImage, not a bzImage",
            ),
            Self::No64BitEntry => f.write_str(
                "bzImage: xloadflags at 0x236 lacks XLF_KERNEL_64: no 64-bit entry point (a 32-bit kernel?)",
            ),
            Self::BadAlignment { value } => write!(
                f,
                "bzImage: kernel_alignment at 0x230 is {value:#x}, not a power of two"
            ),
            Self::NoInitSize => f.write_str("bzImage: init_size at 0x260 is 0"),
        }
    }
}

/// A checked view of a bzImage: its setup header's fields and its two parts.
#[derive(Debug, Clone, Copy)]
pub struct BzImage<'a> {
    bytes: &'a [u8],
    setup_len: usize,
    kernel_len: usize,
    header_end: usize,
    /// Boot protocol version (0x020f for 2.15).
    pub version: u16,
    /// `loadflags`.
    pub loadflags: u8,
    /// `xloadflags`.
    pub xloadflags: u16,
    /// `kernel_alignment` (a power of two).
    pub kernel_alignment: u32,
    /// `relocatable_kernel`.
    pub relocatable: bool,
    /// `min_alignment` (log2).
    pub min_alignment: u8,
    /// `cmdline_size`: longest command line, without its NUL.
    pub cmdline_size: u32,
    /// `initrd_addr_max`: highest address the initrd may occupy.
    pub initrd_addr_max: u32,
    /// `pref_address`.
    pub pref_address: u64,
    /// `init_size`.
    pub init_size: u32,
    /// `handover_offset` (EFI handover; unused by a 64-bit-entry loader).
    pub handover_offset: u32,
}

impl<'a> BzImage<'a> {
    /// Checks `bytes` as a bzImage with a 64-bit entry point.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BzImageError> {
        let len = bytes.len();
        let short = BzImageError::TooShort { len };
        // Everything up to and including init_size must be there before reading any of it.
        if len < hdr::INIT_SIZE + 4 {
            return Err(short);
        }
        let u8_at = |off: usize| bytes.get(off).copied().ok_or(short);
        let u16_at = |off: usize| le_u16(bytes, off).ok_or(short);
        let u32_at = |off: usize| le_u32(bytes, off).ok_or(short);

        let boot_flag = u16_at(hdr::BOOT_FLAG)?;
        if boot_flag != BOOT_FLAG_MAGIC {
            return Err(BzImageError::NoBootFlag { found: boot_flag });
        }
        if u32_at(hdr::HEADER)? != HEADER_MAGIC {
            return Err(BzImageError::NoHeader);
        }
        let version = u16_at(hdr::VERSION)?;
        if version < MIN_VERSION {
            return Err(BzImageError::TooOld { version });
        }
        let setup_sects = match u8_at(hdr::SETUP_SECTS)? {
            0 => 4,
            n => usize::from(n),
        };
        let setup_sectors = setup_sects + 1;
        let setup_len = setup_sectors * SECTOR;
        if len < setup_len {
            return Err(BzImageError::SetupTruncated {
                setup_sectors,
                file_sectors: len / SECTOR,
            });
        }
        let syssize = u32_at(hdr::SYSSIZE)?;
        if syssize == 0 {
            return Err(BzImageError::NoKernel);
        }
        let claims = u64::from(syssize) * 16;
        let has = len - setup_len;
        let kernel_len = match usize::try_from(claims) {
            Ok(k) if k <= has => k,
            _ => return Err(BzImageError::KernelTruncated { claims, has }),
        };
        let loadflags = u8_at(hdr::LOADFLAGS)?;
        if loadflags & LOADED_HIGH == 0 {
            return Err(BzImageError::NotLoadedHigh);
        }
        let xloadflags = u16_at(hdr::XLOADFLAGS)?;
        if xloadflags & XLF_KERNEL_64 == 0 {
            return Err(BzImageError::No64BitEntry);
        }
        let kernel_alignment = u32_at(hdr::KERNEL_ALIGNMENT)?;
        if !kernel_alignment.is_power_of_two() {
            return Err(BzImageError::BadAlignment {
                value: kernel_alignment,
            });
        }
        let init_size = u32_at(hdr::INIT_SIZE)?;
        if init_size == 0 {
            return Err(BzImageError::NoInitSize);
        }
        let header_end = (hdr::HEADER + usize::from(u8_at(hdr::JUMP + 1)?))
            .min(hdr::LIMIT)
            .min(setup_len);
        Ok(Self {
            bytes,
            setup_len,
            kernel_len,
            header_end,
            version,
            loadflags,
            xloadflags,
            kernel_alignment,
            relocatable: u8_at(hdr::RELOCATABLE_KERNEL)? != 0,
            min_alignment: u8_at(hdr::MIN_ALIGNMENT)?,
            cmdline_size: u32_at(hdr::CMDLINE_SIZE)?,
            initrd_addr_max: u32_at(hdr::INITRD_ADDR_MAX)?,
            pref_address: le_u64(bytes, hdr::PREF_ADDRESS).ok_or(short)?,
            init_size,
            handover_offset: u32_at(hdr::HANDOVER_OFFSET)?,
        })
    }

    /// The real-mode part: the boot sector and the setup sectors.
    pub fn setup(&self) -> &'a [u8] {
        self.bytes.get(..self.setup_len).unwrap_or(&[])
    }

    /// The protected-mode kernel, to be copied to the load address.
    pub fn kernel(&self) -> &'a [u8] {
        self.bytes
            .get(self.setup_len..self.setup_len + self.kernel_len)
            .unwrap_or(&[])
    }

    /// The setup header's bytes, `0x1f1 .. 0x202 + byte at 0x201` (clamped to the zero
    /// page's header area), to be copied into the zero page at the same offset.
    pub fn header(&self) -> &'a [u8] {
        self.bytes.get(hdr::START..self.header_end).unwrap_or(&[])
    }

    /// Whether kernel, zero page, command line and initrd may lie above 4 GiB.
    pub fn can_load_above_4g(&self) -> bool {
        self.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0
    }

    /// What placing the kernel needs: `init_size` (or the kernel itself, if larger) from
    /// an address aligned to `kernel_alignment`.
    pub fn needs(&self) -> KernelNeeds {
        let size = u64::from(self.init_size).max(self.kernel_len as u64);
        KernelNeeds {
            pref_address: self.pref_address,
            size: size.next_multiple_of(PAGE_4K),
            alignment: u64::from(self.kernel_alignment).max(PAGE_4K),
            relocatable: self.relocatable,
            above_4g: self.can_load_above_4g(),
        }
    }

    /// The 64-bit entry point for a kernel loaded at `load_address`.
    pub fn entry_64(&self, load_address: u64) -> Option<u64> {
        load_address.checked_add(ENTRY_64_OFFSET)
    }
}

/// Builders of bzImage-shaped bytes for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod testing {
    use std::vec;
    use std::vec::Vec;

    use super::*;

    /// A plausible protocol-2.15 bzImage with `setup_sects` setup sectors and a kernel of
    /// `kernel_len` bytes (a multiple of 16) filled with 0xC3.
    pub(crate) fn image(setup_sects: u8, kernel_len: usize) -> Vec<u8> {
        let setup = (usize::from(setup_sects) + 1) * SECTOR;
        let mut b = vec![0u8; setup + kernel_len];
        b[hdr::SETUP_SECTS] = setup_sects;
        b[hdr::ROOT_FLAGS..hdr::ROOT_FLAGS + 2].copy_from_slice(&1u16.to_le_bytes());
        b[hdr::SYSSIZE..hdr::SYSSIZE + 4]
            .copy_from_slice(&((kernel_len / 16) as u32).to_le_bytes());
        b[hdr::VID_MODE..hdr::VID_MODE + 2].copy_from_slice(&0xffffu16.to_le_bytes());
        b[hdr::BOOT_FLAG..hdr::BOOT_FLAG + 2].copy_from_slice(&BOOT_FLAG_MAGIC.to_le_bytes());
        b[hdr::JUMP] = 0xeb;
        b[hdr::JUMP + 1] = 0x6a;
        b[hdr::HEADER..hdr::HEADER + 4].copy_from_slice(b"HdrS");
        b[hdr::VERSION..hdr::VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        b[hdr::LOADFLAGS] = LOADED_HIGH;
        b[hdr::INITRD_ADDR_MAX..hdr::INITRD_ADDR_MAX + 4]
            .copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        b[hdr::KERNEL_ALIGNMENT..hdr::KERNEL_ALIGNMENT + 4]
            .copy_from_slice(&0x20_0000u32.to_le_bytes());
        b[hdr::RELOCATABLE_KERNEL] = 1;
        b[hdr::MIN_ALIGNMENT] = 21;
        b[hdr::XLOADFLAGS..hdr::XLOADFLAGS + 2].copy_from_slice(&0x7fu16.to_le_bytes());
        b[hdr::CMDLINE_SIZE..hdr::CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        b[hdr::PREF_ADDRESS..hdr::PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
        b[hdr::INIT_SIZE..hdr::INIT_SIZE + 4].copy_from_slice(&0x200_0000u32.to_le_bytes());
        b[setup..].fill(0xc3);
        b
    }

    /// Overwrites the little-endian `value` of `width` bytes at `offset`.
    pub(crate) fn set(b: &mut [u8], offset: usize, width: usize, value: u64) {
        b[offset..offset + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use proptest::prelude::*;

    use super::testing::{image, set};
    use super::*;

    #[test]
    fn parses_a_good_image() {
        let b = image(27, 0x1230);
        let k = BzImage::parse(&b).unwrap();
        assert_eq!(k.setup().len(), 28 * 512);
        assert_eq!(k.kernel().len(), 0x1230);
        assert!(k.kernel().iter().all(|&x| x == 0xc3));
        assert_eq!(k.version, 0x020f);
        assert_eq!(k.header().len(), 0x26c - 0x1f1);
        assert_eq!(k.header()[0], 27);
        assert!(k.relocatable && k.can_load_above_4g());
        assert_eq!(k.entry_64(0x100_0000), Some(0x100_0200));
        let needs = k.needs();
        assert_eq!(needs.size, 0x200_0000);
        assert_eq!(needs.alignment, 0x20_0000);
        assert_eq!(needs.pref_address, 0x100_0000);
    }

    #[test]
    fn ignores_bytes_after_the_kernel() {
        let mut b = image(4, 0x100);
        b.extend_from_slice(&[0xee; 700]);
        let k = BzImage::parse(&b).unwrap();
        assert_eq!(k.kernel().len(), 0x100);
    }

    #[test]
    fn zero_setup_sects_means_four() {
        let mut b = image(4, 0x100);
        b[hdr::SETUP_SECTS] = 0;
        assert_eq!(BzImage::parse(&b).unwrap().setup().len(), 5 * 512);
    }

    #[test]
    fn errors_name_the_problem() {
        let msg = |b: &[u8]| BzImage::parse(b).unwrap_err().to_string();
        let good = image(32, 0x100);

        let mut b = good.clone();
        b[hdr::HEADER] = b'X';
        assert_eq!(msg(&b), "bzImage: no \"HdrS\" signature at 0x202");

        let mut b = good.clone();
        set(&mut b, hdr::VERSION, 2, 0x0206);
        assert_eq!(
            msg(&b),
            "bzImage: boot protocol 2.06 is too old (need 2.12)"
        );

        let b = &good[..12 * 512 + 100];
        assert_eq!(
            msg(b),
            "bzImage: truncated: setup claims 33 sectors, file has 12"
        );

        let b = &good[..good.len() - 16];
        assert_eq!(
            msg(b),
            "bzImage: truncated: syssize claims 256 bytes of kernel, file has 240 after the setup"
        );

        let mut b = good.clone();
        set(&mut b, hdr::BOOT_FLAG, 2, 0x1234);
        assert!(msg(&b).contains("no boot flag 0xaa55 at 0x1fe (found 0x1234)"));

        let mut b = good.clone();
        b[hdr::LOADFLAGS] = 0;
        assert!(msg(&b).contains("LOADED_HIGH"));

        let mut b = good.clone();
        set(&mut b, hdr::XLOADFLAGS, 2, 0);
        assert!(msg(&b).contains("XLF_KERNEL_64"));

        let mut b = good.clone();
        set(&mut b, hdr::KERNEL_ALIGNMENT, 4, 0x30_0000);
        assert!(msg(&b).contains("0x300000, not a power of two"));

        let mut b = good.clone();
        set(&mut b, hdr::INIT_SIZE, 4, 0);
        assert!(msg(&b).contains("init_size"));

        let mut b = good.clone();
        set(&mut b, hdr::SYSSIZE, 4, 0);
        assert!(msg(&b).contains("syssize"));

        assert!(msg(&good[..0x200]).contains("too short"));
        assert!(msg(&[]).contains("only 0 bytes"));
    }

    #[test]
    fn header_length_follows_the_jump_byte_but_stays_in_bounds() {
        let mut b = image(4, 0x100);
        b[hdr::JUMP + 1] = 0xff;
        let k = BzImage::parse(&b).unwrap();
        assert_eq!(hdr::START + k.header().len(), hdr::LIMIT);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            if let Ok(k) = BzImage::parse(&bytes) {
                prop_assert!(k.setup().len() + k.kernel().len() <= bytes.len());
            }
        }

        #[test]
        fn mutated_headers_never_panic(
            setup_sects in 0u8..8,
            pokes in proptest::collection::vec((0x1f0usize..0x270, any::<u8>()), 0..16),
            cut in 0usize..0x1400,
        ) {
            let mut b = image(setup_sects, 0x200);
            for (off, v) in pokes {
                b[off] = v;
            }
            b.truncate(cut.min(b.len()));
            if let Ok(k) = BzImage::parse(&b) {
                prop_assert!(k.kernel().len() <= b.len());
                prop_assert!(k.needs().alignment.is_power_of_two());
            }
        }
    }
}
