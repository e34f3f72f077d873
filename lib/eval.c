/*
 * eval.c - pe-eval's pipeline (see eval.h): sets and their class spaces,
 * targets, the frozen encoder, feature extraction and its cache, the probes
 * and the report.
 *
 * Order of work: everything that can be wrong with the inputs (sets,
 * labels, target lines, the encoder file and options) is checked before
 * the first forward pass, and nothing is printed on `out` until every task
 * has been evaluated.
 *
 * Not for: option parsing, the probes' math (probe.c), the model.
 */
#include "eval.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "augment.h"
#include "backend.h"
#include "cli.h"
#include "escape.h"
#include "image.h"
#include "pe.h"
#include "safetensors.h"
#include "train.h"

#define CKPT_FORMAT "pe-train-1"
#define CACHE_FORMAT "pe-eval-cache-1"
/* Names the input rule of eval.h; change it whenever the rule changes, so
 * that old caches stop matching. */
#define INPUT_RULE "pe-eval-input-1 resize=pillow-bilinear-whole gray=replicate"
#define WILSON_Z 1.959963984540054 /* the 97.5% normal quantile: 95% two-sided */

void pe_eval_opts_default(pe_eval_opts *o) {
    memset(o, 0, sizeof *o);
    pe_encoder_opts_default(&o->enc);
    pe_probe_opts_default(&o->probe);
    o->prog = "pe-eval";
}

/* ---------------- sets ---------------- */

typedef struct eset {
    const char *name;        /* borrowed from the options */
    size_t n;                /* entries (each one image, whatever its count) */
    pe_key *keys;            /* (n) in key order */
    int32_t *labels;         /* (n) the set's own class ids */
    char **classes;          /* (ncls) names, copied; "" = unnamed */
    uint32_t ncls;
    int named;               /* some class has a name */
    char fp[PE_KEY_HEX + 1]; /* XXH3-128 of (key, count, label) per entry */
    float *feat;             /* (n, d) L2-normalised features */
    int cached;              /* feat came from the cache */
} eset;

static void eset_free(eset *s) {
    free(s->keys);
    free(s->labels);
    pe_cli_free_classes(s->classes, s->ncls);
    free(s->feat);
}

static void put_u32le(uint8_t *b, uint32_t v) {
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}

static void hex128(const void *data, size_t len, XXH3_state_t *state, char *out) {
    XXH128_hash_t h = state ? XXH3_128bits_digest(state) : XXH3_128bits(data, len);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", c.digest[i]);
}

static int eset_load(pe_txn *t, eset *s) {
    pe_set_hdr h;
    pe_set_iter *it = NULL;
    pe_set_entry e;
    size_t cap = 0;
    int rc;
    if ((rc = pe_set_get(t, s->name, &h)) || (rc = pe_cli_copy_classes(&h, &s->classes, &s->ncls)))
        return rc;
    for (uint32_t i = 0; i < s->ncls; i++) s->named |= s->classes[i][0] != 0;
    XXH3_state_t hs;
    XXH3_128bits_reset(&hs);
    if ((rc = pe_set_iter_open(t, s->name, 65536, &it))) return rc;
    while ((rc = pe_set_iter_next(it, &e)) == 1) {
        if (e.label == PE_LABEL_NONE) {
            char hx[PE_KEY_HEX + 1];
            pe_key_to_hex(&e.key, hx);
            rc = pe_fail(PE_EFORMAT, "set '%s': image %s is unlabeled (a downstream set needs "
                         "a label on every entry)", s->name, hx);
            goto out;
        }
        if (s->n == cap) {
            cap = cap ? 2 * cap : 1024;
            pe_key *k = realloc(s->keys, cap * sizeof *k);
            if (k) s->keys = k;
            int32_t *l = k ? realloc(s->labels, cap * sizeof *l) : NULL;
            if (l) s->labels = l;
            if (!k || !l) { rc = ENOMEM; goto out; }
        }
        s->keys[s->n] = e.key;
        s->labels[s->n] = e.label;
        s->n++;
        uint8_t b[PE_KEY_LEN + 8];
        memcpy(b, e.key.b, PE_KEY_LEN);
        put_u32le(b + PE_KEY_LEN, e.count);
        put_u32le(b + PE_KEY_LEN + 4, (uint32_t)e.label);
        XXH3_128bits_update(&hs, b, sizeof b);
    }
    if (rc == 0) hex128(NULL, 0, &hs, s->fp);
out:
    pe_set_iter_close(it);
    return rc;
}

/* Row of key in s (keys in key order), or -1. */
static long eset_find(const eset *s, const pe_key *k) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(s->keys[mid].b, k->b, PE_KEY_LEN);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* ---------------- tasks and their class spaces ---------------- */

/* The classes of a task are the training set's ids. A test label is
 * mapped by name when both sets name their classes (ingests of different
 * folders number classes differently), else by id; a test class the
 * training set lacks becomes one more class that the probe, without a
 * training example, effectively never predicts. */
typedef struct etask {
    eset *tr, *te;
    int k;                   /* classes of the task */
    const char **names;      /* (k) names (borrowed from the sets); NULL = unnamed */
    int32_t *ytr, *yte;      /* (tr->n), (te->n) labels in task ids */
    int32_t *temap;          /* test set id -> task id */
    size_t ntemap;
    pe_target *t;            /* targets, in input order */
    unsigned long *tline;    /* their input lines */
    size_t nt, tcap;
    unsigned long *rowline;  /* (te->n) the line naming each row as a target, 0 = none */
    /* results */
    pe_probe_stats ps;
    uint64_t train_correct;
    pe_target_result *res;
    pe_attack_summary sum;
    int32_t *pred;           /* (te->n) the probe's class for each test image */
} etask;

static void etask_free(etask *t) {
    free(t->names);
    free(t->ytr);
    free(t->yte);
    free(t->temap);
    free(t->t);
    free(t->tline);
    free(t->rowline);
    free(t->res);
    free(t->pred);
}

static int names_grow(etask *t, int k) {
    const char **v = realloc(t->names, (size_t)k * sizeof *v);
    if (!v) return ENOMEM;
    for (int i = t->k; i < k; i++) v[i] = NULL;
    t->names = v;
    t->k = k;
    return 0;
}

