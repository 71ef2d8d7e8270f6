/* SPDX-License-Identifier: MIT */
/*
 * net.c - buffered connections and listeners on non-blocking sockets.
 *
 * Every operation tries the system call first and waits only on EAGAIN. Each
 * connection owns one read and one write ev_io watcher. A watcher is started
 * the first time a thread waits and then left running while threads keep
 * waiting on it, so a connection in a steady request/response rhythm makes
 * no epoll_ctl calls; a watcher that fires with nobody waiting stops itself.
 * After a short read the connection is taken to be drained and the next
 * bl_recv() waits for readiness first instead of spending a recv() on EAGAIN.
 */
#define _GNU_SOURCE
#include "switch.h"

#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

/* Laid out by use: with many connections every line a round trip touches is
 * a cache miss, and the misses of our lines also evict the kernel's. So the
 * first line holds all that a recv, a send and an event on the read watcher
 * touch: libev's watcher (first, so that conn_rcb() finds c at w), its fd
 * (the connection's descriptor), its data (the scheduler c is bound to, by
 * the first wait; NULL before), the parked reader and the flags. */
struct bl_conn {
    ev_io rio;
    bl_thread *reader;      /* parked on rio */
    unsigned char rbusy, wbusy; /* a thread is inside a read / write call;
                                 * a closed connection is freed when both
                                 * have left */
    unsigned char closed;
    unsigned char eof;      /* the buffered reader saw end of stream */
    unsigned char drained;  /* last read was short: wait before reading again */
    unsigned char notsock;  /* a pipe or tty: read/write instead of recv/send */
    unsigned char timed;    /* timeout > 0 */
    unsigned char buffered; /* rbuf holds bytes: rend > rstart */
    /* second line on: what waiting to write, timeouts and bl_readuntil()
     * use */
    bl_thread *writer;      /* parked on wio */
    double timeout;         /* per call, in seconds */
    size_t rstart, rend;    /* buffered bytes are rbuf[rstart, rend) */
    ev_io wio;
    char *rbuf;
    size_t rcap;
    bl_handler serve_h; /* bl_serve(): the handler and its argument */
    void *serve_arg;
    bl__tie tie;        /* in the list of the scheduler c is tied to */
} __attribute__((aligned(64)));

_Static_assert(offsetof(struct bl_conn, rio) == 0, "conn_rcb() casts w to c");
_Static_assert(offsetof(struct bl_conn, writer) == 64,
               "the hot fields fill the first cache line");

/* The scheduler a connection is bound to (NULL before its first wait). */
static inline bl_sched *conn_sched(const bl_conn *c)
{
    return c->rio.data;
}

struct bl_listener {
    int fd;
    int port;           /* -1 for Unix sockets */
    unsigned char closed;
    int users;
    int accepting;      /* a thread is inside bl_accept() (EBUSY) */
    bl_sched *s;
    bl_thread *waiter;  /* parked in bl_accept(): woken by bl_listener_close */
    double timeout;
    ev_io io;
    bl__tie tie;        /* in the list of the scheduler l is tied to */
};

static __thread char resolve_msg[160];

const char *bl_resolve_error(void)
{
    return resolve_msg;
}

static double call_deadline(bl_sched *s, double timeout)
{
    return timeout > 0 ? bl__deadline(s, timeout) : -1;
}

/* ---- connections ---- */

/* Watchers stay started between calls, so that a thread that reads (or
 * writes) again soon costs no epoll_ctl. A started watcher that no thread
 * waits on ("idle") must not keep bl_sched_run() from seeing a deadlock, so
 * it does not count as active (ev_unref) until a thread waits on it again:
 *   started, waiter set    referenced
 *   started, no waiter     unreferenced: ev_ref() before ev_io_stop()
 * The same holds for a listener's watcher. */
static inline void watcher_stop(struct ev_loop *loop, ev_io *w,
                                const bl_thread *waiter)
{
    if (ev_is_active(w) && waiter == NULL)
        ev_ref(loop);
    ev_io_stop(loop, w);
}

/* libev stopped w itself: an epoll_ctl failed (say ENOSPC at
 * fs.epoll.max_user_watches), so it stopped every watcher on the descriptor
 * and calls them with EV_ERROR. Mark w for a fresh registration (ev_io_set()
 * sets libev's "descriptor changed" flag): libev still believes the
 * descriptor is in epoll with the same events, and restarting w alone would
 * not add it again, so a thread waiting on it would never wake. */
static inline void watcher_killed(ev_io *w)
{
    ev_io_set(w, w->fd, w->events & (EV_READ | EV_WRITE));
}

/* Wake the waiter of a watcher that stays started: it turns idle. Unless
 * libev stopped the watcher itself (watcher_killed()); its stop released
 * the waiter's reference already. That waiter gets BL__EWATCH: it pauses
 * (bl__watch_retry()), retries, and waits again if need be. */
static inline void watcher_wake(struct ev_loop *loop, ev_io *w,
                                bl_thread **waiter)
{
    bl_thread *t = *waiter;
    *waiter = NULL;
    if (BL_LIKELY(ev_is_active(w))) {
        ev_unref(loop);
        bl__wake(t, 0);
    } else {
        watcher_killed(w);
        bl__wake(t, BL__EWATCH);
    }
}

