/*
 * stl10.c - the STL-10 binary reader: X files of 96x96 RGB images, each
 * stored as three channel planes whose bytes run down columns (the byte at
 * plane c, offset x*96+y is pixel row y, column x), and y files of one uint8
 * label per image, 1..10, reported here as 0..9. Every image comes out as a
 * 3-channel 96x96 HWC pe_image.
 *
 * Not for: the Matlab or Python versions of the dataset, gzipped X files, or
 * the tar.gz it ships in. The path reader streams the X file one record at a
 * time (unlabeled_X.bin is 2.7 GB) and so cannot gunzip it.
 *
 * Untrusted input: a length that is not a whole number of records, a labels
 * count that differs from the image count, and a label of 0 or above 10 are
 * PE_EFORMAT naming the size or index. Images before a bad label have
 * already reached the callback.
 */
#include "dataset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pe.h"

#define STL_SIDE 96
#define STL_PLANE (STL_SIDE * STL_SIDE)
#define STL_RECORD (3 * STL_PLANE) /* 27648 bytes */

static int sample_buf(pe_image *im, uint32_t w, uint32_t h, uint32_t c) {
    if (im->px && im->w == w && im->h == h && im->c == c) return 0;
    pe_image_free(im);
    return pe_image_alloc(im, w, h, c);
}

/* Turns one column-major planar record into an HWC image. */
static void stl_record_to_hwc(const uint8_t *rec, uint8_t *px) {
    for (size_t c = 0; c < 3; c++) {
        const uint8_t *plane = rec + c * STL_PLANE;
        for (size_t x = 0; x < STL_SIDE; x++) {
            const uint8_t *col = plane + x * STL_SIDE;
            for (size_t y = 0; y < STL_SIDE; y++)
                px[(y * STL_SIDE + x) * 3 + c] = col[y];
        }
    }
}

/* Converts record index's raw label (1..10) to 0..9. */
static int stl_label(const uint8_t *y, uint64_t index, const char *y_name,
                     int32_t *label) {
    if (!y) {
        *label = PE_LABEL_NONE;
        return 0;
    }
    if (y[index] < 1 || y[index] > 10)
        return pe_fail(PE_EFORMAT, "%s: label %llu is %u (STL-10 has 1..10)",
                       y_name, (unsigned long long)index, (unsigned)y[index]);
    *label = (int32_t)y[index] - 1;
    return 0;
}

/* Converts one record and hands it to the callback, whose nonzero return
 * comes back untouched. */
static int stl_deliver(pe_image *im, const uint8_t *rec, uint64_t index,
                       int32_t label, const char *x_name, pe_sample_fn fn,
                       void *ctx) {
    int rc = sample_buf(im, STL_SIDE, STL_SIDE, 3);
    if (rc)
        return pe_fail(rc, "%s: image %llu: cannot allocate the image", x_name,
                       (unsigned long long)index);
    stl_record_to_hwc(rec, im->px);
    return fn(ctx, index, im, label);
}

int pe_stl10_read_mem(const uint8_t *x, size_t x_len, const uint8_t *y,
                      size_t y_len, pe_sample_fn fn, void *ctx) {
    pe_image im = {0};
    size_t n;
    int rc = 0;

    PE_ASSERT(fn && (x || x_len == 0));
    if (x_len % STL_RECORD != 0)
        return pe_fail(PE_EFORMAT,
                       "STL-10 images: %zu bytes is not a whole number of "
                       "%d-byte records",
                       x_len, STL_RECORD);
    n = x_len / STL_RECORD;
    if (y && y_len != n)
        return pe_fail(PE_EFORMAT, "STL-10 labels: %zu labels for %zu images",
                       y_len, n);
    for (size_t i = 0; i < n; i++) {
        int32_t label = PE_LABEL_NONE;
        rc = stl_label(y, i, "STL-10 labels", &label);
        if (rc) goto cleanup;
        rc = stl_deliver(&im, x + i * STL_RECORD, i, label, "STL-10 images",
                         fn, ctx);
        if (rc) goto cleanup;
    }

cleanup:
    pe_image_free(&im);
    return rc;
}

