/* SPDX-License-Identifier: MIT */
/*
 * bluelet.h - green threads and evented sockets for C.
 *
 * libbluelet runs many cooperative green threads inside one OS thread. A green
 * thread looks like ordinary sequential code: it calls bl_recv(), bl_sleep()
 * or bl_join() and is suspended until that call can complete, while the
 * scheduler runs the other green threads and waits for I/O with libev.
 *
 * ABI: versions with the same major number are ABI compatible. Every type
 * here is opaque or a size-prefixed options struct; no struct layout is part
 * of the ABI.
 *
 * Conventions:
 *   - Functions return -1 (or NULL) and set errno on failure, like the POSIX
 *     calls they mirror. The errno values are listed with each function.
 *   - "Blocking" functions suspend the calling green thread. Called outside
 *     any green thread they fail with EPERM. Once the calling green thread has
 *     been cancelled (bl_cancel), every blocking call fails with ECANCELED
 *     (the one exception: bl_join() of a thread that has already ended).
 *     Every blocking call can be bounded in time (ETIMEDOUT).
 *   - Time is a double, in seconds.
 *   - Unless a function says otherwise it must be called from the OS thread
 *     that runs (or will run) the scheduler the object belongs to.
 *
 * Copyright (c) 2026 the libbluelet authors. MIT licence, see LICENSE.
 */
#ifndef BLUELET_H
#define BLUELET_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versioning and visibility                                                */
/* ------------------------------------------------------------------------ */

#define BL_VERSION_MAJOR 1
#define BL_VERSION_MINOR 1
#define BL_VERSION_PATCH 0
#define BL_VERSION_STRING "1.1.0"
/* One number for compile-time comparisons: 0xMMmmpp. */
#define BL_VERSION_HEX \
    ((BL_VERSION_MAJOR << 16) | (BL_VERSION_MINOR << 8) | BL_VERSION_PATCH)

/* unsigned long long is C99: __extension__ lets gcc and clang accept it in
 * -std=c89 -pedantic builds of programs that include this header. */
#if defined(__GNUC__)
#define BL_EXTENSION __extension__
#else
#define BL_EXTENSION
#endif

#if defined(BL_STATIC)
#define BL_API
#elif defined(__GNUC__)
#define BL_API __attribute__((visibility("default")))
#else
#define BL_API
#endif

/* The version of the library loaded at run time, e.g. "1.0.0". Never NULL. */
BL_API const char *bl_version(void);

/* ------------------------------------------------------------------------ */
/* Schedulers                                                               */
/* ------------------------------------------------------------------------ */

typedef struct bl_sched bl_sched;     /* opaque scheduler */
typedef struct bl_thread bl_thread;   /* opaque green thread */
typedef void *(*bl_func)(void *arg);  /* a green thread's body */
struct ev_loop;                       /* libev's loop, see bl_sched_loop() */

/* Default stack size of a green thread: 256 KiB of address space, committed
 * page by page as it is touched. Below each stack lies a guard region; running
 * into it ends the process with a message naming the green thread. (Before
 * Linux 6.13 a guard costs two memory mappings, and stacks beyond 3/8 of
 * vm.max_map_count alive at once get none: see docs/internals.md.) */
#define BL_DEFAULT_STACK_SIZE (256u * 1024u)
/* The smallest stack size accepted. */
#define BL_MIN_STACK_SIZE (16u * 1024u)

/* Create a scheduler with its own libev loop. (libev itself ends the process
 * with a message when it cannot allocate memory, here or later.)
 * Returns NULL and sets errno: ENOMEM; EMFILE or ENFILE when no descriptor
 * is left (a scheduler uses two with epoll: epoll's and an eventfd); ENOSPC
 * when the kernel refuses to watch the scheduler's wake-up descriptor (the
 * per-user limit fs.epoll.max_user_watches is reached); or whatever else
 * libev's loop creation reports. */
BL_API bl_sched *bl_sched_new(void);

/* Run green threads until none remains (watchers of your own in the loop,
 * see bl_sched_loop(), do not keep it running then).
 * Returns 0 when every green thread has ended. Returns -1 and sets errno:
 *   EINVAL  s is NULL.
 *   EBUSY   s is already running, or another scheduler runs in this OS thread.
 *   EDEADLK green threads remain but nothing can ever wake them (for instance
 *           two threads joining each other). The stuck threads are listed on
 *           stderr; they stay suspended and bl_sched_free() cancels them.
 * bl_sched_run() may be called again after it returned (new threads may have
 * been spawned meanwhile). */
BL_API int bl_sched_run(bl_sched *s);

