/*
 * Multiboot2 header and the 32-bit entry of the bootstrap CPU.
 *
 * GRUB enters `_start` in 32-bit protected mode with paging off, EAX holding the
 * multiboot2 magic and EBX the physical address of the boot information. This code
 * zeroes .bss, identity-maps the first 4 GiB with 2 MiB pages, enters long mode,
 * enables SSE (the prebuilt `core` uses it) and calls `bsp_entry(magic, info)`.
 * Anything it cannot do (no long mode) is reported on COM1 before halting.
 */

    .set MB2_MAGIC, 0xE85250D6
    .set MB2_ARCH_I386, 0

    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
    /* Module alignment tag: modules start on page boundaries. */
    .balign 8
    .short 6, 0
    .long 8
    /* End tag. */
    .balign 8
    .short 0, 0
    .long 8
mb2_header_end:

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

    /* Long mode present? CPUID.80000001h:EDX.LM[29] */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc no_long_mode

    /* PML4[0] -> PDPT; PDPT[0..4] -> PD0..PD3; each PD maps 1 GiB with 2 MiB pages. */
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4
    mov $boot_pd, %eax
    mov $boot_pdpt, %ebx
    mov $4, %ecx
1:  mov %eax, %edx
    or $0x3, %edx
    mov %edx, (%ebx)
    add $4096, %eax
    add $8, %ebx
    loop 1b

    /* 2048 entries: present | writable | page size; the top GiB (MMIO: local APIC,
     * IOAPIC, firmware) additionally cache-disabled. */
    mov $boot_pd, %ebx
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    cmp $1536, %ecx
    jb 3f
    or $0x18, %eax                      /* PWT | PCD */
3:  mov %eax, (%ebx, %ecx, 8)
    movl $0, 4(%ebx, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jb 2b

    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $((1 << 5) | (1 << 9) | (1 << 10)), %eax     /* PAE | OSFXSR | OSXMMEXCPT */
    mov %eax, %cr4
    mov $0xC0000080, %ecx               /* IA32_EFER */
    rdmsr
    or $((1 << 8) | (1 << 11)), %eax    /* LME | NXE */
    wrmsr
    mov %cr0, %eax
    and $~(1 << 2), %eax                /* clear EM */
    or $((1 << 31) | (1 << 1) | (1 << 5) | 1), %eax  /* PG | MP | NE | PE */
    mov %eax, %cr0

    lgdt boot_gdtr
    ljmp $0x08, $long_mode_entry

no_long_mode:
    mov $no_lm_msg, %esi
4:  lodsb
    test %al, %al
    jz 5f
    mov $0x3f8, %dx
    out %al, %dx
    jmp 4b
5:  hlt
    jmp 5b

    .code64
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    /* edi = magic, esi = info address: already the first two SysV arguments. */
    mov %edi, %edi
    mov %esi, %esi
    call bsp_entry
6:  hlt
    jmp 6b

    .section .rodata
no_lm_msg:
    .asciz "FATAL: this CPU has no 64-bit long mode\r\nbulkhead: halted\r\n"

    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF            /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF            /* 0x10: data */
boot_gdt_end:
boot_gdtr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .bss
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .balign 16
boot_stack:
    .skip 64 * 1024
boot_stack_top:
