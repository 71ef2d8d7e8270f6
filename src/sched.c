/* SPDX-License-Identifier: MIT */
/*
 * sched.c - the scheduler and green threads.
 *
 * One bl_sched per OS thread at a time. Its ready queue is an intrusive FIFO
 * of bl_thread. A thread that stops running (yield, park, end) switches
 * straight to the next ready thread; only when none is ready, or when it is
 * time to poll, does control go back to the scheduler's own context in
 * bl_sched_run(), which runs one libev iteration (blocking when nothing is
 * ready) and resumes the first ready thread.
 *
 * While threads keep each other busy, I/O and timers are still polled: every
 * 64 switches the clock is read, and the loop runs (without blocking) when
 * more than BL_POLL_INTERVAL has passed since it last ran.
 *
 * Thread handles point into slot chunks that live as long as the scheduler;
 * freed slots go to the back of a FIFO, so a stale handle (a second join, a
 * join of a detached thread that ended) finds a freed slot and fails with
 * EINVAL instead of touching unmapped memory, until the slot is reused: then
 * the handle names the new thread (handles carry no generation; the header
 * says a stale handle must not be used).
 */
#define _GNU_SOURCE
#include "switch.h"

#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#ifdef BL_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef BL_VALGRIND
#include <valgrind/valgrind.h>
#endif

#define BL_POLL_INTERVAL 0.0005 /* seconds between polls while busy */

__thread bl_sched *bl__cur __attribute__((tls_model("initial-exec")));

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- ready queue ---- */

static inline bl_thread *dequeue(bl_sched *s)
{
    bl_thread *t = s->ready_head;
    if (t != NULL) {
        s->ready_head = t->next;
        if (s->ready_head == NULL)
            s->ready_tail = NULL;
        s->nready--;
    }
    return t;
}

/* Make a parked thread ready (bl__wake()). */
static inline void wake(bl_sched *s, bl_thread *t, int err)
{
    if (t->state != BL_T_BLOCKED)
        return;
    t->wake_err = err;
    /* Start the TLB walk for its stack page now: the wakes of one poll run
     * back to back, so their misses overlap (see prefetch_ahead()). */
    __builtin_prefetch(t->sp);
    enqueue(s, t);
}

/* ---- switching ---- */

/* Unmap the stacks of ended threads that the cache did not take. Runs on the
 * scheduler's own stack. */
static void free_dead_stacks(bl_sched *s)
{
    while (s->dead_stacks != NULL) {
        bl__stack *st = s->dead_stacks;
        s->dead_stacks = st->next_free;
        bl__stack copy = *st;
        bl__stack_unmap(&copy);
    }
}

int bl__poll_due(bl_sched *s)
{
    return s->switches >= s->round &&
           mono_now() - s->last_poll >= BL_POLL_INTERVAL;
}

/* Make the next run_next() go through the scheduler loop (a poll). */
static inline void force_poll(bl_sched *s)
{
    s->switches = BL_POLL_CHECK_MASK;
    s->round = 0;
    s->last_poll = -1e300;
}

/* ---- callbacks ---- */

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    bl__wake(w->data, ETIMEDOUT);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    bl_thread *t = w->data;
    /* bl_wait_fd() reads the events from here. */
    t->io_revents = revents;
    bl__wake(t, 0);
}


/* libev calls this before each poll of s's loop (in bl_sched_run(), on its
 * OS thread), which may block. Watchers pending then were queued by libev
 * itself while it passed its descriptor changes to epoll: an epoll_ctl
 * failed (ENOSPC at fs.epoll.max_user_watches) and libev stopped the
 * descriptor's watchers with EV_ERROR (or a watcher of the user's got an
 * ev_feed_event). libev calls them only after the poll, which would block
 * until some other event, however late; poke our wake-up descriptor so that
 * the poll returns at once. The loop's userdata is the application's, so
 * the scheduler is taken from the thread. */
static void loop_release(struct ev_loop *loop)
{
    if (BL_UNLIKELY(ev_pending_count(loop) != 0)) {
        bl_sched *s = bl__cur;
        if (s != NULL && s->loop == loop)
            bl__sched_wake(s);
    }
}

/* ---- thread slots ---- */

/* Add a chunk of free slots; 0, or -1 when out of memory. */
static __attribute__((noinline)) int slots_grow(bl_sched *s)
{
    if (s->nchunks == s->chunks_cap) {
        size_t cap = s->chunks_cap ? s->chunks_cap * 2 : 16;
        bl_thread **c = realloc(s->chunks, cap * sizeof *c);
        if (c == NULL)
            return -1;
        s->chunks = c;
        s->chunks_cap = cap;
    }
    /* Aligned: a slot's first cache line holds its hot fields. */
    bl_thread *chunk = aligned_alloc(_Alignof(bl_thread),
                                     BL_SLOTS_PER_CHUNK * sizeof *chunk);
    if (chunk == NULL)
        return -1;
    memset(chunk, 0, BL_SLOTS_PER_CHUNK * sizeof *chunk);
    s->chunks[s->nchunks++] = chunk;
    /* What never changes for a slot is set once, here. */
    for (int i = 0; i < BL_SLOTS_PER_CHUNK; i++) {
        bl_thread *t = &chunk[i];
        t->magic = BL_THREAD_MAGIC;
        t->sched = s;
        t->next = i + 1 < BL_SLOTS_PER_CHUNK ? &chunk[i + 1] : NULL;
        ev_timer_init(&t->timer, timer_cb, 0., 0.);
        t->timer.data = t;
        ev_io_init(&t->io, io_cb, 0, 0);
        t->io.data = t;
    }
    s->free_head = chunk;
    s->free_tail = &chunk[BL_SLOTS_PER_CHUNK - 1];
    return 0;
}

static inline bl_thread *slot_alloc(bl_sched *s)
{
    if (BL_UNLIKELY(s->free_head == NULL) && slots_grow(s) < 0)
        return NULL;
    bl_thread *t = s->free_head;
    s->free_head = t->next;
    if (s->free_head == NULL)
        s->free_tail = NULL;
    return t;
}

