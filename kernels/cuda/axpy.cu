/*
 * axpy.cu - y += a x for the CUDA backend (DP-SGD's sum of clipped group
 * gradients). Grid-stride, one element per thread per step, through
 * devmath.h's pe_dm_axpy (the product rounded, then the sum); with
 * --fmad=false nothing is fused, so the result equals kernels/cpu/axpy.c's
 * bit for bit.
 *
 * Not for: the plain dst += src (elementwise.cu's accumulate).
 */
#include "cuda.h"

enum { THREADS = 256 };

static __global__ void axpy_kernel(size_t n, float a, const float *x, float *y) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = pe_dm_axpy(a, x[i], y[i]);
}

int pe_cuda_axpy(pe_backend *b, size_t n, float a, const float *x, float *y) {
    if (n == 0) return 0;
    axpy_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(n, a, x, y);
    return pe_cuda_launched("axpy");
}
