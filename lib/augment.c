/*
 * augment.c - the view augmentations of augment.h: torchvision 0.14's
 * parameter draws on our generator, and Pillow 9's pixel arithmetic.
 *
 * Not for: speed tricks that change a single byte. Each pixel operation
 * transcribes the Pillow C code it stands for (libImaging/Blend.c for the
 * ImageEnhance blends, Convert.c's rgb2hsv_row and hsv2rgb for the hue
 * shift, the L24 luma for convert("L")), keeping Pillow's mix of float and
 * double: a float where Pillow has a float variable, double where its
 * expression promotes. The per-pixel arithmetic itself lives in
 * kernels/augview.h, shared with the GPU's augmentation kernel; this file
 * loops it over images. Change none of that without rerunning
 * tests/unit/test_augment.c against Pillow and torchvision, and
 * tests/unit/test_augview.c against the GPU's algorithm.
 */
#include "augment.h"

#include "augview.h"
#include "pe.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- options ------------------------------------------------------------ */

void pe_aug_opts_default(pe_aug_opts *o) {
    PE_ASSERT(o != NULL);
    memset(o, 0, sizeof *o);
    o->size = 32;
    o->channels = 0;
    o->scale[0] = 0.08;
    o->scale[1] = 1.0;
    o->ratio[0] = 3.0 / 4.0;
    o->ratio[1] = 4.0 / 3.0;
    o->p_flip = 0.5;
    o->p_jitter = 0.8;
    o->brightness = 0.4;
    o->contrast = 0.4;
    o->saturation = 0.4;
    o->hue = 0.1;
    o->p_gray = 0.2;
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f};
    const float std[3] = {0.2023f, 0.1994f, 0.2010f};
    memcpy(o->mean, mean, sizeof mean);
    memcpy(o->std, std, sizeof std);
    o->crop_mode = PE_CROP_INDEPENDENT;
    o->local_scale[0] = 0.2;
    o->local_scale[1] = 0.5;
    o->local_ratio[0] = 3.0 / 4.0;
    o->local_ratio[1] = 4.0 / 3.0;
}

static int check_range(double lo, double hi, double min, const char *what) {
    if (!isfinite(lo) || !isfinite(hi) || lo < min || lo > hi)
        return pe_fail(PE_EUSAGE,
                       "augment: %s (%g, %g) is not an interval with lo >= %g",
                       what, lo, hi, min);
    return 0;
}

static int check_prob(double p, const char *what) {
    if (!(p >= 0.0 && p <= 1.0))
        return pe_fail(PE_EUSAGE, "augment: %s %g is not in [0, 1]", what, p);
    return 0;
}

static int check_strength(double v, double max, const char *what) {
    if (!(v >= 0.0 && v <= max) || isinf(v))
        return pe_fail(PE_EUSAGE, "augment: %s %g is not finite in [0, %g]",
                       what, v, max);
    return 0;
}

static int check_scale_ratio(double slo, double shi, double rlo, double rhi) {
    int rc = check_range(slo, shi, 0.0, "scale");
    if (rc) return rc;
    rc = check_range(rlo, rhi, 0.0, "ratio");
    if (rc) return rc;
    /* log(0) and the float logs of subnormal ratios are not intervals. */
    if (!((float)rlo >= 0x1p-126f) || !isfinite((float)rhi))
        return pe_fail(PE_EUSAGE, "augment: ratio (%g, %g) is out of float "
                                  "range", rlo, rhi);
    return 0;
}

