/*
 * test_interop.c - pe's side of the PyTorch interoperability test, and a
 * unit test of pe_model_load_file.
 *
 * Run with no arguments (tests/run.sh does) it checks the loader on a
 * checkpoint it writes itself: every tensor arrives where the model reads
 * it (F32, and F16/BF16/F64 converted; num_batches_tracked as I64 of
 * shape []), a missing tensor, a wrong shape or a non-I64 counter is
 * refused, skip_head keeps the head, and an eval-mode forward of the loaded
 * model does not depend on the rest of the batch.
 *
 * Run as
 *   test_interop ARCH WIDTH CHANNELS SIZE CHECKPOINT INPUT.f32 N OUTPUT.f32
 * (by tests/ref/interop.py, driven by tests/cli/interop.sh) it builds the
 * model, loads CHECKPOINT (encoder and head), reads N inputs (N, C, SIZE,
 * SIZE) of raw little-endian float32, and writes the eval-mode features
 * (N, d) followed by z (N, 128) as raw float32 to OUTPUT. Exit 0 ok, 1
 * error, 2 usage.
 *
 * Not for: comparing numbers with PyTorch (interop.py does that) or
 * training (test_fixture.c).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "model.h"
#include "pe.h"
#include "safetensors.h"
#include "train.h"

/* ---------------- driver mode ---------------- */

static int read_exact(const char *path, float *dst, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return pe_fail(errno, "%s: %s", path, strerror(errno));
    size_t got = fread(dst, sizeof *dst, n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra)
        return pe_fail(PE_EFORMAT, "%s: want exactly %zu float32 values", path, n);
    return 0;
}

static int drive(char **argv) {
    pe_arch arch;
    char *end;
    double width = strtod(argv[2], &end);
    long channels = strtol(argv[3], NULL, 10), size = strtol(argv[4], NULL, 10);
    long n = strtol(argv[7], NULL, 10);
    if (pe_arch_parse(argv[1], &arch) || *end || !(width > 0) || n < 1 || n > 100000 ||
        (channels != 1 && channels != 3) || size < 8 || size > 1024) {
        fprintf(stderr, "test_interop: bad arguments (ARCH WIDTH CHANNELS SIZE CHECKPOINT "
                        "INPUT.f32 N OUTPUT.f32)\n");
        return 2;
    }
    pe_backend *be = pe_backend_cpu(0);
    pe_model *m = NULL;
    pe_model_cfg cfg;
    float *hx = NULL, *dx = NULL, *out = NULL;
    FILE *f = NULL;
    int rc = be ? 0 : pe_fail(ENOMEM, "cannot create the CPU backend");
    /* batch norm refuses a batch of 1 even in eval mode: pad with copies */
    int batch = n < 2 ? 2 : (int)n;
    size_t view = (size_t)channels * size * size;
    if (rc) goto out;
    pe_model_cfg_default(&cfg, arch, (int)channels, (int)size);
    cfg.width = width;
    if ((rc = pe_model_init(&m, &cfg, be, 1)) || (rc = pe_model_set_batch(m, batch)) ||
        (rc = pe_model_load_file(m, be, argv[5], 0)))
        goto out;
    int d = pe_model_feat_dim(m), k = cfg.head_out;
    hx = malloc((size_t)batch * view * sizeof *hx);
    dx = be->alloc(be, (size_t)batch * view * sizeof *dx);
    out = malloc((size_t)batch * (size_t)(d + k) * sizeof *out);
    if (!hx || !dx || !out) { rc = ENOMEM; goto out; }
    if ((rc = read_exact(argv[6], hx, (size_t)n * view))) goto out;
    for (int i = (int)n; i < batch; i++) memcpy(hx + (size_t)i * view, hx, view * sizeof *hx);
    if ((rc = be->upload(be, dx, hx, (size_t)batch * view * sizeof *hx)) ||
        (rc = pe_model_forward(m, dx, 0, 0)) ||
        (rc = be->download(be, out, pe_model_features(m), (size_t)n * d * sizeof *out)) ||
        (rc = pe_model_forward(m, dx, 0, 1)) ||
        (rc = be->download(be, out + (size_t)n * d, pe_model_z(m), (size_t)n * k * sizeof *out)))
        goto out;
    if (!(f = fopen(argv[8], "wb"))) { rc = pe_fail(errno, "%s: %s", argv[8], strerror(errno)); goto out; }
    if (fwrite(out, sizeof *out, (size_t)n * (d + k), f) != (size_t)n * (d + k) || fflush(f)) {
        rc = pe_fail(errno ? errno : EIO, "%s: write failed", argv[8]);
        goto out;
    }
out:
    if (f && fclose(f) && !rc) rc = pe_fail(errno, "%s: %s", argv[8], strerror(errno));
    if (rc) fprintf(stderr, "test_interop: %s\n", pe_errmsg());
    free(hx);
    free(out);
    if (be) {
        if (dx) be->free(be, dx);
        pe_model_free(m);
        be->destroy(be);
    }
    return rc ? 1 : 0;
}

