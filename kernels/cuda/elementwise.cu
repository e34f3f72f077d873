/*
 * elementwise.cu - the CUDA backend's elementwise ops: relu forward and
 * backward, add, accumulate, copy and fill. Grid-stride loops over size_t
 * indices, one element per thread per step; each element is computed by
 * the same expression as kernels/cpu/elementwise.c and copy.c, so the
 * results equal the CPU's bit for bit (no reductions, no rounding beyond
 * one float add).
 *
 * Not for: the dense layer's bias (bias.cu), BatchNorm (bn.cu), or the
 * optimisers' and DP-SGD's per-element math (devmath.h via optim.cu,
 * axpy.cu, ema.cu).
 */
#include "cuda.h"

enum { THREADS = 256 };

#define GRID_STRIDE(i, n)                                                          \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);       \
         i += (size_t)gridDim.x * blockDim.x)

static __global__ void relu_fwd_kernel(size_t n, const float *x, float *y) {
    /* x < 0 as the CPU: -0 and NaN pass through unchanged */
    GRID_STRIDE(i, n) y[i] = x[i] < 0 ? 0.0f : x[i];
}

static __global__ void relu_bwd_kernel(size_t n, const float *y, const float *dy, float *dx) {
    GRID_STRIDE(i, n) {
        const float g = dy[i];
        dx[i] = y[i] <= 0 ? 0.0f : g;
    }
}

static __global__ void add_kernel(size_t n, const float *a, const float *c, float *y) {
    GRID_STRIDE(i, n) y[i] = a[i] + c[i];
}

static __global__ void accumulate_kernel(size_t n, const float *src, float *dst) {
    GRID_STRIDE(i, n) dst[i] += src[i];
}

static __global__ void fill_kernel(size_t n, float value, float *dst) {
    GRID_STRIDE(i, n) dst[i] = value;
}

int pe_cuda_relu_fwd(pe_backend *b, size_t n, const float *x, float *y) {
    if (n == 0) return 0;
    relu_fwd_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(n, x, y);
    return pe_cuda_launched("relu_fwd");
}

int pe_cuda_relu_bwd(pe_backend *b, size_t n, const float *y, const float *dy, float *dx) {
    if (n == 0) return 0;
    relu_bwd_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(n, y, dy,
                                                                                       dx);
    return pe_cuda_launched("relu_bwd");
}

int pe_cuda_add(pe_backend *b, size_t n, const float *a, const float *c, float *y) {
    if (n == 0) return 0;
    add_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(n, a, c, y);
    return pe_cuda_launched("add");
}

int pe_cuda_accumulate(pe_backend *b, size_t n, const float *src, float *dst) {
    if (n == 0) return 0;
    accumulate_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(n, src,
                                                                                         dst);
    return pe_cuda_launched("accumulate");
}

/* The CPU's copy is a memmove. cudaMemcpyAsync's result is undefined for
 * overlapping ranges, so an overlapping copy goes through the scratch. */
int pe_cuda_copy(pe_backend *b, size_t n, const float *src, float *dst) {
    if (n == 0 || src == dst) return 0;
    cudaStream_t stream = pe_cuda_of(b)->stream;
    const size_t bytes = n * sizeof *dst;
    const uintptr_t s = (uintptr_t)src, d = (uintptr_t)dst;
    if (s < d + bytes && d < s + bytes) {
        float *tmp = (float *)pe_cuda_scratch(b, bytes);
        if (!tmp) return PE_ECUDA;
        int rc = pe_cuda_check(
            cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, stream), "copy");
        if (rc) return rc;
        src = tmp;
    }
    return pe_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream),
                         "copy");
}

int pe_cuda_fill(pe_backend *b, size_t n, float value, float *dst) {
    if (n == 0) return 0;
    fill_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(n, value,
                                                                                   dst);
    return pe_cuda_launched("fill");
}
