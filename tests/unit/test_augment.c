/*
 * test_augment.c - checks lib/rng.c and lib/augment.c: Philox against
 * Random123's known answers, the stream derivation against an independent
 * Python transcription of rng.h's documentation, the generator's
 * uniformity, the epoch shuffle, and every augmentation against the code
 * it must equal: Pillow 9 for pixel operations, torchvision 0.14 for
 * RandomResizedCrop and the whole view pipeline; and localized cropping
 * (the region's geometry and stream, and torchvision's get_params on the
 * documented region-then-views draws).
 *
 * Not for: timing. The oracles run in one /usr/bin/python3 process over a
 * manifest of jobs the C side writes into a mkdtemp directory (inputs as
 * raw bytes); each test adds its jobs in a *_prepare function and checks
 * the results in a *_verify function after the single run, so that torch
 * is imported once. Pixel results are compared byte for byte and floats
 * bit for bit: there is no tolerance except in the statistical
 * comparison of crop boxes drawn by torch's generator and by ours, whose
 * tolerances are stated where they are used. Missing Python, PIL or
 * torchvision (+ numpy) skips only the checks that need it, with a
 * printed reason.
 */
#include "augment.h"
#include "check.h"
#include "image.h"
#include "pe.h"
#include "rng.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

static char tmpdir[] = "/tmp/pe-test-augment-XXXXXX";
static int have_py, have_pil, have_tv;

/* The oracle. Jobs are "op out args..."; image inputs are "path w h c".
 * Image results are "W H C\n" + pixels; others are raw little-endian
 * arrays (uint32 words, int32 boxes i j h w, float32 tensors). torch and
 * torchvision are imported on the first job that needs them. In the "tv"
 * jobs torch's random calls are replaced by our generator, transcribed
 * from rng.h's documentation (not from rng.c): torch.rand -> the 24-bit
 * float, uniform_ -> ATen's float mapping of that float, randint ->
 * Lemire's rejection, randperm -> Fisher-Yates from the end. */
static const char py_script[] =
    "import sys, struct\n"
    "M = 0xffffffff\n"
    "TAG_VIEW, TAG_SHUF = 0x77656976, 0x66756873\n"
    "TAG_REGN = int.from_bytes(b'regn', 'little')\n"
    "def philox(c, k):\n"
    "    c0, c1, c2, c3 = c\n"
    "    k0, k1 = k\n"
    "    for r in range(10):\n"
    "        if r:\n"
    "            k0 = (k0 + 0x9E3779B9) & M\n"
    "            k1 = (k1 + 0xBB67AE85) & M\n"
    "        p0 = 0xD2511F53 * c0\n"
    "        p1 = 0xCD9E8D57 * c2\n"
    "        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0, p1 & M,\n"
    "                          (p0 >> 32) ^ c3 ^ k1, p0 & M)\n"
    "    return [c0, c1, c2, c3]\n"
    "def epoch_key(seed, epoch, tag):\n"
    "    return philox([epoch & M, epoch >> 32, 0, tag],\n"
    "                  [seed & M, seed >> 32])[:2]\n"
    "class Stream:\n"
    "    def __init__(self, key, c1, c2, c3):\n"
    "        self.key, self.base, self.n, self.buf = key, (c3 << 96) | (c2 << 64) | (c1 << 32), 0, []\n"
    "    def u32(self):\n"
    "        if not self.buf:\n"
    "            c = (self.base + self.n) % (1 << 128)\n"
    "            self.n += 1\n"
    "            self.buf = philox([(c >> (32 * i)) & M for i in range(4)], self.key)\n"
    "        return self.buf.pop(0)\n"
    "    def f24(self):\n"
    "        return (self.u32() >> 8) * 2.0 ** -24\n"
    "    def int(self, lo, hi):\n"
    "        n = hi - lo + 1\n"
    "        if n <= 1 << 32:\n"
    "            t = ((1 << 32) - n) % n\n"
    "            while True:\n"
    "                m = self.u32() * n\n"
    "                if m & M >= t:\n"
    "                    return lo + (m >> 32)\n"
    "        mask = (1 << (n - 1).bit_length()) - 1\n"
    "        while True:\n"
    "            a = self.u32()\n"
    "            x = ((a << 32) | self.u32()) & mask\n"
    "            if x < n:\n"
    "                return lo + x\n"
    "def view_stream(seed, epoch, index, view):\n"
    "    return Stream(epoch_key(seed, epoch, TAG_VIEW), view, index & M, index >> 32)\n"
    "def region_stream(seed, epoch, index):\n"
    "    return Stream(epoch_key(seed, epoch, TAG_REGN), 0, index & M, index >> 32)\n"
    "tv = None\n"
    "def need_tv():\n"
    "    global tv, np, torch, T, F\n"
    "    if tv is None:\n"
    "        import numpy as np, torch\n"
    "        import torchvision.transforms as T\n"
    "        import torchvision.transforms.functional as F\n"
    "        tv = True\n"
    "class Ours:\n"
    "    def __init__(self, st):\n"
    "        self.st = st\n"
    "    def __enter__(self):\n"
    "        st, f32 = self.st, np.float32\n"
    "        self.saved = (torch.rand, torch.empty, torch.randint, torch.randperm)\n"
    "        def uniform(a, b):\n"
    "            return torch.tensor([self.uniform_u(st.f24(), a, b)])\n"
    "        class Empty:\n"
    "            def uniform_(self, a, b):\n"
    "                return uniform(a, b)\n"
    "        def randperm(n, **kw):\n"
    "            p = list(range(n))\n"
    "            for i in range(n - 1, 0, -1):\n"
    "                j = st.int(0, i)\n"
    "                p[i], p[j] = p[j], p[i]\n"
    "            return torch.tensor(p)\n"
    "        torch.rand = lambda *a, **kw: torch.tensor([st.f24()], dtype=torch.float32)\n"
    "        torch.empty = lambda *a, **kw: Empty()\n"
    "        torch.randint = lambda lo, hi, size=None, **kw: torch.tensor([st.int(lo, hi - 1)])\n"
    "        torch.randperm = randperm\n"
    "        return self\n"
    "    def uniform_u(self, u, a, b):\n"
    "        f32 = np.float32\n"
    "        A, B = f32(float(a)), f32(float(b))\n"
    "        return f32(u * float(f32(B - A)) + float(A))\n"
    "    def __exit__(self, *exc):\n"
    "        torch.rand, torch.empty, torch.randint, torch.randperm = self.saved\n"
    "def load(a):\n"
    "    from PIL import Image\n"
    "    w, h, c = int(a[1]), int(a[2]), int(a[3])\n"
    "    with open(a[0], 'rb') as f:\n"
    "        return Image.frombytes('L' if c == 1 else 'RGB', (w, h), f.read())\n"
    "def save_image(path, im):\n"
    "    with open(path, 'wb') as g:\n"
    "        g.write(b'%d %d %d\\n' % (im.size[0], im.size[1], 1 if im.mode == 'L' else 3))\n"
    "        g.write(im.tobytes())\n"
    "def save(path, fmt, vals):\n"
    "    with open(path, 'wb') as g:\n"
    "        g.write(struct.pack('<%d%s' % (len(vals), fmt), *vals))\n"
    "def boxes(W, H, scale, ratio, n, draw):\n"
    "    from PIL import Image\n"
    "    img, out = Image.new('L', (W, H)), []\n"
    "    for k in range(n):\n"
    "        out += draw(k, lambda: T.RandomResizedCrop.get_params(img, scale, ratio))\n"
    "    return out\n"
    "for line in open(sys.argv[1]):\n"
    "    f = line.split()\n"
    "    op, out, a = f[0], f[1], f[2:]\n"
    "    if op == 'stream':\n"
    "        seed, epoch, index, view, n = map(int, a)\n"
    "        st = view_stream(seed, epoch, index, view)\n"
    "        save(out, 'I', [st.u32() for _ in range(n)])\n"
    "    elif op == 'rstream':\n"
    "        seed, epoch, index, n = map(int, a)\n"
    "        st = region_stream(seed, epoch, index)\n"
    "        save(out, 'I', [st.u32() for _ in range(n)])\n"
    "    elif op == 'localtrace':\n"
    "        # localized cropping as augment.h defines it: the region by\n"
    "        # get_params on the region stream, then each view's box by\n"
    "        # get_params on a region-sized image, moved by the region's origin\n"
    "        need_tv()\n"
    "        from PIL import Image\n"
    "        W, H, n, seed, epoch = map(int, a[:5])\n"
    "        v = [float(x) for x in a[5:13]]\n"
    "        res = []\n"
    "        for k in range(n):\n"
    "            with Ours(region_stream(seed, epoch, k)):\n"
    "                ri, rj, rh, rw = T.RandomResizedCrop.get_params(\n"
    "                    Image.new('L', (W, H)), (v[4], v[5]), (v[6], v[7]))\n"
    "            res += [ri, rj, rh, rw]\n"
    "            for view in (0, 1):\n"
    "                with Ours(view_stream(seed, epoch, k, view)):\n"
    "                    i, j, h, w = T.RandomResizedCrop.get_params(\n"
    "                        Image.new('L', (rw, rh)), (v[0], v[1]), (v[2], v[3]))\n"
    "                res += [ri + i, rj + j, h, w]\n"
    "        save(out, 'i', res)\n"
    "    elif op == 'ints':\n"
    "        st, n, v = view_stream(*map(int, a[:4])), int(a[4]), list(map(int, a[5:]))\n"
    "        save(out, 'q', [st.int(v[p], v[p + 1]) for p in range(0, len(v), 2) for _ in range(n)])\n"
    "    elif op == 'shuffle':\n"
    "        seed, epoch, n = map(int, a)\n"
    "        st, p = Stream(epoch_key(seed, epoch, TAG_SHUF), 0, 0, 0), list(range(n))\n"
    "        for i in range(n - 1, 0, -1):\n"
    "            j = st.int(0, i)\n"
    "            p[i], p[j] = p[j], p[i]\n"
    "        save(out, 'I', p)\n"
    "    elif op in ('rrctrace', 'rrcstat'):\n"
    "        need_tv()\n"
    "        W, H, n, seed, epoch = map(int, a[:5])\n"
    "        scale, ratio = (float(a[5]), float(a[6])), (float(a[7]), float(a[8]))\n"
    "        if op == 'rrcstat':\n"
    "            torch.manual_seed(seed)\n"
    "            save(out, 'i', boxes(W, H, scale, ratio, n, lambda k, g: list(g())))\n"
    "        else:\n"
    "            def traced(k, g):\n"
    "                with Ours(view_stream(seed, epoch, k, 0)):\n"
    "                    return list(g())\n"
    "            save(out, 'i', boxes(W, H, scale, ratio, n, traced))\n"
    "    elif op == 'uniform':\n"
    "        need_tv()\n"
    "        st, n, v = view_stream(*map(int, a[:4])), int(a[4]), list(map(float, a[5:]))\n"
    "        got, bad = [], 0\n"
    "        with Ours(st):\n"
    "            for p in range(0, len(v), 2):\n"
    "                got += [float(torch.empty(1).uniform_(v[p], v[p + 1])) for _ in range(n)]\n"
    "        # The documented mapping is ATen's: check it on torch's own draws.\n"
    "        for p in range(0, len(v), 2):\n"
    "            for s in range(n // 10):\n"
    "                torch.manual_seed(s)\n"
    "                u = torch.rand(1).item()\n"
    "                torch.manual_seed(s)\n"
    "                with Ours(None) as o:\n"
    "                    want = o.uniform_u(u, v[p], v[p + 1])\n"
    "                bad += want != np.float32(torch.empty(1).uniform_(v[p], v[p + 1]).item())\n"
    "        save(out, 'f', got + [float(bad)])\n"
    "    elif op == 'crop':\n"
    "        from PIL import Image\n"
    "        i, j, h, w, size = map(int, a[4:9])\n"
    "        bl = getattr(Image, 'Resampling', Image).BILINEAR\n"
    "        save_image(out, load(a).crop((j, i, j + w, i + h)).resize((size, size), bl))\n"
    "    elif op == 'enhance':\n"
    "        from PIL import ImageEnhance\n"
    "        cls = {'brightness': ImageEnhance.Brightness, 'contrast': ImageEnhance.Contrast,\n"
    "               'saturation': ImageEnhance.Color}[a[4]]\n"
    "        save_image(out, cls(load(a)).enhance(float(a[5])))\n"
    "    elif op == 'hsvrt':\n"
    "        save_image(out, load(a).convert('HSV').convert('RGB'))\n"
    "    elif op == 'gray':\n"
    "        im = load(a)\n"
    "        save_image(out, im.convert('L').convert(im.mode))\n"
    "    elif op == 'flip':\n"
    "        from PIL import Image\n"
    "        save_image(out, load(a).transpose(getattr(Image, 'Transpose', Image).FLIP_LEFT_RIGHT))\n"
    "    else:\n"
    "        need_tv()\n"
    "        im = load(a)\n"
    "        if op == 'tvcrop':\n"
    "            i, j, h, w, size = map(int, a[4:9])\n"
    "            save_image(out, F.resized_crop(im, i, j, h, w, [size, size]))\n"
    "        elif op == 'tvjit':\n"
    "            fn = {'brightness': F.adjust_brightness, 'contrast': F.adjust_contrast,\n"
    "                  'saturation': F.adjust_saturation, 'hue': F.adjust_hue}[a[4]]\n"
    "            save_image(out, fn(im, float(a[5])))\n"
    "        elif op == 'tvgray':\n"
    "            save_image(out, F.rgb_to_grayscale(im, 1 if im.mode == 'L' else 3))\n"
    "        elif op == 'tvflip':\n"
    "            save_image(out, F.hflip(im))\n"
    "        elif op == 'tvnorm':\n"
    "            c = 1 if im.mode == 'L' else 3\n"
    "            v = [float(x) for x in a[4:10]]\n"
    "            t = T.Normalize(v[:c], v[3:3 + c])(T.ToTensor()(im))\n"
    "            save(out, 'f', t.flatten().tolist())\n"
    "        elif op == 'tvpipe':\n"
    "            ch, size = int(a[4]), int(a[5])\n"
    "            v = [float(x) for x in a[6:23]]\n"
    "            seed, epoch, index, view = map(int, a[23:27])\n"
    "            if ch == 3:\n"
    "                im = im.convert('RGB')\n"
    "            c = 1 if im.mode == 'L' else 3\n"
    "            pipe = T.Compose([\n"
    "                T.RandomResizedCrop(size, scale=(v[0], v[1]), ratio=(v[2], v[3])),\n"
    "                T.RandomHorizontalFlip(p=v[4]),\n"
    "                T.RandomApply([T.ColorJitter(v[6], v[7], v[8], v[9])], p=v[5]),\n"
    "                T.RandomGrayscale(p=v[10]),\n"
    "                T.ToTensor(),\n"
    "                T.Normalize(v[11:11 + c], v[14:14 + c])])\n"
    "            with Ours(view_stream(seed, epoch, index, view)):\n"
    "                t = pipe(im)\n"
    "            save(out, 'f', t.flatten().tolist())\n"
    "        else:\n"
    "            raise SystemExit('unknown job ' + op)\n";

