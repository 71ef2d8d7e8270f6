/* SPDX-License-Identifier: MIT */
/*
 * httpd.c - a static file web server, one green thread per connection.
 *
 *   usage: httpd [-p port] [-t threads] [-i seconds] [-b address] [-v] [root]
 *
 * Serves the files under root (default ".") on port 8000 (0 picks a free
 * port; the port is printed at start). Each connection is a green thread
 * running plain sequential code: read a request, send a response, repeat.
 *
 *   - HTTP/1.0 and 1.1, GET and HEAD; keep-alive (the default in 1.1, on
 *     request in 1.0), pipelined requests too.
 *   - Content-Type from the file name's extension; index.html for a
 *     directory, else an HTML listing of it.
 *   - Errors: 400 bad request (also an HTTP/1.1 request without exactly one
 *     Host header), 403 forbidden, 404 not found, 405 method not allowed,
 *     414 request line too long, 431 header too large, 503 when out of
 *     descriptors or memory.
 *   - Nothing outside root is ever served: ".." segments (also when
 *     percent-encoded) are refused, and the real path of every file, after
 *     symbolic links, must lie under the real path of root. Where the
 *     kernel has openat2(RESOLVE_BENEATH), symbolic links with an absolute
 *     target are refused even when it lies under root.
 *   - -i: a connection idle for that long (default 10 s; 0: never) is
 *     dropped, and a request's head must arrive within that time, so slow or
 *     silent clients cannot hold connections forever.
 *   - -t N runs N OS threads, each with its own scheduler and its own
 *     listening socket on the same port (SO_REUSEPORT): the kernel spreads
 *     the connections over them.
 *   - -b address listens on that address only (default: every address).
 *   - SIGTERM or SIGINT stops the server: bl_sched_stop() cancels every
 *     green thread of every scheduler, so each connection is closed (a
 *     response under way is cut short), the runs return and httpd says how
 *     many connections it closed and exits with status 0. A second signal
 *     kills it at once.
 *
 * Files are read with read(2) on the scheduler's OS thread; for files in the
 * page cache that costs no more than a copy. A server for slow disks would
 * hand the reads to a pool of OS threads.
 */
#define _GNU_SOURCE
#include <bluelet.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#if defined(SYS_openat2) && __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPENAT2 1
#endif
#include <time.h>
#include <unistd.h>

#define DEFAULT_PORT 8000
#define LINE_CAP 8192           /* longest request or header line + 1 */
#define MAX_HEADERS 100
#define OUT_CAP 65536           /* response buffer: headers + first bytes */
#define MAX_THREADS 64

/* ---- configuration, shared read-only by all threads ---- */

static char root[PATH_MAX];     /* realpath() of the document root */
static size_t root_len;
static double idle_timeout = 10.0;
static int verbose;

/* One per OS thread. */
struct worker {
    int lfd;
    bl_sched *sched;
    pthread_t tid;
};

static struct worker workers[MAX_THREADS];
static int nworkers;
static volatile sig_atomic_t stopping;  /* SIGTERM or SIGINT came */
static int closed_at_stop;      /* connections ended since (atomic) */

/* Per connection. */
struct client {
    bl_conn *conn;
    char line[LINE_CAP];
    char out[OUT_CAP];
};

/* One parsed request. */
struct request {
    char method[16];
    char *target;           /* points into target_buf */
    int minor;              /* HTTP/1.<minor> */
    int keep_alive;
    int head;               /* HEAD: headers only */
    char target_buf[LINE_CAP];
    char path[LINE_CAP];    /* the percent-decoded path */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- small text helpers ---- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static const char *content_type(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"svg", "image/svg+xml"},
        {"ico", "image/x-icon"},
        {"pdf", "application/pdf"},
        {"wasm", "application/wasm"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash != NULL ? slash : path, '.');
    if (dot != NULL) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    }
    return "application/octet-stream";
}

/* "Date:" value, formatted at most once a second per OS thread. */
static const char *http_date(void)
{
    static __thread char buf[40];
    static __thread time_t last;
    time_t t = time(NULL);
    if (t != last) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = t;
    }
    return buf;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decode src (up to '?' or '#') into dst. Returns -1 for a bad
 * escape or an encoded NUL. */
