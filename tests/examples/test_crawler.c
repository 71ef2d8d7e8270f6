/* SPDX-License-Identifier: MIT */
/*
 * test_crawler.c - drives the crawler example.
 *
 *   exdrv_crawler [--slow] [--compare] -- [EMULATOR...] crawler
 *
 * Without --compare: the driver runs a small HTTP server of its own on
 * 127.0.0.1 (one OS thread per connection) and checks the crawler's report
 * for bodies with Content-Length, chunked bodies, bodies ended by closing
 * the connection, a 404, and a refused connection; that it fetches slow
 * URLs concurrently; that the requests it sends are well-formed; and that
 * bad arguments give status 2.
 *
 * With --compare: runs "crawler --compare" and checks its table: four rows,
 * all fetches successful, and green threads at least 3 times faster than
 * the sequential fetches.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the driver's own server ---- */

static int server_port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int active, peak, bad_requests, requests;

static void send_str(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char req[8192];
    size_t len = 0;
    /* Read the request head. */
    while (len < sizeof req - 1) {
        ssize_t n = h_recv(fd, req + len, sizeof req - 1 - len, 10);
        if (n <= 0)
            break;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL)
            break;
    }
    req[len] = '\0';
    char path[256] = "";
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%d\r\n", server_port);
    int ok = sscanf(req, "GET %255s HTTP/1.1\r\n", path) == 1 &&
             strstr(req, host) != NULL && strstr(req, "\r\n\r\n") != NULL;
    pthread_mutex_lock(&mu);
    requests++;
    if (!ok)
        bad_requests++;
    pthread_mutex_unlock(&mu);

    char body[4096];
    if (!ok) {
        send_str(fd, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    } else if (strcmp(path, "/fixed") == 0) {
        memset(body, 'f', 1000);
        body[1000] = '\0';
        send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        send_str(fd, body);
    } else if (strcmp(path, "/chunked") == 0) {
        /* 2500 bytes in three chunks, one with an extension, then a
         * trailer. */
        send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        memset(body, 'c', 1000);
        body[1000] = '\0';
        send_str(fd, "3e8\r\n");
        send_str(fd, body);
        send_str(fd, "\r\n3E8;name=value\r\n");
        send_str(fd, body);
        send_str(fd, "\r\n1f4\r\n");
        body[500] = '\0';
        send_str(fd, body);
        send_str(fd, "\r\n0\r\nX-Trailer: yes\r\n\r\n");
    } else if (strcmp(path, "/eof") == 0) {
        memset(body, 'e', 1234);
        body[1234] = '\0';
        send_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        send_str(fd, body);
    } else if (strncmp(path, "/slow/", 6) == 0) {
        pthread_mutex_lock(&mu);
        if (++active > peak)
            peak = active;
        pthread_mutex_unlock(&mu);
        h_sleep(0.5);
        pthread_mutex_lock(&mu);
        active--;
        pthread_mutex_unlock(&mu);
        send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
    } else {
        send_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
    }
    close(fd);
    return NULL;
}

static void *server_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
}

static void start_server(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    h_check(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 &&
            listen(lfd, 64) == 0 &&
            getsockname(lfd, (struct sockaddr *)&a, &alen) == 0,
            "cannot start the test server: %s", strerror(errno));
    server_port = ntohs(a.sin_port);
    pthread_t t;
    h_check(pthread_create(&t, NULL, server_main, (void *)(intptr_t)lfd) == 0,
            "pthread_create");
    pthread_detach(t);
}

/* ---- checking the crawler's report ---- */

/* The report line for url (lines end with the URL). */
static char *line_for(const char *out, const char *url)
{
    size_t ul = strlen(url);
    for (const char *p = out; *p; ) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        if (len >= ul + 2 && memcmp(p + len - ul, url, ul) == 0 &&
            p[len - ul - 1] == ' ') {
            char *line = strndup(p, len);
            h_check(line != NULL, "out of memory");
            return line;
        }
        p += len + (nl != NULL);
    }
    h_fail("no report line for %s in:\n%s", url, out);
}

static void expect_fetch(const char *out, const char *url, int status,
                         size_t bytes)
{
    char *line = line_for(out, url);
    int st;
    size_t n;
    double secs;
    h_check(sscanf(line, "%d %zu bytes %lf s", &st, &n, &secs) == 3,
            "cannot parse the report line \"%s\"", line);
    h_check(st == status && n == bytes,
            "\"%s\": expected status %d and %zu bytes", line, status, bytes);
    h_check(secs >= 0 && secs < 60, "\"%s\": implausible time", line);
    free(line);
}

