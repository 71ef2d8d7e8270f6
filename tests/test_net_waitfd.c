/* SPDX-License-Identifier: MIT */
/*
 * test_net_waitfd.c - bl_wait_fd(): waiting for a descriptor to become
 * readable or writable. On pipes and sockets: the ready events are returned
 * (a nonzero subset of those asked for), a wait ends when another green
 * thread or an OS thread makes the descriptor ready, end of file and a
 * broken pipe count as ready, several threads may wait on one descriptor,
 * and the waiting thread alone is suspended. Errors: EPERM outside green
 * threads (no scheduler, another OS thread, a libev callback), EINVAL for
 * bad arguments, ECANCELED when the waiting thread is cancelled (also before
 * it waits, and with a timeout set). A ready descriptor is ready whatever
 * the timeout, however short.
 */
#include "netb_util.h"

#include <ev.h>
#include <math.h>
#include <pthread.h>

/* ---- readiness on pipes ---- */

struct later {
    int fd;
    double delay;
    int drain;     /* read everything instead of writing a byte */
};

static void *later_fn(void *arg)
{
    struct later *w = arg;
    CHECK(bl_sleep(w->delay) == 0);
    if (w->drain)
        netb_drain(w->fd);
    else
        netb_write_all(w->fd, "!", 1);
    return NULL;
}

static int ticks;

/* Counts while another thread waits: proof the wait suspends only its
 * caller. */
static void *ticker(void *arg)
{
    int *stop = arg;
    while (!*stop) {
        ticks++;
        CHECK(bl_sleep(0.002) == 0);
    }
    return NULL;
}

static void *pipe_main(void *arg)
{
    (void)arg;
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);

    /* An empty pipe: writable at once, not readable. */
    CHECK(bl_wait_fd(p[1], BL_WRITE, -1) == BL_WRITE);
    CHECK(bl_wait_fd(p[1], BL_READ | BL_WRITE, -1) == BL_WRITE);
    CHECK(bl_wait_fd(p[1], BL_WRITE, 0) == BL_WRITE);

    /* Readable once another green thread writes; others keep running. */
    int stop = 0;
    ticks = 0;
    bl_thread *tk = bl_spawn(NULL, ticker, &stop);
    CHECK(tk != NULL);
    struct later w = {.fd = p[1], .delay = 0.1};
    bl_thread *tw = bl_spawn(NULL, later_fn, &w);
    CHECK(tw != NULL);
    double t0 = core_now();
    CHECK(bl_wait_fd(p[0], BL_READ, -1) == BL_READ);
    NETB_CHECK_TOOK(t0, 0.1, "bl_wait_fd until a write");
    stop = 1;
    CHECK(bl_join(tw, NULL) == 0 && bl_join(tk, NULL) == 0);
    CHECK(ticks >= 3);   /* the ticker ran while we waited */
    /* Still readable (nothing was read): at once, also with timeout 0. */
    CHECK(bl_wait_fd(p[0], BL_READ, -1) == BL_READ);
    CHECK(bl_wait_fd(p[0], BL_READ | BL_WRITE, 0) == BL_READ);
    char c;
    CHECK(read(p[0], &c, 1) == 1 && c == '!');

    /* A full pipe: writable again once a green thread drains it. */
    netb_fill_pipe(p[1]);
    CHECK_ERR(bl_wait_fd(p[1], BL_WRITE, 0), ETIMEDOUT);
    w = (struct later){.fd = p[0], .delay = 0.05, .drain = 1};
    tw = bl_spawn(NULL, later_fn, &w);
    CHECK(tw != NULL);
    t0 = core_now();
    CHECK(bl_wait_fd(p[1], BL_WRITE, 5) == BL_WRITE);
    NETB_CHECK_TOOK(t0, 0.05, "bl_wait_fd until a drain");
    CHECK(bl_join(tw, NULL) == 0);

    /* End of file is readable; a pipe without readers is "writable" (the
     * write then fails with EPIPE). */
    close(p[1]);
    CHECK(bl_wait_fd(p[0], BL_READ, 5) == BL_READ);
    CHECK(read(p[0], &c, 1) == 0);
    close(p[0]);
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    close(p[0]);
    CHECK(bl_wait_fd(p[1], BL_WRITE, 5) == BL_WRITE);
    close(p[1]);
    return NULL;
}