/* Free a scheduler. Green threads still alive are cancelled and run until
 * they return (their blocking calls fail with ECANCELED), then everything is
 * released. Connections and listeners tied to s (see bl_conn_new()) are
 * untied, not closed: close them later, or use them from another scheduler.
 * NULL is a no-op. Must not be called while s runs, nor, while s still has
 * green threads, from inside another scheduler running in the same OS
 * thread (a green thread or a callback of it): s's threads must run to
 * unwind, and schedulers do not nest. It prints an error and does nothing
 * then. */
BL_API void bl_sched_free(bl_sched *s);

/* The scheduler running in this OS thread, or NULL. */
BL_API bl_sched *bl_sched_current(void);

/* Set the default stack size of threads spawned on s from now on. The size is
 * rounded up to whole pages. Returns 0, or -1 with EINVAL (s NULL, or size
 * below BL_MIN_STACK_SIZE or above 1 TiB). */
BL_API int bl_sched_set_stack_size(bl_sched *s, size_t size);

/* The default stack size of s (0 and EINVAL for NULL). */
BL_API size_t bl_sched_stack_size(const bl_sched *s);

/* The number of green threads of s that have not yet ended (0 for NULL). */
BL_API size_t bl_sched_nthreads(const bl_sched *s);

/* The libev loop of s (NULL with EINVAL for NULL), for adding watchers of
 * your own to it. The loop must
 * only be used from the OS thread running s. An active watcher of yours keeps
 * bl_sched_run() from reporting EDEADLK (its callback might wake a thread).
 * bl_sched_run() runs the loop; do not run it yourself, and leave its
 * release/acquire callbacks (ev_set_loop_release_cb) to libbluelet. Its
 * userdata (ev_set_userdata) is yours. */
BL_API struct ev_loop *bl_sched_loop(bl_sched *s);

/* ------------------------------------------------------------------------ */
/* Green threads                                                            */
/* ------------------------------------------------------------------------ */

/* Options for bl_spawn_ex(). Zero-initialise it and set .size to
 * sizeof(bl_spawn_opts); fields added in later versions default to zero.
 * Later fields go after the end of this struct, never into its padding
 * (which is not checked: compilers need not zero it), so .size always
 * tells which fields a caller knows. */
typedef struct bl_spawn_opts {
    size_t size;        /* sizeof(bl_spawn_opts) */
    size_t stack_size;  /* 0: the scheduler's default */
    const char *name;   /* copied (up to 31 bytes); NULL: none */
    int detached;       /* nonzero: as if bl_detach() were called at once */
} bl_spawn_opts;

/* Create a green thread running fn(arg) on scheduler s. s may be NULL inside
 * a green thread: the caller's own scheduler. The new thread does not run at
 * once: it is appended to the ready queue and the caller goes on.
 * Returns the thread handle, or NULL and sets errno:
 *   EINVAL  fn is NULL, or s is NULL outside any green thread.
 *   ENOMEM  no memory or address space for its stack. */
BL_API bl_thread *bl_spawn(bl_sched *s, bl_func fn, void *arg);

/* bl_spawn() with options (opts may be NULL). Extra errno:
 *   EINVAL  opts->size is 0 or unknown bytes past the known fields are not
 *           zero, or stack_size is nonzero and below BL_MIN_STACK_SIZE or
 *           above 1 TiB. */
BL_API bl_thread *bl_spawn_ex(bl_sched *s, bl_func fn, void *arg,
                              const bl_spawn_opts *opts);

/* Give the other ready threads a turn: the caller goes to the back of the
 * ready queue. Blocking. Returns 0, or -1 with EPERM or ECANCELED. */
BL_API int bl_yield(void);

/* Suspend the caller for at least `seconds`. Threads whose deadlines pass
 * wake in deadline order. bl_sleep(0) lets due timers and ready I/O run
 * before the caller continues; bl_sleep(INFINITY) sleeps until cancelled
 * (with nothing left that could cancel it, bl_sched_run() reports a
 * deadlock). Blocking.
 * Returns 0, or -1 and sets errno: EPERM, ECANCELED, EINVAL (seconds < 0 or
 * NaN). */
BL_API int bl_sleep(double seconds);

