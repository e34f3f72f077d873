/*
 * test_datasets.c - unit tests of the dataset container readers
 * (formats/gz.c, idx.c, cifar.c, stl10.c, tar.c) on tiny files made here:
 * in memory, as files under a mkdtemp folder in /tmp (removed at the end),
 * and as tar archives written by the system's GNU tar.
 *
 * Not for: image decoding (the codec tests) or speed. The real
 * Fashion-MNIST test file is read when present, skipped with a note when
 * not.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "dataset.h"
#include "pe.h"

#include "testfs.h"

/* gzip (one member) of data, with zlib's deflate. */
static uint8_t *gz_mem(const void *data, size_t len, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&zs, len) + 64;
    uint8_t *out = malloc(cap);
    if (!out) {
        deflateEnd(&zs);
        return NULL;
    }
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int zrc = deflate(&zs, Z_FINISH);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    if (zrc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

static int write_gz_file(const char *path, const void *data, size_t len) {
    gzFile f = gzopen(path, "wb");
    if (!f) return -1;
    int w = len ? gzwrite(f, data, (unsigned)len) : 0;
    int rc = gzclose(f);
    return (size_t)w == len && rc == Z_OK ? 0 : -1;
}

static int contains(const char *s, const char *sub) {
    return strstr(s, sub) != NULL;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- sample collection ---- */

#define MAX_KEEP 8

typedef struct collect {
    int n;
    pe_image img[MAX_KEEP];
    int32_t label[MAX_KEEP];
    uint64_t index[MAX_KEEP];
    int64_t stop_at; /* index at which to return stop_rc; -1 never */
    int stop_rc;
    int steal; /* take img->px instead of copying */
} collect;

static void collect_init(collect *c) {
    memset(c, 0, sizeof *c);
    c->stop_at = -1;
}

/* Frees what was kept and starts over. */
static void collect_free(collect *c) {
    for (int i = 0; i < MAX_KEEP; i++) pe_image_free(&c->img[i]);
    collect_init(c);
}

static int collect_fn(void *ctx, uint64_t index, pe_image *img, int32_t label) {
    collect *c = ctx;
    if (c->n < MAX_KEEP) {
        pe_image *k = &c->img[c->n];
        *k = *img;
        if (c->steal) {
            img->px = NULL;
        } else {
            k->px = malloc(pe_image_size(img));
            if (k->px) memcpy(k->px, img->px, pe_image_size(img));
        }
        c->label[c->n] = label;
        c->index[c->n] = index;
    }
    c->n++;
    if (c->stop_at >= 0 && (int64_t)index == c->stop_at) return c->stop_rc;
    return 0;
}

/* ---- IDX builders ---- */

/* 3 images of 2 rows x 3 columns: pixel k of image i is 10*i + k. */
#define IDX_N 3
#define IDX_ROWS 2
#define IDX_COLS 3
static uint8_t g_idx_img[16 + IDX_N * IDX_ROWS * IDX_COLS];
static uint8_t g_idx_lbl[8 + IDX_N];

static void make_idx(void) {
    put_be32(g_idx_img, 0x00000803);
    put_be32(g_idx_img + 4, IDX_N);
    put_be32(g_idx_img + 8, IDX_ROWS);
    put_be32(g_idx_img + 12, IDX_COLS);
    for (int i = 0; i < IDX_N; i++)
        for (int k = 0; k < IDX_ROWS * IDX_COLS; k++)
            g_idx_img[16 + i * IDX_ROWS * IDX_COLS + k] = (uint8_t)(10 * i + k);
    put_be32(g_idx_lbl, 0x00000801);
    put_be32(g_idx_lbl + 4, IDX_N);
    g_idx_lbl[8] = 7;
    g_idx_lbl[9] = 0;
    g_idx_lbl[10] = 255; /* any byte is a label id */
}

static void check_idx_samples(const collect *c, int with_labels) {
    static const int32_t want[IDX_N] = {7, 0, 255};
    CHECK(c->n == IDX_N);
    for (int i = 0; i < IDX_N && i < c->n; i++) {
        const pe_image *im = &c->img[i];
        CHECK(c->index[i] == (uint64_t)i);
        CHECK(im->w == IDX_COLS && im->h == IDX_ROWS && im->c == 1);
        CHECK(c->label[i] == (with_labels ? want[i] : PE_LABEL_NONE));
        int ok = im->px != NULL;
        for (int k = 0; ok && k < IDX_ROWS * IDX_COLS; k++)
            ok = im->px[k] == 10 * i + k;
        CHECK(ok);
    }
}

/* ---- gzip ---- */

static long max_rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* 200 MiB of zeros as gzip, written in a stream: ~200 KB on disk. */
static int write_bomb(const char *path, size_t total) {
    static uint8_t zeros[1 << 20], out[1 << 16];
    z_stream zs;
    FILE *f = fopen(path, "wb");
    int ok = 1;
    if (!f) return -1;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        fclose(f);
        return -1;
    }
    for (size_t done = 0; ok;) {
        size_t n = total - done < sizeof zeros ? total - done : sizeof zeros;
        int flush = done + n == total ? Z_FINISH : Z_NO_FLUSH;
        zs.next_in = zeros;
        zs.avail_in = (uInt)n;
        done += n;
        int zrc;
        do {
            zs.next_out = out;
            zs.avail_out = sizeof out;
            zrc = deflate(&zs, flush);
            size_t have = sizeof out - zs.avail_out;
            if (have && fwrite(out, 1, have, f) != have) ok = 0;
        } while (ok && zs.avail_out == 0);
        if (flush == Z_FINISH) {
            if (zrc != Z_STREAM_END) ok = 0;
            break;
        }
    }
    deflateEnd(&zs);
    if (fclose(f) != 0) ok = 0;
    return ok ? 0 : -1;
}

static void test_gzip_bomb(void) {
    const char *path = P("bomb.gz");
    size_t blen = 0, len = 0;
    uint8_t *out = NULL, *bomb;
    long rss0 = max_rss_kib();

    CHECK(write_bomb(path, (size_t)200 << 20) == 0);
    CHECK_RC(pe_read_file_maybe_gz(path, (size_t)10 << 20, &out, &len),
             PE_ETOOBIG);
    CHECK(out == NULL);
    CHECK(contains(pe_errmsg(), path));
    bomb = slurp(path, &blen);
    CHECK(bomb != NULL && blen < ((size_t)1 << 20));
    if (bomb) {
        CHECK_RC(pe_gunzip_mem(bomb, blen, (size_t)10 << 20, &out, &len),
                 PE_ETOOBIG);
        CHECK(out == NULL);
    }
    free(bomb);
    /* The peak: at most the 10 MiB limit plus slack, never the 200 MiB the
     * bomb inflates to (the limit buffer is touched, so RSS would show it). */
    CHECK(max_rss_kib() - rss0 < 64 * 1024);
}

static void test_gunzip_mem(void) {
    uint8_t *out = NULL, *gz, *gz2, *cat;
    size_t len = 0, glen = 0, glen2 = 0;
    static uint8_t data[100000];

    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 13);

    /* Not gzip: copied, bounded. */
    CHECK_OK(pe_gunzip_mem((const uint8_t *)"hello", 5, 0, &out, &len));
    CHECK(len == 5 && out && memcmp(out, "hello", 5) == 0);
    free(out);
    out = NULL;
    CHECK_RC(pe_gunzip_mem((const uint8_t *)"hello", 5, 4, &out, &len),
             PE_ETOOBIG);
    CHECK_OK(pe_gunzip_mem(NULL, 0, 0, &out, &len));
    CHECK(len == 0 && out != NULL);
    free(out);
    out = NULL;

    gz = gz_mem(data, sizeof data, &glen);
    CHECK(gz != NULL);
    if (!gz) return;
    CHECK_OK(pe_gunzip_mem(gz, glen, 0, &out, &len));
    CHECK(len == sizeof data && out && memcmp(out, data, len) == 0);
    free(out);
    out = NULL;
    /* The limit is inclusive. */
    CHECK_OK(pe_gunzip_mem(gz, glen, sizeof data, &out, &len));
    CHECK(len == sizeof data);
    free(out);
    out = NULL;
    CHECK_RC(pe_gunzip_mem(gz, glen, sizeof data - 1, &out, &len), PE_ETOOBIG);

    /* Truncated anywhere past the magic. */
    size_t cuts[] = {glen - 1, glen - 4, glen - 8, glen / 2, 10, 3};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK_RC(pe_gunzip_mem(gz, cuts[i], 0, &out, &len), PE_EFORMAT);
        CHECK(contains(pe_errmsg(), "truncated gzip data"));
    }
    /* A wrong CRC in the trailer. */
    gz[glen - 6] ^= 0x55;
    CHECK_RC(pe_gunzip_mem(gz, glen, 0, &out, &len), PE_EFORMAT);
    gz[glen - 6] ^= 0x55;

    /* Concatenated members join; zero padding after is fine, other bytes
     * are not. */
    gz2 = gz_mem("tail", 4, &glen2);
    cat = malloc(glen + glen2 + 64);
    CHECK(gz2 && cat);
    if (gz2 && cat) {
        memcpy(cat, gz, glen);
        memcpy(cat + glen, gz2, glen2);
        CHECK_OK(pe_gunzip_mem(cat, glen + glen2, 0, &out, &len));
        CHECK(len == sizeof data + 4 && out && memcmp(out, data, sizeof data) == 0 &&
              memcmp(out + sizeof data, "tail", 4) == 0);
        free(out);
        out = NULL;
        CHECK_RC(pe_gunzip_mem(cat, glen + glen2, sizeof data + 3, &out, &len),
                 PE_ETOOBIG);
        memset(cat + glen + glen2, 0, 64);
        CHECK_OK(pe_gunzip_mem(cat, glen + glen2 + 64, 0, &out, &len));
        CHECK(len == sizeof data + 4);
        free(out);
        out = NULL;
        cat[glen + glen2 + 63] = 'x';
        CHECK_RC(pe_gunzip_mem(cat, glen + glen2 + 64, 0, &out, &len),
                 PE_EFORMAT);
        CHECK(contains(pe_errmsg(), "garbage"));
        memcpy(cat + glen + glen2, "junk", 4);
        CHECK_RC(pe_gunzip_mem(cat, glen + glen2 + 4, 0, &out, &len),
                 PE_EFORMAT);
    }
    free(cat);
    free(gz2);
    free(gz);

    /* An empty member inflates to nothing. */
    gz = gz_mem("", 0, &glen);
    CHECK(gz != NULL);
    if (gz) {
        CHECK_OK(pe_gunzip_mem(gz, glen, 0, &out, &len));
        CHECK(len == 0 && out != NULL);
        free(out);
        out = NULL;
    }
    free(gz);
}

static void test_read_file(void) {
    uint8_t *out = NULL, *big;
    size_t len = 0, big_len = (size_t)3 << 20;

    CHECK_RC(pe_read_file_maybe_gz(P("missing"), 0, &out, &len), ENOENT);
    CHECK(contains(pe_errmsg(), "missing"));
    CHECK_RC(pe_read_file_maybe_gz(g_dir, 0, &out, &len), EISDIR);

    /* Plain: the limit is inclusive and is checked before reading. */
    big = malloc(big_len);
    CHECK(big != NULL);
    if (!big) return;
    for (size_t i = 0; i < big_len; i++) big[i] = (uint8_t)(i * 7 + (i >> 9));
    CHECK(write_file(P("plain.bin"), big, big_len) == 0);
    CHECK_OK(pe_read_file_maybe_gz(P("plain.bin"), 0, &out, &len));
    CHECK(len == big_len && out && memcmp(out, big, len) == 0);
    free(out);
    out = NULL;
    CHECK_OK(pe_read_file_maybe_gz(P("plain.bin"), big_len, &out, &len));
    free(out);
    out = NULL;
    CHECK_RC(pe_read_file_maybe_gz(P("plain.bin"), big_len - 1, &out, &len),
             PE_ETOOBIG);
    CHECK(contains(pe_errmsg(), "plain.bin"));
    CHECK(write_file(P("empty.bin"), "", 0) == 0);
    CHECK_OK(pe_read_file_maybe_gz(P("empty.bin"), 0, &out, &len));
    CHECK(len == 0 && out != NULL);
    free(out);
    out = NULL;

    /* Gzipped, bigger than one read chunk compressed and inflated. */
    CHECK(write_gz_file(P("big.gz"), big, big_len) == 0);
    CHECK_OK(pe_read_file_maybe_gz(P("big.gz"), 0, &out, &len));
    CHECK(len == big_len && out && memcmp(out, big, len) == 0);
    free(out);
    out = NULL;
    CHECK_RC(pe_read_file_maybe_gz(P("big.gz"), big_len - 1, &out, &len),
             PE_ETOOBIG);

    /* Truncated on disk. */
    size_t glen = 0;
    uint8_t *gz = slurp(P("big.gz"), &glen);
    CHECK(gz != NULL && glen > 100);
    if (gz) {
        CHECK(write_file(P("cut.gz"), gz, glen - 100) == 0);
        CHECK_RC(pe_read_file_maybe_gz(P("cut.gz"), 0, &out, &len), PE_EFORMAT);
        CHECK(contains(pe_errmsg(), "truncated gzip data"));
        CHECK(contains(pe_errmsg(), "cut.gz"));
    }
    free(gz);
    free(big);
}

/* formats/gz.c inflates one whole member with libdeflate, sized by the
 * trailer's ISIZE, and hands everything else to zlib: these cases reach
 * both paths and each hand-over, and must give zlib's answers. */
static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void test_gunzip_paths(void) {
    uint8_t *out = NULL, *gz, *hc;
    size_t len = 0, glen = 0;
    static uint8_t data[100000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 13);
    gz = gz_mem(data, sizeof data, &glen);
    CHECK(gz != NULL && glen > 18);
    if (!gz) return;

    /* A trailer whose ISIZE lies, either way or beyond the limit: zlib's
     * length check rejects it. */
    const uint32_t lies[] = {sizeof data - 1, sizeof data + 1, 0,
                             0xFFFFFFF0u};
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        put_le32(gz + glen - 4, lies[i]);
        CHECK_RC(pe_gunzip_mem(gz, glen, 0, &out, &len), PE_EFORMAT);
        CHECK(out == NULL);
    }
    put_le32(gz + glen - 4, sizeof data);
    CHECK_OK(pe_gunzip_mem(gz, glen, 0, &out, &len));
    CHECK(len == sizeof data && out && memcmp(out, data, len) == 0);
    free(out);
    out = NULL;

    /* A header CRC (FHCRC), which libdeflate would skip unchecked: right,
     * then wrong. */
    hc = malloc(glen + 2);
    CHECK(hc != NULL);
    if (hc) {
        memcpy(hc, gz, 10);
        hc[3] |= 0x02;
        uint32_t crc = (uint32_t)crc32(0L, hc, 10);
        hc[10] = (uint8_t)crc;
        hc[11] = (uint8_t)(crc >> 8);
        memcpy(hc + 12, gz + 10, glen - 10);
        CHECK_OK(pe_gunzip_mem(hc, glen + 2, 0, &out, &len));
        CHECK(len == sizeof data && out && memcmp(out, data, len) == 0);
        free(out);
        out = NULL;
        hc[10] ^= 1;
        CHECK_RC(pe_gunzip_mem(hc, glen + 2, 0, &out, &len), PE_EFORMAT);
        CHECK(contains(pe_errmsg(), "header crc"));
    }
    free(hc);
    free(gz);

    /* A bomb whose ISIZE claims a few bytes: the small buffer overflows,
     * zlib takes over and stops at the limit. */
    const char *path = P("liar.gz");
    long rss0 = max_rss_kib();
    CHECK(write_bomb(path, (size_t)100 << 20) == 0);
    gz = slurp(path, &glen);
    CHECK(gz != NULL && glen > 18);
    if (gz) {
        put_le32(gz + glen - 4, 100);
        CHECK_RC(pe_gunzip_mem(gz, glen, (size_t)10 << 20, &out, &len),
                 PE_ETOOBIG);
        CHECK(write_file(path, gz, glen) == 0);
        CHECK_RC(pe_read_file_maybe_gz(path, (size_t)10 << 20, &out, &len),
                 PE_ETOOBIG);
        CHECK(out == NULL);
    }
    free(gz);
    CHECK(max_rss_kib() - rss0 < 64 * 1024);
}

/* Files bigger than one 256 KiB read, compressed: read whole for
 * libdeflate, or streamed through zlib when they hold two members. */
static void test_read_file_big_gz(void) {
    const size_t n = (size_t)1 << 20;
    uint8_t *data = malloc(n), *gz = NULL, *tail = NULL, *cat = NULL;
    uint8_t *out = NULL;
    size_t glen = 0, tlen = 0, len = 0;
    CHECK(data != NULL);
    if (!data) return;
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        data[i] = (uint8_t)s; /* incompressible: ~1 MiB compressed */
    }
    gz = gz_mem(data, n, &glen);
    tail = gz_mem("tail", 4, &tlen);
    cat = gz && tail ? malloc(glen + tlen + 100) : NULL;
    CHECK(gz && tail && cat && glen > ((size_t)256 << 10));
    if (!cat) goto done;

    CHECK(write_file(P("rand.gz"), gz, glen) == 0);
    CHECK_OK(pe_read_file_maybe_gz(P("rand.gz"), 0, &out, &len));
    CHECK(len == n && out && memcmp(out, data, n) == 0);
    free(out);
    out = NULL;
    CHECK_OK(pe_read_file_maybe_gz(P("rand.gz"), n, &out, &len));
    free(out);
    out = NULL;
    CHECK_RC(pe_read_file_maybe_gz(P("rand.gz"), n - 1, &out, &len),
             PE_ETOOBIG);

    /* Zero padding after the member, then a second member. */
    memcpy(cat, gz, glen);
    memset(cat + glen, 0, 100);
    CHECK(write_file(P("pad.gz"), cat, glen + 100) == 0);
    CHECK_OK(pe_read_file_maybe_gz(P("pad.gz"), 0, &out, &len));
    CHECK(len == n && out && memcmp(out, data, n) == 0);
    free(out);
    out = NULL;
    memcpy(cat + glen, tail, tlen);
    CHECK(write_file(P("two.gz"), cat, glen + tlen) == 0);
    CHECK_OK(pe_read_file_maybe_gz(P("two.gz"), 0, &out, &len));
    CHECK(len == n + 4 && out && memcmp(out, data, n) == 0 &&
          memcmp(out + n, "tail", 4) == 0);
    free(out);
    out = NULL;
    CHECK_RC(pe_read_file_maybe_gz(P("two.gz"), n + 3, &out, &len),
             PE_ETOOBIG);
    /* Cut inside the second member. */
    CHECK(write_file(P("two-cut.gz"), cat, glen + tlen - 3) == 0);
    CHECK_RC(pe_read_file_maybe_gz(P("two-cut.gz"), 0, &out, &len),
             PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "truncated gzip data"));
    /* A bad CRC in a big one-member file. */
    gz[glen - 6] ^= 0x55;
    CHECK(write_file(P("badcrc.gz"), gz, glen) == 0);
    CHECK_RC(pe_read_file_maybe_gz(P("badcrc.gz"), 0, &out, &len),
             PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "badcrc.gz"));

done:
    free(cat);
    free(tail);
    free(gz);
    free(data);
}

/* ---- IDX ---- */

static void test_idx_mem(void) {
    collect c;
    uint8_t buf[sizeof g_idx_img + 8];

    collect_init(&c);
    CHECK_OK(pe_idx_read_mem(g_idx_img, sizeof g_idx_img, g_idx_lbl,
                             sizeof g_idx_lbl, collect_fn, &c));
    check_idx_samples(&c, 1);
    collect_free(&c);

    collect_init(&c);
    CHECK_OK(pe_idx_read_mem(g_idx_img, sizeof g_idx_img, NULL, 0, collect_fn,
                             &c));
    check_idx_samples(&c, 0);
    collect_free(&c);

    /* The callback may take the pixels. */
    collect_init(&c);
    c.steal = 1;
    CHECK_OK(pe_idx_read_mem(g_idx_img, sizeof g_idx_img, g_idx_lbl,
                             sizeof g_idx_lbl, collect_fn, &c));
    check_idx_samples(&c, 1);
    collect_free(&c);

    /* A nonzero callback return stops the read and comes back as is. */
    collect_init(&c);
    c.stop_at = 1;
    c.stop_rc = 42;
    CHECK_RC(pe_idx_read_mem(g_idx_img, sizeof g_idx_img, g_idx_lbl,
                             sizeof g_idx_lbl, collect_fn, &c),
             42);
    CHECK(c.n == 2);
    collect_free(&c);

    /* Count mismatch: header says 2 labels, and 2 follow. */
    memcpy(buf, g_idx_lbl, sizeof g_idx_lbl);
    put_be32(buf + 4, 2);
    collect_init(&c);
    CHECK_RC(pe_idx_read_mem(g_idx_img, sizeof g_idx_img, buf, 10, collect_fn,
                             &c),
             PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "2 labels for 3 images"));
    CHECK(c.n == 0);
    /* Labels: a byte too many or too few. */
    memcpy(buf, g_idx_lbl, sizeof g_idx_lbl);
    buf[sizeof g_idx_lbl] = 1;
    CHECK_RC(pe_idx_read_mem(g_idx_img, sizeof g_idx_img, buf,
                             sizeof g_idx_lbl + 1, collect_fn, &c),
             PE_EFORMAT);
    CHECK_RC(pe_idx_read_mem(g_idx_img, sizeof g_idx_img, buf,
                             sizeof g_idx_lbl - 1, collect_fn, &c),
             PE_EFORMAT);
    CHECK_RC(pe_idx_read_mem(g_idx_img, sizeof g_idx_img, buf, 4, collect_fn,
                             &c),
             PE_EFORMAT);
    /* Labels with the images magic. */
    put_be32(buf, 0x00000803);
    CHECK_RC(pe_idx_read_mem(g_idx_img, sizeof g_idx_img, buf,
                             sizeof g_idx_lbl, collect_fn, &c),
             PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "magic"));

    /* Images: trailing byte, missing byte, wrong magic, short header. */
    memcpy(buf, g_idx_img, sizeof g_idx_img);
    buf[sizeof g_idx_img] = 0;
    CHECK_RC(pe_idx_read_mem(buf, sizeof g_idx_img + 1, NULL, 0, collect_fn, &c),
             PE_EFORMAT);
    CHECK_RC(pe_idx_read_mem(buf, sizeof g_idx_img - 1, NULL, 0, collect_fn, &c),
             PE_EFORMAT);
    CHECK_RC(pe_idx_read_mem(buf, 10, NULL, 0, collect_fn, &c), PE_EFORMAT);
    put_be32(buf, 0x00000801);
    CHECK_RC(pe_idx_read_mem(buf, sizeof g_idx_img, NULL, 0, collect_fn, &c),
             PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "magic 0x00000801"));
    put_be32(buf, 0x00000d03); /* float images: not ours */
    CHECK_RC(pe_idx_read_mem(buf, sizeof g_idx_img, NULL, 0, collect_fn, &c),
             PE_EFORMAT);
    /* Dimensions whose product overflows 64 bits. */
    put_be32(buf, 0x00000803);
    put_be32(buf + 4, 0xffffffffu);
    put_be32(buf + 8, 0xffffffffu);
    put_be32(buf + 12, 0xffffffffu);
    CHECK_RC(pe_idx_read_mem(buf, sizeof g_idx_img, NULL, 0, collect_fn, &c),
             PE_EFORMAT);
    /* ... or wraps to exactly the buffer length in 32 bits: 2^32+18. */
    put_be32(buf + 4, 1);
    put_be32(buf + 8, 2);
    put_be32(buf + 12, 0x80000009u);
    CHECK_RC(pe_idx_read_mem(buf, sizeof g_idx_img, NULL, 0, collect_fn, &c),
             PE_EFORMAT);
    /* Zero-sized images. */
    put_be32(buf + 4, 3);
    put_be32(buf + 8, 0);
    put_be32(buf + 12, 6);
    CHECK_RC(pe_idx_read_mem(buf, 16, NULL, 0, collect_fn, &c), PE_EFORMAT);
    /* No images at all is fine. */
    put_be32(buf + 4, 0);
    put_be32(buf + 8, 28);
    put_be32(buf + 12, 28);
    CHECK_OK(pe_idx_read_mem(buf, 16, NULL, 0, collect_fn, &c));
    CHECK(c.n == 0);
    collect_free(&c);
}

