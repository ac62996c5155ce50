//! What GRUB hands over: the multiboot2 boot information, reduced to the facts the
//! hypervisor uses (usable RAM, the firmware's whole memory map with its types, modules
//! by name, the ACPI RSDP, the command line) and
//! copied into fixed-size tables so nothing refers back to GRUB's memory afterwards.
//!
//! BIOS and UEFI boots differ only in where the memory map comes from: on UEFI the
//! firmware's own map (the EFI memory map tag) is read when it passes its checks
//! (`hv_core::boot::efi_memory_map`), GRUB's map otherwise; the RSDP comes from GRUB's ACPI
//! tags either way, never from a scan of BIOS areas.
//!
//! Every field is treated as untrusted: an absent or malformed tag becomes an error
//! naming it, never a panic.
// Reads the multiboot2 information, the modules GRUB loaded and the firmware's tables at
// the physical addresses the boot loader and the firmware give.
#![allow(unsafe_code)]

use core::fmt;

use bulkhead_config::Region;
use hv_core::boot::efi_memory_map::{EfiMapError, EfiMemoryMap};
use hv_core::linux::e820::{E820Entry, E820Type, MAX_FIRMWARE_ENTRIES};
use hv_core::memory::frames::Span;
use hv_core::support::fixed::FixedList;
use multiboot2::{BootInformation, BootInformationHeader};

/// The multiboot2 magic GRUB leaves in EAX.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;

/// Most usable-RAM ranges kept.
pub const MAX_RAM_RANGES: usize = 32;
/// Most modules kept.
pub const MAX_MODULES: usize = 8;
const CMDLINE_LEN: usize = 256;

/// A GRUB module: its command line (`module2 <file> <name> <arguments>`) and where GRUB put
/// it.
#[derive(Debug, Clone, Copy)]
pub struct Module {
    line: [u8; CMDLINE_LEN],
    line_len: usize,
    /// The command line was longer than 256 bytes and was cut.
    pub line_truncated: bool,
    pub span: Span,
}

impl Default for Module {
    fn default() -> Self {
        Self::new("", Span::default())
    }
}

impl Module {
    fn new(line: &str, span: Span) -> Self {
        let mut len = line.len().min(CMDLINE_LEN);
        while !line.is_char_boundary(len) {
            len -= 1;
        }
        let mut module = Self {
            line: [0; CMDLINE_LEN],
            line_len: len,
            line_truncated: len < line.len(),
            span,
        };
        module.line[..len].copy_from_slice(&line.as_bytes()[..len]);
        module
    }

    fn line(&self) -> &str {
        // `new` cut at a character boundary of a `str`.
        core::str::from_utf8(&self.line[..self.line_len]).unwrap_or("")
    }

    /// The module's name: the first word of its command line.
    pub fn name(&self) -> &str {
        self.line().split_ascii_whitespace().next().unwrap_or("")
    }

    /// The rest of its command line: arguments for what the module holds (the RT kernel's
    /// command line for the RT image).
    pub fn args(&self) -> &str {
        let line = self.line().trim_start();
        line[self.name().len()..].trim()
    }

    /// The module's bytes.
    pub fn bytes(&self) -> &'static [u8] {
        let len = (self.span.end - self.span.start) as usize;
        // SAFETY: GRUB loaded the module at this identity-mapped physical range; the
        // range is excluded from every allocation and partition (config fit check), so
        // nothing writes it while we read.
        unsafe { core::slice::from_raw_parts(self.span.start as *const u8, len) }
    }
}

/// Which memory map the boot facts were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMapSource {
    /// The UEFI firmware's map, passed on by the loader.
    Efi,
    /// The loader's own map (BIOS e820, or its conversion of the UEFI map).
    Multiboot,
}

impl fmt::Display for MemoryMapSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Efi => "UEFI memory map",
            Self::Multiboot => "multiboot2 memory map",
        })
    }
}

