/*
 * test_fixture.c - the model, NT-Xent and both optimisers against the
 * PyTorch fixtures of tests/ref (written by tests/ref/make_fixtures.py):
 * one training forward (features, z, loss, running statistics), the
 * backward (every parameter's gradient), and three optimiser steps of Adam
 * and of SGD with warm-up + cosine (losses and final parameters).
 *
 * Tolerances (tests/ref/README.md measured the noise floor between two
 * correct float32 implementations at about 1e-5):
 *  - forward, loss, running stats: |d| <= 1e-5 + 1e-4 |x| elementwise;
 *    float32 sums in another order differ by a few ulps, amplified by
 *    batch norm's division by small standard deviations.
 *  - gradients: |d| <= 1e-5 + 1e-4 * max|x| of the tensor, since
 *    individual gradient entries near 0 carry absolute, not relative, error.
 *  - after 3 steps: the loss at each step as the forward; each parameter's
 *    change (final - init) within 1e-3 relative L2 error, which catches a
 *    wrong optimiser, decay or schedule while tolerating the rare element
 *    whose near-zero gradient flips Adam's step sign.
 * Set PE_FIXTURE_PERTURB=1 to scale the first conv's weights by 1.001 after
 * loading: the test must then fail (it shows the checks can fail).
 *
 * PE_TEST_DEVICE=cuda runs the same checks with the same tolerances on the
 * CUDA backend (FP32, TF32 off; make test-gpu): every tensor goes to the
 * model through upload and comes back through download, so the test reads
 * no backend memory directly. Without a GPU it prints why and exits 77
 * (a skip), or fails under PE_REQUIRE_GPU=1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "model.h"
#include "pe.h"
#include "safetensors.h"

#ifndef PE_SRCDIR
#define PE_SRCDIR "."
#endif

typedef struct fixture {
    pe_st *part[4];
} fixture;

static const pe_st_tensor *fx_get(fixture *f, const char *name) {
    for (int i = 0; i < 4; i++) {
        const pe_st_tensor *t = f->part[i] ? pe_st_get(f->part[i], name) : NULL;
        if (t) return t;
    }
    return NULL;
}

static const char *fx_meta(fixture *f, const char *k) {
    return pe_st_meta(f->part[0], k);
}

static int fx_open(fixture *f, const char *name) {
    static const char *suffix[4] = {"", ".grad", ".adam", ".sgd"};
    memset(f, 0, sizeof *f);
    for (int i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/ref/fixture_%s%s.safetensors", PE_SRCDIR, name,
                 suffix[i]);
        int rc = pe_st_read_file(&f->part[i], path);
        if (rc) {
            fprintf(stderr, "cannot read %s: %s\n", path, pe_errmsg());
            return rc;
        }
    }
    return 0;
}

static void fx_close(fixture *f) {
    for (int i = 0; i < 4; i++) pe_st_close(f->part[i]);
}

static float *fx_f32(fixture *f, const char *name, size_t *n) {
    const pe_st_tensor *t = fx_get(f, name);
    if (!t) {
        fprintf(stderr, "fixture lacks %s\n", name);
        return NULL;
    }
    float *v = malloc((t->numel ? t->numel : 1) * sizeof *v);
    if (v && pe_st_to_f32(t, v, t->numel)) {
        free(v);
        return NULL;
    }
    if (n) *n = t->numel;
    return v;
}

static pe_backend *open_backend(void) {
    const char *dev = getenv("PE_TEST_DEVICE");
    if (dev && !strcmp(dev, "cuda")) return pe_backend_cuda(0, PE_PREC_FP32, 0);
    return pe_backend_cpu(2);
}

/* Compares got (host memory) to the fixture tensor name; mode 0:
 * elementwise 1e-5 + 1e-4|x|; mode 1: 1e-5 + 1e-4 max|x|. */
