/*
 * backend.h - the compute backend interface: every numeric op that model and
 * training code needs, as a struct of function pointers, so the CPU backend
 * (kernels/cpu/) and a CUDA backend (kernels/cuda/, later) are chosen at run
 * time and model code has no #ifdef.
 *
 * Not for: graph logic, parameter bookkeeping or data loading (lib/model.c,
 * lib/train.c). Ops take raw pointers to memory the backend allocated
 * (pe_backend.alloc); on the CPU that is host memory.
 *
 * Conventions: float32, tensors NCHW, contiguous. Shapes are given by the
 * descriptors below; comments name the shape of each pointer. Ops return 0
 * or a PE_E* code (the CPU ops cannot fail on valid shapes; CUDA ops report
 * launch/library errors). Backward ops OVERWRITE their gradient outputs
 * (they do not accumulate) unless said otherwise. `work` is scratch of at
 * least the size the matching *_workspace function returns.
 *
 * Threading: the CPU backend parallelises inside each op over a thread pool
 * of pe_backend_cpu(nthreads) threads; results do not depend on the thread
 * count except where a reduction order changes (documented per op).
 */
#ifndef PE_BACKEND_H
#define PE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct pe_conv_desc {
    int N, C, H, W;  /* input */
    int K, R, S;     /* K filters of C x R x S */
    int stride, pad; /* same for both axes */
    int P, Q;        /* output height, width: (H + 2pad - R) / stride + 1 */
} pe_conv_desc;

/* Fills P and Q from the other fields. */
static inline void pe_conv_desc_finish(pe_conv_desc *d) {
    d->P = (d->H + 2 * d->pad - d->R) / d->stride + 1;
    d->Q = (d->W + 2 * d->pad - d->S) / d->stride + 1;
}

/* The chunk of pe_backend.sumsq's fixed summation order, in elements. */
#define PE_SUMSQ_CHUNK 4096

/* One augmented view for pe_backend.augment: where its uint8 source image
 * lies in the batch's pixel buffer, and the view's drawn parameters
 * (lib/augment.h's pe_aug_params, flattened). */
typedef struct pe_aug_job {
    uint64_t offset;     /* byte offset of the source in the pixel buffer */
    uint32_t w, h, c;    /* source width, height, channels (1 or 3), HWC */
    uint32_t box_i, box_j, box_h, box_w; /* crop box, source pixels */
    uint8_t flip, jitter, gray;
    uint8_t order[4];    /* jitter ops in the order applied */
    uint8_t enabled[4];  /* per op (brightness, contrast, saturation, hue) */
    float factor[4];     /* per op */
} pe_aug_job;

typedef struct pe_backend pe_backend;

/* The interface's version, checked when the CUDA backend's shared object
 * is loaded (kernels/cuda_loader.c): bump the first number whenever a
 * member of pe_backend or pe_aug_job, or an entry point of the library
 * (pe_cuda_so_*), changes. */
#define PE_BACKEND_ABI (2u << 16 | (unsigned)sizeof(pe_backend))

struct pe_backend {
    const char *name; /* "cpu", "cuda" */
    void *impl;       /* backend-private state (thread pool, handles) */

    /* memory on the backend's device; alloc returns NULL on failure */
    void *(*alloc)(pe_backend *b, size_t bytes);
    void (*free)(pe_backend *b, void *p);
    /* host <-> device copies (memcpy on the CPU) */
    int (*upload)(pe_backend *b, void *dst, const void *src, size_t bytes);
    int (*download)(pe_backend *b, void *dst, const void *src, size_t bytes);

    /* ---- convolution (no bias; cross-correlation as PyTorch) ---- */
    size_t (*conv_workspace)(pe_backend *b, const pe_conv_desc *d);
    /* y (N,K,P,Q) = conv(x (N,C,H,W), w (K,C,R,S)) */
    int (*conv_fwd)(pe_backend *b, const pe_conv_desc *d, const float *x,
                    const float *w, float *y, float *work);
    /* dx (N,C,H,W) from dy (N,K,P,Q), w */
    int (*conv_bwd_data)(pe_backend *b, const pe_conv_desc *d, const float *dy,
                         const float *w, float *dx, float *work);
    /* dw (K,C,R,S) from x, dy */
    int (*conv_bwd_filter)(pe_backend *b, const pe_conv_desc *d, const float *x,
                           const float *dy, float *dw, float *work);