static int etask_map(etask *t, size_t index) {
    const eset *tr = t->tr, *te = t->te;
    if (tr->n == 0)
        return pe_fail(PE_EFORMAT, "task %zu: the training set '%s' is empty", index + 1, tr->name);
    int32_t k = (int32_t)tr->ncls, maxte = (int32_t)te->ncls;
    for (size_t i = 0; i < tr->n; i++)
        if (tr->labels[i] >= k) k = tr->labels[i] + 1;
    for (size_t i = 0; i < te->n; i++)
        if (te->labels[i] >= maxte) maxte = te->labels[i] + 1;
    if (k > 1000000 || maxte > 1000000)
        return pe_fail(PE_EFORMAT, "task %zu: class ids above 1000000", index + 1);
    if (names_grow(t, k)) return ENOMEM;
    for (int32_t i = 0; i < (int32_t)tr->ncls; i++)
        t->names[i] = tr->classes[i][0] ? tr->classes[i] : NULL;
    t->ntemap = (size_t)maxte;
    t->temap = malloc((t->ntemap ? t->ntemap : 1) * sizeof *t->temap);
    t->ytr = malloc((tr->n ? tr->n : 1) * sizeof *t->ytr);
    t->yte = malloc((te->n ? te->n : 1) * sizeof *t->yte);
    t->rowline = calloc(te->n ? te->n : 1, sizeof *t->rowline);
    if (!t->temap || !t->ytr || !t->yte || !t->rowline) return ENOMEM;
    for (int32_t id = 0; id < maxte; id++) {
        const char *nm = (uint32_t)id < te->ncls && te->classes[id][0] ? te->classes[id] : NULL;
        int32_t to = -1;
        if (nm && tr->named) {
            for (int c = 0; c < t->k && to < 0; c++)
                if (t->names[c] && !strcmp(t->names[c], nm)) to = c;
            if (to < 0) {
                to = t->k;
                if (names_grow(t, t->k + 1)) return ENOMEM;
                t->names[to] = nm;
            }
        } else {
            to = id;
            if (id >= t->k && names_grow(t, id + 1)) return ENOMEM;
            if (nm && !t->names[id]) t->names[id] = nm;
        }
        t->temap[id] = to;
    }
    memcpy(t->ytr, tr->labels, tr->n * sizeof *t->ytr);
    for (size_t i = 0; i < te->n; i++) t->yte[i] = t->temap[te->labels[i]];
    unsigned char *seen = calloc((size_t)t->k, 1);
    int distinct = 0;
    if (!seen) return ENOMEM;
    for (size_t i = 0; i < tr->n; i++)
        if (!seen[tr->labels[i]]) {
            seen[tr->labels[i]] = 1;
            distinct++;
        }
    free(seen);
    if (distinct < 2)
        return pe_fail(PE_EFORMAT, "task %zu: the training set '%s' holds images of one class; "
                       "a probe needs at least two", index + 1, tr->name);
    return 0;
}

/* ---------------- targets ---------------- */

typedef struct target_ctx {
    const pe_eval_opts *o;
    etask *tasks;
    const char *src; /* the targets file's name in messages */
} target_ctx;

static int target_line(void *vctx, const pe_key *key, const char *rest, unsigned long line) {
    target_ctx *c = vctx;
    const pe_eval_opts *o = c->o;
    char hx[PE_KEY_HEX + 1];
    pe_key_to_hex(key, hx);
    etask *t = NULL;
    long row = -1;
    for (size_t i = 0; i < o->ntasks && row < 0; i++)
        if ((row = eset_find(c->tasks[i].te, key)) >= 0) t = &c->tasks[i];
    if (!t) {
        if (o->ntasks == 1)
            return pe_fail(PE_ENOTFOUND, "%s: line %lu: image %s is not in the test set '%s'",
                           c->src, line, hx, o->tasks[0].test);
        return pe_fail(PE_ENOTFOUND, "%s: line %lu: image %s is in none of the test sets",
                       c->src, line, hx);
    }
    /* CLASS is the first field; later fields are ignored, as pipes do */
    char cls[1024];
    size_t len = strcspn(rest, "\t");
    if (len >= sizeof cls)
        return pe_fail(PE_EFORMAT, "%s: line %lu: class name too long", c->src, line);
    memcpy(cls, rest, len);
    cls[len] = 0;
    /* --target-class overrides the field (pe-craft's rule): the output of
     * pe-ls, whose field is the true class, serves as targets unchanged */
    const char *name = o->target_class ? o->target_class : len ? cls : NULL;
    if (!name)
        return pe_fail(PE_EFORMAT, "%s: line %lu: no target class for image %s (add a tab and "
                       "a class, or give --target-class)", c->src, line, hx);
    const eset *te = t->te;
    pe_set_hdr h;
    memset(&h, 0, sizeof h);
    h.n_classes = te->ncls;
    h.classes = (const char *const *)te->classes;
    int32_t id, to = -1;
    if (pe_set_class_id(&h, name, &id))
        return pe_fail(PE_ENOTFOUND, "%s: line %lu: set '%s' has no class '%s'", c->src, line,
                       te->name, name);
    if ((size_t)id < t->ntemap) to = t->temap[id];
    else if (id < t->k) to = id; /* an unnamed id the test set does not use */
    if (to < 0)
        return pe_fail(PE_ENOTFOUND, "%s: line %lu: class '%s' is not a class of the task "
                       "('%s' has %d)", c->src, line, name, t->tr->name, t->k);
    if (to == t->yte[row])
        return pe_fail(PE_EFORMAT, "%s: line %lu: image %s is of class '%s' already; a target "
                       "class must differ from the true class", c->src, line, hx, name);
    if (t->rowline[row])
        return pe_fail(PE_EFORMAT, "%s: line %lu: image %s is a target already (line %lu)",
                       c->src, line, hx, t->rowline[row]);
    if (t->nt == t->tcap) {
        size_t cap = t->tcap ? 2 * t->tcap : 16;
        pe_target *v = realloc(t->t, cap * sizeof *v);
        if (v) t->t = v;
        unsigned long *l = v ? realloc(t->tline, cap * sizeof *l) : NULL;
        if (l) t->tline = l;
        if (!v || !l) return ENOMEM;
        t->tcap = cap;
    }
    t->rowline[row] = line;
    t->t[t->nt] = (pe_target){(size_t)row, to};
    t->tline[t->nt++] = line;
    return 0;
}

static int read_targets(const pe_eval_opts *o, etask *tasks, FILE *in) {
    if (!o->targets) return 0;
    int std = !strcmp(o->targets, "-");
    FILE *f = std ? in : fopen(o->targets, "r");
    if (!f) return pe_fail(errno, "%s: %s", o->targets, strerror(errno));
    target_ctx c = {o, tasks, std ? "stdin" : o->targets};
    int rc = pe_keylines_read(f, c.src, target_line, &c);
    if (!std) fclose(f);
    return rc;
}