/* Wait for t to end and reap it; *result (if result is not NULL) receives
 * its function's return value or bl_exit()'s argument. Returns at once if t
 * has already ended (also when the caller is cancelled). After a successful
 * join the handle is invalid, as is a detached thread's once it has ended:
 * like a pthread_t, it must not be used again. (Such a handle is caught
 * with EINVAL only until its slot is reused by a later bl_spawn(); then it
 * names that new thread.) "Not a thread" below means such a stale handle:
 * a pointer that never came from bl_spawn() is undefined behaviour, for
 * this and every other function taking a bl_thread. Blocking.
 * Returns 0, or -1 and sets errno:
 *   EINVAL  t is NULL, not a thread, already joined or being joined, or
 *           detached; or t belongs to another scheduler.
 *   EDEADLK t is the calling thread.
 *   EPERM   called outside any green thread.
 *   ECANCELED the caller was cancelled while (or before) waiting; t is left
 *           as it was and may be joined later. */
BL_API int bl_join(bl_thread *t, void **result);

/* bl_join() waiting at most `timeout` seconds (timeout < 0: no limit).
 * Extra errno: ETIMEDOUT (t is left as it was and may be joined later);
 * EINVAL also for a NaN timeout. */
BL_API int bl_join_timeout(bl_thread *t, void **result, double timeout);

/* Let t be reaped as soon as it ends; it can no longer be joined.
 * Returns 0, or -1 with EINVAL (t NULL, invalid, already detached, joined or
 * being joined). */
BL_API int bl_detach(bl_thread *t);

/* Cancel t: its current blocking call and every later one fail with
 * ECANCELED, even those that would not have to wait (bl_join() of an ended
 * thread excepted), so that it can release what it holds and return.
 * Cancelling an ended thread succeeds and does nothing. Not blocking; may be
 * called from outside green threads (on the scheduler's OS thread).
 * Returns 0, or -1 with EINVAL (t NULL or invalid). */
BL_API int bl_cancel(bl_thread *t);

/* End the calling green thread with `result` (what bl_join() reports). Does
 * not return, except when called outside any green thread: then it sets
 * errno to EPERM and returns. */
BL_API void bl_exit(void *result);

/* The calling green thread, or NULL outside green threads. */
BL_API bl_thread *bl_self(void);

/* Nonzero when the calling green thread has been cancelled. */
BL_API int bl_cancelled(void);

/* Name a thread (copied, truncated to 31 bytes; NULL clears it). The name
 * shows in deadlock reports and stack-overflow messages.
 * Returns 0, or -1 with EINVAL. */
BL_API int bl_thread_set_name(bl_thread *t, const char *name);

/* The thread's name ("" when it has none), or NULL with EINVAL. The string
 * lives as long as the thread handle. */
BL_API const char *bl_thread_name(const bl_thread *t);

/* A number identifying t, unique within its scheduler (0 with EINVAL). */
BL_EXTENSION BL_API unsigned long long bl_thread_id(const bl_thread *t);

/* ------------------------------------------------------------------------ */
/* Waiting for file descriptors                                             */
/* ------------------------------------------------------------------------ */

enum { BL_READ = 1, BL_WRITE = 2 };

/* Wait until fd is readable (BL_READ) and/or writable (BL_WRITE), at most
 * `timeout` seconds (timeout < 0: no limit). Blocking.
 * Returns the ready events (a nonzero subset of `events`), or -1 and sets
 * errno: ETIMEDOUT, ECANCELED, EPERM, EINVAL (fd < 0, events not a nonempty
 * subset of BL_READ | BL_WRITE, or a NaN timeout), EBADF (fd is not open).
 * A descriptor the kernel refuses to watch (epoll_ctl fails, e.g. ENOSPC
 * at fs.epoll.max_user_watches) is retried after a pause (1 ms, doubling up
 * to 0.1 s) until the timeout. A ready descriptor is reported as ready
 * however short the timeout. Closing fd while a thread waits on it does not
 * wake that thread (the kernel forgets the descriptor): it waits until its
 * timeout; wake it first, e.g. with bl_cancel(). */
BL_API int bl_wait_fd(int fd, int events, double timeout);

/* ------------------------------------------------------------------------ */
/* Sockets                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct bl_listener bl_listener;  /* a listening socket */
typedef struct bl_conn bl_conn;          /* a buffered stream connection */
typedef void (*bl_handler)(bl_conn *conn, void *arg);

/* Listen on TCP `host`:`port`. host NULL or "" listens on every address,
 * IPv6 and IPv4 where the system has IPv6, else IPv4; "::" is IPv6 (and
 * IPv4-mapped); a name is resolved (this may block: prefer addresses).
 * port 0 picks an ephemeral port (see bl_listener_port()). backlog <= 0
 * means SOMAXCONN. Not blocking; may be called outside green threads.
 * Returns NULL and sets errno: EINVAL (port out of 0..65535), EADDRINUSE,
 * EACCES, EADDRNOTAVAIL (also for a name that does not resolve), EAGAIN (a
 * temporary failure of name resolution, e.g. no DNS server answered: try
 * again later), EMFILE, ENOMEM, or another socket(2)/bind(2)/listen(2)
 * error. */
