/*
 * test_moco.c - pe-train's MoCo v2 pieces: the backend's infonce and ema
 * ops (against the scalar reference, finite differences and other thread
 * counts), the queue (FIFO, pointer wrap, initialisation from the seed),
 * the key encoder's copy and momentum update, and three training steps
 * against the PyTorch fixture tests/ref/fixture_moco.safetensors (written
 * by tests/ref/make_moco_fixture.py, on the encoder and input of
 * fixture_resnet_tiny.safetensors).
 *
 * Not for: the NT-Xent path or the model's own backward (test_kernels.c,
 * test_fixture.c), or the checkpoints and resume (tests/cli/moco.sh).
 *
 * Fixture tolerances are test_fixture.c's (tests/ref/README.md measured
 * the float32 noise floor at about 1e-5):
 *  - first forward (zq, zk), losses, dq, running statistics, the queue:
 *    |d| <= 1e-5 + 1e-4 |x| elementwise;
 *  - parameter gradients: |d| <= 1e-5 + 1e-4 max|x| of the tensor;
 *  - query and key parameters after 3 steps: the change (final - init)
 *    within 1e-3 relative L2 error per tensor (Adam's step sign on a
 *    near-zero gradient may flip an element; a wrong update does not pass).
 * Set PE_FIXTURE_PERTURB=1 to scale the first conv's weights by 1.001
 * after loading: the fixture test must then fail. PE_TEST_VERBOSE=1 prints
 * each comparison's worst error as a fraction of its tolerance.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "cpu/ref.h"
#include "model.h"
#include "pe.h"
#include "safetensors.h"
#include "train.h"

#ifndef PE_SRCDIR
#define PE_SRCDIR "."
#endif

static pe_backend *b1, *b2, *b3; /* 1, 2 and 3 threads */
static int verbose;              /* PE_TEST_VERBOSE: each comparison's margin */

/* ---- helpers ------------------------------------------------------------ */

#define TEST_RNG_SEED 0x243F6A8885A308D3ull
#include "testrand.h"

/* rows of x (n, D) L2-normalised in place */
static void normalise_rows(float *x, size_t n, int D) {
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int c = 0; c < D; c++) s += (double)x[i * D + c] * x[i * D + c];
        for (int c = 0; c < D; c++) x[i * D + c] = (float)(x[i * D + c] / sqrt(s));
    }
}

/* |got - want| <= tol * max|want| everywhere; prints the worst */
static int close_scaled(const char *what, const float *got, const float *want, size_t n, double tol) {
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)got[i] - want[i]));
    int ok = worst <= tol * scale;
    if (!ok) fprintf(stderr, "  %s: worst |d| %.3g > %.3g x max %.3g\n", what, worst, tol, scale);
    return ok;
}

/* ---- the infonce op ----------------------------------------------------- */

/* infonce on b2 against pe_ref_infonce: loss to 2e-6 relative (a float
 * log-sum-exp over 1 + K terms, then a mean of N); dq to 1e-5 of its
 * largest element (sums of K products through the normalisation); kn to
 * 1e-6 (one division per element). */
static void infonce_case(int N, int D, int K, float T, double scale) {
    size_t nq = (size_t)N * D, nk = (size_t)K * D;
    float *q = randf(nq, -scale, scale), *k = randf(nq, -scale, scale), *queue = randf(nk, -1, 1);
    normalise_rows(queue, (size_t)K, D);
    float *dq = zerof(nq), *dq_ref = zerof(nq), *kn = zerof(nq), *kn_ref = zerof(nq);
    float loss = 0, loss_ref = 0;
    CHECK_OK(b2->infonce(b2, N, D, K, q, k, queue, T, &loss, dq, kn));
    pe_ref_infonce(N, D, K, q, k, queue, T, &loss_ref, dq_ref, kn_ref);
    if (!(fabs(loss - loss_ref) <= 2e-6 * fabs(loss_ref) + 1e-7))
        fprintf(stderr, "  infonce N%d D%d K%d T%g: loss %.9g, reference %.9g\n", N, D, K, (double)T,
                (double)loss, (double)loss_ref);
    CHECK(fabs(loss - loss_ref) <= 2e-6 * fabs(loss_ref) + 1e-7);
    CHECK(close_scaled("infonce dq", dq, dq_ref, nq, 1e-5));
    CHECK(close_scaled("infonce kn", kn, kn_ref, nq, 1e-6));
    free(kn_ref), free(kn), free(dq_ref), free(dq), free(queue), free(k), free(q);
}

