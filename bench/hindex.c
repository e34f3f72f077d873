/*
 * hindex.c - pe-audit's near-duplicate search (pe_hindex, lib/phash.h) at a
 * million hashes: build the multi-index over N 64-bit pHashes, query every
 * hash at a radius, count the pairs and link them into clusters the way
 * pe-audit's phash scan does (union-find), and check the index against a
 * brute-force popcount scan on a sample.
 *
 *   hindex gen real N OUT [-j T] [--fm DIR] [--seed S]
 *       pe_phash (pe mode) of Fashion-MNIST's 70,000 images (the four IDX
 *       .gz files of DIR, read with zlib; default
 *       /usr/share/datasets/fashion-mnist), then of augmented copies of
 *       random ones until N hashes: each copy is cropped (0-3 pixels off each
 *       side, at random), flipped left-right (half of them) and/or brightened
 *       or darkened (x0.6-1.4, clipped; at least one of crop and brightness),
 *       all drawn from a splitmix64 stream keyed by (seed, copy), so the file
 *       does not depend on T. OUT: N little-endian uint64, the 70,000 hashes
 *       of the images first (train then t10k, file order).
 *   hindex gen random N OUT [--seed S]
 *       N uniform random 64-bit values (splitmix64).
 *   hindex search FILE R[,R...] [-j T] [--every K]
 *       Builds the index over FILE's hashes, then for each radius queries
 *       every hash (on T threads, default 1 as in pe-audit; each thread
 *       links its pairs in its own union-find forest, merged at the end)
 *       and prints one line (with --every K, only every K-th hash is
 *       queried, to estimate the cost per query; the line then starts
 *       "sampled-query" and its counts are partial):
 *       build and query time (wall and process CPU), pairs (unordered,
 *       distinct positions, so equal hashes count), hashes with a neighbour,
 *       the most neighbours of any hash, clusters of two or more and the
 *       largest, and the resident memory (VmRSS before the index, after it,
 *       and the peak, VmHWM).
 *   hindex verify FILE M R[,R...]
 *       Takes M hashes of FILE (positions i*floor(N/M)), indexes them, and
 *       compares the pairs every query finds, for each radius, with a
 *       brute-force O(M^2) popcount scan: the count and an
 *       order-independent checksum of (i, j, distance); exits 1 with a
 *       message when either differs, or when a pair is reported twice.
 *   hindex pairs FILE R
 *       Prints every pair within R as "i<TAB>j<TAB>distance" (i < j,
 *       positions in FILE), for bench/audit_peers.py.
 *   hindex stats FILE
 *       How the hashes fill the index's four 16-bit blocks and, for
 *       comparison, the hash's four quarters (values used, largest bucket,
 *       mean size of the bucket a hash falls in), and how many distinct
 *       values there are.
 *
 * Output: one "key=value ..." line per result on stdout; progress on stderr.
 * Built by bench/audit.sh against build/libpe.a:
 *   cc -O2 -D_GNU_SOURCE -Ilib -Iformats bench/hindex.c build/libpe.a \
 *      -llmdb -lxxhash -ljpeg -lpng -ltiff -ldeflate -lz -lpthread -lm
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "image.h"
#include "pe.h"
#include "phash.h"
#include "rng.h"

#define FM_SIDE 28
#define FM_PX (FM_SIDE * FM_SIDE)

static void die(const char *fmt, const char *a) {
    fprintf(stderr, "hindex: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    exit(1);
}

static double now_wall(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double now_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* VmRSS or VmHWM of this process in KiB (0 when unreadable). */
static long vm_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    size_t n = strlen(field);
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static uint64_t parse_u64(const char *s, const char *what) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) die("bad %s", what);
    return v;
}

/* ---- files of hashes ---- */

static void write_hashes(const char *path, const uint64_t *h, size_t n) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(h, sizeof *h, n, f) != n || fclose(f)) die("cannot write %s", tmp);
    if (rename(tmp, path)) die("cannot rename to %s", path);
}

static uint64_t *read_hashes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (bytes <= 0 || bytes % 8) die("%s: not a file of uint64 hashes", path);
    *n = (size_t)bytes / 8;
    uint64_t *h = malloc((size_t)bytes);
    if (!h || fread(h, 8, *n, f) != *n) die("cannot read %s", path);
    fclose(f);
    return h;
}

/* ---- Fashion-MNIST and its augmented copies ---- */

