/*
 * conv.cu - convolution forward, backward data and backward filter through
 * cuDNN (NCHW, cross-correlation, no bias, no dilation, one group), with
 * the algorithms chosen once per shape and cached.
 *
 * Not for: batch norm (bn.cu), the GEMMs of dense layers (gemm.cu).
 *
 * Algorithm choice, the first time a shape is seen (conv_workspace, which
 * model set-up calls for every convolution before the first step):
 *  - default: cuDNN times its algorithms (cudnnFind*, as PyTorch's
 *    cudnn.benchmark) and the fastest whose workspace fits in
 *    PE_CUDA_CONV_WORKSPACE_MAX bytes is kept;
 *  - deterministic: cuDNN's heuristic ranking (cudnnGet*_v7, which depends
 *    on the shape and the GPU only, not on timings) and the first
 *    algorithm of it that cuDNN marks deterministic (no atomics), so two
 *    runs on one GPU model pick the same algorithms and compute the same
 *    bits.
 * The workspace the model allocates is the largest any cached plan needs.
 *
 * Precision: FP32 sets CUDNN_FMA_MATH, so no TF32 tensor-core algorithm is
 * eligible; TF32 allows them (CUDNN_DEFAULT_MATH); BF16 runs the
 * convolution on bf16 copies of its two inputs (bf16.cu) with float
 * accumulation (CUDNN_TENSOR_OP_MATH) into a bf16 result (cuDNN's bf16
 * configuration), widened into the float output: the output is rounded
 * to bf16 too, as under PyTorch's autocast. Each algorithm runs with the
 * math type cuDNN chose it with.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

#define PE_CUDA_CONV_WORKSPACE_MAX ((size_t)1 << 30)

static cudnnDataType_t dtype_of(const pe_cuda *g) {
    return g->precision == PE_PREC_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

static cudnnMathType_t math_of(const pe_cuda *g) {
    switch (g->precision) {
    case PE_PREC_TF32: return CUDNN_DEFAULT_MATH;
    case PE_PREC_BF16: return CUDNN_TENSOR_OP_MATH;
    default: return CUDNN_FMA_MATH;
    }
}

/* Points the shared descriptors at shape d. */
static int describe(pe_cuda *g, const pe_conv_desc *d) {
    const cudnnDataType_t t = dtype_of(g);
    int rc;
    if ((rc = pe_cuda_check_dnn(cudnnSetTensor4dDescriptor(g->tx, CUDNN_TENSOR_NCHW, t, d->N,
                                                           d->C, d->H, d->W),
                                "conv: input descriptor")) ||
        (rc = pe_cuda_check_dnn(cudnnSetTensor4dDescriptor(g->ty, CUDNN_TENSOR_NCHW, t, d->N,
                                                           d->K, d->P, d->Q),
                                "conv: output descriptor")) ||
        (rc = pe_cuda_check_dnn(
             cudnnSetFilter4dDescriptor(g->fw, t, CUDNN_TENSOR_NCHW, d->K, d->C, d->R, d->S),
             "conv: filter descriptor")) ||
        (rc = pe_cuda_check_dnn(cudnnSetConvolution2dDescriptor(g->conv, d->pad, d->pad,
                                                                d->stride, d->stride, 1, 1,
                                                                CUDNN_CROSS_CORRELATION,
                                                                CUDNN_DATA_FLOAT),
                                "conv: convolution descriptor")) ||
        (rc = pe_cuda_check_dnn(cudnnSetConvolutionMathType(g->conv, math_of(g)),
                                "conv: math type")))
        return rc;
    return 0;
}

/* The index of the algorithm to keep among n results (ordered fastest or
 * best first by cuDNN), or -1. */
