/* SPDX-License-Identifier: MIT */
/*
 * test_httpd.c - drives the httpd example.
 *
 *   exdrv_httpd [--slow] [--curl PATH] -- [EMULATOR...] httpd
 *
 * Builds a document tree in a temporary directory (with a secret file next
 * to the root and symbolic links pointing at it), starts httpd on a free
 * port with two threads and a 1 s idle timeout, and checks over raw
 * sockets: byte-exact GETs, HEAD, keep-alive (1.1 and 1.0) and pipelining,
 * Content-Type, index.html, redirects and listings, the error statuses, path
 * traversal and symlink escapes, idle and slow clients, many concurrent
 * clients, and (when curl is installed) a download with curl.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET "TOP-SECRET-do-not-serve"

static char tmpdir[256];
static char rootdir[300];
static int port;
static char *big;               /* the contents of big.bin */
static size_t big_size;
static char *mid;               /* mid.bin */
static size_t mid_size = 100 * 1000;

/* ---- the document tree ---- */

static void write_file(const char *rel, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    h_check(fd >= 0, "create %s: %s", path, strerror(errno));
    h_check(write(fd, data, len) == (ssize_t)len, "write %s", path);
    close(fd);
}

static void make_dir(const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    h_check(mkdir(path, 0755) == 0, "mkdir %s: %s", path, strerror(errno));
}

static void make_link(const char *target, const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    h_check(symlink(target, path) == 0, "symlink %s: %s", path, strerror(errno));
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(void)
{
    if (tmpdir[0] != '\0')
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *const typed[][2] = {
    {"page.html", "text/html"},       {"style.css", "text/css"},
    {"app.js", "javascript"},         {"data.json", "application/json"},
    {"notes.txt", "text/plain"},      {"img.png", "image/png"},
    {"photo.JPG", "image/jpeg"},      {"anim.gif", "image/gif"},
    {"pic.svg", "image/svg+xml"},     {"favicon.ico", "image/"},
    {"doc.pdf", "application/pdf"},   {"mod.wasm", "application/wasm"},
    {"blob.xyz", "application/octet-stream"},
    {"noext", "application/octet-stream"},
};

static void make_tree(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/bl_httpd_XXXXXX",
             base != NULL && base[0] != '\0' ? base : "/tmp");
    h_check(mkdtemp(tmpdir) != NULL, "mkdtemp: %s", strerror(errno));
    atexit(remove_tree);
    snprintf(rootdir, sizeof rootdir, "%s/root", tmpdir);

    make_dir("outside");
    write_file("outside/secret.txt", SECRET "\n", sizeof SECRET);
    make_dir("root2");              /* a sibling whose name extends root's */
    write_file("root2/secret2.txt", SECRET "2\n", sizeof SECRET + 1);
    make_dir("root");
    write_file("root/hello.txt", "Hello, bluelet!\n", 16);
    write_file("root/empty.txt", "", 0);
    big_size = h_slow ? 512 * 1024 + 17 : 3 * 1024 * 1024 + 17;
    big = malloc(big_size);
    mid = malloc(mid_size);
    h_check(big != NULL && mid != NULL, "out of memory");
    h_fill_random(big, big_size, 42);
    h_fill_random(mid, mid_size, 7);
    write_file("root/big.bin", big, big_size);
    write_file("root/mid.bin", mid, mid_size);
    for (size_t i = 0; i < sizeof typed / sizeof typed[0]; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "root/%s", typed[i][0]);
        write_file(rel, typed[i][0], strlen(typed[i][0]));
    }
    make_dir("root/site");
    write_file("root/site/index.html", "<html>the site index</html>\n", 28);
    make_dir("root/listing");
    write_file("root/listing/a&b<c>.txt", "ampersand\n", 10);
    write_file("root/listing/space name.txt", "space\n", 6);
    write_file("root/listing/quote\"s.txt", "quote\n", 6);
    make_dir("root/listing/sub");
    make_link("hello.txt", "root/inside_link");
    make_link("../outside/secret.txt", "root/escape_link");
    make_link("../outside", "root/escape_dir");
    make_link("../root2/secret2.txt", "root/sibling_link");
    make_dir("root/indexlink");
    make_link("../../outside/secret.txt", "root/indexlink/index.html");
}

