/*
 * phash.c - the perceptual hash of docs/phash.md (two modes: the exact
 * integer "pe" hash and Python imagehash's) and the multi-index Hamming
 * search over hashes.
 *
 * Not for: deciding what is a duplicate (lib/audit.c does) or storing
 * hashes.
 */
#include "phash.h"

#include "pe.h"
#include "rng.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* T[k][n] = round(4096 cos(pi k (2n + 1) / 64)), rounded half up (no entry
 * is within 0.001 of a half). This table is part of the spec: the pe hash
 * is defined by these integers, not by a cosine routine. */
static const int32_t dct_table[8][PE_PHASH_SIDE] = {
    {
         4096,  4096,  4096,  4096,  4096,  4096,  4096,  4096,
         4096,  4096,  4096,  4096,  4096,  4096,  4096,  4096,
         4096,  4096,  4096,  4096,  4096,  4096,  4096,  4096,
         4096,  4096,  4096,  4096,  4096,  4096,  4096,  4096,
    },
    {
         4091,  4052,  3973,  3857,  3703,  3513,  3290,  3035,
         2751,  2440,  2106,  1751,  1380,   995,   601,   201,
         -201,  -601,  -995, -1380, -1751, -2106, -2440, -2751,
        -3035, -3290, -3513, -3703, -3857, -3973, -4052, -4091,
    },
    {
         4076,  3920,  3612,  3166,  2598,  1931,  1189,   401,
         -401, -1189, -1931, -2598, -3166, -3612, -3920, -4076,
        -4076, -3920, -3612, -3166, -2598, -1931, -1189,  -401,
          401,  1189,  1931,  2598,  3166,  3612,  3920,  4076,
    },
    {
         4052,  3703,  3035,  2106,   995,  -201, -1380, -2440,
        -3290, -3857, -4091, -3973, -3513, -2751, -1751,  -601,
          601,  1751,  2751,  3513,  3973,  4091,  3857,  3290,
         2440,  1380,   201,  -995, -2106, -3035, -3703, -4052,
    },
    {
         4017,  3406,  2276,   799,  -799, -2276, -3406, -4017,
        -4017, -3406, -2276,  -799,   799,  2276,  3406,  4017,
         4017,  3406,  2276,   799,  -799, -2276, -3406, -4017,
        -4017, -3406, -2276,  -799,   799,  2276,  3406,  4017,
    },
    {
         3973,  3035,  1380,  -601, -2440, -3703, -4091, -3513,
        -2106,  -201,  1751,  3290,  4052,  3857,  2751,   995,
         -995, -2751, -3857, -4052, -3290, -1751,   201,  2106,
         3513,  4091,  3703,  2440,   601, -1380, -3035, -3973,
    },
    {
         3920,  2598,   401, -1931, -3612, -4076, -3166, -1189,
         1189,  3166,  4076,  3612,  1931,  -401, -2598, -3920,
        -3920, -2598,  -401,  1931,  3612,  4076,  3166,  1189,
        -1189, -3166, -4076, -3612, -1931,   401,  2598,  3920,
    },
    {
         3857,  2106,  -601, -3035, -4091, -3290,  -995,  1751,
         3703,  3973,  2440,  -201, -2751, -4052, -3513, -1380,
         1380,  3513,  4052,  2751,   201, -2440, -3973, -3703,
        -1751,   995,  3290,  4091,  3035,   601, -2106, -3857,
    },
};

int pe_phash_mode_parse(const char *s, pe_phash_mode *out) {
    if (!strcmp(s, "pe")) *out = PE_PHASH_PE;
    else if (!strcmp(s, "imagehash")) *out = PE_PHASH_IMAGEHASH;
    else return pe_fail(PE_EUSAGE, "unknown hash mode '%s' (pe or imagehash)", s);
    return 0;
}

const char *pe_phash_mode_name(pe_phash_mode m) {
    return m == PE_PHASH_IMAGEHASH ? "imagehash" : "pe";
}

