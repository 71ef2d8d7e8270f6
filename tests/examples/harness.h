/* SPDX-License-Identifier: MIT */
/*
 * harness.h - helpers for the tests of the examples: run an example as a
 * child process (through the cross-compiling emulator if any), capture its
 * output, talk to it over loopback sockets, and fail cleanly (killing every
 * child) with a message.
 *
 * Every driver takes the same command line:
 *
 *   driver [--slow] [--curl PATH] [--compare] [--log] -- [EMULATOR...] EXAMPLE
 *
 * Everything after "--" is the command that runs the example; the driver
 * appends the example's own arguments. --slow scales work down (qemu).
 */
#ifndef BL_EXAMPLES_HARNESS_H
#define BL_EXAMPLES_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

/* Options common to the drivers (set by h_init). */
extern int h_slow;
extern int h_compare;
extern int h_log;
extern const char *h_curl;

/* Parse the command line, start the watchdog (fails the test after
 * `watchdog` seconds) and ignore SIGPIPE. */
void h_init(int argc, char **argv, int watchdog);

/* The example's file name (the last word of its command, without the
 * directory). */
const char *h_example_name(void);

/* Print "FAIL: ..." with the location, kill all children, exit 1. */
__attribute__((noreturn, format(printf, 3, 4)))
void h_fail_at(const char *file, int line, const char *fmt, ...);
#define h_fail(...) h_fail_at(__FILE__, __LINE__, __VA_ARGS__)
#define h_check(cond, ...) \
    do { if (!(cond)) h_fail_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* Print "ok: ..." for a passed sub-check. */
__attribute__((format(printf, 1, 2))) void h_ok(const char *fmt, ...);

double h_now(void);
void h_sleep(double seconds);

/* ---- child processes ---- */

typedef struct h_child h_child;

/* Start the example with extra arguments (a NULL-terminated list). Its
 * stdout (and stderr too when merge_stderr) is captured; otherwise stderr
 * goes to ours. */
h_child *h_spawn(const char *const *args, int merge_stderr);

/* A copy of everything the child has printed so far (free it). */
char *h_output(h_child *c);

/* Wait until the output contains needle; 1 when it does, 0 on timeout or
 * when the child closed its output without printing it. */
int h_wait_output(h_child *c, const char *needle, double timeout);

/* Wait for a line containing "port N" and return N. Fails on timeout. */
int h_wait_port(h_child *c, double timeout);

/* Has the child exited? (Reaps it; *status gets its wait status.) */
int h_exited(h_child *c, int *status);

/* Wait for the child to exit, at most timeout seconds; fails on timeout.
 * Returns the wait status. */
int h_wait_exit(h_child *c, double timeout);

/* Send sig to the child, which must not have been reaped. */
void h_signal(h_child *c, int sig);

/* Stop a server: fail if it has already exited (it must not die on its
 * own), else SIGTERM it (SIGKILL after 10 s) and reap it. */
void h_stop_server(h_child *c, const char *name);

/* Run the example to completion (at most timeout seconds) and return its
 * exit code (fails if it was killed by a signal); *out (if not NULL) gets
 * its output, to free. */
int h_run(const char *const *args, int merge_stderr, double timeout, char **out);

/* Run another program (argv[0] is looked up in PATH; no emulator) to
 * completion; like h_run(). */
int h_run_argv(const char *const *argv, int merge_stderr, double timeout,
               char **out);

/* ---- sockets ---- */

/* Connect to 127.0.0.1:port (blocking socket), retrying while refused for
 * up to 10 s. Fails the test if it cannot. */
int h_connect(int port);

/* h_connect() with a receive buffer of rcvbuf bytes (0: the default), set
 * before connecting so that the advertised window is small too. */
int h_connect_rcvbuf(int port, int rcvbuf);

/* A port on 127.0.0.1 where nothing listens (bound, then closed). */
int h_closed_port(void);

/* Send all bytes or fail the test. */
void h_send_all(int fd, const void *buf, size_t len);

/* Receive into buf, waiting at most timeout seconds. Returns the count, 0
 * at end of stream, -1 on timeout (errno ETIMEDOUT) or error. */
ssize_t h_recv(int fd, void *buf, size_t cap, double timeout);

/* Read until end of stream (or timeout, which fails); returns a malloc'ed
 * buffer with *len bytes (NUL-terminated). */
char *h_read_all(int fd, double timeout, size_t *len);

/* Fill buf with reproducible pseudo-random bytes. */
void h_fill_random(void *buf, size_t len, unsigned seed);

#endif
