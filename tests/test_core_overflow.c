/* SPDX-License-Identifier: MIT */
/*
 * test_core_overflow.c - a green thread that overflows its stack ends the
 * process with a message naming the thread and its stack size; a fault that
 * is not a stack overflow is not reported as one.
 *
 * Each case runs in a forked child (no core dump). Observed behaviour: the
 * library's SIGSEGV handler runs first (also under ASan, whose handler it
 * chains to for faults that are not its own), prints its message and the
 * child dies of SIGSEGV. Under ASan, should ASan's own handler see the
 * overflow first, its "stack-overflow" report is accepted instead, but the
 * child must still die abnormally.
 */
#include "core_util.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>

static volatile int sink;

static int __attribute__((noinline)) recurse(int depth)
{
    volatile char buf[512];
    buf[0] = (char)depth;
    if (depth > 100000000)
        return 0;
    int r = recurse(depth + 1);
    /* Volatile accesses after the call: no tail call, no loop. */
    buf[1] = (char)r;
    return buf[0] + buf[1];
}

static void *deep(void *arg)
{
    (void)arg;
    sink = recurse(0);
    return NULL;
}

static void no_core(void)
{
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
}

static int child_named(void)
{
    no_core();
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_spawn_opts o = {.size = sizeof o, .stack_size = 64 * 1024,
                       .name = "deep"};
    CHECK(bl_spawn_ex(s, deep, NULL, &o) != NULL);
    bl_sched_run(s);
    fprintf(stderr, "child: bl_sched_run returned after the overflow\n");
    return 3;
}

static void *trivial(void *arg)
{
    return arg;
}

static int child_unnamed_default(void)
{
    no_core();
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    /* Four threads that end first, so the overflowing one is #5. */
    for (int i = 0; i < 4; i++) {
        bl_thread *t = bl_spawn(s, trivial, NULL);
        CHECK(t != NULL && bl_detach(t) == 0);
    }
    bl_thread *t = bl_spawn(s, deep, NULL);
    CHECK(t != NULL && bl_thread_id(t) == 5);
    bl_sched_run(s);
    return 3;
}

/* ---- an overflow inside a switch ---- */

/* A thread whose stack is all but full calls bl_yield(): the fault may come
 * in the switch itself, which pushes on the stack it leaves after naming
 * the next thread current. Each headroom (bytes left above the guard when
 * bl_yield() is called) runs in its own child. */
static long headroom;

/* The lowest byte of the stack holding addr: the first page below that
 * cannot be read is the guard (write(2) from it fails with EFAULT). */
static char *stack_low_end(void *addr)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
    char *p = (char *)((uintptr_t)addr & ~(ps - 1));
    char c;
    while (write(fds[1], p - ps, 1) == 1) {
        CHECK(read(fds[0], &c, 1) == 1);
        p -= ps;
    }
    close(fds[0]);
    close(fds[1]);
    return p;
}

/* Call bl_yield() with the stack pointer at sp. */
static void yield_on(char *sp)
{
#if defined(__x86_64__)
    __asm__ volatile("mov %%rsp, %%rbx\n\t"
                     "mov %0, %%rsp\n\t"
                     "call bl_yield@PLT\n\t"
                     "mov %%rbx, %%rsp"
                     :
                     : "r"(sp)
                     : "rbx", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9",
                       "r10", "r11", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
                       "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
                       "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory",
                       "cc");
#elif defined(__aarch64__)
    __asm__ volatile("mov x19, sp\n\t"
                     "mov sp, %0\n\t"
                     "bl bl_yield\n\t"
                     "mov sp, x19"
                     :
                     : "r"(sp)
                     : "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8",
                       "x9", "x10", "x11", "x12", "x13", "x14", "x15", "x16",
                       "x17", "x18", "x19", "x30", "v0", "v1", "v2", "v3",
                       "v4", "v5", "v6", "v7", "v16", "v17", "v18", "v19",
                       "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27",
                       "v28", "v29", "v30", "v31", "memory", "cc");
#else
#error "yield_on: add this architecture"
#endif
}

