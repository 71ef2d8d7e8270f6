/* SPDX-License-Identifier: MIT */
/*
 * test_core_free.c - bl_sched_free() on a scheduler with live threads
 * (never run, or stuck after EDEADLK) cancels them: their blocking calls
 * fail with ECANCELED, their cleanup code runs and frees what they hold
 * (LeakSanitizer checks the heap under ASan), threads they spawn while
 * being cancelled are cancelled too, and the stacks are unmapped (checked
 * with the process's mapped size).
 */
#include "core_util.h"

#include <math.h>

static int cleanups, spawned_cleanups, started;

/* Holds heap memory until it ends. */
static void *holder(void *arg)
{
    char *mem = arg;
    started++;
    errno = 0;
    int r = bl_sleep(INFINITY);
    if (r == -1 && errno == ECANCELED) {
        /* Cancelled: later calls fail too; clean up anyway. */
        CHECK_ERR(bl_sleep(0.01), ECANCELED);
        CHECK_ERR(bl_yield(), ECANCELED);
        CHECK(bl_cancelled());
        cleanups++;
    }
    free(mem);
    return NULL;
}

static void *spawned_during_free(void *arg)
{
    char *mem = arg;
    /* Spawned by a thread being cancelled: cancelled from the start. */
    if (bl_cancelled() && bl_sleep(1.0) == -1 && errno == ECANCELED)
        spawned_cleanups++;
    free(mem);
    return NULL;
}

static void *spawns_on_cleanup(void *arg)
{
    char *mem = arg;
    started++;
    if (bl_sleep(INFINITY) == -1 && errno == ECANCELED) {
        cleanups++;
        bl_thread *t = bl_spawn(NULL, spawned_during_free, malloc(64));
        CHECK(t != NULL);
        CHECK(bl_detach(t) == 0);
    }
    free(mem);
    return NULL;
}

static bl_thread *pair[2];

static void *join_partner(void *arg)
{
    long i = (long)arg;
    char *mem = malloc(1000);
    CHECK(mem != NULL);
    started++;
    errno = 0;
    if (bl_join(pair[1 - i], NULL) == -1 && errno == ECANCELED)
        cleanups++;
    free(mem);
    return NULL;
}

/* A thread whose first blocking call (after being cancelled) is a join of
 * a live thread, and another that joins a thread that ended. */
static void *joiner_of_live(void *arg)
{
    bl_thread *target = arg;
    started++;
    errno = 0;
    if (bl_join(target, NULL) == -1 && errno == ECANCELED)
        cleanups++;
    return NULL;
}

enum { NHOLD = 200 };

static void test_never_run(void)
{
    cleanups = spawned_cleanups = started = 0;
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    long before = core_status_kb("VmSize");
    for (int i = 0; i < NHOLD; i++) {
        void *mem = malloc(100 + (size_t)i);
        CHECK(mem != NULL);
        CHECK(bl_spawn(s, holder, mem) != NULL);
    }
    bl_spawn_opts o = {.size = sizeof o, .stack_size = 1 << 20};
    CHECK(bl_spawn_ex(s, spawns_on_cleanup, malloc(32), &o) != NULL);
    long during = core_status_kb("VmSize");
    CHECK_EQ_LL(bl_sched_nthreads(s), NHOLD + 1);
    bl_sched_free(s);
    long after = core_status_kb("VmSize");
    printf("never run: VmSize %ld kB -> %ld kB -> %ld kB after free\n",
           before, during, after);
    /* Never ran: they start cancelled inside bl_sched_free. */
    CHECK_EQ_LL(started, NHOLD + 1);
    CHECK_EQ_LL(cleanups, NHOLD + 1);
    CHECK_EQ_LL(spawned_cleanups, 1);
    /* NHOLD stacks of 256 KiB were mapped, then released. */
    CHECK(during - before >= NHOLD * 256);
    CHECK(after - before < 16384); /* a leak of the stacks would be 50 MB */
}

