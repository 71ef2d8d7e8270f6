/* SPDX-License-Identifier: MIT */
/*
 * test_net_epollfail.c - when epoll_ctl() fails for a descriptor a thread
 * waits on (ENOSPC at fs.epoll.max_user_watches), libev stops the watcher
 * itself and reports EV_ERROR. The waiter is woken at once (not at the next
 * unrelated event), pauses, and retries: bl_recv, bl_accept and bl_wait_fd
 * then get their event, bl_wait_fd reports only the events asked for, and
 * bl_connect does not take the wake-up for a finished connect. While the
 * kernel keeps refusing, the retries are paced (pauses that double), a
 * timeout still ends the call, and so does a close. The scheduler's count of what can still wake a thread stays
 * right: a later wait on a healthy connection is not mistaken for a
 * deadlock. A scheduler whose own wake-up descriptor is refused is not
 * made at all (bl_sched_new() fails with ENOSPC); refused later (when libev
 * rebuilds its epoll set), the scheduler retries and keeps working.
 *
 * The failure is simulated: this program defines epoll_ctl(), which libev
 * then calls, and fails one EPOLL_CTL_ADD for a chosen descriptor.
 */
#define _GNU_SOURCE
#include "netb_util.h"

#include <dlfcn.h>
#include <ev.h>
#include <limits.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/epoll.h>

/* What epoll_ctl() does to EPOLL_CTL_ADD of fail_fd (or, with fail_fd ==
 * FAIL_ANY_OUT, of any descriptor for EPOLLOUT; with FAIL_ANY, of any
 * descriptor): fail `fail_left` times. */
#define FAIL_ANY_OUT (-2)
#define FAIL_ANY (-3)
static int fail_fd = -1;
static int fail_left;
static int pass_first;          /* matching ADDs let through before failing */
static int failed;              /* ADDs failed */
static int added;               /* ADDs of fail_fd that worked since */

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{
    static int (*real)(int, int, int, struct epoll_event *);
    if (real == NULL)
        real = (int (*)(int, int, int, struct epoll_event *))dlsym(
            RTLD_NEXT, "epoll_ctl");
    if (op == EPOLL_CTL_ADD &&
        (fd == __atomic_load_n(&fail_fd, __ATOMIC_ACQUIRE) ||
         fail_fd == FAIL_ANY ||
         (fail_fd == FAIL_ANY_OUT && (event->events & EPOLLOUT)))) {
        if (pass_first > 0) {
            pass_first--;
        } else if (fail_left > 0) {
            fail_left--;
            __atomic_add_fetch(&failed, 1, __ATOMIC_RELEASE);
            errno = ENOSPC;
            return -1;
        }
        int r = real(epfd, op, fd, event);
        if (r == 0)
            __atomic_add_fetch(&added, 1, __ATOMIC_RELEASE);
        return r;
    }
    return real(epfd, op, fd, event);
}

/* Fail the next n ADDs of fd. */
static void fail_adds(int fd, int n)
{
    fail_left = n;
    failed = added = 0;
    __atomic_store_n(&fail_fd, fd, __ATOMIC_RELEASE);
}

static void fail_none(void)
{
    __atomic_store_n(&fail_fd, -1, __ATOMIC_RELEASE);
    fail_left = 0;
    pass_first = 0;
}

/* A green thread that keeps a timer active for as long as a section runs,
 * so that libev's poll blocks: an EV_ERROR that waited for the poll to end
 * would then never be delivered (the watchdog fails the test). */
static void *keeper(void *arg)
{
    (void)arg;
    bl_sleep(3600);
    return NULL;
}

static bl_thread *keeper_start(void)
{
    bl_thread *k = bl_spawn(bl_sched_current(), keeper, NULL);
    CHECK(k != NULL);
    return k;
}

static void keeper_stop(bl_thread *k)
{
    CHECK(bl_cancel(k) == 0);
    CHECK(bl_join(k, NULL) == 0);
}

/* Another OS thread acts once epoll has the descriptor after its failed
 * ADD: it writes a byte to a peer (fd >= 0) or connects to a port. */
struct after_add {
    int peer;
    int port;
    int client;
};

static void *act_after_add(void *arg)
{
    struct after_add *a = arg;
    while (__atomic_load_n(&added, __ATOMIC_ACQUIRE) == 0)
        usleep(1000);
    if (a->peer >= 0)
        netb_write_all(a->peer, "y", 1);
    else
        a->client = netb_raw_connect(a->port);
    return NULL;
}

static int late_peer;

/* Another OS thread writes to a connection a while later. */
static void *late_write(void *arg)
{
    (void)arg;
    usleep(200 * 1000);
    netb_write_all(late_peer, "y", 1);
    return NULL;
}

