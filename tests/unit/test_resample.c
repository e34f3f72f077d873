/*
 * test_resample.c - checks lib/image.c and lib/resample.c: allocation
 * limits, channel conversion, EXIF orientation and bilinear resizing, the
 * last three byte for byte against Pillow (/usr/bin/python3 with PIL).
 *
 * Not for: codecs or timing. Pillow is the oracle: the test writes its
 * random inputs as raw bytes into a temporary directory, runs one small
 * Python script per test over a manifest of jobs, and compares the bytes it
 * writes back. There is no tolerance anywhere: the contract is bit-exact.
 * Where Python or PIL is missing, the Pillow comparisons are skipped with a
 * printed reason and the self-contained checks still run.
 *
 * lib/resample.c has vector passes (AVX2, chosen at run time) beside the
 * scalar ones. The Pillow comparisons run on whichever the environment
 * selects (PE_NO_SIMD=1 forces the scalar passes; run the test both ways),
 * and test_resize_simd_vs_scalar compares the two paths byte for byte on
 * many more shapes and boxes than Pillow is asked about.
 */
#include "check.h"
#include "image.h"
#include "pe.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

static char tmpdir[] = "/tmp/pe-test-resample-XXXXXX";
static int have_pil;

/* Each manifest line is one job; the script writes out<i>.raw holding
 * "W H C\n" and then the pixels, so the shape is checked too. */
static const char pil_script[] =
    "import sys\n"
    "from PIL import Image, ImageOps\n"
    "BILINEAR = getattr(Image, 'Resampling', Image).BILINEAR\n"
    "def load(path, w, h, c):\n"
    "    with open(path, 'rb') as f:\n"
    "        return Image.frombytes('L' if c == 1 else 'RGB', (w, h), f.read())\n"
    "for line in open(sys.argv[1]):\n"
    "    f = line.split()\n"
    "    op, src, dst = f[0], f[1], f[2]\n"
    "    w, h, c = int(f[3]), int(f[4]), int(f[5])\n"
    "    im = load(src, w, h, c)\n"
    "    if op == 'resize':\n"
    "        box = tuple(float(v) for v in f[8:12]) if len(f) > 8 else None\n"
    "        out = im.resize((int(f[6]), int(f[7])), BILINEAR, box=box)\n"
    "    elif op == 'gray':\n"
    "        out = im.convert('L')\n"
    "    elif op == 'orient':\n"
    "        im.getexif()[0x0112] = int(f[6])\n"
    "        out = ImageOps.exif_transpose(im)\n"
    "    else:\n"
    "        raise SystemExit('unknown job ' + op)\n"
    "    with open(dst, 'wb') as g:\n"
    "        g.write(b'%d %d %d\\n' % (out.size[0], out.size[1],\n"
    "                                 1 if out.mode == 'L' else 3))\n"
    "        g.write(out.tobytes())\n";

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
    /* xorshift64*: fixed seeds, so every run sees the same images. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static uint32_t rng_range(uint64_t *s, uint32_t lo, uint32_t hi) {
    return lo + (uint32_t)(rng_next(s) % (hi - lo + 1));
}

static double rng_unit(uint64_t *s) {
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

static void random_image(pe_image *im, uint32_t w, uint32_t h, uint32_t c,
                         uint64_t seed) {
    CHECK_OK(pe_image_alloc(im, w, h, c));
    if (!im->px) return;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < pe_image_size(im); i++)
        im->px[i] = (uint8_t)(rng_next(&s) >> 56);
}

static void fill_image(pe_image *im, uint32_t w, uint32_t h, uint32_t c,
                       uint8_t v) {
    CHECK_OK(pe_image_alloc(im, w, h, c));
    if (im->px) memset(im->px, v, pe_image_size(im));
}

static int write_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(buf, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Compares two images byte for byte; on a difference prints the number of
 * differing bytes and the first one, and returns 0. */