/* "dir/train_X.bin" -> "dir/train_y.bin" when that file exists. Returns a
 * malloc'd path, or NULL (none there, or out of memory: either way the
 * images are read without labels). */
static char *stl_find_labels(const char *path) {
    static const char suffix[] = "_X.bin";
    size_t len = strlen(path), sl = sizeof suffix - 1;
    struct stat st;
    char *cand;

    if (len < sl || memcmp(path + len - sl, suffix, sl) != 0) return NULL;
    cand = strdup(path);
    if (!cand) return NULL;
    cand[len - sl + 1] = 'y';
    if (stat(cand, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(cand);
        return NULL;
    }
    return cand;
}

int pe_stl10_read(const char *path, const char *labels_path, pe_sample_fn fn,
                  void *ctx) {
    pe_image im = {0};
    char *found = NULL;
    uint8_t *y = NULL, *rec = NULL;
    size_t y_len = 0;
    const char *y_path = labels_path;
    struct stat st;
    uint64_t expect = UINT64_MAX; /* records, when the size is known */
    FILE *f = NULL;
    int rc = 0;

    PE_ASSERT(path && fn);
    f = fopen(path, "rb");
    if (!f) {
        rc = errno;
        return pe_fail(rc, "%s: %s", path, strerror(rc));
    }
    if (fstat(fileno(f), &st) != 0) {
        rc = errno;
        rc = pe_fail(rc, "%s: %s", path, strerror(rc));
        goto cleanup;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = pe_fail(EISDIR, "%s: %s", path, strerror(EISDIR));
        goto cleanup;
    }
    if (S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size % STL_RECORD != 0) {
            rc = pe_fail(PE_EFORMAT,
                         "%s: %llu bytes is not a whole number of %d-byte "
                         "STL-10 records",
                         path, (unsigned long long)st.st_size, STL_RECORD);
            goto cleanup;
        }
        expect = (uint64_t)st.st_size / STL_RECORD;
    }

    if (!y_path) y_path = found = stl_find_labels(path);
    if (y_path) {
        /* One byte per image; 1 GiB (the default bound) is 40000 times the
         * biggest real labels file. */
        rc = pe_read_file_maybe_gz(y_path, 0, &y, &y_len);
        if (rc) goto cleanup;
        if (expect != UINT64_MAX && y_len != expect) {
            rc = pe_fail(PE_EFORMAT, "%s: %zu labels for %llu images in %s",
                         y_path, y_len, (unsigned long long)expect, path);
            goto cleanup;
        }
    }

    rec = malloc(STL_RECORD);
    if (!rec) {
        rc = pe_fail(ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (uint64_t i = 0;; i++) {
        size_t got = fread(rec, 1, STL_RECORD, f);
        int32_t label = PE_LABEL_NONE;
        if (got < STL_RECORD) {
            if (ferror(f)) {
                rc = errno ? errno : EIO;
                rc = pe_fail(rc, "%s: read: %s", path, strerror(rc));
            } else if (got > 0 || (expect != UINT64_MAX && i != expect)) {
                /* A pipe that ends mid-record, or a file that shrank. */
                rc = pe_fail(PE_EFORMAT, "%s: truncated in image %llu", path,
                             (unsigned long long)i);
            } else if (y && i != y_len) {
                rc = pe_fail(PE_EFORMAT, "%s: %zu labels for %llu images in %s",
                             y_path, y_len, (unsigned long long)i, path);
            }
            break;
        }
        if (expect != UINT64_MAX && i == expect) {
            /* The file grew while read: stop at the size checked. */
            break;
        }
        if (y && i >= y_len) {
            rc = pe_fail(PE_EFORMAT, "%s: %zu labels for more images in %s",
                         y_path, y_len, path);
            break;
        }
        rc = stl_label(y, i, y_path, &label);
        if (rc) break;
        rc = stl_deliver(&im, rec, i, label, path, fn, ctx);
        if (rc) break;
    }

cleanup:
    pe_image_free(&im);
    free(rec);
    free(y);
    free(found);
    if (f) fclose(f);
    return rc;
}
