/*
 * probe.c - the downstream probes and the report's numbers (see probe.h).
 *
 * Not for: feature extraction, the store, printing.
 */
#include "probe.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pe.h"
#include "rng.h"

/* Domain tags of the MLP's streams ("mlpi", "drop" in little-endian
 * ASCII), so init and dropout never share a key with each other or with
 * the trainer's view and shuffle streams of the same seed. */
#define TAG_MLP_INIT 0x69706c6du
#define TAG_MLP_DROPOUT 0x706f7264u

void pe_probe_opts_default(pe_probe_opts *o) {
    memset(o, 0, sizeof *o);
    o->kind = PE_PROBE_LINEAR;
    o->l2 = 1e-4;
    o->iters = 200;
    o->memory = 10;
    o->gtol = 1e-6;
    o->epochs = 500;
    o->batch = 64;
    o->lr = 1e-4;
    o->hidden[0] = 512;
    o->hidden[1] = 256;
    o->dropout = 0.5f;
    o->shuffle = 0;
    o->seed = 1;
}

const char *pe_probe_kind_name(pe_probe_kind k) {
    return k == PE_PROBE_MLP ? "mlp" : "linear";
}

struct pe_probe {
    pe_probe_kind kind;
    int d, k;
    double *w;      /* linear: W (K, d) then b (K) */
    pe_backend *be; /* mlp: borrowed, for the GEMMs of pe_probe_scores */
    int h1, h2;
    float *p;       /* mlp: every parameter, carved below */
    size_t np;
    float *W1;      /* (h1, d) */
    float *b1;      /* (h1) */
    float *W2;      /* (h2, h1) */
    float *b2;      /* (h2) */
    float *W3;      /* (K, h2) */
    float *b3;      /* (K) */
};

void pe_probe_free(pe_probe *p) {
    if (!p) return;
    free(p->w);
    free(p->p);
    free(p);
}

const double *pe_probe_linear_params(const pe_probe *p, size_t *count) {
    if (p->kind != PE_PROBE_LINEAR) {
        if (count) *count = 0;
        return NULL;
    }
    if (count) *count = (size_t)p->k * ((size_t)p->d + 1);
    return p->w;
}

/* ---------------- linear: the objective ---------------- */

/* Four partial sums, combined at the end: a fixed order (so the same bits
 * every run) that still keeps four multiply-adds in flight. */
static double dot_df(const double *w, const float *x, int d) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int j = 0;
    for (; j + 4 <= d; j += 4) {
        s0 += w[j] * x[j];
        s1 += w[j + 1] * x[j + 1];
        s2 += w[j + 2] * x[j + 2];
        s3 += w[j + 3] * x[j + 3];
    }
    for (; j < d; j++) s0 += w[j] * x[j];
    return (s0 + s1) + (s2 + s3);
}

static double dot_dd(const double *a, const double *b, size_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {
        s0 += a[j] * b[j];
        s1 += a[j + 1] * b[j + 1];
        s2 += a[j + 2] * b[j + 2];
        s3 += a[j + 3] * b[j + 3];
    }
    for (; j < n; j++) s0 += a[j] * b[j];
    return (s0 + s1) + (s2 + s3);
}

