//! The binary blob: round trips, every header check, body checks, and proptests that no input
//! makes `decode` panic.

#![cfg(feature = "std")]

use bulkhead_config::blob::{self, BLOB_LEN, BlobError, HEADER_LEN, StringProblem};
use bulkhead_config::host::load_str;
use bulkhead_config::{Config, ErrorKind};
use proptest::prelude::*;

const TEXT: &str = r#"
[machine]
name = "blob-test"
[hypervisor]
memory = { base = "1 MiB", size = "15 MiB" }
[console]
rt = "com2"
linux = "none"
[partitions.linux]
cpus = [0, 2]
memory = [{ base = 0, size = 0x9f000 }, { base = "16 MiB", size = "64 MiB" }]
ioapic_pins = [1, 4, 9]
io_ports = [{ base = 0x3f8, count = 8 }, { base = 0x60, count = 1 }]
pci_devices = ["00:01.1", "00:1f.3"]
[partitions.rt]
cpus = [1, 3]
memory = [{ base = "80 MiB", size = "16 MiB" }]
ioapic_pins = [17, { pin = 5, cpu = 3, trigger = "edge", polarity = "low" }, { pin = 6, trigger = "level" }]
io_ports = [{ base = 0x2f8, count = 8 }]
pci_devices = ["03:00.0"]
[linux]
kernel = "vmlinuz"
initrd = "initrd.img"
cmdline = "console=ttyS0,115200 quiet"
on_exit = "restart"
[rt]
image = "rt.elf"
[[shared]]
name = "a"
base = "96 MiB"
size = "1 MiB"
[[shared]]
name = "b"
base = "97 MiB"
size = "1 MiB"
[[channels]]
name = "one"
region = "b"
direction = "rt-to-linux"
size = "8 KiB"
slot_size = 16
notify = "poll"
[[channels]]
name = "two"
region = "a"
direction = "linux-to-rt"
size = "64 KiB"
slot_size = 1024
[[channels]]
name = "three"
region = "b"
direction = "linux-to-rt"
size = "12 KiB"
slot_size = 2048
"#;

fn config() -> Config {
    load_str(TEXT, "blob-test.toml").unwrap_or_else(|d| panic!("{d}"))
}

fn valid_blob() -> Vec<u8> {
    blob::encode(&config())
}

/// Rewrites the checksum so that body changes get past it.
fn fix_crc(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        let crc = blob::crc32(&bytes[HEADER_LEN..]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Offset of a body field, found by encoding a config that differs only there would be
/// fragile; instead use the layout structs.
fn body_offset(field: impl Fn(&blob::Body) -> *const u8) -> usize {
    use zerocopy::FromZeros;
    let body = blob::Body::new_zeroed();
    HEADER_LEN + (field(&body) as usize - (&body as *const blob::Body as usize))
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(blob::crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(blob::crc32(b""), 0);
}

#[test]
fn round_trip_keeps_everything() {
    let cfg = config();
    let bytes = blob::encode(&cfg);
    assert_eq!(bytes.len(), BLOB_LEN);
    assert_eq!(&bytes[..8], b"BLKHDCFG");
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        blob::FORMAT_VERSION
    );
    assert_eq!(
        u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize,
        BLOB_LEN
    );
    let back = blob::decode(&bytes).unwrap();
    assert_eq!(back, cfg);
    // Channels are packed per region in config order.
    let offsets: Vec<(usize, u64)> = back
        .channels()
        .iter()
        .map(|c| (c.region_index(), c.offset()))
        .collect();
    assert_eq!(offsets, [(1, 0), (0, 0), (1, 0x2000)]);
}

#[test]
fn header_checks() {
    let good = valid_blob();

    let e = blob::decode(&good[..12]).unwrap_err();
    assert_eq!(e, BlobError::TruncatedHeader { len: 12 });
    assert_eq!(
        e.to_string(),
        "config blob: truncated: 12 bytes, header needs 24"
    );

    let e = blob::decode(&good[..100]).unwrap_err();
    assert_eq!(
        e,
        BlobError::Truncated {
            len: 100,
            total: BLOB_LEN
        }
    );

    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        blob::decode(&long),
        Err(BlobError::TrailingBytes { .. })
    ));

    let mut bad = good.clone();
    bad[0] = b'X';
    let e = blob::decode(&bad).unwrap_err();
    assert!(matches!(e, BlobError::BadMagic { .. }));
    assert!(e.to_string().contains("\"XLKHDCFG\""), "{e}");

    let mut bad = good.clone();
    bad[8] = 1;
    assert_eq!(
        blob::decode(&bad),
        Err(BlobError::UnsupportedVersion { found: 1 })
    );

    let mut bad = good.clone();
    bad[12] ^= 1;
    assert!(matches!(
        blob::decode(&bad),
        Err(BlobError::BadLength { .. })
    ));

    let mut bad = good.clone();
    bad[20] = 1;
    assert!(matches!(blob::decode(&bad), Err(BlobError::NotZero { .. })));

    let mut bad = good.clone();
    bad[HEADER_LEN + 3] ^= 0x20;
    let e = blob::decode(&bad).unwrap_err();
    assert!(matches!(e, BlobError::ChecksumMismatch { .. }));
    assert!(
        e.to_string()
            .starts_with("config blob: checksum mismatch (stored 0x"),
        "{e}"
    );
}

