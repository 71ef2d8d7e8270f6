/* SPDX-License-Identifier: MIT */
/*
 * test_core_fpenv.c - the floating-point control state (rounding mode; on
 * x86-64 MXCSR and the x87 control word, on AArch64 FPCR) belongs to each
 * green thread: a mode set by one thread does not leak into the others
 * across switches, checked with fegetround() and with real arithmetic.
 *
 * Observed and checked: a new thread starts with the rounding mode its
 * spawner had at the time of bl_spawn() (also when spawned from main()
 * before bl_sched_run()); main()'s own mode is restored when bl_sched_run()
 * returns.
 */
#include "core_util.h"

#include <fenv.h>
#include <stdint.h>

static volatile double one = 1.0, three = 3.0;

/* 1/3 is not representable: rounding up gives a larger result than rounding
 * down, nearest equals one of them. */
static double third(void)
{
    return one / three;
}

#if defined(__x86_64__)
static volatile long double lone = 1.0L, lthree = 3.0L;

static long double x87_third(void)
{
    return lone / lthree;
}

static unsigned mxcsr_rc(void)
{
    unsigned m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    return (m >> 13) & 3u;
}

static unsigned x87_rc(void)
{
    unsigned short cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return (cw >> 10) & 3u;
}

/* The RC field encoding of each fenv mode (same for MXCSR and x87). */
static unsigned rc_of(int mode)
{
    switch (mode) {
    case FE_TONEAREST: return 0;
    case FE_DOWNWARD: return 1;
    case FE_UPWARD: return 2;
    default: return 3;
    }
}
#elif defined(__aarch64__)
static uint64_t fpcr_get(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}

static unsigned rc_of(int mode)
{
    switch (mode) {
    case FE_TONEAREST: return 0;
    case FE_UPWARD: return 1;
    case FE_DOWNWARD: return 2;
    default: return 3;
    }
}
#endif

static double third_near, third_up, third_down;
#if defined(__x86_64__)
static long double lthird_near, lthird_up, lthird_down;
#endif

static void reference_values(void)
{
    CHECK(fesetround(FE_TONEAREST) == 0);
    third_near = third();
    CHECK(fesetround(FE_UPWARD) == 0);
    third_up = third();
    CHECK(fesetround(FE_DOWNWARD) == 0);
    third_down = third();
#if defined(__x86_64__)
    CHECK(fesetround(FE_TONEAREST) == 0);
    lthird_near = x87_third();
    CHECK(fesetround(FE_UPWARD) == 0);
    lthird_up = x87_third();
    CHECK(fesetround(FE_DOWNWARD) == 0);
    lthird_down = x87_third();
    CHECK(lthird_up > lthird_down);
#endif
    CHECK(fesetround(FE_TONEAREST) == 0);
    /* Sanity: the arithmetic really depends on the mode. */
    CHECK(third_up > third_down);
    CHECK(third_near == third_up || third_near == third_down);
}

/* Check the calling context's mode with fegetround(), the control
 * registers and arithmetic. */
static void expect_mode(int mode, const char *who)
{
    int got = fegetround();
    if (got != mode)
        CORE_FAIL("%s: fegetround() = %d, expected %d", who, got, mode);
    /* 1/3 is positive: toward zero rounds down. */
    int down = mode == FE_DOWNWARD || mode == FE_TOWARDZERO;
    double want = mode == FE_UPWARD ? third_up : down ? third_down : third_near;
    if (third() != want)
        CORE_FAIL("%s: 1.0/3.0 rounded as in the wrong mode", who);
#if defined(__x86_64__)
    long double lwant = mode == FE_UPWARD ? lthird_up
                        : down ? lthird_down : lthird_near;
    if (x87_third() != lwant)
        CORE_FAIL("%s: x87 1.0L/3.0L rounded as in the wrong mode", who);
    if (mxcsr_rc() != rc_of(mode))
        CORE_FAIL("%s: MXCSR.RC = %u, expected %u", who, mxcsr_rc(),
                  rc_of(mode));
    if (x87_rc() != rc_of(mode))
        CORE_FAIL("%s: x87 CW.RC = %u, expected %u", who, x87_rc(),
                  rc_of(mode));
#elif defined(__aarch64__)
    unsigned rm = (unsigned)(fpcr_get() >> 22) & 3u;
    if (rm != rc_of(mode))
        CORE_FAIL("%s: FPCR.RMode = %u, expected %u", who, rm, rc_of(mode));
#endif
}

