/* SPDX-License-Identifier: MIT */
/*
 * test_core_regs.c - callee-saved registers survive context switches.
 *
 * core_check_regs(fn, pat) is written in assembly (a top-level asm block, one
 * version per architecture) so that the compiler cannot hide anything: it
 * saves the caller's callee-saved registers, loads the patterns pat[] into
 * every callee-saved register (and the floating-point control register(s)),
 * calls fn() - which switches to other green threads - then compares every
 * register with its pattern, restores the caller's registers and returns a
 * bitmask of the registers that differed.
 *
 *   x86-64:  bit 0 rbx, 1 rbp, 2 r12, 3 r13, 4 r14, 5 r15,
 *            6 MXCSR control bits (DAZ, masks, RC, FTZ), 7 x87 control word
 *            pat[0..5] registers, pat[6] MXCSR, pat[7] x87 CW
 *   AArch64: bits 0-9 x19-x28, 10 x29, 11-18 d8-d15, 19 FPCR (FZ/DN/RMode/AHP)
 *            pat[0..10] x19-x29, pat[11..18] d8-d15, pat[19] FPCR
 *
 * Several green threads run core_check_regs() at once, each with its own
 * patterns, so each one's registers are scribbled over by the others while
 * it is switched out. A positive control checks that the checker itself
 * notices a clobbered register.
 */
#include "core_util.h"

#include <stdint.h>

#if defined(__x86_64__)
#define NPAT 8
#define CLOBBER_EXPECT 0x5u /* rbx and r12 */
__asm__(
    "    .text\n"
    "    .globl core_check_regs\n"
    "    .type core_check_regs, @function\n"
    "    .p2align 4\n"
    "core_check_regs:\n"
    "    .cfi_startproc\n"
    "    endbr64\n"
    "    pushq %rbp\n"
    "    .cfi_adjust_cfa_offset 8\n"
    "    .cfi_rel_offset rbp, 0\n"
    "    pushq %rbx\n"
    "    .cfi_adjust_cfa_offset 8\n"
    "    .cfi_rel_offset rbx, 0\n"
    "    pushq %r12\n"
    "    .cfi_adjust_cfa_offset 8\n"
    "    .cfi_rel_offset r12, 0\n"
    "    pushq %r13\n"
    "    .cfi_adjust_cfa_offset 8\n"
    "    .cfi_rel_offset r13, 0\n"
    "    pushq %r14\n"
    "    .cfi_adjust_cfa_offset 8\n"
    "    .cfi_rel_offset r14, 0\n"
    "    pushq %r15\n"
    "    .cfi_adjust_cfa_offset 8\n"
    "    .cfi_rel_offset r15, 0\n"
    /* 0: saved MXCSR, 4: saved x87 CW, 8: pat, 16: scratch; the call
     * below is made with a 16-byte aligned stack. */
    "    subq $24, %rsp\n"
    "    .cfi_adjust_cfa_offset 24\n"
    "    stmxcsr 0(%rsp)\n"
    "    fnstcw 4(%rsp)\n"
    "    movq %rsi, 8(%rsp)\n"
    "    ldmxcsr 48(%rsi)\n"
    "    fldcw 56(%rsi)\n"
    "    movq 0(%rsi), %rbx\n"
    "    movq 8(%rsi), %rbp\n"
    "    movq 16(%rsi), %r12\n"
    "    movq 24(%rsi), %r13\n"
    "    movq 32(%rsi), %r14\n"
    "    movq 40(%rsi), %r15\n"
    "    callq *%rdi\n"
    "    movq 8(%rsp), %rsi\n"
    "    xorl %eax, %eax\n"
    "    cmpq 0(%rsi), %rbx\n"
    "    je 1f\n"
    "    orl $1, %eax\n"
    "1:  cmpq 8(%rsi), %rbp\n"
    "    je 1f\n"
    "    orl $2, %eax\n"
    "1:  cmpq 16(%rsi), %r12\n"
    "    je 1f\n"
    "    orl $4, %eax\n"
    "1:  cmpq 24(%rsi), %r13\n"
    "    je 1f\n"
    "    orl $8, %eax\n"
    "1:  cmpq 32(%rsi), %r14\n"
    "    je 1f\n"
    "    orl $16, %eax\n"
    "1:  cmpq 40(%rsi), %r15\n"
    "    je 1f\n"
    "    orl $32, %eax\n"
    "1:  stmxcsr 16(%rsp)\n"
    "    movl 16(%rsp), %ecx\n"
    "    andl $0xffc0, %ecx\n"
    "    movl 48(%rsi), %edx\n"
    "    andl $0xffc0, %edx\n"
    "    cmpl %edx, %ecx\n"
    "    je 1f\n"
    "    orl $64, %eax\n"
    "1:  fnstcw 16(%rsp)\n"
    "    movzwl 16(%rsp), %ecx\n"
    "    andl $0x0f3f, %ecx\n"
    "    movzwl 56(%rsi), %edx\n"
    "    andl $0x0f3f, %edx\n"
    "    cmpl %edx, %ecx\n"
    "    je 1f\n"
    "    orl $128, %eax\n"
    "1:  ldmxcsr 0(%rsp)\n"
    "    fldcw 4(%rsp)\n"
    "    addq $24, %rsp\n"
    "    .cfi_adjust_cfa_offset -24\n"
    "    popq %r15\n"
    "    .cfi_adjust_cfa_offset -8\n"
    "    popq %r14\n"
    "    .cfi_adjust_cfa_offset -8\n"
    "    popq %r13\n"
    "    .cfi_adjust_cfa_offset -8\n"
    "    popq %r12\n"
    "    .cfi_adjust_cfa_offset -8\n"
    "    popq %rbx\n"
    "    .cfi_adjust_cfa_offset -8\n"
    "    popq %rbp\n"
    "    .cfi_adjust_cfa_offset -8\n"
    "    ret\n"
    "    .cfi_endproc\n"
    "    .size core_check_regs, .-core_check_regs\n"
    /* Positive control: breaks the ABI on purpose (rbx, r12). */
    "    .globl core_clobber\n"
    "    .type core_clobber, @function\n"
    "    .p2align 4\n"
    "core_clobber:\n"
    "    endbr64\n"
    "    xorl %ebx, %ebx\n"
    "    xorl %r12d, %r12d\n"
    "    ret\n"
    "    .size core_clobber, .-core_clobber\n");
