/*
 * resample.c - bilinear resizing of 8-bit images, bit-exact with Pillow 9's
 * Image.resize(size, BILINEAR[, box]) on "L" and "RGB" images.
 *
 * Not for: other filters, more than 8 bits per sample, or reproducing
 * Pillow's reducing_gap shortcut. Bit-exactness is the contract here, so the
 * coefficient arithmetic below follows Pillow's libImaging/Resample.c
 * operation for operation (float box, double weights, 22-bit fixed point);
 * change none of it without rerunning tests/unit/test_resample.c.
 *
 * The algorithm: per axis, every output sample is a normalised triangle
 * filter over the input samples whose support is widened by the downscale
 * factor (so downscales are antialiased). The horizontal pass runs first,
 * only over the input rows the vertical pass will read, and rounds to uint8;
 * the vertical pass then runs on that intermediate. An axis whose size and
 * box are the identity is skipped, as Pillow skips it.
 *
 * Floating-point note: the weights must come out identical to Pillow's, so
 * this file must not be built with -ffast-math or with FMA contraction
 * (GCC contracts only in GNU modes; the Makefile builds with -std=c11).
 */
#include "image.h"

#include "pe.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Pillow's fixed point for 8-bit results: 32 bits less 8 for the sample
 * and 2 of headroom. With non-negative weights summing to about 1, the
 * accumulator stays below 2^31 (255 * 2^23 + 2^21 in the worst rounding). */
#define PRECISION_BITS 22
#define HALF (1 << (PRECISION_BITS - 1))

/* Coefficients for one axis. first/count index input samples; k holds
 * count fixed-point weights per output sample, padded with zeros to
 * ksize. All three are carved out of one allocation owned by mem. */
typedef struct resample_axis {
    uint32_t n;      /* output samples */
    size_t ksize;    /* stride of k, the most taps any output can have */
    uint32_t *first; /* (n) first input sample read */
    uint32_t *count; /* (n) input samples read */
    int32_t *k;      /* (n, ksize) weights, sum ~ 1 << PRECISION_BITS */
    void *mem;
} resample_axis;

