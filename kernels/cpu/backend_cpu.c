/*
 * backend_cpu.c - pe_backend_cpu(): the CPU backend's constructor. Fills
 * every member of pe_backend with the op of the same name from
 * kernels/cpu/<op>.c, and owns the thread pool and the scratch buffer.
 *
 * Not for: the ops themselves (one file each) or their reference (ref.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"
#include "pe.h"

void *pe_cpu_alloc_aligned(size_t bytes) {
    /* C11 aligned_alloc wants a size that is a multiple of the alignment */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    return aligned_alloc(64, rounded ? rounded : 64);
}

void pe_cpu_free_aligned(void *p) { free(p); }

void *pe_cpu_scratch(pe_backend *b, size_t bytes) {
    pe_cpu *cpu = pe_cpu_of(b);
    if (bytes <= cpu->scratch_bytes) return cpu->scratch;
    void *p = pe_cpu_alloc_aligned(bytes);
    if (!p) return NULL;
    pe_cpu_free_aligned(cpu->scratch);
    cpu->scratch = p;
    cpu->scratch_bytes = bytes;
    return p;
}

static void *cpu_alloc(pe_backend *b, size_t bytes) {
    (void)b;
    return pe_cpu_alloc_aligned(bytes);
}

static void cpu_free(pe_backend *b, void *p) {
    (void)b;
    pe_cpu_free_aligned(p);
}

static int cpu_copy(pe_backend *b, void *dst, const void *src, size_t bytes) {
    (void)b;
    if (bytes) memmove(dst, src, bytes);
    return 0;
}

static void cpu_destroy(pe_backend *b) {
    if (!b) return;
    pe_cpu *cpu = pe_cpu_of(b);
    pe_cpu_pool_close(cpu->pool);
    pe_cpu_free_aligned(cpu->scratch);
    free(cpu);
    free(b);
}

pe_backend *pe_backend_cpu(int nthreads) {
    if (nthreads <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = online > 0 ? (int)online : 1;
    }
    pe_cpu_blas_setup();

    pe_backend *b = calloc(1, sizeof *b);
    pe_cpu *cpu = calloc(1, sizeof *cpu);
    if (!b || !cpu) goto fail;
    cpu->nthreads = nthreads;
    cpu->avx2 = pe_cpu_has_avx2() && !getenv("PE_CPU_SCALAR");
    if (pe_cpu_pool_open(&cpu->pool, nthreads) != 0) goto fail;

    b->name = "cpu";
    b->impl = cpu;
    b->alloc = cpu_alloc;
    b->free = cpu_free;
    b->upload = cpu_copy;
    b->download = cpu_copy;
    b->conv_workspace = pe_cpu_conv_workspace;
    b->conv_fwd = pe_cpu_conv_fwd;
    b->conv_bwd_data = pe_cpu_conv_bwd_data;
    b->conv_bwd_filter = pe_cpu_conv_bwd_filter;
    b->bn_fwd_train = pe_cpu_bn_fwd_train;
    b->bn_fwd_eval = pe_cpu_bn_fwd_eval;
    b->bn_bwd = pe_cpu_bn_bwd;
    b->relu_fwd = pe_cpu_relu_fwd;
    b->relu_bwd = pe_cpu_relu_bwd;
    b->add = pe_cpu_add;
    b->accumulate = pe_cpu_accumulate;
    b->copy = pe_cpu_copy;
    b->fill = pe_cpu_fill;
    b->avgpool_fwd = pe_cpu_avgpool_fwd;
    b->avgpool_bwd = pe_cpu_avgpool_bwd;
    b->gemm = pe_cpu_gemm;
    b->bias_add = pe_cpu_bias_add;
    b->bias_bwd = pe_cpu_bias_bwd;
    b->ntxent = pe_cpu_ntxent;
    b->infonce = pe_cpu_infonce;
    b->ema = pe_cpu_ema;
    b->sumsq = pe_cpu_sumsq;
    b->axpy = pe_cpu_axpy;
    b->gauss_noise = pe_cpu_gauss_noise;
    b->adam = pe_cpu_adam;
    b->sgd = pe_cpu_sgd;
    b->destroy = cpu_destroy;
    return b;

fail:
    free(cpu);
    free(b);
    return NULL;
}
