/*
 * test_audit.c - checks lib/phash.c and lib/audit.c: the perceptual hash
 * against the committed vectors (tests/ref/phash_vectors.tsv: the pe spec
 * computed by an independent Python implementation, and Python imagehash's
 * phash), the Lanczos resize against Pillow where Pillow 9 is installed,
 * the multi-index search against brute force, each quality measure on
 * synthetic images, the seam and composite scores on synthetic
 * composites against plain images, the JSON escaping of the report's
 * data block, and the report file's creation and removal.
 *
 * Not for: the store or the program (tests/cli/audit.sh runs pe-audit on
 * Fashion-MNIST poisons).
 */
#include "audit.h"
#include "audit_impl.h"
#include "check.h"
#include "image.h"
#include "pe.h"
#include "phash.h"
#include "rng.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <unistd.h>

#define VECTORS "tests/ref/phash_vectors.tsv"

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The generator's formula for kind "gen" (tests/ref/make_phash_vectors.py). */
static void gen_image(pe_image *im, unsigned s) {
    for (uint32_t y = 0; y < im->h; y++)
        for (uint32_t x = 0; x < im->w; x++)
            for (uint32_t ch = 0; ch < im->c; ch++)
                im->px[((size_t)y * im->w + x) * im->c + ch] =
                    (uint8_t)((x * x * (s + 1) + 7 * y * (s + 2) + (x * y) / (s + 3) + 50 * ch) % 256);
}

static void test_phash_vectors(void) {
    FILE *f = fopen(VECTORS, "r");
    if (!f) {
        /* run from the repository root (tests/run.sh does) */
        fprintf(stderr, "  cannot open %s\n", VECTORS);
        CHECK(0);
        return;
    }
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    int n = 0, n_ih = 0, fm = 0, rgb = 0;
    while (fgets(line, (int)cap, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char *fld[8];
        int k = 0;
        for (char *p = line; k < 8; k++) {
            fld[k] = p;
            p = strchr(p, '\t');
            if (!p) {
                k++;
                break;
            }
            *p++ = 0;
        }
        CHECK(k == 8);
        if (k != 8) break;
        fld[7][strcspn(fld[7], "\n")] = 0;
        pe_image im = {0};
        uint32_t w = (uint32_t)atoi(fld[2]), h = (uint32_t)atoi(fld[3]), c = (uint32_t)atoi(fld[4]);
        CHECK_OK(pe_image_alloc(&im, w, h, c));
        if (!strcmp(fld[1], "hex")) {
            CHECK(strlen(fld[5]) == 2 * pe_image_size(&im));
            for (size_t i = 0; i < pe_image_size(&im); i++)
                im.px[i] = (uint8_t)(hexval(fld[5][2 * i]) * 16 + hexval(fld[5][2 * i + 1]));
        } else {
            gen_image(&im, (unsigned)atoi(fld[5]));
        }
        uint64_t want, got;
        CHECK_OK(pe_phash_from_hex(fld[6], &want));
        CHECK_OK(pe_phash(&im, PE_PHASH_PE, &got));
        if (got != want) fprintf(stderr, "  %s: pe hash %016llx, want %s\n", fld[0], (unsigned long long)got, fld[6]);
        CHECK(got == want);
        if (strcmp(fld[7], "-")) {
            CHECK_OK(pe_phash_from_hex(fld[7], &want));
            CHECK_OK(pe_phash(&im, PE_PHASH_IMAGEHASH, &got));
            if (got != want)
                fprintf(stderr, "  %s: imagehash %016llx, want %s\n", fld[0], (unsigned long long)got, fld[7]);
            CHECK(got == want);
            n_ih++;
        }
        char hx[17];
        pe_phash_hex(got, hx);
        CHECK(strlen(hx) == 16);
        fm += !strncmp(fld[0], "fmnist", 6);
        rgb += c == 3;
        n++;
        pe_image_free(&im);
    }
    free(line);
    fclose(f);
    /* the file is whole: Fashion-MNIST, composites, RGB, odd sizes */
    CHECK(n >= 50 && n_ih >= 48 && fm >= 30 && rgb >= 6);
}

/* Spec vectors by construction: a constant image has no AC energy, so
 * only the DC bit can exceed the median (zero); black has none. */
static void test_phash_spec_edges(void) {
    pe_image im = {0};
    uint64_t h;
    CHECK_OK(pe_image_alloc(&im, 8, 8, 1));
    memset(im.px, 0, 64);
    CHECK_OK(pe_phash(&im, PE_PHASH_PE, &h));
    CHECK(h == 0);
    memset(im.px, 77, 64);
    CHECK_OK(pe_phash(&im, PE_PHASH_PE, &h));
    CHECK(h == 0x8000000000000000ull);
    pe_image_free(&im);
    /* a horizontal ramp: energy only in the first row of coefficients
     * (k = 0): the DC and the odd horizontal frequencies are positive or
     * negative, the rest zero; bits 63..56 hold row 0 */
    CHECK_OK(pe_image_alloc(&im, 32, 32, 1));
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++) im.px[y * 32 + x] = (uint8_t)(8 * x);
    CHECK_OK(pe_phash(&im, PE_PHASH_PE, &h));
    /* DC > 0; l = 1, 3, 5, 7 are negative for an increasing ramp; the other
     * 59 coefficients are 0 = the median, so not above it */
    CHECK(h == 0x8000000000000000ull);
    /* the reversed ramp: the odd coefficients turn positive */
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++) im.px[y * 32 + x] = (uint8_t)(8 * (31 - x));
    CHECK_OK(pe_phash(&im, PE_PHASH_PE, &h));
    CHECK(h == 0xD500000000000000ull);
    pe_image_free(&im);
    /* hex round trip and a bad hex */
    uint64_t v;
    CHECK_OK(pe_phash_from_hex("0123456789ABCDEF", &v));
    CHECK(v == 0x0123456789abcdefull);
    CHECK_RC(pe_phash_from_hex("0123456789abcdeg", &v), PE_EFORMAT);
    pe_phash_mode m;
    CHECK_OK(pe_phash_mode_parse("imagehash", &m));
    CHECK(m == PE_PHASH_IMAGEHASH);
    CHECK_RC(pe_phash_mode_parse("ahash", &m), PE_EUSAGE);
}

