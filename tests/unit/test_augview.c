/*
 * test_augview.c - checks kernels/augview.h, the view rendering the CUDA
 * backend's augment kernel runs (kernels/cuda/augment.cu), on the CPU:
 * pe_augview_render_host runs the kernel's phases with one thread, and its
 * floats must equal lib/augment.c's pe_aug_apply / pe_augment_view bit for
 * bit (memcmp) for views built exactly as the trainer builds them
 * (pe_aug_draw_view, then pe_aug_job_of), and for parameters set by hand
 * to reach every branch: identity axes, 1-pixel crops, whole-image crops
 * of large sources (hundreds of taps per output sample), every jitter op
 * on and off in random orders, extreme factors, flip, grayscale, L
 * sources with 1 and 3 output channels. Also pe_aug_job_check on hostile
 * jobs, which augment.cu refuses before launching.
 *
 * Not for: Pillow or torchvision themselves (test_augment.c checks
 * pe_aug_apply against them), or the GPU (tests/gpu/).
 */
#include "augment.h"
#include "augview.h"
#include "check.h"
#include "image.h"
#include "pe.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_RNG_SEED 0x5EEDA46u
#include "testrand.h"

static uint32_t rnd_int(uint32_t lo, uint32_t hi) { /* in [lo, hi] */
    return lo + (uint32_t)(rnd() * ((double)hi - lo + 1));
}

/* What the cases reached, so the test fails if a branch went unvisited. */
static struct {
    long views, rgb, gray_src, l_to_rgb, flips, jitters, grays;
    long ops[4];      /* enabled ops under jitter */
    long identity_h, identity_v, both_identity, both_resampled;
    long one_pixel, whole, big_taps, local;
} seen;