static uint8_t *fm_px;   /* (fm_n, 28, 28) */
static size_t fm_n;

static void fm_load(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gzFile g = gzopen(path, "rb");
    if (!g) die("cannot open %s", path);
    uint8_t hd[16];
    if (gzread(g, hd, 16) != 16) die("%s: short header", path);
    uint32_t magic = (uint32_t)hd[0] << 24 | hd[1] << 16 | hd[2] << 8 | hd[3];
    uint32_t cnt = (uint32_t)hd[4] << 24 | hd[5] << 16 | hd[6] << 8 | hd[7];
    uint32_t rows = (uint32_t)hd[8] << 24 | hd[9] << 16 | hd[10] << 8 | hd[11];
    uint32_t cols = (uint32_t)hd[12] << 24 | hd[13] << 16 | hd[14] << 8 | hd[15];
    if (magic != 0x803 || rows != FM_SIDE || cols != FM_SIDE || cnt > 1000000)
        die("%s: not a 28x28 IDX images file", path);
    fm_px = realloc(fm_px, (fm_n + cnt) * FM_PX);
    if (!fm_px) die("out of memory%s", "");
    size_t want = (size_t)cnt * FM_PX;
    uint8_t *p = fm_px + fm_n * FM_PX;
    while (want) {
        unsigned chunk = want > (1u << 30) ? 1u << 30 : (unsigned)want;
        int got = gzread(g, p, chunk);
        if (got <= 0) die("%s: short file", path);
        p += got;
        want -= (size_t)got;
    }
    gzclose(g);
    fm_n += cnt;
}

typedef struct gen_job {
    uint64_t *h;
    size_t from, to;   /* positions */
    uint64_t seed;
    int fail;
} gen_job;

/* Hash position i: an image as it is below fm_n, an augmented copy above. */
static int hash_at(size_t i, uint64_t seed, uint8_t *buf, uint64_t *out) {
    pe_image im = {FM_SIDE, FM_SIDE, 1, buf};
    uint8_t t[PE_PHASH_THUMB];
    if (i < fm_n) {
        memcpy(buf, fm_px + i * FM_PX, FM_PX);
        if (pe_phash_thumb(&im, 0, 0, FM_SIDE, FM_SIDE, t)) return -1;
        *out = pe_phash_of_thumb(t, PE_PHASH_PE);
        return 0;
    }
    uint64_t s = seed ^ (0xA0761D6478BD642Full * (uint64_t)(i + 1));
    pe_splitmix64(&s);
    const uint8_t *src = fm_px + (pe_splitmix64(&s) % fm_n) * FM_PX;
    uint64_t r = pe_splitmix64(&s);
    int crop = (r & 3) != 0;                    /* 3/4 */
    int flip = (r >> 2 & 1) != 0;               /* 1/2 */
    int bright = (r >> 3 & 3) != 0 || !crop;    /* 3/4, always without crop */
    uint32_t m[4] = {0, 0, 0, 0};               /* left, top, right, bottom */
    if (crop) {
        do {
            uint64_t c = pe_splitmix64(&s);
            for (int k = 0; k < 4; k++) m[k] = (uint32_t)(c >> (8 * k) & 0xFF) % 4;
        } while (!(m[0] | m[1] | m[2] | m[3]));
    }
    /* brightness factor 0.6..1.4 in steps of 1/256, never 1 */
    int f256 = 256;
    while (bright && f256 == 256) f256 = 154 + (int)(pe_splitmix64(&s) % 205);
    for (int y = 0; y < FM_SIDE; y++)
        for (int x = 0; x < FM_SIDE; x++) {
            int v = src[y * FM_SIDE + (flip ? FM_SIDE - 1 - x : x)];
            if (bright) {
                v = (v * f256 + 128) >> 8;
                if (v > 255) v = 255;
            }
            buf[y * FM_SIDE + x] = (uint8_t)v;
        }
    if (pe_phash_thumb(&im, m[0], m[1], FM_SIDE - m[2], FM_SIDE - m[3], t)) return -1;
    *out = pe_phash_of_thumb(t, PE_PHASH_PE);
    return 0;
}

static void *gen_thread(void *arg) {
    gen_job *j = arg;
    uint8_t buf[FM_PX];
    for (size_t i = j->from; i < j->to; i++)
        if (hash_at(i, j->seed, buf, &j->h[i])) {
            j->fail = 1;
            break;
        }
    return NULL;
}

