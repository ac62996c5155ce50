//! The host loader: bad configs are rejected with the right error kind, the field path and the
//! line of the file; sizes and PCI addresses are read as documented.

#![cfg(feature = "std")]

use bulkhead_config::host::{Diagnostic, DiagnosticKind, load_str, parse_size};
use bulkhead_config::{
    ChannelDirection, ConsoleTarget, ErrorKind, Notify, PartitionId, PortRange, Region,
};

/// A small valid config. Tests replace one line of it; the line numbers in their assertions are
/// the numbers of this text (line 1 is `[machine]`).
const BASE: &str = r#"[machine]
name = "test"

[hypervisor]
memory = { base = 0x10_0000, size = "15 MiB" }

[partitions.linux]
cpus = [0]
memory = [{ base = 0x0, size = 0x9f000 }, { base = 0x100_0000, size = "64 MiB" }]
ioapic_pins = [1, 4]
io_ports = [{ base = 0x3f8, count = 8 }]
pci_devices = ["00:01.1"]

[partitions.rt]
cpus = [1]
memory = [{ base = 0x500_0000, size = "16 MiB" }]
ioapic_pins = [3]
io_ports = [{ base = 0x2f8, count = 8 }]
pci_devices = ["00:03.0"]

[linux]
kernel = "vmlinuz"
cmdline = "console=ttyS1"

[rt]
image = "rt.elf"

[[shared]]
name = "shm0"
base = 0x600_0000
size = "1 MiB"

[[channels]]
name = "up"
region = "shm0"
direction = "rt-to-linux"
size = "64 KiB"
slot_size = 256
"#;

/// BASE with the one occurrence of `from` replaced by `to`, loaded; it must fail.
fn bad(from: &str, to: &str) -> Diagnostic {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "{from:?} must occur once in BASE"
    );
    let text = BASE.replacen(from, to, 1);
    match load_str(&text, "test.toml") {
        Ok(_) => panic!("config with {to:?} was accepted"),
        Err(d) => d,
    }
}

/// Asserts a semantic error: its kind (by pattern), path and line; returns the kind.
macro_rules! assert_config_error {
    ($diag:expr, $kind:pat, $path:expr, $line:expr) => {{
        let d = $diag;
        let e = d
            .config_error()
            .unwrap_or_else(|| panic!("not a config error: {d}"));
        assert!(matches!(e.kind, $kind), "wrong kind: {d}");
        assert_eq!(e.path.to_string(), $path, "wrong path: {d}");
        assert_eq!(d.line(), Some($line), "wrong line: {d}");
        println!("{d}");
        (d.to_string(), e.kind)
    }};
}

#[test]
fn base_is_valid() {
    let cfg = load_str(BASE, "test.toml").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(cfg.name().as_str(), "test");
    assert_eq!(
        cfg.partition(PartitionId::Rt).io_ports(),
        &[PortRange::new(0x2f8, 8)]
    );
    assert_eq!(
        cfg.shared_regions()[0].region,
        Region::new(0x600_0000, 1 << 20)
    );
    assert!(cfg.linux().initrd().is_none());
    assert_eq!(cfg.partition_of_pin(3), Some(PartitionId::Rt));
    assert_eq!(cfg.partition_of_port(0x3fd), Some(PartitionId::Linux));
    assert_eq!(cfg.partition_of_port(0x400), None);
    assert_eq!(
        cfg.partition_of_pci_device("00:03.0".parse().unwrap()),
        Some(PartitionId::Rt)
    );
    assert_eq!(cfg.partition_of_address(0x500_1000), Some(PartitionId::Rt));
}

#[test]
fn unknown_key_is_a_toml_error_on_its_line() {
    let d = bad(
        "kernel = \"vmlinuz\"",
        "kernel = \"vmlinuz\"\nkernal = \"typo\"",
    );
    assert!(
        matches!(&d.kind, DiagnosticKind::Toml(m) if m.contains("unknown field `kernal`")),
        "{d}"
    );
    assert_eq!(d.line(), Some(23));
    assert!(d.to_string().starts_with("test.toml:23:1: "), "{d}");
}

#[test]
fn syntax_error_is_located() {
    // The unclosed array runs into the next line, where the parser notices.
    let d = bad("cpus = [1]", "cpus = [1,");
    assert!(matches!(d.kind, DiagnosticKind::Toml(_)), "{d}");
    assert_eq!(d.line(), Some(16));
}

#[test]
fn wrong_type_is_located() {
    let d = bad("slot_size = 256", "slot_size = \"256\"");
    assert!(matches!(d.kind, DiagnosticKind::Toml(_)), "{d}");
    assert_eq!(d.line(), Some(38));
}

