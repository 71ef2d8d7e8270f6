/* SPDX-License-Identifier: MIT */
/*
 * test_core_bigstack.c - a green thread with a stack of gigabytes costs
 * memory only for what it touches, before and after it ends, and a stack
 * reused by a later thread starts clean.
 *
 * The memory half holds in every build (stacks are committed on touch). It
 * matters most under AddressSanitizer: ASan's shadow of a stack is an
 * eighth of its size, and clearing it by writing zeros when the thread ends
 * committed all of it (512 MiB of shadow for the 4 GiB stack here; 128 GiB
 * for the 1 TiB the API accepts).
 *
 * The reuse half: under ASan the first thread poisons bytes at both ends and
 * in the middle of its stack, as its frames' redzones would be; the second
 * thread, on the same cached stack, writes there. Were any shadow byte left
 * poisoned, ASan would abort the test.
 */
#include "core_util.h"

#include <stdint.h>

#ifdef CORE_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define BIG ((size_t)4 << 30)          /* 4 GiB of stack */
#define GROWTH_MAX ((long)64 << 20)   /* allowed RSS growth, bytes */

/* VmRSS of this process, in bytes. */
static long rss_bytes(void)
{
    return core_status_kb("VmRSS") * 1024;
}

/* The lowest byte of the stack holding address a: the start of its
 * mapping, above the guard (stack.c: max(page, 16 KiB) at the bottom of the
 * mapping, or a PROT_NONE mapping of its own). */
static uintptr_t stack_base(uintptr_t a)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    char line[512], perms[8] = "";
    unsigned long lo, hi, prev_hi = 0;
    int prev_none = 0;
    uintptr_t base = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
            continue;
        if (lo <= a && a < hi) {
            long ps = sysconf(_SC_PAGESIZE);
            size_t guard = ps > 16384 ? (size_t)ps : 16384;
            base = prev_none && prev_hi == lo ? lo : lo + guard;
            break;
        }
        prev_hi = hi;
        prev_none = strcmp(perms, "---p") == 0;
    }
    fclose(f);
    CHECK(base != 0);
    return base;
}

/* Addresses in the first thread's stack: its lowest bytes, its middle and
 * below its running frame. */
static char *spots[3];
static uintptr_t first_local;

static void *poisoner(void *arg)
{
    (void)arg;
    char local;
    first_local = (uintptr_t)&local;
    spots[0] = (char *)stack_base(first_local);
    spots[1] = (char *)(first_local - BIG / 2);
    spots[2] = (char *)(first_local - 16 * 1024);
    for (int i = 0; i < 3; i++) {
        *(volatile char *)spots[i] = 1;     /* touch: one page each */
#ifdef CORE_ASAN
        __asan_poison_memory_region(spots[i], 64);
#endif
    }
    return NULL;
}

static void *writer(void *arg)
{
    (void)arg;
    char local;
    /* The cache gives back the last stack, with the same top. */
    long d = (long)((uintptr_t)&local - first_local);
    if (d < -4096 || d > 4096)
        CORE_FAIL("the second thread runs %ld bytes away from the first: "
                  "not on the same stack", d);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 64; j++)
            ((volatile char *)spots[i])[j] = (char)j;
    return NULL;
}

int main(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_sched_set_stack_size(s, BIG) == 0);

    long before = rss_bytes();
    if (bl_spawn(s, poisoner, NULL) == NULL) {
        /* Address space limited (ulimit -v), or no overcommit
         * (vm.overcommit_memory=2 ignores MAP_NORESERVE). */
        CHECK(errno == ENOMEM);
        printf("skip: no 4 GiB stack here (ENOMEM)\n");
        bl_sched_free(s);
        return 0;
    }
    CHECK(bl_sched_run(s) == 0);
    long after = rss_bytes();
    printf("RSS %ld KiB before the 4 GiB-stack thread, %ld KiB after it "
           "ended\n", before / 1024, after / 1024);
    if (after - before > GROWTH_MAX)
        CORE_FAIL("RSS grew by %ld KiB for a thread that touched 3 pages",
                  (after - before) / 1024);

    CHECK(bl_spawn(s, writer, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    after = rss_bytes();
    if (after - before > GROWTH_MAX)
        CORE_FAIL("RSS grew by %ld KiB after two threads",
                  (after - before) / 1024);
    bl_sched_free(s);
    printf("ok\n");
    return 0;
}
