/*
 * pe-inject - make a new set from a set plus the keys on stdin (the
 * poisoning step), or minus them (--remove: applying an audit). The source
 * set is never changed; the new set records what was added or removed and
 * the poisoning rates. Options: docs/man/pe-inject.1.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "craft.h"
#include "escape.h"
#include "pe.h"

static const char *prog = "pe-inject";

static void usage(FILE *f) {
    fputs(
"usage: pe-inject [options] --from SET --to NEWSET < KEYS\n"
"Make NEWSET: a copy of SET plus the images whose keys are on stdin (each\n"
"line one occurrence, unlabeled), or with --remove, without them.\n"
"\n"
"  -S, --store PATH  store (default $PE_STORE, else ./pe.lmdb)\n"
"      --from SET    the source set (never changed)\n"
"      --to NEWSET   the set made\n"
"      --remove      remove the keys' entries (all their count) instead\n"
"      --keep        keep only the keys' entries (a subset of SET)\n"
"      --missing-ok  with --remove or --keep: a key not in SET is skipped\n"
"  -f, --force       replace NEWSET if it exists\n"
"  -q, --quiet       no summary on stderr\n"
"  -h, --help        this help\n"
"      --version     print the version\n"
"Exit: 0 ok, 1 error (unknown set or key, NEWSET exists, store), 2 usage.\n",
        f);
}

typedef struct kl {
    pe_key key;
    unsigned long lineno;
} kl;

typedef struct job {
    const char *from, *to;
    int remove, keep, force, missing_ok;
    kl *v;
    size_t n, cap;
    /* results */
    uint64_t src_total, src_distinct, new_total, new_distinct;
    uint64_t changed, changed_distinct, skipped;
    char rates[512];
} job;

static int collect(void *ctx, const pe_key *key, const char *rest, unsigned long lineno) {
    job *j = ctx;
    if (j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 1024;
        kl *v = realloc(j->v, cap * sizeof *v);
        if (!v) return ENOMEM;
        j->v = v;
        j->cap = cap;
    }
    j->v[j->n].key = *key;
    j->v[j->n].lineno = lineno;
    j->n++;
    return 0;
}

static int kl_cmp(const void *a, const void *b) {
    const kl *x = a, *y = b;
    int c = memcmp(x->key.b, y->key.b, PE_KEY_LEN);
    if (c) return c;
    return x->lineno < y->lineno ? -1 : x->lineno > y->lineno;
}

static int kl_key_cmp(const void *a, const void *b) {
    return memcmp(((const kl *)a)->key.b, ((const kl *)b)->key.b, PE_KEY_LEN);
}

static void put_rate(char *buf, size_t n, double v) {
    snprintf(buf, n, "%.9g", v);
}

/* Target classes of pe-craft poisons, from their provenance, for the rate
 * over the target class: sum of occurrences per class. */
#define MAX_CLASSES 4096
static int poison_class(pe_txn *t, const pe_key *k, int32_t *cls) {
    pe_info info;
    int rc = pe_info_get(t, k, &info);
    if (rc == PE_ENOTFOUND) return 1;
    if (rc) return rc;
    return pe_craft_provenance(&info, cls) && *cls >= 0 && *cls < MAX_CLASSES ? 0 : 1;
}

