/*
 * tiff.c - decoding the first page of a TIFF (classic or BigTIFF) from
 * memory through libtiff 4.
 *
 * Not for: later pages, encoding, floating-point or signed samples, or
 * colour management (ICC profiles are ignored).
 *
 * Two readers share one open handle:
 *  - the direct reader decodes strips or tiles itself (TIFFReadEncodedStrip,
 *    TIFFReadTile) for the common layouts: gray (1/2/4/8/16 bits,
 *    MINISWHITE inverted), palette (1/2/4/8 bits), RGB (8/16 bits), contig
 *    or separate planes, and contig CMYK (8/16 bits), with any codec libtiff
 *    has. It keeps a 16-bit sample's high byte, drops alpha without touching
 *    the colour samples and converts CMYK with Pillow's formula, as codec.h
 *    promises and as Pillow does (formats/jpeg.c uses the same CMYK rule);
 *    libtiff's RGBA reader would round 16-bit samples ((v + 128) / 257),
 *    premultiply unassociated alpha and truncate in its CMYK conversion.
 *  - everything else (YCbCr, JPEG-in-TIFF with YCbCr, separate-plane CMYK,
 *    CIE L*a*b*, old-style JPEG) goes through libtiff's RGBA reader
 *    (TIFFRGBAImageGet), one strip or tile row band at a time.
 *
 * libtiff's default error and warning handlers are process-global and print
 * to stderr; here every open installs its own (TIFFOpenOptions, libtiff >=
 * 4.5) that record the first error in the decode's state, which becomes
 * the PE_EFORMAT message. Allocations inside libtiff are bounded with
 * TIFFOpenOptionsSetMaxSingleMemAlloc.
 *
 * The TIFF orientation tag (same values as EXIF's) is applied with
 * pe_image_orient unless opts->no_orient, as the JPEG decoder applies EXIF.
 */
#include "codec.h"

#include "pe.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

#if !TIFFLIB_AT_LEAST(4, 5, 0)
#error "pe needs libtiff >= 4.5 (TIFFOpenOptionsSetErrorHandlerExtR)"
#endif

/* The name libtiff gives the handle in its messages. */
#define TIFF_NAME "tiff"

/* Memory the decoder reads from, and what libtiff said about it. */
typedef struct tiff_src {
    const uint8_t *buf;
    uint64_t len, pos;
    int nerr, nwarn;
    char err[512]; /* first error reported by libtiff */
} tiff_src;

static tmsize_t src_read(thandle_t h, void *dst, tmsize_t n) {
    tiff_src *s = h;
    if (n < 0) return -1;
    if (s->pos >= s->len) return 0;
    uint64_t k = s->len - s->pos;
    if ((uint64_t)n < k) k = (uint64_t)n;
    memcpy(dst, s->buf + s->pos, (size_t)k);
    s->pos += k;
    return (tmsize_t)k;
}

static tmsize_t src_write(thandle_t h, void *src, tmsize_t n) {
    (void)h, (void)src, (void)n;
    return -1; /* opened read-only; libtiff never writes */
}

/* Seeking past the end is allowed (as with a file); reads there return 0.
 * Offsets for SEEK_CUR and SEEK_END are two's-complement signed. */
static toff_t src_seek(thandle_t h, toff_t off, int whence) {
    tiff_src *s = h;
    uint64_t base;
    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = s->pos; break;
    case SEEK_END: base = s->len; break;
    default: return (toff_t)-1;
    }
    int64_t delta = (int64_t)off;
    if (whence == SEEK_SET) {
        if (off > (uint64_t)INT64_MAX) return (toff_t)-1;
        s->pos = off;
    } else if (delta < 0) {
        if ((uint64_t)-(delta + 1) + 1 > base) return (toff_t)-1;
        s->pos = base - ((uint64_t)-(delta + 1) + 1);
    } else {
        if ((uint64_t)delta > (uint64_t)INT64_MAX - base) return (toff_t)-1;
        s->pos = base + (uint64_t)delta;
    }
    return s->pos;
}

static int src_close(thandle_t h) {
    (void)h;
    return 0;
}

static toff_t src_size(thandle_t h) { return ((tiff_src *)h)->len; }

