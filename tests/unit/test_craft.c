/*
 * test_craft.c - pe-craft's composites: sizes for every layout and fit
 * rule, gaps and fill, both channel counts, offsets, where each part's
 * pixels land (checked against the resizer called directly), the draws'
 * reproducibility, and pe_craft_run on a store: counts, provenance,
 * --distinct, and errors that store nothing. The adaptive options: the
 * perturbations' draws (reproducible, in range, independent of each other
 * and of the composite's draws) and pixels (each kind against the resizer
 * and codec called directly, in the documented order), --size, the option
 * parsers, and the provenance record written, read back, and read in its
 * older form.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "codec.h"
#include "craft.h"
#include "pe.h"
#include "rng.h"
#include "testfs.h"

static void fill_pattern(pe_image *im, uint32_t w, uint32_t h, uint32_t c, unsigned seed) {
    pe_image_alloc(im, w, h, c);
    for (size_t i = 0; i < pe_image_size(im); i++) im->px[i] = (uint8_t)(i * 31 + seed * 17 + (i >> 5));
}

/* The w x h block of big at (x, y) equals small. */
static int block_eq(const pe_image *big, uint32_t x, uint32_t y, const pe_image *small) {
    if (big->c != small->c || x + small->w > big->w || y + small->h > big->h) return 0;
    size_t c = big->c;
    for (uint32_t r = 0; r < small->h; r++)
        if (memcmp(big->px + ((size_t)(y + r) * big->w + x) * c,
                   small->px + (size_t)r * small->w * c, small->w * c))
            return 0;
    return 1;
}

static pe_craft_draw draw(int layout, int first) {
    pe_craft_draw d = {.layout = layout, .target_first = first, .ref = 0, .scale = 1.0};
    return d;
}

static void test_sizes(void) {
    pe_craft_opts o;
    pe_craft_opts_default(&o);
    uint32_t w, h;
    pe_craft_draw d = draw(PE_LAYOUT_LR, 1);
    /* target 28x28, reference 20x40: the reference takes height 28 -> 14x28 */
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 42 && h == 28);
    d.layout = PE_LAYOUT_TB; /* width 28 -> 28x56 */
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 28 && h == 84);
    o.gap = 3;
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 28 && h == 87);
    o.gap = 0;
    o.fit = PE_FIT_TARGET; /* TB: target takes width 20 -> 20x20; ref 20x40 */
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 20 && h == 60);
    o.fit = PE_FIT_SMALLER; /* LR: edge max(28, 40) = 40: target 40x40 + ref 20x40 */
    d.layout = PE_LAYOUT_LR;
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 60 && h == 40);
    o.fit = PE_FIT_LARGER; /* LR: edge 28: target 28x28 + ref 14x28 */
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 42 && h == 28);
    /* 2:1 stays 2:1 for equal squares: the geometry */
    o.fit = PE_FIT_REFERENCE;
    CHECK_OK(pe_compose_size(32, 32, 32, 32, &o, &d, &w, &h));
    CHECK(w == 64 && h == 32);
    /* scale jitter: target 0.5 -> 14x14, reference follows the edge */
    d.scale = 0.5;
    CHECK_OK(pe_compose_size(28, 28, 28, 28, &o, &d, &w, &h));
    CHECK(w == 28 && h == 14);
    /* too large */
    d.scale = 1;
    CHECK_RC(pe_compose_size(60000, 60000, 60000, 60000, &o, &d, &w, &h), PE_EUNSUPPORTED);
}

static void test_pixels(void) {
    for (uint32_t c = 1; c <= 3; c += 2) {
        pe_craft_opts o;
        pe_craft_opts_default(&o);
        o.gap = 2;
        o.fill[0] = 7, o.fill[1] = 8, o.fill[2] = 9;
        pe_image t = {0}, r = {0}, out = {0}, rr = {0};
        fill_pattern(&t, 12, 10, c, 1);
        fill_pattern(&r, 9, 15, c, 2);
        /* LR, reference first: reference resized to height 10 (6x10) */
        pe_craft_draw d = draw(PE_LAYOUT_LR, 0);
        CHECK_OK(pe_compose(&t, &r, &o, &d, &out));
        CHECK(out.w == 6 + 2 + 12 && out.h == 10 && out.c == c);
        CHECK_OK(pe_image_resize_bilinear(&r, &rr, 6, 10));
        CHECK(block_eq(&out, 0, 0, &rr));
        CHECK(block_eq(&out, 8, 0, &t)); /* the target's own pixels, exact */
        int gap_ok = 1;
        for (uint32_t y = 0; y < 10; y++)
            for (uint32_t x = 6; x < 8; x++)
                for (uint32_t k = 0; k < c; k++)
                    gap_ok &= out.px[((size_t)y * out.w + x) * c + k] == (c == 1 ? 7 : 7 + k);
        CHECK(gap_ok);
        pe_image_free(&out);
        pe_image_free(&rr);
        /* TB, target first, with an offset window: reference resized to
         * width 12 + 4 = 16 (16x27 after rounding 15*16/9 = 26.67), then the
         * 12-wide window from column 3 */
        d = draw(PE_LAYOUT_TB, 1);
        d.off = 4;
        d.shift = 3;
        o.gap = 0;
        CHECK_OK(pe_compose(&t, &r, &o, &d, &out));
        CHECK(out.w == 12 && out.h == 10 + 27);
        CHECK_OK(pe_image_resize_bilinear(&r, &rr, 16, 27));
        CHECK(block_eq(&out, 0, 0, &t));
        pe_image win = {0};
        pe_image_alloc(&win, 12, 27, c);
        for (uint32_t y = 0; y < 27; y++)
            memcpy(win.px + (size_t)y * 12 * c, rr.px + ((size_t)y * 16 + 3) * c, 12 * c);
        CHECK(block_eq(&out, 0, 10, &win));
        pe_image_free(&win);
        pe_image_free(&out);
        pe_image_free(&rr);
        pe_image_free(&t);
        pe_image_free(&r);
    }
    /* channel mismatch */
    pe_craft_opts o;
    pe_craft_opts_default(&o);
    pe_image g = {0}, rgb = {0}, out = {0};
    fill_pattern(&g, 4, 4, 1, 1);
    fill_pattern(&rgb, 4, 4, 3, 1);
    pe_craft_draw d = draw(PE_LAYOUT_LR, 1);
    CHECK_RC(pe_compose(&g, &rgb, &o, &d, &out), PE_EUSAGE);
    CHECK(out.px == NULL);
    pe_image_free(&g);
    pe_image_free(&rgb);
}

