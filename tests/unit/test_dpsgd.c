/*
 * test_dpsgd.c - pe-train's differentially private step (pe_dp_*,
 * train.h) and the backend ops it adds (sumsq, axpy, gauss_noise): the ops
 * against the scalar reference and across thread counts, the clipping
 * rule, the noise's distribution and determinism, the noise multiplier
 * that --dp-epsilon asks the accountant for, and the group path itself:
 * with no noise and no clipping a step with one group (g = B) is the plain
 * SimCLR step bit for bit, and with g < B the loss is the mean of the
 * groups' own NT-Xent losses and the gradient the mean of theirs.
 *
 * Not for: the accountant's numbers (test_dp.c), checkpoints, resume and
 * the options (tests/cli/dp.sh).
 *
 * Tolerances: the ops are defined to the bit, so they are compared with
 * memcmp; the noise's empirical moments over 400001 draws have a relative
 * standard error of about 0.11% (std) and 0.0016 std (mean), so 1% and
 * 0.01 std are wide margins that a wrong scale (sigma C instead of sigma C
 * / m, or a missing factor) still fails.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "cpu/ref.h"
#include "dp.h"
#include "model.h"
#include "pe.h"
#include "train.h"

static pe_backend *b1, *b2, *b3; /* 1, 2 and 3 threads */

#define TEST_RNG_SEED 0x13198A2E03707344ull
#include "testrand.h"

static float *copyf(const float *x, size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) abort();
    memcpy(p, x, n * sizeof *p);
    return p;
}

/* ---- the ops ------------------------------------------------------------ */

static void test_sumsq(void) {
    /* sizes around the chunk, and one of many chunks */
    const size_t ns[] = {0, 1, 7, PE_SUMSQ_CHUNK - 1, PE_SUMSQ_CHUNK, PE_SUMSQ_CHUNK + 1,
                         10 * PE_SUMSQ_CHUNK + 123};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        size_t n = ns[t];
        float *x = randf(n, -3, 3);
        double want = pe_ref_sumsq(n, x), got1 = -1, got2 = -1, got3 = -1;
        CHECK_OK(b1->sumsq(b1, n, x, &got1));
        CHECK_OK(b2->sumsq(b2, n, x, &got2));
        CHECK_OK(b3->sumsq(b3, n, x, &got3));
        /* the fixed order: the same bits for any thread count */
        CHECK(memcmp(&got1, &want, sizeof want) == 0);
        CHECK(memcmp(&got2, &want, sizeof want) == 0);
        CHECK(memcmp(&got3, &want, sizeof want) == 0);
        long double exact = 0;
        for (size_t i = 0; i < n; i++) exact += (long double)x[i] * x[i];
        CHECK(fabsl((long double)want - exact) <= 1e-13L * (exact + 1e-300L));
        free(x);
    }
}

static void test_axpy(void) {
    size_t n = 3 * 32768 + 17;
    float *x = randf(n, -1, 1), *y0 = randf(n, -1, 1);
    float *want = copyf(y0, n);
    pe_ref_axpy(n, 0.3f, x, want);
    pe_backend *bs[3] = {b1, b2, b3};
    for (int k = 0; k < 3; k++) {
        float *y = copyf(y0, n);
        CHECK_OK(bs[k]->axpy(bs[k], n, 0.3f, x, y));
        CHECK(memcmp(y, want, n * sizeof *y) == 0);
        free(y);
    }
    free(x);
    free(y0);
    free(want);
}

/* A gradient of norm 2C is halved, one of norm C/2 left alone, through the
 * ops the step uses (sumsq, pe_dp_clip_scale, axpy onto zeros). */
