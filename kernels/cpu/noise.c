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
#include "devmath.h"
#include "pe.h"

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
        double r, a;
        pe_dm_gauss_polar(j->key, i / 2, &r, &a);
        j->dst[i] = pe_dm_noised(j->src[i], j->stddev, r * cos(a), j->scale);
        if (i + 1 < hi)
            j->dst[i + 1] = pe_dm_noised(j->src[i + 1], j->stddev, r * sin(a), j->scale);
    }
}

int pe_cpu_gauss_noise(pe_backend *b, size_t n, const uint32_t key[2], double stddev,
                       double scale, const float *src, float *dst) {
    if (n == 0) return 0;
    noise_job j = {n, {key[0], key[1]}, stddev, scale, src, dst};
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, pe_cpu_chunks(n, GRAIN), noise_item, &j);
    return 0;
}
