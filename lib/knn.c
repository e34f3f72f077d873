/*
 * knn.c - exact k nearest neighbours by cosine similarity (knn.h): blocks
 * of rows multiplied against all rows on the backend, a bounded heap of
 * candidates per row, candidates re-ranked on double similarities, and a
 * union-find over the links at or above a similarity.
 *
 * Not for: approximate search, features, scores (audit.c).
 */
#include "knn.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "pe.h"

double pe_knn_dot(const float *a, const float *b, int d) {
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)a[i] * (double)b[i];
    return s;
}

typedef struct cand {
    float s;
    uint32_t j;
} cand;

/* x is worse than y: a smaller similarity, or the same and a larger index. */
static int worse(const cand *x, const cand *y) { return x->s < y->s || (x->s == y->s && x->j > y->j); }

/* Min-heap on `worse`: h[0] is the worst candidate kept. */
static void sift_down(cand *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(&h[l], &h[m])) m = l;
        if (r < n && worse(&h[r], &h[m])) m = r;
        if (m == i) return;
        cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void sift_up(cand *h, size_t i) {
    while (i) {
        size_t p = (i - 1) / 2;
        if (!worse(&h[i], &h[p])) return;
        cand t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

typedef struct ranked {
    double s;
    uint32_t j;
} ranked;

static int cmp_ranked(const void *x, const void *y) {
    const ranked *a = x, *b = y;
    if (a->s != b->s) return a->s < b->s ? 1 : -1;
    return (a->j > b->j) - (a->j < b->j);
}

static uint32_t uf_find(uint32_t *p, uint32_t i) {
    while (p[i] != i) {
        p[i] = p[p[i]];
        i = p[i];
    }
    return i;
}

/* The root of a component is its smallest row. */
static void uf_union(uint32_t *p, uint32_t i, uint32_t j) {
    uint32_t x = uf_find(p, i), y = uf_find(p, j);
    if (x != y) p[x > y ? x : y] = x < y ? x : y;
}

int pe_knn_graph(pe_backend *be, const float *x, size_t n, int d, int k, double link,
                 uint32_t *nbr, double *sim, uint32_t *comp) {
    if (k < 0 || (n && (size_t)k > n - 1) || (!n && k))
        return pe_fail(PE_EUSAGE, "knn: %d neighbours of %zu rows", k, n);
    if (n > INT_MAX || n >= UINT32_MAX || d < 1)
        return pe_fail(PE_EUSAGE, "knn: %zu rows of %d", n, d);
    if (comp)
        for (size_t i = 0; i < n; i++) comp[i] = (uint32_t)i;
    if (n < 2) return 0;
    const size_t k2 = (size_t)k + PE_KNN_MARGIN < n - 1 ? (size_t)k + PE_KNN_MARGIN : n - 1;
    size_t q = PE_KNN_BLOCK / n;
    if (q < 1) q = 1;
    if (q > n) q = n;
    int rc = 0;
    float *dx = be->alloc(be, n * (size_t)d * sizeof(float));
    float *dc = be->alloc(be, q * n * sizeof(float));
    float *hc = malloc(q * n * sizeof *hc);
    cand *heap = malloc(k2 * sizeof *heap);
    ranked *rk = malloc(k2 * sizeof *rk);
    if (!dx || !dc || !hc || !heap || !rk) {
        rc = pe_fail(ENOMEM, "knn: out of memory for %zu rows of %d", n, d);
        goto out;
    }
    if ((rc = be->upload(be, dx, x, n * (size_t)d * sizeof(float)))) goto out;
    for (size_t q0 = 0; q0 < n; q0 += q) {
        const size_t qb = n - q0 < q ? n - q0 : q;
        /* the products of rows q0..q0+qb with every row: (qb, n) */
        if ((rc = be->gemm(be, 0, 1, (int)qb, (int)n, d, 1.0f, dx + q0 * (size_t)d, d, dx, d, 0.0f,
                           dc, (int)n)) ||
            (rc = be->download(be, hc, dc, qb * n * sizeof(float))))
            goto out;
        for (size_t r = 0; r < qb; r++) {
            const size_t i = q0 + r;
            const float *row = hc + r * n;
            size_t nh = 0;
            for (size_t j = 0; k && j < n; j++) {
                if (j == i) continue;
                const cand c = {row[j], (uint32_t)j};
                if (nh < k2) {
                    heap[nh] = c;
                    sift_up(heap, nh++);
                } else if (worse(&heap[0], &c)) {
                    heap[0] = c;
                    sift_down(heap, nh, 0);
                }
            }
            if (comp)
                for (size_t j = i + 1; j < n; j++) {
                    const double c = row[j];
                    if (c < link - PE_KNN_BAND) continue;
                    if (c < link + PE_KNN_BAND &&
                        pe_knn_dot(x + i * (size_t)d, x + j * (size_t)d, d) < link)
                        continue;
                    uf_union(comp, (uint32_t)i, (uint32_t)j);
                }
            if (!k) continue;
            for (size_t t = 0; t < nh; t++)
                rk[t] = (ranked){pe_knn_dot(x + i * (size_t)d, x + heap[t].j * (size_t)d, d), heap[t].j};
            qsort(rk, nh, sizeof *rk, cmp_ranked);
            for (int t = 0; t < k; t++) {
                nbr[i * (size_t)k + t] = rk[t].j;
                sim[i * (size_t)k + t] = rk[t].s;
            }
        }
    }
    if (comp)
        for (size_t i = 0; i < n; i++) comp[i] = uf_find(comp, (uint32_t)i);
out:
    if (dx) be->free(be, dx);
    if (dc) be->free(be, dc);
    free(hc);
    free(heap);
    free(rk);
    return rc;
}

int pe_knn_components(pe_backend *be, const float *x, size_t n, int d, int k,
                      const uint32_t *nbr, const double *sim, double link, uint32_t *comp,
                      int *again) {
    int full = 0;
    *again = 0;
    for (size_t i = 0; i < n; i++) comp[i] = (uint32_t)i;
    for (size_t i = 0; i < n; i++) {
        const uint32_t *nb = nbr + i * (size_t)k;
        const double *sm = sim + i * (size_t)k;
        for (int t = 0; t < k && sm[t] >= link; t++) uf_union(comp, (uint32_t)i, nb[t]);
        /* a row more similar than the last one listed may be left out */
        if (k && (size_t)k < n - 1 && sm[k - 1] >= link - PE_KNN_BAND) full = 1;
    }
    if (!k && n > 1) full = 1;
    if (full) {
        *again = 1;
        return pe_knn_graph(be, x, n, d, 0, link, NULL, NULL, comp);
    }
    for (size_t i = 0; i < n; i++) comp[i] = uf_find(comp, (uint32_t)i);
    return 0;
}