static void test_clip(void) {
    const double C = 1.5;
    size_t n = 2 * PE_SUMSQ_CHUNK + 5;
    float *g = randf(n, -1, 1), *acc = calloc(n, sizeof *acc);
    if (!acc) abort();
    for (int which = 0; which < 2; which++) {
        double target = which ? C / 2 : 2 * C, ss;
        CHECK_OK(b2->sumsq(b2, n, g, &ss));
        for (size_t i = 0; i < n; i++) g[i] = (float)(g[i] * (target / sqrt(ss)));
        CHECK_OK(b2->sumsq(b2, n, g, &ss));
        CHECK(fabs(sqrt(ss) - target) < 1e-6 * target);
        double s = pe_dp_clip_scale(sqrt(ss), C);
        if (which) CHECK(s == 1.0);
        else CHECK(fabs(s - 0.5) < 1e-6);
        memset(acc, 0, n * sizeof *acc);
        CHECK_OK(b2->axpy(b2, n, (float)s, g, acc));
        double out;
        CHECK_OK(b2->sumsq(b2, n, acc, &out));
        if (which) {
            CHECK(memcmp(acc, g, n * sizeof *g) == 0); /* untouched */
        } else {
            CHECK(fabs(sqrt(out) - C) < 1e-5 * C);
            int half = 1;
            for (size_t i = 0; i < n; i++) half &= fabsf(acc[i] - 0.5f * g[i]) <= 1e-6f * fabsf(g[i]);
            CHECK(half);
        }
    }
    CHECK(pe_dp_clip_scale(0, C) == 1.0);
    CHECK(pe_dp_clip_scale(C, C) == 1.0);
    free(g);
    free(acc);
}

static void test_noise(void) {
    const size_t n = 400001; /* odd: the last pair is half used */
    const double sigma = 1.3, C = 0.7;
    const int m = 4;
    uint32_t key[2], key2[2];
    pe_dp_noise_key(42, 7, key);
    pe_dp_noise_key(42, 8, key2);
    CHECK(key[0] != key2[0] || key[1] != key2[1]);
    float *zero = calloc(n, sizeof *zero), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    float *r = malloc(n * sizeof *r), *c = malloc(n * sizeof *c);
    if (!zero || !a || !b || !r || !c) abort();
    CHECK_OK(b1->gauss_noise(b1, n, key, sigma * C, 1.0 / m, zero, a));
    CHECK_OK(b3->gauss_noise(b3, n, key, sigma * C, 1.0 / m, zero, b));
    pe_ref_gauss_noise(n, key, sigma * C, 1.0 / m, zero, r);
    CHECK(memcmp(a, b, n * sizeof *a) == 0); /* threads do not matter */
    CHECK(memcmp(a, r, n * sizeof *a) == 0); /* the reference's definition */
    CHECK_OK(b2->gauss_noise(b2, n, key, sigma * C, 1.0 / m, zero, b));
    CHECK(memcmp(a, b, n * sizeof *a) == 0); /* and again: deterministic */
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        s += a[i];
        s2 += (double)a[i] * a[i];
    }
    double mean = s / n, sd = sqrt(s2 / n - mean * mean), want = sigma * C / m;
    CHECK(fabs(sd - want) < 0.01 * want);
    CHECK(fabs(mean) < 0.01 * want);
    /* another step: other noise, uncorrelated with this one */
    CHECK_OK(b2->gauss_noise(b2, n, key2, sigma * C, 1.0 / m, zero, c));
    double sc = 0;
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        sc += (double)a[i] * c[i];
        same += a[i] == c[i];
    }
    CHECK(same < 10);
    CHECK(fabs(sc / n) < 0.01 * want * want);
    /* noise is added to src, then scaled; in place is allowed */
    float *src = randf(n, -1, 1), *dst = malloc(n * sizeof *dst);
    if (!dst) abort();
    CHECK_OK(b2->gauss_noise(b2, n, key, sigma * C, 1.0 / m, src, dst));
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= fabs(dst[i] - (src[i] / (double)m + a[i])) <= 1e-6 * (1 + fabs(dst[i]));
    CHECK(ok);
    CHECK_OK(b2->gauss_noise(b2, n, key, sigma * C, 1.0 / m, src, src));
    CHECK(memcmp(src, dst, n * sizeof *dst) == 0);
    /* stddev 0 and scale 1 copy src exactly */
    CHECK_OK(b2->gauss_noise(b2, n, key, 0, 1, dst, c));
    CHECK(memcmp(c, dst, n * sizeof *dst) == 0);
    free(src);
    free(dst);
    free(zero);
    free(a);
    free(b);
    free(r);
    free(c);
}

