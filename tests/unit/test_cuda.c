/*
 * test_cuda.c - every op of the CUDA backend against the CPU backend on
 * random inputs, and the device augmentation against lib/augment.c.
 *
 * Without a GPU (or in a build without the CUDA backend) it prints why and
 * exits 77, which tests/run.sh reports as a skip; PE_REQUIRE_GPU=1 (make
 * test-gpu) turns that into a failure.
 *
 * Tolerances, per op, and why:
 *  - bit-identical: relu, add, accumulate, copy, fill, bias_add, ema,
 *    axpy, adam, sgd, sumsq (one float or double operation per element,
 *    or the same summation order; the shared math of kernels/devmath.h,
 *    built with --fmad=false), and augment (integer and IEEE float math
 *    only, kernels/augview.h);
 *  - |d| <= 1e-6 |x| + 1e-7: gauss_noise (the math libraries' log, cos,
 *    sin differ in the last bits) and avgpool;
 *  - |d| <= 1e-4 max|x| of the tensor: convolutions, GEMM, batch norm,
 *    bias_bwd, NT-Xent and InfoNCE (other summation orders; cuDNN's and
 *    cuBLAS's FP32 paths with TF32 off: float32 rounding of sums of up
 *    to a few thousand terms).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment.h"
#include "backend.h"
#include "check.h"
#include "pe.h"

#define TEST_RNG_SEED 0x6375646120ull
#include "testrand.h"

static pe_backend *cpu, *gpu;

/* ---- device helpers ---- */

static float *up(const float *h, size_t n) {
    float *d = gpu->alloc(gpu, (n ? n : 1) * sizeof *d);
    if (!d || gpu->upload(gpu, d, h, n * sizeof *d)) abort();
    return d;
}

static float *down(const float *d, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof *h);
    if (!h || gpu->download(gpu, h, d, n * sizeof *h)) abort();
    return h;
}

/* max |a - b| <= tol_rel * max|a| + tol_abs, reported with the op's name */
static int close_enough(const char *what, const float *want, const float *got, size_t n,
                        double tol_rel, double tol_abs) {
    double scale = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)want[i]) > scale) scale = fabs((double)want[i]);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)want[i] - (double)got[i]);
        if (!(d <= worst)) { worst = d, at = i; }
    }
    int ok = worst <= tol_rel * scale + tol_abs;
    if (!ok)
        fprintf(stderr, "  %s: max |diff| %.3g at %zu (cpu %.9g, cuda %.9g), scale %.3g\n", what,
                worst, at, (double)want[at], (double)got[at], scale);
    return ok;
}

static int same_bits(const char *what, const float *want, const float *got, size_t n) {
    if (memcmp(want, got, n * sizeof *want) == 0) return 1;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&want[i], &got[i], sizeof *want)) {
            fprintf(stderr, "  %s: first difference at %zu: cpu %.9g, cuda %.9g\n", what, i,
                    (double)want[i], (double)got[i]);
            break;
        }
    return 0;
}

/* ---- ops ---- */

static void conv_case(int N, int C, int H, int W, int K, int R, int stride, int pad) {
    pe_conv_desc d = {N, C, H, W, K, R, R, stride, pad, 0, 0};
    pe_conv_desc_finish(&d);
    size_t nx = (size_t)N * C * H * W, nw = (size_t)K * C * R * R, ny = (size_t)N * K * d.P * d.Q;
    float *x = randf(nx, -1, 1), *w = randf(nw, -1, 1), *dy = randf(ny, -1, 1);
    float *y = zerof(ny), *dx = zerof(nx), *dw = zerof(nw);
    size_t wc = cpu->conv_workspace(cpu, &d), wg = gpu->conv_workspace(gpu, &d);
    float *workc = malloc(wc + 64);
    float *workg = gpu->alloc(gpu, wg + 64);
    CHECK(workc && workg);
    CHECK_OK(cpu->conv_fwd(cpu, &d, x, w, y, workc));
    CHECK_OK(cpu->conv_bwd_data(cpu, &d, dy, w, dx, workc));
    CHECK_OK(cpu->conv_bwd_filter(cpu, &d, x, dy, dw, workc));
    float *gx = up(x, nx), *gw = up(w, nw), *gdy = up(dy, ny);
    float *gy = up(y, ny), *gdx = up(dx, nx), *gdw = up(dw, nw);
    CHECK_OK(gpu->conv_fwd(gpu, &d, gx, gw, gy, workg));
    CHECK_OK(gpu->conv_bwd_data(gpu, &d, gdy, gw, gdx, workg));
    CHECK_OK(gpu->conv_bwd_filter(gpu, &d, gx, gdy, gdw, workg));
    float *hy = down(gy, ny), *hdx = down(gdx, nx), *hdw = down(gdw, nw);
    CHECK(close_enough("conv_fwd", y, hy, ny, 1e-4, 0));
    CHECK(close_enough("conv_bwd_data", dx, hdx, nx, 1e-4, 0));
    CHECK(close_enough("conv_bwd_filter", dw, hdw, nw, 1e-4, 0));
    float *all[] = {x, w, dy, y, dx, dw, workc, hy, hdx, hdw};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    float *dev[] = {gx, gw, gdy, gy, gdx, gdw, workg};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) gpu->free(gpu, dev[i]);
}

static void test_conv(void) {
    conv_case(4, 3, 12, 12, 8, 3, 1, 1);
    conv_case(4, 8, 10, 10, 16, 3, 2, 1);
    conv_case(3, 16, 8, 8, 32, 1, 2, 0);
    conv_case(2, 3, 32, 32, 64, 7, 2, 3);
}

static void bn_case(int N, int C, int HW) {
    size_t n = (size_t)N * C * HW;
    float *x = randf(n, -2, 3), *dy = randf(n, -1, 1), *gamma = randf(C, 0.5, 1.5),
          *beta = randf(C, -0.5, 0.5), *rm = randf(C, -0.1, 0.1), *rv = randf(C, 0.9, 1.1);
    float *rm2 = malloc(C * sizeof *rm2), *rv2 = malloc(C * sizeof *rv2);
    memcpy(rm2, rm, C * sizeof *rm);
    memcpy(rv2, rv, C * sizeof *rv);
    float *y = zerof(n), *ye = zerof(n), *dx = zerof(n), *sm = zerof(C), *si = zerof(C),
          *dg = zerof(C), *db = zerof(C);
    CHECK_OK(cpu->bn_fwd_train(cpu, N, C, HW, x, gamma, beta, 1e-5f, 0.1f, rm, rv, y, sm, si));
    CHECK_OK(cpu->bn_bwd(cpu, N, C, HW, x, dy, gamma, sm, si, dx, dg, db));
    CHECK_OK(cpu->bn_fwd_eval(cpu, N, C, HW, x, gamma, beta, 1e-5f, rm, rv, ye));
    float *gx = up(x, n), *gdy = up(dy, n), *gg = up(gamma, C), *gb = up(beta, C),
          *grm = up(rm2, C), *grv = up(rv2, C), *gy = up(y, n), *gye = up(ye, n),
          *gdx = up(dx, n), *gsm = up(sm, C), *gsi = up(si, C), *gdg = up(dg, C),
          *gdb = up(db, C);
    CHECK_OK(gpu->bn_fwd_train(gpu, N, C, HW, gx, gg, gb, 1e-5f, 0.1f, grm, grv, gy, gsm, gsi));
    CHECK_OK(gpu->bn_bwd(gpu, N, C, HW, gx, gdy, gg, gsm, gsi, gdx, gdg, gdb));
    CHECK_OK(gpu->bn_fwd_eval(gpu, N, C, HW, gx, gg, gb, 1e-5f, grm, grv, gye));
    struct { const char *name; float *want, *dev; size_t n; } cmp[] = {
        {"bn_fwd_train y", y, gy, n},       {"bn running mean", rm, grm, (size_t)C},
        {"bn running var", rv, grv, (size_t)C}, {"bn saved mean", sm, gsm, (size_t)C},
        {"bn saved invstd", si, gsi, (size_t)C}, {"bn_bwd dx", dx, gdx, n},
        {"bn_bwd dgamma", dg, gdg, (size_t)C}, {"bn_bwd dbeta", db, gdb, (size_t)C},
        {"bn_fwd_eval", ye, gye, n},
    };
    for (size_t i = 0; i < sizeof cmp / sizeof *cmp; i++) {
        float *h = down(cmp[i].dev, cmp[i].n);
        CHECK(close_enough(cmp[i].name, cmp[i].want, h, cmp[i].n, 1e-4, 1e-6));
        free(h);
        gpu->free(gpu, cmp[i].dev);
    }
    gpu->free(gpu, gx), gpu->free(gpu, gdy), gpu->free(gpu, gg), gpu->free(gpu, gb);
    float *all[] = {x, dy, gamma, beta, rm, rv, rm2, rv2, y, ye, dx, sm, si, dg, db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

static void test_bn(void) {
    bn_case(8, 16, 36);
    bn_case(64, 32, 1); /* BatchNorm1d */
}

static void test_elementwise(void) {
    const size_t n = 100003;
    float *a = randf(n, -1, 1), *c = randf(n, -1, 1);
    float *want = zerof(n), *want2 = zerof(n);
    float *ga = up(a, n), *gc = up(c, n), *go = up(want, n), *h;
    /* relu forward and backward */
    CHECK_OK(cpu->relu_fwd(cpu, n, a, want));
    CHECK_OK(gpu->relu_fwd(gpu, n, ga, go));
    CHECK(same_bits("relu_fwd", want, h = down(go, n), n)); free(h);
    CHECK_OK(cpu->relu_bwd(cpu, n, want, c, want2));
    CHECK_OK(gpu->relu_bwd(gpu, n, go, gc, go));
    CHECK(same_bits("relu_bwd (in place)", want2, h = down(go, n), n)); free(h);
    /* add, accumulate, copy, fill */
    CHECK_OK(cpu->add(cpu, n, a, c, want));
    CHECK_OK(gpu->add(gpu, n, ga, gc, go));
    CHECK(same_bits("add", want, h = down(go, n), n)); free(h);
    CHECK_OK(cpu->accumulate(cpu, n, a, want));
    CHECK_OK(gpu->accumulate(gpu, n, ga, go));
    CHECK(same_bits("accumulate", want, h = down(go, n), n)); free(h);
    CHECK_OK(gpu->copy(gpu, n, gc, go));
    CHECK(same_bits("copy", c, h = down(go, n), n)); free(h);
    CHECK_OK(cpu->fill(cpu, n, 0.375f, want));
    CHECK_OK(gpu->fill(gpu, n, 0.375f, go));
    CHECK(same_bits("fill", want, h = down(go, n), n)); free(h);
    /* ema, axpy */
    memcpy(want, c, n * sizeof *c);
    CHECK_OK(gpu->copy(gpu, n, gc, go));
    CHECK_OK(cpu->ema(cpu, n, a, want, 0.999));
    CHECK_OK(gpu->ema(gpu, n, ga, go, 0.999));
    CHECK(same_bits("ema", want, h = down(go, n), n)); free(h);
    CHECK_OK(cpu->axpy(cpu, n, -0.3f, a, want));
    CHECK_OK(gpu->axpy(gpu, n, -0.3f, ga, go));
    CHECK(same_bits("axpy", want, h = down(go, n), n)); free(h);
    /* sumsq: the chunked order of backend.h, to the bit */
    double sc, sg;
    CHECK_OK(cpu->sumsq(cpu, n, a, &sc));
    CHECK_OK(gpu->sumsq(gpu, n, ga, &sg));
    CHECK(sc == sg);
    /* gauss_noise: the math libraries' last bits */
    const uint32_t key[2] = {0x12345678u, 0x9abcdef0u};
    CHECK_OK(cpu->gauss_noise(cpu, n, key, 0.7, 0.25, a, want));
    CHECK_OK(gpu->gauss_noise(gpu, n, key, 0.7, 0.25, ga, go));
    CHECK(close_enough("gauss_noise", want, h = down(go, n), n, 1e-6, 1e-7)); free(h);
    gpu->free(gpu, ga), gpu->free(gpu, gc), gpu->free(gpu, go);
    free(a), free(c), free(want), free(want2);
}

static void test_pool_bias(void) {
    const int N = 16, C = 24, HW = 49, out = 40;
    size_t nx = (size_t)N * C * HW;
    float *x = randf(nx, -1, 1), *dyp = randf((size_t)N * C, -1, 1);
    float *y = zerof((size_t)N * C), *dx = zerof(nx);
    CHECK_OK(cpu->avgpool_fwd(cpu, N, C, HW, x, y));
    CHECK_OK(cpu->avgpool_bwd(cpu, N, C, HW, dyp, dx));
    float *gx = up(x, nx), *gdyp = up(dyp, (size_t)N * C), *gy = up(y, (size_t)N * C),
          *gdx = up(dx, nx), *h;
    CHECK_OK(gpu->avgpool_fwd(gpu, N, C, HW, gx, gy));
    CHECK_OK(gpu->avgpool_bwd(gpu, N, C, HW, gdyp, gdx));
    CHECK(close_enough("avgpool_fwd", y, h = down(gy, (size_t)N * C), (size_t)N * C, 1e-6, 1e-7)); free(h);
    CHECK(close_enough("avgpool_bwd", dx, h = down(gdx, nx), nx, 1e-6, 1e-7)); free(h);
    float *bias = randf(out, -1, 1), *yb = randf((size_t)N * out, -1, 1), *db = zerof(out);
    float *gbias = up(bias, out), *gyb = up(yb, (size_t)N * out), *gdb = up(db, out);
    CHECK_OK(cpu->bias_add(cpu, N, out, bias, yb));
    CHECK_OK(gpu->bias_add(gpu, N, out, gbias, gyb));
    CHECK(same_bits("bias_add", yb, h = down(gyb, (size_t)N * out), (size_t)N * out)); free(h);
    CHECK_OK(cpu->bias_bwd(cpu, N, out, yb, db));
    CHECK_OK(gpu->bias_bwd(gpu, N, out, gyb, gdb));
    CHECK(close_enough("bias_bwd", db, h = down(gdb, out), out, 1e-5, 1e-7)); free(h);
    float *dev[] = {gx, gdyp, gy, gdx, gbias, gyb, gdb};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) gpu->free(gpu, dev[i]);
    free(x), free(dyp), free(y), free(dx), free(bias), free(yb), free(db);
}

static void gemm_case(int ta, int tb, int M, int N, int K) {
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = randf(na, -1, 1), *B = randf(nb, -1, 1), *C = randf(nc, -1, 1);
    float *gA = up(A, na), *gB = up(B, nb), *gC = up(C, nc), *h;
    CHECK_OK(cpu->gemm(cpu, ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, C, ldc));
    CHECK_OK(gpu->gemm(gpu, ta, tb, M, N, K, 0.7f, gA, lda, gB, ldb, 0.3f, gC, ldc));
    char name[64];
    snprintf(name, sizeof name, "gemm %c%c %dx%dx%d", ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K);
    CHECK(close_enough(name, C, h = down(gC, nc), nc, 1e-4, 0)); free(h);
    gpu->free(gpu, gA), gpu->free(gpu, gB), gpu->free(gpu, gC);
    free(A), free(B), free(C);
}

static void test_gemm(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) gemm_case(ta, tb, 37, 45, 300);
    gemm_case(0, 1, 256, 512, 128);
}

static void test_losses(void) {
    const int B = 32, D = 64, K = 128;
    size_t nz = (size_t)2 * B * D;
    float *z = randf(nz, -1, 1), *dz = zerof(nz), lc, lg, *h;
    float *gz = up(z, nz), *gdz = up(dz, nz);
    CHECK_OK(cpu->ntxent(cpu, 2 * B, D, z, 0.5f, &lc, dz));
    CHECK_OK(gpu->ntxent(gpu, 2 * B, D, gz, 0.5f, &lg, gdz));
    CHECK(fabsf(lc - lg) <= 1e-4f * fabsf(lc));
    CHECK(close_enough("ntxent dz", dz, h = down(gdz, nz), nz, 1e-4, 0)); free(h);
    /* InfoNCE: q = view 1 rows, k = view 2 rows, a queue of unit rows */
    float *queue = randf((size_t)K * D, -1, 1);
    for (int r = 0; r < K; r++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += (double)queue[r * D + j] * queue[r * D + j];
        for (int j = 0; j < D; j++) queue[r * D + j] = (float)(queue[r * D + j] / sqrt(s));
    }
    size_t nq = (size_t)B * D;
    float *dq = zerof(nq), *kn = zerof(nq);
    float *gq = up(queue, (size_t)K * D), *gdq = up(dq, nq), *gkn = up(kn, nq);
    CHECK_OK(cpu->infonce(cpu, B, D, K, z, z + nq, queue, 0.2f, &lc, dq, kn));
    CHECK_OK(gpu->infonce(gpu, B, D, K, gz, gz + nq, gq, 0.2f, &lg, gdq, gkn));
    CHECK(fabsf(lc - lg) <= 1e-4f * fabsf(lc));
    CHECK(close_enough("infonce dq", dq, h = down(gdq, nq), nq, 1e-4, 0)); free(h);
    CHECK(close_enough("infonce kn", kn, h = down(gkn, nq), nq, 1e-5, 0)); free(h);
    gpu->free(gpu, gz), gpu->free(gpu, gdz), gpu->free(gpu, gq), gpu->free(gpu, gdq),
        gpu->free(gpu, gkn);
    free(z), free(dz), free(queue), free(dq), free(kn);
}