/* The objective with caller scratch z (k doubles). */
static double linear_loss(const double *w, const float *x, const int32_t *y, size_t n,
                          int d, int k, double l2, double *grad, double *z) {
    const double *W = w, *b = w + (size_t)k * d;
    size_t np = (size_t)k * ((size_t)d + 1);
    double loss = 0;
    if (grad) memset(grad, 0, np * sizeof *grad);
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * (size_t)d;
        double m = -INFINITY, s = 0;
        for (int c = 0; c < k; c++) {
            z[c] = b[c] + dot_df(W + (size_t)c * d, xi, d);
            if (z[c] > m) m = z[c];
        }
        for (int c = 0; c < k; c++) s += exp(z[c] - m);
        loss += m + log(s) - z[y[i]];
        if (!grad) continue;
        for (int c = 0; c < k; c++) {
            double r = exp(z[c] - m) / s - (c == y[i]);
            double *gc = grad + (size_t)c * d;
            for (int j = 0; j < d; j++) gc[j] += r * xi[j];
            grad[(size_t)k * d + (size_t)c] += r;
        }
    }
    double inv = 1.0 / (double)n, pen = 0;
    loss *= inv;
    for (size_t j = 0; j < (size_t)k * d; j++) pen += W[j] * W[j];
    loss += 0.5 * l2 * pen;
    if (grad) {
        for (size_t j = 0; j < np; j++) grad[j] *= inv;
        for (size_t j = 0; j < (size_t)k * d; j++) grad[j] += l2 * W[j];
    }
    return loss;
}

double pe_probe_linear_loss(const double *w, const float *x, const int32_t *y, size_t n,
                            int d, int k, double l2, double *grad) {
    double *z = malloc((size_t)k * sizeof *z);
    if (!z || n == 0) {
        free(z);
        return NAN;
    }
    double f = linear_loss(w, x, y, n, d, k, l2, grad, z);
    free(z);
    return f;
}

/* ---------------- linear: L-BFGS ---------------- */

static int train_linear(pe_probe *p, const pe_probe_opts *o, const float *x,
                        const int32_t *y, size_t n, pe_probe_stats *st) {
    int d = p->d, k = p->k, m = o->memory;
    size_t np = (size_t)k * ((size_t)d + 1);
    double *w = calloc(np, sizeof *w);             /* zero initialisation */
    double *g = malloc(np * sizeof *g), *wn = malloc(np * sizeof *wn);
    double *gn = malloc(np * sizeof *gn), *dir = malloc(np * sizeof *dir);
    double *S = malloc((size_t)m * np * sizeof *S), *Y = malloc((size_t)m * np * sizeof *Y);
    double *rho = malloc((size_t)m * sizeof *rho), *alpha = malloc((size_t)m * sizeof *alpha);
    double *z = malloc((size_t)k * sizeof *z);
    int rc = 0;
    if (!w || !g || !wn || !gn || !dir || !S || !Y || !rho || !alpha || !z) {
        rc = pe_fail(ENOMEM, "not enough memory for the linear probe (%zu parameters)", np);
        goto out;
    }
    double f = linear_loss(w, x, y, n, d, k, o->l2, g, z);
    st->loss0 = f;
    int stored = 0, newest = -1, it = 0;
    for (; it < o->iters; it++) {
        double gg = dot_dd(g, g, np);
        if (sqrt(gg) < o->gtol) break;
        /* two-loop recursion: dir = -H g */
        memcpy(dir, g, np * sizeof *dir);
        for (int q = 0; q < stored; q++) {
            int i = (newest - q + m) % m;
            alpha[i] = rho[i] * dot_dd(S + (size_t)i * np, dir, np);
            const double *yi = Y + (size_t)i * np;
            for (size_t j = 0; j < np; j++) dir[j] -= alpha[i] * yi[j];
        }
        if (stored) {
            const double *sn = S + (size_t)newest * np, *yn = Y + (size_t)newest * np;
            double gamma = dot_dd(sn, yn, np) / dot_dd(yn, yn, np);
            for (size_t j = 0; j < np; j++) dir[j] *= gamma;
        }
        for (int q = stored - 1; q >= 0; q--) {
            int i = (newest - q + m) % m;
            double beta = rho[i] * dot_dd(Y + (size_t)i * np, dir, np);
            const double *si = S + (size_t)i * np;
            for (size_t j = 0; j < np; j++) dir[j] += si[j] * (alpha[i] - beta);
        }
        for (size_t j = 0; j < np; j++) dir[j] = -dir[j];
        double gd = dot_dd(g, dir, np);
        if (!(gd < 0)) { /* not a descent direction: forget the curvature */
            stored = 0;
            newest = -1;
            for (size_t j = 0; j < np; j++) dir[j] = -g[j];
            gd = -gg;
        }
        /* the first step has no curvature to scale it: cap its length */
        double t = stored ? 1.0 : fmin(1.0, 1.0 / sqrt(gg)), fn = f;
        int ok = 0;
        for (int ls = 0; ls < 40; ls++) {
            for (size_t j = 0; j < np; j++) wn[j] = w[j] + t * dir[j];
            fn = linear_loss(wn, x, y, n, d, k, o->l2, gn, z);
            if (fn <= f + 1e-4 * t * gd) {
                ok = 1;
                break;
            }
            t *= 0.5;
        }
        if (!ok) {
            st->stalled = 1;
            break;
        }
        int slot = (newest + 1) % m;
        double *s = S + (size_t)slot * np, *yv = Y + (size_t)slot * np;
        for (size_t j = 0; j < np; j++) {
            s[j] = wn[j] - w[j];
            yv[j] = gn[j] - g[j];
        }
        double sy = dot_dd(s, yv, np), yy = dot_dd(yv, yv, np);
        if (sy > 1e-10 * yy) { /* keeps the inverse-Hessian estimate positive definite */
            rho[slot] = 1.0 / sy;
            newest = slot;
            if (stored < m) stored++;
        }
        double *tmp = w;
        w = wn;
        wn = tmp;
        tmp = g;
        g = gn;
        gn = tmp;
        f = fn;
        if (o->progress) o->progress(o->progress_ctx, it + 1, o->iters, f);
    }
    st->iters = it;
    st->loss = f;
    st->gnorm = sqrt(dot_dd(g, g, np));
    p->w = w;
    w = NULL;
out:
    free(w);
    free(g);
    free(wn);
    free(gn);
    free(dir);
    free(S);
    free(Y);
    free(rho);
    free(alpha);
    free(z);
    return rc;
}

