/*
 * idx.c - the IDX reader for MNIST-style datasets (MNIST, Fashion-MNIST,
 * KMNIST, EMNIST): an images file of N x rows x cols uint8 pixels (magic
 * 0x00000803) and an optional labels file of N uint8 labels (0x00000801),
 * either gzipped or not. Every image comes out as a 1-channel rows x cols
 * pe_image with its label (any value 0..255; PE_LABEL_NONE without labels).
 *
 * Not for: IDX files of other element types or ranks (int16, float, 4-D):
 * they are refused as a bad magic, not converted.
 *
 * Untrusted input: the dimensions in a header must describe the buffer
 * exactly (overflow-checked; short or trailing bytes are PE_EFORMAT), and a
 * gzipped file may not inflate much beyond the size its header declares.
 */
#include "dataset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "pe.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define IDX_IMAGES_HEADER 16
#define IDX_LABELS_HEADER 8

/* Largest decompressed IDX file pe_idx_read accepts. */
#if SIZE_MAX > 0xffffffffu
#define IDX_MAX_FILE ((size_t)4 << 30)
#else
#define IDX_MAX_FILE SIZE_MAX
#endif
/* Bytes a gzipped file may inflate beyond its declared size before the
 * read stops: enough that small trailing junk is reported as trailing bytes
 * (PE_EFORMAT) rather than as a limit. */
#define IDX_GZ_SLACK 4096

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

/* Bytes an images header declares in total (header included), or 0 when
 * that does not fit in 64 bits. */
static uint64_t images_declared(const uint8_t *h) {
    uint64_t px;
    if (__builtin_mul_overflow((uint64_t)be32(h + 4), (uint64_t)be32(h + 8), &px) ||
        __builtin_mul_overflow(px, (uint64_t)be32(h + 12), &px) ||
        px > UINT64_MAX - IDX_IMAGES_HEADER)
        return 0;
    return px + IDX_IMAGES_HEADER;
}

/* Makes im hold a w x h x c buffer, reusing the last one when the callback
 * left it in place. */
static int sample_buf(pe_image *im, uint32_t w, uint32_t h, uint32_t c) {
    if (im->px && im->w == w && im->h == h && im->c == c) return 0;
    pe_image_free(im);
    return pe_image_alloc(im, w, h, c);
}

/* The parser behind both entry points. img_name and lbl_name are what
 * messages call the two inputs. A nonzero callback return is passed back
 * untouched. */
static int idx_parse(const uint8_t *img, size_t img_len, const char *img_name,
                     const uint8_t *lbl, size_t lbl_len, const char *lbl_name,
                     pe_sample_fn fn, void *ctx) {
    pe_image im = {0};
    uint32_t n, rows, cols;
    uint64_t declared;
    size_t plane;
    int rc = 0;

    if (img_len < IDX_IMAGES_HEADER)
        return pe_fail(PE_EFORMAT, "%s: %zu bytes, too short for an IDX header",
                       img_name, img_len);
    if (be32(img) != IDX_IMAGES_MAGIC)
        return pe_fail(PE_EFORMAT,
                       "%s: bad IDX magic 0x%08x (want 0x%08x: uint8, 3 dims)",
                       img_name, (unsigned)be32(img), IDX_IMAGES_MAGIC);
    n = be32(img + 4);
    rows = be32(img + 8);
    cols = be32(img + 12);
    declared = images_declared(img);
    if (declared == 0 || declared != img_len)
        return pe_fail(PE_EFORMAT,
                       "%s: header declares %u x %u x %u pixels but the file "
                       "has %zu bytes after the header",
                       img_name, (unsigned)n, (unsigned)rows, (unsigned)cols,
                       img_len - IDX_IMAGES_HEADER);
    if (n > 0 && (rows == 0 || cols == 0))
        return pe_fail(PE_EFORMAT, "%s: images of %u x %u pixels", img_name,
                       (unsigned)rows, (unsigned)cols);

    if (lbl) {
        if (lbl_len < IDX_LABELS_HEADER)
            return pe_fail(PE_EFORMAT,
                           "%s: %zu bytes, too short for an IDX header",
                           lbl_name, lbl_len);
        if (be32(lbl) != IDX_LABELS_MAGIC)
            return pe_fail(PE_EFORMAT,
                           "%s: bad IDX magic 0x%08x (want 0x%08x: uint8, 1 dim)",
                           lbl_name, (unsigned)be32(lbl), IDX_LABELS_MAGIC);
        if (be32(lbl + 4) != n)
            return pe_fail(PE_EFORMAT, "%s: %u labels for %u images in %s",
                           lbl_name, (unsigned)be32(lbl + 4), (unsigned)n,
                           img_name);
        if (lbl_len - IDX_LABELS_HEADER != n)
            return pe_fail(PE_EFORMAT,
                           "%s: header declares %u labels but the file has "
                           "%zu bytes after the header",
                           lbl_name, (unsigned)n, lbl_len - IDX_LABELS_HEADER);
    }

    plane = (size_t)rows * cols; /* <= img_len: checked above */
    for (uint32_t i = 0; i < n; i++) {
        rc = sample_buf(&im, cols, rows, 1);
        if (rc) {
            rc = pe_fail(rc, "%s: image %u: cannot allocate %u x %u", img_name,
                         (unsigned)i, (unsigned)cols, (unsigned)rows);
            goto cleanup;
        }
        memcpy(im.px, img + IDX_IMAGES_HEADER + (size_t)i * plane, plane);
        rc = fn(ctx, i, &im, lbl ? (int32_t)lbl[IDX_LABELS_HEADER + i]
                                 : PE_LABEL_NONE);
        if (rc) goto cleanup;
    }

cleanup:
    pe_image_free(&im);
    return rc;
}