static int url_decode(const char *src, char *dst, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; src[i] != '\0' && src[i] != '?' && src[i] != '#'; i++) {
        int c = (unsigned char)src[i];
        if (c == '%') {
            int hi = hexval(src[i + 1]), lo = hi < 0 ? -1 : hexval(src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (j + 1 >= cap)
            return -1;
        dst[j++] = (char)c;
    }
    dst[j] = '\0';
    return 0;
}

/* Does any '/'-separated segment of path equal ".."? */
static int has_dotdot(const char *path)
{
    for (const char *p = path; *p; ) {
        const char *end = strchr(p, '/');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return 1;
        p += len;
        if (*p == '/')
            p++;
    }
    return 0;
}

/* Is the real path `real` root itself or below it? */
static int under_root(const char *real)
{
    if (root_len == 1)              /* root is "/" */
        return real[0] == '/';
    return strncmp(real, root, root_len) == 0 &&
           (real[root_len] == '\0' || real[root_len] == '/');
}

/* A growable string, for directory listings. */
struct strbuf {
    char *data;
    size_t len, cap;
    int failed;
};

static void sb_append(struct strbuf *sb, const char *s, size_t n)
{
    if (sb->failed)
        return;
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 4096;
        while (sb->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(sb->data, cap);
        if (p == NULL) {
            sb->failed = 1;
            return;
        }
        sb->data = p;
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

static void sb_puts(struct strbuf *sb, const char *s)
{
    sb_append(sb, s, strlen(s));
}

/* Append s with &, <, >, " and ' escaped for HTML. */
static void sb_html(struct strbuf *sb, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': sb_puts(sb, "&amp;"); break;
        case '<': sb_puts(sb, "&lt;"); break;
        case '>': sb_puts(sb, "&gt;"); break;
        case '"': sb_puts(sb, "&quot;"); break;
        case '\'': sb_puts(sb, "&#39;"); break;
        default: sb_append(sb, s, 1);
        }
    }
}

/* Append s percent-encoded for use in a URL path segment. */
static void sb_urlenc(struct strbuf *sb, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            sb_append(sb, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_append(sb, e, 3);
        }
    }
}

/* ---- responses ---- */

/* Format the status line and headers into cl->out. Returns their length, or
 * -1 if they do not fit. */
static int format_head(struct client *cl, const struct request *rq, int status,
                       const char *type, long long length, const char *extra)
{
    int n = snprintf(cl->out, OUT_CAP,
                     "HTTP/1.1 %d %s\r\n"
                     "Server: bluelet-httpd/%s\r\n"
                     "Date: %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %lld\r\n"
                     "%s%s\r\n",
                     status, reason_phrase(status), bl_version(), http_date(),
                     type, length, extra != NULL ? extra : "",
                     !rq->keep_alive ? "Connection: close\r\n"
                     : rq->minor == 0 ? "Connection: keep-alive\r\n" : "");
    return n > 0 && n < OUT_CAP ? n : -1;
}

static void log_request(const struct request *rq, int status, long long bytes)
{
    if (verbose)
        printf("%s %s HTTP/1.%d -> %d (%lld bytes)\n", rq->method,
               rq->target != NULL ? rq->target : "-", rq->minor, status, bytes);
}

/* Send a complete response with a body in memory. Returns 0 or -1. */
static int send_body(struct client *cl, const struct request *rq, int status,
                     const char *type, const char *body, size_t len,
                     const char *extra)
{
    int n = format_head(cl, rq, status, type, (long long)len, extra);
    if (n < 0)
        return -1;
    log_request(rq, status, (long long)len);
    if (rq->head)
        return bl_sendall(cl->conn, cl->out, (size_t)n);
    if (len <= (size_t)(OUT_CAP - n)) {     /* one send for small bodies */
        memcpy(cl->out + n, body, len);
        return bl_sendall(cl->conn, cl->out, (size_t)n + len);
    }
    if (bl_sendall(cl->conn, cl->out, (size_t)n) < 0)
        return -1;
    return bl_sendall(cl->conn, body, len);
}

static int send_error(struct client *cl, const struct request *rq, int status,
                      const char *extra)
{
    char body[256];
    int len = snprintf(body, sizeof body,
                       "<!DOCTYPE html>\n<html><head><title>%d %s</title></head>"
                       "<body><h1>%d %s</h1></body></html>\n",
                       status, reason_phrase(status), status,
                       reason_phrase(status));
    return send_body(cl, rq, status, "text/html; charset=utf-8", body,
                     (size_t)len, extra);
}

