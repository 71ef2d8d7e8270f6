/* SPDX-License-Identifier: MIT */
/*
 * test_core_join.c - bl_join(), bl_join_timeout(), bl_detach(), bl_exit() and
 * the misuse cases that must fail cleanly (EINVAL, EDEADLK) rather than
 * crash: NULL handles, double join, join of a detached thread, two joiners,
 * self join, double detach, a thread of another scheduler.
 */
#include "core_util.h"

#include <math.h>

static bl_sched *other_sched;

static void *ret_arg(void *arg)
{
    return arg;
}

static void *yield_then_ret(void *arg)
{
    for (int i = 0; i < 3; i++)
        CHECK(bl_yield() == 0);
    return arg;
}

static void *sleep_then_ret(void *arg)
{
    CHECK(bl_sleep(0.05) == 0);
    return arg;
}

static int after_exit_ran;

static void __attribute__((noinline)) nested_exit(int depth, void *v)
{
    if (depth > 0) {
        nested_exit(depth - 1, v);
        after_exit_ran = 1; /* never reached */
        return;
    }
    bl_exit(v);
    after_exit_ran = 1;
}

static void *exits_nested(void *arg)
{
    nested_exit(5, arg);
    after_exit_ran = 1;
    return (void *)0xdead;
}

static int y_ran;

static void *mark_y(void *arg)
{
    (void)arg;
    y_ran = 1;
    return NULL;
}

static bl_thread *shared_target;
static int second_joiner_err;

static void *second_joiner(void *arg)
{
    (void)arg;
    errno = 0;
    int r = bl_join(shared_target, NULL);
    second_joiner_err = r == 0 ? 0 : errno;
    return NULL;
}

static void *main_thread(void *arg)
{
    (void)arg;
    void *r;

    /* Return value, with the target still running when the join starts. */
    bl_thread *t = bl_spawn(NULL, yield_then_ret, (void *)0x1234);
    CHECK(t != NULL);
    r = NULL;
    CHECK(bl_join(t, &r) == 0);
    CHECK(r == (void *)0x1234);

    /* Through a sleep; result pointer NULL is fine. */
    t = bl_spawn(NULL, sleep_then_ret, (void *)1);
    CHECK(bl_join(t, NULL) == 0);

    /* bl_exit() from a nested function. */
    after_exit_ran = 0;
    t = bl_spawn(NULL, exits_nested, (void *)0xabcd);
    CHECK(t != NULL);
    r = NULL;
    CHECK(bl_join(t, &r) == 0);
    CHECK(r == (void *)0xabcd);
    CHECK(after_exit_ran == 0);

    /* Already ended: returns at once, without letting other threads run. */
    t = bl_spawn(NULL, ret_arg, (void *)77);
    CHECK(bl_yield() == 0); /* t runs and ends */
    y_ran = 0;
    bl_thread *y = bl_spawn(NULL, mark_y, NULL);
    CHECK(y != NULL);
    r = NULL;
    CHECK(bl_join(t, &r) == 0);
    CHECK(r == (void *)77);
    CHECK(y_ran == 0);
    CHECK(bl_join(y, NULL) == 0);
    CHECK(y_ran == 1);

    /* Join yourself. */
    CHECK_ERR(bl_join(bl_self(), NULL), EDEADLK);
    CHECK_ERR(bl_join_timeout(bl_self(), NULL, 1.0), EDEADLK);

    /* Second join after a successful one: EINVAL, no crash. */
    t = bl_spawn(NULL, ret_arg, (void *)3);
    CHECK(bl_join(t, NULL) == 0);
    CHECK_ERR(bl_join(t, NULL), EINVAL);
    CHECK_ERR(bl_join_timeout(t, NULL, 0.01), EINVAL);
    CHECK_ERR(bl_detach(t), EINVAL);
    CHECK_ERR(bl_cancel(t), EINVAL);
    CHECK_NULL_ERR(bl_thread_name(t), EINVAL);

    /* Join of a detached thread, live and then ended. */
    t = bl_spawn(NULL, yield_then_ret, NULL);
    CHECK(bl_detach(t) == 0);
    CHECK_ERR(bl_join(t, NULL), EINVAL);
    CHECK_ERR(bl_detach(t), EINVAL); /* detach twice */
    for (int i = 0; i < 10; i++)
        CHECK(bl_yield() == 0); /* it ends and is reaped */
    CHECK_ERR(bl_join(t, NULL), EINVAL);

    /* Detach an ended thread: reaped at once; join then fails. */
    t = bl_spawn(NULL, ret_arg, NULL);
    CHECK(bl_yield() == 0);
    CHECK(bl_detach(t) == 0);
    CHECK_ERR(bl_join(t, NULL), EINVAL);
    CHECK_ERR(bl_detach(t), EINVAL);

    /* Two threads joining the same thread: the second gets EINVAL. */
    shared_target = bl_spawn(NULL, sleep_then_ret, (void *)9);
    CHECK(shared_target != NULL);
    bl_thread *j2 = bl_spawn(NULL, second_joiner, NULL);
    CHECK(j2 != NULL);
    second_joiner_err = -1;
    r = NULL;
    CHECK(bl_join(shared_target, &r) == 0); /* we join first */
    CHECK(r == (void *)9);
    CHECK(bl_join(j2, NULL) == 0);
    if (second_joiner_err != EINVAL)
        CORE_FAIL("second joiner got errno %d, expected EINVAL",
                  second_joiner_err);
    /* And detach of a thread being joined fails too. */
    shared_target = bl_spawn(NULL, sleep_then_ret, NULL);
    j2 = bl_spawn(NULL, second_joiner, NULL); /* joins first this time */
    CHECK(bl_yield() == 0);
    CHECK_ERR(bl_detach(shared_target), EINVAL);
    CHECK_ERR(bl_join(shared_target, NULL), EINVAL);
    CHECK(bl_join(j2, NULL) == 0);
    CHECK(second_joiner_err == 0);

    /* Timeouts: ETIMEDOUT, the target is left joinable. */
    t = bl_spawn(NULL, sleep_then_ret, (void *)11);
    double t0 = core_now();
    CHECK_ERR(bl_join_timeout(t, &r, 0.01), ETIMEDOUT);
    double dt = core_now() - t0;
    CHECK(dt >= 0.01 && dt < 2.0);
    CHECK_ERR(bl_join_timeout(t, &r, 0), ETIMEDOUT);
    CHECK_ERR(bl_join_timeout(t, &r, NAN), EINVAL);
    r = NULL;
    CHECK(bl_join_timeout(t, &r, 5.0) == 0);
    CHECK(r == (void *)11);
    t = bl_spawn(NULL, sleep_then_ret, (void *)12);
    CHECK_ERR(bl_join_timeout(t, &r, 0.001), ETIMEDOUT);
    CHECK(bl_join(t, &r) == 0); /* a plain join afterwards */
    CHECK(r == (void *)12);
    t = bl_spawn(NULL, ret_arg, (void *)13);
    CHECK(bl_join_timeout(t, &r, -1) == 0); /* negative: no limit */
    CHECK(r == (void *)13);
    t = bl_spawn(NULL, ret_arg, (void *)14);
    CHECK(bl_yield() == 0);
    /* A NaN timeout is rejected also when the target has ended (and the
     * target is left joinable). */
    CHECK_ERR(bl_join_timeout(t, &r, NAN), EINVAL);
    CHECK(bl_join_timeout(t, &r, 0) == 0); /* ended: timeout 0 is fine */
    CHECK(r == (void *)14);

    /* NULL handles. */
    CHECK_ERR(bl_join(NULL, NULL), EINVAL);
    CHECK_ERR(bl_join(NULL, &r), EINVAL);
    CHECK_ERR(bl_join_timeout(NULL, &r, 1.0), EINVAL);
    CHECK_ERR(bl_detach(NULL), EINVAL);
    CHECK_ERR(bl_cancel(NULL), EINVAL);
    CHECK_ERR(bl_thread_set_name(NULL, "x"), EINVAL);
    CHECK_NULL_ERR(bl_thread_name(NULL), EINVAL);
    errno = 0;
    CHECK(bl_thread_id(NULL) == 0 && errno == EINVAL);
    CHECK_NULL_ERR(bl_spawn(NULL, NULL, NULL), EINVAL);
    CHECK_NULL_ERR(bl_spawn_ex(NULL, NULL, NULL, NULL), EINVAL);

    /* A thread of another scheduler: EINVAL. */
    bl_thread *foreign = bl_spawn(other_sched, ret_arg, NULL);
    CHECK(foreign != NULL);
    CHECK_ERR(bl_join(foreign, NULL), EINVAL);
    CHECK_ERR(bl_join_timeout(foreign, NULL, 0.01), EINVAL);

    /* Thread ids: unique, nonzero. */
    bl_thread *a = bl_spawn(NULL, ret_arg, NULL);
    bl_thread *b = bl_spawn(NULL, ret_arg, NULL);
    CHECK(bl_thread_id(a) != 0 && bl_thread_id(b) != 0);
    CHECK(bl_thread_id(a) != bl_thread_id(b));
    CHECK(bl_thread_id(bl_self()) != bl_thread_id(a));
    CHECK(bl_join(a, NULL) == 0 && bl_join(b, NULL) == 0);

    return (void *)42;
}

