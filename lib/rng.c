/*
 * rng.c - Philox4x32-10 and the streams built on it (see rng.h for the
 * exact derivation, which this file implements and must keep).
 *
 * Not for: speed records. One block costs ten 32x32->64 multiplies; an
 * augmented view draws a few dozen words. The block function itself lives
 * in kernels/devmath.h, shared with the CUDA kernels.
 */
#include "rng.h"

#include "devmath.h"
#include "pe.h"

void pe_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                      uint32_t out[4]) {
    pe_dm_philox(ctr, key, out);
}

void pe_rng_epoch_key(uint64_t seed, uint64_t epoch, uint32_t tag,
                      uint32_t key[2]) {
    const uint32_t kseed[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)epoch, (uint32_t)(epoch >> 32), 0,
                             tag};
    uint32_t out[4];
    pe_philox4x32_10(ctr, kseed, out);
    key[0] = out[0];
    key[1] = out[1];
}

pe_rng pe_rng_init(const uint32_t key[2], uint32_t c1, uint32_t c2,
                   uint32_t c3) {
    pe_rng r = {{key[0], key[1]}, {0, c1, c2, c3}, {0, 0, 0, 0}, 4};
    return r;
}

pe_rng pe_rng_stream(uint64_t seed, uint64_t epoch, uint64_t index,
                     uint32_t view) {
    uint32_t key[2];
    pe_rng_epoch_key(seed, epoch, PE_RNG_TAG_VIEW, key);
    return pe_rng_init(key, view, (uint32_t)index, (uint32_t)(index >> 32));
}

pe_rng pe_rng_region_stream(uint64_t seed, uint64_t epoch, uint64_t index) {
    uint32_t key[2];
    pe_rng_epoch_key(seed, epoch, PE_RNG_TAG_REGION, key);
    return pe_rng_init(key, 0, (uint32_t)index, (uint32_t)(index >> 32));
}

uint32_t pe_rng_u32(pe_rng *r) {
    if (r->pos >= 4) {
        pe_philox4x32_10(r->ctr, r->key, r->buf);
        /* 128-bit increment, as Random123's incr. */
        for (int i = 0; i < 4 && ++r->ctr[i] == 0; i++) {
        }
        r->pos = 0;
    }
    return r->buf[r->pos++];
}

float pe_rng_float(pe_rng *r) {
    return (float)(pe_rng_u32(r) >> 8) * 0x1p-24f;
}

double pe_rng_double(pe_rng *r) {
    const uint64_t a = pe_rng_u32(r);
    const uint64_t b = pe_rng_u32(r);
    return (double)((a << 32 | b) >> 11) * 0x1p-53;
}

float pe_rng_uniform_f32(pe_rng *r, double a, double b) {
    const float u = pe_rng_float(r);
    const float A = (float)a, B = (float)b;
    const float D = B - A;
    return (float)((double)u * (double)D + (double)A);
}

int64_t pe_rng_int(pe_rng *r, int64_t lo, int64_t hi) {
    PE_ASSERT(lo <= hi);
    /* n = hi - lo + 1 in uint64 arithmetic; 0 stands for 2^64. */
    const uint64_t n = (uint64_t)hi - (uint64_t)lo + 1u;
    uint64_t x;
    if (n != 0 && n <= (UINT64_C(1) << 32)) {
        uint64_t m = (uint64_t)pe_rng_u32(r) * n;
        if ((uint32_t)m < n) {
            const uint32_t t = (uint32_t)(((UINT64_C(1) << 32) - n) % n);
            while ((uint32_t)m < t) m = (uint64_t)pe_rng_u32(r) * n;
        }
        x = m >> 32;
    } else {
        uint64_t mask = n - 1; /* n = 0: all ones */
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        mask |= mask >> 32;
        do {
            const uint64_t a = pe_rng_u32(r);
            x = (a << 32 | pe_rng_u32(r)) & mask;
        } while (n != 0 && x >= n);
    }
    return (int64_t)((uint64_t)lo + x);
}

void pe_rng_shuffle(uint64_t seed, uint64_t epoch, uint32_t *items,
                    size_t n) {
    PE_ASSERT(items != NULL || n == 0);
    uint32_t key[2];
    pe_rng_epoch_key(seed, epoch, PE_RNG_TAG_SHUFFLE, key);
    pe_rng r = pe_rng_init(key, 0, 0, 0);
    for (size_t i = n; i-- > 1;) {
        const size_t j = (size_t)pe_rng_int(&r, 0, (int64_t)i);
        const uint32_t t = items[i];
        items[i] = items[j];
        items[j] = t;
    }
}