static int draw_eq(const pe_craft_draw *a, const pe_craft_draw *b) {
    return a->layout == b->layout && a->target_first == b->target_first && a->ref == b->ref &&
           a->scale == b->scale && a->off == b->off && a->shift == b->shift;
}

static int perturb_draw_eq(const pe_craft_draw *a, const pe_craft_draw *b) {
    return !memcmp(a->crop, b->crop, sizeof a->crop) && a->resample == b->resample &&
           !memcmp(a->color, b->color, sizeof a->color);
}

static int made_eq(const pe_craft_made *a, const pe_craft_made *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(a[i].key.b, b[i].key.b, PE_KEY_LEN) || a[i].target != b[i].target ||
            a[i].ref != b[i].ref || a[i].layout != b[i].layout ||
            a[i].target_first != b[i].target_first)
            return 0;
    return 1;
}

static void test_draws(void) {
    pe_craft_opts o;
    pe_craft_opts_default(&o);
    o.seed = 42;
    pe_craft_draw a, b;
    int lr = 0, first = 0, refs[5] = {0}, differ = 0;
    for (uint32_t j = 0; j < 400; j++) {
        pe_craft_draw_params(&o, 3, j, 0, 5, &a);
        pe_craft_draw_params(&o, 3, j, 0, 5, &b);
        CHECK(draw_eq(&a, &b));
        lr += a.layout == PE_LAYOUT_LR;
        first += a.target_first;
        refs[a.ref]++;
        CHECK(a.scale == 1.0 && a.off == 0);
        pe_craft_draw_params(&o, 4, j, 0, 5, &b); /* another target: another stream */
        differ += !draw_eq(&a, &b);
    }
    CHECK(lr > 150 && lr < 250 && first > 150 && first < 250);
    for (int k = 0; k < 5; k++) CHECK(refs[k] > 50);
    CHECK(differ > 200);
    o.draw = PE_DRAW_ROUND_ROBIN;
    o.layouts = PE_LAYOUT_TB;
    for (uint32_t j = 0; j < 12; j++) {
        pe_craft_draw_params(&o, 0, j, 0, 5, &a);
        CHECK(a.ref == j % 5 && a.layout == PE_LAYOUT_TB);
    }
    /* retries draw a scale and an offset */
    pe_craft_draw_params(&o, 0, 0, 1, 5, &a);
    CHECK(a.scale >= 0.75 && a.scale <= 1.25 && a.off <= 4 && a.shift <= a.off);
    o.jitter = 0.1;
    for (uint32_t j = 0; j < 50; j++) {
        pe_craft_draw_params(&o, 0, j, 0, 5, &a);
        CHECK(a.scale >= 0.9 && a.scale <= 1.1);
    }
    unsigned m;
    CHECK_OK(pe_layouts_parse("tb,lr", &m));
    CHECK(m == (PE_LAYOUT_LR | PE_LAYOUT_TB));
    CHECK_RC(pe_layouts_parse("lr,xx", &m), PE_EUSAGE);
    CHECK_RC(pe_layouts_parse("", &m), PE_EUSAGE);
}

