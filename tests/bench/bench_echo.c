/* SPDX-License-Identifier: MIT */
/*
 * bench_echo - echo round trips per second: echo_simple (libbluelet green
 * threads) against echo_libev (hand-written libev callbacks), same run.
 *
 *   bench_echo [-a] [-d seconds] [-r repetitions] [-o datafile] [conns...]
 *   bench_echo -p port [-d seconds] [conns...]   (a server already running)
 *
 * Besides round trips per second it prints the server's CPU time per round
 * trip (user + system, from /proc): with both processes busy, the load
 * generator's pace and the server's feed back on each other, and CPU per
 * round trip shows the server's own cost more directly. -a pins the load
 * generator to CPU 0 and the servers to CPU 1, which makes runs steadier.
 *
 * Defaults: 2 s per measurement, 5 repetitions (medians reported),
 * connection counts 1 50 1000, data file echo.dat. The load generator is
 * this one OS thread on epoll: each connection sends a 64-byte message,
 * waits for the whole echo, checks it byte for byte and sends the next.
 * The servers are started from their build paths with port 0 and stopped
 * after each repetition; they alternate so that drift affects both alike.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define MAXC 16

static const char *servers[2] = {ECHO_LIBEV, ECHO_SIMPLE};
/* Both listen on IPv4 sockets: echo_libev always does, and echo_simple by
 * default listens on a dual-stack IPv6 socket, whose accepted IPv4
 * connections cost the kernel about 2% more per round trip. */
static const char *server_host[2] = {NULL, "0.0.0.0"};
static const char *names[2] = {"echo_libev", "echo_simple"};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int pin_cpus;

/* CPU time (user + system) of process pid so far, in seconds; -1 if unknown. */
static double cpu_seconds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');   /* the name may hold spaces */
    unsigned long ut, st;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                            &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Start a server on port 0; returns its pid, *port from its first line. */
static pid_t start_server(const char *path, const char *host, int *port)
{
    int p[2];
    if (pipe(p) != 0)
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        if (pin_cpus) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(1, &set);
            sched_setaffinity(0, sizeof set, &set);
        }
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(path, path, "0", host, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    FILE *f = fdopen(p[0], "r");
    char line[256];
    if (f == NULL || fgets(line, sizeof line, f) == NULL)
        die("server start");
    const char *at = strstr(line, "port ");
    if (at == NULL || (*port = atoi(at + 5)) <= 0) {
        fprintf(stderr, "bench_echo: unexpected server output: %s", line);
        exit(1);
    }
    fclose(f);
    return pid;
}

