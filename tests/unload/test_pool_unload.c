/* SPDX-License-Identifier: MIT */
/*
 * test_pool_unload.c - the lookup pool's threads are gone once the library
 * is unloaded: dlopen() libbluelet, make a name lookup (which starts a pool
 * thread), dlclose(), and count this process's threads. A thread left behind
 * would run code that is no longer mapped; memory checkers would report its
 * resolver state as lost. Likewise the library's SIGSEGV and SIGBUS handler
 * (stack overflow reports): the application's own handlers must be back.
 *
 *   usage: test_pool_unload path/to/libbluelet.so
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bl_sched bl_sched;
typedef struct bl_thread bl_thread;
typedef struct bl_conn bl_conn;
typedef struct bl_listener bl_listener;

static void fail(const char *what)
{
    fprintf(stderr, "FAIL: %s (errno %d: %s; dlerror: %s)\n", what, errno,
            strerror(errno), dlerror());
    exit(1);
}

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        fail("opendir /proc/self/task");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static struct {
    bl_listener *(*listen)(const char *, int, int);
    int (*port)(const bl_listener *);
    bl_conn *(*connect_timeout)(const char *, int, double);
    bl_conn *(*accept)(bl_listener *);
    int (*close)(bl_conn *);
    int (*listener_close)(bl_listener *);
} f;

static void *lookup(void *arg)
{
    (void)arg;
    bl_listener *l = f.listen("127.0.0.1", 0, 4);
    if (l == NULL)
        fail("bl_listen");
    bl_conn *c = f.connect_timeout("localhost", f.port(l), 10);
    if (c == NULL)
        fail("bl_connect_timeout(\"localhost\")");
    bl_conn *in = f.accept(l);
    if (in == NULL || f.close(in) != 0 || f.close(c) != 0 ||
        f.listener_close(l) != 0)
        fail("accept/close");
    return NULL;
}

static volatile sig_atomic_t app_caught;

static void app_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    app_caught = sig;
}

#define SYM(lib, name) dlsym_or_fail(lib, name)
static void *dlsym_or_fail(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (p == NULL)
        fail(name);
    return p;
}

static __attribute__((unused)) void *nothing(void *arg)
{
    return arg;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s libbluelet.so\n", argv[0]);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = app_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || sigaction(SIGBUS, &sa, NULL) != 0)
        fail("sigaction");
#if defined(__SANITIZE_THREAD__)
#define UNLOAD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNLOAD_TSAN 1
#endif
#endif
#ifdef UNLOAD_TSAN
    /* ThreadSanitizer starts a background thread at the first
     * pthread_create(): have it now, so that it is counted before dlopen()
     * as well as after dlclose(). (Not elsewhere: under qemu-user a joined
     * thread stays listed for a while.) */
    pthread_t th;
    if (pthread_create(&th, NULL, nothing, NULL) != 0 ||
        pthread_join(th, NULL) != 0)
        fail("pthread_create");
#endif
    int before = count_threads();
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        fail("dlopen");
    bl_sched *(*sched_new)(void) = SYM(lib, "bl_sched_new");
    bl_thread *(*spawn)(bl_sched *, void *(*)(void *), void *) =
        SYM(lib, "bl_spawn");
    int (*run)(bl_sched *) = SYM(lib, "bl_sched_run");
    void (*sched_free)(bl_sched *) = SYM(lib, "bl_sched_free");
    f.listen = SYM(lib, "bl_listen");
    f.port = SYM(lib, "bl_listener_port");
    f.connect_timeout = SYM(lib, "bl_connect_timeout");
    f.accept = SYM(lib, "bl_accept");
    f.close = SYM(lib, "bl_close");
    f.listener_close = SYM(lib, "bl_listener_close");

    bl_sched *s = sched_new();
    if (s == NULL || spawn(s, lookup, NULL) == NULL || run(s) != 0)
        fail("running the lookup");
    sched_free(s);
    int during = count_threads();
    if (dlclose(lib) != 0)
        fail("dlclose");
    /* A joined thread may stay listed for a moment (under qemu-user the
     * guest's pthread_join() returns before the host thread is gone); a
     * pool thread left running never leaves: wait up to 5 s. */
    int after = count_threads();
    for (int i = 0; i < 500 && after > before; i++) {
        usleep(10000);
        after = count_threads();
    }
    printf("threads: %d before dlopen, %d after the lookup, %d after dlclose\n",
           before, during, after);
    if (during <= before) {
        fprintf(stderr, "FAIL: the lookup started no pool thread: the test "
                        "proves nothing\n");
        return 1;
    }
    if (after != before) {
        fprintf(stderr, "FAIL: %d pool thread(s) outlive dlclose()\n",
                after - before);
        return 1;
    }
    printf("ok: no pool thread outlives the library\n");

    if (dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD) != NULL) {
        printf("note: the library stayed loaded; signal handlers not "
               "checked\n");
        return 0;
    }
    static const int sigs[2] = {SIGSEGV, SIGBUS};
    for (int i = 0; i < 2; i++) {
        struct sigaction cur;
        if (sigaction(sigs[i], NULL, &cur) != 0)
            fail("sigaction");
        if (!(cur.sa_flags & SA_SIGINFO) || cur.sa_sigaction != app_handler) {
            fprintf(stderr, "FAIL: after dlclose the handler of signal %d "
                            "is not the application's again\n", sigs[i]);
            return 1;
        }
    }
    raise(SIGSEGV);
    if (app_caught != SIGSEGV) {
        fprintf(stderr, "FAIL: the application's SIGSEGV handler did not "
                        "run\n");
        return 1;
    }
    printf("ok: the application's SIGSEGV and SIGBUS handlers are back\n");
    return 0;
}
