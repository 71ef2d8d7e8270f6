/* SPDX-License-Identifier: MIT */
/*
 * test_core_eperm.c - blocking calls made outside any green thread fail with
 * EPERM: from main() before and after bl_sched_run(), from a libev callback
 * while the scheduler runs (no green thread is current there), and from
 * another OS thread. bl_exit() outside returns with errno EPERM; bl_self()
 * is NULL outside.
 */
#include "core_util.h"

#include <ev.h>
#include <pthread.h>
#include <sys/socket.h>

static bl_listener *lst;
static bl_conn *conn;
static bl_thread *some_thread;
static int sv[2];

static void check_all_eperm(const char *where)
{
    char buf[16];
    CHECK(bl_self() == NULL);
    CHECK(bl_cancelled() == 0);
    CHECK_ERR(bl_yield(), EPERM);
    CHECK_ERR(bl_sleep(0), EPERM);
    CHECK_ERR(bl_sleep(0.001), EPERM);
    CHECK_ERR(bl_join(some_thread, NULL), EPERM);
    CHECK_ERR(bl_join_timeout(some_thread, NULL, 0.001), EPERM);
    CHECK_ERR(bl_wait_fd(sv[0], BL_READ, -1), EPERM);
    CHECK_ERR(bl_wait_fd(sv[0], BL_READ, 0.01), EPERM);
    CHECK_ERR(bl_recv(conn, buf, sizeof buf), EPERM);
    CHECK_ERR(bl_send(conn, "x", 1), EPERM);
    CHECK_ERR(bl_sendall(conn, "x", 1), EPERM);
    CHECK_ERR(bl_readline(conn, buf, sizeof buf), EPERM);
    CHECK_ERR(bl_readuntil(conn, buf, sizeof buf, "\n", 1), EPERM);
    CHECK_NULL_ERR(bl_accept(lst), EPERM);
    CHECK_NULL_ERR(bl_connect("127.0.0.1", bl_listener_port(lst)), EPERM);
    CHECK_NULL_ERR(bl_connect_timeout("127.0.0.1", bl_listener_port(lst), 1.0),
                   EPERM);
    CHECK_NULL_ERR(bl_connect_unix("/nonexistent/bl_core_eperm.sock"), EPERM);
    /* bl_exit() returns, with errno EPERM. */
    errno = 0;
    bl_exit((void *)1);
    CHECK(errno == EPERM);
    /* Nothing was consumed from the socket by the failed calls. */
    CHECK(bl_conn_fd(conn) == sv[0]);
    printf("EPERM checks passed %s\n", where);
}

/* ---- from a libev callback during bl_sched_run() ---- */

static int cb_ran;
static bl_sched *sched;

static void cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    cb_ran = 1;
    CHECK(bl_sched_current() == sched);
    check_all_eperm("in a libev callback");
}

static int ran_in_green;

static void *green(void *arg)
{
    (void)arg;
    /* Inside, the same calls are allowed. */
    CHECK(bl_self() != NULL);
    CHECK(bl_sched_current() == sched);
    CHECK(bl_yield() == 0);
    CHECK(bl_sleep(0.03) == 0); /* the callback fires meanwhile */
    ran_in_green = 1;
    return (void *)3;
}

/* ---- from an OS thread with no scheduler ---- */

static void *os_thread(void *arg)
{
    (void)arg;
    CHECK(bl_sched_current() == NULL);
    CHECK(bl_self() == NULL);
    CHECK_ERR(bl_yield(), EPERM);
    CHECK_ERR(bl_sleep(0.001), EPERM);
    CHECK_ERR(bl_wait_fd(sv[0], BL_READ, 0.01), EPERM);
    errno = 0;
    bl_exit(NULL);
    CHECK(errno == EPERM);
    return (void *)1;
}

int main(void)
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    /* Unread data, so that a wrongly accepted recv would not block. */
    CHECK(write(sv[1], "hello\n", 6) == 6);
    conn = bl_conn_new(sv[0]);
    CHECK(conn != NULL);
    lst = bl_listen("127.0.0.1", 0, 0);
    CHECK(lst != NULL);
    CHECK(bl_listener_port(lst) > 0);

    sched = bl_sched_new();
    CHECK(sched != NULL);
    CHECK(bl_sched_current() == NULL);
    some_thread = bl_spawn(sched, green, NULL);
    CHECK(some_thread != NULL);

    check_all_eperm("in main() before bl_sched_run()");

    pthread_t th;
    void *thr = NULL;
    CHECK(pthread_create(&th, NULL, os_thread, NULL) == 0);
    CHECK(pthread_join(th, &thr) == 0);
    CHECK(thr == (void *)1);

    ev_timer w;
    ev_timer_init(&w, cb, 0.01, 0.);
    ev_timer_start(bl_sched_loop(sched), &w);
    CHECK(bl_sched_run(sched) == 0);
    CHECK(cb_ran);
    CHECK(ran_in_green);
    CHECK(bl_sched_current() == NULL);

    /* The thread has ended but is not joined: joining from main is still
     * EPERM (not a silent success). */
    check_all_eperm("in main() after bl_sched_run()");

    /* The data is still there: nothing read it. */
    char buf[8];
    CHECK(read(sv[0], buf, sizeof buf) == 6);
    CHECK(memcmp(buf, "hello\n", 6) == 0);

    bl_sched_free(sched);
    CHECK(bl_close(conn) == 0);
    CHECK(bl_listener_close(lst) == 0);
    close(sv[1]);
    printf("core_eperm: ok\n");
    return 0;
}
