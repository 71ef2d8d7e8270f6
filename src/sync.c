/* SPDX-License-Identifier: MIT */
/*
 * sync.c - channels, conditions and wait groups between the green threads of
 * one scheduler.
 *
 * Nothing here is locked: the green threads of a scheduler take turns on one
 * OS thread, so each operation runs from start to end with no other
 * operation in between. A thread that has to wait puts a waiter record, on
 * its own stack, at the tail of one of the object's queues and parks.
 * Whoever completes its operation (a send for a waiting receiver, a receive
 * for a waiting sender, a close, a signal, the last bl_wg_done()) does all
 * of it at once: copies the message, takes the record off the queue, stores
 * the outcome in it (W_DONE) and wakes the thread, which then only reads
 * that outcome. So every operation happens entirely or not at all, messages
 * are never copied twice nor dropped, and waiters are served in the order
 * they began to wait.
 *
 * Timeouts and cancellations wake a parked thread without us (its timer
 * calls bl__wake(), bl_cancel() too): its record stays queued until the
 * thread runs again and takes it off itself. Meanwhile the thread is ready,
 * no longer parked, and a wake-up would be lost on it (bl__wake() ignores a
 * thread that is not parked). So a completer that finds such a record at
 * the head of a queue drops it (W_GONE) and serves the next: the woken
 * thread's operation did not happen, and its call fails with ETIMEDOUT or
 * ECANCELED. Conversely, once a completer has done a thread's operation, a
 * timeout that passes or a cancellation that comes before the thread runs
 * again changes nothing: the outcome recorded is what the call returns,
 * success included (park() then reports ECANCELED; it is ignored). The
 * message was delivered to the receiver, or taken from the sender and is on
 * its way: failing the call now would lose it, or make the sender send it
 * twice. The cancellation shows in the thread's next blocking call, as for
 * bl_join() of a thread that ended before the cancellation.
 *
 * An object with waiters is tied (bl__tie) to their scheduler, until the
 * last of them leaves. Its waiters may be woken only from that scheduler's
 * OS thread, and only while that scheduler is the one running there (each
 * scheduler has its own ready queue) or none is: a call that would have to
 * wait, or to touch a waiter, fails with EXDEV otherwise. (On a channel
 * tied to another scheduler a send or a receive always would, given the
 * invariants of struct bl_chan.)
 * Calls that touch no waiter (bl_wg_add() that leaves the counter above 0,
 * bl_chan_len()) are not refused. When the scheduler is freed, the tie's
 * untie forgets the waiters left (none, unless a thread did not end when
 * cancelled: its stack, the record with it, is gone).
 */
#include "switch.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- waiters ---- */

enum {
    W_QUEUED,       /* in a queue, waiting */
    W_DONE,         /* done by a completer: the call returns `result` */
    W_GONE          /* dropped: woken by a timeout or a cancellation first */
};

typedef struct waiter waiter;
struct waiter {
    waiter *next, *prev;
    bl_thread *t;
    void *msg;      /* a channel's sender: its message; receiver: where the
                     * message goes */
    int state;      /* W_* */
    int result;     /* W_DONE: what the call returns, or -errno */
};

typedef struct wqueue {
    waiter *head, *tail;
} wqueue;

/* What channels, conditions and wait groups have in common: queues of
 * waiters (a channel's senders and receivers; the others use q[0]) and the
 * tie to the scheduler of those waiters. */
typedef struct waitable {
    wqueue q[2];
    bl_sched *sched;    /* the waiters' scheduler; NULL while none waits */
    bl__tie tie;        /* in sched's list while sched is not NULL */
} waitable;

/* The scheduler of o's waiters is being freed (bl_sched_free()). Threads
 * that ended took their records off the queues; what is left belongs to
 * threads that did not end when cancelled, whose stacks are unmapped by
 * now: forget those records without reading them. */
static void waitable_untie(bl__tie *t)
{
    waitable *o = (waitable *)((char *)t - offsetof(waitable, tie));
    o->q[0].head = o->q[0].tail = NULL;
    o->q[1].head = o->q[1].tail = NULL;
    o->sched = NULL;
    bl__tie_del(t);
}

/* Whether the caller must leave o's waiters alone (EXDEV): they belong to
 * another scheduler than the one running in this OS thread or, where none
 * runs, to a scheduler running in another OS thread. */
static inline int foreign_waiters(const waitable *o)
{
    bl_sched *s = o->sched;
    return BL_UNLIKELY(s != NULL) && s != bl__cur &&
           (bl__cur != NULL || bl__foreign(s));
}

