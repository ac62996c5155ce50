//! The Linux guest's artefacts, made from Debian's own packages and cached in
//! `target/linux-guest/`:
//!
//! - `vmlinuz-<release>`: the stock kernel (a bzImage) from the package `linux-image-amd64`
//!   depends on;
//! - `vmlinux-<release>`: the uncompressed ELF inside that bzImage, which boots much faster in an
//!   emulator (the guest does not decompress itself);
//! - `initramfs.cpio`: an uncompressed `newc` archive around `busybox-static` whose `/init` prints
//!   `bulkhead-linux: ...` lines for the tests, then powers off, reboots, panics or opens a shell
//!   on the console, as the kernel command line asks (`bulkhead.init=poweroff|reboot|panic`,
//!   or `hang`: `halt -f`, every CPU halted with interrupts off; or `hotplug`: CPU 1 taken
//!   offline and brought back twice; or `watchdog-hog`: the emulated watchdog fed, then every
//!   CPU taken by a real-time busy loop),
//!   or looks at the RT partition's devices and attacks one (`bulkhead.init=rt-devices`),
//!   or runs the latency benchmark's Linux load (`bulkhead.init=load`: CPU hogs, memory
//!   streaming, fork and exec, console output, channel traffic) or its hostile Linux
//!   (`bulkhead.init=hostile-loop`: the hostile-Linux attacks over and over),
//!   or checks the channels (and reads the hypervisor's and the RT kernel's logs) with the
//!   project's Linux tool `bulkhead` (`bulkhead.init=channels`),
//!   which the archive holds as `/usr/bin/bulkhead`;
//! - `modules/`: the kernel modules of the package that drive the channel device's interrupt
//!   (`uio.ko`, `uio_pci_generic.ko`), loaded by `/init` from `/lib/modules/`, and the msr
//!   driver the hostile-Linux test loads (`bulkhead.init=hostile`, which runs the attacks of
//!   `/usr/bin/bulkhead-hostile`), and the IB700 watchdog driver;
//! - `debs/`: the packages, fetched with `apt-get download` and reused offline; `kernel.stamp`
//!   and `busybox.stamp` name the package each artefact was made from, so a new package
//!   remakes them and an unchanged one costs nothing.
//!
//! This module only reads packages: it never installs anything on the host, and nothing runs it
//! for the host tests (`cargo xtask test --host-only` downloads nothing).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail, ensure};

/// Under the workspace's `target/`.
const GUEST_DIR: &str = "linux-guest";
/// The meta-package whose dependency is the current Debian kernel.
const KERNEL_META: &str = "linux-image-amd64";
const BUSYBOX_PACKAGE: &str = "busybox-static";
const INITRAMFS_FILE: &str = "initramfs.cpio";
const KERNEL_STAMP: &str = "kernel.stamp";
const BUSYBOX_FILE: &str = "busybox";
const BUSYBOX_STAMP: &str = "busybox.stamp";
const MODULES_DIR: &str = "modules";
const MODULES_STAMP: &str = "modules.stamp";
/// The kernel's modules the guest loads, with their folder in the package: Linux's generic
/// userspace-I/O PCI driver, which takes the channel device's interrupt, and the uio core it
/// needs (in load order); the msr driver (`/dev/cpu/N/msr`) the hostile-Linux test uses; and
/// the IB700 watchdog driver, for the watchdog the hypervisor emulates.
const MODULES: [(&str, &str); 4] = [
    ("uio", "kernel/drivers/uio"),
    ("uio_pci_generic", "kernel/drivers/uio"),
    ("msr", "kernel/arch/x86/kernel"),
    ("ib700wdt", "kernel/drivers/watchdog"),
];

/// The guest's `/init`. Every line the tests match starts with `bulkhead-linux: `.
const INIT: &str = r#"#!/bin/busybox sh
# /init of Bulkhead's Linux test guest, made by `cargo xtask guest`.
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# The kernel may have mounted it already.
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true

echo "bulkhead-linux: init reached"
echo "bulkhead-linux: kernel $(uname -r)"
echo "bulkhead-linux: cpus online $(cat /sys/devices/system/cpu/online) count $(nproc 2>/dev/null || grep -c '^processor' /proc/cpuinfo)"
echo "bulkhead-linux: memtotal_kb $(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)"
read -r uptime _ < /proc/uptime
echo "bulkhead-linux: uptime $uptime"

# The channel device (the RT side's doorbells as an interrupt): Linux's own uio_pci_generic
# driver, given the device's vendor, device and subsystem IDs.
if insmod /lib/modules/uio.ko && insmod /lib/modules/uio_pci_generic.ko \
    && echo "1af4 1110 1af4 4248" > /sys/bus/pci/drivers/uio_pci_generic/new_id; then
    for d in /sys/bus/pci/devices/*; do
        [ -d "$d/uio" ] && echo "bulkhead-linux: channel device ${d##*/} bound, $(ls "$d/uio")"
    done
fi

read -r cmdline < /proc/cmdline
case " $cmdline " in
*" bulkhead.init=poweroff "*)
    echo "bulkhead-linux: powering off"
    poweroff -f
    ;;
*" bulkhead.init=reboot "*)
    echo "bulkhead-linux: rebooting"
    reboot -f
    ;;
*" bulkhead.init=channels "*)
    # The channel check against the RT kernel's echo task (`echo=commands:telemetry`), its
    # status reports (`status=rt-status`) and its log (`log=rt-log`).
    bulkhead list
    bulkhead ping --to commands --from telemetry -n 200 --timeout-ms 20000
    echo "bulkhead-linux: ping exit status $?"
    # The RT kernel's status reports (`status=rt-status`): two, so the second has CPU shares,
    # each with the latency histogram.
    bulkhead rt -n 2 --histogram --timeout-ms 5000
    echo "bulkhead-linux: rt exit status $?"
    # The RT kernel's and the hypervisor's console lines from their log channels (`log=rt-log`,
    # `hv-log`): the oldest 40 of each, every line prefixed so that the tests can tell them
    # from the consoles' own lines. Here rather than last: the 80 lines take the console about
    # a second, and a power-off does not wait for it.
    bulkhead log rt -n 40 --timeout-ms 30000 > /tmp/rt.log
    echo "bulkhead-linux: log exit status $?"
    sed 's/^/bulkhead-linux: rt-log: /' /tmp/rt.log
    bulkhead log hypervisor -n 40 --timeout-ms 30000 > /tmp/hv.log
    echo "bulkhead-linux: log exit status $?"
    sed 's/^/bulkhead-linux: hv-log: /' /tmp/hv.log
    # Fill `telemetry` without reading it, so the echo task blocks on a full ring; then drain
    # it: the receive that frees a slot rings the echo task's doorbell.
    if seq 250 | sed 's/^/fill /' | bulkhead send commands --lines; then
        echo "bulkhead-linux: sent 250 without reading"
    fi
    # Fill `commands` too (the echo task no longer takes from it): a sender blocked on it
    # wakes when the RT side's receive frees a slot, by the channel device's interrupt.
    seq 300 | sed 's/^/more /' | bulkhead send commands --lines --nonblock 2> /tmp/more.err
    more=$(sed -n 's/.* after \([0-9]*\) of 300 lines were sent$/\1/p' /tmp/more.err)
    echo "bulkhead-linux: sent ${more:-?} more until full"
    bulkhead send commands "last" --timeout-ms 60000 &
    sender=$!
    sleep 2
    bulkhead receive telemetry -n $((250 + ${more:-0} + 1)) --timeout-ms 60000 > /dev/null
    echo "bulkhead-linux: received them, exit status $?"
    wait $sender
    echo "bulkhead-linux: blocked send woke, exit status $?"
    # A receiver blocked on an RT channel wakes on the RT side's send: on the channel
    # device's interrupt where Linux has it bound.
    bulkhead receive telemetry -n 1 --timeout-ms 20000 > /tmp/woken &
    sleep 2
    bulkhead send commands "wake up"
    wait $!
    echo "bulkhead-linux: blocked receive woke, exit status $? got $(cat /tmp/woken)"
    bulkhead list
    bulkhead stats commands
    bulkhead stats telemetry
    echo "bulkhead-linux: powering off"
    poweroff -f
    ;;
