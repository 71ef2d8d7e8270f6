/* SPDX-License-Identifier: MIT */
/*
 * test_net_lookup.c - name resolution in bl_connect_timeout(): a lookup is
 * bounded by the call's timeout and a cancel like the connect itself, an
 * abandoned lookup is freed once it finishes (no addrinfo lost, also when
 * the caller is cancelled after the lookup ended but before the scheduler
 * noticed), and the scheduler keeps running while a lookup is slow.
 *
 * A slow DNS server is simulated by wrapping getaddrinfo(): names ending in
 * ".slow.test" are held for `slow_delay` seconds on the resolver's thread,
 * then resolved as "localhost" by the real getaddrinfo() (a numeric-only
 * conversion, AI_NUMERICHOST, fails at once as it would for any name). freeaddrinfo() is
 * wrapped too, so that every result handed out can be matched by a free.
 */
#include "core_util.h"

#include <dlfcn.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>

/* How late a timeout may end: no speed threshold, only a bound that tells
 * "timed out" from "waited for the lookup". */
#define SLACK 1.0
#define SLOW_SUFFIX ".slow.test"

static double slow_delay;            /* seconds; written before lookups */
static int results_out, results_freed, lookups_running;
/* With hold_lock set, every lookup holds resolver_lock throughout, as glibc
 * holds locks of its own inside getaddrinfo(): a fork() in the middle of a
 * lookup leaves it locked in the child. */
static int hold_lock;
static pthread_mutex_t resolver_lock = PTHREAD_MUTEX_INITIALIZER;

typedef int gai_fn(const char *, const char *, const struct addrinfo *,
                   struct addrinfo **);
typedef void fai_fn(struct addrinfo *);

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
    static gai_fn *real;
    if (real == NULL)
        real = (gai_fn *)dlsym(RTLD_NEXT, "getaddrinfo");
    size_t n = node != NULL ? strlen(node) : 0;
    size_t k = strlen(SLOW_SUFFIX);
    /* Numeric-only conversions are instant in any resolver. */
    int numeric = hints != NULL && (hints->ai_flags & AI_NUMERICHOST);
    int slow = !numeric && n > k && strcmp(node + n - k, SLOW_SUFFIX) == 0;
    int locked = __atomic_load_n(&hold_lock, __ATOMIC_SEQ_CST);
    if (locked)
        pthread_mutex_lock(&resolver_lock);
    if (slow) {
        __atomic_add_fetch(&lookups_running, 1, __ATOMIC_SEQ_CST);
        struct timespec ts = {(time_t)slow_delay,
                              (long)((slow_delay - floor(slow_delay)) * 1e9)};
        nanosleep(&ts, NULL);
        node = "localhost";
    }
    int rc = real(node, service, hints, res);
    if (rc == 0)
        __atomic_add_fetch(&results_out, 1, __ATOMIC_SEQ_CST);
    if (slow)
        __atomic_sub_fetch(&lookups_running, 1, __ATOMIC_SEQ_CST);
    if (locked)
        pthread_mutex_unlock(&resolver_lock);
    return rc;
}

void freeaddrinfo(struct addrinfo *ai)
{
    static fai_fn *real;
    if (real == NULL)
        real = (fai_fn *)dlsym(RTLD_NEXT, "freeaddrinfo");
    if (ai != NULL)
        __atomic_add_fetch(&results_freed, 1, __ATOMIC_SEQ_CST);
    real(ai);
}

static void *poll_once(void *arg)
{
    (void)arg;
    CHECK(bl_sleep(0.01) == 0);
    return NULL;
}

/* Every result handed out is freed once the lookups still running on the
 * pool (abandoned ones) have finished and the scheduler has polled (an
 * abandoned lookup is freed when its scheduler drains it). */
static void check_all_freed(bl_sched *s)
{
    double t0 = core_now();
    for (;;) {
        CHECK(bl_spawn(s, poll_once, NULL) != NULL);
        CHECK(bl_sched_run(s) == 0);
        if (__atomic_load_n(&lookups_running, __ATOMIC_SEQ_CST) == 0 &&
            __atomic_load_n(&results_freed, __ATOMIC_SEQ_CST) ==
                __atomic_load_n(&results_out, __ATOMIC_SEQ_CST))
            return;
        if (core_now() - t0 > 10)
            CORE_FAIL("%d lookups still running, %d results out, %d freed",
                      lookups_running, results_out, results_freed);
    }
}

static bl_listener *listener;
static int port;

/* ---- a lookup longer than the timeout ends the call at the timeout ---- */

static void *times_out(void *arg)
{
    (void)arg;
    slow_delay = 1.5;
    double t0 = core_now();
    CHECK_NULL_ERR(bl_connect_timeout("a" SLOW_SUFFIX, port, 0.2), ETIMEDOUT);
    double took = core_now() - t0;
    if (took < 0.2 - 0.002 || took > 0.2 + SLACK)
        CORE_FAIL("bl_connect_timeout(0.2) with a 1.5 s lookup took %.3f s",
                  took);
    return NULL;
}

