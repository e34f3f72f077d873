/*
 * pe-craft - PoisonedEncoder's poisoning inputs: each places a target input
 * and a reference input of the target class side by side; stores them and
 * prints one key line per poisoning input. Options: docs/man/pe-craft.1.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "craft.h"
#include "escape.h"
#include "pe.h"

static const char *prog = "pe-craft";

static void usage(FILE *f) {
    fputs(
"usage: pe-craft [options] --targets FILE --references FILE\n"
"                (--count N | --per-target N | --rate R --for SET)\n"
"Make PoisonedEncoder poisoning inputs (target beside reference), store\n"
"them, print KEY<TAB>TARGET<TAB>REFERENCE per poisoning input.\n"
"\n"
"  -S, --store PATH       store (default $PE_STORE, else ./pe.lmdb)\n"
"      --targets FILE     target keys, KEY[<TAB>CLASS] a line ('-': stdin)\n"
"      --target-class C   the target class of every target (line fields\n"
"                         are then ignored)\n"
"      --references FILE  reference keys, KEY[<TAB>CLASS] a line; with\n"
"                         --target-class all are of that class\n"
"      --labels SET       labeled set whose class names CLASS may use, and\n"
"                         whose labels class references listed bare\n"
"      --count N          poisoning inputs in all, split evenly across targets\n"
"      --per-target N     N poisoning inputs for each target\n"
"      --rate R           poisons over clean images of --for SET:\n"
"                         N = round(R x |D|), |D| its total count\n"
"      --for SET          the pre-training set the rate refers to\n"
"      --layouts L        lr, tb or lr,tb (default lr,tb)\n"
"      --fit F            which part is resized to share the edge: reference\n"
"                         (default), target, smaller (enlarged), larger\n"
"      --gap N            pixels between the parts (default 0)\n"
"      --fill V[,G,B]     gap colour (default 0)\n"
"      --jitter J         target scale drawn in [1-J, 1+J] (default 0)\n"
"      --offset N         reference shifted by up to N pixels (default 0)\n"
"      --draw D           references drawn uniform (default) or round-robin\n"
"      --distinct         every poisoning input different (and, with\n"
"                         --perturb, every copy of a target); fail otherwise\n"
"      --size WxH|same    resize each finished poison to WxH (bilinear,\n"
"                         aspect not kept), or to its target's own size\n"
"      --perturb LIST     perturb each copy of a target before it is placed,\n"
"                         LIST of KIND=STRENGTH, applied in this order:\n"
"                           crop=N      up to N pixels off each edge, resized back\n"
"                           resample=A  scaled by a factor in [1-A, 1+A] and back\n"
"                           color=V     an offset in [-V, V] per channel\n"
"                           jpeg=Q      a JPEG round trip at quality Q\n"
"      --seed N           seed (default 1)\n"
"      --set NAME         also record the poisons in set NAME (unlabeled,\n"
"                         with counts); replaces it with --force\n"
"  -f, --force            replace an existing --set\n"
"  -q, --quiet            no summary on stderr\n"
"  -h, --help             this help\n"
"      --version          print the version\n"
"Exit: 0 ok, 1 error (unknown key, class, set; store), 2 usage.\n",
        f);
}

typedef struct line {
    pe_key key;
    char *cls; /* the CLASS field, or NULL */
    unsigned long lineno;
} line;

typedef struct lines {
    line *v;
    size_t n, cap;
} lines;

static int collect(void *ctx, const pe_key *key, const char *rest, unsigned long lineno) {
    lines *L = ctx;
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 64;
        line *v = realloc(L->v, cap * sizeof *v);
        if (!v) return ENOMEM;
        L->v = v;
        L->cap = cap;
    }
    line *l = &L->v[L->n];
    l->key = *key;
    l->lineno = lineno;
    l->cls = NULL;
    size_t n = strcspn(rest, "\t");
    if (n && !(l->cls = strndup(rest, n))) return ENOMEM;
    L->n++;
    return 0;
}