#[test]
fn bad_enum_value_is_located() {
    let d = bad("direction = \"rt-to-linux\"", "direction = \"sideways\"");
    assert!(
        matches!(&d.kind, DiagnosticKind::Toml(m) if m.contains("sideways")),
        "{d}"
    );
    assert_eq!(d.line(), Some(36));
}

#[test]
fn bad_size_string() {
    assert_config_error!(
        bad("size = \"16 MiB\"", "size = \"16 MB\""),
        ErrorKind::InvalidSize,
        "partitions.rt.memory[0].size",
        16
    );
}

#[test]
fn negative_size_is_a_toml_error() {
    let d = bad("size = \"1 MiB\"", "size = -4096");
    assert!(
        matches!(&d.kind, DiagnosticKind::Toml(m) if m.contains("negative")),
        "{d}"
    );
    assert_eq!(d.line(), Some(31));
}

#[test]
fn bad_bdf_string() {
    assert_config_error!(
        bad(
            "pci_devices = [\"00:03.0\"]",
            "pci_devices = [\"00:03.0\", \"00:20.0\"]"
        ),
        ErrorKind::InvalidBdf,
        "partitions.rt.pci_devices[1]",
        19
    );
}

#[test]
fn overlapping_regions() {
    let (text, _) = assert_config_error!(
        bad(
            "{ base = 0x500_0000, size = \"16 MiB\" }",
            "{ base = 0x400_0000, size = \"32 MiB\" }"
        ),
        ErrorKind::Overlap { .. },
        "partitions.rt.memory[0]",
        16
    );
    assert!(
        text.ends_with(
            "partitions.rt.memory[0]: 0x4000000..0x6000000 overlaps partitions.linux.memory[1] \
             (0x1000000..0x5000000)"
        ),
        "{text}"
    );
}

#[test]
fn shared_region_overlapping_hypervisor() {
    let (text, _) = assert_config_error!(
        bad("base = 0x600_0000", "base = 0x20_0000"),
        ErrorKind::Overlap { .. },
        "shared[0] (shm0)",
        28
    );
    assert!(
        text.contains("overlaps hypervisor.memory (0x100000..0x1000000)"),
        "{text}"
    );
}

#[test]
fn regions_overlap_within_a_partition() {
    let (text, _) = assert_config_error!(
        bad(
            "{ base = 0x100_0000, size = \"64 MiB\" }",
            "{ base = 0x9e000, size = 0x1000 }"
        ),
        ErrorKind::Overlap { .. },
        "partitions.linux.memory[1]",
        9
    );
    assert!(
        text.ends_with("overlaps partitions.linux.memory[0] (0x0..0x9f000)"),
        "{text}"
    );
}

#[test]
fn unaligned_base() {
    assert_config_error!(
        bad("base = 0x600_0000", "base = 0x600_0800"),
        ErrorKind::Unaligned { value: 0x600_0800 },
        "shared[0].base",
        30
    );
}

#[test]
fn unaligned_size() {
    assert_config_error!(
        bad("size = 0x9f000", "size = 0x9f001"),
        ErrorKind::Unaligned { value: 0x9f001 },
        "partitions.linux.memory[0].size",
        9
    );
}

#[test]
fn zero_size() {
    assert_config_error!(
        bad("size = \"1 MiB\"", "size = 0"),
        ErrorKind::ZeroSize,
        "shared[0].size",
        31
    );
}

#[test]
fn absurd_size() {
    let (text, _) = assert_config_error!(
        bad("size = \"16 MiB\"", "size = \"128 TiB\""),
        ErrorKind::AbsurdSize { .. },
        "partitions.rt.memory[0].size",
        16
    );
    assert!(text.contains("64 TiB"), "{text}");
}

#[test]
fn overflowing_region() {
    assert_config_error!(
        bad("base = 0x600_0000", "base = 0x7fff_ffff_ffff_f000"),
        ErrorKind::AbsurdSize { .. },
        "shared[0].size",
        31
    );
}

#[test]
fn hypervisor_too_small() {
    assert_config_error!(
        bad("size = \"15 MiB\"", "size = \"2 MiB\""),
        ErrorKind::HypervisorTooSmall { size: 0x20_0000 },
        "hypervisor.memory.size",
        5
    );
}

#[test]
fn cpu_owned_twice() {
    let (text, _) = assert_config_error!(
        bad("cpus = [1]", "cpus = [0]"),
        ErrorKind::CpuOwnedTwice { apic_id: 0, .. },
        "partitions.rt.cpus[0]",
        15
    );
    assert_eq!(
        text,
        "test.toml:15:9: partitions.rt.cpus[0]: APIC ID 0 is already owned by \
         partitions.linux.cpus[0]"
    );
}

