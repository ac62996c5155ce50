/*
 * Application-processor start-up trampoline.
 *
 * Copied to AP_TRAMPOLINE_BASE (0x8000) before each INIT-SIPI-SIPI; the SIPI vector
 * 0x08 makes the AP start in real mode at CS:IP = 0800:0000. It switches to protected
 * mode, then long mode on the page tables of the CPU that started it (the parameter
 * block's CR3), and calls the image's Rust entry with the argument from the block the
 * starting CPU filled in (see `smp.rs`, `TrampolineParams`).
 * Every address is computed relative to the copy at 0x8000. Assembled after boot32.S,
 * whose macros it uses.
 */

    .set TRAMP_BASE, 0x8000

    .section .trampoline, "a"
    .code16
    .global ap_trampoline_start
    .global ap_trampoline_end
    .global ap_trampoline_params
ap_trampoline_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl tramp_gdtr - ap_trampoline_start
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(tramp32 - ap_trampoline_start + TRAMP_BASE)

    .code32
tramp32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $((1 << 5) | (1 << 9) | (1 << 10)), %eax     /* PAE | OSFXSR | OSXMMEXCPT */
    mov %eax, %cr4
    mov (tramp_cr3 - ap_trampoline_start + TRAMP_BASE), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $((1 << 8) | (1 << 11)), %eax    /* LME | NXE */
    wrmsr
    mov %cr0, %eax
    /* Clear EM, and CD and NW: an AP leaves INIT with caching disabled. */
    and $~((1 << 2) | (1 << 29) | (1 << 30)), %eax
    or $((1 << 31) | (1 << 1) | (1 << 5) | 1), %eax  /* PG | MP | NE | PE */
    mov %eax, %cr0
    ljmpl $0x18, $(tramp64 - ap_trampoline_start + TRAMP_BASE)

    .code64
tramp64:
    BOOT_LONG_MODE_SEGMENTS             /* boot32.S; 0x10 is data here too */
    mov (tramp_stack - ap_trampoline_start + TRAMP_BASE), %rsp
    mov (tramp_arg - ap_trampoline_start + TRAMP_BASE), %rdi
    mov (tramp_entry - ap_trampoline_start + TRAMP_BASE), %rax
    call *%rax
1:  hlt
    jmp 1b

    .balign 8
tramp_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF            /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF            /* 0x10: data */
    .quad 0x00AF9A000000FFFF            /* 0x18: 64-bit code */
tramp_gdt_end:
tramp_gdtr:
    .short tramp_gdt_end - tramp_gdt - 1
    .long tramp_gdt - ap_trampoline_start + TRAMP_BASE

    .balign 8
ap_trampoline_params:
tramp_cr3:
    .quad 0
tramp_stack:
    .quad 0
tramp_entry:
    .quad 0
tramp_arg:
    .quad 0
ap_trampoline_end:
