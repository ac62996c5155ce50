//! `bulkhead-hostile`: what a hostile Linux does to the partition beside it, as real programs
//! in the Linux partition of the end-to-end tests. Each case prints one line,
//! `hostile: CASE: OUTCOME`, that the test reads; the test then checks the other side (the RT
//! partition's deadlines and exits, the hypervisor's refusal counts and log budget).
//!
//! Cases marked *user* run in a child that drops to the unprivileged `nobody` (uid 65534)
//! first; the others need root. The program only attacks: it never decides whether an attack
//! failed, the test does, from both sides' lines.
//!
//! It is test tooling: built static for the test initramfs, never part of an installation.

use std::fs::OpenOptions;
use std::io::{Error, Write};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;

use bulkhead_abi::hypercall::{Call, Hypercall, Status};

/// The unprivileged user the *user* cases run as.
const NOBODY: libc::uid_t = 65534;
/// Hypercalls of an unknown number the flood makes (more than any log budget).
const FLOOD_CALLS: u32 = 1500;
/// A number the ABI does not define.
const UNKNOWN_CALL: u64 = 0x4248_00ff;
/// The MSRs of the time stamp counter.
const IA32_TSC: u64 = 0x10;
const IA32_TSC_ADJUST: u64 = 0x3b;
/// The hypervisor's console UART (COM1), not Linux's.
const HYPERVISOR_UART: u16 = 0x3f8;
/// The xAPIC's MMIO page, off in x2APIC mode.
const XAPIC_PAGE: u64 = 0xfee0_0000;
/// The IOAPIC's MMIO page (the emulators' one IOAPIC), and its two registers.
const IOAPIC_PAGE: u64 = 0xfec0_0000;
const IOREGSEL: usize = 0x00;
const IOWIN: usize = 0x10;

/// One attack: it returns its outcome line.
type Case = fn() -> String;

/// Every case, in the order `all` runs them.
const CASES: [(&str, Case); 17] = [
    ("user-vmxoff", user_vmxoff),
    ("user-hello", user_hello),
    ("user-hypercall-flood", user_hypercall_flood),
    ("user-hypercall-fuzz", user_hypercall_fuzz),
    ("user-doorbell-flood", user_doorbell_flood),
    ("root-hello", root_hello),
    ("root-tsc-write", root_tsc_write),
    ("root-msr-shared-write", root_msr_shared_write),
    ("root-exit-storm", root_exit_storm),
    ("root-hypervisor-uart", root_hypervisor_uart),
    ("root-xapic-read", root_xapic_read),
    ("root-xapic-init-ipi", root_xapic_init_ipi),
    ("root-ioapic", root_ioapic),
    ("root-pci-config-write", root_pci_config_write),
    ("root-pci-bar-move", root_pci_bar_move),
    ("root-rt-nic-config", root_rt_nic_config),
    ("root-ring-corrupt", root_ring_corrupt),
];