/* bl_recv: the failed wait is retried; the data sent only once the retry
 * has registered the descriptor arrives. */
static void *recv_retry(void *arg)
{
    (void)arg;
    bl_thread *k = keeper_start();
    int peer;
    char ch;
    bl_conn *c = netb_tcp_pair(&peer);
    struct after_add a = {.peer = peer};
    pthread_t pt;
    fail_adds(bl_conn_fd(c), 1);
    CHECK(pthread_create(&pt, NULL, act_after_add, &a) == 0);
    CHECK(bl_recv(c, &ch, 1) == 1 && ch == 'y');
    CHECK(pthread_join(pt, NULL) == 0);
    CHECK_EQ_LL(failed, 1);
    fail_none();

    /* A healthy connection that becomes readable only later: while we wait,
     * nothing else can wake a thread, which must not look like a deadlock
     * (bl_sched_run() would fail with EDEADLK). */
    keeper_stop(k);
    int peer2;
    bl_conn *c2 = netb_tcp_pair(&peer2);
    late_peer = peer2;
    CHECK(pthread_create(&pt, NULL, late_write, NULL) == 0);
    CHECK(bl_recv(c2, &ch, 1) == 1 && ch == 'y');
    CHECK(pthread_join(pt, NULL) == 0);

    CHECK(bl_close(c) == 0 && bl_close(c2) == 0);
    CHECK(close(peer) == 0 && close(peer2) == 0);
    return NULL;
}

/* While every ADD fails, bl_recv retries after pauses that double, not in a
 * busy loop, and its timeout still ends it; the connection works after. */
static void *recv_refused(void *arg)
{
    (void)arg;
    bl_thread *k = keeper_start();
    int peer;
    char ch;
    bl_conn *c = netb_tcp_pair(&peer);
    const double timeout = 0.1;
    CHECK(bl_conn_set_timeout(c, timeout) == 0);
    fail_adds(bl_conn_fd(c), INT_MAX);
    CHECK(bl_recv(c, &ch, 1) == -1 && errno == ETIMEDOUT);
    int tries = __atomic_load_n(&failed, __ATOMIC_ACQUIRE);
    fail_none();
    printf("  %d failed registrations in a %.1f s timeout\n", tries, timeout);
    /* Pauses of 1, 2, 4, ... ms (BL_WATCH_RETRY, doubled): 7 in 0.1 s. A
     * fixed 1 ms pause would make about 100 tries, a busy loop thousands
     * (one every few microseconds). */
    CHECK(tries >= 2 && tries <= 20);
    netb_write_all(peer, "z", 1);
    CHECK(bl_recv(c, &ch, 1) == 1 && ch == 'z');
    CHECK(bl_close(c) == 0 && close(peer) == 0);
    keeper_stop(k);
    return NULL;
}

/* bl_close during the pause of a bl_recv that libev could not register
 * ends it with EBADF; a descriptor closed during bl_wait_fd's pause is
 * EBADF too (registering it again would make libev abort). */
static bl_conn *closing_conn;
static int closing_fd = -1;

static void *recv_until_closed(void *arg)
{
    (void)arg;
    char ch;
    CHECK_ERR(bl_recv(closing_conn, &ch, 1), EBADF);
    return NULL;
}

static void *wait_until_closed(void *arg)
{
    (void)arg;
    CHECK_ERR(bl_wait_fd(closing_fd, BL_READ, -1), EBADF);
    return NULL;
}

/* Start fn, let its registration fail a few times, then close. */
static void close_in_pause(bl_func fn, int fd, int (*closer)(void))
{
    fail_adds(fd, INT_MAX);
    bl_thread *t = bl_spawn(NULL, fn, NULL);
    CHECK(t != NULL);
    while (__atomic_load_n(&failed, __ATOMIC_ACQUIRE) < 3)
        CHECK(bl_sleep(0.0005) == 0);
    CHECK(closer() == 0);
    CHECK(bl_join(t, NULL) == 0);
    fail_none();
}

static int close_conn(void)
{
    return bl_close(closing_conn);
}

static int close_fd(void)
{
    return close(closing_fd);
}

