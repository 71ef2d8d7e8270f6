/* SPDX-License-Identifier: MIT */
/*
 * test_sync_chan.c - channels (bl_chan_*) between the green threads of one
 * scheduler:
 * - messages arrive in the order they were sent, buffered and unbuffered;
 *   waiting senders and receivers are served in the order they began to
 *   wait;
 * - timeouts (0 and positive) fail with ETIMEDOUT and send or take nothing;
 * - cancellation: ECANCELED before and while waiting, also for a send that
 *   would not have to wait; a hand-off that completed before the
 *   cancellation (or the timeout) came stands, and one that did not is not
 *   half done;
 * - closing: waiting senders fail with EPIPE, receivers drain the buffer,
 *   then get 0;
 * - EPERM, EINVAL, EALREADY, EBUSY;
 * - many producers and consumers with random timeouts and cancellations:
 *   every message sent is received exactly once, in each producer's order.
 */
#include "core_util.h"

#include <math.h>
#include <stdint.h>

/* ---- helpers ---- */

/* A green thread that receives one int from a channel (or sends one) and
 * records the result, errno and message. */
typedef struct op {
    bl_chan *ch;
    int value;              /* sent, or received */
    double timeout;         /* < 0: bl_chan_send/recv, else the _timeout call */
    int rc, err;
    int done;
    core_trace *trace;
    int id;
} op;

static void *recv_op(void *arg)
{
    op *o = arg;
    errno = 0;
    o->rc = o->timeout < 0 ? bl_chan_recv(o->ch, &o->value)
                           : bl_chan_recv_timeout(o->ch, &o->value, o->timeout);
    o->err = errno;
    o->done = 1;
    if (o->trace != NULL)
        core_trace_add(o->trace, "r%d:%d=%d", o->id, o->rc,
                       o->rc == 1 ? o->value : -o->err);
    return NULL;
}

static void *send_op(void *arg)
{
    op *o = arg;
    errno = 0;
    o->rc = o->timeout < 0 ? bl_chan_send(o->ch, &o->value)
                           : bl_chan_send_timeout(o->ch, &o->value, o->timeout);
    o->err = errno;
    o->done = 1;
    if (o->trace != NULL)
        core_trace_add(o->trace, "s%d:%d", o->id, o->rc == 0 ? 0 : -o->err);
    return NULL;
}

static int recv_int(bl_chan *ch)
{
    int v = -12345;
    CHECK(bl_chan_recv_timeout(ch, &v, 0) == 1);
    return v;
}

static void send_int(bl_chan *ch, int v)
{
    CHECK(bl_chan_send_timeout(ch, &v, 0) == 0);
}

/* ---- FIFO of messages, buffered ---- */

