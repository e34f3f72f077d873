/*
 * pe-ls - look inside the store: the keys of a set (or of one label in it),
 * details of the keys on stdin, the list of sets, store statistics.
 * Options: docs/man/pe-ls.1.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "codec.h"
#include "escape.h"
#include "pe.h"

static const char *prog = "pe-ls";

static void usage(FILE *f) {
    fputs(
"usage: pe-ls [options] [-]       keys on stdin (one KEY[\\t...] a line)\n"
"       pe-ls --set NAME [--label L] [-]\n"
"       pe-ls --sets | --stats | --check\n"
"Print KEY\\tLABEL per image; -l adds count, size and first source.\n"
"\n"
"  -S, --store PATH   store (default $PE_STORE, else ./pe.lmdb)\n"
"  -s, --set NAME     the images of set NAME (with '-': the keys on stdin,\n"
"                     looked up in NAME; a key not in it is an error)\n"
"      --label L      only images with label L (class name or id)\n"
"  -l, --long         KEY LABEL COUNT WxHxC SOURCE\n"
"      --json         one JSON object a line with every detail\n"
"      --sets         list sets: NAME DISTINCT TOTAL CLASSES\n"
"      --stats        summarise the store\n"
"      --check        verify the whole store (records, info, set entries,\n"
"                     set counts; staging sets included); exit 1 on problems\n"
"  -h, --help         this help\n"
"      --version      print the version\n"
"Exit: 0 ok, 1 error (unknown key, set or label; bad line), 2 usage.\n",
        f);
}

typedef struct ls {
    int json, longf;
    char **classes; /* copies: the scan renews its txn */
    uint32_t ncls;
    const char *set;
} ls;

static void put_esc(const char *s, pe_esc_ctx c) {
    pe_escape_fput(stdout, s, strlen(s), c);
}

static void put_label(ls *l, int32_t label, int json) {
    if (label == PE_LABEL_NONE) {
        fputs(json ? "null" : "-", stdout);
    } else if ((uint32_t)label < l->ncls && l->classes[label][0] && !json) {
        put_esc(l->classes[label], PE_ESC_TEXT);
    } else {
        printf("%" PRId32, label);
    }
}

static int show(void *ctx, pe_txn *txn, const pe_set_entry *e, unsigned long lineno) {
    ls *l = ctx;
    char hx[PE_KEY_HEX + 1];
    pe_img_hdr h;
    pe_info info;
    int rc;
    (void)lineno;
    pe_key_to_hex(&e->key, hx);
    if (!l->json && !l->longf) {
        printf("%s\t", hx);
        put_label(l, e->label, 0);
        putchar('\n');
        return 0;
    }
    if ((rc = pe_img_stat(txn, &e->key, &h)) || (rc = pe_info_get(txn, &e->key, &info)))
        return rc;
    if (!l->json) {
        printf("%s\t", hx);
        put_label(l, e->label, 0);
        printf("\t%" PRIu32 "\t%" PRIu32 "x%" PRIu32 "x%" PRIu32 "\t", e->count, h.w, h.h, h.c);
        put_esc(info.n ? info.prov[0].src : "-", PE_ESC_TEXT);
        putchar('\n');
        return 0;
    }
    printf("{\"key\":\"%s\",\"width\":%" PRIu32 ",\"height\":%" PRIu32
           ",\"channels\":%" PRIu32 ",\"encoding\":\"%s\",\"stored_bytes\":%zu",
           hx, h.w, h.h, h.c, h.encoding == PE_ENC_DEFLATE ? "deflate" : "raw",
           h.stored_len);
    if (l->set) {
        fputs(",\"set\":\"", stdout);
        put_esc(l->set, PE_ESC_JSON);
        printf("\",\"count\":%" PRIu32 ",\"label\":", e->count);
        put_label(l, e->label, 1);
        if (e->label != PE_LABEL_NONE && (uint32_t)e->label < l->ncls &&
            l->classes[e->label][0]) {
            fputs(",\"class\":\"", stdout);
            put_esc(l->classes[e->label], PE_ESC_JSON);
            putchar('"');
        }
    }
    printf(",\"occurrences\":%" PRIu64 ",\"sources\":[", info.count);
    for (uint32_t i = 0; i < info.n; i++) {
        const pe_prov *p = &info.prov[i];
        fputs(i ? ",{\"source\":\"" : "{\"source\":\"", stdout);
        put_esc(p->src, PE_ESC_JSON);
        printf("\",\"format\":\"%s\",\"width\":%" PRIu32 ",\"height\":%" PRIu32
               ",\"channels\":%u,\"bits\":%u,\"ops\":\"",
               pe_format_name((pe_format)p->format), p->orig_w, p->orig_h,
               p->orig_c, p->orig_bits);
        put_esc(p->ops, PE_ESC_JSON);
        fputs("\"}", stdout);
    }
    fputs("]}\n", stdout);
    return 0;
}