/* ---------------- unit checks of the loader ---------------- */

static char dir[64];

/* The value of element j of tensor i (t): it changes with both, so a
 * tensor loaded into another's place or shifted shows, and it is exact in
 * F16 and BF16 (k/64 with |k| < 256). Variances are positive, so that a
 * forward of the loaded model is finite. */
static float value_of(const pe_tensor_info *t, int i, size_t j) {
    int k = (i * 37 + (int)(j % 199)) % 255 - 127;
    if (strstr(t->name, "running_var")) k = abs(k) + 16;
    return (float)k / 64.0f;
}

static uint16_t to_f16(float v) { /* exact for value_of's values */
    uint32_t u;
    memcpy(&u, &v, 4);
    uint16_t s = (uint16_t)((u >> 16) & 0x8000);
    if ((u & 0x7fffffff) == 0) return s;
    int e = (int)((u >> 23) & 0xff) - 127 + 15;
    PE_ASSERT(e > 0 && e < 31 && (u & 0x1fff) == 0);
    return (uint16_t)(s | (e << 10) | ((u >> 13) & 0x3ff));
}

typedef struct ckpt_opts {
    const char *drop;      /* leave this tensor out */
    const char *reshape;   /* give this tensor another shape */
    const char *count_f32; /* write this num_batches_tracked as F32 */
    int no_head;           /* leave every head tensor out */
    int mixed;             /* write some tensors as F16, BF16, F64 */
} ckpt_opts;

/* Writes every tensor of m with value_of's values to path; counters get
 * 1000 + the tensor index. */
static int write_ckpt(const pe_model *m, const char *path, const ckpt_opts *co) {
    pe_st_writer *w = NULL;
    int nt = pe_model_ntensors(m), rc = pe_st_writer_open(&w);
    void **blobs = calloc((size_t)nt, sizeof *blobs);
    if (!rc && !blobs) rc = ENOMEM;
    for (int i = 0; i < nt && !rc; i++) {
        const pe_tensor_info *t = pe_model_tensor(m, i);
        if ((co->drop && !strcmp(t->name, co->drop)) || (co->no_head && t->head)) continue;
        size_t shape[4];
        for (int k = 0; k < t->ndim; k++) shape[k] = (size_t)t->shape[k];
        if (t->kind == PE_T_COUNT) {
            int64_t *c = malloc(sizeof *c);
            float *cf = malloc(sizeof *cf);
            blobs[i] = c;
            if (!c || !cf) { free(cf); rc = ENOMEM; break; }
            *c = 1000 + i;
            *cf = (float)*c;
            if (co->count_f32 && !strcmp(t->name, co->count_f32)) {
                free(c);
                blobs[i] = cf;
                rc = pe_st_writer_add(w, t->name, PE_ST_F32, 0, NULL, cf);
            } else {
                free(cf);
                rc = pe_st_writer_add(w, t->name, PE_ST_I64, 0, NULL, c);
            }
            continue;
        }
        size_t ndim = (size_t)t->ndim;
        if (co->reshape && !strcmp(t->name, co->reshape)) { /* same count, other shape */
            shape[0] = t->n;
            ndim = 1;
            if (t->ndim == 1) { shape[0] = t->n / 2; shape[1] = 2; ndim = 2; }
        }
        pe_st_dtype dt = co->mixed ? (pe_st_dtype[]){PE_ST_F32, PE_ST_F16, PE_ST_BF16, PE_ST_F64}[i % 4]
                                   : PE_ST_F32;
        void *b = malloc(t->n * 8);
        blobs[i] = b;
        if (!b) { rc = ENOMEM; break; }
        for (size_t j = 0; j < t->n; j++) {
            float v = value_of(t, i, j);
            uint32_t u;
            memcpy(&u, &v, 4);
            if (dt == PE_ST_F32) ((float *)b)[j] = v;
            else if (dt == PE_ST_F64) ((double *)b)[j] = v;
            else if (dt == PE_ST_BF16) ((uint16_t *)b)[j] = (uint16_t)(u >> 16);
            else ((uint16_t *)b)[j] = to_f16(v);
        }
        rc = pe_st_writer_add(w, t->name, dt, ndim, shape, b);
    }
    /* a pe-train checkpoint carries optimiser state beside the tensors: ignored here */
    static const float junk[1] = {42};
    size_t one = 1;
    if (!rc) rc = pe_st_writer_add(w, "optimizer.exp_avg.0.weight", PE_ST_F32, 1, &one, junk);
    if (!rc) rc = pe_st_write_file(w, path);
    for (int i = 0; blobs && i < nt; i++) free(blobs[i]);
    free(blobs);
    pe_st_writer_close(w);
    return rc;
}

