/*
 * sgemm_roof.c - the roof the training kernels are measured against:
 * OpenBLAS cblas_sgemm GFLOP/s on square matrices, on the given threads,
 * with the OpenBLAS kernels pe's backend selects.
 *   sgemm_roof N THREADS
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend.h"

extern void openblas_set_num_threads(int);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1024, th = argc > 2 ? atoi(argv[2]) : 1;
    /* pe's backend start-up applies its OpenBLAS core-type fix, so the roof
     * uses the same kernels pe's convolutions get */
    pe_backend *be = pe_backend_cpu(1);
    if (be) be->destroy(be);
    openblas_set_num_threads(th);
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    for (long i = 0; i < (long)n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    int reps = 0;
    double t0 = now(), dt;
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        reps++;
    } while ((dt = now() - t0) < 1.0);
    printf("openblas sgemm %dx%d threads=%d: %.1f GFLOP/s\n", n, n, th,
           2.0 * n * n * n * reps / dt / 1e9);
    free(a);
    free(b);
    free(c);
    return 0;
}
