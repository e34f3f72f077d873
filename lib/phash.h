/*
 * phash.h - the 64-bit perceptual hash of an image (docs/phash.md gives it
 * to the bit) and a Hamming-radius search over many such hashes.
 *
 * Two modes share one pipeline: gray (Pillow's convert("L")), Lanczos
 * resize to 32x32 (Pillow-exact, pe_image_resize_lanczos), the top-left 8x8
 * of the 2-D DCT-II, one bit per coefficient: coefficient > median of the
 * 64. They differ only in the DCT's arithmetic:
 *  PE_PHASH_PE         integer DCT with a fixed table of 12-bit cosines and
 *                      an exact integer median rule: the same bits on every
 *                      machine and in any language (the spec's mode);
 *  PE_PHASH_IMAGEHASH  the DCT in double precision, as Python imagehash's
 *                      phash() computes it with scipy.fftpack: its bits,
 *                      save where a coefficient ties the median within
 *                      rounding (imagehash itself is then platform-bound).
 * Bit order (both): coefficient (k, l), k the vertical frequency (row of
 * the DCT) and l the horizontal one, is bit 63 - (8k + l) of the uint64,
 * so the hash printed as 16 hex digits is imagehash's str(hash).
 *
 * Not for: cryptographic identity (pe_key is that), or hashes other than
 * 64 bits.
 */
#ifndef PE_PHASH_H
#define PE_PHASH_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"

#define PE_PHASH_SIDE 32                  /* thumbnail side */
#define PE_PHASH_THUMB (PE_PHASH_SIDE * PE_PHASH_SIDE)

typedef enum pe_phash_mode {
    PE_PHASH_PE = 0,
    PE_PHASH_IMAGEHASH = 1,
} pe_phash_mode;

/* "pe" or "imagehash"; PE_EUSAGE otherwise. */
int pe_phash_mode_parse(const char *s, pe_phash_mode *out);
const char *pe_phash_mode_name(pe_phash_mode m);

/* The 32x32 gray thumbnail of the box [x0, x1) x [y0, y1) of im (integer
 * pixel bounds inside the image, non-empty): the box is cropped, converted
 * to gray when RGB, and resized with Lanczos, as PIL's
 * im.crop(box).convert("L").resize((32, 32), LANCZOS). Pass the whole image
 * for the image's hash. Returns 0, PE_EUSAGE (bad box), ENOMEM. */
int pe_phash_thumb(const pe_image *im, uint32_t x0, uint32_t y0, uint32_t x1,
                   uint32_t y1, uint8_t thumb[PE_PHASH_THUMB]);

/* The hash of a thumbnail. */
uint64_t pe_phash_of_thumb(const uint8_t thumb[PE_PHASH_THUMB],
                           pe_phash_mode mode);

/* The hash of a whole image. Returns 0 or the error of pe_phash_thumb. */
int pe_phash(const pe_image *im, pe_phash_mode mode, uint64_t *out);

/* 16 lowercase hex digits + NUL. */
void pe_phash_hex(uint64_t h, char out[17]);
/* Exactly 16 hex digits (either case); 0 or PE_EFORMAT. */
int pe_phash_from_hex(const char *s, uint64_t *out);

static inline int pe_hamming(uint64_t a, uint64_t b) {
    return __builtin_popcountll(a ^ b);
}

/* ---- search ----
 * Multi-index hashing (Norouzi et al.): the 64 bits are cut into 4 blocks
 * of 16; a hash within radius r of a query agrees with it to within
 * floor(r / 4) bits on at least one block (pigeonhole), so probing each
 * block's table at that block radius and checking the full distance finds
 * every hash within r and nothing else. Each hit is reported once (at the
 * first block that could find it). Radii of 16 and more, where probing
 * costs more than reading, scan every hash. Which 16 bits make a block is
 * chosen at build from the hash's quarters and 8 fixed bit permutations,
 * as the one with the least crowded buckets on these hashes (lib/phash.c);
 * each block keeps the hashes in bucket order to be read in sequence.
 * Memory: 8 + 4 x (8 + 4) = 56 bytes a hash plus 1 MiB of bucket offsets;
 * building is a few passes, no N x N anything. */
typedef struct pe_hindex pe_hindex;

/* Builds the index of h[0..n) (copied; ids are the positions). n may be 0.
 * Returns 0, ENOMEM, or PE_ETOOBIG for n >= 2^32. Free with
 * pe_hindex_free. */
int pe_hindex_build(pe_hindex **out, const uint64_t *h, size_t n);
void pe_hindex_free(pe_hindex *ix);
size_t pe_hindex_size(const pe_hindex *ix);
/* Bytes the index holds (hashes, copies, ids and bucket offsets). */
size_t pe_hindex_bytes(const pe_hindex *ix);
/* The block layout the build chose: 0 the hash's quarters, 1-8 one of the
 * fixed bit permutations (for benchmarks and tests). */
int pe_hindex_layout(const pe_hindex *ix);
uint64_t pe_hindex_hash(const pe_hindex *ix, uint32_t id);

/* Calls fn(ctx, id, distance) for every indexed hash within radius of q
 * (0 <= radius <= 64), each once, in no particular order. A nonzero return
 * from fn stops the query and is returned. */
typedef int (*pe_hindex_fn)(void *ctx, uint32_t id, int dist);
int pe_hindex_query(const pe_hindex *ix, uint64_t q, int radius,
                    pe_hindex_fn fn, void *ctx);

#endif
