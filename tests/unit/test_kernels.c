/*
 * test_kernels.c - the CPU backend's ops checked four ways:
 *   1. every fast op against the scalar reference (kernels/cpu/ref.h) on
 *      random inputs over many shapes, the model's real ones included;
 *   2. the reference's backward ops against central finite differences of
 *      its forward ops, all in double;
 *   3. the optimisers against values from torch.optim (1.13, float32);
 *   4. every op with 1, 2 and 3 threads: byte-identical results.
 *
 * Not for: the model graph or training loop (tests of lib/).
 *
 * Convolutions and GEMM are compared with the double instantiation of the
 * reference (exact to ~1e-16 for our purposes) and judged per element
 * against mag, the sum of |terms| or a bound on it: a float sum of n terms
 * carries an error below n 2^-24 mag in the worst case, and far below it
 * in practice. Set PE_TEST_VERBOSE=1 to print the
 * worst error of each comparison as a fraction of its allowance.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "cpu/ref.h"
#include "pe.h"

static pe_backend *b1, *b2, *b3; /* 1, 2 and 3 threads */
static pe_backend *bs;           /* 2 threads, scalar loops only */
static int verbose;

/* ---- helpers ------------------------------------------------------------ */

#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#include "testrand.h"

static double *to_d(const float *x, size_t n) {
    double *p = zerod(n);
    for (size_t i = 0; i < n; i++) p[i] = x[i];
    return p;
}

static double *abs_d(const float *x, size_t n) {
    double *p = zerod(n);
    for (size_t i = 0; i < n; i++) p[i] = fabs((double)x[i]);
    return p;
}

static float *copyf(const float *x, size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) abort();
    memcpy(p, x, sizeof(float) * n);
    return p;
}

/* Every |got - want| <= atol + rtol * (mag ? mag[i] : |want[i]|)? Prints
 * the worst element when not (and always when verbose). */
static int close_to(const char *what, const float *got, const double *want,
                    const double *mag, size_t n, double rtol, double atol) {
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double lim = atol + rtol * (mag ? mag[i] : fabs(want[i]));
        double err = fabs((double)got[i] - want[i]);
        double ratio = lim > 0 ? err / lim : (err > 0 ? INFINITY : 0);
        if (!(ratio <= worst)) { /* also catches NaN */
            worst = ratio;
            at = i;
        }
    }
    if (verbose || !(worst <= 1))
        fprintf(stderr, "    %-44s worst %.3g of allowance (at %zu: got %.9g want %.9g)\n",
                what, worst, at, n ? got[at] : 0.0, n ? want[at] : 0.0);
    return worst <= 1;
}

/* Same for two float arrays, judged against max |want| (the op's scale). */
static int close_scaled(const char *what, const float *got, const float *want,
                        size_t n, double rtol) {
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)want[i]) > scale) scale = fabs((double)want[i]);
    double *w = to_d(want, n);
    int ok = close_to(what, got, w, NULL, n, 0, rtol * (scale > 0 ? scale : 1));
    free(w);
    return ok;
}

static int same_bits(const void *a, const void *b, size_t bytes) {
    return memcmp(a, b, bytes) == 0;
}

/* ---- 1. convolution against the reference ------------------------------ */

typedef struct conv_shape {
    int N, C, H, W, K, R, S, stride, pad;
} conv_shape;

/* The small model (28x28x1: 1->16, 16->32, 32->32, 32->64 s2, 64->64,
 * 64->128 s2, 128->128) and the CIFAR ResNet-18 (32x32x3 stem, 64..512,
 * 3x3 s2 and 1x1 s2 downsamples), at batch sizes the scalar reference can
 * afford, plus odd shapes that hit every edge of the tiling. */
static const conv_shape conv_shapes[] = {
    /* small model */
    {16, 1, 28, 28, 16, 3, 3, 1, 1},
    {2, 16, 28, 28, 32, 3, 3, 1, 1},
    {2, 32, 28, 28, 32, 3, 3, 1, 1},
    {2, 32, 28, 28, 64, 3, 3, 2, 1},
    {2, 64, 14, 14, 64, 3, 3, 1, 1},
    {2, 64, 14, 14, 128, 3, 3, 2, 1},
    {2, 128, 7, 7, 128, 3, 3, 1, 1},
    /* resnet18, CIFAR stem (128->128 at 16x16 and 256->256 at 8x8 take the
     * same paths as 64->64 at 32x32; test_threads_conv runs them) */
    {4, 3, 32, 32, 64, 3, 3, 1, 1},
    {1, 64, 32, 32, 64, 3, 3, 1, 1},
    {1, 64, 32, 32, 128, 3, 3, 2, 1},
    {2, 64, 32, 32, 128, 1, 1, 2, 0},
    {1, 128, 16, 16, 256, 3, 3, 2, 1},
    {1, 256, 8, 8, 512, 3, 3, 2, 1},
    {2, 256, 8, 8, 512, 1, 1, 2, 0},
    {1, 512, 4, 4, 512, 3, 3, 1, 1},
    /* odd shapes */
    {3, 3, 7, 9, 5, 3, 3, 1, 1},      /* H != W */
    {3, 5, 13, 11, 7, 3, 3, 2, 1},    /* odd sizes, stride 2 */
    {2, 4, 9, 9, 6, 5, 5, 1, 2},      /* 5x5 */
    {2, 3, 8, 6, 4, 3, 3, 1, 0},      /* no padding */
    {2, 2, 10, 10, 3, 3, 3, 3, 2},    /* stride 3, pad 2 */
    {1, 7, 16, 16, 9, 1, 1, 1, 0},    /* 1x1 direct (x is the column matrix) */
    {5, 6, 5, 5, 4, 1, 1, 1, 0},      /* 1x1 with image groups */
    {20, 8, 4, 4, 8, 3, 3, 1, 1},     /* 16-image groups, partial last one */
    {12, 3, 14, 14, 17, 3, 3, 1, 1},  /* several filter steps, K not /16 */
    {4, 1, 28, 28, 40, 3, 3, 1, 1},   /* C = 1, filters split in tiles */
    {2, 33, 5, 5, 3, 3, 3, 2, 1},     /* channel tiles of uneven size */
    {1, 1, 1, 1, 1, 1, 1, 1, 0},      /* one of everything */
    {2, 2, 2, 2, 2, 3, 3, 1, 1},      /* filter larger than the image */
};

static pe_conv_desc desc_of(const conv_shape *s) {
    pe_conv_desc d = {s->N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad, 0, 0};
    pe_conv_desc_finish(&d);
    return d;
}

/* Tolerance: 1e-5 of mag, an upper bound on sum |terms| (conv_mag). The
 * worst case for a float sum of n <= 4608 terms is ~3e-4 of sum |terms|;
 * OpenBLAS's blocked FMA sums land within ~1e-7 of it on these inputs
 * (PE_TEST_VERBOSE=1 shows at most ~3% of this allowance). */