/* ---------------- the encoder ---------------- */

struct pe_encoder {
    pe_model_cfg cfg;
    float mean[3], std[3];
    char hash[PE_KEY_HEX + 1]; /* XXH3-128 of the file's bytes */
    /* everything that shapes a feature, the batch included: the
     * convolutions' GEMM blocks depend on it, and so do the features'
     * last bits (ResNet-18: up to ~1e-7), so a cache made with another
     * batch would not give the bits a fresh run gives */
    char rule[512];
    struct stat st;            /* of the file as read */
    int batch;
    int progress;
    const char *prog;
    pe_backend *be;   /* runs the encoder */
    pe_backend *host; /* the CPU's, for pe_encoder_backend (be when be is) */
    pe_model *m;
};

static int read_file(const char *path, uint8_t **buf, size_t *len, struct stat *st) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pe_fail(errno, "%s: %s", path, strerror(errno));
    int rc = 0;
    uint8_t *b = NULL;
    if (fstat(fd, st)) { rc = pe_fail(errno, "%s: %s", path, strerror(errno)); goto out; }
    if (!S_ISREG(st->st_mode)) { rc = pe_fail(PE_EFORMAT, "%s: not a regular file", path); goto out; }
    size_t n = (size_t)st->st_size, got = 0;
    if (!(b = malloc(n ? n : 1))) { rc = pe_fail(ENOMEM, "%s: %zu bytes: out of memory", path, n); goto out; }
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { rc = pe_fail(errno, "%s: %s", path, strerror(errno)); goto out; }
        if (r == 0) { rc = pe_fail(PE_EFORMAT, "%s: shrank while being read", path); goto out; }
        got += (size_t)r;
    }
    *buf = b;
    *len = n;
    b = NULL;
out:
    free(b);
    close(fd);
    return rc;
}

/* "a,b,c" (or one number for all three) into v; 0 or -1. */
static int parse3(const char *s, float *v) {
    double d[3];
    int k = 0;
    const char *p = s;
    while (k < 3) {
        char *end;
        d[k] = strtod(p, &end);
        if (end == p || !isfinite(d[k])) return -1;
        k++;
        if (*end == 0) break;
        if (*end != ',') return -1;
        p = end + 1;
    }
    if (*p && k == 3 && strchr(p, ',')) return -1;
    if (k != 1 && k != 3) return -1;
    for (int i = 0; i < 3; i++) v[i] = (float)d[k == 1 ? 0 : i];
    return 0;
}

static int meta_int(const pe_st *f, const char *path, const char *k, int lo, int hi, int *out) {
    const char *s = pe_st_meta(f, k);
    char *end;
    if (!s) return pe_fail(PE_EFORMAT, "%s: the checkpoint lacks '%s'", path, k);
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return pe_fail(PE_EFORMAT, "%s: the checkpoint's %s '%s' is not %d to %d", path, k, s, lo, hi);
    *out = (int)v;
    return 0;
}

/* Reads the file, takes the description from its metadata and the options,
 * and checks the first convolution against the channel count. */
static int encoder_describe(const pe_encoder_opts *o, pe_encoder *e) {
    uint8_t *buf = NULL;
    size_t len = 0;
    pe_st *f = NULL;
    const char *path = o->path;
    int rc = read_file(path, &buf, &len, &e->st);
    if (rc) return rc;
    hex128(buf, len, NULL, e->hash);
    if ((rc = pe_st_open_mem(&f, buf, len))) {
        rc = pe_fail_prefix(rc, "%s", path);
        goto out;
    }
    const char *fmt = pe_st_meta(f, "format");
    int meta = fmt && !strcmp(fmt, CKPT_FORMAT);
    pe_arch arch = PE_ARCH_SMALL;
    double width = 1.0;
    int channels = 0, size = 0;
    float mean[3], std[3];
    if (meta) {
        const char *a = pe_st_meta(f, "arch"), *w = pe_st_meta(f, "width");
        const char *m = pe_st_meta(f, "mean"), *s = pe_st_meta(f, "std");
        char *end;
        if (!a || pe_arch_parse(a, &arch)) {
            rc = pe_fail(PE_EFORMAT, "%s: the checkpoint's arch '%s' is unknown", path, a ? a : "");
            goto out;
        }
        if (!w || (width = strtod(w, &end), *end) || !(width >= 0.0625 && width <= 16)) {
            rc = pe_fail(PE_EFORMAT, "%s: the checkpoint's width '%s' is not 0.0625 to 16", path, w ? w : "");
            goto out;
        }
        if ((rc = meta_int(f, path, "channels", 1, 3, &channels)) ||
            (rc = meta_int(f, path, "size", 8, 1024, &size)))
            goto out;
        if (!m || !s || parse3(m, mean) || parse3(s, std)) {
            rc = pe_fail(PE_EFORMAT, "%s: the checkpoint's mean or std is not three numbers", path);
            goto out;
        }
        if (o->have_arch && o->arch != arch) {
            rc = pe_fail(PE_EUSAGE, "%s: a checkpoint of architecture '%s', not '%s' (--arch)",
                         path, pe_arch_name(arch), pe_arch_name(o->arch));
            goto out;
        }
    } else if (!o->have_arch || !o->size || !o->channels || !o->have_mean || !o->have_std) {
        rc = pe_fail(PE_EUSAGE, "%s: no pe-train metadata (a PyTorch state_dict?): give --arch, "
                     "--size, --channels, --mean and --std", path);
        goto out;
    }
    if (o->have_arch) arch = o->arch;
    if (o->have_width && arch == PE_ARCH_SMALL) {
        rc = pe_fail(PE_EUSAGE, "%s: --width applies to resnet18 only, not this small encoder", path);
        goto out;
    }
    if (o->have_width) width = o->width;
    if (o->size) size = o->size;
    if (o->channels) channels = o->channels;
    if (o->have_mean) memcpy(mean, o->mean, sizeof mean);
    if (o->have_std) memcpy(std, o->std, sizeof std);
    if (channels != 1 && channels != 3) {
        rc = pe_fail(PE_EFORMAT, "%s: %d input channels (1 or 3)", path, channels);
        goto out;
    }
    for (int i = 0; i < 3; i++)
        if (!(std[i] > 0)) {
            rc = pe_fail(PE_EFORMAT, "%s: a std of %g (must be positive)", path, (double)std[i]);
            goto out;
        }
    const pe_st_tensor *c1 = pe_st_get(f, arch == PE_ARCH_SMALL ? "0.weight" : "conv1.weight");
    if (c1 && c1->ndim == 4 && c1->shape[1] != (size_t)channels) {
        rc = pe_fail(PE_EFORMAT, "%s: the encoder takes %zu input channels, not %d%s", path,
                     c1->shape[1], channels, o->channels ? " (--channels)" : "");
        goto out;
    }
    pe_model_cfg_default(&e->cfg, arch, channels, size);
    e->cfg.width = width;
    memcpy(e->mean, mean, sizeof mean);
    memcpy(e->std, std, sizeof std);
    snprintf(e->rule, sizeof e->rule,
             INPUT_RULE " arch=%s width=%.17g channels=%d size=%d mean=%.9g,%.9g,%.9g "
             "std=%.9g,%.9g,%.9g batch=%d",
             pe_arch_name(arch), width, channels, size, (double)mean[0], (double)mean[1],
             (double)mean[2], (double)std[0], (double)std[1], (double)std[2], o->batch);
out:
    pe_st_close(f);
    free(buf);
    return rc;
}

