/*
 * ema.c - the momentum (exponential moving average) update of a copy of
 * the parameters for the CPU backend: MoCo's key encoder, dst = m dst +
 * (1 - m) src. Elementwise, in PyTorch's order of operations (each product
 * rounded to float, then the sum), so the result equals pe_ref_ema bit for
 * bit and the float32 arithmetic of `k.data * m + q.data * (1. - m)`.
 *
 * Not for: the optimisers' moment estimates (optim.c).
 */
#include "cpu.h"
#include "devmath.h"
#include "pe.h"

enum { GRAIN = 16384 }; /* elements per item */

typedef struct ema_job {
    size_t n;
    const float *src;
    float *dst;
    float m, one_minus_m;
} ema_job;

static void ema_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const ema_job *j = ctx;
    size_t lo = item * GRAIN, hi = lo + GRAIN < j->n ? lo + GRAIN : j->n;
    for (size_t i = lo; i < hi; i++) j->dst[i] = pe_dm_ema(j->dst[i], j->src[i], j->m, j->one_minus_m);
}

int pe_cpu_ema(pe_backend *b, size_t n, const float *src, float *dst, double m) {
    PE_ASSERT(m >= 0 && m <= 1);
    if (n == 0) return 0;
    ema_job j = {n, src, dst, (float)m, (float)(1.0 - m)};
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, pe_cpu_chunks(n, GRAIN), ema_item, &j);
    return 0;
}
