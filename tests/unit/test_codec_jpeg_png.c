/*
 * test_codec_jpeg_png.c - checks formats/jpeg.c, formats/png.c and
 * formats/exif.c: pixels against Pillow's decode of the same files, the
 * limits (pixels, scans, deadline), DCT scaling with EXIF orientation,
 * truncated and garbage input, the PNG encoder, and the EXIF parser.
 *
 * Not for: pe_decode()'s sniffing or the other codecs. The JPEG and most
 * PNG inputs are written at run time by an independent encoder (Pillow, or
 * a few lines of Python with zlib for what Pillow cannot write, such as
 * Adam7 and 2/4-bit gray) into a temporary directory, beside Pillow's own
 * decode of each file as raw bytes. Where Python or PIL is missing, those
 * checks are skipped with a printed reason; the self-contained ones (EXIF
 * bytes, hand-made PNG headers, the encoder round trip, garbage) still run.
 *
 * formats/png.c decodes common PNGs itself (libdeflate + its own
 * unfiltering) and the rest through libpng; PE_PNG_LIBPNG=1 sends all to
 * libpng. test_png_fast_vs_libpng builds PNGs of every kind the fast path
 * takes (and many it must decline), damages them, and requires the same
 * return code, message, pixels and info from both paths. The other PNG
 * tests run on whichever path the environment selects.
 */
#include "check.h"
#include "codec.h"
#include "pe.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define PYTHON "/usr/bin/python3"

static char tmpdir[] = "/tmp/pe-test-codec-XXXXXX";
static int have_pil;

/* Writes every input file and, beside it, NAME.bin: Pillow's decode of NAME
 * after convert('RGB' or 'L') (after exif_transpose for the orient files,
 * after draft() for big.jpg). For 16-bit gray, Pillow's convert('L') clips
 * where the contract keeps the high byte, so that .bin is built from the
 * 16-bit values Pillow reads. */
static const char gen_script[] =
    "import os, struct, sys, warnings, zlib\n"
    "from PIL import Image, ImageOps\n"
    "warnings.simplefilter('ignore')\n"
    "D = sys.argv[1]\n"
    "def P(n):\n"
    "    return os.path.join(D, n)\n"
    "def put_bin(name, im, mode):\n"
    "    with open(P(name + '.bin'), 'wb') as f:\n"
    "        f.write(im.convert(mode).tobytes())\n"
    "def expect(name, mode, transpose=False):\n"
    "    with Image.open(P(name)) as im:\n"
    "        im.load()\n"
    "        put_bin(name, ImageOps.exif_transpose(im) if transpose else im, mode)\n"
    "def pattern(w, h):\n"
    "    im = Image.new('RGB', (w, h))\n"
    "    im.putdata([((x * 255) // (w - 1), (y * 255) // (h - 1),\n"
    "                 (x * y * 7 + (x ^ y) * 13) % 256)\n"
    "                for y in range(h) for x in range(w)])\n"
    "    return im\n"
    "def exif(o):\n"
    "    e = Image.Exif()\n"
    "    e[0x0112] = o\n"
    "    return e.tobytes()\n"
    "g = pattern(123, 77)\n"
    "g.save(P('rgb.jpg'), quality=90)\n"
    "expect('rgb.jpg', 'RGB')\n"
    "g.save(P('prog.jpg'), quality=90, progressive=True)\n"
    "expect('prog.jpg', 'RGB')\n"
    "g.convert('L').save(P('gray.jpg'), quality=90)\n"
    "expect('gray.jpg', 'L')\n"
    "g.convert('CMYK').save(P('cmyk.jpg'), quality=90)\n"
    "expect('cmyk.jpg', 'RGB')\n"
    "data = open(P('cmyk.jpg'), 'rb').read()\n"
    "i = data.find(bytes([255, 238]))\n"
    "assert i > 0 and data[i + 4:i + 9] == b'Adobe', 'no APP14'\n"
    "n = struct.unpack('>H', data[i + 2:i + 4])[0]\n"
    "open(P('cmyk_noadobe.jpg'), 'wb').write(data[:i] + data[i + 2 + n:])\n"
    "expect('cmyk_noadobe.jpg', 'RGB')\n"
    "for o in (3, 6):\n"
    "    g.save(P('orient%d.jpg' % o), quality=90, exif=exif(o))\n"
    "    expect('orient%d.jpg' % o, 'RGB', True)\n"
    "big = pattern(400, 300)\n"
    "big.save(P('big.jpg'), quality=90)\n"
    "with Image.open(P('big.jpg')) as im:\n"
    "    im.draft('RGB', (100, 75))\n"
    "    assert im.size == (100, 75), im.size\n"
    "    im.load()\n"
    "    put_bin('big.jpg', im, 'RGB')\n"
    "big.save(P('big6.jpg'), quality=90, exif=exif(6))\n"
    "g.save(P('rgb.png'))\n"
    "expect('rgb.png', 'RGB')\n"
    "a = g.copy()\n"
    "a.putalpha(g.convert('L').point(lambda v: 255 - v))\n"
    "a.save(P('rgba.png'))\n"
    "expect('rgba.png', 'RGB')\n"
    "g.quantize(colors=37).save(P('pal.png'), transparency=5)\n"
    "expect('pal.png', 'RGB')\n"
    "g.convert('1').save(P('gray1.png'))\n"
    "expect('gray1.png', 'L')\n"
    "l = g.convert('L')\n"
    "Image.merge('LA', (l, l.point(lambda v: v // 2))).save(P('ga.png'))\n"
    "expect('ga.png', 'L')\n"
    "v16 = [(x * 521 + y * 1031) % 65536 for y in range(77) for x in range(123)]\n"
    "Image.frombytes('I;16', (123, 77), struct.pack('<%dH' % len(v16), *v16)\n"
    "                ).save(P('gray16.png'))\n"
    "with Image.open(P('gray16.png')) as im:\n"
    "    im.load()\n"
    "    got = list(im.getdata())\n"
    "    assert got == v16, 'Pillow misread its own 16-bit PNG'\n"
    "    open(P('gray16.png.bin'), 'wb').write(bytes(v >> 8 for v in got))\n"
    "def chunk(t, d):\n"
    "    return (struct.pack('>I', len(d)) + t + d +\n"
    "            struct.pack('>I', zlib.crc32(t + d) & 0xffffffff))\n"
    "def pack(samples, depth):\n"
    "    if depth == 8:\n"
    "        return bytes(samples)\n"
    "    if depth == 16:\n"
    "        return struct.pack('>%dH' % len(samples), *samples)\n"
    "    out, acc, nb = bytearray(), 0, 0\n"
    "    for s in samples:\n"
    "        acc, nb = (acc << depth) | s, nb + depth\n"
    "        if nb == 8:\n"
    "            out.append(acc)\n"
    "            acc, nb = 0, 0\n"
    "    if nb:\n"
    "        out.append(acc << (8 - nb))\n"
    "    return bytes(out)\n"
    "ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),\n"
    "         (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]\n"
    "def hand_png(name, w, h, ctype, depth, px, interlace=False, extra=b''):\n"
    "    raw = bytearray()\n"
    "    for x0, y0, dx, dy in (ADAM7 if interlace else [(0, 0, 1, 1)]):\n"
    "        xs, ys = range(x0, w, dx), range(y0, h, dy)\n"
    "        if not xs or not ys:\n"
    "            continue\n"
    "        for y in ys:\n"
    "            raw.append(0)\n"
    "            raw += pack([s for x in xs for s in px(x, y)], depth)\n"
    "    ihdr = struct.pack('>IIBBBBB', w, h, depth, ctype, 0, 0, int(interlace))\n"
    "    with open(P(name), 'wb') as f:\n"
    "        f.write(bytes([137, 80, 78, 71, 13, 10, 26, 10]) + chunk(b'IHDR', ihdr)\n"
    "                + extra + chunk(b'IDAT', zlib.compress(bytes(raw)))\n"
    "                + chunk(b'IEND', b''))\n"
    "    expect(name, 'L' if ctype in (0, 4) else 'RGB')\n"
    "def rgb(x, y):\n"
    "    return ((x * 7) % 256, (y * 9) % 256, (x * y) % 256)\n"
    "hand_png('gray2.png', 37, 29, 0, 2, lambda x, y: ((x + y) % 4,))\n"
    "hand_png('gray4_i.png', 37, 29, 0, 4, lambda x, y: ((x * 3 + y) % 16,), True)\n"
    "hand_png('gray4_trns.png', 37, 29, 0, 4, lambda x, y: ((x + 2 * y) % 16,),\n"
    "         extra=chunk(b'tRNS', struct.pack('>H', 3)))\n"
    "hand_png('gray_trns.png', 37, 29, 0, 8, lambda x, y: ((x * 5 + y) % 256,),\n"
    "         extra=chunk(b'tRNS', struct.pack('>H', 7)))\n"
    "hand_png('rgb_trns.png', 37, 29, 2, 8, rgb,\n"
    "         extra=chunk(b'tRNS', struct.pack('>HHH', 7, 9, 0)))\n"
    "hand_png('pal1_i.png', 37, 29, 3, 1, lambda x, y: ((x * y + x) % 2,), True,\n"
    "         chunk(b'PLTE', bytes([10, 200, 30, 250, 5, 120])))\n"
    "hand_png('pal2_trns.png', 37, 29, 3, 2, lambda x, y: ((x + y * 3) % 4,),\n"
    "         extra=chunk(b'PLTE', bytes(range(12, 24))) +\n"
    "               chunk(b'tRNS', bytes([0, 128, 255])))\n"
    "hand_png('rgb_i.png', 37, 29, 2, 8, rgb, True)\n"
    "hand_png('rgba16_i.png', 37, 29, 6, 16, lambda x, y: (\n"
    "    (x * 1777) % 65536, (y * 2311) % 65536, (x * y * 97) % 65536,\n"
    "    (x + y) * 1000), True)\n"
    "hand_png('rgb_i_3x1.png', 3, 1, 2, 8, rgb, True)\n"
    "hand_png('rgb_i_1x1.png', 1, 1, 2, 8, rgb, True)\n";

