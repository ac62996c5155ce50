//! Walking a guest's own page tables: guest-linear to guest-physical addresses.
//!
//! To emulate an instruction (an MMIO access, see [`crate::devices::mmio`]) the hypervisor reads its
//! bytes at the guest's RIP, a linear address. [`translate`] walks the guest's page tables
//! as the CPU would for each paging mode a guest passes through while starting: none
//! (CR0.PG clear), 32-bit (with 4 MiB pages under CR4.PSE), PAE (2 MiB pages), 4-level and
//! 5-level (CR4.LA57; 2 MiB and 1 GiB pages). [`read_linear`] reads bytes page by page, so a
//! read may cross into a page mapped anywhere else.
//!
//! Every table and every byte is read through [`GuestMemory`], which refuses anything
//! outside the partition's RAM: the tables are the guest's, so each entry is a claim. Access
//! rights and reserved bits are not checked: the hypervisor only reads code the guest has
//! just executed, so the CPU has already checked them; a missing entry or an unreadable table
//! is an error naming the level and address. This is hand-written because no crate walks
//! all these modes in `no_std` without allocation and through a memory that may refuse.
//!
//! One difference from the CPU: in PAE mode the CPU uses the four PDPTEs it loaded with CR3
//! (with EPT, the VMCS guest PDPTE fields); we read them from memory again, which differs
//! only if the guest rewrote its PDPT without reloading CR3.

use core::fmt;

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;

const PRESENT: u64 = 1 << 0;
/// Page size: the entry maps a large page instead of naming a table.
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Bits 51:12 of a 64-bit entry (or of CR3 in long mode): a table's or a page's address.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 0x1000;

/// Reads guest-physical memory; refuses (`None`) anything outside the partition's RAM.
pub trait GuestMemory {
    /// The little-endian 8 bytes at `gpa`.
    fn read_u64(&self, gpa: u64) -> Option<u64>;
    /// Fills `buf` from `gpa`, all or nothing.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Option<()>;
}

/// The guest registers that decide how linear addresses translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PagingState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    /// IA32_EFER; only LMA (bit 10, long mode active) counts.
    pub efer: u64,
}

/// The paging modes of SDM Vol. 3A 4.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG clear: linear addresses are physical.
    Off,
    /// 32-bit paging: two levels of 4-byte entries.
    Bits32,
    /// PAE without long mode: 4 PDPTEs, then two levels of 8-byte entries.
    Pae,
    /// 4-level paging (long mode).
    Level4,
    /// 5-level paging (long mode with CR4.LA57).
    Level5,
}

impl PagingState {
    /// The mode these registers select.
    pub fn mode(&self) -> PagingMode {
        if self.cr0 & CR0_PG == 0 {
            PagingMode::Off
        } else if self.efer & EFER_LMA != 0 {
            if self.cr4 & CR4_LA57 != 0 {
                PagingMode::Level5
            } else {
                PagingMode::Level4
            }
        } else if self.cr4 & CR4_PAE != 0 {
            PagingMode::Pae
        } else {
            PagingMode::Bits32
        }
    }
}

/// A level of the page-table hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Pml5,
    Pml4,
    /// The page-directory-pointer table (in PAE mode, the four PDPTEs).
    Pdpt,
    /// The page directory.
    Pd,
    /// The page table.
    Pt,
}

impl Level {
    /// Lowest linear-address bit this level's index covers (64-bit entries).
    fn shift(self) -> u32 {
        match self {
            Self::Pml5 => 48,
            Self::Pml4 => 39,
            Self::Pdpt => 30,
            Self::Pd => 21,
            Self::Pt => 12,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pml5 => "PML5",
            Self::Pml4 => "PML4",
            Self::Pdpt => "PDPT",
            Self::Pd => "page directory",
            Self::Pt => "page table",
        })
    }
}

