/*
 * png.c - PNG decoding and encoding through libpng 1.6.
 *
 * For: turning untrusted PNG bytes into a pe_image the way Pillow's
 * Image.open(...).convert("L" or "RGB") sees them (gray and gray+alpha ->
 * 1 channel; RGB, RGBA and palette -> 3; alpha and tRNS dropped, not
 * composited; 1/2/4-bit gray scaled to 0..255; 16-bit samples keep their
 * high byte), with limits on pixels, chunk memory and time; and writing an
 * 8-bit gray or RGB pe_image as PNG for export.
 * Not for: gamma or colour management (gAMA, cHRM, iCCP, sRGB are not
 * applied, as Pillow's convert does not), APNG frames, text chunks, or
 * orientation from eXIf chunks.
 *
 * libpng reports errors by longjmp to png_jmpbuf(png). The setjmp lives in
 * png_read_run() / png_write_run(), and everything they acquire is kept in
 * a context owned by the caller, which releases it in one place; no local of
 * a setjmp frame is read after the jump.
 */
#include "codec.h"
#include "pe.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

/* Bounds for hostile files: IHDR dimensions libpng accepts at all (the
 * pixel limit of pe_decode_opts is checked after IHDR, before any pixel
 * memory), how many ancillary chunks it caches (sPLT, text, unknown), and
 * the largest single chunk allocation, which bounds zTXt/iCCP inflation. */
#define PNG_MAX_DIMENSION (1u << 24)
#define PNG_MAX_CACHED_CHUNKS 128
#define PNG_MAX_CHUNK_ALLOC (8u << 20)

/* First member of both contexts: where the libpng error handler leaves the
 * return code and message. */
typedef struct png_errstate {
    int rc; /* 0 until something fails; the first failure wins */
    char msg[256];
} png_errstate;

typedef struct png_read_ctx {
    png_errstate err;
    png_structp png;
    png_infop info;
    const uint8_t *buf;
    size_t len, pos;
    double deadline; /* 0 = none */
    pe_image im;     /* the output, freed by the caller on failure */
} png_read_ctx;

typedef struct png_write_ctx {
    png_errstate err;
    png_structp png;
    png_infop info;
    uint8_t *buf; /* the encoded file so far, malloc'd */
    size_t len, cap;
} png_write_ctx;