/* "Mapping" hands libtiff the buffer itself, so strips are decoded without a
 * copy. libtiff treats mapped data as read-only (its own file mapping is
 * PROT_READ), which is what makes the cast away from const sound. */
static int src_map(thandle_t h, void **base, toff_t *size) {
    tiff_src *s = h;
    *base = (void *)(uintptr_t)s->buf;
    *size = s->len;
    return 1;
}

static void src_unmap(thandle_t h, void *base, toff_t size) {
    (void)h, (void)base, (void)size;
}

static int on_error(TIFF *tif, void *user, const char *module, const char *fmt,
                    va_list ap) {
    (void)tif;
    tiff_src *s = user;
    if (s->nerr++ == 0) {
        int n = 0;
        /* The module is often just the handle's name (TIFF_NAME), which
         * says nothing; libtiff's function names are worth keeping. */
        if (module && *module && strcmp(module, TIFF_NAME) != 0) {
            n = snprintf(s->err, sizeof s->err, "%s: ", module);
            if (n < 0 || (size_t)n >= sizeof s->err) n = 0;
        }
        vsnprintf(s->err + n, sizeof s->err - (size_t)n, fmt, ap);
    }
    return 1; /* handled: keep it away from the global (stderr) handler */
}

static int on_warning(TIFF *tif, void *user, const char *module,
                      const char *fmt, va_list ap) {
    (void)tif, (void)module, (void)fmt, (void)ap;
    ((tiff_src *)user)->nwarn++;
    return 1;
}

/* PE_EFORMAT (or rc) carrying libtiff's own reason when it gave one. */
static int tiff_fail(int rc, const tiff_src *s, const char *what) {
    if (s->nerr) return pe_fail(rc, "tiff: %s: %s", what, s->err);
    return pe_fail(rc, "tiff: %s", what);
}

static int deadline_passed(const pe_decode_opts *opts) {
    return opts && opts->deadline > 0 && pe_now() > opts->deadline;
}

/* Reads sample i (counted in samples from the row start) of a row packed
 * at bps bits, MSB first for sub-byte depths, native order for 16. */
static uint32_t sample_at(const uint8_t *row, size_t i, uint32_t bps) {
    if (bps == 8) return row[i];
    if (bps == 16) {
        uint16_t v;
        memcpy(&v, row + 2 * i, 2);
        return v;
    }
    size_t bit = i * bps;
    return (uint32_t)(row[bit >> 3] >> (8 - bps - (bit & 7))) & ((1u << bps) - 1);
}

/* How the direct reader turns file samples into output bytes. */
typedef struct direct_fmt {
    uint32_t bps;       /* 1, 2, 4, 8 or 16 */
    uint32_t c;         /* output channels: 1 or 3 */
    int palette;        /* sample is an index into pal */
    int cmyk;           /* samples are C, M, Y, K (contig only) */
    int invert;         /* MINISWHITE */
    uint8_t lut[256];   /* bps <= 8: sample -> 8-bit gray (inversion included) */
    uint8_t pal[256][3];/* palette, 8-bit */
} direct_fmt;

/* Writes one output channel (ch) of n pixels from a row whose pixels are
 * sstride samples apart with the wanted sample at soff. For palette images
 * all three channels come from the one index (ch is ignored). */
static void put_row(const direct_fmt *f, const uint8_t *row, uint32_t n,
                    uint32_t sstride, uint32_t soff, uint8_t *dst, uint32_t ch) {
    if (f->cmyk) {
        /* Pillow's cmyk2rgb: R = (255 - K) - C * (255 - K) / 255, with its
         * rounding MULDIV255; all three channels at once (ch ignored). */
        uint32_t shift = f->bps == 16 ? 8 : 0;
        for (uint32_t x = 0; x < n; x++) {
            size_t i = (size_t)x * sstride;
            uint32_t nk = 255 - (sample_at(row, i + 3, f->bps) >> shift);
            for (uint32_t k = 0; k < 3; k++) {
                uint32_t t = (sample_at(row, i + k, f->bps) >> shift) * nk + 128;
                dst[3 * (size_t)x + k] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
            }
        }
    } else if (f->palette) {
        for (uint32_t x = 0; x < n; x++) {
            uint32_t idx = sample_at(row, (size_t)x * sstride + soff, f->bps);
            memcpy(dst + 3 * (size_t)x, f->pal[idx], 3);
        }
    } else if (f->bps == 16) {
        for (uint32_t x = 0; x < n; x++) {
            uint8_t v = (uint8_t)(sample_at(row, (size_t)x * sstride + soff, 16) >> 8);
            dst[(size_t)x * f->c + ch] = f->invert ? (uint8_t)(255 - v) : v;
        }
    } else {
        for (uint32_t x = 0; x < n; x++)
            dst[(size_t)x * f->c + ch] =
                f->lut[sample_at(row, (size_t)x * sstride + soff, f->bps)];
    }
}

