/* SPDX-License-Identifier: MIT */
/*
 * test_core_deadlock.c - bl_sched_run() returns 0 when every thread has
 * ended, and -1 with EDEADLK, promptly, when threads remain that nothing can
 * wake; the stuck threads are named on stderr and bl_sched_free() reaps them.
 *
 * Each deadlock scenario runs in a forked child with stderr captured; the
 * child checks what it can see itself and exits 0 on success.
 */
#include "core_util.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int cleaned;

/* ---- the normal case ---- */

static void *trivial(void *arg)
{
    return arg;
}

static void *spawner(void *arg)
{
    (void)arg;
    for (long i = 0; i < 10; i++) {
        bl_thread *t = bl_spawn(NULL, trivial, (void *)i);
        CHECK(t != NULL);
        CHECK(bl_yield() == 0);
        if (i % 2 == 0)
            CHECK(bl_detach(t) == 0);
        else
            CHECK(bl_join(t, NULL) == 0);
    }
    return NULL;
}

static void test_run_returns_zero(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    /* Nothing to run at all. */
    errno = 12345;
    CHECK(bl_sched_run(s) == 0);
    CHECK(bl_spawn(s, spawner, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK_EQ_LL(bl_sched_nthreads(s), 0);
    /* It can run again with new threads. */
    CHECK(bl_spawn(s, trivial, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
}

/* ---- scenario A: two threads joining each other ---- */

static bl_thread *ta, *tb;

static void *join_other(void *arg)
{
    bl_thread **other = arg;
    errno = 0;
    int r = bl_join(*other, NULL);
    /* Only bl_sched_free() gets us out: cancelled. */
    if (r == -1 && errno == ECANCELED)
        cleaned++;
    return NULL;
}

static int child_mutual(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_spawn_opts o = {.size = sizeof o, .name = "alpha"};
    ta = bl_spawn_ex(s, join_other, &tb, &o);
    o.name = "beta";
    tb = bl_spawn_ex(s, join_other, &ta, &o);
    CHECK(ta != NULL && tb != NULL);
    fprintf(stderr, "ids %llu %llu\n", bl_thread_id(ta), bl_thread_id(tb));
    double t0 = core_now();
    CHECK_ERR(bl_sched_run(s), EDEADLK);
    double dt = core_now() - t0;
    fprintf(stderr, "detected in %.6f s\n", dt);
    CHECK(dt < 0.5);
    CHECK_EQ_LL(bl_sched_nthreads(s), 2);
    /* Still stuck when run again. */
    CHECK_ERR(bl_sched_run(s), EDEADLK);
    CHECK(cleaned == 0);
    bl_sched_free(s);
    CHECK(cleaned == 2);
    return 0;
}

/* ---- scenario B: a ring of three joins (a thread joins itself
 * indirectly) plus a thread joining a forever-sleeper ---- */

static bl_thread *ring[3];
static bl_thread *sleeper;

static void *ring_member(void *arg)
{
    long i = (long)arg;
    errno = 0;
    int r = bl_join(ring[(i + 1) % 3], NULL);
    if (r == -1 && errno == ECANCELED)
        cleaned++;
    return NULL;
}

static void *sleep_forever(void *arg)
{
    (void)arg;
    errno = 0;
    int r = bl_sleep(INFINITY);
    if (r == -1 && errno == ECANCELED)
        cleaned++;
    return (void *)5;
}

static void *join_sleeper(void *arg)
{
    (void)arg;
    errno = 0;
    void *res = NULL;
    int r = bl_join(sleeper, &res);
    if (r == -1 && errno == ECANCELED)
        cleaned++;
    return NULL;
}

static int child_ring(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    char name[16];
    for (long i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "ring%ld", i);
        bl_spawn_opts o = {.size = sizeof o, .name = name};
        ring[i] = bl_spawn_ex(s, ring_member, (void *)i, &o);
        CHECK(ring[i] != NULL);
    }
    bl_spawn_opts o = {.size = sizeof o, .name = "sleepy"};
    sleeper = bl_spawn_ex(s, sleep_forever, NULL, &o);
    o.name = "waiter";
    bl_thread *w = bl_spawn_ex(s, join_sleeper, NULL, &o);
    CHECK(sleeper != NULL && w != NULL);
    /* One that ends normally meanwhile. */
    CHECK(bl_spawn(s, trivial, NULL) != NULL);
    double t0 = core_now();
    CHECK_ERR(bl_sched_run(s), EDEADLK);
    double dt = core_now() - t0;
    fprintf(stderr, "detected in %.6f s\n", dt);
    CHECK(dt < 0.5);
    CHECK_EQ_LL(bl_sched_nthreads(s), 5);
    bl_sched_free(s);
    CHECK(cleaned == 5);
    return 0;
}

/* ---- scenario C: deadlock found after a while of normal work (timers
 * expire first, then nothing is left to wake the stuck thread) ---- */

static bl_thread *lonely;

static void *sleeps_then_ends(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++)
        CHECK(bl_sleep(0.01) == 0);
    return NULL;
}

static void *join_self_indirect(void *arg)
{
    (void)arg;
    /* Spawn a helper that joins us while we join it. */
    errno = 0;
    int r = bl_join(lonely, NULL);
    if (r == -1 && errno == ECANCELED)
        cleaned++;
    return NULL;
}

static void *joins_back(void *arg)
{
    bl_thread *parent = arg;
    errno = 0;
    int r = bl_join(parent, NULL);
    if (r == -1 && errno == ECANCELED)
        cleaned++;
    return NULL;
}

static void *parent_fn(void *arg)
{
    (void)arg;
    bl_spawn_opts o = {.size = sizeof o, .name = "child-joins-parent"};
    lonely = bl_spawn_ex(NULL, joins_back, bl_self(), &o);
    CHECK(lonely != NULL);
    return join_self_indirect(NULL);
}

static int child_late(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, sleeps_then_ends, NULL) != NULL);
    bl_spawn_opts o = {.size = sizeof o, .name = "parent"};
    CHECK(bl_spawn_ex(s, parent_fn, NULL, &o) != NULL);
    double t0 = core_now();
    CHECK_ERR(bl_sched_run(s), EDEADLK);
    double dt = core_now() - t0;
    fprintf(stderr, "detected in %.6f s\n", dt);
    /* 50 ms of sleeping first, then prompt detection. */
    CHECK(dt >= 0.05 && dt < 0.6);
    CHECK_EQ_LL(bl_sched_nthreads(s), 2);
    bl_sched_free(s);
    CHECK(cleaned == 2);
    return 0;
}

