/* SPDX-License-Identifier: MIT */
/*
 * crawler.c - fetch many web pages at once, one green thread per URL.
 *
 *   usage: crawler [-T seconds] URL...
 *          crawler --compare
 *
 * Each URL (http://host[:port]/path only; no https) is fetched by its own
 * green thread with an HTTP/1.1 GET, and a line is printed as each finishes:
 *
 *     200  1024 bytes  0.012 s  http://127.0.0.1:8000/index.html
 *     ERR  connect: Connection refused  0.001 s  http://127.0.0.1:9/
 *
 * -T bounds every network wait (connect, each read and write), 30 s by
 * default. The exit status is 0 when every URL gave an HTTP response, 1 when
 * some failed, 2 for bad arguments.
 *
 * --compare repeats the experiment of the original bluelet article: a local
 * server (in its own OS thread, with its own scheduler) answers each request
 * after 200 ms, and 20 URLs are fetched sequentially, with one OS thread per
 * URL, with one process per URL, and with one green thread per URL. The
 * fetching code is the same each time, only the concurrency around it
 * changes; it prints a table of total times and speedups. It only ever
 * talks to 127.0.0.1.
 */
#define _GNU_SOURCE
#include <bluelet.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_LEN 8192

struct url {
    const char *text;       /* as given */
    char host[256];         /* without brackets for IPv6 literals */
    char hostport[300];     /* for the Host header */
    int port;
    char path[2048];
};

struct result {
    int status;             /* HTTP status, or 0 when the fetch failed */
    size_t bytes;           /* body bytes received */
    double seconds;
    const char *error;      /* what failed, when status == 0 */
    int err;                /* errno of the failure, 0 if none */
};

static double net_timeout = 30.0;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- URLs ---- */

/* Parse http://host[:port][/path]. Returns 0, or -1 with a message. */
static int parse_url(const char *text, struct url *u, const char **why)
{
    memset(u, 0, sizeof *u);
    u->text = text;
    u->port = 80;
    if (strncasecmp(text, "http://", 7) != 0) {
        *why = "only http:// URLs are supported";
        return -1;
    }
    const char *p = text + 7;
    const char *hend;
    if (*p == '[') {                /* [IPv6 literal] */
        hend = strchr(p, ']');
        if (hend == NULL) {
            *why = "unterminated [address]";
            return -1;
        }
        p++;
    } else {
        hend = p + strcspn(p, ":/?#");
    }
    size_t hlen = (size_t)(hend - p);
    if (hlen == 0 || hlen >= sizeof u->host) {
        *why = "bad host name";
        return -1;
    }
    memcpy(u->host, p, hlen);
    if (*hend == ']')
        hend++;
    p = hend;
    if (*p == ':') {
        char *end;
        errno = 0;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || errno != 0 || port < 1 || port > 65535 ||
            (*end != '\0' && *end != '/' && *end != '?')) {
            *why = "bad port";
            return -1;
        }
        u->port = (int)port;
        p = end;
    }
    snprintf(u->hostport, sizeof u->hostport, "%.*s", (int)(p - (text + 7)),
             text + 7);
    int plen;
    if (*p == '\0' || *p == '?')
        plen = snprintf(u->path, sizeof u->path, "/%s", p);
    else if (*p == '/')
        plen = snprintf(u->path, sizeof u->path, "%s", p);
    else {
        *why = "bad URL";
        return -1;
    }
    if (plen < 0 || (size_t)plen >= sizeof u->path) {
        *why = "path too long";     /* never fetch a truncated one */
        return -1;
    }
    char *frag = strchr(u->path, '#');   /* fragments stay in the client */
    if (frag != NULL)
        *frag = '\0';
    for (const char *q = u->path; *q; q++) {
        if ((unsigned char)*q <= ' ' || *q == 0x7f) {
            *why = "spaces or control characters in the path";
            return -1;
        }
    }
    return 0;
}

/* ---- one fetch, as straight-line code ---- */

