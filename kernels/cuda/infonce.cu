/*
 * infonce.cu - MoCo's InfoNCE loss and its gradient with respect to the
 * queries for the CUDA backend, step for step as kernels/cpu/infonce.c
 * (F.normalize of q and k, l_pos = q . k, l_neg = q queue^T, logits
 * [l_pos, l_neg] / T, cross-entropy with the positive at index 0, mean over
 * rows; the hand-derived gradient is in kernels/cpu/ref_body.h).
 *
 * Not for: NT-Xent (ntxent.cu), the queue's bookkeeping or the momentum
 * update (lib/train.c, ema.cu).
 *
 * Work: one block of THREADS per row for the row steps (normalise q and k,
 * the positive logit and softmax, the gradient), each thread taking
 * columns t, t + THREADS, ... and the block combining them through a fixed
 * shared-memory tree; the two products with the queue (qn queue^T and
 * ds[:, 1:] queue) are cuBLAS GEMMs in full FP32
 * (CUBLAS_COMPUTE_32F_PEDANTIC: --precision tf32 or bf16 changes only
 * convolutions and GEMM ops, backend.h). The row losses are copied to
 * pinned host memory and summed there in row order, as the CPU does.
 * Scratch: N (1 + K) + 2 N D + 2 N floats (each rounded up to 64) from the
 * backend's device scratch.
 *
 * Determinism: no atomics; the trees and cuBLAS's kernels are fixed by the
 * shape, so the bits repeat from run to run on the same GPU model.
 * Against the CPU: sums inside a row run in tree order, the GEMMs
 * accumulate in another order, and CUDA's expf and logf may differ from
 * glibc's by an ulp, so loss, dq and kn agree with the CPU to rounding,
 * not bit for bit: about 1e-6 relative on the loss and kn, and 1e-5 of the
 * largest |dq| on dq (the cancellation in dqn - qn (qn . dqn)).
 *
 * Stability: each row's log-sum-exp subtracts the row maximum, so exp
 * never overflows whatever T is.
 *
 * The block trees, row-major GEMM and normalisation repeat ntxent.cu's:
 * each op file stands alone.
 */
#include <math.h>

#include "cuda.h"
#include "rows.cuh"

/* row i of the logits s (N, 1 + K), whose columns 1..K the GEMM filled:
 * the positive qn_i . kn_i into column 0, s / T, the log-sum-exp, the
 * row's loss, then the row of ds = (softmax - onehot(0)) / N. Each thread
 * rereads only the columns it wrote itself. */
static __global__ void softmax_kernel(int N, int K, int D, float T, const float *qn,
                                      const float *kn, float *s, float *rowloss) {
    __shared__ float sh[THREADS];
    const int i = blockIdx.x, L = 1 + K;
    const float *qr = qn + (size_t)i * D, *kr = kn + (size_t)i * D;
    float *row = s + (size_t)i * L;
    float pos = 0;
    for (int c = threadIdx.x; c < D; c += THREADS) pos += qr[c] * kr[c];
    pos = block_sum(pos, sh);
    if (threadIdx.x == 0) row[0] = pos;
    __syncthreads();
    float mx = -INFINITY;
    for (int c = threadIdx.x; c < L; c += THREADS) {
        const float v = row[c] / T;
        row[c] = v;
        if (v > mx) mx = v;
    }
    mx = block_max(mx, sh);
    float sum = 0;
    for (int c = threadIdx.x; c < L; c += THREADS) sum += expf(row[c] - mx);
    const float lse = mx + logf(block_sum(sum, sh));
    if (threadIdx.x == 0) rowloss[i] = lse - row[0];
    __syncthreads(); /* row[0] is read above before it is overwritten below */
    for (int c = threadIdx.x; c < L; c += THREADS)
        row[c] = (expf(row[c] - lse) - (c == 0 ? 1.0f : 0.0f)) / (float)N;
}

