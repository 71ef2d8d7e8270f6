/* SPDX-License-Identifier: MIT */
/*
 * test_net_stream.c - data through connections: many concurrent clients,
 * a bulk transfer, partial and coalesced reads, bl_readline/bl_readuntil
 * rules, the scheduler a connection is tied to, half-close, peer reset, no SIGPIPE, IPv6 and Unix sockets,
 * ECONNREFUSED and unknown host names. Real loopback sockets throughout.
 */
#include "netb_util.h"

#include <dlfcn.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

/* ---- an echo server (the bl_serve handler) ---- */

static void echoer(bl_conn *c, void *arg)
{
    (void)arg;
    char buf[8192];
    ssize_t n;
    while ((n = bl_recv(c, buf, sizeof buf)) > 0)
        if (bl_sendall(c, buf, (size_t)n) < 0)
            break;
}

/* ---- 1000 concurrent clients, byte-exact echoes ---- */

static int many_port, many_ok;

static void *many_client(void *arg)
{
    int id = (int)(long)arg;
    static const size_t sizes[] = {1, 100, 3000};
    bl_conn *c = bl_connect("127.0.0.1", many_port);
    if (c == NULL)
        CORE_FAIL("client %d: bl_connect: %s", id, strerror(errno));
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char out[3000], in[3000];
        for (size_t i = 0; i < sizes[k]; i++)
            out[i] = (char)(id * 31 + (int)k * 7 + (int)i);
        CHECK(bl_sendall(c, out, sizes[k]) == 0);
        CHECK(netb_recv_exact(c, in, sizes[k]) == 0);
        if (memcmp(in, out, sizes[k]) != 0)
            CORE_FAIL("client %d: echo of %zu bytes differs", id, sizes[k]);
        bl_yield(); /* let the others interleave */
    }
    CHECK(bl_close(c) == 0);
    many_ok++;
    return NULL;
}

static void *many_main(void *arg)
{
    int n = (int)(long)arg;
    bl_listener *l = bl_listen("127.0.0.1", 0, 0);
    CHECK(l != NULL);
    many_port = bl_listener_port(l);
    bl_thread *acceptor = bl_serve_listener(NULL, l, echoer, NULL);
    CHECK(acceptor != NULL);
    bl_thread **t = calloc((size_t)n, sizeof *t);
    CHECK(t != NULL);
    for (int i = 0; i < n; i++)
        CHECK((t[i] = bl_spawn(NULL, many_client, (void *)(long)i)) != NULL);
    for (int i = 0; i < n; i++)
        CHECK(bl_join(t[i], NULL) == 0);
    free(t);
    CHECK(bl_cancel(acceptor) == 0);
    CHECK(bl_join(acceptor, NULL) == 0);
    return NULL;
}

static void test_many_clients(void)
{
    int n = CORE_SLOW ? 200 : 1000;
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur < (rlim_t)(2 * n + 64)) {
        n = ((int)rl.rlim_cur - 64) / 2;
        printf("note: RLIMIT_NOFILE %llu: %d clients only\n",
               (unsigned long long)rl.rlim_cur, n);
    }
    many_ok = 0;
    core_run_green(many_main, (void *)(long)n);
    CHECK(many_ok == n);
    printf("ok: %d concurrent clients echoed byte-exact\n", n);
}

/* ---- bulk transfer through bl_sendall to another scheduler ---- */

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

struct bulk {
    int port;
    size_t total, received;
    uint64_t sent_sum, recv_sum;
};

static void *bulk_reader(void *arg)
{
    struct bulk *b = arg;
    bl_conn *c = bl_connect("127.0.0.1", b->port);
    CHECK(c != NULL);
    static unsigned char buf[65536];
    uint64_t h = 14695981039346656037ull;
    ssize_t n;
    while ((n = bl_recv(c, buf, sizeof buf)) > 0) {
        h = fnv(h, buf, (size_t)n);
        b->received += (size_t)n;
    }
    CHECK(n == 0);
    b->recv_sum = h;
    bl_close(c);
    return NULL;
}

static void *bulk_os_thread(void *arg)
{
    core_run_green(bulk_reader, arg);
    return NULL;
}

