//! The ACPI tables Linux sees: the firmware's own, except that the MADT lists only Linux's
//! CPUs.
//!
//! From the firmware's RSDP we build, in a buffer the caller will place at a known
//! physical address, a new RSDP (revision 2), a new XSDT (and an RSDT when every address
//! fits in 32 bits) listing every firmware table except the MADT and any the caller hides,
//! and a new MADT keeping the firmware's header, local APIC address and flags, every
//! IOAPIC, interrupt source override, NMI and local APIC address override entry, and only
//! the local APIC / x2APIC entries of Linux's CPUs, the boot CPU first. The other tables
//! stay where the firmware put them (the e820 map keeps them visible).
//!
//! Firmware tables are read through [`PhysRead`], which decides what may be read at all.
//! They are checked as they are read: signatures, lengths against what can be read,
//! entry lengths; a bad checksum is only a [`AcpiWarning`] (firmware is often sloppy,
//! and Linux itself only warns), a length that runs past readable memory is an error.

use core::fmt;

use crate::support::fixed::FixedList;

/// Reads firmware memory. The image checks `addr..addr + buf.len()` against what the
/// firmware may own (ACPI and reserved ranges) before copying; tests back it with bytes.
pub trait PhysRead {
    /// Fills `buf` from physical address `addr`, or fails without a partial promise.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError>;
}

/// The range asked for cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError;

/// A table signature.
pub type Signature = [u8; 4];

/// Most entries accepted in the firmware's XSDT or RSDT.
pub const MAX_ROOT_ENTRIES: usize = 256;
/// Longest firmware table accepted (anything longer is garbage).
pub const MAX_TABLE_LEN: u32 = 16 << 20;
/// Most CPUs Linux may be given.
pub const MAX_LINUX_CPUS: usize = 256;
/// Most warnings kept; the rest are counted.
pub const MAX_WARNINGS: usize = 16;

const HEADER_LEN: usize = 36;
const MADT_FIXED_LEN: usize = 44;
const RSDP_V1_LEN: usize = 20;
const RSDP_LEN: usize = 36;
const RSDP_AREA: usize = 48;

const MADT_LAPIC: u8 = 0;
const MADT_IOAPIC: u8 = 1;
const MADT_ISO: u8 = 2;
const MADT_NMI_SOURCE: u8 = 3;
const MADT_LAPIC_NMI: u8 = 4;
const MADT_LAPIC_OVERRIDE: u8 = 5;
const MADT_X2APIC: u8 = 9;
const MADT_X2APIC_NMI: u8 = 0xa;

/// Shortest valid length of the MADT entries we interpret or keep.
fn madt_entry_min_len(kind: u8) -> Option<u8> {
    Some(match kind {
        MADT_LAPIC | MADT_NMI_SOURCE => 8,
        MADT_IOAPIC | MADT_LAPIC_OVERRIDE | MADT_X2APIC_NMI => 12,
        MADT_ISO => 10,
        MADT_LAPIC_NMI => 6,
        MADT_X2APIC => 16,
        _ => return None,
    })
}

/// A signature for messages: its bytes where printable, `?` elsewhere.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sig(pub Signature);

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            let c = if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Something odd in the firmware's tables that does not stop the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiWarning {
    /// A table (or the RSDP, signature "RSD ") whose checksum is wrong.
    BadChecksum { sig: Sig, addr: u64 },
    /// A zero address in the XSDT/RSDT, skipped.
    NullEntry { index: usize },
    /// A second MADT, dropped.
    ExtraMadt { addr: u64 },
    /// A MADT entry of a kind Linux's copy does not keep.
    DroppedMadtEntry { kind: u8 },
    /// A second MADT entry for one of Linux's CPUs, dropped.
    DuplicateCpu { apic_id: u32 },
}

impl fmt::Display for AcpiWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadChecksum { sig, addr } => write!(
                f,
                "ACPI: {sig} at {addr:#x} has a bad checksum (used anyway)"
            ),
            Self::NullEntry { index } => {
                write!(f, "ACPI: root table entry {index} is 0 (skipped)")
            }
            Self::ExtraMadt { addr } => {
                write!(f, "ACPI: a second MADT at {addr:#x} (dropped)")
            }
            Self::DroppedMadtEntry { kind } => {
                write!(f, "ACPI: MADT entry type {kind:#x} not passed to Linux")
            }
            Self::DuplicateCpu { apic_id } => write!(
                f,
                "ACPI: the MADT lists APIC ID {apic_id} twice (second dropped)"
            ),
        }
    }
}

