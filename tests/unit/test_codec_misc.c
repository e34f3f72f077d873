/*
 * test_codec_misc.c - tests of the TIFF, PNM and BMP decoders, the PNM
 * encoder, format sniffing and pe_decode's dispatch.
 *
 * Not for: the JPEG and PNG decoders (their own tests); here they are only
 * reached through pe_decode's dispatch.
 *
 * The oracle is Pillow, run as an independent decoder: at start-up the test
 * writes hand-made fixtures (BMP variants built byte by byte, TIFF variants
 * written with libtiff's encoder: tiles, separate planes, 16-bit, BigTIFF,
 * orientation...) into a mkdtemp directory under /tmp, then runs
 * /usr/bin/python3 with PIL, which writes its own fixtures (TIFF with each
 * compression, PNM, BMP) and decodes every fixture to RGB bytes. Each
 * decode here must equal Pillow's byte for byte; the few places where the
 * expected bytes are not plain Image.convert("RGB") say why in the script.
 * Python and PIL are build dependencies (scripts/install-deps.sh), so their
 * absence is a failure, not a skip.
 *
 * PE_KEEP_FIXTURES=1 in the environment keeps the directory for a look.
 *
 * Bad inputs (truncations, random bytes, text, absurd sizes, overflowing
 * offsets and header numbers, unsupported compressions) must give the
 * documented code, leave the output empty, and print nothing to stderr.
 */
#include "codec.h"
#include "pe.h"

#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <tiffio.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

static char tmpdir[64];
static int fixtures_ok;

/* ---- small helpers ---------------------------------------------------- */

static uint32_t rng_state = 0x9e3779b9u;
static uint32_t rnd(void) {
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}
static void fill_random(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(rnd() >> 24);
}

static void path_of(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static int write_file(const char *name, const void *buf, size_t len) {
    char p[256];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    if (!f) return errno;
    size_t n = fwrite(buf, 1, len, f);
    int rc = fclose(f);
    return n == len && rc == 0 ? 0 : EIO;
}

/* Reads tmpdir/name into a malloc'd buffer; NULL when missing. */
static uint8_t *read_file(const char *name, size_t *len) {
    char p[256];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 4096;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    *len = n;
    return buf;
}

static void remove_tmpdir(void) {
    if (!tmpdir[0]) return;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(tmpdir);
    tmpdir[0] = 0;
}

/* Growable byte buffer for hand-made files. */
typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        PE_ASSERT(np != NULL);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put8(bytes *b, uint8_t v) { put(b, &v, 1); }
static void put16(bytes *b, uint16_t v) {
    uint8_t t[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, t, 2);
}
static void put32(bytes *b, uint32_t v) {
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, t, 4);
}
static void set32(bytes *b, size_t at, uint32_t v) {
    b->p[at] = (uint8_t)v;
    b->p[at + 1] = (uint8_t)(v >> 8);
    b->p[at + 2] = (uint8_t)(v >> 16);
    b->p[at + 3] = (uint8_t)(v >> 24);
}

/* Decodes buf with pe_decode and checks the documented failure shape:
 * rc as wanted, output empty. Returns rc. */
static int decode_expect(const uint8_t *buf, size_t len, const pe_decode_opts *opts,
                         int want, const char *what) {
    pe_image im = {0};
    pe_decode_info info;
    int rc = pe_decode(buf, len, opts, &im, &info);
    if (rc != want)
        fprintf(stderr, "  %s: rc %d (%s: %s), want %d\n", what, rc, pe_strerror(rc),
                pe_errmsg(), want);
    CHECK(rc == want);
    if (rc != 0) CHECK(im.px == NULL && im.w == 0 && im.h == 0);
    pe_image_free(&im);
    return rc;
}

/* Temporarily sends fd 2 to a file, to prove that libtiff's handlers do
 * not print. Nothing may CHECK while it is redirected. */
static int stderr_saved = -1;
static void quiet_begin(void) {
    char p[256];
    path_of(p, sizeof p, "stderr.txt");
    fflush(stderr);
    stderr_saved = dup(2);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
    }
}
/* Restores fd 2; returns how many bytes were printed meanwhile, and
 * repeats them on the real stderr. */
static long quiet_end(void) {
    fflush(stderr);
    if (stderr_saved >= 0) {
        dup2(stderr_saved, 2);
        close(stderr_saved);
        stderr_saved = -1;
    }
    size_t n = 0;
    uint8_t *got = read_file("stderr.txt", &n);
    if (got && n) fprintf(stderr, "  printed to stderr: %.*s\n", (int)n, (const char *)got);
    free(got);
    return (long)n;
}

/* ---- hand-made BMP files ---------------------------------------------- */

typedef struct bmp_spec {
    int32_t w, h;          /* h < 0: top-down */
    uint16_t bpp;
    uint32_t comp;         /* 0 RGB, 3 BITFIELDS, 1/2 RLE */
    uint32_t hdr;          /* 12, 40, 108, 124 */
    uint32_t masks[4];     /* for BITFIELDS */
    uint32_t ncolors;      /* palette entries written (and clr_used) */
    int gray_palette;      /* palette entries r == g == b */
} bmp_spec;

/* Builds a BMP with random pixels (and palette indices below ncolors). */
static void build_bmp(bytes *b, const bmp_spec *s) {
    uint32_t aw = (uint32_t)s->w, ah = (uint32_t)(s->h < 0 ? -s->h : s->h);
    uint32_t stride = (aw * s->bpp + 31) / 32 * 4;
    uint32_t ent = s->hdr == 12 ? 3 : 4;
    uint32_t masks_after = s->hdr == 40 && s->comp == 3 ? 12 : 0;
    uint32_t off = 14 + s->hdr + masks_after + s->ncolors * ent;
    b->n = 0;
    put(b, "BM", 2);
    put32(b, off + stride * ah);
    put32(b, 0);
    put32(b, off);
    put32(b, s->hdr);
    if (s->hdr == 12) {
        put16(b, (uint16_t)s->w);
        put16(b, (uint16_t)s->h);
        put16(b, 1);
        put16(b, s->bpp);
    } else {
        put32(b, (uint32_t)s->w);
        put32(b, (uint32_t)s->h);
        put16(b, 1);
        put16(b, s->bpp);
        put32(b, s->comp);
        put32(b, stride * ah);
        put32(b, 2835);
        put32(b, 2835);
        put32(b, s->ncolors);
        put32(b, 0);
        size_t start = b->n;
        if (s->hdr > 40 || masks_after)
            for (int i = 0; i < 4; i++) put32(b, s->masks[i]);
        if (masks_after) b->n = start + 12;
        while (b->n < 14 + s->hdr + masks_after) put8(b, 0);
        if (s->hdr >= 108) set32(b, 14 + 56, 0x73524742); /* LCS_sRGB */
    }
    for (uint32_t i = 0; i < s->ncolors; i++) {
        uint8_t e[4] = {(uint8_t)rnd(), (uint8_t)rnd(), (uint8_t)rnd(), 0};
        if (s->gray_palette) e[1] = e[2] = e[0];
        put(b, e, ent);
    }
    PE_ASSERT(b->n == off);
    uint8_t *row = calloc(1, stride);
    PE_ASSERT(row != NULL);
    for (uint32_t y = 0; y < ah; y++) {
        if (s->bpp <= 8) {
            memset(row, 0, stride);
            for (uint32_t x = 0; x < aw; x++) {
                uint32_t idx = rnd() % s->ncolors;
                uint32_t bit = x * s->bpp;
                row[bit / 8] |= (uint8_t)(idx << (8 - s->bpp - bit % 8));
            }
        } else {
            fill_random(row, stride);
        }
        put(b, row, stride);
    }
    free(row);
}

/* ---- hand-made TIFF files (libtiff's encoder) ------------------------- */

typedef struct tiff_spec {
    const char *mode;       /* "w" little-endian, "wb" big-endian, "w8" BigTIFF */
    uint32_t w, h;
    uint16_t spp, bps, photometric, planar, compression, predictor;
    uint16_t orientation;   /* 0: tag absent */
    uint32_t tile;          /* square tile side; 0: strips */
    uint32_t rps;           /* rows per strip */
    int alpha;              /* last sample is unassociated alpha */
} tiff_spec;

static int write_tiff(const char *name, const tiff_spec *s) {
    char p[256];
    path_of(p, sizeof p, name);
    TIFF *t = TIFFOpen(p, s->mode);
    if (!t) return -1;
    int ok = 1;
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, s->w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, s->h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, s->spp);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, s->bps);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, s->photometric);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, s->planar);
    TIFFSetField(t, TIFFTAG_COMPRESSION, s->compression);
    if (s->predictor) TIFFSetField(t, TIFFTAG_PREDICTOR, s->predictor);
    if (s->orientation) TIFFSetField(t, TIFFTAG_ORIENTATION, s->orientation);
    if (s->compression == COMPRESSION_JPEG) TIFFSetField(t, TIFFTAG_JPEGQUALITY, 90);
    /* YCbCr JPEG: libjpeg converts from the RGB scanlines given here. */
    if (s->compression == COMPRESSION_JPEG && s->photometric == PHOTOMETRIC_YCBCR)
        TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    if (s->alpha) {
        uint16_t extra = EXTRASAMPLE_UNASSALPHA;
        TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &extra);
    }
    uint16_t *cmap = NULL;
    if (s->photometric == PHOTOMETRIC_PALETTE) {
        size_t n = (size_t)1 << s->bps;
        cmap = malloc(3 * n * sizeof *cmap);
        PE_ASSERT(cmap != NULL);
        for (size_t i = 0; i < 3 * n; i++) cmap[i] = (uint16_t)rnd();
        TIFFSetField(t, TIFFTAG_COLORMAP, cmap, cmap + n, cmap + 2 * n);
    }
    uint16_t planes = s->planar == PLANARCONFIG_SEPARATE ? s->spp : 1;
    if (s->tile) {
        TIFFSetField(t, TIFFTAG_TILEWIDTH, s->tile);
        TIFFSetField(t, TIFFTAG_TILELENGTH, s->tile);
        tmsize_t ts = TIFFTileSize(t);
        uint8_t *tb = malloc((size_t)ts);
        PE_ASSERT(tb != NULL);
        for (uint16_t pl = 0; pl < planes && ok; pl++)
            for (uint32_t y = 0; y < s->h && ok; y += s->tile)
                for (uint32_t x = 0; x < s->w && ok; x += s->tile) {
                    fill_random(tb, (size_t)ts);
                    ok = TIFFWriteTile(t, tb, x, y, 0, pl) >= 0;
                }
        free(tb);
    } else {
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, s->rps ? s->rps : s->h);
        tmsize_t ls = TIFFScanlineSize(t);
        uint8_t *lb = malloc((size_t)ls);
        PE_ASSERT(lb != NULL);
        for (uint16_t pl = 0; pl < planes && ok; pl++)
            for (uint32_t y = 0; y < s->h && ok; y++) {
                fill_random(lb, (size_t)ls);
                ok = TIFFWriteScanline(t, lb, y, pl) >= 0;
            }
        free(lb);
    }
    TIFFClose(t);
    free(cmap);
    return ok ? 0 : -1;
}

/* ---- the Pillow side -------------------------------------------------- */

static const char *const pil_script[] = {
    "import os, random, sys",
    "from PIL import Image",
    "d = sys.argv[1]",
    "random.seed(20240601)",
    "def noise(mode, w, h):",
    "    if mode == '1':",
    "        im = Image.new('1', (w, h))",
    "        im.putdata([random.choice((0, 255)) for _ in range(w * h)])",
    "    elif mode == 'I;16':",
    "        im = Image.new('I;16', (w, h))",
    "        im.putdata([random.randrange(65536) for _ in range(w * h)])",
    "    elif mode == 'I':",
    "        im = Image.new('I', (w, h))",
    "        im.putdata([random.randrange(65536) for _ in range(w * h)])",
    "    elif mode == 'P':",
    "        im = Image.new('P', (w, h))",
    "        im.putpalette([random.randrange(256) for _ in range(768)])",
    "        im.putdata([random.randrange(256) for _ in range(w * h)])",
    "    else:",
    "        n = len(mode)",
    "        px = bytes(random.randrange(256) for _ in range(w * h * n))",
    "        im = Image.frombytes(mode, (w, h), px)",
    "    return im",
    "def save(name, im, **kw):",
    "    im.save(os.path.join(d, name), **kw)",
    "save('fx_tiff_rgb_none.tif', noise('RGB', 37, 23), compression=None)",
    "save('fx_tiff_rgb_lzw.tif', noise('RGB', 37, 23), compression='tiff_lzw')",
    "save('fx_tiff_rgb_deflate.tif', noise('RGB', 37, 23), compression='tiff_deflate')",
    "save('fx_tiff_rgb_packbits.tif', noise('RGB', 37, 23), compression='packbits')",
    "save('fx_tiff_rgb_jpeg.tif', noise('RGB', 40, 24), compression='jpeg', quality=90)",
    "save('fx_tiff_gray8_lzw.tif', noise('L', 33, 19), compression='tiff_lzw')",
    "save('fx_tiff_gray16.tif', noise('I;16', 31, 17))",
    "save('fx_tiff_1bit.tif', noise('1', 35, 13))",
    "save('fx_tiff_1bit_g4.tif', noise('1', 35, 13), compression='group4')",
    "save('fx_tiff_palette.tif', noise('P', 29, 11))",
    "save('fx_tiff_rgba.tif', noise('RGBA', 21, 9), compression='tiff_lzw')",
    "save('fx_tiff_cmyk.tif', noise('CMYK', 21, 9), compression='tiff_deflate')",
    "save('fx_pnm_p5.pgm', noise('L', 37, 23))",
    "save('fx_pnm_p6.ppm', noise('RGB', 37, 23))",
    "save('fx_pnm_p4.pbm', noise('1', 35, 13))",
    "save('fx_pnm_p5_16.pgm', noise('I', 19, 7))",
    "save('fx_bmp_rgb24.bmp', noise('RGB', 37, 23))",
    "save('fx_bmp_p8.bmp', noise('P', 37, 23))",
    "save('fx_bmp_l8.bmp', noise('L', 37, 23))",
    "save('fx_bmp_1bit.bmp', noise('1', 35, 13))",
    "save('fx_bmp_rgba32.bmp', noise('RGBA', 21, 9))",
    "save('dx_png.png', noise('RGB', 8, 6))",
    "save('dx_jpeg.jpg', noise('RGB', 16, 16), quality=90)",
    "def rgb_bytes(im):",
    "    # Pillow keeps 16-bit gray as I;16; codec.h keeps the high byte (its",
    "    # convert('L') would clip instead), so take the high byte here.",
    "    if im.mode in ('I;16', 'I;16L'):",
    "        return Image.frombytes('L', im.size, im.tobytes()[1::2]).convert('RGB').tobytes()",
    "    if im.mode == 'I;16B':",
    "        return Image.frombytes('L', im.size, im.tobytes()[0::2]).convert('RGB').tobytes()",
    "    # 16-bit PGM (maxval 65535) opens as I: the netpbm meaning of a sample",
    "    # is v / maxval, so 8 bits are round(v * 255 / 65535), in integers.",
    "    if im.mode == 'I':",
    "        g = bytes((v * 255 + 32767) // 65535 for v in im.getdata())",
    "        return Image.frombytes('L', im.size, g).convert('RGB').tobytes()",
    "    return im.convert('RGB').tobytes()",
    "T = Image.Transpose",
    "undo = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,",
    "        6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}",
    "with open(os.path.join(d, 'manifest.txt'), 'w') as man:",
    "    for fn in sorted(os.listdir(d)):",
    "        if not fn.startswith('fx_'):",
    "            continue",
    "        name = fn.split('.')[0]",
    "        im = Image.open(os.path.join(d, fn))",
    "        im.load()",
    "        # Pillow 9 applies the TIFF Orientation tag inside load()",
    "        # (TiffImagePlugin.load_end), as pe does by default; the stored",
    "        # order (pe's no_orient) is the inverse transpose. exif_transpose",
    "        # would apply the tag a second time on a TIFF, so it is not used.",
    "        o = im.tag_v2.get(0x0112, 1) if im.format == 'TIFF' else 1",
    "        stored = im.transpose(undo[o]) if o in undo else im",
    "        with open(os.path.join(d, name + '.raw'), 'wb') as f:",
    "            f.write(rgb_bytes(im))",
    "        with open(os.path.join(d, name + '.stored.raw'), 'wb') as f:",
    "            f.write(rgb_bytes(stored))",
    "        man.write('%s %s %d %d %d %d %s\\n' % (name, fn, im.size[0], im.size[1],",
    "                  stored.size[0], stored.size[1], im.mode))",
};

