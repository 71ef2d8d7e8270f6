/* SPDX-License-Identifier: MIT */
/*
 * sleepy.c - four green threads sleeping at the same time.
 *
 *   usage: sleepy
 *
 * Spawns four threads that sleep 0, 0.1, 0.3 and 0.5 seconds. They sleep
 * concurrently, so the whole program takes about 0.5 s, not 0.9 s, and they
 * wake in the order of their deadlines:
 *
 *     sleeper 0: going to sleep for 0.0 s
 *     ...
 *     sleeper 0: woke up after 0.0 s (at 0.000 s)
 *     sleeper 1: woke up after 0.1 s (at 0.100 s)
 *     sleeper 3: woke up after 0.3 s (at 0.300 s)
 *     sleeper 5: woke up after 0.5 s (at 0.500 s)
 */
#include <bluelet.h>

#include <stdint.h>
#include <stdio.h>
#include <time.h>

static struct timespec start;

/* Seconds since the program started. */
static double elapsed(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start.tv_sec) +
           (double)(now.tv_nsec - start.tv_nsec) * 1e-9;
}

/* arg carries the number of tenths of a second to sleep. */
static void *sleeper(void *arg)
{
    int tenths = (int)(intptr_t)arg;
    printf("sleeper %d: going to sleep for %.1f s\n", tenths, tenths / 10.0);
    if (bl_sleep(tenths / 10.0) < 0) {
        perror("bl_sleep");
        return (void *)1;
    }
    printf("sleeper %d: woke up after %.1f s (at %.3f s)\n", tenths,
           tenths / 10.0, elapsed());
    return NULL;
}

/* The first green thread: start the sleepers, then wait for each of them.
 * It stores the number of sleepers that failed in *arg (the main OS thread
 * is not a green thread, so it cannot bl_join() to get a result). */
static void *sleepy(void *arg)
{
    intptr_t *failures = arg;
    static const int tenths[] = {0, 1, 3, 5};
    bl_thread *threads[4];
    int n = 0;
    for (int i = 0; i < 4; i++) {
        threads[n] = bl_spawn(NULL, sleeper, (void *)(intptr_t)tenths[i]);
        if (threads[n] == NULL)
            perror("bl_spawn");
        else
            n++;
    }
    *failures = 4 - n;
    for (int i = 0; i < n; i++) {
        void *result;
        if (bl_join(threads[i], &result) < 0 || result != NULL)
            ++*failures;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: sleepy\n"
                        "  Four green threads sleep 0, 0.1, 0.3 and 0.5 s at once.\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    clock_gettime(CLOCK_MONOTONIC, &start);

    bl_sched *s = bl_sched_new();
    if (s == NULL) {
        perror("bl_sched_new");
        return 1;
    }
    intptr_t failures = -1;
    bl_spawn_opts opts = {.size = sizeof opts, .detached = 1};
    if (bl_spawn_ex(s, sleepy, &failures, &opts) == NULL) {
        perror("bl_spawn");
        return 1;
    }
    /* Nothing runs until the scheduler does; it returns once all ended. */
    if (bl_sched_run(s) < 0) {
        perror("bl_sched_run");
        return 1;
    }
    bl_sched_free(s);
    printf("all done after %.3f s\n", elapsed());
    return failures == 0 ? 0 : 1;
}