static int cmd_gen(int argc, char **argv) {
    const char *fm = "/usr/share/datasets/fashion-mnist";
    uint64_t seed = 1;
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    const char *pos[3];
    int np = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--fm") && i + 1 < argc) fm = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = parse_u64(argv[++i], "--seed");
        else if (!strcmp(argv[i], "-j") && i + 1 < argc) threads = (long)parse_u64(argv[++i], "-j");
        else if (np < 3) pos[np++] = argv[i];
        else die("gen: unexpected argument %s", argv[i]);
    }
    if (np != 3) die("usage: hindex gen real|random N OUT [-j T] [--fm DIR] [--seed S]%s", "");
    size_t n = parse_u64(pos[1], "N");
    if (n == 0 || threads < 1 || threads > 256) die("gen: bad N or -j%s", "");
    uint64_t *h = malloc(n * sizeof *h);
    if (!h) die("out of memory%s", "");
    double w0 = now_wall(), c0 = now_cpu();
    if (!strcmp(pos[0], "random")) {
        uint64_t s = seed;
        for (size_t i = 0; i < n; i++) h[i] = pe_splitmix64(&s);
    } else if (!strcmp(pos[0], "real")) {
        fm_load(fm, "train-images-idx3-ubyte.gz");
        fm_load(fm, "t10k-images-idx3-ubyte.gz");
        fprintf(stderr, "hindex: %zu Fashion-MNIST images read in %.2f s; hashing %zu\n", fm_n,
                now_wall() - w0, n);
        gen_job jobs[256];
        pthread_t tid[256];
        for (long t = 0; t < threads; t++) {
            jobs[t] = (gen_job){h, n * t / threads, n * (t + 1) / threads, seed, 0};
            if (pthread_create(&tid[t], NULL, gen_thread, &jobs[t])) die("pthread_create%s", "");
        }
        for (long t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            if (jobs[t].fail) die("phash failed: %s", pe_errmsg());
        }
    } else {
        die("gen: real or random, not %s", pos[0]);
    }
    write_hashes(pos[2], h, n);
    printf("gen set=%s n=%zu images=%zu seed=%llu threads=%ld wall_s=%.3f cpu_s=%.3f out=%s\n",
           pos[0], n, fm_n, (unsigned long long)seed, threads, now_wall() - w0, now_cpu() - c0,
           pos[2]);
    free(h);
    free(fm_px);
    return 0;
}

/* ---- the search ---- */

static uint32_t uf_find(uint32_t *uf, uint32_t x) {
    while (uf[x] != x) {
        uf[x] = uf[uf[x]];
        x = uf[x];
    }
    return x;
}

typedef struct q_ctx {
    uint32_t self;
    uint32_t *uf;      /* NULL: no clustering */
    uint64_t pairs, self_hits, neigh, sum;
} q_ctx;

static uint64_t pair_mix(uint32_t i, uint32_t j, int d) {
    uint64_t s = (uint64_t)i << 32 | j;
    s ^= (uint64_t)d << 58;
    return pe_splitmix64(&s);
}

static int q_hit(void *ctx, uint32_t id, int d) {
    q_ctx *c = ctx;
    if (id == c->self) {
        c->self_hits++;
        return 0;
    }
    c->neigh++;
    if (id < c->self) return 0; /* each unordered pair once, from its smaller end */
    c->pairs++;
    c->sum += pair_mix(c->self, id, d);
    if (c->uf) {
        uint32_t x = uf_find(c->uf, c->self), y = uf_find(c->uf, id);
        if (x != y) c->uf[x > y ? x : y] = x < y ? x : y;
    }
    return 0;
}

static int parse_radii(const char *s, int *r, int max) {
    int n = 0;
    char *end;
    while (*s) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 64 || n == max) die("bad radius list %s", s);
        r[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') die("bad radius list %s", end);
    }
    if (!n) die("no radius%s", "");
    return n;
}

static void uf_union(uint32_t *uf, uint32_t a, uint32_t b) {
    uint32_t x = uf_find(uf, a), y = uf_find(uf, b);
    if (x != y) uf[x > y ? x : y] = x < y ? x : y;
}

typedef struct s_job {
    const pe_hindex *ix;
    const uint64_t *h;
    size_t n;
    int radius;
    size_t every;
    atomic_size_t *next;
    q_ctx c;
    uint64_t with, maxn, queried;
    int rc;
} s_job;