static void test_perturb_draws(void) {
    pe_craft_opts o, plain;
    pe_craft_opts_default(&o);
    o.seed = 11;
    o.jitter = 0.1;
    o.offset = 3;
    plain = o;
    o.perturb = (pe_perturb){.crop = 3, .resample = 0.2, .color = 10, .jpeg = 70};
    pe_craft_draw a, b, c;
    int crop_seen[4] = {0}, col_lo = 0, col_hi = 0, res_lo = 0, res_hi = 0, differ = 0;
    for (uint32_t j = 0; j < 400; j++) {
        pe_craft_draw_params(&o, 2, j, 0, 5, &a);
        pe_craft_draw_params(&o, 2, j, 0, 5, &b);
        CHECK(draw_eq(&a, &b) && perturb_draw_eq(&a, &b)); /* reproducible */
        for (int k = 0; k < 4; k++) {
            CHECK(a.crop[k] <= 3);
            crop_seen[a.crop[k]]++;
        }
        CHECK(a.resample >= 0.8 && a.resample <= 1.2);
        res_lo += a.resample < 0.9;
        res_hi += a.resample > 1.1;
        for (int k = 0; k < 3; k++) {
            CHECK(a.color[k] >= -10 && a.color[k] <= 10);
            col_lo += a.color[k] == -10;
            col_hi += a.color[k] == 10;
        }
        /* the composite's own draws do not move when perturbations are on */
        pe_craft_draw_params(&plain, 2, j, 0, 5, &c);
        CHECK(draw_eq(&a, &c));
        CHECK(c.crop[0] == 0 && c.crop[3] == 0 && c.resample == 1.0 && c.color[0] == 0 &&
              c.color[2] == 0);
        /* nor one kind's draws when another is off, or with --size */
        pe_craft_opts only = plain;
        only.perturb.color = 10;
        only.size = PE_CRAFT_SIZE_FIXED, only.size_w = only.size_h = 28;
        pe_craft_draw_params(&only, 2, j, 0, 5, &c);
        CHECK(!memcmp(c.color, a.color, sizeof a.color) && c.crop[1] == 0 && c.resample == 1.0);
        only = plain;
        only.perturb.crop = 3;
        pe_craft_draw_params(&only, 2, j, 0, 5, &c);
        CHECK(!memcmp(c.crop, a.crop, sizeof a.crop) && c.color[0] == 0);
        only = plain;
        only.perturb.resample = 0.2;
        pe_craft_draw_params(&only, 2, j, 0, 5, &c);
        CHECK(c.resample == a.resample);
        /* another seed, another target, a retry: other draws */
        only = o;
        only.seed = 12;
        pe_craft_draw_params(&only, 2, j, 0, 5, &c);
        differ += !perturb_draw_eq(&a, &c);
        pe_craft_draw_params(&o, 3, j, 0, 5, &c);
        differ += !perturb_draw_eq(&a, &c);
        pe_craft_draw_params(&o, 2, j, 1, 5, &c);
        differ += !perturb_draw_eq(&a, &c);
    }
    /* the streams craft.h documents: key (seed, t) under the craft tag,
     * counters (j, attempt, PE_CRAFT_STREAM_*), one kind each */
    uint32_t key[2];
    pe_rng_epoch_key(o.seed, 2, PE_RNG_TAG_CRAFT, key);
    int streams_ok = 1;
    for (uint32_t j = 0; j < 50; j++)
        for (uint32_t at = 0; at < 2; at++) {
            pe_craft_draw_params(&o, 2, j, at, 5, &a);
            pe_rng r = pe_rng_init(key, j, at, PE_CRAFT_STREAM_CROP);
            for (int k = 0; k < 4; k++) streams_ok &= a.crop[k] == (uint32_t)pe_rng_int(&r, 0, 3);
            r = pe_rng_init(key, j, at, PE_CRAFT_STREAM_RESAMPLE);
            streams_ok &= a.resample == 1.0 - 0.2 + 2.0 * 0.2 * pe_rng_double(&r);
            r = pe_rng_init(key, j, at, PE_CRAFT_STREAM_COLOR);
            for (int k = 0; k < 3; k++) streams_ok &= a.color[k] == pe_rng_int(&r, -10, 10);
        }
    CHECK(streams_ok);
    for (int k = 0; k < 4; k++) CHECK(crop_seen[k] > 250); /* 1600 draws of 4 values */
    CHECK(res_lo > 60 && res_hi > 60 && col_lo > 20 && col_hi > 20); /* ~100, ~57 expected */
    CHECK(differ == 1200);
}

/* A smooth w x h x c image (JPEG keeps it close). */
static void fill_smooth(pe_image *im, uint32_t w, uint32_t h, uint32_t c) {
    pe_image_alloc(im, w, h, c);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (uint32_t k = 0; k < c; k++)
                im->px[((size_t)y * w + x) * c + k] = (uint8_t)(40 + 4 * x + 3 * y + 20 * k);
}

static int img_eq(const pe_image *a, const pe_image *b) {
    return a->w == b->w && a->h == b->h && a->c == b->c &&
           !memcmp(a->px, b->px, pe_image_size(a));
}

static double mean_abs_diff(const pe_image *a, const pe_image *b) {
    double s = 0;
    size_t n = pe_image_size(a);
    for (size_t i = 0; i < n; i++) s += abs((int)a->px[i] - (int)b->px[i]);
    return s / (double)n;
}

/* src cropped by e[] (left, top, right, bottom) into *dst. */
static void crop_by_hand(const pe_image *src, const uint32_t e[4], pe_image *dst) {
    uint32_t w = src->w - e[0] - e[2], h = src->h - e[1] - e[3], c = src->c;
    pe_image_alloc(dst, w, h, c);
    for (uint32_t y = 0; y < h; y++)
        memcpy(dst->px + (size_t)y * w * c, src->px + ((size_t)(y + e[1]) * src->w + e[0]) * c,
               (size_t)w * c);
}