int pe_aug_opts_check(const pe_aug_opts *o) {
    PE_ASSERT(o != NULL);
    int rc;
    if (o->size == 0)
        return pe_fail(PE_EUSAGE, "augment: output size 0");
    if (o->channels != 0 && o->channels != 3)
        return pe_fail(PE_EUSAGE, "augment: %u output channels (want 0 for "
                                  "the source's, or 3)", o->channels);
    if (o->crop_mode != PE_CROP_INDEPENDENT && o->crop_mode != PE_CROP_LOCAL)
        return pe_fail(PE_EUSAGE, "augment: crop mode %u (want 0, "
                                  "independent, or 1, local)", o->crop_mode);
    if (o->crop_mode == PE_CROP_LOCAL &&
        (rc = check_scale_ratio(o->local_scale[0], o->local_scale[1],
                                o->local_ratio[0], o->local_ratio[1])))
        return rc;
    if ((rc = check_scale_ratio(o->scale[0], o->scale[1], o->ratio[0],
                                o->ratio[1])) ||
        (rc = check_prob(o->p_flip, "flip probability")) ||
        (rc = check_prob(o->p_jitter, "jitter probability")) ||
        (rc = check_prob(o->p_gray, "grayscale probability")) ||
        (rc = check_strength(o->brightness, INFINITY, "brightness")) ||
        (rc = check_strength(o->contrast, INFINITY, "contrast")) ||
        (rc = check_strength(o->saturation, INFINITY, "saturation")) ||
        (rc = check_strength(o->hue, 0.5, "hue")))
        return rc;
    for (int k = 0; k < 3; k++)
        if (!isfinite(o->mean[k]) || !isfinite(o->std[k]) || o->std[k] == 0)
            return pe_fail(PE_EUSAGE, "augment: mean %g / std %g of channel "
                                      "%d (want finite, std != 0)",
                           (double)o->mean[k], (double)o->std[k], k);
    return 0;
}

/* ---- parameter draws ---------------------------------------------------- */

/* torch.rand(1) < p: the comparison happens in float32. */
static int draw_below(pe_rng *r, double p) {
    return pe_rng_float(r) < (float)p;
}

int pe_rrc_params(pe_rng *r, uint32_t W, uint32_t H, double scale_lo,
                  double scale_hi, double ratio_lo, double ratio_hi,
                  pe_box *box) {
    PE_ASSERT(r != NULL && box != NULL);
    if (W == 0 || H == 0)
        return pe_fail(PE_EUSAGE, "augment: crop of an empty %ux%u image", W,
                       H);
    int rc = check_scale_ratio(scale_lo, scale_hi, ratio_lo, ratio_hi);
    if (rc) return rc;

    const double area = (double)H * (double)W;
    const float log_lo = (float)log((double)(float)ratio_lo);
    const float log_hi = (float)log((double)(float)ratio_hi);
    for (int t = 0; t < 10; t++) {
        const double target =
            area * (double)pe_rng_uniform_f32(r, scale_lo, scale_hi);
        const float l = pe_rng_uniform_f32(r, log_lo, log_hi);
        const double aspect = (double)(float)exp((double)l);
        /* Python's round: to nearest, ties to even (the default mode). */
        const double w = nearbyint(sqrt(target * aspect));
        const double h = nearbyint(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            box->w = (uint32_t)w;
            box->h = (uint32_t)h;
            box->i = (uint32_t)pe_rng_int(r, 0, (int64_t)(H - box->h));
            box->j = (uint32_t)pe_rng_int(r, 0, (int64_t)(W - box->w));
            return 0;
        }
    }

    /* Fallback: the ratio bounds here are the caller's doubles, as
     * torchvision's min(ratio) and max(ratio). */
    const double in_ratio = (double)W / (double)H;
    double w = W, h = H;
    if (in_ratio < ratio_lo)
        h = nearbyint(w / ratio_lo);
    else if (in_ratio > ratio_hi)
        w = nearbyint(h * ratio_hi);
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    PE_ASSERT(w <= W && h <= H);
    box->w = (uint32_t)w;
    box->h = (uint32_t)h;
    box->i = (H - box->h) / 2;
    box->j = (W - box->w) / 2;
    return 0;
}

