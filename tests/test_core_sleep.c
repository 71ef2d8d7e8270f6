/* SPDX-License-Identifier: MIT */
/*
 * test_core_sleep.c - bl_sleep(): sleeps at least the time asked (measured
 * with CLOCK_MONOTONIC), sleepers wake in deadline order (also when many
 * deadlines pass during one busy stretch), bl_sleep(0) lets due timers and
 * ready I/O run before the caller goes on, and bad durations fail with
 * EINVAL.
 */
#include "core_util.h"

#include <math.h>
#include <sys/socket.h>

/* ---- at least d ---- */

static void *sleep_at_least(void *arg)
{
    (void)arg;
    static const double ds[] = {0.0001, 0.001, 0.002, 0.01, 0.03, 0.05};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        for (int rep = 0; rep < 3; rep++) {
            double t0 = core_now();
            CHECK(bl_sleep(ds[i]) == 0);
            double dt = core_now() - t0;
            if (dt < ds[i])
                CORE_FAIL("bl_sleep(%g) returned after only %.9f s", ds[i],
                          dt);
            if (dt > ds[i] + 2.0)
                CORE_FAIL("bl_sleep(%g) took %.3f s", ds[i], dt);
        }
    }
    return NULL;
}

/* Sleep while another thread keeps the scheduler busy (so ev_now() goes
 * stale between polls): still never early. */
static volatile int busy_stop;

static void *busy_yielder(void *arg)
{
    (void)arg;
    for (long n = 0; !busy_stop && n < 100000000L; n++)
        CHECK(bl_yield() == 0);
    return NULL;
}

static void *sleep_at_least_busy(void *arg)
{
    sleep_at_least(arg);
    busy_stop = 1;
    return NULL;
}

static void test_at_least(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, sleep_at_least, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    busy_stop = 0;
    CHECK(bl_spawn(s, busy_yielder, NULL) != NULL);
    CHECK(bl_spawn(s, sleep_at_least_busy, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
}

/* ---- deadline order ---- */

enum { NSLEEPERS = 9 };
static int order[NSLEEPERS];
static int norder;
static double durations[NSLEEPERS];

static void *sleep_record(void *arg)
{
    long i = (long)arg;
    double t0 = core_now();
    CHECK(bl_sleep(durations[i]) == 0);
    CHECK(core_now() - t0 >= durations[i]);
    order[norder++] = (int)i;
    return NULL;
}

/* Spin (without yielding) for `seconds`, so that every timer expires while
 * this thread holds the CPU and the scheduler sees them all at once. */
static void *hog(void *arg)
{
    double seconds = *(double *)arg;
    double t0 = core_now();
    while (core_now() - t0 < seconds) {
    }
    return NULL;
}

static void deadline_order(double unit, int clustered)
{
    /* Scrambled: spawn order is not deadline order. */
    static const int perm[NSLEEPERS] = {5, 2, 8, 0, 7, 3, 1, 6, 4};
    norder = 0;
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    for (long i = 0; i < NSLEEPERS; i++) {
        durations[i] = (perm[i] + 1) * unit;
        CHECK(bl_spawn(s, sleep_record, (void *)i) != NULL);
    }
    double hog_for = (NSLEEPERS + 2) * unit + 0.02;
    if (clustered)
        CHECK(bl_spawn(s, hog, &hog_for) != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK(norder == NSLEEPERS);
    char got[128] = "";
    size_t len = 0;
    for (int k = 0; k < NSLEEPERS; k++)
        len += (size_t)snprintf(got + len, sizeof got - len, " %g",
                                durations[order[k]] * 1e3);
    printf("wake order (%s, ms):%s\n", clustered ? "clustered" : "spread",
           got);
    for (int k = 1; k < NSLEEPERS; k++)
        if (durations[order[k - 1]] > durations[order[k]])
            CORE_FAIL("sleepers woke out of deadline order:%s", got);
    bl_sched_free(s);
}

/* ---- bl_sleep(0) runs due timers and ready I/O first ---- */

static int sv[2];
static int timer_ran, io_ran, other_ran;

static void *short_sleeper(void *arg)
{
    (void)arg;
    CHECK(bl_sleep(0.002) == 0);
    timer_ran = 1;
    return NULL;
}

static void *fd_waiter(void *arg)
{
    (void)arg;
    CHECK(bl_wait_fd(sv[0], BL_READ, 10.0) == BL_READ);
    io_ran = 1;
    return NULL;
}

static void *other(void *arg)
{
    (void)arg;
    other_ran = 1;
    return NULL;
}

static void *sleep0_checker(void *arg)
{
    (void)arg;
    /* Both waiters are blocked now (they ran first). */
    CHECK(!timer_ran && !io_ran);
    /* Make I/O ready and let the timer expire, without giving anyone a
     * turn. */
    CHECK(write(sv[1], "x", 1) == 1);
    double t0 = core_now();
    while (core_now() - t0 < 0.02) {
    }
    CHECK(!timer_ran && !io_ran);
    /* A thread made ready now also runs first. */
    CHECK(bl_spawn(NULL, other, NULL) != NULL);
    CHECK(bl_sleep(0) == 0);
    if (!timer_ran || !io_ran || !other_ran)
        CORE_FAIL("after bl_sleep(0): timer thread ran %d, I/O thread ran %d, "
                  "ready thread ran %d (all expected 1)", timer_ran, io_ran,
                  other_ran);
    return NULL;
}

static void test_sleep0(void)
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    timer_ran = io_ran = other_ran = 0;
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, short_sleeper, NULL) != NULL);
    CHECK(bl_spawn(s, fd_waiter, NULL) != NULL);
    CHECK(bl_spawn(s, sleep0_checker, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
    close(sv[0]);
    close(sv[1]);
}

/* bl_sleep(0) alone in the scheduler returns promptly, many times. */
static void *sleep0_loop(void *arg)
{
    (void)arg;
    double t0 = core_now();
    for (int i = 0; i < 1000; i++)
        CHECK(bl_sleep(0) == 0);
    CHECK(core_now() - t0 < 5.0);
    return NULL;
}

/* ---- EINVAL ---- */

static void *bad_durations(void *arg)
{
    (void)arg;
    CHECK_ERR(bl_sleep(-1), EINVAL);
    CHECK_ERR(bl_sleep(-1e-9), EINVAL);
    CHECK_ERR(bl_sleep(-INFINITY), EINVAL);
    CHECK_ERR(bl_sleep(NAN), EINVAL);
    CHECK_ERR(bl_sleep(-NAN), EINVAL);
    /* The thread is still fine afterwards. */
    CHECK(bl_sleep(0.001) == 0);
    return (void *)1;
}

static void test_misc(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_thread *a = bl_spawn(s, sleep0_loop, NULL);
    bl_thread *b = bl_spawn(s, bad_durations, NULL);
    CHECK(a != NULL && b != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
}

int main(void)
{
    test_at_least();
    deadline_order(0.01, 0);
    deadline_order(0.001, 1);
    test_sleep0();
    test_misc();
    printf("core_sleep: ok\n");
    return 0;
}
