/* SPDX-License-Identifier: MIT */
/*
 * netb_util.h - helpers of the net tests (tests/test_net_*.c): real loopback
 * connections, a port where connect() hangs, filling and draining socket
 * buffers, descriptor counts, deterministic byte streams, timing checks,
 * and a watchdog that turns a hung section into a failure.
 * Header-only: every function is static. Builds on core_util.h (CHECK and
 * friends, core_now(), core_run_green()).
 */
#ifndef NETB_UTIL_H
#define NETB_UTIL_H

#include "core_util.h"

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

/* How late a timeout may fire: generous, for loaded machines and qemu. It is
 * no speed threshold, only a bound that tells "timed out" from "hung". */
#define NETB_SLACK 2.0
/* libev measures deadlines on its own clock; allow it this much rounding
 * against ours when checking that a timeout never fires early. */
#define NETB_EPS 0.002

/* Assert that an operation that started at t0 ended after at least `want`
 * seconds and well before want + NETB_SLACK. */
#define NETB_CHECK_TOOK(t0, want, what)                                      \
    do {                                                                     \
        double took_ = core_now() - (t0);                                    \
        double want_ = (want);                                               \
        if (took_ < want_ - NETB_EPS || took_ >= want_ + NETB_SLACK)         \
            CORE_FAIL("%s took %.3f s, expected %.3f s (at most %.1f s "     \
                      "more)", what, took_, want_, NETB_SLACK);              \
    } while (0)

/* Assert that an operation that started at t0 ended early: before
 * `before` seconds (for instance before a timeout that must not apply). */
#define NETB_CHECK_BEFORE(t0, before, what)                                  \
    do {                                                                     \
        double took_ = core_now() - (t0);                                    \
        if (took_ >= (before))                                               \
            CORE_FAIL("%s took %.3f s, expected less than %.3f s", what,     \
                      took_, (double)(before));                              \
    } while (0)

/* Join t, which must end promptly: it has been woken (cancelled, or its
 * connection closed). If it is still blocked NETB_SLACK seconds later, fail
 * the test at once instead of hanging. */
#define NETB_JOIN_SOON(t, res)                                               \
    do {                                                                     \
        errno = 0;                                                           \
        if (bl_join_timeout((t), (res), NETB_SLACK) != 0)                    \
            CORE_FAIL("bl_join(%s): %s: it was not woken (still blocked "    \
                      "after %.1f s)", #t, strerror(errno), NETB_SLACK);     \
    } while (0)

/* ---- a watchdog: a hang fails the test with a message ---- */

/* How long one section (NETB_RUN) may take before the test is failed as
 * hung: several times the slowest section under qemu, and well inside
 * ctest's timeout, so that a hang says where it happened. */
#define NETB_WATCHDOG 30

#define NETB_STR_(x) #x
#define NETB_STR(x) NETB_STR_(x)

static const char *netb_section = "main";

/* write(2) all of s, as far as it goes: async-signal-safe. */
static inline void netb_say(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static inline void netb_watchdog_fired(int sig)
{
    (void)sig;
    netb_say("FAIL: watchdog: section ");
    netb_say(netb_section);
    netb_say(" still running after " NETB_STR(NETB_WATCHDOG) " s: it hangs\n");
    _exit(1);
}

/* (Re)start the watchdog for the section `name`. */
static inline void netb_watchdog(const char *name)
{
    netb_section = name;
    signal(SIGALRM, netb_watchdog_fired);
    alarm(NETB_WATCHDOG);
}

/* Run fn(arg) as the first green thread of a new scheduler
 * (core_run_green) under the watchdog. */
#define NETB_RUN(fn, arg) netb_run_(#fn, (fn), (arg))
static inline void netb_run_(const char *name, bl_func fn, void *arg)
{
    netb_watchdog(name);
    core_run_green(fn, arg);
}

/* ---- descriptors ---- */

/* The number of open descriptors of this process. */
static inline int netb_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;   /* not the directory stream itself */
}

/* Assert that this process has `want` open descriptors, waiting for that up
 * to 2 s (in 10 ms steps, with core_pause()): a name lookup abandoned by a
 * cancelled bl_connect() still runs on a pool thread for a moment, and may
 * hold a socket of its own until it ends. */
#define NETB_CHECK_FDS(want)                                                 \
    do {                                                                     \
        int want_ = (want), n_ = netb_count_fds();                           \
        for (int i_ = 0; n_ != want_ && i_ < 200; i_++) {                    \
            core_pause(0.01);                                                \
            n_ = netb_count_fds();                                           \
        }                                                                    \
        if (n_ != want_)                                                     \
            CORE_FAIL("%d descriptors open, expected %d (%s)", n_, want_,    \
                      #want);                                                \
    } while (0)

/* Start a test program: unbuffered stdout, the watchdog; returns the
 * number of open descriptors, for netb_end(). */
static inline int netb_begin(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    netb_watchdog("main");
    return netb_count_fds();
}

/* End it: nothing leaked a descriptor. */
static inline void netb_end(int fds0)
{
    netb_watchdog("netb_end");
    NETB_CHECK_FDS(fds0);
    alarm(0);
}

/* ---- sockets ---- */

/* A loopback TCP listener made with plain sockets (blocking). */
static inline int netb_raw_listener(int backlog, int *port)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(l, backlog) == 0);
    socklen_t al = sizeof a;
    CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0);
    *port = ntohs(a.sin_port);
    return l;
}