    /* ---- batch norm over N and HW per channel (BatchNorm2d; BatchNorm1d
     * is HW = 1) ---- */
    /* Training mode: batch statistics, biased variance for normalising,
     * unbiased (n/(n-1)) for the running update, as PyTorch:
     * run = (1 - momentum) * run + momentum * batch. Saves mean and invstd
     * (C) for the backward. */
    int (*bn_fwd_train)(pe_backend *b, int N, int C, int HW, const float *x,
                        const float *gamma, const float *beta, float eps,
                        float momentum, float *run_mean, float *run_var,
                        float *y, float *save_mean, float *save_invstd);
    int (*bn_fwd_eval)(pe_backend *b, int N, int C, int HW, const float *x,
                       const float *gamma, const float *beta, float eps,
                       const float *run_mean, const float *run_var, float *y);
    /* dx (N,C,HW), dgamma, dbeta (C) */
    int (*bn_bwd)(pe_backend *b, int N, int C, int HW, const float *x,
                  const float *dy, const float *gamma, const float *save_mean,
                  const float *save_invstd, float *dx, float *dgamma,
                  float *dbeta);

    /* ---- elementwise ---- */
    /* y = max(x, 0); may be in place */
    int (*relu_fwd)(pe_backend *b, size_t n, const float *x, float *y);
    /* dx = dy * (y > 0); may be in place (dx == dy) */
    int (*relu_bwd)(pe_backend *b, size_t n, const float *y, const float *dy,
                    float *dx);
    /* y = a + c; may be in place */
    int (*add)(pe_backend *b, size_t n, const float *a, const float *c,
               float *y);
    /* dst += src */
    int (*accumulate)(pe_backend *b, size_t n, const float *src, float *dst);
    /* dst = src (device to device) */
    int (*copy)(pe_backend *b, size_t n, const float *src, float *dst);
    /* dst[i] = value */
    int (*fill)(pe_backend *b, size_t n, float value, float *dst);

    /* ---- global average pooling: y (N,C) = mean over HW of x (N,C,HW) */
    int (*avgpool_fwd)(pe_backend *b, int N, int C, int HW, const float *x,
                       float *y);
    int (*avgpool_bwd)(pe_backend *b, int N, int C, int HW, const float *dy,
                       float *dx);

    /* ---- dense: C (M,N) = alpha * op(A) op(B) + beta * C, row-major ---- */
    int (*gemm)(pe_backend *b, int transA, int transB, int M, int N, int K,
                float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc);
    /* y (N, out) += bias (out), row-wise */
    int (*bias_add)(pe_backend *b, int N, int out, const float *bias, float *y);
    /* dbias (out) = column sums of dy (N, out) */
    int (*bias_bwd)(pe_backend *b, int N, int out, const float *dy, float *dbias);

    /* ---- NT-Xent (SimCLR): z (2B, D) rows 0..B-1 are view 1, B..2B-1 view
     * 2 of the same images. Rows are L2-normalised inside; logits
     * sim(i,j)/T with the diagonal excluded; loss = mean over the 2B rows
     * of cross-entropy with the positive (i + B mod 2B). Writes the loss
     * (host float) and dz (2B, D) = d loss / d z. */
    int (*ntxent)(pe_backend *b, int B2, int D, const float *z, float T,
                  float *loss, float *dz);

    /* ---- InfoNCE (MoCo): q (N, D) queries and k (N, D) keys, row i of
     * each from the same image; queue (K, D) negatives, rows already
     * L2-normalised. q and k are L2-normalised inside (F.normalize); row i's
     * logits are [qn_i . kn_i, qn_i . queue_j for j < K] / T (1 + K of them)
     * and loss = mean over the N rows of cross-entropy with the positive at
     * index 0. Writes the loss (host float), dq (N, D) = d loss / d q, and
     * kn (N, D), the normalised keys (no gradient flows to k; the caller
     * enqueues kn). K >= 1. */
    int (*infonce)(pe_backend *b, int N, int D, int K, const float *q,
                   const float *k, const float *queue, float T, float *loss,
                   float *dq, float *kn);