static void test_optim(void) {
    const size_t n = 50001;
    float *p = randf(n, -1, 1), *g = randf(n, -0.1, 0.1), *m = zerof(n), *v = zerof(n);
    float *gp = up(p, n), *gg = up(g, n), *gm = up(m, n), *gv = up(v, n), *h;
    for (long t = 1; t <= 3; t++) {
        CHECK_OK(cpu->adam(cpu, n, p, g, m, v, 1e-3f, 0.9f, 0.999f, 1e-8f, 1e-6f, t));
        CHECK_OK(gpu->adam(gpu, n, gp, gg, gm, gv, 1e-3f, 0.9f, 0.999f, 1e-8f, 1e-6f, t));
    }
    CHECK(same_bits("adam p", p, h = down(gp, n), n)); free(h);
    CHECK(same_bits("adam v", v, h = down(gv, n), n)); free(h);
    for (int t = 0; t < 3; t++) {
        CHECK_OK(cpu->sgd(cpu, n, p, g, m, 0.06f, 0.9f, 5e-4f, t == 0));
        CHECK_OK(gpu->sgd(gpu, n, gp, gg, gm, 0.06f, 0.9f, 5e-4f, t == 0));
    }
    CHECK(same_bits("sgd p", p, h = down(gp, n), n)); free(h);
    CHECK_OK(cpu->sgd(cpu, n, p, g, NULL, 0.06f, 0, 0, 1));
    CHECK_OK(gpu->sgd(gpu, n, gp, gg, NULL, 0.06f, 0, 0, 1));
    CHECK(same_bits("sgd without momentum", p, h = down(gp, n), n)); free(h);
    gpu->free(gpu, gp), gpu->free(gpu, gg), gpu->free(gpu, gm), gpu->free(gpu, gv);
    free(p), free(g), free(m), free(v);
}

/* The device augmentation renders the bytes lib/augment.c renders: RGB
 * and L sources of assorted shapes (a 2:1 composite among them), in one
 * batch, with the training options' draws. */