static void test_infonce_vs_ref(void) {
    infonce_case(256, 128, 4096, 0.2f, 1); /* pe-train's defaults */
    infonce_case(16, 128, 32, 0.07f, 1);   /* MoCo v1's T: logits up to 14 */
    infonce_case(8, 3, 16, 0.2f, 100);     /* large norms */
    infonce_case(35, 17, 35, 1, 1);        /* rows not a multiple of 16 */
    infonce_case(2, 4, 1, 0.5f, 1);        /* one negative */
}

/* Logits of 1/T = 1e4 must not overflow exp; a zero query row (the norm
 * clamp) must stay finite. */
static void test_infonce_stable(void) {
    int N = 16, D = 8, K = 32;
    float *q = randf((size_t)N * D, -1, 1), *k = randf((size_t)N * D, -1, 1);
    float *queue = randf((size_t)K * D, -1, 1), *dq = zerof((size_t)N * D), *kn = zerof((size_t)N * D);
    normalise_rows(queue, (size_t)K, D);
    float loss = NAN;
    CHECK_OK(b2->infonce(b2, N, D, K, q, k, queue, 1e-4f, &loss, dq, kn));
    int finite = isfinite(loss);
    for (int i = 0; i < N * D; i++) finite &= isfinite(dq[i]) != 0;
    CHECK(finite);
    memset(q, 0, sizeof(float) * (size_t)D); /* row 0 all zero */
    CHECK_OK(b2->infonce(b2, N, D, K, q, k, queue, 0.2f, &loss, dq, kn));
    finite = isfinite(loss);
    for (int i = 0; i < N * D; i++) finite &= isfinite(dq[i]) != 0;
    CHECK(finite);
    free(kn), free(dq), free(queue), free(k), free(q);
}

/* The loss by hand on a case small enough to write down: N = 1, D = 2,
 * q = (3, 4) -> (0.6, 0.8), k = (1, 0), queue rows (0, 1) and (-1, 0),
 * T = 0.5: logits (1.2, 1.6, -1.2), loss = log(e^1.2 + e^1.6 + e^-1.2)
 * - 1.2. */
static void test_infonce_hand(void) {
    float q[2] = {3, 4}, k[2] = {1, 0}, queue[4] = {0, 1, -1, 0}, dq[2], kn[2], loss;
    CHECK_OK(b1->infonce(b1, 1, 2, 2, q, k, queue, 0.5f, &loss, dq, kn));
    double want = log(exp(1.2) + exp(1.6) + exp(-1.2)) - 1.2;
    CHECK(fabs(loss - want) < 1e-6);
    CHECK(kn[0] == 1 && kn[1] == 0);
    /* the gradient is orthogonal to q (the normalisation removes the radial part) */
    CHECK(fabs(dq[0] * 3 + dq[1] * 4) < 1e-6);
}

typedef struct nce_fd {
    int N, D, K;
    double T;
    double *q, *k, *queue, *dq, *kn;
} nce_fd;

static double nce_loss(void *ctx) {
    nce_fd *n = ctx;
    double loss;
    pe_refd_infonce(n->N, n->D, n->K, n->q, n->k, n->queue, n->T, &loss, n->dq, n->kn);
    return loss;
}

/* max |fd - analytic| / max |analytic| over every coordinate of q: central
 * differences, h = 1e-5 (h^2 truncation against rounding), in double.
 * Bound 1e-8, test_kernels.c's for the nonlinear ops. */
