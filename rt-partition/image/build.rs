//! Link the RT image as a freestanding, statically linked ELF at 1 MiB, with the recipe
//! (linker script and arguments) `bulkhead-x86` owns for both images. The arguments apply to
//! this crate's binary only, so host builds of the other crates are unaffected. The image
//! the build tool makes with other applications (`cargo xtask build --rt-app PATH`) uses
//! this script too.
fn main() {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("bulkhead-x86's build script sets {name}"))
    };
    let script = var("DEP_BULKHEAD_X86_LINKER_SCRIPT");
    println!("cargo::rerun-if-changed={script}");
    for arg in var("DEP_BULKHEAD_X86_LINK_ARGS").split_whitespace() {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
    println!("cargo::rustc-link-arg-bins=-T{script}");
    // The ELF entry is the 64-bit one the hypervisor enters; GRUB takes the 32-bit `_start`
    // from the multiboot2 header's entry-address tag.
    println!("cargo::rustc-link-arg-bins=-Wl,-e,_start64");
}