/* ---------------- MLP ---------------- */

static int mlp_alloc(pe_probe *p) {
    size_t d = (size_t)p->d, h1 = (size_t)p->h1, h2 = (size_t)p->h2, k = (size_t)p->k;
    p->np = h1 * d + h1 + h2 * h1 + h2 + k * h2 + k;
    if (!(p->p = malloc(p->np * sizeof *p->p))) return ENOMEM;
    p->W1 = p->p;
    p->b1 = p->W1 + h1 * d;
    p->W2 = p->b1 + h1;
    p->b2 = p->W2 + h2 * h1;
    p->W3 = p->b2 + h2;
    p->b3 = p->W3 + k * h2;
    return 0;
}

/* nn.Linear's default init: weight and bias U(-1/sqrt(in), 1/sqrt(in)),
 * one stream per (layer, weight or bias). */
static void mlp_init(pe_probe *p, uint64_t seed) {
    uint32_t key[2];
    pe_rng_epoch_key(seed, 0, TAG_MLP_INIT, key);
    float *t[3][2] = {{p->W1, p->b1}, {p->W2, p->b2}, {p->W3, p->b3}};
    int in[3] = {p->d, p->h1, p->h2}, out[3] = {p->h1, p->h2, p->k};
    for (int l = 0; l < 3; l++) {
        double bound = 1.0 / sqrt((double)in[l]);
        for (int b = 0; b < 2; b++) {
            pe_rng r = pe_rng_init(key, (uint32_t)l, (uint32_t)b, 0);
            size_t cnt = b ? (size_t)out[l] : (size_t)out[l] * (size_t)in[l];
            for (size_t i = 0; i < cnt; i++) t[l][b][i] = pe_rng_uniform_f32(&r, -bound, bound);
        }
    }
}

