/* SPDX-License-Identifier: MIT */
/*
 * test_pool_offload.c - bl_offload() and bl_offload_timeout(): blocking
 * functions run on the library's pool threads (at most 4) while the green
 * threads go on.
 */
#include "core_util.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define POOL_THREADS 4          /* BL_POOL_MAX_THREADS in src/pool.c */

/* A gate that jobs block on, in pool threads, until the test opens it. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;
static int gate_waiting;        /* jobs blocked at the gate */

static void gate_set(int open)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = open;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static int gate_nwaiting(void)
{
    pthread_mutex_lock(&gate_mu);
    int n = gate_waiting;
    pthread_mutex_unlock(&gate_mu);
    return n;
}

/* In a green thread: sleep until n jobs are blocked at the gate. Only a
 * scheduler that goes on while the jobs block gets there. */
static void gate_await(int n)
{
    double t0 = core_now();
    while (gate_nwaiting() < n) {
        if (core_now() - t0 > 20)
            CORE_FAIL("only %d of %d jobs reached the gate", gate_nwaiting(),
                      n);
        CHECK(bl_sleep(0.001) == 0);
    }
}

typedef struct {
    int in;
    int out;                    /* written by the job */
    pthread_t tid;              /* the OS thread it ran on */
    int ran;                    /* atomic */
} job_arg;

static void *gated_job(void *p)
{
    job_arg *a = p;
    pthread_mutex_lock(&gate_mu);
    gate_waiting++;
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    gate_waiting--;
    pthread_mutex_unlock(&gate_mu);
    a->tid = pthread_self();
    a->out = a->in * 2;
    __atomic_store_n(&a->ran, 1, __ATOMIC_RELEASE);
    return (void *)(intptr_t)(a->in + 1);
}

static void *quick_job(void *p)
{
    return p;
}

static pthread_t sched_tid;     /* the OS thread running the scheduler */

/* One offload in its own green thread, its outcome recorded. */
typedef struct {
    job_arg job;
    double timeout;             /* < 0 and no abandon: bl_offload() */
    void (*abandon)(void *, void *);
    int heap;                   /* job is on the heap (for abandon) */
    job_arg *hjob;
    int rc, err;
    void *result;
    int returned;               /* bl_offload*() has returned */
    int after_err;              /* errno of a bl_yield() after it, or 0 */
} call;

static void *caller(void *p)
{
    call *c = p;
    job_arg *j = c->heap ? c->hjob : &c->job;
    errno = 0;
    if (c->timeout < 0 && c->abandon == NULL)
        c->rc = bl_offload(gated_job, j, &c->result);
    else
        c->rc = bl_offload_timeout(gated_job, j, &c->result, c->timeout,
                                   c->abandon);
    c->err = errno;
    c->returned = 1;
    c->after_err = bl_yield() == 0 ? 0 : errno;
    return NULL;
}

/* ---- the scheduler goes on while a job blocks; the result comes back ---- */

static void *test_basic(void *arg)
{
    (void)arg;
    gate_set(0);
    call c = {.job = {.in = 20}, .timeout = -1};
    bl_thread *t = bl_spawn(NULL, caller, &c);
    CHECK(t != NULL);
    gate_await(1);
    CHECK(!c.returned);
    gate_set(1);
    CHECK(bl_join(t, NULL) == 0);
    CHECK_EQ_LL(c.rc, 0);
    CHECK_EQ_LL((intptr_t)c.result, 21);
    CHECK_EQ_LL(c.job.out, 40);
    CHECK(!pthread_equal(c.job.tid, sched_tid));
    CHECK_EQ_LL(c.after_err, 0);
    /* result may be NULL. */
    CHECK(bl_offload(quick_job, NULL, NULL) == 0);
    return NULL;
}

/* ---- jobs of several green threads run at once ---- */

static void *test_parallel(void *arg)
{
    (void)arg;
    gate_set(0);
    call c[POOL_THREADS];
    bl_thread *t[POOL_THREADS];
    for (int i = 0; i < POOL_THREADS; i++) {
        c[i] = (call){.job = {.in = i}, .timeout = -1};
        CHECK((t[i] = bl_spawn(NULL, caller, &c[i])) != NULL);
    }
    gate_await(POOL_THREADS);
    gate_set(1);
    for (int i = 0; i < POOL_THREADS; i++) {
        CHECK(bl_join(t[i], NULL) == 0);
        CHECK_EQ_LL(c[i].rc, 0);
        CHECK_EQ_LL((intptr_t)c[i].result, i + 1);
    }
    return NULL;
}

