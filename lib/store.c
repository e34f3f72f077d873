/*
 * store.c - the LMDB image store (API in store.h, bytes in
 * docs/store-format.md).
 *
 * Not for: deciding what an image is (formats/) or which images a set holds
 * (programs decide; this file keeps the books: counts, labels, headers).
 *
 * Layout reminders: img/info keyed by the 16-byte key; set entries keyed by
 * u32 BE set id + key, so a set's entries are one contiguous range and a
 * rename only rewrites the set's header in `class`.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#include <libdeflate.h>
#include <xxhash.h>

#include "pe.h"

#define IMG_HDR_LEN 16
#define INFO_HDR_LEN 12
#define INFO_ENT_LEN 16
#define SET_VAL_LEN 8
#define SETHDR_FIXED 40
#define STAGING_PREFIX ".staging."

/* Map size: starts at max(file x 2, 256 MiB) and doubles on MAP_FULL, up to
 * PE_STORE_MAX_MAP bytes when set. PE_STORE_MAP_INITIAL overrides the start
 * (tests use both to make a map fill and grow). */
#define MAP_INITIAL (256ull << 20)

struct pe_store {
    MDB_env *env;
    MDB_dbi meta, img, info, set, cls;
    MDB_dbi derived; /* the `audit` database; valid when has_derived */
    int has_derived;
    char *path;
    unsigned flags;
    int refs;
    dev_t dev;
    ino_t ino;
    struct pe_store *next;
};

typedef struct hdr_cache {
    char name[PE_SET_NAME_MAX + 64];
    uint32_t id;
    uint64_t n_distinct, n_total;
    int dirty;
} hdr_cache;

#define HDR_CACHE_N 8

struct pe_txn {
    pe_store *st;
    MDB_txn *t;
    int write;
    int ncache;
    hdr_cache cache[HDR_CACHE_N];
    /* pe_set_get keeps class-name pointer arrays here (views into the txn) */
    const char **classes;
    size_t classes_cap;
};

/* ---------- little-endian helpers ---------- */
static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static void put64(uint8_t *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}
static uint64_t get64(const uint8_t *p) {
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* ---------- errors ---------- */
static int mdb_fail(int rc, const char *what, const pe_store *st) {
    const char *path = st ? st->path : "";
    if (rc == MDB_MAP_FULL)
        return pe_fail(PE_ETOOBIG, "%s: store map full during %s", path, what);
    if (rc > 0)
        return pe_fail(rc, "%s: %s: %s", path, what, strerror(rc));
    return pe_fail(PE_ESTORE, "%s: %s: %s", path, what, mdb_strerror(rc));
}

/* ---------- path and open ---------- */
const char *pe_store_path(const char *opt) {
    if (opt && *opt) return opt;
    const char *e = getenv("PE_STORE");
    if (e && *e) return e;
    return "./pe.lmdb";
}

const char *pe_store_get_path(const pe_store *st) { return st->path; }

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static pe_store *open_list;

static uint64_t max_map(void) {
    const char *e = getenv("PE_STORE_MAX_MAP");
    if (e && *e) {
        char *end;
        unsigned long long v = strtoull(e, &end, 10);
        if (*end == 0 && v >= (1u << 20)) return v;
    }
    return UINT64_MAX;
}

static int check_fs(const char *path) {
    struct statfs sf;
    if (statfs(path, &sf) != 0) return 0; /* stat errors surface at open */
    switch ((unsigned long)sf.f_type) {
    case 0x6969UL:     /* NFS */
    case 0x517BUL:     /* SMB */
    case 0xFF534D42UL: /* CIFS */
    case 0xFE534D42UL: /* SMB2 */
    case 0x564c:       /* NCP */
    case 0x6B414653UL: /* AFS */
    case 0x19830326UL: /* FHGFS/BeeGFS */
    case 0x47504653UL: /* GPFS */
    case 0x0BD00BD0UL: /* Lustre */
        return pe_fail(PE_EUNSUPPORTED,
                       "%s: store is on a network file system; LMDB's locks "
                       "and memory map are not safe there: use a local disk",
                       path);
    default:
        return 0;
    }
}

static int meta_check(pe_store *st, MDB_txn *t) {
    MDB_val k = {5, "magic"}, v;
    int rc = mdb_get(t, st->meta, &k, &v);
    if (rc == MDB_NOTFOUND || (rc == 0 && (v.mv_size != 8 ||
                                           memcmp(v.mv_data, "pe-store", 8))))
        return pe_fail(PE_EFORMAT, "%s: not a pe store (no pe-store magic)",
                       st->path);
    if (rc) return mdb_fail(rc, "reading meta", st);
    k.mv_size = 7;
    k.mv_data = "version";
    rc = mdb_get(t, st->meta, &k, &v);
    if (rc || v.mv_size != 4)
        return pe_fail(PE_ECORRUPT, "%s: store meta has no valid version",
                       st->path);
    uint32_t ver = get32(v.mv_data);
    if (ver > PE_STORE_VERSION)
        return pe_fail(PE_EVERSION,
                       "%s: store format version %u is newer than this pe "
                       "(reads up to %u): use a newer pe",
                       st->path, ver, PE_STORE_VERSION);
    if (ver == 0)
        return pe_fail(PE_ECORRUPT, "%s: store format version 0", st->path);
    return 0;
}

static int open_dbs(pe_store *st, int create) {
    MDB_txn *t = NULL;
    int rc = mdb_txn_begin(st->env, NULL, create ? 0 : MDB_RDONLY, &t);
    if (rc == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize(st->env, 0);
        rc = mdb_txn_begin(st->env, NULL, create ? 0 : MDB_RDONLY, &t);
    }
    if (rc) return mdb_fail(rc, "opening", st);
    unsigned f = create ? MDB_CREATE : 0;
    rc = mdb_dbi_open(t, "meta", 0, &st->meta);
    if (rc == MDB_NOTFOUND && create) {
        /* A new store only in an empty environment: never write our
         * databases into somebody else's LMDB file. */
        MDB_dbi main;
        MDB_stat ms;
        if ((rc = mdb_dbi_open(t, NULL, 0, &main)) ||
            (rc = mdb_stat(t, main, &ms))) {
            rc = mdb_fail(rc, "opening", st);
            goto fail;
        }
        if (ms.ms_entries) {
            rc = pe_fail(PE_EFORMAT, "%s: an LMDB environment that is not a "
                         "pe store (no meta database)", st->path);
            goto fail;
        }
        rc = mdb_dbi_open(t, "meta", MDB_CREATE, &st->meta);
        if (rc) { rc = mdb_fail(rc, "creating meta", st); goto fail; }
        uint8_t b[8];
        MDB_val k = {5, "magic"}, v = {8, "pe-store"};
        put32(b, PE_STORE_VERSION);
        if ((rc = mdb_put(t, st->meta, &k, &v, 0))) goto mdbfail;
        k = (MDB_val){7, "version"};
        v = (MDB_val){4, b};
        if ((rc = mdb_put(t, st->meta, &k, &v, 0))) goto mdbfail;
        put64(b, (uint64_t)time(NULL));
        k = (MDB_val){7, "created"};
        v = (MDB_val){8, b};
        if ((rc = mdb_put(t, st->meta, &k, &v, 0))) goto mdbfail;
        put32(b, 1);
        k = (MDB_val){11, "next_set_id"};
        v = (MDB_val){4, b};
        if ((rc = mdb_put(t, st->meta, &k, &v, 0))) goto mdbfail;
    } else if (rc == MDB_NOTFOUND) {
        rc = pe_fail(PE_EFORMAT, "%s: not a pe store (no meta database)",
                     st->path);
        goto fail;
    } else if (rc == MDB_INCOMPATIBLE) {
        rc = pe_fail(PE_EFORMAT, "%s: not a pe store (meta is not a database)",
                     st->path);
        goto fail;
    } else if (rc) {
        goto mdbfail;
    }
    if ((rc = meta_check(st, t))) goto fail;
    if ((rc = mdb_dbi_open(t, "img", f, &st->img)) ||
        (rc = mdb_dbi_open(t, "info", f, &st->info)) ||
        (rc = mdb_dbi_open(t, "set", f, &st->set)) ||
        (rc = mdb_dbi_open(t, "class", f, &st->cls))) {
        if (rc == MDB_NOTFOUND) {
            rc = pe_fail(PE_ECORRUPT, "%s: store lacks one of its databases "
                         "(img, info, set, class)", st->path);
            goto fail;
        }
        goto mdbfail;
    }
    /* derived records came after version 1's first programs: a store
     * opened read-only may lack the database, and then has none */
    rc = mdb_dbi_open(t, "audit", f, &st->derived);
    if (rc == 0) st->has_derived = 1;
    else if (rc != MDB_NOTFOUND) goto mdbfail;
    rc = mdb_txn_commit(t);
    t = NULL;
    if (rc) return mdb_fail(rc, "opening", st);
    return 0;
mdbfail:
    rc = mdb_fail(rc, "opening", st);
fail:
    if (t) mdb_txn_abort(t);
    return rc;
}

int pe_store_open(pe_store **out, const char *path, unsigned flags) {
    *out = NULL;
    int rdonly = (flags & PE_STORE_RDONLY) != 0;
    struct stat sb;
    int rc = 0;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT)
            return pe_fail(errno, "%s: %s", path, strerror(errno));
        if (!(flags & PE_STORE_CREATE))
            return pe_fail(PE_ENOTFOUND, "%s: no store there", path);
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return pe_fail(errno, "%s: cannot create store directory: %s",
                           path, strerror(errno));
        if (stat(path, &sb) != 0)
            return pe_fail(errno, "%s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return pe_fail(PE_EFORMAT, "%s: not a store (a store is a directory)",
                       path);
    if ((rc = check_fs(path))) return rc;

    pthread_mutex_lock(&open_lock);
    for (pe_store *s = open_list; s; s = s->next) {
        if (s->dev == sb.st_dev && s->ino == sb.st_ino) {
            if (!rdonly && (s->flags & PE_STORE_RDONLY)) {
                pthread_mutex_unlock(&open_lock);
                return pe_fail(PE_EUSAGE, "%s: already open read-only in "
                               "this process", path);
            }
            s->refs++;
            pthread_mutex_unlock(&open_lock);
            *out = s;
            return 0;
        }
    }

    char data[4096];
    snprintf(data, sizeof data, "%s/data.mdb", path);
    struct stat db;
    int have_data = stat(data, &db) == 0;
    if (!have_data && !(flags & PE_STORE_CREATE)) {
        rc = pe_fail(PE_ENOTFOUND, "%s: no store there (no data.mdb)", path);
        goto unlock;
    }
    pe_store *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        rc = ENOMEM;
        goto unlock;
    }
    st->flags = flags;
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    st->refs = 1;
    uint64_t map = MAP_INITIAL;
    const char *ini = getenv("PE_STORE_MAP_INITIAL");
    if (ini && *ini) {
        char *end;
        unsigned long long v = strtoull(ini, &end, 10);
        if (*end == 0 && v >= (1u << 20)) map = v;
    }
    if (have_data && (uint64_t)db.st_size * 2 > map) map = (uint64_t)db.st_size * 2;
    if (map > max_map()) map = max_map();
    if ((rc = mdb_env_create(&st->env)) || (rc = mdb_env_set_maxdbs(st->env, 8)) ||
        (rc = mdb_env_set_maxreaders(st->env, 510)) ||
        (rc = mdb_env_set_mapsize(st->env, (size_t)map))) {
        rc = mdb_fail(rc, "creating environment", st);
        goto failst;
    }
    rc = mdb_env_open(st->env, path, MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0666);
    if (rc == MDB_INVALID) {
        rc = pe_fail(PE_EFORMAT, "%s: not a store (data.mdb is not an LMDB file)",
                     path);
        goto failst;
    } else if (rc == MDB_VERSION_MISMATCH) {
        rc = pe_fail(PE_EVERSION, "%s: LMDB version mismatch", path);
        goto failst;
    } else if (rc) {
        rc = mdb_fail(rc, "opening", st);
        goto failst;
    }
    int dead = 0;
    mdb_reader_check(st->env, &dead); /* stale slots of killed readers */
    if ((rc = open_dbs(st, !rdonly))) goto failst;
    st->next = open_list;
    open_list = st;
    pthread_mutex_unlock(&open_lock);
    *out = st;
    return 0;
