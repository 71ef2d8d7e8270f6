/* SPDX-License-Identifier: MIT */
/*
 * pool.c - a small process-wide pool of OS threads for calls that would block
 * the scheduler: getaddrinfo, and the user's functions (bl_offload()). The
 * calling green thread parks; the worker runs the job, appends it to its
 * scheduler's done list and wakes the loop (bl__sched_wake()); the loop
 * drains the list and wakes the green thread.
 *
 * A green thread cancelled (or timed out) before its job starts takes it
 * off the queue. One cancelled while its job runs abandons it, if the job
 * has an abandon() hook: the job finishes on its own and the worker calls
 * the hook to free what it produced. Jobs of a scheduler that is freed are
 * abandoned the same way.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>

#define BL_POOL_MAX_THREADS 4

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static bl__pool_job *queue_head, *queue_tail; /* jobs not yet started */
static int nthreads, nidle;
static int nqueued;     /* jobs in the queue */
static int nlookups;    /* workers running a name lookup, outside the lock */
static int forking;     /* in fork(): workers start no job */
static int stopping;    /* the library is being unloaded: workers leave */
/* The workers, joinable, so that pool_stop() can wait for them to be gone. */
static struct {
    pthread_t tid;
    unsigned char live, busy;
} workers[BL_POOL_MAX_THREADS];
static pthread_cond_t quiet = PTHREAD_COND_INITIALIZER;  /* nlookups fell to 0 */
/* Jobs queued or running, to find them when a scheduler goes away. */
static bl__pool_job *running[BL_POOL_MAX_THREADS];

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* fork() copies only the calling thread: in the child the workers are gone.
 * The lock is held across fork() so that the child gets the pool in a
 * consistent state; the child then starts over with no workers, and the
 * parent's jobs (queued, or running in workers that do not exist here) are
 * dropped: they belong to the parent's schedulers.
 * fork() also waits for the name lookups that are running to end, and no
 * job starts meanwhile: a getaddrinfo() cut off by the fork would leave the
 * resolver's locks held in the child's copy of libc, and every lookup there
 * would hang on them. It does not wait for bl_offload() jobs, which may run
 * for any time, or fork themselves. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&lock);
    forking++;
    while (nlookups > 0)
        pthread_cond_wait(&quiet, &lock);
}

static void atfork_parent(void)
{
    forking--;
    pthread_cond_broadcast(&work);
    pthread_mutex_unlock(&lock);
}

static void atfork_child(void)
{
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&work, NULL);
    pthread_cond_init(&quiet, NULL);
    queue_head = queue_tail = NULL;
    nthreads = nidle = nqueued = nlookups = forking = 0;
    for (int i = 0; i < BL_POOL_MAX_THREADS; i++)
        workers[i].live = workers[i].busy = 0;
    for (int i = 0; i < BL_POOL_MAX_THREADS; i++)
        running[i] = NULL;
}

static void atfork_register(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void finish(bl__pool_job *job)
{
    /* Under the lock. */
    bl_sched *s = job->sched;
    if (s == NULL) {
        if (job->abandon != NULL)
            job->abandon(job->arg);
        free(job);
        return;
    }
    job->next = s->done_head;
    s->done_head = job;
    bl__sched_wake(s);
}

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while ((queue_head == NULL || forking) && !stopping) {
            nidle++;
            pthread_cond_wait(&work, &lock);
            nidle--;
        }
        if (stopping)
            break;
        bl__pool_job *job = queue_head;
        queue_head = job->next;
        if (queue_head == NULL)
            queue_tail = NULL;
        nqueued--;
        int slot = 0;
        while (running[slot] != NULL)
            slot++;
        running[slot] = job;
        int lookup = job->lookup;
        nlookups += lookup;
        workers[me].busy = 1;
        pthread_mutex_unlock(&lock);
        job->fn(job->arg);
        pthread_mutex_lock(&lock);
        job->finished = 1;
        if (job->abandoned && job->abandon != NULL) {
            /* Its waiter gave up while it ran: release what it made here,
             * where it may block, not in the scheduler's loop. */
            void (*release)(void *) = job->abandon;
            job->abandon = NULL;
            pthread_mutex_unlock(&lock);
            release(job->arg);
            pthread_mutex_lock(&lock);
        }
        workers[me].busy = 0;
        if (lookup && --nlookups == 0 && forking)
            pthread_cond_broadcast(&quiet);
        running[slot] = NULL;
        finish(job);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* When the library is unloaded (dlclose(), or exit()): idle workers leave
 * and are joined, so that no thread is left to run code that is about to
 * be unmapped, and memory checkers see their resolver state freed. A worker
 * inside a job is detached instead and leaves when the job ends. */
__attribute__((destructor)) static void pool_stop(void)
{
    pthread_t idle[BL_POOL_MAX_THREADS];
    int n = 0;
    pthread_mutex_lock(&lock);
    stopping = 1;
    for (int i = 0; i < BL_POOL_MAX_THREADS; i++) {
        if (!workers[i].live)
            continue;
        if (workers[i].busy)
            pthread_detach(workers[i].tid);
        else
            idle[n++] = workers[i].tid;
        workers[i].live = 0;
    }
    nthreads = 0;
    pthread_cond_broadcast(&work);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++)
        pthread_join(idle[i], NULL);
}

