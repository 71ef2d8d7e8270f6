/* SPDX-License-Identifier: MIT */
/*
 * test_net_cancel.c - bl_cancel() of green threads blocked in socket calls:
 * bl_recv, bl_readline (half a line buffered), bl_send, bl_sendall (a peer
 * that does not read), bl_accept, bl_connect (TCP to a port whose accept
 * queue is full, a name resolved on the pool, a Unix socket whose backlog is
 * full), bl_wait_fd; one at a time and several in one turn. Each blocked
 * call fails with ECANCELED promptly (also when a timeout is set), its later
 * blocking calls fail with ECANCELED, joining it yields its result, no
 * descriptor leaks, and the connection or listener stays usable by other
 * threads with nothing lost. Also: a thread cancelled before it runs fails
 * even calls that could complete at once (data waiting, a client queued)
 * and consumes nothing; cancelling from outside green threads (a libev
 * timer callback on the scheduler's loop). Real loopback sockets.
 */
#include "netb_util.h"

#include <ev.h>

/* A worker to cancel: the blocking call it makes, and what it saw. */
struct victim {
    const char *what;
    int (*op)(struct victim *v);   /* the call: 0, or -1 with errno */
    bl_conn *c;
    bl_listener *l;
    int fd;
    int port;
    const char *host;
    const char *path;
    int entered;       /* about to make the blocking call */
    int done;          /* the call returned */
    int err;           /* its errno (0: it succeeded) */
    int later_err;     /* errno of the same call made again */
    double took;       /* how long the blocked call lasted */
    double ended;      /* when it returned (core_now()) */
};

#define RESULT ((void *)0x5eed)

/* ---- the calls ---- */

enum { BIG = 1 << 20 };
static char *big;      /* BIG bytes of stream 3 */

static int op_recv(struct victim *v)
{
    char buf[64];
    return bl_recv(v->c, buf, sizeof buf) < 0 ? -1 : 0;
}

static int op_readline(struct victim *v)
{
    char buf[64];
    return bl_readline(v->c, buf, sizeof buf) < 0 ? -1 : 0;
}

static int op_send(struct victim *v)
{
    return bl_send(v->c, big, BIG) < 0 ? -1 : 0;
}

static int op_sendall(struct victim *v)
{
    return bl_sendall(v->c, big, BIG);
}

static int op_wait_fd(struct victim *v)
{
    return bl_wait_fd(v->fd, BL_READ, -1) < 0 ? -1 : 0;
}

/* A connection that was made after all is closed again. */
static int close_new(bl_conn *c)
{
    if (c == NULL)
        return -1;
    CHECK(bl_close(c) == 0);
    return 0;
}

static int op_accept(struct victim *v)
{
    return close_new(bl_accept(v->l));
}

static int op_connect(struct victim *v)
{
    return close_new(v->path ? bl_connect_unix(v->path)
                             : bl_connect(v->host, v->port));
}

/* The victim's body: the call, then the same call again and other
 * blocking calls, all of which must fail at once now. */
static void *victim_body(void *arg)
{
    struct victim *v = arg;
    v->entered = 1;
    double t0 = core_now();
    errno = 0;
    int failed = v->op(v) < 0;
    v->err = failed ? errno : 0;
    v->ended = core_now();
    v->took = v->ended - t0;
    v->done = 1;
    CHECK(bl_cancelled());
    errno = 0;
    if (v->op(v) < 0)
        v->later_err = errno;
    CHECK_ERR(bl_sleep(0.001), ECANCELED);
    CHECK_ERR(bl_yield(), ECANCELED);
    return RESULT;
}

/* Run the n victims in new green threads, wait until all are blocked,
 * cancel them all in one turn (each twice: harmless), join them and check
 * what they saw. */