/* Read and count exactly n body bytes. */
static int read_body(bl_conn *c, size_t n, struct result *r)
{
    char buf[16384];
    while (n > 0) {
        ssize_t got = bl_recv(c, buf, n < sizeof buf ? n : sizeof buf);
        if (got <= 0) {
            if (got == 0)
                errno = EPIPE;
            return -1;
        }
        r->bytes += (size_t)got;
        n -= (size_t)got;
    }
    return 0;
}

/* Transfer-Encoding: chunked. */
static int read_chunked(bl_conn *c, struct result *r)
{
    char line[LINE_MAX_LEN];
    for (int i = 0; i < 1000000; i++) {
        if (bl_readline(c, line, sizeof line) <= 0)
            return -1;
        char *end;
        errno = 0;
        unsigned long long size = strtoull(line, &end, 16);
        if (end == line || errno != 0) {
            errno = EPROTO;
            return -1;
        }
        if (size == 0) {            /* last chunk: skip the trailer */
            for (int j = 0; j < 100; j++) {
                ssize_t n = bl_readline(c, line, sizeof line);
                if (n <= 0)
                    return -1;
                if (strcmp(line, "\r\n") == 0 || strcmp(line, "\n") == 0)
                    return 0;
            }
            errno = EPROTO;
            return -1;
        }
        if (read_body(c, (size_t)size, r) < 0 ||
            bl_readline(c, line, sizeof line) <= 0)   /* the CRLF after it */
            return -1;
    }
    errno = EPROTO;
    return -1;
}

/* Send the request, read the status line and headers, then the body.
 * Fills r; returns 0 on success or -1 with r->error set. */
static int http_get(bl_conn *c, const struct url *u, struct result *r)
{
    char req[LINE_MAX_LEN];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "User-Agent: bluelet-crawler/%s\r\n"
                     "Accept: */*\r\n"
                     "Connection: close\r\n\r\n",
                     u->path, u->hostport, bl_version());
    if (n < 0 || (size_t)n >= sizeof req) {
        r->error = "URL too long";
        r->err = ENAMETOOLONG;
        return -1;
    }
    if (bl_sendall(c, req, (size_t)n) < 0) {
        r->error = "send";
        return -1;
    }

    char line[LINE_MAX_LEN];
    int status;
    ssize_t len = bl_readline(c, line, sizeof line);
    if (len <= 0 || sscanf(line, "HTTP/%*d.%*d %3d", &status) != 1 ||
        status < 100) {
        if (len >= 0)
            errno = EPROTO;
        r->error = "bad status line";
        return -1;
    }
    long long content_length = -1;
    int chunked = 0;
    for (int i = 0;; i++) {
        len = bl_readline(c, line, sizeof line);
        if (len <= 0 || i > 200) {
            if (len >= 0)
                errno = EPROTO;
            r->error = "reading headers";
            return -1;
        }
        if (strcmp(line, "\r\n") == 0 || strcmp(line, "\n") == 0)
            break;                  /* end of the headers */
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            content_length = strtoll(line + 15, NULL, 10);
        else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
                 strcasestr(line + 18, "chunked") != NULL)
            chunked = 1;
    }
    r->status = status;

    int rc = 0;
    if (status == 204 || status == 304 || status < 200)
        rc = 0;                     /* no body */
    else if (chunked)
        rc = read_chunked(c, r);
    else if (content_length >= 0)
        rc = read_body(c, (size_t)content_length, r);
    else {                          /* the body ends with the connection */
        char buf[16384];
        ssize_t got;
        while ((got = bl_recv(c, buf, sizeof buf)) > 0)
            r->bytes += (size_t)got;
        rc = got < 0 ? -1 : 0;
    }
    if (rc < 0) {
        r->error = "reading body";
        r->status = 0;
    }
    return rc;
}

/* Fetch one URL; must run in a green thread. Never fails: the outcome is
 * in *r. */