#define CHUNK 1024

static void *search_thread(void *arg) {
    s_job *j = arg;
    for (;;) {
        size_t from = atomic_fetch_add(j->next, CHUNK);
        if (from >= j->n) break;
        size_t to = from + CHUNK < j->n ? from + CHUNK : j->n;
        for (size_t i = from; i < to; i++) {
            if (i % j->every) continue;
            j->queried++;
            uint64_t before = j->c.neigh;
            j->c.self = (uint32_t)i;
            if ((j->rc = pe_hindex_query(j->ix, j->h[i], j->radius, q_hit, &j->c))) return NULL;
            uint64_t got = j->c.neigh - before;
            if (got) j->with++;
            if (got > j->maxn) j->maxn = got;
        }
    }
    return NULL;
}

static int cmd_search(int argc, char **argv) {
    long threads = 1;
    size_t every = 1;
    const char *pos[2];
    int np = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-j") && i + 1 < argc) threads = (long)parse_u64(argv[++i], "-j");
        else if (!strcmp(argv[i], "--every") && i + 1 < argc) every = parse_u64(argv[++i], "--every");
        else if (np < 2) pos[np++] = argv[i];
        else die("search: unexpected argument %s", argv[i]);
    }
    if (np != 2 || threads < 1 || threads > 64 || every < 1)
        die("usage: hindex search FILE R[,R...] [-j T] [--every K]%s", "");
    int radii[16];
    int nr = parse_radii(pos[1], radii, 16);
    size_t n;
    uint64_t *h = read_hashes(pos[0], &n);
    long rss0 = vm_kib("VmRSS");
    double w0 = now_wall(), c0 = now_cpu();
    pe_hindex *ix;
    int rc = pe_hindex_build(&ix, h, n);
    if (rc) die("pe_hindex_build: %s", pe_errmsg());
    double bw = now_wall() - w0, bc = now_cpu() - c0;
    long rss1 = vm_kib("VmRSS");
    const size_t ix_bytes = pe_hindex_bytes(ix);
    printf("build file=%s n=%zu wall_s=%.3f cpu_s=%.3f index_bytes=%zu layout=%d "
           "rss_before_kib=%ld rss_after_kib=%ld\n",
           pos[0], n, bw, bc, ix_bytes, pe_hindex_layout(ix), rss0, rss1);
    fflush(stdout);
    /* one union-find forest per thread, merged after the queries */
    uint32_t *uf[64];
    for (long t = 0; t < threads; t++)
        if (!(uf[t] = malloc(n * sizeof(uint32_t)))) die("out of memory%s", "");
    uint32_t *size = malloc(n * sizeof *size);
    if (!size) die("out of memory%s", "");
    for (int k = 0; k < nr; k++) {
        s_job jobs[64];
        pthread_t tid[64];
        atomic_size_t next = 0;
        for (long t = 0; t < threads; t++) {
            for (size_t i = 0; i < n; i++) uf[t][i] = (uint32_t)i;
            jobs[t] = (s_job){ix, h, n, radii[k], every, &next, {0, uf[t], 0, 0, 0, 0}, 0, 0, 0, 0};
        }
        fprintf(stderr, "hindex: querying %zu hashes at radius %d on %ld thread(s)\n", n, radii[k],
                threads);
        w0 = now_wall(), c0 = now_cpu();
        for (long t = 0; t < threads; t++)
            if (pthread_create(&tid[t], NULL, search_thread, &jobs[t])) die("pthread_create%s", "");
        uint64_t pairs = 0, with = 0, maxn = 0, self_hits = 0, queried = 0;
        for (long t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            if (jobs[t].rc) die("query: %s", pe_errmsg());
            pairs += jobs[t].c.pairs;
            self_hits += jobs[t].c.self_hits;
            queried += jobs[t].queried;
            with += jobs[t].with;
            if (jobs[t].maxn > maxn) maxn = jobs[t].maxn;
        }
        for (long t = 1; t < threads; t++)
            for (size_t i = 0; i < n; i++) uf_union(uf[0], (uint32_t)i, uf_find(uf[t], (uint32_t)i));
        double qw = now_wall() - w0, qc = now_cpu() - c0;
        memset(size, 0, n * sizeof *size);
        uint64_t clusters = 0, largest = 0, in_clusters = 0;
        for (size_t i = 0; i < n; i++) size[uf_find(uf[0], (uint32_t)i)]++;
        for (size_t i = 0; i < n; i++)
            if (size[i] > 1) {
                clusters++;
                in_clusters += size[i];
                if (size[i] > largest) largest = size[i];
            }
        if (self_hits != queried) die("a query did not find its own hash%s", "");
        /* with --every K only every K-th hash is queried: pairs, clusters and
         * counts are those of the queries made (an estimate of the cost) */
        printf("%s file=%s n=%zu radius=%d threads=%ld queried=%llu wall_s=%.3f cpu_s=%.3f "
               "cpu_us_per_query=%.2f pairs=%llu with_neighbour=%llu max_neighbours=%llu "
               "clusters=%llu in_clusters=%llu largest_cluster=%llu rss_kib=%ld "
               "peak_rss_kib=%ld\n",
               every > 1 ? "sampled-query" : "query", pos[0], n, radii[k], threads,
               (unsigned long long)queried, qw, qc, qc * 1e6 / (double)queried,
               (unsigned long long)pairs, (unsigned long long)with, (unsigned long long)maxn,
               (unsigned long long)clusters, (unsigned long long)in_clusters,
               (unsigned long long)largest, vm_kib("VmRSS"), vm_kib("VmHWM"));
        fflush(stdout);
    }
    pe_hindex_free(ix);
    for (long t = 0; t < threads; t++) free(uf[t]);
    free(size);
    free(h);
    return 0;
}

