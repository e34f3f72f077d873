/*
 * jpeg.c - JPEG decoding through the libjpeg API of libjpeg-turbo.
 *
 * For: turning untrusted JPEG bytes into a pe_image the way Pillow's
 * Image.open(...).convert() would see them: gray -> 1 channel; YCbCr, RGB,
 * CMYK and YCCK -> 3 channels; EXIF orientation applied; optional DCT
 * scaling; limits on pixels, progressive scans and time.
 * Also encoding, as Pillow's Image.save(..., quality=Q) does with its
 * defaults (pe-craft's JPEG perturbation: a JPEG round trip of a target).
 * Not for: colour management (ICC profiles are ignored, as by Pillow's
 * convert), 12-bit JPEG (libjpeg rejects it: PE_EFORMAT), or the TurboJPEG
 * API.
 *
 * libjpeg reports errors by calling error_exit, which must not return: ours
 * longjmps back into jpeg_run(). Everything jpeg_run() acquires lives in a
 * jpeg_ctx owned by the caller's frame, so the longjmp never leaves a local
 * of the setjmp frame indeterminate and pe_decode_jpeg() frees it all in
 * one place. The encoder does the same with its own context.
 */
#include "codec.h"
#include "pe.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t before it */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#define DEFAULT_MAX_SCANS 500

typedef struct jpeg_ctx {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    int rc;              /* what to return after a longjmp */
    char msg[JMSG_LENGTH_MAX + 128];
    int max_scans;
    double deadline;     /* 0 = none */
    pe_image im;         /* the output, freed by the caller on failure */
    JSAMPLE *cmyk_row;   /* (W, 4) scanline for CMYK/YCCK sources */
    int orientation;     /* EXIF orientation found (1 = none or ignored) */
} jpeg_ctx;

static int ctx_fail(jpeg_ctx *ctx, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ctx_fail(jpeg_ctx *ctx, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    va_end(ap);
    ctx->rc = rc;
    return rc;
}

static _Noreturn void ctx_jump(jpeg_ctx *ctx) { longjmp(ctx->jb, 1); }

static void on_error_exit(j_common_ptr cinfo) {
    jpeg_ctx *ctx = cinfo->client_data;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    if (cinfo->err->msg_code == JERR_OUT_OF_MEMORY)
        ctx_fail(ctx, ENOMEM, "%s", text);
    else if (cinfo->err->msg_code == JERR_NO_SOI)
        ctx_fail(ctx, PE_EFORMAT, "not a JPEG (%s)", text);
    else
        ctx_fail(ctx, PE_EFORMAT, "%s", text);
    ctx_jump(ctx);
}

/* Warnings are never printed. Running out of data is an error, though:
 * libjpeg would otherwise pad the rest of the image with gray and call it a
 * success, where Pillow raises "image file is truncated" (even when only
 * the EOI marker is missing, since its entropy decoder reads ahead). Other
 * corrupt-data warnings (extraneous bytes, bad Huffman codes) are
 * tolerated, as Pillow tolerates them. */
static void on_emit_message(j_common_ptr cinfo, int msg_level) {
    if (msg_level >= 0) return; /* trace messages */
    cinfo->err->num_warnings++;
    int code = cinfo->err->msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER) {
        jpeg_ctx *ctx = cinfo->client_data;
        char text[JMSG_LENGTH_MAX];
        (*cinfo->err->format_message)(cinfo, text);
        ctx_fail(ctx, PE_EFORMAT, "truncated (%s)", text);
        ctx_jump(ctx);
    }
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

/* Called once per iMCU row while jpeg_start_decompress() absorbs the scans
 * of a multi-scan file and once per jpeg_read_scanlines() call, so a file
 * with thousands of tiny progressive scans (a known CPU bomb) or a slow
 * decode stops within one row of the limit. */
static void on_progress(j_common_ptr cinfo) {
    jpeg_ctx *ctx = cinfo->client_data;
    int scans = ((j_decompress_ptr)cinfo)->input_scan_number;
    if (scans > ctx->max_scans) {
        ctx_fail(ctx, PE_ETOOBIG, "too many scans (%d > %d)", scans,
                 ctx->max_scans);
        ctx_jump(ctx);
    }
    if (ctx->deadline != 0 && pe_now() > ctx->deadline) {
        ctx_fail(ctx, PE_ETIMEOUT, "decode deadline passed");
        ctx_jump(ctx);
    }
}

/* Pillow's CMYK -> RGB (Convert.c cmyk2rgb): R = (255-K) - (C*(255-K))/255
 * with its rounding MULDIV255. The samples are taken as Adobe-inverted
 * whether or not an Adobe APP14 marker is present, because Pillow does so
 * (JpegImagePlugin always uses rawmode "CMYK;I"): Photoshop writes inverted
 * CMYK, and CMYK JPEGs without the marker are rare. Honouring the marker
 * would make those rare files differ from what a Pillow pipeline sees. */
static inline unsigned muldiv255(unsigned a, unsigned b) {
    unsigned t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static void cmyk_to_rgb(uint8_t *rgb, const JSAMPLE *cmyk, uint32_t w) {
    for (uint32_t x = 0; x < w; x++, cmyk += 4, rgb += 3) {
        unsigned nk = cmyk[3]; /* inverted K is already 255 - K */
        for (int i = 0; i < 3; i++)
            rgb[i] = (uint8_t)(nk - muldiv255(255u - cmyk[i], nk));
    }
}

/* Smallest M in {1, 2, 4, 8} such that ceil(w*M/8) >= min_w and
 * ceil(h*M/8) >= min_h (0 = no bound on that side); 8 when even full size
 * falls short. Only power-of-two scales (as Pillow's draft() uses): the
 * 3/8..7/8 IDCTs save little time and cost fidelity after the resize
 * (measured on 16,045 JPEGs: mean difference to Pillow's full decode and
 * resize 1.02 -> 0.67 grey levels; docs/performance.md). */
static int choose_scale(uint32_t w, uint32_t h, uint32_t min_w,
                        uint32_t min_h) {
    for (int num = 1; num < 8; num *= 2) {
        uint64_t sw = ((uint64_t)w * (unsigned)num + 7) / 8;
        uint64_t sh = ((uint64_t)h * (unsigned)num + 7) / 8;
        if (sw >= min_w && sh >= min_h) return num;
    }
    return 8;
}

/* The first APP1 segment that carries EXIF (Pillow also uses the first). */
static int find_orientation(j_decompress_ptr cinfo) {
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
            memcmp(m->data, "Exif\0\0", 6) == 0)
            return pe_exif_orientation(m->data, m->data_length);
    }
    return 1;
}