static inline void waiter_link(waitable *o, wqueue *q, waiter *w,
                               bl_sched *s)
{
    if (o->sched == NULL) {
        o->sched = s;
        bl__tie_add(s, &o->tie, waitable_untie);
    }
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail != NULL)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
}

/* Take w off q; untie o when it was the last waiter. */
static inline void waiter_unlink(waitable *o, wqueue *q, waiter *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    if (o->q[0].head == NULL && o->q[1].head == NULL) {
        bl__tie_del(&o->tie);
        o->sched = NULL;
    }
}

/* The waiter of q that has waited longest and is still parked, taken off
 * q; NULL when there is none. Records of threads that a timeout or a
 * cancellation has woken are dropped on the way (see the top comment). The
 * caller has checked foreign_waiters(). */
static inline waiter *waiter_take(waitable *o, wqueue *q)
{
    waiter *w;
    while ((w = q->head) != NULL) {
        waiter_unlink(o, q, w);
        if (BL_LIKELY(w->t->state == BL_T_BLOCKED))
            return w;
        w->state = W_GONE;
    }
    return NULL;
}

/* w's operation is done (its message copied, if any): it returns result. */
static inline void waiter_done(waiter *w, int result)
{
    w->state = W_DONE;
    w->result = result;
    bl__wake(w->t, 0);
}

/* Queue the caller's record w (msg set) on q and park, at most `timeout`
 * seconds (< 0: none; not 0). Returns what the call returns: the outcome a
 * completer recorded, or -ETIMEDOUT or -ECANCELED. Nothing else wakes a
 * thread parked here with 0, so a thread whose record is still queued or
 * was dropped got one of those two errors. */
static inline __attribute__((always_inline)) int
waiter_wait(waitable *o, wqueue *q, waiter *w, bl_thread *self,
            const char *what, double timeout)
{
    bl_sched *s = self->sched;
    w->t = self;
    w->state = W_QUEUED;
    waiter_link(o, q, w, s);
    int err = park(s, self, what, timeout);
    if (w->state == W_DONE)
        return w->result;       /* whatever came after: see the top */
    if (w->state == W_QUEUED)
        waiter_unlink(o, q, w);
    return -err;
}

/* Whether threads wait on o (bl_*_free(): EBUSY). Records of threads that a
 * timeout or a cancellation has woken, and that have not run since, are
 * dropped first, as waiter_take() would: those threads no longer wait, and
 * their calls fail. */
static int waitable_busy(waitable *o)
{
    if (o->sched == NULL)
        return 0;
    if (foreign_waiters(o))
        return 1;
    for (int i = 0; i < 2; i++) {
        waiter *w = o->q[i].head;
        while (w != NULL) {
            waiter *next = w->next;
            if (w->t->state != BL_T_BLOCKED) {
                waiter_unlink(o, &o->q[i], w);
                w->state = W_GONE;
            }
            w = next;
        }
    }
    return o->sched != NULL;
}

/* A blocking call's timeout: < 0 or infinite is none (-1). */
static inline double timeout_norm(double timeout)
{
    return timeout < 0 || isinf(timeout) ? -1 : timeout;
}

/* Return r (>= 0), or -1 with errno -r. */
static inline int ret(int r)
{
    if (BL_UNLIKELY(r < 0)) {
        errno = -r;
        return -1;
    }
    return r;
}

/* Free the object whose waitable (its first member, so its address) is o,
 * unless threads wait on it (EBUSY). NULL: nothing. */
static int waitable_free(waitable *o)
{
    if (o == NULL)
        return 0;
    if (waitable_busy(o))
        return ret(-EBUSY);
    free(o);
    return 0;
}

/* ---- channels ---- */

#define SENDERS 0
#define RECEIVERS 1

/* Senders wait only while the buffer is full (unbuffered: always), and
 * receivers only while it is empty; a waiting thread is served before the
 * buffer is used. So while senders are queued the buffer is full, and while
 * receivers are, it is empty. A closed channel has no waiters. */
struct bl_chan {
    waitable w;             /* q[SENDERS], q[RECEIVERS] */
    size_t elem_size;
    size_t cap;
    size_t head;            /* the oldest buffered message: buf[head] */
    size_t count;           /* messages buffered, from head on (wrapping) */
    int closed;
    unsigned char buf[];    /* cap * elem_size bytes */
};

