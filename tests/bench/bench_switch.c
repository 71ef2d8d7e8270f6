/* SPDX-License-Identifier: MIT */
/*
 * bench_switch - cost of a context switch and of a green thread's life.
 *
 *   bench_switch [round_trips]     (default 10,000,000)
 *
 * Prints, as "name value" lines (medians of 5 repetitions, one process):
 *   yield_ns         ns per bl_yield switch, two green threads ping-ponging
 *   spawn_join_ns    ns per bl_spawn + run + bl_join of an empty thread
 *   swapcontext_ns   ns per glibc swapcontext switch, same ping-pong
 *   ratio_swapcontext_over_yield
 * and, when built with Boost.Context (bench_boost.cpp):
 *   boost_jump_ns    ns per jump_fcontext switch, same ping-pong
 *   boost_make_jump_ns  ns per make_fcontext + jump in + jump back out, on a
 *                    malloc'd stack allocated once (the strictest baseline:
 *                    no allocation at all)
 *   boost_create_run_destroy_ns  the same with a stack malloc'd before and
 *                    freed after each context (what a thread's life costs
 *                    a Boost user without a stack pool)
 *   ratio_yield_over_boost_jump, ratio_spawn_join_over_boost_make_jump,
 *   ratio_spawn_join_over_boost_create_run_destroy
 * The ratios are what docs/performance.md reports; absolute numbers depend
 * on the machine.
 */
#define _GNU_SOURCE
#include <bluelet.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

#define REPS 5

#ifdef BENCH_HAVE_BOOST
double bench_boost_jump_ns(long round_trips);
double bench_boost_make_jump_ns(long iterations);
double bench_boost_create_run_destroy_ns(long iterations);
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* ---- bluelet: yield ping-pong ---- */

static long rounds;

static void *yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++)
        bl_yield();
    return NULL;
}

static double bl_yield_ns(bl_sched *s, long round_trips)
{
    rounds = round_trips;
    if (bl_spawn(s, yielder, NULL) == NULL || bl_spawn(s, yielder, NULL) == NULL)
        die("bl_spawn");
    double t0 = now();
    if (bl_sched_run(s) != 0)
        die("bl_sched_run");
    /* Each round trip is two switches: one per thread's bl_yield. */
    return (now() - t0) * 1e9 / (double)(2 * round_trips);
}

/* ---- bluelet: spawn + run + join ---- */

static void *empty(void *arg)
{
    return arg;
}

static double spawn_result;

static void *spawner(void *arg)
{
    long n = *(long *)arg;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        bl_thread *t = bl_spawn(NULL, empty, NULL);
        if (t == NULL || bl_join(t, NULL) != 0)
            die("spawn/join");
    }
    spawn_result = (now() - t0) * 1e9 / (double)n;
    return NULL;
}

static double bl_spawn_join_ns(bl_sched *s, long n)
{
    if (bl_spawn(s, spawner, &n) == NULL || bl_sched_run(s) != 0)
        die("spawner");
    return spawn_result;
}

/* ---- glibc swapcontext ping-pong ---- */

static ucontext_t uc_main, uc_other;

static void uc_func(void)
{
    for (;;)
        swapcontext(&uc_other, &uc_main);
}

static double swapcontext_ns(long round_trips)
{
    static char stack[64 * 1024];
    if (getcontext(&uc_other) != 0)
        die("getcontext");
    uc_other.uc_stack.ss_sp = stack;
    uc_other.uc_stack.ss_size = sizeof stack;
    uc_other.uc_link = NULL;
    makecontext(&uc_other, uc_func, 0);
    double t0 = now();
    for (long i = 0; i < round_trips; i++)
        swapcontext(&uc_main, &uc_other);
    return (now() - t0) * 1e9 / (double)(2 * round_trips);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    if (n <= 0) {
        fprintf(stderr, "usage: %s [round_trips]\n", argv[0]);
        return 2;
    }
    long nspawn = n / 10 > 0 ? n / 10 : 1;
    long nswap = n / 10 > 0 ? n / 10 : 1;
    double y[REPS], sj[REPS], sc[REPS];
#ifdef BENCH_HAVE_BOOST
    double bj[REPS], bm[REPS], bc[REPS];
#endif
    bl_sched *s = bl_sched_new();
    if (s == NULL)
        die("bl_sched_new");
    /* Interleave the measurements so that drift affects all alike. */
    for (int r = 0; r < REPS; r++) {
        y[r] = bl_yield_ns(s, n);
        sj[r] = bl_spawn_join_ns(s, nspawn);
        sc[r] = swapcontext_ns(nswap);
#ifdef BENCH_HAVE_BOOST
        bj[r] = bench_boost_jump_ns(n);
        bm[r] = bench_boost_make_jump_ns(nspawn);
        bc[r] = bench_boost_create_run_destroy_ns(nspawn);
#endif
    }
    bl_sched_free(s);
    double my = median(y, REPS), msj = median(sj, REPS), msc = median(sc, REPS);
    printf("yield_ns %.2f\n", my);
    printf("spawn_join_ns %.2f\n", msj);
    printf("swapcontext_ns %.2f\n", msc);
    printf("ratio_swapcontext_over_yield %.1f\n", msc / my);
#ifdef BENCH_HAVE_BOOST
    double mbj = median(bj, REPS), mbm = median(bm, REPS);
    double mbc = median(bc, REPS);
    printf("boost_jump_ns %.2f\n", mbj);
    printf("boost_make_jump_ns %.2f\n", mbm);
    printf("boost_create_run_destroy_ns %.2f\n", mbc);
    printf("ratio_yield_over_boost_jump %.2f\n", my / mbj);
    printf("ratio_spawn_join_over_boost_make_jump %.2f\n", msj / mbm);
    printf("ratio_spawn_join_over_boost_create_run_destroy %.2f\n",
           msj / mbc);
#endif
    return 0;
}