/* Fill the pool with gated jobs; returns their calls (joined by unfill). */
static call fill_calls[POOL_THREADS];
static bl_thread *fill_threads[POOL_THREADS];

static void fill(void)
{
    gate_set(0);
    for (int i = 0; i < POOL_THREADS; i++) {
        fill_calls[i] = (call){.job = {.in = 100 + i}, .timeout = -1};
        CHECK((fill_threads[i] = bl_spawn(NULL, caller, &fill_calls[i])) !=
              NULL);
    }
    gate_await(POOL_THREADS);
}

static void unfill(void)
{
    gate_set(1);
    for (int i = 0; i < POOL_THREADS; i++) {
        CHECK(bl_join(fill_threads[i], NULL) == 0);
        CHECK_EQ_LL(fill_calls[i].rc, 0);
    }
    /* The pool is idle now and runs jobs in order: a job still queued
     * would run before this one. */
    CHECK(bl_offload(quick_job, NULL, NULL) == 0);
}

/* ---- cancelled or timed out while queued: the job never runs ---- */

static void *test_queued(void *arg)
{
    (void)arg;
    fill();
    call c = {.job = {.in = 1}, .timeout = -1};
    bl_thread *t = bl_spawn(NULL, caller, &c);
    CHECK(t != NULL);
    CHECK(bl_sleep(0.02) == 0);
    CHECK(!c.returned);
    CHECK(bl_cancel(t) == 0);
    CHECK(bl_join(t, NULL) == 0);   /* with the gate still closed */
    CHECK_EQ_LL(c.rc, -1);
    CHECK_EQ_LL(c.err, ECANCELED);

    call d = {.job = {.in = 2}, .timeout = 0.05};
    t = bl_spawn(NULL, caller, &d);
    CHECK(t != NULL);
    CHECK(bl_join(t, NULL) == 0);
    CHECK_EQ_LL(d.rc, -1);
    CHECK_EQ_LL(d.err, ETIMEDOUT);
    CHECK_EQ_LL(d.after_err, 0);
    unfill();
    CHECK(!__atomic_load_n(&c.job.ran, __ATOMIC_ACQUIRE));
    CHECK(!__atomic_load_n(&d.job.ran, __ATOMIC_ACQUIRE));
    return NULL;
}

/* ---- cancelled while running: waits for the job, gets its result ---- */

static void *test_cancel_running(void *arg)
{
    (void)arg;
    gate_set(0);
    /* The job's argument is on the caller's stack (inside c): returning
     * before the job has written to it would be a use after return. */
    call c = {.job = {.in = 7}, .timeout = -1};
    bl_thread *t = bl_spawn(NULL, caller, &c);
    CHECK(t != NULL);
    gate_await(1);
    CHECK(bl_cancel(t) == 0);
    CHECK(bl_sleep(0.05) == 0);
    CHECK(bl_cancel(t) == 0);   /* again: still not cancellable */
    CHECK(bl_sleep(0.02) == 0);
    CHECK(!c.returned);
    gate_set(1);
    CHECK(bl_join(t, NULL) == 0);
    CHECK_EQ_LL(c.rc, 0);
    CHECK_EQ_LL((intptr_t)c.result, 8);
    CHECK_EQ_LL(c.job.out, 14);
    /* The cancellation was kept for the next blocking call. */
    CHECK_EQ_LL(c.after_err, ECANCELED);

    /* bl_offload_timeout() without abandon waits past its timeout. */
    gate_set(0);
    call d = {.job = {.in = 9}, .timeout = 0.02};
    t = bl_spawn(NULL, caller, &d);
    CHECK(t != NULL);
    gate_await(1);
    CHECK(bl_sleep(0.1) == 0);
    CHECK(!d.returned);
    gate_set(1);
    CHECK(bl_join(t, NULL) == 0);
    CHECK_EQ_LL(d.rc, 0);
    CHECK_EQ_LL((intptr_t)d.result, 10);
    CHECK_EQ_LL(d.after_err, 0);
    return NULL;
}

/* ---- abandoned while running: abandon() releases arg on a pool thread ---- */

static int abandoned;           /* atomic: abandon() calls */
static intptr_t abandoned_result;
static int abandoned_in_sched;

static int abandoned_unrun;     /* abandon(arg, NULL) for jobs not run */

