/*
 * cli.h - what every pe program shares: the exit-code table, error
 * reporting on stderr, and reading KEY lines from a pipe (docs/pipes.md).
 *
 * Not for: option parsing (each program uses getopt_long) or the library's
 * logic (programs are thin).
 */
#ifndef PE_CLI_H
#define PE_CLI_H

#include <stdio.h>
#include "store.h"

/* The one exit-code table (docs/exit-codes.md, every man page). */
enum {
    PE_EXIT_OK = 0,       /* everything done */
    PE_EXIT_ERROR = 1,    /* failed: store, I/O, unknown key/set, bad data */
    PE_EXIT_USAGE = 2,    /* invalid options or arguments; nothing done */
    PE_EXIT_REJECTED = 3, /* done, but some inputs were rejected (listed on stderr) */
};

/* Makes sure file descriptors 0, 1 and 2 are open (on /dev/null when
 * closed), so a store opened later never lands on fd 1 and receives key
 * lines. Every program calls it first. Returns 0 or errno. */
int pe_cli_init_fds(void);

/* Prints "prog: <escaped pe_errmsg() or pe_strerror(rc)>\n" to stderr and
 * returns PE_EXIT_ERROR (PE_EXIT_USAGE for PE_EUSAGE). */
int pe_cli_fail(const char *prog, int rc);

/* Prints "prog: <escaped formatted message>\n" (usage error) to stderr, a
 * hint to try --help, and returns PE_EXIT_USAGE. */
int pe_cli_usage(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses one pipe line (without its newline): 32 hex digits, then end of
 * line or a tab and fields. *rest points at the fields (after the tab) or
 * at "". Returns 0 or PE_EFORMAT (message says why, not where). */
int pe_keyline_parse(const char *line, size_t len, pe_key *key,
                     const char **rest);

/* Reads key lines from f until EOF, calling fn for each (lineno from 1).
 * Blank lines are skipped. A malformed line stops the read with PE_EFORMAT
 * and a message "<name>: line N: ..." (name e.g. "stdin"). A nonzero fn
 * return stops and is returned. */
typedef int (*pe_keyline_fn)(void *ctx, const pe_key *key, const char *rest,
                             unsigned long lineno);
int pe_keylines_read(FILE *f, const char *name, pe_keyline_fn fn, void *ctx);

/* Parses a decimal unsigned integer option with bounds; PE_EUSAGE on
 * anything else. */
int pe_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses a finite decimal number in [lo, hi]; PE_EUSAGE ("'s' is not a
 * number in [lo, hi]") on anything else. */
int pe_parse_double(const char *s, double lo, double hi, double *out);

/* "A" or "A,B,C" (finite numbers) into v[3], A copied thrice for one
 * number (--mean, --std); PE_EUSAGE, with no message, on anything else. */
int pe_parse_floats3(const char *s, float *v);

/* "WxH" (both >= 1, <= 65535). */
int pe_parse_size(const char *s, uint32_t *w, uint32_t *h);

/* The images a program works on: the entries of `set` (all, or those with
 * label `label` when label != PE_CLI_ANY_LABEL), or, when set is NULL, the
 * key lines of `in` (named `in_name` in messages). For stdin keys with a
 * set, each key must be in the set. fn gets the set entry (count and label;
 * count 0 and PE_LABEL_NONE for a stdin key with no set). A stdin key not in
 * the store is PE_ENOTFOUND naming the line. Long set scans renew the read
 * txn (iterator renewal). */
#define PE_CLI_ANY_LABEL INT32_MIN
typedef int (*pe_cli_key_fn)(void *ctx, pe_txn *txn, const pe_set_entry *e,
                             unsigned long lineno);
int pe_cli_each_key(pe_txn *txn, const char *set, int32_t label, FILE *in,
                    const char *in_name, pe_cli_key_fn fn, void *ctx);

/* Copies a set header's class names (which are views into a txn that a
 * long scan renews) into malloc'd strings; free with pe_cli_free_classes. */
int pe_cli_copy_classes(const pe_set_hdr *h, char ***out, uint32_t *n);
void pe_cli_free_classes(char **v, uint32_t n);

#endif