static int read_lines(const char *path, lines *L) {
    if (!strcmp(path, "-")) return pe_keylines_read(stdin, "stdin", collect, L);
    FILE *f = fopen(path, "r");
    if (!f) return pe_fail(errno, "%s: %s", path, strerror(errno));
    int rc = pe_keylines_read(f, path, collect, L);
    fclose(f);
    return rc;
}

static void free_lines(lines *L) {
    for (size_t i = 0; i < L->n; i++) free(L->v[i].cls);
    free(L->v);
}

typedef struct job {
    const char *labels;     /* --labels set, or NULL */
    const char *tclass;     /* --target-class */
    const char *set, *for_set;
    int force;
    double rate;
    uint64_t count, per_target;
    pe_craft_opts co;
    lines T, R;
    /* resolved inside the txn */
    pe_craft_target *targets;
    pe_craft_ref *refs;
    pe_craft_made *made;
    pe_craft_summary sum;
    uint64_t total;
    int have_for;
    uint64_t for_total;
} job;

/* A class field: a decimal id, or a name of the --labels set. */
static int resolve_class(pe_txn *t, const job *j, const char *s, const char *where,
                         int32_t *out) {
    if (j->labels) {
        pe_set_hdr h;
        int rc = pe_set_get(t, j->labels, &h);
        if (rc) return rc == PE_ENOTFOUND ? pe_fail(rc, "no set '%s' (--labels)", j->labels) : rc;
        if (!pe_set_class_id(&h, s, out)) return 0;
        return pe_fail(PE_ENOTFOUND, "%s: no class '%s' in set '%s'", where, s, j->labels);
    }
    char *end;
    long v = strtol(s, &end, 10);
    if (*s && !*end && v >= 0 && v <= INT32_MAX) {
        *out = (int32_t)v;
        return 0;
    }
    return pe_fail(PE_ENOTFOUND, "%s: class '%s' is not a number; name the labeled set "
                   "that has it with --labels", where, s);
}