static inline void slot_free(bl_sched *s, bl_thread *t)
{
    t->state = BL_T_FREE;
    t->next = NULL;
    t->joiner = NULL;
    if (s->free_tail != NULL)
        s->free_tail->next = t;
    else
        s->free_head = t;
    s->free_tail = t;
}

/* Live threads (spawned and not yet ended) are the slots in use that are
 * not BL_T_DONE; found by walking the chunks, which only deadlock reports
 * and bl_sched_free() do, so that spawning and ending keep no list. */
static inline int live(const bl_thread *t)
{
    return t->state != BL_T_FREE && t->state != BL_T_DONE;
}

static int valid(const bl_thread *t)
{
    return t != NULL && t->magic == BL_THREAD_MAGIC && t->state != BL_T_FREE;
}

/* ---- schedulers ---- */

const char *bl_version(void)
{
    return BL_VERSION_STRING;
}

/* ---- wake-ups from other OS threads ----
 *
 * Pool threads wake a scheduler through a descriptor of its own (an
 * eventfd) watched by an ordinary ev_io, not through an ev_async. libev
 * hands a descriptor to epoll at the loop's next iteration, and again
 * whenever it rebuilds its epoll set (after ev_loop_fork(), or to recover
 * from a stale descriptor); should the kernel refuse it then (ENOSPC at
 * fs.epoll.max_user_watches, ENOMEM), libev stops the watcher. For its
 * internal ev_async watcher it does so silently, leaving the loop's count of
 * active watchers one short: bl_sched_run() then took a sleeping thread for
 * a deadlock, and wake-ups from the pool were lost. Our own watcher gets
 * EV_ERROR instead, so the scheduler rebalances the count and retries
 * (wake_retry, paced like bl__watch_retry()), draining the pool's finished
 * jobs at each retry meanwhile.
 *
 * wake_pending spares repeated writes: set by the first waker, cleared by
 * the loop after it has read the descriptor and before it drains the jobs,
 * so that a job finished after the drain began writes again. */

static void posts_take(bl_sched *s);
static void stop_take(bl_sched *s);
static void post_retry_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* A green thread to spawn, posted from another OS thread. */
struct bl__post {
    struct bl__post *next;
    bl_func fn;
    void *arg;
};

/* Whether bl_sched_hold() keeps s running (not while it is being freed). */
static int held(const bl_sched *s)
{
    return !s->stopping && __atomic_load_n(&s->holds, __ATOMIC_ACQUIRE) > 0;
}

/* Holds change in other OS threads; s's loop counts them as one active
 * watcher (ev_ref) while there are any, updated at each pass of
 * bl_sched_run(): the last release wakes s for that. */
static void hold_sync(bl_sched *s)
{
    int want = held(s);
    if (want == s->hold_ref)
        return;
    s->hold_ref = want;
    if (want)
        ev_ref(s->loop);
    else
        ev_unref(s->loop);
}

/* What a wake-up may be for: finished pool jobs, posts. The load of posts
 * is sequentially consistent, as are the poster's push and its exchange on
 * wake_pending, and wake_cb()'s clearing of it: so a poster that found a
 * wake-up pending (and wrote none) pushed before this load. */
static void wake_drain(bl_sched *s)
{
    /* A stop first: the threads this poll woke run cancelled. */
    if (BL_UNLIKELY(__atomic_load_n(&s->stop_req, __ATOMIC_SEQ_CST)))
        stop_take(s);
    bl__pool_drain(s);
    if (__atomic_load_n(&s->posts, __ATOMIC_SEQ_CST) != NULL)
        posts_take(s);
}

void bl__sched_wake(bl_sched *s)
{
    if (__atomic_exchange_n(&s->wake_pending, 1, __ATOMIC_SEQ_CST))
        return;
    int e = errno;
    uint64_t one = 1;
    size_t n = s->wake_fd[0] == s->wake_fd[1] ? sizeof one : 1;
    /* EAGAIN (a full pipe): a wake-up is readable already. */
    while (write(s->wake_fd[1], &one, n) < 0 && errno == EINTR)
        ;
    errno = e;
}

static void wake_read(bl_sched *s)
{
    char buf[64];
    size_t n = s->wake_fd[0] == s->wake_fd[1] ? sizeof(uint64_t) : sizeof buf;
    while (read(s->wake_fd[0], buf, n) > 0 && n == sizeof buf)
        ;
}

static void wake_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    bl_sched *s = w->data;
    if (ev_is_active(&s->wake_io)) {
        /* Watched again since the last retry, and not refused. */
        ev_ref(loop);
        ev_timer_stop(loop, w);
    } else {
        /* ev_io_set() makes libev hand the descriptor to epoll again: after
         * a refusal in this same iteration (its EV_ERROR still pending)
         * libev takes it for registered, and would not. */
        ev_io_set(&s->wake_io, s->wake_fd[0], EV_READ);
        ev_io_start(loop, &s->wake_io);
        ev_unref(loop);
    }
    wake_drain(s);
}

/* While pool jobs are under way (and only then, so that an idle pool does
 * not keep bl_sched_run() from returning): should the kernel refuse the
 * wake-up descriptor just before a poll, nothing would end that poll until
 * some unrelated event or timer (libev blocks up to a minute), and the
 * EV_ERROR that starts the retries would wait as long. So the jobs' results
 * are also looked for every BL_WATCH_RETRY_MAX seconds. */
static void wake_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    wake_drain(w->data);
}

static void wake_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bl_sched *s = w->data;
    if (BL_UNLIKELY(revents & EV_ERROR)) {
        /* libev stopped w, without the ev_ref() that balances our
         * ev_unref(); retry after a pause, doubled while refusals go on. */
        ev_ref(loop);
        if (!ev_is_active(&s->wake_retry)) {
            s->wake_backoff = BL_WATCH_RETRY;
            ev_timer_set(&s->wake_retry, s->wake_backoff, s->wake_backoff);
            ev_timer_start(loop, &s->wake_retry);
            ev_unref(loop);
        } else {
            s->wake_backoff = fmin(2 * s->wake_backoff, BL_WATCH_RETRY_MAX);
            s->wake_retry.repeat = s->wake_backoff;
            ev_timer_again(loop, &s->wake_retry);
        }
    } else {
        wake_read(s);
        __atomic_store_n(&s->wake_pending, 0, __ATOMIC_SEQ_CST);
    }
    wake_drain(s);
}

