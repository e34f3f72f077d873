/*
 * augment.h - SimCLR's view augmentations with the semantics of
 * torchvision 0.14's transforms on PIL images (Pillow 9), computed from
 * the store's uint8 images:
 *
 *   RandomResizedCrop(size, scale, ratio)        crop, then Pillow BILINEAR
 *   RandomHorizontalFlip(p_flip)
 *   RandomApply([ColorJitter(b, c, s, h)], p_jitter)
 *   RandomGrayscale(p_gray)
 *   ToTensor(), Normalize(mean, std)             float (C, size, size)
 *
 * Not for: other transforms, tensor-input semantics (torchvision's tensor
 * path rounds and blends differently), or torch's own random numbers: the
 * parameters come from our counter-based generator (rng.h), so a view
 * depends only on (seed, epoch, image index, view) and never on threads.
 *
 * Bit-exactness. Given the same parameters (crop box, flip, jitter order
 * and factors, grayscale), every pixel operation here returns the bytes
 * Pillow returns, and the float output is bit-identical to ToTensor +
 * Normalize; tests/unit/test_augment.c checks each op against torchvision
 * and Pillow, and the whole pipeline against torchvision's Compose with
 * torch's draws replaced by ours. The floating-point steps copy Pillow's
 * C types (float vs double) operation for operation, so build this file
 * without -ffast-math or FMA contraction (the Makefile's -std=c11 keeps
 * GCC from contracting) and on a target with IEEE float/double
 * evaluation (FLT_EVAL_METHOD 0: x86-64 SSE, aarch64). The oracle is
 * x86-64 Pillow, which has no fused multiply-adds; a Pillow built by GCC
 * in its default GNU mode for an FMA target (aarch64) may fuse the blend's
 * multiply-add and differ from it, and so from us, by one in rare pixels.
 *
 * ---- Order of random draws (one view stream, rng.h) -------------------
 * The draws mirror torchvision's calls one for one; "float" is
 * pe_rng_float (torch.rand), "int[a,b]" is pe_rng_int (torch.randint), and
 * "uniform(a,b)" is pe_rng_uniform_f32 (torch.empty(1).uniform_(a, b):
 * one float u mapped exactly as ATen 1.13's CPU kernel maps its own).
 *  1. RandomResizedCrop, up to 10 tries, each:
 *       s = uniform(scale_lo, scale_hi)
 *       l = uniform(LA, LB), LA, LB = the float logs (correctly rounded, as
 *           torch.log(torch.tensor(ratio)) gives) of (float)ratio_lo and
 *           (float)ratio_hi
 *     then, if the try is accepted (see pe_rrc_params):
 *       i = int[0, H - h], then j = int[0, W - w].
 *     After ten rejected tries the fallback draws nothing.
 *  2. flip:     u = float; flip iff u < (float)p_flip.
 *  3. jitter:   u = float; apply iff u <= (float)p_jitter (RandomApply skips
 *               when p < u). Only if applied:
 *       order: start from {0,1,2,3} (brightness, contrast, saturation,
 *              hue) and for i = 3, 2, 1: k = int[0, i], swap order[i] and
 *              order[k] (torch.randperm(4) in distribution);
 *       then, for each op whose strength is not 0, in the order brightness,
 *       contrast, saturation, hue: factor = uniform(lo, hi) with
 *       [max(0, 1 - b), 1 + b] (likewise contrast, saturation) and
 *       [-hue, hue]. An op of strength 0 is skipped and draws nothing, as
 *       torchvision's None.
 *  4. grayscale: u = float; grayscale iff u < (float)p_gray.
 *
 * ---- Localized cropping (crop_mode PE_CROP_LOCAL) ----------------------
 * The defense CorruptEncoder's authors proposed against composite poisons:
 * both views of an image are cut from one random local region of it, so
 * they overlap and cannot land on different halves of a composite. For a
 * W x H image, occurrence index, epoch and seed:
 *  a. region = pe_rrc_params(R, W, H, local_scale, local_ratio) on the
 *     region stream R = pe_rng_region_stream(seed, epoch, index) (rng.h):
 *     RandomResizedCrop's box, drawn exactly as step 1 above, with the
 *     area fraction in local_scale (default 0.2 to 0.5) and the aspect
 *     ratio in local_ratio (default 3/4 to 4/3). The region stream has its
 *     own key, so it shares no word with the view streams, and both views
 *     see the same region (each view recomputes it from the same stream).
 *  b. each view v (0, 1): all of steps 1-4 on its usual view stream
 *     pe_rng_stream(seed, epoch, index, v), with the region as the image:
 *     the crop is drawn on a region.w x region.h image with scale and
 *     ratio as usual, then moved by the region's origin (box.i +=
 *     region.i, box.j += region.j). The views' boxes therefore lie inside
 *     the region, and a view's area is scale x local_scale of the image's
 *     (up to rounding). Flip, jitter and grayscale draw as before.
 * The region's own ten-try fallback (rare with the defaults; never with
 * them on a square image of 2 x 2 pixels or more) is RandomResizedCrop's
 * centre crop, which may exceed local_scale. In the default mode
 * (PE_CROP_INDEPENDENT) no region is drawn and each view's crop is drawn
 * on the whole image, exactly as before this option existed.
 * Like the view draws, the region needs only W and H (pe_aug_draw_view).
 *
 * Pixel semantics, each as Pillow computes it on the view's uint8 image:
 *  - brightness f: Image.blend(black, im, f);
 *  - contrast f:   Image.blend(mean-grey, im, f), mean = int(m + 0.5) of
 *                  the mean m of im.convert("L");
 *  - saturation f: Image.blend(im.convert("L").convert(mode), im, f);
 *  - hue h:        im.convert("HSV"), H += uint8(int(h * 255)) mod 256,
 *                  back with convert("RGB");
 *  - blend(a, b, f) is Pillow's (float)a + f * (float)(b - a), clipped to
 *    [0, 255] and truncated; f is a C float, as Pillow receives it.
 *  On a 1-channel (L) image saturation and hue change nothing: torchvision's
 *  adjust_hue returns L images unchanged, and Pillow's Color enhancer on L
 *  blends the image with itself. Grayscale on L is the identity too.
 *
 * Threads: every function is reentrant; a pe_aug_scratch belongs to one
 * thread at a time.
 */
#ifndef PE_AUGMENT_H
#define PE_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h" /* pe_aug_job */
#include "image.h"
#include "rng.h"

/* A crop box in torchvision's terms: top row i, left column j, height h,
 * width w, in source pixels. */
typedef struct pe_box {
    uint32_t i, j, h, w;
} pe_box;

/* ColorJitter's ops, in torchvision's numbering (ColorJitter.forward's
 * fn_id). */
enum {
    PE_JITTER_BRIGHTNESS = 0,
    PE_JITTER_CONTRAST = 1,
    PE_JITTER_SATURATION = 2,
    PE_JITTER_HUE = 3,
};

/* How the two views' crops relate (see "Localized cropping" above). */
typedef enum pe_crop_mode {
    PE_CROP_INDEPENDENT = 0, /* each view's crop anywhere in the image */
    PE_CROP_LOCAL = 1,       /* both inside one random region */
} pe_crop_mode;

typedef struct pe_aug_opts {
    uint32_t size;      /* output views are size x size */
    uint32_t channels;  /* 0: as the source; 3: an L source is replicated
                           to RGB, exactly as PIL's convert("RGB") before
                           the transforms would give */
    double scale[2];    /* RandomResizedCrop area fraction, lo <= hi */
    double ratio[2];    /* RandomResizedCrop aspect w/h, 0 < lo <= hi */
    double p_flip;      /* RandomHorizontalFlip probability */
    double p_jitter;    /* RandomApply probability of ColorJitter */
    double brightness;  /* ColorJitter strengths as single numbers: */
    double contrast;    /*   b, c, s >= 0 give factors in */
    double saturation;  /*   [max(0, 1 - b), 1 + b]; hue in [0, 0.5] */
    double hue;         /*   gives [-hue, hue]. 0 disables an op. */
    double p_gray;      /* RandomGrayscale probability */
    float mean[3];      /* Normalize, per output channel (only [0] for */
    float std[3];       /*   1-channel output); std != 0 */
    uint32_t crop_mode; /* pe_crop_mode; 0 (independent) by default */
    double local_scale[2]; /* PE_CROP_LOCAL: the region's area fraction */
    double local_ratio[2]; /* PE_CROP_LOCAL: the region's aspect w/h;
                              both checked as scale and ratio, and only in
                              local mode */
} pe_aug_opts;