static void *close_during_pause(void *arg)
{
    (void)arg;
    bl_thread *k = keeper_start();
    int peer;
    closing_conn = netb_tcp_pair(&peer);
    close_in_pause(recv_until_closed, bl_conn_fd(closing_conn), close_conn);
    CHECK(close(peer) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    closing_fd = sv[0];
    close_in_pause(wait_until_closed, sv[0], close_fd);
    CHECK(close(sv[1]) == 0);
    keeper_stop(k);
    return NULL;
}

/* bl_wait_fd: retried, and only the events asked for are returned. The
 * socket is writable all along; libev's EV_ERROR says "read and write". */
static void *wait_fd_retry(void *arg)
{
    (void)arg;
    bl_thread *k = keeper_start();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    struct after_add a = {.peer = sv[1]};
    pthread_t pt;
    fail_adds(sv[0], 1);
    CHECK(pthread_create(&pt, NULL, act_after_add, &a) == 0);
    CHECK_EQ_LL(bl_wait_fd(sv[0], BL_READ, -1), BL_READ);
    CHECK(pthread_join(pt, NULL) == 0);
    CHECK_EQ_LL(failed, 1);
    fail_none();
    char ch;
    CHECK(read(sv[0], &ch, 1) == 1 && ch == 'y');
    CHECK(close(sv[0]) == 0 && close(sv[1]) == 0);
    keeper_stop(k);
    return NULL;
}

/* bl_accept: retried; the client that connects only once the listener is
 * registered is accepted. */
static void *accept_retry(void *arg)
{
    (void)arg;
    bl_thread *k = keeper_start();
    bl_listener *l = bl_listen("127.0.0.1", 0, 16);
    CHECK(l != NULL);
    struct after_add a = {.peer = -1, .port = bl_listener_port(l)};
    pthread_t pt;
    fail_adds(bl_listener_fd(l), 1);
    CHECK(pthread_create(&pt, NULL, act_after_add, &a) == 0);
    bl_conn *c = bl_accept(l);
    CHECK(c != NULL);
    CHECK(pthread_join(pt, NULL) == 0);
    CHECK_EQ_LL(failed, 1);
    fail_none();
    CHECK(bl_close(c) == 0 && close(a.client) == 0);
    CHECK(bl_listener_close(l) == 0);
    keeper_stop(k);
    return NULL;
}

/* bl_connect to a port whose accept queue is full (the SYN is dropped, the
 * connect stays in progress): the EV_ERROR wake-up of its wait is not a
 * finished connect, so it times out instead of returning a connection
 * that is not connected. */
static void *connect_pending(void *arg)
{
    (void)arg;
    int fds[10];
    int port = netb_hung_port(fds);
    fail_adds(FAIL_ANY_OUT, 1);
    bl_conn *c = bl_connect_timeout("127.0.0.1", port, 0.3);
    int err = errno;
    CHECK_EQ_LL(failed, 1);
    fail_none();
    if (c != NULL) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        CORE_FAIL("bl_connect returned a connection; getpeername: %s",
                  getpeername(bl_conn_fd(c), (struct sockaddr *)&ss, &sl) == 0
                      ? "connected"
                      : strerror(errno));
    }
    CHECK_EQ_LL(err, ETIMEDOUT);
    netb_close_all(fds);
    return NULL;
}

/* The scheduler's own wake-up descriptor refused when bl_sched_new()
 * registers it: a scheduler that lookups finished by the pool cannot wake is
 * not made (ENOSPC), and nothing of it is left open. The next scheduler, not
 * refused, works. */
static int slept;               /* short_sleep()s whose sleep worked */

static void *short_sleep(void *arg)
{
    if (bl_sleep(0.01) == 0)
        slept++;
    return arg;
}

static void sched_wake_fd_refused(void)
{
    netb_watchdog("sched_wake_fd_refused");
    int fds = netb_count_fds();
    fail_adds(FAIL_ANY, 1);
    errno = 0;
    bl_sched *s = bl_sched_new();
    int e = errno;
    fail_none();
    if (s != NULL) {
        bl_sched_free(s);
        CHECK(!"bl_sched_new() succeeded with a refused wake-up descriptor");
    }
    CHECK(failed == 1);
    CHECK(e == ENOSPC);
    CHECK_EQ_LL(netb_count_fds() - fds, 0);
    s = bl_sched_new();
    CHECK(s != NULL);
    slept = 0;
    CHECK(bl_spawn(s, short_sleep, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK(slept == 1);
    bl_sched_free(s);
    CHECK_EQ_LL(netb_count_fds() - fds, 0);
}

/* The wake-up descriptor refused later, when libev registers every
 * descriptor again in a new epoll set: after ev_loop_fork(), or by itself
 * when it recovers from a stale descriptor (ev_loop_fork() stands in for
 * that here). With the scheduler on an ev_async, libev stopped its internal
 * watcher silently: bl_sched_run() then reported a sleep as a deadlock
 * (EDEADLK) and lookups could not wake the scheduler. Now the scheduler
 * retries. Checked: a sleep is a sleep; and, while another thread sleeps
 * for an hour (so that libev's poll blocks), lookups finish with the
 * descriptor refused `refusals` times in a row, in the poll that waits for
 * the first (after `delay` seconds of sleep, so that libev's timers and
 * retries interleave differently). A lookup left to wait for the next
 * unrelated event, or for good, fails the test by its watchdog. */

/* The eventfd that is open now and was not when `before` was taken. */
static void eventfds(char *is)
{
    memset(is, 0, 1024);
    for (int fd = 0; fd < 1024; fd++) {
        char path[64], link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0) {
            link[n] = 0;
            is[fd] = strcmp(link, "anon_inode:[eventfd]") == 0;
        }
    }
}

static int new_eventfd(const char *before)
{
    char now[1024];
    eventfds(now);
    int found = -1;
    for (int fd = 0; fd < 1024; fd++)
        if (now[fd] && !before[fd]) {
            CHECK(found < 0);
            found = fd;
        }
    CHECK(found >= 0);
    return found;
}

static bl_listener *rearm_l;
static double rearm_delay;
static int rearm_fd, rearm_refusals;

static void *rearm_acceptor(void *arg)
{
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++) {
        bl_conn *c = bl_accept(rearm_l);
        CHECK(c != NULL);
        CHECK(bl_close(c) == 0);
    }
    return NULL;
}

