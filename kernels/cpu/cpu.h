/*
 * cpu.h - private to the CPU backend (kernels/cpu/): the thread pool, the
 * backend's private state, the single-threaded GEMM the ops build on, and
 * the entry point of each op file that backend_cpu.c puts into pe_backend.
 *
 * Not for: code outside kernels/cpu/. Model code sees backend.h only; the
 * tests see backend.h and cpu/ref.h.
 *
 * Determinism: every op cuts its work into items whose boundaries depend on
 * the shapes only, never on the thread count. An item writes outputs that
 * no other item writes, and any sum across items is taken afterwards, in
 * item order, by one thread. Which thread runs an item therefore cannot
 * change a bit of any result: every op gives byte-identical output for any
 * thread count. That frees the pool to hand items out first come, first
 * served, which keeps both cores busy when another process takes one.
 *
 * One backend serves one calling thread at a time; ops are not reentrant.
 */
#ifndef PE_KERNELS_CPU_H
#define PE_KERNELS_CPU_H

#include <stddef.h>

#include "backend.h"

/* ---- thread pool -------------------------------------------------------- */

typedef struct pe_cpu_pool pe_cpu_pool;

/* Runs item `item` on worker `tid` (0 .. nthreads-1; the calling thread is
 * worker 0). tid exists only to pick a per-thread scratch slot: results
 * must not depend on it. */
typedef void (*pe_cpu_item_fn)(void *ctx, size_t item, int tid);

/* Starts nthreads - 1 worker threads (the caller is the last one). Returns
 * 0, ENOMEM, or the pthread_create error. Free with pe_cpu_pool_close. */
int pe_cpu_pool_open(pe_cpu_pool **out, int nthreads);
void pe_cpu_pool_close(pe_cpu_pool *p);
int pe_cpu_pool_threads(const pe_cpu_pool *p);

/* Runs fn(ctx, i, tid) for every i in [0, n) and returns when all are done.
 * n == 1 (or a one-thread pool) runs inline on the caller. Not nestable:
 * an item must not call pe_cpu_parallel_for. */
void pe_cpu_parallel_for(pe_cpu_pool *p, size_t n, pe_cpu_item_fn fn,
                         void *ctx);

/* ---- backend state ------------------------------------------------------ */

typedef struct pe_cpu {
    pe_cpu_pool *pool;
    int nthreads;
    /* run the AVX2/FMA loops: the CPU has them and PE_CPU_SCALAR was not
     * set in the environment when the backend was created (tests use it
     * to exercise the scalar fallbacks on an AVX2 machine) */
    int avx2;
    /* scratch for ops that take no workspace argument (ntxent, infonce);
     * grown on demand, freed by destroy */
    void *scratch;
    size_t scratch_bytes;
} pe_cpu;

static inline pe_cpu *pe_cpu_of(pe_backend *b) { return (pe_cpu *)b->impl; }

/* b's scratch, at least `bytes` long and 64-byte aligned, or NULL (out of
 * memory). Valid until the next call; one op uses it at a time. */
void *pe_cpu_scratch(pe_backend *b, size_t bytes);

/* 64-byte aligned allocation that pe_cpu_free_aligned releases. */
void *pe_cpu_alloc_aligned(size_t bytes);
void pe_cpu_free_aligned(void *p);

/* Number of items of `grain` elements that cover n elements (>= 1). */
static inline size_t pe_cpu_chunks(size_t n, size_t grain) {
    return n == 0 ? 1 : (n + grain - 1) / grain;
}

/* Rounds a float count up to a whole number of 64-byte lines, so buffers
 * carved one after another out of a workspace stay aligned. */
static inline size_t pe_cpu_round16(size_t nfloats) {
    return (nfloats + 15) & ~(size_t)15;
}

/* ---- instruction sets ---------------------------------------------------- */

/* Whether the CPU runs AVX2 and FMA. Kernels with an AVX2/FMA version
 * (functions compiled with __attribute__((target("avx2,fma"))), so the
 * build needs no -mavx2) follow pe_cpu.avx2, which starts from this, and
 * otherwise run their scalar loops. */
static inline int pe_cpu_has_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* ---- single-threaded GEMM (gemm.c) -------------------------------------- */

