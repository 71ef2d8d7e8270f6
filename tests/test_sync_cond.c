/* SPDX-License-Identifier: MIT */
/*
 * test_sync_cond.c - conditions (bl_cond_*) and wait groups (bl_wg_*):
 * - a signal wakes the thread that has waited longest, a broadcast all of
 *   them, and each says how many it woke; a signal without waiter is not
 *   remembered; waiters that timed out or were cancelled are not counted
 *   nor woken;
 * - a wait group wakes every waiter when its counter reaches 0, not
 *   before; waiting on 0 returns at once; EINVAL below 0 or on overflow,
 *   the counter unchanged;
 * - timeouts, cancellation (also of a wait that would not have to wait),
 *   EPERM outside green threads, EINVAL, EBUSY.
 */
#include "core_util.h"

#include <limits.h>
#include <math.h>

typedef struct waiter {
    bl_cond *c;
    bl_wg *wg;
    double timeout;         /* < 0: the call without timeout */
    int rc, err, done;
    int id;
    core_trace *trace;
} waiter;

static void *cond_waiter(void *arg)
{
    waiter *w = arg;
    errno = 0;
    w->rc = w->timeout < 0 ? bl_cond_wait(w->c)
                           : bl_cond_wait_timeout(w->c, w->timeout);
    w->err = errno;
    w->done = 1;
    if (w->trace != NULL)
        core_trace_add(w->trace, "w%d:%d", w->id, w->rc == 0 ? 0 : -w->err);
    return NULL;
}

static void *wg_waiter(void *arg)
{
    waiter *w = arg;
    errno = 0;
    w->rc = w->timeout < 0 ? bl_wg_wait(w->wg)
                           : bl_wg_wait_timeout(w->wg, w->timeout);
    w->err = errno;
    w->done = 1;
    if (w->trace != NULL)
        core_trace_add(w->trace, "g%d:%d", w->id, w->rc == 0 ? 0 : -w->err);
    return NULL;
}

/* After `delay` seconds, run op on the object (for races with timeouts:
 * an earlier deadline than the waiters', see t_cond()). */
enum { D_SIGNAL_BROADCAST, D_WG_DONE, D_COND_FREE };

typedef struct delayed {
    double delay;
    int op;
    bl_cond *c;
    bl_wg *wg;
    int rc[2];
} delayed;

static void *delayed_op(void *arg)
{
    delayed *d = arg;
    CHECK(bl_sleep(d->delay) == 0);
    switch (d->op) {
    case D_SIGNAL_BROADCAST:
        d->rc[0] = bl_cond_signal(d->c);
        d->rc[1] = bl_cond_broadcast(d->c);
        break;
    case D_WG_DONE:
        d->rc[0] = bl_wg_done(d->wg);
        break;
    case D_COND_FREE:
        d->rc[0] = bl_cond_free(d->c);
        break;
    }
    return NULL;
}

/* Hold the OS thread for `seconds`: deadlines pass, nothing runs. */
static void spin(double seconds)
{
    double t0 = core_now();
    while (core_now() - t0 < seconds)
        ;
}

static void trace_reset(core_trace *t)
{
    t->len = 0;
    t->buf[0] = '\0';
}

/* ---- conditions ---- */

#define NW 5

