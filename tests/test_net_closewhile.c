/* SPDX-License-Identifier: MIT */
/*
 * test_net_closewhile.c - bl_close() of a connection while other green
 * threads are blocked on it: a reader in bl_recv, a reader in bl_readline
 * with half a line buffered, a writer in bl_sendall, a reader and a writer
 * at once; bl_listener_close() under a blocked bl_accept. The blocked threads
 * wake with EBADF (bluelet.h: "Green threads blocked on c wake with EBADF;
 * the memory is released once they have left"); calls made on the closed
 * connection before they have left fail with EBADF; a new connection that
 * reuses the descriptor number is not confused with the old one; close
 * racing with data that has already woken the reader, and close racing with
 * cancellation; bl_shutdown(SHUT_WR) under a writer blocked on a full Unix
 * socket. Meant to run under ASan: any use after free fails it.
 */
#include "netb_util.h"

enum { RECV, READLINE, SENDALL };

struct blocked {
    bl_conn *c;
    int kind;          /* RECV, READLINE or SENDALL */
    int entered, done;
    ssize_t rc;
    int err;
    char buf[64];
};

static char big[1 << 20];

static void *blocked_fn(void *arg)
{
    struct blocked *b = arg;
    b->entered = 1;
    errno = 0;
    switch (b->kind) {
    case RECV:
        b->rc = bl_recv(b->c, b->buf, sizeof b->buf);
        break;
    case READLINE:
        b->rc = bl_readline(b->c, b->buf, sizeof b->buf);
        break;
    default:
        b->rc = bl_sendall(b->c, big, sizeof big);
        break;
    }
    b->err = b->rc < 0 ? errno : 0;
    b->done = 1;
    /* b->c is gone now (freed as this thread left): do not touch it. */
    return NULL;
}

static bl_thread *start_blocked(struct blocked *b, bl_conn *c, int kind)
{
    *b = (struct blocked){.c = c, .kind = kind};
    bl_thread *t = bl_spawn(NULL, blocked_fn, b);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);    /* it runs until it parks */
    CHECK(b->entered && !b->done);
    return t;
}

static void expect_ebadf(const struct blocked *b, const char *what)
{
    if (!b->done || b->rc != -1 || b->err != EBADF)
        CORE_FAIL("%s: done %d, returned %zd, errno %d (%s); expected -1 "
                  "with EBADF", what, b->done, b->rc, b->err,
                  strerror(b->err));
}

/* ---- a blocked reader; the closer first sends a last message ---- */

struct newconn {
    bl_conn *c;
    char buf[16];
    ssize_t n;
};

static void *new_reader(void *arg)
{
    struct newconn *nc = arg;
    nc->n = bl_recv(nc->c, nc->buf, sizeof nc->buf);
    return NULL;
}

static void *reader_main(void *arg)
{
    (void)arg;
    int peer;
    bl_conn *c = netb_tcp_pair(&peer);
    int oldfd = bl_conn_fd(c);
    struct blocked r;
    bl_thread *t = start_blocked(&r, c, RECV);

    /* MPD style: the idle reader waits while this thread writes, then
     * closes the connection under it. */
    CHECK(bl_sendall(c, "bye\n", 4) == 0);
    CHECK(bl_close(c) == 0);
    CHECK(!r.done);            /* woken, but it has not run yet */
    /* c is still allocated until the reader leaves: every call on it now
     * fails with EBADF instead of touching the closed descriptor. */
    char buf[8];
    CHECK_ERR(bl_recv(c, buf, sizeof buf), EBADF);
    CHECK_ERR(bl_send(c, "x", 1), EBADF);
    CHECK_ERR(bl_sendall(c, "x", 1), EBADF);
    CHECK_ERR(bl_readline(c, buf, sizeof buf), EBADF);
    CHECK_ERR(bl_shutdown(c, SHUT_RDWR), EBADF);
    CHECK(bl_close(c) == -1);  /* not twice */

    /* A new connection on the same descriptor number (dup2 makes sure):
     * data on it must reach its own reader, not the old one. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    int peer2;
    if (sv[1] == oldfd) {
        peer2 = sv[0];
    } else {
        peer2 = sv[1];
        if (sv[0] != oldfd) {
            CHECK(dup2(sv[0], oldfd) == oldfd);
            close(sv[0]);
        }
    }
    bl_conn *c2 = bl_conn_new(oldfd);
    CHECK(c2 != NULL);
    struct newconn nc = {.c = c2};
    bl_thread *t2 = bl_spawn(NULL, new_reader, &nc);
    CHECK(t2 != NULL);
    CHECK(bl_yield() == 0);   /* it waits on the reused number */
    netb_write_all(peer2, "new", 3);

    NETB_JOIN_SOON(t, NULL);
    expect_ebadf(&r, "bl_recv under bl_close");
    CHECK(bl_join(t2, NULL) == 0);
    CHECK(nc.n == 3 && memcmp(nc.buf, "new", 3) == 0);

    /* The peer got the last message, then end of stream. */
    char in[8];
    size_t got = 0;
    ssize_t n;
    while ((n = read(peer, in + got, sizeof in - got)) > 0)
        got += (size_t)n;
    CHECK(n == 0 && got == 4 && memcmp(in, "bye\n", 4) == 0);
    CHECK(bl_close(c2) == 0);
    close(peer);
    close(peer2);
    return NULL;
}

