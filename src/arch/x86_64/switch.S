/* SPDX-License-Identifier: MIT */
/*
 * x86-64 SysV context switch for libbluelet.
 *
 * void bl__switch(void **save_sp, void *load_sp)
 *
 * Pushes the callee-saved state of the caller on its own stack, stores the
 * stack pointer in *save_sp, loads load_sp and pops the state of the context
 * found there, returning into it. Saved frame, from the new stack pointer up:
 *
 *    0  MXCSR (32 bits)       4  x87 control word (16 bits)   [8 bytes]
 *
 * MXCSR and the x87 control word are reloaded only when they differ from the
 * outgoing context's: the loads are slow and nearly every switch finds the
 * same values.
 *    8  r15   16 r14   24 r13   32 r12   40 rbx   48 rbp
 *   56  return address (pushed by the caller's `call`)
 *
 * A new thread's stack is prepared by C (ctx_init in sched.c) with the same
 * layout: bit 31 of the MXCSR word set (the mark of a new thread), r12 =
 * entry function, r13 = its argument; bl__switch enters it by jumping to
 * bl__ctx_entry.
 *
 * Shadow stacks (CET SHSTK) are not supported, so the property note claims
 * IBT only.
 */
#if defined(__x86_64__)

        .text
        .globl  bl__switch
        .hidden bl__switch
        .type   bl__switch, @function
        .p2align 4
bl__switch:
        .cfi_startproc
        endbr64
        /* Store the FP control state first, into the red zone slot that
         * becomes the frame's lowest word after the pushes below: the two
         * stores are slow, and the pushes run while they complete. */
        stmxcsr -56(%rsp)
        fnstcw  -52(%rsp)
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rbp, 0
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rbx, 0
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r12, 0
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r13, 0
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r14, 0
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r15, 0
        subq    $8, %rsp
        .cfi_adjust_cfa_offset 8
        movl    (%rsp), %eax            /* keep the old MXCSR and x87 CW */
        movzwl  4(%rsp), %ecx

        movq    %rsp, (%rdi)            /* save the old context */
        movq    %rsi, %rsp              /* switch to the new one */
.Lload:
        /* eax/ecx: the outgoing MXCSR and x87 CW. ldmxcsr and fldcw are
         * slow; most switches find the same values. A new thread's frame
         * has bit 31 set in its MXCSR word (reserved, zero in any real
         * MXCSR), so it always takes the out-of-line path at 2. */
        cmpl    (%rsp), %eax
        jne     2f
        cmpw    4(%rsp), %cx
        jne     3f
1:
        addq    $8, %rsp
        .cfi_remember_state
        .cfi_adjust_cfa_offset -8
        popq    %r15
        .cfi_adjust_cfa_offset -8
        popq    %r14
        .cfi_adjust_cfa_offset -8
        popq    %r13
        .cfi_adjust_cfa_offset -8
        popq    %r12
        .cfi_adjust_cfa_offset -8
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        ret
        .cfi_restore_state
2:
        movl    (%rsp), %edx
        testl   %edx, %edx
        js      4f
        ldmxcsr (%rsp)
        cmpw    4(%rsp), %cx
        je      1b
3:
        fldcw   4(%rsp)
        jmp     1b
4:
        /* A new thread. Its first instruction is reached by a jump, not
         * by `ret`: the `call` that brought us here pushed a return
         * address that the thread's last switch pops (bl__switch_final
         * returns with `ret`), so calls and returns stay paired for the
         * return-address predictor, and a `ret` here would always be
         * mispredicted. */
        andl    $0x7fffffff, %edx
        movl    %edx, (%rsp)
        cmpl    %edx, %eax
        je      5f
        ldmxcsr (%rsp)
5:
        cmpw    4(%rsp), %cx
        je      6f
        fldcw   4(%rsp)
6:
        movq    32(%rsp), %r12          /* thread function */
        movq    24(%rsp), %r13          /* its argument */
        addq    $64, %rsp
        .cfi_adjust_cfa_offset -64
        jmp     bl__ctx_entry
        .cfi_endproc
        .size   bl__switch, .-bl__switch

/*
 * bl__switch_final(load_sp): the last switch of an ending thread. Jumped to
 * (not called) from thread_end in sched.c; loads the context at load_sp as
 * bl__switch does, saving nothing. Its `ret` pops the return address that
 * the call which first switched into the ending thread pushed (see 4 in
 * bl__switch).
 */
        .globl  bl__switch_final
        .hidden bl__switch_final
        .type   bl__switch_final, @function
        .p2align 4
bl__switch_final:
        .cfi_startproc
        .cfi_undefined rip
        stmxcsr -8(%rsp)
        fnstcw  -4(%rsp)
        movl    -8(%rsp), %eax
        movzwl  -4(%rsp), %ecx
        movq    %rdi, %rsp
        jmp     .Lload
        .cfi_endproc
        .size   bl__switch_final, .-bl__switch_final

/*
 * First code run on a new green thread's stack, jumped to by bl__switch
 * (see 4 there). Calls r12(r13); the callee never returns. The return address is
 * marked undefined so that debuggers and unwinders stop here.
 */
        .globl  bl__ctx_entry
        .hidden bl__ctx_entry
        .type   bl__ctx_entry, @function
        .p2align 4
bl__ctx_entry:
        .cfi_startproc
        .cfi_undefined rip
        endbr64
        movq    %r13, %rdi
        xorl    %ebp, %ebp
        /* Enter r12 by a jump with a return address pushed by hand (a label
         * here, so that unwinders still end in this function): a `call`
         * would leave an entry on the return-address predictor that no
         * `ret` pops, and the rets after this thread's last switch would
         * all be mispredicted. */
        leaq    1f(%rip), %rax
        pushq   %rax
        jmpq    *%r12
1:      ud2
        .cfi_endproc
        .size   bl__ctx_entry, .-bl__ctx_entry

/* GNU property note: this object supports IBT (endbr64 at every indirect
 * branch target), and nothing else. */
        .section .note.gnu.property, "a"
        .p2align 3
        .long   4                       /* name size: "GNU\0" */
        .long   16                      /* descriptor size */
        .long   5                       /* NT_GNU_PROPERTY_TYPE_0 */
        .asciz  "GNU"
        .long   0xc0000002              /* GNU_PROPERTY_X86_FEATURE_1_AND */
        .long   4                       /* data size */
        .long   1                       /* GNU_PROPERTY_X86_FEATURE_1_IBT */
        .long   0                       /* padding to 8 bytes */

#endif /* __x86_64__ */

        .section .note.GNU-stack, "", @progbits