static void *t_buffered(void *arg)
{
    (void)arg;
    bl_chan *ch = bl_chan_new(sizeof(int), 4);
    CHECK(ch != NULL);
    CHECK_EQ_LL(bl_chan_len(ch), 0);
    /* Wrap around the ring a few times. */
    int next_send = 0, next_recv = 0;
    for (int round = 0; round < 12; round++) {
        int n = 1 + round % 3;
        size_t before = bl_chan_len(ch);
        for (int i = 0; i < n; i++)
            send_int(ch, next_send++);
        CHECK_EQ_LL(bl_chan_len(ch), before + (size_t)n);
        while (bl_chan_len(ch) > (size_t)(round % 2))
            CHECK_EQ_LL(recv_int(ch), next_recv++);
    }
    while (bl_chan_len(ch) > 0)
        CHECK_EQ_LL(recv_int(ch), next_recv++);
    CHECK_EQ_LL(next_recv, next_send);
    /* Full: a send with timeout 0 fails, sending nothing. */
    for (int i = 0; i < 4; i++)
        send_int(ch, 100 + i);
    int v = 999;
    CHECK_ERR(bl_chan_send_timeout(ch, &v, 0), ETIMEDOUT);
    CHECK_EQ_LL(bl_chan_len(ch), 4);
    /* A positive timeout: waits that long, then fails, sending nothing. */
    double t0 = core_now();
    CHECK_ERR(bl_chan_send_timeout(ch, &v, 0.03), ETIMEDOUT);
    CHECK(core_now() - t0 >= 0.029);
    CHECK_EQ_LL(bl_chan_len(ch), 4);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_LL(recv_int(ch), 100 + i);
    /* Empty: receives time out, taking nothing (v unchanged). */
    CHECK_ERR(bl_chan_recv_timeout(ch, &v, 0), ETIMEDOUT);
    t0 = core_now();
    CHECK_ERR(bl_chan_recv_timeout(ch, &v, 0.03), ETIMEDOUT);
    CHECK(core_now() - t0 >= 0.029);
    CHECK_EQ_LL(v, 999);
    /* Infinite and negative timeouts mean none: with a message there, they
     * return it. */
    send_int(ch, 7);
    CHECK(bl_chan_recv_timeout(ch, &v, INFINITY) == 1 && v == 7);
    send_int(ch, 8);
    CHECK(bl_chan_recv_timeout(ch, &v, -1) == 1 && v == 8);
    CHECK(bl_chan_send_timeout(ch, &v, INFINITY) == 0);
    CHECK(bl_chan_send_timeout(ch, &v, -5) == 0);
    CHECK_EQ_LL(bl_chan_len(ch), 2);
    CHECK(bl_chan_free(ch) == 0);   /* with messages buffered: fine */

    /* Big messages are copied whole. */
    char big[1000], got[1000];
    bl_chan *bc = bl_chan_new(sizeof big, 2);
    CHECK(bc != NULL);
    for (int k = 0; k < 5; k++) {
        for (size_t i = 0; i < sizeof big; i++)
            big[i] = (char)(i * 7 + (size_t)k);
        CHECK(bl_chan_send(bc, big) == 0);
        memset(big, 0, sizeof big);
        CHECK(bl_chan_recv(bc, got) == 1);
        for (size_t i = 0; i < sizeof big; i++)
            CHECK(got[i] == (char)(i * 7 + (size_t)k));
    }
    CHECK(bl_chan_free(bc) == 0);
    return NULL;
}

/* ---- unbuffered: a send waits for a receiver ---- */

static void *t_unbuffered(void *arg)
{
    (void)arg;
    core_trace tr = {0};
    bl_chan *ch = bl_chan_new(sizeof(int), 0);
    CHECK(ch != NULL);
    int v = 5;
    /* Nobody receives: timeout 0 fails at once, a positive one later. */
    CHECK_ERR(bl_chan_send_timeout(ch, &v, 0), ETIMEDOUT);
    CHECK_ERR(bl_chan_send_timeout(ch, &v, 0.01), ETIMEDOUT);
    CHECK_ERR(bl_chan_recv_timeout(ch, &v, 0), ETIMEDOUT);
    CHECK_EQ_LL(bl_chan_len(ch), 0);

    /* A sender waits until the receiver has the message. */
    op s = {.ch = ch, .value = 42, .timeout = -1, .trace = &tr, .id = 1};
    bl_thread *ts = bl_spawn(NULL, send_op, &s);
    CHECK(ts != NULL);
    CHECK(bl_yield() == 0);
    CHECK(!s.done);
    CHECK(bl_yield() == 0);
    CHECK(!s.done);
    CHECK_EQ_LL(bl_chan_len(ch), 0);
    core_trace_add(&tr, "recv");
    CHECK_EQ_LL(recv_int(ch), 42);   /* timeout 0: a sender is there */
    CHECK(bl_join(ts, NULL) == 0);
    CHECK(s.rc == 0);

    /* A receiver waits; a send with timeout 0 hands over to it. */
    op r = {.ch = ch, .timeout = -1, .trace = &tr, .id = 2};
    bl_thread *trr = bl_spawn(NULL, recv_op, &r);
    CHECK(trr != NULL);
    CHECK(bl_yield() == 0);
    CHECK(!r.done);
    core_trace_add(&tr, "send");
    send_int(ch, 43);
    core_trace_add(&tr, "sent");
    CHECK(bl_join(trr, NULL) == 0);
    core_trace_expect(&tr, "recv s1:0 send sent r2:1=43");
    CHECK(bl_chan_free(ch) == 0);
    return NULL;
}

/* ---- FIFO of waiters ---- */

#define NW 6

