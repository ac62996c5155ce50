//! `bulkhead probe` on machines written out as Linux shows them: the files of `/proc`, `/sys`
//! and `/dev/cpu/0/msr` under a temporary root.
//!
//! Two machines: the emulator's (Bochs as the tests boot it: two CPUs, 1 GiB, the PIIX
//! chipset, COM1 and COM2, Linux's console on COM2), and an industrial PC with a 4-core CPU
//! with SMT, 16 GiB with the PCI hole below 4 GiB, an extra NIC behind a PCIe root port whose
//! legacy interrupt pin the on-board audio also uses, and an IOMMU. Their files are written in
//! the formats of the kernel's own (Debian 12's 6.1) from those machines' facts.
//!
//! And real firmware: the MADTs (and a DMAR) of three real machines as their owners published
//! them (`tests/real-acpi/`, the bytes acpidump printed), read against what the ACPI tools'
//! own decoder listed in the same dumps, and two of them inside whole machines (the firmware's
//! tables as they are; the other files written the way such a machine shows them).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use bulkhead_probe::madt::{self, IoApic, IrqOverride};
use bulkhead_probe::{Facts, Request, Severity, facts, propose};

/// Capability MSRs of a CPU with everything the hypervisor needs.
const GOOD_MSRS: [(u32, u64); 15] = [
    (0x3a, 0x5),                                         // locked, VMX outside SMX on
    (0x480, (1 << 55) | (6 << 50) | (0x1000 << 32) | 1), // TRUE controls, WB, revision 1
    (0x485, 0x5),                                        // misc: preemption timer rate
    (0x486, 0x8000_0021),
    (0x487, 0xffff_ffff),
    (0x488, 0x2000),
    (0x489, 0x3f_ffff),
    (0x48b, 0xffff_ffff_0000_0000), // every secondary control may be 1
    (
        0x48c,
        (1 << 6) | (1 << 14) | (1 << 16) | (1 << 17) | (1 << 20) | (1 << 32),
    ),
    (0x48d, 0xffff_ffff_0000_0016), // TRUE pin-based, preemption timer allowed
    (0x48e, 0xffff_ffff_0400_6172), // TRUE primary, secondary controls allowed
    (0x48f, 0xffff_ffff_0003_6dfb),
    (0x490, 0xffff_ffff_0000_11fb),
    (0x481, 0),
    (0x482, 0),
];

fn write(root: &Path, file: &str, contents: impl AsRef<[u8]>) {
    let path = root.join(file.trim_start_matches('/'));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

/// A machine's MSRs as its dump keeps them: `NUMBER VALUE` lines in `msr.txt`
/// ([`facts::DUMP_MSRS`]) beside the machine's files.
fn write_msrs(root: &Path, msrs: &[(u32, u64)]) {
    let text: String = msrs
        .iter()
        .map(|(n, v)| format!("{n:#x} {v:#x}\n"))
        .collect();
    write(root, &format!("/{}", facts::DUMP_MSRS), text);
}

fn cpuinfo(cpus: &[(u32, u32, u32)], flags: &str) -> String {
    cpus.iter()
        .map(|&(linux, apic, core)| {
            format!(
                "processor\t: {linux}\nvendor_id\t: GenuineIntel\nphysical id\t: 0\n\
                 core id\t\t: {core}\napicid\t\t: {apic}\nflags\t\t: {flags}\n\n"
            )
        })
        .collect()
}

fn memmap(root: &Path, ranges: &[(u64, u64, &str)]) {
    for (i, &(start, last, kind)) in ranges.iter().enumerate() {
        write(
            root,
            &format!("/sys/firmware/memmap/{i}/start"),
            format!("{start:#x}\n"),
        );
        write(
            root,
            &format!("/sys/firmware/memmap/{i}/end"),
            format!("{last:#x}\n"),
        );
        write(
            root,
            &format!("/sys/firmware/memmap/{i}/type"),
            format!("{kind}\n"),
        );
    }
}

struct Pci<'a> {
    bdf: &'a str,
    vendor: u16,
    device: u16,
    class: u32,
    irq: u32,
    driver: Option<&'a str>,
    buses: Option<(u8, u8)>,
}

