/*
 * test_embed.c - pe-audit's embedding scans on synthetic features: the
 * exact nearest neighbours (pe_knn_graph, blocked GEMMs on the CPU
 * backend) and the link components (pe_knn_components) against a
 * brute-force oracle that compares every pair in double and sorts, with
 * ties, duplicated rows, sets larger than one block of products and
 * clusters larger than k; then the scores (outlier, mislabel) and the
 * derived thresholds against direct computations.
 *
 * Not for: features from an encoder (tests/cli/audit-embed.sh runs
 * pe-audit --encoder on a trained one) or the report.
 */
#include "audit.h"
#include "backend.h"
#include "check.h"
#include "knn.h"
#include "pe.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A small deterministic generator (the tests need no particular stream). */
static uint64_t lcg;
static double uni(void) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg >> 11) / 9007199254740992.0;
}

static void normalise(float *x, size_t n, int d) {
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
        const float den = (float)fmax(sqrt(s), 1e-12);
        for (int j = 0; j < d; j++) x[i * d + j] /= den;
    }
}

/* Rows with components uniform in [-1, 1] (or [0, 1] when positive, as
 * features after a ReLU are), normalised. */
static float *random_rows(size_t n, int d, int positive) {
    float *x = malloc(n * (size_t)d * sizeof *x);
    for (size_t i = 0; i < n * (size_t)d; i++) x[i] = (float)(positive ? uni() : 2 * uni() - 1);
    normalise(x, n, d);
    return x;
}

typedef struct item {
    double s;
    uint32_t j;
} item;

static int desc(const void *a, const void *b) {
    const item *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? 1 : -1;
    return (x->j > y->j) - (x->j < y->j);
}

static double dot(const float *a, const float *b, int d) {
    double s = 0;
    for (int q = 0; q < d; q++) s += (double)a[q] * (double)b[q];
    return s;
}

/* The k nearest other rows of row i: every similarity, sorted. */
static void oracle_row(const float *x, size_t n, int d, size_t i, int k, uint32_t *nbr, double *sim) {
    item *v = malloc(n * sizeof *v);
    size_t m = 0;
    for (size_t j = 0; j < n; j++)
        if (j != i) v[m++] = (item){dot(x + i * d, x + j * d, d), (uint32_t)j};
    qsort(v, m, sizeof *v, desc);
    for (int t = 0; t < k; t++) {
        nbr[t] = v[t].j;
        sim[t] = v[t].s;
    }
    free(v);
}

static uint32_t find(uint32_t *p, uint32_t i) {
    while (p[i] != i) i = p[i];
    return i;
}

/* Components of the pairs at or above link: every pair, in double. */
static void oracle_comp(const float *x, size_t n, int d, double link, uint32_t *comp) {
    for (size_t i = 0; i < n; i++) comp[i] = (uint32_t)i;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (dot(x + i * d, x + j * d, d) >= link) {
                uint32_t a = find(comp, (uint32_t)i), b = find(comp, (uint32_t)j);
                if (a != b) comp[a > b ? a : b] = a < b ? a : b;
            }
    for (size_t i = 0; i < n; i++) comp[i] = find(comp, (uint32_t)i);
}

/* pe_knn_graph against the oracle on rows `check` (all when 0). */
static int knn_matches(pe_backend *be, const float *x, size_t n, int d, int k, size_t check) {
    uint32_t *nbr = malloc((n * (size_t)k + 1) * sizeof *nbr), on[PE_AUDIT_MAX_K];
    double *sim = malloc((n * (size_t)k + 1) * sizeof *sim), os[PE_AUDIT_MAX_K];
    int ok = pe_knn_graph(be, x, n, d, k, 0, nbr, sim, NULL) == 0;
    const size_t step = check && check < n ? n / check : 1;
    for (size_t i = 0; ok && i < n; i += step) {
        oracle_row(x, n, d, i, k, on, os);
        for (int t = 0; t < k && ok; t++) {
            ok = nbr[i * k + t] == on[t] && sim[i * k + t] == os[t];
            if (!ok)
                fprintf(stderr, "  n %zu d %d k %d: row %zu neighbour %d: %u (%.17g), want %u (%.17g)\n",
                        n, d, k, i, t, nbr[i * k + t], sim[i * k + t], on[t], os[t]);
        }
    }
    free(nbr);
    free(sim);
    return ok;
}

