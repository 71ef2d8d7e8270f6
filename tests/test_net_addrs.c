/* SPDX-License-Identifier: MIT */
/*
 * test_net_addrs.c - bl_connect() over a name with several addresses, and
 * what bl_resolve_error() says after calls that look nothing up.
 *
 * "two.test" resolves (getaddrinfo() is wrapped here) to 127.0.0.1, then
 * ::1, on the same port. The IPv4 port has a listener whose accept queue
 * is full, so the kernel drops the SYNs and connect(2) ends in ETIMEDOUT
 * of its own; socket() is wrapped to set TCP_SYNCNT to 1, so that this
 * takes about 3 s instead of 2 minutes. ::1 accepts. Without a deadline of
 * the caller's the second address must be tried; with one that has passed,
 * it must not.
 *
 * "bad.test" does not resolve (EAI_NONAME, without asking any server).
 */
#include "core_util.h"

#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>

typedef int gai_fn(const char *, const char *, const struct addrinfo *,
                   struct addrinfo **);

static int syn_once;  /* set TCP_SYNCNT 1 on new TCP sockets */

int socket(int domain, int type, int proto)
{
    int fd = (int)syscall(SYS_socket, domain, type, proto);
    if (fd >= 0 && syn_once && (domain == AF_INET || domain == AF_INET6) &&
        (type & 0xf) == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_SYNCNT, &one, sizeof one);
    }
    return fd;
}

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
    gai_fn *real = (gai_fn *)dlsym(RTLD_NEXT, "getaddrinfo");
    if (node != NULL && strcmp(node, "bad.test") == 0)
        return EAI_NONAME;
    if (node == NULL || strcmp(node, "two.test") != 0)
        return real(node, service, hints, res);
    if (hints != NULL && (hints->ai_flags & AI_NUMERICHOST))
        return EAI_NONAME;
    struct addrinfo h;
    memset(&h, 0, sizeof h);
    h.ai_socktype = SOCK_STREAM;
    h.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    struct addrinfo *a = NULL, *b = NULL;
    if (real("127.0.0.1", service, &h, &a) != 0)
        return EAI_FAIL;
    if (real("::1", service, &h, &b) != 0) {
        freeaddrinfo(a);
        return EAI_FAIL;
    }
    a->ai_next = b;   /* glibc's freeaddrinfo() frees node by node */
    *res = a;
    return 0;
}

static int port;

static void *connect_two(void *arg)
{
    (void)arg;
    double t0 = core_now();
    bl_conn *c = bl_connect("two.test", port);
    int e = errno;
    printf("bl_connect(two.test): %s after %.1f s\n",
           c != NULL ? "connected" : strerror(e), core_now() - t0);
    if (c == NULL)
        CORE_FAIL("the second address (::1, listening) was not tried: %s",
                  strerror(e));
    CHECK(bl_close(c) == 0);

    /* With the caller's deadline past, the second address is not tried. */
    t0 = core_now();
    c = bl_connect_timeout("two.test", port, 0.5);
    e = errno;
    double took = core_now() - t0;
    printf("bl_connect_timeout(two.test, 0.5): %s after %.1f s\n",
           c != NULL ? "connected" : strerror(e), took);
    CHECK(c == NULL);
    CHECK(e == ETIMEDOUT);
    CHECK(took < 2.5);
    return NULL;
}

static void *resolve_errors(void *arg)
{
    (void)arg;
    CHECK(bl_connect("bad.test", 80) == NULL);
    CHECK(errno == EADDRNOTAVAIL);
    CHECK(strstr(bl_resolve_error(), "bad.test") != NULL);
    /* A failure before any lookup: the message of the last call is gone. */
    CHECK_NULL_ERR(bl_connect("127.0.0.1", 0), EINVAL);
    CHECK(strcmp(bl_resolve_error(), "") == 0);

    CHECK(bl_connect("bad.test", 80) == NULL);
    CHECK(bl_resolve_error()[0] != '\0');
    bl_listener *l = bl_listen(NULL, 0, 0);   /* no name: nothing looked up */
    CHECK(l != NULL);
    CHECK(strcmp(bl_resolve_error(), "") == 0);
    CHECK(bl_listener_close(l) == 0);

    CHECK(bl_connect("bad.test", 80) == NULL);
    CHECK(bl_resolve_error()[0] != '\0');
    CHECK_NULL_ERR(bl_listen(NULL, 70000, 0), EINVAL);
    CHECK(strcmp(bl_resolve_error(), "") == 0);
    return NULL;
}

int main(void)
{
    core_run_green(resolve_errors, NULL);
    printf("ok: bl_resolve_error() is about the last call only\n");

    /* An IPv4 listener that never accepts, its queue filled. */
    int l4 = (int)syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
    CHECK(l4 >= 0);
    struct sockaddr_in a4;
    memset(&a4, 0, sizeof a4);
    a4.sin_family = AF_INET;
    a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(l4, (struct sockaddr *)&a4, sizeof a4) == 0);
    CHECK(listen(l4, 0) == 0);
    socklen_t sl = sizeof a4;
    CHECK(getsockname(l4, (struct sockaddr *)&a4, &sl) == 0);
    port = ntohs(a4.sin_port);
    int fill[8];
    for (int i = 0; i < 8; i++) {
        fill[i] = (int)syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        CHECK(fill[i] >= 0);
        (void)connect(fill[i], (struct sockaddr *)&a4, sizeof a4);
    }
    core_pause(0.2);
    bl_listener *l6 = bl_listen("::1", port, 0);
    if (l6 == NULL) {
        printf("note: no IPv6 loopback (%s): several addresses not checked\n",
               strerror(errno));
        return 0;
    }
    syn_once = 1;
    core_run_green(connect_two, NULL);
    CHECK(bl_listener_close(l6) == 0);
    for (int i = 0; i < 8; i++)
        close(fill[i]);
    close(l4);
    printf("ok: a kernel timeout moves on to the next address, the caller's "
           "does not\n");
    return 0;
}