static const double CONV_RTOL = 1e-5;

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)x[i]) > m) m = fabs((double)x[i]);
    return m;
}

/* Upper bounds on sum |terms| of each output of the three convolutions,
 * one input's factor bounded by its largest element (cheaper than running
 * the reference again on |inputs|, and at most ~2x looser on U(-1,1)):
 * |y[n,k,.]| terms <= max|x| sum_{c,r,s} |w[k,c,r,s]|; |dx[n,c,.]| terms
 * <= max|dy| sum_{k,r,s} |w[k,c,r,s]|; |dw[k,c,r,s]| terms <= max|x|
 * sum_{n,p,q} |dy[n,k,p,q]|. */
static void conv_mag(const pe_conv_desc *d, const float *x, const float *w,
                     const float *dy, double *mag_y, double *mag_dx, double *mag_dw) {
    size_t RS = (size_t)d->R * d->S, PQ = (size_t)d->P * d->Q, HW = (size_t)d->H * d->W;
    double mx = max_abs(x, (size_t)d->N * d->C * HW);
    double mdy = max_abs(dy, (size_t)d->N * d->K * PQ);
    for (int k = 0; k < d->K; k++) {
        double wk = 0, dyk = 0;
        for (size_t i = 0; i < d->C * RS; i++) wk += fabs((double)w[k * d->C * RS + i]);
        for (int n = 0; n < d->N; n++)
            for (size_t i = 0; i < PQ; i++) dyk += fabs((double)dy[((size_t)n * d->K + k) * PQ + i]);
        for (int n = 0; n < d->N; n++)
            for (size_t i = 0; i < PQ; i++) mag_y[((size_t)n * d->K + k) * PQ + i] = mx * wk;
        for (size_t i = 0; i < d->C * RS; i++) mag_dw[k * d->C * RS + i] = mx * dyk;
    }
    for (int c = 0; c < d->C; c++) {
        double wc = 0;
        for (int k = 0; k < d->K; k++)
            for (size_t i = 0; i < RS; i++) wc += fabs((double)w[((size_t)k * d->C + c) * RS + i]);
        for (int n = 0; n < d->N; n++)
            for (size_t i = 0; i < HW; i++) mag_dx[((size_t)n * d->C + c) * HW + i] = mdy * wc;
    }
}

static void conv_case(const conv_shape *s) {
    pe_conv_desc d = desc_of(s);
    size_t nx = (size_t)d.N * d.C * d.H * d.W, nw = (size_t)d.K * d.C * d.R * d.S;
    size_t ny = (size_t)d.N * d.K * d.P * d.Q;
    float *x = randf(nx, -1, 1), *w = randf(nw, -1, 1), *dy = randf(ny, -1, 1);
    float *y = zerof(ny), *dx = randf(nx, -9, 9), *dw = randf(nw, -9, 9);
    float *work = malloc(b2->conv_workspace(b2, &d) + 1);
    double *xd = to_d(x, nx), *wd = to_d(w, nw), *dyd = to_d(dy, ny);
    double *want_y = zerod(ny), *mag_y = zerod(ny);
    double *want_dx = zerod(nx), *mag_dx = zerod(nx);
    double *want_dw = zerod(nw), *mag_dw = zerod(nw);
    char what[128];

    CHECK_OK(b2->conv_fwd(b2, &d, x, w, y, work));
    CHECK_OK(b2->conv_bwd_data(b2, &d, dy, w, dx, work));
    CHECK_OK(b2->conv_bwd_filter(b2, &d, x, dy, dw, work));
    pe_refd_conv_fwd(&d, xd, wd, want_y);
    pe_refd_conv_bwd_data(&d, dyd, wd, want_dx);
    pe_refd_conv_bwd_filter(&d, xd, dyd, want_dw);
    conv_mag(&d, x, w, dy, mag_y, mag_dx, mag_dw);

    static const char *ops[3] = {"fwd", "bwd-data", "bwd-filter"};
    const float *got[3] = {y, dx, dw};
    const double *want[3] = {want_y, want_dx, want_dw}, *mag[3] = {mag_y, mag_dx, mag_dw};
    size_t count[3] = {ny, nx, nw};
    for (int op = 0; op < 3; op++) {
        snprintf(what, sizeof what, "conv %s N%d C%d %dx%d K%d %dx%d s%d p%d", ops[op], d.N,
                 d.C, d.H, d.W, d.K, d.R, d.S, d.stride, d.pad);
        CHECK(close_to(what, got[op], want[op], mag[op], count[op], CONV_RTOL, 0));
    }

    free(mag_dw), free(want_dw), free(mag_dx), free(want_dx), free(mag_y), free(want_y);
    free(dyd), free(wd), free(xd);
    free(work), free(dw), free(dx), free(y), free(dy), free(w), free(x);
}

static void test_conv_vs_ref(void) {
    for (size_t i = 0; i < sizeof conv_shapes / sizeof conv_shapes[0]; i++)
        conv_case(&conv_shapes[i]);
}

/* The float reference itself against its double twin, on a real shape:
 * the oracle is sane in the precision the fast ops run in. */
static void test_ref_float_vs_double(void) {
    conv_shape s = {2, 32, 14, 14, 16, 3, 3, 1, 1};
    pe_conv_desc d = desc_of(&s);
    size_t nx = (size_t)d.N * d.C * d.H * d.W, nw = (size_t)d.K * d.C * 9;
    size_t ny = (size_t)d.N * d.K * d.P * d.Q;
    float *x = randf(nx, -1, 1), *w = randf(nw, -1, 1), *y = zerof(ny);
    double *xd = to_d(x, nx), *wd = to_d(w, nw), *want = zerod(ny), *mag = zerod(ny);
    double *mag_dx = zerod(nx), *mag_dw = zerod(nw);
    pe_ref_conv_fwd(&d, x, w, y);
    pe_refd_conv_fwd(&d, xd, wd, want);
    conv_mag(&d, x, w, y, mag, mag_dx, mag_dw);
    CHECK(close_to("ref conv fwd float vs double", y, want, mag, ny, CONV_RTOL, 0));
    free(mag_dw), free(mag_dx), free(mag), free(want), free(wd), free(xd), free(y), free(w);
    free(x);
}

/* ---- 1. gemm against the reference -------------------------------------- */