int pe_phash_thumb(const pe_image *im, uint32_t x0, uint32_t y0, uint32_t x1,
                   uint32_t y1, uint8_t thumb[PE_PHASH_THUMB]) {
    if (!im->px || x0 >= x1 || y0 >= y1 || x1 > im->w || y1 > im->h)
        return pe_fail(PE_EUSAGE, "phash: box (%u, %u, %u, %u) outside the %ux%u image",
                       x0, y0, x1, y1, im->w, im->h);
    pe_image crop = {0}, small = {0};
    int rc = pe_image_alloc(&crop, x1 - x0, y1 - y0, im->c);
    if (rc) return rc;
    const size_t row = (size_t)(x1 - x0) * im->c;
    for (uint32_t y = y0; y < y1; y++)
        memcpy(crop.px + (size_t)(y - y0) * row, im->px + ((size_t)y * im->w + x0) * im->c, row);
    /* imagehash converts before resizing; the order changes the bytes */
    if (crop.c == 3 && (rc = pe_image_to_channels(&crop, 1))) goto out;
    if (crop.w == PE_PHASH_SIDE && crop.h == PE_PHASH_SIDE) {
        memcpy(thumb, crop.px, PE_PHASH_THUMB);
        goto out;
    }
    if ((rc = pe_image_resize_lanczos(&crop, &small, PE_PHASH_SIDE, PE_PHASH_SIDE))) goto out;
    memcpy(thumb, small.px, PE_PHASH_THUMB);
out:
    pe_image_free(&small);
    pe_image_free(&crop);
    return rc;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_f64(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Integer DCT: D = T X T^T over the 8 lowest frequencies, exact in int64
 * (|D| <= 1024 * 255 * 4096^2 < 2^43). Bit = 2 D > v[31] + v[32] of the
 * sorted coefficients (twice the median, so no division). */
static uint64_t hash_pe(const uint8_t *x) {
    int64_t a[8][PE_PHASH_SIDE]; /* (k, m): columns transformed */
    int64_t d[64], s[64];
    for (int k = 0; k < 8; k++)
        for (int m = 0; m < PE_PHASH_SIDE; m++) {
            int64_t acc = 0;
            for (int n = 0; n < PE_PHASH_SIDE; n++)
                acc += (int64_t)dct_table[k][n] * x[n * PE_PHASH_SIDE + m];
            a[k][m] = acc;
        }
    for (int k = 0; k < 8; k++)
        for (int l = 0; l < 8; l++) {
            int64_t acc = 0;
            for (int m = 0; m < PE_PHASH_SIDE; m++) acc += dct_table[l][m] * a[k][m];
            d[8 * k + l] = acc;
        }
    memcpy(s, d, sizeof s);
    qsort(s, 64, sizeof *s, cmp_i64);
    const int64_t med2 = s[31] + s[32];
    uint64_t h = 0;
    for (int i = 0; i < 64; i++)
        if (2 * d[i] > med2) h |= (uint64_t)1 << (63 - i);
    return h;
}

/* scipy.fftpack.dct (type II, unnormalised: y_k = 2 sum x_n cos(pi k
 * (2n+1) / 2N)) along axis 0, then axis 1, in double; numpy's median. */
static uint64_t hash_imagehash(const uint8_t *x) {
    double c[8][PE_PHASH_SIDE], a[8][PE_PHASH_SIDE], d[64], s[64];
    for (int k = 0; k < 8; k++)
        for (int n = 0; n < PE_PHASH_SIDE; n++)
            c[k][n] = 2.0 * cos(M_PI * k * (2 * n + 1) / (2.0 * PE_PHASH_SIDE));
    for (int k = 0; k < 8; k++)
        for (int m = 0; m < PE_PHASH_SIDE; m++) {
            double acc = 0;
            for (int n = 0; n < PE_PHASH_SIDE; n++) acc += c[k][n] * x[n * PE_PHASH_SIDE + m];
            a[k][m] = acc;
        }
    for (int k = 0; k < 8; k++)
        for (int l = 0; l < 8; l++) {
            double acc = 0;
            for (int m = 0; m < PE_PHASH_SIDE; m++) acc += c[l][m] * a[k][m];
            d[8 * k + l] = acc;
        }
    memcpy(s, d, sizeof s);
    qsort(s, 64, sizeof *s, cmp_f64);
    const double med = (s[31] + s[32]) / 2;
    uint64_t h = 0;
    for (int i = 0; i < 64; i++)
        if (d[i] > med) h |= (uint64_t)1 << (63 - i);
    return h;
}

uint64_t pe_phash_of_thumb(const uint8_t thumb[PE_PHASH_THUMB], pe_phash_mode mode) {
    return mode == PE_PHASH_IMAGEHASH ? hash_imagehash(thumb) : hash_pe(thumb);
}

int pe_phash(const pe_image *im, pe_phash_mode mode, uint64_t *out) {
    uint8_t t[PE_PHASH_THUMB];
    int rc = pe_phash_thumb(im, 0, 0, im->w, im->h, t);
    if (rc) return rc;
    *out = pe_phash_of_thumb(t, mode);
    return 0;
}

void pe_phash_hex(uint64_t h, char out[17]) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) out[i] = hx[(h >> (60 - 4 * i)) & 15];
    out[16] = 0;
}

