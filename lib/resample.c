/*
 * resample.c - bilinear and Lanczos resizing of 8-bit images, bit-exact
 * with Pillow 9's Image.resize(size, BILINEAR|LANCZOS[, box]) on "L" and
 * "RGB" images (Lanczos serves the perceptual hash, lib/phash.c).
 *
 * Not for: other filters, more than 8 bits per sample, or reproducing
 * Pillow's reducing_gap shortcut. Bit-exactness is the contract here, so the
 * coefficient arithmetic below follows Pillow's libImaging/Resample.c
 * operation for operation (float box, double weights, 22-bit fixed point);
 * change none of it without rerunning tests/unit/test_resample.c.
 *
 * The algorithm: per axis, every output sample is a normalised filter
 * (triangle, support 1; or Lanczos-3, a sinc windowed by a sinc, support 3)
 * over the input samples whose support is widened by the downscale
 * factor (so downscales are antialiased). Lanczos weights can be negative;
 * they are rounded into fixed point the same way (half away from zero) and
 * the results clipped to 0..255, as Pillow does. The horizontal pass runs first,
 * only over the input rows the vertical pass will read, and rounds to uint8;
 * the vertical pass then runs on that intermediate. An axis whose size and
 * box are the identity is skipped, as Pillow skips it.
 *
 * Floating-point note: the weights must come out identical to Pillow's, so
 * this file must not be built with -ffast-math or with FMA contraction
 * (GCC contracts only in GNU modes; the Makefile builds with -std=c11).
 * The coefficient steps (an axis's scale and support, each output's taps,
 * the triangle filter, the fixed-point rounding and clip) are
 * kernels/augview.h's, which the GPU's augmentation kernel runs too.
 *
 * Speed: on x86 CPUs with AVX2 (checked at run time; the build needs no
 * -march), both passes have vector versions that compute the very same
 * int32 sums, so the bytes do not change: the horizontal pass splits each
 * weight into two 16-bit halves for pmaddwd (see hpass_avx2), the vertical
 * pass is the scalar loop compiled for AVX2. The scalar passes stay as the
 * reference and the fallback; PE_NO_SIMD=1 in the environment selects them
 * (read on every call, so a test can compare the two in one process).
 */
#include "image.h"

#include "augview.h"
#include "pe.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define PE_RESAMPLE_AVX2 1
#include <immintrin.h>
#endif

/* Pillow's fixed point for 8-bit results (augview.h says why 22 bits). */
#define PRECISION_BITS PE_AV_PRECISION_BITS
#define HALF PE_AV_HALF

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

/* Pillow's sinc_filter and lanczos_filter, operation for operation. */
static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos(double x) {
    if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
    return 0.0;
}

typedef struct resample_filter {
    double (*fn)(double);
    double support;
} resample_filter;

static const resample_filter filter_bilinear = {pe_av_triangle, 1.0};
static const resample_filter filter_lanczos = {lanczos, 3.0};

static int mul_size(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return 0;
    *out = a * b;
    return 1;
}

static void axis_free(resample_axis *ax) {
    free(ax->mem);
    memset(ax, 0, sizeof *ax);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for filter f
 * mapping input [in0, in1) of in_size samples onto out_size samples. in0
 * and in1 are floats because Pillow's box is. */
static int axis_init(resample_axis *ax, const resample_filter *f,
                     uint32_t in_size, float in0, float in1,
                     uint32_t out_size) {
    memset(ax, 0, sizeof *ax);
    const pe_av_axis a = pe_av_axis_of(f->support, in_size, in0, in1, out_size);
    size_t ksize = (size_t)ceil(a.support) * 2 + 1;

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
        const pe_av_span sp = pe_av_span_of(&a, xx);
        const int64_t taps = sp.count;
        PE_ASSERT((size_t)taps <= ksize);

        double ww = 0.0;
        for (int64_t x = 0; x < taps; x++) {
            w[x] = f->fn(pe_av_tap_arg(&a, &sp, x));
            ww += w[x];
        }
        int32_t *k = ax->k + (size_t)xx * ksize;
        for (int64_t x = 0; x < taps; x++) k[x] = pe_av_fixed(w[x], ww);
        for (size_t x = (size_t)taps; x < ksize; x++) k[x] = 0;
        ax->first[xx] = (uint32_t)sp.first;
        ax->count[xx] = (uint32_t)taps;
    }
    free(w);
    return 0;
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
                dst[xx] = pe_av_fixed_to_u8(s);
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
                dst[3 * xx] = pe_av_fixed_to_u8(s0);
                dst[3 * xx + 1] = pe_av_fixed_to_u8(s1);
                dst[3 * xx + 2] = pe_av_fixed_to_u8(s2);
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
static inline __attribute__((always_inline)) void
vertical_body(const uint8_t *in, size_t row_len, uint32_t offset,
              uint8_t *restrict out, const resample_axis *ax) {
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
            for (int j = 0; j < VBLOCK; j++)
                dst[x + j] = pe_av_fixed_to_u8(acc[j]);
        }
        for (; x < row_len; x++) {
            int32_t s = HALF;
            for (uint32_t t = 0; t < taps; t++)
                s += rows[(size_t)t * row_len + x] * k[t];
            dst[x] = pe_av_fixed_to_u8(s);
        }
    }
}