static void gemm_case(int tA, int tB, int M, int N, int K, float alpha, float beta) {
    int lda = (tA ? M : K) + 3, ldb = (tB ? K : N) + 1, ldc = N + 2; /* padded rows */
    size_t na = (size_t)(tA ? K : M) * lda, nb = (size_t)(tB ? N : K) * ldb;
    size_t nc = (size_t)M * ldc;
    float *A = randf(na, -1, 1), *B = randf(nb, -1, 1), *C = randf(nc, -1, 1);
    float *C0 = copyf(C, nc);
    double *Ad = to_d(A, na), *Bd = to_d(B, nb), *Cd = to_d(C, nc);
    double *Aa = abs_d(A, na), *Ba = abs_d(B, nb), *mag = abs_d(C, nc);
    if (beta == 0) /* BLAS: beta == 0 never reads C, so garbage must not leak */
        for (size_t i = 0; i < nc; i++) C[i] = NAN;
    CHECK_OK(b2->gemm(b2, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
    pe_refd_gemm(tA, tB, M, N, K, alpha, Ad, lda, Bd, ldb, beta, Cd, ldc);
    pe_refd_gemm(tA, tB, M, N, K, fabsf(alpha), Aa, lda, Ba, ldb, fabsf(beta), mag, ldc);
    /* only the M x N block is C; the padding between rows must not change */
    float *got = zerof((size_t)M * N);
    double *want = zerod((size_t)M * N), *m = zerod((size_t)M * N);
    int pad_ok = 1;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            got[(size_t)i * N + j] = C[(size_t)i * ldc + j];
            want[(size_t)i * N + j] = Cd[(size_t)i * ldc + j];
            m[(size_t)i * N + j] = mag[(size_t)i * ldc + j];
        }
        for (int j = N; j < ldc; j++)
            if (!same_bits(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], 4) && beta != 0)
                pad_ok = 0;
    }
    char what[96];
    snprintf(what, sizeof what, "gemm %c%c M%d N%d K%d a%g b%g", tA ? 'T' : 'N', tB ? 'T' : 'N',
             M, N, K, alpha, beta);
    CHECK(close_to(what, got, want, m, (size_t)M * N, CONV_RTOL, 0));
    CHECK(pad_ok);
    free(m), free(want), free(got), free(mag), free(Ba), free(Aa), free(Cd), free(Bd), free(Ad);
    free(C0), free(C), free(B), free(A);
}

static void test_gemm_vs_ref(void) {
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            gemm_case(tA, tB, 37, 53, 29, 1, 0);
            gemm_case(tA, tB, 1, 1, 1, 1, 0);
            gemm_case(tA, tB, 64, 48, 1, 0.5f, 1);
            gemm_case(tA, tB, 130, 7, 100, -2, 0.25f);
            gemm_case(tA, tB, 300, 256, 128, 1, 0); /* big enough for 8 tiles */
        }
    /* the head's shapes: (512 x 512) x (512 x 128) and its backward */
    gemm_case(0, 1, 512, 128, 512, 1, 0);
    gemm_case(1, 0, 128, 512, 512, 1, 0);
    gemm_case(0, 0, 512, 512, 128, 1, 0);
    gemm_case(0, 0, 5, 700, 9, 1, 0); /* N-wise tiles */
}

/* ---- 1. batch norm against the reference -------------------------------- */

static void bn_case(pe_backend *b2, int N, int C, int HW) {
    size_t n = (size_t)N * C * HW;
    float *x = randf(n, -1, 2), *dy = randf(n, -1, 1);
    float *gamma = randf((size_t)C, 0.5, 1.5), *beta = randf((size_t)C, -0.5, 0.5);
    float *rm = randf((size_t)C, -0.1, 0.1), *rv = randf((size_t)C, 0.5, 1.5);
    float *rm_ref = copyf(rm, (size_t)C), *rv_ref = copyf(rv, (size_t)C);
    float *y = zerof(n), *y_ref = zerof(n), *dx = zerof(n), *dx_ref = zerof(n);
    float *sm = zerof((size_t)C), *si = zerof((size_t)C), *sm_ref = zerof((size_t)C);
    float *si_ref = zerof((size_t)C), *dg = zerof((size_t)C), *db = zerof((size_t)C);
    float *dg_ref = zerof((size_t)C), *db_ref = zerof((size_t)C);
    char what[96];

    CHECK_OK(b2->bn_fwd_train(b2, N, C, HW, x, gamma, beta, 1e-5f, 0.1f, rm, rv, y, sm, si));
    pe_ref_bn_fwd_train(N, C, HW, x, gamma, beta, 1e-5f, 0.1f, rm_ref, rv_ref, y_ref, sm_ref,
                        si_ref);
    snprintf(what, sizeof what, "bn fwd N%d C%d HW%d", N, C, HW);
    /* y: the fast kernel evaluates x alpha + beta' (PyTorch's form), the
     * reference (x - mean) invstd gamma + beta; both are within a few ulp
     * of |x alpha| + |beta'| <= ~10 here, so 4e-6 absolute. Statistics are
     * double sums rounded once to float: 2 ulp (one-pass vs two-pass). */
    CHECK(close_scaled(what, y, y_ref, n, 1e-6));
    CHECK(close_scaled("bn save_mean", sm, sm_ref, (size_t)C, 2.5e-7));
    CHECK(close_scaled("bn save_invstd", si, si_ref, (size_t)C, 2.5e-7));
    CHECK(close_scaled("bn running mean", rm, rm_ref, (size_t)C, 2.5e-7));
    CHECK(close_scaled("bn running var", rv, rv_ref, (size_t)C, 2.5e-7));

    CHECK_OK(b2->bn_bwd(b2, N, C, HW, x, dy, gamma, sm_ref, si_ref, dx, dg, db));
    pe_ref_bn_bwd(N, C, HW, x, dy, gamma, sm_ref, si_ref, dx_ref, dg_ref, db_ref);
    /* dx: float evaluation of (dy - mean_dy - (x - mean) k) invstd gamma
     * against the reference's double one: a few ulp of the terms before
     * they cancel, |dy| (1 + |xhat|) invstd gamma; with two values per
     * channel the terms cancel exactly and dx is all rounding. */
    double terms = 0;
    for (int c = 0; c < C; c++) {
        double xhat = 0;
        for (int i = 0; i < N; i++)
            for (int k = 0; k < HW; k++) {
                double v = fabs((x[((size_t)i * C + c) * HW + k] - sm_ref[c]) * si_ref[c]);
                if (v > xhat) xhat = v;
            }
        double t = (1 + xhat) * si_ref[c] * gamma[c]; /* |dy| <= 1 */
        if (t > terms) terms = t;
    }
    double *dxd = to_d(dx_ref, n);
    snprintf(what, sizeof what, "bn bwd dx N%d C%d HW%d", N, C, HW);
    CHECK(close_to(what, dx, dxd, NULL, n, 0, 4e-7 * terms));
    free(dxd);
    CHECK(close_scaled("bn bwd dgamma", dg, dg_ref, (size_t)C, 2.5e-7));
    CHECK(close_scaled("bn bwd dbeta", db, db_ref, (size_t)C, 2.5e-7));

    CHECK_OK(b2->bn_fwd_eval(b2, N, C, HW, x, gamma, beta, 1e-5f, rm, rv, y));
    pe_ref_bn_fwd_eval(N, C, HW, x, gamma, beta, 1e-5f, rm, rv, y_ref);
    CHECK(close_scaled("bn eval", y, y_ref, n, 1e-6));

    free(db_ref), free(dg_ref), free(db), free(dg), free(si_ref), free(sm_ref), free(si);
    free(sm), free(dx_ref), free(dx), free(y_ref), free(y), free(rv_ref), free(rm_ref);
    free(rv), free(rm), free(beta), free(gamma), free(dy), free(x);
}

static void test_bn_vs_ref(void) {
    pe_backend *both[2] = {b2, bs}; /* the AVX2 loops (where the CPU has them), the scalar */
    for (int i = 0; i < 2; i++) {
        bn_case(both[i], 16, 16, 784); /* small model, first block */
        bn_case(both[i], 4, 64, 196);
        bn_case(both[i], 16, 128, 49);
        bn_case(both[i], 8, 512, 16);  /* resnet layer 4 */
        bn_case(both[i], 512, 512, 1); /* the head's BatchNorm1d */
        bn_case(both[i], 3, 70, 5);    /* HW below the per-channel cut, odd block */
        bn_case(both[i], 2, 3, 1);     /* two values per channel */
        bn_case(both[i], 1, 1, 17);
        bn_case(both[i], 2, 5, 23);    /* runs that are not a multiple of 8 or 16 */
    }
}

static void test_bn_rejects_one_value(void) {
    float x = 1, g = 1, bt = 0, rm = 0, rv = 1, y, sm, si;
    CHECK_RC(b1->bn_fwd_train(b1, 1, 1, 1, &x, &g, &bt, 1e-5f, 0.1f, &rm, &rv, &y, &sm, &si),
             PE_EUSAGE);
}

/* ---- 1. the rest against the reference ---------------------------------- */

/* These ops compute what the reference computes in the same order, so the
 * comparison is bit for bit. */
static void test_elementwise_vs_ref(void) {
    size_t sizes[] = {1, 7, 32768, 32769, 100003};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        size_t n = sizes[t];
        float *a = randf(n, -1, 1), *c = randf(n, -1, 1);
        float *y = zerof(n), *want = zerof(n);
        if (n > 3) a[3] = NAN, a[2] = -0.0f;
        CHECK_OK(b2->relu_fwd(b2, n, a, y));
        pe_ref_relu_fwd(n, a, want);
        CHECK(same_bits(y, want, n * 4));
        float *inplace = copyf(a, n);
        CHECK_OK(b2->relu_fwd(b2, n, inplace, inplace));
        CHECK(same_bits(inplace, want, n * 4));

        CHECK_OK(b2->relu_bwd(b2, n, want, c, y));
        float *want2 = zerof(n);
        pe_ref_relu_bwd(n, want, c, want2);
        CHECK(same_bits(y, want2, n * 4));
        float *dyc = copyf(c, n);
        CHECK_OK(b2->relu_bwd(b2, n, want, dyc, dyc));
        CHECK(same_bits(dyc, want2, n * 4));

        CHECK_OK(b2->add(b2, n, a, c, y));
        pe_ref_add(n, a, c, want2);
        CHECK(same_bits(y, want2, n * 4));
        CHECK_OK(b2->add(b2, n, inplace, c, inplace));
        pe_ref_add(n, want, c, want2);
        CHECK(same_bits(inplace, want2, n * 4));

        memcpy(y, c, n * 4);
        memcpy(want2, c, n * 4);
        CHECK_OK(b2->accumulate(b2, n, a, y));
        pe_ref_accumulate(n, a, want2);
        CHECK(same_bits(y, want2, n * 4));

        CHECK_OK(b2->copy(b2, n, a, y)); /* NaN and -0 copied as bits */
        CHECK(same_bits(y, a, n * 4));
        CHECK_OK(b2->fill(b2, n, -1.5f, y));
        int filled = 1;
        for (size_t i = 0; i < n; i++) filled &= y[i] == -1.5f;
        CHECK(filled);
        free(dyc), free(want2), free(inplace), free(want), free(y), free(c), free(a);
    }
}

static void test_bias_pool_vs_ref(void) {
    int shapes[][2] = {{512, 128}, {512, 512}, {3, 5}, {1, 1}, {70, 65}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int N = shapes[t][0], out = shapes[t][1];
        size_t n = (size_t)N * out;
        float *y = randf(n, -1, 1), *y_ref = copyf(y, n), *bias = randf((size_t)out, -1, 1);
        float *db = zerof((size_t)out), *db_ref = zerof((size_t)out);
        CHECK_OK(b2->bias_add(b2, N, out, bias, y));
        pe_ref_bias_add(N, out, bias, y_ref);
        CHECK(same_bits(y, y_ref, n * 4));
        CHECK_OK(b2->bias_bwd(b2, N, out, y, db));
        pe_ref_bias_bwd(N, out, y, db_ref);
        CHECK(same_bits(db, db_ref, (size_t)out * 4));
        free(db_ref), free(db), free(bias), free(y_ref), free(y);
    }
    int pools[][3] = {{512, 128, 49}, {256, 512, 16}, {3, 5, 7}, {1, 1, 1}, {2, 3, 40000}};
    for (size_t t = 0; t < sizeof pools / sizeof pools[0]; t++) {
        int N = pools[t][0], C = pools[t][1], HW = pools[t][2];
        size_t n = (size_t)N * C * HW, m = (size_t)N * C;
        float *x = randf(n, -1, 1), *y = zerof(m), *y_ref = zerof(m);
        float *dx = zerof(n), *dx_ref = zerof(n);
        CHECK_OK(b2->avgpool_fwd(b2, N, C, HW, x, y));
        pe_ref_avgpool_fwd(N, C, HW, x, y_ref);
        CHECK(same_bits(y, y_ref, m * 4));
        CHECK_OK(b2->avgpool_bwd(b2, N, C, HW, y, dx));
        pe_ref_avgpool_bwd(N, C, HW, y, dx_ref);
        CHECK(same_bits(dx, dx_ref, n * 4));
        free(dx_ref), free(dx), free(y_ref), free(y), free(x);
    }
}

static void test_optim_vs_ref(void) {
    size_t n = 50001;
    for (int step = 1; step <= 3; step++) {
        float *p = randf(n, -1, 1), *g = randf(n, -1, 1);
        float *m = randf(n, -0.1, 0.1), *v = randf(n, 0, 0.01);
        float *p2 = copyf(p, n), *m2 = copyf(m, n), *v2 = copyf(v, n);
        CHECK_OK(b2->adam(b2, n, p, g, m, v, 1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, step));
        pe_ref_adam(n, p2, g, m2, v2, 1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, step);
        CHECK(same_bits(p, p2, n * 4) && same_bits(m, m2, n * 4) && same_bits(v, v2, n * 4));
        CHECK_OK(b2->sgd(b2, n, p, g, m, 0.06f, 0.9f, 5e-4f, step == 1));
        pe_ref_sgd(n, p2, g, m2, 0.06f, 0.9f, 5e-4f, step == 1);
        CHECK(same_bits(p, p2, n * 4) && same_bits(m, m2, n * 4));
        CHECK_OK(b2->sgd(b2, n, p, g, NULL, 0.06f, 0, 0, 0)); /* plain SGD needs no buffer */
        pe_ref_sgd(n, p2, g, NULL, 0.06f, 0, 0, 0);
        CHECK(same_bits(p, p2, n * 4));
        free(v2), free(m2), free(p2), free(v), free(m), free(g), free(p);
    }
}

