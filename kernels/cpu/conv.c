/*
 * conv.c - 2-D convolution (cross-correlation, no bias, NCHW) for the CPU
 * backend: forward, backward to the data, backward to the filter, as
 * im2col + single-threaded GEMM per item on the pool.
 *
 * Not for: dilation, groups, bias (the models here have none), or any
 * layout but NCHW.
 *
 * Items, fixed by the shape (never by the thread count, see cpu.h):
 *  - forward and backward-data: a group of g images, g chosen so that the
 *    GEMM has at least COLS columns (g = 1 at 28x28, 16 at 4x4). The item
 *    unfolds its images into its thread's slot of the workspace, multiplies,
 *    and scatters into y (or folds back into dx).
 *  - backward-filter: (a fixed slice of the batch) x (a tile of input
 *    channels, only when dw is large). The item walks its images in groups,
 *    unfolding its channels, and accumulates dy x col^T into its own
 *    partial dw with beta = 1; the partials of the batch slices are then
 *    added in slice order. Slices and tiles come from the shape, so every
 *    dw element is summed in one order whatever the thread count.
 * 1x1 stride-1 unpadded convolutions skip the unfolding when one image
 * fills a GEMM: x is already the column matrix. Stride-1 "same" padding
 * (3x3 pad 1) unfolds each row of the column matrix as one shifted copy
 * of the image plane (im2col_same_row), 12% faster than row by row.
 *
 * Measured (bench/kernels.c, OpenBLAS SkylakeX, 2 threads): 60-75% of
 * what sgemm alone does on the same GEMMs; the rest is unfolding, OpenBLAS
 * packing the unfolded columns again, and folding back. A GEMM that packs
 * straight from x would remove most of it.
 *
 * The column matrix of a group of g images is (C R S, g P Q): row
 * (c, r, s), column (image j, p, q) holds x[j, c, p stride - pad + r,
 * q stride - pad + s], or 0 in the padding.
 */
#include <string.h>

#include "cpu.h"
#include "pe.h"

enum {
    COLS = 256,         /* min GEMM columns per forward / backward-data item */
    COLS_FILTER = 2048, /* min GEMM depth per backward-filter step */
    ITEMS_FILTER = 16,  /* backward-filter items to aim for */
    TILE_FILTER = 1 << 18,    /* max floats of a dw tile before splitting C */
    PARTIALS = 1 << 22, /* max floats of backward-filter partial sums */
};

typedef struct conv_plan {
    int RS, CRS, PQ, HW;
    int direct;   /* 1x1, stride 1, pad 0, g == 1: no unfolding */
    int g;        /* images per forward / backward-data item */
    int gw;       /* images per backward-filter step */
    int ct, nc;   /* backward-filter tile: ct input channels, nc tiles */
    int slices;   /* backward-filter batch slices, one partial dw each */
    size_t partial_floats; /* (slices - 1) K CRS, shared by all threads */
    size_t fwd_floats, data_floats, filter_floats; /* per thread */
} conv_plan;

static int min_i(int a, int b) { return a < b ? a : b; }
static int max_i(int a, int b) { return a > b ? a : b; }
static int cdiv(int a, int b) { return (a + b - 1) / b; }

