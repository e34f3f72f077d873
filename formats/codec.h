/*
 * codec.h - decoding encoded image files (JPEG, PNG, TIFF, PNM, BMP) into a
 * pe_image, and encoding PNG for export and JPEG for pe-craft's
 * perturbations.
 *
 * Not for: dataset containers (IDX, CIFAR, STL-10, tar: see dataset.h) or
 * canonicalisation beyond what a decoder does cheaply (DCT scaling).
 *
 * Every decoder is a boundary for untrusted bytes: it never crashes, never
 * leaks, never calls exit, and turns every library error (libjpeg's
 * error_exit, libpng's longjmp, libtiff's handlers) into PE_EFORMAT with a
 * message saying why. Limits (pixels, scans, chunk sizes, deadline) come in
 * pe_decode_opts and give PE_ETOOBIG / PE_ETIMEOUT.
 *
 * Output: 8-bit, 1 channel for gray sources (gray, gray+alpha, 1/2/4/16-bit
 * gray), 3 channels for everything else (RGB, palette, CMYK/YCCK converted to
 * RGB, RGBA). Alpha is dropped, not composited (as Pillow's convert("RGB")).
 * 16-bit PNG and TIFF samples keep their high byte (as libpng's
 * png_set_strip_16); PNM samples of any maxval scale to round(v*255/maxval).
 */
#ifndef PE_CODEC_H
#define PE_CODEC_H

#include "../lib/image.h"

typedef enum pe_format {
    PE_FORMAT_UNKNOWN = 0,
    PE_FORMAT_JPEG = 1,
    PE_FORMAT_PNG = 2,
    PE_FORMAT_TIFF = 3,
    PE_FORMAT_PNM = 4,
    PE_FORMAT_BMP = 5,
    PE_FORMAT_IDX = 6,
    PE_FORMAT_CIFAR = 7,
    PE_FORMAT_STL10 = 8,
    PE_FORMAT_STORE = 9, /* copied from another store */
    PE_FORMAT_RAW = 10,  /* made in memory (crafted images) */
} pe_format;

const char *pe_format_name(pe_format f); /* "jpeg", "png", ... static */

typedef struct pe_decode_opts {
    uint64_t max_pixels;  /* reject w*h above this; 0 = PE_DEFAULT_MAX_PIXELS */
    /* DCT-scaling hint for JPEG: the decoder may decode at the smallest
     * scale M/8 whose result is still >= min_w x min_h (0 = full size).
     * Used for --max-side and --size so the resize after it still
     * downscales (keeps Pillow-like quality). */
    uint32_t min_w, min_h;
    int max_scans;        /* progressive JPEG scan limit; 0 = 500 */
    double deadline;      /* pe_now() value after which decoding stops with
                             PE_ETIMEOUT; 0 = none */
    int no_orient;        /* 1: ignore EXIF orientation */
} pe_decode_opts;

typedef struct pe_decode_info {
    pe_format format;
    uint32_t orig_w, orig_h; /* as stored in the file, before orientation/scaling */
    uint32_t orig_c;         /* channels in the file (4 for CMYK/RGBA, 2 for GA) */
    uint32_t bits;           /* bits per sample in the file */
    int orientation;         /* EXIF orientation applied (1 = none) */
    int scale_num, scale_den;/* JPEG DCT scaling used (1/1 = none) */
    int progressive;         /* JPEG: 1 if progressive */
} pe_decode_info;

/* Sniffs the format from the first bytes and decodes. *out must be empty;
 * on success it owns the pixels; on failure it stays empty. info may be NULL.
 * Returns 0, PE_EFORMAT (not an image / corrupt / truncated: message says
 * which), PE_EUNSUPPORTED, PE_ETOOBIG, PE_ETIMEOUT, ENOMEM. */
int pe_decode(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
              pe_image *out, pe_decode_info *info);

/* Format from magic bytes (PE_FORMAT_UNKNOWN if none matches). */
pe_format pe_sniff(const uint8_t *buf, size_t len);

/* Per-format decoders, same contract as pe_decode. */
int pe_decode_jpeg(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                   pe_image *out, pe_decode_info *info);
int pe_decode_png(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                  pe_image *out, pe_decode_info *info);
int pe_decode_tiff(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                   pe_image *out, pe_decode_info *info);
int pe_decode_pnm(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                  pe_image *out, pe_decode_info *info);
int pe_decode_bmp(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                  pe_image *out, pe_decode_info *info);

/* EXIF orientation (1..8) from a JPEG APP1 payload starting at "Exif\0\0";
 * returns 1 when absent or malformed. Never reads outside [buf, buf+len). */
int pe_exif_orientation(const uint8_t *buf, size_t len);

/* Encodes im as an 8-bit gray or RGB PNG into a malloc'd buffer (*out,
 * *out_len; caller frees). Returns 0, ENOMEM or PE_EFORMAT. */
int pe_encode_png(const pe_image *im, uint8_t **out, size_t *out_len);

/* Encodes im as a baseline JPEG at quality 1..100 with Pillow's defaults
 * for Image.save(..., quality=Q) (gray stays gray; colour is YCbCr 4:2:0;
 * the islow DCT), so the bytes decode to what Pillow's round trip gives.
 * Same ownership. Returns 0, ENOMEM, PE_EUSAGE (quality), PE_EUNSUPPORTED
 * (a side over 65500) or PE_EFORMAT. */
int pe_encode_jpeg(const pe_image *im, int quality, uint8_t **out, size_t *out_len);

/* Encodes im as binary PGM (c=1) or PPM (c=3); same ownership. */
int pe_encode_pnm(const pe_image *im, uint8_t **out, size_t *out_len);

#endif
