/*
 * bn.c - BatchNorm (2d over N and HW per channel; 1d is HW = 1) for the CPU
 * backend: training forward with batch statistics and the running-stat
 * update, evaluation forward, and the training-mode backward. Formulas and
 * PyTorch's conventions are spelled out in ref_body.h.
 *
 * Not for: parameter bookkeeping (lib/).
 *
 * Work is cut by channel: one channel per item when HW is large, blocks of
 * CB channels when HW is small (BatchNorm1d), where the inner loop runs
 * across channels instead. Statistics accumulate in double, as PyTorch's
 * CPU kernels do, in a fixed order, so results do not depend on threads.
 *
 * Numerics versus the reference (which is two-pass): the training forward
 * takes mean and variance in one pass over x, as sums of (x - shift) and
 * (x - shift)^2 in double with shift = the channel's first value, which
 * keeps the cancellation harmless; and it applies y = x * alpha + beta'
 * with alpha = invstd * gamma and beta' = beta - mean * alpha in float, as
 * PyTorch does.
 *
 * The per-channel loops over contiguous runs have AVX2/FMA versions (no
 * compiler flag needed, picked at run time): float -> double sums do not
 * auto-vectorise without -ffast-math. Their float outputs equal the scalar
 * loops' bit for bit; their double sums differ only in rounding (FMA and
 * 16-way partial sums), far below float resolution.
 */
#include <math.h>

#include "cpu.h"
#include "pe.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PE_BN_X86 1
#endif

enum { HW_MIN = 16, CB = 64 };

typedef struct bn_job {
    int N, C, HW;
    int avx2;
    const float *x, *dy, *gamma, *beta;
    const float *run_mean_in, *run_var_in;
    float eps, momentum;
    float *y, *run_mean, *run_var, *save_mean, *save_invstd;
    const float *smean, *sinvstd; /* saved statistics, for the backward */
    float *dx, *dgamma, *dbeta;
} bn_job;

static void channel_range(const bn_job *j, size_t item, int *lo, int *hi) {
    int per = j->HW >= HW_MIN ? 1 : CB;
    *lo = (int)item * per;
    *hi = *lo + per < j->C ? *lo + per : j->C;
}

static size_t items_of(int C, int HW) {
    return HW >= HW_MIN ? (size_t)C : pe_cpu_chunks((size_t)C, CB);
}

/* sums of (x - shift) and (x - shift)^2 over one contiguous run, four
 * interleaved partial sums so the adds pipeline */
static void run_stats(const float *x, int len, double shift, double *s1,
                      double *s2) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0, q0 = 0, q1 = 0, q2 = 0, q3 = 0;
    int i = 0;
    for (; i + 4 <= len; i += 4) {
        double d0 = x[i] - shift, d1 = x[i + 1] - shift;
        double d2 = x[i + 2] - shift, d3 = x[i + 3] - shift;
        a0 += d0, a1 += d1, a2 += d2, a3 += d3;
        q0 += d0 * d0, q1 += d1 * d1, q2 += d2 * d2, q3 += d3 * d3;
    }
    for (; i < len; i++) {
        double d = x[i] - shift;
        a0 += d;
        q0 += d * d;
    }
    *s1 += (a0 + a1) + (a2 + a3);
    *s2 += (q0 + q1) + (q2 + q3);
}

/* y = x alpha + bias over one run */
static void run_affine(const float *x, int len, float alpha, float bias, float *y) {
    for (int i = 0; i < len; i++) y[i] = x[i] * alpha + bias;
}

