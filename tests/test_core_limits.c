/* SPDX-License-Identifier: MIT */
/*
 * test_core_limits.c - out of resources: bl_sched_new() with a descriptor
 * too few fails with EMFILE (and leaks none), and a name lookup when the blocking-call pool cannot start
 * any OS thread runs in the caller's thread instead of failing.
 *
 * Each case runs in a forked child, so that the lowered limits and the
 * pool's process-wide state stay there.
 */
#include "netb_util.h"

static void run(const char *what, int (*fn)(void))
{
    core_run_child_ok(what, fn, 30.0);
    printf("ok: %s\n", what);
}

/* ---- bl_sched_new() with too few descriptors ---- */

/* Lower RLIMIT_NOFILE and open descriptors until `free` are left. Returns
 * the first descriptor taken (they are the ones above it). */
static int leave_free(int free)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = 64;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    int first = -1, fd;
    while ((fd = dup(0)) >= 0)
        if (first < 0)
            first = fd;
    CHECK(errno == EMFILE);
    for (int i = 0; i < free; i++)
        CHECK(close(first + i) == 0);
    return first;
}

/* The descriptors a scheduler holds: 2 with libev's epoll backend (epoll's
 * own and the wake-up eventfd), 1 with poll or select (LIBEV_FLAGS). */
static int sched_fds(void)
{
    int before = netb_count_fds();
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    int n = netb_count_fds() - before;
    bl_sched_free(s);
    CHECK_EQ_LL(netb_count_fds(), before);
    CHECK(n >= 1);
    return n;
}

static int child_sched_new_fds(void)
{
    /* One descriptor too few: with epoll, libev gets its epoll one, none is
     * left for the wake-up descriptor. */
    int need = sched_fds();
    leave_free(need - 1);
    errno = 0;
    bl_sched *s = bl_sched_new();
    CHECK(s == NULL);
    CHECK_EQ_LL(errno, EMFILE);
    /* Nothing leaked: the same again fails the same way. */
    CHECK(bl_sched_new() == NULL && errno == EMFILE);
    /* None. */
    if (need > 1) {
        CHECK(dup(0) >= 0);
        CHECK(bl_sched_new() == NULL && errno == EMFILE);
    }
    return 0;
}

static int child_sched_new_enough(void)
{
    int first = leave_free(sched_fds());
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_sched_free(s);
    (void)first;
    return 0;
}

/* ---- the pool cannot start a thread ---- */

static int lport;

static void *lookup_main(void *arg)
{
    bl_listener *l = arg;
    /* Too little address space for a thread's stack (256 KiB). */
    netb_limit_address_space(128 * 1024);
    for (int i = 0; i < 3; i++) {
        bl_conn *c = bl_connect("localhost", lport);
        if (c == NULL)
            CORE_FAIL("bl_connect(\"localhost\") with no pool thread: %s",
                      strerror(errno));
        bl_conn *in = bl_accept(l);
        CHECK(in != NULL);
        CHECK(bl_close(in) == 0);
        CHECK(bl_close(c) == 0);
    }
    return NULL;
}

static int child_pool_no_thread(void)
{
    bl_listener *l = bl_listen("127.0.0.1", 0, 4);
    CHECK(l != NULL);
    lport = bl_listener_port(l);
    core_run_green(lookup_main, l);
    CHECK(bl_listener_close(l) == 0);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    run("bl_sched_new with one descriptor left: EMFILE, no abort",
        child_sched_new_fds);
    run("bl_sched_new with two descriptors left: works",
        child_sched_new_enough);
#if defined(NETB_ASAN) || defined(CORE_EMULATED)
    /* ASan cannot run under a tight RLIMIT_AS; qemu-user does not enforce
     * one. */
    printf("skip: lookups without pool threads (ASan or emulated)\n");
    (void)child_pool_no_thread;
#else
    run("a lookup when no pool thread can start runs in the caller",
        child_pool_no_thread);
#endif
    printf("core_limits: ok\n");
    return 0;
}