failst:
    if (st->env) mdb_env_close(st->env);
    free(st->path);
    free(st);
unlock:
    pthread_mutex_unlock(&open_lock);
    return rc;
}

void pe_store_close(pe_store *st) {
    if (!st) return;
    pthread_mutex_lock(&open_lock);
    if (--st->refs > 0) {
        pthread_mutex_unlock(&open_lock);
        return;
    }
    for (pe_store **p = &open_list; *p; p = &(*p)->next) {
        if (*p == st) {
            *p = st->next;
            break;
        }
    }
    pthread_mutex_unlock(&open_lock);
    mdb_env_close(st->env);
    free(st->path);
    free(st);
}

int pe_store_grow(pe_store *st) {
    MDB_envinfo ei;
    int rc = mdb_env_info(st->env, &ei);
    if (rc) return mdb_fail(rc, "reading map size", st);
    uint64_t cur = ei.me_mapsize, lim = max_map();
    if (cur >= lim)
        return pe_fail(PE_ETOOBIG, "%s: store map full at %llu bytes (limit "
                       "PE_STORE_MAX_MAP)", st->path, (unsigned long long)cur);
    uint64_t next = cur * 2 > lim ? lim : cur * 2;
    rc = mdb_env_set_mapsize(st->env, (size_t)next);
    if (rc) return mdb_fail(rc, "growing the map", st);
    return 0;
}

int pe_store_write(pe_store *st, pe_write_fn body, void *ctx) {
    for (int attempt = 0;; attempt++) {
        pe_txn *t;
        int rc = pe_txn_begin(st, 1, &t);
        if (rc) return rc;
        rc = body(ctx, t);
        if (rc == PE_ETOOBIG && attempt < 40) {
            pe_txn_abort(t);
            if ((rc = pe_store_grow(st))) return rc;
            continue;
        }
        if (rc) {
            pe_txn_abort(t);
            return rc;
        }
        return pe_txn_commit(t);
    }
}

/* ---------- transactions ---------- */
int pe_txn_begin(pe_store *st, int write, pe_txn **out) {
    *out = NULL;
    if (write && (st->flags & PE_STORE_RDONLY))
        return pe_fail(PE_EUSAGE, "%s: opened read-only", st->path);
    pe_txn *x = calloc(1, sizeof *x);
    if (!x) return ENOMEM;
    x->st = st;
    x->write = write;
    int rc = mdb_txn_begin(st->env, NULL, write ? 0 : MDB_RDONLY, &x->t);
    if (rc == MDB_MAP_RESIZED) { /* another process grew the map */
        mdb_env_set_mapsize(st->env, 0);
        rc = mdb_txn_begin(st->env, NULL, write ? 0 : MDB_RDONLY, &x->t);
    }
    if (rc) {
        free(x);
        return mdb_fail(rc, write ? "starting a write" : "starting a read", st);
    }
    *out = x;
    return 0;
}

static int flush_cache(pe_txn *x);

int pe_txn_commit(pe_txn *x) {
    int rc = 0;
    if (x->write) rc = flush_cache(x);
    if (rc) {
        mdb_txn_abort(x->t);
    } else {
        rc = mdb_txn_commit(x->t);
        if (rc == EIO || rc == ENOSPC || rc == EFBIG || rc == EDQUOT)
            rc = pe_fail(rc, "%s: commit failed: %s (is the disk full?); "
                         "nothing of this transaction was written",
                         x->st->path, strerror(rc));
        else if (rc)
            rc = mdb_fail(rc, "commit", x->st);
    }
    free(x->classes);
    free(x);
    return rc;
}

void pe_txn_abort(pe_txn *x) {
    if (!x) return;
    mdb_txn_abort(x->t);
    free(x->classes);
    free(x);
}

int pe_txn_renew(pe_txn *x) {
    if (x->write) return pe_fail(PE_EUSAGE, "renew of a write transaction");
    mdb_txn_reset(x->t);
    int rc = mdb_txn_renew(x->t);
    if (rc == MDB_MAP_RESIZED) {
        /* Cannot resize with this txn alive; begin a fresh one instead. */
        mdb_txn_abort(x->t);
        mdb_env_set_mapsize(x->st->env, 0);
        rc = mdb_txn_begin(x->st->env, NULL, MDB_RDONLY, &x->t);
        if (rc) {
            x->t = NULL;
            return mdb_fail(rc, "renewing a read", x->st);
        }
        return 0;
    }
    if (rc) return mdb_fail(rc, "renewing a read", x->st);
    return 0;
}

/* ---------- keys ---------- */
void pe_key_of_image(const pe_image *im, pe_key *out) {
    XXH3_state_t s;
    uint8_t hdr[12];
    put32(hdr, im->w);
    put32(hdr + 4, im->h);
    put32(hdr + 8, im->c);
    XXH3_128bits_reset(&s);
    XXH3_128bits_update(&s, hdr, sizeof hdr);
    XXH3_128bits_update(&s, im->px, pe_image_size(im));
    XXH128_hash_t h = XXH3_128bits_digest(&s);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(out->b, c.digest, PE_KEY_LEN);
}

void pe_key_to_hex(const pe_key *k, char *out) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < PE_KEY_LEN; i++) {
        out[2 * i] = hx[k->b[i] >> 4];
        out[2 * i + 1] = hx[k->b[i] & 15];
    }
    out[PE_KEY_HEX] = 0;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int pe_key_from_hex(const char *s, size_t len, pe_key *out) {
    if (len != PE_KEY_HEX)
        return pe_fail(PE_EFORMAT, "a key is %d hex digits, got %zu bytes",
                       PE_KEY_HEX, len);
    for (int i = 0; i < PE_KEY_LEN; i++) {
        int a = hexval((unsigned char)s[2 * i]), b = hexval((unsigned char)s[2 * i + 1]);
        if (a < 0 || b < 0)
            return pe_fail(PE_EFORMAT, "a key is %d hex digits, found a "
                           "non-hex character", PE_KEY_HEX);
        out->b[i] = (uint8_t)(a << 4 | b);
    }
    return 0;
}

/* ---------- image records ---------- */
static uint8_t paeth(uint8_t a, uint8_t b, uint8_t c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    if (pb <= pc) return b;
    return c;
}