static inline struct sockaddr_in netb_loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return a;
}

/* A blocking loopback TCP client socket connected to port. */
static inline int netb_raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = netb_loopback(port);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    return fd;
}

/* A real loopback TCP connection: the server end wrapped by bl_conn_new(),
 * the client end a plain blocking socket in *peer. Works outside green
 * threads. */
static inline bl_conn *netb_tcp_pair(int *peer)
{
    int port;
    int l = netb_raw_listener(1, &port);
    *peer = netb_raw_connect(port);
    int fd = accept(l, NULL, NULL);
    CHECK(fd >= 0);
    close(l);
    bl_conn *c = bl_conn_new(fd);
    CHECK(c != NULL);
    return c;
}

/* bl_connect_timeout(host, port, timeout) to a new listener on 127.0.0.1
 * (host: that address, or a name for it) connects, and is accepted. */
static inline void netb_check_connect(const char *host, double timeout)
{
    bl_listener *l = bl_listen("127.0.0.1", 0, 4);
    CHECK(l != NULL);
    bl_conn *c = bl_connect_timeout(host, bl_listener_port(l), timeout);
    if (c == NULL)
        CORE_FAIL("bl_connect_timeout(\"%s\", %.2f): %s", host, timeout,
                  strerror(errno));
    bl_conn *s = bl_accept(l);
    CHECK(s != NULL);
    CHECK(bl_close(c) == 0 && bl_close(s) == 0);
    CHECK(bl_listener_close(l) == 0);
}

/* Shrink c's send buffer and fill it and the peer's receive buffer, so
 * that the next send on c has to wait until the peer reads. (The peer's
 * receive buffer keeps its size: a tiny one would make TCP resume slowly,
 * by zero-window probes, once the peer reads.) Returns the bytes queued. */
static inline size_t netb_fill(bl_conn *c)
{
    int small = 4096;
    int fd = bl_conn_fd(c);
    CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    static const char junk[4096];
    size_t total = 0;
    /* Until the socket stays unwritable for 50 ms: TCP keeps moving bytes
     * into the peer's window for a while after the first EAGAIN. */
    for (;;) {
        ssize_t n;
        while ((n = send(fd, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL)) > 0)
            total += (size_t)n;
        CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, 50);
        CHECK(r >= 0);
        if (r == 0)
            break;
    }
    return total;
}

/* Fill the non-blocking pipe whose write end is wfd. */
static inline void netb_fill_pipe(int wfd)
{
    static const char junk[4096];
    while (write(wfd, junk, sizeof junk) > 0)
        ;
    CHECK(errno == EAGAIN);
}

/* Read and discard everything peer has until it would block (peer is put
 * in non-blocking mode for this and back afterwards). */
static inline size_t netb_drain(int peer)
{
    int fl = fcntl(peer, F_GETFL);
    CHECK(fcntl(peer, F_SETFL, fl | O_NONBLOCK) == 0);
    char buf[65536];
    size_t total = 0;
    ssize_t n;
    while ((n = read(peer, buf, sizeof buf)) > 0)
        total += (size_t)n;
    CHECK(fcntl(peer, F_SETFL, fl) == 0);
    return total;
}

/* A TCP port on loopback where connect() hangs: a listener with backlog 0
 * whose accept queue is full. Linux drops SYNs to a listener whose accept
 * queue is full, so later connects stay in SYN_SENT (retransmitting) until
 * the queue drains. Fills *fds with the listener and the sockets that fill
 * its queue (-1 terminated, at most 8 entries + terminator); close them
 * with netb_close_all(). Returns the port; fails the test if no connect
 * stays pending (a kernel that never drops). */