/* Pillow-exact Lanczos, against Pillow 9 (Pillow 10 and later change the
 * order of the passes for some shapes; see tests/ref/make_phash_vectors.py). */
static void test_lanczos_vs_pillow(void) {
    char dir[] = "/tmp/pe-test-audit-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char cmd[1024], path[600];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import PIL,sys; sys.exit(0 if PIL.__version__.startswith(\"9.\") else 1)' 2>/dev/null");
    if (system(cmd) != 0) {
        fprintf(stderr, "  skip: Pillow 9 not installed (the oracle of the Lanczos resize)\n");
        rmdir(dir);
        return;
    }
    static const uint32_t shapes[][5] = {
        /* w, h, c, out w, out h */
        {28, 28, 1, 32, 32}, {28, 56, 1, 32, 32}, {97, 41, 3, 32, 32}, {13, 70, 1, 32, 32},
        {200, 9, 3, 32, 32}, {40, 30, 3, 17, 45}, {5, 3, 1, 32, 32},
    };
    const int ns = (int)(sizeof shapes / sizeof *shapes);
    uint32_t seed = 12345;
    for (int i = 0; i < ns; i++) {
        pe_image im = {0};
        CHECK_OK(pe_image_alloc(&im, shapes[i][0], shapes[i][1], shapes[i][2]));
        for (size_t k = 0; k < pe_image_size(&im); k++) {
            seed = seed * 1664525u + 1013904223u;
            /* smooth plus noise: negative lobes overshoot at edges */
            im.px[k] = (uint8_t)((k % 7 < 3 ? 250 : 5) ^ (seed >> 28));
        }
        snprintf(path, sizeof path, "%s/in%d.raw", dir, i);
        FILE *f = fopen(path, "wb");
        fwrite(im.px, 1, pe_image_size(&im), f);
        fclose(f);
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c 'from PIL import Image; import sys; "
                 "im = Image.frombytes(\"%s\", (%u, %u), open(\"%s/in%d.raw\", \"rb\").read()); "
                 "open(\"%s/out%d.raw\", \"wb\").write(im.resize((%u, %u), Image.LANCZOS).tobytes())'",
                 shapes[i][2] == 1 ? "L" : "RGB", shapes[i][0], shapes[i][1], dir, i, dir, i,
                 shapes[i][3], shapes[i][4]);
        CHECK(system(cmd) == 0);
        pe_image out = {0}, out2 = {0};
        CHECK_OK(pe_image_resize_lanczos(&im, &out, shapes[i][3], shapes[i][4]));
        snprintf(path, sizeof path, "%s/out%d.raw", dir, i);
        f = fopen(path, "rb");
        uint8_t *want = malloc(pe_image_size(&out));
        size_t got = f ? fread(want, 1, pe_image_size(&out), f) : 0;
        if (f) fclose(f);
        CHECK(got == pe_image_size(&out) && !memcmp(want, out.px, got));
        /* the scalar passes give the same bytes as the vector ones */
        setenv("PE_NO_SIMD", "1", 1);
        CHECK_OK(pe_image_resize_lanczos(&im, &out2, shapes[i][3], shapes[i][4]));
        unsetenv("PE_NO_SIMD");
        CHECK(!memcmp(out2.px, out.px, pe_image_size(&out)));
        free(want);
        pe_image_free(&out);
        pe_image_free(&out2);
        pe_image_free(&im);
        snprintf(path, sizeof path, "%s/in%d.raw", dir, i);
        unlink(path);
        snprintf(path, sizeof path, "%s/out%d.raw", dir, i);
        unlink(path);
    }
    rmdir(dir);
}

