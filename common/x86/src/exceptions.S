/*
 * Exception entry stubs for vectors 0..31. Each pushes a uniform frame (vector and
 * error code, then the general registers; `ExceptionFrame` in idt.rs) and calls
 * `exception_handler` (idt.rs), which hands it to the image's report hook and halts the
 * CPU. The stubs run on IST stacks (see cpu.rs). Interrupt vectors are the images' own.
 */

    .macro EXC_NOERR n
    .balign 16
exc_\n:
    push $0
    push $\n
    jmp exception_common
    .endm

    .macro EXC_ERR n
    .balign 16
exc_\n:
    push $\n
    jmp exception_common
    .endm

    .text
    EXC_NOERR 0
    EXC_NOERR 1
    EXC_NOERR 2
    EXC_NOERR 3
    EXC_NOERR 4
    EXC_NOERR 5
    EXC_NOERR 6
    EXC_NOERR 7
    EXC_ERR 8
    EXC_NOERR 9
    EXC_ERR 10
    EXC_ERR 11
    EXC_ERR 12
    EXC_ERR 13
    EXC_ERR 14
    EXC_NOERR 15
    EXC_NOERR 16
    EXC_ERR 17
    EXC_NOERR 18
    EXC_NOERR 19
    EXC_NOERR 20
    EXC_ERR 21
    EXC_NOERR 22
    EXC_NOERR 23
    EXC_NOERR 24
    EXC_NOERR 25
    EXC_NOERR 26
    EXC_NOERR 27
    EXC_NOERR 28
    EXC_ERR 29
    EXC_ERR 30
    EXC_NOERR 31

exception_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    and $~0xf, %rsp
    call exception_handler
1:  cli
    hlt
    jmp 1b

    /* Writable before relocation, so that a position-independent host build links too. */
    .section .data.rel.ro, "aw"
    .balign 8
    .global exception_stubs
exception_stubs:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_\n
    .endr