BL_API bl_listener *bl_listen(const char *host, int port, int backlog);

/* Listen on the Unix-domain stream socket at `path` (an existing socket file
 * there is not removed; remove it first). Errors as bl_listen(), plus
 * ENAMETOOLONG; EINVAL is for path NULL or "". */
BL_API bl_listener *bl_listen_unix(const char *path, int backlog);

/* The local port of a TCP listener (-1 with EINVAL for NULL or Unix). */
BL_API int bl_listener_port(const bl_listener *l);

/* The listening descriptor (-1 with EINVAL for NULL). */
BL_API int bl_listener_fd(const bl_listener *l);

/* Accept a connection. Blocking. When the process is out of descriptors
 * (EMFILE, ENFILE) or memory, waits and retries with a growing pause instead
 * of spinning; the connection stays queued meanwhile. Returns the
 * connection, or NULL and sets errno: EPERM, ECANCELED, EINVAL (l NULL),
 * EBADF (l was closed while waiting), EBUSY (another thread is accepting on
 * l), ETIMEDOUT (bl_listener_set_timeout), EXDEV (l is tied to another
 * scheduler and the call would have to wait: no connection is queued, or
 * the process is out of descriptors or memory; see bl_conn_new()), or another
 * error of accept(2) (such as EPERM from a firewall rule).
 * Connections aborted before they were accepted are skipped. */
BL_API bl_conn *bl_accept(bl_listener *l);

/* Bound every later bl_accept() on l by `seconds` (0: no bound).
 * Returns 0, or -1 with EINVAL. */
BL_API int bl_listener_set_timeout(bl_listener *l, double seconds);

/* Close and free a listener. A green thread blocked in bl_accept() on it
 * wakes with EBADF. Once this returns 0, l is invalid, as after free(): do
 * not pass it to any function again (EBADF is what threads that were
 * already waiting on it get, and calls made while they still are). Returns 0, or -1 with EINVAL (NULL) or EXDEV
 * (l is tied to a scheduler that is running in another OS thread, see
 * bl_close(); l stays open). */
BL_API int bl_listener_close(bl_listener *l);

/* Connect to TCP `host`:`port`, trying each address the name resolves to.
 * Names are resolved on a helper OS thread, so the scheduler keeps running.
 * Blocking. Returns the connection, or NULL and sets errno: ECONNREFUSED,
 * ETIMEDOUT, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL (name not resolved; see
 * bl_resolve_error(); also for host ""), EAGAIN (a temporary failure
 * of name resolution: try again later), ECANCELED, EPERM, EINVAL, EMFILE or
 * ENFILE (no descriptor for the socket), ENOMEM. */
BL_API bl_conn *bl_connect(const char *host, int port);

/* bl_connect() bounded by `timeout` seconds in all (timeout <= 0: none):
 * name resolution and connecting together. A lookup still running at the
 * deadline is abandoned (it finishes on its helper thread and is freed).
 * Extra errno: ETIMEDOUT; EINVAL also for a NaN timeout. */
BL_API bl_conn *bl_connect_timeout(const char *host, int port, double timeout);

/* Connect to the Unix-domain stream socket at `path`. Blocking: while the
 * listener's backlog is full it retries (every few ms to 0.1 s) until it gets
 * in or is cancelled. Errors as bl_connect() plus ENOENT, ENAMETOOLONG. */
BL_API bl_conn *bl_connect_unix(const char *path);

/* bl_connect_unix() bounded by `timeout` seconds (timeout <= 0 or infinite:
 * none). Extra errno: ETIMEDOUT; EINVAL also for a NaN timeout. */
BL_API bl_conn *bl_connect_unix_timeout(const char *path, double timeout);

/* Why the name of the last bl_listen() or bl_connect*() call of this OS
 * thread (not the Unix ones) did not resolve: "host: " and the resolver's
 * text (gai_strerror), or "" when the name was resolved (the call then
 * failed, if it did, after resolving: in bind(2) or connect(2)) or none
 * was given. Read it right after the failed call: another green thread's
 * call in this OS thread replaces it. */
BL_API const char *bl_resolve_error(void);

