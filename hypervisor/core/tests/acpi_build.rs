//! Linux's ACPI tables, built from hand-made firmware tables and read back both by hand and
//! through the `acpi` crate (the parser the hypervisor itself uses), whose mapping handler
//! needs `unsafe` and so lives here rather than in the crate, which forbids it.

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use bulkhead_hv_core::linux::acpi::{
    AcpiBuildError, AcpiWarning, LinuxAcpi, LinuxCpus, PhysRead, ReadError, Sig, build_linux_tables,
};
use proptest::prelude::*;

const FW: u64 = 0xe_0000;
const OUT: u64 = 0x100_0000;

/// One piece of physical memory: its base and bytes.
type Piece = (u64, Vec<u8>);

/// Sparse physical memory.
#[derive(Clone, Default)]
struct Mem(Rc<RefCell<Vec<Piece>>>);

impl Mem {
    fn add(&self, base: u64, bytes: Vec<u8>) {
        self.0.borrow_mut().push((base, bytes));
    }

    fn find(&self, addr: u64, len: usize) -> Option<(usize, usize)> {
        self.0
            .borrow()
            .iter()
            .enumerate()
            .find_map(|(i, (base, b))| {
                let off = usize::try_from(addr.checked_sub(*base)?).ok()?;
                (off.checked_add(len)? <= b.len()).then_some((i, off))
            })
    }
}

impl PhysRead for Mem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let (i, off) = self.find(addr, buf.len()).ok_or(ReadError)?;
        buf.copy_from_slice(&self.0.borrow()[i].1[off..off + buf.len()]);
        Ok(())
    }
}