/* Open s->wake_fd: an eventfd, or a pipe where there is none. 0, or -1. */
static int wake_open(bl_sched *s)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd >= 0) {
        s->wake_fd[0] = s->wake_fd[1] = fd;
        return 0;
    }
    if (errno != ENOSYS && errno != EINVAL)
        return -1;
    return pipe2(s->wake_fd, O_NONBLOCK | O_CLOEXEC);
}

static void wake_close(bl_sched *s)
{
    close(s->wake_fd[0]);
    if (s->wake_fd[1] != s->wake_fd[0])
        close(s->wake_fd[1]);
}

/* Stop the wake-up watchers (unreferenced while active). */
static void wake_stop(bl_sched *s)
{
    if (ev_is_active(&s->wake_io)) {
        ev_ref(s->loop);
        ev_io_stop(s->loop, &s->wake_io);
    }
    if (ev_is_active(&s->wake_retry)) {
        ev_ref(s->loop);
        ev_timer_stop(s->loop, &s->wake_retry);
    }
}

bl_sched *bl_sched_new(void)
{
    bl_sched *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    errno = 0;
    s->loop = ev_loop_new(EVFLAG_AUTO);
    if (s->loop == NULL) {
        if (errno == 0)
            errno = ENOMEM;
        free(s);
        return NULL;
    }
    if (wake_open(s) < 0) {
        int e = errno;
        ev_loop_destroy(s->loop);
        free(s);
        errno = e;
        return NULL;
    }
    s->stack_size = BL_DEFAULT_STACK_SIZE;
    s->stacks.size = s->stack_size;
    ev_io_init(&s->wake_io, wake_cb, s->wake_fd[0], EV_READ);
    s->wake_io.data = s;
    ev_init(&s->wake_retry, wake_retry_cb);
    s->wake_retry.data = s;
    ev_init(&s->wake_poll, wake_poll_cb);
    s->wake_poll.data = s;
    ev_init(&s->post_retry, post_retry_cb);
    s->post_retry.data = s;
    ev_io_start(s->loop, &s->wake_io);
    ev_unref(s->loop); /* only pool jobs under way keep the loop alive */
    /* Register the descriptor now, on a loop with nothing else in it: a
     * scheduler that cannot be woken is better not made at all. The
     * kernel's errno is not passed on by libev; ENOSPC is what it says at
     * the limit. */
    ev_run(s->loop, EVRUN_NOWAIT);
    if (!ev_is_active(&s->wake_io)) {
        wake_stop(s);
        wake_close(s);
        ev_loop_destroy(s->loop);
        free(s);
        errno = ENOSPC;
        return NULL;
    }
    ev_set_loop_release_cb(s->loop, loop_release, NULL);
    bl__overflow_handler_install();
    return s;
}

bl_sched *bl_sched_current(void)
{
    return bl__cur;
}

int bl_sched_set_stack_size(bl_sched *s, size_t size)
{
    if (s == NULL || size < BL_MIN_STACK_SIZE || size > ((size_t)1 << 40)) {
        errno = EINVAL;
        return -1;
    }
    size_t ps = bl__page_size();
    size = (size + ps - 1) / ps * ps;
    if (size != s->stack_size) {
        bl__stack_cache_clear(&s->stacks);
        s->stack_size = size;
        s->stacks.size = size;
    }
    return 0;
}

size_t bl_sched_stack_size(const bl_sched *s)
{
    if (s == NULL) {
        errno = EINVAL;
        return 0;
    }
    return s->stack_size;
}

size_t bl_sched_nthreads(const bl_sched *s)
{
    return s != NULL ? s->nlive : 0;
}

struct ev_loop *bl_sched_loop(bl_sched *s)
{
    if (s == NULL) {
        errno = EINVAL;
        return NULL;
    }
    return s->loop;
}

void bl__sched_wake_ref(bl_sched *s, int delta)
{
    int before = s->wake_refs;
    s->wake_refs += delta;
    if (before == 0 && s->wake_refs > 0) {
        /* Active, the timer also keeps the loop alive for the jobs. */
        ev_timer_set(&s->wake_poll, BL_WATCH_RETRY_MAX, BL_WATCH_RETRY_MAX);
        ev_timer_start(s->loop, &s->wake_poll);
    } else if (before > 0 && s->wake_refs == 0) {
        ev_timer_stop(s->loop, &s->wake_poll);
    }
}

void bl__report_deadlock(bl_sched *s)
{
    fprintf(stderr, "bluelet: deadlock: %zu green thread%s blocked with "
                    "nothing left to wake %s:\n",
            s->nlive, s->nlive == 1 ? "" : "s", s->nlive == 1 ? "it" : "them");
    for (size_t c = 0; c < s->nchunks; c++) {
        for (int i = 0; i < BL_SLOTS_PER_CHUNK; i++) {
            const bl_thread *t = &s->chunks[c][i];
            if (live(t))
                fprintf(stderr, "bluelet:   #%llu%s%s%s in %s\n", t->id,
                        t->name[0] ? " \"" : "", t->name,
                        t->name[0] ? "\"" : "",
                        t->waiting != NULL ? t->waiting : "?");
        }
    }
}

#ifdef BL_ASAN
static void main_stack_bounds(bl_sched *s)
{
    pthread_attr_t attr;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &addr, &size);
        pthread_attr_destroy(&attr);
    }
    s->main_stack_bottom = addr;
    s->main_stack_size = size;
}
#endif

/* Cancel every live thread of s, and make those spawned from now on start
 * cancelled, until the run ends (s's thread, outside green threads). */
static void cancel_every(bl_sched *s)
{
    s->stopping = 1;
    for (size_t c = 0; c < s->nchunks; c++)
        for (int i = 0; i < BL_SLOTS_PER_CHUNK; i++)
            if (live(&s->chunks[c][i]))
                bl_cancel(&s->chunks[c][i]);
}

