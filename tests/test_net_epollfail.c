/* SPDX-License-Identifier: MIT */
/*
 * test_net_epollfail.c - when epoll_ctl() fails for a connection (ENOSPC at
 * fs.epoll.max_user_watches), libev stops the connection's watcher itself
 * and reports EV_ERROR. The thread that waited on it retries, and the
 * scheduler's count of what can still wake a thread stays right: a later
 * wait on a healthy connection is not mistaken for a deadlock.
 *
 * The failure is simulated: this program defines epoll_ctl(), which libev
 * then calls, and fails one EPOLL_CTL_ADD for a chosen descriptor.
 */
#define _GNU_SOURCE
#include "netb_util.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sys/epoll.h>

static volatile int fail_add_fd = -1;
static volatile int failed;

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{
    static int (*real)(int, int, int, struct epoll_event *);
    if (real == NULL)
        real = (int (*)(int, int, int, struct epoll_event *))dlsym(
            RTLD_NEXT, "epoll_ctl");
    if (op == EPOLL_CTL_ADD && fd == fail_add_fd) {
        fail_add_fd = -1;          /* once */
        failed = 1;
        errno = ENOSPC;
        return -1;
    }
    return real(epfd, op, fd, event);
}

static int late_peer;

/* Another OS thread writes to the healthy connection a while later. */
static void *late_write(void *arg)
{
    (void)arg;
    usleep(200 * 1000);
    netb_write_all(late_peer, "y", 1);
    return NULL;
}

static void *main_fn(void *arg)
{
    (void)arg;
    char ch;
    int peer;
    bl_conn *c = netb_tcp_pair(&peer);

    /* The first wait's epoll_ctl(ADD) fails: libev stops the watcher and
     * wakes us; we retry, wait again (the ADD works now) and get the data. */
    fail_add_fd = bl_conn_fd(c);
    late_peer = peer;
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, late_write, NULL) == 0);
    CHECK(bl_recv(c, &ch, 1) == 1 && ch == 'y');
    CHECK(pthread_join(pt, NULL) == 0);
    CHECK(failed);

    /* A healthy connection that becomes readable only later: while we wait,
     * nothing else can wake a thread, which must not look like a deadlock
     * (bl_sched_run() would fail with EDEADLK). */
    int peer2;
    bl_conn *c2 = netb_tcp_pair(&peer2);
    late_peer = peer2;
    CHECK(pthread_create(&pt, NULL, late_write, NULL) == 0);
    CHECK(bl_recv(c2, &ch, 1) == 1 && ch == 'y');
    CHECK(pthread_join(pt, NULL) == 0);

    CHECK(bl_close(c) == 0 && bl_close(c2) == 0);
    CHECK(close(peer) == 0 && close(peer2) == 0);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int fds0 = netb_begin();
    NETB_RUN(main_fn, NULL);
    printf("ok: a failed epoll_ctl wakes the waiter, which retries; later "
           "waits are not taken for deadlocks\n");
    netb_end(fds0);
    return 0;
}
