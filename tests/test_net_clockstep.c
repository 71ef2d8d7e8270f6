/* SPDX-License-Identifier: MIT */
/*
 * test_net_clockstep.c - timeouts follow the monotonic clock: a call that
 * waits several times (bl_readuntil() reading a line in pieces) keeps its
 * deadline when the wall clock is stepped back or forward meanwhile (an
 * NTP step, `date -s`).
 *
 * The step is simulated: this program defines clock_gettime() and
 * gettimeofday(), which the library and libev then call, and adds an offset
 * to the wall clock (CLOCK_REALTIME) only.
 */
#define _GNU_SOURCE
#include "netb_util.h"

#include <dlfcn.h>
#include <sys/time.h>

static volatile long wall_offset;   /* seconds added to the wall clock */

int clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    if (real == NULL)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT,
                                                            "clock_gettime");
    int r = real(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        ts->tv_sec += wall_offset;
    return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    (void)tz;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

#define TIMEOUT 1.0

static int sp[2];
static long step;

/* Steps the wall clock, then, after libev has noticed (it compares its
 * clocks at least every 0.5 s), sends part of a line: the reader wakes and
 * waits again for the rest, with what is left of its timeout. */
static void *stepper(void *arg)
{
    (void)arg;
    wall_offset = step;
    CHECK(bl_sleep(0.7) == 0);
    netb_write_all(sp[1], "abc", 3);
    return NULL;
}

static void *reader_main(void *arg)
{
    (void)arg;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
    bl_conn *c = bl_conn_new(sp[0]);
    CHECK(c != NULL);
    CHECK(bl_conn_set_timeout(c, TIMEOUT) == 0);
    CHECK(bl_spawn(NULL, stepper, NULL) != NULL);
    char buf[64];
    double t0 = core_now();
    CHECK_ERR(bl_readuntil(c, buf, sizeof buf, "\n", 1), ETIMEDOUT);
    NETB_CHECK_TOOK(t0, TIMEOUT, "bl_readuntil across a wall-clock step");
    wall_offset = 0;
    CHECK(bl_close(c) == 0);
    CHECK(close(sp[1]) == 0);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int fds0 = netb_begin();
    step = -1000;
    NETB_RUN(reader_main, NULL);
    printf("ok: the wall clock stepped back: the timeout still ends on time\n");
    step = 1000;
    NETB_RUN(reader_main, NULL);
    printf("ok: the wall clock stepped forward: the timeout does not end "
           "early\n");
    netb_end(fds0);
    return 0;
}