template <typename Perf>
static int pick(const Perf *perf, int n, int deterministic) {
    for (int i = 0; i < n; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
        if (perf[i].memory > PE_CUDA_CONV_WORKSPACE_MAX) continue;
        if (deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
        return i;
    }
    return -1;
}

static int choose(pe_cuda *g, pe_cuda_conv_plan *pl) {
    enum { MAX = 16 };
    cudnnConvolutionFwdAlgoPerf_t f[MAX];
    cudnnConvolutionBwdDataAlgoPerf_t bd[MAX];
    cudnnConvolutionBwdFilterAlgoPerf_t bf[MAX];
    int nf = 0, nbd = 0, nbf = 0, rc;
    if (g->deterministic) {
        if ((rc = pe_cuda_check_dnn(cudnnGetConvolutionForwardAlgorithm_v7(
                                        g->dnn, g->tx, g->fw, g->conv, g->ty, MAX, &nf, f),
                                    "conv: forward algorithms")) ||
            (rc = pe_cuda_check_dnn(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                                        g->dnn, g->fw, g->ty, g->conv, g->tx, MAX, &nbd, bd),
                                    "conv: backward data algorithms")) ||
            (rc = pe_cuda_check_dnn(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                                        g->dnn, g->tx, g->ty, g->conv, g->fw, MAX, &nbf, bf),
                                    "conv: backward filter algorithms")))
            return rc;
    } else {
        if ((rc = pe_cuda_check_dnn(cudnnFindConvolutionForwardAlgorithm(
                                        g->dnn, g->tx, g->fw, g->conv, g->ty, MAX, &nf, f),
                                    "conv: timing forward algorithms")) ||
            (rc = pe_cuda_check_dnn(cudnnFindConvolutionBackwardDataAlgorithm(
                                        g->dnn, g->fw, g->ty, g->conv, g->tx, MAX, &nbd, bd),
                                    "conv: timing backward data algorithms")) ||
            (rc = pe_cuda_check_dnn(cudnnFindConvolutionBackwardFilterAlgorithm(
                                        g->dnn, g->tx, g->ty, g->conv, g->fw, MAX, &nbf, bf),
                                    "conv: timing backward filter algorithms")))
            return rc;
    }
    const int i = pick(f, nf, g->deterministic), j = pick(bd, nbd, g->deterministic),
              k = pick(bf, nbf, g->deterministic);
    if (i < 0 || j < 0 || k < 0)
        return pe_fail(PE_ECUDA,
                       "conv: cuDNN has no %s%s algorithm for input %dx%dx%dx%d, filter "
                       "%dx%dx%dx%d, stride %d, pad %d",
                       g->deterministic ? "deterministic " : "",
                       i < 0 ? "forward" : j < 0 ? "backward data" : "backward filter", pl->d.N,
                       pl->d.C, pl->d.H, pl->d.W, pl->d.K, pl->d.C, pl->d.R, pl->d.S,
                       pl->d.stride, pl->d.pad);
    pl->fwd = f[i].algo;
    pl->bwd_data = bd[j].algo;
    pl->bwd_filter = bf[k].algo;
    pl->fwd_math = f[i].mathType;
    pl->bwd_data_math = bd[j].mathType;
    pl->bwd_filter_math = bf[k].mathType;
    size_t ws = f[i].memory;
    if (bd[j].memory > ws) ws = bd[j].memory;
    if (bf[k].memory > ws) ws = bf[k].memory;
    pl->workspace = ws;
    return 0;
}

/* The cached plan of shape d, chosen now if new and `create` (only
 * conv_workspace creates: the ops run with the workspace its answers
 * sized); sets the descriptors to d either way. NULL with the error set
 * on failure. */
static pe_cuda_conv_plan *plan_of(pe_backend *b, const pe_conv_desc *d, int create) {
    pe_cuda *g = pe_cuda_of(b);
    if (describe(g, d)) return NULL;
    for (int i = 0; i < g->nplans; i++)
        if (memcmp(&g->plans[i].d, d, sizeof *d) == 0) return &g->plans[i];
    if (!create) {
        pe_fail(PE_ECUDA, "conv: input %dx%dx%dx%d, filter %dx%dx%dx%d has no algorithms: %s",
                d->N, d->C, d->H, d->W, d->K, d->C, d->R, d->S,
                g->conv_err[0] ? g->conv_err : "never sized by conv_workspace");
        return NULL;
    }
    if (g->nplans == g->cap_plans) {
        int cap = g->cap_plans ? 2 * g->cap_plans : 16;
        pe_cuda_conv_plan *p =
            (pe_cuda_conv_plan *)realloc(g->plans, (size_t)cap * sizeof *p);
        if (!p) {
            pe_fail(ENOMEM, "conv: out of memory for the algorithm cache");
            return NULL;
        }
        g->plans = p;
        g->cap_plans = cap;
    }
    pe_cuda_conv_plan *pl = &g->plans[g->nplans];
    memset(pl, 0, sizeof *pl);
    pl->d = *d;
    if (choose(g, pl)) {
        snprintf(g->conv_err, sizeof g->conv_err, "%s", pe_errmsg());
        return NULL;
    }
    g->nplans++;
    return pl;
}