static void *t_cond(void *arg)
{
    (void)arg;
    core_trace tr = {0};
    waiter w[NW];
    bl_thread *t[NW];
    bl_cond *c = bl_cond_new();
    CHECK(c != NULL);

    /* Not remembered. */
    CHECK(bl_cond_signal(c) == 0);
    CHECK(bl_cond_broadcast(c) == 0);
    CHECK_ERR(bl_cond_wait_timeout(c, 0), ETIMEDOUT);
    double t0 = core_now();
    CHECK_ERR(bl_cond_wait_timeout(c, 0.02), ETIMEDOUT);
    CHECK(core_now() - t0 >= 0.019);

    /* Signals wake in the order the waits began, one each. */
    for (int i = 0; i < NW; i++) {
        w[i] = (waiter){.c = c, .timeout = i % 2 ? 10 : -1, .id = i,
                        .trace = &tr};
        CHECK((t[i] = bl_spawn(NULL, cond_waiter, &w[i])) != NULL);
    }
    CHECK(bl_yield() == 0);
    for (int i = 0; i < NW; i++)
        CHECK(!w[i].done);
    int order[NW] = {0};
    for (int i = 0; i < NW; i++) {
        core_trace_add(&tr, "sig");
        CHECK(bl_cond_signal(c) == 1);
        CHECK(bl_yield() == 0);
        for (int j = 0; j < NW; j++)
            order[j] = w[j].done;
        for (int j = 0; j < NW; j++)
            CHECK_EQ_LL(order[j], j <= i);
    }
    CHECK(bl_cond_signal(c) == 0);
    for (int i = 0; i < NW; i++)
        CHECK(bl_join(t[i], NULL) == 0);
    core_trace_expect(&tr, "sig w0:0 sig w1:0 sig w2:0 sig w3:0 sig w4:0");

    /* A broadcast wakes all, and counts them; the woken run in the order
     * they began to wait. */
    trace_reset(&tr);
    for (int i = 0; i < NW; i++) {
        w[i] = (waiter){.c = c, .timeout = -1, .id = i, .trace = &tr};
        CHECK((t[i] = bl_spawn(NULL, cond_waiter, &w[i])) != NULL);
    }
    CHECK(bl_yield() == 0);
    CHECK(bl_cond_broadcast(c) == NW);
    CHECK(bl_cond_broadcast(c) == 0);
    for (int i = 0; i < NW; i++)
        CHECK(bl_join(t[i], NULL) == 0);
    core_trace_expect(&tr, "w0:0 w1:0 w2:0 w3:0 w4:0");

    /* Waiters cancelled or timed out, not yet run, are neither woken nor
     * counted: the signal goes to the next. */
    trace_reset(&tr);
    for (int i = 0; i < 4; i++) {
        w[i] = (waiter){.c = c, .timeout = i == 1 ? 0.01 : -1, .id = i,
                        .trace = &tr};
        CHECK((t[i] = bl_spawn(NULL, cond_waiter, &w[i])) != NULL);
    }
    delayed d = {.delay = 0.005, .op = D_SIGNAL_BROADCAST, .c = c};
    bl_thread *td = bl_spawn(NULL, delayed_op, &d);
    CHECK(td != NULL);
    CHECK(bl_yield() == 0);
    CHECK(bl_cancel(t[0]) == 0);
    /* Both deadlines pass while we hold the OS thread; the next poll runs
     * both timers: d's thread (the earlier deadline) signals while w1 has
     * been woken by its timeout but has not run yet. */
    spin(0.03);
    CHECK(bl_join(td, NULL) == 0);
    CHECK(d.rc[0] == 1 && d.rc[1] == 1);    /* w2, then w3 */
    for (int i = 0; i < 4; i++)
        CHECK(bl_join(t[i], NULL) == 0);
    core_trace_expect(&tr, "w0:-125 w1:-110 w2:0 w3:0");

    /* Signalled, then cancelled before it ran: the wait returns 0 (it was
     * signalled); the cancellation shows in the next blocking call. */
    w[0] = (waiter){.c = c, .timeout = -1};
    CHECK((t[0] = bl_spawn(NULL, cond_waiter, &w[0])) != NULL);
    CHECK(bl_yield() == 0);
    CHECK(bl_cond_signal(c) == 1);
    CHECK(bl_cancel(t[0]) == 0);
    CHECK(bl_join(t[0], NULL) == 0);
    CHECK(w[0].rc == 0);

    /* Cancelled while waiting, with a timeout too. */
    w[0] = (waiter){.c = c, .timeout = 10};
    CHECK((t[0] = bl_spawn(NULL, cond_waiter, &w[0])) != NULL);
    CHECK(bl_yield() == 0);
    t0 = core_now();
    CHECK(bl_cancel(t[0]) == 0);
    CHECK(bl_join(t[0], NULL) == 0);
    CHECK(w[0].rc == -1 && w[0].err == ECANCELED);
    CHECK(core_now() - t0 < 5);
    CHECK(bl_cond_signal(c) == 0);

    /* EBUSY while a thread waits; nothing is done. */
    w[0] = (waiter){.c = c, .timeout = -1};
    CHECK((t[0] = bl_spawn(NULL, cond_waiter, &w[0])) != NULL);
    CHECK(bl_yield() == 0);
    CHECK_ERR(bl_cond_free(c), EBUSY);
    CHECK(bl_cond_signal(c) == 1);
    CHECK(bl_join(t[0], NULL) == 0);
    CHECK(w[0].rc == 0);
    /* A timed-out waiter that has not run yet is not waiting any more. */
    w[0] = (waiter){.c = c, .timeout = 0.01};
    CHECK((t[0] = bl_spawn(NULL, cond_waiter, &w[0])) != NULL);
    d = (delayed){.delay = 0.005, .op = D_COND_FREE, .c = c};
    CHECK((td = bl_spawn(NULL, delayed_op, &d)) != NULL);
    CHECK(bl_yield() == 0);
    spin(0.03);
    CHECK(bl_join(td, NULL) == 0);
    CHECK(d.rc[0] == 0);
    CHECK(bl_join(t[0], NULL) == 0);
    CHECK(w[0].rc == -1 && w[0].err == ETIMEDOUT);
    return NULL;
}