*" bulkhead.init=hostile "*)
    # A hostile Linux (tests/hostile): every attack as root and as nobody, the RT partition
    # running beside it. The msr driver gives root the time stamp counter's MSRs.
    insmod /lib/modules/msr.ko
    bulkhead-hostile all
    echo "bulkhead-linux: hostile exit status $?"
    # Its last attack left channels corrupt: ask the RT side (and the hypervisor, for its
    # log) to bring each back, then use it.
    sleep 1
    for c in commands rt-status rt-log hv-log; do
        bulkhead reset $c --timeout-ms 5000
        echo "bulkhead-linux: reset $c exit status $?"
    done
    bulkhead ping --to commands --from telemetry -n 20 --timeout-ms 20000
    echo "bulkhead-linux: ping exit status $?"
    bulkhead rt --timeout-ms 5000 > /dev/null
    echo "bulkhead-linux: rt exit status $?"
    bulkhead log rt -n 1 --timeout-ms 5000 > /dev/null
    echo "bulkhead-linux: log rt exit status $?"
    bulkhead log hypervisor -n 1 --timeout-ms 5000 > /dev/null
    echo "bulkhead-linux: log hypervisor exit status $?"
    # Let the RT side and the hypervisor report after the attacks before Linux goes.
    sleep 3
    echo "bulkhead-linux: powering off"
    poweroff -f
    ;;
*" bulkhead.init=rt-devices "*)
    # What Linux sees of the RT partition's devices in the device tests (the RT NIC, PCI
    # 00:03.0, its INTx on IRQ 11): its PCI functions as lspci reads them, IRQ 11 in its
    # interrupt table, then root's attack on the NIC's configuration space.
    echo "bulkhead-linux: pci functions: $(ls /sys/bus/pci/devices | tr '\n' ' ')"
    echo "bulkhead-linux: irq 11 lines: $(grep -c '^ *11:' /proc/interrupts)"
    bulkhead-hostile root-rt-nic-config
    echo "bulkhead-linux: rt-devices done"
    ;;
*" bulkhead.init=hostile-loop "*)
    # The latency benchmark's hostile Linux (`cargo xtask bench latency --linux-hostile`): the
    # attacks of tests/hostile, as root and as nobody, again and again until the run ends;
    # each round asks for the channels it corrupted back (those the RT side serves come back).
    insmod /lib/modules/msr.ko
    echo "bulkhead-linux: hostile loop running"
    while :; do
        bulkhead-hostile all > /dev/null
        for c in commands rt-status rt-log hv-log; do
            bulkhead reset $c --timeout-ms 2000 > /dev/null 2>&1
        done
    done
    ;;
*" bulkhead.init=load "*)
    # The latency benchmark's Linux load (`cargo xtask bench latency --linux-load`), until
    # the run ends: a CPU hog on every Linux CPU; memory streaming (a 32 MiB file in the
    # initramfs's RAM read over and over); a fork and exec loop; console output (a line a
    # second on Linux's serial console); channel traffic (round trips through the RT
    # kernel's echo task, `echo=commands:telemetry`).
    n=$(nproc)
    i=0
    while [ "$i" -lt "$n" ]; do
        (while :; do :; done) &
        i=$((i + 1))
    done
    dd if=/dev/zero of=/tmp/stream bs=1M count=32 2> /dev/null
    (while :; do cat /tmp/stream > /dev/null; done) &
    (while :; do /bin/true; done) &
    (while :; do echo "bulkhead-linux: load $(cat /proc/loadavg)"; sleep 1; done) &
    (while :; do bulkhead ping --to commands --from telemetry -n 100 --timeout-ms 20000 > /dev/null; done) &
    echo "bulkhead-linux: load running on $n CPUs"
    wait
    ;;
*" bulkhead.init=probe "*)
    # Linux booted alone on the machine: `bulkhead probe` proposes its config (one RT CPU),
    # which the test reads back from the console, line by line, and boots.
    insmod /lib/modules/msr.ko
    bulkhead probe --rt-cpus 1 -o /tmp/probe.toml 2> /tmp/probe.err
    status=$?
    sed 's/^/bulkhead-linux: probe-config: /' /tmp/probe.toml
    sed 's/^/bulkhead-linux: probe-finding: /' /tmp/probe.err
    echo "bulkhead-linux: probe exit status $status"
    # A dump of the machine, read back: the same config both ways.
    bulkhead probe --rt-cpus 1 --dump /tmp/dump -o /tmp/dumping.toml 2> /dev/null
    bulkhead probe --rt-cpus 1 --root /tmp/dump -o /tmp/redone.toml 2> /dev/null
    files=$(find /tmp/dump -type f | wc -l)
    if cmp -s /tmp/probe.toml /tmp/dumping.toml && cmp -s /tmp/probe.toml /tmp/redone.toml; then
        echo "bulkhead-linux: probe dump of $files files reads back the same config"
    else
        echo "bulkhead-linux: probe dump of $files files reads back another config"
        diff /tmp/probe.toml /tmp/redone.toml | sed 's/^/bulkhead-linux: probe-dump-diff: /'
    fi
    # The console drains at its own pace; a power-off does not wait for it.
    sleep 3
    echo "bulkhead-linux: powering off"
    poweroff -f
    ;;
*" bulkhead.init=hotplug "*)
    # Linux's second CPU taken offline and brought back twice (as power managers and tuned
    # do); each time, a process pinned to it says where it ran.
    for round in 1 2; do
        echo 0 > /sys/devices/system/cpu/cpu1/online
        echo "bulkhead-linux: hotplug $round offline, cpus online $(cat /sys/devices/system/cpu/online)"
        if echo 1 > /sys/devices/system/cpu/cpu1/online; then r=ok; else r=failed; fi
        ran=$(taskset -c 1 cat /proc/self/stat | awk '{print $39}')
        echo "bulkhead-linux: hotplug $round online $r, cpus online $(cat /sys/devices/system/cpu/online), pinned process ran on cpu $ran"
    done
    echo "bulkhead-linux: powering off"
    poweroff -f
    ;;
*" bulkhead.init=watchdog-hog "*)
    # Linux feeds the hypervisor's watchdog (the IB700's, through Linux's own driver and
    # busybox's daemon: every second, 4 s timeout), then a root process takes every CPU with a
    # real-time busy loop: Linux keeps taking interrupts but none of its services, the
    # daemon among them, runs again.
    insmod /lib/modules/ib700wdt.ko timeout=4
    watchdog -t 1 -T 4 /dev/watchdog
    echo "bulkhead-linux: watchdog daemon started, exit status $?"
    sleep 3
    bulkhead-hostile root-rt-hog
    ;;
*" bulkhead.init=hang "*)
    # A Linux that hangs: every CPU halted with interrupts off, as a hung kernel looks.
    echo "bulkhead-linux: halting"
    sleep 1
    halt -f
    ;;
*" bulkhead.init=panic "*)
    echo "bulkhead-linux: panicking"
    # Let the console's interrupt-driven output drain first: the panic's own messages go
    # out without interrupts and would cut the line.
    sleep 1
    echo 1 > /proc/sys/kernel/sysrq
    echo c > /proc/sysrq-trigger
    ;;
esac

echo "bulkhead-linux: shell on console"
while true; do
    if command -v cttyhack > /dev/null; then
        setsid cttyhack sh
    else
        sh
    fi
done
"#;

/// Directories every initramfs holds, with their modes.
const DIRECTORIES: [(&str, u32); 11] = [
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("proc", 0o755),
    ("sys", 0o755),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("etc", 0o755),
    ("root", 0o700),
];