fn pci(root: &Path, functions: &[Pci<'_>]) {
    for f in functions {
        let dir = format!("/sys/bus/pci/devices/0000:{}", f.bdf);
        write(
            root,
            &format!("{dir}/vendor"),
            format!("{:#06x}\n", f.vendor),
        );
        write(
            root,
            &format!("{dir}/device"),
            format!("{:#06x}\n", f.device),
        );
        write(root, &format!("{dir}/class"), format!("{:#08x}\n", f.class));
        write(root, &format!("{dir}/irq"), format!("{}\n", f.irq));
        let mut config = vec![0u8; 64];
        if let Some((secondary, subordinate)) = f.buses {
            config[0x19] = secondary;
            config[0x1a] = subordinate;
        }
        write(root, &format!("{dir}/config"), config);
        if let Some(driver) = f.driver {
            let target = format!("../../../../bus/pci/drivers/{driver}");
            let link = root.join(&dir[1..]).join("driver");
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(target, link).unwrap();
        }
    }
}

fn serial(root: &Path, ports: &[(&str, u16, u32, u32)]) {
    for &(name, port, irq, kind) in ports {
        write(
            root,
            &format!("/sys/class/tty/{name}/port"),
            format!("0x{port:X}\n"),
        );
        write(
            root,
            &format!("/sys/class/tty/{name}/irq"),
            format!("{irq}\n"),
        );
        write(
            root,
            &format!("/sys/class/tty/{name}/type"),
            format!("{kind}\n"),
        );
    }
}

/// A PC's MADT: these local APICs, one IOAPIC at 0xfec00000 from GSI 0, the PIT's IRQ 0 on
/// GSI 2 and the ACPI SCI (IRQ 9) level-triggered, active low.
fn pc_madt(local_apic_ids: &[u32]) -> Vec<u8> {
    madt::build(
        local_apic_ids,
        &[IoApic {
            id: 2,
            address: 0xfec0_0000,
            gsi_base: 0,
        }],
        &[
            IrqOverride {
                irq: 0,
                gsi: 2,
                flags: 0,
            },
            IrqOverride {
                irq: 9,
                gsi: 9,
                flags: 0xd,
            },
        ],
    )
}

const BOCHS_FLAGS: &str = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat \
    pse36 clflush mmx fxsr sse sse2 ss ht syscall nx rdtscp lm constant_tsc nopl xtopology \
    nonstop_tsc cpuid pni vmx ssse3 cx16 x2apic tsc_deadline_timer xsave";

/// The emulator's machine: what Linux booted alone in Bochs (`bochs-2cpu`'s machine) shows.
fn bochs_machine(root: &Path) {
    write(
        root,
        "/proc/cpuinfo",
        cpuinfo(&[(0, 0, 0), (1, 1, 1)], BOCHS_FLAGS),
    );
    memmap(
        root,
        &[
            (0, 0x9_fbff, "System RAM"),
            (0x9_fc00, 0x9_ffff, "Reserved"),
            (0xe_8000, 0xf_ffff, "Reserved"),
            (0x10_0000, 0x3ffe_ffff, "System RAM"),
            (0x3fff_0000, 0x3fff_ffff, "ACPI Tables"),
            (0xfffc_0000, 0xffff_ffff, "Reserved"),
        ],
    );
    write(root, "/sys/firmware/acpi/tables/APIC", pc_madt(&[0, 1]));
    write(
        root,
        "/proc/interrupts",
        "           CPU0       CPU1       \n\
           0:         37          0   IO-APIC   2-edge      timer\n\
           1:          9          0   IO-APIC   1-edge      i8042\n\
           3:        391          0   IO-APIC   3-edge      ttyS1\n\
           8:          1          0   IO-APIC   8-edge      rtc0\n\
           9:          0          0   IO-APIC   9-fasteoi   acpi\n\
          12:        141          0   IO-APIC  12-edge      i8042\n\
          14:          0          0   IO-APIC  14-edge      ata_piix\n\
          15:         61          0   IO-APIC  15-edge      ata_piix\n\
         NMI:          0          0   Non-maskable interrupts\n\
         LOC:       1711       1393   Local timer interrupts\n",
    );
    write(
        root,
        "/proc/ioports",
        "0000-0cf7 : PCI Bus 0000:00\n  0000-001f : dma1\n  0020-0021 : pic1\n  \
         0040-0043 : timer0\n  0050-0053 : timer1\n  0060-0060 : keyboard\n  \
         0064-0064 : keyboard\n  0070-0071 : rtc0\n  0080-008f : dma page reg\n  \
         00a0-00a1 : pic2\n  00c0-00df : dma2\n  00f0-00ff : fpu\n  0170-0177 : 0000:00:01.1\n  \
         01f0-01f7 : 0000:00:01.1\n  02f8-02ff : serial\n  03f8-03ff : serial\n  \
         04d0-04d1 : pnp 00:00\n0cf8-0cff : PCI conf1\n0d00-ffff : PCI Bus 0000:00\n  \
         b000-b03f : 0000:00:01.3\n    b000-b03f : PNP0c02:00\n      b000-b003 : ACPI PM1a_EVT_BLK\n      \
         b004-b005 : ACPI PM1a_CNT_BLK\n      b008-b00b : ACPI PM_TMR\n      b00c-b00f : ACPI GPE0_BLK\n  \
         c000-c00f : 0000:00:01.1\n    c000-c00f : ata_piix\n",
    );
    pci(
        root,
        &[
            Pci {
                bdf: "00:00.0",
                vendor: 0x8086,
                device: 0x1237,
                class: 0x06_0000,
                irq: 0,
                driver: None,
                buses: None,
            },
            Pci {
                bdf: "00:01.0",
                vendor: 0x8086,
                device: 0x7000,
                class: 0x06_0100,
                irq: 0,
                driver: None,
                buses: None,
            },
            Pci {
                bdf: "00:01.1",
                vendor: 0x8086,
                device: 0x7010,
                class: 0x01_0180,
                irq: 0,
                driver: Some("ata_piix"),
                buses: None,
            },
            Pci {
                bdf: "00:01.3",
                vendor: 0x8086,
                device: 0x7113,
                class: 0x06_8000,
                irq: 9,
                driver: Some("piix4_smbus"),
                buses: None,
            },
        ],
    );
    serial(
        root,
        &[
            ("ttyS0", 0x3f8, 4, 4),
            ("ttyS1", 0x2f8, 3, 4),
            ("ttyS2", 0x3e8, 4, 0),
            ("ttyS3", 0x2e8, 3, 0),
        ],
    );
    write(
        root,
        "/proc/cmdline",
        "console=ttyS1,115200 quiet cryptomgr.notests bulkhead.init=probe\n",
    );
    write(
        root,
        "/proc/consoles",
        "ttyS1                -W- (EC p a)    4:65\n",
    );
    write(root, "/proc/sys/kernel/hostname", "(none)\n");
    write_msrs(root, &GOOD_MSRS);
}

/// An industrial PC: 4 cores with SMT (Linux CPUs 0-3 are the cores' first threads), 16 GiB,
/// an i210 at 03:00.0 behind the root port 00:1c.0 on pin 17, which the on-board audio uses too.
fn ipc_machine(root: &Path) {
    let flags = format!("{BOCHS_FLAGS} invpcid");
    let cpus: Vec<(u32, u32, u32)> = (0..8).map(|i| (i, (i % 4) * 2 + i / 4, i % 4)).collect();
    write(root, "/proc/cpuinfo", cpuinfo(&cpus, &flags));
    memmap(
        root,
        &[
            (0, 0x9_cfff, "System RAM"),
            (0x9_d000, 0x9_ffff, "Reserved"),
            (0xe_0000, 0xf_ffff, "Reserved"),
            (0x10_0000, 0x7a3f_ffff, "System RAM"),
            (0x7a40_0000, 0x7aff_ffff, "Reserved"),
            (0x7b00_0000, 0x7b0f_ffff, "ACPI Non-volatile Storage"),
            (0x7b10_0000, 0x7b1f_ffff, "ACPI Tables"),
            (0x7b20_0000, 0x7fff_ffff, "Reserved"),
            (0xe000_0000, 0xefff_ffff, "Reserved"),
            (0xfed0_0000, 0xfed0_3fff, "Reserved"),
            (0x1_0000_0000, 0x4_7fff_ffff, "System RAM"),
        ],
    );
    write(
        root,
        "/sys/firmware/acpi/tables/APIC",
        pc_madt(&[0, 2, 4, 6, 1, 3, 5, 7]),
    );
    write(root, "/sys/firmware/acpi/tables/MCFG", b"MCFG");
    write(root, "/sys/firmware/acpi/tables/DMAR", b"DMAR");
    let header: String = (0..8).map(|i| format!("       CPU{i}")).collect();
    let zeros = "          0".repeat(8);
    let row = |irq: u32, pin: u32, mode: &str, names: &str| {
        format!("{irq:>4}:{zeros}   IO-APIC  {pin:>2}-{mode}   {names}\n")
    };
    let mut interrupts = format!("{header}\n");
    interrupts += &row(0, 2, "edge", "timer");
    interrupts += &row(4, 4, "edge", "ttyS0");
    interrupts += &row(8, 8, "edge", "rtc0");
    interrupts += &row(9, 9, "fasteoi", "acpi");
    interrupts += &row(16, 16, "fasteoi", "i801_smbus");
    interrupts += &row(17, 17, "fasteoi", "snd_hda_intel:card0");
    interrupts += " 120:";
    interrupts += &zeros;
    interrupts += "   PCI-MSI 327680-edge      xhci_hcd\n";
    write(root, "/proc/interrupts", interrupts);
    write(
        root,
        "/proc/ioports",
        "0000-0cf7 : PCI Bus 0000:00\n  0020-0021 : pic1\n  0040-0043 : timer0\n  \
         0070-0077 : rtc0\n  0080-008f : dma page reg\n  00a0-00a1 : pic2\n  \
         02f8-02ff : serial\n  03f8-03ff : serial\n  04d0-04d1 : pnp 00:01\n\
         0cf8-0cff : PCI conf1\n0d00-ffff : PCI Bus 0000:00\n  1800-18fe : pnp 00:02\n    \
         1800-1803 : ACPI PM1a_EVT_BLK\n    1804-1805 : ACPI PM1a_CNT_BLK\n    \
         1808-180b : ACPI PM_TMR\n    1860-187f : ACPI GPE0_BLK\n",
    );
    let f = |bdf, vendor, device, class, irq, driver, buses| Pci {
        bdf,
        vendor,
        device,
        class,
        irq,
        driver,
        buses,
    };
    pci(
        root,
        &[
            f("00:00.0", 0x8086, 0x3e0f, 0x06_0000, 0, None, None),
            f(
                "00:14.0",
                0x8086,
                0xa36d,
                0x0c_0330,
                16,
                Some("xhci_hcd"),
                None,
            ),
            f("00:17.0", 0x8086, 0xa352, 0x01_0601, 16, Some("ahci"), None),
            f(
                "00:1c.0",
                0x8086,
                0xa338,
                0x06_0400,
                16,
                Some("pcieport"),
                Some((3, 3)),
            ),
            f("00:1f.0", 0x8086, 0xa309, 0x06_0100, 0, None, None),
            f(
                "00:1f.3",
                0x8086,
                0xa348,
                0x04_0300,
                17,
                Some("snd_hda_intel"),
                None,
            ),
            f(
                "00:1f.4",
                0x8086,
                0xa323,
                0x0c_0500,
                16,
                Some("i801_smbus"),
                None,
            ),
            f(
                "00:1f.6",
                0x8086,
                0x15bc,
                0x02_0000,
                16,
                Some("e1000e"),
                None,
            ),
            f("03:00.0", 0x8086, 0x1533, 0x02_0000, 17, Some("igb"), None),
        ],
    );
    serial(root, &[("ttyS0", 0x3f8, 4, 4), ("ttyS1", 0x2f8, 3, 4)]);
    write(
        root,
        "/proc/cmdline",
        "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=0b0f3b8c-8a35-4d0a-9d4c-1e6b0f2d3c4a ro console=ttyS0,115200 quiet\n",
    );
    write(
        root,
        "/proc/consoles",
        "ttyS0                -W- (EC p a)    4:64\n",
    );
    write(root, "/proc/sys/kernel/hostname", "line-7-press\n");
    write_msrs(root, &GOOD_MSRS);
}

fn read(build: fn(&Path)) -> (tempfile::TempDir, Facts) {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let facts = facts::read(dir.path()).unwrap();
    (dir, facts)
}

fn request(rt_cpus: u32) -> Request {
    Request {
        rt_cpus,
        ..Request::default()
    }
}

/// The value of `key` in the section `[section]` of a proposal (the first occurrence).
fn value<'a>(toml: &'a str, section: &str, key: &str) -> Option<&'a str> {
    let start = toml.find(&format!("[{section}]\n"))?;
    toml[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
}

