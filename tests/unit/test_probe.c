/*
 * test_probe.c - pe-eval's probes and report numbers (lib/probe.h): the
 * linear probe's objective against a naive oracle and central finite
 * differences; both probes on separable Gaussian clusters (perfect train
 * and test accuracy, a falling loss, a small gradient at the result,
 * bit-identical reruns); Wilson intervals against values computed apart
 * (roots of the interval's quadratic, numpy); and the attack report of a
 * hand-worked example (ranks, ties, class means, cosines, ASR, CA).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "pe.h"
#include "probe.h"

static double urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(*s >> 11) + 0.5) * 0x1.0p-53;
}

static double gauss(uint64_t *s) {
    double u = urand(s), v = urand(s);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* k clusters around random unit centres in d dims, noise sigma per
 * dimension, rows L2-normalised as pe-eval's features are; labels cycle
 * through the classes. */
static void clusters(uint64_t seed, size_t n, int d, int k, double sigma, float *x, int32_t *y) {
    uint64_t s = 12345; /* the centres are the same for every call */
    double *c = malloc((size_t)k * d * sizeof *c);
    for (int i = 0; i < k; i++) {
        double nn = 0;
        for (int j = 0; j < d; j++) {
            c[i * d + j] = gauss(&s);
            nn += c[i * d + j] * c[i * d + j];
        }
        for (int j = 0; j < d; j++) c[i * d + j] /= sqrt(nn);
    }
    s = seed;
    for (size_t i = 0; i < n; i++) {
        int cl = (int)(i % (size_t)k);
        double nn = 0, v[256];
        for (int j = 0; j < d; j++) {
            v[j] = c[cl * d + j] + sigma * gauss(&s);
            nn += v[j] * v[j];
        }
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(v[j] / sqrt(nn));
        y[i] = cl;
    }
    free(c);
}

/* The objective written the obvious way, for comparison. */
static double oracle_loss(const double *w, const float *x, const int32_t *y, size_t n, int d,
                          int k, double l2, double *g) {
    double loss = 0, z[64], p[64];
    memset(g, 0, (size_t)k * (d + 1) * sizeof *g);
    for (size_t i = 0; i < n; i++) {
        double zmax = -1e300, s = 0;
        for (int c = 0; c < k; c++) {
            z[c] = w[(size_t)k * d + c];
            for (int j = 0; j < d; j++) z[c] += w[c * d + j] * x[i * d + j];
            if (z[c] > zmax) zmax = z[c];
        }
        for (int c = 0; c < k; c++) s += exp(z[c] - zmax);
        for (int c = 0; c < k; c++) p[c] = exp(z[c] - zmax) / s;
        loss -= log(p[y[i]]);
        for (int c = 0; c < k; c++) {
            double r = (p[c] - (c == y[i])) / (double)n;
            for (int j = 0; j < d; j++) g[c * d + j] += r * x[i * d + j];
            g[(size_t)k * d + c] += r;
        }
    }
    loss /= (double)n;
    for (int j = 0; j < k * d; j++) {
        loss += 0.5 * l2 * w[j] * w[j];
        g[j] += l2 * w[j];
    }
    return loss;
}

static double norm(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i] * v[i];
    return sqrt(s);
}