/* NT-Xent: loss to 2e-6 relative (float log-sum-exp over 2B terms, then a
 * mean of 2B of them); dz to 1e-5 of its largest element (sums of 2B
 * products of O(1/2B) terms, then through the normalisation). */
static void ntxent_case(int B2, int D, float T, double zscale) {
    size_t n = (size_t)B2 * D;
    float *z = randf(n, -zscale, zscale), *dz = zerof(n), *dz_ref = zerof(n);
    float loss = 0, loss_ref = 0;
    char what[64];
    CHECK_OK(b2->ntxent(b2, B2, D, z, T, &loss, dz));
    pe_ref_ntxent(B2, D, z, T, &loss_ref, dz_ref);
    snprintf(what, sizeof what, "ntxent loss 2B%d D%d T%g", B2, D, T);
    double want = loss_ref;
    CHECK(close_to(what, &loss, &want, NULL, 1, 2e-6, 1e-7));
    snprintf(what, sizeof what, "ntxent dz 2B%d D%d T%g", B2, D, T);
    CHECK(close_scaled(what, dz, dz_ref, n, 1e-5));
    free(dz_ref), free(dz), free(z);
}

static void test_ntxent_vs_ref(void) {
    ntxent_case(512, 128, 0.5f, 1);  /* the bench: batch 256, 128-d, T = 0.5 */
    ntxent_case(256, 128, 0.07f, 1); /* sharp softmax: logits up to 14 */
    ntxent_case(8, 3, 0.5f, 100);    /* large norms */
    ntxent_case(34, 17, 1, 1);       /* odd sizes, rows not a multiple of 16 */
    ntxent_case(2, 4, 0.5f, 1);      /* B = 1: the positive is the only other row */
}

/* Stability: logits of 1/T = 1e4 must not overflow exp. */
static void test_ntxent_stable(void) {
    int B2 = 16, D = 8;
    float *z = randf((size_t)B2 * D, -1, 1), *dz = zerof((size_t)B2 * D);
    float loss = NAN;
    CHECK_OK(b2->ntxent(b2, B2, D, z, 1e-4f, &loss, dz));
    int finite = isfinite(loss);
    for (int i = 0; i < B2 * D; i++) finite &= isfinite(dz[i]) != 0;
    CHECK(finite);
    free(dz), free(z);
}

/* ---- 2. finite differences on the reference, in double ------------------ */

/* max |fd - analytic| / max |analytic| over every coordinate of param:
 * central differences (f(x+h) - f(x-h)) / 2h, O(h^2) truncation. */
typedef double (*loss_fn)(void *ctx);

static double fd_error(const char *what, double *param, size_t n, const double *analytic,
                       loss_fn L, void *ctx, double h) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double keep = param[i];
        param[i] = keep + h;
        double lp = L(ctx);
        param[i] = keep - h;
        double lm = L(ctx);
        param[i] = keep;
        double fd = (lp - lm) / (2 * h);
        if (fabs(fd - analytic[i]) > worst) worst = fabs(fd - analytic[i]);
        if (fabs(analytic[i]) > scale) scale = fabs(analytic[i]);
    }
    double rel = scale > 0 ? worst / scale : worst;
    if (verbose) fprintf(stderr, "    fd %-41s rel err %.3g\n", what, rel);
    return rel;
}

static double *randd(size_t n, double lo, double hi) {
    double *p = zerod(n);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * rnd();
    return p;
}

static double dot_d(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Linear ops: truncation is zero, so the error is rounding, ~1e-16 |L| / h;
 * h = 1e-3 keeps it near 1e-12. Nonlinear ones (BN, NT-Xent): h = 1e-5
 * balances h^2 truncation against rounding. Bound: 1e-8 (observed <= 2e-10). */
static const double FD_TOL = 1e-8;

typedef struct conv_fd {
    pe_conv_desc d;
    double *x, *w, *g, *y;
} conv_fd;

static double conv_loss(void *ctx) {
    conv_fd *c = ctx;
    pe_refd_conv_fwd(&c->d, c->x, c->w, c->y);
    return dot_d(c->g, c->y, (size_t)c->d.N * c->d.K * c->d.P * c->d.Q);
}

static void test_fd_conv(void) {
    conv_shape shapes[] = {
        {2, 3, 6, 5, 4, 3, 3, 2, 1}, {2, 2, 5, 5, 3, 3, 3, 1, 1}, {2, 3, 6, 6, 2, 1, 1, 2, 0},
        {1, 2, 7, 6, 2, 5, 5, 1, 2},
    };
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        conv_fd c = {desc_of(&shapes[t]), NULL, NULL, NULL, NULL};
        pe_conv_desc *d = &c.d;
        size_t nx = (size_t)d->N * d->C * d->H * d->W, nw = (size_t)d->K * d->C * d->R * d->S;
        size_t ny = (size_t)d->N * d->K * d->P * d->Q;
        c.x = randd(nx, -1, 1), c.w = randd(nw, -1, 1), c.g = randd(ny, -1, 1);
        c.y = zerod(ny);
        double *dx = zerod(nx), *dw = zerod(nw);
        pe_refd_conv_bwd_data(d, c.g, c.w, dx);
        pe_refd_conv_bwd_filter(d, c.x, c.g, dw);
        CHECK(fd_error("conv dx", c.x, nx, dx, conv_loss, &c, 1e-3) < FD_TOL);
        CHECK(fd_error("conv dw", c.w, nw, dw, conv_loss, &c, 1e-3) < FD_TOL);
        free(dw), free(dx), free(c.y), free(c.g), free(c.w), free(c.x);
    }
}

typedef struct bn_fd {
    int N, C, HW;
    double *x, *gamma, *beta, *g, *y, *rm, *rv, *sm, *si;
} bn_fd;

static double bn_loss(void *ctx) {
    bn_fd *b = ctx;
    pe_refd_bn_fwd_train(b->N, b->C, b->HW, b->x, b->gamma, b->beta, 1e-5, 0.1, b->rm, b->rv,
                         b->y, b->sm, b->si);
    return dot_d(b->g, b->y, (size_t)b->N * b->C * b->HW);
}