static void test_perturb_pixels(void) {
    for (uint32_t c = 1; c <= 3; c += 2) {
        pe_craft_opts o;
        pe_craft_opts_default(&o);
        pe_image t = {0}, out = {0}, want = {0}, tmp = {0};
        fill_smooth(&t, 20, 16, c);
        pe_craft_draw d = draw(PE_LAYOUT_LR, 1);
        /* nothing on: a plain copy */
        CHECK_OK(pe_craft_perturb(&t, &o, &d, &out));
        CHECK(img_eq(&out, &t));
        pe_image_free(&out);
        /* crop: the block, resized back */
        o.perturb.crop = 3;
        uint32_t e[4] = {1, 2, 3, 0};
        memcpy(d.crop, e, sizeof e);
        CHECK_OK(pe_craft_perturb(&t, &o, &d, &out));
        crop_by_hand(&t, e, &tmp);
        CHECK_OK(pe_image_resize_bilinear(&tmp, &want, 20, 16));
        CHECK(img_eq(&out, &want) && !img_eq(&out, &t));
        pe_image_free(&out);
        pe_image_free(&tmp);
        pe_image_free(&want);
        /* a crop that leaves nothing */
        d.crop[0] = 10, d.crop[2] = 10;
        CHECK_RC(pe_craft_perturb(&t, &o, &d, &out), PE_EUSAGE);
        CHECK(out.px == NULL);
        memset(d.crop, 0, sizeof d.crop);
        o.perturb.crop = 0;
        /* resample: to round(w f) x round(h f) and back; a factor that
         * rounds to the same size changes nothing */
        o.perturb.resample = 0.5;
        d.resample = 0.5;
        CHECK_OK(pe_craft_perturb(&t, &o, &d, &out));
        CHECK_OK(pe_image_resize_bilinear(&t, &tmp, 10, 8));
        CHECK_OK(pe_image_resize_bilinear(&tmp, &want, 20, 16));
        CHECK(img_eq(&out, &want));
        pe_image_free(&out);
        pe_image_free(&tmp);
        pe_image_free(&want);
        d.resample = 1.02; /* 20.4 x 16.32 -> 20 x 16 */
        CHECK_OK(pe_craft_perturb(&t, &o, &d, &out));
        CHECK(img_eq(&out, &t));
        pe_image_free(&out);
        o.perturb.resample = 0;
        /* color: per channel (gray takes color[0]), clamped */
        o.perturb.color = 255;
        d.color[0] = 200, d.color[1] = -50, d.color[2] = 7;
        CHECK_OK(pe_craft_perturb(&t, &o, &d, &out));
        int col_ok = 1;
        for (size_t i = 0; i < pe_image_size(&t); i++) {
            int v = t.px[i] + d.color[c == 1 ? 0 : i % 3];
            col_ok &= out.px[i] == (v > 255 ? 255 : v < 0 ? 0 : v);
        }
        CHECK(col_ok);
        pe_image_free(&out);
        o.perturb.color = 0;
        memset(d.color, 0, sizeof d.color);
        /* jpeg: other pixels, close ones, the same shape, reproducible */
        o.perturb.jpeg = 75;
        CHECK_OK(pe_craft_perturb(&t, &o, &d, &out));
        CHECK(out.w == 20 && out.h == 16 && out.c == c);
        CHECK(!img_eq(&out, &t));
        double mad = mean_abs_diff(&out, &t);
        CHECK(mad > 0 && mad < 3.0); /* a gradient at quality 75: ~1 level */
        CHECK_OK(pe_craft_perturb(&t, &o, &d, &want));
        CHECK(img_eq(&out, &want));
        pe_image_free(&out);
        pe_image_free(&want);
        /* everything, in the documented order: crop, resample, color, jpeg */
        o.perturb = (pe_perturb){.crop = 2, .resample = 0.3, .color = 9, .jpeg = 90};
        uint32_t e2[4] = {2, 0, 1, 2};
        memcpy(d.crop, e2, sizeof e2);
        d.resample = 0.75; /* 15 x 12 */
        d.color[0] = -9, d.color[1] = 4, d.color[2] = 9;
        CHECK_OK(pe_craft_perturb(&t, &o, &d, &out));
        pe_image a = {0}, b = {0};
        crop_by_hand(&t, e2, &a);
        CHECK_OK(pe_image_resize_bilinear(&a, &b, 20, 16));
        pe_image_free(&a);
        CHECK_OK(pe_image_resize_bilinear(&b, &a, 15, 12));
        pe_image_free(&b);
        CHECK_OK(pe_image_resize_bilinear(&a, &b, 20, 16));
        for (size_t i = 0; i < pe_image_size(&b); i++) {
            int v = b.px[i] + d.color[c == 1 ? 0 : i % 3];
            b.px[i] = (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v);
        }
        uint8_t *jpg = NULL;
        size_t len = 0;
        CHECK_OK(pe_encode_jpeg(&b, 90, &jpg, &len));
        CHECK(len > 2 && jpg[0] == 0xFF && jpg[1] == 0xD8);
        CHECK_OK(pe_decode_jpeg(jpg, len, NULL, &want, NULL));
        CHECK(img_eq(&out, &want));
        free(jpg);
        pe_image_free(&a);
        pe_image_free(&b);
        pe_image_free(&want);
        pe_image_free(&out);
        /* pe_compose places the perturbed copy */
        pe_image r = {0};
        fill_pattern(&r, 20, 16, c, 3);
        pe_craft_opts plain;
        pe_craft_opts_default(&plain);
        CHECK_OK(pe_craft_perturb(&t, &o, &d, &tmp));
        CHECK_OK(pe_compose(&tmp, &r, &plain, &d, &want));
        CHECK_OK(pe_compose(&t, &r, &o, &d, &out));
        CHECK(img_eq(&out, &want) && block_eq(&out, 0, 0, &tmp));
        pe_image_free(&tmp);
        pe_image_free(&want);
        pe_image_free(&out);
        pe_image_free(&r);
        pe_image_free(&t);
    }
    pe_image t = {0};
    uint8_t *jpg = NULL;
    size_t len;
    fill_smooth(&t, 4, 4, 1);
    CHECK_RC(pe_encode_jpeg(&t, 0, &jpg, &len), PE_EUSAGE);
    CHECK_RC(pe_encode_jpeg(&t, 101, &jpg, &len), PE_EUSAGE);
    CHECK(jpg == NULL);
    pe_image_free(&t);
}