/* ---- a small HTTP client on raw sockets ---- */

struct hconn {
    int fd;
    char *buf;
    size_t len, cap;
};

struct resp {
    int status;
    char *head;                 /* status line and headers */
    char *body;
    size_t blen;
};

static void hc_open(struct hconn *hc)
{
    hc->fd = h_connect(port);
    hc->len = 0;
    hc->cap = 65536;
    hc->buf = malloc(hc->cap + 1);
    h_check(hc->buf != NULL, "out of memory");
}

static void hc_close(struct hconn *hc)
{
    close(hc->fd);
    free(hc->buf);
    hc->buf = NULL;
}

static void hc_send(struct hconn *hc, const char *s)
{
    h_send_all(hc->fd, s, strlen(s));
}

/* Read more bytes; returns the count, 0 at end of stream, -1 on error. */
static ssize_t hc_fill(struct hconn *hc, double timeout)
{
    if (hc->len == hc->cap) {
        hc->cap *= 2;
        hc->buf = realloc(hc->buf, hc->cap + 1);
        h_check(hc->buf != NULL, "out of memory");
    }
    ssize_t n = h_recv(hc->fd, hc->buf + hc->len, hc->cap - hc->len, timeout);
    if (n > 0) {
        hc->len += (size_t)n;
        hc->buf[hc->len] = '\0';
    }
    return n;
}

static void resp_free(struct resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* The value of header `name` in r (a buffer of the calling OS thread: the
 * load test reads responses from several client threads), or NULL. */
static const char *header(const struct resp *r, const char *name)
{
    static __thread char value[1024];
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p != NULL && p[2] != '\0';
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r");
            if (len >= sizeof value)
                len = sizeof value - 1;
            memcpy(value, v, len);
            value[len] = '\0';
            return value;
        }
    }
    return NULL;
}

/* Read one response; returns 0, or -1 if the stream ended (or timed out)
 * before a complete one. HEAD responses have no body. */
static int hc_response(struct hconn *hc, int head_request, struct resp *r)
{
    memset(r, 0, sizeof *r);
    double timeout = h_slow ? 30 : 10;
    char *end;
    while (hc->buf[hc->len] = '\0',
           (end = strstr(hc->buf, "\r\n\r\n")) == NULL) {
        if (hc_fill(hc, timeout) <= 0)
            return -1;
    }
    size_t hlen = (size_t)(end - hc->buf) + 4;
    r->head = strndup(hc->buf, hlen - 2);
    h_check(r->head != NULL, "out of memory");
    h_check(sscanf(r->head, "HTTP/1.1 %d ", &r->status) == 1,
            "bad status line in \"%.80s\"", r->head);
    const char *cl = header(r, "Content-Length");
    h_check(cl != NULL, "no Content-Length in:\n%s", r->head);
    size_t blen = head_request ? 0 : (size_t)strtoull(cl, NULL, 10);
    while (hc->len < hlen + blen) {
        if (hc_fill(hc, timeout) <= 0) {
            resp_free(r);
            return -1;
        }
    }
    r->body = malloc(blen + 1);
    h_check(r->body != NULL, "out of memory");
    memcpy(r->body, hc->buf + hlen, blen);
    r->body[blen] = '\0';
    r->blen = blen;
    memmove(hc->buf, hc->buf + hlen + blen, hc->len - hlen - blen);
    hc->len -= hlen + blen;
    hc->buf[hc->len] = '\0';
    return 0;
}

/* Does the server close the connection (without sending anything more)
 * within timeout seconds? */
static int hc_closed(struct hconn *hc, double timeout)
{
    size_t before = hc->len;
    ssize_t n;
    while ((n = hc_fill(hc, timeout)) > 0)
        ;
    return hc->len == before && (n == 0 || errno == ECONNRESET);
}