static void test_linear_objective(void) {
    enum { N = 7, D = 5, K = 3 };
    uint64_t s = 9;
    float x[N * D];
    int32_t y[N];
    double w[K * (D + 1)], g[K * (D + 1)], go[K * (D + 1)], wp[K * (D + 1)];
    for (int i = 0; i < N * D; i++) x[i] = (float)(urand(&s) * 2 - 1);
    for (int i = 0; i < N; i++) y[i] = (int32_t)(i % K);
    for (int i = 0; i < K * (D + 1); i++) w[i] = urand(&s) - 0.5;
    double f = pe_probe_linear_loss(w, x, y, N, D, K, 0.3, g);
    double fo = oracle_loss(w, x, y, N, D, K, 0.3, go);
    CHECK(fabs(f - fo) < 1e-12);
    double worst = 0, worst_fd = 0;
    for (int i = 0; i < K * (D + 1); i++) {
        worst = fmax(worst, fabs(g[i] - go[i]));
        /* central differences: error O(h^2) ~ 1e-10 at h = 1e-5, far
         * below the 1e-7 allowed, while a wrong term is off by ~1e-2 */
        const double h = 1e-5;
        memcpy(wp, w, sizeof wp);
        wp[i] += h;
        double fp = pe_probe_linear_loss(wp, x, y, N, D, K, 0.3, NULL);
        wp[i] -= 2 * h;
        double fm = pe_probe_linear_loss(wp, x, y, N, D, K, 0.3, NULL);
        worst_fd = fmax(worst_fd, fabs((fp - fm) / (2 * h) - g[i]));
    }
    CHECK(worst < 1e-12);
    CHECK(worst_fd < 1e-7);
    /* the bias is not penalised: with W = 0 the penalty vanishes */
    for (int i = 0; i < K * D; i++) w[i] = 0;
    f = pe_probe_linear_loss(w, x, y, N, D, K, 5.0, g);
    CHECK(fabs(f - oracle_loss(w, x, y, N, D, K, 0.0, go)) < 1e-12);
}

static int accuracy(const float *scores, const int32_t *y, size_t n, int k) {
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) ok += pe_argmax(scores + i * k, k) == y[i];
    return (int)ok;
}

enum { NTR = 250, NTE = 100, DIM = 32, NCL = 5 };

static void test_linear_separates(void) {
    float *xtr = malloc(NTR * DIM * sizeof *xtr), *xte = malloc(NTE * DIM * sizeof *xte);
    float *s1 = malloc(NTE * NCL * sizeof *s1), *s2 = malloc(NTE * NCL * sizeof *s2);
    float *str = malloc(NTR * NCL * sizeof *str);
    int32_t ytr[NTR], yte[NTE];
    clusters(1, NTR, DIM, NCL, 0.15, xtr, ytr);
    clusters(2, NTE, DIM, NCL, 0.15, xte, yte);
    pe_probe_opts o;
    pe_probe_opts_default(&o);
    CHECK(o.kind == PE_PROBE_LINEAR && o.l2 == 1e-4 && o.iters == 200 && o.memory == 10 &&
          o.gtol == 1e-6);
    pe_probe *p = NULL, *q = NULL;
    pe_probe_stats st, st2;
    CHECK_OK(pe_probe_train(&p, &o, NULL, xtr, ytr, NTR, DIM, NCL, &st));
    if (!p) goto out;
    CHECK(fabs(st.loss0 - log((double)NCL)) < 1e-12); /* zero weights: uniform */
    CHECK(st.loss < 0.5 * st.loss0);
    CHECK(st.iters >= 1 && st.iters <= 200);
    CHECK(st.gnorm < 1e-4);
    CHECK_OK(pe_probe_scores(p, xtr, NTR, str));
    CHECK_OK(pe_probe_scores(p, xte, NTE, s1));
    CHECK(accuracy(str, ytr, NTR, NCL) == NTR);
    CHECK(accuracy(s1, yte, NTE, NCL) == NTE);
    /* the gradient at the result, computed apart, is small; the reported
     * loss is the objective there */
    size_t np;
    const double *w = pe_probe_linear_params(p, &np);
    CHECK(np == (size_t)NCL * (DIM + 1));
    double *g = malloc(np * sizeof *g);
    double f = oracle_loss(w, xtr, ytr, NTR, DIM, NCL, o.l2, g);
    CHECK(fabs(f - st.loss) < 1e-10);
    CHECK(norm(g, np) < 1e-4);
    CHECK(fabs(norm(g, np) - st.gnorm) < 1e-8);
    /* fewer iterations stop higher: the loss falls with the iterations */
    pe_probe_opts o3 = o;
    o3.iters = 3;
    pe_probe_stats st3;
    CHECK_OK(pe_probe_train(&q, &o3, NULL, xtr, ytr, NTR, DIM, NCL, &st3));
    CHECK(st3.iters == 3 && st3.loss < st3.loss0 && st3.loss > st.loss);
    pe_probe_free(q);
    q = NULL;
    /* a rerun is bit-identical */
    CHECK_OK(pe_probe_train(&q, &o, NULL, xtr, ytr, NTR, DIM, NCL, &st2));
    if (q) {
        size_t nq;
        const double *wq = pe_probe_linear_params(q, &nq);
        CHECK(nq == np && !memcmp(w, wq, np * sizeof *w));
        CHECK_OK(pe_probe_scores(q, xte, NTE, s2));
        CHECK(!memcmp(s1, s2, NTE * NCL * sizeof *s1));
        CHECK(st2.iters == st.iters && st2.loss == st.loss);
    }
    free(g);
out:
    pe_probe_free(p);
    pe_probe_free(q);
    free(xtr);
    free(xte);
    free(s1);
    free(s2);
    free(str);
}

static void test_bad_inputs(void) {
    float x[4] = {1, 0, 0, 1};
    int32_t y[2] = {0, 2};
    pe_probe_opts o;
    pe_probe_opts_default(&o);
    pe_probe *p = (pe_probe *)&o;
    CHECK_RC(pe_probe_train(&p, &o, NULL, x, y, 2, 2, 2, NULL), PE_EUSAGE); /* label 2 of 2 */
    CHECK(p == NULL);
    CHECK_RC(pe_probe_train(&p, &o, NULL, x, y, 0, 2, 3, NULL), PE_EUSAGE);
    CHECK_RC(pe_probe_train(&p, &o, NULL, x, y, 2, 2, 1, NULL), PE_EUSAGE);
    o.kind = PE_PROBE_MLP;
    CHECK_RC(pe_probe_train(&p, &o, NULL, x, y, 2, 2, 3, NULL), PE_EUSAGE); /* no backend */
}

static void test_mlp_separates(void) {
    float *xtr = malloc(NTR * DIM * sizeof *xtr), *xte = malloc(NTE * DIM * sizeof *xte);
    float *s1 = malloc(NTE * NCL * sizeof *s1), *s2 = malloc(NTE * NCL * sizeof *s2);
    float *str = malloc(NTR * NCL * sizeof *str);
    int32_t ytr[NTR], yte[NTE];
    clusters(3, NTR, DIM, NCL, 0.15, xtr, ytr);
    clusters(4, NTE, DIM, NCL, 0.15, xte, yte);
    pe_backend *b1 = pe_backend_cpu(1), *b2 = pe_backend_cpu(2);
    pe_probe_opts o;
    pe_probe_opts_default(&o);
    CHECK(o.epochs == 500 && o.batch == 64 && o.lr == 1e-4 && o.hidden[0] == 512 &&
          o.hidden[1] == 256 && o.dropout == 0.5f && o.seed == 1 && !o.shuffle);
    o.kind = PE_PROBE_MLP;
    /* a few epochs at a larger step than the pinned 1e-4 */
    o.epochs = 40;
    o.lr = 1e-3;
    pe_probe *p = NULL, *q = NULL;
    pe_probe_stats st, st2;
    if (!b1 || !b2) {
        CHECK(!"backend");
        goto out;
    }
    CHECK_OK(pe_probe_train(&p, &o, b1, xtr, ytr, NTR, DIM, NCL, &st));
    if (!p) goto out;
    CHECK(st.iters == 40 && st.loss < 0.2 * log((double)NCL));
    CHECK(pe_probe_linear_params(p, NULL) == NULL);
    CHECK_OK(pe_probe_scores(p, xtr, NTR, str));
    CHECK_OK(pe_probe_scores(p, xte, NTE, s1));
    CHECK(accuracy(str, ytr, NTR, NCL) == NTR);
    CHECK(accuracy(s1, yte, NTE, NCL) == NTE);
    /* the same seed on two threads: the same probe, bit for bit */
    CHECK_OK(pe_probe_train(&q, &o, b2, xtr, ytr, NTR, DIM, NCL, &st2));
    if (q) {
        CHECK_OK(pe_probe_scores(q, xte, NTE, s2));
        CHECK(!memcmp(s1, s2, NTE * NCL * sizeof *s1));
        CHECK(st2.loss == st.loss);
        pe_probe_free(q);
        q = NULL;
    }
    /* another seed, or shuffling, gives another probe */
    o.seed = 2;
    CHECK_OK(pe_probe_train(&q, &o, b1, xtr, ytr, NTR, DIM, NCL, &st2));
    if (q) {
        CHECK_OK(pe_probe_scores(q, xte, NTE, s2));
        CHECK(memcmp(s1, s2, NTE * NCL * sizeof *s1) != 0);
        pe_probe_free(q);
        q = NULL;
    }
    /* dropout is applied: without it the probe differs */
    o.seed = 1;
    o.dropout = 0;
    CHECK_OK(pe_probe_train(&q, &o, b1, xtr, ytr, NTR, DIM, NCL, &st2));
    if (q) {
        CHECK_OK(pe_probe_scores(q, xte, NTE, s2));
        CHECK(memcmp(s1, s2, NTE * NCL * sizeof *s1) != 0);
        pe_probe_free(q);
        q = NULL;
    }
    o.dropout = 0.5f;
    o.shuffle = 1;
    CHECK_OK(pe_probe_train(&q, &o, b1, xtr, ytr, NTR, DIM, NCL, &st2));
    if (q) {
        CHECK_OK(pe_probe_scores(q, xte, NTE, s2));
        CHECK(memcmp(s1, s2, NTE * NCL * sizeof *s1) != 0);
        CHECK(accuracy(s2, yte, NTE, NCL) == NTE);
    }
out:
    pe_probe_free(p);
    pe_probe_free(q);
    if (b1) b1->destroy(b1);
    if (b2) b2->destroy(b2);
    free(xtr);
    free(xte);
    free(s1);
    free(s2);
    free(str);
}