static void *rearm_main(void *arg)
{
    (void)arg;
    bl_thread *k = keeper_start();
    if (rearm_delay > 0)
        CHECK(bl_sleep(rearm_delay) == 0);
    /* The rebuild comes in the poll that waits for the first lookup. */
    ev_loop_fork(bl_sched_loop(bl_sched_current()));
    fail_adds(rearm_fd, rearm_refusals);
    /* "localhost" is not numeric: the pool resolves it. */
    for (int i = 0; i < 3; i++) {
        bl_conn *c = bl_connect("localhost", bl_listener_port(rearm_l));
        CHECK(c != NULL);
        CHECK(bl_close(c) == 0);
    }
    /* The retries go on until epoll takes the descriptor again. */
    while (__atomic_load_n(&added, __ATOMIC_ACQUIRE) == 0)
        CHECK(bl_sleep(0.01) == 0);
    keeper_stop(k);
    return NULL;
}

static void sched_wake_fd_rearm(int refusals, double delay)
{
    netb_watchdog("sched_wake_fd_rearm");
    int fds = netb_count_fds();
    char before[1024];
    eventfds(before);
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    int wfd = new_eventfd(before);

    ev_loop_fork(bl_sched_loop(s));
    fail_adds(wfd, refusals);
    slept = 0;
    CHECK(bl_spawn(s, short_sleep, NULL) != NULL);
    errno = 0;
    int rc = bl_sched_run(s);
    if (rc != 0)
        CORE_FAIL("a sleep after the wake-up descriptor was refused: "
                  "bl_sched_run() -> %d (%s)", rc, strerror(errno));
    CHECK(slept == 1);
    CHECK(failed >= 1);

    rearm_l = bl_listen(NULL, 0, 0);
    CHECK(rearm_l != NULL);
    rearm_delay = delay;
    rearm_fd = wfd;
    rearm_refusals = refusals;
    double t0 = core_now();
    CHECK(bl_spawn(s, rearm_acceptor, (void *)(intptr_t)3) != NULL);
    CHECK(bl_spawn(s, rearm_main, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    printf("wake-up descriptor refused %d time%s: 3 lookups after %.2f s "
           "done, and the descriptor watched again, in %.3f s\n", failed,
           failed == 1 ? "" : "s", delay, core_now() - t0 - delay);
    CHECK_EQ_LL(failed, refusals);
    fail_none();
    CHECK(bl_listener_close(rearm_l) == 0);
    bl_sched_free(s);
    CHECK_EQ_LL(netb_count_fds() - fds, 0);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    /* libev picks another backend when told to (LIBEV_FLAGS). */
    bl_sched *probe = bl_sched_new();
    CHECK(probe != NULL);
    unsigned backend = ev_backend(bl_sched_loop(probe));
    bl_sched_free(probe);
    if (backend != EVBACKEND_EPOLL) {
        printf("skip: libev's backend is %#x, not epoll\n", backend);
        return 0;
    }
    int fds0 = netb_begin();
    NETB_RUN(recv_retry, NULL);
    NETB_RUN(recv_refused, NULL);
    NETB_RUN(close_during_pause, NULL);
    NETB_RUN(wait_fd_retry, NULL);
    NETB_RUN(accept_retry, NULL);
    NETB_RUN(connect_pending, NULL);
    sched_wake_fd_refused();
    sched_wake_fd_rearm(1, 0);
    sched_wake_fd_rearm(2, 0.2);
    sched_wake_fd_rearm(5, 0.05);
    printf("ok: a failed epoll_ctl wakes the waiter at once, which retries "
           "(paced while it keeps failing) and gets its event; later waits "
           "are not taken for deadlocks\n");
    netb_end(fds0);
    return 0;
}
