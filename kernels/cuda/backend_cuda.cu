/*
 * backend_cuda.cu - pe_backend_cuda(): the CUDA backend's constructor and
 * its memory: device allocation, host <-> device copies, the scratch
 * buffers, the library handles (one stream, one cuBLAS and one cuDNN
 * handle bound to it) and the status checks every op file uses.
 *
 * Not for: the ops themselves (one file each), choosing the device
 * (kernels/device.c) or loading this library (kernels/cuda_loader.c: the
 * backend is the shared object libpe-cuda.so, and its entry points are
 * the extern "C" pe_cuda_so_* functions).
 *
 * Copies: upload and download run on the backend's stream and wait for
 * it, so a download sees every op queued before it and the host buffer of
 * an upload may be reused as soon as the call returns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

/* ---- status checks ---- */

int pe_cuda_check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    return pe_fail(PE_ECUDA, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int pe_cuda_check_blas(cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    return pe_fail(PE_ECUDA, "%s: cuBLAS: %s", what, cublasGetStatusString(s));
}

int pe_cuda_check_dnn(cudnnStatus_t s, const char *what) {
    if (s == CUDNN_STATUS_SUCCESS) return 0;
    return pe_fail(PE_ECUDA, "%s: cuDNN: %s", what, cudnnGetErrorString(s));
}

int pe_cuda_launched(const char *what) { return pe_cuda_check(cudaGetLastError(), what); }

/* ---- scratch ---- */

void *pe_cuda_grow(pe_backend *b, void **buf, size_t *cap, size_t bytes, int pinned,
                   const char *what) {
    pe_cuda *g = pe_cuda_of(b);
    if (bytes <= *cap && *buf) return *buf;
    /* the old buffer may still be read by queued work */
    if (pe_cuda_check(cudaStreamSynchronize(g->stream), what)) return NULL;
    if (*buf) pinned ? cudaFreeHost(*buf) : cudaFree(*buf);
    *buf = NULL;
    *cap = 0;
    void *p = NULL;
    const size_t n = bytes ? bytes : 256;
    if (pe_cuda_check(pinned ? cudaMallocHost(&p, n) : cudaMalloc(&p, n), what)) {
        cudaGetLastError(); /* so no later launch check reports it */
        return NULL;
    }
    *buf = p;
    *cap = bytes;
    return p;
}

void *pe_cuda_scratch(pe_backend *b, size_t bytes) {
    pe_cuda *g = pe_cuda_of(b);
    return pe_cuda_grow(b, &g->scratch, &g->scratch_bytes, bytes, 0, "scratch: cudaMalloc");
}

void *pe_cuda_host_scratch(pe_backend *b, size_t bytes) {
    pe_cuda *g = pe_cuda_of(b);
    return pe_cuda_grow(b, &g->host, &g->host_bytes, bytes, 1, "host scratch: cudaMallocHost");
}

/* ---- memory ---- */

static void *cuda_alloc(pe_backend *b, size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* so no later launch check reports it */
        pe_fail(PE_ECUDA, "cannot allocate %zu bytes on GPU %d: %s", bytes,
                pe_cuda_of(b)->device, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

static void cuda_free(pe_backend *b, void *p) {
    (void)b;
    if (p) cudaFree(p);
}

static int cuda_upload(pe_backend *b, void *dst, const void *src, size_t bytes) {
    pe_cuda *g = pe_cuda_of(b);
    if (!bytes) return 0;
    int rc = pe_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g->stream),
                           "upload");
    return rc ? rc : pe_cuda_check(cudaStreamSynchronize(g->stream), "upload");
}

static int cuda_download(pe_backend *b, void *dst, const void *src, size_t bytes) {
    pe_cuda *g = pe_cuda_of(b);
    if (!bytes) return 0;
    int rc = pe_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g->stream),
                           "download");
    return rc ? rc : pe_cuda_check(cudaStreamSynchronize(g->stream), "download");
}

static void cuda_destroy(pe_backend *b) {
    if (!b) return;
    pe_cuda *g = pe_cuda_of(b);
    if (g) {
        pe_cuda_leave(g); /* first: aborting the group ends any collective still queued */
        if (g->stream) cudaStreamSynchronize(g->stream);
        if (g->scratch) cudaFree(g->scratch);
        if (g->bf16) cudaFree(g->bf16);
        if (g->host) cudaFreeHost(g->host);
        if (g->tx) cudnnDestroyTensorDescriptor(g->tx);
        if (g->ty) cudnnDestroyTensorDescriptor(g->ty);
        if (g->tbn) cudnnDestroyTensorDescriptor(g->tbn);
        if (g->fw) cudnnDestroyFilterDescriptor(g->fw);
        if (g->conv) cudnnDestroyConvolutionDescriptor(g->conv);
        if (g->dnn) cudnnDestroy(g->dnn);
        if (g->blas) cublasDestroy(g->blas);
        if (g->stream) cudaStreamDestroy(g->stream);
        free(g->plans);
        free(g);
    }
    free(b);
}

/* ---- construction: the library's entry points (kernels/cuda_loader.c
 * finds them with dlsym) ---- */

extern "C" unsigned pe_cuda_so_abi(void) { return PE_BACKEND_ABI; }

