/*
 * infonce.c - MoCo's InfoNCE loss and its gradient with respect to the
 * queries for the CPU backend, as the MoCo v2 reference code computes it
 * (F.normalize of q and k, l_pos = q . k, l_neg = q queue^T, logits
 * [l_pos, l_neg] / T, cross-entropy with the positive at index 0, mean over
 * rows); the formulas and the hand-derived gradient are in ref_body.h.
 *
 * Not for: NT-Xent (ntxent.c), the queue's bookkeeping or the momentum
 * update (lib/train.c, ema.c).
 *
 * Stability: each row's log-sum-exp subtracts the row maximum, so exp never
 * overflows whatever T is. Rows are cut into fixed blocks, the two products
 * with the queue are the backend's GEMM (tiles fixed by the shape), and the
 * loss is summed over rows in row order by one thread, so the bits do not
 * depend on the thread count. Scratch: N (1 + K) + 2 N D + 2 N floats (each
 * rounded up to 16) from the backend's scratch buffer: 4.3 MB at N = 256,
 * K = 4096, D = 128.
 */
#include <errno.h>
#include <math.h>

#include "cpu.h"
#include "pe.h"

enum { ROWS = 16 }; /* rows per item */

static const float NORM_EPS = 1e-12f; /* F.normalize's default eps */

typedef struct nce_job {
    int N, D, K;
    float T;
    const float *q, *k; /* (N, D) each */
    float *qn, *kn;     /* (N, D) normalised rows */
    float *qnorm;       /* (N) */
    float *s;           /* (N, 1 + K) logits, then d loss / d logits */
    float *rowloss;     /* (N) */
    float *dqn;         /* (N, D) */
    float *dq;          /* (N, D) */
} nce_job;

static void rows_of(const nce_job *j, size_t item, int *lo, int *hi) {
    *lo = (int)item * ROWS;
    *hi = *lo + ROWS < j->N ? *lo + ROWS : j->N;
}

static float normalise_row(const float *x, float *xn, int D) {
    float sq = 0;
    for (int c = 0; c < D; c++) sq += x[c] * x[c];
    float norm = sqrtf(sq), den = norm > NORM_EPS ? norm : NORM_EPS;
    for (int c = 0; c < D; c++) xn[c] = x[c] / den;
    return norm;
}

static void normalise_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const nce_job *j = ctx;
    int lo, hi;
    rows_of(j, item, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        size_t r = (size_t)i * j->D;
        j->qnorm[i] = normalise_row(j->q + r, j->qn + r, j->D);
        normalise_row(j->k + r, j->kn + r, j->D);
    }
}

/* per row: the positive logit, logits / T, the log-sum-exp, the row's loss
 * and the row of ds = (softmax - onehot(0)) / N */
static void softmax_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const nce_job *j = ctx;
    int lo, hi, L = 1 + j->K;
    rows_of(j, item, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        float *s = j->s + (size_t)i * L;
        const float *qn = j->qn + (size_t)i * j->D, *kn = j->kn + (size_t)i * j->D;
        float pos = 0;
        for (int c = 0; c < j->D; c++) pos += qn[c] * kn[c];
        s[0] = pos;
        float mx = -INFINITY;
        for (int c = 0; c < L; c++) {
            s[c] = s[c] / j->T;
            if (s[c] > mx) mx = s[c];
        }
        float sum = 0;
        for (int c = 0; c < L; c++) sum += expf(s[c] - mx);
        float lse = mx + logf(sum);
        j->rowloss[i] = lse - s[0];
        for (int c = 0; c < L; c++) s[c] = (expf(s[c] - lse) - (c == 0 ? 1 : 0)) / (float)j->N;
    }
}

/* dqn += ds[i,0] kn_i, dqn /= T, then back through the normalisation */
static void grad_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const nce_job *j = ctx;
    int lo, hi, D = j->D;
    rows_of(j, item, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        float *dqn = j->dqn + (size_t)i * D, *dq = j->dq + (size_t)i * D;
        const float *qn = j->qn + (size_t)i * D, *kn = j->kn + (size_t)i * D;
        float dpos = j->s[(size_t)i * (1 + j->K)];
        for (int c = 0; c < D; c++) dqn[c] = (dqn[c] + dpos * kn[c]) / j->T;
        if (j->qnorm[i] > NORM_EPS) {
            float dot = 0;
            for (int c = 0; c < D; c++) dot += qn[c] * dqn[c];
            for (int c = 0; c < D; c++) dq[c] = (dqn[c] - qn[c] * dot) / j->qnorm[i];
        } else {
            for (int c = 0; c < D; c++) dq[c] = dqn[c] / NORM_EPS;
        }
    }
}

int pe_cpu_infonce(pe_backend *b, int N, int D, int K, const float *q, const float *k,
                   const float *queue, float T, float *loss, float *dq, float *kn) {
    PE_ASSERT(N >= 1 && D >= 1 && K >= 1 && T > 0);
    size_t logits = pe_cpu_round16((size_t)N * (1 + (size_t)K));
    size_t mat = pe_cpu_round16((size_t)N * D);
    size_t vec = pe_cpu_round16((size_t)N);
    float *scratch = pe_cpu_scratch(b, sizeof(float) * (logits + 2 * mat + 2 * vec));
    if (!scratch)
        return pe_fail(ENOMEM, "infonce: no memory for %d x %d logits", N, 1 + K);
    nce_job j = {N, D, K, T, q, k, NULL, kn, NULL, NULL, NULL, NULL, dq};
    j.s = scratch;
    j.qn = j.s + logits;
    j.dqn = j.qn + mat;
    j.qnorm = j.dqn + mat;
    j.rowloss = j.qnorm + vec;

    pe_cpu_pool *pool = pe_cpu_of(b)->pool;
    size_t items = pe_cpu_chunks((size_t)N, ROWS);
    pe_cpu_parallel_for(pool, items, normalise_item, &j);
    /* the negatives' logits, after column 0 of each row */
    pe_cpu_gemm(b, 0, 1, N, K, D, 1.0f, j.qn, D, queue, D, 0.0f, j.s + 1, 1 + K);
    pe_cpu_parallel_for(pool, items, softmax_item, &j);
    float total = 0;
    for (int i = 0; i < N; i++) total += j.rowloss[i];
    *loss = total / (float)N;
    /* dqn (N, D) = ds[:, 1:] queue; the positive's share is added per row */
    pe_cpu_gemm(b, 0, 0, N, D, K, 1.0f, j.s + 1, 1 + K, queue, D, 0.0f, j.dqn, D);
    pe_cpu_parallel_for(pool, items, grad_item, &j);
    return 0;
}