/* Wrap a connected stream socket (any family, e.g. from socketpair(2)); it is
 * made non-blocking and close-on-exec, and bl_close() closes it. A pipe,
 * FIFO or terminal works too (read(2) and write(2) are used; a write to a
 * pipe without reader fails with EPIPE, without SIGPIPE either). Not
 * blocking; may be called outside green threads. A connection (like a
 * listener) is tied to the scheduler of the first green thread that waits on
 * it, until that scheduler is freed: a call from another scheduler's thread
 * that would have to wait fails with EXDEV. Returns NULL and sets errno:
 * EINVAL (fd < 0), EBADF, ENOMEM. */
BL_API bl_conn *bl_conn_new(int fd);

/* Receive up to len bytes (bytes buffered by bl_readline() first).
 * Blocking. Returns the count, 0 at end of stream (or len == 0), or -1 and
 * sets errno: ECONNRESET, ETIMEDOUT (bl_conn_set_timeout), ECANCELED, EPERM,
 * EBADF (closed while waiting), EBUSY (another thread is receiving on c),
 * EINVAL, EXDEV (c is tied to another scheduler, see bl_conn_new()). */
BL_API ssize_t bl_recv(bl_conn *c, void *buf, size_t len);

/* Send some of buf, waiting until at least one byte can be sent. Blocking.
 * Never raises SIGPIPE. Returns the count sent, or -1 and sets errno: EPIPE,
 * ECONNRESET, ETIMEDOUT, ECANCELED, EPERM, EBADF, EBUSY (another thread is
 * sending on c), EINVAL, EXDEV. */
BL_API ssize_t bl_send(bl_conn *c, const void *buf, size_t len);

/* Send all len bytes. Blocking: a slow peer suspends only the caller.
 * Returns 0, or -1 with the errors of bl_send(); on failure some bytes may
 * have been sent. */
BL_API int bl_sendall(bl_conn *c, const void *buf, size_t len);

/* bl_readuntil(c, buf, cap, "\n", 1). */
BL_API ssize_t bl_readline(bl_conn *c, char *buf, size_t cap);

/* Read up to and including the delimiter `delim` (dlen bytes, dlen >= 1),
 * store it NUL-terminated in buf and return its length without the NUL. At
 * end of stream the bytes left without a delimiter are returned; after that,
 * 0. Blocking. Returns -1 and sets errno:
 *   EMSGSIZE the line does not fit in cap - 1 bytes; nothing is consumed, so
 *            the bytes can still be read with bl_recv() or a larger buffer.
 *   EINVAL   c, buf or delim NULL, cap < 2 or dlen 0.
 *   ENOMEM   no memory for c's read buffer, which starts at 16 KiB and
 *            doubles while a line is incomplete, to at most the larger
 *            of 16 KiB and 2 * cap (the bytes stay readable).
 *   and the errors of bl_recv(). */
BL_API ssize_t bl_readuntil(bl_conn *c, char *buf, size_t cap,
                            const void *delim, size_t dlen);

/* Shut down reading, writing or both (SHUT_RD, SHUT_WR, SHUT_RDWR), as
 * shutdown(2). A green thread of the caller's scheduler blocked on c in the
 * shut direction retries its call: a writer then fails with EPIPE.
 * Returns 0, or -1 with errno from shutdown(2), EINVAL (c NULL) or EBADF
 * (c was closed while another thread was still inside a call on it; see
 * bl_close()). */
BL_API int bl_shutdown(bl_conn *c, int how);

/* Bound every later blocking call on c by `seconds` (each call gets its own
 * deadline); 0 removes the bound. A read that times out reads once more
 * first: ETIMEDOUT means nothing was there at the deadline. Returns 0, or -1 with EINVAL (c NULL,
 * seconds negative or NaN). */
BL_API int bl_conn_set_timeout(bl_conn *c, double seconds);

/* The connection's descriptor (-1 with EINVAL for NULL). Bytes that
 * bl_readline() or bl_readuntil() buffered are no longer in it: a
 * bl_wait_fd() on it does not see them. */
BL_API int bl_conn_fd(const bl_conn *c);

/* Close the connection and free it. Green threads blocked on c wake with
 * EBADF; the memory is released once they have left (until then, calls on c
 * fail with EBADF). Once this returns 0 (or a close(2) error), c is
 * invalid, as after free(): do not pass it to any function again. Returns
 * 0, or -1 with
 * EINVAL (NULL); a close(2) error is reported too, but c is freed anyway.
 * Fails with EXDEV, leaving c open, when c is tied (see bl_conn_new()) to a
 * scheduler that is running in another OS thread: its watchers are in that
 * scheduler's loop, which only its own thread may change. Close c in that
 * thread, or once that scheduler has returned from bl_sched_run() or been
 * freed. */