static int body(void *ctx, pe_txn *t) {
    job *j = ctx;
    int rc;
    char where[64];
    int32_t tc = 0;
    if (j->tclass && (rc = resolve_class(t, j, j->tclass, "--target-class", &tc))) return rc;
    for (size_t i = 0; i < j->T.n; i++) {
        line *l = &j->T.v[i];
        j->targets[i].key = l->key;
        if (j->tclass) {
            j->targets[i].cls = tc;
        } else if (!l->cls) {
            return pe_fail(PE_EUSAGE, "targets: line %lu has no class; give KEY<TAB>CLASS "
                           "or --target-class", l->lineno);
        } else {
            snprintf(where, sizeof where, "targets: line %lu", l->lineno);
            if ((rc = resolve_class(t, j, l->cls, where, &j->targets[i].cls))) return rc;
        }
    }
    for (size_t i = 0; i < j->R.n; i++) {
        line *l = &j->R.v[i];
        j->refs[i].key = l->key;
        snprintf(where, sizeof where, "references: line %lu", l->lineno);
        if (j->tclass) { /* one target class: every reference is of it */
            j->refs[i].cls = tc;
        } else if (l->cls) {
            if ((rc = resolve_class(t, j, l->cls, where, &j->refs[i].cls))) return rc;
        } else if (j->labels) {
            pe_set_entry e;
            rc = pe_set_lookup(t, j->labels, &l->key, &e);
            if (rc == PE_ENOTFOUND || (!rc && e.label == PE_LABEL_NONE))
                return pe_fail(PE_ENOTFOUND, "%s: the reference is not labeled in set '%s'",
                               where, j->labels);
            if (rc) return rc;
            j->refs[i].cls = e.label;
        } else {
            return pe_fail(PE_EUSAGE, "%s has no class; give KEY<TAB>CLASS, --target-class "
                           "or --labels", where);
        }
    }
    /* the budget */
    j->have_for = 0;
    if (j->for_set) {
        pe_set_hdr h;
        rc = pe_set_get(t, j->for_set, &h);
        if (rc) return rc == PE_ENOTFOUND ? pe_fail(rc, "no set '%s' (--for)", j->for_set) : rc;
        j->have_for = 1;
        j->for_total = h.n_total;
    }
    uint64_t total = j->count;
    if (j->per_target) total = j->per_target * j->T.n;
    if (j->rate > 0) {
        total = (uint64_t)llround(j->rate * (double)j->for_total);
        if (total == 0)
            return pe_fail(PE_EUSAGE, "rate %g of set '%s' (%" PRIu64 " images) is no poison",
                           j->rate, j->for_set, j->for_total);
    }
    if (total > 10000000)
        return pe_fail(PE_EUSAGE, "a budget of %" PRIu64 " poisons is over the limit of "
                       "10,000,000", total);
    if (total < j->T.n)
        return pe_fail(PE_EUSAGE, "a budget of %" PRIu64 " poisons for %zu targets leaves a "
                       "target without any", total, j->T.n);
    for (size_t i = 0; i < j->T.n; i++)
        j->targets[i].count = (uint32_t)(total / j->T.n + (i < total % j->T.n));
    j->total = total;
    free(j->made);
    if (!(j->made = malloc((size_t)total * sizeof *j->made))) return ENOMEM;
    if ((rc = pe_craft_run(t, &j->co, j->targets, j->T.n, j->refs, j->R.n, j->made, &j->sum)))
        return rc;
    if (j->set) {
        pe_set_hdr h;
        if (!pe_set_get(t, j->set, &h)) {
            if (!j->force)
                return pe_fail(PE_EEXIST, "set '%s' exists (--force replaces it)", j->set);
            if ((rc = pe_set_delete(t, j->set))) return rc;
        }
        if ((rc = pe_set_create(t, j->set))) return rc;
        for (uint64_t i = 0; i < total; i++)
            if ((rc = pe_set_add(t, j->set, &j->made[i].key, 1, PE_LABEL_NONE))) return rc;
        char v[64];
        snprintf(v, sizeof v, "%s/%d", PE_ATTACK_NAME, PE_ATTACK_VERSION);
        if ((rc = pe_set_set_attr(t, j->set, "crafted", v))) return rc;
    }
    return 0;
}

enum {
    O_TARGETS = 256, O_TCLASS, O_REFS, O_LABELS, O_COUNT, O_PER, O_RATE, O_FOR, O_LAYOUTS,
    O_FIT, O_GAP, O_FILL, O_JITTER, O_OFFSET, O_DRAW, O_DISTINCT, O_SEED, O_SET, O_VERSION,
    O_SIZE, O_PERTURB
};

