/* SPDX-License-Identifier: MIT */
/*
 * test_core_stop.c - bl_sched_stop(): stopping a scheduler from another OS
 * thread (a server with live loopback connections, busy and held), from a
 * signal handler, from one of its own green threads, and before it runs;
 * threads spawned or posted during a stop start cancelled; the stop ends
 * with the run that took it.
 */
#include "netb_util.h"

#include <pthread.h>

#define NCONN 5

/* ---- a server stopped from another OS thread ---- */

static int nserved, nserved_cancelled;  /* handlers: entered, ECANCELED */
static int sleeper_cancelled, chan_cancelled, spinner_cancelled;
static int eofs;                        /* client sockets that saw EOF */

static void handler(bl_conn *c, void *arg)
{
    (void)arg;
    char buf[64];
    ssize_t n;
    nserved++;
    while ((n = bl_recv(c, buf, sizeof buf)) > 0)
        if (bl_sendall(c, buf, (size_t)n) < 0)
            break;
    if (n < 0 && errno == ECANCELED)
        nserved_cancelled++;
}

static void *sleeper(void *arg)
{
    int *flag = arg;
    if (bl_sleep(1000) < 0 && errno == ECANCELED)
        (*flag)++;
    return NULL;
}

static void *chan_waiter(void *arg)
{
    bl_chan *ch = arg;
    int v;
    if (bl_chan_recv(ch, &v) < 0 && errno == ECANCELED)
        chan_cancelled++;
    return NULL;
}

static void *spinner(void *arg)
{
    (void)arg;
    while (bl_yield() == 0)     /* busy: the stop comes through a poll */
        ;
    if (errno == ECANCELED)
        spinner_cancelled++;
    return NULL;
}

typedef struct {
    bl_sched *s;
    int port;
} client_arg;

static void *clients(void *p)
{
    client_arg *a = p;
    int fds[NCONN];
    char buf[8];
    for (int i = 0; i < NCONN; i++) {
        fds[i] = netb_raw_connect(a->port);
        /* An echo: the handler runs and will block in bl_recv() again. */
        netb_write_all(fds[i], "hi", 2);
        CHECK(recv(fds[i], buf, 2, MSG_WAITALL) == 2);
        CHECK(memcmp(buf, "hi", 2) == 0);
    }
    CHECK(bl_sched_stop(a->s) == 0);
    /* Every connection is closed by the server. */
    for (int i = 0; i < NCONN; i++) {
        ssize_t n = recv(fds[i], buf, sizeof buf, 0);
        if (n == 0)
            eofs++;
        close(fds[i]);
    }
    return NULL;
}

static int plain_ran, plain_cancelled;

static void *plain(void *arg)
{
    (void)arg;
    plain_ran++;
    if (bl_sleep(0.001) < 0)
        plain_cancelled++;
    return NULL;
}

static void test_server(void)
{
    netb_watchdog("server");
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_listener *l = bl_listen("127.0.0.1", 0, 0);
    CHECK(l != NULL);
    client_arg a = {s, bl_listener_port(l)};
    CHECK(bl_serve_listener(s, l, handler, NULL) != NULL);
    bl_chan *ch = bl_chan_new(sizeof(int), 0);
    CHECK(ch != NULL);
    CHECK(bl_spawn(s, sleeper, &sleeper_cancelled) != NULL);
    CHECK(bl_spawn(s, chan_waiter, ch) != NULL);
    CHECK(bl_spawn(s, spinner, NULL) != NULL);
    /* Without the stop, the hold alone would keep the run going. */
    CHECK(bl_sched_hold(s) == 0);
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, clients, &a) == 0);
    CHECK(bl_sched_run(s) == 0);
    CHECK(pthread_join(tid, NULL) == 0);
    CHECK_EQ_LL(bl_sched_nthreads(s), 0);
    CHECK_EQ_LL(nserved, NCONN);
    CHECK_EQ_LL(nserved_cancelled, NCONN);
    CHECK_EQ_LL(eofs, NCONN);
    CHECK_EQ_LL(sleeper_cancelled, 1);
    CHECK_EQ_LL(chan_cancelled, 1);
    CHECK_EQ_LL(spinner_cancelled, 1);
    /* The stop ended with that run: the next one runs threads as usual. */
    CHECK(bl_sched_release(s) == 0);
    CHECK(bl_spawn(s, plain, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK_EQ_LL(plain_ran, 1);
    CHECK_EQ_LL(plain_cancelled, 0);
    CHECK(bl_chan_free(ch) == 0);
    bl_sched_free(s);
}

/* ---- an idle scheduler (blocked in its poll), stopped by another OS
 * thread or by a signal handler ---- */

static bl_sched *idle_sched;
static int idle_cancelled, idle_posted_ran, idle_posted_cancelled;
static int idle_asleep;         /* atomic: the sleeper is about to block */
static volatile sig_atomic_t handler_ran, handler_failed, handler_errno;

static void on_usr1(int sig)
{
    (void)sig;
    int saved = errno;          /* a handler must leave errno as it was */
    errno = EILSEQ;             /* bl_sched_stop() must too */
    if (bl_sched_stop(idle_sched) != 0)
        handler_failed = 1;
    handler_errno = errno;
    handler_ran = 1;
    errno = saved;
}

static void *idle_posted(void *arg)
{
    (void)arg;
    idle_posted_ran++;
    if (bl_cancelled())
        idle_posted_cancelled++;
    return NULL;
}

static void *idle_sleeper(void *arg)
{
    (void)arg;
    __atomic_store_n(&idle_asleep, 1, __ATOMIC_RELEASE);
    if (bl_sleep(1000) < 0 && errno == ECANCELED)
        idle_cancelled++;
    return NULL;
}

typedef struct {
    pthread_t target;           /* the scheduler's OS thread */
    int by_signal;
} stopper_arg;

static void *idle_stopper(void *p)
{
    stopper_arg *a = p;
    while (!__atomic_load_n(&idle_asleep, __ATOMIC_ACQUIRE))
        core_pause(0.001);
    core_pause(0.05);           /* the scheduler blocks in its poll */
    if (a->by_signal) {
        CHECK(pthread_kill(a->target, SIGUSR1) == 0);
    } else {
        CHECK(bl_sched_stop(idle_sched) == 0);
        /* Posted after the stop: starts cancelled, even when the stop's
         * wake-up takes the post in the same poll. */
        CHECK(bl_sched_post(idle_sched, idle_posted, NULL) == 0);
    }
    return NULL;
}

static void test_idle(int by_signal)
{
    netb_watchdog(by_signal ? "idle, by a signal" : "idle, by a thread");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    idle_sched = bl_sched_new();
    CHECK(idle_sched != NULL);
    idle_asleep = idle_cancelled = idle_posted_ran = idle_posted_cancelled = 0;
    handler_ran = handler_failed = handler_errno = 0;
    CHECK(bl_spawn(idle_sched, idle_sleeper, NULL) != NULL);
    stopper_arg a = {pthread_self(), by_signal};
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, idle_stopper, &a) == 0);
    CHECK(bl_sched_run(idle_sched) == 0);
    CHECK(pthread_join(tid, NULL) == 0);
    CHECK_EQ_LL(idle_cancelled, 1);
    if (by_signal) {
        CHECK(handler_ran);
        CHECK(!handler_failed);
        CHECK_EQ_LL(handler_errno, EILSEQ);
    }
    /* The post ran cancelled: in the stopped run, or, when it came after
     * that run had ended, in bl_sched_free(). */
    bl_sched_free(idle_sched);
    if (!by_signal) {
        CHECK_EQ_LL(idle_posted_ran, 1);
        CHECK_EQ_LL(idle_posted_cancelled, 1);
    }
    signal(SIGUSR1, SIG_DFL);
}

