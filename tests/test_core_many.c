/* SPDX-License-Identifier: MIT */
/*
 * test_core_many.c - scale: 100,000 green threads alive at the same time
 * (more than vm.max_map_count / 2, so that stack guards costing a mapping
 * each would run out), all ending normally; and 200,000 threads spawned and
 * joined one after the other (stack cache reuse). Counts are scaled down
 * under qemu (CORE_EMULATED, or the arguments) and TSan, never skipped.
 *
 * The live threads block in a chain of joins: thread i joins thread i-1,
 * thread 0 sleeps until every thread has started. Then the chain unwinds.
 */
#include "core_util.h"

#include <stdint.h>

static long nlive_target;
static long nseq_target;

static long started, finished;
static volatile int gate;
static size_t max_nthreads;

static void *link_fn(void *arg)
{
    bl_thread *prev = arg;
    started++;
    if (prev == NULL) {
        /* The head of the chain: wait for the gate. Bounded. */
        for (int i = 0; i < 600000 && !gate; i++)
            CHECK(bl_sleep(0.001) == 0);
        CHECK(gate);
    } else {
        void *r = NULL;
        CHECK(bl_join(prev, &r) == 0);
        CHECK(r == (void *)prev);
    }
    finished++;
    return bl_self();
}

static void *live_spawner(void *arg)
{
    bl_sched *s = arg;
    bl_thread *prev = NULL;
    double t0 = core_now();
    for (long i = 0; i < nlive_target; i++) {
        bl_thread *t = bl_spawn(NULL, link_fn, prev);
        if (t == NULL)
            CORE_FAIL("bl_spawn #%ld failed: %s", i, strerror(errno));
        prev = t;
        /* Let the new ones start now and then, so they block as we go. */
        if (i % 1000 == 999)
            CHECK(bl_yield() == 0);
    }
    double t1 = core_now();
    /* Let every thread start and block. */
    for (int i = 0; i < 100 && started < nlive_target; i++)
        CHECK(bl_sleep(0.001) == 0);
    CHECK(started == nlive_target);
    CHECK(finished == 0);
    max_nthreads = bl_sched_nthreads(s);
    gate = 1;
    void *r = NULL;
    CHECK(bl_join(prev, &r) == 0);
    CHECK(r == (void *)prev);
    double t2 = core_now();
    printf("%ld live threads: spawned in %.3f s, all ended %.3f s later\n",
           nlive_target, t1 - t0, t2 - t1);
    return NULL;
}

static void test_live(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, live_spawner, s) != NULL);
    CHECK(bl_sched_run(s) == 0);
    /* The spawner plus all the chain. */
    CHECK_EQ_LL(max_nthreads, nlive_target + 1);
    CHECK_EQ_LL(finished, nlive_target);
    CHECK_EQ_LL(bl_sched_nthreads(s), 0);
    bl_sched_free(s);
}

/* ---- sequential spawn + join ---- */

static void *touch(void *arg)
{
    /* Use a little stack, so that reused stacks are really written. */
    volatile char buf[2048];
    buf[0] = (char)(uintptr_t)arg;
    buf[sizeof buf - 1] = buf[0];
    return (void *)((uintptr_t)arg + (unsigned char)buf[sizeof buf - 1] -
                    (unsigned char)buf[0]);
}

static void *seq_spawner(void *arg)
{
    (void)arg;
    double t0 = core_now();
    unsigned long long last_id = 0;
    for (long i = 0; i < nseq_target; i++) {
        bl_thread *t = bl_spawn(NULL, touch, (void *)(uintptr_t)i);
        if (t == NULL)
            CORE_FAIL("bl_spawn #%ld failed: %s", i, strerror(errno));
        unsigned long long id = bl_thread_id(t);
        CHECK(id > last_id);
        last_id = id;
        void *r = NULL;
        CHECK(bl_join(t, &r) == 0);
        CHECK(r == (void *)(uintptr_t)i);
    }
    printf("%ld threads spawned and joined one by one in %.3f s\n",
           nseq_target, core_now() - t0);
    return NULL;
}

static void test_sequential(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, seq_spawner, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
}

int main(int argc, char **argv)
{
    /* Full counts natively and under ASan (about 30 s there); qemu is
     * scaled down, and TSan allows 8128 threads and fibers at once. */
#if defined(CORE_EMULATED)
    nlive_target = 20000;
    nseq_target = 40000;
#elif defined(CORE_TSAN)
    nlive_target = 6000;
    nseq_target = 50000;
#else
    nlive_target = 100000;
    nseq_target = 200000;
#endif
    if (argc > 1)
        nlive_target = atol(argv[1]);
    if (argc > 2)
        nseq_target = atol(argv[2]);
    CHECK(nlive_target > 0 && nseq_target > 0);
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long mmc = -1;
    if (f != NULL) {
        if (fscanf(f, "%ld", &mmc) != 1)
            mmc = -1;
        fclose(f);
    }
    printf("vm.max_map_count = %ld\n", mmc);
    test_live();
    test_sequential();
    printf("core_many: ok\n");
    return 0;
}
