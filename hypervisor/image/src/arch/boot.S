/*
 * Multiboot2 header and the 32-bit entry of the bootstrap CPU.
 *
 * GRUB enters `_start` in 32-bit protected mode with paging off, EAX holding the
 * multiboot2 magic and EBX the physical address of the boot information. This code
 * zeroes .bss, identity-maps the first 4 GiB with 2 MiB pages, enters long mode,
 * enables SSE (the prebuilt `core` uses it) and calls `bsp_entry(magic, info)`.
 * Anything it cannot do (no long mode) is reported on COM1 before halting. The steps
 * shared with the RT kernel are the BOOT_* macros of `bulkhead-x86` (boot32.S).
 */

    /* Modules start on page boundaries. */
    BOOT_MULTIBOOT2_HEADER page_align_modules=1

    .section .boot32, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    mov %eax, %edi                      /* multiboot2 magic */
    mov %ebx, %esi                      /* boot information */

    /* Zero .bss (page tables and stacks live there). */
    mov $__bss_start, %eax
    mov $__bss_end, %ecx
    sub %eax, %ecx
    push %edi
    mov %eax, %edi
    xor %eax, %eax
    rep stosb
    pop %edi

    mov $boot_stack_top, %esp

    BOOT_REQUIRE_LONG_MODE no_long_mode
    BOOT_IDENTITY_MAP_4G
    BOOT_ENTER_LONG_MODE long_mode_entry, CR0_CD|CR0_NW

no_long_mode:
    mov $no_lm_msg, %esi
    BOOT_SAY_AND_HALT

    .code64
long_mode_entry:
    BOOT_LONG_MODE_SEGMENTS
    mov $boot_stack_top, %rsp
    /* edi = magic, esi = info address: already the first two SysV arguments. */
    mov %edi, %edi
    mov %esi, %esi
    call bsp_entry
6:  hlt
    jmp 6b

    .section .rodata
no_lm_msg:
    /* The last line is bulkhead_abi::console::HALTED (assembly cannot take a string). */
    .asciz "FATAL: this CPU has no 64-bit long mode\r\nbulkhead: halted\r\n"

    BOOT_GDT

    .section .bss
    BOOT_PAGE_TABLES
    .balign 16
boot_stack:
    .skip 256 * 1024
boot_stack_top:
