/*
 * sumsq.c - the sum of squares of a float array for the CPU backend (the
 * L2 norm of a group's gradient in DP-SGD), in the fixed order backend.h
 * defines: chunks of PE_SUMSQ_CHUNK elements summed in double, each in
 * index order on whichever thread, then the chunks' sums in chunk order on
 * the calling thread. The result equals pe_ref_sumsq bit for bit for any
 * thread count.
 *
 * Not for: norms that may round differently per thread count (none may).
 */
#include <errno.h>

#include "cpu.h"
#include "pe.h"

typedef struct sumsq_job {
    size_t n;
    const float *x;
    double *part; /* one per chunk */
} sumsq_job;

static void sumsq_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const sumsq_job *j = ctx;
    size_t lo = item * PE_SUMSQ_CHUNK, hi = lo + PE_SUMSQ_CHUNK < j->n ? lo + PE_SUMSQ_CHUNK : j->n;
    double s = 0;
    for (size_t i = lo; i < hi; i++) s += (double)j->x[i] * j->x[i];
    j->part[item] = s;
}

int pe_cpu_sumsq(pe_backend *b, size_t n, const float *x, double *out) {
    size_t nchunks = pe_cpu_chunks(n, PE_SUMSQ_CHUNK);
    double *part = pe_cpu_scratch(b, nchunks * sizeof *part);
    if (!part) return pe_fail(ENOMEM, "out of memory for a sum of %zu squares", n);
    sumsq_job j = {n, x, part};
    if (n == 0) part[0] = 0;
    else pe_cpu_parallel_for(pe_cpu_of(b)->pool, nchunks, sumsq_item, &j);
    double s = 0;
    for (size_t c = 0; c < nchunks; c++) s += part[c];
    *out = s;
    return 0;
}
