/*
 * craft.c - composite poisoning inputs (see craft.h for the geometry and
 * the random draws).
 */
#include "craft.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
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
    if ((unsigned)o->size > PE_CRAFT_SIZE_TARGET) return pe_fail(PE_EUSAGE, "bad size rule");
    if (o->size == PE_CRAFT_SIZE_FIXED &&
        (!o->size_w || !o->size_h || o->size_w > 65535 || o->size_h > 65535 ||
         (uint64_t)o->size_w * o->size_h > PE_DEFAULT_MAX_PIXELS))
        return pe_fail(PE_EUSAGE, "size %ux%u is not 1 to 65535 a side within the pixel limit",
                       o->size_w, o->size_h);
    const pe_perturb *p = &o->perturb;
    if (!(p->resample >= 0 && p->resample <= PE_PERTURB_MAX_RESAMPLE))
        return pe_fail(PE_EUSAGE, "resample=%g is not in (0, %g]", p->resample,
                       PE_PERTURB_MAX_RESAMPLE);
    if (p->crop > PE_PERTURB_MAX_CROP)
        return pe_fail(PE_EUSAGE, "crop=%u is over %d pixels", p->crop, PE_PERTURB_MAX_CROP);
    if (p->color > PE_PERTURB_MAX_COLOR)
        return pe_fail(PE_EUSAGE, "color=%u is over %d", p->color, PE_PERTURB_MAX_COLOR);
    if (p->jpeg > 100) return pe_fail(PE_EUSAGE, "jpeg=%u is not a quality of 1 to 100", p->jpeg);
    return 0;
}

int pe_perturb_any(const pe_perturb *p) {
    return p->crop || p->resample > 0 || p->color || p->jpeg;
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
    /* each perturbation on its own stream: one kind on or off moves no
     * other kind's draws */
    const pe_perturb *p = &o->perturb;
    memset(d->crop, 0, sizeof d->crop);
    memset(d->color, 0, sizeof d->color);
    d->resample = 1.0;
    if (p->crop) {
        pe_rng s = pe_rng_init(key, j, attempt, PE_CRAFT_STREAM_CROP);
        for (int k = 0; k < 4; k++) d->crop[k] = (uint32_t)pe_rng_int(&s, 0, p->crop);
    }
    if (p->resample > 0) {
        pe_rng s = pe_rng_init(key, j, attempt, PE_CRAFT_STREAM_RESAMPLE);
        d->resample = 1.0 - p->resample + 2.0 * p->resample * pe_rng_double(&s);
    }
    if (p->color) {
        pe_rng s = pe_rng_init(key, j, attempt, PE_CRAFT_STREAM_COLOR);
        for (int k = 0; k < 3; k++)
            d->color[k] = (int32_t)pe_rng_int(&s, -(int64_t)p->color, p->color);
    }
}

/* Rounds half up, at least 1; 0 when out of range (caller reports). */
static uint32_t rnd(double x) {
    if (!(x < 65536.0)) return 0;
    double r = floor(x + 0.5);
    return r < 1 ? 1 : (uint32_t)r;
}

/* The size a resample perturbation by factor f takes a w x h target to. */
static int resample_size(uint32_t w, uint32_t h, double f, uint32_t *sw, uint32_t *sh) {
    *sw = rnd(w * f);
    *sh = rnd(h * f);
    if (!*sw || !*sh || (uint64_t)*sw * *sh > PE_DEFAULT_MAX_PIXELS)
        return pe_fail(PE_EUNSUPPORTED, "a %ux%u target resampled by %g is over the pixel limit",
                       w, h, f);
    return 0;
}

typedef struct geom {
    uint32_t tw, th;   /* target after scaling and fitting */
    uint32_t sw, sh;   /* target after scaling only */
    uint32_t rw, rh;   /* reference resized (before the window) */
    uint32_t E;        /* shared edge */
    uint32_t w, h;     /* composite */
    uint32_t ow, oh;   /* the poison, after o->size */
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
    switch (o->size) {
    case PE_CRAFT_SIZE_FIXED: g->ow = o->size_w, g->oh = o->size_h; break;
    case PE_CRAFT_SIZE_TARGET: g->ow = tw0, g->oh = th0; break;
    default: g->ow = g->w, g->oh = g->h; break;
    }
    return 0;
}

