/*
 * fuzz_util.h - what the libFuzzer targets share: tight decode limits and
 * the contract checks every decoder and reader result goes through.
 *
 * Not for: anything outside tests/fuzz. The checks abort (a crash the
 * fuzzer reports with its input) when a library function breaks a promise
 * its header makes: output empty on failure, a message on failure, only the
 * documented return codes, a well-formed image on success.
 */
#ifndef PE_FUZZ_UTIL_H
#define PE_FUZZ_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dataset.h"
#include "pe.h"

/* Small enough that one input cannot use more than a few tens of MB (4M
 * pixels x 3 channels, plus a decoder's own buffers) nor run for long. */
#define FUZZ_MAX_PIXELS (4u << 20)
#define FUZZ_DEADLINE_S 1.0
#define FUZZ_MAX_SCANS 100

static inline pe_decode_opts fuzz_opts(void) {
    pe_decode_opts o;
    memset(&o, 0, sizeof o);
    o.max_pixels = FUZZ_MAX_PIXELS;
    o.max_scans = FUZZ_MAX_SCANS;
    o.deadline = pe_now() + FUZZ_DEADLINE_S;
    return o;
}

/* Where reads of whole outputs are summed so they are not optimised away. */
static volatile size_t fuzz_sink;

static inline _Noreturn void fuzz_broken(const char *what, int rc) {
    fprintf(stderr, "fuzz: contract broken: %s (rc %d, %s; message '%s')\n",
            what, rc, pe_strerror(rc), pe_errmsg());
    abort();
}

/* Reads every byte of the image so that ASan sees a buffer shorter than
 * w*h*c. */
static inline void fuzz_touch_image(const pe_image *im) {
    if (im->w == 0 || im->h == 0 || (im->c != 1 && im->c != 3) || !im->px)
        fuzz_broken("malformed image (zero side, bad channels or no pixels)", 0);
    size_t n = pe_image_size(im);
    size_t s = 0;
    for (size_t i = 0; i < n; i++) s += im->px[i];
    fuzz_sink += s;
}

/* The codec.h contract for pe_decode and the per-format decoders. */
static inline void fuzz_check_decode(int rc, const pe_image *im,
                                     const pe_decode_opts *o) {
    if (rc == 0) {
        fuzz_touch_image(im);
        if ((uint64_t)im->w * im->h > o->max_pixels)
            fuzz_broken("decoded image above max_pixels", rc);
        return;
    }
    if (im->px || im->w || im->h || im->c)
        fuzz_broken("output not empty after a failed decode", rc);
    if (rc != PE_EFORMAT && rc != PE_EUNSUPPORTED && rc != PE_ETOOBIG &&
        rc != PE_ETIMEOUT && rc != ENOMEM)
        fuzz_broken("undocumented return code from a decoder", rc);
    if (pe_errmsg()[0] == 0) fuzz_broken("failure without a message", rc);
}

/* pe_decode_info after a successful decode: the format asked for, a real
 * size, an orientation in 1..8 (1 when opts said no_orient), and output
 * dimensions that are the stored ones scaled by scale_num/scale_den
 * (rounded up, as libjpeg's DCT scaling) and transposed for 5..8. */
static inline void fuzz_check_info(const pe_image *im,
                                   const pe_decode_info *info, pe_format fmt,
                                   const pe_decode_opts *o) {
    if (info->format != fmt) fuzz_broken("info.format is not the decoder's", 0);
    if (info->orig_w == 0 || info->orig_h == 0)
        fuzz_broken("info.orig_w/orig_h missing", 0);
    if (info->orientation < 1 || info->orientation > 8 ||
        (o->no_orient && info->orientation != 1))
        fuzz_broken("info.orientation out of range", info->orientation);
    if (info->scale_den < 1 || info->scale_num < 1 ||
        info->scale_num > info->scale_den)
        fuzz_broken("info.scale_num/scale_den out of range", info->scale_num);
    uint32_t sw = im->w, sh = im->h;
    if (info->orientation >= 5) {
        sw = im->h;
        sh = im->w;
    }
    uint64_t num = (uint64_t)info->scale_num, den = (uint64_t)info->scale_den;
    if ((info->orig_w * num + den - 1) / den != sw ||
        (info->orig_h * num + den - 1) / den != sh)
        fuzz_broken("output size does not follow from orig size, scale and "
                    "orientation", 0);
}

/* A dataset reader's result: 0, the callback's own code, or a documented
 * failure with a message. */
static inline void fuzz_check_reader(int rc, int cb_rc) {
    if (rc == 0 || (cb_rc != 0 && rc == cb_rc)) return;
    if (rc != PE_EFORMAT && rc != PE_ETOOBIG && rc != ENOMEM)
        fuzz_broken("undocumented return code from a reader", rc);
    if (pe_errmsg()[0] == 0) fuzz_broken("failure without a message", rc);
}

/* Shared sample callback of the dataset readers: checks the record, reads
 * it whole, takes ownership of every third image (the header allows the
 * callback to steal img->px) and stops the read at stop_at. */
typedef struct fuzz_sample_ctx {
    uint64_t next;    /* index the next record must have */
    uint64_t stop_at; /* UINT64_MAX = never */
    int stop_rc;      /* returned at stop_at */
    uint32_t w, h, c; /* expected shape; 0 = any */
    int32_t label_min, label_max;
    int allow_none;   /* PE_LABEL_NONE allowed */
} fuzz_sample_ctx;

static inline int fuzz_sample_fn(void *vctx, uint64_t index, pe_image *img,
                                 int32_t label) {
    fuzz_sample_ctx *ctx = vctx;
    if (index != ctx->next) fuzz_broken("records out of order", 0);
    ctx->next++;
    fuzz_touch_image(img);
    if ((ctx->w && img->w != ctx->w) || (ctx->h && img->h != ctx->h) ||
        (ctx->c && img->c != ctx->c))
        fuzz_broken("record of an unexpected shape", 0);
    if (label == PE_LABEL_NONE ? !ctx->allow_none
                               : label < ctx->label_min || label > ctx->label_max)
        fuzz_broken("label out of the documented range", (int)label);
    if (index % 3 == 1) {
        free(img->px);
        img->px = NULL;
    }
    if (index == ctx->stop_at) return ctx->stop_rc;
    return 0;
}

#endif