static void test_fd_infonce(void) {
    nce_fd n = {6, 5, 12, 0.5, NULL, NULL, NULL, NULL, NULL};
    size_t nq = (size_t)n.N * n.D, nk = (size_t)n.K * n.D;
    n.q = zerod(nq), n.k = zerod(nq), n.queue = zerod(nk), n.dq = zerod(nq), n.kn = zerod(nq);
    for (size_t i = 0; i < nq; i++) n.q[i] = 2 * rnd() - 1, n.k[i] = 2 * rnd() - 1;
    for (size_t j = 0; j < (size_t)n.K; j++) {
        double *row = n.queue + j * n.D, s = 0;
        for (int c = 0; c < n.D; c++) row[c] = 2 * rnd() - 1, s += row[c] * row[c];
        for (int c = 0; c < n.D; c++) row[c] /= sqrt(s);
    }
    for (int pass = 0; pass < 2; pass++) {
        n.T = pass ? 0.1 : 0.5;
        double *dq = zerod(nq), loss;
        pe_refd_infonce(n.N, n.D, n.K, n.q, n.k, n.queue, n.T, &loss, dq, n.kn);
        double worst = 0, scale = 0, h = 1e-5;
        for (size_t i = 0; i < nq; i++) {
            double keep = n.q[i];
            n.q[i] = keep + h;
            double lp = nce_loss(&n);
            n.q[i] = keep - h;
            double lm = nce_loss(&n);
            n.q[i] = keep;
            worst = fmax(worst, fabs((lp - lm) / (2 * h) - dq[i]));
            scale = fmax(scale, fabs(dq[i]));
        }
        if (!(worst / scale < 1e-8)) fprintf(stderr, "  fd infonce T=%g: rel err %.3g\n", n.T, worst / scale);
        CHECK(worst / scale < 1e-8);
        free(dq);
    }
    free(n.kn), free(n.dq), free(n.queue), free(n.k), free(n.q);
}

/* the same bits on 1, 2 and 3 threads (kernels/cpu/cpu.h) */
static void test_threads(void) {
    int N = 256, D = 128, K = 1024;
    size_t nq = (size_t)N * D, n = 100003;
    float *q = randf(nq, -1, 1), *k = randf(nq, -1, 1), *queue = randf((size_t)K * D, -1, 1);
    float *src = randf(n, -1, 1), *dst0 = randf(n, -1, 1);
    normalise_rows(queue, (size_t)K, D);
    pe_backend *bs[3] = {b1, b2, b3};
    float *out[3], loss[3];
    for (int i = 0; i < 3; i++) {
        out[i] = zerof(2 * nq + n);
        CHECK_OK(bs[i]->infonce(bs[i], N, D, K, q, k, queue, 0.2f, &loss[i], out[i], out[i] + nq));
        memcpy(out[i] + 2 * nq, dst0, n * sizeof(float));
        CHECK_OK(bs[i]->ema(bs[i], n, src, out[i] + 2 * nq, 0.999));
    }
    for (int i = 1; i < 3; i++) {
        CHECK(memcmp(out[0], out[i], (2 * nq + n) * sizeof(float)) == 0);
        CHECK(memcmp(&loss[0], &loss[i], sizeof(float)) == 0);
    }
    for (int i = 0; i < 3; i++) free(out[i]);
    free(dst0), free(src), free(queue), free(k), free(q);
}

/* ---- the ema op and the key encoder ------------------------------------- */

static void test_ema(void) {
    size_t n = 40000;
    float *src = randf(n, -3, 3), *dst = randf(n, -3, 3), *keep = malloc(n * sizeof(float));
    float *ref = malloc(n * sizeof(float));
    memcpy(keep, dst, n * sizeof(float));
    /* m = 1 keeps dst, m = 0 copies src, bit for bit */
    CHECK_OK(b2->ema(b2, n, src, dst, 1.0));
    CHECK(memcmp(dst, keep, n * sizeof(float)) == 0);
    CHECK_OK(b2->ema(b2, n, src, dst, 0.0));
    CHECK(memcmp(dst, src, n * sizeof(float)) == 0);
    /* otherwise the reference's bits, and the float32 arithmetic of
     * PyTorch's k * m + q * (1. - m) with m = 0.999 */
    memcpy(dst, keep, n * sizeof(float));
    memcpy(ref, keep, n * sizeof(float));
    CHECK_OK(b2->ema(b2, n, src, dst, 0.999));
    pe_ref_ema(n, src, ref, 0.999);
    CHECK(memcmp(dst, ref, n * sizeof(float)) == 0);
    int same = 1;
    for (size_t i = 0; i < n; i++) {
        volatile float a = keep[i] * 0.999f, b = src[i] * 0.001f; /* (float)(1 - 0.999) */
        same &= dst[i] == a + b;
    }
    CHECK(same);
    free(ref), free(keep), free(dst), free(src);
}

