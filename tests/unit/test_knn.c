/*
 * test_knn.c - the weighted kNN monitor (pe_knn_accuracy, which selects the
 * top k by quickselect) against a brute-force oracle that sorts every
 * similarity, on random features without ties, many bank sizes and k.
 */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "pe.h"
#include "train.h"

typedef struct item {
    double sim;
    int32_t label;
} item;

static int desc(const void *a, const void *b) {
    double x = ((const item *)a)->sim, y = ((const item *)b)->sim;
    return x < y ? 1 : x > y ? -1 : 0;
}

static double oracle(const float *bank, const int32_t *bl, size_t nb, const float *test,
                     const int32_t *tl, size_t nt, int d, int k, double t, int nc) {
    item *it = malloc(nb * sizeof *it);
    double *votes = malloc((size_t)nc * sizeof *votes);
    size_t ok = 0;
    for (size_t i = 0; i < nt; i++) {
        double tn = 0;
        for (int q = 0; q < d; q++) tn += (double)test[i * d + q] * test[i * d + q];
        for (size_t j = 0; j < nb; j++) {
            double s = 0, bn = 0;
            for (int q = 0; q < d; q++) {
                s += (double)test[i * d + q] * bank[j * d + q];
                bn += (double)bank[j * d + q] * bank[j * d + q];
            }
            it[j] = (item){s / sqrt(tn * bn), bl[j]};
        }
        qsort(it, nb, sizeof *it, desc);
        for (int c = 0; c < nc; c++) votes[c] = 0;
        for (int j = 0; j < k && (size_t)j < nb; j++) votes[it[j].label] += exp(it[j].sim / t);
        int best = 0;
        for (int c = 1; c < nc; c++)
            if (votes[c] > votes[best]) best = c;
        ok += best == tl[i];
    }
    free(it);
    free(votes);
    return (double)ok / (double)nt;
}

static double urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * 0x1.0p-53;
}

static void test_against_sort(void) {
    uint64_t s = 42;
    for (int trial = 0; trial < 60; trial++) {
        int d = 4 + trial % 13, nc = 2 + trial % 9, k = 1 + (int)(urand(&s) * 250);
        size_t nb = 1 + (size_t)(urand(&s) * 600), nt = 25;
        float *b = malloc(nb * d * sizeof *b), *t = malloc(nt * d * sizeof *t);
        int32_t *bl = malloc(nb * sizeof *bl), *tl = malloc(nt * sizeof *tl);
        for (size_t i = 0; i < nb * (size_t)d; i++) b[i] = (float)(urand(&s) * 2 - 1);
        for (size_t i = 0; i < nt * (size_t)d; i++) t[i] = (float)(urand(&s) * 2 - 1);
        for (size_t i = 0; i < nb; i++) bl[i] = (int32_t)(urand(&s) * nc);
        for (size_t i = 0; i < nt; i++) tl[i] = (int32_t)(urand(&s) * nc);
        double got = pe_knn_accuracy(b, bl, nb, t, tl, nt, d, k, 0.5f, nc);
        double want = oracle(b, bl, nb, t, tl, nt, d, k, 0.5, nc);
        CHECK(fabs(got - want) < 1e-12);
        if (fabs(got - want) >= 1e-12)
            fprintf(stderr, "  trial %d: nb %zu k %d: got %.4f want %.4f\n", trial, nb, k, got, want);
        free(b);
        free(t);
        free(bl);
        free(tl);
    }
}

/* Features equal to their class's one-hot vector: kNN is exact. */
static void test_separable(void) {
    enum { NB = 300, NT = 50, D = 6 };
    static float b[NB * D], t[NT * D];
    static int32_t bl[NB], tl[NT];
    for (int i = 0; i < NB; i++) {
        bl[i] = i % D;
        b[i * D + bl[i]] = 1.0f + 0.01f * (float)(i % 7);
    }
    for (int i = 0; i < NT; i++) {
        tl[i] = (i * 5) % D;
        t[i * D + tl[i]] = 2.0f;
    }
    CHECK(pe_knn_accuracy(b, bl, NB, t, tl, NT, D, 200, 0.5f, D) == 1.0);
}

int main(void) {
    RUN(test_against_sort);
    RUN(test_separable);
    return CHECK_DONE();
}