static void test_after_deadlock(void)
{
    cleanups = spawned_cleanups = started = 0;
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    long before = core_status_kb("VmSize");
    pair[0] = bl_spawn(s, join_partner, (void *)0);
    pair[1] = bl_spawn(s, join_partner, (void *)1);
    CHECK(pair[0] != NULL && pair[1] != NULL);
    for (int i = 0; i < NHOLD; i++)
        CHECK(bl_spawn(s, holder, malloc(10)) != NULL);
    bl_thread *sleeper = bl_spawn(s, holder, malloc(10));
    CHECK(bl_spawn(s, joiner_of_live, sleeper) != NULL);
    CHECK(bl_spawn(s, spawns_on_cleanup, malloc(10)) != NULL);

    /* Keep the deadlock report out of the test log, but check it. */
    int fd = core_tmpfd("core_free");
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    CHECK(saved >= 0);
    CHECK(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    errno = 0;
    int rc = bl_sched_run(s);
    int err = errno;
    fflush(stderr);
    CHECK(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
    close(saved);
    char report[512];
    ssize_t n = pread(fd, report, sizeof report - 1, 0);
    close(fd);
    CHECK(n > 0);
    report[n] = '\0';
    if (rc != -1 || err != EDEADLK)
        CORE_FAIL("bl_sched_run: %d, errno %d; expected EDEADLK", rc, err);
    CHECK(strstr(report, "deadlock") != NULL);
    CHECK_EQ_LL(started, NHOLD + 5);
    CHECK_EQ_LL(cleanups, 0);
    CHECK_EQ_LL(bl_sched_nthreads(s), NHOLD + 5);

    bl_sched_free(s);
    long after = core_status_kb("VmSize");
    printf("after EDEADLK: %d cleanups, VmSize %ld kB -> %ld kB after free\n",
           cleanups, before, after);
    CHECK_EQ_LL(cleanups, NHOLD + 5);
    CHECK_EQ_LL(spawned_cleanups, 1);
    CHECK(after - before < 16384); /* a leak of the stacks would be 50 MB */
}

/* bl_sched_free() on a scheduler whose threads all ended but were never
 * joined (handles still valid): nothing to cancel, nothing leaks. */
static void *ret_arg(void *arg)
{
    return arg;
}

static void test_unjoined(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    for (int i = 0; i < 100; i++)
        CHECK(bl_spawn(s, ret_arg, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
    /* And a scheduler that never had a thread. */
    bl_sched_free(bl_sched_new());
}

/* Threads with a stack size other than the scheduler's default end
 * normally; their stacks (which the cache does not take) must still be
 * unmapped by the time the scheduler is freed. */
static void test_other_size_stacks(void)
{
    long before = core_status_kb("VmSize");
    for (int round = 0; round < 10; round++) {
        bl_sched *s = bl_sched_new();
        CHECK(s != NULL);
        bl_spawn_opts o = {.size = sizeof o, .stack_size = 1 << 20};
        for (int i = 0; i < 3; i++)
            CHECK(bl_spawn_ex(s, ret_arg, NULL, &o) != NULL);
        CHECK(bl_sched_run(s) == 0);
        bl_sched_free(s);
    }
    long after = core_status_kb("VmSize");
    printf("1 MiB stacks, 10 rounds: VmSize %ld kB -> %ld kB\n", before,
           after);
    /* A leak would be at least 10 MiB. */
    CHECK(after - before < 8192);
}

int main(void)
{
    test_other_size_stacks();
    long start = core_status_kb("VmSize");
    test_never_run();
    test_after_deadlock();
    test_unjoined();
    /* Many rounds: no growth (stacks, loops and slots all released). */
    long mid = core_status_kb("VmSize");
    for (int i = 0; i < 20; i++)
        test_never_run();
    long end = core_status_kb("VmSize");
    printf("VmSize: start %ld kB, after 1 round %ld kB, after 20 more %ld "
           "kB\n", start, mid, end);
#ifdef CORE_EMULATED
    /* qemu-user's own page tables grow with every mapping made and freed
     * (about 370 kB per round of 200 stacks here, none natively); a leak
     * of the stacks themselves would be some 60 MB per round. */
    CHECK(end - mid < 16384);
#else
    CHECK(end - mid < 8192);
#endif
    printf("core_free: ok\n");
    return 0;
}
