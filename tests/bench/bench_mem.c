/* SPDX-License-Identifier: MIT */
/*
 * bench_mem - resident memory per idle green thread.
 *
 *   bench_mem [threads]      (default 100,000)
 *   bench_mem --million      1,000,000 live threads at once
 *
 * Each green thread touches 1 KiB of its stack (a volatile array), then
 * sleeps until cancelled. The RSS growth (from /proc/self/statm) divided by
 * the thread count is printed as "rss_per_thread_kib", once with the
 * default stack size and once with 16 KiB stacks (bl_spawn_ex). Also prints
 * vm.max_map_count and the process's map count while all threads live, to
 * show that guard pages do not cost one mapping each.
 */
#define _GNU_SOURCE
#include <bluelet.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f == NULL || fscanf(f, "%ld %ld", &size, &res) != 2) {
        perror("/proc/self/statm");
        exit(1);
    }
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static long count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long n = 0;
    int c;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f != NULL) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static void *idler(void *arg)
{
    (void)arg;
    volatile char touch[1024];
    for (size_t i = 0; i < sizeof touch; i += 64)
        touch[i] = (char)i;
    bl_sleep(INFINITY);          /* until cancelled */
    return (void *)(long)touch[64];
}

struct run {
    long n;
    size_t stack_size;           /* 0: the scheduler's default */
    long spawned;
    double kib_per_thread;
    long maps;
    int err;
};

static void *controller(void *arg)
{
    struct run *r = arg;
    bl_thread **t = malloc((size_t)r->n * sizeof *t);
    if (t == NULL) {
        r->err = ENOMEM;
        return NULL;
    }
    bl_spawn_opts o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.stack_size = r->stack_size;
    long before = rss_kib();
    for (r->spawned = 0; r->spawned < r->n; r->spawned++) {
        t[r->spawned] = bl_spawn_ex(NULL, idler, NULL, &o);
        if (t[r->spawned] == NULL) {
            r->err = errno;
            break;
        }
    }
    bl_yield();                  /* FIFO: every idler runs and parks */
    long after = rss_kib();
    r->maps = count_lines("/proc/self/maps");
    r->kib_per_thread = r->spawned ? (double)(after - before) / (double)r->spawned : 0;
    for (long i = 0; i < r->spawned; i++)
        bl_cancel(t[i]);
    for (long i = 0; i < r->spawned; i++)
        bl_join(t[i], NULL);
    free(t);
    return NULL;
}

static int run_once(long n, size_t stack_size, const char *label)
{
    struct run r = {.n = n, .stack_size = stack_size};
    bl_sched *s = bl_sched_new();
    if (s == NULL || bl_spawn(s, controller, &r) == NULL || bl_sched_run(s) != 0) {
        perror("bluelet");
        return 1;
    }
    if (stack_size == 0)
        stack_size = bl_sched_stack_size(s);
    bl_sched_free(s);
    printf("%s: threads %ld of %ld, stack %zu KiB, rss_per_thread_kib %.2f, "
           "maps %ld%s%s\n", label, r.spawned, n, stack_size / 1024,
           r.kib_per_thread, r.maps, r.err ? ", stopped by: " : "",
           r.err ? strerror(r.err) : "");
    return r.spawned == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    long n = 100000;
    int million = 0;
    if (argc > 1 && strcmp(argv[1], "--million") == 0) {
        n = 1000000;
        million = 1;
    } else if (argc > 1) {
        n = atol(argv[1]);
    }
    if (n <= 0 || argc > 2) {
        fprintf(stderr, "usage: %s [threads | --million]\n", argv[0]);
        return 2;
    }
    printf("vm.max_map_count %ld\n", read_long("/proc/sys/vm/max_map_count"));
    int rc = run_once(n, 0, "default stacks");
    if (!million)
        rc |= run_once(n, 16 * 1024, "16 KiB stacks");
    return rc;
}