static int show_set(void *ctx, const char *name, const pe_set_hdr *h) {
    ls *l = ctx;
    if (l->json) {
        fputs("{\"set\":\"", stdout);
        put_esc(name, PE_ESC_JSON);
        printf("\",\"distinct\":%" PRIu64 ",\"total\":%" PRIu64 ",\"created\":%" PRIu64
               ",\"classes\":[", h->n_distinct, h->n_total, h->created);
        for (uint32_t i = 0; i < h->n_classes; i++) {
            fputs(i ? ",\"" : "\"", stdout);
            put_esc(h->classes[i], PE_ESC_JSON);
            putchar('"');
        }
        fputs("],\"attrs\":\"", stdout);
        put_esc(h->attrs, PE_ESC_JSON);
        fputs("\"}\n", stdout);
        return 0;
    }
    put_esc(name, PE_ESC_TEXT);
    printf("\t%" PRIu64 "\t%" PRIu64 "\t", h->n_distinct, h->n_total);
    if (!h->n_classes) fputs("-", stdout);
    for (uint32_t i = 0; i < h->n_classes; i++) {
        if (i) putchar(',');
        /* commas inside a name are escaped too, so the list splits cleanly */
        const char *c = h->classes[i][0] ? h->classes[i] : "?";
        const char *comma;
        while ((comma = strchr(c, ','))) {
            pe_escape_fput(stdout, c, (size_t)(comma - c), PE_ESC_TEXT);
            fputs("\\x2c", stdout);
            c = comma + 1;
        }
        put_esc(c, PE_ESC_TEXT);
    }
    putchar('\n');
    return 0;
}

static int stats(pe_txn *txn, int json, const char *path) {
    pe_store_stats s;
    int rc = pe_store_stats_get(txn, &s);
    if (rc) return rc;
    if (json) {
        fputs("{\"store\":\"", stdout);
        put_esc(path, PE_ESC_JSON);
        printf("\",\"version\":%" PRIu32 ",\"created\":%" PRIu64 ",\"images\":%" PRIu64
               ",\"sets\":%" PRIu64 ",\"set_entries\":%" PRIu64
               ",\"pixel_bytes\":%" PRIu64 ",\"stored_bytes\":%" PRIu64
               ",\"file_bytes\":%" PRIu64 ",\"map_bytes\":%" PRIu64 "}\n",
               s.version, s.created, s.n_images, s.n_sets, s.n_set_entries,
               s.bytes_pixels, s.bytes_stored, s.file_size, s.map_size);
        return 0;
    }
    fputs("store\t", stdout);
    put_esc(path, PE_ESC_TEXT);
    printf("\nversion\t%" PRIu32 "\nimages\t%" PRIu64 "\nsets\t%" PRIu64
           "\nset entries\t%" PRIu64 "\npixel bytes\t%" PRIu64
           "\nstored bytes\t%" PRIu64 "\nfile bytes\t%" PRIu64 "\n",
           s.version, s.n_images, s.n_sets, s.n_set_entries, s.bytes_pixels,
           s.bytes_stored, s.file_size);
    return 0;
}

static int check(pe_txn *txn) {
    pe_check_report r;
    int rc = pe_store_check(txn, &r);
    if (rc) return rc;
    printf("images\t%" PRIu64 "\ninfos\t%" PRIu64 "\nset entries\t%" PRIu64
           "\nsets\t%" PRIu64 "\nproblems\t%" PRIu64 "\n",
           r.images, r.infos, r.entries, r.sets, r.problems);
    if (r.problems)
        return pe_fail(PE_ECORRUPT, "%" PRIu64 " problems; the first: %s", r.problems,
                       pe_errmsg());
    return 0;
}

