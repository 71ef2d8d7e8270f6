/* SPDX-License-Identifier: MIT */
/*
 * core_util.h - small helpers shared by every test program (tests/test_*.c;
 * the net tests add netb_util.h on top). Header-only: every function is
 * static.
 */
#ifndef CORE_UTIL_H
#define CORE_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "bluelet.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Is this build instrumented by AddressSanitizer? */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(CORE_ASAN)
#define CORE_ASAN 1
#endif

/* By ThreadSanitizer? Every green thread is a TSan fiber then, and TSan
 * allows 8128 threads and fibers alive at once. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CORE_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(CORE_TSAN)
#define CORE_TSAN 1
#endif

/* Heavy loops are scaled down under qemu (tests/CMakeLists.txt defines
 * CORE_EMULATED for every test when cross-compiling), under Valgrind
 * (CORE_VALGRIND, with BLUELET_TEST_VALGRIND) and under ASan or TSan. */
#if defined(CORE_EMULATED) || defined(CORE_VALGRIND)
#define CORE_SLOW 1
#elif defined(CORE_ASAN) || defined(CORE_TSAN)
#define CORE_SLOW 1
#else
#define CORE_SLOW 0
#endif

#define CORE_FAIL(...)                                                       \
    do {                                                                     \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                \
        fprintf(stderr, __VA_ARGS__);                                        \
        fputc('\n', stderr);                                                 \
        fflush(stderr);                                                      \
        exit(1);                                                             \
    } while (0)

/* Assert a condition; on failure print it (and errno) and exit(1). */
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            int e_ = errno;                                                  \
            CORE_FAIL("CHECK(%s) (errno %d: %s)", #cond, e_, strerror(e_));  \
        }                                                                    \
    } while (0)

/* Assert that an expression returned -1 (or NULL, via CHECK_NULL_ERR) and
 * set errno to the expected value. */
#define CHECK_ERR(expr, err)                                                 \
    do {                                                                     \
        errno = 0;                                                           \
        long r_ = (long)(expr);                                              \
        int e_ = errno;                                                      \
        if (r_ != -1 || e_ != (err))                                         \
            CORE_FAIL("%s returned %ld with errno %d (%s); expected -1 with " \
                      "%s", #expr, r_, e_, strerror(e_), #err);              \
    } while (0)

#define CHECK_NULL_ERR(expr, err)                                            \
    do {                                                                     \
        errno = 0;                                                           \
        const void *p_ = (const void *)(expr);                               \
        int e_ = errno;                                                      \
        if (p_ != NULL || e_ != (err))                                       \
            CORE_FAIL("%s returned %p with errno %d (%s); expected NULL "    \
                      "with %s", #expr, p_, e_, strerror(e_), #err);         \
    } while (0)

#define CHECK_EQ_LL(a, b)                                                    \
    do {                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                  \
        if (a_ != b_)                                                        \
            CORE_FAIL("%s == %lld, expected %s == %lld", #a, a_, #b, b_);    \
    } while (0)

/* Run fn(arg) as the one first green thread of a new scheduler, until every
 * green thread has ended; any failure ends the test. */
static inline void core_run_green(bl_func fn, void *arg)
{
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, fn, arg) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
}

/* A field of /proc/self/status counted in kB ("VmRSS", "VmSize"). */
static inline long core_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    char line[256];
    size_t n = strlen(field);
    long kb = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, n) == 0 && line[n] == ':' &&
            sscanf(line + n + 1, "%ld kB", &kb) == 1)
            break;
    fclose(f);
    CHECK(kb >= 0);
    return kb;
}

static inline double core_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Pause the caller for `seconds`: bl_sleep() inside a green thread (the
 * scheduler keeps running), else the whole OS thread. */
static inline void core_pause(double seconds)
{
    if (bl_self() != NULL)
        CHECK(bl_sleep(seconds) == 0);
    else
        usleep((useconds_t)(seconds * 1e6));
}

/* Wait for child process pid to end, at most `limit` seconds; then kill it
 * with SIGKILL (*status says so). Polls, with core_pause(), so it may be
 * called from a green thread. Returns 0 if the child ended by itself, -1 if
 * it was killed. */