static void resample_vertical(const uint8_t *in, size_t row_len,
                              uint32_t offset, uint8_t *restrict out,
                              const resample_axis *ax) {
    vertical_body(in, row_len, offset, out, ax);
}

/* ---- AVX2 ------------------------------------------------------------- */

/* Whether the vector passes may run: the CPU has AVX2 and PE_NO_SIMD is
 * unset, empty or "0". */
static int use_simd(void) {
#ifdef PE_RESAMPLE_AVX2
    const char *e = getenv("PE_NO_SIMD");
    if (e && *e && strcmp(e, "0") != 0) return 0;
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

#ifdef PE_RESAMPLE_AVX2

/* The same loop as resample_vertical; GCC vectorises it with 8-lane
 * vpmulld/vpaddd here instead of emulating the int32 multiply with SSE2. */
__attribute__((target("avx2"))) static void
resample_vertical_avx2(const uint8_t *in, size_t row_len, uint32_t offset,
                       uint8_t *restrict out, const resample_axis *ax) {
    vertical_body(in, row_len, offset, out, ax);
}

/* Taps per vector step: 16 samples as int16 fill a ymm register. */
#define HSTEP 16
/* Filters of at most this many taps go two outputs to a register. */
#define HSHORT 8

/* The horizontal pass's view of an axis. Each weight k (0 <= k <= 2^22) is
 * split as k = kh * 2^11 + kl with kl = k & 0x7FF and kh = k >> 11, both in
 * int16 range, so pmaddwd on samples widened to 16 bits gives exact int32
 * partial sums sum(p * kh) and sum(p * kl), and (sum(p * kh) << 11) +
 * sum(p * kl) is sum(p * k) modulo 2^32: the scalar loop's int32 sum,
 * which never overflows (see PRECISION_BITS). Weights are padded with
 * zeros to kp taps, plus one row of zeros for an odd output count. Input
 * rows are staged, widened to 16 bits, in planes of one channel with HSTEP
 * zeros after the row, so a vector load running past the last tap stays
 * inside the plane and meets zero weights. */
typedef struct hpass {
    size_t kp;          /* stride of kh and kl: HSHORT, or the most taps
                           of any output rounded up to HSTEP */
    int16_t *kh, *kl;   /* (n + 1, kp) high and low halves of the weights */
    uint16_t *plane[4]; /* (4, in_w + HSTEP) staged rows, one channel each */
    uint8_t *sink;      /* (n) outputs of an unused plane */
    void *mem;
} hpass;

static void hpass_free(hpass *hp) {
    free(hp->mem);
    memset(hp, 0, sizeof *hp);
}

/* Returns 0, or ENOMEM/PE_ETOOBIG with no message set (the caller then
 * falls back to the scalar pass). */
static int hpass_init(hpass *hp, const resample_axis *ax, uint32_t in_w) {
    memset(hp, 0, sizeof *hp);
    /* ksize bounds the taps from above; the outputs often use fewer. */
    size_t taps = 0;
    for (uint32_t xx = 0; xx < ax->n; xx++)
        if (ax->count[xx] > taps) taps = ax->count[xx];
    const size_t kp =
        taps <= HSHORT ? HSHORT : (taps + HSTEP - 1) / HSTEP * HSTEP;
    const size_t plane_len = (size_t)in_w + HSTEP;
    size_t nk, kbytes, pbytes;
    if (!mul_size((size_t)ax->n + 1, kp, &nk) ||
        !mul_size(nk, 2 * sizeof(int16_t), &kbytes) ||
        !mul_size(plane_len, 4 * sizeof(uint16_t), &pbytes) ||
        kbytes > SIZE_MAX - pbytes - ax->n)
        return PE_ETOOBIG;
    uint8_t *mem = calloc(1, kbytes + pbytes + ax->n);
    if (!mem) return ENOMEM;
    hp->mem = mem;
    hp->kp = kp;
    hp->kh = (int16_t *)mem;
    hp->kl = hp->kh + nk;
    for (int i = 0; i < 4; i++)
        hp->plane[i] = (uint16_t *)(mem + kbytes) + (size_t)i * plane_len;
    hp->sink = mem + kbytes + pbytes;
    for (uint32_t xx = 0; xx < ax->n; xx++) {
        const int32_t *k = ax->k + (size_t)xx * ax->ksize;
        for (uint32_t t = 0; t < ax->count[xx]; t++) {
            hp->kh[(size_t)xx * kp + t] = (int16_t)(k[t] >> 11);
            hp->kl[(size_t)xx * kp + t] = (int16_t)(k[t] & 0x7FF);
        }
    }
    return 0;
}

/* acc += the exact int32 products of the 16 samples px with the weights
 * (h, l), pairwise summed. */
#define HMADD(acc, px, h, l)                                                  \
    acc = _mm256_add_epi32(                                                   \
        acc, _mm256_add_epi32(_mm256_slli_epi32(_mm256_madd_epi16(px, h), 11), \
                              _mm256_madd_epi16(px, l)))

/* Filters NP staged planes (3 or 4) that share the axis: output xx of
 * plane i goes to out[i][xx * step]. One output per step, 16 taps at a
 * time. Everything is copied into locals first: the byte stores could
 * alias hp's and ax's fields otherwise. */
static inline __attribute__((always_inline, target("avx2"))) void
hconv_long(const hpass *hp, const resample_axis *ax,
           uint16_t *const plane[4], uint8_t *const out[4], size_t step,
           const int NP) {
    const __m128i half = _mm_set1_epi32(HALF);
    const uint16_t *p0 = plane[0], *p1 = plane[1], *p2 = plane[2],
                   *p3 = plane[3];
    uint8_t *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3];
    const uint32_t *first = ax->first, *count = ax->count;
    const int16_t *kh = hp->kh, *kl = hp->kl;
    const size_t kp = hp->kp, n = ax->n;
    for (size_t xx = 0; xx < n; xx++, kh += kp, kl += kp) {
        const size_t x0 = first[xx];
        const size_t taps = count[xx];
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t t = 0; t < taps; t += HSTEP) {
            const __m256i h = _mm256_loadu_si256((const __m256i *)(kh + t));
            const __m256i l = _mm256_loadu_si256((const __m256i *)(kl + t));
#define HLOAD(pl) _mm256_loadu_si256((const __m256i *)((pl) + x0 + t))
            HMADD(a0, HLOAD(p0), h, l);
            HMADD(a1, HLOAD(p1), h, l);
            HMADD(a2, HLOAD(p2), h, l);
            if (NP > 3) HMADD(a3, HLOAD(p3), h, l);
#undef HLOAD
        }
        /* Lane sums of the accumulators into one vector of 4. */
        const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1),
                                            _mm256_hadd_epi32(a2, a3));
        __m128i v = _mm_add_epi32(_mm256_castsi256_si128(s),
                                  _mm256_extracti128_si256(s, 1));
        /* clip8: the shift, then saturation to int16 and to uint8. */
        v = _mm_srai_epi32(_mm_add_epi32(v, half), PRECISION_BITS);
        v = _mm_packs_epi32(v, v);
        const uint32_t b = (uint32_t)_mm_cvtsi128_si32(_mm_packus_epi16(v, v));
        o0[xx * step] = (uint8_t)b;
        o1[xx * step] = (uint8_t)(b >> 8);
        o2[xx * step] = (uint8_t)(b >> 16);
        if (NP > 3) o3[xx * step] = (uint8_t)(b >> 24);
    }
}