static void *yield_near_guard(void *arg)
{
    (void)arg;
    char here;
    CHECK(bl_yield() == 0);     /* bind bl_yield's PLT slot first */
    yield_on(stack_low_end(&here) + headroom);
    return NULL;
}

static void *other(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++)
        CHECK(bl_yield() == 0);
    return NULL;
}

static int child_switch(void)
{
    no_core();
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    bl_spawn_opts o = {.size = sizeof o, .name = "tight"};
    CHECK(bl_spawn_ex(s, yield_near_guard, NULL, &o) != NULL);
    CHECK(bl_spawn(s, other, NULL) != NULL);
    bl_sched_run(s);
    return 0;   /* enough room for the switch */
}

static void test_overflow_in_switch(void)
{
    static const char *const want[] = {"stack overflow", "\"tight\"", NULL};
    int died = 0;
    for (headroom = 0; headroom <= 512; headroom += 16) {
        static core_child c;
        core_run_child(child_switch, 60.0, &c);
        if (WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0)
            continue;
        char what[64];
        snprintf(what, sizeof what, "bl_yield %ld bytes above the guard",
                 headroom);
        died++;
        int by_segv = WIFSIGNALED(c.status) &&
                      (WTERMSIG(c.status) == SIGSEGV ||
                       WTERMSIG(c.status) == SIGBUS);
        char st[64];
        core_child_describe(&c, st, sizeof st);
        if (!by_segv || strstr(c.err, want[0]) == NULL ||
            strstr(c.err, want[1]) == NULL)
            CORE_FAIL("%s: child %s, stderr:\n%s", what, st, c.err);
    }
    CHECK(died > 0);
    printf("overflow in a switch: reported at each of %d headrooms that "
           "overflowed\n", died);
}

/* ---- a SIGSEGV the application ignores stays ignored ---- */

static int child_sigign(void)
{
    no_core();
    CHECK(signal(SIGSEGV, SIG_IGN) != SIG_ERR);
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    CHECK(bl_spawn(s, trivial, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    raise(SIGSEGV);     /* sent, not a fault: ignored */
    bl_sched_free(s);
    return 0;
}

/* ---- a handler of the application's, chained to, runs as the kernel
 * would run it: with its sa_mask, and once with SA_RESETHAND ---- */

static volatile sig_atomic_t app_calls, app_usr1_blocked;

static void app_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    app_usr1_blocked = sigismember(&cur, SIGUSR1);
    app_calls++;
}

static int child_chain_flags(void)
{
    no_core();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = app_segv;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR1);
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
    bl_sched *s = bl_sched_new();    /* installs the library's handler */
    CHECK(s != NULL);
    CHECK(bl_spawn(s, trivial, NULL) != NULL);
    CHECK(bl_sched_run(s) == 0);
    raise(SIGSEGV);     /* chained to app_segv */
    CHECK(app_calls == 1);
    CHECK(app_usr1_blocked);
    sigset_t cur;
    CHECK(pthread_sigmask(SIG_BLOCK, NULL, &cur) == 0);
    CHECK(!sigismember(&cur, SIGUSR1));
    fprintf(stderr, "app handler ran once, with SIGUSR1 blocked\n");
    raise(SIGSEGV);     /* SA_RESETHAND: the default action now */
    fprintf(stderr, "still alive after the second SIGSEGV\n");
    return 3;
}

static void *bad_access(void *arg)
{
    /* Not a NULL dereference (UBSan would catch that first): a read of a
     * page that is mapped PROT_NONE, far from any stack guard. */
    volatile int *p = arg;
    sink = *p;
    return NULL;
}

static int child_not_overflow(void)
{
    no_core();
    bl_sched *s = bl_sched_new();
    CHECK(s != NULL);
    void *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                      0);
    CHECK(page != MAP_FAILED);
    bl_spawn_opts o = {.size = sizeof o, .name = "badaccess"};
    CHECK(bl_spawn_ex(s, bad_access, page, &o) != NULL);
    bl_sched_run(s);
    return 3;
}

