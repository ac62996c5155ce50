//! Points the boot assembly at the macros it shares with the hypervisor
//! (`BULKHEAD_X86_BOOT32_ASM`, for `include_str!` in arch/mod.rs). The link recipe is the
//! image crate's (`rt-partition/image`).
fn main() {
    let boot32 = std::env::var("DEP_BULKHEAD_X86_BOOT32_ASM")
        .unwrap_or_else(|_| panic!("bulkhead-x86's build script sets DEP_BULKHEAD_X86_BOOT32_ASM"));
    println!("cargo::rerun-if-changed={boot32}");
    println!("cargo::rustc-env=BULKHEAD_X86_BOOT32_ASM={boot32}");
}