#elif defined(__aarch64__)
#define NPAT 20
#define CLOBBER_EXPECT ((1u << 2) | (1u << 12)) /* x21 and d9 */
__asm__(
    "    .text\n"
    "    .macro CORE_CHKX reg, off, bit\n"
    "    ldr x9, [x1, #\\off]\n"
    "    cmp \\reg, x9\n"
    "    b.eq 1f\n"
    "    orr x0, x0, #(1 << \\bit)\n"
    "1:\n"
    "    .endm\n"
    "    .macro CORE_CHKD reg, off, bit\n"
    "    ldr x9, [x1, #\\off]\n"
    "    fmov x10, \\reg\n"
    "    cmp x10, x9\n"
    "    b.eq 1f\n"
    "    orr x0, x0, #(1 << \\bit)\n"
    "1:\n"
    "    .endm\n"
    "    .globl core_check_regs\n"
    "    .type core_check_regs, %function\n"
    "    .p2align 4\n"
    "core_check_regs:\n"
    "    .cfi_startproc\n"
    "    hint #34\n"
    "    sub sp, sp, #176\n"
    "    .cfi_adjust_cfa_offset 176\n"
    "    stp x29, x30, [sp, #0]\n"
    "    .cfi_rel_offset x29, 0\n"
    "    .cfi_rel_offset x30, 8\n"
    "    stp x19, x20, [sp, #16]\n"
    "    stp x21, x22, [sp, #32]\n"
    "    stp x23, x24, [sp, #48]\n"
    "    stp x25, x26, [sp, #64]\n"
    "    stp x27, x28, [sp, #80]\n"
    "    stp d8, d9, [sp, #96]\n"
    "    stp d10, d11, [sp, #112]\n"
    "    stp d12, d13, [sp, #128]\n"
    "    stp d14, d15, [sp, #144]\n"
    "    mrs x9, fpcr\n"
    "    stp x9, x1, [sp, #160]\n"
    "    mov x16, x0\n"
    "    ldr x9, [x1, #152]\n"
    "    msr fpcr, x9\n"
    "    ldp x19, x20, [x1, #0]\n"
    "    ldp x21, x22, [x1, #16]\n"
    "    ldp x23, x24, [x1, #32]\n"
    "    ldp x25, x26, [x1, #48]\n"
    "    ldp x27, x28, [x1, #64]\n"
    "    ldr x29, [x1, #80]\n"
    "    ldp d8, d9, [x1, #88]\n"
    "    ldp d10, d11, [x1, #104]\n"
    "    ldp d12, d13, [x1, #120]\n"
    "    ldp d14, d15, [x1, #136]\n"
    "    blr x16\n"
    "    ldr x1, [sp, #168]\n"
    "    mov x0, #0\n"
    "    CORE_CHKX x19, 0, 0\n"
    "    CORE_CHKX x20, 8, 1\n"
    "    CORE_CHKX x21, 16, 2\n"
    "    CORE_CHKX x22, 24, 3\n"
    "    CORE_CHKX x23, 32, 4\n"
    "    CORE_CHKX x24, 40, 5\n"
    "    CORE_CHKX x25, 48, 6\n"
    "    CORE_CHKX x26, 56, 7\n"
    "    CORE_CHKX x27, 64, 8\n"
    "    CORE_CHKX x28, 72, 9\n"
    "    CORE_CHKX x29, 80, 10\n"
    "    CORE_CHKD d8, 88, 11\n"
    "    CORE_CHKD d9, 96, 12\n"
    "    CORE_CHKD d10, 104, 13\n"
    "    CORE_CHKD d11, 112, 14\n"
    "    CORE_CHKD d12, 120, 15\n"
    "    CORE_CHKD d13, 128, 16\n"
    "    CORE_CHKD d14, 136, 17\n"
    "    CORE_CHKD d15, 144, 18\n"
    "    mrs x10, fpcr\n"
    "    and x10, x10, #0x7c00000\n"
    "    ldr x9, [x1, #152]\n"
    "    and x9, x9, #0x7c00000\n"
    "    cmp x10, x9\n"
    "    b.eq 1f\n"
    "    orr x0, x0, #(1 << 19)\n"
    "1:  ldr x9, [sp, #160]\n"
    "    msr fpcr, x9\n"
    "    ldp x19, x20, [sp, #16]\n"
    "    ldp x21, x22, [sp, #32]\n"
    "    ldp x23, x24, [sp, #48]\n"
    "    ldp x25, x26, [sp, #64]\n"
    "    ldp x27, x28, [sp, #80]\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    ldp x29, x30, [sp, #0]\n"
    "    add sp, sp, #176\n"
    "    .cfi_adjust_cfa_offset -176\n"
    "    ret\n"
    "    .cfi_endproc\n"
    "    .size core_check_regs, .-core_check_regs\n"
    /* Positive control: breaks the ABI on purpose (x21, d9). */
    "    .globl core_clobber\n"
    "    .type core_clobber, %function\n"
    "    .p2align 4\n"
    "core_clobber:\n"
    "    hint #34\n"
    "    mov x21, #0\n"
    "    fmov d9, xzr\n"
    "    ret\n"
    "    .size core_clobber, .-core_clobber\n");