static int same_image(const char *what, const pe_image *got,
                      const pe_image *want) {
    if (got->w != want->w || got->h != want->h || got->c != want->c) {
        fprintf(stderr, "    %s: shape %ux%ux%u, Pillow %ux%ux%u\n", what,
                got->w, got->h, got->c, want->w, want->h, want->c);
        return 0;
    }
    size_t n = pe_image_size(got), bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (got->px[i] != want->px[i] && bad++ == 0) first = i;
    if (bad == 0) return 1;
    size_t c = got->c, row = (size_t)got->w * c;
    fprintf(stderr,
            "    %s: %zu of %zu bytes differ; first at x=%zu y=%zu ch=%zu: "
            "got %u, Pillow %u\n",
            what, bad, n, (first % row) / c, first / row, first % c,
            got->px[first], want->px[first]);
    return 0;
}

/* ---- the Pillow side --------------------------------------------------- */

typedef struct pil_batch {
    FILE *manifest;
    int n;
} pil_batch;

static int pil_begin(pil_batch *b) {
    char path[256];
    snprintf(path, sizeof path, "%s/manifest", tmpdir);
    b->n = 0;
    b->manifest = fopen(path, "w");
    CHECK(b->manifest != NULL);
    return b->manifest != NULL;
}

/* Writes im as in<i>.raw and starts job i's manifest line (the caller
 * finishes it with any operands and a newline). Returns i. */
static int pil_add(pil_batch *b, const char *op, const pe_image *im) {
    char path[256];
    int i = b->n++;
    snprintf(path, sizeof path, "%s/in%d.raw", tmpdir, i);
    CHECK(write_file(path, im->px, pe_image_size(im)));
    fprintf(b->manifest, "%s %s %s/out%d.raw %u %u %u", op, path, tmpdir, i,
            im->w, im->h, im->c);
    return i;
}

static int pil_run(pil_batch *b) {
    char cmd[768];
    int ok = fclose(b->manifest) == 0;
    b->manifest = NULL;
    CHECK(ok);
    if (!ok) return 0;
    snprintf(cmd, sizeof cmd, PYTHON " %s/pil.py %s/manifest", tmpdir,
             tmpdir);
    int rc = system(cmd);
    CHECK(rc == 0);
    return rc == 0;
}

/* Reads job i's result into *out (allocated here). */
static int pil_result(int i, pe_image *out) {
    char path[256];
    unsigned w = 0, h = 0, c = 0;
    snprintf(path, sizeof path, "%s/out%d.raw", tmpdir, i);
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "    cannot open %s\n", path);
        return 0;
    }
    int ok = fscanf(f, "%u %u %u", &w, &h, &c) == 3 && fgetc(f) == '\n' &&
             pe_image_alloc(out, w, h, c) == 0 &&
             fread(out->px, 1, pe_image_size(out), f) == pe_image_size(out) &&
             fgetc(f) == EOF;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "    %s: malformed Pillow output\n", path);
        pe_image_free(out);
    }
    return ok;
}

/* ---- allocation -------------------------------------------------------- */

static void test_alloc(void) {
    pe_image im;
    memset(&im, 0xAB, sizeof im);
    /* 0xFFFFFFFF^2 still fits in 64 bits; times 3 channels does not. */
    CHECK_RC(pe_image_alloc(&im, 0xFFFFFFFFu, 0xFFFFFFFFu, 3), PE_ETOOBIG);
    CHECK(im.px == NULL && im.w == 0 && im.h == 0 && im.c == 0);
    CHECK_RC(pe_image_alloc(&im, 0xFFFFFFFFu, 0xFFFFFFFFu, 2), PE_EUSAGE);
    CHECK_RC(pe_image_alloc(&im, 4, 4, 0), PE_EUSAGE);
    CHECK_RC(pe_image_alloc(&im, 4, 4, 4), PE_EUSAGE);
    CHECK_RC(pe_image_alloc(&im, 0, 4, 1), PE_EUSAGE);
    CHECK_RC(pe_image_alloc(&im, 4, 0, 3), PE_EUSAGE);
    CHECK(im.px == NULL);

    CHECK_OK(pe_image_alloc(&im, 5, 3, 3));
    CHECK(im.px != NULL && im.w == 5 && im.h == 3 && im.c == 3);
    CHECK(pe_image_size(&im) == 45);
    if (im.px) memset(im.px, 7, pe_image_size(&im));
    pe_image_free(&im);
    CHECK(im.px == NULL && im.w == 0 && im.h == 0 && im.c == 0);
    pe_image_free(&im); /* a zeroed image frees as a no-op */
}