static void test_fd_bn(void) {
    int shapes[][3] = {{3, 2, 4}, {5, 3, 1}};
    for (size_t t = 0; t < 2; t++) {
        bn_fd b = {shapes[t][0], shapes[t][1], shapes[t][2], NULL, NULL, NULL, NULL, NULL,
                   NULL, NULL, NULL, NULL};
        size_t n = (size_t)b.N * b.C * b.HW, C = (size_t)b.C;
        b.x = randd(n, -1, 2), b.gamma = randd(C, 0.5, 1.5), b.beta = randd(C, -1, 1);
        b.g = randd(n, -1, 1), b.y = zerod(n), b.rm = zerod(C), b.rv = zerod(C);
        b.sm = zerod(C), b.si = zerod(C);
        double *dx = zerod(n), *dg = zerod(C), *db = zerod(C);
        bn_loss(&b); /* saves the statistics the backward uses */
        pe_refd_bn_bwd(b.N, b.C, b.HW, b.x, b.g, b.gamma, b.sm, b.si, dx, dg, db);
        CHECK(fd_error("bn dx", b.x, n, dx, bn_loss, &b, 1e-5) < FD_TOL);
        CHECK(fd_error("bn dgamma", b.gamma, C, dg, bn_loss, &b, 1e-5) < FD_TOL);
        CHECK(fd_error("bn dbeta", b.beta, C, db, bn_loss, &b, 1e-5) < FD_TOL);
        free(db), free(dg), free(dx), free(b.si), free(b.sm), free(b.rv), free(b.rm);
        free(b.y), free(b.g), free(b.beta), free(b.gamma), free(b.x);
    }
}

typedef struct simple_fd {
    int N, C, HW;
    size_t n, m;
    double *x, *g, *y;
} simple_fd;

static double relu_loss(void *ctx) {
    simple_fd *s = ctx;
    pe_refd_relu_fwd(s->n, s->x, s->y);
    return dot_d(s->g, s->y, s->n);
}

static double pool_loss(void *ctx) {
    simple_fd *s = ctx;
    pe_refd_avgpool_fwd(s->N, s->C, s->HW, s->x, s->y);
    return dot_d(s->g, s->y, s->m);
}

static void test_fd_relu_pool(void) {
    simple_fd s = {0, 0, 0, 40, 40, NULL, NULL, NULL};
    s.x = randd(s.n, -1, 1), s.g = randd(s.n, -1, 1), s.y = zerod(s.n);
    for (size_t i = 0; i < s.n; i++) /* keep clear of the kink at 0 */
        if (fabs(s.x[i]) < 0.01) s.x[i] = 0.5;
    double *dx = zerod(s.n), *y = zerod(s.n);
    pe_refd_relu_fwd(s.n, s.x, y);
    pe_refd_relu_bwd(s.n, y, s.g, dx);
    CHECK(fd_error("relu", s.x, s.n, dx, relu_loss, &s, 1e-4) < FD_TOL);
    free(y), free(dx), free(s.y), free(s.g), free(s.x);

    simple_fd p = {2, 3, 5, 30, 6, NULL, NULL, NULL};
    p.x = randd(p.n, -1, 1), p.g = randd(p.m, -1, 1), p.y = zerod(p.m);
    dx = zerod(p.n);
    pe_refd_avgpool_bwd(p.N, p.C, p.HW, p.g, dx);
    CHECK(fd_error("avgpool", p.x, p.n, dx, pool_loss, &p, 1e-3) < FD_TOL);
    free(dx), free(p.y), free(p.g), free(p.x);
}

/* The head's Linear layer as the model runs it: y (N,out) = x (N,in) W^T
 * + b with gemm(0, 1) and bias_add; backward dx = dy W (gemm(0, 0)),
 * dW = dy^T x (gemm(1, 0)), db = bias_bwd(dy). */
typedef struct linear_fd {
    int N, in, out;
    double *x, *w, *b, *g, *y;
} linear_fd;

static double linear_loss(void *ctx) {
    linear_fd *l = ctx;
    pe_refd_gemm(0, 1, l->N, l->out, l->in, 1, l->x, l->in, l->w, l->in, 0, l->y, l->out);
    pe_refd_bias_add(l->N, l->out, l->b, l->y);
    return dot_d(l->g, l->y, (size_t)l->N * l->out);
}

static void test_fd_linear(void) {
    linear_fd l = {4, 5, 3, NULL, NULL, NULL, NULL, NULL};
    size_t nx = (size_t)l.N * l.in, nw = (size_t)l.out * l.in, ny = (size_t)l.N * l.out;
    l.x = randd(nx, -1, 1), l.w = randd(nw, -1, 1), l.b = randd((size_t)l.out, -1, 1);
    l.g = randd(ny, -1, 1), l.y = zerod(ny);
    double *dx = zerod(nx), *dw = zerod(nw), *db = zerod((size_t)l.out);
    pe_refd_gemm(0, 0, l.N, l.in, l.out, 1, l.g, l.out, l.w, l.in, 0, dx, l.in);
    pe_refd_gemm(1, 0, l.out, l.in, l.N, 1, l.g, l.out, l.x, l.in, 0, dw, l.in);
    pe_refd_bias_bwd(l.N, l.out, l.g, db);
    CHECK(fd_error("linear dx", l.x, nx, dx, linear_loss, &l, 1e-3) < FD_TOL);
    CHECK(fd_error("linear dW", l.w, nw, dw, linear_loss, &l, 1e-3) < FD_TOL);
    CHECK(fd_error("linear db", l.b, (size_t)l.out, db, linear_loss, &l, 1e-3) < FD_TOL);
    free(db), free(dw), free(dx), free(l.y), free(l.g), free(l.b), free(l.w), free(l.x);
}

/* gemm's transposes: C = alpha op(A) op(B) + beta C0 for the four cases,
 * with d op(A) = alpha G op(B)^T and d op(B) = alpha op(A)^T G. */
typedef struct gemm_fd {
    int tA, tB, M, N, K, lda, ldb;
    double alpha, beta;
    double *A, *B, *C0, *C, *G;
} gemm_fd;

static double gemm_loss(void *ctx) {
    gemm_fd *g = ctx;
    memcpy(g->C, g->C0, sizeof(double) * (size_t)g->M * g->N);
    pe_refd_gemm(g->tA, g->tB, g->M, g->N, g->K, g->alpha, g->A, g->lda, g->B, g->ldb, g->beta,
                 g->C, g->N);
    return dot_d(g->G, g->C, (size_t)g->M * g->N);
}