size_t pe_cuda_conv_workspace(pe_backend *b, const pe_conv_desc *d) {
    /* the interface has no error return here: a failure shows again, with
     * its message, at the first call of the op */
    pe_cuda_conv_plan *pl = plan_of(b, d, 1);
    return pl ? pl->workspace : 0;
}

/* ---- the three ops: one runner, the operands in bf16 copies when the
 * precision asks (inputs converted, the op run, the output converted
 * back) ---- */

typedef enum conv_op { FWD, BWD_DATA, BWD_FILTER } conv_op;

static size_t x_n(const pe_conv_desc *d) { return (size_t)d->N * d->C * d->H * d->W; }
static size_t y_n(const pe_conv_desc *d) { return (size_t)d->N * d->K * d->P * d->Q; }
static size_t w_n(const pe_conv_desc *d) { return (size_t)d->K * d->C * d->R * d->S; }

/* The cuDNN call of op: FWD y = conv(a = x, c = w); BWD_DATA dx from
 * (a = dy, c = w); BWD_FILTER dw from (a = x, c = dy). */
static cudnnStatus_t call(pe_cuda *g, const pe_cuda_conv_plan *pl, conv_op op, const void *a,
                          const void *c, void *out, float *work) {
    const float one = 1.0f, zero = 0.0f;
    /* the math type the algorithm was chosen with */
    const cudnnMathType_t math = op == FWD ? pl->fwd_math
                                 : op == BWD_DATA ? pl->bwd_data_math : pl->bwd_filter_math;
    const cudnnStatus_t st = cudnnSetConvolutionMathType(g->conv, math);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    switch (op) {
    case FWD:
        return cudnnConvolutionForward(g->dnn, &one, g->tx, a, g->fw, c, g->conv, pl->fwd, work,
                                       pl->workspace, &zero, g->ty, out);
    case BWD_DATA:
        return cudnnConvolutionBackwardData(g->dnn, &one, g->fw, c, g->ty, a, g->conv,
                                            pl->bwd_data, work, pl->workspace, &zero, g->tx, out);
    default:
        return cudnnConvolutionBackwardFilter(g->dnn, &one, g->tx, a, g->ty, c, g->conv,
                                              pl->bwd_filter, work, pl->workspace, &zero, g->fw,
                                              out);
    }
}

static int run(pe_backend *b, const pe_conv_desc *d, conv_op op, const float *a, const float *c,
               float *out, float *work) {
    static const char *const names[3] = {"conv forward", "conv backward data",
                                         "conv backward filter"};
    pe_cuda *g = pe_cuda_of(b);
    pe_cuda_conv_plan *pl = plan_of(b, d, 0);
    if (!pl) return PE_ECUDA;
    if (g->precision != PE_PREC_BF16)
        return pe_cuda_check_dnn(call(g, pl, op, a, c, out, work), names[op]);
    const size_t na = op == BWD_DATA ? y_n(d) : x_n(d), nc = op == BWD_FILTER ? y_n(d) : w_n(d),
                 nout = op == FWD ? y_n(d) : op == BWD_DATA ? x_n(d) : w_n(d);
    /* each staged tensor starts 256-byte aligned, as cuDNN's tensor-core
     * kernels want and as the buffers cudnnFind timed with were */
    const size_t na_al = pe_cuda_align_n(na), nc_al = pe_cuda_align_n(nc);
    __nv_bfloat16 *sa = pe_cuda_bf16_scratch(b, na_al + nc_al + nout);
    if (!sa) return PE_ECUDA;
    __nv_bfloat16 *sc = sa + na_al, *sout = sc + nc_al;
    int rc;
    if ((rc = pe_cuda_to_bf16(b, na, a, sa)) || (rc = pe_cuda_to_bf16(b, nc, c, sc)) ||
        (rc = pe_cuda_check_dnn(call(g, pl, op, sa, sc, sout, work), names[op])))
        return rc;
    return pe_cuda_from_bf16(b, nout, sout, out);
}

int pe_cuda_conv_fwd(pe_backend *b, const pe_conv_desc *d, const float *x, const float *w,
                     float *y, float *work) {
    return run(b, d, FWD, x, w, y, work);
}

int pe_cuda_conv_bwd_data(pe_backend *b, const pe_conv_desc *d, const float *dy,
                          const float *w, float *dx, float *work) {
    return run(b, d, BWD_DATA, dy, w, dx, work);
}

int pe_cuda_conv_bwd_filter(pe_backend *b, const pe_conv_desc *d, const float *x,
                            const float *dy, float *dw, float *work) {
    return run(b, d, BWD_FILTER, x, dy, dw, work);
}