void pe_encoder_opts_default(pe_encoder_opts *o) {
    memset(o, 0, sizeof *o);
    o->width = 1.0;
    o->batch = 256;
    o->prog = "pe-eval";
}

int pe_encoder_open(pe_encoder **out, const pe_encoder_opts *o, int threads) {
    struct stat now;
    pe_encoder *e = calloc(1, sizeof *e);
    int rc = 0;
    *out = NULL;
    if (!e) return pe_fail(ENOMEM, "out of memory");
    if (!o->path) { rc = pe_fail(PE_EUSAGE, "no encoder"); goto out; }
    if (o->batch < 1 || o->batch > 65536) { rc = pe_fail(PE_EUSAGE, "batch %d out of range", o->batch); goto out; }
    e->batch = o->batch;
    e->progress = o->progress;
    e->prog = o->prog ? o->prog : "pe";
    if ((rc = encoder_describe(o, e))) goto out;
    /* deterministic convolution algorithms always: a feature's bits must
     * depend on the batch and the images only, or the cache below could
     * not stand in for a fresh run (timed choices vary between runs) */
    if ((rc = pe_backend_open(o->device, o->device_index, threads, o->precision, 1, &e->be)))
        goto out;
    if (strcmp(e->be->name, "cpu") == 0) {
        e->host = e->be;
    } else {
        /* a GPU's features differ from the CPU's in the last bits: a
         * cache made on one is not the other's (the CPU's rule stays as
         * it was, so existing caches stay valid) */
        size_t len = strlen(e->rule);
        snprintf(e->rule + len, sizeof e->rule - len, " device=%s precision=%s", e->be->name,
                 pe_precision_name(o->precision));
        if (!(e->host = pe_backend_cpu(threads))) {
            rc = pe_fail(ENOMEM, "cannot start the CPU backend");
            goto out;
        }
    }
    /* the model with the file's weights; the file must be the one hashed */
    if ((rc = pe_model_init(&e->m, &e->cfg, e->be, 1))) goto out;
    if ((rc = pe_model_load_file(e->m, e->be, o->path, 1))) goto out;
    if (stat(o->path, &now) || now.st_dev != e->st.st_dev || now.st_ino != e->st.st_ino ||
        now.st_size != e->st.st_size || now.st_mtim.tv_sec != e->st.st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != e->st.st_mtim.tv_nsec) {
        rc = pe_fail(PE_EFORMAT, "%s: changed while being read; run again", o->path);
        goto out;
    }
    *out = e;
    e = NULL;
out:
    pe_encoder_close(e);
    return rc;
}

void pe_encoder_close(pe_encoder *e) {
    if (!e) return;
    pe_model_free(e->m);
    if (e->host && e->host != e->be) e->host->destroy(e->host);
    if (e->be) e->be->destroy(e->be);
    free(e);
}

int pe_encoder_dim(const pe_encoder *e) { return pe_model_feat_dim(e->m); }
const pe_model_cfg *pe_encoder_cfg(const pe_encoder *e) { return &e->cfg; }
pe_backend *pe_encoder_backend(pe_encoder *e) { return e->host; }

/* ---------------- features ---------------- */

/* The image's name in messages: "set 'NAME': image KEY", or "image KEY"
 * for keys not from a set. */
static int fail_image(int rc, const char *name, const pe_key *key, const char *what) {
    char hx[PE_KEY_HEX + 1];
    pe_key_to_hex(key, hx);
    if (name) return pe_fail(rc, "set '%s': image %s%s", name, hx, what);
    return pe_fail(rc, "image %s%s", hx, what);
}

/* One stored image as the encoder's input (C, size, size), by the rule of
 * eval.h. */
static int prep_image(const pe_image *src, const pe_encoder *e, const char *name,
                      const pe_key *key, float *out) {
    uint32_t S = (uint32_t)e->cfg.size, C = (uint32_t)e->cfg.channels;
    pe_image r = {0};
    const pe_image *im = src;
    if (src->c == 3 && C == 1)
        return fail_image(PE_EFORMAT, name, key, " is RGB; a 1-channel encoder needs gray images");
    if (src->w != S || src->h != S) {
        int rc = pe_image_resize_bilinear(src, &r, S, S);
        if (rc) return rc;
        im = &r;
    }
    pe_aug_normalize(im, C, e->mean, e->std, out);
    pe_image_free(&r);
    return 0;
}

