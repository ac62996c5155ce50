//! Link the RT kernel as a freestanding, statically linked ELF at 1 MiB (see linker.ld), with
//! the same recipe as the hypervisor image.
//!
//! The arguments apply to this crate's binary only, so host builds of the other crates
//! are unaffected.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed={dir}/linker.ld");
    for arg in [
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-n",
        "-Wl,--gc-sections",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
}