/* Send an open regular file of `size` bytes. Returns 0, or -1 when the
 * connection must be closed (an error, or the file shrank meanwhile). */
static int send_file(struct client *cl, const struct request *rq, int fd,
                     const char *path, off_t size)
{
    int n = format_head(cl, rq, 200, content_type(path), (long long)size, NULL);
    if (n < 0)
        return -1;
    log_request(rq, 200, (long long)size);
    if (rq->head)
        return bl_sendall(cl->conn, cl->out, (size_t)n);
    /* The first bytes of the file go out with the headers. */
    size_t used = (size_t)n;
    off_t left = size;
    for (;;) {
        while (left > 0 && used < OUT_CAP) {
            size_t want = OUT_CAP - used;
            if ((off_t)want > left)
                want = (size_t)left;
            ssize_t r = read(fd, cl->out + used, want);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)             /* error, or the file shrank */
                return -1;
            used += (size_t)r;
            left -= r;
        }
        if (used > 0 && bl_sendall(cl->conn, cl->out, used) < 0)
            return -1;
        if (left == 0)
            return 0;
        used = 0;
    }
}

static int entry_is_dir(const char *dir, const struct dirent *e)
{
    if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK)
        return e->d_type == DT_DIR;
    char p[PATH_MAX];
    struct stat st;
    if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p)
        return 0;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* An HTML listing of the directory `real` (requested as rq->path). */
static int send_listing(struct client *cl, const struct request *rq,
                        const char *real)
{
    struct dirent **names;
    int n = scandir(real, &names, NULL, alphasort);
    if (n < 0)
        return send_error(cl, rq, errno == EACCES ? 403 : 404, NULL);
    struct strbuf sb = {0};
    sb_puts(&sb, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                 "<title>Index of ");
    sb_html(&sb, rq->path);
    sb_puts(&sb, "</title></head>\n<body><h1>Index of ");
    sb_html(&sb, rq->path);
    sb_puts(&sb, "</h1>\n<ul>\n");
    int at_root = strcmp(rq->path, "/") == 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (strcmp(name, ".") != 0 && !(at_root && strcmp(name, "..") == 0)) {
            int dir = entry_is_dir(real, names[i]);
            sb_puts(&sb, "<li><a href=\"");
            if (strcmp(name, "..") == 0)
                sb_puts(&sb, "..");
            else
                sb_urlenc(&sb, name);
            sb_puts(&sb, dir ? "/\">" : "\">");
            sb_html(&sb, name);
            sb_puts(&sb, dir ? "/</a></li>\n" : "</a></li>\n");
        }
        free(names[i]);
    }
    free(names);
    sb_puts(&sb, "</ul>\n</body></html>\n");
    int rc = sb.failed ? send_error(cl, rq, 500, NULL)
                       : send_body(cl, rq, 200, "text/html; charset=utf-8",
                                   sb.data, sb.len, NULL);
    free(sb.data);
    return rc;
}

#ifdef HAVE_OPENAT2
static int root_fd = -1;        /* root, for openat2(); -1: not available */

/* Open path (from the request, starting with '/') relative to root in one
 * system call: with RESOLVE_BENEATH the kernel itself refuses "..", absolute
 * symbolic links and relative ones that lead out of root (EXDEV). Returns
 * the fd, or -1 with errno; ENOSYS when the kernel (or an emulator) lacks
 * openat2. */
static int open_beneath(const char *path)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    while (*path == '/')
        path++;
    return (int)syscall(SYS_openat2, root_fd, *path ? path : ".", &how,
                        sizeof how);
}
#endif

/* The status for a failed open or realpath(): missing is 404, refused 403,
 * and running out of descriptors or memory is no fault of the request. */
static int open_status(int err)
{
    switch (err) {
    case ENOENT: case ENOTDIR: case ENAMETOOLONG:
        return 404;
    case EACCES: case EPERM: case EXDEV: case ELOOP:
        return 403;
    case EMFILE: case ENFILE: case ENOMEM:
        return 503;
    default:
        return 500;
    }
}

/* Open the file or directory for rq->path, making sure it is under root
 * (also through symbolic links). Returns an fd (opened O_RDONLY) and fills
 * real (a path to it under root) and *st, or -1 with *status set to 403 or
 * 404. */
