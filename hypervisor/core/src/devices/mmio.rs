//! Decoding the guest instruction behind an EPT violation on an emulated MMIO page.
//!
//! The hypervisor emulates some devices (the IOAPIC) by leaving their pages out of the EPT.
//! The VM exit then says which guest-physical address was touched and whether it was a read
//! or a write, but not the data nor the instruction's length: the hypervisor fetches the
//! bytes at the guest's RIP and [`decode`]s them. Accepted (64-bit mode): the plain moves a
//! driver's `readb/w/l/q` and `writeb/w/l/q` compile to, `mov` to and from memory (88, 89,
//! 8A, 8B), `mov` of an immediate (C6 /0, C7 /0) and `movzx` (0F B6, 0F B7); and the
//! compares a compiler may fold a read into, which read memory and change only RFLAGS:
//! `cmp` with a register either way (38, 39, 3A, 3B) or an immediate (80 /7, 81 /7, 83 /7)
//! and `test` with a register (84, 85) or an immediate (F6 /0, F7 /0); with the 66, 67 and
//! segment prefixes and REX. Anything else (LOCK, REP, an instruction that writes what it
//! read, other opcodes, a register operand) is a [`DecodeError`] naming the problem and the
//! opcode, for the log; the hypervisor then stops the guest rather than guess.
//!
//! This is hand-written because no crate decodes just this subset in `no_std` without
//! allocation; it never needs the memory operand's address (the exit gives it), so ModRM,
//! SIB and displacement are only measured, never evaluated. [`MmioInsn::store_value`] and
//! [`MmioInsn::complete_read`] apply the x86 register semantics (partial writes, the 32-bit
//! zero extension, AH..BH) to a register file in encoding order (RAX RCX RDX RBX RSP RBP
//! RSI RDI R8..R15), and a compare's result to the six arithmetic flags of RFLAGS.

use core::fmt;

/// Longest x86 instruction (SDM Vol. 2A 2.3.11); longer ones fault, so never exit.
pub const MAX_INSN_LEN: usize = 15;

/// A decoded MMIO move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioInsn {
    /// Instruction length in bytes: add to RIP once emulated.
    pub len: u8,
    /// Bytes of memory accessed: 1, 2, 4 or 8.
    pub width: u8,
    /// Which way the data goes.
    pub kind: Access,
}

/// The direction of an MMIO move and the register or immediate on the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Memory to register.
    Load {
        /// Destination register, 0..=15 in encoding order.
        reg: u8,
        /// The destination is AH, CH, DH or BH (bits 15:8 of `reg` 0..=3).
        high_byte: bool,
        /// `movzx`: the value read is this many bytes, zero-extended to `dest_width`.
        zero_extend_from: Option<u8>,
        /// Bytes of the destination register written: 1, 2, 4 (zero-extends to 8) or 8.
        dest_width: u8,
    },
    /// Register or immediate to memory.
    Store {
        /// What is written.
        src: Source,
    },
    /// Memory read and compared with a register or an immediate: only RFLAGS changes.
    Compare {
        /// `cmp` or `test`.
        op: CompareOp,
        /// The other operand.
        with: Source,
        /// `cmp reg, mem` (3A, 3B): the register minus the memory, not the other way.
        memory_second: bool,
    },
}

/// What a compare computes (and throws away, keeping the flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `cmp`: a subtraction.
    Cmp,
    /// `test`: a bitwise and.
    Test,
}

/// RFLAGS' arithmetic flags, which a compare sets: CF, PF, AF, ZF, SF and OF.
pub const ARITHMETIC_FLAGS: u64 = CF | PF | AF | ZF | SF | OF;
const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const AF: u64 = 1 << 4;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const OF: u64 = 1 << 11;

/// What a store writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The low `width` bytes of a register, or AH..BH.
    Reg {
        /// Register, 0..=15 in encoding order.
        reg: u8,
        /// AH, CH, DH or BH (bits 15:8 of `reg` 0..=3).
        high_byte: bool,
    },
    /// An immediate, already sign-extended where the instruction does so.
    Imm(u64),
}

impl Source {
    /// Its value (not yet cut to the access's width): the register's, shifted down for
    /// AH..BH, or the immediate.
    fn value(self, regs: &[u64; 16]) -> u64 {
        match self {
            Source::Reg { reg, high_byte } => {
                let r = regs[usize::from(reg & 0xf)];
                if high_byte { r >> 8 } else { r }
            }
            Source::Imm(imm) => imm,
        }
    }
}

/// The opcode of an instruction that was refused, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// A one-byte opcode.
    One(u8),
    /// A two-byte opcode `0F xx`.
    Two(u8),
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::One(b) => write!(f, "{b:02x}"),
            Self::Two(b) => write!(f, "0f {b:02x}"),
        }
    }
}