/* One request on a new connection; fails unless a response comes. */
static void request(const char *raw, int head_request, struct resp *r)
{
    struct hconn hc;
    hc_open(&hc);
    hc_send(&hc, raw);
    h_check(hc_response(&hc, head_request, r) == 0,
            "no complete response to \"%.100s\"", raw);
    hc_close(&hc);
}

static void get(const char *path, struct resp *r)
{
    char raw[1024];
    snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
    request(raw, 0, r);
}

static void expect_status(const struct resp *r, int status, const char *what)
{
    h_check(r->status == status, "%s: status %d, expected %d; response:\n%s",
            what, r->status, status, r->head);
}

static void expect_body(const struct resp *r, const void *data, size_t len,
                        const char *what)
{
    h_check(r->blen == len && memcmp(r->body, data, len) == 0,
            "%s: body of %zu bytes differs from the expected %zu bytes",
            what, r->blen, len);
}

/* ---- the checks ---- */

static void test_get(void)
{
    struct resp r;
    get("/hello.txt", &r);
    expect_status(&r, 200, "GET /hello.txt");
    expect_body(&r, "Hello, bluelet!\n", 16, "GET /hello.txt");
    h_check(strstr(header(&r, "Content-Type"), "text/plain") != NULL,
            "hello.txt: Content-Type %s", header(&r, "Content-Type"));
    h_check(header(&r, "Date") != NULL, "no Date header");
    resp_free(&r);

    get("/big.bin", &r);
    expect_status(&r, 200, "GET /big.bin");
    expect_body(&r, big, big_size, "GET /big.bin");
    resp_free(&r);

    get("/empty.txt", &r);
    expect_status(&r, 200, "GET /empty.txt");
    expect_body(&r, "", 0, "GET /empty.txt");
    resp_free(&r);

    get("/inside_link", &r);
    expect_status(&r, 200, "a symbolic link inside root");
    expect_body(&r, "Hello, bluelet!\n", 16, "GET /inside_link");
    resp_free(&r);

    get("/listing/a%26b%3Cc%3E.txt", &r);
    expect_status(&r, 200, "a percent-encoded file name");
    expect_body(&r, "ampersand\n", 10, "GET /listing/a%26b%3Cc%3E.txt");
    resp_free(&r);
    h_ok("GET serves files byte for byte (%zu bytes for big.bin)", big_size);
}