/// A dump holds what the probe read, and reads back as the same machine with the same
/// proposal, for both machines.
#[test]
fn a_dump_reads_back_as_the_machine_it_was_made_from() {
    // One RT CPU on the emulator's machine; a whole SMT core (two CPUs) on the PC.
    for (build, rt_cpus) in [(bochs_machine as fn(&Path), 1), (ipc_machine, 2)] {
        let (machine, facts) = read(build);
        let dump = tempfile::tempdir().unwrap();
        let dumped = facts::dump(machine.path(), dump.path()).unwrap();
        assert_eq!(format!("{dumped:?}"), format!("{facts:?}"));
        let again = facts::read(dump.path()).unwrap();
        assert_eq!(format!("{again:?}"), format!("{facts:?}"));
        let (first, second) = (
            propose(&facts, &request(rt_cpus)).unwrap(),
            propose(&again, &request(rt_cpus)).unwrap(),
        );
        assert_eq!(first.toml, second.toml);
        assert_eq!(first.findings, second.findings);
        // The MSRs the probe read, in the dump's own file; nothing of the msr device.
        let msrs = fs::read_to_string(dump.path().join(facts::DUMP_MSRS)).unwrap();
        assert!(msrs.lines().any(|l| l == "0x3a 0x5"), "{msrs}");
        assert!(!dump.path().join("dev/cpu/0/msr").exists());
    }
    // A dump it cannot write is an error naming the place.
    let (machine, _) = read(bochs_machine);
    let blocked = tempfile::tempdir().unwrap();
    fs::write(blocked.path().join("proc"), "a file where a directory goes").unwrap();
    let e = facts::dump(machine.path(), blocked.path()).unwrap_err();
    assert!(
        e.file.ends_with("proc/cpuinfo") && e.problem.starts_with("cannot write the dump"),
        "{e}"
    );
}

