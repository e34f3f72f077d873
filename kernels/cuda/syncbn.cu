/*
 * syncbn.cu - synchronised batch norm for data-parallel training
 * (pe-train --sync-bn): the training forward and the backward of
 * bn.cu's ops with the batch statistics taken over every rank's batch, as
 * PyTorch's SyncBatchNorm computes them. bn.cu sends its ops here when
 * the backend is in a group that asked for it.
 *
 * Not for: inference (the running statistics are the same on every rank,
 * so bn.cu's cuDNN path serves), or one device without a group.
 *
 * Forward: each rank sums x and x^2 per channel in double (one block per
 * channel, a fixed tree), the group sums those (ncclAllReduce, double),
 * and every rank normalises with mean = S1 / M and the biased variance
 * S2 / M - mean^2 over the M = world N HW values; the running statistics
 * move with the unbiased variance (M / (M - 1)), as cuDNN's do.
 * Backward: each rank sums dy and dy (x - mean) per channel, the group
 * sums those, and dx = gamma invstd (dy - sum_dy / M - xhat sum_dy_xhat /
 * M), the gradient of the sum of the ranks' losses (the gradient
 * all-reduce then averages the parameters' gradients, as
 * DistributedDataParallel does); dgamma and dbeta are this rank's own
 * sums, which the gradient all-reduce averages like every other gradient.
 */
#include "cuda.h"

enum { THREADS = 256 };

/* per channel c: sums[c] = sum of a(i), sums[C + c] = sum of b(i) over the
 * channel's N HW values, in double through a fixed tree */
static __device__ void block_sum2(double *sh, double a, double b, double *out_a,
                                  double *out_b) {
    const unsigned t = threadIdx.x;
    sh[t] = a;
    sh[THREADS + t] = b;
    __syncthreads();
    for (unsigned half = THREADS / 2; half > 0; half /= 2) {
        if (t < half) {
            sh[t] += sh[t + half];
            sh[THREADS + t] += sh[THREADS + t + half];
        }
        __syncthreads();
    }
    if (t == 0) {
        *out_a = sh[0];
        *out_b = sh[THREADS];
    }
}

static __global__ void stats_kernel(int N, int C, int HW, const float *x, double *sums) {
    __shared__ double sh[2 * THREADS];
    const int c = blockIdx.x;
    double s1 = 0, s2 = 0;
    for (size_t i = threadIdx.x; i < (size_t)N * HW; i += THREADS) {
        const size_t n = i / HW, k = i % HW;
        const double v = x[(n * C + c) * HW + k];
        s1 += v;
        s2 += v * v;
    }
    block_sum2(sh, s1, s2, &sums[c], &sums[C + c]);
}

/* per channel: the group's mean and inverse std, saved for the backward,
 * and the running statistics' update */
static __global__ void finish_stats_kernel(int C, double M, float eps, float momentum,
                                           const double *sums, float *save_mean,
                                           float *save_invstd, float *run_mean, float *run_var) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double mean = sums[c] / M;
    double var = sums[C + c] / M - mean * mean;
    if (var < 0) var = 0;
    save_mean[c] = (float)mean;
    save_invstd[c] = (float)(1.0 / sqrt(var + (double)eps));
    const double unbiased = M > 1 ? var * M / (M - 1) : var;
    run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + momentum * mean);
    run_var[c] = (float)((1.0 - momentum) * run_var[c] + momentum * unbiased);
}

static __global__ void normalise_kernel(size_t n, int C, int HW, const float *x, const float *gamma,
                                        const float *beta, const float *mean, const float *invstd,
                                        float *y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i / HW % C);
        y[i] = (x[i] - mean[c]) * invstd[c] * gamma[c] + beta[c];
    }
}

static __global__ void grad_sums_kernel(int N, int C, int HW, const float *x, const float *dy,
                                        const float *mean, double *sums) {
    __shared__ double sh[2 * THREADS];
    const int c = blockIdx.x;
    double s1 = 0, s2 = 0;
    for (size_t i = threadIdx.x; i < (size_t)N * HW; i += THREADS) {
        const size_t j = (i / HW * C + c) * HW + i % HW;
        s1 += dy[j];
        s2 += (double)dy[j] * ((double)x[j] - mean[c]);
    }
    block_sum2(sh, s1, s2, &sums[c], &sums[C + c]);
}

/* dgamma, dbeta: this rank's own sums (local[c] = sum dy, local[C + c] =
 * sum dy (x - mean)) */
static __global__ void param_grads_kernel(int C, const double *local, const float *invstd,
                                          float *dgamma, float *dbeta) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    dbeta[c] = (float)local[c];
    dgamma[c] = (float)(local[C + c] * invstd[c]);
}

static __global__ void dx_kernel(size_t n, int C, int HW, double M, const float *x, const float *dy,
                                 const float *gamma, const float *mean, const float *invstd,
                                 const double *global, float *dx) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i / HW % C);
        const double is = invstd[c], xhat = ((double)x[i] - mean[c]) * is;
        const double mdy = global[c] / M, mdyx = global[C + c] * is / M;
        dx[i] = (float)((double)gamma[c] * is * ((double)dy[i] - mdy - xhat * mdyx));
    }
}

int pe_cuda_syncbn_fwd(pe_backend *b, int N, int C, int HW, const float *x, const float *gamma,
                       const float *beta, float eps, float momentum, float *run_mean,
                       float *run_var, float *y, float *save_mean, float *save_invstd) {
    pe_cuda *g = pe_cuda_of(b);
    double *sums = (double *)pe_cuda_scratch(b, 2 * (size_t)C * sizeof(double));
    if (!sums) return PE_ECUDA;
    int rc;
    stats_kernel<<<C, THREADS, 0, g->stream>>>(N, C, HW, x, sums);
    if ((rc = pe_cuda_launched("sync batch norm: statistics")) ||
        (rc = pe_cuda_group_sum_f64(b, 2 * (size_t)C, sums)))
        return rc;
    const double M = (double)N * HW * g->world;
    finish_stats_kernel<<<(C + 127) / 128, 128, 0, g->stream>>>(C, M, eps, momentum, sums,
                                                               save_mean, save_invstd, run_mean,
                                                               run_var);
    if ((rc = pe_cuda_launched("sync batch norm: statistics"))) return rc;
    const size_t n = (size_t)N * C * HW;
    normalise_kernel<<<pe_cuda_blocks(n, 256), 256, 0, g->stream>>>(n, C, HW, x, gamma, beta,
                                                                     save_mean, save_invstd, y);
    return pe_cuda_launched("sync batch norm: normalise");
}

int pe_cuda_syncbn_bwd(pe_backend *b, int N, int C, int HW, const float *x, const float *dy,
                       const float *gamma, const float *save_mean, const float *save_invstd,
                       float *dx, float *dgamma, float *dbeta) {
    pe_cuda *g = pe_cuda_of(b);
    /* this rank's sums, then the group's (a copy, summed in place) */
    double *local = (double *)pe_cuda_scratch(b, 4 * (size_t)C * sizeof(double));
    if (!local) return PE_ECUDA;
    double *global = local + 2 * (size_t)C;
    int rc;
    grad_sums_kernel<<<C, THREADS, 0, g->stream>>>(N, C, HW, x, dy, save_mean, local);
    if ((rc = pe_cuda_launched("sync batch norm backward: sums"))) return rc;
    param_grads_kernel<<<(C + 127) / 128, 128, 0, g->stream>>>(C, local, save_invstd, dgamma,
                                                              dbeta);
    if ((rc = pe_cuda_launched("sync batch norm backward: dgamma, dbeta")) ||
        (rc = pe_cuda_check(cudaMemcpyAsync(global, local, 2 * (size_t)C * sizeof(double),
                                            cudaMemcpyDeviceToDevice, g->stream),
                            "sync batch norm backward")) ||
        (rc = pe_cuda_group_sum_f64(b, 2 * (size_t)C, global)))
        return rc;
    const size_t n = (size_t)N * C * HW;
    const double M = (double)N * HW * g->world;
    dx_kernel<<<pe_cuda_blocks(n, 256), 256, 0, g->stream>>>(n, C, HW, M, x, dy, gamma, save_mean,
                                                             save_invstd, global, dx);
    return pe_cuda_launched("sync batch norm backward: dx");
}
