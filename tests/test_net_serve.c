/* SPDX-License-Identifier: MIT */
/*
 * test_net_serve.c - bl_serve_listener() when things go wrong: an acceptor
 * that cannot accept on its listener ends (and closes it) instead of
 * spinning, and a connection whose handler thread cannot be spawned is
 * closed and freed.
 */
#include "netb_util.h"

#include <malloc.h>
#include <pthread.h>

static int handled;

static void handler(bl_conn *c, void *arg)
{
    (void)c;
    (void)arg;
    handled++;
}

/* ---- a listener tied to another scheduler: the acceptor ends ---- */

static bl_listener *tied_l;

/* Scheduler A: a bounded bl_accept() ties the listener to A. */
static void *tie_main(void *arg)
{
    (void)arg;
    CHECK(bl_listener_set_timeout(tied_l, 0.02) == 0);
    CHECK(bl_accept(tied_l) == NULL && errno == ETIMEDOUT);
    CHECK(bl_listener_set_timeout(tied_l, 0) == 0);
    return NULL;
}

static void test_acceptor_exdev(void)
{
    netb_watchdog("acceptor on a listener tied elsewhere");
    tied_l = bl_listen("127.0.0.1", 0, 4);
    CHECK(tied_l != NULL);
    bl_sched *a = bl_sched_new();
    bl_sched *b = bl_sched_new();
    CHECK(a != NULL && b != NULL);

    /* Served on B while it is tied to nothing; then A's thread ties it
     * before the acceptor runs: the acceptor gets EXDEV, which no retry can
     * cure. It must end, not spin (the watchdog fails the test if
     * bl_sched_run() does not return), and close the listener it owns. */
    bl_thread *acc = bl_serve_listener(b, tied_l, handler, NULL);
    CHECK(acc != NULL);
    CHECK(bl_spawn(a, tie_main, NULL) != NULL);
    CHECK(bl_sched_run(a) == 0);
    CHECK(bl_sched_run(b) == 0);
    CHECK_EQ_LL(bl_sched_nthreads(b), 0);
    /* A has nothing tied left: freeing it must not touch the freed
     * listener (ASan would see it). */
    bl_sched_free(a);
    printf("ok: an acceptor that gets EXDEV ends and closes its listener\n");

    /* Already tied to A: refused at once, and the listener stays the
     * caller's, open. */
    a = bl_sched_new();
    CHECK(a != NULL);
    tied_l = bl_listen("127.0.0.1", 0, 4);
    CHECK(tied_l != NULL);
    CHECK(bl_spawn(a, tie_main, NULL) != NULL);
    CHECK(bl_sched_run(a) == 0);
    errno = 0;
    CHECK(bl_serve_listener(b, tied_l, handler, NULL) == NULL);
    CHECK_EQ_LL(errno, EXDEV);
    CHECK_EQ_LL(bl_sched_nthreads(b), 0);
    int fd = netb_raw_connect(bl_listener_port(tied_l));   /* still open */
    CHECK(close(fd) == 0);
    CHECK(bl_listener_close(tied_l) == 0);
    bl_sched_free(b);
    bl_sched_free(a);
    alarm(0);
    printf("ok: serving a listener tied to another scheduler fails with "
           "EXDEV and leaves it open\n");
}

/* ---- a listener tied to a scheduler running in another OS thread:
 * refused at once, and left to its owner ---- */

static int f_go[2];         /* main -> owner: bl_serve_listener() is done */
static int f_ready;         /* owner -> main: the listener is tied */

static void *f_owner(void *arg)
{
    (void)arg;
    char b;
    CHECK(bl_listener_set_timeout(tied_l, 0.01) == 0);
    CHECK(bl_accept(tied_l) == NULL && errno == ETIMEDOUT);
    CHECK(bl_listener_set_timeout(tied_l, 0) == 0);
    __atomic_store_n(&f_ready, 1, __ATOMIC_RELEASE);
    CHECK(bl_wait_fd(f_go[0], BL_READ, 60) == BL_READ);
    CHECK(read(f_go[0], &b, 1) == 1);
    /* Still open, and still works here. */
    int fd = netb_raw_connect(bl_listener_port(tied_l));
    bl_conn *c = bl_accept(tied_l);
    CHECK(c != NULL);
    CHECK(bl_close(c) == 0 && close(fd) == 0);
    CHECK(bl_listener_close(tied_l) == 0);
    return NULL;
}