/* ---- sockets, both events, several waiters, an OS thread as the peer ---- */

struct waiter {
    int fd, events, got;
};

static void *waiter_fn(void *arg)
{
    struct waiter *w = arg;
    w->got = bl_wait_fd(w->fd, w->events, 5);
    return NULL;
}

static void *os_writer(void *arg)
{
    int fd = *(int *)arg;
    usleep(50000);
    netb_write_all(fd, "os", 2);
    return NULL;
}

static void *socket_main(void *arg)
{
    (void)arg;
    int peer;
    bl_conn *c = netb_tcp_pair(&peer);
    int fd = bl_conn_fd(c);

    /* Connected, nothing received: writable only. */
    CHECK(bl_wait_fd(fd, BL_READ | BL_WRITE, -1) == BL_WRITE);
    CHECK_ERR(bl_wait_fd(fd, BL_READ, 0.02), ETIMEDOUT);

    /* Three threads wait on one descriptor; an OS thread writes: each
     * gets the events it asked for that are ready. */
    struct waiter w[3] = {{fd, BL_READ, 0}, {fd, BL_READ, 0},
                          {fd, BL_READ | BL_WRITE, 0}};
    bl_thread *t[2];
    for (int i = 0; i < 2; i++)
        CHECK((t[i] = bl_spawn(NULL, waiter_fn, &w[i])) != NULL);
    CHECK(bl_yield() == 0);     /* both wait now */
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, os_writer, &peer) == 0);
    for (int i = 0; i < 2; i++) {
        CHECK(bl_join(t[i], NULL) == 0);
        CHECK_EQ_LL(w[i].got, BL_READ);
    }
    CHECK(pthread_join(tid, NULL) == 0);
    waiter_fn(&w[2]);
    CHECK_EQ_LL(w[2].got, BL_READ | BL_WRITE);

    /* bl_wait_fd agrees with the connection: the data is there. */
    char buf[8];
    CHECK(bl_recv(c, buf, sizeof buf) == 2 && memcmp(buf, "os", 2) == 0);

    /* The peer's shutdown makes the socket readable (EOF). */
    CHECK(shutdown(peer, SHUT_WR) == 0);
    CHECK(bl_wait_fd(fd, BL_READ, 5) == BL_READ);
    CHECK(bl_recv(c, buf, sizeof buf) == 0);

    /* A full send buffer: not writable until the peer reads. */
    netb_fill(c);
    CHECK_ERR(bl_wait_fd(fd, BL_WRITE, 0.02), ETIMEDOUT);
    netb_drain(peer);
    CHECK(bl_wait_fd(fd, BL_WRITE, 5) == BL_WRITE);
    CHECK(bl_close(c) == 0);
    close(peer);
    return NULL;
}

/* ---- EINVAL ---- */

static void *einval_main(void *arg)
{
    (void)arg;
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    CHECK_ERR(bl_wait_fd(-1, BL_READ, 1), EINVAL);
    CHECK_ERR(bl_wait_fd(p[0], 0, 1), EINVAL);
    CHECK_ERR(bl_wait_fd(p[0], 4, 1), EINVAL);
    CHECK_ERR(bl_wait_fd(p[0], BL_READ | 8, 1), EINVAL);
    CHECK_ERR(bl_wait_fd(p[0], BL_READ, NAN), EINVAL);
    close(p[0]);
    close(p[1]);
    /* A descriptor that is not open: EBADF, whatever the timeout (libev
     * would abort the process in its next poll). */
    CHECK_ERR(bl_wait_fd(p[0], BL_READ, 1), EBADF);
    CHECK_ERR(bl_wait_fd(p[0], BL_READ, -1), EBADF);
    CHECK_ERR(bl_wait_fd(p[0], BL_WRITE, 0), EBADF);
    return NULL;
}

/* ---- EPERM outside green threads ---- */

static int eperm_fd;
static int cb_err = -1;

