/* SPDX-License-Identifier: MIT */
/*
 * test_net_emfile.c - bl_accept() when the process is out of descriptors
 * (EMFILE), with an acceptor loop of the test's own and with
 * bl_serve_listener(). RLIMIT_NOFILE is lowered and every descriptor but
 * three is taken, while a client process connects steadily: the acceptor
 * accepts three clients (their handlers hold the connections), then runs
 * out of descriptors while more clients keep arriving. bl_accept must not
 * hand EMFILE to its caller, and must back off rather than spin on a
 * listener that stays readable (bluelet.h: "waits and retries with a
 * growing pause"). That is measured by counts, not CPU time, so that a
 * loaded machine cannot hide a spin: accept4() is wrapped here (the real
 * system call is made) to count the attempts that fail for want of
 * descriptors, and the scheduler's libev loop counts its iterations. Once
 * descriptors are freed (the limit stays low, so accepts may run out again
 * while handlers hold connections, and must resume again), every client is
 * accepted and its line echoed. Last, while an acceptor pauses out of
 * descriptors, a second acceptor is refused (EBUSY) and closing the
 * listener wakes the first (EBADF) at once.
 */
#include "netb_util.h"

#include <ev.h>
#include <sys/resource.h>
#include <sys/syscall.h>

enum {
    FREE = 3,          /* descriptors left for the first accepts */
    NCLIENTS = 30,     /* one every 20 ms: they arrive for about 0.6 s */
    SPIN = 1000,       /* failed attempts that prove a spin at once */
    MAX_RETRIES = 20,  /* failed attempts allowed while stuck for WINDOW */
    MAX_LOOPS = 200,   /* loop iterations allowed while stuck for WINDOW */
};
#define WINDOW 0.5     /* seconds */

/* ---- counting accept attempts ---- */

static int accept_calls;   /* every accept4() of this process */
static int fd_fails;       /* those that failed with EMFILE or ENFILE */

/* The library calls accept4() through its PLT, so this definition in the
 * executable takes the place of libc's for it. (__SOCKADDR_ARG is glibc's
 * type of the argument: a pointer, or a union of pointers.) */
int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *len, int flags)
{
    struct sockaddr *sa;
    memcpy(&sa, &addr, sizeof sa);
    int r = (int)syscall(SYS_accept4, fd, sa, len, flags);
    int e = errno;
    accept_calls++;
    if (r < 0 && (e == EMFILE || e == ENFILE) && ++fd_fails >= SPIN)
        CORE_FAIL("accept4 failed for want of descriptors %d times: the "
                  "acceptor spins instead of backing off", fd_fails);
    errno = e;
    return r;
}

/* ---- the client process: connects steadily, then checks the echoes ---- */

static void client_line(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "hello from client %d\n", i);
}

static int client_process(int port)
{
    int fds[NCLIENTS];
    struct sockaddr_in a = netb_loopback(port);
    struct timeval tv = {.tv_sec = 20};
    for (int i = 0; i < NCLIENTS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0)
            return 10;
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fds[i], (struct sockaddr *)&a, sizeof a) < 0)
            return 11;
        char line[64];
        client_line(i, line, sizeof line);
        size_t len = strlen(line);
        if (send(fds[i], line, len, MSG_NOSIGNAL) != (ssize_t)len)
            return 12;
        usleep(20000);
    }
    for (int i = 0; i < NCLIENTS; i++) {
        char want[64], got[64];
        client_line(i, want, sizeof want);
        size_t len = strlen(want), n = 0;
        while (n < len) {
            ssize_t r = recv(fds[i], got + n, len - n, 0);
            if (r <= 0)
                return 20;   /* not served (or timed out) */
            n += (size_t)r;
        }
        if (memcmp(got, want, len) != 0)
            return 21;
        close(fds[i]);
    }
    return 0;
}

/* ---- the server side ---- */

static int started, served;  /* handlers that began, and that echoed */
static int gate[2];          /* a pipe: readable once handlers may go on */

/* Read the client's line, hold the connection until the gate opens, echo
 * the line. */