/* Act on bl_sched_stop() calls, from the loop of bl_sched_run(). */
static void stop_take(bl_sched *s)
{
    __atomic_store_n(&s->stop_req, 0, __ATOMIC_SEQ_CST);
    if (!s->stopping)
        cancel_every(s);
}

int bl_sched_run(bl_sched *s)
{
    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (s->running || bl__cur != NULL) {
        errno = EBUSY;
        return -1;
    }
    __atomic_store_n(&s->running, 1, __ATOMIC_RELEASE);
    bl__cur = s;
    void *alt = bl__altstack_push();
#ifdef BL_ASAN
    main_stack_bounds(s);
#endif
#ifdef BL_TSAN
    s->tsan_main = __tsan_get_current_fiber();
#endif
    int rc = 0;
    for (;;) {
        /* A stop first: holds are then ignored, and the posts taken below
         * start cancelled. */
        if (BL_UNLIKELY(__atomic_load_n(&s->stop_req, __ATOMIC_SEQ_CST)))
            stop_take(s);
        /* Holds next: a post made before the last release is then seen
         * by the load of posts after it. */
        hold_sync(s);
        if (__atomic_load_n(&s->posts, __ATOMIC_ACQUIRE) != NULL)
            posts_take(s);
        if (s->nlive == 0 && !s->hold_ref && s->post_head == NULL)
            break;
        if (s->ready_head == NULL && s->requeue == NULL) {
            /* ev_run() returns 0 when no active (referenced) watcher is
             * left; it does not block then. If that iteration woke nobody,
             * nothing ever will (unless a hold came meanwhile: see it at
             * the top). */
            if (!ev_run(s->loop, EVRUN_ONCE) && s->ready_head == NULL &&
                !held(s) &&
                __atomic_load_n(&s->posts, __ATOMIC_ACQUIRE) == NULL &&
                !__atomic_load_n(&s->stop_req, __ATOMIC_SEQ_CST)) {
                bl__report_deadlock(s);
                rc = EDEADLK;
                break;
            }
        } else {
            ev_run(s->loop, EVRUN_NOWAIT);
        }
        if (s->requeue != NULL) {
            enqueue(s, s->requeue);
            s->requeue = NULL;
        }
        free_dead_stacks(s);
        s->switches = 0;
        s->round = s->nready;
        s->last_poll = mono_now();
        bl_thread *next = dequeue(s);
        if (next == NULL)
            continue;
        next->state = BL_T_RUNNING;
        s->current = next;
        SWITCH_OUT(s, &s->main_fake, next);
        bl__switch(&s->main_sp, next->sp);
        switched_in(s, ASAN_FAKE(s->main_fake));
    }
    /* Threads that ended since the last pass may have left stacks here. */
    free_dead_stacks(s);
    s->current = NULL;
    /* Stops made during a stopped run end with it. */
    if (s->stopping)
        __atomic_store_n(&s->stop_req, 0, __ATOMIC_SEQ_CST);
    s->stopping = 0;            /* the stop, if any, is done */
    __atomic_store_n(&s->running, 0, __ATOMIC_RELEASE);
    bl__cur = NULL;
    bl__altstack_pop(alt);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

void bl_sched_free(bl_sched *s)
{
    if (s == NULL)
        return;
    if (s->running) {
        fprintf(stderr, "bluelet: bl_sched_free: the scheduler is running; "
                        "not freed\n");
        return;
    }
    int posted = __atomic_load_n(&s->posts, __ATOMIC_ACQUIRE) != NULL ||
                 s->post_head != NULL;
    if (s->nlive > 0 || posted) {
        if (bl__cur != NULL) {
            fprintf(stderr, "bluelet: bl_sched_free: %zu green threads left "
                            "%sand another scheduler runs in this OS thread; "
                            "not freed\n", s->nlive,
                    posted ? "(or posted) " : "");
            return;
        }
        /* Also makes the posted threads, spawned by the run below, start
         * cancelled, so that they can release their arguments. */
        cancel_every(s);
        if (bl_sched_run(s) < 0 && s->nlive > 0)
            fprintf(stderr, "bluelet: bl_sched_free: %zu green threads did "
                            "not end when cancelled; their stacks are "
                            "released as they are\n", s->nlive);
        for (size_t c = 0; c < s->nchunks; c++) {
            for (int i = 0; i < BL_SLOTS_PER_CHUNK; i++) {
                bl_thread *t = &s->chunks[c][i];
                if (live(t) && t->stack != NULL) {
                    bl__stack copy = *t->stack;
                    bl__stack_unmap(&copy);
                }
            }
        }
    }
    /* Posts whose threads could not be spawned, for want of memory. */
    for (struct bl__post *p = s->post_head, *next; p != NULL; p = next) {
        next = p->next;
        fprintf(stderr, "bluelet: bl_sched_free: a posted green thread could "
                        "not be spawned (out of memory); dropped\n");
        free(p);
    }
    if (ev_is_active(&s->post_retry))
        ev_timer_stop(s->loop, &s->post_retry);
    /* Connections and listeners may outlive us: stop their watchers while
     * the loop exists. */
    while (s->ties != NULL)
        s->ties->untie(s->ties);
    if (s->wake_refs > 0)
        ev_timer_stop(s->loop, &s->wake_poll);
    wake_stop(s);
    bl__pool_forget(s);    /* after this, no pool thread writes wake_fd */
    /* Nor, once they have left, a bl_sched_release() or bl_sched_post()
     * of another OS thread that made the last run return. */
    while (__atomic_load_n(&s->callers, __ATOMIC_ACQUIRE) != 0)
        sched_yield();
    wake_close(s);
    ev_loop_destroy(s->loop);
    bl__stack_cache_clear(&s->stacks);
#ifdef BL_TSAN
    /* Fibers of threads that never ended (their stacks were unmapped). */
    for (size_t c = 0; c < s->nchunks; c++)
        for (int i = 0; i < BL_SLOTS_PER_CHUNK; i++)
            if (s->chunks[c][i].tsan_fiber != NULL)
                __tsan_destroy_fiber(s->chunks[c][i].tsan_fiber);
    if (s->tsan_ended != NULL)
        __tsan_destroy_fiber(s->tsan_ended);
#endif
    for (size_t i = 0; i < s->nchunks; i++)
        free(s->chunks[i]);
    free(s->chunks);
    free(s);
}

/* ---- green threads ---- */

static inline __attribute__((noreturn, always_inline)) void
thread_end(bl_thread *t, void *result);

static __attribute__((noreturn)) void thread_start(void *p)
{
    bl_thread *t = p;
    switched_in(t->sched, NULL);
    thread_end(t, t->fn(t->arg));
}

/* The running thread's FP control state, in the layout of a switch frame's
 * FP word: MXCSR in the low 32 bits and the x87 control word above it on
 * x86-64, FPCR on AArch64. */
static inline uint64_t fpctl_get(void)
{
#if defined(__x86_64__)
    uint32_t mxcsr;
    uint16_t cw;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(cw));
    return mxcsr | (uint64_t)cw << 32;
#else
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    return fpcr;
#endif
}

