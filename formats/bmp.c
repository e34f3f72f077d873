/*
 * bmp.c - decoding Windows and OS/2 bitmaps: BITMAPINFOHEADER and its V2..V5
 * extensions (only the 40-byte part and the colour masks are read), the
 * OS/2 1.x 12-byte header, bottom-up and top-down rows, 1/2/4/8-bit palettes,
 * 16/24/32-bit pixels (BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS with
 * contiguous masks; alpha ignored).
 *
 * Not for: RLE4/RLE8, embedded JPEG/PNG, CMYK or OS/2 Huffman bitmaps (all
 * PE_EUNSUPPORTED with a message naming the compression), colour profiles
 * (ignored), or encoding.
 *
 * Every offset and size in the headers is attacker-controlled: each is
 * checked against the buffer before use, in 64-bit or division form so that
 * nothing overflows, and the pixel limit is checked before allocating.
 */
#include "codec.h"

#include "pe.h"

#include <string.h>

enum {
    BI_RGB = 0,
    BI_RLE8 = 1,
    BI_RLE4 = 2,
    BI_BITFIELDS = 3,
    BI_JPEG = 4,
    BI_PNG = 5,
    BI_ALPHABITFIELDS = 6,
    BI_CMYK = 11,
    BI_CMYKRLE8 = 12,
    BI_CMYKRLE4 = 13,
};

#define FILE_HEADER 14u

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* One colour mask of a bitfield image, as shift and width. */
typedef struct bmp_field {
    uint32_t mask, shift, bits;
} bmp_field;

static int field_init(bmp_field *f, uint32_t mask, const char *name) {
    f->mask = mask;
    f->shift = f->bits = 0;
    if (mask == 0) return 0;
    while (!(mask >> f->shift & 1)) f->shift++;
    uint64_t m = (uint64_t)mask >> f->shift;
    if (m & (m + 1))
        return pe_fail(PE_EFORMAT, "bmp: %s mask 0x%08x is not contiguous", name, mask);
    while (m >> f->bits) f->bits++;
    return 0;
}

/* Scales a field to 8 bits as Pillow's BMP unpackers do, v * 255 / max
 * truncated (e.g. ImagingUnpackBGR15), so 5- and 6-bit channels match
 * Pillow exactly; 8-bit fields pass through. */
static uint8_t field_get(const bmp_field *f, uint32_t px) {
    if (f->bits == 0) return 0;
    uint64_t v = (px & f->mask) >> f->shift;
    if (f->bits == 8) return (uint8_t)v;
    uint64_t max = ((uint64_t)1 << f->bits) - 1;
    return (uint8_t)(v * 255 / max);
}

