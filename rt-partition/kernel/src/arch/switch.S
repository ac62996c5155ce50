/*
 * Interrupt entry and the context switch.
 *
 * Interrupt stubs (timer, rescheduling IPI, doorbell, device lines; their vectors are the ABI's, passed in
 * by arch/mod.rs as operands) are entered on an IST stack (the prebuilt `core`
 * uses the red zone, so nothing may be pushed below an interrupted RSP). The stub moves the
 * hardware frame to the interrupted task's own stack, 128 bytes (the red zone) below its RSP,
 * leaves the IST stack and continues there: so the handler may switch tasks, and the
 * interrupted task's frame stays on its own stack until it is switched back in. The full
 * x87/SSE state is saved with FXSAVE beside the frame, because the handler's Rust code may
 * use any XMM register.
 *
 * `rt_switch(save, next)` is a plain function call: it saves the callee-saved registers and
 * the SSE/x87 control words (MXCSR, FCW) on the current stack, stores RSP at `*save` and
 * resumes the task whose saved RSP is `next`. Everything else is caller-saved under the SysV
 * ABI, and a task interrupted asynchronously has its full state in its interrupt frame.
 * Called with interrupts disabled; the task switched in restores its own interrupt flag (an
 * API call's saved flags, or IRETQ).
 */

    .macro IRQ name, vector
    .balign 16
    .global irq_stub_\name
irq_stub_\name:
    push %rax
    push %rbx
    /* [rsp]=rbx [8]=rax [16]=RIP [24]=CS [32]=RFLAGS [40]=RSP [48]=SS */
    mov 40(%rsp), %rax
    sub $128, %rax
    and $~0xf, %rax
    mov 48(%rsp), %rbx
    mov %rbx, -8(%rax)
    mov 40(%rsp), %rbx
    mov %rbx, -16(%rax)
    mov 32(%rsp), %rbx
    mov %rbx, -24(%rax)
    mov 24(%rsp), %rbx
    mov %rbx, -32(%rax)
    mov 16(%rsp), %rbx
    mov %rbx, -40(%rax)
    lea -40(%rax), %rax
    pop %rbx
    xchg %rax, (%rsp)
    pop %rsp
    push $\vector
    jmp irq_common
    .endm

    .text
    IRQ timer, {timer}
    IRQ reschedule, {reschedule}
    IRQ doorbell, {doorbell}
    /* The device lines: one stub per line, vector {device_first} + line, and a table of
     * their addresses for the IDT (interrupts.rs). arch/mod.rs checks that the ABI has
     * exactly these 16 lines. */
    .irp line, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    IRQ device\line, ({device_first} + \line)
    .endr

    .pushsection .rodata
    .balign 8
    .global irq_device_stubs
irq_device_stubs:
    .irp line, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .quad irq_stub_device\line
    .endr
    .popsection

irq_common:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    push %rbp
    mov %rsp, %rbp
    sub $512, %rsp
    and $~0xf, %rsp
    fxsave64 (%rsp)
    mov 80(%rbp), %rdi                  /* the vector */
    call irq_handler
    fxrstor64 (%rsp)
    mov %rbp, %rsp
    pop %rbp
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $8, %rsp
    iretq

    /* The spurious-interrupt vector: no EOI, nothing to do. */
    .balign 16
    .global irq_spurious
irq_spurious:
    iretq

    .balign 16
    .global rt_switch
rt_switch:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    sub $16, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    mov %rsp, (%rdi)
    mov %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    add $16, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

    /* First code of every task: `rt_switch` returns here with r12 = entry, r13 = argument. */
    .balign 16
    .global task_start
task_start:
    and $~0xf, %rsp
    call rt_trace_irqs_on               /* the section that switched here ends */
    mov %r13, %rdi
    sti
    call *%r12
    call task_exited
1:  cli
    hlt
    jmp 1b