#[test]
fn the_emulators_machine_is_read_as_it_is() {
    let (_dir, facts) = read(bochs_machine);
    let apic: Vec<u32> = facts.cpus.iter().map(|c| c.apic_id).collect();
    assert_eq!(apic, [0, 1]);
    assert_eq!(facts.memory[0].end, 0x9_fc00);
    assert_eq!(facts.madt.gsi_of_isa_irq(0), 2);
    assert_eq!(facts.console.as_deref(), Some("ttyS1"));
    assert_eq!(facts.serial.len(), 2, "ttyS2 and ttyS3 have no UART");
    let vmx = facts.vmx.as_ref().unwrap();
    assert!(vmx.missing.is_empty(), "{}", vmx.missing);
    assert!(!vmx.disabled_by_firmware && vmx.preemption_timer);
    assert!(!facts.has_dmar);
    let ide = facts.pci.iter().find(|f| f.bdf == "00:01.1").unwrap();
    assert_eq!(ide.driver.as_deref(), Some("ata_piix"));
}

#[test]
fn the_emulators_machine_gets_the_hand_written_partitioning() {
    let (_dir, facts) = read(bochs_machine);
    let proposal = propose(&facts, &request(1)).unwrap();
    let toml = &proposal.toml;
    // Proposed and hand-written configs split the machine alike.
    let proposed = bulkhead_config::host::load_str(toml, "proposal").unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/bochs-2cpu.toml");
    let written = bulkhead_config::host::load_file(example).unwrap();
    for id in bulkhead_config::PartitionId::ALL {
        assert_eq!(
            proposed.partition(id).cpus(),
            written.partition(id).cpus(),
            "{id:?}'s CPUs\n{toml}"
        );
    }
    assert_eq!(value(toml, "console", "linux"), Some("\"com2\""));
    assert_eq!(value(toml, "console", "hypervisor"), Some("\"com1\""));
    let linux_pins: BTreeSet<u32> = toml
        .lines()
        .skip_while(|l| !l.starts_with("ioapic_pins = ["))
        .skip(1)
        .take_while(|l| *l != "]")
        .map(|l| l.trim().split(',').next().unwrap().parse().unwrap())
        .collect();
    // The hand-written config's pins but COM1's IRQ 4 (the hypervisor's console, which it
    // prints to by polling: nobody's pin).
    assert_eq!(
        linux_pins,
        BTreeSet::from([1, 2, 3, 8, 9, 12, 14, 15]),
        "{toml}"
    );
    assert!(toml.contains("\"00:01.1\", # [8086:7010]"), "{toml}");
    assert!(toml.contains("# Left out: 00:00.0"), "{toml}");
    assert!(
        toml.contains("# Left out: 00:01.0 [8086:7000] class 060100 (the ISA bridge"),
        "{toml}"
    );
    assert!(toml.contains("{ base = 0xb000, count = 0x10 }"), "{toml}");
    // The IDE controller runs both channels in compatibility mode (class 010180): their fixed
    // ports are Linux's, beside their pins 14 and 15, and its bus-master registers (the
    // hand-written config, for an emulator whose Linux never touches the disk, leaves them
    // out). The channels' command blocks, which /proc/ioports also names, are listed once.
    assert_eq!(toml.matches("base = 0x1f0").count(), 1, "{toml}");
    for ports in [
        "{ base = 0x1f0, count = 0x8 }, # 00:01.1's primary IDE channel, commands",
        "{ base = 0x3f6, count = 0x1 }, # 00:01.1's primary IDE channel, control",
        "{ base = 0x170, count = 0x8 }, # 00:01.1's secondary IDE channel, commands",
        "{ base = 0x376, count = 0x1 }, # 00:01.1's secondary IDE channel, control",
        // Its bus-master registers (BAR 4): the hypervisor passes only listed ports.
        "{ base = 0xc000, count = 0x10 }, # 00:01.1's I/O registers",
    ] {
        assert!(toml.contains(ports), "{ports}\n{toml}");
    }
    assert!(
        toml.contains("cmdline = \"console=ttyS1,115200 quiet cryptomgr.notests\""),
        "{toml}"
    );
    assert!(!proposal.blocked(), "{:?}", proposal.findings);
    assert!(
        proposal
            .findings
            .iter()
            .any(|f| f.severity == Severity::Warning && f.text.starts_with("no IOMMU")),
        "{:?}",
        proposal.findings
    );
}