/* Residuals of the Paeth predictor over rows (a = left, b = up, c = up-left,
 * per channel; outside the image they are 0), as PNG filter type 4 applied
 * to every row. */
static void predict(const uint8_t *px, uint8_t *res, uint32_t w, uint32_t h,
                    uint32_t c) {
    size_t stride = (size_t)w * c;
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *row = px + y * stride, *up = y ? row - stride : NULL;
        uint8_t *r = res + y * stride;
        for (size_t i = 0; i < stride; i++) {
            uint8_t a = i >= c ? row[i - c] : 0, b = up ? up[i] : 0,
                    cc = (up && i >= c) ? up[i - c] : 0;
            r[i] = (uint8_t)(row[i] - paeth(a, b, cc));
        }
    }
}

static void unpredict(uint8_t *px, uint32_t w, uint32_t h, uint32_t c) {
    size_t stride = (size_t)w * c;
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = px + y * stride;
        const uint8_t *up = y ? row - stride : NULL;
        for (size_t i = 0; i < stride; i++) {
            uint8_t a = i >= c ? row[i - c] : 0, b = up ? up[i] : 0,
                    cc = (up && i >= c) ? up[i - c] : 0;
            row[i] = (uint8_t)(row[i] + paeth(a, b, cc));
        }
    }
}

static int parse_img(const pe_key *key, const MDB_val *v, pe_img_hdr *h) {
    char hx[PE_KEY_HEX + 1];
    const uint8_t *p = v->mv_data;
    if (v->mv_size < IMG_HDR_LEN || p[0] != 'P' || p[1] != 1) {
        pe_key_to_hex(key, hx);
        if (v->mv_size >= IMG_HDR_LEN && p[0] == 'P' && p[1] > 1)
            return pe_fail(PE_EVERSION, "image %s: record version %u is newer "
                           "than this pe", hx, p[1]);
        return pe_fail(PE_ECORRUPT, "image %s: bad record header", hx);
    }
    h->encoding = p[2];
    h->c = p[3];
    h->w = get32(p + 4);
    h->h = get32(p + 8);
    h->stored_len = v->mv_size;
    size_t n = (size_t)h->w * h->h * h->c;
    int ok = (h->c == 1 || h->c == 3) && h->w && h->h &&
             n / h->c / h->w == h->h;
    if (ok && h->encoding == PE_ENC_RAW) ok = v->mv_size - IMG_HDR_LEN == n;
    else if (ok && h->encoding != PE_ENC_DEFLATE) {
        pe_key_to_hex(key, hx);
        return pe_fail(PE_EVERSION, "image %s: unknown pixel encoding %d", hx,
                       h->encoding);
    }
    if (!ok) {
        pe_key_to_hex(key, hx);
        return pe_fail(PE_ECORRUPT, "image %s: record of %zu bytes does not "
                       "hold %ux%ux%u pixels", hx, v->mv_size, h->w, h->h, h->c);
    }
    return 0;
}

static int decode_img(const pe_key *key, const MDB_val *v, pe_image *out) {
    pe_img_hdr h;
    int rc = parse_img(key, v, &h);
    if (rc) return rc;
    if ((rc = pe_image_alloc(out, h.w, h.h, h.c))) return rc;
    const uint8_t *p = (const uint8_t *)v->mv_data + IMG_HDR_LEN;
    size_t n = pe_image_size(out);
    if (h.encoding == PE_ENC_RAW) {
        memcpy(out->px, p, n);
        return 0;
    }
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    if (!d) {
        pe_image_free(out);
        return ENOMEM;
    }
    size_t got = 0;
    enum libdeflate_result r = libdeflate_deflate_decompress(
        d, p, v->mv_size - IMG_HDR_LEN, out->px, n, &got);
    libdeflate_free_decompressor(d);
    if (r != LIBDEFLATE_SUCCESS || got != n) {
        char hx[PE_KEY_HEX + 1];
        pe_key_to_hex(key, hx);
        pe_image_free(out);
        return pe_fail(PE_ECORRUPT, "image %s: compressed pixels do not "
                       "inflate to %ux%ux%u", hx, h.w, h.h, h.c);
    }
    unpredict(out->px, h.w, h.h, h.c);
    return 0;
}

/* The record of key: 0 with *v set, PE_ENOTFOUND naming the key, or a
 * store error. */
static int get_record(pe_txn *x, const pe_key *key, MDB_val *v) {
    MDB_val k = {PE_KEY_LEN, (void *)key->b};
    int rc = mdb_get(x->t, x->st->img, &k, v);
    if (rc == MDB_NOTFOUND) {
        char hx[PE_KEY_HEX + 1];
        pe_key_to_hex(key, hx);
        return pe_fail(PE_ENOTFOUND, "image %s: not in the store", hx);
    }
    if (rc) return mdb_fail(rc, "reading an image", x->st);
    return 0;
}

int pe_img_stat(pe_txn *x, const pe_key *key, pe_img_hdr *hdr) {
    MDB_val v;
    int rc = get_record(x, key, &v);
    return rc ? rc : parse_img(key, &v, hdr);
}

int pe_img_get(pe_txn *x, const pe_key *key, pe_image *out) {
    MDB_val v;
    int rc = get_record(x, key, &v);
    return rc ? rc : decode_img(key, &v, out);
}

int pe_img_exists(pe_txn *x, const pe_key *key) {
    MDB_val v;
    int rc = get_record(x, key, &v);
    if (rc == PE_ENOTFOUND) {
        pe_errclear();
        return 0;
    }
    return rc ? rc : 1;
}

static int info_add(pe_txn *x, const pe_key *key, const pe_prov *p, int is_new);

int pe_img_put(pe_txn *x, const pe_image *im, int encoding,
               const pe_prov *prov, pe_key *key_out, int *existed) {
    pe_key key;
    if ((im->c != 1 && im->c != 3) || !im->w || !im->h || !im->px)
        return pe_fail(PE_EUSAGE, "image to store must be 1 or 3 channels, "
                       "non-empty");
    pe_key_of_image(im, &key);
    if (key_out) *key_out = key;
    return pe_img_put_keyed(x, im, &key, encoding, prov, existed);
}

