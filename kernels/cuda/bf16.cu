/*
 * bf16.cu - the staging of --precision bf16: a device buffer for bf16
 * copies of a convolution's or GEMM's operands, and the conversions float
 * -> bf16 (round to nearest even, __float2bfloat16_rn) and bf16 -> float
 * (exact).
 *
 * Not for: anything that keeps state in bf16. Parameters, gradients,
 * activations and optimiser state stay float (fp32 master weights); only
 * the operands of the matrix products are rounded.
 */
#include "cuda.h"

__nv_bfloat16 *pe_cuda_bf16_scratch(pe_backend *b, size_t n) {
    pe_cuda *g = pe_cuda_of(b);
    return (__nv_bfloat16 *)pe_cuda_grow(b, &g->bf16, &g->bf16_bytes, n * sizeof(__nv_bfloat16), 0,
                                         "bf16 staging: cudaMalloc");
}

__global__ static void to_bf16(size_t n, const float *src, __nv_bfloat16 *dst) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ static void from_bf16(size_t n, const __nv_bfloat16 *src, float *dst) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

int pe_cuda_to_bf16(pe_backend *b, size_t n, const float *src, __nv_bfloat16 *dst) {
    if (n == 0) return 0;
    to_bf16<<<pe_cuda_blocks(n, 256), 256, 0, pe_cuda_of(b)->stream>>>(n, src, dst);
    return pe_cuda_launched("float to bf16");
}

int pe_cuda_from_bf16(pe_backend *b, size_t n, const __nv_bfloat16 *src, float *dst) {
    if (n == 0) return 0;
    from_bf16<<<pe_cuda_blocks(n, 256), 256, 0, pe_cuda_of(b)->stream>>>(n, src, dst);
    return pe_cuda_launched("bf16 to float");
}