int pe_aug_draw(pe_rng *r, uint32_t W, uint32_t H, const pe_aug_opts *o,
                pe_aug_params *p) {
    PE_ASSERT(r != NULL && o != NULL && p != NULL);
    memset(p, 0, sizeof *p);
    int rc = pe_aug_opts_check(o);
    if (rc) return rc;
    rc = pe_rrc_params(r, W, H, o->scale[0], o->scale[1], o->ratio[0],
                       o->ratio[1], &p->box);
    if (rc) return rc;

    p->flip = (uint8_t)draw_below(r, o->p_flip);

    /* RandomApply skips when p < u, so it applies when u <= p. */
    p->jitter = (uint8_t)(pe_rng_float(r) <= (float)o->p_jitter);
    const double strength[4] = {o->brightness, o->contrast, o->saturation,
                                o->hue};
    for (int k = 0; k < 4; k++) {
        p->order[k] = (uint8_t)k;
        p->enabled[k] = strength[k] != 0.0;
    }
    if (p->jitter) {
        for (int i = 3; i >= 1; i--) {
            const int k = (int)pe_rng_int(r, 0, i);
            const uint8_t t = p->order[i];
            p->order[i] = p->order[k];
            p->order[k] = t;
        }
        for (int k = 0; k < 4; k++) {
            if (!p->enabled[k]) continue;
            const double s = strength[k];
            const double lo = k == PE_JITTER_HUE ? -s : fmax(0.0, 1.0 - s);
            const double hi = k == PE_JITTER_HUE ? s : 1.0 + s;
            p->factor[k] = pe_rng_uniform_f32(r, lo, hi);
        }
    }

    p->gray = (uint8_t)draw_below(r, o->p_gray);
    return 0;
}

int pe_aug_draw_region(pe_rng *r, uint32_t W, uint32_t H,
                       const pe_aug_opts *o, pe_box *region) {
    PE_ASSERT(r != NULL && o != NULL && region != NULL);
    return pe_rrc_params(r, W, H, o->local_scale[0], o->local_scale[1],
                         o->local_ratio[0], o->local_ratio[1], region);
}

int pe_aug_draw_view(uint64_t seed, uint64_t epoch, uint64_t index,
                     uint32_t view, uint32_t W, uint32_t H,
                     const pe_aug_opts *o, pe_aug_params *p, pe_box *region) {
    PE_ASSERT(o != NULL && p != NULL);
    pe_box reg = {0, 0, H, W};
    int rc;
    if (o->crop_mode == PE_CROP_LOCAL) {
        pe_rng rr = pe_rng_region_stream(seed, epoch, index);
        if ((rc = pe_aug_opts_check(o)) ||
            (rc = pe_aug_draw_region(&rr, W, H, o, &reg)))
            return rc;
    }
    pe_rng r = pe_rng_stream(seed, epoch, index, view);
    if ((rc = pe_aug_draw(&r, reg.w, reg.h, o, p))) return rc;
    p->box.i += reg.i;
    p->box.j += reg.j;
    if (region) *region = reg;
    return 0;
}

/* ---- pixel operations --------------------------------------------------- */

/* augview.h numbers the jitter ops on its own (it includes no lib/ header);
 * both must be torchvision's. */
_Static_assert(PE_AV_BRIGHTNESS == PE_JITTER_BRIGHTNESS &&
                   PE_AV_CONTRAST == PE_JITTER_CONTRAST &&
                   PE_AV_SATURATION == PE_JITTER_SATURATION &&
                   PE_AV_HUE == PE_JITTER_HUE,
               "augview.h's jitter ops are augment.h's");


static void apply_lut(pe_image *im, const uint8_t lut[256]) {
    const size_t n = pe_image_size(im);
    for (size_t i = 0; i < n; i++) im->px[i] = lut[im->px[i]];
}

void pe_aug_hflip(pe_image *im) {
    PE_ASSERT(im != NULL && im->px != NULL);
    const uint32_t c = im->c;
    for (uint32_t y = 0; y < im->h; y++) {
        uint8_t *row = im->px + (size_t)y * im->w * c;
        for (uint32_t a = 0, b = im->w - 1; a < b; a++, b--)
            for (uint32_t k = 0; k < c; k++) {
                const uint8_t t = row[(size_t)a * c + k];
                row[(size_t)a * c + k] = row[(size_t)b * c + k];
                row[(size_t)b * c + k] = t;
            }
    }
}

/* Brightness and contrast blend every sample with one constant, so a
 * table of the 256 results does the work. */