int pe_img_put_keyed(pe_txn *x, const pe_image *im, const pe_key *keyp,
                     int encoding, const pe_prov *prov, int *existed) {
    pe_key key = *keyp;
    int rc;
    char hx[PE_KEY_HEX + 1];
    *existed = 0;
    if (!x->write) return pe_fail(PE_EUSAGE, "pe_img_put on a read txn");
    if ((im->c != 1 && im->c != 3) || !im->w || !im->h || !im->px)
        return pe_fail(PE_EUSAGE, "image to store must be 1 or 3 channels, "
                       "non-empty");
    MDB_val k = {PE_KEY_LEN, key.b}, v;
    size_t n = pe_image_size(im);
    uint8_t hdr[IMG_HDR_LEN] = {'P', 1, (uint8_t)encoding, (uint8_t)im->c};
    put32(hdr + 4, im->w);
    put32(hdr + 8, im->h);
    if (encoding == PE_ENC_RAW) {
        /* One B-tree descent: a no-overwrite put either reserves the new
         * record or hands back the existing one to compare. */
        v.mv_size = IMG_HDR_LEN + n;
        rc = mdb_put(x->t, x->st->img, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
        if (rc == 0) {
            memcpy(v.mv_data, hdr, IMG_HDR_LEN);
            memcpy((uint8_t *)v.mv_data + IMG_HDR_LEN, im->px, n);
            return prov ? info_add(x, &key, prov, 1) : 0;
        }
        if (rc != MDB_KEYEXIST) return mdb_fail(rc, "storing an image", x->st);
        rc = 0; /* v is the stored record */
    } else {
        rc = mdb_get(x->t, x->st->img, &k, &v);
    }
    if (rc == 0) {
        pe_img_hdr h;
        int same;
        if ((rc = parse_img(&key, &v, &h))) return rc;
        same = h.w == im->w && h.h == im->h && h.c == im->c;
        if (same && h.encoding == PE_ENC_RAW) {
            same = memcmp((const uint8_t *)v.mv_data + IMG_HDR_LEN, im->px, n) == 0;
        } else if (same) {
            pe_image old = {0};
            if ((rc = decode_img(&key, &v, &old))) return rc;
            same = memcmp(old.px, im->px, n) == 0;
            pe_image_free(&old);
        }
        if (!same) {
            pe_key_to_hex(&key, hx);
            return pe_fail(PE_ECOLLISION, "image %s: key already holds "
                           "different pixels (XXH3-128 collision); not stored",
                           hx);
        }
        *existed = 1;
    } else if (rc == MDB_NOTFOUND) {
        if (encoding == PE_ENC_DEFLATE) {
            uint8_t *res = malloc(n);
            struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
            size_t bound = c ? libdeflate_deflate_compress_bound(c, n) : 0;
            uint8_t *buf = c ? malloc(IMG_HDR_LEN + bound) : NULL;
            size_t clen = 0;
            if (res && buf) {
                predict(im->px, res, im->w, im->h, im->c);
                clen = libdeflate_deflate_compress(c, res, n, buf + IMG_HDR_LEN,
                                                   bound);
            }
            if (c) libdeflate_free_compressor(c);
            free(res);
            if (!buf || clen == 0) {
                free(buf);
                return ENOMEM;
            }
            memcpy(buf, hdr, IMG_HDR_LEN);
            v.mv_size = IMG_HDR_LEN + clen;
            v.mv_data = buf;
            rc = mdb_put(x->t, x->st->img, &k, &v, MDB_NOOVERWRITE);
            free(buf);
            if (rc) return mdb_fail(rc, "storing an image", x->st);
        } else {
            return pe_fail(PE_EUSAGE, "unknown pixel encoding %d", encoding);
        }
    } else {
        return mdb_fail(rc, "reading an image", x->st);
    }
    if (prov) return info_add(x, &key, prov, !*existed);
    return 0;
}

/* ---- derived records ---- */
static void derived_key(uint8_t *b, const pe_key *key, uint8_t tag) {
    memcpy(b, key->b, PE_KEY_LEN);
    b[PE_KEY_LEN] = tag;
}

int pe_derived_get(pe_txn *x, const pe_key *key, uint8_t tag, const void **val, size_t *len) {
    if (!x->st->has_derived) return PE_ENOTFOUND;
    uint8_t b[PE_KEY_LEN + 1];
    derived_key(b, key, tag);
    MDB_val k = {sizeof b, b}, v;
    int rc = mdb_get(x->t, x->st->derived, &k, &v);
    if (rc == MDB_NOTFOUND) return PE_ENOTFOUND;
    if (rc) return mdb_fail(rc, "reading a derived record", x->st);
    *val = v.mv_data;
    *len = v.mv_size;
    return 0;
}

int pe_derived_put(pe_txn *x, const pe_key *key, uint8_t tag, const void *val, size_t len) {
    /* a writable open creates the database; only a read-only one lacks it */
    if (!x->st->has_derived)
        return pe_fail(PE_EUSAGE, "%s: opened read-only: no derived records can be stored",
                       x->st->path);
    uint8_t b[PE_KEY_LEN + 1];
    derived_key(b, key, tag);
    MDB_val k = {sizeof b, b}, v = {len, (void *)val};
    /* A record over half a page's room goes alone on its page when keys
     * arrive in order (a first audit writes in key order) and pages split
     * in the middle: half the file empty. Past the last key, append
     * instead, which fills each page before starting the next. */
    unsigned flags = 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(x->t, x->st->derived, &c);
    if (rc) return mdb_fail(rc, "storing a derived record", x->st);
    MDB_val lk, lv;
    rc = mdb_cursor_get(c, &lk, &lv, MDB_LAST);
    if (rc == MDB_NOTFOUND ||
        (!rc && mdb_cmp(x->t, x->st->derived, &k, &lk) > 0))
        flags = MDB_APPEND;
    else if (rc) {
        mdb_cursor_close(c);
        return mdb_fail(rc, "storing a derived record", x->st);
    }
    rc = mdb_cursor_put(c, &k, &v, flags);
    mdb_cursor_close(c);
    if (rc) return mdb_fail(rc, "storing a derived record", x->st);
    return 0;
}

/* Every derived record of key: they are the keys key || tag, one range. */
static int derived_del(pe_txn *x, const pe_key *key) {
    if (!x->st->has_derived) return 0;
    MDB_cursor *c;
    uint8_t b[PE_KEY_LEN + 1];
    derived_key(b, key, 0);
    MDB_val k = {sizeof b, b}, v;
    int rc = mdb_cursor_open(x->t, x->st->derived, &c);
    if (rc) return mdb_fail(rc, "deleting derived records", x->st);
    for (;;) { /* seek again after each delete */
        k = (MDB_val){sizeof b, b};
        if ((rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE))) break;
        if (k.mv_size != PE_KEY_LEN + 1 || memcmp(k.mv_data, key->b, PE_KEY_LEN)) break;
        if ((rc = mdb_cursor_del(c, 0))) break;
    }
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND) return mdb_fail(rc, "deleting derived records", x->st);
    return 0;
}

int pe_img_del(pe_txn *x, const pe_key *key) {
    MDB_val k = {PE_KEY_LEN, (void *)key->b};
    int rc = mdb_del(x->t, x->st->img, &k, NULL);
    if (rc && rc != MDB_NOTFOUND) return mdb_fail(rc, "deleting an image", x->st);
    rc = mdb_del(x->t, x->st->info, &k, NULL);
    if (rc && rc != MDB_NOTFOUND) return mdb_fail(rc, "deleting info", x->st);
    return derived_del(x, key);
}

int pe_img_each(pe_txn *x, pe_img_fn fn, void *ctx) {
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(x->t, x->st->img, &c);
    if (rc) return mdb_fail(rc, "listing images", x->st);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        pe_key key;
        if (k.mv_size != PE_KEY_LEN) continue;
        memcpy(key.b, k.mv_data, PE_KEY_LEN);
        if ((rc = fn(ctx, x, &key))) break;
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc < -30000 && rc > -31000) return mdb_fail(rc, "listing images", x->st);
    return rc;
}

/* ---------- info ---------- */
static int parse_info(const pe_key *key, const MDB_val *v, pe_info *out) {
    const uint8_t *p = v->mv_data, *end = p + v->mv_size;
    char hx[PE_KEY_HEX + 1];
    memset(out, 0, sizeof *out);
    if (v->mv_size < INFO_HDR_LEN || p[0] != 1) goto bad;
    uint32_t n = p[1];
    if (n > PE_INFO_MAX_SOURCES) goto bad;
    out->count = get64(p + 4);
    p += INFO_HDR_LEN;
    for (uint32_t i = 0; i < n; i++) {
        if ((size_t)(end - p) < INFO_ENT_LEN) goto bad;
        pe_prov *q = &out->prov[i];
        q->orig_w = get32(p);
        q->orig_h = get32(p + 4);
        q->orig_c = p[8];
        q->orig_bits = p[9];
        q->format = p[10];
        size_t sl = get16(p + 12), ol = get16(p + 14);
        p += INFO_ENT_LEN;
        if ((size_t)(end - p) < sl + 1 + ol + 1 || p[sl] || p[sl + 1 + ol]) goto bad;
        q->src = (const char *)p;
        q->ops = (const char *)p + sl + 1;
        p += sl + 1 + ol + 1;
    }
    out->n = n;
    return 0;
bad:
    pe_key_to_hex(key, hx);
    return pe_fail(PE_ECORRUPT, "image %s: malformed info record", hx);
}

int pe_info_get(pe_txn *x, const pe_key *key, pe_info *out) {
    MDB_val k = {PE_KEY_LEN, (void *)key->b}, v;
    int rc = mdb_get(x->t, x->st->info, &k, &v);
    if (rc == MDB_NOTFOUND) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    if (rc) return mdb_fail(rc, "reading info", x->st);
    return parse_info(key, &v, out);
}

static size_t clip_len(const char *s, size_t max) {
    size_t n = s ? strnlen(s, max + 1) : 0;
    if (n <= max) return n;
    /* cut at a UTF-8 boundary so the kept prefix stays valid text */
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
    return n;
}

/* is_new: the image was just stored, so no info can exist (saves a
 * lookup; a leftover record would still be found by the no-overwrite put
 * failing, and is then merged). */
static int info_add(pe_txn *x, const pe_key *key, const pe_prov *p, int is_new) {
    MDB_val k = {PE_KEY_LEN, (void *)key->b}, v;
    pe_info old;
    int rc = is_new ? MDB_NOTFOUND : mdb_get(x->t, x->st->info, &k, &v);
    size_t sl = clip_len(p->src, PE_SOURCE_MAX), ol = clip_len(p->ops, PE_SOURCE_MAX);
    if (rc == MDB_NOTFOUND) {
        memset(&old, 0, sizeof old);
        v.mv_size = 0;
    } else if (rc) {
        return mdb_fail(rc, "reading info", x->st);
    } else if ((rc = parse_info(key, &v, &old))) {
        return rc;
    }
    /* The same source seen again (a re-run ingest) is not a new occurrence. */
    for (uint32_t i = 0; i < old.n; i++)
        if (strlen(old.prov[i].src) == sl && !memcmp(old.prov[i].src, p->src, sl))
            return 0;
    int keep = old.n < PE_INFO_MAX_SOURCES;
    size_t oldlen = v.mv_size ? v.mv_size : INFO_HDR_LEN;
    size_t len = oldlen + (keep ? INFO_ENT_LEN + sl + 1 + ol + 1 : 0);
    uint8_t *buf = malloc(len);
    if (!buf) return ENOMEM;
    if (v.mv_size) memcpy(buf, v.mv_data, v.mv_size);
    else memset(buf, 0, INFO_HDR_LEN);
    buf[0] = 1;
    put64(buf + 4, old.count + 1);
    if (keep) {
        uint8_t *e = buf + oldlen;
        buf[1] = (uint8_t)(old.n + 1);
        put32(e, p->orig_w);
        put32(e + 4, p->orig_h);
        e[8] = p->orig_c;
        e[9] = p->orig_bits;
        e[10] = p->format;
        e[11] = 0;
        put16(e + 12, (uint16_t)sl);
        put16(e + 14, (uint16_t)ol);
        e += INFO_ENT_LEN;
        if (sl) memcpy(e, p->src, sl);
        e[sl] = 0;
        if (ol) memcpy(e + sl + 1, p->ops, ol);
        e[sl + 1 + ol] = 0;
    }
    MDB_val nv = {len, buf};
    rc = mdb_put(x->t, x->st->info, &k, &nv, v.mv_size ? 0 : MDB_NOOVERWRITE);
    free(buf);
    if (rc == MDB_KEYEXIST) return info_add(x, key, p, 0);
    if (rc) return mdb_fail(rc, "writing info", x->st);
    return 0;
}

