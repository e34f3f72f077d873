/*
 * ref_body.h - the body of the scalar reference (see ref.h), written once
 * for a floating type REAL and included by ref.c twice: REAL = float with
 * REF(name) = pe_ref_name, and REAL = double with REF(name) = pe_refd_name.
 * Math calls go through <tgmath.h>, so sqrt/exp/log take REAL's precision.
 *
 * Not for: inclusion anywhere but ref.c; it has no include guard on
 * purpose.
 */

/* x (N,C,H,W) element, or 0 in the zero padding */
static REAL REF(x_at)(const pe_conv_desc *d, const REAL *x, int n, int c,
                      int ih, int iw) {
    if (ih < 0 || ih >= d->H || iw < 0 || iw >= d->W) return 0;
    return x[(((size_t)n * d->C + c) * d->H + ih) * d->W + iw];
}

/* y[n,k,p,q] = sum over c, r, s of x[n, c, p*stride-pad+r, q*stride-pad+s]
 * * w[k,c,r,s] (cross-correlation, as torch.nn.functional.conv2d) */
void REF(conv_fwd)(const pe_conv_desc *d, const REAL *x, const REAL *w,
                   REAL *y) {
    for (int n = 0; n < d->N; n++)
        for (int k = 0; k < d->K; k++)
            for (int p = 0; p < d->P; p++)
                for (int q = 0; q < d->Q; q++) {
                    REAL acc = 0;
                    for (int c = 0; c < d->C; c++)
                        for (int r = 0; r < d->R; r++)
                            for (int s = 0; s < d->S; s++) {
                                int ih = p * d->stride - d->pad + r;
                                int iw = q * d->stride - d->pad + s;
                                acc += REF(x_at)(d, x, n, c, ih, iw) *
                                       w[(((size_t)k * d->C + c) * d->R + r) * d->S + s];
                            }
                    y[(((size_t)n * d->K + k) * d->P + p) * d->Q + q] = acc;
                }
}

/* dx = d(sum dy*y)/dx: every y[n,k,p,q] term scatters dy * w back onto the
 * x element it read */
void REF(conv_bwd_data)(const pe_conv_desc *d, const REAL *dy, const REAL *w,
                        REAL *dx) {
    size_t nx = (size_t)d->N * d->C * d->H * d->W;
    for (size_t i = 0; i < nx; i++) dx[i] = 0;
    for (int n = 0; n < d->N; n++)
        for (int k = 0; k < d->K; k++)
            for (int p = 0; p < d->P; p++)
                for (int q = 0; q < d->Q; q++) {
                    REAL g = dy[(((size_t)n * d->K + k) * d->P + p) * d->Q + q];
                    for (int c = 0; c < d->C; c++)
                        for (int r = 0; r < d->R; r++)
                            for (int s = 0; s < d->S; s++) {
                                int ih = p * d->stride - d->pad + r;
                                int iw = q * d->stride - d->pad + s;
                                if (ih < 0 || ih >= d->H || iw < 0 || iw >= d->W)
                                    continue;
                                dx[(((size_t)n * d->C + c) * d->H + ih) * d->W + iw] +=
                                    g * w[(((size_t)k * d->C + c) * d->R + r) * d->S + s];
                            }
                }
}

/* dw[k,c,r,s] = sum over n, p, q of dy[n,k,p,q] * x[n, c, p*stride-pad+r,
 * q*stride-pad+s] */
void REF(conv_bwd_filter)(const pe_conv_desc *d, const REAL *x, const REAL *dy,
                          REAL *dw) {
    for (int k = 0; k < d->K; k++)
        for (int c = 0; c < d->C; c++)
            for (int r = 0; r < d->R; r++)
                for (int s = 0; s < d->S; s++) {
                    REAL acc = 0;
                    for (int n = 0; n < d->N; n++)
                        for (int p = 0; p < d->P; p++)
                            for (int q = 0; q < d->Q; q++) {
                                int ih = p * d->stride - d->pad + r;
                                int iw = q * d->stride - d->pad + s;
                                acc += dy[(((size_t)n * d->K + k) * d->P + p) * d->Q + q] *
                                       REF(x_at)(d, x, n, c, ih, iw);
                            }
                    dw[(((size_t)k * d->C + c) * d->R + r) * d->S + s] = acc;
                }
}