/* A callback found no waiter. An idle watcher is stopped (see conn_rcb()),
 * unless `keep`; one that libev stopped itself lost a reference it did not
 * hold, which is given back. */
static inline void watcher_idle_event(struct ev_loop *loop, ev_io *w, int keep)
{
    if (BL_UNLIKELY(!ev_is_active(w))) {
        ev_ref(loop);
        watcher_killed(w);
    } else if (!keep) {
        watcher_stop(loop, w, NULL);
    }
}

/* A thread is about to wait on w (started or idle). */
static inline void watcher_arm(struct ev_loop *loop, ev_io *w)
{
    if (!ev_is_active(w))
        ev_io_start(loop, w);
    else
        ev_ref(loop);
}

/* The waiter left without being woken through w (timeout, cancel, another
 * wake-up): w stays started, idle. */
static inline void watcher_leave(struct ev_loop *loop, bl_thread **waiter)
{
    if (*waiter != NULL) {
        *waiter = NULL;
        ev_unref(loop);
    }
}

static void conn_rcb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    bl_conn *c = (bl_conn *)w;      /* rio comes first */
    if (c->reader != NULL)
        watcher_wake(loop, w, &c->reader);
    else
        /* Nobody is reading: stop, or a level-triggered poll would keep
         * reporting the unread bytes. A thread inside a read call that was
         * woken and has not run yet will wait again at once: keep the
         * watcher for it. */
        watcher_idle_event(loop, w, c->rbusy);
}

static void conn_wcb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    bl_conn *c = w->data;
    if (c->writer != NULL)
        watcher_wake(loop, w, &c->writer);
    else
        watcher_idle_event(loop, w, c->wbusy);  /* as in conn_rcb */
}

static bl_conn *conn_alloc(int fd)
{
    bl_conn *c = aligned_alloc(_Alignof(bl_conn), sizeof *c);
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof *c);
    ev_io_init(&c->rio, conn_rcb, fd, EV_READ);
    c->rio.data = NULL;     /* bound by the first wait */
    ev_io_init(&c->wio, conn_wcb, fd, EV_WRITE);
    c->wio.data = c;
    return c;
}

/* The descriptor of a connection made by conn_alloc(-1). */
static void conn_set_fd(bl_conn *c, int fd)
{
    ev_io_set(&c->rio, fd, EV_READ);
    ev_io_set(&c->wio, fd, EV_WRITE);
}

static void conn_free(bl_conn *c)
{
    free(c->rbuf);
    free(c);
}

/* Stop c's watchers and untie it from its scheduler (see bl__tie). */
static void conn_untie(bl__tie *t)
{
    bl_conn *c = (bl_conn *)((char *)t - offsetof(bl_conn, tie));
    bl_sched *s = conn_sched(c);
    if (s == NULL)
        return;
    watcher_stop(s->loop, &c->rio, c->reader);
    watcher_stop(s->loop, &c->wio, c->writer);
    c->rio.data = NULL;
    c->reader = c->writer = NULL;
    bl__tie_del(t);
}

/* A closed connection is freed once no thread is inside a call on it, by
 * that call, by bl_close() or, for connections of bl_serve(), once the
 * handler has returned (serve_conn()). */
static inline int conn_unused(const bl_conn *c)
{
    return !c->rbusy && !c->wbusy && c->serve_h == NULL;
}

/* A wait on a connection or listener got BL__EWATCH (libev could not watch
 * it): pause before the caller retries, as the object's waiter (*slot), so
 * that closing the object (*closed) ends the pause. */
static __attribute__((noinline)) int
waiter_watch_retry(const unsigned char *closed, bl_thread **slot,
                   bl_thread *self, const char *what, double deadline)
{
    if (*closed)
        return EBADF;
    *slot = self;
    int err = bl__watch_retry(self, what, deadline);
    if (!*closed)
        *slot = NULL;
    return err;
}

/* Park until c is readable (write = 0) or writable (write = 1), at most
 * until `deadline` (< 0: none). Inlined, with the switch, into each call
 * that waits: see switch.h. */
static inline __attribute__((always_inline)) int
conn_wait(bl_conn *c, bl_thread *self, int write, double deadline)
{
    if (c->closed)
        return EBADF;
    bl_sched *s = self->sched;
    if (BL_UNLIKELY(conn_sched(c) != s)) {
        if (conn_sched(c) != NULL)
            return EXDEV;
        c->rio.data = s;
        bl__tie_add(s, &c->tie, conn_untie);
    }
    ev_io *w = write ? &c->wio : &c->rio;
    bl_thread **slot = write ? &c->writer : &c->reader;
    *slot = self;
    watcher_arm(s->loop, w);
    const char *what = write ? "bl_send" : "bl_recv";
    int err = BL_LIKELY(deadline < 0)
                  ? park(s, self, what, -1)
                  : bl__park(self, what, bl__remaining(s, deadline));
    if (!c->closed)
        watcher_leave(s->loop, slot);
    if (BL_UNLIKELY(err == BL__EWATCH))
        err = waiter_watch_retry(&c->closed, slot, self, what, deadline);
    /* Closed while we waited, also after a timeout woke us but before we
     * ran: say so, or a caller that retries after ETIMEDOUT would use c,
     * which is freed as this call returns. */
    if (BL_UNLIKELY(c->closed) && err != ECANCELED)
        err = EBADF;
    return err;
}

