/* SPDX-License-Identifier: MIT */
/*
 * test_net_duplex.c - one green thread reading a connection while another
 * writes it:
 *   - MPD-style idle notifications: a server thread blocked in bl_readline
 *     for commands while a second server thread pushes "changed:" lines;
 *     the client answers each notification with a command, so neither
 *     direction can progress unless both threads do;
 *   - a bulk stream through an echoing client: the server's writer sends
 *     far more than the socket buffers hold while its reader takes the echo
 *     back (deadlocks if a write holds up the reader);
 *   - two wrapped ends of one socketpair, four green threads, both
 *     directions at once;
 *   - a second reader (or writer) on a connection, or a second acceptor on
 *     a listener, gets EBUSY while the first waits, and works once it has
 *     left.
 * The data is checked byte for byte in both directions.
 */
#include "netb_util.h"

#include <pthread.h>

/* Run a reader and a writer green thread on c while `client` serves the
 * other end (*peer) on an OS thread with blocking calls; then close c (the
 * client may wait for that) and join the client. */
static void run_duplex(bl_conn *c, int *peer, void *(*client)(void *),
                       bl_func reader, bl_func writer, void *arg)
{
    /* A bound, so that a stall fails the test instead of hanging it. */
    CHECK(bl_conn_set_timeout(c, 10) == 0);
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, client, peer) == 0);
    bl_thread *r = bl_spawn(NULL, reader, arg);
    bl_thread *w = bl_spawn(NULL, writer, arg);
    CHECK(r != NULL && w != NULL);
    CHECK(bl_join(w, NULL) == 0);
    CHECK(bl_join(r, NULL) == 0);
    CHECK(bl_close(c) == 0);
    CHECK(pthread_join(tid, NULL) == 0);
}

/* ---- MPD-style idle ---- */

static const int notes = CORE_SLOW ? 50 : 200;

struct idle {
    bl_conn *c;
    int commands;      /* commands received in order */
    int notified;      /* notifications sent */
};

/* The server's reader: idles in bl_readline for the client's commands. */
static void *idle_reader(void *arg)
{
    struct idle *s = arg;
    char line[64], want[64];
    for (int i = 0; i < notes; i++) {
        ssize_t n = bl_readline(s->c, line, sizeof line);
        if (n <= 0)
            CORE_FAIL("command %d: bl_readline returned %zd (%s)", i, n,
                      strerror(errno));
        snprintf(want, sizeof want, "status %d\n", i);
        if (strcmp(line, want) != 0)
            CORE_FAIL("command %d: got \"%s\"", i, line);
        s->commands++;
    }
    return NULL;
}

/* The server's notifier: pushes a line whenever something "changes",
 * while the reader stays blocked. */
static void *idle_notifier(void *arg)
{
    struct idle *s = arg;
    for (int i = 0; i < notes; i++) {
        char note[64];
        int n = snprintf(note, sizeof note, "changed: player %d\n", i);
        CHECK(bl_sendall(s->c, note, (size_t)n) == 0);
        s->notified++;
        /* Some changes come in bursts, some one by one. */
        if (i % 7 == 0)
            CHECK(bl_sleep(0.001) == 0);
        else
            CHECK(bl_yield() == 0);
    }
    return NULL;
}

/* The client, on an OS thread with a blocking socket: answers each
 * notification with a command, as an MPD client re-reads the status. */
static void *idle_client(void *arg)
{
    int fd = *(int *)arg;
    FILE *in = fdopen(dup(fd), "r");
    CHECK(in != NULL);
    char line[64], want[64];
    for (int i = 0; i < notes; i++) {
        snprintf(want, sizeof want, "changed: player %d\n", i);
        if (fgets(line, sizeof line, in) == NULL || strcmp(line, want) != 0)
            CORE_FAIL("notification %d: got \"%s\"", i, line);
        char cmd[32];
        int n = snprintf(cmd, sizeof cmd, "status %d\n", i);
        netb_write_all(fd, cmd, (size_t)n);
    }
    /* Nothing more: the server closes. */
    CHECK(fgets(line, sizeof line, in) == NULL);
    fclose(in);
    return NULL;
}

static void *idle_main(void *arg)
{
    (void)arg;
    int peer;
    struct idle s = {.c = netb_tcp_pair(&peer)};
    run_duplex(s.c, &peer, idle_client, idle_reader, idle_notifier, &s);
    CHECK_EQ_LL(s.commands, notes);
    CHECK_EQ_LL(s.notified, notes);
    close(peer);
    return NULL;
}

/* ---- bulk through an echoing client ---- */

static const size_t bulk_len = CORE_SLOW ? (4u << 20) : (32u << 20);