int pe_compose_size(uint32_t tw, uint32_t th, uint32_t rw, uint32_t rh,
                    const pe_craft_opts *o, const pe_craft_draw *d,
                    uint32_t *w, uint32_t *h) {
    geom g;
    int rc = compose_geom(tw, th, rw, rh, o, d, &g);
    if (rc) return rc;
    *w = g.ow;
    *h = g.oh;
    return 0;
}

int pe_compose_shape(uint32_t tw, uint32_t th, uint32_t c, uint32_t rw, uint32_t rh,
                     const pe_craft_opts *o, const pe_craft_draw *d, pe_craft_shape *sh) {
    geom g;
    memset(sh, 0, sizeof *sh);
    int rc = compose_geom(tw, th, rw, rh, o, d, &g);
    if (rc) return rc;
    if (o->perturb.resample > 0 &&
        (rc = resample_size(tw, th, d->resample, &sh->resample_w, &sh->resample_h)))
        return rc;
    sh->c = c;
    sh->comp_w = g.w, sh->comp_h = g.h;
    sh->w = g.ow, sh->h = g.oh;
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

int pe_craft_perturb(const pe_image *target, const pe_craft_opts *o,
                     const pe_craft_draw *d, pe_image *out) {
    const pe_perturb *p = &o->perturb;
    uint32_t w = target->w, h = target->h, c = target->c;
    pe_image cur = {0}, tmp = {0};
    uint8_t *jpg = NULL;
    int rc = resized(target, w, h, &cur);
    if (rc) goto done;
    if (p->crop && (d->crop[0] || d->crop[1] || d->crop[2] || d->crop[3])) {
        if ((uint64_t)d->crop[0] + d->crop[2] >= w || (uint64_t)d->crop[1] + d->crop[3] >= h) {
            rc = pe_fail(PE_EUSAGE, "a crop of %u,%u,%u,%u pixels leaves nothing of a %ux%u target",
                         d->crop[0], d->crop[1], d->crop[2], d->crop[3], w, h);
            goto done;
        }
        uint32_t cw = w - d->crop[0] - d->crop[2], ch = h - d->crop[1] - d->crop[3];
        if ((rc = pe_image_alloc(&tmp, cw, ch, c))) goto done;
        blit(&cur, d->crop[0], d->crop[1], cw, ch, &tmp, 0, 0);
        pe_image_free(&cur);
        if ((rc = pe_image_resize_bilinear(&tmp, &cur, w, h))) goto done;
        pe_image_free(&tmp);
    }
    if (p->resample > 0) {
        uint32_t sw, sh;
        if ((rc = resample_size(w, h, d->resample, &sw, &sh))) goto done;
        if (sw != w || sh != h) {
            if ((rc = pe_image_resize_bilinear(&cur, &tmp, sw, sh))) goto done;
            pe_image_free(&cur);
            if ((rc = pe_image_resize_bilinear(&tmp, &cur, w, h))) goto done;
            pe_image_free(&tmp);
        }
    }
    if (p->color) {
        size_t n = pe_image_size(&cur);
        for (size_t i = 0; i < n; i++) {
            int32_t v = cur.px[i] + d->color[c == 1 ? 0 : i % 3];
            cur.px[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    if (p->jpeg) {
        size_t len;
        if ((rc = pe_encode_jpeg(&cur, (int)p->jpeg, &jpg, &len)) ||
            (rc = pe_decode_jpeg(jpg, len, NULL, &tmp, NULL)))
            goto done;
        if (tmp.w != w || tmp.h != h || tmp.c != c) {
            rc = pe_fail(PE_EFORMAT, "the JPEG round trip of a %ux%ux%u target gave %ux%ux%u",
                         w, h, c, tmp.w, tmp.h, tmp.c);
            goto done;
        }
        pe_image_free(&cur);
        cur = tmp;
        tmp = (pe_image){0};
    }
    *out = cur;
    cur = (pe_image){0};
done:
    free(jpg);
    pe_image_free(&tmp);
    pe_image_free(&cur);
    return rc;
}

/* pe_compose after the perturbation: target is the copy to place. */
static int compose_copy(const pe_image *target, const pe_image *ref, const pe_craft_opts *o,
                        const pe_craft_draw *d, pe_image *out) {
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
    if (g.ow != g.w || g.oh != g.h) { /* --size: squashed, aspect not kept */
        pe_image_free(&s); /* s, done with, takes the result */
        if ((rc = pe_image_resize_bilinear(out, &s, g.ow, g.oh))) goto done;
        pe_image_free(out);
        *out = s;
        s = (pe_image){0};
    }
done:
    pe_image_free(&s);
    pe_image_free(&t);
    pe_image_free(&r);
    if (rc) pe_image_free(out);
    return rc;
}

int pe_compose(const pe_image *target, const pe_image *ref,
               const pe_craft_opts *o, const pe_craft_draw *d, pe_image *out) {
    if (target->c != ref->c)
        return pe_fail(PE_EUSAGE, "target has %u channels, reference %u", target->c, ref->c);
    if (!pe_perturb_any(&o->perturb)) return compose_copy(target, ref, o, d, out);
    pe_image copy = {0};
    int rc = pe_craft_perturb(target, o, d, &copy);
    if (!rc) rc = compose_copy(&copy, ref, o, d, out);
    pe_image_free(&copy);
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

int pe_craft_size_parse(const char *s, pe_craft_opts *o) {
    if (!strcmp(s, "same")) {
        o->size = PE_CRAFT_SIZE_TARGET;
        o->size_w = o->size_h = 0;
        return 0;
    }
    uint32_t w, h;
    if (pe_parse_size(s, &w, &h))
        return pe_fail(PE_EUSAGE, "'%s' is not WxH (sides 1 to 65535) or 'same'", s);
    if ((uint64_t)w * h > PE_DEFAULT_MAX_PIXELS)
        return pe_fail(PE_EUSAGE, "%ux%u is over the limit of %u pixels", w, h,
                       PE_DEFAULT_MAX_PIXELS);
    o->size = PE_CRAFT_SIZE_FIXED;
    o->size_w = w;
    o->size_h = h;
    return 0;
}

static const char *const perturb_kinds = "resample, crop, color, jpeg";

int pe_perturb_parse(const char *s, pe_perturb *p) {
    pe_perturb q = *p;
    const char *it = s;
    if (!*s) return pe_fail(PE_EUSAGE, "an empty list (KIND=STRENGTH,...: %s)", perturb_kinds);
    for (;;) {
        char item[64];
        size_t n = strcspn(it, ",");
        if (n == 0 || n >= sizeof item)
            return pe_fail(PE_EUSAGE, "'%s' is not a list of KIND=STRENGTH (%s)", s, perturb_kinds);
        memcpy(item, it, n);
        item[n] = 0;
        char *v = strchr(item, '=');
        if (!v) return pe_fail(PE_EUSAGE, "'%s' has no =STRENGTH", item);
        *v++ = 0;
        uint64_t u;
        int twice = 0;
        if (!strcmp(item, "resample")) {
            double a;
            twice = q.resample > 0;
            if (pe_parse_double(v, 0, PE_PERTURB_MAX_RESAMPLE, &a) || !(a > 0))
                return pe_fail(PE_EUSAGE, "resample=%s is not a number in (0, %g]", v,
                               PE_PERTURB_MAX_RESAMPLE);
            q.resample = a;
        } else if (!strcmp(item, "crop")) {
            twice = q.crop != 0;
            if (pe_parse_u64(v, 1, PE_PERTURB_MAX_CROP, &u))
                return pe_fail(PE_EUSAGE, "crop=%s is not a number of pixels from 1 to %d", v,
                               PE_PERTURB_MAX_CROP);
            q.crop = (uint32_t)u;
        } else if (!strcmp(item, "color")) {
            twice = q.color != 0;
            if (pe_parse_u64(v, 1, PE_PERTURB_MAX_COLOR, &u))
                return pe_fail(PE_EUSAGE, "color=%s is not a number from 1 to %d", v,
                               PE_PERTURB_MAX_COLOR);
            q.color = (uint32_t)u;
        } else if (!strcmp(item, "jpeg")) {
            twice = q.jpeg != 0;
            if (pe_parse_u64(v, 1, 100, &u))
                return pe_fail(PE_EUSAGE, "jpeg=%s is not a quality from 1 to 100", v);
            q.jpeg = (uint32_t)u;
        } else {
            return pe_fail(PE_EUSAGE, "'%s' is not a perturbation (%s)", item, perturb_kinds);
        }
        if (twice) return pe_fail(PE_EUSAGE, "%s is given twice", item);
        it += n;
        if (!*it) break;
        it++; /* the comma: an item must follow */
    }
    *p = q;
    return 0;
}

/* Appends to the NUL-terminated buf of n bytes, truncating. */
static void appendf(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void appendf(char *buf, size_t n, const char *fmt, ...) {
    size_t len = strnlen(buf, n);
    if (len + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, n - len, fmt, ap);
    va_end(ap);
}

void pe_craft_describe(char *buf, size_t n, const pe_craft_opts *o,
                       const pe_key *target, int32_t cls,
                       const pe_key *ref, const pe_craft_draw *d,
                       uint32_t t, uint32_t j, const pe_craft_shape *sh) {
    char th[PE_KEY_HEX + 1], rh[PE_KEY_HEX + 1];
    if (!n) return;
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
    /* the adaptive fields, only when on: older records end above */
    if (o->size != PE_CRAFT_SIZE_NATIVE)
        appendf(buf, n, " size=%ux%u composite=%ux%u", sh->w, sh->h, sh->comp_w, sh->comp_h);
    const pe_perturb *p = &o->perturb;
    if (p->crop)
        appendf(buf, n, " crop=%u,%u,%u,%u", d->crop[0], d->crop[1], d->crop[2], d->crop[3]);
    if (p->resample > 0)
        appendf(buf, n, " resample=%.6f resample_size=%ux%u", d->resample, sh->resample_w,
                sh->resample_h);
    if (p->color && sh->c == 1) appendf(buf, n, " color=%+d", d->color[0]);
    if (p->color && sh->c != 1)
        appendf(buf, n, " color=%+d,%+d,%+d", d->color[0], d->color[1], d->color[2]);
    if (p->jpeg) appendf(buf, n, " jpeg=%u", p->jpeg);
}

/* ---- reading the records ---- */

static void record_init(pe_craft_record *r) {
    memset(r, 0, sizeof *r);
    r->cls = -1;
    r->target_first = -1;
    r->scale = 1.0;
}

static int field_u32(const char *v, uint32_t *out) {
    uint64_t u;
    if (pe_parse_u64(v, 0, UINT32_MAX, &u)) return -1;
    *out = (uint32_t)u;
    return 0;
}

static int field_wxh(const char *v, uint32_t *w, uint32_t *h) {
    return pe_parse_size(v, w, h) ? -1 : 0;
}

/* n comma-separated decimal integers in [lo, hi] (a sign allowed); returns
 * how many (at most max), -1 when malformed. */
static int field_ints(const char *v, int64_t lo, int64_t hi, int64_t *out, int max) {
    int k = 0;
    for (const char *p = v;;) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (k == max || end == p || errno || x < lo || x > hi || (*end && *end != ','))
            return -1;
        out[k++] = x;
        if (!*end) return k;
        p = end + 1;
    }
}

static int field_double(const char *v, double *out) {
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

int pe_craft_record_parse(const char *ops, pe_craft_record *r) {
    record_init(r);
    const char *p = ops;
    while (*p) {
        size_t n = strcspn(p, " ");
        if (!n) {
            p++;
            continue;
        }
        char tok[256];
        const char *eq = memchr(p, '=', n);
        if (!eq) return pe_fail(PE_EFORMAT, "pe-craft record: field '%.*s' is not KEY=VALUE",
                                (int)(n > 64 ? 64 : n), p);
        size_t kl = (size_t)(eq - p);
        char key[32];
        const char *next = p + n;
        if (kl >= sizeof key || n >= sizeof tok) { /* no known field is this long */
            p = next;
            continue;
        }
        memcpy(key, p, kl);
        key[kl] = 0;
        memcpy(tok, eq + 1, n - kl - 1);
        tok[n - kl - 1] = 0;
        const char *v = tok;
        int bad = 0;
        int64_t iv[4];
        if (!strcmp(key, "attack")) {
            if (strcmp(v, PE_ATTACK_NAME))
                return pe_fail(PE_EFORMAT, "pe-craft record of attack '%s', not %s", v,
                               PE_ATTACK_NAME);
        } else if (!strcmp(key, "version")) {
            bad = field_ints(v, 0, INT32_MAX, iv, 1) != 1;
            if (!bad) r->version = (int)iv[0];
        } else if (!strcmp(key, "seed")) {
            bad = pe_parse_u64(v, 0, UINT64_MAX, &r->seed) != 0;
        } else if (!strcmp(key, "target")) {
            bad = pe_key_from_hex(v, strlen(v), &r->target) != 0;
            r->has_target = !bad;
        } else if (!strcmp(key, "reference")) {
            bad = pe_key_from_hex(v, strlen(v), &r->reference) != 0;
            r->has_reference = !bad;
        } else if (!strcmp(key, "target_class")) {
            bad = field_ints(v, 0, INT32_MAX, iv, 1) != 1;
            if (!bad) r->cls = (int32_t)iv[0];
        } else if (!strcmp(key, "layout")) {
            r->layout = !strcmp(v, "lr") ? PE_LAYOUT_LR : !strcmp(v, "tb") ? PE_LAYOUT_TB : 0;
            bad = !r->layout;
        } else if (!strcmp(key, "order")) {
            r->target_first = !strcmp(v, "target-first")      ? 1
                              : !strcmp(v, "reference-first") ? 0
                                                               : -1;
            bad = r->target_first < 0;
        } else if (!strcmp(key, "scale")) {
            bad = field_double(v, &r->scale) || !(r->scale > 0);
        } else if (!strcmp(key, "offset")) {
            bad = field_u32(v, &r->off);
        } else if (!strcmp(key, "shift")) {
            bad = field_u32(v, &r->shift);
        } else if (!strcmp(key, "target_index")) {
            bad = field_u32(v, &r->target_index);
        } else if (!strcmp(key, "poison_index")) {
            bad = field_u32(v, &r->poison_index);
        } else if (!strcmp(key, "size")) {
            bad = field_wxh(v, &r->size_w, &r->size_h);
        } else if (!strcmp(key, "composite")) {
            bad = field_wxh(v, &r->comp_w, &r->comp_h);
        } else if (!strcmp(key, "crop")) {
            bad = field_ints(v, 0, UINT32_MAX, iv, 4) != 4;
            for (int k = 0; !bad && k < 4; k++) r->crop[k] = (uint32_t)iv[k];
            r->has_crop = !bad;
        } else if (!strcmp(key, "resample")) {
            bad = field_double(v, &r->resample) || !(r->resample > 0);
        } else if (!strcmp(key, "resample_size")) {
            bad = field_wxh(v, &r->resample_w, &r->resample_h);
        } else if (!strcmp(key, "color")) {
            int k = field_ints(v, -255, 255, iv, 3);
            bad = k != 1 && k != 3;
            for (int i = 0; !bad && i < k; i++) r->color[i] = (int32_t)iv[i];
            r->n_color = bad ? 0 : (uint32_t)k;
        } else if (!strcmp(key, "jpeg")) {
            bad = field_ints(v, 1, 100, iv, 1) != 1;
            if (!bad) r->jpeg = (uint32_t)iv[0];
        } /* fit, gap, fill, draw and fields of later versions: not needed here */
        if (bad) return pe_fail(PE_EFORMAT, "pe-craft record: bad %s '%s'", key, v);
        p = next;
    }
    return 0;
}

int pe_craft_provenance_record(const pe_info *info, pe_craft_record *rec) {
    int crafted = 0;
    pe_craft_record r;
    if (rec) record_init(rec);
    for (uint32_t i = 0; i < info->n; i++) {
        if (strcmp(info->prov[i].src, PE_CRAFT_SOURCE)) continue;
        crafted = 1;
        if (!rec) break;
        if (info->prov[i].ops && !pe_craft_record_parse(info->prov[i].ops, &r)) {
            *rec = r;
            break;
        }
    }
    return crafted;
}

int pe_craft_provenance(const pe_info *info, int32_t *cls) {
    int crafted = 0;
    pe_craft_record r;
    if (cls) *cls = -1;
    for (uint32_t i = 0; i < info->n; i++) {
        if (strcmp(info->prov[i].src, PE_CRAFT_SOURCE)) continue;
        crafted = 1;
        if (!cls) break;
        if (info->prov[i].ops && !pe_craft_record_parse(info->prov[i].ops, &r) && r.cls >= 0) {
            *cls = r.cls;
            break;
        }
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
    keyset seen = {0}, copies = {0}; /* composites, and perturbed target copies */
    pe_image tim = {0}, comp = {0}, copy = {0};
    int perturbed = pe_perturb_any(&o->perturb);
    int distinct_copies = o->distinct && perturbed;
    if (!rh || !byref || !rim || keyset_init(&seen, total) ||
        (distinct_copies && keyset_init(&copies, total))) {
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
        if (o->perturb.crop && (th.w <= 2 * o->perturb.crop || th.h <= 2 * o->perturb.crop)) {
            pe_key_to_hex(&targets[i].key, a);
            rc = pe_fail(PE_EUSAGE, "target %s is %ux%u: crop=%u needs sides over %u pixels", a,
                         th.w, th.h, o->perturb.crop, 2 * o->perturb.crop);
            goto out;
        }
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
            pe_key key, ckey;
            int dup = 0, cdup = 0;
            uint32_t a = 0;
            for (;; a++) {
                if (a == MAX_ATTEMPTS) {
                    char hx[PE_KEY_HEX + 1];
                    pe_key_to_hex(&targets[i].key, hx);
                    if (cdup)
                        rc = pe_fail(PE_EUSAGE,
                                     "cannot make %u poisons with distinct target copies for "
                                     "target %s (%u made after %d draws each): give --perturb "
                                     "crop, resample or color, or larger strengths",
                                     targets[i].count, hx, j, MAX_ATTEMPTS);
                    else
                        rc = pe_fail(PE_EUSAGE,
                                     "cannot make %u distinct poisons for target %s (%u made "
                                     "after %d draws each): give more references, both layouts, "
                                     "or a larger --jitter/--offset",
                                     targets[i].count, hx, j, MAX_ATTEMPTS);
                    goto out;
                }
                pe_craft_draw_params(o, (uint32_t)i, j, a, nref, &d);
                uint32_t k = byref[d.ref];
                if (!rim[k].px && (rc = pe_img_get(txn, &refs[k].key, &rim[k]))) goto out;
                pe_image_free(&copy);
                pe_image_free(&comp);
                if (perturbed && (rc = pe_craft_perturb(&tim, o, &d, &copy))) goto out;
                if ((rc = compose_copy(perturbed ? &copy : &tim, &rim[k], o, &d, &comp))) goto out;
                pe_key_of_image(&comp, &key);
                dup = keyset_has(&seen, &key);
                if (distinct_copies) {
                    pe_key_of_image(&copy, &ckey);
                    cdup = keyset_has(&copies, &ckey);
                }
                if (!o->distinct || (!dup && !cdup)) break;
            }
            uint32_t k = byref[d.ref];
            pe_craft_shape sh;
            if ((rc = pe_compose_shape(tim.w, tim.h, tim.c, rim[k].w, rim[k].h, o, &d, &sh)))
                goto out;
            if (distinct_copies) keyset_add(&copies, &ckey);
            char ops[PE_SOURCE_MAX];
            pe_craft_describe(ops, sizeof ops, o, &targets[i].key, targets[i].cls,
                              &refs[k].key, &d, (uint32_t)i, j, &sh);
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
    pe_image_free(&copy);
    keyset_free(&seen);
    keyset_free(&copies);
    free(rh);
    free(byref);
    free(rim);
    return rc;
}