/* ---- A and B alternate, each with its own mode ---- */

static void *thread_a(void *arg)
{
    (void)arg;
    expect_mode(FE_TONEAREST, "A at start");
    CHECK(fesetround(FE_UPWARD) == 0);
    expect_mode(FE_UPWARD, "A after fesetround");
    for (int i = 0; i < 5; i++) {
        CHECK(bl_yield() == 0);
        expect_mode(FE_UPWARD, "A after yield");
    }
    CHECK(bl_sleep(0.002) == 0);
    expect_mode(FE_UPWARD, "A after sleep");
    return NULL;
}

static void *thread_b(void *arg)
{
    (void)arg;
    /* A has set FE_UPWARD and yielded to us. */
    expect_mode(FE_TONEAREST, "B at start");
    CHECK(fesetround(FE_DOWNWARD) == 0);
    for (int i = 0; i < 5; i++) {
        CHECK(bl_yield() == 0);
        expect_mode(FE_DOWNWARD, "B after yield");
    }
    CHECK(bl_sleep(0.001) == 0);
    expect_mode(FE_DOWNWARD, "B after sleep");
    return NULL;
}

static void *thread_c(void *arg)
{
    (void)arg;
    /* Never changes its mode: sees nearest between A's and B's turns. */
    for (int i = 0; i < 6; i++) {
        expect_mode(FE_TONEAREST, "C");
        CHECK(bl_yield() == 0);
    }
    return NULL;
}

/* ---- inheritance at spawn ---- */

static int child_mode;

static void *report_mode(void *arg)
{
    (void)arg;
    child_mode = fegetround();
    expect_mode(child_mode, "spawned child");
    return NULL;
}

static void *spawner(void *arg)
{
    (void)arg;
    CHECK(fesetround(FE_UPWARD) == 0);
    bl_thread *t = bl_spawn(NULL, report_mode, NULL);
    CHECK(t != NULL);
    /* Changing our mode after the spawn does not matter. */
    CHECK(fesetround(FE_TOWARDZERO) == 0);
    child_mode = -1;
    CHECK(bl_join(t, NULL) == 0);
    printf("child spawned in FE_UPWARD runs in mode %d (FE_UPWARD = %d)\n",
           child_mode, FE_UPWARD);
    CHECK(child_mode == FE_UPWARD);
    expect_mode(FE_TOWARDZERO, "spawner after join");
    return NULL;
}

int main(void)
{
    reference_values();

    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, thread_a, NULL) != NULL);
    CHECK(bl_spawn(s, thread_b, NULL) != NULL);
    CHECK(bl_spawn(s, thread_c, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    expect_mode(FE_TONEAREST, "main after run");

    CHECK(bl_spawn(s, spawner, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    expect_mode(FE_TONEAREST, "main after run 2");

    /* Spawned from main() in FE_DOWNWARD: the thread starts in it. main
     * switches to FE_UPWARD before running the scheduler, and gets
     * FE_UPWARD back afterwards. */
    CHECK(fesetround(FE_DOWNWARD) == 0);
    child_mode = -1;
    CHECK(bl_spawn(s, report_mode, NULL) != NULL);
    CHECK(fesetround(FE_UPWARD) == 0);
    CHECK(bl_sched_run(s) == 0);
    printf("child spawned from main in FE_DOWNWARD runs in mode %d "
           "(FE_DOWNWARD = %d)\n", child_mode, FE_DOWNWARD);
    CHECK(child_mode == FE_DOWNWARD);
    expect_mode(FE_UPWARD, "main after run 3");
    CHECK(fesetround(FE_TONEAREST) == 0);

    bl_sched_free(s);
    printf("core_fpenv: ok\n");
    return 0;
}
