/* SPDX-License-Identifier: MIT */
/*
 * echo_libev.c - a TCP echo server written directly on libev callbacks.
 *
 *   usage: echo_libev [port]        (default port 4915; 0 picks a free one)
 *
 * This is the "asyncore" version of the echo server: no threads of any kind,
 * just non-blocking sockets and callbacks that libev calls when a socket is
 * ready. It serves any number of clients at once, but the control flow is
 * turned inside out: what echo_simple.c writes as a loop
 *
 *     while ((n = bl_recv(c, buf, sizeof buf)) > 0)
 *         bl_sendall(c, buf, n);
 *
 * becomes a state machine here (the "pending output" state below), split
 * over two callbacks. libbluelet runs on the same libev loop and does this
 * bookkeeping for you.
 *
 * It is also the baseline the benchmarks measure bluelet against, so it is
 * kept tight: on readiness it reads once and writes straight back; the write
 * watcher runs only while output is pending, and reading stops meanwhile, so
 * a client that does not read its echo cannot make the server buffer without
 * bound.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_PORT 4915
#define BUF_SIZE 65536

struct client {
    ev_io rio;              /* readable: read and echo */
    ev_io wio;              /* writable: flush pending output */
    size_t off, len;        /* pending output is buf[off, len) */
    char buf[BUF_SIZE];
};

/* The listener's watcher, and a timer that re-arms it after EMFILE. */
static ev_io accept_watcher;
static ev_timer accept_pause;

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [port]\n"
                    "  Echo back whatever clients send (libev callbacks).\n"
                    "  port defaults to %d; 0 picks a free port.\n",
            prog, DEFAULT_PORT);
}

static int parse_port(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 65535)
        return -1;
    return (int)v;
}

static void client_close(struct ev_loop *loop, struct client *c)
{
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    close(c->rio.fd);
    free(c);
}

/* Readable: read what is there and send it straight back. If the socket
 * takes only part of it, keep the rest and wait for writability instead of
 * reading more. */
static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct client *c = (struct client *)((char *)w - offsetof(struct client, rio));
    ssize_t n = recv(w->fd, c->buf, sizeof c->buf, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;                 /* spurious wake-up: wait again */
        client_close(loop, c);      /* end of stream, or an error */
        return;
    }
    ssize_t m = send(w->fd, c->buf, (size_t)n, MSG_NOSIGNAL);
    if (m == n)
        return;                     /* the common case: all sent */
    if (m < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            client_close(loop, c);
            return;
        }
        m = 0;
    }
    c->off = (size_t)m;
    c->len = (size_t)n;
    ev_io_stop(loop, &c->rio);
    ev_io_start(loop, &c->wio);
}

/* Writable (only watched while output is pending): flush, then read again. */
static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct client *c = (struct client *)((char *)w - offsetof(struct client, wio));
    ssize_t m = send(w->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (m < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            client_close(loop, c);
        return;
    }
    c->off += (size_t)m;
    if (c->off == c->len) {
        ev_io_stop(loop, &c->wio);
        ev_io_start(loop, &c->rio);
    }
}

static void on_accept_pause_over(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_io_start(loop, &accept_watcher);
}

/* The listener is readable: accept everything that is queued. */
static void on_acceptable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    for (int i = 0; i < 64; i++) {   /* bounded, to keep serving clients */
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* Out of descriptors: the listener stays readable, so stop
                 * watching it for a moment rather than spin on it. */
                perror("echo_libev: accept");
                ev_io_stop(loop, w);
                ev_timer_start(loop, &accept_pause);
            }
            return;                 /* EAGAIN: nothing more queued */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct client *c = malloc(sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        ev_io_init(&c->rio, on_readable, fd, EV_READ);
        ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
        ev_io_start(loop, &c->rio);
    }
}

int main(int argc, char **argv)
{
    int port = DEFAULT_PORT;
    if (argc > 2 || (argc == 2 && (port = parse_port(argv[1])) < 0)) {
        usage(argv[0]);
        return 2;
    }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        perror("socket");
        return 1;
    }
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {
        .sin_family = AF_INET,
        .sin_port = htons((uint16_t)port),
        .sin_addr.s_addr = htonl(INADDR_ANY),
    };
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(lfd, SOMAXCONN) < 0) {
        fprintf(stderr, "echo_libev: port %d: %s\n", port, strerror(errno));
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("echo_libev: listening on port %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    struct ev_loop *loop = EV_DEFAULT;
    ev_io_init(&accept_watcher, on_acceptable, lfd, EV_READ);
    ev_io_start(loop, &accept_watcher);
    ev_timer_init(&accept_pause, on_accept_pause_over, 0.1, 0.);
    ev_run(loop, 0);                /* runs as long as the listener does */
    return 0;
}