static void *t_fifo_waiters(void *arg)
{
    (void)arg;
    core_trace tr = {0};
    op ops[NW];
    bl_thread *ts[NW];

    /* Receivers waiting on an empty buffered channel get the messages in
     * the order they began to wait; a receiver that timed out meanwhile
     * gets none. */
    bl_chan *ch = bl_chan_new(sizeof(int), 2);
    CHECK(ch != NULL);
    for (int i = 0; i < NW; i++) {
        ops[i] = (op){.ch = ch, .timeout = i == 2 ? 0.01 : -1, .trace = &tr,
                      .id = i};
        CHECK((ts[i] = bl_spawn(NULL, recv_op, &ops[i])) != NULL);
    }
    CHECK(bl_yield() == 0);
    CHECK(bl_sleep(0.05) == 0);      /* #2 times out */
    for (int i = 0; i < NW - 1; i++)
        send_int(ch, 10 + i);
    for (int i = 0; i < NW; i++)
        CHECK(bl_join(ts[i], NULL) == 0);
    core_trace_expect(&tr, "r2:-1=-110 r0:1=10 r1:1=11 r3:1=12 r4:1=13 "
                           "r5:1=14");
    CHECK_EQ_LL(bl_chan_len(ch), 0);

    /* Senders waiting on a full channel: the buffered messages first, then
     * theirs in the order they began to wait. */
    tr.len = 0;
    tr.buf[0] = '\0';
    send_int(ch, 100);
    send_int(ch, 101);
    for (int i = 0; i < NW; i++) {
        ops[i] = (op){.ch = ch, .value = 200 + i, .timeout = -1,
                      .trace = &tr, .id = i};
        CHECK((ts[i] = bl_spawn(NULL, send_op, &ops[i])) != NULL);
    }
    CHECK(bl_yield() == 0);
    for (int i = 0; i < NW; i++)
        CHECK(!ops[i].done);
    CHECK_EQ_LL(bl_chan_len(ch), 2);
    int want[] = {100, 101, 200, 201, 202, 203, 204, 205};
    for (int i = 0; i < 8; i++) {
        CHECK_EQ_LL(recv_int(ch), want[i]);
        /* The buffer is refilled from the first waiting sender at once. */
        CHECK_EQ_LL(bl_chan_len(ch), i < 6 ? 2 : 7 - i);
    }
    for (int i = 0; i < NW; i++)
        CHECK(bl_join(ts[i], NULL) == 0);
    core_trace_expect(&tr, "s0:0 s1:0 s2:0 s3:0 s4:0 s5:0");
    CHECK(bl_chan_free(ch) == 0);

    /* Unbuffered senders, one of them cancelled while waiting. */
    tr.len = 0;
    tr.buf[0] = '\0';
    ch = bl_chan_new(sizeof(int), 0);
    CHECK(ch != NULL);
    for (int i = 0; i < NW; i++) {
        ops[i] = (op){.ch = ch, .value = 300 + i, .timeout = -1,
                      .trace = &tr, .id = i};
        CHECK((ts[i] = bl_spawn(NULL, send_op, &ops[i])) != NULL);
    }
    CHECK(bl_yield() == 0);
    CHECK(bl_cancel(ts[1]) == 0);
    for (int i = 0; i < NW - 1; i++)
        CHECK_EQ_LL(recv_int(ch), i == 0 ? 300 : 301 + i);
    CHECK_ERR(bl_chan_recv_timeout(ch, &(int){0}, 0), ETIMEDOUT);
    for (int i = 0; i < NW; i++)
        CHECK(bl_join(ts[i], NULL) == 0);
    /* The cancellation made s1 ready before the receives made s0 ready. */
    core_trace_expect(&tr, "s1:-125 s0:0 s2:0 s3:0 s4:0 s5:0");
    CHECK(bl_chan_free(ch) == 0);
    return NULL;
}

/* ---- close ---- */