static void *bulk_writer(void *arg)
{
    struct bulk *b = arg;
    bl_listener *l = bl_listen("127.0.0.1", 0, 1);
    CHECK(l != NULL);
    b->port = bl_listener_port(l);
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, bulk_os_thread, b) == 0);
    bl_conn *c = bl_accept(l);
    CHECK(c != NULL);
    static unsigned char chunk[1 << 20];
    uint64_t h = 14695981039346656037ull;
    for (size_t off = 0; off < b->total; off += sizeof chunk) {
        for (size_t i = 0; i < sizeof chunk; i += 8)
            chunk[i] = (unsigned char)((off + i) >> 9);
        h = fnv(h, chunk, sizeof chunk);
        CHECK(bl_sendall(c, chunk, sizeof chunk) == 0);
    }
    b->sent_sum = h;
    CHECK(bl_close(c) == 0);
    CHECK(bl_listener_close(l) == 0);
    CHECK(pthread_join(tid, NULL) == 0);
    return NULL;
}

static void test_bulk(void)
{
    struct bulk b = {.total = (size_t)(CORE_SLOW ? 10 : 100) << 20};
    core_run_green(bulk_writer, &b);
    CHECK(b.received == b.total);
    CHECK(b.recv_sum == b.sent_sum);
    printf("ok: %zu MB through bl_sendall, checksums match\n", b.total >> 20);
}

/* ---- partial and coalesced reads, readline rules (socketpair) ---- */

static int sp[2];

static void raw_write(const char *s)
{
    CHECK(write(sp[1], s, strlen(s)) == (ssize_t)strlen(s));
}

static void *reads_main(void *arg)
{
    (void)arg;
    bl_conn *c = bl_conn_new(sp[0]);
    CHECK(c != NULL);
    char buf[64];

    /* Coalesced: two writes before the read arrive as one. */
    raw_write("abc");
    raw_write("def");
    CHECK(bl_recv(c, buf, sizeof buf) == 6 && memcmp(buf, "abcdef", 6) == 0);
    /* Partial: asking for less leaves the rest for the next call. */
    raw_write("123456");
    CHECK(bl_recv(c, buf, 4) == 4 && memcmp(buf, "1234", 4) == 0);
    CHECK(bl_recv(c, buf, sizeof buf) == 2 && memcmp(buf, "56", 2) == 0);
    CHECK(bl_recv(c, buf, 0) == 0);

    /* readline: line with delimiter and NUL; the rest stays buffered and
     * bl_recv returns it first. */
    raw_write("one\ntwo\nthr");
    CHECK(bl_readline(c, buf, sizeof buf) == 4 && strcmp(buf, "one\n") == 0);
    CHECK(bl_recv(c, buf, 3) == 3 && memcmp(buf, "two", 3) == 0);
    CHECK(bl_readline(c, buf, sizeof buf) == 1 && strcmp(buf, "\n") == 0);
    /* A line split over writes is waited for. */
    raw_write("ee");
    raw_write(" more\n");
    CHECK(bl_readline(c, buf, sizeof buf) == 11 && strcmp(buf, "three more\n") == 0);
    /* Too long for cap - 1: EMSGSIZE, nothing consumed. */
    raw_write("0123456789\n");
    CHECK_ERR(bl_readline(c, buf, 8), EMSGSIZE);
    CHECK(bl_readline(c, buf, 12) == 11 && strcmp(buf, "0123456789\n") == 0);
    raw_write("abcdefghij\n");
    CHECK_ERR(bl_readline(c, buf, 11), EMSGSIZE); /* 11 bytes need cap 12 */
    CHECK(bl_recv(c, buf, sizeof buf) == 11 && memcmp(buf, "abcdefghij\n", 11) == 0);
    /* Multi-byte delimiters, also split across writes. */
    raw_write("GET / HTTP/1.0\r");
    raw_write("\nHost: x\r\n");
    CHECK(bl_readuntil(c, buf, sizeof buf, "\r\n", 2) == 16 &&
          strcmp(buf, "GET / HTTP/1.0\r\n") == 0);
    CHECK(bl_readuntil(c, buf, sizeof buf, "\r\n", 2) == 9 &&
          strcmp(buf, "Host: x\r\n") == 0);
    const char tok[] = "<<--TOKEN-16B-->";  /* 16 bytes */
    raw_write("payload<<--TOK");
    raw_write("EN-16B-->tail");
    CHECK(bl_readuntil(c, buf, sizeof buf, tok, 16) == 23 &&
          strcmp(buf, "payload<<--TOKEN-16B-->") == 0);
    /* A failed call consumed nothing, whatever it looked for: the next call
     * searches every buffered byte, for its own delimiter. */
    CHECK(bl_recv(c, buf, sizeof buf) == 4 && memcmp(buf, "tail", 4) == 0);
    CHECK(bl_conn_set_timeout(c, 5.0) == 0);    /* a failure must not hang */
    raw_write("abcdefgh");
    CHECK_ERR(bl_readline(c, buf, 6), EMSGSIZE);
    CHECK(bl_readuntil(c, buf, sizeof buf, "c", 1) == 3 && strcmp(buf, "abc") == 0);
    CHECK(bl_recv(c, buf, sizeof buf) == 5 && memcmp(buf, "defgh", 5) == 0);
    raw_write("line1\nline2\n");
    CHECK(bl_conn_set_timeout(c, 0.02) == 0);
    CHECK_ERR(bl_readuntil(c, buf, sizeof buf, "\r\n\r\n", 4), ETIMEDOUT);
    CHECK(bl_conn_set_timeout(c, 5.0) == 0);
    CHECK(bl_readline(c, buf, sizeof buf) == 6 && strcmp(buf, "line1\n") == 0);
    /* bl_recv() of 0 bytes with bytes buffered: 0, and they stay. */
    CHECK(bl_recv(c, NULL, 0) == 0);
    CHECK(bl_readline(c, buf, sizeof buf) == 6 && strcmp(buf, "line2\n") == 0);
    CHECK(bl_conn_set_timeout(c, 0) == 0);
    raw_write("tail");
    /* Invalid arguments. */
    CHECK_ERR(bl_readuntil(c, buf, 1, "\n", 1), EINVAL);
    CHECK_ERR(bl_readuntil(c, buf, sizeof buf, "", 0), EINVAL);
    /* End of stream: the remainder without delimiter, then 0; 4 bytes fit
     * a cap of 5 (only more than cap - 1 bytes without delimiter do not). */
    CHECK(close(sp[1]) == 0);
    CHECK(bl_readline(c, buf, 5) == 4 && strcmp(buf, "tail") == 0);
    CHECK(bl_readline(c, buf, sizeof buf) == 0);
    CHECK(bl_recv(c, buf, sizeof buf) == 0);
    CHECK(bl_close(c) == 0);
    return NULL;
}

