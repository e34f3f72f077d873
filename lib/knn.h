/*
 * knn.h - exact k nearest neighbours of a set of feature vectors by cosine
 * similarity, every row against every other by blocked matrix products on
 * a compute backend, and the components of the graph that links rows at
 * least a given similarity apart (pe-audit's embedding scans).
 *
 * Not for: features (eval.h's pe_encoder_features makes them), what the
 * neighbours mean (audit.c scores them), approximate search: this is the
 * brute-force answer, n^2 d multiply-adds, fine to ~100,000 rows.
 *
 * Exactness and determinism: candidates are chosen from float32 products
 * (a GEMM per block of rows, blocks fixed by n, so by neither the thread
 * count nor anything else), then each candidate's similarity is computed
 * again in double in a fixed order and the neighbours ranked on that
 * (similarity descending, then index ascending). The float products pick
 * PE_KNN_MARGIN more candidates than asked for, so a neighbour is lost only
 * if float rounding (about 1e-6 here) moves it past that many others; a
 * link within PE_KNN_BAND of the threshold is decided on the double value.
 * The same rows give the same answer, bit for bit, whatever the threads.
 *
 * Memory: the rows on the backend (n d floats), one block of products
 * (at most PE_KNN_BLOCK floats, twice: backend and host), the outputs.
 */
#ifndef PE_KNN_H
#define PE_KNN_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define PE_KNN_MARGIN 8
#define PE_KNN_BAND 1e-4
#define PE_KNN_BLOCK ((size_t)1 << 24) /* floats of one block of products */

/* For each row i of x (n, d), row-major, rows L2-normalised by the
 * caller: the k rows j != i of the largest similarity x_i . x_j, into
 * nbr[i k .. i k + k) (most similar first, ties by smaller index) and
 * their similarities (double, as recomputed) into sim. k must be at most
 * n - 1 (0 is allowed: no neighbours). With comp (n) not NULL, also the
 * components of the graph whose edges are the pairs of similarity at
 * least `link`: comp[i] is the smallest row of i's component (i itself
 * when linked to none). be: the backend the products run on (its memory is
 * allocated here; x, nbr, sim, comp are host memory). Returns 0, ENOMEM
 * (with a message), PE_EUSAGE (k out of range, n or d above INT_MAX), or
 * the backend's error. */
int pe_knn_graph(pe_backend *be, const float *x, size_t n, int d, int k, double link,
                 uint32_t *nbr, double *sim, uint32_t *comp);

/* The components of the graph linking the rows of x (n, d) whose
 * similarity is at least `link`, given the k nearest neighbours that
 * pe_knn_graph found (nbr, sim): the lists hold every link unless some
 * row's list is full of rows at least that similar (its last within
 * PE_KNN_BAND of link), and then every pair is compared again with
 * pe_knn_graph (*again = 1; else 0). comp[i]: the smallest row of i's
 * component. Returns what pe_knn_graph returns. */
int pe_knn_components(pe_backend *be, const float *x, size_t n, int d, int k,
                      const uint32_t *nbr, const double *sim, double link, uint32_t *comp,
                      int *again);

/* x_i . x_j in double, summed in index order: the similarity
 * pe_knn_graph reports. */
double pe_knn_dot(const float *a, const float *b, int d);

#endif
