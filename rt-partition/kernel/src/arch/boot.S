/*
 * Multiboot2 header and the 32-bit entry of the RT kernel, for both ways in:
 *
 * - bare: GRUB enters `_start` on the bootstrap CPU with EAX = multiboot2 magic and
 *   EBX = boot information; ESI is undefined and taken as CPU index 0;
 * - under the hypervisor: every partition CPU enters `_start` with EAX = RT_BOOT_MAGIC,
 *   EBX = guest-physical address of the RtBootInfo, ESI = the CPU's partition index.
 *
 * In both, 32-bit protected mode with paging off. CPU index 0 zeroes .bss, builds the page
 * tables (first 4 GiB identity-mapped with 2 MiB pages; the top GiB uncached for the local
 * APIC and other MMIO) and then releases the other CPUs (`boot_tables_ready`, in .data so
 * that zeroing .bss cannot race with it). Every CPU takes its own boot stack by index, enters
 * long mode, enables SSE (the prebuilt `core` uses it) and calls
 * `rt_entry(magic, info, index)`. Anything it cannot do is reported on COM1 before halting.
 */

    .set MB2_MAGIC, 0xE85250D6
    .set MB2_ARCH_I386, 0
    .set BOOT_STACK_SIZE, 64 * 1024
    .set MAX_CPUS, 8

    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
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
    mov %eax, %edi                      /* magic */
    mov %ebx, %ebp                      /* boot information */
    cmp $0x36d76289, %eax               /* multiboot2: GRUB enters the boot CPU only */
    jne 1f
    xor %esi, %esi
1:  cmp $MAX_CPUS, %esi
    jae too_many_cpus
    test %esi, %esi
    jnz wait_for_tables

    /* CPU 0: zero .bss (page tables and stacks live there). */
    push %edi
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    pop %edi

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
2:  mov %eax, %edx
    or $0x3, %edx
    mov %edx, (%ebx)
    add $4096, %eax
    add $8, %ebx
    loop 2b

    mov $boot_pd, %ebx
    xor %ecx, %ecx
3:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                      /* present | writable | page size */
    cmp $1536, %ecx
    jb 4f
    or $0x18, %eax                      /* PWT | PCD for the top GiB */
4:  mov %eax, (%ebx, %ecx, 8)
    movl $0, 4(%ebx, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jb 3b
    movl $1, boot_tables_ready
    jmp enter_long_mode

wait_for_tables:
    pause
    cmpl $0, boot_tables_ready
    je wait_for_tables

enter_long_mode:
    /* This CPU's boot stack: boot_stacks + (index + 1) * BOOT_STACK_SIZE. */
    mov %esi, %eax
    inc %eax
    imul $BOOT_STACK_SIZE, %eax
    add $boot_stacks, %eax
    mov %eax, %esp

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
    and $~((1 << 2) | (1 << 30) | (1 << 29)), %eax  /* clear EM, CD, NW */
    or $((1 << 31) | (1 << 1) | (1 << 5) | 1), %eax  /* PG | MP | NE | PE */
    mov %eax, %cr0

    lgdt boot_gdtr
    ljmp $0x08, $long_mode_entry

no_long_mode:
    mov $no_lm_msg, %esi
    jmp say_and_halt
too_many_cpus:
    mov $too_many_msg, %esi
say_and_halt:
5:  lodsb
    test %al, %al
    jz 6f
    mov $0x3f8, %dx
    out %al, %dx
    jmp 5b
6:  hlt
    jmp 6b

    .code64
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    /* rt_entry(magic = edi, info = ebp, index = esi) */
    mov %edi, %edi
    mov %esi, %edx
    mov %ebp, %esi
    call rt_entry
7:  cli
    hlt
    jmp 7b

    .section .rodata
no_lm_msg:
    .asciz "FATAL: this CPU has no 64-bit long mode\r\nbulkhead-rt: halted\r\n"
too_many_msg:
    .asciz "FATAL: CPU index beyond the RT kernel's 8 CPUs\r\nbulkhead-rt: halted\r\n"

    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF            /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF            /* 0x10: data */
boot_gdt_end:
boot_gdtr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .data
    .balign 4
boot_tables_ready:
    .long 0

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
    .global boot_stacks
boot_stacks:
    .skip BOOT_STACK_SIZE * MAX_CPUS