/// The boot facts, copied out of the multiboot2 information.
#[derive(Debug)]
pub struct BootInfo {
    /// Where the memory map came from.
    pub memory_map_source: MemoryMapSource,
    /// Why a UEFI memory map the loader passed was not used (the loader's map was).
    pub efi_map_refused: Option<EfiMapError>,
    ram: FixedList<Region, MAX_RAM_RANGES>,
    firmware_map: FixedList<E820Entry, MAX_FIRMWARE_ENTRIES>,
    modules: FixedList<Module, MAX_MODULES>,
    /// Where the multiboot2 information itself lies.
    pub info_span: Span,
    /// Physical address of an RSDP copy (inside the boot information).
    pub rsdp: Option<usize>,
    cmdline: [u8; CMDLINE_LEN],
    cmdline_len: usize,
    /// Usable RAM ranges and modules beyond the tables' capacity, ignored.
    pub dropped_entries: usize,
}

/// Why the boot information could not be used.
#[derive(Debug)]
pub enum BootInfoError {
    BadMagic(u32),
    Unreadable(multiboot2::LoadError),
    NoMemoryMap,
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => write!(
                f,
                "not started by a multiboot2 loader (EAX={m:#x}, expected {MULTIBOOT2_MAGIC:#x})"
            ),
            Self::Unreadable(e) => write!(f, "multiboot2 boot information unreadable: {e:?}"),
            Self::NoMemoryMap => f.write_str("multiboot2 boot information has no memory map"),
        }
    }
}

/// The body of a multiboot2 tag: its bytes after the 8-byte type and size, as long as the
/// tag's size field says.
///
/// # Safety
/// `tag` must be a tag inside intact boot information.
unsafe fn tag_body<T: ?Sized>(tag: &T) -> &[u8] {
    let start = core::ptr::from_ref(tag).cast::<u8>();
    // SAFETY: every tag starts with its type and size (two u32), 8-aligned (the caller's
    // contract); the multiboot2 crate checked that the size keeps the tag inside the
    // information.
    let size = unsafe { start.cast::<u32>().add(1).read() } as usize;
    // SAFETY: as above: `size` bytes from `start` are the tag.
    unsafe { core::slice::from_raw_parts(start.add(8), size.saturating_sub(8)) }
}

impl BootInfo {
    /// Reads the boot information at `addr`.
    ///
    /// # Safety
    /// `addr` must be the address GRUB passed in EBX, still intact.
    pub unsafe fn parse(magic: u32, addr: usize) -> Result<Self, BootInfoError> {
        if magic != MULTIBOOT2_MAGIC {
            return Err(BootInfoError::BadMagic(magic));
        }
        // SAFETY: the loader's contract (magic checked above) and the caller's.
        let mbi = unsafe { BootInformation::load(addr as *const BootInformationHeader) }
            .map_err(BootInfoError::Unreadable)?;
        let mut info = Self {
            memory_map_source: MemoryMapSource::Multiboot,
            efi_map_refused: None,
            ram: FixedList::new(),
            firmware_map: FixedList::new(),
            modules: FixedList::new(),
            info_span: Span {
                start: mbi.start_address() as u64,
                end: mbi.end_address() as u64,
            },
            rsdp: None,
            cmdline: [0; CMDLINE_LEN],
            cmdline_len: 0,
            dropped_entries: 0,
        };

        if let Some(tag) = mbi.efi_memory_map_tag() {
            // SAFETY: the tag lies inside the boot information the caller vouches for.
            match EfiMemoryMap::parse(unsafe { tag_body(tag) }) {
                Ok(map) => {
                    info.memory_map_source = MemoryMapSource::Efi;
                    for entry in map.e820_entries() {
                        info.add_range(entry);
                    }
                }
                Err(e) => info.efi_map_refused = Some(e),
            }
        }
        if info.memory_map_source == MemoryMapSource::Multiboot {
            let map = mbi.memory_map_tag().ok_or(BootInfoError::NoMemoryMap)?;
            for area in map.memory_areas() {
                let kind = E820Type(area.typ().val());
                info.add_range(E820Entry::new(area.start_address(), area.size(), kind));
            }
        }
        info.ram.as_mut_slice().sort_unstable_by_key(|r| r.base);

        for m in mbi.module_tags() {
            let name = m.cmdline().unwrap_or("").trim();
            let start = u64::from(m.start_address());
            let module = Module::new(
                name,
                Span {
                    start,
                    end: u64::from(m.end_address()).max(start),
                },
            );
            if info.modules.push(module).is_err() {
                info.dropped_entries += 1;
            }
        }

        // The RSDP tags carry a copy of the RSDP after the 8-byte tag header.
        if let Some(tag) = mbi.rsdp_v2_tag() {
            info.rsdp = Some(core::ptr::from_ref(tag).cast::<u8>() as usize + 8);
        } else if let Some(tag) = mbi.rsdp_v1_tag() {
            info.rsdp = Some(core::ptr::from_ref(tag).cast::<u8>() as usize + 8);
        }

        if let Some(Ok(cmdline)) = mbi.command_line_tag().map(|t| t.cmdline()) {
            let n = cmdline.len().min(CMDLINE_LEN);
            info.cmdline[..n].copy_from_slice(&cmdline.as_bytes()[..n]);
            info.cmdline_len = n;
        }
        Ok(info)
    }