/* ---- search == brute force ---- */

typedef struct hits {
    uint32_t *v;
    size_t n, cap;
    int bad;
    const uint64_t *h;
    uint64_t q;
} hits;

static int on_hit(void *ctx, uint32_t id, int d) {
    hits *c = ctx;
    if (pe_hamming(c->h[id], c->q) != d) c->bad = 1;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->v = realloc(c->v, c->cap * sizeof *c->v);
    }
    c->v[c->n++] = id;
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void search_vs_brute_once(void) {
    const size_t n = 3000;
    uint64_t *h = malloc(n * sizeof *h), s = 42;
    /* half uniform, half in 40 clusters of hashes a few bits from a centre
     * (as real images' hashes cluster), with exact copies among them */
    uint64_t centre[40];
    for (int i = 0; i < 40; i++) centre[i] = pe_splitmix64(&s);
    for (size_t i = 0; i < n; i++) {
        if (i % 2 == 0) {
            h[i] = pe_splitmix64(&s);
        } else {
            uint64_t v = centre[pe_splitmix64(&s) % 40];
            int flips = (int)(pe_splitmix64(&s) % 14);
            for (int k = 0; k < flips; k++) v ^= 1ull << (pe_splitmix64(&s) % 64);
            h[i] = v;
        }
    }
    pe_hindex *ix;
    CHECK_OK(pe_hindex_build(&ix, h, n));
    CHECK(pe_hindex_size(ix) == n);
    static const int radii[] = {0, 1, 3, 4, 8, 12, 15, 16, 20};
    uint32_t *want = malloc(n * sizeof *want);
    size_t pairs_total = 0;
    for (size_t r = 0; r < sizeof radii / sizeof *radii; r++) {
        size_t mismatch = 0;
        for (size_t i = 0; i < n; i++) {
            const uint64_t q = i % 3 ? h[i] : pe_splitmix64(&s); /* stored and unseen queries */
            size_t nw = 0;
            for (size_t j = 0; j < n; j++)
                if (pe_hamming(h[j], q) <= radii[r]) want[nw++] = (uint32_t)j;
            hits c = {0};
            c.h = h;
            c.q = q;
            CHECK_OK(pe_hindex_query(ix, q, radii[r], on_hit, &c));
            if (c.n) qsort(c.v, c.n, sizeof *c.v, cmp_u32);
            /* exactly the brute-force set, each once */
            if (c.bad || c.n != nw || (nw && memcmp(c.v, want, nw * sizeof *want))) mismatch++;
            pairs_total += nw;
            free(c.v);
        }
        if (mismatch) fprintf(stderr, "  radius %d: %zu queries differ from brute force\n", radii[r], mismatch);
        CHECK(mismatch == 0);
    }
    CHECK(pairs_total > 10 * n); /* the clusters made the radii meaningful */
    free(want);
    pe_hindex_free(ix);
    CHECK_OK(pe_hindex_build(&ix, h, 0)); /* empty */
    hits c = {0};
    CHECK_OK(pe_hindex_query(ix, 0, 8, on_hit, &c));
    CHECK(c.n == 0);
    pe_hindex_free(ix);
    free(h);
}

