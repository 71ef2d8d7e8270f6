/* SPDX-License-Identifier: MIT */
/*
 * consumer.c - a program built against an installed libbluelet (by
 * tests/install/run.sh, once with pkg-config and once with find_package):
 * a loopback echo through bl_serve and a few green threads.
 */
#include <bluelet.h>

#include <stdio.h>
#include <string.h>

static void echoer(bl_conn *c, void *arg)
{
    char line[64];
    ssize_t n;
    (void)arg;
    while ((n = bl_readline(c, line, sizeof line)) > 0)
        if (bl_sendall(c, line, (size_t)n) < 0)
            break;
}

static int port;
static int echoed;

static void *client(void *arg)
{
    char out[32], in[64];
    int len = snprintf(out, sizeof out, "hello %d\n", (int)(long)arg);
    bl_conn *c = bl_connect("127.0.0.1", port);
    if (c == NULL)
        return NULL;
    if (bl_sendall(c, out, (size_t)len) == 0 &&
        bl_readline(c, in, sizeof in) == len && strcmp(in, out) == 0)
        echoed++;
    bl_close(c);
    return NULL;
}

static void *run(void *arg)
{
    bl_listener *l = bl_listen("127.0.0.1", 0, 16);
    if (l == NULL)
        return NULL;
    port = bl_listener_port(l);
    bl_thread *acceptor = bl_serve_listener(NULL, l, echoer, arg);
    bl_thread *cl[4];
    for (long i = 0; i < 4; i++)
        cl[i] = bl_spawn(NULL, client, (void *)i);
    for (int i = 0; i < 4; i++)
        bl_join(cl[i], NULL);
    bl_cancel(acceptor);
    bl_join(acceptor, NULL);
    return NULL;
}

int main(void)
{
    bl_sched *s = bl_sched_new();
    if (s == NULL || bl_spawn(s, run, NULL) == NULL || bl_sched_run(s) != 0) {
        perror("bluelet");
        return 1;
    }
    bl_sched_free(s);
    printf("consumer: libbluelet %s, %d of 4 echoed\n", bl_version(), echoed);
    return echoed == 4 ? 0 : 1;
}