/* ---- readline with buffered bytes; sendall; both at once ---- */

/* A thread blocked in `kind` on a new connection, closed under it. */
static void close_under(int kind, const char *what)
{
    int peer;
    bl_conn *c = netb_tcp_pair(&peer);
    if (kind == READLINE)
        netb_write_all(peer, "half a li", 9);  /* held in its buffer */
    else
        netb_fill(c);                         /* a peer that does not read */
    struct blocked b;
    bl_thread *t = start_blocked(&b, c, kind);
    CHECK(bl_sleep(0.01) == 0);
    CHECK(!b.done);
    CHECK(bl_close(c) == 0);
    NETB_JOIN_SOON(t, NULL);
    expect_ebadf(&b, what);
    close(peer);
}

static void *others_main(void *arg)
{
    (void)arg;
    close_under(READLINE, "bl_readline holding half a line under bl_close");
    close_under(SENDALL, "bl_sendall under bl_close");

    /* A reader and a writer on one connection, closed by a third thread:
     * both wake; the memory goes when the second has left. */
    int peer;
    struct blocked r, w;
    bl_conn *c = netb_tcp_pair(&peer);
    netb_fill(c);
    bl_thread *tr = start_blocked(&r, c, RECV);
    bl_thread *tw = start_blocked(&w, c, SENDALL);
    CHECK(bl_sleep(0.01) == 0);
    CHECK(!r.done && !w.done);
    CHECK(bl_close(c) == 0);
    NETB_JOIN_SOON(tw, NULL);   /* the writer leaves first */
    NETB_JOIN_SOON(tr, NULL);
    expect_ebadf(&r, "bl_recv beside a writer under bl_close");
    expect_ebadf(&w, "bl_sendall beside a reader under bl_close");
    close(peer);
    return NULL;
}

/* ---- a listener closed under bl_accept ---- */

struct acc {
    bl_listener *l;
    int done, err;
    bl_conn *c;
};

static void *acceptor(void *arg)
{
    struct acc *a = arg;
    errno = 0;
    a->c = bl_accept(a->l);
    a->err = errno;
    a->done = 1;
    return NULL;
}

static void *listener_main(void *arg)
{
    (void)arg;
    struct acc a = {.l = bl_listen("127.0.0.1", 0, 4)};
    CHECK(a.l != NULL);
    int port = bl_listener_port(a.l);
    bl_thread *t = bl_spawn(NULL, acceptor, &a);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);
    CHECK(!a.done);
    CHECK(bl_listener_close(a.l) == 0);
    NETB_JOIN_SOON(t, NULL);
    CHECK(a.done && a.c == NULL);
    CHECK_EQ_LL(a.err, EBADF);
    /* The port is closed now. */
    CHECK_NULL_ERR(bl_connect("127.0.0.1", port), ECONNREFUSED);
    return NULL;
}

/* ---- races: close after data woke the reader; close and cancel ---- */

static int race_data, race_badf;

struct closer {
    bl_conn *c;
};

/* Waits for the connection to become readable, like the reader, then
 * closes it: the reader was woken by the same event and may or may not
 * have run yet. */
static void *closer_fn(void *arg)
{
    struct closer *k = arg;
    CHECK(bl_wait_fd(bl_conn_fd(k->c), BL_READ, -1) == BL_READ);
    CHECK(bl_close(k->c) == 0);
    return NULL;
}

