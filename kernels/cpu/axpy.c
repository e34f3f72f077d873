/*
 * axpy.c - y += a x for the CPU backend (DP-SGD's sum of clipped group
 * gradients). Elementwise, the product rounded to float before the sum,
 * so the result equals pe_ref_axpy bit for bit.
 *
 * Not for: the plain dst += src (elementwise.c's accumulate).
 */
#include "cpu.h"
#include "devmath.h"
#include "pe.h"

enum { GRAIN = 32768 }; /* elements per item */

typedef struct axpy_job {
    size_t n;
    float a;
    const float *x;
    float *y;
} axpy_job;

static void axpy_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const axpy_job *j = ctx;
    size_t lo = item * GRAIN, hi = lo + GRAIN < j->n ? lo + GRAIN : j->n;
    for (size_t i = lo; i < hi; i++) j->y[i] = pe_dm_axpy(j->a, j->x[i], j->y[i]);
}

int pe_cpu_axpy(pe_backend *b, size_t n, float a, const float *x, float *y) {
    if (n == 0) return 0;
    axpy_job j = {n, a, x, y};
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, pe_cpu_chunks(n, GRAIN), axpy_item, &j);
    return 0;
}