/* ---- channels ---------------------------------------------------------- */

static void test_channels_self(void) {
    pe_image im = {0};
    CHECK_OK(pe_image_alloc(&im, 4, 1, 3));
    if (!im.px) return;
    const uint8_t rgb[12] = {255, 255, 255, 0, 0, 0, 255, 0, 0, 10, 200, 30};
    memcpy(im.px, rgb, sizeof rgb);
    CHECK_OK(pe_image_to_channels(&im, 3)); /* same count: untouched */
    CHECK(im.c == 3 && memcmp(im.px, rgb, sizeof rgb) == 0);
    CHECK_OK(pe_image_to_channels(&im, 1));
    CHECK(im.c == 1 && im.w == 4 && im.h == 1);
    /* (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, by hand. */
    CHECK(im.px[0] == 255 && im.px[1] == 0 && im.px[2] == 76 &&
          im.px[3] == 124);
    CHECK_OK(pe_image_to_channels(&im, 3));
    const uint8_t back[12] = {255, 255, 255, 0, 0, 0, 76, 76, 76,
                              124, 124, 124};
    CHECK(im.c == 3 && memcmp(im.px, back, sizeof back) == 0);
    CHECK_RC(pe_image_to_channels(&im, 2), PE_EUSAGE);
    CHECK(im.c == 3);
    pe_image_free(&im);
    CHECK_RC(pe_image_to_channels(&im, 1), PE_EUSAGE);
}

static void test_channels_pil(void) {
    if (!have_pil) {
        fprintf(stderr, "    skip: no " PYTHON " with PIL\n");
        return;
    }
    static const uint32_t sizes[][2] = {{1, 1}, {64, 32}, {97, 61}, {1, 40},
                                        {40, 1}};
    enum { NCASE = sizeof sizes / sizeof sizes[0] + 1 };
    pe_image in[NCASE] = {{0}};
    pil_batch b;
    if (!pil_begin(&b)) return;
    for (int i = 0; i < NCASE - 1; i++)
        random_image(&in[i], sizes[i][0], sizes[i][1], 3, 100 + i);
    /* Every (r, g, b) with r, g, b in 0..255 step 15, plus the corners. */
    CHECK_OK(pe_image_alloc(&in[NCASE - 1], 18 * 18, 18, 3));
    if (in[NCASE - 1].px) {
        uint8_t *p = in[NCASE - 1].px;
        for (int r = 0; r < 18; r++)
            for (int g = 0; g < 18; g++)
                for (int bl = 0; bl < 18; bl++, p += 3) {
                    p[0] = (uint8_t)(r * 15);
                    p[1] = (uint8_t)(g * 15);
                    p[2] = (uint8_t)(bl * 15);
                }
    }
    for (int i = 0; i < NCASE; i++) {
        pil_add(&b, "gray", &in[i]);
        fputc('\n', b.manifest);
    }
    if (pil_run(&b)) {
        for (int i = 0; i < NCASE; i++) {
            pe_image want;
            char what[64];
            snprintf(what, sizeof what, "gray %ux%u", in[i].w, in[i].h);
            CHECK(pil_result(i, &want));
            CHECK_OK(pe_image_to_channels(&in[i], 1));
            CHECK(same_image(what, &in[i], &want));
            pe_image_free(&want);
        }
    }
    for (int i = 0; i < NCASE; i++) pe_image_free(&in[i]);
}

/* ---- orientation ------------------------------------------------------- */

