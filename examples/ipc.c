/* SPDX-License-Identifier: MIT */
/*
 * ipc.c - two processes exchanging framed messages over a socket pair.
 *
 *   usage: ipc
 *
 * The parent forks a child; each process runs its own scheduler on its end
 * of a socketpair(2). Messages are framed by a 16-byte delimiter, which
 * bl_readuntil() finds for the receiver however the bytes arrive (a message
 * may come in many pieces, several may come in one). A message must not
 * contain the delimiter itself.
 *
 * The parent sends with one green thread and reads the child's answers with
 * another, so it can push a message larger than the socket buffer while the
 * child answers the earlier ones: neither side can deadlock the other.
 *
 *   parent ---- "hello" DELIM, ..., end of stream ---->  child
 *   parent <--- "ack 0: 5 bytes" DELIM, ...  ----------  child
 */
#define _GNU_SOURCE
#include <bluelet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define DELIM "<<<end-of-msg>>>"
#define DELIM_LEN 16
#define BIG_SIZE (256 * 1024)        /* more than a socket buffer holds */
#define MAX_MSG (BIG_SIZE + DELIM_LEN + 1)

_Static_assert(sizeof DELIM - 1 == DELIM_LEN, "the delimiter is 16 bytes");

enum { NMSG = 5 };

/* The messages the parent sends; message 3 is BIG_SIZE bytes of 'x'. */
static const char *const texts[NMSG] = {
    "hello", "a message\nof two lines", "", NULL, "goodbye",
};

static char *big_message;

static const char *message(int i, size_t *len)
{
    if (texts[i] == NULL) {
        *len = BIG_SIZE;
        return big_message;
    }
    *len = strlen(texts[i]);
    return texts[i];
}

/* Send one framed message. */
static int send_msg(bl_conn *c, const void *data, size_t len)
{
    if (bl_sendall(c, data, len) < 0 || bl_sendall(c, DELIM, DELIM_LEN) < 0)
        return -1;
    return 0;
}

/* Receive one framed message into buf (the delimiter is stripped).
 * Returns its length, 0 at a clean end of stream, -1 on error (errno; EPROTO
 * for bytes after the last delimiter). A message of 0 bytes is distinguished
 * from the end of the stream by *got. */
static ssize_t recv_msg(bl_conn *c, char *buf, size_t cap, int *got)
{
    ssize_t n = bl_readuntil(c, buf, cap, DELIM, DELIM_LEN);
    *got = 0;
    if (n <= 0)
        return n;
    if (n < DELIM_LEN || memcmp(buf + n - DELIM_LEN, DELIM, DELIM_LEN) != 0) {
        errno = EPROTO;             /* the stream ended inside a message */
        return -1;
    }
    *got = 1;
    n -= DELIM_LEN;
    buf[n] = '\0';
    return n;
}

/* A short printable preview of a message. */
static void preview(const char *msg, size_t len, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 5 < cap; i++) {
        if (i == 24 && len > 28) {
            memcpy(out + j, "...", 3);
            j += 3;
            break;
        }
        if (msg[i] == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
        } else {
            out[j++] = msg[i];
        }
    }
    out[j] = '\0';
}

/* ---- the child: answer each message, stop at end of stream ---- */

static int child_status = 1;

static void *child_main(void *arg)
{
    bl_conn *c = arg;
    char *buf = malloc(MAX_MSG);
    if (buf == NULL) {
        perror("child: malloc");
        return NULL;
    }
    int count = 0;
    for (;;) {
        int got;
        ssize_t n = recv_msg(c, buf, MAX_MSG, &got);
        if (n < 0) {
            fprintf(stderr, "child: receive: %s\n", strerror(errno));
            break;
        }
        if (!got) {
            printf("child: end of stream after %d messages\n", count);
            child_status = count == NMSG ? 0 : 1;
            break;
        }
        char pv[40], reply[64];
        preview(buf, (size_t)n, pv, sizeof pv);
        printf("child: received message %d (%zd bytes): \"%s\"\n", count, n, pv);
        int rlen = snprintf(reply, sizeof reply, "ack %d: %zd bytes", count, n);
        if (send_msg(c, reply, (size_t)rlen) < 0) {
            fprintf(stderr, "child: send: %s\n", strerror(errno));
            break;
        }
        count++;
    }
    free(buf);
    bl_close(c);                    /* the parent sees end of stream */
    return NULL;
}