static inline int netb_hung_port(int fds[10])
{
    int port;
    int n = 0;
    fds[n++] = netb_raw_listener(0, &port);
    struct sockaddr_in a = netb_loopback(port);
    for (int i = 0; i < 8; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        fds[n++] = fd;
        fds[n] = -1;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
            continue;
        CHECK(errno == EINPROGRESS);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 100) == 0)
            return port;    /* this one hangs: the queue is full */
    }
    CORE_FAIL("no connect to a full accept queue stays pending");
}

/* A Unix listener at path whose backlog is full: a connect to it returns
 * EAGAIN (bl_connect_unix then retries). The sockets that fill it go to
 * fds (-1 terminated, at most 15 + terminator). */
static inline bl_listener *netb_full_unix_listener(const char *path, int fds[16])
{
    unlink(path);
    bl_listener *l = bl_listen_unix(path, 1);
    CHECK(l != NULL);
    struct sockaddr_un ua = {.sun_family = AF_UNIX};
    snprintf(ua.sun_path, sizeof ua.sun_path, "%s", path);
    int n = 0;
    for (;;) {
        CHECK(n < 15);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        if (connect(fd, (struct sockaddr *)&ua, sizeof ua) < 0) {
            CHECK(errno == EAGAIN);
            close(fd);
            break;
        }
        fds[n++] = fd;
    }
    fds[n] = -1;
    return l;
}

/* A Unix socket path in core_tmpdir(), or in /tmp where that is too long
 * for sun_path. */
static inline void netb_unix_path(char *buf, size_t cap, const char *what)
{
    struct sockaddr_un sun;
    if (cap > sizeof sun.sun_path)
        cap = sizeof sun.sun_path;
    if (snprintf(buf, cap, "%s/bl_netb_%s_%d.sock", core_tmpdir(), what,
                 (int)getpid()) >= (int)cap)
        snprintf(buf, cap, "/tmp/bl_netb_%s_%d.sock", what, (int)getpid());
}

static inline void netb_close_all(int *fds)
{
    for (int i = 0; fds[i] >= 0; i++)
        close(fds[i]);
}

/* Undo netb_full_unix_listener(): close the filling sockets and the
 * listener, and remove the socket file. */
static inline void netb_full_unix_free(bl_listener *l, int *fds, const char *path)
{
    netb_close_all(fds);
    CHECK(bl_listener_close(l) == 0);
    unlink(path);
}

/* A byte of a deterministic stream: position i of stream `seed`. */
static inline unsigned char netb_byte(unsigned seed, size_t i)
{
    uint32_t x = (uint32_t)(i / 4) * 2654435761u + seed * 40503u;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    return (unsigned char)(x >> (8 * (i % 4)));
}

static inline void netb_pattern(unsigned seed, size_t off, void *buf,
                                size_t len)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = netb_byte(seed, off + i);
}

/* Index of the first byte of buf that differs from the stream, or len. */
static inline size_t netb_pattern_check(unsigned seed, size_t off,
                                        const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != netb_byte(seed, off + i))
            return i;
    return len;
}

/* Write all of buf to a plain blocking fd. */
static inline void netb_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* Receive exactly len bytes from c; 0, or -1 (errno set; 0 at EOF). */
static inline int netb_recv_exact(bl_conn *c, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = bl_recv(c, p, len);
        if (n <= 0) {
            if (n == 0)
                errno = 0;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- address space ---- */

/* Built with AddressSanitizer (which cannot run under a tight RLIMIT_AS)? */
#if defined(__SANITIZE_ADDRESS__)
#define NETB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NETB_ASAN 1
#endif
#endif

/* Limit the address space (RLIMIT_AS) to what is mapped now plus `room`
 * bytes, so that larger mappings (a thread's or a big green thread's stack)
 * fail. Returns the previous limit, for setrlimit() to restore. qemu-user
 * does not enforce the limit. */
static inline struct rlimit netb_limit_address_space(size_t room)
{
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    unsigned long pages;
    CHECK(fscanf(f, "%lu", &pages) == 1);
    fclose(f);
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_AS, &old) == 0);
    lim = old;
    lim.rlim_cur = pages * (rlim_t)sysconf(_SC_PAGESIZE) + room;
    CHECK(setrlimit(RLIMIT_AS, &lim) == 0);
    return old;
}

#endif /* NETB_UTIL_H */