#[test]
fn the_rt_partition_gets_whole_cores_never_an_smt_sibling() {
    let (_dir, facts) = read(ipc_machine);
    let proposal = propose(&facts, &request(2)).unwrap();
    // The last core: Linux CPUs 3 and 7, APIC IDs 6 and 7.
    assert_eq!(
        value(&proposal.toml, "partitions.rt", "cpus"),
        Some("[6, 7]")
    );
    assert_eq!(
        value(&proposal.toml, "partitions.linux", "cpus"),
        Some("[0, 2, 4, 1, 3, 5]")
    );
    let err = propose(&facts, &request(1)).unwrap_err();
    assert!(err.contains("SMT siblings (Linux CPUs 3, 7)"), "{err}");
    let err = propose(&facts, &request(8)).unwrap_err();
    assert!(err.contains("at most 6 can go"), "{err}");
    // RAM: the top of the RAM below the PCI hole; Linux keeps the 14 GiB above 4 GiB.
    assert!(
        proposal
            .toml
            .contains("{ base = 0x100000000, size = \"14 GiB\" }"),
        "{}",
        proposal.toml
    );
    assert_eq!(
        value(&proposal.toml, "linux", "cmdline"),
        Some("\"root=UUID=0b0f3b8c-8a35-4d0a-9d4c-1e6b0f2d3c4a ro console=ttyS0,115200 quiet\"")
    );
    assert_eq!(
        value(&proposal.toml, "machine", "name"),
        Some("\"line-7-press\"")
    );
}

#[test]
fn an_rt_device_sharing_its_pin_with_linux_is_a_blocker() {
    let (_dir, facts) = read(ipc_machine);
    let ask = Request {
        rt_cpus: 4,
        rt_devices: vec!["0000:03:00.0".into()],
        rt_serial: vec!["ttyS1".into()],
        ..Request::default()
    };
    let proposal = propose(&facts, &ask).unwrap();
    let toml = &proposal.toml;
    assert!(
        toml.contains("{ pin = 17, cpu = 4, trigger = \"level\", polarity = \"low\" },"),
        "{toml}"
    );
    assert!(toml.contains("{ pin = 3, cpu = 4 },"), "{toml}");
    assert!(toml.contains("{ base = 0x2f8, count = 8 }"), "{toml}");
    let linux = &toml[..toml.find("[partitions.rt]").unwrap()];
    assert!(!linux.contains("03:00.0\""), "{toml}");
    assert!(
        toml.contains(
            "{ function = \"03:00.0\", intx = 17 }, # [8086:1533] class 020000, driver igb"
        ),
        "{toml}"
    );
    let blockers: Vec<&str> = proposal
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker)
        .map(|f| f.text.as_str())
        .collect();
    assert_eq!(blockers.len(), 1, "{blockers:?}");
    assert!(blockers[0].contains("pin 17, which 00:1f.3 (snd_hda_intel) also uses"));
    assert!(
        proposal
            .findings
            .iter()
            .any(|f| f.severity == Severity::Note && f.text.contains("behind the bridge 00:1c.0")),
        "{:?}",
        proposal.findings
    );
    // Linux keeps pin 16 and not 17; the IOMMU is a note.
    assert!(toml.contains("    16, # i801_smbus"), "{toml}");
    assert!(!toml.contains("    17, #"), "{toml}");
    assert!(
        proposal
            .findings
            .iter()
            .any(|f| f.severity == Severity::Note && f.text.contains("IOMMU"))
    );
}

#[test]
fn impossible_requests_name_the_option() {
    let (_dir, facts) = read(bochs_machine);
    let err = |ask: Request| propose(&facts, &ask).unwrap_err();
    let e = err(Request {
        rt_devices: vec!["05:00.0".into()],
        ..Request::default()
    });
    assert!(e.starts_with("--rt-device 05:00.0: no PCI function"), "{e}");
    let e = err(Request {
        rt_serial: vec!["ttyS1".into()],
        ..Request::default()
    });
    assert!(e.contains("it is Linux's console"), "{e}");
    let e = err(Request {
        rt_serial: vec!["ttyS7".into()],
        ..Request::default()
    });
    assert!(e.contains("present: ttyS0, ttyS1"), "{e}");
    let e = err(request(2));
    assert!(e.contains("at most 1 can go"), "{e}");
    let e = err(Request {
        rt_memory_mib: 4096,
        ..Request::default()
    });
    assert!(e.starts_with("--rt-memory 4096"), "{e}");
}

#[test]
fn vtx_off_in_the_firmware_or_unreadable_msrs_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    bochs_machine(dir.path());
    let mut msrs = GOOD_MSRS;
    msrs[0] = (0x3a, 0x1); // locked, VMX off
    write_msrs(dir.path(), &msrs);
    let facts = facts::read(dir.path()).unwrap();
    let proposal = propose(&facts, &request(1)).unwrap();
    assert!(proposal.blocked());
    assert!(
        proposal
            .toml
            .contains("# BLOCKER: VT-x is disabled and locked by the firmware")
    );

    fs::remove_file(dir.path().join("msr.txt")).unwrap();
    let facts = facts::read(dir.path()).unwrap();
    let proposal = propose(&facts, &request(1)).unwrap();
    assert!(!proposal.blocked());
    assert!(
        proposal
            .findings
            .iter()
            .any(|f| f.text.contains("modprobe msr"))
    );
}