/* ---------- set headers (class db) ---------- */
int pe_set_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > PE_SET_NAME_MAX)
        return pe_fail(PE_EUSAGE, "set name must be 1 to %d bytes",
                       PE_SET_NAME_MAX);
    if (name[0] == '.')
        return pe_fail(PE_EUSAGE, "set name '%s' starts with '.' (reserved)",
                       name);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f || c == '/' || c == '\t')
            return pe_fail(PE_EUSAGE, "set name has a control character or "
                           "'/'");
    }
    return 0;
}

static int get_raw_hdr(pe_txn *x, const char *name, MDB_val *v) {
    size_t n = strlen(name);
    if (n == 0 || n > PE_SET_NAME_MAX + 60)
        return pe_fail(PE_ENOTFOUND, "set '%s': no such set", name);
    MDB_val k = {n, (void *)name};
    int rc = mdb_get(x->t, x->st->cls, &k, v);
    if (rc == MDB_NOTFOUND)
        return pe_fail(PE_ENOTFOUND, "set '%s': no such set", name);
    if (rc) return mdb_fail(rc, "reading a set", x->st);
    return 0;
}

/* Parses a header value; classes go into x->classes (grown as needed). */
static int parse_hdr(pe_txn *x, const char *name, const MDB_val *v,
                     pe_set_hdr *h) {
    const uint8_t *p = v->mv_data, *end = p + v->mv_size;
    memset(h, 0, sizeof *h);
    if (v->mv_size < SETHDR_FIXED || p[0] != 1) goto bad;
    h->id = get32(p + 4);
    h->n_distinct = get64(p + 8);
    h->n_total = get64(p + 16);
    h->created = get64(p + 24);
    h->n_classes = get32(p + 32);
    uint32_t alen = get32(p + 36);
    if (h->n_classes > (v->mv_size - SETHDR_FIXED) / 3) goto bad;
    if (h->n_classes > x->classes_cap) {
        const char **c = realloc(x->classes, h->n_classes * sizeof *c);
        if (!c) return ENOMEM;
        x->classes = c;
        x->classes_cap = h->n_classes;
    }
    p += SETHDR_FIXED;
    for (uint32_t i = 0; i < h->n_classes; i++) {
        if (end - p < 3) goto bad;
        size_t l = get16(p);
        if ((size_t)(end - p - 2) < l + 1 || p[2 + l]) goto bad;
        x->classes[i] = (const char *)p + 2;
        p += 3 + l;
    }
    if ((size_t)(end - p) != (size_t)alen + 1 || p[alen]) goto bad;
    h->attrs = (const char *)p;
    h->classes = h->n_classes ? x->classes : NULL;
    for (int i = 0; i < x->ncache; i++)
        if (!strcmp(x->cache[i].name, name)) {
            h->n_distinct = x->cache[i].n_distinct;
            h->n_total = x->cache[i].n_total;
        }
    return 0;
bad:
    return pe_fail(PE_ECORRUPT, "set '%s': malformed header", name);
}

/* Builds a header value with the given pieces. */
static int build_hdr(uint32_t id, uint64_t nd, uint64_t nt, uint64_t created,
                     const char *const *classes, uint32_t ncls,
                     const char *attrs, MDB_val *out) {
    size_t len = SETHDR_FIXED, alen = attrs ? strlen(attrs) : 0;
    for (uint32_t i = 0; i < ncls; i++) {
        size_t l = strlen(classes[i] ? classes[i] : "");
        if (l > 65535) return pe_fail(PE_EUSAGE, "class name over 65535 bytes");
        len += 3 + l;
    }
    len += alen + 1;
    uint8_t *b = calloc(1, len), *p;
    if (!b) return ENOMEM;
    b[0] = 1;
    put32(b + 4, id);
    put64(b + 8, nd);
    put64(b + 16, nt);
    put64(b + 24, created);
    put32(b + 32, ncls);
    put32(b + 36, (uint32_t)alen);
    p = b + SETHDR_FIXED;
    for (uint32_t i = 0; i < ncls; i++) {
        const char *c = classes[i] ? classes[i] : "";
        size_t l = strlen(c);
        put16(p, (uint16_t)l);
        memcpy(p + 2, c, l + 1);
        p += 3 + l;
    }
    if (alen) memcpy(p, attrs, alen);
    p[alen] = 0;
    out->mv_size = len;
    out->mv_data = b;
    return 0;
}

static int put_hdr(pe_txn *x, const char *name, MDB_val *v) {
    MDB_val k = {strlen(name), (void *)name};
    int rc = mdb_put(x->t, x->st->cls, &k, v, 0);
    if (rc) return mdb_fail(rc, "writing a set header", x->st);
    return 0;
}

/* Writes cached counts back into the headers. */
static int flush_cache(pe_txn *x) {
    for (int i = 0; i < x->ncache; i++) {
        hdr_cache *c = &x->cache[i];
        if (!c->dirty) continue;
        MDB_val v;
        int rc = get_raw_hdr(x, c->name, &v);
        if (rc) return rc;
        uint8_t *b = malloc(v.mv_size);
        if (!b) return ENOMEM;
        memcpy(b, v.mv_data, v.mv_size);
        put64(b + 8, c->n_distinct);
        put64(b + 16, c->n_total);
        MDB_val nv = {v.mv_size, b};
        rc = put_hdr(x, c->name, &nv);
        free(b);
        if (rc) return rc;
        c->dirty = 0;
    }
    return 0;
}

static void drop_cache(pe_txn *x) { x->ncache = 0; }

static int cached(pe_txn *x, const char *name, hdr_cache **out) {
    for (int i = 0; i < x->ncache; i++)
        if (!strcmp(x->cache[i].name, name)) {
            *out = &x->cache[i];
            return 0;
        }
    if (strlen(name) >= sizeof x->cache[0].name)
        return pe_fail(PE_ENOTFOUND, "set '%s': no such set", name);
    if (x->ncache == HDR_CACHE_N) {
        int rc = flush_cache(x);
        if (rc) return rc;
        x->ncache = 0;
    }
    MDB_val v;
    int rc = get_raw_hdr(x, name, &v);
    if (rc) return rc;
    if (v.mv_size < SETHDR_FIXED || ((uint8_t *)v.mv_data)[0] != 1)
        return pe_fail(PE_ECORRUPT, "set '%s': malformed header", name);
    hdr_cache *c = &x->cache[x->ncache++];
    strcpy(c->name, name);
    c->id = get32((uint8_t *)v.mv_data + 4);
    c->n_distinct = get64((uint8_t *)v.mv_data + 8);
    c->n_total = get64((uint8_t *)v.mv_data + 16);
    c->dirty = 0;
    *out = c;
    return 0;
}

int pe_set_get(pe_txn *x, const char *name, pe_set_hdr *hdr) {
    MDB_val v;
    int rc = get_raw_hdr(x, name, &v);
    if (rc) return rc;
    return parse_hdr(x, name, &v, hdr);
}

static int next_set_id(pe_txn *x, uint32_t *id) {
    MDB_val k = {11, "next_set_id"}, v;
    int rc = mdb_get(x->t, x->st->meta, &k, &v);
    if (rc || v.mv_size != 4)
        return pe_fail(PE_ECORRUPT, "%s: store meta lacks next_set_id",
                       x->st->path);
    *id = get32(v.mv_data);
    if (*id == UINT32_MAX)
        return pe_fail(PE_ETOOBIG, "%s: set ids exhausted", x->st->path);
    uint8_t b[4];
    put32(b, *id + 1);
    MDB_val nv = {4, b};
    rc = mdb_put(x->t, x->st->meta, &k, &nv, 0);
    if (rc) return mdb_fail(rc, "allocating a set id", x->st);
    return 0;
}

int pe_set_create(pe_txn *x, const char *name) {
    MDB_val v;
    size_t n = strlen(name);
    if (n == 0 || n > PE_SET_NAME_MAX + 60)
        return pe_fail(PE_EUSAGE, "set name must be 1 to %d bytes",
                       PE_SET_NAME_MAX);
    int rc = get_raw_hdr(x, name, &v);
    if (rc == 0) return pe_fail(PE_EEXIST, "set '%s' exists", name);
    if (rc != PE_ENOTFOUND) return rc;
    pe_errclear();
    uint32_t id = 0;
    if ((rc = next_set_id(x, &id))) return rc;
    if ((rc = build_hdr(id, 0, 0, (uint64_t)time(NULL), NULL, 0, "", &v))) return rc;
    rc = put_hdr(x, name, &v);
    free(v.mv_data);
    return rc;
}

static int delete_entries(pe_txn *x, uint32_t id) {
    MDB_cursor *c;
    uint8_t kb[4 + PE_KEY_LEN] = {0};
    kb[0] = (uint8_t)(id >> 24); kb[1] = (uint8_t)(id >> 16);
    kb[2] = (uint8_t)(id >> 8); kb[3] = (uint8_t)id;
    int rc = mdb_cursor_open(x->t, x->st->set, &c);
    if (rc) return mdb_fail(rc, "deleting a set", x->st);
    MDB_val k = {sizeof kb, kb}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    /* After mdb_cursor_del, MDB_NEXT yields the entry that followed. */
    while (rc == 0 && k.mv_size == sizeof kb && !memcmp(k.mv_data, kb, 4)) {
        if ((rc = mdb_cursor_del(c, 0))) break;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND) return mdb_fail(rc, "deleting a set", x->st);
    return 0;
}

