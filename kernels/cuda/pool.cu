/*
 * pool.cu - global average pooling for the CUDA backend: y (N,C) = mean
 * over HW of x (N,C,HW), and its backward.
 *
 * Not for: windowed pooling (no model here uses it).
 *
 * Order: the forward runs one thread per (n,c) row, summing its HW floats
 * first to last in float and then dividing by (float)HW, exactly as
 * kernels/cpu/pool.c, so y equals the CPU's bit for bit. (Neighbouring
 * threads read rows HW floats apart, so loads are not coalesced; HW is 49
 * or less at the end of the networks here and the op is tiny.) The
 * backward runs one thread per element of dx, each computing dy / (float)HW
 * as the CPU does: also bit for bit.
 */
#include "cuda.h"

enum { THREADS = 256 };

static __global__ void avgpool_fwd_kernel(size_t rows, int HW, const float *x, float *y) {
    for (size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows;
         r += (size_t)gridDim.x * blockDim.x) {
        const float *xr = x + r * HW;
        float sum = 0;
        for (int i = 0; i < HW; i++) sum += xr[i];
        y[r] = sum / (float)HW;
    }
}

static __global__ void avgpool_bwd_kernel(size_t n, int HW, const float *dy, float *dx) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dx[i] = dy[i / HW] / (float)HW;
}

int pe_cuda_avgpool_fwd(pe_backend *b, int N, int C, int HW, const float *x, float *y) {
    PE_ASSERT(N >= 0 && C >= 0 && HW > 0);
    const size_t rows = (size_t)N * C;
    if (rows == 0) return 0;
    avgpool_fwd_kernel<<<pe_cuda_blocks(rows, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(
        rows, HW, x, y);
    return pe_cuda_launched("avgpool_fwd");
}

int pe_cuda_avgpool_bwd(pe_backend *b, int N, int C, int HW, const float *dy, float *dx) {
    PE_ASSERT(N >= 0 && C >= 0 && HW > 0);
    const size_t n = (size_t)N * C * HW;
    if (n == 0) return 0;
    avgpool_bwd_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(
        n, HW, dy, dx);
    return pe_cuda_launched("avgpool_bwd");
}