/* ---- a slow lookup within the timeout connects ---- */

static void *ticker(void *arg)
{
    int *ticks = arg;
    while (bl_sleep(0.01) == 0 && *ticks >= 0)
        (*ticks)++;
    return NULL;
}

static void *connects(void *arg)
{
    (void)arg;
    slow_delay = 0.2;
    int ticks = 0;
    bl_thread *tk = bl_spawn(NULL, ticker, &ticks);
    CHECK(tk != NULL);
    bl_conn *c = bl_connect_timeout("b" SLOW_SUFFIX, port, 5);
    CHECK(c != NULL);
    /* The scheduler ran other threads during the lookup. */
    if (ticks < 5)
        CORE_FAIL("only %d ticks of 10 ms during a 200 ms lookup", ticks);
    bl_conn *peer = bl_accept(listener);
    CHECK(peer != NULL);
    CHECK(bl_sendall(c, "x", 1) == 0);
    char b;
    CHECK(bl_recv(peer, &b, 1) == 1 && b == 'x');
    CHECK(bl_close(c) == 0 && bl_close(peer) == 0);
    CHECK(bl_cancel(tk) == 0 && bl_join(tk, NULL) == 0);
    return NULL;
}

/* ---- a quick lookup does not wait behind a slow one ---- */

/* Connect through `name`, and take the connection off the listener. */
static void connect_accept(const char *name)
{
    bl_conn *c = bl_connect(name, port);
    CHECK(c != NULL);
    bl_conn *peer = bl_accept(listener);
    CHECK(peer != NULL);
    CHECK(bl_close(c) == 0 && bl_close(peer) == 0);
}

static void *slow_lookup(void *arg)
{
    (void)arg;
    connect_accept("c" SLOW_SUFFIX);
    return NULL;
}

/* Run first, on a pool without threads: a first lookup leaves one idle
 * worker. A slow lookup claims it, and a quick one asked for right after
 * (before that worker has even woken up) must get a worker of its own:
 * it ends while the slow one still runs. */
static void *not_behind(void *arg)
{
    (void)arg;
    slow_delay = 3;
    connect_accept("localhost");
    bl_thread *slow = bl_spawn(NULL, slow_lookup, NULL);
    CHECK(slow != NULL);
    CHECK(bl_yield() == 0);          /* the slow one asks first */
    bl_conn *c = bl_connect("localhost", port);
    CHECK(c != NULL);
    int running = __atomic_load_n(&lookups_running, __ATOMIC_SEQ_CST);
    if (running != 1)
        CORE_FAIL("the quick lookup waited for the slow one to end");
    bl_conn *peer = bl_accept(listener);
    CHECK(peer != NULL);
    CHECK(bl_close(c) == 0 && bl_close(peer) == 0);
    CHECK(bl_join(slow, NULL) == 0);
    return NULL;
}

/* ---- cancelled during a lookup ---- */

static void *cancelled_victim(void *arg)
{
    (void)arg;
    CHECK_NULL_ERR(bl_connect_timeout("c" SLOW_SUFFIX, port, 5), ECANCELED);
    return NULL;
}

static void *cancels(void *arg)
{
    (void)arg;
    slow_delay = 1.0;
    double t0 = core_now();
    bl_thread *v = bl_spawn(NULL, cancelled_victim, NULL);
    CHECK(v != NULL);
    CHECK(bl_sleep(0.05) == 0);
    CHECK(bl_cancel(v) == 0);
    CHECK(bl_join(v, NULL) == 0);
    if (core_now() - t0 > 0.05 + SLACK)
        CORE_FAIL("the cancel waited for the lookup");
    return NULL;
}

/* ---- cancelled after the lookup ended but before the scheduler saw it
 * A thread that does not yield keeps the scheduler from polling while the
 * lookup (0.1 s) finishes on its pool thread; then it cancels the waiting
 * thread and makes the scheduler poll before that thread runs, so the
 * pool's completion is drained between the wake-up and the return: the
 * finished lookup's result is then the cancelled caller's to free. */

static int late_before;          /* results_out before late_cancel() */

static void *hog_then_cancel(void *arg)
{
    bl_thread *victim = arg;
    /* Until the lookup (0.1 s, then the real one for "localhost", slow
     * under Valgrind) has returned its result, and 0.2 s more for the pool
     * thread to post its completion. */
    double t0 = core_now();
    while (__atomic_load_n(&results_out, __ATOMIC_SEQ_CST) == late_before ||
           __atomic_load_n(&lookups_running, __ATOMIC_SEQ_CST) != 0) {
        if (core_now() - t0 > 30)
            CORE_FAIL("the lookup did not end within 30 s");
    }
    t0 = core_now();
    while (core_now() - t0 < 0.2)
        ;
    CHECK(bl_cancel(victim) == 0);
    /* Poll now, while the victim is woken but has not run. */
    CHECK(bl_sleep(0) == 0);
    return NULL;
}

