/*
 * model.c - ResNet-18 (CIFAR stem, width multiplier), the `small` preset and
 * the SimCLR head as a flat op list over backend memory (see model.h).
 *
 * Not for: numeric kernels (pe_backend), losses and optimisers (train.c).
 *
 * The graph is built once: activations are numbered, ops read and write
 * them by number. ReLU runs in place on its input, and a residual block's
 * add in place on its first input (the last batch norm's output, which no
 * backward reads: batch norm's backward reads its input), as torchvision's
 * `out += identity`. Backward visits ops in
 * reverse; every consumer of an activation comes after its producer, so an
 * activation's gradient is complete when its producer's backward runs. A
 * gradient with several consumers (a residual block's input) is written by
 * the first and accumulated by the rest.
 */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pe.h"
#include "rng.h"

typedef enum { OP_CONV, OP_BN, OP_RELU, OP_ADD, OP_POOL, OP_LINEAR } op_kind;

typedef struct op {
    op_kind kind;
    int in, in2, out;   /* activation ids (in2: second ADD input) */
    pe_conv_desc conv;  /* per-sample shape; N set at batch time */
    size_t w, b;        /* param offsets (b = SIZE_MAX: no bias) */
    size_t rmean, rvar; /* BN running stats offsets in buf */
    int bn;             /* BN index (counter, saved stats) */
    int C, HW;          /* BN/POOL channels and spatial size */
    int fin, fout;      /* LINEAR */
    float *tmp;         /* backward: where this op writes a gradient that
                           another op wrote first, before adding it there
                           (a gradient buffer free at that moment) */
} op;

typedef struct act {
    int C, H, W;
    float *x, *g; /* (n, C, H, W) each */
    int lent;     /* x is a gradient buffer's memory (forward only), not owned */
} act;

struct pe_model {
    pe_model_cfg cfg;
    pe_backend *be;
    pe_tensor_info *t;
    int nt, capt;
    op *ops;
    int nops, capo;
    act *acts;
    int nacts, capa;
    size_t np, nbuf;
    int nbn;
    float *p, *g, *buf;
    int64_t *counts;
    float *save;  /* per BN: mean (C), invstd (C), at save_off[bn] */
    size_t *save_off, nsave;
    float *work;
    size_t work_n;
    float **gbuf; /* gradient buffers, each shared by several activations */
    int ngbuf;
    int n; /* batch the activations are allocated for */
    int feat, z, feat_dim;
    int feat_op; /* index of the pooling op that yields the features */
    int built_ok;
};

/* ---------------- configuration ---------------- */
void pe_model_cfg_default(pe_model_cfg *c, pe_arch arch, int channels, int size) {
    memset(c, 0, sizeof *c);
    c->arch = arch;
    c->width = 1.0;
    c->channels = channels;
    c->size = size;
    c->head_hidden = 512;
    c->head_out = 128;
    c->bn_eps = 1e-5f;
    c->bn_momentum = 0.1f;
}

const char *pe_arch_name(pe_arch a) {
    return a == PE_ARCH_SMALL ? "small" : "resnet18";
}

int pe_arch_parse(const char *s, pe_arch *out) {
    if (!strcmp(s, "small")) *out = PE_ARCH_SMALL;
    else if (!strcmp(s, "resnet18")) *out = PE_ARCH_RESNET18;
    else return pe_fail(PE_EUSAGE, "unknown architecture '%s' (small, resnet18)", s);
    return 0;
}

/* ---------------- building ---------------- */
static int grow(void **v, int *cap, int n, size_t elem) {
    if (n < *cap) return 0;
    int nc = *cap ? *cap * 2 : 32;
    void *p = realloc(*v, (size_t)nc * elem);
    if (!p) return ENOMEM;
    *v = p;
    *cap = nc;
    return 0;
}

static int new_act(pe_model *m, int C, int H, int W) {
    if (grow((void **)&m->acts, &m->capa, m->nacts, sizeof *m->acts)) {
        m->built_ok = 0;
        return 0;
    }
    m->acts[m->nacts] = (act){C, H, W, NULL, NULL, 0};
    return m->nacts++;
}