static void fetch(const struct url *u, struct result *r)
{
    double t0 = now();
    memset(r, 0, sizeof *r);
    bl_conn *c = bl_connect_timeout(u->host, u->port, net_timeout);
    if (c == NULL) {
        r->err = errno;
        r->error = errno == EADDRNOTAVAIL && bl_resolve_error()[0]
                       ? bl_resolve_error() : "connect";
    } else {
        bl_conn_set_timeout(c, net_timeout);
        errno = 0;
        if (http_get(c, u, r) < 0 && r->err == 0)
            r->err = errno != 0 ? errno : EPROTO;
        bl_close(c);
    }
    r->seconds = now() - t0;
}

/* ---- crawling the command line's URLs ---- */

struct job {
    struct url url;
    struct result result;
};

static void print_result(const struct job *j)
{
    const struct result *r = &j->result;
    if (r->status != 0)
        printf("%3d  %zu bytes  %.3f s  %s\n", r->status, r->bytes,
               r->seconds, j->url.text);
    else
        printf("ERR  %s: %s  %.3f s  %s\n", r->error, strerror(r->err),
               r->seconds, j->url.text);
}

static void *crawl_one(void *arg)
{
    struct job *j = arg;
    fetch(&j->url, &j->result);
    print_result(j);                /* in the order they finish */
    return NULL;
}

static int crawl(struct job *jobs, int n)
{
    bl_sched *s = bl_sched_new();
    if (s == NULL) {
        perror("bl_sched_new");
        return 1;
    }
    bl_spawn_opts opts = {.size = sizeof opts, .detached = 1};
    for (int i = 0; i < n; i++) {
        if (bl_spawn_ex(s, crawl_one, &jobs[i], &opts) == NULL) {
            perror("bl_spawn");
            bl_sched_free(s);
            return 1;
        }
    }
    double t0 = now();
    int rc = bl_sched_run(s);
    bl_sched_free(s);
    if (rc < 0) {
        perror("bl_sched_run");
        return 1;
    }
    int failed = 0;
    for (int i = 0; i < n; i++)
        failed += jobs[i].result.status == 0;
    printf("%d URL%s in %.3f s, %d failed\n", n, n == 1 ? "" : "s",
           now() - t0, failed);
    return failed ? 1 : 0;
}

/* ---- --compare: the same fetches, four ways ---- */

#define COMPARE_URLS 20
#define SERVER_DELAY 0.2

/* The slow server: read the request head, wait, answer. */
static void slow_handler(bl_conn *c, void *arg)
{
    (void)arg;
    char line[LINE_MAX_LEN];
    char path[256] = "/";
    for (int i = 0; i < 100; i++) {
        ssize_t n = bl_readline(c, line, sizeof line);
        if (n <= 0)
            return;
        if (i == 0)
            sscanf(line, "GET %255s", path);
        if (strcmp(line, "\r\n") == 0 || strcmp(line, "\n") == 0)
            break;
    }
    if (bl_sleep(SERVER_DELAY) < 0)
        return;
    char body[300], resp[600];
    int blen = snprintf(body, sizeof body, "You asked for %s, slowly.\n", path);
    int rlen = snprintf(resp, sizeof resp,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                        blen, body);
    bl_sendall(c, resp, (size_t)rlen);
}

struct server {
    bl_listener *listener;
    int stop_fd;            /* readable when the server must stop */
    bl_thread *acceptor;
    pthread_t tid;
    int failed;
};

/* Waits for the stop signal, then cancels the acceptor; the scheduler ends
 * once the last handler has finished. */
static void *server_stopper(void *arg)
{
    struct server *sv = arg;
    bl_wait_fd(sv->stop_fd, BL_READ, -1);
    bl_cancel(sv->acceptor);
    return NULL;
}