/* BatchNorm2d, training: per channel c over the n = N*HW values,
 * mean = sum x / n, var = sum (x - mean)^2 / n (biased, for normalising),
 * invstd = 1 / sqrt(var + eps), y = (x - mean) * invstd * gamma + beta;
 * running stats: run = momentum * batch + (1 - momentum) * run, with the
 * unbiased variance sum / (n - 1). Statistics in double, as PyTorch. */
void REF(bn_fwd_train)(int N, int C, int HW, const REAL *x, const REAL *gamma,
                       const REAL *beta, REAL eps, REAL momentum,
                       REAL *run_mean, REAL *run_var, REAL *y,
                       REAL *save_mean, REAL *save_invstd) {
    double cnt = (double)N * HW;
    for (int c = 0; c < C; c++) {
        double sum = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) sum += x[((size_t)n * C + c) * HW + i];
        double mean = sum / cnt;
        double sq = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                double dev = x[((size_t)n * C + c) * HW + i] - mean;
                sq += dev * dev;
            }
        double invstd = 1 / sqrt(sq / cnt + (double)eps);
        save_mean[c] = (REAL)mean;
        save_invstd[c] = (REAL)invstd;
        run_mean[c] = (REAL)((double)momentum * mean +
                             (1 - (double)momentum) * run_mean[c]);
        run_var[c] = (REAL)((double)momentum * (sq / (cnt - 1)) +
                            (1 - (double)momentum) * run_var[c]);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t at = ((size_t)n * C + c) * HW + i;
                y[at] = (x[at] - save_mean[c]) * save_invstd[c] * gamma[c] + beta[c];
            }
    }
}

/* BatchNorm2d, evaluation: y = (x - run_mean) / sqrt(run_var + eps) * gamma
 * + beta */
void REF(bn_fwd_eval)(int N, int C, int HW, const REAL *x, const REAL *gamma,
                      const REAL *beta, REAL eps, const REAL *run_mean,
                      const REAL *run_var, REAL *y) {
    for (int c = 0; c < C; c++) {
        REAL invstd = (REAL)(1 / sqrt((double)run_var[c] + (double)eps));
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t at = ((size_t)n * C + c) * HW + i;
                y[at] = (x[at] - run_mean[c]) * invstd * gamma[c] + beta[c];
            }
    }
}

/* BatchNorm2d backward through the batch statistics (training mode):
 * dbeta = sum dy, dgamma = sum dy * xhat, and, with xhat = (x - mean) *
 * invstd, dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
 * written as PyTorch does: k = sum (x - mean) dy * invstd^2 / n. */
void REF(bn_bwd)(int N, int C, int HW, const REAL *x, const REAL *dy,
                 const REAL *gamma, const REAL *save_mean,
                 const REAL *save_invstd, REAL *dx, REAL *dgamma,
                 REAL *dbeta) {
    double cnt = (double)N * HW;
    for (int c = 0; c < C; c++) {
        double mean = save_mean[c], invstd = save_invstd[c];
        double sum_dy = 0, dot = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t at = ((size_t)n * C + c) * HW + i;
                sum_dy += dy[at];
                dot += (x[at] - mean) * dy[at];
            }
        dbeta[c] = (REAL)sum_dy;
        dgamma[c] = (REAL)(dot * invstd);
        double k = dot * invstd * invstd / cnt;
        double mean_dy = sum_dy / cnt;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t at = ((size_t)n * C + c) * HW + i;
                dx[at] = (REAL)((dy[at] - mean_dy - (x[at] - mean) * k) * invstd *
                                gamma[c]);
            }
    }
}

/* y = max(x, 0); NaN stays NaN, as torch.relu */
void REF(relu_fwd)(size_t n, const REAL *x, REAL *y) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0 ? 0 : x[i];
}

/* dx = dy where y > 0, else 0 (torch threshold_backward: y <= 0 gives 0) */
void REF(relu_bwd)(size_t n, const REAL *y, const REAL *dy, REAL *dx) {
    for (size_t i = 0; i < n; i++) dx[i] = y[i] <= 0 ? 0 : dy[i];
}

