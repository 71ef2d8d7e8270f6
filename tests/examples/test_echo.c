/* SPDX-License-Identifier: MIT */
/*
 * test_echo.c - drives one of the echo server examples.
 *
 *   exdrv_echo [--slow] [--log] -- [EMULATOR...] ECHO_SERVER
 *
 * Starts the server on a free port (argument 0), then:
 *   - a ping-pong client checks small messages come back one by one;
 *   - several clients at once each stream a large pseudo-random payload in
 *     random-sized pieces while reading the echo (full duplex, so a server
 *     that mishandles partial writes or backpressure fails or hangs), and
 *     check every byte (two of them read only when they cannot send, through
 *     a small window, so the server's writes come up short); then
 *     half-close and expect the server to close;
 *   - the server still accepts a new client afterwards;
 *   - with --log, the server's output has a "connected: 127.0.0.1:P" and a
 *     "disconnected: 127.0.0.1:P (N bytes echoed)" line for each client;
 *   - bad arguments give exit status 2 and a usage message.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NCLIENTS 8

struct client {
    int port;
    int id;
    size_t size;
    int slow_reader;        /* small window, reads in small bites */
    int local_port;
    char error[256];
};

static int local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    return ntohs(a.sin_port);
}

/* Stream cl->size bytes through the server while reading the echo. */
static void *client_main(void *arg)
{
    struct client *cl = arg;
    unsigned char *data = malloc(cl->size), *echo = malloc(cl->size);
    if (data == NULL || echo == NULL) {
        snprintf(cl->error, sizeof cl->error, "out of memory");
        goto out;
    }
    h_fill_random(data, cl->size, (unsigned)cl->id + 1);
    int fd = h_connect_rcvbuf(cl->port, cl->slow_reader ? 8192 : 0);
    cl->local_port = local_port(fd);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    size_t sent = 0, got = 0;
    unsigned rnd = (unsigned)cl->id * 7919u + 1;
    double end = h_now() + (h_slow ? 90 : 60);
    while (got < cl->size) {
        if (h_now() > end) {
            snprintf(cl->error, sizeof cl->error,
                     "client %d: timed out with %zu of %zu bytes sent, %zu echoed",
                     cl->id, sent, cl->size, got);
            close(fd);
            goto out;
        }
        /* A slow reader only reads when it cannot send any more (or has
         * sent everything), so the server's output piles up unread. */
        int sending = sent < cl->size;
        struct pollfd p = {.fd = fd, .events = POLLIN | (sending ? POLLOUT : 0)};
        if (cl->slow_reader && sending)
            p.events = POLLOUT;
        int pr = poll(&p, 1, cl->slow_reader && sending ? 20 : 100);
        if (pr < 0 && errno != EINTR) {
            snprintf(cl->error, sizeof cl->error, "poll: %s", strerror(errno));
            close(fd);
            goto out;
        }
        if (pr == 0 && cl->slow_reader)
            p.revents = POLLIN;         /* stuck: read some */
        if (sent < cl->size && (p.revents & POLLOUT)) {
            rnd = rnd * 1103515245u + 12345u;
            size_t chunk = 1 + (rnd >> 8) % 30000;
            if (chunk > cl->size - sent)
                chunk = cl->size - sent;
            ssize_t n = send(fd, data + sent, chunk, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                snprintf(cl->error, sizeof cl->error, "client %d: send: %s",
                         cl->id, strerror(errno));
                close(fd);
                goto out;
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, echo + got, cl->size - got, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                snprintf(cl->error, sizeof cl->error,
                         "client %d: connection ended after %zu of %zu bytes: %s",
                         cl->id, got, cl->size, n == 0 ? "EOF" : strerror(errno));
                close(fd);
                goto out;
            }
            if (n > 0) {
                if (memcmp(echo + got, data + got, (size_t)n) != 0) {
                    snprintf(cl->error, sizeof cl->error,
                             "client %d: wrong bytes echoed at offset %zu",
                             cl->id, got);
                    close(fd);
                    goto out;
                }
                got += (size_t)n;
            }
        }
    }
    /* Half-close: the server must see end of stream and close its side. */
    shutdown(fd, SHUT_WR);
    char extra[16];
    ssize_t n = h_recv(fd, extra, sizeof extra, h_slow ? 30 : 10);
    if (n != 0)
        snprintf(cl->error, sizeof cl->error,
                 "client %d: expected the server to close after our "
                 "shutdown, got %zd (%s)", cl->id, n, n < 0 ? strerror(errno) : "data");
    close(fd);
out:
    free(data);
    free(echo);
    return NULL;
}

