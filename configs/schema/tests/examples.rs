//! Every example config in `configs/` loads, validates, and survives the blob round trip.

#![cfg(feature = "std")]

use std::path::PathBuf;

use bulkhead_config::blob;
use bulkhead_config::host::{describe, load_file};
use bulkhead_config::{ChannelDirection, Notify, PartitionId, Region};

fn example_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("configs/ is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates_and_round_trips() {
    let files = example_files();
    assert!(
        files.len() >= 4,
        "expected the example configs, found {files:?}"
    );
    for path in files {
        let cfg = load_file(&path).unwrap_or_else(|d| panic!("{d}"));
        cfg.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bytes = blob::encode(&cfg);
        assert_eq!(bytes.len(), blob::BLOB_LEN);
        let back = blob::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(back, cfg, "{}", path.display());
        assert_eq!(
            blob::encode(&back),
            bytes,
            "{}: one encoding per config",
            path.display()
        );
        assert!(describe(&cfg).contains(cfg.name().as_str()));
    }
}

#[test]
fn bochs_2cpu_has_the_documented_layout() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bochs-2cpu.toml");
    let cfg = load_file(path).unwrap_or_else(|d| panic!("{d}"));
    const MIB: u64 = 1 << 20;
    assert_eq!(cfg.hypervisor_region(), Region::new(MIB, 127 * MIB));
    let linux = cfg.partition(PartitionId::Linux);
    assert_eq!(linux.cpus(), &[0]);
    assert_eq!(
        linux.memory(),
        &[Region::new(0, 0x9f000), Region::new(128 * MIB, 640 * MIB)]
    );
    let rt = cfg.partition(PartitionId::Rt);
    assert_eq!(rt.cpus(), &[1]);
    assert_eq!(rt.memory(), &[Region::new(768 * MIB, 128 * MIB)]);
    assert_eq!(
        cfg.shared_regions()[0].region,
        Region::new(896 * MIB, 2 * MIB)
    );
    assert_eq!(cfg.partition_of_cpu(1), Some(PartitionId::Rt));
    assert_eq!(cfg.partition_of_cpu(2), None);
    let channels = cfg.channels();
    assert_eq!(channels.len(), 5);
    assert_eq!(channels[0].offset(), 0);
    assert_eq!(channels[1].offset(), 64 * 1024);
    assert_eq!(channels[2].offset(), 128 * 1024);
    assert_eq!(
        (channels[2].slot_size(), channels[2].slot_count()),
        (2048, 30)
    );
    // The two log channels: the RT kernel's (`log=rt-log`) and the hypervisor's.
    assert_eq!(channels[3].name().as_str(), "rt-log");
    assert_eq!(
        (channels[3].offset(), channels[3].slot_count()),
        (192 * 1024, 1008)
    );
    assert_eq!(channels[4].name().as_str(), "hv-log");
    assert_eq!(channels[4].direction(), ChannelDirection::HypervisorToLinux);
    assert_eq!(channels[4].notify(), Notify::Poll);
    // Alone in its region, which the RT partition does not map.
    assert_eq!((channels[4].offset(), channels[4].slot_count()), (0, 252));
    assert_eq!(
        cfg.shared_regions()[1].region,
        Region::new(898 * MIB, 256 * 1024)
    );
    assert!(cfg.rt_maps_shared(0) && !cfg.rt_maps_shared(1));
    assert_eq!(
        cfg.channel_memory(&channels[1]),
        Some(Region::new(896 * MIB + 64 * 1024, 64 * 1024))
    );
    let text = describe(&cfg);
    println!("{text}");
    assert!(text.contains("linux: 1 CPU (APIC ID 0)"), "{text}");
    assert!(text.contains("channel telemetry: rt -> linux"), "{text}");
    assert!(
        text.contains("channel hv-log: hypervisor -> linux"),
        "{text}"
    );
    // Devices are owned, and the summary says what owning them cannot stop without VT-d.
    assert!(text.contains("    PCI devices "), "{text}");
    assert!(text.contains("can DMA into any memory"), "{text}");
}
