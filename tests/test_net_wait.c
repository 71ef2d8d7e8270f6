/*
 * test_net_wait.c - green threads blocked in I/O: timeouts, cancellation,
 * a connection closed while another thread waits on it, one thread reading
 * while another writes the same connection, and EMFILE in accept.
 */
#include "core_util.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* A connected pair: *a wrapped, *peer a raw non-wrapped fd. */
static bl_conn *pair(int *peer)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    *peer = sv[1];
    bl_conn *c = bl_conn_new(sv[0]);
    CHECK(c != NULL);
    return c;
}

/* Fill the socket buffers so that the next send blocks. */
static void fill(bl_conn *c, int peer)
{
    int small = 4096;
    setsockopt(bl_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    char junk[4096] = {0};
    while (send(bl_conn_fd(c), junk, sizeof junk, MSG_DONTWAIT) > 0)
        ;
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* ---- timeouts ---- */

static void *timeouts_main(void *arg)
{
    (void)arg;
    char buf[4096];
    int peer;
    bl_conn *c = pair(&peer);

    CHECK(bl_conn_set_timeout(c, 0.2) == 0);
    double t0 = core_now();
    CHECK_ERR(bl_recv(c, buf, sizeof buf), ETIMEDOUT);
    double took = core_now() - t0;
    if (took < 0.2 || took > 5)
        CORE_FAIL("bl_recv timed out after %.3f s, set to 0.2 s", took);
    /* Each call gets its own deadline; data after a timeout is read. */
    CHECK(write(peer, "late", 4) == 4);
    CHECK(bl_recv(c, buf, sizeof buf) == 4);
    t0 = core_now();
    CHECK_ERR(bl_readline(c, buf, sizeof buf), ETIMEDOUT);
    CHECK(core_now() - t0 >= 0.2);

    /* A peer that never reads: bl_sendall times out. */
    fill(c, peer);
    t0 = core_now();
    CHECK_ERR(bl_sendall(c, buf, sizeof buf), ETIMEDOUT);
    CHECK(core_now() - t0 >= 0.2);
    CHECK_ERR(bl_conn_set_timeout(c, -1), EINVAL);
    CHECK(bl_close(c) == 0);
    close(peer);

    /* Accept with a bound. */
    bl_listener *l = bl_listen("127.0.0.1", 0, 1);
    CHECK(l != NULL);
    CHECK(bl_listener_set_timeout(l, 0.1) == 0);
    t0 = core_now();
    CHECK_NULL_ERR(bl_accept(l), ETIMEDOUT);
    CHECK(core_now() - t0 >= 0.1);
    CHECK(bl_listener_close(l) == 0);

    /* bl_wait_fd on a pipe. */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_ERR(bl_wait_fd(p[0], BL_READ, 0.05), ETIMEDOUT);
    CHECK(bl_wait_fd(p[1], BL_WRITE, 1) == BL_WRITE);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(bl_wait_fd(p[0], BL_READ, -1) == BL_READ);
    CHECK_ERR(bl_wait_fd(p[0], 4, 1), EINVAL);
    close(p[0]);
    close(p[1]);
    return NULL;
}

/* ---- cancellation of threads blocked in I/O ---- */

struct blocked {
    const char *what;
    int result_errno;
    int later_errno;
    int entered;
};

static bl_conn *cancel_conn_r, *cancel_conn_w;
static bl_listener *cancel_l;
static int cancel_pipe[2];

static void *blocked_recv(void *arg)
{
    struct blocked *b = arg;
    char buf[16];
    b->entered = 1;
    errno = 0;
    if (bl_recv(cancel_conn_r, buf, sizeof buf) == -1)
        b->result_errno = errno;
    /* Clean-up still works; later blocking calls fail at once. */
    errno = 0;
    if (bl_recv(cancel_conn_r, buf, sizeof buf) == -1)
        b->later_errno = errno;
    CHECK(bl_close(cancel_conn_r) == 0);
    return NULL;
}

static void *blocked_send(void *arg)
{
    struct blocked *b = arg;
    static char big[1 << 20];
    b->entered = 1;
    errno = 0;
    if (bl_sendall(cancel_conn_w, big, sizeof big) == -1)
        b->result_errno = errno;
    errno = 0;
    if (bl_sleep(0.01) == -1)
        b->later_errno = errno;
    return NULL;
}

static void *blocked_accept(void *arg)
{
    struct blocked *b = arg;
    b->entered = 1;
    errno = 0;
    if (bl_accept(cancel_l) == NULL)
        b->result_errno = errno;
    errno = 0;
    if (bl_accept(cancel_l) == NULL)
        b->later_errno = errno;
    return NULL;
}

static void *blocked_waitfd(void *arg)
{
    struct blocked *b = arg;
    b->entered = 1;
    errno = 0;
    if (bl_wait_fd(cancel_pipe[0], BL_READ, -1) == -1)
        b->result_errno = errno;
    errno = 0;
    if (bl_yield() == -1)
        b->later_errno = errno;
    return NULL;
}

static void *cancel_main(void *arg)
{
    (void)arg;
    int peer_r, peer_w;
    cancel_conn_r = pair(&peer_r);
    cancel_conn_w = pair(&peer_w);
    fill(cancel_conn_w, peer_w);
    cancel_l = bl_listen("127.0.0.1", 0, 1);
    CHECK(cancel_l != NULL);
    CHECK(pipe(cancel_pipe) == 0);
    struct blocked b[4] = {{.what = "bl_recv"}, {.what = "bl_sendall"},
                           {.what = "bl_accept"}, {.what = "bl_wait_fd"}};
    bl_func fn[4] = {blocked_recv, blocked_send, blocked_accept, blocked_waitfd};
    bl_thread *t[4];
    for (int i = 0; i < 4; i++)
        CHECK((t[i] = bl_spawn(NULL, fn[i], &b[i])) != NULL);
    CHECK(bl_sleep(0.05) == 0);       /* all of them are blocked now */
    for (int i = 0; i < 4; i++) {
        CHECK(b[i].entered);
        CHECK(b[i].result_errno == 0); /* still blocked */
        CHECK(bl_cancel(t[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        CHECK(bl_join(t[i], NULL) == 0);
        if (b[i].result_errno != ECANCELED || b[i].later_errno != ECANCELED)
            CORE_FAIL("%s: errno %d then %d, expected ECANCELED twice",
                      b[i].what, b[i].result_errno, b[i].later_errno);
    }
    CHECK(bl_close(cancel_conn_w) == 0);
    CHECK(bl_listener_close(cancel_l) == 0);
    close(peer_r);
    close(peer_w);
    close(cancel_pipe[0]);
    close(cancel_pipe[1]);
    return NULL;
}

/* ---- close while another thread is blocked ---- */

struct cw {
    bl_conn *c;
    int err;
    int done;
};

static void *cw_reader(void *arg)
{
    struct cw *w = arg;
    char buf[16];
    errno = 0;
    CHECK(bl_recv(w->c, buf, sizeof buf) == -1);
    w->err = errno;
    w->done = 1;
    return NULL;
}

static void *cw_writer(void *arg)
{
    struct cw *w = arg;
    static char big[1 << 20];
    errno = 0;
    CHECK(bl_sendall(w->c, big, sizeof big) == -1);
    w->err = errno;
    w->done = 1;
    return NULL;
}

static void *closewhile_main(void *arg)
{
    (void)arg;
    int peer_r, peer_w;
    struct cw r = {.c = pair(&peer_r)}, w = {.c = pair(&peer_w)};
    fill(w.c, peer_w);
    bl_thread *tr = bl_spawn(NULL, cw_reader, &r);
    bl_thread *tw = bl_spawn(NULL, cw_writer, &w);
    CHECK(tr != NULL && tw != NULL);
    CHECK(bl_sleep(0.02) == 0);
    CHECK(!r.done && !w.done);
    CHECK(bl_close(r.c) == 0);         /* the connections are freed */
    CHECK(bl_close(w.c) == 0);
    CHECK(bl_join(tr, NULL) == 0 && bl_join(tw, NULL) == 0);
    if (r.err != EBADF || w.err != EBADF)
        CORE_FAIL("woken with errno %d / %d, expected EBADF", r.err, w.err);
    close(peer_r);
    close(peer_w);
    return NULL;
}

/* ---- duplex: one thread reads while another writes the same conn ---- */

enum { NOTES = 20 };
static bl_conn *dup_c;
static char dup_line[64];

static void *dup_reader(void *arg)
{
    (void)arg;
    CHECK(bl_readline(dup_c, dup_line, sizeof dup_line) > 0);
    return NULL;
}

static void *dup_writer(void *arg)
{
    (void)arg;
    for (int i = 0; i < NOTES; i++) {
        char note[32];
        int n = snprintf(note, sizeof note, "changed: %d\n", i);
        CHECK(bl_sendall(dup_c, note, (size_t)n) == 0);
        CHECK(bl_sleep(0.002) == 0);
    }
    return NULL;
}

/* The client, on its own OS thread with plain blocking sockets. */
static void *dup_client(void *arg)
{
    int fd = *(int *)arg;
    FILE *f = fdopen(dup(fd), "r");
    CHECK(f != NULL);
    char line[64];
    for (int i = 0; i < NOTES; i++) {
        char want[32];
        snprintf(want, sizeof want, "changed: %d\n", i);
        if (fgets(line, sizeof line, f) == NULL || strcmp(line, want) != 0)
            CORE_FAIL("notification %d: got \"%s\"", i, line);
    }
    CHECK(write(fd, "noidle\n", 7) == 7);
    fclose(f);
    return NULL;
}

static void *duplex_main(void *arg)
{
    (void)arg;
    int peer;
    dup_c = pair(&peer);
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, dup_client, &peer) == 0);
    bl_thread *r = bl_spawn(NULL, dup_reader, NULL);
    bl_thread *w = bl_spawn(NULL, dup_writer, NULL);
    CHECK(r != NULL && w != NULL);
    CHECK(bl_join(w, NULL) == 0);
    CHECK(bl_join(r, NULL) == 0);
    CHECK(strcmp(dup_line, "noidle\n") == 0);
    CHECK(pthread_join(tid, NULL) == 0);
    CHECK(bl_close(dup_c) == 0);
    close(peer);
    return NULL;
}

/* ---- EMFILE in accept: back off, then resume ---- */

enum { EM_CLIENTS = 24 };
static int em_port, em_fds[EM_CLIENTS], em_accepted;
static bl_conn *em_held[EM_CLIENTS];

static void *em_acceptor(void *arg)
{
    bl_listener *l = arg;
    while (em_accepted < EM_CLIENTS) {
        bl_conn *c = bl_accept(l);
        if (c == NULL)
            CORE_FAIL("bl_accept: %s", strerror(errno));
        em_held[em_accepted++] = c;
    }
    return NULL;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *emfile_main(void *arg)
{
    (void)arg;
    bl_listener *l = bl_listen("127.0.0.1", 0, EM_CLIENTS);
    CHECK(l != NULL);
    em_port = bl_listener_port(l);
    /* Queue every client in the backlog first (the kernel completes the
     * handshakes), using plain sockets. */
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)em_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int maxfd = 0;
    for (int i = 0; i < EM_CLIENTS; i++) {
        em_fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(em_fds[i] >= 0);
        CHECK(connect(em_fds[i], (struct sockaddr *)&a, sizeof a) == 0);
        if (em_fds[i] > maxfd)
            maxfd = em_fds[i];
    }
    /* Room for a few accepts only. */
    struct rlimit old, rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    rl = old;
    rl.rlim_cur = (rlim_t)maxfd + 1 + 3;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    bl_thread *acc = bl_spawn(NULL, em_acceptor, l);
    CHECK(acc != NULL);
    CHECK(bl_sleep(0.1) == 0);
    int stuck_at = em_accepted;
    CHECK(stuck_at < EM_CLIENTS);
    double c0 = cpu_now(), w0 = core_now();
    CHECK(bl_sleep(1.0) == 0);
    double cpu = cpu_now() - c0, wall = core_now() - w0;
    CHECK(em_accepted == stuck_at);
    if (cpu > 0.5 * wall)
        CORE_FAIL("the acceptor spins on EMFILE: %.3f s CPU in %.3f s", cpu, wall);
    printf("note: EMFILE after %d accepts; %.1f%% CPU while stuck\n", stuck_at,
           100 * cpu / wall);
    /* Descriptors back: every queued client gets accepted. */
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    CHECK(bl_join(acc, NULL) == 0);
    CHECK(em_accepted == EM_CLIENTS);
    for (int i = 0; i < EM_CLIENTS; i++) {
        CHECK(bl_close(em_held[i]) == 0);
        close(em_fds[i]);
    }
    CHECK(bl_listener_close(l) == 0);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    core_run_green(timeouts_main, NULL);
    printf("ok: timeouts on recv, readline, sendall, accept, wait_fd\n");
    core_run_green(cancel_main, NULL);
    printf("ok: cancel wakes recv, sendall, accept, wait_fd with ECANCELED\n");
    core_run_green(closewhile_main, NULL);
    printf("ok: closing a connection wakes its blocked reader and writer with EBADF\n");
    core_run_green(duplex_main, NULL);
    printf("ok: one thread reads while another writes the same connection\n");
    core_run_green(emfile_main, NULL);
    printf("ok: accept backs off on EMFILE and resumes\n");
    return 0;
}