/* Start a worker with every signal blocked, so that signals go to the
 * application's own threads. Under the lock. */
static int start_worker(void)
{
    int me = 0;
    while (workers[me].live)
        me++;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&workers[me].tid, &attr, worker,
                            (void *)(intptr_t)me);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        workers[me].live = 1;
    return rc;
}

/* Queue job for the pool on behalf of the running green thread self.
 * Returns 0, or 1 when no pool thread could be had and the job ran here. */
static int submit(bl__pool_job *job, bl_thread *self)
{
    bl_sched *s = self->sched;
    job->sched = s;
    job->waiter = self;
    job->done = job->finished = job->abandoned = 0;
    job->next = NULL;
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&lock);
    /* Every queued job will take one of the idle workers (a signalled
     * worker counts as idle until it wakes): start another unless one is
     * left for this job, or a slow call would hold up a quick one. */
    if (nidle <= nqueued && nthreads < BL_POOL_MAX_THREADS) {
        int rc = stopping ? EAGAIN : start_worker();
        if (rc != 0 && nthreads == 0) {
            /* No OS thread at all (out of memory or threads, or the library
             * is being unloaded): run the job here, blocking this
             * scheduler, rather than fail the call. */
            pthread_mutex_unlock(&lock);
            job->fn(job->arg);
            job->finished = 1;
            return 1;
        }
        if (rc == 0)
            nthreads++;
    }
    if (queue_tail != NULL)
        queue_tail->next = job;
    else
        queue_head = job;
    queue_tail = job;
    nqueued++;
    pthread_cond_signal(&work);
    pthread_mutex_unlock(&lock);
    bl__sched_wake_ref(s, 1); /* a pending job keeps the loop alive */
    return 0;
}

enum withdrawn { W_UNQUEUED, W_FINISHED, W_RUNNING };

/* The waiter of a submitted job that has not been drained stops waiting
 * (it was cancelled or timed out). A job not yet started is taken off the
 * queue (W_UNQUEUED: it never runs; the caller owns it again). A finished
 * one (W_FINISHED) is left to bl__pool_drain() to free, unless already
 * drained (job->done): then it is the caller's. A running one (W_RUNNING)
 * is abandoned if `abandon` is set: the worker calls job->abandon() when fn
 * returns and the drain frees it; if not, the caller must wait on. */
static enum withdrawn withdraw(bl__pool_job *job, int abandon)
{
    if (job->done)
        return W_FINISHED;
    enum withdrawn w = W_RUNNING;
    pthread_mutex_lock(&lock);
    bl__pool_job **pp = &queue_head, *prev = NULL;
    while (*pp != NULL && *pp != job) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == job) {
        *pp = job->next;
        if (queue_tail == job)
            queue_tail = prev;
        nqueued--;
        w = W_UNQUEUED;
    } else if (job->finished) {
        job->waiter = NULL;
        w = W_FINISHED;
    } else if (abandon) {
        job->abandoned = 1;
        job->waiter = NULL;
    }
    pthread_mutex_unlock(&lock);
    if (w == W_UNQUEUED)
        bl__sched_wake_ref(job->sched, -1);
    return w;
}

static void abandon_now(bl__pool_job *job)
{
    if (job->abandon != NULL)
        job->abandon(job->arg);
    free(job);
}

int bl__pool_run(bl__pool_job *job, double timeout)
{
    bl_thread *self = bl__cur->current;
    int err = 0;
    if (self->flags & BL_F_CANCELLED)
        err = ECANCELED;
    else if (timeout == 0)
        err = ETIMEDOUT;
    if (err != 0) {
        abandon_now(job);
        return err;
    }
    job->lookup = 1;
    if (submit(job, self))
        return 0;
    err = bl__park(self, "a blocking call on the pool", timeout);
    if (err != 0) {
        switch (withdraw(job, 1)) {
        case W_UNQUEUED:
            abandon_now(job);
            break;
        case W_FINISHED:
            if (job->done)
                abandon_now(job);
            break;
        case W_RUNNING:
            break;
        }
    }
    return err;
}

