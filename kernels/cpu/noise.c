/*
 * noise.c - Gaussian noise added to a float array for the CPU backend
 * (DP-SGD's noise on the sum of clipped gradients), from Philox blocks
 * whose counter is the coordinate pair (see backend.h's gauss_noise), so
 * the values depend on the key and the coordinates only, never on how the
 * work is split. Equals pe_ref_gauss_noise bit for bit.
 *
 * Not for: the augmentations' draws (lib/rng.c streams).
 */
#include <math.h>

#include "cpu.h"
#include "pe.h"
#include "rng.h"

enum { GRAIN = 8192 }; /* elements per item: even, so a pair never straddles items */

typedef struct noise_job {
    size_t n;
    uint32_t key[2];
    double stddev, scale;
    const float *src;
    float *dst;
} noise_job;

static void noise_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const noise_job *j = ctx;
    size_t lo = item * GRAIN, hi = lo + GRAIN < j->n ? lo + GRAIN : j->n;
    for (size_t i = lo; i < hi; i += 2) {
        const uint64_t k = i / 2;
        const uint32_t ctr[4] = {(uint32_t)k, (uint32_t)(k >> 32), 0, 0};
        uint32_t w[4];
        pe_philox4x32_10(ctr, j->key, w);
        const double u1 = (double)(((uint64_t)w[0] << 32 | w[1]) >> 11) * 0x1p-53;
        const double u2 = (double)(((uint64_t)w[2] << 32 | w[3]) >> 11) * 0x1p-53;
        const double r = sqrt(-2.0 * log(1.0 - u1)), a = 2.0 * M_PI * u2;
        j->dst[i] = (float)(((double)j->src[i] + j->stddev * (r * cos(a))) * j->scale);
        if (i + 1 < hi)
            j->dst[i + 1] = (float)(((double)j->src[i + 1] + j->stddev * (r * sin(a))) * j->scale);
    }
}

int pe_cpu_gauss_noise(pe_backend *b, size_t n, const uint32_t key[2], double stddev,
                       double scale, const float *src, float *dst) {
    if (n == 0) return 0;
    noise_job j = {n, {key[0], key[1]}, stddev, scale, src, dst};
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, pe_cpu_chunks(n, GRAIN), noise_item, &j);
    return 0;
}