/// Why the bytes at the guest's RIP are not an MMIO move we emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes given end inside the instruction (after `len` bytes); fetching more, e.g.
    /// from the next page, may help.
    Truncated { len: u8 },
    /// Prefixes and instruction run past 15 bytes (the CPU would have faulted).
    TooLong,
    /// A LOCK (F0), REPNE (F2) or REP (F3) prefix.
    Prefix { prefix: u8, opcode: Opcode },
    /// An opcode other than the moves listed in the module documentation.
    Opcode(Opcode),
    /// A ModRM naming a register (mod 3): no memory access at all.
    RegisterOperand(Opcode),
    /// A ModRM reg field that makes the opcode something other than a move or a compare
    /// (C6 or C7 not /0, 80, 81 or 83 not /7, F6 or F7 not /0).
    ModRmReg { opcode: Opcode, reg: u8 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { len } => {
                write!(f, "MMIO instruction runs past the {len} bytes fetched")
            }
            Self::TooLong => write!(f, "MMIO instruction longer than {MAX_INSN_LEN} bytes"),
            Self::Prefix { prefix, opcode } => {
                let name = match prefix {
                    0xf0 => "LOCK",
                    0xf2 => "REPNE",
                    _ => "REP",
                };
                write!(
                    f,
                    "MMIO instruction {opcode} has a {name} prefix ({prefix:02x})"
                )
            }
            Self::Opcode(opcode) => {
                write!(
                    f,
                    "MMIO instruction {opcode} is not an emulated move or compare"
                )
            }
            Self::RegisterOperand(opcode) => write!(
                f,
                "MMIO instruction {opcode} has a register operand (ModRM mod 3)"
            ),
            Self::ModRmReg { opcode, reg } => {
                write!(
                    f,
                    "MMIO instruction {opcode} /{reg} is not a move or compare"
                )
            }
        }
    }
}

/// Reads the instruction bytes one at a time, telling a short fetch from an overlong
/// instruction.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Result<u8, DecodeError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.short())
    }

    /// Steps over `n` bytes (displacement, immediate) that must all be there.
    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        if self.pos + n > self.bytes.len() {
            return Err(self.short());
        }
        self.pos += n;
        Ok(())
    }

    fn short(&self) -> DecodeError {
        if self.bytes.len() >= MAX_INSN_LEN {
            DecodeError::TooLong
        } else {
            DecodeError::Truncated {
                len: self.bytes.len() as u8,
            }
        }
    }
}

