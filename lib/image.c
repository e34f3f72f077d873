/*
 * image.c - the in-memory image's life cycle and its lossless reshapes:
 * allocation, channel conversion with Pillow's rules, EXIF orientation.
 *
 * Not for: resampling (resample.c), decoding or encoding (formats/), or
 * any view onto another image's pixels; every function here either works
 * in place or swaps in a freshly allocated buffer it owns.
 */
#include "image.h"

#include "pe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Bytes for w x h x c, or 0 when the product does not fit in size_t. The
 * callers have already rejected zero dimensions, so 0 means overflow. */
static size_t image_bytes(uint32_t w, uint32_t h, uint32_t c) {
    size_t n = w;
    if (h != 0 && n > SIZE_MAX / h) return 0;
    n *= h;
    if (c != 0 && n > SIZE_MAX / c) return 0;
    return n * c;
}

int pe_image_alloc(pe_image *im, uint32_t w, uint32_t h, uint32_t c) {
    PE_ASSERT(im != NULL);
    memset(im, 0, sizeof *im);
    if (c != 1 && c != 3)
        return pe_fail(PE_EUSAGE, "image: %u channels (want 1 or 3)", c);
    if (w == 0 || h == 0)
        return pe_fail(PE_EUSAGE, "image: empty size %ux%u", w, h);
    size_t n = image_bytes(w, h, c);
    if (n == 0)
        return pe_fail(PE_ETOOBIG, "image: %ux%ux%u does not fit in memory",
                       w, h, c);
    uint8_t *px = malloc(n);
    if (!px)
        return pe_fail(ENOMEM, "image: cannot allocate %ux%ux%u", w, h, c);
    im->w = w;
    im->h = h;
    im->c = c;
    im->px = px;
    return 0;
}

void pe_image_free(pe_image *im) {
    if (!im) return;
    free(im->px);
    memset(im, 0, sizeof *im);
}

int pe_image_to_channels(pe_image *im, uint32_t c) {
    PE_ASSERT(im != NULL);
    if (c != 1 && c != 3)
        return pe_fail(PE_EUSAGE, "image: convert to %u channels (want 1 or 3)",
                       c);
    if (!im->px) return pe_fail(PE_EUSAGE, "image: convert of an empty image");
    PE_ASSERT(im->c == 1 || im->c == 3);
    if (im->c == c) return 0;

    size_t npix = (size_t)im->w * im->h;
    if (c == 1) {
        /* RGB -> L in place: pixel i's output byte lies at or before its
         * input bytes, so a forward walk never reads what it overwrote. */
        uint8_t *p = im->px;
        for (size_t i = 0; i < npix; i++) {
            const uint8_t *rgb = p + 3 * i;
            p[i] = (uint8_t)(((uint32_t)rgb[0] * 19595u +
                              (uint32_t)rgb[1] * 38470u +
                              (uint32_t)rgb[2] * 7471u + 0x8000u) >>
                             16);
        }
        /* Shrinking realloc may fail harmlessly; the larger block stays. */
        uint8_t *shrunk = realloc(p, npix);
        if (shrunk) im->px = shrunk;
        im->c = 1;
        return 0;
    }

    size_t n = image_bytes(im->w, im->h, 3);
    if (n == 0)
        return pe_fail(PE_ETOOBIG, "image: %ux%ux3 does not fit in memory",
                       im->w, im->h);
    uint8_t *out = malloc(n);
    if (!out)
        return pe_fail(ENOMEM, "image: cannot allocate %ux%ux3", im->w, im->h);
    for (size_t i = 0; i < npix; i++) {
        uint8_t v = im->px[i];
        out[3 * i] = v;
        out[3 * i + 1] = v;
        out[3 * i + 2] = v;
    }
    free(im->px);
    im->px = out;
    im->c = 3;
    return 0;
}

/*
 * EXIF orientation as an affine map from output pixel (ox, oy) to input
 * pixel: ix = ax + xx*ox + xy*oy, iy = ay + yx*ox + yy*oy. The tags name
 * how the stored image must be transformed to display it, and match
 * Pillow's ImageOps.exif_transpose:
 *   2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE,
 *   6 ROTATE_270 (90 degrees clockwise), 7 TRANSVERSE,
 *   8 ROTATE_90 (90 degrees counter-clockwise).
 * Orientations 5..8 swap width and height.
 */
struct orient_map {
    int swap;         /* output is h x w */
    int fx, fy;       /* flip the input x / y coordinate */
};

static const struct orient_map orient_maps[9] = {
    [2] = {0, 1, 0}, /* out(x, y) = in(W-1-x, y) */
    [3] = {0, 1, 1}, /* out(x, y) = in(W-1-x, H-1-y) */
    [4] = {0, 0, 1}, /* out(x, y) = in(x, H-1-y) */
    [5] = {1, 0, 0}, /* out(x, y) = in(y, x) */
    [6] = {1, 0, 1}, /* out(x, y) = in(y, H-1-x) */
    [7] = {1, 1, 1}, /* out(x, y) = in(W-1-y, H-1-x) */
    [8] = {1, 1, 0}, /* out(x, y) = in(W-1-y, x) */
};

int pe_image_orient(pe_image *im, int orientation) {
    PE_ASSERT(im != NULL);
    if (orientation < 2 || orientation > 8) return 0;
    if (!im->px) return pe_fail(PE_EUSAGE, "image: orient of an empty image");
    PE_ASSERT(im->c == 1 || im->c == 3);

    const struct orient_map *m = &orient_maps[orientation];
    const uint32_t w = im->w, h = im->h, c = im->c;
    const uint32_t ow = m->swap ? h : w, oh = m->swap ? w : h;
    uint8_t *out = malloc(pe_image_size(im));
    if (!out)
        return pe_fail(ENOMEM, "image: cannot allocate %ux%ux%u", ow, oh, c);

    /* Walk the output in order; each output row reads either one input
     * row (no swap) or one input column (swap), stepping by in_step. */
    const size_t in_stride = (size_t)w * c;
    for (uint32_t oy = 0; oy < oh; oy++) {
        const uint8_t *src;
        ptrdiff_t in_step;
        if (!m->swap) {
            uint32_t iy = m->fy ? h - 1 - oy : oy;
            src = im->px + iy * in_stride + (m->fx ? (size_t)(w - 1) * c : 0);
            in_step = m->fx ? -(ptrdiff_t)c : (ptrdiff_t)c;
        } else {
            /* Output row oy is input column ix; output x walks input y. */
            uint32_t ix = m->fx ? w - 1 - oy : oy;
            src = im->px + (size_t)ix * c + (m->fy ? (h - 1) * in_stride : 0);
            in_step = m->fy ? -(ptrdiff_t)in_stride : (ptrdiff_t)in_stride;
        }
        uint8_t *dst = out + (size_t)oy * ow * c;
        if (c == 1) {
            for (uint32_t ox = 0; ox < ow; ox++, src += in_step) dst[ox] = *src;
        } else {
            for (uint32_t ox = 0; ox < ow; ox++, src += in_step, dst += 3) {
                dst[0] = src[0];
                dst[1] = src[1];
                dst[2] = src[2];
            }
        }
    }
    free(im->px);
    im->px = out;
    im->w = ow;
    im->h = oh;
    return 0;
}