/* ---- scenario D: many stuck threads, spread over several slot chunks
 * (64 slots each) between threads that ended: the report lists every stuck
 * thread and none of the ended ones, and bl_sched_free() cancels them all */

#define NSTUCK 150

static int child_many(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    char name[16];
    for (int i = 0; i < 3 * NSTUCK; i++) {
        bl_spawn_opts o = {.size = sizeof o, .name = name};
        if (i % 3 == 0) {
            snprintf(name, sizeof name, "stuck%d", i / 3);
            CHECK(bl_spawn_ex(s, sleep_forever, NULL, &o) != NULL);
        } else if (i % 3 == 1) {
            /* Ends and is never joined. */
            snprintf(name, sizeof name, "ended%d", i / 3);
            CHECK(bl_spawn_ex(s, trivial, NULL, &o) != NULL);
        } else {
            /* Ends and frees its slot. */
            o.detached = 1;
            snprintf(name, sizeof name, "detached%d", i / 3);
            CHECK(bl_spawn_ex(s, trivial, NULL, &o) != NULL);
        }
    }
    CHECK_ERR(bl_sched_run(s), EDEADLK);
    CHECK_EQ_LL(bl_sched_nthreads(s), NSTUCK);
    bl_sched_free(s);
    CHECK(cleaned == NSTUCK);
    return 0;
}

/* ---- scenario E: the same deadlock after a connection and a listener
 * were waited on. Their watchers stay started between calls; with no thread
 * waiting on them they must not keep the loop alive (bl_sched_run() would
 * block in epoll forever instead). ---- */

static int sp[2];
static int lport;

static void *poke(void *arg)
{
    (void)arg;
    CHECK(bl_sleep(0.02) == 0);
    CHECK(write(sp[1], "x", 1) == 1);
    /* Later, a connection to the listener, for a bl_accept() that waits. */
    CHECK(bl_sleep(0.02) == 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)lport),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    return NULL;
}

/* What use_then_deadlock() leaves open, kept reachable for Valgrind's leak
 * check at the child's exit (volatile: stores to statics that are never
 * read would be dropped). */