/// Cases that leave Linux unusable, run by name only (never by `all`).
const ENDING_CASES: [(&str, Case); 1] = [("root-rt-hog", root_rt_hog)];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: bulkhead-hostile all | CASE...");
        eprintln!("cases: {}", CASES.map(|(n, _)| n).join(" "));
        eprintln!(
            "by name only (they leave Linux unusable): {}",
            ENDING_CASES.map(|(n, _)| n).join(" ")
        );
        return ExitCode::from(2);
    }
    if !bulkhead_vmcall::under_bulkhead() {
        eprintln!("bulkhead-hostile: not in a Bulkhead partition (no hypervisor signature)");
        return ExitCode::from(1);
    }
    let all = args.iter().any(|a| a == "all");
    for (name, case) in CASES {
        if all || args.iter().any(|a| a == name) {
            let outcome = case();
            println!("hostile: {name}: {outcome}");
            let _ = std::io::stdout().flush();
        }
    }
    for (name, case) in ENDING_CASES {
        if args.iter().any(|a| a == name) {
            println!("hostile: {name}: {}", case());
            let _ = std::io::stdout().flush();
        }
    }
    if let Some(unknown) = args
        .iter()
        .find(|a| *a != "all" && !CASES.iter().chain(&ENDING_CASES).any(|(n, _)| n == a))
    {
        eprintln!("bulkhead-hostile: no case {unknown:?}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

/// Runs `attack` in a child process as `nobody`; the child's outcome line, or how it died.
fn as_nobody(attack: Case) -> String {
    let mut pipe = [0; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
        return format!("pipe failed: {}", Error::last_os_error());
    }
    // SAFETY: the child only drops privileges, runs the attack, writes and exits; it calls no
    // code that could hold a lock of the parent's threads (this program has one thread).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain system calls in the child.
        unsafe {
            libc::close(pipe[0]);
            if libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0 {
                libc::_exit(3);
            }
        }
        let line = attack();
        // SAFETY: writes the line into the pipe and leaves without running the parent's
        // exit handlers.
        unsafe {
            libc::write(pipe[1], line.as_ptr().cast(), line.len());
            libc::_exit(0);
        }
    }
    // SAFETY: the parent's end of the pipe is its own.
    unsafe { libc::close(pipe[1]) };
    if pid < 0 {
        return format!("fork failed: {}", Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: reads into `buf`, at most its length.
        let n = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    unsafe {
        libc::close(pipe[0]);
        libc::waitpid(pid, &mut status, 0);
    }
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        return format!("killed by signal {signal}{}", signal_name(signal));
    }
    match libc::WEXITSTATUS(status) {
        0 => String::from_utf8_lossy(&out).into_owned(),
        3 => "could not become nobody".into(),
        n => format!("exited with status {n}"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGILL => " (SIGILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGBUS => " (SIGBUS)",
        _ => "",
    }
}

/// A hypercall's status as the ABI names it.
fn status_name(answer: bulkhead_vmcall::Answer) -> String {
    match answer {
        Ok(s) => format!("{s:?}"),
        Err(raw) => format!("status {raw:#x}"),
    }
}

/// `vmxoff` from user space: a CPU without VMX raises #UD, so only this process dies
/// (SIGILL), not the partition.
fn user_vmxoff() -> String {
    as_nobody(|| {
        // SAFETY: the attack: VMXOFF in VMX non-root operation exits to the hypervisor, which
        // must answer with #UD (SIGILL here); nothing of this process's memory is involved.
        unsafe { core::arch::asm!("vmxoff", options(nomem, nostack)) };
        "vmxoff returned".into()
    })
}

/// HELLO from user space: not a user-space call.
fn user_hello() -> String {
    as_nobody(|| {
        // SAFETY: `main` checked that this runs under Bulkhead.
        status_name(unsafe { bulkhead_vmcall::hypercall(Hypercall::Hello { tag: 7 }) })
    })
}

/// HELLO from root (still user space, CPL 3): refused as well.
fn root_hello() -> String {
    // SAFETY: `main` checked that this runs under Bulkhead.
    status_name(unsafe { bulkhead_vmcall::hypercall(Hypercall::Hello { tag: 7 }) })
}

/// Many calls of a number the ABI does not define, as `nobody`: each is refused; the log
/// takes only a few of them.
fn user_hypercall_flood() -> String {
    as_nobody(|| {
        let mut refused = 0;
        for _ in 0..FLOOD_CALLS {
            let call = Hypercall::Unknown {
                number: UNKNOWN_CALL,
            };
            // SAFETY: `main` checked that this runs under Bulkhead.
            let answer = unsafe { bulkhead_vmcall::hypercall(call) };
            if let Ok(Status::NotPermitted | Status::UnknownCall) = answer {
                refused += 1;
            }
        }
        debug_assert!(Call::from_number(UNKNOWN_CALL).is_none());
        format!("{FLOOD_CALLS} calls, {refused} refused")
    })
}

/// Hypercalls the fuzzer makes.
const FUZZ_CALLS: u32 = 2000;

/// Hypercalls with random registers, as `nobody`: a quarter with a number of the ABI's (any
/// argument), the rest with any number. Every one is refused or answered with a status the
/// ABI defines; none reaches the RT partition (a doorbell with a random base names no
/// channel).
fn user_hypercall_fuzz() -> String {
    as_nobody(|| {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            // xorshift64*: reproducible, no dependency.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let (mut refused, mut answered, mut undefined) = (0, 0, 0);
        for _ in 0..FUZZ_CALLS {
            let pick = next();
            let number = if pick & 3 == 0 {
                0x4248_0000 | (pick >> 8) & 0xf
            } else {
                next()
            };
            let call = Hypercall::decode(number, next());
            // SAFETY: `main` checked that this runs under Bulkhead.
            match unsafe { bulkhead_vmcall::hypercall(call) } {
                Ok(Status::NotPermitted | Status::UnknownCall) => refused += 1,
                Ok(_) => answered += 1,
                Err(_) => undefined += 1,
            }
        }
        format!(
            "{FUZZ_CALLS} calls, {refused} refused, {answered} answered, {undefined} undefined answers"
        )
    })
}

/// Exits each Linux CPU makes in the storm, per kind.
const STORM_EXITS: u32 = 20_000;
/// A port no partition is given (Bochs has no device there either).
const UNOWNED_PORT: u16 = 0x2e8;

/// An exit storm as root on every Linux CPU at once: CPUID, reads of an unowned port and
/// writes of an MSR the hypervisor intercepts ([`STORM_EXITS`] of each per CPU), each a VM
/// exit on that CPU alone.
fn root_exit_storm() -> String {
    if let Err(e) = raise_io_privilege() {
        return e;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers: Vec<_> = (0..cpus)
        .map(|cpu| {
            std::thread::spawn(move || {
                // SAFETY: pins this thread to `cpu`; a plain system call.
                unsafe {
                    let mut set: libc::cpu_set_t = core::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set);
                }
                let msr = open_msr(cpu).ok();
                for i in 0..STORM_EXITS {
                    let _ = core::arch::x86_64::__cpuid(i % 0x20);
                    // SAFETY: a read of a port nobody owns; iopl 3 lets it through, the
                    // hypervisor answers all ones.
                    unsafe {
                        let _v: u8;
                        core::arch::asm!("in al, dx", in("dx") UNOWNED_PORT, out("al") _v, options(nomem, nostack));
                    }
                    if let Some(f) = &msr {
                        // IA32_MISC_ENABLE: intercepted, refused, counted.
                        let _ = f.write_all_at(&0u64.to_le_bytes(), 0x1a0);
                    }
                }
            })
        })
        .collect();
    let done = workers.into_iter().filter_map(|w| w.join().ok()).count();
    format!("{done} of {cpus} CPUs made {STORM_EXITS} CPUID, port and MSR exits each")
}

/// Doorbells the flood rings.
const FLOOD_DOORBELLS: u32 = 20_000;
/// The channel the flood rings: one the RT side receives on.
const FLOOD_CHANNEL: &str = "commands";

/// Rings the doorbell of a channel the RT side receives on, as fast as it can, as `nobody`,
/// without sending anything: the hypervisor interrupts the RT partition only when the RT side
/// asked (its request word), and never beyond its budget a second.
fn user_doorbell_flood() -> String {
    as_nobody(|| {
        let cmdline = match std::fs::read_to_string("/proc/cmdline") {
            Ok(c) => c,
            Err(e) => return format!("cannot read /proc/cmdline: {e}"),
        };
        let Some(base) = bulkhead_ring::announce::parse_cmdline(&cmdline)
            .flatten()
            .find(|a| a.name == FLOOD_CHANNEL)
            .map(|a| a.base)
        else {
            return format!("no channel {FLOOD_CHANNEL} announced");
        };
        let (mut interrupted, mut coalesced, mut not_waiting, mut other) = (0, 0, 0, 0);
        for _ in 0..FLOOD_DOORBELLS {
            let call = Hypercall::Doorbell { channel_base: base };
            // SAFETY: `main` checked that this runs under Bulkhead.
            match unsafe { bulkhead_vmcall::hypercall(call) } {
                Ok(Status::Ok) => interrupted += 1,
                Ok(Status::Coalesced) => coalesced += 1,
                Ok(Status::NotWaiting) => not_waiting += 1,
                _ => other += 1,
            }
        }
        format!(
            "{FLOOD_DOORBELLS} rings: interrupted {interrupted} coalesced {coalesced} not waiting {not_waiting} other {other}"
        )
    })
}

/// Root moves the TSC forward by a lot (and sets TSC_ADJUST) through the msr driver: the
/// hypervisor's clock must not follow.
fn root_tsc_write() -> String {
    let file = match open_msr(0) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let before = rdtsc();
    let jump = 1u64 << 40;
    let tsc = file.write_all_at(&(before + jump).to_le_bytes(), IA32_TSC);
    let adjust = file.write_all_at(&jump.to_le_bytes(), IA32_TSC_ADJUST);
    let after = rdtsc();
    let moved = if after.wrapping_sub(before) >= jump {
        "moved"
    } else {
        "did not move"
    };
    format!(
        "wrote TSC ({}) and TSC_ADJUST ({}); the TSC {moved}",
        result_word(&tsc),
        result_word(&adjust)
    )
}

/// CPU `cpu`'s MSRs through the msr driver, for reading and writing.
fn open_msr(cpu: usize) -> Result<std::fs::File, String> {
    let path = format!("/dev/cpu/{cpu}/msr");
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {path}: {e}"))
}

/// MSRs shared beyond Linux's own CPU that root writes (the bit flipped): IA32_MISC_ENABLE's
/// fast-strings bit, and IA32_MTRR_DEF_TYPE's fixed-range enable.
const SHARED_MSRS: [(&str, u64, u64); 2] =
    [("MISC_ENABLE", 0x1a0, 1), ("MTRR_DEF_TYPE", 0x2ff, 1 << 10)];

/// Root writes MSRs that reach beyond its own CPU (SDM: core or package scope, or state every
/// CPU must share) through the msr driver, and reads each back.
fn root_msr_shared_write() -> String {
    let file = match open_msr(0) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let read = |msr: u64| {
        let mut word = [0u8; 8];
        file.read_exact_at(&mut word, msr)
            .map(|()| u64::from_le_bytes(word))
    };
    let mut outcomes = Vec::new();
    for (name, msr, bit) in SHARED_MSRS {
        let before = match read(msr) {
            Ok(v) => v,
            Err(e) => return format!("cannot read {name}: {e}"),
        };
        let written = file.write_all_at(&(before ^ bit).to_le_bytes(), msr);
        let after = read(msr).map_or_else(
            |e| format!("unreadable ({e})"),
            |v| {
                if v == before {
                    "unchanged".into()
                } else {
                    format!("changed to {v:#x}")
                }
            },
        );
        outcomes.push(format!("{name} ({}) {after}", result_word(&written)));
    }
    outcomes.join(", ")
}

fn result_word(r: &std::io::Result<()>) -> String {
    match r {
        Ok(()) => "accepted".into(),
        Err(e) => format!("error {e}"),
    }
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads the time stamp counter; it has no other effect.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Root takes every port (`iopl(3)`) and writes into the hypervisor's console UART: the port
/// is not Linux's, so the write is dropped and counted.
fn root_hypervisor_uart() -> String {
    if let Err(e) = raise_io_privilege() {
        return e;
    }
    for &b in b"HOSTILE\r\n" {
        // SAFETY: an OUT to a port; with iopl 3 the CPU allows it, the hypervisor decides.
        unsafe {
            core::arch::asm!("out dx, al", in("dx") HYPERVISOR_UART, in("al") b, options(nomem, nostack));
        }
    }
    "wrote 9 bytes to port 0x3f8".into()
}

/// Root writes the PCI configuration space of a function Linux may only read (the host
/// bridge, 00:00.0: its command register's SERR# enable bit, flipped) through the
/// configuration ports, and reads it back.
fn root_pci_config_write() -> String {
    // Enable bit, bus 0, device 0, function 0, register 0x04 (command).
    const HOST_BRIDGE_COMMAND: u32 = 0x8000_0004;
    if let Err(e) = raise_io_privilege() {
        return e;
    }
    let before = config_read(HOST_BRIDGE_COMMAND) as u16;
    let written = before ^ 0x0100;
    config_write16(HOST_BRIDGE_COMMAND, written);
    let after = config_read(HOST_BRIDGE_COMMAND) as u16;
    if after == before {
        format!("host bridge command {before:#06x} unchanged after writing {written:#06x}")
    } else {
        format!("host bridge command {before:#06x} became {after:#06x}")
    }
}

/// Root moves the I/O BAR of a PCI function Linux owns (the IDE controller's bus-master
/// registers, 00:01.1 BAR4) over the hypervisor's console UART, through the configuration
/// ports.
fn root_pci_bar_move() -> String {
    // Enable bit, bus 0, device 1, function 1, register 0x20 (BAR4).
    const IDE_BUS_MASTER_BAR: u32 = 0x8000_0920;
    if let Err(e) = raise_io_privilege() {
        return e;
    }
    let before = config_read(IDE_BUS_MASTER_BAR);
    let written = u32::from(HYPERVISOR_UART & !0xf) | 1;
    config_write32(IDE_BUS_MASTER_BAR, written);
    let after = config_read(IDE_BUS_MASTER_BAR);
    if after == before {
        format!("IDE bus-master BAR {before:#010x} unchanged after writing {written:#010x}")
    } else {
        format!("IDE bus-master BAR {before:#010x} became {after:#010x}")
    }
}

/// Root goes for the configuration space of the RT partition's NIC in the device tests
/// (00:03.0: an absent function on other machines, which reads the same): turns its decoding
/// and bus mastering off and moves its register BAR over the local APICs' page, and reads
/// both registers before and after.
fn root_rt_nic_config() -> String {
    // Enable bit, bus 0, device 3, function 0: the command register and BAR0.
    const COMMAND: u32 = 0x8000_1804;
    const BAR0: u32 = 0x8000_1810;
    if let Err(e) = raise_io_privilege() {
        return e;
    }
    let before = (config_read(COMMAND), config_read(BAR0));
    config_write32(COMMAND, 0);
    config_write32(BAR0, XAPIC_PAGE as u32);
    let after = (config_read(COMMAND), config_read(BAR0));
    let verb = if after == before {
        "unchanged"
    } else {
        "changed"
    };
    format!(
        "00:03.0 command {:#010x} BAR0 {:#010x} {verb} after writing 0 and {XAPIC_PAGE:#x} (now {:#010x} {:#010x})",
        before.0, before.1, after.0, after.1
    )
}

/// What the ring corruption case scribbles on: each channel's header word, and the value
/// (`None`: the word plus a million): `commands`' producer index (Linux produces; a million
/// messages ahead, which no ring holds), and the state word of the RT kernel's status and log
/// channels and of the hypervisor's log (a value no side writes).
const SCRIBBLES: [(&str, u64, Option<u64>); 4] = [
    ("commands", PRODUCER_INDEX, None),
    ("rt-status", STATE, Some(0xdead)),
    ("rt-log", STATE, Some(0xdead)),
    ("hv-log", STATE, Some(0xdead)),
];
/// Offsets of a ring's state word and producer index in its header page
/// (`bulkhead_ring::layout::HeaderPage`).
const STATE: u64 = 0x40;
const PRODUCER_INDEX: u64 = 0x80;

/// Root scribbles on channel rings through `/dev/mem` ([`SCRIBBLES`]); a channel that is not
/// announced is skipped.
fn root_ring_corrupt() -> String {
    let cmdline = match std::fs::read_to_string("/proc/cmdline") {
        Ok(c) => c,
        Err(e) => return format!("cannot read /proc/cmdline: {e}"),
    };
    let file = match open_dev_mem() {
        Ok(f) => f,
        Err(e) => return e,
    };
    let mut done = Vec::new();
    for (name, offset, value) in SCRIBBLES {
        let Some(base) = bulkhead_ring::announce::parse_cmdline(&cmdline)
            .flatten()
            .find(|a| a.name == name)
            .map(|a| a.base)
        else {
            continue;
        };
        match scribble(&file, base, offset, value) {
            Ok(()) => done.push(name),
            Err(e) => return format!("cannot scribble on {name}: {e}"),
        }
    }
    format!("scribbled on {}", done.join(", "))
}

/// Writes `value` (or the word plus a million) at `offset` in the header page at `base`.
fn scribble(file: &std::fs::File, base: u64, offset: u64, value: Option<u64>) -> Result<(), Error> {
    // Mapped, as Linux's channel library maps a channel (reads and writes of /dev/mem refuse
    // memory the kernel does not have as RAM).
    let page = PhysPage::map(file, base)?;
    let new = value.unwrap_or_else(|| page.read64(offset as usize).wrapping_add(1_000_000));
    page.write64(offset as usize, new);
    Ok(())
}

/// One page of physical memory mapped from `/dev/mem`, read and written with one aligned
/// `mov` each, as a driver's `readl`/`writel` do (a volatile read in Rust may become the
/// memory operand of a compare, and a copy through `read`/`write` of /dev/mem may use string
/// instructions: the hypervisor emulates moves on the device pages it filters, and stops a
/// Linux that uses anything else there).
struct PhysPage(*mut u8);

impl PhysPage {
    const SIZE: usize = 4096;

    /// Maps the page at physical address `base` (page-aligned), shared, readable and writable.
    fn map(file: &std::fs::File, base: u64) -> Result<Self, Error> {
        // SAFETY: maps one page of /dev/mem, shared; the mapping is this value's alone and is
        // unmapped once, when it drops.
        let page = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                Self::SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(file),
                base as libc::off_t,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        Ok(Self(page.cast()))
    }

    /// The address of the `T` at `offset`, which must be aligned for it and inside the page.
    fn at<T>(&self, offset: usize) -> *mut T {
        assert!(
            offset.is_multiple_of(size_of::<T>()) && offset + size_of::<T>() <= Self::SIZE,
            "offset {offset:#x} is not an aligned word of the page"
        );
        self.0.wrapping_add(offset).cast()
    }

    fn read32(&self, offset: usize) -> u32 {
        let value: u32;
        // SAFETY: an aligned word inside the mapped page (`at` checks), read with one `mov`.
        unsafe {
            core::arch::asm!("mov {0:e}, dword ptr [{1}]", out(reg) value, in(reg) self.at::<u32>(offset), options(nostack, preserves_flags));
        }
        value
    }

    fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as in `read32`, written with one `mov`.
        unsafe {
            core::arch::asm!("mov dword ptr [{0}], {1:e}", in(reg) self.at::<u32>(offset), in(reg) value, options(nostack, preserves_flags));
        }
    }

    /// `cmp dword ptr [offset], with`: whether the word equals `with`, and whether it is
    /// below it (ZF, CF), read by the one `cmp` a compiler may fold a read into.
    fn compare32(&self, offset: usize, with: u32) -> (bool, bool) {
        let (equal, below): (u8, u8);
        // SAFETY: as in `read32`, read by one `cmp`; the flags are taken right after it.
        unsafe {
            core::arch::asm!("cmp dword ptr [{0}], {1:e}", "sete {2}", "setb {3}", in(reg) self.at::<u32>(offset), in(reg) with, out(reg_byte) equal, out(reg_byte) below, options(nostack));
        }
        (equal != 0, below != 0)
    }

    /// `test dword ptr [offset], mask`: whether none of `mask`'s bits is set in the word (ZF).
    fn test32(&self, offset: usize, mask: u32) -> bool {
        let clear: u8;
        // SAFETY: as in `compare32`, read by one `test`.
        unsafe {
            core::arch::asm!("test dword ptr [{0}], {1:e}", "sete {2}", in(reg) self.at::<u32>(offset), in(reg) mask, out(reg_byte) clear, options(nostack));
        }
        clear != 0
    }

    fn read64(&self, offset: usize) -> u64 {
        let value: u64;
        // SAFETY: as in `read32`.
        unsafe {
            core::arch::asm!("mov {0}, qword ptr [{1}]", out(reg) value, in(reg) self.at::<u64>(offset), options(nostack, preserves_flags));
        }
        value
    }

    fn write64(&self, offset: usize, value: u64) {
        // SAFETY: as in `write32`.
        unsafe {
            core::arch::asm!("mov qword ptr [{0}], {1}", in(reg) self.at::<u64>(offset), in(reg) value, options(nostack, preserves_flags));
        }
    }
}

impl Drop for PhysPage {
    fn drop(&mut self) {
        // SAFETY: the page this value mapped, unmapped once; nothing refers to it after.
        unsafe { libc::munmap(self.0.cast(), Self::SIZE) };
    }
}

/// `/dev/mem`, open for reading and writing.
fn open_dev_mem() -> Result<std::fs::File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mem")
        .map_err(|e| format!("cannot open /dev/mem: {e}"))
}

/// PCI configuration mechanism #1's ports.
const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Raises this process's I/O privilege level to 3 (root may), for the configuration ports.
fn raise_io_privilege() -> Result<(), String> {
    // SAFETY: raising this process's I/O privilege is what the attacks are about.
    if unsafe { libc::iopl(3) } != 0 {
        return Err(format!("iopl failed: {}", Error::last_os_error()));
    }
    Ok(())
}

/// The configuration dword at `address` (mechanism #1's address word).
fn config_read(address: u32) -> u32 {
    let value: u32;
    // SAFETY: the configuration mechanism's two ports; with iopl 3 the CPU allows them, the
    // hypervisor decides what they reach.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") CONFIG_ADDRESS, in("eax") address, options(nomem, nostack));
        core::arch::asm!("in eax, dx", in("dx") CONFIG_DATA, out("eax") value, options(nomem, nostack));
    }
    value
}

/// Writes the low word of the configuration dword at `address`.
fn config_write16(address: u32, value: u16) {
    // SAFETY: as in `config_read`.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") CONFIG_ADDRESS, in("eax") address, options(nomem, nostack));
        core::arch::asm!("out dx, ax", in("dx") CONFIG_DATA, in("ax") value, options(nomem, nostack));
    }
}

