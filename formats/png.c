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
 *
 * Speed: most files (8-bit gray, gray+alpha, RGB, RGBA or palette without
 * tRNS, not interlaced) take png_decode_fast() instead: the IDAT chunks are
 * inflated in one call to libdeflate (about twice zlib's speed; zlib was
 * three quarters of PNG decoding) and unfiltered here. It decodes only
 * files that libpng decodes without error, to the same bytes, and declines
 * everything else before writing any output: other formats, anything
 * libpng would reject or warn about in the chunks it reads, limits and
 * deadlines, and any inflate or filter error. libpng then decodes the file
 * as before, so its errors and messages are unchanged. PE_PNG_LIBPNG=1 in
 * the environment sends every file to libpng (read on each call, for the
 * tests that compare the two).
 */
#include "codec.h"
#include "pe.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>
#include <png.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

/* ---- the libdeflate path ---------------------------------------------- */

/* Inflated image data (h rows of 1 + w * channels bytes) above this goes to
 * libpng, which needs only a row at a time. */
#define PNG_FAST_MAX_RAW ((size_t)64 << 20)

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

/* One chunk of buf, checked the way libpng's reader checks every chunk
 * header: a 31-bit length within PNG_MAX_CHUNK_ALLOC, four ASCII letters.
 * Also whole inside buf, CRC included. */
typedef struct png_chunk {
    uint32_t len;
    uint32_t type; /* the four letters, big-endian */
    const uint8_t *data;
    size_t next; /* offset of the following chunk */
} png_chunk;

#define PNG_TYPE(a, b, c, d)                                                  \
    ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 |         \
     (uint32_t)(d))
#define PNG_IS_CRITICAL(type) (((type) & 0x20000000u) == 0)

static int chunk_at(const uint8_t *buf, size_t len, size_t pos,
                    png_chunk *ck) {
    if (pos > len || len - pos < 12) return 0;
    ck->len = be32(buf + pos);
    ck->type = be32(buf + pos + 4);
    if (ck->len > PNG_MAX_CHUNK_ALLOC || len - pos - 12 < ck->len) return 0;
    for (int i = 0; i < 4; i++) {
        const uint8_t ch = buf[pos + 4 + i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z'))) return 0;
    }
    ck->data = buf + pos + 8;
    ck->next = pos + 12 + ck->len;
    return 1;
}

static int chunk_crc_ok(const png_chunk *ck) {
    return libdeflate_crc32(0, ck->data - 4, (size_t)ck->len + 4) ==
           be32(ck->data + ck->len);
}

#ifdef __SSE2__
/* Paeth for 3- and 4-byte pixels, one pixel per step in 16-bit lanes (the
 * left neighbour of each byte is the previous result, so pixels cannot run
 * in parallel). Same predictor and ties as the scalar loop. */
static void unpaeth_sse2(uint8_t *restrict row, const uint8_t *restrict prev,
                         size_t n, size_t bpp) {
    const __m128i zero = _mm_setzero_si128(), lo8 = _mm_set1_epi16(0xFF);
    __m128i a = zero, c = zero; /* left and upper-left pixels */
    for (size_t i = 0; i + bpp <= n; i += bpp) {
        uint32_t bv = 0, xv = 0;
        memcpy(&bv, prev + i, bpp);
        memcpy(&xv, row + i, bpp);
        const __m128i b = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)bv), zero);
        const __m128i x = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)xv), zero);
        const __m128i p = _mm_sub_epi16(b, c), q = _mm_sub_epi16(a, c);
        const __m128i r = _mm_add_epi16(p, q);
        __m128i pa = _mm_max_epi16(p, _mm_sub_epi16(zero, p));
        const __m128i pb = _mm_max_epi16(q, _mm_sub_epi16(zero, q));
        const __m128i pc = _mm_max_epi16(r, _mm_sub_epi16(zero, r));
        __m128i m = _mm_cmplt_epi16(pb, pa);
        __m128i pred = _mm_or_si128(_mm_and_si128(m, b), _mm_andnot_si128(m, a));
        pa = _mm_min_epi16(pa, pb);
        m = _mm_cmplt_epi16(pc, pa);
        pred = _mm_or_si128(_mm_and_si128(m, c), _mm_andnot_si128(m, pred));
        a = _mm_and_si128(_mm_add_epi16(x, pred), lo8);
        const uint32_t out = (uint32_t)_mm_cvtsi128_si32(_mm_packus_epi16(a, a));
        memcpy(row + i, &out, bpp);
        c = b;
    }
}
#endif

/* Reverses one row's filter in place (PNG spec section 9; libpng's
 * png_read_filter_row computes the same). prev is the row above,
 * already unfiltered, or zeros. */