#[test]
fn cpu_twice_in_one_partition() {
    assert_config_error!(
        bad("cpus = [1]", "cpus = [1, 2, 1]"),
        ErrorKind::CpuOwnedTwice { apic_id: 1, .. },
        "partitions.rt.cpus[2]",
        15
    );
}

#[test]
fn more_rt_cpus_than_the_rt_kernel_runs() {
    let nine = "cpus = [1, 2, 3, 4, 5, 6, 7, 8, 9]";
    let (text, _) = assert_config_error!(
        bad("cpus = [1]", nine),
        ErrorKind::TooManyRtCpus { count: 9, max: 8 },
        "partitions.rt.cpus[8]",
        15
    );
    assert!(
        text.ends_with("9 CPUs, but the RT kernel runs on at most 8: give the others to Linux")
    );
    // Eight is the limit, and Linux has none.
    let eight = BASE.replacen("cpus = [1]", "cpus = [1, 2, 3, 4, 5, 6, 7, 8]", 1);
    load_str(&eight, "test.toml").unwrap_or_else(|d| panic!("{d}"));
}

#[test]
fn hypervisor_above_4_gib_is_refused_as_at_boot() {
    let (text, _) = assert_config_error!(
        bad(
            "memory = { base = 0x10_0000, size = \"15 MiB\" }",
            "memory = { base = 0xffc0_0000, size = \"8 MiB\" }"
        ),
        ErrorKind::HypervisorAbove4G { .. },
        "hypervisor.memory",
        5
    );
    assert!(text.ends_with("0xffc00000..0x100400000 ends above 4 GiB; the hypervisor maps only the first 4 GiB for itself"), "{text}");
}

#[test]
fn rt_memory_the_rt_kernel_cannot_use_is_refused_as_at_boot() {
    // Too small for the loader's first MiB and a kernel.
    let (text, _) = assert_config_error!(
        bad(
            "memory = [{ base = 0x500_0000, size = \"16 MiB\" }]",
            "memory = [{ base = 0x500_0000, size = \"2 MiB\" }]"
        ),
        ErrorKind::RtLayout(_),
        "partitions.rt.memory",
        16
    );
    assert!(text.contains("must hold the loader's first MiB"), "{text}");
    // More than the RT kernel's 3 GiB of guest-physical space.
    let (text, _) = assert_config_error!(
        bad(
            "memory = [{ base = 0x500_0000, size = \"16 MiB\" }]",
            "memory = [{ base = 0x1_0000_0000, size = \"3 GiB\" }]"
        ),
        ErrorKind::RtLayout(_),
        "shared[0] (shm0)",
        28
    );
    assert!(text.contains("past the RT kernel's 0xc0000000"), "{text}");
}

#[test]
fn doorbell_budget_is_read_and_checked() {
    let cfg = load_str(BASE, "test.toml").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        cfg.rt().doorbells_per_s(),
        bulkhead_config::RtConfig::DEFAULT_DOORBELLS_PER_S
    );
    let text = BASE.replacen(
        "image = \"rt.elf\"",
        "image = \"rt.elf\"\ndoorbells_per_s = 500",
        1,
    );
    let cfg = load_str(&text, "test.toml").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(cfg.rt().doorbells_per_s(), 500);
    let blob = bulkhead_config::blob::encode(&cfg);
    assert_eq!(
        bulkhead_config::blob::decode(&blob)
            .unwrap()
            .rt()
            .doorbells_per_s(),
        500
    );
    let (text, _) = assert_config_error!(
        bad(
            "image = \"rt.elf\"",
            "image = \"rt.elf\"\ndoorbells_per_s = 0"
        ),
        ErrorKind::DoorbellBudget { per_s: 0 },
        "rt.doorbells_per_s",
        27
    );
    assert!(
        text.ends_with("0 doorbells a second: allow 1 to 100000 (one every 10 us)"),
        "{text}"
    );
}

#[test]
fn no_cpu() {
    assert_config_error!(
        bad("cpus = [1]", "cpus = []"),
        ErrorKind::NoCpu,
        "partitions.rt.cpus",
        15
    );
}

#[test]
fn no_memory() {
    assert_config_error!(
        bad(
            "memory = [{ base = 0x500_0000, size = \"16 MiB\" }]",
            "memory = []"
        ),
        ErrorKind::NoMemory,
        "partitions.rt.memory",
        16
    );
}

