/*
 * ntxent.cu - the SimCLR NT-Xent loss and its gradient for the CUDA
 * backend, step for step as kernels/cpu/ntxent.c (F.normalize, z z^T / T,
 * diagonal excluded, cross-entropy with the positive i + B mod 2B, mean
 * over rows; the hand-derived gradient is in kernels/cpu/ref_body.h).
 *
 * Not for: other contrastive losses (infonce.cu), or label smoothing.
 *
 * Work: one block of THREADS per row for the row steps (normalise,
 * softmax, gradient), each thread taking columns t, t + THREADS, ... and
 * the block combining them through a fixed shared-memory tree; the two
 * products (zn zn^T and (ds + ds^T) zn) are cuBLAS GEMMs in full FP32
 * (CUBLAS_COMPUTE_32F_PEDANTIC: backend.h lets --precision change only
 * convolutions and the GEMM op, so tf32 and bf16 do not reach the loss).
 * The row losses are copied to pinned host memory and summed
 * there in row order, as the CPU does. Scratch: 2 (2B)^2 + 2 (2B) D + 2 (2B)
 * floats (each rounded up to 64) from the backend's device scratch.
 *
 * Determinism: no atomics; the trees and cuBLAS's kernels are fixed by the
 * shape, so the bits repeat from run to run on the same GPU model.
 * Against the CPU: the sums inside a row are taken in a different order
 * (a tree, not left to right), the GEMMs accumulate in another order, and
 * CUDA's expf and logf may differ from glibc's by an ulp, so loss and dz
 * agree with the CPU to rounding, not bit for bit: about 1e-6 relative on
 * the loss and 1e-5 of the largest |dz| on dz (sums of 128 to a few
 * thousand float terms, and the cancellation in dzn - zn (zn . dzn)).
 *
 * Stability: each row's log-sum-exp subtracts the row maximum (diagonal
 * excluded), so exp never overflows whatever T is.
 */
#include <math.h>

#include "cuda.h"
#include "rows.cuh"

/* row i of the logits s (B2, B2): s / T, the log-sum-exp over c != i, the
 * row's loss, then the row of ds = (softmax - onehot(pos)) / B2 with 0 on
 * the diagonal. Each thread rereads only the columns it wrote itself. */
static __global__ void softmax_kernel(int B2, float T, float *s, float *rowloss) {
    __shared__ float sh[THREADS];
    const int i = blockIdx.x, pos = (i + B2 / 2) % B2;
    float *row = s + (size_t)i * B2;
    float mx = -INFINITY;
    for (int c = threadIdx.x; c < B2; c += THREADS) {
        const float v = row[c] / T;
        row[c] = v;
        if (c != i && v > mx) mx = v;
    }
    mx = block_max(mx, sh);
    float sum = 0;
    for (int c = threadIdx.x; c < B2; c += THREADS)
        if (c != i) sum += expf(row[c] - mx);
    const float lse = mx + logf(block_sum(sum, sh));
    /* row[pos] was written by another thread (visible after the trees'
     * barriers); read it before the loop below overwrites it */
    if (threadIdx.x == 0) rowloss[i] = lse - row[pos];
    __syncthreads();
    for (int c = threadIdx.x; c < B2; c += THREADS) {
        const float prob = c == i ? 0.0f : expf(row[c] - lse);
        row[c] = (prob - (c == pos ? 1.0f : 0.0f)) / (float)B2;
    }
}

/* g = ds + ds^T, elementwise over (B2, B2) */
static __global__ void symmetrise_kernel(int B2, const float *s, float *g) {
    const size_t n = (size_t)B2 * B2;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (size_t)gridDim.x * blockDim.x) {
        const size_t i = e / B2, c = e % B2;
        g[e] = s[e] + s[c * B2 + i];
    }
}

/* row i: dzn /= T, then back through the normalisation:
 * dz = (dzn - zn (zn . dzn)) / |z|, or dzn / eps where the clamp held */
static __global__ void grad_kernel(int D, float T, const float *zn, const float *norm,
                                   float *dzn, float *dz) {
    __shared__ float sh[THREADS];
    const int i = blockIdx.x;
    const float *znr = zn + (size_t)i * D;
    float *dznr = dzn + (size_t)i * D, *dzr = dz + (size_t)i * D;
    float dot = 0;
    for (int k = threadIdx.x; k < D; k += THREADS) {
        const float v = dznr[k] / T;
        dznr[k] = v;
        dot += znr[k] * v;
    }
    dot = block_sum(dot, sh);
    const float nrm = norm[i];
    for (int k = threadIdx.x; k < D; k += THREADS)
        dzr[k] = nrm > NORM_EPS ? (dznr[k] - znr[k] * dot) / nrm : dznr[k] / NORM_EPS;
}

int pe_cuda_ntxent(pe_backend *b, int B2, int D, const float *z, float T, float *loss,
                   float *dz) {
    PE_ASSERT(B2 >= 2 && B2 % 2 == 0 && D >= 1 && T > 0);
    cudaStream_t stream = pe_cuda_of(b)->stream;
    const size_t sq = round64((size_t)B2 * B2), mat = round64((size_t)B2 * D),
                 vec = round64((size_t)B2);
    float *s = (float *)pe_cuda_scratch(b, sizeof(float) * (2 * sq + 2 * mat + 2 * vec));
    if (!s) return PE_ECUDA;
    float *host_rowloss = (float *)pe_cuda_host_scratch(b, sizeof(float) * (size_t)B2);
    if (!host_rowloss) return PE_ECUDA;
    float *g = s + sq, *zn = g + sq, *dzn = zn + mat, *norm = dzn + mat, *rowloss = norm + vec;
    int rc;

    normalise_kernel<<<B2, THREADS, 0, stream>>>(D, z, zn, norm);
    if ((rc = pe_cuda_launched("ntxent: normalise"))) return rc;
    if ((rc = rm_gemm(b, "ntxent: GEMM", 0, 1, B2, B2, D, zn, D, zn, D, s, B2))) return rc;
    softmax_kernel<<<B2, THREADS, 0, stream>>>(B2, T, s, rowloss);
    if ((rc = pe_cuda_launched("ntxent: softmax"))) return rc;
    rc = pe_cuda_check(cudaMemcpyAsync(host_rowloss, rowloss, sizeof(float) * (size_t)B2,
                                       cudaMemcpyDeviceToHost, stream),
                       "ntxent: copy row losses");
    if (rc) return rc;
    symmetrise_kernel<<<pe_cuda_blocks((size_t)B2 * B2, THREADS), THREADS, 0, stream>>>(B2, s, g);
    if ((rc = pe_cuda_launched("ntxent: symmetrise"))) return rc;
    if ((rc = rm_gemm(b, "ntxent: GEMM", 0, 0, B2, D, B2, g, B2, zn, D, dzn, D))) return rc;
    grad_kernel<<<B2, THREADS, 0, stream>>>(D, T, zn, norm, dzn, dz);
    if ((rc = pe_cuda_launched("ntxent: gradient"))) return rc;
    if ((rc = pe_cuda_check(cudaStreamSynchronize(stream), "ntxent"))) return rc;

    /* in row order on one thread, as the CPU */
    float total = 0;
    for (int i = 0; i < B2; i++) total += host_rowloss[i];
    *loss = total / (float)B2;
    return 0;
}
