/* SPDX-License-Identifier: MIT */
/*
 * test_programs.c - runs sleepy, delegation or ipc (chosen by the example's
 * file name) and checks its output and exit status.
 *
 *   exdrv_programs [--slow] -- [EMULATOR...] sleepy|delegation|ipc
 */
#define _GNU_SOURCE
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Check that the lines appear in out in this order (other lines may be in
 * between). */
static void expect_in_order(const char *out, const char *const *lines)
{
    const char *p = out;
    for (int i = 0; lines[i] != NULL; i++) {
        const char *hit = strstr(p, lines[i]);
        h_check(hit != NULL, "expected the line \"%s\" (after the previous "
                "ones) in the output:\n%s", lines[i], out);
        p = hit + strlen(lines[i]);
    }
}

static void expect_lines(const char *out, const char *const *lines)
{
    for (int i = 0; lines[i] != NULL; i++)
        h_check(strstr(out, lines[i]) != NULL,
                "expected the line \"%s\" in the output:\n%s", lines[i], out);
}

static void test_usage(void)
{
    const char *args[] = {"extra-argument", NULL};
    char *out;
    int rc = h_run(args, 1, 60, &out);
    h_check(rc == 2 && strstr(out, "usage") != NULL,
            "an extra argument gave status %d, output:\n%s", rc, out);
    free(out);
    h_ok("an extra argument gives status 2 and a usage message");
}

static void test_sleepy(void)
{
    char *out;
    double t0 = h_now();
    int rc = h_run(NULL, 0, 60, &out);
    double took = h_now() - t0;
    h_check(rc == 0, "sleepy exited with %d; output:\n%s", rc, out);
    static const int tenths[] = {0, 1, 3, 5};
    for (int i = 0; i < 4; i++) {
        char want[80];
        snprintf(want, sizeof want, "sleeper %d: going to sleep for %.1f s\n",
                 tenths[i], tenths[i] / 10.0);
        h_check(strstr(out, want) != NULL, "no \"%s\" in:\n%s", want, out);
    }
    /* The wake-ups, in order, each at a plausible time. */
    const char *p = out;
    int seen = 0;
    double slack = h_slow ? 5.0 : 2.0;
    while ((p = strstr(p, "woke up")) != NULL) {
        const char *line = p;
        while (line > out && line[-1] != '\n')
            line--;
        int who;
        double after, at;
        h_check(sscanf(line, "sleeper %d: woke up after %lf s (at %lf s)",
                       &who, &after, &at) == 3,
                "cannot parse the line at \"%.60s\"", line);
        h_check(seen < 4 && who == tenths[seen],
                "wake-up #%d is sleeper %d, expected %d; output:\n%s", seen,
                who, seen < 4 ? tenths[seen] : -1, out);
        double want = tenths[seen] / 10.0;
        h_check(at >= want - 0.005 && at <= want + slack,
                "sleeper %d woke at %.3f s, expected about %.1f s", who, at, want);
        seen++;
        p += 7;
    }
    h_check(seen == 4, "%d wake-ups, expected 4; output:\n%s", seen, out);
    h_check(strstr(out, "all done after") != NULL, "no final line:\n%s", out);
    /* They slept concurrently: well under the 0.9 s a sequence would take
     * plus start-up, but bounded generously. */
    h_check(took >= 0.5 && took < 0.5 + 3 * slack,
            "sleepy took %.3f s in all", took);
    free(out);
    h_ok("sleepers woke in the order 0, 1, 3, 5 at plausible times");
}

static void test_delegation(void)
{
    char *out;
    int rc = h_run(NULL, 0, 60, &out);
    h_check(rc == 0, "delegation exited with %d; output:\n%s", rc, out);
    static const char *const lines[] = {
        "parent: started\n",
        "parent: resumed\n",
        "child: started\n",
        "child: resumed\n",
        "child: ending\n",
        "parent: child returned 42\n",
        "sum_of_squares(3, 4) = 25\n",
        "load_settings: failed: ",
        "(ETIMEDOUT)\n",
        "worker: stopped: ",
        "(ECANCELED)\n",
        "all done\n",
        NULL,
    };
    expect_in_order(out, lines);
    static const char *const also[] = {
        "ticker: the scheduler runs other threads meanwhile\n", NULL};
    expect_lines(out, also);
    free(out);
    h_ok("values and errors came back up the call chain");
}

static void test_ipc(void)
{
    char *out;
    int rc = h_run(NULL, 0, 60, &out);
    h_check(rc == 0, "ipc exited with %d; output:\n%s", rc, out);
    /* The two processes print concurrently: check each side's lines in
     * its own order. */
    static const char *const child[] = {
        "child: received message 0 (5 bytes): \"hello\"\n",
        "child: received message 1 (22 bytes): \"a message\\nof two lines\"\n",
        "child: received message 2 (0 bytes): \"\"\n",
        "child: received message 3 (262144 bytes): \"xxxxxxxxxxxxxxxxxxxxxxxx...\"\n",
        "child: received message 4 (7 bytes): \"goodbye\"\n",
        "child: end of stream after 5 messages\n",
        NULL,
    };
    static const char *const parent[] = {
        "parent: received \"ack 0: 5 bytes\"\n",
        "parent: received \"ack 1: 22 bytes\"\n",
        "parent: received \"ack 2: 0 bytes\"\n",
        "parent: received \"ack 3: 262144 bytes\"\n",
        "parent: received \"ack 4: 7 bytes\"\n",
        "parent: child exited with status 0\n",
        "all done\n",
        NULL,
    };
    static const char *const sent[] = {
        "parent: sent message 0 (5 bytes)\n",
        "parent: sent message 3 (262144 bytes)\n",
        "parent: sent message 4 (7 bytes)\n",
        NULL,
    };
    expect_in_order(out, child);
    expect_in_order(out, parent);
    expect_in_order(out, sent);
    free(out);
    h_ok("both processes received every framed message");
}

int main(int argc, char **argv)
{
    h_init(argc, argv, 110);
    const char *name = h_example_name();
    test_usage();
    if (strcmp(name, "sleepy") == 0)
        test_sleepy();
    else if (strcmp(name, "delegation") == 0)
        test_delegation();
    else if (strcmp(name, "ipc") == 0)
        test_ipc();
    else
        h_fail("no test for an example named \"%s\"", name);
    printf("PASS\n");
    return 0;
}
