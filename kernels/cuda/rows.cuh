/*
 * rows.cuh - what the two contrastive losses (ntxent.cu, infonce.cu)
 * share: one block of THREADS per row, block-wide sum and maximum through
 * fixed shared-memory trees (so the bits depend on the data only), the
 * row-major FP32 GEMM, and the row normalisation of F.normalize.
 *
 * Not for: other files; everything here is static to the including file.
 */
#ifndef PE_KERNELS_CUDA_ROWS_CUH
#define PE_KERNELS_CUDA_ROWS_CUH

#include "cuda.h"

enum { THREADS = 256 }; /* per row block: a power of two, for the tree */

static constexpr float NORM_EPS = 1e-12f; /* F.normalize's default eps */

/* floats, rounded up so each scratch array starts 256-byte aligned */
static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

/* The sum over the block of each thread's v, through a tree fixed by
 * THREADS, so the bits depend on the data only. Every thread gets it. */
static __device__ float block_sum(float v, float *sh) {
    const unsigned t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (unsigned half = THREADS / 2; half > 0; half /= 2) {
        if (t < half) sh[t] += sh[t + half];
        __syncthreads();
    }
    const float r = sh[0];
    __syncthreads(); /* so sh may be reused at once */
    return r;
}

/* The maximum over the block (NaN ignored, as the CPU's `s > mx`). */
static __device__ float block_max(float v, float *sh) {
    const unsigned t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (unsigned half = THREADS / 2; half > 0; half /= 2) {
        if (t < half) sh[t] = fmaxf(sh[t], sh[t + half]);
        __syncthreads();
    }
    const float r = sh[0];
    __syncthreads();
    return r;
}

/* C (M,N) = op(A) op(B), all row-major, in FP32 whatever the handle's math
 * mode: cuBLAS is column-major, where a row-major matrix reads as its
 * transpose, so it computes C^T = op(B)^T op(A)^T. alpha and beta live on
 * the host (the handle's default pointer mode). */
static int rm_gemm(pe_backend *b, const char *what, int transA, int transB, int M, int N, int K,
                   const float *A,
                   int lda, const float *B, int ldb, float *C, int ldc) {
    const float one = 1.0f, zero = 0.0f;
    return pe_cuda_check_blas(
        cublasGemmEx(pe_cuda_of(b)->blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                     transA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one, B, CUDA_R_32F, ldb, A,
                     CUDA_R_32F, lda, &zero, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_PEDANTIC,
                     CUBLAS_GEMM_DEFAULT),
        what);
}

/* row i: xn_i = x_i / max(|x_i|, eps), and norm[i] = |x_i| unless norm is
 * NULL */
static __global__ void normalise_kernel(int D, const float *x, float *xn, float *norm) {
    __shared__ float sh[THREADS];
    const int i = blockIdx.x;
    const float *xr = x + (size_t)i * D;
    float *xnr = xn + (size_t)i * D;
    float sq = 0;
    for (int c = threadIdx.x; c < D; c += THREADS) sq += xr[c] * xr[c];
    const float nrm = sqrtf(block_sum(sq, sh));
    if (norm && threadIdx.x == 0) norm[i] = nrm;
    const float den = nrm > NORM_EPS ? nrm : NORM_EPS;
    for (int c = threadIdx.x; c < D; c += THREADS) xnr[c] = xr[c] / den;
}

#endif