/* --dp-epsilon's sigma: reaches the epsilon, and barely (to 1e-4) */
static void test_sigma_for(void) {
    const double qs[] = {0.01, 0.1, 1.0 / 6};
    const uint64_t steps[] = {1000, 100, 12};
    const double eps[] = {1.0, 3.0, 8.0};
    for (int k = 0; k < 3; k++) {
        double sigma = 0;
        CHECK_OK(pe_dp_sigma_for(qs[k], steps[k], 1e-5, eps[k], &sigma));
        CHECK(pe_dp_epsilon(qs[k], sigma, steps[k], 1e-5, NULL) <= eps[k]);
        CHECK(pe_dp_epsilon(qs[k], sigma * 0.999, steps[k], 1e-5, NULL) > eps[k]);
    }
    /* the trainer's rule for --dp-epsilon: the accountant's multiplier
     * times the groups' sensitivity, whose epsilon is then the target's */
    double sigma = 0;
    CHECK_OK(pe_dp_sigma_for(0.1, 100, 1e-5, 3.0, &sigma));
    sigma *= PE_DP_SENSITIVITY;
    CHECK(pe_dp_epsilon(0.1, sigma / PE_DP_SENSITIVITY, 100, 1e-5, NULL) <= 3.0);
    CHECK(pe_dp_epsilon(0.1, sigma, 100, 1e-5, NULL) < 3.0);
    CHECK_RC(pe_dp_sigma_for(0.1, 100, 1e-5, 1e-6, &sigma), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "reaches epsilon") != NULL);
}

/* ---- the step ----------------------------------------------------------- */

enum { B = 8, S = 16, CH = 3 };

static pe_model *model(pe_backend *be, int n) {
    pe_model_cfg cfg;
    pe_model_cfg_default(&cfg, PE_ARCH_SMALL, CH, S);
    pe_model *m = NULL;
    if (pe_model_init(&m, &cfg, be, 5) || pe_model_set_batch(m, n)) {
        fprintf(stderr, "model: %s\n", pe_errmsg());
        abort();
    }
    return m;
}

static float *grads_of(pe_model *m) {
    size_t np = pe_model_nparams(m);
    return copyf(pe_model_grads(m), np);
}

/* sigma 0, C huge, g = B: the plain SimCLR step, bit for bit (loss,
 * gradient, and the parameters after an Adam step) */
