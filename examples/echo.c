/* SPDX-License-Identifier: MIT */
/*
 * echo.c - a bluelet echo server with its accept loop written out.
 *
 *   usage: echo [port]              (default port 4915; 0 picks a free one)
 *
 * What bl_serve() does, by hand: an acceptor green thread calls bl_accept()
 * and spawns a detached green thread for each connection. Each connection
 * thread logs when its client connects and disconnects, with the peer's
 * address, e.g.
 *
 *     connected: 127.0.0.1:51234
 *     disconnected: 127.0.0.1:51234 (12 bytes echoed)
 */
#define _GNU_SOURCE
#include <bluelet.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DEFAULT_PORT 4915

/* Format the peer of fd as "address:port" (IPv4-mapped IPv6 addresses are
 * shown as plain IPv4, IPv6 ones in brackets). */
static void peer_name(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            port = ntohs(a->sin6_port);
            if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
                inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], host, sizeof host);
            } else {
                char h6[INET6_ADDRSTRLEN];
                inet_ntop(AF_INET6, &a->sin6_addr, h6, sizeof h6);
                snprintf(out, cap, "[%s]:%d", h6, port);
                return;
            }
        }
    }
    snprintf(out, cap, "%s:%d", host, port);
}

/* One green thread per connection. */
static void *client_thread(void *arg)
{
    bl_conn *c = arg;
    char peer[INET6_ADDRSTRLEN + 16];
    peer_name(bl_conn_fd(c), peer, sizeof peer);
    printf("connected: %s\n", peer);

    char buf[16384];
    size_t total = 0;
    ssize_t n;
    while ((n = bl_recv(c, buf, sizeof buf)) > 0) {
        if (bl_sendall(c, buf, (size_t)n) < 0)
            break;
        total += (size_t)n;
    }
    if (n < 0)
        printf("error: %s: %s\n", peer, strerror(errno));
    printf("disconnected: %s (%zu bytes echoed)\n", peer, total);
    bl_close(c);
    return NULL;
}

/* The acceptor: one green thread that hands each connection to a new one. */
static void *acceptor(void *arg)
{
    bl_listener *l = arg;
    bl_spawn_opts opts = {.size = sizeof opts, .detached = 1};
    for (;;) {
        bl_conn *c = bl_accept(l);
        if (c == NULL) {
            if (errno == ECANCELED || errno == EBADF)
                break;              /* asked to stop */
            perror("bl_accept");    /* bl_accept already paused on EMFILE */
            continue;
        }
        if (bl_spawn_ex(NULL, client_thread, c, &opts) == NULL) {
            perror("bl_spawn");
            bl_close(c);
        }
    }
    bl_listener_close(l);
    return NULL;
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

int main(int argc, char **argv)
{
    int port = DEFAULT_PORT;
    if (argc > 2 || (argc == 2 && (port = parse_port(argv[1])) < 0)) {
        fprintf(stderr, "usage: %s [port]\n"
                        "  Echo back whatever clients send; log connections.\n"
                        "  port defaults to %d; 0 picks a free port.\n",
                argv[0], DEFAULT_PORT);
        return 2;
    }
    /* One line per event, even when stdout is a pipe or a file. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    bl_sched *s = bl_sched_new();
    if (s == NULL) {
        perror("bl_sched_new");
        return 1;
    }
    bl_listener *l = bl_listen(NULL, port, 0);
    if (l == NULL) {
        fprintf(stderr, "echo: port %d: %s\n", port, strerror(errno));
        bl_sched_free(s);
        return 1;
    }
    printf("echo: listening on port %d\n", bl_listener_port(l));

    if (bl_spawn(s, acceptor, l) == NULL) {
        perror("bl_spawn");
        return 1;
    }
    int rc = bl_sched_run(s);
    if (rc < 0)
        perror("bl_sched_run");
    bl_sched_free(s);
    return rc < 0 ? 1 : 0;
}