impl AcpiHandler for Mem {
    unsafe fn map_physical_region<T>(&self, addr: usize, size: usize) -> PhysicalMapping<Self, T> {
        let (i, off) = self
            .find(addr as u64, size)
            .expect("acpi maps only what exists");
        let ptr = self.0.borrow()[i].1[off..].as_ptr() as *mut T;
        // SAFETY: the bytes live as long as `self.0` (kept by the handler clone inside the
        // mapping) and are not resized while mapped; the acpi crate's tables are packed.
        unsafe { PhysicalMapping::new(addr, NonNull::new(ptr).unwrap(), size, size, self.clone()) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

fn checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let s = bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    bytes[at] = 0u8.wrapping_sub(s);
}

fn table(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 36];
    t[..4].copy_from_slice(sig);
    t[4..8].copy_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t[8] = revision;
    t[10..16].copy_from_slice(b"BOCHS ");
    t[16..24].copy_from_slice(b"BXPC    ");
    t[24..28].copy_from_slice(&1u32.to_le_bytes());
    t[28..32].copy_from_slice(b"BXPC");
    t[32..36].copy_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    checksum(&mut t, 9);
    t
}

fn lapic(uid: u8, id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![0, 8, uid, id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn x2apic(id: u32, uid: u32) -> Vec<u8> {
    let mut e = vec![9, 16, 0, 0];
    e.extend_from_slice(&id.to_le_bytes());
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&uid.to_le_bytes());
    e
}

fn ioapic(id: u8, addr: u32, gsi: u32) -> Vec<u8> {
    let mut e = vec![1, 12, id, 0];
    e.extend_from_slice(&addr.to_le_bytes());
    e.extend_from_slice(&gsi.to_le_bytes());
    e
}

fn iso(irq: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut e = vec![2, 10, 0, irq];
    e.extend_from_slice(&gsi.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    for e in entries {
        body.extend_from_slice(e);
    }
    table(b"APIC", 3, &body)
}

fn qemu_like_madt() -> Vec<u8> {
    madt(&[
        lapic(0, 0, 1),
        lapic(1, 1, 1),
        lapic(2, 2, 1),
        lapic(3, 3, 1),
        ioapic(4, 0xfec0_0000, 0),
        iso(0, 2, 0),
        iso(9, 9, 0xd),
        vec![4, 6, 0xff, 5, 0, 1], // local APIC NMI, all CPUs, LINT1
        vec![0x10, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // multiprocessor wakeup
        x2apic(0x100, 4),
    ])
}

/// Firmware tables at `FW`: RSDP (revision `rev`), RSDT, XSDT (when `rev >= 2`), FACP,
/// the given MADT, an SSDT, an HPET and a DMAR.
fn firmware(rev: u8, madt_bytes: Vec<u8>) -> Mem {
    let mut img = vec![0u8; 0x2000];
    let mut at = |off: usize, t: &[u8]| img[off..off + t.len()].copy_from_slice(t);
    let mut fadt = vec![0u8; 276 - 36];
    fadt[76 - 36..80 - 36].copy_from_slice(&0x608u32.to_le_bytes()); // PM timer block
    fadt[91 - 36] = 4; // PM timer length
    at(0x400, &table(b"FACP", 6, &fadt));
    at(0x800, &madt_bytes);
    at(0x1000, &table(b"SSDT", 1, &[0xa5; 20]));
    at(0x1100, &table(b"HPET", 1, &[0; 20]));
    at(0x1200, &table(b"DMAR", 1, &[0; 12]));
    let addrs = [0x400u64, 0x800, 0x1000, 0x1100, 0x1200].map(|o| FW + o);
    let rsdt_body: Vec<u8> = addrs
        .iter()
        .flat_map(|a| (*a as u32).to_le_bytes())
        .collect();
    at(0x100, &table(b"RSDT", 1, &rsdt_body));
    let xsdt_body: Vec<u8> = addrs.iter().flat_map(|a| a.to_le_bytes()).collect();
    if rev >= 2 {
        at(0x200, &table(b"XSDT", 1, &xsdt_body));
    }
    let mut rsdp = [0u8; 36];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(b"BOCHS ");
    rsdp[15] = rev;
    rsdp[16..20].copy_from_slice(&((FW + 0x100) as u32).to_le_bytes());
    rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
    if rev >= 2 {
        rsdp[24..32].copy_from_slice(&(FW + 0x200).to_le_bytes());
    }
    checksum(&mut rsdp[..20], 8);
    checksum(&mut rsdp, 32);
    at(0, &rsdp);
    let mem = Mem::default();
    mem.add(FW, img);
    mem
}

fn build(
    fw: &Mem,
    ids: &[u32],
    boot: u32,
    hide: &[[u8; 4]],
) -> Result<(LinuxAcpi, Vec<u8>), AcpiBuildError> {
    let mut out = vec![0u8; 0x1000];
    let cpus = LinuxCpus {
        apic_ids: ids,
        boot,
    };
    let built = build_linux_tables(fw, FW, &cpus, hide, &[], &mut out, OUT)?;
    out.truncate(built.len);
    Ok((built, out))
}

/// What the acpi crate sees: (table signatures, CPUs as (APIC ID, UID), IOAPIC IDs,
/// overrides as (IRQ, GSI)).
#[allow(clippy::type_complexity)]
fn seen_by_acpi_crate(
    fw: &Mem,
    out: Vec<u8>,
) -> (Vec<String>, Vec<(u32, u32)>, Vec<u8>, Vec<(u8, u32)>) {
    let mem = fw.clone();
    mem.add(OUT, out);
    // SAFETY: `mem` maps only bytes it holds.
    let tables = unsafe { AcpiTables::from_rsdp(mem, OUT as usize) }.expect("valid RSDP/XSDT");
    let sigs = tables
        .headers()
        .map(|h| h.signature.as_str().to_string())
        .collect();
    let madt = tables.find_table::<Madt>().expect("a valid MADT");
    let (mut cpus, mut ioapics, mut isos) = (vec![], vec![], vec![]);
    for e in madt.get().entries() {
        match e {
            MadtEntry::LocalApic(l) => cpus.push((u32::from(l.apic_id), u32::from(l.processor_id))),
            MadtEntry::LocalX2Apic(x) => cpus.push((x.x2apic_id, x.processor_uid)),
            MadtEntry::IoApic(i) => ioapics.push(i.io_apic_id),
            MadtEntry::InterruptSourceOverride(o) => isos.push((o.irq, o.global_system_interrupt)),
            _ => {}
        }
    }
    (sigs, cpus, ioapics, isos)
}

fn sums_to_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
}

fn len_at(b: &[u8], off: usize) -> usize {
    u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize
}

#[test]
fn linux_sees_only_its_cpus_boot_first() {
    let fw = firmware(2, qemu_like_madt());
    let (built, out) = build(&fw, &[0, 2, 0x100], 2, &[*b"DMAR"]).unwrap();
    assert_eq!(built.rsdp, OUT);
    assert_eq!((built.tables, built.hidden, built.cpus), (4, 1, 3));
    assert_eq!(
        built.warnings.as_slice(),
        &[AcpiWarning::DroppedMadtEntry { kind: 0x10 }]
    );

    let (sigs, cpus, ioapics, isos) = seen_by_acpi_crate(&fw, out.clone());
    assert_eq!(sigs, ["FACP", "APIC", "SSDT", "HPET"]);
    assert_eq!(cpus, [(2, 2), (0, 0), (0x100, 4)]);
    assert_eq!(ioapics, [4]);
    assert_eq!(isos, [(0, 2), (9, 9)]);

    // Checksums and the layout by hand: RSDP (both sums), XSDT, MADT, RSDT.
    assert!(sums_to_zero(&out[..20]) && sums_to_zero(&out[..36]));
    assert_eq!(out[15], 2);
    assert_eq!(&out[9..15], b"BOCHS ");
    let off = |a: u64| (a - OUT) as usize;
    for a in [built.xsdt, built.madt, built.rsdt.unwrap()] {
        let o = off(a);
        assert!(
            sums_to_zero(&out[o..o + len_at(&out, o)]),
            "table at {a:#x}"
        );
    }
    let m = off(built.madt);
    assert_eq!(&out[m..m + 4], b"APIC");
    assert_eq!(&out[m + 36..m + 44], &[0x00, 0x00, 0xe0, 0xfe, 1, 0, 0, 0]);
    assert_eq!(&out[m + 10..m + 16], b"BOCHS ");
    let r = off(built.rsdt.unwrap());
    assert_eq!(
        u32::from_le_bytes(out[16..20].try_into().unwrap()) as u64,
        built.rsdt.unwrap()
    );
    assert_eq!(len_at(&out, r), 36 + 4 * 4);
}

#[test]
fn added_tables_are_copied_and_listed_last() {
    let fw = firmware(2, qemu_like_madt());
    let (ssdt, len) = bulkhead_hv_core::devices::channel_device::ssdt(0xff, 23);
    let ssdt = &ssdt[..len];
    let mut out = vec![0u8; 0x1000];
    let cpus = LinuxCpus {
        apic_ids: &[0],
        boot: 0,
    };
    let built = build_linux_tables(&fw, FW, &cpus, &[], &[ssdt], &mut out, OUT).unwrap();
    out.truncate(built.len);
    assert_eq!(built.tables, 6);
    let (sigs, ..) = seen_by_acpi_crate(&fw, out.clone());
    assert_eq!(sigs, ["FACP", "APIC", "SSDT", "HPET", "DMAR", "SSDT"]);
    let o = out
        .windows(8)
        .position(|w| w[..4] == *b"SSDT" && w[4..8] == (len as u32).to_le_bytes())
        .unwrap();
    assert_eq!(&out[o..o + len], ssdt, "copied whole");
    // Both root tables list it and still sum to zero.
    for root in [built.xsdt, built.rsdt.unwrap()] {
        let r = (root - OUT) as usize;
        assert!(sums_to_zero(&out[r..r + len_at(&out, r)]));
    }

    // A table whose length field disagrees with its bytes is refused.
    let mut bad = ssdt.to_vec();
    bad.push(0);
    assert!(matches!(
        build_linux_tables(&fw, FW, &cpus, &[], &[&bad], &mut [0u8; 0x1000], OUT),
        Err(AcpiBuildError::BadLength { .. })
    ));
}

#[test]
fn rsdt_only_firmware() {
    let fw = firmware(0, qemu_like_madt());
    let (built, out) = build(&fw, &[1], 1, &[]).unwrap();
    let (sigs, cpus, ..) = seen_by_acpi_crate(&fw, out);
    assert_eq!(sigs, ["FACP", "APIC", "SSDT", "HPET", "DMAR"]);
    assert_eq!(cpus, [(1, 1)]);
    assert_eq!(built.tables, 5);
}

#[test]
fn x2apic_madt() {
    let m = madt(&[
        x2apic(0x200, 10),
        x2apic(0x201, 11),
        x2apic(0x300, 12),
        x2apic(0x301, 13),
        ioapic(0, 0xfec0_0000, 0),
        {
            let mut nmi = vec![0xa, 12, 0, 0];
            nmi.extend_from_slice(&u32::MAX.to_le_bytes());
            nmi.extend_from_slice(&[1, 0, 0, 0]);
            nmi
        },
    ]);
    let fw = firmware(2, m);
    let (built, out) = build(&fw, &[0x301, 0x200], 0x301, &[]).unwrap();
    assert!(built.warnings.as_slice().is_empty());
    let (_, cpus, ioapics, _) = seen_by_acpi_crate(&fw, out.clone());
    assert_eq!(cpus, [(0x301, 13), (0x200, 10)]);
    assert_eq!(ioapics, [0]);
    let mem = fw.clone();
    mem.add(OUT, out);
    // SAFETY: `mem` maps only bytes it holds.
    let tables = unsafe { AcpiTables::from_rsdp(mem, OUT as usize) }.unwrap();
    let madt = tables.find_table::<Madt>().unwrap();
    assert!(
        madt.get()
            .entries()
            .any(|e| matches!(e, MadtEntry::X2ApicNmi(_)))
    );
}

#[test]
fn errors_and_warnings() {
    let msg = |fw: &Mem, ids: &[u32], boot| build(fw, ids, boot, &[]).unwrap_err().to_string();
    let fw = firmware(2, qemu_like_madt());
    assert_eq!(
        msg(&fw, &[0, 7], 0),
        "ACPI: APIC ID 7 of partitions.linux.cpus is not in the firmware's MADT"
    );
    assert!(msg(&fw, &[0], 1).contains("boot CPU (APIC ID 1) is not in partitions.linux.cpus"));
    assert!(msg(&fw, &[], 1).contains("0 CPUs"));
    let mut out = vec![0u8; 100];
    let cpus = LinuxCpus {
        apic_ids: &[0],
        boot: 0,
    };
    assert!(matches!(
        build_linux_tables(&fw, FW, &cpus, &[], &[], &mut out, OUT),
        Err(AcpiBuildError::OutputTooSmall { have: 100, .. })
    ));
    assert!(matches!(
        build_linux_tables(&fw, FW, &cpus, &[], &[], &mut out, OUT + 8),
        Err(AcpiBuildError::UnalignedOutput { .. })
    ));
    let e = build_linux_tables(&fw, FW + 1, &cpus, &[], &[], &mut out, OUT).unwrap_err();
    assert_eq!(e.to_string(), "ACPI: no \"RSD PTR \" signature at 0xe0001");

    // A zero-length MADT entry would loop forever in a careless parser.
    let mut m = qemu_like_madt();
    m.extend_from_slice(&[1, 0]);
    let len = m.len() as u32;
    m[4..8].copy_from_slice(&len.to_le_bytes());
    checksum(&mut m, 9);
    let fw = firmware(2, m);
    assert!(msg(&fw, &[0], 0).contains("bad length 0"));

    // A table whose length runs past readable memory.
    let mut m = qemu_like_madt();
    m[4..8].copy_from_slice(&0x10_0000u32.to_le_bytes());
    let fw = firmware(2, m);
    let e = msg(&fw, &[0], 0);
    assert!(e.contains("run past readable firmware memory"), "{e}");

    // A bad checksum is only a warning.
    let mut m = qemu_like_madt();
    m[9] ^= 0x55;
    let fw = firmware(2, m);
    let (built, _) = build(&fw, &[0], 0, &[]).unwrap();
    assert_eq!(
        built.warnings.as_slice()[0],
        AcpiWarning::BadChecksum {
            sig: Sig(*b"APIC"),
            addr: FW + 0x800
        }
    );
    assert!(
        built.warnings.as_slice()[0]
            .to_string()
            .contains("APIC at 0xe0800 has a bad checksum")
    );

    // No MADT.
    let mut m = qemu_like_madt();
    m[..4].copy_from_slice(b"NOPE");
    checksum(&mut m, 9);
    let fw = firmware(2, m);
    assert_eq!(
        msg(&fw, &[0], 0),
        "ACPI: the firmware has no MADT (\"APIC\") table"
    );
}

proptest! {
    #[test]
    fn hostile_firmware_never_panics(
        pokes in proptest::collection::vec((0usize..0x1300, any::<u8>()), 1..8),
        rev in prop_oneof![Just(0u8), Just(2u8)],
    ) {
        let fw = firmware(rev, qemu_like_madt());
        {
            let mut pieces = fw.0.borrow_mut();
            for (off, v) in pokes {
                pieces[0].1[off] = v;
            }
        }
        let mut out = vec![0u8; 0x1000];
        let cpus = LinuxCpus { apic_ids: &[0, 2], boot: 0 };
        if let Ok(built) = build_linux_tables(&fw, FW, &cpus, &[], &[], &mut out, OUT) {
            prop_assert!(built.len <= out.len());
            prop_assert!(sums_to_zero(&out[..36]));
            for a in [Some(built.xsdt), Some(built.madt), built.rsdt].into_iter().flatten() {
                let o = (a - OUT) as usize;
                prop_assert!(sums_to_zero(&out[o..o + len_at(&out, o)]));
            }
        }
    }

    #[test]
    fn random_memory_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mem = Mem::default();
        mem.add(FW, bytes);
        let mut out = vec![0u8; 0x400];
        let cpus = LinuxCpus { apic_ids: &[0], boot: 0 };
        let _ = build_linux_tables(&mem, FW, &cpus, &[], &[], &mut out, OUT);
    }
}

proptest! {
    #[test]
    fn acpi_crate_sees_exactly_linux_cpus(mask in 1u8..32, boot_pick in 0usize..5) {
        let all = [0u32, 1, 2, 3, 0x100];
        let ids: Vec<u32> = all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, &id)| id).collect();
        let boot = ids[boot_pick % ids.len()];
        let fw = firmware(2, qemu_like_madt());
        let (_, out) = build(&fw, &ids, boot, &[]).unwrap();
        let (_, cpus, ioapics, isos) = seen_by_acpi_crate(&fw, out);
        let mut want = vec![boot];
        want.extend(ids.iter().copied().filter(|&id| id != boot));
        prop_assert_eq!(cpus.iter().map(|c| c.0).collect::<Vec<_>>(), want);
        prop_assert_eq!(ioapics.len(), 1);
        prop_assert_eq!(isos.len(), 2);
    }
}
