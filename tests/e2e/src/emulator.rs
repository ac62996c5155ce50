//! The emulators we boot images in, and exactly how each one is started.
//!
//! - **Bochs** is the VT-x test bed. Each run gets its own `bochsrc` (written into the run
//!   directory, so a failed run can be repeated by hand) with `clock: sync=none` and a fixed
//!   `ips`: emulated time follows the instruction count, so runs are deterministic (a run
//!   with a NIC peer, whose other end lives in real time, gets `sync=slowdown`: the emulated
//!   clock never runs ahead of real time). Debian's
//!   Bochs stops at its debugger prompt, so it gets `-rc` with `c` and `quit`; its `term` display
//!   needs a terminal, so it runs on a pseudo-terminal of its own (the harness drains it into
//!   `term.log`), in a session of its own. The screen terminal Bochs opens besides it is drained
//!   too, or Bochs blocks once a guest has written a few KiB to its VGA console.
//! - **QEMU TCG** has no VT-x: the hypervisor must stop with its clear message there.
//! - **QEMU with KVM** (`-cpu host,+vmx`) where the host offers nested VT-x.
//!
//! QEMU boots with SeaBIOS (BIOS) or with OVMF (UEFI, Debian's `ovmf`, [`Firmware`]); the ISO
//! boots either way. Bochs has its BIOS only.
//!
//! Every machine has COM1 and COM2, written to files in the run directory. A run may wire
//! ports to the harness instead ([`Peers`]): COM2, Linux's console, for a console a person
//! types into (the harness then writes `com2.log` itself), and a third port, COM3 (I/O ports
//! 0x3e8 to 0x3ef, ISA IRQ 4 as in both emulators). Such a port's other end is a TCP connection
//! the emulator opens as a client, at start-up, to an address the harness already listens on
//! ([`crate::SerialPeer`]): Bochs gets `comN: enabled=1, mode=socket-client,
//! dev=127.0.0.1:PORT`, QEMU `-serial tcp:127.0.0.1:PORT` in that port's place.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::process::{GroupChild, open_pty};

/// The file in the run directory that the emulator writes COM1 to (the hypervisor and the RT
/// kernel).
pub(crate) const COM1_LOG: &str = "serial.log";
/// The file in the run directory that the emulator writes COM2 to (Linux's console).
pub(crate) const COM2_LOG: &str = "com2.log";

/// OVMF, the UEFI firmware QEMU boots with [`Firmware::Uefi`] (Debian's `ovmf`): code and
/// variable store in one image, given with `-bios` (variables do not persist between runs).
pub const OVMF_FIRMWARE: &str = "/usr/share/ovmf/OVMF.fd";

/// Instructions per emulated second for Bochs unless told otherwise.
pub const DEFAULT_BOCHS_IPS: u32 = 50_000_000;

/// Bochs' BIOS and VGA BIOS, where Debian's `bochsbios` and `vgabios` install them.
const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
const VGA_BIOS: &str = "/usr/share/vgabios/vgabios.bin";

/// Bochs will not allocate more than this much host memory for the guest (`memory: host=`).
const BOCHS_MAX_HOST_MIB: u32 = 2048;

/// Where nested VT-x is announced by the host kernel.
const KVM_INTEL_NESTED: &str = "/sys/module/kvm_intel/parameters/nested";

/// How much of Bochs' terminal output is kept in `term.log` (the rest is read and dropped).
const TERM_LOG_CAP: u64 = 1 << 20;

/// What of the machine is wired to a peer of the harness: serial ports to a TCP peer instead of
/// a file, and a NIC to a UDP peer; the default wires none (COM1 and COM2 to their files, no
/// COM3, no NIC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peers {
    /// COM2 (Linux's console) connects here instead of writing `com2.log`.
    pub com2: Option<SocketAddrV4>,
    /// A third port, COM3, connects here.
    pub com3: Option<SocketAddrV4>,
    /// An Intel 8254x NIC ([`NIC_MAC`], function 00:03.0, whose INTA the firmware routes to
    /// IRQ 11: Bochs' `e1000` in PCI slot 2, QEMU's `-nic ...,model=e1000` in place of its
    /// default NIC) on this local UDP port: the emulator receives frames there and sends each
    /// to the next port up, one frame per datagram. Bochs' clock then never runs ahead of real
    /// time (`clock: sync=slowdown`), where the peer lives; QEMU's follows real time anyway.
    pub nic: Option<u16>,
}