static void test_idx_files(void) {
    char found[4096];
    collect c;
    uint8_t *junk;
    size_t junk_len = (size_t)1 << 20;

    /* Plain, dash naming. */
    CHECK(write_file(P("train-images-idx3-ubyte"), g_idx_img, sizeof g_idx_img) == 0);
    CHECK(write_file(P("train-labels-idx1-ubyte"), g_idx_lbl, sizeof g_idx_lbl) == 0);
    CHECK_OK(pe_idx_find_labels(P("train-images-idx3-ubyte"), found, sizeof found));
    CHECK(strcmp(found, P("train-labels-idx1-ubyte")) == 0);
    collect_init(&c);
    CHECK_OK(pe_idx_read(P("train-images-idx3-ubyte"), found, collect_fn, &c));
    check_idx_samples(&c, 1);
    collect_free(&c);
    collect_init(&c);
    CHECK_OK(pe_idx_read(P("train-images-idx3-ubyte"), NULL, collect_fn, &c));
    check_idx_samples(&c, 0);
    collect_free(&c);

    /* Gzipped, dot naming ("t10k-images.idx3-ubyte"). */
    CHECK(write_gz_file(P("t10k-images.idx3-ubyte.gz"), g_idx_img, sizeof g_idx_img) == 0);
    CHECK(write_gz_file(P("t10k-labels.idx1-ubyte.gz"), g_idx_lbl, sizeof g_idx_lbl) == 0);
    CHECK_OK(pe_idx_find_labels(P("t10k-images.idx3-ubyte.gz"), found, sizeof found));
    CHECK(strcmp(found, P("t10k-labels.idx1-ubyte.gz")) == 0);
    collect_init(&c);
    CHECK_OK(pe_idx_read(P("t10k-images.idx3-ubyte.gz"), found, collect_fn, &c));
    check_idx_samples(&c, 1);
    collect_free(&c);

    /* Gzipped images, plain labels: the other compression is tried. */
    CHECK(write_gz_file(P("mix-images-idx3-ubyte.gz"), g_idx_img, sizeof g_idx_img) == 0);
    CHECK(write_file(P("mix-labels-idx1-ubyte"), g_idx_lbl, sizeof g_idx_lbl) == 0);
    CHECK_OK(pe_idx_find_labels(P("mix-images-idx3-ubyte.gz"), found, sizeof found));
    CHECK(strcmp(found, P("mix-labels-idx1-ubyte")) == 0);
    collect_init(&c);
    CHECK_OK(pe_idx_read(P("mix-images-idx3-ubyte.gz"), found, collect_fn, &c));
    check_idx_samples(&c, 1);
    collect_free(&c);

    /* A folder called "images" keeps its name. */
    CHECK(mkdir(P("images"), 0700) == 0);
    CHECK(write_file(P("images/x-images-idx3-ubyte"), g_idx_img, sizeof g_idx_img) == 0);
    CHECK(write_file(P("images/x-labels-idx1-ubyte"), g_idx_lbl, sizeof g_idx_lbl) == 0);
    CHECK_OK(pe_idx_find_labels(P("images/x-images-idx3-ubyte"), found, sizeof found));
    CHECK(strcmp(found, P("images/x-labels-idx1-ubyte")) == 0);

    /* Not found; nothing to map; too small a buffer. */
    CHECK(write_file(P("lonely-images-idx3-ubyte"), g_idx_img, sizeof g_idx_img) == 0);
    CHECK_RC(pe_idx_find_labels(P("lonely-images-idx3-ubyte"), found, sizeof found),
             PE_ENOTFOUND);
    CHECK(contains(pe_errmsg(), "lonely-labels-idx1-ubyte"));
    CHECK_RC(pe_idx_find_labels(P("data.bin"), found, sizeof found), PE_ENOTFOUND);
    CHECK_RC(pe_idx_find_labels(P("train-images-idx3-ubyte"), found, 8), PE_ETOOBIG);

    /* Count mismatch between files names the labels file. */
    {
        uint8_t two[10];
        memcpy(two, g_idx_lbl, 10);
        put_be32(two + 4, 2);
        CHECK(write_file(P("two-labels"), two, sizeof two) == 0);
        collect_init(&c);
        CHECK_RC(pe_idx_read(P("train-images-idx3-ubyte"), P("two-labels"),
                             collect_fn, &c),
                 PE_EFORMAT);
        CHECK(contains(pe_errmsg(), "two-labels"));
        CHECK(c.n == 0);
        CHECK_RC(pe_idx_read(P("train-images-idx3-ubyte"), P("no-such-labels"),
                             collect_fn, &c),
                 ENOENT);
        collect_free(&c);
    }

    /* Gzipped IDX with bytes after the declared pixels: a few are trailing
     * bytes; a megabyte stops the inflate at the declared size plus slack. */
    junk = calloc(1, sizeof g_idx_img + junk_len);
    CHECK(junk != NULL);
    if (junk) {
        memcpy(junk, g_idx_img, sizeof g_idx_img);
        CHECK(write_gz_file(P("junk1-images-idx3-ubyte.gz"), junk, sizeof g_idx_img + 10) == 0);
        CHECK_RC(pe_idx_read(P("junk1-images-idx3-ubyte.gz"), NULL, collect_fn, &c),
                 PE_EFORMAT);
        CHECK(write_gz_file(P("junk2-images-idx3-ubyte.gz"), junk, sizeof g_idx_img + junk_len) == 0);
        CHECK_RC(pe_idx_read(P("junk2-images-idx3-ubyte.gz"), NULL, collect_fn, &c),
                 PE_ETOOBIG);
        CHECK(contains(pe_errmsg(), "junk2-images-idx3-ubyte.gz"));
        /* A header declaring more than 4 GiB. */
        put_be32(junk + 4, 100000);
        put_be32(junk + 8, 300);
        put_be32(junk + 12, 300);
        CHECK(write_gz_file(P("huge-images-idx3-ubyte.gz"), junk, 64) == 0);
        CHECK_RC(pe_idx_read(P("huge-images-idx3-ubyte.gz"), NULL, collect_fn, &c),
                 PE_ETOOBIG);
    }
    free(junk);

    /* Truncated gzip. */
    {
        size_t glen = 0;
        uint8_t *gz = slurp(P("t10k-images.idx3-ubyte.gz"), &glen);
        CHECK(gz != NULL && glen > 12);
        if (gz) {
            CHECK(write_file(P("cut-images-idx3-ubyte.gz"), gz, glen - 5) == 0);
            CHECK_RC(pe_idx_read(P("cut-images-idx3-ubyte.gz"), NULL, collect_fn, &c),
                     PE_EFORMAT);
            CHECK(contains(pe_errmsg(), "truncated"));
        }
        free(gz);
    }
    collect_free(&c);
}

typedef struct counts {
    uint64_t n;
    uint64_t per_label[256];
    int bad_shape, no_label;
} counts;

static int count_fn(void *ctx, uint64_t index, pe_image *img, int32_t label) {
    counts *k = ctx;
    if (index != k->n) k->bad_shape++;
    if (img->w != 28 || img->h != 28 || img->c != 1 || !img->px) k->bad_shape++;
    if (label < 0 || label > 255)
        k->no_label++;
    else
        k->per_label[label]++;
    k->n++;
    return 0;
}

static void test_idx_real(void) {
    const char *path = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    char labels[4096];
    counts *k;
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "  (skipped: %s not present)\n", path);
        return;
    }
    CHECK_OK(pe_idx_find_labels(path, labels, sizeof labels));
    CHECK(strcmp(labels, "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") == 0);
    k = calloc(1, sizeof *k);
    if (!k) return;
    CHECK_OK(pe_idx_read(path, labels, count_fn, k));
    CHECK(k->n == 10000);
    CHECK(k->bad_shape == 0 && k->no_label == 0);
    for (int l = 0; l < 10; l++) CHECK(k->per_label[l] == 1000);
    free(k);
}

/* ---- CIFAR ---- */

#define CIFAR_PX 3072

