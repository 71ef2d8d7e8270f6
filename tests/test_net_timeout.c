/* SPDX-License-Identifier: MIT */
/*
 * test_net_timeout.c - every blocking socket call can be bounded in time:
 * bl_conn_set_timeout() on bl_recv, bl_readline, bl_send and bl_sendall (a
 * silent peer, a peer that never reads, a peer that dribbles: the bound is
 * per call, not per wait), bl_listener_set_timeout() on bl_accept,
 * bl_connect_timeout() (a port whose accept queue is full), bl_wait_fd()
 * with a timeout; nothing is lost when a call times out, the deadlines of
 * several threads are independent, and a close that comes after a timeout
 * woke the caller still gives EBADF. Real loopback TCP sockets.
 *
 * Timing: a timeout must never fire early (>= T) and must fire (< T + 2 s,
 * a generous bound that only tells "timed out" from "hung").
 */
#include "netb_util.h"

#include <math.h>
#include <pthread.h>
#include <sys/ioctl.h>

#define T 0.15  /* the timeout used throughout, seconds */

/* ---- helpers ---- */

struct later_write {
    int fd;
    double delay;
    const char *data;
};

/* A green thread that writes data to a plain fd after a delay. */
static void *later_write_fn(void *arg)
{
    struct later_write *w = arg;
    CHECK(bl_sleep(w->delay) == 0);
    netb_write_all(w->fd, w->data, strlen(w->data));
    return NULL;
}

/* bl_recv() on c what another green thread writes to peer `delay` seconds
 * from now. */
static void recv_later(bl_conn *c, int peer, double delay, const char *data)
{
    struct later_write w = {.fd = peer, .delay = delay, .data = data};
    bl_thread *t = bl_spawn(NULL, later_write_fn, &w);
    CHECK(t != NULL);
    char buf[64];
    size_t len = strlen(data);
    CHECK_EQ_LL(bl_recv(c, buf, sizeof buf), len);
    CHECK(memcmp(buf, data, len) == 0);
    CHECK(bl_join(t, NULL) == 0);
}

/* ---- bl_recv and bl_readline on a silent peer ---- */

