/*
 * decode.c - recognising an encoded image from its first bytes and handing
 * it to the right decoder (pe_sniff, pe_decode), and the names of formats.
 *
 * Not for: decoding itself (jpeg.c, png.c, tiff.c, pnm.c, bmp.c each own
 * one format) or dataset containers (IDX, CIFAR, STL-10, tar: dataset.h).
 * Sniffing looks at magic bytes only, never at the file name.
 */
#include "codec.h"

#include "pe.h"

#include <string.h>

const char *pe_format_name(pe_format f) {
    switch (f) {
    case PE_FORMAT_JPEG: return "jpeg";
    case PE_FORMAT_PNG: return "png";
    case PE_FORMAT_TIFF: return "tiff";
    case PE_FORMAT_PNM: return "pnm";
    case PE_FORMAT_BMP: return "bmp";
    case PE_FORMAT_IDX: return "idx";
    case PE_FORMAT_CIFAR: return "cifar";
    case PE_FORMAT_STL10: return "stl10";
    case PE_FORMAT_STORE: return "store";
    case PE_FORMAT_RAW: return "raw";
    case PE_FORMAT_UNKNOWN: break;
    }
    return "unknown";
}

static int is_pnm_space(uint8_t b) {
    return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' ||
           b == '\f';
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* "BM" alone is two printable letters that many text files start with, so
 * a BMP also needs a DIB header size that some BMP variant uses. */
static int looks_like_bmp(const uint8_t *buf, size_t len) {
    if (len < 18 || buf[0] != 'B' || buf[1] != 'M') return 0;
    switch (le32(buf + 14)) {
    case 12:  /* OS/2 1.x BITMAPCOREHEADER */
    case 16:  /* OS/2 2.x, short form */
    case 40:  /* BITMAPINFOHEADER */
    case 52:  /* BITMAPV2INFOHEADER */
    case 56:  /* BITMAPV3INFOHEADER */
    case 64:  /* OS/2 2.x BITMAPINFOHEADER2 */
    case 108: /* BITMAPV4HEADER */
    case 124: /* BITMAPV5HEADER */
        return 1;
    default:
        return 0;
    }
}

pe_format pe_sniff(const uint8_t *buf, size_t len) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (!buf) return PE_FORMAT_UNKNOWN;
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return PE_FORMAT_JPEG;
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0) return PE_FORMAT_PNG;
    if (len >= 4 &&
        (memcmp(buf, "II*\0", 4) == 0 || memcmp(buf, "MM\0*", 4) == 0 ||
         memcmp(buf, "II+\0", 4) == 0 || memcmp(buf, "MM\0+", 4) == 0))
        return PE_FORMAT_TIFF;
    /* P7 (PAM) is sniffed too so that its decoder can say it is
     * unsupported rather than unrecognised; PAM requires a newline. */
    if (len >= 3 && buf[0] == 'P' &&
        ((buf[1] >= '1' && buf[1] <= '6' && is_pnm_space(buf[2])) ||
         (buf[1] == '7' && buf[2] == '\n')))
        return PE_FORMAT_PNM;
    if (looks_like_bmp(buf, len)) return PE_FORMAT_BMP;
    return PE_FORMAT_UNKNOWN;
}

/* Image formats that pe does not decode, named in the error message so that
 * a user is not left guessing why a ".gif" was "not an image". */
static const char *unsupported_kind(const uint8_t *buf, size_t len) {
    if (len >= 6 && (memcmp(buf, "GIF87a", 6) == 0 || memcmp(buf, "GIF89a", 6) == 0))
        return "GIF";
    if (len >= 12 && memcmp(buf, "RIFF", 4) == 0 && memcmp(buf + 8, "WEBP", 4) == 0)
        return "WebP";
    if (len >= 12 && memcmp(buf + 4, "ftyp", 4) == 0) {
        if (memcmp(buf + 8, "avif", 4) == 0 || memcmp(buf + 8, "avis", 4) == 0)
            return "AVIF";
        if (memcmp(buf + 8, "heic", 4) == 0 || memcmp(buf + 8, "heix", 4) == 0 ||
            memcmp(buf + 8, "mif1", 4) == 0 || memcmp(buf + 8, "msf1", 4) == 0)
            return "HEIF";
    }
    if (len >= 12 && memcmp(buf, "\0\0\0\x0cjP  \r\n\x87\n", 12) == 0)
        return "JPEG 2000";
    if (len >= 4 && memcmp(buf, "\xff\x4f\xff\x51", 4) == 0)
        return "JPEG 2000 codestream";
    if (len >= 2 && memcmp(buf, "\xff\x0a", 2) == 0) return "JPEG XL";
    if (len >= 12 && memcmp(buf, "\0\0\0\x0cJXL \r\n\x87\n", 12) == 0)
        return "JPEG XL";
    if (len >= 4 && memcmp(buf, "\0\0\1\0", 4) == 0) return "ICO";
    if (len >= 4 && memcmp(buf, "8BPS", 4) == 0) return "PSD";
    if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) return "gzip (not an image)";
    return NULL;
}

/* Printable ASCII, whitespace and UTF-8 lead/continuation bytes over the
 * first 512 bytes: good enough to tell a user they passed a text file. */
static int looks_like_text(const uint8_t *buf, size_t len) {
    size_t n = len < 512 ? len : 512;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = buf[i];
        if (b == '\t' || b == '\n' || b == '\r' || b == '\f') continue;
        if (b < 0x20 || b == 0x7f) return 0;
    }
    return n > 0;
}

int pe_decode(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
              pe_image *out, pe_decode_info *info) {
    PE_ASSERT(out != NULL && out->px == NULL);
    if (info) memset(info, 0, sizeof *info);
    if (!buf || len == 0) return pe_fail(PE_EFORMAT, "empty file");

    int rc;
    pe_format fmt = pe_sniff(buf, len);
    switch (fmt) {
    case PE_FORMAT_JPEG: rc = pe_decode_jpeg(buf, len, opts, out, info); break;
    case PE_FORMAT_PNG: rc = pe_decode_png(buf, len, opts, out, info); break;
    case PE_FORMAT_TIFF: rc = pe_decode_tiff(buf, len, opts, out, info); break;
    case PE_FORMAT_PNM: rc = pe_decode_pnm(buf, len, opts, out, info); break;
    case PE_FORMAT_BMP: rc = pe_decode_bmp(buf, len, opts, out, info); break;
    default: {
        const char *kind = unsupported_kind(buf, len);
        if (kind)
            return pe_fail(PE_EFORMAT,
                           "not a recognised image format (looks like %s, "
                           "which pe does not decode)", kind);
        if (looks_like_text(buf, len))
            return pe_fail(PE_EFORMAT,
                           "not a recognised image format (looks like text)");
        return pe_fail(PE_EFORMAT, "not a recognised image format");
    }
    }
    /* Even on failure the caller learns what the file claimed to be
     * ("png: CRC error" reads better than "unknown: CRC error"). */
    if (info) info->format = fmt;
    if (rc != 0) {
        /* The decoders promise this already; a second line of defence
         * costs nothing and keeps the contract whatever they do. */
        pe_image_free(out);
    }
    return rc;
}