#[test]
fn a_missing_or_broken_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    bochs_machine(dir.path());
    fs::remove_file(dir.path().join("proc/cpuinfo")).unwrap();
    let e = facts::read(dir.path()).unwrap_err();
    assert_eq!(e.file, "/proc/cpuinfo");
    bochs_machine(dir.path());
    write(
        dir.path(),
        "/sys/firmware/acpi/tables/APIC",
        b"APIC and nothing else",
    );
    let e = facts::read(dir.path()).unwrap_err();
    assert_eq!(e.file, "/sys/firmware/acpi/tables/APIC");
    bochs_machine(dir.path());
    write(dir.path(), "/sys/firmware/memmap/3/end", "zzz");
    let e = facts::read(dir.path()).unwrap_err();
    assert_eq!(e.to_string(), "/sys/firmware/memmap/3/end: not a number");
}

// ----- real firmware tables ------------------------------------------------------------------

/// The bytes of `tests/real-acpi/NAME`: acpidump's `OFFSET: HEX BYTES  // ASCII` lines, after
/// `#` lines that say where the table comes from.
fn real_table(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/real-acpi")
        .join(name);
    let text = fs::read_to_string(&path).unwrap();
    let mut bytes = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let data = line.split("//").next().unwrap();
        let (offset, hex) = data.split_once(':').unwrap();
        assert_eq!(
            usize::from_str_radix(offset.trim(), 16).unwrap(),
            bytes.len(),
            "{name}: {line}"
        );
        bytes.extend(
            hex.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap()),
        );
    }
    bytes
}

/// What the ACPI tools' decoder listed of a MADT in the same dump.
struct Listed {
    table: &'static str,
    /// Local APICs in table order: APIC ID, enabled.
    local_apics: &'static [(u32, bool)],
    ioapic: IoApic,
    /// ISA IRQ, GSI, flags.
    overrides: &'static [(u8, u32, u16)],
}

#[test]
fn real_firmwares_madts_read_as_their_decoder_listed_them() {
    let listed = [
        Listed {
            table: "asrock-h310cm-hdv.APIC.hex",
            local_apics: &[
                (0, true),
                (2, true),
                (4, true),
                (6, true),
                (8, true),
                (10, true),
            ],
            ioapic: IoApic {
                id: 2,
                address: 0xfec0_0000,
                gsi_base: 0,
            },
            overrides: &[(0, 2, 0x0), (9, 9, 0xd)],
        },
        Listed {
            table: "intel-nuc7i5bnh.APIC.hex",
            local_apics: &[(0, true), (2, true), (1, true), (3, true)],
            ioapic: IoApic {
                id: 2,
                address: 0xfec0_0000,
                gsi_base: 0,
            },
            overrides: &[(0, 2, 0x0), (9, 9, 0xd)],
        },
        Listed {
            // Four local APICs for a 2-core part: the firmware lists the family's most, and
            // marks the absent ones disabled.
            table: "congatec-conga-ma5.APIC.hex",
            local_apics: &[(0, true), (2, false), (4, true), (6, false)],
            ioapic: IoApic {
                id: 1,
                address: 0xfec0_0000,
                gsi_base: 0,
            },
            overrides: &[(0, 2, 0x0), (9, 9, 0xf)],
        },
    ];
    for machine in listed {
        let table = real_table(machine.table);
        let madt = madt::Madt::parse(&table).unwrap_or_else(|e| panic!("{}: {e}", machine.table));
        let apics: Vec<(u32, bool)> = madt
            .local_apics
            .iter()
            .map(|l| (l.apic_id, l.usable))
            .collect();
        assert_eq!(apics, machine.local_apics, "{}", machine.table);
        assert_eq!(madt.ioapics, [machine.ioapic], "{}", machine.table);
        let overrides: Vec<(u8, u32, u16)> = madt
            .overrides
            .iter()
            .map(|o| (o.irq, o.gsi, o.flags))
            .collect();
        assert_eq!(overrides, machine.overrides, "{}", machine.table);
        assert_eq!(madt.gsi_of_isa_irq(0), 2);
        // One byte changed anywhere is caught by the checksum.
        let mut broken = table.clone();
        broken[table.len() / 2] ^= 0x40;
        assert_eq!(madt::Madt::parse(&broken), Err(madt::MadtError::Checksum));
    }
}

/// An MCFG with one allocation (segment 0, buses 0-255 at `base`), as a firmware's table is
/// laid out (ACPI header, 8 reserved bytes, 16 bytes per allocation).
fn mcfg(base: u64) -> Vec<u8> {
    let mut t = b"MCFG".to_vec();
    t.extend(60u32.to_le_bytes());
    t.extend([1, 0]); // revision, checksum (below)
    t.extend(b"INTEL NUC7i5BN");
    t.extend([0x3c, 0, 0, 0]);
    t.extend(b"MSFT");
    t.extend([0x97, 0, 0, 0]);
    t.extend([0; 8]);
    t.extend(base.to_le_bytes());
    t.extend([0, 0, 0, 0xff, 0, 0, 0, 0]);
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = sum.wrapping_neg();
    t
}