/* ---- wait groups ---- */

static void *t_wg(void *arg)
{
    (void)arg;
    core_trace tr = {0};
    waiter w[NW];
    bl_thread *t[NW];
    bl_wg *wg = bl_wg_new();
    CHECK(wg != NULL);

    /* At 0: no wait, even with timeout 0. */
    CHECK(bl_wg_wait(wg) == 0);
    CHECK(bl_wg_wait_timeout(wg, 0) == 0);

    CHECK(bl_wg_add(wg, 3) == 0);
    CHECK_ERR(bl_wg_wait_timeout(wg, 0), ETIMEDOUT);
    double t0 = core_now();
    CHECK_ERR(bl_wg_wait_timeout(wg, 0.02), ETIMEDOUT);
    CHECK(core_now() - t0 >= 0.019);

    for (int i = 0; i < NW; i++) {
        w[i] = (waiter){.wg = wg, .timeout = i == 3 ? 10 : -1, .id = i,
                        .trace = &tr};
        CHECK((t[i] = bl_spawn(NULL, wg_waiter, &w[i])) != NULL);
    }
    CHECK(bl_yield() == 0);
    /* Below 0: EINVAL, unchanged. */
    CHECK_ERR(bl_wg_add(wg, -4), EINVAL);
    CHECK_ERR(bl_wg_add(wg, LONG_MIN), EINVAL);
    for (int k = 0; k < 3; k++) {
        core_trace_add(&tr, "d%d", k);
        CHECK(bl_wg_done(wg) == 0);
        CHECK(bl_yield() == 0);
        for (int i = 0; i < NW; i++)
            CHECK_EQ_LL(w[i].done, k == 2);
    }
    for (int i = 0; i < NW; i++)
        CHECK(bl_join(t[i], NULL) == 0);
    core_trace_expect(&tr, "d0 d1 d2 g0:0 g1:0 g2:0 g3:0 g4:0");
    CHECK_ERR(bl_wg_done(wg), EINVAL);
    CHECK(bl_wg_wait(wg) == 0);

    /* Overflow: EINVAL, unchanged. */
    CHECK(bl_wg_add(wg, LONG_MAX) == 0);
    CHECK_ERR(bl_wg_add(wg, 1), EINVAL);
    CHECK_ERR(bl_wg_add(wg, LONG_MAX), EINVAL);
    CHECK(bl_wg_add(wg, -LONG_MAX + 1) == 0);
    CHECK(bl_wg_add(wg, 0) == 0);
    CHECK_ERR(bl_wg_add(wg, -2), EINVAL);
    CHECK_ERR(bl_wg_wait_timeout(wg, 0), ETIMEDOUT);     /* still 1 */
    CHECK(bl_wg_done(wg) == 0);
    CHECK(bl_wg_wait_timeout(wg, 0) == 0);

    /* Going up and down without reaching 0 wakes nobody; a cancelled or
     * timed-out waiter is not woken (and fails). */
    trace_reset(&tr);
    CHECK(bl_wg_add(wg, 1) == 0);
    for (int i = 0; i < 3; i++) {
        w[i] = (waiter){.wg = wg, .timeout = i == 2 ? 0.01 : -1, .id = i,
                        .trace = &tr};
        CHECK((t[i] = bl_spawn(NULL, wg_waiter, &w[i])) != NULL);
    }
    delayed d = {.delay = 0.005, .op = D_WG_DONE, .wg = wg};
    bl_thread *td = bl_spawn(NULL, delayed_op, &d);
    CHECK(td != NULL);
    CHECK(bl_yield() == 0);
    CHECK(bl_wg_add(wg, 5) == 0);
    CHECK(bl_wg_add(wg, -5) == 0);
    CHECK(bl_yield() == 0);
    CHECK(!w[0].done && !w[1].done && !w[2].done);
    CHECK(bl_cancel(t[0]) == 0);
    spin(0.03);     /* as in t_cond(): g2 times out, d's done comes first */
    CHECK(bl_join(td, NULL) == 0);
    CHECK(d.rc[0] == 0);
    for (int i = 0; i < 3; i++)
        CHECK(bl_join(t[i], NULL) == 0);
    core_trace_expect(&tr, "g0:-125 g2:-110 g1:0");

    /* Cancelled before: fails even at 0. */
    w[0] = (waiter){.wg = wg, .timeout = -1};
    CHECK((t[0] = bl_spawn(NULL, wg_waiter, &w[0])) != NULL);
    CHECK(bl_cancel(t[0]) == 0);
    CHECK(bl_join(t[0], NULL) == 0);
    CHECK(w[0].rc == -1 && w[0].err == ECANCELED);

    /* Released, then cancelled before it ran: the wait returns 0. */
    CHECK(bl_wg_add(wg, 1) == 0);
    w[0] = (waiter){.wg = wg, .timeout = -1};
    CHECK((t[0] = bl_spawn(NULL, wg_waiter, &w[0])) != NULL);
    CHECK(bl_yield() == 0);
    CHECK(bl_wg_done(wg) == 0);
    CHECK(bl_cancel(t[0]) == 0);
    CHECK(bl_join(t[0], NULL) == 0);
    CHECK(w[0].rc == 0);

    /* EBUSY while a thread waits. */
    CHECK(bl_wg_add(wg, 1) == 0);
    w[0] = (waiter){.wg = wg, .timeout = -1};
    CHECK((t[0] = bl_spawn(NULL, wg_waiter, &w[0])) != NULL);
    CHECK(bl_yield() == 0);
    CHECK_ERR(bl_wg_free(wg), EBUSY);
    CHECK(bl_wg_done(wg) == 0);
    CHECK(bl_join(t[0], NULL) == 0);
    CHECK(w[0].rc == 0);
    CHECK(bl_wg_free(wg) == 0);
    return NULL;
}

