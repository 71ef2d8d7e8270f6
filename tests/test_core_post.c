/* SPDX-License-Identifier: MIT */
/*
 * test_core_post.c - bl_sched_post(), bl_sched_hold() and bl_sched_release():
 * handing work to a scheduler from other OS threads (real pthreads).
 */
#include "core_util.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/resource.h>

#define NPOST (CORE_SLOW ? 2000 : 20000)

/* ---- posts before bl_sched_run(), from the scheduler's own OS thread ---- */

static core_trace trace;
static int ntraced;             /* atomic: read by other OS threads */

static void *traced(void *arg)
{
    core_trace_add(&trace, "%s", (const char *)arg);
    __atomic_fetch_add(&ntraced, 1, __ATOMIC_RELEASE);
    CHECK(bl_self() != NULL);
    return NULL;
}

static void test_before_run(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_sched_post(s, traced, "a") == 0);
    CHECK(bl_sched_post(s, traced, "b") == 0);
    CHECK(bl_sched_post(s, traced, "c") == 0);
    CHECK_EQ_LL(bl_sched_nthreads(s), 0);   /* spawned by the run */
    CHECK(bl_sched_run(s) == 0);
    core_trace_expect(&trace, "a b c");
    /* After the run returned: kept for the next one. */
    CHECK(bl_sched_post(s, traced, "d") == 0);
    CHECK(bl_sched_run(s) == 0);
    core_trace_expect(&trace, "a b c d");
    bl_sched_free(s);
}

/* ---- many posts from two OS threads into a running, held scheduler ---- */

typedef struct {
    bl_sched *s;
    int who;
    pthread_t sched_tid;        /* the scheduler's OS thread */
} poster_arg;

static int next_seq[2];        /* per poster: the sequence number expected */
static long nrun;
static pthread_t run_tid;
static int wrong_thread, out_of_order;

static void *counted(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    int who = (int)(v & 1);
    int seq = (int)(v >> 1);
    if (!pthread_equal(pthread_self(), run_tid))
        wrong_thread++;
    if (seq != next_seq[who])
        out_of_order++;
    next_seq[who] = seq + 1;
    nrun++;
    if (seq % 7 == 0)
        bl_yield();             /* some of them are alive at once */
    return NULL;
}

static void *poster(void *p)
{
    poster_arg *a = p;
    for (int i = 0; i < NPOST; i++) {
        CHECK(bl_sched_post(a->s, counted,
                            (void *)(((uintptr_t)i << 1) | (uintptr_t)a->who))
              == 0);
        if (i % 1000 == 0)
            sched_yield();
    }
    return NULL;
}

typedef struct {
    bl_sched *s;
    int rc, err;
    int done;                  /* atomic: bl_sched_run() returned */
} runner_arg;

static void *runner(void *p)
{
    runner_arg *r = p;
    run_tid = pthread_self();
    errno = 0;
    r->rc = bl_sched_run(r->s);
    r->err = errno;
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Wait (in this OS thread) until r's bl_sched_run() returned; fail after
 * `limit` seconds. */
static void wait_done(runner_arg *r, double limit)
{
    double t0 = core_now();
    while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
        if (core_now() - t0 > limit)
            CORE_FAIL("bl_sched_run() did not return within %.0f s", limit);
        usleep(1000);
    }
}

static void test_two_posters(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_sched_hold(s) == 0);
    runner_arg r = {.s = s};
    pthread_t rt, pt[2];
    CHECK(pthread_create(&rt, NULL, runner, &r) == 0);
    poster_arg pa[2] = {{.s = s, .who = 0}, {.s = s, .who = 1}};
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&pt[i], NULL, poster, &pa[i]) == 0);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_join(pt[i], NULL) == 0);
    /* Still held: the run goes on, whether or not the posts have run. */
    usleep(20000);
    CHECK(!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE));
    CHECK(bl_sched_release(s) == 0);
    wait_done(&r, 30);
    CHECK(pthread_join(rt, NULL) == 0);
    CHECK_EQ_LL(r.rc, 0);
    CHECK_EQ_LL(nrun, 2L * NPOST);
    CHECK_EQ_LL(wrong_thread, 0);
    CHECK_EQ_LL(out_of_order, 0);
    CHECK_EQ_LL(next_seq[0], NPOST);
    CHECK_EQ_LL(next_seq[1], NPOST);
    bl_sched_free(s);
}

/* ---- a hold keeps an empty scheduler running until released ---- */

static void test_hold_empty(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_sched_hold(s) == 0);
    CHECK(bl_sched_hold(s) == 0);   /* counted */
    runner_arg r = {.s = s};
    pthread_t rt;
    CHECK(pthread_create(&rt, NULL, runner, &r) == 0);
    usleep(50000);
    CHECK(!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE));
    CHECK(bl_sched_release(s) == 0);
    usleep(50000);
    CHECK(!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE));
    /* A post wakes it and runs; it is still held. */
    trace.len = 0;
    trace.buf[0] = '\0';
    int before = __atomic_load_n(&ntraced, __ATOMIC_ACQUIRE);
    CHECK(bl_sched_post(s, traced, "x") == 0);
    double t0 = core_now();
    while (__atomic_load_n(&ntraced, __ATOMIC_ACQUIRE) == before) {
        if (core_now() - t0 > 10)
            CORE_FAIL("the post did not run");
        usleep(1000);
    }
    CHECK(!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE));
    CHECK(bl_sched_release(s) == 0);
    wait_done(&r, 10);
    CHECK(pthread_join(rt, NULL) == 0);
    CHECK_EQ_LL(r.rc, 0);
    core_trace_expect(&trace, "x");
    CHECK_ERR(bl_sched_release(s), EINVAL);  /* not held any more */
    bl_sched_free(s);
}