#[test]
fn pin_owned_twice() {
    assert_config_error!(
        bad("ioapic_pins = [3]", "ioapic_pins = [3, 4]"),
        ErrorKind::PinOwnedTwice { pin: 4, .. },
        "partitions.rt.ioapic_pins[1]",
        17
    );
}

#[test]
fn pins_name_their_cpu_trigger_and_polarity() {
    let text = BASE.replacen(
        "ioapic_pins = [3]",
        r#"ioapic_pins = [3, { pin = 5, cpu = 1, trigger = "level", polarity = "low" }, { pin = 6 }]"#,
        1,
    );
    let cfg = load_str(&text, "test.toml").unwrap_or_else(|d| panic!("{d}"));
    let rt = cfg.partition(PartitionId::Rt);
    assert_eq!(rt.ioapic_pins(), &[3, 5, 6]);
    let routes = rt.pin_routes();
    assert!(routes[0].is_default() && routes[2].is_default());
    assert_eq!(routes[1].cpu, Some(1));
    assert_eq!(routes[1].level, Some(true));
    assert_eq!(routes[1].active_low, Some(true));
}

#[test]
fn pin_routed_to_a_cpu_outside_the_rt_partition() {
    let (text, _) = assert_config_error!(
        bad("ioapic_pins = [3]", "ioapic_pins = [{ pin = 3, cpu = 0 }]"),
        ErrorKind::PinCpuOutside { pin: 3, apic_id: 0 },
        "partitions.rt.ioapic_pins[0].cpu",
        17
    );
    assert!(text.contains("not a CPU of the RT partition"), "{text}");
}