/// Warnings, the first [`MAX_WARNINGS`] kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Warnings {
    list: FixedList<AcpiWarning, MAX_WARNINGS>,
    dropped: usize,
}

impl Default for AcpiWarning {
    fn default() -> Self {
        Self::NullEntry { index: 0 }
    }
}

impl Warnings {
    fn push(&mut self, w: AcpiWarning) {
        if self.list.push(w).is_err() {
            self.dropped += 1;
        }
    }

    /// The warnings kept.
    pub fn as_slice(&self) -> &[AcpiWarning] {
        self.list.as_slice()
    }

    /// How many more there were.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

/// Why Linux's tables could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiBuildError {
    /// A range the tables claim cannot be read.
    Unreadable { what: Sig, addr: u64, len: u64 },
    /// No "RSD PTR " at the RSDP address.
    NoRsdp { addr: u64 },
    /// The RSDP points at no root table.
    NoRootTable,
    /// A table's signature is not what its pointer promised, or not a signature at all.
    BadSignature {
        expected: Sig,
        found: Sig,
        addr: u64,
    },
    /// A table's length is shorter than its header or absurd.
    BadLength { sig: Sig, addr: u64, len: u32 },
    /// The root table lists more than [`MAX_ROOT_ENTRIES`] tables.
    TooManyTables { count: usize },
    /// No MADT in the root table.
    NoMadt,
    /// A MADT entry is malformed.
    BadMadtEntry { offset: usize, kind: u8, len: u8 },
    /// No CPUs, or more than [`MAX_LINUX_CPUS`].
    BadCpuCount { count: usize },
    /// The boot CPU is not among Linux's CPUs.
    BootCpuNotLinux { apic_id: u32 },
    /// One of Linux's CPUs is not in the firmware's MADT.
    CpuNotInMadt { apic_id: u32 },
    /// The output's physical address is not 16-byte aligned.
    UnalignedOutput { addr: u64 },
    /// The output buffer is too small.
    OutputTooSmall { need: usize, have: usize },
}

impl fmt::Display for AcpiBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unreadable { what, addr, len } => write!(
                f,
                "ACPI: {what} at {addr:#x} claims {len:#x} bytes, which run past readable firmware memory"
            ),
            Self::NoRsdp { addr } => write!(f, "ACPI: no \"RSD PTR \" signature at {addr:#x}"),
            Self::NoRootTable => {
                f.write_str("ACPI: the RSDP points at neither an XSDT nor an RSDT")
            }
            Self::BadSignature {
                expected,
                found,
                addr,
            } => write!(
                f,
                "ACPI: expected {expected} at {addr:#x}, found signature {found}"
            ),
            Self::BadLength { sig, addr, len } => {
                write!(
                    f,
                    "ACPI: {sig} at {addr:#x} has an impossible length {len:#x}"
                )
            }
            Self::TooManyTables { count } => write!(
                f,
                "ACPI: the root table lists {count} tables (at most {MAX_ROOT_ENTRIES} supported)"
            ),
            Self::NoMadt => f.write_str("ACPI: the firmware has no MADT (\"APIC\") table"),
            Self::BadMadtEntry { offset, kind, len } => write!(
                f,
                "ACPI: MADT entry at offset {offset:#x} (type {kind:#x}) has a bad length {len}"
            ),
            Self::BadCpuCount { count } => write!(
                f,
                "ACPI: Linux is given {count} CPUs (need 1 to {MAX_LINUX_CPUS}; partitions.linux.cpus)"
            ),
            Self::BootCpuNotLinux { apic_id } => write!(
                f,
                "ACPI: the boot CPU (APIC ID {apic_id}) is not in partitions.linux.cpus"
            ),
            Self::CpuNotInMadt { apic_id } => write!(
                f,
                "ACPI: APIC ID {apic_id} of partitions.linux.cpus is not in the firmware's MADT"
            ),
            Self::UnalignedOutput { addr } => write!(
                f,
                "ACPI: the tables' address {addr:#x} is not 16-byte aligned"
            ),
            Self::OutputTooSmall { need, have } => write!(
                f,
                "ACPI: Linux's tables need {need} bytes, the buffer has {have}"
            ),
        }
    }
}

