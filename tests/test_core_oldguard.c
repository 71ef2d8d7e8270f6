/* SPDX-License-Identifier: MIT */
/*
 * test_core_oldguard.c - stack guards on a kernel without
 * MADV_GUARD_INSTALL (before Linux 6.13, Debian 12's 6.1 among them).
 *
 * There each guard is an mprotect()ed region that costs two mappings, and
 * at vm.max_map_count the kernel refuses every new mapping: stacks, and
 * libev's and malloc's memory, which ends the process. The library rations
 * the guards to 3/8 of the limit. Here more threads than half the limit
 * are alive at once; all must start, the process must still be able to map
 * memory, the first 3/8 of the limit must have guards, and guards must be
 * handed back when stacks are unmapped.
 *
 * The old kernel is simulated: this program defines madvise(), which the
 * library calls, and refuses MADV_GUARD_INSTALL with EINVAL as such a
 * kernel does.
 */
#include "core_util.h"

#include <dlfcn.h>
#include <stdint.h>
#include <sys/mman.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

int madvise(void *addr, size_t len, int advice)
{
    static int (*real)(void *, size_t, int);
    if (advice == MADV_GUARD_INSTALL) {
        errno = EINVAL;
        return -1;
    }
    if (real == NULL)
        real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "madvise");
    return real(addr, len, advice);
}

static long mmc;          /* vm.max_map_count */
static long nlive;        /* threads alive at once */
static long started;
static volatile int gate;

/* Mappings of the process, and how many of them are guards: PROT_NONE,
 * exactly the library's guard size (16 KiB with 4 KiB pages). */
static void count_maps(long *all, long *guards)
{
    size_t guard = (size_t)sysconf(_SC_PAGESIZE) > 16384
                       ? (size_t)sysconf(_SC_PAGESIZE) : 16384;
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    char line[512];
    *all = *guards = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long lo, hi;
        char perms[8];
        (*all)++;
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 &&
            strcmp(perms, "---p") == 0 && hi - lo == guard)
            (*guards)++;
    }
    fclose(f);
}

static void *waiter(void *arg)
{
    (void)arg;
    started++;
    for (int i = 0; i < 600000 && !gate; i++)
        CHECK(bl_sleep(0.001) == 0);
    CHECK(gate);
    return NULL;
}

static long maps_live, guards_live;

static void *spawner(void *arg)
{
    long n = (long)(intptr_t)arg;
    bl_thread **t = calloc((size_t)n, sizeof *t);
    CHECK(t != NULL);
    for (long i = 0; i < n; i++) {
        t[i] = bl_spawn(NULL, waiter, NULL);
        if (t[i] == NULL)
            CORE_FAIL("bl_spawn #%ld of %ld failed: %s", i, n,
                      strerror(errno));
        if (i % 1000 == 999)
            CHECK(bl_yield() == 0);
    }
    for (int i = 0; i < 1000 && started < n; i++)
        CHECK(bl_sleep(0.001) == 0);
    CHECK_EQ_LL(started, n);
    count_maps(&maps_live, &guards_live);

    /* Memory can still be mapped: a big allocation, a scheduler (libev's
     * loop), a thread of a scheduler in another OS thread would need the
     * same. */
    size_t big = (size_t)64 << 20;
    char *p = malloc(big);
    CHECK(p != NULL);
    memset(p, 1, 4096);
    free(p);
    for (int i = 0; i < 16; i++) {
        bl_sched *s2 = bl_sched_new();
        CHECK(s2 != NULL);
        bl_sched_free(s2);
    }

    gate = 1;
    for (long i = 0; i < n; i++)
        CHECK(bl_join(t[i], NULL) == 0);
    free(t);
    return NULL;
}

/* n threads alive at once in a scheduler of their own; the maps are
 * counted while all of them are. */
static void run_live(long n)
{
    started = 0;
    gate = 0;
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, spawner, (void *)(intptr_t)n) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);   /* unmaps the cached stacks */
}

int main(void)
{
#ifdef CORE_TSAN
    printf("ThreadSanitizer allows 8128 threads and fibers at once, and this "
           "test needs tens of thousands of green threads alive; skipped\n");
    return 77;
#endif
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    mmc = 65530;
    if (f != NULL) {
        if (fscanf(f, "%ld", &mmc) != 1)
            mmc = 65530;
        fclose(f);
    }
    long budget = mmc / 8 * 3;
    /* More than half the limit: with a guard each, the stacks alone would
     * need more mappings than there are. */
    nlive = mmc / 2 + mmc / 8;
    if (nlive > 1000000) {
        printf("vm.max_map_count = %ld: too large to reach here; skipped\n",
               mmc);
        return 77;
    }
    printf("vm.max_map_count = %ld: %ld threads alive, guards for %ld\n",
           mmc, nlive, budget);

    long maps0, guards0;
    count_maps(&maps0, &guards0);
    run_live(nlive);
    printf("while alive: %ld mappings, %ld of them guards (%ld, %ld before)\n",
           maps_live, guards_live, maps0, guards0);
    /* Every guard the budget allows was given, and no more. */
    CHECK(guards_live - guards0 <= budget);
    CHECK(guards_live - guards0 >= budget - 64);
    /* A quarter of the limit is left to the rest of the process. */
    CHECK(maps_live <= mmc - mmc / 4 + 1000);

    /* The guards came back with the stacks: a second, small round gets a
     * guard for every stack again. */
    long small = 1000;
    run_live(small);
    printf("second round, %ld threads: %ld guards\n", small,
           guards_live - guards0);
    CHECK(guards_live - guards0 >= small);
    printf("core_oldguard: ok\n");
    return 0;
}