    /* ---- momentum (EMA) update of a copy: dst = m dst + (1 - m) src
     * elementwise, with m and 1 - m taken in double and rounded to float,
     * and the two products rounded before the sum, as PyTorch computes
     * `k.data = k.data * m + q.data * (1. - m)` in float32. m = 0 copies src,
     * m = 1 keeps dst (for finite values). */
    int (*ema)(pe_backend *b, size_t n, const float *src, float *dst, double m);

    /* ---- differentially private SGD (lib/train.c's pe_dp_step) ----
     * Reductions and noise are defined to the bit, independent of the
     * thread count, so a run does not depend on threads and a device
     * backend can reproduce the CPU's steps. */
    /* *out (host double) = sum of x[i]^2 over i < n: the elements are cut
     * into chunks of PE_SUMSQ_CHUNK (the last may be shorter); each chunk's
     * squares ((double)x[i] * x[i]) summed in double in index order, then
     * the chunks' sums in chunk order. */
    int (*sumsq)(pe_backend *b, size_t n, const float *x, double *out);
    /* y[i] += a * x[i] in float (the product rounded, then the sum) */
    int (*axpy)(pe_backend *b, size_t n, float a, const float *x, float *y);
    /* Gaussian noise: dst[i] = (float)(((double)src[i] + stddev * z_i) *
     * scale), in double, with z_i standard normal from Philox (rng.h):
     * block k (k = i / 2) is w = Philox4x32-10(ctr = {lo(k), hi(k), 0, 0},
     * key), u1 = ((w0 << 32 | w1) >> 11) 2^-53, u2 = ((w2 << 32 | w3) >> 11)
     * 2^-53, r = sqrt(-2 log(1 - u1)), and z_2k = r cos(2 pi u2), z_2k+1 =
     * r sin(2 pi u2) (Box-Muller). The coordinates are the counters, so any
     * split of the work draws the same values; a port matches the CPU up to
     * its math library's last bits in log, cos and sin. May be in place. */
    int (*gauss_noise)(pe_backend *b, size_t n, const uint32_t key[2],
                       double stddev, double scale, const float *src,
                       float *dst);

    /* ---- optimisers, on flat parameter arrays ---- */
    /* PyTorch Adam (weight decay added to the gradient, L2 style, not
     * AdamW): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps). t from 1. */
    int (*adam)(pe_backend *b, size_t n, float *p, const float *g, float *m,
                float *v, float lr, float b1, float b2, float eps, float wd,
                long t);
    /* PyTorch SGD: g' = g + wd p; buf = momentum buf + g' (buf = g' at the
     * first step, first != 0); p -= lr buf */
    int (*sgd)(pe_backend *b, size_t n, float *p, const float *g, float *buf,
               float lr, float momentum, float wd, int first);

    /* ---- augmentation on the device: NULL on backends that leave it to
     * the host (the CPU's loader thread runs lib/augment.c). Renders n
     * views of size x size into out (n, out_c, size, size) floats in
     * backend memory, view v from jobs[v] over `pixels` (host memory,
     * pixel_bytes long; the backend copies what it needs before
     * returning), with the semantics and bytes of lib/augment.c's
     * pe_aug_apply: out_c is 1 or 3 (3 from a 1-channel source replicates
     * it), mean and std (out_c floats, host) normalise. */
    int (*augment)(pe_backend *b, int n, const pe_aug_job *jobs, const uint8_t *pixels,
                   size_t pixel_bytes, uint32_t size, uint32_t out_c, const float *mean,
                   const float *std, float *out);

    /* ---- data parallelism: NULL when the backend runs alone
     * (pe_backend_join sets it). Replaces n floats (backend memory) in
     * place by their mean over every rank of the process group (NCCL's
     * all-reduce with ncclAvg on the CUDA backend), so each rank ends with
     * the same values. */
    int (*allreduce_mean)(pe_backend *b, size_t n, float *x);

    void (*destroy)(pe_backend *b);
};

/* The CPU backend with nthreads worker threads (0 = online CPUs). Returns
 * NULL on allocation failure. Destroy with b->destroy(b). */
