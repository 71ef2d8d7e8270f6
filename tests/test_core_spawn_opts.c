/* SPDX-License-Identifier: MIT */
/*
 * test_core_spawn_opts.c - bl_spawn_ex() options (name, stack_size, detached,
 * the size field), thread names, bl_sched_set_stack_size() and
 * bl_sched_stack_size(), and the version functions and macros.
 */
#include "core_util.h"

#include <stddef.h>
#include <stdint.h>

static int ran, det_ran;

static void *count_run(void *arg)
{
    ran++;
    return arg;
}

static void *det_run(void *arg)
{
    det_ran++;
    return arg;
}

/* Use `n` bytes of locals (really touching them), deep in the stack. */
static uint64_t __attribute__((noinline)) use_stack(size_t n)
{
    volatile unsigned char *buf = __builtin_alloca(n);
    for (size_t i = 0; i < n; i += 512)
        buf[i] = (unsigned char)(i >> 9);
    buf[n - 1] = 0x5a;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i += 512)
        sum += buf[i];
    return sum + buf[n - 1];
}

static void *big_locals(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    return (void *)(uintptr_t)use_stack(n);
}

static uint64_t expected_sum(size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i += 512)
        sum += (unsigned char)(i >> 9);
    return sum + 0x5a;
}

static void *name_checks(void *arg)
{
    (void)arg;
    bl_thread *me = bl_self();
    CHECK(strcmp(bl_thread_name(me), "worker-1") == 0);
    CHECK(bl_thread_set_name(me, "renamed") == 0);
    CHECK(strcmp(bl_thread_name(me), "renamed") == 0);
    /* Longer than 31 bytes: truncated. */
    const char *lng = "0123456789abcdefghijklmnopqrstuvwxyzXYZ";
    CHECK(bl_thread_set_name(me, lng) == 0);
    CHECK(strlen(bl_thread_name(me)) == 31);
    CHECK(strncmp(bl_thread_name(me), lng, 31) == 0);
    /* A name taken from the current one (overlapping memory). */
    CHECK(bl_thread_set_name(me, "worker-connection-handler-0123") == 0);
    CHECK(bl_thread_set_name(me, bl_thread_name(me) + 7) == 0);
    CHECK(strcmp(bl_thread_name(me), "connection-handler-0123") == 0);
    CHECK(bl_thread_set_name(me, NULL) == 0);
    CHECK(strcmp(bl_thread_name(me), "") == 0);
    return NULL;
}

static struct {
    bl_thread *big, *small, *det, *named, *old;
    int done;
} jt;

static void *joiner(void *arg)
{
    (void)arg;
    void *r = NULL;
    /* The detached thread cannot be joined, live or ended. */
    CHECK_ERR(bl_join(jt.det, NULL), EINVAL);
    CHECK(bl_join(jt.big, &r) == 0);
    CHECK(r == (void *)(uintptr_t)expected_sum(512 * 1024));
    CHECK(bl_join(jt.small, &r) == 0);
    CHECK(r == (void *)(uintptr_t)expected_sum(4096));
    CHECK(bl_join(jt.named, NULL) == 0);
    CHECK(bl_join(jt.old, &r) == 0);
    CHECK(r == (void *)5);
    CHECK_ERR(bl_join(jt.det, NULL), EINVAL);
    jt.done = 1;
    return NULL;
}

static void spawn_ok(bl_sched *s, const bl_spawn_opts *o)
{
    bl_thread *t = bl_spawn_ex(s, count_run, NULL, o);
    CHECK(t != NULL);
}