static size_t add_tensor(pe_model *m, const char *name, pe_tensor_kind kind,
                         int ndim, int s0, int s1, int s2, int s3, int head) {
    if (grow((void **)&m->t, &m->capt, m->nt, sizeof *m->t)) {
        m->built_ok = 0;
        return 0;
    }
    pe_tensor_info *t = &m->t[m->nt++];
    memset(t, 0, sizeof *t);
    PE_ASSERT(strlen(name) < sizeof t->name);
    strcpy(t->name, name);
    t->kind = kind;
    t->ndim = ndim;
    int sh[4] = {s0, s1, s2, s3};
    t->n = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = sh[i];
        t->n *= (size_t)sh[i];
    }
    t->head = head;
    if (kind == PE_T_PARAM) {
        t->off = m->np;
        m->np += t->n;
    } else if (kind == PE_T_RUNNING) {
        t->off = m->nbuf;
        m->nbuf += t->n;
    } else {
        t->off = (size_t)m->nbn; /* counter index: the BN being built */
    }
    return t->off;
}

static op *new_op(pe_model *m, op_kind k) {
    if (grow((void **)&m->ops, &m->capo, m->nops, sizeof *m->ops)) {
        m->built_ok = 0;
        return NULL;
    }
    op *o = &m->ops[m->nops++];
    memset(o, 0, sizeof *o);
    o->kind = k;
    o->b = SIZE_MAX;
    return o;
}

static char *nm(char *buf, const char *prefix, const char *suffix) {
    snprintf(buf, 64, "%s%s%s", prefix, *prefix ? "." : "", suffix);
    return buf;
}

static int conv(pe_model *m, int in, int K, int R, int stride, int pad,
                const char *prefix) {
    char b[64];
    act a = m->acts[in];
    op *o = new_op(m, OP_CONV);
    if (!o) return 0;
    o->in = in;
    o->conv = (pe_conv_desc){0, a.C, a.H, a.W, K, R, R, stride, pad, 0, 0};
    pe_conv_desc_finish(&o->conv);
    o->w = add_tensor(m, nm(b, prefix, "weight"), PE_T_PARAM, 4, K, a.C, R, R, 0);
    int out = new_act(m, K, o->conv.P, o->conv.Q);
    m->ops[m->nops - 1].out = out;
    return out;
}

static int bn(pe_model *m, int in, const char *prefix, int head) {
    char b[64];
    act a = m->acts[in];
    op *o = new_op(m, OP_BN);
    if (!o) return 0;
    o->in = in;
    o->C = a.C;
    o->HW = a.H * a.W;
    o->w = add_tensor(m, nm(b, prefix, "weight"), PE_T_PARAM, 1, a.C, 0, 0, 0, head);
    o->b = add_tensor(m, nm(b, prefix, "bias"), PE_T_PARAM, 1, a.C, 0, 0, 0, head);
    o->rmean = add_tensor(m, nm(b, prefix, "running_mean"), PE_T_RUNNING, 1, a.C, 0, 0, 0, head);
    o->rvar = add_tensor(m, nm(b, prefix, "running_var"), PE_T_RUNNING, 1, a.C, 0, 0, 0, head);
    add_tensor(m, nm(b, prefix, "num_batches_tracked"), PE_T_COUNT, 0, 0, 0, 0, 0, head);
    o->bn = m->nbn++;
    int out = new_act(m, a.C, a.H, a.W);
    m->ops[m->nops - 1].out = out;
    return out;
}

static void relu(pe_model *m, int a) {
    op *o = new_op(m, OP_RELU);
    if (!o) return;
    o->in = o->out = a;
}

/* in place: a += c; a's producer must not need a in its backward */
static int add(pe_model *m, int a, int c) {
    op *o = new_op(m, OP_ADD);
    if (!o) return 0;
    o->in = o->out = a;
    o->in2 = c;
    return a;
}

static int pool(pe_model *m, int in) {
    act a = m->acts[in];
    op *o = new_op(m, OP_POOL);
    if (!o) return 0;
    o->in = in;
    o->C = a.C;
    o->HW = a.H * a.W;
    int out = new_act(m, a.C, 1, 1);
    m->ops[m->nops - 1].out = out;
    return out;
}