/* A w x h x c image: random bytes, or smooth with noise like a photo. */
static void make_image(pe_image *im, uint32_t w, uint32_t h, uint32_t c) {
    CHECK_OK(pe_image_alloc(im, w, h, c));
    if (!im->px) abort();
    const int smooth = rnd() < 0.5;
    const double fx = 0.05 + 0.3 * rnd(), fy = 0.05 + 0.3 * rnd();
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (uint32_t k = 0; k < c; k++) {
                double v = 256 * rnd();
                if (smooth)
                    v = 128 + 100 * sin(fx * x + 1.7 * k) * cos(fy * y - k) +
                        16 * rnd();
                im->px[((size_t)y * w + x) * c + k] =
                    (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

/* The batch's pixel buffer as the trainer fills it: other bytes before
 * the image, and (unless at_end) after it, so a read outside the image
 * changes the result; at_end puts the image last, so ASan sees a read
 * past it. */
static uint8_t *pixel_buffer(const pe_image *im, int at_end, uint64_t *offset,
                             size_t *bytes) {
    const size_t n = pe_image_size(im);
    const size_t before = rnd_int(0, 64), after = at_end ? 0 : rnd_int(1, 64);
    uint8_t *buf = malloc(before + n + after);
    if (!buf) abort();
    for (size_t i = 0; i < before + n + after; i++)
        buf[i] = (uint8_t)rnd_int(0, 255);
    memcpy(buf + before, im->px, n);
    *offset = before;
    *bytes = before + n + after;
    return buf;
}

static void count(const pe_aug_params *p, const pe_image *im, uint32_t size,
                  uint32_t out_c) {
    seen.views++;
    seen.rgb += im->c == 3;
    seen.gray_src += im->c == 1;
    seen.l_to_rgb += im->c == 1 && out_c == 3;
    seen.flips += p->flip;
    seen.grays += p->gray;
    if (p->jitter) {
        seen.jitters++;
        for (int k = 0; k < 4; k++) seen.ops[k] += p->enabled[k];
    }
    const int ih = p->box.w == size, iv = p->box.h == size;
    seen.identity_h += ih && !iv;
    seen.identity_v += iv && !ih;
    seen.both_identity += ih && iv;
    seen.both_resampled += !ih && !iv;
    seen.one_pixel += p->box.w == 1 && p->box.h == 1;
    seen.whole += p->box.w == im->w && p->box.h == im->h;
    seen.big_taps += p->box.w >= 20 * size || p->box.h >= 20 * size;
}

/* Renders p on im both ways and compares the floats; want is the CPU's
 * (pe_aug_apply's, or NULL to compute it here). Returns 1 when equal. */
static int same_view(const char *what, const pe_image *im,
                     const pe_aug_opts *o, const pe_aug_params *p,
                     const float *want_in) {
    const uint32_t out_c = o->channels ? o->channels : im->c;
    const size_t n = (size_t)out_c * o->size * o->size;
    float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    if (!want || !got) abort();
    if (want_in)
        memcpy(want, want_in, n * sizeof *want);
    else
        CHECK_OK(pe_aug_apply(im, o, p, want, NULL));

    uint64_t offset;
    size_t bytes;
    uint8_t *px = pixel_buffer(im, rnd() < 0.5, &offset, &bytes);
    pe_aug_job j;
    pe_aug_job_of(p, im->w, im->h, im->c, offset, &j);
    CHECK(pe_aug_job_check(&j, bytes) == 0);
    CHECK(pe_aug_channels_ok(j.c, out_c));
    uint8_t *work = malloc(pe_augview_work_bytes(&j, o->size));
    if (!work) abort();
    memset(got, 0xA5, n * sizeof *got); /* every float must be written */
    pe_augview_render_host(&j, px, o->size, out_c, o->mean, o->std, got, work);
    const int ok = memcmp(want, got, n * sizeof *got) == 0;
    CHECK(ok);
    if (!ok) {
        size_t i = 0;
        while (i < n && memcmp(&want[i], &got[i], sizeof *got) == 0) i++;
        fprintf(stderr,
                "    %s: %ux%ux%u box (i %u j %u h %u w %u) size %u out_c %u "
                "flip %d jitter %d order %d%d%d%d enabled %d%d%d%d gray %d: "
                "first difference at float %zu: %.9g, want %.9g\n",
                what, im->w, im->h, im->c, p->box.i, p->box.j, p->box.h,
                p->box.w, o->size, out_c, p->flip, p->jitter, p->order[0],
                p->order[1], p->order[2], p->order[3], p->enabled[0],
                p->enabled[1], p->enabled[2], p->enabled[3], p->gray, i,
                (double)got[i], (double)want[i]);
    }
    count(p, im, o->size, out_c);
    free(work);
    free(px);
    free(want);
    free(got);
    return ok;
}

static const uint32_t sizes[] = {28, 32, 17};

/* Options with random strengths and probabilities (some ops off). */
static void random_opts(pe_aug_opts *o, uint32_t c) {
    pe_aug_opts_default(o);
    o->size = sizes[rnd_int(0, 2)];
    o->channels = c == 1 && rnd() < 0.5 ? 3 : 0;
    const double lo = rnd() < 0.3 ? 0.0005 : rnd() < 0.5 ? 0.08 : 0.5;
    o->scale[0] = lo;
    o->scale[1] = rnd() < 0.2 ? lo : 1.0;
    if (rnd() < 0.3) {
        o->ratio[0] = 0.25;
        o->ratio[1] = 4.0;
    }
    o->p_jitter = rnd() < 0.2 ? 0.0 : rnd() < 0.5 ? 1.0 : 0.8;
    o->brightness = rnd() < 0.25 ? 0.0 : 0.9 * rnd();
    o->contrast = rnd() < 0.25 ? 0.0 : 0.9 * rnd();
    o->saturation = rnd() < 0.25 ? 0.0 : 2.0 * rnd();
    o->hue = rnd() < 0.25 ? 0.0 : 0.5 * rnd();
    o->p_gray = rnd() < 0.3 ? 0.0 : rnd() < 0.5 ? 1.0 : 0.2;
    o->crop_mode = rnd() < 0.3 ? PE_CROP_LOCAL : PE_CROP_INDEPENDENT;
    for (int k = 0; k < 3; k++) {
        o->mean[k] = (float)rnd();
        o->std[k] = (float)(0.05 + rnd());
    }
}

/* A source size: tiny, small, up to a few hundred, or a 2:1 composite. */
static void random_dims(uint32_t *w, uint32_t *h) {
    const double u = rnd();
    if (u < 0.15) {
        *w = rnd_int(1, 8);
        *h = rnd_int(1, 8);
    } else if (u < 0.55) {
        *w = rnd_int(8, 64);
        *h = rnd_int(8, 64);
    } else if (u < 0.8) {
        *w = rnd_int(64, 320);
        *h = rnd_int(64, 320);
    } else { /* a composite of two images side by side */
        *h = rnd_int(4, 160);
        *w = 2 * *h;
    }
}

/* Views drawn as the trainer draws them: pe_aug_draw_view, pe_aug_job_of,
 * compared with pe_augment_view (which draws the same parameters), the
 * CPU's resampling with and without AVX2. */
static void test_drawn_views(void) {
    int bad = 0;
    for (int t = 0; t < 400 && bad < 5; t++) {
        const uint32_t c = rnd() < 0.5 ? 3 : 1;
        uint32_t w, h;
        random_dims(&w, &h);
        pe_image im = {0};
        make_image(&im, w, h, c);
        pe_aug_opts o;
        random_opts(&o, c);
        setenv("PE_NO_SIMD", rnd() < 0.5 ? "1" : "0", 1);
        for (uint32_t view = 0; view < 2; view++) {
            const uint64_t seed = 77, epoch = (uint64_t)t % 5, index = t;
            pe_aug_params p;
            CHECK_OK(pe_aug_draw_view(seed, epoch, index, view, w, h, &o, &p,
                                      NULL));
            const uint32_t out_c = o.channels ? o.channels : c;
            float *want = malloc(sizeof(float) * out_c * o.size * o.size);
            if (!want) abort();
            CHECK_OK(pe_augment_view(&im, &o, seed, epoch, index, view, want,
                                     NULL));
            char what[64];
            snprintf(what, sizeof what, "drawn case %d view %u", t, view);
            bad += !same_view(what, &im, &o, &p, want);
            seen.local += o.crop_mode == PE_CROP_LOCAL;
            free(want);
        }
        pe_image_free(&im);
    }
    unsetenv("PE_NO_SIMD");
}

/* A random permutation of the four ops (any order the draw can give). */
static void random_order(uint8_t order[4]) {
    for (int k = 0; k < 4; k++) order[k] = (uint8_t)k;
    for (int i = 3; i >= 1; i--) {
        const int k = (int)rnd_int(0, (uint32_t)i);
        const uint8_t tmp = order[i];
        order[i] = order[k];
        order[k] = tmp;
    }
}

/* A factor: usually in the drawn range, sometimes extreme (clipping). */
static float random_factor(int op) {
    if (op == PE_JITTER_HUE)
        return rnd() < 0.1 ? (rnd() < 0.5 ? -0.5f : 0.5f)
                           : (float)(rnd() - 0.5);
    const double u = rnd();
    if (u < 0.05) return 0.0f;
    if (u < 0.1) return 1.0f;
    if (u < 0.2) return (float)(3 + 10 * rnd());
    return (float)(2 * rnd());
}

/* A crop box in a w x h image that hits the special cases: 1 pixel, the
 * whole image, one or both sides equal to the output size. */
static pe_box random_box(uint32_t w, uint32_t h, uint32_t size) {
    pe_box b;
    const double u = rnd();
    if (u < 0.1) {
        b.w = b.h = 1;
    } else if (u < 0.25) {
        b.w = w;
        b.h = h;
    } else {
        b.w = rnd_int(1, w);
        b.h = rnd_int(1, h);
        if (rnd() < 0.3 && w >= size) b.w = size;
        if (rnd() < 0.3 && h >= size) b.h = size;
    }
    b.j = rnd_int(0, w - b.w);
    b.i = rnd_int(0, h - b.h);
    return b;
}

/* Parameters set by hand, compared with pe_aug_apply. */
static void test_forced_params(void) {
    int bad = 0;
    for (int t = 0; t < 600 && bad < 5; t++) {
        const uint32_t c = rnd() < 0.5 ? 3 : 1;
        pe_aug_opts o;
        random_opts(&o, c);
        uint32_t w, h;
        random_dims(&w, &h);
        if (rnd() < 0.25) { /* room for crops of exactly the output size */
            w = o.size + rnd_int(0, 40);
            h = o.size + rnd_int(0, 40);
        }
        pe_image im = {0};
        make_image(&im, w, h, c);
        pe_aug_params p;
        memset(&p, 0, sizeof p);
        p.box = random_box(w, h, o.size);
        p.flip = rnd() < 0.5;
        p.jitter = rnd() < 0.8;
        random_order(p.order);
        for (int k = 0; k < 4; k++) {
            p.enabled[k] = rnd() < 0.7;
            p.factor[k] = p.enabled[k] ? random_factor(k) : 0.0f;
        }
        p.gray = rnd() < 0.3;
        setenv("PE_NO_SIMD", rnd() < 0.5 ? "1" : "0", 1);
        char what[64];
        snprintf(what, sizeof what, "forced case %d", t);
        bad += !same_view(what, &im, &o, &p, NULL);
        pe_image_free(&im);
    }
    unsetenv("PE_NO_SIMD");
}

/* Large sources cropped whole or nearly: downscales of 20x to 60x, so
 * 40 to 120 taps per output sample, and long thin images. */
static void test_large_sources(void) {
    static const uint32_t dims[][3] = {
        {1500, 700, 3}, {1024, 1024, 1}, {1800, 40, 3}, {30, 1200, 1},
        {900, 450, 3}, {640, 480, 1},
    };
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        pe_image im = {0};
        make_image(&im, dims[d][0], dims[d][1], dims[d][2]);
        for (int t = 0; t < 3; t++) {
            pe_aug_opts o;
            random_opts(&o, im.c);
            pe_aug_params p;
            memset(&p, 0, sizeof p);
            p.box.w = t == 0 ? im.w : rnd_int(im.w / 2, im.w);
            p.box.h = t == 0 ? im.h : rnd_int(im.h / 2, im.h);
            p.box.j = rnd_int(0, im.w - p.box.w);
            p.box.i = rnd_int(0, im.h - p.box.h);
            p.flip = (uint8_t)(t & 1);
            p.jitter = 1;
            random_order(p.order);
            for (int k = 0; k < 4; k++) {
                p.enabled[k] = 1;
                p.factor[k] = random_factor(k);
            }
            p.gray = t == 2;
            char what[64];
            snprintf(what, sizeof what, "large source %zu case %d", d, t);
            same_view(what, &im, &o, &p, NULL);
        }
        pe_image_free(&im);
    }
}

/* Every kind of view was reached. */
static void test_coverage(void) {
    fprintf(stderr,
            "    %ld views: %ld RGB, %ld L (%ld to 3 channels), %ld flipped, "
            "%ld jittered (ops %ld %ld %ld %ld), %ld grey; axes: %ld "
            "identity-h, %ld identity-v, %ld both identity, %ld both "
            "resampled; %ld 1-pixel crops, %ld whole, %ld with 20x+ "
            "downscales, %ld local\n",
            seen.views, seen.rgb, seen.gray_src, seen.l_to_rgb, seen.flips,
            seen.jitters, seen.ops[0], seen.ops[1], seen.ops[2], seen.ops[3],
            seen.grays, seen.identity_h, seen.identity_v, seen.both_identity,
            seen.both_resampled, seen.one_pixel, seen.whole, seen.big_taps,
            seen.local);
    CHECK(seen.rgb > 50 && seen.gray_src > 50 && seen.l_to_rgb > 20);
    CHECK(seen.flips > 50 && seen.jitters > 50 && seen.grays > 50);
    for (int k = 0; k < 4; k++) CHECK(seen.ops[k] > 50);
    CHECK(seen.identity_h > 5 && seen.identity_v > 5 && seen.both_identity > 5);
    CHECK(seen.both_resampled > 50 && seen.one_pixel > 5 && seen.whole > 5);
    CHECK(seen.big_taps > 5 && seen.local > 20);
}

/* pe_aug_job_of copies every field. */
static void test_job_of(void) {
    pe_aug_params p;
    memset(&p, 0, sizeof p);
    p.box = (pe_box){3, 4, 5, 6};
    p.flip = 1;
    p.jitter = 1;
    p.gray = 1;
    const uint8_t order[4] = {2, 0, 3, 1};
    memcpy(p.order, order, 4);
    p.enabled[1] = p.enabled[3] = 1;
    p.factor[1] = 1.25f;
    p.factor[3] = -0.125f;
    pe_aug_job j;
    pe_aug_job_of(&p, 10, 20, 3, 12345, &j);
    CHECK(j.offset == 12345 && j.w == 10 && j.h == 20 && j.c == 3);
    CHECK(j.box_i == 3 && j.box_j == 4 && j.box_h == 5 && j.box_w == 6);
    CHECK(j.flip == 1 && j.jitter == 1 && j.gray == 1);
    CHECK(memcmp(j.order, order, 4) == 0);
    CHECK(!j.enabled[0] && j.enabled[1] && !j.enabled[2] && j.enabled[3]);
    CHECK(j.factor[1] == 1.25f && j.factor[3] == -0.125f);
}

/* Jobs that would read outside the pixels or index outside the op tables
 * are refused; the untouched job passes. */
static void test_hostile_jobs(void) {
    pe_aug_job ok;
    memset(&ok, 0, sizeof ok);
    ok.offset = 100;
    ok.w = 40;
    ok.h = 30;
    ok.c = 3;
    ok.box_i = 5;
    ok.box_j = 6;
    ok.box_h = 20;
    ok.box_w = 30;
    ok.jitter = 1;
    for (int k = 0; k < 4; k++) {
        ok.order[k] = (uint8_t)k;
        ok.enabled[k] = 1;
        ok.factor[k] = k == PE_JITTER_HUE ? 0.25f : 1.5f;
    }
    const size_t px = 100 + 40 * 30 * 3;
    CHECK(pe_aug_job_check(&ok, px) == 0);
    CHECK(pe_aug_job_check(&ok, px - 1) != 0); /* one byte short */

    pe_aug_job j;
#define BAD(field, value)                                                     \
    do {                                                                      \
        j = ok;                                                               \
        j.field = value;                                                      \
        CHECK(pe_aug_job_check(&j, px) != 0);                                 \
    } while (0)
    BAD(c, 0);
    BAD(c, 2);
    BAD(c, 4);
    BAD(w, 0);
    BAD(h, 0);
    BAD(w, PE_AV_MAX_DIM + 1);
    BAD(box_w, 0);
    BAD(box_h, 0);
    BAD(box_w, 35);             /* 6 + 35 > 40 */
    BAD(box_h, 26);             /* 5 + 26 > 30 */
    BAD(box_j, 41);
    BAD(box_i, 31);
    BAD(box_j, UINT32_MAX);     /* j + w wraps around */
    BAD(box_i, UINT32_MAX - 5);
    BAD(box_w, UINT32_MAX);
    BAD(offset, 101);           /* the image runs one byte past the end */
    BAD(offset, UINT64_MAX);
    BAD(offset, UINT64_MAX - 100); /* offset + bytes wraps around */
    BAD(order[2], 4);
    BAD(order[0], 255);
    BAD(factor[PE_JITTER_HUE], 0.5001f);
    BAD(factor[PE_JITTER_HUE], -0.75f);
    BAD(factor[PE_JITTER_BRIGHTNESS], NAN);
    BAD(factor[PE_JITTER_CONTRAST], INFINITY);
    BAD(factor[PE_JITTER_SATURATION], -INFINITY);
    BAD(factor[PE_JITTER_HUE], NAN);
#undef BAD
    /* w and h huge but each within 2^24: the byte count must not wrap. */
    j = ok;
    j.w = j.h = PE_AV_MAX_DIM;
    j.offset = 0;
    CHECK(pe_aug_job_check(&j, SIZE_MAX) == 0);
    CHECK(pe_aug_job_check(&j, (size_t)1 << 48) != 0);

    /* What is not applied is not checked, as pe_aug_apply ignores it. */
    j = ok;
    j.enabled[PE_JITTER_HUE] = 0;
    j.factor[PE_JITTER_HUE] = NAN;
    CHECK(pe_aug_job_check(&j, px) == 0);
    j = ok;
    j.jitter = 0;
    j.order[1] = 9;
    j.factor[0] = INFINITY;
    CHECK(pe_aug_job_check(&j, px) == 0);
    j = ok;
    j.box_i = 10;
    j.box_h = 20; /* ends exactly at the last row */
    CHECK(pe_aug_job_check(&j, px) == 0);

    /* Channel counts of the output. */
    CHECK(pe_aug_channels_ok(1, 1) && pe_aug_channels_ok(3, 3) &&
          pe_aug_channels_ok(1, 3));
    CHECK(!pe_aug_channels_ok(3, 1) && !pe_aug_channels_ok(1, 2) &&
          !pe_aug_channels_ok(2, 2) && !pe_aug_channels_ok(3, 0));
}

/* The coefficient helpers give resample.c's tables (which test_resample.c
 * checks against Pillow): weights of every span sum to about 1 in fixed
 * point, spans lie inside the input, and the identity axis is a copy. */
static void test_spans(void) {
    int ok = 1;
    for (int t = 0; t < 2000; t++) {
        const uint32_t in = rnd_int(1, 3000), out = rnd_int(1, 64);
        const pe_av_axis a = pe_av_axis_of(1.0, in, 0.0f, (float)in, out);
        for (uint32_t o = 0; o < out; o++) {
            const pe_av_span s = pe_av_span_of(&a, o);
            const double ww = pe_av_bilinear_norm(&a, &s);
            int64_t sum = 0;
            for (int64_t k = 0; k < s.count; k++)
                sum += pe_av_fixed(pe_av_triangle(pe_av_tap_arg(&a, &s, k)),
                                   ww);
            ok &= s.count >= 1 && s.first >= 0 && s.first + s.count <= in;
            ok &= llabs(sum - (1 << PE_AV_PRECISION_BITS)) <= s.count;
        }
    }
    CHECK(ok);
    /* An identity axis, if resampled, would copy: one weight of 1. */
    const pe_av_axis id = pe_av_axis_of(1.0, 32, 0.0f, 32.0f, 32);
    CHECK(!pe_av_axis_needed(32, 0.0f, 32.0f, 32));
    CHECK(pe_av_axis_needed(32, 0.0f, 32.0f, 31));
    for (uint32_t o = 0; o < 32; o++) {
        const pe_av_span s = pe_av_span_of(&id, o);
        CHECK(s.first == o);
        CHECK(pe_av_fixed(pe_av_triangle(pe_av_tap_arg(&id, &s, 0)),
                          pe_av_bilinear_norm(&id, &s)) ==
              1 << PE_AV_PRECISION_BITS);
    }
}

int main(void) {
    RUN(test_job_of);
    RUN(test_hostile_jobs);
    RUN(test_spans);
    RUN(test_drawn_views);
    RUN(test_forced_params);
    RUN(test_large_sources);
    RUN(test_coverage);
    return CHECK_DONE();
}