/* Every random choice of one view. factor[k] is meaningful when jitter is
 * set and op k is enabled (its strength is not 0). */
typedef struct pe_aug_params {
    pe_box box;        /* crop, before the resize to size x size */
    uint8_t flip;      /* horizontal flip */
    uint8_t jitter;    /* ColorJitter applied */
    uint8_t order[4];  /* PE_JITTER_* in the order applied */
    uint8_t enabled[4];/* op k has a nonzero strength */
    float factor[4];   /* by PE_JITTER_*: the drawn factor */
    uint8_t gray;      /* grayscale */
} pe_aug_params;

/* Reusable buffers of one thread's views. A zeroed struct is valid;
 * pe_aug_scratch_free releases what the calls grew. */
typedef struct pe_aug_scratch {
    uint8_t *crop;   /* the crop box's pixels, before resizing */
    size_t crop_cap; /* bytes allocated at crop */
} pe_aug_scratch;

void pe_aug_scratch_free(pe_aug_scratch *s);

/* The defaults of BadEncoder's SimCLR CIFAR-10 pipeline: size 32, channels
 * 0, scale (0.08, 1), ratio (3/4, 4/3), flip 0.5, ColorJitter(0.4, 0.4,
 * 0.4, 0.1) with p 0.8, grayscale 0.2, CIFAR-10 mean (0.4914, 0.4822,
 * 0.4465) and std (0.2023, 0.1994, 0.2010); independent crops, and for
 * local mode local_scale (0.2, 0.5), local_ratio (3/4, 4/3). */
void pe_aug_opts_default(pe_aug_opts *o);

/* Returns 0, or PE_EUSAGE (with a message naming the option) when o is
 * out of the ranges documented on its fields. */
int pe_aug_opts_check(const pe_aug_opts *o);

/* torchvision 0.14's RandomResizedCrop.get_params on a W x H image with
 * our draws (order above). A try draws s and l, takes
 *     area = H * W * s,  aspect = (float)exp(l)
 *     w = round(sqrt(area * aspect)),  h = round(sqrt(area / aspect))
 * in double (round half to even, as Python's round) and is accepted when
 * 0 < w <= W and 0 < h <= H. After ten rejections the fallback is the
 * centre crop of the whole image clamped to the ratio bounds:
 * W/H < ratio_lo gives w = W, h = round(W / ratio_lo); W/H > ratio_hi gives
 * h = H, w = round(H * ratio_hi); then i = (H - h) / 2, j = (W - w) / 2.
 * Deviations: aspect is exp correctly rounded to float, where torch.exp's
 * float32 kernel is one ulp off for some 8% of arguments; that moves a
 * box only when sqrt(area * aspect) lies within about 1e-7 (relative) of a
 * half-integer. Where torchvision would return an empty box (a fallback
 * dimension rounding to 0, only with extreme ratios) the dimension is 1.
 * Returns 0, or PE_EUSAGE for an empty image or bad scale or ratio. */
int pe_rrc_params(pe_rng *r, uint32_t W, uint32_t H, double scale_lo,
                  double scale_hi, double ratio_lo, double ratio_hi,
                  pe_box *box);

/* Draws all of one view's parameters for a W x H source (order above).
 * The draws need only W and H, not pixels: a GPU port can run this on the
 * host (a few dozen words of Philox per view, plus exp, log and sqrt in
 * double, whose device versions may round differently) and ship the
 * pe_aug_params. Returns 0 or PE_EUSAGE (bad options or empty image). */
int pe_aug_draw(pe_rng *r, uint32_t W, uint32_t H, const pe_aug_opts *o,
                pe_aug_params *p);

/* Localized cropping's region (step a above): pe_rrc_params on r with
 * o->local_scale and o->local_ratio, whatever o->crop_mode. r is normally
 * pe_rng_region_stream(seed, epoch, index). Returns 0 or PE_EUSAGE. */