static pe_model *small_model(pe_backend *be, uint64_t seed) {
    pe_model_cfg cfg;
    pe_model *m = NULL;
    pe_model_cfg_default(&cfg, PE_ARCH_RESNET18, 3, 16);
    cfg.width = 1.0 / 16;
    cfg.head_hidden = 32;
    cfg.head_out = 16;
    if (pe_model_init(&m, &cfg, be, seed) || pe_model_set_batch(m, 4)) {
        pe_model_free(m);
        return NULL;
    }
    return m;
}

/* The key copy is exact; the momentum update moves every parameter and
 * leaves running statistics and counters to the key's own forwards. */
static void test_key_encoder(void) {
    pe_model *q = small_model(b2, 1), *k = small_model(b2, 2);
    CHECK(q && k);
    if (!q || !k) goto out;
    size_t np = pe_model_nparams(q), nb = pe_model_nbuffers(q);
    float *x = randf((size_t)4 * 3 * 16 * 16, 0, 1);
    CHECK_OK(pe_model_forward(q, x, 1, 1)); /* running stats and counters move */
    CHECK(memcmp(pe_model_params(q), pe_model_params(k), np * sizeof(float)) != 0);
    CHECK_OK(pe_moco_key_copy(k, q, b2));
    CHECK(memcmp(pe_model_params(q), pe_model_params(k), np * sizeof(float)) == 0);
    CHECK(memcmp(pe_model_buffers(q), pe_model_buffers(k), nb * sizeof(float)) == 0);
    const pe_tensor_info *cnt = pe_model_find(k, "bn1.num_batches_tracked");
    CHECK(cnt && pe_model_counts(k)[cnt->off] == 1);
    if (!cnt) goto out;
    /* move the query, then update the key: parameters follow, buffers stay */
    float *qp = pe_model_params(q), *before = malloc(np * sizeof(float));
    for (size_t i = 0; i < np; i++) qp[i] += 1.0f;
    memcpy(before, pe_model_params(k), np * sizeof(float));
    CHECK_OK(pe_model_forward(q, x, 1, 1));
    CHECK_OK(pe_moco_momentum_update(k, q, b2, 0.75));
    int moved = 1;
    for (size_t i = 0; i < np; i++) {
        float a = before[i] * 0.75f, b = qp[i] * 0.25f;
        moved &= pe_model_params(k)[i] == a + b;
    }
    CHECK(moved);
    CHECK(memcmp(pe_model_buffers(q), pe_model_buffers(k), nb * sizeof(float)) != 0);
    CHECK(pe_model_counts(k)[cnt->off] == 1);
    CHECK_OK(pe_moco_momentum_update(k, q, b2, 0.0)); /* m = 0: the query's parameters */
    CHECK(memcmp(pe_model_params(q), pe_model_params(k), np * sizeof(float)) == 0);
    free(before);
    free(x);
out:
    pe_model_free(k);
    pe_model_free(q);
}

/* ---- the queue ---------------------------------------------------------- */

static void test_queue_init(void) {
    size_t K = 512;
    int D = 16;
    float *a = zerof(K * D), *b = zerof(K * D), *c = zerof(K * D);
    pe_moco_queue_init(a, K, D, 7);
    pe_moco_queue_init(b, K, D, 7);
    pe_moco_queue_init(c, K, D, 8);
    CHECK(memcmp(a, b, K * D * sizeof(float)) == 0); /* the seed decides */
    CHECK(memcmp(a, c, K * D * sizeof(float)) != 0);
    /* unit rows; as directions of standard normal vectors, each coordinate
     * has mean 0 and variance 1/D: 8192 values, so the sample mean is
     * within 4.5 sigma = 4.5 / sqrt(D 8192) = 0.0124 */
    double worst = 0, sum = 0, sq = 0;
    for (size_t i = 0; i < K; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += (double)a[i * D + j] * a[i * D + j];
        worst = fmax(worst, fabs(s - 1));
    }
    for (size_t i = 0; i < K * D; i++) sum += a[i], sq += (double)a[i] * a[i];
    CHECK(worst < 1e-6);
    CHECK(fabs(sum / (double)(K * D)) < 0.0124);
    CHECK(fabs(sq / (double)(K * D) - 1.0 / D) < 1e-6);
    /* a shorter queue from the same seed is the longer one's first rows */
    pe_moco_queue_init(b, K / 2, D, 7);
    CHECK(memcmp(a, b, K / 2 * D * sizeof(float)) == 0);
    free(c), free(b), free(a);
}