/* Common entry checks of blocking connection calls; marks c busy for
 * reading (write = 0) or writing (write = 1). */
static inline __attribute__((always_inline)) bl_thread *
conn_enter(bl_conn *c, int write)
{
    bl_thread *self = bl__self_or_eperm();
    if (self == NULL)
        return NULL;
    if (c == NULL) {
        errno = EINVAL;
        return NULL;
    }
    if (c->closed) {
        errno = EBADF;
        return NULL;
    }
    if (self->flags & BL_F_CANCELLED) {
        errno = ECANCELED;
        return NULL;
    }
    unsigned char *busy = write ? &c->wbusy : &c->rbusy;
    if (*busy) {
        errno = EBUSY;
        return NULL;
    }
    *busy = 1;
    return self;
}

static inline void conn_exit(bl_conn *c, unsigned char *busy)
{
    *busy = 0;
    if (BL_UNLIKELY(c->closed) && conn_unused(c))
        conn_free(c);
}

/* The deadline of a call that starts now (-1: none). */
static inline double conn_deadline(const bl_conn *c, const bl_thread *self)
{
    return BL_UNLIKELY(c->timed) ? bl__deadline(self->sched, c->timeout) : -1;
}

/* One read into buf, waiting as needed. Returns the count (0 at EOF) or -1. */
static inline __attribute__((always_inline)) ssize_t
read_some(bl_conn *c, bl_thread *self, void *buf, size_t len, double deadline)
{
    int last_try = 0;
    for (;;) {
        /* A thread of another scheduler may not wait, but may take what is
         * there: it reads even when the last read was short. */
        if (!c->drained || BL_UNLIKELY(conn_sched(c) != self->sched &&
                                       conn_sched(c) != NULL)) {
            ssize_t r = c->notsock ? read(c->rio.fd, buf, len)
                                   : recv(c->rio.fd, buf, len, 0);
            if (r >= 0) {
                c->drained = (size_t)r < len;
                return r;
            }
            if (errno == ENOTSOCK) {
                c->notsock = 1;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
        }
        c->drained = 0;
        int err = conn_wait(c, self, 0, deadline);
        if (BL_UNLIKELY(err == ETIMEDOUT) && !last_try) {
            /* Read once more before failing: bytes may be there although
             * the timer won (it fires in the same poll as the data), or we
             * did not read at all (the last read was short). */
            last_try = 1;
            continue;
        }
        if (err != 0) {
            errno = err;
            return -1;
        }
    }
}

/* write(2) to a pipe or terminal without raising SIGPIPE, which has no
 * MSG_NOSIGNAL: the signal is blocked in this OS thread around the write,
 * and one the write raised (EPIPE) is taken before unblocking, unless it
 * was pending already. */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    int was_pending = sigpending(&pending) == 0 &&
                      sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t r = write(fd, buf, len);
    int e = errno;
    if (r < 0 && e == EPIPE && !was_pending) {
        static const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return r;
}

static inline __attribute__((always_inline)) ssize_t
write_some(bl_conn *c, bl_thread *self, const void *buf, size_t len,
           double deadline)
{
    for (;;) {
        ssize_t r = c->notsock ? write_nosigpipe(c->rio.fd, buf, len)
                               : send(c->rio.fd, buf, len, MSG_NOSIGNAL);
        if (r >= 0)
            return r;
        if (errno == ENOTSOCK) {
            c->notsock = 1;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        int err = conn_wait(c, self, 1, deadline);
        if (err != 0) {
            errno = err;
            return -1;
        }
    }
}

bl_conn *bl_conn_new(int fd)
{
    if (fd < 0) {
        errno = EINVAL;
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return NULL;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    bl_conn *c = conn_alloc(fd);
    if (c == NULL)
        errno = ENOMEM;
    return c;
}

int bl_conn_fd(const bl_conn *c)
{
    if (c == NULL) {
        errno = EINVAL;
        return -1;
    }
    return c->rio.fd;
}

int bl_conn_set_timeout(bl_conn *c, double seconds)
{
    if (c == NULL || isnan(seconds) || seconds < 0) {
        errno = EINVAL;
        return -1;
    }
    c->timeout = isinf(seconds) ? 0 : seconds;
    c->timed = c->timeout > 0;
    return 0;
}

/* rstart or rend moved: keep the flag that bl_recv() checks in step. */
static inline void rbuf_moved(bl_conn *c)
{
    if (c->rstart == c->rend)
        c->rstart = c->rend = 0;
    c->buffered = c->rend > c->rstart;
}

static __attribute__((noinline)) size_t
take_buffered(bl_conn *c, void *buf, size_t len)
{
    size_t n = c->rend - c->rstart;
    if (n > len)
        n = len;
    memcpy(buf, c->rbuf + c->rstart, n);
    c->rstart += n;
    rbuf_moved(c);
    return n;
}

ssize_t bl_recv(bl_conn *c, void *buf, size_t len)
{
    if (buf == NULL && len > 0) {
        errno = EINVAL;
        return -1;
    }
    bl_thread *self = conn_enter(c, 0);
    if (self == NULL)
        return -1;
    ssize_t r;
    if (BL_UNLIKELY(c->buffered))
        r = len == 0 ? 0 : (ssize_t)take_buffered(c, buf, len);
    else if (len == 0 || c->eof)
        r = 0;
    else
        r = read_some(c, self, buf, len, conn_deadline(c, self));
    conn_exit(c, &c->rbusy);
    return r;
}

ssize_t bl_send(bl_conn *c, const void *buf, size_t len)
{
    if (buf == NULL && len > 0) {
        errno = EINVAL;
        return -1;
    }
    bl_thread *self = conn_enter(c, 1);
    if (self == NULL)
        return -1;
    ssize_t r = len == 0 ? 0
                         : write_some(c, self, buf, len, conn_deadline(c, self));
    conn_exit(c, &c->wbusy);
    return r;
}

int bl_sendall(bl_conn *c, const void *buf, size_t len)
{
    if (buf == NULL && len > 0) {
        errno = EINVAL;
        return -1;
    }
    bl_thread *self = conn_enter(c, 1);
    if (self == NULL)
        return -1;
    double deadline = conn_deadline(c, self);
    const char *p = buf;
    int rc = 0;
    while (len > 0) {
        ssize_t r = write_some(c, self, p, len, deadline);
        if (r < 0) {
            rc = -1;
            break;
        }
        p += r;
        len -= (size_t)r;
    }
    conn_exit(c, &c->wbusy);
    return rc;
}

ssize_t bl_readline(bl_conn *c, char *buf, size_t cap)
{
    return bl_readuntil(c, buf, cap, "\n", 1);
}

/* Make room to read at least one more byte into c->rbuf. */
static int rbuf_room(bl_conn *c)
{
    if (c->rend < c->rcap)
        return 0;
    if (c->rstart > 0) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
        if (c->rend < c->rcap)
            return 0;
    }
    size_t cap = c->rcap ? c->rcap * 2 : 16384;
    char *p = realloc(c->rbuf, cap);
    if (p == NULL)
        return -1;
    c->rbuf = p;
    c->rcap = cap;
    return 0;
}

ssize_t bl_readuntil(bl_conn *c, char *buf, size_t cap, const void *delim,
                     size_t dlen)
{
    if (buf == NULL || cap < 2 || delim == NULL || dlen == 0) {
        errno = EINVAL;
        return -1;
    }
    bl_thread *self = conn_enter(c, 0);
    if (self == NULL)
        return -1;
    double deadline = conn_deadline(c, self);
    ssize_t result;
    /* Bytes from rstart known to hold no delimiter. Per call: a call that
     * failed consumed nothing, and the next may look for another delimiter. */
    size_t scanned = 0;
    for (;;) {
        size_t avail = c->rend - c->rstart;
        size_t from = scanned >= dlen - 1 ? scanned - (dlen - 1) : 0;
        const char *base = c->rbuf != NULL ? c->rbuf + c->rstart : NULL;
        const char *hit = avail > from
            ? memmem(base + from, avail - from, delim, dlen) : NULL;
        size_t n;
        if (hit != NULL) {
            n = (size_t)(hit - base) + dlen;
        } else {
            scanned = avail;
            /* More than cap - 1 bytes cannot fit, delimiter or not; exactly
             * cap - 1 fit if the stream ends there, so read on to know. */
            if (avail > cap - 1) {
                errno = EMSGSIZE;
                result = -1;
                break;
            }
            if (!c->eof) {
                if (rbuf_room(c) < 0) {
                    errno = ENOMEM;
                    result = -1;
                    break;
                }
                ssize_t r = read_some(c, self, c->rbuf + c->rend,
                                      c->rcap - c->rend, deadline);
                if (r < 0) {
                    result = -1;
                    break;
                }
                if (r == 0)
                    c->eof = 1;
                c->rend += (size_t)r;
                rbuf_moved(c);
                continue;
            }
            n = avail;                    /* the rest, at end of stream */
        }
        if (n > cap - 1) {
            errno = EMSGSIZE;
            result = -1;
            break;
        }
        if (n > 0)
            memcpy(buf, base, n);
        buf[n] = '\0';
        c->rstart += n;
        rbuf_moved(c);
        result = (ssize_t)n;
        break;
    }
    conn_exit(c, &c->rbusy);
    return result;
}

int bl_shutdown(bl_conn *c, int how)
{
    if (c == NULL || c->closed) {
        errno = c == NULL ? EINVAL : EBADF;
        return -1;
    }
    if (shutdown(c->rio.fd, how) < 0)
        return -1;
    /* Make the threads waiting on the shut direction try their call again:
     * a Unix socket's poll does not report a writer's end (SHUT_WR) while
     * its buffer is full, so a blocked writer would wait on. Not from
     * another OS thread (the watchers are its scheduler's), nor during a
     * pause of bl__watch_retry() (the watcher is stopped; it retries soon). */
    bl_sched *s = conn_sched(c);
    if (s != NULL && !bl__foreign(s)) {
        if (how != SHUT_RD && c->writer != NULL && ev_is_active(&c->wio))
            watcher_wake(s->loop, &c->wio, &c->writer);
        if (how != SHUT_WR && c->reader != NULL && ev_is_active(&c->rio))
            watcher_wake(s->loop, &c->rio, &c->reader);
    }
    return 0;
}

int bl_close(bl_conn *c)
{
    if (c == NULL || c->closed) {
        errno = EINVAL;
        return -1;
    }
    /* Its watchers are in the loop of a scheduler running in another OS
     * thread: that thread alone may stop them. */
    if (bl__foreign(conn_sched(c))) {
        errno = EXDEV;
        return -1;
    }
    c->closed = 1;
    bl_thread *reader = c->reader, *writer = c->writer;
    conn_untie(&c->tie);
    int rc = close(c->rio.fd);
    int saved = errno;
    if (reader != NULL)
        bl__wake(reader, EBADF);
    if (writer != NULL)
        bl__wake(writer, EBADF);
    c->reader = c->writer = NULL;
    if (conn_unused(c))
        conn_free(c);
    errno = saved;
    return rc == 0 || errno == EINTR ? 0 : -1;
}

/* ---- name resolution ---- */

static int gai_errno(int rc, int sys_errno)
{
    switch (rc) {
    case EAI_AGAIN:
        return EAGAIN;
    case EAI_MEMORY:
        return ENOMEM;
    case EAI_SYSTEM:
        return sys_errno != 0 ? sys_errno : EIO;
    default:
        return EADDRNOTAVAIL;
    }
}

static void set_resolve_error(int rc, const char *host)
{
    snprintf(resolve_msg, sizeof resolve_msg, "%s: %s", host ? host : "",
             gai_strerror(rc));
}

struct gai_job {
    bl__pool_job job;       /* first: the pool frees the whole struct */
    char *host;
    char port[8];
    struct addrinfo hints;
    struct addrinfo *res;
    int rc;
    int sys_errno;
};

static void gai_run(void *arg)
{
    struct gai_job *g = arg;
    g->rc = getaddrinfo(g->host, g->port, &g->hints, &g->res);
    g->sys_errno = errno;
}

static void gai_abandon(void *arg)
{
    struct gai_job *g = arg;
    if (g->res != NULL)
        freeaddrinfo(g->res);
    free(g->host);
}

/* Resolve host:port for a stream socket. Numeric addresses are converted at
 * once; names go to the pool when called from a green thread (self != NULL),
 * for at most until `deadline` (-1: none), else are resolved here. Returns 0
 * or an errno (ETIMEDOUT, ECANCELED: the lookup is abandoned). */
static int resolve(const char *host, int port, int passive,
                   struct addrinfo **res, bl_thread *self, double deadline)
{
    resolve_msg[0] = '\0';     /* a message is about this call only */
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : AI_ADDRCONFIG);
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo numeric = hints;
    numeric.ai_flags |= AI_NUMERICHOST;
    numeric.ai_flags &= ~AI_ADDRCONFIG;
    int rc = getaddrinfo(host, ps, &numeric, res);
    if (rc == 0)
        return 0;
    if (rc != EAI_NONAME) {
        set_resolve_error(rc, host);
        return gai_errno(rc, errno);
    }
    if (self == NULL) {
        rc = getaddrinfo(host, ps, &hints, res);
        if (rc != 0) {
            set_resolve_error(rc, host);
            return gai_errno(rc, errno);
        }
        return 0;
    }
    struct gai_job *g = calloc(1, sizeof *g);
    if (g == NULL || (g->host = strdup(host)) == NULL) {
        free(g);
        return ENOMEM;
    }
    memcpy(g->port, ps, sizeof ps);
    g->hints = hints;
    g->job.fn = gai_run;
    g->job.arg = g;
    g->job.abandon = gai_abandon;
    int err = bl__pool_run(&g->job, bl__remaining(self->sched, deadline));
    if (err != 0)
        return err; /* abandoned: the pool frees g */
    rc = g->rc;
    *res = g->res;
    int sys = g->sys_errno;
    free(g->host);
    free(g);
    if (rc != 0) {
        set_resolve_error(rc, host);
        return gai_errno(rc, sys);
    }
    return 0;
}

/* ---- listeners ---- */

static void listener_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    bl_listener *l = w->data;
    if (l->waiter != NULL)
        watcher_wake(loop, w, &l->waiter);
    else
        watcher_idle_event(loop, w, 0);
}