int main(int argc, char **argv) {
    if (pe_cli_init_fds()) return PE_EXIT_ERROR;
    static const struct option lo[] = {
        {"store", 1, 0, 'S'}, {"targets", 1, 0, O_TARGETS}, {"target-class", 1, 0, O_TCLASS},
        {"references", 1, 0, O_REFS}, {"labels", 1, 0, O_LABELS}, {"count", 1, 0, O_COUNT},
        {"per-target", 1, 0, O_PER}, {"rate", 1, 0, O_RATE}, {"for", 1, 0, O_FOR},
        {"layouts", 1, 0, O_LAYOUTS}, {"fit", 1, 0, O_FIT}, {"gap", 1, 0, O_GAP},
        {"fill", 1, 0, O_FILL}, {"jitter", 1, 0, O_JITTER}, {"offset", 1, 0, O_OFFSET},
        {"draw", 1, 0, O_DRAW}, {"distinct", 0, 0, O_DISTINCT}, {"seed", 1, 0, O_SEED},
        {"set", 1, 0, O_SET}, {"size", 1, 0, O_SIZE}, {"perturb", 1, 0, O_PERTURB},
        {"force", 0, 0, 'f'}, {"quiet", 0, 0, 'q'},
        {"help", 0, 0, 'h'}, {"version", 0, 0, O_VERSION}, {0, 0, 0, 0}};
    job J, *j = &J;
    memset(j, 0, sizeof J);
    pe_craft_opts_default(&j->co);
    const char *store = NULL, *tpath = NULL, *rpath = NULL;
    int c, rc, quiet = 0, budgets = 0;
    uint64_t v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":S:fqh", lo, NULL)) != -1) {
        switch (c) {
        case 'S': store = optarg; break;
        case O_TARGETS: tpath = optarg; break;
        case O_TCLASS: j->tclass = optarg; break;
        case O_REFS: rpath = optarg; break;
        case O_LABELS: j->labels = optarg; break;
        case O_COUNT:
            if (pe_parse_u64(optarg, 1, 10000000, &j->count))
                return pe_cli_usage(prog, "--count: %s", pe_errmsg());
            budgets++;
            break;
        case O_PER:
            if (pe_parse_u64(optarg, 1, 10000000, &j->per_target))
                return pe_cli_usage(prog, "--per-target: %s", pe_errmsg());
            budgets++;
            break;
        case O_RATE:
            if (pe_parse_double(optarg, 0, 1, &j->rate) || !(j->rate > 0))
                return pe_cli_usage(prog, "--rate: '%s' is not a number in (0, 1]", optarg);
            budgets++;
            break;
        case O_FOR: j->for_set = optarg; break;
        case O_LAYOUTS:
            if (pe_layouts_parse(optarg, &j->co.layouts)) return pe_cli_usage(prog, "%s", pe_errmsg());
            break;
        case O_FIT:
            if (pe_fit_parse(optarg, &j->co.fit)) return pe_cli_usage(prog, "%s", pe_errmsg());
            break;
        case O_GAP:
            if (pe_parse_u64(optarg, 0, 4096, &v)) return pe_cli_usage(prog, "--gap: %s", pe_errmsg());
            j->co.gap = (uint32_t)v;
            break;
        case O_FILL: {
            unsigned a, b, d;
            char x;
            int n = sscanf(optarg, "%u,%u,%u%c", &a, &b, &d, &x);
            if (n == 1 && sscanf(optarg, "%u%c", &a, &x) == 1) b = d = a, n = 3;
            if (n != 3 || a > 255 || b > 255 || d > 255)
                return pe_cli_usage(prog, "--fill: '%s' is not V or R,G,B (0-255)", optarg);
            j->co.fill[0] = (uint8_t)a, j->co.fill[1] = (uint8_t)b, j->co.fill[2] = (uint8_t)d;
            break;
        }
        case O_JITTER:
            if (pe_parse_double(optarg, 0, 0.9, &j->co.jitter))
                return pe_cli_usage(prog, "--jitter: %s", pe_errmsg());
            break;
        case O_OFFSET:
            if (pe_parse_u64(optarg, 0, 4096, &v)) return pe_cli_usage(prog, "--offset: %s", pe_errmsg());
            j->co.offset = (uint32_t)v;
            break;
        case O_DRAW:
            if (pe_ref_draw_parse(optarg, &j->co.draw)) return pe_cli_usage(prog, "%s", pe_errmsg());
            break;
        case O_DISTINCT: j->co.distinct = 1; break;
        case O_SIZE:
            if (pe_craft_size_parse(optarg, &j->co)) return pe_cli_usage(prog, "--size: %s", pe_errmsg());
            break;
        case O_PERTURB:
            if (pe_perturb_parse(optarg, &j->co.perturb))
                return pe_cli_usage(prog, "--perturb: %s", pe_errmsg());
            break;
        case O_SEED:
            if (pe_parse_u64(optarg, 0, UINT64_MAX, &j->co.seed))
                return pe_cli_usage(prog, "--seed: %s", pe_errmsg());
            break;
        case O_SET: j->set = optarg; break;
        case 'f': j->force = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return PE_EXIT_OK;
        case O_VERSION: printf("pe-craft %s\n", PE_VERSION_STRING); return PE_EXIT_OK;
        case ':': return pe_cli_usage(prog, "option '%s' needs a value", argv[optind - 1]);
        default: return pe_cli_usage(prog, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return pe_cli_usage(prog, "unexpected argument '%s'", argv[optind]);
    if (!tpath) return pe_cli_usage(prog, "--targets is required");
    if (!rpath) return pe_cli_usage(prog, "--references is required");
    if (!strcmp(tpath, "-") && !strcmp(rpath, "-"))
        return pe_cli_usage(prog, "--targets and --references cannot both be stdin");
    if (budgets != 1) return pe_cli_usage(prog, "give one budget: --count, --per-target or --rate");
    if (j->rate > 0 && !j->for_set) return pe_cli_usage(prog, "--rate needs --for SET");
    if (j->set && pe_set_name_ok(j->set)) return pe_cli_usage(prog, "--set: %s", pe_errmsg());
    if (j->labels && pe_set_name_ok(j->labels)) return pe_cli_usage(prog, "--labels: %s", pe_errmsg());
    if (j->for_set && pe_set_name_ok(j->for_set)) return pe_cli_usage(prog, "--for: %s", pe_errmsg());

    pe_store *st = NULL;
    if ((rc = read_lines(tpath, &j->T)) || (rc = read_lines(rpath, &j->R))) goto out;
    if (!j->T.n) { rc = pe_fail(PE_EUSAGE, "no targets in %s", tpath); goto out; }
    if (!j->R.n) { rc = pe_fail(PE_EUSAGE, "no references in %s", rpath); goto out; }
    j->targets = calloc(j->T.n, sizeof *j->targets);
    j->refs = calloc(j->R.n, sizeof *j->refs);
    if (!j->targets || !j->refs) { rc = ENOMEM; goto out; }
    if ((rc = pe_store_open(&st, pe_store_path(store), 0))) goto out;
    if ((rc = pe_store_write(st, body, j))) goto out;

    /* output after the commit: one line per poisoning input */
    signal(SIGPIPE, SIG_IGN);
    for (uint64_t i = 0; i < j->sum.total; i++) {
        char a[PE_KEY_HEX + 1], b[PE_KEY_HEX + 1], d[PE_KEY_HEX + 1];
        pe_key_to_hex(&j->made[i].key, a);
        pe_key_to_hex(&j->targets[j->made[i].target].key, b);
        pe_key_to_hex(&j->refs[j->made[i].ref].key, d);
        if (printf("%s\t%s\t%s\n", a, b, d) < 0) break;
    }
    if (fflush(stdout) && !quiet) fprintf(stderr, "%s: stdout: write error (poisons are stored)\n", prog);
    if (!quiet) {
        fprintf(stderr, "%s: %" PRIu64 " poisoning inputs (%" PRIu64 " distinct", prog,
                j->sum.total, j->sum.distinct);
        if (j->sum.existed) fprintf(stderr, ", %" PRIu64 " already stored", j->sum.existed);
        fprintf(stderr, ") for %zu target%s", j->T.n, j->T.n == 1 ? "" : "s");
        if (j->have_for && j->for_total) {
            double P = (double)j->sum.total, D = (double)j->for_total;
            fprintf(stderr, "; of set '%s' (%" PRIu64 " images): |P|/|D| %.4g%%, "
                    "|P|/(|D|+|P|) %.4g%%, per target %.4g%%", pe_esc(j->for_set), j->for_total,
                    100 * P / D, 100 * P / (D + P), 100 * P / D / (double)j->T.n);
        }
        fputc('\n', stderr);
    }
out:
    if (st) pe_store_close(st);
    free_lines(&j->T);
    free_lines(&j->R);
    free(j->targets);
    free(j->refs);
    free(j->made);
    return rc ? pe_cli_fail(prog, rc) : PE_EXIT_OK;
}