int main(void)
{
    /* ---- version ---- */
    CHECK(bl_version() != NULL);
    CHECK(strcmp(bl_version(), BL_VERSION_STRING) == 0);
    CHECK(strcmp(bl_version(), "1.1.0") == 0);
    CHECK(BL_VERSION_MAJOR == 1 && BL_VERSION_MINOR == 1 &&
          BL_VERSION_PATCH == 0);
    CHECK(BL_VERSION_HEX == 0x010100);

    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);

    /* ---- scheduler stack size ---- */
    CHECK(bl_sched_stack_size(s) == BL_DEFAULT_STACK_SIZE);
    errno = 0;
    CHECK(bl_sched_stack_size(NULL) == 0 && errno == EINVAL);
    CHECK_ERR(bl_sched_set_stack_size(NULL, 1 << 20), EINVAL);
    CHECK_ERR(bl_sched_set_stack_size(s, 0), EINVAL);
    CHECK_ERR(bl_sched_set_stack_size(s, BL_MIN_STACK_SIZE - 1), EINVAL);
    CHECK(bl_sched_stack_size(s) == BL_DEFAULT_STACK_SIZE); /* unchanged */
    CHECK(bl_sched_set_stack_size(s, BL_MIN_STACK_SIZE) == 0);
    CHECK(bl_sched_stack_size(s) == BL_MIN_STACK_SIZE);
    /* Rounded up to whole pages. */
    CHECK(bl_sched_set_stack_size(s, 100 * 1024 + 1) == 0);
    CHECK(bl_sched_stack_size(s) == (100 * 1024 + 1 + ps - 1) / ps * ps);
    CHECK(bl_sched_set_stack_size(s, 128 * 1024) == 0);
    CHECK(bl_sched_stack_size(s) == 128 * 1024);
    /* A thread with the scheduler's (new) default can use most of it. */
    size_t n = 64 * 1024;
    bl_thread *t = bl_spawn(s, big_locals, (void *)(uintptr_t)n);
    CHECK(t != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK_EQ_LL(bl_sched_nthreads(s), 0);
    CHECK(bl_sched_set_stack_size(s, BL_DEFAULT_STACK_SIZE) == 0);

    /* ---- stack_size option ---- */
    bl_spawn_opts o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.stack_size = 1024 * 1024;
    n = 512 * 1024;
    bl_thread *big = bl_spawn_ex(s, big_locals, (void *)(uintptr_t)n, &o);
    CHECK(big != NULL);
    o.stack_size = BL_MIN_STACK_SIZE - 1;
    CHECK_NULL_ERR(bl_spawn_ex(s, count_run, NULL, &o), EINVAL);
    o.stack_size = 4096;
    CHECK_NULL_ERR(bl_spawn_ex(s, count_run, NULL, &o), EINVAL);
    o.stack_size = 1;
    CHECK_NULL_ERR(bl_spawn_ex(s, count_run, NULL, &o), EINVAL);
    o.stack_size = BL_MIN_STACK_SIZE;
    bl_thread *small = bl_spawn_ex(s, big_locals, (void *)(uintptr_t)4096, &o);
    CHECK(small != NULL);
    o.stack_size = 0; /* the scheduler's default */
    spawn_ok(s, &o);

    /* ---- the size field ---- */
    o.size = 0;
    CHECK_NULL_ERR(bl_spawn_ex(s, count_run, NULL, &o), EINVAL);
    struct {
        bl_spawn_opts o;
        unsigned char future[24];
    } ext;
    memset(&ext, 0, sizeof ext);
    ext.o.size = sizeof ext; /* a later version's struct, unknown fields 0 */
    spawn_ok(s, &ext.o);
    ext.future[23] = 1;       /* nonzero bytes past the known fields */
    CHECK_NULL_ERR(bl_spawn_ex(s, count_run, NULL, &ext.o), EINVAL);
    ext.future[23] = 0;
    ext.future[0] = 0x80;
    CHECK_NULL_ERR(bl_spawn_ex(s, count_run, NULL, &ext.o), EINVAL);
    ext.future[0] = 0;
    spawn_ok(s, &ext.o);
    spawn_ok(s, NULL); /* opts may be NULL */
    /* An older caller's smaller struct: fields past `size` are not read
     * (here detached = 1 lies outside it, so the thread is joinable). */
    memset(&o, 0, sizeof o);
    o.size = offsetof(bl_spawn_opts, detached);
    o.detached = 1;
    bl_thread *old = bl_spawn_ex(s, count_run, (void *)5, &o);
    CHECK(old != NULL);

    /* ---- name ---- */
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.name = "worker-1";
    bl_thread *named = bl_spawn_ex(s, name_checks, NULL, &o);
    CHECK(named != NULL);
    CHECK(strcmp(bl_thread_name(named), "worker-1") == 0);
    /* Copied: changing our buffer afterwards does not matter. */
    char buf[40];
    strcpy(buf, "temporary");
    o.name = buf;
    bl_thread *copied = bl_spawn_ex(s, count_run, NULL, &o);
    CHECK(copied != NULL);
    strcpy(buf, "changed");
    CHECK(strcmp(bl_thread_name(copied), "temporary") == 0);
    /* Too long: truncated to 31 bytes. */
    o.name = "this-name-is-much-longer-than-31-bytes";
    bl_thread *lng = bl_spawn_ex(s, count_run, NULL, &o);
    CHECK(lng != NULL);
    CHECK(strlen(bl_thread_name(lng)) == 31);
    CHECK(strncmp(bl_thread_name(lng), o.name, 31) == 0);
    /* No name: "". */
    bl_thread *anon = bl_spawn(s, count_run, NULL);
    CHECK(anon != NULL && strcmp(bl_thread_name(anon), "") == 0);
    CHECK(bl_thread_set_name(anon, "later") == 0);
    CHECK(strcmp(bl_thread_name(anon), "later") == 0);

    /* ---- detached ---- */
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.detached = 1;
    bl_thread *det = bl_spawn_ex(s, det_run, NULL, &o);
    CHECK(det != NULL);
    CHECK_ERR(bl_detach(det), EINVAL); /* already detached */

    /* A green thread checks the results by joining. */
    jt.big = big;
    jt.small = small;
    jt.det = det;
    jt.named = named;
    jt.old = old;
    CHECK(bl_spawn(s, joiner, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK(jt.done);
    CHECK(det_ran == 1);
    /* count_run threads: spawn_ok x4, copied, lng, anon, old. */
    CHECK_EQ_LL(ran, 8);
    CHECK_EQ_LL(bl_sched_nthreads(s), 0);
    bl_sched_free(s);

    /* ---- every stack has at least the size asked for ----
     * Stack tops are staggered by up to BL_STACK_COLOURS pages plus a few
     * cache lines (stack.c); that must come on top of the size, not out of
     * it: 80 threads on minimum-size stacks each use all but 3 KiB. */
    s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_sched_set_stack_size(s, BL_MIN_STACK_SIZE) == 0);
    bl_thread *full[80];
    size_t use = BL_MIN_STACK_SIZE - 3 * 1024;
    for (int i = 0; i < 80; i++) {
        full[i] = bl_spawn(s, big_locals, (void *)(uintptr_t)use);
        CHECK(full[i] != NULL);
    }
    CHECK(bl_sched_run(s) == 0);   /* an overflow would end the process */
    bl_sched_free(s);
    printf("core_spawn_opts: ok\n");
    return 0;
}
