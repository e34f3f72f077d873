/*
 * pnm.c - the netpbm formats: decoding PBM, PGM and PPM (P1..P6, plain
 * ASCII and raw binary, maxval 1..65535) and encoding raw PGM/PPM (P5/P6,
 * maxval 255) for export and pipes.
 *
 * Not for: PAM (P7, refused as unsupported), multi-image streams (only the
 * first image is read), or writing plain (ASCII) or 16-bit files.
 *
 * Samples are scaled to 8 bits as round(v * 255 / maxval), the meaning the
 * netpbm spec gives a sample (a fraction of maxval); for maxval 255 that is
 * the identity. Samples above maxval are rejected, as netpbm does.
 */
#include "codec.h"

#include "pe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pnm_reader {
    const uint8_t *buf;
    size_t len, pos;
} pnm_reader;

static int pnm_space(uint8_t b) {
    return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' ||
           b == '\f';
}

/* Skips whitespace and '#' comments (to end of line) between tokens. */
static void skip_space(pnm_reader *r) {
    while (r->pos < r->len) {
        uint8_t b = r->buf[r->pos];
        if (pnm_space(b)) {
            r->pos++;
        } else if (b == '#') {
            while (r->pos < r->len && r->buf[r->pos] != '\n' &&
                   r->buf[r->pos] != '\r')
                r->pos++;
        } else {
            break;
        }
    }
}

/* Reads one unsigned decimal header number no larger than max.
 * Returns 0, or PE_EFORMAT naming `what`. */
static int read_uint(pnm_reader *r, const char *what, uint32_t max,
                     uint32_t *out) {
    skip_space(r);
    if (r->pos >= r->len) return pe_fail(PE_EFORMAT, "pnm: truncated header (no %s)", what);
    uint8_t b = r->buf[r->pos];
    if (b < '0' || b > '9')
        return pe_fail(PE_EFORMAT, "pnm: %s is not a number", what);
    uint64_t v = 0;
    while (r->pos < r->len && r->buf[r->pos] >= '0' && r->buf[r->pos] <= '9') {
        v = v * 10 + (uint64_t)(r->buf[r->pos] - '0');
        if (v > max) return pe_fail(PE_EFORMAT, "pnm: %s is too large (over %u)", what, max);
        r->pos++;
    }
    /* A number must end at whitespace, a comment or the end of data;
     * "12x" is not 12. */
    if (r->pos < r->len && !pnm_space(r->buf[r->pos]) && r->buf[r->pos] != '#')
        return pe_fail(PE_EFORMAT, "pnm: %s is not a number", what);
    *out = (uint32_t)v;
    return 0;
}

/* round(v * 255 / maxval) for v <= maxval <= 65535, in integers. */
static uint8_t scale8(uint32_t v, uint32_t maxval) {
    return (uint8_t)((v * 255u + maxval / 2) / maxval);
}

static int deadline_passed(const pe_decode_opts *opts) {
    return opts && opts->deadline > 0 && pe_now() > opts->deadline;
}

/* Plain (ASCII) samples for P2/P3: decimal numbers separated by whitespace
 * (comments are tolerated between them, as netpbm does). */
static int read_plain(pnm_reader *r, pe_image *im, uint32_t maxval,
                      const pe_decode_opts *opts) {
    size_t row = (size_t)im->w * im->c;
    for (uint32_t y = 0; y < im->h; y++) {
        if (deadline_passed(opts))
            return pe_fail(PE_ETIMEOUT, "pnm: decode deadline passed at row %u", y);
        uint8_t *dst = im->px + (size_t)y * row;
        for (size_t i = 0; i < row; i++) {
            uint32_t v;
            skip_space(r);
            if (r->pos >= r->len)
                return pe_fail(PE_EFORMAT, "pnm: truncated (row %u of %u)", y, im->h);
            int rc = read_uint(r, "sample", 65535, &v);
            if (rc) return rc;
            if (v > maxval)
                return pe_fail(PE_EFORMAT, "pnm: sample %u exceeds maxval %u at row %u",
                               v, maxval, y);
            dst[i] = scale8(v, maxval);
        }
    }
    return 0;
}

/* Plain PBM (P1): '0' and '1' characters; whitespace between them is
 * optional. 1 is black. */