static int open_under_root(const char *path, char *real, struct stat *st,
                           int *status)
{
    char full[PATH_MAX];
    if (snprintf(full, sizeof full, "%s%s", root, path) >= (int)sizeof full) {
        *status = 404;
        return -1;
    }
    int fd = -1;
#ifdef HAVE_OPENAT2
    if (root_fd >= 0) {
        fd = open_beneath(path);
        if (fd < 0 && (errno == ENOSYS || errno == EPERM)) {
            close(root_fd);         /* not here: use realpath() from now on */
            root_fd = -1;
        } else if (fd < 0) {
            *status = open_status(errno);
            return -1;
        } else {
            memcpy(real, full, strlen(full) + 1);
        }
    }
#endif
    if (fd < 0) {
        /* Portable: resolve every link, then compare with root. Costs a
         * readlink() per path component. */
        if (realpath(full, real) == NULL) {
            *status = open_status(errno);
            return -1;
        }
        if (!under_root(real)) {    /* a symbolic link out of root */
            *status = 403;
            return -1;
        }
        /* O_NONBLOCK: opening a FIFO must not hang the whole scheduler. */
        fd = open(real, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            *status = open_status(errno);
            return -1;
        }
    }
    if (fstat(fd, st) < 0 || !(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))) {
        close(fd);
        *status = 403;              /* devices, sockets, FIFOs */
        return -1;
    }
    return fd;
}

/* Answer a GET or HEAD for rq->path. Returns 0, or -1 to close. */
static int serve_path(struct client *cl, struct request *rq)
{
    char real[PATH_MAX];
    struct stat st;
    int status;
    int fd = open_under_root(rq->path, real, &st, &status);
    if (fd < 0)
        return send_error(cl, rq, status, NULL);

    if (S_ISDIR(st.st_mode)) {
        close(fd);
        size_t plen = strlen(rq->path);
        if (rq->path[plen - 1] != '/') {
            /* Relative links in the listing need the trailing slash. */
            char loc[LINE_CAP + 32];
            size_t tlen = strcspn(rq->target, "?#");
            snprintf(loc, sizeof loc, "Location: %.*s/%s\r\n", (int)tlen,
                     rq->target, rq->target + tlen);
            return send_error(cl, rq, 301, loc);
        }
        char index[LINE_CAP + 16];
        snprintf(index, sizeof index, "%sindex.html", rq->path);
        char ireal[PATH_MAX];
        fd = open_under_root(index, ireal, &st, &status);
        if (fd < 0 || !S_ISREG(st.st_mode)) {
            if (fd >= 0)
                close(fd);
            if (fd < 0 && status == 403)
                return send_error(cl, rq, 403, NULL);
            return send_listing(cl, rq, real);
        }
        memcpy(real, ireal, sizeof real);
    }
    int rc = send_file(cl, rq, fd, real, st.st_size);
    close(fd);
    return rc;
}

/* ---- reading requests ---- */

/* bl_readline() bounded by the request's deadline (0: none). Returns what
 * bl_readline() does; an incomplete last line counts as end of stream. */
static ssize_t read_line(struct client *cl, double deadline)
{
    if (deadline > 0) {
        double left = deadline - now();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        bl_conn_set_timeout(cl->conn, left < 0.001 ? 0.001 : left);
    }
    ssize_t n = bl_readline(cl->conn, cl->line, LINE_CAP);
    if (n > 0 && cl->line[n - 1] != '\n')
        return 0;                   /* the client went away mid-line */
    if (n > 0) {                    /* strip the line end */
        cl->line[--n] = '\0';
        if (n > 0 && cl->line[n - 1] == '\r')
            cl->line[--n] = '\0';
    }
    return n >= 0 ? n + 1 : -1;     /* > 0 for a complete (maybe empty) line */
}

/* Does the comma-separated header value contain token (case-insensitive)? */
static int has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    for (const char *p = value; *p; ) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        size_t l = len;
        while (l > 0 && (p[l - 1] == ' ' || p[l - 1] == '\t'))
            l--;
        if (l == tlen && strncasecmp(p, token, tlen) == 0)
            return 1;
        p += len;
    }
    return 0;
}

enum { DONE = 0, CLOSE_NOW = -1, ANSWERED_CLOSE = -2 };

/* Read and answer one request. Returns DONE to go on with the next request
 * on this connection, CLOSE_NOW when the client is gone (or silent), and
 * ANSWERED_CLOSE after a response that ends the connection. */