static bl_listener *listener_new(int fd)
{
    bl_listener *l = calloc(1, sizeof *l);
    if (l == NULL) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    l->fd = fd;
    l->port = -1;
    ev_io_init(&l->io, listener_cb, fd, EV_READ);
    l->io.data = l;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            l->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return l;
}

/* socket + bind + listen one address; returns the fd or -1 with errno. */
static int listen_addr(const struct sockaddr *sa, socklen_t len, int backlog,
                       int dual)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, zero = 0;
    if (sa->sa_family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (dual)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

bl_listener *bl_listen(const char *host, int port, int backlog)
{
    resolve_msg[0] = '\0';     /* also when no name is looked up */
    if (port < 0 || port > 65535) {
        errno = EINVAL;
        return NULL;
    }
    if (backlog <= 0)
        backlog = SOMAXCONN;
    int fd;
    if (host == NULL || host[0] == '\0') {
        struct sockaddr_in6 a6;
        memset(&a6, 0, sizeof a6);
        a6.sin6_family = AF_INET6;
        a6.sin6_addr = in6addr_any;
        a6.sin6_port = htons((uint16_t)port);
        fd = listen_addr((struct sockaddr *)&a6, sizeof a6, backlog, 1);
        if (fd < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
            struct sockaddr_in a4;
            memset(&a4, 0, sizeof a4);
            a4.sin_family = AF_INET;
            a4.sin_addr.s_addr = htonl(INADDR_ANY);
            a4.sin_port = htons((uint16_t)port);
            fd = listen_addr((struct sockaddr *)&a4, sizeof a4, backlog, 0);
        }
        if (fd < 0)
            return NULL;
        return listener_new(fd);
    }
    struct addrinfo *res = NULL;
    int err = resolve(host, port, 1, &res, NULL, -1);
    if (err != 0) {
        errno = err;
        return NULL;
    }
    fd = -1;
    err = EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = listen_addr(ai->ai_addr, ai->ai_addrlen, backlog, 0);
        if (fd < 0)
            err = errno;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        errno = err;
        return NULL;
    }
    return listener_new(fd);
}

