/* SPDX-License-Identifier: MIT */
/*
 * test_sync_sched.c - channels, conditions and wait groups and their
 * schedulers:
 * - threads stuck on them (two receivers on empty channels, a sender, a
 *   condition, a wait group) are a deadlock: bl_sched_run() fails with
 *   EDEADLK and names each wait; bl_sched_free() cancels them, which
 *   leaves the objects free of waiters (freeing them works, ASan sees no
 *   stale record), and a new scheduler can use them;
 * - EXDEV: while an object has waiters of a scheduler, a thread of another
 *   scheduler that would have to wait, or to wake one of those waiters,
 *   fails, as does a call from outside any scheduler while theirs runs in
 *   another OS thread (run under ThreadSanitizer too: no race); calls that
 *   touch no waiter work; once the waiters are gone, another scheduler may
 *   use the object;
 * - waiters of a scheduler that is not running can be woken from outside
 *   any scheduler, in its OS thread.
 */
#include "core_util.h"

#include <pthread.h>
#include <semaphore.h>

typedef struct job {
    bl_chan *ch;
    bl_cond *c;
    bl_wg *wg;
    int kind;           /* J_* */
    int value;
    int rc, err, ran;
} job;

enum { J_RECV, J_SEND, J_COND, J_WG };

static void *job_run(void *arg)
{
    job *j = arg;
    errno = 0;
    switch (j->kind) {
    case J_RECV:
        j->rc = bl_chan_recv(j->ch, &j->value);
        break;
    case J_SEND:
        j->rc = bl_chan_send(j->ch, &j->value);
        break;
    case J_COND:
        j->rc = bl_cond_wait(j->c);
        break;
    case J_WG:
        j->rc = bl_wg_wait(j->wg);
        break;
    }
    j->err = errno;
    j->ran = 1;
    return NULL;
}

static bl_thread *spawn_named(bl_sched *s, job *j, const char *name)
{
    bl_spawn_opts o = {.size = sizeof o, .name = name};
    bl_thread *t = bl_spawn_ex(s, job_run, j, &o);
    CHECK(t != NULL);
    return t;
}

/* ---- deadlock, then bl_sched_free(), then reuse ---- */