/* ---- before the run; spawns and posts during a stop ---- */

static int born_cancelled, posted_cancelled, first_cancelled;

static void *born(void *arg)
{
    (void)arg;
    if (bl_cancelled())
        born_cancelled++;
    return NULL;
}

static void *posted(void *arg)
{
    (void)arg;
    if (bl_cancelled() && bl_yield() < 0 && errno == ECANCELED)
        posted_cancelled++;
    return NULL;
}

static void *first(void *arg)
{
    bl_sched *s = arg;
    if (bl_sleep(1000) < 0 && errno == ECANCELED)
        first_cancelled++;
    /* Clean-up that spawns: the new thread starts cancelled too. */
    CHECK(bl_spawn(s, born, NULL) != NULL);
    return NULL;
}

static void test_before_run(void)
{
    netb_watchdog("before_run");
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, first, s) != NULL);
    CHECK(bl_sched_stop(s) == 0);
    CHECK(bl_sched_stop(s) == 0);   /* twice is once */
    CHECK(bl_sched_post(s, posted, NULL) == 0);
    CHECK(bl_sched_run(s) == 0);
    CHECK_EQ_LL(first_cancelled, 1);
    CHECK_EQ_LL(born_cancelled, 1);
    CHECK_EQ_LL(posted_cancelled, 1);
    /* Nothing is left of it for the next run. */
    plain_ran = plain_cancelled = 0;
    CHECK(bl_spawn(s, plain, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK_EQ_LL(plain_ran, 1);
    CHECK_EQ_LL(plain_cancelled, 0);
    bl_sched_free(s);
}

/* ---- from one of its own green threads ---- */

static int cond_cancelled, self_cancelled;

static void *cond_waiter(void *arg)
{
    if (bl_cond_wait(arg) < 0 && errno == ECANCELED)
        cond_cancelled++;
    return NULL;
}

static void *stopper(void *arg)
{
    (void)arg;
    bl_yield();                 /* cond_waiter blocks */
    CHECK(bl_sched_stop(bl_sched_current()) == 0);
    if (bl_sleep(1000) < 0 && errno == ECANCELED)
        self_cancelled++;
    return NULL;
}

static void test_from_inside(void)
{
    netb_watchdog("from_inside");
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_cond *c = bl_cond_new();
    CHECK(c != NULL);
    CHECK(bl_spawn(s, cond_waiter, c) != NULL);
    CHECK(bl_spawn(s, stopper, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK_EQ_LL(cond_cancelled, 1);
    CHECK_EQ_LL(self_cancelled, 1);
    CHECK(bl_cond_free(c) == 0);
    bl_sched_free(s);
}

int main(void)
{
    int fds0 = netb_begin();
    CHECK_ERR(bl_sched_stop(NULL), EINVAL);
    test_server();
    test_idle(0);
    test_idle(1);
    test_before_run();
    test_from_inside();
    netb_end(fds0);
    printf("core_stop: ok\n");
    return 0;
}
