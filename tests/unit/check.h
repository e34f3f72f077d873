/*
 * check.h - the unit tests' few macros. A test binary's exit status is its
 * verdict: any failed CHECK makes main return 1. Each test file defines
 * static void test_*(void) functions and lists them in main via RUN().
 */
#ifndef PE_CHECK_H
#define PE_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                          \
    do {                                                                     \
        check_count++;                                                       \
        if (!(cond)) {                                                       \
            check_failures++;                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

/* rc-returning call expected to succeed; prints pe_errmsg() when not. */
#define CHECK_OK(expr)                                                       \
    do {                                                                     \
        int check_rc_ = (expr);                                              \
        check_count++;                                                       \
        if (check_rc_ != 0) {                                                \
            check_failures++;                                                \
            fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__,    \
                    __LINE__, #expr, check_rc_, pe_strerror(check_rc_),      \
                    pe_errmsg());                                            \
        }                                                                    \
    } while (0)

#define CHECK_RC(expr, want)                                                 \
    do {                                                                     \
        int check_rc_ = (expr);                                              \
        check_count++;                                                       \
        if (check_rc_ != (want)) {                                           \
            check_failures++;                                                \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %d\n",         \
                    __FILE__, __LINE__, #expr, check_rc_,                    \
                    pe_strerror(check_rc_), (int)(want));                    \
        }                                                                    \
    } while (0)

#define RUN(fn)                                                              \
    do {                                                                     \
        int before_ = check_failures;                                        \
        fn();                                                                \
        fprintf(stderr, "  %-40s %s\n", #fn,                                 \
                check_failures == before_ ? "ok" : "FAILED");                \
    } while (0)

#define CHECK_DONE()                                                         \
    (fprintf(stderr, "%d checks, %d failed\n", check_count, check_failures), \
     check_count == 0 || check_failures != 0)

#endif