/// Decodes the 64-bit mode instruction at the start of `bytes` (only its first 15 bytes are
/// looked at; more may follow).
pub fn decode(bytes: &[u8]) -> Result<MmioInsn, DecodeError> {
    let mut c = Cursor {
        bytes: &bytes[..bytes.len().min(MAX_INSN_LEN)],
        pos: 0,
    };

    // Legacy prefixes in any order, then at most one effective REX: a REX that is not
    // immediately before the opcode is ignored (SDM Vol. 2A 2.2.1).
    let mut operand_16 = false;
    let mut refused_prefix = None;
    let mut rex = 0u8;
    loop {
        match c.peek()? {
            0x66 => operand_16 = true,
            // Segment overrides (the exit already gives the address) and address size.
            0x2e | 0x3e | 0x26 | 0x36 | 0x64 | 0x65 | 0x67 => {}
            p @ (0xf0 | 0xf2 | 0xf3) => refused_prefix = Some(p),
            r @ 0x40..=0x4f => {
                c.pos += 1;
                rex = r;
                continue;
            }
            _ => break,
        }
        c.pos += 1;
        rex = 0;
    }
    let rex_w = rex & 0x8 != 0;
    let rex_r = rex & 0x4 != 0;
    // REX.X and REX.B only pick the address registers, which we do not need.

    let opcode = match c.next()? {
        0x0f => Opcode::Two(c.next()?),
        b => Opcode::One(b),
    };
    if let Some(prefix) = refused_prefix {
        return Err(DecodeError::Prefix { prefix, opcode });
    }
    // Operand size of the 16/32/64-bit forms; REX.W wins over 66.
    let op_width = if rex_w {
        8
    } else if operand_16 {
        2
    } else {
        4
    };
    if !matches!(
        opcode,
        Opcode::One(
            0x88 | 0x89
                | 0x8a
                | 0x8b
                | 0xc6
                | 0xc7
                | 0x38
                | 0x39
                | 0x3a
                | 0x3b
                | 0x80
                | 0x81
                | 0x83
                | 0x84
                | 0x85
                | 0xf6
                | 0xf7
        ) | Opcode::Two(0xb6 | 0xb7)
    ) {
        return Err(DecodeError::Opcode(opcode));
    }

    let modrm = c.next()?;
    let mode = modrm >> 6;
    let reg_field = (modrm >> 3) & 7;
    let rm = modrm & 7;
    if mode == 3 {
        return Err(DecodeError::RegisterOperand(opcode));
    }
    // Measure the memory operand (32- and 64-bit addressing are laid out alike).
    let mut disp = match mode {
        0 => 0,
        1 => 1,
        _ => 4,
    };
    if rm == 4 {
        let sib = c.next()?;
        if mode == 0 && sib & 7 == 5 {
            disp = 4; // No base, disp32.
        }
    } else if mode == 0 && rm == 5 {
        disp = 4; // RIP-relative.
    }
    c.skip(disp)?;

    let reg = reg_field | if rex_r { 8 } else { 0 };
    // Byte registers 4..=7 are AH..BH unless there is a REX prefix (then SPL..DIL).
    let byte_reg = || {
        if rex == 0 && (4..8).contains(&reg) {
            (reg - 4, true)
        } else {
            (reg, false)
        }
    };
    // The immediate of the operand size: imm8, imm16, or imm32 (sign-extended for 64 bits).
    let mut immediate = |width: u8| -> Result<u64, DecodeError> {
        Ok(match width {
            1 => u64::from(c.next()?),
            2 => u64::from(u16::from_le_bytes([c.next()?, c.next()?])),
            _ => {
                let b = [c.next()?, c.next()?, c.next()?, c.next()?];
                i32::from_le_bytes(b) as i64 as u64 & mask(width)
            }
        })
    };
    let refuse_reg = |allowed: u8| {
        if reg_field == allowed {
            Ok(())
        } else {
            Err(DecodeError::ModRmReg {
                opcode,
                reg: reg_field,
            })
        }
    };
    let compare = |op, with, memory_second| Access::Compare {
        op,
        with,
        memory_second,
    };
    let (width, kind) = match opcode {
        // cmp and test with a register: 38 3A 84 bytes, 39 3B 85 the operand size.
        Opcode::One(b @ (0x38 | 0x39 | 0x3a | 0x3b | 0x84 | 0x85)) => {
            let op = if b >= 0x84 {
                CompareOp::Test
            } else {
                CompareOp::Cmp
            };
            let (width, with) = if b & 1 == 0 {
                let (reg, high_byte) = byte_reg();
                (1, Source::Reg { reg, high_byte })
            } else {
                (
                    op_width,
                    Source::Reg {
                        reg,
                        high_byte: false,
                    },
                )
            };
            (width, compare(op, with, b & 2 != 0 && b < 0x84))
        }
        // cmp with an immediate: 80 /7 ib, 81 /7 iz, 83 /7 ib sign-extended.
        Opcode::One(b @ (0x80 | 0x81 | 0x83)) => {
            refuse_reg(7)?;
            let width = if b == 0x80 { 1 } else { op_width };
            let imm = match b {
                0x83 => (c.next()? as i8 as i64 as u64) & mask(width),
                _ => immediate(width)?,
            };
            (width, compare(CompareOp::Cmp, Source::Imm(imm), false))
        }
        // test with an immediate: F6 /0 ib, F7 /0 iz.
        Opcode::One(b @ (0xf6 | 0xf7)) => {
            refuse_reg(0)?;
            let width = if b == 0xf6 { 1 } else { op_width };
            let imm = immediate(width)?;
            (width, compare(CompareOp::Test, Source::Imm(imm), false))
        }
        Opcode::One(0x88) => {
            let (reg, high_byte) = byte_reg();
            let src = Source::Reg { reg, high_byte };
            (1, Access::Store { src })
        }
        Opcode::One(0x89) => {
            let src = Source::Reg {
                reg,
                high_byte: false,
            };
            (op_width, Access::Store { src })
        }
        Opcode::One(0x8a) => {
            let (reg, high_byte) = byte_reg();
            (1, load(reg, high_byte, None, 1))
        }
        Opcode::One(0x8b) => (op_width, load(reg, false, None, op_width)),
        Opcode::Two(from @ (0xb6 | 0xb7)) => {
            let width = if from == 0xb6 { 1 } else { 2 };
            (width, load(reg, false, Some(width), op_width))
        }
        // C6 and C7.
        _ => {
            refuse_reg(0)?;
            let width = if opcode == Opcode::One(0xc6) {
                1
            } else {
                op_width
            };
            let imm = immediate(width)?;
            (
                width,
                Access::Store {
                    src: Source::Imm(imm),
                },
            )
        }
    };
    Ok(MmioInsn {
        len: c.pos as u8,
        width,
        kind,
    })
}

fn load(reg: u8, high_byte: bool, zero_extend_from: Option<u8>, dest_width: u8) -> Access {
    Access::Load {
        reg,
        high_byte,
        zero_extend_from,
        dest_width,
    }
}