static void abandon_job(void *arg, void *result)
{
    job_arg *a = arg;
    if (!a->ran) {              /* in the caller's thread, at once */
        CHECK(result == NULL);
        CHECK(pthread_equal(pthread_self(), sched_tid));
        abandoned_unrun++;
        free(a);
        return;
    }
    abandoned_result = (intptr_t)result;
    if (pthread_equal(pthread_self(), sched_tid))
        abandoned_in_sched = 1;
    free(a);                    /* LeakSanitizer: freed here or nowhere */
    __atomic_fetch_add(&abandoned, 1, __ATOMIC_RELEASE);
}

static void await_abandoned(int n)
{
    double t0 = core_now();
    while (__atomic_load_n(&abandoned, __ATOMIC_ACQUIRE) < n) {
        if (core_now() - t0 > 20)
            CORE_FAIL("abandon() was not called");
        CHECK(bl_sleep(0.001) == 0);
    }
}

static void *test_abandon(void *arg)
{
    (void)arg;
    /* Cancelled while the job runs. */
    gate_set(0);
    call c = {.timeout = -1, .abandon = abandon_job, .heap = 1};
    CHECK((c.hjob = calloc(1, sizeof *c.hjob)) != NULL);
    c.hjob->in = 30;
    bl_thread *t = bl_spawn(NULL, caller, &c);
    CHECK(t != NULL);
    gate_await(1);
    CHECK(bl_cancel(t) == 0);
    CHECK(bl_join(t, NULL) == 0);   /* at once: the gate is closed */
    CHECK_EQ_LL(c.rc, -1);
    CHECK_EQ_LL(c.err, ECANCELED);
    CHECK_EQ_LL(__atomic_load_n(&abandoned, __ATOMIC_ACQUIRE), 0);
    gate_set(1);
    await_abandoned(1);
    CHECK_EQ_LL(abandoned_result, 31);
    CHECK(!abandoned_in_sched);

    /* Timed out while the job runs (timeout long enough for the job to
     * have started). */
    gate_set(0);
    call d = {.timeout = CORE_SLOW ? 1.0 : 0.3, .abandon = abandon_job,
              .heap = 1};
    CHECK((d.hjob = calloc(1, sizeof *d.hjob)) != NULL);
    d.hjob->in = 40;
    t = bl_spawn(NULL, caller, &d);
    CHECK(t != NULL);
    CHECK(bl_join(t, NULL) == 0);
    CHECK_EQ_LL(gate_nwaiting(), 1);   /* it ran, and still does */
    CHECK_EQ_LL(d.rc, -1);
    CHECK_EQ_LL(d.err, ETIMEDOUT);
    gate_set(1);
    await_abandoned(2);
    CHECK_EQ_LL(abandoned_result, 41);
    CHECK(!abandoned_in_sched);

    /* Failures where fn never ran hand arg to abandon() too, at once:
     * timeout 0, a cancelled caller, and a job timed out in the queue. */
    job_arg *u = calloc(1, sizeof *u);
    CHECK(u != NULL);
    CHECK_ERR(bl_offload_timeout(gated_job, u, NULL, 0, abandon_job),
              ETIMEDOUT);
    CHECK_EQ_LL(abandoned_unrun, 1);
    fill();
    call q = {.timeout = 0.05, .abandon = abandon_job, .heap = 1};
    CHECK((q.hjob = calloc(1, sizeof *q.hjob)) != NULL);
    t = bl_spawn(NULL, caller, &q);
    CHECK(t != NULL);
    CHECK(bl_join(t, NULL) == 0);
    CHECK_EQ_LL(q.err, ETIMEDOUT);
    CHECK_EQ_LL(abandoned_unrun, 2);
    unfill();
    CHECK_EQ_LL(__atomic_load_n(&abandoned, __ATOMIC_ACQUIRE), 2);

    /* A job that finished is not abandoned: the call succeeds. */
    call e = {.timeout = 10, .abandon = abandon_job, .heap = 1};
    CHECK((e.hjob = calloc(1, sizeof *e.hjob)) != NULL);
    e.hjob->in = 50;
    t = bl_spawn(NULL, caller, &e);
    CHECK(t != NULL);
    CHECK(bl_join(t, NULL) == 0);
    CHECK_EQ_LL(e.rc, 0);
    CHECK_EQ_LL((intptr_t)e.result, 51);
    free(e.hjob);
    CHECK_EQ_LL(__atomic_load_n(&abandoned, __ATOMIC_ACQUIRE), 2);
    return NULL;
}

/* ---- cancelled after the job returned, before the scheduler heard of it:
 * the call succeeds with the result, and abandon() is not called ---- */