static int read_plain_bits(pnm_reader *r, pe_image *im,
                           const pe_decode_opts *opts) {
    for (uint32_t y = 0; y < im->h; y++) {
        if (deadline_passed(opts))
            return pe_fail(PE_ETIMEOUT, "pnm: decode deadline passed at row %u", y);
        uint8_t *dst = im->px + (size_t)y * im->w;
        for (uint32_t x = 0; x < im->w; x++) {
            skip_space(r);
            if (r->pos >= r->len)
                return pe_fail(PE_EFORMAT, "pnm: truncated (row %u of %u)", y, im->h);
            uint8_t b = r->buf[r->pos++];
            if (b != '0' && b != '1')
                return pe_fail(PE_EFORMAT, "pnm: bad PBM bit '%c' at row %u",
                               b >= 0x20 && b < 0x7f ? b : '?', y);
            dst[x] = b == '1' ? 0 : 255;
        }
    }
    return 0;
}

/* Raw samples for P4/P5/P6. The caller has checked that the whole raster
 * is present. */
static int read_raw(pnm_reader *r, pe_image *im, int bits, uint32_t maxval,
                    const pe_decode_opts *opts) {
    const uint8_t *src = r->buf + r->pos;
    size_t row = (size_t)im->w * im->c;
    for (uint32_t y = 0; y < im->h; y++) {
        if ((y & 63) == 0 && deadline_passed(opts))
            return pe_fail(PE_ETIMEOUT, "pnm: decode deadline passed at row %u", y);
        uint8_t *dst = im->px + (size_t)y * row;
        if (bits == 1) {
            for (uint32_t x = 0; x < im->w; x++)
                dst[x] = (src[x >> 3] >> (7 - (x & 7)) & 1) ? 0 : 255;
            src += ((size_t)im->w + 7) / 8;
        } else if (maxval == 255) {
            memcpy(dst, src, row);
            src += row;
        } else if (maxval < 256) {
            for (size_t i = 0; i < row; i++) {
                if (src[i] > maxval)
                    return pe_fail(PE_EFORMAT, "pnm: sample %u exceeds maxval %u at row %u",
                                   src[i], maxval, y);
                dst[i] = scale8(src[i], maxval);
            }
            src += row;
        } else {
            for (size_t i = 0; i < row; i++) {
                uint32_t v = (uint32_t)src[2 * i] << 8 | src[2 * i + 1];
                if (v > maxval)
                    return pe_fail(PE_EFORMAT, "pnm: sample %u exceeds maxval %u at row %u",
                                   v, maxval, y);
                dst[i] = scale8(v, maxval);
            }
            src += 2 * row;
        }
    }
    return 0;
}

