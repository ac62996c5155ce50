//! Waiting for the RT side's doorbells: the channel device's interrupt, through Linux's own
//! `uio_pci_generic` driver.
//!
//! Under Bulkhead, Linux sees an emulated PCI function (vendor [`VENDOR_ID`], device
//! [`DEVICE_ID`], subsystem [`SUBSYSTEM_ID`]) whose INTx the RT side raises when it rings a
//! doorbell toward Linux. Bound to `uio_pci_generic` (`modprobe uio_pci_generic`, then
//! `echo "1af4 1110 1af4 4248" > /sys/bus/pci/drivers/uio_pci_generic/new_id`), each interrupt
//! masks the device's INTx and counts an event on `/dev/uioN`. [`ChannelInterrupt::wait`]
//! clears Interrupt Disable through the function's `config` file in sysfs (one byte, the
//! command register's high byte), then sleeps in `poll` on `/dev/uioN` until an event or the
//! deadline, and reads the event count so the next `poll` waits for a newer one. Every
//! endpoint opens the device for itself, so waiters in several threads and processes each
//! see every interrupt; the interrupt is shared by all channels, so a waiter re-checks its
//! ring after each one.
//!
//! No device, or a device not bound to `uio_pci_generic`: [`ChannelInterrupt::open`] says
//! why, and the endpoints poll instead (`crate::poll`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulkhead_abi::channel_device::{COUNTERS_OFFSET, SUBSYSTEM_VENDOR_ID};
pub use bulkhead_abi::channel_device::{DEVICE_ID, SUBSYSTEM_ID, VENDOR_ID};

/// Where Linux lists PCI functions.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// The channel device, opened for waiting.
#[derive(Debug)]
pub struct ChannelInterrupt {
    /// `/dev/uioN`: readable when an interrupt came since the last read.
    uio: File,
    /// The function's configuration space in sysfs (Interrupt Disable, the counters).
    config: File,
    /// The function's sysfs directory name, e.g. `0000:ff:00.0`.
    address: String,
    /// `uioN`.
    uio_name: String,
}