/* Decodes into ctx->im. Every exit, normal or by longjmp, leaves the
 * resources in ctx for pe_decode_jpeg() to release. */
static int jpeg_run(jpeg_ctx *ctx, const uint8_t *buf, size_t len,
                    const pe_decode_opts *opts, pe_decode_info *info) {
    j_decompress_ptr cinfo = &ctx->cinfo;

    if (setjmp(ctx->jb)) return ctx->rc;

    jpeg_create_decompress(cinfo);
    cinfo->progress = &ctx->progress;
    jpeg_mem_src(cinfo, buf, (unsigned long)len);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
    if (jpeg_read_header(cinfo, TRUE) != JPEG_HEADER_OK)
        return ctx_fail(ctx, PE_EFORMAT, "no image in the JPEG stream");

    uint32_t w = cinfo->image_width, h = cinfo->image_height;
    uint64_t max_pixels = opts && opts->max_pixels ? opts->max_pixels
                                                   : PE_DEFAULT_MAX_PIXELS;
    if ((uint64_t)w * h > max_pixels)
        return ctx_fail(ctx, PE_ETOOBIG,
                        "image %ux%u exceeds the pixel limit (%llu pixels)",
                        w, h, (unsigned long long)max_pixels);

    uint32_t c;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo->out_color_space = JCS_GRAYSCALE;
        c = 1;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo->out_color_space = JCS_RGB;
        c = 3;
        break;
    case JCS_CMYK:
    case JCS_YCCK: /* libjpeg turns YCCK into CMYK */
        cinfo->out_color_space = JCS_CMYK;
        c = 3;
        break;
    default:
        return ctx_fail(ctx, PE_EUNSUPPORTED,
                        "unsupported JPEG colour space (%d components)",
                        cinfo->num_components);
    }

    ctx->orientation = opts && opts->no_orient ? 1 : find_orientation(cinfo);

    int num = 8;
    if (opts && (opts->min_w || opts->min_h)) {
        /* The bounds apply to the image after orientation; orientations 5..8
         * transpose it, so the stored image must meet the transposed box. */
        int transposed = ctx->orientation >= 5;
        num = choose_scale(w, h, transposed ? opts->min_h : opts->min_w,
                           transposed ? opts->min_w : opts->min_h);
    }
    cinfo->scale_num = (unsigned)num;
    cinfo->scale_denom = 8;
    jpeg_calc_output_dimensions(cinfo);
    uint32_t ow = cinfo->output_width, oh = cinfo->output_height;

    int rc = pe_image_alloc(&ctx->im, ow, oh, c);
    if (rc)
        return ctx_fail(ctx, rc, "cannot allocate %ux%ux%u pixels", ow, oh, c);
    if (cinfo->out_color_space == JCS_CMYK) {
        ctx->cmyk_row = malloc((size_t)ow * 4);
        if (!ctx->cmyk_row)
            return ctx_fail(ctx, ENOMEM, "cannot allocate a %u-pixel row", ow);
    }

    /* For progressive and other multi-scan files this absorbs every scan. */
    jpeg_start_decompress(cinfo);
    int want_components = cinfo->out_color_space == JCS_CMYK ? 4 : (int)c;
    if (cinfo->output_components != want_components ||
        cinfo->output_width != ow || cinfo->output_height != oh)
        return ctx_fail(ctx, PE_EFORMAT,
                        "libjpeg output is %ux%ux%d, expected %ux%ux%d",
                        cinfo->output_width, cinfo->output_height,
                        cinfo->output_components, ow, oh, want_components);

    size_t stride = (size_t)ow * c;
    while (cinfo->output_scanline < oh) {
        JDIMENSION y = cinfo->output_scanline;
        uint8_t *dst = ctx->im.px + (size_t)y * stride;
        JSAMPROW row = ctx->cmyk_row ? ctx->cmyk_row : dst;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            return ctx_fail(ctx, PE_EFORMAT, "truncated (no data for row %u)",
                            (unsigned)y);
        if (ctx->cmyk_row) cmyk_to_rgb(dst, ctx->cmyk_row, ow);
    }
    /* Reads on to EOI: a file that stops short of it is truncated, as for
     * Pillow (whose suspending source raises "image file is truncated"). */
    jpeg_finish_decompress(cinfo);

    if (info) {
        info->format = PE_FORMAT_JPEG;
        info->orig_w = w;
        info->orig_h = h;
        info->orig_c = (uint32_t)cinfo->num_components;
        info->bits = (uint32_t)cinfo->data_precision;
        info->orientation = ctx->orientation;
        info->scale_num = num;
        info->scale_den = 8;
        info->progressive = cinfo->progressive_mode ? 1 : 0;
    }
    return 0;
}

