/*
 * augview.h - the arithmetic of one augmented view (lib/augment.h's
 * pipeline) shared by the CPU and the GPU: Pillow's bilinear coefficients
 * and fixed-point sums (lib/resample.c), the colour-jitter pixel ops,
 * grayscale and ToTensor+Normalize (lib/augment.c), and the phases of one
 * view's rendering as kernels/cuda/augment.cu's thread blocks run them.
 * Each pe_av_* function is `__host__ __device__` under nvcc and a plain
 * static inline function in C (devmath.h's PE_HD), so lib/augment.c,
 * lib/resample.c and the GPU kernel run one definition, and the CPU tests
 * check the GPU's arithmetic (tests/unit/test_augview.c renders views with
 * pe_augview_render_host, the kernel's algorithm run by one "thread", and
 * compares them bit for bit with pe_aug_apply).
 *
 * Not for: the parameter draws (host only, lib/augment.c: they need exp,
 * log and sqrt, whose device versions may round differently), the Lanczos
 * filter (its sin stays in lib/resample.c; only the filter-independent
 * coefficient steps are here), or the CPU's fast paths (resample.c's AVX2
 * passes and its weight tables, augment.c's lookup tables): those compute
 * the same integers and bytes by other loops.
 *
 * Bit-exactness: only operations that IEEE 754 defines exactly and that C
 * and CUDA both implement exactly are used: + - * / in float and double
 * (correctly rounded; nvcc's defaults -prec-div=true), conversions between
 * integers and floating point, and floor, round and fmod, whose results
 * are exact by definition (CUDA documents them as 0 ulp). No exp, log,
 * sin or sqrt is on the path. Fused multiply-adds would change roundings,
 * so C builds this without contraction (-std=c11) and nvcc with
 * --fmad=false. Integer sums are exact and so independent of their order:
 * the GPU's block reductions equal the CPU's loops.
 *
 * Resampling on the fly: the CPU precomputes a table of weights per axis;
 * the GPU recomputes each weight inside the accumulation loop, tap by tap
 * (pe_av_bilinear_pixel), because the tap count grows with the downscale
 * (about 2 x in/out + 1: a 4000-pixel crop resized to 32 has about 250
 * taps per output sample), so no small fixed array bounds it. The
 * normalising sum runs over the same taps first, in the same order as
 * the table's, so every weight is the table's weight.
 */
#ifndef PE_AUGVIEW_H
#define PE_AUGVIEW_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "devmath.h"

#ifdef __cplusplus
extern "C" {
#endif
#include "backend.h" /* pe_aug_job */
#ifdef __cplusplus
}
#endif

/* Pillow's fixed point for 8-bit results: 32 bits less 8 for the sample
 * and 2 of headroom. With non-negative weights summing to about 1, the
 * accumulator stays below 2^31 (255 * 2^23 + 2^21 in the worst rounding);
 * Lanczos's positive weights sum to at most about 1.3, and the negative
 * ones only lower the sum, so it stays below 2^31 too. */
#define PE_AV_PRECISION_BITS 22
#define PE_AV_HALF (1 << (PE_AV_PRECISION_BITS - 1))

/* Jitter ops, numbered as lib/augment.h's PE_JITTER_* (torchvision's
 * fn_id); augment.c checks that the two agree. */
#define PE_AV_BRIGHTNESS 0
#define PE_AV_CONTRAST 1
#define PE_AV_SATURATION 2
#define PE_AV_HUE 3

/* The largest source side and output size a job may have: every float of
 * a box coordinate is then exact and every byte count fits 64 bits. */
#define PE_AV_MAX_DIM (1u << 24)

/* ---- Pillow's resampling coefficients (libImaging/Resample.c) ---------- */

/* One axis of a resize: input [in0, in1) of in_size samples onto out_size
 * samples, with a filter of support filter_support (1 for the bilinear
 * triangle, 3 for Lanczos). */
typedef struct pe_av_axis {
    double in0;      /* box start: Pillow's float, widened */
    double scale;    /* input samples per output sample */
    double support;  /* filter support, widened by the downscale factor */
    double ss;       /* 1 / filterscale: tap distance to filter argument */
    uint32_t in_size;
} pe_av_axis;

/* The input samples of one output sample: first, count, and the centre
 * the filter is evaluated around. */
typedef struct pe_av_span {
    int64_t first, count;
    double center;
} pe_av_span;

/* precompute_coeffs' per-axis values. The box's difference is taken in
 * float, as Pillow's box is float, then widened. */
