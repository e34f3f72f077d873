/*
 * test_craft.c - pe-craft's composites: sizes for every layout and fit
 * rule, gaps and fill, both channel counts, offsets, where each part's
 * pixels land (checked against the resizer called directly), the draws'
 * reproducibility, and pe_craft_run on a store: counts, provenance,
 * --distinct, and errors that store nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "craft.h"
#include "pe.h"
#include "testfs.h"

static void fill_pattern(pe_image *im, uint32_t w, uint32_t h, uint32_t c, unsigned seed) {
    pe_image_alloc(im, w, h, c);
    for (size_t i = 0; i < pe_image_size(im); i++) im->px[i] = (uint8_t)(i * 31 + seed * 17 + (i >> 5));
}

/* The w x h block of big at (x, y) equals small. */
static int block_eq(const pe_image *big, uint32_t x, uint32_t y, const pe_image *small) {
    if (big->c != small->c || x + small->w > big->w || y + small->h > big->h) return 0;
    size_t c = big->c;
    for (uint32_t r = 0; r < small->h; r++)
        if (memcmp(big->px + ((size_t)(y + r) * big->w + x) * c,
                   small->px + (size_t)r * small->w * c, small->w * c))
            return 0;
    return 1;
}

static pe_craft_draw draw(int layout, int first) {
    pe_craft_draw d = {.layout = layout, .target_first = first, .ref = 0, .scale = 1.0};
    return d;
}

static void test_sizes(void) {
    pe_craft_opts o;
    pe_craft_opts_default(&o);
    uint32_t w, h;
    pe_craft_draw d = draw(PE_LAYOUT_LR, 1);
    /* target 28x28, reference 20x40: the reference takes height 28 -> 14x28 */
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 42 && h == 28);
    d.layout = PE_LAYOUT_TB; /* width 28 -> 28x56 */
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 28 && h == 84);
    o.gap = 3;
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 28 && h == 87);
    o.gap = 0;
    o.fit = PE_FIT_TARGET; /* TB: target takes width 20 -> 20x20; ref 20x40 */
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 20 && h == 60);
    o.fit = PE_FIT_SMALLER; /* LR: edge max(28, 40) = 40: target 40x40 + ref 20x40 */
    d.layout = PE_LAYOUT_LR;
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 60 && h == 40);
    o.fit = PE_FIT_LARGER; /* LR: edge 28: target 28x28 + ref 14x28 */
    CHECK_OK(pe_compose_size(28, 28, 20, 40, &o, &d, &w, &h));
    CHECK(w == 42 && h == 28);
    /* 2:1 stays 2:1 for equal squares: the geometry */
    o.fit = PE_FIT_REFERENCE;
    CHECK_OK(pe_compose_size(32, 32, 32, 32, &o, &d, &w, &h));
    CHECK(w == 64 && h == 32);
    /* scale jitter: target 0.5 -> 14x14, reference follows the edge */
    d.scale = 0.5;
    CHECK_OK(pe_compose_size(28, 28, 28, 28, &o, &d, &w, &h));
    CHECK(w == 28 && h == 14);
    /* too large */
    d.scale = 1;
    CHECK_RC(pe_compose_size(60000, 60000, 60000, 60000, &o, &d, &w, &h), PE_EUNSUPPORTED);
}