static conv_plan plan_of(const pe_conv_desc *d) {
    conv_plan pl;
    PE_ASSERT(d->N > 0 && d->C > 0 && d->H > 0 && d->W > 0 && d->K > 0);
    PE_ASSERT(d->R > 0 && d->S > 0 && d->stride > 0 && d->pad >= 0);
    PE_ASSERT(d->P == (d->H + 2 * d->pad - d->R) / d->stride + 1 && d->P > 0);
    PE_ASSERT(d->Q == (d->W + 2 * d->pad - d->S) / d->stride + 1 && d->Q > 0);
    pl.RS = d->R * d->S;
    pl.CRS = d->C * pl.RS;
    pl.PQ = d->P * d->Q;
    pl.HW = d->H * d->W;
    pl.g = min_i(d->N, max_i(1, cdiv(COLS, pl.PQ)));
    pl.direct = d->R == 1 && d->S == 1 && d->stride == 1 && d->pad == 0 && pl.g == 1;
    pl.gw = min_i(d->N, max_i(1, cdiv(COLS_FILTER, pl.PQ)));

    /* backward-filter: split C only when dw is large (then the GEMMs are
     * large anyway), and cut the batch into slices until there are enough
     * items, as far as the partial sums fit their budget */
    size_t kcrs = (size_t)d->K * pl.CRS;
    pl.nc = min_i(d->C, (int)((kcrs + TILE_FILTER - 1) / TILE_FILTER));
    pl.ct = cdiv(d->C, pl.nc);
    pl.nc = cdiv(d->C, pl.ct);
    pl.slices = min_i(cdiv(ITEMS_FILTER, pl.nc), cdiv(d->N, pl.gw));
    if ((size_t)pl.slices * kcrs > PARTIALS) pl.slices = (int)(PARTIALS / kcrs);
    if (pl.slices < 1) pl.slices = 1;
    pl.partial_floats = pe_cpu_round16((size_t)(pl.slices - 1) * kcrs);

    size_t gcols = (size_t)pl.g * pl.PQ;
    size_t wcols = (size_t)pl.gw * pl.PQ;
    pl.fwd_floats = pl.direct ? 0 : pe_cpu_round16((size_t)pl.CRS * gcols);
    if (pl.g > 1) pl.fwd_floats += pe_cpu_round16((size_t)d->K * gcols);
    pl.data_floats = pl.direct ? 0 : pe_cpu_round16((size_t)pl.CRS * gcols);
    if (pl.g > 1) pl.data_floats += pe_cpu_round16((size_t)d->K * gcols);
    pl.filter_floats = pe_cpu_round16((size_t)pl.ct * pl.RS * wcols);
    if (pl.gw > 1) pl.filter_floats += pe_cpu_round16((size_t)d->K * wcols);
    return pl;
}

size_t pe_cpu_conv_workspace(pe_backend *b, const pe_conv_desc *d) {
    conv_plan pl = plan_of(d);
    size_t threads = (size_t)pe_cpu_of(b)->nthreads;
    size_t most = pl.fwd_floats * threads;
    if (pl.data_floats * threads > most) most = pl.data_floats * threads;
    if (pl.partial_floats + pl.filter_floats * threads > most)
        most = pl.partial_floats + pl.filter_floats * threads;
    return sizeof(float) * most;
}

/* Valid output columns for filter column s: q in [*lo, *hi) reads input
 * column q stride - pad + s inside [0, W). */
static void q_range(const pe_conv_desc *d, int s, int *lo, int *hi) {
    int first = d->pad - s; /* q stride >= first */
    *lo = first <= 0 ? 0 : cdiv(first, d->stride);
    int last = d->W - 1 + d->pad - s; /* q stride <= last */
    *hi = last < 0 ? 0 : min_i(d->Q, last / d->stride + 1);
    if (*hi < *lo) *hi = *lo;
}

/* The row (c, r, s) of a stride-1 "same" convolution (P = H, Q = W):
 * row[p Q + q] = xc[(p + dr) W + q + ds] with dr = r - pad, ds = s - pad,
 * which is one shifted copy of the whole plane; the copy wraps around at
 * the left and right edges, so those |ds| columns are zeroed after it,
 * and the |dr| rows off the top or bottom are zeroed instead of copied. */
static void im2col_same_row(const float *xc, int H, int W, int dr, int ds, float *row) {
    int p_lo = dr < 0 ? -dr : 0, p_hi = dr > 0 ? H - dr : H;
    if (p_hi < p_lo) p_hi = p_lo;
    memset(row, 0, sizeof(float) * (size_t)p_lo * W);
    memset(row + (size_t)p_hi * W, 0, sizeof(float) * (size_t)(H - p_hi) * W);
    if (p_hi == p_lo) return;
    long off = (long)dr * W + ds; /* source index minus destination index */
    long a = (long)p_lo * W, e = (long)p_hi * W;
    if (a + off < 0) a = -off;                           /* first element wraps */
    if (e + off > (long)H * W) e = (long)H * W - off;    /* last element wraps */
    memcpy(row + a, xc + a + off, sizeof(float) * (size_t)(e - a));
    for (int p = p_lo; p < p_hi; p++) {
        float *r = row + (size_t)p * W;
        for (int q = 0; q < -ds; q++) r[q] = 0;
        for (int q = W - ds; q < W; q++) r[q] = 0;
    }
}