#[test]
fn linux_pins_take_no_route() {
    assert_config_error!(
        bad("ioapic_pins = [1, 4]", r#"ioapic_pins = [1, { pin = 4, trigger = "edge" }]"#),
        ErrorKind::LinuxPinRouted { pin: 4 },
        "partitions.linux.ioapic_pins[1]",
        10
    );
}

#[test]
fn pin_route_words_are_checked() {
    let d = bad("ioapic_pins = [3]", r#"ioapic_pins = [{ pin = 3, trigger = "rising" }]"#);
    assert!(d.config_error().is_none(), "a TOML error, not a semantic one: {d}");
}

#[test]
fn rt_device_registers_are_read_and_checked() {
    let text = BASE.replacen(
        "pci_devices = [\"00:03.0\"]",
        "pci_devices = [\"00:03.0\"]\nmmio = [{ base = 0xfed0_0000, size = \"4 KiB\" }]",
        1,
    );
    let cfg = load_str(&text, "test.toml").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        cfg.partition(PartitionId::Rt).mmio(),
        &[Region::new(0xfed0_0000, 0x1000)]
    );
    let mmio = "pci_devices = [\"00:03.0\"]\nmmio = ";
    let with = |region: &str| {
        let text = BASE.replacen("pci_devices = [\"00:03.0\"]", &format!("{mmio}[{region}]"), 1);
        load_str(&text, "test.toml").expect_err("accepted")
    };
    let d = with("{ base = 0x8000_0000, size = \"4 KiB\" }");
    assert!(matches!(d.config_error().unwrap().kind, ErrorKind::MmioOutsideWindow { .. }), "{d}");
    assert_eq!(d.config_error().unwrap().path.to_string(), "partitions.rt.mmio[0]");
    let d = with("{ base = 0xfee0_0000, size = \"4 KiB\" }");
    assert!(matches!(d.config_error().unwrap().kind, ErrorKind::MmioIsLocalApic { .. }), "{d}");
    let d = with("{ base = 0xfed0_0800, size = \"4 KiB\" }");
    assert!(matches!(d.config_error().unwrap().kind, ErrorKind::Unaligned { .. }), "{d}");
    assert_config_error!(
        bad(
            "pci_devices = [\"00:01.1\"]",
            "pci_devices = [\"00:01.1\"]\nmmio = [{ base = 0xfed0_0000, size = \"4 KiB\" }]"
        ),
        ErrorKind::LinuxMmio,
        "partitions.linux.mmio[0]",
        13
    );
}

#[test]
fn pin_out_of_range() {
    assert_config_error!(
        bad("ioapic_pins = [3]", "ioapic_pins = [240]"),
        ErrorKind::PinOutOfRange { pin: 240 },
        "partitions.rt.ioapic_pins[0]",
        17
    );
}

#[test]
fn port_overlap() {
    let (text, _) = assert_config_error!(
        bad("{ base = 0x2f8, count = 8 }", "{ base = 0x3fc, count = 8 }"),
        ErrorKind::PortOwnedTwice { .. },
        "partitions.rt.io_ports[0]",
        18
    );
    assert!(text.contains("0x3fc..0x404 overlap partitions.linux.io_ports[0] (0x3f8..0x400)"));
}

#[test]
fn port_range_past_end() {
    assert_config_error!(
        bad(
            "{ base = 0x2f8, count = 8 }",
            "{ base = 0xfffc, count = 8 }"
        ),
        ErrorKind::PortPastEnd { .. },
        "partitions.rt.io_ports[0].count",
        18
    );
}

#[test]
fn port_count_zero() {
    assert_config_error!(
        bad("{ base = 0x2f8, count = 8 }", "{ base = 0x2f8, count = 0 }"),
        ErrorKind::PortCountZero,
        "partitions.rt.io_ports[0].count",
        18
    );
}

#[test]
fn pci_device_owned_twice() {
    assert_config_error!(
        bad(
            "pci_devices = [\"00:03.0\"]",
            "pci_devices = [\"0000:00:01.1\"]"
        ),
        ErrorKind::PciOwnedTwice { .. },
        "partitions.rt.pci_devices[0]",
        19
    );
}

#[test]
fn channel_too_big_for_region() {
    let (_, kind) = assert_config_error!(
        bad("size = \"64 KiB\"", "size = \"2 MiB\""),
        ErrorKind::ChannelsExceedRegion { .. },
        "channels[0].size",
        37
    );
    assert!(matches!(
        kind,
        ErrorKind::ChannelsExceedRegion {
            needed: 0x20_0000,
            available: 0x10_0000,
            ..
        }
    ));
}

#[test]
fn channels_together_too_big_for_region() {
    let second = "slot_size = 256\n\n[[channels]]\nname = \"down\"\nregion = \"shm0\"\n\
                  direction = \"linux-to-rt\"\nsize = \"1 MiB\"\nslot_size = 64\n";
    assert_config_error!(
        bad("slot_size = 256\n", second),
        ErrorKind::ChannelsExceedRegion {
            needed: 0x11_0000,
            ..
        },
        "channels[1].size",
        44
    );
}

#[test]
fn bad_slot_size() {
    assert_config_error!(
        bad("slot_size = 256", "slot_size = 100"),
        ErrorKind::BadSlotSize { slot_size: 100 },
        "channels[0].slot_size",
        38
    );
    assert_config_error!(
        bad("slot_size = 256", "slot_size = 131072"),
        ErrorKind::BadSlotSize { .. },
        "channels[0].slot_size",
        38
    );
    assert_config_error!(
        bad("slot_size = 256", "slot_size = 8"),
        ErrorKind::BadSlotSize { .. },
        "channels[0].slot_size",
        38
    );
}

#[test]
fn channel_too_small_for_header_and_two_slots() {
    assert_config_error!(
        bad("slot_size = 256", "slot_size = 65536"),
        ErrorKind::ChannelTooSmall {
            size: 0x10000,
            slot_size: 65536
        },
        "channels[0].size",
        37
    );
}

#[test]
fn channel_size_unaligned() {
    assert_config_error!(
        bad("size = \"64 KiB\"", "size = 70000"),
        ErrorKind::Unaligned { value: 70000 },
        "channels[0].size",
        37
    );
}

#[test]
fn unknown_region() {
    assert_config_error!(
        bad("region = \"shm0\"", "region = \"shm1\""),
        ErrorKind::UnknownRegion { .. },
        "channels[0].region",
        35
    );
}

#[test]
fn duplicate_shared_names() {
    let second =
        "size = \"1 MiB\"\n\n[[shared]]\nname = \"shm0\"\nbase = 0x700_0000\nsize = \"1 MiB\"";
    let (text, _) = assert_config_error!(
        bad("size = \"1 MiB\"", second),
        ErrorKind::DuplicateName { .. },
        "shared[1].name",
        34
    );
    assert!(
        text.ends_with("name \"shm0\" is already used by shared[0].name"),
        "{text}"
    );
}

#[test]
fn duplicate_channel_names() {
    let second = "slot_size = 256\n\n[[channels]]\nname = \"up\"\nregion = \"shm0\"\n\
                  direction = \"linux-to-rt\"\nsize = \"64 KiB\"\nslot_size = 64\n";
    assert_config_error!(
        bad("slot_size = 256\n", second),
        ErrorKind::DuplicateName { .. },
        "channels[1].name",
        41
    );
}

/// A `hypervisor-to-linux` channel `name` after BASE's, with `notify` when given, in the
/// shared region `hvlog` that [`HVLOG_REGION`] adds.
fn hypervisor_channel(name: &str, notify: Option<&str>) -> String {
    let mut text = format!(
        "\n[[channels]]\nname = \"{name}\"\nregion = \"hvlog\"\n\
         direction = \"hypervisor-to-linux\"\nsize = \"64 KiB\"\nslot_size = 1024\n"
    );
    if let Some(notify) = notify {
        text.push_str(&format!("notify = \"{notify}\"\n"));
    }
    text
}

/// A shared region of its own for the hypervisor's log channel.
const HVLOG_REGION: &str = "\n[[shared]]\nname = \"hvlog\"\nbase = 0x700_0000\nsize = \"1 MiB\"\n";

#[test]
fn the_hypervisor_channel_is_polled_single_and_alone_in_its_region() {
    let text = format!("{BASE}{HVLOG_REGION}{}", hypervisor_channel("hv-log", None));
    let cfg = load_str(&text, "test.toml").unwrap_or_else(|d| panic!("{d}"));
    let hv = &cfg.channels()[1];
    assert_eq!(hv.direction(), ChannelDirection::HypervisorToLinux);
    assert_eq!(hv.notify(), Notify::Poll, "poll when not said");
    assert_eq!(hv.direction().producer(), None);
    assert_eq!(hv.direction().consumer(), PartitionId::Linux);
    let plan = bulkhead_config::host::describe(&cfg);
    assert!(
        plan.contains("channel hv-log: hypervisor -> linux, in hvlog at +0x0"),
        "{plan}"
    );
    assert!(cfg.rt_maps_shared(0) && !cfg.rt_maps_shared(1));
    let explicit = format!(
        "{BASE}{HVLOG_REGION}{}",
        hypervisor_channel("hv-log", Some("poll"))
    );
    assert!(load_str(&explicit, "test.toml").is_ok());

    let (text, _) = assert_config_error!(
        bad(
            "slot_size = 256\n",
            &format!(
                "slot_size = 256\n{HVLOG_REGION}{}",
                hypervisor_channel("hv", Some("doorbell"))
            )
        ),
        ErrorKind::HypervisorChannelNotify,
        "channels[1].notify",
        51
    );
    assert!(text.contains("must have notify = \"poll\""), "{text}");
    let two = format!(
        "slot_size = 256\n{HVLOG_REGION}{}{}",
        hypervisor_channel("hv", None),
        hypervisor_channel("hv2", None)
    );
    let (text, _) = assert_config_error!(
        bad("slot_size = 256\n", &two),
        ErrorKind::SecondHypervisorChannel { .. },
        "channels[2].direction",
        55
    );
    assert!(
        text.ends_with("and channels[1].direction is one already"),
        "{text}"
    );
    // Beside another channel: the RT partition, which maps that region, could write the log.
    let beside = format!(
        "slot_size = 256\n{}",
        hypervisor_channel("hv", None).replace("\"hvlog\"", "\"shm0\"")
    );
    let (text, _) = assert_config_error!(
        bad("slot_size = 256\n", &beside),
        ErrorKind::HypervisorRegionShared { .. },
        "channels[1].region",
        42
    );
    assert!(text.contains("needs a shared region of its own"), "{text}");
}

#[test]
fn empty_name() {
    assert_config_error!(
        bad("image = \"rt.elf\"", "image = \"\""),
        ErrorKind::EmptyName,
        "rt.image",
        26
    );
}

#[test]
fn name_too_long() {
    assert_config_error!(
        bad(
            "name = \"up\"",
            "name = \"a-channel-name-that-is-far-too-long\""
        ),
        ErrorKind::NameTooLong { len: 35 },
        "channels[0].name",
        34
    );
}

#[test]
fn name_with_bad_character() {
    assert_config_error!(
        bad("name = \"test\"", "name = \"my machine\""),
        ErrorKind::NameBadChar { ch: ' ', offset: 2 },
        "machine.name",
        2
    );
}

#[test]
fn cmdline_too_long() {
    let long = format!("cmdline = \"{}\"", "x".repeat(2048));
    assert_config_error!(
        bad("cmdline = \"console=ttyS1\"", &long),
        ErrorKind::CmdlineTooLong { len: 2048 },
        "linux.cmdline",
        23
    );
    // 2047 bytes is the most that fits with Linux's terminating NUL.
    let longest = BASE.replacen("console=ttyS1", &"x".repeat(2047), 1);
    assert!(load_str(&longest, "test.toml").is_ok());
}

#[test]
fn cmdline_not_ascii() {
    assert_config_error!(
        bad(
            "cmdline = \"console=ttyS1\"",
            "cmdline = \"console=ttyS1 café\""
        ),
        ErrorKind::CmdlineNotAscii { offset: 17 },
        "linux.cmdline",
        23
    );
}

#[test]
fn too_many_cpus() {
    let list: Vec<String> = (1..=65).map(|i| i.to_string()).collect();
    assert_config_error!(
        bad("cpus = [1]", &format!("cpus = [{}]", list.join(", "))),
        ErrorKind::TooMany { capacity: 64 },
        "partitions.rt.cpus[64]",
        15
    );
}

#[test]
fn too_many_channels() {
    let mut extra = String::from("slot_size = 256\n");
    for i in 0..32 {
        extra.push_str(&format!(
            "\n[[channels]]\nname = \"c{i}\"\nregion = \"shm0\"\ndirection = \"rt-to-linux\"\n\
             size = \"16 KiB\"\nslot_size = 16\n"
        ));
    }
    assert_config_error!(
        bad("slot_size = 256\n", &extra),
        ErrorKind::TooMany { capacity: 32 },
        "channels[32]",
        40 + 31 * 7
    );
}

#[test]
fn missing_required_key() {
    let d = bad("image = \"rt.elf\"", "");
    assert!(
        matches!(&d.kind, DiagnosticKind::Toml(m) if m.contains("image")),
        "{d}"
    );
}

#[test]
fn optional_sections_default() {
    let minimal = r#"
[machine]
name = "minimal"
[hypervisor]
memory = { base = "1 MiB", size = "4 MiB" }
[partitions.linux]
cpus = [0]
memory = [{ base = "16 MiB", size = "16 MiB" }]
[partitions.rt]
cpus = [1]
memory = [{ base = "32 MiB", size = "16 MiB" }]
[linux]
kernel = "vmlinuz"
[rt]
image = "rt"
"#;
    let cfg = load_str(minimal, "minimal.toml").unwrap_or_else(|d| panic!("{d}"));
    assert!(cfg.shared_regions().is_empty() && cfg.channels().is_empty());
    // The hypervisor and the RT partition share COM1; Linux has COM2 to itself.
    let console = cfg.console();
    assert_eq!(console.hypervisor, ConsoleTarget::Com1);
    assert_eq!(console.rt, ConsoleTarget::Com1);
    assert_eq!(console.linux, ConsoleTarget::Com2);
    assert_eq!(cfg.linux().on_exit(), bulkhead_config::OnExit::Stop);
    assert_eq!(cfg.linux().cmdline(), "");
}

/// BASE with a `[console]` section of `keys` (one per line) ahead of `[partitions.linux]`: the
/// section header is line 7, its keys lines 8 and on.
fn with_console(keys: &str) -> String {
    BASE.replacen(
        "[partitions.linux]",
        &format!("[console]\n{keys}\n\n[partitions.linux]"),
        1,
    )
}

fn bad_console(keys: &str) -> Diagnostic {
    match load_str(&with_console(keys), "test.toml") {
        Ok(_) => panic!("console routing {keys:?} was accepted"),
        Err(d) => d,
    }
}

#[test]
fn linux_console_shared_with_the_hypervisor() {
    let (text, _) = assert_config_error!(
        bad_console("hypervisor = \"com2\"\nlinux = \"com2\""),
        ErrorKind::ConsoleShared {
            port: ConsoleTarget::Com2,
            hypervisor: true,
            rt: false,
        },
        "console.linux",
        9
    );
    assert!(
        text.ends_with(
            "console.linux: Linux drives its console UART with interrupts and cannot share COM2 \
             with the hypervisor"
        ),
        "{text}"
    );
}

#[test]
fn linux_console_shared_with_the_rt_partition() {
    let (text, _) = assert_config_error!(
        bad_console("rt = \"com2\"\nlinux = \"com2\""),
        ErrorKind::ConsoleShared {
            port: ConsoleTarget::Com2,
            hypervisor: false,
            rt: true,
        },
        "console.linux",
        9
    );
    assert!(
        text.ends_with("cannot share COM2 with the RT partition"),
        "{text}"
    );
}

#[test]
fn linux_console_shared_with_both() {
    // Only `linux` given: the hypervisor and the RT partition keep their default, COM1.
    let (text, _) = assert_config_error!(
        bad_console("linux = \"com1\""),
        ErrorKind::ConsoleShared {
            port: ConsoleTarget::Com1,
            hypervisor: true,
            rt: true,
        },
        "console.linux",
        8
    );
    assert!(
        text.ends_with("cannot share COM1 with the hypervisor and the RT partition"),
        "{text}"
    );
}

#[test]
fn linux_console_left_at_its_default_can_clash() {
    // `linux` is not in the file: the error points at the `[console]` section.
    assert_config_error!(
        bad_console("rt = \"com2\""),
        ErrorKind::ConsoleShared {
            port: ConsoleTarget::Com2,
            hypervisor: false,
            rt: true,
        },
        "console.linux",
        7
    );
}

#[test]
fn consoles_that_do_not_clash_are_accepted() {
    for keys in [
        // Linux without a console: the others may share COM1.
        "hypervisor = \"com1\"\nrt = \"com1\"\nlinux = \"none\"",
        // The integrator's layout: Linux on COM1, the hypervisor and the RT partition on COM2.
        "hypervisor = \"com2\"\nrt = \"com2\"\nlinux = \"com1\"",
        // Nobody prints.
        "hypervisor = \"none\"\nrt = \"none\"\nlinux = \"none\"",
    ] {
        load_str(&with_console(keys), "test.toml").unwrap_or_else(|d| panic!("{keys:?}: {d}"));
    }
}

#[test]
fn io_error_names_the_file() {
    let d = bulkhead_config::host::load_file("/nonexistent/dir/x.toml").unwrap_err();
    assert!(matches!(d.kind, DiagnosticKind::Io(_)));
    assert!(
        d.to_string()
            .starts_with("/nonexistent/dir/x.toml: cannot read: "),
        "{d}"
    );
}

#[test]
fn sizes() {
    assert_eq!(parse_size("64 MiB"), Some(64 << 20));
    assert_eq!(parse_size("4KiB"), Some(4096));
    assert_eq!(parse_size(" 2 GiB "), Some(2 << 30));
    assert_eq!(parse_size("1 TiB"), Some(1 << 40));
    assert_eq!(parse_size("0x1000"), Some(0x1000));
    assert_eq!(parse_size("0x0800_0000"), Some(0x0800_0000));
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("4096 B"), Some(4096));
    assert_eq!(parse_size("1_024 KiB"), Some(1 << 20));
    for bad in [
        "",
        "MiB",
        "64 MB",
        "64 mib",
        "0x",
        "0xg",
        "-1",
        "1.5 GiB",
        "99999999999 TiB",
    ] {
        assert_eq!(parse_size(bad), None, "{bad:?}");
    }
}