/// The arithmetic flags of `a - b` (`cmp`) or `a & b` (`test`) on `width` bytes, as the CPU
/// sets them (SDM Vol. 1 3.4.3.1 and the CMP and TEST pages of Vol. 2). `test` clears CF and
/// OF, and AF, which it leaves undefined.
pub fn compare_flags(op: CompareOp, a: u64, b: u64, width: u8) -> u64 {
    let m = mask(width);
    let sign = 1u64 << (u32::from(width.clamp(1, 8)) * 8 - 1);
    let (a, b) = (a & m, b & m);
    let result = match op {
        CompareOp::Cmp => a.wrapping_sub(b) & m,
        CompareOp::Test => a & b,
    };
    let mut flags = 0;
    if (result as u8).count_ones().is_multiple_of(2) {
        flags |= PF;
    }
    if result == 0 {
        flags |= ZF;
    }
    if result & sign != 0 {
        flags |= SF;
    }
    if op == CompareOp::Cmp {
        if a < b {
            flags |= CF;
        }
        if (a ^ b ^ result) & 0x10 != 0 {
            flags |= AF;
        }
        if (a ^ b) & (a ^ result) & sign != 0 {
            flags |= OF;
        }
    }
    flags
}

/// The low `width` bytes.
fn mask(width: u8) -> u64 {
    if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (u32::from(width) * 8)) - 1
    }
}

impl MmioInsn {
    /// Whether the instruction writes memory; the caller checks this against the exit
    /// qualification (they differ only if the guest's code changed under it).
    pub fn is_write(&self) -> bool {
        matches!(self.kind, Access::Store { .. })
    }

    /// The value a store writes to memory, `width` bytes in the low bits; 0 for a load.
    pub fn store_value(&self, regs: &[u64; 16]) -> u64 {
        let value = match self.kind {
            Access::Store { src } => src.value(regs),
            Access::Load { .. } | Access::Compare { .. } => 0,
        };
        value & mask(self.width)
    }

    /// Completes a read: `value`, read from memory (its low `width` bytes count), goes into
    /// the destination register of a load ([`MmioInsn::complete_load`]), or sets the
    /// arithmetic flags in `rflags` as a compare with it does. Does nothing for a store.
    pub fn complete_read(&self, regs: &mut [u64; 16], rflags: &mut u64, value: u64) {
        match self.kind {
            Access::Load { .. } => self.complete_load(regs, value),
            Access::Compare {
                op,
                with,
                memory_second,
            } => {
                let other = with.value(regs);
                let (a, b) = if memory_second {
                    (other, value)
                } else {
                    (value, other)
                };
                *rflags = (*rflags & !ARITHMETIC_FLAGS) | compare_flags(op, a, b, self.width);
            }
            Access::Store { .. } => {}
        }
    }