/// Linux's CPUs.
#[derive(Debug, Clone, Copy)]
pub struct LinuxCpus<'a> {
    /// Their APIC IDs (`partitions.linux.cpus`).
    pub apic_ids: &'a [u32],
    /// The one Linux boots on (listed first).
    pub boot: u32,
}

/// What was built.
#[derive(Debug, Clone, Copy)]
pub struct LinuxAcpi {
    /// Physical address of the new RSDP (for the zero page's `acpi_rsdp_addr`).
    pub rsdp: u64,
    /// Physical address of the new XSDT.
    pub xsdt: u64,
    /// Physical address of the new RSDT, when every address fits in 32 bits.
    pub rsdt: Option<u64>,
    /// Physical address of the new MADT.
    pub madt: u64,
    /// Bytes of the output used, from its start.
    pub len: usize,
    /// Tables the XSDT lists (the new MADT included).
    pub tables: usize,
    /// Firmware tables left out because the caller hid them.
    pub hidden: usize,
    /// CPUs the new MADT lists.
    pub cpus: usize,
    /// Oddities found on the way.
    pub warnings: Warnings,
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

fn sig_at(b: &[u8], off: usize) -> Sig {
    let mut s = [0u8; 4];
    if let Some(src) = b.get(off..off + 4) {
        s.copy_from_slice(src);
    }
    Sig(s)
}

/// What the sum of all of a table's bytes should be.
fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// The byte making `bytes` (with its checksum byte at `at` zeroed first) sum to zero.
fn fix_checksum(bytes: &mut [u8], at: usize) {
    if let Some(c) = bytes.get_mut(at) {
        *c = 0;
    }
    let s = sum(bytes);
    if let Some(c) = bytes.get_mut(at) {
        *c = 0u8.wrapping_sub(s);
    }
}

struct Reader<'r, R: PhysRead + ?Sized> {
    fw: &'r R,
}

impl<R: PhysRead + ?Sized> Reader<'_, R> {
    fn read(&self, what: Sig, addr: u64, buf: &mut [u8]) -> Result<(), AcpiBuildError> {
        let err = AcpiBuildError::Unreadable {
            what,
            addr,
            len: buf.len() as u64,
        };
        if addr.checked_add(buf.len() as u64).is_none() {
            return Err(err);
        }
        self.fw.read(addr, buf).map_err(|_| err)
    }

    /// Sum of `len` bytes at `addr`, read in pieces.
    fn sum(&self, what: Sig, addr: u64, len: u32) -> Result<u8, AcpiBuildError> {
        let err = AcpiBuildError::Unreadable {
            what,
            addr,
            len: u64::from(len),
        };
        let mut chunk = [0u8; 256];
        let mut done = 0u64;
        let mut total = 0u8;
        while done < u64::from(len) {
            let n = (u64::from(len) - done).min(chunk.len() as u64) as usize;
            let buf = chunk.get_mut(..n).ok_or(err)?;
            let at = addr.checked_add(done).ok_or(err)?;
            self.fw.read(at, buf).map_err(|_| err)?;
            total = total.wrapping_add(sum(buf));
            done += n as u64;
        }
        Ok(total)
    }

    /// Reads and checks the header of the table at `addr`: a plausible signature (the
    /// `expected` one, if given), a length between the header's and [`MAX_TABLE_LEN`], all
    /// of it readable. A bad checksum is a warning.
    fn header(
        &self,
        addr: u64,
        expected: Option<Sig>,
        warnings: &mut Warnings,
    ) -> Result<[u8; HEADER_LEN], AcpiBuildError> {
        let mut h = [0u8; HEADER_LEN];
        self.read(expected.unwrap_or(Sig(*b"SDT?")), addr, &mut h)?;
        let sig = sig_at(&h, 0);
        let plausible = sig
            .0
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if expected.is_some_and(|e| e != sig) || !plausible {
            return Err(AcpiBuildError::BadSignature {
                expected: expected.unwrap_or(Sig(*b"SDT?")),
                found: sig,
                addr,
            });
        }
        let len = le_u32(&h, 4);
        if (len as usize) < HEADER_LEN || len > MAX_TABLE_LEN {
            return Err(AcpiBuildError::BadLength { sig, addr, len });
        }
        if self.sum(sig, addr, len)? != 0 {
            warnings.push(AcpiWarning::BadChecksum { sig, addr });
        }
        Ok(h)
    }
}