static int unix_addr(struct sockaddr_un *sa, const char *path)
{
    if (path == NULL || path[0] == '\0')
        return EINVAL;
    size_t n = strlen(path);
    if (n >= sizeof sa->sun_path)
        return ENAMETOOLONG;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, n + 1);
    return 0;
}

bl_listener *bl_listen_unix(const char *path, int backlog)
{
    struct sockaddr_un sa;
    int err = unix_addr(&sa, path);
    if (err != 0) {
        errno = err;
        return NULL;
    }
    int fd = listen_addr((struct sockaddr *)&sa, sizeof sa,
                         backlog <= 0 ? SOMAXCONN : backlog, 0);
    if (fd < 0)
        return NULL;
    return listener_new(fd);
}

int bl_listener_port(const bl_listener *l)
{
    if (l == NULL || l->port < 0) {
        errno = EINVAL;
        return -1;
    }
    return l->port;
}

int bl_listener_fd(const bl_listener *l)
{
    if (l == NULL) {
        errno = EINVAL;
        return -1;
    }
    return l->fd;
}

int bl_listener_set_timeout(bl_listener *l, double seconds)
{
    if (l == NULL || isnan(seconds) || seconds < 0) {
        errno = EINVAL;
        return -1;
    }
    l->timeout = isinf(seconds) ? 0 : seconds;
    return 0;
}