static void test_fd_gemm(void) {
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            gemm_fd g = {tA, tB, 3, 4, 5, tA ? 3 : 5, tB ? 5 : 4, 0.7, 0.3,
                         NULL, NULL, NULL, NULL, NULL};
            size_t na = 15, nb = 20, nc = 12;
            g.A = randd(na, -1, 1), g.B = randd(nb, -1, 1), g.C0 = randd(nc, -1, 1);
            g.C = zerod(nc), g.G = randd(nc, -1, 1);
            double *dopA = zerod(na), *dopB = zerod(nb), *dA = zerod(na), *dB = zerod(nb);
            pe_refd_gemm(0, !tB, g.M, g.K, g.N, g.alpha, g.G, g.N, g.B, g.ldb, 0, dopA, g.K);
            pe_refd_gemm(!tA, 0, g.K, g.N, g.M, g.alpha, g.A, g.lda, g.G, g.N, 0, dopB, g.N);
            for (int i = 0; i < g.M; i++) /* d op(A) (M,K) back to A's storage */
                for (int k = 0; k < g.K; k++)
                    dA[tA ? k * g.M + i : i * g.K + k] = dopA[i * g.K + k];
            for (int k = 0; k < g.K; k++)
                for (int j = 0; j < g.N; j++)
                    dB[tB ? j * g.K + k : k * g.N + j] = dopB[k * g.N + j];
            CHECK(fd_error(tA ? "gemm dA (A^T)" : "gemm dA", g.A, na, dA, gemm_loss, &g, 1e-3) <
                  FD_TOL);
            CHECK(fd_error(tB ? "gemm dB (B^T)" : "gemm dB", g.B, nb, dB, gemm_loss, &g, 1e-3) <
                  FD_TOL);
            free(dB), free(dA), free(dopB), free(dopA), free(g.G), free(g.C), free(g.C0);
            free(g.B), free(g.A);
        }
}

typedef struct ntx_fd {
    int B2, D;
    double T;
    double *z, *dz;
} ntx_fd;

static double ntx_loss(void *ctx) {
    ntx_fd *n = ctx;
    double loss;
    pe_refd_ntxent(n->B2, n->D, n->z, n->T, &loss, n->dz);
    return loss;
}

static void test_fd_ntxent(void) {
    ntx_fd n = {8, 5, 0.5, NULL, NULL};
    size_t sz = (size_t)n.B2 * n.D;
    n.z = randd(sz, -1, 1), n.dz = zerod(sz);
    double *dz = zerod(sz), loss;
    pe_refd_ntxent(n.B2, n.D, n.z, n.T, &loss, dz);
    CHECK(fd_error("ntxent dz", n.z, sz, dz, ntx_loss, &n, 1e-5) < FD_TOL);
    n.T = 0.1; /* sharper softmax */
    pe_refd_ntxent(n.B2, n.D, n.z, n.T, &loss, dz);
    CHECK(fd_error("ntxent dz T=0.1", n.z, sz, dz, ntx_loss, &n, 1e-5) < FD_TOL);
    free(dz), free(n.dz), free(n.z);
}

/* ---- 3. optimisers against torch.optim ---------------------------------- */

/* Three steps on p = (1, -2) with gradients (0.5, 0.25), (-0.25, 1),
 * (0.125, -0.5). Expected values printed by torch.optim 1.13 in float32;
 * by hand in exact arithmetic the first Adam step is p - lr g/|g| =
 * (0.9, -2.1) to 1e-8, the second (0.873366, -2.188437). Tolerance 2e-7:
 * a few float32 ulp at |p| ~ 2. */
static void test_optim_hand(void) {
    static const float grads[3][2] = {{0.5f, 0.25f}, {-0.25f, 1.0f}, {0.125f, -0.5f}};
    static const double adam[2][3][2] = {
        {{0.900000036, -2.0999999}, {0.873366356, -2.18843746}, {0.839323461, -2.22204733}},
        {{0.900000036, -2.0999999}, {0.87122941, -2.18776059}, {0.834843099, -2.21853113}},
    };
    for (int w = 0; w < 2; w++) {
        float p[2] = {1, -2}, m[2] = {0, 0}, v[2] = {0, 0};
        for (int t = 0; t < 3; t++) {
            CHECK_OK(b1->adam(b1, 2, p, grads[t], m, v, 0.1f, 0.9f, 0.999f, 1e-8f,
                              w ? 0.01f : 0.0f, t + 1));
            CHECK(fabs(p[0] - adam[w][t][0]) < 2e-7 && fabs(p[1] - adam[w][t][1]) < 2e-7);
        }
    }
    /* SGD lr 0.1, momentum 0.9, weight decay 0.01: step 1 buf = g + 0.01 p
     * = (0.51, 0.23), p = (0.949, -2.023); then buf = 0.9 buf + g'. */
    static const double sgd_p[3][2] = {
        {0.949000001, -2.023}, {0.927151024, -2.1416769}, {0.894059777, -2.19634461}};
    static const double sgd_buf[3][2] = {
        {0.50999999, 0.230000004}, {0.21848999, 1.18676996}, {0.330912501, 0.546676159}};
    float p[2] = {1, -2}, buf[2] = {12345, -999}; /* garbage: step 1 must overwrite */
    for (int t = 0; t < 3; t++) {
        CHECK_OK(b1->sgd(b1, 2, p, grads[t], buf, 0.1f, 0.9f, 0.01f, t == 0));
        CHECK(fabs(p[0] - sgd_p[t][0]) < 2e-7 && fabs(p[1] - sgd_p[t][1]) < 2e-7);
        CHECK(fabs(buf[0] - sgd_buf[t][0]) < 2e-7 && fabs(buf[1] - sgd_buf[t][1]) < 2e-7);
    }
}

/* ---- 4. thread-count independence -------------------------------------- */

/* Runs one op on b1, b2 and b3 over the same inputs; outputs must match
 * byte for byte (see kernels/cpu/cpu.h for why they do). */