static int linear(pe_model *m, int in, int fout, int bias, const char *prefix) {
    char b[64];
    act a = m->acts[in];
    int fin = a.C * a.H * a.W;
    op *o = new_op(m, OP_LINEAR);
    if (!o) return 0;
    o->in = in;
    o->fin = fin;
    o->fout = fout;
    o->w = add_tensor(m, nm(b, prefix, "weight"), PE_T_PARAM, 2, fout, fin, 0, 0, 1);
    if (bias) o->b = add_tensor(m, nm(b, prefix, "bias"), PE_T_PARAM, 1, fout, 0, 0, 0, 1);
    int out = new_act(m, fout, 1, 1);
    m->ops[m->nops - 1].out = out;
    return out;
}

static int basic_block(pe_model *m, int in, int planes, int stride, const char *prefix) {
    char b[64];
    int c1 = conv(m, in, planes, 3, stride, 1, nm(b, prefix, "conv1"));
    int b1 = bn(m, c1, nm(b, prefix, "bn1"), 0);
    relu(m, b1);
    int c2 = conv(m, b1, planes, 3, 1, 1, nm(b, prefix, "conv2"));
    int b2 = bn(m, c2, nm(b, prefix, "bn2"), 0);
    int sc = in;
    if (stride != 1 || m->acts[in].C != planes) {
        int d = conv(m, in, planes, 1, stride, 0, nm(b, prefix, "downsample.0"));
        sc = bn(m, d, nm(b, prefix, "downsample.1"), 0);
    }
    int o = add(m, b2, sc);
    relu(m, o);
    return o;
}

/* small: Sequential(conv, bn, relu, block, block, block, pool, flatten),
 * block = Sequential(conv, bn, relu, conv, bn, relu). */
static int small_block(pe_model *m, int in, int out, int stride, const char *idx) {
    char b[64];
    int c = conv(m, in, out, 3, stride, 1, nm(b, idx, "0"));
    int x = bn(m, c, nm(b, idx, "1"), 0);
    relu(m, x);
    c = conv(m, x, out, 3, 1, 1, nm(b, idx, "3"));
    x = bn(m, c, nm(b, idx, "4"), 0);
    relu(m, x);
    return x;
}

static int build(pe_model *m) {
    const pe_model_cfg *c = &m->cfg;
    m->built_ok = 1;
    int x = new_act(m, c->channels, c->size, c->size);
    if (c->arch == PE_ARCH_SMALL) {
        x = conv(m, x, 16, 3, 1, 1, "0");
        x = bn(m, x, "1", 0);
        relu(m, x);
        x = small_block(m, x, 32, 1, "3");
        x = small_block(m, x, 64, 2, "4");
        x = small_block(m, x, 128, 2, "5");
    } else {
        int w[4];
        for (int i = 0; i < 4; i++) {
            w[i] = (int)lround(64 * (1 << i) * c->width);
            if (w[i] < 1) return pe_fail(PE_EUSAGE, "width %g leaves a layer with no channels", c->width);
        }
        x = conv(m, x, w[0], 3, 1, 1, "conv1");
        x = bn(m, x, "bn1", 0);
        relu(m, x);
        char p[32];
        for (int l = 0; l < 4; l++)
            for (int blk = 0; blk < 2; blk++) {
                snprintf(p, sizeof p, "layer%d.%d", l + 1, blk);
                x = basic_block(m, x, w[l], (l > 0 && blk == 0) ? 2 : 1, p);
            }
    }
    m->feat = pool(m, x);
    m->feat_op = m->nops - 1;
    m->feat_dim = m->acts[m->feat].C;
    int h = linear(m, m->feat, c->head_hidden, 0, "head.0");
    h = bn(m, h, "head.1", 1);
    relu(m, h);
    m->z = linear(m, h, c->head_out, 1, "head.3");
    return m->built_ok ? 0 : ENOMEM;
}