/* ---- a wait group for a crowd ---- */

typedef struct crowd {
    bl_wg *wg;
    bl_cond *go;
    int started, finished, ready;
} crowd;

static void *crowd_worker(void *arg)
{
    crowd *cr = arg;
    cr->started++;
    while (!cr->ready)
        CHECK(bl_cond_wait(cr->go) == 0);
    CHECK(bl_sleep(0.001 * (cr->started % 5)) == 0);
    cr->finished++;
    CHECK(bl_wg_done(cr->wg) == 0);
    return NULL;
}

static void *t_crowd(void *arg)
{
    (void)arg;
    int n = CORE_SLOW ? 200 : 2000;
    crowd cr = {.wg = bl_wg_new(), .go = bl_cond_new()};
    CHECK(cr.wg != NULL && cr.go != NULL);
    CHECK(bl_wg_add(cr.wg, n) == 0);
    for (int i = 0; i < n; i++) {
        bl_spawn_opts o = {.size = sizeof o, .stack_size = 32 * 1024,
                           .detached = 1};
        CHECK(bl_spawn_ex(NULL, crowd_worker, &cr, &o) != NULL);
    }
    CHECK(bl_yield() == 0);
    CHECK_EQ_LL(cr.started, n);
    cr.ready = 1;
    CHECK_EQ_LL(bl_cond_broadcast(cr.go), n);
    CHECK(bl_wg_wait(cr.wg) == 0);
    CHECK_EQ_LL(cr.finished, n);
    CHECK(bl_wg_free(cr.wg) == 0);
    CHECK(bl_cond_free(cr.go) == 0);
    return NULL;
}