static int cmd_verify(int argc, char **argv) {
    if (argc != 3) die("usage: hindex verify FILE M R[,R...]%s", "");
    int radii[16];
    int nr = parse_radii(argv[2], radii, 16);
    size_t n;
    uint64_t *all = read_hashes(argv[0], &n);
    size_t m = parse_u64(argv[1], "M");
    if (m < 2 || m > n || m > 200000) die("verify: M from 2 to min(N, 200000)%s", "");
    size_t stride = n / m;
    uint64_t *h = malloc(m * sizeof *h);
    if (!h) die("out of memory%s", "");
    for (size_t i = 0; i < m; i++) h[i] = all[i * stride];
    free(all);
    pe_hindex *ix;
    if (pe_hindex_build(&ix, h, m)) die("pe_hindex_build: %s", pe_errmsg());
    /* brute force, every radius in one pass */
    uint64_t bp[16] = {0}, bs[16] = {0};
    int rmax = 0;
    for (int k = 0; k < nr; k++) rmax = radii[k] > rmax ? radii[k] : rmax;
    double w0 = now_wall();
    for (size_t i = 0; i < m; i++)
        for (size_t j = i + 1; j < m; j++) {
            int d = pe_hamming(h[i], h[j]);
            if (d > rmax) continue;
            for (int k = 0; k < nr; k++)
                if (d <= radii[k]) {
                    bp[k]++;
                    bs[k] += pair_mix((uint32_t)i, (uint32_t)j, d);
                }
        }
    double bw = now_wall() - w0;
    int bad = 0;
    for (int k = 0; k < nr; k++) {
        q_ctx c = {0, NULL, 0, 0, 0, 0};
        w0 = now_wall();
        for (size_t i = 0; i < m; i++) {
            c.self = (uint32_t)i;
            if (pe_hindex_query(ix, h[i], radii[k], q_hit, &c)) die("query: %s", pe_errmsg());
        }
        double qw = now_wall() - w0;
        /* every hit is reported twice (from each end), once as a pair */
        int ok = c.pairs == bp[k] && c.sum == bs[k] && c.neigh == 2 * c.pairs && c.self_hits == m;
        printf("verify file=%s sample=%zu stride=%zu radius=%d index_pairs=%llu brute_pairs=%llu "
               "index_checksum=%016llx brute_checksum=%016llx index_wall_s=%.3f "
               "brute_wall_s_all_radii=%.3f %s\n",
               argv[0], m, stride, radii[k], (unsigned long long)c.pairs,
               (unsigned long long)bp[k], (unsigned long long)c.sum, (unsigned long long)bs[k],
               qw, bw, ok ? "MATCH" : "MISMATCH");
        if (!ok) {
            fprintf(stderr,
                    "hindex: MISMATCH at radius %d: index %llu pairs, brute force %llu "
                    "(checksums %016llx / %016llx, %llu neighbour reports, %llu self hits)\n",
                    radii[k], (unsigned long long)c.pairs, (unsigned long long)bp[k],
                    (unsigned long long)c.sum, (unsigned long long)bs[k],
                    (unsigned long long)c.neigh, (unsigned long long)c.self_hits);
            bad = 1;
        }
    }
    pe_hindex_free(ix);
    free(h);
    return bad;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Bits b, b+4, ..., b+60 of h: block b of the index (lib/phash.c). */
static uint32_t interleaved_block(uint64_t h, int b) {
    uint32_t v = 0;
    for (int i = 0; i < 16; i++) v |= (uint32_t)(h >> (4 * i + b) & 1) << i;
    return v;
}

/* How the hashes fill the index: distinct values, and per block of 16 bits
 * the values that occur and the mean size of the bucket a hash falls in
 * (sum of squared bucket sizes / N; N/65536 for uniform hashes), for the
 * index's blocks (block b: bits b, b+4, ..., b+60, as in lib/phash.c) and
 * for the hash's four quarters (quarter b: bits 16b..16b+15, the blocks
 * the index used before). */
static int cmd_stats(int argc, char **argv) {
    if (argc != 1) die("usage: hindex stats FILE%s", "");
    size_t n;
    uint64_t *h = read_hashes(argv[0], &n);
    uint32_t *cnt = calloc(65536, sizeof *cnt);
    if (!cnt) die("out of memory%s", "");
    printf("stats file=%s n=%zu", argv[0], n);
    for (int layout = 0; layout < 2; layout++)
        for (int b = 0; b < 4; b++) {
            memset(cnt, 0, 65536 * sizeof *cnt);
            for (size_t i = 0; i < n; i++)
                cnt[layout ? (h[i] >> (16 * b)) & 0xFFFF : interleaved_block(h[i], b)]++;
            double sq = 0;
            unsigned used = 0, maxb = 0;
            for (int v = 0; v < 65536; v++) {
                sq += (double)cnt[v] * cnt[v];
                used += cnt[v] > 0;
                if (cnt[v] > maxb) maxb = cnt[v];
            }
            const char *name = layout ? "quarter" : "block";
            printf(" %s%d_values=%u %s%d_max=%u %s%d_mean_bucket=%.1f", name, b, used, name, b,
                   maxb, name, b, sq / (double)n);
        }
    qsort(h, n, sizeof *h, cmp_u64);
    size_t distinct = n ? 1 : 0, run = 1, maxrun = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        if (h[i] != h[i - 1]) {
            distinct++;
            run = 1;
        } else if (++run > maxrun) {
            maxrun = run;
        }
    }
    printf(" distinct=%zu max_multiplicity=%zu\n", distinct, maxrun);
    free(cnt);
    free(h);
    return 0;
}