static void unfilter_row(uint8_t *restrict row, const uint8_t *restrict prev,
                         size_t n, size_t bpp, int filter) {
    size_t i = 0;
    switch (filter) {
    case 1: /* Sub */
        for (i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + row[i - bpp]);
        break;
    case 2: /* Up */
#ifdef __SSE2__
        for (; i + 16 <= n; i += 16) {
            const __m128i x = _mm_loadu_si128((const __m128i *)(row + i));
            const __m128i b = _mm_loadu_si128((const __m128i *)(prev + i));
            _mm_storeu_si128((__m128i *)(row + i), _mm_add_epi8(x, b));
        }
#endif
        for (; i < n; i++) row[i] = (uint8_t)(row[i] + prev[i]);
        break;
    case 3: /* Average */
        for (i = 0; i < bpp; i++) row[i] = (uint8_t)(row[i] + (prev[i] >> 1));
        for (; i < n; i++)
            row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
        break;
    case 4: /* Paeth */
#ifdef __SSE2__
        if (bpp >= 3) {
            unpaeth_sse2(row, prev, n, bpp);
            break;
        }
#endif
        for (i = 0; i < bpp; i++) row[i] = (uint8_t)(row[i] + prev[i]);
        for (; i < n; i++) {
            const int a = row[i - bpp], b = prev[i], c = prev[i - bpp];
            const int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
            const int pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
            row[i] = (uint8_t)(row[i] + pred);
        }
        break;
    default: /* 0: None */
        break;
    }
}

/* Whether PE_PNG_LIBPNG asks for libpng on every file. */
static int fast_disabled(void) {
    const char *e = getenv("PE_PNG_LIBPNG");
    return e && *e && strcmp(e, "0") != 0;
}

/* Decodes buf into *out (and *info) and returns 1, or returns 0 having
 * changed nothing: the caller then runs libpng. See the file comment for
 * what it takes; every check below stands for an error or a warning in
 * libpng's reader, or for a case left to it. */