/// What the machine boots from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot<'a> {
    /// A CD-ROM image (the project's GRUB ISO), the first IDE channel's master.
    Cdrom(&'a Path),
    /// A raw hard-disk image there instead (a disk with its own boot loader). For Bochs its
    /// size is a multiple of 16 heads * 63 sectors * 512 bytes, so Bochs infers the geometry.
    Disk(&'a Path),
}

impl Boot<'_> {
    /// The image.
    pub fn path(&self) -> &Path {
        match self {
            Boot::Cdrom(path) | Boot::Disk(path) => path,
        }
    }
}

/// The MAC address of the NIC a run with a NIC peer has.
pub const NIC_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// The firmware a QEMU machine boots with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's SeaBIOS.
    #[default]
    Bios,
    /// OVMF ([`OVMF_FIRMWARE`]).
    Uefi,
}

/// An emulator and the machine it emulates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Emulator {
    /// Bochs with `corei7_icelake_u` CPUs (VT-x with EPT, VPID, unrestricted guest, ...).
    Bochs {
        /// Emulated CPUs.
        cpus: u32,
        /// Guest RAM in MiB.
        memory_mib: u32,
        /// Emulated instructions per emulated second (a signed 32-bit number for Bochs).
        ips: u32,
    },
    /// QEMU's TCG with `-cpu max`: no VT-x.
    QemuTcg {
        /// Emulated CPUs.
        cpus: u32,
        /// Guest RAM in MiB.
        memory_mib: u32,
        /// BIOS or UEFI.
        firmware: Firmware,
    },
    /// QEMU with KVM and the host CPU plus VMX (needs nested VT-x on the host).
    QemuKvm {
        /// Virtual CPUs.
        cpus: u32,
        /// Guest RAM in MiB.
        memory_mib: u32,
        /// BIOS or UEFI.
        firmware: Firmware,
    },
}

/// Whether `/dev/kvm` exists and the host's `kvm_intel` module offers nested VT-x.
pub fn kvm_nested_available() -> bool {
    Path::new("/dev/kvm").exists()
        && fs::read_to_string(KVM_INTEL_NESTED)
            .map(|v| matches!(v.trim(), "Y" | "y" | "1"))
            .unwrap_or(false)
}

impl Emulator {
    /// The default emulator for a machine: QEMU with KVM where nested VT-x is available (much
    /// faster), Bochs otherwise.
    pub fn default_for(cpus: u32, memory_mib: u32) -> Self {
        if kvm_nested_available() {
            Self::QemuKvm {
                cpus,
                memory_mib,
                firmware: Firmware::Bios,
            }
        } else {
            Self::Bochs {
                cpus,
                memory_mib,
                ips: DEFAULT_BOCHS_IPS,
            }
        }
    }