    /// Puts `value`, read from memory (its low `width` bytes count), into the destination
    /// register as the CPU would; does nothing for a store.
    pub fn complete_load(&self, regs: &mut [u64; 16], value: u64) {
        let Access::Load {
            reg,
            high_byte,
            dest_width,
            ..
        } = self.kind
        else {
            return;
        };
        // Either a plain load (dest_width == width) or movzx: masking is all either needs.
        let value = value & mask(self.width);
        let r = &mut regs[usize::from(reg & 0xf)];
        *r = match dest_width {
            // A 32-bit destination clears bits 63:32; a 64-bit one is replaced whole.
            4 | 8 => value,
            _ if high_byte => (*r & !0xff00) | (value & 0xff) << 8,
            w => (*r & !mask(w)) | value,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    const RAX: u8 = 0;
    const RCX: u8 = 1;
    const RDX: u8 = 2;
    const RSP: u8 = 4;

    fn store_reg(len: u8, width: u8, reg: u8, high_byte: bool) -> MmioInsn {
        MmioInsn {
            len,
            width,
            kind: Access::Store {
                src: Source::Reg { reg, high_byte },
            },
        }
    }

    fn store_imm(len: u8, width: u8, imm: u64) -> MmioInsn {
        MmioInsn {
            len,
            width,
            kind: Access::Store {
                src: Source::Imm(imm),
            },
        }
    }

    fn compare(len: u8, width: u8, op: CompareOp, with: Source, memory_second: bool) -> MmioInsn {
        MmioInsn {
            len,
            width,
            kind: Access::Compare {
                op,
                with,
                memory_second,
            },
        }
    }

    fn cmp_reg(len: u8, width: u8, reg: u8, high_byte: bool, memory_second: bool) -> MmioInsn {
        let with = Source::Reg { reg, high_byte };
        compare(len, width, CompareOp::Cmp, with, memory_second)
    }

    fn cmp_imm(len: u8, width: u8, imm: u64) -> MmioInsn {
        compare(len, width, CompareOp::Cmp, Source::Imm(imm), false)
    }

    fn test_reg(len: u8, width: u8, reg: u8, high_byte: bool) -> MmioInsn {
        let with = Source::Reg { reg, high_byte };
        compare(len, width, CompareOp::Test, with, false)
    }

    fn test_imm(len: u8, width: u8, imm: u64) -> MmioInsn {
        compare(len, width, CompareOp::Test, Source::Imm(imm), false)
    }

    fn load_reg(len: u8, width: u8, reg: u8, zx: Option<u8>, dest_width: u8) -> MmioInsn {
        MmioInsn {
            len,
            width,
            kind: load(reg, false, zx, dest_width),
        }
    }

    /// Encodings as assemblers emit them (AT&T syntax in the comments, as objdump prints).
    #[test]
    fn real_encodings_decode() {
        #[rustfmt::skip]
        let table: &[(&[u8], MmioInsn)] = &[
            // mov %eax,(%rdx)
            (&[0x89, 0x02], store_reg(2, 4, RAX, false)),
            // mov (%rdx),%eax
            (&[0x8b, 0x02], load_reg(2, 4, RAX, None, 4)),
            // mov %edx,0x8(%rsp): SIB + disp8
            (&[0x89, 0x54, 0x24, 0x08], store_reg(4, 4, RDX, false)),
            // mov %edx,0x10(%rax): Linux's io_apic_write() data register
            (&[0x89, 0x50, 0x10], store_reg(3, 4, RDX, false)),
            // mov 0x12345678(%rip),%eax
            (&[0x8b, 0x05, 0x78, 0x56, 0x34, 0x12], load_reg(6, 4, RAX, None, 4)),
            // mov %eax,(%r12): REX.B, SIB
            (&[0x41, 0x89, 0x04, 0x24], store_reg(4, 4, RAX, false)),
            // mov -0x8(%rbp),%rax
            (&[0x48, 0x8b, 0x45, 0xf8], load_reg(4, 8, RAX, None, 8)),
            // mov (%rax),%r8d: REX.R
            (&[0x44, 0x8b, 0x00], load_reg(3, 4, 8, None, 4)),
            // mov %r15,(%rcx): REX.WR
            (&[0x4c, 0x89, 0x39], store_reg(3, 8, 15, false)),
            // movl $0x1,(%rax)
            (&[0xc7, 0x00, 0x01, 0x00, 0x00, 0x00], store_imm(6, 4, 1)),
            // movl $0xfec00000,0x10(%rip): RIP-relative then imm32
            (&[0xc7, 0x05, 0x10, 0, 0, 0, 0x00, 0x00, 0xc0, 0xfe], store_imm(10, 4, 0xfec0_0000)),
            // movq $0xffffffffffffffff,(%rax): imm32 sign-extended
            (&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], store_imm(7, 8, u64::MAX)),
            // movq $0x7fffffff,(%rax): positive imm32 stays positive
            (&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0x7f], store_imm(7, 8, 0x7fff_ffff)),
            // movw $0x1234,(%rax)
            (&[0x66, 0xc7, 0x00, 0x34, 0x12], store_imm(5, 2, 0x1234)),
            // movb $0x7f,(%rax)
            (&[0xc6, 0x00, 0x7f], store_imm(3, 1, 0x7f)),
            // mov %ax,(%rcx)
            (&[0x66, 0x89, 0x01], store_reg(3, 2, RAX, false)),
            // mov %ah,(%rax)
            (&[0x88, 0x20], store_reg(2, 1, RAX, true)),
            // mov %spl,(%rax): any REX turns AH's encoding into SPL
            (&[0x40, 0x88, 0x20], store_reg(3, 1, RSP, false)),
            // mov (%rcx),%ch
            (&[0x8a, 0x29], MmioInsn { len: 2, width: 1, kind: load(RCX, true, None, 1) }),
            // movzbl (%rcx),%eax
            (&[0x0f, 0xb6, 0x01], load_reg(3, 1, RAX, Some(1), 4)),
            // movzwq (%rcx),%rax
            (&[0x48, 0x0f, 0xb7, 0x01], load_reg(4, 2, RAX, Some(2), 8)),
            // movzbw (%rcx),%dx
            (&[0x66, 0x0f, 0xb6, 0x11], load_reg(4, 1, RDX, Some(1), 2)),
            // mov 0xfec00000,%eax: SIB with no base, disp32
            (&[0x8b, 0x04, 0x25, 0x00, 0x00, 0xc0, 0xfe], load_reg(7, 4, RAX, None, 4)),
            // mov 0x100(%rsp),%eax: SIB + disp32
            (&[0x8b, 0x84, 0x24, 0x00, 0x01, 0x00, 0x00], load_reg(7, 4, RAX, None, 4)),
            // mov %eax,(%r13): rm 101 with REX.B and mod 1 is r13 + disp8
            (&[0x41, 0x89, 0x45, 0x00], store_reg(4, 4, RAX, false)),
            // mov %ds:(%edx),%eax with addr32: prefixes are skipped
            (&[0x3e, 0x67, 0x8b, 0x02], load_reg(4, 4, RAX, None, 4)),
            // 66 then REX.W: REX.W wins
            (&[0x66, 0x48, 0x89, 0x01], store_reg(4, 8, RAX, false)),
            // REX.W then 66: the REX is not last, so it is ignored
            (&[0x48, 0x66, 0x89, 0x01], store_reg(4, 2, RAX, false)),
            // cmp %eax,0x10(%rdx): memory minus register
            (&[0x39, 0x42, 0x10], cmp_reg(3, 4, RAX, false, false)),
            // cmp (%rdx),%ecx: register minus memory
            (&[0x3b, 0x0a], cmp_reg(2, 4, RCX, false, true)),
            // cmp %ah,(%rax)
            (&[0x38, 0x20], cmp_reg(2, 1, RAX, true, false)),
            // cmp (%rax),%r8
            (&[0x4c, 0x3b, 0x00], cmp_reg(3, 8, 8, false, true)),
            // cmpl $0x11,0x10(%rax): imm8 sign-extended
            (&[0x83, 0x78, 0x10, 0x11], cmp_imm(4, 4, 0x11)),
            // cmpq $-1,(%rax)
            (&[0x48, 0x83, 0x38, 0xff], cmp_imm(4, 8, u64::MAX)),
            // cmpw $-2,(%rax)
            (&[0x66, 0x83, 0x38, 0xfe], cmp_imm(4, 2, 0xfffe)),
            // cmpl $0xfec00000,(%rax)
            (&[0x81, 0x38, 0x00, 0x00, 0xc0, 0xfe], cmp_imm(6, 4, 0xfec0_0000)),
            // cmpb $0x80,(%rax)
            (&[0x80, 0x38, 0x80], cmp_imm(3, 1, 0x80)),
            // test %edx,(%rax)
            (&[0x85, 0x10], test_reg(2, 4, RDX, false)),
            // test %dh,(%rax)
            (&[0x84, 0x30], test_reg(2, 1, RDX, true)),
            // testl $0x10000,0x10(%rax): Linux's masked-bit check, folded into a test
            (&[0xf7, 0x40, 0x10, 0x00, 0x00, 0x01, 0x00], test_imm(7, 4, 0x1_0000)),
            // testb $0x1,(%rax)
            (&[0xf6, 0x00, 0x01], test_imm(3, 1, 1)),
            // testq $-16,(%rax): imm32 sign-extended
            (&[0x48, 0xf7, 0x00, 0xf0, 0xff, 0xff, 0xff], test_imm(7, 8, 0xffff_ffff_ffff_fff0)),
        ];
        for (bytes, want) in table {
            assert_eq!(decode(bytes), Ok(*want), "{bytes:02x?}");
            // Trailing bytes (the next instructions) change nothing.
            let mut longer = bytes.to_vec();
            longer.extend_from_slice(&[0x90; 15]);
            assert_eq!(decode(&longer), Ok(*want), "{bytes:02x?} + nops");
        }
    }

