//! Hardware fit: a valid config checked against what the hypervisor found at boot.

#![cfg(feature = "std")]

use bulkhead_config::host::load_str;
use bulkhead_config::platform::{FitErrorKind, Platform, check_fit};
use bulkhead_config::{Config, Region};

const MIB: u64 = 1 << 20;

/// Two CPUs, 1 GiB: the Bochs 2-CPU plan.
fn config() -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bochs-2cpu.toml");
    bulkhead_config::host::load_file(path).unwrap_or_else(|d| panic!("{d}"))
}

/// Bochs' e820 for 1 GiB, with ACPI data at the top.
const RAM: [Region; 2] = [
    Region::new(0, 0x9f000),
    Region::new(0x10_0000, 0x3fff_0000 - 0x10_0000),
];

const IDS: [u32; 2] = [0, 1];

#[test]
fn bochs_plan_fits_bochs() {
    let occupied = [
        ("hypervisor", Region::new(MIB, 2 * MIB)),
        ("vmlinuz", Region::new(8 * MIB, 8 * MIB)),
    ];
    let hw = Platform {
        apic_ids: &IDS,
        usable_ram: &RAM,
        occupied: &occupied,
        kept_registers: &[],
    };
    check_fit(&config(), &hw).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn missing_cpu_names_field_and_present_list() {
    let ids = [0];
    let hw = Platform {
        apic_ids: &ids,
        usable_ram: &RAM,
        occupied: &[],
        kept_registers: &[],
    };
    let e = check_fit(&config(), &hw).unwrap_err();
    assert!(matches!(
        e.kind,
        FitErrorKind::CpuNotPresent { apic_id: 1, .. }
    ));
    assert_eq!(
        e.to_string(),
        "partitions.rt.cpus[0]: APIC ID 1 is not present on this machine (present: 0)"
    );
}

#[test]
fn present_list_is_compact() {
    let text = r#"
[machine]
name = "m"
[hypervisor]
memory = { base = "1 MiB", size = "15 MiB" }
[partitions.linux]
cpus = [0]
memory = [{ base = "16 MiB", size = "16 MiB" }]
[partitions.rt]
cpus = [1, 7]
memory = [{ base = "32 MiB", size = "16 MiB" }]
[linux]
kernel = "k"
[rt]
image = "r"
"#;
    let cfg = load_str(text, "m.toml").unwrap();
    let ids = [0, 1, 2, 3, 4, 5, 8, 10, 11];
    let ram = [Region::new(0, 64 * MIB)];
    let hw = Platform {
        apic_ids: &ids,
        usable_ram: &ram,
        occupied: &[],
        kept_registers: &[],
    };
    let e = check_fit(&cfg, &hw).unwrap_err();
    assert_eq!(
        e.to_string(),
        "partitions.rt.cpus[1]: APIC ID 7 is not present on this machine (present: 0-5, 8, 10, 11)"
    );
    let hw = Platform {
        apic_ids: &[0, 1],
        usable_ram: &ram,
        occupied: &[],
        kept_registers: &[],
    };
    assert!(
        check_fit(&cfg, &hw)
            .unwrap_err()
            .to_string()
            .ends_with("(present: 0, 1)")
    );
}

#[test]
fn region_beyond_ram() {
    // A 512 MiB machine: Linux's high region runs past the end.
    let ram = [Region::new(0, 0x9f000), Region::new(MIB, 511 * MIB)];
    let hw = Platform {
        apic_ids: &IDS,
        usable_ram: &ram,
        occupied: &[],
        kept_registers: &[],
    };
    let e = check_fit(&config(), &hw).unwrap_err();
    assert!(matches!(
        e.kind,
        FitErrorKind::NotUsableRam {
            first_unusable: 0x2000_0000,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "partitions.linux.memory[1]: 0x8000000..0x30000000 is not usable RAM on this machine \
         (0x20000000 is not in any usable range)"
    );
}

#[test]
fn region_spanning_adjacent_entries_fits() {
    // The same RAM split into unsorted, touching and overlapping entries.
    let ram = [
        Region::new(0x2000_0000, 0x2000_0000),
        Region::new(0, 0x9f000),
        Region::new(0x10_0000, 0x0800_0000),
        Region::new(0x0400_0000, 0x1c00_0000),
    ];
    let hw = Platform {
        apic_ids: &IDS,
        usable_ram: &ram,
        occupied: &[],
        kept_registers: &[],
    };
    check_fit(&config(), &hw).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn hole_in_ram_is_found() {
    // A reserved page in the middle of the RT region.
    let ram = [
        Region::new(0, 0x9f000),
        Region::new(MIB, 0x3400_0000 - MIB),
        Region::new(0x3400_1000, 0x4000_0000 - 0x3400_1000),
    ];
    let hw = Platform {
        apic_ids: &IDS,
        usable_ram: &ram,
        occupied: &[],
        kept_registers: &[],
    };
    let e = check_fit(&config(), &hw).unwrap_err();
    assert_eq!(e.path.to_string(), "partitions.rt.memory[0]");
    assert!(matches!(
        e.kind,
        FitErrorKind::NotUsableRam {
            first_unusable: 0x3400_0000,
            ..
        }
    ));
}

#[test]
fn hypervisor_region_must_be_ram() {
    let ram = [Region::new(0, 0x9f000), Region::new(2 * MIB, 0x3e00_0000)];
    let hw = Platform {
        apic_ids: &IDS,
        usable_ram: &ram,
        occupied: &[],
        kept_registers: &[],
    };
    let e = check_fit(&config(), &hw).unwrap_err();
    assert_eq!(e.path.to_string(), "hypervisor.memory");
    assert!(matches!(
        e.kind,
        FitErrorKind::NotUsableRam {
            first_unusable: 0x10_0000,
            ..
        }
    ));
}

#[test]
fn no_ram_at_all() {
    let hw = Platform {
        apic_ids: &IDS,
        usable_ram: &[],
        occupied: &[],
        kept_registers: &[],
    };
    let e = check_fit(&config(), &hw).unwrap_err();
    assert_eq!(e.path.to_string(), "hypervisor.memory");
}

#[test]
fn shared_region_overlapping_a_module() {
    let occupied = [
        ("hypervisor", Region::new(MIB, 2 * MIB)),
        ("vmlinuz", Region::new(0x381f_f000, 0x80_0000)),
    ];
    let hw = Platform {
        apic_ids: &IDS,
        usable_ram: &RAM,
        occupied: &occupied,
        kept_registers: &[],
    };
    let e = check_fit(&config(), &hw).unwrap_err();
    assert!(matches!(
        e.kind,
        FitErrorKind::OverlapsOccupied {
            name: "vmlinuz",
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "shared[0] (shm0): 0x38000000..0x38200000 overlaps module \"vmlinuz\" at \
         0x381ff000..0x389ff000"
    );
}

#[test]
fn partition_region_overlapping_a_module() {
    let occupied = [("initrd.img", Region::new(0x2000_0000, 0x100_0000))];
    let hw = Platform {
        apic_ids: &IDS,
        usable_ram: &RAM,
        occupied: &occupied,
        kept_registers: &[],
    };
    let e = check_fit(&config(), &hw).unwrap_err();
    assert_eq!(e.path.to_string(), "partitions.linux.memory[1]");
}

#[test]
fn occupied_ranges_inside_the_hypervisor_region_are_fine() {
    let occupied = [("rt.elf", Region::new(64 * MIB, 4 * MIB))];
    let hw = Platform {
        apic_ids: &IDS,
        usable_ram: &RAM,
        occupied: &occupied,
        kept_registers: &[],
    };
    assert!(check_fit(&config(), &hw).is_ok());
}

/// The Bochs plan with the RT partition owning the HPET's registers.
fn config_with_rt_mmio(region: &str) -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bochs-2cpu.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let rt = "[partitions.rt]\ncpus = [1]\n";
    assert!(text.contains(rt));
    let text = text.replacen(rt, &format!("{rt}mmio = [{region}]\n"), 1);
    load_str(&text, "test.toml").unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn device_registers_are_neither_ram_nor_kept_registers() {
    let kept = [("IOAPIC registers", Region::new(0xfec0_0000, 0x1000))];
    let hw = |ram: &'static [Region]| Platform {
        apic_ids: &IDS,
        usable_ram: ram,
        occupied: &[],
        kept_registers: &kept,
    };
    let hpet = config_with_rt_mmio(r#"{ base = 0xfed0_0000, size = "4 KiB" }"#);
    check_fit(&hpet, &hw(&RAM)).unwrap_or_else(|e| panic!("{e}"));

    static RAM_UP_HIGH: [Region; 3] = [RAM[0], RAM[1], Region::new(0xfed0_0000, 0x1000)];
    let e = check_fit(&hpet, &hw(&RAM_UP_HIGH)).unwrap_err();
    assert!(matches!(e.kind, FitErrorKind::MmioIsRam { .. }), "{e}");
    assert!(e.to_string().starts_with("partitions.rt.mmio[0]: "), "{e}");

    let over_ioapic = config_with_rt_mmio(r#"{ base = 0xfec0_0000, size = "4 KiB" }"#);
    let e = check_fit(&over_ioapic, &hw(&RAM)).unwrap_err();
    assert!(matches!(e.kind, FitErrorKind::MmioIsKept { .. }), "{e}");
    assert!(e.to_string().contains("IOAPIC registers"), "{e}");
}