void REF(add)(size_t n, const REAL *a, const REAL *c, REAL *y) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + c[i];
}

void REF(accumulate)(size_t n, const REAL *src, REAL *dst) {
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

/* y[n,c] = (sum over hw of x[n,c,hw]) / HW, as torch.mean */
void REF(avgpool_fwd)(int N, int C, int HW, const REAL *x, REAL *y) {
    for (size_t nc = 0; nc < (size_t)N * C; nc++) {
        REAL sum = 0;
        for (int i = 0; i < HW; i++) sum += x[nc * HW + i];
        y[nc] = sum / (REAL)HW;
    }
}

void REF(avgpool_bwd)(int N, int C, int HW, const REAL *dy, REAL *dx) {
    for (size_t nc = 0; nc < (size_t)N * C; nc++)
        for (int i = 0; i < HW; i++) dx[nc * HW + i] = dy[nc] / (REAL)HW;
}

/* C = alpha op(A) op(B) + beta C, row-major; op(A) is M x K: A[i*lda + k],
 * or A[k*lda + i] when transA. beta == 0 does not read C (BLAS). */
void REF(gemm)(int transA, int transB, int M, int N, int K, REAL alpha,
               const REAL *A, int lda, const REAL *B, int ldb, REAL beta,
               REAL *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            REAL acc = 0;
            for (int k = 0; k < K; k++) {
                REAL a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                REAL b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += a * b;
            }
            REAL *c = &C[(size_t)i * ldc + j];
            *c = beta == 0 ? alpha * acc : alpha * acc + beta * *c;
        }
}

void REF(bias_add)(int N, int out, const REAL *bias, REAL *y) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < out; j++) y[(size_t)i * out + j] += bias[j];
}

void REF(bias_bwd)(int N, int out, const REAL *dy, REAL *dbias) {
    for (int j = 0; j < out; j++) {
        REAL sum = 0;
        for (int i = 0; i < N; i++) sum += dy[(size_t)i * out + j];
        dbias[j] = sum;
    }
}

/* NT-Xent as the PyTorch bench computes it: zn = z / max(|z|, 1e-12) per
 * row (F.normalize), s = zn zn^T / T, diagonal excluded, loss = mean over
 * rows i of logsumexp_{j != i} s[i,j] - s[i, (i + B) mod 2B]. dz by hand:
 * ds[i,j] = (softmax_i(s)[j] - [j == pos(i)]) / 2B off the diagonal,
 * dzn_i = sum_j (ds[i,j] + ds[j,i]) zn_j / T, and through the normalise:
 * dz_i = (dzn_i - zn_i (zn_i . dzn_i)) / |z_i| (dzn_i / 1e-12 when the
 * clamp was active, whose gradient wrt the norm is 0). */
