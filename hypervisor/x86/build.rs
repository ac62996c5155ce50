//! Publishes the link recipe of the freestanding images to their build scripts: the linker
//! script `image.ld` (identity-mapped at 1 MiB, keeping the multiboot2 header and this
//! crate's `.trampoline`) and the link arguments (see DESIGN.md, "Building freestanding
//! code"). Dependents read them as `DEP_BULKHEAD_X86_LINKER_SCRIPT` and
//! `DEP_BULKHEAD_X86_LINK_ARGS` (space-separated). Nothing here affects this crate's own build.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo::rerun-if-changed=image.ld");
    println!("cargo::metadata=linker_script={dir}/image.ld");
    println!(
        "cargo::metadata=link_args=-nostdlib -static -no-pie -Wl,--build-id=none -Wl,-n -Wl,--gc-sections"
    );
}