/* The direct reader: strips or tiles, contig or separate planes. */
static int read_direct(TIFF *tif, tiff_src *src, const direct_fmt *f,
                       uint32_t spp, int separate, uint64_t mem_cap,
                       const pe_decode_opts *opts, pe_image *im) {
    int rc = 0;
    uint8_t *chunk = NULL;
    int tiled = TIFFIsTiled(tif);
    uint32_t cw, ch; /* chunk (tile or strip) size in pixels */
    tmsize_t row_size, chunk_size;
    if (tiled) {
        if (!TIFFGetField(tif, TIFFTAG_TILEWIDTH, &cw) ||
            !TIFFGetField(tif, TIFFTAG_TILELENGTH, &ch) || cw == 0 || ch == 0)
            return tiff_fail(PE_EFORMAT, src, "bad tile size");
        row_size = TIFFTileRowSize(tif);
        chunk_size = TIFFTileSize(tif);
    } else {
        cw = im->w;
        if (!TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &ch) || ch == 0)
            return tiff_fail(PE_EFORMAT, src, "bad RowsPerStrip");
        if (ch > im->h) ch = im->h;
        row_size = TIFFScanlineSize(tif);
        chunk_size = TIFFStripSize(tif);
    }
    /* Samples per pixel inside one chunk buffer. */
    uint32_t sstride = separate ? 1 : spp;
    uint64_t need_row = ((uint64_t)cw * sstride * f->bps + 7) / 8;
    if (row_size <= 0 || chunk_size <= 0 || (uint64_t)row_size < need_row ||
        (uint64_t)chunk_size / (uint64_t)row_size < ch)
        return tiff_fail(PE_EFORMAT, src, "inconsistent strip or tile size");
    if ((uint64_t)chunk_size > mem_cap)
        return pe_fail(PE_ETOOBIG, "tiff: %s of %lld bytes exceeds the memory limit",
                       tiled ? "tile" : "strip", (long long)chunk_size);
    chunk = malloc((size_t)chunk_size);
    if (!chunk) return pe_fail(ENOMEM, "tiff: cannot allocate %lld bytes", (long long)chunk_size);

    /* 8-bit gray or RGB without extra samples is already in pe's layout. */
    int copy_rows = f->bps == 8 && !f->palette && !f->cmyk && !f->invert &&
                    sstride == f->c;
    /* A palette or gray image reads one plane; separate RGB reads three
     * (CMYK is contig only, see direct_setup). */
    uint32_t nplanes = separate && !f->palette ? f->c : 1;
    /* Steps of rows and cols (not ch, cw) so that y0 and x0 never wrap. */
    uint32_t rows, cols;
    for (uint32_t y0 = 0; y0 < im->h; y0 += rows) {
        if (deadline_passed(opts)) {
            rc = pe_fail(PE_ETIMEOUT, "tiff: decode deadline passed at row %u", y0);
            goto done;
        }
        rows = im->h - y0 < ch ? im->h - y0 : ch;
        for (uint32_t x0 = 0; x0 < im->w; x0 += cols) {
            cols = im->w - x0 < cw ? im->w - x0 : cw;
            for (uint32_t p = 0; p < nplanes; p++) {
                tmsize_t got, want = (tmsize_t)rows * row_size;
                if (tiled) {
                    got = TIFFReadTile(tif, chunk, x0, y0, 0, (uint16_t)p);
                } else {
                    uint32_t strip = TIFFComputeStrip(tif, y0, (uint16_t)p);
                    got = TIFFReadEncodedStrip(tif, strip, chunk, want);
                }
                if (got < want) {
                    rc = tiff_fail(PE_EFORMAT, src, got < 0 ? "cannot decode image data"
                                                            : "short strip or tile");
                    goto done;
                }
                for (uint32_t r = 0; r < rows; r++) {
                    const uint8_t *srow = chunk + (size_t)r * (size_t)row_size;
                    uint8_t *drow = im->px + ((size_t)(y0 + r) * im->w + x0) * im->c;
                    if (copy_rows) {
                        memcpy(drow, srow, (size_t)cols * f->c);
                    } else if (separate || f->palette || f->cmyk) {
                        put_row(f, srow, cols, sstride, 0, drow, p);
                    } else {
                        for (uint32_t k = 0; k < f->c; k++)
                            put_row(f, srow, cols, sstride, k, drow, k);
                    }
                }
            }
        }
    }