void REF(ntxent)(int B2, int D, const REAL *z, REAL T, REAL *loss, REAL *dz) {
    const REAL norm_eps = (REAL)1e-12;
    int B = B2 / 2;
    REAL *zn = malloc(sizeof(REAL) * (size_t)B2 * D);   /* (2B, D) */
    REAL *norm = malloc(sizeof(REAL) * (size_t)B2);     /* (2B) */
    REAL *s = malloc(sizeof(REAL) * (size_t)B2 * B2);   /* (2B, 2B) logits, then ds */
    REAL *lse = malloc(sizeof(REAL) * (size_t)B2);      /* (2B) */
    REAL *dzn = malloc(sizeof(REAL) * (size_t)D);       /* (D) */
    PE_ASSERT(zn && norm && s && lse && dzn);

    for (int i = 0; i < B2; i++) {
        REAL sq = 0;
        for (int k = 0; k < D; k++) sq += z[(size_t)i * D + k] * z[(size_t)i * D + k];
        norm[i] = sqrt(sq);
        REAL den = norm[i] > norm_eps ? norm[i] : norm_eps;
        for (int k = 0; k < D; k++) zn[(size_t)i * D + k] = z[(size_t)i * D + k] / den;
    }
    for (int i = 0; i < B2; i++)
        for (int j = 0; j < B2; j++) {
            REAL dot = 0;
            for (int k = 0; k < D; k++) dot += zn[(size_t)i * D + k] * zn[(size_t)j * D + k];
            s[(size_t)i * B2 + j] = dot / T;
        }
    REAL total = 0;
    for (int i = 0; i < B2; i++) {
        REAL mx = -INFINITY;
        for (int j = 0; j < B2; j++)
            if (j != i && s[(size_t)i * B2 + j] > mx) mx = s[(size_t)i * B2 + j];
        REAL sum = 0;
        for (int j = 0; j < B2; j++)
            if (j != i) sum += exp(s[(size_t)i * B2 + j] - mx);
        lse[i] = mx + log(sum);
        total += lse[i] - s[(size_t)i * B2 + (i + B) % B2];
    }
    *loss = total / (REAL)B2;

    /* s becomes ds = d loss / d s */
    for (int i = 0; i < B2; i++)
        for (int j = 0; j < B2; j++) {
            REAL *sij = &s[(size_t)i * B2 + j];
            if (j == i) {
                *sij = 0;
                continue;
            }
            REAL prob = exp(*sij - lse[i]);
            *sij = (prob - (j == (i + B) % B2 ? 1 : 0)) / (REAL)B2;
        }
    for (int i = 0; i < B2; i++) {
        for (int k = 0; k < D; k++) {
            REAL acc = 0;
            for (int j = 0; j < B2; j++)
                acc += (s[(size_t)i * B2 + j] + s[(size_t)j * B2 + i]) * zn[(size_t)j * D + k];
            dzn[k] = acc / T;
        }
        if (norm[i] > norm_eps) {
            REAL dot = 0;
            for (int k = 0; k < D; k++) dot += zn[(size_t)i * D + k] * dzn[k];
            for (int k = 0; k < D; k++)
                dz[(size_t)i * D + k] = (dzn[k] - zn[(size_t)i * D + k] * dot) / norm[i];
        } else {
            for (int k = 0; k < D; k++) dz[(size_t)i * D + k] = dzn[k] / norm_eps;
        }
    }
    free(dzn);
    free(lse);
    free(s);
    free(norm);
    free(zn);
}

/* InfoNCE as the MoCo v2 reference computes it: qn, kn = F.normalize of
 * q, k per row; row i's logits l[i] = [qn_i . kn_i, qn_i . queue_j (j < K)]
 * / T; loss = mean over rows of logsumexp(l[i]) - l[i][0]. dq by hand:
 * dl[i][c] = (softmax(l[i])[c] - [c == 0]) / N, dqn_i = (dl[i][0] kn_i +
 * sum_j dl[i][1 + j] queue_j) / T, then through the normalise as in ntxent.
 * The keys get no gradient; kn is written out. */