/// The Intel NUC7i5BNH with its firmware's MADT and DMAR: Linux CPUs 0-3 on APIC IDs 0, 2, 1
/// and 3 (in its MADT's order; cores 0 and 1, two threads each), 8 GiB, the DMAR's reserved
/// regions reserved in the memory map, the on-board I219-V on MSI. Its MCFG is written from
/// the firmware's own values (PCI Express configuration space at 0xe0000000, 256 MiB).
fn nuc_machine(root: &Path) {
    let flags = format!("{BOCHS_FLAGS} invpcid");
    write(
        root,
        "/proc/cpuinfo",
        cpuinfo(&[(0, 0, 0), (1, 2, 1), (2, 1, 0), (3, 3, 1)], &flags),
    );
    memmap(
        root,
        &[
            (0, 0x5_7fff, "System RAM"),
            (0x5_8000, 0x5_8fff, "Reserved"),
            (0x5_9000, 0x9_dfff, "System RAM"),
            (0x9_e000, 0xf_ffff, "Reserved"),
            (0x10_0000, 0x8a63_ffff, "System RAM"),
            (0x8a64_0000, 0x8a65_ffff, "Reserved"),
            (0x8a66_0000, 0x8aae_4fff, "ACPI Tables"),
            (0x8aae_5000, 0x8b7f_ffff, "ACPI Non-volatile Storage"),
            (0x8b80_0000, 0x8fff_ffff, "Reserved"),
            (0xe000_0000, 0xefff_ffff, "Reserved"),
            (0xfec0_0000, 0xfec0_0fff, "Reserved"),
            (0xfed0_0000, 0xfed0_0fff, "Reserved"),
            (0xfee0_0000, 0xfee0_0fff, "Reserved"),
            (0xff00_0000, 0xffff_ffff, "Reserved"),
            (0x1_0000_0000, 0x2_6f7f_ffff, "System RAM"),
        ],
    );
    write(
        root,
        "/sys/firmware/acpi/tables/APIC",
        real_table("intel-nuc7i5bnh.APIC.hex"),
    );
    write(
        root,
        "/sys/firmware/acpi/tables/DMAR",
        real_table("intel-nuc7i5bnh.DMAR.hex"),
    );
    write(root, "/sys/firmware/acpi/tables/MCFG", mcfg(0xe000_0000));
    let zeros = "          0".repeat(4);
    write(
        root,
        "/proc/interrupts",
        format!(
            "            CPU0       CPU1       CPU2       CPU3\n\
             \x20  0:{zeros}   IO-APIC   2-edge      timer\n\
             \x20  4:{zeros}   IO-APIC   4-edge      ttyS0\n\
             \x20  8:{zeros}   IO-APIC   8-edge      rtc0\n\
             \x20  9:{zeros}   IO-APIC   9-fasteoi   acpi\n\
             \x20 16:{zeros}   IO-APIC  16-fasteoi   i801_smbus\n\
             \x20122:{zeros}   PCI-MSI 327680-edge      xhci_hcd\n\
             \x20123:{zeros}   PCI-MSI 520192-edge      eno1\n"
        ),
    );
    write(
        root,
        "/proc/ioports",
        "0000-0cf7 : PCI Bus 0000:00\n  0020-0021 : pic1\n  0040-0043 : timer0\n  \
         0070-0077 : rtc0\n  0080-008f : dma page reg\n  00a0-00a1 : pic2\n  \
         03f8-03ff : serial\n0cf8-0cff : PCI conf1\n0d00-ffff : PCI Bus 0000:00\n  \
         1800-18fe : pnp 00:05\n    1800-1803 : ACPI PM1a_EVT_BLK\n    \
         1804-1805 : ACPI PM1a_CNT_BLK\n    1808-180b : ACPI PM_TMR\n    \
         1880-189f : ACPI GPE0_BLK\n",
    );
    let f = |bdf, device, class, irq, driver| Pci {
        bdf,
        vendor: 0x8086,
        device,
        class,
        irq,
        driver,
        buses: None,
    };
    pci(
        root,
        &[
            f("00:00.0", 0x5904, 0x06_0000, 0, None),
            f("00:02.0", 0x5926, 0x03_0000, 255, Some("i915")),
            f("00:14.0", 0x9d2f, 0x0c_0330, 122, Some("xhci_hcd")),
            f("00:17.0", 0x9d03, 0x01_0601, 16, Some("ahci")),
            f("00:1f.0", 0x9d4e, 0x06_0100, 0, None),
            f("00:1f.4", 0x9d23, 0x0c_0500, 16, Some("i801_smbus")),
            f("00:1f.6", 0x15d8, 0x02_0000, 123, Some("e1000e")),
        ],
    );
    serial(root, &[("ttyS0", 0x3f8, 4, 4)]);
    write(
        root,
        "/proc/cmdline",
        "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=/dev/nvme0n1p2 ro quiet\n",
    );
    write(
        root,
        "/proc/consoles",
        "tty0                 -WU (EC p  )    4:1\n",
    );
    write(root, "/proc/sys/kernel/hostname", "nuc\n");
    write_msrs(root, &GOOD_MSRS);
}

