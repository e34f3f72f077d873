/*
 * testfs.h - file helpers the unit tests share: a per-test temporary
 * folder (g_dir, made by the test's main with mkdtemp), paths inside it,
 * and reading and writing whole files independently of the code under test.
 */
#ifndef PE_TESTFS_H
#define PE_TESTFS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static char g_dir[64];

/* g_dir "/" name, in one of a few rotating buffers (enough for the paths
 * one call needs). */
__attribute__((unused)) static const char *P(const char *name) {
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
    return b;
}

__attribute__((unused)) static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    int rc = fclose(f);
    return w == len && rc == 0 ? 0 : -1;
}

/* Whole file into a malloc'd buffer, independently of the code under test. */
__attribute__((unused)) static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f) return NULL;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    *len = n;
    return buf;
}

#endif