/// Writes the configuration dword at `address`.
fn config_write32(address: u32, value: u32) {
    // SAFETY: as in `config_read`.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") CONFIG_ADDRESS, in("eax") address, options(nomem, nostack));
        core::arch::asm!("out dx, eax", in("dx") CONFIG_DATA, in("eax") value, options(nomem, nostack));
    }
}

/// Root takes every Linux CPU with a busy loop at the highest real-time priority
/// (SCHED_FIFO 99, the kernel's real-time throttling off): the CPUs keep running with
/// interrupts on, but no other task of Linux's runs again. Says so before it starts, since
/// Linux's console output needs its own tasks; returns only if it could not start.
fn root_rt_hog() -> String {
    if let Err(e) = std::fs::write("/proc/sys/kernel/sched_rt_runtime_us", "-1") {
        return format!("cannot turn real-time throttling off: {e}");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("hostile: root-rt-hog: taking {cpus} CPUs");
    let _ = std::io::stdout().flush();
    std::thread::sleep(std::time::Duration::from_secs(1));
    for cpu in 0..cpus {
        // SAFETY: the child only pins itself, raises its priority and spins; this program
        // has one thread.
        if unsafe { libc::fork() } == 0 {
            // SAFETY: plain system calls on this process, with valid arguments.
            unsafe {
                let mut set: libc::cpu_set_t = core::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set);
                let param = libc::sched_param { sched_priority: 99 };
                libc::sched_setscheduler(0, libc::SCHED_FIFO, &param);
            }
            loop {
                core::hint::spin_loop();
            }
        }
    }
    // SAFETY: waits for any child; they never end.
    unsafe { libc::wait(core::ptr::null_mut()) };
    "a busy loop ended".into()
}