static void *race_main(void *arg)
{
    (void)arg;
    int rounds = CORE_SLOW ? 100 : 400;
    for (int i = 0; i < rounds; i++) {
        int peer;
        bl_conn *c = netb_tcp_pair(&peer);
        struct closer k = {.c = c};
        struct blocked r;
        bl_thread *tk = NULL, *tr;
        /* Alternate who starts waiting first. */
        if (i % 2 == 0) {
            tk = bl_spawn(NULL, closer_fn, &k);
            CHECK(tk != NULL);
        }
        tr = start_blocked(&r, c, RECV);
        if (i % 2 == 1) {
            tk = bl_spawn(NULL, closer_fn, &k);
            CHECK(tk != NULL);
            CHECK(bl_yield() == 0);
        }
        netb_write_all(peer, "data", 4);
        CHECK(bl_join(tk, NULL) == 0);
        NETB_JOIN_SOON(tr, NULL);
        if (r.rc == 4 && memcmp(r.buf, "data", 4) == 0)
            race_data++;
        else if (r.rc == -1 && r.err == EBADF)
            race_badf++;
        else
            CORE_FAIL("round %d: the reader got %zd, errno %d", i, r.rc,
                      r.err);
        close(peer);
    }
    printf("note: close after wake-up: reader got the data %d times, EBADF "
           "%d times\n", race_data, race_badf);

    /* Cancel and close in the same turn, in both orders. */
    for (int order = 0; order < 2; order++) {
        int peer;
        bl_conn *c = netb_tcp_pair(&peer);
        struct blocked r;
        bl_thread *tr = start_blocked(&r, c, RECV);
        if (order == 0) {
            CHECK(bl_cancel(tr) == 0);
            CHECK(bl_close(c) == 0);
        } else {
            CHECK(bl_close(c) == 0);
            CHECK(bl_cancel(tr) == 0);
        }
        NETB_JOIN_SOON(tr, NULL);
        if (r.rc != -1 || (r.err != ECANCELED && r.err != EBADF))
            CORE_FAIL("cancel+close (order %d): %zd, errno %d", order, r.rc,
                      r.err);
        close(peer);
    }
    return NULL;
}

/* bl_shutdown(SHUT_WR) under a writer blocked on a full Unix socket: the
 * kernel's poll never reports it writable (only TCP reports the end), yet
 * the writer must wake and fail with EPIPE, as a blocking send(2) does. */
static void *unix_writer(void *arg)
{
    static char chunk[1 << 16];
    bl_conn *c = arg;
    for (;;) {
        if (bl_sendall(c, chunk, sizeof chunk) < 0) {
            CHECK(errno == EPIPE);
            return NULL;
        }
    }
}

static void *shutdown_main(void *arg)
{
    (void)arg;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    bl_conn *c = bl_conn_new(sv[0]);
    CHECK(c != NULL);
    bl_thread *w = bl_spawn(NULL, unix_writer, c);
    CHECK(w != NULL);
    /* Until the writer waits: the peer never reads. */
    for (int i = 0; i < 1000 && bl_wait_fd(sv[0], BL_WRITE, 0) > 0; i++)
        CHECK(bl_yield() == 0);
    CHECK(bl_yield() == 0);
    CHECK(bl_shutdown(c, SHUT_WR) == 0);
    CHECK(bl_join(w, NULL) == 0);
    CHECK(bl_close(c) == 0 && close(sv[1]) == 0);
    return NULL;
}

int main(void)
{
    int fds0 = netb_begin();
    NETB_RUN(reader_main, NULL);
    printf("ok: bl_close wakes a blocked bl_recv with EBADF; the closed "
           "connection refuses calls; a reused descriptor is not confused\n");
    NETB_RUN(others_main, NULL);
    printf("ok: bl_close wakes bl_readline, bl_sendall, and a reader and a "
           "writer at once\n");
    NETB_RUN(listener_main, NULL);
    printf("ok: bl_listener_close wakes bl_accept with EBADF\n");
    NETB_RUN(race_main, NULL);
    printf("ok: close racing with a wake-up and with cancellation\n");
    NETB_RUN(shutdown_main, NULL);
    printf("ok: bl_shutdown(SHUT_WR) wakes a writer blocked on a full Unix "
           "socket, with EPIPE\n");
    netb_end(fds0);
    return 0;
}
