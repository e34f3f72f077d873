/*
 * ref.h - the scalar reference of every backend op: plain loops that follow
 * the definitions in backend.h (and PyTorch's), the oracle that the fast CPU
 * kernels, a future CUDA backend and the finite-difference tests are
 * checked against.
 *
 * Not for: speed (these are O(naive), single-threaded), or use by model
 * code (call the backend).
 *
 * pe_ref_* work in float; pe_refd_* are the same code in double (ref.c
 * instantiates ref_body.h twice), for central finite differences. Sums
 * follow the loop order written; BatchNorm statistics accumulate in double
 * in both versions, as PyTorch's CPU kernels do. Shapes, in/out roles and
 * in-place rules are those of the backend.h member of the same name; the
 * reference cannot fail and returns nothing. Buffers are caller-owned;
 * ntxent and infonce malloc and free their own temporaries (aborting via
 * PE_ASSERT if that fails: test-only code).
 */
#ifndef PE_KERNELS_CPU_REF_H
#define PE_KERNELS_CPU_REF_H

#include <stddef.h>

#include "backend.h"

/* ---- float ---- */
void pe_ref_conv_fwd(const pe_conv_desc *d, const float *x, const float *w,
                     float *y);
void pe_ref_conv_bwd_data(const pe_conv_desc *d, const float *dy,
                          const float *w, float *dx);
void pe_ref_conv_bwd_filter(const pe_conv_desc *d, const float *x,
                            const float *dy, float *dw);
void pe_ref_bn_fwd_train(int N, int C, int HW, const float *x,
                         const float *gamma, const float *beta, float eps,
                         float momentum, float *run_mean, float *run_var,
                         float *y, float *save_mean, float *save_invstd);
void pe_ref_bn_fwd_eval(int N, int C, int HW, const float *x,
                        const float *gamma, const float *beta, float eps,
                        const float *run_mean, const float *run_var, float *y);
void pe_ref_bn_bwd(int N, int C, int HW, const float *x, const float *dy,
                   const float *gamma, const float *save_mean,
                   const float *save_invstd, float *dx, float *dgamma,
                   float *dbeta);
void pe_ref_relu_fwd(size_t n, const float *x, float *y);
void pe_ref_relu_bwd(size_t n, const float *y, const float *dy, float *dx);
void pe_ref_add(size_t n, const float *a, const float *c, float *y);
void pe_ref_accumulate(size_t n, const float *src, float *dst);
void pe_ref_avgpool_fwd(int N, int C, int HW, const float *x, float *y);
void pe_ref_avgpool_bwd(int N, int C, int HW, const float *dy, float *dx);
void pe_ref_gemm(int transA, int transB, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc);
void pe_ref_bias_add(int N, int out, const float *bias, float *y);
void pe_ref_bias_bwd(int N, int out, const float *dy, float *dbias);
void pe_ref_ntxent(int B2, int D, const float *z, float T, float *loss,
                   float *dz);
void pe_ref_infonce(int N, int D, int K, const float *q, const float *k,
                    const float *queue, float T, float *loss, float *dq,
                    float *kn);
void pe_ref_ema(size_t n, const float *src, float *dst, double m);
/* DP-SGD's ops (float only: no finite differences go through them) */
double pe_ref_sumsq(size_t n, const float *x);
void pe_ref_axpy(size_t n, float a, const float *x, float *y);
void pe_ref_gauss_noise(size_t n, const uint32_t key[2], double stddev,
                        double scale, const float *src, float *dst);
void pe_ref_adam(size_t n, float *p, const float *g, float *m, float *v,
                 float lr, float b1, float b2, float eps, float wd, long t);
void pe_ref_sgd(size_t n, float *p, const float *g, float *buf, float lr,
                float momentum, float wd, int first);

/* ---- double twins (same code), for finite differences ---- */
void pe_refd_conv_fwd(const pe_conv_desc *d, const double *x, const double *w,
                      double *y);
void pe_refd_conv_bwd_data(const pe_conv_desc *d, const double *dy,
                           const double *w, double *dx);
void pe_refd_conv_bwd_filter(const pe_conv_desc *d, const double *x,
                             const double *dy, double *dw);
void pe_refd_bn_fwd_train(int N, int C, int HW, const double *x,
                          const double *gamma, const double *beta, double eps,
                          double momentum, double *run_mean, double *run_var,
                          double *y, double *save_mean, double *save_invstd);
void pe_refd_bn_fwd_eval(int N, int C, int HW, const double *x,
                         const double *gamma, const double *beta, double eps,
                         const double *run_mean, const double *run_var,
                         double *y);
void pe_refd_bn_bwd(int N, int C, int HW, const double *x, const double *dy,
                    const double *gamma, const double *save_mean,
                    const double *save_invstd, double *dx, double *dgamma,
                    double *dbeta);
void pe_refd_relu_fwd(size_t n, const double *x, double *y);
void pe_refd_relu_bwd(size_t n, const double *y, const double *dy, double *dx);
void pe_refd_add(size_t n, const double *a, const double *c, double *y);
void pe_refd_accumulate(size_t n, const double *src, double *dst);
void pe_refd_avgpool_fwd(int N, int C, int HW, const double *x, double *y);
void pe_refd_avgpool_bwd(int N, int C, int HW, const double *dy, double *dx);
void pe_refd_gemm(int transA, int transB, int M, int N, int K, double alpha,
                  const double *A, int lda, const double *B, int ldb,
                  double beta, double *C, int ldc);
void pe_refd_bias_add(int N, int out, const double *bias, double *y);
void pe_refd_bias_bwd(int N, int out, const double *dy, double *dbias);
void pe_refd_ntxent(int B2, int D, const double *z, double T, double *loss,
                    double *dz);
void pe_refd_infonce(int N, int D, int K, const double *q, const double *k,
                     const double *queue, double T, double *loss, double *dq,
                     double *kn);
void pe_refd_ema(size_t n, const double *src, double *dst, double m);
void pe_refd_adam(size_t n, double *p, const double *g, double *m, double *v,
                  double lr, double b1, double b2, double eps, double wd,
                  long t);
void pe_refd_sgd(size_t n, double *p, const double *g, double *buf, double lr,
                 double momentum, double wd, int first);

#endif