enum { O_LABEL = 256, O_JSON, O_SETS, O_STATS, O_CHECK, O_VERSION };

int main(int argc, char **argv) {
    if (pe_cli_init_fds()) return PE_EXIT_ERROR;
    static const struct option lo[] = {
        {"store", 1, 0, 'S'}, {"set", 1, 0, 's'}, {"label", 1, 0, O_LABEL},
        {"long", 0, 0, 'l'}, {"json", 0, 0, O_JSON}, {"sets", 0, 0, O_SETS},
        {"stats", 0, 0, O_STATS}, {"check", 0, 0, O_CHECK}, {"help", 0, 0, 'h'},
        {"version", 0, 0, O_VERSION}, {0, 0, 0, 0}};
    const char *store = NULL, *label = NULL;
    int c, rc, sets = 0, do_stats = 0, do_check = 0;
    ls l = {0};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":S:s:lh", lo, NULL)) != -1) {
        switch (c) {
        case 'S': store = optarg; break;
        case 's': l.set = optarg; break;
        case O_LABEL: label = optarg; break;
        case 'l': l.longf = 1; break;
        case O_JSON: l.json = 1; break;
        case O_SETS: sets = 1; break;
        case O_STATS: do_stats = 1; break;
        case O_CHECK: do_check = 1; break;
        case 'h': usage(stdout); return PE_EXIT_OK;
        case O_VERSION: printf("pe-ls %s\n", PE_VERSION_STRING); return PE_EXIT_OK;
        case ':': return pe_cli_usage(prog, "option '%s' needs a value", argv[optind - 1]);
        default: return pe_cli_usage(prog, "unknown option '%s'", argv[optind - 1]);
        }
    }
    int dash = optind < argc && !strcmp(argv[optind], "-");
    if (argc - optind > dash)
        return pe_cli_usage(prog, "unexpected argument '%s'", argv[optind + dash]);
    if (dash && (sets || do_stats || do_check || label))
        return pe_cli_usage(prog, "'-' (keys on stdin) goes with --set or alone");
    if (sets + do_stats + do_check + (l.set || label) > 1)
        return pe_cli_usage(prog, "--sets, --stats, --check and --set exclude each other");
    if (label && !l.set) return pe_cli_usage(prog, "--label needs --set");

    pe_store *st;
    pe_txn *txn = NULL;
    const char *path = pe_store_path(store);
    if ((rc = pe_store_open(&st, path, PE_STORE_RDONLY))) return pe_cli_fail(prog, rc);
    if ((rc = pe_txn_begin(st, 0, &txn))) goto out;
    if (sets) {
        rc = pe_set_list(txn, 0, show_set, &l);
    } else if (do_stats) {
        rc = stats(txn, l.json, path);
    } else if (do_check) {
        rc = check(txn);
    } else {
        int32_t lid = PE_CLI_ANY_LABEL;
        if (l.set) {
            pe_set_hdr hdr;
            if ((rc = pe_set_get(txn, l.set, &hdr))) goto out;
            if (label && (rc = pe_set_class_id(&hdr, label, &lid))) {
                rc = pe_fail(rc, "set '%s' has no class '%s'", l.set, label);
                goto out;
            }
            if ((rc = pe_cli_copy_classes(&hdr, &l.classes, &l.ncls))) goto out;
        }
        rc = pe_cli_each_key(txn, l.set, lid, (!l.set || dash) ? stdin : NULL,
                             "stdin", show, &l);
    }
out:
    pe_cli_free_classes(l.classes, l.ncls);
    if (txn) pe_txn_abort(txn);
    pe_store_close(st);
    if (rc) return pe_cli_fail(prog, rc);
    if (fflush(stdout) == EOF) {
        fprintf(stderr, "%s: write error on standard output\n", prog);
        return PE_EXIT_ERROR;
    }
    return PE_EXIT_OK;
}