/// The congatec conga-MA5 with its firmware's MADT (two of its four local APICs disabled) and
/// no DMAR: Linux CPUs 0 and 1 on APIC IDs 0 and 4, no SMT, 4 GiB, COM1.
fn conga_machine(root: &Path) {
    write(
        root,
        "/proc/cpuinfo",
        cpuinfo(&[(0, 0, 0), (1, 4, 2)], BOCHS_FLAGS),
    );
    memmap(
        root,
        &[
            (0, 0x3_efff, "System RAM"),
            (0x3_f000, 0x3_ffff, "Reserved"),
            (0x4_0000, 0x9_dfff, "System RAM"),
            (0x9_e000, 0xf_ffff, "Reserved"),
            (0x10_0000, 0x797b_ffff, "System RAM"),
            (0x797c_0000, 0x7a7f_ffff, "ACPI Non-volatile Storage"),
            (0x7a80_0000, 0x7fff_ffff, "Reserved"),
            (0xe000_0000, 0xefff_ffff, "Reserved"),
            (0xfec0_0000, 0xfec0_0fff, "Reserved"),
            (0xfee0_0000, 0xfee0_0fff, "Reserved"),
            (0x1_0000_0000, 0x1_7fff_ffff, "System RAM"),
        ],
    );
    write(
        root,
        "/sys/firmware/acpi/tables/APIC",
        real_table("congatec-conga-ma5.APIC.hex"),
    );
    let zeros = "          0".repeat(2);
    write(
        root,
        "/proc/interrupts",
        format!(
            "            CPU0       CPU1\n\
             \x20  0:{zeros}   IO-APIC   2-edge      timer\n\
             \x20  4:{zeros}   IO-APIC   4-edge      ttyS0\n\
             \x20  9:{zeros}   IO-APIC   9-fasteoi   acpi\n"
        ),
    );
    write(
        root,
        "/proc/ioports",
        "0000-0cf7 : PCI Bus 0000:00\n  0020-0021 : pic1\n  0040-0043 : timer0\n  \
         0070-0077 : rtc0\n  00a0-00a1 : pic2\n  03f8-03ff : serial\n\
         0cf8-0cff : PCI conf1\n0d00-ffff : PCI Bus 0000:00\n  0400-047f : pnp 00:01\n    \
         0400-0403 : ACPI PM1a_EVT_BLK\n    0404-0405 : ACPI PM1a_CNT_BLK\n    \
         0408-040b : ACPI PM_TMR\n    0420-043f : ACPI GPE0_BLK\n",
    );
    pci(
        root,
        &[Pci {
            bdf: "00:00.0",
            vendor: 0x8086,
            device: 0x5af0,
            class: 0x06_0000,
            irq: 0,
            driver: None,
            buses: None,
        }],
    );
    serial(root, &[("ttyS0", 0x3f8, 4, 4)]);
    write(
        root,
        "/proc/cmdline",
        "root=/dev/mmcblk0p2 ro console=ttyS0,115200\n",
    );
    write(
        root,
        "/proc/consoles",
        "ttyS0                -W- (EC p a)    4:64\n",
    );
    write(root, "/proc/sys/kernel/hostname", "cell-controller\n");
    write_msrs(root, &GOOD_MSRS);
}

#[test]
fn real_firmware_gets_whole_cores_and_its_iommu_named() {
    let (_dir, facts) = read(nuc_machine);
    assert!(facts.has_dmar && facts.has_mcfg);
    let proposal = propose(&facts, &request(2)).unwrap();
    // The last core: APIC IDs 2 and 3 (Linux CPUs 1 and 3); a thread alone is refused.
    assert_eq!(
        value(&proposal.toml, "partitions.rt", "cpus"),
        Some("[2, 3]"),
        "{}",
        proposal.toml
    );
    assert_eq!(
        value(&proposal.toml, "partitions.linux", "cpus"),
        Some("[0, 1]")
    );
    let err = propose(&facts, &request(1)).unwrap_err();
    assert!(err.contains("SMT siblings (Linux CPUs 1, 3)"), "{err}");
    assert!(!proposal.blocked(), "{:?}", proposal.findings);
    let notes: Vec<&str> = proposal.findings.iter().map(|f| f.text.as_str()).collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("the machine has an IOMMU")),
        "{notes:?}"
    );
    assert!(
        !notes.iter().any(|n| n.starts_with("no IOMMU")),
        "{notes:?}"
    );
    // Linux's pins are its IOAPIC lines; the USB controller's and the NIC's IRQs (122, 123)
    // are MSI, which Linux's sysfs shows as their `irq`: no pin of anybody's.
    let pins = &proposal.toml[proposal.toml.find("ioapic_pins = [").unwrap()..];
    let pins = &pins[..pins.find(']').unwrap()];
    assert_eq!(
        pins.lines().skip(1).map(str::trim).collect::<Vec<_>>(),
        ["2, # timer", "8, # rtc0", "9, # acpi", "16, # i801_smbus"],
        "{}",
        proposal.toml
    );
    // The on-board NIC for the RT partition: on MSI under Linux, so its pin is not known.
    let ask = Request {
        rt_cpus: 2,
        rt_devices: vec!["00:1f.6".into()],
        ..Request::default()
    };
    let proposal = propose(&facts, &ask).unwrap();
    assert!(
        proposal
            .toml
            .contains("pci_devices = [\n    \"00:1f.6\", # [8086:15d8]"),
        "{}",
        proposal.toml
    );
    assert!(
        proposal
            .findings
            .iter()
            .any(|f| f.severity == Severity::Warning
                && f.text.starts_with("00:1f.6 runs on MSI under Linux")),
        "{:?}",
        proposal.findings
    );
}

#[test]
fn real_firmware_with_disabled_processors_and_no_iommu() {
    let (_dir, facts) = read(conga_machine);
    let proposal = propose(&facts, &request(1)).unwrap();
    assert_eq!(
        value(&proposal.toml, "partitions.rt", "cpus"),
        Some("[4]"),
        "{}",
        proposal.toml
    );
    assert_eq!(
        value(&proposal.toml, "partitions.linux", "cpus"),
        Some("[0]")
    );
    assert!(!proposal.blocked(), "{:?}", proposal.findings);
    // The firmware's disabled entries (APIC IDs 2 and 6) are no CPU Linux left offline.
    assert!(
        !proposal.findings.iter().any(|f| f.text.contains("offline")),
        "{:?}",
        proposal.findings
    );
    assert!(
        proposal
            .findings
            .iter()
            .any(|f| f.severity == Severity::Warning && f.text.starts_with("no IOMMU")),
        "{:?}",
        proposal.findings
    );
    // A third CPU is more than the machine has.
    assert!(propose(&facts, &request(2)).is_err());
}