static void *t_close(void *arg)
{
    (void)arg;
    core_trace tr = {0};
    op ops[4];
    bl_thread *ts[4];

    /* Buffered and full, two senders waiting. */
    bl_chan *ch = bl_chan_new(sizeof(int), 2);
    CHECK(ch != NULL);
    send_int(ch, 1);
    send_int(ch, 2);
    for (int i = 0; i < 2; i++) {
        ops[i] = (op){.ch = ch, .value = 50 + i, .timeout = -1, .trace = &tr,
                      .id = i};
        CHECK((ts[i] = bl_spawn(NULL, send_op, &ops[i])) != NULL);
    }
    CHECK(bl_yield() == 0);
    CHECK(bl_chan_close(ch) == 0);
    CHECK_ERR(bl_chan_close(ch), EALREADY);
    for (int i = 0; i < 2; i++)
        CHECK(bl_join(ts[i], NULL) == 0);
    core_trace_expect(&tr, "s0:-32 s1:-32");
    int v = 3;
    CHECK_ERR(bl_chan_send(ch, &v), EPIPE);
    CHECK_ERR(bl_chan_send_timeout(ch, &v, 0), EPIPE);
    CHECK_EQ_LL(bl_chan_len(ch), 2);
    /* Receivers drain what was buffered, then get 0 (also with timeout
     * 0), as often as they ask. */
    CHECK(bl_chan_recv(ch, &v) == 1 && v == 1);
    CHECK(bl_chan_recv_timeout(ch, &v, 0) == 1 && v == 2);
    v = 77;
    CHECK(bl_chan_recv(ch, &v) == 0);
    CHECK(bl_chan_recv_timeout(ch, &v, 0) == 0);
    CHECK(bl_chan_recv_timeout(ch, &v, 1) == 0);
    CHECK_EQ_LL(v, 77);
    CHECK(bl_chan_free(ch) == 0);

    /* Receivers waiting on an empty channel get 0. */
    tr.len = 0;
    tr.buf[0] = '\0';
    ch = bl_chan_new(sizeof(int), 0);
    CHECK(ch != NULL);
    for (int i = 0; i < 3; i++) {
        ops[i] = (op){.ch = ch, .value = -1, .timeout = i == 1 ? 5 : -1,
                      .trace = &tr, .id = i};
        CHECK((ts[i] = bl_spawn(NULL, recv_op, &ops[i])) != NULL);
    }
    CHECK(bl_yield() == 0);
    double t0 = core_now();
    CHECK(bl_chan_close(ch) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(bl_join(ts[i], NULL) == 0);
    CHECK(core_now() - t0 < 2);
    core_trace_expect(&tr, "r0:0=0 r1:0=0 r2:0=0");
    for (int i = 0; i < 3; i++)
        CHECK(ops[i].value == -1);
    CHECK_ERR(bl_chan_send(ch, &v), EPIPE);
    CHECK(bl_chan_free(ch) == 0);

    /* Closing an empty channel nobody waits on. */
    ch = bl_chan_new(1, 1);
    CHECK(ch != NULL);
    CHECK(bl_chan_close(ch) == 0);
    CHECK(bl_chan_recv(ch, &v) == 0);
    CHECK(bl_chan_free(ch) == 0);
    return NULL;
}

/* ---- cancellation and its races with hand-offs ---- */

static void *cancel_self_then(void *arg)
{
    op *o = arg;
    CHECK(bl_cancel(bl_self()) == 0);
    errno = 0;
    o->rc = bl_chan_send(o->ch, &o->value);
    o->err = errno;
    return NULL;
}

static void *recv_then_flag(void *arg)
{
    op *o = arg;
    errno = 0;
    o->rc = bl_chan_recv(o->ch, &o->value);
    o->err = errno;
    /* The hand-off came first, the cancellation shows now. */
    o->done = bl_cancelled();
    CHECK_ERR(bl_yield(), ECANCELED);
    return NULL;
}

static void *send_then_flag(void *arg)
{
    op *o = arg;
    errno = 0;
    o->rc = bl_chan_send(o->ch, &o->value);
    o->err = errno;
    o->done = bl_cancelled();
    return NULL;
}

static void *sleep_send(void *arg)
{
    op *o = arg;
    CHECK(bl_sleep(0.005) == 0);
    errno = 0;
    o->rc = bl_chan_send_timeout(o->ch, &o->value, 0);
    o->err = errno;
    return NULL;
}

static void *t_cancel(void *arg)
{
    (void)arg;
    bl_chan *ch = bl_chan_new(sizeof(int), 1);
    CHECK(ch != NULL);

    /* Cancelled before: a send fails although there is room, and sends
     * nothing; a receive fails although a message is there. */
    op a = {.ch = ch, .value = 9};
    bl_thread *t = bl_spawn(NULL, cancel_self_then, &a);
    CHECK(t != NULL);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(a.rc == -1 && a.err == ECANCELED);
    CHECK_EQ_LL(bl_chan_len(ch), 0);
    send_int(ch, 4);
    op r = {.ch = ch, .timeout = 0};
    t = bl_spawn(NULL, recv_op, &r);
    CHECK(t != NULL);
    CHECK(bl_cancel(t) == 0);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(r.rc == -1 && r.err == ECANCELED);
    CHECK_EQ_LL(bl_chan_len(ch), 1);
    CHECK_EQ_LL(recv_int(ch), 4);

    /* Cancelled while waiting: ECANCELED, nothing taken; the next message
     * goes to the buffer. */
    r = (op){.ch = ch, .timeout = -1};
    t = bl_spawn(NULL, recv_op, &r);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);
    CHECK(bl_cancel(t) == 0);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(r.rc == -1 && r.err == ECANCELED);
    send_int(ch, 5);
    CHECK_EQ_LL(bl_chan_len(ch), 1);
    CHECK_EQ_LL(recv_int(ch), 5);

    /* Cancelled while woken but before it ran: the wait's record is still
     * queued; a send must not hand the message to it. */
    r = (op){.ch = ch, .timeout = -1};
    t = bl_spawn(NULL, recv_op, &r);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);
    CHECK(bl_cancel(t) == 0);
    send_int(ch, 6);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(r.rc == -1 && r.err == ECANCELED);
    CHECK_EQ_LL(bl_chan_len(ch), 1);
    CHECK_EQ_LL(recv_int(ch), 6);

    /* The hand-off first, the cancellation before the receiver ran: it has
     * the message (the sender succeeded: losing it is not an option). */
    r = (op){.ch = ch, .value = -1};
    t = bl_spawn(NULL, recv_then_flag, &r);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);
    send_int(ch, 7);
    CHECK(bl_cancel(t) == 0);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(r.rc == 1 && r.value == 7 && r.done == 1);
    CHECK_EQ_LL(bl_chan_len(ch), 0);

    /* The same for a sender waiting on a full channel, whose message a
     * receive moved into the buffer. */
    send_int(ch, 8);
    op s = {.ch = ch, .value = 9};
    t = bl_spawn(NULL, send_then_flag, &s);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);
    CHECK_EQ_LL(recv_int(ch), 8);
    CHECK(bl_cancel(t) == 0);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(s.rc == 0 && s.done == 1);
    CHECK_EQ_LL(recv_int(ch), 9);
    CHECK(bl_chan_free(ch) == 0);

    /* Unbuffered: the receiver took the message directly. */
    ch = bl_chan_new(sizeof(int), 0);
    CHECK(ch != NULL);
    s = (op){.ch = ch, .value = 10};
    t = bl_spawn(NULL, send_then_flag, &s);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);
    CHECK_EQ_LL(recv_int(ch), 10);
    CHECK(bl_cancel(t) == 0);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(s.rc == 0 && s.done == 1);

    /* A timeout passes first: the receiver is woken by it but has not run
     * when another thread sends. It fails with ETIMEDOUT and the message
     * is not handed to it: on an unbuffered channel, the sender finds
     * nobody. */
    r = (op){.ch = ch, .timeout = 0.02, .value = -1};
    s = (op){.ch = ch, .value = 11};
    bl_thread *tr = bl_spawn(NULL, recv_op, &r);
    bl_thread *tsnd = bl_spawn(NULL, sleep_send, &s);
    CHECK(tr != NULL && tsnd != NULL);
    CHECK(bl_yield() == 0);
    /* Both deadlines pass while we hold the OS thread; the poll that
     * follows wakes the sender (earlier deadline), then the receiver. */
    double t0 = core_now();
    while (core_now() - t0 < 0.05)
        ;
    CHECK(bl_join(tsnd, NULL) == 0);
    CHECK(bl_join(tr, NULL) == 0);
    CHECK(r.rc == -1 && r.err == ETIMEDOUT && r.value == -1);
    CHECK(s.rc == -1 && s.err == ETIMEDOUT);
    CHECK(bl_chan_free(ch) == 0);

    /* Buffered: the message stays in the buffer. */
    ch = bl_chan_new(sizeof(int), 3);
    CHECK(ch != NULL);
    r = (op){.ch = ch, .timeout = 0.02, .value = -1};
    s = (op){.ch = ch, .value = 12};
    tr = bl_spawn(NULL, recv_op, &r);
    tsnd = bl_spawn(NULL, sleep_send, &s);
    CHECK(tr != NULL && tsnd != NULL);
    CHECK(bl_yield() == 0);
    t0 = core_now();
    while (core_now() - t0 < 0.05)
        ;
    CHECK(bl_join(tsnd, NULL) == 0);
    CHECK(bl_join(tr, NULL) == 0);
    CHECK(r.rc == -1 && r.err == ETIMEDOUT && r.value == -1);
    CHECK(s.rc == 0);
    CHECK_EQ_LL(bl_chan_len(ch), 1);
    CHECK_EQ_LL(recv_int(ch), 12);
    CHECK(bl_chan_free(ch) == 0);
    return NULL;
}