static void cancel_all(struct victim *v, int n)
{
    bl_thread *t[8];
    CHECK(n <= 8);
    for (int i = 0; i < n; i++)
        CHECK((t[i] = bl_spawn(NULL, victim_body, &v[i])) != NULL);
    /* The new threads run until they park; a short sleep lets I/O that
     * might complete their calls be seen first. */
    CHECK(bl_yield() == 0);
    CHECK(bl_sleep(0.02) == 0);
    for (int i = 0; i < n; i++)
        if (!v[i].entered || v[i].done)
            CORE_FAIL("%s: not blocked (entered %d, done %d, errno %d)",
                      v[i].what, v[i].entered, v[i].done, v[i].err);
    double t0 = core_now();
    for (int i = 0; i < n; i++) {
        CHECK(bl_cancel(t[i]) == 0);
        CHECK(bl_cancel(t[i]) == 0);
    }
    for (int i = 0; i < n; i++) {
        void *res = NULL;
        NETB_JOIN_SOON(t[i], &res);
        CHECK(res == RESULT);
        if (v[i].err != ECANCELED)
            CORE_FAIL("%s: woke with errno %d (%s), expected ECANCELED",
                      v[i].what, v[i].err, strerror(v[i].err));
        if (v[i].later_err != ECANCELED)
            CORE_FAIL("%s: the call made again failed with errno %d (%s), "
                      "expected ECANCELED", v[i].what, v[i].later_err,
                      strerror(v[i].later_err));
    }
    NETB_CHECK_BEFORE(t0, NETB_SLACK, "the cancelled calls");
}

static void cancel_blocked(struct victim *v)
{
    cancel_all(v, 1);
}

/* ---- bl_recv ---- */

static void *reader_after(void *arg)
{
    bl_conn *c = arg;
    char buf[64];
    ssize_t n = bl_recv(c, buf, sizeof buf);
    CHECK(n == 5 && memcmp(buf, "after", 5) == 0);
    return NULL;
}

static void *recv_main(void *arg)
{
    (void)arg;
    int peer;
    struct victim v = {.what = "bl_recv", .op = op_recv};
    v.c = netb_tcp_pair(&peer);
    cancel_blocked(&v);
    /* The connection is still fine for another thread: not EBUSY, and
     * data sent now reaches it. */
    bl_thread *t = bl_spawn(NULL, reader_after, v.c);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);
    netb_write_all(peer, "after", 5);
    CHECK(bl_join(t, NULL) == 0);

    /* With a timeout set, cancellation still wins, long before it. */
    CHECK(bl_conn_set_timeout(v.c, 30) == 0);
    v = (struct victim){.what = "bl_recv with a timeout", .op = op_recv,
                        .c = v.c};
    cancel_blocked(&v);
    CHECK(v.took < 30);
    CHECK(bl_close(v.c) == 0);
    close(peer);
    return NULL;
}

/* ---- bl_readline with half a line buffered ---- */

static void *readline_after(void *arg)
{
    bl_conn *c = arg;
    char buf[64];
    CHECK(bl_readline(c, buf, sizeof buf) == 12);
    CHECK(strcmp(buf, "half, whole\n") == 0);
    return NULL;
}

static void *readline_main(void *arg)
{
    (void)arg;
    int peer;
    struct victim v = {.what = "bl_readline", .op = op_readline};
    v.c = netb_tcp_pair(&peer);
    netb_write_all(peer, "half, ", 6);
    cancel_blocked(&v);
    /* The half line read before the cancel is not lost. */
    netb_write_all(peer, "whole\n", 6);
    bl_thread *t = bl_spawn(NULL, readline_after, v.c);
    CHECK(t != NULL);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(bl_close(v.c) == 0);
    close(peer);
    return NULL;
}

/* ---- bl_send / bl_sendall to a peer that does not read ---- */

static void *send_tail(void *arg)
{
    CHECK(bl_sendall(arg, "TAIL", 4) == 0);
    CHECK(bl_shutdown(arg, SHUT_WR) == 0);
    return NULL;
}