#else
#error "test_core_regs: x86-64 or AArch64 only"
#endif

unsigned core_check_regs(void (*fn)(void), const uint64_t *pat);
void core_clobber(void);

#define NTHREADS 6
#define ROUNDS (CORE_SLOW ? 200 : 2000)

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Distinct patterns for thread k, round r; the floating-point control
 * values differ between threads (and keep exceptions masked). */
static void make_patterns(uint64_t *pat, unsigned k, unsigned r)
{
    uint64_t seed = ((uint64_t)k << 32) ^ r ^ 0x5eedull;
    for (int i = 0; i < NPAT; i++)
        pat[i] = splitmix(&seed) | 1; /* never 0 (core_clobber writes 0) */
    unsigned v = k + r;
#if defined(__x86_64__)
    /* MXCSR: all exceptions masked; RC, FTZ and DAZ vary. */
    pat[6] = 0x1f80u | ((v & 3u) << 13) | (((v >> 2) & 1u) << 15) |
             (((v >> 3) & 1u) << 6);
    /* x87 CW: exceptions masked, bit 6 set; PC (single, double, extended)
     * and RC vary. */
    static const unsigned pc[3] = {0, 2, 3};
    pat[7] = 0x007fu | (pc[(v >> 2) % 3] << 8) | ((v & 3u) << 10);
#else
    /* FPCR: RMode, FZ, DN, AHP vary; no trap enables. */
    pat[19] = ((uint64_t)(v & 3u) << 22) | ((uint64_t)((v >> 2) & 7u) << 24);
#endif
}