bl_chan *bl_chan_new(size_t elem_size, size_t capacity)
{
    size_t bytes;
    if (elem_size == 0 ||
        __builtin_mul_overflow(elem_size, capacity, &bytes)) {
        errno = EINVAL;
        return NULL;
    }
    if (bytes > SIZE_MAX - sizeof(bl_chan)) {
        errno = ENOMEM;
        return NULL;
    }
    bl_chan *ch = malloc(sizeof *ch + bytes);
    if (ch == NULL)
        return NULL;
    memset(ch, 0, sizeof *ch);
    ch->elem_size = elem_size;
    ch->cap = capacity;
    return ch;
}

/* The checks every channel call starts with, in the order the errors are
 * reported: EPERM outside green threads, EINVAL, ECANCELED. Returns 0 and
 * sets *self, or -errno. */
static inline __attribute__((always_inline)) int
chan_enter(bl_chan *ch, const void *elem, double timeout, bl_thread **self)
{
    if ((*self = bl__self_or_eperm()) == NULL)
        return -EPERM;
    if (BL_UNLIKELY(ch == NULL || elem == NULL || isnan(timeout)))
        return -EINVAL;
    if (BL_UNLIKELY((*self)->flags & BL_F_CANCELLED))
        return -ECANCELED;
    return 0;
}

static inline __attribute__((always_inline)) int
chan_send(bl_chan *ch, const void *elem, double timeout)
{
    bl_thread *self;
    int e = chan_enter(ch, elem, timeout, &self);
    if (BL_UNLIKELY(e != 0))
        return ret(e);
    if (BL_UNLIKELY(ch->closed))
        return ret(-EPIPE);
    if (foreign_waiters(&ch->w))
        return ret(-EXDEV);
    waiter *w = waiter_take(&ch->w, &ch->w.q[RECEIVERS]);
    if (w != NULL) {
        memcpy(w->msg, elem, ch->elem_size);
        waiter_done(w, 1);
        return 0;
    }
    if (ch->count < ch->cap) {
        size_t i = ch->head + ch->count;
        if (i >= ch->cap)
            i -= ch->cap;
        memcpy(ch->buf + i * ch->elem_size, elem, ch->elem_size);
        ch->count++;
        return 0;
    }
    if (timeout == 0)
        return ret(-ETIMEDOUT);
    waiter me;
    me.msg = (void *)(uintptr_t)elem;
    return ret(waiter_wait(&ch->w, &ch->w.q[SENDERS], &me, self,
                           "bl_chan_send", timeout_norm(timeout)));
}

int bl_chan_send(bl_chan *ch, const void *elem)
{
    return chan_send(ch, elem, -1);
}

int bl_chan_send_timeout(bl_chan *ch, const void *elem, double timeout)
{
    return chan_send(ch, elem, timeout);
}

static inline __attribute__((always_inline)) int
chan_recv(bl_chan *ch, void *elem, double timeout)
{
    bl_thread *self;
    int e = chan_enter(ch, elem, timeout, &self);
    if (BL_UNLIKELY(e != 0))
        return ret(e);
    if (foreign_waiters(&ch->w))
        return ret(-EXDEV);
    waiter *w;
    if (ch->count > 0) {
        unsigned char *p = ch->buf + ch->head * ch->elem_size;
        memcpy(elem, p, ch->elem_size);
        /* A queued sender means the buffer was full: its message goes to
         * the tail, which is the slot just emptied. */
        w = waiter_take(&ch->w, &ch->w.q[SENDERS]);
        if (w != NULL) {
            memcpy(p, w->msg, ch->elem_size);
            waiter_done(w, 0);
        } else {
            ch->count--;
        }
        if (++ch->head == ch->cap)
            ch->head = 0;
        return 1;
    }
    w = waiter_take(&ch->w, &ch->w.q[SENDERS]);    /* unbuffered */
    if (w != NULL) {
        memcpy(elem, w->msg, ch->elem_size);
        waiter_done(w, 0);
        return 1;
    }
    if (ch->closed)
        return 0;
    if (timeout == 0)
        return ret(-ETIMEDOUT);
    waiter me;
    me.msg = elem;
    return ret(waiter_wait(&ch->w, &ch->w.q[RECEIVERS], &me, self,
                           "bl_chan_recv", timeout_norm(timeout)));
}

int bl_chan_recv(bl_chan *ch, void *elem)
{
    return chan_recv(ch, elem, -1);
}

int bl_chan_recv_timeout(bl_chan *ch, void *elem, double timeout)
{
    return chan_recv(ch, elem, timeout);
}

