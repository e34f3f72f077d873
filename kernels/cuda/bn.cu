/*
 * bn.cu - batch norm over N and HW per channel through cuDNN's spatial
 * batch norm (BatchNorm2d; BatchNorm1d is HW = 1): training forward with
 * batch statistics and the running-average update, inference forward with
 * the running statistics, and the backward.
 *
 * Not for: statistics over a data-parallel group (syncbn.cu, which the
 * two training-mode ops hand over to when the group asked for it),
 * per-activation batch norm or the fused persistent variant
 * (CUDNN_BATCHNORM_SPATIAL_PERSISTENT may overflow on some inputs and is
 * not deterministic).
 *
 * Semantics as backend.h states, which are PyTorch's and cuDNN's alike:
 * the batch is normalised with the biased variance, the running variance
 * is updated with the unbiased one, run = (1 - momentum) run + momentum
 * batch (cuDNN's exponentialAverageFactor is PyTorch's momentum), and the
 * saved inverse standard deviation is 1 / sqrt(var + eps). cuDNN's
 * reductions differ from the CPU's in order, so results agree to rounding
 * (tests/gpu states the tolerance).
 */
#include "cuda.h"

/* x as N x C x HW x 1, and the per-channel descriptor derived from it. */
static int describe(pe_cuda *g, int N, int C, int HW) {
    int rc;
    if ((rc = pe_cuda_check_dnn(cudnnSetTensor4dDescriptor(g->tx, CUDNN_TENSOR_NCHW,
                                                           CUDNN_DATA_FLOAT, N, C, HW, 1),
                                "batch norm: descriptor")) ||
        (rc = pe_cuda_check_dnn(cudnnDeriveBNTensorDescriptor(g->tbn, g->tx,
                                                              CUDNN_BATCHNORM_SPATIAL),
                                "batch norm: channel descriptor")))
        return rc;
    return 0;
}

static int check_eps(float eps) {
    if ((double)eps < CUDNN_BN_MIN_EPSILON)
        return pe_fail(PE_EUNSUPPORTED, "batch norm: eps %g is below cuDNN's minimum %g",
                       (double)eps, (double)CUDNN_BN_MIN_EPSILON);
    return 0;
}

int pe_cuda_bn_fwd_train(pe_backend *b, int N, int C, int HW, const float *x,
                         const float *gamma, const float *beta, float eps, float momentum,
                         float *run_mean, float *run_var, float *y, float *save_mean,
                         float *save_invstd) {
    pe_cuda *g = pe_cuda_of(b);
    int rc;
    if (g->sync_bn && g->nccl)
        return pe_cuda_syncbn_fwd(b, N, C, HW, x, gamma, beta, eps, momentum, run_mean, run_var,
                                  y, save_mean, save_invstd);
    if ((rc = check_eps(eps)) || (rc = describe(g, N, C, HW))) return rc;
    g->bn_eps = eps;
    g->have_bn_eps = 1;
    const float one = 1.0f, zero = 0.0f;
    return pe_cuda_check_dnn(
        cudnnBatchNormalizationForwardTraining(g->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero,
                                               g->tx, x, g->tx, y, g->tbn, gamma, beta,
                                               (double)momentum, run_mean, run_var, (double)eps,
                                               save_mean, save_invstd),
        "batch norm forward (training)");
}

int pe_cuda_bn_fwd_eval(pe_backend *b, int N, int C, int HW, const float *x,
                        const float *gamma, const float *beta, float eps,
                        const float *run_mean, const float *run_var, float *y) {
    pe_cuda *g = pe_cuda_of(b);
    int rc;
    if ((rc = check_eps(eps)) || (rc = describe(g, N, C, HW))) return rc;
    const float one = 1.0f, zero = 0.0f;
    return pe_cuda_check_dnn(
        cudnnBatchNormalizationForwardInference(g->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero,
                                                g->tx, x, g->tx, y, g->tbn, gamma, beta,
                                                run_mean, run_var, (double)eps),
        "batch norm forward (inference)");
}

int pe_cuda_bn_bwd(pe_backend *b, int N, int C, int HW, const float *x, const float *dy,
                   const float *gamma, const float *save_mean, const float *save_invstd,
                   float *dx, float *dgamma, float *dbeta) {
    pe_cuda *g = pe_cuda_of(b);
    int rc;
    if (g->sync_bn && g->nccl)
        return pe_cuda_syncbn_bwd(b, N, C, HW, x, dy, gamma, save_mean, save_invstd, dx, dgamma,
                                  dbeta);
    if ((rc = describe(g, N, C, HW))) return rc;
    const float one = 1.0f, zero = 0.0f;
    /* alphaDataDiff/betaDataDiff and alphaParamDiff/betaParamDiff: the
     * outputs are overwritten, as backend.h's backward ops are */
    return pe_cuda_check_dnn(
        cudnnBatchNormalizationBackward(g->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one,
                                        &zero, g->tx, x, g->tx, dy, g->tx, dx, g->tbn, gamma,
                                        dgamma, dbeta, g->have_bn_eps ? g->bn_eps : 1e-5,
                                        save_mean, save_invstd),
        "batch norm backward");
}