/// Writes into the output, failing with the size needed.
struct Out<'o> {
    buf: &'o mut [u8],
}

impl Out<'_> {
    fn put(&mut self, at: usize, bytes: &[u8]) -> Result<(), AcpiBuildError> {
        let have = self.buf.len();
        let end = at.saturating_add(bytes.len());
        let dst = self
            .buf
            .get_mut(at..end)
            .ok_or(AcpiBuildError::OutputTooSmall { need: end, have })?;
        dst.copy_from_slice(bytes);
        Ok(())
    }

    fn table_mut(&mut self, at: usize, len: usize) -> &mut [u8] {
        self.buf
            .get_mut(at..at.saturating_add(len))
            .unwrap_or(&mut [])
    }
}

/// A new table header: the firmware's `template` (OEM fields, revisions) with a new
/// signature, revision and length; the checksum is fixed when the table is complete.
fn header_from(
    template: &[u8; HEADER_LEN],
    sig: &[u8; 4],
    revision: Option<u8>,
    len: usize,
) -> [u8; HEADER_LEN] {
    let mut h = *template;
    h[..4].copy_from_slice(sig);
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    if let Some(r) = revision {
        h[8] = r;
    }
    h[9] = 0;
    h
}

/// Builds Linux's tables from the firmware's RSDP at `rsdp_addr` into `out`, which the
/// caller will place at physical address `out_phys` (16-byte aligned). Tables whose
/// signature is in `hide` are left out (the MADT is always replaced). The finished tables in
/// `added` (the hypervisor's own, checksums set) are copied after the MADT and listed last.
pub fn build_linux_tables<R: PhysRead + ?Sized>(
    fw: &R,
    rsdp_addr: u64,
    cpus: &LinuxCpus<'_>,
    hide: &[Signature],
    added: &[&[u8]],
    out: &mut [u8],
    out_phys: u64,
) -> Result<LinuxAcpi, AcpiBuildError> {
    let count = cpus.apic_ids.len();
    if count == 0 || count > MAX_LINUX_CPUS {
        return Err(AcpiBuildError::BadCpuCount { count });
    }
    if !cpus.apic_ids.contains(&cpus.boot) {
        return Err(AcpiBuildError::BootCpuNotLinux { apic_id: cpus.boot });
    }
    if !out_phys.is_multiple_of(16) {
        return Err(AcpiBuildError::UnalignedOutput { addr: out_phys });
    }
    let phys = |offset: usize| out_phys.saturating_add(offset as u64);
    let rd = Reader { fw };
    let mut warnings = Warnings::default();
    let rsdp_sig = Sig(*b"RSD ");

    // The firmware's RSDP.
    let mut rsdp = [0u8; RSDP_LEN];
    rd.read(rsdp_sig, rsdp_addr, &mut rsdp[..RSDP_V1_LEN])?;
    if &rsdp[..8] != b"RSD PTR " {
        return Err(AcpiBuildError::NoRsdp { addr: rsdp_addr });
    }
    let mut rsdp_ok = sum(&rsdp[..RSDP_V1_LEN]) == 0;
    let revision = rsdp[15];
    let mut xsdt_addr = 0;
    if revision >= 2 {
        rd.read(rsdp_sig, rsdp_addr, &mut rsdp)?;
        rsdp_ok &= sum(&rsdp) == 0;
        xsdt_addr = le_u64(&rsdp, 24);
    }
    if !rsdp_ok {
        warnings.push(AcpiWarning::BadChecksum {
            sig: rsdp_sig,
            addr: rsdp_addr,
        });
    }
    let rsdt_addr = u64::from(le_u32(&rsdp, 16));
    let (root_addr, root_sig, entry_size) = match (xsdt_addr, rsdt_addr) {
        (0, 0) => return Err(AcpiBuildError::NoRootTable),
        (0, r) => (r, Sig(*b"RSDT"), 4usize),
        (x, _) => (x, Sig(*b"XSDT"), 8usize),
    };
    let root = rd.header(root_addr, Some(root_sig), &mut warnings)?;
    let entries = (le_u32(&root, 4) as usize - HEADER_LEN) / entry_size;
    if entries > MAX_ROOT_ENTRIES {
        return Err(AcpiBuildError::TooManyTables { count: entries });
    }

    for table in added {
        let len = table.get(4..8).map_or(0, |_| le_u32(table, 4) as usize);
        if len < HEADER_LEN || len != table.len() {
            return Err(AcpiBuildError::BadLength {
                sig: sig_at(table, 0),
                addr: 0,
                len: len as u32,
            });
        }
    }

    // Layout: RSDP, XSDT (room for every firmware entry and the added ones), MADT, the added
    // tables, RSDT.
    let xsdt_off = RSDP_AREA;
    let madt_off = (xsdt_off + HEADER_LEN + 8 * (entries + added.len()).max(1)).next_multiple_of(8);
    let mut o = Out { buf: out };

    let mut kept = 0usize;
    let mut hidden = 0usize;
    let mut all_low = phys(madt_off) < 1 << 32;
    let mut madt_fw: Option<u64> = None;
    for index in 0..entries {
        let mut e = [0u8; 8];
        let at = root_addr + (HEADER_LEN + index * entry_size) as u64;
        rd.read(root_sig, at, &mut e[..entry_size])?;
        let addr = u64::from_le_bytes(e);
        if addr == 0 {
            warnings.push(AcpiWarning::NullEntry { index });
            continue;
        }
        let h = rd.header(addr, None, &mut warnings)?;
        let sig = sig_at(&h, 0);
        let listed = if &sig.0 == b"APIC" {
            if madt_fw.is_some() {
                warnings.push(AcpiWarning::ExtraMadt { addr });
                continue;
            }
            madt_fw = Some(addr);
            phys(madt_off)
        } else if hide.contains(&sig.0) {
            hidden += 1;
            continue;
        } else {
            addr
        };
        all_low &= listed < 1 << 32;
        o.put(xsdt_off + HEADER_LEN + 8 * kept, &listed.to_le_bytes())?;
        kept += 1;
    }
    let madt_fw = madt_fw.ok_or(AcpiBuildError::NoMadt)?;
    let (madt_len, cpus_listed) = build_madt(&rd, madt_fw, cpus, &mut o, madt_off, &mut warnings)?;
    let mut end = madt_off + madt_len;
    for table in added {
        let at = end.next_multiple_of(8);
        o.put(at, table)?;
        all_low &= phys(at) < 1 << 32;
        o.put(xsdt_off + HEADER_LEN + 8 * kept, &phys(at).to_le_bytes())?;
        kept += 1;
        end = at + table.len();
    }

    let xsdt_len = HEADER_LEN + 8 * kept;
    o.put(xsdt_off, &header_from(&root, b"XSDT", Some(1), xsdt_len))?;
    fix_checksum(o.table_mut(xsdt_off, xsdt_len), 9);

    let mut rsdt = None;
    if all_low && phys(end + 8 + HEADER_LEN + 4 * kept) <= 1 << 32 {
        let rsdt_off = end.next_multiple_of(8);
        let rsdt_len = HEADER_LEN + 4 * kept;
        for i in 0..kept {
            let addr = le_u64(o.table_mut(xsdt_off, xsdt_len), HEADER_LEN + 8 * i);
            o.put(rsdt_off + HEADER_LEN + 4 * i, &(addr as u32).to_le_bytes())?;
        }
        o.put(rsdt_off, &header_from(&root, b"RSDT", Some(1), rsdt_len))?;
        fix_checksum(o.table_mut(rsdt_off, rsdt_len), 9);
        rsdt = Some(phys(rsdt_off));
        end = rsdt_off + rsdt_len;
    }

    // The new RSDP: revision 2, the firmware's OEM ID.
    let mut new = [0u8; RSDP_LEN];
    new[..8].copy_from_slice(b"RSD PTR ");
    new[9..15].copy_from_slice(&rsdp[9..15]);
    new[15] = 2;
    new[16..20].copy_from_slice(&(rsdt.unwrap_or(0) as u32).to_le_bytes());
    new[20..24].copy_from_slice(&(RSDP_LEN as u32).to_le_bytes());
    new[24..32].copy_from_slice(&phys(xsdt_off).to_le_bytes());
    fix_checksum(&mut new[..RSDP_V1_LEN], 8);
    fix_checksum(&mut new, 32);
    o.put(0, &new)?;
    o.put(RSDP_LEN, &[0u8; RSDP_AREA - RSDP_LEN])?;

    Ok(LinuxAcpi {
        rsdp: out_phys,
        xsdt: phys(xsdt_off),
        rsdt,
        madt: phys(madt_off),
        len: end,
        tables: kept,
        hidden,
        cpus: cpus_listed,
        warnings,
    })
}