BL_API int bl_close(bl_conn *c);

/* Listen on host:port (as bl_listen()), then spawn on s (NULL: the caller's
 * scheduler) an acceptor green thread that runs h(conn, arg) in a new
 * detached green thread per connection and closes conn when h returns or
 * calls bl_exit() (h may also bl_close() conn itself before it returns).
 * Cancelling the acceptor (bl_cancel) closes the listener;
 * running handlers go on. The acceptor also ends, closing the listener, when
 * accepting on it cannot work (bl_accept() fails with EBADF, EXDEV, EBUSY,
 * EINVAL or ENOTSOCK); other errors are retried after a short pause.
 * Returns the acceptor's handle (joinable; it ends only in those cases), or
 * NULL with the errors of bl_listen() and bl_spawn(). */
BL_API bl_thread *bl_serve(bl_sched *s, const char *host, int port,
                           bl_handler h, void *arg);

/* bl_serve() on a listener of your own (for instance bl_listen() on port 0,
 * to learn the port first, or bl_listen_unix()). The acceptor owns l from
 * now on and closes it when it ends, also when this call fails, except with
 * EXDEV: l is tied to another scheduler than s (a thread of that one waited
 * in bl_accept() on it; see bl_close()), where an acceptor on s could not
 * wait on it, nor close it once that scheduler runs in another OS thread; l
 * stays open, and yours. */
BL_API bl_thread *bl_serve_listener(bl_sched *s, bl_listener *l, bl_handler h,
                                    void *arg);

/* ------------------------------------------------------------------------ */
/* Channels and synchronisation                                             */
/* ------------------------------------------------------------------------ */

/* Channels, conditions and wait groups coordinate the green threads of one
 * scheduler. They are not locked: use each from one OS thread, the one
 * running the scheduler its waiters belong to. An object is tied to the
 * scheduler of the first green thread that waits on it, until no thread
 * waits on it any more; a thread of another scheduler that would have to
 * wait meanwhile fails with EXDEV. (To hand work to a scheduler in another
 * OS thread, see bl_sched_post().) Calls that do not wait (bl_chan_close(),
 * bl_cond_signal(), bl_wg_add(), ...) may also be made outside green
 * threads. When they would wake waiters, they fail with EXDEV, doing
 * nothing, if those waiters belong to another scheduler than the one
 * running in the calling OS thread or, where none runs, to a scheduler
 * running in another OS thread. Waiters are served in the order they began
 * to wait. No wait ends without cause ("spuriously"). A send or receive
 * whose message was handed over, or a wait that was signalled (or ended by
 * bl_chan_close()), before a timeout or a cancellation took effect returns
 * that result; the cancellation shows in the thread's next blocking call.
 * A call that would have to wait fails with EXDEV before ETIMEDOUT, also
 * with timeout 0. Freeing an object that green threads are waiting on
 * fails with EBUSY. */

typedef struct bl_chan bl_chan;  /* a channel of fixed-size messages */
typedef struct bl_cond bl_cond;  /* a condition: wait until signalled */
typedef struct bl_wg bl_wg;      /* a wait group: wait until a count is 0 */

/* A channel of messages of elem_size bytes that buffers up to `capacity`
 * of them; capacity 0 makes it unbuffered: a send waits until a receiver
 * takes the message. Not blocking. Returns NULL and sets errno: EINVAL
 * (elem_size 0, or elem_size * capacity overflows), ENOMEM. */
BL_API bl_chan *bl_chan_new(size_t elem_size, size_t capacity);

/* Copy a message (elem_size bytes at elem) into ch, waiting while ch is
 * full (unbuffered: until a receiver takes it). Messages arrive in the
 * order they were sent. Blocking. Returns 0, or -1 and sets errno:
 *   EPIPE     ch is closed (also when it is closed while the caller waits:
 *             the message is then not sent). No signal is raised.
 *   ECANCELED, EPERM, EXDEV (see above), EINVAL (ch or elem NULL). */
BL_API int bl_chan_send(bl_chan *ch, const void *elem);

/* bl_chan_send() waiting at most `timeout` seconds (timeout < 0: no limit;
 * 0: only if it need not wait). Extra errno: ETIMEDOUT (nothing was sent);
 * EINVAL also for a NaN timeout. */
BL_API int bl_chan_send_timeout(bl_chan *ch, const void *elem, double timeout);

/* Receive a message into elem (elem_size bytes), waiting while ch is
 * empty. Blocking. Returns 1 with a message, 0 when ch is closed and every
 * message sent before has been received (the end, as bl_recv()'s 0), or -1
 * and sets errno: ECANCELED, EPERM, EXDEV, EINVAL (ch or elem NULL). */