/* ---- the parent: a sender and a receiver, at the same time ---- */

static int parent_errors;

static void *sender(void *arg)
{
    bl_conn *c = arg;
    for (int i = 0; i < NMSG; i++) {
        size_t len;
        const char *m = message(i, &len);
        if (send_msg(c, m, len) < 0) {
            fprintf(stderr, "parent: send: %s\n", strerror(errno));
            parent_errors++;
            return NULL;
        }
        printf("parent: sent message %d (%zu bytes)\n", i, len);
    }
    bl_shutdown(c, SHUT_WR);        /* end of stream: the child stops */
    return NULL;
}

static void *receiver(void *arg)
{
    bl_conn *c = arg;
    char buf[256];
    int count = 0;
    for (;;) {
        int got;
        ssize_t n = recv_msg(c, buf, sizeof buf, &got);
        if (n < 0) {
            fprintf(stderr, "parent: receive: %s\n", strerror(errno));
            parent_errors++;
            return NULL;
        }
        if (!got)
            break;
        printf("parent: received \"%s\"\n", buf);
        size_t len;
        message(count, &len);
        char want[64];
        snprintf(want, sizeof want, "ack %d: %zu bytes", count, len);
        if (strcmp(buf, want) != 0) {
            fprintf(stderr, "parent: expected \"%s\"\n", want);
            parent_errors++;
        }
        count++;
    }
    if (count != NMSG) {
        fprintf(stderr, "parent: %d answers, expected %d\n", count, NMSG);
        parent_errors++;
    }
    return NULL;
}

static void *parent_main(void *arg)
{
    bl_conn *c = arg;
    bl_thread *r = bl_spawn(NULL, receiver, c);
    bl_thread *s = bl_spawn(NULL, sender, c);
    if (r == NULL || s == NULL) {
        perror("parent: bl_spawn");
        parent_errors++;
        if (r != NULL)
            bl_cancel(r);
    }
    if (s != NULL)
        bl_join(s, NULL);
    if (r != NULL)
        bl_join(r, NULL);
    bl_close(c);
    return NULL;
}

/* Run fn(conn on fd) on a fresh scheduler in this process. */
static int run(bl_func fn, int fd)
{
    bl_sched *s = bl_sched_new();
    bl_conn *c = bl_conn_new(fd);
    if (s == NULL || c == NULL || bl_spawn(s, fn, c) == NULL) {
        perror("bluelet");
        return -1;
    }
    int rc = bl_sched_run(s);
    if (rc < 0)
        perror("bl_sched_run");
    bl_sched_free(s);
    return rc;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: ipc\n"
                        "  A parent and a child process exchange framed "
                        "messages over a socket pair.\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    big_message = malloc(BIG_SIZE);
    if (big_message == NULL) {
        perror("malloc");
        return 1;
    }
    memset(big_message, 'x', BIG_SIZE);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("socketpair");
        return 1;
    }
    /* Fork before creating any scheduler: each process makes its own. */
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(sv[0]);
        free(big_message);
        if (run(child_main, sv[1]) < 0)
            exit(1);
        exit(child_status);
    }
    close(sv[1]);
    int rc = run(parent_main, sv[0]);
    free(big_message);

    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return 1;
        }
    }
    int child_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    printf("parent: child %s\n", child_ok ? "exited with status 0" : "failed");
    if (rc < 0 || parent_errors > 0 || !child_ok) {
        printf("FAILED\n");
        return 1;
    }
    printf("all done\n");
    return 0;
}
