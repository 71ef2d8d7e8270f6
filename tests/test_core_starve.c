/* SPDX-License-Identifier: MIT */
/*
 * test_core_starve.c - threads that call bl_yield() in an endless loop do not
 * starve timers or I/O: a sleeper wakes close to its deadline and a thread
 * blocked in bl_wait_fd() runs soon after its descriptor becomes ready.
 *
 * Lateness is bounded in CPU time of the scheduler's OS thread, not in wall
 * time: the CPU time the yielders burn between the moment the wake-up became
 * due and the wake-up. A starved timer or descriptor lets them burn seconds;
 * a loaded machine that deschedules the process stretches wall time but not
 * that. The bound (50 ms of CPU) is 100 times the scheduler's poll interval.
 * Wall-clock lateness is printed.
 */
#include "core_util.h"

#include <pthread.h>
#include <sys/socket.h>

static volatile int stop;
static long yields[2];

static double cpu_now(void)
{
    struct timespec ts;
    CHECK(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The monotonic time at which a wake-up is due (0: none yet; written by
 * another OS thread in io_case()), and the scheduler thread's CPU time when
 * a yielder first saw it pass (0: not yet). */
static double due;
static double cpu_at_due;

static void set_due(double t)
{
    __atomic_store(&due, &t, __ATOMIC_RELEASE);
}

static void reset_due(void)
{
    set_due(0);
    cpu_at_due = 0;
}

static void note_due(void)
{
    double d;
    __atomic_load(&due, &d, __ATOMIC_ACQUIRE);
    if (cpu_at_due == 0 && d > 0 && core_now() >= d)
        cpu_at_due = cpu_now();
}

/* CPU time of this OS thread since the wake-up became due. */
static double cpu_late(void)
{
    note_due();
    return cpu_at_due == 0 ? 0 : cpu_now() - cpu_at_due;
}

static void *yielder(void *arg)
{
    long i = (long)arg;
    /* Bounded: about 60 s of yielding at the very least. */
    for (long n = 0; !stop && n < 2000000000L; n++) {
        CHECK(bl_yield() == 0);
        yields[i]++;
        note_due();
    }
    return NULL;
}

/* ---- timers ---- */

static double sleep_late, sleep_cpu_late;

static void *sleeper(void *arg)
{
    (void)arg;
    double t0 = core_now();
    set_due(t0 + 0.05);
    CHECK(bl_sleep(0.05) == 0);
    double dt = core_now() - t0;
    sleep_cpu_late = cpu_late();
    sleep_late = dt - 0.05;
    stop = 1;
    return NULL;
}

static void timer_case(int nyielders)
{
    stop = 0;
    yields[0] = yields[1] = 0;
    reset_due();
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    /* The yielders come first, so they are already spinning when the
     * sleeper starts its sleep. */
    for (long i = 0; i < nyielders; i++)
        CHECK(bl_spawn(s, yielder, (void *)i) != NULL);
    CHECK(bl_spawn(s, sleeper, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    printf("timer with %d yielder(s): lateness %.3f ms (%.3f ms of CPU), "
           "yields %ld + %ld\n", nyielders, sleep_late * 1e3,
           sleep_cpu_late * 1e3, yields[0], yields[1]);
    CHECK(sleep_late >= 0);
    CHECK(sleep_cpu_late < 0.05);
    /* The yielders really did run meanwhile. */
    for (int i = 0; i < nyielders; i++)
        CHECK(yields[i] > 0);
    bl_sched_free(s);
}

/* ---- I/O: another OS thread writes to a socketpair ---- */

static int sv[2];
static double written_at, woken_at, woken_cpu_late;

static void *writer_os_thread(void *arg)
{
    (void)arg;
    usleep(50000);
    written_at = core_now();
    set_due(written_at);
    CHECK(write(sv[1], "x", 1) == 1);
    return NULL;
}

static void *io_waiter(void *arg)
{
    (void)arg;
    int r = bl_wait_fd(sv[0], BL_READ, 10.0);
    woken_at = core_now();
    woken_cpu_late = cpu_late();
    CHECK(r == BL_READ);
    char c;
    CHECK(read(sv[0], &c, 1) == 1 && c == 'x');
    stop = 1;
    return NULL;
}

static void io_case(int nyielders)
{
    stop = 0;
    yields[0] = yields[1] = 0;
    reset_due();
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, io_waiter, NULL) != NULL);
    for (long i = 0; i < nyielders; i++)
        CHECK(bl_spawn(s, yielder, (void *)i) != NULL);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, writer_os_thread, NULL) == 0);
    CHECK(bl_sched_run(s) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    double late = woken_at - written_at;
    printf("I/O with %d yielder(s): woken %.3f ms after the write "
           "(%.3f ms of CPU), yields %ld + %ld\n", nyielders, late * 1e3,
           woken_cpu_late * 1e3, yields[0], yields[1]);
    CHECK(late >= 0);
    CHECK(woken_cpu_late < 0.05);
    for (int i = 0; i < nyielders; i++)
        CHECK(yields[i] > 0);
    bl_sched_free(s);
    close(sv[0]);
    close(sv[1]);
}

/* ---- I/O made ready by a green thread that then yields forever ---- */

static void *write_then_yield(void *arg)
{
    (void)arg;
    /* Let the waiter block first. */
    CHECK(bl_yield() == 0);
    written_at = core_now();
    set_due(written_at);
    CHECK(write(sv[1], "x", 1) == 1);
    return yielder((void *)0);
}

static void io_green_writer_case(void)
{
    stop = 0;
    yields[0] = yields[1] = 0;
    reset_due();
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, io_waiter, NULL) != NULL);
    CHECK(bl_spawn(s, write_then_yield, NULL) != NULL);
    CHECK(bl_spawn(s, yielder, (void *)1) != NULL);
    CHECK(bl_sched_run(s) == 0);
    double late = woken_at - written_at;
    printf("I/O from a yielding green thread: woken %.3f ms after the write "
           "(%.3f ms of CPU)\n", late * 1e3, woken_cpu_late * 1e3);
    CHECK(late >= 0);
    CHECK(woken_cpu_late < 0.05);
    bl_sched_free(s);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    timer_case(1);
    timer_case(2);
    io_case(1);
    io_case(2);
    io_green_writer_case();
    printf("core_starve: ok\n");
    return 0;
}