/* ---- errors ---- */

static void *t_errors(void *arg)
{
    (void)arg;
    bl_cond *c = bl_cond_new();
    bl_wg *wg = bl_wg_new();
    CHECK(c != NULL && wg != NULL);
    CHECK_ERR(bl_cond_wait(NULL), EINVAL);
    CHECK_ERR(bl_cond_wait_timeout(NULL, 1), EINVAL);
    CHECK_ERR(bl_cond_wait_timeout(c, NAN), EINVAL);
    CHECK_ERR(bl_wg_wait(NULL), EINVAL);
    CHECK_ERR(bl_wg_wait_timeout(NULL, 1), EINVAL);
    CHECK_ERR(bl_wg_wait_timeout(wg, NAN), EINVAL);
    /* Cancelled: fails without waiting. */
    CHECK(bl_cancel(bl_self()) == 0);
    CHECK_ERR(bl_cond_wait_timeout(c, 0), ECANCELED);
    CHECK_ERR(bl_wg_wait(wg), ECANCELED);
    CHECK(bl_cond_free(c) == 0);
    CHECK(bl_wg_free(wg) == 0);
    return NULL;
}

static void test_errors(void)
{
    CHECK_ERR(bl_cond_signal(NULL), EINVAL);
    CHECK_ERR(bl_cond_broadcast(NULL), EINVAL);
    CHECK_ERR(bl_wg_add(NULL, 1), EINVAL);
    CHECK_ERR(bl_wg_done(NULL), EINVAL);
    CHECK(bl_cond_free(NULL) == 0);
    CHECK(bl_wg_free(NULL) == 0);

    /* Outside green threads: waits fail with EPERM (even at 0), the rest
     * works. */
    bl_cond *c = bl_cond_new();
    bl_wg *wg = bl_wg_new();
    CHECK(c != NULL && wg != NULL);
    CHECK_ERR(bl_cond_wait(c), EPERM);
    CHECK_ERR(bl_cond_wait_timeout(c, 0), EPERM);
    CHECK_ERR(bl_cond_wait(NULL), EPERM);
    CHECK_ERR(bl_wg_wait(wg), EPERM);
    CHECK_ERR(bl_wg_wait_timeout(wg, 0), EPERM);
    CHECK(bl_cond_signal(c) == 0);
    CHECK(bl_cond_broadcast(c) == 0);
    CHECK(bl_wg_add(wg, 2) == 0);
    CHECK(bl_wg_done(wg) == 0);

    /* Waiters of a scheduler that is not running are woken from outside
     * (main, between two bl_sched_run()s). */
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    waiter w1 = {.wg = wg, .timeout = -1}, w2 = {.c = c, .timeout = -1};
    CHECK(bl_spawn(s, wg_waiter, &w1) != NULL);
    CHECK(bl_spawn(s, cond_waiter, &w2) != NULL);
    CHECK_ERR(bl_sched_run(s), EDEADLK);    /* both wait, nothing else */
    CHECK(!w1.done && !w2.done);
    CHECK_ERR(bl_wg_free(wg), EBUSY);
    CHECK_ERR(bl_cond_free(c), EBUSY);
    CHECK(bl_wg_done(wg) == 0);
    CHECK(bl_cond_signal(c) == 1);
    CHECK(bl_sched_run(s) == 0);
    CHECK(w1.done && w1.rc == 0 && w2.done && w2.rc == 0);
    CHECK(bl_spawn(s, t_errors, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
    CHECK(bl_cond_free(c) == 0);
    CHECK(bl_wg_free(wg) == 0);
}

int main(void)
{
    core_run_green(t_cond, NULL);
    core_run_green(t_wg, NULL);
    core_run_green(t_crowd, NULL);
    test_errors();
    printf("ok\n");
    return 0;
}