static void test_one_group_is_plain(void) {
    const size_t view_n = (size_t)CH * S * S;
    float *x = randf(2 * B * view_n, -2, 2);
    pe_model *plain = model(b2, 2 * B), *dpm = model(b2, 2 * B);
    size_t np = pe_model_nparams(plain);
    int D = pe_model_get_cfg(plain)->head_out;
    float *dz = malloc(2 * B * (size_t)D * sizeof *dz);
    if (!dz) abort();
    float lp = 0, ld = 0;
    CHECK_OK(pe_model_forward(plain, x, 1, 1));
    CHECK_OK(b2->ntxent(b2, 2 * B, D, pe_model_z(plain), 0.5f, &lp, dz));
    CHECK_OK(pe_model_backward(plain, dz));
    pe_dp *dp = NULL;
    CHECK_OK(pe_dp_init(&dp, dpm, b2, B, B, view_n, 1e30, 0, 9));
    CHECK_OK(pe_dp_step(dp, dpm, x, 0.5f, 0, &ld));
    CHECK(lp == ld);
    CHECK(memcmp(pe_model_grads(plain), pe_model_grads(dpm), np * sizeof(float)) == 0);
    uint64_t ng, nc;
    pe_dp_counts(dp, &ng, &nc);
    CHECK(ng == 1 && nc == 0);
    float *m1 = calloc(np, sizeof *m1), *v1 = calloc(np, sizeof *v1);
    float *m2 = calloc(np, sizeof *m2), *v2 = calloc(np, sizeof *v2);
    if (!m1 || !v1 || !m2 || !v2) abort();
    CHECK_OK(b2->adam(b2, np, pe_model_params(plain), pe_model_grads(plain), m1, v1, 1e-3f,
                      0.9f, 0.999f, 1e-8f, 1e-6f, 1));
    CHECK_OK(b2->adam(b2, np, pe_model_params(dpm), pe_model_grads(dpm), m2, v2, 1e-3f, 0.9f,
                      0.999f, 1e-8f, 1e-6f, 1));
    CHECK(memcmp(pe_model_params(plain), pe_model_params(dpm), np * sizeof(float)) == 0);
    /* the batch-norm running statistics saw the same batch once */
    CHECK(memcmp(pe_model_buffers(plain), pe_model_buffers(dpm),
                 pe_model_nbuffers(plain) * sizeof(float)) == 0);
    pe_dp_free(dp);
    free(m1);
    free(v1);
    free(m2);
    free(v2);
    free(dz);
    free(x);
    pe_model_free(plain);
    pe_model_free(dpm);
}

/* g = B / 2: the loss is the mean of the two groups' NT-Xent losses (each
 * group's forward on its own 2g views) and, with no noise or clipping, the
 * gradient the mean of theirs; with a small C, every group is clipped and
 * the mean's norm is at most C */
