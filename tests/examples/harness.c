/* SPDX-License-Identifier: MIT */
/*
 * harness.c - see harness.h.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int h_slow;
int h_compare;
int h_log;
const char *h_curl;

static char **cmd;          /* the example's command (emulator first) */
static int ncmd;
static const char *prog = "driver";

#define MAX_CHILDREN 64

struct h_child {
    pid_t pid;
    int reaped;
    int status;
    int fd;                 /* read end of the output pipe */
    pthread_t reader;
    int reader_joined;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;
    size_t len, cap;
    int eof;
};

static h_child *children[MAX_CHILDREN];
static volatile pid_t child_pids[MAX_CHILDREN];
static int nchildren;

double h_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void h_sleep(double seconds)
{
    struct timespec ts = {(time_t)seconds,
                          (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

const char *h_example_name(void)
{
    const char *slash = strrchr(cmd[ncmd - 1], '/');
    return slash != NULL ? slash + 1 : cmd[ncmd - 1];
}

static void kill_all(void)
{
    for (int i = 0; i < nchildren; i++) {
        h_child *c = children[i];
        if (c != NULL && !c->reaped) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &c->status, 0);
            c->reaped = 1;
        }
    }
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: watchdog: the test took too long\n";
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (child_pids[i] > 0)
            kill(child_pids[i], SIGKILL);
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(1);
}

void h_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "FAIL (%s, %s:%d): ", prog, file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    kill_all();
    exit(1);
}

void h_ok(const char *fmt, ...)
{
    va_list ap;
    printf("ok: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

void h_init(int argc, char **argv, int watchdog)
{
    prog = argv[0];
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (strcmp(argv[i], "--slow") == 0) {
            h_slow = 1;
        } else if (strcmp(argv[i], "--compare") == 0) {
            h_compare = 1;
        } else if (strcmp(argv[i], "--log") == 0) {
            h_log = 1;
        } else if (strcmp(argv[i], "--curl") == 0 && i + 1 < argc) {
            h_curl = argv[++i];
        } else {
            fprintf(stderr, "%s: unknown option %s\n", prog, argv[i]);
            exit(2);
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: %s [--slow] [--log] [--compare] [--curl PATH] "
                        "-- [EMULATOR...] EXAMPLE\n", prog);
        exit(2);
    }
    cmd = argv + i;
    ncmd = argc - i;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)watchdog);
    atexit(kill_all);
}

/* ---- child processes ---- */

static void *reader_main(void *arg)
{
    h_child *c = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        pthread_mutex_lock(&c->mu);
        if (n <= 0) {
            c->eof = 1;
        } else {
            if (c->len + (size_t)n + 1 > c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 65536;
                while (c->len + (size_t)n + 1 > cap)
                    cap *= 2;
                char *p = realloc(c->buf, cap);
                if (p == NULL)
                    abort();
                c->buf = p;
                c->cap = cap;
            }
            memcpy(c->buf + c->len, buf, (size_t)n);
            c->len += (size_t)n;
            c->buf[c->len] = '\0';
        }
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        if (n <= 0)
            return NULL;
    }
}

