/*
 * pe.h - what every part of libpe shares: return codes, the thread-local
 * error message, the always-on assertion, version numbers.
 *
 * Not for: anything with state beyond one thread's last error message.
 *
 * Return-code convention (as LMDB): 0 is success, a positive value is an
 * errno from the OS (ENOMEM, ENOSPC, EIO...), a negative value is one of the
 * PE_E* codes below. pe_strerror() names either kind. A failing function
 * also leaves a message naming the culprit (file, key, option) that
 * pe_errmsg() returns; the message belongs to the calling thread and lives
 * until that thread's next failing call.
 */
#ifndef PE_PE_H
#define PE_PE_H

#include <stddef.h>
#include <stdint.h>

#define PE_VERSION_STRING "0.1.0"

enum {
    PE_EFORMAT = -1001,   /* input is not in the expected format */
    PE_ECORRUPT = -1002,  /* stored data fails a consistency check */
    PE_EVERSION = -1003,  /* store or file from an unknown (newer) version */
    PE_ETOOBIG = -1004,   /* a resource limit (pixels, bytes, scans) was hit */
    PE_ENOTFOUND = -1005, /* unknown key, set or class */
    PE_EEXIST = -1006,    /* would overwrite something that exists */
    PE_ECOLLISION = -1007,/* key hit whose stored pixels differ */
    PE_EUNSUPPORTED = -1008, /* valid input this build cannot handle */
    PE_ETIMEOUT = -1009,  /* a decode deadline passed */
    PE_EUSAGE = -1010,    /* invalid argument from the caller */
    PE_ESTORE = -1011,    /* LMDB reported an error (message has details) */
    PE_ECUDA = -1012,     /* CUDA, cuBLAS or cuDNN failure */
};

/* Name of a return code: PE_E* codes, errno values, or "success". Static. */
const char *pe_strerror(int rc);

/* The calling thread's last error message, or "" when none was set. */
const char *pe_errmsg(void);

/* Sets the calling thread's message (printf format) and returns rc, so that
 * `return pe_fail(PE_EFORMAT, "%s: bad magic", path);` reads naturally. The
 * message is truncated to 1023 bytes; the arguments may include pe_errmsg()
 * itself. Callers pass raw names: whoever prints the message escapes it
 * (pe_escape, PE_ESC_TEXT). */
int pe_fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with "prefix: " (for context added by a
 * caller, e.g. the file name around a codec error) and returns rc. */
int pe_fail_prefix(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void pe_errclear(void);

/* Programmer errors and shape invariants; always on. Never for bad data. */
#define PE_ASSERT(cond)                                                      \
    do {                                                                     \
        if (!(cond)) pe_assert_fail(#cond, __FILE__, __LINE__);              \
    } while (0)
#ifdef __cplusplus
[[noreturn]]
#else
_Noreturn
#endif
void pe_assert_fail(const char *what, const char *file, int line);

/* Monotonic seconds, for deadlines and timings. */
double pe_now(void);

#endif
