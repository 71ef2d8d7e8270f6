/* SPDX-License-Identifier: MIT */
/*
 * echo_plain.c - a TCP echo server with plain blocking sockets, no bluelet.
 *
 *   usage: echo_plain [port]        (default port 4915; 0 picks a free one)
 *
 * This is the simplest possible server, and the one green threads improve
 * on: it serves one client at a time. While a client is connected, everyone
 * else waits in the listen queue. Compare with echo_libev.c (callbacks, many
 * clients, inside-out code) and echo_simple.c (green threads: many clients,
 * code as straight as this one).
 *
 * Try it:  ./echo_plain &  then  nc 127.0.0.1 4915  in two terminals.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_PORT 4915

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [port]\n"
                    "  Echo back whatever clients send, one client at a time.\n"
                    "  port defaults to %d; 0 picks a free port.\n",
            prog, DEFAULT_PORT);
}

/* Parse a port number 0..65535; returns -1 for anything else. */
static int parse_port(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 65535)
        return -1;
    return (int)v;
}

/* Write all of buf, resuming after partial writes and signals. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        /* MSG_NOSIGNAL: a client that went away gives EPIPE, not SIGPIPE. */
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Echo until the client closes its side (or the connection fails). */
static void serve_client(int fd)
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            break;                  /* the client is done */
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;                  /* reset by the peer, ... */
        }
        if (write_all(fd, buf, (size_t)n) < 0)
            break;
    }
}

int main(int argc, char **argv)
{
    int port = DEFAULT_PORT;
    if (argc > 2 || (argc == 2 && (port = parse_port(argv[1])) < 0)) {
        usage(argv[0]);
        return 2;
    }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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
        fprintf(stderr, "echo_plain: port %d: %s\n", port, strerror(errno));
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("echo_plain: listening on port %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("accept");
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                sleep(1);           /* out of resources: do not spin */
                continue;
            }
            return 1;
        }
        serve_client(fd);           /* everyone else waits meanwhile */
        close(fd);
    }
}