/// Writes Linux's MADT at `off`; returns its length and the CPUs it lists.
fn build_madt<R: PhysRead + ?Sized>(
    rd: &Reader<'_, R>,
    addr: u64,
    cpus: &LinuxCpus<'_>,
    o: &mut Out<'_>,
    off: usize,
    warnings: &mut Warnings,
) -> Result<(usize, usize), AcpiBuildError> {
    let madt_sig = Sig(*b"APIC");
    let header = rd.header(addr, Some(madt_sig), warnings)?;
    let len = le_u32(&header, 4) as usize;
    if len < MADT_FIXED_LEN {
        return Err(AcpiBuildError::BadLength {
            sig: madt_sig,
            addr,
            len: len as u32,
        });
    }
    let mut fixed = [0u8; 8];
    rd.read(madt_sig, addr + HEADER_LEN as u64, &mut fixed)?;
    o.put(off + HEADER_LEN, &fixed)?;

    let mut found = [false; MAX_LINUX_CPUS];
    let mut at = off + MADT_FIXED_LEN;

    // The CPU entries' APIC ID, if `entry` is one.
    let cpu_of = |entry: &[u8]| match entry.first() {
        Some(&MADT_LAPIC) => entry.get(3).map(|&id| u32::from(id)),
        Some(&MADT_X2APIC) => Some(le_u32(entry, 4)),
        _ => None,
    };
    // Pass 0 writes the boot CPU's entry; pass 1 everything else, in firmware order.
    for pass in 0..2 {
        let mut offset = MADT_FIXED_LEN;
        while offset < len {
            let mut entry = [0u8; 255];
            let head = &mut entry[..2];
            let entry_addr = addr + offset as u64;
            if offset + 2 > len {
                return Err(AcpiBuildError::BadMadtEntry {
                    offset,
                    kind: 0,
                    len: (len - offset) as u8,
                });
            }
            rd.read(madt_sig, entry_addr, head)?;
            let (kind, elen) = (entry[0], entry[1]);
            let bad = AcpiBuildError::BadMadtEntry {
                offset,
                kind,
                len: elen,
            };
            if elen < 2 || offset + usize::from(elen) > len {
                return Err(bad);
            }
            if madt_entry_min_len(kind).is_some_and(|min| elen < min) {
                return Err(bad);
            }
            let entry = &mut entry[..usize::from(elen)];
            rd.read(madt_sig, entry_addr, entry)?;
            offset += usize::from(elen);

            let keep = match cpu_of(entry) {
                Some(id) => {
                    let Some(slot) = cpus.apic_ids.iter().position(|&c| c == id) else {
                        continue;
                    };
                    if (id == cpus.boot) != (pass == 0) {
                        continue;
                    }
                    if found[slot] {
                        if pass == 1 || id == cpus.boot {
                            warnings.push(AcpiWarning::DuplicateCpu { apic_id: id });
                        }
                        continue;
                    }
                    found[slot] = true;
                    true
                }
                None if pass == 0 => continue,
                None => match kind {
                    MADT_IOAPIC | MADT_ISO | MADT_NMI_SOURCE | MADT_LAPIC_NMI
                    | MADT_LAPIC_OVERRIDE | MADT_X2APIC_NMI => true,
                    _ => {
                        warnings.push(AcpiWarning::DroppedMadtEntry { kind });
                        false
                    }
                },
            };
            if keep {
                o.put(at, entry)?;
                at += entry.len();
            }
        }
    }
    if let Some(missing) = cpus
        .apic_ids
        .iter()
        .zip(found)
        .find_map(|(&id, f)| (!f).then_some(id))
    {
        return Err(AcpiBuildError::CpuNotInMadt { apic_id: missing });
    }
    let madt_len = at - off;
    o.put(off, &header_from(&header, b"APIC", None, madt_len))?;
    fix_checksum(o.table_mut(off, madt_len), 9);
    Ok((madt_len, cpus.apic_ids.len()))
}