static void test_groups(void) {
    enum { G = B / 2 };
    const size_t view_n = (size_t)CH * S * S, gv = G * view_n;
    float *x = randf(2 * B * view_n, -2, 2);
    pe_model *ref = model(b2, 2 * G), *dpm = model(b2, 2 * G);
    size_t np = pe_model_nparams(ref);
    int D = pe_model_get_cfg(ref)->head_out;
    float *dz = malloc(2 * G * (size_t)D * sizeof *dz), *xg = malloc(2 * gv * sizeof *xg);
    float *gsum = calloc(np, sizeof *gsum), *g0 = NULL;
    if (!dz || !xg || !gsum) abort();
    double lsum = 0;
    for (int j = 0; j < B / G; j++) {
        memcpy(xg, x + j * gv, gv * sizeof *xg);                  /* view 1 of the group */
        memcpy(xg + gv, x + B * view_n + j * gv, gv * sizeof *xg); /* view 2 */
        float l = 0;
        CHECK_OK(pe_model_forward(ref, xg, 1, 1));
        CHECK_OK(b2->ntxent(b2, 2 * G, D, pe_model_z(ref), 0.5f, &l, dz));
        CHECK_OK(pe_model_backward(ref, dz));
        if (j == 0) g0 = grads_of(ref);
        pe_ref_axpy(np, 1.0f, pe_model_grads(ref), gsum);
        lsum += l;
    }
    float lwant = (float)(lsum / (B / G)), lgot = 0;
    pe_dp *dp = NULL;
    CHECK_OK(pe_dp_init(&dp, dpm, b2, B, G, view_n, 1e30, 0, 9));
    CHECK_OK(pe_dp_step(dp, dpm, x, 0.5f, 3, &lgot));
    CHECK(lgot == lwant);
    float *gwant = malloc(np * sizeof *gwant);
    if (!gwant) abort();
    for (size_t i = 0; i < np; i++) gwant[i] = (float)((double)gsum[i] * (1.0 / (B / G)));
    CHECK(memcmp(pe_model_grads(dpm), gwant, np * sizeof(float)) == 0);
    /* the gradient is not the whole batch's: the groups really are apart */
    CHECK(memcmp(pe_model_grads(dpm), g0, np * sizeof(float)) != 0);
    pe_dp_free(dp);

    /* clipping inside the step */
    double ss0;
    CHECK_OK(b2->sumsq(b2, np, g0, &ss0));
    const double C = sqrt(ss0) / 10;
    pe_model *clipm = model(b2, 2 * G);
    CHECK_OK(pe_dp_init(&dp, clipm, b2, B, G, view_n, C, 0, 9));
    CHECK_OK(pe_dp_step(dp, clipm, x, 0.5f, 3, &lgot));
    CHECK(lgot == lwant);
    double ss;
    CHECK_OK(b2->sumsq(b2, np, pe_model_grads(clipm), &ss));
    CHECK(sqrt(ss) <= C * (1 + 1e-5)); /* m clipped gradients, summed, / m */
    uint64_t ng, nc;
    pe_dp_counts(dp, &ng, &nc);
    CHECK(ng == B / G && nc == B / G);
    pe_dp_counts(dp, &ng, &nc);
    CHECK(ng == 0 && nc == 0);
    pe_dp_free(dp);
    pe_model_free(clipm);

    /* with noise: the same bits on 1 and 3 threads, other bits at another
     * step, and the noise's size what sigma C / m says */
    pe_model *n1 = model(b1, 2 * G), *n3 = model(b3, 2 * G);
    pe_dp *d1 = NULL, *d3 = NULL;
    const double sigma = 2.0;
    CHECK_OK(pe_dp_init(&d1, n1, b1, B, G, view_n, C, sigma, 9));
    CHECK_OK(pe_dp_init(&d3, n3, b3, B, G, view_n, C, sigma, 9));
    CHECK_OK(pe_dp_step(d1, n1, x, 0.5f, 3, &lgot));
    CHECK_OK(pe_dp_step(d3, n3, x, 0.5f, 3, &lgot));
    CHECK(memcmp(pe_model_grads(n1), pe_model_grads(n3), np * sizeof(float)) == 0);
    float *at3 = grads_of(n1);
    CHECK_OK(pe_dp_step(d1, n1, x, 0.5f, 4, &lgot));
    CHECK(memcmp(pe_model_grads(n1), at3, np * sizeof(float)) != 0);
    CHECK_OK(b1->sumsq(b1, np, at3, &ss));
    /* np coordinates of std sigma C / m, plus a signal of norm <= C */
    double want = sigma * C / (B / G) * sqrt((double)np);
    CHECK(sqrt(ss) > 0.95 * want - C && sqrt(ss) < 1.05 * want + C);
    free(at3);
    pe_dp_free(d1);
    pe_dp_free(d3);
    pe_model_free(n1);
    pe_model_free(n3);

    /* bad groups */
    CHECK_RC(pe_dp_init(&dp, dpm, b2, B, 3, view_n, 1, 1, 9), PE_EUSAGE);
    CHECK_RC(pe_dp_init(&dp, dpm, b2, B, G, view_n, 0, 1, 9), PE_EUSAGE);
    CHECK(dp == NULL);
    free(gwant);
    free(g0);
    free(gsum);
    free(dz);
    free(xg);
    free(x);
    pe_model_free(ref);
    pe_model_free(dpm);
}

int main(void) {
    b1 = pe_backend_cpu(1);
    b2 = pe_backend_cpu(2);
    b3 = pe_backend_cpu(3);
    if (!b1 || !b2 || !b3) {
        fprintf(stderr, "test_dpsgd: cannot create the CPU backend\n");
        return 1;
    }
    RUN(test_sumsq);
    RUN(test_axpy);
    RUN(test_clip);
    RUN(test_noise);
    RUN(test_sigma_for);
    RUN(test_one_group_is_plain);
    RUN(test_groups);
    b3->destroy(b3);
    b2->destroy(b2);
    b1->destroy(b1);
    return CHECK_DONE();
}
