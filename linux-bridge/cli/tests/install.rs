//! `bulkhead install` and `--uninstall` into a root directory laid out like a Debian system's
//! `/boot` (a kernel and its initrd), then the GRUB script it wrote run as `update-grub` runs
//! it (with GRUB's helpers standing in for a machine's disks).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VERSION: &str = "6.1.0-28-amd64";

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/bochs-2cpu.toml")
}

fn bulkhead(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(args)
        .output()
        .unwrap()
}

/// A root with a kernel, its initrd and an older kernel, and two fake ELF images beside it.
struct System {
    dir: tempfile::TempDir,
    root: PathBuf,
    /// The root, the two images and the example config as the command line names them.
    args: [String; 4],
}

impl System {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("boot")).unwrap();
        for v in ["5.10.0-30-amd64", VERSION] {
            fs::write(root.join(format!("boot/vmlinuz-{v}")), b"MZ kernel").unwrap();
            fs::write(root.join(format!("boot/initrd.img-{v}")), b"initrd").unwrap();
        }
        let hv = dir.path().join("hypervisor.elf");
        let rt = dir.path().join("rt.elf");
        fs::write(&hv, b"\x7fELF hypervisor").unwrap();
        fs::write(&rt, b"\x7fELF rt").unwrap();
        let args = [&root, &hv, &rt, &example_config()].map(|p| p.to_str().unwrap().to_string());
        Self { dir, root, args }
    }

    /// The root, hypervisor, RT image and config arguments.
    fn args(&self) -> (&str, &str, &str, &str) {
        let [r, h, t, c] = &self.args;
        (r, h, t, c)
    }
}

fn install_args<'a>(root: &'a str, hv: &'a str, rt: &'a str, config: &'a str) -> Vec<&'a str> {
    vec![
        "install",
        "--root",
        root,
        "--config",
        config,
        "--hypervisor",
        hv,
        "--rt-image",
        rt,
        "--no-update-grub",
    ]
}

