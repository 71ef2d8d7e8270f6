/* SPDX-License-Identifier: MIT */
/*
 * test_core_cancel.c - bl_cancel(): a thread blocked in bl_sleep(), bl_join(),
 * bl_wait_fd() or waiting in the ready queue after bl_yield() gets
 * ECANCELED, and so does every later blocking call; it can still clean up
 * and return a value that bl_join() reports. Cancelling an ended thread does
 * nothing; cancelling from outside green threads works (before
 * bl_sched_run(), and from a libev callback while the scheduler runs).
 */
#include "core_util.h"

#include <ev.h>
#include <math.h>
#include <sys/socket.h>

static int sv[2];
/* Threads that sleep until cancelled: [0] is joined by after_cancel_checks(),
 * [1] by victim_join, [2] by victim_join_timeout (one joiner each). */
static bl_thread *forever[3];

static void *sleep_forever(void *arg)
{
    (void)arg;
    errno = 0;
    int r = bl_sleep(INFINITY);
    CHECK(r == -1 && errno == ECANCELED);
    return (void *)0xf0;
}

static void *ret_arg(void *arg)
{
    return arg;
}

/* Everything that must fail once the caller is cancelled. */
static void after_cancel_checks(void)
{
    CHECK(bl_cancelled() != 0);
    CHECK_ERR(bl_sleep(0.001), ECANCELED);
    CHECK_ERR(bl_sleep(0), ECANCELED);
    CHECK_ERR(bl_sleep(INFINITY), ECANCELED);
    CHECK_ERR(bl_yield(), ECANCELED);
    CHECK_ERR(bl_join(forever[0], NULL), ECANCELED);
    CHECK_ERR(bl_join_timeout(forever[0], NULL, 0.01), ECANCELED);
    CHECK_ERR(bl_wait_fd(sv[0], BL_READ, 0.01), ECANCELED);
    CHECK_ERR(bl_wait_fd(sv[0], BL_READ, -1), ECANCELED);
    /* Non-blocking calls still work: spawning a helper, and joining a thread
     * that has already ended. */
    bl_thread *t = bl_spawn(NULL, ret_arg, (void *)0x77);
    CHECK(t != NULL);
    CHECK(bl_cancelled() != 0);
    /* It has not run yet, so joining would block: ECANCELED, and it stays
     * joinable by someone else. */
    CHECK_ERR(bl_join(t, NULL), ECANCELED);
    CHECK(bl_detach(t) == 0);
    CHECK(bl_cancelled() != 0);
}

/* ---- victims, one per blocking call ---- */

static int cleanups;

static void *victim_sleep(void *arg)
{
    (void)arg;
    CHECK(bl_cancelled() == 0);
    double t0 = core_now();
    CHECK_ERR(bl_sleep(30.0), ECANCELED);
    CHECK(core_now() - t0 < 10.0);
    after_cancel_checks();
    cleanups++;
    return (void *)101;
}

static void *victim_join(void *arg)
{
    (void)arg;
    CHECK_ERR(bl_join(forever[1], NULL), ECANCELED);
    after_cancel_checks();
    cleanups++;
    return (void *)102;
}

static void *victim_wait_fd(void *arg)
{
    (void)arg;
    CHECK_ERR(bl_wait_fd(sv[0], BL_READ, -1), ECANCELED);
    after_cancel_checks();
    cleanups++;
    return (void *)103;
}

static void *victim_wait_fd_timeout(void *arg)
{
    (void)arg;
    CHECK_ERR(bl_wait_fd(sv[0], BL_READ, 30.0), ECANCELED);
    after_cancel_checks();
    cleanups++;
    return (void *)104;
}

static void *victim_join_timeout(void *arg)
{
    (void)arg;
    CHECK_ERR(bl_join_timeout(forever[2], NULL, 30.0), ECANCELED);
    after_cancel_checks();
    cleanups++;
    return (void *)105;
}

