/*
 * train.c - the training loop (see train.h): SimCLR, or MoCo v2 with its
 * key encoder and queue; with its in-run defenses: --init (fine-tune an
 * existing encoder), the localized crop (augment.c draws it; the loader
 * only passes the options on), --stop-plateau (early stopping on the
 * kNN monitor) and --dp-clip (DP-SGD on groups of images, pe_dp_*).
 *
 * One loader thread reads records from LMDB and augments the next batch's
 * two views while the compute threads (the backend's pool) run the current
 * one; the two alternate over a double buffer. Every random choice comes
 * from counter-based streams keyed by (seed, epoch, occurrence, view) and
 * the epoch order from (seed, epoch), so a run does not depend on thread
 * timing, and resuming at an epoch boundary continues the same run.
 *
 * Not for: kernels, the graph, pixel math, option parsing.
 */
#include "train.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "dp.h"
#include "escape.h"
#include "pe.h"
#include "rng.h"
#include "safetensors.h"

#define CKPT_FORMAT "pe-train-1"

void pe_train_opts_default(pe_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->arch = PE_ARCH_SMALL;
    o->width = 1.0;
    o->size = 32;
    o->epochs = 1;
    o->batch = 256;
    o->optim = PE_OPT_ADAM;
    o->lr = 1e-3;
    o->wd = 1e-6;
    o->momentum = 0.9;
    o->warmup = 0;
    o->temperature = 0.5f;
    o->method = PE_METHOD_SIMCLR;
    o->moco_queue = 4096;
    o->moco_momentum = 0.999;
    o->dp_noise = -1;
    o->dp_delta = 1e-5;
    o->dp_group = 32;
    o->seed = 1;
    o->knn_k = 200;
    o->knn_t = 0.5f;
    pe_aug_opts_default(&o->aug);
    o->prog = "pe-train";
}

/* ---------------- the data ---------------- */
typedef struct dataset {
    pe_key *keys;
    uint32_t *counts;
    int32_t *labels;
    size_t n;        /* distinct images */
    uint32_t *occ;   /* occurrence -> image index (counts expanded) */
    size_t nocc;
    uint32_t channels;
    int nclasses;    /* 1 + largest label, 0 when unlabeled */
    char fingerprint[17];
} dataset;

static void dataset_free(dataset *d) {
    free(d->keys);
    free(d->counts);
    free(d->labels);
    free(d->occ);
    memset(d, 0, sizeof *d);
}

static int dataset_load(pe_txn *t, const char *set, dataset *d) {
    pe_set_iter *it = NULL;
    pe_set_entry e;
    size_t cap = 0;
    int rc = pe_set_iter_open(t, set, 0, &it);
    if (rc) return rc;
    XXH64_state_t h;
    XXH64_reset(&h, 0);
    while ((rc = pe_set_iter_next(it, &e)) == 1) {
        if (d->n == cap) {
            cap = cap ? cap * 2 : 1024;
            pe_key *k = realloc(d->keys, cap * sizeof *k);
            uint32_t *c = k ? realloc(d->counts, cap * sizeof *c) : NULL;
            int32_t *l = c ? realloc(d->labels, cap * sizeof *l) : NULL;
            if (k) d->keys = k;
            if (c) d->counts = c;
            if (l) d->labels = l;
            if (!k || !c || !l) { rc = ENOMEM; goto out; }
        }
        d->keys[d->n] = e.key;
        d->counts[d->n] = e.count;
        d->labels[d->n] = e.label;
        if (e.label + 1 > d->nclasses) d->nclasses = e.label + 1;
        d->nocc += e.count;
        XXH64_update(&h, e.key.b, PE_KEY_LEN);
        XXH64_update(&h, &e.count, sizeof e.count);
        d->n++;
    }
    if (rc < 0 || rc > 1) goto out;
    rc = 0;
    snprintf(d->fingerprint, sizeof d->fingerprint, "%016llx",
             (unsigned long long)XXH64_digest(&h));
    if (d->nocc > UINT32_MAX) {
        rc = pe_fail(PE_ETOOBIG, "set '%s' has over 2^32 occurrences", set);
        goto out;
    }
    if (!(d->occ = malloc((d->nocc ? d->nocc : 1) * sizeof *d->occ))) { rc = ENOMEM; goto out; }
    for (size_t i = 0, o = 0; i < d->n; i++)
        for (uint32_t c = 0; c < d->counts[i]; c++) d->occ[o++] = (uint32_t)i;
    if (d->n) {
        pe_img_hdr hdr;
        if ((rc = pe_img_stat(t, &d->keys[0], &hdr))) goto out;
        d->channels = hdr.c;
    }
out:
    pe_set_iter_close(it);
    return rc;
}

/* Per-channel mean and std of the pixels (/255) over every occurrence. */
static int dataset_norm(pe_txn *t, const dataset *d, float *mean, float *std) {
    double s[3] = {0}, s2[3] = {0}, n = 0;
    for (size_t i = 0; i < d->n; i++) {
        pe_image im = {0};
        int rc = pe_img_get(t, &d->keys[i], &im);
        if (rc) return rc;
        size_t px = (size_t)im.w * im.h;
        for (uint32_t c = 0; c < im.c && c < 3; c++) {
            double a = 0, b = 0;
            for (size_t j = 0; j < px; j++) {
                double v = im.px[j * im.c + c] / 255.0;
                a += v;
                b += v * v;
            }
            s[c] += a * d->counts[i];
            s2[c] += b * d->counts[i];
        }
        n += (double)px * d->counts[i];
        pe_image_free(&im);
    }
    for (int c = 0; c < 3; c++) {
        double m = n ? s[c] / n : 0, v = n ? s2[c] / n - m * m : 1;
        mean[c] = (float)m;
        std[c] = (float)(v > 1e-12 ? sqrt(v) : 1.0);
    }
    if (d->channels == 1) /* a gray image replicated to RGB has equal channels */
        for (int c = 1; c < 3; c++) {
            mean[c] = mean[0];
            std[c] = std[0];
        }
    return 0;
}

/* ---------------- the loader ---------------- */
typedef struct loader {
    pe_store *st;
    const dataset *d;
    const pe_aug_opts *aug;
    uint64_t seed;
    int B, C, S;
    int world, rank;      /* batch b of this rank is batch b world + rank */
    size_t view_n;        /* C * S * S */
    uint32_t *order;      /* epoch order of occurrences */
    uint64_t epoch;
    size_t nbatches, next; /* batches of this epoch; next to produce */
    float *buf[2];        /* (2B, C, S, S) each (host augmentation) */
    /* device augmentation (jobs != NULL): each slot holds the 2B views'
     * jobs and the batch's source images, and the backend renders them */
    pe_aug_job *jobs[2];  /* (2B) each */
    uint8_t *px[2];       /* the batch's images, one after another */
    size_t px_len[2], px_cap[2];
    long filled[2];       /* batch index held, or -1 */
    int stop, rc;
    char msg[1024];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int running;
} loader;

/* Appends image im to slot's pixel buffer and draws its two views' jobs
 * (device augmentation). */
static int queue_views(loader *l, int slot, const pe_image *im, size_t occ, int i) {
    const size_t n = pe_image_size(im);
    if (l->px_len[slot] + n > l->px_cap[slot]) {
        size_t cap = 2 * (l->px_len[slot] + n);
        uint8_t *p = realloc(l->px[slot], cap);
        if (!p) return pe_fail(ENOMEM, "out of memory for a batch's images (%zu bytes)", cap);
        l->px[slot] = p;
        l->px_cap[slot] = cap;
    }
    const uint64_t offset = l->px_len[slot];
    memcpy(l->px[slot] + offset, im->px, n);
    l->px_len[slot] += n;
    for (uint32_t v = 0; v < 2; v++) {
        pe_aug_params p;
        int rc = pe_aug_draw_view(l->seed, l->epoch, occ, v, im->w, im->h, l->aug, &p, NULL);
        if (rc) return rc;
        pe_aug_job_of(&p, im->w, im->h, im->c, offset, &l->jobs[slot][(size_t)v * l->B + i]);
    }
    return 0;
}

static int load_batch(loader *l, pe_txn *t, size_t b, int slot, pe_aug_scratch *sc) {
    float *x = l->buf[slot];
    l->px_len[slot] = 0;
    const size_t gb = b * (size_t)l->world + (size_t)l->rank;
    for (int i = 0; i < l->B; i++) {
        size_t occ = l->order[gb * (size_t)l->B + (size_t)i];
        const pe_key *key = &l->d->keys[l->d->occ[occ]];
        pe_image im = {0};
        int rc = pe_img_get(t, key, &im);
        if (rc) return rc;
        if (im.c != l->d->channels) {
            char hx[PE_KEY_HEX + 1];
            uint32_t c = im.c;
            pe_key_to_hex(key, hx);
            pe_image_free(&im);
            return pe_fail(PE_EFORMAT, "image %s has %u channels, the set's first image %u",
                           hx, c, l->d->channels);
        }
        if (l->jobs[0])
            rc = queue_views(l, slot, &im, occ, i);
        else
            for (uint32_t v = 0; v < 2 && !rc; v++)
                rc = pe_augment_view(&im, l->aug, l->seed, l->epoch, occ, v,
                                     x + ((size_t)v * l->B + (size_t)i) * l->view_n, sc);
        pe_image_free(&im);
        if (rc) return rc;
    }
    return 0;
}

static void *loader_main(void *arg) {
    loader *l = arg;
    pe_txn *t = NULL;
    pe_aug_scratch sc = {0};
    int rc = pe_txn_begin(l->st, 0, &t);
    pthread_mutex_lock(&l->mu);
    while (!rc && !l->stop && l->next < l->nbatches) {
        int slot = (int)(l->next & 1);
        if (l->filled[slot] >= 0) { /* wait for compute to take it */
            pthread_cond_wait(&l->cv, &l->mu);
            continue;
        }
        size_t b = l->next;
        pthread_mutex_unlock(&l->mu);
        /* a fresh snapshot each batch, so a concurrent writer can reuse pages */
        rc = pe_txn_renew(t);
        if (!rc) rc = load_batch(l, t, b, slot, &sc);
        pthread_mutex_lock(&l->mu);
        if (!rc) {
            l->filled[slot] = (long)b;
            l->next++;
            pthread_cond_broadcast(&l->cv);
        }
    }
    if (rc) {
        l->rc = rc;
        snprintf(l->msg, sizeof l->msg, "%s", pe_errmsg());
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    if (t) pe_txn_abort(t);
    pe_aug_scratch_free(&sc);
    return NULL;
}

static int loader_start_epoch(loader *l, uint64_t epoch, size_t first_batch) {
    l->epoch = epoch;
    for (size_t i = 0; i < l->d->nocc; i++) l->order[i] = (uint32_t)i;
    pe_rng_shuffle(l->seed, epoch, l->order, l->d->nocc);
    l->next = first_batch;
    l->filled[0] = l->filled[1] = -1;
    l->stop = 0;
    l->rc = 0;
    if (pthread_create(&l->th, NULL, loader_main, l)) return pe_fail(EAGAIN, "cannot start the loader");
    l->running = 1;
    return 0;
}

static void loader_stop(loader *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->th, NULL);
    l->running = 0;
}