/* ---- a hold keeps a wait for a post from being taken for a deadlock ---- */

static bl_thread *sleeper;
static int sleeper_err;

static void *sleep_forever(void *arg)
{
    (void)arg;
    CHECK(bl_sleep(INFINITY) == -1);
    sleeper_err = errno;
    return NULL;
}

static void *cancel_sleeper(void *arg)
{
    (void)arg;
    CHECK(bl_cancel(sleeper) == 0);
    return NULL;
}

static void test_hold_no_deadlock(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    sleeper = bl_spawn(s, sleep_forever, NULL);
    CHECK(sleeper != NULL);
    CHECK(bl_detach(sleeper) == 0);
    CHECK(bl_sched_hold(s) == 0);
    runner_arg r = {.s = s};
    pthread_t rt;
    CHECK(pthread_create(&rt, NULL, runner, &r) == 0);
    usleep(50000);
    CHECK(!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE));
    CHECK(bl_sched_post(s, cancel_sleeper, NULL) == 0);
    CHECK(bl_sched_release(s) == 0);
    wait_done(&r, 10);
    CHECK(pthread_join(rt, NULL) == 0);
    CHECK_EQ_LL(r.rc, 0);
    CHECK_EQ_LL(sleeper_err, ECANCELED);
    bl_sched_free(s);

    /* The same without a hold is a deadlock, as before. */
    s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, sleep_forever, NULL) != NULL);
    CHECK_ERR(bl_sched_run(s), EDEADLK);
    bl_sched_free(s);
}

/* ---- posts left when the scheduler is freed run cancelled ---- */

static int freed_runs, freed_cancelled, freed_sleep_err;

static void *owns_arg(void *arg)
{
    freed_runs++;
    if (bl_cancelled())
        freed_cancelled++;
    if (bl_sleep(1) == -1)
        freed_sleep_err = errno;
    free(arg);                  /* LeakSanitizer: not run, not freed */
    return NULL;
}

static void test_free_runs_posts(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    for (int i = 0; i < 3; i++) {
        void *mem = malloc(100);
        CHECK(mem != NULL);
        CHECK(bl_sched_post(s, owns_arg, mem) == 0);
    }
    CHECK(bl_sched_hold(s) == 0);   /* ignored by bl_sched_free() */
    bl_sched_free(s);
    CHECK_EQ_LL(freed_runs, 3);
    CHECK_EQ_LL(freed_cancelled, 3);
    CHECK_EQ_LL(freed_sleep_err, ECANCELED);
}

/* ---- a post whose spawn fails for want of memory is retried ---- */
#if !CORE_SLOW

static int retried_ran;

static void *retried(void *arg)
{
    (void)arg;
    retried_ran = 1;
    return NULL;
}

static void *shrink_stacks(void *arg)
{
    CHECK(bl_sleep(0.05) == 0);
    CHECK(bl_sched_set_stack_size(arg, 64 * 1024) == 0);
    return NULL;
}

static void child_retry(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, shrink_stacks, s) != NULL);
    /* Stacks of 1 GiB do not fit under the address-space limit. */
    CHECK(bl_sched_set_stack_size(s, (size_t)1 << 30) == 0);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max =
        (rlim_t)core_status_kb("VmSize") * 1024 + ((rlim_t)256 << 20);
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    CHECK(bl_sched_post(s, retried, NULL) == 0);
    CHECK(bl_sched_run(s) == 0);
    CHECK(retried_ran);
    bl_sched_free(s);
    exit(0);
}
#endif

static void test_retry(void)
{
#if CORE_SLOW
    /* qemu-user and the sanitizers reserve address space of their own. */
    return;
#else
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        child_retry();
    int status;
    CHECK(core_wait_child(pid, 30, &status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        CORE_FAIL("child_retry failed (status %#x)", status);
#endif
}

/* ---- errors ---- */

static void *nothing(void *arg)
{
    return arg;
}

static void test_errors(void)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK_ERR(bl_sched_post(NULL, nothing, NULL), EINVAL);
    CHECK_ERR(bl_sched_post(s, NULL, NULL), EINVAL);
    CHECK_ERR(bl_sched_hold(NULL), EINVAL);
    CHECK_ERR(bl_sched_release(NULL), EINVAL);
    CHECK_ERR(bl_sched_release(s), EINVAL);
    CHECK(bl_sched_hold(s) == 0);
    CHECK(bl_sched_release(s) == 0);
    CHECK_ERR(bl_sched_release(s), EINVAL);
    bl_sched_free(s);
}

int main(void)
{
    test_errors();
    test_before_run();
    test_two_posters();
    test_hold_empty();
    test_hold_no_deadlock();
    test_free_runs_posts();
    test_retry();
    return 0;
}