/* Values: the roots of (n + z^2) p^2 - (2 n p^ + z^2) p + n p^2 = 0 by
 * numpy.roots, not the closed form pe_wilson uses. */
static void test_wilson(void) {
    static const struct { uint64_t k, n; double lo, hi; } v[] = {
        {0, 10, 0, 0.277532799862889},
        {5, 10, 0.236593090512564, 0.763406909487436},
        {10, 10, 0.72246720013711, 1},
        {1, 2, 0.0945312057342307, 0.905468794265769},
        {1, 3, 0.0614919447203962, 0.792340399197952},
        {3, 7, 0.15821985525147, 0.749541635472343},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        double lo, hi;
        pe_wilson(v[i].k, v[i].n, 1.959963984540054, &lo, &hi);
        CHECK(fabs(lo - v[i].lo) < 1e-12 && fabs(hi - v[i].hi) < 1e-12);
        if (!(fabs(lo - v[i].lo) < 1e-12 && fabs(hi - v[i].hi) < 1e-12))
            fprintf(stderr, "  %d of %d: [%.15g, %.15g]\n", (int)v[i].k, (int)v[i].n, lo, hi);
    }
    double lo, hi;
    pe_wilson(0, 0, 1.96, &lo, &hi);
    CHECK(isnan(lo) && isnan(hi));
}

static void test_rank_and_means(void) {
    float s[4] = {1, 3, 1, 0};
    CHECK(pe_argmax(s, 4) == 1);
    CHECK(pe_score_rank(s, 4, 1) == 1);
    CHECK(pe_score_rank(s, 4, 0) == 2); /* ties go to the lower id */
    CHECK(pe_score_rank(s, 4, 2) == 3);
    CHECK(pe_score_rank(s, 4, 3) == 4);
    float t[3] = {2, 2, 2};
    CHECK(pe_argmax(t, 3) == 0 && pe_score_rank(t, 3, 0) == 1 && pe_score_rank(t, 3, 2) == 3);
    /* class means: plain means, an empty class is zero, a stray label skipped */
    float x[10] = {1, 0, 0, 1, 3, 4, 5, 5, 9, 9};
    int32_t y[5] = {0, 0, 2, -1, 7};
    float m[6];
    CHECK_OK(pe_class_means(x, y, 5, 2, 3, m));
    CHECK(m[0] == 0.5f && m[1] == 0.5f && m[2] == 0 && m[3] == 0 && m[4] == 3 && m[5] == 4);
    CHECK(fabs(pe_cosine(x + 4, m + 4, 2) - 1) < 1e-12);
    CHECK(fabs(pe_cosine(x, m, 2) - sqrt(0.5)) < 1e-12);
    CHECK(isnan(pe_cosine(x, m + 2, 2)));
}