/// A file added to the initramfs besides busybox and `/init` (the Linux side's tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    /// Where it goes in the archive, e.g. `usr/bin/bulkhead` (a leading `/` is ignored; missing
    /// parent directories are created).
    pub path: String,
    /// The file on the host.
    pub file: PathBuf,
    /// Its permission bits, e.g. `0o755`.
    pub mode: u32,
}

/// What [`prepare`] made.
#[derive(Debug, Clone)]
pub struct Artefacts {
    /// The kernel package and its version, e.g. `linux-image-6.1.0-56-amd64 6.1.158-1`.
    pub kernel_package: String,
    /// The kernel release (`uname -r`), e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// Debian's bzImage.
    pub bzimage: PathBuf,
    /// The uncompressed kernel ELF taken out of it.
    pub vmlinux: PathBuf,
    /// The busybox package and its version.
    pub busybox_package: String,
    /// The initramfs.
    pub initramfs: PathBuf,
}

impl Artefacts {
    /// The kernel image to boot: the vmlinux, or the bzImage when `bzimage`.
    pub fn kernel(&self, bzimage: bool) -> &Path {
        if bzimage {
            &self.bzimage
        } else {
            &self.vmlinux
        }
    }
}

/// [`prepare`] as one `[xtask]` step, with the project's Linux programs built first and put
/// in the initramfs: the tool (`/usr/bin/bulkhead`) and the hostile-Linux attacks the tests
/// run (`/usr/bin/bulkhead-hostile`).
pub fn prepare_step() -> Result<Artefacts> {
    let tool = crate::step(
        "build the Linux tool (static)",
        bulkhead_e2e::build_linux_tool,
    )?;
    let hostile = crate::step(
        "build the hostile-Linux attacks (static)",
        bulkhead_e2e::build_hostile_tool,
    )?;
    let extras = [
        Extra {
            path: "usr/bin/bulkhead".into(),
            file: tool,
            mode: 0o755,
        },
        Extra {
            path: "usr/bin/bulkhead-hostile".into(),
            file: hostile,
            mode: 0o755,
        },
    ];
    crate::step(
        "prepare the Linux guest (Debian kernel, vmlinux, initramfs)",
        || prepare(&extras),
    )
}

/// Fetches the packages (or reuses the cached ones) and makes whatever is out of date.
pub fn prepare(extras: &[Extra]) -> Result<Artefacts> {
    let dir = bulkhead_e2e::target_dir().join(GUEST_DIR);
    let debs = dir.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    let offer = Offer::ask();
    let kernel_deb = fetch(&debs, Source::Kernel, offer.as_ref())?;
    let busybox_deb = fetch(&debs, Source::Busybox, offer.as_ref())?;
    let (release, bzimage, vmlinux) = kernel(&dir, &kernel_deb)?;
    let busybox = busybox(&dir, &busybox_deb)?;
    let modules = kernel_modules(&dir, &kernel_deb)?;

    let mut extra_files = Vec::with_capacity(extras.len() + modules.len());
    for ((name, _), file) in MODULES.iter().zip(&modules) {
        let data = fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        extra_files.push((format!("lib/modules/{name}.ko"), data, 0o644));
    }
    for extra in extras {
        let data = fs::read(&extra.file)
            .with_context(|| format!("initramfs: cannot read {}", extra.file.display()))?;
        extra_files.push((extra.path.clone(), data, extra.mode));
    }
    let busybox_data =
        fs::read(&busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    let archive = initramfs(&busybox_data, &extra_files)?;
    let initramfs = dir.join(INITRAMFS_FILE);
    // Rewritten only when it changes, so that its time stamp means something.
    if fs::read(&initramfs).ok().as_deref() != Some(archive.as_slice()) {
        write_atomically(&initramfs, &archive)?;
    }
    Ok(Artefacts {
        kernel_package: kernel_deb.key(),
        release,
        bzimage,
        vmlinux,
        busybox_package: busybox_deb.key(),
        initramfs,
    })
}

// ---------------------------------------------------------------------------------------------
// Packages

/// A Debian package file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deb {
    file: PathBuf,
    package: String,
    version: String,
}

impl Deb {
    fn key(&self) -> String {
        format!("{} {}", self.package, self.version)
    }
}

/// A package the guest is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The kernel `linux-image-amd64` depends on.
    Kernel,
    Busybox,
}

impl Source {
    fn what(self) -> &'static str {
        match self {
            Self::Kernel => "the Debian kernel package (the dependency of linux-image-amd64)",
            Self::Busybox => "busybox-static",
        }
    }

    /// Whether a cached package may stand in for this one when apt cannot say which is current.
    fn family(self, package: &str) -> bool {
        match self {
            Self::Busybox => package == BUSYBOX_PACKAGE,
            Self::Kernel => package.starts_with("linux-image-") && package != KERNEL_META,
        }
    }
}

/// The kernel package in `apt-cache depends linux-image-amd64`'s output.
fn kernel_dependency(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends
        .lines()
        .filter_map(|line| line.trim().trim_start_matches('|').strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
}

/// The candidate versions in `apt-cache policy PACKAGE...`'s output, as (package, version).
fn candidate_versions(apt_cache_policy: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut package = None;
    for line in apt_cache_policy.lines() {
        if !line.starts_with(char::is_whitespace) {
            // A section: `busybox-static:` (or `name:arch:`).
            package = line.split(':').next().filter(|p| !p.is_empty());
        } else if let (Some(p), Some(v)) = (package, line.trim().strip_prefix("Candidate:")) {
            let v = v.trim();
            if !v.is_empty() && v != "(none)" {
                found.push((p.to_string(), v.to_string()));
            }
        }
    }
    found
}

/// What apt offers now: (package, candidate version) for each source.
#[derive(Debug)]
struct Offer {
    kernel: (String, String),
    busybox: (String, String),
}

impl Offer {
    /// Asks apt, in two calls (each reads every package list where apt keeps no cache of them).
    fn ask() -> Result<Self> {
        let depends = output(
            Command::new("apt-cache").args(["depends", KERNEL_META]),
            &format!("`apt-cache depends {KERNEL_META}`"),
        )?;
        let kernel = kernel_dependency(&depends).with_context(|| {
            format!("`apt-cache depends {KERNEL_META}` names no linux-image package")
        })?;
        let policy = output(
            Command::new("apt-cache").args(["policy", &kernel, BUSYBOX_PACKAGE]),
            &format!("`apt-cache policy {kernel} {BUSYBOX_PACKAGE}`"),
        )?;
        let candidates = candidate_versions(&policy);
        let version = |package: &str| {
            candidates
                .iter()
                .find(|(p, _)| p == package)
                .map(|(p, v)| (p.clone(), v.clone()))
                .with_context(|| format!("apt has no candidate version of {package}"))
        };
        Ok(Self {
            kernel: version(&kernel)?,
            busybox: version(BUSYBOX_PACKAGE)?,
        })
    }

    fn of(&self, source: Source) -> &(String, String) {
        match source {
            Source::Kernel => &self.kernel,
            Source::Busybox => &self.busybox,
        }
    }
}

/// The package for `source`: the cached file when it is the one apt offers, otherwise a fresh
/// `apt-get download`; when apt cannot say or fetch, the newest cached file of the kind. Other
/// cached files of the kind are removed.
fn fetch(debs: &Path, source: Source, offer: Result<&Offer, &anyhow::Error>) -> Result<Deb> {
    let cached: Vec<Deb> = cached_debs(debs)?
        .into_iter()
        .filter(|d| source.family(&d.package))
        .collect();
    let fetched = match offer {
        Err(why) => Err(anyhow!("{why:#}")),
        Ok(offer) => {
            let (package, version) = offer.of(source);
            match cached
                .iter()
                .find(|d| d.package == *package && d.version == *version)
            {
                Some(deb) => Ok(deb.clone()),
                None => download(debs, package).and_then(|deb| {
                    ensure!(
                        deb.package == *package,
                        "`apt-get download {package}` fetched {}",
                        deb.key()
                    );
                    Ok(deb)
                }),
            }
        }
    };
    let deb = match fetched {
        Ok(deb) => deb,
        Err(why) => {
            let newest = cached.iter().max_by_key(|d| {
                fs::metadata(&d.file)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
            });
            let Some(deb) = newest else {
                bail!(
                    "cannot fetch {} and none is cached in {}: {why:#}\n\
                     with access to a Debian mirror, run `apt-get update` (as root), then \
                     `cargo xtask guest`; or put the two .deb files there by hand (`apt-get \
                     download` of the package `apt-cache depends {KERNEL_META}` names, and of \
                     {BUSYBOX_PACKAGE})",
                    source.what(),
                    crate::shown(debs),
                );
            };
            eprintln!(
                "[xtask] warning: using the cached {} (apt cannot say whether it is current: \
                 {why:#})",
                deb.key()
            );
            deb.clone()
        }
    };
    for old in cached.iter().filter(|d| d.file != deb.file) {
        let _ = fs::remove_file(&old.file);
    }
    Ok(deb)
}

/// Every readable `.deb` in `debs`.
fn cached_debs(debs: &Path) -> Result<Vec<Deb>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(debs).with_context(|| format!("cannot read {}", debs.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") && path.is_file() {
            match read_deb(&path) {
                Ok(deb) => found.push(deb),
                Err(e) => eprintln!("[xtask] warning: ignoring {}: {e:#}", path.display()),
            }
        }
    }
    Ok(found)
}

