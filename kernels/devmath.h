/*
 * devmath.h - the per-element math that both backends run: optimiser
 * updates, the momentum copy, DP-SGD's axpy and Gaussian noise, and the
 * Philox generator under them. Each function is `__host__ __device__` when
 * nvcc compiles it (kernels/cuda/) and a plain static inline function for
 * the C compiler (kernels/cpu/, lib/rng.c), so the CPU tests already check
 * the arithmetic the GPU kernels run.
 *
 * Not for: loops, threads or memory layout (each backend's op files), or
 * reductions whose order is part of an op's contract (sumsq, batch norm).
 *
 * Floating point: every function is written in the order of operations of
 * the PyTorch code it mirrors, each float operation rounded on its own.
 * The C build (-std=c11) never contracts a*b+c into a fused multiply-add;
 * nvcc contracts by default, so kernels/cuda/ is built with --fmad=false
 * and the device's sqrtf and division are the IEEE ones (nvcc's default
 * -prec-sqrt=true -prec-div=true). The GPU then computes the same bits as
 * the CPU for everything here except log, cos and sin in the noise, whose
 * last bits follow each math library.
 */
#ifndef PE_DEVMATH_H
#define PE_DEVMATH_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define PE_HD __host__ __device__ static inline
#else
#define PE_HD static inline
#endif

/* ---- Philox4x32-10 (Salmon et al. 2011), as lib/rng.h documents ---- */

#define PE_PHILOX_M0 0xD2511F53u
#define PE_PHILOX_M1 0xCD9E8D57u
#define PE_PHILOX_W0 0x9E3779B9u
#define PE_PHILOX_W1 0xBB67AE85u

PE_HD void pe_dm_philox(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PE_PHILOX_W0;
            k1 += PE_PHILOX_W1;
        }
        const uint64_t p0 = (uint64_t)PE_PHILOX_M0 * c0;
        const uint64_t p1 = (uint64_t)PE_PHILOX_M1 * c2;
        const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        const uint32_t o1 = c1, o3 = c3;
        c0 = hi1 ^ o1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ o3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* ---- DP-SGD ---- */

/* The two uniforms of Box-Muller pair k (elements 2k and 2k + 1) of
 * backend.h's gauss_noise, turned into radius r and angle a: the pair's
 * normals are r cos(a) and r sin(a). */
PE_HD void pe_dm_gauss_polar(const uint32_t key[2], uint64_t k, double *r, double *a) {
    const uint32_t ctr[4] = {(uint32_t)k, (uint32_t)(k >> 32), 0, 0};
    uint32_t w[4];
    pe_dm_philox(ctr, key, w);
    const double u1 = (double)(((uint64_t)w[0] << 32 | w[1]) >> 11) * 0x1p-53;
    const double u2 = (double)(((uint64_t)w[2] << 32 | w[3]) >> 11) * 0x1p-53;
    *r = sqrt(-2.0 * log(1.0 - u1));
    *a = 2.0 * 3.14159265358979323846 * u2;
}

/* One noised element: (src + stddev z) scale in double, rounded to float. */
PE_HD float pe_dm_noised(float src, double stddev, double z, double scale) {
    return (float)(((double)src + stddev * z) * scale);
}

/* y + a x with the product rounded before the sum. */
PE_HD float pe_dm_axpy(float a, float x, float y) {
    const float ax = a * x;
    return y + ax;
}

/* ---- the momentum copy (MoCo's key encoder) ---- */

/* m dst + (1 - m) src, each product rounded, then the sum; m and 1 - m
 * are the floats of backend.h's ema. */
PE_HD float pe_dm_ema(float dst, float src, float m, float one_minus_m) {
    const float keep = dst * m, take = src * one_minus_m;
    return keep + take;
}

/* ---- optimisers ---- */

/* Adam's per-step constants, from lr, b1, b2 and the step t (backend.h's
 * adam): computed once on the host, in double then rounded, as
 * torch.optim.Adam's single-tensor path does. */
typedef struct pe_dm_adam_k {
    float b1, b2, eps, wd;
    float step_size;    /* lr / (1 - b1^t) */
    float bc2_sqrt;     /* sqrt(1 - b2^t) */
    float one_minus_b1; /* 1 - b1 */
    float one_minus_b2; /* 1 - b2 */
} pe_dm_adam_k;

/* The constants for step t >= 1 (host code: pow in double). */
static inline pe_dm_adam_k pe_dm_adam_consts(float lr, float b1, float b2, float eps, float wd,
                                             long t) {
    const double bc1 = 1 - pow((double)b1, (double)t);
    const double bc2 = 1 - pow((double)b2, (double)t);
    pe_dm_adam_k k = {b1, b2, eps, wd, (float)((double)lr / bc1), (float)sqrt(bc2),
                      (float)(1 - (double)b1), (float)(1 - (double)b2)};
    return k;
}

/* One parameter's Adam step: updates *p, *m and *v in place. */
PE_HD void pe_dm_adam(const pe_dm_adam_k *k, float *p, float g, float *m, float *v) {
    const float gi = k->wd != 0 ? g + k->wd * *p : g;
    *m = *m * k->b1 + k->one_minus_b1 * gi;
    *v = *v * k->b2 + k->one_minus_b2 * gi * gi;
    const float denom = sqrtf(*v) / k->bc2_sqrt + k->eps;
    *p = *p - k->step_size * (*m / denom);
}

/* One parameter's SGD step (momentum buffer *buf used when momentum != 0;
 * first: the buffer starts as the gradient). */
PE_HD void pe_dm_sgd(float *p, float g, float *buf, float lr, float momentum, float wd,
                     int first) {
    float gi = wd != 0 ? g + wd * *p : g;
    if (momentum != 0) {
        *buf = first ? gi : momentum * *buf + gi;
        gi = *buf;
    }
    *p = *p - lr * gi;
}

#endif