/* Waits for batch b; returns its slot, or -1 on a loader error. */
static int loader_get(loader *l, size_t b, double *waited) {
    int slot = (int)(b & 1);
    double t0 = pe_now();
    pthread_mutex_lock(&l->mu);
    while (l->filled[slot] != (long)b && !l->rc) pthread_cond_wait(&l->cv, &l->mu);
    if (l->rc) slot = -1;
    pthread_mutex_unlock(&l->mu);
    *waited += pe_now() - t0;
    return slot;
}

/* Puts batch `slot`'s 2B views into backend memory dx: uploads the
 * host-augmented views, or has the backend render them from the jobs. */
static int loader_views(loader *l, pe_backend *be, int slot, float *dx) {
    if (!l->jobs[0])
        return be->upload(be, dx, l->buf[slot], (size_t)2 * l->B * l->view_n * sizeof(float));
    return be->augment(be, 2 * l->B, l->jobs[slot], l->px[slot], l->px_len[slot], (uint32_t)l->S,
                       (uint32_t)l->C, l->aug->mean, l->aug->std, dx);
}

static void loader_release(loader *l, size_t b) {
    pthread_mutex_lock(&l->mu);
    l->filled[b & 1] = -1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* ---------------- kNN monitor ---------------- */
typedef struct knn_item {
    float sim;
    int32_t label;
} knn_item;

/* Moves the k most similar items to the front (in no particular order):
 * quickselect, O(n) on average instead of sorting the whole bank. Votes
 * are summed over the k, so their order does not matter. */
static void select_top(knn_item *v, size_t n, size_t k) {
    size_t lo = 0, hi = n;
    if (k >= n) return;
    while (hi - lo > 1) {
        float pivot = v[lo + (hi - lo) / 2].sim;
        size_t i = lo, j = hi - 1;
        while (i <= j) {
            while (v[i].sim > pivot) i++;
            while (v[j].sim < pivot) j--;
            if (i <= j) {
                knn_item t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        /* [lo, j] >= pivot >= [i, hi), and (j, i) equal the pivot: narrow
         * to the part that holds position k - 1, the last of the top k */
        if (k - 1 <= j && j < hi) hi = j + 1;
        else if (k - 1 >= i) lo = i;
        else return;
    }
}

static void l2norm_rows(float *x, size_t n, int d) {
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
        float inv = (float)(1.0 / fmax(sqrt(s), 1e-12));
        for (int j = 0; j < d; j++) x[i * d + j] *= inv;
    }
}

double pe_knn_accuracy(const float *bank, const int32_t *bank_labels, size_t nbank,
                       const float *test, const int32_t *test_labels, size_t ntest,
                       int d, int k, float t, int nclasses) {
    float *bn = malloc(nbank * (size_t)d * sizeof *bn), *tn = malloc((size_t)d * sizeof *tn);
    knn_item *items = malloc(nbank * sizeof *items);
    double *votes = calloc((size_t)(nclasses > 0 ? nclasses : 1), sizeof *votes);
    size_t correct = 0, counted = 0;
    if (!bn || !tn || !items || !votes || nbank == 0) goto out;
    memcpy(bn, bank, nbank * (size_t)d * sizeof *bn);
    l2norm_rows(bn, nbank, d);
    if ((size_t)k > nbank) k = (int)nbank;
    for (size_t i = 0; i < ntest; i++) {
        if (test_labels[i] < 0) continue;
        memcpy(tn, test + i * d, (size_t)d * sizeof *tn);
        l2norm_rows(tn, 1, d);
        for (size_t j = 0; j < nbank; j++) {
            float s = 0;
            for (int q = 0; q < d; q++) s += tn[q] * bn[j * d + q];
            items[j] = (knn_item){s, bank_labels[j]};
        }
        select_top(items, nbank, (size_t)k);
        memset(votes, 0, (size_t)nclasses * sizeof *votes);
        for (int j = 0; j < k; j++)
            if (items[j].label >= 0 && items[j].label < nclasses)
                votes[items[j].label] += exp(items[j].sim / t);
        int best = 0;
        for (int c = 1; c < nclasses; c++)
            if (votes[c] > votes[best]) best = c;
        correct += best == test_labels[i];
        counted++;
    }
out:
    free(bn);
    free(tn);
    free(items);
    free(votes);
    return counted ? (double)correct / (double)counted : -1.0;
}

/* Features (eval mode, the whole image resized to size, normalised) of the
 * first `limit` images of a set; labels alongside. */
static int features_of(pe_store *st, pe_model *m, pe_backend *be, const dataset *d,
                       const pe_aug_opts *aug, size_t limit, int n, float **feat,
                       int32_t **labels, size_t *count) {
    int S = pe_model_get_cfg(m)->size, C = pe_model_get_cfg(m)->channels;
    int fd = pe_model_feat_dim(m), rc = 0;
    size_t view = (size_t)C * S * S, total = d->n < limit || !limit ? d->n : limit;
    float *x = malloc((size_t)n * view * sizeof *x);
    float *dx = be->alloc(be, (size_t)n * view * sizeof(float));
    float *out = malloc(total * (size_t)fd * sizeof *out);
    int32_t *lab = malloc(total * sizeof *lab);
    float *hf = malloc((size_t)n * fd * sizeof *hf);
    pe_txn *t = NULL;
    pe_aug_scratch sc = {0};
    if (!x || !dx || !out || !lab || !hf) { rc = ENOMEM; goto out; }
    if ((rc = pe_txn_begin(st, 0, &t))) goto out;
    for (size_t b = 0; b < total; b += (size_t)n) {
        size_t nb = total - b < (size_t)n ? total - b : (size_t)n;
        for (size_t i = 0; i < (size_t)n; i++) {
            size_t src = b + (i < nb ? i : 0); /* pad with the batch's first */
            pe_image im = {0};
            if ((rc = pe_img_get(t, &d->keys[src], &im))) goto out;
            pe_aug_params p = {0};
            p.box = (pe_box){0, 0, im.h, im.w};
            rc = pe_aug_apply(&im, aug, &p, x + i * view, &sc);
            pe_image_free(&im);
            if (rc) goto out;
        }
        if ((rc = be->upload(be, dx, x, (size_t)n * view * sizeof(float))) ||
            (rc = pe_model_forward(m, dx, 0, 0)) ||
            (rc = be->download(be, hf, pe_model_features(m), (size_t)n * fd * sizeof(float))))
            goto out;
        memcpy(out + b * fd, hf, nb * (size_t)fd * sizeof *out);
        for (size_t i = 0; i < nb; i++) lab[b + i] = d->labels[b + i];
        if ((rc = pe_txn_renew(t))) goto out;
    }
    *feat = out;
    *labels = lab;
    *count = total;
    out = NULL;
    lab = NULL;
out:
    if (t) pe_txn_abort(t);
    pe_aug_scratch_free(&sc);
    free(x);
    if (dx) be->free(be, dx);
    free(out);
    free(lab);
    free(hf);
    return rc;
}

/* ---------------- checkpoints ---------------- */
typedef struct trainer {
    const pe_train_opts *o;
    pe_store *st;
    pe_backend *be;
    pe_model *m;
    dataset d;
    float *s1, *s2; /* Adam m and v, or SGD momentum (s1) */
    float *flag;    /* data parallelism: one float for group_agree */
    uint64_t step;
    int epochs_done;
    uint64_t batch_in_epoch; /* batches done of epoch epochs_done (a stop inside it) */
    float mean[3], std[3];
    /* the run's --init provenance (path, XXH3-128 of its bytes, "file" or
     * "fresh" head), from --init or carried over by --resume; owned */
    char *init_meta[3];
    double knn_acc;          /* --stop-plateau: the kNN accuracy of this state */
    /* --method moco (NULL otherwise): the key encoder, the queue (K, D) and
     * the batch's normalised keys (B, D) in backend memory, and the next
     * queue row to overwrite (a multiple of B) */
    pe_model *key;
    float *queue, *kn;
    uint64_t queue_ptr;
    /* --dp-clip (NULL otherwise): the step's workspace, the noise
     * multiplier used and the sampling rate of the accounting */
    pe_dp *dp;
    double dp_sigma, dp_q;
} trainer;

/* Epsilon of the steps done so far (INFINITY without noise), for noise of
 * std sigma C and a sensitivity of PE_DP_SENSITIVITY C per image. */
static double dp_epsilon_now(const trainer *tr) {
    if (tr->step == 0) return 0; /* nothing released yet */
    if (!(tr->dp_sigma > 0)) return INFINITY;
    return pe_dp_epsilon(tr->dp_q, tr->dp_sigma / PE_DP_SENSITIVITY, tr->step,
                         tr->o->dp_delta, NULL);
}

static const char *const init_keys[3] = {"init", "init_xxh3_128", "init_head"};

static int add_meta(pe_st_writer *w, const char *k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int add_meta(pe_st_writer *w, const char *k, const char *fmt, ...) {
    char v[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    return pe_st_writer_meta(w, k, v);
}

/* MoCo's state into w: the key encoder's tensors under "moco.key.", the
 * queue as "moco.queue" (K, D). The host copies it downloads (*kp, *kb,
 * *hq) must outlive the write; the caller frees them. */
static int add_moco(trainer *tr, pe_st_writer *w, float **kp, float **kb, float **hq) {
    pe_model *k = tr->key;
    pe_backend *be = tr->be;
    size_t np = pe_model_nparams(k), nb = pe_model_nbuffers(k);
    size_t K = (size_t)tr->o->moco_queue, D = (size_t)pe_model_get_cfg(k)->head_out;
    int rc = 0;
    *kp = malloc(np * sizeof **kp);
    *kb = malloc((nb ? nb : 1) * sizeof **kb);
    *hq = malloc(K * D * sizeof **hq);
    if (!*kp || !*kb || !*hq) return ENOMEM;
    if ((rc = be->download(be, *kp, pe_model_params(k), np * sizeof(float))) ||
        (rc = be->download(be, *kb, pe_model_buffers(k), nb * sizeof(float))) ||
        (rc = be->download(be, *hq, tr->queue, K * D * sizeof(float))))
        return rc;
    for (int i = 0; i < pe_model_ntensors(k) && !rc; i++) {
        const pe_tensor_info *t = pe_model_tensor(k, i);
        size_t shape[4];
        char name[96];
        for (int j = 0; j < t->ndim; j++) shape[j] = (size_t)t->shape[j];
        snprintf(name, sizeof name, "moco.key.%s", t->name);
        if (t->kind == PE_T_COUNT)
            rc = pe_st_writer_add(w, name, PE_ST_I64, 0, NULL, &pe_model_counts(k)[t->off]);
        else
            rc = pe_st_writer_add(w, name, PE_ST_F32, (size_t)t->ndim, shape,
                                  (t->kind == PE_T_RUNNING ? *kb : *kp) + t->off);
    }
    size_t qshape[2] = {K, D};
    if (!rc) rc = pe_st_writer_add(w, "moco.queue", PE_ST_F32, 2, qshape, *hq);
    return rc;
}

static int save_checkpoint(trainer *tr, const char *path) {
    const pe_train_opts *o = tr->o;
    pe_model *m = tr->m;
    pe_backend *be = tr->be;
    size_t np = pe_model_nparams(m), nb = pe_model_nbuffers(m);
    float *hp = malloc(np * sizeof *hp), *hb = malloc((nb ? nb : 1) * sizeof *hb);
    float *h1 = malloc(np * sizeof *h1), *h2 = o->optim == PE_OPT_ADAM ? malloc(np * sizeof *h2) : NULL;
    float *kp = NULL, *kb = NULL, *hq = NULL; /* MoCo's state, on the host */
    char (*names)[96] = NULL;
    pe_st_writer *w = NULL;
    int rc = 0, nt = pe_model_ntensors(m);
    if (!hp || !hb || !h1 || (o->optim == PE_OPT_ADAM && !h2)) { rc = ENOMEM; goto out; }
    if ((rc = be->download(be, hp, pe_model_params(m), np * sizeof(float))) ||
        (rc = be->download(be, hb, pe_model_buffers(m), nb * sizeof(float))) ||
        (rc = be->download(be, h1, tr->s1, np * sizeof(float))) ||
        (h2 && (rc = be->download(be, h2, tr->s2, np * sizeof(float)))))
        goto out;
    if ((rc = pe_st_writer_open(&w))) goto out;
    names = calloc((size_t)nt * 2, sizeof *names);
    if (!names) { rc = ENOMEM; goto out; }
    int64_t *counts = pe_model_counts(m);
    for (int i = 0; i < nt && !rc; i++) {
        const pe_tensor_info *t = pe_model_tensor(m, i);
        size_t shape[4];
        for (int k = 0; k < t->ndim; k++) shape[k] = (size_t)t->shape[k];
        if (t->kind == PE_T_COUNT) {
            rc = pe_st_writer_add(w, t->name, PE_ST_I64, 0, NULL, &counts[t->off]);
        } else if (t->kind == PE_T_RUNNING) {
            rc = pe_st_writer_add(w, t->name, PE_ST_F32, (size_t)t->ndim, shape, hb + t->off);
        } else {
            rc = pe_st_writer_add(w, t->name, PE_ST_F32, (size_t)t->ndim, shape, hp + t->off);
            if (!rc) {
                snprintf(names[2 * i], sizeof names[0], "optimizer.%s.%s",
                         o->optim == PE_OPT_ADAM ? "exp_avg" : "momentum_buffer", t->name);
                rc = pe_st_writer_add(w, names[2 * i], PE_ST_F32, (size_t)t->ndim, shape, h1 + t->off);
            }
            if (!rc && h2) {
                snprintf(names[2 * i + 1], sizeof names[0], "optimizer.exp_avg_sq.%s", t->name);
                rc = pe_st_writer_add(w, names[2 * i + 1], PE_ST_F32, (size_t)t->ndim, shape, h2 + t->off);
            }
        }
    }
    if (!rc && tr->key) rc = add_moco(tr, w, &kp, &kb, &hq);
    const pe_model_cfg *c = pe_model_get_cfg(m);
    if (rc || (rc = add_meta(w, "format", CKPT_FORMAT)) ||
        (rc = add_meta(w, "arch", "%s", pe_arch_name(c->arch))) ||
        (rc = add_meta(w, "width", "%.17g", c->width)) ||
        (rc = add_meta(w, "channels", "%d", c->channels)) ||
        (rc = add_meta(w, "size", "%d", c->size)) ||
        (rc = add_meta(w, "feature_dim", "%d", pe_model_feat_dim(m))) ||
        (rc = add_meta(w, "head", "%d-%d", c->head_hidden, c->head_out)) ||
        (rc = add_meta(w, "set", "%s", o->set)) ||
        (rc = add_meta(w, "set_fingerprint", "%s", tr->d.fingerprint)) ||
        (rc = add_meta(w, "epochs_done", "%d", tr->epochs_done)) ||
        (rc = add_meta(w, "epoch_batches_done", "%llu", (unsigned long long)tr->batch_in_epoch)) ||
        (rc = add_meta(w, "epochs", "%d", o->epochs)) ||
        (rc = add_meta(w, "step", "%llu", (unsigned long long)tr->step)) ||
        (rc = add_meta(w, "batch", "%d", o->batch)) ||
        (rc = add_meta(w, "seed", "%llu", (unsigned long long)o->seed)) ||
        (rc = add_meta(w, "optimizer", "%s", o->optim == PE_OPT_ADAM ? "adam" : "sgd")) ||
        (rc = add_meta(w, "lr", "%.17g", o->lr)) ||
        (rc = add_meta(w, "weight_decay", "%.17g", o->wd)) ||
        (rc = add_meta(w, "momentum", "%.17g", o->momentum)) ||
        (rc = add_meta(w, "warmup_epochs", "%.17g", o->warmup)) ||
        (rc = add_meta(w, "temperature", "%.9g", (double)o->temperature)) ||
        /* SimCLR checkpoints carry no method entries: they stay as before */
        (tr->key && ((rc = add_meta(w, "method", "moco")) ||
                     (rc = add_meta(w, "moco_queue", "%d", o->moco_queue)) ||
                     (rc = add_meta(w, "moco_momentum", "%.17g", o->moco_momentum)) ||
                     (rc = add_meta(w, "moco_ptr", "%llu", (unsigned long long)tr->queue_ptr)))) ||
        /* so do runs without --dp-clip */
        (tr->dp && ((rc = add_meta(w, "dp_clip", "%.17g", o->dp_clip)) ||
                    (rc = add_meta(w, "dp_noise", "%.17g", tr->dp_sigma)) ||
                    (rc = add_meta(w, "dp_delta", "%.17g", o->dp_delta)) ||
                    (rc = add_meta(w, "dp_group", "%d", o->dp_group)) ||
                    (rc = add_meta(w, "dp_sampling_rate", "%.17g", tr->dp_q)) ||
                    (rc = add_meta(w, "dp_epsilon", "%.6g", dp_epsilon_now(tr))))) ||
        (rc = add_meta(w, "mean", "%.9g,%.9g,%.9g", (double)tr->mean[0], (double)tr->mean[1], (double)tr->mean[2])) ||
        (rc = add_meta(w, "std", "%.9g,%.9g,%.9g", (double)tr->std[0], (double)tr->std[1], (double)tr->std[2])) ||
        (rc = add_meta(w, "crop_scale", "%.9g,%.9g", o->aug.scale[0], o->aug.scale[1])) ||
        (rc = add_meta(w, "crop_ratio", "%.9g,%.9g", o->aug.ratio[0], o->aug.ratio[1])) ||
        (rc = add_meta(w, "jitter", "%.9g,%.9g,%.9g,%.9g", o->aug.brightness, o->aug.contrast,
                       o->aug.saturation, o->aug.hue)) ||
        (rc = add_meta(w, "p_flip_jitter_gray", "%.9g,%.9g,%.9g", o->aug.p_flip, o->aug.p_jitter,
                       o->aug.p_gray)) ||
        (rc = add_meta(w, "crop_mode", "%s",
                       o->aug.crop_mode == PE_CROP_LOCAL ? "local" : "independent")) ||
        (o->aug.crop_mode == PE_CROP_LOCAL &&
         (rc = add_meta(w, "local_scale", "%.9g,%.9g", o->aug.local_scale[0],
                        o->aug.local_scale[1]))) ||
        (o->stop_plateau && (rc = add_meta(w, "stop_plateau", "%d", o->stop_plateau))) ||
        (o->stop_plateau && tr->knn_acc >= 0 &&
         (rc = add_meta(w, "knn_acc", "%.6f", tr->knn_acc))) ||
        (rc = add_meta(w, "threads", "%d", o->threads)))
        goto out;
    for (int i = 0; i < 3 && !rc; i++)
        if (tr->init_meta[i]) rc = pe_st_writer_meta(w, init_keys[i], tr->init_meta[i]);
    if (!rc) rc = pe_st_write_file(w, path);
out:
    pe_st_writer_close(w);
    free(names);
    free(kp);
    free(kb);
    free(hq);
    free(hp);
    free(hb);
    free(h1);
    free(h2);
    return rc;
}

static int meta_num(const pe_st *f, const char *k, double *v) {
    const char *s = pe_st_meta(f, k);
    char *end;
    if (!s) return pe_fail(PE_EFORMAT, "checkpoint lacks '%s'", k);
    *v = strtod(s, &end);
    if (*end) return pe_fail(PE_EFORMAT, "checkpoint '%s' is not a number", k);
    return 0;
}

/* Loads tensors by name (the model's names after prefix) into the model
 * (and optimiser state when s1/s2 are given); every model tensor must be
 * present with its shape. */
static int load_tensors(const pe_st *f, pe_model *m, pe_backend *be, int optim,
                        float *s1, float *s2, const char *path, int skip_head,
                        const char *prefix) {
    size_t np = pe_model_nparams(m), nb = pe_model_nbuffers(m);
    float *hp = malloc(np * sizeof *hp), *hb = malloc((nb ? nb : 1) * sizeof *hb);
    float *h1 = s1 ? malloc(np * sizeof *h1) : NULL, *h2 = s2 ? malloc(np * sizeof *h2) : NULL;
    int rc = 0;
    if (!hp || !hb || (s1 && !h1) || (s2 && !h2)) { rc = ENOMEM; goto out; }
    /* tensors a file may leave out (a skipped head) keep their values */
    if ((rc = be->download(be, hp, pe_model_params(m), np * sizeof(float))) ||
        (rc = be->download(be, hb, pe_model_buffers(m), nb * sizeof(float))))
        goto out;
    for (int i = 0; i < pe_model_ntensors(m) && !rc; i++) {
        const pe_tensor_info *t = pe_model_tensor(m, i);
        if (skip_head && t->head) continue;
        char tn[112];
        snprintf(tn, sizeof tn, "%s%s", prefix, t->name);
        const pe_st_tensor *x = pe_st_get(f, tn);
        if (!x) { rc = pe_fail(PE_EFORMAT, "%s: no tensor '%s' (another architecture?)", path, tn); break; }
        int same = (int)x->ndim == t->ndim && x->numel == t->n;
        for (int k = 0; same && k < t->ndim; k++) same = x->shape[k] == (size_t)t->shape[k];
        if (!same) { rc = pe_fail(PE_EFORMAT, "%s: tensor '%s' has another shape than the model's", path, tn); break; }
        if (t->kind == PE_T_COUNT) {
            if (x->dtype != PE_ST_I64) { rc = pe_fail(PE_EFORMAT, "%s: '%s' is not I64", path, tn); break; }
            int64_t v;
            if (x->nbytes != 8) { rc = pe_fail(PE_EFORMAT, "%s: '%s' is not one I64", path, tn); break; }
            memcpy(&v, x->data, 8);
            pe_model_counts(m)[t->off] = v;
            continue;
        }
        rc = pe_st_to_f32(x, (t->kind == PE_T_RUNNING ? hb : hp) + t->off, t->n);
        if (rc || t->kind != PE_T_PARAM || !s1) continue;
        char nm[112];
        snprintf(nm, sizeof nm, "optimizer.%s.%s", optim == PE_OPT_ADAM ? "exp_avg" : "momentum_buffer", t->name);
        const pe_st_tensor *y = pe_st_get(f, nm);
        if (!y || y->numel != t->n) { rc = pe_fail(PE_EFORMAT, "%s: no optimiser state '%s'", path, nm); break; }
        if ((rc = pe_st_to_f32(y, h1 + t->off, t->n))) break;
        if (s2) {
            snprintf(nm, sizeof nm, "optimizer.exp_avg_sq.%s", t->name);
            y = pe_st_get(f, nm);
            if (!y || y->numel != t->n) { rc = pe_fail(PE_EFORMAT, "%s: no optimiser state '%s'", path, nm); break; }
            rc = pe_st_to_f32(y, h2 + t->off, t->n);
        }
    }
    if (!rc) rc = be->upload(be, pe_model_params(m), hp, np * sizeof(float));
    if (!rc) rc = be->upload(be, pe_model_buffers(m), hb, nb * sizeof(float));
    if (!rc && s1) rc = be->upload(be, s1, h1, np * sizeof(float));
    if (!rc && s2) rc = be->upload(be, s2, h2, np * sizeof(float));
out:
    free(hp);
    free(hb);
    free(h1);
    free(h2);
    return rc;
}

/* MoCo's state from a checkpoint: the key encoder, the queue and its
 * pointer (the options were compared by resume_from). */
static int resume_moco(trainer *tr, const pe_st *f, const char *path) {
    size_t K = (size_t)tr->o->moco_queue, D = (size_t)pe_model_get_cfg(tr->key)->head_out;
    size_t B = (size_t)tr->o->batch;
    double v;
    int rc = meta_num(f, "moco_ptr", &v);
    if (rc) return pe_fail_prefix(rc, "%s", path);
    if (!(v >= 0 && v < (double)K) || v != floor(v) || (uint64_t)v % B)
        return pe_fail(PE_EFORMAT, "%s: moco_ptr %g is not a multiple of the batch below the "
                       "queue's %zu rows", path, v, K);
    tr->queue_ptr = (uint64_t)v;
    const pe_st_tensor *q = pe_st_get(f, "moco.queue");
    if (!q || q->ndim != 2 || q->shape[0] != K || q->shape[1] != D)
        return pe_fail(PE_EFORMAT, "%s: no tensor 'moco.queue' of %zu x %zu", path, K, D);
    float *hq = malloc(K * D * sizeof *hq);
    if (!hq) return ENOMEM;
    if (!(rc = pe_st_to_f32(q, hq, K * D)))
        rc = tr->be->upload(tr->be, tr->queue, hq, K * D * sizeof *hq);
    free(hq);
    if (!rc) rc = load_tensors(f, tr->key, tr->be, 0, NULL, NULL, path, 0, "moco.key.");
    return rc;
}

static int resume_from(trainer *tr, const char *path) {
    const pe_train_opts *o = tr->o;
    pe_st *f = NULL;
    double v;
    int rc = pe_st_read_file(&f, path);
    if (rc) return rc;
    const char *fmt = pe_st_meta(f, "format"), *arch = pe_st_meta(f, "arch");
    const char *fp = pe_st_meta(f, "set_fingerprint"), *opt = pe_st_meta(f, "optimizer");
    const pe_model_cfg *c = pe_model_get_cfg(tr->m);
    if (!fmt || strcmp(fmt, CKPT_FORMAT)) { rc = pe_fail(PE_EFORMAT, "%s: not a pe-train checkpoint", path); goto out; }
    /* the method first: other entries would differ too, but name the cause */
    const char *meth = pe_st_meta(f, "method");
    const char *mine_m = o->method == PE_METHOD_MOCO ? "moco" : "simclr";
    if (!meth) meth = "simclr"; /* checkpoints from before --method */
    if (strcmp(meth, mine_m)) {
        rc = pe_fail(PE_EUSAGE, "%s: a checkpoint of a %s run, and this run's --method is %s: "
                     "a resume continues with the method of the run it resumes", path,
                     meth, mine_m);
        goto out;
    }
    if (!arch || strcmp(arch, pe_arch_name(c->arch))) {
        rc = pe_fail(PE_EFORMAT, "%s: a checkpoint of architecture '%s', not '%s'", path, arch ? arch : "?", pe_arch_name(c->arch));
        goto out;
    }
    if ((rc = meta_num(f, "width", &v))) goto out;
    if (v != c->width) { rc = pe_fail(PE_EFORMAT, "%s: width %g, not %g", path, v, c->width); goto out; }
    if ((rc = meta_num(f, "channels", &v))) goto out;
    if ((int)v != c->channels) { rc = pe_fail(PE_EFORMAT, "%s: %d input channels, not %d", path, (int)v, c->channels); goto out; }
    if ((rc = meta_num(f, "size", &v))) goto out;
    if ((int)v != c->size) { rc = pe_fail(PE_EFORMAT, "%s: size %d, not %d", path, (int)v, c->size); goto out; }
    if (!fp || strcmp(fp, tr->d.fingerprint)) { rc = pe_fail(PE_EFORMAT, "%s: trained on other data (set fingerprint differs)", path); goto out; }
    if (!opt || strcmp(opt, o->optim == PE_OPT_ADAM ? "adam" : "sgd")) { rc = pe_fail(PE_EFORMAT, "%s: optimiser '%s' differs", path, opt ? opt : "?"); goto out; }
    if ((rc = meta_num(f, "batch", &v))) goto out;
    if ((int)v != o->batch) { rc = pe_fail(PE_EFORMAT, "%s: batch %d differs from %d", path, (int)v, o->batch); goto out; }
    if ((rc = meta_num(f, "epochs_done", &v))) goto out;
    tr->epochs_done = (int)v;
    if ((rc = meta_num(f, "epoch_batches_done", &v))) goto out;
    tr->batch_in_epoch = (uint64_t)v;
    /* everything that shapes the run must be the same, or it is another run */
    static const char *same[][2] = {{"lr", NULL}, {"weight_decay", NULL}, {"momentum", NULL},
                                    {"warmup_epochs", NULL}, {"temperature", NULL},
                                    {"crop_scale", NULL}, {"crop_ratio", NULL},
                                    {"jitter", NULL}, {"p_flip_jitter_gray", NULL},
                                    {"crop_mode", "independent"}, {"local_scale", ""},
                                    {"moco_queue", ""}, {"moco_momentum", ""},
                                    {"dp_clip", ""}, {"dp_noise", ""}, {"dp_delta", ""},
                                    {"dp_group", ""}};
    enum { NSAME = sizeof same / sizeof same[0] };
    char mine[NSAME][128];
    snprintf(mine[0], 128, "%.17g", o->lr);
    snprintf(mine[1], 128, "%.17g", o->wd);
    snprintf(mine[2], 128, "%.17g", o->momentum);
    snprintf(mine[3], 128, "%.17g", o->warmup);
    snprintf(mine[4], 128, "%.9g", (double)o->temperature);
    snprintf(mine[5], 128, "%.9g,%.9g", o->aug.scale[0], o->aug.scale[1]);
    snprintf(mine[6], 128, "%.9g,%.9g", o->aug.ratio[0], o->aug.ratio[1]);
    snprintf(mine[7], 128, "%.9g,%.9g,%.9g,%.9g", o->aug.brightness, o->aug.contrast,
             o->aug.saturation, o->aug.hue);
    snprintf(mine[8], 128, "%.9g,%.9g,%.9g", o->aug.p_flip, o->aug.p_jitter, o->aug.p_gray);
    /* checkpoints from before localized cropping lack these: independent */
    snprintf(mine[9], 128, "%s", o->aug.crop_mode == PE_CROP_LOCAL ? "local" : "independent");
    if (o->aug.crop_mode == PE_CROP_LOCAL)
        snprintf(mine[10], 128, "%.9g,%.9g", o->aug.local_scale[0], o->aug.local_scale[1]);
    else
        mine[10][0] = 0;
    mine[11][0] = mine[12][0] = 0; /* SimCLR checkpoints have neither */
    if (o->method == PE_METHOD_MOCO) {
        snprintf(mine[11], 128, "%d", o->moco_queue);
        snprintf(mine[12], 128, "%.17g", o->moco_momentum);
    }
    mine[13][0] = mine[14][0] = mine[15][0] = mine[16][0] = 0; /* no DP: none */
    if (tr->dp) {
        snprintf(mine[13], 128, "%.17g", o->dp_clip);
        snprintf(mine[14], 128, "%.17g", tr->dp_sigma);
        snprintf(mine[15], 128, "%.17g", o->dp_delta);
        snprintf(mine[16], 128, "%d", o->dp_group);
    }
    for (int i = 0; i < NSAME; i++) {
        const char *theirs = pe_st_meta(f, same[i][0]);
        if (!theirs) theirs = same[i][1];
        if (!theirs || strcmp(theirs, mine[i])) {
            rc = pe_fail(PE_EUSAGE, "%s: the checkpoint's %s is %s, this run's %s: a resume "
                         "takes the same options", path, same[i][0],
                         !theirs ? "missing" : *theirs ? theirs : "unset",
                         *mine[i] ? mine[i] : "unset");
            goto out;
        }
    }
    if ((rc = meta_num(f, "step", &v))) goto out;
    tr->step = (uint64_t)v;
    if ((rc = meta_num(f, "seed", &v))) goto out;
    if ((uint64_t)v != o->seed) { rc = pe_fail(PE_EFORMAT, "%s: seed differs", path); goto out; }
    const char *mean = pe_st_meta(f, "mean"), *std = pe_st_meta(f, "std");
    if (!mean || !std ||
        sscanf(mean, "%g,%g,%g", &tr->mean[0], &tr->mean[1], &tr->mean[2]) != 3 ||
        sscanf(std, "%g,%g,%g", &tr->std[0], &tr->std[1], &tr->std[2]) != 3) {
        rc = pe_fail(PE_EFORMAT, "%s: bad mean/std", path);
        goto out;
    }
    /* an init run's provenance stays with its checkpoints */
    for (int i = 0; i < 3; i++) {
        const char *v = pe_st_meta(f, init_keys[i]);
        if (v && !(tr->init_meta[i] = strdup(v))) { rc = ENOMEM; goto out; }
    }
    rc = load_tensors(f, tr->m, tr->be, o->optim, tr->s1, o->optim == PE_OPT_ADAM ? tr->s2 : NULL, path, 0, "");
    if (!rc && tr->key) rc = resume_moco(tr, f, path);
out:
    pe_st_close(f);
    return rc;
}

/* ---------------- --init ---------------- */
/* The bytes of a file (malloc'd into *buf), read once so that the hash
 * recorded is that of the bytes parsed. */
static int read_all(const char *path, uint8_t **buf, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    size_t cap = 1 << 20, n = 0;
    uint8_t *b = NULL;
    if (fd < 0) return pe_fail(errno, "%s: %s", path, strerror(errno));
    if (!(b = malloc(cap))) { rc = pe_fail(ENOMEM, "%s: out of memory", path); goto out; }
    for (;;) {
        if (n == cap) {
            uint8_t *nb = cap <= SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
            if (!nb) { rc = pe_fail(ENOMEM, "%s: out of memory", path); goto out; }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { rc = pe_fail(errno, "%s: read: %s", path, strerror(errno)); goto out; }
        if (r == 0) break;
        n += (size_t)r;
    }
    *buf = b;
    *len = n;
    b = NULL;
out:
    free(b);
    close(fd);
    return rc;
}

/* An --init file, parsed; the bytes stay alive with the handle. */
typedef struct init_file {
    uint8_t *bytes;
    size_t len;
    pe_st *f;
    char hash[33]; /* XXH3-128 of the bytes, canonical (big-endian) hex */
} init_file;

static void init_file_close(init_file *in) {
    pe_st_close(in->f);
    free(in->bytes);
    memset(in, 0, sizeof *in);
}

static int init_file_open(init_file *in, const char *path) {
    int rc = read_all(path, &in->bytes, &in->len);
    if (rc) return pe_fail_prefix(rc, "--init");
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(in->bytes, in->len));
    for (int i = 0; i < 16; i++) snprintf(in->hash + 2 * i, 3, "%02x", c.digest[i]);
    if ((rc = pe_st_open_mem(&in->f, in->bytes, in->len)))
        pe_fail_prefix(rc, "--init: %s", path);
    return rc;
}

/* The file's mean/std metadata (a pe-train checkpoint's) into mean, std;
 * 0 when it has both, 1 when it has neither, PE_EFORMAT when malformed. */
static int init_norm(const init_file *in, const char *path, float *mean, float *std) {
    const char *m = pe_st_meta(in->f, "mean"), *s = pe_st_meta(in->f, "std");
    char end;
    if (!m && !s) return 1;
    if (!m || !s || sscanf(m, "%g,%g,%g%c", &mean[0], &mean[1], &mean[2], &end) != 3 ||
        sscanf(s, "%g,%g,%g%c", &std[0], &std[1], &std[2], &end) != 3)
        return pe_fail(PE_EFORMAT, "--init: %s: bad mean/std metadata", path);
    for (int k = 0; k < 3; k++)
        if (!isfinite(mean[k]) || !(std[k] > 0) || !isfinite(std[k]))
            return pe_fail(PE_EFORMAT, "--init: %s: bad mean/std metadata", path);
    return 0;
}

/* Loads the encoder of an --init file into the freshly initialised model,
 * and its head when every head tensor is there with the model's shape (the
 * head stays as initialised from the seed otherwise, with a note on err).
 * The optimiser state stays zero and the step count 0. */
static int init_load(trainer *tr, const init_file *in, const char *path, FILE *err,
                     int *head_loaded) {
    const pe_model_cfg *c = pe_model_get_cfg(tr->m);
    const char *arch = pe_st_meta(in->f, "arch");
    if (arch && strcmp(arch, pe_arch_name(c->arch)))
        return pe_fail(PE_EFORMAT, "--init: %s: an encoder of architecture '%s'; this run "
                       "builds '%s' (--arch)", path, arch, pe_arch_name(c->arch));
    const char *why = NULL, *which = NULL;
    int present = 0;
    for (int i = 0; i < pe_model_ntensors(tr->m); i++) {
        const pe_tensor_info *t = pe_model_tensor(tr->m, i);
        if (!t->head) continue;
        const pe_st_tensor *x = pe_st_get(in->f, t->name);
        int same = x && (int)x->ndim == t->ndim && x->numel == t->n;
        for (int k = 0; same && k < t->ndim; k++) same = x->shape[k] == (size_t)t->shape[k];
        present += x != NULL;
        if (!same && !why) {
            why = x ? "has another shape than the model's" : "is missing";
            which = t->name;
        }
    }
    *head_loaded = !why;
    int rc = load_tensors(in->f, tr->m, tr->be, 0, NULL, NULL, path, !*head_loaded, "");
    if (rc) return pe_fail_prefix(rc, "--init");
    if (why && present)
        fprintf(err, "%s: --init: %s: head tensor '%s' %s; the projection head starts "
                "fresh from --seed\n", tr->o->prog, pe_esc(path), which, why);
    else if (why)
        fprintf(err, "%s: --init: %s: no projection head in the file; the head starts fresh "
                "from --seed\n", tr->o->prog, pe_esc(path));
    if (!(tr->init_meta[0] = strdup(path)) || !(tr->init_meta[1] = strdup(in->hash)) ||
        !(tr->init_meta[2] = strdup(*head_loaded ? "file" : "fresh")))
        return pe_fail(ENOMEM, "out of memory");
    return 0;
}

int pe_model_load_file(pe_model *m, pe_backend *be, const char *path, int skip_head) {
    pe_st *f = NULL;
    int rc = pe_st_read_file(&f, path);
    if (rc) return rc;
    rc = load_tensors(f, m, be, 0, NULL, NULL, path, skip_head, "");
    pe_st_close(f);
    return rc;
}

/* ---------------- MoCo ---------------- */
void pe_moco_queue_init(float *queue, size_t K, int D, uint64_t seed) {
    uint32_t key[2];
    pe_rng_epoch_key(seed, 0, PE_MOCO_TAG_QUEUE, key);
    pe_rng r = pe_rng_init(key, 0, 0, 0);
    for (size_t i = 0; i < K; i++) {
        /* two passes over the row's draws: a copy of the stream replays them */
        pe_rng row = r;
        double sq = 0;
        for (int pass = 0; pass < 2; pass++) {
            r = row;
            double inv = pass ? 1.0 / fmax(sqrt(sq), 1e-12) : 0;
            for (int j = 0; j < D; j++) {
                double u1 = pe_rng_double(&r), u2 = pe_rng_double(&r);
                double z = sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
                if (pass) queue[i * (size_t)D + (size_t)j] = (float)(z * inv);
                else sq += z * z;
            }
        }
    }
}

int pe_moco_enqueue(pe_backend *be, float *queue, size_t K, int D, const float *keys, int n,
                    uint64_t *ptr) {
    PE_ASSERT(n >= 1 && D >= 1 && K % (size_t)n == 0 && *ptr < K && *ptr % (uint64_t)n == 0);
    int rc = be->copy(be, (size_t)n * (size_t)D, keys, queue + *ptr * (size_t)D);
    if (!rc) *ptr = (*ptr + (uint64_t)n) % K;
    return rc;
}

int pe_moco_key_copy(pe_model *key, pe_model *query, pe_backend *be) {
    size_t np = pe_model_nparams(query), nb = pe_model_nbuffers(query);
    PE_ASSERT(pe_model_nparams(key) == np && pe_model_nbuffers(key) == nb &&
              pe_model_ntensors(key) == pe_model_ntensors(query));
    int rc = be->copy(be, np, pe_model_params(query), pe_model_params(key));
    if (!rc) rc = be->copy(be, nb, pe_model_buffers(query), pe_model_buffers(key));
    for (int i = 0; i < pe_model_ntensors(query) && !rc; i++) {
        const pe_tensor_info *t = pe_model_tensor(query, i);
        if (t->kind == PE_T_COUNT) pe_model_counts(key)[t->off] = pe_model_counts(query)[t->off];
    }
    return rc;
}

int pe_moco_momentum_update(pe_model *key, pe_model *query, pe_backend *be, double m) {
    PE_ASSERT(pe_model_nparams(key) == pe_model_nparams(query));
    return be->ema(be, pe_model_nparams(query), pe_model_params(query), pe_model_params(key), m);
}

/* The key encoder (a copy of the query model as it starts), the queue from
 * the seed and its pointer at 0; a resume then loads its own. */
static int moco_setup(trainer *tr, const pe_model_cfg *cfg, int B) {
    const pe_train_opts *o = tr->o;
    pe_backend *be = tr->be;
    size_t K = (size_t)o->moco_queue, D = (size_t)cfg->head_out;
    int rc = pe_model_init(&tr->key, cfg, be, o->seed);
    if (!rc) rc = pe_model_set_batch(tr->key, B);
    if (rc) return rc;
    tr->queue = be->alloc(be, K * D * sizeof(float));
    tr->kn = be->alloc(be, (size_t)B * D * sizeof(float));
    float *hq = malloc(K * D * sizeof *hq);
    if (!tr->queue || !tr->kn || !hq) {
        free(hq);
        return pe_fail(ENOMEM, "no memory for MoCo's queue of %zu x %zu", K, D);
    }
    pe_moco_queue_init(hq, K, (int)D, o->seed);
    rc = be->upload(be, tr->queue, hq, K * D * sizeof *hq);
    free(hq);
    tr->queue_ptr = 0;
    return rc;
}

/* One step's loss and d loss / d z of the trained model on x (2B views,
 * view 1 then view 2): SimCLR's NT-Xent over all 2B, or MoCo's InfoNCE of
 * view 1's queries against view 2's keys and the queue. */
/* Data parallelism: every rank calls this once per step with its own rc;
 * all return nonzero when any rank failed (the failed one its own error,
 * the others one that says so), so no rank waits alone in a collective.
 * The flags are averaged through the gradient all-reduce's path. */
static int group_agree(trainer *tr, int rc) {
    pe_backend *be = tr->be;
    float flag = rc ? 1.0f : 0.0f;
    int rc2 = be->upload(be, tr->flag, &flag, sizeof flag);
    if (!rc2) rc2 = be->allreduce_mean(be, 1, tr->flag);
    if (!rc2) rc2 = be->download(be, &flag, tr->flag, sizeof flag);
    if (rc) return rc;
    if (rc2) return rc2;
    if (flag > 0)
        return pe_fail(PE_ECUDA, "another rank of the group failed at step %llu (its error is on "
                                 "its own stderr); every rank stops",
                       (unsigned long long)tr->step + 1);
    return 0;
}

static int step_loss(trainer *tr, const float *x, size_t view_n, float *loss, float *dz) {
    const pe_train_opts *o = tr->o;
    pe_backend *be = tr->be;
    int B = o->batch, D = pe_model_get_cfg(tr->m)->head_out;
    int rc = pe_model_forward(tr->m, x, 1, 1);
    if (rc) return rc;
    if (o->method == PE_METHOD_SIMCLR)
        return be->ntxent(be, 2 * B, D, pe_model_z(tr->m), o->temperature, loss, dz);
    /* the key encoder in training mode: its batch statistics over the
     * whole batch (one device: no shuffle-BN), its running ones updated */
    if ((rc = pe_model_forward(tr->key, x + (size_t)B * view_n, 1, 1))) return rc;
    return be->infonce(be, B, D, o->moco_queue, pe_model_z(tr->m), pe_model_z(tr->key), tr->queue,
                       o->temperature, loss, dz, tr->kn);
}

/* ---------------- DP-SGD ---------------- */
struct pe_dp {
    pe_backend *be;
    int B, g, D;
    size_t view_n, np;
    double clip, sigma;
    uint64_t seed;
    float *xg;  /* (2g, C, S, S) one group's views; NULL when g == B */
    float *dz;  /* (2g, D) d loss / d z of a group */
    float *sum; /* (np) the clipped groups' gradients, summed */
    uint64_t groups, clipped;
};

void pe_dp_noise_key(uint64_t seed, uint64_t step, uint32_t key[2]) {
    pe_rng_epoch_key(seed, step, PE_DP_TAG_NOISE, key);
}

double pe_dp_clip_scale(double norm, double clip) {
    return norm > clip ? clip / norm : 1.0;
}

int pe_dp_init(pe_dp **out, pe_model *m, pe_backend *be, int B, int g, size_t view_n,
               double clip, double sigma, uint64_t seed) {
    *out = NULL;
    if (g < 2 || B < g || B % g)
        return pe_fail(PE_EUSAGE, "--dp-group %d: the batch (%d) must be a multiple of the "
                       "group, and a group at least 2 images", g, B);
    if (!(clip > 0 && isfinite(clip)) || !(sigma >= 0 && isfinite(sigma)))
        return pe_fail(PE_EUSAGE, "DP clip %g and noise %g out of range", clip, sigma);
    pe_dp *dp = calloc(1, sizeof *dp);
    if (!dp) return ENOMEM;
    dp->be = be;
    dp->B = B;
    dp->g = g;
    dp->D = pe_model_get_cfg(m)->head_out;
    dp->view_n = view_n;
    dp->np = pe_model_nparams(m);
    dp->clip = clip;
    dp->sigma = sigma;
    dp->seed = seed;
    if (g < B) dp->xg = be->alloc(be, 2 * (size_t)g * view_n * sizeof(float));
    dp->dz = be->alloc(be, 2 * (size_t)g * (size_t)dp->D * sizeof(float));
    dp->sum = be->alloc(be, dp->np * sizeof(float));
    if ((g < B && !dp->xg) || !dp->dz || !dp->sum) {
        pe_dp_free(dp);
        return pe_fail(ENOMEM, "no memory for the DP step's buffers");
    }
    *out = dp;
    return 0;
}

void pe_dp_free(pe_dp *dp) {
    if (!dp) return;
    if (dp->xg) dp->be->free(dp->be, dp->xg);
    if (dp->dz) dp->be->free(dp->be, dp->dz);
    if (dp->sum) dp->be->free(dp->be, dp->sum);
    free(dp);
}

void pe_dp_counts(pe_dp *dp, uint64_t *groups, uint64_t *clipped) {
    *groups = dp->groups;
    *clipped = dp->clipped;
    dp->groups = dp->clipped = 0;
}

int pe_dp_step(pe_dp *dp, pe_model *m, const float *x, float T, uint64_t step, float *loss) {
    pe_backend *be = dp->be;
    const int ng = dp->B / dp->g;
    const size_t gv = (size_t)dp->g * dp->view_n;
    float *grads = pe_model_grads(m);
    double loss_sum = 0;
    int rc = be->fill(be, dp->np, 0, dp->sum);
    for (int j = 0; j < ng && !rc; j++) {
        /* the group's 2g views: its images' view 1, then their view 2 */
        const float *xj = x;
        if (dp->xg) {
            rc = be->copy(be, gv, x + (size_t)j * gv, dp->xg);
            if (!rc) rc = be->copy(be, gv, x + (size_t)dp->B * dp->view_n + (size_t)j * gv, dp->xg + gv);
            xj = dp->xg;
        }
        float l = 0;
        double ss = 0;
        if (!rc) rc = pe_model_forward(m, xj, 1, 1);
        if (!rc) rc = be->ntxent(be, 2 * dp->g, dp->D, pe_model_z(m), T, &l, dp->dz);
        if (!rc && !isfinite(l)) {
            *loss = l;
            return 0;
        }
        if (!rc) rc = pe_model_backward(m, dp->dz);
        if (!rc) rc = be->sumsq(be, dp->np, grads, &ss);
        if (rc) break;
        if (!isfinite(ss)) {
            *loss = NAN;
            return 0;
        }
        const double scale = pe_dp_clip_scale(sqrt(ss), dp->clip);
        dp->groups++;
        dp->clipped += scale < 1;
        rc = be->axpy(be, dp->np, (float)scale, grads, dp->sum);
        loss_sum += l;
    }
    if (rc) return rc;
    uint32_t key[2];
    pe_dp_noise_key(dp->seed, step, key);
    rc = be->gauss_noise(be, dp->np, key, dp->sigma * dp->clip, 1.0 / ng, dp->sum, grads);
    *loss = (float)(loss_sum / ng);
    return rc;
}

/* ---------------- the run ---------------- */
static double lr_at(const pe_train_opts *o, uint64_t step, uint64_t total, uint64_t warm) {
    if (o->optim == PE_OPT_ADAM) return o->lr;
    if (step < warm) return o->lr * (double)(step + 1) / (double)warm;
    if (total <= warm) return o->lr;
    return o->lr * 0.5 * (1.0 + cos(M_PI * (double)(step - warm) / (double)(total - warm)));
}

static int check_opts(const pe_train_opts *o) {
    if (!o->set) return pe_fail(PE_EUSAGE, "no training set");
    if (o->batch < 2 || o->batch > 65536) return pe_fail(PE_EUSAGE, "batch %d out of range (2 to 65536)", o->batch);
    if (o->epochs < 0 || o->epochs > 1000000) return pe_fail(PE_EUSAGE, "epochs %d out of range", o->epochs);
    if (o->init && o->resume)
        return pe_fail(PE_EUSAGE, "--init and --resume do not go together: a resume continues "
                       "its own run, which records its init");
    if (o->stop_plateau < 0 || o->stop_plateau > 1000000)
        return pe_fail(PE_EUSAGE, "--stop-plateau %d out of range", o->stop_plateau);
    if (o->world < 0 || o->world > 4096 || (o->world > 1 && (o->rank < 0 || o->rank >= o->world)))
        return pe_fail(PE_EUSAGE, "rank %d of a group of %d", o->rank, o->world);
    if (o->world > 1 && !o->rendezvous)
        return pe_fail(PE_EUSAGE, "a group of %d needs a rendezvous file", o->world);
    if (o->sync_bn && !o->rendezvous)
        return pe_fail(PE_EUSAGE, "--sync-bn synchronises a data-parallel group: give --world, "
                                  "--rank and --rendezvous");
    if (o->rendezvous && o->dp_clip > 0)
        return pe_fail(PE_EUNSUPPORTED, "--dp-clip runs on one device: DP-SGD's groups and noise "
                                        "are not split across ranks");
    if (o->rendezvous && o->stop_plateau)
        return pe_fail(PE_EUNSUPPORTED, "--stop-plateau runs on one device");
    if (o->stop_plateau && !o->knn_set)
        return pe_fail(PE_EUSAGE, "--stop-plateau watches the kNN monitor: give --knn-set");
    if (o->stop_plateau && o->max_steps)
        return pe_fail(PE_EUSAGE, "--stop-plateau keeps whole epochs; --max-steps stops "
                       "inside one: use --epochs as the cap");
    if (!(o->lr > 0 && o->lr < 100)) return pe_fail(PE_EUSAGE, "learning rate %g out of range", o->lr);
    if (!(o->wd >= 0 && o->wd < 1)) return pe_fail(PE_EUSAGE, "weight decay %g out of range", o->wd);
    if (!(o->momentum >= 0 && o->momentum < 1)) return pe_fail(PE_EUSAGE, "momentum %g out of range", o->momentum);
    if (!(o->temperature > 0 && o->temperature <= 100)) return pe_fail(PE_EUSAGE, "temperature %g out of range", (double)o->temperature);
    if (o->method != PE_METHOD_SIMCLR && o->method != PE_METHOD_MOCO)
        return pe_fail(PE_EUSAGE, "unknown method %d", (int)o->method);
    if (o->method == PE_METHOD_MOCO) {
        if (o->moco_queue < o->batch || o->moco_queue > PE_MOCO_QUEUE_MAX || o->moco_queue % o->batch)
            return pe_fail(PE_EUSAGE, "--moco-queue %d: the queue must be a multiple of the batch "
                           "(%d), at most %d", o->moco_queue, o->batch, PE_MOCO_QUEUE_MAX);
        if (!(o->moco_momentum >= 0 && o->moco_momentum <= 1))
            return pe_fail(PE_EUSAGE, "--moco-momentum %g out of range (0 to 1)", o->moco_momentum);
    }
    if (o->size < 8 || o->size > 1024) return pe_fail(PE_EUSAGE, "size %d out of range (8 to 1024)", o->size);
    if (o->dp_clip != 0 || o->dp_noise >= 0 || o->dp_epsilon != 0) {
        if (!(o->dp_clip > 0 && o->dp_clip <= 1e30))
            return pe_fail(PE_EUSAGE, "--dp-clip %g: differentially private training needs a "
                           "clip norm above 0 (and --dp-noise or --dp-epsilon goes with it)",
                           o->dp_clip);
        if ((o->dp_noise >= 0) == (o->dp_epsilon != 0))
            return pe_fail(PE_EUSAGE, "--dp-clip takes exactly one of --dp-noise and --dp-epsilon");
        if (o->dp_noise >= 0 && !(o->dp_noise <= 1e6))
            return pe_fail(PE_EUSAGE, "--dp-noise %g out of range (0 to 1e6)", o->dp_noise);
        if (o->dp_epsilon != 0 && !(o->dp_epsilon > 0 && o->dp_epsilon < 1e6))
            return pe_fail(PE_EUSAGE, "--dp-epsilon %g out of range (above 0)", o->dp_epsilon);
        if (!(o->dp_delta > 0 && o->dp_delta < 1))
            return pe_fail(PE_EUSAGE, "--dp-delta %g out of range (0 < delta < 1)", o->dp_delta);
        if (o->dp_group < 2 || o->batch % o->dp_group)
            return pe_fail(PE_EUSAGE, "--dp-group %d: the batch (%d) must be a multiple of the "
                           "group, of at least 2 images", o->dp_group, o->batch);
        if (o->method != PE_METHOD_SIMCLR)
            return pe_fail(PE_EUSAGE, "--dp-clip trains SimCLR only: MoCo's queue carries "
                           "earlier batches' keys into every step, which the group "
                           "accounting does not cover");
    }
    return 0;
}

/* Weighted kNN accuracy of the current encoder: features of the bank and
 * of the test set (at most --knn-limit images) without augmentation. */
static int knn_score(pe_store *st, pe_model *m, pe_backend *be, const dataset *kb,
                     const dataset *kt, const pe_aug_opts *aug, const pe_train_opts *o, int N,
                     double *out) {
    float *fb = NULL, *ft = NULL;
    int32_t *lb = NULL, *lt = NULL;
    size_t nb = 0, ntt = 0;
    int rc = features_of(st, m, be, kb, aug, 0, N, &fb, &lb, &nb);
    if (!rc) rc = features_of(st, m, be, kt, aug, o->knn_limit, N, &ft, &lt, &ntt);
    if (!rc) {
        int ncls = kb->nclasses > kt->nclasses ? kb->nclasses : kt->nclasses;
        *out = pe_knn_accuracy(fb, lb, nb, ft, lt, ntt, pe_model_feat_dim(m), o->knn_k,
                               o->knn_t, ncls);
    }
    free(fb);
    free(ft);
    free(lb);
    free(lt);
    return rc;
}

int pe_train_run(pe_store *st, const pe_train_opts *o, FILE *err, pe_train_stats *stats) {
    trainer T = {0}, *tr = &T;
    memset(stats, 0, sizeof *stats);
    stats->knn_acc = -1;
    tr->o = o;
    tr->st = st;
    loader L = {0};
    dataset kb = {0}, kt = {0};
    pe_txn *t = NULL;
    FILE *log = NULL;
    float *dz = NULL, *dx = NULL;
    pe_aug_opts aug = o->aug;
    init_file in = {0};
    int rc = check_opts(o);
    if (rc) return rc;
    /* ranks other than 0 train as rank 0 does but write nothing */
    pe_train_opts quiet_rank;
    if (o->world > 1 && o->rank > 0) {
        quiet_rank = *o;
        quiet_rank.out = NULL;
        quiet_rank.log = NULL;
        quiet_rank.progress = 0;
        o = &quiet_rank;
        tr->o = o;
    }
    const int world = o->world > 1 ? o->world : 1;
    stats->best_epoch = -1;
    stats->best_acc = -1;
    stats->init_head = -1;
    tr->knn_acc = -1;
    pthread_mutex_init(&L.mu, NULL);
    pthread_cond_init(&L.cv, NULL);
    if ((rc = pe_txn_begin(st, 0, &t))) goto out;
    if ((rc = dataset_load(t, o->set, &tr->d))) goto out;
    if (tr->d.nocc < (size_t)o->batch) {
        rc = pe_fail(PE_EFORMAT, "set '%s' holds %zu images, fewer than one batch of %d",
                     o->set, tr->d.nocc, o->batch);
        goto out;
    }
    /* DP: the noise before the (long) statistics pass, so that an
     * unreachable --dp-epsilon fails at once */
    if (o->dp_clip > 0) {
        tr->dp_q = (double)o->batch / (double)tr->d.nocc;
        tr->dp_sigma = o->dp_noise;
        uint64_t steps = (uint64_t)o->epochs * (tr->d.nocc / (size_t)o->batch);
        if (o->dp_noise < 0) {
            if ((rc = pe_dp_sigma_for(tr->dp_q, steps, o->dp_delta, o->dp_epsilon, &tr->dp_sigma)))
                goto out;
            tr->dp_sigma *= PE_DP_SENSITIVITY;
        }
        if (o->dp_delta >= 1.0 / (double)tr->d.nocc)
            fprintf(err, "%s: warning: --dp-delta %g is not below 1/n = %g (n = %zu images in "
                    "'%s'): a mechanism that publishes one whole example at random meets such "
                    "a delta; take delta well below 1/n\n", o->prog, o->dp_delta,
                    1.0 / (double)tr->d.nocc, tr->d.nocc, pe_esc(o->set));
        stats->dp_sigma = tr->dp_sigma;
        stats->dp_q = tr->dp_q;
    }
    int C = o->channels ? o->channels : (int)tr->d.channels;
    if (C != 1 && C != 3) { rc = pe_fail(PE_EUSAGE, "channels %d (1 or 3)", C); goto out; }
    if (C == 1 && tr->d.channels == 3) {
        rc = pe_fail(PE_EFORMAT, "set '%s' holds RGB images; a 1-channel model needs gray images", o->set);
        goto out;
    }
    aug.size = (uint32_t)o->size;
    aug.channels = (uint32_t)C == tr->d.channels ? 0 : (uint32_t)C; /* 0: as the images */
    /* --init: read and check the file before the (long) statistics pass;
     * its normalisation is the encoder's, so it is kept unless given */
    if (o->init && (rc = init_file_open(&in, o->init))) goto out;
    if (o->have_norm) {
        memcpy(tr->mean, o->aug.mean, sizeof tr->mean);
        memcpy(tr->std, o->aug.std, sizeof tr->std);
    } else if (o->init && (rc = init_norm(&in, o->init, tr->mean, tr->std)) <= 0) {
        if (rc) goto out;
    } else if ((rc = dataset_norm(t, &tr->d, tr->mean, tr->std))) {
        goto out;
    }
    pe_txn_abort(t);
    t = NULL;

    if ((rc = pe_backend_open(o->device, o->device_index, o->threads, o->precision,
                              o->deterministic, &tr->be)))
        goto out;
    /* a group, even of one rank (which runs NCCL's all-reduce on one GPU:
     * the path a group takes, testable where one GPU is lent) */
    if (o->rendezvous && (rc = pe_backend_join(tr->be, o->rank, world, o->rendezvous, 600, o->sync_bn)))
        goto out;
    if (o->rendezvous && !(tr->flag = tr->be->alloc(tr->be, sizeof(float)))) {
        rc = ENOMEM;
        goto out;
    }
    pe_backend *be = tr->be;
    pe_model_cfg cfg;
    pe_model_cfg_default(&cfg, o->arch, C, o->size);
    cfg.width = o->width;
    if ((rc = pe_model_init(&tr->m, &cfg, be, o->seed))) goto out;
    int moco = o->method == PE_METHOD_MOCO;
    /* N views per step; the trained model sees all of them (SimCLR) or
     * view 1 only (MoCo, whose key encoder sees view 2): MB at a time */
    int B = o->batch, N = 2 * B, MB = moco ? B : N;
    /* DP: the model runs one group of 2g views at a time */
    if (o->dp_clip > 0) MB = 2 * o->dp_group;
    if ((rc = pe_model_set_batch(tr->m, MB))) goto out;
    if (o->dp_clip > 0 &&
        (rc = pe_dp_init(&tr->dp, tr->m, be, B, o->dp_group, (size_t)C * o->size * o->size,
                         o->dp_clip, tr->dp_sigma, o->seed)))
        goto out;
    size_t np = pe_model_nparams(tr->m);
    tr->s1 = be->alloc(be, np * sizeof(float));
    tr->s2 = be->alloc(be, np * sizeof(float));
    if (!tr->s1 || !tr->s2) { rc = ENOMEM; goto out; }
    if ((rc = be->fill(be, np, 0, tr->s1)) || (rc = be->fill(be, np, 0, tr->s2))) goto out;
    if (moco && (rc = moco_setup(tr, &cfg, B))) goto out;
    if (o->resume && (rc = resume_from(tr, o->resume))) goto out;
    if (o->init) {
        if ((rc = init_load(tr, &in, o->init, err, &stats->init_head))) goto out;
        init_file_close(&in);
    }
    /* the key encoder starts as an exact copy of the query (the seed's or
     * --init's); a resume has loaded its own */
    if (moco && !o->resume && (rc = pe_moco_key_copy(tr->key, tr->m, be))) goto out;
    memcpy(aug.mean, tr->mean, sizeof aug.mean);
    memcpy(aug.std, tr->std, sizeof aug.std);
    if ((rc = pe_aug_opts_check(&aug))) goto out;

    /* kNN sets */
    if (o->knn_set) {
        if ((rc = pe_txn_begin(st, 0, &t))) goto out;
        rc = dataset_load(t, o->knn_set, &kt);
        if (!rc) rc = dataset_load(t, o->knn_bank ? o->knn_bank : o->set, &kb);
        pe_txn_abort(t);
        t = NULL;
        if (rc) goto out;
        if (kb.nclasses == 0) {
            rc = pe_fail(PE_EFORMAT, "the kNN memory bank '%s' is unlabeled (--knn-bank SET)",
                         o->knn_bank ? o->knn_bank : o->set);
            goto out;
        }
        if (o->stop_plateau && kt.nclasses == 0) {
            rc = pe_fail(PE_EFORMAT, "--stop-plateau needs an accuracy: the kNN set '%s' is "
                         "unlabeled", o->knn_set);
            goto out;
        }
    }
    if (o->out) { /* fail now, not after an epoch, when -o cannot be written */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", o->out);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        if (access(slash ? (dir[0] ? dir : "/") : ".", W_OK) != 0) {
            rc = pe_fail(errno, "%s: cannot write into its folder: %s", o->out, strerror(errno));
            goto out;
        }
    }
    if (o->log && !(log = fopen(o->log, "a"))) {
        rc = pe_fail(errno, "%s: %s", o->log, strerror(errno));
        goto out;
    }

    /* loader */
    L.st = st;
    L.d = &tr->d;
    L.aug = &aug;
    L.seed = o->seed;
    L.B = B;
    L.C = C;
    L.S = o->size;
    L.view_n = (size_t)C * o->size * o->size;
    /* the last incomplete batch is dropped, and with several ranks the
     * batches that do not make a whole step of the group */
    L.nbatches = tr->d.nocc / (size_t)B / (size_t)world;
    L.world = world;
    L.rank = world > 1 ? o->rank : 0;
    if (L.nbatches == 0) {
        rc = pe_fail(PE_EFORMAT, "set '%s' holds %zu images, fewer than one batch of %d per rank",
                     o->set, tr->d.nocc, B);
        goto out_dx;
    }
    L.order = malloc(tr->d.nocc * sizeof *L.order);
    if (be->augment && !o->host_augment) { /* the device renders the views */
        L.jobs[0] = malloc((size_t)N * sizeof *L.jobs[0]);
        L.jobs[1] = malloc((size_t)N * sizeof *L.jobs[1]);
        if (!L.jobs[0] || !L.jobs[1]) { rc = ENOMEM; goto out_dx; }
    } else {
        L.buf[0] = malloc((size_t)N * L.view_n * sizeof(float));
        L.buf[1] = malloc((size_t)N * L.view_n * sizeof(float));
        if (!L.buf[0] || !L.buf[1]) { rc = ENOMEM; goto out_dx; }
    }
    dx = be->alloc(be, (size_t)N * L.view_n * sizeof(float));
    dz = be->alloc(be, (size_t)MB * cfg.head_out * sizeof(float));
    if (!L.order || !dx || !dz) { rc = ENOMEM; goto out_dx; }

    /* the kNN score of the initialised encoder, so a curve starts at its
     * baseline (a fresh run only) */
    if (o->knn_set && tr->step == 0 && tr->epochs_done == 0) {
        double knn0;
        if ((rc = knn_score(st, tr->m, be, &kb, &kt, &aug, o, MB, &knn0))) goto out_dx;
        stats->knn_acc = knn0;
        if (log) {
            fprintf(log, "{\"epoch\":0,\"steps\":0,\"knn_acc\":%.4f}\n", knn0);
            fflush(log);
        }
    }
    /* --stop-plateau: the best epoch so far and its score. Trained epochs
     * only (epoch 0 is logged, not a candidate); a resume at an epoch end
     * counts the resumed state as the best so far, which is exactly where
     * a --stop-plateau run's own checkpoint (its best epoch) left off, and
     * writes it as -o at once, so that -o holds the best epoch even when
     * none of the epochs that follow improves on it. */
    int best_epoch = 0;
    double best_acc = -INFINITY;
    if (o->stop_plateau && tr->epochs_done > 0 && tr->batch_in_epoch == 0) {
        if ((rc = knn_score(st, tr->m, be, &kb, &kt, &aug, o, MB, &best_acc))) goto out_dx;
        best_epoch = tr->epochs_done;
        tr->knn_acc = best_acc;
        stats->best_epoch = best_epoch;
        stats->best_acc = best_acc;
        if (o->out && (rc = save_checkpoint(tr, o->out))) goto out_dx;
    }
    uint64_t total = (uint64_t)o->epochs * L.nbatches;
    uint64_t warm = (uint64_t)(o->warmup * (double)L.nbatches + 0.5);
    double t_start = pe_now();
    uint64_t steps_before = tr->step;
    int stopped = 0;
    for (int ep = tr->epochs_done; ep < o->epochs && !rc && !stopped; ep++) {
        double t0 = pe_now(), wait = 0, loss_sum = 0, lr = o->lr;
        uint64_t done = 0;
        size_t first = (size_t)tr->batch_in_epoch; /* a resume inside the epoch */
        if (first >= L.nbatches) first = 0;
        if ((rc = loader_start_epoch(&L, (uint64_t)ep, first))) break;
        for (size_t b = first; b < L.nbatches && !rc; b++) {
            if (o->max_steps && tr->step >= o->max_steps) {
                stopped = 1;
                break;
            }
            /* in a group, a failing rank must not leave the others waiting
             * in the next collective: every error up to the gradients goes
             * through group_agree, and all ranks stop together */
            int slot = loader_get(&L, b, &wait);
            if (slot < 0) {
                rc = pe_fail(L.rc, "%s", L.msg);
            } else {
                rc = loader_views(&L, be, slot, dx);
                loader_release(&L, b);
            }
            float loss = 0;
            if (!rc && tr->dp) rc = pe_dp_step(tr->dp, tr->m, dx, o->temperature, tr->step, &loss);
            else if (!rc) rc = step_loss(tr, dx, L.view_n, &loss, dz);
            if (!rc && !isfinite(loss))
                rc = pe_fail(PE_ECORRUPT, "the loss is %s at epoch %d step %llu: training "
                             "diverged (a learning rate too high, or inputs out of range); the "
                             "last good checkpoint is kept",
                             isnan(loss) ? "NaN" : "infinite", ep + 1, (unsigned long long)tr->step);
            if (!rc && !tr->dp) rc = pe_model_backward(tr->m, dz);
            if (be->allreduce_mean) rc = group_agree(tr, rc);
            if (rc) break;
            if (be->allreduce_mean) rc = be->allreduce_mean(be, np, pe_model_grads(tr->m));
            lr = lr_at(o, tr->step, total, warm);
            if (!rc && o->optim == PE_OPT_ADAM)
                rc = be->adam(be, np, pe_model_params(tr->m), pe_model_grads(tr->m), tr->s1, tr->s2,
                              (float)lr, 0.9f, 0.999f, 1e-8f, (float)o->wd, (long)tr->step + 1);
            else if (!rc)
                rc = be->sgd(be, np, pe_model_params(tr->m), pe_model_grads(tr->m), tr->s1,
                             (float)lr, (float)o->momentum, (float)o->wd, tr->step == 0);
            /* MoCo: the key follows the query, and the batch's keys
             * replace the oldest in the queue */
            if (!rc && moco) rc = pe_moco_momentum_update(tr->key, tr->m, be, o->moco_momentum);
            if (!rc && moco)
                rc = pe_moco_enqueue(be, tr->queue, (size_t)o->moco_queue, cfg.head_out, tr->kn, B,
                                     &tr->queue_ptr);
            if (rc) break;
            tr->step++;
            tr->batch_in_epoch = b + 1;
            done++;
            loss_sum += loss;
            stats->last_loss = loss;
            if (o->progress) {
                double dt = pe_now() - t0;
                fprintf(err, "\r%s: epoch %d/%d batch %zu/%zu loss %.4f %.0f img/s ", o->prog,
                        ep + 1, o->epochs, b + 1, L.nbatches, (double)loss,
                        dt > 0 ? (double)(done * (uint64_t)B) / dt : 0.0);
            }
        }
        loader_stop(&L);
        if (rc) break;
        if (stopped) {
            /* --max-steps inside the epoch: the checkpoint records how far,
             * and a resume continues at the next batch */
            if (done && o->out) rc = save_checkpoint(tr, o->out);
            break;
        }
        double dt = pe_now() - t0;
        if (tr->dp) {
            uint64_t ng, nc;
            pe_dp_counts(tr->dp, &ng, &nc);
            stats->dp_clipped = ng ? (double)nc / (double)ng : 0;
        }
        tr->epochs_done = ep + 1;
        tr->batch_in_epoch = 0;
        stats->epochs_done = ep + 1;
        stats->wait_seconds += wait;
        double knn = -1;
        if (o->knn_set) {
            if ((rc = knn_score(st, tr->m, be, &kb, &kt, &aug, o, MB, &knn))) break;
            stats->knn_acc = knn;
        }
        /* strictly above the best counts as an improvement; a tie does not */
        int improved = 1;
        if (o->stop_plateau) {
            improved = knn > best_acc;
            if (improved) {
                best_acc = knn;
                best_epoch = ep + 1;
                tr->knn_acc = knn;
                stats->best_epoch = best_epoch;
                stats->best_acc = best_acc;
            }
        }
        if (o->progress) fputc('\n', err);
        if (log) {
            fprintf(log, "{\"epoch\":%d,\"steps\":%llu,\"loss\":%.6f,\"lr\":%.6g,"
                    "\"images_per_s\":%.1f,\"seconds\":%.3f,\"wait_seconds\":%.3f",
                    ep + 1, (unsigned long long)tr->step, loss_sum / (double)done, lr,
                    (double)(done * (uint64_t)B) / dt, dt, wait);
            if (knn >= 0) fprintf(log, ",\"knn_acc\":%.4f", knn);
            if (o->stop_plateau) fprintf(log, ",\"best_epoch\":%d", best_epoch);
            if (tr->dp) {
                double eps = dp_epsilon_now(tr);
                if (isfinite(eps)) fprintf(log, ",\"dp_epsilon\":%.6g", eps);
                else fputs(",\"dp_epsilon\":null", log);
                fprintf(log, ",\"dp_clipped\":%.4f", stats->dp_clipped);
            }
            fputs("}\n", log);
            fflush(log);
        }
        /* with --stop-plateau, -o only ever holds the best epoch */
        if (o->out && improved && (rc = save_checkpoint(tr, o->out))) break;
        if (o->stop_plateau && ep + 1 - best_epoch >= o->stop_plateau && ep + 1 < o->epochs) {
            stats->stopped_plateau = 1;
            break;
        }
    }
    /* a resume with nothing left to do still writes its -o */
    if (!rc && tr->step == steps_before && o->out) rc = save_checkpoint(tr, o->out);
    stats->steps = tr->step;
    stats->epochs_done = tr->epochs_done;
    if (tr->dp) stats->dp_epsilon = dp_epsilon_now(tr);
    stats->seconds = pe_now() - t_start;
    if (stats->seconds > 0)
        stats->images_per_s = (double)((tr->step - steps_before) * (uint64_t)B) / stats->seconds;
out_dx:
    loader_stop(&L);
out:
    if (t) pe_txn_abort(t);
    if (log) fclose(log);
    init_file_close(&in);
    for (int i = 0; i < 3; i++) free(tr->init_meta[i]);
    free(L.order);
    free(L.buf[0]);
    free(L.buf[1]);
    for (int i = 0; i < 2; i++) {
        free(L.jobs[i]);
        free(L.px[i]);
    }
    if (tr->be) {
        if (dz) tr->be->free(tr->be, dz);
        if (dx) tr->be->free(tr->be, dx);
        if (tr->s1) tr->be->free(tr->be, tr->s1);
        if (tr->s2) tr->be->free(tr->be, tr->s2);
        if (tr->queue) tr->be->free(tr->be, tr->queue);
        if (tr->flag) tr->be->free(tr->be, tr->flag);
        if (tr->kn) tr->be->free(tr->be, tr->kn);
        pe_dp_free(tr->dp);
        pe_model_free(tr->key);
        pe_model_free(tr->m);
        tr->be->destroy(tr->be);
    }
    dataset_free(&tr->d);
    dataset_free(&kb);
    dataset_free(&kt);
    pthread_mutex_destroy(&L.mu);
    pthread_cond_destroy(&L.cv);
    return rc;
}