int pe_aug_draw_region(pe_rng *r, uint32_t W, uint32_t H,
                       const pe_aug_opts *o, pe_box *region);

/* All of view `view`'s parameters for occurrence index of epoch under seed
 * on a W x H source, in o->crop_mode: independent, pe_aug_draw on
 * pe_rng_stream(seed, epoch, index, view); local, the region (step a) and
 * then the view inside it (step b). region (may be NULL) receives the
 * region, or the whole image in independent mode. This is what
 * pe_augment_view draws. Returns 0 or PE_EUSAGE. */
int pe_aug_draw_view(uint64_t seed, uint64_t epoch, uint64_t index,
                     uint32_t view, uint32_t W, uint32_t H,
                     const pe_aug_opts *o, pe_aug_params *p, pe_box *region);

/* F.resized_crop on PIL: src.crop((j, i, j + w, i + h)).resize((size,
 * size), BILINEAR), into *dst (allocated here; must be empty). The crop
 * is real: Pillow's filter reads no pixel outside the box, unlike a resize
 * with box= on the whole image, which reads across the box's edges. s
 * may be NULL (a temporary buffer is used). Returns 0, ENOMEM, or
 * PE_EUSAGE when the box leaves src or is empty. */
int pe_aug_resized_crop(const pe_image *src, const pe_box *box,
                        uint32_t size, pe_image *dst, pe_aug_scratch *s);

/* In place, Pillow's semantics as listed above. hflip is
 * transpose(FLIP_LEFT_RIGHT). The factor functions take any finite factor
 * (Pillow clips when extrapolating); pe_aug_hue returns PE_EUSAGE unless
 * -0.5 <= h <= 0.5, as torchvision raises. grayscale is torchvision's
 * rgb_to_grayscale with as many output channels as input: convert("L"),
 * replicated to 3 channels for RGB. Images must be non-empty. */
void pe_aug_hflip(pe_image *im);
void pe_aug_brightness(pe_image *im, float f);
void pe_aug_contrast(pe_image *im, float f);
void pe_aug_saturation(pe_image *im, float f);
int pe_aug_hue(pe_image *im, float h);
void pe_aug_grayscale(pe_image *im);

/* ToTensor then Normalize: out[c][y][x] = (v / 255.0f - mean[c]) / std[c]
 * in float arithmetic, as torch computes it. out_c is im->c, or 3 for an L
 * image (replicated). out holds out_c * h * w floats, (C, H, W). */
void pe_aug_normalize(const pe_image *im, uint32_t out_c, const float *mean,
                      const float *std, float *out);

/* Applies drawn parameters to src: resized crop, flip, jitter in p's order,
 * grayscale, normalisation into out, which holds C * size * size floats,
 * (C, size, size), C = o->channels or src->c when that is 0. s may be
 * NULL (buffers are then allocated per call). The resize still allocates
 * its output and intermediate itself (pe_image_resize_bilinear has no
 * caller-buffer form). Returns 0, ENOMEM, or PE_EUSAGE. */
int pe_aug_apply(const pe_image *src, const pe_aug_opts *o,
                 const pe_aug_params *p, float *out, pe_aug_scratch *s);

/* A view's parameters p on a w x h x c source at byte offset `offset` of
 * a batch's pixel buffer, as the job of backend.h's augment (the GPU
 * renders it with the bytes pe_aug_apply gives for the same p; out_c there
 * is o->channels, or c when that is 0). */
void pe_aug_job_of(const pe_aug_params *p, uint32_t w, uint32_t h,
                   uint32_t c, uint64_t offset, pe_aug_job *out);

/* One view: pe_aug_draw_view (in the default independent mode, pe_aug_draw
 * on pe_rng_stream(seed, epoch, index, view)), then pe_aug_apply. The
 * result depends only on src, o and (seed, epoch, index, view). s as for
 * pe_aug_apply. Returns 0, ENOMEM, or PE_EUSAGE (bad options, empty
 * image). */
int pe_augment_view(const pe_image *src, const pe_aug_opts *o, uint64_t seed,
                    uint64_t epoch, uint64_t index, uint32_t view,
                    float *out /* (C, size, size) */, pe_aug_scratch *s);

#endif