void REF(infonce)(int N, int D, int K, const REAL *q, const REAL *k, const REAL *queue,
                  REAL T, REAL *loss, REAL *dq, REAL *kn) {
    const REAL norm_eps = (REAL)1e-12;
    int L = 1 + K;
    REAL *qn = malloc(sizeof(REAL) * (size_t)N * D);  /* (N, D) */
    REAL *qnorm = malloc(sizeof(REAL) * (size_t)N);   /* (N) */
    REAL *l = malloc(sizeof(REAL) * (size_t)L);       /* (1 + K) one row */
    REAL *dqn = malloc(sizeof(REAL) * (size_t)D);     /* (D) */
    PE_ASSERT(qn && qnorm && l && dqn);

    for (int i = 0; i < N; i++) {
        const REAL *x[2] = {q + (size_t)i * D, k + (size_t)i * D};
        REAL *xn[2] = {qn + (size_t)i * D, kn + (size_t)i * D};
        for (int v = 0; v < 2; v++) {
            REAL sq = 0;
            for (int c = 0; c < D; c++) sq += x[v][c] * x[v][c];
            REAL norm = sqrt(sq), den = norm > norm_eps ? norm : norm_eps;
            for (int c = 0; c < D; c++) xn[v][c] = x[v][c] / den;
            if (v == 0) qnorm[i] = norm;
        }
    }
    REAL total = 0;
    for (int i = 0; i < N; i++) {
        const REAL *qi = qn + (size_t)i * D, *ki = kn + (size_t)i * D;
        for (int j = 0; j < L; j++) {
            const REAL *other = j == 0 ? ki : queue + (size_t)(j - 1) * D;
            REAL dot = 0;
            for (int c = 0; c < D; c++) dot += qi[c] * other[c];
            l[j] = dot / T;
        }
        REAL mx = -INFINITY;
        for (int j = 0; j < L; j++)
            if (l[j] > mx) mx = l[j];
        REAL sum = 0;
        for (int j = 0; j < L; j++) sum += exp(l[j] - mx);
        REAL lse = mx + log(sum);
        total += lse - l[0];
        /* l becomes dl = d loss / d l for this row */
        for (int j = 0; j < L; j++) l[j] = (exp(l[j] - lse) - (j == 0 ? 1 : 0)) / (REAL)N;
        for (int c = 0; c < D; c++) {
            REAL acc = l[0] * ki[c];
            for (int j = 1; j < L; j++) acc += l[j] * queue[(size_t)(j - 1) * D + c];
            dqn[c] = acc / T;
        }
        REAL *dqi = dq + (size_t)i * D;
        if (qnorm[i] > norm_eps) {
            REAL dot = 0;
            for (int c = 0; c < D; c++) dot += qi[c] * dqn[c];
            for (int c = 0; c < D; c++) dqi[c] = (dqn[c] - qi[c] * dot) / qnorm[i];
        } else {
            for (int c = 0; c < D; c++) dqi[c] = dqn[c] / norm_eps;
        }
    }
    *loss = total / (REAL)N;
    free(dqn);
    free(l);
    free(qnorm);
    free(qn);
}

/* The momentum update dst = m dst + (1 - m) src, m and 1 - m from double,
 * each product rounded before the sum (PyTorch's float32 order). */
void REF(ema)(size_t n, const REAL *src, REAL *dst, double m) {
    REAL mr = (REAL)m, om = (REAL)(1.0 - m);
    for (size_t i = 0; i < n; i++) {
        REAL keep = dst[i] * mr, take = src[i] * om;
        dst[i] = keep + take;
    }
}

/* torch.optim.Adam (1.13, single-tensor path), weight decay as L2 on the
 * gradient. The header's p -= lr (m / bc1) / (sqrt(v / bc2) + eps),
 * computed as PyTorch orders it: step_size = lr / bc1 and denom =
 * sqrt(v) / sqrt(bc2) + eps, with the bias corrections in double. */
void REF(adam)(size_t n, REAL *p, const REAL *g, REAL *m, REAL *v, REAL lr,
               REAL b1, REAL b2, REAL eps, REAL wd, long t) {
    double bc1 = 1 - pow((double)b1, (double)t);
    double bc2 = 1 - pow((double)b2, (double)t);
    REAL step_size = (REAL)((double)lr / bc1);
    REAL bc2_sqrt = (REAL)sqrt(bc2);
    REAL one_minus_b1 = (REAL)(1 - (double)b1);
    REAL one_minus_b2 = (REAL)(1 - (double)b2);
    for (size_t i = 0; i < n; i++) {
        REAL gi = wd != 0 ? g[i] + wd * p[i] : g[i];
        m[i] = m[i] * b1 + one_minus_b1 * gi;
        v[i] = v[i] * b2 + one_minus_b2 * gi * gi;
        REAL denom = sqrt(v[i]) / bc2_sqrt + eps;
        p[i] = p[i] - step_size * (m[i] / denom);
    }
}

/* torch.optim.SGD (dampening 0, no Nesterov): g' = g + wd p; with momentum,
 * buf = g' at the first step, else momentum buf + g', and the step uses
 * buf; p -= lr * step. momentum == 0 leaves buf alone (it may be NULL). */
void REF(sgd)(size_t n, REAL *p, const REAL *g, REAL *buf, REAL lr,
              REAL momentum, REAL wd, int first) {
    for (size_t i = 0; i < n; i++) {
        REAL gi = wd != 0 ? g[i] + wd * p[i] : g[i];
        if (momentum != 0) {
            buf[i] = first ? gi : momentum * buf[i] + gi;
            gi = buf[i];
        }
        p[i] = p[i] - lr * gi;
    }
}