/* Activations of one batch of at most B rows. */
typedef struct mlp_acts {
    float *x;    /* (B, d) the batch's features */
    float *a1;   /* (B, h1) after ReLU */
    float *mask; /* (B, h1) dropout: 0 or 1 / (1 - p) */
    float *d1;   /* (B, h1) after dropout */
    float *a2;   /* (B, h2) after ReLU */
    float *z;    /* (B, K) logits */
    float *dz;   /* (B, K) */
    float *g2;   /* (B, h2) */
    float *g1;   /* (B, h1) */
} mlp_acts;

/* Forward of nb rows of a.x; dropout applied when a.mask is given. */
static int mlp_forward(const pe_probe *p, mlp_acts *a, int nb, int train) {
    pe_backend *be = p->be;
    int d = p->d, h1 = p->h1, h2 = p->h2, k = p->k, rc;
    const float *in2 = a->a1;
    if ((rc = be->gemm(be, 0, 1, nb, h1, d, 1.0f, a->x, d, p->W1, d, 0.0f, a->a1, h1)) ||
        (rc = be->bias_add(be, nb, h1, p->b1, a->a1)) ||
        (rc = be->relu_fwd(be, (size_t)nb * h1, a->a1, a->a1)))
        return rc;
    if (train) {
        for (size_t i = 0; i < (size_t)nb * h1; i++) a->d1[i] = a->a1[i] * a->mask[i];
        in2 = a->d1;
    }
    if ((rc = be->gemm(be, 0, 1, nb, h2, h1, 1.0f, in2, h1, p->W2, h1, 0.0f, a->a2, h2)) ||
        (rc = be->bias_add(be, nb, h2, p->b2, a->a2)) ||
        (rc = be->relu_fwd(be, (size_t)nb * h2, a->a2, a->a2)) ||
        (rc = be->gemm(be, 0, 1, nb, k, h2, 1.0f, a->a2, h2, p->W3, h2, 0.0f, a->z, k)) ||
        (rc = be->bias_add(be, nb, k, p->b3, a->z)))
        return rc;
    return 0;
}

static void acts_free(mlp_acts *a) {
    free(a->x);
    free(a->a1);
    free(a->mask);
    free(a->d1);
    free(a->a2);
    free(a->z);
    free(a->dz);
    free(a->g2);
    free(a->g1);
}

static int acts_alloc(mlp_acts *a, const pe_probe *p, int B) {
    size_t b = (size_t)B;
    a->x = malloc(b * p->d * sizeof(float));
    a->a1 = malloc(b * p->h1 * sizeof(float));
    a->mask = malloc(b * p->h1 * sizeof(float));
    a->d1 = malloc(b * p->h1 * sizeof(float));
    a->a2 = malloc(b * p->h2 * sizeof(float));
    a->z = malloc(b * p->k * sizeof(float));
    a->dz = malloc(b * p->k * sizeof(float));
    a->g2 = malloc(b * p->h2 * sizeof(float));
    a->g1 = malloc(b * p->h1 * sizeof(float));
    if (!a->x || !a->a1 || !a->mask || !a->d1 || !a->a2 || !a->z || !a->dz || !a->g2 || !a->g1)
        return ENOMEM;
    return 0;
}