static inline int core_wait_child(pid_t pid, double limit, int *status)
{
    double t0 = core_now();
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        CHECK(r >= 0);
        if (r == pid)
            return 0;
        if (core_now() - t0 > limit) {
            kill(pid, SIGKILL);
            CHECK(waitpid(pid, status, 0) == pid);
            return -1;
        }
        core_pause(0.002);
    }
}

/* An ordered trace of events, to compare with an expected interleaving. */
typedef struct core_trace {
    char buf[4096];
    size_t len;
} core_trace;

static inline void core_trace_add(core_trace *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void core_trace_add(core_trace *t, const char *fmt, ...)
{
    if (t->len != 0 && t->len < sizeof t->buf - 1)
        t->buf[t->len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, sizeof t->buf - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n;
    if (t->len >= sizeof t->buf)
        t->len = sizeof t->buf - 1;
}

static inline void core_trace_expect(const core_trace *t, const char *want)
{
    if (strcmp(t->buf, want) != 0)
        CORE_FAIL("trace mismatch\n  got:  %s\n  want: %s", t->buf, want);
}

/* The result of running a function in a forked child with its stderr
 * captured. */
typedef struct core_child {
    int status;        /* as from waitpid() */
    double seconds;    /* how long the child ran */
    char err[16384];   /* its stderr (NUL-terminated, possibly truncated) */
    size_t errlen;
} core_child;

/* Run fn() in a forked child whose stderr goes to a temporary file; the
 * child exits with fn's return value. Waits at most `limit` seconds (then
 * kills the child with SIGKILL, and the status says so). */
/* Where tests put their files: $TMPDIR as the environment says, /tmp if it
 * is unset or empty. */
static inline const char *core_tmpdir(void)
{
    const char *d = getenv("TMPDIR");
    return d != NULL && d[0] != '\0' ? d : "/tmp";
}

/* An unnamed temporary file (created, then unlinked) in core_tmpdir(). */
static inline int core_tmpfd(const char *what)
{
    char path[4096];
    CHECK(snprintf(path, sizeof path, "%s/bl_%s_XXXXXX", core_tmpdir(), what) <
          (int)sizeof path);
    int fd = mkstemp(path);
    if (fd < 0)
        fprintf(stderr, "mkstemp %s: %s\n", path, strerror(errno));
    CHECK(fd >= 0);
    unlink(path);
    return fd;
}

static inline void core_run_child(int (*fn)(void), double limit,
                                  core_child *out)
{
    int fd = core_tmpfd("core_child");
    fflush(stdout);
    fflush(stderr);
    double t0 = core_now();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fd, STDERR_FILENO);
        close(fd);
        int rc = fn();
        fflush(stderr);
        fflush(stdout);
        _exit(rc);
    }
    core_wait_child(pid, limit, &out->status);
    out->seconds = core_now() - t0;
    ssize_t n = pread(fd, out->err, sizeof out->err - 1, 0);
    out->errlen = n > 0 ? (size_t)n : 0;
    out->err[out->errlen] = '\0';
    close(fd);
}

static inline void core_child_describe(const core_child *c, char *buf,
                                       size_t cap);

/* Run fn() in a child (core_run_child) and fail the test, with the child's
 * stderr, unless it exits with 0. */
static inline void core_run_child_ok(const char *what, int (*fn)(void),
                                     double limit)
{
    static core_child c;
    core_run_child(fn, limit, &c);
    char st[64];
    core_child_describe(&c, st, sizeof st);
    if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0)
        CORE_FAIL("%s: child %s, stderr:\n%s", what, st, c.err);
}

static inline void core_child_describe(const core_child *c, char *buf,
                                       size_t cap)
{
    if (WIFEXITED(c->status))
        snprintf(buf, cap, "exited with %d", WEXITSTATUS(c->status));
    else if (WIFSIGNALED(c->status))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(c->status),
                 strsignal(WTERMSIG(c->status)));
    else
        snprintf(buf, cap, "status 0x%x", c->status);
}

#endif /* CORE_UTIL_H */