static void test_size(void) {
    for (uint32_t c = 1; c <= 3; c += 2) {
        pe_craft_opts o;
        pe_craft_opts_default(&o);
        pe_image t = {0}, r = {0}, native = {0}, out = {0}, want = {0};
        fill_pattern(&t, 28, 28, c, 1);
        fill_pattern(&r, 28, 28, c, 2);
        pe_craft_draw d = draw(PE_LAYOUT_LR, 1);
        CHECK_OK(pe_compose(&t, &r, &o, &d, &native));
        CHECK(native.w == 56 && native.h == 28);
        /* --size 28x28: exactly 28x28, the native composite squashed */
        CHECK_OK(pe_craft_size_parse("28x28", &o));
        CHECK(o.size == PE_CRAFT_SIZE_FIXED && o.size_w == 28 && o.size_h == 28);
        CHECK_OK(pe_compose(&t, &r, &o, &d, &out));
        CHECK(out.w == 28 && out.h == 28 && out.c == c);
        CHECK_OK(pe_image_resize_bilinear(&native, &want, 28, 28));
        CHECK(img_eq(&out, &want));
        pe_image_free(&out);
        pe_image_free(&want);
        /* any size, top-bottom too */
        o.size_w = 7, o.size_h = 3;
        d.layout = PE_LAYOUT_TB;
        CHECK_OK(pe_compose(&t, &r, &o, &d, &out));
        CHECK(out.w == 7 && out.h == 3);
        pe_image_free(&out);
        /* same: the target's own size, whatever the jitter and the reference */
        CHECK_OK(pe_craft_size_parse("same", &o));
        CHECK(o.size == PE_CRAFT_SIZE_TARGET);
        pe_image t2 = {0};
        fill_pattern(&t2, 12, 10, c, 4);
        d.scale = 0.5;
        d.off = 4, d.shift = 1;
        CHECK_OK(pe_compose(&t2, &r, &o, &d, &out));
        CHECK(out.w == 12 && out.h == 10);
        uint32_t w, h;
        CHECK_OK(pe_compose_size(12, 10, 28, 28, &o, &d, &w, &h));
        CHECK(w == 12 && h == 10);
        pe_craft_shape sh;
        CHECK_OK(pe_compose_shape(12, 10, c, 28, 28, &o, &d, &sh));
        /* TB, scale 0.5: target 6x5, reference 6+4 wide -> 10x10 window 6x10 */
        CHECK(sh.w == 12 && sh.h == 10 && sh.comp_w == 6 && sh.comp_h == 15 && sh.c == c);
        pe_image_free(&out);
        pe_image_free(&t2);
        pe_image_free(&native);
        pe_image_free(&t);
        pe_image_free(&r);
    }
    pe_craft_opts o;
    pe_craft_opts_default(&o);
    CHECK_RC(pe_craft_size_parse("0x5", &o), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "0x5") != NULL);
    CHECK_RC(pe_craft_size_parse("28", &o), PE_EUSAGE);
    CHECK_RC(pe_craft_size_parse("28x28x1", &o), PE_EUSAGE);
    CHECK_RC(pe_craft_size_parse("x28", &o), PE_EUSAGE);
    CHECK_RC(pe_craft_size_parse("Same", &o), PE_EUSAGE);
    CHECK_RC(pe_craft_size_parse("65535x65535", &o), PE_EUSAGE); /* over the pixel limit */
    CHECK(o.size == PE_CRAFT_SIZE_NATIVE);
    /* the library checks what callers put in the options */
    o.size = PE_CRAFT_SIZE_FIXED;
    o.size_w = 0, o.size_h = 5;
    CHECK_RC(pe_craft_opts_check(&o), PE_EUSAGE);
    o.size_w = 5;
    CHECK_OK(pe_craft_opts_check(&o));
    o.perturb.jpeg = 101;
    CHECK_RC(pe_craft_opts_check(&o), PE_EUSAGE);
    o.perturb.jpeg = 0, o.perturb.resample = 0.95;
    CHECK_RC(pe_craft_opts_check(&o), PE_EUSAGE);
    o.perturb.resample = 0, o.perturb.color = 256;
    CHECK_RC(pe_craft_opts_check(&o), PE_EUSAGE);
    o.perturb.color = 0, o.perturb.crop = 5000;
    CHECK_RC(pe_craft_opts_check(&o), PE_EUSAGE);
}

static void test_perturb_parse(void) {
    pe_perturb p = {0};
    CHECK_OK(pe_perturb_parse("resample=0.1,crop=2,jpeg=75,color=12", &p));
    CHECK(p.resample == 0.1 && p.crop == 2 && p.jpeg == 75 && p.color == 12);
    CHECK(pe_perturb_any(&p));
    pe_perturb q = {0};
    CHECK(!pe_perturb_any(&q));
    CHECK_OK(pe_perturb_parse("jpeg=40", &q));
    CHECK_OK(pe_perturb_parse("crop=1", &q)); /* lists add up */
    CHECK(q.jpeg == 40 && q.crop == 1 && q.color == 0 && q.resample == 0);
    const char *bad[] = {"", "blur=3", "jpeg=0", "jpeg=101", "crop=0", "crop=4097",
                         "color=0", "color=256", "color=-3", "resample=0", "resample=0.91",
                         "resample=x", "crop", "crop=", "=3", "crop=2,", ",crop=2",
                         "crop=2,,jpeg=5", "crop=2,crop=3", "jpeg=75 ", "crop=1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pe_perturb before = q;
        int rc = pe_perturb_parse(bad[i], &q);
        CHECK(rc == PE_EUSAGE);
        if (rc != PE_EUSAGE) fprintf(stderr, "    accepted '%s'\n", bad[i]);
        CHECK(!memcmp(&before, &q, sizeof q)); /* untouched on error */
    }
    CHECK_RC(pe_perturb_parse("blur=3", &q), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "'blur' is not a perturbation") != NULL);
    CHECK_RC(pe_perturb_parse("jpeg=0", &p), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "jpeg=0") != NULL);
}

/* The ops line pe-craft wrote before --size and --perturb (format of
 * attack version 1 as first released). */
static const char old_record[] =
    "attack=poisonedencoder version=1 seed=3 target=0022d3b0058eed95ac8df2a8fa6e1517 "
    "target_class=8 reference=014cea6de84795bb5de1d023b9573062 layout=tb "
    "order=reference-first fit=reference gap=0 fill=0,0,0 scale=1.000000 offset=0 shift=0 "
    "draw=uniform target_index=1 poison_index=4";

