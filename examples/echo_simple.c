/* SPDX-License-Identifier: MIT */
/*
 * echo_simple.c - the shortest bluelet echo server.
 *
 *   usage: echo_simple [port [host]]   (default port 4915; 0 picks a free
 *                                       one; default host: every address)
 *
 * bl_serve_listener() runs an acceptor green thread that starts one green
 * thread per connection running echoer(), and closes the connection when
 * echoer() returns. echoer() reads like the blocking code of echo_plain.c,
 * yet every client is served at once: bl_recv() and bl_sendall() suspend
 * only the calling green thread.
 *
 * (bl_serve(s, NULL, port, echoer, NULL) does the bl_listen() too; we listen
 * first ourselves only to print the port, which matters when it is 0.)
 */
#include <bluelet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PORT 4915

/* The whole per-connection logic. */
static void echoer(bl_conn *c, void *arg)
{
    (void)arg;
    char buf[4096];
    ssize_t n;
    while ((n = bl_recv(c, buf, sizeof buf)) > 0)
        if (bl_sendall(c, buf, (size_t)n) < 0)
            break;
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
    const char *host = NULL;   /* every address, v6 + v4 */
    if (argc > 3 || (argc >= 2 && (port = parse_port(argv[1])) < 0)) {
        fprintf(stderr, "usage: %s [port [host]]\n"
                        "  Echo back whatever clients send (bl_serve).\n"
                        "  port defaults to %d; 0 picks a free port.\n"
                        "  host (say 127.0.0.1 or ::1) defaults to every address.\n",
                argv[0], DEFAULT_PORT);
        return 2;
    }
    if (argc == 3)
        host = argv[2];

    bl_listener *l = bl_listen(host, port, 0);
    if (l == NULL) {
        fprintf(stderr, "echo_simple: port %d: %s\n", port, strerror(errno));
        return 1;
    }
    bl_sched *s = bl_sched_new();
    if (s == NULL) {
        perror("bl_sched_new");
        bl_listener_close(l);
        return 1;
    }
    printf("echo_simple: listening on port %d\n", bl_listener_port(l));
    fflush(stdout);

    if (bl_serve_listener(s, l, echoer, NULL) == NULL) {  /* closes l */
        perror("bl_serve_listener");
        bl_sched_free(s);
        return 1;
    }
    /* Runs until every green thread has ended: the acceptor never does. */
    if (bl_sched_run(s) < 0) {
        perror("bl_sched_run");
        return 1;
    }
    bl_sched_free(s);
    return 0;
}