int pe_set_delete(pe_txn *x, const char *name) {
    pe_set_hdr h;
    int rc = flush_cache(x);
    if (rc || (rc = pe_set_get(x, name, &h))) return rc;
    drop_cache(x);
    if ((rc = delete_entries(x, h.id))) return rc;
    MDB_val k = {strlen(name), (void *)name};
    rc = mdb_del(x->t, x->st->cls, &k, NULL);
    if (rc) return mdb_fail(rc, "deleting a set", x->st);
    return 0;
}

int pe_set_rename(pe_txn *x, const char *from, const char *to, int replace) {
    MDB_val v;
    int rc = flush_cache(x);
    if (rc) return rc;
    drop_cache(x);
    if ((rc = get_raw_hdr(x, to, &v)) == 0) {
        if (!replace) return pe_fail(PE_EEXIST, "set '%s' exists", to);
        if ((rc = pe_set_delete(x, to))) return rc;
    } else if (rc != PE_ENOTFOUND) {
        return rc;
    }
    pe_errclear();
    if ((rc = get_raw_hdr(x, from, &v))) return rc;
    void *copy = malloc(v.mv_size);
    if (!copy) return ENOMEM;
    memcpy(copy, v.mv_data, v.mv_size);
    MDB_val nv = {v.mv_size, copy};
    rc = put_hdr(x, to, &nv);
    free(copy);
    if (rc) return rc;
    MDB_val k = {strlen(from), (void *)from};
    rc = mdb_del(x->t, x->st->cls, &k, NULL);
    if (rc) return mdb_fail(rc, "renaming a set", x->st);
    return 0;
}

static void entry_key(uint8_t *kb, uint32_t id, const pe_key *key) {
    kb[0] = (uint8_t)(id >> 24); kb[1] = (uint8_t)(id >> 16);
    kb[2] = (uint8_t)(id >> 8); kb[3] = (uint8_t)id;
    memcpy(kb + 4, key->b, PE_KEY_LEN);
}

static const char *label_str(int32_t l, char *b) {
    if (l == PE_LABEL_NONE) return "unlabeled";
    snprintf(b, 16, "%d", (int)l);
    return b;
}

int pe_set_add(pe_txn *x, const char *set, const pe_key *key, uint32_t count,
               int32_t label) {
    hdr_cache *c;
    int rc = cached(x, set, &c);
    if (rc) return rc;
    if (count == 0) return pe_fail(PE_EUSAGE, "count 0 added to a set");
    if (label < PE_LABEL_NONE) return pe_fail(PE_EUSAGE, "negative label %d", label);
    uint8_t kb[4 + PE_KEY_LEN], vb[SET_VAL_LEN];
    entry_key(kb, c->id, key);
    MDB_val k = {sizeof kb, kb}, v;
    uint64_t cnt = count;
    /* Most adds are new entries: try a no-overwrite put first (one B-tree
     * descent); on a hit it hands back the entry to update. */
    put32(vb, count);
    put32(vb + 4, (uint32_t)label);
    v.mv_size = sizeof vb;
    v.mv_data = vb;
    rc = mdb_put(x->t, x->st->set, &k, &v, MDB_NOOVERWRITE);
    if (rc == 0) {
        c->n_distinct++;
        c->n_total += count;
        c->dirty = 1;
        return 0;
    }
    if (rc == MDB_KEYEXIST) rc = 0;
    if (rc == 0) {
        if (v.mv_size != SET_VAL_LEN)
            return pe_fail(PE_ECORRUPT, "set '%s': malformed entry", set);
        int32_t old = (int32_t)get32((uint8_t *)v.mv_data + 4);
        if (old != label && old != PE_LABEL_NONE && label != PE_LABEL_NONE) {
            char hx[PE_KEY_HEX + 1], a[16], b[16];
            pe_key_to_hex(key, hx);
            return pe_fail(PE_EEXIST, "image %s: already in set '%s' with "
                           "label %s, not %s", hx, set, label_str(old, a),
                           label_str(label, b));
        }
        if (label == PE_LABEL_NONE) label = old;
        cnt += get32(v.mv_data);
        if (cnt > UINT32_MAX)
            return pe_fail(PE_ETOOBIG, "set '%s': count over 2^32", set);
    } else {
        return mdb_fail(rc, "writing a set entry", x->st);
    }
    put32(vb, (uint32_t)cnt);
    put32(vb + 4, (uint32_t)label);
    v.mv_size = sizeof vb;
    v.mv_data = vb;
    rc = mdb_put(x->t, x->st->set, &k, &v, 0);
    if (rc) return mdb_fail(rc, "writing a set entry", x->st);
    c->n_total += count;
    c->dirty = 1;
    return 0;
}

int pe_set_lookup(pe_txn *x, const char *set, const pe_key *key,
                  pe_set_entry *out) {
    pe_set_hdr h;
    int rc = pe_set_get(x, set, &h);
    if (rc) return rc;
    uint8_t kb[4 + PE_KEY_LEN];
    entry_key(kb, h.id, key);
    MDB_val k = {sizeof kb, kb}, v;
    rc = mdb_get(x->t, x->st->set, &k, &v);
    if (rc == MDB_NOTFOUND) {
        char hx[PE_KEY_HEX + 1];
        pe_key_to_hex(key, hx);
        return pe_fail(PE_ENOTFOUND, "image %s: not in set '%s'", hx, set);
    }
    if (rc) return mdb_fail(rc, "reading a set", x->st);
    if (v.mv_size != SET_VAL_LEN)
        return pe_fail(PE_ECORRUPT, "set '%s': malformed entry", set);
    out->key = *key;
    out->count = get32(v.mv_data);
    out->label = (int32_t)get32((uint8_t *)v.mv_data + 4);
    return 0;
}

int pe_set_remove(pe_txn *x, const char *set, const pe_key *key) {
    hdr_cache *c;
    pe_set_entry e;
    int rc = pe_set_lookup(x, set, key, &e);
    if (rc || (rc = cached(x, set, &c))) return rc;
    uint8_t kb[4 + PE_KEY_LEN];
    entry_key(kb, c->id, key);
    MDB_val k = {sizeof kb, kb};
    rc = mdb_del(x->t, x->st->set, &k, NULL);
    if (rc) return mdb_fail(rc, "removing a set entry", x->st);
    c->n_distinct--;
    c->n_total -= e.count;
    c->dirty = 1;
    return 0;
}

/* Rewrites a header with new classes and/or attrs (NULL keeps). */
static int rewrite_hdr(pe_txn *x, const char *set, const char *const *classes,
                       uint32_t ncls, int set_classes, const char *attrs) {
    pe_set_hdr h;
    int rc = flush_cache(x);
    if (rc || (rc = pe_set_get(x, set, &h))) return rc;
    /* Views die at the put: copy what is kept. */
    char *keep_attrs = strdup(attrs ? attrs : h.attrs);
    char **keep_cls = NULL;
    uint32_t n = set_classes ? ncls : h.n_classes;
    MDB_val v = {0, NULL};
    if (!keep_attrs) return ENOMEM;
    if (n && !(keep_cls = calloc(n, sizeof *keep_cls))) { rc = ENOMEM; goto out; }
    for (uint32_t i = 0; i < n; i++) {
        const char *s = set_classes ? (classes[i] ? classes[i] : "") : h.classes[i];
        if (!(keep_cls[i] = strdup(s))) { rc = ENOMEM; goto out; }
    }
    if ((rc = build_hdr(h.id, h.n_distinct, h.n_total, h.created,
                        (const char *const *)keep_cls, n, keep_attrs, &v)))
        goto out;
    rc = put_hdr(x, set, &v);
out:
    free(v.mv_data);
    if (keep_cls) for (uint32_t i = 0; i < n; i++) free(keep_cls[i]);
    free(keep_cls);
    free(keep_attrs);
    return rc;
}

int pe_set_set_classes(pe_txn *x, const char *set, const char *const *names,
                       uint32_t n) {
    return rewrite_hdr(x, set, names, n, 1, NULL);
}

int pe_set_set_attr(pe_txn *x, const char *set, const char *k, const char *v) {
    pe_set_hdr h;
    if (strchr(k, '=') || strchr(k, '\n') || (v && strchr(v, '\n')) || !*k)
        return pe_fail(PE_EUSAGE, "set attribute with '=' in key or a newline");
    int rc = flush_cache(x);
    if (rc || (rc = pe_set_get(x, set, &h))) return rc;
    size_t kl = strlen(k), al = strlen(h.attrs);
    char *out = malloc(al + kl + (v ? strlen(v) : 0) + 3), *o = out;
    if (!out) return ENOMEM;
    /* keep other lines, drop the old line of k */
    const char *p = h.attrs;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (!(l > kl && !memcmp(p, k, kl) && p[kl] == '=')) {
            memcpy(o, p, l);
            o += l;
            *o++ = '\n';
        }
        p += l + (e ? 1 : 0);
    }
    if (v) o += sprintf(o, "%s=%s\n", k, v);
    *o = 0;
    rc = rewrite_hdr(x, set, NULL, 0, 0, out);
    free(out);
    return rc;
}

