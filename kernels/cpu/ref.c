/*
 * ref.c - instantiates the scalar reference (ref_body.h) in float
 * (pe_ref_*) and in double (pe_refd_*). See ref.h.
 *
 * Not for: speed. Nothing here is threaded or vectorised on purpose.
 */
#include <stdlib.h>
#include <tgmath.h>

#include "pe.h"
#include "ref.h"
#include "rng.h"

#define REAL float
#define REF(name) pe_ref_##name
#include "ref_body.h"
#undef REF
#undef REAL

#define REAL double
#define REF(name) pe_refd_##name
#include "ref_body.h"
#undef REF
#undef REAL

/* ---- DP-SGD's ops, float only, in backend.h's exact order ---- */

double pe_ref_sumsq(size_t n, const float *x) {
    double total = 0;
    for (size_t lo = 0; lo < n; lo += PE_SUMSQ_CHUNK) {
        double s = 0;
        for (size_t i = lo; i < n && i < lo + PE_SUMSQ_CHUNK; i++) s += (double)x[i] * x[i];
        total += s;
    }
    return total;
}

void pe_ref_axpy(size_t n, float a, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) {
        float ax = a * x[i];
        y[i] += ax;
    }
}

void pe_ref_gauss_noise(size_t n, const uint32_t key[2], double stddev, double scale,
                        const float *src, float *dst) {
    for (size_t i = 0; i < n; i++) {
        const uint64_t k = i / 2;
        const uint32_t ctr[4] = {(uint32_t)k, (uint32_t)(k >> 32), 0, 0};
        uint32_t w[4];
        pe_philox4x32_10(ctr, key, w);
        double u1 = (double)(((uint64_t)w[0] << 32 | w[1]) >> 11) * 0x1p-53;
        double u2 = (double)(((uint64_t)w[2] << 32 | w[3]) >> 11) * 0x1p-53;
        double r = sqrt(-2.0 * log(1.0 - u1)), a = 2.0 * M_PI * u2;
        double z = i % 2 ? r * sin(a) : r * cos(a);
        dst[i] = (float)(((double)src[i] + stddev * z) * scale);
    }
}