static void test_knn_random(void) {
    pe_backend *be = pe_backend_cpu(2);
    static const size_t ns[] = {2, 3, 17, 200, 1000};
    static const int ds[] = {1, 7, 64};
    lcg = 1;
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof ds / sizeof *ds; b++) {
            const size_t n = ns[a];
            const int d = ds[b];
            float *x = random_rows(n, d, b % 2);
            /* d = 1: every row is +1 or -1, so similarities tie: the
             * order is then by index */
            const int ks[] = {1, 5, 10, (int)(n - 1)};
            for (int c = 0; c < 4; c++) {
                int k = ks[c] < (int)n - 1 ? ks[c] : (int)n - 1;
                if (k > PE_AUDIT_MAX_K) k = PE_AUDIT_MAX_K;
                CHECK(knn_matches(be, x, n, d, k, 0));
            }
            free(x);
        }
    be->destroy(be);
}

/* More rows than one block of products (PE_KNN_BLOCK / n rows a block),
 * with every row duplicated once (similarity 1, the twin first). */
static void test_knn_blocks(void) {
    pe_backend *be = pe_backend_cpu(2);
    const size_t half = 2600, n = 2 * half;
    const int d = 8, k = 4;
    PE_ASSERT(n * n > PE_KNN_BLOCK);
    lcg = 7;
    float *x = random_rows(n, d, 1);
    memcpy(x + half * d, x, half * d * sizeof *x);
    CHECK(knn_matches(be, x, n, d, k, 150));
    uint32_t *nbr = malloc(n * k * sizeof *nbr);
    double *sim = malloc(n * k * sizeof *sim);
    CHECK_OK(pe_knn_graph(be, x, n, d, k, 0, nbr, sim, NULL));
    int twins = 1;
    for (size_t i = 0; i < n; i++) twins &= nbr[i * k] == (i < half ? i + half : i - half);
    CHECK(twins);
    /* the components of the twins: each pair and nothing else, through
     * the lists and through the full comparison */
    uint32_t *comp = malloc(n * sizeof *comp), *want = malloc(n * sizeof *want);
    int again = -1;
    CHECK_OK(pe_knn_components(be, x, n, d, k, nbr, sim, 0.9999999, comp, &again));
    CHECK(again == 0);
    oracle_comp(x, n, d, 0.9999999, want);
    CHECK(!memcmp(comp, want, n * sizeof *comp));
    for (size_t i = 0; i < 5; i++) CHECK(comp[i] == i && comp[i + half] == i);
    CHECK_OK(pe_knn_graph(be, x, n, d, 0, 0.9999999, NULL, NULL, comp));
    CHECK(!memcmp(comp, want, n * sizeof *comp));
    free(comp);
    free(want);
    free(nbr);
    free(sim);
    free(x);
    be->destroy(be);
}

/* Clusters of several sizes (some larger than k + 1, so that the lists
 * cannot hold every link) made of a centre and small perturbations,
 * among random rows: the components equal the oracle's at several
 * thresholds. */
