/*
 * pool.c - global average pooling for the CPU backend: y (N,C) = mean over
 * HW of x (N,C,HW), and its backward. The sums run in the reference's order
 * (float, first to last), so results equal pe_ref_avgpool_* bit for bit.
 *
 * Not for: windowed pooling (no model here uses it).
 */
#include "cpu.h"
#include "pe.h"

enum { GRAIN = 32768 }; /* x elements per item */

typedef struct pool_job {
    size_t rows; /* N*C */
    int HW;
    size_t per;  /* rows per item */
    const float *src;
    float *dst;
} pool_job;

static void fwd_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const pool_job *j = ctx;
    size_t lo = item * j->per, hi = lo + j->per < j->rows ? lo + j->per : j->rows;
    for (size_t r = lo; r < hi; r++) {
        const float *x = j->src + r * j->HW;
        float sum = 0;
        for (int i = 0; i < j->HW; i++) sum += x[i];
        j->dst[r] = sum / (float)j->HW;
    }
}

static void bwd_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const pool_job *j = ctx;
    size_t lo = item * j->per, hi = lo + j->per < j->rows ? lo + j->per : j->rows;
    for (size_t r = lo; r < hi; r++) {
        float g = j->src[r] / (float)j->HW;
        float *dx = j->dst + r * j->HW;
        for (int i = 0; i < j->HW; i++) dx[i] = g;
    }
}

static int run(pe_backend *b, int N, int C, int HW, pe_cpu_item_fn fn,
               const float *src, float *dst) {
    PE_ASSERT(N >= 0 && C >= 0 && HW > 0);
    pool_job j = {(size_t)N * C, HW, 0, src, dst};
    if (j.rows == 0) return 0;
    j.per = GRAIN / (size_t)HW > 0 ? GRAIN / (size_t)HW : 1;
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, pe_cpu_chunks(j.rows, j.per), fn, &j);
    return 0;
}

int pe_cpu_avgpool_fwd(pe_backend *b, int N, int C, int HW, const float *x,
                       float *y) {
    return run(b, N, C, HW, fwd_item, x, y);
}

int pe_cpu_avgpool_bwd(pe_backend *b, int N, int C, int HW, const float *dy,
                       float *dx) {
    return run(b, N, C, HW, bwd_item, dy, dx);
}