static void test_cifar(void) {
    uint8_t buf[3 * (2 + CIFAR_PX)];
    collect c;
    size_t r10 = 1 + CIFAR_PX, r100 = 2 + CIFAR_PX;
    size_t at = 5 * 32 + 7; /* row 5, column 7 */

    /* CIFAR-10: two records, a known pixel in the second. */
    memset(buf, 0, sizeof buf);
    buf[0] = 9;
    buf[1] = 1; /* record 0: R of (0,0) */
    buf[r10] = 3;
    buf[r10 + 1 + at] = 11;
    buf[r10 + 1 + 1024 + at] = 22;
    buf[r10 + 1 + 2048 + at] = 33;
    collect_init(&c);
    CHECK_OK(pe_cifar_read_mem(buf, 2 * r10, 10, 0, collect_fn, &c));
    CHECK(c.n == 2);
    if (c.n == 2) {
        CHECK(c.label[0] == 9 && c.label[1] == 3);
        CHECK(c.img[1].w == 32 && c.img[1].h == 32 && c.img[1].c == 3);
        CHECK(c.img[0].px[0] == 1 && c.img[0].px[1] == 0 && c.img[0].px[2] == 0);
        CHECK(c.img[1].px[3 * at] == 11 && c.img[1].px[3 * at + 1] == 22 &&
              c.img[1].px[3 * at + 2] == 33);
        CHECK(c.img[1].px[3 * (7 * 32 + 5)] == 0);
    }
    collect_free(&c);

    CHECK(write_file(P("data_batch_1.bin"), buf, 2 * r10) == 0);
    collect_init(&c);
    CHECK_OK(pe_cifar_read(P("data_batch_1.bin"), 10, 0, collect_fn, &c));
    CHECK(c.n == 2 && c.label[1] == 3 && c.img[1].px[3 * at + 2] == 33);
    collect_free(&c);
    CHECK_RC(pe_cifar_read(P("no_batch.bin"), 10, 0, collect_fn, &c), ENOENT);

    /* Stop. */
    collect_init(&c);
    c.stop_at = 0;
    c.stop_rc = -7;
    CHECK_RC(pe_cifar_read_mem(buf, 2 * r10, 10, 0, collect_fn, &c), -7);
    CHECK(c.n == 1);
    collect_free(&c);

    /* Bad label in record 1: record 0 was delivered. */
    buf[r10] = 10;
    collect_init(&c);
    CHECK_RC(pe_cifar_read_mem(buf, 2 * r10, 10, 0, collect_fn, &c), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "record 1"));
    CHECK(c.n == 1);
    collect_free(&c);
    CHECK(write_file(P("bad_label.bin"), buf, 2 * r10) == 0);
    CHECK_RC(pe_cifar_read(P("bad_label.bin"), 10, 0, collect_fn, &c), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "bad_label.bin") && contains(pe_errmsg(), "record 1"));
    collect_free(&c);

    /* Bad lengths and variants. */
    CHECK_RC(pe_cifar_read_mem(buf, 2 * r10 - 1, 10, 0, collect_fn, &c), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "6145"));
    CHECK_RC(pe_cifar_read_mem(buf, 2 * r10, 100, 0, collect_fn, &c), PE_EFORMAT);
    CHECK_RC(pe_cifar_read_mem(buf, 2 * r10, 7, 0, collect_fn, &c), PE_EUSAGE);
    CHECK_OK(pe_cifar_read_mem(buf, 0, 10, 0, collect_fn, &c));
    CHECK(c.n == 0);

    /* CIFAR-100: coarse then fine. */
    memset(buf, 0, sizeof buf);
    buf[0] = 19;
    buf[1] = 99;
    buf[r100] = 4;
    buf[r100 + 1] = 42;
    buf[r100 + 2 + at] = 11;
    buf[r100 + 2 + 1024 + at] = 22;
    buf[r100 + 2 + 2048 + at] = 33;
    collect_init(&c);
    CHECK_OK(pe_cifar_read_mem(buf, 2 * r100, 100, 0, collect_fn, &c));
    CHECK(c.n == 2 && c.label[0] == 99 && c.label[1] == 42);
    if (c.n == 2)
        CHECK(c.img[1].px[3 * at] == 11 && c.img[1].px[3 * at + 1] == 22 &&
              c.img[1].px[3 * at + 2] == 33);
    collect_free(&c);
    collect_init(&c);
    CHECK_OK(pe_cifar_read_mem(buf, 2 * r100, 100, 1, collect_fn, &c));
    CHECK(c.n == 2 && c.label[0] == 19 && c.label[1] == 4);
    collect_free(&c);
    buf[r100 + 1] = 100;
    CHECK_RC(pe_cifar_read_mem(buf, 2 * r100, 100, 0, collect_fn, &c), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "record 1"));
    buf[r100 + 1] = 42;
    buf[r100] = 20;
    CHECK_RC(pe_cifar_read_mem(buf, 2 * r100, 100, 1, collect_fn, &c), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "record 1"));
    CHECK_RC(pe_cifar_read_mem(buf, 2 * r100 + 1, 100, 0, collect_fn, &c), PE_EFORMAT);
    collect_free(&c);
}

/* ---- STL-10 ---- */

#define STL_REC 27648

static void test_stl10(void) {
    uint8_t *x = calloc(3, STL_REC);
    uint8_t y[3] = {1, 10, 5};
    collect c;
    size_t row = 3, col = 10;

    CHECK(x != NULL);
    if (!x) return;
    /* Image 0: plane c, byte x*96+y is pixel (row y, column x). */
    x[0 * 9216 + col * 96 + row] = 200;
    x[1 * 9216 + col * 96 + row] = 201;
    x[2 * 9216 + col * 96 + row] = 202;
    x[STL_REC + 2 * 9216 + 95 * 96 + 0] = 77; /* image 1: B of (0, 95) */

    collect_init(&c);
    CHECK_OK(pe_stl10_read_mem(x, 2 * STL_REC, y, 2, collect_fn, &c));
    CHECK(c.n == 2);
    if (c.n == 2) {
        const uint8_t *p = c.img[0].px + (row * 96 + col) * 3;
        CHECK(c.img[0].w == 96 && c.img[0].h == 96 && c.img[0].c == 3);
        CHECK(p[0] == 200 && p[1] == 201 && p[2] == 202);
        CHECK(c.img[0].px[(col * 96 + row) * 3] == 0); /* not transposed */
        CHECK(c.img[1].px[95 * 3 + 2] == 77);
        CHECK(c.label[0] == 0 && c.label[1] == 9);
    }
    collect_free(&c);

    collect_init(&c);
    CHECK_OK(pe_stl10_read_mem(x, 2 * STL_REC, NULL, 0, collect_fn, &c));
    CHECK(c.n == 2 && c.label[0] == PE_LABEL_NONE && c.label[1] == PE_LABEL_NONE);
    collect_free(&c);

    /* Bad labels name the index; counts must agree; whole records only. */
    y[1] = 0;
    collect_init(&c);
    CHECK_RC(pe_stl10_read_mem(x, 2 * STL_REC, y, 2, collect_fn, &c), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "label 1"));
    CHECK(c.n == 1);
    collect_free(&c);
    y[1] = 11;
    CHECK_RC(pe_stl10_read_mem(x, 2 * STL_REC, y, 2, collect_fn, &c), PE_EFORMAT);
    y[1] = 10;
    CHECK_RC(pe_stl10_read_mem(x, 2 * STL_REC, y, 3, collect_fn, &c), PE_EFORMAT);
    CHECK_RC(pe_stl10_read_mem(x, 2 * STL_REC, y, 1, collect_fn, &c), PE_EFORMAT);
    CHECK_RC(pe_stl10_read_mem(x, 2 * STL_REC - 1, NULL, 0, collect_fn, &c),
             PE_EFORMAT);
    collect_free(&c);

    /* Files: train_y.bin found beside train_X.bin. */
    CHECK(write_file(P("train_X.bin"), x, 2 * STL_REC) == 0);
    CHECK(write_file(P("train_y.bin"), y, 2) == 0);
    collect_init(&c);
    CHECK_OK(pe_stl10_read(P("train_X.bin"), NULL, collect_fn, &c));
    CHECK(c.n == 2 && c.label[0] == 0 && c.label[1] == 9);
    if (c.n == 2) CHECK(c.img[0].px[(row * 96 + col) * 3 + 1] == 201);
    collect_free(&c);
    /* Explicit labels; a missing one; a bad one; a short one. */
    collect_init(&c);
    CHECK_OK(pe_stl10_read(P("train_X.bin"), P("train_y.bin"), collect_fn, &c));
    CHECK(c.n == 2 && c.label[1] == 9);
    collect_free(&c);
    CHECK_RC(pe_stl10_read(P("train_X.bin"), P("nope_y.bin"), collect_fn, &c), ENOENT);
    CHECK(contains(pe_errmsg(), "nope_y.bin"));
    y[0] = 0;
    CHECK(write_file(P("bad_y.bin"), y, 2) == 0);
    y[0] = 1;
    collect_init(&c);
    CHECK_RC(pe_stl10_read(P("train_X.bin"), P("bad_y.bin"), collect_fn, &c), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "bad_y.bin") && contains(pe_errmsg(), "label 0"));
    CHECK(c.n == 0);
    collect_free(&c);
    CHECK(write_file(P("three_y.bin"), y, 3) == 0);
    CHECK_RC(pe_stl10_read(P("train_X.bin"), P("three_y.bin"), collect_fn, &c), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "3 labels for 2 images"));
    /* Stop. */
    collect_init(&c);
    c.stop_at = 1;
    c.stop_rc = 3;
    CHECK_RC(pe_stl10_read(P("train_X.bin"), NULL, collect_fn, &c), 3);
    CHECK(c.n == 2);
    collect_free(&c);

    /* test_X.bin without test_y.bin, and unlabeled_X.bin: no labels. */
    CHECK(write_file(P("test_X.bin"), x, 3 * STL_REC) == 0);
    collect_init(&c);
    CHECK_OK(pe_stl10_read(P("test_X.bin"), NULL, collect_fn, &c));
    CHECK(c.n == 3 && c.label[2] == PE_LABEL_NONE);
    collect_free(&c);
    CHECK(write_file(P("unlabeled_X.bin"), x, STL_REC) == 0);
    collect_init(&c);
    CHECK_OK(pe_stl10_read(P("unlabeled_X.bin"), NULL, collect_fn, &c));
    CHECK(c.n == 1 && c.label[0] == PE_LABEL_NONE);
    collect_free(&c);

    /* Not whole records; missing file. */
    CHECK(write_file(P("odd_X.bin"), x, STL_REC + 5) == 0);
    CHECK_RC(pe_stl10_read(P("odd_X.bin"), NULL, collect_fn, &c), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "27653"));
    CHECK_RC(pe_stl10_read(P("gone_X.bin"), NULL, collect_fn, &c), ENOENT);
    collect_free(&c);
    free(x);
}