/* Expected channel count per fixture (pe's rule: gray sources give 1). */
static const struct {
    const char *name;
    uint32_t c;
} expected_c[] = {
    {"fx_tiff_rgb_none", 3},    {"fx_tiff_rgb_lzw", 3},      {"fx_tiff_rgb_deflate", 3},
    {"fx_tiff_rgb_packbits", 3},{"fx_tiff_rgb_jpeg", 3},     {"fx_tiff_gray8_lzw", 1},
    {"fx_tiff_gray16", 1},      {"fx_tiff_1bit", 1},         {"fx_tiff_1bit_g4", 1},
    {"fx_tiff_palette", 3},     {"fx_tiff_rgba", 3},         {"fx_tiff_cmyk", 3},
    {"fx_pnm_p5", 1},
    {"fx_pnm_p6", 3},           {"fx_pnm_p4", 1},            {"fx_pnm_p5_16", 1},
    {"fx_bmp_rgb24", 3},        {"fx_bmp_p8", 3},            {"fx_bmp_l8", 1},
    {"fx_bmp_1bit", 1},         {"fx_bmp_rgba32", 3},
    /* hand-made here */
    {"fx_c_bmp_topdown24", 3},  {"fx_c_bmp_bitfields32", 3}, {"fx_c_bmp_v5_alpha32", 3},
    {"fx_c_bmp_565", 3},        {"fx_c_bmp_555", 3},         {"fx_c_bmp_4bit", 3},
    {"fx_c_bmp_os2_8bit", 3},   {"fx_c_bmp_graypal8", 1},    {"fx_c_bmp_20colors", 3},
    {"fx_c_bmp_topdown_1bit", 3},
    {"fx_c_tiff_tiled_rgb", 3}, {"fx_c_tiff_tiled_lzw_pred", 3},
    {"fx_c_tiff_tiled_gray16_be", 1}, {"fx_c_tiff_rgb16_be", 3},
    {"fx_c_tiff_separate_rgb", 3}, {"fx_c_tiff_miniswhite8", 1}, {"fx_c_tiff_gray4", 1},
    {"fx_c_tiff_gray2", 1},     {"fx_c_tiff_bigtiff", 3},    {"fx_c_tiff_orient3", 3},
    {"fx_c_tiff_orient6", 3},   {"fx_c_tiff_palette4", 3},   {"fx_c_tiff_jpeg_gray", 1},
    {"fx_c_tiff_rgba_strips", 3}, {"fx_c_tiff_gray_alpha", 1},
    {"fx_c_tiff_ycbcr_jpeg", 3}, {"fx_c_tiff_ycbcr_jpeg_tiled", 3},
    {"fx_c_pnm_p1", 1},         {"fx_c_pnm_p2", 1},          {"fx_c_pnm_p3", 3},
    {"fx_c_pnm_enc_gray", 1},   {"fx_c_pnm_enc_rgb", 3},
};

static int want_c(const char *name) {
    for (size_t i = 0; i < sizeof expected_c / sizeof expected_c[0]; i++)
        if (!strcmp(expected_c[i].name, name)) return (int)expected_c[i].c;
    return -1;
}

static void write_hand_made(void) {
    bytes b = {0};
    static const struct {
        const char *name;
        bmp_spec s;
    } bmps[] = {
        {"fx_c_bmp_topdown24.bmp", {37, -23, 24, 0, 40, {0}, 0, 0}},
        {"fx_c_bmp_bitfields32.bmp", {21, 9, 32, 3, 40, {0xff0000, 0xff00, 0xff, 0}, 0, 0}},
        {"fx_c_bmp_v5_alpha32.bmp",
         {21, -9, 32, 3, 124, {0xff0000, 0xff00, 0xff, 0xff000000u}, 0, 0}},
        {"fx_c_bmp_565.bmp", {19, 7, 16, 3, 40, {0xf800, 0x07e0, 0x001f, 0}, 0, 0}},
        {"fx_c_bmp_555.bmp", {19, 7, 16, 0, 40, {0}, 0, 0}},
        {"fx_c_bmp_4bit.bmp", {23, 11, 4, 0, 40, {0}, 16, 0}},
        {"fx_c_bmp_os2_8bit.bmp", {17, 5, 8, 0, 12, {0}, 256, 0}},
        {"fx_c_bmp_graypal8.bmp", {17, 5, 8, 0, 40, {0}, 256, 1}},
        {"fx_c_bmp_20colors.bmp", {17, 5, 8, 0, 40, {0}, 20, 0}},
        {"fx_c_bmp_topdown_1bit.bmp", {35, -13, 1, 0, 40, {0}, 2, 0}},
    };
    for (size_t i = 0; i < sizeof bmps / sizeof bmps[0]; i++) {
        build_bmp(&b, &bmps[i].s);
        CHECK_OK(write_file(bmps[i].name, b.p, b.n));
    }
    free(b.p);

    /* mode, w, h, spp, bps, photometric, planar, compression, predictor,
     * orientation, tile, rows per strip, alpha */
#define PH(x) PHOTOMETRIC_##x
#define CP(x) COMPRESSION_##x
#define CONTIG PLANARCONFIG_CONTIG
#define SEPARATE PLANARCONFIG_SEPARATE
    static const struct {
        const char *name;
        tiff_spec s;
    } tiffs[] = {
        {"fx_c_tiff_tiled_rgb.tif",
         {"w", 37, 23, 3, 8, PH(RGB), CONTIG, CP(NONE), 0, 0, 16, 0, 0}},
        {"fx_c_tiff_tiled_lzw_pred.tif",
         {"w", 50, 40, 3, 8, PH(RGB), CONTIG, CP(LZW), 2, 0, 32, 0, 0}},
        {"fx_c_tiff_tiled_gray16_be.tif",
         {"wb", 37, 23, 1, 16, PH(MINISBLACK), CONTIG, CP(ADOBE_DEFLATE), 0, 0, 16, 0, 0}},
        {"fx_c_tiff_rgb16_be.tif",
         {"wb", 13, 9, 3, 16, PH(RGB), CONTIG, CP(NONE), 0, 0, 0, 4, 0}},
        {"fx_c_tiff_separate_rgb.tif",
         {"w", 19, 11, 3, 8, PH(RGB), SEPARATE, CP(PACKBITS), 0, 0, 0, 5, 0}},
        {"fx_c_tiff_miniswhite8.tif",
         {"w", 19, 11, 1, 8, PH(MINISWHITE), CONTIG, CP(NONE), 0, 0, 0, 3, 0}},
        {"fx_c_tiff_gray4.tif",
         {"w", 19, 11, 1, 4, PH(MINISBLACK), CONTIG, CP(NONE), 0, 0, 0, 0, 0}},
        {"fx_c_tiff_gray2.tif",
         {"w", 19, 11, 1, 2, PH(MINISBLACK), CONTIG, CP(LZW), 0, 0, 0, 0, 0}},
        {"fx_c_tiff_bigtiff.tif",
         {"w8", 23, 17, 3, 8, PH(RGB), CONTIG, CP(ADOBE_DEFLATE), 0, 0, 0, 6, 0}},
        {"fx_c_tiff_orient3.tif",
         {"w", 13, 7, 3, 8, PH(RGB), CONTIG, CP(NONE), 0, 3, 0, 0, 0}},
        {"fx_c_tiff_orient6.tif",
         {"w", 13, 7, 3, 8, PH(RGB), CONTIG, CP(NONE), 0, 6, 0, 0, 0}},
        {"fx_c_tiff_palette4.tif",
         {"w", 19, 11, 1, 4, PH(PALETTE), CONTIG, CP(NONE), 0, 0, 0, 0, 0}},
        {"fx_c_tiff_jpeg_gray.tif",
         {"w", 40, 24, 1, 8, PH(MINISBLACK), CONTIG, CP(JPEG), 0, 0, 0, 8, 0}},
        {"fx_c_tiff_rgba_strips.tif",
         {"w", 21, 9, 4, 8, PH(RGB), CONTIG, CP(NONE), 0, 0, 0, 2, 1}},
        {"fx_c_tiff_gray_alpha.tif",
         {"w", 21, 9, 2, 8, PH(MINISBLACK), CONTIG, CP(NONE), 0, 0, 0, 0, 1}},
        /* YCbCr goes through libtiff's RGBA reader, in bands of strips or tiles. */
        {"fx_c_tiff_ycbcr_jpeg.tif",
         {"w", 45, 40, 3, 8, PH(YCBCR), CONTIG, CP(JPEG), 0, 0, 0, 16, 0}},
        {"fx_c_tiff_ycbcr_jpeg_tiled.tif",
         {"w", 45, 40, 3, 8, PH(YCBCR), CONTIG, CP(JPEG), 0, 0, 16, 0, 0}},
    };
#undef PH
#undef CP
#undef CONTIG
#undef SEPARATE
    for (size_t i = 0; i < sizeof tiffs / sizeof tiffs[0]; i++) {
        int rc = write_tiff(tiffs[i].name, &tiffs[i].s);
        if (rc) fprintf(stderr, "  cannot write %s with libtiff\n", tiffs[i].name);
        CHECK(rc == 0);
    }

    /* Plain netpbm with comments in every legal place and odd spacing. */
    static const char p1[] = "P1\n# a comment\n5 3 # trailing comment\n"
                             "10101\n0 1 0 1 0\n  1\t1 0\r\n0 1\n";
    static const char p2[] = "P2\n#c\n4 2\n# maxval next\n100\n0 1 50 100\n"
                             "99 #in data\n 3\n7   8\n";
    static const char p3[] = "P3 2 2 255 # one line header\n"
                             "255 0 0  0 255 0\n0 0 255  12 34 56\n";
    CHECK_OK(write_file("fx_c_pnm_p1.pbm", p1, sizeof p1 - 1));
    CHECK_OK(write_file("fx_c_pnm_p2.pgm", p2, sizeof p2 - 1));
    CHECK_OK(write_file("fx_c_pnm_p3.ppm", p3, sizeof p3 - 1));

    /* pe_encode_pnm output, which Pillow then decodes. */
    for (uint32_t c = 1; c <= 3; c += 2) {
        pe_image im = {0};
        CHECK_OK(pe_image_alloc(&im, 23, 17, c));
        if (!im.px) continue;
        fill_random(im.px, pe_image_size(&im));
        uint8_t *enc = NULL;
        size_t n = 0;
        CHECK_OK(pe_encode_pnm(&im, &enc, &n));
        if (enc) CHECK_OK(write_file(c == 1 ? "fx_c_pnm_enc_gray.pgm" : "fx_c_pnm_enc_rgb.ppm",
                                     enc, n));
        free(enc);
        pe_image_free(&im);
    }
}

static void make_fixtures(void) {
    strcpy(tmpdir, "/tmp/pe-test-codec-misc-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "  mkdtemp: %s\n", strerror(errno));
        tmpdir[0] = 0;
        CHECK(0);
        return;
    }
    write_hand_made();

    bytes script = {0};
    for (size_t i = 0; i < sizeof pil_script / sizeof pil_script[0]; i++) {
        put(&script, pil_script[i], strlen(pil_script[i]));
        put8(&script, '\n');
    }
    CHECK_OK(write_file("make_fixtures.py", script.p, script.n));
    free(script.p);

    if (access(PYTHON, X_OK) != 0) {
        fprintf(stderr, "  %s not found: the Pillow oracle cannot run "
                "(scripts/install-deps.sh installs python3-pil)\n", PYTHON);
        CHECK(0);
        return;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s %s/make_fixtures.py %s", PYTHON, tmpdir, tmpdir);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "  Pillow fixture script failed (status %d); is python3-pil "
                "installed?\n", st);
        CHECK(0);
        return;
    }
    fixtures_ok = 1;
}

/* ---- tests against Pillow --------------------------------------------- */

/* Compares an 8-bit image with Pillow's RGB bytes (gray is replicated). */
static int same_as_rgb(const pe_image *im, const uint8_t *rgb, size_t rgb_len,
                       const char *what) {
    size_t n = (size_t)im->w * im->h;
    if (rgb_len != n * 3) {
        fprintf(stderr, "  %s: Pillow gave %zu bytes, want %zu\n", what, rgb_len, n * 3);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        for (uint32_t k = 0; k < 3; k++) {
            uint8_t got = im->px[i * im->c + (im->c == 1 ? 0 : k)];
            if (got != rgb[3 * i + k]) {
                fprintf(stderr, "  %s: pixel (%zu, %zu) channel %u is %u, Pillow %u\n", what,
                        i % im->w, i / im->w, k, got, rgb[3 * i + k]);
                return 0;
            }
        }
    return 1;
}

static void test_against_pillow(void) {
    if (!fixtures_ok) {
        fprintf(stderr, "  fixtures missing (see above)\n");
        CHECK(0);
        return;
    }
    char p[256];
    path_of(p, sizeof p, "manifest.txt");
    FILE *man = fopen(p, "r");
    CHECK(man != NULL);
    if (!man) return;
    char name[128], file[128], mode[32];
    unsigned w, h, sw, sh;
    int seen = 0;
    while (fscanf(man, "%127s %127s %u %u %u %u %31s", name, file, &w, &h, &sw, &sh, mode) == 7) {
        seen++;
        int c = want_c(name);
        if (c < 0) {
            fprintf(stderr, "  %s: no expected channel count in the table\n", name);
            CHECK(0);
            continue;
        }
        size_t len = 0, rlen = 0, slen = 0;
        char raw[160], sraw[160];
        snprintf(raw, sizeof raw, "%s.raw", name);
        snprintf(sraw, sizeof sraw, "%s.stored.raw", name);
        uint8_t *buf = read_file(file, &len);
        uint8_t *rgb = read_file(raw, &rlen);
        uint8_t *srgb = read_file(sraw, &slen);
        CHECK(buf && rgb && srgb);
        if (buf && rgb && srgb) {
            pe_image im = {0};
            pe_decode_info info;
            int rc = pe_decode(buf, len, NULL, &im, &info);
            if (rc) fprintf(stderr, "  %s: %s: %s\n", name, pe_strerror(rc), pe_errmsg());
            CHECK(rc == 0);
            if (rc == 0) {
                int ok = im.w == w && im.h == h && (int)im.c == c &&
                         info.orig_w == sw && info.orig_h == sh;
                if (!ok)
                    fprintf(stderr,
                            "  %s (%s): got %ux%ux%u from %ux%u, want %ux%ux%d from %ux%u\n",
                            name, mode, im.w, im.h, im.c, info.orig_w, info.orig_h, w, h, c,
                            sw, sh);
                CHECK(ok);
                if (ok) CHECK(same_as_rgb(&im, rgb, rlen, name));
            }
            pe_image_free(&im);

            /* Stored order when orientation is ignored. */
            pe_decode_opts opts = {.no_orient = 1};
            rc = pe_decode(buf, len, &opts, &im, &info);
            CHECK(rc == 0);
            if (rc == 0) {
                CHECK(info.orientation == 1);
                CHECK(im.w == sw && im.h == sh);
                if (im.w == sw && im.h == sh) CHECK(same_as_rgb(&im, srgb, slen, name));
            }
            pe_image_free(&im);
        }
        free(buf);
        free(rgb);
        free(srgb);
    }
    fclose(man);
    /* Every fixture in the table was made and decoded by Pillow. */
    CHECK(seen == (int)(sizeof expected_c / sizeof expected_c[0]));
    if (seen != (int)(sizeof expected_c / sizeof expected_c[0]))
        fprintf(stderr, "  manifest has %d fixtures, table %zu\n", seen,
                sizeof expected_c / sizeof expected_c[0]);
}

/* Decodes a fixture by file name into *im; 0 on success. */
static int decode_fixture(const char *file, pe_image *im, pe_decode_info *info) {
    size_t len = 0;
    uint8_t *buf = read_file(file, &len);
    if (!buf) return ENOENT;
    int rc = pe_decode(buf, len, NULL, im, info);
    free(buf);
    return rc;
}

static void test_info_fields(void) {
    if (!fixtures_ok) return;
    static const struct {
        const char *file;
        pe_format fmt;
        uint32_t orig_c, bits;
        int orientation;
    } cases[] = {
        {"fx_tiff_rgb_lzw.tif", PE_FORMAT_TIFF, 3, 8, 1},
        {"fx_tiff_gray16.tif", PE_FORMAT_TIFF, 1, 16, 1},
        {"fx_tiff_1bit.tif", PE_FORMAT_TIFF, 1, 1, 1},
        {"fx_tiff_rgba.tif", PE_FORMAT_TIFF, 4, 8, 1},
        {"fx_c_tiff_orient6.tif", PE_FORMAT_TIFF, 3, 8, 6},
        {"fx_c_tiff_bigtiff.tif", PE_FORMAT_TIFF, 3, 8, 1},
        {"fx_pnm_p6.ppm", PE_FORMAT_PNM, 3, 8, 1},
        {"fx_pnm_p5_16.pgm", PE_FORMAT_PNM, 1, 16, 1},
        {"fx_pnm_p4.pbm", PE_FORMAT_PNM, 1, 1, 1},
        {"fx_bmp_rgb24.bmp", PE_FORMAT_BMP, 3, 8, 1},
        {"fx_bmp_p8.bmp", PE_FORMAT_BMP, 1, 8, 1},
        {"fx_c_bmp_565.bmp", PE_FORMAT_BMP, 3, 6, 1},
        {"fx_c_bmp_v5_alpha32.bmp", PE_FORMAT_BMP, 4, 8, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pe_image im = {0};
        pe_decode_info info;
        memset(&info, 0xa5, sizeof info); /* pe_decode must zero it */
        int rc = decode_fixture(cases[i].file, &im, &info);
        CHECK(rc == 0);
        int ok = info.format == cases[i].fmt && info.orig_c == cases[i].orig_c &&
                 info.bits == cases[i].bits && info.orientation == cases[i].orientation &&
                 info.scale_num == 1 && info.scale_den == 1 && info.progressive == 0;
        if (!ok)
            fprintf(stderr, "  %s: format %d orig_c %u bits %u orientation %d\n",
                    cases[i].file, info.format, info.orig_c, info.bits, info.orientation);
        CHECK(ok);
        pe_image_free(&im);
    }
}

/* ---- sniffing and dispatch -------------------------------------------- */

static void test_sniff(void) {
    static const struct {
        const char *bytes;
        size_t len;
        pe_format want;
    } cases[] = {
        {"\xff\xd8\xff\xe0", 4, PE_FORMAT_JPEG},
        {"\xff\xd8\xff", 3, PE_FORMAT_JPEG},
        {"\xff\xd8", 2, PE_FORMAT_UNKNOWN},
        {"\x89PNG\r\n\x1a\n", 8, PE_FORMAT_PNG},
        {"\x89PNG\r\n\x1a", 7, PE_FORMAT_UNKNOWN},
        {"\x89PNG\n\r\x1a\n", 8, PE_FORMAT_UNKNOWN},
        {"II*\0\x08\0\0\0", 8, PE_FORMAT_TIFF},
        {"MM\0*\0\0\0\x08", 8, PE_FORMAT_TIFF},
        {"II+\0\x08\0\0\0", 8, PE_FORMAT_TIFF},
        {"MM\0+\0\x08\0\0", 8, PE_FORMAT_TIFF},
        {"II*\x01", 4, PE_FORMAT_UNKNOWN},
        {"MI*\0", 4, PE_FORMAT_UNKNOWN},
        {"P1\n", 3, PE_FORMAT_PNM},
        {"P2 ", 3, PE_FORMAT_PNM},
        {"P3\t", 3, PE_FORMAT_PNM},
        {"P4\r", 3, PE_FORMAT_PNM},
        {"P5\n", 3, PE_FORMAT_PNM},
        {"P6\n", 3, PE_FORMAT_PNM},
        {"P7\n", 3, PE_FORMAT_PNM}, /* PAM: sniffed so the decoder can refuse it clearly */
        {"P6x", 3, PE_FORMAT_UNKNOWN},
        {"P8\n", 3, PE_FORMAT_UNKNOWN},
        {"P0\n", 3, PE_FORMAT_UNKNOWN},
        {"P6", 2, PE_FORMAT_UNKNOWN},
        {"Please read me\n", 15, PE_FORMAT_UNKNOWN},
        {"BM\0\0\0\0\0\0\0\0\0\0\0\0\x28\0\0\0", 18, PE_FORMAT_BMP},
        {"BM\0\0\0\0\0\0\0\0\0\0\0\0\x7c\0\0\0", 18, PE_FORMAT_BMP},
        {"BM\0\0\0\0\0\0\0\0\0\0\0\0\x0c\0\0\0", 18, PE_FORMAT_BMP},
        {"BM\0\0\0\0\0\0\0\0\0\0\0\0\x29\0\0\0", 18, PE_FORMAT_UNKNOWN},
        {"BMW is a car brand", 18, PE_FORMAT_UNKNOWN},
        {"BM", 2, PE_FORMAT_UNKNOWN},
        {"GIF89a", 6, PE_FORMAT_UNKNOWN},
        {"", 0, PE_FORMAT_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pe_format got = pe_sniff((const uint8_t *)cases[i].bytes, cases[i].len);
        if (got != cases[i].want)
            fprintf(stderr, "  case %zu: sniffed %s, want %s\n", i, pe_format_name(got),
                    pe_format_name(cases[i].want));
        CHECK(got == cases[i].want);
    }
    CHECK(pe_sniff(NULL, 10) == PE_FORMAT_UNKNOWN);
}

static void test_format_names(void) {
    static const char *const names[] = {"unknown", "jpeg", "png", "tiff", "pnm", "bmp",
                                        "idx", "cifar", "stl10", "store", "raw"};
    for (int f = 0; f <= PE_FORMAT_RAW; f++)
        CHECK(!strcmp(pe_format_name((pe_format)f), names[f]));
    CHECK(!strcmp(pe_format_name((pe_format)99), "unknown"));
}

static void test_dispatch(void) {
    if (!fixtures_ok) return;
    static const struct {
        const char *file;
        pe_format fmt;
        uint32_t w, h;
    } cases[] = {
        {"dx_png.png", PE_FORMAT_PNG, 8, 6},         {"dx_jpeg.jpg", PE_FORMAT_JPEG, 16, 16},
        {"fx_tiff_rgb_none.tif", PE_FORMAT_TIFF, 37, 23}, {"fx_pnm_p6.ppm", PE_FORMAT_PNM, 37, 23},
        {"fx_bmp_rgb24.bmp", PE_FORMAT_BMP, 37, 23},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pe_image im = {0};
        pe_decode_info info;
        int rc = decode_fixture(cases[i].file, &im, &info);
        if (rc) fprintf(stderr, "  %s: %s: %s\n", cases[i].file, pe_strerror(rc), pe_errmsg());
        CHECK(rc == 0);
        CHECK(info.format == cases[i].fmt);
        CHECK(im.w == cases[i].w && im.h == cases[i].h && im.c == 3);
        pe_image_free(&im);
    }
    /* On failure info still names the sniffed format. */
    static const uint8_t trunc_pnm[] = "P6\n4 4\n255\n\1\2";
    pe_image bad = {0};
    pe_decode_info binfo;
    CHECK_RC(pe_decode(trunc_pnm, sizeof trunc_pnm - 1, NULL, &bad, &binfo), PE_EFORMAT);
    CHECK(binfo.format == PE_FORMAT_PNM && bad.px == NULL);
    CHECK_RC(pe_decode((const uint8_t *)"II*\0\0\0\0\0", 8, NULL, &bad, &binfo), PE_EFORMAT);
    CHECK(binfo.format == PE_FORMAT_TIFF && bad.px == NULL);

    /* info may be NULL. */
    size_t len = 0;
    uint8_t *buf = read_file("fx_pnm_p5.pgm", &len);
    CHECK(buf != NULL);
    if (buf) {
        pe_image im = {0};
        CHECK_OK(pe_decode(buf, len, NULL, &im, NULL));
        CHECK(im.c == 1);
        pe_image_free(&im);
    }
    free(buf);
}

static void test_unrecognised(void) {
    pe_image im = {0};
    decode_expect((const uint8_t *)"", 0, NULL, PE_EFORMAT, "empty");
    CHECK(strstr(pe_errmsg(), "empty file") != NULL);
    CHECK(pe_decode(NULL, 0, NULL, &im, NULL) == PE_EFORMAT);

    static const char text[] = "Dear user,\nthis is not an image.\n";
    decode_expect((const uint8_t *)text, sizeof text - 1, NULL, PE_EFORMAT, "text");
    CHECK(strstr(pe_errmsg(), "not a recognised image format") != NULL);

    decode_expect((const uint8_t *)"GIF89a\1\0\1\0\0\0\0", 13, NULL, PE_EFORMAT, "gif");
    CHECK(strstr(pe_errmsg(), "not a recognised image format") != NULL);
    CHECK(strstr(pe_errmsg(), "GIF") != NULL);

    uint8_t noise[4096];
    fill_random(noise, sizeof noise);
    noise[0] = 0; /* no magic starts with NUL */
    decode_expect(noise, sizeof noise, NULL, PE_EFORMAT, "random bytes");
    CHECK(strstr(pe_errmsg(), "not a recognised image format") != NULL);
    CHECK(im.px == NULL);
}

/* ---- PNM -------------------------------------------------------------- */

static void test_pnm_plain_values(void) {
    /* The hand-made plain files, with values worked out by hand. */
    static const char p1[] = "P1\n# a comment\n5 3 # trailing comment\n"
                             "10101\n0 1 0 1 0\n  1\t1 0\r\n0 1\n";
    static const uint8_t p1_want[15] = {0, 255, 0, 255, 0, 255, 0, 255, 0, 255,
                                        0, 0, 255, 255, 0};
    static const char p2[] = "P2\n#c\n4 2\n# maxval next\n100\n0 1 50 100\n"
                             "99 #in data\n 3\n7   8\n";
    /* round(v * 255 / 100): 2.55 -> 3, 127.5 -> 128, 252.45 -> 252,
     * 7.65 -> 8, 17.85 -> 18, 20.4 -> 20 */
    static const uint8_t p2_want[8] = {0, 3, 128, 255, 252, 8, 18, 20};
    pe_image im = {0};
    pe_decode_info info;
    CHECK_OK(pe_decode_pnm((const uint8_t *)p1, sizeof p1 - 1, NULL, &im, &info));
    CHECK(im.w == 5 && im.h == 3 && im.c == 1);
    if (im.px && im.w * im.h == 15) CHECK(memcmp(im.px, p1_want, 15) == 0);
    pe_image_free(&im);
    CHECK_OK(pe_decode_pnm((const uint8_t *)p2, sizeof p2 - 1, NULL, &im, &info));
    CHECK(im.w == 4 && im.h == 2 && im.c == 1);
    if (im.px && im.w * im.h == 8) CHECK(memcmp(im.px, p2_want, 8) == 0);
    CHECK(info.bits == 8);
    pe_image_free(&im);

    /* 16-bit raw, big-endian, maxval 1000: round(v * 255 / 1000). */
    static const uint8_t p5[] = "P5 3 1 1000\n\x00\x01\x01\xf4\x03\xe8";
    CHECK_OK(pe_decode_pnm(p5, sizeof p5 - 1, NULL, &im, &info));
    static const uint8_t p5_want[3] = {0, 128, 255}; /* 0.255 -> 0, 127.5 -> 128 */
    if (im.px && im.w == 3) CHECK(memcmp(im.px, p5_want, 3) == 0);
    CHECK(info.bits == 16);
    pe_image_free(&im);

    /* maxval 1 raw PGM: 0 and 1 become 0 and 255. */
    static const uint8_t p5b[] = "P5\n2 1\n1\n\x01\x00";
    CHECK_OK(pe_decode_pnm(p5b, sizeof p5b - 1, NULL, &im, NULL));
    if (im.px && im.w == 2) CHECK(im.px[0] == 255 && im.px[1] == 0);
    pe_image_free(&im);

    /* A raster whose first byte is whitespace-valued is not skipped. */
    static const uint8_t p5c[] = "P5\n2 1\n255\n\x20\x0a";
    CHECK_OK(pe_decode_pnm(p5c, sizeof p5c - 1, NULL, &im, NULL));
    if (im.px && im.w == 2) CHECK(im.px[0] == 0x20 && im.px[1] == 0x0a);
    pe_image_free(&im);

    /* Trailing data (a second image) is ignored. */
    static const uint8_t two[] = "P5\n1 1\n255\n\x7fP5\n1 1\n255\n\x01";
    CHECK_OK(pe_decode(two, sizeof two - 1, NULL, &im, NULL));
    if (im.px) CHECK(im.px[0] == 0x7f);
    pe_image_free(&im);
}

#define LIT(s) s, sizeof(s) - 1

static void test_pnm_bad(void) {
    static const struct {
        const char *data;
        size_t len;
        int want;
        const char *msg;
    } cases[] = {
        {LIT("P6\n4 4\n255\n\1\2\3"), PE_EFORMAT, "truncated"},
        {LIT("P5\n4 4\n255\n"), PE_EFORMAT, "truncated"},
        {LIT("P5\n4 4\n255"), PE_EFORMAT, "truncated"},
        {LIT("P5\n4 4\n"), PE_EFORMAT, "truncated"},
        {LIT("P2\n3 1\n255\n1 2"), PE_EFORMAT, "truncated"},
        {LIT("P2\n2 2\n255\n1 2 3\n"), PE_EFORMAT, "truncated"},
        {LIT("P1\n3 1\n1 0"), PE_EFORMAT, "truncated"},
        {LIT("P5\n100000 100000\n255\n\0"), PE_ETOOBIG, "pixel limit"},
        {LIT("P4\n2000000000 2000000000\n\0"), PE_ETOOBIG, "pixel limit"},
        {LIT("P5\n99999999999999999999 1\n255\n\0"), PE_EFORMAT, "too large"},
        {LIT("P5\n4294967297 1\n255\n\0"), PE_EFORMAT, "too large"},
        {LIT("P5\n1 1\n65536\n\0\0"), PE_EFORMAT, "too large"},
        {LIT("P5\n1 1\n0\n\0"), PE_EFORMAT, "maxval"},
        {LIT("P5\n0 1\n255\n"), PE_EFORMAT, "empty"},
        {LIT("P5\n-1 1\n255\n\0"), PE_EFORMAT, "not a number"},
        {LIT("P5\n1x 1\n255\n\0"), PE_EFORMAT, "not a number"},
        {LIT("P5\n2 1\n100\n\x10\x65"), PE_EFORMAT, "exceeds maxval"},
        {LIT("P2\n2 1\n100\n10 101\n"), PE_EFORMAT, "exceeds maxval"},
        {LIT("P5\n1 1\n65535\n\xff\xff"), 0, NULL},
        {LIT("P1\n2 1\n1 2\n"), PE_EFORMAT, "bad PBM bit"},
        {LIT("P5\n1 1\n255\x01"), PE_EFORMAT, "maxval"},
        {LIT("P7\nWIDTH 1\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n\0"),
         PE_EUNSUPPORTED, "PAM"},
        {LIT("P9\n1 1\n255\n\0"), PE_EFORMAT, "magic"},
        {LIT("Q5\n1 1\n255\n\0"), PE_EFORMAT, "magic"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pe_image im = {0};
        pe_errclear();
        int rc = pe_decode_pnm((const uint8_t *)cases[i].data, cases[i].len, NULL, &im, NULL);
        if (rc != cases[i].want ||
            (cases[i].msg && !strstr(pe_errmsg(), cases[i].msg)))
            fprintf(stderr, "  case %zu: rc %d (%s), want %d with \"%s\"\n", i, rc,
                    pe_errmsg(), cases[i].want, cases[i].msg ? cases[i].msg : "");
        CHECK(rc == cases[i].want);
        if (cases[i].msg) CHECK(strstr(pe_errmsg(), cases[i].msg) != NULL);
        if (rc) CHECK(im.px == NULL);
        pe_image_free(&im);
    }
    /* Through pe_decode: the same codes (and P7 is sniffed as PNM). */
    decode_expect((const uint8_t *)"P5\n100000 100000\n255\n\0", 22, NULL, PE_ETOOBIG,
                  "pnm huge");
    decode_expect((const uint8_t *)"P7\nWIDTH 1\n", 11, NULL, PE_EUNSUPPORTED, "pam");
    /* A caller's smaller limit. */
    pe_decode_opts small = {.max_pixels = 15};
    decode_expect((const uint8_t *)"P5\n4 4\n255\n0123456789abcdef", 27, &small, PE_ETOOBIG,
                  "pnm over caller limit");
}

static void test_pnm_encode_roundtrip(void) {
    for (uint32_t c = 1; c <= 3; c += 2) {
        pe_image im = {0}, back = {0};
        CHECK_OK(pe_image_alloc(&im, 7, 5, c));
        if (!im.px) return;
        fill_random(im.px, pe_image_size(&im));
        uint8_t *enc = NULL;
        size_t n = 0;
        CHECK_OK(pe_encode_pnm(&im, &enc, &n));
        const char *head = c == 1 ? "P5\n7 5\n255\n" : "P6\n7 5\n255\n";
        CHECK(enc && n == strlen(head) + pe_image_size(&im));
        if (enc) CHECK(memcmp(enc, head, strlen(head)) == 0);
        pe_decode_info info;
        CHECK_OK(pe_decode_pnm(enc, n, NULL, &back, &info));
        CHECK(back.w == 7 && back.h == 5 && back.c == c);
        if (back.px && back.c == c)
            CHECK(memcmp(back.px, im.px, pe_image_size(&im)) == 0);
        pe_image_free(&back);
        CHECK_OK(pe_decode(enc, n, NULL, &back, &info));
        CHECK(info.format == PE_FORMAT_PNM);
        pe_image_free(&back);
        free(enc);
        pe_image_free(&im);
    }
    /* Images it cannot encode. */
    pe_image bad = {.w = 2, .h = 2, .c = 2, .px = (uint8_t[8]){0}};
    uint8_t *enc = (uint8_t *)&bad;
    size_t n = 99;
    CHECK_RC(pe_encode_pnm(&bad, &enc, &n), PE_EFORMAT);
    CHECK(enc == NULL && n == 0);
    pe_image empty = {0};
    CHECK_RC(pe_encode_pnm(&empty, &enc, &n), PE_EFORMAT);
}

/* ---- BMP -------------------------------------------------------------- */

/* A minimal valid 24-bit 2x2 BMP (bottom-up), built by hand. */
static void bmp_2x2(bytes *b) {
    bmp_spec s = {2, 2, 24, 0, 40, {0}, 0, 0};
    build_bmp(b, &s);
}

static int bmp_rc(const bytes *b) {
    pe_image im = {0};
    int rc = pe_decode_bmp(b->p, b->n, NULL, &im, NULL);
    if (rc) CHECK(im.px == NULL);
    pe_image_free(&im);
    return rc;
}

static void test_bmp_values(void) {
    /* Top-down vs bottom-up of the same pixels, and row padding. */
    bytes b = {0};
    bmp_2x2(&b);
    /* rows: stride 8; file row 0 is the bottom image row */
    static const uint8_t rows[16] = {1, 2, 3, 4, 5, 6, 0xee, 0xee,
                                     7, 8, 9, 10, 11, 12, 0xee, 0xee};
    memcpy(b.p + 54, rows, 16);
    pe_image im = {0};
    CHECK_OK(pe_decode_bmp(b.p, b.n, NULL, &im, NULL));
    static const uint8_t want_up[12] = {9, 8, 7, 12, 11, 10, 3, 2, 1, 6, 5, 4};
    if (im.px) CHECK(im.c == 3 && memcmp(im.px, want_up, 12) == 0);
    pe_image_free(&im);
    set32(&b, 22, (uint32_t)-2);
    CHECK_OK(pe_decode_bmp(b.p, b.n, NULL, &im, NULL));
    static const uint8_t want_down[12] = {3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10};
    if (im.px) CHECK(memcmp(im.px, want_down, 12) == 0);
    pe_image_free(&im);
    /* The last row's padding may be missing. */
    b.n -= 2;
    CHECK_OK(pe_decode_bmp(b.p, b.n, NULL, &im, NULL));
    pe_image_free(&im);
    free(b.p);
}

static void test_bmp_bad(void) {
    bytes b = {0};

    /* 100000 x 100000: over the pixel limit before anything is read. */
    bmp_2x2(&b);
    set32(&b, 18, 100000);
    set32(&b, 22, 100000);
    CHECK_RC(bmp_rc(&b), PE_ETOOBIG);
    set32(&b, 22, (uint32_t)-100000);
    CHECK_RC(bmp_rc(&b), PE_ETOOBIG);
    decode_expect(b.p, b.n, NULL, PE_ETOOBIG, "bmp huge via pe_decode");

    /* Widest width with a limit that lets it through: the row size is
     * computed in 64 bits and found larger than the file. */
    bmp_2x2(&b);
    set32(&b, 18, 0x7fffffff);
    set32(&b, 22, 1);
    pe_decode_opts big = {.max_pixels = UINT64_MAX};
    pe_image im = {0};
    CHECK_RC(pe_decode_bmp(b.p, b.n, &big, &im, NULL), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "truncated") != NULL);
    set32(&b, 22, 0x7fffffff);
    CHECK_RC(pe_decode_bmp(b.p, b.n, &big, &im, NULL), PE_EFORMAT);
    set32(&b, 22, 0x80000000u); /* INT32_MIN rows */
    CHECK_RC(pe_decode_bmp(b.p, b.n, &big, &im, NULL), PE_EFORMAT);

    /* Negative, zero and absurd dimensions. */
    bmp_2x2(&b);
    set32(&b, 18, (uint32_t)-2);
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);
    set32(&b, 18, 0);
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);
    bmp_2x2(&b);
    set32(&b, 22, 0);
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);

    /* Pixel offsets past the end, wrapping, and inside the header. */
    bmp_2x2(&b);
    set32(&b, 10, 0xfffffff0u);
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);
    set32(&b, 10, (uint32_t)b.n);
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);
    set32(&b, 10, 20);
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "header") != NULL);

    /* Header sizes: absurd, and larger than the file. */
    bmp_2x2(&b);
    set32(&b, 14, 0xffffffffu);
    CHECK_RC(bmp_rc(&b), PE_EUNSUPPORTED);
    set32(&b, 14, 124);
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);

    /* Truncations at every length of a small file. */
    bmp_spec ps = {5, 3, 8, 0, 40, {0}, 256, 0};
    build_bmp(&b, &ps);
    for (size_t cut = 0; cut < b.n - 3; cut++) {
        pe_image t = {0};
        int rc = pe_decode_bmp(b.p, cut, NULL, &t, NULL);
        CHECK(rc == PE_EFORMAT);
        CHECK(t.px == NULL);
        if (rc == PE_EFORMAT && cut > 14 + 40 + 1024)
            CHECK(strstr(pe_errmsg(), "truncated") != NULL);
    }

    /* RLE and other compressions are refused clearly. */
    ps = (bmp_spec){4, 4, 8, 1, 40, {0}, 256, 0};
    build_bmp(&b, &ps);
    CHECK_RC(bmp_rc(&b), PE_EUNSUPPORTED);
    CHECK(strstr(pe_errmsg(), "RLE8") != NULL);
    decode_expect(b.p, b.n, NULL, PE_EUNSUPPORTED, "rle8 via pe_decode");
    ps = (bmp_spec){4, 4, 4, 2, 40, {0}, 16, 0};
    build_bmp(&b, &ps);
    CHECK_RC(bmp_rc(&b), PE_EUNSUPPORTED);
    CHECK(strstr(pe_errmsg(), "RLE4") != NULL);
    set32(&b, 30, 4);
    CHECK_RC(bmp_rc(&b), PE_EUNSUPPORTED);
    set32(&b, 30, 77);
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);

    /* Palette index past the colours the file has. */
    ps = (bmp_spec){4, 2, 8, 0, 40, {0}, 2, 0};
    build_bmp(&b, &ps);
    b.p[b.n - 8] = 5; /* first pixel of the bottom row (stored first) */
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "palette index") != NULL);

    /* Bit depths and masks that make no sense. */
    bmp_2x2(&b);
    b.p[28] = 7;
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);
    bmp_spec bf = {2, 2, 32, 3, 40, {0xff0000, 0xf0f0, 0xff, 0}, 0, 0};
    build_bmp(&b, &bf);
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "contiguous") != NULL);
    bf.bpp = 24;
    bf.masks[1] = 0xff00;
    build_bmp(&b, &bf);
    CHECK_RC(bmp_rc(&b), PE_EFORMAT);

    /* Random bytes behind a plausible header never crash. */
    for (int i = 0; i < 200; i++) {
        bmp_2x2(&b);
        size_t n = 14 + 40 + rnd() % 300;
        while (b.n < n) put8(&b, (uint8_t)rnd());
        for (size_t k = 18; k < 54; k++)
            if (rnd() % 4 == 0) b.p[k] = (uint8_t)rnd();
        pe_decode_opts o = {.max_pixels = 1u << 16};
        pe_image t = {0};
        int rc = pe_decode_bmp(b.p, b.n, &o, &t, NULL);
        CHECK(rc == 0 || rc == PE_EFORMAT || rc == PE_EUNSUPPORTED || rc == PE_ETOOBIG);
        CHECK(rc == 0 ? t.px != NULL : t.px == NULL);
        pe_image_free(&t);
    }
    free(b.p);
}

/* ---- TIFF ------------------------------------------------------------- */

static void test_tiff_bad(void) {
    if (!fixtures_ok) return;
    size_t len = 0;
    uint8_t *good = read_file("fx_tiff_rgb_lzw.tif", &len);
    CHECK(good != NULL);
    if (!good) return;
    uint8_t *copy = malloc(len);
    PE_ASSERT(copy != NULL);

    enum { NCASE = 10 };
    int rcs[NCASE];
    int empty[NCASE];
    char msgs[NCASE][160];
    int k = 0;
#define TRY(buf, n, o)                                                      \
    do {                                                                    \
        pe_image t_ = {0};                                                  \
        rcs[k] = pe_decode((buf), (n), (o), &t_, NULL);                     \
        empty[k] = t_.px == NULL;                                           \
        snprintf(msgs[k], sizeof msgs[k], "%s", pe_errmsg());               \
        pe_image_free(&t_);                                                 \
        k++;                                                                \
    } while (0)

    quiet_begin();
    TRY(good, 4, NULL);             /* 0: magic only */
    TRY(good, 8, NULL);             /* 1: header, IFD missing */
    TRY(good, len / 2, NULL);       /* 2: half */
    TRY(good, len - 16, NULL);      /* 3: tail cut */
    memcpy(copy, good, len);
    copy[4] = 0xff, copy[5] = 0xff, copy[6] = 0xff, copy[7] = 0x7f; /* IFD past the end */
    TRY(copy, len, NULL);           /* 4 */
    memcpy(copy, good, 8);
    fill_random(copy + 8, len - 8); /* garbage after a valid header */
    copy[4] = 8, copy[5] = copy[6] = copy[7] = 0;
    TRY(copy, len, NULL);           /* 5 */
    pe_decode_opts small = {.max_pixels = 100};
    TRY(good, len, &small);         /* 6: 37x23 over a 100-pixel limit */
    pe_decode_opts late = {.deadline = pe_now() - 1};
    TRY(good, len, &late);          /* 7: deadline already passed */
    long printed = quiet_end();

    CHECK(printed == 0);
    const int want[] = {PE_EFORMAT, PE_EFORMAT, PE_EFORMAT, PE_EFORMAT, PE_EFORMAT,
                        PE_EFORMAT, PE_ETOOBIG, PE_ETIMEOUT};
    for (int i = 0; i < k; i++) {
        if (rcs[i] != want[i])
            fprintf(stderr, "  tiff case %d: rc %d (%s), want %d\n", i, rcs[i], msgs[i],
                    want[i]);
        CHECK(rcs[i] == want[i]);
        CHECK(empty[i]);
        CHECK(strncmp(msgs[i], "tiff: ", 6) == 0);
    }
    /* libtiff's own reason reaches the message. */
    CHECK(strlen(msgs[4]) > strlen("tiff: cannot open"));
    free(copy);
    free(good);
#undef TRY
}