static int compare_host(fixture *f, const char *name, const float *got, size_t n, int mode) {
    size_t m;
    float *want = fx_f32(f, name, &m);
    if (!want || m != n) {
        fprintf(stderr, "  %s: missing or %zu elements, want %zu\n", name, m, n);
        free(want);
        return 0;
    }
    double maxabs = 0, worst = 0;
    size_t bad = 0, wi = 0;
    for (size_t i = 0; i < n; i++) maxabs = fmax(maxabs, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        double tol = 1e-5 + 1e-4 * (mode ? maxabs : fabs(want[i]));
        if (!(d <= tol)) bad++;
        if (!(d <= worst)) { worst = d; wi = i; }
    }
    if (bad)
        fprintf(stderr, "  %s: %zu of %zu elements off; worst |d| %.3g at %zu (got %.9g want %.9g)\n",
                name, bad, n, worst, wi, (double)got[wi], (double)want[wi]);
    free(want);
    return bad == 0;
}

/* compare_host of n floats of backend memory. */
static int compare(fixture *f, pe_backend *be, const char *name, const float *dev, size_t n,
                   int mode) {
    float *got = malloc((n ? n : 1) * sizeof *got);
    int ok = got && be->download(be, got, dev, n * sizeof *got) == 0 &&
             compare_host(f, name, got, n, mode);
    free(got);
    return ok;
}

typedef struct run {
    pe_backend *be;
    pe_model *m;
    float *x, *dz; /* backend memory */
    int N, D;
    size_t np;
} run;

/* Builds the fixture's model and loads init.* (params, buffers, counts). */
static int setup(fixture *f, run *r) {
    const char *arch = fx_meta(f, "arch"), *w = fx_meta(f, "width");
    const char *ch = fx_meta(f, "channels"), *sz = fx_meta(f, "size");
    const char *bs = fx_meta(f, "batch");
    if (!arch || !w || !ch || !sz || !bs) {
        fprintf(stderr, "fixture metadata incomplete\n");
        return -1;
    }
    pe_model_cfg cfg;
    pe_arch a;
    if (pe_arch_parse(arch, &a)) return -1;
    pe_model_cfg_default(&cfg, a, atoi(ch), atoi(sz));
    /* "1/16" or a decimal */
    const char *slash = strchr(w, '/');
    cfg.width = slash ? strtod(w, NULL) / strtod(slash + 1, NULL) : strtod(w, NULL);
    r->be = open_backend();
    if (!r->be) {
        fprintf(stderr, "cannot open the backend: %s\n", pe_errmsg());
        return -1;
    }
    if (pe_model_init(&r->m, &cfg, r->be, 1)) return -1;
    r->N = 2 * atoi(bs);
    r->D = cfg.head_out;
    if (pe_model_set_batch(r->m, r->N)) return -1;
    r->np = pe_model_nparams(r->m);
    const size_t nbuf = pe_model_nbuffers(r->m);
    float *p = calloc(r->np, sizeof *p), *buf = calloc(nbuf ? nbuf : 1, sizeof *buf);
    if (!p || !buf) return -1;
    for (int i = 0; i < pe_model_ntensors(r->m); i++) {
        const pe_tensor_info *t = pe_model_tensor(r->m, i);
        char name[96];
        snprintf(name, sizeof name, "init.%s", t->name);
        const pe_st_tensor *x = fx_get(f, name);
        if (!x) {
            fprintf(stderr, "fixture lacks %s\n", name);
            return -1;
        }
        if (t->kind == PE_T_COUNT) {
            int64_t v;
            memcpy(&v, x->data, 8);
            pe_model_counts(r->m)[t->off] = v;
        } else if (x->numel != t->n ||
                   pe_st_to_f32(x, (t->kind == PE_T_RUNNING ? buf : p) + t->off, t->n)) {
            fprintf(stderr, "%s: shape differs from the model's\n", name);
            free(p), free(buf);
            return -1;
        }
    }
    if (getenv("PE_FIXTURE_PERTURB")) {
        const pe_tensor_info *t = pe_model_tensor(r->m, 0);
        for (size_t j = 0; j < t->n; j++) p[t->off + j] *= 1.001f;
    }
    int rc = r->be->upload(r->be, pe_model_params(r->m), p, r->np * sizeof *p) ||
             r->be->upload(r->be, pe_model_buffers(r->m), buf, nbuf * sizeof *buf);
    free(p), free(buf);
    size_t n;
    float *hx = fx_f32(f, "input", &n);
    r->x = r->be->alloc(r->be, (n ? n : 1) * sizeof *r->x);
    r->dz = r->be->alloc(r->be, (size_t)r->N * r->D * sizeof *r->dz);
    if (!rc && hx && r->x) rc = r->be->upload(r->be, r->x, hx, n * sizeof *hx);
    free(hx);
    return !rc && hx && r->x && r->dz ? 0 : -1;
}

