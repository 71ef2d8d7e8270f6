/* SPDX-License-Identifier: MIT */
/*
 * test_core_fifo.c - cooperative FIFO scheduling: bl_spawn() does not run the
 * child at once, the spawner goes on, threads run in the order they became
 * runnable and bl_yield() puts the caller at the back of the ready queue.
 * Each scenario records an exact interleaving trace.
 */
#include "core_util.h"

static core_trace tr;

/* ---- scenario 1: spawn from a green thread, yields ---- */

static void *s1_c(void *arg)
{
    (void)arg;
    core_trace_add(&tr, "C1");
    CHECK(bl_yield() == 0);
    core_trace_add(&tr, "C2");
    return NULL;
}

static void *s1_b(void *arg)
{
    (void)arg;
    core_trace_add(&tr, "B1");
    CHECK(bl_yield() == 0);
    core_trace_add(&tr, "B2");
    return NULL;
}

static void *s1_a(void *arg)
{
    (void)arg;
    core_trace_add(&tr, "A1");
    bl_thread *c = bl_spawn(NULL, s1_c, NULL);
    CHECK(c != NULL);
    /* The child has not run: the spawner goes on. */
    core_trace_add(&tr, "A2");
    CHECK(bl_yield() == 0);
    core_trace_add(&tr, "A3");
    CHECK(bl_yield() == 0);
    core_trace_add(&tr, "A4");
    CHECK(bl_join(c, NULL) == 0);
    core_trace_add(&tr, "A5");
    return NULL;
}

static void scenario_spawn_yield(void)
{
    memset(&tr, 0, sizeof tr);
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_thread *a = bl_spawn(s, s1_a, NULL);
    CHECK(a != NULL);
    bl_thread *b = bl_spawn(s, s1_b, NULL);
    CHECK(b != NULL);
    bl_detach(a);
    bl_detach(b);
    /* Nothing ran yet: spawning from main only queues. */
    CHECK(tr.len == 0);
    CHECK_EQ_LL(bl_sched_nthreads(s), 2);
    CHECK(bl_sched_run(s) == 0);
    CHECK_EQ_LL(bl_sched_nthreads(s), 0);
    /* Ready queue: [A B] -> A spawns C: [B C] -> A yields: [B C A] -> ... */
    core_trace_expect(&tr, "A1 A2 B1 C1 A3 B2 C2 A4 A5");
    bl_sched_free(s);
}

/* ---- scenario 2: round robin of N threads ---- */

enum { RR_THREADS = 5, RR_ROUNDS = 4 };

static void *rr(void *arg)
{
    long i = (long)arg;
    for (int r = 0; r < RR_ROUNDS; r++) {
        core_trace_add(&tr, "%ld", i);
        CHECK(bl_yield() == 0);
    }
    return (void *)(i * 10);
}

static void scenario_round_robin(void)
{
    memset(&tr, 0, sizeof tr);
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_thread *t[RR_THREADS];
    for (long i = 0; i < RR_THREADS; i++) {
        t[i] = bl_spawn(s, rr, (void *)i);
        CHECK(t[i] != NULL);
    }
    CHECK(bl_sched_run(s) == 0);
    char want[256] = "";
    size_t len = 0;
    for (int r = 0; r < RR_ROUNDS; r++)
        for (int i = 0; i < RR_THREADS; i++)
            len += (size_t)snprintf(want + len, sizeof want - len, "%s%d",
                                    len ? " " : "", i);
    core_trace_expect(&tr, want);
    bl_sched_free(s); /* the threads were never joined: reaped here */
}

/* ---- scenario 3: a thread woken by a join goes behind the ready ones ---- */

static bl_thread *s3_x;

static void *s3_xf(void *arg)
{
    (void)arg;
    core_trace_add(&tr, "X1");
    CHECK(bl_yield() == 0);
    core_trace_add(&tr, "X2");
    return (void *)7;
}

static void *s3_jf(void *arg)
{
    (void)arg;
    core_trace_add(&tr, "J0");
    void *r = NULL;
    CHECK(bl_join(s3_x, &r) == 0);
    CHECK(r == (void *)7);
    core_trace_add(&tr, "J1");
    return NULL;
}

static void *s3_yf(void *arg)
{
    (void)arg;
    core_trace_add(&tr, "Y1");
    CHECK(bl_yield() == 0);
    core_trace_add(&tr, "Y2");
    CHECK(bl_yield() == 0);
    core_trace_add(&tr, "Y3");
    return NULL;
}

static void scenario_wake_order(void)
{
    memset(&tr, 0, sizeof tr);
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    s3_x = bl_spawn(s, s3_xf, NULL);
    bl_thread *j = bl_spawn(s, s3_jf, NULL);
    bl_thread *y = bl_spawn(s, s3_yf, NULL);
    CHECK(s3_x != NULL && j != NULL && y != NULL);
    bl_detach(j);
    bl_detach(y);
    CHECK(bl_sched_run(s) == 0);
    /* [X J Y] X yields: [J Y X]; J blocks: [Y X]; Y yields: [X Y];
     * X ends, J becomes runnable behind Y: [Y J]; Y yields: [J Y]. */
    core_trace_expect(&tr, "X1 J0 Y1 X2 Y2 J1 Y3");
    bl_sched_free(s);
}

/* ---- scenario 4: the main context does not run before the queue drains;
 * a thread spawned by a thread that is about to end still runs ---- */

static int s4_count;

static void *s4_leaf(void *arg)
{
    core_trace_add(&tr, "L%ld", (long)arg);
    s4_count++;
    return NULL;
}

static void *s4_root(void *arg)
{
    (void)arg;
    for (long i = 0; i < 3; i++) {
        bl_thread *t = bl_spawn(NULL, s4_leaf, (void *)i);
        CHECK(t != NULL);
        CHECK(bl_detach(t) == 0);
    }
    core_trace_add(&tr, "R");
    /* Ends without yielding: the leaves still run, in spawn order. */
    return NULL;
}

static void scenario_spawn_then_end(void)
{
    memset(&tr, 0, sizeof tr);
    s4_count = 0;
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_thread *r = bl_spawn(s, s4_root, NULL);
    CHECK(r != NULL);
    CHECK(bl_detach(r) == 0);
    CHECK(bl_sched_run(s) == 0);
    core_trace_expect(&tr, "R L0 L1 L2");
    CHECK(s4_count == 3);
    bl_sched_free(s);
}

int main(void)
{
    scenario_spawn_yield();
    scenario_round_robin();
    scenario_wake_order();
    scenario_spawn_then_end();
    printf("core_fifo: ok\n");
    return 0;
}