/* bl_exit() straight from the thread function, and bl_exit(NULL). */
static void *exits_direct(void *arg)
{
    bl_exit(arg);
    return (void *)1;
}

static void *main2(void *arg)
{
    (void)arg;
    void *r = (void *)1;
    bl_thread *t = bl_spawn(NULL, exits_direct, NULL);
    CHECK(bl_join(t, &r) == 0);
    CHECK(r == NULL);
    t = bl_spawn(NULL, exits_direct, (void *)5);
    CHECK(bl_join(t, &r) == 0);
    CHECK(r == (void *)5);
    return NULL;
}

int main(void)
{
    bl_sched *s = bl_sched_new();
    other_sched = bl_sched_new();
    CHECK(s != NULL && other_sched != NULL);

    /* NULL handles outside green threads too (where they are not blocking
     * calls, they must say EINVAL). */
    CHECK_ERR(bl_detach(NULL), EINVAL);
    CHECK_ERR(bl_cancel(NULL), EINVAL);
    CHECK_NULL_ERR(bl_thread_name(NULL), EINVAL);
    CHECK_ERR(bl_thread_set_name(NULL, NULL), EINVAL);
    CHECK_ERR(bl_sched_run(NULL), EINVAL);
    bl_sched_free(NULL);

    bl_thread *m = bl_spawn(s, main_thread, NULL);
    bl_thread *m2 = bl_spawn(s, main2, NULL);
    CHECK(m != NULL && m2 != NULL);
    CHECK(bl_sched_run(s) == 0);
    /* Handles of ended, unjoined threads stay valid until the scheduler is
     * freed; we can still read their names. */
    CHECK(bl_thread_name(m) != NULL);
    CHECK(bl_thread_id(m) != 0);
    /* The foreign thread runs on its own scheduler. */
    CHECK(bl_sched_run(other_sched) == 0);
    bl_sched_free(other_sched);
    bl_sched_free(s);
    printf("core_join: ok\n");
    return 0;
}