/// Root reads the xAPIC page (its ID register) through `/dev/mem`, mapped (a driverless
/// access to an APIC that x2APIC mode switched off; Linux lets root map device pages with
/// `iomem=relaxed`).
fn root_xapic_read() -> String {
    match map_device_page(XAPIC_PAGE) {
        Ok(page) => format!("read {:#x}", page.read32(0x20)),
        Err(e) => e,
    }
}

/// The device page at `base`, mapped from `/dev/mem`, or the outcome line saying why not.
fn map_device_page(base: u64) -> Result<PhysPage, String> {
    let file = open_dev_mem()?;
    PhysPage::map(&file, base).map_err(|e| format!("refused by Linux: {e}"))
}

/// Root sends an INIT IPI to the RT partition's CPU (APIC ID 1) through the xAPIC's interrupt
/// command register (ICR high: destination, then ICR low: INIT, assert), mapped from
/// `/dev/mem` (Linux lets root map device pages with `iomem=relaxed`). In x2APIC mode the
/// page is no device's; were the write to reach a local APIC, the RT CPU would be reset.
fn root_xapic_init_ipi() -> String {
    const ICR_LOW: usize = 0x300;
    const ICR_HIGH: usize = 0x310;
    const INIT_ASSERT: u32 = 0x0000_4500;
    let page = match map_device_page(XAPIC_PAGE) {
        Ok(p) => p,
        Err(e) => return e,
    };
    page.write32(ICR_HIGH, 1 << 24);
    page.write32(ICR_LOW, INIT_ASSERT);
    format!(
        "wrote INIT for APIC ID 1 into the ICR; ICR low reads {:#010x}",
        page.read32(ICR_LOW)
    )
}