/* ---- quality measures ---- */

static void fill_noise(pe_image *im, int lo, int hi, uint32_t seed) {
    for (size_t k = 0; k < pe_image_size(im); k++) {
        seed = seed * 1664525u + 1013904223u;
        im->px[k] = (uint8_t)(lo + (int)((seed >> 16) % (unsigned)(hi - lo + 1)));
    }
}

/* Both compilations of the query: with POPCNT where the CPU has it, and
 * the plain one (PE_NO_SIMD at build time). And the choice of block
 * layout: hashes whose top quarter never changes (as a pHash's DC bit
 * never does) crowd one bucket of the quarters' layout, so the build must
 * pick a permutation, and the queries still find exactly what a scan does. */
static void test_search_vs_brute(void) {
    uint64_t s = 7, h[2000];
    for (size_t i = 0; i < 2000; i++) h[i] = (pe_splitmix64(&s) & 0xFFFFFFFFFFFFull) | 0xBEEFull << 48;
    pe_hindex *ix;
    CHECK_OK(pe_hindex_build(&ix, h, 2000));
    CHECK(pe_hindex_layout(ix) != 0);
    size_t bad = 0;
    for (size_t i = 0; i < 2000; i += 7) {
        size_t nw = 0;
        for (size_t j = 0; j < 2000; j++) nw += pe_hamming(h[j], h[i]) <= 9;
        hits c = {0};
        c.h = h;
        c.q = h[i];
        CHECK_OK(pe_hindex_query(ix, h[i], 9, on_hit, &c));
        bad += c.bad || c.n != nw;
        free(c.v);
    }
    CHECK(bad == 0);
    pe_hindex_free(ix);
    search_vs_brute_once();
    setenv("PE_NO_SIMD", "1", 1);
    search_vs_brute_once();
    unsetenv("PE_NO_SIMD");
}