    #[test]
    fn other_instructions_are_refused_with_their_opcode() {
        use DecodeError::{ModRmReg, Prefix, RegisterOperand, Truncated};
        let table: &[(&[u8], DecodeError)] = &[
            (
                &[0xf0, 0x89, 0x02],
                Prefix {
                    prefix: 0xf0,
                    opcode: Opcode::One(0x89),
                },
            ),
            (
                &[0xf3, 0x48, 0xa5],
                Prefix {
                    prefix: 0xf3,
                    opcode: Opcode::One(0xa5),
                },
            ),
            (&[0x89, 0xc2], RegisterOperand(Opcode::One(0x89))),
            (
                &[0xc7, 0xc0, 1, 0, 0, 0],
                RegisterOperand(Opcode::One(0xc7)),
            ),
            (
                &[0xc7, 0x08, 1, 0, 0, 0],
                ModRmReg {
                    opcode: Opcode::One(0xc7),
                    reg: 1,
                },
            ),
            (&[0x01, 0x02], DecodeError::Opcode(Opcode::One(0x01))),
            // add, or and sub of an immediate write what they read: refused.
            (
                &[0x83, 0x00, 1],
                ModRmReg {
                    opcode: Opcode::One(0x83),
                    reg: 0,
                },
            ),
            (
                &[0x81, 0x08, 1, 0, 0, 0],
                ModRmReg {
                    opcode: Opcode::One(0x81),
                    reg: 1,
                },
            ),
            // not and neg.
            (
                &[0xf7, 0x10],
                ModRmReg {
                    opcode: Opcode::One(0xf7),
                    reg: 2,
                },
            ),
            (&[0x85, 0xc0], RegisterOperand(Opcode::One(0x85))),
            (&[0x81, 0x38, 0, 0], Truncated { len: 4 }),
            (&[0x0f, 0xb8, 0x01], DecodeError::Opcode(Opcode::Two(0xb8))),
            (&[0xc4, 0xe2, 0x79], DecodeError::Opcode(Opcode::One(0xc4))),
            (&[0x48], Truncated { len: 1 }),
            (&[], Truncated { len: 0 }),
            (&[0x8b], Truncated { len: 1 }),
            (&[0x0f], Truncated { len: 1 }),
            (&[0x8b, 0x05, 0, 0], Truncated { len: 4 }),
            (&[0x89, 0x04], Truncated { len: 2 }),
            (&[0xc7, 0x00, 1, 0, 0], Truncated { len: 5 }),
        ];
        for (bytes, want) in table {
            assert_eq!(decode(bytes), Err(*want), "{bytes:02x?}");
        }
    }