static int body(void *ctx, pe_txn *t) {
    job *j = ctx;
    int rc;
    pe_set_hdr h;
    char staging[PE_SET_NAME_MAX + 64], who[256], v[64];
    char **classes = NULL;
    uint32_t ncls = 0;
    pe_set_entry *ent = NULL;
    uint64_t *per_class = NULL, *class_size = NULL;
    size_t ne = 0, cap = 0;
    pe_set_iter *it = NULL;

    j->changed = j->changed_distinct = j->skipped = 0;
    j->rates[0] = 0;
    rc = pe_set_get(t, j->from, &h);
    if (rc) return rc == PE_ENOTFOUND ? pe_fail(rc, "no set '%s'", j->from) : rc;
    j->src_total = h.n_total;
    j->src_distinct = h.n_distinct;
    if ((rc = pe_cli_copy_classes(&h, &classes, &ncls))) return rc;
    if (!pe_set_get(t, j->to, &h) && !j->force) {
        rc = pe_fail(PE_EEXIST, "set '%s' exists (--force replaces it)", j->to);
        goto out;
    }
    /* the source's entries, read before anything is written */
    if ((rc = pe_set_iter_open(t, j->from, 0, &it))) goto out;
    for (;;) {
        if (ne == cap) {
            cap = cap ? 2 * cap : 4096;
            pe_set_entry *e2 = realloc(ent, cap * sizeof *e2);
            if (!e2) { rc = ENOMEM; goto out; }
            ent = e2;
        }
        rc = pe_set_iter_next(it, &ent[ne]);
        if (rc < 0) goto out;
        if (rc == 0) break;
        ne++;
    }
    pe_set_iter_close(it);
    it = NULL;

    snprintf(staging, sizeof staging, ".staging.%ld.%s", (long)getpid(), j->to);
    pe_set_delete(t, staging); /* a leftover of a reused pid */
    if ((rc = pe_set_create(t, staging)) || (rc = pe_writer_identity(who, sizeof who)) ||
        (rc = pe_set_set_attr(t, staging, "writer", who)))
        goto out;
    for (size_t i = 0; i < ne; i++) {
        if (j->keep) { /* only the entries whose keys are on stdin */
            kl probe = {ent[i].key, 0};
            kl *hit = j->n ? bsearch(&probe, j->v, j->n, sizeof *j->v, kl_key_cmp) : NULL;
            if (!hit) continue;
            j->changed += ent[i].count;
            j->changed_distinct++;
        }
        if ((rc = pe_set_add(t, staging, &ent[i].key, ent[i].count, ent[i].label))) goto out;
    }
    if (j->keep) { /* every key on stdin must have been in SET */
        for (size_t i = 0; i < j->n; i++) {
            pe_set_entry e;
            rc = pe_set_lookup(t, staging, &j->v[i].key, &e);
            if (rc == PE_ENOTFOUND && j->missing_ok) {
                j->skipped++;
                rc = 0;
                continue;
            }
            if (rc == PE_ENOTFOUND) {
                char hx[PE_KEY_HEX + 1];
                pe_key_to_hex(&j->v[i].key, hx);
                rc = pe_fail(rc, "stdin: line %lu: image %s: not in set '%s'", j->v[i].lineno,
                             hx, j->from);
            }
            if (rc) goto out;
        }
    }
    if (ncls && (rc = pe_set_set_classes(t, staging, (const char *const *)classes, ncls))) goto out;

    /* the keys, in key order (j->v is sorted), each distinct key once */
    if (!(per_class = calloc(MAX_CLASSES, sizeof *per_class))) { rc = ENOMEM; goto out; }
    int any_class = 0;
    for (size_t i = 0; i < j->n && !j->keep;) {
        size_t k = i + 1;
        while (k < j->n && !memcmp(j->v[k].key.b, j->v[i].key.b, PE_KEY_LEN)) k++;
        uint32_t occ = (uint32_t)(k - i);
        const kl *l = &j->v[i];
        char hx[PE_KEY_HEX + 1];
        pe_key_to_hex(&l->key, hx);
        if (j->remove) {
            pe_set_entry e;
            rc = pe_set_lookup(t, staging, &l->key, &e);
            if (rc == PE_ENOTFOUND && j->missing_ok) {
                j->skipped++;
                rc = 0;
                i = k;
                continue;
            }
            if (rc == PE_ENOTFOUND) {
                rc = pe_fail(rc, "stdin: line %lu: image %s: not in set '%s'", l->lineno, hx, j->from);
                goto out;
            }
            if (rc || (rc = pe_set_remove(t, staging, &l->key))) goto out;
            j->changed += e.count;
        } else {
            rc = pe_img_exists(t, &l->key);
            if (rc < 0) goto out;
            if (!rc) {
                rc = pe_fail(PE_ENOTFOUND, "stdin: line %lu: image %s is not in the store",
                             l->lineno, hx);
                goto out;
            }
            if ((rc = pe_set_add(t, staging, &l->key, occ, PE_LABEL_NONE))) goto out;
            j->changed += occ;
            int32_t c;
            rc = poison_class(t, &l->key, &c);
            if (rc < 0) goto out;
            if (rc == 0) {
                per_class[c] += occ;
                any_class = 1;
            }
            rc = 0;
        }
        j->changed_distinct++;
        i = k;
    }

    /* what was done, in the new set's attributes */
    if ((rc = pe_set_set_attr(t, staging, "source", j->from))) goto out;
    snprintf(v, sizeof v, "%" PRIu64, j->changed);
    const char *what = j->keep ? "kept" : j->remove ? "removed" : "injected";
    if ((rc = pe_set_set_attr(t, staging, what, v))) goto out;
    snprintf(v, sizeof v, "%" PRIu64, j->changed_distinct);
    char wd[32];
    snprintf(wd, sizeof wd, "%s_distinct", what);
    if ((rc = pe_set_set_attr(t, staging, wd, v))) goto out;
    if (!j->remove && !j->keep && j->src_total) {
        double P = (double)j->changed, D = (double)j->src_total;
        put_rate(v, sizeof v, P / D);
        if ((rc = pe_set_set_attr(t, staging, "rate_over_clean", v))) goto out;
        put_rate(v, sizeof v, P / (D + P));
        if ((rc = pe_set_set_attr(t, staging, "rate_over_poisoned", v))) goto out;
        snprintf(j->rates, sizeof j->rates, "|P|/|D| %.4g%%, |P|/(|D|+|P|) %.4g%%", 100 * P / D,
                 100 * P / (D + P));
        /* over the target class: needs a labeled source */
        if (any_class) {
            if (!(class_size = calloc(MAX_CLASSES, sizeof *class_size))) { rc = ENOMEM; goto out; }
            int labeled = 0;
            for (size_t i = 0; i < ne; i++)
                if (ent[i].label >= 0 && ent[i].label < MAX_CLASSES) {
                    class_size[ent[i].label] += ent[i].count;
                    labeled = 1;
                }
            char line[400] = "";
            size_t len = 0;
            for (int c = 0; c < MAX_CLASSES && len < sizeof line - 40; c++) {
                if (!per_class[c]) continue;
                if (labeled && class_size[c])
                    len += (size_t)snprintf(line + len, sizeof line - len, "%s%d:%.9g",
                                            len ? "," : "", c,
                                            (double)per_class[c] / (double)class_size[c]);
                else
                    len += (size_t)snprintf(line + len, sizeof line - len, "%s%d:n/a",
                                            len ? "," : "", c);
            }
            if ((rc = pe_set_set_attr(t, staging, "rate_over_target_class", line))) goto out;
            size_t rl = strlen(j->rates);
            snprintf(j->rates + rl, sizeof j->rates - rl, ", over the target class (class:rate) %s",
                     line);
        }
    }
    if ((rc = pe_set_set_attr(t, staging, "writer", NULL)) ||
        (rc = pe_set_rename(t, staging, j->to, j->force)))
        goto out;
    if ((rc = pe_set_get(t, j->to, &h))) goto out;
    j->new_total = h.n_total;
    j->new_distinct = h.n_distinct;
out:
    if (it) pe_set_iter_close(it);
    pe_cli_free_classes(classes, ncls);
    free(ent);
    free(per_class);
    free(class_size);
    return rc;
}

