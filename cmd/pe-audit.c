/*
 * pe-audit - scans of a set: exact and near duplicates, image quality,
 * PoisonedEncoder poisons (composites, recurring parts, seams, images of
 * another set inside this one) and, with an encoder, outliers, near
 * duplicates and label disagreements in feature space; prints the
 * suspects as key lines, a
 * summary on stderr, and scores itself on known poisons. Options:
 * docs/man/pe-audit.1.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cli.h"
#include "escape.h"
#include "pe.h"

static const char *prog = "pe-audit";

static void usage(FILE *f) {
    fputs(
"usage: pe-audit [options] --set SET | pe-audit [options] [-] < KEYS\n"
"Scan the images of SET (or the keys on stdin) and print the suspects,\n"
"KEY<TAB>SCAN<TAB>SCORE a line, in key order; a summary on stderr.\n"
"\n"
"  -S, --store PATH      store (default $PE_STORE, else ./pe.lmdb)\n"
"  -s, --set SET         the set audited\n"
"      --scan LIST       scans, comma-separated (default all): exact, phash,\n"
"                        dark, light, blurry, lowinfo, aspect, oddsize,\n"
"                        grayscale, composite, recurring, seam, size, against,\n"
"                        outlier, embdup, mislabel; groups dup, quality,\n"
"                        poison, embed, all\n"
"      --against SET     look for SET's images (whole, or as parts) in the\n"
"                        audited images (the against scan and composite)\n"
"      --hash MODE       pe (default: exact integer pHash) or imagehash\n"
"      --radius N        near-duplicate Hamming radius, 0-32 (default 8)\n"
"      --part-radius N   radius of part matches, 0-32 (default 2)\n"
"      --score-radius N  distances searched for scores, 0-32 (default 12)\n"
"  -e, --encoder FILE    run the embedding scans (outlier, embdup, mislabel)\n"
"                        on this encoder's features: a pe-train checkpoint,\n"
"                        or a PyTorch state_dict (then --arch, --size,\n"
"                        --channels, --mean and --std are required)\n"
"      --arch A, --width W, --size N, --channels 1|3, --mean A[,B,C],\n"
"      --std A[,B,C]     describe the encoder; override a checkpoint's\n"
"  -k, --neighbours K    neighbours per image, 1-256 (default 10)\n"
"      --embed-max N     refuse an embedding audit of more images (default\n"
"                        100000: the search compares every pair)\n"
"  -b, --batch N         images per forward pass (default 256)\n"
"  -j, --threads N       compute threads (default: online CPUs)\n"
"      --threshold SCAN=V  suspect when the score is at least V (0-1);\n"
"                        repeatable\n"
"      --truth [FILE]    score the scans: the poisons are the images made by\n"
"                        pe-craft (from provenance), or the keys in FILE\n"
"      --all             print every image's score for every scan, with a\n"
"                        fourth field: suspect or -\n"
"      --json            NDJSON: one finding a line, then a summary line\n"
"      --report FILE     also write an HTML report (self-contained, images\n"
"                        embedded; written whole or not at all)\n"
"      --report-max N    items shown per section of the report, 0-10000\n"
"                        (default 40)\n"
"      --shard I/N       audit the images whose key is I modulo N (first 16\n"
"                        hex digits); pairwise scans still search the whole\n"
"                        set, so shards' outputs together are the full audit\n"
"      --index-only      measure the images (or the shard's) and keep their\n"
"                        hashes and measures in the store's index; no scans\n"
"      --no-index        neither use nor extend the store's index (every image\n"
"                        is measured from its pixels; the store is opened\n"
"                        read-only)\n"
"  -q, --quiet           no summary on stderr\n"
"  -h, --help            this help\n"
"      --version         print the version\n"
"Exit: 0 ok (suspects or not), 1 error (unknown or empty set, key not in\n"
"the store, bad line, report file, encoder, store), 2 usage.\n",
        f);
}

enum {
    O_SCAN = 256, O_AGAINST, O_HASH, O_RADIUS, O_PART_RADIUS, O_SCORE_RADIUS, O_THRESHOLD,
    O_TRUTH, O_ALL, O_JSON, O_REPORT, O_REPORT_MAX, O_VERSION, O_ARCH, O_WIDTH, O_SIZE,
    O_CHANNELS, O_MEAN, O_STD, O_EMBED_MAX, O_SHARD, O_INDEX_ONLY, O_NO_INDEX
};

/* I/N with 0 <= I < N <= 65536 */
static int parse_shard(const char *s, pe_audit_opts *o) {
    const char *slash = strchr(s, '/');
    char i[24];
    uint64_t a, b;
    if (!slash || (size_t)(slash - s) >= sizeof i) goto bad;
    memcpy(i, s, (size_t)(slash - s));
    i[slash - s] = 0;
    if (pe_parse_u64(i, 0, 65535, &a) || pe_parse_u64(slash + 1, 1, 65536, &b) || a >= b) goto bad;
    o->shard_i = (uint32_t)a;
    o->shard_n = (uint32_t)b;
    return 0;
bad:
    return pe_cli_usage(prog, "--shard takes I/N with 0 <= I < N <= 65536: '%s'", s);
}