#[test]
fn install_writes_its_files_and_uninstall_takes_them_back() {
    let system = System::new();
    let (dir, root, config) = (&system.dir, &system.root, example_config());
    let (r, h, t, c) = system.args();
    let out = bulkhead(&install_args(r, h, t, c));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "boot/bulkhead/hypervisor.elf",
        "boot/bulkhead/rt.elf",
        "boot/bulkhead/config.bin",
        "boot/bulkhead/config.toml",
        "etc/grub.d/05_bulkhead",
        "etc/systemd/system/bulkhead-log@.service",
        "etc/udev/rules.d/70-bulkhead-channel.rules",
        "usr/local/bin/bulkhead",
    ] {
        assert!(root.join(file).is_file(), "{file} missing");
    }
    let script = root.join("etc/grub.d/05_bulkhead");
    assert_eq!(
        fs::metadata(&script).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let link = root.join("etc/systemd/system/multi-user.target.wants/bulkhead-log@rt.service");
    assert_eq!(
        fs::read_link(link).unwrap(),
        Path::new("/etc/systemd/system/bulkhead-log@.service")
    );

    // The script as update-grub runs it: GRUB's helpers find /boot at the root of its disk.
    let lib = dir.path().join("grub");
    fs::create_dir_all(&lib).unwrap();
    fs::write(
        lib.join("grub-mkconfig_lib"),
        "make_system_path_relative_to_its_root() { echo \"$1\"; }\n\
         prepare_grub_to_access_device() { echo \"search --no-floppy --fs-uuid --set=root 1234\"; }\n",
    )
    .unwrap();
    let run = Command::new("sh")
        .arg(&script)
        .env("pkgdatadir", &lib)
        .env("GRUB_DEVICE_BOOT", "/dev/sda1")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let entry = String::from_utf8(run.stdout).unwrap();
    let expected = format!(
        "menuentry 'Debian GNU/Linux {VERSION}, partitioned by Bulkhead' --class debian --class os {{\n\
         \tsearch --no-floppy --fs-uuid --set=root 1234\n\
         \techo 'Loading the Bulkhead hypervisor ...'\n\
         \tmultiboot2 /boot/bulkhead/hypervisor.elf\n\
         \tmodule2 /boot/bulkhead/config.bin config\n\
         \tmodule2 /boot/bulkhead/rt.elf rt.elf status=rt-status log=rt-log\n\
         \tmodule2 --nounzip /boot/vmlinuz-{VERSION} vmlinuz\n\
         \tmodule2 --nounzip /boot/initrd.img-{VERSION} initrd.img\n\
         }}\n"
    );
    assert_eq!(entry, expected);

    // The config's blob is what the hypervisor reads.
    let blob = fs::read(root.join("boot/bulkhead/config.bin")).unwrap();
    let config = bulkhead_config::host::load_file(&config).unwrap();
    assert_eq!(blob, bulkhead_config::blob::encode(&config));

    let out = bulkhead(&["install", "--uninstall", "--root", r, "--no-update-grub"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!root.join("boot/bulkhead").exists());
    assert!(!script.exists());
    assert!(!root.join("usr/local/bin/bulkhead").exists());
    assert!(
        root.join(format!("boot/vmlinuz-{VERSION}")).is_file(),
        "Debian's kernel stays"
    );
    // Nothing installed any more: a second uninstall says so.
    let out = bulkhead(&["install", "--uninstall", "--root", r, "--no-update-grub"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was installed here"));
}

#[test]
fn install_refuses_what_it_cannot_boot() {
    let system = System::new();
    let (dir, root, config) = (&system.dir, &system.root, example_config());
    let (r, h, t, c) = system.args();
    let refused = |args: Vec<&str>, because: &str| {
        let out = bulkhead(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(because), "{args:?}: {err}");
        assert!(!root.join("boot/bulkhead").exists(), "{args:?} wrote files");
    };
    // Not an ELF image.
    let config_text = config.to_str().unwrap();
    refused(install_args(r, c, t, config_text), "is not an ELF image");
    // A kernel that is not there.
    let mut args = install_args(r, h, t, c);
    args.extend(["--kernel", "9.9.9"]);
    refused(
        args,
        "--kernel 9.9.9: no /boot/vmlinuz-9.9.9 (present: 5.10.0-30-amd64, 6.1.0-28-amd64)",
    );
    // A config that does not validate names its field.
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        fs::read_to_string(&config)
            .unwrap()
            .replace("cpus = [1]", "cpus = [0]"),
    )
    .unwrap();
    refused(
        install_args(r, h, t, bad.to_str().unwrap()),
        "partitions.rt.cpus[0]",
    );
    // An RT command line GRUB would interpret.
    let mut args = install_args(r, h, t, c);
    args.extend(["--rt-cmdline", "a;b"]);
    refused(args, "--rt-cmdline");
}

/// Without `--hypervisor` and `--rt-image`, the Debian package's images under the root are
/// installed; without them either, the refusal says where they were looked for.
#[test]
fn install_takes_the_packages_images_by_default() {
    let system = System::new();
    let root = &system.root;
    let (r, _, _, c) = system.args();
    let args = ["install", "--root", r, "--config", c, "--no-update-grub"];
    let out = bulkhead(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--hypervisor is required")
            && err.contains("/usr/lib/bulkhead/hypervisor.elf"),
        "{err}"
    );
    fs::create_dir_all(root.join("usr/lib/bulkhead")).unwrap();
    fs::write(
        root.join("usr/lib/bulkhead/hypervisor.elf"),
        b"\x7fELF packaged hv",
    )
    .unwrap();
    fs::write(root.join("usr/lib/bulkhead/rt.elf"), b"\x7fELF packaged rt").unwrap();
    let out = bulkhead(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(root.join("boot/bulkhead/hypervisor.elf")).unwrap(),
        b"\x7fELF packaged hv"
    );
    assert_eq!(
        fs::read(root.join("boot/bulkhead/rt.elf")).unwrap(),
        b"\x7fELF packaged rt"
    );
}

#[test]
fn install_runs_the_packages_tool_and_makes_no_second_copy() {
    let system = System::new();
    let root = &system.root;
    let (r, h, t, c) = system.args();
    let unit = root.join("etc/systemd/system/bulkhead-log@.service");
    // Without the package: this tool is copied to /usr/local/bin and the units run that copy.
    let out = bulkhead(&install_args(r, h, t, c));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(root.join("usr/local/bin/bulkhead").is_file());
    let text = fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/bulkhead log %i -f"),
        "{text}"
    );
    let out = bulkhead(&["install", "--uninstall", "--root", r, "--no-update-grub"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With the package's tool in /usr/bin: the units run it, and it stays after an uninstall
    // (the package owns it).
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/bulkhead"), b"\x7fELF packaged tool").unwrap();
    let out = bulkhead(&install_args(r, h, t, c));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!root.join("usr/local/bin/bulkhead").exists());
    let text = fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/bin/bulkhead log %i -f"),
        "{text}"
    );
    let manifest = fs::read_to_string(root.join("boot/bulkhead/installed")).unwrap();
    assert!(!manifest.contains("bin/bulkhead"), "{manifest}");
    let out = bulkhead(&["install", "--uninstall", "--root", r, "--no-update-grub"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(root.join("usr/bin/bulkhead")).unwrap(),
        b"\x7fELF packaged tool"
    );
}
