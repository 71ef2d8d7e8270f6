/* SPDX-License-Identifier: MIT */
/*
 * test_core_tsan.c - ThreadSanitizer sees green threads as what they are
 * (built with -DBLUELET_TSAN=ON; elsewhere it skips, exit 77):
 * - green threads of one scheduler take turns on one OS thread, so their
 *   plain accesses to shared data are ordered by the switches: no report;
 * - a thread that ends deep in its call stack (bl_exit()), many times over,
 *   leaves nothing behind in TSan's view of the next thread in its slot
 *   (a fiber keeps a shadow call stack of 64 Ki frames);
 * - an ended thread holds no fiber: TSan allows 8128 threads and fibers at
 *   once, and counts ended threads' fibers until they are destroyed;
 * - green threads of two schedulers in two OS threads that write the same
 *   variable without synchronisation are reported, with the green thread's
 *   name and its own call stack: proof that this test can fail.
 * Each case runs in a child whose stderr holds TSan's reports.
 */
#include "core_util.h"

#include <pthread.h>

#ifndef CORE_TSAN

int main(void)
{
    printf("skip: not built with ThreadSanitizer (-DBLUELET_TSAN=ON)\n");
    return 77;
}

#else

#define ROUNDS 20000

/* ---- one scheduler: ordered by the switches ---- */

static long shared_counter;   /* plain, on purpose */

static void *take_turns(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        shared_counter++;
        CHECK(bl_yield() == 0);
    }
    return NULL;
}

static void *sleeper_writes(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        shared_counter += 2;
        CHECK(bl_sleep(0.001) == 0);
    }
    return NULL;
}

static int child_one_sched(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, take_turns, NULL) != NULL);
    CHECK(bl_spawn(s, take_turns, NULL) != NULL);
    CHECK(bl_spawn(s, sleeper_writes, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
    /* Read in the scheduler's caller: after the threads, in its order. */
    CHECK(shared_counter == 2L * ROUNDS + 40);
    return 0;
}

/* ---- threads that end deep in their call stack ---- */

/* Slots are reused round a free list of 64: each is reused 125 times,
 * 125,000 frames left behind in all, were its fiber reused too. */
#define DEEP_THREADS 8000
#define DEEP_FRAMES 1000

static int depth_reached;

static void descend(int n);
/* Called through a pointer, so that the frames stay frames. */
static void (*volatile descend_p)(int) = descend;

static void descend(int n)
{
    if (n > 0) {
        descend_p(n - 1);
        __asm__ volatile("" ::: "memory");   /* not a tail call */
        return;
    }
    depth_reached++;
    bl_exit(NULL);
    CORE_FAIL("bl_exit() returned");
}

static void *exit_deep(void *arg)
{
    descend_p((int)(intptr_t)arg);
    return NULL;
}

static void *spawn_deep(void *arg)
{
    (void)arg;
    for (int i = 0; i < DEEP_THREADS; i++) {
        bl_thread *t = bl_spawn(NULL, exit_deep, (void *)(intptr_t)DEEP_FRAMES);
        CHECK(t != NULL);
        CHECK(bl_join(t, NULL) == 0);
    }
    return NULL;
}

static int child_deep_exits(void)
{
    core_run_green(spawn_deep, NULL);
    CHECK(depth_reached == DEEP_THREADS);
    return 0;
}

/* ---- ended threads hold no fibers ---- */

#define ENDED 6000
#define LIVE 4000   /* with ENDED, more than TSan's 8128 */

static void *nothing(void *arg)
{
    return arg;
}

static void *hold(void *arg)
{
    (void)arg;
    CHECK(bl_sleep(0.2) == 0);
    return NULL;
}

static int child_ended_fibers(void)
{
    /* A keeps ENDED slots of detached threads that have ended. */
    bl_sched *a = bl_sched_new();
    CHECK(a != NULL);
    bl_spawn_opts o = {.size = sizeof o, .detached = 1};
    for (int i = 0; i < ENDED; i++)
        CHECK(bl_spawn_ex(a, nothing, NULL, &o) != NULL);
    CHECK(bl_sched_run(a) == 0);
    CHECK(bl_sched_nthreads(a) == 0);
    /* B, while A exists: LIVE threads alive at once. */
    bl_sched *b = bl_sched_new();
    CHECK(b != NULL);
    for (int i = 0; i < LIVE; i++)
        CHECK(bl_spawn_ex(b, hold, NULL, &o) != NULL);
    CHECK(bl_sched_run(b) == 0);
    bl_sched_free(b);
    bl_sched_free(a);
    return 0;
}

/* ---- two schedulers in two OS threads: a race ---- */

static long racy;                /* written by both, unsynchronised */
static int arrived;

static void *racer(void *arg)
{
    (void)arg;
    CHECK(bl_thread_set_name(bl_self(), "racer-green") == 0);
    /* Meet the other OS thread, so that both write at about the same time;
     * the meeting itself is atomic, without acquire or release. */
    __atomic_fetch_add(&arrived, 1, __ATOMIC_RELAXED);
    while (__atomic_load_n(&arrived, __ATOMIC_RELAXED) < 2)
        CHECK(bl_yield() == 0);
    for (int i = 0; i < 1000; i++) {
        racy++;
        CHECK(bl_yield() == 0);
    }
    return NULL;
}

static void *racer_os_thread(void *arg)
{
    (void)arg;
    core_run_green(racer, NULL);
    return NULL;
}

static int child_race(void)
{
    pthread_t a, b;
    CHECK(pthread_create(&a, NULL, racer_os_thread, NULL) == 0);
    CHECK(pthread_create(&b, NULL, racer_os_thread, NULL) == 0);
    CHECK(pthread_join(a, NULL) == 0);
    CHECK(pthread_join(b, NULL) == 0);
    return 0;
}

static void run_case(const char *what, int (*fn)(void), int want_race)
{
    static core_child c;
    core_run_child(fn, 120.0, &c);
    char st[64];
    core_child_describe(&c, st, sizeof st);
    int race = strstr(c.err, "ThreadSanitizer: data race") != NULL;
    int any = strstr(c.err, "ThreadSanitizer") != NULL;
    if (!want_race) {
        if (any || !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0)
            CORE_FAIL("%s: child %s, stderr:\n%s", what, st, c.err);
        printf("%s: no report\n", what);
        return;
    }
    if (!race)
        CORE_FAIL("%s: the race was not reported; child %s, stderr:\n%s",
                  what, st, c.err);
    /* The report names the green thread and shows its own call stack, from
     * its function up to where green threads begin. */
    if (strstr(c.err, "'racer-green'") == NULL ||
        strstr(c.err, "#0 racer ") == NULL ||
        strstr(c.err, "bl__ctx_entry") == NULL)
        CORE_FAIL("%s: the report lacks the green thread's name or frames:\n%s",
                  what, c.err);
    printf("%s: reported, naming the green thread\n", what);
}

int main(void)
{
    run_case("one scheduler, plain shared data, yields and sleeps",
             child_one_sched, 0);
    run_case("8000 threads ending 1000 frames deep", child_deep_exits, 0);
    run_case("6000 ended threads, then 4000 alive in another scheduler",
             child_ended_fibers, 0);
    run_case("two schedulers in two OS threads, one variable", child_race, 1);
    printf("core_tsan: ok\n");
    return 0;
}

#endif