static int handle_request(struct client *cl)
{
    struct request rq;
    rq.method[0] = '\0';
    rq.target = NULL;
    rq.minor = 1;
    rq.keep_alive = 0;              /* error responses before parsing close */
    rq.head = 0;
    double deadline = idle_timeout > 0 ? now() + idle_timeout : 0;

    /* The request line; empty lines before it are allowed. */
    ssize_t n;
    int skipped = 0;
    while ((n = read_line(cl, deadline)) == 1 && skipped++ < 8)
        ;
    if (n < 0 && errno == EMSGSIZE) {
        send_error(cl, &rq, 414, NULL);
        return ANSWERED_CLOSE;
    }
    if (n <= 1)
        return CLOSE_NOW;           /* end of stream, timeout, reset */

    /* METHOD SP target SP HTTP/1.x */
    char *sp1 = strchr(cl->line, ' ');
    char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    int major = 0, minor = 0;
    char extra;
    if (sp1 == NULL || sp2 == NULL || sp1 == cl->line || sp2 == sp1 + 1 ||
        (size_t)(sp1 - cl->line) >= sizeof rq.method ||
        sscanf(sp2 + 1, "HTTP/%1d.%1d%c", &major, &minor, &extra) != 2 ||
        major != 1) {
        send_error(cl, &rq, 400, NULL);
        return ANSWERED_CLOSE;
    }
    memcpy(rq.method, cl->line, (size_t)(sp1 - cl->line));
    rq.method[sp1 - cl->line] = '\0';
    *sp2 = '\0';
    memcpy(rq.target_buf, sp1 + 1, (size_t)(sp2 - sp1));
    rq.target = rq.target_buf;
    rq.minor = minor;
    for (const char *p = rq.target; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            send_error(cl, &rq, 400, NULL);
            return ANSWERED_CLOSE;
        }
    }

    /* The headers: only Connection, Host and the presence of a body
     * matter. */
    int conn_close = 0, conn_keep = 0, has_body = 0, hosts = 0;
    for (int i = 0;; i++) {
        n = read_line(cl, deadline);
        if (n < 0 && errno == EMSGSIZE) {
            send_error(cl, &rq, 431, NULL);
            return ANSWERED_CLOSE;
        }
        if (n <= 0)
            return CLOSE_NOW;
        if (n == 1)
            break;                  /* the empty line ending the head */
        if (i >= MAX_HEADERS) {
            send_error(cl, &rq, 431, NULL);
            return ANSWERED_CLOSE;
        }
        char *colon = strchr(cl->line, ':');
        if (colon == NULL || colon == cl->line) {
            send_error(cl, &rq, 400, NULL);
            return ANSWERED_CLOSE;
        }
        *colon = '\0';
        const char *value = colon + 1;
        if (strcasecmp(cl->line, "Connection") == 0) {
            conn_close |= has_token(value, "close");
            conn_keep |= has_token(value, "keep-alive");
        } else if (strcasecmp(cl->line, "Content-Length") == 0) {
            has_body |= strtoll(value, NULL, 10) != 0;
        } else if (strcasecmp(cl->line, "Transfer-Encoding") == 0) {
            has_body = 1;
        } else if (strcasecmp(cl->line, "Host") == 0) {
            hosts++;
        }
    }
    if (idle_timeout > 0)
        bl_conn_set_timeout(cl->conn, idle_timeout);   /* for the response */
    rq.keep_alive = rq.minor >= 1 ? !conn_close : conn_keep && !conn_close;
    if (has_body)
        rq.keep_alive = 0;          /* we do not read request bodies */
    if (rq.minor >= 1 && hosts != 1) {  /* RFC 9112, 3.2 */
        send_error(cl, &rq, 400, NULL);
        return ANSWERED_CLOSE;
    }

    rq.head = strcmp(rq.method, "HEAD") == 0;
    if (!rq.head && strcmp(rq.method, "GET") != 0) {
        int rc = send_error(cl, &rq, 405, "Allow: GET, HEAD\r\n");
        return rc < 0 ? CLOSE_NOW : rq.keep_alive ? DONE : ANSWERED_CLOSE;
    }

    /* The target: "/path?query", or absolute "http://host/path". */
    const char *path = rq.target;
    if (strncasecmp(path, "http://", 7) == 0) {
        path = strchr(path + 7, '/');
        if (path == NULL)
            path = "/";
    }
    int status = 0;
    if (path[0] != '/' || url_decode(path, rq.path, sizeof rq.path) < 0)
        status = 400;
    else if (has_dotdot(rq.path))
        status = 403;               /* "..", also as "%2e%2e" */
    int rc = status != 0 ? send_error(cl, &rq, status, NULL)
                         : serve_path(cl, &rq);
    if (rc < 0)
        return CLOSE_NOW;
    return rq.keep_alive ? DONE : ANSWERED_CLOSE;
}