int pe_decode_jpeg(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                   pe_image *out, pe_decode_info *info) {
    PE_ASSERT(out && !out->px);
    if (!buf || len < 3 || buf[0] != 0xFF || buf[1] != 0xD8 || buf[2] != 0xFF)
        return pe_fail(PE_EFORMAT, "not a JPEG");
    if (len > ULONG_MAX) /* jpeg_mem_src takes an unsigned long */
        return pe_fail(PE_ETOOBIG, "%zu bytes is too large for libjpeg", len);

    jpeg_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return pe_fail(ENOMEM, "out of memory");
    ctx->max_scans =
        opts && opts->max_scans > 0 ? opts->max_scans : DEFAULT_MAX_SCANS;
    ctx->deadline = opts ? opts->deadline : 0;
    ctx->orientation = 1;
    ctx->cinfo.err = jpeg_std_error(&ctx->err);
    ctx->err.error_exit = on_error_exit;
    ctx->err.emit_message = on_emit_message;
    ctx->err.output_message = on_output_message;
    ctx->progress.progress_monitor = on_progress;
    ctx->cinfo.client_data = ctx; /* jpeg_create_decompress keeps it */

    pe_decode_info tmp_info;
    int rc = jpeg_run(ctx, buf, len, opts, info ? &tmp_info : NULL);
    /* Safe after a longjmp: jpeg_create_decompress zeroes cinfo first (mem
     * stays NULL if it failed), and destroying never calls error_exit. */
    jpeg_destroy_decompress(&ctx->cinfo);
    free(ctx->cmyk_row);
    ctx->cmyk_row = NULL;
    if (rc) {
        pe_fail(rc, "%s", ctx->msg[0] ? ctx->msg : pe_strerror(rc));
        goto cleanup;
    }

    rc = pe_image_orient(&ctx->im, ctx->orientation);
    if (rc) {
        pe_fail(rc, "cannot apply EXIF orientation %d", ctx->orientation);
        goto cleanup;
    }
    *out = ctx->im;
    ctx->im = (pe_image){0};
    if (info) *info = tmp_info;

cleanup:
    pe_image_free(&ctx->im);
    free(ctx);
    return rc;
}

/* ---- encoding ---- */

typedef struct jpeg_enc_ctx {
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr err;
    struct jpeg_destination_mgr dest;
    jmp_buf jb;
    int rc;
    char msg[JMSG_LENGTH_MAX + 64];
    uint8_t *buf;   /* the output so far, grown by doubling; owned by the ctx */
    size_t cap;     /* bytes allocated at buf */
    size_t len;     /* bytes written, set when the stream is finished */
} jpeg_enc_ctx;