static void test_report(void)
{
    start_server();
    char urls[5][96];
    snprintf(urls[0], sizeof urls[0], "http://127.0.0.1:%d/fixed", server_port);
    snprintf(urls[1], sizeof urls[1], "http://127.0.0.1:%d/chunked", server_port);
    snprintf(urls[2], sizeof urls[2], "http://127.0.0.1:%d/eof", server_port);
    snprintf(urls[3], sizeof urls[3], "http://127.0.0.1:%d/missing?q=1#frag",
             server_port);
    snprintf(urls[4], sizeof urls[4], "http://127.0.0.1:%d/refused",
             h_closed_port());
    const char *args[] = {"-T", "20", urls[0], urls[1], urls[2], urls[3],
                          urls[4], NULL};
    char *out;
    int rc = h_run(args, 0, 60, &out);
    h_check(rc == 1, "with one refused URL the crawler exited %d, expected 1;"
            " output:\n%s", rc, out);
    expect_fetch(out, urls[0], 200, 1000);
    expect_fetch(out, urls[1], 200, 2500);
    expect_fetch(out, urls[2], 200, 1234);
    expect_fetch(out, urls[3], 404, 9);
    char *line = line_for(out, urls[4]);
    h_check(strncmp(line, "ERR", 3) == 0 && strstr(line, "refused") != NULL,
            "the refused URL is reported as \"%s\"", line);
    free(line);
    h_check(strstr(out, "5 URLs in ") != NULL && strstr(out, ", 1 failed\n") != NULL,
            "no summary line in:\n%s", out);
    free(out);
    pthread_mutex_lock(&mu);
    h_check(bad_requests == 0 && requests == 4,
            "the server saw %d requests, %d malformed", requests, bad_requests);
    pthread_mutex_unlock(&mu);
    h_ok("Content-Length, chunked and close-delimited bodies, 404 and refused");

    /* Five slow URLs (0.5 s each): fetched at once, not one by one. */
    char slow[5][96];
    const char *sargs[6];
    for (int i = 0; i < 5; i++) {
        snprintf(slow[i], sizeof slow[i], "http://127.0.0.1:%d/slow/%d",
                 server_port, i);
        sargs[i] = slow[i];
    }
    sargs[5] = NULL;
    rc = h_run(sargs, 0, 60, &out);
    h_check(rc == 0, "the crawler exited %d; output:\n%s", rc, out);
    for (int i = 0; i < 5; i++)
        expect_fetch(out, slow[i], 200, 4);
    free(out);
    pthread_mutex_lock(&mu);
    int pk = peak;
    pthread_mutex_unlock(&mu);
    h_check(pk >= 2, "at most %d slow requests were in progress at once: the "
            "crawler does not fetch concurrently", pk);
    h_ok("slow URLs fetched concurrently (%d at once)", pk);
}

static void expect_usage(const char *const *args, const char *what)
{
    char *out;
    int rc = h_run(args, 1, 60, &out);
    h_check(rc == 2, "%s: exit status %d, expected 2; output:\n%s", what, rc, out);
    free(out);
}

static void test_usage(void)
{
    const char *none[] = {NULL};
    const char *ftp[] = {"ftp://127.0.0.1/", NULL};
    const char *port[] = {"http://127.0.0.1:99999/", NULL};
    const char *tmo[] = {"-T", "soon", "http://127.0.0.1:1/", NULL};
    const char *opt[] = {"--nonsense", NULL};
    /* A path longer than the crawler keeps: refused, not truncated. */
    static char longurl[4096];
    int n = snprintf(longurl, sizeof longurl, "http://127.0.0.1:1/");
    memset(longurl + n, 'a', 3000);
    const char *lng[] = {longurl, NULL};
    expect_usage(none, "no URL");
    expect_usage(lng, "a path of 3000 bytes");
    expect_usage(ftp, "an ftp:// URL");
    expect_usage(port, "a bad port");
    expect_usage(tmo, "a bad -T");
    expect_usage(opt, "an unknown option");
    h_ok("bad arguments give status 2");
}

/* ---- --compare ---- */

static void test_compare(void)
{
    const char *args[] = {"--compare", NULL};
    char *out;
    int rc = h_run(args, 0, 100, &out);
    h_check(rc == 0, "crawler --compare exited %d; output:\n%s", rc, out);
    static const char *const names[] = {"sequential", "pthreads", "fork",
                                        "green threads"};
    double secs[4];
    for (int i = 0; i < 4; i++) {
        char want[32];
        snprintf(want, sizeof want, "\n%s ", names[i]);
        const char *p = strstr(out, want);
        double speedup;
        h_check(p != NULL && sscanf(p + strlen(want), "%lf %lfx", &secs[i],
                                    &speedup) == 2,
                "no \"%s\" row in the table:\n%s", names[i], out);
        h_check(secs[i] > 0, "row %s: %.3f s", names[i], secs[i]);
    }
    printf("%s", out);
    /* 20 fetches with a 0.2 s server delay: about 4 s in sequence. */
    h_check(secs[0] >= 20 * 0.2 * 0.95, "sequential took %.3f s, less than the "
            "server's delays add up to", secs[0]);
    h_check(secs[0] >= 3 * secs[3], "green threads (%.3f s) are not 3 times "
            "faster than sequential fetches (%.3f s)", secs[3], secs[0]);
    free(out);
    h_ok("green threads %.1fx faster than sequential", secs[0] / secs[3]);
}

int main(int argc, char **argv)
{
    h_init(argc, argv, 110);
    if (h_compare) {
        test_compare();
    } else {
        test_usage();
        test_report();
    }
    printf("PASS\n");
    return 0;
}