/* Unfolds channels [c0, c1) of one image x_n (C,H,W) into rows of col
 * (ld floats apart), starting at row 0. */
static void im2col(const pe_conv_desc *d, const float *x_n, int c0, int c1,
                   float *col, size_t ld) {
    int H = d->H, W = d->W, P = d->P, Q = d->Q, st = d->stride, pad = d->pad;
    if (st == 1 && P == H && Q == W && pad < W && pad < H) {
        for (int c = c0; c < c1; c++)
            for (int r = 0; r < d->R; r++)
                for (int s = 0; s < d->S; s++)
                    im2col_same_row(x_n + (size_t)c * H * W, H, W, r - pad, s - pad,
                                    col + ((size_t)(c - c0) * d->R * d->S + r * d->S + s) * ld);
        return;
    }
    for (int c = c0; c < c1; c++) {
        const float *xc = x_n + (size_t)c * H * W;
        for (int r = 0; r < d->R; r++)
            for (int s = 0; s < d->S; s++) {
                float *row = col + ((size_t)(c - c0) * d->R * d->S + r * d->S + s) * ld;
                int lo, hi;
                q_range(d, s, &lo, &hi);
                for (int p = 0; p < P; p++) {
                    float *dst = row + (size_t)p * Q;
                    int ih = p * st - pad + r;
                    if (ih < 0 || ih >= H) {
                        memset(dst, 0, sizeof(float) * (size_t)Q);
                        continue;
                    }
                    const float *src = xc + (size_t)ih * W - pad + s;
                    for (int q = 0; q < lo; q++) dst[q] = 0;
                    if (st == 1) {
                        memcpy(dst + lo, src + lo, sizeof(float) * (size_t)(hi - lo));
                    } else {
                        for (int q = lo; q < hi; q++) dst[q] = src[q * st];
                    }
                    for (int q = hi; q < Q; q++) dst[q] = 0;
                }
            }
    }
}

/* dx_n (C,H,W) = the fold of col (C R S rows, ld apart): each column entry
 * is added onto the x element it was unfolded from. */
static void col2im(const pe_conv_desc *d, const float *col, size_t ld,
                   float *dx_n) {
    int H = d->H, W = d->W, P = d->P, Q = d->Q, st = d->stride, pad = d->pad;
    memset(dx_n, 0, sizeof(float) * (size_t)d->C * H * W);
    for (int c = 0; c < d->C; c++) {
        float *xc = dx_n + (size_t)c * H * W;
        for (int r = 0; r < d->R; r++)
            for (int s = 0; s < d->S; s++) {
                const float *row = col + ((size_t)c * d->R * d->S + r * d->S + s) * ld;
                int lo, hi;
                q_range(d, s, &lo, &hi);
                for (int p = 0; p < P; p++) {
                    int ih = p * st - pad + r;
                    if (ih < 0 || ih >= H) continue;
                    const float *src = row + (size_t)p * Q;
                    float *dst = xc + (size_t)ih * W - pad + s;
                    if (st == 1) {
                        for (int q = lo; q < hi; q++) dst[q] += src[q];
                    } else {
                        for (int q = lo; q < hi; q++) dst[q * st] += src[q];
                    }
                }
            }
    }
}

typedef struct conv_job {
    const pe_conv_desc *d;
    conv_plan pl;
    const float *x, *w, *dy;
    float *y, *dx, *dw;
    float *work;
    size_t slot; /* floats per thread in work */
} conv_job;

/* ---- forward ------------------------------------------------------------ */