static void *late_cancel(void *arg)
{
    (void)arg;
    slow_delay = 0.1;
    int before = late_before = __atomic_load_n(&results_out, __ATOMIC_SEQ_CST);
    bl_thread *v = bl_spawn(NULL, cancelled_victim, NULL);
    CHECK(v != NULL);
    CHECK(bl_yield() == 0); /* v starts its lookup and parks */
    bl_thread *h = bl_spawn(NULL, hog_then_cancel, v);
    CHECK(h != NULL);
    CHECK(bl_join(v, NULL) == 0 && bl_join(h, NULL) == 0);
    CHECK(__atomic_load_n(&results_out, __ATOMIC_SEQ_CST) == before + 1);
    return NULL;
}

/* ---- a child of fork() after lookups: the pool's threads did not come
 * along, and it starts new ones ---- */

static void *child_connects(void *arg)
{
    (void)arg;
    bl_listener *l = bl_listen("127.0.0.1", 0, 4);
    CHECK(l != NULL);
    bl_conn *c = bl_connect_timeout("localhost", bl_listener_port(l), 5);
    if (c == NULL)
        CORE_FAIL("bl_connect(\"localhost\") in a child of fork(): %s",
                  strerror(errno));
    bl_conn *in = bl_accept(l);
    CHECK(in != NULL);
    CHECK(bl_close(in) == 0 && bl_close(c) == 0);
    CHECK(bl_listener_close(l) == 0);
    return NULL;
}

static int child_after_fork(void)
{
    slow_delay = 0;
    core_run_green(child_connects, NULL);
    return 0;
}

static void test_fork(void)
{
    core_run_child_ok("lookup in a child of fork()", child_after_fork, 20.0);
}

/* ---- fork() while a lookup runs: it waits for the lookup to end ---- */

static void *slow_connect(void *arg)
{
    bl_listener *l = arg;
    bl_conn *c = bl_connect_timeout("a" SLOW_SUFFIX, bl_listener_port(l), 10);
    CHECK(c != NULL);
    bl_conn *in = bl_accept(l);
    CHECK(in != NULL);
    CHECK(bl_close(in) == 0 && bl_close(c) == 0);
    return NULL;
}

static void *lookup_os_thread(void *arg)
{
    core_run_green(slow_connect, arg);
    return NULL;
}

static void test_fork_during_lookup(void)
{
    bl_listener *l = bl_listen("127.0.0.1", 0, 4);
    CHECK(l != NULL);
    __atomic_store_n(&hold_lock, 1, __ATOMIC_SEQ_CST);
    slow_delay = 0.3;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, lookup_os_thread, l) == 0);
    while (__atomic_load_n(&lookups_running, __ATOMIC_SEQ_CST) == 0)
        usleep(1000);
    /* Forked now, the child would hold resolver_lock forever. */
    core_run_child_ok("lookup in a child forked during a lookup",
                      child_after_fork, 20.0);
    CHECK(pthread_join(th, NULL) == 0);
    __atomic_store_n(&hold_lock, 0, __ATOMIC_SEQ_CST);
    CHECK(bl_listener_close(l) == 0);
}

/* All scenarios run on one scheduler: the listener is tied to it. */
static void run_on(bl_sched *s, bl_func fn)
{
    CHECK(bl_spawn(s, fn, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
}

int main(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    listener = bl_listen("127.0.0.1", 0, 16);
    CHECK(listener != NULL);
    port = bl_listener_port(listener);

    run_on(s, not_behind);
    printf("a quick lookup right after a slow one does not wait for it\n");

    run_on(s, times_out);
    check_all_freed(s);
    printf("lookup longer than the timeout: ETIMEDOUT at the timeout\n");

    run_on(s, connects);
    check_all_freed(s);
    printf("slow lookup within the timeout: connected, scheduler ran\n");

    run_on(s, cancels);
    check_all_freed(s);
    printf("cancel during a lookup: ECANCELED at once\n");

    for (int i = 0; i < 3; i++)
        run_on(s, late_cancel);
    check_all_freed(s);
    printf("cancel after the lookup ended, before it was drained: ECANCELED, "
           "%d results out, all freed\n", results_out);

    CHECK(bl_listener_close(listener) == 0);
    bl_sched_free(s);

    /* The pool has threads by now. */
#ifdef CORE_EMULATED
    /* qemu-user itself fails an assertion when a child of a multithreaded
     * process starts a thread. */
    printf("skip: lookup in a child of fork() (emulated)\n");
    (void)test_fork;
    (void)test_fork_during_lookup;
#elif defined(CORE_TSAN)
    /* So does ThreadSanitizer (die_after_fork). */
    printf("skip: lookup in a child of fork() (ThreadSanitizer)\n");
    (void)test_fork;
    (void)test_fork_during_lookup;
#else
    test_fork();
    printf("lookup in a child of fork(): works\n");
    test_fork_during_lookup();
    printf("fork() during a lookup: waits for it; lookups work in the "
           "child\n");
#endif
    printf("net_lookup: ok\n");
    return 0;
}