/// Why a linear address could not be translated or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// Not canonical for the current paging mode (48 or 57 bits).
    NonCanonical { linear: u64 },
    /// The `level` entry at guest-physical `entry` has its present bit clear.
    NotPresent {
        linear: u64,
        level: Level,
        entry: u64,
    },
    /// The `level` entry at guest-physical `entry` lies outside the partition's RAM.
    TableUnreadable {
        linear: u64,
        level: Level,
        entry: u64,
    },
    /// `linear` translates to `gpa`, outside the partition's RAM.
    DataUnreadable { linear: u64, gpa: u64 },
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NonCanonical { linear } => {
                write!(f, "linear address {linear:#x} is not canonical")
            }
            Self::NotPresent {
                linear,
                level,
                entry,
            } => write!(
                f,
                "linear address {linear:#x}: {level} entry at {entry:#x} is not present"
            ),
            Self::TableUnreadable {
                linear,
                level,
                entry,
            } => write!(
                f,
                "linear address {linear:#x}: {level} entry at {entry:#x} is outside guest memory"
            ),
            Self::DataUnreadable { linear, gpa } => write!(
                f,
                "linear address {linear:#x} maps to {gpa:#x}, outside guest memory"
            ),
        }
    }
}

/// Translates `linear` to a guest-physical address through the guest's page tables.
///
/// Outside long mode linear addresses are 32 bits wide: higher bits are dropped, as the
/// CPU wraps them.
pub fn translate<M: GuestMemory + ?Sized>(
    state: &PagingState,
    linear: u64,
    mem: &M,
) -> Result<u64, WalkError> {
    use Level::*;
    let low32 = linear & 0xffff_ffff;
    match state.mode() {
        PagingMode::Off => Ok(low32),
        PagingMode::Bits32 => walk_32(state, low32, mem),
        PagingMode::Pae => walk_64(low32, state.cr3 & 0xffff_ffe0, &[Pdpt, Pd], false, mem),
        PagingMode::Level4 => {
            canonical(linear, 48)?;
            walk_64(linear, state.cr3 & ADDR_MASK, &[Pml4, Pdpt, Pd], true, mem)
        }
        PagingMode::Level5 => {
            canonical(linear, 57)?;
            walk_64(
                linear,
                state.cr3 & ADDR_MASK,
                &[Pml5, Pml4, Pdpt, Pd],
                true,
                mem,
            )
        }
    }
}

/// Reads `buf.len()` bytes at `linear`, translating each page separately.
pub fn read_linear<M: GuestMemory + ?Sized>(
    state: &PagingState,
    linear: u64,
    buf: &mut [u8],
    mem: &M,
) -> Result<(), WalkError> {
    let mut done = 0;
    while done < buf.len() {
        let at = linear.wrapping_add(done as u64);
        let gpa = translate(state, at, mem)?;
        let chunk = ((PAGE - (at & (PAGE - 1))) as usize).min(buf.len() - done);
        mem.read(gpa, &mut buf[done..done + chunk])
            .ok_or(WalkError::DataUnreadable { linear: at, gpa })?;
        done += chunk;
    }
    Ok(())
}

/// Bits 63:`bits`-1 must all be equal.
fn canonical(linear: u64, bits: u32) -> Result<(), WalkError> {
    let unused = 64 - bits;
    if ((linear << unused) as i64 >> unused) as u64 == linear {
        Ok(())
    } else {
        Err(WalkError::NonCanonical { linear })
    }
}

/// Checks an entry read (or not) from `entry` at `level`.
fn present(read: Option<u64>, level: Level, entry: u64, linear: u64) -> Result<u64, WalkError> {
    let value = read.ok_or(WalkError::TableUnreadable {
        linear,
        level,
        entry,
    })?;
    if value & PRESENT == 0 {
        return Err(WalkError::NotPresent {
            linear,
            level,
            entry,
        });
    }
    Ok(value)
}