/* ---- tar ---- */

#define MAX_ENTRIES 16

typedef struct entries {
    int n;
    char *name[MAX_ENTRIES];
    uint8_t *data[MAX_ENTRIES];
    size_t len[MAX_ENTRIES];
    int stop_at, stop_rc;
} entries;

static void entries_init(entries *e) {
    memset(e, 0, sizeof *e);
    e->stop_at = -1;
}

static void entries_free(entries *e) {
    for (int i = 0; i < MAX_ENTRIES; i++) {
        free(e->name[i]);
        free(e->data[i]);
    }
    entries_init(e);
}

static int entry_fn(void *ctx, const char *name, const uint8_t *data, size_t len) {
    entries *e = ctx;
    if (e->n < MAX_ENTRIES) {
        e->name[e->n] = strdup(name);
        e->data[e->n] = malloc(len ? len : 1);
        if (e->data[e->n] && len) memcpy(e->data[e->n], data, len);
        e->len[e->n] = len;
    }
    if (e->n++ == e->stop_at) return e->stop_rc;
    return 0;
}

static int entry_is(const entries *e, const char *name, const void *data, size_t len) {
    for (int i = 0; i < e->n && i < MAX_ENTRIES; i++)
        if (e->name[i] && strcmp(e->name[i], name) == 0)
            return e->len[i] == len && e->data[i] &&
                   (len == 0 || memcmp(e->data[i], data, len) == 0);
    return 0;
}

/* A 512-byte ustar header. */
static void hdr_init(uint8_t *h, const char *name, char type, uint64_t size) {
    memset(h, 0, 512);
    memcpy(h, name, strnlen(name, 100));
    memcpy(h + 100, "0000644", 7);
    memcpy(h + 108, "0001750", 7);
    memcpy(h + 116, "0001750", 7);
    for (int i = 10; i >= 0; i--, size >>= 3) h[124 + i] = (uint8_t)('0' + (size & 7));
    memcpy(h + 136, "14712345670", 11);
    h[156] = (uint8_t)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
}

static void hdr_sum(uint8_t *h) {
    unsigned sum = 0;
    memset(h + 148, ' ', 8);
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
}

typedef struct tbuf {
    uint8_t b[64 * 512];
    size_t n;
} tbuf;

static void tb_add(tbuf *t, const char *name, char type, uint64_t size,
                   const void *data, size_t len) {
    uint8_t *h = t->b + t->n;
    hdr_init(h, name, type, size);
    hdr_sum(h);
    t->n += 512;
    if (len) memcpy(t->b + t->n, data, len);
    t->n += (len + 511) / 512 * 512;
}

static void tb_end(tbuf *t) {
    memset(t->b + t->n, 0, 1024);
    t->n += 1024;
}

static void pax_record(char *out, const char *kv) {
    /* "<len> kv\n" where len counts itself. */
    size_t body = strlen(kv) + 2, len = body + 1;
    while (snprintf(NULL, 0, "%zu", len) + body != len) len++;
    sprintf(out, "%zu %s\n", len, kv);
}