static int train_mlp(pe_probe *p, const pe_probe_opts *o, const float *x, const int32_t *y,
                     size_t n, pe_probe_stats *st) {
    pe_backend *be = p->be;
    int d = p->d, h1 = p->h1, h2 = p->h2, k = p->k, B = o->batch, rc;
    mlp_acts a = {0};
    float *g = NULL, *m1 = NULL, *m2 = NULL;
    uint32_t *order = NULL;
    if ((rc = mlp_alloc(p)) || (rc = acts_alloc(&a, p, B))) goto nomem;
    g = malloc(p->np * sizeof *g);
    m1 = calloc(p->np, sizeof *m1);
    m2 = calloc(p->np, sizeof *m2);
    order = malloc(n * sizeof *order);
    if (!g || !m1 || !m2 || !order) goto nomem;
    mlp_init(p, o->seed);
    /* gradients carved as the parameters are */
    float *gW1 = g, *gb1 = gW1 + (size_t)h1 * d, *gW2 = gb1 + h1, *gb2 = gW2 + (size_t)h2 * h1;
    float *gW3 = gb2 + h2, *gb3 = gW3 + (size_t)k * h2;
    float keep_scale = 1.0f / (1.0f - o->dropout);
    long step = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (size_t i = 0; i < n; i++) order[i] = (uint32_t)i;
        if (o->shuffle) pe_rng_shuffle(o->seed, (uint64_t)ep, order, n);
        uint32_t dkey[2];
        pe_rng_epoch_key(o->seed, (uint64_t)ep, TAG_MLP_DROPOUT, dkey);
        double epoch_loss = 0;
        for (size_t b0 = 0, bi = 0; b0 < n; b0 += (size_t)B, bi++) {
            int nb = (int)(n - b0 < (size_t)B ? n - b0 : (size_t)B);
            for (int i = 0; i < nb; i++)
                memcpy(a.x + (size_t)i * d, x + (size_t)order[b0 + (size_t)i] * d,
                       (size_t)d * sizeof(float));
            /* one stream per batch: u < p drops, as bernoulli(1 - p) keeps */
            pe_rng r = pe_rng_init(dkey, (uint32_t)bi, (uint32_t)(bi >> 32), 0);
            for (size_t i = 0; i < (size_t)nb * h1; i++)
                a.mask[i] = pe_rng_float(&r) < o->dropout ? 0.0f : keep_scale;
            if ((rc = mlp_forward(p, &a, nb, 1))) goto out;
            /* cross-entropy, mean over the batch */
            double bl = 0;
            for (int i = 0; i < nb; i++) {
                const float *zi = a.z + (size_t)i * k;
                float *dzi = a.dz + (size_t)i * k;
                int yi = y[order[b0 + (size_t)i]];
                double mx = zi[0], s = 0;
                for (int c = 1; c < k; c++)
                    if (zi[c] > mx) mx = zi[c];
                for (int c = 0; c < k; c++) s += exp((double)zi[c] - mx);
                bl += mx + log(s) - zi[yi];
                for (int c = 0; c < k; c++)
                    dzi[c] = (float)((exp((double)zi[c] - mx) / s - (c == yi)) / nb);
            }
            epoch_loss += bl;
            if ((rc = be->gemm(be, 1, 0, k, h2, nb, 1.0f, a.dz, k, a.a2, h2, 0.0f, gW3, h2)) ||
                (rc = be->bias_bwd(be, nb, k, a.dz, gb3)) ||
                (rc = be->gemm(be, 0, 0, nb, h2, k, 1.0f, a.dz, k, p->W3, h2, 0.0f, a.g2, h2)) ||
                (rc = be->relu_bwd(be, (size_t)nb * h2, a.a2, a.g2, a.g2)) ||
                (rc = be->gemm(be, 1, 0, h2, h1, nb, 1.0f, a.g2, h2, a.d1, h1, 0.0f, gW2, h1)) ||
                (rc = be->bias_bwd(be, nb, h2, a.g2, gb2)) ||
                (rc = be->gemm(be, 0, 0, nb, h1, h2, 1.0f, a.g2, h2, p->W2, h1, 0.0f, a.g1, h1)))
                goto out;
            for (size_t i = 0; i < (size_t)nb * h1; i++) a.g1[i] *= a.mask[i];
            if ((rc = be->relu_bwd(be, (size_t)nb * h1, a.a1, a.g1, a.g1)) ||
                (rc = be->gemm(be, 1, 0, h1, d, nb, 1.0f, a.g1, h1, a.x, d, 0.0f, gW1, d)) ||
                (rc = be->bias_bwd(be, nb, h1, a.g1, gb1)) ||
                (rc = be->adam(be, p->np, p->p, g, m1, m2, (float)o->lr, 0.9f, 0.999f, 1e-8f,
                               0.0f, ++step)))
                goto out;
        }
        st->iters = ep + 1;
        st->loss = epoch_loss / (double)n;
        if (o->progress) o->progress(o->progress_ctx, ep + 1, o->epochs, st->loss);
    }
    rc = 0;
    goto out;