/* Lay out a new thread's first frame as bl__switch expects it (see the .S
 * files); returns the stack pointer to load. The mark BL_FRAME_NEW in the
 * FP control word tells bl__switch to enter the thread by a jump to
 * bl__ctx_entry; the registers it does not load are left unwritten. */
static void *ctx_init(bl__stack *st, bl_thread *t)
{
    uintptr_t top = (uintptr_t)st & ~(uintptr_t)15; /* below the descriptor */
    uint64_t fpctl = fpctl_get() | BL_FRAME_NEW;
#if defined(__x86_64__)
    uint64_t *f = (uint64_t *)(top - 8 * sizeof(uint64_t));
    f[0] = fpctl;                       /* MXCSR, x87 control word */
    f[3] = (uint64_t)(uintptr_t)t;      /* r13: argument */
    f[4] = (uint64_t)(uintptr_t)thread_start; /* r12: function */
#else
    uint64_t *f = (uint64_t *)(top - 176);
    f[0] = (uint64_t)(uintptr_t)thread_start; /* x19: function */
    f[1] = (uint64_t)(uintptr_t)t;            /* x20: argument */
    f[20] = fpctl;                            /* FPCR */
#endif
    return f;
}

static void set_name(bl_thread *t, const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n > sizeof t->name - 1)
        n = sizeof t->name - 1;
    if (n > 0)
        memmove(t->name, name, n);  /* name may point into t->name */
    t->name[n] = '\0';
#ifdef BL_TSAN
    if (t->tsan_fiber != NULL)
        __tsan_set_fiber_name(t->tsan_fiber, t->name);
#endif
}

/* Fill in a new thread in slot t with stack st and queue it. sched, magic
 * and the watchers were set when the slot was made; joiner is cleared by
 * slot_free(); waiting and wake_err by park(). The stack cache holds stacks
 * of s->stack_size only. */
static inline __attribute__((always_inline)) bl_thread *
spawn_init(bl_sched *s, bl_thread *t, bl__stack *st, bl_func fn, void *arg,
           unsigned flags, const char *name)
{
#ifdef BL_VALGRIND
    st->valgrind_id = VALGRIND_STACK_REGISTER(st->base,
                                              st->base + bl__stack_span(st));
#endif
    t->flags = flags | (BL_UNLIKELY(s->stopping) ? BL_F_CANCELLED : 0);
    t->fn = fn;
    t->arg = arg;
    t->stack = st;
    t->id = ++s->next_id;
#ifdef BL_TSAN
    /* A fiber of its own (an ended thread's is not reused: its shadow call
     * stack keeps the frames bl_exit() or thread_start() never returned
     * from). */
    t->tsan_fiber = __tsan_create_fiber(0);
#endif
    if (BL_LIKELY(name == NULL))
        t->name[0] = '\0';
    else
        set_name(t, name);
#ifdef BL_ASAN
    t->asan_fake = NULL;
#endif
    t->sp = ctx_init(st, t);
    s->nlive++;
    enqueue(s, t);
    return t;
}

