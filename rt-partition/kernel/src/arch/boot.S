/*
 * Multiboot2 header and the two entries of the RT kernel:
 *
 * - bare: GRUB enters `_start` (the header's entry-address tag) on the bootstrap CPU in
 *   32-bit protected mode, paging off, with EAX = multiboot2 magic and EBX = boot
 *   information; ESI is undefined and taken as CPU index 0;
 * - under the hypervisor: every partition CPU enters `_start64` (the ELF entry) in 64-bit
 *   mode on the hypervisor's start-up page tables (first 4 GiB identity-mapped, the top GiB
 *   uncached, as below), with RDI = RT_BOOT_MAGIC, RSI = guest-physical address of the
 *   RtBootInfo, RDX = the CPU's partition index. `_start` with EAX = RT_BOOT_MAGIC,
 *   EBX = RtBootInfo and ESI = index is accepted too, for a loader that starts guests in
 *   32-bit mode.
 *
 * In 32-bit mode CPU index 0 zeroes .bss, builds the page
 * tables (first 4 GiB identity-mapped with 2 MiB pages; the top GiB uncached for the local
 * APIC and other MMIO) and then releases the other CPUs (`boot_tables_ready`, in .data so
 * that zeroing .bss cannot race with it). Every CPU takes its own boot stack by index, enters
 * long mode, enables SSE (the prebuilt `core` uses it) and calls
 * `rt_entry(magic, info, index)`. Anything it cannot do is reported on COM1 before halting.
 * The steps shared with the hypervisor are the BOOT_* macros of `bulkhead-x86` (boot32.S).
 */

    .set BOOT_STACK_SIZE, 64 * 1024
    .set MAX_CPUS, {max_cpus}           /* bulkhead_abi::limits::MAX_RT_CPUS */

    BOOT_MULTIBOOT2_HEADER entry32=_start

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
    .global _start64
_start64:
    cli
    cld
    mov %rdi, %r12                      /* magic */
    mov %rsi, %r13                      /* boot information */
    mov %rdx, %r14                      /* CPU index */
    cmp $MAX_CPUS, %r14
    jae halt64
    test %r14, %r14
    jnz 1f
    /* CPU 0: zero .bss (stacks live there); the page tables stay the hypervisor's. */
    mov $__bss_start, %rdi
    mov $__bss_end, %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    rep stosb
    movl $1, boot_tables_ready
    jmp 2f
1:  pause
    cmpl $0, boot_tables_ready
    je 1b
2:  lea 1(%r14), %rax
    imul $BOOT_STACK_SIZE, %rax
    add $boot_stacks, %rax
    mov %rax, %rsp
    lgdt boot_gdtr
    pushq $0x08
    pushq $3f
    lretq
3:  BOOT_LONG_MODE_SEGMENTS
    /* SSE on (the prebuilt `core` uses it): CR0.EM clear, MP set; CR4.OSFXSR/OSXMMEXCPT. */
    mov %cr0, %rax
    and $~(1 << 2), %rax
    or $(1 << 1), %rax
    mov %rax, %cr0
    mov %cr4, %rax
    or $((1 << 9) | (1 << 10)), %rax
    mov %rax, %cr4
    mov %r12d, %edi
    mov %r13d, %esi
    mov %r14d, %edx
    call rt_entry
halt64:
    cli
    hlt
    jmp halt64

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
    /* The last line is bulkhead_abi::console::RT_HALTED (assembly cannot take a string). */
    .asciz "FATAL: this CPU has no 64-bit long mode\r\nbulkhead-rt: halted\r\n"
too_many_msg:
    .asciz "FATAL: CPU index beyond the RT kernel's {max_cpus} CPUs\r\nbulkhead-rt: halted\r\n"

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
