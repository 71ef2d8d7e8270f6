/*
 * bench_echo - echo round trips per second: echo_simple (libbluelet green
 * threads) against echo_libev (hand-written libev callbacks), same run.
 *
 *   bench_echo [-d seconds] [-r repetitions] [-o datafile] [conns...]
 *   bench_echo -p port [-d seconds] [conns...]   (a server already running)
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

/* Round trips per second over `seconds` with n connections. */
static double measure(int port, int n, double seconds)
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
    while ((opt = getopt(argc, argv, "d:r:o:p:")) != -1) {
        switch (opt) {
        case 'p': ext_port = atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'o': datafile = optarg; break;
        default:
            fprintf(stderr, "usage: %s [-d seconds] [-r reps] [-o datafile] [-p port] [conns...]\n",
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
    if (ext_port > 0) {
        for (int i = 0; i < nc; i++)
            printf("%d conns: %.0f round trips/s\n", conns[i],
                   measure(ext_port, conns[i], seconds));
        return 0;
    }
    static double rate[2][MAXC][100];
    for (int r = 0; r < reps; r++) {
        for (int s = 0; s < 2; s++) {
            int port;
            pid_t pid = start_server(servers[s], server_host[s], &port);
            for (int i = 0; i < nc; i++)
                rate[s][i][r] = measure(port, conns[i], seconds);
            stop_server(pid);
        }
    }
    FILE *dat = fopen(datafile, "w");
    if (dat == NULL)
        die(datafile);
    fprintf(dat, "# conns %s_rt_per_s %s_rt_per_s\n", names[0], names[1]);
    printf("%-6s %14s %14s %8s   (round trips/s, 64-byte messages, median of %d)\n",
           "conns", names[0], names[1], "ratio", reps);
    for (int i = 0; i < nc; i++) {
        double m[2];
        for (int s = 0; s < 2; s++) {
            qsort(rate[s][i], (size_t)reps, sizeof(double), cmp_double);
            m[s] = rate[s][i][reps / 2];
        }
        printf("%-6d %14.0f %14.0f %8.2f\n", conns[i], m[0], m[1], m[1] / m[0]);
        fprintf(dat, "%d %.0f %.0f\n", conns[i], m[0], m[1]);
    }
    fclose(dat);
    return 0;
}