static void test_components(void) {
    pe_backend *be = pe_backend_cpu(2);
    const int d = 16;
    const size_t sizes[] = {2, 3, 5, 9, 1, 1, 4};
    const size_t nc = sizeof sizes / sizeof *sizes;
    size_t n = 0;
    for (size_t c = 0; c < nc; c++) n += sizes[c];
    n += 150;
    lcg = 11;
    float *x = random_rows(n, d, 0);
    size_t at = 0;
    for (size_t c = 0; c < nc; c++) {
        for (size_t m = 1; m < sizes[c]; m++)
            for (int q = 0; q < d; q++) x[(at + m) * d + q] = x[at * d + q] + (float)(0.01 * (uni() - 0.5));
        at += sizes[c];
    }
    normalise(x, n, d);
    uint32_t *comp = malloc(n * sizeof *comp), *want = malloc(n * sizeof *want);
    static const double links[] = {0.9999, 0.999, 0.99, 0.9, 0.5, -1};
    int saw_again = 0, saw_lists = 0;
    /* k 3: clusters of 5 and 9 overflow the lists; k 10: none does until
     * the threshold reaches the random rows */
    for (int k = 3; k <= 10; k += 7) {
        uint32_t *nbr = malloc(n * k * sizeof *nbr);
        double *sim = malloc(n * k * sizeof *sim);
        CHECK_OK(pe_knn_graph(be, x, n, d, k, 0, nbr, sim, NULL));
        for (size_t l = 0; l < sizeof links / sizeof *links; l++) {
            int again;
            CHECK_OK(pe_knn_components(be, x, n, d, k, nbr, sim, links[l], comp, &again));
            oracle_comp(x, n, d, links[l], want);
            CHECK(!memcmp(comp, want, n * sizeof *comp));
            saw_again |= again;
            saw_lists |= !again;
            /* the same from pe_knn_graph directly */
            CHECK_OK(pe_knn_graph(be, x, n, d, 0, links[l], NULL, NULL, comp));
            CHECK(!memcmp(comp, want, n * sizeof *comp));
        }
        free(nbr);
        free(sim);
    }
    CHECK(saw_again && saw_lists); /* both ways were taken */
    /* at -1 everything is one component */
    for (size_t i = 0; i < n; i++) CHECK(want[i] == 0);
    /* at 0.9999 the planted clusters, and nothing else */
    oracle_comp(x, n, d, 0.9999, want);
    at = 0;
    for (size_t c = 0; c < nc; c++) {
        for (size_t m = 0; m < sizes[c]; m++) CHECK(want[at + m] == at);
        at += sizes[c];
    }
    for (size_t i = at; i < n; i++) CHECK(want[i] == i);
    free(comp);
    free(want);
    free(x);
    be->destroy(be);
}

static void test_knn_edges(void) {
    pe_backend *be = pe_backend_cpu(1);
    float x[4] = {1, 0, 0, 1};
    uint32_t nbr[2], comp[2];
    double sim[2];
    CHECK_OK(pe_knn_graph(be, x, 1, 4, 0, 0.5, nbr, sim, comp));
    CHECK(comp[0] == 0);
    CHECK_OK(pe_knn_graph(be, x, 0, 4, 0, 0.5, nbr, sim, comp));
    CHECK_RC(pe_knn_graph(be, x, 1, 4, 1, 0.5, nbr, sim, comp), PE_EUSAGE);
    CHECK_RC(pe_knn_graph(be, x, 2, 2, 2, 0.5, nbr, sim, comp), PE_EUSAGE);
    CHECK_RC(pe_knn_graph(be, x, 2, 2, -1, 0.5, nbr, sim, comp), PE_EUSAGE);
    CHECK_OK(pe_knn_graph(be, x, 2, 2, 1, 0.5, nbr, sim, comp));
    CHECK(nbr[0] == 1 && nbr[1] == 0 && sim[0] == 0 && comp[0] == 0 && comp[1] == 1);
    be->destroy(be);
}

