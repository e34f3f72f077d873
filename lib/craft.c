/*
 * craft.c - composite poisoning inputs (see craft.h for the geometry and
 * the random draws).
 */
#include "craft.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "pe.h"
#include "rng.h"

#define MAX_ATTEMPTS 64
#define DISTINCT_JITTER 0.25
#define DISTINCT_OFFSET 4

void pe_craft_opts_default(pe_craft_opts *o) {
    memset(o, 0, sizeof *o);
    o->layouts = PE_LAYOUT_LR | PE_LAYOUT_TB;
    o->fit = PE_FIT_REFERENCE;
    o->draw = PE_DRAW_UNIFORM;
    o->seed = 1;
}

int pe_craft_opts_check(const pe_craft_opts *o) {
    if (!(o->layouts & (PE_LAYOUT_LR | PE_LAYOUT_TB)) ||
        (o->layouts & ~(unsigned)(PE_LAYOUT_LR | PE_LAYOUT_TB)))
        return pe_fail(PE_EUSAGE, "no layout allowed (lr, tb or both)");
    if (!(o->jitter >= 0 && o->jitter <= 0.9))
        return pe_fail(PE_EUSAGE, "jitter %g is not in [0, 0.9]", o->jitter);
    if (o->gap > 4096) return pe_fail(PE_EUSAGE, "gap %u is over 4096 pixels", o->gap);
    if (o->offset > 4096) return pe_fail(PE_EUSAGE, "offset %u is over 4096 pixels", o->offset);
    if ((unsigned)o->fit > PE_FIT_LARGER || (unsigned)o->draw > PE_DRAW_ROUND_ROBIN)
        return pe_fail(PE_EUSAGE, "bad fit or reference draw");
    return 0;
}

void pe_craft_draw_params(const pe_craft_opts *o, uint32_t t, uint32_t j,
                          uint32_t attempt, uint32_t nrefs, pe_craft_draw *d) {
    uint32_t key[2];
    pe_rng_epoch_key(o->seed, t, PE_RNG_TAG_CRAFT, key);
    pe_rng r = pe_rng_init(key, j, attempt, 0);
    if (o->layouts == (PE_LAYOUT_LR | PE_LAYOUT_TB))
        d->layout = pe_rng_int(&r, 0, 1) ? PE_LAYOUT_TB : PE_LAYOUT_LR;
    else
        d->layout = (int)o->layouts;
    d->target_first = (int)pe_rng_int(&r, 0, 1);
    if (o->draw == PE_DRAW_ROUND_ROBIN)
        d->ref = nrefs ? j % nrefs : 0;
    else
        d->ref = nrefs ? (uint32_t)pe_rng_int(&r, 0, (int64_t)nrefs - 1) : 0;
    double jit = o->jitter;
    uint32_t off = o->offset;
    if (attempt > 0) {
        if (jit < DISTINCT_JITTER) jit = DISTINCT_JITTER;
        if (off < DISTINCT_OFFSET) off = DISTINCT_OFFSET;
    }
    d->scale = 1.0;
    d->off = d->shift = 0;
    if (jit > 0) d->scale = 1.0 - jit + 2.0 * jit * pe_rng_double(&r);
    if (off > 0) {
        d->off = (uint32_t)pe_rng_int(&r, 0, off);
        d->shift = (uint32_t)pe_rng_int(&r, 0, d->off);
    }
}

/* Rounds half up, at least 1; 0 when out of range (caller reports). */
static uint32_t rnd(double x) {
    if (!(x < 65536.0)) return 0;
    double r = floor(x + 0.5);
    return r < 1 ? 1 : (uint32_t)r;
}

typedef struct geom {
    uint32_t tw, th;   /* target after scaling and fitting */
    uint32_t sw, sh;   /* target after scaling only */
    uint32_t rw, rh;   /* reference resized (before the window) */
    uint32_t E;        /* shared edge */
    uint32_t w, h;     /* composite */
} geom;