int bl_chan_close(bl_chan *ch)
{
    if (ch == NULL)
        return ret(-EINVAL);
    if (ch->closed)
        return ret(-EALREADY);
    if (foreign_waiters(&ch->w))
        return ret(-EXDEV);
    ch->closed = 1;
    /* The buffer was full, or the channel is unbuffered: the messages of
     * the waiting senders are not sent. Waiting receivers saw it empty. */
    waiter *w;
    while ((w = waiter_take(&ch->w, &ch->w.q[SENDERS])) != NULL)
        waiter_done(w, -EPIPE);
    while ((w = waiter_take(&ch->w, &ch->w.q[RECEIVERS])) != NULL)
        waiter_done(w, 0);
    return 0;
}

size_t bl_chan_len(const bl_chan *ch)
{
    return ch != NULL ? ch->count : 0;
}

int bl_chan_free(bl_chan *ch)
{
    return waitable_free(ch != NULL ? &ch->w : NULL);
}

/* Wait on o's queue until woken (bl_cond_wait(), bl_wg_wait()); o NULL is
 * EINVAL. `done`: there is nothing to wait for (the call returns 0). */
static int wait_on(waitable *o, int done, double timeout, const char *what)
{
    bl_thread *self = bl__self_or_eperm();
    if (self == NULL)
        return -1;
    if (o == NULL || isnan(timeout))
        return ret(-EINVAL);
    if (self->flags & BL_F_CANCELLED)
        return ret(-ECANCELED);
    if (done)
        return 0;
    if (foreign_waiters(o))
        return ret(-EXDEV);
    if (timeout == 0)
        return ret(-ETIMEDOUT);
    waiter me;
    me.msg = NULL;
    return ret(waiter_wait(o, &o->q[0], &me, self, what,
                           timeout_norm(timeout)));
}

/* ---- conditions ---- */

struct bl_cond {
    waitable w;             /* q[0]: the waiters */
};

bl_cond *bl_cond_new(void)
{
    return calloc(1, sizeof(bl_cond));
}

int bl_cond_wait(bl_cond *c)
{
    return bl_cond_wait_timeout(c, -1);
}

int bl_cond_wait_timeout(bl_cond *c, double timeout)
{
    return wait_on(c != NULL ? &c->w : NULL, 0, timeout, "bl_cond_wait");
}

/* Wake up to `max` waiters of c; the number woken, or -1. */
static int cond_wake(bl_cond *c, int max)
{
    if (c == NULL)
        return ret(-EINVAL);
    if (foreign_waiters(&c->w))
        return ret(-EXDEV);
    int n = 0;
    waiter *w;
    while (n < max && (w = waiter_take(&c->w, &c->w.q[0])) != NULL) {
        waiter_done(w, 0);
        n++;
    }
    return n;
}

int bl_cond_signal(bl_cond *c)
{
    return cond_wake(c, 1);
}

int bl_cond_broadcast(bl_cond *c)
{
    return cond_wake(c, INT_MAX);
}

int bl_cond_free(bl_cond *c)
{
    return waitable_free(c != NULL ? &c->w : NULL);
}

/* ---- wait groups ---- */

/* Threads wait only while the counter is above 0. */
struct bl_wg {
    waitable w;             /* q[0]: the waiters */
    long count;
};

bl_wg *bl_wg_new(void)
{
    return calloc(1, sizeof(bl_wg));
}

int bl_wg_add(bl_wg *wg, long delta)
{
    long n;
    if (wg == NULL || __builtin_add_overflow(wg->count, delta, &n) || n < 0)
        return ret(-EINVAL);
    if (n == 0 && wg->w.q[0].head != NULL) {
        if (foreign_waiters(&wg->w))
            return ret(-EXDEV);
        wg->count = 0;
        waiter *w;
        while ((w = waiter_take(&wg->w, &wg->w.q[0])) != NULL)
            waiter_done(w, 0);
        return 0;
    }
    wg->count = n;
    return 0;
}

int bl_wg_done(bl_wg *wg)
{
    return bl_wg_add(wg, -1);
}

int bl_wg_wait(bl_wg *wg)
{
    return bl_wg_wait_timeout(wg, -1);
}

int bl_wg_wait_timeout(bl_wg *wg, double timeout)
{
    return wait_on(wg != NULL ? &wg->w : NULL, wg != NULL && wg->count == 0,
                   timeout, "bl_wg_wait");
}

int bl_wg_free(bl_wg *wg)
{
    return waitable_free(wg != NULL ? &wg->w : NULL);
}