#ifdef PE_BN_X86
/* widens 8 floats to two vectors of 4 doubles */
__attribute__((target("avx2,fma"))) static inline void
widen(__m256 v, __m256d *lo, __m256d *hi) {
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

__attribute__((target("avx2,fma"))) static double hsum(__m256d v) {
    double t[4];
    _mm256_storeu_pd(t, v);
    return (t[0] + t[1]) + (t[2] + t[3]);
}

__attribute__((target("avx2,fma"))) static void
run_stats_avx2(const float *x, int len, double shift, double *s1, double *s2) {
    __m256d vs = _mm256_set1_pd(shift), z = _mm256_setzero_pd();
    __m256d a0 = z, a1 = z, a2 = z, a3 = z, q0 = z, q1 = z, q2 = z, q3 = z;
    int i = 0;
    for (; i + 16 <= len; i += 16) {
        __m256d d0, d1, d2, d3;
        widen(_mm256_loadu_ps(x + i), &d0, &d1);
        widen(_mm256_loadu_ps(x + i + 8), &d2, &d3);
        d0 = _mm256_sub_pd(d0, vs), d1 = _mm256_sub_pd(d1, vs);
        d2 = _mm256_sub_pd(d2, vs), d3 = _mm256_sub_pd(d3, vs);
        a0 = _mm256_add_pd(a0, d0), a1 = _mm256_add_pd(a1, d1);
        a2 = _mm256_add_pd(a2, d2), a3 = _mm256_add_pd(a3, d3);
        q0 = _mm256_fmadd_pd(d0, d0, q0), q1 = _mm256_fmadd_pd(d1, d1, q1);
        q2 = _mm256_fmadd_pd(d2, d2, q2), q3 = _mm256_fmadd_pd(d3, d3, q3);
    }
    double sa = hsum(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    double sq = hsum(_mm256_add_pd(_mm256_add_pd(q0, q1), _mm256_add_pd(q2, q3)));
    for (; i < len; i++) {
        double d = x[i] - shift;
        sa += d;
        sq += d * d;
    }
    *s1 += sa;
    *s2 += sq;
}

__attribute__((target("avx2,fma"))) static void
run_affine_avx2(const float *x, int len, float alpha, float bias, float *y) {
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(bias);
    int i = 0;
    for (; i + 8 <= len; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), va), vb));
    for (; i < len; i++) y[i] = x[i] * alpha + bias;
}
#endif

/* the per-channel epilogue of the training forward; returns alpha and
 * beta' of y = x alpha + beta' */
static void finish_stats(bn_job *j, int c, double shift, double s1, double s2,
                         float *alpha, float *bias) {
    double cnt = (double)j->N * j->HW;
    double mean = shift + s1 / cnt;
    double sq = s2 - s1 * s1 / cnt; /* sum of (x - mean)^2 */
    if (sq < 0) sq = 0;
    double invstd = 1 / sqrt(sq / cnt + (double)j->eps);
    j->save_mean[c] = (float)mean;
    j->save_invstd[c] = (float)invstd;
    j->run_mean[c] = (float)((double)j->momentum * mean +
                             (1 - (double)j->momentum) * j->run_mean[c]);
    j->run_var[c] = (float)((double)j->momentum * (sq / (cnt - 1)) +
                            (1 - (double)j->momentum) * j->run_var[c]);
    *alpha = j->save_invstd[c] * j->gamma[c];
    *bias = j->beta[c] - j->save_mean[c] * *alpha;
}

static void fwd_train_item(void *ctx, size_t item, int tid) {
    (void)tid;
    bn_job *j = ctx;
    int lo, hi;
    channel_range(j, item, &lo, &hi);
    int N = j->N, C = j->C, HW = j->HW;
    if (HW >= HW_MIN) {
        int c = lo;
        void (*stats)(const float *, int, double, double *, double *) = run_stats;
        void (*affine)(const float *, int, float, float, float *) = run_affine;
#ifdef PE_BN_X86
        if (j->avx2) stats = run_stats_avx2, affine = run_affine_avx2;
#endif
        double shift = j->x[(size_t)c * HW], s1 = 0, s2 = 0;
        for (int n = 0; n < N; n++) stats(j->x + ((size_t)n * C + c) * HW, HW, shift, &s1, &s2);
        float alpha, bias;
        finish_stats(j, c, shift, s1, s2, &alpha, &bias);
        for (int n = 0; n < N; n++)
            affine(j->x + ((size_t)n * C + c) * HW, HW, alpha, bias,
                   j->y + ((size_t)n * C + c) * HW);
        return;
    }
    double shift[CB], s1[CB] = {0}, s2[CB] = {0};
    float alpha[CB], bias[CB];
    int w = hi - lo;
    for (int c = 0; c < w; c++) shift[c] = j->x[(size_t)(lo + c) * HW];
    for (int n = 0; n < N; n++) {
        const float *x = j->x + ((size_t)n * C + lo) * HW;
        for (int c = 0; c < w; c++)
            for (int i = 0; i < HW; i++) {
                double d = x[c * HW + i] - shift[c];
                s1[c] += d;
                s2[c] += d * d;
            }
    }
    for (int c = 0; c < w; c++)
        finish_stats(j, lo + c, shift[c], s1[c], s2[c], &alpha[c], &bias[c]);
    for (int n = 0; n < N; n++) {
        const float *x = j->x + ((size_t)n * C + lo) * HW;
        float *y = j->y + ((size_t)n * C + lo) * HW;
        for (int c = 0; c < w; c++)
            for (int i = 0; i < HW; i++) y[c * HW + i] = x[c * HW + i] * alpha[c] + bias[c];
    }
}

