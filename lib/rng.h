/*
 * rng.h - counter-based random numbers: Philox4x32-10 (Salmon et al.,
 * "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the constants
 * and round structure of Random123), streams keyed by what they are for,
 * and a seeded Fisher-Yates shuffle for epoch order.
 *
 * Not for: cryptography, or reproducing torch's own generator (mt19937 /
 * Philox offsets). The trainer draws its augmentation parameters here, so
 * that what a view looks like depends only on (seed, epoch, image index,
 * view) and never on which thread, process or GPU computed it.
 *
 * Everything here is a pure function of its arguments; a pe_rng is a small
 * value type (a copy replays the same words), owns nothing and needs no
 * free.
 *
 * ---- The exact derivation (what a CUDA kernel must reproduce) ----------
 *
 * Philox4x32-10(ctr[4], key[2]) -> out[4], all uint32, as Random123's
 * philox4x32_R(10, ctr, key): ten rounds of
 *     (hi0, lo0) = mulhilo32(0xD2511F53, ctr[0])
 *     (hi1, lo1) = mulhilo32(0xCD9E8D57, ctr[2])
 *     ctr = { hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0 }
 * with the key bumped between rounds (nine bumps):
 *     key[0] += 0x9E3779B9, key[1] += 0xBB67AE85.
 * mulhilo32(a, b) is the 64-bit product's high and low words (__umulhi
 * and a * b in CUDA). A port is checked by Random123's known answers and
 * by the streams in tests/unit/test_augment.c.
 *
 * Keys. With lo(x) and hi(x) the low and high 32 bits of a uint64:
 *     K_seed        = { lo(seed), hi(seed) }
 *     key_view      = first two words of
 *                     Philox(ctr = { lo(epoch), hi(epoch), 0, PE_RNG_TAG_VIEW },
 *                            key = K_seed)
 *     key_shuffle   = first two words of
 *                     Philox(ctr = { lo(epoch), hi(epoch), 0, PE_RNG_TAG_SHUFFLE },
 *                            key = K_seed)
 *     key_region    = first two words of
 *                     Philox(ctr = { lo(epoch), hi(epoch), 0, PE_RNG_TAG_REGION },
 *                            key = K_seed)
 * (all are the same for every image of an epoch: a host computes them
 * once per epoch with pe_rng_epoch_key and hands them to the device).
 *
 * Streams. A stream is a key and three fixed counter words c1, c2, c3; its
 * word k (k = 0, 1, 2, ...) is
 *     Philox(ctr = { 0, c1, c2, c3 } + floor(k / 4), key)[k % 4]
 * where the counter is read as a 128-bit little-endian integer (ctr[0] the
 * least significant word) and + carries across words (Random123's incr).
 * The view stream pe_rng_stream(seed, epoch, index, view) is
 *     key = key_view(seed, epoch),  { c1, c2, c3 } = { view, lo(index), hi(index) }
 * and no view draws anywhere near 2^32 blocks, so for it the counter is
 * simply { k/4, view, lo(index), hi(index) }. The region stream
 * pe_rng_region_stream(seed, epoch, index), which draws the shared region
 * of an image's two views under localized cropping (augment.h), is
 *     key = key_region(seed, epoch),  { c1, c2, c3 } = { 0, lo(index), hi(index) }
 * (its own key, so it shares no word with any view stream of any view
 * index). The shuffle stream is
 *     key = key_shuffle(seed, epoch),  { c1, c2, c3 } = { 0, 0, 0 }.
 *
 * Conversions of stream words (w0, w1, ... in stream order):
 *   pe_rng_u32     w0.
 *   pe_rng_float   (w0 >> 8) * 2^-24: one of the 2^24 floats k/2^24 in
 *                  [0, 1), exactly as torch.rand draws a float32 (24 bits).
 *   pe_rng_double  ((w0 << 32 | w1) >> 11) * 2^-53, in [0, 1); two words.
 *   pe_rng_uniform_f32(a, b)
 *                  u = pe_rng_float, then exactly what ATen 1.13's CPU
 *                  uniform_(a, b) does with its u on a float32 tensor:
 *                  A = (float)a, B = (float)b, D = B - A (float),
 *                  result (float)((double)u * (double)D + (double)A).
 *                  One word.
 *   pe_rng_int     uniform on [lo, hi] without modulo bias. Let
 *                  n = hi - lo + 1 (as uint64). If n <= 2^32: Lemire's
 *                  multiply-shift rejection: m = w * n (64-bit), accept when
 *                  (m mod 2^32) >= (2^32 - n) mod n, result lo + (m >> 32);
 *                  a rejected w is replaced by the next word. If n > 2^32
 *                  (or n = 2^64, the whole int64 range): draw x = w_a << 32 |
 *                  w_b from two words, keep the bits under the smallest
 *                  all-ones mask >= n - 1, accept when x < n; result lo + x.
 *
 * Shuffle. pe_rng_shuffle(seed, epoch, items, n) runs Fisher-Yates from
 * the end on the shuffle stream: for i = n-1 down to 1, j = pe_rng_int(0,
 * i), swap items[i] and items[j].
 */