BL_API int bl_chan_recv(bl_chan *ch, void *elem);

/* bl_chan_recv() waiting at most `timeout` seconds (timeout < 0: no limit;
 * 0: only if it need not wait). Extra errno: ETIMEDOUT; EINVAL also for a
 * NaN timeout. */
BL_API int bl_chan_recv_timeout(bl_chan *ch, void *elem, double timeout);

/* Close ch: later sends fail with EPIPE, as do the sends waiting now (their
 * messages are not sent); receivers still get every message buffered, then
 * 0, and receivers waiting now get 0. Not blocking.
 * Returns 0, or -1 with EINVAL (ch NULL), EALREADY (already closed) or
 * EXDEV (see above; ch stays open). */
BL_API int bl_chan_close(bl_chan *ch);

/* The number of messages buffered in ch (0 for NULL). */
BL_API size_t bl_chan_len(const bl_chan *ch);

/* Free ch and the messages still buffered in it. NULL is a no-op.
 * Returns 0, or -1 with EBUSY (green threads wait on ch, or threads of a
 * scheduler running in another OS thread; nothing is done). A thread woken
 * by its timeout or a cancellation that has not run yet no longer counts. */
BL_API int bl_chan_free(bl_chan *ch);

/* A condition. With cooperative scheduling no mutex is needed: nothing else
 * runs between checking a predicate and calling bl_cond_wait(). Not
 * blocking. Returns NULL and sets errno to ENOMEM. */
BL_API bl_cond *bl_cond_new(void);

/* Wait until bl_cond_signal() or bl_cond_broadcast() wakes the caller.
 * Blocking. Returns 0, or -1 and sets errno: ECANCELED, EPERM, EXDEV,
 * EINVAL (c NULL). */
BL_API int bl_cond_wait(bl_cond *c);

/* bl_cond_wait() waiting at most `timeout` seconds (timeout < 0: no limit;
 * 0: fails with ETIMEDOUT at once). Extra errno: ETIMEDOUT; EINVAL also for
 * a NaN timeout. */
BL_API int bl_cond_wait_timeout(bl_cond *c, double timeout);

/* Wake the thread that has waited longest on c (signal) or all of them
 * (broadcast). A signal with no waiter is not remembered. Not blocking.
 * Returns the number of threads woken, or -1 with EINVAL (c NULL) or EXDEV
 * (see above). */
BL_API int bl_cond_signal(bl_cond *c);
BL_API int bl_cond_broadcast(bl_cond *c);

/* Free c. NULL is a no-op. Returns 0, or -1 with EBUSY (as
 * bl_chan_free()). */
BL_API int bl_cond_free(bl_cond *c);

/* A wait group: a counter, and threads waiting until it is 0. The counter
 * starts at 0. Not blocking. Returns NULL and sets errno to ENOMEM. */
BL_API bl_wg *bl_wg_new(void);

/* Add delta (which may be negative) to the counter; when it reaches 0,
 * every waiter wakes. Not blocking. Returns 0, or -1 with EINVAL (wg NULL,
 * or the counter would fall below 0 or overflow; it is left as it was) or
 * EXDEV (it would reach 0 and wake waiters of another scheduler, see above;
 * it is left as it was). */
BL_API int bl_wg_add(bl_wg *wg, long delta);

/* bl_wg_add(wg, -1). */
BL_API int bl_wg_done(bl_wg *wg);

/* Wait until the counter is 0 (at once if it is). Blocking. Returns 0, or
 * -1 and sets errno: ECANCELED, EPERM, EXDEV, EINVAL (wg NULL). */
BL_API int bl_wg_wait(bl_wg *wg);

/* bl_wg_wait() waiting at most `timeout` seconds (timeout < 0: no limit;
 * 0: returns at once, 0 if the counter is 0, else fails with ETIMEDOUT).
 * Extra errno: ETIMEDOUT; EINVAL also for a NaN timeout. */
BL_API int bl_wg_wait_timeout(bl_wg *wg, double timeout);

/* Free wg. NULL is a no-op. Returns 0, or -1 with EBUSY (as
 * bl_chan_free()). */
BL_API int bl_wg_free(bl_wg *wg);

/* ------------------------------------------------------------------------ */
/* Other OS threads: posting work, blocking calls                           */
/* ------------------------------------------------------------------------ */