/* Stop l's watcher and untie it from its scheduler (see bl__tie). */
static void listener_untie(bl__tie *t)
{
    bl_listener *l = (bl_listener *)((char *)t - offsetof(bl_listener, tie));
    if (l->s == NULL)
        return;
    watcher_stop(l->s->loop, &l->io, l->waiter);
    l->s = NULL;
    l->waiter = NULL;
    bl__tie_del(t);
}

/* Waiting ties l to the waiter's scheduler (see bl_conn_new()); a thread of
 * another scheduler may only take what is queued. 0, or -1 for EXDEV. */
static int listener_bind(bl_listener *l, bl_thread *self)
{
    if (l->s == NULL) {
        l->s = self->sched;
        bl__tie_add(l->s, &l->tie, listener_untie);
    }
    return l->s == self->sched ? 0 : -1;
}

static void listener_leave(bl_listener *l)
{
    if (--l->users == 0 && l->closed)
        free(l);
}

static void tune_tcp(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

bl_conn *bl_accept(bl_listener *l)
{
    bl_thread *self = bl__self_or_eperm();
    if (self == NULL)
        return NULL;
    if (l == NULL) {
        errno = EINVAL;
        return NULL;
    }
    if (l->closed) {
        errno = EBADF;
        return NULL;
    }
    if (l->accepting) {
        errno = EBUSY;
        return NULL;
    }
    int err;
    l->users++;
    l->accepting = 1;
    double deadline = call_deadline(self->sched, l->timeout);
    double pause = 0.01;
    bl_conn *c = NULL;
    for (;;) {
        if (self->flags & BL_F_CANCELLED) {
            err = ECANCELED;
            break;
        }
        /* The connection's memory first: out of memory, the connection
         * stays queued (as out of descriptors), instead of being accepted
         * and dropped. */
        if (BL_UNLIKELY(c == NULL) && (c = conn_alloc(-1)) == NULL) {
            err = ENOMEM;
        } else {
            int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                if (l->port >= 0)
                    tune_tcp(fd);
                conn_set_fd(c, fd);
                err = 0;
                break;
            }
            err = errno;
        }
        if (err == EINTR || err == ECONNABORTED || err == EPROTO)
            continue;
        if ((err == EAGAIN || err == EWOULDBLOCK ||
             err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) &&
            listener_bind(l, self) != 0) {
            err = EXDEV;
            break;
        }
        if (err == EAGAIN || err == EWOULDBLOCK) {
            l->waiter = self;
            watcher_arm(l->s->loop, &l->io);
            err = bl__park(self, "bl_accept", bl__remaining(l->s, deadline));
            if (!l->closed)
                watcher_leave(l->s->loop, &l->waiter);
            if (BL_UNLIKELY(err == BL__EWATCH))
                err = waiter_watch_retry(&l->closed, &l->waiter, self,
                                         "bl_accept", deadline);
            if (l->closed && err != ECANCELED)
                err = EBADF;    /* also after a timeout, as in conn_wait() */
            if (err != 0)
                break;
            continue;
        }
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            /* Out of descriptors or memory: the connection stays queued;
             * pause instead of spinning on a listener that stays readable.
             * Parked as the listener's waiter, so that bl_listener_close()
             * wakes us, but with its watcher stopped, so that the readable
             * listener does not end the pause at once. */
            double left = bl__remaining(l->s, deadline);
            double wait = left >= 0 && left < pause ? left : pause;
            watcher_stop(l->s->loop, &l->io, NULL);
            l->waiter = self;
            err = bl__park(self, "bl_accept (out of descriptors)", wait);
            if (!l->closed)
                l->waiter = NULL;
            if (err == ETIMEDOUT && (left < 0 || left > pause))
                err = 0;
            if (l->closed && err != ECANCELED)
                err = EBADF;
            if (err != 0)
                break;
            if (pause < 1.0)
                pause *= 2;
            continue;
        }
        break;
    }
    l->accepting = 0;
    listener_leave(l);
    if (err != 0) {
        if (c != NULL)
            conn_free(c);
        errno = err;
        return NULL;
    }
    return c;
}