done:
    free(chunk);
    return rc;
}

/* libtiff's RGBA reader for the layouts the direct reader does not know,
 * in bands of one strip or tile row so the deadline is checked between
 * them and the ABGR raster stays small. */
static int read_rgba(TIFF *tif, tiff_src *src, uint64_t mem_cap,
                     const pe_decode_opts *opts, pe_image *im) {
    int rc = 0;
    uint32_t *raster = NULL;
    TIFFRGBAImage img;
    char emsg[1024] = "";
    if (!TIFFRGBAImageOK(tif, emsg))
        return pe_fail(PE_EUNSUPPORTED, "tiff: %s", emsg[0] ? emsg : "unsupported layout");
    if (!TIFFRGBAImageBegin(&img, tif, 1, emsg)) {
        if (src->nerr) return tiff_fail(PE_EFORMAT, src, emsg[0] ? emsg : "cannot read");
        return pe_fail(PE_EUNSUPPORTED, "tiff: %s", emsg[0] ? emsg : "unsupported layout");
    }
    /* Rows in file order: orientation is applied afterwards, for every
     * reader alike. */
    img.req_orientation = ORIENTATION_TOPLEFT;
    img.orientation = ORIENTATION_TOPLEFT;

    uint32_t band = 0;
    if (TIFFIsTiled(tif))
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &band);
    else
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &band);
    if (band == 0 || band > im->h) band = im->h;
    uint64_t bytes = (uint64_t)im->w * band * 4;
    if (bytes > mem_cap || bytes > SIZE_MAX) {
        rc = pe_fail(PE_ETOOBIG, "tiff: %u-row band exceeds the memory limit", band);
        goto done;
    }
    raster = malloc((size_t)bytes);
    if (!raster) {
        rc = pe_fail(ENOMEM, "tiff: cannot allocate %llu bytes", (unsigned long long)bytes);
        goto done;
    }
    uint32_t rows;
    for (uint32_t y0 = 0; y0 < im->h; y0 += rows) {
        if (deadline_passed(opts)) {
            rc = pe_fail(PE_ETIMEOUT, "tiff: decode deadline passed at row %u", y0);
            goto done;
        }
        if (y0 > INT_MAX) {
            rc = pe_fail(PE_EUNSUPPORTED, "tiff: image taller than %d rows", INT_MAX);
            goto done;
        }
        rows = im->h - y0 < band ? im->h - y0 : band;
        img.row_offset = (int)y0;
        img.col_offset = 0;
        if (!TIFFRGBAImageGet(&img, raster, im->w, rows)) {
            rc = tiff_fail(PE_EFORMAT, src, "cannot decode image data");
            goto done;
        }
        for (uint32_t r = 0; r < rows; r++) {
            const uint32_t *s = raster + (size_t)r * im->w;
            uint8_t *d = im->px + (size_t)(y0 + r) * im->w * im->c;
            for (uint32_t x = 0; x < im->w; x++) {
                if (im->c == 1) {
                    d[x] = (uint8_t)TIFFGetR(s[x]);
                } else {
                    d[3 * (size_t)x] = (uint8_t)TIFFGetR(s[x]);
                    d[3 * (size_t)x + 1] = (uint8_t)TIFFGetG(s[x]);
                    d[3 * (size_t)x + 2] = (uint8_t)TIFFGetB(s[x]);
                }
            }
        }
    }
