#include <bluelet.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>
static void *child(void *arg) { int *n = arg; for (int i = 0; i < 3; i++) { (*n)++; bl_yield(); } return (void*)42; }
static void *parent(void *arg) { (void)arg; int n = 0; bl_thread *t = bl_spawn(NULL, child, &n); void *r; if (bl_join(t, &r)) return (void*)1; printf("n=%d r=%ld\n", n, (long)r); bl_sleep(0.01); return NULL; }
int main(void) {
  bl_sched *s = bl_sched_new();
  bl_spawn(s, parent, NULL);
  int rc = bl_sched_run(s);
  printf("rc=%d %s\n", rc, strerror(errno));
  bl_sched_free(s);
  return rc;
}