static void *recv_main(void *arg)
{
    (void)arg;
    char buf[256];
    int peer;
    bl_conn *c = netb_tcp_pair(&peer);

    CHECK_ERR(bl_conn_set_timeout(NULL, 1), EINVAL);
    CHECK_ERR(bl_conn_set_timeout(c, -0.5), EINVAL);
    CHECK_ERR(bl_conn_set_timeout(c, NAN), EINVAL);

    /* No bound yet: data arriving after 1.5 T is still waited for. */
    double t0 = core_now();
    recv_later(c, peer, 1.5 * T, "slow");
    NETB_CHECK_TOOK(t0, 1.5 * T, "unbounded bl_recv");

    CHECK(bl_conn_set_timeout(c, T) == 0);
    t0 = core_now();
    CHECK_ERR(bl_recv(c, buf, sizeof buf), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_recv on a silent peer");

    /* Each call has its own deadline: the next one waits T again. */
    t0 = core_now();
    CHECK_ERR(bl_recv(c, buf, sizeof buf), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "a second bl_recv");

    /* The connection still works: data that arrives well within the
     * timeout is read, and the call ends then, not at the deadline. */
    CHECK(bl_conn_set_timeout(c, 10 * T) == 0);
    t0 = core_now();
    recv_later(c, peer, T / 4, "ping");
    NETB_CHECK_BEFORE(t0, 10 * T, "bl_recv of data sent within the timeout");
    CHECK(bl_conn_set_timeout(c, T) == 0);

    /* readline with half a line buffered: times out, loses nothing. */
    netb_write_all(peer, "abc", 3);
    t0 = core_now();
    CHECK_ERR(bl_readline(c, buf, sizeof buf), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_readline on half a line");
    netb_write_all(peer, "def\n", 4);
    CHECK(bl_readline(c, buf, sizeof buf) == 7);
    CHECK(strcmp(buf, "abcdef\n") == 0);

    /* Removing the bound: 0, and infinity. */
    CHECK(bl_conn_set_timeout(c, 0) == 0);
    t0 = core_now();
    recv_later(c, peer, 1.5 * T, "zero");
    NETB_CHECK_TOOK(t0, 1.5 * T, "bl_recv after set_timeout(0)");
    CHECK(bl_conn_set_timeout(c, INFINITY) == 0);
    t0 = core_now();
    recv_later(c, peer, 1.5 * T, "inf!");
    NETB_CHECK_TOOK(t0, 1.5 * T, "bl_recv after set_timeout(inf)");

    CHECK(bl_close(c) == 0);
    close(peer);
    return NULL;
}

/* ---- bytes that are there are read, however short the bound ---- */

/* Wait until the socket of c has n bytes to read (FIONREAD). */
static void wait_readable(bl_conn *c, int n)
{
    for (int i = 0; i < 5000; i++) {
        int avail = 0;
        CHECK(ioctl(bl_conn_fd(c), FIONREAD, &avail) == 0);
        if (avail >= n)
            return;
        CHECK(bl_sleep(0.001) == 0);
    }
    CORE_FAIL("%d bytes never arrived", n);
}

static void *tiny_bound_main(void *arg)
{
    (void)arg;
    char buf[64];
    int peer;
    bl_conn *c = netb_tcp_pair(&peer);
    /* Both after a read that filled the buffer and after a short one (which
     * makes the next call wait before reading), bytes already in the
     * socket are returned, not ETIMEDOUT. */
    for (int shortread = 0; shortread <= 1; shortread++) {
        CHECK(bl_conn_set_timeout(c, 0) == 0);
        netb_write_all(peer, "abcd", 4);
        wait_readable(c, 4);
        CHECK(bl_recv(c, buf, shortread ? sizeof buf : 4) == 4);
        netb_write_all(peer, "efgh", 4);
        wait_readable(c, 4);
        CHECK(bl_conn_set_timeout(c, 1e-7) == 0);
        ssize_t n = bl_recv(c, buf, sizeof buf);
        if (n != 4)
            CORE_FAIL("bl_recv with 4 bytes waiting (last read %s): %zd (%s)",
                      shortread ? "short" : "full", n,
                      n < 0 ? strerror(errno) : "");
        CHECK(memcmp(buf, "efgh", 4) == 0);
    }
    CHECK_ERR(bl_recv(c, buf, sizeof buf), ETIMEDOUT);   /* none waiting */
    CHECK(bl_close(c) == 0);
    close(peer);
    return NULL;
}

/* ---- the deadline bounds the call, not each wait inside it ---- */

struct dribble {
    int fd;
    int stop;
    int sent;
};

/* One byte every T/8, no newline, until told to stop. */
static void *dribble_fn(void *arg)
{
    struct dribble *d = arg;
    while (!d->stop) {
        netb_write_all(d->fd, "x", 1);
        d->sent++;
        CHECK(bl_sleep(T / 8) == 0);
    }
    return NULL;
}

static void *dribble_main(void *arg)
{
    (void)arg;
    char buf[256];
    int peer;
    bl_conn *c = netb_tcp_pair(&peer);
    CHECK(bl_conn_set_timeout(c, T) == 0);
    struct dribble d = {.fd = peer};
    bl_thread *dt = bl_spawn(NULL, dribble_fn, &d);
    CHECK(dt != NULL);
    /* Bytes keep arriving, never a newline: still ETIMEDOUT after T. */
    double t0 = core_now();
    CHECK_ERR(bl_readline(c, buf, sizeof buf), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_readline on a dribbling peer");
    d.stop = 1;
    CHECK(bl_join(dt, NULL) == 0);
    CHECK(d.sent >= 2);  /* it did receive bytes while waiting */
    /* Every dribbled byte is still there, in order. */
    netb_write_all(peer, "\n", 1);
    ssize_t n = bl_readline(c, buf, sizeof buf);
    CHECK_EQ_LL(n, d.sent + 1);
    for (int i = 0; i < d.sent; i++)
        CHECK(buf[i] == 'x');
    CHECK(buf[d.sent] == '\n');
    CHECK(bl_close(c) == 0);
    close(peer);
    return NULL;
}

/* ---- bl_send and bl_sendall to a peer that does not read ---- */

struct slow_reader {
    int fd;
    size_t got;        /* bytes received before EOF */
    size_t bad_at;     /* first byte not matching the stream, or SIZE_MAX */
    int fast;          /* stop pausing: the test is over (atomic) */
};

/* An OS thread reading 64 KiB every 25 ms (about 2.6 MB/s, in steps big
 * enough for TCP to reopen its window at each) until EOF, checking the
 * bytes. */
static void *slow_reader_fn(void *arg)
{
    struct slow_reader *r = arg;
    static char buf[65536];
    r->bad_at = SIZE_MAX;
    for (;;) {
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t k = netb_pattern_check(7, r->got, buf, (size_t)n);
        if (k < (size_t)n && r->bad_at == SIZE_MAX)
            r->bad_at = r->got + k;
        __atomic_store_n(&r->got, r->got + (size_t)n, __ATOMIC_RELAXED);
        if (!__atomic_load_n(&r->fast, __ATOMIC_RELAXED))
            usleep(25000);
    }
    return NULL;
}

static void *send_main(void *arg)
{
    (void)arg;
    int peer;
    bl_conn *c = netb_tcp_pair(&peer);
    netb_fill(c);
    CHECK(bl_conn_set_timeout(c, T) == 0);
    char small[4096] = {0};
    double t0 = core_now();
    CHECK_ERR(bl_sendall(c, small, sizeof small), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_sendall to a peer that does not read");
    t0 = core_now();
    CHECK_ERR(bl_send(c, small, sizeof small), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_send to a peer that does not read");
    /* Once the peer reads, sending works again. */
    netb_drain(peer);
    CHECK(bl_send(c, "ok", 2) == 2);
    CHECK(bl_close(c) == 0);
    close(peer);

    /* A peer that reads, slowly: bl_sendall progresses but the call as a
     * whole is bounded. The peer gets a clean prefix of the stream. */
    c = netb_tcp_pair(&peer);
    int sm = 4096;
    CHECK(setsockopt(bl_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &sm, sizeof sm) == 0);
    struct slow_reader r = {.fd = peer};
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, slow_reader_fn, &r) == 0);
    /* 3 to 6 s at the reader's pace: a bound per wait (not per call)
     * would let the call run that long and succeed. */
    size_t big = CORE_SLOW ? (8u << 20) : (16u << 20);
    char *p = malloc(big);
    CHECK(p != NULL);
    netb_pattern(7, 0, p, big);
    CHECK(bl_conn_set_timeout(c, T) == 0);
    t0 = core_now();
    CHECK_ERR(bl_sendall(c, p, big), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_sendall to a slow reader");
    size_t got_in_time = __atomic_load_n(&r.got, __ATOMIC_RELAXED);
    __atomic_store_n(&r.fast, 1, __ATOMIC_RELAXED);
    CHECK(bl_close(c) == 0);  /* the reader sees EOF */
    CHECK(pthread_join(tid, NULL) == 0);
    if (r.bad_at != SIZE_MAX)
        CORE_FAIL("the slow reader got a wrong byte at %zu", r.bad_at);
    CHECK(got_in_time > 0 && r.got < big);  /* it did read meanwhile */
    printf("note: the slow reader read %zu bytes during the call, %zu in "
           "all\n", got_in_time, r.got);
    free(p);
    close(peer);
    return NULL;
}

/* ---- bl_accept ---- */

struct later_connect {
    int port;
    double delay;
    bl_conn *c;
};

static void *later_connect_fn(void *arg)
{
    struct later_connect *lc = arg;
    CHECK(bl_sleep(lc->delay) == 0);
    lc->c = bl_connect("127.0.0.1", lc->port);
    CHECK(lc->c != NULL);
    return NULL;
}

/* bl_accept() on l the client that another green thread connects `delay`
 * seconds from now; the two ends are checked and closed. */
static void accept_later(bl_listener *l, double delay)
{
    struct later_connect lc = {.port = bl_listener_port(l), .delay = delay};
    bl_thread *t = bl_spawn(NULL, later_connect_fn, &lc);
    CHECK(t != NULL);
    bl_conn *s = bl_accept(l);
    CHECK(s != NULL);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(bl_sendall(lc.c, "hi", 2) == 0);
    char buf[4];
    CHECK(netb_recv_exact(s, buf, 2) == 0 && memcmp(buf, "hi", 2) == 0);
    CHECK(bl_close(s) == 0 && bl_close(lc.c) == 0);
}

static void *accept_main(void *arg)
{
    (void)arg;
    bl_listener *l = bl_listen("127.0.0.1", 0, 4);
    CHECK(l != NULL);
    CHECK_ERR(bl_listener_set_timeout(NULL, 1), EINVAL);
    CHECK_ERR(bl_listener_set_timeout(l, -1), EINVAL);
    CHECK_ERR(bl_listener_set_timeout(l, NAN), EINVAL);

    CHECK(bl_listener_set_timeout(l, T) == 0);
    double t0 = core_now();
    CHECK_NULL_ERR(bl_accept(l), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_accept without clients");
    t0 = core_now();
    CHECK_NULL_ERR(bl_accept(l), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "a second bl_accept");

    /* A client well within the timeout is accepted when it comes. */
    CHECK(bl_listener_set_timeout(l, 10 * T) == 0);
    t0 = core_now();
    accept_later(l, T / 4);
    NETB_CHECK_BEFORE(t0, 10 * T, "bl_accept of a client within the timeout");

    /* 0 removes the bound. */
    CHECK(bl_listener_set_timeout(l, 0) == 0);
    t0 = core_now();
    accept_later(l, 1.5 * T);
    NETB_CHECK_TOOK(t0, 1.5 * T, "unbounded bl_accept");
    CHECK(bl_listener_close(l) == 0);
    return NULL;
}

/* ---- bl_connect_timeout ---- */

struct canceller {
    bl_thread *target;
    double delay;
};

static void *cancel_later_fn(void *arg)
{
    struct canceller *k = arg;
    CHECK(bl_sleep(k->delay) == 0);
    CHECK(bl_cancel(k->target) == 0);
    return NULL;
}

static int hung_port;

static void *connect_unbounded_fn(void *arg)
{
    (void)arg;
    errno = 0;
    bl_conn *c = bl_connect_timeout("127.0.0.1", hung_port, 0);
    CHECK(c == NULL);
    return (void *)(long)errno;
}

static void *connect_main(void *arg)
{
    (void)arg;
    int fds[10];
    hung_port = netb_hung_port(fds);
    int nfds = netb_count_fds();

    double t0 = core_now();
    CHECK_NULL_ERR(bl_connect_timeout("127.0.0.1", hung_port, T), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_connect_timeout to a full accept queue");
    NETB_CHECK_FDS(nfds);   /* the socket was closed */

    /* A name (resolved on the pool) is bounded the same way, in all (the
     * lookup of "localhost" is instant: test_net_lookup.c has a slow one). */
    t0 = core_now();
    CHECK_NULL_ERR(bl_connect_timeout("localhost", hung_port, T), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_connect_timeout(\"localhost\")");
    NETB_CHECK_FDS(nfds);

    /* timeout 0 is no bound: the call waits until it is cancelled. */
    bl_thread *ct = bl_spawn(NULL, connect_unbounded_fn, NULL);
    CHECK(ct != NULL);
    struct canceller k = {.target = ct, .delay = 1.5 * T};
    bl_thread *kt = bl_spawn(NULL, cancel_later_fn, &k);
    CHECK(kt != NULL);
    t0 = core_now();
    void *res;
    NETB_JOIN_SOON(ct, &res);   /* cancelled after 1.5 T */
    NETB_CHECK_TOOK(t0, 1.5 * T, "bl_connect_timeout(..., 0)");
    CHECK_EQ_LL((long)res, ECANCELED);
    CHECK(bl_join(kt, NULL) == 0);
    NETB_CHECK_FDS(nfds);

    /* A listener that accepts: the bound does not get in the way. */
    netb_check_connect("127.0.0.1", 5 * T);
    netb_check_connect("localhost", 5 * T);
    netb_close_all(fds);
    return NULL;
}

/* ---- bl_connect_unix_timeout ---- */

struct drainer {
    bl_listener *l;
    int n;          /* connections to accept */
    double delay;
};

/* After `delay`, accept (and close) the n connections that fill l's backlog. */
static void *drain_later_fn(void *arg)
{
    struct drainer *d = arg;
    CHECK(bl_sleep(d->delay) == 0);
    for (int i = 0; i < d->n; i++) {
        bl_conn *c = bl_accept(d->l);
        CHECK(c != NULL);
        CHECK(bl_close(c) == 0);
    }
    return NULL;
}

static void *connect_unix_main(void *arg)
{
    (void)arg;
    char path[108];
    netb_unix_path(path, sizeof path, "timeout");
    int ufds[16];
    bl_listener *lu = netb_full_unix_listener(path, ufds);
    int nfill = 0;
    while (ufds[nfill] >= 0)
        nfill++;
    int nfds = netb_count_fds();

    /* The backlog stays full: the call fails at the bound. */
    double t0 = core_now();
    CHECK_NULL_ERR(bl_connect_unix_timeout(path, T), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_connect_unix_timeout to a full backlog");
    NETB_CHECK_FDS(nfds);   /* the socket was closed */
    CHECK_NULL_ERR(bl_connect_unix_timeout(path, NAN), EINVAL);

    /* The backlog drains at 1.5 T: a call bounded by 5 T gets in then (and
     * succeeds, although its retries timed out pauses on the way). */
    struct drainer d = {.l = lu, .n = nfill, .delay = 1.5 * T};
    bl_thread *dt = bl_spawn(NULL, drain_later_fn, &d);
    CHECK(dt != NULL);
    t0 = core_now();
    bl_conn *c = bl_connect_unix_timeout(path, 5 * T);
    CHECK(c != NULL);
    NETB_CHECK_TOOK(t0, 1.5 * T, "bl_connect_unix_timeout until the backlog drained");
    CHECK(bl_join(dt, NULL) == 0);
    CHECK(bl_close(c) == 0);
    netb_full_unix_free(lu, ufds, path);
    return NULL;
}

/* ---- bl_wait_fd ---- */

static void *waitfd_main(void *arg)
{
    (void)arg;
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    double t0 = core_now();
    CHECK_ERR(bl_wait_fd(p[0], BL_READ, T), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_wait_fd(BL_READ) on an empty pipe");
    CHECK_ERR(bl_wait_fd(p[0], BL_READ, 0), ETIMEDOUT);  /* a poll */

    /* A full pipe is not writable. */
    netb_fill_pipe(p[1]);
    t0 = core_now();
    CHECK_ERR(bl_wait_fd(p[1], BL_WRITE, T), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, T, "bl_wait_fd(BL_WRITE) on a full pipe");
    CHECK_ERR(bl_wait_fd(p[1], BL_WRITE, 0), ETIMEDOUT);
    /* Ready before the timeout: the events, at once. */
    t0 = core_now();
    CHECK(bl_wait_fd(p[0], BL_READ, 10 * T) == BL_READ);
    NETB_CHECK_BEFORE(t0, 10 * T, "bl_wait_fd on a readable pipe");
    close(p[0]);
    close(p[1]);
    return NULL;
}

/* ---- several threads, independent deadlines ---- */

struct sleeper {
    bl_conn *c;
    double timeout;
    int order;
    double took;
};

static int finished;

static void *timed_recv_fn(void *arg)
{
    struct sleeper *s = arg;
    char buf[16];
    CHECK(bl_conn_set_timeout(s->c, s->timeout) == 0);
    double t0 = core_now();
    CHECK_ERR(bl_recv(s->c, buf, sizeof buf), ETIMEDOUT);
    s->took = core_now() - t0;
    s->order = finished++;
    return NULL;
}

static void *timed_send_fn(void *arg)
{
    struct sleeper *s = arg;
    static const char junk[4096];
    double t0 = core_now();
    CHECK_ERR(bl_sendall(s->c, junk, sizeof junk), ETIMEDOUT);
    s->took = core_now() - t0;
    return NULL;
}

static void *concurrent_main(void *arg)
{
    (void)arg;
    /* Three connections, timeouts 3T, T, 2T, all started together. */
    static const double mult[3] = {3, 1, 2};
    static const int want_order[3] = {2, 0, 1};
    int peer[3];
    struct sleeper sl[3];
    bl_thread *t[3];
    finished = 0;
    for (int i = 0; i < 3; i++) {
        sl[i] = (struct sleeper){.c = netb_tcp_pair(&peer[i]),
                                 .timeout = mult[i] * T};
        CHECK((t[i] = bl_spawn(NULL, timed_recv_fn, &sl[i])) != NULL);
    }
    /* And a writer on the first connection, blocked at the same time as
     * its reader: the reader's 3T bound is the connection's, so the
     * writer gets it too, counted from its own start. */
    netb_fill(sl[0].c);
    struct sleeper w = {.c = sl[0].c};
    CHECK(bl_yield() == 0);    /* the readers set their timeouts first */
    double t0 = core_now();
    bl_thread *wt = bl_spawn(NULL, timed_send_fn, &w);
    CHECK(wt != NULL);
    for (int i = 0; i < 3; i++) {
        CHECK(bl_join(t[i], NULL) == 0);
        if (sl[i].took < sl[i].timeout - NETB_EPS ||
            sl[i].took >= sl[i].timeout + NETB_SLACK)
            CORE_FAIL("thread %d: timed out after %.3f s, set to %.3f s", i,
                      sl[i].took, sl[i].timeout);
        CHECK_EQ_LL(sl[i].order, want_order[i]);
    }
    CHECK(bl_join(wt, NULL) == 0);
    CHECK(w.took >= 3 * T - NETB_EPS && w.took < 3 * T + NETB_SLACK);
    NETB_CHECK_TOOK(t0, 3 * T, "the writer");
    for (int i = 0; i < 3; i++) {
        CHECK(bl_close(sl[i].c) == 0);
        close(peer[i]);
    }
    return NULL;
}

/* ---- a close that comes after the timeout woke the caller ---- */

/* A thread's timeout fires in the same poll as the earlier deadline of a
 * thread that closes the connection (or listener): the closer runs first,
 * while the timed-out caller is ready but has not run. The call must still
 * fail with EBADF, not ETIMEDOUT: a caller that retries after a timeout
 * would otherwise use the object, which is freed as the call returns. */
static bl_conn *race_conn;
static bl_listener *race_listener;

static void *race_reader(void *arg)
{
    (void)arg;
    char buf[16];
    CHECK_ERR(bl_recv(race_conn, buf, sizeof buf), EBADF);
    return NULL;
}

static void *race_acceptor(void *arg)
{
    (void)arg;
    CHECK_NULL_ERR(bl_accept(race_listener), EBADF);
    return NULL;
}

static void *race_closer(void *arg)
{
    (void)arg;
    CHECK(bl_sleep(T / 2) == 0);      /* a deadline before the caller's */
    if (race_listener != NULL)
        CHECK(bl_listener_close(race_listener) == 0);
    else
        CHECK(bl_close(race_conn) == 0);
    return NULL;
}

/* Keeps the scheduler from polling until both deadlines have passed, so
 * that one poll runs both timers, in deadline order. */
static void *race_hog(void *arg)
{
    (void)arg;
    double t0 = core_now();
    while (core_now() - t0 < 2 * T)
        ;
    return NULL;
}

static void race(bl_func caller)
{
    bl_thread *c = bl_spawn(NULL, caller, NULL);
    CHECK(c != NULL && bl_yield() == 0);        /* it blocks */
    bl_thread *d = bl_spawn(NULL, race_closer, NULL);
    bl_thread *h = bl_spawn(NULL, race_hog, NULL);
    CHECK(d != NULL && h != NULL);
    CHECK(bl_join(c, NULL) == 0 && bl_join(d, NULL) == 0 &&
          bl_join(h, NULL) == 0);
}

static void *close_after_timeout_main(void *arg)
{
    (void)arg;
    int peer;
    race_conn = netb_tcp_pair(&peer);
    CHECK(bl_conn_set_timeout(race_conn, T) == 0);
    race(race_reader);
    CHECK(close(peer) == 0);
    race_listener = bl_listen("127.0.0.1", 0, 4);
    CHECK(race_listener != NULL);
    CHECK(bl_listener_set_timeout(race_listener, T) == 0);
    race(race_acceptor);
    return NULL;
}

int main(void)
{
    int fds0 = netb_begin();
    NETB_RUN(recv_main, NULL);
    printf("ok: bl_recv/bl_readline time out after the bound, each call anew, "
           "nothing lost; 0 and inf remove it\n");
    NETB_RUN(tiny_bound_main, NULL);
    printf("ok: bytes already there are read however short the bound\n");
    NETB_RUN(dribble_main, NULL);
    printf("ok: the bound is per call: a dribbling peer does not extend it\n");
    NETB_RUN(send_main, NULL);
    printf("ok: bl_send/bl_sendall time out on a peer that does not read or "
           "reads slowly\n");
    NETB_RUN(accept_main, NULL);
    printf("ok: bl_listener_set_timeout bounds bl_accept\n");
    NETB_RUN(connect_main, NULL);
    printf("ok: bl_connect_timeout bounds connect (address and name); 0 is "
           "unbounded\n");
    NETB_RUN(connect_unix_main, NULL);
    printf("ok: bl_connect_unix_timeout bounds the wait for a full backlog, "
           "and gets in when it drains\n");
    NETB_RUN(waitfd_main, NULL);
    printf("ok: bl_wait_fd times out for reading and writing\n");
    NETB_RUN(concurrent_main, NULL);
    printf("ok: deadlines of concurrent threads are independent\n");
    NETB_RUN(close_after_timeout_main, NULL);
    printf("ok: a close after the timeout woke the caller, before it ran, "
           "gives EBADF\n");
    netb_end(fds0);
    return 0;
}