    #[test]
    fn more_than_fifteen_bytes_is_too_long() {
        let mut bytes = [0x66u8; 16];
        bytes[14] = 0x89;
        bytes[15] = 0x02;
        assert_eq!(decode(&bytes), Err(DecodeError::TooLong));
        // Fifteen exactly is fine.
        assert_eq!(decode(&bytes[2..]).map(|i| i.len), Ok(14));
        let mut fifteen = [0x66u8; 15];
        fifteen[13] = 0x89;
        fifteen[14] = 0x02;
        assert_eq!(decode(&fifteen).map(|i| (i.len, i.width)), Ok((15, 2)));
    }

    #[test]
    fn errors_name_problem_and_opcode() {
        let msg = |bytes: &[u8]| std::format!("{}", decode(bytes).unwrap_err());
        assert_eq!(
            msg(&[0xf0, 0x0f, 0xb1, 0x11]),
            "MMIO instruction 0f b1 has a LOCK prefix (f0)"
        );
        assert_eq!(
            msg(&[0x01, 0x02]),
            "MMIO instruction 01 is not an emulated move or compare"
        );
        assert_eq!(
            msg(&[0x8b, 0xc0]),
            "MMIO instruction 8b has a register operand (ModRM mod 3)"
        );
        assert_eq!(
            msg(&[0xc6, 0x38]),
            "MMIO instruction c6 /7 is not a move or compare"
        );
        assert_eq!(
            msg(&[0x8b]),
            "MMIO instruction runs past the 1 bytes fetched"
        );
    }

    fn regs() -> [u64; 16] {
        core::array::from_fn(|i| {
            0x1111_1111_1111_1111u64.wrapping_mul(i as u64 + 1) ^ 0x8070_6050_4030_2010
        })
    }

    #[test]
    fn stores_write_the_low_bytes_or_the_high_byte() {
        let mut r = [0; 16];
        r[0] = 0x1122_3344_5566_7788;
        r[2] = 0xaabb_ccdd_eeff_0011;
        let value = |bytes: &[u8]| decode(bytes).unwrap().store_value(&r);
        assert_eq!(value(&[0x89, 0x02]), 0x5566_7788);
        assert_eq!(value(&[0x48, 0x89, 0x02]), 0x1122_3344_5566_7788);
        assert_eq!(value(&[0x66, 0x89, 0x02]), 0x7788);
        assert_eq!(value(&[0x88, 0x02]), 0x88); // al
        assert_eq!(value(&[0x88, 0x20]), 0x77); // ah
        assert_eq!(value(&[0x88, 0x32]), 0x00); // dh
        assert_eq!(
            value(&[0x48, 0xc7, 0x00, 0xfe, 0xff, 0xff, 0xff]),
            0xffff_ffff_ffff_fffe
        );
        assert_eq!(value(&[0xc7, 0x00, 0xfe, 0xff, 0xff, 0xff]), 0xffff_fffe);
        assert_eq!(value(&[0x8b, 0x02]), 0); // a load stores nothing
    }

    #[test]
    fn loads_follow_the_partial_register_rules() {
        let start = 0x1122_3344_5566_7788;
        let after = |bytes: &[u8], value: u64| {
            let mut r = [start; 16];
            decode(bytes).unwrap().complete_load(&mut r, value);
            r
        };
        let v = 0xaabb_ccdd_eeff_0102;
        // 32-bit destination: zero-extended to 64.
        assert_eq!(after(&[0x8b, 0x02], v)[0], 0xeeff_0102);
        assert_eq!(after(&[0x48, 0x8b, 0x02], v)[0], v);
        // 16 and 8 bits merge into the low bits.
        assert_eq!(after(&[0x66, 0x8b, 0x02], v)[0], 0x1122_3344_5566_0102);
        assert_eq!(after(&[0x8a, 0x02], v)[0], 0x1122_3344_5566_7702);
        // AH..BH: bits 15:8 of RAX..RBX.
        let r = after(&[0x8a, 0x3a], v); // mov (%rdx),%bh
        assert_eq!(r[3], 0x1122_3344_5566_0288);
        assert_eq!(r[7], start);
        // With REX, the same encoding is DIL.
        assert_eq!(after(&[0x40, 0x8a, 0x3a], v)[7], 0x1122_3344_5566_7702);
        // movzx.
        assert_eq!(after(&[0x0f, 0xb6, 0x02], v)[0], 0x02);
        assert_eq!(after(&[0x48, 0x0f, 0xb7, 0x02], v)[0], 0x0102);
        assert_eq!(
            after(&[0x66, 0x0f, 0xb6, 0x02], v)[0],
            0x1122_3344_5566_0002
        );
        // R8..R15.
        assert_eq!(after(&[0x44, 0x8b, 0x3a], v)[15], 0xeeff_0102);
        // A store leaves the registers alone.
        assert_eq!(after(&[0x89, 0x02], v), [start; 16]);
    }