/* ---------------- initialisation ---------------- */
static double unif(uint64_t *s) { return (double)(pe_splitmix64(s) >> 11) * 0x1.0p-53; }

static double normal(uint64_t *s) {
    double u = unif(s), v = unif(s);
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

static void init_params(pe_model *m, float *hp, float *hb, uint64_t seed) {
    uint64_t s = seed ^ 0x5045494e4954ull; /* "PEINIT" */
    for (int i = 0; i < m->nops; i++) {
        op *o = &m->ops[i];
        if (o->kind == OP_CONV) {
            const pe_conv_desc *d = &o->conv;
            size_t n = (size_t)d->K * d->C * d->R * d->S;
            if (m->cfg.arch == PE_ARCH_RESNET18) { /* torchvision: kaiming normal, fan_out */
                double std = sqrt(2.0 / ((double)d->K * d->R * d->S));
                for (size_t j = 0; j < n; j++) hp[o->w + j] = (float)(std * normal(&s));
            } else { /* nn.Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
                double bound = 1.0 / sqrt((double)d->C * d->R * d->S);
                for (size_t j = 0; j < n; j++) hp[o->w + j] = (float)(bound * (2 * unif(&s) - 1));
            }
        } else if (o->kind == OP_BN) {
            for (int j = 0; j < o->C; j++) {
                hp[o->w + j] = 1;
                hp[o->b + j] = 0;
                hb[o->rmean + j] = 0;
                hb[o->rvar + j] = 1;
            }
        } else if (o->kind == OP_LINEAR) {
            double bound = 1.0 / sqrt((double)o->fin);
            for (size_t j = 0; j < (size_t)o->fin * o->fout; j++)
                hp[o->w + j] = (float)(bound * (2 * unif(&s) - 1));
            if (o->b != SIZE_MAX)
                for (int j = 0; j < o->fout; j++) hp[o->b + j] = (float)(bound * (2 * unif(&s) - 1));
        }
    }
}

int pe_model_init(pe_model **out, const pe_model_cfg *cfg, pe_backend *be,
                  uint64_t seed) {
    *out = NULL;
    if (cfg->channels != 1 && cfg->channels != 3)
        return pe_fail(PE_EUSAGE, "input channels must be 1 or 3, not %d", cfg->channels);
    if (cfg->size < 8 || cfg->size > 1024)
        return pe_fail(PE_EUSAGE, "input size %d out of range (8 to 1024)", cfg->size);
    if (cfg->arch == PE_ARCH_RESNET18 && !(cfg->width > 0 && cfg->width <= 16))
        return pe_fail(PE_EUSAGE, "width multiplier %g out of range", cfg->width);
    pe_model *m = calloc(1, sizeof *m);
    if (!m) return ENOMEM;
    m->cfg = *cfg;
    m->be = be;
    int rc = build(m);
    float *hp = NULL, *hb = NULL;
    if (rc) goto fail;
    m->counts = calloc((size_t)m->nbn, sizeof *m->counts);
    m->save_off = calloc((size_t)m->nbn, sizeof *m->save_off);
    hp = calloc(m->np, sizeof *hp);
    hb = calloc(m->nbuf ? m->nbuf : 1, sizeof *hb);
    if (!m->counts || !m->save_off || !hp || !hb) { rc = ENOMEM; goto fail; }
    for (int i = 0; i < m->nops; i++)
        if (m->ops[i].kind == OP_BN) {
            m->save_off[m->ops[i].bn] = m->nsave;
            m->nsave += 2 * (size_t)m->ops[i].C;
        }
    m->p = be->alloc(be, m->np * sizeof(float));
    m->g = be->alloc(be, m->np * sizeof(float));
    m->buf = be->alloc(be, (m->nbuf ? m->nbuf : 1) * sizeof(float));
    m->save = be->alloc(be, m->nsave * sizeof(float));
    if (!m->p || !m->g || !m->buf || !m->save) { rc = ENOMEM; goto fail; }
    init_params(m, hp, hb, seed);
    if ((rc = be->upload(be, m->p, hp, m->np * sizeof(float))) ||
        (rc = be->upload(be, m->buf, hb, m->nbuf * sizeof(float))) ||
        (rc = be->fill(be, m->np, 0.0f, m->g)))
        goto fail;
    free(hp);
    free(hb);
    *out = m;
    return 0;
fail:
    free(hp);
    free(hb);
    pe_model_free(m);
    return rc;
}

static void free_acts(pe_model *m) {
    for (int i = 1; i < m->nacts; i++) {
        if (m->acts[i].x && !m->acts[i].lent) m->be->free(m->be, m->acts[i].x);
        m->acts[i].x = m->acts[i].g = NULL;
        m->acts[i].lent = 0;
    }
    for (int i = 0; i < m->nops; i++) m->ops[i].tmp = NULL;
    for (int i = 0; i < m->ngbuf; i++)
        if (m->gbuf[i]) m->be->free(m->be, m->gbuf[i]);
    free(m->gbuf);
    m->gbuf = NULL;
    m->ngbuf = 0;
    if (m->work) m->be->free(m->be, m->work);
    m->work = NULL;
    m->n = 0;
}

void pe_model_free(pe_model *m) {
    if (!m) return;
    free_acts(m);
    if (m->p) m->be->free(m->be, m->p);
    if (m->g) m->be->free(m->be, m->g);
    if (m->buf) m->be->free(m->be, m->buf);
    if (m->save) m->be->free(m->be, m->save);
    free(m->t);
    free(m->ops);
    free(m->acts);
    free(m->counts);
    free(m->save_off);
    free(m);
}

static size_t act_n(const pe_model *m, int a) {
    const act *x = &m->acts[a];
    return (size_t)m->n * x->C * x->H * x->W;
}

/* Gradient buffers. The gradient of an activation lives, in backward
 * order, from its first writer (the backward of the last op that reads
 * the activation; the loss for z) to its producer's backward, which reads
 * it; an in-place ReLU between them changes it in place. Activations whose
 * lives do not meet share a buffer (of the largest activation's size), so
 * a chain needs two or three buffers however deep it is, not one per
 * activation. A second writer (conv, batch norm, pool or linear onto a
 * gradient some op already wrote: a residual block's input) writes into
 * a buffer free at that moment (op->tmp) and adds it on. Times: op i's
 * backward is at nops - i, the loss at 0; lives are closed intervals (an
 * op reads one gradient and writes another). */
static int take_gbuf(pe_model *m, int *busy, int t, size_t maxact) {
    int b = 0;
    while (b < m->ngbuf && busy[b] >= t) b++;
    if (b == m->ngbuf) {
        if (!(m->gbuf[b] = m->be->alloc(m->be, maxact * sizeof(float)))) return -1;
        m->ngbuf++;
    }
    return b;
}

static int assign_grads(pe_model *m, size_t maxact) {
    int na = m->nacts, rc = 0;
    /* death[a]: when act a's producer reads its gradient; busy[b]: the
     * death of buffer b's latest occupant. A buffer is free at t when its
     * occupant died before t. */
    int *death = calloc((size_t)na, sizeof *death), *busy = calloc((size_t)na + 1, sizeof *busy);
    m->gbuf = calloc((size_t)na + 1, sizeof *m->gbuf);
    if (!death || !busy || !m->gbuf) { rc = ENOMEM; goto out; }
    for (int i = 0; i < m->nops; i++)
        if (m->ops[i].out != m->ops[i].in) death[m->ops[i].out] = m->nops - i;
    /* births in backward order: the loss's gradient first, then each op's
     * inputs the first time an op writes them (an in-place ReLU writes
     * nothing new, an in-place add only its second input; act 0, the
     * images, gets no gradient) */
    for (int i = m->nops; i >= 0 && !rc; i--) {
        int t = m->nops - i, ins[2] = {m->z, 0};
        op *o = NULL;
        if (i < m->nops) {
            o = &m->ops[i];
            if (o->kind == OP_RELU) continue;
            ins[0] = o->in;
            ins[1] = o->kind == OP_ADD ? o->in2 : 0;
        }
        for (int k = 0; k < 2; k++) {
            int a = ins[k], b;
            if (a == 0) continue;
            if (m->acts[a].g) { /* written already: an add accumulates itself */
                if (!o || o->kind == OP_ADD) continue;
                if ((b = take_gbuf(m, busy, t, maxact)) < 0) { rc = ENOMEM; break; }
                busy[b] = t;
                o->tmp = m->gbuf[b];
                continue;
            }
            if ((b = take_gbuf(m, busy, t, maxact)) < 0) { rc = ENOMEM; break; }
            busy[b] = death[a];
            m->acts[a].g = m->gbuf[b];
        }
    }
out:
    free(death);
    free(busy);
    return rc;
}

/* Activations no backward reads (a shortcut's batch-norm output, read by
 * its add alone) are needed only from their producer to their last reader
 * in the forward pass, when no gradient buffer is in use, so they can
 * borrow a gradient buffer's memory. Backward reads the inputs of conv,
 * batch norm and linear, and the output of ReLU; the features and z are
 * read by callers. Sets lend[a] to 1 for such acts. */
static void mark_forward_only(const pe_model *m, char *lend) {
    for (int a = 0; a < m->nacts; a++) lend[a] = a != 0 && a != m->feat && a != m->z;
    for (int i = 0; i < m->nops; i++) {
        const op *o = &m->ops[i];
        if (o->kind == OP_CONV || o->kind == OP_BN || o->kind == OP_LINEAR || o->kind == OP_RELU)
            lend[o->in] = 0;
    }
}

/* Lends the marked acts that have no memory yet a gradient buffer each,
 * acts whose forward lives do not meet sharing one; an act no buffer is
 * free for keeps lend[a] = 0 (its own memory). */
static void lend_forward_only(pe_model *m, char *lend) {
    int na = m->nacts;
    /* in forward order: an act is born at its producer; a buffer is free
     * once its occupant's last reader has run */
    int *last = calloc((size_t)na, sizeof *last), *until = calloc((size_t)m->ngbuf + 1, sizeof *until);
    if (!last || !until) { /* keep them owned: only memory lost */
        free(last);
        free(until);
        memset(lend, 0, (size_t)na);
        return;
    }
    for (int b = 0; b < m->ngbuf; b++) until[b] = -1;
    for (int i = 0; i < m->nops; i++) {
        last[m->ops[i].in] = i;
        if (m->ops[i].kind == OP_ADD) last[m->ops[i].in2] = i;
    }
    for (int i = 0; i < m->nops; i++) {
        int a = m->ops[i].out;
        if (!lend[a] || m->acts[a].x) continue;
        int b = 0;
        while (b < m->ngbuf && until[b] >= i) b++;
        if (b == m->ngbuf) { lend[a] = 0; continue; }
        until[b] = last[a];
        m->acts[a].x = m->gbuf[b];
        m->acts[a].lent = 1;
    }
    free(last);
    free(until);
}

int pe_model_set_batch(pe_model *m, int n) {
    if (n == m->n) return 0;
    if (n < 2) return pe_fail(PE_EUSAGE, "batch of %d: batch norm needs at least 2", n);
    free_acts(m);
    m->n = n;
    size_t maxact = 0, work = 0;
    pe_backend *be = m->be;
    char *lend = calloc((size_t)m->nacts, 1);
    if (!lend) goto nomem;
    mark_forward_only(m, lend);
    /* act 0 is the caller's input: not allocated here */
    for (int i = 1; i < m->nacts; i++) {
        size_t k = act_n(m, i);
        if (k > maxact) maxact = k;
        if (lend[i]) continue;
        m->acts[i].x = be->alloc(be, k * sizeof(float));
        if (!m->acts[i].x) goto nomem;
    }
    if (assign_grads(m, maxact)) goto nomem;
    lend_forward_only(m, lend);
    for (int i = 1; i < m->nacts; i++)
        if (!m->acts[i].x && !(m->acts[i].x = be->alloc(be, act_n(m, i) * sizeof(float))))
            goto nomem;
    free(lend);
    lend = NULL;
    for (int i = 0; i < m->nops; i++)
        if (m->ops[i].kind == OP_CONV) {
            m->ops[i].conv.N = n;
            size_t w = be->conv_workspace(be, &m->ops[i].conv);
            if (w > work) work = w;
        }
    m->work_n = work / sizeof(float) + 1;
    m->work = be->alloc(be, m->work_n * sizeof(float));
    if (!m->work) goto nomem;
    return 0;
nomem:
    free(lend);
    free_acts(m);
    return pe_fail(ENOMEM, "not enough memory for a batch of %d", n);
}

/* ---------------- forward / backward ---------------- */
int pe_model_forward(pe_model *m, const float *x, int train, int head) {
    pe_backend *be = m->be;
    int rc = 0, n = m->n;
    PE_ASSERT(n >= 2);
    m->acts[0].x = (float *)x;
    for (int i = 0; i < m->nops && !rc; i++) {
        op *o = &m->ops[i];
        if (!head && i > m->feat_op) break;
        float *in = m->acts[o->in].x, *out = m->acts[o->out].x;
        switch (o->kind) {
        case OP_CONV:
            rc = be->conv_fwd(be, &o->conv, in, m->p + o->w, out, m->work);
            break;
        case OP_BN: {
            float *sm = m->save + m->save_off[o->bn], *si = sm + o->C;
            if (train) {
                rc = be->bn_fwd_train(be, n, o->C, o->HW, in, m->p + o->w, m->p + o->b,
                                      m->cfg.bn_eps, m->cfg.bn_momentum,
                                      m->buf + o->rmean, m->buf + o->rvar, out, sm, si);
                m->counts[o->bn]++;
            } else {
                rc = be->bn_fwd_eval(be, n, o->C, o->HW, in, m->p + o->w, m->p + o->b,
                                     m->cfg.bn_eps, m->buf + o->rmean, m->buf + o->rvar, out);
            }
            break;
        }
        case OP_RELU:
            rc = be->relu_fwd(be, act_n(m, o->in), in, out);
            break;
        case OP_ADD:
            rc = be->add(be, act_n(m, o->out), in, m->acts[o->in2].x, out);
            break;
        case OP_POOL:
            rc = be->avgpool_fwd(be, n, o->C, o->HW, in, out);
            break;
        case OP_LINEAR:
            rc = be->gemm(be, 0, 1, n, o->fout, o->fin, 1.0f, in, o->fin, m->p + o->w,
                          o->fin, 0.0f, out, o->fout);
            if (!rc && o->b != SIZE_MAX) rc = be->bias_add(be, n, o->fout, m->p + o->b, out);
            break;
        }
    }
    return rc;
}

/* Where op o writes the gradient of activation a: straight into its
 * buffer the first time, else into o->tmp to be added on. */
static float *grad_dst(pe_model *m, const op *o, const char *written, int a) {
    PE_ASSERT(!written[a] || o->tmp);
    return written[a] ? o->tmp : m->acts[a].g;
}

static int grad_done(pe_model *m, char *written, int a, float *dst) {
    int rc = 0;
    if (dst != m->acts[a].g) rc = m->be->accumulate(m->be, act_n(m, a), dst, m->acts[a].g);
    written[a] = 1;
    return rc;
}

int pe_model_backward(pe_model *m, const float *dz) {
    pe_backend *be = m->be;
    int rc, n = m->n;
    char *written = calloc((size_t)m->nacts, 1);
    if (!written) return ENOMEM;
    rc = be->copy(be, act_n(m, m->z), dz, m->acts[m->z].g);
    written[m->z] = 1;
    for (int i = m->nops - 1; i >= 0 && !rc; i--) {
        op *o = &m->ops[i];
        float *x = m->acts[o->in].x, *dy = m->acts[o->out].g, *dst;
        int need_dx = o->in != 0; /* no gradient for the input images */
        if (!written[o->out] && o->kind != OP_RELU) continue; /* unused output */
        switch (o->kind) {
        case OP_CONV:
            rc = be->conv_bwd_filter(be, &o->conv, x, dy, m->g + o->w, m->work);
            if (!rc && need_dx) {
                dst = grad_dst(m, o, written, o->in);
                rc = be->conv_bwd_data(be, &o->conv, dy, m->p + o->w, dst, m->work);
                if (!rc) rc = grad_done(m, written, o->in, dst);
            }
            break;
        case OP_BN: {
            float *sm = m->save + m->save_off[o->bn], *si = sm + o->C;
            dst = grad_dst(m, o, written, o->in);
            rc = be->bn_bwd(be, n, o->C, o->HW, x, dy, m->p + o->w, sm, si, dst,
                            m->g + o->w, m->g + o->b);
            if (!rc) rc = grad_done(m, written, o->in, dst);
            break;
        }
        case OP_RELU: /* in place: y is the activation itself */
            if (written[o->out])
                rc = be->relu_bwd(be, act_n(m, o->out), m->acts[o->out].x, dy, dy);
            break;
        case OP_ADD: /* in place (add()): out is in, whose gradient dy already
                      * is; the shortcut in2 gets a copy of it, or adds it */
            PE_ASSERT(o->in == o->out);
            if (written[o->in2]) {
                rc = be->accumulate(be, act_n(m, o->out), dy, m->acts[o->in2].g);
            } else {
                rc = be->copy(be, act_n(m, o->out), dy, m->acts[o->in2].g);
                written[o->in2] = 1;
            }
            break;
        case OP_POOL:
            dst = grad_dst(m, o, written, o->in);
            rc = be->avgpool_bwd(be, n, o->C, o->HW, dy, dst);
            if (!rc) rc = grad_done(m, written, o->in, dst);
            break;
        case OP_LINEAR:
            /* dW (out, in) = dy^T (out, n) x (n, in) */
            rc = be->gemm(be, 1, 0, o->fout, o->fin, n, 1.0f, dy, o->fout, x, o->fin,
                          0.0f, m->g + o->w, o->fin);
            if (!rc && o->b != SIZE_MAX) rc = be->bias_bwd(be, n, o->fout, dy, m->g + o->b);
            if (!rc && need_dx) {
                dst = grad_dst(m, o, written, o->in);
                rc = be->gemm(be, 0, 0, n, o->fin, o->fout, 1.0f, dy, o->fout, m->p + o->w,
                              o->fin, 0.0f, dst, o->fin);
                if (!rc) rc = grad_done(m, written, o->in, dst);
            }
            break;
        }
    }
    free(written);
    return rc;
}

/* ---------------- accessors ---------------- */
const float *pe_model_features(const pe_model *m) { return m->acts[m->feat].x; }
float *pe_model_z(pe_model *m) { return m->acts[m->z].x; }
int pe_model_feat_dim(const pe_model *m) { return m->feat_dim; }
const pe_model_cfg *pe_model_get_cfg(const pe_model *m) { return &m->cfg; }
int pe_model_ntensors(const pe_model *m) { return m->nt; }
const pe_tensor_info *pe_model_tensor(const pe_model *m, int i) {
    return i >= 0 && i < m->nt ? &m->t[i] : NULL;
}
const pe_tensor_info *pe_model_find(const pe_model *m, const char *name) {
    for (int i = 0; i < m->nt; i++)
        if (!strcmp(m->t[i].name, name)) return &m->t[i];
    return NULL;
}
float *pe_model_params(pe_model *m) { return m->p; }
float *pe_model_grads(pe_model *m) { return m->g; }
float *pe_model_buffers(pe_model *m) { return m->buf; }
int64_t *pe_model_counts(pe_model *m) { return m->counts; }
size_t pe_model_nparams(const pe_model *m) { return m->np; }
size_t pe_model_nbuffers(const pe_model *m) { return m->nbuf; }

double pe_model_flops_per_input(const pe_model *m) {
    double f = 0;
    for (int i = 0; i < m->nops; i++) {
        const op *o = &m->ops[i];
        if (o->kind == OP_CONV)
            f += 2.0 * o->conv.K * o->conv.C * o->conv.R * o->conv.S * o->conv.P * o->conv.Q;
        else if (o->kind == OP_LINEAR)
            f += 2.0 * o->fin * o->fout;
    }
    return f;
}
