/*
 * bias.cu - the dense layer's bias for the CUDA backend: y (N, out) += bias
 * row-wise, and dbias (out) = the column sums of dy (N, out).
 *
 * Not for: the GEMM itself (gemm.cu) or per-channel convolution biases
 * (the networks here put BatchNorm there instead).
 *
 * Order: bias_add is one float add per element (grid-stride, one element
 * per thread per step). bias_bwd runs one thread per column, summing rows
 * 0..N-1 in float from 0, the order of kernels/cpu/elementwise.c and
 * ref_body.h; neighbouring threads read neighbouring columns of a row, so
 * the loads coalesce. No atomics: both equal the CPU's bit for bit and do
 * not change from run to run.
 */
#include "cuda.h"

enum { THREADS = 256 };

static __global__ void bias_add_kernel(size_t n, int out, const float *bias, float *y) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += bias[i % out];
}

static __global__ void bias_bwd_kernel(int N, int out, const float *dy, float *dbias) {
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < (size_t)out;
         j += (size_t)gridDim.x * blockDim.x) {
        float sum = 0;
        for (int i = 0; i < N; i++) sum += dy[(size_t)i * out + j];
        dbias[j] = sum;
    }
}

int pe_cuda_bias_add(pe_backend *b, int N, int out, const float *bias, float *y) {
    PE_ASSERT(N >= 0 && out >= 0);
    if (N == 0 || out == 0) return 0;
    const size_t n = (size_t)N * out;
    bias_add_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(
        n, out, bias, y);
    return pe_cuda_launched("bias_add");
}

/* N == 0 still writes zeros, as the CPU does */
int pe_cuda_bias_bwd(pe_backend *b, int N, int out, const float *dy, float *dbias) {
    PE_ASSERT(N >= 0 && out >= 0);
    if (out == 0) return 0;
    bias_bwd_kernel<<<pe_cuda_blocks((size_t)out, THREADS), THREADS, 0,
                      pe_cuda_of(b)->stream>>>(N, out, dy, dbias);
    return pe_cuda_launched("bias_bwd");
}
