//! The flags an emulated MMIO compare sets (`devices::mmio::compare_flags`) against the ones
//! this machine's own CPU sets for the same `cmp` and `test` (a separate test crate: the
//! library forbids `unsafe`, and asking the CPU takes a line of assembly).

#![cfg(target_arch = "x86_64")]

use bulkhead_hv_core::devices::mmio::{ARITHMETIC_FLAGS, CompareOp, compare_flags};
use proptest::prelude::*;

/// AF, which `test` leaves undefined.
const AF: u64 = 1 << 4;

/// RFLAGS after `cmp a, b` or `test a, b` on `width` bytes, executed by this CPU.
fn cpu_flags(op: CompareOp, a: u64, b: u64, width: u8) -> u64 {
    let flags: u64;
    // SAFETY: register arithmetic, then RFLAGS pushed and popped on the stack.
    unsafe {
        match (op, width) {
            (CompareOp::Cmp, 1) => {
                core::arch::asm!("cmp {a:l}, {b:l}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
            (CompareOp::Cmp, 2) => {
                core::arch::asm!("cmp {a:x}, {b:x}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
            (CompareOp::Cmp, 4) => {
                core::arch::asm!("cmp {a:e}, {b:e}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
            (CompareOp::Cmp, _) => {
                core::arch::asm!("cmp {a}, {b}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
            (CompareOp::Test, 1) => {
                core::arch::asm!("test {a:l}, {b:l}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
            (CompareOp::Test, 2) => {
                core::arch::asm!("test {a:x}, {b:x}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
            (CompareOp::Test, 4) => {
                core::arch::asm!("test {a:e}, {b:e}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
            (CompareOp::Test, _) => {
                core::arch::asm!("test {a}, {b}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
        }
    }
    flags
}

proptest! {
    /// All six flags for `cmp`; all but AF for `test`.
    #[test]
    fn compare_flags_are_the_cpus(
        a in any::<u64>(),
        b in prop_oneof![any::<u64>(), Just(0u64), Just(0x80), Just(0x8000_0000)],
        width in prop_oneof![Just(1u8), Just(2), Just(4), Just(8)],
        near in any::<bool>(),
    ) {
        // Often equal or adjacent operands, where ZF, CF and OF turn.
        let b = if near { a.wrapping_add(b & 1) } else { b };
        for op in [CompareOp::Cmp, CompareOp::Test] {
            let defined = if op == CompareOp::Cmp {
                ARITHMETIC_FLAGS
            } else {
                ARITHMETIC_FLAGS & !AF
            };
            prop_assert_eq!(
                compare_flags(op, a, b, width) & defined,
                cpu_flags(op, a, b, width) & defined,
                "{:?} {:#x} {:#x} width {}", op, a, b, width
            );
        }
    }
}
