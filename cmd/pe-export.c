/*
 * pe-export - write stored images back out as PNG (or PNM) files: one image
 * to stdout, or many into a folder grouped by label, so a person can look at
 * what is stored and so data travels between parties as plain files.
 *
 * Names from data never become paths unchecked: files are named by key,
 * label folders by a sanitised class name (or the id), created with
 * mkdirat/openat relative to the output folder, refusing links, never
 * overwriting; each file is written under a temporary name and renamed into
 * place, so an interrupted export leaves no partial file under a real name.
 * Options: docs/man/pe-export.1.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "codec.h"
#include "escape.h"
#include "pe.h"

static const char *prog = "pe-export";

static void usage(FILE *f) {
    fputs(
"usage: pe-export [options] KEY > FILE.png   one image to stdout\n"
"       pe-export [options] -o DIR [--set NAME [--label L]] [-]\n"
"Write stored images as PNG files, DIR/LABEL/KEY.png.\n"
"\n"
"  -S, --store PATH   store (default $PE_STORE, else ./pe.lmdb)\n"
"  -o, --output DIR   folder to write into (created; must not be a link)\n"
"  -s, --set NAME     export the images of set NAME; with '-', the keys on\n"
"                     stdin, filed under their labels in NAME\n"
"      --label L      only label L of the set (class name or id)\n"
"      --flat         no label folders\n"
"      --pnm          write PGM/PPM instead of PNG\n"
"  -h, --help         this help\n"
"      --version      print the version\n"
"Label folders: the class name when it is plain ([A-Za-z0-9 ._+-], not\n"
"starting with '.' or '_', at most 100 bytes, unique), else the label id;\n"
"unlabeled images go to _unlabeled. Existing files are never overwritten.\n"
"Exit: 0 ok, 1 error (unknown key or set, bad line, existing file), 2 usage.\n",
        f);
}

typedef struct ex {
    int outdir;      /* dirfd of DIR */
    int flat, pnm;
    char **classes;
    uint32_t ncls;
    char **dirnames; /* per class id: folder name (NULL until needed) */
    uint64_t written;
} ex;

static int plain_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 100 || s[0] == '.' || s[0] == '_') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == ' ' || c == '.' || c == '_' ||
              c == '+' || c == '-'))
            return 0;
    }
    return 1;
}

/* Folder name for a label: a plain, unique class name or the decimal id.
 * A decimal id cannot clash with a plain name that is itself a number
 * naming another id, since such a name is only used when it equals its
 * own id. */
static void folder_for(const ex *e, int32_t label, char *out, size_t n) {
    if (label == PE_LABEL_NONE) {
        snprintf(out, n, "_unlabeled");
        return;
    }
    if ((uint32_t)label < e->ncls && plain_name(e->classes[label])) {
        const char *name = e->classes[label];
        int unique = 1;
        for (uint32_t i = 0; i < e->ncls; i++)
            if (i != (uint32_t)label && !strcmp(e->classes[i], name)) unique = 0;
        char *end;
        long as_num = strtol(name, &end, 10);
        if (*end == 0 && as_num != label) unique = 0; /* "3" naming id 5 */
        if (unique) {
            snprintf(out, n, "%s", name);
            return;
        }
    }
    snprintf(out, n, "%" PRId32, label);
}

/* Opens (creating) sub-folder name under dirfd without following links. */
static int open_subdir(int dirfd, const char *name, int *out) {
    if (mkdirat(dirfd, name, 0777) != 0 && errno != EEXIST)
        return pe_fail(errno, "cannot create folder '%s': %s", name, strerror(errno));
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return pe_fail(errno == ELOOP || errno == ENOTDIR ? PE_EEXIST : errno,
                       "'%s' exists and is not a folder (or is a link)", name);
    *out = fd;
    return 0;
}

/* Writes buf as dirfd/name via a temporary file and a no-replace rename. */
static int write_new(int dirfd, const char *name, const uint8_t *buf, size_t len) {
    char tmp[128];
    snprintf(tmp, sizeof tmp, ".%s.%ld.tmp", name, (long)getpid());
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0) return pe_fail(errno, "cannot create '%s': %s", tmp, strerror(errno));
    size_t off = 0;
    int rc = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            rc = pe_fail(errno, "writing '%s': %s", name, strerror(errno));
            break;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0 && !rc) rc = pe_fail(errno, "writing '%s': %s", name, strerror(errno));
    if (!rc && renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) != 0) {
        if (errno == EEXIST)
            rc = pe_fail(PE_EEXIST, "'%s' exists; not overwritten", name);
        else
            rc = pe_fail(errno, "cannot create '%s': %s", name, strerror(errno));
    }
    if (rc) unlinkat(dirfd, tmp, 0);
    return rc;
}

static int encode(const pe_image *im, int pnm, uint8_t **buf, size_t *len) {
    return pnm ? pe_encode_pnm(im, buf, len) : pe_encode_png(im, buf, len);
}

static int export_one(void *ctx, pe_txn *txn, const pe_set_entry *e, unsigned long lineno) {
    ex *x = ctx;
    pe_image im = {0};
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc, dirfd = -1;
    char hx[PE_KEY_HEX + 1], name[64], folder[128];
    (void)lineno;
    pe_key_to_hex(&e->key, hx);
    if ((rc = pe_img_get(txn, &e->key, &im))) return rc;
    if ((rc = encode(&im, x->pnm, &buf, &len))) goto out;
    snprintf(name, sizeof name, "%s.%s", hx, x->pnm ? (im.c == 1 ? "pgm" : "ppm") : "png");
    if (x->flat) {
        rc = write_new(x->outdir, name, buf, len);
    } else {
        folder_for(x, e->label, folder, sizeof folder);
        if ((rc = open_subdir(x->outdir, folder, &dirfd))) goto out;
        rc = write_new(dirfd, name, buf, len);
        if (rc) pe_fail_prefix(rc, "%s", folder);
    }
    if (!rc) x->written++;
out:
    if (dirfd >= 0) close(dirfd);
    free(buf);
    pe_image_free(&im);
    return rc;
}

