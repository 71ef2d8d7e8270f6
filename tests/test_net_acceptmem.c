/* SPDX-License-Identifier: MIT */
/*
 * test_net_acceptmem.c - bl_accept() when memory for the connection cannot
 * be had. bluelet.h: out of memory, bl_accept() "waits and retries with a
 * growing pause", as out of descriptors. The connection must stay queued
 * meanwhile: the library used to accept it first and, failing to allocate,
 * close it (the client read end of file) and return ENOMEM.
 *
 * The failure is simulated: this program defines aligned_alloc(), which the
 * library then calls for its connections, and fails it while `fail_left`
 * is positive (or always, with -1).
 */
#define _GNU_SOURCE
#include "netb_util.h"

#include <dlfcn.h>

static int fail_left;
static int failed;

void *aligned_alloc(size_t align, size_t size)
{
    static void *(*real)(size_t, size_t);
    if (real == NULL)
        real = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    int left = __atomic_load_n(&fail_left, __ATOMIC_ACQUIRE);
    if (left != 0) {
        if (left > 0)
            __atomic_sub_fetch(&fail_left, 1, __ATOMIC_ACQ_REL);
        __atomic_add_fetch(&failed, 1, __ATOMIC_RELEASE);
        errno = ENOMEM;
        return NULL;
    }
    return real(align, size);
}

/* A queued client gets served once memory returns, with its data. */
static void *retry_main(void *arg)
{
    (void)arg;
    bl_listener *l = bl_listen("127.0.0.1", 0, 8);
    CHECK(l != NULL);
    int peer = netb_raw_connect(bl_listener_port(l));
    CHECK(write(peer, "hi\n", 3) == 3);

    /* Always out of memory: the call times out, the connection stays. */
    CHECK(bl_listener_set_timeout(l, 0.1) == 0);
    fail_left = -1;
    failed = 0;
    errno = 0;
    CHECK(bl_accept(l) == NULL);
    int e = errno;
    fail_left = 0;
    CHECK_EQ_LL(e, ETIMEDOUT);
    CHECK(failed >= 2);     /* it retried, */
    CHECK(failed <= 10);    /* with pauses */

    /* Out of memory three times: the call retries and gets the client. */
    CHECK(bl_listener_set_timeout(l, 30) == 0);
    fail_left = 3;
    failed = 0;
    bl_conn *c = bl_accept(l);
    int e2 = errno;
    fail_left = 0;
    if (c == NULL)
        printf("bl_accept failed: %s\n", strerror(e2));
    CHECK(c != NULL);
    CHECK_EQ_LL(failed, 3);
    char buf[8];
    CHECK(bl_readline(c, buf, sizeof buf) == 3);
    CHECK(memcmp(buf, "hi\n", 3) == 0);
    CHECK(bl_sendall(c, "ok\n", 3) == 0);
    char got[3];
    CHECK(read(peer, got, 3) == 3);
    CHECK(memcmp(got, "ok\n", 3) == 0);
    CHECK(bl_close(c) == 0);
    close(peer);
    CHECK(bl_listener_close(l) == 0);
    return NULL;
}

int main(void)
{
    int fds0 = netb_begin();
    NETB_RUN(retry_main, NULL);
    printf("ok: out of memory, bl_accept leaves the connection queued, "
           "pauses and retries\n");
    netb_end(fds0);
    return 0;
}