static void test_orient_self(void) {
    /* The 3x2 image 1 2 3 / 4 5 6 shown under each EXIF orientation. */
    static const struct {
        uint32_t w, h;
        uint8_t px[6];
    } want[9] = {
        [1] = {3, 2, {1, 2, 3, 4, 5, 6}}, [2] = {3, 2, {3, 2, 1, 6, 5, 4}},
        [3] = {3, 2, {6, 5, 4, 3, 2, 1}}, [4] = {3, 2, {4, 5, 6, 1, 2, 3}},
        [5] = {2, 3, {1, 4, 2, 5, 3, 6}}, [6] = {2, 3, {4, 1, 5, 2, 6, 3}},
        [7] = {2, 3, {6, 3, 5, 2, 4, 1}}, [8] = {2, 3, {3, 6, 2, 5, 1, 4}},
    };
    for (int o = -1; o <= 9; o++) {
        pe_image im = {0};
        CHECK_OK(pe_image_alloc(&im, 3, 2, 1));
        if (!im.px) return;
        for (int i = 0; i < 6; i++) im.px[i] = (uint8_t)(i + 1);
        CHECK_OK(pe_image_orient(&im, o));
        int k = o >= 1 && o <= 8 ? o : 1; /* out of range: a no-op */
        int ok = im.w == want[k].w && im.h == want[k].h && im.c == 1 &&
                 memcmp(im.px, want[k].px, 6) == 0;
        if (!ok) fprintf(stderr, "    orientation %d differs\n", o);
        CHECK(ok);
        pe_image_free(&im);
    }
    pe_image empty = {0};
    CHECK_RC(pe_image_orient(&empty, 6), PE_EUSAGE);
    CHECK_OK(pe_image_orient(&empty, 1));
}

static void test_orient_pil(void) {
    if (!have_pil) {
        fprintf(stderr, "    skip: no " PYTHON " with PIL\n");
        return;
    }
    static const uint32_t shapes[][3] = {
        {5, 3, 1}, {5, 3, 3}, {1, 4, 1}, {4, 1, 3}, {1, 1, 3}, {97, 61, 3},
        {64, 32, 1}, {7, 7, 3},
    };
    enum { NSHAPE = sizeof shapes / sizeof shapes[0], NCASE = NSHAPE * 8 };
    pe_image in[NCASE] = {{0}};
    pil_batch b;
    if (!pil_begin(&b)) return;
    for (int s = 0; s < NSHAPE; s++)
        for (int o = 1; o <= 8; o++) {
            int i = s * 8 + o - 1;
            random_image(&in[i], shapes[s][0], shapes[s][1], shapes[s][2],
                         200 + s);
            pil_add(&b, "orient", &in[i]);
            fprintf(b.manifest, " %d\n", o);
        }
    if (pil_run(&b)) {
        for (int i = 0; i < NCASE; i++) {
            pe_image want;
            char what[64];
            uint32_t w = in[i].w, h = in[i].h;
            int o = i % 8 + 1;
            snprintf(what, sizeof what, "orient %d of %ux%ux%u", o, w, h,
                     in[i].c);
            CHECK(pil_result(i, &want));
            CHECK_OK(pe_image_orient(&in[i], o));
            if (o >= 5)
                CHECK(in[i].w == h && in[i].h == w);
            else
                CHECK(in[i].w == w && in[i].h == h);
            CHECK(same_image(what, &in[i], &want));
            pe_image_free(&want);
        }
    }
    for (int i = 0; i < NCASE; i++) pe_image_free(&in[i]);
}

/* ---- resizing ---------------------------------------------------------- */

typedef struct resize_case {
    uint32_t w, h, c, ow, oh;
    int has_box;
    double box[4];
    int fill; /* -1: random pixels; else every byte has this value */
} resize_case;