    /// A short name for messages and progress lines.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bochs { .. } => "bochs",
            Self::QemuTcg { .. } => "qemu",
            Self::QemuKvm { .. } => "qemu-kvm",
        }
    }

    /// Emulated CPUs.
    pub fn cpus(&self) -> u32 {
        match *self {
            Self::Bochs { cpus, .. } | Self::QemuTcg { cpus, .. } | Self::QemuKvm { cpus, .. } => {
                cpus
            }
        }
    }

    /// Guest RAM in MiB.
    pub fn memory_mib(&self) -> u32 {
        match *self {
            Self::Bochs { memory_mib, .. }
            | Self::QemuTcg { memory_mib, .. }
            | Self::QemuKvm { memory_mib, .. } => memory_mib,
        }
    }

    /// The machine's firmware (Bochs: always its BIOS).
    pub fn firmware(&self) -> Firmware {
        match *self {
            Self::Bochs { .. } => Firmware::Bios,
            Self::QemuTcg { firmware, .. } | Self::QemuKvm { firmware, .. } => firmware,
        }
    }

    /// The name of the emulator's own log in the run directory.
    pub fn log_name(&self) -> &'static str {
        match self {
            Self::Bochs { .. } => "bochs.log",
            Self::QemuTcg { .. } | Self::QemuKvm { .. } => "qemu.log",
        }
    }

    /// Checks the machine's numbers against what the emulator accepts.
    pub fn validate(&self) -> Result<()> {
        let cpus = self.cpus();
        if !(1..=255).contains(&cpus) {
            bail!("{self}: {cpus} CPUs is out of range (1 to 255)");
        }
        let memory = self.memory_mib();
        if !(32..=1 << 20).contains(&memory) {
            bail!("{self}: {memory} MiB of RAM is out of range (32 MiB to 1 TiB)");
        }
        if self.firmware() == Firmware::Uefi && !Path::new(OVMF_FIRMWARE).is_file() {
            bail!(
                "{self}: no UEFI firmware at {OVMF_FIRMWARE} (Debian's `ovmf`; install it with \
                 `cargo xtask deps`)"
            );
        }
        if let Self::Bochs { ips, .. } = *self
            && (ips == 0 || i32::try_from(ips).is_err())
        {
            bail!(
                "bochs: ips {ips} is out of range (1 to {}: Bochs reads a signed 32-bit number)",
                i32::MAX
            );
        }
        Ok(())
    }

    /// The `bochsrc` for booting `boot` with its serial ports (COM1 and COM2) and log in
    /// `run_dir` (Bochs only).
    pub fn bochsrc(&self, boot: Boot<'_>, run_dir: &Path) -> Option<String> {
        self.bochsrc_with_peers(boot, run_dir, Peers::default())
    }

    /// [`Emulator::bochsrc`] with the ports `peers` names connected to their addresses as TCP
    /// clients (`comN: enabled=1, mode=socket-client, dev=<address>`): COM2 in place of its
    /// file, COM3 as a line after COM2's. Without peers it is [`Emulator::bochsrc`]'s text
    /// exactly.
    ///
    /// Bochs connects while it sets up its devices; if nothing listens there it logs
    /// `comN: connect() failed` and runs with that port unconnected.
    pub fn bochsrc_with_peers(
        &self,
        boot: Boot<'_>,
        run_dir: &Path,
        peers: Peers,
    ) -> Option<String> {
        let Self::Bochs {
            cpus,
            memory_mib,
            ips,
        } = *self
        else {
            return None;
        };
        let host_mib = memory_mib.min(BOCHS_MAX_HOST_MIB);
        let serial = run_dir.join(COM1_LOG);
        let socket = |addr| format!("mode=socket-client, dev={addr}");
        let com2 = peers
            .com2
            .map(socket)
            .unwrap_or_else(|| format!("mode=file, dev={}", run_dir.join(COM2_LOG).display()));
        let com3 = peers
            .com3
            .map(|addr| format!("com3: enabled=1, {}\n", socket(addr)))
            .unwrap_or_default();
        // A NIC's wire leads to a peer that runs in real time: the emulated clock may not
        // run ahead of it (`slowdown` holds the emulation back while it would; it never
        // speeds it up, so a busy machine keeps its instruction-count time).
        let (pci_slots, nic, sync) = match peers.nic {
            Some(port) => {
                let m = NIC_MAC;
                (
                    ", slot2=e1000",
                    format!(
                        "e1000: enabled=1, mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, ethmod=socket, ethdev={port}\n",
                        m[0], m[1], m[2], m[3], m[4], m[5]
                    ),
                    "slowdown",
                )
            }
            None => ("", String::new(), "none"),
        };
        let log = run_dir.join("bochs.log");
        Some(format!(
            "\
# Generated for one run; `bochs -q -f bochsrc -rc bochs.rc` in this directory repeats it.
memory: guest={memory_mib}, host={host_mib}
cpu: model=corei7_icelake_u, count={cpus}, ips={ips}, reset_on_triple_fault=0
romimage: file={BOCHS_BIOS}
vgaromimage: file={VGA_BIOS}
pci: enabled=1, chipset=i440fx{pci_slots}
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
{medium}
clock: sync={sync}, time0=946681200
com1: enabled=1, mode=file, dev={serial}
com2: enabled=1, {com2}
{com3}{nic}display_library: term
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
log: {log}
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
magic_break: enabled=0
",
            medium = match boot {
                Boot::Cdrom(iso) => format!(
                    "ata0-master: type=cdrom, path={}, status=inserted\nboot: cdrom",
                    iso.display()
                ),
                Boot::Disk(disk) => format!(
                    "ata0-master: type=disk, path={}, mode=flat\nboot: disk",
                    disk.display()
                ),
            },
            serial = serial.display(),
            log = log.display(),
        ))
    }

    /// The QEMU command line for booting `boot` with its serial ports (COM1 and COM2) in
    /// `run_dir` (QEMU only).
    pub fn qemu_args(&self, boot: Boot<'_>, run_dir: &Path) -> Option<Vec<String>> {
        self.qemu_args_with_peers(boot, run_dir, Peers::default())
    }

    /// [`Emulator::qemu_args`] with the ports `peers` names connected to their addresses as
    /// TCP clients (`-serial tcp:<address>`): COM2 in place of its file, COM3 as a third
    /// `-serial`. Without peers they are [`Emulator::qemu_args`]' exactly.
    ///
    /// QEMU connects before the machine starts and exits if nothing listens there.
    pub fn qemu_args_with_peers(
        &self,
        boot: Boot<'_>,
        run_dir: &Path,
        peers: Peers,
    ) -> Option<Vec<String>> {
        let (cpus, memory_mib, kvm, firmware) = match *self {
            Self::Bochs { .. } => return None,
            Self::QemuTcg {
                cpus,
                memory_mib,
                firmware,
            } => (cpus, memory_mib, false, firmware),
            Self::QemuKvm {
                cpus,
                memory_mib,
                firmware,
            } => (cpus, memory_mib, true, firmware),
        };
        let mut args: Vec<String> = Vec::new();
        args.extend(["-machine", "pc"].map(String::from));
        if firmware == Firmware::Uefi {
            args.extend(["-bios", OVMF_FIRMWARE].map(String::from));
        }
        if kvm {
            args.extend(["-enable-kvm", "-cpu", "host,+vmx"].map(String::from));
        } else {
            args.extend(["-cpu", "max"].map(String::from));
        }
        args.extend([
            "-smp".into(),
            cpus.to_string(),
            "-m".into(),
            memory_mib.to_string(),
        ]);
        args.extend(match boot {
            Boot::Cdrom(iso) => ["-cdrom".into(), iso.display().to_string()],
            Boot::Disk(disk) => [
                "-drive".into(),
                format!("file={},format=raw,if=ide", disk.display()),
            ],
        });
        args.extend([
            "-display".into(),
            "none".into(),
            "-serial".into(),
            format!("file:{}", run_dir.join(COM1_LOG).display()),
            "-serial".into(),
            match peers.com2 {
                Some(addr) => format!("tcp:{addr}"),
                None => format!("file:{}", run_dir.join(COM2_LOG).display()),
            },
        ]);
        if let Some(addr) = peers.com3 {
            // The third `-serial` is the third ISA UART: COM3.
            args.extend(["-serial".into(), format!("tcp:{addr}")]);
        }
        if let Some(port) = peers.nic {
            // In place of the machine's default NIC (also an e1000, at 00:03.0, where this one
            // goes too: 00:02.0 is the VGA); SeaBIOS routes its INTA to IRQ 11 as Bochs' BIOS
            // does. QEMU's UDP socket wire is Bochs' too: it receives on `localaddr`, sends to
            // `udp`, one frame per datagram.
            let m = NIC_MAC;
            args.extend([
                "-nic".into(),
                format!(
                    "socket,udp=127.0.0.1:{},localaddr=127.0.0.1:{port},model=e1000,mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    u32::from(port) + 1,
                    m[0], m[1], m[2], m[3], m[4], m[5]
                ),
            ]);
        }
        args.extend([
            "-no-reboot".into(),
            "-monitor".into(),
            "none".into(),
            "-device".into(),
            "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
        ]);
        Some(args)
    }

    /// Starts the emulator on `boot`, with every file it writes in `run_dir`, and with the
    /// ports `peers` names connected to their addresses (something must listen there already).
    pub(crate) fn spawn(&self, boot: Boot<'_>, run_dir: &Path, peers: Peers) -> Result<GroupChild> {
        self.validate()?;
        match self {
            Self::Bochs { .. } => self.spawn_bochs(boot, run_dir, peers),
            Self::QemuTcg { .. } | Self::QemuKvm { .. } => self.spawn_qemu(boot, run_dir, peers),
        }
    }

    fn spawn_bochs(&self, boot: Boot<'_>, run_dir: &Path, peers: Peers) -> Result<GroupChild> {
        let bochsrc = run_dir.join("bochsrc");
        let rc = run_dir.join("bochs.rc");
        write(
            &bochsrc,
            self.bochsrc_with_peers(boot, run_dir, peers)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        // Debian's Bochs has its debugger built in and stops at its prompt: continue, and quit
        // when the simulation ends.
        write(&rc, b"c\nquit\n")?;

        let (master, slave) =
            open_pty(25, 80).context("cannot open a pseudo-terminal for Bochs")?;
        let mut command = Command::new("bochs");
        command
            .arg("-q")
            .arg("-f")
            .arg(&bochsrc)
            .arg("-rc")
            .arg(&rc)
            .current_dir(run_dir)
            .env("TERM", "xterm")
            // Not the terminal: Bochs waits up to 1 ms for input on its standard input each
            // time an emulated CPU halts (its "idle hack"), which slows a guest that halts
            // thousands of times a second (the RT kernel's tasks) more than tenfold. On
            // /dev/null that wait ends at once. (Its commands come from `-rc`.)
            .stdin(Stdio::null())
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // Bochs' terminal display catches SIGTERM and carries on; a hang-up ends it at once.
        let child = GroupChild::spawn(&mut command, true, libc::SIGHUP)
            .context("cannot start `bochs` (install it with `cargo xtask deps`)")?;
        // The slave's copies in `command` must go, or the master never sees the end.
        drop(command);
        drain_terminal(master, &run_dir.join("term.log"))?;
        Ok(child)
    }

    fn spawn_qemu(&self, boot: Boot<'_>, run_dir: &Path, peers: Peers) -> Result<GroupChild> {
        let args = self
            .qemu_args_with_peers(boot, run_dir, peers)
            .unwrap_or_default();
        write(&run_dir.join("qemu.args"), args.join(" ").as_bytes())?;
        let log_path = run_dir.join("qemu.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(&args)
            .current_dir(run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        GroupChild::spawn(&mut command, false, libc::SIGTERM)
            .context("cannot start `qemu-system-x86_64` (install it with `cargo xtask deps`)")
    }
}

impl fmt::Display for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Bochs {
                cpus,
                memory_mib,
                ips,
            } => {
                write!(f, "bochs ({cpus} CPUs, {memory_mib} MiB, ips {ips})")
            }
            Self::QemuTcg {
                cpus,
                memory_mib,
                firmware,
            } => {
                write!(f, "qemu TCG ({cpus} CPUs, {memory_mib} MiB{})", firmware.suffix())
            }
            Self::QemuKvm {
                cpus,
                memory_mib,
                firmware,
            } => {
                write!(f, "qemu KVM ({cpus} CPUs, {memory_mib} MiB{})", firmware.suffix())
            }
        }
    }
}