static void *sendall_main(void *arg)
{
    (void)arg;
    int peer;
    struct victim v = {.what = "bl_sendall", .op = op_sendall};
    v.c = netb_tcp_pair(&peer);
    /* A small send buffer: 1 MiB cannot be queued while the peer does
     * not read. */
    int sm = 4096;
    CHECK(setsockopt(bl_conn_fd(v.c), SOL_SOCKET, SO_SNDBUF, &sm, sizeof sm) == 0);
    cancel_blocked(&v);
    /* Another thread finishes the stream: the peer gets a clean prefix of
     * the big buffer, then the tail (bl_sendall left the writer free). */
    bl_thread *t = bl_spawn(NULL, send_tail, v.c);
    CHECK(t != NULL);
    size_t cap = BIG + 4, got = 0;
    char *in = malloc(cap);
    CHECK(in != NULL);
    /* Read it all here, waiting with bl_wait_fd so that the scheduler
     * (and the tail's sender) keeps running. */
    for (;;) {
        CHECK(bl_wait_fd(peer, BL_READ, -1) == BL_READ);
        ssize_t n = read(peer, in + got, cap - got);
        CHECK(n >= 0);
        if (n == 0)
            break;
        got += (size_t)n;
        CHECK(got < cap);
    }
    CHECK(bl_join(t, NULL) == 0);
    CHECK(got >= 4 && got < cap);
    CHECK(memcmp(in + got - 4, "TAIL", 4) == 0);
    size_t k = netb_pattern_check(3, 0, in, got - 4);
    if (k != got - 4)
        CORE_FAIL("the peer got a wrong byte at %zu of %zu", k, got - 4);
    printf("note: %zu bytes of the cancelled bl_sendall were sent\n", got - 4);
    free(in);
    CHECK(bl_close(v.c) == 0);
    close(peer);

    /* bl_send, likewise. */
    v = (struct victim){.what = "bl_send", .op = op_send};
    v.c = netb_tcp_pair(&peer);
    netb_fill(v.c);
    cancel_blocked(&v);
    CHECK(bl_close(v.c) == 0);
    close(peer);
    return NULL;
}

/* ---- bl_accept ---- */

static void *accept_after(void *arg)
{
    bl_conn *c = bl_accept(arg);
    CHECK(c != NULL);
    CHECK(bl_sendall(c, "hello", 5) == 0);
    CHECK(bl_close(c) == 0);
    return NULL;
}

static void *accept_main(void *arg)
{
    (void)arg;
    struct victim v = {.what = "bl_accept", .op = op_accept};
    v.l = bl_listen("127.0.0.1", 0, 4);
    CHECK(v.l != NULL);
    cancel_blocked(&v);
    /* The listener is free for another acceptor (not EBUSY). */
    bl_thread *t = bl_spawn(NULL, accept_after, v.l);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);
    bl_conn *c = bl_connect("127.0.0.1", bl_listener_port(v.l));
    CHECK(c != NULL);
    char buf[8];
    CHECK(netb_recv_exact(c, buf, 5) == 0 && memcmp(buf, "hello", 5) == 0);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(bl_close(c) == 0);
    CHECK(bl_listener_close(v.l) == 0);
    return NULL;
}

/* ---- bl_connect ---- */

static void *connect_main(void *arg)
{
    (void)arg;
    int fds[10];
    int port = netb_hung_port(fds);
    int nfds = netb_count_fds();
    struct victim v = {.what = "bl_connect (TCP, full accept queue)",
                       .op = op_connect, .host = "127.0.0.1", .port = port};
    cancel_blocked(&v);
    NETB_CHECK_FDS(nfds);   /* its socket was closed */

    /* A name: resolved on the pool, then connected; cancelled while in
     * either step, the call fails with ECANCELED. */
    v = (struct victim){.what = "bl_connect (\"localhost\")",
                        .op = op_connect, .host = "localhost", .port = port};
    cancel_blocked(&v);
    NETB_CHECK_FDS(nfds);
    /* The pool is fine afterwards: a name resolves and connects. */
    netb_check_connect("localhost", 0);
    netb_close_all(fds);

    /* A Unix socket whose backlog is full: cancel bl_connect_unix while
     * it waits to retry. */
    char path[64];
    netb_unix_path(path, sizeof path, "cancel");
    int ufds[16];
    bl_listener *lu = netb_full_unix_listener(path, ufds);
    nfds = netb_count_fds();
    v = (struct victim){.what = "bl_connect_unix (full backlog)",
                        .op = op_connect, .path = path};
    cancel_blocked(&v);
    NETB_CHECK_FDS(nfds);
    netb_full_unix_free(lu, ufds, path);
    return NULL;
}

/* ---- several blocked threads, cancelled in one turn ---- */

