/* SPDX-License-Identifier: MIT */
/*
 * delegation.c - blocking calls nested in ordinary C functions.
 *
 *   usage: delegation
 *
 * In Python's bluelet a coroutine could only block at its own top level, so
 * calling a helper that blocks needed "delegation": `result = yield child()`
 * in the caller and `yield bluelet.end(value)` in the helper. libbluelet's
 * green threads have stacks of their own, so a blocking call may sit at any
 * depth of a call chain: helpers are plain functions that return values, and
 * errors travel up as -1 and errno, like any other C error.
 *
 * Three demonstrations:
 *   1. child() yields twice and returns 42 to parent(), as in the original;
 *   2. sum_of_squares() calls slow_square() (which sleeps) twice and adds;
 *   3. errors from deep down: a read that times out (ETIMEDOUT), and a
 *      thread cancelled in the middle of a nested call (ECANCELED).
 */
#include <bluelet.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- 1. a value returned from a function that blocks ---- */

static int child(void)
{
    printf("child: started\n");
    bl_yield();                     /* let the other threads run */
    printf("child: resumed\n");
    bl_yield();
    printf("child: ending\n");
    return 42;                      /* bluelet.end(42) */
}

static void parent(void)
{
    printf("parent: started\n");
    bl_yield();
    printf("parent: resumed\n");
    int result = child();           /* result = yield child() */
    printf("parent: child returned %d\n", result);
}

/* ---- 2. nested blocking calls that compute something ---- */

/* Wait a little (as if asking a slow server), then give x * x. */
static int slow_square(int x, int *out)
{
    if (bl_sleep(0.05) < 0)
        return -1;                  /* errno says why: ECANCELED */
    *out = x * x;
    return 0;
}

static int sum_of_squares(int a, int b, int *out)
{
    int sa, sb;
    if (slow_square(a, &sa) < 0 || slow_square(b, &sb) < 0)
        return -1;                  /* errno passes through untouched */
    *out = sa + sb;
    return 0;
}

/* ---- 3. errors from two calls down ---- */

/* Read a line from fd, waiting at most `timeout` seconds for it. */
static ssize_t read_with_timeout(int fd, char *buf, size_t cap, double timeout)
{
    if (bl_wait_fd(fd, BL_READ, timeout) < 0)
        return -1;                  /* ETIMEDOUT, or ECANCELED */
    return read(fd, buf, cap);
}

/* Load "settings" from a source that never answers. */
static int load_settings(int fd)
{
    char buf[128];
    if (read_with_timeout(fd, buf, sizeof buf, 0.1) < 0)
        return -1;
    return 0;
}

static const char *errno_name(int e)
{
    switch (e) {
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECANCELED: return "ECANCELED";
    default: return "another error";
    }
}

/* A worker that keeps computing until it is cancelled; its result is the
 * errno that stopped it. */
static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) {
        int sum;
        if (sum_of_squares(i, i + 1, &sum) < 0)
            return (void *)(intptr_t)errno;
    }
    return (void *)0;
}

static void *demo(void *arg)
{
    int *failures = arg;

    parent();

    int sum;
    if (sum_of_squares(3, 4, &sum) == 0) {
        printf("sum_of_squares(3, 4) = %d\n", sum);
    } else {
        perror("sum_of_squares");
        ++*failures;
    }

    /* A pipe nobody writes to: the read two calls down times out. */
    int p[2];
    if (pipe(p) < 0) {
        perror("pipe");
        ++*failures;
        return NULL;
    }
    if (load_settings(p[0]) < 0) {
        int e = errno;
        printf("load_settings: failed: %s (%s)\n", strerror(e), errno_name(e));
        if (e != ETIMEDOUT)
            ++*failures;
    } else {
        ++*failures;                /* nobody wrote: this cannot succeed */
    }
    close(p[0]);
    close(p[1]);

    /* Cancel a worker while it sleeps inside slow_square(), inside
     * sum_of_squares(): the error comes up to its top level. */
    bl_thread *w = bl_spawn(NULL, worker, NULL);
    if (w == NULL) {
        perror("bl_spawn");
        ++*failures;
        return NULL;
    }
    bl_sleep(0.12);                 /* let it get a couple of calls deep */
    bl_cancel(w);
    void *result;
    if (bl_join(w, &result) < 0) {
        perror("bl_join");
        ++*failures;
        return NULL;
    }
    int e = (int)(intptr_t)result;
    printf("worker: stopped: %s (%s)\n", e ? strerror(e) : "finished",
           errno_name(e));
    if (e != ECANCELED)
        ++*failures;
    return NULL;
}

/* A second thread, to show that the blocking calls above let others run. */
static void *ticker(void *arg)
{
    (void)arg;
    printf("ticker: the scheduler runs other threads meanwhile\n");
    return NULL;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: delegation\n"
                        "  Nested blocking calls returning values and errors.\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    bl_sched *s = bl_sched_new();
    if (s == NULL) {
        perror("bl_sched_new");
        return 1;
    }
    int failures = 0;
    bl_spawn_opts opts = {.size = sizeof opts, .detached = 1};
    if (bl_spawn_ex(s, demo, &failures, &opts) == NULL ||
        bl_spawn_ex(s, ticker, NULL, &opts) == NULL) {
        perror("bl_spawn");
        return 1;
    }
    if (bl_sched_run(s) < 0) {
        perror("bl_sched_run");
        return 1;
    }
    bl_sched_free(s);
    printf("%s\n", failures == 0 ? "all done" : "FAILED");
    return failures == 0 ? 0 : 1;
}
