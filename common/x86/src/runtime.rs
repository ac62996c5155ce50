//! What a freestanding Rust image must supply that the prebuilt `core` expects from a
//! C library or an unwinder: the `mem*` functions and the unwinding personality (never
//! called: panics abort). Written by hand with `rep movsb`/`rep stosb`, so the compiler
//! cannot turn them back into calls to themselves.
//!
//! Behind the `runtime` feature, which only the image crates enable: each symbol here must be
//! defined exactly once in a final image, and a host build gets them from its C library and
//! `std` instead.
//!
//! `memcpy` and `memset` move eight bytes a step (`rep movsq`/`rep stosq`) and the rest a
//! byte at a time: a console line or a zeroed line buffer costs an eighth of the steps, which
//! matters where an emulator counts each step of a string instruction as an instruction, and
//! costs nothing where the CPU has fast byte strings.

/// # Safety
/// Standard C `memcpy` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: caller guarantees both ranges are valid and do not overlap; the quadwords then
    // the bytes cover exactly `n` bytes, each string instruction continuing where the last
    // one left RDI and RSI.
    unsafe {
        core::arch::asm!(
            "rep movsq",
            "mov rcx, {rest}",
            "rep movsb",
            rest = in(reg) n % 8,
            inout("rcx") n / 8 => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// # Safety
/// Standard C `memmove` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // Forward copy is safe: dest is below src or the ranges do not overlap.
        // SAFETY: caller guarantees validity of both ranges.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: backward copy with the direction flag, restored before returning.
    unsafe {
        core::arch::asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") dest.add(n).wrapping_sub(1) => _,
            inout("rsi") src.add(n).wrapping_sub(1) => _,
            options(nostack)
        );
    }
    dest
}

/// # Safety
/// Standard C `memset` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // The byte in every byte of a quadword.
    let pattern = u64::from(c as u8) * 0x0101_0101_0101_0101;
    // SAFETY: caller guarantees the range is valid; the quadwords then the bytes cover
    // exactly `n` bytes (RDI continues where the first store left it; AL is the pattern's
    // low byte, the fill byte).
    unsafe {
        core::arch::asm!(
            "rep stosq",
            "mov rcx, {rest}",
            "rep stosb",
            rest = in(reg) n % 8,
            inout("rcx") n / 8 => _,
            inout("rdi") dest => _,
            in("rax") pattern,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// # Safety
/// Standard C `memcmp` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: caller guarantees both ranges hold `n` bytes.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// Standard `bcmp` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// The prebuilt `core` was compiled with unwinding; with `panic = "abort"` this is
/// never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