static void test_reads(void)
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
    core_run_green(reads_main, NULL);
    printf("ok: partial and coalesced reads, readline/readuntil rules\n");
}

/* ---- connections and listeners are tied to the scheduler that first
 * waits on them ---- */

static bl_conn *tied;
static bl_listener *tied_l;

/* Scheduler A: wait on the connection (bounded), which ties it to A. */
static void *tie_main(void *arg)
{
    (void)arg;
    char buf[8];
    CHECK(bl_conn_set_timeout(tied, 0.05) == 0);
    CHECK_ERR(bl_recv(tied, buf, sizeof buf), ETIMEDOUT);
    CHECK(bl_conn_set_timeout(tied, 0) == 0);
    CHECK(bl_listener_set_timeout(tied_l, 0.05) == 0);
    CHECK(bl_accept(tied_l) == NULL && errno == ETIMEDOUT);
    CHECK(bl_listener_set_timeout(tied_l, 0) == 0);
    /* A short read: the next read here would wait without trying. */
    raw_write("x");
    CHECK(bl_recv(tied, buf, sizeof buf) == 1);
    return NULL;
}

/* Scheduler B, while A exists: a call that would wait fails with EXDEV and
 * leaves the connection usable; one that need not wait goes through. */
static void *other_main(void *arg)
{
    (void)arg;
    char buf[8];
    /* Data that is there is taken, even after A's short read; a queued
     * connection is accepted. */
    raw_write("ab");
    CHECK(bl_recv(tied, buf, sizeof buf) == 2 && memcmp(buf, "ab", 2) == 0);
    int fd = netb_raw_connect(bl_listener_port(tied_l));
    bl_conn *in = bl_accept(tied_l);
    CHECK(in != NULL);
    CHECK(bl_close(in) == 0);
    CHECK(close(fd) == 0);
    CHECK_ERR(bl_recv(tied, buf, sizeof buf), EXDEV);
    CHECK_ERR(bl_recv(tied, buf, sizeof buf), EXDEV);   /* not EBUSY */
    CHECK(bl_accept(tied_l) == NULL && errno == EXDEV);
    raw_write("hi");
    CHECK(bl_recv(tied, buf, sizeof buf) == 2 && memcmp(buf, "hi", 2) == 0);
    CHECK(bl_sendall(tied, "yo", 2) == 0);
    CHECK(read(sp[1], buf, sizeof buf) == 2 && memcmp(buf, "yo", 2) == 0);
    return NULL;
}