/* Runs every case through Pillow and through pe, comparing the bytes. */
static void run_resize_cases(const resize_case *cases, int n, uint64_t seed) {
    pe_image *in = calloc((size_t)n, sizeof *in);
    CHECK(in != NULL);
    if (!in) return;
    pil_batch b;
    if (!pil_begin(&b)) {
        free(in);
        return;
    }
    for (int i = 0; i < n; i++) {
        const resize_case *rc = &cases[i];
        if (rc->fill < 0)
            random_image(&in[i], rc->w, rc->h, rc->c, seed + (uint64_t)i);
        else
            fill_image(&in[i], rc->w, rc->h, rc->c, (uint8_t)rc->fill);
        pil_add(&b, "resize", &in[i]);
        fprintf(b.manifest, " %u %u", rc->ow, rc->oh);
        if (rc->has_box)
            fprintf(b.manifest, " %.17g %.17g %.17g %.17g", rc->box[0],
                    rc->box[1], rc->box[2], rc->box[3]);
        fputc('\n', b.manifest);
    }
    if (pil_run(&b)) {
        for (int i = 0; i < n; i++) {
            const resize_case *rc = &cases[i];
            pe_image want, got = {0};
            char what[160];
            if (rc->has_box)
                snprintf(what, sizeof what,
                         "%ux%ux%u -> %ux%u box (%.9g, %.9g, %.9g, %.9g)",
                         rc->w, rc->h, rc->c, rc->ow, rc->oh, rc->box[0],
                         rc->box[1], rc->box[2], rc->box[3]);
            else
                snprintf(what, sizeof what, "%ux%ux%u -> %ux%u", rc->w,
                         rc->h, rc->c, rc->ow, rc->oh);
            CHECK(pil_result(i, &want));
            if (rc->has_box)
                CHECK_OK(pe_image_resize_box_bilinear(
                    &in[i], &got, rc->ow, rc->oh, rc->box[0], rc->box[1],
                    rc->box[2], rc->box[3]));
            else
                CHECK_OK(pe_image_resize_bilinear(&in[i], &got, rc->ow,
                                                  rc->oh));
            if (got.px && want.px) CHECK(same_image(what, &got, &want));
            pe_image_free(&got);
            pe_image_free(&want);
        }
    }
    for (int i = 0; i < n; i++) pe_image_free(&in[i]);
    free(in);
}

static void test_resize_pil(void) {
    if (!have_pil) {
        fprintf(stderr, "    skip: no " PYTHON " with PIL\n");
        return;
    }
    /* Chosen shapes: thin images, 2:1 composites, odd sizes, large
     * downscales, upscales, one-axis-only resizes, the identity, and
     * constant images (255 checks the clip after rounding). */
    static const uint32_t shapes[][4] = {
        {1, 37, 1, 10},   {1, 37, 5, 10},    {53, 1, 17, 1},
        {53, 1, 17, 3},   {1, 1, 7, 5},      {64, 32, 32, 16},
        {64, 32, 64, 64}, {32, 64, 64, 32},  {97, 61, 64, 64},
        {97, 61, 41, 29}, {97, 61, 97, 30},  {97, 61, 50, 61},
        {480, 300, 64, 64}, {300, 480, 64, 64}, {256, 256, 64, 64},
        {28, 28, 96, 96}, {32, 32, 64, 64},  {33, 17, 200, 3},
        {64, 64, 64, 64}, {1000, 3, 7, 2},   {5, 700, 3, 9},
    };
    enum { NSHAPE = sizeof shapes / sizeof shapes[0] };
    resize_case cases[NSHAPE * 2 + 8];
    int n = 0;
    for (int s = 0; s < NSHAPE; s++)
        for (uint32_t c = 1; c <= 3; c += 2)
            cases[n++] = (resize_case){shapes[s][0], shapes[s][1], c,
                                       shapes[s][2], shapes[s][3], 0,
                                       {0, 0, 0, 0}, -1};
    static const uint32_t flat[][4] = {
        {97, 61, 64, 64}, {480, 300, 64, 64}, {28, 28, 96, 96},
        {13, 7, 5, 3},
    };
    for (int s = 0; s < 4; s++)
        for (int v = 0; v < 2; v++)
            cases[n++] = (resize_case){flat[s][0], flat[s][1], 3, flat[s][2],
                                       flat[s][3], 0, {0, 0, 0, 0},
                                       v ? 255 : 0};
    run_resize_cases(cases, n, 1000);
}

