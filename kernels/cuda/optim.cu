/*
 * optim.cu - the CUDA backend's optimiser steps on flat parameter arrays:
 * Adam (L2 weight decay, as torch.optim.Adam, not AdamW) and SGD with
 * momentum (as torch.optim.SGD, dampening 0, no Nesterov). Grid-stride,
 * one parameter per thread per step, through devmath.h's pe_dm_adam and
 * pe_dm_sgd. Adam's per-step constants come from pe_dm_adam_consts on the
 * host (pow in double, as the CPU) and are passed by value. With
 * --fmad=false and the IEEE sqrtf and division nvcc uses by default, the
 * results equal kernels/cpu/optim.c's bit for bit.
 *
 * Not for: learning-rate schedules, gradient clipping, parameter groups
 * (lib/train.c).
 */
#include "cuda.h"

enum { THREADS = 256 };

static __global__ void adam_kernel(size_t n, pe_dm_adam_k k, float *p, const float *g, float *m,
                            float *v) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        pe_dm_adam(&k, &p[i], g[i], &m[i], &v[i]);
}

static __global__ void sgd_kernel(size_t n, float *p, const float *g, float *buf, float lr,
                           float momentum, float wd, int first) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        pe_dm_sgd(&p[i], g[i], buf ? &buf[i] : NULL, lr, momentum, wd, first);
}

int pe_cuda_adam(pe_backend *b, size_t n, float *p, const float *g, float *m, float *v,
                 float lr, float b1, float b2, float eps, float wd, long t) {
    PE_ASSERT(t >= 1);
    if (n == 0) return 0;
    const pe_dm_adam_k k = pe_dm_adam_consts(lr, b1, b2, eps, wd, t);
    adam_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(n, k, p, g,
                                                                                   m, v);
    return pe_cuda_launched("adam");
}

/* buf may be NULL when momentum == 0: pe_dm_sgd never touches it then */
int pe_cuda_sgd(pe_backend *b, size_t n, float *p, const float *g, float *buf, float lr,
                float momentum, float wd, int first) {
    PE_ASSERT(momentum == 0 || buf != NULL);
    if (n == 0) return 0;
    sgd_kernel<<<pe_cuda_blocks(n, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(
        n, p, g, buf, lr, momentum, wd, first);
    return pe_cuda_launched("sgd");
}
