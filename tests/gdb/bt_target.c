/* SPDX-License-Identifier: MIT */
/* A green thread stops in bl_gdb_marker() three calls deep; check_bt.sh
 * runs gdb on it and checks that `bt` walks back to the thread's entry and
 * stops there cleanly. */
#include <bluelet.h>

__attribute__((noinline)) void bl_gdb_marker(int depth);
__attribute__((noinline)) void bl_gdb_marker(int depth)
{
    __asm__ volatile("" : : "r"(depth) : "memory");
}

__attribute__((noinline)) static void level2(int d)
{
    bl_yield();
    bl_gdb_marker(d);
}

__attribute__((noinline)) static void level1(int d)
{
    level2(d + 1);
    __asm__ volatile("" ::: "memory");
}

static void *body(void *arg)
{
    (void)arg;
    level1(1);
    return NULL;
}

static void *other(void *arg)
{
    (void)arg;
    bl_yield();
    return NULL;
}

int main(void)
{
    bl_sched *s = bl_sched_new();
    if (s == NULL)
        return 1;
    bl_spawn(s, body, NULL);
    bl_spawn(s, other, NULL);
    int rc = bl_sched_run(s);
    bl_sched_free(s);
    return rc == 0 ? 0 : 1;
}