static void teardown(run *r) {
    pe_model_free(r->m);
    if (r->be) {
        if (r->x) r->be->free(r->be, r->x);
        if (r->dz) r->be->free(r->be, r->dz);
        r->be->destroy(r->be);
    }
    memset(r, 0, sizeof *r);
}

/* n floats of backend memory, downloaded (NULL on failure) */
static float *fetch(pe_backend *be, const float *dev, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof *h);
    if (h && be->download(be, h, dev, n * sizeof *h)) {
        free(h);
        return NULL;
    }
    return h;
}

static void test_first_pass(fixture *f) {
    run r = {0};
    CHECK(setup(f, &r) == 0);
    if (!r.m) { teardown(&r); return; }
    float loss;
    CHECK_OK(pe_model_forward(r.m, r.x, 1, 1));
    CHECK_OK(r.be->ntxent(r.be, r.N, r.D, pe_model_z(r.m), 0.5f, &loss, r.dz));
    CHECK(compare(f, r.be, "features", pe_model_features(r.m),
                  (size_t)r.N * pe_model_feat_dim(r.m), 0));
    CHECK(compare(f, r.be, "z", pe_model_z(r.m), (size_t)r.N * r.D, 0));
    CHECK(compare_host(f, "loss", &loss, 1, 0));
    CHECK_OK(pe_model_backward(r.m, r.dz));
    for (int i = 0; i < pe_model_ntensors(r.m); i++) {
        const pe_tensor_info *t = pe_model_tensor(r.m, i);
        char name[96];
        if (t->kind == PE_T_PARAM) {
            snprintf(name, sizeof name, "grad.%s", t->name);
            CHECK(compare(f, r.be, name, pe_model_grads(r.m) + t->off, t->n, 1));
        } else if (t->kind == PE_T_RUNNING) {
            snprintf(name, sizeof name, "running.%s", t->name);
            CHECK(compare(f, r.be, name, pe_model_buffers(r.m) + t->off, t->n, 0));
        } else {
            CHECK(pe_model_counts(r.m)[t->off] == 1);
        }
    }
    teardown(&r);
}