static const char *reg_name(int bit)
{
#if defined(__x86_64__)
    static const char *const n[] = {"rbx", "rbp", "r12", "r13", "r14", "r15",
                                    "MXCSR", "x87 CW"};
#else
    static const char *const n[] = {"x19", "x20", "x21", "x22", "x23",
                                    "x24", "x25", "x26", "x27", "x28",
                                    "x29", "d8",  "d9",  "d10", "d11",
                                    "d12", "d13", "d14", "d15", "FPCR"};
#endif
    return bit < NPAT ? n[bit] : "?";
}

static void report(unsigned mask, const char *how, unsigned k, unsigned r)
{
    char names[256] = "";
    size_t len = 0;
    for (int b = 0; b < NPAT; b++)
        if (mask & (1u << b))
            len += (size_t)snprintf(names + len, sizeof names - len, " %s",
                                    reg_name(b));
    CORE_FAIL("thread %u round %u (%s): registers not preserved:%s", k, r,
              how, names);
}

/* What core_check_regs() calls: ways of switching away and back. */
static void via_yield(void)
{
    for (int i = 0; i < 3; i++)
        CHECK(bl_yield() == 0);
}

static void via_sleep(void)
{
    /* Through the scheduler's own context and a libev iteration. */
    CHECK(bl_sleep(0.0002) == 0);
}

static void via_sleep0(void)
{
    CHECK(bl_sleep(0) == 0);
}

static void *child_checker(void *arg);

static void via_join(void)
{
    /* The child runs core_check_regs() with its own patterns. */
    bl_thread *t = bl_spawn(NULL, child_checker, (void *)(uintptr_t)99);
    CHECK(t != NULL);
    CHECK(bl_join(t, NULL) == 0);
}

static void *child_checker(void *arg)
{
    unsigned k = (unsigned)(uintptr_t)arg;
    uint64_t pat[NPAT];
    make_patterns(pat, k, 7);
    unsigned m = core_check_regs(via_yield, pat);
    if (m != 0)
        report(m, "child, via yield", k, 0);
    return NULL;
}

static long checks;

static void *checker(void *arg)
{
    unsigned k = (unsigned)(uintptr_t)arg;
    uint64_t pat[NPAT];
    for (unsigned r = 0; r < ROUNDS; r++) {
        make_patterns(pat, k, r);
        unsigned m;
        const char *how;
        switch ((r + k) % 8) {
        case 5: how = "sleep"; m = core_check_regs(via_sleep, pat); break;
        case 6: how = "sleep(0)"; m = core_check_regs(via_sleep0, pat); break;
        case 7: how = "join"; m = core_check_regs(via_join, pat); break;
        default: how = "yield"; m = core_check_regs(via_yield, pat); break;
        }
        if (m != 0)
            report(m, how, k, r);
        checks++;
    }
    return NULL;
}

static void nothing(void)
{
}

static bl_sched *run_s;

static void run_sched(void)
{
    CHECK(bl_sched_run(run_s) == 0);
}

int main(void)
{
    uint64_t pat[NPAT];

    /* The checker works outside green threads, and notices a clobber. */
    make_patterns(pat, 1, 1);
    unsigned m = core_check_regs(nothing, pat);
    if (m != 0)
        report(m, "no switch", 0, 0);
    m = core_check_regs(core_clobber, pat);
    if (m != CLOBBER_EXPECT)
        CORE_FAIL("positive control: mask 0x%x, expected 0x%x", m,
                  CLOBBER_EXPECT);

    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    for (unsigned k = 0; k < NTHREADS; k++)
        CHECK(bl_spawn(s, checker, (void *)(uintptr_t)k) != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK(checks == (long)NTHREADS * ROUNDS);

    /* Around bl_sched_run() itself: main's registers survive running the
     * scheduler (patterns loaded, then a run with checkers inside). */
    for (unsigned k = 0; k < 2; k++)
        CHECK(bl_spawn(s, checker, (void *)(uintptr_t)(k + 10)) != NULL);
    make_patterns(pat, 77, 0);
    run_s = s;
    m = core_check_regs(run_sched, pat);
    if (m != 0)
        report(m, "main around bl_sched_run", 77, 0);
    CHECK(checks == (long)(NTHREADS + 2) * ROUNDS);
    bl_sched_free(s);
    printf("core_regs: %ld checks ok\n", checks);
    return 0;
}
