/* SPDX-License-Identifier: MIT */
/*
 * test_core_multi.c - several schedulers in parallel OS threads do not
 * interfere: each of 4 pthreads runs its own scheduler with many yielding and
 * sleeping green threads and per-scheduler counters come out exact;
 * bl_sched_current() is right everywhere. bl_sched_run() of a scheduler
 * that is running, or while another one runs in this OS thread, fails with
 * EBUSY.
 */
#include "core_util.h"

#include <pthread.h>
#include <stdint.h>

enum { NSCHED = 4 };
#define NTHREADS (CORE_SLOW ? 50 : 200)
#define NYIELDS (CORE_SLOW ? 100 : 500)

typedef struct world {
    int index;
    bl_sched *s;
    long counter;         /* only touched by this scheduler's threads */
    long wrong_sched;     /* bl_sched_current() mismatches */
    long wrong_self;
    int rc;
    int err;
} world;

static world worlds[NSCHED];

typedef struct targ {
    world *w;
    long n;
} targ;

static void *worker(void *arg)
{
    targ *a = arg;
    world *w = a->w;
    bl_thread *me = bl_self();
    for (int i = 0; i < NYIELDS; i++) {
        long before = w->counter;
        w->counter = before + 1;
        if (bl_sched_current() != w->s)
            w->wrong_sched++;
        if (i % 97 == (int)(a->n % 97)) {
            if (bl_sleep(0.0005) != 0)
                w->wrong_self += 1000000;
        } else if (bl_yield() != 0) {
            w->wrong_self += 1000000;
        }
        if (bl_self() != me)
            w->wrong_self++;
    }
    return (void *)(uintptr_t)(a->n + (uintptr_t)w->index * 100000);
}

static void *root(void *arg)
{
    world *w = arg;
    targ *args = calloc(NTHREADS, sizeof *args);
    bl_thread **t = calloc(NTHREADS, sizeof *t);
    CHECK(args != NULL && t != NULL);
    for (long i = 0; i < NTHREADS; i++) {
        args[i].w = w;
        args[i].n = i;
        t[i] = bl_spawn(NULL, worker, &args[i]);
        CHECK(t[i] != NULL);
    }
    /* EBUSY: our own scheduler, which is running in this OS thread. */
    CHECK_ERR(bl_sched_run(w->s), EBUSY);
    CHECK_ERR(bl_sched_run(bl_sched_current()), EBUSY);
    for (long i = 0; i < NTHREADS; i++) {
        void *r = NULL;
        CHECK(bl_join(t[i], &r) == 0);
        CHECK(r == (void *)(uintptr_t)(i + (uintptr_t)w->index * 100000));
    }
    free(args);
    free(t);
    return NULL;
}

static void *os_main(void *arg)
{
    world *w = arg;
    CHECK(bl_sched_current() == NULL);
    CHECK(bl_spawn(w->s, root, w) != NULL);
    errno = 0;
    w->rc = bl_sched_run(w->s);
    w->err = errno;
    CHECK(bl_sched_current() == NULL);
    return NULL;
}

/* ---- EBUSY with a second scheduler in the same OS thread ---- */

static bl_sched *inner;

static void *inner_fn(void *arg)
{
    (void)arg;
    return (void *)1;
}

static void *nested(void *arg)
{
    bl_sched *outer = arg;
    CHECK(bl_sched_current() == outer);
    /* Another scheduler, not running, but ours runs in this OS thread. */
    CHECK_ERR(bl_sched_run(inner), EBUSY);
    /* bl_sched_free() of the running scheduler refuses (and says so). */
    return NULL;
}

static void test_nested(void)
{
    bl_sched *outer = bl_sched_new();
    inner = bl_sched_new();
    CHECK(outer != NULL && inner != NULL);
    bl_thread *it = bl_spawn(inner, inner_fn, NULL);
    CHECK(it != NULL);
    CHECK(bl_spawn(outer, nested, outer) != NULL);
    CHECK(bl_sched_run(outer) == 0);
    /* inner was not touched: its thread is still there, and runs now. */
    CHECK_EQ_LL(bl_sched_nthreads(inner), 1);
    CHECK(bl_sched_run(inner) == 0);
    CHECK_EQ_LL(bl_sched_nthreads(inner), 0);
    bl_sched_free(inner);
    bl_sched_free(outer);
}

int main(void)
{
    test_nested();

    pthread_t th[NSCHED];
    for (int i = 0; i < NSCHED; i++) {
        worlds[i].index = i;
        worlds[i].s = bl_sched_new();
        CHECK(worlds[i].s != NULL);
    }
    double t0 = core_now();
    for (int i = 0; i < NSCHED; i++)
        CHECK(pthread_create(&th[i], NULL, os_main, &worlds[i]) == 0);
    for (int i = 0; i < NSCHED; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
    double dt = core_now() - t0;
    for (int i = 0; i < NSCHED; i++) {
        world *w = &worlds[i];
        printf("scheduler %d: rc %d, counter %ld (want %ld), wrong sched %ld, "
               "wrong self %ld\n", i, w->rc, w->counter,
               (long)NTHREADS * NYIELDS, w->wrong_sched, w->wrong_self);
        CHECK(w->rc == 0);
        CHECK(w->counter == (long)NTHREADS * NYIELDS);
        CHECK(w->wrong_sched == 0);
        CHECK(w->wrong_self == 0);
        bl_sched_free(w->s);
    }
    printf("%d schedulers x %d threads x %d switches in %.3f s\n", NSCHED,
           NTHREADS, NYIELDS, dt);
    printf("core_multi: ok\n");
    return 0;
}