int pe_decode_pnm(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                  pe_image *out, pe_decode_info *info) {
    PE_ASSERT(out != NULL && out->px == NULL);
    pe_decode_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    info->format = PE_FORMAT_PNM;
    info->orientation = 1;
    info->scale_num = info->scale_den = 1;

    pe_image im = {0};
    pnm_reader r = {buf, buf ? len : 0, 0};
    int rc = 0;

    if (r.len < 2 || buf[0] != 'P')
        return pe_fail(PE_EFORMAT, "pnm: bad magic (want P1..P6)");
    char kind = (char)buf[1];
    if (kind == '7')
        return pe_fail(PE_EUNSUPPORTED, "pnm: PAM (P7) is not supported");
    if (kind < '1' || kind > '6')
        return pe_fail(PE_EFORMAT, "pnm: bad magic (want P1..P6)");
    r.pos = 2;
    if (r.pos < r.len && !pnm_space(buf[r.pos]) && buf[r.pos] != '#')
        return pe_fail(PE_EFORMAT, "pnm: bad magic (want P1..P6)");

    int plain = kind <= '3';
    int is_bits = kind == '1' || kind == '4';
    uint32_t c = (kind == '3' || kind == '6') ? 3 : 1;
    uint32_t w, h, maxval = 1;
    /* 2^31-1 rejects nonsense early; the pixel limit does the real work. */
    if ((rc = read_uint(&r, "width", INT32_MAX, &w))) return rc;
    if ((rc = read_uint(&r, "height", INT32_MAX, &h))) return rc;
    if (!is_bits && (rc = read_uint(&r, "maxval", 65535, &maxval))) return rc;
    if (w == 0 || h == 0) return pe_fail(PE_EFORMAT, "pnm: empty image %ux%u", w, h);
    if (maxval == 0) return pe_fail(PE_EFORMAT, "pnm: maxval is 0");

    uint64_t max_pixels = opts && opts->max_pixels ? opts->max_pixels : PE_DEFAULT_MAX_PIXELS;
    if ((uint64_t)w * h > max_pixels)
        return pe_fail(PE_ETOOBIG, "pnm: %ux%u exceeds the pixel limit (%llu)", w, h,
                       (unsigned long long)max_pixels);

    info->orig_w = w;
    info->orig_h = h;
    info->orig_c = c;
    info->bits = is_bits ? 1 : maxval < 256 ? 8 : 16;

    /* Exactly one whitespace byte separates the header from a raw raster
     * (so a raster starting with a byte that looks like a space is not
     * skipped); a plain raster is tokenised and needs no such care. */
    if (plain) {
        /* Every sample takes at least one byte: refuse before allocating
         * when the data cannot possibly hold the claimed image. */
        uint64_t samples = (uint64_t)w * h * c; /* < 3 * 2^62 */
        if ((uint64_t)(r.len - r.pos) < samples)
            return pe_fail(PE_EFORMAT, "pnm: truncated (%ux%u image, %zu bytes of data)",
                           w, h, r.len - r.pos);
    } else {
        if (r.pos >= r.len) return pe_fail(PE_EFORMAT, "pnm: truncated (no raster)");
        if (!pnm_space(buf[r.pos]))
            return pe_fail(PE_EFORMAT, "pnm: no whitespace after the header");
        r.pos++;
        /* Under 2^34 in 64 bits; row * h can still overflow size_t when a
         * caller raises max_pixels, or on a 32-bit host. */
        uint64_t row = is_bits ? ((uint64_t)w + 7) / 8
                               : (uint64_t)w * c * (maxval < 256 ? 1 : 2);
        if (row > SIZE_MAX || h > SIZE_MAX / row)
            return pe_fail(PE_ETOOBIG, "pnm: raster size overflows");
        size_t need = (size_t)row * h;
        if (r.len - r.pos < need)
            return pe_fail(PE_EFORMAT, "pnm: truncated (raster needs %zu bytes, %zu present)",
                           need, r.len - r.pos);
    }

    if ((rc = pe_image_alloc(&im, w, h, c))) goto fail;
    if (kind == '1')
        rc = read_plain_bits(&r, &im, opts);
    else if (plain)
        rc = read_plain(&r, &im, maxval, opts);
    else
        rc = read_raw(&r, &im, is_bits ? 1 : 8, maxval, opts);
    if (rc) goto fail;

    *out = im;
    return 0;
fail:
    pe_image_free(&im);
    return rc;
}

int pe_encode_pnm(const pe_image *im, uint8_t **out, size_t *out_len) {
    PE_ASSERT(out != NULL && out_len != NULL);
    *out = NULL;
    *out_len = 0;
    if (!im || !im->px || im->w == 0 || im->h == 0 || (im->c != 1 && im->c != 3))
        return pe_fail(PE_EFORMAT, "pnm: cannot encode an image of %ux%ux%u",
                       im ? im->w : 0, im ? im->h : 0, im ? im->c : 0);
    char head[64];
    int hn = snprintf(head, sizeof head, "P%c\n%u %u\n255\n", im->c == 1 ? '5' : '6',
                      im->w, im->h);
    PE_ASSERT(hn > 0 && (size_t)hn < sizeof head);
    size_t body = (size_t)im->w * im->h;
    if (body / im->h != im->w || body > (SIZE_MAX - (size_t)hn) / im->c)
        return pe_fail(PE_ETOOBIG, "pnm: %ux%u image is too large to encode", im->w, im->h);
    body *= im->c;
    uint8_t *buf = malloc((size_t)hn + body);
    if (!buf) return pe_fail(ENOMEM, "pnm: cannot allocate %zu bytes", (size_t)hn + body);
    memcpy(buf, head, (size_t)hn);
    memcpy(buf + hn, im->px, body);
    *out = buf;
    *out_len = (size_t)hn + body;
    return 0;
}