/// Why there is no interrupt to wait on.
#[derive(Debug)]
pub enum Unavailable {
    /// No PCI function with the channel device's IDs (not under Bulkhead, or no channel
    /// takes doorbells).
    NoDevice,
    /// The device is there but no `uio` driver is bound to it.
    NotBound {
        /// The function's PCI address.
        address: String,
    },
    /// A file could not be opened or read (usually: not root).
    Io {
        /// The file.
        path: PathBuf,
        /// What opening or reading it said.
        error: io::Error,
    },
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoDevice => f.write_str("no channel device (Linux polls its channels)"),
            Self::NotBound { address } => write!(
                f,
                "channel device {address} is not bound to uio_pci_generic (Linux polls its channels)"
            ),
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

/// Reads a sysfs number such as `0x1af4`.
fn read_hex(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// The sysfs directory of the channel device under `devices`, if any.
pub fn find_device(devices: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(devices)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|dir| {
            let id = |file| read_hex(&dir.join(file));
            id("vendor") == Some(VENDOR_ID.into())
                && id("device") == Some(DEVICE_ID.into())
                && id("subsystem_vendor") == Some(SUBSYSTEM_VENDOR_ID.into())
                && id("subsystem_device") == Some(SUBSYSTEM_ID.into())
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

impl ChannelInterrupt {
    /// Opens the channel device Linux lists in sysfs, bound to `uio_pci_generic`.
    pub fn open() -> Result<Self, Unavailable> {
        Self::open_at(Path::new(SYSFS_PCI_DEVICES), Path::new("/dev"))
    }

    /// Opens the channel device listed under `devices` (sysfs), with `uio` nodes in `dev`.
    pub fn open_at(devices: &Path, dev: &Path) -> Result<Self, Unavailable> {
        let dir = find_device(devices).ok_or(Unavailable::NoDevice)?;
        let address = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let uio_name = fs::read_dir(dir.join("uio"))
            .ok()
            .and_then(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .find(|n| n.starts_with("uio"))
            })
            .ok_or_else(|| Unavailable::NotBound {
                address: address.clone(),
            })?;
        let open = |path: PathBuf, write: bool| {
            OpenOptions::new()
                .read(true)
                .write(write)
                .open(&path)
                .map_err(|error| Unavailable::Io { path, error })
        };
        Ok(Self {
            uio: open(dev.join(&uio_name), false)?,
            config: open(dir.join("config"), true)?,
            address,
            uio_name,
        })
    }

    /// The function's PCI address, e.g. `0000:ff:00.0`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The `uio` node, e.g. `uio0`.
    pub fn uio_name(&self) -> &str {
        &self.uio_name
    }

    /// The device's counters: doorbells the RT side raised and interrupts the hypervisor
    /// delivered to Linux (both since the machine started, wrapping).
    pub fn counts(&self) -> io::Result<(u32, u32)> {
        let mut b = [0u8; 8];
        self.config
            .read_exact_at(&mut b, u64::from(COUNTERS_OFFSET))?;
        Ok((
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        ))
    }

    /// Enables the interrupt and sleeps until it comes or until `deadline` (at most `cap`
    /// from now): whether an interrupt came. The caller has armed its ring's doorbell flag
    /// and found the ring still empty (or full).
    pub fn wait(&mut self, deadline: Option<Instant>, cap: Duration) -> io::Result<bool> {
        // Clear Interrupt Disable (command bit 10: bit 2 of the register's high byte); the
        // other bits of that byte are not implemented by the device.
        self.config.write_all_at(&[0], 5)?;
        let now = Instant::now();
        let until = deadline.map_or(now + cap, |d| d.min(now + cap));
        let ms = until
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000);
        let mut fd = libc::pollfd {
            fd: self.uio.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut fd, 1, i32::try_from(ms).unwrap_or(i32::MAX)) };
        match n {
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            0 => Ok(false),
            _ => {
                // The event count: reading it makes the next poll wait for a newer event.
                let mut count = [0u8; 4];
                self.uio.read_exact(&mut count)?;
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs tree with one function of the given IDs, optionally bound to uio.
    fn sysfs(ids: [&str; 4], bound: bool) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let devices = root.path().join("devices");
        let dev = root.path().join("dev");
        let f = devices.join("0000:ff:00.0");
        fs::create_dir_all(&f).unwrap();
        fs::create_dir_all(&dev).unwrap();
        for (file, v) in ["vendor", "device", "subsystem_vendor", "subsystem_device"]
            .iter()
            .zip(ids)
        {
            fs::write(f.join(file), format!("{v}\n")).unwrap();
        }
        let mut config = vec![0u8; 256];
        config[0x40..0x48].copy_from_slice(&[5, 0, 0, 0, 3, 0, 0, 0]);
        config[5] = 0x04;
        fs::write(f.join("config"), config).unwrap();
        // Another function first, so the search has to look.
        let other = devices.join("0000:00:00.0");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("vendor"), "0x8086\n").unwrap();
        if bound {
            fs::create_dir_all(f.join("uio/uio3")).unwrap();
            fs::write(dev.join("uio3"), [1, 0, 0, 0]).unwrap();
        }
        (root, devices, dev)
    }

    const IDS: [&str; 4] = ["0x1af4", "0x1110", "0x1af4", "0x4248"];

    #[test]
    fn finds_the_bound_device_and_reads_its_counters() {
        let (_root, devices, dev) = sysfs(IDS, true);
        let mut irq = ChannelInterrupt::open_at(&devices, &dev).unwrap();
        assert_eq!(irq.address(), "0000:ff:00.0");
        assert_eq!(irq.uio_name(), "uio3");
        assert_eq!(irq.counts().unwrap(), (5, 3));
        // A regular file is always readable: the wait returns at once, having unmasked.
        assert!(irq.wait(None, Duration::from_secs(5)).unwrap());
        let config = fs::read(devices.join("0000:ff:00.0/config")).unwrap();
        assert_eq!(config[5], 0, "Interrupt Disable cleared");
    }

    #[test]
    fn says_why_there_is_no_interrupt() {
        let (_root, devices, dev) = sysfs(IDS, false);
        let e = ChannelInterrupt::open_at(&devices, &dev).unwrap_err();
        assert!(matches!(e, Unavailable::NotBound { .. }), "{e}");
        assert!(e.to_string().contains("0000:ff:00.0 is not bound"));
        // An ivshmem of another kind (subsystem) is not the channel device.
        let (_root, devices, dev) = sysfs(["0x1af4", "0x1110", "0x1af4", "0x1100"], true);
        assert!(matches!(
            ChannelInterrupt::open_at(&devices, &dev),
            Err(Unavailable::NoDevice)
        ));
        assert!(matches!(
            ChannelInterrupt::open_at(Path::new("/nonexistent"), &dev),
            Err(Unavailable::NoDevice)
        ));
    }
}