/* Run fn(arg) in a new detached green thread of s, from any OS thread:
 * thread-safe, unlike the rest of the API (except bl_sched_hold(),
 * bl_sched_release() and bl_sched_stop()). The thread is spawned by s's
 * own OS thread, in the order of the posts, at its next poll, or when
 * bl_sched_run(s) is next called; a running s wakes up for it. (A spawn
 * that fails for want of memory is retried.) Should s be freed first, or
 * stopped (bl_sched_stop()), the posted threads are spawned cancelled, so
 * that fn can release arg (its blocking calls fail with ECANCELED).
 * bl_sched_free(s) waits for the bl_sched_post(), bl_sched_release() and
 * bl_sched_stop() calls on s under way in other OS threads, but none may
 * begin once it has (nor a bl_sched_hold()). Not blocking. Returns 0, or
 * -1 and sets errno: EINVAL (s or fn NULL), ENOMEM. */
BL_API int bl_sched_post(bl_sched *s, bl_func fn, void *arg);

/* Keep bl_sched_run(s) running while s has no green thread, waiting for
 * posts, instead of returning 0; and keep it from reporting EDEADLK while
 * its threads wait for something only a post could bring (a stop,
 * bl_sched_stop(), overrides holds). Take the hold
 * before bl_sched_run(s) starts, or while s still has green threads: one
 * taken after the run found none left comes too late to keep it. Holds
 * are counted; bl_sched_release() drops one. From any OS thread.
 * Returns 0, or -1 with EINVAL (s NULL; for release also: s is not held). */
BL_API int bl_sched_hold(bl_sched *s);
BL_API int bl_sched_release(bl_sched *s);

/* Stop s: cancel every green thread it has, as bl_cancel() does, so that
 * their blocking calls fail with ECANCELED and they can release what they
 * hold and return; threads spawned or posted from then on start cancelled,
 * and holds are ignored. bl_sched_run(s) returns 0 once every thread has
 * ended (a thread that keeps running without blocking, a bl_offload()
 * that waits for a running call, or posts that keep coming keep it going).
 * The stop takes effect at s's next poll for events: at once when s is
 * blocked in one, within a round of its ready queue when it is busy (a
 * green thread of s that stops it and must see the effect at once calls
 * bl_sleep(0) next). It lasts until that run returns (stops made during
 * it end with it); made while s is not running, it applies to the next
 * run. Thread-safe and async-signal-safe: call it from any OS thread, from
 * a green thread or from a signal handler (SIGTERM, SIGINT), but not once
 * bl_sched_free(s) has begun (as bl_sched_post()). Not blocking. Returns
 * 0, or -1 with EINVAL (s NULL). */
BL_API int bl_sched_stop(bl_sched *s);

/* Run fn(arg) on one of the library's OS threads (a small pool, shared with
 * name resolution) while the calling green thread waits and the others go
 * on: for calls that would block the scheduler (file I/O, a blocking
 * library). *result (if result is not NULL) receives fn's return value.
 * fn must not call bl_ functions other than bl_sched_post(),
 * bl_sched_hold() and bl_sched_release(). Blocking. A cancellation before
 * fn starts takes it off the queue (fn never runs); once fn runs, the
 * caller waits until it returns, whatever happens, so that arg may live on
 * the caller's stack, and gets its result: a cancellation that came
 * meanwhile shows in the caller's next blocking call. Returns 0 when fn
 * ran, or -1 and sets errno: ECANCELED (fn did not run), EPERM, EINVAL (fn
 * NULL), ENOMEM. With no pool thread to be had at all (none could be
 * started), fn runs in the caller's OS thread, blocking its scheduler. */
BL_API int bl_offload(bl_func fn, void *arg, void **result);

/* bl_offload() that returns at the timeout (timeout < 0: no limit) or a
 * cancellation even while fn runs, if `abandon` is not NULL: fn then goes
 * on, and when it returns, abandon(arg, its result) runs on the pool thread
 * to release them (arg must not be on the caller's stack then). With
 * abandon NULL a running fn is waited for as by bl_offload(). Extra errno:
 * ETIMEDOUT (fn did not run, or was abandoned); ECANCELED also when fn was
 * abandoned; EINVAL also for a NaN timeout. With an abandon function, every
 * failure but EPERM and EINVAL hands arg to it: when fn did not run,
 * abandon(arg, NULL) is called before the call returns, in the caller's
 * thread. So after -1, arg is abandon()'s, except for EPERM and EINVAL. */
BL_API int bl_offload_timeout(bl_func fn, void *arg, void **result,
                              double timeout,
                              void (*abandon)(void *arg, void *result));

#ifdef __cplusplus
}
#endif

#endif /* BLUELET_H */