static void *victim_yield(void *arg)
{
    (void)arg;
    /* Cancelled by the canceller while we wait in the ready queue. */
    CHECK_ERR(bl_yield(), ECANCELED);
    after_cancel_checks();
    cleanups++;
    return (void *)106;
}

static void *canceller(void *arg)
{
    bl_thread **v = arg;
    /* v[0..4] have blocked by now (they ran before us); v[5] yielded and
     * waits behind us in the ready queue. */
    for (int i = 0; i < 6; i++)
        CHECK(bl_cancel(v[i]) == 0);
    /* Cancelling twice is harmless. */
    CHECK(bl_cancel(v[0]) == 0);
    static const long want[6] = {101, 102, 103, 104, 105, 106};
    for (int i = 0; i < 6; i++) {
        void *r = NULL;
        CHECK(bl_join(v[i], &r) == 0);
        if (r != (void *)want[i])
            CORE_FAIL("victim %d returned %p, expected %ld", i, r, want[i]);
    }
    CHECK(cleanups == 6);
    /* The threads they were joining are untouched (still asleep, still
     * joinable); cancel them, join them. */
    void *r = NULL;
    for (int i = 0; i < 3; i++) {
        CHECK_ERR(bl_join_timeout(forever[i], NULL, 0.001), ETIMEDOUT);
        CHECK(bl_cancel(forever[i]) == 0);
        CHECK(bl_join(forever[i], &r) == 0);
        CHECK(r == (void *)0xf0);
    }
    /* Cancelling an ended, not yet joined thread: 0, nothing changes. */
    bl_thread *e = bl_spawn(NULL, ret_arg, (void *)55);
    CHECK(bl_yield() == 0);
    CHECK(bl_cancel(e) == 0);
    CHECK(bl_join(e, &r) == 0);
    CHECK(r == (void *)55);
    CHECK(bl_cancelled() == 0);
    return NULL;
}

static void test_victims(void)
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    cleanups = 0;
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    for (int i = 0; i < 3; i++)
        CHECK((forever[i] = bl_spawn(s, sleep_forever, NULL)) != NULL);
    bl_thread *v[6];
    v[0] = bl_spawn(s, victim_sleep, NULL);
    v[1] = bl_spawn(s, victim_join, NULL);
    v[2] = bl_spawn(s, victim_wait_fd, NULL);
    v[3] = bl_spawn(s, victim_wait_fd_timeout, NULL);
    v[4] = bl_spawn(s, victim_join_timeout, NULL);
    v[5] = bl_spawn(s, victim_yield, NULL);
    for (int i = 0; i < 6; i++)
        CHECK(v[i] != NULL);
    CHECK(bl_spawn(s, canceller, v) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
    close(sv[0]);
    close(sv[1]);
}

/* ---- cancelled before it ever ran, from main() ---- */

static void *cancelled_at_start(void *arg)
{
    (void)arg;
    CHECK(bl_cancelled() != 0);
    CHECK_ERR(bl_sleep(0.01), ECANCELED);
    CHECK_ERR(bl_yield(), ECANCELED);
    return (void *)7;
}

static void *joiner_of(void *arg)
{
    void *r = NULL;
    CHECK(bl_join(arg, &r) == 0);
    CHECK(r == (void *)7);
    CHECK(bl_cancelled() == 0);
    return (void *)8;
}

static void test_cancel_from_main(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_thread *t = bl_spawn(s, cancelled_at_start, NULL);
    CHECK(t != NULL);
    CHECK(bl_cancel(t) == 0);
    bl_thread *j = bl_spawn(s, joiner_of, t);
    CHECK(j != NULL);
    CHECK(bl_sched_run(s) == 0);
    /* j ended but is not joined: cancelling it is a no-op. */
    CHECK(bl_cancel(j) == 0);
    bl_sched_free(s);
}

/* ---- cancelled from a libev callback while the scheduler runs ---- */

static bl_thread *cb_victim;
static int cb_ran;

static void cancel_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    cb_ran = 1;
    /* Outside any green thread, on the scheduler's OS thread. */
    CHECK(bl_self() == NULL);
    CHECK(bl_cancel(cb_victim) == 0);
}

