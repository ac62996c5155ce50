//! Declares the `loom` cfg the mailbox's model-checked build uses
//! (`RUSTFLAGS="--cfg loom"`), so ordinary builds know it.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
