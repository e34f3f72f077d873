/*
 * pe.c - return-code names, the thread-local error message, assertions and
 * the clock. Not for: printing (the library never prints except
 * pe_assert_fail, which aborts).
 */
#include "pe.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char errmsg[1024];

const char *pe_strerror(int rc) {
    switch (rc) {
    case 0: return "success";
    case PE_EFORMAT: return "bad format";
    case PE_ECORRUPT: return "corrupt data";
    case PE_EVERSION: return "unsupported version";
    case PE_ETOOBIG: return "limit exceeded";
    case PE_ENOTFOUND: return "not found";
    case PE_EEXIST: return "already exists";
    case PE_ECOLLISION: return "key collision";
    case PE_EUNSUPPORTED: return "unsupported";
    case PE_ETIMEOUT: return "deadline passed";
    case PE_EUSAGE: return "invalid argument";
    case PE_ESTORE: return "store error";
    case PE_ECUDA: return "CUDA error";
    default: break;
    }
    if (rc > 0) return strerror(rc);
    return "unknown error";
}

const char *pe_errmsg(void) { return errmsg; }

void pe_errclear(void) { errmsg[0] = 0; }

int pe_fail(int rc, const char *fmt, ...) {
    /* Formatted aside first: callers may pass pe_errmsg() itself. */
    char buf[sizeof errmsg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(errmsg, buf, sizeof errmsg);
    return rc;
}

int pe_fail_prefix(int rc, const char *fmt, ...) {
    char prefix[512], old[sizeof errmsg];
    va_list ap;
    /* prefix is formatted before the message is copied: it may quote it */
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errmsg, sizeof old);
    const char *rest = old[0] ? old : pe_strerror(rc);
    size_t pl = strlen(prefix), rl = strlen(rest), n = 0;
    /* prefix, ": ", rest, truncated to the buffer */
    n = pl < sizeof errmsg - 1 ? pl : sizeof errmsg - 1;
    memcpy(errmsg, prefix, n);
    if (n + 2 < sizeof errmsg) {
        memcpy(errmsg + n, ": ", 2);
        n += 2;
        if (rl > sizeof errmsg - 1 - n) rl = sizeof errmsg - 1 - n;
        memmove(errmsg + n, rest, rl);
        n += rl;
    }
    errmsg[n] = 0;
    return rc;
}

void pe_assert_fail(const char *what, const char *file, int line) {
    fprintf(stderr, "pe: internal error: assertion '%s' failed at %s:%d\n",
            what, file, line);
    abort();
}

double pe_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