/* Small messages, one at a time, each echoed before the next is sent. */
static int ping_pong(int port, int rounds)
{
    int fd = h_connect(port);
    int lp = local_port(fd);
    for (int i = 0; i < rounds; i++) {
        char msg[64], back[64];
        int len = snprintf(msg, sizeof msg, "ping %d\n", i);
        h_send_all(fd, msg, (size_t)len);
        int got = 0;
        while (got < len) {
            ssize_t n = h_recv(fd, back + got, (size_t)(len - got), 10);
            h_check(n > 0, "ping-pong round %d: no echo (%s)", i,
                    n == 0 ? "EOF" : strerror(errno));
            got += (int)n;
        }
        h_check(memcmp(msg, back, (size_t)len) == 0,
                "ping-pong round %d: echoed \"%.*s\"", i, got, back);
    }
    close(fd);
    return lp;
}

static void check_usage(const char *bad1, const char *bad2, const char *bad3)
{
    const char *args[] = {bad1, bad2, bad3, NULL};
    char *out;
    int rc = h_run(args, 1, 60, &out);
    h_check(rc == 2, "with arguments \"%s %s %s\": exit status %d, expected 2",
            bad1, bad2 ? bad2 : "", bad3 ? bad3 : "", rc);
    h_check(strstr(out, "usage") != NULL, "no usage message for bad arguments:\n%s", out);
    free(out);
}

int main(int argc, char **argv)
{
    h_init(argc, argv, 110);

    check_usage("notaport", NULL, NULL);
    check_usage("70000", NULL, NULL);
    check_usage("1", "2", "3");   /* echo_simple takes a host; none more */
    h_ok("bad arguments give status 2 and a usage message");

    const char *args[] = {"0", NULL};
    h_child *srv = h_spawn(args, 0);
    int port = h_wait_port(srv, 30);
    h_ok("the server listens on port %d", port);

    int rounds = h_slow ? 20 : 100;
    int pp_port = ping_pong(port, rounds);
    h_ok("%d ping-pong rounds", rounds);

    struct client cl[NCLIENTS];
    pthread_t tid[NCLIENTS];
    size_t size = h_slow ? 128 * 1024 : 1024 * 1024;
    for (int i = 0; i < NCLIENTS; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].port = port;
        cl[i].id = i;
        cl[i].size = size + (size_t)i * 1000;   /* not all the same */
        cl[i].slow_reader = i < 2;
        if (cl[i].slow_reader)
            cl[i].size *= 4;
        h_check(pthread_create(&tid[i], NULL, client_main, &cl[i]) == 0,
                "pthread_create");
    }
    for (int i = 0; i < NCLIENTS; i++)
        pthread_join(tid[i], NULL);
    for (int i = 0; i < NCLIENTS; i++)
        h_check(cl[i].error[0] == '\0', "%s", cl[i].error);
    h_ok("%d concurrent clients, about %zu KiB each, echoed byte for byte",
         NCLIENTS, size / 1024);

    /* Still serving after all those disconnects. */
    ping_pong(port, 3);
    h_ok("a new client is served afterwards");

    if (h_log) {
        char line[128];
        snprintf(line, sizeof line, "connected: 127.0.0.1:%d\n", pp_port);
        h_check(h_wait_output(srv, line, 10), "no \"%s\" in the log", line);
        /* The exact count of ping bytes: "ping i\n" for i < rounds. */
        size_t pp_bytes = 0;
        for (int i = 0; i < rounds; i++)
            pp_bytes += (size_t)snprintf(NULL, 0, "ping %d\n", i);
        snprintf(line, sizeof line, "disconnected: 127.0.0.1:%d (%zu bytes echoed)\n",
                 pp_port, pp_bytes);
        h_check(h_wait_output(srv, line, 10), "no \"%s\" in the log", line);
        for (int i = 0; i < NCLIENTS; i++) {
            snprintf(line, sizeof line, "connected: 127.0.0.1:%d\n", cl[i].local_port);
            h_check(h_wait_output(srv, line, 10), "no \"%s\" in the log", line);
            snprintf(line, sizeof line,
                     "disconnected: 127.0.0.1:%d (%zu bytes echoed)\n",
                     cl[i].local_port, cl[i].size);
            h_check(h_wait_output(srv, line, 10), "no \"%s\" in the log", line);
        }
        h_ok("connects and disconnects logged with the peer's address");
    }

    h_stop_server(srv, "the echo server");

    if (strcmp(h_example_name(), "echo_simple") == 0) {
        /* echo_simple [port [host]]: the host is honoured. */
        const char *v4[] = {"0", "127.0.0.1", NULL};
        h_child *s4 = h_spawn(v4, 0);
        int p4 = h_wait_port(s4, 30);
        ping_pong(p4, 3);
        h_stop_server(s4, "echo_simple on 127.0.0.1");
        /* 192.0.2.1 (TEST-NET-1) is no address of this machine. */
        const char *bad[] = {"0", "192.0.2.1", NULL};
        char *out;
        int rc = h_run(bad, 1, 20, &out);
        h_check(rc == 1 && strstr(out, "192.0.2.1") == NULL &&
                    strstr(out, "echo_simple: port 0") != NULL,
                "listening on an address not ours: status %d, output:\n%s", rc, out);
        free(out);
        h_ok("the host argument is honoured (127.0.0.1 serves; 192.0.2.1 fails)");
    }
    printf("PASS\n");
    return 0;
}