static void test_tar_handmade(void) {
    tbuf *t = calloc(1, sizeof *t);
    entries e;
    const char *evil = "../evil\nname\x1b[31m";
    char rec[256];

    if (!t) return;
    entries_init(&e);

    /* Raw names, an empty file, '7', dataless types, skipped types. */
    tb_add(t, evil, '0', 1, "x", 1);
    tb_add(t, "empty", '0', 0, NULL, 0);
    tb_add(t, "hard", '1', 7, NULL, 0); /* size but no data (POSIX) */
    tb_add(t, "contig", '7', 3, "abc", 3);
    tb_add(t, "dir/", '5', 0, NULL, 0);
    tb_add(t, "v7dir/", '\0', 0, NULL, 0);
    tb_add(t, "fifo", '6', 0, NULL, 0);
    {
        uint8_t blob[600];
        memset(blob, 'S', sizeof blob);
        tb_add(t, "sparse", 'S', sizeof blob, blob, sizeof blob);
    }
    tb_add(t, "old", '\0', 2, "ok", 2);
    tb_end(t);
    CHECK(pe_is_tar(t->b, t->n) == 1);
    CHECK_OK(pe_tar_read_mem(t->b, t->n, 0, entry_fn, &e));
    CHECK(e.n == 4);
    CHECK(entry_is(&e, evil, "x", 1));
    CHECK(entry_is(&e, "empty", "", 0));
    CHECK(entry_is(&e, "contig", "abc", 3));
    CHECK(entry_is(&e, "old", "ok", 2));
    entries_free(&e);

    /* The same from a file (seekable skips) and through a pipe. */
    CHECK(write_file(P("hand.tar"), t->b, t->n) == 0);
    CHECK_OK(pe_tar_read(P("hand.tar"), 0, entry_fn, &e));
    CHECK(e.n == 4 && entry_is(&e, "old", "ok", 2));
    entries_free(&e);
    {
        int fds[2];
        CHECK(pipe(fds) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            size_t off = 0;
            while (off < t->n) {
                ssize_t w = write(fds[1], t->b + off, t->n - off);
                if (w <= 0) _exit(1);
                off += (size_t)w;
            }
            _exit(0);
        }
        close(fds[1]);
        char dev[64];
        snprintf(dev, sizeof dev, "/dev/fd/%d", fds[0]);
        CHECK_OK(pe_tar_read(dev, 0, entry_fn, &e));
        CHECK(e.n == 4 && entry_is(&e, "old", "ok", 2) && entry_is(&e, evil, "x", 1));
        close(fds[0]);
        int st = 0;
        waitpid(pid, &st, 0);
        entries_free(&e);
    }

    /* Callback stop. */
    e.stop_at = 1;
    e.stop_rc = 99;
    CHECK_RC(pe_tar_read_mem(t->b, t->n, 0, entry_fn, &e), 99);
    CHECK(e.n == 2);
    entries_free(&e);

    /* A member over max_member is refused by name. */
    CHECK_RC(pe_tar_read_mem(t->b, t->n, 2, entry_fn, &e), PE_ETOOBIG);
    CHECK(contains(pe_errmsg(), "contig"));
    entries_free(&e);

    /* End of input at a header boundary ends the archive; a lone zero block
     * too; what follows a zero block is not read. */
    CHECK_OK(pe_tar_read_mem(t->b, 512 + 512, 0, entry_fn, &e));
    CHECK(e.n == 1);
    entries_free(&e);
    {
        uint8_t *copy = malloc(t->n + 2048);
        if (copy) {
            memcpy(copy, t->b, 1024);
            memset(copy + 1024, 0, 512);
            memcpy(copy + 1536, t->b + 1024, t->n - 1024);
            CHECK_OK(pe_tar_read_mem(copy, 1536, 0, entry_fn, &e));
            CHECK(e.n == 1);
            entries_free(&e);
            CHECK_OK(pe_tar_read_mem(copy, t->n + 512, 0, entry_fn, &e));
            CHECK(e.n == 1);
            entries_free(&e);
        }
        free(copy);
    }

    /* Truncated: inside a header, inside a member, in its padding, and in a
     * skipped entry's data. */
    CHECK_RC(pe_tar_read_mem(t->b, 700, 0, entry_fn, &e), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "truncated"));
    entries_free(&e);
    CHECK(memcmp(t->b + 4 * 512, "contig", 6) == 0);
    CHECK_RC(pe_tar_read_mem(t->b, 5 * 512 + 2, 0, entry_fn, &e), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "truncated") && contains(pe_errmsg(), "contig"));
    entries_free(&e);
    CHECK_RC(pe_tar_read_mem(t->b, 5 * 512 + 3, 0, entry_fn, &e), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "truncated") && contains(pe_errmsg(), "contig"));
    entries_free(&e);
    CHECK(write_file(P("cut.tar"), t->b, 3 * 512 + 100) == 0);
    CHECK_RC(pe_tar_read(P("cut.tar"), 0, entry_fn, &e), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "truncated") && contains(pe_errmsg(), "cut.tar"));
    entries_free(&e);
    {
        /* Cut inside the skipped 'S' entry: 9 headers + data before it. */
        /* evil + data, empty, hard, contig + data, dir, v7dir, fifo */
        size_t sparse_at = 9 * 512;
        CHECK(memcmp(t->b + sparse_at, "sparse", 6) == 0);
        CHECK_RC(pe_tar_read_mem(t->b, sparse_at + 512 + 600, 0, entry_fn, &e), PE_EFORMAT);
        entries_free(&e);
        CHECK(write_file(P("cut2.tar"), t->b, sparse_at + 512 + 600) == 0);
        CHECK_RC(pe_tar_read(P("cut2.tar"), 0, entry_fn, &e), PE_EFORMAT);
        CHECK(contains(pe_errmsg(), "truncated"));
        entries_free(&e);
    }

    /* Checksum: a flipped byte fails; the signed sum is accepted. */
    t->b[10] ^= 1;
    CHECK_RC(pe_tar_read_mem(t->b, t->n, 0, entry_fn, &e), PE_EFORMAT);
    CHECK(contains(pe_errmsg(), "checksum"));
    CHECK(pe_is_tar(t->b, 512) == 1); /* magic alone says tar */
    t->b[10] ^= 1;
    entries_free(&e);
    {
        uint8_t h[1024 + 512];
        int ssum = 0;
        memset(h, 0, sizeof h);
        hdr_init(h, "hi\xff\xfe", '0', 0);
        memset(h + 148, ' ', 8);
        for (int i = 0; i < 512; i++) ssum += (signed char)h[i];
        CHECK(ssum > 0);
        snprintf((char *)h + 148, 8, "%06o", (unsigned)ssum);
        CHECK_OK(pe_tar_read_mem(h, sizeof h, 0, entry_fn, &e));
        CHECK(e.n == 1 && entry_is(&e, "hi\xff\xfe", "", 0));
        entries_free(&e);
        /* v7: no magic, checksum valid. */
        hdr_init(h, "v7file", '0', 0);
        memset(h + 257, 0, 8);
        hdr_sum(h);
        CHECK(pe_is_tar(h, 512) == 1);
        h[0] = 'w';
        CHECK(pe_is_tar(h, 512) == 0);
        CHECK(pe_is_tar(h, 100) == 0);
        memset(h, 0, 512);
        CHECK(pe_is_tar(h, 512) == 0);
    }

    /* Size fields: garbage, base-256, negative base-256. */
    {
        uint8_t a[4 * 512];
        memset(a, 0, sizeof a);
        hdr_init(a, "s", '0', 0);
        memcpy(a + 124, "0000012x4\0\0\0", 12);
        hdr_sum(a);
        CHECK_RC(pe_tar_read_mem(a, sizeof a, 0, entry_fn, &e), PE_EFORMAT);
        CHECK(contains(pe_errmsg(), "size"));
        memcpy(a + 124, "\x80\0\0\0\0\0\0\0\0\0\0\x05", 12);
        hdr_sum(a);
        memcpy(a + 512, "b256!", 5);
        CHECK_OK(pe_tar_read_mem(a, sizeof a, 0, entry_fn, &e));
        CHECK(e.n == 1 && entry_is(&e, "s", "b256!", 5));
        entries_free(&e);
        memcpy(a + 124, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfb", 12);
        hdr_sum(a);
        CHECK_RC(pe_tar_read_mem(a, sizeof a, 0, entry_fn, &e), PE_EFORMAT);
        /* A huge base-256 size on a skipped type runs off the end. */
        memcpy(a + 124, "\x80\0\0\0\x7f\xff\xff\xff\xff\xff\xff\xff", 12);
        a[156] = 'S';
        hdr_sum(a);
        CHECK_RC(pe_tar_read_mem(a, sizeof a, 0, entry_fn, &e), PE_EFORMAT);
        /* ... and over max_member on a regular one. */
        a[156] = '0';
        hdr_sum(a);
        CHECK_RC(pe_tar_read_mem(a, sizeof a, 0, entry_fn, &e), PE_ETOOBIG);
        entries_free(&e);
    }

    /* ustar prefix joins; GNU magic ignores that area. */
    {
        uint8_t a[3 * 512];
        memset(a, 0, sizeof a);
        hdr_init(a, "name.jpg", '0', 0);
        memcpy(a + 345, "pre/fix", 7);
        hdr_sum(a);
        CHECK_OK(pe_tar_read_mem(a, sizeof a, 0, entry_fn, &e));
        CHECK(e.n == 1 && entry_is(&e, "pre/fix/name.jpg", "", 0));
        entries_free(&e);
        memcpy(a + 257, "ustar  ", 8);
        hdr_sum(a);
        CHECK_OK(pe_tar_read_mem(a, sizeof a, 0, entry_fn, &e));
        CHECK(e.n == 1 && entry_is(&e, "name.jpg", "", 0));
        entries_free(&e);
    }

    /* GNU long name with a NUL inside; pax path/size; pax 'g' skipped;
     * malformed pax records. */
    t->n = 0;
    tb_add(t, "././@LongLink", 'L', 10, "long\0tail\0", 10);
    tb_add(t, "trunc", '0', 1, "L", 1);
    pax_record(rec, "path=pax/a\x01\x02 b");
    tb_add(t, "g", 'g', strlen(rec), rec, strlen(rec));
    tb_add(t, "x", 'x', strlen(rec), rec, strlen(rec));
    tb_add(t, "short", '0', 1, "P", 1);
    {
        char both[256];
        pax_record(both, "size=3");
        pax_record(both + strlen(both), "comment=ignored");
        pax_record(both + strlen(both), "path=bigger");
        tb_add(t, "x", 'x', strlen(both), both, strlen(both));
    }
    tb_add(t, "bigger", '0', 0, "123", 3);
    tb_add(t, "plain", '0', 1, "p", 1); /* pax records do not carry over */
    tb_end(t);
    CHECK_OK(pe_tar_read_mem(t->b, t->n, 0, entry_fn, &e));
    CHECK(e.n == 4);
    CHECK(entry_is(&e, "long", "L", 1));
    CHECK(entry_is(&e, "pax/a\x01\x02 b", "P", 1));
    CHECK(entry_is(&e, "bigger", "123", 3));
    CHECK(entry_is(&e, "plain", "p", 1));
    entries_free(&e);
    {
        static const char *bad[] = {
            "99 path=x\n", "5 path=x\n", "abc path=x\n", "10 path=x\n\n",
            "9 path=x ", "8 =xyzw\n", "12 size=1x2\n", "8 pathx\n",
            "10 path=x\n3 x", "99999999999999999999999 path=x\n",
            "012 path=xy\n",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            t->n = 0;
            tb_add(t, "x", 'x', strlen(bad[i]), bad[i], strlen(bad[i]));
            tb_add(t, "f", '0', 1, "f", 1);
            tb_end(t);
            int rc = pe_tar_read_mem(t->b, t->n, 0, entry_fn, &e);
            if (i == 10) {
                CHECK_OK(rc); /* leading zeros are still a length */
                CHECK(e.n == 1 && entry_is(&e, "xy", "f", 1));
            } else {
                CHECK_RC(rc, PE_EFORMAT);
                CHECK(contains(pe_errmsg(), "pax"));
            }
            entries_free(&e);
        }
        /* A NUL in a pax path ends it. */
        t->n = 0;
        memcpy(rec, "12 path=a\0b\n", 12);
        tb_add(t, "x", 'x', 12, rec, 12);
        tb_add(t, "f", '0', 1, "f", 1);
        tb_end(t);
        CHECK_OK(pe_tar_read_mem(t->b, t->n, 0, entry_fn, &e));
        CHECK(e.n == 1 && entry_is(&e, "a", "f", 1));
        entries_free(&e);
        /* An oversized long name is refused before it is read. */
        t->n = 0;
        tb_add(t, "././@LongLink", 'L', (uint64_t)2 << 20, NULL, 0);
        CHECK_RC(pe_tar_read_mem(t->b, t->n, 0, entry_fn, &e), PE_ETOOBIG);
        entries_free(&e);
    }
    free(t);
}

/* The tree tar archives are made of, and what must come out of them. */
static const char *g_long;   /* a 150-character file name (GNU 'L', pax) */
static const char *g_prefix; /* a 130-character path (ustar prefix) */
static uint8_t g_blob[1000];

