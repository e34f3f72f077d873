/*
 * elementwise.c - the CPU backend's elementwise ops: relu forward and
 * backward, add, accumulate, and the dense layer's bias add and bias
 * gradient. All are memory-bound loops that the compiler vectorises; they
 * compute exactly what ref_body.h computes, in the same order, so the
 * results equal the reference bit for bit.
 *
 * Not for: BatchNorm (bn.c) or anything with a reduction longer than one
 * column sum.
 */
#include "cpu.h"
#include "pe.h"

/* Elements per item: 128 KiB of floats, enough to hide the pool's wake-up
 * (~10 us) behind the work, small enough to balance two cores. */
enum { GRAIN = 32768 };

typedef struct ew_job {
    size_t n;
    const float *a, *c;
    float *y;
} ew_job;

static void span(const ew_job *j, size_t item, size_t *lo, size_t *hi) {
    *lo = item * GRAIN;
    *hi = *lo + GRAIN < j->n ? *lo + GRAIN : j->n;
}

static void relu_fwd_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const ew_job *j = ctx;
    size_t lo, hi;
    span(j, item, &lo, &hi);
    const float *x = j->a;
    float *y = j->y;
    for (size_t i = lo; i < hi; i++) y[i] = x[i] < 0 ? 0 : x[i];
}

static void relu_bwd_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const ew_job *j = ctx;
    size_t lo, hi;
    span(j, item, &lo, &hi);
    const float *y = j->a, *dy = j->c;
    float *dx = j->y;
    /* dy is read whatever the sign of y, so the compiler may select instead
     * of branching: a branch on the sign of activations mispredicts half
     * the time (it cost 13% of a training step) */
    for (size_t i = lo; i < hi; i++) {
        float g = dy[i];
        dx[i] = y[i] <= 0 ? 0.0f : g;
    }
}

static void add_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const ew_job *j = ctx;
    size_t lo, hi;
    span(j, item, &lo, &hi);
    const float *a = j->a, *c = j->c;
    float *y = j->y;
    for (size_t i = lo; i < hi; i++) y[i] = a[i] + c[i];
}

static void accumulate_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const ew_job *j = ctx;
    size_t lo, hi;
    span(j, item, &lo, &hi);
    const float *src = j->a;
    float *dst = j->y;
    for (size_t i = lo; i < hi; i++) dst[i] += src[i];
}

static int run(pe_backend *b, size_t n, pe_cpu_item_fn fn, const float *a,
               const float *c, float *y) {
    ew_job j = {n, a, c, y};
    if (n) pe_cpu_parallel_for(pe_cpu_of(b)->pool, pe_cpu_chunks(n, GRAIN), fn, &j);
    return 0;
}

int pe_cpu_relu_fwd(pe_backend *b, size_t n, const float *x, float *y) {
    return run(b, n, relu_fwd_item, x, NULL, y);
}

int pe_cpu_relu_bwd(pe_backend *b, size_t n, const float *y, const float *dy,
                    float *dx) {
    return run(b, n, relu_bwd_item, y, dy, dx);
}

int pe_cpu_add(pe_backend *b, size_t n, const float *a, const float *c,
               float *y) {
    return run(b, n, add_item, a, c, y);
}

int pe_cpu_accumulate(pe_backend *b, size_t n, const float *src, float *dst) {
    return run(b, n, accumulate_item, src, NULL, dst);
}

/* ---- bias ---------------------------------------------------------------- */

typedef struct bias_job {
    int N, out;
    int rows;  /* rows per item (bias_add) */
    int cols;  /* columns per item (bias_bwd) */
    const float *src;
    float *dst;
} bias_job;

static void bias_add_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const bias_job *j = ctx;
    int lo = (int)item * j->rows;
    int hi = lo + j->rows < j->N ? lo + j->rows : j->N;
    const float *bias = j->src;
    for (int i = lo; i < hi; i++) {
        float *y = j->dst + (size_t)i * j->out;
        for (int k = 0; k < j->out; k++) y[k] += bias[k];
    }
}

/* one block of columns, rows summed top to bottom as the reference does;
 * the inner loop runs across columns, so it vectorises without
 * reassociating any sum */
static void bias_bwd_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const bias_job *j = ctx;
    int lo = (int)item * j->cols;
    int hi = lo + j->cols < j->out ? lo + j->cols : j->out;
    float *db = j->dst;
    for (int k = lo; k < hi; k++) db[k] = 0;
    for (int i = 0; i < j->N; i++) {
        const float *dy = j->src + (size_t)i * j->out;
        for (int k = lo; k < hi; k++) db[k] += dy[k];
    }
}

int pe_cpu_bias_add(pe_backend *b, int N, int out, const float *bias,
                    float *y) {
    PE_ASSERT(N >= 0 && out >= 0);
    if (N == 0 || out == 0) return 0;
    bias_job j = {N, out, 0, 0, bias, y};
    j.rows = GRAIN / out > 0 ? GRAIN / out : 1;
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, pe_cpu_chunks((size_t)N, (size_t)j.rows),
                        bias_add_item, &j);
    return 0;
}

int pe_cpu_bias_bwd(pe_backend *b, int N, int out, const float *dy,
                    float *dbias) {
    PE_ASSERT(N >= 0 && out >= 0);
    if (out == 0) return 0;
    bias_job j = {N, out, 0, 64, dy, dbias};
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, pe_cpu_chunks((size_t)out, 64),
                        bias_bwd_item, &j);
    return 0;
}