/* The same for filters of at most HSHORT taps (upscales and downscales
 * up to about 3.5x): two outputs per step, output xx in the low 128-bit
 * lane and xx + 1 in the high one, whose weights are adjacent at kp = 8.
 * An odd last output pairs with the zero weights of row n. */
static inline __attribute__((always_inline, target("avx2"))) void
hconv_short(const hpass *hp, const resample_axis *ax,
            uint16_t *const plane[4], uint8_t *const out[4], size_t step,
            const int NP) {
    const __m256i half = _mm256_set1_epi32(HALF);
    const uint16_t *p0 = plane[0], *p1 = plane[1], *p2 = plane[2],
                   *p3 = plane[3];
    uint8_t *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3];
    const uint32_t *first = ax->first;
    const int16_t *kh = hp->kh, *kl = hp->kl;
    const size_t n = ax->n;
    for (size_t xx = 0; xx < n; xx += 2, kh += 2 * HSHORT, kl += 2 * HSHORT) {
        const size_t xa = first[xx], xb = xx + 1 < n ? first[xx + 1] : xa;
        const __m256i h = _mm256_loadu_si256((const __m256i *)kh);
        const __m256i l = _mm256_loadu_si256((const __m256i *)kl);
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
#define HLOAD2(pl)                                                            \
    _mm256_inserti128_si256(                                                  \
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)((pl) + xa))), \
        _mm_loadu_si128((const __m128i *)((pl) + xb)), 1)
        HMADD(a0, HLOAD2(p0), h, l);
        HMADD(a1, HLOAD2(p1), h, l);
        HMADD(a2, HLOAD2(p2), h, l);
        if (NP > 3) HMADD(a3, HLOAD2(p3), h, l);
