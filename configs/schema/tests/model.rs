//! The model's own rules, used without the TOML loader (as the hypervisor and the decoder do).

use bulkhead_config::{
    ChannelConfig, ChannelDirection, Cmdline, ConfigBuilder, ErrorKind, FieldPath, LinuxConfig,
    MAX_CPUS, MAX_PINS, MAX_REGIONS, MAX_SHARED_REGIONS, Name, Notify, OnExit, PartitionId, PciBdf,
    PortRange, Region, RtConfig, SharedRegion,
};

const MIB: u64 = 1 << 20;

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn builder() -> ConfigBuilder {
    let mut b = ConfigBuilder::new(name("unit"), Region::new(MIB, 15 * MIB));
    b.linux(LinuxConfig::new(
        name("vmlinuz"),
        Name::EMPTY,
        Cmdline::new("quiet").unwrap(),
        OnExit::Stop,
    ));
    b.rt(RtConfig::new(name("rt.elf")));
    b.push_cpu(PartitionId::Linux, 0).unwrap();
    b.push_cpu(PartitionId::Rt, 1).unwrap();
    b.push_memory(PartitionId::Linux, Region::new(16 * MIB, 16 * MIB))
        .unwrap();
    b.push_memory(PartitionId::Rt, Region::new(32 * MIB, 16 * MIB))
        .unwrap();
    b
}

#[test]
fn builder_makes_a_valid_config() {
    let mut b = builder();
    b.push_shared(SharedRegion::new(name("s"), Region::new(48 * MIB, MIB)))
        .unwrap();
    let ch = |n: &str, size| {
        ChannelConfig::new(
            name(n),
            name("s"),
            size,
            64,
            ChannelDirection::LinuxToRt,
            Notify::Poll,
        )
    };
    b.push_channel(ch("a", 0x3000)).unwrap();
    b.push_channel(ch("b", 0x2000)).unwrap();
    let cfg = b.build().unwrap();
    let [a, bb] = cfg.channels() else { panic!() };
    assert_eq!((a.offset(), bb.offset()), (0, 0x3000));
    assert_eq!(
        cfg.channel_memory(bb),
        Some(Region::new(48 * MIB + 0x3000, 0x2000))
    );
    assert_eq!(a.slot_count(), (0x3000 - 0x1000) / 64);
    assert_eq!(a.direction().producer(), Some(PartitionId::Linux));
    assert_eq!(cfg.shared_region("s").map(|(i, _)| i), Some(0));
}

#[test]
fn capacity_is_an_error_not_a_panic() {
    let mut b = builder();
    for i in 1..MAX_CPUS as u32 {
        b.push_cpu(PartitionId::Linux, 100 + i).unwrap();
    }
    let e = b.push_cpu(PartitionId::Linux, 999).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooMany { capacity: MAX_CPUS });
    assert_eq!(e.path.to_string(), "partitions.linux.cpus[64]");

    for i in 0..MAX_PINS as u32 {
        b.push_ioapic_pin(PartitionId::Rt, i).unwrap();
    }
    assert!(b.push_ioapic_pin(PartitionId::Rt, 0).is_err());
    for _ in 1..MAX_REGIONS {
        b.push_memory(PartitionId::Rt, Region::new(0, 0)).unwrap();
    }
    let e = b
        .push_memory(PartitionId::Rt, Region::new(0, 0))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "partitions.rt.memory[16]: too many entries: at most 16 are allowed"
    );
    for _ in 0..MAX_SHARED_REGIONS {
        b.push_shared(SharedRegion::default()).unwrap();
    }
    assert_eq!(
        b.push_shared(SharedRegion::default())
            .unwrap_err()
            .path
            .to_string(),
        "shared[16]"
    );
}

#[test]
fn names() {
    assert_eq!(name("shm-0_a.b").as_str(), "shm-0_a.b");
    assert!(Name::new("").unwrap().is_empty());
    assert_eq!(Name::new(&"x".repeat(32)).unwrap().as_bytes().len(), 32);
    assert_eq!(
        Name::new(&"x".repeat(33)),
        Err(ErrorKind::NameTooLong { len: 33 })
    );
    assert_eq!(
        Name::new("a/b"),
        Err(ErrorKind::NameBadChar { ch: '/', offset: 1 })
    );
    assert_eq!(
        Name::new("ü"),
        Err(ErrorKind::NameBadChar {
            ch: 'ü', offset: 0
        })
    );
    assert_eq!(format!("{:?}", name("x")), "\"x\"");
}

