/*
 * optim.c - the CPU backend's optimiser steps on flat parameter arrays:
 * Adam (L2 weight decay, as torch.optim.Adam, not AdamW) and SGD with
 * momentum (as torch.optim.SGD, dampening 0, no Nesterov). Elementwise, in
 * the reference's order of operations, so the results equal pe_ref_adam
 * and pe_ref_sgd bit for bit; see ref_body.h for the formulas.
 *
 * Not for: learning-rate schedules, gradient clipping, parameter groups
 * (lib/train.c).
 */
#include "cpu.h"
#include "devmath.h"
#include "pe.h"

enum { GRAIN = 16384 }; /* parameters per item */

typedef struct optim_job {
    size_t n;
    float *p, *m, *v, *buf;
    const float *g;
    pe_dm_adam_k k;
    float lr, wd, momentum;
    int first;
} optim_job;

static void adam_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const optim_job *j = ctx;
    size_t lo = item * GRAIN, hi = lo + GRAIN < j->n ? lo + GRAIN : j->n;
    float *p = j->p, *m = j->m, *v = j->v;
    const float *g = j->g;
    for (size_t i = lo; i < hi; i++) pe_dm_adam(&j->k, &p[i], g[i], &m[i], &v[i]);
}

int pe_cpu_adam(pe_backend *b, size_t n, float *p, const float *g, float *m,
                float *v, float lr, float b1, float b2, float eps, float wd,
                long t) {
    PE_ASSERT(t >= 1);
    if (n == 0) return 0;
    optim_job j = {.n = n, .p = p, .m = m, .v = v, .g = g,
                   .k = pe_dm_adam_consts(lr, b1, b2, eps, wd, t)};
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, pe_cpu_chunks(n, GRAIN), adam_item, &j);
    return 0;
}

static void sgd_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const optim_job *j = ctx;
    size_t lo = item * GRAIN, hi = lo + GRAIN < j->n ? lo + GRAIN : j->n;
    float *p = j->p, *buf = j->buf;
    const float *g = j->g;
    for (size_t i = lo; i < hi; i++)
        pe_dm_sgd(&p[i], g[i], buf ? &buf[i] : NULL, j->lr, j->momentum, j->wd, j->first);
}

int pe_cpu_sgd(pe_backend *b, size_t n, float *p, const float *g, float *buf,
               float lr, float momentum, float wd, int first) {
    PE_ASSERT(momentum == 0 || buf != NULL);
    if (n == 0) return 0;
    optim_job j = {.n = n, .p = p, .buf = buf, .g = g, .lr = lr,
                   .momentum = momentum, .wd = wd, .first = first};
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, pe_cpu_chunks(n, GRAIN), sgd_item, &j);
    return 0;
}