    #[test]
    fn compares_set_the_flags_and_nothing_else() {
        let start = 0x1122_3344_5566_7788;
        let after = |bytes: &[u8], value: u64| {
            let mut r = [start; 16];
            let mut rflags = 0x202 | ARITHMETIC_FLAGS;
            decode(bytes)
                .unwrap()
                .complete_read(&mut r, &mut rflags, value);
            assert_eq!(r, [start; 16], "{bytes:02x?}: a compare writes no register");
            assert_eq!(rflags & !ARITHMETIC_FLAGS, 0x202, "{bytes:02x?}");
            rflags & ARITHMETIC_FLAGS
        };
        // cmp %eax,(%rdx) with memory equal to EAX: ZF and PF.
        assert_eq!(after(&[0x39, 0x02], 0x5566_7788), ZF | PF);
        // Memory below EAX: a borrow, and the result negative.
        assert_eq!(after(&[0x39, 0x02], 0x5566_7787) & (CF | SF | ZF), CF | SF);
        // cmp (%rdx),%eax is EAX minus memory: no borrow the other way.
        assert_eq!(after(&[0x3b, 0x02], 0x5566_7787) & (CF | ZF), 0);
        // cmpb $0x80,(%rax) with 0x7f: signed overflow.
        assert_eq!(
            after(&[0x80, 0x38, 0x80], 0x7f) & (OF | CF | SF),
            OF | CF | SF
        );
        // testl $0x10000,(%rax): the bit set, then clear.
        assert_eq!(after(&[0xf7, 0x00, 0, 0, 1, 0], 0x1_0000) & ZF, 0);
        assert_eq!(
            after(&[0xf7, 0x00, 0, 0, 1, 0], 0xfffe_ffff) & (ZF | CF | OF),
            ZF
        );
        // test %ah,(%rax) uses bits 15:8 of RAX (0x77).
        assert_eq!(after(&[0x84, 0x20], 0x88) & ZF, ZF);
    }

    proptest! {
        /// Whatever the guest's code holds, decoding never panics and never claims more
        /// bytes than it was given or than an instruction may have.
        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Ok(insn) = decode(&bytes) {
                prop_assert!(usize::from(insn.len) <= bytes.len());
                prop_assert!(usize::from(insn.len) <= MAX_INSN_LEN);
                prop_assert!(matches!(insn.width, 1 | 2 | 4 | 8));
            }
        }

        /// Moves built from random prefixes, opcode, ModRM and trailing bytes: decoding
        /// and emulating never panic, a load writes only its own register, and a store's
        /// value fits its width.
        #[test]
        fn emulation_touches_only_the_destination(
            prefixes in proptest::collection::vec(
                prop_oneof![Just(0x66u8), Just(0x67), Just(0x3e), 0x40u8..0x50], 0..4),
            opcode in prop_oneof![
                Just(Vec::from([0x88u8])), Just(Vec::from([0x89])), Just(Vec::from([0x8a])),
                Just(Vec::from([0x8b])), Just(Vec::from([0xc6])), Just(Vec::from([0xc7])),
                Just(Vec::from([0x0f, 0xb6])), Just(Vec::from([0x0f, 0xb7])),
                Just(Vec::from([0x38])), Just(Vec::from([0x39])), Just(Vec::from([0x3a])),
                Just(Vec::from([0x3b])), Just(Vec::from([0x80])), Just(Vec::from([0x81])),
                Just(Vec::from([0x83])), Just(Vec::from([0x84])), Just(Vec::from([0x85])),
                Just(Vec::from([0xf6])), Just(Vec::from([0xf7])),
            ],
            rest in proptest::collection::vec(any::<u8>(), 0..12),
            value in any::<u64>(),
        ) {
            let bytes: Vec<u8> = prefixes.iter().chain(&opcode).chain(&rest).copied().collect();
            let Ok(insn) = decode(&bytes) else { return Ok(()) };
            let before = regs();
            prop_assert!(insn.store_value(&before) & !mask(insn.width) == 0);
            let mut after = before;
            let mut rflags = 0x202;
            insn.complete_read(&mut after, &mut rflags, value);
            prop_assert_eq!(rflags & !ARITHMETIC_FLAGS, 0x202);
            for i in 0..16 {
                let dest = match insn.kind {
                    Access::Load { reg, .. } => usize::from(reg) == i,
                    Access::Store { .. } | Access::Compare { .. } => false,
                };
                if !dest {
                    prop_assert_eq!(after[i], before[i]);
                }
            }
        }
    }
}