/* Decodes from several threads at once: libtiff's handlers are per open,
 * so each thread's failures carry its own reason (TSan build: no races). */
typedef struct tiff_thread_arg {
    const uint8_t *good, *bad;
    size_t good_len, bad_len;
    int failures;
} tiff_thread_arg;

static void *tiff_thread(void *p) {
    tiff_thread_arg *a = p;
    for (int i = 0; i < 40; i++) {
        pe_image im = {0};
        int rc = pe_decode(a->good, a->good_len, NULL, &im, NULL);
        if (rc != 0 || im.w != 37) a->failures++;
        pe_image_free(&im);
        rc = pe_decode(a->bad, a->bad_len, NULL, &im, NULL);
        if (rc != PE_EFORMAT || im.px || !strstr(pe_errmsg(), "directory")) a->failures++;
    }
    return NULL;
}

static void test_tiff_threads(void) {
    if (!fixtures_ok) return;
    size_t len = 0;
    uint8_t *good = read_file("fx_tiff_rgb_deflate.tif", &len);
    CHECK(good != NULL);
    if (!good) return;
    enum { NT = 4 };
    pthread_t th[NT];
    tiff_thread_arg args[NT];
    int started[NT] = {0};
    for (int i = 0; i < NT; i++) {
        args[i] = (tiff_thread_arg){good, good, len, 20 + (size_t)i, 0};
        started[i] = pthread_create(&th[i], NULL, tiff_thread, &args[i]) == 0;
        CHECK(started[i]);
    }
    for (int i = 0; i < NT; i++) {
        if (!started[i]) continue;
        pthread_join(th[i], NULL);
        CHECK(args[i].failures == 0);
    }
    free(good);
}