/* One green thread per connection. */
static void *connection(void *arg)
{
    struct client *cl = malloc(sizeof *cl);
    bl_conn *c = arg;
    if (cl == NULL) {
        bl_close(c);
        return NULL;
    }
    cl->conn = c;
    if (idle_timeout > 0)
        bl_conn_set_timeout(c, idle_timeout);
    int rc;
    while ((rc = handle_request(cl)) == DONE)
        ;
    if (rc == ANSWERED_CLOSE) {
        /* Close gracefully: signal the end of our data, then read what the
         * client still sends (an unread request body, the rest of an
         * overlong line) until it closes too. Closing with unread data
         * would reset the connection, and the client could lose the
         * response we just sent. */
        bl_shutdown(c, SHUT_WR);
        double end = now() + 2.0;   /* for the whole drain, not per read */
        size_t drained = 0;
        ssize_t n = 1;
        while (n > 0 && drained < 1024 * 1024) {
            double left = end - now();
            if (left <= 0)
                break;
            bl_conn_set_timeout(c, left);
            if ((n = bl_recv(c, cl->out, sizeof cl->out)) > 0)
                drained += (size_t)n;
        }
    }
    bl_close(c);
    free(cl);
    if (stopping)
        __atomic_fetch_add(&closed_at_stop, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* ---- accepting, on a listening socket of our own ---- */

static void *acceptor(void *arg)
{
    struct worker *w = arg;
    bl_spawn_opts opts = {.size = sizeof opts, .detached = 1};
    for (;;) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                /* Nothing queued: sleep until the listener is readable. */
                if (bl_wait_fd(w->lfd, BL_READ, -1) < 0 && errno == ECANCELED)
                    break;
                continue;
            }
            if (e == EINTR || e == ECONNABORTED || e == EPROTO)
                continue;
            /* EMFILE and the like: the connection stays queued and the
             * listener readable; pause rather than spin. */
            fprintf(stderr, "httpd: accept: %s\n", strerror(e));
            if (bl_sleep(0.1) < 0)
                break;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        bl_conn *c = bl_conn_new(fd);
        if (c == NULL) {
            close(fd);
            continue;
        }
        if (bl_spawn_ex(NULL, connection, c, &opts) == NULL) {
            bl_close(c);
            bl_sleep(0.01);
        }
    }
    return NULL;
}

/* Each OS thread runs its scheduler, with one acceptor green thread, until
 * a signal stops it. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (bl_spawn(w->sched, acceptor, w) == NULL || bl_sched_run(w->sched) < 0) {
        perror("httpd: scheduler");
        exit(1);
    }
    return NULL;
}

/* SIGTERM, SIGINT. bl_sched_stop() is async-signal-safe (and thread-safe:
 * the signal may come to any of our OS threads); so is signal(). */
static void on_stop_signal(int sig)
{
    (void)sig;
    signal(SIGTERM, SIG_DFL);   /* the next one of either kills */
    signal(SIGINT, SIG_DFL);
    stopping = 1;
    for (int i = 0; i < nworkers; i++)
        bl_sched_stop(workers[i].sched);
}

/* A non-blocking listening socket on addr:port with SO_REUSEPORT, so that
 * every worker can have one. addr NULL: every address (IPv6 and IPv4 where
 * the system has IPv6). Returns the fd, or -1 with errno. */
static int open_listener(const char *addr, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    int dual = 0;
    if (addr == NULL || inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        len = sizeof *a6;
        dual = addr == NULL;
    } else if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        len = sizeof *a4;
    } else {
        errno = EADDRNOTAVAIL;
        return -1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            int one = 1, zero = 0;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
            if (dual)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            if (bind(fd, (struct sockaddr *)&ss, len) == 0 &&
                listen(fd, SOMAXCONN) == 0)
                return fd;
            int e = errno;
            close(fd);
            errno = e;
        }
        if (!dual || (errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL))
            return -1;
        /* No IPv6 here: every IPv4 address instead. */
        memset(&ss, 0, sizeof ss);
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
        len = sizeof *a4;
        dual = 0;
    }
    return -1;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- main ---- */