/* ---- errors ---- */

static void *t_errors(void *arg)
{
    bl_chan *ch = arg;
    int v = 0;
    CHECK_ERR(bl_chan_send(NULL, &v), EINVAL);
    CHECK_ERR(bl_chan_send(ch, NULL), EINVAL);
    CHECK_ERR(bl_chan_recv(NULL, &v), EINVAL);
    CHECK_ERR(bl_chan_recv(ch, NULL), EINVAL);
    CHECK_ERR(bl_chan_send_timeout(ch, &v, NAN), EINVAL);
    CHECK_ERR(bl_chan_recv_timeout(ch, &v, NAN), EINVAL);
    CHECK_ERR(bl_chan_close(NULL), EINVAL);
    CHECK_EQ_LL(bl_chan_len(ch), 1);

    /* EBUSY while a thread waits; the channel is left as it was. */
    bl_chan *e = bl_chan_new(sizeof(int), 0);
    CHECK(e != NULL);
    op r = {.ch = e, .timeout = -1};
    bl_thread *t = bl_spawn(NULL, recv_op, &r);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);
    CHECK_ERR(bl_chan_free(e), EBUSY);
    send_int(e, 3);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(r.rc == 1 && r.value == 3);
    /* A waiter cancelled (or timed out) but not yet run no longer waits:
     * the channel may be freed, and the thread does not touch it again. */
    t = bl_spawn(NULL, recv_op, &r);
    CHECK(t != NULL);
    CHECK(bl_yield() == 0);
    CHECK_ERR(bl_chan_free(e), EBUSY);
    CHECK(bl_cancel(t) == 0);
    CHECK(bl_chan_free(e) == 0);
    CHECK(bl_join(t, NULL) == 0);
    CHECK(r.rc == -1 && r.err == ECANCELED);
    return NULL;
}

