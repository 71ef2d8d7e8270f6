/* SPDX-License-Identifier: MIT */
/*
 * switch.h - the switching path, inlined by sched.c and net.c. Not installed.
 *
 * A thread that waits (bl_recv(), bl_join(), ...) parks and switches straight
 * to the next ready thread. Inlining all of it into the waiting call keeps
 * that call to one stack frame above the switch frame: with many threads,
 * every stack line a round trip touches is a cache miss, in user space and
 * for the kernel's own data that it evicts (see docs/performance.md).
 */
#ifndef BL_SWITCH_H
#define BL_SWITCH_H

#include "internal.h"

#ifdef BL_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef BL_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define BL_POLL_CHECK_MASK 63u  /* read the clock every 64 switches */

/* ---- ready queue ---- */

static inline void enqueue(bl_sched *s, bl_thread *t)
{
    t->next = NULL;
    t->state = BL_T_READY;
    if (s->ready_tail != NULL)
        s->ready_tail->next = t;
    else
        s->ready_head = t;
    s->ready_tail = t;
    s->nready++;
}

/* ---- switching ---- */

/* Sanitizers are told about every switch: SWITCH_OUT(s, save, to) right
 * before bl__switch() to thread `to` (NULL: the scheduler context), with
 * `save` where ASan keeps the fake stack of the context switched out (NULL
 * when that context ends); switched_in() right after, in the context that
 * was switched to. */
#ifdef BL_ASAN
#define ASAN_FAKE(p) (p)
#define ASAN_START(s, save, to) asan_start((s), (save), (to))
#else
#define ASAN_FAKE(p) NULL
#define ASAN_START(s, save, to) ((void)0)
#endif

#ifdef BL_TSAN
/* Each green thread is a TSan fiber (made by spawn_init()), so that TSan
 * keeps a call stack per thread; a switch orders what the thread switched
 * out did before what the next one does, as it does on one OS thread. */
#define TSAN_START(s, to)                                                    \
    __tsan_switch_to_fiber((to) != NULL ? (to)->tsan_fiber : (s)->tsan_main, 0)
#else
#define TSAN_START(s, to) ((void)0)
#endif

#define SWITCH_OUT(s, save, to)                                              \
    do {                                                                     \
        ASAN_START(s, save, to);                                             \
        TSAN_START(s, to);                                                   \
    } while (0)

#ifdef BL_ASAN
static inline void asan_start(bl_sched *s, void **fake, bl_thread *to)
{
    if (to != NULL)
        __sanitizer_start_switch_fiber(fake, to->stack->base,
                                       bl__stack_span(to->stack));
    else
        __sanitizer_start_switch_fiber(fake, s->main_stack_bottom,
                                       s->main_stack_size);
}
#endif

/* Run after every switch into a context. */
static inline void switched_in(bl_sched *s, void *fake)
{
    (void)s;
#ifdef BL_TSAN
    /* A thread that ended left its fiber here: a running fiber cannot be
     * destroyed, so the context it switched to does it, at once, and an
     * ended thread holds none of TSan's 8128 threads and fibers. */
    if (s->tsan_ended != NULL) {
        __tsan_destroy_fiber(s->tsan_ended);
        s->tsan_ended = NULL;
    }
#endif
#ifdef BL_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
    (void)fake;
#endif
}

/* A poll in the middle of a busy queue is due once BL_POLL_INTERVAL has
 * passed and the queue has had a full round since the last poll. The round
 * matters with many I/O-bound threads: each poll re-reports every socket
 * whose woken thread has not run yet (epoll is level-triggered), so polling
 * every 64 switches through a queue of 1000 such threads costs quadratic
 * kernel time, and what a poll wakes runs after the round anyway. Called
 * every 64 switches; out of line, so that its clock read takes no room in
 * the frames of the calls that switch. */
BL_HIDDEN int bl__poll_due(bl_sched *s);

#ifndef BL_PREFETCH_LINES
#define BL_PREFETCH_LINES 4
#endif

/* With many threads, the saved frames of the next ones are long out of the
 * caches (a blocked thread's stack was last touched a whole round of the
 * ready queue ago), and the first load from a stack after a switch would
 * stall on it: nothing else can run meanwhile. So fetch ahead, in two
 * stages: `after` runs after the thread being switched to, and its slot was
 * fetched one switch ago, so reading after->sp costs nothing and its frame
 * (the lines the switch and the returns through the frames above it load)
 * has a whole thread's run to arrive; the slot of the one after is fetched
 * for the next switch. A prefetch never faults, so a stale sp does no harm. */
static inline void prefetch_ahead(const bl_thread *after)
{
    const char *sp = after->sp;
    for (int i = 0; i < BL_PREFETCH_LINES; i++)
        __builtin_prefetch(sp + 64 * i);
    __builtin_prefetch(after->next);
}

/* The ready thread to switch to next, taken off the queue; NULL when it is
 * time for the scheduler loop (the queue is empty or a poll is due). */
static inline __attribute__((always_inline)) bl_thread *take_next(bl_sched *s)
{
    bl_thread *next = s->ready_head;
    if (BL_UNLIKELY(next == NULL) ||
        BL_UNLIKELY((++s->switches & BL_POLL_CHECK_MASK) == 0 && bl__poll_due(s)))
        return NULL;
    bl_thread *after = next->next;
    s->ready_head = after;
    if (after == NULL)
        s->ready_tail = NULL;
    else
        prefetch_ahead(after);
    s->nready--;
    next->state = BL_T_RUNNING;
    return next;
}

/* `self` has stopped running (it is queued or parked): run the next ready
 * thread, or the scheduler context. Returns when self runs again. */
static inline __attribute__((always_inline)) void
run_next(bl_sched *s, bl_thread *self, void **save)
{
    bl_thread *next = take_next(s);
    if (next == self)
        return;
    s->current = next;
    SWITCH_OUT(s, &self->asan_fake, next);
    bl__switch(save, next != NULL ? next->sp : s->main_sp);
    switched_in(s, ASAN_FAKE(self->asan_fake));
}

/* bl__park(), inlined where the timeout is a constant. */
static inline __attribute__((always_inline)) int
park(bl_sched *s, bl_thread *self, const char *what, double timeout)
{
    if (self->flags & BL_F_CANCELLED)
        return ECANCELED;
    if (timeout == 0)
        return ETIMEDOUT;
    self->state = BL_T_BLOCKED;
    self->waiting = what;
    self->wake_err = 0;
    if (timeout > 0) {
        /* libev's ev_now() is the time of the last poll; threads may have
         * run since, so refresh it to never wake early. */
        ev_now_update(s->loop);
        ev_timer_set(&self->timer, timeout, 0.);
        ev_timer_start(s->loop, &self->timer);
    }
    run_next(s, self, &self->sp);
    if (timeout > 0)
        ev_timer_stop(s->loop, &self->timer);
    self->waiting = NULL;
    /* Cancelled after something else woke us, before we ran: the call
     * fails all the same, as every blocking call of a cancelled thread. */
    if (BL_UNLIKELY(self->flags & BL_F_CANCELLED))
        return ECANCELED;
    return self->wake_err;
}

#endif /* BL_SWITCH_H */