pe_backend *pe_backend_cpu(int nthreads);

/* ---- the CUDA backend: kernels/cuda/, built as the shared object
 * libpe-cuda.so and loaded on demand by kernels/cuda_loader.c (a build
 * without nvcc has no library, and these functions say so) ---- */

/* Arithmetic of convolutions and GEMMs on the GPU. FP32 switches cuDNN's
 * and cuBLAS's TF32 tensor-core paths off (they are on by default on
 * recent GPUs), so results stay comparable with the CPU's; TF32 allows
 * them; BF16 rounds the operands of convolutions and GEMMs to bfloat16
 * and accumulates in float (a convolution's result is rounded to bf16
 * too, as under PyTorch's autocast; a GEMM's stays float), with
 * parameters, gradients, activations and optimiser state kept in float
 * (fp32 master weights). Every other op, the losses' own products
 * included, computes in float whatever the precision. */
typedef enum pe_precision {
    PE_PREC_FP32 = 0,
    PE_PREC_TF32 = 1,
    PE_PREC_BF16 = 2,
} pe_precision;

/* The number of CUDA GPUs this process can use: 0 when there is none, the
 * driver is missing, or the build has no CUDA backend (then *why, if not
 * NULL, says which in a static string). */
int pe_cuda_devices(const char **why);

/* Loads the CUDA backend's shared object without touching a GPU (a build
 * check): 1 when this build has the backend and it loads, else 0 and *why
 * (if not NULL) says why in a static string. */
int pe_cuda_library(const char **why);

/* The CUDA backend on GPU `device` (0-based). deterministic: convolution
 * algorithms without atomics, chosen by a fixed rule instead of timing.
 * Returns NULL with pe_errmsg() set: PE_EUNSUPPORTED in a build without
 * the backend, PE_ECUDA when no GPU is found or set-up fails. */
pe_backend *pe_backend_cuda(int device, pe_precision precision, int deterministic);

/* Joins backend b to a data-parallel group of `world` processes (one per
 * GPU) as rank `rank` (0 .. world-1), and sets b->allreduce_mean. The
 * rendezvous is the file id_file on a file system every rank sees: rank 0
 * creates it (it must not exist: a leftover of an earlier run is an
 * error, so that no rank joins a stale group) with NCCL's unique id, the
 * others wait for it, up to timeout_s seconds; rank 0 removes it once
 * every rank has joined. sync_bn: training-mode batch norm takes its
 * statistics over the whole group's batch (PyTorch's SyncBatchNorm)
 * instead of each rank's own. Returns 0 or an error code with the message
 * naming the file or NCCL's error: PE_EUNSUPPORTED on the CPU backend or
 * in a build without NCCL. */
int pe_backend_join(pe_backend *b, int rank, int world, const char *id_file, double timeout_s,
                    int sync_bn);

/* --device's values. */
typedef enum pe_device_kind {
    PE_DEVICE_AUTO = 0, /* the GPU when one is present, else the CPU */
    PE_DEVICE_CPU = 1,
    PE_DEVICE_CUDA = 2,
} pe_device_kind;

/* Parses "auto", "cpu", "cuda" or "cuda:N" into *kind and *index (0 unless
 * given). Returns 0 or PE_EUSAGE with a message naming s. */
int pe_device_parse(const char *s, pe_device_kind *kind, int *index);
/* Parses "fp32", "tf32" or "bf16". Returns 0 or PE_EUSAGE. */
int pe_precision_parse(const char *s, pe_precision *out);
const char *pe_precision_name(pe_precision p);

/* Opens the backend --device asks for: CPU with nthreads threads, CUDA on
 * GPU index, or (auto) CUDA GPU index when one is present, else the CPU;
 * auto follows $PE_DEVICE (auto, cpu, cuda, cuda:N) when it is set.
 * A precision other than FP32 or deterministic=1 on the CPU is accepted
 * and changes nothing (the CPU computes in float and is always
 * deterministic). Returns 0 and *out, or an error code with pe_errmsg()
 * naming what is missing (no CUDA backend in this build, no GPU found). */
int pe_backend_open(pe_device_kind kind, int index, int nthreads, pe_precision precision,
                    int deterministic, pe_backend **out);

#endif