static void fwd_item(void *ctx, size_t item, int tid) {
    const conv_job *j = ctx;
    const pe_conv_desc *d = j->d;
    const conv_plan *pl = &j->pl;
    int n0 = (int)item * pl->g, gn = min_i(pl->g, d->N - n0);
    size_t PQ = (size_t)pl->PQ, cols = (size_t)gn * PQ, ld = (size_t)pl->g * PQ;
    float *y0 = j->y + (size_t)n0 * d->K * PQ;

    if (pl->direct) {
        pe_cpu_sgemm(0, 0, d->K, (int)PQ, d->C, 1.0f, j->w, d->C,
                     j->x + (size_t)n0 * d->C * pl->HW, (int)PQ, 0.0f, y0, (int)PQ);
        return;
    }
    float *col = j->work + j->slot * (size_t)tid; /* (CRS, g PQ) */
    for (int i = 0; i < gn; i++)
        im2col(d, j->x + (size_t)(n0 + i) * d->C * pl->HW, 0, d->C, col + i * PQ, ld);
    if (gn == 1 && pl->g == 1) {
        pe_cpu_sgemm(0, 0, d->K, (int)PQ, pl->CRS, 1.0f, j->w, pl->CRS, col,
                     (int)ld, 0.0f, y0, (int)PQ);
        return;
    }
    float *out = col + pe_cpu_round16((size_t)pl->CRS * ld); /* (K, g PQ) */
    pe_cpu_sgemm(0, 0, d->K, (int)cols, pl->CRS, 1.0f, j->w, pl->CRS, col,
                 (int)ld, 0.0f, out, (int)ld);
    for (int i = 0; i < gn; i++)
        for (int k = 0; k < d->K; k++)
            memcpy(y0 + ((size_t)i * d->K + k) * PQ, out + (size_t)k * ld + i * PQ,
                   sizeof(float) * PQ);
}

int pe_cpu_conv_fwd(pe_backend *b, const pe_conv_desc *d, const float *x,
                    const float *w, float *y, float *work) {
    conv_job j = {d, plan_of(d), x, w, NULL, y, NULL, NULL, work, 0};
    j.slot = j.pl.fwd_floats;
    PE_ASSERT(work || j.slot == 0);
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, (size_t)cdiv(d->N, j.pl.g), fwd_item, &j);
    return 0;
}

/* ---- backward to the data ----------------------------------------------- */

static void data_item(void *ctx, size_t item, int tid) {
    const conv_job *j = ctx;
    const pe_conv_desc *d = j->d;
    const conv_plan *pl = &j->pl;
    int n0 = (int)item * pl->g, gn = min_i(pl->g, d->N - n0);
    size_t PQ = (size_t)pl->PQ, cols = (size_t)gn * PQ, ld = (size_t)pl->g * PQ;
    const float *dy0 = j->dy + (size_t)n0 * d->K * PQ;

    if (pl->direct) {
        pe_cpu_sgemm(1, 0, d->C, (int)PQ, d->K, 1.0f, j->w, d->C, dy0, (int)PQ,
                     0.0f, j->dx + (size_t)n0 * d->C * pl->HW, (int)PQ);
        return;
    }
    float *dcol = j->work + j->slot * (size_t)tid; /* (CRS, g PQ) */
    const float *dyg = dy0;                        /* (K, g PQ) */
    if (pl->g > 1) {
        float *gather = dcol + pe_cpu_round16((size_t)pl->CRS * ld);
        for (int i = 0; i < gn; i++)
            for (int k = 0; k < d->K; k++)
                memcpy(gather + (size_t)k * ld + i * PQ, dy0 + ((size_t)i * d->K + k) * PQ,
                       sizeof(float) * PQ);
        dyg = gather;
    }
    pe_cpu_sgemm(1, 0, pl->CRS, (int)cols, d->K, 1.0f, j->w, pl->CRS, dyg,
                 (int)ld, 0.0f, dcol, (int)ld);
    for (int i = 0; i < gn; i++)
        col2im(d, dcol + i * PQ, ld, j->dx + (size_t)(n0 + i) * d->C * pl->HW);
}