#[test]
fn more_rt_pci_functions_than_the_boot_information_lists() {
    let nine = r#"pci_devices = ["00:02.0", "00:03.0", "00:04.0", "00:05.0", "00:06.0", "00:07.0", "00:08.0", "00:09.0", "00:0a.0"]"#;
    let (text, _) = assert_config_error!(
        bad(r#"pci_devices = ["00:03.0"]"#, nine),
        ErrorKind::TooManyRtPciFunctions { count: 9, max: 8 },
        "partitions.rt.pci_devices[8]",
        19
    );
    assert!(text.ends_with("9 PCI functions, but the RT partition owns at most 8"));
}

#[test]
fn an_rt_function_may_name_its_intx_pin() {
    let text = BASE.replacen(
        r#"pci_devices = ["00:03.0"]"#,
        r#"pci_devices = [{ function = "00:03.0", intx = 3 }, "00:04.0"]"#,
        1,
    );
    let cfg = load_str(&text, "test.toml").unwrap_or_else(|d| panic!("{d}"));
    let rt = cfg.partition(PartitionId::Rt);
    assert_eq!(rt.pci_devices().len(), 2);
    assert_eq!(rt.pci_intx(), &[Some(3), None]);
    let back = bulkhead_config::blob::decode(&bulkhead_config::blob::encode(&cfg)).unwrap();
    assert_eq!(back.partition(PartitionId::Rt).pci_intx(), &[Some(3), None]);

    let (text, _) = assert_config_error!(
        bad(
            r#"pci_devices = ["00:03.0"]"#,
            r#"pci_devices = [{ function = "00:03.0", intx = 9 }]"#
        ),
        ErrorKind::PciIntxNotRtPin { pin: 9, .. },
        "partitions.rt.pci_devices[0].intx",
        19
    );
    assert!(text.ends_with(
        "00:03.0: its INTx is to arrive on IOAPIC pin 9, which is not among partitions.rt.ioapic_pins"
    ));
    assert_config_error!(
        bad(
            r#"pci_devices = ["00:01.1"]"#,
            r#"pci_devices = [{ function = "00:01.1", intx = 4 }]"#
        ),
        ErrorKind::LinuxPciIntx { .. },
        "partitions.linux.pci_devices[0].intx",
        12
    );
    assert_config_error!(
        bad(
            r#"pci_devices = ["00:03.0"]"#,
            r#"pci_devices = [{ function = "00:3", intx = 3 }]"#
        ),
        ErrorKind::InvalidBdf,
        "partitions.rt.pci_devices[0].function",
        19
    );
}