/* Random corruption of each TIFF, BMP and PNM fixture: any result but a
 * crash, a leak or a half-filled output (ASan and LSan watch this). */
static void test_mutations(void) {
    if (!fixtures_ok) return;
    static const char *const files[] = {
        "fx_tiff_rgb_lzw.tif",   "fx_tiff_rgb_deflate.tif", "fx_tiff_rgb_jpeg.tif",
        "fx_tiff_1bit_g4.tif",   "fx_tiff_palette.tif",     "fx_c_tiff_tiled_lzw_pred.tif",
        "fx_c_tiff_separate_rgb.tif", "fx_c_tiff_bigtiff.tif", "fx_c_tiff_jpeg_gray.tif",
        "fx_c_tiff_ycbcr_jpeg_tiled.tif", "fx_tiff_cmyk.tif", "fx_c_tiff_rgb16_be.tif",
        "fx_bmp_p8.bmp",         "fx_c_bmp_565.bmp",        "fx_pnm_p6.ppm",
        "fx_c_pnm_p2.pgm",
    };
    int bad_rc = 0, half = 0;
    quiet_begin();
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t len = 0;
        uint8_t *good = read_file(files[f], &len);
        if (!good) {
            bad_rc++;
            continue;
        }
        uint8_t *m = malloc(len);
        PE_ASSERT(m != NULL);
        for (int it = 0; it < 150; it++) {
            memcpy(m, good, len);
            int flips = 1 + (int)(rnd() % 8);
            for (int j = 0; j < flips; j++) {
                size_t at = rnd() % len;
                /* Most damage in the headers, where the parsing is. */
                if (rnd() % 2 && len > 64) at %= 64;
                m[at] = (uint8_t)rnd();
            }
            size_t n = rnd() % 4 == 0 ? rnd() % len : len;
            pe_decode_opts o = {.max_pixels = 1u << 16};
            pe_image t = {0};
            int rc = pe_decode(m, n, &o, &t, NULL);
            if (!(rc == 0 || rc == PE_EFORMAT || rc == PE_EUNSUPPORTED ||
                  rc == PE_ETOOBIG))
                bad_rc++;
            if (rc == 0 ? t.px == NULL : t.px != NULL) half++;
            pe_image_free(&t);
        }
        free(m);
        free(good);
    }
    long printed = quiet_end();
    CHECK(bad_rc == 0);
    CHECK(half == 0);
    /* libtiff's handlers are per open: nothing reaches stderr. */
    CHECK(printed == 0);
}