#[test]
fn count_beyond_capacity() {
    let mut bytes = valid_blob();
    let at = body_offset(|b| b.partitions[1].cpu_count.as_ref().as_ptr());
    bytes[at..at + 4].copy_from_slice(&70u32.to_le_bytes());
    fix_crc(&mut bytes);
    let e = blob::decode(&bytes).unwrap_err();
    assert!(matches!(
        e,
        BlobError::CountExceedsCapacity {
            count: 70,
            capacity: 64,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "config blob: partitions.rt.cpus count 70 exceeds capacity 64"
    );
}

#[test]
fn pin_routes_round_trip_and_bad_route_bits_are_refused() {
    let cfg = config();
    let routes = cfg.partition(bulkhead_config::PartitionId::Rt).pin_routes();
    assert_eq!(routes.len(), 3);
    assert!(routes[0].is_default());
    assert_eq!(
        routes[1],
        bulkhead_config::PinRoute {
            cpu: Some(3),
            level: Some(false),
            active_low: Some(true)
        }
    );
    assert_eq!(routes[2].level, Some(true));
    assert_eq!(routes[2].cpu, None);
    for bad in [blob::ROUTE_LEVEL, 0x80] {
        let mut bytes = valid_blob();
        let at = body_offset(|b| &b.partitions[1].pin_routes[0].flags as *const u8);
        bytes[at] = bad;
        fix_crc(&mut bytes);
        let e = blob::decode(&bytes).unwrap_err();
        assert!(
            e.to_string().contains("partitions.rt.ioapic_pins[0]: route's"),
            "{e}"
        );
    }
}

#[test]
fn unused_entries_must_be_zero() {
    let mut bytes = valid_blob();
    let at = body_offset(|b| b.partitions[0].cpus[5].as_ref().as_ptr());
    bytes[at] = 9;
    fix_crc(&mut bytes);
    let e = blob::decode(&bytes).unwrap_err();
    assert!(matches!(e, BlobError::NotZero { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("partitions.linux.cpus: unused entries"),
        "{e}"
    );
}

#[test]
fn strings_are_checked() {
    let at = body_offset(|b| b.name.as_ptr());

    let mut bytes = valid_blob();
    bytes[at + 2] = b' ';
    fix_crc(&mut bytes);
    let e = blob::decode(&bytes).unwrap_err();
    assert!(matches!(
        e,
        BlobError::BadString {
            problem: StringProblem::Invalid(ErrorKind::NameBadChar { .. }),
            ..
        }
    ));
    assert!(
        e.to_string()
            .starts_with("config blob: machine.name: name has ' '"),
        "{e}"
    );

    let mut bytes = valid_blob();
    bytes[at + 2] = 0xff;
    fix_crc(&mut bytes);
    assert!(matches!(
        blob::decode(&bytes),
        Err(BlobError::BadString {
            problem: StringProblem::NotUtf8,
            ..
        })
    ));

    let mut bytes = valid_blob();
    bytes[at + 20] = b'x';
    fix_crc(&mut bytes);
    assert!(matches!(
        blob::decode(&bytes),
        Err(BlobError::BadString {
            problem: StringProblem::NotNulPadded,
            ..
        })
    ));

    let at = body_offset(|b| b.linux_cmdline.as_ptr());
    let mut bytes = valid_blob();
    bytes[at..at + 2048].fill(b'x');
    fix_crc(&mut bytes);
    assert!(matches!(
        blob::decode(&bytes),
        Err(BlobError::BadString {
            problem: StringProblem::Invalid(ErrorKind::CmdlineTooLong { len: 2048 }),
            ..
        })
    ));
}

#[test]
fn enums_are_checked() {
    let mut bytes = valid_blob();
    let at = body_offset(|b| &b.console_rt as *const u8);
    bytes[at] = 7;
    fix_crc(&mut bytes);
    let e = blob::decode(&bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config blob: console.rt: 7 is not a valid console target"
    );

    let mut bytes = valid_blob();
    let at = body_offset(|b| &b.channels[1].direction as *const u8);
    bytes[at] = 3;
    fix_crc(&mut bytes);
    assert!(matches!(
        blob::decode(&bytes),
        Err(BlobError::BadDiscriminant { .. })
    ));
}

#[test]
fn bad_bdf_and_region_index_and_offset() {
    let mut bytes = valid_blob();
    let at = body_offset(|b| &b.partitions[0].pci_devices[0].device as *const u8);
    bytes[at] = 32;
    fix_crc(&mut bytes);
    assert!(matches!(
        blob::decode(&bytes),
        Err(BlobError::BadBdf { device: 32, .. })
    ));

    let mut bytes = valid_blob();
    let at = body_offset(|b| &b.channels[0].region_index as *const u8);
    bytes[at] = 2;
    fix_crc(&mut bytes);
    assert!(matches!(
        blob::decode(&bytes),
        Err(BlobError::BadRegionIndex {
            index: 2,
            count: 2,
            ..
        })
    ));

    let mut bytes = valid_blob();
    let at = body_offset(|b| b.channels[2].offset.as_ref().as_ptr());
    bytes[at + 1] = 0x10;
    fix_crc(&mut bytes);
    let e = blob::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            e,
            BlobError::ChannelOffset {
                stored: 0x1000,
                computed: 0x2000,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn decode_runs_validation() {
    // Give the RT partition Linux's CPU: well-formed, checksum right, but invalid.
    let mut bytes = valid_blob();
    let at = body_offset(|b| b.partitions[1].cpus[0].as_ref().as_ptr());
    bytes[at] = 0;
    fix_crc(&mut bytes);
    let e = blob::decode(&bytes).unwrap_err();
    assert!(
        matches!(e, BlobError::Invalid(c) if matches!(c.kind, ErrorKind::CpuOwnedTwice { .. }))
    );
    assert_eq!(
        e.to_string(),
        "config blob: partitions.rt.cpus[0]: APIC ID 0 is already owned by partitions.linux.cpus[0]"
    );
}

#[test]
fn decode_rejects_a_shared_linux_console() {
    // Put Linux's console on COM2, where the RT partition prints (code 1 is com2).
    let mut bytes = valid_blob();
    let at = body_offset(|b| &b.console_linux as *const u8);
    bytes[at] = 1;
    fix_crc(&mut bytes);
    let e = blob::decode(&bytes).unwrap_err();
    assert!(
        matches!(e, BlobError::Invalid(c) if matches!(c.kind, ErrorKind::ConsoleShared { rt: true, .. }))
    );
    assert_eq!(
        e.to_string(),
        "config blob: console.linux: Linux drives its console UART with interrupts and cannot \
         share COM2 with the RT partition"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..8192)) {
        prop_assert!(blob::decode(&bytes).is_err());
    }

    #[test]
    fn random_bytes_behind_a_valid_header_are_rejected(
        body in proptest::collection::vec(any::<u8>(), BLOB_LEN - HEADER_LEN..=BLOB_LEN - HEADER_LEN),
    ) {
        let mut bytes = valid_blob();
        bytes[HEADER_LEN..].copy_from_slice(&body);
        fix_crc(&mut bytes);
        // Random bytes make non-zero padding and bad counts; they must come back as errors.
        prop_assert!(blob::decode(&bytes).is_err());
    }

    #[test]
    fn truncated_blobs_are_rejected(len in 0..BLOB_LEN) {
        let bytes = valid_blob();
        prop_assert!(blob::decode(&bytes[..len]).is_err());
    }

    #[test]
    fn flipped_bytes_never_panic(
        flips in proptest::collection::vec((0..BLOB_LEN, any::<u8>()), 1..8),
        fix in any::<bool>(),
    ) {
        let mut bytes = valid_blob();
        for (at, value) in &flips {
            bytes[*at] = *value;
        }
        if fix {
            fix_crc(&mut bytes);
        }
        // Any outcome is fine but a panic; an accepted blob must be a valid config that
        // encodes back to the same bytes.
        if let Ok(cfg) = blob::decode(&bytes) {
            prop_assert!(cfg.validate().is_ok());
            prop_assert_eq!(blob::encode(&cfg), bytes);
        }
    }

    #[test]
    fn flipped_body_bytes_with_fixed_checksum_never_panic(
        flips in proptest::collection::vec((HEADER_LEN..BLOB_LEN, any::<u8>()), 1..4),
    ) {
        let mut bytes = valid_blob();
        for (at, value) in &flips {
            bytes[*at] ^= *value | 1;
        }
        fix_crc(&mut bytes);
        if let Ok(cfg) = blob::decode(&bytes) {
            prop_assert!(cfg.validate().is_ok());
            prop_assert_eq!(blob::encode(&cfg), bytes);
        }
    }

    #[test]
    fn flipped_live_bytes_with_fixed_checksum_never_panic(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        // Aim at the bytes that carry the config (non-zero in the valid blob): names, counts,
        // used entries, enums. This reaches the string, enum and semantic checks.
        let mut bytes = valid_blob();
        let live: Vec<usize> = (HEADER_LEN..BLOB_LEN).filter(|&i| bytes[i] != 0).collect();
        for (pick, value) in &picks {
            let at = live[pick.index(live.len())];
            bytes[at] ^= *value | 1;
        }
        fix_crc(&mut bytes);
        if let Ok(cfg) = blob::decode(&bytes) {
            prop_assert!(cfg.validate().is_ok());
            prop_assert_eq!(blob::encode(&cfg), bytes);
        }
    }
}