static void *f_os_thread(void *arg)
{
    CHECK(bl_sched_run(arg) == 0);
    return NULL;
}

static void test_serve_foreign(void)
{
    netb_watchdog("serving a listener tied to a running scheduler");
    CHECK(pipe(f_go) == 0);
    tied_l = bl_listen("127.0.0.1", 0, 4);
    CHECK(tied_l != NULL);
    bl_sched *a = bl_sched_new();
    CHECK(a != NULL);
    CHECK(bl_spawn(a, f_owner, NULL) != NULL);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, f_os_thread, a) == 0);
    while (!__atomic_load_n(&f_ready, __ATOMIC_ACQUIRE))
        usleep(1000);
    bl_sched *b = bl_sched_new();
    CHECK(b != NULL);
    errno = 0;
    CHECK(bl_serve_listener(b, tied_l, handler, NULL) == NULL);
    CHECK_EQ_LL(errno, EXDEV);
    CHECK_EQ_LL(bl_sched_nthreads(b), 0);
    CHECK(write(f_go[1], "g", 1) == 1);
    CHECK(pthread_join(th, NULL) == 0);
    bl_sched_free(b);
    bl_sched_free(a);
    CHECK(close(f_go[0]) == 0 && close(f_go[1]) == 0);
    alarm(0);
    printf("ok: serving a listener tied to a scheduler running elsewhere "
           "fails with EXDEV and leaves it to its owner\n");
}

/* ---- the listener closed under a waiting acceptor ---- */

/* The acceptor owns its listener, but a bl_listener_close() of someone
 * else's must not leave it with freed memory: it wakes with EBADF and ends.
 * Before, its bl_accept() freed the listener as it returned and the
 * acceptor then closed it again: a use after free that ASan reports (the
 * sanitizer configuration of tests/check.sh); elsewhere it read malloc's
 * bookkeeping. Another listener made meanwhile must stay open. */
static void *close_under_main(void *arg)
{
    (void)arg;
    bl_listener *l = bl_listen("127.0.0.1", 0, 4);
    CHECK(l != NULL);
    bl_thread *acc = bl_serve_listener(NULL, l, handler, NULL);
    CHECK(acc != NULL);
    CHECK(bl_yield() == 0);              /* it waits in bl_accept() now */
    CHECK(bl_listener_close(l) == 0);
    bl_listener *l2 = bl_listen("127.0.0.1", 0, 4);
    CHECK(l2 != NULL);
    CHECK(bl_join(acc, NULL) == 0);      /* it ended */

    /* l2 is open and accepts. */
    int port2 = bl_listener_port(l2);
    CHECK(port2 > 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port2);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(bl_listener_set_timeout(l2, 5) == 0);
    bl_conn *c = bl_accept(l2);
    if (c == NULL)
        CORE_FAIL("bl_accept on the new listener: %s", strerror(errno));
    CHECK(bl_close(c) == 0);
    CHECK(bl_listener_close(l2) == 0);
    close(fd);
    return NULL;
}

static void test_close_under_acceptor(void)
{
    netb_watchdog("listener closed under its acceptor");
    core_run_green(close_under_main, NULL);
    alarm(0);
    printf("ok: closing the listener of a waiting acceptor ends it\n");
}

/* ---- handler threads that cannot be spawned ---- */

#define NCONN 64

static int port;

/* Connect NCONN times and wait for the server to close each connection. */
static void *clients(void *arg)
{
    (void)arg;
    int fds[NCONN];
    for (int i = 0; i < NCONN; i++)
        fds[i] = netb_raw_connect(port);
    for (int i = 0; i < NCONN; i++) {
        bl_conn *c = bl_conn_new(fds[i]);
        CHECK(c != NULL);
        char buf[8];
        CHECK(bl_recv(c, buf, sizeof buf) == 0);    /* closed by the server */
        CHECK(bl_close(c) == 0);
    }
    return NULL;
}

static size_t heap_in_use(void)
{
    return mallinfo2().uordblks;
}