typedef struct fixture {
    pe_backend *be;
    pe_model *m;
    char path[128];
} fixture;

static int fx_open(fixture *f, pe_arch arch, double width) {
    pe_model_cfg cfg;
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s/ckpt.safetensors", dir);
    pe_model_cfg_default(&cfg, arch, 1, 8);
    cfg.width = width;
    if (!(f->be = pe_backend_cpu(2))) return ENOMEM;
    int rc = pe_model_init(&f->m, &cfg, f->be, 5);
    if (!rc) rc = pe_model_set_batch(f->m, 3);
    return rc;
}

static void fx_close(fixture *f) {
    pe_model_free(f->m);
    if (f->be) f->be->destroy(f->be);
    unlink(f->path);
}

/* Counts the elements of m that differ from value_of (only head tensors
 * when want_head = 1, only encoder ones when 0, all when -1). */
static size_t mismatches(fixture *f, int want_head) {
    pe_model *m = f->m;
    size_t np = pe_model_nparams(m), nb = pe_model_nbuffers(m), bad = 0;
    float *hp = malloc(np * sizeof *hp), *hb = malloc((nb ? nb : 1) * sizeof *hb);
    if (!hp || !hb || f->be->download(f->be, hp, pe_model_params(m), np * sizeof *hp) ||
        f->be->download(f->be, hb, pe_model_buffers(m), nb * sizeof *hb)) {
        bad = SIZE_MAX;
        goto out;
    }
    for (int i = 0; i < pe_model_ntensors(m); i++) {
        const pe_tensor_info *t = pe_model_tensor(m, i);
        if (want_head >= 0 && t->head != want_head) continue;
        if (t->kind == PE_T_COUNT) {
            bad += pe_model_counts(m)[t->off] != 1000 + i;
            continue;
        }
        const float *v = (t->kind == PE_T_PARAM ? hp : hb) + t->off;
        for (size_t j = 0; j < t->n; j++) bad += v[j] != value_of(t, i, j);
    }
out:
    free(hp);
    free(hb);
    return bad;
}

static void loads_every_tensor(void) {
    fixture f;
    ckpt_opts co = {0};
    CHECK_OK(fx_open(&f, PE_ARCH_RESNET18, 0.0625));
    if (!f.m) goto out;
    CHECK(mismatches(&f, -1) > 0); /* the init differs from the file */
    CHECK_OK(write_ckpt(f.m, f.path, &co));
    CHECK_OK(pe_model_load_file(f.m, f.be, f.path, 0));
    CHECK(mismatches(&f, -1) == 0);
    /* a tensor's value lands where the model reads it: conv1.weight[0] */
    const pe_tensor_info *t = pe_model_find(f.m, "conv1.weight");
    float v = 0;
    CHECK(t && t->kind == PE_T_PARAM && t->ndim == 4 && t->shape[0] == 4 && t->shape[1] == 1);
    if (t) CHECK_OK(f.be->download(f.be, &v, pe_model_params(f.m) + t->off, sizeof v));
    CHECK(t && v == value_of(t, (int)(t - pe_model_tensor(f.m, 0)), 0));
    t = pe_model_find(f.m, "layer3.0.downsample.1.num_batches_tracked");
    CHECK(t && t->kind == PE_T_COUNT && t->ndim == 0);
out:
    fx_close(&f);
}

static void converts_dtypes(void) {
    fixture f;
    ckpt_opts co = {.mixed = 1};
    CHECK_OK(fx_open(&f, PE_ARCH_SMALL, 1));
    if (!f.m) goto out;
    CHECK_OK(write_ckpt(f.m, f.path, &co));
    CHECK_OK(pe_model_load_file(f.m, f.be, f.path, 0));
    CHECK(mismatches(&f, -1) == 0);
out:
    fx_close(&f);
}