int bl_listener_close(bl_listener *l)
{
    if (l == NULL || l->closed) {
        errno = EINVAL;
        return -1;
    }
    if (bl__foreign(l->s)) {        /* as in bl_close() */
        errno = EXDEV;
        return -1;
    }
    l->closed = 1;
    bl_thread *waiter = l->waiter;
    listener_untie(&l->tie);
    close(l->fd);
    if (waiter != NULL)
        bl__wake(waiter, EBADF);
    l->waiter = NULL;
    if (l->users == 0)
        free(l);
    return 0;
}

/* ---- connecting ---- */

/* Wait for the connect() in progress on c to end: 0, or why it failed. */
static int connect_wait(bl_conn *c, bl_thread *self, double deadline)
{
    for (;;) {
        int err = conn_wait(c, self, 1, deadline);
        if (err != 0)
            return err;
        /* A wake-up is not proof that the connect ended (see
         * bl__watch_retry()), and SO_ERROR is 0 while it is in progress:
         * an ended connect makes the socket writable (or hung up). */
        struct pollfd p = {.fd = c->wio.fd, .events = POLLOUT};
        if (poll(&p, 1, 0) < 0)
            return errno;
        if (p.revents == 0)
            continue;
        socklen_t el = sizeof err;
        if (getsockopt(c->wio.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        return err;
    }
}

/* Connect a fresh non-blocking socket to one address. Returns the connection
 * or NULL with errno. */
static bl_conn *connect_addr(bl_thread *self, const struct sockaddr *sa,
                             socklen_t len, double deadline)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    bl_conn *c = conn_alloc(fd);
    if (c == NULL) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    int err = 0;
    double pause = 0.001;
    for (;;) {
        if (connect(fd, sa, len) == 0) {
            err = 0;    /* perhaps after waiting out a full backlog */
            break;
        }
        err = errno;
        if (err == EINTR)
            continue;
        if (err == EINPROGRESS) {
            err = connect_wait(c, self, deadline);
            break;
        }
        if (err == EAGAIN && sa->sa_family == AF_UNIX) {
            /* A Unix listener's backlog is full: retry shortly, or fail
             * with ETIMEDOUT at the deadline. */
            double left = bl__remaining(self->sched, deadline);
            if (left == 0) {
                err = ETIMEDOUT;
                break;
            }
            err = bl__park(self, "bl_connect", left > 0 && left < pause ? left : pause);
            if (err != ETIMEDOUT)
                break;
            if (pause < 0.1)
                pause *= 2;
            continue;
        }
        break;
    }
    if (err != 0) {
        conn_untie(&c->tie);
        close(fd);
        conn_free(c);
        errno = err;
        return NULL;
    }
    if (sa->sa_family != AF_UNIX)
        tune_tcp(fd);
    return c;
}

bl_conn *bl_connect_timeout(const char *host, int port, double timeout)
{
    resolve_msg[0] = '\0';     /* also when no name is looked up */
    bl_thread *self = bl__self_or_eperm();
    if (self == NULL)
        return NULL;
    if (host == NULL || port <= 0 || port > 65535 || isnan(timeout)) {
        errno = EINVAL;
        return NULL;
    }
    if (self->flags & BL_F_CANCELLED) {
        errno = ECANCELED;
        return NULL;
    }
    double deadline = timeout > 0 && !isinf(timeout)
                          ? bl__deadline(self->sched, timeout) : -1;
    struct addrinfo *res = NULL;
    int err = resolve(host, port, 0, &res, self, deadline);
    if (err != 0) {
        errno = err;
        return NULL;
    }
    bl_conn *c = NULL;
    err = EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        c = connect_addr(self, ai->ai_addr, ai->ai_addrlen, deadline);
        if (c != NULL)
            break;
        err = errno;
        /* ETIMEDOUT may be the kernel's (no answer to the SYN): then the
         * next address may still answer. */
        if (err == ECANCELED ||
            (err == ETIMEDOUT && deadline >= 0 &&
             bl__remaining(self->sched, deadline) == 0))
            break;
    }
    freeaddrinfo(res);
    if (c == NULL)
        errno = err;
    return c;
}

