/*
 * image.h - the in-memory image: 8-bit, 1 (gray) or 3 (RGB) channels,
 * row-major HWC, tightly packed (stride = w * c). Any size.
 *
 * Not for: more than 8 bits, alpha, or strided views; decoders reduce to
 * this form at the formats/ boundary.
 *
 * Ownership: an image owns px (malloc'd); pe_image_free releases it and
 * zeroes the struct. A zeroed pe_image is a valid empty image.
 */
#ifndef PE_IMAGE_H
#define PE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct pe_image {
    uint32_t w, h, c; /* c is 1 or 3 */
    uint8_t *px;      /* (H, W, C), w*h*c bytes, owned */
} pe_image;

/* Largest w*h any program accepts unless told otherwise (--max-pixels). */
#define PE_DEFAULT_MAX_PIXELS (64u * 1024u * 1024u)

/* Allocates px for w x h x c (c 1 or 3; w, h >= 1). Contents undefined.
 * Returns 0, ENOMEM, or PE_ETOOBIG when w*h*c overflows size_t. */
int pe_image_alloc(pe_image *im, uint32_t w, uint32_t h, uint32_t c);
void pe_image_free(pe_image *im);
static inline size_t pe_image_size(const pe_image *im) {
    return (size_t)im->w * im->h * im->c;
}

/* Converts in place to c channels (1 or 3) with PIL's rules:
 * RGB->L is L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 (ITU-R 601-2
 * luma, as Pillow's convert("L")); L->RGB replicates. */
int pe_image_to_channels(pe_image *im, uint32_t c);

/* Resizes src to dst_w x dst_h into *dst (allocated here; *dst must be
 * empty) with Pillow's Image.resize(..., BILINEAR) semantics: separable
 * triangle filter whose support widens with the downscale factor
 * (antialiased), fixed-point coefficients, uint8 result after each pass.
 * Bit-exact with Pillow 9 (tests/unit/test_resample.c checks it). */
int pe_image_resize_bilinear(const pe_image *src, pe_image *dst,
                             uint32_t dst_w, uint32_t dst_h);

/* Same filter applied to the box (x0, y0, x1, y1) of src in source pixel
 * coordinates (floats, as Pillow's resize(box=...)), for crops. */
int pe_image_resize_box_bilinear(const pe_image *src, pe_image *dst,
                                 uint32_t dst_w, uint32_t dst_h, double x0,
                                 double y0, double x1, double y1);

/* The same two with Pillow's LANCZOS filter (Lanczos-3: sinc(x) sinc(x/3)
 * on |x| < 3, support widened by the downscale factor; negative lobes, the
 * result clipped to 0..255), bit-exact with Pillow 9's Image.resize(...,
 * LANCZOS). The perceptual hash (phash.h) resizes with it, as Python's
 * imagehash does. */
int pe_image_resize_lanczos(const pe_image *src, pe_image *dst,
                            uint32_t dst_w, uint32_t dst_h);
int pe_image_resize_box_lanczos(const pe_image *src, pe_image *dst,
                                uint32_t dst_w, uint32_t dst_h, double x0,
                                double y0, double x1, double y1);

/* Applies an EXIF orientation (1..8) in place (may swap w and h).
 * Orientation 1 or out of range is a no-op. */
int pe_image_orient(pe_image *im, int orientation);

#endif