static void echo_line(bl_conn *c, void *arg)
{
    (void)arg;
    started++;
    char line[64];
    ssize_t n = bl_readline(c, line, sizeof line);
    if (n <= 0)
        CORE_FAIL("handler: bl_readline returned %zd (%s)", n,
                  strerror(errno));
    CHECK(bl_wait_fd(gate[0], BL_READ, -1) == BL_READ);
    CHECK(bl_sendall(c, line, (size_t)n) == 0);
    served++;
}

static void *handler_thread(void *arg)
{
    bl_conn *c = arg;
    echo_line(c, NULL);
    CHECK(bl_close(c) == 0);
    return NULL;
}

/* The test's own acceptor: bl_accept must never return EMFILE. */
static void *acceptor(void *arg)
{
    bl_listener *l = arg;
    bl_spawn_opts o = {.size = sizeof o, .detached = 1};
    for (;;) {
        bl_conn *c = bl_accept(l);
        if (c == NULL) {
            if (errno == ECANCELED)
                break;
            CORE_FAIL("bl_accept returned %s to its caller", strerror(errno));
        }
        CHECK(bl_spawn_ex(NULL, handler_thread, c, &o) != NULL);
    }
    return NULL;
}

/* Lower RLIMIT_NOFILE to a few above the highest descriptor open and take
 * every descriptor left, then free `keep` of them. Returns the count taken;
 * their numbers go to *ballast (malloc'd). */
static int exhaust_fds(int keep, int **ballast)
{
    int maxfd = 0;
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && atoi(e->d_name) > maxfd)
            maxfd = atoi(e->d_name);
    closedir(d);
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = (rlim_t)maxfd + 1 + 8;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    int cap = maxfd + 1 + 8;
    *ballast = malloc((size_t)cap * sizeof **ballast);
    CHECK(*ballast != NULL);
    int n = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            CHECK(errno == EMFILE);
            break;
        }
        CHECK(n < cap);
        (*ballast)[n++] = fd;
    }
    CHECK(n > keep);
    for (int i = 0; i < keep; i++)
        close((*ballast)[--n]);
    return n;
}

static void *emfile_main(void *arg)
{
    int use_serve = (int)(long)arg;
    started = served = accept_calls = fd_fails = 0;
    CHECK(pipe2(gate, O_CLOEXEC) == 0);
    bl_listener *l = bl_listen("127.0.0.1", 0, 2 * NCLIENTS);
    CHECK(l != NULL);
    int lfd = bl_listener_fd(l);

    struct rlimit old;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(client_process(bl_listener_port(l)));

    int *ballast;
    int nb = exhaust_fds(FREE, &ballast);
    bl_thread *acc = use_serve ? bl_serve_listener(NULL, l, echo_line, NULL)
                               : bl_spawn(NULL, acceptor, l);
    CHECK(acc != NULL);

    /* The first clients are accepted, then the descriptors run out. */
    double w0 = core_now();
    while (started < FREE || fd_fails == 0) {
        if (core_now() - w0 > 10)
            CORE_FAIL("not out of descriptors after 10 s: %d handlers "
                      "started, %d accepts failed", started, fd_fails);
        CHECK(bl_sleep(0.005) == 0);
    }

    /* Stuck, while more clients arrive. */
    struct ev_loop *loop = bl_sched_loop(bl_sched_current());
    int fails0 = fd_fails;
    unsigned loops0 = ev_iteration(loop);
    double t0 = core_now();
    CHECK(bl_sleep(WINDOW) == 0);
    double wall = core_now() - t0;
    int fails = fd_fails - fails0;
    unsigned loops = ev_iteration(loop) - loops0;
    printf("note: %s: %d accept attempts, %u loop iterations in %.2f s out "
           "of descriptors\n", use_serve ? "bl_serve" : "bl_accept", fails,
           loops, wall);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    CHECK(poll(&p, 1, 0) == 1);    /* clients are waiting all the while */
    CHECK_EQ_LL(started, FREE);
    CHECK_EQ_LL(served, 0);
    if (fails > MAX_RETRIES)
        CORE_FAIL("the acceptor retried %d times in %.2f s out of "
                  "descriptors (at most %d with a growing pause)", fails, wall,
                  MAX_RETRIES);
    if (loops > MAX_LOOPS)
        CORE_FAIL("the scheduler's loop ran %u times in %.2f s while the "
                  "acceptor was out of descriptors (at most %d): it spins",
                  loops, wall, MAX_LOOPS);

    /* Descriptors come back, and the handlers may go on. */
    for (int i = 0; i < nb; i++)
        close(ballast[i]);
    free(ballast);
    CHECK(write(gate[1], "go", 2) == 2);
    int status;
    if (core_wait_child(pid, 20, &status) != 0)
        CORE_FAIL("the clients were not served (%d of %d)", served, NCLIENTS);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        CORE_FAIL("client process failed: status 0x%x (%d of %d served)",
                  status, served, NCLIENTS);
    CHECK_EQ_LL(started, NCLIENTS);
    CHECK_EQ_LL(served, NCLIENTS);
    CHECK(accept_calls >= NCLIENTS);   /* the wrapper saw the accepts */

    CHECK(bl_cancel(acc) == 0);
    NETB_JOIN_SOON(acc, NULL);
    if (!use_serve)
        CHECK(bl_listener_close(l) == 0);  /* bl_serve's acceptor closes it */
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    close(gate[0]);
    close(gate[1]);
    return NULL;
}