int pe_phash_from_hex(const char *s, uint64_t *out) {
    uint64_t h = 0;
    for (int i = 0; i < 16; i++) {
        char ch = s[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0'
              : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (v < 0) return pe_fail(PE_EFORMAT, "expected 16 hex digits: '%.16s'", s);
        h = h << 4 | (uint64_t)v;
    }
    if (s[16] && s[16] != '\t' && s[16] != '\n' && s[16] != ' ')
        return pe_fail(PE_EFORMAT, "expected 16 hex digits: '%.17s'", s);
    *out = h;
    return 0;
}

/* ---- multi-index hashing ----
 *
 * Four blocks of 16 bits; a hash within r of the query agrees with it
 * within floor(r/4) bits in at least one block, so a query probes, in each
 * block, the buckets within that many bits of its own. Which bits make a
 * block matters for speed, not for the result: every query that probes a
 * crowded bucket reads all of it, and a pHash's bits differ in entropy (on
 * Fashion-MNIST the quarter that holds the DCT's first rows, DC included,
 * takes only 19,843 of its 65,536 values, and one bit is always 1). So the
 * build tries the hash's four quarters and PERMS fixed pseudo-random
 * permutations of its 64 bits, and keeps the one whose buckets are least
 * crowded: the least sum over blocks of squared bucket sizes, which is
 * what all queries together read. Hashes are stored permuted ("spread";
 * Hamming distances are unchanged), and each block keeps its own copy of
 * them in bucket order, so a query reads its candidates in sequence
 * instead of by id. */

#define NBLOCK 4
#define BUCKETS 65536
#define PERMS 8
/* Block radii at and above this scan linearly instead (4 bits: 2517
 * probes a block, about the cost of reading a few thousand hashes). */
#define SCAN_FROM 4

struct pe_hindex {
    size_t n;
    uint64_t *h;                 /* (n) the hashes, as given */
    uint32_t *start[NBLOCK];     /* (BUCKETS + 1) bucket offsets per block */
    uint32_t *ids[NBLOCK];       /* (n) ids by bucket per block */
    uint64_t *sh[NBLOCK];        /* (n) spread hashes by bucket per block */
    int plain;                   /* PE_NO_SIMD was set at build: no POPCNT */
    int perm;                    /* 0: the quarters; 1..PERMS: permutation */
    uint64_t tab[8][256];        /* spread: byte k of a hash, value v -> bits */
    void *mem;
};

/* 16-bit masks in order of popcount, and where each popcount starts. */
static uint16_t masks[BUCKETS];
static uint32_t masks_upto[18]; /* masks_upto[b]: masks with popcount < b */
static int masks_ready;

static void masks_init(void) {
    if (masks_ready) return;
    uint32_t n = 0;
    for (int b = 0; b <= 16; b++) {
        masks_upto[b] = n;
        for (uint32_t m = 0; m < BUCKETS; m++)
            if (__builtin_popcount(m) == b) masks[n++] = (uint16_t)m;
    }
    masks_upto[17] = n;
    masks_ready = 1;
}

/* The spread table of candidate c: 0 keeps the bits where they are (the
 * blocks are the quarters); c >= 1 moves bit perm[k] to bit k, perm a
 * Fisher-Yates shuffle of 0..63 driven by splitmix64 from seed c. */
static void spread_table(int c, uint64_t tab[8][256]) {
    uint8_t perm[64], dest[64];
    for (int i = 0; i < 64; i++) perm[i] = (uint8_t)i;
    uint64_t seed = (uint64_t)c;
    if (c)
        for (int i = 63; i > 0; i--) {
            int j = (int)(pe_splitmix64(&seed) % (uint64_t)(i + 1));
            uint8_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    for (int k = 0; k < 64; k++) dest[perm[k]] = (uint8_t)k;
    for (int k = 0; k < 8; k++)
        for (int v = 0; v < 256; v++) {
            uint64_t o = 0;
            for (int j = 0; j < 8; j++)
                if (v >> j & 1) o |= 1ull << dest[8 * k + j];
            tab[k][v] = o;
        }
}

static inline uint64_t spread(const uint64_t tab[8][256], uint64_t h) {
    uint64_t o = 0;
    for (int k = 0; k < 8; k++) o |= tab[k][(h >> (8 * k)) & 0xFF];
    return o;
}

static inline uint32_t block_of(uint64_t h, int b) {
    return (uint32_t)(h >> (16 * b)) & 0xFFFF;
}

/* Picks the candidate layout with the least crowded buckets (ties: the
 * lower number) into ix->tab. cnt: NBLOCK x BUCKETS counters. */
static void choose_layout(pe_hindex *ix, const uint64_t *h, size_t n, uint32_t *cnt) {
    double best = -1;
    uint64_t tab[8][256];
    for (int c = 0; c <= PERMS; c++) {
        spread_table(c, tab);
        memset(cnt, 0, (size_t)NBLOCK * BUCKETS * sizeof *cnt);
        for (size_t i = 0; i < n; i++) {
            const uint64_t v = spread((const uint64_t(*)[256])tab, h[i]);
            for (int b = 0; b < NBLOCK; b++) cnt[b * BUCKETS + block_of(v, b)]++;
        }
        double load = 0;
        for (size_t k = 0; k < (size_t)NBLOCK * BUCKETS; k++) load += (double)cnt[k] * cnt[k];
        if (best < 0 || load < best) {
            best = load;
            ix->perm = c;
            memcpy(ix->tab, tab, sizeof tab);
        }
    }
}

size_t pe_hindex_size(const pe_hindex *ix) { return ix ? ix->n : 0; }

size_t pe_hindex_bytes(const pe_hindex *ix) {
    if (!ix) return 0;
    return ix->n * sizeof(uint64_t) * (1 + NBLOCK) +
           NBLOCK * ((BUCKETS + 1) + ix->n) * sizeof(uint32_t);
}

int pe_hindex_build(pe_hindex **out, const uint64_t *h, size_t n) {
    *out = NULL;
    if (n >= UINT32_MAX) return pe_fail(PE_ETOOBIG, "hash index: %zu hashes", n);
    masks_init(); /* before any thread queries: a build happens first */
    pe_hindex *ix = calloc(1, sizeof *ix);
    if (!ix) return ENOMEM;
    ix->n = n;
    const size_t bytes = pe_hindex_bytes(ix);
    uint8_t *mem = malloc(bytes ? bytes : 1);
    if (!mem) {
        free(ix);
        return pe_fail(ENOMEM, "hash index: cannot allocate %zu bytes", bytes);
    }
    ix->mem = mem;
    const char *ns = getenv("PE_NO_SIMD");
    ix->plain = ns && *ns && strcmp(ns, "0") != 0;
    ix->h = (uint64_t *)mem;
    if (n) memcpy(ix->h, h, n * sizeof *h);
    uint64_t *sp = ix->h + n;
    for (int b = 0; b < NBLOCK; b++, sp += n) ix->sh[b] = sp;
    uint32_t *p = (uint32_t *)sp;
    for (int b = 0; b < NBLOCK; b++) {
        ix->start[b] = p;
        p += BUCKETS + 1;
        ix->ids[b] = p;
        p += n;
    }
    uint32_t *cnt = malloc((size_t)NBLOCK * BUCKETS * sizeof *cnt);
    if (!cnt) {
        free(mem);
        free(ix);
        return pe_fail(ENOMEM, "hash index: cannot allocate its counters");
    }
    choose_layout(ix, h, n, cnt);
    free(cnt);
    const uint64_t(*tab)[256] = (const uint64_t(*)[256])ix->tab;
    /* spread values by id: in block 0's copy until block 0 is filled */
    uint64_t *sv = ix->sh[0];
    for (size_t i = 0; i < n; i++) sv[i] = spread(tab, h[i]);
    for (int b = NBLOCK - 1; b >= 0; b--) {
        uint32_t *st = ix->start[b];
        memset(st, 0, (BUCKETS + 1) * sizeof *st);
        for (size_t i = 0; i < n; i++) st[block_of(sv[i], b) + 1]++;
        for (uint32_t v = 0; v < BUCKETS; v++) st[v + 1] += st[v];
        /* fill, then the starts shifted back by one bucket */
        for (size_t i = 0; i < n; i++) ix->ids[b][st[block_of(sv[i], b)]++] = (uint32_t)i;
        for (uint32_t v = BUCKETS; v > 0; v--) st[v] = st[v - 1];
        st[0] = 0;
        if (b > 0)
            for (size_t j = 0; j < n; j++) ix->sh[b][j] = sv[ix->ids[b][j]];
    }
    /* block 0 last: sv is its own array, so spread the hashes again */
    for (size_t j = 0; j < n; j++) ix->sh[0][j] = spread(tab, h[ix->ids[0][j]]);
    *out = ix;
    return 0;
}

int pe_hindex_layout(const pe_hindex *ix) { return ix ? ix->perm : 0; }

void pe_hindex_free(pe_hindex *ix) {
    if (!ix) return;
    free(ix->mem);
    free(ix);
}


uint64_t pe_hindex_hash(const pe_hindex *ix, uint32_t id) {
    PE_ASSERT(id < ix->n);
    return ix->h[id];
}

/* The query, compiled twice: with the POPCNT instruction (chosen at run
 * time where the CPU has it) and without, where a popcount is a libgcc
 * call that costs more than the rest of a candidate's check. */
static inline __attribute__((always_inline)) int
query_body(const pe_hindex *ix, uint64_t q, int radius, pe_hindex_fn fn, void *ctx) {
    int rc;
    const int s = radius / NBLOCK;
    if (s >= SCAN_FROM) {
        for (size_t i = 0; i < ix->n; i++) {
            int d = pe_hamming(ix->h[i], q);
            if (d <= radius && (rc = fn(ctx, (uint32_t)i, d))) return rc;
        }
        return 0;
    }
    const uint64_t sq = spread((const uint64_t(*)[256])ix->tab, q);
    const uint32_t nprobe = masks_upto[s + 1];
    for (int b = 0; b < NBLOCK; b++) {
        const uint32_t qb = block_of(sq, b);
        const uint32_t *st = ix->start[b], *ids = ix->ids[b];
        const uint64_t *sh = ix->sh[b];
        for (uint32_t pi = 0; pi < nprobe; pi++) {
            const uint32_t v = qb ^ masks[pi];
            for (uint32_t j = st[v], e1 = st[v + 1]; j < e1; j++) {
                const uint64_t h = sh[j];
                const int d = pe_hamming(h, sq);
                if (d > radius) continue;
                /* reported already at an earlier block that was in reach */
                int seen = 0;
                for (int e = 0; e < b && !seen; e++)
                    seen = __builtin_popcount(block_of(h, e) ^ block_of(sq, e)) <= s;
                if (!seen && (rc = fn(ctx, ids[j], d))) return rc;
            }
        }
    }
    return 0;
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("popcnt"))) static int
query_popcnt(const pe_hindex *ix, uint64_t q, int radius, pe_hindex_fn fn, void *ctx) {
    return query_body(ix, q, radius, fn, ctx);
}
#endif

static int query_plain(const pe_hindex *ix, uint64_t q, int radius, pe_hindex_fn fn,
                       void *ctx) {
    return query_body(ix, q, radius, fn, ctx);
}

int pe_hindex_query(const pe_hindex *ix, uint64_t q, int radius, pe_hindex_fn fn,
                    void *ctx) {
    PE_ASSERT(radius >= 0 && radius <= 64);
#if defined(__x86_64__) || defined(__i386__)
    if (!ix->plain && __builtin_cpu_supports("popcnt"))
        return query_popcnt(ix, q, radius, fn, ctx);
#endif
    return query_plain(ix, q, radius, fn, ctx);
}