int pe_cpu_bn_fwd_train(pe_backend *b, int N, int C, int HW, const float *x,
                        const float *gamma, const float *beta, float eps,
                        float momentum, float *run_mean, float *run_var,
                        float *y, float *save_mean, float *save_invstd) {
    PE_ASSERT(N > 0 && C > 0 && HW > 0);
    if ((size_t)N * HW < 2)
        return pe_fail(PE_EUSAGE, "batch norm: training needs more than one "
                                  "value per channel (N=%d, HW=%d)", N, HW);
    bn_job j = {.N = N, .C = C, .HW = HW, .avx2 = pe_cpu_of(b)->avx2, .x = x,
                .gamma = gamma, .beta = beta, .eps = eps, .momentum = momentum,
                .y = y, .run_mean = run_mean,
                .run_var = run_var, .save_mean = save_mean,
                .save_invstd = save_invstd};
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, items_of(C, HW), fwd_train_item, &j);
    return 0;
}

static void fwd_eval_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const bn_job *j = ctx;
    int lo, hi;
    channel_range(j, item, &lo, &hi);
    float alpha[CB], bias[CB];
    for (int c = lo; c < hi; c++) {
        float invstd = (float)(1 / sqrt((double)j->run_var_in[c] + (double)j->eps));
        alpha[c - lo] = invstd * j->gamma[c];
        bias[c - lo] = j->beta[c] - j->run_mean_in[c] * alpha[c - lo];
    }
    void (*affine)(const float *, int, float, float, float *) = run_affine;
#ifdef PE_BN_X86
    if (j->avx2) affine = run_affine_avx2;
#endif
    for (int n = 0; n < j->N; n++)
        for (int c = lo; c < hi; c++) {
            size_t at = ((size_t)n * j->C + c) * j->HW;
            affine(j->x + at, j->HW, alpha[c - lo], bias[c - lo], j->y + at);
        }
}

int pe_cpu_bn_fwd_eval(pe_backend *b, int N, int C, int HW, const float *x,
                       const float *gamma, const float *beta, float eps,
                       const float *run_mean, const float *run_var, float *y) {
    PE_ASSERT(N > 0 && C > 0 && HW > 0);
    bn_job j = {.N = N, .C = C, .HW = HW, .avx2 = pe_cpu_of(b)->avx2, .x = x,
                .gamma = gamma, .beta = beta, .eps = eps, .run_mean_in = run_mean,
                .run_var_in = run_var, .y = y};
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, items_of(C, HW), fwd_eval_item, &j);
    return 0;
}

/* sums of dy and of (x - mean) dy over one run, as run_stats */
static void run_bwd_sums(const float *x, const float *dy, int len, double mean,
                         double *sdy, double *dot) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0, q0 = 0, q1 = 0, q2 = 0, q3 = 0;
    int i = 0;
    for (; i + 4 <= len; i += 4) {
        double g0 = dy[i], g1 = dy[i + 1], g2 = dy[i + 2], g3 = dy[i + 3];
        a0 += g0, a1 += g1, a2 += g2, a3 += g3;
        q0 += (x[i] - mean) * g0, q1 += (x[i + 1] - mean) * g1;
        q2 += (x[i + 2] - mean) * g2, q3 += (x[i + 3] - mean) * g3;
    }
    for (; i < len; i++) {
        a0 += dy[i];
        q0 += (x[i] - mean) * dy[i];
    }
    *sdy += (a0 + a1) + (a2 + a3);
    *dot += (q0 + q1) + (q2 + q3);
}

typedef struct bwd_coef {
    float mean, k, mean_dy, scale; /* dx = (dy - mean_dy - (x - mean) k) scale */
} bwd_coef;

static void run_bwd_dx(const float *x, const float *dy, int len, bwd_coef k, float *dx) {
    for (int i = 0; i < len; i++) dx[i] = (dy[i] - k.mean_dy - (x[i] - k.mean) * k.k) * k.scale;
}

#ifdef PE_BN_X86
__attribute__((target("avx2,fma"))) static void
run_bwd_sums_avx2(const float *x, const float *dy, int len, double mean, double *sdy,
                  double *dot) {
    __m256d vm = _mm256_set1_pd(mean), z = _mm256_setzero_pd();
    __m256d a0 = z, a1 = z, q0 = z, q1 = z;
    int i = 0;
    for (; i + 8 <= len; i += 8) {
        __m256d x0, x1, g0, g1;
        widen(_mm256_loadu_ps(x + i), &x0, &x1);
        widen(_mm256_loadu_ps(dy + i), &g0, &g1);
        a0 = _mm256_add_pd(a0, g0), a1 = _mm256_add_pd(a1, g1);
        q0 = _mm256_fmadd_pd(_mm256_sub_pd(x0, vm), g0, q0);
        q1 = _mm256_fmadd_pd(_mm256_sub_pd(x1, vm), g1, q1);
    }
    double sa = hsum(_mm256_add_pd(a0, a1)), sq = hsum(_mm256_add_pd(q0, q1));
    for (; i < len; i++) {
        sa += dy[i];
        sq += (x[i] - mean) * dy[i];
    }
    *sdy += sa;
    *dot += sq;
}