typedef struct p_ctx {
    uint32_t self;
} p_ctx;

static int p_hit(void *ctx, uint32_t id, int d) {
    p_ctx *c = ctx;
    if (id > c->self) printf("%u\t%u\t%d\n", c->self, id, d);
    return 0;
}

static int cmd_pairs(int argc, char **argv) {
    if (argc != 2) die("usage: hindex pairs FILE R%s", "");
    int r;
    parse_radii(argv[1], &r, 1);
    size_t n;
    uint64_t *h = read_hashes(argv[0], &n);
    pe_hindex *ix;
    if (pe_hindex_build(&ix, h, n)) die("pe_hindex_build: %s", pe_errmsg());
    for (size_t i = 0; i < n; i++) {
        p_ctx c = {(uint32_t)i};
        if (pe_hindex_query(ix, h[i], r, p_hit, &c)) die("query: %s", pe_errmsg());
    }
    pe_hindex_free(ix);
    free(h);
    return fflush(stdout) ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "gen")) return cmd_gen(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "search")) return cmd_search(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "verify")) return cmd_verify(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "pairs")) return cmd_pairs(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "stats")) return cmd_stats(argc - 2, argv + 2);
    fprintf(stderr, "usage: hindex gen real|random N OUT [-j T] [--fm DIR] [--seed S]\n"
                    "       hindex search FILE R[,R...] [-j T] [--every K]\n"
                    "       hindex verify FILE M R[,R...]\n"
                    "       hindex pairs FILE R\n"
                    "       hindex stats FILE\n");
    return 2;
}