/// Root drives the IOAPIC's registers directly, through its page mapped from `/dev/mem`
/// (`iomem=relaxed`): an undefined register (0xff, which ends the emulator's whole machine if
/// it reaches its IOAPIC) written and read; the destination of one of Linux's own pins (GSI 3,
/// its console UART) pointed at the RT CPU; the redirection entry of a pin that is not Linux's
/// (GSI 10) unmasked; the version register read before and after, and read by a `cmp` and
/// a `test` (which a compiler may fold a read into) instead of a `mov`.
fn root_ioapic() -> String {
    const VERSION: u32 = 0x01;
    const UNDEFINED: u32 = 0xff;
    const fn entry(gsi: u32, high: bool) -> u32 {
        0x10 + 2 * gsi + high as u32
    }
    let page = match map_device_page(IOAPIC_PAGE) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let read = |register: u32| {
        page.write32(IOREGSEL, register);
        page.read32(IOWIN)
    };
    let write = |register: u32, value: u32| {
        page.write32(IOREGSEL, register);
        page.write32(IOWIN, value);
    };
    let version = read(VERSION);
    write(UNDEFINED, 0x1234_5678);
    let undefined = read(UNDEFINED);
    let (own, rt_destination) = (entry(3, true), 1u32 << 24);
    let own_before = read(own);
    write(own, rt_destination);
    let own_after = read(own);
    let (foreign, unmasked) = (entry(10, false), 0x0000_00fe);
    let foreign_before = read(foreign);
    write(foreign, unmasked);
    let foreign_after = read(foreign);
    let verb = |before: u32, after: u32| {
        if before == after {
            "unchanged"
        } else {
            "changed"
        }
    };
    let version_after = read(VERSION);
    // The version register again, by `cmp` and `test`: equal to itself, below itself plus
    // one, and its low byte (the version) not zero.
    page.write32(IOREGSEL, VERSION);
    let (equal, _) = page.compare32(IOWIN, version);
    let (_, below) = page.compare32(IOWIN, version.wrapping_add(1));
    let low_byte_clear = page.test32(IOWIN, 0xff);
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    format!(
        "register 0xff reads {undefined:#010x} after writing 0x12345678; \
         GSI 3 destination {own_before:#010x} {} after writing {rt_destination:#010x}; \
         GSI 10 entry {foreign_before:#010x} {} after writing {unmasked:#010x}; \
         version {version:#010x} {}; by cmp equal {}, below itself plus one {}; \
         by test its low byte zero {}",
        verb(own_before, own_after),
        verb(foreign_before, foreign_after),
        verb(version, version_after),
        yes_no(equal),
        yes_no(below),
        yes_no(low_byte_clear),
    )
}