static void test_resize_random_pil(void) {
    if (!have_pil) {
        fprintf(stderr, "    skip: no " PYTHON " with PIL\n");
        return;
    }
    enum { NCASE = 120 };
    resize_case cases[NCASE];
    uint64_t s = 42;
    for (int i = 0; i < NCASE; i++) {
        resize_case *rc = &cases[i];
        rc->w = rng_range(&s, 1, 160);
        rc->h = rng_range(&s, 1, 160);
        rc->c = rng_range(&s, 0, 1) ? 3 : 1;
        rc->ow = rng_range(&s, 1, 160);
        rc->oh = rng_range(&s, 1, 160);
        rc->has_box = 0;
        rc->fill = -1;
    }
    run_resize_cases(cases, NCASE, 2000);
}

static void test_resize_box_pil(void) {
    if (!have_pil) {
        fprintf(stderr, "    skip: no " PYTHON " with PIL\n");
        return;
    }
    enum { NFIXED = 12, NRAND = 100 };
    resize_case cases[NFIXED + NRAND] = {
        {97, 61, 3, 64, 64, 1, {3.5, 2.25, 40.0, 30.75}, -1},
        {97, 61, 1, 64, 64, 1, {3.5, 2.25, 40.0, 30.75}, -1},
        {480, 300, 3, 64, 64, 1, {10.1, 20.7, 470.3, 290.9}, -1},
        {64, 64, 3, 64, 64, 1, {0, 0, 64, 64}, -1},   /* identity: a copy */
        {64, 64, 1, 32, 32, 1, {2, 3, 34, 35}, -1},   /* Pillow's crop path */
        {64, 64, 3, 64, 64, 1, {0.5, 0, 64, 64}, -1}, /* horizontal only */
        {64, 64, 3, 64, 64, 1, {0, 0, 64, 63.5}, -1}, /* vertical only */
        {50, 40, 3, 20, 20, 1, {5, 5, 5, 30}, -1},    /* zero-width box */
        {50, 40, 1, 20, 20, 1, {50, 40, 50, 40}, -1}, /* empty at corner */
        {1, 37, 1, 3, 9, 1, {0.25, 1.5, 1.0, 36.5}, -1},
        {28, 28, 3, 96, 96, 1, {0.1, 0.2, 27.9, 27.8}, -1},
        {200, 120, 3, 64, 64, 1, {0, 0, 200, 120}, 255},
    };
    uint64_t s = 7;
    for (int i = NFIXED; i < NFIXED + NRAND; i++) {
        resize_case *rc = &cases[i];
        rc->w = rng_range(&s, 1, 160);
        rc->h = rng_range(&s, 1, 160);
        rc->c = rng_range(&s, 0, 1) ? 3 : 1;
        rc->ow = rng_range(&s, 1, 100);
        rc->oh = rng_range(&s, 1, 100);
        rc->has_box = 1;
        rc->fill = -1;
        /* Arbitrary doubles, so the rounding to Pillow's float box is
         * exercised too; x1 <= w holds after that rounding as w is exact. */
        rc->box[0] = rng_unit(&s) * rc->w * 0.5;
        rc->box[1] = rng_unit(&s) * rc->h * 0.5;
        rc->box[2] = rc->box[0] + rng_unit(&s) * (rc->w - rc->box[0]);
        rc->box[3] = rc->box[1] + rng_unit(&s) * (rc->h - rc->box[1]);
    }
    run_resize_cases(cases, NFIXED + NRAND, 3000);
}

/* Resizes with the scalar passes forced (PE_NO_SIMD=1) or with the
 * default choice, restoring the caller's PE_NO_SIMD afterwards. */