__attribute__((target("avx2,fma"))) static void
run_bwd_dx_avx2(const float *x, const float *dy, int len, bwd_coef k, float *dx) {
    __m256 vmean = _mm256_set1_ps(k.mean), vk = _mm256_set1_ps(k.k);
    __m256 vmdy = _mm256_set1_ps(k.mean_dy), vs = _mm256_set1_ps(k.scale);
    int i = 0;
    for (; i + 8 <= len; i += 8) {
        __m256 t = _mm256_sub_ps(_mm256_loadu_ps(dy + i), vmdy);
        __m256 u = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmean), vk);
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_sub_ps(t, u), vs));
    }
    for (; i < len; i++) dx[i] = (dy[i] - k.mean_dy - (x[i] - k.mean) * k.k) * k.scale;
}
#endif

static bwd_coef finish_bwd(bn_job *j, int c, double sdy, double dot) {
    double cnt = (double)j->N * j->HW;
    double invstd = j->sinvstd[c];
    j->dbeta[c] = (float)sdy;
    j->dgamma[c] = (float)(dot * invstd);
    bwd_coef k = {j->smean[c], (float)(dot * invstd * invstd / cnt),
                  (float)(sdy / cnt), j->sinvstd[c] * j->gamma[c]};
    return k;
}

static void bwd_item(void *ctx, size_t item, int tid) {
    (void)tid;
    bn_job *j = ctx;
    int lo, hi;
    channel_range(j, item, &lo, &hi);
    int N = j->N, C = j->C, HW = j->HW;
    if (HW >= HW_MIN) {
        void (*sums)(const float *, const float *, int, double, double *, double *) =
            run_bwd_sums;
        void (*grad)(const float *, const float *, int, bwd_coef, float *) = run_bwd_dx;
#ifdef PE_BN_X86
        if (j->avx2) sums = run_bwd_sums_avx2, grad = run_bwd_dx_avx2;
#endif
        int c = lo;
        double sdy = 0, dot = 0;
        for (int n = 0; n < N; n++) {
            size_t at = ((size_t)n * C + c) * HW;
            sums(j->x + at, j->dy + at, HW, j->smean[c], &sdy, &dot);
        }
        bwd_coef k = finish_bwd(j, c, sdy, dot);
        for (int n = 0; n < N; n++) {
            size_t at = ((size_t)n * C + c) * HW;
            grad(j->x + at, j->dy + at, HW, k, j->dx + at);
        }
        return;
    }
    double sdy[CB] = {0}, dot[CB] = {0};
    bwd_coef k[CB];
    int w = hi - lo;
    for (int n = 0; n < N; n++) {
        size_t at = ((size_t)n * C + lo) * HW;
        const float *x = j->x + at, *dy = j->dy + at;
        for (int c = 0; c < w; c++) {
            double mean = j->smean[lo + c];
            for (int i = 0; i < HW; i++) {
                sdy[c] += dy[c * HW + i];
                dot[c] += (x[c * HW + i] - mean) * dy[c * HW + i];
            }
        }
    }
    for (int c = 0; c < w; c++) k[c] = finish_bwd(j, lo + c, sdy[c], dot[c]);
    for (int n = 0; n < N; n++) {
        size_t at = ((size_t)n * C + lo) * HW;
        const float *x = j->x + at, *dy = j->dy + at;
        float *dx = j->dx + at;
        for (int c = 0; c < w; c++)
            for (int i = 0; i < HW; i++)
                dx[c * HW + i] = (dy[c * HW + i] - k[c].mean_dy -
                                  (x[c * HW + i] - k[c].mean) * k[c].k) * k[c].scale;
    }
}

int pe_cpu_bn_bwd(pe_backend *b, int N, int C, int HW, const float *x,
                  const float *dy, const float *gamma, const float *save_mean,
                  const float *save_invstd, float *dx, float *dgamma,
                  float *dbeta) {
    PE_ASSERT(N > 0 && C > 0 && HW > 0);
    bn_job j = {.N = N, .C = C, .HW = HW, .avx2 = pe_cpu_of(b)->avx2, .x = x, .dy = dy,
                .gamma = gamma,
                .smean = save_mean, .sinvstd = save_invstd, .dx = dx,
                .dgamma = dgamma, .dbeta = dbeta};
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, items_of(C, HW), bwd_item, &j);
    return 0;
}