int pe_idx_read_mem(const uint8_t *img, size_t img_len, const uint8_t *lbl,
                    size_t lbl_len, pe_sample_fn fn, void *ctx) {
    PE_ASSERT(fn && (img || img_len == 0));
    return idx_parse(img, img_len, "IDX images", lbl, lbl_len, "IDX labels",
                     fn, ctx);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, size_t len, const char *suffix) {
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

int pe_idx_find_labels(const char *images_path, char *out, size_t n) {
    const char *slash = strrchr(images_path, '/');
    size_t dir_len = slash ? (size_t)(slash + 1 - images_path) : 0;
    size_t len = strlen(images_path), stem_len;
    char *cand = NULL, *images, *idx3;
    int gz, rc = PE_ENOTFOUND;

    PE_ASSERT(images_path && out);
    cand = malloc(len + 4); /* room for ".gz" and the NUL */
    if (!cand) return pe_fail(ENOMEM, "%s: out of memory", images_path);
    memcpy(cand, images_path, len + 1);
    /* Only the file name changes: a directory called "images" stays. */
    images = strstr(cand + dir_len, "images");
    if (images) memcpy(images, "labels", 6);
    idx3 = strstr(cand + dir_len, "idx3");
    if (idx3) memcpy(idx3, "idx1", 4);
    if (!images && !idx3) {
        rc = pe_fail(PE_ENOTFOUND,
                     "%s: name has neither \"images\" nor \"idx3\" to map to "
                     "a labels file",
                     images_path);
        goto cleanup;
    }
    gz = ends_with(cand, len, ".gz");
    stem_len = gz ? len - 3 : len;
    /* Same compression as the images first, then the other. */
    for (int pass = 0; pass < 2; pass++) {
        int with_gz = pass == 0 ? gz : !gz;
        memcpy(cand + stem_len, with_gz ? ".gz" : "", with_gz ? 4 : 1);
        if (!is_file(cand)) continue;
        if (strlen(cand) + 1 > n) {
            rc = pe_fail(PE_ETOOBIG, "%s: labels path longer than %zu bytes",
                         cand, n);
            goto cleanup;
        }
        memcpy(out, cand, strlen(cand) + 1);
        rc = 0;
        goto cleanup;
    }
    cand[stem_len] = 0;
    rc = pe_fail(PE_ENOTFOUND, "%s: no labels file beside it (tried %s[.gz])",
                 images_path, cand);

cleanup:
    free(cand);
    return rc;
}

/* Learns how big path says it is: reads its first header_len bytes through
 * zlib (which passes plain files through) and returns the byte limit to
 * read it with: for a gzipped file the declared size plus a little slack,
 * for a plain one the cap (its size on disk bounds it). 0 means the
 * declared size is above the cap. */
static size_t idx_read_limit(const char *path, size_t header_len, int images,
                             uint64_t *declared_out) {
    uint8_t h[IDX_IMAGES_HEADER];
    uint64_t declared = 0;
    int got, direct;
    gzFile f = gzopen(path, "rb");

    *declared_out = 0;
    if (!f) return IDX_MAX_FILE; /* the real read reports why */
    got = gzread(f, h, (unsigned)header_len);
    direct = gzdirect(f);
    gzclose(f);
    if (got != (int)header_len || direct) return IDX_MAX_FILE;
    if (images)
        declared = images_declared(h);
    else
        declared = (uint64_t)be32(h + 4) + IDX_LABELS_HEADER;
    if (declared == 0) return IDX_MAX_FILE; /* overflow: the parser says so */
    *declared_out = declared;
    if (declared > IDX_MAX_FILE - IDX_GZ_SLACK) return 0;
    return (size_t)declared + IDX_GZ_SLACK;
}

static int idx_load(const char *path, size_t header_len, int images,
                    uint8_t **buf, size_t *len) {
    uint64_t declared;
    size_t limit = idx_read_limit(path, header_len, images, &declared);
    if (limit == 0)
        return pe_fail(PE_ETOOBIG,
                       "%s: header declares %llu bytes, above the %zu-byte "
                       "limit",
                       path, (unsigned long long)declared, (size_t)IDX_MAX_FILE);
    return pe_read_file_maybe_gz(path, limit, buf, len);
}

int pe_idx_read(const char *path, const char *labels_path, pe_sample_fn fn,
                void *ctx) {
    uint8_t *img = NULL, *lbl = NULL;
    size_t img_len = 0, lbl_len = 0;
    int rc;

    PE_ASSERT(path && fn);
    rc = idx_load(path, IDX_IMAGES_HEADER, 1, &img, &img_len);
    if (rc) goto cleanup;
    if (labels_path) {
        rc = idx_load(labels_path, IDX_LABELS_HEADER, 0, &lbl, &lbl_len);
        if (rc) goto cleanup;
    }
    rc = idx_parse(img, img_len, path, lbl, lbl_len,
                   labels_path ? labels_path : "", fn, ctx);

cleanup:
    free(lbl);
    free(img);
    return rc;
}
