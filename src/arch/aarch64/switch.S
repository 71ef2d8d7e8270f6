/* SPDX-License-Identifier: MIT */
/*
 * AArch64 (AAPCS64) context switch for libbluelet.
 *
 * void bl__switch(void **save_sp, void *load_sp)
 *
 * Saves the callee-saved state of the caller on its own stack, stores sp in
 * *save_sp, loads load_sp and restores the context found there, returning
 * through its x30. Frame (176 bytes, 16-byte aligned), from sp up:
 *
 *    0 x19  8 x20  16 x21  24 x22  32 x23  40 x24  48 x25  56 x26
 *   64 x27 72 x28  80 x29  88 x30  96 d8 104 d9 112 d10 120 d11
 *  128 d12 136 d13 144 d14 152 d15  160 FPCR  168 (padding)
 *
 * A new thread's frame is prepared by C (ctx_init in sched.c): bit 63 of
 * the FPCR word set (the mark of a new thread), x19 = entry function, x20 =
 * its argument; bl__switch enters it by branching to bl__ctx_entry.
 *
 * Return addresses are not signed (no PAC), so the property note claims BTI
 * only; `bti c` marks each function entered by an indirect call.
 */
#if defined(__aarch64__)

/* CFI: the registers bl__switch saves are back in place. */
        .macro cfi_restore_saved
        .cfi_restore x19
        .cfi_restore x20
        .cfi_restore x21
        .cfi_restore x22
        .cfi_restore x23
        .cfi_restore x24
        .cfi_restore x25
        .cfi_restore x26
        .cfi_restore x27
        .cfi_restore x28
        .cfi_restore x29
        .cfi_restore x30
        .cfi_restore d8
        .cfi_restore d9
        .cfi_restore d10
        .cfi_restore d11
        .cfi_restore d12
        .cfi_restore d13
        .cfi_restore d14
        .cfi_restore d15
        .endm

        .text
        .globl  bl__switch
        .hidden bl__switch
        .type   bl__switch, %function
        .p2align 4
bl__switch:
        .cfi_startproc
        hint    #34                     /* bti c */
        sub     sp, sp, #176
        .cfi_adjust_cfa_offset 176
        stp     x19, x20, [sp, #0]
        .cfi_rel_offset x19, 0
        .cfi_rel_offset x20, 8
        stp     x21, x22, [sp, #16]
        .cfi_rel_offset x21, 16
        .cfi_rel_offset x22, 24
        stp     x23, x24, [sp, #32]
        .cfi_rel_offset x23, 32
        .cfi_rel_offset x24, 40
        stp     x25, x26, [sp, #48]
        .cfi_rel_offset x25, 48
        .cfi_rel_offset x26, 56
        stp     x27, x28, [sp, #64]
        .cfi_rel_offset x27, 64
        .cfi_rel_offset x28, 72
        stp     x29, x30, [sp, #80]
        .cfi_rel_offset x29, 80
        .cfi_rel_offset x30, 88
        stp     d8, d9, [sp, #96]
        .cfi_rel_offset d8, 96
        .cfi_rel_offset d9, 104
        stp     d10, d11, [sp, #112]
        .cfi_rel_offset d10, 112
        .cfi_rel_offset d11, 120
        stp     d12, d13, [sp, #128]
        .cfi_rel_offset d12, 128
        .cfi_rel_offset d13, 136
        stp     d14, d15, [sp, #144]
        .cfi_rel_offset d14, 144
        .cfi_rel_offset d15, 152
        mrs     x9, fpcr
        str     x9, [sp, #160]

        mov     x9, sp
        str     x9, [x0]                /* save the old context */
        mov     sp, x1                  /* switch to the new one */
.Lload:
        ldr     x9, [sp, #160]
        mrs     x10, fpcr
        cmp     x9, x10
        b.ne    2f                      /* FPCR differs, or a new thread */
1:
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        add     sp, sp, #176
        .cfi_remember_state
        .cfi_adjust_cfa_offset -176
        /* Restored: the frame below sp is free again (a signal frame may
         * overwrite it), so the registers are where they were at entry. */
        cfi_restore_saved
        ret
        .cfi_restore_state
2:
        tbnz    x9, #63, 3f
        msr     fpcr, x9                /* writing FPCR is slow: only on change */
        b       1b
3:
        /* A new thread (bit 63 of its FPCR word, which is RES0). It is
         * entered by a branch, not by `ret`: the `bl` that brought us here
         * set a return-predictor entry that the thread's last switch pops
         * (bl__switch_final returns with `ret`), so calls and returns stay
         * paired, and a `ret` here would always be mispredicted. */
        and     x9, x9, #0x7fffffffffffffff
        cmp     x9, x10
        b.eq    4f
        msr     fpcr, x9
4:
        ldp     x19, x20, [sp, #0]      /* thread function, argument */
        add     sp, sp, #176
        .cfi_adjust_cfa_offset -176
        cfi_restore_saved
        b       bl__ctx_entry
        .cfi_endproc
        .size   bl__switch, .-bl__switch

/*
 * bl__switch_final(load_sp): the last switch of an ending thread. Branched
 * to (not called) from thread_end in sched.c; loads the context at load_sp
 * as bl__switch does, saving nothing. Its `ret` pops the return-predictor
 * entry of the `bl` that first switched into the ending thread (see 3 in
 * bl__switch).
 */
        .globl  bl__switch_final
        .hidden bl__switch_final
        .type   bl__switch_final, %function
        .p2align 4
bl__switch_final:
        .cfi_startproc
        .cfi_undefined x30
        hint    #34                     /* bti c */
        mov     sp, x0
        b       .Lload
        .cfi_endproc
        .size   bl__switch_final, .-bl__switch_final

/*
 * First code run on a new green thread's stack, branched to by bl__switch
 * (see 3 there). Calls x19(x20); the callee never returns. x30 is marked undefined
 * so that debuggers and unwinders stop here.
 */
        .globl  bl__ctx_entry
        .hidden bl__ctx_entry
        .type   bl__ctx_entry, %function
        .p2align 4
bl__ctx_entry:
        .cfi_startproc
        .cfi_undefined x30
        hint    #34                     /* bti c */
        mov     x29, #0
        mov     x0, x20
        /* Enter x19 by a branch with x30 set by hand (a label here, so that
         * unwinders still end in this function): a `blr` would leave an
         * entry on the return-address predictor that no `ret` pops, and the
         * rets after this thread's last switch would all be mispredicted.
         * x16: a `bti c` landing pad accepts BR only through x16/x17. */
        adr     x30, 1f
        mov     x16, x19
        br      x16
1:      brk     #0
        .cfi_endproc
        .size   bl__ctx_entry, .-bl__ctx_entry

/* GNU property note: this object supports BTI, and nothing else. */
        .section .note.gnu.property, "a"
        .p2align 3
        .long   4                       /* name size: "GNU\0" */
        .long   16                      /* descriptor size */
        .long   5                       /* NT_GNU_PROPERTY_TYPE_0 */
        .asciz  "GNU"
        .long   0xc0000000              /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
        .long   4                       /* data size */
        .long   1                       /* GNU_PROPERTY_AARCH64_FEATURE_1_BTI */
        .long   0                       /* padding to 8 bytes */

#endif /* __aarch64__ */

        .section .note.GNU-stack, "", %progbits