int pe_encoder_features(pe_encoder *e, pe_store *st, const pe_key *keys, size_t n,
                        const char *name, float *out, FILE *err) {
    pe_model *m = e->m;
    pe_backend *be = e->be;
    int S = e->cfg.size, C = e->cfg.channels, fd = pe_model_feat_dim(m), rc = 0;
    size_t view = (size_t)C * S * S;
    /* batch norm in evaluation mode treats each input alone, so the last,
     * smaller batch is run at its own size (a lone image doubled, as
     * pe_model_set_batch wants at least 2): the batches, and so the
     * features' bits, depend only on the batch and the image list */
    size_t B = (size_t)e->batch < n ? (size_t)e->batch : n;
    if (B < 2) B = 2;
    float *x = malloc(B * view * sizeof *x), *hf = malloc(B * (size_t)fd * sizeof *hf);
    float *dx = be->alloc(be, B * view * sizeof(float));
    pe_txn *t = NULL;
    double t0 = pe_now();
    if (!x || !hf || !dx) {
        rc = name ? pe_fail(ENOMEM, "set '%s': not enough memory for its features", name)
                  : pe_fail(ENOMEM, "not enough memory for the features");
        goto out;
    }
    if ((rc = pe_txn_begin(st, 0, &t))) goto out;
    for (size_t b0 = 0; b0 < n; b0 += B) {
        size_t nb = n - b0 < B ? n - b0 : B, nrun = nb < 2 ? 2 : nb;
        for (size_t i = 0; i < nrun; i++) {
            const pe_key *key = &keys[b0 + (i < nb ? i : 0)]; /* a lone image is doubled */
            pe_image im = {0};
            if ((rc = pe_img_get(t, key, &im))) {
                char hx[PE_KEY_HEX + 1];
                pe_key_to_hex(key, hx);
                rc = name ? pe_fail_prefix(rc, "set '%s': image %s", name, hx)
                          : pe_fail_prefix(rc, "image %s", hx);
                goto out;
            }
            rc = prep_image(&im, e, name, key, x + i * view);
            pe_image_free(&im);
            if (rc) goto out;
        }
        if ((rc = pe_model_set_batch(m, (int)nrun)) ||
            (rc = be->upload(be, dx, x, nrun * view * sizeof(float))) ||
            (rc = pe_model_forward(m, dx, 0, 0)) ||
            (rc = be->download(be, hf, pe_model_features(m), nrun * (size_t)fd * sizeof(float))))
            goto out;
        for (size_t i = 0; i < nb; i++) {
            const float *f = hf + i * (size_t)fd;
            float *dst = out + (b0 + i) * (size_t)fd;
            double ss = 0;
            for (int j = 0; j < fd; j++) ss += (double)f[j] * f[j];
            float den = (float)fmax(sqrt(ss), 1e-12);
            for (int j = 0; j < fd; j++) dst[j] = f[j] / den;
            if (!isfinite(ss)) {
                rc = fail_image(PE_ECORRUPT, name, &keys[b0 + i],
                                ": the encoder gives non-finite features (a broken checkpoint, or a "
                                "--std far too small?)");
                goto out;
            }
        }
        if ((rc = pe_txn_renew(t))) goto out;
        if (err && e->progress) {
            if (name) fprintf(err, "\r%s: features of '%s': %zu/%zu ", e->prog, pe_esc(name), b0 + nb, n);
            else fprintf(err, "\r%s: features: %zu/%zu ", e->prog, b0 + nb, n);
        }
    }
    if (err && e->progress && n) fputc('\n', err);
    if (err) {
        if (name)
            fprintf(err, "%s: '%s': features of %zu images in %.2f s\n", e->prog, pe_esc(name), n,
                    pe_now() - t0);
        else
            fprintf(err, "%s: features of %zu images in %.2f s\n", e->prog, n, pe_now() - t0);
    }
out:
    if (t) pe_txn_abort(t);
    free(x);
    free(hf);
    if (dx) be->free(be, dx);
    return rc;
}

/* ---------------- the cache ---------------- */

/* Fills the features of every set the cache holds exactly (same encoder
 * bytes, same input rule, same entries with the same labels: keys and
 * labels are compared one by one, not only through the fingerprint).
 * *complete: the file holds these sets and no others, so it needs no
 * rewrite. A cache that cannot be read is reported and ignored. */
static int cache_load(const pe_eval_opts *o, const pe_encoder *e, eset *sets, size_t ns, int fd,
                      FILE *err, int *complete) {
    pe_st *f = NULL;
    *complete = 0;
    int rc = pe_st_read_file(&f, o->cache);
    if (rc == ENOENT) return 0;
    if (rc) {
        fprintf(err, "%s: ignoring the cache: %s\n", o->prog, pe_esc(pe_errmsg()));
        return 0;
    }
    const char *fmt = pe_st_meta(f, "format"), *h = pe_st_meta(f, "encoder_xxh3");
    const char *rule = pe_st_meta(f, "input"), *cnt = pe_st_meta(f, "sets");
    size_t nfile = 0, found = 0;
    char k[64], *end;
    if (!fmt || strcmp(fmt, CACHE_FORMAT)) {
        fprintf(err, "%s: %s: not a pe-eval cache; it will be replaced\n", o->prog, pe_esc(o->cache));
        goto out;
    }
    if (!h || strcmp(h, e->hash) || !rule || strcmp(rule, e->rule) || !cnt) goto out;
    nfile = strtoul(cnt, &end, 10);
    if (*end || nfile > pe_st_meta_count(f)) goto out; /* each set has metadata */
    for (size_t si = 0; si < ns; si++) {
        eset *s = &sets[si];
        if (s->cached) continue;
        for (size_t i = 0; i < nfile; i++) {
            snprintf(k, sizeof k, "set.%zu.fingerprint", i);
            const char *fp = pe_st_meta(f, k);
            snprintf(k, sizeof k, "set.%zu.n_distinct", i);
            const char *nd = pe_st_meta(f, k);
            if (!fp || !nd || strcmp(fp, s->fp) || strtoull(nd, &end, 10) != s->n || *end) continue;
            snprintf(k, sizeof k, "set.%zu.keys", i);
            const pe_st_tensor *tk = pe_st_get(f, k);
            snprintf(k, sizeof k, "set.%zu.labels", i);
            const pe_st_tensor *tl = pe_st_get(f, k);
            snprintf(k, sizeof k, "set.%zu.features", i);
            const pe_st_tensor *tf = pe_st_get(f, k);
            if (!tk || tk->dtype != PE_ST_U8 || tk->ndim != 2 || tk->shape[0] != s->n ||
                tk->shape[1] != PE_KEY_LEN || !tl || tl->dtype != PE_ST_I32 || tl->ndim != 1 ||
                tl->shape[0] != s->n || !tf || tf->dtype != PE_ST_F32 || tf->ndim != 2 ||
                tf->shape[0] != s->n || tf->shape[1] != (size_t)fd)
                continue;
            int same = s->n == 0 || !memcmp(tk->data, s->keys, s->n * PE_KEY_LEN);
            for (size_t j = 0; same && j < s->n; j++) {
                const uint8_t *b = tl->data + 4 * j;
                uint32_t v = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
                same = (int32_t)v == s->labels[j];
            }
            if (!same) continue;
            float *feat = malloc((s->n ? s->n : 1) * (size_t)fd * sizeof *feat);
            if (!feat) { rc = ENOMEM; goto out; }
            if (s->n && pe_st_to_f32(tf, feat, s->n * (size_t)fd)) { free(feat); continue; }
            for (size_t j = 0; same && j < s->n * (size_t)fd; j++) same = isfinite(feat[j]);
            if (!same) { free(feat); continue; }
            s->feat = feat;
            s->cached = 1;
            found++;
            if (!o->quiet)
                fprintf(err, "%s: '%s': features of %zu images cached in %s\n", o->prog,
                        pe_esc(s->name), s->n, pe_esc(o->cache));
            break;
        }
    }
    *complete = found == ns && nfile == ns;
out:
    pe_st_close(f);
    return rc;
}