/* Three steps of an optimiser from init; compares losses and updates. */
static void three_steps(fixture *f, int adam) {
    run r = {0};
    CHECK(setup(f, &r) == 0);
    if (!r.m) { teardown(&r); return; }
    const char *pre = adam ? "adam" : "sgd";
    float *init = fetch(r.be, pe_model_params(r.m), r.np);
    float *s1 = r.be->alloc(r.be, r.np * sizeof *s1), *s2 = r.be->alloc(r.be, r.np * sizeof *s2);
    CHECK(init && s1 && s2);
    CHECK_OK(r.be->fill(r.be, r.np, 0, s1));
    CHECK_OK(r.be->fill(r.be, r.np, 0, s2));
    size_t nlr;
    char name[128];
    snprintf(name, sizeof name, "%s.lr", pre);
    float *lrs = fx_f32(f, name, &nlr);
    CHECK(lrs && nlr == 3);
    for (int step = 1; step <= 3 && lrs; step++) {
        float loss;
        CHECK_OK(pe_model_forward(r.m, r.x, 1, 1));
        CHECK_OK(r.be->ntxent(r.be, r.N, r.D, pe_model_z(r.m), 0.5f, &loss, r.dz));
        snprintf(name, sizeof name, "%s.loss.%d", pre, step);
        CHECK(compare_host(f, name, &loss, 1, 0));
        CHECK_OK(pe_model_backward(r.m, r.dz));
        if (adam)
            CHECK_OK(r.be->adam(r.be, r.np, pe_model_params(r.m), pe_model_grads(r.m), s1, s2,
                                lrs[step - 1], 0.9f, 0.999f, 1e-8f, 1e-6f, step));
        else
            CHECK_OK(r.be->sgd(r.be, r.np, pe_model_params(r.m), pe_model_grads(r.m), s1,
                               lrs[step - 1], 0.9f, 5e-4f, step == 1));
    }
    for (int i = 0; i < pe_model_ntensors(r.m); i++) {
        const pe_tensor_info *t = pe_model_tensor(r.m, i);
        snprintf(name, sizeof name, "%s.final.%s", pre, t->name);
        if (t->kind == PE_T_COUNT) {
            const pe_st_tensor *x = fx_get(f, name);
            int64_t v = -1;
            if (x) memcpy(&v, x->data, 8);
            CHECK(v == pe_model_counts(r.m)[t->off]);
            continue;
        }
        if (t->kind == PE_T_RUNNING) {
            CHECK(compare(f, r.be, name, pe_model_buffers(r.m) + t->off, t->n, 0));
            continue;
        }
        size_t n;
        float *want = fx_f32(f, name, &n);
        CHECK(want && n == t->n);
        if (!want || n != t->n) { free(want); continue; }
        double num = 0, den = 0;
        float *got = fetch(r.be, pe_model_params(r.m) + t->off, n);
        CHECK(got != NULL);
        if (!got) { free(want); continue; }
        for (size_t j = 0; j < n; j++) {
            double dw = (double)want[j] - init[t->off + j], dg = (double)got[j] - init[t->off + j];
            num += (dg - dw) * (dg - dw);
            den += dw * dw;
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        if (!(rel <= 1e-3))
            fprintf(stderr, "  %s: update differs, relative L2 error %.3g\n", name, rel);
        CHECK(rel <= 1e-3);
        free(want);
        free(got);
    }
    free(lrs);
    free(init);
    r.be->free(r.be, s1);
    r.be->free(r.be, s2);
    teardown(&r);
}

static fixture F;
static void first_pass(void) { test_first_pass(&F); }
static void adam_steps(void) { three_steps(&F, 1); }
static void sgd_steps(void) { three_steps(&F, 0); }

int main(void) {
    const char *dev = getenv("PE_TEST_DEVICE");
    if (dev && !strcmp(dev, "cuda")) {
        const char *why = NULL;
        if (pe_cuda_devices(&why) == 0) {
            printf("skip: PE_TEST_DEVICE=cuda: %s\n", why ? why : "no GPU");
            return getenv("PE_REQUIRE_GPU") ? 1 : 77;
        }
    }
    /* resnet_tiny is committed; small_gray (7 MB) is written by
     * tests/ref/make_fixtures.py where PyTorch is installed, and checked
     * when present. */
    static const char *names[] = {"resnet_tiny", "small_gray"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char probe[512];
        snprintf(probe, sizeof probe, "%s/tests/ref/fixture_%s.sgd.safetensors", PE_SRCDIR, names[i]);
        if (i > 0 && access(probe, R_OK) != 0) {
            fprintf(stderr, "skip: fixture %s not generated (tests/ref/make_fixtures.py)\n", names[i]);
            continue;
        }
        fprintf(stderr, "fixture %s\n", names[i]);
        CHECK_OK(fx_open(&F, names[i]));
        if (!F.part[3]) break;
        RUN(first_pass);
        RUN(adam_steps);
        RUN(sgd_steps);
        fx_close(&F);
    }
    return CHECK_DONE();
}