static void refuses_bad_files(void) {
    fixture f;
    CHECK_OK(fx_open(&f, PE_ARCH_SMALL, 1));
    if (!f.m) goto out;
    ckpt_opts drop = {.drop = "4.3.weight"}, shape = {.reshape = "5.1.running_var"},
              count = {.count_f32 = "1.num_batches_tracked"}, nohead = {.no_head = 1};
    CHECK_OK(write_ckpt(f.m, f.path, &drop));
    CHECK_RC(pe_model_load_file(f.m, f.be, f.path, 0), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "4.3.weight") != NULL);
    CHECK_OK(write_ckpt(f.m, f.path, &shape));
    CHECK_RC(pe_model_load_file(f.m, f.be, f.path, 0), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "5.1.running_var") != NULL);
    CHECK_OK(write_ckpt(f.m, f.path, &count));
    CHECK_RC(pe_model_load_file(f.m, f.be, f.path, 0), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "num_batches_tracked") != NULL);
    /* an encoder-only file: refused with the head, loaded without it */
    CHECK_OK(write_ckpt(f.m, f.path, &nohead));
    CHECK_RC(pe_model_load_file(f.m, f.be, f.path, 0), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "head.") != NULL);
    CHECK_RC(pe_model_load_file(f.m, f.be, "/nonexistent/x.safetensors", 0), ENOENT);
out:
    fx_close(&f);
}

static void skip_head_keeps_head(void) {
    fixture f;
    ckpt_opts all = {0}, nohead = {.no_head = 1};
    CHECK_OK(fx_open(&f, PE_ARCH_SMALL, 1));
    if (!f.m) goto out;
    size_t head_before = mismatches(&f, 1);
    CHECK(head_before > 0);
    CHECK_OK(write_ckpt(f.m, f.path, &nohead));
    CHECK_OK(pe_model_load_file(f.m, f.be, f.path, 1));
    CHECK(mismatches(&f, 0) == 0);
    CHECK(mismatches(&f, 1) == head_before); /* untouched */
    /* a full file with skip_head: the head is still not read */
    CHECK_OK(write_ckpt(f.m, f.path, &all));
    CHECK_OK(pe_model_load_file(f.m, f.be, f.path, 1));
    CHECK(mismatches(&f, 1) == head_before);
out:
    fx_close(&f);
}

/* Eval mode uses the loaded running statistics, so one input's features
 * do not depend on the other inputs of its batch. */
static void eval_forward_is_per_sample(void) {
    fixture f;
    ckpt_opts co = {0};
    CHECK_OK(fx_open(&f, PE_ARCH_RESNET18, 0.0625));
    if (!f.m) goto out;
    CHECK_OK(write_ckpt(f.m, f.path, &co));
    CHECK_OK(pe_model_load_file(f.m, f.be, f.path, 0));
    enum { N = 3, V = 1 * 8 * 8 };
    float x[N * V], y[2][N * 32], *dx = f.be->alloc(f.be, sizeof x);
    CHECK(dx != NULL);
    if (!dx) goto out;
    for (int run = 0; run < 2; run++) {
        for (int i = 0; i < N * V; i++)
            x[i] = (float)sin(0.37 * i + (i >= V ? run * 1.9 : 0)); /* rows 1, 2 change */
        CHECK_OK(f.be->upload(f.be, dx, x, sizeof x));
        CHECK_OK(pe_model_forward(f.m, dx, 0, 0));
        CHECK_OK(f.be->download(f.be, y[run], pe_model_features(f.m), sizeof y[run]));
    }
    CHECK(pe_model_feat_dim(f.m) == 32);
    /* batch statistics would move row 0 by O(1); the slack only covers a
     * GEMM that blocks its columns differently */
    double worst = 0, moved = 0;
    for (int j = 0; j < 32; j++) {
        worst = fmax(worst, fabs(y[0][j] - y[1][j]) / (1e-6 + fabs(y[0][j])));
        moved = fmax(moved, fabs(y[0][32 + j] - y[1][32 + j]));
    }
    CHECK(worst <= 1e-5);
    CHECK(moved > 1e-3);
    int finite = 1;
    for (int j = 0; j < N * 32; j++) finite &= isfinite(y[0][j]) != 0;
    CHECK(finite);
    f.be->free(f.be, dx);
out:
    fx_close(&f);
}

int main(int argc, char **argv) {
    if (argc == 9) return drive(argv);
    if (argc != 1) {
        fprintf(stderr, "usage: test_interop [ARCH WIDTH CHANNELS SIZE CHECKPOINT INPUT.f32 N "
                        "OUTPUT.f32]\n");
        return 2;
    }
    printf("skip: driven by tests/cli/interop.sh (comparison with PyTorch); "
           "checking the loader only\n");
    fflush(stdout);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/pe-interop.XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("test_interop: mkdtemp");
        return 1;
    }
    RUN(loads_every_tensor);
    RUN(converts_dtypes);
    RUN(refuses_bad_files);
    RUN(skip_head_keeps_head);
    RUN(eval_forward_is_per_sample);
    rmdir(dir);
    return CHECK_DONE();
}