static void check_overflow_child(const char *what, int (*fn)(void),
                                 const char *const *needles)
{
    static core_child c;
    core_run_child(fn, 60.0, &c);
    char st[64];
    core_child_describe(&c, st, sizeof st);
    printf("--- %s: child %s after %.3f s; stderr:\n%s", what, st, c.seconds,
           c.err);
    int by_segv = WIFSIGNALED(c.status) && (WTERMSIG(c.status) == SIGSEGV ||
                                            WTERMSIG(c.status) == SIGBUS);
    int asan_report = strstr(c.err, "AddressSanitizer") != NULL &&
                      strstr(c.err, "stack-overflow") != NULL;
#ifdef CORE_ASAN
    /* ASan may report the overflow itself and exit(1). */
    int abnormal = WIFSIGNALED(c.status) ||
                   (WIFEXITED(c.status) && WEXITSTATUS(c.status) != 0 &&
                    WEXITSTATUS(c.status) != 3);
    if (!by_segv && !(asan_report && abnormal))
        CORE_FAIL("%s: child %s, expected death by SIGSEGV", what, st);
    if (asan_report && !by_segv) {
        printf("%s: ASan reported the overflow itself\n", what);
        return;
    }
#else
    (void)asan_report;
    if (!by_segv)
        CORE_FAIL("%s: child %s, expected death by SIGSEGV", what, st);
#endif
    for (size_t i = 0; needles[i] != NULL; i++)
        if (strstr(c.err, needles[i]) == NULL)
            CORE_FAIL("%s: stderr lacks \"%s\"", what, needles[i]);
}

int main(void)
{
    static const char *const named[] = {"stack overflow", "\"deep\"", "65536",
                                        NULL};
    check_overflow_child("named thread, 64 KiB stack", child_named, named);

    char def[32];
    snprintf(def, sizeof def, "%u", BL_DEFAULT_STACK_SIZE);
    const char *const unnamed[] = {"stack overflow", "#5", def, NULL};
    check_overflow_child("unnamed thread, default stack",
                         child_unnamed_default, unnamed);

    test_overflow_in_switch();

    core_run_child_ok("SIGSEGV ignored by the application, then raised",
                      child_sigign, 60.0);
    printf("a sent SIGSEGV the application ignores: still ignored\n");

    {
        static core_child c;
        core_run_child(child_chain_flags, 60.0, &c);
        char st[64];
        core_child_describe(&c, st, sizeof st);
        printf("--- chained handler with sa_mask and SA_RESETHAND: child %s; "
               "stderr:\n%s", st, c.err);
        CHECK(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGSEGV);
        CHECK(strstr(c.err, "app handler ran once, with SIGUSR1 blocked") !=
              NULL);
    }

    /* A bad access in a green thread (not an overflow): SIGSEGV (under ASan
     * or TSan the sanitizer's SEGV report), but no overflow message. */
    static core_child c;
    core_run_child(child_not_overflow, 60.0, &c);
    char st[64];
    core_child_describe(&c, st, sizeof st);
    printf("--- bad access: child %s; stderr:\n%s", st, c.err);
    CHECK(WIFSIGNALED(c.status) ||
          (WIFEXITED(c.status) && WEXITSTATUS(c.status) != 0 &&
           WEXITSTATUS(c.status) != 3));
#if !defined(CORE_ASAN) && !defined(CORE_TSAN)
    CHECK(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGSEGV);
#else
    CHECK((WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGSEGV) ||
          strstr(c.err, "Sanitizer:DEADLYSIGNAL") != NULL);
#endif
    if (strstr(c.err, "stack overflow") != NULL)
        CORE_FAIL("a bad access was reported as a stack overflow");
    printf("core_overflow: ok\n");
    return 0;
}