static void *server_thread(void *arg)
{
    struct server *sv = arg;
    bl_sched *s = bl_sched_new();
    if (s == NULL) {
        sv->failed = 1;
        bl_listener_close(sv->listener);
        return NULL;
    }
    bl_spawn_opts opts = {.size = sizeof opts, .detached = 1};
    sv->acceptor = bl_serve_listener(s, sv->listener, slow_handler, NULL);
    if (sv->acceptor == NULL ||
        bl_spawn_ex(s, server_stopper, sv, &opts) == NULL ||
        bl_sched_run(s) < 0) {
        perror("server");
        sv->failed = 1;
    }
    bl_sched_free(s);
    return NULL;
}

/* Run fetch() for one URL on a scheduler of its own (for the sequential,
 * OS thread and process variants). */
struct fetch_arg {
    const struct url *url;
    struct result *result;
};

static void *fetch_thread(void *arg)
{
    struct fetch_arg *fa = arg;
    fetch(fa->url, fa->result);
    return NULL;
}

static void *fetch_all_in_order(void *arg)
{
    struct job *jobs = arg;
    for (int i = 0; i < COMPARE_URLS; i++)
        fetch(&jobs[i].url, &jobs[i].result);
    return NULL;
}

static int run_green(bl_func fn, void *arg, int nthreads, size_t stride)
{
    bl_sched *s = bl_sched_new();
    if (s == NULL)
        return -1;
    bl_spawn_opts opts = {.size = sizeof opts, .detached = 1};
    for (int i = 0; i < nthreads; i++) {
        if (bl_spawn_ex(s, fn, (char *)arg + (size_t)i * stride, &opts) == NULL) {
            bl_sched_free(s);
            return -1;
        }
    }
    int rc = bl_sched_run(s);
    bl_sched_free(s);
    return rc;
}

static void *os_thread_fetch(void *arg)
{
    struct fetch_arg fa = {&((struct job *)arg)->url, &((struct job *)arg)->result};
    if (run_green(fetch_thread, &fa, 1, 0) < 0)
        ((struct job *)arg)->result.status = 0;
    return NULL;
}

/* Each method fills jobs[i].result; returns the seconds it took. */
static double method_sequential(struct job *jobs)
{
    double t0 = now();
    run_green(fetch_all_in_order, jobs, 1, 0);
    return now() - t0;
}

static double method_pthreads(struct job *jobs)
{
    double t0 = now();
    pthread_t tids[COMPARE_URLS];
    int started[COMPARE_URLS] = {0};
    for (int i = 0; i < COMPARE_URLS; i++)
        started[i] = pthread_create(&tids[i], NULL, os_thread_fetch, &jobs[i]) == 0;
    for (int i = 0; i < COMPARE_URLS; i++)
        if (started[i])
            pthread_join(tids[i], NULL);
    return now() - t0;
}

static double method_fork(struct job *jobs)
{
    double t0 = now();
    pid_t pids[COMPARE_URLS];
    fflush(stdout);
    for (int i = 0; i < COMPARE_URLS; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            /* The child has only this OS thread; it makes its own
             * scheduler and reports success in its exit status. */
            struct fetch_arg fa = {&jobs[i].url, &jobs[i].result};
            int ok = run_green(fetch_thread, &fa, 1, 0) == 0 &&
                     jobs[i].result.status == 200;
            _exit(ok ? 0 : 1);
        }
    }
    for (int i = 0; i < COMPARE_URLS; i++) {
        int status = 0;
        if (pids[i] > 0) {
            while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR)
                ;
        }
        /* The child's memory is its own: fill in what its status says. */
        jobs[i].result.status =
            pids[i] > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 200 : 0;
    }
    return now() - t0;
}

static double method_green(struct job *jobs)
{
    double t0 = now();
    struct fetch_arg fa[COMPARE_URLS];
    for (int i = 0; i < COMPARE_URLS; i++)
        fa[i] = (struct fetch_arg){&jobs[i].url, &jobs[i].result};
    run_green(fetch_thread, fa, COMPARE_URLS, sizeof fa[0]);
    return now() - t0;
}