static bl_conn *volatile kept_c, *volatile kept_in;
static bl_listener *volatile kept_l;

static void *use_then_deadlock(void *arg)
{
    bl_listener *l = arg;
    bl_conn *c = kept_c = bl_conn_new(sp[0]);
    CHECK(c != NULL);
    CHECK(bl_spawn(NULL, poke, NULL) != NULL);
    char buf[8];
    CHECK(bl_recv(c, buf, sizeof buf) == 1);     /* waited for the byte */
    bl_conn *in = kept_in = bl_accept(l);        /* waits too */
    CHECK(in != NULL);
    bl_spawn_opts o = {.size = sizeof o, .name = "gamma"};
    ta = bl_spawn_ex(NULL, join_other, &tb, &o);
    o.name = "delta";
    tb = bl_spawn_ex(NULL, join_other, &ta, &o);
    CHECK(ta != NULL && tb != NULL);
    return NULL;                                 /* c, l, in stay open */
}

static int child_idle_watchers(void)
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
    bl_listener *l = kept_l = bl_listen("127.0.0.1", 0, 4);
    CHECK(l != NULL);
    lport = bl_listener_port(l);
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, use_then_deadlock, l) != NULL);
    double t0 = core_now();
    CHECK_ERR(bl_sched_run(s), EDEADLK);
    double dt = core_now() - t0;
    fprintf(stderr, "detected in %.6f s\n", dt);
    CHECK(dt < 0.6);
    CHECK_EQ_LL(bl_sched_nthreads(s), 2);
    bl_sched_free(s);
    CHECK(cleaned == 2);
    return 0;
}

/* ---- the parent's checks ---- */

static void expect_in(const core_child *c, const char *what, const char *needle)
{
    if (strstr(c->err, needle) == NULL)
        CORE_FAIL("%s: stderr lacks \"%s\":\n%s", what, needle, c->err);
}

static void expect_not_in(const core_child *c, const char *what,
                          const char *needle)
{
    if (strstr(c->err, needle) != NULL)
        CORE_FAIL("%s: stderr has \"%s\":\n%s", what, needle, c->err);
}

static const core_child *run_scenario(const char *what, int (*fn)(void),
                                      const char *const *needles)
{
    static core_child c;
    core_run_child(fn, 20.0, &c);
    char st[64];
    core_child_describe(&c, st, sizeof st);
    printf("--- %s: child %s after %.3f s, stderr:\n%s", what, st, c.seconds,
           c.err);
    if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0)
        CORE_FAIL("%s: child %s", what, st);
    expect_in(&c, what, "deadlock");
    for (size_t i = 0; needles[i] != NULL; i++)
        expect_in(&c, what, needles[i]);
    return &c;
}

int main(void)
{
    test_run_returns_zero();

    /* Thread ids are 1 and 2 on a fresh scheduler (checked: the child prints
     * them); the report must name both threads with name and id. */
    static const char *const mutual[] = {"ids 1 2", "#1", "#2", "\"alpha\"",
                                         "\"beta\"", "bl_join", NULL};
    run_scenario("mutual join", child_mutual, mutual);

    static const char *const ringn[] = {"\"ring0\"", "\"ring1\"", "\"ring2\"",
                                        "\"sleepy\"", "\"waiter\"",
                                        "bl_sleep", NULL};
    run_scenario("join ring + forever sleeper", child_ring, ringn);

    static const char *const late[] = {"\"parent\"", "\"child-joins-parent\"",
                                       NULL};
    run_scenario("deadlock after timers", child_late, late);

    static const char *const many[] = {"150 green threads", NULL};
    const core_child *c = run_scenario("150 stuck among ended threads",
                                       child_many, many);
    char needle[24];
    for (int i = 0; i < NSTUCK; i++) {
        snprintf(needle, sizeof needle, "\"stuck%d\"", i);
        expect_in(c, "150 stuck", needle);
    }
    expect_not_in(c, "150 stuck", "ended");
    expect_not_in(c, "150 stuck", "detached");

    static const char *const idle[] = {"\"gamma\"", "\"delta\"", NULL};
    run_scenario("deadlock after waiting on a connection and a listener",
                 child_idle_watchers, idle);

    printf("core_deadlock: ok\n");
    return 0;
}