/* ---- an acceptor pausing out of descriptors: a second bl_accept() on the
 * listener fails with EBUSY at once, and bl_listener_close() wakes the
 * first one at once with EBADF, without waiting for its pause to end.
 * Checked by yielding, not by timing: a woken thread runs at the next
 * yield, a pausing one would not. ---- */

struct acc_once {
    bl_listener *l;
    int done, err;      /* returned, and its errno (0: accepted) */
};

static void *accept_once(void *arg)
{
    struct acc_once *r = arg;
    errno = 0;
    bl_conn *c = bl_accept(r->l);
    r->err = c == NULL ? errno : 0;
    if (c != NULL)
        CHECK(bl_close(c) == 0);
    r->done = 1;
    return NULL;
}

static void *paused_main(void *arg)
{
    (void)arg;
    accept_calls = fd_fails = 0;
    bl_listener *l = bl_listen("127.0.0.1", 0, 4);
    CHECK(l != NULL);
    struct acc_once first = {l, 0, 0}, second = {l, 0, 0};
    int client = netb_raw_connect(bl_listener_port(l)); /* queued */
    struct rlimit old;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    int *ballast;
    int nb = exhaust_fds(0, &ballast);

    bl_thread *a = bl_spawn(NULL, accept_once, &first);
    CHECK(a != NULL);
    double w0 = core_now();
    while (fd_fails == 0) {
        if (core_now() - w0 > 10)
            CORE_FAIL("bl_accept never ran out of descriptors");
        CHECK(bl_sleep(0.005) == 0);
    }
    CHECK(!first.done);           /* pausing, not returned */

    bl_thread *b = bl_spawn(NULL, accept_once, &second);
    CHECK(b != NULL);
    for (int i = 0; i < 3; i++)
        CHECK(bl_yield() == 0);
    if (!second.done)
        CORE_FAIL("a second bl_accept waits behind a pausing one instead of "
                  "failing with EBUSY");
    CHECK_EQ_LL(second.err, EBUSY);

    CHECK(bl_listener_close(l) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(bl_yield() == 0);
    if (!first.done)
        CORE_FAIL("bl_listener_close did not wake the acceptor pausing out "
                  "of descriptors");
    CHECK_EQ_LL(first.err, EBADF);
    CHECK(bl_join(a, NULL) == 0 && bl_join(b, NULL) == 0);

    for (int i = 0; i < nb; i++)
        close(ballast[i]);
    free(ballast);
    close(client);
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    return NULL;
}

int main(void)
{
    int fds0 = netb_begin();
    NETB_RUN(emfile_main, (void *)0L);
    printf("ok: bl_accept backs off on EMFILE after %d accepts and resumes; "
           "%d clients served\n", FREE, NCLIENTS);
    NETB_RUN(emfile_main, (void *)1L);
    printf("ok: bl_serve_listener backs off on EMFILE after %d accepts and "
           "resumes; %d clients served\n", FREE, NCLIENTS);
    NETB_RUN(paused_main, NULL);
    printf("ok: while bl_accept pauses out of descriptors, a second one gets "
           "EBUSY and bl_listener_close wakes it with EBADF\n");
    netb_end(fds0);
    return 0;
}