#undef HLOAD2
        /* Per lane: the four planes' sums of that lane's output. */
        __m256i v = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1),
                                      _mm256_hadd_epi32(a2, a3));
        v = _mm256_srai_epi32(_mm256_add_epi32(v, half), PRECISION_BITS);
        v = _mm256_packs_epi32(v, v);
        v = _mm256_packus_epi16(v, v);
        const uint32_t b = (uint32_t)_mm256_cvtsi256_si32(v);
        o0[xx * step] = (uint8_t)b;
        o1[xx * step] = (uint8_t)(b >> 8);
        o2[xx * step] = (uint8_t)(b >> 16);
        if (NP > 3) o3[xx * step] = (uint8_t)(b >> 24);
        if (xx + 1 < n) {
            const uint32_t b1 = (uint32_t)_mm256_extract_epi32(v, 4);
            const size_t at = (xx + 1) * step;
            o0[at] = (uint8_t)b1;
            o1[at] = (uint8_t)(b1 >> 8);
            o2[at] = (uint8_t)(b1 >> 16);
            if (NP > 3) o3[at] = (uint8_t)(b1 >> 24);
        }
    }
}
#undef HMADD

/* pshufb masks splitting 16 RGB pixels (48 bytes, three 16-byte blocks)
 * into planes: deint_mask[ch][blk][pos] is the byte of block blk that
 * holds channel ch of pixel pos (byte 3 pos + ch - 16 blk), or -1 (zero)
 * when that byte lies in another block. */