/* ---- helpers ------------------------------------------------------------ */

static uint64_t xs_next(uint64_t *s) {
    /* xorshift64*: fixed seeds, so every run sees the same images. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static void random_image(pe_image *im, uint32_t w, uint32_t h, uint32_t c,
                         uint64_t seed) {
    CHECK_OK(pe_image_alloc(im, w, h, c));
    if (!im->px) return;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < pe_image_size(im); i++)
        im->px[i] = (uint8_t)(xs_next(&s) >> 56);
}

/* A smooth image with some noise: crops and resizes of natural images
 * have neighbours close in value, which random bytes never do. */
static void smooth_image(pe_image *im, uint32_t w, uint32_t h, uint32_t c,
                         uint64_t seed) {
    CHECK_OK(pe_image_alloc(im, w, h, c));
    if (!im->px) return;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (uint32_t k = 0; k < c; k++) {
                double v = 128 + 90 * sin(0.21 * x + 1.7 * k) *
                                     cos(0.13 * y - 0.9 * k) +
                           (double)(xs_next(&s) >> 59);
                im->px[((size_t)y * w + x) * c + k] =
                    (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

/* Every RGB colour once: 4096 x 4096, pixel k = (k >> 16, k >> 8, k). */
static void all_colours(pe_image *im) {
    CHECK_OK(pe_image_alloc(im, 4096, 4096, 3));
    if (!im->px) return;
    for (uint32_t k = 0; k < (1u << 24); k++) {
        im->px[3 * (size_t)k] = (uint8_t)(k >> 16);
        im->px[3 * (size_t)k + 1] = (uint8_t)(k >> 8);
        im->px[3 * (size_t)k + 2] = (uint8_t)k;
    }
}

static int copy_image(pe_image *dst, const pe_image *src) {
    int rc = pe_image_alloc(dst, src->w, src->h, src->c);
    if (rc == 0) memcpy(dst->px, src->px, pe_image_size(src));
    return rc;
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
        fprintf(stderr, "    %s: shape %ux%ux%u, oracle %ux%ux%u\n", what,
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
            "got %u, oracle %u\n",
            what, bad, n, (first % row) / c, first / row, first % c,
            got->px[first], want->px[first]);
    return 0;
}

/* ---- the oracle's batch ------------------------------------------------- */

/* Two manifests run by two processes side by side: the crop-box jobs
 * (seconds of pure Python) and everything else. */
static FILE *manifests[2];
static FILE *manifest; /* the one job() appends to */
static int njobs;
static int py_ok; /* both batches ran and exited 0 */

/* An input image written once; jobs refer to it by im_arg. */
typedef struct input {
    pe_image im;
    char arg[320]; /* "path w h c" */
} input;

static void input_save(input *in, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.raw", tmpdir, name);
    CHECK(in->im.px && write_file(path, in->im.px, pe_image_size(&in->im)));
    snprintf(in->arg, sizeof in->arg, "%s %u %u %u", path, in->im.w,
             in->im.h, in->im.c);
}

/* Appends "op out<i> args" to the manifest and returns i. */
static int job(const char *op, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int job(const char *op, const char *fmt, ...) {
    int i = njobs++;
    va_list ap;
    fprintf(manifest, "%s %s/out%d ", op, tmpdir, i);
    va_start(ap, fmt);
    vfprintf(manifest, fmt, ap);
    va_end(ap);
    fputc('\n', manifest);
    return i;
}

static void *result_raw(int i, size_t *n) {
    char path[256];
    snprintf(path, sizeof path, "%s/out%d", tmpdir, i);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "    cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = len > 0 ? malloc((size_t)len) : NULL;
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *n = buf ? (size_t)len : 0;
    return buf;
}

static int result_image(int i, pe_image *out) {
    char path[256];
    unsigned w = 0, h = 0, c = 0;
    snprintf(path, sizeof path, "%s/out%d", tmpdir, i);
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
    if (!ok) pe_image_free(out);
    return ok;
}

/* Runs an image job's check: the oracle's image i against got. */
static void check_image_job(int i, const char *what, const pe_image *got) {
    pe_image want;
    int ok = result_image(i, &want);
    CHECK(ok);
    if (ok) CHECK(same_image(what, got, &want));
    pe_image_free(&want);
}

static int skip_unless(int have, const char *what) {
    if (!have) fprintf(stderr, "    skip: %s\n", what);
    return !have;
}
#define NO_PY "no " PYTHON
#define NO_PIL "no " PYTHON " with PIL"
#define NO_TV "no " PYTHON " with torch, torchvision and numpy"

/* ---- Philox and the generator ------------------------------------------- */

static void test_philox_kat(void) {
    /* Random123's kat_vectors, "philox4x32 10" lines: ctr, key, output. */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822,
         0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int t = 0; t < 3; t++) {
        uint32_t out[4];
        pe_philox4x32_10(kat[t], kat[t] + 4, out);
        int ok = memcmp(out, kat[t] + 6, sizeof out) == 0;
        if (!ok)
            fprintf(stderr, "    vector %d: got %08x %08x %08x %08x\n", t,
                    out[0], out[1], out[2], out[3]);
        CHECK(ok);
    }
}

static void test_rng_streams(void) {
    /* A stream's words are its counter's blocks in order. */
    const uint32_t key[2] = {0x01234567, 0x89abcdef};
    pe_rng r = pe_rng_init(key, 7, 8, 9);
    for (uint32_t blk = 0; blk < 3; blk++) {
        uint32_t ctr[4] = {blk, 7, 8, 9}, want[4];
        pe_philox4x32_10(ctr, key, want);
        for (int k = 0; k < 4; k++) CHECK(pe_rng_u32(&r) == want[k]);
    }
    /* The block counter carries into the next words (Random123's incr). */
    r = pe_rng_init(key, 0xffffffffu, 0xffffffffu, 5);
    r.ctr[0] = 0xffffffffu;
    pe_rng_u32(&r);
    CHECK(r.ctr[0] == 0 && r.ctr[1] == 0 && r.ctr[2] == 0 && r.ctr[3] == 6);

    /* pe_rng_stream is the documented derivation. */
    uint32_t kv[2], ks[2];
    const uint64_t seed = 0x0123456789abcdefull, epoch = 0x100000002ull;
    pe_rng_epoch_key(seed, epoch, PE_RNG_TAG_VIEW, kv);
    pe_rng_epoch_key(seed, epoch, PE_RNG_TAG_SHUFFLE, ks);
    CHECK(kv[0] != ks[0] || kv[1] != ks[1]);
    {
        /* key_view = Philox({lo(epoch), hi(epoch), 0, tag}, K_seed)[0..1] */
        const uint32_t ctr[4] = {2, 1, 0, PE_RNG_TAG_VIEW};
        const uint32_t kseed[2] = {0x89abcdef, 0x01234567};
        uint32_t out[4];
        pe_philox4x32_10(ctr, kseed, out);
        CHECK(out[0] == kv[0] && out[1] == kv[1]);
    }
    pe_rng a = pe_rng_stream(seed, epoch, 0x500000003ull, 1);
    pe_rng b = pe_rng_init(kv, 1, 3, 5);
    int same = 1;
    for (int k = 0; k < 40; k++) same &= pe_rng_u32(&a) == pe_rng_u32(&b);
    CHECK(same);

    /* Each of seed, epoch, index and view changes the stream; the same
     * arguments give the same stream. */
    const uint64_t args[5][4] = {{1, 2, 3, 4}, {9, 2, 3, 4}, {1, 9, 3, 4},
                                 {1, 2, 9, 4}, {1, 2, 3, 9}};
    uint32_t first[5][4];
    for (int v = 0; v < 5; v++) {
        pe_rng s = pe_rng_stream(args[v][0], args[v][1], args[v][2],
                                 (uint32_t)args[v][3]);
        for (int k = 0; k < 4; k++) first[v][k] = pe_rng_u32(&s);
    }
    for (int v = 1; v < 5; v++)
        CHECK(memcmp(first[0], first[v], sizeof first[0]) != 0);
    pe_rng again = pe_rng_stream(1, 2, 3, 4);
    for (int k = 0; k < 4; k++) CHECK(pe_rng_u32(&again) == first[0][k]);
}

static void test_rng_conversions(void) {
    pe_rng r = pe_rng_stream(5, 0, 0, 0);
    /* float: the word's top 24 bits scaled by 2^-24. */
    pe_rng c = r;
    uint32_t w = pe_rng_u32(&c);
    CHECK(pe_rng_float(&r) == (float)(w >> 8) / 16777216.0f);
    /* double: two words, the first one high. */
    uint32_t w0 = pe_rng_u32(&c), w1 = pe_rng_u32(&c);
    CHECK(pe_rng_double(&r) ==
          (double)((((uint64_t)w0 << 32) | w1) >> 11) / 9007199254740992.0);
    float fmin = 1, fmax = 0;
    double dmin = 1, dmax = 0;
    int ok = 1;
    for (int i = 0; i < 200000; i++) {
        float f = pe_rng_float(&r);
        double d = pe_rng_double(&r);
        fmin = f < fmin ? f : fmin;
        fmax = f > fmax ? f : fmax;
        dmin = d < dmin ? d : dmin;
        dmax = d > dmax ? d : dmax;
        ok &= f * 16777216.0f == floorf(f * 16777216.0f);
    }
    CHECK(ok && fmin >= 0 && fmax < 1 && dmin >= 0 && dmax < 1);
    CHECK(fmin < 1e-4 && fmax > 1 - 1e-4 && dmin < 1e-4 && dmax > 1 - 1e-4);

    /* Bounds of pe_rng_int, including the one-value, 2^32 and 64-bit
     * ranges. */
    int in = 1, hit_lo = 0, hit_hi = 0;
    for (int i = 0; i < 100000; i++) {
        int64_t v = pe_rng_int(&r, -3, 4);
        in &= v >= -3 && v <= 4;
        hit_lo |= v == -3;
        hit_hi |= v == 4;
        in &= pe_rng_int(&r, 17, 17) == 17;
        int64_t big = pe_rng_int(&r, 0, (int64_t)0xffffffff);
        in &= big >= 0 && big <= (int64_t)0xffffffff;
        int64_t huge = pe_rng_int(&r, -((int64_t)1 << 40), (int64_t)1 << 40);
        in &= huge >= -((int64_t)1 << 40) && huge <= (int64_t)1 << 40;
    }
    CHECK(in && hit_lo && hit_hi);
    int neg = 0, pos = 0;
    for (int i = 0; i < 1000; i++) {
        int64_t v = pe_rng_int(&r, INT64_MIN, INT64_MAX);
        neg += v < 0;
        pos += v >= 0;
    }
    CHECK(neg > 400 && pos > 400); /* 1000 fair coins: 400 is 6.3 sd off */
}

/* Pearson's chi-square of counts against equal expectation. */
static double chi2_equal(const long *count, int k, long n) {
    double e = (double)n / k, x = 0;
    for (int i = 0; i < k; i++) x += (count[i] - e) * (count[i] - e) / e;
    return x;
}

/* Passes when chi2 with df degrees of freedom is under df + 6 sd (sd of
 * chi2 is sqrt(2 df)): a false failure needs a 1-in-10^7 fluke; a biased
 * generator of the kinds checked (modulo bias, a stuck bit) misses by
 * orders of magnitude. */
static int chi2_ok(const char *what, double x, int df) {
    double lim = df + 6 * sqrt(2.0 * df);
    if (x >= lim) fprintf(stderr, "    %s: chi2 %.1f >= %.1f\n", what, x, lim);
    return x < lim;
}

static void test_rng_uniformity(void) {
    enum { NB = 64, N = 1 << 20 };
    long fb[NB] = {0}, bits[32] = {0}, ib[7] = {0}, lb[3] = {0};
    pe_rng r = pe_rng_stream(2024, 1, 2, 3);
    double sum = 0;
    for (long i = 0; i < N; i++) {
        fb[(int)(pe_rng_float(&r) * NB)]++;
        uint32_t w = pe_rng_u32(&r);
        for (int b = 0; b < 32; b++) bits[b] += (w >> b) & 1;
        ib[pe_rng_int(&r, 0, 6)]++;
        sum += pe_rng_double(&r);
    }
    CHECK(chi2_ok("float in 64 bins", chi2_equal(fb, NB, N), NB - 1));
    CHECK(chi2_ok("int in [0, 6]", chi2_equal(ib, 7, N), 6));
    /* Each bit is a fair coin: 6 sd of N draws is 6 * sqrt(N) / 2. */
    int fair = 1;
    for (int b = 0; b < 32; b++)
        fair &= fabs(bits[b] - N / 2.0) < 6 * sqrt((double)N) / 2;
    CHECK(fair);
    /* Mean of N uniform doubles: sd is sqrt(1 / 12 N); allow 6 sd. */
    CHECK(fabs(sum / N - 0.5) < 6 * sqrt(1.0 / (12.0 * N)));
    /* A range just over 2^32 (the two-word path): thirds of it equally. */
    const int64_t n = ((int64_t)1 << 32) + 3;
    for (long i = 0; i < 300000; i++)
        lb[pe_rng_int(&r, 0, n - 1) / (n / 3 + 1)]++;
    CHECK(chi2_ok("int in [0, 2^32 + 2] by thirds", chi2_equal(lb, 3, 300000),
                  2));
}

static void test_shuffle(void) {
    enum { N = 1000 };
    uint32_t *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    CHECK(a && b);
    if (!a || !b) goto out;
    for (uint32_t i = 0; i < N; i++) a[i] = b[i] = i;
    pe_rng_shuffle(7, 3, a, N);
    pe_rng_shuffle(7, 3, b, N);
    CHECK(memcmp(a, b, N * sizeof *a) == 0);
    char seen[N] = {0};
    int perm = 1, moved = 0;
    for (uint32_t i = 0; i < N; i++) {
        perm &= a[i] < N && !seen[a[i]];
        if (a[i] < N) seen[a[i]] = 1;
        moved += a[i] != i;
    }
    CHECK(perm && moved > N / 2);
    for (uint32_t i = 0; i < N; i++) b[i] = i;
    pe_rng_shuffle(7, 4, b, N);
    CHECK(memcmp(a, b, N * sizeof *a) != 0);
    pe_rng_shuffle(7, 3, NULL, 0);
    uint32_t one = 42;
    pe_rng_shuffle(7, 3, &one, 1);
    CHECK(one == 42);
    /* The 6 orders of 3 items over 60000 epochs come out equally often. */
    long count[6] = {0};
    for (uint64_t e = 0; e < 60000; e++) {
        uint32_t p[3] = {0, 1, 2};
        pe_rng_shuffle(99, e, p, 3);
        count[p[0] * 2 + (p[1] > p[2])]++;
    }
    CHECK(chi2_ok("orders of 3", chi2_equal(count, 6, 60000), 5));
out:
    free(a);
    free(b);
}

/* The header's derivation, transcribed independently in Python. */
static const struct {
    uint64_t seed, epoch, index;
    uint32_t view;
} stream_cases[] = {
    {0, 0, 0, 0},
    {42, 3, 12345, 1},
    {0xfedcba9876543210ull, 0xffffffffffffffffull, 0x123456789abull, 7},
    {1, 0x100000000ull, 0xffffffffull, 0xffffffffu},
};
enum { NSTREAM = sizeof stream_cases / sizeof stream_cases[0], NWORDS = 64 };
static int stream_job[NSTREAM], shuffle_job[3], ints_job, uniform_job;

/* Ranges for pe_rng_int: small ones, ones where Lemire's rejection fires
 * about half the time (n = 2^31 + 1, 3 * 2^30), the 32-bit edge, and the
 * two-word path up to the whole int64 range. */
static const int64_t int_ranges[][2] = {
    {0, 6},
    {-3, 4},
    {5, 5},
    {0, (int64_t)1 << 31},
    {0, 3 * ((int64_t)1 << 30) - 1},
    {0, ((int64_t)1 << 32) - 1},
    {0, ((int64_t)1 << 32) + 2},
    {-((int64_t)1 << 40), (int64_t)1 << 40},
    {INT64_MIN, INT64_MAX},
};
/* Bounds for pe_rng_uniform_f32: RandomResizedCrop's scales and float
 * log-ratios, ColorJitter's ranges, and a very narrow one. */
static const double uniform_ranges[][2] = {
    {0.08, 1.0},
    {0.2, 1.0},
    {-0.28768208622932434, 0.28768211603164673},
    {0.6, 1.4},
    {0.0, 1.4},
    {-0.1, 0.1},
    {1e-3, 1e-3 + 1e-9},
};
enum {
    NINTR = sizeof int_ranges / sizeof int_ranges[0],
    NUNIR = sizeof uniform_ranges / sizeof uniform_ranges[0],
    NDRAW = 2000, /* draws per range */
};

static void rng_python_prepare(void) {
    if (!have_py) return;
    for (int k = 0; k < NSTREAM; k++)
        stream_job[k] = job("stream", "%llu %llu %llu %u %d",
                            (unsigned long long)stream_cases[k].seed,
                            (unsigned long long)stream_cases[k].epoch,
                            (unsigned long long)stream_cases[k].index,
                            stream_cases[k].view, NWORDS);
    for (int k = 0; k < 3; k++)
        shuffle_job[k] = job("shuffle", "%d %d %d", 11, k, 100 + k);
    char args[1024];
    int len = 0;
    for (int k = 0; k < NINTR; k++)
        len += snprintf(args + len, sizeof args - len, " %lld %lld",
                        (long long)int_ranges[k][0],
                        (long long)int_ranges[k][1]);
    ints_job = job("ints", "31 4 1 2 %d%s", NDRAW, args);
    if (!have_tv) return;
    len = 0;
    for (int k = 0; k < NUNIR; k++)
        len += snprintf(args + len, sizeof args - len, " %.17g %.17g",
                        uniform_ranges[k][0], uniform_ranges[k][1]);
    uniform_job = job("uniform", "31 4 1 3 %d%s", NDRAW, args);
}

static void test_rng_python(void) {
    if (skip_unless(have_py, NO_PY)) return;
    for (int k = 0; k < NSTREAM && py_ok; k++) {
        size_t n;
        uint32_t *want = result_raw(stream_job[k], &n);
        CHECK(want && n == NWORDS * 4);
        if (!want || n != NWORDS * 4) {
            free(want);
            continue;
        }
        pe_rng r = pe_rng_stream(stream_cases[k].seed, stream_cases[k].epoch,
                                 stream_cases[k].index, stream_cases[k].view);
        int same = 1;
        for (int i = 0; i < NWORDS; i++) same &= pe_rng_u32(&r) == want[i];
        if (!same) fprintf(stderr, "    stream case %d differs\n", k);
        CHECK(same);
        free(want);
    }
    for (int k = 0; k < 3 && py_ok; k++) {
        size_t n, len = 100 + k;
        uint32_t *want = result_raw(shuffle_job[k], &n), got[102];
        CHECK(want && n == len * 4);
        for (uint32_t i = 0; i < len; i++) got[i] = i;
        pe_rng_shuffle(11, (uint64_t)k, got, len);
        if (want && n == len * 4) CHECK(memcmp(got, want, n) == 0);
        free(want);
    }
    if (py_ok) {
        size_t n;
        int64_t *want = result_raw(ints_job, &n);
        CHECK(want && n == NINTR * NDRAW * sizeof *want);
        if (want && n == NINTR * NDRAW * sizeof *want) {
            pe_rng r = pe_rng_stream(31, 4, 1, 2);
            int bad = 0;
            for (int k = 0; k < NINTR; k++)
                for (int i = 0; i < NDRAW; i++)
                    bad += pe_rng_int(&r, int_ranges[k][0], int_ranges[k][1]) !=
                           want[k * NDRAW + i];
            if (bad) fprintf(stderr, "    %d ints differ\n", bad);
            CHECK(bad == 0);
        }
        free(want);
    }
    if (skip_unless(have_tv, "uniform_: " NO_TV) || !py_ok) return;
    size_t n;
    float *want = result_raw(uniform_job, &n);
    CHECK(want && n == (NUNIR * NDRAW + 1) * sizeof *want);
    if (want && n == (NUNIR * NDRAW + 1) * sizeof *want) {
        pe_rng r = pe_rng_stream(31, 4, 1, 3);
        int bad = 0;
        for (int k = 0; k < NUNIR; k++)
            for (int i = 0; i < NDRAW; i++) {
                float v = pe_rng_uniform_f32(&r, uniform_ranges[k][0],
                                             uniform_ranges[k][1]);
                bad += memcmp(&v, &want[k * NDRAW + i], sizeof v) != 0;
            }
        if (bad) fprintf(stderr, "    %d uniform floats differ\n", bad);
        CHECK(bad == 0);
        /* The oracle's count of torch draws where ATen's uniform_ is not
         * the documented mapping of torch.rand's float. */
        if (want[NUNIR * NDRAW] != 0)
            fprintf(stderr, "    ATen's uniform_ differs from the documented "
                            "mapping %g times\n", (double)want[NUNIR * NDRAW]);
        CHECK(want[NUNIR * NDRAW] == 0);
    }
    free(want);
}

/* ---- RandomResizedCrop -------------------------------------------------- */

static void test_rrc_fallback(void) {
    /* An impossible scale rejects all ten tries (area > W * H), and the
     * fallback follows torchvision by hand: */
    static const struct {
        uint32_t W, H;
        double r0, r1;
        pe_box want;
    } cases[] = {
        /* W/H = 2 > 4/3: h = 32, w = round(42.67) = 43, j = 21 / 2 */
        {64, 32, 3.0 / 4.0, 4.0 / 3.0, {0, 10, 32, 43}},
        /* W/H = 1/2 < 3/4: w = 32, h = round(42.67) = 43, i = 10 */
        {32, 64, 3.0 / 4.0, 4.0 / 3.0, {10, 0, 43, 32}},
        {64, 64, 3.0 / 4.0, 4.0 / 3.0, {0, 0, 64, 64}}, /* the whole */
        /* h = 3, w = round(4.5) = 4: Python rounds half to even */
        {10, 3, 0.5, 1.5, {0, 3, 3, 4}},
        /* h = 5, w = round(7.5) = 8 */
        {11, 5, 0.5, 1.5, {0, 1, 5, 8}},
        /* W/H = 5/4 < 2: w = 5, h = round(2.5) = 2, i = 1 */
        {5, 4, 2.0, 3.0, {1, 0, 2, 5}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        pe_rng r = pe_rng_stream(1, 2, 3, 4), twin = r;
        pe_box b;
        CHECK_OK(pe_rrc_params(&r, cases[k].W, cases[k].H, 2.0, 3.0,
                               cases[k].r0, cases[k].r1, &b));
        int ok = b.i == cases[k].want.i && b.j == cases[k].want.j &&
                 b.h == cases[k].want.h && b.w == cases[k].want.w;
        if (!ok)
            fprintf(stderr, "    fallback %ux%u: got i %u j %u h %u w %u\n",
                    cases[k].W, cases[k].H, b.i, b.j, b.h, b.w);
        CHECK(ok);
        /* Ten tries of two floats each, then nothing. */
        for (int i = 0; i < 20; i++) pe_rng_u32(&twin);
        CHECK(pe_rng_u32(&twin) == pe_rng_u32(&r));
    }
    pe_rng r = pe_rng_stream(1, 2, 3, 4);
    pe_box b;
    CHECK_RC(pe_rrc_params(&r, 0, 5, 0.08, 1, 0.75, 1.3, &b), PE_EUSAGE);
    CHECK_RC(pe_rrc_params(&r, 5, 5, 0.5, 0.4, 0.75, 1.3, &b), PE_EUSAGE);
    CHECK_RC(pe_rrc_params(&r, 5, 5, 0.08, 1, 0, 1.3, &b), PE_EUSAGE);
    CHECK_RC(pe_rrc_params(&r, 5, 5, 0.08, 1, 1.4, 1.3, &b), PE_EUSAGE);
    CHECK_RC(pe_rrc_params(&r, 5, 5, NAN, 1, 0.75, 1.3, &b), PE_EUSAGE);
}

typedef struct rrc_case {
    uint32_t W, H;
    double s0, s1, r0, r1;
} rrc_case;

static const rrc_case rrc_cases[] = {
    {64, 64, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0},
    {64, 32, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0},
    {64, 64, 0.2, 1.0, 3.0 / 4.0, 4.0 / 3.0},
    {64, 32, 0.2, 1.0, 3.0 / 4.0, 4.0 / 3.0},
};
/* Traces also cover the fallback and a thin image that rejects often. */
static const rrc_case trace_extra[] = {
    {64, 32, 2.0, 3.0, 3.0 / 4.0, 4.0 / 3.0},
    {10, 3, 2.0, 3.0, 0.5, 1.5},
    {5, 4, 2.0, 3.0, 2.0, 3.0},
    {200, 7, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0},
};
enum {
    NRRC = sizeof rrc_cases / sizeof rrc_cases[0],
    NEXTRA = sizeof trace_extra / sizeof trace_extra[0],
    NTRACE = 1000, /* boxes per traced case */
    NSTAT = 20000, /* boxes per statistical case, each side */
};
static int trace_job[NRRC + NEXTRA], stat_job[NRRC];

static const rrc_case *trace_case(int k) {
    return k < NRRC ? &rrc_cases[k] : &trace_extra[k - NRRC];
}

static void rrc_prepare(void) {
    if (!have_tv) return;
    manifest = manifests[1];
    for (int k = 0; k < NRRC + NEXTRA; k++) {
        const rrc_case *c = trace_case(k);
        trace_job[k] = job("rrctrace", "%u %u %d %d %d %.17g %.17g %.17g %.17g",
                           c->W, c->H, NTRACE, 77, k, c->s0, c->s1, c->r0,
                           c->r1);
    }
    for (int k = 0; k < NRRC; k++) {
        const rrc_case *c = &rrc_cases[k];
        stat_job[k] = job("rrcstat", "%u %u %d %d %d %.17g %.17g %.17g %.17g",
                          c->W, c->H, NSTAT, 1000 + k, 0, c->s0, c->s1,
                          c->r0, c->r1);
    }
    manifest = manifests[0];
}

/* Our boxes for a case: view 0 of images 0..n-1 in epoch `epoch`. */
static void our_boxes(const rrc_case *c, uint64_t seed, uint64_t epoch, int n,
                      int32_t *out /* (n, 4) i j h w */) {
    for (int k = 0; k < n; k++) {
        pe_rng r = pe_rng_stream(seed, epoch, (uint64_t)k, 0);
        pe_box b = {0, 0, 0, 0};
        CHECK_OK(pe_rrc_params(&r, c->W, c->H, c->s0, c->s1, c->r0, c->r1,
                               &b));
        out[4 * k] = (int32_t)b.i;
        out[4 * k + 1] = (int32_t)b.j;
        out[4 * k + 2] = (int32_t)b.h;
        out[4 * k + 3] = (int32_t)b.w;
    }
}

/* torchvision's get_params fed our draws gives our boxes exactly. */
static void test_rrc_trace(void) {
    if (skip_unless(have_tv, NO_TV) || !py_ok) return;
    int32_t *ours = malloc(NTRACE * 4 * sizeof *ours);
    CHECK(ours != NULL);
    for (int k = 0; ours && k < NRRC + NEXTRA; k++) {
        const rrc_case *c = trace_case(k);
        size_t n;
        int32_t *tv = result_raw(trace_job[k], &n);
        CHECK(tv && n == NTRACE * 4 * sizeof *tv);
        if (tv && n == NTRACE * 4 * sizeof *tv) {
            our_boxes(c, 77, (uint64_t)k, NTRACE, ours);
            int bad = 0;
            for (int i = 0; i < NTRACE; i++)
                if (memcmp(ours + 4 * i, tv + 4 * i, 4 * sizeof *tv) != 0 &&
                    bad++ == 0)
                    fprintf(stderr,
                            "    %ux%u scale (%g, %g) box %d: ours (i %d j %d "
                            "h %d w %d), torchvision (%d %d %d %d)\n",
                            c->W, c->H, c->s0, c->s1, i, ours[4 * i],
                            ours[4 * i + 1], ours[4 * i + 2], ours[4 * i + 3],
                            tv[4 * i], tv[4 * i + 1], tv[4 * i + 2],
                            tv[4 * i + 3]);
            if (bad)
                fprintf(stderr, "    %d of %d boxes differ\n", bad, NTRACE);
            CHECK(bad == 0);
        }
        free(tv);
    }
    free(ours);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Two-sample Kolmogorov-Smirnov statistic of sorted integer samples. */
static double ks_stat(const int32_t *a, int na, const int32_t *b, int nb) {
    int i = 0, j = 0;
    double d = 0;
    while (i < na || j < nb) {
        int32_t v = i < na && (j >= nb || a[i] <= b[j]) ? a[i] : b[j];
        while (i < na && a[i] == v) i++;
        while (j < nb && b[j] == v) j++;
        double diff = fabs((double)i / na - (double)j / nb);
        d = diff > d ? diff : d;
    }
    return d;
}

/* torch's generator and ours give the same box distribution. Per field
 * (i, j, h, w) of NSTAT boxes a side:
 *   - means agree within 5 standard errors of their difference,
 *     5 * sqrt(var_a / n + var_b / n) (a false alarm is a 1-in-10^6 event);
 *   - the two-sample KS statistic stays under 1.95 * sqrt(2 / n), its
 *     critical value at alpha = 0.001 (conservative for integer data).
 * Both samples come from fixed seeds, so the verdict is reproducible. */
static void test_rrc_stats(void) {
    if (skip_unless(have_tv, NO_TV) || !py_ok) return;
    static const char *field[4] = {"i", "j", "h", "w"};
    int32_t *ours = malloc(NSTAT * 4 * sizeof *ours);
    int32_t *a = malloc(NSTAT * sizeof *a), *b = malloc(NSTAT * sizeof *b);
    CHECK(ours && a && b);
    const double ks_lim = 1.95 * sqrt(2.0 / NSTAT);
    for (int k = 0; ours && a && b && k < NRRC; k++) {
        const rrc_case *c = &rrc_cases[k];
        size_t n;
        int32_t *tv = result_raw(stat_job[k], &n);
        CHECK(tv && n == NSTAT * 4 * sizeof *tv);
        if (!tv || n != NSTAT * 4 * sizeof *tv) {
            free(tv);
            continue;
        }
        our_boxes(c, 5, 0, NSTAT, ours);
        fprintf(stderr, "    %ux%u scale (%g, %g), n = %d a side:\n", c->W,
                c->H, c->s0, c->s1, NSTAT);
        for (int f = 0; f < 4; f++) {
            double sa = 0, sb = 0, qa = 0, qb = 0;
            for (int i = 0; i < NSTAT; i++) {
                a[i] = ours[4 * i + f];
                b[i] = tv[4 * i + f];
                sa += a[i];
                sb += b[i];
                qa += (double)a[i] * a[i];
                qb += (double)b[i] * b[i];
            }
            double ma = sa / NSTAT, mb = sb / NSTAT;
            double va = qa / NSTAT - ma * ma, vb = qb / NSTAT - mb * mb;
            double mlim = 5 * sqrt(va / NSTAT + vb / NSTAT);
            qsort(a, NSTAT, sizeof *a, cmp_i32);
            qsort(b, NSTAT, sizeof *b, cmp_i32);
            double ks = ks_stat(a, NSTAT, b, NSTAT);
            fprintf(stderr,
                    "      %s: mean %.3f vs %.3f (|d| %.3f, tol %.3f); "
                    "q10/50/90 %d/%d/%d vs %d/%d/%d; KS %.4f (tol %.4f)\n",
                    field[f], ma, mb, fabs(ma - mb), mlim, a[NSTAT / 10],
                    a[NSTAT / 2], a[NSTAT * 9 / 10], b[NSTAT / 10],
                    b[NSTAT / 2], b[NSTAT * 9 / 10], ks, ks_lim);
            CHECK(fabs(ma - mb) <= mlim);
            CHECK(ks <= ks_lim);
        }
        free(tv);
    }
    free(ours);
    free(a);
    free(b);
}

/* ---- crop and resize ---------------------------------------------------- */

static input crop_in[2]; /* 64x32 smooth, RGB and L */
static const pe_box crop_boxes[] = {
    {0, 0, 32, 64},  {0, 0, 32, 32}, {0, 32, 32, 32}, {5, 7, 10, 13},
    {20, 50, 12, 14}, {31, 63, 1, 1}, {0, 10, 32, 3},  {10, 0, 2, 64},
    {3, 17, 29, 40}, {1, 1, 30, 62},
};
static const uint32_t crop_sizes[] = {32, 24, 96};
enum {
    NCBOX = sizeof crop_boxes / sizeof crop_boxes[0],
    NCSIZE = sizeof crop_sizes / sizeof crop_sizes[0],
    NCRAND = 40, /* boxes drawn by pe_rrc_params */
    NCROP = 2 * (NCBOX * NCSIZE + NCRAND),
};
static pe_box crop_box[NCROP];
static uint32_t crop_size[NCROP];
static int crop_job[NCROP], crop_tvjob[NCROP];

static void crop_prepare(void) {
    smooth_image(&crop_in[0].im, 64, 32, 3, 1);
    smooth_image(&crop_in[1].im, 64, 32, 1, 2);
    int n = 0;
    pe_rng r = pe_rng_stream(3, 0, 0, 0);
    for (int c = 0; c < 2; c++) {
        for (int b = 0; b < NCBOX; b++)
            for (int s = 0; s < NCSIZE; s++, n++) {
                crop_box[n] = crop_boxes[b];
                crop_size[n] = crop_sizes[s];
            }
        for (int k = 0; k < NCRAND; k++, n++) {
            CHECK_OK(pe_rrc_params(&r, 64, 32, 0.08, 1, 0.75, 4.0 / 3.0,
                                   &crop_box[n]));
            crop_size[n] = 32;
        }
    }
    if (!have_pil) return;
    input_save(&crop_in[0], "crop3");
    input_save(&crop_in[1], "crop1");
    for (int k = 0; k < NCROP; k++) {
        const input *in = &crop_in[k < NCROP / 2 ? 0 : 1];
        const pe_box *b = &crop_box[k];
        crop_job[k] = job("crop", "%s %u %u %u %u %u", in->arg, b->i, b->j,
                          b->h, b->w, crop_size[k]);
        if (have_tv)
            crop_tvjob[k] = job("tvcrop", "%s %u %u %u %u %u", in->arg, b->i,
                                b->j, b->h, b->w, crop_size[k]);
    }
}

static void test_crop_resize(void) {
    int differs = 0, compared = 0;
    pe_aug_scratch s = {0};
    for (int k = 0; k < NCROP; k++) {
        const pe_image *src = &crop_in[k < NCROP / 2 ? 0 : 1].im;
        const pe_box *b = &crop_box[k];
        pe_image got = {0}, plain = {0}, boxed = {0};
        char what[128];
        snprintf(what, sizeof what, "%ux%ux%u box (i %u j %u h %u w %u) -> %u",
                 src->w, src->h, src->c, b->i, b->j, b->h, b->w, crop_size[k]);
        CHECK_OK(pe_aug_resized_crop(src, b, crop_size[k], &got, &s));
        CHECK_OK(pe_aug_resized_crop(src, b, crop_size[k], &plain, NULL));
        if (got.px && plain.px) CHECK(same_image(what, &got, &plain));
        /* The same box as resize(box=...) on the whole image reads pixels
         * outside it wherever the filter's support crosses the box's edge,
         * so it is not what torchvision computes; count how often. */
        CHECK_OK(pe_image_resize_box_bilinear(src, &boxed, crop_size[k],
                                              crop_size[k], b->j, b->i,
                                              b->j + b->w, b->i + b->h));
        if (got.px && boxed.px) {
            compared++;
            differs += memcmp(got.px, boxed.px, pe_image_size(&got)) != 0;
        }
        if (have_pil && py_ok) check_image_job(crop_job[k], what, &got);
        if (have_tv && py_ok) check_image_job(crop_tvjob[k], what, &got);
        pe_image_free(&got);
        pe_image_free(&plain);
        pe_image_free(&boxed);
    }
    pe_aug_scratch_free(&s);
    fprintf(stderr, "    resize(box=) on the whole image differs from crop + "
                    "resize for %d of %d boxes\n", differs, compared);
    CHECK(differs > 0);
    if (!have_pil) fprintf(stderr, "    skip: " NO_PIL "\n");
    else if (!have_tv) fprintf(stderr, "    skip: F.resized_crop: " NO_TV "\n");

    /* Boxes outside the image or empty are usage errors. */
    pe_image dst = {0};
    const pe_image *src = &crop_in[0].im;
    static const pe_box bad[] = {{0, 0, 0, 5},  {0, 0, 5, 0},  {0, 60, 5, 5},
                                 {30, 0, 3, 5}, {0, 65, 1, 1}, {33, 0, 1, 1}};
    for (size_t k = 0; src->px && k < sizeof bad / sizeof bad[0]; k++)
        CHECK_RC(pe_aug_resized_crop(src, &bad[k], 8, &dst, NULL), PE_EUSAGE);
    if (src->px)
        CHECK_RC(pe_aug_resized_crop(src, &crop_boxes[0], 0, &dst, NULL),
                 PE_EUSAGE);
    CHECK(dst.px == NULL);
}

/* ---- colour jitter, grayscale, flip ------------------------------------- */

static input jit_in[4]; /* random RGB, random L, smooth RGB, all colours */
enum { NJIT_IN = 4, ALLC = 3 };

typedef struct op_case {
    int in;      /* jit_in index */
    int op;      /* PE_JITTER_*, or 4 gray, 5 flip, 6 HSV round trip */
    float f;     /* factor */
    int job, tvjob;
} op_case;

static op_case op_cases[256];
static int nops;

static const float bcs_factors[] = {0.0f, 0.25f, 0.6f, 0.8137f, 1.0f,
                                    1.2345f, 1.4f, 2.5f};
static const float hue_factors[] = {-0.5f, -0.25f, -0.1f, -0.0392f, -0.003f,
                                    0.0f,  0.002f, 0.05f, 0.1f,     0.3333f,
                                    0.5f};
static const char *op_name[] = {"brightness", "contrast", "saturation", "hue",
                                "gray", "flip", "hsv"};

static void add_op(int in, int op, float f) {
    op_case *c = &op_cases[nops++];
    PE_ASSERT(nops <= (int)(sizeof op_cases / sizeof op_cases[0]));
    c->in = in;
    c->op = op;
    c->f = f;
    c->job = c->tvjob = -1;
}

static void jitter_prepare(void) {
    random_image(&jit_in[0].im, 37, 23, 3, 10);
    random_image(&jit_in[1].im, 37, 23, 1, 11);
    smooth_image(&jit_in[2].im, 64, 32, 3, 12);
    all_colours(&jit_in[ALLC].im);
    for (int in = 0; in < 3; in++) {
        for (int op = 0; op < 3; op++)
            for (size_t k = 0; k < sizeof bcs_factors / sizeof *bcs_factors; k++)
                add_op(in, op, bcs_factors[k]);
        for (size_t k = 0; k < sizeof hue_factors / sizeof *hue_factors; k++)
            add_op(in, PE_JITTER_HUE, hue_factors[k]);
        for (int op = 4; op < 7; op++) add_op(in, op, 0);
    }
    /* Every colour: saturation (its luma and blend), the HSV round trip
     * and one hue shift on each of the 2^24 RGB values. */
    add_op(ALLC, PE_JITTER_SATURATION, 1.35f);
    add_op(ALLC, 6, 0);
    add_op(ALLC, PE_JITTER_HUE, 0.1f);

    if (!have_pil) return;
    static const char *names[NJIT_IN] = {"jit_rgb", "jit_l", "jit_smooth",
                                         "allcolours"};
    for (int in = 0; in < NJIT_IN; in++) input_save(&jit_in[in], names[in]);
    for (int k = 0; k < nops; k++) {
        op_case *c = &op_cases[k];
        const char *arg = jit_in[c->in].arg;
        const int rgb = jit_in[c->in].im.c == 3;
        if (c->op <= PE_JITTER_SATURATION)
            c->job = job("enhance", "%s %s %.17g", arg, op_name[c->op],
                         (double)c->f);
        else if (c->op == 4)
            c->job = job("gray", "%s", arg);
        else if (c->op == 5)
            c->job = job("flip", "%s", arg);
        else if (c->op == 6 && rgb)
            c->job = job("hsvrt", "%s", arg);
        if (!have_tv) continue;
        /* Every colour goes through torchvision for hue only: its other
         * ops are the Pillow calls the "enhance" jobs already make. */
        if (c->op <= PE_JITTER_HUE &&
            (c->in != ALLC || c->op == PE_JITTER_HUE))
            c->tvjob = job("tvjit", "%s %s %.17g", arg, op_name[c->op],
                           (double)c->f);
        else if (c->op == 4)
            c->tvjob = job("tvgray", "%s", arg);
        else if (c->op == 5)
            c->tvjob = job("tvflip", "%s", arg);
    }
}

static void test_jitter_ops(void) {
    for (int k = 0; k < nops; k++) {
        const op_case *c = &op_cases[k];
        const pe_image *src = &jit_in[c->in].im;
        pe_image got = {0};
        if (!src->px || copy_image(&got, src) != 0) {
            CHECK(0);
            continue;
        }
        switch (c->op) {
        case PE_JITTER_BRIGHTNESS: pe_aug_brightness(&got, c->f); break;
        case PE_JITTER_CONTRAST: pe_aug_contrast(&got, c->f); break;
        case PE_JITTER_SATURATION: pe_aug_saturation(&got, c->f); break;
        case PE_JITTER_HUE: CHECK_OK(pe_aug_hue(&got, c->f)); break;
        case 4: pe_aug_grayscale(&got); break;
        case 5: pe_aug_hflip(&got); break;
        default: CHECK_OK(pe_aug_hue(&got, 0.0f)); break;
        }
        /* Self-contained facts first. */
        if (src->c == 1 && (c->op == PE_JITTER_SATURATION ||
                            c->op == PE_JITTER_HUE || c->op == 4))
            CHECK(memcmp(got.px, src->px, pe_image_size(src)) == 0);
        if (c->op <= PE_JITTER_SATURATION && c->f == 1.0f)
            CHECK(memcmp(got.px, src->px, pe_image_size(src)) == 0);
        char what[96];
        snprintf(what, sizeof what, "%s %.9g on %ux%ux%u", op_name[c->op],
                 (double)c->f, src->w, src->h, src->c);
        if (py_ok && c->job >= 0) check_image_job(c->job, what, &got);
        if (py_ok && c->tvjob >= 0) {
            char tvwhat[128];
            snprintf(tvwhat, sizeof tvwhat, "torchvision %s", what);
            check_image_job(c->tvjob, tvwhat, &got);
        }
        pe_image_free(&got);
    }
    if (!have_pil) fprintf(stderr, "    skip: " NO_PIL "\n");
    else if (!have_tv) fprintf(stderr, "    skip: functional ops: " NO_TV "\n");

    /* Flip twice is the identity; hue outside [-0.5, 0.5] is refused. */
    pe_image im = {0};
    if (jit_in[2].im.px && copy_image(&im, &jit_in[2].im) == 0) {
        pe_aug_hflip(&im);
        CHECK(memcmp(im.px, jit_in[2].im.px, pe_image_size(&im)) != 0);
        pe_aug_hflip(&im);
        CHECK(memcmp(im.px, jit_in[2].im.px, pe_image_size(&im)) == 0);
        CHECK_RC(pe_aug_hue(&im, 0.51f), PE_EUSAGE);
        CHECK_RC(pe_aug_hue(&im, -0.51f), PE_EUSAGE);
        CHECK_RC(pe_aug_hue(&im, NAN), PE_EUSAGE);
        CHECK(memcmp(im.px, jit_in[2].im.px, pe_image_size(&im)) == 0);
    }
    pe_image_free(&im);
}

/* ---- normalisation ------------------------------------------------------ */

static const float norm_mean[3] = {0.4914f, 0.4822f, 0.4465f};
static const float norm_std[3] = {0.2023f, 0.1994f, 0.2010f};
static int norm_job[2];

static void norm_prepare(void) {
    if (!have_tv) return;
    for (int k = 0; k < 2; k++)
        norm_job[k] = job("tvnorm", "%s %.17g %.17g %.17g %.17g %.17g %.17g",
                          jit_in[k].arg, (double)norm_mean[0],
                          (double)norm_mean[1], (double)norm_mean[2],
                          (double)norm_std[0], (double)norm_std[1],
                          (double)norm_std[2]);
}

static int same_floats(const char *what, const float *got, const float *want,
                       size_t n) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof *got) != 0 && bad++ == 0)
            first = i;
    if (bad)
        fprintf(stderr, "    %s: %zu of %zu floats differ; first [%zu]: got "
                        "%.9g, torchvision %.9g\n",
                what, bad, n, first, (double)got[first], (double)want[first]);
    return bad == 0;
}

static void test_normalize(void) {
    /* By hand: v = 0, 255 and 51 (= 0.2 * 255). */
    pe_image im = {0};
    CHECK_OK(pe_image_alloc(&im, 3, 1, 1));
    if (im.px) {
        im.px[0] = 0, im.px[1] = 255, im.px[2] = 51;
        float out[9];
        pe_aug_normalize(&im, 3, norm_mean, norm_std, out);
        for (int k = 0; k < 3; k++) {
            CHECK(out[3 * k] == (0.0f - norm_mean[k]) / norm_std[k]);
            CHECK(out[3 * k + 1] == (1.0f - norm_mean[k]) / norm_std[k]);
            CHECK(out[3 * k + 2] == (51.0f / 255.0f - norm_mean[k]) /
                                        norm_std[k]);
            CHECK(fabsf(out[3 * k + 2] -
                        (0.2f - norm_mean[k]) / norm_std[k]) < 1e-6f);
        }
    }
    pe_image_free(&im);
    if (skip_unless(have_tv, NO_TV) || !py_ok) return;
    for (int k = 0; k < 2; k++) {
        const pe_image *src = &jit_in[k].im;
        size_t n, count = pe_image_size(src);
        float *want = result_raw(norm_job[k], &n);
        float *got = malloc(count * sizeof *got);
        CHECK(want && got && n == count * sizeof *want);
        if (want && got && n == count * sizeof *want) {
            pe_aug_normalize(src, src->c, norm_mean, norm_std, got);
            CHECK(same_floats("ToTensor + Normalize", got, want, count));
        }
        free(want);
        free(got);
    }
}

/* ---- the whole view ----------------------------------------------------- */

typedef struct pipe_case {
    int src;  /* pipe_in index */
    int opts; /* pipe_opts index */
} pipe_case;

static input pipe_in[3]; /* 64x32 RGB (a 2:1 composite), 40x40 L, 97x61 RGB */
static pe_aug_opts pipe_opts[4];
static const pipe_case pipe_cases[] = {{0, 0}, {1, 0}, {1, 1}, {2, 2},
                                       {0, 3}};
enum {
    NPCASE = sizeof pipe_cases / sizeof pipe_cases[0],
    NPVIEW = 40, /* views per case */
};
static int pipe_job[NPCASE][NPVIEW];

static void set_pipe_opts(void) {
    pe_aug_opts_default(&pipe_opts[0]);
    pipe_opts[1] = pipe_opts[0];
    pipe_opts[1].channels = 3; /* an L source seen as RGB */
    pe_aug_opts *o = &pipe_opts[2];
    *o = pipe_opts[0];
    /* Every branch often: jitter always, grey half the time, strong hue,
     * brightness off (no draw), another size and scale. */
    o->size = 24;
    o->scale[0] = 0.2;
    o->p_jitter = 1.0;
    o->p_gray = 0.5;
    o->brightness = 0.0;
    o->contrast = 0.9;
    o->saturation = 1.5;
    o->hue = 0.5;
    o->mean[0] = 0.5f, o->mean[1] = 0.25f, o->mean[2] = 0.125f;
    o->std[0] = 0.3f, o->std[1] = 0.7f, o->std[2] = 1.5f;
    o = &pipe_opts[3];
    *o = pipe_opts[0];
    o->scale[0] = 2.0, o->scale[1] = 3.0; /* always the fallback crop */
    o->p_flip = 1.0;
    o->p_jitter = 0.0;
    o->p_gray = 1.0;
}

static void pipe_prepare(void) {
    smooth_image(&pipe_in[0].im, 64, 32, 3, 20);
    smooth_image(&pipe_in[1].im, 40, 40, 1, 21);
    smooth_image(&pipe_in[2].im, 97, 61, 3, 22);
    set_pipe_opts();
    if (!have_tv) return;
    static const char *names[3] = {"pipe0", "pipe1", "pipe2"};
    for (int k = 0; k < 3; k++) input_save(&pipe_in[k], names[k]);
    for (int k = 0; k < NPCASE; k++) {
        const pe_aug_opts *o = &pipe_opts[pipe_cases[k].opts];
        for (int v = 0; v < NPVIEW; v++)
            pipe_job[k][v] = job(
                "tvpipe",
                "%s %u %u %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g "
                "%.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g "
                "%d %d %d %d",
                pipe_in[pipe_cases[k].src].arg, o->channels, o->size,
                o->scale[0], o->scale[1], o->ratio[0], o->ratio[1], o->p_flip,
                o->p_jitter, o->brightness, o->contrast, o->saturation,
                o->hue, o->p_gray, (double)o->mean[0], (double)o->mean[1],
                (double)o->mean[2], (double)o->std[0], (double)o->std[1],
                (double)o->std[2], 123, k, v / 2, v % 2);
    }
}

static void test_pipeline(void) {
    pe_aug_scratch s = {0};
    float *out = malloc(3 * 96 * 96 * sizeof *out);
    float *again = malloc(3 * 96 * 96 * sizeof *again);
    CHECK(out && again);
    if (!out || !again) goto done;

    /* Deterministic, and view 0 and view 1 differ. */
    const pe_image *src = &pipe_in[0].im;
    const size_t n = 3 * 32 * 32;
    CHECK_OK(pe_augment_view(src, &pipe_opts[0], 9, 1, 2, 0, out, &s));
    CHECK_OK(pe_augment_view(src, &pipe_opts[0], 9, 1, 2, 0, again, NULL));
    CHECK(memcmp(out, again, n * sizeof *out) == 0);
    CHECK_OK(pe_augment_view(src, &pipe_opts[0], 9, 1, 2, 1, again, &s));
    CHECK(memcmp(out, again, n * sizeof *out) != 0);

    /* Bad options are refused before anything is written. */
    pe_aug_opts bad = pipe_opts[0];
    bad.hue = 0.6;
    CHECK_RC(pe_augment_view(src, &bad, 9, 1, 2, 0, out, &s), PE_EUSAGE);
    bad = pipe_opts[0];
    bad.p_gray = 1.5;
    CHECK_RC(pe_augment_view(src, &bad, 9, 1, 2, 0, out, &s), PE_EUSAGE);
    bad = pipe_opts[0];
    bad.std[1] = 0;
    CHECK_RC(pe_augment_view(src, &bad, 9, 1, 2, 0, out, &s), PE_EUSAGE);
    bad = pipe_opts[0];
    bad.size = 0;
    CHECK_RC(pe_augment_view(src, &bad, 9, 1, 2, 0, out, &s), PE_EUSAGE);
    bad = pipe_opts[0];
    bad.channels = 1;
    CHECK_RC(pe_augment_view(src, &bad, 9, 1, 2, 0, out, &s), PE_EUSAGE);
    pe_image empty = {0};
    CHECK_RC(pe_augment_view(&empty, &pipe_opts[0], 9, 1, 2, 0, out, &s),
             PE_EUSAGE);

    /* The parameter draws follow the documented order: flip is the word
     * right after the crop's draws. */
    {
        pe_rng r = pe_rng_stream(9, 1, 2, 0), t = r;
        pe_aug_params p;
        pe_box b;
        CHECK_OK(pe_aug_draw(&r, 64, 32, &pipe_opts[0], &p));
        CHECK_OK(pe_rrc_params(&t, 64, 32, 0.08, 1.0, 0.75, 4.0 / 3.0, &b));
        CHECK(memcmp(&b, &p.box, sizeof b) == 0);
        CHECK(p.flip == (pe_rng_float(&t) < 0.5f));
    }

    if (skip_unless(have_tv, NO_TV) || !py_ok) goto done;
    int counts[4] = {0}; /* flips, jitters, greys, fallbacks seen */
    for (int k = 0; k < NPCASE; k++) {
        const pe_aug_opts *o = &pipe_opts[pipe_cases[k].opts];
        const pe_image *im = &pipe_in[pipe_cases[k].src].im;
        const uint32_t c = o->channels ? o->channels : im->c;
        const size_t count = (size_t)c * o->size * o->size;
        int bad_views = 0;
        for (int v = 0; v < NPVIEW; v++) {
            size_t len;
            float *want = result_raw(pipe_job[k][v], &len);
            CHECK(want && len == count * sizeof *want);
            if (want && len == count * sizeof *want) {
                CHECK_OK(pe_augment_view(im, o, 123, (uint64_t)k,
                                         (uint64_t)(v / 2), (uint32_t)(v % 2),
                                         out, &s));
                char what[96];
                snprintf(what, sizeof what, "case %d view %d (%ux%ux%u)", k,
                         v, im->w, im->h, im->c);
                bad_views += !same_floats(what, out, want, count);
            }
            free(want);
            pe_rng r = pe_rng_stream(123, (uint64_t)k, (uint64_t)(v / 2),
                                     (uint32_t)(v % 2));
            pe_aug_params p;
            if (pe_aug_draw(&r, im->w, im->h, o, &p) == 0) {
                counts[0] += p.flip;
                counts[1] += p.jitter;
                counts[2] += p.gray;
                counts[3] += p.box.w == im->w || p.box.h == im->h;
            }
        }
        CHECK(bad_views == 0);
    }
    fprintf(stderr, "    %d views: %d flipped, %d jittered, %d grey, %d "
                    "with a full-width or full-height crop\n",
            NPCASE * NPVIEW, counts[0], counts[1], counts[2], counts[3]);
    /* Each branch was exercised (with the chosen options, all four are
     * certain to occur; see set_pipe_opts). */
    CHECK(counts[0] > 0 && counts[1] > 0 && counts[2] > 0 && counts[3] > 0);
done:
    pe_aug_scratch_free(&s);
    free(out);
    free(again);
}

/* ---- localized cropping ------------------------------------------------- */

/* Region streams against the Python transcription, and traced localized
 * boxes against torchvision's get_params (region, then each view inside
 * it), for a 2:1 composite with the defaults and a square image with
 * other bounds. */
typedef struct local_case {
    uint32_t W, H;
    double s0, s1, r0, r1;   /* the views' scale and ratio */
    double ls0, ls1, lr0, lr1; /* the region's */
} local_case;
static const local_case local_cases[] = {
    {64, 32, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0, 0.2, 0.5, 3.0 / 4.0, 4.0 / 3.0},
    {40, 40, 0.2, 1.0, 0.5, 2.0, 0.05, 0.9, 0.5, 2.0},
};
enum {
    NLOCAL = sizeof local_cases / sizeof local_cases[0],
    NLTRACE = 500,   /* images per traced case */
    NHALVES = 20000, /* draws per mode in the halves statistic */
};
static int rstream_job[2], local_job[NLOCAL];

static void local_opts(const local_case *c, uint32_t mode, pe_aug_opts *o) {
    pe_aug_opts_default(o);
    o->crop_mode = mode;
    o->scale[0] = c->s0;
    o->scale[1] = c->s1;
    o->ratio[0] = c->r0;
    o->ratio[1] = c->r1;
    o->local_scale[0] = c->ls0;
    o->local_scale[1] = c->ls1;
    o->local_ratio[0] = c->lr0;
    o->local_ratio[1] = c->lr1;
}

static void local_prepare(void) {
    if (!have_py) return;
    rstream_job[0] = job("rstream", "5 2 77 %d", NWORDS);
    rstream_job[1] = job("rstream", "%llu %llu %llu %d",
                         0xfedcba9876543210ull, 0xffffffffffffffffull,
                         0x123456789abull, NWORDS);
    if (!have_tv) return;
    manifest = manifests[1];
    for (int k = 0; k < NLOCAL; k++) {
        const local_case *c = &local_cases[k];
        local_job[k] = job("localtrace",
                           "%u %u %d %d %d %.17g %.17g %.17g %.17g %.17g "
                           "%.17g %.17g %.17g",
                           c->W, c->H, NLTRACE, 21, k, c->s0, c->s1, c->r0,
                           c->r1, c->ls0, c->ls1, c->lr0, c->lr1);
    }
    manifest = manifests[0];
}

static int box_inside(const pe_box *b, const pe_box *in) {
    return b->w > 0 && b->h > 0 && b->j >= in->j && b->i >= in->i &&
           b->j + b->w <= in->j + in->w && b->i + b->h <= in->i + in->h;
}

/* Options, the stream, the definition, containment, area bounds and
 * determinism, with no oracle. */
static void test_local_crop(void) {
    pe_aug_opts o, bad;
    pe_aug_opts_default(&o);
    CHECK(o.crop_mode == PE_CROP_INDEPENDENT && o.local_scale[0] == 0.2 &&
          o.local_scale[1] == 0.5 && o.local_ratio[0] == 0.75 &&
          o.local_ratio[1] == 4.0 / 3.0);
    bad = o;
    bad.crop_mode = 2;
    CHECK_RC(pe_aug_opts_check(&bad), PE_EUSAGE);
    /* the region's bounds are checked in local mode only */
    bad = o;
    bad.local_scale[0] = 0.6;
    CHECK_OK(pe_aug_opts_check(&bad));
    bad.crop_mode = PE_CROP_LOCAL;
    CHECK_RC(pe_aug_opts_check(&bad), PE_EUSAGE);
    bad = o;
    bad.crop_mode = PE_CROP_LOCAL;
    bad.local_ratio[0] = 0;
    CHECK_RC(pe_aug_opts_check(&bad), PE_EUSAGE);
    pe_aug_params p;
    CHECK_RC(pe_aug_draw_view(1, 0, 0, 0, 64, 32, &bad, &p, NULL), PE_EUSAGE);

    /* The region stream: its documented key and counter, and no word in
     * common with the view streams of the same image. */
    {
        uint32_t key[2];
        pe_rng_epoch_key(5, 2, PE_RNG_TAG_REGION, key);
        pe_rng a = pe_rng_region_stream(5, 2, 0x300000077ull);
        pe_rng b = pe_rng_init(key, 0, 0x77, 3);
        pe_rng v0 = pe_rng_stream(5, 2, 0x300000077ull, 0);
        pe_rng v1 = pe_rng_stream(5, 2, 0x300000077ull, 1);
        int same = 1, shared = 0;
        for (int k = 0; k < 16; k++) {
            uint32_t w = pe_rng_u32(&a);
            same &= w == pe_rng_u32(&b);
            shared += w == pe_rng_u32(&v0);
            shared += w == pe_rng_u32(&v1);
        }
        CHECK(same && shared == 0);
    }

    /* Independent mode is pe_aug_draw on the view stream, region = image. */
    {
        pe_rng r = pe_rng_stream(9, 1, 2, 1);
        pe_aug_params want;
        pe_box reg;
        CHECK_OK(pe_aug_draw(&r, 64, 32, &o, &want));
        CHECK_OK(pe_aug_draw_view(9, 1, 2, 1, 64, 32, &o, &p, &reg));
        CHECK(memcmp(&p, &want, sizeof p) == 0);
        CHECK(reg.i == 0 && reg.j == 0 && reg.w == 64 && reg.h == 32);
    }

    /* Local mode is the documented two steps: the region from the region
     * stream, then pe_aug_draw on a region-sized image moved by its
     * origin. Both views inside the region; the region's area within the
     * bounds up to the rounding of w and h (on a square image with these
     * bounds RandomResizedCrop never falls back); the same arguments give
     * the same draws. */
    pe_aug_opts lo = o;
    lo.crop_mode = PE_CROP_LOCAL;
    int defined = 1, inside = 1, area = 1, again = 1, differ = 0;
    double fmin = 1, fmax = 0;
    for (uint64_t k = 0; k < 5000; k++) {
        const uint32_t W = 64, H = 64;
        pe_box reg[2], want;
        pe_aug_params v[2], w;
        pe_rng rr = pe_rng_region_stream(3, 4, k);
        CHECK_OK(pe_rrc_params(&rr, W, H, 0.2, 0.5, 0.75, 4.0 / 3.0, &want));
        for (uint32_t view = 0; view < 2; view++) {
            CHECK_OK(pe_aug_draw_view(3, 4, k, view, W, H, &lo, &v[view],
                                      &reg[view]));
            pe_rng r = pe_rng_stream(3, 4, k, view);
            CHECK_OK(pe_aug_draw(&r, want.w, want.h, &lo, &w));
            w.box.i += want.i;
            w.box.j += want.j;
            defined &= memcmp(&w, &v[view], sizeof w) == 0;
            inside &= box_inside(&v[view].box, &reg[view]);
            pe_aug_params x;
            CHECK_OK(pe_aug_draw_view(3, 4, k, view, W, H, &lo, &x, NULL));
            again &= memcmp(&x, &v[view], sizeof x) == 0;
        }
        defined &= memcmp(&reg[0], &want, sizeof want) == 0 &&
                   memcmp(&reg[1], &want, sizeof want) == 0;
        const pe_box image = {0, 0, H, W};
        inside &= box_inside(&reg[0], &image);
        /* |w - sqrt(A s a)| <= 1/2 and |h - sqrt(A s / a)| <= 1/2 */
        const double A = (double)W * H, rw = reg[0].w, rh = reg[0].h;
        area &= (rw - 0.5) * (rh - 0.5) <= 0.5 * A &&
                (rw + 0.5) * (rh + 0.5) >= 0.2 * A;
        const double f = rw * rh / A;
        fmin = f < fmin ? f : fmin;
        fmax = f > fmax ? f : fmax;
        differ += memcmp(&v[0].box, &v[1].box, sizeof v[0].box) != 0;
    }
    fprintf(stderr, "    5000 regions of a 64x64 image: area fraction %.3f "
                    "to %.3f\n", fmin, fmax);
    CHECK(defined);
    CHECK(inside);
    CHECK(area);
    CHECK(again);
    CHECK(differ > 4900); /* the two views are two draws, not one */
    CHECK(fmin < 0.25 && fmax > 0.45); /* the bounds are reached */

    /* The pipeline: reproducible, view 0 != view 1, and another epoch
     * draws another region. */
    pe_image im = {0};
    smooth_image(&im, 64, 32, 3, 5);
    float *a = malloc(3 * 32 * 32 * sizeof *a), *b = malloc(3 * 32 * 32 * sizeof *b);
    CHECK(im.px && a && b);
    if (im.px && a && b) {
        const size_t n = 3 * 32 * 32 * sizeof *a;
        CHECK_OK(pe_augment_view(&im, &lo, 9, 1, 2, 0, a, NULL));
        CHECK_OK(pe_augment_view(&im, &lo, 9, 1, 2, 0, b, NULL));
        CHECK(memcmp(a, b, n) == 0);
        CHECK_OK(pe_augment_view(&im, &lo, 9, 1, 2, 1, b, NULL));
        CHECK(memcmp(a, b, n) != 0);
        pe_box r1, r2;
        CHECK_OK(pe_aug_draw_view(9, 1, 2, 0, 64, 32, &lo, &p, &r1));
        CHECK_OK(pe_aug_draw_view(9, 2, 2, 0, 64, 32, &lo, &p, &r2));
        CHECK(memcmp(&r1, &r2, sizeof r1) != 0);
    }
    free(a);
    free(b);
    pe_image_free(&im);
}

/* The Python transcription of the region stream, and torchvision's
 * get_params on the documented draws. */
static void test_local_trace(void) {
    if (skip_unless(have_py, NO_PY) || !py_ok) return;
    static const uint64_t rs[2][3] = {
        {5, 2, 77},
        {0xfedcba9876543210ull, 0xffffffffffffffffull, 0x123456789abull}};
    for (int k = 0; k < 2; k++) {
        size_t n;
        uint32_t *want = result_raw(rstream_job[k], &n);
        CHECK(want && n == NWORDS * 4);
        if (want && n == NWORDS * 4) {
            pe_rng r = pe_rng_region_stream(rs[k][0], rs[k][1], rs[k][2]);
            int same = 1;
            for (int i = 0; i < NWORDS; i++) same &= pe_rng_u32(&r) == want[i];
            CHECK(same);
        }
        free(want);
    }
    if (skip_unless(have_tv, NO_TV)) return;
    for (int k = 0; k < NLOCAL; k++) {
        const local_case *c = &local_cases[k];
        pe_aug_opts o;
        local_opts(c, PE_CROP_LOCAL, &o);
        size_t n;
        int32_t *tv = result_raw(local_job[k], &n);
        CHECK(tv && n == NLTRACE * 12 * sizeof *tv);
        int bad = 0;
        for (int i = 0; tv && n == NLTRACE * 12 * sizeof *tv && i < NLTRACE; i++) {
            int32_t ours[12];
            for (uint32_t v = 0; v < 2; v++) {
                pe_aug_params p;
                pe_box reg = {0, 0, 0, 0};
                CHECK_OK(pe_aug_draw_view(21, (uint64_t)k, (uint64_t)i, v, c->W,
                                          c->H, &o, &p, &reg));
                const pe_box *bx[2] = {&reg, &p.box};
                for (int q = 0; q < 2; q++) {
                    int32_t *dst = ours + (q ? 4 + 4 * v : 0);
                    dst[0] = (int32_t)bx[q]->i;
                    dst[1] = (int32_t)bx[q]->j;
                    dst[2] = (int32_t)bx[q]->h;
                    dst[3] = (int32_t)bx[q]->w;
                }
            }
            if (memcmp(ours, tv + 12 * i, sizeof ours) != 0 && bad++ == 0)
                fprintf(stderr, "    %ux%u image %d: region (%d %d %d %d) "
                                "views (%d %d %d %d) (%d %d %d %d); "
                                "torchvision (%d %d %d %d) (%d %d %d %d) "
                                "(%d %d %d %d)\n",
                        c->W, c->H, i, ours[0], ours[1], ours[2], ours[3],
                        ours[4], ours[5], ours[6], ours[7], ours[8], ours[9],
                        ours[10], ours[11], tv[12 * i], tv[12 * i + 1],
                        tv[12 * i + 2], tv[12 * i + 3], tv[12 * i + 4],
                        tv[12 * i + 5], tv[12 * i + 6], tv[12 * i + 7],
                        tv[12 * i + 8], tv[12 * i + 9], tv[12 * i + 10],
                        tv[12 * i + 11]);
        }
        if (bad) fprintf(stderr, "    %d of %d images differ\n", bad, NLTRACE);
        CHECK(bad == 0);
        free(tv);
    }
}

/* What the defense is for: on a 2:1 composite (target left, reference
 * right), the chance that one view lies wholly in one half and the other
 * view wholly in the other, over the parameter draws alone. With
 * independent crops it is about 7%; inside one region of at most half the
 * image the views overlap, and it drops to about 0.1% (a region that
 * straddles the seam can still hold two small views on either side). The
 * bounds are wide (20,000 draws: a standard error of 0.2 points at 7%);
 * the draws are fixed by the seed, so the numbers are too. */
static void test_local_halves(void) {
    double frac[2];
    for (uint32_t mode = 0; mode < 2; mode++) {
        pe_aug_opts o;
        local_opts(&local_cases[0], mode, &o);
        long split = 0;
        for (uint64_t k = 0; k < NHALVES; k++) {
            pe_aug_params p[2];
            int left[2], right[2];
            for (uint32_t v = 0; v < 2; v++) {
                CHECK_OK(pe_aug_draw_view(11, 0, k, v, 64, 32, &o, &p[v], NULL));
                left[v] = p[v].box.j + p[v].box.w <= 32;
                right[v] = p[v].box.j >= 32;
            }
            split += (left[0] && right[1]) || (right[0] && left[1]);
        }
        frac[mode] = (double)split / NHALVES;
    }
    fprintf(stderr, "    views on different halves of a 2:1 composite: "
                    "independent %.2f%%, local %.2f%%\n",
            100 * frac[0], 100 * frac[1]);
    CHECK(frac[0] > 0.06 && frac[0] < 0.085);
    CHECK(frac[1] < 0.005);
}

/* ---- setup -------------------------------------------------------------- */

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

static int run_oracle(void) {
    char path[256], cmd[1024];
    int ok = fclose(manifests[0]) == 0;
    ok &= fclose(manifests[1]) == 0;
    manifest = manifests[0] = manifests[1] = NULL;
    if (!ok) return 0;
    if (njobs == 0) return 1;
    snprintf(path, sizeof path, "%s/oracle.py", tmpdir);
    if (!write_file(path, py_script, strlen(py_script))) return 0;
    /* Fails when either process fails. */
    snprintf(cmd, sizeof cmd,
             PYTHON " %s %s/manifest1 & p=$!; " PYTHON " %s %s/manifest0; "
             "a=$?; wait $p && exit $a",
             path, tmpdir, path, tmpdir);
    return system(cmd) == 0;
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("test_augment: mkdtemp");
        return 1;
    }
    have_py = access(PYTHON, X_OK) == 0;
    have_pil = have_py &&
               system(PYTHON " -c 'import PIL.Image' >/dev/null 2>&1") == 0;
    /* find_spec does not import torch, which takes seconds. */
    have_tv = have_pil &&
              system(PYTHON " -c 'import importlib.util as u, sys; "
                            "sys.exit(not all(u.find_spec(m) for m in "
                            "(\"numpy\", \"torch\", \"torchvision\")))' "
                            ">/dev/null 2>&1") == 0;
    if (!have_py) fprintf(stderr, "skip: " NO_PY "; oracle checks skipped\n");
    else if (!have_pil)
        fprintf(stderr, "skip: " NO_PIL "; Pillow checks skipped\n");
    else if (!have_tv)
        fprintf(stderr, "skip: " NO_TV "; torchvision checks skipped\n");

    for (int k = 0; k < 2; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/manifest%d", tmpdir, k);
        manifests[k] = fopen(path, "w");
        if (!manifests[k]) {
            perror("test_augment: manifest");
            if (k) fclose(manifests[0]);
            remove_tmpdir();
            return 1;
        }
    }
    manifest = manifests[0];
    rng_python_prepare();
    rrc_prepare();
    crop_prepare();
    jitter_prepare();
    norm_prepare();
    pipe_prepare();
    local_prepare();
    double t0 = pe_now();
    py_ok = run_oracle();
    if (njobs) {
        fprintf(stderr, "oracle: %d jobs in %.1f s%s\n", njobs, pe_now() - t0,
                py_ok ? "" : ", FAILED");
        CHECK(py_ok);
    }

    RUN(test_philox_kat);
    RUN(test_rng_streams);
    RUN(test_rng_conversions);
    RUN(test_rng_uniformity);
    RUN(test_shuffle);
    RUN(test_rng_python);
    RUN(test_rrc_fallback);
    RUN(test_rrc_trace);
    RUN(test_rrc_stats);
    RUN(test_crop_resize);
    RUN(test_jitter_ops);
    RUN(test_normalize);
    RUN(test_pipeline);
    RUN(test_local_crop);
    RUN(test_local_trace);
    RUN(test_local_halves);

    for (int k = 0; k < 2; k++) pe_image_free(&crop_in[k].im);
    for (int k = 0; k < NJIT_IN; k++) pe_image_free(&jit_in[k].im);
    for (int k = 0; k < 3; k++) pe_image_free(&pipe_in[k].im);
    remove_tmpdir();
    return CHECK_DONE();
}