static void usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s [-p port] [-t threads] [-i seconds] [-b address] [-v] [root]\n"
            "  Serve the files under root (default \".\") over HTTP.\n"
            "  -p port     port to listen on (default %d; 0: any free port)\n"
            "  -t threads  OS threads, each with its own scheduler (default 1)\n"
            "  -i seconds  drop connections idle that long (default 10; 0: never)\n"
            "  -b address  listen on this address only (default: all)\n"
            "  -v          log every request\n",
            prog, DEFAULT_PORT);
}

/* Parse an integer in [lo, hi]; -1 on failure (lo is never negative). */
static long parse_long(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    return v;
}

int main(int argc, char **argv)
{
    int port = DEFAULT_PORT, nthreads = 1, opt;
    const char *addr = NULL;
    while ((opt = getopt(argc, argv, "p:t:i:b:vh")) != -1) {
        char *end;
        switch (opt) {
        case 'p':
            if ((port = (int)parse_long(optarg, 0, 65535)) < 0) {
                fprintf(stderr, "%s: -p: not a port number: %s\n", argv[0], optarg);
                return 2;
            }
            break;
        case 't':
            if ((nthreads = (int)parse_long(optarg, 1, MAX_THREADS)) < 0) {
                fprintf(stderr, "%s: -t: want 1 to %d threads: %s\n", argv[0],
                        MAX_THREADS, optarg);
                return 2;
            }
            break;
        case 'i':
            errno = 0;
            idle_timeout = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' ||
                !(idle_timeout >= 0 && idle_timeout <= 86400)) {
                fprintf(stderr, "%s: -i: want 0 to 86400 seconds: %s\n",
                        argv[0], optarg);
                return 2;
            }
            break;
        case 'b':
            addr = optarg;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'h':
            usage(stdout, argv[0]);
            return 0;
        default:
            usage(stderr, argv[0]);
            return 2;
        }
    }
    if (argc - optind > 1) {
        usage(stderr, argv[0]);
        return 2;
    }
    const char *docroot = optind < argc ? argv[optind] : ".";
    struct stat st;
    if (realpath(docroot, root) == NULL || stat(root, &st) < 0) {
        fprintf(stderr, "%s: %s: %s\n", argv[0], docroot, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: %s: not a directory\n", argv[0], docroot);
        return 1;
    }
    root_len = strlen(root);
#ifdef HAVE_OPENAT2
    root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
#endif
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* One listening socket and one scheduler per worker, all on the same
     * port. */
    for (int i = 0; i < nthreads; i++) {
        workers[i].lfd = open_listener(addr, port);
        if (workers[i].lfd < 0) {
            fprintf(stderr, "%s: cannot listen on %s port %d: %s\n", argv[0],
                    addr != NULL ? addr : "*", port, strerror(errno));
            return 1;
        }
        port = bound_port(workers[i].lfd);  /* port 0: the others follow */
        if ((workers[i].sched = bl_sched_new()) == NULL) {
            perror("httpd: bl_sched_new");
            return 1;
        }
    }
    nworkers = nthreads;
    /* Installed once every scheduler exists. Each signal blocks the other
     * while the handler runs. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("httpd: serving %s on port %d with %d thread%s\n", root, port,
           nthreads, nthreads == 1 ? "" : "s");

    for (int i = 1; i < nthreads; i++) {
        if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]) != 0) {
            fprintf(stderr, "%s: cannot start thread %d\n", argv[0], i);
            return 1;
        }
    }
    worker_main(&workers[0]);       /* the main thread is worker 0 */
    for (int i = 1; i < nthreads; i++)
        pthread_join(workers[i].tid, NULL);
    /* No handler may touch a scheduler once it is being freed. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    for (int i = 0; i < nthreads; i++) {
        bl_sched_free(workers[i].sched);
        close(workers[i].lfd);
    }
    printf("httpd: stopped; %d connection%s closed\n", closed_at_stop,
           closed_at_stop == 1 ? "" : "s");
    return 0;
}