static _Noreturn void enc_jump(jpeg_enc_ctx *ctx, int rc, const char *text) {
    snprintf(ctx->msg, sizeof ctx->msg, "%s", text);
    ctx->rc = rc;
    longjmp(ctx->jb, 1);
}

static void enc_on_error_exit(j_common_ptr cinfo) {
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    enc_jump(cinfo->client_data,
             cinfo->err->msg_code == JERR_OUT_OF_MEMORY ? ENOMEM : PE_EFORMAT, text);
}

static void enc_init_destination(j_compress_ptr cinfo) {
    jpeg_enc_ctx *ctx = cinfo->client_data;
    cinfo->dest->next_output_byte = ctx->buf;
    cinfo->dest->free_in_buffer = ctx->cap;
}

/* Called with the buffer full: keep what is there and go on past it. */
static boolean enc_empty_output_buffer(j_compress_ptr cinfo) {
    jpeg_enc_ctx *ctx = cinfo->client_data;
    size_t cap = ctx->cap * 2;
    uint8_t *b = cap > ctx->cap ? realloc(ctx->buf, cap) : NULL;
    if (!b) enc_jump(ctx, ENOMEM, "out of memory for the JPEG stream");
    ctx->buf = b;
    cinfo->dest->next_output_byte = b + ctx->cap;
    cinfo->dest->free_in_buffer = cap - ctx->cap;
    ctx->cap = cap;
    return TRUE;
}

static void enc_term_destination(j_compress_ptr cinfo) {
    jpeg_enc_ctx *ctx = cinfo->client_data;
    ctx->len = ctx->cap - cinfo->dest->free_in_buffer;
}

/* Compresses im into ctx->buf. Every exit leaves the resources in ctx for
 * pe_encode_jpeg() to release. */
static int enc_run(jpeg_enc_ctx *ctx, const pe_image *im, int quality) {
    j_compress_ptr cinfo = &ctx->cinfo;
    if (setjmp(ctx->jb)) return ctx->rc;
    jpeg_create_compress(cinfo);
    cinfo->dest = &ctx->dest;
    cinfo->image_width = im->w;
    cinfo->image_height = im->h;
    cinfo->input_components = (int)im->c;
    cinfo->in_color_space = im->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    /* Pillow's defaults: baseline, 4:2:0 chroma for colour, the islow DCT,
     * the standard tables scaled by quality with baseline limits */
    jpeg_set_defaults(cinfo);
    jpeg_set_quality(cinfo, quality, TRUE);
    jpeg_start_compress(cinfo, TRUE);
    size_t stride = (size_t)im->w * im->c;
    while (cinfo->next_scanline < cinfo->image_height) {
        JSAMPROW row = (JSAMPROW)(im->px + (size_t)cinfo->next_scanline * stride);
        jpeg_write_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_compress(cinfo);
    return 0;
}

int pe_encode_jpeg(const pe_image *im, int quality, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (!im->px || !im->w || !im->h || (im->c != 1 && im->c != 3))
        return pe_fail(PE_EFORMAT, "no image to encode");
    if (im->w > JPEG_MAX_DIMENSION || im->h > JPEG_MAX_DIMENSION)
        return pe_fail(PE_EUNSUPPORTED, "%ux%u is over JPEG's %d pixels a side", im->w, im->h,
                       (int)JPEG_MAX_DIMENSION);
    if (quality < 1 || quality > 100)
        return pe_fail(PE_EUSAGE, "JPEG quality %d is not in 1..100", quality);
    jpeg_enc_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return pe_fail(ENOMEM, "out of memory");
    ctx->cap = pe_image_size(im) / 2 + 1024;
    if (!(ctx->buf = malloc(ctx->cap))) {
        free(ctx);
        return pe_fail(ENOMEM, "out of memory");
    }
    ctx->cinfo.err = jpeg_std_error(&ctx->err);
    ctx->err.error_exit = enc_on_error_exit;
    ctx->err.output_message = on_output_message;
    ctx->dest.init_destination = enc_init_destination;
    ctx->dest.empty_output_buffer = enc_empty_output_buffer;
    ctx->dest.term_destination = enc_term_destination;
    ctx->cinfo.client_data = ctx;
    int rc = enc_run(ctx, im, quality);
    /* safe after a longjmp, as for decoding */
    jpeg_destroy_compress(&ctx->cinfo);
    if (rc) {
        pe_fail(rc, "JPEG encoding: %s", ctx->msg[0] ? ctx->msg : pe_strerror(rc));
        free(ctx->buf);
    } else {
        *out = ctx->buf;
        *out_len = ctx->len;
    }
    free(ctx);
    return rc;
}