done:
    free(raster);
    TIFFRGBAImageEnd(&img);
    return rc;
}

/* Fills f for the direct reader, or returns 0 when the layout is not one
 * it handles. */
static int direct_setup(TIFF *tif, uint16_t photometric, uint16_t bps,
                        uint16_t spp, int separate, direct_fmt *f) {
    memset(f, 0, sizeof *f);
    f->bps = bps;
    int gray = photometric == PHOTOMETRIC_MINISBLACK || photometric == PHOTOMETRIC_MINISWHITE;
    if (gray) {
        if (bps != 1 && bps != 2 && bps != 4 && bps != 8 && bps != 16) return 0;
        f->c = 1;
        f->invert = photometric == PHOTOMETRIC_MINISWHITE;
    } else if (photometric == PHOTOMETRIC_RGB) {
        if ((bps != 8 && bps != 16) || spp < 3) return 0;
        f->c = 3;
    } else if (photometric == PHOTOMETRIC_SEPARATED) {
        uint16_t inkset = INKSET_CMYK;
        TIFFGetFieldDefaulted(tif, TIFFTAG_INKSET, &inkset);
        if (inkset != INKSET_CMYK || (bps != 8 && bps != 16) || spp < 4 || separate)
            return 0;
        f->c = 3;
        f->cmyk = 1;
        return 1;
    } else if (photometric == PHOTOMETRIC_PALETTE) {
        if (bps != 1 && bps != 2 && bps != 4 && bps != 8) return 0;
        uint16_t *r, *g, *b;
        if (!TIFFGetField(tif, TIFFTAG_COLORMAP, &r, &g, &b)) return 0;
        /* libtiff's and Pillow's rule for 16-bit colour maps is the high
         * byte; a map whose entries all fit in 8 bits was written by a
         * broken encoder that meant them as 8-bit (libtiff's heuristic). */
        uint32_t n = 1u << bps;
        int eight = 1;
        for (uint32_t i = 0; i < n; i++)
            if (r[i] > 255 || g[i] > 255 || b[i] > 255) eight = 0;
        for (uint32_t i = 0; i < n; i++) {
            f->pal[i][0] = (uint8_t)(eight ? r[i] : r[i] >> 8);
            f->pal[i][1] = (uint8_t)(eight ? g[i] : g[i] >> 8);
            f->pal[i][2] = (uint8_t)(eight ? b[i] : b[i] >> 8);
        }
        f->c = 3;
        f->palette = 1;
        return 1;
    } else {
        return 0;
    }
    if (bps <= 8) {
        uint32_t max = (1u << bps) - 1;
        for (uint32_t v = 0; v <= max; v++) {
            uint8_t g8 = (uint8_t)(v * 255 / max); /* exact for 1, 2, 4, 8 bits */
            f->lut[v] = f->invert ? (uint8_t)(255 - g8) : g8;
        }
    }
    return 1;
}