nomem:
    rc = pe_fail(ENOMEM, "not enough memory for the MLP probe");
out:
    acts_free(&a);
    free(g);
    free(m1);
    free(m2);
    free(order);
    return rc;
}

/* ---------------- both ---------------- */

int pe_probe_train(pe_probe **out, const pe_probe_opts *o, pe_backend *be, const float *x,
                   const int32_t *y, size_t n, int d, int k, pe_probe_stats *stats) {
    pe_probe_stats local;
    pe_probe_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    *out = NULL;
    if (n == 0) return pe_fail(PE_EUSAGE, "no training features");
    if (n > UINT32_MAX) return pe_fail(PE_EUSAGE, "too many training features");
    if (d < 1 || k < 2) return pe_fail(PE_EUSAGE, "a probe needs d >= 1 and at least 2 classes");
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k)
            return pe_fail(PE_EUSAGE, "label %d of training row %zu is not in [0, %d)", (int)y[i], i, k);
    if (o->kind == PE_PROBE_LINEAR) {
        if (!(o->l2 >= 0) || o->iters < 0 || o->memory < 1 || !(o->gtol >= 0))
            return pe_fail(PE_EUSAGE, "bad linear probe options");
    } else if (o->kind == PE_PROBE_MLP) {
        if (!be || o->epochs < 0 || o->batch < 1 || !(o->lr > 0) || o->hidden[0] < 1 ||
            o->hidden[1] < 1 || !(o->dropout >= 0 && o->dropout < 1))
            return pe_fail(PE_EUSAGE, "bad MLP probe options");
    } else {
        return pe_fail(PE_EUSAGE, "unknown probe kind %d", (int)o->kind);
    }
    pe_probe *p = calloc(1, sizeof *p);
    if (!p) return ENOMEM;
    p->kind = o->kind;
    p->d = d;
    p->k = k;
    p->be = be;
    p->h1 = o->hidden[0];
    p->h2 = o->hidden[1];
    int rc = o->kind == PE_PROBE_LINEAR ? train_linear(p, o, x, y, n, st)
                                        : train_mlp(p, o, x, y, n, st);
    if (rc) {
        pe_probe_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int pe_probe_scores(const pe_probe *p, const float *x, size_t n, float *scores) {
    int d = p->d, k = p->k;
    if (p->kind == PE_PROBE_LINEAR) {
        const double *b = p->w + (size_t)k * d;
        for (size_t i = 0; i < n; i++)
            for (int c = 0; c < k; c++)
                scores[i * k + c] = (float)(b[c] + dot_df(p->w + (size_t)c * d, x + i * d, d));
        return 0;
    }
    enum { CHUNK = 256 };
    mlp_acts a = {0};
    int rc = acts_alloc(&a, p, CHUNK);
    for (size_t b0 = 0; !rc && b0 < n; b0 += CHUNK) {
        int nb = (int)(n - b0 < CHUNK ? n - b0 : CHUNK);
        memcpy(a.x, x + b0 * d, (size_t)nb * d * sizeof(float));
        if (!(rc = mlp_forward(p, &a, nb, 0)))
            memcpy(scores + b0 * k, a.z, (size_t)nb * k * sizeof(float));
    }
    acts_free(&a);
    return rc;
}

/* ---------------- the report's numbers ---------------- */

int pe_argmax(const float *s, int k) {
    int best = 0;
    for (int c = 1; c < k; c++)
        if (s[c] > s[best]) best = c;
    return best;
}

int pe_score_rank(const float *s, int k, int c) {
    int r = 1;
    for (int j = 0; j < k; j++)
        if (s[j] > s[c] || (s[j] == s[c] && j < c)) r++;
    return r;
}

int pe_class_means(const float *x, const int32_t *y, size_t n, int d, int k, float *means) {
    double *acc = calloc((size_t)k * d, sizeof *acc);
    size_t *cnt = calloc((size_t)k, sizeof *cnt);
    if (!acc || !cnt) {
        free(acc);
        free(cnt);
        return ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (y[i] < 0 || y[i] >= k) continue;
        cnt[y[i]]++;
        for (int j = 0; j < d; j++) acc[(size_t)y[i] * d + j] += x[i * d + j];
    }
    for (int c = 0; c < k; c++)
        for (int j = 0; j < d; j++)
            means[(size_t)c * d + j] = cnt[c] ? (float)(acc[(size_t)c * d + j] / (double)cnt[c]) : 0.0f;
    free(acc);
    free(cnt);
    return 0;
}

double pe_cosine(const float *a, const float *b, int d) {
    double ab = 0, aa = 0, bb = 0;
    for (int j = 0; j < d; j++) {
        ab += (double)a[j] * b[j];
        aa += (double)a[j] * a[j];
        bb += (double)b[j] * b[j];
    }
    if (aa == 0 || bb == 0) return NAN;
    return ab / (sqrt(aa) * sqrt(bb));
}

void pe_wilson(uint64_t hits, uint64_t n, double z, double *lo, double *hi) {
    if (n == 0 || hits > n) {
        *lo = *hi = NAN;
        return;
    }
    double nn = (double)n, ph = (double)hits / nn, z2 = z * z;
    double den = 1 + z2 / nn;
    double centre = (ph + z2 / (2 * nn)) / den;
    double half = z / den * sqrt(ph * (1 - ph) / nn + z2 / (4 * nn * nn));
    *lo = hits == 0 ? 0.0 : fmax(0.0, centre - half);
    *hi = hits == n ? 1.0 : fmin(1.0, centre + half);
}

int pe_attack_eval(const float *scores, const float *feat, const int32_t *labels, size_t n,
                   int d, int k, const float *means, const pe_target *t, size_t nt,
                   pe_target_result *res, pe_attack_summary *sum) {
    memset(sum, 0, sizeof *sum);
    unsigned char *is_t = calloc(n ? n : 1, 1);
    if (!is_t) return ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < nt; i++) {
        if (t[i].row >= n) { rc = pe_fail(PE_EUSAGE, "target row %zu out of range", t[i].row); goto out; }
        if (is_t[t[i].row]) { rc = pe_fail(PE_EUSAGE, "test row %zu is a target twice", t[i].row); goto out; }
        if (t[i].target < 0 || t[i].target >= k) {
            rc = pe_fail(PE_EUSAGE, "target class %d out of range", (int)t[i].target);
            goto out;
        }
        is_t[t[i].row] = 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= k) {
            rc = pe_fail(PE_EUSAGE, "label %d of test row %zu out of range", (int)labels[i], i);
            goto out;
        }
        if (is_t[i]) continue;
        sum->clean++;
        sum->clean_correct += pe_argmax(scores + i * k, k) == labels[i];
    }
    sum->ca = sum->clean ? (double)sum->clean_correct / (double)sum->clean : NAN;
    for (size_t i = 0; i < nt; i++) {
        const float *s = scores + t[i].row * k, *f = feat + t[i].row * d;
        pe_target_result *r = &res[i];
        r->truth = labels[t[i].row];
        r->target = t[i].target;
        r->pred = pe_argmax(s, k);
        r->rank = pe_score_rank(s, k, r->target);
        r->cos_true = pe_cosine(f, means + (size_t)r->truth * d, d);
        r->cos_target = pe_cosine(f, means + (size_t)r->target * d, d);
        sum->hits += r->pred == r->target;
    }
    sum->targets = nt;
    sum->asr = nt ? (double)sum->hits / (double)nt : NAN;
    pe_wilson(sum->hits, nt, 1.959963984540054, &sum->asr_lo, &sum->asr_hi);
out:
    free(is_t);
    return rc;
}
