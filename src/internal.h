/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the parts of libbluelet share. Not installed.
 */
#ifndef BL_INTERNAL_H
#define BL_INTERNAL_H

#include "bluelet.h"

#include <ev.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "libbluelet supports x86-64 and AArch64 only"
#endif

#define BL_HIDDEN __attribute__((visibility("hidden")))
#define BL_LIKELY(x) __builtin_expect(!!(x), 1)
#define BL_UNLIKELY(x) __builtin_expect(!!(x), 0)

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(BL_ASAN)
#define BL_ASAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BL_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(BL_TSAN)
#define BL_TSAN 1
#endif

/* ---- context switch (src/arch/<arch>/switch.S) ---- */

BL_HIDDEN void bl__switch(void **save_sp, void *load_sp);
/* Load load_sp like bl__switch, saving nothing. Entered by a jump (see
 * thread_end in sched.c), never called. */
BL_HIDDEN void bl__switch_final(void *load_sp);
BL_HIDDEN void bl__ctx_entry(void);
/* Set in the FP control word of a new thread's first frame (a bit that is
 * reserved, so zero, in MXCSR and in FPCR): bl__switch enters such a frame
 * by jumping to bl__ctx_entry instead of returning into it. */
#if defined(__x86_64__)
#define BL_FRAME_NEW ((uint64_t)1 << 31)
#else
#define BL_FRAME_NEW ((uint64_t)1 << 63)
#endif

/* ---- stacks (stack.c) ---- */

typedef struct bl__stack {
    char *base;    /* lowest usable byte (just above the guard) */
    size_t size;   /* usable bytes asked for (the stack has at least that) */
    size_t map;    /* bytes mapped, guard included */
    struct bl__stack *next_free;
    int mprotected; /* the guard is an mprotect()ed mapping of its own */
#ifdef BL_VALGRIND
    unsigned valgrind_id;
#endif
} bl__stack;

/* Page positions over which stack tops are staggered (see stack.c). */
#define BL_STACK_COLOURS 8

/* Stacks kept for reuse per scheduler; beyond that they are unmapped. */
#define BL_STACK_CACHE_MAX 64

typedef struct bl__stack_cache {
    bl__stack *free;       /* stacks of `size` bytes, ready for reuse */
    size_t nfree;
    size_t size;           /* the size the cached stacks have */
} bl__stack_cache;

/* The bytes a stack really spans: from base up to its descriptor, which
 * sits at the top of the stack memory, below a colour offset (see
 * bl__stack_get() in stack.c). */
static inline size_t bl__stack_span(const bl__stack *st)
{
    return (size_t)((const char *)st - st->base);
}

/* Map a stack of `size` usable bytes (a page multiple) with a guard region
 * below. Returns 0 and fills *st, or -1 with errno ENOMEM. */
BL_HIDDEN int bl__stack_map(bl__stack *st, size_t size);
BL_HIDDEN void bl__stack_unmap(bl__stack *st);
/* Take a stack from the cache (or map one). NULL and ENOMEM on failure. The
 * descriptor itself lives at the top of the stack memory. */
BL_HIDDEN bl__stack *bl__stack_get(bl__stack_cache *c, size_t size);
BL_HIDDEN void bl__stack_put(bl__stack_cache *c, bl__stack *st);
/* Put the stack of a thread that is ending (still running on it) in the
 * cache; returns 0, or -1 when the cache cannot take it (another size): the
 * caller must unmap it later, from another stack. */
BL_HIDDEN int bl__stack_retire(bl__stack_cache *c, bl__stack *st);
BL_HIDDEN void bl__stack_cache_clear(bl__stack_cache *c);
#ifdef BL_ASAN
/* Mark a whole stack addressable again for ASan (see stack.c). */
BL_HIDDEN void bl__stack_asan_clear(bl__stack *st);
#endif
BL_HIDDEN size_t bl__guard_size(void);
BL_HIDDEN size_t bl__page_size(void);
/* Install the process-wide SIGSEGV handler that reports stack overflows
 * (once), and an alternate signal stack for this OS thread. */
BL_HIDDEN void bl__overflow_handler_install(void);
BL_HIDDEN void *bl__altstack_push(void);
BL_HIDDEN void bl__altstack_pop(void *token);

/* ---- objects tied to a scheduler ---- */

/* A connection or listener is tied to the scheduler of the first thread that
 * waits on it: its watchers run in that scheduler's loop. The scheduler
 * lists what is tied to it, so that bl_sched_free() can stop those watchers
 * while its loop still exists and untie the objects, which may outlive it
 * (be closed later, or be used by another scheduler). */
typedef struct bl__tie bl__tie;
struct bl__tie {
    bl__tie *next, **pprev;
    void (*untie)(bl__tie *t);   /* stop the watchers, forget s, unlink */
};

BL_HIDDEN void bl__tie_add(bl_sched *s, bl__tie *t, void (*untie)(bl__tie *));