static int compare(void)
{
    struct server sv = {0};
    sv.listener = bl_listen("127.0.0.1", 0, 0);
    int stop[2];
    if (sv.listener == NULL || pipe2(stop, O_CLOEXEC) < 0) {
        perror("crawler: local server");
        return 1;
    }
    int port = bl_listener_port(sv.listener);
    sv.stop_fd = stop[0];
    if (pthread_create(&sv.tid, NULL, server_thread, &sv) != 0) {
        fprintf(stderr, "crawler: cannot start the server thread\n");
        return 1;
    }

    static char texts[COMPARE_URLS][64];
    static struct job jobs[COMPARE_URLS];
    for (int i = 0; i < COMPARE_URLS; i++) {
        const char *why;
        snprintf(texts[i], sizeof texts[i], "http://127.0.0.1:%d/page/%d", port, i);
        parse_url(texts[i], &jobs[i].url, &why);
    }
    printf("Fetching %d URLs from a local server that answers after %.0f ms.\n\n",
           COMPARE_URLS, SERVER_DELAY * 1000);
    printf("%-15s %10s %9s\n", "method", "total (s)", "speedup");

    static const struct {
        const char *name;
        double (*run)(struct job *);
    } methods[] = {
        {"sequential", method_sequential},
        {"pthreads", method_pthreads},
        {"fork", method_fork},
        {"green threads", method_green},
    };
    int failures = 0;
    double base = 0;
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        for (int i = 0; i < COMPARE_URLS; i++)
            memset(&jobs[i].result, 0, sizeof jobs[i].result);
        double t = methods[m].run(jobs);
        int ok = 0;
        for (int i = 0; i < COMPARE_URLS; i++)
            ok += jobs[i].result.status == 200;
        if (m == 0)
            base = t;
        printf("%-15s %10.3f %8.1fx", methods[m].name, t, t > 0 ? base / t : 0);
        if (ok != COMPARE_URLS) {
            printf("  (%d of %d fetches failed)", COMPARE_URLS - ok, COMPARE_URLS);
            failures++;
        }
        printf("\n");
    }

    /* Stop the server: its stopper thread wakes up and cancels the acceptor. */
    if (write(stop[1], "x", 1) != 1)
        perror("crawler: stopping the server");
    pthread_join(sv.tid, NULL);
    close(stop[0]);
    close(stop[1]);
    return failures || sv.failed ? 1 : 0;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [-T seconds] URL...\n"
            "       %s --compare\n"
            "  Fetch every URL (http://host[:port]/path) at once, one green\n"
            "  thread each, and print status, size and time of each.\n"
            "  -T seconds  bound every network wait (default 30)\n"
            "  --compare   time 20 fetches from a slow local server done\n"
            "              sequentially, with pthreads, fork and green threads\n",
            prog, prog);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int i = 1;
    if (argc == 2 && strcmp(argv[1], "--compare") == 0)
        return compare();
    if (i + 1 < argc && strcmp(argv[i], "-T") == 0) {
        char *end;
        errno = 0;
        net_timeout = strtod(argv[i + 1], &end);
        if (errno != 0 || end == argv[i + 1] || *end != '\0' ||
            !(net_timeout > 0 && net_timeout < 1e6)) {
            fprintf(stderr, "%s: -T: not a number of seconds: %s\n", argv[0],
                    argv[i + 1]);
            return 2;
        }
        i += 2;
    }
    if (i >= argc || argv[i][0] == '-') {
        usage(argv[0]);
        return 2;
    }
    int n = argc - i;
    struct job *jobs = calloc((size_t)n, sizeof *jobs);
    if (jobs == NULL) {
        perror("calloc");
        return 1;
    }
    for (int k = 0; k < n; k++) {
        const char *why;
        if (parse_url(argv[i + k], &jobs[k].url, &why) < 0) {
            fprintf(stderr, "%s: %s: %s\n", argv[0], argv[i + k], why);
            free(jobs);
            return 2;
        }
    }
    int rc = crawl(jobs, n);
    free(jobs);
    return rc;
}