impl Firmware {
    /// How a machine's description names it: nothing for the BIOS everything boots with by
    /// default.
    fn suffix(self) -> &'static str {
        match self {
            Firmware::Bios => "",
            Firmware::Uefi => ", UEFI",
        }
    }
}

/// What Bochs prints on its terminal when its `term` display, built together with its debugger,
/// opens a second pseudo-terminal of its own for the emulated screen.
const SCREEN_TERMINAL_MARK: &str = "Bochs connected to screen \"";

/// Reads everything Bochs writes to its terminal on a thread of its own (a full pty would stop
/// it), keeping the first [`TERM_LOG_CAP`] bytes in `path`. The thread ends when the last
/// holder of the pty's slave side (Bochs) exits.
///
/// Debian's Bochs draws the emulated screen on a second terminal that it opens itself and names
/// in its output; nobody looks at that one, and once its buffer is full (a few KiB of a guest's
/// VGA console) Bochs blocks in `write` and the whole emulation stops. So when the name
/// appears, that terminal is drained as well ([`drain_screen`]).
fn drain_terminal(mut master: File, path: &PathBuf) -> Result<()> {
    let mut log =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::thread::Builder::new()
        .name("bochs-term".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            let mut kept = 0u64;
            // The output up to the screen terminal's name (it comes before the emulation starts).
            let mut head = Vec::new();
            let mut screen_found = false;
            // EIO once the slave side is closed everywhere: that is the end.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let keep = (TERM_LOG_CAP.saturating_sub(kept) as usize).min(n);
                if keep > 0 && log.write_all(&buf[..keep]).is_ok() {
                    kept += keep as u64;
                }
                if !screen_found && head.len() < SCREEN_SEARCH_LIMIT {
                    head.extend_from_slice(&buf[..n]);
                    if let Some(screen) = screen_terminal(&head) {
                        screen_found = true;
                        if let Err(e) = drain_screen(&screen) {
                            let _ = writeln!(log, "\n[harness] {e:#}");
                        }
                    }
                }
            }
        })
        .context("cannot start the thread that reads Bochs' terminal")?;
    Ok(())
}