static void *test_finished(void *arg)
{
    (void)arg;
    for (int with_abandon = 0; with_abandon < 2; with_abandon++) {
        gate_set(1);
        call c = {.timeout = -1, .heap = 1,
                  .abandon = with_abandon ? abandon_job : NULL};
        CHECK((c.hjob = calloc(1, sizeof *c.hjob)) != NULL);
        c.hjob->in = 60;
        bl_thread *t = bl_spawn(NULL, caller, &c);
        CHECK(t != NULL);
        CHECK(bl_yield() == 0);     /* the caller submits its job */
        /* Wait for the job without letting the scheduler poll: it cannot
         * have drained the job when the cancellation wakes the caller. */
        double t0 = core_now();
        while (!__atomic_load_n(&c.hjob->ran, __ATOMIC_ACQUIRE))
            if (core_now() - t0 > 20)
                CORE_FAIL("the job did not run");
        /* and for its worker to finish it (far more than it takes) */
        usleep(CORE_SLOW ? 500000 : 100000);
        CHECK(bl_cancel(t) == 0);
        CHECK(bl_join(t, NULL) == 0);
        CHECK_EQ_LL(c.rc, 0);
        CHECK_EQ_LL((intptr_t)c.result, 61);
        CHECK_EQ_LL(c.after_err, ECANCELED);
        CHECK(bl_sleep(0.02) == 0); /* the drain runs */
        CHECK_EQ_LL(__atomic_load_n(&abandoned, __ATOMIC_ACQUIRE), 2);
        free(c.hjob);
    }
    return NULL;
}

/* ---- an offloaded function may fork ---- */

static void *fork_job(void *arg)
{
    (void)arg;
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return (void *)(intptr_t)-1;
    return (void *)(intptr_t)(WIFEXITED(status) ? WEXITSTATUS(status) : -2);
}

static void *test_fork(void *arg)
{
    (void)arg;
    void *r = NULL;
    CHECK(bl_offload(fork_job, NULL, &r) == 0);   /* hung before */
    CHECK_EQ_LL((intptr_t)r, 7);
    return NULL;
}

/* ---- errors ---- */

static int error_job_ran;

static void *error_job(void *arg)
{
    (void)arg;
    error_job_ran = 1;
    return NULL;
}

static void *test_errors(void *arg)
{
    (void)arg;
    CHECK_ERR(bl_offload(NULL, NULL, NULL), EINVAL);
    CHECK_ERR(bl_offload_timeout(error_job, NULL, NULL, NAN, NULL), EINVAL);
    CHECK_ERR(bl_offload_timeout(error_job, NULL, NULL, 0, NULL), ETIMEDOUT);
    CHECK(bl_cancel(bl_self()) == 0);
    CHECK_ERR(bl_offload(error_job, NULL, NULL), ECANCELED);
    CHECK_ERR(bl_offload_timeout(error_job, NULL, NULL, 1, NULL), ECANCELED);
    CHECK(!error_job_ran);
    return NULL;
}

/* ---- many calls from many green threads ---- */

#define NCALLERS 50
#define NCALLS (CORE_SLOW ? 4 : 20)

static void *sum_job(void *p)
{
    int *v = p;
    return (void *)(intptr_t)(*v * 3);
}

static void *many_caller(void *arg)
{
    long *sum = arg;
    for (int i = 0; i < NCALLS; i++) {
        int v = i;
        void *r;
        CHECK(bl_offload(sum_job, &v, &r) == 0);
        *sum += (intptr_t)r;
    }
    return NULL;
}

static void *test_many(void *arg)
{
    (void)arg;
    long sum = 0;
    bl_thread *t[NCALLERS];
    for (int i = 0; i < NCALLERS; i++)
        CHECK((t[i] = bl_spawn(NULL, many_caller, &sum)) != NULL);
    for (int i = 0; i < NCALLERS; i++)
        CHECK(bl_join(t[i], NULL) == 0);
    CHECK_EQ_LL(sum, (long)NCALLERS * 3 * NCALLS * (NCALLS - 1) / 2);
    return NULL;
}

int main(void)
{
    sched_tid = pthread_self();
    CHECK_ERR(bl_offload(quick_job, NULL, NULL), EPERM);
    core_run_green(test_errors, NULL);
    core_run_green(test_basic, NULL);
    core_run_green(test_parallel, NULL);
    core_run_green(test_queued, NULL);
    core_run_green(test_cancel_running, NULL);
    core_run_green(test_abandon, NULL);
    core_run_green(test_finished, NULL);
    core_run_green(test_many, NULL);
    core_run_green(test_fork, NULL);
    return 0;
}