/* ---- helpers ---------------------------------------------------------- */

static void path_in_tmp(char *dst, size_t cap, const char *name) {
    snprintf(dst, cap, "%s/%s", tmpdir, name);
}

static int read_whole(const char *path, uint8_t **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return errno;
    int rc = 0;
    uint8_t *p = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *q = realloc(p, cap);
            if (!q) {
                rc = ENOMEM;
                goto done;
            }
            p = q;
        }
        size_t got = fread(p + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) rc = EIO;
done:
    fclose(f);
    if (rc) {
        free(p);
        return rc;
    }
    *buf = p;
    *len = n;
    return 0;
}

/* Reads NAME from the temporary directory; a failure is a failed check. */
static uint8_t *load(const char *name, size_t *len) {
    char path[256];
    uint8_t *buf = NULL;
    path_in_tmp(path, sizeof path, name);
    int rc = read_whole(path, &buf, len);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "    cannot read %s: %s\n", path, strerror(rc));
    return buf;
}

/* Mean absolute difference between im and NAME.bin (Pillow's decode), or
 * -1 when the sizes differ; *max_diff gets the largest single difference. */
static double diff_to_pil(const pe_image *im, const char *name, int *max_diff) {
    char bin[128];
    size_t len = 0;
    snprintf(bin, sizeof bin, "%s.bin", name);
    uint8_t *want = load(bin, &len);
    *max_diff = 0;
    if (!want) return -1;
    double mean = -1;
    if (len == pe_image_size(im)) {
        uint64_t sum = 0;
        for (size_t i = 0; i < len; i++) {
            int d = abs((int)im->px[i] - (int)want[i]);
            sum += (uint64_t)d;
            if (d > *max_diff) *max_diff = d;
        }
        mean = len ? (double)sum / (double)len : 0;
    } else {
        fprintf(stderr, "    %s: %zu bytes decoded, Pillow has %zu\n", name,
                pe_image_size(im), len);
    }
    free(want);
    return mean;
}

static int errmsg_has(const char *needle) {
    if (strstr(pe_errmsg(), needle)) return 1;
    fprintf(stderr, "    message \"%s\" lacks \"%s\"\n", pe_errmsg(), needle);
    return 0;
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

/* Creates the temporary directory and runs gen_script in it. */
static int setup_pil(void) {
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "cannot create %s: %s\n", tmpdir, strerror(errno));
        return -1;
    }
    if (access(PYTHON, X_OK) != 0) {
        fprintf(stderr, "skip: %s not found; Pillow comparisons skipped\n",
                PYTHON);
        return 0;
    }
    if (system(PYTHON " -c 'import PIL' 2>/dev/null") != 0) {
        fprintf(stderr, "skip: PIL not importable by %s; Pillow comparisons "
                        "skipped\n", PYTHON);
        return 0;
    }
    char script[256], cmd[640];
    path_in_tmp(script, sizeof script, "gen.py");
    FILE *f = fopen(script, "w");
    if (!f || fputs(gen_script, f) == EOF) {
        if (f) fclose(f);
        fprintf(stderr, "cannot write %s\n", script);
        return -1;
    }
    if (fclose(f) != 0) return -1;
    snprintf(cmd, sizeof cmd, "%s %s %s", PYTHON, script, tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "%s failed\n", cmd);
        return -1;
    }
    have_pil = 1;
    return 0;
}

static int skip_without_pil(const char *what) {
    if (have_pil) return 0;
    fprintf(stderr, "    skip %s: no Python with PIL\n", what);
    return 1;
}