static void err_set(png_errstate *e, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void err_set(png_errstate *e, int rc, const char *fmt, ...) {
    if (e->rc) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->rc = rc;
}

static void on_png_error(png_structp png, png_const_charp text) {
    png_errstate *e = png_get_error_ptr(png);
    err_set(e, PE_EFORMAT, "%s", text);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

/* libpng's allocator, so that running out of memory reads as ENOMEM
 * rather than as libpng's "Out of memory" PE_EFORMAT. */
static png_voidp on_png_malloc(png_structp png, png_alloc_size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) err_set(png_get_mem_ptr(png), ENOMEM, "out of memory (%zu bytes)",
                    (size_t)n);
    return p;
}

static void on_png_free(png_structp png, png_voidp p) {
    (void)png;
    free(p);
}

static int deadline_passed(double deadline) {
    return deadline != 0 && pe_now() > deadline;
}

/* libpng's input: the caller's buffer. Reading past its end is the only
 * way a cut file shows, so it is an error, never a short read. */
static void on_png_read(png_structp png, png_bytep dst, size_t n) {
    png_read_ctx *ctx = png_get_io_ptr(png);
    if (deadline_passed(ctx->deadline)) {
        err_set(&ctx->err, PE_ETIMEOUT, "decode deadline passed");
        png_error(png, "decode deadline passed");
    }
    if (n > ctx->len - ctx->pos) png_error(png, "truncated");
    memcpy(dst, ctx->buf + ctx->pos, n);
    ctx->pos += n;
}

/* Called after every row of every pass. */
static void on_png_row(png_structp png, png_uint_32 row, int pass) {
    (void)row;
    (void)pass;
    png_read_ctx *ctx = png_get_io_ptr(png);
    if (deadline_passed(ctx->deadline)) {
        err_set(&ctx->err, PE_ETIMEOUT, "decode deadline passed");
        png_error(png, "decode deadline passed");
    }
}

static int read_fail(png_read_ctx *ctx, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int read_fail(png_read_ctx *ctx, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err.msg, sizeof ctx->err.msg, fmt, ap);
    va_end(ap);
    ctx->err.rc = rc;
    return rc;
}

static int png_read_run(png_read_ctx *ctx, const pe_decode_opts *opts,
                        pe_decode_info *info) {
    png_structp png = ctx->png;
    png_infop pinfo = ctx->info;

    if (setjmp(png_jmpbuf(png))) return ctx->err.rc ? ctx->err.rc : PE_EFORMAT;

    png_set_user_limits(png, PNG_MAX_DIMENSION, PNG_MAX_DIMENSION);
    png_set_chunk_cache_max(png, PNG_MAX_CACHED_CHUNKS);
    png_set_chunk_malloc_max(png, PNG_MAX_CHUNK_ALLOC);
    /* libpng only warns ("chunk data is too large") when a chunk passes
     * that bound and then still allocates the chunk's declared length for
     * these (a 60-byte file declaring a 2 GB tEXt makes it malloc 2 GB).
     * The decoder uses none of them, so they are skipped unread. */
    static const png_byte unused_chunks[] = "tEXt\0zTXt\0iTXt\0sPLT\0eXIf\0"
                                            "pCAL\0sCAL\0iCCP";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, unused_chunks,
                                (int)(sizeof unused_chunks / 5));
    png_set_read_fn(png, ctx, on_png_read);
    png_set_read_status_fn(png, on_png_row);
    png_read_info(png, pinfo);

    png_uint_32 w, h;
    int depth, color_type, interlace;
    png_get_IHDR(png, pinfo, &w, &h, &depth, &color_type, &interlace, NULL,
                 NULL);
    uint64_t max_pixels = opts && opts->max_pixels ? opts->max_pixels
                                                   : PE_DEFAULT_MAX_PIXELS;
    if ((uint64_t)w * h > max_pixels)
        return read_fail(ctx, PE_ETOOBIG,
                         "image %ux%u exceeds the pixel limit (%llu pixels)",
                         (unsigned)w, (unsigned)h,
                         (unsigned long long)max_pixels);

    uint32_t orig_c = png_get_channels(png, pinfo);
    uint32_t c = (color_type & PNG_COLOR_MASK_COLOR) ? 3 : 1;
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        /* Palette entries are RGB; tRNS makes them RGBA. */
        orig_c = png_get_valid(png, pinfo, PNG_INFO_tRNS) ? 4 : 3;
        png_set_palette_to_rgb(png);
    } else if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8) {
        png_set_expand_gray_1_2_4_to_8(png);
    }
    if (depth == 16) png_set_strip_16(png);
    /* Drops a real alpha channel and any alpha that tRNS expanded into. */
    png_set_strip_alpha(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, pinfo);

    /* The transforms above must yield exactly 8-bit, c-channel rows; a
     * mismatch would overrun the image, so check rather than trust. */
    if (png_get_bit_depth(png, pinfo) != 8 ||
        png_get_channels(png, pinfo) != c ||
        png_get_rowbytes(png, pinfo) != (size_t)w * c)
        return read_fail(ctx, PE_EFORMAT,
                         "unexpected row format after transforms (%d-bit, %d "
                         "channels, colour type %d)",
                         png_get_bit_depth(png, pinfo),
                         png_get_channels(png, pinfo), color_type);

    int rc = pe_image_alloc(&ctx->im, w, h, c);
    if (rc)
        return read_fail(ctx, rc, "cannot allocate %ux%ux%u pixels",
                         (unsigned)w, (unsigned)h, c);

    /* Rows are read in place; for Adam7 each pass fills in its pixels of
     * the rows the earlier passes started. */
    size_t stride = (size_t)w * c;
    for (int pass = 0; pass < passes; pass++)
        for (png_uint_32 y = 0; y < h; y++)
            png_read_row(png, ctx->im.px + (size_t)y * stride, NULL);
    /* No png_read_end(): every pixel is in, and the chunks after the image
     * data (often just IEND) need not be there, as for Pillow. */

    if (info) {
        info->format = PE_FORMAT_PNG;
        info->orig_w = w;
        info->orig_h = h;
        info->orig_c = orig_c;
        info->bits = (uint32_t)depth;
        info->orientation = 1;
        info->scale_num = 1;
        info->scale_den = 1;
        info->progressive = 0;
    }
    return 0;
}