static void test_pixels(void) {
    for (uint32_t c = 1; c <= 3; c += 2) {
        pe_craft_opts o;
        pe_craft_opts_default(&o);
        o.gap = 2;
        o.fill[0] = 7, o.fill[1] = 8, o.fill[2] = 9;
        pe_image t = {0}, r = {0}, out = {0}, rr = {0};
        fill_pattern(&t, 12, 10, c, 1);
        fill_pattern(&r, 9, 15, c, 2);
        /* LR, reference first: reference resized to height 10 (6x10) */
        pe_craft_draw d = draw(PE_LAYOUT_LR, 0);
        CHECK_OK(pe_compose(&t, &r, &o, &d, &out));
        CHECK(out.w == 6 + 2 + 12 && out.h == 10 && out.c == c);
        CHECK_OK(pe_image_resize_bilinear(&r, &rr, 6, 10));
        CHECK(block_eq(&out, 0, 0, &rr));
        CHECK(block_eq(&out, 8, 0, &t)); /* the target's own pixels, exact */
        int gap_ok = 1;
        for (uint32_t y = 0; y < 10; y++)
            for (uint32_t x = 6; x < 8; x++)
                for (uint32_t k = 0; k < c; k++)
                    gap_ok &= out.px[((size_t)y * out.w + x) * c + k] == (c == 1 ? 7 : 7 + k);
        CHECK(gap_ok);
        pe_image_free(&out);
        pe_image_free(&rr);
        /* TB, target first, with an offset window: reference resized to
         * width 12 + 4 = 16 (16x27 after rounding 15*16/9 = 26.67), then the
         * 12-wide window from column 3 */
        d = draw(PE_LAYOUT_TB, 1);
        d.off = 4;
        d.shift = 3;
        o.gap = 0;
        CHECK_OK(pe_compose(&t, &r, &o, &d, &out));
        CHECK(out.w == 12 && out.h == 10 + 27);
        CHECK_OK(pe_image_resize_bilinear(&r, &rr, 16, 27));
        CHECK(block_eq(&out, 0, 0, &t));
        pe_image win = {0};
        pe_image_alloc(&win, 12, 27, c);
        for (uint32_t y = 0; y < 27; y++)
            memcpy(win.px + (size_t)y * 12 * c, rr.px + ((size_t)y * 16 + 3) * c, 12 * c);
        CHECK(block_eq(&out, 0, 10, &win));
        pe_image_free(&win);
        pe_image_free(&out);
        pe_image_free(&rr);
        pe_image_free(&t);
        pe_image_free(&r);
    }
    /* channel mismatch */
    pe_craft_opts o;
    pe_craft_opts_default(&o);
    pe_image g = {0}, rgb = {0}, out = {0};
    fill_pattern(&g, 4, 4, 1, 1);
    fill_pattern(&rgb, 4, 4, 3, 1);
    pe_craft_draw d = draw(PE_LAYOUT_LR, 1);
    CHECK_RC(pe_compose(&g, &rgb, &o, &d, &out), PE_EUSAGE);
    CHECK(out.px == NULL);
    pe_image_free(&g);
    pe_image_free(&rgb);
}

static int draw_eq(const pe_craft_draw *a, const pe_craft_draw *b) {
    return a->layout == b->layout && a->target_first == b->target_first && a->ref == b->ref &&
           a->scale == b->scale && a->off == b->off && a->shift == b->shift;
}

static int made_eq(const pe_craft_made *a, const pe_craft_made *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(a[i].key.b, b[i].key.b, PE_KEY_LEN) || a[i].target != b[i].target ||
            a[i].ref != b[i].ref || a[i].layout != b[i].layout ||
            a[i].target_first != b[i].target_first)
            return 0;
    return 1;
}

static void test_draws(void) {
    pe_craft_opts o;
    pe_craft_opts_default(&o);
    o.seed = 42;
    pe_craft_draw a, b;
    int lr = 0, first = 0, refs[5] = {0}, differ = 0;
    for (uint32_t j = 0; j < 400; j++) {
        pe_craft_draw_params(&o, 3, j, 0, 5, &a);
        pe_craft_draw_params(&o, 3, j, 0, 5, &b);
        CHECK(draw_eq(&a, &b));
        lr += a.layout == PE_LAYOUT_LR;
        first += a.target_first;
        refs[a.ref]++;
        CHECK(a.scale == 1.0 && a.off == 0);
        pe_craft_draw_params(&o, 4, j, 0, 5, &b); /* another target: another stream */
        differ += !draw_eq(&a, &b);
    }
    CHECK(lr > 150 && lr < 250 && first > 150 && first < 250);
    for (int k = 0; k < 5; k++) CHECK(refs[k] > 50);
    CHECK(differ > 200);
    o.draw = PE_DRAW_ROUND_ROBIN;
    o.layouts = PE_LAYOUT_TB;
    for (uint32_t j = 0; j < 12; j++) {
        pe_craft_draw_params(&o, 0, j, 0, 5, &a);
        CHECK(a.ref == j % 5 && a.layout == PE_LAYOUT_TB);
    }
    /* retries draw a scale and an offset */
    pe_craft_draw_params(&o, 0, 0, 1, 5, &a);
    CHECK(a.scale >= 0.75 && a.scale <= 1.25 && a.off <= 4 && a.shift <= a.off);
    o.jitter = 0.1;
    for (uint32_t j = 0; j < 50; j++) {
        pe_craft_draw_params(&o, 0, j, 0, 5, &a);
        CHECK(a.scale >= 0.9 && a.scale <= 1.1);
    }
    unsigned m;
    CHECK_OK(pe_layouts_parse("tb,lr", &m));
    CHECK(m == (PE_LAYOUT_LR | PE_LAYOUT_TB));
    CHECK_RC(pe_layouts_parse("lr,xx", &m), PE_EUSAGE);
    CHECK_RC(pe_layouts_parse("", &m), PE_EUSAGE);
}

