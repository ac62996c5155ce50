//! Declares the `loom` cfg, under which the protocol's atomics come from the loom model checker.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