static int compose_geom(uint32_t tw0, uint32_t th0, uint32_t rw0, uint32_t rh0,
                        const pe_craft_opts *o, const pe_craft_draw *d, geom *g) {
    int lr = d->layout == PE_LAYOUT_LR;
    g->sw = d->scale == 1.0 ? tw0 : rnd(tw0 * d->scale);
    g->sh = d->scale == 1.0 ? th0 : rnd(th0 * d->scale);
    if (!g->sw || !g->sh) return pe_fail(PE_EUNSUPPORTED, "scaled target is too large");
    uint32_t te = lr ? g->sh : g->sw, re = lr ? rh0 : rw0;
    switch (o->fit) {
    case PE_FIT_TARGET: g->E = re; break;
    case PE_FIT_SMALLER: g->E = te > re ? te : re; break;
    case PE_FIT_LARGER: g->E = te < re ? te : re; break;
    default: g->E = te; break;
    }
    uint32_t E = g->E;
    if (lr) {
        g->th = E;
        g->tw = te == E ? g->sw : rnd((double)g->sw * E / g->sh);
        g->rh = E + d->off;
        g->rw = rh0 == g->rh ? rw0 : rnd((double)rw0 * g->rh / rh0);
    } else {
        g->tw = E;
        g->th = te == E ? g->sh : rnd((double)g->sh * E / g->sw);
        g->rw = E + d->off;
        g->rh = rw0 == g->rw ? rh0 : rnd((double)rh0 * g->rw / rw0);
    }
    if (!g->tw || !g->th || !g->rw || !g->rh || d->shift > d->off)
        return pe_fail(PE_EUNSUPPORTED, "composite part is too large");
    uint64_t W, H;
    if (lr) {
        W = (uint64_t)g->tw + o->gap + g->rw;
        H = E;
    } else {
        W = E;
        H = (uint64_t)g->th + o->gap + g->rh;
    }
    if (W > 65535 || H > 65535 || W * H > PE_DEFAULT_MAX_PIXELS)
        return pe_fail(PE_EUNSUPPORTED, "composite of %llux%llu is over the pixel limit",
                       (unsigned long long)W, (unsigned long long)H);
    g->w = (uint32_t)W;
    g->h = (uint32_t)H;
    return 0;
}

int pe_compose_size(uint32_t tw, uint32_t th, uint32_t rw, uint32_t rh,
                    const pe_craft_opts *o, const pe_craft_draw *d,
                    uint32_t *w, uint32_t *h) {
    geom g;
    int rc = compose_geom(tw, th, rw, rh, o, d, &g);
    if (rc) return rc;
    *w = g.w;
    *h = g.h;
    return 0;
}

/* *dst = src resized to w x h, or a copy when the size is the same. */
static int resized(const pe_image *src, uint32_t w, uint32_t h, pe_image *dst) {
    if (src->w == w && src->h == h) {
        int rc = pe_image_alloc(dst, w, h, src->c);
        if (!rc) memcpy(dst->px, src->px, pe_image_size(src));
        return rc;
    }
    return pe_image_resize_bilinear(src, dst, w, h);
}

/* Copies the w x h block of src at (sx, sy) to dst at (dx, dy). */
static void blit(const pe_image *src, uint32_t sx, uint32_t sy, uint32_t w,
                 uint32_t h, pe_image *dst, uint32_t dx, uint32_t dy) {
    size_t c = src->c;
    for (uint32_t y = 0; y < h; y++)
        memcpy(dst->px + ((size_t)(dy + y) * dst->w + dx) * c,
               src->px + ((size_t)(sy + y) * src->w + sx) * c, (size_t)w * c);
}