static void *os_thread_eperm(void *arg)
{
    int *err = arg;
    errno = 0;
    if (bl_wait_fd(eperm_fd, BL_WRITE, 1) == -1)
        *err = errno;
    return NULL;
}

static void *eperm_green(void *arg)
{
    (void)arg;
    /* A scheduler runs in the main OS thread; another OS thread is still
     * outside any green thread. */
    int err = 0;
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, os_thread_eperm, &err) == 0);
    CHECK(pthread_join(tid, NULL) == 0);
    CHECK_EQ_LL(err, EPERM);
    /* Keep the scheduler running until the timer callback has been. */
    while (cb_err == -1)
        CHECK(bl_sleep(0.005) == 0);
    return NULL;
}

static void eperm_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    errno = 0;
    cb_err = bl_wait_fd(eperm_fd, BL_WRITE, 1) == -1 ? errno : 0;
}

static void test_eperm(void)
{
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    eperm_fd = p[1];
    /* No scheduler at all. */
    CHECK_ERR(bl_wait_fd(p[1], BL_WRITE, 1), EPERM);
    CHECK_ERR(bl_wait_fd(p[1], BL_WRITE, 0), EPERM);
    /* A scheduler exists but does not run. */
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK_ERR(bl_wait_fd(p[1], BL_WRITE, -1), EPERM);
    /* It runs, in a libev callback (outside green threads), and in
     * another OS thread. */
    ev_timer tm;
    ev_timer_init(&tm, eperm_cb, 0.01, 0.);
    ev_timer_start(bl_sched_loop(s), &tm);
    CHECK(bl_spawn(s, eperm_green, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK_EQ_LL(cb_err, EPERM);
    bl_sched_free(s);
    /* And after it was freed. */
    CHECK_ERR(bl_wait_fd(p[1], BL_WRITE, 1), EPERM);
    close(p[0]);
    close(p[1]);
}

/* ---- ECANCELED ---- */

struct cw {
    int fd;
    double timeout;
    int entered, err, later_err;
};

static void *cancel_waiter(void *arg)
{
    struct cw *w = arg;
    w->entered = 1;
    errno = 0;
    w->err = bl_wait_fd(w->fd, BL_READ, w->timeout) == -1 ? errno : 0;
    errno = 0;
    w->later_err = bl_wait_fd(w->fd, BL_READ, -1) == -1 ? errno : 0;
    return (void *)w;
}

/* Waits once for BL_READ | BL_WRITE on w->fd. */
static void *cancel_waiter_write(void *arg)
{
    struct cw *w = arg;
    w->entered = 1;
    errno = 0;
    w->err = bl_wait_fd(w->fd, BL_READ | BL_WRITE, w->timeout) == -1 ? errno
                                                                      : 0;
    return NULL;
}

static void *cancel_main(void *arg)
{
    (void)arg;
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);

    /* Blocked without a timeout, and with a long one. */
    static const double timeouts[2] = {-1, 30};
    for (int i = 0; i < 2; i++) {
        struct cw w = {.fd = p[0], .timeout = timeouts[i]};
        bl_thread *t = bl_spawn(NULL, cancel_waiter, &w);
        CHECK(t != NULL);
        CHECK(bl_yield() == 0);
        CHECK(bl_sleep(0.01) == 0);
        CHECK(w.entered && w.err == 0);
        double t0 = core_now();
        CHECK(bl_cancel(t) == 0);
        void *res;
        NETB_JOIN_SOON(t, &res);
        NETB_CHECK_BEFORE(t0, NETB_SLACK, "the cancelled bl_wait_fd");
        CHECK(res == &w);
        CHECK_EQ_LL(w.err, ECANCELED);
        CHECK_EQ_LL(w.later_err, ECANCELED);
    }

    /* Cancelled before it waits. */
    struct cw w = {.fd = p[0], .timeout = -1};
    bl_thread *t = bl_spawn(NULL, cancel_waiter, &w);
    CHECK(t != NULL);
    CHECK(bl_cancel(t) == 0);
    NETB_JOIN_SOON(t, NULL);
    CHECK(w.entered);
    CHECK_EQ_LL(w.err, ECANCELED);
    CHECK_EQ_LL(w.later_err, ECANCELED);

    /* Cancelled, with the answer at hand (timeout 0): on a descriptor that
     * is not ready (the read end of an empty pipe) and on one that is (its
     * write end). A blocking call of a cancelled thread fails even when it
     * would not have to wait. */
    for (int i = 0; i < 2; i++) {
        struct cw h = {.fd = p[i], .timeout = 0};
        bl_thread *th = bl_spawn(NULL, cancel_waiter_write, &h);
        CHECK(th != NULL);
        CHECK(bl_cancel(th) == 0);
        NETB_JOIN_SOON(th, NULL);
        CHECK(h.entered);
        CHECK_EQ_LL(h.err, ECANCELED);
    }

    /* The descriptor's other waiters are not disturbed: one of two
     * waiters is cancelled, the other still sees the data. */
    struct cw a = {.fd = p[0], .timeout = 5};
    struct waiter b = {p[0], BL_READ, 0};
    bl_thread *ta = bl_spawn(NULL, cancel_waiter, &a);
    bl_thread *tb = bl_spawn(NULL, waiter_fn, &b);
    CHECK(ta != NULL && tb != NULL);
    CHECK(bl_yield() == 0);
    CHECK(bl_cancel(ta) == 0);
    NETB_JOIN_SOON(ta, NULL);
    CHECK_EQ_LL(a.err, ECANCELED);
    netb_write_all(p[1], "x", 1);
    CHECK(bl_join(tb, NULL) == 0);
    CHECK_EQ_LL(b.got, BL_READ);
    close(p[0]);
    close(p[1]);
    return NULL;
}

/* ---- short timeouts ---- */

/* A descriptor that is ready is reported as ready whatever the timeout:
 * also one so short that it runs out before the call looks (it returned
 * ETIMEDOUT for 1e-9 every time), or one that ends in the same iteration of
 * the loop as the event arrives (libev runs the timer first). */
static void *short_main(void *arg)
{
    (void)arg;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[1], "x", 1) == 1);
    static const double timeouts[] = {5e-324, 1e-12, 1e-9, 1e-7, 1e-6,
                                      1e-5, 1e-3};
    for (size_t i = 0; i < sizeof timeouts / sizeof *timeouts; i++) {
        int timedout = 0;
        for (int k = 0; k < 50; k++) {
            int r = bl_wait_fd(sv[0], BL_READ | BL_WRITE, timeouts[i]);
            if (r < 0) {
                CHECK_EQ_LL(errno, ETIMEDOUT);
                timedout++;
            } else {
                CHECK_EQ_LL(r, BL_READ | BL_WRITE);
            }
        }
        if (timedout)
            printf("timeout %g: ETIMEDOUT %d of 50 times for a ready fd\n",
                   timeouts[i], timedout);
        CHECK(timedout == 0);
    }
    /* Not ready: a short timeout still times out. */
    char c;
    CHECK(read(sv[0], &c, 1) == 1);
    CHECK(bl_wait_fd(sv[0], BL_READ, 1e-9) == -1 && errno == ETIMEDOUT);
    CHECK(bl_wait_fd(sv[0], BL_READ, 1e-6) == -1 && errno == ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);
    return NULL;
}

int main(void)
{
    int fds0 = netb_begin();
    NETB_RUN(pipe_main, NULL);
    printf("ok: pipes: read and write readiness, EOF, broken pipe; only the "
           "caller waits\n");
    NETB_RUN(socket_main, NULL);
    printf("ok: sockets: both events, several waiters, an OS thread as the "
           "peer\n");
    NETB_RUN(einval_main, NULL);
    printf("ok: EINVAL and EBADF for bad arguments\n");
    NETB_RUN(short_main, NULL);
    printf("ok: a ready descriptor is reported as ready with the shortest "
           "timeouts\n");
    netb_watchdog("test_eperm");
    test_eperm();
    printf("ok: EPERM outside green threads\n");
    NETB_RUN(cancel_main, NULL);
    printf("ok: ECANCELED when cancelled, before or while waiting\n");
    netb_end(fds0);
    return 0;
}