PE_HD pe_av_axis pe_av_axis_of(double filter_support, uint32_t in_size,
                               float in0, float in1, uint32_t out_size) {
    pe_av_axis a;
    a.in0 = in0;
    a.scale = (double)(in1 - in0) / out_size;
    const double filterscale = a.scale < 1.0 ? 1.0 : a.scale;
    a.support = filter_support * filterscale;
    a.ss = 1.0 / filterscale;
    a.in_size = in_size;
    return a;
}

/* Pillow's test for resampling an axis at all: an axis whose size and box
 * are the identity is skipped. */
PE_HD int pe_av_axis_needed(uint32_t in_size, float in0, float in1,
                            uint32_t out_size) {
    return out_size != in_size || in0 != 0 || in1 != (float)out_size;
}

/* The taps of output sample o. Pillow rounds the bounds by truncating
 * after adding 0.5, then clamps them to the input. */
PE_HD pe_av_span pe_av_span_of(const pe_av_axis *a, uint32_t o) {
    pe_av_span s;
    s.center = a->in0 + (o + 0.5) * a->scale;
    int64_t xmin = (int64_t)(s.center - a->support + 0.5);
    if (xmin < 0) xmin = 0;
    int64_t xmax = (int64_t)(s.center + a->support + 0.5);
    if (xmax > (int64_t)a->in_size) xmax = a->in_size;
    s.first = xmin;
    s.count = xmax > xmin ? xmax - xmin : 0;
    return s;
}

/* The filter's argument for tap t (0 <= t < count) of span s. */
PE_HD double pe_av_tap_arg(const pe_av_axis *a, const pe_av_span *s,
                           int64_t t) {
    return ((double)(s->first + t) - s->center + 0.5) * a->ss;
}