/* FIFO: batch t overwrites rows (t mod K/n) n .. + n - 1, the oldest, and
 * the pointer wraps to 0 after K/n batches. */
static void test_queue_fifo(void) {
    size_t K = 12;
    int D = 3, n = 4;
    float *queue = zerof(K * D), keys[12];
    uint64_t ptr = 0;
    for (int t = 0; t < 7; t++) {
        for (int i = 0; i < n * D; i++) keys[i] = (float)(100 * t + i);
        uint64_t before = ptr;
        CHECK_OK(pe_moco_enqueue(b2, queue, K, D, keys, n, &ptr));
        CHECK(ptr == (before + (uint64_t)n) % K);
        CHECK(before == (uint64_t)(t % 3) * (uint64_t)n);
        CHECK(memcmp(queue + before * D, keys, sizeof(float) * (size_t)(n * D)) == 0);
    }
    CHECK(ptr == 4); /* 7 batches of 4 in 12 rows */
    /* after 7 batches the queue holds batches 6, 4, 5 (rows 0, 4, 8) */
    CHECK(queue[0] == 600 && queue[4 * D] == 400 && queue[8 * D] == 500);
    CHECK(queue[K * D - 1] == 500 + n * D - 1);
    free(queue);
}

/* ---- three steps against PyTorch ---------------------------------------- */

typedef struct fx {
    pe_st *base, *moco;
} fx;

static float *fx_f32(const pe_st *f, const char *name, size_t *n) {
    const pe_st_tensor *t = pe_st_get(f, name);
    if (!t) {
        fprintf(stderr, "  fixture lacks %s\n", name);
        return NULL;
    }
    float *v = malloc((t->numel ? t->numel : 1) * sizeof *v);
    if (v && pe_st_to_f32(t, v, t->numel)) {
        free(v);
        return NULL;
    }
    if (n) *n = t->numel;
    return v;
}

/* mode 0: |d| <= 1e-5 + 1e-4 |x| elementwise; mode 1: 1e-5 + 1e-4 max|x| */
static int compare(const pe_st *f, const char *name, const float *got, size_t n, int mode) {
    size_t m = 0;
    float *want = fx_f32(f, name, &m);
    if (!want || m != n) {
        fprintf(stderr, "  %s: missing or %zu elements, want %zu\n", name, m, n);
        free(want);
        return 0;
    }
    double maxabs = 0, worst = 0, ratio = 0;
    size_t bad = 0, wi = 0;
    for (size_t i = 0; i < n; i++) maxabs = fmax(maxabs, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        double tol = 1e-5 + 1e-4 * (mode ? maxabs : fabs(want[i]));
        if (!(d <= tol)) bad++;
        if (!(d <= worst)) worst = d, wi = i;
        ratio = fmax(ratio, d / tol);
    }
    if (verbose) fprintf(stderr, "    %-44s worst %.2f of the tolerance\n", name, ratio);
    if (bad)
        fprintf(stderr, "  %s: %zu of %zu elements off; worst |d| %.3g at %zu (got %.9g want %.9g)\n",
                name, bad, n, worst, wi, (double)got[wi], (double)want[wi]);
    free(want);
    return bad == 0;
}

