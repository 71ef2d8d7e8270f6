/* SPDX-License-Identifier: MIT */
/*
 * stack.c - green thread stacks: mmap'd, lazily committed, with a guard
 * region below each, a per-scheduler cache, and a SIGSEGV handler that names
 * the green thread whose stack overflowed.
 *
 * Guards: MADV_GUARD_INSTALL (Linux 6.13+) marks the guard pages without
 * splitting the mapping, so any number of stacks fits in vm.max_map_count.
 * Elsewhere mprotect(PROT_NONE) is used, which costs two mappings per stack
 * (the guard, and the stack that can no longer merge with its neighbour).
 * Those guards are rationed to 3/8 of vm.max_map_count, so that three
 * quarters of the limit at most go to them and the rest of the process
 * (libev, malloc, the application) can still map memory; past that, and
 * when the kernel refuses (ENOMEM), a stack goes without a guard rather
 * than failing, and a warning is printed once.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef BL_ASAN
#include <sanitizer/asan_interface.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif


static size_t page_size;
static size_t guard_size;
/* 1: MADV_GUARD_INSTALL works; 0: use mprotect; -1: not known yet (the
 * probe needs a pipe and a page: probed again at each new stack until it
 * could tell). Atomic. */
static int guard_madvise = -1;
static int guard_warned;
/* Stacks that may have an mprotect()ed guard at once, and how many do. */
static size_t guard_budget;
static size_t guards_used;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Default of vm.max_map_count (DEFAULT_MAX_MAP_COUNT). */
#define BL_MAX_MAP_COUNT_DEFAULT 65530L

static long max_map_count(void)
{
    long v = -1;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
    if (f != NULL) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v > 0 ? v : BL_MAX_MAP_COUNT_DEFAULT;
}

/* Does MADV_GUARD_INSTALL really make the pages inaccessible? Emulators
 * (qemu-user) accept unknown advice and do nothing, so probe: a write(2) from
 * a guarded page fails with EFAULT. 1 or 0, or -1 when it cannot tell (no
 * descriptor or memory left for the probe). Keeps errno. */
static int probe_guard_madvise(void)
{
    int saved = errno;
    char *p = mmap(NULL, page_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        errno = saved;
        return -1;
    }
    int ok = 0;
    if (madvise(p, page_size, MADV_GUARD_INSTALL) == 0) {
        int fds[2];
        if (pipe(fds) == 0) {
            ok = write(fds[1], p, 1) < 0 && errno == EFAULT;
            close(fds[0]);
            close(fds[1]);
        } else {
            ok = -1;
        }
    }
    munmap(p, page_size);
    errno = saved;
    return ok;
}

/* Whether to guard with MADV_GUARD_INSTALL; probes again while unknown. */
static int use_guard_madvise(void)
{
    int g = __atomic_load_n(&guard_madvise, __ATOMIC_RELAXED);
    if (BL_UNLIKELY(g < 0)) {
        g = probe_guard_madvise();
        if (g >= 0)
            __atomic_store_n(&guard_madvise, g, __ATOMIC_RELAXED);
    }
    return g;
}

static void init(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    page_size = ps > 0 ? (size_t)ps : 4096;
    guard_size = page_size > 16384 ? page_size : 16384;
    __atomic_store_n(&guard_madvise, probe_guard_madvise(), __ATOMIC_RELAXED);
    guard_budget = (size_t)max_map_count() / 8 * 3;
}