#[test]
fn cmdlines() {
    assert_eq!(Cmdline::new("a b=c").unwrap().as_str(), "a b=c");
    assert_eq!(
        Cmdline::new("a\tb"),
        Err(ErrorKind::CmdlineNotAscii { offset: 1 })
    );
    assert_eq!(
        Cmdline::new(&"x".repeat(2048)),
        Err(ErrorKind::CmdlineTooLong { len: 2048 })
    );
}

#[test]
fn pci_addresses() {
    let bdf: PciBdf = "00:1f.3".parse().unwrap();
    assert_eq!((bdf.bus(), bdf.device(), bdf.function()), (0, 0x1f, 3));
    assert_eq!(bdf.to_string(), "00:1f.3");
    assert_eq!(
        "0000:03:00.0".parse::<PciBdf>().unwrap().to_string(),
        "03:00.0"
    );
    assert_eq!(
        "ff:1F.7".parse::<PciBdf>().unwrap(),
        PciBdf::new(0xff, 0x1f, 7).unwrap()
    );
    for bad in [
        "",
        "00:20.0",
        "00:1f.8",
        "100:00.0",
        "00.1f.3",
        "00:1f",
        "0:0:0.0",
        "00:1f.10",
        "g0:00.0",
        "0001:00:00.0",
    ] {
        assert_eq!(bad.parse::<PciBdf>(), Err(ErrorKind::InvalidBdf), "{bad:?}");
    }
    assert!(PciBdf::new(0, 32, 0).is_none());
}

#[test]
fn regions_and_ports() {
    let r = Region::new(0x1000, 0x2000);
    assert_eq!(r.end(), 0x3000);
    assert!(r.contains(0x1000) && r.contains(0x2fff) && !r.contains(0x3000));
    assert!(r.overlaps(&Region::new(0x2000, 0x4000)));
    assert!(!r.overlaps(&Region::new(0x3000, 0x1000)));
    assert!(!r.overlaps(&Region::new(0x1000, 0)));
    assert_eq!(Region::new(u64::MAX - 1, 10).end(), u64::MAX);
    assert!(r.contains_region(&Region::new(0x1000, 0x2000)));
    assert!(!r.contains_region(&Region::new(0x1000, 0x2001)));
    assert_eq!(r.to_string(), "0x1000..0x3000");

    let p = PortRange::new(0x3f8, 8);
    assert_eq!(p.end(), 0x400);
    assert!(p.contains(0x3ff) && !p.contains(0x400));
    assert!(p.overlaps(&PortRange::new(0x3ff, 1)));
    assert_eq!(PortRange::new(0xffff, 0xffff).end(), 0x1fffe);
}

#[test]
fn field_paths() {
    let p = FieldPath::at("partitions")
        .key("rt")
        .key("memory")
        .index(2)
        .key("size");
    assert_eq!(p.to_string(), "partitions.rt.memory[2].size");
    assert_eq!(
        FieldPath::at("shared")
            .index(0)
            .name(name("shm0"))
            .to_string(),
        "shared[0] (shm0)"
    );
    assert_eq!(FieldPath::root().to_string(), "(config)");
    // Deeper than the schema ever goes: the tail is dropped, nothing panics.
    let deep = (0..10).fold(FieldPath::root(), |p, i| p.index(i));
    assert_eq!(deep.segments().len(), 6);
}

#[test]
fn validate_reports_in_file_order() {
    // Two problems: the earlier field (machine name) is the one reported.
    let mut b = ConfigBuilder::new(Name::EMPTY, Region::new(MIB, MIB));
    b.push_cpu(PartitionId::Rt, 0).unwrap();
    let e = b.build().unwrap_err();
    assert_eq!(e.kind, ErrorKind::EmptyName);
    assert_eq!(e.path.to_string(), "machine.name");
}

#[test]
fn sizes_stay_small_enough_for_a_boot_stack() {
    // The hypervisor decodes into a `Config` on its stack; keep it well under 16 KiB.
    let size = size_of::<bulkhead_config::Config>();
    println!("Config is {size} bytes");
    assert!(size < 16 * 1024, "Config is {size} bytes");
}