/* row i: dqn = (dqn + ds[i,0] kn_i) / T (the GEMM gave the queue's share),
 * then back through the normalisation: dq = (dqn - qn (qn . dqn)) / |q|,
 * or dqn / eps where the clamp held */
static __global__ void grad_kernel(int K, int D, float T, const float *qn, const float *kn,
                                   const float *qnorm, const float *s, float *dqn, float *dq) {
    __shared__ float sh[THREADS];
    const int i = blockIdx.x;
    const float *qr = qn + (size_t)i * D, *kr = kn + (size_t)i * D;
    float *dqnr = dqn + (size_t)i * D, *dqr = dq + (size_t)i * D;
    const float dpos = s[(size_t)i * (1 + K)];
    float dot = 0;
    for (int c = threadIdx.x; c < D; c += THREADS) {
        const float v = (dqnr[c] + dpos * kr[c]) / T;
        dqnr[c] = v;
        dot += qr[c] * v;
    }
    dot = block_sum(dot, sh);
    const float nrm = qnorm[i];
    for (int c = threadIdx.x; c < D; c += THREADS)
        dqr[c] = nrm > NORM_EPS ? (dqnr[c] - qr[c] * dot) / nrm : dqnr[c] / NORM_EPS;
}

int pe_cuda_infonce(pe_backend *b, int N, int D, int K, const float *q, const float *k,
                    const float *queue, float T, float *loss, float *dq, float *kn) {
    PE_ASSERT(N >= 1 && D >= 1 && K >= 1 && T > 0);
    cudaStream_t stream = pe_cuda_of(b)->stream;
    const size_t logits = round64((size_t)N * (1 + (size_t)K)), mat = round64((size_t)N * D),
                 vec = round64((size_t)N);
    float *s = (float *)pe_cuda_scratch(b, sizeof(float) * (logits + 2 * mat + 2 * vec));
    if (!s) return PE_ECUDA;
    float *host_rowloss = (float *)pe_cuda_host_scratch(b, sizeof(float) * (size_t)N);
    if (!host_rowloss) return PE_ECUDA;
    float *qn = s + logits, *dqn = qn + mat, *qnorm = dqn + mat, *rowloss = qnorm + vec;
    int rc;

    normalise_kernel<<<N, THREADS, 0, stream>>>(D, q, qn, qnorm);
    if ((rc = pe_cuda_launched("infonce: normalise q"))) return rc;
    normalise_kernel<<<N, THREADS, 0, stream>>>(D, k, kn, NULL);
    if ((rc = pe_cuda_launched("infonce: normalise k"))) return rc;
    /* the negatives' logits, after column 0 of each row */
    if ((rc = rm_gemm(b, "infonce: GEMM", 0, 1, N, K, D, qn, D, queue, D, s + 1, 1 + K))) return rc;
    softmax_kernel<<<N, THREADS, 0, stream>>>(N, K, D, T, qn, kn, s, rowloss);
    if ((rc = pe_cuda_launched("infonce: softmax"))) return rc;
    rc = pe_cuda_check(cudaMemcpyAsync(host_rowloss, rowloss, sizeof(float) * (size_t)N,
                                       cudaMemcpyDeviceToHost, stream),
                       "infonce: copy row losses");
    if (rc) return rc;
    /* dqn (N, D) = ds[:, 1:] queue; the positive's share is added per row */
    if ((rc = rm_gemm(b, "infonce: GEMM", 0, 0, N, D, K, s + 1, 1 + K, queue, D, dqn, D))) return rc;
    grad_kernel<<<N, THREADS, 0, stream>>>(K, D, T, qn, kn, qnorm, s, dqn, dq);
    if ((rc = pe_cuda_launched("infonce: gradient"))) return rc;
    if ((rc = pe_cuda_check(cudaStreamSynchronize(stream), "infonce"))) return rc;

    /* in row order on one thread, as the CPU */
    float total = 0;
    for (int i = 0; i < N; i++) total += host_rowloss[i];
    *loss = total / (float)N;
    return 0;
}