/// PAE, 4-level and 5-level paging: `upper` are the levels above the page table, from
/// `root`; a page directory entry may map a 2 MiB page, a PDPT entry a 1 GiB one where
/// `gib_pages`.
fn walk_64<M: GuestMemory + ?Sized>(
    linear: u64,
    root: u64,
    upper: &[Level],
    gib_pages: bool,
    mem: &M,
) -> Result<u64, WalkError> {
    let read = |level: Level, table: u64| {
        let entry = table + ((linear >> level.shift()) & 0x1ff) * 8;
        present(mem.read_u64(entry), level, entry, linear)
    };
    // The page at `entry`'s address, 1 << `shift` bytes, plus the offset into it.
    let page = |entry: u64, shift: u32| {
        let size = 1u64 << shift;
        (entry & ADDR_MASK & !(size - 1)) | (linear & (size - 1))
    };
    let mut table = root;
    for &level in upper {
        let entry = read(level, table)?;
        let large = level == Level::Pd || (level == Level::Pdpt && gib_pages);
        if large && entry & PAGE_SIZE_BIT != 0 {
            return Ok(page(entry, level.shift()));
        }
        table = entry & ADDR_MASK;
    }
    Ok(page(read(Level::Pt, table)?, 12))
}

/// 32-bit paging: 4-byte entries, a 4 MiB page in the page directory under CR4.PSE.
fn walk_32<M: GuestMemory + ?Sized>(
    state: &PagingState,
    linear: u64,
    mem: &M,
) -> Result<u64, WalkError> {
    let read = |level: Level, entry: u64| {
        let mut bytes = [0; 4];
        let value = mem
            .read(entry, &mut bytes)
            .map(|()| u64::from(u32::from_le_bytes(bytes)));
        present(value, level, entry, linear)
    };
    let pde = read(Level::Pd, (state.cr3 & 0xffff_f000) + (linear >> 22) * 4)?;
    if state.cr4 & CR4_PSE != 0 && pde & PAGE_SIZE_BIT != 0 {
        // Bits 31:22 from the entry's 31:22, bits 39:32 from its 20:13 (PSE-36).
        let base = (pde & 0xffc0_0000) | ((pde >> 13) & 0xff) << 32;
        return Ok(base | (linear & 0x3f_ffff));
    }
    // Without CR4.PSE the PS bit is ignored: the entry names a page table.
    let pte = read(
        Level::Pt,
        (pde & 0xffff_f000) + ((linear >> 12) & 0x3ff) * 4,
    )?;
    Ok((pte & 0xffff_f000) | (linear & 0xfff))
}

#[cfg(test)]
mod tests {
    use std::boxed::Box;
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use std::vec;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    /// Sparse guest RAM: only pages written to exist.
    #[derive(Default)]
    struct Ram {
        pages: HashMap<u64, Box<[u8; 4096]>>,
        /// Where the next page table goes.
        next_table: u64,
    }

    impl Ram {
        fn new() -> Self {
            Self {
                pages: HashMap::new(),
                next_table: 0x10_0000,
            }
        }

        fn write(&mut self, gpa: u64, bytes: &[u8]) {
            let mut done = 0;
            while done < bytes.len() {
                let a = gpa + done as u64;
                let at = (a % PAGE) as usize;
                let n = (4096 - at).min(bytes.len() - done);
                let page = self
                    .pages
                    .entry(a / PAGE)
                    .or_insert_with(|| Box::new([0; 4096]));
                page[at..at + n].copy_from_slice(&bytes[done..done + n]);
                done += n;
            }
        }

        fn write_u64(&mut self, gpa: u64, value: u64) {
            self.write(gpa, &value.to_le_bytes());
        }

        fn write_u32(&mut self, gpa: u64, value: u32) {
            self.write(gpa, &value.to_le_bytes());
        }

        /// A fresh zeroed page for a table.
        fn table(&mut self) -> u64 {
            let t = self.next_table;
            self.next_table += PAGE;
            self.write(t, &[0; 4096]);
            t
        }

        /// Maps `linear` to `target` through 8-byte entries from `root`, one level per
        /// index shift in `shifts` (the last one holds the leaf), creating tables as needed.
        /// Leaves have NX and the accessed/dirty bits set, which must not leak into the
        /// address.
        fn map(&mut self, root: u64, shifts: &[u32], linear: u64, target: u64) {
            let mut table = root;
            for (i, &shift) in shifts.iter().enumerate() {
                let entry = table + ((linear >> shift) & 0x1ff) * 8;
                if i == shifts.len() - 1 {
                    let ps = if shift > 12 { PAGE_SIZE_BIT } else { 0 };
                    self.write_u64(entry, target | 1 << 63 | 0x60 | ps | 0x3);
                    return;
                }
                let existing = self.read_u64(entry).unwrap_or(0);
                table = if existing & PRESENT != 0 {
                    existing & ADDR_MASK
                } else {
                    let t = self.table();
                    self.write_u64(entry, t | 0x23);
                    t
                };
            }
        }
    }

