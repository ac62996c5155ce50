/*
 * VM entry and exit.
 *
 * u64 vmx_enter(VcpuState *state, u64 resume)
 *   Saves the host's callee-saved registers and FPU/SSE state, loads the guest's,
 *   writes HOST_RSP and executes VMLAUNCH (resume = 0) or VMRESUME. It "returns" in
 *   one of two ways:
 *   - a VM exit lands on vmx_exit_entry (HOST_RIP), which stores the guest registers
 *     and FPU state into *state, restores the host's and returns 0;
 *   - a failed VMLAUNCH/VMRESUME falls through and returns RFLAGS with bit 63 set
 *     (CF = VMfailInvalid, ZF = VMfailValid).
 *
 * VcpuState layout (vcpu.rs, asserted there): 15 GPRs at 0..120 in the order
 * rax rbx rcx rdx rsi rdi rbp r8..r15, guest FXSAVE area at 128, host at 640.
 */

    .set HOST_RSP, 0x6c14

    .text
    .global vmx_enter
vmx_enter:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    fxsave64 640(%rdi)
    fxrstor64 128(%rdi)
    push %rsi                   /* 8(%rsp): resume flag */
    push %rdi                   /* 0(%rsp): state */
    mov $HOST_RSP, %eax
    vmwrite %rsp, %rax
    jbe 2f
    cmpq $0, 8(%rsp)
    mov 0(%rdi), %rax
    mov 8(%rdi), %rbx
    mov 16(%rdi), %rcx
    mov 24(%rdi), %rdx
    mov 32(%rdi), %rsi
    mov 48(%rdi), %rbp
    mov 56(%rdi), %r8
    mov 64(%rdi), %r9
    mov 72(%rdi), %r10
    mov 80(%rdi), %r11
    mov 88(%rdi), %r12
    mov 96(%rdi), %r13
    mov 104(%rdi), %r14
    mov 112(%rdi), %r15
    mov 40(%rdi), %rdi
    je 1f
    vmresume
    jmp 2f
1:  vmlaunch
2:  pushfq
    pop %rax
    bts $63, %rax
    mov 0(%rsp), %rdi
    add $16, %rsp
    jmp restore_host

    .global vmx_exit_entry
vmx_exit_entry:
    push %rdi
    mov 8(%rsp), %rdi
    mov %rax, 0(%rdi)
    mov %rbx, 8(%rdi)
    mov %rcx, 16(%rdi)
    mov %rdx, 24(%rdi)
    mov %rsi, 32(%rdi)
    mov %rbp, 48(%rdi)
    mov %r8, 56(%rdi)
    mov %r9, 64(%rdi)
    mov %r10, 72(%rdi)
    mov %r11, 80(%rdi)
    mov %r12, 88(%rdi)
    mov %r13, 96(%rdi)
    mov %r14, 104(%rdi)
    mov %r15, 112(%rdi)
    pop %rax
    mov %rax, 40(%rdi)
    add $16, %rsp
    xor %eax, %eax
    /* Common tail: rdi = state, rax = return value, rsp at the saved host registers. */
restore_host:
    fxsave64 128(%rdi)
    fxrstor64 640(%rdi)
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