/// How far into Bochs' terminal output the screen terminal's name is looked for.
const SCREEN_SEARCH_LIMIT: usize = 256 * 1024;

/// The screen terminal Bochs names in `output`, once its whole line is there.
fn screen_terminal(output: &[u8]) -> Option<PathBuf> {
    let text = String::from_utf8_lossy(output);
    let start = text.find(SCREEN_TERMINAL_MARK)? + SCREEN_TERMINAL_MARK.len();
    let len = text[start..].find('"')?;
    let name = &text[start..start + len];
    name.starts_with("/dev/").then(|| PathBuf::from(name))
}

/// Reads and drops everything that arrives on Bochs' screen terminal, on a thread of its own,
/// until Bochs closes it. The terminal is put in raw mode first: no echo to fill the other
/// direction, no line discipline waiting for a newline that a screen update never sends.
fn drain_screen(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    let mut screen = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("cannot open Bochs' screen terminal {}", path.display()))?;
    let fd = screen.as_raw_fd();
    // SAFETY: an all-zero termios is a valid value for tcgetattr to overwrite.
    let mut mode: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `mode` is a termios that tcgetattr and tcsetattr read or write
    // in place; cfmakeraw only changes fields of it.
    let raw_ok = unsafe {
        libc::tcgetattr(fd, &mut mode) == 0 && {
            libc::cfmakeraw(&mut mode);
            libc::tcsetattr(fd, libc::TCSANOW, &mode) == 0
        }
    };
    if !raw_ok {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot put {} in raw mode", path.display()));
    }
    std::thread::Builder::new()
        .name("bochs-screen".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = screen.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        })
        .context("cannot start the thread that reads Bochs' screen terminal")?;
    Ok(())
}