void bl__pool_drain(bl_sched *s)
{
    pthread_mutex_lock(&lock);
    bl__pool_job *list = s->done_head;
    s->done_head = NULL;
    pthread_mutex_unlock(&lock);
    while (list != NULL) {
        bl__pool_job *job = list;
        list = job->next;
        bl__sched_wake_ref(s, -1);
        if (job->waiter != NULL) {
            job->done = 1;
            bl__wake(job->waiter, 0);
        } else {
            abandon_now(job);
        }
    }
}

void bl__pool_forget(bl_sched *s)
{
    pthread_mutex_lock(&lock);
    for (bl__pool_job *j = queue_head; j != NULL; j = j->next)
        if (j->sched == s)
            j->sched = NULL;
    for (int i = 0; i < BL_POOL_MAX_THREADS; i++)
        if (running[i] != NULL && running[i]->sched == s)
            running[i]->sched = NULL;
    bl__pool_job *list = s->done_head;
    s->done_head = NULL;
    pthread_mutex_unlock(&lock);
    while (list != NULL) {
        bl__pool_job *job = list;
        list = job->next;
        abandon_now(job);
    }
}

/* ---- bl_offload() ---- */

struct offload {
    bl__pool_job job;          /* first: the pool frees the whole struct */
    bl_func fn;
    void *arg;
    void *result;
    void (*abandon)(void *arg, void *result);
};

static void offload_run(void *p)
{
    struct offload *o = p;
    o->result = o->fn(o->arg);
}

/* Called by the pool (on its thread) for a job its caller gave up while it
 * ran: only when the caller passed an abandon function. */
static void offload_abandon(void *p)
{
    struct offload *o = p;
    o->abandon(o->arg, o->result);
}

/* Wait until the running job o has been drained, whatever wakes the caller:
 * a cancellation is kept for the caller's next blocking call. */
static void offload_wait_done(bl_thread *self, struct offload *o)
{
    unsigned cancelled = self->flags & BL_F_CANCELLED;
    while (!o->job.done) {
        self->flags &= ~BL_F_CANCELLED;
        bl__park(self, "bl_offload (running, not cancellable)", -1);
        cancelled |= self->flags & BL_F_CANCELLED;
    }
    self->flags |= cancelled;
}

int bl_offload_timeout(bl_func fn, void *arg, void **result, double timeout,
                       void (*abandon)(void *arg, void *result))
{
    bl_thread *self = bl__self_or_eperm();
    if (self == NULL)
        return -1;
    if (fn == NULL || isnan(timeout)) {
        errno = EINVAL;
        return -1;
    }
    int err = 0;
    if (self->flags & BL_F_CANCELLED)
        err = ECANCELED;
    else if (timeout == 0)
        err = ETIMEDOUT;  /* fn cannot have run without waiting */
    struct offload *o = NULL;
    if (err == 0 && (o = calloc(1, sizeof *o)) == NULL)
        err = ENOMEM;
    if (err != 0)
        goto fail;
    o->job.fn = offload_run;
    o->job.arg = o;
    o->job.abandon = abandon != NULL ? offload_abandon : NULL;
    o->fn = fn;
    o->arg = arg;
    o->abandon = abandon;
    if (!submit(&o->job, self)) {
        err = bl__park(self, "bl_offload", timeout);
        if (err != 0) {
            switch (withdraw(&o->job, abandon != NULL)) {
            case W_UNQUEUED:         /* fn never runs */
                free(o);
                goto fail;
            case W_FINISHED:         /* fn returned: its result counts */
                err = 0;
                if (!o->job.done) {  /* the drain frees o */
                    o->job.abandon = NULL;
                    if (result != NULL)
                        *result = o->result;
                    return 0;
                }
                break;
            case W_RUNNING:
                if (abandon != NULL) {
                    errno = err;     /* abandon() releases the rest */
                    return -1;
                }
                offload_wait_done(self, o);
                err = 0;
                break;
            }
        }
    }
    if (result != NULL)
        *result = o->result;
    free(o);
    return 0;
fail:
    /* fn did not run: with an abandon function, arg goes to it all the
     * same, so that every failure leaves arg to abandon(). */
    if (abandon != NULL)
        abandon(arg, NULL);
    errno = err;
    return -1;
}

int bl_offload(bl_func fn, void *arg, void **result)
{
    return bl_offload_timeout(fn, arg, result, -1, NULL);
}