int pe_decode_png(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                  pe_image *out, pe_decode_info *info) {
    PE_ASSERT(out && !out->px);
    if (!buf || len < 8 || png_sig_cmp(buf, 0, 8) != 0)
        return pe_fail(PE_EFORMAT, "not a PNG");

    int rc;
    pe_decode_info tmp_info;
    png_read_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return pe_fail(ENOMEM, "out of memory");
    ctx->buf = buf;
    ctx->len = len;
    ctx->deadline = opts ? opts->deadline : 0;

    ctx->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &ctx->err,
                                        on_png_error, on_png_warning,
                                        &ctx->err, on_png_malloc, on_png_free);
    if (!ctx->png) {
        rc = pe_fail(ENOMEM, "cannot create a libpng reader");
        goto cleanup;
    }
    ctx->info = png_create_info_struct(ctx->png);
    if (!ctx->info) {
        rc = pe_fail(ENOMEM, "cannot create a libpng reader");
        goto cleanup;
    }

    rc = png_read_run(ctx, opts, info ? &tmp_info : NULL);
    if (rc) {
        pe_fail(rc, "%s", ctx->err.msg[0] ? ctx->err.msg : pe_strerror(rc));
        goto cleanup;
    }
    *out = ctx->im;
    ctx->im = (pe_image){0};
    if (info) *info = tmp_info;

cleanup:
    if (ctx->png) png_destroy_read_struct(&ctx->png, &ctx->info, NULL);
    pe_image_free(&ctx->im);
    free(ctx);
    return rc;
}

/* libpng's output: a buffer that doubles as it fills. */
static void on_png_write(png_structp png, png_bytep src, size_t n) {
    png_write_ctx *ctx = png_get_io_ptr(png);
    if (n > ctx->cap - ctx->len) {
        size_t need = ctx->len + n;
        if (need < ctx->len) {
            err_set(&ctx->err, ENOMEM, "encoded PNG too large");
            png_error(png, "encoded PNG too large");
        }
        size_t cap = ctx->cap ? ctx->cap : 4096;
        while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        uint8_t *p = realloc(ctx->buf, cap);
        if (!p) {
            err_set(&ctx->err, ENOMEM, "out of memory for the encoded PNG");
            png_error(png, "out of memory");
        }
        ctx->buf = p;
        ctx->cap = cap;
    }
    memcpy(ctx->buf + ctx->len, src, n);
    ctx->len += n;
}

static void on_png_flush(png_structp png) { (void)png; }

static int png_write_run(png_write_ctx *ctx, const pe_image *im) {
    png_structp png = ctx->png;

    if (setjmp(png_jmpbuf(png))) return ctx->err.rc ? ctx->err.rc : PE_EFORMAT;

    png_set_write_fn(png, ctx, on_png_write, on_png_flush);
    png_set_IHDR(png, ctx->info, im->w, im->h, 8,
                 im->c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, ctx->info);
    size_t stride = (size_t)im->w * im->c;
    for (uint32_t y = 0; y < im->h; y++)
        png_write_row(png, im->px + (size_t)y * stride);
    png_write_end(png, NULL);
    return 0;
}

int pe_encode_png(const pe_image *im, uint8_t **out, size_t *out_len) {
    PE_ASSERT(im && out && out_len);
    PE_ASSERT(im->c == 1 || im->c == 3);
    if (im->w == 0 || im->h == 0 || !im->px)
        return pe_fail(PE_EFORMAT, "cannot encode an empty %ux%u image as PNG",
                       im->w, im->h);

    int rc;
    png_write_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return pe_fail(ENOMEM, "out of memory");
    ctx->png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, &ctx->err,
                                         on_png_error, on_png_warning,
                                         &ctx->err, on_png_malloc, on_png_free);
    if (!ctx->png) {
        rc = pe_fail(ENOMEM, "cannot create a libpng writer");
        goto cleanup;
    }
    ctx->info = png_create_info_struct(ctx->png);
    if (!ctx->info) {
        rc = pe_fail(ENOMEM, "cannot create a libpng writer");
        goto cleanup;
    }

    rc = png_write_run(ctx, im);
    if (rc) {
        pe_fail(rc, "%s", ctx->err.msg[0] ? ctx->err.msg : pe_strerror(rc));
        goto cleanup;
    }
    *out = ctx->buf;
    *out_len = ctx->len;
    ctx->buf = NULL;

cleanup:
    if (ctx->png) png_destroy_write_struct(&ctx->png, &ctx->info);
    free(ctx->buf);
    free(ctx);
    return rc;
}