static const int8_t deint_mask[3][3][16] = {
    {
        {0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
        {-1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14, -1, -1, -1, -1, -1},
        {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 4, 7, 10, 13},
    },
    {
        {1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
        {-1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1},
        {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14},
    },
    {
        {2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
        {-1, -1, -1, -1, -1, 1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1},
        {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15},
    },
};

/* Stages an RGB row of w pixels as three 16-bit planes. */
__attribute__((target("avx2"))) static void
stage_rgb(const uint8_t *src, uint32_t w, uint16_t *r, uint16_t *g,
          uint16_t *b) {
    uint32_t x = 0;
    if (w >= 16) {
        __m128i m[3][3];
        for (int ch = 0; ch < 3; ch++)
            for (int blk = 0; blk < 3; blk++)
                m[ch][blk] =
                    _mm_loadu_si128((const __m128i *)deint_mask[ch][blk]);
        for (; x + 16 <= w; x += 16) {
            const uint8_t *p = src + 3 * (size_t)x;
            const __m128i a0 = _mm_loadu_si128((const __m128i *)p);
            const __m128i a1 = _mm_loadu_si128((const __m128i *)(p + 16));
            const __m128i a2 = _mm_loadu_si128((const __m128i *)(p + 32));
#define DEINT(ch, dst)                                                        \
    _mm256_storeu_si256(                                                      \
        (__m256i *)((dst) + x),                                               \
        _mm256_cvtepu8_epi16(_mm_or_si128(                                    \
            _mm_or_si128(_mm_shuffle_epi8(a0, m[ch][0]),                      \
                         _mm_shuffle_epi8(a1, m[ch][1])),                     \
            _mm_shuffle_epi8(a2, m[ch][2]))))
            DEINT(0, r);
            DEINT(1, g);
            DEINT(2, b);
#undef DEINT
        }
    }
    for (; x < w; x++) {
        r[x] = src[3 * (size_t)x];
        g[x] = src[3 * (size_t)x + 1];
        b[x] = src[3 * (size_t)x + 2];
    }
}

/* Stages a gray row of w pixels as a 16-bit plane. */
__attribute__((target("avx2"))) static void
stage_gray(const uint8_t *src, uint32_t w, uint16_t *dst) {
    uint32_t x = 0;
    for (; x + 16 <= w; x += 16)
        _mm256_storeu_si256(
            (__m256i *)(dst + x),
            _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(src + x))));
    for (; x < w; x++) dst[x] = src[x];
}

__attribute__((target("avx2"))) static void
hconv3_avx2(const hpass *hp, const resample_axis *ax, uint16_t *const plane[4],
            uint8_t *const out[4], size_t step) {
    if (hp->kp == HSHORT)
        hconv_short(hp, ax, plane, out, step, 3);
    else
        hconv_long(hp, ax, plane, out, step, 3);
}

__attribute__((target("avx2"))) static void
hconv4_avx2(const hpass *hp, const resample_axis *ax, uint16_t *const plane[4],
            uint8_t *const out[4], size_t step) {
    if (hp->kp == HSHORT)
        hconv_short(hp, ax, plane, out, step, 4);
    else
        hconv_long(hp, ax, plane, out, step, 4);
}

/* The horizontal pass with the same arguments as resample_horizontal plus
 * the input width. Gray rows go four at a time (four planes), RGB rows one
 * at a time as three planes. Returns nonzero, having written nothing, when
 * its buffers cannot be allocated. */
static int hpass_avx2(const uint8_t *in, size_t in_stride, uint8_t *out,
                      uint32_t rows, uint32_t c, const resample_axis *ax,
                      uint32_t in_w) {
    hpass hp;
    if (hpass_init(&hp, ax, in_w) != 0) return 1;
    const size_t out_stride = (size_t)ax->n * c;
    if (c == 1) {
        for (uint32_t y = 0; y < rows; y += 4) {
            uint8_t *dst[4];
            for (uint32_t i = 0; i < 4; i++) {
                if (y + i < rows) {
                    stage_gray(in + (size_t)(y + i) * in_stride, in_w,
                               hp.plane[i]);
                    dst[i] = out + (size_t)(y + i) * out_stride;
                } else {
                    dst[i] = hp.sink;
                }
            }
            hconv4_avx2(&hp, ax, hp.plane, dst, 1);
        }
    } else {
        for (uint32_t y = 0; y < rows; y++) {
            uint8_t *row_out = out + (size_t)y * out_stride;
            uint8_t *dst[4] = {row_out, row_out + 1, row_out + 2, hp.sink};
            stage_rgb(in + (size_t)y * in_stride, in_w, hp.plane[0],
                      hp.plane[1], hp.plane[2]);
            hconv3_avx2(&hp, ax, hp.plane, dst, 3);
        }
    }
    hpass_free(&hp);
    return 0;
}

#endif /* PE_RESAMPLE_AVX2 */

/* The passes as the CPU and PE_NO_SIMD allow. */
static void horizontal_pass(const uint8_t *in, size_t in_stride, uint8_t *out,
                            uint32_t rows, uint32_t c, const resample_axis *ax,
                            uint32_t in_w, int simd) {
#ifdef PE_RESAMPLE_AVX2
    if (simd && hpass_avx2(in, in_stride, out, rows, c, ax, in_w) == 0) return;
#else
    (void)in_w;
    (void)simd;
#endif
    resample_horizontal(in, in_stride, out, rows, c, ax);
}

static void vertical_pass(const uint8_t *in, size_t row_len, uint32_t offset,
                          uint8_t *restrict out, const resample_axis *ax,
                          int simd) {
#ifdef PE_RESAMPLE_AVX2
    if (simd) {
        resample_vertical_avx2(in, row_len, offset, out, ax);
        return;
    }
#else
    (void)simd;
#endif
    resample_vertical(in, row_len, offset, out, ax);
}

static int resize_box(const resample_filter *f, const pe_image *src,
                      pe_image *dst, uint32_t dst_w, uint32_t dst_h,
                      double x0, double y0, double x1, double y1) {
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
    const int simd = use_simd();
    const int need_h = pe_av_axis_needed(src->w, box[0], box[2], dst_w);
    const int need_v = pe_av_axis_needed(src->h, box[1], box[3], dst_h);

    resample_axis hx = {0}, vy = {0};
    uint8_t *tmp = NULL;
    int rc = pe_image_alloc(dst, dst_w, dst_h, c);
    if (rc) goto out;
    if (!need_h && !need_v) {
        memcpy(dst->px, src->px, pe_image_size(src));
        goto out;
    }

    rc = axis_init(&vy, f, src->h, box[1], box[3], dst_h);
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
        rc = axis_init(&hx, f, src->w, box[0], box[2], dst_w);
        if (rc) goto out;
        const size_t src_stride = (size_t)src->w * c;
        const uint8_t *hin = src->px + (size_t)row_first * src_stride;
        const uint32_t rows = row_last - row_first;
        if (!need_v) {
            /* The vertical axis is the identity, so it covers every row. */
            PE_ASSERT(row_first == 0 && rows == dst_h);
            horizontal_pass(hin, src_stride, dst->px, rows, c, &hx, src->w,
                            simd);
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
        horizontal_pass(hin, src_stride, tmp, rows, c, &hx, src->w, simd);
        vin = tmp;
        voffset = row_first;
    }

    vertical_pass(vin, row_len, voffset, dst->px, &vy, simd);

out:
    free(tmp);
    axis_free(&hx);
    axis_free(&vy);
    if (rc) pe_image_free(dst);
    return rc;
}

int pe_image_resize_box_bilinear(const pe_image *src, pe_image *dst,
                                 uint32_t dst_w, uint32_t dst_h, double x0,
                                 double y0, double x1, double y1) {
    return resize_box(&filter_bilinear, src, dst, dst_w, dst_h, x0, y0, x1,
                      y1);
}

int pe_image_resize_box_lanczos(const pe_image *src, pe_image *dst,
                                uint32_t dst_w, uint32_t dst_h, double x0,
                                double y0, double x1, double y1) {
    return resize_box(&filter_lanczos, src, dst, dst_w, dst_h, x0, y0, x1,
                      y1);
}

int pe_image_resize_lanczos(const pe_image *src, pe_image *dst,
                            uint32_t dst_w, uint32_t dst_h) {
    PE_ASSERT(src != NULL);
    return pe_image_resize_box_lanczos(src, dst, dst_w, dst_h, 0.0, 0.0,
                                       (double)src->w, (double)src->h);
}

int pe_image_resize_bilinear(const pe_image *src, pe_image *dst,
                             uint32_t dst_w, uint32_t dst_h) {
    PE_ASSERT(src != NULL);
    return pe_image_resize_box_bilinear(src, dst, dst_w, dst_h, 0.0, 0.0,
                                        (double)src->w, (double)src->h);
}