/* noinline: bl_spawn()'s fast path must not take on this one's frame. */
__attribute__((noinline)) bl_thread *
bl_spawn_ex(bl_sched *s, bl_func fn, void *arg, const bl_spawn_opts *o)
{
    if (s == NULL) {
        s = bl__cur;
        if (s == NULL || s->current == NULL) {
            errno = EINVAL;
            return NULL;
        }
    }
    if (fn == NULL) {
        errno = EINVAL;
        return NULL;
    }
    size_t size = s->stack_size;
    const char *name = NULL;
    int detached = 0;
    if (o != NULL) {
        if (o->size == 0) {
            errno = EINVAL;
            return NULL;
        }
        /* Bytes past the fields we know must be zero. */
        for (size_t i = sizeof *o; i < o->size; i++) {
            if (((const unsigned char *)o)[i] != 0) {
                errno = EINVAL;
                return NULL;
            }
        }
        if (o->size >= offsetof(bl_spawn_opts, stack_size) + sizeof(size_t) &&
            o->stack_size != 0) {
            if (o->stack_size < BL_MIN_STACK_SIZE ||
                o->stack_size > ((size_t)1 << 40)) {
                errno = EINVAL;
                return NULL;
            }
            size_t ps = bl__page_size();
            size = (o->stack_size + ps - 1) / ps * ps;
        }
        if (o->size >= offsetof(bl_spawn_opts, name) + sizeof(char *))
            name = o->name;
        if (o->size >= offsetof(bl_spawn_opts, detached) + sizeof(int))
            detached = o->detached;
    }
    bl_thread *t = slot_alloc(s);
    if (t == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    bl__stack *st = s->stacks.free;
    if (BL_LIKELY(st != NULL && size == s->stacks.size)) {
        s->stacks.free = st->next_free;
        s->stacks.nfree--;
    } else {
        st = bl__stack_get(&s->stacks, size);
    }
    if (st == NULL) {
        slot_free(s, t);
        errno = ENOMEM;
        return NULL;
    }
    return spawn_init(s, t, st, fn, arg, detached ? BL_F_DETACHED : 0, name);
}

/* The common case, kept free of calls so that it needs no stack frame: a
 * free slot and a cached stack of the default size. Anything else (errors
 * included) goes to bl_spawn_ex(). */
bl_thread *bl_spawn(bl_sched *s, bl_func fn, void *arg)
{
    bl_sched *cur = s != NULL ? s : bl__cur;
    bl_thread *t;
    bl__stack *st;
    if (BL_LIKELY(cur != NULL && fn != NULL) &&
        BL_LIKELY(s != NULL || cur->current != NULL) &&
        BL_LIKELY((t = cur->free_head) != NULL) &&
        BL_LIKELY((st = cur->stacks.free) != NULL)) {
        cur->free_head = t->next;
        if (cur->free_head == NULL)
            cur->free_tail = NULL;
        cur->stacks.free = st->next_free;
        cur->stacks.nfree--;
        return spawn_init(cur, t, st, fn, arg, 0, NULL);
    }
    return bl_spawn_ex(s, fn, arg, NULL);
}

/* Inlined into thread_start() so that a thread's last switch is made one
 * call deep, like the return-address predictor expects (see
 * bl__ctx_entry). */
static inline __attribute__((noreturn, always_inline)) void
thread_end(bl_thread *t, void *result)
{
    bl_sched *s = t->sched;
    t->result = result;
    t->state = BL_T_DONE;
    s->nlive--;
    /* Retire the stack we are still running on: nothing reuses it before a
     * later bl_spawn(), which runs on another stack after our last switch. */
    bl__stack *st = t->stack;
    t->stack = NULL;
#ifdef BL_ASAN
    bl__stack_asan_clear(st);
#endif
#ifdef BL_VALGRIND
    VALGRIND_STACK_DEREGISTER(st->valgrind_id);
#endif
    if (BL_LIKELY(st->size == s->stacks.size &&
                  s->stacks.nfree < BL_STACK_CACHE_MAX)) {
        st->next_free = s->stacks.free;
        s->stacks.free = st;
        s->stacks.nfree++;
    } else if (bl__stack_retire(&s->stacks, st) < 0) {
        st->next_free = s->dead_stacks;
        s->dead_stacks = st;
    }
    if (t->joiner != NULL)
        wake(s, t->joiner, 0);
    if (t->flags & BL_F_DETACHED)
        slot_free(s, t);
#ifdef BL_TSAN
    s->tsan_ended = t->tsan_fiber;      /* destroyed by the next context */
    t->tsan_fiber = NULL;
#endif
    /* The last switch: nothing of this thread is kept (no fake stack for
     * ASan either). */
    bl_thread *next = take_next(s);
    s->current = next;
    SWITCH_OUT(s, NULL, next);
    void *to = next != NULL ? next->sp : s->main_sp;
    /* Entered by a jump, not a call: its `ret` pops the predictor entry
     * pushed by the call that first switched into this thread. */
#if defined(__x86_64__)
    __asm__ volatile("jmp bl__switch_final" : : "D"(to) : "memory");
#else
    register void *x0 __asm__("x0") = to;
    __asm__ volatile("b bl__switch_final" : : "r"(x0) : "memory");
#endif
    __builtin_unreachable();
}

void bl_exit(void *result)
{
    bl_thread *self = bl__self_or_eperm();
    if (self == NULL)
        return;
    if (self->on_exit != NULL) {
        void (*f)(void *) = self->on_exit;
        self->on_exit = NULL;
        f(self->arg);
    }
    thread_end(self, result);
}

bl_thread *bl_self(void)
{
    bl_sched *s = bl__cur;
    return s != NULL ? s->current : NULL;
}

int bl_cancelled(void)
{
    bl_thread *self = bl_self();
    return self != NULL && (self->flags & BL_F_CANCELLED) != 0;
}

/* The hot path: the caller goes to the back of the queue and the head runs.
 * After the switch, the thread is found again through the TLS pointer, so
 * nothing has to be kept in callee-saved registers across it. */
static __attribute__((noinline)) int yield_slow(bl_sched *s, bl_thread *self)
{
    enqueue(s, self);
    run_next(s, self, &self->sp);
    return 0;
}

int bl_yield(void)
{
    bl_sched *s = bl__cur;
    bl_thread *self;
    if (BL_UNLIKELY(s == NULL || (self = s->current) == NULL)) {
        errno = EPERM;
        return -1;
    }
    if (BL_UNLIKELY(self->flags & BL_F_CANCELLED))
        goto cancelled;
    bl_thread *next = s->ready_head;
    if (BL_LIKELY(next != NULL) &&
        BL_LIKELY((++s->switches & BL_POLL_CHECK_MASK) != 0)) {
        bl_thread *after = next->next;
        self->next = NULL;
        self->state = BL_T_READY;
        if (after == NULL) {
            s->ready_head = self;
        } else {
            s->ready_head = after;
            s->ready_tail->next = self;
        }
        s->ready_tail = self;
        next->state = BL_T_RUNNING;
        s->current = next;
        SWITCH_OUT(s, &self->asan_fake, next);
        bl__switch(&self->sp, next->sp);
        self = bl__cur->current;
        switched_in(self->sched, ASAN_FAKE(self->asan_fake));
    } else {
        if (next != NULL)
            s->switches--; /* run_next counts this switch again */
        yield_slow(s, self);
        self = bl__cur->current;
    }
    if (BL_UNLIKELY(self->flags & BL_F_CANCELLED))
        goto cancelled;
    return 0;
cancelled:
    errno = ECANCELED;
    return -1;
}

void bl__tie_add(bl_sched *s, bl__tie *t, void (*untie)(bl__tie *))
{
    t->untie = untie;
    t->next = s->ties;
    t->pprev = &s->ties;
    if (s->ties != NULL)
        s->ties->pprev = &t->next;
    s->ties = t;
}

/* Deadlines are on the monotonic clock, like libev's timers: ev_now() is
 * wall-clock time, which may be stepped. */
double bl__deadline(bl_sched *s, double timeout)
{
    (void)s;
    if (timeout < 0)
        return -1;
    return mono_now() + timeout;
}

double bl__remaining(bl_sched *s, double deadline)
{
    (void)s;
    if (deadline < 0)
        return -1;
    double left = deadline - mono_now();
    return left > 0 ? left : 0;
}

int bl__park(bl_thread *self, const char *what, double timeout)
{
    return park(self->sched, self, what, timeout);
}

int bl__watch_retry(bl_thread *self, const char *what, double deadline)
{
    double now = mono_now();
    if (now - self->watch_end > 2 * BL_WATCH_RETRY_MAX)
        self->watch_n = 0;      /* not a retry that failed again at once */
    double pause = BL_WATCH_RETRY_MAX;
    if (self->watch_n < 16 &&
        BL_WATCH_RETRY * (double)(1u << self->watch_n) < BL_WATCH_RETRY_MAX)
        pause = BL_WATCH_RETRY * (double)(1u << self->watch_n++);
    double left = bl__remaining(self->sched, deadline);
    int last = left >= 0 && left <= pause;
    int err = bl__park(self, what, last ? left : pause);
    self->watch_end = mono_now();
    return err == ETIMEDOUT && !last ? 0 : err;
}

void bl__wake(bl_thread *t, int err)
{
    wake(t->sched, t, err);
}

int bl_sleep(double seconds)
{
    bl_thread *self = bl__self_or_eperm();
    if (self == NULL)
        return -1;
    if (isnan(seconds) || seconds < 0) {
        errno = EINVAL;
        return -1;
    }
    if (self->flags & BL_F_CANCELLED) {
        errno = ECANCELED;
        return -1;
    }
    bl_sched *s = self->sched;
    if (seconds == 0) {
        /* Poll first, then queue behind what the poll made ready. */
        self->state = BL_T_READY;
        s->requeue = self;
        force_poll(s);
        run_next(s, self, &self->sp);
        if (self->flags & BL_F_CANCELLED) {
            errno = ECANCELED;
            return -1;
        }
        return 0;
    }
    if (isinf(seconds))
        seconds = -1;
    int err = bl__park(self, "bl_sleep", seconds);
    if (err == ETIMEDOUT)
        return 0;
    errno = err;
    return -1;
}

/* bl_join() and bl_join_timeout(); timeout < 0: none, NaN: EINVAL if the
 * thread has not ended. */
static inline __attribute__((always_inline)) int
join(bl_thread *t, void **result, double timeout)
{
    bl_thread *self = bl__self_or_eperm();
    if (self == NULL)
        return -1;
    bl_sched *s = self->sched;
    if (!valid(t) || t->sched != s || isnan(timeout)) {
        errno = EINVAL;
        return -1;
    }
    if (t == self) {
        errno = EDEADLK;
        return -1;
    }
    if ((t->flags & BL_F_DETACHED) || t->joiner != NULL) {
        errno = EINVAL;
        return -1;
    }
    if (t->state != BL_T_DONE) {
        t->joiner = self;
        int err = park(s, self, "bl_join", timeout);
        t->joiner = NULL;
        /* Woken by t's end and cancelled only after: t had ended before
         * the cancel, so the join is done (bl_cancel's one exception). */
        if (err == ECANCELED && self->wake_err == 0 && t->state == BL_T_DONE)
            err = 0;
        if (err != 0) {
            errno = err;
            return -1;
        }
    }
    if (result != NULL)
        *result = t->result;
    slot_free(s, t);
    return 0;
}

int bl_join(bl_thread *t, void **result)
{
    return join(t, result, -1);
}

int bl_join_timeout(bl_thread *t, void **result, double timeout)
{
    return join(t, result, timeout < 0 || isinf(timeout) ? -1 : timeout);
}

int bl_detach(bl_thread *t)
{
    if (!valid(t) || (t->flags & BL_F_DETACHED) || t->joiner != NULL) {
        errno = EINVAL;
        return -1;
    }
    if (t->state == BL_T_DONE)
        slot_free(t->sched, t);
    else
        t->flags |= BL_F_DETACHED;
    return 0;
}

int bl_cancel(bl_thread *t)
{
    if (!valid(t)) {
        errno = EINVAL;
        return -1;
    }
    if (t->state == BL_T_DONE)
        return 0;
    t->flags |= BL_F_CANCELLED;
    if (t->state == BL_T_BLOCKED)
        bl__wake(t, ECANCELED);
    return 0;
}

int bl_thread_set_name(bl_thread *t, const char *name)
{
    if (!valid(t)) {
        errno = EINVAL;
        return -1;
    }
    set_name(t, name);
    return 0;
}

const char *bl_thread_name(const bl_thread *t)
{
    if (!valid(t)) {
        errno = EINVAL;
        return NULL;
    }
    return t->name;
}

unsigned long long bl_thread_id(const bl_thread *t)
{
    if (!valid(t)) {
        errno = EINVAL;
        return 0;
    }
    return t->id;
}

/* bl_wait_fd() without waiting: the events of `events` that fd has now. */
static int wait_fd_now(int fd, int events)
{
    struct pollfd p = {.fd = fd,
                       .events = (short)((events & BL_READ ? POLLIN : 0) |
                                         (events & BL_WRITE ? POLLOUT : 0))};
    if (poll(&p, 1, 0) < 0)
        return -1;
    if (p.revents & POLLNVAL) {
        errno = EBADF;
        return -1;
    }
    int r = (p.revents & (POLLIN | POLLHUP | POLLERR) ? BL_READ : 0) |
            (p.revents & (POLLOUT | POLLHUP | POLLERR) ? BL_WRITE : 0);
    r &= events;
    if (r == 0) {
        errno = ETIMEDOUT;
        return -1;
    }
    return r;
}

int bl_wait_fd(int fd, int events, double timeout)
{
    bl_thread *self = bl__self_or_eperm();
    if (self == NULL)
        return -1;
    if (fd < 0 || events == 0 || (events & ~(BL_READ | BL_WRITE)) != 0 ||
        isnan(timeout)) {
        errno = EINVAL;
        return -1;
    }
    if (self->flags & BL_F_CANCELLED) {
        /* Also when the answer would be at hand (timeout 0, or fd ready):
         * every blocking call of a cancelled thread fails. */
        errno = ECANCELED;
        return -1;
    }
    bl_sched *s = self->sched;
    double deadline = bl__deadline(s, timeout);
    /* Timeout 0, or one so short that it has already run out (1e-9): look
     * without waiting, rather than report a timeout for a ready fd. */
    double left = timeout == 0 ? 0 : bl__remaining(s, deadline);
    if (left == 0)
        return wait_fd_now(fd, events);
    /* libev learns of a bad descriptor only in its next poll, and aborts. */
    if (fcntl(fd, F_GETFD) < 0) {
        errno = EBADF;
        return -1;
    }
    int err;
    for (;;) {
        /* ev_io_set() also makes libev register fd afresh after an
         * EV_ERROR (see watcher_killed() in net.c). */
        ev_io_set(&self->io, fd, (events & BL_READ ? EV_READ : 0) |
                                     (events & BL_WRITE ? EV_WRITE : 0));
        ev_io_start(s->loop, &self->io);
        self->io_revents = 0;
        err = bl__park(self, "bl_wait_fd", left);
        ev_io_stop(s->loop, &self->io);
        /* The timeout and the event in the same iteration of the loop (a
         * short timeout): libev ran the timer first, but the event counts. */
        if (err == ETIMEDOUT && (self->io_revents & (EV_READ | EV_WRITE)) &&
            !(self->io_revents & EV_ERROR))
            err = 0;
        if (BL_LIKELY(err != 0 || !(self->io_revents & EV_ERROR)))
            break;
        /* libev could not watch fd, and reports it as ready for all. */
        err = bl__watch_retry(self, "bl_wait_fd", deadline);
        /* Closed meanwhile: libev would abort on registering it. */
        if (err == 0 && fcntl(fd, F_GETFD) < 0)
            err = EBADF;
        if (err != 0)
            break;
        left = bl__remaining(s, deadline);
    }
    if (err != 0) {
        errno = err;
        return -1;
    }
    return ((self->io_revents & EV_READ ? BL_READ : 0) |
            (self->io_revents & EV_WRITE ? BL_WRITE : 0)) & events;
}

/* ---- posts from other OS threads ---- */

/* Spawn the posted threads, oldest first; on s's OS thread, from its loop.
 * Should a spawn fail (no memory), the posts left wait for post_retry. */
static void posts_take(bl_sched *s)
{
    struct bl__post *p = __atomic_exchange_n(&s->posts, NULL,
                                             __ATOMIC_SEQ_CST);
    /* A stop made before these posts (by their poster, say) is taken
     * before they are spawned, also here in a wake-up callback. */
    if (BL_UNLIKELY(__atomic_load_n(&s->stop_req, __ATOMIC_SEQ_CST)))
        stop_take(s);
    struct bl__post *oldest = NULL;
    while (p != NULL) {         /* newest first: reverse */
        struct bl__post *next = p->next;
        p->next = oldest;
        oldest = p;
        p = next;
    }
    if (oldest != NULL) {
        if (s->post_tail != NULL)
            s->post_tail->next = oldest;
        else
            s->post_head = oldest;
        while (oldest->next != NULL)
            oldest = oldest->next;
        s->post_tail = oldest;
    }
    static const bl_spawn_opts detached = {.size = sizeof detached,
                                           .detached = 1};
    while ((p = s->post_head) != NULL) {
        if (bl_spawn_ex(s, p->fn, p->arg, &detached) == NULL) {
            if (!ev_is_active(&s->post_retry)) {
                /* Active and referenced: keeps bl_sched_run() going. */
                ev_timer_set(&s->post_retry, BL_WATCH_RETRY_MAX,
                             BL_WATCH_RETRY_MAX);
                ev_timer_start(s->loop, &s->post_retry);
            }
            return;
        }
        s->post_head = p->next;
        if (s->post_head == NULL)
            s->post_tail = NULL;
        free(p);
    }
    if (ev_is_active(&s->post_retry))
        ev_timer_stop(s->loop, &s->post_retry);
}

static void post_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    posts_take(w->data);
}