/* Start argv (NULL-terminated) with its output captured. */
static h_child *spawn_argv(char **argv, int merge_stderr)
{
    h_check(nchildren < MAX_CHILDREN, "too many children");
    int p[2];
    h_check(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    h_child *c = calloc(1, sizeof *c);
    h_check(c != NULL, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    h_check(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Die with the driver, whatever kills it; restore SIGPIPE (an
         * ignored signal stays ignored across exec). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        dup2(p[1], 1);
        if (merge_stderr)
            dup2(p[1], 2);
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    c->pid = pid;
    c->fd = p[0];
    children[nchildren] = c;
    child_pids[nchildren] = pid;
    nchildren++;
    h_check(pthread_create(&c->reader, NULL, reader_main, c) == 0,
            "pthread_create failed");
    return c;
}

h_child *h_spawn(const char *const *args, int merge_stderr)
{
    int nargs = 0;
    while (args != NULL && args[nargs] != NULL)
        nargs++;
    char **argv = calloc((size_t)(ncmd + nargs + 1), sizeof *argv);
    h_check(argv != NULL, "out of memory");
    for (int i = 0; i < ncmd; i++)
        argv[i] = cmd[i];
    for (int i = 0; i < nargs; i++)
        argv[ncmd + i] = (char *)args[i];
    h_child *c = spawn_argv(argv, merge_stderr);
    free(argv);
    return c;
}

char *h_output(h_child *c)
{
    pthread_mutex_lock(&c->mu);
    char *s = malloc(c->len + 1);
    h_check(s != NULL, "out of memory");
    if (c->len > 0)
        memcpy(s, c->buf, c->len);
    s[c->len] = '\0';
    pthread_mutex_unlock(&c->mu);
    return s;
}

static void abs_deadline(struct timespec *ts, double timeout)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    double t = (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9 + timeout;
    ts->tv_sec = (time_t)t;
    ts->tv_nsec = (long)((t - (double)ts->tv_sec) * 1e9);
}

int h_wait_output(h_child *c, const char *needle, double timeout)
{
    struct timespec dl;
    abs_deadline(&dl, timeout);
    pthread_mutex_lock(&c->mu);
    int found;
    for (;;) {
        found = c->buf != NULL && strstr(c->buf, needle) != NULL;
        if (found || c->eof)
            break;
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT) {
            found = c->buf != NULL && strstr(c->buf, needle) != NULL;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

int h_wait_port(h_child *c, double timeout)
{
    double end = h_now() + timeout;
    for (;;) {
        char *out = h_output(c);
        const char *p = strstr(out, "port ");
        int port = -1;
        if (p != NULL && strchr(p, '\n') != NULL)
            port = atoi(p + 5);
        free(out);
        if (port > 0)
            return port;
        int status;
        if (h_exited(c, &status))
            h_fail("the server exited (status 0x%x) before printing its port",
                   status);
        h_check(h_now() < end, "the server printed no port within %.0f s",
                timeout);
        h_wait_output(c, "\n", 0.05);
        h_sleep(0.02);
    }
}

/* Join the output reader once the pipe has reached end of file. */
static void join_reader(h_child *c, double timeout)
{
    if (c->reader_joined)
        return;
    struct timespec dl;
    abs_deadline(&dl, timeout);
    pthread_mutex_lock(&c->mu);
    while (!c->eof)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
            break;
    int eof = c->eof;
    pthread_mutex_unlock(&c->mu);
    h_check(eof, "the child's output stayed open after it exited");
    pthread_join(c->reader, NULL);
    close(c->fd);
    c->reader_joined = 1;
}

static void mark_reaped(h_child *c, int status)
{
    c->reaped = 1;
    c->status = status;
    for (int i = 0; i < nchildren; i++)
        if (children[i] == c)
            child_pids[i] = 0;
}

int h_exited(h_child *c, int *status)
{
    if (!c->reaped) {
        int st;
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        if (r == c->pid)
            mark_reaped(c, st);
    }
    if (c->reaped && status != NULL)
        *status = c->status;
    return c->reaped;
}

int h_wait_exit(h_child *c, double timeout)
{
    double end = h_now() + timeout;
    int status;
    while (!h_exited(c, &status)) {
        h_check(h_now() < end, "the example did not exit within %.0f s", timeout);
        h_sleep(0.01);
    }
    join_reader(c, 10);
    return status;
}

void h_signal(h_child *c, int sig)
{
    h_check(!c->reaped, "signal %d to a child already reaped", sig);
    kill(c->pid, sig);
}

void h_stop_server(h_child *c, const char *name)
{
    int status;
    if (h_exited(c, &status))
        h_fail("%s died during the test (wait status 0x%x)", name, status);
    kill(c->pid, SIGTERM);
    double end = h_now() + 10;
    while (!h_exited(c, &status)) {
        if (h_now() > end) {
            kill(c->pid, SIGKILL);
            end += 100;
        }
        h_sleep(0.01);
    }
    join_reader(c, 10);
}

static int run_child(h_child *c, double timeout, char **out)
{
    int status = h_wait_exit(c, timeout);
    char *o = h_output(c);
    if (WIFSIGNALED(status))
        h_fail("the example was killed by signal %d; output:\n%s",
               WTERMSIG(status), o);
    if (out != NULL)
        *out = o;
    else
        free(o);
    return WEXITSTATUS(status);
}

int h_run(const char *const *args, int merge_stderr, double timeout, char **out)
{
    return run_child(h_spawn(args, merge_stderr), timeout, out);
}

int h_run_argv(const char *const *argv, int merge_stderr, double timeout,
               char **out)
{
    return run_child(spawn_argv((char **)argv, merge_stderr), timeout, out);
}

/* ---- sockets ---- */

int h_connect(int port)
{
    return h_connect_rcvbuf(port, 0);
}

int h_connect_rcvbuf(int port, int rcvbuf)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    double end = h_now() + 10;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        h_check(fd >= 0, "socket: %s", strerror(errno));
        if (rcvbuf > 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
            return fd;
        int e = errno;
        close(fd);
        h_check(e == ECONNREFUSED && h_now() < end,
                "connect to 127.0.0.1:%d: %s", port, strerror(e));
        h_sleep(0.05);
    }
}

int h_closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    h_check(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0,
            "cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

void h_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        h_check(n > 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

ssize_t h_recv(int fd, void *buf, size_t cap, double timeout)
{
    double end = h_now() + timeout;
    for (;;) {
        double left = end - h_now();
        if (left < 0)
            left = 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0) {
            if (h_now() >= end) {
                errno = ETIMEDOUT;
                return -1;
            }
            continue;
        }
        ssize_t n = recv(fd, buf, cap, 0);
        if (n < 0 && errno == EINTR)
            continue;
        return n;
    }
}

char *h_read_all(int fd, double timeout, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    h_check(buf != NULL, "out of memory");
    double end = h_now() + timeout;
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            h_check(buf != NULL, "out of memory");
        }
        double left = end - h_now();
        ssize_t r = h_recv(fd, buf + n, cap - n, left > 0 ? left : 0);
        h_check(r >= 0, "reading until the server closes: %s", strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

void h_fill_random(void *buf, size_t len, unsigned seed)
{
    unsigned char *p = buf;
    unsigned x = seed * 2654435761u + 12345u;
    if (x == 0)
        x = 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)(x >> 7);
    }
}