/// The package name and version of a `.deb`.
fn read_deb(file: &Path) -> Result<Deb> {
    let control = output(
        Command::new("dpkg-deb")
            .arg("-f")
            .arg(file)
            .args(["Package", "Version"]),
        "dpkg-deb -f",
    )?;
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .with_context(|| format!("no {name} field"))
    };
    Ok(Deb {
        file: file.to_path_buf(),
        package: field("Package")?,
        version: field("Version")?,
    })
}

/// `apt-get download PACKAGE` into `debs/download-<process id>/`, then moved into `debs/` (an interrupted
/// download leaves nothing half-written among the cached files).
fn download(debs: &Path, package: &str) -> Result<Deb> {
    let partial = debs.join(format!("download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    eprintln!("[xtask] downloading {package} (apt-get download)");
    // Its output (including the warning apt gives root about its sandbox user) is shown only
    // when it fails.
    output(
        Command::new("apt-get")
            .args(["download", package])
            .current_dir(&partial),
        &format!("`apt-get download {package}`"),
    )?;
    let mut got = None;
    for entry in fs::read_dir(&partial)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            let name = path.file_name().context("a file without a name")?;
            let into = debs.join(name);
            fs::rename(&path, &into)?;
            got = Some(into);
        }
    }
    let _ = fs::remove_dir_all(&partial);
    let file = got.with_context(|| format!("`apt-get download {package}` left no .deb"))?;
    read_deb(&file)
}

/// Runs `command` (in the C locale, no input) and returns its standard output; fails with its
/// standard error.
pub(crate) fn output(command: &mut Command, what: &str) -> Result<String> {
    let out = command
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Extracts the members matching `patterns` (tar wildcards) from a package's data into `into`.
fn extract(deb: &Path, into: &Path, patterns: &[&str]) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run dpkg-deb")?;
    let tar_input = dpkg.stdout.take().context("no output from dpkg-deb")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .arg("--wildcards")
        .args(patterns)
        .stdin(tar_input)
        .output()
        .context("cannot run tar")?;
    let dpkg = dpkg.wait_with_output()?;
    if !tar.status.success() {
        bail!(
            "cannot extract {} from {} (tar: {})",
            patterns.join(" "),
            deb.display(),
            String::from_utf8_lossy(&tar.stderr).trim()
        );
    }
    if !dpkg.status.success() {
        bail!(
            "dpkg-deb --fsys-tarfile {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&dpkg.stderr).trim()
        );
    }
    Ok(())
}

/// An empty scratch directory under `dir` (one per process, so that two runs do not mix).
fn scratch(dir: &Path) -> Result<PathBuf> {
    let tmp = dir.join(format!("extract-{}.tmp", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    Ok(tmp)
}

/// `path` with `.<process id>.tmp` after its whole name.
fn tmp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = tmp_name(path);
    fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The stamp's lines when its first line is `key`.
fn stamp_matches(stamp: &Path, key: &str) -> Option<Vec<String>> {
    let text = fs::read_to_string(stamp).ok()?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    (lines.first().map(String::as_str) == Some(key)).then_some(lines)
}

/// Whether `name` can be a file name here and a module file on the ISO.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

// ---------------------------------------------------------------------------------------------
// Kernel

/// The bzImage and its vmlinux for the kernel package `deb`, made if out of date: returns the
/// release and both paths.
fn kernel(dir: &Path, deb: &Deb) -> Result<(String, PathBuf, PathBuf)> {
    let stamp = dir.join(KERNEL_STAMP);
    let key = deb.key();
    let paths = |release: &str| {
        (
            dir.join(format!("vmlinuz-{release}")),
            dir.join(format!("vmlinux-{release}")),
        )
    };
    if let Some(lines) = stamp_matches(&stamp, &key)
        && let Some(release) = lines.get(1).filter(|r| plain_name(r))
    {
        let (bzimage, vmlinux) = paths(release);
        if bzimage.is_file() && vmlinux.is_file() {
            return Ok((release.clone(), bzimage, vmlinux));
        }
    }
    let _ = fs::remove_file(&stamp);
    crate::step(&format!("extract the kernel from {}", deb.key()), || {
        let tmp = scratch(dir)?;
        extract(&deb.file, &tmp, &["./boot/vmlinuz-*"])?;
        let mut images = fs::read_dir(tmp.join("boot"))?
            .map(|e| Ok(e?.path()))
            .collect::<Result<Vec<_>>>()?;
        ensure!(
            images.len() == 1,
            "{} holds {} boot/vmlinuz-* files, expected one",
            deb.file.display(),
            images.len()
        );
        let image = images.remove(0);
        let release = image
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .filter(|r| plain_name(r))
            .with_context(|| format!("unexpected kernel file {}", image.display()))?
            .to_string();
        let (bzimage, vmlinux) = paths(&release);
        fs::rename(&image, &bzimage)?;
        let _ = fs::remove_dir_all(&tmp);
        let compression = decompress_bzimage(&bzimage, &vmlinux)?;
        eprintln!(
            "[xtask] {}: {} payload, vmlinux written",
            crate::shown(&bzimage),
            compression.name()
        );
        // Kernels of other releases.
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if (name.starts_with("vmlinuz-") || name.starts_with("vmlinux-"))
                && path != bzimage
                && path != vmlinux
            {
                let _ = fs::remove_file(&path);
            }
        }
        fs::write(&stamp, format!("{key}\n{release}\n"))?;
        Ok((release, bzimage, vmlinux))
    })
}

/// The [`MODULES`] of the kernel package `deb`, extracted (and decompressed, if the package
/// ships them as `.ko.xz`) if out of date.
fn kernel_modules(dir: &Path, deb: &Deb) -> Result<Vec<PathBuf>> {
    let out = dir.join(MODULES_DIR);
    let stamp = dir.join(MODULES_STAMP);
    let paths: Vec<PathBuf> = MODULES
        .iter()
        .map(|(m, _)| out.join(format!("{m}.ko")))
        .collect();
    if stamp_matches(&stamp, &deb.key()).is_some() && paths.iter().all(|p| p.is_file()) {
        return Ok(paths);
    }
    let _ = fs::remove_file(&stamp);
    crate::step(
        &format!("extract the guest's kernel modules from {}", deb.key()),
        || {
            let tmp = scratch(dir)?;
            let patterns: Vec<String> = MODULES
                .iter()
                .map(|(m, folder)| format!("./lib/modules/*/{folder}/{m}.ko*"))
                .collect();
            let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
            extract(&deb.file, &tmp, &patterns)?;
            fs::create_dir_all(&out)?;
            for ((module, _), path) in MODULES.iter().zip(&paths) {
                let found = find_file(&tmp, &format!("{module}.ko"))
                    .or_else(|| find_file(&tmp, &format!("{module}.ko.xz")))
                    .with_context(|| format!("{} holds no {module}.ko", deb.file.display()))?;
                if found.extension().is_some_and(|e| e == "xz") {
                    let xz = Command::new("xz")
                        .arg("-dc")
                        .arg(&found)
                        .output()
                        .context("cannot run xz")?;
                    ensure!(xz.status.success(), "xz -dc {} failed", found.display());
                    fs::write(path, xz.stdout)?;
                } else {
                    fs::rename(&found, path)?;
                }
            }
            let _ = fs::remove_dir_all(&tmp);
            fs::write(&stamp, format!("{}\n", deb.key()))?;
            Ok(paths.clone())
        },
    )
}

/// The first file named `name` under `dir`, searching depth first.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}

/// How a bzImage's payload is compressed (`CONFIG_KERNEL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    Xz,
    Zstd,
    Lzma,
    Lz4,
    Bzip2,
    Lzo,
    /// Not compressed: the payload is the ELF itself.
    None,
}