static void *late_writer(void *arg)
{
    (void)arg;
    CHECK(bl_sleep(0.02) == 0);
    raw_write("late");
    return NULL;
}

/* Scheduler C, after A was freed: the connection is free to tie to C, and
 * waiting on it works. */
static void *after_main(void *arg)
{
    (void)arg;
    char buf[8];
    CHECK(bl_spawn(NULL, late_writer, NULL) != NULL);
    CHECK(bl_recv(tied, buf, sizeof buf) == 4 && memcmp(buf, "late", 4) == 0);
    int fd = netb_raw_connect(bl_listener_port(tied_l));
    bl_conn *c = bl_accept(tied_l);
    CHECK(c != NULL);
    CHECK(bl_close(c) == 0);
    CHECK(close(fd) == 0);
    return NULL;
}

static void test_tied(void)
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
    tied = bl_conn_new(sp[0]);
    CHECK(tied != NULL);
    tied_l = bl_listen("127.0.0.1", 0, 0);
    CHECK(tied_l != NULL);
    bl_sched *a = bl_sched_new();
    CHECK(a != NULL);
    CHECK(bl_spawn(a, tie_main, NULL) != NULL);
    CHECK(bl_sched_run(a) == 0);
    core_run_green(other_main, NULL);
    bl_sched_free(a);
    core_run_green(after_main, NULL);
    /* Its last scheduler is gone too: closing must not touch its loop. */
    CHECK(bl_close(tied) == 0);
    CHECK(bl_listener_close(tied_l) == 0);
    CHECK(close(sp[1]) == 0);
    printf("ok: connections and listeners are tied to one scheduler (EXDEV "
           "in another) until that one is freed\n");
}

/* ---- closing from another OS thread while the owner runs ---- */

static bl_conn *x_conn;
static bl_listener *x_l;
static int x_go[2];     /* main -> owner: the foreign closes are done */
static int x_ready;     /* owner -> main: both objects are tied */

static void *x_owner(void *arg)
{
    (void)arg;
    char buf[8];
    int peer;
    x_conn = netb_tcp_pair(&peer);
    x_l = bl_listen("127.0.0.1", 0, 0);
    CHECK(x_l != NULL);
    /* Tie both to this scheduler: a wait on each, then idle watchers. */
    CHECK(bl_listener_set_timeout(x_l, 0.01) == 0);
    CHECK(bl_accept(x_l) == NULL && errno == ETIMEDOUT);
    CHECK(bl_conn_set_timeout(x_conn, 0.01) == 0);
    CHECK_ERR(bl_recv(x_conn, buf, sizeof buf), ETIMEDOUT);
    __atomic_store_n(&x_ready, 1, __ATOMIC_RELEASE);
    CHECK(bl_wait_fd(x_go[0], BL_READ, 60) == BL_READ);
    /* Read what woke us: the main thread's closes happened before its write
     * (ThreadSanitizer sees that order through the pipe, not through the
     * poll that woke us). */
    CHECK(read(x_go[0], buf, 1) == 1);
    /* Both still work here, and close here. */
    CHECK(write(peer, "ok", 2) == 2);
    CHECK(bl_recv(x_conn, buf, sizeof buf) == 2 && memcmp(buf, "ok", 2) == 0);
    int fd = netb_raw_connect(bl_listener_port(x_l));
    bl_conn *in = bl_accept(x_l);
    CHECK(in != NULL);
    CHECK(bl_close(in) == 0);
    CHECK(close(fd) == 0);
    CHECK(bl_close(x_conn) == 0);
    CHECK(bl_listener_close(x_l) == 0);
    CHECK(close(peer) == 0);
    return NULL;
}

static void *x_os_thread(void *arg)
{
    bl_sched *a = arg;
    CHECK(bl_sched_run(a) == 0);
    return NULL;
}