int pe_decode_bmp(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                  pe_image *out, pe_decode_info *info) {
    PE_ASSERT(out != NULL && out->px == NULL);
    pe_decode_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    info->format = PE_FORMAT_BMP;
    info->orientation = 1;
    info->scale_num = info->scale_den = 1;

    pe_image im = {0};
    int rc = 0;
    if (!buf) len = 0;
    if (len < 2 || buf[0] != 'B' || buf[1] != 'M')
        return pe_fail(PE_EFORMAT, "bmp: bad magic (want \"BM\")");
    if (len < FILE_HEADER + 4) return pe_fail(PE_EFORMAT, "bmp: truncated file header");

    uint32_t off_bits = le32(buf + 10);
    uint32_t hdr = le32(buf + 14);
    int64_t w, h;
    uint32_t bpp, comp = BI_RGB, clr_used = 0, pal_entry = 4;
    if (hdr == 12) {
        if (len < FILE_HEADER + 12) return pe_fail(PE_EFORMAT, "bmp: truncated header");
        w = le16(buf + 18);
        h = le16(buf + 20);
        bpp = le16(buf + 24);
        pal_entry = 3;
    } else if (hdr == 40 || hdr == 52 || hdr == 56 || hdr == 64 || hdr == 108 ||
               hdr == 124) {
        if (len < (size_t)FILE_HEADER + hdr)
            return pe_fail(PE_EFORMAT, "bmp: truncated header (%u bytes)", hdr);
        w = (int32_t)le32(buf + 18);
        h = (int32_t)le32(buf + 22);
        bpp = le16(buf + 28);
        comp = le32(buf + 30);
        clr_used = le32(buf + 46);
        /* OS/2 2.x reuses 3 and 4 for Huffman 1D and RLE24. */
        if (hdr == 64 && (comp == 3 || comp == 4))
            return pe_fail(PE_EUNSUPPORTED,
                           "bmp: OS/2 %s compression is not supported",
                           comp == 3 ? "Huffman" : "RLE24");
    } else {
        return pe_fail(PE_EUNSUPPORTED, "bmp: unsupported header size %u", hdr);
    }

    switch (comp) {
    case BI_RGB:
    case BI_BITFIELDS:
    case BI_ALPHABITFIELDS:
        break;
    case BI_RLE8:
    case BI_RLE4:
        return pe_fail(PE_EUNSUPPORTED, "bmp: RLE-compressed bitmaps (%s) are not supported",
                       comp == BI_RLE8 ? "RLE8" : "RLE4");
    case BI_JPEG:
    case BI_PNG:
        return pe_fail(PE_EUNSUPPORTED, "bmp: embedded %s is not supported",
                       comp == BI_JPEG ? "JPEG" : "PNG");
    case BI_CMYK:
    case BI_CMYKRLE8:
    case BI_CMYKRLE4:
        return pe_fail(PE_EUNSUPPORTED, "bmp: CMYK bitmaps are not supported");
    default:
        return pe_fail(PE_EFORMAT, "bmp: unknown compression %u", comp);
    }

    int palette = bpp == 1 || bpp == 2 || bpp == 4 || bpp == 8;
    if (!palette && bpp != 16 && bpp != 24 && bpp != 32)
        return pe_fail(PE_EFORMAT, "bmp: unsupported bit depth %u", bpp);
    if (comp != BI_RGB && bpp != 16 && bpp != 32)
        return pe_fail(PE_EFORMAT, "bmp: bitfields with %u bits per pixel", bpp);

    int top_down = h < 0;
    if (h < 0) h = -h; /* int64: INT32_MIN negates safely */
    if (w <= 0 || h <= 0 || w > INT32_MAX || h > INT32_MAX)
        return pe_fail(PE_EFORMAT, "bmp: bad size %lldx%lld", (long long)w, (long long)h);
    uint64_t max_pixels = opts && opts->max_pixels ? opts->max_pixels : PE_DEFAULT_MAX_PIXELS;
    if ((uint64_t)w * (uint64_t)h > max_pixels)
        return pe_fail(PE_ETOOBIG, "bmp: %lldx%lld exceeds the pixel limit (%llu)",
                       (long long)w, (long long)h, (unsigned long long)max_pixels);

    /* Colour masks sit right after a 40-byte header (and count as part of
     * the header in V2 and later); the palette follows them. */
    uint64_t pal_off = (uint64_t)FILE_HEADER + hdr;
    bmp_field fr, fg, fb;
    int has_alpha = 0;
    if (comp == BI_BITFIELDS || comp == BI_ALPHABITFIELDS) {
        uint32_t nmask = comp == BI_ALPHABITFIELDS ? 4 : 3;
        if (hdr == 40) pal_off += 4 * nmask;
        if (len < (size_t)FILE_HEADER + 40 + 4 * nmask)
            return pe_fail(PE_EFORMAT, "bmp: truncated colour masks");
        const uint8_t *m = buf + FILE_HEADER + 40;
        if ((rc = field_init(&fr, le32(m), "red")) ||
            (rc = field_init(&fg, le32(m + 4), "green")) ||
            (rc = field_init(&fb, le32(m + 8), "blue")))
            return rc;
        if (nmask == 4 || hdr >= 56) has_alpha = le32(m + 12) != 0;
    } else if (bpp == 16) {
        field_init(&fr, 0x7c00, "red");
        field_init(&fg, 0x03e0, "green");
        field_init(&fb, 0x001f, "blue");
    } else {
        field_init(&fr, 0x00ff0000, "red");
        field_init(&fg, 0x0000ff00, "green");
        field_init(&fb, 0x000000ff, "blue");
    }

    if (off_bits < pal_off)
        return pe_fail(PE_EFORMAT, "bmp: pixel data offset %u overlaps the header", off_bits);
    if (off_bits > len)
        return pe_fail(PE_EFORMAT, "bmp: truncated (pixel data offset %u, file %zu bytes)",
                       off_bits, len);

    /* The palette: clr_used entries (0 meaning all 2^bpp), never more than
     * the depth can index, and never reaching into the pixel data (some
     * writers store fewer entries than 2^bpp and say so only through the
     * pixel offset). */
    uint32_t ncolors = 0, c = 3;
    uint8_t pal[256][3];
    if (palette) {
        uint32_t full = 1u << bpp;
        ncolors = clr_used == 0 || clr_used > full ? full : clr_used;
        uint64_t room = (off_bits - pal_off) / pal_entry;
        if (ncolors > room) ncolors = (uint32_t)room;
        if (ncolors == 0) return pe_fail(PE_EFORMAT, "bmp: %u-bit image without a palette", bpp);
        int gray = 1;
        for (uint32_t i = 0; i < ncolors; i++) {
            const uint8_t *e = buf + pal_off + (uint64_t)i * pal_entry; /* B, G, R */
            pal[i][0] = e[2];
            pal[i][1] = e[1];
            pal[i][2] = e[0];
            gray &= e[0] == e[1] && e[1] == e[2];
        }
        if (gray) c = 1;
    }

    /* Rows are padded to 4 bytes; the last row's padding may be missing. */
    uint64_t row_bytes = ((uint64_t)w * bpp + 7) / 8;
    uint64_t stride = ((uint64_t)w * bpp + 31) / 32 * 4;
    uint64_t avail = len - off_bits;
    if (row_bytes > avail || (h > 1 && stride > (avail - row_bytes) / (uint64_t)(h - 1)))
        return pe_fail(PE_EFORMAT, "bmp: truncated (%lldx%lld at %u bpp needs more than "
                       "the %llu bytes present)", (long long)w, (long long)h, bpp,
                       (unsigned long long)avail);

    info->orig_w = (uint32_t)w;
    info->orig_h = (uint32_t)h;
    if (palette) {
        info->orig_c = 1;
        info->bits = bpp;
    } else {
        info->orig_c = has_alpha ? 4 : 3;
        info->bits = fr.bits > fg.bits ? fr.bits : fg.bits;
        if (fb.bits > info->bits) info->bits = fb.bits;
    }

    if ((rc = pe_image_alloc(&im, (uint32_t)w, (uint32_t)h, c))) goto fail;
    const uint8_t *pixels = buf + off_bits;
    for (uint32_t y = 0; y < im.h; y++) {
        if ((y & 63) == 0 && opts && opts->deadline > 0 && pe_now() > opts->deadline) {
            rc = pe_fail(PE_ETIMEOUT, "bmp: decode deadline passed at row %u", y);
            goto fail;
        }
        uint32_t src_row = top_down ? y : im.h - 1 - y;
        const uint8_t *src = pixels + (size_t)src_row * stride;
        uint8_t *dst = im.px + (size_t)y * im.w * c;
        if (palette) {
            uint32_t per_byte = 8 / bpp, mask = (1u << bpp) - 1;
            for (uint32_t x = 0; x < im.w; x++) {
                uint32_t shift = 8 - bpp * (x % per_byte + 1);
                uint32_t idx = (uint32_t)src[x / per_byte] >> shift & mask;
                if (idx >= ncolors) {
                    rc = pe_fail(PE_EFORMAT, "bmp: palette index %u out of range "
                                 "(%u colours) at row %u", idx, ncolors, src_row);
                    goto fail;
                }
                if (c == 1) {
                    dst[x] = pal[idx][0];
                } else {
                    memcpy(dst + 3 * (size_t)x, pal[idx], 3);
                }
            }
        } else if (bpp == 24) {
            for (uint32_t x = 0; x < im.w; x++, src += 3, dst += 3) {
                dst[0] = src[2];
                dst[1] = src[1];
                dst[2] = src[0];
            }
        } else {
            uint32_t step = bpp / 8;
            for (uint32_t x = 0; x < im.w; x++, src += step, dst += 3) {
                uint32_t px = step == 2 ? le16(src) : le32(src);
                dst[0] = field_get(&fr, px);
                dst[1] = field_get(&fg, px);
                dst[2] = field_get(&fb, px);
            }
        }
    }

    *out = im;
    return 0;
fail:
    pe_image_free(&im);
    return rc;
}