int pe_set_class_id(const pe_set_hdr *h, const char *name, int32_t *id) {
    for (uint32_t i = 0; i < h->n_classes; i++)
        if (h->classes[i][0] && !strcmp(h->classes[i], name)) {
            *id = (int32_t)i;
            return 0;
        }
    char *end;
    long v = strtol(name, &end, 10);
    if (*name && *end == 0 && v >= 0 && v <= INT32_MAX) {
        *id = (int32_t)v;
        return 0;
    }
    return pe_fail(PE_ENOTFOUND, "no class '%s'", name);
}

/* ---------- iteration ---------- */
struct pe_set_iter {
    pe_txn *x;
    MDB_cursor *c;
    uint32_t id;
    uint64_t renew_every, seen;
    int started, done;
    uint8_t last[4 + PE_KEY_LEN];
};

int pe_set_iter_open(pe_txn *x, const char *set, uint64_t renew_every,
                     pe_set_iter **out) {
    pe_set_hdr h;
    int rc;
    *out = NULL;
    if (x->write && (rc = flush_cache(x))) return rc;
    if ((rc = pe_set_get(x, set, &h))) return rc;
    pe_set_iter *it = calloc(1, sizeof *it);
    if (!it) return ENOMEM;
    it->x = x;
    it->id = h.id;
    it->renew_every = x->write ? 0 : renew_every;
    rc = mdb_cursor_open(x->t, x->st->set, &it->c);
    if (rc) {
        free(it);
        return mdb_fail(rc, "reading a set", x->st);
    }
    *out = it;
    return 0;
}

int pe_set_iter_next(pe_set_iter *it, pe_set_entry *e) {
    MDB_val k, v;
    int rc;
    if (it->done) return 0;
    if (!it->started) {
        uint8_t kb[4 + PE_KEY_LEN] = {0};
        entry_key(kb, it->id, &(pe_key){{0}});
        k = (MDB_val){sizeof kb, kb};
        rc = mdb_cursor_get(it->c, &k, &v, MDB_SET_RANGE);
        it->started = 1;
    } else if (it->renew_every && it->seen % it->renew_every == 0) {
        mdb_cursor_close(it->c);
        it->c = NULL;
        if ((rc = pe_txn_renew(it->x))) return rc;
        rc = mdb_cursor_open(it->x->t, it->x->st->set, &it->c);
        if (rc) return mdb_fail(rc, "reading a set", it->x->st);
        k = (MDB_val){sizeof it->last, it->last};
        rc = mdb_cursor_get(it->c, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == sizeof it->last &&
            !memcmp(k.mv_data, it->last, sizeof it->last))
            rc = mdb_cursor_get(it->c, &k, &v, MDB_NEXT);
    } else {
        rc = mdb_cursor_get(it->c, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND) {
        it->done = 1;
        return 0;
    }
    if (rc) return mdb_fail(rc, "reading a set", it->x->st);
    const uint8_t *kb = k.mv_data;
    uint32_t id = (uint32_t)kb[0] << 24 | (uint32_t)kb[1] << 16 |
                  (uint32_t)kb[2] << 8 | kb[3];
    if (k.mv_size != 4 + PE_KEY_LEN || id != it->id) {
        it->done = 1;
        return 0;
    }
    if (v.mv_size != SET_VAL_LEN)
        return pe_fail(PE_ECORRUPT, "set entry of %zu bytes", v.mv_size);
    memcpy(it->last, kb, sizeof it->last);
    memcpy(e->key.b, kb + 4, PE_KEY_LEN);
    e->count = get32(v.mv_data);
    e->label = (int32_t)get32((uint8_t *)v.mv_data + 4);
    it->seen++;
    return 1;
}

void pe_set_iter_close(pe_set_iter *it) {
    if (!it) return;
    if (it->c) mdb_cursor_close(it->c);
    free(it);
}

int pe_set_list(pe_txn *x, int staging, pe_set_list_fn fn, void *ctx) {
    MDB_cursor *c;
    MDB_val k, v;
    int rc = x->write ? flush_cache(x) : 0;
    if (rc) return rc;
    if ((rc = mdb_cursor_open(x->t, x->st->cls, &c)))
        return mdb_fail(rc, "listing sets", x->st);
    char name[PE_SET_NAME_MAX + 64];
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size >= sizeof name) continue;
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = 0;
        if (!staging && name[0] == '.') continue;
        pe_set_hdr h;
        if ((rc = parse_hdr(x, name, &v, &h))) break;
        if ((rc = fn(ctx, name, &h))) break;
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) rc = 0;
    else if (rc < -30000 && rc > -31000) rc = mdb_fail(rc, "listing sets", x->st);
    return rc;
}

/* ---------- stats and gc ---------- */
int pe_store_stats_get(pe_txn *x, pe_store_stats *s) {
    MDB_stat ms;
    MDB_envinfo ei;
    MDB_cursor *c;
    MDB_val k, v;
    int rc;
    memset(s, 0, sizeof *s);
    if ((rc = mdb_stat(x->t, x->st->img, &ms))) goto mfail;
    s->n_images = ms.ms_entries;
    s->page_size = ms.ms_psize;
    if ((rc = mdb_stat(x->t, x->st->info, &ms))) goto mfail;
    s->n_info = ms.ms_entries;
    if ((rc = mdb_stat(x->t, x->st->set, &ms))) goto mfail;
    s->n_set_entries = ms.ms_entries;
    if ((rc = mdb_stat(x->t, x->st->cls, &ms))) goto mfail;
    s->n_sets = ms.ms_entries;
    if ((rc = mdb_env_info(x->st->env, &ei))) goto mfail;
    s->map_size = ei.me_mapsize;
    s->file_size = (uint64_t)(ei.me_last_pgno + 1) * s->page_size;
    k = (MDB_val){7, "version"};
    if (mdb_get(x->t, x->st->meta, &k, &v) == 0 && v.mv_size == 4)
        s->version = get32(v.mv_data);
    k = (MDB_val){7, "created"};
    if (mdb_get(x->t, x->st->meta, &k, &v) == 0 && v.mv_size == 8)
        s->created = get64(v.mv_data);
    if ((rc = mdb_cursor_open(x->t, x->st->img, &c))) goto mfail;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        pe_img_hdr h;
        pe_key key;
        if (k.mv_size != PE_KEY_LEN) continue;
        memcpy(key.b, k.mv_data, PE_KEY_LEN);
        if ((rc = parse_img(&key, &v, &h))) break;
        s->bytes_pixels += (uint64_t)h.w * h.h * h.c;
        s->bytes_stored += v.mv_size;
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc < 0 && rc > -2000) return rc;
mfail:
    return mdb_fail(rc, "reading statistics", x->st);
}

/* A set of 16-byte keys (open addressing), for gc. */
typedef struct keyset {
    uint8_t *slots; /* cap x 16; all-zero = empty, zero key kept aside */
    size_t cap, n;
    int has_zero;
} keyset;

static int keyset_add(keyset *s, const uint8_t *k) {
    static const uint8_t zero[PE_KEY_LEN];
    if (!memcmp(k, zero, PE_KEY_LEN)) {
        s->has_zero = 1;
        return 0;
    }
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint8_t *sl = calloc(cap, PE_KEY_LEN);
        if (!sl) return ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            const uint8_t *o = s->slots + i * PE_KEY_LEN;
            if (!memcmp(o, zero, PE_KEY_LEN)) continue;
            size_t j = get64(o) & (cap - 1);
            while (memcmp(sl + j * PE_KEY_LEN, zero, PE_KEY_LEN)) j = (j + 1) & (cap - 1);
            memcpy(sl + j * PE_KEY_LEN, o, PE_KEY_LEN);
        }
        free(s->slots);
        s->slots = sl;
        s->cap = cap;
    }
    size_t j = get64(k) & (s->cap - 1);
    while (memcmp(s->slots + j * PE_KEY_LEN, zero, PE_KEY_LEN)) {
        if (!memcmp(s->slots + j * PE_KEY_LEN, k, PE_KEY_LEN)) return 0;
        j = (j + 1) & (s->cap - 1);
    }
    memcpy(s->slots + j * PE_KEY_LEN, k, PE_KEY_LEN);
    s->n++;
    return 0;
}

static int keyset_has(const keyset *s, const uint8_t *k) {
    static const uint8_t zero[PE_KEY_LEN];
    if (!memcmp(k, zero, PE_KEY_LEN)) return s->has_zero;
    if (!s->cap) return 0;
    size_t j = get64(k) & (s->cap - 1);
    while (memcmp(s->slots + j * PE_KEY_LEN, zero, PE_KEY_LEN)) {
        if (!memcmp(s->slots + j * PE_KEY_LEN, k, PE_KEY_LEN)) return 1;
        j = (j + 1) & (s->cap - 1);
    }
    return 0;
}

/* Start time of a process (clock ticks since boot, /proc/PID/stat field
 * 22), or 0 when it does not exist. */
static unsigned long long proc_start(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return 0;
    unsigned long long v = 0;
    /* p walks the spaces: at step k it is the space before field k */
    for (int field = 3; field <= 22 && *p; field++) {
        p = strchr(p + 1, ' ');
        if (!p) return 0;
        if (field == 22) v = strtoull(p + 1, NULL, 10);
    }
    return v;
}