static void test_scores(void) {
    /* outlier: mean of 1 - s, clamped */
    const double s1[] = {0.9, 0.8, 0.7};
    CHECK(fabs(pe_audit_outlier_score(s1, 3) - 0.2) < 1e-15);
    const double s2[] = {-0.5, -0.9};
    CHECK(pe_audit_outlier_score(s2, 2) == 1);
    const double s3[] = {1.0000001};
    CHECK(pe_audit_outlier_score(s3, 1) == 0);
    CHECK(pe_audit_outlier_score(s1, 0) == 0);

    /* mislabel against a direct count on random labels and neighbours */
    lcg = 5;
    int32_t labels[50];
    for (int i = 0; i < 50; i++) labels[i] = uni() < 0.1 ? PE_LABEL_NONE : (int32_t)(uni() * 4);
    for (int trial = 0; trial < 500; trial++) {
        uint32_t nbr[PE_AUDIT_MAX_K];
        const int k = 1 + (int)(uni() * 12);
        for (int t = 0; t < k; t++) nbr[t] = (uint32_t)(uni() * 50);
        const int32_t self = uni() < 0.1 ? PE_LABEL_NONE : (int32_t)(uni() * 4);
        int count[4] = {0}, first[4] = {k, k, k, k}, nl = 0, nd = 0;
        for (int t = 0; t < k; t++) {
            const int32_t l = labels[nbr[t]];
            if (l == PE_LABEL_NONE) continue;
            nl++;
            nd += l != self;
            if (!count[l]++) first[l] = t;
        }
        int32_t major = PE_LABEL_NONE;
        for (int c = 0; c < 4; c++)
            if (count[c] && (major == PE_LABEL_NONE || count[c] > count[major] ||
                             (count[c] == count[major] && first[c] < first[major])))
                major = c;
        const double want = self == PE_LABEL_NONE || !nl ? 0 : (double)nd / nl;
        int32_t gm;
        int gd, gl;
        const double got = pe_audit_mislabel_score(nbr, k, labels, self, &gm, &gd, &gl);
        CHECK(got == want && gm == major && gd == nd && gl == nl);
    }
    /* the nearest breaks a tie of counts */
    const int32_t lab[4] = {0, 1, 1, 0};
    const uint32_t nb[4] = {2, 0, 1, 3};
    int32_t m;
    int dis, nl;
    CHECK(pe_audit_mislabel_score(nb, 4, lab, 0, &m, &dis, &nl) == 0.5 && m == 1 && dis == 2 && nl == 4);
}

static void test_thresholds(void) {
    /* median 0.1, absolute deviations {0.1, 0, 0, 0, 0.2} with median 0,
     * so the mean absolute deviation (0.06) stands in for the MAD */
    double v[5] = {0.0, 0.1, 0.1, 0.1, 0.3};
    CHECK(fabs(pe_audit_outlier_threshold(v, 5) - (0.1 + 3.5 * 1.253314 * 0.06)) < 1e-12);
    /* median 2.5 / 100, MAD 1 / 100 */
    double w[6] = {0.05, 0.01, 0.02, 0.03, 0.04, 0.0};
    CHECK(fabs(pe_audit_outlier_threshold(w, 6) - (0.025 + 3.5 * 0.015 / 0.6745)) < 1e-12);
    double flat[3] = {0.2, 0.2, 0.2};
    CHECK(pe_audit_outlier_threshold(flat, 3) == 1);
    double wide[3] = {0.0, 0.5, 1.0};
    CHECK(pe_audit_outlier_threshold(wide, 3) == 1);
    CHECK(pe_audit_outlier_threshold(NULL, 0) == 1);
    double dist[4] = {0.04, 0.01, 0.02, 0.5};
    CHECK(fabs(pe_audit_embdup_threshold(dist, 4) - (1 - 0.03 / 10)) < 1e-15);
    double zero[3] = {0, 0, 0.4};
    CHECK(pe_audit_embdup_threshold(zero, 3) == 1);
    CHECK(pe_audit_embdup_threshold(NULL, 0) == 1);
}

int main(void) {
    RUN(test_knn_random);
    RUN(test_knn_blocks);
    RUN(test_components);
    RUN(test_knn_edges);
    RUN(test_scores);
    RUN(test_thresholds);
    return CHECK_DONE();
}