/* Deterministic bytes (xorshift) for garbage and encoder inputs. */
static uint32_t rng_state = 2463534242u;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void put32be(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG of signature, IHDR (8-bit RGB, w x h), one IDAT holding raw (the
 * filtered rows, zlib-compressed here) and IEND, with correct CRCs, into
 * buf (cap bytes); returns its length, or 0 when it does not fit. */
static size_t hand_png(uint8_t *buf, size_t cap, uint32_t w, uint32_t h,
                       const uint8_t *raw, size_t raw_len) {
    static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    uLongf zlen = compressBound(raw_len);
    if (cap < 8 + 25 + 12 + 12 || zlen > cap - (8 + 25 + 12 + 12)) return 0;
    size_t n = 0;
    memcpy(buf, sig, 8);
    n = 8;
    put32be(buf + n, 13);
    memcpy(buf + n + 4, "IHDR", 4);
    put32be(buf + n + 8, w);
    put32be(buf + n + 12, h);
    buf[n + 16] = 8; /* bit depth */
    buf[n + 17] = 2; /* RGB */
    buf[n + 18] = 0; /* deflate */
    buf[n + 19] = 0; /* adaptive filtering */
    buf[n + 20] = 0; /* not interlaced */
    put32be(buf + n + 21, (uint32_t)crc32(0, buf + n + 4, 17));
    n += 25;
    if (compress(buf + n + 8, &zlen, raw, raw_len) != Z_OK) return 0;
    put32be(buf + n, (uint32_t)zlen);
    memcpy(buf + n + 4, "IDAT", 4);
    put32be(buf + n + 8 + zlen, (uint32_t)crc32(0, buf + n + 4, 4 + zlen));
    n += 12 + zlen;
    put32be(buf + n, 0);
    memcpy(buf + n + 4, "IEND", 4);
    put32be(buf + n + 8, (uint32_t)crc32(0, buf + n + 4, 4));
    return n + 12;
}

/* Decodes buf and expects rc; on failure the output must stay empty. */
typedef int (*decode_fn)(const uint8_t *, size_t, const pe_decode_opts *,
                         pe_image *, pe_decode_info *);

static int decode_rc(decode_fn fn, const uint8_t *buf, size_t len,
                     const pe_decode_opts *opts) {
    pe_image im = {0};
    pe_decode_info info;
    int rc = fn(buf, len, opts, &im, &info);
    if (rc) CHECK(im.px == NULL && im.w == 0 && im.h == 0);
    pe_image_free(&im);
    return rc;
}

/* ---- EXIF ------------------------------------------------------------- */

/* "Exif\0\0" + TIFF header + IFD0 holding Make ("abc") and, when
 * orientation > 0, the orientation tag with the given type; big- or
 * little-endian. Returns the length. */
static size_t make_exif(uint8_t *b, int big, int orientation, int type,
                        int count) {
    size_t n = 0;
#define PUT16(v)                                                             \
    do {                                                                     \
        unsigned v_ = (unsigned)(v);                                         \
        b[n++] = (uint8_t)(big ? v_ >> 8 : v_);                              \
        b[n++] = (uint8_t)(big ? v_ : v_ >> 8);                              \
    } while (0)
#define PUT32(v)                                                             \
    do {                                                                     \
        uint32_t w_ = (uint32_t)(v);                                         \
        if (big) {                                                           \
            PUT16(w_ >> 16);                                                 \
            PUT16(w_);                                                       \
        } else {                                                             \
            PUT16(w_);                                                       \
            PUT16(w_ >> 16);                                                 \
        }                                                                    \
    } while (0)
    memcpy(b, "Exif\0\0", 6);
    n = 6;
    b[n++] = big ? 'M' : 'I';
    b[n++] = big ? 'M' : 'I';
    PUT16(42);
    PUT32(8);
    PUT16(orientation > 0 ? 2 : 1);
    PUT16(0x010F); /* Make, ASCII, 4 bytes inline */
    PUT16(2);
    PUT32(4);
    memcpy(b + n, "abc", 4);
    n += 4;
    if (orientation > 0) {
        PUT16(0x0112);
        PUT16(type);
        PUT32(count);
        PUT16(orientation); /* SHORT value, left-justified */
        PUT16(0);
    }
    PUT32(0); /* no IFD1 */
#undef PUT16
#undef PUT32
    return n;
}

/* pe_exif_orientation on an exactly-sized heap copy, so ASan sees any read
 * past the end. */
static int orientation_of(const uint8_t *b, size_t len) {
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return -1;
    memcpy(copy, b, len);
    int o = pe_exif_orientation(copy, len);
    free(copy);
    return o;
}

static void test_exif_parser(void) {
    uint8_t b[128];
    size_t n;

    n = make_exif(b, 0, 6, 3, 1);
    CHECK(orientation_of(b, n) == 6);
    n = make_exif(b, 1, 8, 3, 1);
    CHECK(orientation_of(b, n) == 8);
    n = make_exif(b, 1, 3, 3, 1);
    CHECK(orientation_of(b, n) == 3);

    n = make_exif(b, 0, 0, 3, 1); /* no orientation tag */
    CHECK(orientation_of(b, n) == 1);
    n = make_exif(b, 0, 9, 3, 1); /* out of range */
    CHECK(orientation_of(b, n) == 1);
    n = make_exif(b, 1, 0xFFFF, 3, 1);
    CHECK(orientation_of(b, n) == 1);
    n = make_exif(b, 0, 6, 4, 1); /* LONG, not SHORT */
    CHECK(orientation_of(b, n) == 1);
    n = make_exif(b, 0, 6, 3, 2); /* two values */
    CHECK(orientation_of(b, n) == 1);

    /* Every cut of a valid payload: 1 until the orientation entry is
     * whole (6 + 8 header + 2 count + 2 * 12 entries), 6 from then on,
     * since entries read before a short IFD are kept (as Pillow does). */
    n = make_exif(b, 0, 6, 3, 1);
    size_t whole = 6 + 8 + 2 + 2 * 12;
    for (size_t cut = 0; cut <= n; cut++) {
        int o = orientation_of(b, cut);
        CHECK(o == (cut >= whole ? 6 : 1));
        if (o != (cut >= whole ? 6 : 1))
            fprintf(stderr, "    cut %zu gave %d\n", cut, o);
    }

    uint8_t bad[128];
    n = make_exif(b, 0, 6, 3, 1);
    memcpy(bad, b, n);
    bad[6] = 'X'; /* byte order */
    CHECK(orientation_of(bad, n) == 1);
    memcpy(bad, b, n);
    bad[8] = 43; /* magic */
    CHECK(orientation_of(bad, n) == 1);
    memcpy(bad, b, n);
    bad[0] = 'e'; /* "exif" */
    CHECK(orientation_of(bad, n) == 1);
    memcpy(bad, b, n);
    memset(bad + 10, 0xFF, 4); /* IFD0 offset 0xFFFFFFFF */
    CHECK(orientation_of(bad, n) == 1);
    memcpy(bad, b, n);
    bad[10] = 0xF0; bad[11] = 0xFF; bad[12] = 0xFF; bad[13] = 0xFF;
    CHECK(orientation_of(bad, n) == 1); /* offset near 2^32 */
    memcpy(bad, b, n);
    bad[10] = 4; /* IFD0 inside the TIFF header */
    CHECK(orientation_of(bad, n) == 1);
    memcpy(bad, b, n);
    bad[14] = 0xFF; bad[15] = 0xFF; /* 65535 entries claimed */
    CHECK(orientation_of(bad, n) == 6);
    memcpy(bad, b, n);
    bad[14] = 1; /* only Make counted: orientation not in the IFD */
    CHECK(orientation_of(bad, n) == 1);
    CHECK(pe_exif_orientation(NULL, 0) == 1);

    /* Random payloads behind a valid header: never out of range. */
    for (int t = 0; t < 2000; t++) {
        size_t len = 6 + rng() % 80;
        memcpy(bad, b, 14);
        for (size_t i = 14; i < len; i++) bad[i] = (uint8_t)rng();
        if (t & 1) { /* a plausible entry count */
            bad[14] = (uint8_t)(rng() % 4);
            bad[15] = 0;
        }
        int o = orientation_of(bad, len);
        CHECK(o >= 1 && o <= 8);
    }
}

/* ---- JPEG ------------------------------------------------------------- */

typedef struct golden {
    const char *name;
    uint32_t w, h, c;  /* decoded, after orientation */
    uint32_t orig_c;
    uint32_t bits;
    int progressive;
    int orientation;
} golden;

/*
 * Tolerance for JPEG pixels: a mean absolute difference of at most 1.0 per
 * sample. Both sides run libjpeg-turbo with its default (islow IDCT, fancy
 * upsampling), so on one machine they normally agree exactly; the margin
 * covers a Pillow built against another libjpeg(-turbo) whose IDCT or
 * upsampler rounds differently by one here and there. A real decoding bug
 * (wrong channel order, missed CMYK inversion, wrong orientation) moves the
 * mean by tens.
 */
#define JPEG_MEAN_TOL 1.0

static void check_golden(decode_fn fn, const golden *g, double tol,
                         pe_format format) {
    size_t len = 0;
    uint8_t *buf = load(g->name, &len);
    if (!buf) return;
    pe_image im = {0};
    pe_decode_info info;
    memset(&info, 0xAB, sizeof info);
    int rc = fn(buf, len, NULL, &im, &info);
    CHECK_OK(rc);
    if (rc == 0) {
        CHECK(im.w == g->w && im.h == g->h && im.c == g->c);
        CHECK(info.format == format);
        int swapped = g->orientation >= 5;
        CHECK(info.orig_w == (swapped ? g->h : g->w));
        CHECK(info.orig_h == (swapped ? g->w : g->h));
        CHECK(info.orig_c == g->orig_c);
        CHECK(info.bits == g->bits);
        CHECK(info.progressive == g->progressive);
        CHECK(info.orientation == g->orientation);
        CHECK(info.scale_num == info.scale_den);
        int max_diff;
        double mean = diff_to_pil(&im, g->name, &max_diff);
        CHECK(mean >= 0 && mean <= tol);
        if (mean < 0 || mean > tol || max_diff)
            fprintf(stderr, "    %s: mean |diff| %.4f, max %d\n", g->name,
                    mean, max_diff);
        if (mean < 0 || mean > tol || im.w != g->w)
            fprintf(stderr, "    %s: got %ux%ux%u, info %ux%ux%u bits %u\n",
                    g->name, im.w, im.h, im.c, info.orig_w, info.orig_h,
                    info.orig_c, info.bits);
    }
    pe_image_free(&im);
    free(buf);
}

static void test_jpeg_vs_pillow(void) {
    if (skip_without_pil("JPEG pixels")) return;
    static const golden cases[] = {
        {"rgb.jpg", 123, 77, 3, 3, 8, 0, 1},
        {"prog.jpg", 123, 77, 3, 3, 8, 1, 1},
        {"gray.jpg", 123, 77, 1, 1, 8, 0, 1},
        {"cmyk.jpg", 123, 77, 3, 4, 8, 0, 1},
        {"cmyk_noadobe.jpg", 123, 77, 3, 4, 8, 0, 1},
        {"orient3.jpg", 123, 77, 3, 3, 8, 0, 3},
        {"orient6.jpg", 77, 123, 3, 3, 8, 0, 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_golden(pe_decode_jpeg, &cases[i], JPEG_MEAN_TOL, PE_FORMAT_JPEG);
}

static void test_jpeg_no_orient(void) {
    if (skip_without_pil("no_orient")) return;
    size_t len = 0;
    uint8_t *buf = load("orient6.jpg", &len);
    if (!buf) return;
    pe_decode_opts opts = {.no_orient = 1};
    pe_image im = {0};
    pe_decode_info info;
    CHECK_OK(pe_decode_jpeg(buf, len, &opts, &im, &info));
    CHECK(im.w == 123 && im.h == 77);
    CHECK(info.orientation == 1);
    /* Same pixels and quality as rgb.jpg: only the EXIF segment differs. */
    if (im.px) {
        int max_diff;
        double mean = diff_to_pil(&im, "rgb.jpg", &max_diff);
        CHECK(mean >= 0 && mean <= JPEG_MEAN_TOL);
    }
    pe_image_free(&im);
    free(buf);
}

static void check_scaled(const char *name, uint32_t min_w, uint32_t min_h,
                         int no_orient, uint32_t want_w, uint32_t want_h,
                         int want_num) {
    size_t len = 0;
    uint8_t *buf = load(name, &len);
    if (!buf) return;
    pe_decode_opts opts = {.min_w = min_w, .min_h = min_h,
                           .no_orient = no_orient};
    pe_image im = {0};
    pe_decode_info info;
    int rc = pe_decode_jpeg(buf, len, &opts, &im, &info);
    CHECK_OK(rc);
    if (rc == 0) {
        CHECK(im.w == want_w && im.h == want_h);
        CHECK(info.scale_num == want_num && info.scale_den == 8);
        CHECK(info.orig_w == 400 && info.orig_h == 300);
        if (im.w != want_w || im.h != want_h || info.scale_num != want_num)
            fprintf(stderr, "    %s min %ux%u: got %ux%u at %d/%d\n", name,
                    min_w, min_h, im.w, im.h, info.scale_num, info.scale_den);
    }
    pe_image_free(&im);
    free(buf);
}

static void test_jpeg_dct_scaling(void) {
    if (skip_without_pil("DCT scaling")) return;
    /* Smallest M with ceil(400M/8) >= 64 and ceil(300M/8) >= 64: M = 2. */
    check_scaled("big.jpg", 64, 64, 0, 100, 75, 2);
    check_scaled("big.jpg", 0, 0, 0, 400, 300, 8);
    check_scaled("big.jpg", 100, 0, 0, 100, 75, 2);
    check_scaled("big.jpg", 101, 0, 0, 200, 150, 4); /* power-of-two scales only */
    check_scaled("big.jpg", 1, 1, 0, 50, 38, 1);
    check_scaled("big.jpg", 401, 301, 0, 400, 300, 8);
    /* Orientation 6 shows the 400x300 file as 300x400, so a 160x90 bound
     * on the result is a 90x160 bound on the file: M = 8 (shown 300x400),
     * since M = 4 shows 150x200, narrower than 160. Ignoring the
     * transposition would pick M = 4 (200x150). */
    check_scaled("big6.jpg", 160, 90, 0, 300, 400, 8);
    check_scaled("big6.jpg", 160, 90, 1, 200, 150, 4);

    /* Pixels at 1/4 against Pillow's draft('RGB', (100, 75)), which
     * picks the same libjpeg scale. */
    size_t len = 0;
    uint8_t *buf = load("big.jpg", &len);
    if (!buf) return;
    pe_decode_opts opts = {.min_w = 64, .min_h = 64};
    pe_image im = {0};
    CHECK_OK(pe_decode_jpeg(buf, len, &opts, &im, NULL));
    if (im.px) {
        int max_diff;
        double mean = diff_to_pil(&im, "big.jpg", &max_diff);
        CHECK(mean >= 0 && mean <= JPEG_MEAN_TOL);
        if (mean < 0 || mean > JPEG_MEAN_TOL || max_diff)
            fprintf(stderr, "    big.jpg at 1/4: mean |diff| %.4f, max %d\n",
                    mean, max_diff);
    }
    pe_image_free(&im);
    free(buf);
}

/* Rewrites the frame size in the SOF0/SOF2 segment of a JPEG in place. */
static int patch_sof(uint8_t *buf, size_t len, uint16_t w, uint16_t h) {
    for (size_t i = 2; i + 9 < len; i++) {
        if (buf[i] == 0xFF && (buf[i + 1] == 0xC0 || buf[i + 1] == 0xC2)) {
            buf[i + 5] = (uint8_t)(h >> 8);
            buf[i + 6] = (uint8_t)h;
            buf[i + 7] = (uint8_t)(w >> 8);
            buf[i + 8] = (uint8_t)w;
            return 1;
        }
    }
    return 0;
}

static void test_jpeg_limits(void) {
    if (skip_without_pil("JPEG limits")) return;
    size_t len = 0, plen = 0;
    uint8_t *buf = load("rgb.jpg", &len);
    uint8_t *prog = load("prog.jpg", &plen);
    if (!buf || !prog) goto cleanup;

    pe_decode_opts opts = {.max_pixels = 123 * 77 - 1};
    CHECK_RC(decode_rc(pe_decode_jpeg, buf, len, &opts), PE_ETOOBIG);
    CHECK(errmsg_has("exceeds the pixel limit"));
    opts.max_pixels = 123 * 77;
    CHECK_RC(decode_rc(pe_decode_jpeg, buf, len, &opts), 0);

    /* A header claiming 60000x60000 is refused before any allocation for
     * it; the default limit applies when opts is NULL. */
    uint8_t *huge = malloc(len);
    if (huge) {
        memcpy(huge, buf, len);
        CHECK(patch_sof(huge, len, 60000, 60000));
        CHECK_RC(decode_rc(pe_decode_jpeg, huge, len, NULL), PE_ETOOBIG);
        CHECK(errmsg_has("image 60000x60000 exceeds the pixel limit"));
        free(huge);
    }

    /* Pillow's progressive encoding of a colour image has 10 scans. */
    opts = (pe_decode_opts){.max_scans = 2};
    CHECK_RC(decode_rc(pe_decode_jpeg, prog, plen, &opts), PE_ETOOBIG);
    CHECK(errmsg_has("too many scans (3 > 2)"));
    opts.max_scans = 10;
    CHECK_RC(decode_rc(pe_decode_jpeg, prog, plen, &opts), 0);
    opts.max_scans = 0; /* default 500 */
    CHECK_RC(decode_rc(pe_decode_jpeg, prog, plen, &opts), 0);

    /* A scan bomb: the last scan of prog.jpg repeated 600 times. In
     * entropy-coded data 0xFF is followed by 0x00 or RSTn, so the last
     * FF DA is the last SOS marker. */
    size_t sos = 0;
    for (size_t i = plen - 2; i > 2; i--)
        if (prog[i] == 0xFF && prog[i + 1] == 0xDA) {
            sos = i;
            break;
        }
    CHECK(sos > 0 && prog[plen - 2] == 0xFF && prog[plen - 1] == 0xD9);
    size_t scan_len = plen - 2 - sos, copies = 600;
    size_t bomb_len = plen + copies * scan_len;
    uint8_t *bomb = sos ? malloc(bomb_len) : NULL;
    if (bomb) {
        memcpy(bomb, prog, plen - 2);
        for (size_t k = 0; k < copies; k++)
            memcpy(bomb + plen - 2 + k * scan_len, prog + sos, scan_len);
        memcpy(bomb + bomb_len - 2, prog + plen - 2, 2);
        CHECK_RC(decode_rc(pe_decode_jpeg, bomb, bomb_len, NULL), PE_ETOOBIG);
        CHECK(errmsg_has("too many scans (501 > 500)"));
        opts = (pe_decode_opts){.max_scans = 1000};
        CHECK_RC(decode_rc(pe_decode_jpeg, bomb, bomb_len, &opts), 0);
        free(bomb);
    }

    opts = (pe_decode_opts){.deadline = pe_now() - 1.0};
    CHECK_RC(decode_rc(pe_decode_jpeg, buf, len, &opts), PE_ETIMEOUT);
    CHECK(errmsg_has("deadline"));
    CHECK_RC(decode_rc(pe_decode_jpeg, prog, plen, &opts), PE_ETIMEOUT);
    opts.deadline = pe_now() + 3600.0;
    CHECK_RC(decode_rc(pe_decode_jpeg, buf, len, &opts), 0);

cleanup:
    free(buf);
    free(prog);
}

/* Every cut and a sample of byte flips: no crash, no leak, and either a
 * clean decode or PE_EFORMAT (flips may also hit a size or colour-space
 * field). The pixel limit keeps a flipped size field from making a test
 * allocate hundreds of megabytes. */
static void fuzz_cuts_and_flips(decode_fn fn, const uint8_t *file, size_t len,
                                size_t step) {
    uint8_t *buf = malloc(len);
    if (!buf) return;
    pe_decode_opts opts = {.max_pixels = 1u << 20};
    int bad = 0;
    for (size_t cut = 0; cut < len; cut += step) {
        memcpy(buf, file, cut);
        int rc = decode_rc(fn, buf, cut, &opts);
        if (rc != PE_EFORMAT && rc != 0) bad++;
    }
    for (int t = 0; t < 300; t++) {
        memcpy(buf, file, len);
        for (int k = 0; k < 4; k++)
            buf[rng() % len] ^= (uint8_t)(1 + rng() % 255);
        int rc = decode_rc(fn, buf, len, &opts);
        if (rc != PE_EFORMAT && rc != PE_EUNSUPPORTED && rc != PE_ETOOBIG &&
            rc != 0)
            bad++;
    }
    CHECK(bad == 0);
    free(buf);
}

static void test_jpeg_corrupt(void) {
    uint8_t junk[1000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)rng();
    junk[0] = 0x12;
    CHECK_RC(decode_rc(pe_decode_jpeg, junk, sizeof junk, NULL), PE_EFORMAT);
    CHECK(errmsg_has("not a JPEG"));
    junk[0] = 0xFF;
    junk[1] = 0xD8;
    junk[2] = 0xFF;
    junk[3] = 0xE0; /* APP0 with a random length, then noise */
    CHECK_RC(decode_rc(pe_decode_jpeg, junk, sizeof junk, NULL), PE_EFORMAT);
    CHECK_RC(decode_rc(pe_decode_jpeg, junk, 2, NULL), PE_EFORMAT);
    CHECK_RC(decode_rc(pe_decode_jpeg, junk, 0, NULL), PE_EFORMAT);
    CHECK_RC(decode_rc(pe_decode_jpeg, NULL, 0, NULL), PE_EFORMAT);

    if (skip_without_pil("truncated JPEG")) return;
    const char *names[] = {"rgb.jpg", "prog.jpg", "gray.jpg", "cmyk.jpg"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t len = 0;
        uint8_t *buf = load(names[i], &len);
        if (!buf) continue;
        CHECK_RC(decode_rc(pe_decode_jpeg, buf, len / 2, NULL), PE_EFORMAT);
        CHECK(errmsg_has("truncated"));
        /* Missing only EOI: still truncated, as Pillow says. */
        CHECK_RC(decode_rc(pe_decode_jpeg, buf, len - 2, NULL), PE_EFORMAT);
        CHECK(errmsg_has("truncated"));
        /* Bytes after EOI are ignored, as Pillow ignores them. */
        uint8_t *padded = malloc(len + 100);
        if (padded) {
            memcpy(padded, buf, len);
            memset(padded + len, 0x5A, 100);
            CHECK_RC(decode_rc(pe_decode_jpeg, padded, len + 100, NULL), 0);
            free(padded);
        }
        fuzz_cuts_and_flips(pe_decode_jpeg, buf, len, 13);
        free(buf);
    }
}

/* ---- PNG -------------------------------------------------------------- */

static void test_png_vs_pillow(void) {
    if (skip_without_pil("PNG pixels")) return;
    static const golden cases[] = {
        {"rgb.png", 123, 77, 3, 3, 8, 0, 1},
        {"rgba.png", 123, 77, 3, 4, 8, 0, 1},
        {"pal.png", 123, 77, 3, 4, 8, 0, 1}, /* PLTE + tRNS */
        {"gray1.png", 123, 77, 1, 1, 1, 0, 1},
        {"ga.png", 123, 77, 1, 2, 8, 0, 1},
        {"gray16.png", 123, 77, 1, 1, 16, 0, 1},
        {"gray2.png", 37, 29, 1, 1, 2, 0, 1},
        {"gray4_i.png", 37, 29, 1, 1, 4, 0, 1},
        {"gray4_trns.png", 37, 29, 1, 1, 4, 0, 1},
        {"gray_trns.png", 37, 29, 1, 1, 8, 0, 1},
        {"rgb_trns.png", 37, 29, 3, 3, 8, 0, 1},
        {"pal1_i.png", 37, 29, 3, 3, 1, 0, 1},
        {"pal2_trns.png", 37, 29, 3, 4, 2, 0, 1},
        {"rgb_i.png", 37, 29, 3, 3, 8, 0, 1},
        {"rgba16_i.png", 37, 29, 3, 4, 16, 0, 1},
        {"rgb_i_3x1.png", 3, 1, 3, 3, 8, 0, 1},
        {"rgb_i_1x1.png", 1, 1, 3, 3, 8, 0, 1},
    };
    /* PNG is lossless and the transforms are fixed, so no tolerance. */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_golden(pe_decode_png, &cases[i], 0.0, PE_FORMAT_PNG);
}

/* A gray or RGB image with a smooth part and a noisy part. */
static int make_image(pe_image *im, uint32_t w, uint32_t h, uint32_t c) {
    int rc = pe_image_alloc(im, w, h, c);
    if (rc) return rc;
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (uint32_t k = 0; k < c; k++)
                im->px[((size_t)y * w + x) * c + k] =
                    (uint8_t)(x < w / 2 ? x * 3 + y * 5 + k * 40 : rng());
    return 0;
}

static void test_png_encode_roundtrip(void) {
    static const uint32_t shapes[][3] = {
        {1, 1, 1}, {1, 1, 3}, {17, 5, 1}, {33, 20, 3}, {300, 2, 3}, {2, 300, 1},
    };
    char manifest[256] = "";
    FILE *mf = NULL;
    if (have_pil) {
        path_in_tmp(manifest, sizeof manifest, "encoded.txt");
        mf = fopen(manifest, "w");
        CHECK(mf != NULL);
    }
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        pe_image src = {0}, back = {0};
        uint8_t *png = NULL;
        size_t len = 0;
        pe_decode_info info;
        CHECK_OK(make_image(&src, shapes[i][0], shapes[i][1], shapes[i][2]));
        if (!src.px) continue;
        CHECK_OK(pe_encode_png(&src, &png, &len));
        if (png) {
            CHECK_OK(pe_decode_png(png, len, NULL, &back, &info));
            CHECK(back.w == src.w && back.h == src.h && back.c == src.c);
            CHECK(back.px && !memcmp(back.px, src.px, pe_image_size(&src)));
            CHECK(info.bits == 8 && info.orig_c == src.c);
            /* Keep the file and the pixels for Pillow to check. */
            if (mf) {
                char path[256], name[64];
                snprintf(name, sizeof name, "enc%zu.png", i);
                path_in_tmp(path, sizeof path, name);
                FILE *f = fopen(path, "wb");
                CHECK(f && fwrite(png, 1, len, f) == len);
                if (f) fclose(f);
                snprintf(name, sizeof name, "enc%zu.raw", i);
                path_in_tmp(path, sizeof path, name);
                f = fopen(path, "wb");
                CHECK(f && fwrite(src.px, 1, pe_image_size(&src), f) ==
                               pe_image_size(&src));
                if (f) fclose(f);
                fprintf(mf, "enc%zu %u %u %u\n", i, src.w, src.h, src.c);
            }
        }
        free(png);
        pe_image_free(&src);
        pe_image_free(&back);
    }

    /* An empty image has no PNG form. */
    pe_image empty = {0};
    empty.c = 3;
    uint8_t *png = NULL;
    size_t len = 0;
    CHECK_RC(pe_encode_png(&empty, &png, &len), PE_EFORMAT);
    CHECK(png == NULL);

    if (!mf) {
        skip_without_pil("Pillow reading the encoder's output");
        return;
    }
    fclose(mf);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && " PYTHON " -c '"
             "from PIL import Image\n"
             "for line in open(\"encoded.txt\"):\n"
             "    n, w, h, c = line.split()\n"
             "    im = Image.open(n + \".png\")\n"
             "    mode = \"L\" if c == \"1\" else \"RGB\"\n"
             "    assert im.mode == mode and im.size == (int(w), int(h)), n\n"
             "    assert im.tobytes() == open(n + \".raw\", \"rb\").read(), n\n"
             "'",
             tmpdir);
    CHECK(system(cmd) == 0);
}

static void test_png_limits(void) {
    uint8_t buf[256];
    static const uint8_t one_row[] = {0, 10, 20, 30}; /* filter 0, RGB */

    /* The builder is sound: its 1x1 file decodes to the pixel it holds. */
    size_t n = hand_png(buf, sizeof buf, 1, 1, one_row, sizeof one_row);
    CHECK(n > 0);
    pe_image one = {0};
    CHECK_OK(pe_decode_png(buf, n, NULL, &one, NULL));
    CHECK(one.px && one.w == 1 && one.h == 1 && one.c == 3 &&
          !memcmp(one.px, one_row + 1, 3));
    pe_image_free(&one);

    /* The same file claiming 100000x100000: refused after IHDR, before
     * the pixels would be allocated (30 GB) or the short IDAT noticed. */
    n = hand_png(buf, sizeof buf, 100000, 100000, one_row, sizeof one_row);
    CHECK_RC(decode_rc(pe_decode_png, buf, n, NULL), PE_ETOOBIG);
    CHECK(errmsg_has("image 100000x100000 exceeds the pixel limit"));
    /* Beyond libpng's user limit (1 << 24 per side): rejected in IHDR. */
    n = hand_png(buf, sizeof buf, 1u << 25, 1, one_row, sizeof one_row);
    pe_decode_opts opts = {.max_pixels = UINT64_MAX};
    CHECK_RC(decode_rc(pe_decode_png, buf, n, &opts), PE_EFORMAT);
    /* Within limits but short of image data. */
    n = hand_png(buf, sizeof buf, 2, 2, one_row, sizeof one_row);
    CHECK_RC(decode_rc(pe_decode_png, buf, n, NULL), PE_EFORMAT);

    pe_image im = {0};
    uint8_t *png = NULL;
    size_t len = 0;
    CHECK_OK(make_image(&im, 64, 48, 3));
    CHECK_OK(pe_encode_png(&im, &png, &len));
    if (png) {
        opts = (pe_decode_opts){.max_pixels = 64 * 48 - 1};
        CHECK_RC(decode_rc(pe_decode_png, png, len, &opts), PE_ETOOBIG);
        opts.max_pixels = 64 * 48;
        CHECK_RC(decode_rc(pe_decode_png, png, len, &opts), 0);
        opts = (pe_decode_opts){.deadline = pe_now() - 1.0};
        CHECK_RC(decode_rc(pe_decode_png, png, len, &opts), PE_ETIMEOUT);
        CHECK(errmsg_has("deadline"));
        opts.deadline = pe_now() + 3600.0;
        CHECK_RC(decode_rc(pe_decode_png, png, len, &opts), 0);
    }
    free(png);
    pe_image_free(&im);
}

static void test_png_corrupt(void) {
    uint8_t junk[1000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)rng();
    junk[0] = 0x12;
    CHECK_RC(decode_rc(pe_decode_png, junk, sizeof junk, NULL), PE_EFORMAT);
    CHECK(errmsg_has("not a PNG"));
    static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    memcpy(junk, sig, 8);
    CHECK_RC(decode_rc(pe_decode_png, junk, sizeof junk, NULL), PE_EFORMAT);
    CHECK_RC(decode_rc(pe_decode_png, junk, 8, NULL), PE_EFORMAT);
    CHECK(errmsg_has("truncated"));
    CHECK_RC(decode_rc(pe_decode_png, junk, 0, NULL), PE_EFORMAT);
    CHECK_RC(decode_rc(pe_decode_png, NULL, 0, NULL), PE_EFORMAT);

    /* A flipped bit in IHDR fails its CRC. */
    uint8_t hdr[128];
    static const uint8_t one_row[] = {0, 10, 20, 30};
    size_t n = hand_png(hdr, sizeof hdr, 1, 1, one_row, sizeof one_row);
    CHECK_RC(decode_rc(pe_decode_png, hdr, n, NULL), 0);
    hdr[17] ^= 1;
    CHECK_RC(decode_rc(pe_decode_png, hdr, n, NULL), PE_EFORMAT);

    /* Our own encoder's output, cut and flipped. */
    pe_image im = {0};
    uint8_t *png = NULL;
    size_t len = 0;
    CHECK_OK(make_image(&im, 40, 30, 3));
    CHECK_OK(pe_encode_png(&im, &png, &len));
    if (png) {
        CHECK_RC(decode_rc(pe_decode_png, png, len / 2, NULL), PE_EFORMAT);
        CHECK(errmsg_has("truncated"));
        /* Missing only IEND (12 bytes): every pixel is there. */
        CHECK_RC(decode_rc(pe_decode_png, png, len - 12, NULL), 0);
        fuzz_cuts_and_flips(pe_decode_png, png, len, 7);
    }
    free(png);
    pe_image_free(&im);

    if (skip_without_pil("truncated PNG")) return;
    const char *names[] = {"rgb.png", "pal.png", "gray16.png", "rgb_i.png",
                           "rgba16_i.png", "gray4_i.png"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t flen = 0;
        uint8_t *buf = load(names[i], &flen);
        if (!buf) continue;
        CHECK_RC(decode_rc(pe_decode_png, buf, flen / 2, NULL), PE_EFORMAT);
        fuzz_cuts_and_flips(pe_decode_png, buf, flen, 11);
        free(buf);
    }
}

/* ---- PNG: the libdeflate path against libpng ---------------------------- */

static void put_chunk(uint8_t *buf, size_t *n, const char *type,
                      const uint8_t *data, size_t len) {
    put32be(buf + *n, (uint32_t)len);
    memcpy(buf + *n + 4, type, 4);
    if (len) memcpy(buf + *n + 8, data, len);
    put32be(buf + *n + 8 + len, (uint32_t)crc32(0, buf + *n + 4, 4 + (uInt)len));
    *n += 12 + len;
}

/* What build_png writes: an 8-bit (or depth-bit) non-interlaced PNG of
 * random-ish pixels, each row with a filter drawn from filters (or a bad
 * one at row bad_row), compressed with the given zlib window and level,
 * split over n_idat IDAT chunks, with pre (whole chunks) before them and
 * raw_delta bytes of image data added (> 0, random) or dropped (< 0). */
typedef struct png_spec {
    uint32_t w, h;
    int color, depth;
    int filters;    /* bit f set: filter f may be used */
    int bad_row;    /* -1: none; else this row gets filter 5 */
    int window_bits, level, n_idat;
    long raw_delta;
    int cinfo; /* >= 0: the zlib header claims this window (8 + cinfo bits) */
    const uint8_t *pre;
    size_t pre_len;
} png_spec;

static int png_paeth(int a, int b, int c) {
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Returns a malloc'd file and its length in *len, or NULL. */
static uint8_t *build_png(const png_spec *sp, size_t *len) {
    static const int chans[7] = {1, 0, 3, 1, 2, 0, 4};
    const size_t bits = (size_t)sp->w * (size_t)chans[sp->color] * (size_t)sp->depth;
    const size_t rb = (bits + 7) / 8;
    const size_t bpp = (size_t)(chans[sp->color] * sp->depth + 7) / 8;
    const size_t raw_len = sp->h * (rb + 1);
    const size_t total = sp->raw_delta < 0 && (size_t)-sp->raw_delta > raw_len
                             ? 0
                             : raw_len + (size_t)sp->raw_delta;
    const size_t raw_cap = total > raw_len ? total : raw_len;
    uint8_t *px = malloc(sp->h * rb + 1), *raw = malloc(raw_cap + 1), *z = NULL;
    uint8_t *out = NULL;
    if (!px || !raw) goto done;
    for (size_t y = 0; y < sp->h; y++)
        for (size_t i = 0; i < rb; i++)
            px[y * rb + i] = (uint8_t)(i < rb / 2 ? (i * 3 + y * 7) % 251
                                                  : rng() % 256);
    for (size_t y = 0; y < sp->h; y++) {
        int f;
        do f = (int)(rng() % 5);
        while (!(sp->filters & (1 << f)));
        if ((long)y == sp->bad_row) f = 5;
        uint8_t *dst = raw + y * (rb + 1);
        const uint8_t *cur = px + y * rb, *up = y ? cur - rb : NULL;
        dst[0] = (uint8_t)f;
        for (size_t i = 0; i < rb; i++) {
            int a = i >= bpp ? cur[i - bpp] : 0, b = up ? up[i] : 0;
            int c = up && i >= bpp ? up[i - bpp] : 0, pred = 0;
            if (f == 1) pred = a;
            if (f == 2) pred = b;
            if (f == 3) pred = (a + b) >> 1;
            if (f == 4) pred = png_paeth(a, b, c);
            dst[1 + i] = (uint8_t)(cur[i] - pred);
        }
    }
    for (size_t i = raw_len; i < total; i++) raw[i] = (uint8_t)rng();

    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, sp->level, Z_DEFLATED, sp->window_bits, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        goto done;
    size_t zcap = deflateBound(&zs, total) + 64;
    z = malloc(zcap);
    if (!z) {
        deflateEnd(&zs);
        goto done;
    }
    zs.next_in = raw;
    zs.avail_in = (uInt)total;
    zs.next_out = z;
    zs.avail_out = (uInt)zcap;
    int zrc = deflate(&zs, Z_FINISH);
    size_t zlen = zcap - zs.avail_out;
    deflateEnd(&zs);
    if (zrc != Z_STREAM_END) goto done;
    if (sp->cinfo >= 0) {
        z[0] = (uint8_t)(sp->cinfo << 4 | 8);
        z[1] = (uint8_t)(z[1] & 0xE0);
        z[1] = (uint8_t)(z[1] + (31 - (z[0] * 256 + z[1]) % 31) % 31);
    }

    out = malloc(8 + 25 + sp->pre_len + zlen + 12 * (size_t)sp->n_idat + 12);
    if (!out) goto done;
    static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    uint8_t ihdr[13];
    size_t n = 8;
    memcpy(out, sig, 8);
    put32be(ihdr, sp->w);
    put32be(ihdr + 4, sp->h);
    ihdr[8] = (uint8_t)sp->depth;
    ihdr[9] = (uint8_t)sp->color;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    put_chunk(out, &n, "IHDR", ihdr, 13);
    if (sp->pre_len) memcpy(out + n, sp->pre, sp->pre_len);
    n += sp->pre_len;
    for (int k = 0; k < sp->n_idat; k++) {
        size_t from = zlen * (size_t)k / (size_t)sp->n_idat;
        size_t to = zlen * (size_t)(k + 1) / (size_t)sp->n_idat;
        put_chunk(out, &n, "IDAT", z + from, to - from);
    }
    put_chunk(out, &n, "IEND", NULL, 0);
    *len = n;
done:
    free(z);
    free(raw);
    free(px);
    return out;
}

/* Decodes with PE_PNG_LIBPNG set to libpng_only, restoring the caller's. */
static int decode_path(const uint8_t *buf, size_t len,
                       const pe_decode_opts *opts, pe_image *im,
                       pe_decode_info *info, int libpng_only) {
    const char *old = getenv("PE_PNG_LIBPNG");
    char *saved = old ? strdup(old) : NULL;
    if (libpng_only)
        setenv("PE_PNG_LIBPNG", "1", 1);
    else
        unsetenv("PE_PNG_LIBPNG");
    int rc = pe_decode_png(buf, len, opts, im, info);
    if (saved)
        setenv("PE_PNG_LIBPNG", saved, 1);
    else
        unsetenv("PE_PNG_LIBPNG");
    free(saved);
    return rc;
}

/* Both paths on one file: same rc, message, pixels and info. Returns
 * 1 when they agree; prints what differs otherwise. */
static int same_both_ways(const uint8_t *buf, size_t len, const char *what) {
    pe_image a = {0}, b = {0};
    pe_decode_info ia, ib;
    char ma[300] = "", mb[300] = "";
    memset(&ia, 0, sizeof ia);
    memset(&ib, 0, sizeof ib);
    pe_decode_opts opts = {.max_pixels = 1u << 22};
    int ra = decode_path(buf, len, &opts, &a, &ia, 1);
    if (ra) snprintf(ma, sizeof ma, "%s", pe_errmsg());
    int rb = decode_path(buf, len, &opts, &b, &ib, 0);
    if (rb) snprintf(mb, sizeof mb, "%s", pe_errmsg());
    int same = ra == rb && strcmp(ma, mb) == 0;
    if (same && ra == 0)
        same = a.w == b.w && a.h == b.h && a.c == b.c &&
               memcmp(a.px, b.px, pe_image_size(&a)) == 0 &&
               ia.format == ib.format && ia.orig_w == ib.orig_w &&
               ia.orig_h == ib.orig_h && ia.orig_c == ib.orig_c &&
               ia.bits == ib.bits && ia.orientation == ib.orientation &&
               ia.scale_num == ib.scale_num && ia.scale_den == ib.scale_den &&
               ia.progressive == ib.progressive;
    if (!same)
        fprintf(stderr, "    %s: libpng %d \"%s\" %ux%ux%u, fast path %d \"%s\" "
                        "%ux%ux%u\n",
                what, ra, ma, a.w, a.h, a.c, rb, mb, b.w, b.h, b.c);
    pe_image_free(&a);
    pe_image_free(&b);
    return same;
}

/* Recomputes the CRC of every whole chunk, so that damage reaches the
 * chunk parsers and the inflater instead of stopping at a CRC. */
static void fix_crcs(uint8_t *buf, size_t len) {
    size_t pos = 8;
    while (pos + 12 <= len) {
        uint32_t n = (uint32_t)buf[pos] << 24 | (uint32_t)buf[pos + 1] << 16 |
                     (uint32_t)buf[pos + 2] << 8 | buf[pos + 3];
        if (n > len - pos - 12) break;
        put32be(buf + pos + 8 + n, (uint32_t)crc32(0, buf + pos + 4, 4 + n));
        pos += 12 + n;
    }
}

static int damaged_both_ways(const uint8_t *file, size_t len, int tries) {
    uint8_t *buf = malloc(len);
    int bad = 0;
    if (!buf) return 0;
    for (size_t cut = 8; cut < len; cut += 1 + len / 40)
        bad += !same_both_ways(file, cut, "cut");
    for (int t = 0; t < tries; t++) {
        memcpy(buf, file, len);
        for (int k = 0; k < 1 + t % 3; k++)
            buf[8 + rng() % (len - 8)] ^= (uint8_t)(1 + rng() % 255);
        if (t % 2) fix_crcs(buf, len);
        bad += !same_both_ways(buf, len, t % 2 ? "flip, CRCs fixed" : "flip");
    }
    free(buf);
    return bad == 0;
}

static void test_png_fast_vs_libpng(void) {
    static const int colors[] = {0, 2, 3, 4, 6};
    static const uint32_t sizes[][2] = {{1, 1}, {2, 3}, {7, 5}, {33, 17},
                                        {64, 48}, {300, 2}, {5, 120}};
    uint8_t plte[3 * 200];
    for (size_t i = 0; i < sizeof plte; i++) plte[i] = (uint8_t)(i * 37 + 11);
    uint8_t pre[4096];
    int bad = 0;
    char what[160];

    /* Every colour type, size and filter, 1-3 IDATs, several levels; the
     * palette covers 200 entries, so higher indices read as black. */
    for (size_t ci = 0; ci < sizeof colors / sizeof colors[0]; ci++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            for (int f = 0; f < 6; f++) {
                size_t pre_len = 0;
                if (colors[ci] == 3)
                    put_chunk(pre, &pre_len, "PLTE", plte, sizeof plte);
                png_spec sp = {sizes[si][0], sizes[si][1], colors[ci], 8,
                               f < 5 ? 1 << f : 0x1F, -1, 15, 1 + f % 9,
                               1 + (int)(si % 3), 0, -1, pre, pre_len};
                size_t len = 0;
                uint8_t *png = build_png(&sp, &len);
                CHECK(png != NULL);
                if (!png) continue;
                snprintf(what, sizeof what, "colour %d %ux%u filters %#x",
                         sp.color, sp.w, sp.h, (unsigned)sp.filters);
                pe_image im = {0};
                CHECK_OK(decode_path(png, len, NULL, &im, NULL, 0));
                pe_image_free(&im);
                bad += !same_both_ways(png, len, what);
                free(png);
            }

    /* Files the fast path must leave to libpng, or whose errors must stay
     * libpng's. Each: colour, extra chunks, window bits, raw delta, bad row,
     * depth. */
    uint8_t chunk_data[8] = {0, 0, 0xB1, 0x8F, 1, 2, 3, 4};
    for (int k = 0; k < 18; k++) {
        size_t pre_len = 0;
        png_spec sp = {40, 30, 2, 8, 0x1F, -1, 15, 6, 2, 0, -1, pre, 0};
        switch (k) {
        case 0: sp.window_bits = 9; break;  /* window < data: zlib only */
        case 1: sp.window_bits = 10; sp.w = 4; sp.h = 4; break; /* fits */
        case 2: sp.raw_delta = 50; break;   /* too much image data */
        case 3: sp.raw_delta = -7; break;   /* not enough */
        case 4: sp.bad_row = 17; break;     /* filter 5 */
        case 5: sp.bad_row = 0; break;
        case 6: /* ancillary chunks, one with a bad CRC */
            put_chunk(pre, &pre_len, "gAMA", chunk_data, 4);
            put_chunk(pre, &pre_len, "prVt", chunk_data, 8);
            put_chunk(pre, &pre_len, "pHYs", chunk_data, 8);
            pre[pre_len - 1] ^= 1;
            break;
        case 7: put_chunk(pre, &pre_len, "ABCD", chunk_data, 8); break;
        case 8: put_chunk(pre, &pre_len, "tRNS", chunk_data, 6); break;
        case 9: /* palette with tRNS; then without PLTE */
            sp.color = 3;
            put_chunk(pre, &pre_len, "PLTE", plte, 30);
            put_chunk(pre, &pre_len, "tRNS", chunk_data, 3);
            break;
        case 10: sp.color = 3; break;
        case 11: /* PLTE in an RGB file; a PLTE of 0 and of 257 entries */
            put_chunk(pre, &pre_len, "PLTE", plte, 30);
            break;
        case 12:
            sp.color = 3;
            put_chunk(pre, &pre_len, "PLTE", plte, 0);
            break;
        case 13:
            sp.color = 3;
            put_chunk(pre, &pre_len, "PLTE", plte, sizeof plte);
            put_chunk(pre, &pre_len, "PLTE", plte, 9);
            break;
        case 14: sp.depth = 16; sp.color = 6; break;
        case 15: sp.depth = 4; sp.color = 0; break;
        case 16: /* a 512-byte window claimed, longer distances used:
                  * zlib says "too far back", libdeflate would not */
            sp.w = 300;
            sp.h = 20;
            sp.cinfo = 1;
            break;
        case 17: sp.cinfo = 7; break; /* the same stream, honest */
        }
        sp.pre_len = pre_len;
        size_t len = 0;
        uint8_t *png = build_png(&sp, &len);
        CHECK(png != NULL);
        if (!png) continue;
        snprintf(what, sizeof what, "special case %d", k);
        bad += !same_both_ways(png, len, what);
        if (k == 6 || k == 2) bad += !damaged_both_ways(png, len, 40);
        free(png);
    }

    /* Damage to fast-path files of each colour type. */
    for (size_t ci = 0; ci < sizeof colors / sizeof colors[0]; ci++) {
        size_t pre_len = 0;
        if (colors[ci] == 3) put_chunk(pre, &pre_len, "PLTE", plte, 60);
        png_spec sp = {23, 11, colors[ci], 8, 0x1F, -1, 15, 6, 2, 0, -1, pre,
                       pre_len};
        size_t len = 0;
        uint8_t *png = build_png(&sp, &len);
        CHECK(png != NULL);
        if (!png) continue;
        bad += !damaged_both_ways(png, len, 150);
        free(png);
    }

    /* libpng's own writer (adaptive filters) and the Pillow fixtures. */
    pe_image im = {0};
    uint8_t *png = NULL;
    size_t len = 0;
    for (uint32_t c = 1; c <= 3; c += 2) {
        CHECK_OK(make_image(&im, 97, 41, c));
        CHECK_OK(pe_encode_png(&im, &png, &len));
        if (png) bad += !same_both_ways(png, len, "pe_encode_png output");
        free(png);
        png = NULL;
        pe_image_free(&im);
    }
    if (have_pil) {
        const char *names[] = {"rgb.png", "rgba.png", "pal.png", "ga.png",
                               "gray1.png", "gray_trns.png", "rgb_i.png"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            uint8_t *buf = load(names[i], &len);
            if (!buf) continue;
            bad += !same_both_ways(buf, len, names[i]);
            free(buf);
        }
    }
    CHECK(bad == 0);
}

int main(void) {
    if (setup_pil() != 0) {
        fprintf(stderr, "cannot prepare the Pillow fixtures\n");
        remove_tmpdir();
        return 1;
    }
    RUN(test_exif_parser);
    RUN(test_jpeg_vs_pillow);
    RUN(test_jpeg_no_orient);
    RUN(test_jpeg_dct_scaling);
    RUN(test_jpeg_limits);
    RUN(test_jpeg_corrupt);
    RUN(test_png_vs_pillow);
    RUN(test_png_encode_roundtrip);
    RUN(test_png_limits);
    RUN(test_png_corrupt);
    RUN(test_png_fast_vs_libpng);
    remove_tmpdir();
    return CHECK_DONE();
}