bl_conn *bl_connect(const char *host, int port)
{
    return bl_connect_timeout(host, port, -1);
}

bl_conn *bl_connect_unix_timeout(const char *path, double timeout)
{
    bl_thread *self = bl__self_or_eperm();
    if (self == NULL)
        return NULL;
    struct sockaddr_un sa;
    int err = isnan(timeout) ? EINVAL : unix_addr(&sa, path);
    if (err == 0 && (self->flags & BL_F_CANCELLED))
        err = ECANCELED;
    if (err != 0) {
        errno = err;
        return NULL;
    }
    double deadline = timeout > 0 && !isinf(timeout)
                          ? bl__deadline(self->sched, timeout) : -1;
    return connect_addr(self, (struct sockaddr *)&sa, sizeof sa, deadline);
}

bl_conn *bl_connect_unix(const char *path)
{
    return bl_connect_unix_timeout(path, -1);
}

/* ---- bl_serve ---- */

struct serve {
    bl_listener *l;
    bl_handler h;
    void *arg;
};

/* The handler has returned or called bl_exit(). It may have closed c
 * itself: bl_close() leaves connections of bl_serve() for us to free. */
static void serve_done(void *p)
{
    bl_conn *c = p;
    c->serve_h = NULL;
    if (!c->closed)
        bl_close(c);
    else if (conn_unused(c))
        conn_free(c);
}

static void *serve_conn(void *p)
{
    bl_conn *c = p;
    bl_thread *self = bl_self();
    self->on_exit = serve_done;
    c->serve_h(c, c->serve_arg);
    self->on_exit = NULL;
    serve_done(c);
    return NULL;
}

static void *serve_accept(void *p)
{
    struct serve *sv = p;
    bl_spawn_opts o = {.size = sizeof o, .detached = 1};
    for (;;) {
        bl_conn *c = bl_accept(sv->l);
        if (c == NULL) {
            int e = errno;
            if (e == ETIMEDOUT)     /* the listener's own timeout */
                continue;
            if (e == ECANCELED || e == EBADF || e == EXDEV || e == EBUSY ||
                e == EINVAL || e == ENOTSOCK)
                break;              /* we cannot accept on l */
            /* Out of descriptors or memory (bl_accept() has paused already),
             * a connection that failed, a firewall's EPERM: go on, but never
             * spin. */
            if (bl_sleep(0.001) < 0 && errno == ECANCELED)
                break;
            continue;
        }
        c->serve_h = sv->h;
        c->serve_arg = sv->arg;
        if (bl_spawn_ex(NULL, serve_conn, c, &o) == NULL) {
            c->serve_h = NULL;      /* no handler to free it: bl_close() does */
            bl_close(c);
            if (bl_sleep(0.01) < 0 && errno == ECANCELED)
                break;
        }
    }
    if (!sv->l->closed)
        bl_listener_close(sv->l);
    listener_leave(sv->l);
    free(sv);
    return NULL;
}

bl_thread *bl_serve_listener(bl_sched *s, bl_listener *l, bl_handler h,
                             void *arg)
{
    if (l == NULL) {
        errno = EINVAL;
        return NULL;
    }
    /* Tied to another scheduler: an acceptor on s could never wait on l,
     * and once that scheduler runs in another OS thread, could not close it
     * either (both EXDEV): l would leak. */
    bl_sched *target = s != NULL ? s : bl__cur;
    if (l->s != NULL && l->s != target) {
        errno = EXDEV;
        return NULL;
    }
    if (h == NULL || (s == NULL && bl_self() == NULL)) {
        bl_listener_close(l);
        errno = EINVAL;
        return NULL;
    }
    struct serve *sv = malloc(sizeof *sv);
    if (sv == NULL) {
        bl_listener_close(l);
        errno = ENOMEM;
        return NULL;
    }
    sv->l = l;
    sv->h = h;
    sv->arg = arg;
    char name[32];
    if (l->port >= 0)
        snprintf(name, sizeof name, "bl_serve :%d", l->port);
    else
        snprintf(name, sizeof name, "bl_serve unix");
    bl_spawn_opts o = {.size = sizeof o, .name = name};
    bl_thread *t = bl_spawn_ex(s, serve_accept, sv, &o);
    if (t == NULL) {
        int e = errno;
        bl_listener_close(l);
        free(sv);
        errno = e;
        return NULL;
    }
    /* The acceptor holds l, so that it outlives a bl_listener_close() made
     * by someone else (which wakes its bl_accept() with EBADF) until the
     * acceptor is done with it. */
    l->users++;
    return t;
}

bl_thread *bl_serve(bl_sched *s, const char *host, int port, bl_handler h,
                    void *arg)
{
    if (h == NULL || (s == NULL && bl_self() == NULL)) {
        errno = EINVAL;
        return NULL;
    }
    bl_listener *l = bl_listen(host, port, 0);
    if (l == NULL)
        return NULL;
    return bl_serve_listener(s, l, h, arg);
}