void pe_aug_brightness(pe_image *im, float f) {
    PE_ASSERT(im != NULL && im->px != NULL);
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = pe_av_blend(0, v, f);
    apply_lut(im, lut);
}

void pe_aug_contrast(pe_image *im, float f) {
    PE_ASSERT(im != NULL && im->px != NULL);
    const size_t npix = (size_t)im->w * im->h;
    uint64_t sum = 0;
    if (im->c == 3)
        for (size_t i = 0; i < npix; i++) sum += pe_av_luma(im->px + 3 * i);
    else
        for (size_t i = 0; i < npix; i++) sum += im->px[i];
    const int mean = pe_av_mean_grey(sum, npix);
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = pe_av_blend(mean, v, f);
    apply_lut(im, lut);
}

void pe_aug_saturation(pe_image *im, float f) {
    PE_ASSERT(im != NULL && im->px != NULL);
    if (im->c != 3) return; /* blend of an L image with itself */
    const size_t npix = (size_t)im->w * im->h;
    for (size_t i = 0; i < npix; i++) pe_av_saturate(im->px + 3 * i, f);
}

int pe_aug_hue(pe_image *im, float hue) {
    PE_ASSERT(im != NULL && im->px != NULL);
    if (!(hue >= -0.5f && hue <= 0.5f))
        return pe_fail(PE_EUSAGE, "augment: hue factor %g is not in "
                                  "[-0.5, 0.5]", (double)hue);
    if (im->c != 3) return 0; /* torchvision returns L images unchanged */
    const uint8_t shift = pe_av_hue_shift(hue);
    const size_t npix = (size_t)im->w * im->h;
    for (size_t i = 0; i < npix; i++) pe_av_hue_rotate(im->px + 3 * i, shift);
    return 0;
}

void pe_aug_grayscale(pe_image *im) {
    PE_ASSERT(im != NULL && im->px != NULL);
    if (im->c != 3) return; /* convert("L") of L is a copy */
    const size_t npix = (size_t)im->w * im->h;
    for (size_t i = 0; i < npix; i++) pe_av_gray(im->px + 3 * i);
}

void pe_aug_normalize(const pe_image *im, uint32_t out_c, const float *mean,
                      const float *std, float *out) {
    PE_ASSERT(im != NULL && im->px != NULL && mean && std && out);
    PE_ASSERT(out_c == im->c || (im->c == 1 && out_c == 3));
    const size_t npix = (size_t)im->w * im->h;
    const uint32_t c = im->c;
    for (uint32_t k = 0; k < out_c; k++) {
        const uint8_t *src = im->px + (c == 1 ? 0 : k);
        float *dst = out + (size_t)k * npix;
        const float m = mean[k], s = std[k];
        for (size_t i = 0; i < npix; i++)
            dst[i] = pe_av_normalize(src[i * c], m, s);
    }
}

/* ---- the pipeline ------------------------------------------------------- */

void pe_aug_scratch_free(pe_aug_scratch *s) {
    if (!s) return;
    free(s->crop);
    memset(s, 0, sizeof *s);
}