static void test_record(void) {
    pe_craft_record r;
    /* an old record parses, with the adaptive fields off */
    CHECK_OK(pe_craft_record_parse(old_record, &r));
    char hx[PE_KEY_HEX + 1];
    CHECK(r.has_target && r.has_reference);
    pe_key_to_hex(&r.target, hx);
    CHECK(!strcmp(hx, "0022d3b0058eed95ac8df2a8fa6e1517"));
    pe_key_to_hex(&r.reference, hx);
    CHECK(!strcmp(hx, "014cea6de84795bb5de1d023b9573062"));
    CHECK(r.version == 1 && r.seed == 3 && r.cls == 8 && r.layout == PE_LAYOUT_TB &&
          r.target_first == 0 && r.scale == 1.0 && r.off == 0 && r.target_index == 1 &&
          r.poison_index == 4);
    CHECK(r.size_w == 0 && r.comp_w == 0 && !r.has_crop && r.resample == 0 && r.n_color == 0 &&
          r.jpeg == 0);

    /* a new record round-trips every field */
    for (uint32_t c = 1; c <= 3; c += 2) {
        pe_craft_opts o;
        pe_craft_opts_default(&o);
        o.seed = 77;
        o.jitter = 0.2;
        o.size = PE_CRAFT_SIZE_FIXED, o.size_w = 28, o.size_h = 28;
        o.perturb = (pe_perturb){.crop = 4, .resample = 0.3, .color = 20, .jpeg = 60};
        pe_key tk, rk;
        memset(tk.b, 0x12, PE_KEY_LEN);
        memset(rk.b, 0xef, PE_KEY_LEN);
        for (uint32_t j = 0; j < 20; j++) {
            pe_craft_draw d;
            pe_craft_shape sh;
            pe_craft_draw_params(&o, 5, j, 0, 3, &d);
            CHECK_OK(pe_compose_shape(28, 28, c, 28, 28, &o, &d, &sh));
            char ops[PE_SOURCE_MAX];
            pe_craft_describe(ops, sizeof ops, &o, &tk, 6, &rk, &d, 5, j, &sh);
            CHECK(!strncmp(ops, "attack=poisonedencoder version=1 seed=77 ", 41));
            CHECK_OK(pe_craft_record_parse(ops, &r));
            CHECK(!memcmp(r.target.b, tk.b, PE_KEY_LEN) && !memcmp(r.reference.b, rk.b, PE_KEY_LEN));
            CHECK(r.cls == 6 && r.seed == 77 && r.layout == d.layout &&
                  r.target_first == d.target_first && fabs(r.scale - d.scale) < 1e-6 &&
                  r.target_index == 5 && r.poison_index == j);
            CHECK(r.size_w == 28 && r.size_h == 28 && r.comp_w == sh.comp_w &&
                  r.comp_h == sh.comp_h && r.comp_w > 0);
            CHECK(r.has_crop && !memcmp(r.crop, d.crop, sizeof d.crop));
            CHECK(fabs(r.resample - d.resample) < 1e-6 && r.resample_w == sh.resample_w &&
                  r.resample_h == sh.resample_h && r.resample_w > 0);
            CHECK(r.n_color == c && r.color[0] == d.color[0]);
            if (c == 3) CHECK(r.color[1] == d.color[1] && r.color[2] == d.color[2]);
            CHECK(r.jpeg == 60);
        }
        /* only what is on is written */
        o.size = PE_CRAFT_SIZE_NATIVE;
        o.perturb = (pe_perturb){.jpeg = 30};
        pe_craft_draw d;
        pe_craft_shape sh;
        pe_craft_draw_params(&o, 0, 0, 0, 3, &d);
        CHECK_OK(pe_compose_shape(28, 28, c, 28, 28, &o, &d, &sh));
        char ops[PE_SOURCE_MAX];
        pe_craft_describe(ops, sizeof ops, &o, &tk, 6, &rk, &d, 0, 0, &sh);
        CHECK(strstr(ops, "poison_index=0 jpeg=30") != NULL && !strstr(ops, "size=") &&
              !strstr(ops, "crop=") && !strstr(ops, "color="));
        CHECK_OK(pe_craft_record_parse(ops, &r));
        CHECK(r.jpeg == 30 && r.size_w == 0 && !r.has_crop && r.n_color == 0);
    }
    /* fields of a later version are skipped; malformed known ones are errors */
    char buf[2048];
    snprintf(buf, sizeof buf, "%s future=1,2 blur=3", old_record);
    CHECK_OK(pe_craft_record_parse(buf, &r));
    CHECK(r.cls == 8);
    const char *bad[] = {"attack=other target_class=1", "crop=1,2,3", "color=1,2", "color=300",
                         "jpeg=0", "size=0x3", "resample=-1", "target_class=x", "layout=xy",
                         "target=abc", "lonely"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(buf, sizeof buf, "%s %s", old_record, bad[i]);
        CHECK_RC(pe_craft_record_parse(buf, &r), PE_EFORMAT);
    }

    /* the readers of an image's records */
    pe_info info;
    memset(&info, 0, sizeof info);
    info.n = 2;
    info.prov[0] = (pe_prov){.src = "somewhere.png", .ops = "size=28x28"};
    info.prov[1] = (pe_prov){.src = PE_CRAFT_SOURCE, .ops = old_record};
    int32_t cls;
    CHECK(pe_craft_provenance(&info, &cls) == 1 && cls == 8);
    CHECK(pe_craft_provenance(&info, NULL) == 1);
    CHECK(pe_craft_provenance_record(&info, &r) == 1 && r.cls == 8 && r.jpeg == 0);
    snprintf(buf, sizeof buf, "%s size=28x28 composite=56x28 crop=1,0,2,1 color=-4 jpeg=75",
             old_record);
    info.prov[1].ops = buf;
    CHECK(pe_craft_provenance(&info, &cls) == 1 && cls == 8);
    CHECK(pe_craft_provenance_record(&info, &r) == 1 && r.size_w == 28 && r.comp_w == 56 &&
          r.crop[2] == 2 && r.n_color == 1 && r.color[0] == -4 && r.jpeg == 75);
    info.prov[1].src = "pe-ingest";
    CHECK(pe_craft_provenance(&info, &cls) == 0 && cls == -1);
    CHECK(pe_craft_provenance_record(&info, &r) == 0 && r.cls == -1);
}

/* ---- on a store ---- */

static pe_key put(pe_txn *t, uint32_t w, uint32_t h, uint32_t c, unsigned seed) {
    pe_image im = {0};
    fill_pattern(&im, w, h, c, seed);
    pe_key k;
    int existed;
    CHECK_OK(pe_img_put(t, &im, PE_ENC_RAW, NULL, &k, &existed));
    pe_image_free(&im);
    return k;
}