enum { O_FROM = 256, O_TO, O_REMOVE, O_KEEP, O_MISSING_OK, O_VERSION };

int main(int argc, char **argv) {
    if (pe_cli_init_fds()) return PE_EXIT_ERROR;
    static const struct option lo[] = {
        {"store", 1, 0, 'S'}, {"from", 1, 0, O_FROM}, {"to", 1, 0, O_TO},
        {"remove", 0, 0, O_REMOVE}, {"keep", 0, 0, O_KEEP}, {"missing-ok", 0, 0, O_MISSING_OK}, {"force", 0, 0, 'f'},
        {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {"version", 0, 0, O_VERSION}, {0, 0, 0, 0}};
    job J, *j = &J;
    memset(j, 0, sizeof J);
    const char *store = NULL;
    int c, rc, quiet = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":S:fqh", lo, NULL)) != -1) {
        switch (c) {
        case 'S': store = optarg; break;
        case O_FROM: j->from = optarg; break;
        case O_TO: j->to = optarg; break;
        case O_REMOVE: j->remove = 1; break;
        case O_KEEP: j->keep = 1; break;
        case O_MISSING_OK: j->missing_ok = 1; break;
        case 'f': j->force = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return PE_EXIT_OK;
        case O_VERSION: printf("pe-inject %s\n", PE_VERSION_STRING); return PE_EXIT_OK;
        case ':': return pe_cli_usage(prog, "option '%s' needs a value", argv[optind - 1]);
        default: return pe_cli_usage(prog, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc && !(optind == argc - 1 && !strcmp(argv[optind], "-")))
        return pe_cli_usage(prog, "unexpected argument '%s' (keys come on stdin)", argv[optind]);
    if (!j->from || !j->to) return pe_cli_usage(prog, "--from SET and --to NEWSET are required");
    if (pe_set_name_ok(j->from)) return pe_cli_usage(prog, "--from: %s", pe_errmsg());
    if (pe_set_name_ok(j->to)) return pe_cli_usage(prog, "--to: %s", pe_errmsg());
    if (!strcmp(j->from, j->to))
        return pe_cli_usage(prog, "--to must differ from --from (the source set is never changed)");
    if (j->remove && j->keep) return pe_cli_usage(prog, "--remove and --keep exclude each other");
    if (j->missing_ok && !j->remove && !j->keep)
        return pe_cli_usage(prog, "--missing-ok goes with --remove or --keep");

    pe_store *st = NULL;
    if ((rc = pe_keylines_read(stdin, "stdin", collect, j))) goto out;
    if (j->n) qsort(j->v, j->n, sizeof *j->v, kl_cmp);
    if ((rc = pe_store_open(&st, pe_store_path(store), 0))) goto out;
    if ((rc = pe_store_write(st, body, j))) goto out;
    if (!quiet) {
        fprintf(stderr, "%s: %s: %" PRIu64 " images (%" PRIu64 " distinct) = '%s' %s %" PRIu64
                " (%" PRIu64 " distinct)", prog, pe_esc(j->to), j->new_total, j->new_distinct,
                pe_esc(j->from), j->keep ? "keeping" : j->remove ? "minus" : "plus", j->changed, j->changed_distinct);
        if (j->skipped) fprintf(stderr, "; %" PRIu64 " keys not in '%s' skipped", j->skipped,
                                pe_esc(j->from));
        if (j->rates[0]) fprintf(stderr, "; %s", j->rates);
        fputc('\n', stderr);
    }
out:
    if (st) pe_store_close(st);
    free(j->v);
    return rc ? pe_cli_fail(prog, rc) : PE_EXIT_OK;
}