static int cache_write(const pe_eval_opts *o, const pe_encoder *e, eset *sets, size_t ns, int fd) {
    pe_st_writer *w = NULL;
    char k[64], v[1024];
    int rc = pe_st_writer_open(&w);
    for (size_t i = 0; !rc && i < ns; i++) {
        const eset *s = &sets[i];
        size_t shk[2] = {s->n, PE_KEY_LEN}, shl[1] = {s->n}, shf[2] = {s->n, (size_t)fd};
        snprintf(k, sizeof k, "set.%zu.keys", i);
        if ((rc = pe_st_writer_add(w, k, PE_ST_U8, 2, shk, s->n ? (const void *)s->keys : NULL))) break;
        snprintf(k, sizeof k, "set.%zu.labels", i);
        if ((rc = pe_st_writer_add(w, k, PE_ST_I32, 1, shl, s->n ? (const void *)s->labels : NULL))) break;
        snprintf(k, sizeof k, "set.%zu.features", i);
        if ((rc = pe_st_writer_add(w, k, PE_ST_F32, 2, shf, s->n ? (const void *)s->feat : NULL))) break;
        /* the name is informational (matching is by entries); escaped, so
         * that any name makes valid UTF-8 */
        snprintf(k, sizeof k, "set.%zu.name", i);
        pe_escape(v, sizeof v, s->name, strlen(s->name), PE_ESC_TEXT);
        if ((rc = pe_st_writer_meta(w, k, v))) break;
        snprintf(k, sizeof k, "set.%zu.n_distinct", i);
        snprintf(v, sizeof v, "%zu", s->n);
        if ((rc = pe_st_writer_meta(w, k, v))) break;
        snprintf(k, sizeof k, "set.%zu.fingerprint", i);
        rc = pe_st_writer_meta(w, k, s->fp);
    }
    snprintf(v, sizeof v, "%zu", ns);
    if (!rc && !(rc = pe_st_writer_meta(w, "format", CACHE_FORMAT)) &&
        !(rc = pe_st_writer_meta(w, "encoder_xxh3", e->hash)) &&
        !(rc = pe_st_writer_meta(w, "input", e->rule)) && !(rc = pe_st_writer_meta(w, "sets", v)))
        rc = pe_st_write_file(w, o->cache);
    pe_st_writer_close(w);
    return rc;
}

/* ---------------- the probes ---------------- */

typedef struct progress_ctx {
    const pe_eval_opts *o;
    FILE *err;
    size_t task;
} progress_ctx;

static void probe_progress(void *vctx, int done, int total, double loss) {
    const progress_ctx *c = vctx;
    fprintf(c->err, "\r%s: task %zu: %s probe %s %d/%d loss %.6f ", c->o->prog, c->task + 1,
            pe_probe_kind_name(c->o->probe.kind),
            c->o->probe.kind == PE_PROBE_LINEAR ? "iteration" : "epoch", done, total, loss);
}

static int run_task(etask *t, size_t ti, const pe_eval_opts *o, pe_backend *be, int fd,
                    FILE *err) {
    pe_probe *p = NULL;
    float *str = NULL, *ste = NULL, *means = NULL;
    size_t k = (size_t)t->k;
    pe_probe_opts po = o->probe;
    progress_ctx pc = {o, err, ti};
    if (o->progress && !o->quiet) {
        po.progress = probe_progress;
        po.progress_ctx = &pc;
    }
    int rc = pe_probe_train(&p, &po, be, t->tr->feat, t->ytr, t->tr->n, fd, t->k, &t->ps);
    if (po.progress && t->ps.iters) fputc('\n', err);
    if (rc) return rc;
    str = malloc(t->tr->n * k * sizeof *str);
    ste = malloc((t->te->n ? t->te->n : 1) * k * sizeof *ste);
    means = malloc(k * (size_t)fd * sizeof *means);
    t->res = malloc((t->nt ? t->nt : 1) * sizeof *t->res);
    t->pred = malloc((t->te->n ? t->te->n : 1) * sizeof *t->pred);
    if (!str || !ste || !means || !t->res || !t->pred) { rc = ENOMEM; goto out; }
    if ((rc = pe_probe_scores(p, t->tr->feat, t->tr->n, str)) ||
        (rc = pe_probe_scores(p, t->te->feat, t->te->n, ste)) ||
        (rc = pe_class_means(t->tr->feat, t->ytr, t->tr->n, fd, t->k, means)))
        goto out;
    t->train_correct = 0;
    for (size_t i = 0; i < t->tr->n; i++) t->train_correct += pe_argmax(str + i * k, t->k) == t->ytr[i];
    for (size_t i = 0; i < t->te->n; i++) t->pred[i] = pe_argmax(ste + i * k, t->k);
    rc = pe_attack_eval(ste, t->te->feat, t->yte, t->te->n, fd, t->k, means, t->t, t->nt, t->res,
                        &t->sum);
out:
    pe_probe_free(p);
    free(str);
    free(ste);
    free(means);
    return rc;
}

/* KEY<TAB>TRUE<TAB>PREDICTED (task class ids) per test image, task after
 * task, each in key order; into a temporary file renamed over path, so a
 * reader never sees half of it. */