fn write(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_boots_in_place_of_the_cdrom() {
        let disk = Boot::Disk(Path::new("/r/debian.img"));
        let rc = bochs_2cpu().bochsrc(disk, Path::new("/r")).unwrap();
        assert!(rc.contains("ata0-master: type=disk, path=/r/debian.img, mode=flat\nboot: disk\n"));
        assert!(!rc.contains("cdrom"));
        let qemu = Emulator::QemuTcg {
            cpus: 1,
            memory_mib: 256,
            firmware: Firmware::Bios,
        };
        let args = qemu.qemu_args(disk, Path::new("/r")).unwrap();
        assert!(
            args.windows(2)
                .any(|w| w == ["-drive", "file=/r/debian.img,format=raw,if=ide"])
        );
        assert!(!args.iter().any(|a| a == "-cdrom"));
        assert_eq!(disk.path(), Path::new("/r/debian.img"));
    }

    #[test]
    fn bochsrc_has_the_machine_and_the_run_files() {
        let emu = Emulator::Bochs {
            cpus: 4,
            memory_mib: 4096,
            ips: 50_000_000,
        };
        let rc = emu
            .bochsrc(Boot::Cdrom(Path::new("/r/x.iso")), Path::new("/r"))
            .unwrap();
        assert!(rc.contains("memory: guest=4096, host=2048\n"));
        assert!(rc.contains("cpu: model=corei7_icelake_u, count=4, ips=50000000,"));
        assert!(rc.contains("ata0-master: type=cdrom, path=/r/x.iso, status=inserted\n"));
        assert!(rc.contains(
            "com1: enabled=1, mode=file, dev=/r/serial.log\ncom2: enabled=1, mode=file, dev=/r/com2.log\n"
        ));
        assert!(rc.contains("log: /r/bochs.log\n"));
        assert!(rc.contains("clock: sync=none, time0=946681200\n"));
    }

    /// The whole `bochsrc` of a run without COM3, as it was before COM3 could be asked for.
    const BOCHSRC_2CPU: &str = "\
# Generated for one run; `bochs -q -f bochsrc -rc bochs.rc` in this directory repeats it.
memory: guest=1024, host=1024
cpu: model=corei7_icelake_u, count=2, ips=50000000, reset_on_triple_fault=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
pci: enabled=1, chipset=i440fx
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=cdrom, path=/r/x.iso, status=inserted
boot: cdrom
clock: sync=none, time0=946681200
com1: enabled=1, mode=file, dev=/r/serial.log
com2: enabled=1, mode=file, dev=/r/com2.log
display_library: term
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
log: /r/bochs.log
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
magic_break: enabled=0
";

    fn bochs_2cpu() -> Emulator {
        Emulator::Bochs {
            cpus: 2,
            memory_mib: 1024,
            ips: 50_000_000,
        }
    }

    fn com3_at(port: u16) -> Peers {
        Peers {
            com3: Some(SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port)),
            ..Peers::default()
        }
    }

    fn com2_at(port: u16) -> Peers {
        Peers {
            com2: Some(SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port)),
            ..Peers::default()
        }
    }

    #[test]
    fn bochsrc_without_peers_is_unchanged() {
        let emu = bochs_2cpu();
        let (iso, dir) = (Boot::Cdrom(Path::new("/r/x.iso")), Path::new("/r"));
        assert_eq!(emu.bochsrc(iso, dir).unwrap(), BOCHSRC_2CPU);
        assert_eq!(
            emu.bochsrc_with_peers(iso, dir, Peers::default()).unwrap(),
            BOCHSRC_2CPU
        );
        assert!(!BOCHSRC_2CPU.contains("com3"));
    }

    #[test]
    fn bochsrc_with_com3_adds_its_line_after_com2() {
        let emu = bochs_2cpu();
        let rc = emu
            .bochsrc_with_peers(
                Boot::Cdrom(Path::new("/r/x.iso")),
                Path::new("/r"),
                com3_at(40123),
            )
            .unwrap();
        let line = "com3: enabled=1, mode=socket-client, dev=127.0.0.1:40123\n";
        assert_eq!(rc.matches("com3:").count(), 1);
        assert!(
            rc.contains(&format!(
                "com2: enabled=1, mode=file, dev=/r/com2.log\n{line}"
            )),
            "{rc}"
        );
        // Nothing else changes.
        assert_eq!(rc.replacen(line, "", 1), BOCHSRC_2CPU);
        let qemu = Emulator::QemuTcg {
            cpus: 2,
            memory_mib: 1024,
            firmware: Firmware::Bios,
        };
        assert_eq!(
            qemu.bochsrc_with_peers(
                Boot::Cdrom(Path::new("a.iso")),
                Path::new("/r"),
                com3_at(40123)
            ),
            None
        );
    }

    #[test]
    fn bochsrc_with_a_nic_puts_the_e1000_in_slot_2_on_its_port() {
        let peers = Peers {
            nic: Some(40200),
            ..Peers::default()
        };
        let rc = bochs_2cpu()
            .bochsrc_with_peers(Boot::Cdrom(Path::new("/r/x.iso")), Path::new("/r"), peers)
            .unwrap();
        let nic = "e1000: enabled=1, mac=52:54:00:12:34:56, ethmod=socket, ethdev=40200\n";
        assert!(
            rc.contains("pci: enabled=1, chipset=i440fx, slot2=e1000\n"),
            "{rc}"
        );
        assert!(rc.contains(nic), "{rc}");
        // The clock may not run ahead of the peer; nothing else changes.
        assert!(rc.contains("clock: sync=slowdown, "), "{rc}");
        assert_eq!(
            rc.replacen(nic, "", 1)
                .replacen(", slot2=e1000", "", 1)
                .replacen("sync=slowdown", "sync=none", 1),
            BOCHSRC_2CPU
        );
    }

    #[test]
    fn qemu_gets_the_nic_in_place_of_its_default_one() {
        let emu = Emulator::QemuTcg {
            cpus: 1,
            memory_mib: 256,
            firmware: Firmware::Bios,
        };
        let (iso, dir) = (Boot::Cdrom(Path::new("a.iso")), Path::new("/r"));
        let peers = Peers {
            nic: Some(40300),
            ..Peers::default()
        };
        let args = emu.qemu_args_with_peers(iso, dir, peers).unwrap();
        let plain = emu.qemu_args(iso, dir).unwrap();
        let nic = "socket,udp=127.0.0.1:40301,localaddr=127.0.0.1:40300,model=e1000,mac=52:54:00:12:34:56";
        let at = args
            .iter()
            .position(|a| a == nic)
            .expect("the -nic argument");
        assert_eq!(args[at - 1], "-nic");
        let without: Vec<_> = args[..at - 1]
            .iter()
            .chain(&args[at + 1..])
            .cloned()
            .collect();
        assert_eq!(without, plain);
    }

    #[test]
    fn bochsrc_with_com2_replaces_its_file_by_the_socket() {
        let rc = bochs_2cpu()
            .bochsrc_with_peers(
                Boot::Cdrom(Path::new("/r/x.iso")),
                Path::new("/r"),
                com2_at(40124),
            )
            .unwrap();
        let file = "com2: enabled=1, mode=file, dev=/r/com2.log\n";
        let socket = "com2: enabled=1, mode=socket-client, dev=127.0.0.1:40124\n";
        assert!(!rc.contains("com2.log") && !rc.contains("com3"), "{rc}");
        assert_eq!(rc.replacen(socket, file, 1), BOCHSRC_2CPU);
    }

    #[test]
    fn qemu_gets_com3_as_a_third_serial_port_when_asked() {
        let emu = Emulator::QemuKvm {
            cpus: 2,
            memory_mib: 1024,
            firmware: Firmware::Bios,
        };
        let (iso, dir) = (Boot::Cdrom(Path::new("a.iso")), Path::new("/r"));
        let plain = emu.qemu_args(iso, dir).unwrap();
        assert_eq!(
            emu.qemu_args_with_peers(iso, dir, Peers::default())
                .unwrap(),
            plain
        );
        assert_eq!(plain.iter().filter(|a| *a == "-serial").count(), 2);
        let args = emu.qemu_args_with_peers(iso, dir, com3_at(40123)).unwrap();
        assert!(
            args.join(" ").contains(
                "-serial file:/r/serial.log -serial file:/r/com2.log -serial tcp:127.0.0.1:40123 "
            ),
            "{args:?}"
        );
        let mut without = args.clone();
        let at = without
            .iter()
            .position(|a| a == "tcp:127.0.0.1:40123")
            .unwrap();
        without.drain(at - 1..=at);
        assert_eq!(without, plain);
        assert_eq!(
            bochs_2cpu().qemu_args_with_peers(iso, dir, com3_at(40123)),
            None
        );
        // COM2 wired to the harness takes its file's place: still the second `-serial`.
        let args = emu.qemu_args_with_peers(iso, dir, com2_at(40124)).unwrap();
        assert!(
            args.join(" ")
                .contains("-serial file:/r/serial.log -serial tcp:127.0.0.1:40124 -no-reboot"),
            "{args:?}"
        );
    }

    #[test]
    fn ips_must_fit_a_signed_32_bit_number() {
        let ok = Emulator::Bochs {
            cpus: 2,
            memory_mib: 1024,
            ips: i32::MAX as u32,
        };
        ok.validate().unwrap();
        let too_big = Emulator::Bochs {
            cpus: 2,
            memory_mib: 1024,
            ips: i32::MAX as u32 + 1,
        };
        assert!(too_big.validate().is_err());
        let zero = Emulator::Bochs {
            cpus: 2,
            memory_mib: 1024,
            ips: 0,
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn the_screen_terminal_is_found_once_its_line_is_complete() {
        let out = b"========\nBochs connected to screen \"/dev/pts/7\"\r\nNext at t=0\n";
        assert_eq!(screen_terminal(out), Some(PathBuf::from("/dev/pts/7")));
        assert_eq!(screen_terminal(&out[..36]), None, "name cut short");
        assert_eq!(screen_terminal(b"Bochs connected to screen \"tty\""), None);
        assert_eq!(screen_terminal(b"no screen here"), None);
    }

    #[test]
    fn qemu_kvm_adds_vmx_and_tcg_does_not() {
        let kvm = Emulator::QemuKvm {
            cpus: 2,
            memory_mib: 1024,
            firmware: Firmware::Bios,
        };
        let args = kvm
            .qemu_args(Boot::Cdrom(Path::new("a.iso")), Path::new("/r"))
            .unwrap()
            .join(" ");
        assert!(args.contains("-enable-kvm -cpu host,+vmx"));
        assert!(args.contains("-serial file:/r/serial.log -serial file:/r/com2.log"));
        let tcg = Emulator::QemuTcg {
            cpus: 2,
            memory_mib: 1024,
            firmware: Firmware::Bios,
        };
        let args = tcg
            .qemu_args(Boot::Cdrom(Path::new("a.iso")), Path::new("/r"))
            .unwrap()
            .join(" ");
        assert!(args.contains("-cpu max") && !args.contains("kvm"));
        assert!(args.contains("-no-reboot") && args.contains("-monitor none"));
        assert!(!args.contains("-bios"), "SeaBIOS is QEMU's own default");
    }

    #[test]
    fn qemu_boots_ovmf_for_uefi() {
        let uefi = Emulator::QemuTcg {
            cpus: 2,
            memory_mib: 1024,
            firmware: Firmware::Uefi,
        };
        let args = uefi
            .qemu_args(Boot::Cdrom(Path::new("a.iso")), Path::new("/r"))
            .unwrap()
            .join(" ");
        assert!(
            args.starts_with(&format!("-machine pc -bios {OVMF_FIRMWARE} -cpu max")),
            "{args}"
        );
        assert_eq!(uefi.firmware(), Firmware::Uefi);
        assert_eq!(uefi.to_string(), "qemu TCG (2 CPUs, 1024 MiB, UEFI)");
        assert_eq!(bochs_2cpu().firmware(), Firmware::Bios);
    }
}