static void *together_main(void *arg)
{
    (void)arg;
    int peer_r, peer_w, hung[10], p[2];
    struct victim v[5] = {
        {.what = "bl_recv (together)", .op = op_recv},
        {.what = "bl_sendall (together)", .op = op_sendall},
        {.what = "bl_accept (together)", .op = op_accept},
        {.what = "bl_connect (together)", .op = op_connect,
         .host = "127.0.0.1"},
        {.what = "bl_wait_fd (together)", .op = op_wait_fd},
    };
    v[0].c = netb_tcp_pair(&peer_r);
    v[1].c = netb_tcp_pair(&peer_w);
    netb_fill(v[1].c);
    v[2].l = bl_listen("127.0.0.1", 0, 1);
    CHECK(v[2].l != NULL);
    v[3].port = netb_hung_port(hung);
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    v[4].fd = p[0];
    int nfds = netb_count_fds();
    cancel_all(v, 5);
    NETB_CHECK_FDS(nfds);
    CHECK(bl_close(v[0].c) == 0 && bl_close(v[1].c) == 0);
    CHECK(bl_listener_close(v[2].l) == 0);
    netb_close_all(hung);
    close(peer_r);
    close(peer_w);
    close(p[0]);
    close(p[1]);
    return NULL;
}

/* ---- cancelled before the first call ---- */

struct early {
    bl_conn *c;
    bl_conn *own;      /* the victim closes it */
    bl_listener *l, *lu;
    const char *path;
    int rfd;
    int close_rc;
    int ran;
};

static void *early_body(void *arg)
{
    struct early *e = arg;
    char buf[16];
    CHECK(bl_cancelled());
    /* Every call here could complete at once: a line is waiting, the
     * socket is writable, a client is queued, the listeners listen, the
     * pipe is readable. Cancelled, each fails with ECANCELED. */
    CHECK_ERR(bl_recv(e->c, buf, sizeof buf), ECANCELED);
    CHECK_ERR(bl_readline(e->c, buf, sizeof buf), ECANCELED);
    CHECK_ERR(bl_send(e->c, "x", 1), ECANCELED);
    CHECK_ERR(bl_sendall(e->c, "x", 1), ECANCELED);
    CHECK_NULL_ERR(bl_accept(e->l), ECANCELED);
    CHECK_NULL_ERR(bl_connect("127.0.0.1", bl_listener_port(e->l)), ECANCELED);
    CHECK_NULL_ERR(bl_connect("localhost", bl_listener_port(e->l)), ECANCELED);
    CHECK_NULL_ERR(bl_connect_unix(e->path), ECANCELED);
    CHECK_ERR(bl_wait_fd(e->rfd, BL_READ, -1), ECANCELED);
    CHECK_ERR(bl_sleep(0), ECANCELED);
    CHECK_ERR(bl_yield(), ECANCELED);
    /* Clean-up still works. */
    e->close_rc = bl_close(e->own);
    e->ran = 1;
    return RESULT;
}

static void *early_main(void *arg)
{
    (void)arg;
    int peer, peer2, p[2];
    struct early e = {0};
    e.c = netb_tcp_pair(&peer);
    netb_write_all(peer, "line\n", 5);
    e.own = netb_tcp_pair(&peer2);
    e.l = bl_listen("127.0.0.1", 0, 4);
    CHECK(e.l != NULL);
    int client = netb_raw_connect(bl_listener_port(e.l));
    char path[64];
    netb_unix_path(path, sizeof path, "early");
    unlink(path);
    e.path = path;
    e.lu = bl_listen_unix(path, 4);
    CHECK(e.lu != NULL);
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    CHECK(write(p[1], "x", 1) == 1);
    e.rfd = p[0];
    /* No client is queued at the Unix listener yet. */
    struct pollfd pu = {.fd = bl_listener_fd(e.lu), .events = POLLIN};
    CHECK(poll(&pu, 1, 0) == 0);

    bl_thread *t = bl_spawn(NULL, early_body, &e);
    CHECK(t != NULL);
    CHECK(bl_cancel(t) == 0);
    double t0 = core_now();
    void *res;
    NETB_JOIN_SOON(t, &res);
    NETB_CHECK_BEFORE(t0, NETB_SLACK, "the cancelled thread");
    CHECK(res == RESULT && e.ran);
    CHECK_EQ_LL(e.close_rc, 0);

    /* Nothing was consumed or made: the line is still there, the client
     * still queued, the pipe still holds its byte, the Unix listener got
     * no client. */
    char line[16];
    CHECK(bl_readline(e.c, line, sizeof line) == 5);
    CHECK(strcmp(line, "line\n") == 0);
    CHECK(bl_close(e.c) == 0);
    bl_conn *s = bl_accept(e.l);
    CHECK(s != NULL);
    CHECK(bl_close(s) == 0);
    char c;
    CHECK(read(p[0], &c, 1) == 1 && c == 'x');
    CHECK(poll(&pu, 1, 0) == 0);
    CHECK(bl_listener_close(e.l) == 0);
    CHECK(bl_listener_close(e.lu) == 0);
    unlink(path);
    close(client);
    close(peer);
    close(peer2);
    close(p[0]);
    close(p[1]);
    return NULL;
}

