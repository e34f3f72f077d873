/*
 * cuda.h - private to the CUDA backend (kernels/cuda/, compiled by nvcc as
 * CUDA C++): the backend's state, the status checks, and the entry point of
 * each op file that backend_cuda.cu puts into pe_backend.
 *
 * Not for: code outside kernels/cuda/. Model code sees backend.h only.
 *
 * Every op runs on the backend's one stream, so ops are ordered as they are
 * called; an op that returns a host value (ntxent's and infonce's loss,
 * sumsq) synchronises the stream. Every CUDA, cuBLAS and cuDNN status is
 * checked: a failure becomes pe_fail(PE_ECUDA, "<op>: <library's
 * message>") and the op returns that code. Kernel launches are checked
 * with cudaGetLastError right after the launch (pe_cuda_launched).
 *
 * One backend serves one calling thread at a time; ops are not reentrant.
 * The GPU is made current (cudaSetDevice) for the thread that opens the
 * backend; a program that drives it from another thread, or opens
 * backends on two GPUs in one thread, must call cudaSetDevice itself (pe's
 * programs do neither: the trainer's loader thread never calls the
 * backend).
 */
#ifndef PE_KERNELS_CUDA_H
#define PE_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

extern "C" {
#include "backend.h"
#include "pe.h"
}
#include "devmath.h"

/* cuDNN's chosen algorithms for one convolution shape */
typedef struct pe_cuda_conv_plan {
    pe_conv_desc d;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    /* the math type each algorithm was timed or ranked with: cuDNN's
     * answers are (algorithm, math type) pairs, and an algorithm run with
     * another math type may pick a slower kernel or need more workspace */
    cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math;
    size_t workspace; /* bytes: the largest of the three */
} pe_cuda_conv_plan;

typedef struct pe_cuda {
    int device;
    pe_precision precision;
    int deterministic;
    cudaStream_t stream;
    cublasHandle_t blas;
    cudnnHandle_t dnn;
    /* descriptors reused by every op (set per call; cuDNN copies what it
     * needs when called) */
    cudnnTensorDescriptor_t tx, ty, tbn;
    cudnnFilterDescriptor_t fw;
    cudnnConvolutionDescriptor_t conv;
    /* the eps of the last training-mode batch norm: cuDNN's backward
     * wants it again (backend.h's bn_bwd does not pass it; every batch
     * norm of a model has the same eps); have_bn_eps once one ran */
    double bn_eps;
    int have_bn_eps;
    /* why choosing a convolution's algorithms last failed ("" if never):
     * conv_workspace cannot return an error, so the op that finds no
     * plan reports this */
    char conv_err[512];
    /* the algorithm cache: one plan per convolution shape seen */
    pe_cuda_conv_plan *plans;
    int nplans, cap_plans;
    /* device scratch for ops that take no workspace argument; grown on
     * demand, freed by destroy (pe_cuda_scratch) */
    void *scratch;
    size_t scratch_bytes;
    /* pinned host memory for values an op returns to the host */
    void *host;
    size_t host_bytes;
    /* the data-parallel group (ncclComm_t, nccl.cu), or NULL; sync_bn:
     * training-mode batch norm takes its statistics over the group
     * (syncbn.cu) */
    void *nccl;
    int rank, world;
    int sync_bn;
    /* bf16 staging for --precision bf16 (pe_cuda_bf16_scratch) */
    void *bf16;
    size_t bf16_bytes;
} pe_cuda;

static inline pe_cuda *pe_cuda_of(pe_backend *b) { return (pe_cuda *)b->impl; }

/* Status checks: 0 when ok, else pe_fail(PE_ECUDA, "what: message"). */
int pe_cuda_check(cudaError_t e, const char *what);
int pe_cuda_check_blas(cublasStatus_t s, const char *what);
int pe_cuda_check_dnn(cudnnStatus_t s, const char *what);
/* After a <<<...>>> launch: cudaGetLastError, checked. */
int pe_cuda_launched(const char *what);

/* Grows *buf (device memory, or pinned host memory when pinned) to at
 * least `bytes`, *cap its size: waits for the stream before freeing the
 * old buffer, which queued work may still read. NULL with the error set
 * (what: the message's prefix) on failure. */
void *pe_cuda_grow(pe_backend *b, void **buf, size_t *cap, size_t bytes, int pinned,
                   const char *what);

/* Device scratch of at least `bytes` (NULL and an error set on failure);
 * valid until the next call. Pinned host scratch likewise. The two are
 * separate buffers: growing one leaves the other valid. */
void *pe_cuda_scratch(pe_backend *b, size_t bytes);
void *pe_cuda_host_scratch(pe_backend *b, size_t bytes);

/* n rounded up to a multiple of 128 elements, so that tensors carved one
 * after another out of a buffer each start 256-byte aligned (bf16) */
static inline size_t pe_cuda_align_n(size_t n) { return (n + 127) & ~(size_t)127; }

/* Blocks for a 1-D launch over n elements with `threads` per block,
 * capped so a grid-stride loop covers the rest. */
static inline unsigned pe_cuda_blocks(size_t n, unsigned threads) {
    size_t blocks = (n + threads - 1) / threads;
    if (blocks > 65535u * 32u) blocks = 65535u * 32u;
    return blocks ? (unsigned)blocks : 1u;
}

