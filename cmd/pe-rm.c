/*
 * pe-rm - remove sets from the store, and (with --gc) the images no set
 * holds any more. Space is reused by later writes; to shrink the file,
 * compact it with `mdb_copy -c` (docs/store-format.md). Options:
 * docs/man/pe-rm.1.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "escape.h"
#include "pe.h"

static const char *prog = "pe-rm";

static void usage(FILE *f) {
    fputs(
"usage: pe-rm [options] SET...\n"
"       pe-rm --gc\n"
"Remove sets (their entries; images stay until --gc).\n"
"\n"
"  -S, --store PATH  store (default $PE_STORE, else ./pe.lmdb)\n"
"      --gc          also delete images in no set, and staging sets left\n"
"                    by killed writers\n"
"  -f, --force       a missing SET is not an error\n"
"  -h, --help        this help\n"
"      --version     print the version\n"
"Exit: 0 ok, 1 error (unknown set, store), 2 usage.\n",
        f);
}

enum { O_GC = 256, O_VERSION };

int main(int argc, char **argv) {
    if (pe_cli_init_fds()) return PE_EXIT_ERROR;
    static const struct option lo[] = {
        {"store", 1, 0, 'S'}, {"gc", 0, 0, O_GC}, {"force", 0, 0, 'f'},
        {"help", 0, 0, 'h'}, {"version", 0, 0, O_VERSION}, {0, 0, 0, 0}};
    const char *store = NULL;
    int c, rc, gc = 0, force = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":S:fh", lo, NULL)) != -1) {
        switch (c) {
        case 'S': store = optarg; break;
        case O_GC: gc = 1; break;
        case 'f': force = 1; break;
        case 'h': usage(stdout); return PE_EXIT_OK;
        case O_VERSION: printf("pe-rm %s\n", PE_VERSION_STRING); return PE_EXIT_OK;
        case ':': return pe_cli_usage(prog, "option '%s' needs a value", argv[optind - 1]);
        default: return pe_cli_usage(prog, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind == argc && !gc) return pe_cli_usage(prog, "name a set to remove, or --gc");
    for (int i = optind; i < argc; i++)
        if (pe_set_name_ok(argv[i])) return pe_cli_usage(prog, "%s", pe_errmsg());

    pe_store *st;
    pe_txn *txn = NULL;
    if ((rc = pe_store_open(&st, pe_store_path(store), 0))) return pe_cli_fail(prog, rc);
    /* One transaction: either every named set goes, or none does. */
    if ((rc = pe_txn_begin(st, 1, &txn))) goto out;
    for (int i = optind; i < argc; i++) {
        rc = pe_set_delete(txn, argv[i]);
        if (rc == PE_ENOTFOUND && force) rc = 0;
        if (rc) goto out;
    }
    uint64_t n = 0;
    if (gc && (rc = pe_store_gc(txn, &n))) goto out;
    rc = pe_txn_commit(txn);
    txn = NULL;
    if (!rc && gc) fprintf(stderr, "%s: %" PRIu64 " images deleted\n", prog, n);
out:
    if (txn) pe_txn_abort(txn);
    pe_store_close(st);
    return rc ? pe_cli_fail(prog, rc) : PE_EXIT_OK;
}