extern "C" int pe_cuda_so_devices(const char **why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-less error for later calls */
        if (why) *why = cudaGetErrorString(e);
        return 0;
    }
    if (n == 0 && why) *why = "no CUDA GPU found";
    return n;
}

static int setup(pe_backend *b, pe_cuda *g) {
    int rc;
    if ((rc = pe_cuda_check(cudaSetDevice(g->device), "cudaSetDevice")) ||
        (rc = pe_cuda_check(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking),
                            "cudaStreamCreate")) ||
        (rc = pe_cuda_check_blas(cublasCreate(&g->blas), "cublasCreate")) ||
        (rc = pe_cuda_check_blas(cublasSetStream(g->blas, g->stream), "cublasSetStream")) ||
        (rc = pe_cuda_check_dnn(cudnnCreate(&g->dnn), "cudnnCreate")) ||
        (rc = pe_cuda_check_dnn(cudnnSetStream(g->dnn, g->stream), "cudnnSetStream")) ||
        (rc = pe_cuda_check_dnn(cudnnCreateTensorDescriptor(&g->tx), "tensor descriptor")) ||
        (rc = pe_cuda_check_dnn(cudnnCreateTensorDescriptor(&g->ty), "tensor descriptor")) ||
        (rc = pe_cuda_check_dnn(cudnnCreateTensorDescriptor(&g->tbn), "tensor descriptor")) ||
        (rc = pe_cuda_check_dnn(cudnnCreateFilterDescriptor(&g->fw), "filter descriptor")) ||
        (rc = pe_cuda_check_dnn(cudnnCreateConvolutionDescriptor(&g->conv),
                                "convolution descriptor")))
        return rc;
    /* cuBLAS's default math never uses TF32 for float GEMMs (as PyTorch
     * with allow_tf32 off); TF32 opts in. BF16 GEMMs go through
     * cublasGemmEx with bf16 operands whatever the mode (gemm.cu). */
    const cublasMath_t mode =
        g->precision == PE_PREC_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    if ((rc = pe_cuda_check_blas(cublasSetMathMode(g->blas, mode), "cublasSetMathMode")))
        return rc;
    (void)b;
    return 0;
}

extern "C" pe_backend *pe_cuda_so_open(int device, pe_precision precision, int deterministic) {
    const char *why = NULL;
    int n = pe_cuda_so_devices(&why);
    if (n == 0) {
        pe_fail(PE_ECUDA, "--device cuda: no GPU found (%s)", why ? why : "no CUDA GPU found");
        return NULL;
    }
    if (device < 0 || device >= n) {
        pe_fail(PE_ECUDA, "--device cuda:%d: this machine has %d GPU%s (0 to %d)", device, n,
                n == 1 ? "" : "s", n - 1);
        return NULL;
    }
    pe_backend *b = (pe_backend *)calloc(1, sizeof *b);
    pe_cuda *g = (pe_cuda *)calloc(1, sizeof *g);
    if (!b || !g) {
        free(b);
        free(g);
        pe_fail(ENOMEM, "out of memory for the CUDA backend");
        return NULL;
    }
    g->device = device;
    g->precision = precision;
    g->deterministic = deterministic;
    b->name = "cuda";
    b->impl = g;
    if (setup(b, g)) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", pe_errmsg());
        cuda_destroy(b);
        pe_fail(PE_ECUDA, "%s", msg);
        return NULL;
    }
    b->alloc = cuda_alloc;
    b->free = cuda_free;
    b->upload = cuda_upload;
    b->download = cuda_download;
    b->conv_workspace = pe_cuda_conv_workspace;
    b->conv_fwd = pe_cuda_conv_fwd;
    b->conv_bwd_data = pe_cuda_conv_bwd_data;
    b->conv_bwd_filter = pe_cuda_conv_bwd_filter;
    b->bn_fwd_train = pe_cuda_bn_fwd_train;
    b->bn_fwd_eval = pe_cuda_bn_fwd_eval;
    b->bn_bwd = pe_cuda_bn_bwd;
    b->relu_fwd = pe_cuda_relu_fwd;
    b->relu_bwd = pe_cuda_relu_bwd;
    b->add = pe_cuda_add;
    b->accumulate = pe_cuda_accumulate;
    b->copy = pe_cuda_copy;
    b->fill = pe_cuda_fill;
    b->avgpool_fwd = pe_cuda_avgpool_fwd;
    b->avgpool_bwd = pe_cuda_avgpool_bwd;
    b->gemm = pe_cuda_gemm;
    b->bias_add = pe_cuda_bias_add;
    b->bias_bwd = pe_cuda_bias_bwd;
    b->ntxent = pe_cuda_ntxent;
    b->infonce = pe_cuda_infonce;
    b->ema = pe_cuda_ema;
    b->sumsq = pe_cuda_sumsq;
    b->axpy = pe_cuda_axpy;
    b->gauss_noise = pe_cuda_gauss_noise;
    b->adam = pe_cuda_adam;
    b->sgd = pe_cuda_sgd;
    b->augment = pe_cuda_augment;
    b->allreduce_mean = NULL; /* set by pe_backend_join (nccl.cu) */
    b->destroy = cuda_destroy;
    return b;
}
