/*
 * testrand.h - the unit tests' random data: splitmix64 uniforms and
 * float / double buffers (abort on out of memory). A test file defines
 * TEST_RNG_SEED before including it, so each file draws its own stream.
 */
#ifndef PE_TESTRAND_H
#define PE_TESTRAND_H

#include <stdint.h>
#include <stdlib.h>

#ifndef TEST_RNG_SEED
#error "define TEST_RNG_SEED before including testrand.h"
#endif

static uint64_t rng = TEST_RNG_SEED;

static inline double rnd(void) { /* splitmix64, uniform in [0, 1) */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static inline float *randf(size_t n, double lo, double hi) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) abort();
    for (size_t i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * rnd());
    return p;
}

static inline float *zerof(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) abort();
    return p;
}

static inline double *zerod(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) abort();
    return p;
}

#endif