static void test_threads_conv(void) {
    static const conv_shape shapes[] = {
        {16, 1, 28, 28, 16, 3, 3, 1, 1},   {16, 16, 28, 28, 32, 3, 3, 1, 1},
        {16, 32, 28, 28, 32, 3, 3, 1, 1},  {16, 32, 28, 28, 64, 3, 3, 2, 1},
        {16, 64, 14, 14, 64, 3, 3, 1, 1},  {16, 64, 14, 14, 128, 3, 3, 2, 1},
        {16, 128, 7, 7, 128, 3, 3, 1, 1},  {16, 3, 32, 32, 64, 3, 3, 1, 1},
        {16, 64, 32, 32, 64, 3, 3, 1, 1},  {16, 64, 32, 32, 128, 1, 1, 2, 0},
        {16, 128, 16, 16, 256, 3, 3, 2, 1}, {16, 256, 8, 8, 256, 3, 3, 1, 1},
        {16, 512, 4, 4, 512, 3, 3, 1, 1},  {20, 8, 4, 4, 8, 3, 3, 1, 1},
        {3, 5, 13, 11, 7, 3, 3, 2, 1},     {1, 7, 16, 16, 9, 1, 1, 1, 0},
    };
    pe_backend *bs[3] = {b1, b2, b3};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        pe_conv_desc d = desc_of(&shapes[t]);
        size_t nx = (size_t)d.N * d.C * d.H * d.W, nw = (size_t)d.K * d.C * d.R * d.S;
        size_t ny = (size_t)d.N * d.K * d.P * d.Q;
        float *x = randf(nx, -1, 1), *w = randf(nw, -1, 1), *dy = randf(ny, -1, 1);
        float *y[3], *dx[3], *dw[3];
        for (int i = 0; i < 3; i++) {
            float *work = malloc(bs[i]->conv_workspace(bs[i], &d) + 1);
            y[i] = zerof(ny), dx[i] = zerof(nx), dw[i] = zerof(nw);
            CHECK_OK(bs[i]->conv_fwd(bs[i], &d, x, w, y[i], work));
            CHECK_OK(bs[i]->conv_bwd_data(bs[i], &d, dy, w, dx[i], work));
            CHECK_OK(bs[i]->conv_bwd_filter(bs[i], &d, x, dy, dw[i], work));
            free(work);
        }
        for (int i = 1; i < 3; i++) {
            CHECK(same_bits(y[0], y[i], ny * 4));
            CHECK(same_bits(dx[0], dx[i], nx * 4));
            CHECK(same_bits(dw[0], dw[i], nw * 4));
        }
        for (int i = 0; i < 3; i++) free(dw[i]), free(dx[i]), free(y[i]);
        free(dy), free(w), free(x);
    }
}

static void test_threads_other(void) {
    pe_backend *bs[3] = {b1, b2, b3};
    int N = 16, C = 64, HW = 196, B2 = 512, D = 128, F = 512; /* F: BatchNorm1d, gemm */
    size_t n = (size_t)N * C * HW, nf = (size_t)F * F;
    float *x = randf(n > nf ? n : nf, -1, 2), *dy = randf(n > nf ? n : nf, -1, 1);
    float *gamma = randf((size_t)F, 0.5, 1.5), *beta = randf((size_t)F, -1, 1);
    float *z = randf((size_t)B2 * D, -1, 1);
    float *A = randf(nf, -1, 1), *B = randf(nf, -1, 1);
    /* every output of every op, carved out of one arena per backend */
    size_t total = 2 * n + 4 * (size_t)C + 2 * (size_t)C + 2 * nf + 6 * (size_t)F +
                   nf + (size_t)F * 128 + (size_t)B2 * D + 1 + (size_t)N * C + (size_t)F;
    float *arena[3];
    for (int i = 0; i < 3; i++) {
        pe_backend *b = bs[i];
        float *o = arena[i] = zerof(total);
        float *rm = o, *rv = rm + C, *sm = rv + C, *si = sm + C, *y = si + C, *dx = y + n;
        float *dg = dx + n, *db = dg + C, *rm1 = db + C, *rv1 = rm1 + F, *sm1 = rv1 + F;
        float *si1 = sm1 + F, *y1 = si1 + F, *dx1 = y1 + nf, *dg1 = dx1 + nf, *db1 = dg1 + F;
        float *g1 = db1 + F, *g2 = g1 + nf, *dz = g2 + (size_t)F * 128, *loss = dz + (size_t)B2 * D;
        float *pool = loss + 1, *dbias = pool + (size_t)N * C;
        PE_ASSERT(dbias + F == o + total);
        CHECK_OK(b->bn_fwd_train(b, N, C, HW, x, gamma, beta, 1e-5f, 0.1f, rm, rv, y, sm, si));
        CHECK_OK(b->bn_bwd(b, N, C, HW, x, dy, gamma, sm, si, dx, dg, db));
        CHECK_OK(b->bn_fwd_train(b, F, F, 1, x, gamma, beta, 1e-5f, 0.1f, rm1, rv1, y1, sm1, si1));
        CHECK_OK(b->bn_bwd(b, F, F, 1, x, dy, gamma, sm1, si1, dx1, dg1, db1));
        CHECK_OK(b->gemm(b, 0, 1, F, F, F, 1, A, F, B, F, 0, g1, F));
        CHECK_OK(b->gemm(b, 1, 0, F, 128, F, 0.5f, A, F, B, 128, 0, g2, 128));
        CHECK_OK(b->ntxent(b, B2, D, z, 0.5f, loss, dz));
        CHECK_OK(b->avgpool_fwd(b, N, C, HW, x, pool));
        CHECK_OK(b->bias_bwd(b, F, F, A, dbias));
    }
    for (int i = 1; i < 3; i++) CHECK(same_bits(arena[0], arena[i], total * 4));
    for (int i = 0; i < 3; i++) free(arena[i]);
    free(B), free(A), free(z), free(beta), free(gamma), free(dy), free(x);
}

/* ---- the backend object itself ------------------------------------------ */

static void test_backend_basics(void) {
    CHECK(strcmp(b2->name, "cpu") == 0);
    float *p = b2->alloc(b2, 1000);
    CHECK(p && ((uintptr_t)p & 63) == 0);
    float src[4] = {1, 2, 3, 4}, back[4] = {0};
    CHECK_OK(b2->upload(b2, p, src, sizeof src));
    CHECK_OK(b2->download(b2, back, p, sizeof back));
    CHECK(memcmp(src, back, sizeof src) == 0);
    b2->free(b2, p);
    pe_backend *b0 = pe_backend_cpu(0); /* 0 = online CPUs */
    CHECK(b0 != NULL);
    if (b0) b0->destroy(b0);
}

int main(void) {
    verbose = getenv("PE_TEST_VERBOSE") != NULL;
    b1 = pe_backend_cpu(1);
    b2 = pe_backend_cpu(2);
    b3 = pe_backend_cpu(3);
    setenv("PE_CPU_SCALAR", "1", 1);
    bs = pe_backend_cpu(2);
    unsetenv("PE_CPU_SCALAR");
    if (!b1 || !b2 || !b3 || !bs) {
        fprintf(stderr, "test_kernels: cannot create the CPU backend\n");
        return 1;
    }
    RUN(test_backend_basics);
    RUN(test_conv_vs_ref);
    RUN(test_ref_float_vs_double);
    RUN(test_gemm_vs_ref);
    RUN(test_bn_vs_ref);
    RUN(test_bn_rejects_one_value);
    RUN(test_elementwise_vs_ref);
    RUN(test_bias_pool_vs_ref);
    RUN(test_optim_vs_ref);
    RUN(test_ntxent_vs_ref);
    RUN(test_ntxent_stable);
    RUN(test_fd_conv);
    RUN(test_fd_bn);
    RUN(test_fd_relu_pool);
    RUN(test_fd_linear);
    RUN(test_fd_gemm);
    RUN(test_fd_ntxent);
    RUN(test_optim_hand);
    RUN(test_threads_conv);
    RUN(test_threads_other);
    bs->destroy(bs);
    b3->destroy(b3);
    b2->destroy(b2);
    b1->destroy(b1);
    return CHECK_DONE();
}
