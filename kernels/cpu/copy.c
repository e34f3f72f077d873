/*
 * copy.c - device-to-device copy and fill for the CPU backend (plain memory
 * on the host). Not for: host transfers (upload/download in backend_cpu.c).
 */
#include <string.h>

#include "cpu.h"

int pe_cpu_copy(pe_backend *b, size_t n, const float *src, float *dst) {
    (void)b;
    if (n && src != dst) memmove(dst, src, n * sizeof *dst);
    return 0;
}

int pe_cpu_fill(pe_backend *b, size_t n, float value, float *dst) {
    (void)b;
    for (size_t i = 0; i < n; i++) dst[i] = value;
    return 0;
}