static void test_quality(void) {
    pe_image im = {0};
    pe_quality q;
    pe_audit_opts o;
    pe_audit_opts_default(&o);
    CHECK_OK(pe_image_alloc(&im, 40, 30, 1));
    /* dark: every pixel 0..20 */
    fill_noise(&im, 0, 20, 1);
    CHECK_OK(pe_audit_quality(&im, &q));
    CHECK(q.p99 <= 20 && 1 - q.p99 / 255 >= o.threshold[PE_SCAN_DARK]);
    /* light: 235..255 */
    fill_noise(&im, 235, 255, 2);
    CHECK_OK(pe_audit_quality(&im, &q));
    CHECK(q.p01 >= 235 && q.p01 / 255 >= o.threshold[PE_SCAN_LIGHT]);
    /* noise over the full range: neither, sharp, high entropy */
    fill_noise(&im, 0, 255, 3);
    CHECK_OK(pe_audit_quality(&im, &q));
    CHECK(1 - q.p99 / 255 < o.threshold[PE_SCAN_DARK] && q.p01 / 255 < o.threshold[PE_SCAN_LIGHT]);
    CHECK(q.entropy > 7.5 && q.lap_var > 1000);
    /* blurry: a smooth ramp has a Laplacian of 0 */
    for (uint32_t y = 0; y < 30; y++)
        for (uint32_t x = 0; x < 40; x++) im.px[y * 40 + x] = (uint8_t)(50 + 4 * x);
    CHECK_OK(pe_audit_quality(&im, &q));
    CHECK(q.lap_var < 1e-9 && 1 / (1 + q.lap_var / 100) >= o.threshold[PE_SCAN_BLURRY]);
    CHECK(q.seam == 0); /* a ramp has no jump */
    /* low information: two values, half each: exactly 1 bit */
    for (size_t k = 0; k < pe_image_size(&im); k++) im.px[k] = (uint8_t)(k % 2 ? 200 : 10);
    CHECK_OK(pe_audit_quality(&im, &q));
    CHECK(fabs(q.entropy - 1.0) < 1e-12 && 1 - q.entropy / 8 >= o.threshold[PE_SCAN_LOWINFO]);
    /* a tiny image has no Laplacian (not blurry by default) */
    pe_image_free(&im);
    CHECK_OK(pe_image_alloc(&im, 2, 9, 1));
    fill_noise(&im, 0, 255, 4);
    CHECK_OK(pe_audit_quality(&im, &q));
    CHECK(q.lap_var < 0);
    pe_image_free(&im);
    /* chroma: gray stored as RGB has 0, a colour image more */
    CHECK_OK(pe_image_alloc(&im, 16, 16, 3));
    for (size_t k = 0; k < 256; k++) im.px[3 * k] = im.px[3 * k + 1] = im.px[3 * k + 2] = (uint8_t)k;
    CHECK_OK(pe_audit_quality(&im, &q));
    CHECK(q.chroma == 0);
    for (size_t k = 0; k < 256; k++) im.px[3 * k + 2] = (uint8_t)(255 - k);
    CHECK_OK(pe_audit_quality(&im, &q));
    CHECK(q.chroma > 50);
    pe_image_free(&im);
}

/* parts: halves at five fractions along each axis and quadrants */
static void test_parts(void) {
    pe_part p[PE_AUDIT_MAX_PARTS];
    int n = pe_audit_parts(56, 28, p);
    CHECK(n == 24);
    int found = 0;
    for (int i = 0; i < n; i++) {
        CHECK(p[i].x1 > p[i].x0 && p[i].y1 > p[i].y0 && p[i].x1 <= 56 && p[i].y1 <= 28);
        if (!strcmp(p[i].name, "left@1/2")) found = p[i].x0 == 0 && p[i].x1 == 28 && p[i].y1 == 28;
    }
    CHECK(found);
    CHECK(pe_audit_parts(7, 7, p) == 0); /* every part under 4 pixels */
    double s[6] = {0.9, 0.8, 0.8, 0.1, 0.3, 0.2};
    uint8_t pos[6] = {1, 1, 0, 0, 0, 0};
    /* pairs: 0.9 beats all 4; 0.8 beats 3 and ties 1 -> (4 + 3.5) / 8 */
    CHECK(fabs(pe_audit_auc(s, pos, 6) - 7.5 / 8) < 1e-12);
    uint8_t none[6] = {0};
    CHECK(pe_audit_auc(s, none, 6) < 0);
}

/* ---- seam and composite on synthetic images ---- */