/* ---- on a store ---- */

static pe_key put(pe_txn *t, uint32_t w, uint32_t h, uint32_t c, unsigned seed) {
    pe_image im = {0};
    fill_pattern(&im, w, h, c, seed);
    pe_key k;
    int existed;
    CHECK_OK(pe_img_put(t, &im, PE_ENC_RAW, NULL, &k, &existed));
    pe_image_free(&im);
    return k;
}

static size_t n_images(pe_store *st) {
    pe_txn *t;
    pe_store_stats s;
    if (pe_txn_begin(st, 0, &t)) return (size_t)-1;
    int rc = pe_store_stats_get(t, &s);
    pe_txn_abort(t);
    return rc ? (size_t)-1 : (size_t)s.n_images;
}

static int body_fail(void *ctx, pe_txn *t) {
    put(t, 3, 3, 1, 99);
    return pe_fail(PE_EUSAGE, "stop");
}

static int body_ok(void *ctx, pe_txn *t) {
    put(t, 3, 3, 1, 99);
    return 0;
}

static void test_run(void) {
    pe_store *st;
    CHECK_OK(pe_store_open(&st, P("craft.lmdb"), PE_STORE_CREATE));
    pe_txn *t;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    pe_craft_target tg[2];
    pe_craft_ref rf[4];
    tg[0] = (pe_craft_target){put(t, 8, 8, 1, 1), 3, 7};
    tg[1] = (pe_craft_target){put(t, 8, 8, 1, 2), 5, 4};
    rf[0] = (pe_craft_ref){put(t, 8, 8, 1, 10), 3};
    rf[1] = (pe_craft_ref){put(t, 6, 9, 1, 11), 3};
    rf[2] = (pe_craft_ref){put(t, 8, 8, 1, 12), 5};
    rf[3] = (pe_craft_ref){put(t, 8, 8, 3, 13), 7}; /* another class, RGB: unused */
    pe_key gray3 = put(t, 8, 8, 3, 14);
    CHECK_OK(pe_txn_commit(t));
    size_t before = n_images(st);

    pe_craft_opts o;
    pe_craft_opts_default(&o);
    o.seed = 5;
    pe_craft_made made[11], made2[11];
    pe_craft_summary s, s2;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_craft_run(t, &o, tg, 2, rf, 4, made, &s));
    CHECK(s.total == 11 && s.distinct <= 11 && s.distinct >= 2);
    /* the recorded occurrences are the counts asked for, per target */
    int per[2] = {0};
    for (int i = 0; i < 11; i++) {
        per[made[i].target]++;
        CHECK(rf[made[i].ref].cls == tg[made[i].target].cls);
        pe_image im = {0};
        CHECK_OK(pe_img_get(t, &made[i].key, &im));
        CHECK((im.w == 16 && im.h == 8) || (im.w == 8 && im.h == 16) ||
              (im.w == 8 + 5 && im.h == 8) || (im.w == 8 && im.h == 8 + 12));
        pe_image_free(&im);
        /* provenance names the attack, the target and the reference */
        pe_info info;
        CHECK_OK(pe_info_get(t, &made[i].key, &info));
        char th[PE_KEY_HEX + 1], rh[PE_KEY_HEX + 1], want[200];
        pe_key_to_hex(&tg[made[i].target].key, th);
        pe_key_to_hex(&rf[made[i].ref].key, rh);
        CHECK(info.n >= 1 && !strcmp(info.prov[0].src, "pe-craft"));
        int found = 0;
        for (uint32_t q = 0; q < info.n; q++) {
            snprintf(want, sizeof want, "target=%s target_class=%d reference=%s", th,
                     tg[made[i].target].cls, rh);
            found |= strstr(info.prov[q].ops, want) != NULL &&
                     strstr(info.prov[q].ops, "attack=poisonedencoder version=1 seed=5 ") != NULL;
        }
        CHECK(found);
    }
    CHECK(per[0] == 7 && per[1] == 4);
    pe_txn_abort(t);
    /* reproducible: the same inputs make the same keys */
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_craft_run(t, &o, tg, 2, rf, 4, made2, &s2));
    CHECK(made_eq(made, made2, 11) && s.distinct == s2.distinct);
    pe_txn_abort(t);

    /* --distinct: every poison differs */
    o.distinct = 1;
    tg[0].count = 30;
    pe_craft_made many[34];
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_craft_run(t, &o, tg, 2, rf, 4, many, &s));
    CHECK(s.total == 34 && s.distinct == 34);
    int dup = 0;
    for (int i = 0; i < 34; i++)
        for (int k = 0; k < i; k++) dup += !memcmp(many[i].key.b, many[k].key.b, PE_KEY_LEN);
    CHECK(dup == 0);
    pe_txn_abort(t);
    /* a budget distinct draws cannot meet: 1x1 images have few composites */
    pe_craft_target tiny[1];
    pe_craft_ref tref[1];
    CHECK_OK(pe_txn_begin(st, 1, &t));
    tiny[0] = (pe_craft_target){put(t, 1, 1, 1, 1), 0, 500};
    tref[0] = (pe_craft_ref){put(t, 1, 1, 1, 2), 0};
    pe_craft_made *mm = malloc(500 * sizeof *mm);
    CHECK_RC(pe_craft_run(t, &o, tiny, 1, tref, 1, mm, &s), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "distinct") != NULL);
    free(mm);
    pe_txn_abort(t);
    o.distinct = 0;
    tg[0].count = 7;

    /* errors: no reference of the class, unknown keys, channel mismatch */
    CHECK_OK(pe_txn_begin(st, 1, &t));
    pe_craft_target bad = tg[0];
    bad.cls = 9;
    CHECK_RC(pe_craft_run(t, &o, &bad, 1, rf, 4, made, &s), PE_ENOTFOUND);
    CHECK(strstr(pe_errmsg(), "no reference of target class 9") != NULL);
    bad = tg[0];
    memset(bad.key.b, 0xab, PE_KEY_LEN);
    CHECK_RC(pe_craft_run(t, &o, &bad, 1, rf, 4, made, &s), PE_ENOTFOUND);
    CHECK(strstr(pe_errmsg(), "target abababab") != NULL);
    pe_craft_ref badr[2] = {rf[0], rf[1]};
    memset(badr[1].key.b, 0xcd, PE_KEY_LEN);
    CHECK_RC(pe_craft_run(t, &o, tg, 1, badr, 2, made, &s), PE_ENOTFOUND);
    CHECK(strstr(pe_errmsg(), "reference cdcdcdcd") != NULL);
    bad = tg[0];
    bad.key = gray3; /* a 3-channel target with 1-channel references */
    CHECK_RC(pe_craft_run(t, &o, &bad, 1, rf, 4, made, &s), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "channels") != NULL);
    pe_txn_abort(t);
    CHECK(n_images(st) == before); /* aborted runs stored nothing */

    /* pe_store_write commits a body's work, and aborts a failing one */
    CHECK_RC(pe_store_write(st, body_fail, NULL), PE_EUSAGE);
    CHECK(n_images(st) == before);
    CHECK_OK(pe_store_write(st, body_ok, NULL));
    CHECK(n_images(st) == before + 1);
    pe_store_close(st);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/pe-test-craft-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    RUN(test_sizes);
    RUN(test_pixels);
    RUN(test_draws);
    RUN(test_run);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return CHECK_DONE();
}