/* Echo everything back until EOF, with blocking calls. */
static void *echo_client(void *arg)
{
    int fd = *(int *)arg;
    static char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        netb_write_all(fd, buf, (size_t)n);
    CHECK(n == 0);
    CHECK(shutdown(fd, SHUT_WR) == 0);
    return NULL;
}

struct bulk {
    bl_conn *c;
    size_t sent, got;
    size_t offered;    /* sent plus the chunk being sent */
};

static void *bulk_writer(void *arg)
{
    struct bulk *b = arg;
    static char chunk[65536 + 17];
    while (b->sent < bulk_len) {
        size_t n = bulk_len - b->sent;
        if (n > sizeof chunk)
            n = sizeof chunk;
        netb_pattern(11, b->sent, chunk, n);
        b->offered = b->sent + n;
        CHECK(bl_sendall(b->c, chunk, n) == 0);
        b->sent += n;
    }
    CHECK(bl_shutdown(b->c, SHUT_WR) == 0);
    return NULL;
}

static void *bulk_reader(void *arg)
{
    struct bulk *b = arg;
    static char buf[50000];
    for (;;) {
        ssize_t n = bl_recv(b->c, buf, sizeof buf);
        if (n < 0)
            CORE_FAIL("bl_recv: %s after %zu bytes", strerror(errno), b->got);
        if (n == 0)
            break;
        size_t k = netb_pattern_check(11, b->got, buf, (size_t)n);
        if (k != (size_t)n)
            CORE_FAIL("echo differs at byte %zu", b->got + k);
        b->got += (size_t)n;
        /* The echo cannot run ahead of what was sent. */
        CHECK(b->got <= b->offered);
    }
    return NULL;
}

static void *bulk_main(void *arg)
{
    (void)arg;
    int peer;
    struct bulk b = {.c = netb_tcp_pair(&peer)};
    run_duplex(b.c, &peer, echo_client, bulk_reader, bulk_writer, &b);
    CHECK_EQ_LL(b.got, bulk_len);
    close(peer);
    return NULL;
}

/* ---- both ends green: four threads on one socketpair ---- */

struct side {
    bl_conn *c;
    unsigned seed_out, seed_in;
    size_t len, sent, got;
    int wake_ups;      /* reads that returned while the writer was mid-way */
    struct side *other;
};

static void *side_writer(void *arg)
{
    struct side *s = arg;
    static char chunk[2][30000];
    char *buf = chunk[s->seed_out & 1];
    while (s->sent < s->len) {
        size_t n = s->len - s->sent;
        if (n > sizeof chunk[0])
            n = sizeof chunk[0];
        netb_pattern(s->seed_out, s->sent, buf, n);
        CHECK(bl_sendall(s->c, buf, n) == 0);
        s->sent += n;
    }
    return NULL;
}

static void *side_reader(void *arg)
{
    struct side *s = arg;
    static char chunk[2][20000];
    char *buf = chunk[s->seed_in & 1];
    while (s->got < s->len) {
        ssize_t n = bl_recv(s->c, buf, sizeof chunk[0]);
        if (n <= 0)
            CORE_FAIL("bl_recv: %zd (%s)", n, strerror(errno));
        size_t k = netb_pattern_check(s->seed_in, s->got, buf, (size_t)n);
        if (k != (size_t)n)
            CORE_FAIL("stream %u differs at byte %zu", s->seed_in, s->got + k);
        s->got += (size_t)n;
        if (s->sent > 0 && s->sent < s->len)
            s->wake_ups++;
    }
    return NULL;
}

static void *pair_main(void *arg)
{
    (void)arg;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    size_t len = CORE_SLOW ? (2u << 20) : (16u << 20);
    struct side a = {.c = bl_conn_new(sv[0]), .seed_out = 1, .seed_in = 2,
                     .len = len};
    struct side b = {.c = bl_conn_new(sv[1]), .seed_out = 2, .seed_in = 1,
                     .len = len};
    CHECK(a.c != NULL && b.c != NULL);
    CHECK(bl_conn_set_timeout(a.c, 10) == 0);
    CHECK(bl_conn_set_timeout(b.c, 10) == 0);
    bl_thread *t[4] = {bl_spawn(NULL, side_writer, &a),
                       bl_spawn(NULL, side_writer, &b),
                       bl_spawn(NULL, side_reader, &a),
                       bl_spawn(NULL, side_reader, &b)};
    for (int i = 0; i < 4; i++)
        CHECK(t[i] != NULL);
    for (int i = 0; i < 4; i++)
        CHECK(bl_join(t[i], NULL) == 0);
    CHECK(a.got == len && b.got == len);
    /* Each side read while its own writer was still busy. */
    CHECK(a.wake_ups > 0 && b.wake_ups > 0);
    CHECK(bl_close(a.c) == 0 && bl_close(b.c) == 0);
    return NULL;
}