int pe_compose(const pe_image *target, const pe_image *ref,
               const pe_craft_opts *o, const pe_craft_draw *d, pe_image *out) {
    if (target->c != ref->c)
        return pe_fail(PE_EUSAGE, "target has %u channels, reference %u", target->c, ref->c);
    geom g;
    int rc = compose_geom(target->w, target->h, ref->w, ref->h, o, d, &g);
    if (rc) return rc;
    pe_image s = {0}, t = {0}, r = {0};
    int lr = d->layout == PE_LAYOUT_LR;
    /* scale, then fit: two resizes only when both apply (jitter and a
     * target-side fit), as a user doing it by hand would */
    if ((rc = resized(target, g.sw, g.sh, &s)) || (rc = resized(&s, g.tw, g.th, &t)) ||
        (rc = resized(ref, g.rw, g.rh, &r)) ||
        (rc = pe_image_alloc(out, g.w, g.h, target->c)))
        goto done;
    size_t n = pe_image_size(out);
    if (out->c == 1 || (o->fill[0] == o->fill[1] && o->fill[1] == o->fill[2])) {
        memset(out->px, o->fill[0], n);
    } else {
        for (size_t i = 0; i < n; i += 3) memcpy(out->px + i, o->fill, 3);
    }
    /* the reference window: E along the shared edge, from shift */
    uint32_t rx = lr ? 0 : d->shift, ry = lr ? d->shift : 0;
    uint32_t rww = lr ? g.rw : g.E, rwh = lr ? g.E : g.rh;
    if (lr) {
        uint32_t tx = d->target_first ? 0 : rww + o->gap;
        uint32_t xx = d->target_first ? g.tw + o->gap : 0;
        blit(&t, 0, 0, g.tw, g.th, out, tx, 0);
        blit(&r, rx, ry, rww, rwh, out, xx, 0);
    } else {
        uint32_t ty = d->target_first ? 0 : rwh + o->gap;
        uint32_t yy = d->target_first ? g.th + o->gap : 0;
        blit(&t, 0, 0, g.tw, g.th, out, 0, ty);
        blit(&r, rx, ry, rww, rwh, out, 0, yy);
    }
done:
    pe_image_free(&s);
    pe_image_free(&t);
    pe_image_free(&r);
    if (rc) pe_image_free(out);
    return rc;
}

static const char *const fit_names[] = {"reference", "target", "smaller", "larger"};

const char *pe_fit_name(pe_fit f) {
    return (unsigned)f <= PE_FIT_LARGER ? fit_names[f] : "?";
}

int pe_fit_parse(const char *s, pe_fit *out) {
    for (int i = 0; i <= PE_FIT_LARGER; i++)
        if (!strcmp(s, fit_names[i])) {
            *out = (pe_fit)i;
            return 0;
        }
    return pe_fail(PE_EUSAGE, "'%s' is not a fit rule (reference, target, smaller, larger)", s);
}

int pe_ref_draw_parse(const char *s, pe_ref_draw *out) {
    if (!strcmp(s, "uniform")) *out = PE_DRAW_UNIFORM;
    else if (!strcmp(s, "round-robin")) *out = PE_DRAW_ROUND_ROBIN;
    else return pe_fail(PE_EUSAGE, "'%s' is not a reference draw (uniform, round-robin)", s);
    return 0;
}

int pe_layouts_parse(const char *s, unsigned *out) {
    unsigned m = 0;
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n == 2 && !strncmp(p, "lr", 2)) m |= PE_LAYOUT_LR;
        else if (n == 2 && !strncmp(p, "tb", 2)) m |= PE_LAYOUT_TB;
        else return pe_fail(PE_EUSAGE, "'%s' is not a layout list (lr, tb, lr,tb)", s);
        p += n;
        if (*p == ',') p++;
    }
    if (!m) return pe_fail(PE_EUSAGE, "'%s' is not a layout list (lr, tb, lr,tb)", s);
    *out = m;
    return 0;
}

void pe_craft_describe(char *buf, size_t n, const pe_craft_opts *o,
                       const pe_key *target, int32_t cls,
                       const pe_key *ref, const pe_craft_draw *d,
                       uint32_t t, uint32_t j) {
    char th[PE_KEY_HEX + 1], rh[PE_KEY_HEX + 1];
    pe_key_to_hex(target, th);
    pe_key_to_hex(ref, rh);
    snprintf(buf, n,
             "attack=%s version=%d seed=%llu target=%s target_class=%d reference=%s "
             "layout=%s order=%s fit=%s gap=%u fill=%u,%u,%u scale=%.6f offset=%u shift=%u "
             "draw=%s target_index=%u poison_index=%u",
             PE_ATTACK_NAME, PE_ATTACK_VERSION, (unsigned long long)o->seed, th, cls, rh,
             d->layout == PE_LAYOUT_LR ? "lr" : "tb",
             d->target_first ? "target-first" : "reference-first", pe_fit_name(o->fit), o->gap,
             o->fill[0], o->fill[1], o->fill[2], d->scale, d->off, d->shift,
             o->draw == PE_DRAW_ROUND_ROBIN ? "round-robin" : "uniform", t, j);
}

