/* SPDX-License-Identifier: MIT */
/*
 * test_core_guardprobe.c - whether the kernel's MADV_GUARD_INSTALL works is
 * probed with a pipe when the first stack is mapped. A process out of
 * descriptors at that moment must not lose those guards for good (each
 * stack would then cost two mappings, and about 32,700 live threads would
 * exhaust vm.max_map_count): the probe is made again at a later stack.
 *
 * Each case runs in a child of its own, where the library starts fresh.
 * Skipped where the kernel has no MADV_GUARD_INSTALL (before Linux 6.13,
 * qemu-user): there every stack costs the mappings anyway.
 */
#include "core_util.h"

#include <fcntl.h>
#include <sys/resource.h>

#define NMORE 1000

static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static void *idle(void *arg)
{
    (void)arg;
    CHECK(bl_yield() == 0);
    return NULL;
}

/* Spawn the first thread with (exhaust = 1) or without descriptors left,
 * then NMORE with; exit with the mappings the NMORE stacks added, capped at
 * 255 (the exit status). */
static int spawn_many(int exhaust)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    static int fds[1024];
    int n = 0;
    if (exhaust) {
        struct rlimit rl;
        CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
        rl.rlim_cur = 256;
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
        while (n < 1024 && (fds[n] = open("/dev/null", O_RDONLY)) >= 0)
            n++;
        CHECK(n < 1024 && errno == EMFILE);
    }
    bl_thread *first = bl_spawn(s, idle, NULL);   /* the first stack */
    for (int i = 0; i < n; i++)
        close(fds[i]);
    CHECK(first != NULL);
    long before = count_maps();
    for (int i = 0; i < NMORE; i++)
        CHECK(bl_spawn(s, idle, NULL) != NULL);
    long added = count_maps() - before;
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
    return added > 255 ? 255 : (int)added;
}

static int with_fds(void)
{
    return spawn_many(0);
}

static int without_fds(void)
{
    return spawn_many(1);
}

static int added_by(int (*fn)(void), const char *what)
{
    static core_child c;
    core_run_child(fn, 60.0, &c);
    if (!WIFEXITED(c.status))
        CORE_FAIL("%s: child died, stderr:\n%s", what, c.err);
    printf("%s: %d more stacks added %d mappings\n", what, NMORE,
           WEXITSTATUS(c.status));
    return WEXITSTATUS(c.status);
}

int main(void)
{
#ifdef CORE_TSAN
    printf("skip: ThreadSanitizer maps shadow memory for every stack, so "
           "mappings do not show the guards\n");
    return 77;
#endif
    if (added_by(with_fds, "descriptors left") >= 100) {
        printf("skip: no MADV_GUARD_INSTALL here; each stack costs "
               "mappings anyway\n");
        return 77;
    }
    int added = added_by(without_fds, "first stack without descriptors");
    if (added >= 100)
        CORE_FAIL("the failed probe cost MADV_GUARD_INSTALL for good");
    printf("core_guardprobe: ok\n");
    return 0;
}