static inline void bl__tie_del(bl__tie *t)
{
    if (t->next != NULL)
        t->next->pprev = t->pprev;
    *t->pprev = t->next;
    t->next = NULL;
    t->pprev = NULL;
}

/* ---- threads and the scheduler (sched.c) ---- */

enum bl__state {
    BL_T_FREE = 0,   /* slot unused */
    BL_T_READY,      /* in the ready queue */
    BL_T_RUNNING,
    BL_T_BLOCKED,    /* parked; woken by bl__wake() */
    BL_T_DONE        /* ended, waiting to be joined */
};

#define BL_F_DETACHED 1u
#define BL_F_CANCELLED 2u

/* The first cache line holds what a park, a wake and a switch touch. */
struct bl_thread {
    void *sp;                  /* saved stack pointer while switched out */
    struct bl_thread *next;    /* ready queue / free list link */
    bl_sched *sched;
    const char *waiting;       /* what a blocked thread waits for (reports) */
    unsigned state;
    unsigned flags;
    int wake_err;              /* why bl__park() returned: 0 or an errno */
    int io_revents;            /* what woke bl_wait_fd() */
    struct bl_thread *joiner;  /* thread blocked in bl_join() on us */
    bl__stack *stack;
    /* second line on */
    bl_func fn;
    void *arg;
    void *result;
    /* Run with arg by bl_exit() before the thread ends (bl_serve's handler
     * threads close their connection); whoever sets it clears it again. */
    void (*on_exit)(void *arg);
    unsigned long long id;
    uint32_t magic;
    unsigned char watch_n;     /* bl__watch_retry(): pauses in a row */
    ev_timer timer;            /* sleeps and timeouts */
    ev_io io;                  /* bl_wait_fd() */
#ifdef BL_ASAN
    void *asan_fake;
#endif
#ifdef BL_TSAN
    void *tsan_fiber;          /* made by spawn, gone when the thread ends */
#endif
    double watch_end;          /* when its last pause ended */
    char name[32];
} __attribute__((aligned(64)));

#define BL_THREAD_MAGIC 0x626c5468u /* "blTh" */

/* Thread slots are allocated this many at a time (bl_sched.chunks). */
#define BL_SLOTS_PER_CHUNK 64

struct bl_sched {
    bl_thread *current;        /* the running green thread, or NULL */
    bl_thread *ready_head, *ready_tail;
    unsigned switches;         /* since the last I/O poll, see run_next() */
    unsigned nready;           /* threads on the ready queue */
    unsigned round;            /* nready when the last poll ended */
    bl_thread *requeue;        /* thread to append after a poll (bl_sleep(0)) */
    double last_poll;
    void *main_sp;             /* the context of bl_sched_run() */
    bl__stack *dead_stacks;    /* ended threads' stacks the cache did not take */
    struct ev_loop *loop;
    size_t nlive;              /* threads not yet ended */
    unsigned long long next_id;
    size_t stack_size;
    bl__stack_cache stacks;
    bl_thread *free_head, *free_tail; /* FIFO of free thread slots */
    bl__tie *ties;             /* connections and listeners tied to us */
    bl_thread **chunks;        /* thread slots, BL_SLOTS_PER_CHUNK each */
    size_t nchunks, chunks_cap;
    int running;               /* in bl_sched_run(); read by bl__foreign() */
    int stopping;              /* cancel every thread, spawn cancelled,
                                * ignore holds: in bl_sched_free(), and
                                * in a run that took a bl_sched_stop() */
#ifdef BL_ASAN
    void *main_stack_bottom;
    size_t main_stack_size;
    void *main_fake;
#endif
#ifdef BL_TSAN
    void *tsan_main;           /* the TSan fiber of bl_sched_run()'s caller */
    void *tsan_ended;          /* an ended thread's fiber, see switched_in() */
#endif
    /* Wake-ups from other OS threads (the lookup pool), see sched.c. */
    ev_io wake_io;             /* watches wake_fd[0] */
    ev_timer wake_retry;       /* while epoll refuses wake_fd[0] */
    ev_timer wake_poll;        /* while pool jobs are under way */
    double wake_backoff;       /* wake_retry's interval */
    int wake_fd[2];            /* read and write end: one eventfd, or a pipe */
    int wake_pending;          /* written and not yet read (atomic) */
    struct bl__pool_job *done_head; /* completed pool jobs (under pool lock) */
    int wake_refs;             /* pool jobs under way (keep the loop alive) */
    /* bl_sched_post(): other OS threads push onto `posts` (atomic, newest
     * first); s's thread takes them over, oldest first, into post_head. */
    struct bl__post *posts;
    struct bl__post *post_head, *post_tail; /* taken, not yet spawned */
    ev_timer post_retry;       /* while a spawn for a post failed */
    int holds;                 /* bl_sched_hold() count (atomic) */
    int callers;               /* other OS threads inside bl_sched_post(),
                                * bl_sched_release() or bl_sched_stop()
                                * (atomic) */
    int stop_req;              /* bl_sched_stop() not yet taken (atomic) */
    int hold_ref;              /* the loop is ev_ref()ed for the holds */
};

