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
 * The steps shared with the hypervisor are the BOOT_* macros of `bulkhead-x86` (boot32.S).
 */

    .set BOOT_STACK_SIZE, 64 * 1024
    .set MAX_CPUS, 8

    BOOT_MULTIBOOT2_HEADER

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

    BOOT_REQUIRE_LONG_MODE no_long_mode
    BOOT_IDENTITY_MAP_4G
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

    BOOT_ENTER_LONG_MODE long_mode_entry, CR0_CD|CR0_NW

no_long_mode:
    mov $no_lm_msg, %esi
    jmp say_and_halt
too_many_cpus:
    mov $too_many_msg, %esi
say_and_halt:
    BOOT_SAY_AND_HALT

    .code64
long_mode_entry:
    BOOT_LONG_MODE_SEGMENTS
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

    BOOT_GDT

    .section .data
    .balign 4
boot_tables_ready:
    .long 0

    .section .bss
    BOOT_PAGE_TABLES
    .balign 16
    .global boot_stacks
boot_stacks:
    .skip BOOT_STACK_SIZE * MAX_CPUS