int pe_decode_tiff(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                   pe_image *out, pe_decode_info *info) {
    PE_ASSERT(out != NULL && out->px == NULL);
    pe_decode_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    info->format = PE_FORMAT_TIFF;
    info->orientation = 1;
    info->scale_num = info->scale_den = 1;

    int rc = 0;
    pe_image im = {0};
    TIFFOpenOptions *topts = NULL;
    TIFF *tif = NULL;
    tiff_src src = {.buf = buf, .len = buf ? len : 0};

    if (src.len < 8) return pe_fail(PE_EFORMAT, "tiff: truncated header");
    if (deadline_passed(opts)) return pe_fail(PE_ETIMEOUT, "tiff: decode deadline passed");

    uint64_t max_pixels = opts && opts->max_pixels ? opts->max_pixels : PE_DEFAULT_MAX_PIXELS;
    /* A legitimate image at the pixel limit needs at most 8 bytes a pixel
     * in one strip (16-bit RGBA); 64 MiB covers metadata of tiny images. */
    uint64_t mem_cap = max_pixels > (uint64_t)INT64_MAX / 16 ? (uint64_t)INT64_MAX / 2
                                                            : max_pixels * 8;
    if (mem_cap < ((uint64_t)64 << 20)) mem_cap = (uint64_t)64 << 20;
    if (mem_cap > SIZE_MAX) mem_cap = SIZE_MAX;

    topts = TIFFOpenOptionsAlloc();
    if (!topts) return pe_fail(ENOMEM, "tiff: cannot allocate open options");
    TIFFOpenOptionsSetMaxSingleMemAlloc(topts, (tmsize_t)mem_cap);
    TIFFOpenOptionsSetErrorHandlerExtR(topts, on_error, &src);
    TIFFOpenOptionsSetWarningHandlerExtR(topts, on_warning, &src);
    tif = TIFFClientOpenExt(TIFF_NAME, "r", (thandle_t)&src, src_read, src_write,
                            src_seek, src_close, src_size, src_map, src_unmap, topts);
    if (!tif) {
        rc = tiff_fail(PE_EFORMAT, &src, "cannot open");
        goto done;
    }

    uint32_t w = 0, h = 0;
    uint16_t spp = 1, bps = 1, photometric = 0, planar = PLANARCONFIG_CONTIG;
    uint16_t sampleformat = SAMPLEFORMAT_UINT, orientation = ORIENTATION_TOPLEFT;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) ||
        !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h) || w == 0 || h == 0) {
        rc = tiff_fail(PE_EFORMAT, &src, "missing or zero image size");
        goto done;
    }
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &sampleformat);
    TIFFGetFieldDefaulted(tif, TIFFTAG_ORIENTATION, &orientation);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric)) {
        rc = tiff_fail(PE_EFORMAT, &src, "missing PhotometricInterpretation");
        goto done;
    }
    info->orig_w = w;
    info->orig_h = h;
    info->orig_c = spp;
    info->bits = bps;

    if ((uint64_t)w * h > max_pixels) {
        rc = pe_fail(PE_ETOOBIG, "tiff: %ux%u exceeds the pixel limit (%llu)", w, h,
                     (unsigned long long)max_pixels);
        goto done;
    }
    if (sampleformat != SAMPLEFORMAT_UINT && sampleformat != SAMPLEFORMAT_VOID) {
        rc = pe_fail(PE_EUNSUPPORTED, "tiff: %s samples are not supported",
                     sampleformat == SAMPLEFORMAT_IEEEFP ? "floating-point"
                     : sampleformat == SAMPLEFORMAT_INT  ? "signed"
                                                         : "complex");
        goto done;
    }
    if (deadline_passed(opts)) {
        rc = pe_fail(PE_ETIMEOUT, "tiff: decode deadline passed");
        goto done;
    }

    direct_fmt f;
    int separate = planar == PLANARCONFIG_SEPARATE && spp > 1;
    uint16_t compression = COMPRESSION_NONE;
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
    int direct = compression != COMPRESSION_OJPEG &&
                 direct_setup(tif, photometric, bps, spp, separate, &f);
    uint32_t c = direct ? f.c
                 : (photometric == PHOTOMETRIC_MINISBLACK ||
                    photometric == PHOTOMETRIC_MINISWHITE) ? 1 : 3;
    if ((rc = pe_image_alloc(&im, w, h, c))) goto done;
    if (direct)
        rc = read_direct(tif, &src, &f, spp, separate, mem_cap, opts, &im);
    else
        rc = read_rgba(tif, &src, mem_cap, opts, &im);
    if (rc) goto done;
    if (deadline_passed(opts)) {
        rc = pe_fail(PE_ETIMEOUT, "tiff: decode deadline passed");
        goto done;
    }

    if (!(opts && opts->no_orient) && orientation >= 2 && orientation <= 8) {
        if ((rc = pe_image_orient(&im, orientation))) goto done;
        info->orientation = orientation;
    }
    *out = im;
    im = (pe_image){0};
done:
    pe_image_free(&im);
    if (tif) TIFFClose(tif);
    if (topts) TIFFOpenOptionsFree(topts);
    return rc;
}