static int export_stdout(pe_txn *txn, const char *hex, int pnm) {
    pe_key key;
    pe_image im = {0};
    uint8_t *buf = NULL;
    size_t len;
    int rc;
    if ((rc = pe_key_from_hex(hex, strlen(hex), &key)))
        return pe_fail(PE_EUSAGE, "'%s' is not a key (%d hex digits)", hex, PE_KEY_HEX);
    if ((rc = pe_img_get(txn, &key, &im))) return rc;
    rc = encode(&im, pnm, &buf, &len);
    pe_image_free(&im);
    if (rc) return rc;
    /* The whole file is built before the first byte goes out. */
    if (fwrite(buf, 1, len, stdout) != len || fflush(stdout) == EOF)
        rc = pe_fail(EIO, "write error on standard output");
    free(buf);
    return rc;
}

enum { O_LABEL = 256, O_FLAT, O_PNM, O_VERSION };

int main(int argc, char **argv) {
    if (pe_cli_init_fds()) return PE_EXIT_ERROR;
    static const struct option lo[] = {
        {"store", 1, 0, 'S'}, {"output", 1, 0, 'o'}, {"set", 1, 0, 's'},
        {"label", 1, 0, O_LABEL}, {"flat", 0, 0, O_FLAT}, {"pnm", 0, 0, O_PNM},
        {"help", 0, 0, 'h'}, {"version", 0, 0, O_VERSION}, {0, 0, 0, 0}};
    const char *store = NULL, *out = NULL, *set = NULL, *label = NULL;
    ex x = {-1, 0, 0, NULL, 0, NULL, 0};
    int c, rc;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":S:o:s:h", lo, NULL)) != -1) {
        switch (c) {
        case 'S': store = optarg; break;
        case 'o': out = optarg; break;
        case 's': set = optarg; break;
        case O_LABEL: label = optarg; break;
        case O_FLAT: x.flat = 1; break;
        case O_PNM: x.pnm = 1; break;
        case 'h': usage(stdout); return PE_EXIT_OK;
        case O_VERSION: printf("pe-export %s\n", PE_VERSION_STRING); return PE_EXIT_OK;
        case ':': return pe_cli_usage(prog, "option '%s' needs a value", argv[optind - 1]);
        default: return pe_cli_usage(prog, "unknown option '%s'", argv[optind - 1]);
        }
    }
    int nargs = argc - optind;
    const char *key_arg = NULL;
    if (!out) {
        if (nargs != 1 || set)
            return pe_cli_usage(prog, "without -o DIR, name exactly one KEY");
        key_arg = argv[optind];
        if (isatty(1))
            return pe_cli_usage(prog, "standard output is a terminal; redirect it "
                                "to a file (pe-export KEY > x.png)");
    } else if (nargs > 1 || (nargs == 1 && strcmp(argv[optind], "-"))) {
        return pe_cli_usage(prog, "with -o, images come from --set or keys on stdin ('-')");
    }
    if (label && !set) return pe_cli_usage(prog, "--label needs --set");

    pe_store *st;
    pe_txn *txn = NULL;
    if ((rc = pe_store_open(&st, pe_store_path(store), PE_STORE_RDONLY)))
        return pe_cli_fail(prog, rc);
    if ((rc = pe_txn_begin(st, 0, &txn))) goto done;
    if (key_arg) {
        rc = export_stdout(txn, key_arg, x.pnm);
        goto done;
    }
    int32_t lid = PE_CLI_ANY_LABEL;
    if (set) {
        pe_set_hdr h;
        if ((rc = pe_set_get(txn, set, &h))) goto done;
        if (label && (rc = pe_set_class_id(&h, label, &lid))) {
            rc = pe_fail(rc, "set '%s' has no class '%s'", set, label);
            goto done;
        }
        if ((rc = pe_cli_copy_classes(&h, &x.classes, &x.ncls))) goto done;
    }
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        rc = pe_fail(errno, "%s: cannot create: %s", out, strerror(errno));
        goto done;
    }
    x.outdir = open(out, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (x.outdir < 0) {
        rc = pe_fail(errno, "%s: not a folder (or a link): %s", out, strerror(errno));
        goto done;
    }
    /* keys on stdin ('-', or no --set); with --set they are looked up in it
     * and grouped by their labels there */
    int from_stdin = !set || nargs == 1;
    if (from_stdin && label) {
        rc = pe_fail(PE_EUSAGE, "--label selects from a set; with '-' the keys choose");
        goto done;
    }
    rc = pe_cli_each_key(txn, set, lid, from_stdin ? stdin : NULL, "stdin", export_one, &x);
    fprintf(stderr, "%s: %" PRIu64 " images written\n", prog, x.written);
done:
    if (x.outdir >= 0) close(x.outdir);
    pe_cli_free_classes(x.classes, x.ncls);
    if (txn) pe_txn_abort(txn);
    pe_store_close(st);
    return rc ? pe_cli_fail(prog, rc) : PE_EXIT_OK;
}