static void test_augment(void) {
    enum { NIMG = 6, SIZE = 32 };
    const uint32_t dims[NIMG][3] = {{32, 32, 3}, {64, 32, 3}, {28, 28, 1},
                                    {97, 41, 3}, {5, 7, 3},   {300, 200, 3}};
    for (uint32_t out_c = 1; out_c <= 3; out_c += 2) {
        pe_aug_opts o;
        pe_aug_opts_default(&o);
        o.size = SIZE;
        o.channels = out_c == 3 ? 3 : 0;
        for (int c = 0; c < 3; c++) o.mean[c] = 0.4f + 0.05f * c, o.std[c] = 0.25f;
        pe_image im[NIMG];
        size_t total = 0;
        for (int i = 0; i < NIMG; i++) total += (size_t)dims[i][0] * dims[i][1] * dims[i][2];
        uint8_t *px = malloc(total);
        pe_aug_job jobs[2 * NIMG];
        size_t view = (size_t)out_c * SIZE * SIZE, off = 0;
        float *want = zerof(2 * NIMG * view);
        int n = 0;
        for (int i = 0; i < NIMG; i++) {
            uint32_t c = out_c == 1 ? 1 : dims[i][2];
            im[i] = (pe_image){dims[i][0], dims[i][1], c, px + off};
            size_t sz = (size_t)im[i].w * im[i].h * c;
            for (size_t k = 0; k < sz; k++) im[i].px[k] = (uint8_t)(rnd() * 256);
            for (uint32_t v = 0; v < 2; v++, n++) {
                pe_aug_params p;
                CHECK_OK(pe_aug_draw_view(7, 3, (uint64_t)i, v, im[i].w, im[i].h, &o, &p, NULL));
                pe_aug_job_of(&p, im[i].w, im[i].h, c, off, &jobs[n]);
                CHECK_OK(pe_aug_apply(&im[i], &o, &p, want + (size_t)n * view, NULL));
            }
            off += sz;
        }
        float *gout = gpu->alloc(gpu, (size_t)n * view * sizeof(float)), *h;
        CHECK(gout != NULL);
        CHECK_OK(gpu->augment(gpu, n, jobs, px, off, SIZE, out_c, o.mean, o.std, gout));
        CHECK(same_bits(out_c == 3 ? "augment rgb" : "augment gray", want,
                        h = down(gout, (size_t)n * view), (size_t)n * view)); free(h);
        /* a job reading past the pixels is refused, naming the view */
        jobs[1].offset = off;
        CHECK(gpu->augment(gpu, n, jobs, px, off, SIZE, out_c, o.mean, o.std, gout) != 0);
        gpu->free(gpu, gout);
        free(px), free(want);
    }
}

int main(void) {
    const char *why = NULL;
    /* a build with the backend must be able to load it, GPU or not: this
     * catches a library that lacks a symbol or is from other sources */
    char exe[4096], lib[4200];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        if (strrchr(exe, '/')) *strrchr(exe, '/') = 0;
        snprintf(lib, sizeof lib, "%s/../lib/libpe-cuda.so", exe);
        if (access(lib, F_OK) == 0 && !getenv("PE_CUDA_LIB")) {
            int ok = pe_cuda_library(&why);
            if (!ok) fprintf(stderr, "%s: %s\n", lib, why);
            CHECK(ok);
        }
    }
    /* a library that is not pe's is refused with a message */
    if (check_failures == 0 && getenv("PE_CUDA_LIB")) {
        CHECK(!pe_cuda_library(&why));
        return CHECK_DONE();
    }
    int ngpu = pe_cuda_devices(&why);
    if (check_failures) return CHECK_DONE();
    if (ngpu == 0) {
        printf("skip: %s\n", why ? why : "no GPU");
        if (getenv("PE_REQUIRE_GPU")) {
            fprintf(stderr, "PE_REQUIRE_GPU is set: a GPU was required\n");
            return 1;
        }
        return 77;
    }
    cpu = pe_backend_cpu(2);
    gpu = pe_backend_cuda(0, PE_PREC_FP32, 0);
    if (!cpu || !gpu) {
        fprintf(stderr, "cannot open the backends: %s\n", pe_errmsg());
        return 1;
    }
    RUN(test_elementwise);
    RUN(test_pool_bias);
    RUN(test_gemm);
    RUN(test_conv);
    RUN(test_bn);
    RUN(test_losses);
    RUN(test_optim);
    RUN(test_augment);
    cpu->destroy(cpu);
    gpu->destroy(gpu);
    return CHECK_DONE();
}
