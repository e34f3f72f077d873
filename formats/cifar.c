/*
 * cifar.c - the CIFAR-10 / CIFAR-100 binary batch reader ("data_batch_1.bin",
 * "train.bin"): fixed-size records of label byte(s) and a 32x32 image stored
 * as three planes R, G, B, each row-major. Every record comes out as a
 * 3-channel 32x32 HWC pe_image with its label.
 *
 * Not for: the Python pickle batches (cifar-10-batches-py) or the tar.gz the
 * batches ship in (unpack it, or walk it with pe_tar_read and pass members to
 * pe_cifar_read_mem).
 *
 * Untrusted input: a length that is not a whole number of records and a
 * label outside the variant's classes (CIFAR-10: 0..9; CIFAR-100: coarse
 * 0..19, fine 0..99) are PE_EFORMAT naming the size or record index.
 * Records before a bad one have already reached the callback.
 */
#include "dataset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pe.h"

#define CIFAR_SIDE 32
#define CIFAR_PLANE (CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_PIXELS (3 * CIFAR_PLANE)

static int sample_buf(pe_image *im, uint32_t w, uint32_t h, uint32_t c) {
    if (im->px && im->w == w && im->h == h && im->c == c) return 0;
    pe_image_free(im);
    return pe_image_alloc(im, w, h, c);
}

/* The parser behind both entry points; name is what messages call the
 * input. A nonzero callback return is passed back untouched. */
static int cifar_parse(const uint8_t *buf, size_t len, const char *name,
                       int variant, int use_coarse, pe_sample_fn fn,
                       void *ctx) {
    pe_image im = {0};
    size_t label_bytes, rec, n;
    int rc = 0;

    if (variant != 10 && variant != 100)
        return pe_fail(PE_EUSAGE, "%s: CIFAR variant %d (want 10 or 100)",
                       name, variant);
    label_bytes = variant == 10 ? 1 : 2;
    rec = label_bytes + CIFAR_PIXELS;
    if (len % rec != 0)
        return pe_fail(PE_EFORMAT,
                       "%s: %zu bytes is not a whole number of %zu-byte "
                       "CIFAR-%d records",
                       name, len, rec, variant);
    n = len / rec;

    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = buf + i * rec;
        const uint8_t *planes = r + label_bytes;
        int32_t label;

        if (variant == 10) {
            if (r[0] > 9) {
                rc = pe_fail(PE_EFORMAT,
                             "%s: record %zu: label %u (CIFAR-10 has 0..9)",
                             name, i, (unsigned)r[0]);
                goto cleanup;
            }
            label = r[0];
        } else {
            if (r[0] > 19 || r[1] > 99) {
                rc = pe_fail(PE_EFORMAT,
                             "%s: record %zu: coarse label %u, fine label %u "
                             "(CIFAR-100 has 0..19 and 0..99)",
                             name, i, (unsigned)r[0], (unsigned)r[1]);
                goto cleanup;
            }
            label = use_coarse ? r[0] : r[1];
        }

        rc = sample_buf(&im, CIFAR_SIDE, CIFAR_SIDE, 3);
        if (rc) {
            rc = pe_fail(rc, "%s: record %zu: cannot allocate the image", name,
                         i);
            goto cleanup;
        }
        for (size_t p = 0; p < CIFAR_PLANE; p++) {
            im.px[3 * p + 0] = planes[p];
            im.px[3 * p + 1] = planes[CIFAR_PLANE + p];
            im.px[3 * p + 2] = planes[2 * CIFAR_PLANE + p];
        }
        rc = fn(ctx, i, &im, label);
        if (rc) goto cleanup;
    }

cleanup:
    pe_image_free(&im);
    return rc;
}

int pe_cifar_read_mem(const uint8_t *buf, size_t len, int variant,
                      int use_coarse, pe_sample_fn fn, void *ctx) {
    PE_ASSERT(fn && (buf || len == 0));
    return cifar_parse(buf, len, variant == 100 ? "CIFAR-100 data" : "CIFAR-10 data",
                       variant, use_coarse, fn, ctx);
}

int pe_cifar_read(const char *path, int variant, int use_coarse,
                  pe_sample_fn fn, void *ctx) {
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;

    PE_ASSERT(path && fn);
    if (variant != 10 && variant != 100)
        return pe_fail(PE_EUSAGE, "%s: CIFAR variant %d (want 10 or 100)",
                       path, variant);
    /* The biggest batch (CIFAR-100 train.bin) is 154 MB: the default
     * 1 GiB bound of the shared reader leaves room and stops bombs. */
    rc = pe_read_file_maybe_gz(path, 0, &buf, &len);
    if (rc) return rc;
    rc = cifar_parse(buf, len, path, variant, use_coarse, fn, ctx);
    free(buf);
    return rc;
}
