/* SPDX-License-Identifier: MIT */
/*
 * echo_workers.c - an echo server on several cores: one scheduler accepts,
 * others, each in an OS thread of its own, serve.
 *
 *   usage: echo_workers [port [threads]]   (default port 4915, 0 picks a
 *                                           free one; default 2 workers)
 *
 * A scheduler runs all its green threads in one OS thread. To use more
 * cores, run one scheduler per OS thread. Here the main scheduler's acceptor
 * hands each new connection to the next worker with bl_sched_post(), the
 * one call that may be made from any OS thread: the worker's own thread
 * then spawns a green thread running serve(conn). A connection belongs to
 * the scheduler that first waits on it, so it is handed over before anyone
 * has (bl_accept() does not wait on the connection it returns).
 *
 * A worker with no connection has no green thread, and bl_sched_run()
 * returns when a scheduler has none: bl_sched_hold() keeps it waiting for
 * posts instead.
 */
#include <bluelet.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PORT 4915
#define MAX_WORKERS 64

/* Runs in a worker's scheduler, in the worker's OS thread. */
static void *serve(void *arg)
{
    bl_conn *c = arg;
    char buf[4096];
    ssize_t n;
    while ((n = bl_recv(c, buf, sizeof buf)) > 0)
        if (bl_sendall(c, buf, (size_t)n) < 0)
            break;
    bl_close(c);
    return NULL;
}

static void *worker_main(void *arg)
{
    bl_sched *s = arg;
    if (bl_sched_run(s) < 0)    /* held: runs until the process ends */
        perror("echo_workers: bl_sched_run");
    return NULL;
}

struct acceptor {
    bl_listener *l;
    bl_sched **workers;
    int n;
};

/* A green thread of the main scheduler. */
static void *acceptor(void *arg)
{
    struct acceptor *a = arg;
    for (unsigned long next = 0;; next++) {
        bl_conn *c = bl_accept(a->l);
        if (c == NULL) {
            perror("echo_workers: bl_accept");
            bl_sleep(0.1);      /* out of descriptors, say: retry */
            continue;
        }
        if (bl_sched_post(a->workers[next % (unsigned long)a->n], serve,
                          c) < 0)
            bl_close(c);
    }
    return NULL;
}

static int parse_int(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    return (int)v;
}

int main(int argc, char **argv)
{
    int port = DEFAULT_PORT, n = 2;
    if (argc > 3 || (argc >= 2 && (port = parse_int(argv[1], 0, 65535)) < 0) ||
        (argc == 3 && (n = parse_int(argv[2], 1, MAX_WORKERS)) < 0)) {
        fprintf(stderr, "usage: %s [port [threads]]\n"
                        "  Echo back whatever clients send, serving them on "
                        "threads (1-%d, default 2)\n"
                        "  worker schedulers. port defaults to %d; 0 picks a "
                        "free port.\n",
                argv[0], MAX_WORKERS, DEFAULT_PORT);
        return 2;
    }

    bl_listener *l = bl_listen(NULL, port, 0);
    if (l == NULL) {
        fprintf(stderr, "echo_workers: port %d: %s\n", port, strerror(errno));
        return 1;
    }
    bl_sched *workers[MAX_WORKERS];
    pthread_t tid;
    for (int i = 0; i < n; i++) {
        workers[i] = bl_sched_new();
        if (workers[i] == NULL || bl_sched_hold(workers[i]) < 0 ||
            (errno = pthread_create(&tid, NULL, worker_main, workers[i])) != 0) {
            perror("echo_workers: a worker");
            return 1;
        }
        pthread_detach(tid);
    }
    bl_sched *s = bl_sched_new();
    struct acceptor a = {l, workers, n};
    if (s == NULL || bl_spawn(s, acceptor, &a) == NULL) {
        perror("echo_workers");
        return 1;
    }
    printf("echo_workers: listening on port %d, %d workers\n",
           bl_listener_port(l), n);
    fflush(stdout);
    if (bl_sched_run(s) < 0) {  /* the acceptor never ends */
        perror("echo_workers: bl_sched_run");
        return 1;
    }
    return 0;
}
