/*
 * ntxent.c - the SimCLR NT-Xent loss and its gradient for the CPU backend,
 * as the PyTorch bench computes it (F.normalize, z z^T / T, diagonal
 * excluded, cross-entropy with the positive i + B mod 2B, mean over rows);
 * the formulas and the hand-derived gradient are in ref_body.h.
 *
 * Not for: other contrastive losses, or label smoothing.
 *
 * Stability: each row's log-sum-exp subtracts the row maximum (diagonal
 * excluded), so exp never overflows whatever T is. Rows are cut into fixed
 * blocks and the loss is summed over rows in row order by one thread, so
 * the bits do not depend on the thread count. Scratch: 2 (2B)^2 + 2 (2B) D
 * + 3 (2B) floats from the backend's scratch buffer.
 */
#include <errno.h>
#include <math.h>

#include "cpu.h"
#include "pe.h"

enum { ROWS = 16 }; /* rows per item */

static const float NORM_EPS = 1e-12f; /* F.normalize's default eps */

typedef struct ntx_job {
    int B2, D;
    float T;
    const float *z;   /* (2B, D) */
    float *zn;        /* (2B, D) normalised rows */
    float *norm;      /* (2B) */
    float *s;         /* (2B, 2B) logits, then d loss / d logits */
    float *g;         /* (2B, 2B) ds + ds^T */
    float *rowloss;   /* (2B) */
    float *dzn;       /* (2B, D) */
    float *dz;        /* (2B, D) */
} ntx_job;

static void rows_of(const ntx_job *j, size_t item, int *lo, int *hi) {
    *lo = (int)item * ROWS;
    *hi = *lo + ROWS < j->B2 ? *lo + ROWS : j->B2;
}

static void normalise_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const ntx_job *j = ctx;
    int lo, hi;
    rows_of(j, item, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const float *z = j->z + (size_t)i * j->D;
        float *zn = j->zn + (size_t)i * j->D;
        float sq = 0;
        for (int k = 0; k < j->D; k++) sq += z[k] * z[k];
        j->norm[i] = sqrtf(sq);
        float den = j->norm[i] > NORM_EPS ? j->norm[i] : NORM_EPS;
        for (int k = 0; k < j->D; k++) zn[k] = z[k] / den;
    }
}

/* per row: logits / T, the log-sum-exp over j != i, the row's loss, and
 * the row of ds = (softmax - onehot(pos)) / 2B with 0 on the diagonal */
static void softmax_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const ntx_job *j = ctx;
    int lo, hi, B2 = j->B2;
    rows_of(j, item, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        float *s = j->s + (size_t)i * B2;
        int pos = (i + B2 / 2) % B2;
        float mx = -INFINITY;
        for (int c = 0; c < B2; c++) {
            s[c] = s[c] / j->T;
            if (c != i && s[c] > mx) mx = s[c];
        }
        float sum = 0;
        for (int c = 0; c < B2; c++)
            if (c != i) sum += expf(s[c] - mx);
        float lse = mx + logf(sum);
        j->rowloss[i] = lse - s[pos];
        for (int c = 0; c < B2; c++) {
            float prob = c == i ? 0 : expf(s[c] - lse);
            s[c] = (prob - (c == pos ? 1 : 0)) / (float)B2;
        }
        s[i] = 0;
    }
}

static void symmetrise_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const ntx_job *j = ctx;
    int lo, hi, B2 = j->B2;
    rows_of(j, item, &lo, &hi);
    for (int i = lo; i < hi; i++)
        for (int c = 0; c < B2; c++)
            j->g[(size_t)i * B2 + c] = j->s[(size_t)i * B2 + c] + j->s[(size_t)c * B2 + i];
}

/* dzn /= T, then back through the normalisation */
static void grad_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const ntx_job *j = ctx;
    int lo, hi, D = j->D;
    rows_of(j, item, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        float *dzn = j->dzn + (size_t)i * D;
        const float *zn = j->zn + (size_t)i * D;
        float *dz = j->dz + (size_t)i * D;
        for (int k = 0; k < D; k++) dzn[k] = dzn[k] / j->T;
        if (j->norm[i] > NORM_EPS) {
            float dot = 0;
            for (int k = 0; k < D; k++) dot += zn[k] * dzn[k];
            for (int k = 0; k < D; k++) dz[k] = (dzn[k] - zn[k] * dot) / j->norm[i];
        } else {
            for (int k = 0; k < D; k++) dz[k] = dzn[k] / NORM_EPS;
        }
    }
}

int pe_cpu_ntxent(pe_backend *b, int B2, int D, const float *z, float T,
                  float *loss, float *dz) {
    PE_ASSERT(B2 >= 2 && B2 % 2 == 0 && D >= 1 && T > 0);
    size_t sq = pe_cpu_round16((size_t)B2 * B2);
    size_t mat = pe_cpu_round16((size_t)B2 * D);
    size_t vec = pe_cpu_round16((size_t)B2);
    float *scratch = pe_cpu_scratch(b, sizeof(float) * (2 * sq + 2 * mat + 2 * vec));
    if (!scratch)
        return pe_fail(ENOMEM, "ntxent: no memory for %d x %d scratch", B2, B2);
    ntx_job j = {B2, D, T, z, NULL, NULL, NULL, NULL, NULL, NULL, dz};
    j.s = scratch;
    j.g = j.s + sq;
    j.zn = j.g + sq;
    j.dzn = j.zn + mat;
    j.norm = j.dzn + mat;
    j.rowloss = j.norm + vec;

    pe_cpu_pool *pool = pe_cpu_of(b)->pool;
    size_t items = pe_cpu_chunks((size_t)B2, ROWS);
    pe_cpu_parallel_for(pool, items, normalise_item, &j);
    pe_cpu_gemm(b, 0, 1, B2, B2, D, 1.0f, j.zn, D, j.zn, D, 0.0f, j.s, B2);
    pe_cpu_parallel_for(pool, items, softmax_item, &j);
    float total = 0;
    for (int i = 0; i < B2; i++) total += j.rowloss[i];
    *loss = total / (float)B2;
    pe_cpu_parallel_for(pool, items, symmetrise_item, &j);
    pe_cpu_gemm(b, 0, 0, B2, D, B2, 1.0f, j.g, B2, j.zn, D, 0.0f, j.dzn, D);
    pe_cpu_parallel_for(pool, items, grad_item, &j);
    return 0;
}