static int resize_path(const resize_case *rc, const pe_image *in,
                       pe_image *out, int scalar) {
    const char *old = getenv("PE_NO_SIMD");
    char *saved = old ? strdup(old) : NULL;
    if (scalar)
        setenv("PE_NO_SIMD", "1", 1);
    else
        unsetenv("PE_NO_SIMD");
    int r = rc->has_box
                ? pe_image_resize_box_bilinear(in, out, rc->ow, rc->oh,
                                               rc->box[0], rc->box[1],
                                               rc->box[2], rc->box[3])
                : pe_image_resize_bilinear(in, out, rc->ow, rc->oh);
    if (saved)
        setenv("PE_NO_SIMD", saved, 1);
    else
        unsetenv("PE_NO_SIMD");
    free(saved);
    return r;
}

/* The vector passes against the scalar ones: shapes around the vector
 * widths (16 taps, 16-pixel RGB groups, 4-row gray groups), long filters
 * (several 16-tap steps), upscales, thin images, crops, and saturated
 * pixels, plus random ones. No Pillow needed: the scalar passes are the
 * oracle, and the Pillow tests tie them to Pillow. */
static void test_resize_simd_vs_scalar(void) {
#if defined(__x86_64__) || defined(__i386__)
    if (!__builtin_cpu_supports("avx2"))
        fprintf(stderr, "    note: no AVX2 on this CPU, both runs are "
                        "scalar\n");
#else
    fprintf(stderr, "    note: no vector passes on this architecture, both "
                    "runs are scalar\n");
#endif
    static const uint32_t fixed[][4] = {
        {16, 5, 7, 3},     {17, 9, 3, 4},     {15, 15, 1, 1},
        {31, 8, 30, 8},    {32, 8, 16, 3},    {33, 7, 2, 5},
        {48, 20, 47, 19},  {480, 300, 64, 64}, {300, 480, 64, 64},
        {2000, 3, 10, 3},  {1500, 40, 3, 2},  {3, 1500, 2, 7},
        {1, 1, 64, 64},    {1, 200, 1, 13},   {200, 1, 13, 1},
        {64, 64, 128, 96}, {97, 61, 97, 30},  {97, 61, 50, 61},
        {1000, 800, 64, 64}, {28, 28, 96, 96}, {255, 3, 254, 1},
    };
    enum { NFIXED = sizeof fixed / sizeof fixed[0], NRAND = 600 };
    uint64_t s = 99;
    int bad = 0;
    for (int i = 0; i < NFIXED * 2 * 2 + NRAND; i++) {
        resize_case rc = {0};
        int fill = -1;
        if (i < NFIXED * 4) {
            const uint32_t *f = fixed[i / 4];
            rc.w = f[0];
            rc.h = f[1];
            rc.ow = f[2];
            rc.oh = f[3];
            rc.c = i % 2 ? 3 : 1;
            if ((i / 2) % 2) fill = 255; /* the largest sums, clipped */
        } else {
            int big = rng_range(&s, 0, 7) == 0;
            rc.w = rng_range(&s, 1, big ? 1200 : 200);
            rc.h = rng_range(&s, 1, big ? 300 : 200);
            rc.c = rng_range(&s, 0, 1) ? 3 : 1;
            rc.ow = rng_range(&s, 1, 130);
            rc.oh = rng_range(&s, 1, 130);
            if (rng_range(&s, 0, 2) == 0) {
                rc.has_box = 1;
                rc.box[0] = rng_unit(&s) * rc.w * 0.5;
                rc.box[1] = rng_unit(&s) * rc.h * 0.5;
                rc.box[2] = rc.box[0] + rng_unit(&s) * (rc.w - rc.box[0]);
                rc.box[3] = rc.box[1] + rng_unit(&s) * (rc.h - rc.box[1]);
            }
            if (rng_range(&s, 0, 2) == 0) rc.oh = rc.h; /* horizontal only */
            if (rng_range(&s, 0, 9) == 0) fill = 255;
        }
        pe_image in = {0}, ref = {0}, fast = {0};
        if (fill < 0)
            random_image(&in, rc.w, rc.h, rc.c, 5000 + (uint64_t)i);
        else
            fill_image(&in, rc.w, rc.h, rc.c, (uint8_t)fill);
        if (!in.px) return;
        CHECK_OK(resize_path(&rc, &in, &ref, 1));
        CHECK_OK(resize_path(&rc, &in, &fast, 0));
        if (ref.px && fast.px) {
            char what[160];
            snprintf(what, sizeof what,
                     "vector vs scalar: %ux%ux%u -> %ux%u box %d "
                     "(%.9g, %.9g, %.9g, %.9g)",
                     rc.w, rc.h, rc.c, rc.ow, rc.oh, rc.has_box, rc.box[0],
                     rc.box[1], rc.box[2], rc.box[3]);
            if (!same_image(what, &fast, &ref)) bad++;
        }
        pe_image_free(&in);
        pe_image_free(&ref);
        pe_image_free(&fast);
    }
    CHECK(bad == 0);
}