#ifndef PE_RNG_H
#define PE_RNG_H

#include <stddef.h>
#include <stdint.h>

/* Domain tags of the key derivation: "view" and "shuf" in little-endian
 * ASCII, so a view stream and the shuffle of the same epoch never share a
 * key. */
#define PE_RNG_TAG_VIEW 0x77656976u
#define PE_RNG_TAG_SHUFFLE 0x66756873u
/* Localized cropping's region stream ("regn"). */
#define PE_RNG_TAG_REGION 0x6e676572u
/* pe-craft's draws: key of (seed, target index) with this tag ("craf"),
 * counter words (poison index, attempt, 0). */
#define PE_RNG_TAG_CRAFT 0x66617263u

/* A stream: key, counter of the next block, and the unread words of the
 * current block. Plain value; the fields are public for device code and
 * tests, not for callers to poke. */
typedef struct pe_rng {
    uint32_t key[2];
    uint32_t ctr[4]; /* ctr[0] (with carries into ctr[1..3]) is the next block */
    uint32_t buf[4]; /* the current block's output */
    uint32_t pos;    /* next unread word of buf; 4 when buf is used up */
} pe_rng;

/* SplitMix64 (Steele, Lea, Flood): the next value of a sequential
 * 64-bit stream whose state is *s. For fixed, seeded draws that need no
 * counter-based keying (initial weights, index layouts). */
static inline uint64_t pe_splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The block function: out = Philox4x32-10(ctr, key). */
void pe_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                      uint32_t out[4]);

/* key_view, key_shuffle or key_region (tag PE_RNG_TAG_VIEW /
 * PE_RNG_TAG_SHUFFLE / PE_RNG_TAG_REGION, or any other tag) of
 * (seed, epoch), as derived above, into key[2]. */
void pe_rng_epoch_key(uint64_t seed, uint64_t epoch, uint32_t tag,
                      uint32_t key[2]);

/* A stream with the given key and counter words c1, c2, c3, at word 0. */
pe_rng pe_rng_init(const uint32_t key[2], uint32_t c1, uint32_t c2,
                   uint32_t c3);

/* The stream of one augmented view: the view-th view of image index in
 * epoch epoch under seed. */
pe_rng pe_rng_stream(uint64_t seed, uint64_t epoch, uint64_t index,
                     uint32_t view);

/* The stream of the region both views of image index share in epoch epoch
 * under seed (localized cropping). */
pe_rng pe_rng_region_stream(uint64_t seed, uint64_t epoch, uint64_t index);

uint32_t pe_rng_u32(pe_rng *r);

/* Uniform in [0, 1) on the grid k * 2^-24 (24 random bits: every value is
 * exact in float's mantissa, the largest is 1 - 2^-24). One word. */
float pe_rng_float(pe_rng *r);

/* Uniform in [0, 1) on the grid k * 2^-53. Two words. */
double pe_rng_double(pe_rng *r);

/* A float uniform on [a, b) the way torch.empty(1).uniform_(a, b) makes
 * one from its 24-bit draw (see above; the float subtraction B - A is
 * ATen's, and the result can round up to b itself when b - a is tiny).
 * One word. */
float pe_rng_uniform_f32(pe_rng *r, double a, double b);

/* Uniform integer in [lo, hi] (inclusive; lo <= hi is asserted), unbiased
 * by rejection as described above. Usually one word (two above 2^32). */
int64_t pe_rng_int(pe_rng *r, int64_t lo, int64_t hi);

/* Shuffles items[0..n) in place with the (seed, epoch) shuffle stream.
 * To get an epoch's order of a set of n images, fill items with 0..n-1
 * first. The same (seed, epoch, n) always gives the same permutation. */
void pe_rng_shuffle(uint64_t seed, uint64_t epoch, uint32_t *items,
                    size_t n);

#endif