/* (final - init) of got against the fixture's, relative L2 error <= 1e-3 */
static int compare_update(const pe_st *f, const char *name, const float *got, const float *init,
                          size_t n) {
    size_t m = 0;
    float *want = fx_f32(f, name, &m);
    if (!want || m != n) {
        free(want);
        return 0;
    }
    double num = 0, den = 0;
    for (size_t j = 0; j < n; j++) {
        double dw = (double)want[j] - init[j], dg = (double)got[j] - init[j];
        num += (dg - dw) * (dg - dw);
        den += dw * dw;
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (verbose) fprintf(stderr, "    %-44s update rel L2 error %.2g\n", name, rel);
    if (!(rel <= 1e-3)) fprintf(stderr, "  %s: update differs, relative L2 error %.3g\n", name, rel);
    free(want);
    return rel <= 1e-3;
}

static int meta_int(const pe_st *f, const char *k) {
    const char *v = pe_st_meta(f, k);
    return v ? atoi(v) : -1;
}

static void test_fixture(void) {
    fx F = {0};
    pe_model *q = NULL, *k = NULL;
    float *x = NULL, *queue = NULL, *init = NULL, *dz = NULL, *kn = NULL, *s1 = NULL, *s2 = NULL;
    int rc = pe_st_read_file(&F.base, PE_SRCDIR "/tests/ref/fixture_resnet_tiny.safetensors");
    if (!rc) rc = pe_st_read_file(&F.moco, PE_SRCDIR "/tests/ref/fixture_moco.safetensors");
    CHECK_OK(rc);
    if (rc) goto out;
    const char *w = pe_st_meta(F.moco, "width"), *T_s = pe_st_meta(F.moco, "temperature");
    const char *m_s = pe_st_meta(F.moco, "moco_momentum");
    int B = meta_int(F.moco, "batch"), H = meta_int(F.moco, "head_hidden"), D = meta_int(F.moco, "head_out");
    int K = meta_int(F.moco, "queue"), steps = meta_int(F.moco, "steps");
    int C = meta_int(F.moco, "channels"), S = meta_int(F.moco, "size");
    CHECK(w && T_s && m_s && B > 0 && H > 0 && D > 0 && K > 0 && steps > 0 && C > 0 && S > 0);
    if (!w || !T_s || !m_s || B <= 0 || H <= 0 || D <= 0 || K <= 0 || steps <= 0) goto out;
    pe_model_cfg cfg;
    pe_model_cfg_default(&cfg, PE_ARCH_RESNET18, C, S);
    const char *slash = strchr(w, '/'); /* "1/16" */
    cfg.width = slash ? strtod(w, NULL) / strtod(slash + 1, NULL) : strtod(w, NULL);
    cfg.head_hidden = H;
    cfg.head_out = D;
    float T = strtof(T_s, NULL);
    double mom = strtod(m_s, NULL);
    CHECK_OK(pe_model_init(&q, &cfg, b2, 1));
    CHECK_OK(pe_model_init(&k, &cfg, b2, 2));
    if (!q || !k || pe_model_set_batch(q, B) || pe_model_set_batch(k, B)) goto out;
    size_t np = pe_model_nparams(q);
    /* init: the encoder from the base fixture, the head from this one */
    for (int i = 0; i < pe_model_ntensors(q); i++) {
        const pe_tensor_info *t = pe_model_tensor(q, i);
        char name[96];
        snprintf(name, sizeof name, "init.%s", t->name);
        const pe_st_tensor *v = pe_st_get(t->head ? F.moco : F.base, name);
        CHECK(v != NULL);
        if (!v) goto out;
        if (t->kind == PE_T_COUNT) {
            memcpy(&pe_model_counts(q)[t->off], v->data, 8);
            continue;
        }
        float *dst = (t->kind == PE_T_RUNNING ? pe_model_buffers(q) : pe_model_params(q)) + t->off;
        CHECK(v->numel == t->n && pe_st_to_f32(v, dst, t->n) == 0);
    }
    if (getenv("PE_FIXTURE_PERTURB")) {
        const pe_tensor_info *t = pe_model_tensor(q, 0);
        for (size_t j = 0; j < t->n; j++) pe_model_params(q)[t->off + j] *= 1.001f;
    }
    CHECK_OK(pe_moco_key_copy(k, q, b2));
    size_t nx = 0, nq = 0;
    x = fx_f32(F.base, "input", &nx);
    queue = fx_f32(F.moco, "queue.init", &nq);
    CHECK(x && queue && nx == (size_t)2 * B * C * S * S && nq == (size_t)K * D);
    if (!x || !queue || nx != (size_t)2 * B * C * S * S || nq != (size_t)K * D) goto out;
    init = malloc(np * sizeof *init);
    dz = zerof((size_t)B * D), kn = zerof((size_t)B * D), s1 = zerof(np), s2 = zerof(np);
    memcpy(init, pe_model_params(q), np * sizeof *init);
    uint64_t ptr = 0;
    float lr = 1e-3f;
    for (int t = 1; t <= steps; t++) {
        float loss = 0;
        char name[96];
        CHECK_OK(pe_model_forward(q, x, 1, 1));
        CHECK_OK(pe_model_forward(k, x + nx / 2, 1, 1));
        CHECK_OK(b2->infonce(b2, B, D, K, pe_model_z(q), pe_model_z(k), queue, T, &loss, dz, kn));
        snprintf(name, sizeof name, "loss.%d", t);
        CHECK(compare(F.moco, name, &loss, 1, 0));
        if (t == 1) {
            CHECK(compare(F.moco, "zq", pe_model_z(q), (size_t)B * D, 0));
            CHECK(compare(F.moco, "zk", pe_model_z(k), (size_t)B * D, 0));
            CHECK(compare(F.moco, "dq", dz, (size_t)B * D, 1));
        }
        CHECK_OK(pe_model_backward(q, dz));
        if (t == 1)
            for (int i = 0; i < pe_model_ntensors(q); i++) {
                const pe_tensor_info *ti = pe_model_tensor(q, i);
                if (ti->kind != PE_T_PARAM) continue;
                snprintf(name, sizeof name, "grad.%s", ti->name);
                CHECK(compare(F.moco, name, pe_model_grads(q) + ti->off, ti->n, 1));
            }
        CHECK_OK(b2->adam(b2, np, pe_model_params(q), pe_model_grads(q), s1, s2, lr, 0.9f, 0.999f,
                          1e-8f, 1e-6f, t));
        CHECK_OK(pe_moco_momentum_update(k, q, b2, mom));
        CHECK_OK(pe_moco_enqueue(b2, queue, (size_t)K, D, kn, B, &ptr));
    }
    CHECK((int)ptr == meta_int(F.moco, "final_ptr"));
    CHECK(compare(F.moco, "final.queue", queue, (size_t)K * D, 0));
    pe_model *models[2] = {q, k};
    const char *which[2] = {"query", "key"};
    for (int w2 = 0; w2 < 2; w2++)
        for (int i = 0; i < pe_model_ntensors(q); i++) {
            const pe_tensor_info *t = pe_model_tensor(q, i);
            pe_model *m = models[w2];
            char name[128];
            snprintf(name, sizeof name, "final.%s.%s", which[w2], t->name);
            if (t->kind == PE_T_COUNT) {
                const pe_st_tensor *v = pe_st_get(F.moco, name);
                int64_t c = -1;
                if (v) memcpy(&c, v->data, 8);
                CHECK(c == pe_model_counts(m)[t->off]);
            } else if (t->kind == PE_T_RUNNING) {
                CHECK(compare(F.moco, name, pe_model_buffers(m) + t->off, t->n, 0));
            } else {
                CHECK(compare_update(F.moco, name, pe_model_params(m) + t->off, init + t->off, t->n));
            }
        }
out:
    free(s2), free(s1), free(kn), free(dz), free(init), free(queue), free(x);
    pe_model_free(k);
    pe_model_free(q);
    pe_st_close(F.moco);
    pe_st_close(F.base);
}

int main(void) {
    verbose = getenv("PE_TEST_VERBOSE") != NULL;
    b1 = pe_backend_cpu(1);
    b2 = pe_backend_cpu(2);
    b3 = pe_backend_cpu(3);
    if (!b1 || !b2 || !b3) {
        fprintf(stderr, "test_moco: cannot create the CPU backend\n");
        return 1;
    }
    RUN(test_infonce_hand);
    RUN(test_infonce_vs_ref);
    RUN(test_infonce_stable);
    RUN(test_fd_infonce);
    RUN(test_threads);
    RUN(test_ema);
    RUN(test_key_encoder);
    RUN(test_queue_init);
    RUN(test_queue_fifo);
    RUN(test_fixture);
    b3->destroy(b3);
    b2->destroy(b2);
    b1->destroy(b1);
    return CHECK_DONE();
}