static void test_resize_args(void) {
    pe_image src = {0}, dst = {0};
    random_image(&src, 20, 10, 3, 5);
    if (!src.px) return;
    CHECK_RC(pe_image_resize_bilinear(&src, &dst, 0, 5), PE_EUSAGE);
    CHECK_RC(pe_image_resize_bilinear(&src, &dst, 5, 0), PE_EUSAGE);
    CHECK_RC(pe_image_resize_box_bilinear(&src, &dst, 5, 5, -1, 0, 10, 10),
             PE_EUSAGE);
    CHECK_RC(pe_image_resize_box_bilinear(&src, &dst, 5, 5, 0, 0, 21, 10),
             PE_EUSAGE);
    CHECK_RC(pe_image_resize_box_bilinear(&src, &dst, 5, 5, 0, 0, 20, 10.5),
             PE_EUSAGE);
    CHECK_RC(pe_image_resize_box_bilinear(&src, &dst, 5, 5, 6, 0, 5, 10),
             PE_EUSAGE);
    CHECK_RC(pe_image_resize_box_bilinear(&src, &dst, 5, 5, 0, NAN, 5, 10),
             PE_EUSAGE);
    CHECK_RC(pe_image_resize_box_bilinear(&src, &dst, 5, 5, 0, 0, INFINITY,
                                          10),
             PE_EUSAGE);
    CHECK(dst.px == NULL && dst.w == 0);

    /* A constant image stays constant at any scale (weights sum to one). */
    memset(src.px, 77, pe_image_size(&src));
    CHECK_OK(pe_image_resize_bilinear(&src, &dst, 7, 33));
    CHECK(dst.w == 7 && dst.h == 33 && dst.c == 3);
    int flat = 1;
    for (size_t i = 0; dst.px && i < pe_image_size(&dst); i++)
        flat &= dst.px[i] == 77;
    CHECK(flat);
    pe_image_free(&dst);

    pe_image empty = {0};
    CHECK_RC(pe_image_resize_bilinear(&empty, &dst, 4, 4), PE_EUSAGE);
    pe_image_free(&src);
}

/* ---- setup ------------------------------------------------------------- */

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("test_resample: mkdtemp");
        return 1;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/pil.py", tmpdir);
    if (!write_file(path, pil_script, strlen(pil_script))) {
        perror("test_resample: writing the Pillow script");
        remove_tmpdir();
        return 1;
    }
    have_pil = access(PYTHON, X_OK) == 0 &&
               system(PYTHON " -c 'import PIL.Image' >/dev/null 2>&1") == 0;
    if (!have_pil)
        fprintf(stderr, "skip: " PYTHON " with PIL not found; Pillow "
                        "comparisons are skipped\n");

    RUN(test_alloc);
    RUN(test_channels_self);
    RUN(test_channels_pil);
    RUN(test_orient_self);
    RUN(test_orient_pil);
    RUN(test_resize_args);
    RUN(test_resize_simd_vs_scalar);
    RUN(test_resize_pil);
    RUN(test_resize_random_pil);
    RUN(test_resize_box_pil);

    remove_tmpdir();
    return CHECK_DONE();
}