static void stop_server(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

struct conn {
    int fd;
    unsigned seq;
    size_t got;
    char want[MSG], buf[MSG];
};

static void next_message(struct conn *c)
{
    c->seq++;
    for (int i = 0; i < MSG; i++)
        c->want[i] = (char)('A' + (c->seq + (unsigned)i) % 26);
    c->got = 0;
    if (send(c->fd, c->want, MSG, MSG_NOSIGNAL) != MSG)
        die("send");
}

/* Round trips per second over `seconds` with n connections; *cpu_us gets
 * the server's (pid's) CPU microseconds per round trip (-1 if unknown). */
static double measure(int port, int n, double seconds, pid_t pid, double *cpu_us)
{
    struct conn *c = calloc((size_t)n, sizeof *c);
    int ep = epoll_create1(0);
    if (c == NULL || ep < 0)
        die("setup");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < n; i++) {
        c[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        if (c[i].fd < 0 || connect(c[i].fd, (struct sockaddr *)&a, sizeof a) != 0)
            die("connect");
        setsockopt(c[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev) != 0)
            die("epoll_ctl");
    }
    for (int i = 0; i < n; i++)
        next_message(&c[i]);
    long count = 0;
    double c0 = pid > 0 ? cpu_seconds(pid) : -1;
    double t0 = now(), end = t0 + seconds, t = t0;
    struct epoll_event evs[256];
    while (t < end) {
        int k = epoll_wait(ep, evs, 256, 1000);
        if (k < 0 && errno != EINTR)
            die("epoll_wait");
        for (int j = 0; j < k; j++) {
            struct conn *x = evs[j].data.ptr;
            ssize_t r = recv(x->fd, x->buf + x->got, MSG - x->got, 0);
            if (r <= 0) {
                fprintf(stderr, "bench_echo: connection %s\n",
                        r == 0 ? "closed by the server" : strerror(errno));
                exit(1);
            }
            x->got += (size_t)r;
            if (x->got == MSG) {
                if (memcmp(x->buf, x->want, MSG) != 0) {
                    fprintf(stderr, "bench_echo: wrong echo\n");
                    exit(1);
                }
                count++;
                next_message(x);
            }
        }
        t = now();
    }
    double rate = (double)count / (t - t0);
    double c1 = pid > 0 ? cpu_seconds(pid) : -1;
    *cpu_us = c0 >= 0 && c1 >= 0 && count > 0 ? (c1 - c0) * 1e6 / (double)count : -1;
    for (int i = 0; i < n; i++)
        close(c[i].fd);
    close(ep);
    free(c);
    return rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    double seconds = 2;
    int reps = 5, opt, ext_port = 0;
    const char *datafile = "echo.dat";
    while ((opt = getopt(argc, argv, "ad:r:o:p:")) != -1) {
        switch (opt) {
        case 'a': pin_cpus = 1; break;
        case 'p': ext_port = atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'o': datafile = optarg; break;
        default:
            fprintf(stderr, "usage: %s [-a] [-d seconds] [-r reps] [-o datafile] [-p port] [conns...]\n",
                    argv[0]);
            return 2;
        }
    }
    int conns[MAXC], nc = 0;
    for (int i = optind; i < argc && nc < MAXC; i++)
        conns[nc++] = atoi(argv[i]);
    if (nc == 0) {
        conns[0] = 1;
        conns[1] = 50;
        conns[2] = 1000;
        nc = 3;
    }
    if (seconds <= 0 || reps <= 0 || reps > 99) {
        fprintf(stderr, "bench_echo: bad -d or -r\n");
        return 2;
    }
    /* Both ends of every connection live on this machine. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    if (pin_cpus) {
        if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
            fprintf(stderr, "bench_echo: -a needs 2 CPUs\n");
            return 2;
        }
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            die("sched_setaffinity");
    }
    if (ext_port > 0) {
        double cpu_us;
        for (int i = 0; i < nc; i++)
            printf("%d conns: %.0f round trips/s\n", conns[i],
                   measure(ext_port, conns[i], seconds, 0, &cpu_us));
        return 0;
    }
    static double rate[2][MAXC][100], cpu[2][MAXC][100];
    for (int r = 0; r < reps; r++) {
        for (int s = 0; s < 2; s++) {
            int port;
            pid_t pid = start_server(servers[s], server_host[s], &port);
            for (int i = 0; i < nc; i++)
                rate[s][i][r] = measure(port, conns[i], seconds, pid, &cpu[s][i][r]);
            stop_server(pid);
        }
    }
    FILE *dat = fopen(datafile, "w");
    if (dat == NULL)
        die(datafile);
    fprintf(dat, "# conns %s_rt_per_s %s_rt_per_s %s_cpu_us_per_rt %s_cpu_us_per_rt\n",
            names[0], names[1], names[0], names[1]);
    printf("round trips/s (64-byte messages) and server CPU us per round trip, "
           "medians of %d%s\n", reps, pin_cpus ? ", pinned" : "");
    printf("%-6s %12s %12s %6s   %9s %9s %6s\n", "conns", names[0], names[1],
           "ratio", "libev_us", "simple_us", "ratio");
    for (int i = 0; i < nc; i++) {
        double m[2], c[2];
        for (int s = 0; s < 2; s++) {
            qsort(rate[s][i], (size_t)reps, sizeof(double), cmp_double);
            m[s] = rate[s][i][reps / 2];
            qsort(cpu[s][i], (size_t)reps, sizeof(double), cmp_double);
            c[s] = cpu[s][i][reps / 2];
        }
        printf("%-6d %12.0f %12.0f %6.2f   %9.3f %9.3f %6.2f\n", conns[i], m[0], m[1],
               m[1] / m[0], c[0], c[1], c[0] > 0 ? c[1] / c[0] : 0);
        fprintf(dat, "%d %.0f %.0f %.3f %.3f\n", conns[i], m[0], m[1], c[0], c[1]);
    }
    fclose(dat);
    return 0;
}