/* bf16.cu: --precision bf16's staging. A device buffer of at least n
 * bf16 values (grown on demand, freed by destroy; valid until the next
 * call), and the conversions float -> bf16 (round to nearest even) and
 * back, on the stream. */
__nv_bfloat16 *pe_cuda_bf16_scratch(pe_backend *b, size_t n);
int pe_cuda_to_bf16(pe_backend *b, size_t n, const float *src, __nv_bfloat16 *dst);
int pe_cuda_from_bf16(pe_backend *b, size_t n, const __nv_bfloat16 *src, float *dst);

/* nccl.cu: leaves the data-parallel group, if any (destroy calls it). */
void pe_cuda_leave(pe_cuda *g);
/* nccl.cu: sums n doubles (device memory) in place over the group. */
int pe_cuda_group_sum_f64(pe_backend *b, size_t n, double *x);

/* syncbn.cu: bn_fwd_train and bn_bwd with the group's statistics */
int pe_cuda_syncbn_fwd(pe_backend *b, int N, int C, int HW, const float *x, const float *gamma,
                       const float *beta, float eps, float momentum, float *run_mean,
                       float *run_var, float *y, float *save_mean, float *save_invstd);
int pe_cuda_syncbn_bwd(pe_backend *b, int N, int C, int HW, const float *x, const float *dy,
                       const float *gamma, const float *save_mean, const float *save_invstd,
                       float *dx, float *dgamma, float *dbeta);

/* ---- the ops (one file each; signatures as in pe_backend) ---- */

/* conv.cu */
size_t pe_cuda_conv_workspace(pe_backend *b, const pe_conv_desc *d);
int pe_cuda_conv_fwd(pe_backend *b, const pe_conv_desc *d, const float *x, const float *w,
                     float *y, float *work);
int pe_cuda_conv_bwd_data(pe_backend *b, const pe_conv_desc *d, const float *dy,
                          const float *w, float *dx, float *work);
int pe_cuda_conv_bwd_filter(pe_backend *b, const pe_conv_desc *d, const float *x,
                            const float *dy, float *dw, float *work);
/* bn.cu */
int pe_cuda_bn_fwd_train(pe_backend *b, int N, int C, int HW, const float *x,
                         const float *gamma, const float *beta, float eps, float momentum,
                         float *run_mean, float *run_var, float *y, float *save_mean,
                         float *save_invstd);
int pe_cuda_bn_fwd_eval(pe_backend *b, int N, int C, int HW, const float *x,
                        const float *gamma, const float *beta, float eps,
                        const float *run_mean, const float *run_var, float *y);
int pe_cuda_bn_bwd(pe_backend *b, int N, int C, int HW, const float *x, const float *dy,
                   const float *gamma, const float *save_mean, const float *save_invstd,
                   float *dx, float *dgamma, float *dbeta);
/* elementwise.cu */
int pe_cuda_relu_fwd(pe_backend *b, size_t n, const float *x, float *y);
int pe_cuda_relu_bwd(pe_backend *b, size_t n, const float *y, const float *dy, float *dx);
int pe_cuda_add(pe_backend *b, size_t n, const float *a, const float *c, float *y);
int pe_cuda_accumulate(pe_backend *b, size_t n, const float *src, float *dst);
int pe_cuda_copy(pe_backend *b, size_t n, const float *src, float *dst);
int pe_cuda_fill(pe_backend *b, size_t n, float value, float *dst);
/* pool.cu */
int pe_cuda_avgpool_fwd(pe_backend *b, int N, int C, int HW, const float *x, float *y);
int pe_cuda_avgpool_bwd(pe_backend *b, int N, int C, int HW, const float *dy, float *dx);
/* gemm.cu */
int pe_cuda_gemm(pe_backend *b, int transA, int transB, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C,
                 int ldc);
/* bias.cu */
int pe_cuda_bias_add(pe_backend *b, int N, int out, const float *bias, float *y);
int pe_cuda_bias_bwd(pe_backend *b, int N, int out, const float *dy, float *dbias);
/* ntxent.cu */
int pe_cuda_ntxent(pe_backend *b, int B2, int D, const float *z, float T, float *loss,
                   float *dz);
/* infonce.cu */
int pe_cuda_infonce(pe_backend *b, int N, int D, int K, const float *q, const float *k,
                    const float *queue, float T, float *loss, float *dq, float *kn);
/* ema.cu */
int pe_cuda_ema(pe_backend *b, size_t n, const float *src, float *dst, double m);
/* sumsq.cu */
int pe_cuda_sumsq(pe_backend *b, size_t n, const float *x, double *out);
/* axpy.cu */
int pe_cuda_axpy(pe_backend *b, size_t n, float a, const float *x, float *y);
/* noise.cu */
int pe_cuda_gauss_noise(pe_backend *b, size_t n, const uint32_t key[2], double stddev,
                        double scale, const float *src, float *dst);
/* optim.cu */
int pe_cuda_adam(pe_backend *b, size_t n, float *p, const float *g, float *m, float *v,
                 float lr, float b1, float b2, float eps, float wd, long t);
int pe_cuda_sgd(pe_backend *b, size_t n, float *p, const float *g, float *buf, float lr,
                float momentum, float wd, int first);
/* augment.cu */
int pe_cuda_augment(pe_backend *b, int n, const pe_aug_job *jobs, const uint8_t *pixels,
                    size_t pixel_bytes, uint32_t size, uint32_t out_c, const float *mean,
                    const float *std, float *out);

#endif