/* The scheduler running in this OS thread. */
extern __thread bl_sched *bl__cur BL_HIDDEN
    __attribute__((tls_model("initial-exec")));

/* Whether s is running in another OS thread, so that its loop and lists
 * must not be touched from this one (s NULL: no). */
static inline int bl__foreign(bl_sched *s)
{
    return s != NULL && s != bl__cur &&
           __atomic_load_n(&s->running, __ATOMIC_ACQUIRE);
}

/* The running green thread, or NULL (and errno = EPERM). */
static inline bl_thread *bl__self_or_eperm(void);

/* Suspend the running thread until bl__wake(). `what` names the wait for
 * deadlock reports. timeout < 0: none. Returns 0 or the errno given to
 * bl__wake() (ETIMEDOUT when the timeout passed first, ECANCELED, EBADF ...).
 * Returns ECANCELED at once if the thread was already cancelled. */
BL_HIDDEN int bl__park(bl_thread *self, const char *what, double timeout);
/* Make a parked thread ready; err is what its bl__park() returns. A thread
 * not parked is left alone. */
BL_HIDDEN void bl__wake(bl_thread *t, int err);
/* An absolute deadline `timeout` seconds from now on s's clock (timeout < 0:
 * none, returned as -1). */
BL_HIDDEN double bl__deadline(bl_sched *s, double timeout);
/* Seconds left until `deadline` (-1 for none; 0 when past). */
BL_HIDDEN double bl__remaining(bl_sched *s, double deadline);

/* What bl__park() returns to a thread woken because libev could not watch
 * the descriptor it waited on: an epoll_ctl failed (ENOSPC at
 * fs.epoll.max_user_watches, ENOMEM), so libev stopped the watcher and
 * called it with EV_ERROR. Not an errno; the waiter calls
 * bl__watch_retry(). */
#define BL__EWATCH (-1)

/* Pause before retrying after BL__EWATCH, rather than spin while the kernel
 * keeps refusing: BL_WATCH_RETRY seconds, doubled for each pause that
 * follows the last one at once, up to BL_WATCH_RETRY_MAX. Returns 0 to
 * retry, or the errno that ends the call: ETIMEDOUT when the pause reached
 * `deadline` (< 0: none), ECANCELED, or what bl__wake() gave. */
BL_HIDDEN int bl__watch_retry(bl_thread *self, const char *what,
                              double deadline);
#define BL_WATCH_RETRY 0.001
#define BL_WATCH_RETRY_MAX 0.1

/* Report stuck threads on stderr. */
BL_HIDDEN void bl__report_deadlock(bl_sched *s);

static inline bl_thread *bl__self_or_eperm(void)
{
    bl_sched *s = bl__cur;
    if (BL_UNLIKELY(s == NULL || s->current == NULL)) {
        errno = EPERM;
        return NULL;
    }
    return s->current;
}

/* ---- blocking-call pool (pool.c) ---- */

typedef struct bl__pool_job bl__pool_job;
struct bl__pool_job {
    void (*fn)(void *arg);
    void *arg;
    void (*abandon)(void *arg);  /* called instead of waking when abandoned */
    bl_sched *sched;
    bl_thread *waiter;           /* NULL once abandoned */
    int done;                    /* finished and drained (scheduler side) */
    int finished;                /* fn has returned (under the pool lock) */
    int abandoned;               /* given up while fn ran (under the lock):
                                  * the worker calls abandon() when fn
                                  * returns */
    int lookup;                  /* a name lookup: fork() waits for it */
    bl__pool_job *next;
};

/* Run job->fn(job->arg) on a pool OS thread while the calling green thread
 * waits, at most `timeout` seconds (< 0: no limit). Returns 0 when it ran,
 * or ECANCELED (the caller was cancelled) or ETIMEDOUT: then the job is
 * abandoned, job->abandon(job->arg) frees its resources once it has run (on
 * the pool thread, or at once if it already had), and the job struct, which
 * must be heap-allocated (and zeroed), is freed with it. */
BL_HIDDEN int bl__pool_run(bl__pool_job *job, double timeout);
/* Finish the completed jobs of s (on s's OS thread, after a wake-up). */
BL_HIDDEN void bl__pool_drain(bl_sched *s);
/* Count a pool job under way for s (delta 1) or finished (-1): while any
 * is, the loop is kept alive for its wake-up. On s's OS thread. */
BL_HIDDEN void bl__sched_wake_ref(bl_sched *s, int delta);
/* Make s's loop return from its poll and drain the pool's completed jobs.
 * From any OS thread; keeps errno. */
BL_HIDDEN void bl__sched_wake(bl_sched *s);
/* s is being freed: jobs still under way for it are abandoned. */
BL_HIDDEN void bl__pool_forget(bl_sched *s);

#endif /* BL_INTERNAL_H */