static int child_deadlock(void)
{
    bl_chan *a = bl_chan_new(sizeof(int), 1), *b = bl_chan_new(sizeof(int), 0);
    bl_chan *u = bl_chan_new(sizeof(int), 0);
    bl_cond *c = bl_cond_new();
    bl_wg *wg = bl_wg_new();
    CHECK(a && b && u && c && wg);
    CHECK(bl_wg_add(wg, 1) == 0);
    job j[5] = {
        {.ch = a, .kind = J_RECV}, {.ch = b, .kind = J_RECV},
        {.ch = u, .kind = J_SEND, .value = 1}, {.c = c, .kind = J_COND},
        {.wg = wg, .kind = J_WG},
    };
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    spawn_named(s, &j[0], "recv-a");
    spawn_named(s, &j[1], "recv-b");
    spawn_named(s, &j[2], "send-u");
    spawn_named(s, &j[3], "cond");
    spawn_named(s, &j[4], "wg");
    double t0 = core_now();
    CHECK_ERR(bl_sched_run(s), EDEADLK);
    CHECK(core_now() - t0 < 5);
    for (int i = 0; i < 5; i++)
        CHECK(!j[i].ran);
    CHECK_ERR(bl_chan_free(a), EBUSY);
    CHECK_ERR(bl_chan_free(u), EBUSY);
    CHECK_ERR(bl_cond_free(c), EBUSY);
    CHECK_ERR(bl_wg_free(wg), EBUSY);
    bl_sched_free(s);
    for (int i = 0; i < 5; i++)
        CHECK(j[i].ran && j[i].rc == -1 && j[i].err == ECANCELED);
    CHECK_EQ_LL(bl_chan_len(a), 0);
    /* Nothing waits any more: b, c and wg can go; a and u are used by a
     * new scheduler, the waits included. */
    CHECK(bl_chan_free(b) == 0);
    CHECK(bl_cond_free(c) == 0);
    CHECK(bl_wg_free(wg) == 0);
    s = bl_sched_new();
    CHECK(s != NULL);
    job r = {.ch = u, .kind = J_RECV}, snd = {.ch = u, .kind = J_SEND,
                                              .value = 77};
    job r2 = {.ch = a, .kind = J_RECV}, snd2 = {.ch = a, .kind = J_SEND,
                                                .value = 78};
    spawn_named(s, &r, NULL);
    spawn_named(s, &snd, NULL);
    spawn_named(s, &r2, NULL);
    spawn_named(s, &snd2, NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK(r.rc == 1 && r.value == 77 && snd.rc == 0);
    CHECK(r2.rc == 1 && r2.value == 78 && snd2.rc == 0);
    bl_sched_free(s);
    CHECK(bl_chan_free(a) == 0);
    CHECK(bl_chan_free(u) == 0);
    fprintf(stderr, "child done\n");
    return 0;
}

static void test_deadlock(void)
{
    static core_child c;
    core_run_child(child_deadlock, 30, &c);
    char st[64];
    core_child_describe(&c, st, sizeof st);
    if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0)
        CORE_FAIL("deadlock child %s, stderr:\n%s", st, c.err);
    const char *want[] = {
        "5 green threads blocked", "\"recv-a\" in bl_chan_recv",
        "\"recv-b\" in bl_chan_recv", "\"send-u\" in bl_chan_send",
        "\"cond\" in bl_cond_wait", "\"wg\" in bl_wg_wait", "child done",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (strstr(c.err, want[i]) == NULL)
            CORE_FAIL("no \"%s\" in the child's stderr:\n%s", want[i], c.err);
}

/* ---- two schedulers in one OS thread ---- */

static void *other_sched_calls(void *arg)
{
    job *j = arg;   /* j[0]: the channel's waiter, j[1] the condition's */
    int v = 1;
    CHECK_ERR(bl_chan_send(j[0].ch, &v), EXDEV);
    CHECK_ERR(bl_chan_send_timeout(j[0].ch, &v, 0), EXDEV);
    CHECK_ERR(bl_chan_recv(j[0].ch, &v), EXDEV);
    CHECK_ERR(bl_chan_close(j[0].ch), EXDEV);
    CHECK_ERR(bl_cond_signal(j[1].c), EXDEV);
    CHECK_ERR(bl_cond_broadcast(j[1].c), EXDEV);
    CHECK_ERR(bl_cond_wait(j[1].c), EXDEV);
    CHECK_ERR(bl_chan_free(j[0].ch), EBUSY);
    return NULL;
}

static void test_two_scheds_one_thread(void)
{
    bl_chan *ch = bl_chan_new(sizeof(int), 0);
    bl_cond *c = bl_cond_new();
    CHECK(ch != NULL && c != NULL);
    job j[2] = {{.ch = ch, .kind = J_RECV, .value = -1},
                {.c = c, .kind = J_COND}};
    bl_sched *s1 = bl_sched_new(), *s2 = bl_sched_new();
    CHECK(s1 != NULL && s2 != NULL);
    spawn_named(s1, &j[0], "s1-recv");
    spawn_named(s1, &j[1], "s1-cond");
    fprintf(stderr, "(a deadlock report is expected here)\n");
    CHECK_ERR(bl_sched_run(s1), EDEADLK);
    /* A green thread of s2 must leave s1's waiters alone. */
    CHECK(bl_spawn(s2, other_sched_calls, j) != NULL);
    CHECK(bl_sched_run(s2) == 0);
    /* With no scheduler running, this OS thread may wake them. */
    CHECK(bl_chan_close(ch) == 0);
    CHECK(bl_cond_signal(c) == 1);
    CHECK(!j[0].ran && !j[1].ran);
    CHECK(bl_sched_run(s1) == 0);
    CHECK(j[0].rc == 0 && j[0].value == -1 && j[1].rc == 0);
    bl_sched_free(s1);
    bl_sched_free(s2);
    CHECK(bl_chan_free(ch) == 0);
    CHECK(bl_cond_free(c) == 0);
}

/* ---- two schedulers in two OS threads ---- */

typedef struct xs {
    bl_chan *ch;
    bl_cond *c;
    bl_wg *wg;
    sem_t to_main, to_a;
    job j[3];
    int coord_rc[3];
} xs;

/* In A's scheduler, after its three waiters have parked: let main try,
 * wait until it has, then release the waiters. */
static void *coordinator(void *arg)
{
    xs *x = arg;
    CHECK(x->j[0].ran == 0 && x->j[1].ran == 0 && x->j[2].ran == 0);
    CHECK(sem_post(&x->to_main) == 0);
    while (sem_trywait(&x->to_a) != 0)
        CHECK(bl_sleep(0.001) == 0);
    int v = 1234;
    x->coord_rc[0] = bl_chan_send(x->ch, &v);
    x->coord_rc[1] = bl_cond_signal(x->c);
    x->coord_rc[2] = bl_wg_done(x->wg);
    return NULL;
}

static void *thread_a(void *arg)
{
    xs *x = arg;
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    for (int i = 0; i < 3; i++)
        spawn_named(s, &x->j[i], NULL);
    CHECK(bl_spawn(s, coordinator, x) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
    return NULL;
}

static void *foreign_green(void *arg)
{
    xs *x = arg;
    int v = 5;
    /* Would have to wait, or to wake a waiter of A's scheduler. */
    CHECK_ERR(bl_chan_send(x->ch, &v), EXDEV);
    CHECK_ERR(bl_chan_send_timeout(x->ch, &v, 0), EXDEV);
    CHECK_ERR(bl_chan_send_timeout(x->ch, &v, 0.01), EXDEV);
    CHECK_ERR(bl_chan_recv(x->ch, &v), EXDEV);
    CHECK_ERR(bl_chan_recv_timeout(x->ch, &v, 0), EXDEV);
    CHECK_ERR(bl_chan_close(x->ch), EXDEV);
    CHECK_ERR(bl_cond_wait(x->c), EXDEV);
    CHECK_ERR(bl_cond_wait_timeout(x->c, 0.01), EXDEV);
    CHECK_ERR(bl_cond_signal(x->c), EXDEV);
    CHECK_ERR(bl_cond_broadcast(x->c), EXDEV);
    CHECK_ERR(bl_wg_wait(x->wg), EXDEV);
    CHECK_ERR(bl_wg_done(x->wg), EXDEV);     /* it would reach 0 */
    /* Touching no waiter is fine. */
    CHECK(bl_wg_add(x->wg, 2) == 0);
    CHECK(bl_wg_add(x->wg, -2) == 0);
    CHECK_EQ_LL(bl_chan_len(x->ch), 0);
    CHECK_ERR(bl_chan_free(x->ch), EBUSY);
    CHECK_ERR(bl_cond_free(x->c), EBUSY);
    CHECK_ERR(bl_wg_free(x->wg), EBUSY);
    /* Objects nobody waits on are free to use. */
    bl_chan *mine = bl_chan_new(sizeof(int), 1);
    CHECK(mine != NULL);
    CHECK(bl_chan_send(mine, &v) == 0);
    CHECK(bl_chan_recv(mine, &v) == 1 && v == 5);
    CHECK(bl_chan_free(mine) == 0);
    return NULL;
}

static void test_two_os_threads(void)
{
    static xs x;
    memset(&x, 0, sizeof x);
    x.ch = bl_chan_new(sizeof(int), 0);
    x.c = bl_cond_new();
    x.wg = bl_wg_new();
    CHECK(x.ch != NULL && x.c != NULL && x.wg != NULL);
    CHECK(bl_wg_add(x.wg, 1) == 0);
    CHECK(sem_init(&x.to_main, 0, 0) == 0 && sem_init(&x.to_a, 0, 0) == 0);
    x.j[0] = (job){.ch = x.ch, .kind = J_RECV, .value = -1};
    x.j[1] = (job){.c = x.c, .kind = J_COND};
    x.j[2] = (job){.wg = x.wg, .kind = J_WG};
    pthread_t a;
    CHECK(pthread_create(&a, NULL, thread_a, &x) == 0);
    CHECK(sem_wait(&x.to_main) == 0);

    /* Outside any scheduler, while A's runs: no waking its waiters. */
    CHECK_ERR(bl_chan_close(x.ch), EXDEV);
    CHECK_ERR(bl_cond_signal(x.c), EXDEV);
    CHECK_ERR(bl_cond_broadcast(x.c), EXDEV);
    CHECK_ERR(bl_wg_done(x.wg), EXDEV);
    CHECK_ERR(bl_wg_add(x.wg, -1), EXDEV);
    CHECK_ERR(bl_chan_free(x.ch), EBUSY);
    CHECK_ERR(bl_cond_free(x.c), EBUSY);
    CHECK_ERR(bl_wg_free(x.wg), EBUSY);
    CHECK_ERR(bl_chan_send(x.ch, &(int){1}), EPERM);

    /* A green thread of a scheduler of this OS thread. */
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, foreign_green, &x) != NULL);
    CHECK(bl_sched_run(s) == 0);

    CHECK(sem_post(&x.to_a) == 0);
    CHECK(pthread_join(a, NULL) == 0);
    CHECK(x.coord_rc[0] == 0 && x.coord_rc[1] == 1 && x.coord_rc[2] == 0);
    CHECK(x.j[0].rc == 1 && x.j[0].value == 1234);
    CHECK(x.j[1].rc == 0 && x.j[2].rc == 0);

    /* A's scheduler is gone, its waiters are: this one may use them. */
    job r = {.ch = x.ch, .kind = J_RECV}, snd = {.ch = x.ch, .kind = J_SEND,
                                                 .value = 99};
    job cw = {.c = x.c, .kind = J_COND};
    spawn_named(s, &r, NULL);
    spawn_named(s, &cw, NULL);
    spawn_named(s, &snd, NULL);
    CHECK(bl_sched_run(s) == -1 && errno == EDEADLK);   /* cw waits */
    CHECK(r.rc == 1 && r.value == 99 && snd.rc == 0 && !cw.ran);
    CHECK(bl_cond_signal(x.c) == 1);
    CHECK(bl_sched_run(s) == 0);
    CHECK(cw.rc == 0);
    bl_sched_free(s);
    CHECK(bl_chan_free(x.ch) == 0);
    CHECK(bl_cond_free(x.c) == 0);
    CHECK(bl_wg_free(x.wg) == 0);
    sem_destroy(&x.to_main);
    sem_destroy(&x.to_a);
}

int main(void)
{
    test_deadlock();
    test_two_scheds_one_thread();
    test_two_os_threads();
    printf("ok\n");
    return 0;
}