/* ---- from outside green threads: a libev timer callback ---- */

static bl_thread *timer_target;
static int timer_fired;

static void cancel_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    CHECK(bl_self() == NULL);  /* not inside a green thread */
    CHECK(bl_cancel(timer_target) == 0);
    timer_fired = 1;
}

static void test_cancel_from_callback(void)
{
    netb_watchdog("test_cancel_from_callback");
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    int peer;
    struct victim v = {.what = "bl_recv, cancelled by a libev callback",
                       .op = op_recv};
    v.c = netb_tcp_pair(&peer);
    timer_target = bl_spawn(s, victim_body, &v);
    CHECK(timer_target != NULL);
    CHECK(bl_detach(timer_target) == 0);
    ev_timer tm;
    ev_timer_init(&tm, cancel_cb, 0.05, 0.);
    /* libev counts the delay from its cached time, that of the loop's last
     * poll: refresh it, so that the timer is due 0.05 s after t0. */
    double t0 = core_now();
    ev_now_update(bl_sched_loop(s));
    ev_timer_start(bl_sched_loop(s), &tm);
    CHECK(bl_sched_run(s) == 0);
    NETB_CHECK_BEFORE(t0, NETB_SLACK, "the run");
    CHECK(timer_fired && v.done);
    CHECK_EQ_LL(v.err, ECANCELED);
    CHECK_EQ_LL(v.later_err, ECANCELED);
    /* Woken by the timer, not before it was due. */
    if (v.ended - t0 < 0.05 - NETB_EPS)
        CORE_FAIL("the call ended %.3f s after the timer started, before it "
                  "was due (0.05 s)", v.ended - t0);
    CHECK(bl_close(v.c) == 0);
    close(peer);
    bl_sched_free(s);
}

int main(void)
{
    int fds0 = netb_begin();
    big = malloc(BIG);
    CHECK(big != NULL);
    netb_pattern(3, 0, big, BIG);
    NETB_RUN(recv_main, NULL);
    printf("ok: cancel wakes bl_recv (also with a timeout set); the "
           "connection stays usable\n");
    NETB_RUN(readline_main, NULL);
    printf("ok: cancel wakes bl_readline; the buffered half line is kept\n");
    NETB_RUN(sendall_main, NULL);
    printf("ok: cancel wakes bl_sendall and bl_send; the peer gets a clean "
           "prefix\n");
    NETB_RUN(accept_main, NULL);
    printf("ok: cancel wakes bl_accept; the listener stays usable\n");
    NETB_RUN(connect_main, NULL);
    printf("ok: cancel wakes bl_connect (TCP, name, Unix) without leaking "
           "its socket\n");
    NETB_RUN(together_main, NULL);
    printf("ok: threads blocked in recv, sendall, accept, connect, wait_fd "
           "cancelled in one turn\n");
    NETB_RUN(early_main, NULL);
    printf("ok: a thread cancelled before it runs fails its calls at once, "
           "even those that could complete, and takes nothing\n");
    test_cancel_from_callback();
    printf("ok: bl_cancel from a libev callback\n");
    free(big);
    netb_end(fds0);
    return 0;
}