int pe_craft_provenance(const pe_info *info, int32_t *cls) {
    int crafted = 0;
    if (cls) *cls = -1;
    for (uint32_t i = 0; i < info->n; i++) {
        if (strcmp(info->prov[i].src, PE_CRAFT_SOURCE)) continue;
        crafted = 1;
        const char *p = cls && info->prov[i].ops ? strstr(info->prov[i].ops, " target_class=") : NULL;
        if (!p) continue;
        char *end;
        long c = strtol(p + 14, &end, 10);
        if (end == p + 14 || c < 0 || c > INT32_MAX) continue;
        *cls = (int32_t)c;
        break;
    }
    return crafted;
}

/* ---- the run ---- */

/* Open-addressing set of keys (the composites made so far). */
typedef struct keyset {
    pe_key *k;
    uint8_t *used;
    size_t cap;
} keyset;

static int keyset_init(keyset *s, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    s->k = malloc(cap * sizeof *s->k);
    s->used = calloc(cap, 1);
    s->cap = cap;
    return s->k && s->used ? 0 : ENOMEM;
}

static void keyset_free(keyset *s) {
    free(s->k);
    free(s->used);
}

/* Returns 1 if k was present, else inserts it and returns 0. */
static int keyset_add(keyset *s, const pe_key *k) {
    uint64_t h;
    memcpy(&h, k->b + 8, 8);
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i]) {
            s->used[i] = 1;
            s->k[i] = *k;
            return 0;
        }
        if (!memcmp(s->k[i].b, k->b, PE_KEY_LEN)) return 1;
    }
}

static int keyset_has(const keyset *s, const pe_key *k) {
    uint64_t h;
    memcpy(&h, k->b + 8, 8);
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i]) return 0;
        if (!memcmp(s->k[i].b, k->b, PE_KEY_LEN)) return 1;
    }
}

static int missing(const char *what, const pe_key *k) {
    char hx[PE_KEY_HEX + 1];
    pe_key_to_hex(k, hx);
    return pe_fail(PE_ENOTFOUND, "%s %s is not in the store", what, hx);
}