/* Take one of the mprotect() guards (see the top of this file). */
static int guard_take(void)
{
    size_t n = __atomic_load_n(&guards_used, __ATOMIC_RELAXED);
    do {
        if (n >= guard_budget)
            return 0;
    } while (!__atomic_compare_exchange_n(&guards_used, &n, n + 1, 1,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return 1;
}

static void guard_give_back(void)
{
    __atomic_fetch_sub(&guards_used, 1, __ATOMIC_RELAXED);
}

size_t bl__page_size(void)
{
    pthread_once(&init_once, init);
    return page_size;
}

size_t bl__guard_size(void)
{
    pthread_once(&init_once, init);
    return guard_size;
}

int bl__stack_map(bl__stack *st, size_t size)
{
    pthread_once(&init_once, init);
    size_t map = size + guard_size;
    char *p = mmap(NULL, map, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                   -1, 0);
    if (p == MAP_FAILED) {
        errno = ENOMEM;
        return -1;
    }
    int guarded = 0, mprotected = 0;
    if (use_guard_madvise() == 1)
        guarded = madvise(p, guard_size, MADV_GUARD_INSTALL) == 0;
    if (!guarded && guard_take()) {
        guarded = mprotected = mprotect(p, guard_size, PROT_NONE) == 0;
        if (!mprotected)
            guard_give_back();
    }
    if (!guarded && !__atomic_exchange_n(&guard_warned, 1, __ATOMIC_RELAXED))
        fprintf(stderr, "bluelet: warning: new green thread stacks get no "
                        "guard pages: the kernel refused them, or they would "
                        "take more than 3/8 of vm.max_map_count (before Linux "
                        "6.13 each costs two mappings)\n");
    st->base = p + guard_size;
    st->size = size;
    st->map = map;
    st->next_free = NULL;
    st->mprotected = mprotected;
    return 0;
}

void bl__stack_unmap(bl__stack *st)
{
    char *p = st->base - guard_size;
    size_t map = st->map;
    int mprotected = st->mprotected;
    if (munmap(p, map) == 0 && mprotected)
        guard_give_back();
}

bl__stack *bl__stack_get(bl__stack_cache *c, size_t size)
{
    if (BL_LIKELY(c->free != NULL && size == c->size)) {
        bl__stack *st = c->free;
        c->free = st->next_free;
        c->nfree--;
        return st;
    }
    /* The descriptor lives in the top bytes of the stack itself, and the
     * top is staggered ("coloured") from one stack to the next: by whole
     * pages, so that the tops fall on every page position modulo 8 pages,
     * and by 0-15 cache lines (less than a page: a thread that touches
     * little of its stack still touches one page). Otherwise the hot frames of every blocked
     * thread sit at the same address modulo the stride of the mappings,
     * land in the same few sets of the L2 cache and evict each other
     * (cachegrind, 1000 echo connections: 5.2 L2 misses per round trip
     * without, 0.04 with; echo throughput +4-8%). The colour area is
     * extra address space above the stack: never touched, so it costs no
     * memory, and the stack keeps at least `size` bytes. */
    static unsigned next_colour;
    unsigned k = __atomic_fetch_add(&next_colour, 1, __ATOMIC_RELAXED);
    size_t ps = bl__page_size();
    size_t area = (BL_STACK_COLOURS + 1) * ps;
    bl__stack tmp;
    if (bl__stack_map(&tmp, size + area) < 0)
        return NULL;
    tmp.size = size;
    uintptr_t end = (uintptr_t)tmp.base + size + area;
    size_t at = (end / ps) % BL_STACK_COLOURS;     /* page position of end */
    size_t want = k % BL_STACK_COLOURS;
    size_t pages = (at + BL_STACK_COLOURS - want) % BL_STACK_COLOURS;
    size_t lines = (k / BL_STACK_COLOURS) % 16;
    char *top = (char *)end - pages * ps - lines * 64;
    bl__stack *st = (bl__stack *)top - 1;
    *st = tmp;
    return st;
}

void bl__stack_put(bl__stack_cache *c, bl__stack *st)
{
    if (st->size == c->size && c->nfree < BL_STACK_CACHE_MAX) {
        st->next_free = c->free;
        c->free = st;
        c->nfree++;
        return;
    }
    bl__stack copy = *st;
    bl__stack_unmap(&copy);
}

int bl__stack_retire(bl__stack_cache *c, bl__stack *st)
{
    if (st->size != c->size)
        return -1;
    if (c->nfree >= BL_STACK_CACHE_MAX) {
        /* Full: make room by unmapping a cached stack instead. */
        bl__stack *old = c->free;
        c->free = old->next_free;
        c->nfree--;
        bl__stack copy = *old;
        bl__stack_unmap(&copy);
    }
    st->next_free = c->free;
    c->free = st;
    c->nfree++;
    return 0;
}

#ifdef BL_ASAN
/* Shadow bytes from which whole shadow pages are handed back to the kernel
 * rather than zeroed: 1 MiB of shadow, a stack of 8 MiB. */
#define ASAN_RELEASE_MIN ((size_t)1 << 20)

/* Clear ASan's shadow of a stack a thread leaves (its frames left redzones
 * poisoned), so that whatever runs there next starts clean. Zeroing the
 * shadow of a big stack would commit an eighth of its size, all of it for a
 * stack of 1 TiB however little was used, so the whole pages in the middle
 * are dropped instead: anonymous memory reads back as zero, which is
 * "addressable" to ASan. The partial pages at the ends are zeroed. */
void bl__stack_asan_clear(bl__stack *st)
{
    char *lo = st->base, *hi = st->base + bl__stack_span(st);
    size_t scale, offset;
    __asan_get_shadow_mapping(&scale, &offset);
    uintptr_t s_lo = ((uintptr_t)lo >> scale) + offset;
    uintptr_t s_hi = ((uintptr_t)hi >> scale) + offset;
    uintptr_t a = (s_lo + page_size - 1) & ~(uintptr_t)(page_size - 1);
    uintptr_t b = s_hi & ~(uintptr_t)(page_size - 1);
    if (b > a && b - a >= ASAN_RELEASE_MIN &&
        madvise((void *)a, b - a, MADV_DONTNEED) == 0) {
        char *mid_lo = (char *)((a - offset) << scale);
        char *mid_hi = (char *)((b - offset) << scale);
        __asan_unpoison_memory_region(lo, (size_t)(mid_lo - lo));
        __asan_unpoison_memory_region(mid_hi, (size_t)(hi - mid_hi));
        return;
    }
    __asan_unpoison_memory_region(lo, (size_t)(hi - lo));
}
#endif

void bl__stack_cache_clear(bl__stack_cache *c)
{
    while (c->free != NULL) {
        bl__stack *st = c->free;
        c->free = st->next_free;
        bl__stack copy = *st;
        bl__stack_unmap(&copy);
    }
    c->nfree = 0;
}

/* ---- stack overflow reports ---- */

static struct sigaction old_segv, old_bus;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

static size_t fmt_u64(char *out, unsigned long long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t append(char *buf, size_t len, size_t cap, const char *s)
{
    while (*s != '\0' && len < cap)
        buf[len++] = *s++;
    return len;
}

static void report_overflow(const bl_thread *t)
{
    char buf[256];
    char num[24];
    size_t len = 0;
    len = append(buf, len, sizeof buf, "bluelet: stack overflow in green thread #");
    num[fmt_u64(num, t->id)] = '\0';
    len = append(buf, len, sizeof buf, num);
    if (t->name[0] != '\0') {
        len = append(buf, len, sizeof buf, " \"");
        len = append(buf, len, sizeof buf, t->name);
        len = append(buf, len, sizeof buf, "\"");
    }
    len = append(buf, len, sizeof buf, " (stack size ");
    num[fmt_u64(num, t->stack->size)] = '\0';
    len = append(buf, len, sizeof buf, num);
    len = append(buf, len, sizeof buf,
                 " bytes); give it a larger stack with bl_spawn_ex() or "
                 "bl_sched_set_stack_size()\n");
    ssize_t r = write(STDERR_FILENO, buf, len);
    (void)r;
}

static int in_guard(const bl__stack *st, const char *addr)
{
    return st != NULL && addr < st->base && addr >= st->base - guard_size;
}

/* The thread of s whose stack guard holds addr, or NULL. Mostly the running
 * one; but a switch names the next thread current before it pushes the
 * registers of the one it leaves (which may be parked or ready, or going
 * to the scheduler with no thread current), so the others are looked at
 * too: reading slots and stack descriptors only, as a handler may. */
static const bl_thread *guard_owner(const bl_sched *s, const char *addr)
{
    const bl_thread *t = s->current;
    if (t != NULL && in_guard(t->stack, addr))
        return t;
    for (size_t c = 0; c < s->nchunks; c++)
        for (int i = 0; i < BL_SLOTS_PER_CHUNK; i++) {
            t = &s->chunks[c][i];
            if ((t->state == BL_T_READY || t->state == BL_T_BLOCKED ||
                 t->state == BL_T_RUNNING) && in_guard(t->stack, addr))
                return t;
        }
    return NULL;
}

/* Whether a replaced SA_RESETHAND handler has run (SIGSEGV, SIGBUS): then
 * the default action holds. Taken with an atomic exchange, so that of two
 * OS threads faulting at once only one runs it, as with the kernel's own
 * reset; old_segv and old_bus themselves are never written after install. */
static int oneshot_spent[2];

/* Run the handler we replaced as the kernel would have: with its sa_mask
 * (and sig, unless SA_NODEFER) blocked. */
static void chain(const struct sigaction *old, int sig, siginfo_t *si,
                  void *uc)
{
    const struct sigaction h = *old;
    sigset_t mask = h.sa_mask, saved;
    if (!(h.sa_flags & SA_NODEFER))
        sigaddset(&mask, sig);
    pthread_sigmask(SIG_BLOCK, &mask, &saved);
    if (h.sa_flags & SA_SIGINFO)
        h.sa_sigaction(sig, si, uc);
    else
        h.sa_handler(sig);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    bl_sched *s = bl__cur;
    struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    /* Only a fault (si_code > 0) has an address: a sent signal's si_addr
     * overlays the sender's pid and uid. */
    const bl_thread *t = s != NULL && si->si_code > 0
                             ? guard_owner(s, si->si_addr) : NULL;
    if (t != NULL) {
        report_overflow(t);
        old = NULL;
    }
    if (old != NULL && (old->sa_flags & SA_RESETHAND) &&
        __atomic_exchange_n(&oneshot_spent[sig == SIGBUS], 1,
                            __ATOMIC_ACQ_REL))
        old = NULL;     /* reset by an earlier run: the default action */
    if (old != NULL && (old->sa_flags & SA_SIGINFO) &&
        old->sa_sigaction != NULL) {
        chain(old, sig, si, uc);
        return;
    }
    if (old != NULL && old->sa_handler == SIG_IGN && si->si_code <= 0)
        return;     /* a sent signal the application ignores */
    if (old != NULL && old->sa_handler != SIG_DFL &&
        old->sa_handler != SIG_IGN) {
        chain(old, sig, si, uc);
        return;
    }
    /* Die of the signal: restore the default action. A fault re-executes the
     * instruction and ends the process; a sent signal is raised again. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (si->si_code <= 0)
        raise(sig);
}

static int handler_installed;

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    handler_installed = 1;
}

/* Put the handlers we replaced back where ours is still installed, when the
 * library is unloaded (dlclose(); at exit too): ours would point into
 * unmapped code. */
__attribute__((destructor)) static void uninstall_handler(void)
{
    if (!handler_installed)
        return;
    static const int sigs[2] = {SIGSEGV, SIGBUS};
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int i = 0; i < 2; i++) {
        struct sigaction cur;
        if (sigaction(sigs[i], NULL, &cur) == 0 &&
            (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault)
            sigaction(sigs[i], __atomic_load_n(&oneshot_spent[i],
                                               __ATOMIC_ACQUIRE)
                                   ? &dfl
                                   : sigs[i] == SIGSEGV ? &old_segv
                                                        : &old_bus,
                      NULL);
    }
}

void bl__overflow_handler_install(void)
{
    pthread_once(&handler_once, install_handler);
}

/* Handlers run on the faulting stack unless an alternate one is set; an
 * overflowed stack has no room, so each OS thread running a scheduler gets
 * one unless it already has its own. */
void *bl__altstack_push(void)
{
    stack_t old;
    if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE))
        return NULL;
    size_t size = 64 * 1024;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    stack_t ss = {.ss_sp = p, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(p, size);
        return NULL;
    }
    return p;
}

void bl__altstack_pop(void *token)
{
    if (token == NULL)
        return;
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(token, 64 * 1024);
}