static size_t n_images(pe_store *st) {
    pe_txn *t;
    pe_store_stats s;
    if (pe_txn_begin(st, 0, &t)) return (size_t)-1;
    int rc = pe_store_stats_get(t, &s);
    pe_txn_abort(t);
    return rc ? (size_t)-1 : (size_t)s.n_images;
}

static int body_fail(void *ctx, pe_txn *t) {
    put(t, 3, 3, 1, 99);
    return pe_fail(PE_EUSAGE, "stop");
}

static int body_ok(void *ctx, pe_txn *t) {
    put(t, 3, 3, 1, 99);
    return 0;
}

static void test_run(void) {
    pe_store *st;
    CHECK_OK(pe_store_open(&st, P("craft.lmdb"), PE_STORE_CREATE));
    pe_txn *t;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    pe_craft_target tg[2];
    pe_craft_ref rf[4];
    tg[0] = (pe_craft_target){put(t, 8, 8, 1, 1), 3, 7};
    tg[1] = (pe_craft_target){put(t, 8, 8, 1, 2), 5, 4};
    rf[0] = (pe_craft_ref){put(t, 8, 8, 1, 10), 3};
    rf[1] = (pe_craft_ref){put(t, 6, 9, 1, 11), 3};
    rf[2] = (pe_craft_ref){put(t, 8, 8, 1, 12), 5};
    rf[3] = (pe_craft_ref){put(t, 8, 8, 3, 13), 7}; /* another class, RGB: unused */
    pe_key gray3 = put(t, 8, 8, 3, 14);
    CHECK_OK(pe_txn_commit(t));
    size_t before = n_images(st);

    pe_craft_opts o;
    pe_craft_opts_default(&o);
    o.seed = 5;
    pe_craft_made made[11], made2[11];
    pe_craft_summary s, s2;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_craft_run(t, &o, tg, 2, rf, 4, made, &s));
    CHECK(s.total == 11 && s.distinct <= 11 && s.distinct >= 2);
    /* the recorded occurrences are the counts asked for, per target */
    int per[2] = {0};
    for (int i = 0; i < 11; i++) {
        per[made[i].target]++;
        CHECK(rf[made[i].ref].cls == tg[made[i].target].cls);
        pe_image im = {0};
        CHECK_OK(pe_img_get(t, &made[i].key, &im));
        CHECK((im.w == 16 && im.h == 8) || (im.w == 8 && im.h == 16) ||
              (im.w == 8 + 5 && im.h == 8) || (im.w == 8 && im.h == 8 + 12));
        pe_image_free(&im);
        /* provenance names the attack, the target and the reference */
        pe_info info;
        CHECK_OK(pe_info_get(t, &made[i].key, &info));
        char th[PE_KEY_HEX + 1], rh[PE_KEY_HEX + 1], want[200];
        pe_key_to_hex(&tg[made[i].target].key, th);
        pe_key_to_hex(&rf[made[i].ref].key, rh);
        CHECK(info.n >= 1 && !strcmp(info.prov[0].src, "pe-craft"));
        int found = 0;
        for (uint32_t q = 0; q < info.n; q++) {
            snprintf(want, sizeof want, "target=%s target_class=%d reference=%s", th,
                     tg[made[i].target].cls, rh);
            found |= strstr(info.prov[q].ops, want) != NULL &&
                     strstr(info.prov[q].ops, "attack=poisonedencoder version=1 seed=5 ") != NULL;
        }
        CHECK(found);
    }
    CHECK(per[0] == 7 && per[1] == 4);
    pe_txn_abort(t);
    /* reproducible: the same inputs make the same keys */
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_craft_run(t, &o, tg, 2, rf, 4, made2, &s2));
    CHECK(made_eq(made, made2, 11) && s.distinct == s2.distinct);
    pe_txn_abort(t);

    /* --distinct: every poison differs */
    o.distinct = 1;
    tg[0].count = 30;
    pe_craft_made many[34];
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_craft_run(t, &o, tg, 2, rf, 4, many, &s));
    CHECK(s.total == 34 && s.distinct == 34);
    int dup = 0;
    for (int i = 0; i < 34; i++)
        for (int k = 0; k < i; k++) dup += !memcmp(many[i].key.b, many[k].key.b, PE_KEY_LEN);
    CHECK(dup == 0);
    pe_txn_abort(t);
    /* a budget distinct draws cannot meet: 1x1 images have few composites */
    pe_craft_target tiny[1];
    pe_craft_ref tref[1];
    CHECK_OK(pe_txn_begin(st, 1, &t));
    tiny[0] = (pe_craft_target){put(t, 1, 1, 1, 1), 0, 500};
    tref[0] = (pe_craft_ref){put(t, 1, 1, 1, 2), 0};
    pe_craft_made *mm = malloc(500 * sizeof *mm);
    CHECK_RC(pe_craft_run(t, &o, tiny, 1, tref, 1, mm, &s), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "distinct") != NULL);
    free(mm);
    pe_txn_abort(t);
    o.distinct = 0;
    tg[0].count = 7;

    /* errors: no reference of the class, unknown keys, channel mismatch */
    CHECK_OK(pe_txn_begin(st, 1, &t));
    pe_craft_target bad = tg[0];
    bad.cls = 9;
    CHECK_RC(pe_craft_run(t, &o, &bad, 1, rf, 4, made, &s), PE_ENOTFOUND);
    CHECK(strstr(pe_errmsg(), "no reference of target class 9") != NULL);
    bad = tg[0];
    memset(bad.key.b, 0xab, PE_KEY_LEN);
    CHECK_RC(pe_craft_run(t, &o, &bad, 1, rf, 4, made, &s), PE_ENOTFOUND);
    CHECK(strstr(pe_errmsg(), "target abababab") != NULL);
    pe_craft_ref badr[2] = {rf[0], rf[1]};
    memset(badr[1].key.b, 0xcd, PE_KEY_LEN);
    CHECK_RC(pe_craft_run(t, &o, tg, 1, badr, 2, made, &s), PE_ENOTFOUND);
    CHECK(strstr(pe_errmsg(), "reference cdcdcdcd") != NULL);
    bad = tg[0];
    bad.key = gray3; /* a 3-channel target with 1-channel references */
    CHECK_RC(pe_craft_run(t, &o, &bad, 1, rf, 4, made, &s), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "channels") != NULL);
    pe_txn_abort(t);
    CHECK(n_images(st) == before); /* aborted runs stored nothing */

    /* pe_store_write commits a body's work, and aborts a failing one */
    CHECK_RC(pe_store_write(st, body_fail, NULL), PE_EUSAGE);
    CHECK(n_images(st) == before);
    CHECK_OK(pe_store_write(st, body_ok, NULL));
    CHECK(n_images(st) == before + 1);
    pe_store_close(st);
}