int pe_craft_run(pe_txn *txn, const pe_craft_opts *o,
                 const pe_craft_target *targets, size_t nt,
                 const pe_craft_ref *refs, size_t nr, pe_craft_made *out,
                 pe_craft_summary *sum) {
    int rc;
    memset(sum, 0, sizeof *sum);
    if ((rc = pe_craft_opts_check(o))) return rc;
    uint64_t total = 0;
    for (size_t i = 0; i < nt; i++) total += targets[i].count;
    if (nt > UINT32_MAX || nr > UINT32_MAX || total > UINT32_MAX)
        return pe_fail(PE_ETOOBIG, "too many targets, references or poisons");

    /* checks before anything is stored */
    pe_img_hdr *rh = calloc(nr ? nr : 1, sizeof *rh);
    uint32_t *byref = malloc((nr ? nr : 1) * sizeof *byref); /* ref indices by class */
    pe_image *rim = calloc(nr ? nr : 1, sizeof *rim);        /* decoded on first use */
    keyset seen = {0};
    pe_image tim = {0}, comp = {0};
    if (!rh || !byref || !rim || keyset_init(&seen, total)) {
        rc = ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nr; i++) {
        rc = pe_img_stat(txn, &refs[i].key, &rh[i]);
        if (rc == PE_ENOTFOUND) rc = missing("reference", &refs[i].key);
        if (rc) goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        pe_img_hdr th;
        char a[PE_KEY_HEX + 1], b[PE_KEY_HEX + 1];
        rc = pe_img_stat(txn, &targets[i].key, &th);
        if (rc == PE_ENOTFOUND) rc = missing("target", &targets[i].key);
        if (rc) goto out;
        size_t nref = 0;
        for (size_t k = 0; k < nr; k++) {
            if (refs[k].cls != targets[i].cls) continue;
            nref++;
            if (rh[k].c != th.c) {
                pe_key_to_hex(&targets[i].key, a);
                pe_key_to_hex(&refs[k].key, b);
                rc = pe_fail(PE_EUSAGE, "target %s has %u channels but reference %s has %u",
                             a, th.c, b, rh[k].c);
                goto out;
            }
            if (!memcmp(refs[k].key.b, targets[i].key.b, PE_KEY_LEN)) {
                pe_key_to_hex(&targets[i].key, a);
                rc = pe_fail(PE_EUSAGE, "target %s is also a reference of its target class %d",
                             a, targets[i].cls);
                goto out;
            }
        }
        if (!nref && targets[i].count) {
            pe_key_to_hex(&targets[i].key, a);
            rc = pe_fail(PE_ENOTFOUND, "no reference of target class %d (target %s)",
                         targets[i].cls, a);
            goto out;
        }
    }

    uint64_t m = 0;
    for (size_t i = 0; i < nt; i++) {
        if (!targets[i].count) continue;
        uint32_t nref = 0;
        for (size_t k = 0; k < nr; k++)
            if (refs[k].cls == targets[i].cls) byref[nref++] = (uint32_t)k;
        pe_image_free(&tim);
        if ((rc = pe_img_get(txn, &targets[i].key, &tim))) goto out;
        for (uint32_t j = 0; j < targets[i].count; j++) {
            pe_craft_draw d;
            pe_key key;
            int dup = 0;
            uint32_t a = 0;
            for (;; a++) {
                if (a == MAX_ATTEMPTS) {
                    char hx[PE_KEY_HEX + 1];
                    pe_key_to_hex(&targets[i].key, hx);
                    rc = pe_fail(PE_EUSAGE,
                                 "cannot make %u distinct poisons for target %s (%u made after "
                                 "%d draws each): give more references, both layouts, or a "
                                 "larger --jitter/--offset",
                                 targets[i].count, hx, j, MAX_ATTEMPTS);
                    goto out;
                }
                pe_craft_draw_params(o, (uint32_t)i, j, a, nref, &d);
                uint32_t k = byref[d.ref];
                if (!rim[k].px && (rc = pe_img_get(txn, &refs[k].key, &rim[k]))) goto out;
                pe_image_free(&comp);
                if ((rc = pe_compose(&tim, &rim[k], o, &d, &comp))) goto out;
                pe_key_of_image(&comp, &key);
                dup = keyset_has(&seen, &key);
                if (!dup || !o->distinct) break;
            }
            uint32_t k = byref[d.ref];
            char ops[PE_SOURCE_MAX];
            pe_craft_describe(ops, sizeof ops, o, &targets[i].key, targets[i].cls,
                              &refs[k].key, &d, (uint32_t)i, j);
            pe_prov p = {.src = PE_CRAFT_SOURCE, .ops = ops, .orig_w = comp.w, .orig_h = comp.h,
                         .orig_c = (uint8_t)comp.c, .orig_bits = 8, .format = PE_FORMAT_RAW};
            int existed = 0;
            if ((rc = pe_img_put_keyed(txn, &comp, &key, PE_ENC_RAW, &p, &existed))) goto out;
            if (!dup) {
                keyset_add(&seen, &key);
                sum->distinct++;
                sum->existed += existed != 0;
            }
            out[m].key = key;
            out[m].target = (uint32_t)i;
            out[m].ref = k;
            out[m].layout = (uint8_t)d.layout;
            out[m].target_first = (uint8_t)d.target_first;
            m++;
        }
    }
    sum->total = m;
    rc = 0;
out:
    for (size_t i = 0; rim && i < nr; i++) pe_image_free(&rim[i]);
    pe_image_free(&tim);
    pe_image_free(&comp);
    keyset_free(&seen);
    free(rh);
    free(byref);
    free(rim);
    return rc;
}