/* ---- one reader and one writer at a time ---- */

struct busy {
    bl_conn *c;
    int read_err, write_err;
    ssize_t n;
    char buf[16];
};

static void *busy_reader(void *arg)
{
    struct busy *b = arg;
    b->n = bl_recv(b->c, b->buf, sizeof b->buf);
    b->read_err = b->n < 0 ? errno : 0;
    return NULL;
}

static void *busy_writer(void *arg)
{
    struct busy *b = arg;
    static const char big[1 << 20];
    b->write_err = bl_sendall(b->c, big, sizeof big) < 0 ? errno : 0;
    return NULL;
}

struct busy_acc {
    bl_listener *l;
    bl_conn *c;
};

static void *busy_acceptor(void *arg)
{
    struct busy_acc *a = arg;
    a->c = bl_accept(a->l);
    return NULL;
}

static void *busy_main(void *arg)
{
    (void)arg;
    int peer;
    struct busy b = {0};
    b.c = netb_tcp_pair(&peer);
    netb_fill(b.c);
    /* A bound: a second reader or writer that is let in waits, and then
     * fails here with ETIMEDOUT instead of hanging the test. */
    CHECK(bl_conn_set_timeout(b.c, 5) == 0);
    bl_thread *r = bl_spawn(NULL, busy_reader, &b);
    bl_thread *w = bl_spawn(NULL, busy_writer, &b);
    CHECK(r != NULL && w != NULL);
    CHECK(bl_yield() == 0);    /* both are blocked now */
    char buf[16];
    CHECK_ERR(bl_recv(b.c, buf, sizeof buf), EBUSY);
    CHECK_ERR(bl_readline(b.c, buf, sizeof buf), EBUSY);
    CHECK_ERR(bl_send(b.c, "x", 1), EBUSY);
    CHECK_ERR(bl_sendall(b.c, "x", 1), EBUSY);
    /* The two that wait are unharmed: the reader gets its data, the
     * writer finishes once the peer reads. */
    netb_write_all(peer, "data", 4);
    CHECK(bl_join(r, NULL) == 0);
    CHECK(b.n == 4 && memcmp(b.buf, "data", 4) == 0);
    /* Reading is free again. */
    netb_write_all(peer, "more", 4);
    CHECK(bl_recv(b.c, buf, sizeof buf) == 4 && memcmp(buf, "more", 4) == 0);
    size_t drained = 0;
    while (b.write_err == 0 && bl_sched_nthreads(bl_sched_current()) > 1) {
        CHECK(bl_wait_fd(peer, BL_READ, 5) == BL_READ);
        drained += netb_drain(peer);
    }
    CHECK(bl_join(w, NULL) == 0);
    CHECK_EQ_LL(b.write_err, 0);
    CHECK(drained > 0);
    CHECK(bl_send(b.c, "y", 1) == 1);   /* writing is free again */
    CHECK(bl_close(b.c) == 0);
    close(peer);

    /* One acceptor at a time on a listener, likewise. */
    bl_listener *l = bl_listen("127.0.0.1", 0, 4);
    CHECK(l != NULL);
    CHECK(bl_listener_set_timeout(l, 5) == 0);
    struct busy_acc a = {.l = l};
    bl_thread *t = bl_spawn(NULL, busy_acceptor, &a);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);    /* it is blocked now */
    CHECK_NULL_ERR(bl_accept(l), EBUSY);
    int c1 = netb_raw_connect(bl_listener_port(l));
    CHECK(bl_join(t, NULL) == 0);
    CHECK(a.c != NULL);        /* the first acceptor got the client */
    int c2 = netb_raw_connect(bl_listener_port(l));
    bl_conn *s = bl_accept(l); /* accepting is free again */
    CHECK(s != NULL);
    CHECK(bl_close(a.c) == 0 && bl_close(s) == 0);
    CHECK(bl_listener_close(l) == 0);
    close(c1);
    close(c2);
    return NULL;
}

int main(void)
{
    int fds0 = netb_begin();
    NETB_RUN(idle_main, NULL);
    printf("ok: idle reader and notifier on one connection, %d round trips\n",
           notes);
    NETB_RUN(bulk_main, NULL);
    printf("ok: %zu bytes written and read back through an echoing peer at "
           "once\n", bulk_len);
    NETB_RUN(pair_main, NULL);
    printf("ok: both ends green, both directions at once\n");
    NETB_RUN(busy_main, NULL);
    printf("ok: a second reader, writer or acceptor gets EBUSY; the first is "
           "unharmed\n");
    netb_end(fds0);
    return 0;
}