/* Four test rows, three classes, two of the rows are targets of class 2:
 *   row  scores     label  target  argmax
 *   0    2, 1, 0    0      -       0     clean, right
 *   1    0, 3, 1    1      2       1     miss, class 2 ranks 2nd
 *   2    1, 1, 0    1      -       0     clean, wrong (the tie goes to 0)
 *   3    0, 0, 5    0      2       2     hit, rank 1
 * CA = 1/2, ASR = 1/2 with Wilson [0.0945, 0.9055]. Class means (0: (1,1),
 * 1: (2,0), 2: (0,3)); row 1's feature (1,0), row 3's (0.6,0.8):
 * cos(row 1, mean 1) = 1, cos(row 1, mean 2) = 0, cos(row 3, mean 0) =
 * 1.4/sqrt(2), cos(row 3, mean 2) = 0.8. */
static void test_attack_eval(void) {
    float sc[12] = {2, 1, 0, 0, 3, 1, 1, 1, 0, 0, 0, 5};
    float f[8] = {1, 0, 1, 0, 0, 1, 0.6f, 0.8f};
    int32_t lab[4] = {0, 1, 1, 0};
    float means[6] = {1, 1, 2, 0, 0, 3};
    pe_target t[2] = {{1, 2}, {3, 2}};
    pe_target_result r[2];
    pe_attack_summary s;
    CHECK_OK(pe_attack_eval(sc, f, lab, 4, 2, 3, means, t, 2, r, &s));
    CHECK(s.clean == 2 && s.clean_correct == 1 && s.ca == 0.5);
    CHECK(s.targets == 2 && s.hits == 1 && s.asr == 0.5);
    CHECK(fabs(s.asr_lo - 0.0945312057342307) < 1e-12 && fabs(s.asr_hi - 0.905468794265769) < 1e-12);
    CHECK(r[0].truth == 1 && r[0].target == 2 && r[0].pred == 1 && r[0].rank == 2);
    CHECK(fabs(r[0].cos_true - 1) < 1e-12 && fabs(r[0].cos_target) < 1e-12);
    CHECK(r[1].truth == 0 && r[1].target == 2 && r[1].pred == 2 && r[1].rank == 1);
    CHECK(fabs(r[1].cos_true - 1.4 / sqrt(2)) < 1e-7 && fabs(r[1].cos_target - 0.8) < 1e-7);
    /* no targets: every row is clean, the ASR is undefined */
    CHECK_OK(pe_attack_eval(sc, f, lab, 4, 2, 3, means, t, 0, r, &s));
    CHECK(s.clean == 4 && s.clean_correct == 2 && s.targets == 0 && isnan(s.asr) && isnan(s.asr_lo));
    /* a row twice, a row out of range, a class out of range */
    pe_target twice[2] = {{1, 2}, {1, 0}}, far[1] = {{4, 2}}, bad[1] = {{1, 3}};
    CHECK_RC(pe_attack_eval(sc, f, lab, 4, 2, 3, means, twice, 2, r, &s), PE_EUSAGE);
    CHECK_RC(pe_attack_eval(sc, f, lab, 4, 2, 3, means, far, 1, r, &s), PE_EUSAGE);
    CHECK_RC(pe_attack_eval(sc, f, lab, 4, 2, 3, means, bad, 1, r, &s), PE_EUSAGE);
}

int main(void) {
    RUN(test_linear_objective);
    RUN(test_linear_separates);
    RUN(test_bad_inputs);
    RUN(test_mlp_separates);
    RUN(test_wilson);
    RUN(test_rank_and_means);
    RUN(test_attack_eval);
    return CHECK_DONE();
}