static void test_deadline_each_format(void) {
    if (!fixtures_ok) return;
    static const char *const files[] = {"fx_tiff_rgb_none.tif", "fx_c_tiff_bigtiff.tif",
                                        "fx_pnm_p6.ppm", "fx_c_pnm_p3.ppm",
                                        "fx_bmp_rgb24.bmp"};
    pe_decode_opts late = {.deadline = pe_now() - 1};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        size_t len = 0;
        uint8_t *buf = read_file(files[i], &len);
        CHECK(buf != NULL);
        if (buf) decode_expect(buf, len, &late, PE_ETIMEOUT, files[i]);
        free(buf);
    }
}

int main(void) {
    make_fixtures();
    RUN(test_sniff);
    RUN(test_format_names);
    RUN(test_against_pillow);
    RUN(test_info_fields);
    RUN(test_dispatch);
    RUN(test_unrecognised);
    RUN(test_pnm_plain_values);
    RUN(test_pnm_bad);
    RUN(test_pnm_encode_roundtrip);
    RUN(test_bmp_values);
    RUN(test_bmp_bad);
    RUN(test_tiff_bad);
    RUN(test_tiff_threads);
    RUN(test_mutations);
    RUN(test_deadline_each_format);
    if (getenv("PE_KEEP_FIXTURES"))
        fprintf(stderr, "fixtures kept in %s\n", tmpdir);
    else
        remove_tmpdir();
    return CHECK_DONE();
}
