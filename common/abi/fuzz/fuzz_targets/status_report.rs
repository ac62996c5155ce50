//! The status report parser driven by the fuzzer. Linux reads the report from the RT
//! partition's side of a channel and must not trust it: any panic of [`Status::parse`] or of
//! reading what it accepted is a finding. What parses must have as many records as its counts
//! say, as many bytes as they need, histograms that add up, and encode back to the same bytes.
//!
//! The same input is also made into a report from valid parts (its bytes read as records,
//! each histogram's samples set to what it adds up to): that must encode, parse and come back
//! unchanged, so the checks past the header are reached without a seed corpus.

#![no_main]

use core::mem::size_of;

use bulkhead_abi::status::{
    CpuLatency, MAX_REPORT_CPUS, Status, TaskState, TaskStatus, encode, message_len,
};
use libfuzzer_sys::fuzz_target;
use zerocopy::FromBytes;

/// The properties of whatever parses.
fn check(bytes: &[u8]) {
    let Ok(status) = Status::parse(bytes) else {
        return;
    };
    let cpus: Vec<CpuLatency> = status.cpus().collect();
    let tasks: Vec<TaskStatus> = status.tasks().collect();
    assert!(cpus.len() <= MAX_REPORT_CPUS);
    assert_eq!(cpus.len(), usize::from(status.header.cpus));
    assert_eq!(tasks.len(), usize::from(status.header.tasks));
    assert_eq!(bytes.len(), message_len(cpus.len(), tasks.len()));
    assert!(cpus.iter().all(CpuLatency::histogram_adds_up));
    for t in &tasks {
        let _ = (t.name(), TaskState::from_u8(t.state).map(TaskState::as_str));
    }
    let mut again = vec![0; bytes.len()];
    assert_eq!(
        encode(&mut again, status.header.uptime_ns, &cpus, &tasks),
        Ok(bytes.len())
    );
    assert_eq!(again, bytes, "what parses encodes back to the same bytes");
}

fuzz_target!(|data: &[u8]| {
    check(data);

    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let mut records = rest.chunks_exact(size_of::<CpuLatency>());
    let cpus: Vec<CpuLatency> = records
        .by_ref()
        .take(usize::from(shape) % (MAX_REPORT_CPUS + 1))
        .filter_map(|r| CpuLatency::read_from_bytes(r).ok())
        .map(|mut c| {
            c.samples = c
                .histogram
                .iter()
                .fold(c.overflow, |sum, &n| sum.saturating_add(n));
            c
        })
        .collect();
    let after = cpus.len() * size_of::<CpuLatency>();
    let tasks: Vec<TaskStatus> = rest
        .get(after..)
        .unwrap_or_default()
        .chunks_exact(size_of::<TaskStatus>())
        .filter_map(|t| TaskStatus::read_from_bytes(t).ok())
        .collect();
    let mut buf = vec![0; message_len(cpus.len(), tasks.len())];
    let len = encode(&mut buf, u64::from(shape), &cpus, &tasks)
        .expect("valid records encode into a buffer of their size");
    let status = Status::parse(&buf[..len]).expect("what encode writes parses");
    assert!(status.cpus().eq(cpus.iter().copied()));
    assert!(status.tasks().eq(tasks.iter().copied().take(255)));
    check(&buf[..len]);
});