/// Magic numbers at the start of the payload, as the kernel's own `decompress_method` knows them.
const MAGICS: [(&[u8], Compression); 8] = [
    (&[0x1f, 0x8b], Compression::Gzip),
    (&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], Compression::Xz),
    (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
    (&[0x5d, 0x00, 0x00], Compression::Lzma),
    (&[0x02, 0x21, 0x4c, 0x18], Compression::Lz4),
    (b"BZh", Compression::Bzip2),
    (&[0x89, 0x4c, 0x5a, 0x4f], Compression::Lzo),
    (b"\x7fELF", Compression::None),
];

impl Compression {
    fn detect(data: &[u8]) -> Option<Self> {
        MAGICS
            .iter()
            .find(|(magic, _)| data.starts_with(magic))
            .map(|&(_, c)| c)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
            Self::Lzma => "lzma",
            Self::Lz4 => "lz4",
            Self::Bzip2 => "bzip2",
            Self::Lzo => "lzo",
            Self::None => "uncompressed",
        }
    }

    /// The kernel's build appends the uncompressed size (4 bytes) to every compressed payload
    /// but gzip's (whose own trailer holds it); the tools would take it for garbage.
    fn has_size_trailer(self) -> bool {
        !matches!(self, Self::Gzip | Self::None)
    }

    /// The decompressing command and the Debian package that has it.
    fn tool(self) -> Option<(&'static str, &'static [&'static str], &'static str)> {
        Some(match self {
            Self::Gzip => ("gzip", &["-dc"], "gzip"),
            Self::Xz => ("xz", &["-dc", "--single-stream"], "xz-utils"),
            Self::Zstd => ("zstd", &["-dcq"], "zstd"),
            Self::Lzma => ("xz", &["--format=lzma", "-dc"], "xz-utils"),
            Self::Lz4 => ("lz4", &["-dc"], "lz4"),
            Self::Bzip2 => ("bzip2", &["-dc"], "bzip2"),
            Self::Lzo => ("lzop", &["-dc"], "lzop"),
            Self::None => return None,
        })
    }
}

/// A bzImage's compressed kernel (its size trailer removed).
#[derive(Debug, PartialEq, Eq)]
struct Payload<'a> {
    compression: Compression,
    data: &'a [u8],
}

fn le16(image: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([image[at], image[at + 1]])
}

fn le32(image: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]])
}

/// Finds the payload through the setup header (boot protocol 2.08 or later): `setup_sects` at
/// 0x1f1 (0 means 4), `payload_offset` at 0x248 and `payload_length` at 0x24c, relative to the
/// protected-mode code, which starts at `(setup_sects + 1) * 512`.
fn bzimage_payload(image: &[u8]) -> Result<Payload<'_>> {
    ensure!(
        image.len() >= 0x250,
        "{} bytes: too short for a bzImage setup header",
        image.len()
    );
    ensure!(
        &image[0x202..0x206] == b"HdrS",
        "no \"HdrS\" at 0x202: not a bzImage"
    );
    let version = le16(image, 0x206);
    ensure!(
        version >= 0x0208,
        "boot protocol {}.{:02} has no payload fields (2.08 or later needed)",
        version >> 8,
        version & 0xff
    );
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let protected_mode = (setup_sects + 1) * 512;
    let offset = le32(image, 0x248) as usize;
    let length = le32(image, 0x24c) as usize;
    let start = protected_mode + offset;
    let end = start
        .checked_add(length)
        .context("payload length overflows")?;
    let data = image.get(start..end).with_context(|| {
        format!(
            "payload {start:#x}..{end:#x} lies past the end of the image ({:#x} bytes)",
            image.len()
        )
    })?;
    let compression = Compression::detect(data).with_context(|| {
        format!(
            "unknown payload compression (it starts with {:02x?})",
            &data[..data.len().min(8)]
        )
    })?;
    let data = if compression.has_size_trailer() {
        data.get(..data.len().saturating_sub(4)).unwrap_or_default()
    } else {
        data
    };
    Ok(Payload { compression, data })
}

/// Writes the ELF inside the bzImage at `bzimage` to `out`.
fn decompress_bzimage(bzimage: &Path, out: &Path) -> Result<Compression> {
    let image = fs::read(bzimage).with_context(|| format!("cannot read {}", bzimage.display()))?;
    let payload = bzimage_payload(&image).with_context(|| format!("{}", bzimage.display()))?;
    let tmp = tmp_name(out);
    match payload.compression.tool() {
        None => fs::write(&tmp, payload.data)?,
        Some((program, args, package)) => {
            decompress(program, args, payload.data, &tmp).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                match e.downcast_ref::<std::io::Error>() {
                    Some(io) if io.kind() == ErrorKind::NotFound => anyhow!(
                        "{}: the payload is {}-compressed and `{program}` is missing; install \
                         the Debian package {package} (`cargo xtask deps` does as root)",
                        bzimage.display(),
                        payload.compression.name()
                    ),
                    _ => e.context(format!(
                        "cannot decompress the {} payload of {}",
                        payload.compression.name(),
                        bzimage.display()
                    )),
                }
            })?;
        }
    }
    let mut head = [0u8; 5];
    File::open(&tmp)?
        .read_exact(&mut head)
        .with_context(|| format!("{}: the decompressed kernel is empty", bzimage.display()))?;
    if head != *b"\x7fELF\x02" {
        let _ = fs::remove_file(&tmp);
        bail!(
            "{}: the decompressed {} payload is not a 64-bit ELF (starts with {head:02x?})",
            bzimage.display(),
            payload.compression.name()
        );
    }
    fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(payload.compression)
}

/// Runs `program args` with `input` on its standard input and its output into `out`.
fn decompress(program: &str, args: &[&str], input: &[u8], out: &Path) -> Result<()> {
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("no input to the decompressor")?;
    let (written, result) = std::thread::scope(|s| {
        let writer = s.spawn(move || stdin.write_all(input));
        let result = child.wait_with_output();
        (writer.join(), result)
    });
    let result = result?;
    if !result.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            result.status,
            String::from_utf8_lossy(&result.stderr).trim()
        );
    }
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow!(e).context(format!("writing to {program}"))),
        Err(_) => bail!("the thread writing to {program} panicked"),
    }
}

// ---------------------------------------------------------------------------------------------
// Busybox and the initramfs