static int parse_threshold(const char *arg, pe_audit_opts *o) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) return pe_cli_usage(prog, "--threshold takes SCAN=VALUE: '%s'", arg);
    char name[32];
    size_t n = (size_t)(eq - arg);
    if (n >= sizeof name) return pe_cli_usage(prog, "--threshold: unknown scan '%s'", arg);
    memcpy(name, arg, n);
    name[n] = 0;
    int scan = -1;
    for (int s = 0; s < PE_SCAN_COUNT; s++)
        if (!strcmp(name, pe_scan_name((pe_scan)s))) scan = s;
    if (scan < 0) return pe_cli_usage(prog, "--threshold: unknown scan '%s'", name);
    char *end;
    double v = strtod(eq + 1, &end);
    if (!eq[1] || *end || !(v >= 0 && v <= 1))
        return pe_cli_usage(prog, "--threshold: '%s' is not a number from 0 to 1", eq + 1);
    o->threshold[scan] = v;
    return 0;
}

static int parse_radius(const char *opt, const char *s, int *out) {
    uint64_t v;
    if (pe_parse_u64(s, 0, 32, &v))
        return pe_cli_usage(prog, "%s takes a whole number from 0 to 32: '%s'", opt, s);
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    if (pe_cli_init_fds()) return PE_EXIT_ERROR;
    static const struct option lo[] = {
        {"store", 1, 0, 'S'},          {"set", 1, 0, 's'},
        {"scan", 1, 0, O_SCAN},        {"against", 1, 0, O_AGAINST},
        {"hash", 1, 0, O_HASH},        {"radius", 1, 0, O_RADIUS},
        {"part-radius", 1, 0, O_PART_RADIUS}, {"score-radius", 1, 0, O_SCORE_RADIUS},
        {"threshold", 1, 0, O_THRESHOLD}, {"truth", 2, 0, O_TRUTH},
        {"all", 0, 0, O_ALL},          {"json", 0, 0, O_JSON},
        {"report", 1, 0, O_REPORT},    {"report-max", 1, 0, O_REPORT_MAX},
        {"quiet", 0, 0, 'q'},          {"help", 0, 0, 'h'},
        {"version", 0, 0, O_VERSION},  {"encoder", 1, 0, 'e'},
        {"arch", 1, 0, O_ARCH},        {"width", 1, 0, O_WIDTH},
        {"size", 1, 0, O_SIZE},        {"channels", 1, 0, O_CHANNELS},
        {"mean", 1, 0, O_MEAN},        {"std", 1, 0, O_STD},
        {"neighbours", 1, 0, 'k'},     {"embed-max", 1, 0, O_EMBED_MAX},
        {"batch", 1, 0, 'b'},          {"threads", 1, 0, 'j'},
        {"shard", 1, 0, O_SHARD},      {"index-only", 0, 0, O_INDEX_ONLY},
        {"no-index", 0, 0, O_NO_INDEX},
        {0, 0, 0, 0}};
    pe_audit_opts o;
    pe_audit_opts_default(&o);
    o.prog = prog;
    pe_encoder_opts enc;
    pe_encoder_opts_default(&enc);
    enc.prog = prog;
    const char *store = NULL;
    const char *described = NULL; /* an option that describes the encoder */
    int c, rc;
    uint64_t u;
    double d;
    opterr = 0;
#define UINT(name_, lo_, hi_, dst)                                                               \
    do {                                                                                         \
        if (pe_parse_u64(optarg, lo_, hi_, &u)) return pe_cli_usage(prog, "%s: %s", name_, pe_errmsg()); \
        dst = u;                                                                                 \
    } while (0)
    while ((c = getopt_long(argc, argv, ":S:s:e:k:b:j:qh", lo, NULL)) != -1) {
        switch (c) {
        case 'S': store = optarg; break;
        case 's': o.set = optarg; break;
        case O_SCAN:
            if (pe_scan_list_parse(optarg, &o.scans)) return pe_cli_usage(prog, "--scan: %s", pe_errmsg());
            break;
        case O_AGAINST: o.against = optarg; break;
        case O_HASH:
            if (pe_phash_mode_parse(optarg, &o.mode)) return pe_cli_usage(prog, "--hash: %s", pe_errmsg());
            break;
        case O_RADIUS:
            if ((rc = parse_radius("--radius", optarg, &o.radius))) return rc;
            break;
        case O_PART_RADIUS:
            if ((rc = parse_radius("--part-radius", optarg, &o.part_radius))) return rc;
            break;
        case O_SCORE_RADIUS:
            if ((rc = parse_radius("--score-radius", optarg, &o.score_radius))) return rc;
            break;
        case O_THRESHOLD:
            if ((rc = parse_threshold(optarg, &o))) return rc;
            break;
        case O_TRUTH:
            /* an optional argument must be attached (--truth=FILE); a
             * following word that is not an option is taken too */
            if (!optarg && optind < argc && argv[optind][0] != '-') optarg = argv[optind++];
            o.truth = optarg ? 2 : 1;
            o.truth_file = optarg;
            break;
        case O_ALL: o.all = 1; break;
        case O_JSON: o.json = 1; break;
        case O_REPORT:
            if (!optarg[0]) return pe_cli_usage(prog, "--report needs a file name");
            o.report = optarg;
            break;
        case O_REPORT_MAX: {
            uint64_t v;
            if (pe_parse_u64(optarg, 0, 10000, &v))
                return pe_cli_usage(prog, "--report-max takes a whole number from 0 to 10000: '%s'", optarg);
            o.report_max = (int)v;
            break;
        }
        case 'e': enc.path = optarg; break;
        case O_ARCH:
            if (pe_arch_parse(optarg, &enc.arch)) return pe_cli_usage(prog, "%s", pe_errmsg());
            enc.have_arch = 1;
            described = "--arch";
            break;
        case O_WIDTH:
            if (pe_parse_double(optarg, 0.0625, 16, &d)) return pe_cli_usage(prog, "--width: %s", pe_errmsg());
            enc.width = d;
            enc.have_width = 1;
            described = "--width";
            break;
        case O_SIZE: UINT("--size", 8, 1024, enc.size); described = "--size"; break;
        case O_CHANNELS:
            if (strcmp(optarg, "1") && strcmp(optarg, "3")) return pe_cli_usage(prog, "--channels takes 1 or 3");
            enc.channels = atoi(optarg);
            described = "--channels";
            break;
        case O_MEAN:
            if (pe_parse_floats3(optarg, enc.mean)) return pe_cli_usage(prog, "--mean takes 1 or 3 numbers");
            enc.have_mean = 1;
            described = "--mean";
            break;
        case O_STD:
            if (pe_parse_floats3(optarg, enc.std) || !(enc.std[0] > 0 && enc.std[1] > 0 && enc.std[2] > 0))
                return pe_cli_usage(prog, "--std takes 1 or 3 positive numbers");
            enc.have_std = 1;
            described = "--std";
            break;
        case 'k': UINT("--neighbours", 1, PE_AUDIT_MAX_K, o.k); break;
        case O_EMBED_MAX: UINT("--embed-max", 1, 100000000, o.embed_max); break;
        case 'b': UINT("--batch", 1, 65536, enc.batch); break;
        case 'j': UINT("--threads", 1, 256, o.threads); break;
        case 'q': o.quiet = 1; break;
        case O_SHARD:
            if ((rc = parse_shard(optarg, &o))) return rc;
            break;
        case O_INDEX_ONLY: o.index_only = 1; break;
        case O_NO_INDEX: o.store_index = PE_AUDIT_INDEX_OFF; break;
        case 'h': usage(stdout); return PE_EXIT_OK;
        case O_VERSION: printf("pe-audit %s\n", PE_VERSION_STRING); return PE_EXIT_OK;
        case ':': return pe_cli_usage(prog, "option '%s' needs a value", argv[optind - 1]);
        default: return pe_cli_usage(prog, "unknown option '%s'", argv[optind - 1]);
        }
    }
    int dash = optind < argc && !strcmp(argv[optind], "-");
    if (argc - optind > dash)
        return pe_cli_usage(prog, "unexpected argument '%s'", argv[optind + dash]);
    if (dash && o.set) return pe_cli_usage(prog, "'-' (keys on stdin) and --set exclude each other");
    if (o.set && pe_set_name_ok(o.set)) return pe_cli_usage(prog, "--set: %s", pe_errmsg());
    if (o.against && pe_set_name_ok(o.against))
        return pe_cli_usage(prog, "--against: %s", pe_errmsg());
    if (!o.set && o.truth == 2 && !strcmp(o.truth_file, "-"))
        return pe_cli_usage(prog, "--truth - reads stdin, which holds the keys audited; use --set");
    if (!o.scans) return pe_cli_usage(prog, "--scan: no scan selected");
    const unsigned embed = 1u << PE_SCAN_OUTLIER | 1u << PE_SCAN_EMBDUP | 1u << PE_SCAN_MISLABEL;
    unsigned runnable = o.scans;
    if (!o.against) runnable &= ~(1u << PE_SCAN_AGAINST);
    if (!enc.path) runnable &= ~embed;
    if (!runnable && (o.scans & embed) && !enc.path)
        return pe_cli_usage(prog, "the embedding scans (outlier, embdup, mislabel) need --encoder FILE");
    if (!runnable) return pe_cli_usage(prog, "the against scan needs --against SET");
    if (!enc.path && described) return pe_cli_usage(prog, "%s describes the encoder: give --encoder FILE", described);
    if (enc.have_width && enc.have_arch && enc.arch == PE_ARCH_SMALL)
        return pe_cli_usage(prog, "--width applies to resnet18 only");
    if (enc.path && !(o.scans & embed))
        return pe_cli_usage(prog, "--encoder: --scan selects no embedding scan (outlier, embdup, mislabel)");
    if (o.shard_n && o.report)
        return pe_cli_usage(prog, "--report shows the whole set: not with --shard");
    if (o.index_only) {
        if (o.store_index == PE_AUDIT_INDEX_OFF)
            return pe_cli_usage(prog, "--index-only and --no-index exclude each other");
        if (enc.path || o.report || o.truth || o.json || o.all || o.against)
            return pe_cli_usage(prog, "--index-only runs no scan: no --encoder, --against, "
                                "--report, --truth, --json or --all");
    }
    if (enc.path) {
        enc.progress = isatty(2) && !o.quiet;
        o.encoder = &enc;
    }

    pe_store *st = NULL;
    const char *path = pe_store_path(store);
    if (o.store_index == PE_AUDIT_INDEX_OFF) {
        rc = pe_store_open(&st, path, PE_STORE_RDONLY);
    } else {
        /* the index is extended when the store can be written; a store
         * this user may only read is still audited, from its index where
         * it has one */
        rc = pe_store_open(&st, path, 0);
        if ((rc == EACCES || rc == EROFS || rc == EPERM) && !o.index_only) {
            o.store_index = PE_AUDIT_INDEX_READ;
            rc = pe_store_open(&st, path, PE_STORE_RDONLY);
        }
    }
    if (rc) return pe_cli_fail(prog, rc);
    rc = pe_audit_run(st, &o, stdin, stdout, stderr);
    pe_store_close(st);
    if (rc) return pe_cli_fail(prog, rc);
    if (fflush(stdout) == EOF) {
        fprintf(stderr, "%s: write error on standard output\n", prog);
        return PE_EXIT_ERROR;
    }
    return PE_EXIT_OK;
}