    /// Records one range of the firmware's map (and, if it is free RAM, of usable RAM);
    /// empty ranges are left out, ranges beyond the tables' room counted.
    fn add_range(&mut self, entry: E820Entry) {
        if entry.size == 0 {
            return;
        }
        if self.firmware_map.push(entry).is_err() {
            self.dropped_entries += 1;
        }
        let ram = Region {
            base: entry.addr,
            size: entry.size,
        };
        if entry.kind == E820Type::RAM && self.ram.push(ram).is_err() {
            self.dropped_entries += 1;
        }
    }

    /// The firmware's memory map (every type), as GRUB passed it.
    pub fn firmware_map(&self) -> &[E820Entry] {
        self.firmware_map.as_slice()
    }

    /// Usable RAM ranges, sorted by base.
    pub fn usable_ram(&self) -> &[Region] {
        self.ram.as_slice()
    }

    /// All modules, in GRUB's order.
    pub fn modules(&self) -> impl Iterator<Item = &Module> {
        self.modules.as_slice().iter()
    }

    /// The module whose name is `name`.
    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules().find(|m| m.name() == name)
    }

    /// The hypervisor's command line (`multiboot2 /boot/... <this>`).
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// Whether the command line holds `key=value` as one word.
    pub fn has_option(&self, key: &str, value: &str) -> bool {
        self.cmdline().split_ascii_whitespace().any(|w| {
            w.split_once('=')
                .is_some_and(|(k, v)| k == key && v == value)
        })
    }

    /// The value of option `key` (`key=value`) on the command line, the last one if repeated.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.cmdline()
            .split_ascii_whitespace()
            .filter_map(|w| w.split_once('='))
            .filter(|&(k, _)| k == key)
            .map(|(_, v)| v)
            .next_back()
    }

    /// Copies firmware memory at `addr` into `buf`, as the ACPI table readers need it:
    /// only below 4 GiB, and only outside usable RAM (where firmware keeps its tables) or
    /// inside the boot information (which holds GRUB's copy of the RSDP). `None` otherwise.
    pub fn read_firmware(&self, addr: u64, buf: &mut [u8]) -> Option<()> {
        const FOUR_GIB: u64 = 1 << 32;
        let end = addr.checked_add(buf.len() as u64)?;
        let want = Region::new(addr, end - addr);
        let info = self.info_span;
        let in_info = addr >= info.start && end <= info.end;
        let in_ram = self.usable_ram().iter().any(|r| r.overlaps(&want));
        if end > FOUR_GIB || (in_ram && !in_info) {
            return None;
        }
        // SAFETY: the range lies below 4 GiB (identity-mapped by the hypervisor) and is
        // either firmware memory outside usable RAM or the boot information; reading it has
        // no side effects.
        unsafe {
            core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len());
        }
        Some(())
    }

    /// Total usable RAM in bytes.
    pub fn total_ram(&self) -> u64 {
        self.usable_ram().iter().map(|r| r.size).sum()
    }
}