static int make_tree(void) {
    static char longname[160], prefixed[160];
    char cmd[8192];
    memset(longname, 'n', 150);
    longname[150] = 0;
    memcpy(longname + 146, ".png", 5);
    g_long = longname;
    snprintf(prefixed, sizeof prefixed, "deep/%060d/%060d/f.txt", 1, 2);
    g_prefix = prefixed;
    for (size_t i = 0; i < sizeof g_blob; i++) g_blob[i] = (uint8_t)(i * 37);

    if (mkdir(P("src"), 0700) || mkdir(P("src/sub"), 0700)) return -1;
    if (write_file(P("src/a.txt"), "hello\n", 6) ||
        write_file(P("src/sub/b.bin"), g_blob, sizeof g_blob) ||
        write_file(P("src/empty.dat"), "", 0))
        return -1;
    snprintf(cmd, sizeof cmd, "src/sub/%s", g_long);
    if (write_file(P(cmd), "long\n", 5)) return -1;
    if (symlink("a.txt", P("src/link")) || mkfifo(P("src/fifo"), 0600)) return -1;
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/src2/deep/%060d/%060d' && printf pre > '%s/src2/%s'",
             g_dir, 1, 2, g_dir, g_prefix);
    return system(cmd) == 0 ? 0 : -1;
}

static void check_tree(const entries *e, const char *what) {
    char longpath[256];
    int ok;
    snprintf(longpath, sizeof longpath, "sub/%s", g_long);
    ok = e->n == 4 && entry_is(e, "a.txt", "hello\n", 6) &&
         entry_is(e, "sub/b.bin", g_blob, sizeof g_blob) &&
         entry_is(e, "empty.dat", "", 0) && entry_is(e, longpath, "long\n", 5);
    if (!ok) {
        fprintf(stderr, "  %s: %d entries:", what, e->n);
        for (int i = 0; i < e->n && i < MAX_ENTRIES; i++)
            fprintf(stderr, " [%s %zu]", e->name[i], e->len[i]);
        fprintf(stderr, "\n");
    }
    CHECK(ok);
}

static void tar_both_ways(const char *archive, const char *what) {
    entries e;
    uint8_t *buf = NULL;
    size_t len = 0;

    entries_init(&e);
    CHECK_OK(pe_tar_read(P(archive), 0, entry_fn, &e));
    check_tree(&e, what);
    entries_free(&e);
    CHECK_OK(pe_read_file_maybe_gz(P(archive), 0, &buf, &len));
    if (buf) {
        CHECK(pe_is_tar(buf, len) == 1);
        CHECK_OK(pe_tar_read_mem(buf, len, 0, entry_fn, &e));
        check_tree(&e, what);
        entries_free(&e);
    }
    free(buf);
}

static void test_tar_system(void) {
    char cmd[8192];
    const char *members = "a.txt sub empty.dat link fifo";
    entries e;

    if (system("tar --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "  (skipped: no tar program)\n");
        return;
    }
    CHECK(make_tree() == 0);
    entries_init(&e);

    snprintf(cmd, sizeof cmd, "cd '%s/src' && tar --format=gnu -cf ../gnu.tar %s",
             g_dir, members);
    CHECK(system(cmd) == 0);
    tar_both_ways("gnu.tar", "gnu");
    snprintf(cmd, sizeof cmd, "cd '%s/src' && tar --format=pax -cf ../pax.tar %s",
             g_dir, members);
    CHECK(system(cmd) == 0);
    tar_both_ways("pax.tar", "pax");
    snprintf(cmd, sizeof cmd, "cd '%s/src' && tar --format=gnu -czf ../gnu.tgz %s",
             g_dir, members);
    CHECK(system(cmd) == 0);
    tar_both_ways("gnu.tgz", "tgz");
    snprintf(cmd, sizeof cmd, "cd '%s/src' && tar --format=pax -cf - %s | gzip -9 > ../pax.tar.gz",
             g_dir, members);
    CHECK(system(cmd) == 0);
    tar_both_ways("pax.tar.gz", "pax.tar.gz");

    /* ustar splits a long path into prefix and name. */
    snprintf(cmd, sizeof cmd, "cd '%s/src2' && tar --format=ustar -cf ../ustar.tar deep",
             g_dir);
    CHECK(system(cmd) == 0);
    CHECK_OK(pe_tar_read(P("ustar.tar"), 0, entry_fn, &e));
    CHECK(e.n == 1 && entry_is(&e, g_prefix, "pre", 3));
    entries_free(&e);

    /* A .tar.gz of two gzip members split mid-archive, from a pipe. */
    {
        size_t len = 0, g1 = 0, g2 = 0;
        uint8_t *tar = slurp(P("gnu.tar"), &len);
        uint8_t *z1 = tar ? gz_mem(tar, 1234, &g1) : NULL;
        uint8_t *z2 = tar ? gz_mem(tar + 1234, len - 1234, &g2) : NULL;
        CHECK(z1 && z2);
        if (z1 && z2) {
            FILE *f = fopen(P("two.tar.gz"), "wb");
            CHECK(f != NULL);
            if (f) {
                fwrite(z1, 1, g1, f);
                fwrite(z2, 1, g2, f);
                fclose(f);
            }
            CHECK_OK(pe_tar_read(P("two.tar.gz"), 0, entry_fn, &e));
            check_tree(&e, "two gzip members");
            entries_free(&e);
            /* Through a pipe: unseekable, with the sniffed magic replayed. */
            int fds[2];
            CHECK(pipe(fds) == 0);
            pid_t pid = fork();
            if (pid == 0) {
                close(fds[0]);
                if (write(fds[1], z1, g1) != (ssize_t)g1) _exit(1);
                if (write(fds[1], z2, g2) != (ssize_t)g2) _exit(1);
                _exit(0);
            }
            close(fds[1]);
            char dev[64];
            snprintf(dev, sizeof dev, "/dev/fd/%d", fds[0]);
            CHECK_OK(pe_tar_read(dev, 0, entry_fn, &e));
            check_tree(&e, "pipe");
            entries_free(&e);
            close(fds[0]);
            waitpid(pid, NULL, 0);
            /* Truncated .tar.gz. */
            CHECK(write_file(P("cut.tgz"), z1, g1 - 3) == 0);
            CHECK_RC(pe_tar_read(P("cut.tgz"), 0, entry_fn, &e), PE_EFORMAT);
            CHECK(contains(pe_errmsg(), "truncated") && contains(pe_errmsg(), "cut.tgz"));
            entries_free(&e);
        }
        free(z1);
        free(z2);

        /* Corrupted and cut copies of the GNU archive. */
        if (tar) {
            CHECK(pe_is_tar(tar, len) == 1);
            CHECK_RC(pe_tar_read_mem(tar, 512 * 3 + 7, 0, entry_fn, &e), PE_EFORMAT);
            entries_free(&e);
            e.stop_at = 0;
            e.stop_rc = 1234;
            CHECK_RC(pe_tar_read(P("gnu.tar"), 0, entry_fn, &e), 1234);
            CHECK(e.n == 1);
            entries_free(&e);
            CHECK_RC(pe_tar_read(P("gnu.tar"), 999, entry_fn, &e), PE_ETOOBIG);
            CHECK(contains(pe_errmsg(), "sub/b.bin") && contains(pe_errmsg(), "gnu.tar"));
            entries_free(&e);
            tar[0] ^= 0x20;
            CHECK_RC(pe_tar_read_mem(tar, len, 0, entry_fn, &e), PE_EFORMAT);
            CHECK(contains(pe_errmsg(), "checksum"));
            entries_free(&e);
        }
        free(tar);
    }
    /* Not an archive at all. */
    CHECK_RC(pe_tar_read(P("src/sub/b.bin"), 0, entry_fn, &e), PE_EFORMAT);
    CHECK(pe_is_tar(g_blob, sizeof g_blob) == 0);
    CHECK_RC(pe_tar_read(P("nothing.tar"), 0, entry_fn, &e), ENOENT);
    entries_free(&e);
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/pe-test-datasets-XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    make_idx();
    RUN(test_gzip_bomb);
    RUN(test_gunzip_mem);
    RUN(test_read_file);
    RUN(test_gunzip_paths);
    RUN(test_read_file_big_gz);
    RUN(test_idx_mem);
    RUN(test_idx_files);
    RUN(test_idx_real);
    RUN(test_cifar);
    RUN(test_stl10);
    RUN(test_tar_handmade);
    RUN(test_tar_system);
    if (nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        fprintf(stderr, "cannot remove %s\n", g_dir);
        check_failures++;
    }
    return CHECK_DONE();
}
