/*
 * noise.cu - Gaussian noise added to a float array for the CUDA backend
 * (DP-SGD's noise on the sum of clipped gradients): one thread per
 * Box-Muller pair k (elements 2k and 2k + 1, grid-stride), each drawing its
 * Philox block from the counter k and the key through devmath.h, as
 * kernels/cpu/noise.c does. The values depend on the key and the
 * coordinates only, never on the launch shape.
 *
 * Not for: the augmentations' draws (lib/rng.c streams, augment.cu).
 *
 * Bits: Philox, the uniforms, sqrt and every product and sum are exact or
 * IEEE-rounded alike on both sides (--fmad=false), so the only difference
 * from the CPU is CUDA's double log, cos and sin (within 1-2 ulp of the
 * true value, as glibc's are within 1): z may differ in its last double
 * bits, which changes the float result only when the double lies within a
 * few double ulp of a halfway point between two floats (rare: about 2^-28
 * per element), and then by one float ulp.
 */
#include <math.h>

#include "cuda.h"

enum { THREADS = 256 };

static __global__ void noise_kernel(size_t n, uint32_t key0, uint32_t key1, double stddev,
                             double scale, const float *src, float *dst) {
    const uint32_t key[2] = {key0, key1};
    const size_t pairs = n / 2 + n % 2;
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < pairs;
         k += (size_t)gridDim.x * blockDim.x) {
        const size_t i = 2 * k;
        double r, a;
        pe_dm_gauss_polar(key, k, &r, &a);
        /* each thread reads and writes its own pair only: src may be dst */
        dst[i] = pe_dm_noised(src[i], stddev, r * cos(a), scale);
        if (i + 1 < n) dst[i + 1] = pe_dm_noised(src[i + 1], stddev, r * sin(a), scale);
    }
}

int pe_cuda_gauss_noise(pe_backend *b, size_t n, const uint32_t key[2], double stddev,
                        double scale, const float *src, float *dst) {
    if (n == 0) return 0;
    const size_t pairs = n / 2 + n % 2;
    noise_kernel<<<pe_cuda_blocks(pairs, THREADS), THREADS, 0, pe_cuda_of(b)->stream>>>(
        n, key[0], key[1], stddev, scale, src, dst);
    return pe_cuda_launched("gauss_noise");
}
