/*
 * pe-ingest - decode image files, folders, archives and dataset files into
 * the store; print one KEY\tLABEL\tSOURCE line per image, in input order,
 * after its record is committed. Options: docs/man/pe-ingest.1.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ingest.h"
#include "pe.h"

static const char *prog = "pe-ingest";

static void usage(FILE *f) {
    fprintf(f,
"usage: pe-ingest [options] [PATH...]\n"
"Decode images into the store and print KEY\\tLABEL\\tSOURCE per image.\n"
"PATH: image file, folder (recursive; first-level subfolders are labels),\n"
"tar archive (.tar, .tar.gz), IDX file (MNIST/Fashion-MNIST, .gz or not),\n"
"CIFAR-10/100 batch, STL-10 *_X.bin; '-' or none: paths on stdin.\n"
"\n"
"  -S, --store PATH      store (default $PE_STORE, else ./pe.lmdb)\n"
"  -s, --set NAME        add the images to set NAME (created complete at\n"
"                        the end; an existing set needs --append)\n"
"      --append          add to an existing set, batch by batch\n"
"      --label NAME      give every image this label (name or id)\n"
"      --unlabeled       no labels\n"
"      --classes FILE    class names, one a line (line i names id i)\n"
"      --labels FILE     labels file of an IDX or STL-10 images file\n"
"      --format F        auto (default), image, tar, idx, cifar10, cifar100,\n"
"                        stl10\n"
"      --coarse          CIFAR-100: coarse labels instead of fine\n"
"      --channels 1|3    convert to gray or RGB (Pillow's rules)\n"
"      --max-side N      downscale so the longer side is at most N\n"
"      --size WxH        resize to exactly WxH (bilinear, antialiased)\n"
"      --compress        store pixels losslessly compressed\n"
"      --max-pixels N    reject images over N pixels (default %u)\n"
"      --timeout SEC     per-image decode deadline (default 30)\n"
"  -j, --threads N       decoding threads (default: online CPUs)\n"
"      --follow          follow symbolic links (loops detected)\n"
"  -0, --null            paths on stdin are NUL-separated\n"
"      --from-store PATH copy every image of another store (merge stores)\n"
"      --from-set NAME   copy only this set of it, with labels and counts\n"
"      --batch N         images per commit (default and most 32768;\n"
"                        a batch also commits at 64 MiB of pixels or 1 s)\n"
"  -q, --quiet           no per-file messages (summary only)\n"
"  -h, --help            this help\n"
"      --version         print the version\n"
"Exit: 0 ok, 1 error, 2 usage, 3 some inputs rejected.\n",
            PE_DEFAULT_MAX_PIXELS);
}

enum { O_APPEND = 256, O_LABEL, O_UNLABELED, O_CLASSES, O_LABELS, O_FORMAT,
       O_COARSE, O_CHANNELS, O_MAXSIDE, O_SIZE, O_COMPRESS, O_MAXPIX,
       O_TIMEOUT, O_FOLLOW, O_FROMSTORE, O_FROMSET, O_BATCH, O_VERSION };

int main(int argc, char **argv) {
    if (pe_cli_init_fds()) return PE_EXIT_ERROR;
    static const struct option lo[] = {
        {"store", 1, 0, 'S'}, {"set", 1, 0, 's'}, {"append", 0, 0, O_APPEND},
        {"label", 1, 0, O_LABEL}, {"unlabeled", 0, 0, O_UNLABELED},
        {"classes", 1, 0, O_CLASSES}, {"labels", 1, 0, O_LABELS},
        {"format", 1, 0, O_FORMAT}, {"coarse", 0, 0, O_COARSE},
        {"channels", 1, 0, O_CHANNELS}, {"max-side", 1, 0, O_MAXSIDE},
        {"size", 1, 0, O_SIZE}, {"compress", 0, 0, O_COMPRESS},
        {"max-pixels", 1, 0, O_MAXPIX}, {"timeout", 1, 0, O_TIMEOUT},
        {"threads", 1, 0, 'j'}, {"follow", 0, 0, O_FOLLOW}, {"null", 0, 0, '0'},
        {"from-store", 1, 0, O_FROMSTORE}, {"from-set", 1, 0, O_FROMSET},
        {"batch", 1, 0, O_BATCH}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'},
        {"version", 0, 0, O_VERSION}, {0, 0, 0, 0}};
    pe_ingest_opts o = {0};
    const char *store = NULL;
    uint64_t v;
    int c, rc;
    o.prog = prog;
    o.timeout = 30;
    o.encoding = PE_ENC_RAW;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":S:s:j:0qh", lo, NULL)) != -1) {
        switch (c) {
        case 'S': store = optarg; break;
        case 's':
            if (pe_set_name_ok(optarg)) return pe_cli_usage(prog, "%s", pe_errmsg());
            o.set = optarg;
            break;
        case O_APPEND: o.append = 1; break;
        case O_LABEL:
            if (!*optarg) return pe_cli_usage(prog, "--label needs a name or id");
            o.label_mode = PE_LABEL_FIXED;
            o.label = optarg;
            break;
        case O_UNLABELED: o.label_mode = PE_LABEL_UNLABELED; break;
        case O_CLASSES: o.classes_file = optarg; break;
        case O_LABELS: o.labels_path = optarg; break;
        case O_FORMAT:
            if (!strcmp(optarg, "auto")) o.kind = PE_SRC_AUTO;
            else if (!strcmp(optarg, "image")) o.kind = PE_SRC_IMAGE;
            else if (!strcmp(optarg, "tar")) o.kind = PE_SRC_TAR;
            else if (!strcmp(optarg, "idx")) o.kind = PE_SRC_IDX;
            else if (!strcmp(optarg, "cifar10")) o.kind = PE_SRC_CIFAR10;
            else if (!strcmp(optarg, "cifar100")) o.kind = PE_SRC_CIFAR100;
            else if (!strcmp(optarg, "stl10")) o.kind = PE_SRC_STL10;
            else return pe_cli_usage(prog, "unknown --format '%s'", optarg);
            break;
        case O_COARSE: o.cifar_coarse = 1; break;
        case O_CHANNELS:
            if (strcmp(optarg, "1") && strcmp(optarg, "3"))
                return pe_cli_usage(prog, "--channels takes 1 or 3, not '%s'", optarg);
            o.channels = (uint32_t)atoi(optarg);
            break;
        case O_MAXSIDE:
            if (pe_parse_u64(optarg, 1, 65535, &v))
                return pe_cli_usage(prog, "--max-side: %s", pe_errmsg());
            o.max_side = (uint32_t)v;
            break;
        case O_SIZE:
            if (pe_parse_size(optarg, &o.size_w, &o.size_h))
                return pe_cli_usage(prog, "--size: %s", pe_errmsg());
            break;
        case O_COMPRESS: o.encoding = PE_ENC_DEFLATE; break;
        case O_MAXPIX:
            if (pe_parse_u64(optarg, 1, 1ull << 40, &o.max_pixels))
                return pe_cli_usage(prog, "--max-pixels: %s", pe_errmsg());
            break;
        case O_TIMEOUT: {
            char *end;
            o.timeout = strtod(optarg, &end);
            if (*end || !(o.timeout >= 0) || o.timeout > 1e6)
                return pe_cli_usage(prog, "--timeout takes seconds, not '%s'", optarg);
            break;
        }
        case 'j':
            if (pe_parse_u64(optarg, 1, 64, &v))
                return pe_cli_usage(prog, "--threads: %s", pe_errmsg());
            o.threads = (int)v;
            break;
        case O_FOLLOW: o.follow = 1; break;
        case '0': o.stdin_nul = 1; break;
        case O_FROMSTORE: o.from_store = optarg; break;
        case O_FROMSET: o.from_set = optarg; break;
        case O_BATCH:
            if (pe_parse_u64(optarg, 1, 32768, &v))
                return pe_cli_usage(prog, "--batch: %s", pe_errmsg());
            o.batch = (size_t)v;
            break;
        case 'q': o.quiet = 1; break;
        case 'h': usage(stdout); return PE_EXIT_OK;
        case O_VERSION: printf("pe-ingest %s\n", PE_VERSION_STRING); return PE_EXIT_OK;
        case ':': return pe_cli_usage(prog, "option '%s' needs a value", argv[optind - 1]);
        default: return pe_cli_usage(prog, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (o.size_w && o.max_side)
        return pe_cli_usage(prog, "--size and --max-side exclude each other");
    if (o.append && !o.set) return pe_cli_usage(prog, "--append needs --set");
    if (o.from_set && !o.from_store) return pe_cli_usage(prog, "--from-set needs --from-store");
    if (o.from_store && optind < argc)
        return pe_cli_usage(prog, "--from-store takes no PATH arguments");
    o.progress = isatty(2) && !o.quiet;
    /* A file-size limit (ulimit -f) must fail the write with EFBIG like a
     * full disk, not kill the process between commits. */
    signal(SIGXFSZ, SIG_IGN);

    pe_store *st;
    if ((rc = pe_store_open(&st, pe_store_path(store), PE_STORE_CREATE)))
        return pe_cli_fail(prog, rc);
    pe_ingest_stats s;
    rc = pe_ingest_run(st, &o, argv + optind, argc - optind, stdout, stderr, &s);
    int status = PE_EXIT_OK;
    if (rc) status = pe_cli_fail(prog, rc);
    fprintf(stderr, "%s: %llu images: %llu stored, %llu already present, %llu rejected",
            prog, (unsigned long long)s.seen, (unsigned long long)s.stored,
            (unsigned long long)s.present, (unsigned long long)s.rejected);
    for (int i = 0, first = 1; i < PE_INGEST_NREASONS; i++)
        if (s.rejected_by[i]) {
            fprintf(stderr, "%s%llu %s", first ? " (" : ", ",
                    (unsigned long long)s.rejected_by[i], pe_ingest_reason_name(i));
            first = 0;
        }
    if (s.rejected) fputc(')', stderr);
    if (s.skipped) fprintf(stderr, ", %llu skipped", (unsigned long long)s.skipped);
    if (s.ignored) fprintf(stderr, ", %llu ignored", (unsigned long long)s.ignored);
    fputc('\n', stderr);
    pe_store_close(st);
    if (status == PE_EXIT_OK && (s.rejected || s.skipped)) status = PE_EXIT_REJECTED;
    if (fflush(stdout) == EOF && status == PE_EXIT_OK) status = PE_EXIT_ERROR;
    return status;
}