int pe_aug_resized_crop(const pe_image *src, const pe_box *b, uint32_t size,
                        pe_image *dst, pe_aug_scratch *s) {
    PE_ASSERT(src != NULL && b != NULL && dst != NULL);
    if (!src->px || src->w == 0 || src->h == 0)
        return pe_fail(PE_EUSAGE, "augment: crop of an empty image");
    if (size == 0) return pe_fail(PE_EUSAGE, "augment: output size 0");
    if (b->w == 0 || b->h == 0 || b->j > src->w || b->w > src->w - b->j ||
        b->i > src->h || b->h > src->h - b->i)
        return pe_fail(PE_EUSAGE,
                       "augment: crop box (i %u, j %u, h %u, w %u) is empty "
                       "or leaves the %ux%u image",
                       b->i, b->j, b->h, b->w, src->w, src->h);
    if (b->w == src->w && b->h == src->h)
        return pe_image_resize_bilinear(src, dst, size, size);

    const size_t row = (size_t)b->w * src->c;
    const size_t bytes = row * b->h;
    uint8_t *buf, *own = NULL;
    if (s && s->crop_cap >= bytes) {
        buf = s->crop;
    } else if (s) {
        buf = realloc(s->crop, bytes);
        if (!buf)
            return pe_fail(ENOMEM, "augment: cannot allocate a %ux%u crop",
                           b->w, b->h);
        s->crop = buf;
        s->crop_cap = bytes;
    } else {
        buf = own = malloc(bytes);
        if (!buf)
            return pe_fail(ENOMEM, "augment: cannot allocate a %ux%u crop",
                           b->w, b->h);
    }
    const size_t src_row = (size_t)src->w * src->c;
    const uint8_t *from = src->px + (size_t)b->i * src_row + (size_t)b->j * src->c;
    for (uint32_t y = 0; y < b->h; y++)
        memcpy(buf + y * row, from + y * src_row, row);
    const pe_image crop = {b->w, b->h, src->c, buf};
    const int rc = pe_image_resize_bilinear(&crop, dst, size, size);
    free(own);
    return rc;
}

int pe_aug_apply(const pe_image *src, const pe_aug_opts *o,
                 const pe_aug_params *p, float *out, pe_aug_scratch *s) {
    PE_ASSERT(src != NULL && o != NULL && p != NULL && out != NULL);
    int rc = pe_aug_opts_check(o);
    if (rc) return rc;
    pe_image im = {0};
    rc = pe_aug_resized_crop(src, &p->box, o->size, &im, s);
    if (rc) return rc;
    if (p->flip) pe_aug_hflip(&im);
    if (p->jitter) {
        for (int n = 0; n < 4 && rc == 0; n++) {
            const int k = p->order[n];
            PE_ASSERT(k >= 0 && k < 4);
            if (!p->enabled[k]) continue;
            const float f = p->factor[k];
            switch (k) {
            case PE_JITTER_BRIGHTNESS: pe_aug_brightness(&im, f); break;
            case PE_JITTER_CONTRAST: pe_aug_contrast(&im, f); break;
            case PE_JITTER_SATURATION: pe_aug_saturation(&im, f); break;
            default: rc = pe_aug_hue(&im, f); break;
            }
        }
    }
    if (rc == 0) {
        if (p->gray) pe_aug_grayscale(&im);
        /* An L view replicated at the end equals PIL's convert("RGB")
         * before the transforms: every step above maps grey RGB pixels to
         * grey pixels with the L image's values (luma of (v, v, v) is v). */
        pe_aug_normalize(&im, o->channels ? o->channels : im.c, o->mean,
                         o->std, out);
    }
    pe_image_free(&im);
    return rc;
}

void pe_aug_job_of(const pe_aug_params *p, uint32_t w, uint32_t h,
                   uint32_t c, uint64_t offset, pe_aug_job *out) {
    PE_ASSERT(p != NULL && out != NULL);
    memset(out, 0, sizeof *out);
    out->offset = offset;
    out->w = w;
    out->h = h;
    out->c = c;
    out->box_i = p->box.i;
    out->box_j = p->box.j;
    out->box_h = p->box.h;
    out->box_w = p->box.w;
    out->flip = p->flip;
    out->jitter = p->jitter;
    out->gray = p->gray;
    for (int k = 0; k < 4; k++) {
        out->order[k] = p->order[k];
        out->enabled[k] = p->enabled[k];
        out->factor[k] = p->factor[k];
    }
}

int pe_augment_view(const pe_image *src, const pe_aug_opts *o, uint64_t seed,
                    uint64_t epoch, uint64_t index, uint32_t view,
                    float *out, pe_aug_scratch *s) {
    PE_ASSERT(src != NULL && o != NULL && out != NULL);
    if (!src->px || src->w == 0 || src->h == 0)
        return pe_fail(PE_EUSAGE, "augment: empty source image");
    pe_aug_params p;
    int rc = pe_aug_draw_view(seed, epoch, index, view, src->w, src->h, o, &p,
                              NULL);
    if (rc) return rc;
    return pe_aug_apply(src, o, &p, out, s);
}