/* C (M,N) = alpha op(A) op(B) + beta C, row-major, on the calling thread
 * only: OpenBLAS when built with PE_HAVE_OPENBLAS (held to one thread),
 * else a blocked fallback. beta == 0 never reads C (BLAS rule), so C may
 * hold garbage. Same arguments give the same bits on any thread. */
void pe_cpu_sgemm(int transA, int transB, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc);

/* Called once by pe_backend_cpu: pins OpenBLAS to one thread (our pool
 * owns the cores) and repairs its CPU detection (see gemm.c). */
void pe_cpu_blas_setup(void);

/* "openblas <core>" or "fallback <isa>", for benchmarks and logs. Static. */
const char *pe_cpu_blas_name(void);

/* ---- ops, with the signatures of the pe_backend members ----------------- */

size_t pe_cpu_conv_workspace(pe_backend *b, const pe_conv_desc *d);
int pe_cpu_conv_fwd(pe_backend *b, const pe_conv_desc *d, const float *x,
                    const float *w, float *y, float *work);
int pe_cpu_conv_bwd_data(pe_backend *b, const pe_conv_desc *d, const float *dy,
                         const float *w, float *dx, float *work);
int pe_cpu_conv_bwd_filter(pe_backend *b, const pe_conv_desc *d,
                           const float *x, const float *dy, float *dw,
                           float *work);

int pe_cpu_bn_fwd_train(pe_backend *b, int N, int C, int HW, const float *x,
                        const float *gamma, const float *beta, float eps,
                        float momentum, float *run_mean, float *run_var,
                        float *y, float *save_mean, float *save_invstd);
int pe_cpu_bn_fwd_eval(pe_backend *b, int N, int C, int HW, const float *x,
                       const float *gamma, const float *beta, float eps,
                       const float *run_mean, const float *run_var, float *y);
int pe_cpu_bn_bwd(pe_backend *b, int N, int C, int HW, const float *x,
                  const float *dy, const float *gamma, const float *save_mean,
                  const float *save_invstd, float *dx, float *dgamma,
                  float *dbeta);

int pe_cpu_relu_fwd(pe_backend *b, size_t n, const float *x, float *y);
int pe_cpu_relu_bwd(pe_backend *b, size_t n, const float *y, const float *dy,
                    float *dx);
int pe_cpu_add(pe_backend *b, size_t n, const float *a, const float *c,
               float *y);
int pe_cpu_accumulate(pe_backend *b, size_t n, const float *src, float *dst);
int pe_cpu_copy(pe_backend *b, size_t n, const float *src, float *dst);
int pe_cpu_fill(pe_backend *b, size_t n, float value, float *dst);
int pe_cpu_bias_add(pe_backend *b, int N, int out, const float *bias,
                    float *y);
int pe_cpu_bias_bwd(pe_backend *b, int N, int out, const float *dy,
                    float *dbias);

int pe_cpu_avgpool_fwd(pe_backend *b, int N, int C, int HW, const float *x,
                       float *y);
int pe_cpu_avgpool_bwd(pe_backend *b, int N, int C, int HW, const float *dy,
                       float *dx);

int pe_cpu_gemm(pe_backend *b, int transA, int transB, int M, int N, int K,
                float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc);

int pe_cpu_ntxent(pe_backend *b, int B2, int D, const float *z, float T,
                  float *loss, float *dz);

int pe_cpu_infonce(pe_backend *b, int N, int D, int K, const float *q,
                   const float *k, const float *queue, float T, float *loss,
                   float *dq, float *kn);
int pe_cpu_ema(pe_backend *b, size_t n, const float *src, float *dst, double m);
int pe_cpu_sumsq(pe_backend *b, size_t n, const float *x, double *out);
int pe_cpu_axpy(pe_backend *b, size_t n, float a, const float *x, float *y);
int pe_cpu_gauss_noise(pe_backend *b, size_t n, const uint32_t key[2],
                       double stddev, double scale, const float *src,
                       float *dst);

int pe_cpu_adam(pe_backend *b, size_t n, float *p, const float *g, float *m,
                float *v, float lr, float b1, float b2, float eps, float wd,
                long t);
int pe_cpu_sgd(pe_backend *b, size_t n, float *p, const float *g, float *buf,
               float lr, float momentum, float wd, int first);

#endif
