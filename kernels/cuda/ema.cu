/*
 * ema.cu - the momentum (exponential moving average) update of a copy of
 * the parameters for the CUDA backend: MoCo's key encoder, dst = m dst +
 * (1 - m) src. Grid-stride, one element per thread per step, through
 * devmath.h's pe_dm_ema with m and 1 - m rounded to float on the host as
 * kernels/cpu/ema.c does; with --fmad=false nothing is fused, so the
 * result equals the CPU's bit for bit.
 *
 * Not for: the optimisers' moment estimates (optim.cu).
 */
#include "cuda.h"

enum { THREADS = 256 };

static __global__ void ema_kernel(size_t n, const float *src, float *dst, float m,
                                  float one_minus_m) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = pe_dm_ema(dst[i], src[i], m, one_minus_m);
}

int pe_cuda_ema(pe_backend *b, size_t n, const float *src, float *dst, double m) {
    PE_ASSERT(m >= 0 && m <= 1);
    if (n == 0) return 0;
    ema_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(
        n, src, dst, (float)m, (float)(1.0 - m));
    return pe_cuda_launched("ema");
}