/* The driver: serves, runs a round of clients with handlers, then one in
 * which no handler stack can be mapped (RLIMIT_AS), and checks that those
 * connections were closed and freed all the same. */
static void *spawn_fails_main(void *arg)
{
    bl_listener *l = arg;
    bl_thread *acc = bl_serve_listener(NULL, l, handler, NULL);
    CHECK(acc != NULL);
    clients(NULL);                      /* warm-up: the heap reaches its size */
    CHECK(handled == NCONN);

    struct rlimit old = netb_limit_address_space((size_t)256 << 20);
    CHECK(bl_sched_set_stack_size(bl_sched_current(), (size_t)1 << 30) == 0);
    /* Each connection is closed: no handler runs. The first such round
     * warms up the failure path (libev's timers, ...); the second is
     * measured. */
    clients(NULL);
    size_t before = heap_in_use();
    clients(NULL);
    size_t after = heap_in_use();
    CHECK(setrlimit(RLIMIT_AS, &old) == 0);
    CHECK(handled == NCONN);
    /* A connection is a few hundred bytes: leaking each would add ~16 KiB. */
    if (after > before + NCONN * 64)
        CORE_FAIL("heap grew by %zu bytes over %d connections whose handler "
                  "could not be spawned: they leak", after - before, NCONN);
    CHECK(bl_cancel(acc) == 0);
    CHECK(bl_join(acc, NULL) == 0);
    return NULL;
}

static int child_spawn_fails(void)
{
    bl_listener *l = bl_listen("127.0.0.1", 0, NCONN);
    CHECK(l != NULL);
    port = bl_listener_port(l);
    netb_watchdog("handlers that cannot be spawned");
    core_run_green(spawn_fails_main, l);
    return 0;
}

static void test_spawn_fails(void)
{
#if defined(NETB_ASAN) || defined(CORE_EMULATED)
    /* ASan cannot run under a tight RLIMIT_AS, and qemu-user does not
     * enforce one. */
    printf("skip: handlers that cannot be spawned (ASan or emulated)\n");
    (void)child_spawn_fails;
#else
    core_run_child_ok("handlers that cannot be spawned", child_spawn_fails,
                      30.0);
    printf("ok: connections whose handler cannot be spawned are closed and "
           "freed\n");
#endif
}

/* ---- handlers that end with bl_exit() ---- */

#define NEXIT 8

static void exit_deep(int depth)
{
    if (depth > 0)
        exit_deep(depth - 1);
    else
        bl_exit((void *)1);
}

static void exiting_handler(bl_conn *c, void *arg)
{
    (void)arg;
    char b[4];
    CHECK(bl_recv(c, b, sizeof b) == 1);
    handled++;
    exit_deep(3);
    CORE_FAIL("bl_exit() returned");
}

static void *exit_main(void *arg)
{
    (void)arg;
    bl_listener *l = bl_listen("127.0.0.1", 0, NEXIT);
    CHECK(l != NULL);
    int p = bl_listener_port(l);
    bl_thread *acc = bl_serve_listener(NULL, l, exiting_handler, NULL);
    CHECK(acc != NULL);
    for (int i = 0; i < NEXIT; i++) {
        bl_conn *c = bl_conn_new(netb_raw_connect(p));
        CHECK(c != NULL);
        CHECK(bl_conn_set_timeout(c, 10) == 0);
        CHECK(bl_sendall(c, "x", 1) == 0);
        char buf[8];
        /* The handler's bl_exit() closes the connection as its return
         * would: EOF, not a timeout. */
        CHECK(bl_recv(c, buf, sizeof buf) == 0);
        CHECK(bl_close(c) == 0);
    }
    CHECK(bl_cancel(acc) == 0);
    CHECK(bl_join(acc, NULL) == 0);
    return NULL;
}

static void test_exit_in_handler(void)
{
    int fds0 = netb_count_fds();
    handled = 0;
    netb_watchdog("handlers that call bl_exit()");
    core_run_green(exit_main, NULL);
    alarm(0);
    CHECK(handled == NEXIT);
    NETB_CHECK_FDS(fds0);
    printf("ok: a handler that calls bl_exit() has its connection closed\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_acceptor_exdev();
    test_serve_foreign();
    test_close_under_acceptor();
    test_spawn_fails();
    test_exit_in_handler();
    return 0;
}