static void test_foreign_close(void)
{
    CHECK(pipe(x_go) == 0);
    bl_sched *a = bl_sched_new();
    CHECK(a != NULL);
    CHECK(bl_spawn(a, x_owner, NULL) != NULL);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, x_os_thread, a) == 0);
    while (!__atomic_load_n(&x_ready, __ATOMIC_ACQUIRE))
        usleep(1000);
    /* The owner is parked in bl_wait_fd(): its loop is live. Closing would
     * stop watchers in that loop from this thread. */
    CHECK(bl_close(x_conn) == -1 && errno == EXDEV);
    CHECK(bl_listener_close(x_l) == -1 && errno == EXDEV);
    CHECK(write(x_go[1], "g", 1) == 1);
    CHECK(pthread_join(th, NULL) == 0);
    bl_sched_free(a);
    CHECK(close(x_go[0]) == 0 && close(x_go[1]) == 0);
    printf("ok: closing an object of a scheduler running in another OS thread "
           "fails with EXDEV and leaves it usable there\n");
}

/* ---- resolver ---- */

/* Names under .invalid fail at once, as RFC 6761 says a resolver should
 * answer them, without a query: a DNS server that does not answer (CI
 * machines may have one in resolv.conf and no network) would take the
 * resolver's timeouts, and the test is about how bl_connect() reports a
 * failed lookup, not about the system's DNS. */
typedef int gai_fn(const char *, const char *, const struct addrinfo *,
                   struct addrinfo **);

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
    size_t n = node != NULL ? strlen(node) : 0;
    if (n >= 8 && strcmp(node + n - 8, ".invalid") == 0)
        return EAI_NONAME;
    gai_fn *real = (gai_fn *)dlsym(RTLD_NEXT, "getaddrinfo");
    return real(node, service, hints, res);
}

/* ---- half-close, reset, SIGPIPE ---- */

static void *halfclose_main(void *arg)
{
    (void)arg;
    bl_listener *l = bl_listen("127.0.0.1", 0, 4);
    CHECK(l != NULL);
    bl_conn *a = bl_connect("127.0.0.1", bl_listener_port(l));
    CHECK(a != NULL);
    bl_conn *b = bl_accept(l);
    CHECK(b != NULL);
    char buf[32];

    /* Half-close: b sees EOF and still answers; a reads the answer. */
    CHECK(bl_sendall(a, "request", 7) == 0);
    CHECK(bl_shutdown(a, SHUT_WR) == 0);
    CHECK(netb_recv_exact(b, buf, 7) == 0 && memcmp(buf, "request", 7) == 0);
    CHECK(bl_recv(b, buf, sizeof buf) == 0);
    CHECK(bl_sendall(b, "reply", 5) == 0);
    CHECK(netb_recv_exact(a, buf, 5) == 0 && memcmp(buf, "reply", 5) == 0);
    CHECK(bl_close(b) == 0);
    CHECK(bl_recv(a, buf, sizeof buf) == 0);
    CHECK(bl_close(a) == 0);

    /* Reset: the peer aborts with SO_LINGER 0 while we wait. */
    a = bl_connect("127.0.0.1", bl_listener_port(l));
    CHECK(a != NULL);
    b = bl_accept(l);
    CHECK(b != NULL);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK(setsockopt(bl_conn_fd(b), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    CHECK(bl_close(b) == 0);
    CHECK_ERR(bl_recv(a, buf, sizeof buf), ECONNRESET);
    CHECK(bl_close(a) == 0);

    /* SIGPIPE: keep sending to a closed peer; SIG_DFL would kill us. */
    a = bl_connect("127.0.0.1", bl_listener_port(l));
    CHECK(a != NULL);
    b = bl_accept(l);
    CHECK(b != NULL);
    CHECK(bl_close(b) == 0);
    int rc = 0, e = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        rc = bl_sendall(a, "x", 1);
        e = errno;
        bl_sleep(0.001);
    }
    CHECK(rc == -1 && (e == EPIPE || e == ECONNRESET));
    CHECK(bl_close(a) == 0);
    CHECK(bl_listener_close(l) == 0);

    /* The same on a pipe (write(2), not send(MSG_NOSIGNAL)), and a SIGPIPE
     * already pending stays pending. */
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    bl_conn *pw = bl_conn_new(pfd[1]);
    CHECK(pw != NULL);
    CHECK(close(pfd[0]) == 0);
    CHECK_ERR(bl_send(pw, "x", 1), EPIPE);
    CHECK(bl_sendall(pw, "x", 1) == -1 && errno == EPIPE);
    sigset_t pipeset, pending;
    sigemptyset(&pipeset);
    sigaddset(&pipeset, SIGPIPE);
    CHECK(pthread_sigmask(SIG_BLOCK, &pipeset, NULL) == 0);
    CHECK(raise(SIGPIPE) == 0);
    CHECK_ERR(bl_send(pw, "x", 1), EPIPE);
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE));
    int sig;
    CHECK(sigwait(&pipeset, &sig) == 0 && sig == SIGPIPE);
    CHECK(pthread_sigmask(SIG_UNBLOCK, &pipeset, NULL) == 0);
    CHECK(bl_close(pw) == 0);
    return NULL;
}