/* Pillow's bilinear filter: the triangle of support 1. */
PE_HD double pe_av_triangle(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* A weight w of a span whose weights sum to ww, normalised and rounded
 * half away from zero into fixed point (normalize_coeffs_8bpc). */
PE_HD int32_t pe_av_fixed(double w, double ww) {
    const double v = ww != 0.0 ? w / ww : w;
    return v < 0 ? (int32_t)(-0.5 + v * (1 << PE_AV_PRECISION_BITS))
                 : (int32_t)(0.5 + v * (1 << PE_AV_PRECISION_BITS));
}

/* A fixed-point sum (started at PE_AV_HALF) back to a clipped sample. */
PE_HD uint8_t pe_av_fixed_to_u8(int32_t acc) {
    const int32_t v = acc >> PE_AV_PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* The sum of span s's bilinear weights before normalisation, in tap
 * order (the order of Pillow's loop, so the same double). */
PE_HD double pe_av_bilinear_norm(const pe_av_axis *a, const pe_av_span *s) {
    double ww = 0.0;
    for (int64_t t = 0; t < s->count; t++)
        ww += pe_av_triangle(pe_av_tap_arg(a, s, t));
    return ww;
}

/* One output pixel of a bilinear pass: output sample o of axis a, c
 * channels (1 or 3, adjacent bytes). Tap i of the axis (input sample i)
 * is the pixel at in + (i - offset) * stride, so a horizontal pass gives
 * a row and stride c, a vertical pass a column and the row stride.
 * Weights are computed tap by tap, each exactly the table's weight; the
 * int32 sums equal resample.c's (integer addition is exact). */
PE_HD void pe_av_bilinear_pixel(const pe_av_axis *a, uint32_t o,
                                const uint8_t *in, size_t stride,
                                int64_t offset, uint32_t c, uint8_t *out) {
    const pe_av_span s = pe_av_span_of(a, o);
    const double ww = pe_av_bilinear_norm(a, &s);
    const uint8_t *p = in + (size_t)(s.first - offset) * stride;
    int32_t s0 = PE_AV_HALF, s1 = PE_AV_HALF, s2 = PE_AV_HALF;
    for (int64_t t = 0; t < s.count; t++, p += stride) {
        const int32_t k = pe_av_fixed(pe_av_triangle(pe_av_tap_arg(a, &s, t)),
                                      ww);
        s0 += p[0] * k;
        if (c == 3) {
            s1 += p[1] * k;
            s2 += p[2] * k;
        }
    }
    out[0] = pe_av_fixed_to_u8(s0);
    if (c == 3) {
        out[1] = pe_av_fixed_to_u8(s1);
        out[2] = pe_av_fixed_to_u8(s2);
    }
}

/* ---- Pillow's pixel arithmetic (lib/augment.c's ops) ------------------- */

/* convert("L") of one RGB pixel (Pillow's L24 luma). */
PE_HD uint8_t pe_av_luma(const uint8_t *rgb) {
    return (uint8_t)(((uint32_t)rgb[0] * 19595u + (uint32_t)rgb[1] * 38470u +
                      (uint32_t)rgb[2] * 7471u + 0x8000u) >>
                     16);
}

/* ImagingBlend(im1, im2, alpha) on one sample: interpolation truncates,
 * extrapolation clips then truncates; both compute in float. */
PE_HD uint8_t pe_av_blend(int a, int b, float alpha) {
    const float t = (float)a + alpha * (float)(b - a);
    if (t <= 0.0f) return 0;
    if (t >= 255.0f) return 255;
    return (uint8_t)t;
}

/* Contrast's grey: ImageStat's mean of the L image (sum / count in
 * double), then int(mean + 0.5). */
PE_HD int pe_av_mean_grey(uint64_t luma_sum, uint64_t npix) {
    return (int)((double)luma_sum / (double)npix + 0.5);
}

/* Saturation on one RGB pixel: blend with its own luma. */
PE_HD void pe_av_saturate(uint8_t *rgb, float f) {
    const int g = pe_av_luma(rgb);
    rgb[0] = pe_av_blend(g, rgb[0], f);
    rgb[1] = pe_av_blend(g, rgb[1], f);
    rgb[2] = pe_av_blend(g, rgb[2], f);
}

PE_HD int pe_av_clamp8(int v) { return v <= 0 ? 0 : v < 256 ? v : 255; }

/* Pillow's rgb2hsv_row (following colorsys.py), types kept: a float where
 * Pillow has a float variable, double where its expression promotes. */
PE_HD void pe_av_rgb_to_hsv(const uint8_t *in, uint8_t *out) {
    const uint8_t r = in[0], g = in[1], b = in[2];
    const uint8_t maxc = r > (g > b ? g : b) ? r : (g > b ? g : b);
    const uint8_t minc = r < (g < b ? g : b) ? r : (g < b ? g : b);
    uint8_t uh = 0, us = 0;
    if (minc != maxc) {
        const float cr = (float)(maxc - minc);
        const float s = cr / (float)maxc;
        const float rc = (float)(maxc - r) / cr;
        const float gc = (float)(maxc - g) / cr;
        const float bc = (float)(maxc - b) / cr;
        float h;
        if (r == maxc)
            h = bc - gc;
        else if (g == maxc)
            h = (float)(2.0 + rc - bc);
        else
            h = (float)(4.0 + gc - rc);
        h = (float)fmod(h / 6.0 + 1.0, 1.0);
        uh = (uint8_t)pe_av_clamp8((int)(h * 255.0));
        us = (uint8_t)pe_av_clamp8((int)(s * 255.0));
    }
    out[0] = uh;
    out[1] = us;
    out[2] = maxc;
}

/* Pillow's hsv2rgb for one pixel, types kept. */
PE_HD void pe_av_hsv_to_rgb(const uint8_t *in, uint8_t *out) {
    const uint8_t h = in[0], s = in[1], v = in[2];
    if (s == 0) {
        out[0] = out[1] = out[2] = v;
        return;
    }
    const int i = (int)floor((float)h * 6.0 / 255.0);
    const float f = (float)((float)h * 6.0 / 255.0 - (float)i);
    const float fs = (float)((float)s / 255.0);
    const float fsf = fs * f; /* a float product in Pillow */
    const uint8_t up =
        (uint8_t)pe_av_clamp8((int)round((float)v * (1.0 - fs)));
    const uint8_t uq =
        (uint8_t)pe_av_clamp8((int)round((float)v * (1.0 - fsf)));
    const uint8_t ut =
        (uint8_t)pe_av_clamp8((int)round((float)v * (1.0 - fs * (1.0 - f))));
    switch (i % 6) {
    case 0: out[0] = v, out[1] = ut, out[2] = up; break;
    case 1: out[0] = uq, out[1] = v, out[2] = up; break;
    case 2: out[0] = up, out[1] = v, out[2] = ut; break;
    case 3: out[0] = up, out[1] = uq, out[2] = v; break;
    case 4: out[0] = ut, out[1] = up, out[2] = v; break;
    default: out[0] = v, out[1] = up, out[2] = uq; break;
    }
}

/* The hue op's shift of H: np.uint8(hue * 255), the double truncated
 * toward zero, then taken modulo 256 (|hue * 255| <= 127.5 for the hues
 * allowed, so the int conversion is exact). */
PE_HD uint8_t pe_av_hue_shift(float hue) {
    return (uint8_t)(unsigned)(int)((double)hue * 255.0);
}

/* The hue op on one RGB pixel: to HSV, H += shift mod 256, back. */
PE_HD void pe_av_hue_rotate(uint8_t *rgb, uint8_t shift) {
    uint8_t hsv[3];
    pe_av_rgb_to_hsv(rgb, hsv);
    hsv[0] = (uint8_t)(hsv[0] + shift);
    pe_av_hsv_to_rgb(hsv, rgb);
}

/* Grayscale of one RGB pixel: convert("L"), replicated. */
PE_HD void pe_av_gray(uint8_t *rgb) {
    rgb[0] = rgb[1] = rgb[2] = pe_av_luma(rgb);
}

/* ToTensor's div(255) then Normalize's sub_ and div_, each a correctly
 * rounded float operation, in that order. */
PE_HD float pe_av_normalize(uint8_t v, float mean, float std) {
    return ((float)v / 255.0f - mean) / std;
}

/* ---- one view, as the GPU renders it ----------------------------------- */

/* A view's geometry and buffers. The source is cropped by addressing, not
 * copied: the crop's rows are src + y * src_stride. The resize is
 * lib/augment.c's crop.resize((size, size), BILINEAR), i.e. resample.c's
 * resize_box with box (0, 0, box_w, box_h) on the crop. */
typedef struct pe_av_view {
    const uint8_t *src;  /* the crop's top-left pixel */
    size_t src_stride;   /* bytes per source row */
    uint32_t c;          /* channels of source and view, 1 or 3 */
    uint32_t size;       /* the view is size x size */
    int need_h, need_v;  /* axes not skipped as the identity */
    pe_av_axis hx, vy;   /* crop width / height onto size */
    int64_t row_first;   /* the crop rows the vertical pass reads: */
    uint32_t rows;       /*   row_first .. row_first + rows - 1 (the
                            box starts at the crop's row 0, so row_first
                            is 0; kept to follow resize_box) */
    uint8_t *img;        /* (size, size, c) the view, HWC */
    uint8_t *tmp;        /* (rows, size, c) the horizontal pass's output
                            when both axes are resampled */
} pe_av_view;

/* Bytes of work memory one view needs: the view plus the horizontal
 * pass's intermediate, bounded by all of the crop's rows. */
static inline size_t pe_augview_work_bytes(const pe_aug_job *j, uint32_t size) {
    return ((size_t)size + j->box_h) * size * j->c;
}

/* The geometry of job j's view at size from the pixel buffer, with work
 * (pe_augview_work_bytes) as its buffers. Like resample.c, the vertical
 * axis is computed even when skipped: its span then covers every row. */
PE_HD void pe_av_view_init(pe_av_view *v, const pe_aug_job *j,
                           const uint8_t *pixels, uint32_t size,
                           uint8_t *work) {
    v->c = j->c;
    v->size = size;
    v->src_stride = (size_t)j->w * j->c;
    v->src = pixels + j->offset + (size_t)j->box_i * v->src_stride +
             (size_t)j->box_j * j->c;
    /* The crop's box as resize_box receives it: (0, 0, w, h) in float. */
    v->need_h = pe_av_axis_needed(j->box_w, 0.0f, (float)j->box_w, size);
    v->need_v = pe_av_axis_needed(j->box_h, 0.0f, (float)j->box_h, size);
    v->hx = pe_av_axis_of(1.0, j->box_w, 0.0f, (float)j->box_w, size);
    v->vy = pe_av_axis_of(1.0, j->box_h, 0.0f, (float)j->box_h, size);
    const pe_av_span top = pe_av_span_of(&v->vy, 0);
    const pe_av_span bottom = pe_av_span_of(&v->vy, size - 1);
    v->row_first = top.first;
    v->rows = (uint32_t)(bottom.first + bottom.count - top.first);
    v->img = work;
    v->tmp = work + (size_t)size * size * j->c;
}

/* The phases below split their work among nt threads, thread tid taking
 * items tid, tid + nt, ...; the host runs them with tid 0 of 1. The jitter
 * phases and pe_av_finish share one split of the view's pixels, so a
 * thread only ever touches its own pixels between them and they need no
 * barrier; a contrast op's mean is the one block-wide step. */

/* Phase 1: the horizontal pass over the rows the vertical pass reads,
 * into tmp, or straight into the view when the vertical axis is
 * skipped. Nothing when the horizontal axis is skipped. */
PE_HD void pe_av_pass_h(const pe_av_view *v, uint32_t tid, uint32_t nt) {
    if (!v->need_h) return;
    uint8_t *dst = v->need_v ? v->tmp : v->img;
    const size_t n = (size_t)v->rows * v->size;
    for (size_t i = tid; i < n; i += nt) {
        const size_t r = i / v->size, x = i % v->size;
        const uint8_t *row =
            v->src + ((size_t)v->row_first + r) * v->src_stride;
        pe_av_bilinear_pixel(&v->hx, (uint32_t)x, row, v->c, 0, v->c,
                             dst + i * v->c);
    }
}

/* Phase 2 (after a barrier): the vertical pass from tmp, or from the crop
 * when the horizontal axis is skipped; when both are skipped the crop is
 * copied. Nothing when only the vertical axis is skipped. */
PE_HD void pe_av_pass_v(const pe_av_view *v, uint32_t tid, uint32_t nt) {
    const uint32_t c = v->c;
    const size_t n = (size_t)v->size * v->size;
    if (v->need_v) {
        const uint8_t *in = v->need_h ? v->tmp : v->src;
        const size_t stride = v->need_h ? (size_t)v->size * c : v->src_stride;
        const int64_t offset = v->need_h ? v->row_first : 0;
        for (size_t i = tid; i < n; i += nt) {
            const size_t y = i / v->size, x = i % v->size;
            pe_av_bilinear_pixel(&v->vy, (uint32_t)y, in + x * c, stride,
                                 offset, c, v->img + i * c);
        }
    } else if (!v->need_h) {
        for (size_t i = tid; i < n; i += nt) {
            const size_t y = i / v->size, x = i % v->size;
            const uint8_t *p = v->src + y * v->src_stride + x * c;
            for (uint32_t k = 0; k < c; k++) v->img[i * c + k] = p[k];
        }
    }
}

/* This thread's share of the view's luma sum (contrast's mean). */
PE_HD uint64_t pe_av_luma_sum(const pe_av_view *v, uint32_t tid, uint32_t nt) {
    const size_t n = (size_t)v->size * v->size;
    uint64_t sum = 0;
    for (size_t i = tid; i < n; i += nt)
        sum += v->c == 3 ? pe_av_luma(v->img + 3 * i) : v->img[i];
    return sum;
}

/* One jitter op (PE_AV_*) with factor f on this thread's pixels; mean is
 * the contrast op's grey (pe_av_mean_grey of the whole view's luma sum
 * just before it), unused by the others. On a 1-channel view saturation
 * and hue change nothing, as in lib/augment.c. */
PE_HD void pe_av_jitter(const pe_av_view *v, int op, float f, int mean,
                        uint32_t tid, uint32_t nt) {
    const size_t n = (size_t)v->size * v->size;
    const uint32_t c = v->c;
    if (op == PE_AV_BRIGHTNESS || op == PE_AV_CONTRAST) {
        const int base = op == PE_AV_BRIGHTNESS ? 0 : mean;
        for (size_t i = tid; i < n; i += nt)
            for (uint32_t k = 0; k < c; k++)
                v->img[i * c + k] = pe_av_blend(base, v->img[i * c + k], f);
    } else if (c == 3 && op == PE_AV_SATURATION) {
        for (size_t i = tid; i < n; i += nt) pe_av_saturate(v->img + 3 * i, f);
    } else if (c == 3 && op == PE_AV_HUE) {
        const uint8_t shift = pe_av_hue_shift(f);
        for (size_t i = tid; i < n; i += nt)
            pe_av_hue_rotate(v->img + 3 * i, shift);
    }
}

/* Last phase: grayscale, then ToTensor+Normalize into out (out_c, size,
 * size), replicating a 1-channel view when out_c is 3. The flip is done
 * here, by writing pixel x to column size - 1 - x: every earlier op is
 * per pixel or (contrast's mean) a sum over all pixels, so mirroring last
 * gives the bytes of mirroring right after the resize, as the CPU does. */
PE_HD void pe_av_finish(const pe_av_view *v, int flip, int gray,
                        uint32_t out_c, const float *mean, const float *std,
                        float *out, uint32_t tid, uint32_t nt) {
    const size_t n = (size_t)v->size * v->size;
    const uint32_t c = v->c;
    for (size_t i = tid; i < n; i += nt) {
        uint8_t p[3];
        for (uint32_t k = 0; k < c; k++) p[k] = v->img[i * c + k];
        if (gray && c == 3) pe_av_gray(p);
        const size_t y = i / v->size, x = i % v->size;
        const size_t at = y * v->size + (flip ? v->size - 1 - x : x);
        for (uint32_t k = 0; k < out_c; k++)
            out[k * n + at] =
                pe_av_normalize(p[c == 1 ? 0 : k], mean[k], std[k]);
    }
}

/* ---- host-side checks and the sequential renderer ----------------------- */

/* Whether a view of c source channels can be written with out_c: the
 * same count, or an L source replicated to 3. */
static inline int pe_aug_channels_ok(uint32_t c, uint32_t out_c) {
    return (c == 1 || c == 3) && (out_c == c || (c == 1 && out_c == 3));
}

/* Why job j cannot be rendered over a pixel buffer of pixel_bytes, or NULL
 * when it can: c is 1 or 3; the image is non-empty, at most PE_AV_MAX_DIM
 * a side, and lies inside the buffer; the crop box is non-empty and inside
 * the image; and, when jitter is on, each op of the order is 0..3 and each
 * enabled op's factor is finite (hue's in [-0.5, 0.5], as pe_aug_hue
 * demands). Overflow-safe for any field values. */
static inline const char *pe_aug_job_problem(const pe_aug_job *j,
                                             size_t pixel_bytes) {
    if (j->c != 1 && j->c != 3) return "channels not 1 or 3";
    if (j->w == 0 || j->h == 0) return "empty image";
    if (j->w > PE_AV_MAX_DIM || j->h > PE_AV_MAX_DIM)
        return "image side over 2^24";
    if (j->box_w == 0 || j->box_h == 0) return "empty crop box";
    if (j->box_j > j->w || j->box_w > j->w - j->box_j ||
        j->box_i > j->h || j->box_h > j->h - j->box_i)
        return "crop box leaves the image";
    /* w, h <= 2^24 and c <= 3: the product fits 64 bits. */
    const uint64_t bytes = (uint64_t)j->w * j->h * j->c;
    if (j->offset > pixel_bytes || bytes > pixel_bytes - j->offset)
        return "image leaves the pixel buffer";
    if (j->jitter) {
        for (int n = 0; n < 4; n++) {
            const int k = j->order[n];
            if (k > 3) return "jitter op not 0..3";
            if (!j->enabled[k]) continue;
            const float f = j->factor[k];
            if (!(f == f && f - f == 0.0f)) return "jitter factor not finite";
            if (k == PE_AV_HUE && !(f >= -0.5f && f <= 0.5f))
                return "hue factor not in [-0.5, 0.5]";
        }
    }
    return NULL;
}

/* 0 when job j can be rendered over pixel_bytes of pixels, else nonzero
 * (pe_aug_job_problem says why). */
static inline int pe_aug_job_check(const pe_aug_job *j, size_t pixel_bytes) {
    return pe_aug_job_problem(j, pixel_bytes) != NULL;
}

/* Renders job j's view at size x size into out (out_c, size, size) exactly
 * as kernels/cuda/augment.cu's thread block does, its phases run in order
 * by a single thread. pixels is the batch's pixel buffer (j->offset into
 * it); work holds pe_augview_work_bytes(j, size) bytes. The caller has
 * checked j (pe_aug_job_check), 1 <= size <= PE_AV_MAX_DIM and
 * pe_aug_channels_ok(j->c, out_c); mean and std hold out_c floats. */
static inline void pe_augview_render_host(const pe_aug_job *j,
                                          const uint8_t *pixels, uint32_t size,
                                          uint32_t out_c, const float *mean,
                                          const float *std, float *out,
                                          uint8_t *work) {
    pe_av_view v;
    pe_av_view_init(&v, j, pixels, size, work);
    pe_av_pass_h(&v, 0, 1);
    pe_av_pass_v(&v, 0, 1);
    if (j->jitter)
        for (int n = 0; n < 4; n++) {
            const int k = j->order[n];
            if (!j->enabled[k]) continue;
            int grey = 0;
            if (k == PE_AV_CONTRAST)
                grey = pe_av_mean_grey(pe_av_luma_sum(&v, 0, 1),
                                       (uint64_t)size * size);
            pe_av_jitter(&v, k, j->factor[k], grey, 0, 1);
        }
    pe_av_finish(&v, j->flip, j->gray, out_c, mean, std, out, 0, 1);
}

#endif
