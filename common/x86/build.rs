//! Publishes to the freestanding images' build scripts what they take from this crate as
//! files rather than code: the link recipe, i.e. the linker script `image.ld`
//! (identity-mapped at 1 MiB, keeping the multiboot2 header and this crate's `.trampoline`)
//! and the link arguments (see DESIGN.md, "Building freestanding code"); and `src/boot32.S`,
//! the assembler macros their boot.S is assembled after. Dependents read them as
//! `DEP_BULKHEAD_X86_LINKER_SCRIPT`, `DEP_BULKHEAD_X86_LINK_ARGS` (space-separated) and
//! `DEP_BULKHEAD_X86_BOOT32_ASM`. Nothing here affects this crate's own build.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo::rerun-if-changed=image.ld");
    println!("cargo::metadata=linker_script={dir}/image.ld");
    println!("cargo::metadata=boot32_asm={dir}/src/boot32.S");
    println!(
        "cargo::metadata=link_args=-nostdlib -static -no-pie -Wl,--build-id=none -Wl,-n -Wl,--gc-sections"
    );
}