    impl GuestMemory for Ram {
        fn read_u64(&self, gpa: u64) -> Option<u64> {
            let mut b = [0; 8];
            self.read(gpa, &mut b)?;
            Some(u64::from_le_bytes(b))
        }

        fn read(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = gpa.checked_add(i as u64)?;
                *b = self.pages.get(&(a / PAGE))?[(a % PAGE) as usize];
            }
            Some(())
        }
    }

    const PG: u64 = CR0_PG | 1; // with PE
    const LMA: u64 = EFER_LMA | 1 << 8; // with LME

    fn long4(cr3: u64) -> PagingState {
        PagingState {
            cr0: PG,
            cr3,
            cr4: CR4_PAE,
            efer: LMA,
        }
    }

    fn long5(cr3: u64) -> PagingState {
        PagingState {
            cr4: CR4_PAE | CR4_LA57,
            ..long4(cr3)
        }
    }

    const L4: &[u32] = &[39, 30, 21, 12];
    const L5: &[u32] = &[48, 39, 30, 21, 12];

    #[test]
    fn modes_follow_the_control_registers() {
        assert_eq!(PagingState::default().mode(), PagingMode::Off);
        let bits32 = PagingState {
            cr0: PG,
            ..PagingState::default()
        };
        assert_eq!(bits32.mode(), PagingMode::Bits32);
        let pae = PagingState {
            cr4: CR4_PAE,
            ..bits32
        };
        assert_eq!(pae.mode(), PagingMode::Pae);
        assert_eq!(long4(0).mode(), PagingMode::Level4);
        assert_eq!(long5(0).mode(), PagingMode::Level5);
        // LME set but paging not yet on: no translation.
        let lme_only = PagingState {
            cr0: 1,
            efer: 1 << 8,
            ..long4(0)
        };
        assert_eq!(lme_only.mode(), PagingMode::Off);
    }

    #[test]
    fn paging_off_is_identity_within_4_gib() {
        let ram = Ram::new();
        let off = PagingState::default();
        assert_eq!(translate(&off, 0xfec0_0010, &ram), Ok(0xfec0_0010));
        assert_eq!(translate(&off, 0x1_0000_1234, &ram), Ok(0x1234));
    }

    #[test]
    fn four_level_4k_page_by_hand() {
        let mut ram = Ram::new();
        // 0x40_1234: PML4[0] -> PDPT[0] -> PD[2] -> PT[1] -> 0x9000.
        ram.write_u64(0x1000, 0x2000 | 0x23);
        ram.write_u64(0x2000, 0x3000 | 0x23);
        ram.write_u64(0x3000 + 2 * 8, 0x4000 | 0x23);
        ram.write_u64(0x4000 + 8, 1 << 63 | 0x9000 | 0x63);
        // PCID bits in CR3 are not part of the address.
        let state = long4(0x1000 | 0x5);
        assert_eq!(translate(&state, 0x40_1234, &ram), Ok(0x9234));
        assert_eq!(translate(&state, 0x40_1fff, &ram), Ok(0x9fff));
    }

    #[test]
    fn four_level_kernel_half_and_huge_pages() {
        let mut ram = Ram::new();
        let root = ram.table();
        ram.map(root, L4, 0xffff_ffff_8123_4000, 0x7_6543_2000);
        ram.map(root, &L4[..3], 0xffff_ffff_8040_0000, 0x20_0000);
        ram.map(root, &L4[..2], 0xffff_8880_0000_0000, 0);
        let state = long4(root);
        let t = |linear| translate(&state, linear, &ram);
        assert_eq!(t(0xffff_ffff_8123_4567), Ok(0x7_6543_2567));
        assert_eq!(t(0xffff_ffff_804f_edcb), Ok(0x2f_edcb));
        assert_eq!(t(0xffff_8880_3fff_fff0), Ok(0x3fff_fff0));
    }

    #[test]
    fn five_level_uses_bits_56_to_48() {
        let mut ram = Ram::new();
        let root = ram.table();
        ram.map(root, L5, 0x00ab_cdef_1234_5000, 0x5000);
        ram.map(root, &L5[..4], 0x0000_8000_0000_0000, 0x4000_0000);
        ram.map(root, &L5[..3], 0xff00_0000_0000_0000, 0x8000_0000);
        let state = long5(root);
        let t = |linear| translate(&state, linear, &ram);
        assert_eq!(t(0x00ab_cdef_1234_5678), Ok(0x5678));
        // Not canonical for 4-level paging, but fine for 5-level.
        assert_eq!(t(0x0000_8000_0000_0042), Ok(0x4000_0042));
        assert_eq!(t(0xff00_0000_0123_4567), Ok(0x8123_4567));
    }

    #[test]
    fn non_canonical_addresses_are_refused() {
        let mut ram = Ram::new();
        let root = ram.table();
        for linear in [0x0000_8000_0000_0000, 0xffff_7fff_ffff_ffff, 1 << 63] {
            assert_eq!(
                translate(&long4(root), linear, &ram),
                Err(WalkError::NonCanonical { linear })
            );
        }
        for linear in [0x0100_0000_0000_0000, 0xfe00_0000_0000_0000] {
            assert_eq!(
                translate(&long5(root), linear, &ram),
                Err(WalkError::NonCanonical { linear })
            );
        }
    }

    fn bits32(cr3: u64, pse: bool) -> PagingState {
        PagingState {
            cr0: PG,
            cr3,
            cr4: if pse { CR4_PSE } else { 0 },
            efer: 0,
        }
    }

    #[test]
    fn bits32_paging_with_4k_and_4m_pages() {
        let mut ram = Ram::new();
        // 0xc040_3123: PD[0x301] -> PT[3] -> 0x5000.
        ram.write_u32(0x1000 + 0x301 * 4, 0x2000 | 0x23);
        ram.write_u32(0x2000 + 3 * 4, 0x5000 | 0x63);
        // 0x0080_0000..: PD[2] is a 4 MiB page at 0x3_00c0_0000 (PSE-36: bits 39:32 in 20:13).
        ram.write_u32(0x1000 + 2 * 4, 0x00c0_0000 | 3 << 13 | 0xe3);
        let pse = bits32(0x1000, true);
        assert_eq!(translate(&pse, 0xc040_3123, &ram), Ok(0x5123));
        assert_eq!(translate(&pse, 0x00b2_3456, &ram), Ok(0x3_00f2_3456));
        // High bits of the linear address wrap away outside long mode.
        assert_eq!(translate(&pse, 0x1_c040_3123, &ram), Ok(0x5123));
        // Without CR4.PSE the PS bit is ignored: PD[2] names a page table at 0xc0_6000.
        ram.write_u32(0xc0_6000 + 0x323 * 4, 0x7000 | 0x3);
        assert_eq!(
            translate(&bits32(0x1000, false), 0x00b2_3456, &ram),
            Ok(0x7456)
        );
    }

    fn pae(cr3: u64) -> PagingState {
        PagingState {
            cr0: PG,
            cr3,
            cr4: CR4_PAE,
            efer: 0,
        }
    }

    #[test]
    fn pae_paging_with_4k_and_2m_pages() {
        let mut ram = Ram::new();
        // The PDPT is only 32-byte aligned.
        let pdpt = 0x1020;
        let pd = ram.table();
        ram.write_u64(pdpt + 3 * 8, pd | 0x1);
        ram.map(pd, &[21, 12], 0xc000_0000 + 0x1234_5000, 0x1_2345_6000);
        ram.map(pd, &[21], 0xc000_0000 + 0x20_0000, 0x4_0000_0000);
        let state = pae(pdpt);
        assert_eq!(translate(&state, 0xd234_5abc, &ram), Ok(0x1_2345_6abc));
        assert_eq!(translate(&state, 0xc02f_ffff, &ram), Ok(0x4_000f_ffff));
        // PDPTE 0 is empty.
        assert_eq!(
            translate(&state, 0x1000, &ram),
            Err(WalkError::NotPresent {
                linear: 0x1000,
                level: Level::Pdpt,
                entry: pdpt
            })
        );
    }

    #[test]
    fn a_missing_entry_names_its_level_and_address() {
        let mut ram = Ram::new();
        let root = ram.table();
        let linear = 0xffff_ffff_8123_4567;
        let state = long4(root);
        let entry_of = |table: u64, shift: u32| table + ((linear >> shift) & 0x1ff) * 8;
        let not_present = |level, entry| {
            Err(WalkError::NotPresent {
                linear,
                level,
                entry,
            })
        };
        assert_eq!(
            translate(&state, linear, &ram),
            not_present(Level::Pml4, entry_of(root, 39))
        );
        // Map a neighbour page, which builds every table but leaves this PTE empty.
        ram.map(root, L4, linear + 0x1000, 0x5000);
        let pt = ram.next_table - PAGE;
        assert_eq!(
            translate(&state, linear, &ram),
            not_present(Level::Pt, entry_of(pt, 12))
        );
        let pd = pt - PAGE;
        ram.write_u64(entry_of(pd, 21), 0);
        assert_eq!(
            translate(&state, linear, &ram),
            not_present(Level::Pd, entry_of(pd, 21))
        );
        let mut ram5 = Ram::new();
        let root5 = ram5.table();
        assert_eq!(
            translate(&long5(root5), 0, &ram5),
            Err(WalkError::NotPresent {
                linear: 0,
                level: Level::Pml5,
                entry: root5
            })
        );
    }

    #[test]
    fn tables_outside_guest_memory_are_refused() {
        let mut ram = Ram::new();
        // CR3 names a page that is not RAM.
        assert_eq!(
            translate(&long4(0x8000_0000), 0x1000, &ram),
            Err(WalkError::TableUnreadable {
                linear: 0x1000,
                level: Level::Pml4,
                entry: 0x8000_0000
            })
        );
        // A present PDE naming a page table outside RAM.
        let root = ram.table();
        ram.map(root, &L4[..3], 0, 0);
        let pd = ram.next_table - PAGE;
        ram.write_u64(pd + 8, 0xdead_0000 | 0x3);
        assert_eq!(
            translate(&long4(root), 0x20_3000, &ram),
            Err(WalkError::TableUnreadable {
                linear: 0x20_3000,
                level: Level::Pt,
                entry: 0xdead_0000 + 3 * 8
            })
        );
        // Likewise in 32-bit paging.
        assert_eq!(
            translate(&bits32(0x9000_0000, true), 0x40_0000, &ram),
            Err(WalkError::TableUnreadable {
                linear: 0x40_0000,
                level: Level::Pd,
                entry: 0x9000_0004
            })
        );
    }

    #[test]
    fn reads_cross_into_a_page_mapped_elsewhere() {
        let mut ram = Ram::new();
        let root = ram.table();
        let rip = 0xffff_ffff_8100_0ff8;
        ram.map(root, L4, rip & !0xfff, 0x3000);
        ram.map(root, L4, (rip & !0xfff) + 0x1000, 0x8000);
        ram.write(0x3ff8, &[1, 2, 3, 4, 5, 6, 7, 8]);
        ram.write(0x8000, &[9, 10, 11, 12, 13, 14, 15]);
        let mut buf = [0; 15];
        assert_eq!(read_linear(&long4(root), rip, &mut buf, &ram), Ok(()));
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        // Nothing to read, nothing translated.
        assert_eq!(read_linear(&long4(root), 1 << 63, &mut [], &ram), Ok(()));
    }

    #[test]
    fn a_read_stops_at_the_first_page_it_cannot_read() {
        let mut ram = Ram::new();
        let root = ram.table();
        ram.map(root, L4, 0x1000, 0x3000);
        ram.write(0x3000, &[0; 4096]);
        let state = long4(root);
        let mut buf = [0; 8];
        // The second page is not mapped.
        let pt = ram.next_table - PAGE;
        assert_eq!(
            read_linear(&state, 0x1ffc, &mut buf, &ram),
            Err(WalkError::NotPresent {
                linear: 0x2000,
                level: Level::Pt,
                entry: pt + 2 * 8
            })
        );
        // Mapped, but to something that is not RAM.
        ram.map(root, L4, 0x2000, 0xfee0_0000);
        assert_eq!(
            read_linear(&state, 0x1ffc, &mut buf, &ram),
            Err(WalkError::DataUnreadable {
                linear: 0x2000,
                gpa: 0xfee0_0000
            })
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = WalkError::NotPresent {
            linear: 0xffff_ffff_8100_0000,
            level: Level::Pd,
            entry: 0x3010,
        };
        assert_eq!(
            std::format!("{e}"),
            "linear address 0xffffffff81000000: page directory entry at 0x3010 is not present"
        );
        let e = WalkError::NonCanonical { linear: 1 << 47 };
        assert_eq!(
            std::format!("{e}"),
            "linear address 0x800000000000 is not canonical"
        );
    }

    /// Memory whose every byte is a hash of its address, readable below `limit`.
    struct Noise {
        seed: u64,
        limit: u64,
    }

    impl Noise {
        fn byte(&self, a: u64) -> u8 {
            let mut x = (a ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            x ^= x >> 29;
            (x.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 56) as u8
        }
    }

    impl GuestMemory for Noise {
        fn read_u64(&self, gpa: u64) -> Option<u64> {
            let mut b = [0; 8];
            self.read(gpa, &mut b)?;
            Some(u64::from_le_bytes(b))
        }

        fn read(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
            let end = gpa.checked_add(buf.len() as u64)?;
            if end > self.limit {
                return None;
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = self.byte(gpa + i as u64);
            }
            Some(())
        }
    }

    const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;

    /// 4 MiB of patterned RAM at 2 MiB, mapped at [`DIRECT_MAP`] by two 2 MiB pages; built once.
    fn direct_map() -> &'static (Ram, u64) {
        static MAP: OnceLock<(Ram, u64)> = OnceLock::new();
        MAP.get_or_init(|| {
            let mut ram = Ram::new();
            let root = ram.table();
            ram.map(root, &L4[..3], DIRECT_MAP, 0x20_0000);
            ram.map(root, &L4[..3], DIRECT_MAP + 0x20_0000, 0x40_0000);
            let data: Vec<u8> = (0..0x40_0000u32)
                .map(|i| (i * 7 + i / 4093) as u8)
                .collect();
            ram.write(0x20_0000, &data);
            (ram, root)
        })
    }

    proptest! {
        /// Whatever the guest's tables and registers hold, a walk never panics, keeps the
        /// offset within the 4 KiB page and yields a 52-bit address.
        #[test]
        fn walks_of_garbage_tables_are_safe(
            cr0 in any::<u64>(), cr3 in any::<u64>(), cr4 in any::<u64>(), efer in any::<u64>(),
            linear in any::<u64>(), seed in any::<u64>(), limit in any::<u64>(),
        ) {
            let state = PagingState { cr0, cr3, cr4, efer };
            let mem = Noise { seed, limit };
            if let Ok(gpa) = translate(&state, linear, &mem) {
                prop_assert_eq!(gpa & 0xfff, linear & 0xfff);
                prop_assert!(gpa < 1 << 52);
            }
            let mut buf = [0; 15];
            let _ = read_linear(&state, linear, &mut buf, &mem);
        }

        /// Through a direct map of 2 MiB pages, a linear read returns the same bytes as
        /// the physical read, wherever it starts and however many pages it crosses.
        #[test]
        fn reads_through_a_direct_map_match_physical_memory(
            offset in 0u64..0x40_0000, len in 0usize..9000,
        ) {
            let (ram, root) = direct_map();
            let len = len.min((0x40_0000 - offset) as usize);
            let mut buf = vec![0; len];
            prop_assert_eq!(read_linear(&long4(*root), DIRECT_MAP + offset, &mut buf, ram), Ok(()));
            let mut want = vec![0; len];
            ram.read(0x20_0000 + offset, &mut want).unwrap();
            prop_assert_eq!(buf, want);
        }
    }
}