static int png_decode_fast(const uint8_t *buf, size_t len,
                           const pe_decode_opts *opts, pe_image *out,
                           pe_decode_info *info) {
    const double deadline = opts ? opts->deadline : 0;
    if (fast_disabled() || deadline_passed(deadline)) return 0;

    png_chunk ck;
    if (!chunk_at(buf, len, 8, &ck) || ck.type != PNG_TYPE('I', 'H', 'D', 'R') ||
        ck.len != 13 || !chunk_crc_ok(&ck))
        return 0;
    const uint32_t w = be32(ck.data), h = be32(ck.data + 4);
    const int depth = ck.data[8], color = ck.data[9];
    if (w == 0 || h == 0 || w > PNG_MAX_DIMENSION || h > PNG_MAX_DIMENSION ||
        depth != 8 || ck.data[10] != 0 || ck.data[11] != 0 || ck.data[12] != 0)
        return 0;
    /* Samples per pixel in the file, and what pe keeps. */
    size_t bpp;
    uint32_t c;
    switch (color) {
    case PNG_COLOR_TYPE_GRAY: bpp = 1; c = 1; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: bpp = 2; c = 1; break;
    case PNG_COLOR_TYPE_RGB: bpp = 3; c = 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: bpp = 4; c = 3; break;
    case PNG_COLOR_TYPE_PALETTE: bpp = 1; c = 3; break;
    default: return 0;
    }
    const uint64_t max_pixels = opts && opts->max_pixels ? opts->max_pixels
                                                         : PE_DEFAULT_MAX_PIXELS;
    if ((uint64_t)w * h > max_pixels) return 0;
    const size_t rowbytes = (size_t)w * bpp;
    if ((uint64_t)h * (rowbytes + 1) > PNG_FAST_MAX_RAW) return 0;
    const size_t raw_len = (size_t)h * (rowbytes + 1);

    /* The chunks png_read_info() reads: before the first IDAT, PLTE once
     * for palette images only, and ancillary chunks (skipped, as libpng
     * only warns about them) but not tRNS, which changes orig_c. */
    uint8_t palette[256][3];
    int have_plte = 0;
    size_t pos = ck.next;
    for (;;) {
        if (!chunk_at(buf, len, pos, &ck)) return 0;
        if (ck.type == PNG_TYPE('I', 'D', 'A', 'T')) break;
        if (ck.type == PNG_TYPE('P', 'L', 'T', 'E')) {
            if (color != PNG_COLOR_TYPE_PALETTE || have_plte || ck.len == 0 ||
                ck.len % 3 != 0 || ck.len > 3 * 256 || !chunk_crc_ok(&ck))
                return 0;
            /* libpng keeps 256 entries, zeros past the file's. */
            memset(palette, 0, sizeof palette);
            memcpy(palette, ck.data, ck.len);
            have_plte = 1;
        } else if (PNG_IS_CRITICAL(ck.type) ||
                   ck.type == PNG_TYPE('t', 'R', 'N', 'S')) {
            return 0;
        }
        pos = ck.next;
    }
    if (color == PNG_COLOR_TYPE_PALETTE && !have_plte) return 0;

    /* The run of IDAT chunks, each whole with a good CRC. libpng reads
     * them in turn only until the data ends, so one more bad or cut chunk
     * might not matter to it: that case is left to libpng too. */
    const uint8_t *z = ck.data;
    size_t z_len = 0, n_idat = 0;
    const size_t idat_pos = pos;
    for (; chunk_at(buf, len, pos, &ck) &&
           ck.type == PNG_TYPE('I', 'D', 'A', 'T');
         pos = ck.next) {
        if (!chunk_crc_ok(&ck)) return 0;
        z_len += ck.len;
        n_idat++;
    }

    int ok = 0;
    uint8_t *joined = NULL, *raw = NULL;
    struct libdeflate_decompressor *d = NULL;
    pe_image im = {0};
    if (n_idat > 1) {
        /* One zlib stream across the chunks: join their data. */
        joined = malloc(z_len ? z_len : 1);
        if (!joined) goto done;
        size_t at = 0;
        for (pos = idat_pos; at < z_len; pos = ck.next) {
            chunk_at(buf, len, pos, &ck);
            memcpy(joined + at, ck.data, ck.len);
            at += ck.len;
        }
        z = joined;
    }
    /* zlib honours the window size in the stream header and libdeflate
     * does not: with a window smaller than the data, leave it to zlib. */
    if (z_len < 2 || (z[0] >> 4) > 7 ||
        ((z[0] >> 4) < 7 && raw_len > ((size_t)1 << ((z[0] >> 4) + 8))))
        goto done;
    raw = malloc(raw_len);
    d = libdeflate_alloc_decompressor();
    size_t used_in = 0, used_out = 0;
    if (!raw || !d ||
        libdeflate_zlib_decompress_ex(d, z, z_len, raw, raw_len, &used_in,
                                      &used_out) != LIBDEFLATE_SUCCESS ||
        used_out != raw_len || deadline_passed(deadline))
        goto done;

    /* Unfilter in place; the first row's "row above" is zeros, which the
     * spare byte before row 0's data cannot give, hence zero_row. */
    uint8_t *zero_row = calloc(1, rowbytes);
    if (!zero_row) goto done;
    const uint8_t *prev = zero_row;
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = raw + (size_t)y * (rowbytes + 1);
        if (row[0] > 4) break; /* libpng: "bad adaptive filter value" */
        unfilter_row(row + 1, prev, rowbytes, bpp, row[0]);
        prev = row + 1;
        if (y + 1 == h) ok = 1;
    }
    free(zero_row);
    if (!ok) goto done;
    ok = 0;
    if (pe_image_alloc(&im, w, h, c) != 0) goto done;

    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *src = raw + (size_t)y * (rowbytes + 1) + 1;
        uint8_t *dst = im.px + (size_t)y * w * c;
        switch (color) {
        case PNG_COLOR_TYPE_GRAY:
        case PNG_COLOR_TYPE_RGB:
            memcpy(dst, src, rowbytes);
            break;
        case PNG_COLOR_TYPE_GRAY_ALPHA:
            for (uint32_t x = 0; x < w; x++) dst[x] = src[2 * (size_t)x];
            break;
        case PNG_COLOR_TYPE_RGB_ALPHA:
            for (uint32_t x = 0; x < w; x++, dst += 3, src += 4) {
                dst[0] = src[0];
                dst[1] = src[1];
                dst[2] = src[2];
            }
            break;
        default: /* palette */
            for (uint32_t x = 0; x < w; x++, dst += 3)
                memcpy(dst, palette[src[x]], 3);
            break;
        }
    }
    *out = im;
    im = (pe_image){0};
    if (info) {
        info->format = PE_FORMAT_PNG;
        info->orig_w = w;
        info->orig_h = h;
        info->orig_c = color == PNG_COLOR_TYPE_PALETTE ? 3 : (uint32_t)bpp;
        info->bits = 8;
        info->orientation = 1;
        info->scale_num = 1;
        info->scale_den = 1;
        info->progressive = 0;
    }
    ok = 1;

done:
    pe_image_free(&im);
    libdeflate_free_decompressor(d);
    free(raw);
    free(joined);
    return ok;
}

int pe_decode_png(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                  pe_image *out, pe_decode_info *info) {
    PE_ASSERT(out && !out->px);
    if (!buf || len < 8 || png_sig_cmp(buf, 0, 8) != 0)
        return pe_fail(PE_EFORMAT, "not a PNG");
    if (png_decode_fast(buf, len, opts, out, info)) return 0;

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