int pe_cpu_conv_bwd_data(pe_backend *b, const pe_conv_desc *d, const float *dy,
                         const float *w, float *dx, float *work) {
    conv_job j = {d, plan_of(d), NULL, w, dy, NULL, dx, NULL, work, 0};
    j.slot = j.pl.data_floats;
    PE_ASSERT(work || j.slot == 0);
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, (size_t)cdiv(d->N, j.pl.g), data_item, &j);
    return 0;
}

/* ---- backward to the filter --------------------------------------------- */

static void filter_item(void *ctx, size_t item, int tid) {
    const conv_job *j = ctx;
    const pe_conv_desc *d = j->d;
    const conv_plan *pl = &j->pl;
    int slice = (int)(item / (size_t)pl->nc);
    int c0 = (int)(item % (size_t)pl->nc) * pl->ct, cn = min_i(pl->ct, d->C - c0);
    int n_lo = (int)((long)d->N * slice / pl->slices);
    int n_hi = (int)((long)d->N * (slice + 1) / pl->slices);
    size_t PQ = (size_t)pl->PQ, ld = (size_t)pl->gw * PQ;
    size_t kcrs = (size_t)d->K * pl->CRS;
    float *col = j->work + pl->partial_floats + j->slot * (size_t)tid; /* (ct RS, gw PQ) */
    float *gather = col + pe_cpu_round16((size_t)pl->ct * pl->RS * ld);  /* (K, gw PQ) */
    /* slice 0 sums straight into dw, slice i into partial i - 1 */
    float *acc = slice == 0 ? j->dw : j->work + (size_t)(slice - 1) * kcrs;

    for (int n0 = n_lo; n0 < n_hi; n0 += pl->gw) {
        int gn = min_i(pl->gw, n_hi - n0);
        const float *a;
        size_t lda;
        for (int i = 0; i < gn; i++)
            im2col(d, j->x + (size_t)(n0 + i) * d->C * pl->HW, c0, c0 + cn,
                   col + i * PQ, ld);
        if (pl->gw == 1) {
            a = j->dy + (size_t)n0 * d->K * PQ;
            lda = PQ;
        } else {
            for (int i = 0; i < gn; i++)
                for (int k = 0; k < d->K; k++)
                    memcpy(gather + (size_t)k * ld + i * PQ,
                           j->dy + ((size_t)(n0 + i) * d->K + k) * PQ, sizeof(float) * PQ);
            a = gather;
            lda = ld;
        }
        pe_cpu_sgemm(0, 1, d->K, cn * pl->RS, (int)(gn * PQ), 1.0f, a, (int)lda, col,
                     (int)ld, n0 == n_lo ? 0.0f : 1.0f, acc + (size_t)c0 * pl->RS, pl->CRS);
    }
}

enum { SUM_GRAIN = 16384 };

/* dw += partials 1, 2, ... in order, over one span of dw */
static void filter_sum_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const conv_job *j = ctx;
    size_t kcrs = (size_t)j->d->K * j->pl.CRS;
    size_t lo = item * SUM_GRAIN, hi = lo + SUM_GRAIN < kcrs ? lo + SUM_GRAIN : kcrs;
    for (int p = 1; p < j->pl.slices; p++) {
        const float *part = j->work + (size_t)(p - 1) * kcrs;
        for (size_t e = lo; e < hi; e++) j->dw[e] += part[e];
    }
}

int pe_cpu_conv_bwd_filter(pe_backend *b, const pe_conv_desc *d,
                           const float *x, const float *dy, float *dw,
                           float *work) {
    conv_job j = {d, plan_of(d), x, NULL, dy, NULL, NULL, dw, work, 0};
    j.slot = j.pl.filter_floats;
    PE_ASSERT(work);
    pe_cpu_pool *pool = pe_cpu_of(b)->pool;
    pe_cpu_parallel_for(pool, (size_t)j.pl.slices * j.pl.nc, filter_item, &j);
    if (j.pl.slices > 1)
        pe_cpu_parallel_for(pool, pe_cpu_chunks((size_t)d->K * j.pl.CRS, SUM_GRAIN),
                            filter_sum_item, &j);
    return 0;
}
