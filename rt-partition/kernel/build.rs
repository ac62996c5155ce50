//! Link the RT kernel as a freestanding, statically linked ELF at 1 MiB, with the recipe
//! (linker script and arguments) `bulkhead-x86` owns for both images, and points the boot
//! assembly at the macros it shares (`BULKHEAD_X86_BOOT32_ASM`).
//!
//! The arguments apply to this crate's binary only, so host builds of the other crates
//! are unaffected.
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
    // The boot assembly's shared macros, for `include_str!` in arch/mod.rs.
    let boot32 = var("DEP_BULKHEAD_X86_BOOT32_ASM");
    println!("cargo::rerun-if-changed={boot32}");
    println!("cargo::rustc-env=BULKHEAD_X86_BOOT32_ASM={boot32}");
}