static void test_halfclose_reset_sigpipe(void)
{
    CHECK(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    core_run_green(halfclose_main, NULL);
    printf("ok: half-close, ECONNRESET, EPIPE without SIGPIPE\n");
}

/* ---- families and connection errors ---- */

static void echo_once(bl_conn *c, const char *what)
{
    char buf[32];
    CHECK(bl_sendall(c, "ping\n", 5) == 0);
    if (bl_readline(c, buf, sizeof buf) != 5 || strcmp(buf, "ping\n") != 0)
        CORE_FAIL("%s: no echo", what);
    CHECK(bl_close(c) == 0);
}

static void *families_main(void *arg)
{
    (void)arg;
    /* IPv6 loopback, if the machine has it. */
    bl_listener *l6 = bl_listen("::1", 0, 4);
    if (l6 == NULL) {
        printf("note: no IPv6 loopback (%s): IPv6 not checked\n", strerror(errno));
    } else {
        int port = bl_listener_port(l6);
        bl_thread *srv = bl_serve_listener(NULL, l6, echoer, NULL);
        CHECK(srv != NULL);
        bl_conn *c = bl_connect("::1", port);
        CHECK(c != NULL);
        echo_once(c, "IPv6");
        bl_cancel(srv);
        bl_join(srv, NULL);
    }
    /* Unix-domain sockets. */
    char path[108];
    netb_unix_path(path, sizeof path, "stream");
    unlink(path);
    bl_listener *lu = bl_listen_unix(path, 4);
    CHECK(lu != NULL);
    CHECK(bl_listener_port(lu) == -1);
    bl_thread *srv = bl_serve_listener(NULL, lu, echoer, NULL);
    CHECK(srv != NULL);
    bl_conn *c = bl_connect_unix(path);
    CHECK(c != NULL);
    echo_once(c, "Unix");
    bl_cancel(srv);
    bl_join(srv, NULL);
    unlink(path);
    CHECK_NULL_ERR(bl_connect_unix(path), ENOENT);

    /* Refused: a port that was just listened on and closed. */
    bl_listener *l = bl_listen("127.0.0.1", 0, 1);
    CHECK(l != NULL);
    int port = bl_listener_port(l);
    CHECK(bl_listener_close(l) == 0);
    CHECK_NULL_ERR(bl_connect("127.0.0.1", port), ECONNREFUSED);

    /* Unknown host (see getaddrinfo() above): EADDRNOTAVAIL and the
     * resolver's message. */
    errno = 0;
    CHECK(bl_connect("no-such-host.invalid", 80) == NULL);
    CHECK_EQ_LL(errno, EADDRNOTAVAIL);
    CHECK(strncmp(bl_resolve_error(), "no-such-host.invalid: ", 22) == 0);
    printf("note: resolver said: %s\n", bl_resolve_error());
    /* The message is about the last call only: not about a later failure
     * that came after resolving (it used to stay). */
    CHECK_NULL_ERR(bl_connect("127.0.0.1", port), ECONNREFUSED);
    if (bl_resolve_error()[0] != '\0')
        printf("stale resolver message: %s\n", bl_resolve_error());
    CHECK(bl_resolve_error()[0] == '\0');
    CHECK(bl_connect("no-such-host.invalid", 80) == NULL);
    CHECK(bl_resolve_error()[0] != '\0');
    errno = 0;
    CHECK(bl_listen("192.0.2.1", 0, 1) == NULL);   /* not ours: bind fails */
    CHECK_EQ_LL(errno, EADDRNOTAVAIL);
    CHECK(bl_resolve_error()[0] == '\0');
    CHECK_NULL_ERR(bl_connect("127.0.0.1", 70000), EINVAL);
    return NULL;
}

static void test_families(void)
{
    core_run_green(families_main, NULL);
    printf("ok: IPv6, Unix sockets, ECONNREFUSED, unknown host\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_reads();
    test_tied();
    test_foreign_close();
    test_halfclose_reset_sigpipe();
    test_families();
    test_bulk();
    test_many_clients();
    return 0;
}