static void test_errors(void)
{
    CHECK_NULL_ERR(bl_chan_new(0, 1), EINVAL);
    CHECK_NULL_ERR(bl_chan_new(0, 0), EINVAL);
    CHECK_NULL_ERR(bl_chan_new(SIZE_MAX / 2, 3), EINVAL);
    CHECK_NULL_ERR(bl_chan_new(2, SIZE_MAX / 2 + 1), EINVAL);
    CHECK_NULL_ERR(bl_chan_new(1, SIZE_MAX - 8), ENOMEM);
    CHECK_EQ_LL(bl_chan_len(NULL), 0);
    CHECK(bl_chan_free(NULL) == 0);

    /* Outside green threads: blocking calls fail with EPERM (even when
     * they would not have to wait), the others work. */
    bl_chan *ch = bl_chan_new(sizeof(int), 2);
    CHECK(ch != NULL);
    int v = 1;
    CHECK_ERR(bl_chan_send(ch, &v), EPERM);
    CHECK_ERR(bl_chan_send_timeout(ch, &v, 0), EPERM);
    CHECK_ERR(bl_chan_recv(ch, &v), EPERM);
    CHECK_ERR(bl_chan_recv_timeout(ch, &v, 0), EPERM);
    CHECK_ERR(bl_chan_send(NULL, &v), EPERM);
    CHECK_EQ_LL(bl_chan_len(ch), 0);

    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    /* Fill it from a green thread, check from outside. */
    op fill = {.ch = ch, .value = 1, .timeout = -1};
    CHECK(bl_spawn(s, send_op, &fill) != NULL);
    CHECK(bl_sched_run(s) == 0);
    CHECK_EQ_LL(bl_chan_len(ch), 1);
    CHECK(bl_spawn(s, t_errors, ch) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
    CHECK(bl_chan_close(ch) == 0);
    CHECK_ERR(bl_chan_close(ch), EALREADY);
    CHECK(bl_chan_free(ch) == 0);
}

/* ---- many producers and consumers, random timeouts and cancellations ---- */

#define NPROD 8
#define NCONS 8

typedef struct stress {
    bl_chan *ch;
    int per_producer;
    unsigned seed;
    /* per producer: values 0..sent-1 were sent (each one once) */
    int sent[NPROD];
    /* received, per producer value: counts (must end at exactly 1 for
     * 0..sent-1, 0 beyond) */
    unsigned char *got;
    int last[NCONS][NPROD];     /* per consumer: last value seen of each */
    long long sum_sent, sum_got;
    long n_got;
    int producers_left;
    bl_thread *workers[NPROD + NCONS];
    int cancels;
    int timeouts;
} stress;

typedef struct worker {
    stress *st;
    int id;
    unsigned seed;
} worker;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

/* A random timeout: none, 0, or up to 2 ms. */
static double rnd_timeout(unsigned *seed)
{
    unsigned r = rnd(seed) % 8;
    if (r < 3)
        return -1;
    if (r < 4)
        return 0;
    return (double)(rnd(seed) % 2000) * 1e-6;
}

static void *producer(void *arg)
{
    worker *w = arg;
    stress *st = w->st;
    int i = 0;
    while (i < st->per_producer) {
        int msg = w->id * st->per_producer + i;
        errno = 0;
        int rc = bl_chan_send_timeout(st->ch, &msg, rnd_timeout(&w->seed));
        if (rc == 0) {
            st->sum_sent += msg;
            st->sent[w->id] = ++i;
        } else if (errno == ETIMEDOUT) {
            st->timeouts++;
            if (rnd(&w->seed) % 4 == 0)
                CHECK(bl_sleep(0.0002) == 0 || errno == ECANCELED);
        } else {
            CHECK(errno == ECANCELED);
            break;
        }
        if (rnd(&w->seed) % 16 == 0 && bl_yield() != 0)
            break;
    }
    if (--st->producers_left == 0)
        CHECK(bl_chan_close(st->ch) == 0);
    return NULL;
}

static void take(stress *st, int consumer, int msg)
{
    CHECK(msg >= 0 && msg < NPROD * st->per_producer);
    int p = msg / st->per_producer, i = msg % st->per_producer;
    CHECK(st->got[msg] == 0);
    st->got[msg] = 1;
    /* Each consumer sees each producer's messages in order. */
    CHECK(i > st->last[consumer][p]);
    st->last[consumer][p] = i;
    st->sum_got += msg;
    st->n_got++;
}

static void *consumer(void *arg)
{
    worker *w = arg;
    stress *st = w->st;
    for (;;) {
        int msg = -1;
        errno = 0;
        int rc = bl_chan_recv_timeout(st->ch, &msg, rnd_timeout(&w->seed));
        if (rc == 1) {
            take(st, w->id, msg);
        } else if (rc == 0) {
            break;
        } else if (errno == ETIMEDOUT) {
            CHECK(msg == -1);
            st->timeouts++;
        } else {
            CHECK(errno == ECANCELED);
            CHECK(msg == -1);
            break;
        }
        if (rnd(&w->seed) % 8 == 0 && bl_yield() != 0)
            break;
    }
    return NULL;
}

/* Cancels a few random workers at random moments. */
static void *killer(void *arg)
{
    worker *w = arg;
    stress *st = w->st;
    for (int k = 0; k < 6; k++) {
        if (bl_sleep((double)(rnd(&w->seed) % 3000) * 1e-6) != 0)
            break;
        int victim = (int)(rnd(&w->seed) % (NPROD + NCONS));
        /* Keep one consumer alive to drain the channel. */
        if (victim == NPROD)
            continue;
        bl_cancel(st->workers[victim]);
        st->cancels++;
    }
    return NULL;
}

static void *drain(void *arg)
{
    stress *st = arg;
    int msg;
    int rc;
    while ((rc = bl_chan_recv(st->ch, &msg)) == 1)
        take(st, NCONS - 1, msg);
    CHECK(rc == 0);
    return NULL;
}

static void stress_run(size_t cap, int per_producer, unsigned seed)
{
    static stress st;
    memset(&st, 0, sizeof st);
    st.ch = bl_chan_new(sizeof(int), cap);
    CHECK(st.ch != NULL);
    st.per_producer = per_producer;
    st.got = calloc((size_t)(NPROD * per_producer), 1);
    CHECK(st.got != NULL);
    for (int c = 0; c < NCONS; c++)
        for (int p = 0; p < NPROD; p++)
            st.last[c][p] = -1;
    st.producers_left = NPROD;
    worker w[NPROD + NCONS + 1];
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    for (int i = 0; i < NPROD + NCONS; i++) {
        int prod = i < NPROD;
        w[i] = (worker){.st = &st, .id = prod ? i : i - NPROD,
                        .seed = seed * 977u + (unsigned)i};
        bl_spawn_opts o = {.size = sizeof o, .stack_size = 64 * 1024};
        st.workers[i] = bl_spawn_ex(s, prod ? producer : consumer, &w[i], &o);
        CHECK(st.workers[i] != NULL);
    }
    w[NPROD + NCONS] = (worker){.st = &st, .seed = seed};
    bl_thread *k = bl_spawn(s, killer, &w[NPROD + NCONS]);
    CHECK(k != NULL);
    CHECK(bl_sched_run(s) == 0);
    /* Every producer has ended, so the channel is closed (the last one
     * closed it). Consumers may all have been cancelled: drain what is
     * buffered. */
    CHECK(st.producers_left == 0);
    CHECK(bl_spawn(s, drain, &st) != NULL);
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
    long n_sent = 0;
    for (int p = 0; p < NPROD; p++) {
        n_sent += st.sent[p];
        for (int i = 0; i < per_producer; i++)
            CHECK_EQ_LL(st.got[p * per_producer + i], i < st.sent[p]);
    }
    CHECK_EQ_LL(st.n_got, n_sent);
    CHECK_EQ_LL(st.sum_got, st.sum_sent);
    CHECK_EQ_LL(bl_chan_len(st.ch), 0);
    CHECK(bl_chan_free(st.ch) == 0);
    free(st.got);
}

static void test_stress(void)
{
    int per = CORE_SLOW ? 300 : 2000;
    int rounds = CORE_SLOW ? 3 : 8;
    for (int r = 0; r < rounds; r++) {
        stress_run(0, per, (unsigned)r + 1);
        stress_run(1, per, (unsigned)r + 101);
        stress_run(5, per, (unsigned)r + 201);
    }
}

/* Without timeouts nor cancellations: all of it arrives, nothing waits
 * forever. */
static void *plain_producer(void *arg)
{
    worker *w = arg;
    stress *st = w->st;
    for (int i = 0; i < st->per_producer; i++) {
        int msg = w->id * st->per_producer + i;
        CHECK(bl_chan_send(st->ch, &msg) == 0);
        st->sum_sent += msg;
        st->sent[w->id] = i + 1;
    }
    if (--st->producers_left == 0)
        CHECK(bl_chan_close(st->ch) == 0);
    return NULL;
}

static void *plain_consumer(void *arg)
{
    worker *w = arg;
    stress *st = w->st;
    int msg, rc;
    while ((rc = bl_chan_recv(st->ch, &msg)) == 1)
        take(st, w->id, msg);
    CHECK(rc == 0);
    return NULL;
}

static void test_plain(size_t cap)
{
    static stress st;
    memset(&st, 0, sizeof st);
    int per = CORE_SLOW ? 2000 : 20000;
    st.ch = bl_chan_new(sizeof(int), cap);
    CHECK(st.ch != NULL);
    st.per_producer = per;
    st.got = calloc((size_t)(NPROD * per), 1);
    CHECK(st.got != NULL);
    for (int c = 0; c < NCONS; c++)
        for (int p = 0; p < NPROD; p++)
            st.last[c][p] = -1;
    st.producers_left = NPROD;
    worker w[NPROD + NCONS];
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    for (int i = 0; i < NPROD + NCONS; i++) {
        int prod = i < NPROD;
        w[i] = (worker){.st = &st, .id = prod ? i : i - NPROD};
        CHECK(bl_spawn(s, prod ? plain_producer : plain_consumer, &w[i]) !=
              NULL);
    }
    CHECK(bl_sched_run(s) == 0);
    bl_sched_free(s);
    CHECK_EQ_LL(st.n_got, (long)NPROD * per);
    CHECK_EQ_LL(st.sum_got, st.sum_sent);
    for (int i = 0; i < NPROD * per; i++)
        CHECK(st.got[i] == 1);
    CHECK(bl_chan_free(st.ch) == 0);
    free(st.got);
}

int main(void)
{
    core_run_green(t_buffered, NULL);
    core_run_green(t_unbuffered, NULL);
    core_run_green(t_fifo_waiters, NULL);
    core_run_green(t_close, NULL);
    core_run_green(t_cancel, NULL);
    test_errors();
    test_plain(0);
    test_plain(1);
    test_plain(64);
    test_stress();
    printf("ok\n");
    return 0;
}
