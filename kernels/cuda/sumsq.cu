/*
 * sumsq.cu - the sum of squares of a float array for the CUDA backend (the
 * L2 norm of a group's gradient in DP-SGD), in backend.h's fixed order:
 * one thread per chunk of PE_SUMSQ_CHUNK elements sums (double)x[i] * x[i]
 * in double in index order; the chunk sums go to device scratch, are
 * copied to pinned host scratch, and are summed in chunk order on the
 * host, as kernels/cpu/sumsq.c does. The result equals the CPU's bit for
 * bit: the products and sums are IEEE double operations on both sides,
 * written with __dmul_rn and __dadd_rn so that no build flag can fuse them
 * into an FMA.
 *
 * Not for: sums whose order is free (use a tree), or float accumulation.
 *
 * Speed: one thread walks 16 KiB serially, so neighbouring threads' loads
 * are 16 KiB apart and the chain of dependent double adds sets the time
 * (a few tens of microseconds for 25M parameters): the order is the
 * contract, and the op runs once per parameter group per step.
 */
#include "cuda.h"

enum { THREADS = 128 };

static __global__ void sumsq_kernel(size_t n, size_t nchunks, const float *x, double *part) {
    for (size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x; c < nchunks;
         c += (size_t)gridDim.x * blockDim.x) {
        const size_t lo = c * PE_SUMSQ_CHUNK;
        const size_t hi = lo + PE_SUMSQ_CHUNK < n ? lo + PE_SUMSQ_CHUNK : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++) {
            const double v = x[i];
            s = __dadd_rn(s, __dmul_rn(v, v));
        }
        part[c] = s;
    }
}

int pe_cuda_sumsq(pe_backend *b, size_t n, const float *x, double *out) {
    if (n == 0) {
        *out = 0;
        return 0;
    }
    cudaStream_t stream = pe_cuda_of(b)->stream;
    const size_t nchunks = (n + PE_SUMSQ_CHUNK - 1) / PE_SUMSQ_CHUNK;
    const size_t bytes = nchunks * sizeof(double);
    double *part = (double *)pe_cuda_scratch(b, bytes);
    if (!part) return PE_ECUDA;
    double *host = (double *)pe_cuda_host_scratch(b, bytes);
    if (!host) return PE_ECUDA;

    sumsq_kernel<<<pe_cuda_blocks(nchunks, THREADS), THREADS, 0, stream>>>(n, nchunks, x, part);
    int rc = pe_cuda_launched("sumsq");
    if (rc) return rc;
    rc = pe_cuda_check(cudaMemcpyAsync(host, part, bytes, cudaMemcpyDeviceToHost, stream),
                       "sumsq: copy to host");
    if (rc) return rc;
    rc = pe_cuda_check(cudaStreamSynchronize(stream), "sumsq");
    if (rc) return rc;

    double s = 0;
    for (size_t c = 0; c < nchunks; c++) s += host[c];
    *out = s;
    return 0;
}