static double triangle(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static int mul_size(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return 0;
    *out = a * b;
    return 1;
}

static void axis_free(resample_axis *ax) {
    free(ax->mem);
    memset(ax, 0, sizeof *ax);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear
 * filter (support 1) mapping input [in0, in1) of in_size samples onto
 * out_size samples. in0 and in1 are floats because Pillow's box is. */
static int axis_init(resample_axis *ax, uint32_t in_size, float in0,
                     float in1, uint32_t out_size) {
    memset(ax, 0, sizeof *ax);
    /* The difference is taken in float, as Pillow does, then widened. */
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    double ss = 1.0 / filterscale;
    size_t ksize = (size_t)ceil(support) * 2 + 1;

    size_t nk, kbytes, bbytes;
    if (!mul_size(out_size, ksize, &nk) ||
        !mul_size(nk, sizeof(int32_t), &kbytes) ||
        !mul_size(out_size, 2 * sizeof(uint32_t), &bbytes) ||
        kbytes > SIZE_MAX - bbytes)
        return pe_fail(PE_ETOOBIG, "resize: %u -> %u needs too many weights",
                       in_size, out_size);
    const size_t bytes = kbytes + bbytes;

    double *w = malloc(ksize * sizeof *w);
    void *mem = malloc(bytes);
    if (!w || !mem) {
        free(w);
        free(mem);
        return pe_fail(ENOMEM, "resize: cannot allocate %zu bytes of weights",
                       bytes);
    }
    ax->n = out_size;
    ax->ksize = ksize;
    ax->mem = mem;
    ax->k = mem;
    ax->first = (uint32_t *)(ax->k + nk);
    ax->count = ax->first + out_size;

    for (uint32_t xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        /* Pillow rounds the bounds by truncating after adding 0.5. */
        int64_t xmin = (int64_t)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int64_t xmax = (int64_t)(center + support + 0.5);
        if (xmax > (int64_t)in_size) xmax = in_size;
        int64_t taps = xmax - xmin;
        if (taps < 0) taps = 0;
        PE_ASSERT((size_t)taps <= ksize);

        double ww = 0.0;
        for (int64_t x = 0; x < taps; x++) {
            w[x] = triangle(((double)(x + xmin) - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = ax->k + (size_t)xx * ksize;
        for (int64_t x = 0; x < taps; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            /* Round half away from zero into fixed point, as Pillow. */
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        for (size_t x = (size_t)taps; x < ksize; x++) k[x] = 0;
        ax->first[xx] = (uint32_t)xmin;
        ax->count[xx] = (uint32_t)taps;
    }
    free(w);
    return 0;
}

static inline uint8_t clip8(int32_t ss) {
    int32_t v = ss >> PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass: rows rows of in (each in_stride bytes) into rows rows
 * of out, each ax->n pixels of c channels. Scalar: the tap count varies
 * per output pixel, and without SSE4.1 a vector int32 multiply costs more
 * than it saves, so this loop runs at about one multiply per cycle. */
static void resample_horizontal(const uint8_t *in, size_t in_stride,
                                uint8_t *out, uint32_t rows, uint32_t c,
                                const resample_axis *ax) {
    const size_t out_stride = (size_t)ax->n * c;
    for (uint32_t y = 0; y < rows; y++) {
        const uint8_t *row = in + y * in_stride;
        uint8_t *dst = out + y * out_stride;
        if (c == 1) {
            for (uint32_t xx = 0; xx < ax->n; xx++) {
                const uint8_t *p = row + ax->first[xx];
                const int32_t *k = ax->k + (size_t)xx * ax->ksize;
                const uint32_t taps = ax->count[xx];
                int32_t s = HALF;
                for (uint32_t t = 0; t < taps; t++) s += p[t] * k[t];
                dst[xx] = clip8(s);
            }
        } else {
            for (uint32_t xx = 0; xx < ax->n; xx++) {
                const uint8_t *p = row + (size_t)ax->first[xx] * 3;
                const int32_t *k = ax->k + (size_t)xx * ax->ksize;
                const uint32_t taps = ax->count[xx];
                int32_t s0 = HALF, s1 = HALF, s2 = HALF;
                for (uint32_t t = 0; t < taps; t++, p += 3) {
                    s0 += p[0] * k[t];
                    s1 += p[1] * k[t];
                    s2 += p[2] * k[t];
                }
                dst[3 * xx] = clip8(s0);
                dst[3 * xx + 1] = clip8(s1);
                dst[3 * xx + 2] = clip8(s2);
            }
        }
    }
}

/* Samples per block of the vertical pass. A fixed trip count is what lets
 * GCC vectorise at -O2 (its "very cheap" cost model skips loops of unknown
 * length), and the block's int32 accumulators stay in registers. */
#define VBLOCK 16

/* Vertical pass: channels do not mix along a column, so a row of
 * row_len = w * c samples is filtered as one flat vector, VBLOCK samples
 * at a time. in's row r is input sample r + offset of the axis. */
static void resample_vertical(const uint8_t *in, size_t row_len,
                              uint32_t offset, uint8_t *restrict out,
                              const resample_axis *ax) {
    for (uint32_t yy = 0; yy < ax->n; yy++) {
        const int32_t *k = ax->k + (size_t)yy * ax->ksize;
        const uint8_t *rows = in + (size_t)(ax->first[yy] - offset) * row_len;
        const uint32_t taps = ax->count[yy];
        uint8_t *dst = out + (size_t)yy * row_len;
        size_t x = 0;
        for (; x + VBLOCK <= row_len; x += VBLOCK) {
            int32_t acc[VBLOCK];
            for (int j = 0; j < VBLOCK; j++) acc[j] = HALF;
            for (uint32_t t = 0; t < taps; t++) {
                const uint8_t *r = rows + (size_t)t * row_len + x;
                const int32_t kt = k[t];
                for (int j = 0; j < VBLOCK; j++) acc[j] += r[j] * kt;
            }
            for (int j = 0; j < VBLOCK; j++) dst[x + j] = clip8(acc[j]);
        }
        for (; x < row_len; x++) {
            int32_t s = HALF;
            for (uint32_t t = 0; t < taps; t++)
                s += rows[(size_t)t * row_len + x] * k[t];
            dst[x] = clip8(s);
        }
    }
}

int pe_image_resize_box_bilinear(const pe_image *src, pe_image *dst,
                                 uint32_t dst_w, uint32_t dst_h, double x0,
                                 double y0, double x1, double y1) {
    PE_ASSERT(src != NULL && dst != NULL);
    PE_ASSERT(dst->px == NULL);
    memset(dst, 0, sizeof *dst);
    if (!src->px || src->w == 0 || src->h == 0 ||
        (src->c != 1 && src->c != 3))
        return pe_fail(PE_EUSAGE, "resize: empty or malformed source image");
    if (dst_w == 0 || dst_h == 0)
        return pe_fail(PE_EUSAGE, "resize: empty target size %ux%u", dst_w,
                       dst_h);

    /* Pillow receives the box as C floats and checks it as floats. */
    const float box[4] = {(float)x0, (float)y0, (float)x1, (float)y1};
    if (isnan(box[0]) || isnan(box[1]) || isnan(box[2]) || isnan(box[3]))
        return pe_fail(PE_EUSAGE, "resize: box is not a number");
    if (box[0] < 0 || box[1] < 0)
        return pe_fail(PE_EUSAGE, "resize: box (%g, %g, %g, %g) starts "
                       "outside the image", x0, y0, x1, y1);
    if (box[2] > (float)src->w || box[3] > (float)src->h)
        return pe_fail(PE_EUSAGE, "resize: box (%g, %g, %g, %g) exceeds the "
                       "%ux%u image", x0, y0, x1, y1, src->w, src->h);
    if (box[2] - box[0] < 0 || box[3] - box[1] < 0)
        return pe_fail(PE_EUSAGE, "resize: box (%g, %g, %g, %g) is inverted",
                       x0, y0, x1, y1);

    const uint32_t c = src->c;
    const int need_h = dst_w != src->w || box[0] != 0 || box[2] != (float)dst_w;
    const int need_v = dst_h != src->h || box[1] != 0 || box[3] != (float)dst_h;

    resample_axis hx = {0}, vy = {0};
    uint8_t *tmp = NULL;
    int rc = pe_image_alloc(dst, dst_w, dst_h, c);
    if (rc) goto out;
    if (!need_h && !need_v) {
        memcpy(dst->px, src->px, pe_image_size(src));
        goto out;
    }

    rc = axis_init(&vy, src->h, box[1], box[3], dst_h);
    if (rc) goto out;
    /* Input rows the vertical pass reads: the horizontal pass needs only
     * these. The bounds are non-decreasing in the output index. */
    const uint32_t row_first = vy.first[0];
    const uint32_t row_last = vy.first[dst_h - 1] + vy.count[dst_h - 1];
    PE_ASSERT(row_last > row_first && row_last <= src->h);
    const size_t row_len = (size_t)dst_w * c;

    const uint8_t *vin = src->px;
    uint32_t voffset = 0;
    if (need_h) {
        rc = axis_init(&hx, src->w, box[0], box[2], dst_w);
        if (rc) goto out;
        const size_t src_stride = (size_t)src->w * c;
        const uint8_t *hin = src->px + (size_t)row_first * src_stride;
        const uint32_t rows = row_last - row_first;
        if (!need_v) {
            /* The vertical axis is the identity, so it covers every row. */
            PE_ASSERT(row_first == 0 && rows == dst_h);
            resample_horizontal(hin, src_stride, dst->px, rows, c, &hx);
            goto out;
        }
        size_t tmp_bytes;
        if (!mul_size(row_len, rows, &tmp_bytes)) {
            rc = pe_fail(PE_ETOOBIG, "resize: intermediate %ux%u too large",
                         dst_w, rows);
            goto out;
        }
        tmp = malloc(tmp_bytes);
        if (!tmp) {
            rc = pe_fail(ENOMEM, "resize: cannot allocate %zu bytes",
                         tmp_bytes);
            goto out;
        }
        resample_horizontal(hin, src_stride, tmp, rows, c, &hx);
        vin = tmp;
        voffset = row_first;
    }

    resample_vertical(vin, row_len, voffset, dst->px, &vy);

out:
    free(tmp);
    axis_free(&hx);
    axis_free(&vy);
    if (rc) pe_image_free(dst);
    return rc;
}

int pe_image_resize_bilinear(const pe_image *src, pe_image *dst,
                             uint32_t dst_w, uint32_t dst_h) {
    PE_ASSERT(src != NULL);
    return pe_image_resize_box_bilinear(src, dst, dst_w, dst_h, 0.0, 0.0,
                                        (double)src->w, (double)src->h);
}