/* A smooth textured "photo": sums of a few sinusoids, different per seed. */
static void photo(pe_image *im, int seed) {
    for (uint32_t y = 0; y < im->h; y++)
        for (uint32_t x = 0; x < im->w; x++) {
            double v = 128 + 60 * sin(0.21 * x * (1 + seed % 3) + seed) +
                       50 * cos(0.17 * y * (1 + seed % 5) + 2 * seed) +
                       15 * sin(0.05 * (x + y) * seed);
            for (uint32_t ch = 0; ch < im->c; ch++)
                im->px[((size_t)y * im->w + x) * im->c + ch] =
                    (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
        }
}

static void side_by_side(const pe_image *a, const pe_image *b, pe_image *out) {
    PE_ASSERT(a->h == b->h && a->c == b->c);
    CHECK_OK(pe_image_alloc(out, a->w + b->w, a->h, a->c));
    for (uint32_t y = 0; y < a->h; y++) {
        memcpy(out->px + (size_t)y * out->w * a->c, a->px + (size_t)y * a->w * a->c, (size_t)a->w * a->c);
        memcpy(out->px + ((size_t)y * out->w + a->w) * a->c, b->px + (size_t)y * b->w * b->c,
               (size_t)b->w * b->c);
    }
}

static void test_seam_and_composite(void) {
    pe_audit_opts o;
    pe_audit_opts_default(&o);
    pe_image a[6] = {{0}}, comp = {0};
    pe_quality q;
    double plain_max = 0, comp_min = 1;
    for (int i = 0; i < 6; i++) {
        CHECK_OK(pe_image_alloc(&a[i], 48, 48, 3));
        photo(&a[i], i + 1);
        CHECK_OK(pe_audit_quality(&a[i], &q));
        if (q.seam > plain_max) plain_max = q.seam;
    }
    for (int i = 0; i + 1 < 6; i++) {
        side_by_side(&a[i], &a[i + 1], &comp);
        CHECK_OK(pe_audit_quality(&comp, &q));
        if (q.seam < comp_min) comp_min = q.seam;
        /* found at the cut, vertical */
        CHECK(q.seam_vertical == 1 && q.seam_at == 48);
        /* the composite's half is the plain image: same hash, distance 0 */
        pe_part p[PE_AUDIT_MAX_PARTS];
        int np = pe_audit_parts(comp.w, comp.h, p), hit = 0;
        uint64_t ha, hb;
        CHECK_OK(pe_phash(&a[i], o.mode, &ha));
        CHECK_OK(pe_phash(&a[i + 1], o.mode, &hb));
        for (int k = 0; k < np; k++) {
            uint8_t t[PE_PHASH_THUMB];
            CHECK_OK(pe_phash_thumb(&comp, p[k].x0, p[k].y0, p[k].x1, p[k].y1, t));
            uint64_t h = pe_phash_of_thumb(t, o.mode);
            if (!strcmp(p[k].name, "left@1/2")) hit += pe_hamming(h, ha) == 0;
            if (!strcmp(p[k].name, "right@1/2")) hit += pe_hamming(h, hb) == 0;
        }
        CHECK(hit == 2);
        /* and the whole composite is far from both halves */
        uint64_t hc;
        CHECK_OK(pe_phash(&comp, o.mode, &hc));
        CHECK(pe_hamming(hc, ha) > o.radius && pe_hamming(hc, hb) > o.radius);
        pe_image_free(&comp);
    }
    fprintf(stderr, "  seam: plain images at most %.3f, composites at least %.3f\n", plain_max, comp_min);
    /* every composite above every plain image (the default threshold is
     * set for few false positives on line art; see pe-audit(1)) */
    CHECK(comp_min > plain_max + 0.2);
    for (int i = 0; i < 6; i++) pe_image_free(&a[i]);
}

static void test_scan_list(void) {
    unsigned m;
    CHECK_OK(pe_scan_list_parse("exact,seam", &m));
    CHECK(m == ((1u << PE_SCAN_EXACT) | (1u << PE_SCAN_SEAM)));
    CHECK_OK(pe_scan_list_parse("poison", &m));
    CHECK(m & (1u << PE_SCAN_COMPOSITE) && !(m & (1u << PE_SCAN_DARK)));
    CHECK_RC(pe_scan_list_parse("exact,nosuch", &m), PE_EUSAGE);
    CHECK_RC(pe_scan_list_parse("", &m), PE_EUSAGE);
    CHECK_RC(pe_scan_list_parse("exact,", &m), PE_EUSAGE);
}

/* The JSON a report's <script> element holds: never a '<', '>' or '&'
 * (so no "</script" and no "<!--"), and still the same string for a JSON
 * parser. */
static void test_json_in_script(void) {
    static const struct {
        const char *in, *plain, *script;
    } v[] = {
        {"</script><!--", "</script><!--", "\\u003c/script\\u003e\\u003c!--"},
        {"a&b\"c\\d", "a&b\\\"c\\\\d", "a\\u0026b\\\"c\\\\d"},
        {"t\tn\n\xff<", "t\\tn\\n\\ufffd<", "t\\tn\\n\\ufffd\\u003c"},
        {"\xe2\x80\xa8 \xc3\xa9", "\\u2028 \xc3\xa9", "\\u2028 \xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        for (int in_script = 0; in_script < 2; in_script++) {
            char *buf = NULL;
            size_t len = 0;
            FILE *f = open_memstream(&buf, &len);
            CHECK(f != NULL);
            if (!f) return;
            pe_audit_json_str(f, v[i].in, in_script);
            fclose(f);
            const char *want = in_script ? v[i].script : v[i].plain;
            CHECK(!strcmp(buf, want));
            if (strcmp(buf, want)) fprintf(stderr, "  %zu/%d: got '%s', want '%s'\n", i, in_script, buf, want);
            free(buf);
        }
    }
    /* a long name crosses the escaper's chunks without losing a byte */
    char long_name[3000];
    for (size_t i = 0; i + 1 < sizeof long_name; i++) long_name[i] = "<a\xc3\xa9>"[i % 5];
    long_name[sizeof long_name - 1] = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return;
    pe_audit_json_str(f, long_name, 1);
    fclose(f);
    CHECK(!strchr(buf, '<') && !strchr(buf, '>') && !strchr(buf, '&'));
    /* 599 whole "<a\xc3\xa9>" (15 bytes each escaped), then "<a\xc3\xa9" (9) */
    CHECK(len == 599 * 15 + 9);
    free(buf);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* The report file: created before the work (so a bad path fails first),
 * removed by discard, refused for a folder or a missing folder. */
static void test_report_file(void) {
    char dir[] = "/tmp/pe-test-audit-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/r.html", dir);
    pe_audit_report rf;
    CHECK_OK(pe_audit_report_open(&rf, path));
    CHECK(rf.fd >= 0 && rf.tmp && !strncmp(rf.tmp, path, strlen(path)));
    CHECK(count_entries(dir) == 1);
    CHECK(access(path, F_OK) != 0);
    pe_audit_report_discard(&rf);
    CHECK(count_entries(dir) == 0 && rf.tmp == NULL && rf.fd == -1);
    pe_audit_report_discard(&rf); /* twice is harmless */
    CHECK_RC(pe_audit_report_open(&rf, dir), EISDIR);
    CHECK(strstr(pe_errmsg(), "is a folder") != NULL);
    snprintf(bad, sizeof bad, "%s/no/r.html", dir);
    CHECK_RC(pe_audit_report_open(&rf, bad), ENOENT);
    CHECK(strstr(pe_errmsg(), bad) != NULL);
    CHECK(rf.tmp == NULL && rf.fd == -1);
    pe_audit_report_discard(&rf);
    CHECK(count_entries(dir) == 0);
    rmdir(dir);
}

int main(void) {
    RUN(test_phash_vectors);
    RUN(test_phash_spec_edges);
    RUN(test_lanczos_vs_pillow);
    RUN(test_search_vs_brute);
    RUN(test_quality);
    RUN(test_parts);
    RUN(test_seam_and_composite);
    RUN(test_scan_list);
    RUN(test_json_in_script);
    RUN(test_report_file);
    return CHECK_DONE();
}