static void test_head_and_keepalive(void)
{
    struct hconn hc;
    struct resp r;
    char want[32];

    /* HEAD: the headers of a GET and no body, then the next request on the
     * same connection is answered from the first byte. */
    hc_open(&hc);
    hc_send(&hc, "HEAD /big.bin HTTP/1.1\r\nHost: test\r\n\r\n");
    h_check(hc_response(&hc, 1, &r) == 0, "no response to HEAD");
    expect_status(&r, 200, "HEAD /big.bin");
    snprintf(want, sizeof want, "%zu", big_size);
    h_check(strcmp(header(&r, "Content-Length"), want) == 0,
            "HEAD: Content-Length %s, expected %s", header(&r, "Content-Length"), want);
    resp_free(&r);
    hc_send(&hc, "GET /hello.txt HTTP/1.1\r\nHost: test\r\n\r\n");
    h_check(hc_response(&hc, 0, &r) == 0, "no response after HEAD");
    expect_status(&r, 200, "GET after HEAD (a HEAD response carried a body?)");
    expect_body(&r, "Hello, bluelet!\n", 16, "GET after HEAD");
    resp_free(&r);
    h_check(hc.len == 0, "%zu stray bytes after the responses", hc.len);
    hc_close(&hc);
    h_ok("HEAD sends headers and no body");

    /* HTTP/1.1: keep-alive by default, requests one after the other. */
    hc_open(&hc);
    for (int i = 0; i < 3; i++) {
        hc_send(&hc, i == 1 ? "GET /mid.bin HTTP/1.1\r\nHost: test\r\n\r\n"
                            : "GET /hello.txt HTTP/1.1\r\nHost: test\r\n\r\n");
        h_check(hc_response(&hc, 0, &r) == 0,
                "keep-alive: no response to request %d on one connection", i + 1);
        expect_status(&r, 200, "keep-alive");
        if (i == 1)
            expect_body(&r, mid, mid_size, "keep-alive GET /mid.bin");
        else
            expect_body(&r, "Hello, bluelet!\n", 16, "keep-alive GET");
        h_check(header(&r, "Connection") == NULL ||
                strcasecmp(header(&r, "Connection"), "close") != 0,
                "HTTP/1.1 response says Connection: close");
        resp_free(&r);
    }
    /* Pipelined: three requests in one write. */
    hc_send(&hc, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                 "HEAD /mid.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /empty.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    h_check(hc_response(&hc, 0, &r) == 0, "pipelining: no first response");
    expect_body(&r, "Hello, bluelet!\n", 16, "pipelined GET");
    resp_free(&r);
    h_check(hc_response(&hc, 1, &r) == 0, "pipelining: no second response");
    expect_status(&r, 200, "pipelined HEAD");
    resp_free(&r);
    h_check(hc_response(&hc, 0, &r) == 0, "pipelining: no third response");
    expect_status(&r, 200, "pipelined GET /empty.txt");
    h_check(header(&r, "Connection") != NULL &&
            strcasecmp(header(&r, "Connection"), "close") == 0,
            "no Connection: close in the answer to Connection: close");
    resp_free(&r);
    h_check(hc_closed(&hc, 5), "the server kept the connection after "
            "Connection: close");
    hc_close(&hc);
    h_ok("HTTP/1.1 keep-alive, pipelining and Connection: close");

    /* HTTP/1.0: closes unless asked for keep-alive. */
    hc_open(&hc);
    hc_send(&hc, "GET /hello.txt HTTP/1.0\r\n\r\n");
    h_check(hc_response(&hc, 0, &r) == 0, "no response to HTTP/1.0");
    expect_body(&r, "Hello, bluelet!\n", 16, "HTTP/1.0 GET");
    resp_free(&r);
    h_check(hc_closed(&hc, 5), "HTTP/1.0 without keep-alive: not closed");
    hc_close(&hc);

    hc_open(&hc);
    for (int i = 0; i < 2; i++) {
        hc_send(&hc, "GET /hello.txt HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        h_check(hc_response(&hc, 0, &r) == 0,
                "HTTP/1.0 keep-alive: no response to request %d", i + 1);
        expect_body(&r, "Hello, bluelet!\n", 16, "HTTP/1.0 keep-alive GET");
        h_check(header(&r, "Connection") != NULL &&
                strcasecmp(header(&r, "Connection"), "keep-alive") == 0,
                "HTTP/1.0 keep-alive: no Connection: keep-alive in the response");
        resp_free(&r);
    }
    hc_close(&hc);
    h_ok("HTTP/1.0 closes by default, keeps alive on request");
}

static void test_types_and_dirs(void)
{
    struct resp r;
    for (size_t i = 0; i < sizeof typed / sizeof typed[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "/%s", typed[i][0]);
        get(path, &r);
        expect_status(&r, 200, path);
        expect_body(&r, typed[i][0], strlen(typed[i][0]), path);
        const char *ct = header(&r, "Content-Type");
        h_check(ct != NULL && strstr(ct, typed[i][1]) != NULL,
                "%s: Content-Type %s, expected %s", path, ct ? ct : "(none)",
                typed[i][1]);
        resp_free(&r);
    }
    h_ok("Content-Type by extension");

    get("/site/", &r);
    expect_status(&r, 200, "GET /site/");
    expect_body(&r, "<html>the site index</html>\n", 28, "index.html");
    h_check(strstr(header(&r, "Content-Type"), "text/html") != NULL,
            "index.html: Content-Type %s", header(&r, "Content-Type"));
    resp_free(&r);
    get("/site?x=1", &r);
    expect_status(&r, 301, "GET /site (no slash)");
    h_check(header(&r, "Location") != NULL &&
            strcmp(header(&r, "Location"), "/site/?x=1") == 0,
            "redirect to %s", header(&r, "Location"));
    resp_free(&r);
    h_ok("index.html for a directory, redirect to add the slash");

    get("/listing/", &r);
    expect_status(&r, 200, "directory listing");
    h_check(strstr(header(&r, "Content-Type"), "text/html") != NULL,
            "listing: Content-Type %s", header(&r, "Content-Type"));
    static const char *const want[] = {
        "href=\"a%26b%3Cc%3E.txt\"", ">a&amp;b&lt;c&gt;.txt<",
        "href=\"space%20name.txt\"", ">space name.txt<",
        "href=\"quote%22s.txt\"",   ">quote&quot;s.txt<",
        "href=\"sub/\"",            ">sub/<",
        "href=\"../\"",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        h_check(strstr(r.body, want[i]) != NULL, "the listing lacks %s:\n%s",
                want[i], r.body);
    h_check(strstr(r.body, "<c>") == NULL && strstr(r.body, "quote\"s") == NULL,
            "the listing has unescaped names:\n%s", r.body);
    resp_free(&r);
    get("/", &r);
    expect_status(&r, 200, "root listing");
    h_check(strstr(r.body, "href=\"hello.txt\"") != NULL &&
            strstr(r.body, "href=\"listing/\"") != NULL &&
            strstr(r.body, "href=\"../\"") == NULL,
            "the root listing is wrong:\n%s", r.body);
    resp_free(&r);
    h_ok("directory listings with escaped names");
}

static void expect_error(const char *raw, int status, int closes)
{
    struct hconn hc;
    struct resp r;
    hc_open(&hc);
    hc_send(&hc, raw);
    h_check(hc_response(&hc, 0, &r) == 0, "no response to \"%.60s\"", raw);
    h_check(r.status == status, "\"%.60s\": status %d, expected %d", raw,
            r.status, status);
    if (status == 405) {
        const char *allow = header(&r, "Allow");
        h_check(allow != NULL && strstr(allow, "GET") != NULL &&
                strstr(allow, "HEAD") != NULL, "405 without Allow: GET, HEAD");
    }
    resp_free(&r);
    if (closes) {
        h_check(hc_closed(&hc, 5), "\"%.60s\": the connection stays open", raw);
    } else {
        hc_send(&hc, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        h_check(hc_response(&hc, 0, &r) == 0 && r.status == 200,
                "\"%.60s\": the connection is not usable afterwards", raw);
        resp_free(&r);
    }
    hc_close(&hc);
}

static void test_errors(void)
{
    expect_error("GET /no-such-file HTTP/1.1\r\nHost: t\r\n\r\n", 404, 0);
    expect_error("GET /listing/nothing/here HTTP/1.1\r\nHost: t\r\n\r\n", 404, 0);
    expect_error("DELETE /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 405, 0);
    expect_error("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
                 405, 1);
    expect_error("GARBAGE\r\n\r\n", 400, 1);
    expect_error("GET /hello.txt HTTP/2.0\r\n\r\n", 400, 1);
    expect_error("GET  /hello.txt HTTP/1.1\r\n\r\n", 400, 1);
    expect_error("GET hello.txt HTTP/1.1\r\n\r\n", 400, 1);
    expect_error("GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400, 1);
    expect_error("GET /hello.txt%00.png HTTP/1.1\r\nHost: t\r\n\r\n", 400, 1);
    expect_error("GET /hello.txt HTTP/1.1\r\nno colon here\r\n\r\n", 400, 1);
    /* HTTP/1.1 needs exactly one Host header (RFC 9112, 3.2); 1.0 none. */
    expect_error("GET /hello.txt HTTP/1.1\r\n\r\n", 400, 1);
    expect_error("GET /hello.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 1);
    expect_error("GET /hello.txt HTTP/1.0\r\n\r\n", 200, 1);

    size_t len = 10000;
    char *raw = malloc(len + 64);
    h_check(raw != NULL, "out of memory");
    strcpy(raw, "GET /");
    memset(raw + 5, 'a', len);
    strcpy(raw + 5 + len, " HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_error(raw, 414, 1);
    /* A name longer than a file system allows: not found, not forbidden. */
    memset(raw + 5, 'n', 300);
    strcpy(raw + 5 + 300, " HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_error(raw, 404, 0);
    snprintf(raw, 64, "GET /hello.txt HTTP/1.1\r\nX-Big: ");
    size_t l = strlen(raw);
    memset(raw + l, 'b', len - l);
    strcpy(raw + len, "\r\n\r\n");
    expect_error(raw, 431, 1);
    free(raw);
    h_ok("400, 404, 405 (with Allow), 414 and 431");
}

static void test_traversal(void)
{
    static const char *const attempts[] = {
        "/../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2E/outside/secret.txt",
        "/.%2e/outside/secret.txt",
        "/..%2Foutside%2Fsecret.txt",
        "/%2e%2e%2foutside%2fsecret.txt",
        "/listing/../../outside/secret.txt",
        "/listing/%2e%2e/%2e%2e/outside/secret.txt",
        "/listing/sub/../../../outside/secret.txt",
        "/..",
        "/../root2/secret2.txt",
        "/escape_link",
        "/escape_dir/secret.txt",
        "/escape_dir/",
        "/escape_dir",
        "/sibling_link",
        "/indexlink/",
        "http://127.0.0.1/../outside/secret.txt",
        "//../outside/secret.txt",
    };
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        struct resp r;
        char raw[512];
        snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", attempts[i]);
        request(raw, 0, &r);
        h_check(r.status == 403 || r.status == 404,
                "%s: status %d, expected 403 or 404", attempts[i], r.status);
        h_check(memmem(r.body, r.blen, SECRET, strlen(SECRET)) == NULL,
                "%s: the response has the secret file's contents!", attempts[i]);
        resp_free(&r);
    }
    h_ok("%zu traversal attempts refused (.., %%2e%%2e, symbolic links out)",
         sizeof attempts / sizeof attempts[0]);
}

static void test_idle(void)
{
    double limit = h_slow ? 15 : 5;

    /* A silent client. */
    struct hconn hc;
    hc_open(&hc);
    double t0 = h_now();
    h_check(hc_closed(&hc, limit + 5), "a silent client was not dropped");
    double took = h_now() - t0;
    h_check(took >= 0.5 && took <= limit, "a silent client was dropped after "
            "%.2f s (idle timeout 1 s)", took);
    hc_close(&hc);

    /* Half a request line, then silence. */
    hc_open(&hc);
    hc_send(&hc, "GET /hel");
    t0 = h_now();
    h_check(hc_closed(&hc, limit + 5), "a client stuck mid-line was not dropped");
    took = h_now() - t0;
    h_check(took >= 0.5 && took <= limit, "a client stuck mid-line was dropped "
            "after %.2f s", took);
    hc_close(&hc);

    /* A client that sends a header line every 0.4 s never sits idle for
     * 1 s, but its request must still arrive within the timeout. */
    hc_open(&hc);
    hc_send(&hc, "GET /hello.txt HTTP/1.1\r\n");
    t0 = h_now();
    int closed = 0;
    for (int i = 0; i < 40 && !closed; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "X-Slow-%d: yes\r\n", i);
        if (send(hc.fd, line, (size_t)n, MSG_NOSIGNAL) < 0)
            closed = 1;
        else
            closed = hc_closed(&hc, 0.4);
    }
    took = h_now() - t0;
    h_check(closed && took <= limit, "a client trickling headers was %s after "
            "%.2f s", closed ? "dropped only" : "still connected", took);
    hc_close(&hc);

    /* After answering a request with a body, the server reads what is left
     * before closing, for 2 s in all: a client trickling the body cannot
     * stretch that. */
    hc_open(&hc);
    hc_send(&hc, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
    struct resp r;
    h_check(hc_response(&hc, 0, &r) == 0 && r.status == 405,
            "no 405 for a POST");
    resp_free(&r);
    /* The server shut down its side at once (EOF here): what tells its
     * close is a send that fails, once its reset has come back. */
    t0 = h_now();
    closed = 0;
    for (int i = 0; i < 40 && !closed; i++) {
        if (send(hc.fd, "x", 1, MSG_NOSIGNAL) < 0)
            closed = 1;
        else
            usleep(400 * 1000);
    }
    took = h_now() - t0;
    h_check(closed && took <= limit, "a client trickling a body after the "
            "response was %s after %.2f s", closed ? "dropped only" :
            "still connected", took);
    hc_close(&hc);
    h_ok("idle and slow clients dropped after about 1 s, a trickled body "
         "after 2 s");
}

struct load {
    int id, rounds;
    char error[512];
};

static void *load_client(void *arg)
{
    struct load *ld = arg;
    struct hconn hc;
    hc_open(&hc);
    for (int i = 0; i < ld->rounds; i++) {
        int big_one = (i + ld->id) % 3 == 0;
        char raw[128];
        snprintf(raw, sizeof raw, "GET /%s HTTP/1.1\r\nHost: t\r\n\r\n",
                 big_one ? "mid.bin" : "hello.txt");
        hc_send(&hc, raw);
        struct resp r;
        double t0 = h_now();
        errno = 0;
        if (hc_response(&hc, 0, &r) < 0) {
            int e = errno;
            snprintf(ld->error, sizeof ld->error,
                     "client %d: no response to request %d after %.3f s "
                     "(%s, %zu bytes buffered: \"%.100s\")", ld->id, i,
                     h_now() - t0, e ? strerror(e) : "end of stream", hc.len,
                     hc.buf);
            break;
        }
        int ok = r.status == 200 &&
                 (big_one ? r.blen == mid_size && memcmp(r.body, mid, mid_size) == 0
                          : r.blen == 16 && memcmp(r.body, "Hello, bluelet!\n", 16) == 0);
        resp_free(&r);
        if (!ok) {
            snprintf(ld->error, sizeof ld->error,
                     "client %d: wrong response to request %d", ld->id, i);
            break;
        }
    }
    hc_close(&hc);
    return NULL;
}

static void test_load(void)
{
    enum { MAXC = 16 };
    int nclients = h_slow ? 8 : MAXC, rounds = h_slow ? 10 : 40;
    struct load ld[MAXC];
    pthread_t tid[MAXC];
    for (int i = 0; i < nclients; i++) {
        memset(&ld[i], 0, sizeof ld[i]);
        ld[i].id = i;
        ld[i].rounds = rounds;
        h_check(pthread_create(&tid[i], NULL, load_client, &ld[i]) == 0,
                "pthread_create");
    }
    for (int i = 0; i < nclients; i++)
        pthread_join(tid[i], NULL);
    for (int i = 0; i < nclients; i++)
        h_check(ld[i].error[0] == '\0', "%s", ld[i].error);
    h_ok("%d concurrent keep-alive clients, %d requests each", nclients, rounds);
}

static void test_curl(void)
{
    if (h_curl == NULL) {
        printf("note: curl not found, its check is skipped\n");
        return;
    }
    char url[128], file[400];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/big.bin", port);
    snprintf(file, sizeof file, "%s/curl.out", tmpdir);
    /* --noproxy: an http_proxy or all_proxy of the environment must not
     * take a request for 127.0.0.1 elsewhere. */
    const char *argv[] = {h_curl, "-s", "-S", "-f", "--noproxy", "*",
                          "--max-time", "60", "-o", file, url, NULL};
    char *out;
    int rc = h_run_argv(argv, 1, 90, &out);
    h_check(rc == 0, "curl exited %d: %s", rc, out);
    free(out);
    FILE *f = fopen(file, "rb");
    h_check(f != NULL, "curl wrote no file");
    char *got = malloc(big_size + 1);
    h_check(got != NULL, "out of memory");
    size_t n = fread(got, 1, big_size + 1, f);
    fclose(f);
    h_check(n == big_size && memcmp(got, big, big_size) == 0,
            "curl downloaded %zu bytes that differ from big.bin", n);
    free(got);
    h_ok("curl downloads big.bin byte for byte");
}

static void test_usage(void)
{
    static const char *const bad[][4] = {
        {"-p", "http", NULL}, {"-p", "65536", NULL}, {"-t", "0", NULL},
        {"-i", "-1", NULL},   {"-x", NULL},          {"a", "b", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out;
        int rc = h_run(bad[i], 1, 60, &out);
        h_check(rc == 2, "httpd %s %s: exit status %d, expected 2; output:\n%s",
                bad[i][0], bad[i][1] ? bad[i][1] : "", rc, out);
        free(out);
    }
    char missing[400];
    snprintf(missing, sizeof missing, "%s/no-such-dir", tmpdir);
    const char *nodir[] = {"-p", "0", missing, NULL};
    char *out;
    int rc = h_run(nodir, 1, 60, &out);
    h_check(rc == 1, "a missing root: exit status %d, expected 1", rc);
    free(out);
    const char *help[] = {"-h", NULL};
    rc = h_run(help, 0, 60, &out);
    h_check(rc == 0 && strstr(out, "usage") != NULL, "-h: status %d, output:\n%s",
            rc, out);
    free(out);
    h_ok("bad arguments give status 2, a missing root 1, -h 0");
}

/* SIGTERM stops httpd (bl_sched_stop() from its signal handler): with idle
 * keep-alive connections open (usually on both of its schedulers) and no
 * idle timeout to end them, every connection's green thread closes it and
 * ends (httpd counts them), and httpd exits with status 0. */
static void test_stop(void)
{
    const char *args[] = {"-p", "0", "-t", "2", "-i", "0", rootdir, NULL};
    h_child *srv = h_spawn(args, 1);
    int saved = port;
    port = h_wait_port(srv, 30);
    enum { N = 6 };             /* SO_REUSEPORT spreads them */
    struct hconn hc[N];
    for (int i = 0; i < N; i++) {
        hc_open(&hc[i]);
        hc_send(&hc[i], "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        struct resp r;
        h_check(hc_response(&hc[i], 0, &r) == 0 && r.status == 200,
                "no response before the stop");
        resp_free(&r);
    }
    hc_send(&hc[0], "GET /hel");    /* one of them mid-request */
    int status;
    h_check(!h_exited(srv, &status), "httpd -i 0 exited on its own");
    h_signal(srv, SIGTERM);
    status = h_wait_exit(srv, h_slow ? 60 : 10);
    char *out = h_output(srv);
    h_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "after SIGTERM: wait status 0x%x, expected exit 0; output:\n%s",
            status, out);
    char want[64];
    snprintf(want, sizeof want, "httpd: stopped; %d connections closed", N);
    h_check(strstr(out, want) != NULL, "no \"%s\" in:\n%s", want, out);
    free(out);
    for (int i = 0; i < N; i++) {
        hc[i].len = 0;
        h_check(hc_closed(&hc[i], 5), "connection %d still open after the "
                "stop", i);
        hc_close(&hc[i]);
    }
    port = saved;
    h_ok("SIGTERM closes %d idle connections and exits with status 0", N);
}

int main(int argc, char **argv)
{
    h_init(argc, argv, 115);
    make_tree();
    test_usage();
    test_stop();

    const char *args[] = {"-p", "0", "-t", "2", "-i", "1", "-v", rootdir, NULL};
    h_child *srv = h_spawn(args, 0);
    port = h_wait_port(srv, 30);
    h_ok("httpd serves %s on port %d", rootdir, port);

    test_get();
    test_head_and_keepalive();
    test_types_and_dirs();
    test_errors();
    test_traversal();
    test_idle();
    test_load();
    test_curl();

    h_stop_server(srv, "httpd");
    char *log = h_output(srv);
    h_check(strstr(log, "GET /hello.txt HTTP/1.1 -> 200 (16 bytes)") != NULL,
            "-v logged no requests:\n%.2000s", log);
    free(log);
    free(big);
    free(mid);
    printf("PASS\n");
    return 0;
}