static void test_run_adaptive(void) {
    pe_store *st;
    CHECK_OK(pe_store_open(&st, P("adaptive.lmdb"), PE_STORE_CREATE));
    pe_txn *t;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    pe_craft_target tg[2];
    pe_craft_ref rf[3];
    tg[0] = (pe_craft_target){put(t, 10, 10, 1, 1), 3, 7};
    tg[1] = (pe_craft_target){put(t, 12, 9, 1, 2), 3, 4};
    rf[0] = (pe_craft_ref){put(t, 10, 10, 1, 10), 3};
    rf[1] = (pe_craft_ref){put(t, 6, 9, 1, 11), 3};
    rf[2] = (pe_craft_ref){put(t, 10, 10, 1, 12), 3};
    CHECK_OK(pe_txn_commit(t));
    size_t before = n_images(st);

    pe_craft_opts o;
    pe_craft_opts_default(&o);
    o.seed = 8;
    o.size = PE_CRAFT_SIZE_TARGET;
    o.distinct = 1;
    o.perturb = (pe_perturb){.crop = 2, .resample = 0.2, .color = 8, .jpeg = 80};
    pe_craft_made made[11], made2[11];
    pe_craft_summary s, s2;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_craft_run(t, &o, tg, 2, rf, 3, made, &s));
    CHECK(s.total == 11 && s.distinct == 11);
    pe_key copies[11];
    for (int i = 0; i < 11; i++) {
        const pe_craft_target *g = &tg[made[i].target];
        pe_image im = {0}, tim = {0}, copy = {0};
        CHECK_OK(pe_img_get(t, &made[i].key, &im));
        CHECK_OK(pe_img_get(t, &g->key, &tim));
        CHECK(im.w == tim.w && im.h == tim.h); /* --size same */
        /* the record holds the draws: the copy rebuilt from them */
        pe_info info;
        pe_craft_record r;
        CHECK_OK(pe_info_get(t, &made[i].key, &info));
        CHECK(pe_craft_provenance_record(&info, &r) == 1);
        CHECK(!memcmp(r.target.b, g->key.b, PE_KEY_LEN) && r.cls == 3);
        CHECK(r.size_w == tim.w && r.size_h == tim.h && r.jpeg == 80 && r.has_crop &&
              r.n_color == 1 && r.resample >= 0.8 && r.resample <= 1.2);
        pe_craft_draw d = draw(r.layout, r.target_first);
        d.scale = r.scale, d.off = r.off, d.shift = r.shift;
        memcpy(d.crop, r.crop, sizeof d.crop);
        d.resample = r.resample;
        d.color[0] = r.color[0];
        CHECK_OK(pe_craft_perturb(&tim, &o, &d, &copy));
        CHECK(!img_eq(&copy, &tim));
        pe_key_of_image(&copy, &copies[i]);
        pe_image rim = {0}, again = {0};
        CHECK_OK(pe_img_get(t, &r.reference, &rim));
        CHECK_OK(pe_compose(&tim, &rim, &o, &d, &again));
        CHECK(img_eq(&again, &im));
        pe_image_free(&again);
        pe_image_free(&rim);
        pe_image_free(&copy);
        pe_image_free(&tim);
        pe_image_free(&im);
    }
    int dup = 0;
    for (int i = 0; i < 11; i++)
        for (int k = 0; k < i; k++) dup += !memcmp(copies[i].b, copies[k].b, PE_KEY_LEN);
    CHECK(dup == 0); /* --distinct: no target copy placed twice */
    pe_txn_abort(t);
    /* reproducible */
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_craft_run(t, &o, tg, 2, rf, 3, made2, &s2));
    CHECK(made_eq(made, made2, 11));
    pe_txn_abort(t);
    /* a JPEG round trip alone draws nothing: copies cannot all differ */
    o.perturb = (pe_perturb){.jpeg = 80};
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_RC(pe_craft_run(t, &o, tg, 2, rf, 3, made, &s), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "distinct target copies") != NULL);
    pe_txn_abort(t);
    /* without --distinct it makes the budget */
    o.distinct = 0;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_craft_run(t, &o, tg, 2, rf, 3, made, &s));
    CHECK(s.total == 11);
    pe_txn_abort(t);
    /* a crop a target cannot take (9 rows, crop=5): refused before any put */
    o.perturb = (pe_perturb){.crop = 5};
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_RC(pe_craft_run(t, &o, tg, 2, rf, 3, made, &s), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "crop=5 needs sides over 10 pixels") != NULL);
    CHECK_OK(pe_txn_commit(t));
    CHECK(n_images(st) == before);
    pe_store_close(st);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/pe-test-craft-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    RUN(test_sizes);
    RUN(test_pixels);
    RUN(test_draws);
    RUN(test_perturb_draws);
    RUN(test_perturb_pixels);
    RUN(test_size);
    RUN(test_perturb_parse);
    RUN(test_record);
    RUN(test_run);
    RUN(test_run_adaptive);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return CHECK_DONE();
}