static int write_predictions(const char *path, const etask *tasks, size_t ntasks) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return ENOMEM;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wx");
    int rc = 0;
    if (!f) {
        rc = pe_fail(errno, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    for (size_t ti = 0; ti < ntasks; ti++) {
        const etask *t = &tasks[ti];
        for (size_t i = 0; i < t->te->n; i++) {
            char hx[PE_KEY_HEX + 1];
            pe_key_to_hex(&t->te->keys[i], hx);
            fprintf(f, "%s\t%d\t%d\n", hx, (int)t->yte[i], (int)t->pred[i]);
        }
    }
    if (ferror(f)) rc = pe_fail(EIO, "%s: write error", tmp);
    if (fclose(f) && !rc) rc = pe_fail(errno, "%s: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path)) rc = pe_fail(errno, "%s: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

/* ---------------- the report ---------------- */

static void put_esc(FILE *f, const char *s, pe_esc_ctx c) { pe_escape_fput(f, s, strlen(s), c); }

/* A class as text: its escaped name, or its id when unnamed. malloc'd. */
static char *class_text(const etask *t, int32_t c) {
    const char *nm = c >= 0 && c < t->k ? t->names[c] : NULL;
    if (!nm) {
        char *s = malloc(16);
        if (s) snprintf(s, 16, "%d", (int)c);
        return s;
    }
    size_t n = pe_escape(NULL, 0, nm, strlen(nm), PE_ESC_TEXT);
    char *s = malloc(n + 1);
    if (s) pe_escape(s, n + 1, nm, strlen(nm), PE_ESC_TEXT);
    return s;
}

static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

static void json_class(FILE *f, const etask *t, const char *field, int32_t c) {
    fprintf(f, ",\"%s\":%d", field, (int)c);
    if (c >= 0 && c < t->k && t->names[c]) {
        fprintf(f, ",\"%s_class\":\"", field);
        put_esc(f, t->names[c], PE_ESC_JSON);
        fputc('"', f);
    }
}

static void report_json(FILE *f, const etask *t, size_t ti, const pe_eval_opts *o) {
    const pe_probe_opts *po = &o->probe;
    fprintf(f, "{\"type\":\"task\",\"task\":%zu,\"train\":\"", ti + 1);
    put_esc(f, t->tr->name, PE_ESC_JSON);
    fputs("\",\"test\":\"", f);
    put_esc(f, t->te->name, PE_ESC_JSON);
    fprintf(f, "\",\"train_images\":%zu,\"test_images\":%zu,\"classes\":%d,\"probe\":\"%s\"",
            t->tr->n, t->te->n, t->k, pe_probe_kind_name(po->kind));
    if (po->kind == PE_PROBE_LINEAR) {
        fprintf(f, ",\"l2\":%.9g,\"iterations\":%d,\"max_iterations\":%d,\"memory\":%d,\"loss\":",
                po->l2, t->ps.iters, po->iters, po->memory);
        json_num(f, t->ps.loss);
        fputs(",\"gradient_norm\":", f);
        json_num(f, t->ps.gnorm);
    } else {
        fprintf(f, ",\"epochs\":%d,\"lr\":%.9g,\"batch\":%d,\"hidden\":[%d,%d],\"dropout\":%.9g,"
                "\"shuffle\":%s,\"seed\":%" PRIu64 ",\"loss\":",
                t->ps.iters, po->lr, po->batch, po->hidden[0], po->hidden[1], (double)po->dropout,
                po->shuffle ? "true" : "false", po->seed);
        json_num(f, t->ps.loss);
    }
    fprintf(f, ",\"train_correct\":%" PRIu64 ",\"train_accuracy\":", t->train_correct);
    json_num(f, (double)t->train_correct / (double)t->tr->n);
    fprintf(f, ",\"clean_images\":%" PRIu64 ",\"clean_correct\":%" PRIu64 ",\"clean_accuracy\":",
            t->sum.clean, t->sum.clean_correct);
    json_num(f, t->sum.ca);
    fprintf(f, ",\"targets\":%" PRIu64 ",\"successes\":%" PRIu64 ",\"asr\":", t->sum.targets,
            t->sum.hits);
    json_num(f, t->sum.asr);
    fputs(",\"asr_lo\":", f);
    json_num(f, t->sum.asr_lo);
    fputs(",\"asr_hi\":", f);
    json_num(f, t->sum.asr_hi);
    fputs("}\n", f);
    for (size_t i = 0; i < t->nt; i++) {
        const pe_target_result *r = &t->res[i];
        char hx[PE_KEY_HEX + 1];
        pe_key_to_hex(&t->te->keys[t->t[i].row], hx);
        fprintf(f, "{\"type\":\"target\",\"task\":%zu,\"key\":\"%s\",\"line\":%lu", ti + 1, hx,
                t->tline[i]);
        json_class(f, t, "true", r->truth);
        json_class(f, t, "target", r->target);
        json_class(f, t, "predicted", r->pred);
        fprintf(f, ",\"success\":%s,\"rank\":%d,\"cos_true\":", r->pred == r->target ? "true" : "false",
                r->rank);
        json_num(f, r->cos_true);
        fputs(",\"cos_target\":", f);
        json_num(f, r->cos_target);
        fputs("}\n", f);
    }
}

static void fmt_cos(char *b, size_t n, double v) {
    if (isfinite(v)) snprintf(b, n, "%.4f", v);
    else snprintf(b, n, "-");
}

static int report_text(FILE *f, const etask *t, size_t ti, const pe_eval_opts *o, int fd) {
    const pe_probe_opts *po = &o->probe;
    const pe_probe_stats *ps = &t->ps;
    if (ti) fputc('\n', f);
    fprintf(f, "task %zu: train '", ti + 1);
    put_esc(f, t->tr->name, PE_ESC_TEXT);
    fprintf(f, "' (%zu images), test '", t->tr->n);
    put_esc(f, t->te->name, PE_ESC_TEXT);
    fprintf(f, "' (%zu images), %d classes\n", t->te->n, t->k);
    if (po->kind == PE_PROBE_LINEAR)
        fprintf(f, "  probe           linear: l2 %g, %d of %d L-BFGS iterations (memory %d)%s, "
                "loss %.6f, gradient norm %.3g\n",
                po->l2, ps->iters, po->iters, po->memory,
                ps->iters < po->iters ? (ps->stalled ? ", stopped: no step lowered the loss"
                                                     : ", stopped: gradient norm below 1e-6")
                                      : "",
                ps->loss, ps->gnorm);
    else
        fprintf(f, "  probe           mlp: %d-%d-%d-%d, dropout %g, Adam lr %g, batch %d, %d epochs, "
                "%s, seed %" PRIu64 ", last epoch loss %.6f\n",
                fd, po->hidden[0],
                po->hidden[1], t->k, (double)po->dropout, po->lr, po->batch, ps->iters,
                po->shuffle ? "shuffled" : "in key order", po->seed, ps->loss);
    fprintf(f, "  train accuracy  %.4f (%" PRIu64 " of %zu)\n",
            (double)t->train_correct / (double)t->tr->n, t->train_correct, t->tr->n);
    if (t->sum.clean)
        fprintf(f, "  clean accuracy  %.4f (%" PRIu64 " of %" PRIu64 "%s)\n", t->sum.ca,
                t->sum.clean_correct, t->sum.clean, t->nt ? ", targets excluded" : "");
    else
        fputs("  clean accuracy  - (no test images besides the targets)\n", f);
    if (!t->nt) {
        fputs("  attack success  - (no targets)\n", f);
        return 0;
    }
    fprintf(f, "  attack success  %.4f (%" PRIu64 " of %" PRIu64
            "; 95%% Wilson interval %.4f to %.4f)\n",
            t->sum.asr, t->sum.hits, t->sum.targets, t->sum.asr_lo, t->sum.asr_hi);
    /* the target table, columns as wide as their widest cell */
    size_t nc = 3 * t->nt;
    char **cells = calloc(nc ? nc : 1, sizeof *cells);
    if (!cells) return ENOMEM;
    int w[3] = {4, 6, 9}, rc = 0;
    for (size_t i = 0; i < t->nt; i++) {
        const pe_target_result *r = &t->res[i];
        int32_t c3[3] = {r->truth, r->target, r->pred};
        for (int j = 0; j < 3; j++) {
            if (!(cells[3 * i + j] = class_text(t, c3[j]))) { rc = ENOMEM; goto out; }
            int len = (int)strlen(cells[3 * i + j]);
            if (len > w[j]) w[j] = len;
        }
    }
    fprintf(f, "  %-32s  %-*s  %-*s  %-*s  rank  cos_true  cos_target\n", "key", w[0], "true",
            w[1], "target", w[2], "predicted");
    for (size_t i = 0; i < t->nt; i++) {
        const pe_target_result *r = &t->res[i];
        char hx[PE_KEY_HEX + 1], ct[32], cg[32];
        pe_key_to_hex(&t->te->keys[t->t[i].row], hx);
        fmt_cos(ct, sizeof ct, r->cos_true);
        fmt_cos(cg, sizeof cg, r->cos_target);
        fprintf(f, "  %s  %-*s  %-*s  %-*s  %4d  %8s  %10s\n", hx, w[0], cells[3 * i], w[1],
                cells[3 * i + 1], w[2], cells[3 * i + 2], r->rank, ct, cg);
    }
out:
    for (size_t i = 0; i < nc; i++) free(cells[i]);
    free(cells);
    return rc;
}

/* ---------------- the run ---------------- */

/* Fails now, not after the features and probes, when path's folder cannot
 * take the file. */
static int check_writable(const char *path, const char *what) {
    size_t n = strlen(path) + 1;
    char *dir = malloc(n);
    if (!dir) return ENOMEM;
    memcpy(dir, path, n);
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir] = 0; /* "/x" keeps "/" */
    int rc = 0;
    if (access(slash ? dir : ".", W_OK) != 0)
        rc = pe_fail(errno, "%s %s: cannot write into its folder: %s", what, path, strerror(errno));
    free(dir);
    return rc;
}

int pe_eval_run(pe_store *st, const pe_eval_opts *o, FILE *in, FILE *out, FILE *err) {
    eset *sets = NULL;
    etask *tasks = NULL;
    size_t ns = 0;
    pe_txn *t = NULL;
    pe_encoder *e = NULL;
    int rc = 0, complete = 0;
    if (!o->enc.path || !o->ntasks) return pe_fail(PE_EUSAGE, "no encoder or no task");
    if (o->enc.batch < 1 || o->enc.batch > 65536)
        return pe_fail(PE_EUSAGE, "batch %d out of range", o->enc.batch);
    if ((o->cache && (rc = check_writable(o->cache, "cache"))) ||
        (o->predictions && (rc = check_writable(o->predictions, "predictions"))))
        return rc;
    sets = calloc(2 * o->ntasks, sizeof *sets);
    tasks = calloc(o->ntasks, sizeof *tasks);
    if (!sets || !tasks) { rc = ENOMEM; goto out; }

    /* the sets (each once, however many tasks name it) and the targets */
    if ((rc = pe_txn_begin(st, 0, &t))) goto out;
    for (size_t i = 0; i < o->ntasks; i++) {
        const char *nm[2] = {o->tasks[i].train, o->tasks[i].test};
        eset *p[2];
        for (int j = 0; j < 2; j++) {
            size_t s = 0;
            while (s < ns && strcmp(sets[s].name, nm[j])) s++;
            if (s == ns) {
                sets[ns].name = nm[j];
                if ((rc = eset_load(t, &sets[ns++]))) goto out;
            }
            p[j] = &sets[s];
        }
        tasks[i].tr = p[0];
        tasks[i].te = p[1];
        if ((rc = etask_map(&tasks[i], i))) goto out;
    }
    pe_txn_abort(t);
    t = NULL;
    if ((rc = read_targets(o, tasks, in))) goto out;

    /* the encoder, and the features the cache does not hold */
    pe_encoder_opts eo = o->enc;
    eo.prog = o->prog;
    eo.progress = o->progress && !o->quiet;
    if ((rc = pe_encoder_open(&e, &eo, o->threads))) goto out;
    pe_backend *be = pe_encoder_backend(e);
    int fd = pe_encoder_dim(e);
    if (o->cache && (rc = cache_load(o, e, sets, ns, fd, err, &complete))) goto out;
    for (size_t i = 0; i < ns; i++) {
        eset *s = &sets[i];
        if (s->cached) continue;
        if (!(s->feat = malloc((s->n ? s->n : 1) * (size_t)fd * sizeof *s->feat))) {
            rc = pe_fail(ENOMEM, "set '%s': not enough memory for its features", s->name);
            goto out;
        }
        if ((rc = pe_encoder_features(e, st, s->keys, s->n, s->name, s->feat, o->quiet ? NULL : err)))
            goto out;
    }

    for (size_t i = 0; i < o->ntasks; i++) {
        double t0 = pe_now();
        if ((rc = run_task(&tasks[i], i, o, be, fd, err))) {
            rc = pe_fail_prefix(rc, "task %zu", i + 1);
            goto out;
        }
        if (!o->quiet)
            fprintf(err, "%s: task %zu: %s probe trained and applied in %.2f s\n", o->prog, i + 1,
                    pe_probe_kind_name(o->probe.kind), pe_now() - t0);
    }
    if (o->cache && !complete) {
        if ((rc = cache_write(o, e, sets, ns, fd))) goto out;
        if (!o->quiet) fprintf(err, "%s: features written to the cache %s\n", o->prog, pe_esc(o->cache));
    }
    if (o->predictions && (rc = write_predictions(o->predictions, tasks, o->ntasks))) goto out;
    for (size_t i = 0; i < o->ntasks && !rc; i++) {
        if (o->json) report_json(out, &tasks[i], i, o);
        else rc = report_text(out, &tasks[i], i, o, fd);
    }
out:
    if (t) pe_txn_abort(t);
    pe_encoder_close(e);
    for (size_t i = 0; tasks && i < o->ntasks; i++) etask_free(&tasks[i]);
    for (size_t i = 0; sets && i < ns; i++) eset_free(&sets[i]);
    free(tasks);
    free(sets);
    return rc;
}
