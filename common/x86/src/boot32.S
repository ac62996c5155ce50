/*
 * Assembler macros for the images' boot entry (each image's boot.S), which the loader
 * enters in 32-bit protected mode with paging off, and for this crate's AP trampoline. An
 * image's boot.S is assembled right after this file (the crate's build script hands its
 * path to the images); what differs per image (which entry magics, which CPU does what,
 * which stack, which Rust entry, the messages) stays there.
 */

    .set CR0_NW, 1 << 29
    .set CR0_CD, 1 << 30
    .set MB2_MAGIC, 0xE85250D6
    .set MB2_ARCH_I386, 0

/* The multiboot2 header, in section .multiboot2 (first in the image, see image.ld): with
 * \page_align_modules=1, a module alignment tag asks the loader to start modules on page
 * boundaries. */
    .macro BOOT_MULTIBOOT2_HEADER page_align_modules=0, entry32=
    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
    .ifnb \entry32
    /* Entry address tag: GRUB enters here instead of at the ELF entry. */
    .balign 8
    .short 3, 0
    .long 12
    .long \entry32
    .endif
    .if \page_align_modules
    /* Module alignment tag. */
    .balign 8
    .short 6, 0
    .long 8
    .endif
    /* End tag. */
    .balign 8
    .short 0, 0
    .long 8
mb2_header_end:
    .endm

/* Jumps to \fail unless the CPU has 64-bit long mode (CPUID.80000001h:EDX.LM[29]).
 * Clobbers eax, ebx, ecx, edx. */
    .macro BOOT_REQUIRE_LONG_MODE fail
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb \fail
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc \fail
    .endm

/* Fills the page tables of BOOT_PAGE_TABLES: PML4[0] -> PDPT; PDPT[0..4] -> PD0..PD3;
 * each PD maps 1 GiB with 2 MiB pages, present | writable; the top GiB (MMIO: local
 * APIC, IOAPIC, firmware) additionally cache-disabled. The tables must be zeroed.
 * Clobbers eax, ebx, ecx, edx. */
    .macro BOOT_IDENTITY_MAP_4G
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4
    mov $boot_pd, %eax
    mov $boot_pdpt, %ebx
    mov $4, %ecx
.Lboot_pdpte\@:
    mov %eax, %edx
    or $0x3, %edx
    mov %edx, (%ebx)
    add $4096, %eax
    add $8, %ebx
    loop .Lboot_pdpte\@

    mov $boot_pd, %ebx
    xor %ecx, %ecx
.Lboot_pde\@:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                      /* present | writable | page size */
    cmp $1536, %ecx
    jb .Lboot_cached\@
    or $0x18, %eax                      /* PWT | PCD for the top GiB */
.Lboot_cached\@:
    mov %eax, (%ebx, %ecx, 8)
    movl $0, 4(%ebx, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jb .Lboot_pde\@
    .endm

/* Enters long mode on the boot page tables and far-jumps to \entry (64-bit code, selector
 * 0x08 of BOOT_GDT): PAE and SSE (OSFXSR, OSXMMEXCPT: the prebuilt `core` uses it) in CR4,
 * LME and NXE in EFER, then paging and protection in CR0 with EM (and the bits in
 * \cr0_clear, e.g. CR0_CD|CR0_NW) cleared. Clobbers eax, ecx, edx. */
    .macro BOOT_ENTER_LONG_MODE entry, cr0_clear=0
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
    and $~((1 << 2) | (\cr0_clear)), %eax           /* clear EM */
    or $((1 << 31) | (1 << 1) | (1 << 5) | 1), %eax  /* PG | MP | NE | PE */
    mov %eax, %cr0

    lgdt boot_gdtr
    ljmp $0x08, $\entry
    .endm

/* Writes the NUL-terminated message at esi to COM1 and halts this CPU for good. */
    .macro BOOT_SAY_AND_HALT
.Lboot_say\@:
    lodsb
    test %al, %al
    jz .Lboot_halt\@
    mov $0x3f8, %dx
    out %al, %dx
    jmp .Lboot_say\@
.Lboot_halt\@:
    hlt
    jmp .Lboot_halt\@
    .endm

/* 64-bit code: the data selector 0x10 (of the boot GDT, and of the AP trampoline's) into
 * DS, ES and SS; FS and GS cleared. */
    .macro BOOT_LONG_MODE_SEGMENTS
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    .endm

/* The boot GDT (0x08: 64-bit code, 0x10: data) and `boot_gdtr`, in the current section. */
    .macro BOOT_GDT
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF            /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF            /* 0x10: data */
boot_gdt_end:
boot_gdtr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt
    .endm

/* The boot page tables (`boot_pml4`, `boot_pdpt`, `boot_pd`), in the current section
 * (.bss, which the image's boot.S zeroes before BOOT_IDENTITY_MAP_4G). */
    .macro BOOT_PAGE_TABLES
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .endm