int bl_sched_post(bl_sched *s, bl_func fn, void *arg)
{
    if (s == NULL || fn == NULL) {
        errno = EINVAL;
        return -1;
    }
    struct bl__post *p = malloc(sizeof *p);
    if (p == NULL)
        return -1;
    p->fn = fn;
    p->arg = arg;
    __atomic_fetch_add(&s->callers, 1, __ATOMIC_SEQ_CST);
    p->next = __atomic_load_n(&s->posts, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&s->posts, &p->next, p, 1,
                                        __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        ;
    bl__sched_wake(s);
    __atomic_fetch_sub(&s->callers, 1, __ATOMIC_RELEASE);
    return 0;
}

int bl_sched_hold(bl_sched *s)
{
    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }
    __atomic_fetch_add(&s->holds, 1, __ATOMIC_ACQ_REL);
    return 0;
}

int bl_sched_release(bl_sched *s)
{
    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }
    /* Counted in callers before the hold goes: once it has, s's thread may
     * return from bl_sched_run() and free s, and bl_sched_free() waits for
     * the wake-up below to be written. */
    __atomic_fetch_add(&s->callers, 1, __ATOMIC_SEQ_CST);
    int n = __atomic_load_n(&s->holds, __ATOMIC_RELAXED);
    do {
        if (n <= 0) {
            __atomic_fetch_sub(&s->callers, 1, __ATOMIC_RELEASE);
            errno = EINVAL;
            return -1;
        }
    } while (!__atomic_compare_exchange_n(&s->holds, &n, n - 1, 1,
                                          __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    if (n == 1)
        bl__sched_wake(s);  /* a loop waiting only for posts may return */
    __atomic_fetch_sub(&s->callers, 1, __ATOMIC_RELEASE);
    return 0;
}

/* Async-signal-safe as well as thread-safe: atomics (lock-free on int) and
 * one write(), which keeps errno. */
int bl_sched_stop(bl_sched *s)
{
    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }
    __atomic_fetch_add(&s->callers, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s->stop_req, 1, __ATOMIC_SEQ_CST);
    bl__sched_wake(s);
    __atomic_fetch_sub(&s->callers, 1, __ATOMIC_RELEASE);
    return 0;
}