int pe_writer_identity(char *buf, size_t n) {
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "?");
    long pid = (long)getpid();
    return snprintf(buf, n, "%s %ld %llu", host, pid, proc_start(pid)) < (int)n ? 0 : PE_ETOOBIG;
}

/* A staging set (".staging.<pid>.<name>") is dead when its writer, recorded
 * in the "writer=HOST PID START" attribute, ran on this host and is gone
 * (no such pid, or a pid reused by a process that started at another
 * time). Writers on other hosts sharing the store are left alone. */
static int staging_dead(const char *name, const pe_set_hdr *h) {
    if (strncmp(name, STAGING_PREFIX, strlen(STAGING_PREFIX))) return 0;
    const char *w = strstr(h->attrs, "writer=");
    if (w && (w == h->attrs || w[-1] == '\n')) {
        char host[256], me[256] = "";
        long pid;
        unsigned long long start;
        if (sscanf(w + 7, "%255s %ld %llu", host, &pid, &start) == 3) {
            gethostname(me, sizeof me - 1);
            if (strcmp(host, me)) return 0;
            return proc_start(pid) != start;
        }
    }
    char *end;
    long pid = strtol(name + strlen(STAGING_PREFIX), &end, 10);
    if (*end != '.' || pid <= 0) return 1;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

typedef struct names {
    char **v;
    size_t n, cap;
} names;

static int collect_dead(void *ctx, const char *name, const pe_set_hdr *h) {
    names *ns = ctx;
    if (!staging_dead(name, h)) return 0;
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 8;
        char **v = realloc(ns->v, cap * sizeof *v);
        if (!v) return ENOMEM;
        ns->v = v;
        ns->cap = cap;
    }
    if (!(ns->v[ns->n] = strdup(name))) return ENOMEM;
    ns->n++;
    return 0;
}

int pe_store_gc(pe_txn *x, uint64_t *n) {
    keyset ks = {0};
    names dead = {0};
    MDB_cursor *c = NULL;
    MDB_val k, v;
    *n = 0;
    int rc = pe_set_list(x, 1, collect_dead, &dead);
    for (size_t i = 0; rc == 0 && i < dead.n; i++) rc = pe_set_delete(x, dead.v[i]);
    for (size_t i = 0; i < dead.n; i++) free(dead.v[i]);
    free(dead.v);
    if (rc) return rc;
    if ((rc = mdb_cursor_open(x->t, x->st->set, &c))) goto mfail;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 4 + PE_KEY_LEN) continue;
        if ((rc = keyset_add(&ks, (const uint8_t *)k.mv_data + 4))) goto out;
    }
    mdb_cursor_close(c);
    c = NULL;
    if (rc != MDB_NOTFOUND) goto mfail;
    if ((rc = mdb_cursor_open(x->t, x->st->img, &c))) goto mfail;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size == PE_KEY_LEN && !keyset_has(&ks, k.mv_data)) {
            uint8_t kb[PE_KEY_LEN];
            memcpy(kb, k.mv_data, PE_KEY_LEN);
            MDB_val ik = {PE_KEY_LEN, kb};
            if ((rc = mdb_cursor_del(c, 0))) goto mfail;
            if ((rc = mdb_del(x->t, x->st->info, &ik, NULL)) && rc != MDB_NOTFOUND)
                goto mfail;
            (*n)++;
        }
    }
    if (rc != MDB_NOTFOUND) goto mfail;
    mdb_cursor_close(c);
    c = NULL;
    /* derived records of images no set holds: those just deleted, and any
     * an older program left behind when it deleted their image */
    if (x->st->has_derived) {
        if ((rc = mdb_cursor_open(x->t, x->st->derived, &c))) goto mfail;
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
            if ((k.mv_size != PE_KEY_LEN + 1 || !keyset_has(&ks, k.mv_data)) &&
                (rc = mdb_cursor_del(c, 0)))
                goto mfail;
        if (rc != MDB_NOTFOUND) goto mfail;
    }
    rc = 0;
    goto out;
mfail:
    rc = mdb_fail(rc, "collecting garbage", x->st);
out:
    if (c) mdb_cursor_close(c);
    free(ks.slots);
    return rc;
}

/* ---------- consistency check ---------- */
typedef struct check_set {
    uint32_t id;
    uint64_t nd, nt, seen_d, seen_t;
    char name[PE_SET_NAME_MAX + 64];
} check_set;

typedef struct check_ctx {
    check_set *v;
    size_t n, cap;
} check_ctx;

static int check_collect(void *ctx, const char *name, const pe_set_hdr *h) {
    check_ctx *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        check_set *v = realloc(c->v, cap * sizeof *v);
        if (!v) return ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    check_set *s = &c->v[c->n++];
    memset(s, 0, sizeof *s);
    s->id = h->id;
    s->nd = h->n_distinct;
    s->nt = h->n_total;
    snprintf(s->name, sizeof s->name, "%s", name);
    return 0;
}

static void problem(pe_check_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void problem(pe_check_report *r, const char *fmt, ...) {
    if (r->problems++ == 0) {
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        pe_fail(PE_ECORRUPT, "%s", buf);
    }
}

int pe_store_check(pe_txn *x, pe_check_report *r) {
    check_ctx sets = {0};
    MDB_cursor *c = NULL;
    MDB_val k, v;
    char hx[PE_KEY_HEX + 1];
    memset(r, 0, sizeof *r);
    int rc = pe_set_list(x, 1, check_collect, &sets);
    if (rc) goto out;
    r->sets = sets.n;
    /* images */
    if ((rc = mdb_cursor_open(x->t, x->st->img, &c))) goto mfail;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        pe_key key;
        r->images++;
        if (k.mv_size != PE_KEY_LEN) {
            problem(r, "img: a key of %zu bytes", k.mv_size);
            continue;
        }
        memcpy(key.b, k.mv_data, PE_KEY_LEN);
        pe_image im = {0};
        int e = decode_img(&key, &v, &im);
        if (e == ENOMEM) { rc = e; goto out; }
        if (e) {
            problem(r, "%s", pe_errmsg());
            continue;
        }
        pe_key again;
        pe_key_of_image(&im, &again);
        pe_image_free(&im);
        if (memcmp(&again, &key, sizeof key)) {
            pe_key_to_hex(&key, hx);
            problem(r, "image %s: pixels do not hash to their key", hx);
        }
    }
    mdb_cursor_close(c);
    c = NULL;
    if (rc != MDB_NOTFOUND) goto mfail;
    /* info */
    if ((rc = mdb_cursor_open(x->t, x->st->info, &c))) goto mfail;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        pe_key key;
        pe_info info;
        r->infos++;
        if (k.mv_size != PE_KEY_LEN) {
            problem(r, "info: a key of %zu bytes", k.mv_size);
            continue;
        }
        memcpy(key.b, k.mv_data, PE_KEY_LEN);
        if (parse_info(&key, &v, &info)) problem(r, "%s", pe_errmsg());
    }
    mdb_cursor_close(c);
    c = NULL;
    if (rc != MDB_NOTFOUND) goto mfail;
    /* set entries */
    if ((rc = mdb_cursor_open(x->t, x->st->set, &c))) goto mfail;
    check_set *cur = NULL;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        r->entries++;
        if (k.mv_size != 4 + PE_KEY_LEN || v.mv_size != SET_VAL_LEN) {
            problem(r, "set: an entry of %zu+%zu bytes", k.mv_size, v.mv_size);
            continue;
        }
        const uint8_t *kb = k.mv_data;
        uint32_t id = (uint32_t)kb[0] << 24 | (uint32_t)kb[1] << 16 |
                      (uint32_t)kb[2] << 8 | kb[3];
        if (!cur || cur->id != id) {
            cur = NULL;
            for (size_t i = 0; i < sets.n; i++)
                if (sets.v[i].id == id) cur = &sets.v[i];
        }
        pe_key key;
        memcpy(key.b, kb + 4, PE_KEY_LEN);
        pe_key_to_hex(&key, hx);
        if (!cur) {
            problem(r, "set entry %s belongs to no set (id %u)", hx, id);
            continue;
        }
        cur->seen_d++;
        cur->seen_t += get32(v.mv_data);
        MDB_val ik = {PE_KEY_LEN, key.b}, iv;
        if (mdb_get(x->t, x->st->img, &ik, &iv))
            problem(r, "set '%s': image %s has no record", cur->name, hx);
        if (mdb_get(x->t, x->st->info, &ik, &iv))
            problem(r, "set '%s': image %s has no info", cur->name, hx);
    }
    if (rc != MDB_NOTFOUND) goto mfail;
    for (size_t i = 0; i < sets.n; i++) {
        check_set *s = &sets.v[i];
        if (s->nd != s->seen_d || s->nt != s->seen_t)
            problem(r, "set '%s': header says %llu distinct / %llu total, entries "
                    "hold %llu / %llu", s->name, (unsigned long long)s->nd,
                    (unsigned long long)s->nt, (unsigned long long)s->seen_d,
                    (unsigned long long)s->seen_t);
    }
    rc = 0;
    goto out;
mfail:
    rc = mdb_fail(rc, "checking", x->st);
out:
    if (c) mdb_cursor_close(c);
    free(sets.v);
    return rc;
}