static void *cb_victim_fn(void *arg)
{
    (void)arg;
    double t0 = core_now();
    CHECK_ERR(bl_sleep(30.0), ECANCELED);
    double dt = core_now() - t0;
    CHECK(dt >= 0.015 && dt < 10.0);
    CHECK(bl_cancelled());
    return (void *)9;
}

static void *cb_joiner(void *arg)
{
    (void)arg;
    void *r = NULL;
    CHECK(bl_join(cb_victim, &r) == 0);
    CHECK(r == (void *)9);
    return NULL;
}

static void test_cancel_from_callback(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    cb_victim = bl_spawn(s, cb_victim_fn, NULL);
    CHECK(cb_victim != NULL);
    CHECK(bl_spawn(s, cb_joiner, NULL) != NULL);
    ev_timer w;
    ev_timer_init(&w, cancel_cb, 0.02, 0.);
    ev_timer_start(bl_sched_loop(s), &w);
    CHECK(bl_sched_run(s) == 0);
    CHECK(cb_ran);
    ev_timer_stop(bl_sched_loop(s), &w);
    bl_sched_free(s);
}

/* ---- cancelled after being woken, before running again ---- */

/* Two sleepers whose timers expire in the same poll: the first to run
 * cancels the other, which is ready (its timer fired) but has not run. Its
 * bl_sleep() must fail with ECANCELED all the same. */
static bl_thread *late_sleeper;
static int late_rc, late_errno;

static void *early_fn(void *arg)
{
    (void)arg;
    CHECK(bl_sleep(0.010) == 0);
    CHECK(bl_cancel(late_sleeper) == 0);
    return NULL;
}

static void *late_fn(void *arg)
{
    (void)arg;
    errno = 0;
    late_rc = bl_sleep(0.011);
    late_errno = errno;
    return NULL;
}

static void *hog_fn(void *arg)
{
    (void)arg;
    /* Keep the CPU past both timers, so that one poll finds them both. */
    double t0 = core_now();
    while (core_now() - t0 < 0.05)
        ;
    return NULL;
}

/* A joiner cancelled after its target ended and woke it, before it ran: the
 * target had ended before the cancel, so the join succeeds and reaps it
 * (the documented exception). */
static bl_thread *joiner;

static void *target_fn(void *arg)
{
    (void)arg;
    return (void *)42;
}

static void *canceller_fn(void *arg)
{
    (void)arg;
    CHECK(bl_cancel(joiner) == 0);
    return NULL;
}

static void *joiner_fn(void *arg)
{
    (void)arg;
    /* Queued: target, canceller. The target's end queues us after the
     * canceller, which then cancels us while we are ready. */
    bl_thread *t = bl_spawn(NULL, target_fn, NULL);
    CHECK(t != NULL);
    CHECK(bl_spawn(NULL, canceller_fn, NULL) != NULL);
    void *r = NULL;
    CHECK(bl_join(t, &r) == 0);
    CHECK(r == (void *)42);
    CHECK(bl_cancelled());
    CHECK_ERR(bl_sleep(1), ECANCELED);
    return NULL;
}

static void test_cancel_after_wake(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, early_fn, NULL) != NULL);
    late_sleeper = bl_spawn(s, late_fn, NULL);
    CHECK(late_sleeper != NULL);
    CHECK(bl_spawn(s, hog_fn, NULL) != NULL);
    joiner = bl_spawn(s, joiner_fn, NULL);
    CHECK(joiner != NULL);
    CHECK(bl_sched_run(s) == 0);
    if (late_rc != -1 || late_errno != ECANCELED)
        CORE_FAIL("bl_sleep of a thread cancelled after its timer fired "
                  "returned %d (%s), want -1 ECANCELED", late_rc,
                  strerror(late_errno));
    bl_sched_free(s);
}

int main(void)
{
    test_victims();
    test_cancel_from_main();
    test_cancel_from_callback();
    test_cancel_after_wake();
    printf("core_cancel: ok\n");
    return 0;
}