/// `busybox` from the package `deb`, extracted if out of date.
fn busybox(dir: &Path, deb: &Deb) -> Result<PathBuf> {
    let stamp = dir.join(BUSYBOX_STAMP);
    let out = dir.join(BUSYBOX_FILE);
    if stamp_matches(&stamp, &deb.key()).is_some() && out.is_file() {
        return Ok(out);
    }
    let _ = fs::remove_file(&stamp);
    let tmp = scratch(dir)?;
    extract(&deb.file, &tmp, &["*bin/busybox"])?;
    let found = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| tmp.join(p))
        .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .with_context(|| format!("no bin/busybox in {}", deb.file.display()))?;
    fs::rename(&found, &out)?;
    let _ = fs::remove_dir_all(&tmp);
    fs::write(&stamp, format!("{}\n", deb.key()))?;
    Ok(out)
}

/// The initramfs: the directories, `/dev/console` and `/dev/null`, `/bin/busybox`, `/init`, and
/// `extras` as (path in the archive, contents, permission bits).
fn initramfs(busybox: &[u8], extras: &[(String, Vec<u8>, u32)]) -> Result<Vec<u8>> {
    let mut files: Vec<(String, &[u8], u32)> = vec![
        ("bin/busybox".to_string(), busybox, 0o755),
        ("init".to_string(), INIT.as_bytes(), 0o755),
    ];
    let reserved: BTreeSet<&str> = DIRECTORIES
        .iter()
        .map(|&(d, _)| d)
        .chain(["dev/console", "dev/null", "bin/busybox", "init"])
        .collect();
    for (path, data, mode) in extras {
        let path = path.trim_start_matches('/');
        ensure!(
            !path.is_empty()
                && path
                    .split('/')
                    .all(|c| !c.is_empty() && c != "." && c != ".."),
            "initramfs: {path:?} is not a plain path"
        );
        ensure!(
            *mode <= 0o7777,
            "initramfs: {path}: mode {mode:#o} is more than permission bits"
        );
        ensure!(
            !reserved.contains(path) && !files.iter().any(|(p, _, _)| p == path),
            "initramfs: {path} is already in the archive"
        );
        files.push((path.to_string(), data, *mode));
    }
    let mut directories: Vec<(String, u32)> = DIRECTORIES
        .iter()
        .map(|&(d, m)| (d.to_string(), m))
        .collect();
    for (path, _, _) in &files {
        for ancestor in Path::new(path).ancestors().skip(1) {
            let ancestor = ancestor.to_string_lossy().into_owned();
            if ancestor.is_empty() {
                continue;
            }
            ensure!(
                !files.iter().any(|(f, _, _)| *f == ancestor),
                "initramfs: {ancestor} is both a file and a directory"
            );
            if !directories.iter().any(|(d, _)| *d == ancestor) {
                directories.push((ancestor, 0o755));
            }
        }
    }
    // A parent sorts before its children.
    directories.sort();

    let mut cpio = Cpio::default();
    for (dir, mode) in &directories {
        cpio.directory(dir, *mode);
    }
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.char_device("dev/null", 0o666, 1, 3);
    for (path, data, mode) in &files {
        cpio.file(path, *mode, data);
    }
    Ok(cpio.finish())
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;
/// The `newc` format's magic.
const NEWC_MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";

/// An uncompressed `newc` cpio archive, the format the kernel unpacks an initramfs from. Every
/// entry belongs to root and has time stamp 0, so the same input makes the same archive.
#[derive(Debug, Default)]
struct Cpio {
    out: Vec<u8>,
    inodes: u32,
}

impl Cpio {
    fn directory(&mut self, path: &str, mode: u32) {
        self.entry(path, S_IFDIR | mode, 2, (0, 0), &[]);
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | mode, 1, (0, 0), data);
    }

    fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | mode, 1, (major, minor), &[]);
    }

    /// The trailer, and the archive.
    fn finish(mut self) -> Vec<u8> {
        self.header(0, TRAILER, 0, 0, (0, 0), 0);
        self.out
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.inodes += 1;
        let ino = self.inodes;
        self.header(ino, name, mode, nlink, rdev, data.len() as u32);
        self.out.extend_from_slice(data);
        self.pad();
    }

    /// The 110-byte header (magic and 13 fields of 8 hex digits), the name with its NUL, padded
    /// to a multiple of 4.
    fn header(&mut self, ino: u32, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), size: u32) {
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(NEWC_MAGIC);
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back from a `newc` archive.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Entry {
        name: String,
        ino: u32,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: Vec<u8>,
    }

    /// Reads a `newc` archive back, checking its framing; stops at the trailer.
    fn parse_cpio(archive: &[u8]) -> Result<Vec<Entry>> {
        let mut at = 0;
        let mut entries = Vec::new();
        loop {
            let header = archive.get(at..at + 110).context("truncated header")?;
            ensure!(at % 4 == 0, "entry at {at} is not aligned");
            ensure!(&header[..6] == NEWC_MAGIC, "bad magic at {at}");
            let field = |i: usize| -> Result<u32> {
                let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])?;
                ensure!(
                    hex.chars().all(|c| c.is_ascii_hexdigit()),
                    "field {i} {hex:?}"
                );
                Ok(u32::from_str_radix(hex, 16)?)
            };
            let (ino, mode, nlink, size) = (field(0)?, field(1)?, field(4)?, field(6)? as usize);
            ensure!(field(2)? == 0 && field(3)? == 0 && field(5)? == 0 && field(12)? == 0);
            let namesize = field(11)? as usize;
            let name = archive
                .get(at + 110..at + 110 + namesize)
                .context("truncated name")?;
            ensure!(name.last() == Some(&0), "name without its NUL");
            let name = std::str::from_utf8(&name[..namesize - 1])?.to_string();
            let data_at = (at + 110 + namesize).next_multiple_of(4);
            ensure!(
                archive[at + 110 + namesize..data_at]
                    .iter()
                    .all(|&b| b == 0),
                "name padding is not zero"
            );
            let data = archive
                .get(data_at..data_at + size)
                .context("truncated data")?
                .to_vec();
            at = (data_at + size).next_multiple_of(4);
            ensure!(
                archive[data_at + size..at].iter().all(|&b| b == 0),
                "data padding is not zero"
            );
            if name == TRAILER {
                ensure!(at == archive.len(), "bytes after the trailer");
                return Ok(entries);
            }
            entries.push(Entry {
                name,
                ino,
                mode,
                nlink,
                rdev: (field(9)?, field(10)?),
                data,
            });
        }
    }

    #[test]
    fn newc_framing() {
        let mut cpio = Cpio::default();
        cpio.directory("a", 0o755);
        cpio.file("a/bc", 0o644, b"hello");
        cpio.char_device("a/tty", 0o600, 4, 64);
        let archive = cpio.finish();
        // The first header, field by field.
        let first = std::str::from_utf8(&archive[..110]).unwrap();
        let fields = [
            "00000001", // ino
            "000041ed", // mode: directory, 0755
            "00000000", // uid
            "00000000", // gid
            "00000002", // nlink
            "00000000", // mtime
            "00000000", // filesize
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "00000002", // namesize: "a" and its NUL
            "00000000", // check
        ];
        assert_eq!(first, format!("070701{}", fields.concat()));
        // 110 + "a\0" = 112: a multiple of 4 already.
        assert_eq!(&archive[110..112], b"a\0");
        assert_eq!(&archive[112..118], b"070701");
        // 110 + "a/bc\0" = 115: one NUL of padding; then 5 bytes of data and 3 of padding.
        let data_at = 112 + 110 + 5 + 1;
        assert_eq!(&archive[data_at..data_at + 8], b"hello\0\0\0");
        assert_eq!(archive.len() % 4, 0);
        let tail = String::from_utf8_lossy(&archive[archive.len() - 124..]);
        assert!(tail.contains("TRAILER!!!\0"), "{tail}");
        let entries = parse_cpio(&archive).unwrap();
        assert_eq!(
            entries,
            vec![
                Entry {
                    name: "a".into(),
                    ino: 1,
                    mode: 0o040_755,
                    nlink: 2,
                    rdev: (0, 0),
                    data: vec![]
                },
                Entry {
                    name: "a/bc".into(),
                    ino: 2,
                    mode: 0o100_644,
                    nlink: 1,
                    rdev: (0, 0),
                    data: b"hello".to_vec()
                },
                Entry {
                    name: "a/tty".into(),
                    ino: 3,
                    mode: 0o020_600,
                    nlink: 1,
                    rdev: (4, 64),
                    data: vec![]
                },
            ]
        );
        // Every name length modulo 4, data lengths 0 to 4.
        let mut cpio = Cpio::default();
        for n in 1..=8 {
            cpio.file(&"x".repeat(n), 0o600, &b"abcd"[..n % 5]);
        }
        let entries = parse_cpio(&cpio.finish()).unwrap();
        assert_eq!(entries.len(), 8);
        assert_eq!(entries[6].data, b"ab");
    }

    #[test]
    fn initramfs_holds_busybox_init_devices_and_extras() {
        let extras = vec![
            ("/usr/local/bin/tool".to_string(), b"#!tool".to_vec(), 0o755),
            ("etc/motd".to_string(), b"hi\n".to_vec(), 0o644),
        ];
        let archive = initramfs(b"\x7fELF busybox", &extras).unwrap();
        let entries = parse_cpio(&archive).unwrap();
        let find = |name: &str| {
            entries
                .iter()
                .find(|e| e.name == name)
                .unwrap_or_else(|| panic!("no {name} in {entries:#?}"))
        };
        for (dir, mode) in DIRECTORIES {
            assert_eq!(find(dir).mode, S_IFDIR | mode, "{dir}");
        }
        for dir in ["usr/local", "usr/local/bin"] {
            assert_eq!(find(dir).mode, S_IFDIR | 0o755);
        }
        assert_eq!(
            (find("dev/console").mode, find("dev/console").rdev),
            (S_IFCHR | 0o600, (5, 1))
        );
        assert_eq!(
            (find("dev/null").mode, find("dev/null").rdev),
            (S_IFCHR | 0o666, (1, 3))
        );
        assert_eq!(find("bin/busybox").data, b"\x7fELF busybox");
        assert_eq!(find("bin/busybox").mode, S_IFREG | 0o755);
        let init = find("init");
        assert_eq!(init.mode, S_IFREG | 0o755);
        assert!(init.data.starts_with(b"#!/bin/busybox sh\n"));
        assert_eq!(find("usr/local/bin/tool").data, b"#!tool");
        assert_eq!(find("etc/motd").mode, S_IFREG | 0o644);
        // Every directory comes before what it holds; inode numbers are distinct.
        for (i, e) in entries.iter().enumerate() {
            if let Some(parent) = Path::new(&e.name).parent().and_then(|p| p.to_str())
                && !parent.is_empty()
            {
                let p = entries.iter().position(|d| d.name == parent).unwrap();
                assert!(p < i, "{} before its directory", e.name);
            }
        }
        let inodes: BTreeSet<u32> = entries.iter().map(|e| e.ino).collect();
        assert_eq!(inodes.len(), entries.len());
        // The same input makes the same archive.
        assert_eq!(initramfs(b"\x7fELF busybox", &extras).unwrap(), archive);
    }

    #[test]
    fn initramfs_rejects_bad_extras() {
        for path in [
            "",
            "/",
            "a/../b",
            "./a",
            "a//b",
            "init",
            "bin/busybox",
            "dev/null",
            "tmp",
        ] {
            let extras = vec![(path.to_string(), vec![], 0o644)];
            assert!(initramfs(b"bb", &extras).is_err(), "{path:?}");
        }
        let twice = vec![
            ("a".to_string(), vec![], 0o644),
            ("/a".to_string(), vec![], 0o644),
        ];
        assert!(initramfs(b"bb", &twice).is_err());
        let file_and_dir = vec![
            ("a".to_string(), vec![], 0o644),
            ("a/b".to_string(), vec![], 0o644),
        ];
        assert!(initramfs(b"bb", &file_and_dir).is_err());
        let not_permissions = vec![("x".to_string(), vec![], 0o100_644)];
        assert!(initramfs(b"bb", &not_permissions).is_err());
    }

    #[test]
    fn init_prints_what_the_tests_match() {
        for line in [
            "echo \"bulkhead-linux: init reached\"",
            "echo \"bulkhead-linux: kernel $(uname -r)\"",
            "echo \"bulkhead-linux: cpus online $(cat /sys/devices/system/cpu/online) count ",
            "echo \"bulkhead-linux: memtotal_kb ",
            "echo \"bulkhead-linux: uptime $uptime\"",
            "echo \"bulkhead-linux: powering off\"",
            "echo \"bulkhead-linux: shell on console\"",
            "*\" bulkhead.init=poweroff \"*)",
            "*\" bulkhead.init=reboot \"*)",
            "*\" bulkhead.init=panic \"*)",
            "*\" bulkhead.init=channels \"*)",
            "*\" bulkhead.init=hostile \"*)",
            "*\" bulkhead.init=hang \"*)",
            "*\" bulkhead.init=hotplug \"*)",
            "*\" bulkhead.init=watchdog-hog \"*)",
            "*\" bulkhead.init=hostile-loop \"*)",
            "*\" bulkhead.init=load \"*)",
            "echo \"bulkhead-linux: load running on $n CPUs\"",
            "echo \"bulkhead-linux: halting\"",
            "bulkhead-hostile all",
            "echo \"bulkhead-linux: hostile exit status $?\"",
            "bulkhead ping --to commands --from telemetry -n 200",
            "echo \"bulkhead-linux: ping exit status $?\"",
            "bulkhead rt -n 2 --histogram --timeout-ms 5000",
            "echo \"bulkhead-linux: rt exit status $?\"",
            "insmod /lib/modules/uio_pci_generic.ko",
            "echo \"bulkhead-linux: channel device ${d##*/} bound, $(ls \"$d/uio\")\"",
            "echo \"bulkhead-linux: blocked receive woke, exit status $? got $(cat /tmp/woken)\"",
            "echo \"bulkhead-linux: received them, exit status $?\"",
            "echo \"bulkhead-linux: sent ${more:-?} more until full\"",
            "echo \"bulkhead-linux: blocked send woke, exit status $?\"",
            "bulkhead log rt -n 40 --timeout-ms 30000",
            "bulkhead log hypervisor -n 40 --timeout-ms 30000",
            "echo \"bulkhead-linux: log exit status $?\"",
            "sed 's/^/bulkhead-linux: rt-log: /'",
            "sed 's/^/bulkhead-linux: hv-log: /'",
            "echo c > /proc/sysrq-trigger",
            "setsid cttyhack sh",
        ] {
            assert!(INIT.contains(line), "{line}");
        }
        // Every message goes out with the prefix.
        for line in INIT
            .lines()
            .filter(|l| l.trim_start().starts_with("echo \""))
        {
            assert!(
                line.trim_start().starts_with("echo \"bulkhead-linux: "),
                "{line}"
            );
        }
    }

    /// A bzImage-shaped image: `setup_sects` (as written in the header), then `payload` at
    /// `offset` into the protected-mode part.
    fn synthetic_bzimage(setup_sects: u8, version: u16, offset: u32, payload: &[u8]) -> Vec<u8> {
        let sects = if setup_sects == 0 {
            4
        } else {
            usize::from(setup_sects)
        };
        let protected_mode = (sects + 1) * 512;
        let mut image = vec![0u8; protected_mode + offset as usize + payload.len()];
        image[0x1f1] = setup_sects;
        image[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&offset.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let at = protected_mode + offset as usize;
        image[at..].copy_from_slice(payload);
        image
    }

    #[test]
    fn setup_header_locates_the_payload() {
        let xz = b"\xfd7zXZ\x00stream....\x10\x20\x30\x40";
        let image = synthetic_bzimage(27, 0x020f, 0x3b0, xz);
        let payload = bzimage_payload(&image).unwrap();
        assert_eq!(payload.compression, Compression::Xz);
        // The size trailer is cut off.
        assert_eq!(payload.data, &xz[..xz.len() - 4]);
        assert_eq!(&image[28 * 512 + 0x3b0..][..6], b"\xfd7zXZ\x00");

        // setup_sects 0 means 4; gzip carries no trailer.
        let gz = b"\x1f\x8b\x08\x00 gzip data";
        let image = synthetic_bzimage(0, 0x0208, 0x10, gz);
        let payload = bzimage_payload(&image).unwrap();
        assert_eq!(payload.compression, Compression::Gzip);
        assert_eq!(payload.data, gz);
        assert_eq!(&image[5 * 512 + 0x10..][..2], b"\x1f\x8b");
    }

    #[test]
    fn setup_header_problems_are_named() {
        let err = |image: &[u8]| bzimage_payload(image).unwrap_err().to_string();
        assert!(err(&[0u8; 0x100]).contains("too short"));
        let mut image = synthetic_bzimage(4, 0x020f, 0, b"\xfd7zXZ\x00....");
        image[0x202] = b'X';
        assert!(err(&image).contains("HdrS"));
        let image = synthetic_bzimage(4, 0x0206, 0, b"\xfd7zXZ\x00....");
        assert!(err(&image).contains("2.06"), "{}", err(&image));
        let mut image = synthetic_bzimage(4, 0x020f, 0, b"\xfd7zXZ\x00....");
        image[0x24c..0x250].copy_from_slice(&0x1000u32.to_le_bytes());
        assert!(err(&image).contains("past the end"));
        let mut image = synthetic_bzimage(4, 0x020f, 0, b"\xfd7zXZ\x00....");
        image[0x248..0x250].copy_from_slice(&[0xff; 8]);
        assert!(bzimage_payload(&image).is_err());
        let image = synthetic_bzimage(4, 0x020f, 0, b"\x00\x01\x02\x03what");
        assert!(err(&image).contains("unknown payload compression"));
    }

    #[test]
    fn payload_magics() {
        let cases: [(&[u8], Compression); 8] = [
            (b"\x1f\x8b\x08", Compression::Gzip),
            (b"\xfd7zXZ\x00\x00", Compression::Xz),
            (b"\x28\xb5\x2f\xfd\x00", Compression::Zstd),
            (b"\x5d\x00\x00\x80\x00", Compression::Lzma),
            (b"\x02\x21\x4c\x18", Compression::Lz4),
            (b"BZh91AY", Compression::Bzip2),
            (b"\x89LZO\x00", Compression::Lzo),
            (b"\x7fELF\x02\x01", Compression::None),
        ];
        for (data, want) in cases {
            assert_eq!(Compression::detect(data), Some(want), "{}", want.name());
            assert_eq!(want.tool().is_some(), want != Compression::None);
        }
        assert_eq!(Compression::detect(b"\xfd7zXZ\x01"), None);
        assert_eq!(Compression::detect(b"\x1f"), None);
        assert_eq!(Compression::detect(b""), None);
    }

    /// The whole path through a real compressor, where the host has it: an ELF-looking blob,
    /// compressed the way the kernel's build does it (with the size trailer), inside a
    /// synthetic bzImage, comes out as it went in.
    #[test]
    fn decompresses_with_the_command_line_tools() {
        let dir = std::env::temp_dir().join(format!("bulkhead-xtask-guest-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut elf = b"\x7fELF\x02\x01\x01\x00".to_vec();
        elf.extend((0..100_000u32).map(|i| (i * 7 % 251) as u8));
        for (program, args, trailer) in [
            ("xz", &["--check=crc32", "-c"][..], true),
            ("gzip", &["-c", "-9"][..], false),
        ] {
            let raw = dir.join("vmlinux.bin");
            fs::write(&raw, &elf).unwrap();
            let Ok(out) = Command::new(program).args(args).arg(&raw).output() else {
                eprintln!("{program} is not installed; skipped");
                continue;
            };
            assert!(out.status.success());
            let mut payload = out.stdout;
            if trailer {
                payload.extend((elf.len() as u32).to_le_bytes());
            }
            let bzimage = dir.join(format!("bzImage-{program}"));
            fs::write(&bzimage, synthetic_bzimage(30, 0x020f, 0x2000, &payload)).unwrap();
            let vmlinux = dir.join(format!("vmlinux-{program}"));
            decompress_bzimage(&bzimage, &vmlinux).unwrap();
            assert_eq!(fs::read(&vmlinux).unwrap(), elf, "{program}");
            assert!(!tmp_name(&vmlinux).exists());
        }
        // Not an ELF inside: refused, nothing written.
        let bzimage = dir.join("bzImage-bad");
        fs::write(
            &bzimage,
            synthetic_bzimage(30, 0x020f, 0, b"\x7fELF\x01 32-bit"),
        )
        .unwrap();
        let bad = dir.join("vmlinux-bad");
        assert!(decompress_bzimage(&bzimage, &bad).is_err());
        assert!(!bad.exists() && !tmp_name(&bad).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn apt_answers_are_read() {
        let depends = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            kernel_dependency(depends).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        let alternatives = "linux-image-amd64\n |Depends: linux-image-6.12.9-amd64\n    \
                            Depends: firmware-linux-free\n";
        assert_eq!(
            kernel_dependency(alternatives).as_deref(),
            Some("linux-image-6.12.9-amd64")
        );
        assert_eq!(kernel_dependency("linux-image-amd64\n"), None);
        let policy = "linux-image-6.1.0-56-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-2\n  \
                      Version table:\n     6.1.192-2 500\n        500 http://deb.debian.org/debian \
                      bookworm/main amd64 Packages\nbusybox-static:\n  Installed: (none)\n  \
                      Candidate: 1:1.35.0-4+deb12u1+b1\n  Version table:\n     \
                      1:1.35.0-4+deb12u1+b1 500\nnothing-here:\n  Installed: (none)\n  \
                      Candidate: (none)\n";
        assert_eq!(
            candidate_versions(policy),
            vec![
                (
                    "linux-image-6.1.0-56-amd64".to_string(),
                    "6.1.192-2".to_string()
                ),
                (
                    BUSYBOX_PACKAGE.to_string(),
                    "1:1.35.0-4+deb12u1+b1".to_string()
                ),
            ]
        );
        assert!(candidate_versions("").is_empty());
        assert!(Source::Kernel.family("linux-image-6.1.0-56-amd64"));
        assert!(!Source::Kernel.family(KERNEL_META));
        assert!(!Source::Kernel.family(BUSYBOX_PACKAGE));
        assert!(Source::Busybox.family(BUSYBOX_PACKAGE));
    }

    #[test]
    fn names_and_stamps() {
        assert!(plain_name("6.1.0-56-amd64"));
        assert!(!plain_name("6.1.0+x"));
        assert!(!plain_name("../x"));
        assert!(!plain_name(""));
        assert_eq!(
            tmp_name(Path::new("/t/vmlinux-6.1.0-56-amd64")),
            Path::new(&format!(
                "/t/vmlinux-6.1.0-56-amd64.{}.tmp",
                std::process::id()
            ))
        );
        let dir = std::env::temp_dir().join(format!("bulkhead-xtask-stamp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let stamp = dir.join("k.stamp");
        assert_eq!(stamp_matches(&stamp, "p 1"), None);
        fs::write(&stamp, "p 1\n6.1.0-56-amd64\n").unwrap();
        assert_eq!(
            stamp_matches(&stamp, "p 1"),
            Some(vec!["p 1".to_string(), "6.1.0-56-amd64".to_string()])
        );
        assert_eq!(stamp_matches(&stamp, "p 2"), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
