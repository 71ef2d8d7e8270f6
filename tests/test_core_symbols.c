/* SPDX-License-Identifier: MIT */
/*
 * test_core_symbols.c - the exported symbols of libbluelet.so: every one is a
 * bl_ function carrying a version node of this release line (BLUELET_1.0 for
 * 1.0.x; nm -D shows name@@BLUELET_1.0), nothing else leaks out (no data,
 * no internals, no libev), and the set equals the BL_API functions declared
 * in include/bluelet.h.
 *
 * core.cmake passes BL_LIB_PATH (the built library), BL_HEADER_PATH and
 * BL_NM (CMAKE_NM, e.g. aarch64-linux-gnu-nm when cross-compiling).
 */
#include "core_util.h"

#include <ctype.h>

#ifndef BL_LIB_PATH
#error "BL_LIB_PATH is defined by tests/core.cmake"
#endif
#ifndef BL_HEADER_PATH
#error "BL_HEADER_PATH is defined by tests/core.cmake"
#endif
#ifndef BL_NM
#define BL_NM "nm"
#endif

enum { MAXSYM = 512 };

typedef struct symset {
    char *name[MAXSYM];
    int n;
} symset;

static void add(symset *s, const char *name, size_t len)
{
    CHECK(s->n < MAXSYM);
    s->name[s->n] = strndup(name, len);
    CHECK(s->name[s->n] != NULL);
    s->n++;
}

static int has(const symset *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0)
            return 1;
    return 0;
}

static void clear(symset *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->name[i]);
    s->n = 0;
}

/* Is `node` a version node of this release line: BLUELET_<major>.<m> with
 * m <= the current minor? */
static int good_node(const char *node)
{
    char want[32];
    for (int m = 0; m <= BL_VERSION_MINOR; m++) {
        snprintf(want, sizeof want, "BLUELET_%d.%d", BL_VERSION_MAJOR, m);
        if (strcmp(node, want) == 0)
            return 1;
    }
    return 0;
}

/* The functions declared with BL_API in the header. The name is the last
 * identifier before the first '(' on the declaration's first line. */
static void header_functions(symset *out)
{
    FILE *f = fopen(BL_HEADER_PATH, "r");
    if (f == NULL)
        CORE_FAIL("cannot open %s: %s", BL_HEADER_PATH, strerror(errno));
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "BL_EXTENSION ", 13) == 0)
            p += 13;
        if (strncmp(p, "BL_API", 6) != 0 || isalnum((unsigned char)p[6]) ||
            p[6] == '_')
            continue;
        const char *paren = strchr(p, '(');
        if (paren == NULL)
            CORE_FAIL("cannot parse header line: %s", line);
        const char *end = paren;
        while (end > p && isspace((unsigned char)end[-1]))
            end--;
        const char *start = end;
        while (start > p && (isalnum((unsigned char)start[-1]) ||
                             start[-1] == '_'))
            start--;
        CHECK(end > start);
        add(out, start, (size_t)(end - start));
    }
    fclose(f);
}

int main(void)
{
    symset hdr = {{0}, 0}, lib = {{0}, 0};
    header_functions(&hdr);
    printf("%d BL_API functions in %s\n", hdr.n, BL_HEADER_PATH);
    CHECK(hdr.n >= 40);
    for (int i = 0; i < hdr.n; i++)
        if (strncmp(hdr.name[i], "bl_", 3) != 0)
            CORE_FAIL("header declares BL_API %s without the bl_ prefix",
                      hdr.name[i]);

    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' -D --defined-only '%s' 2>&1", BL_NM,
             BL_LIB_PATH);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        CORE_FAIL("popen(%s): %s", cmd, strerror(errno));
    char line[1024];
    int problems = 0, nodes = 0;
    char version_node[64] = "";
    while (fgets(line, sizeof line, p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        /* "<value> <type> <name>[@@version]" */
        char value[64], type[8], name[512];
        if (sscanf(line, "%63s %7s %511s", value, type, name) != 3) {
            fprintf(stderr, "unexpected nm output: %s\n", line);
            problems++;
            continue;
        }
        if (strcmp(type, "A") == 0) {
            /* The version node itself ("BLUELET_1.0", or with some linkers
             * "BLUELET_1.0@@BLUELET_1.0"). */
            char *v = strstr(name, "@@");
            if (v != NULL) {
                *v = '\0';
                if (strcmp(v + 2, name) != 0) {
                    fprintf(stderr, "odd version node: %s\n", line);
                    problems++;
                }
            }
            if (!good_node(name)) {
                fprintf(stderr, "unexpected absolute symbol: %s\n", line);
                problems++;
            }
            nodes++;
            continue;
        }
        char *at = strstr(name, "@@");
        if (at == NULL) {
            fprintf(stderr, "exported without a default version: %s\n", line);
            problems++;
            continue;
        }
        *at = '\0';
        const char *node = at + 2;
        if (strcmp(type, "T") != 0 && strcmp(type, "i") != 0) {
            fprintf(stderr, "exported symbol that is not a function: %s\n",
                    line);
            problems++;
        }
        if (strncmp(name, "bl_", 3) != 0 || strncmp(name, "bl__", 4) == 0) {
            fprintf(stderr, "exported symbol without the bl_ prefix (or an "
                            "internal bl__ one): %s\n", line);
            problems++;
        }
        if (!good_node(node)) {
            fprintf(stderr, "symbol %s has version %s, not BLUELET_%d.x\n",
                    name, node, BL_VERSION_MAJOR);
            problems++;
        }
        if (has(&lib, name)) {
            fprintf(stderr, "symbol %s listed twice\n", name);
            problems++;
        }
        if (strcmp(name, "bl_version") == 0)
            snprintf(version_node, sizeof version_node, "%s", node);
        add(&lib, name, strlen(name));
    }
    int st = pclose(p);
    if (st != 0)
        CORE_FAIL("%s failed (status 0x%x)", cmd, st);
    printf("%d exported functions in %s\n", lib.n, BL_LIB_PATH);
    CHECK(nodes >= 1);
    CHECK(lib.n > 0);
    /* The first release's functions stay in its node forever. */
    if (strcmp(version_node, "BLUELET_1.0") != 0)
        CORE_FAIL("bl_version has version \"%s\", expected BLUELET_1.0",
                  version_node);

    for (int i = 0; i < hdr.n; i++)
        if (!has(&lib, hdr.name[i])) {
            fprintf(stderr, "declared BL_API but not exported: %s\n",
                    hdr.name[i]);
            problems++;
        }
    for (int i = 0; i < lib.n; i++)
        if (!has(&hdr, lib.name[i])) {
            fprintf(stderr, "exported but not declared BL_API in the header: "
                            "%s\n", lib.name[i]);
            problems++;
        }
    if (problems != 0)
        CORE_FAIL("%d problem(s) with the exported symbols", problems);
    clear(&hdr);
    clear(&lib);
    printf("core_symbols: ok\n");
    return 0;
}
