/*
 * test_store.c - the store: keys (against Python's xxhash), records of both
 * encodings, collisions, info bounds, sets (multiset counts, labels,
 * prefix isolation, rename, delete, iteration with renewal), versions,
 * non-stores, map growth, double open, gc.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "escape.h"
#include "pe.h"
#include "store.h"

static char tmpdir[256];

static void path_in(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static void fill(pe_image *im, uint32_t w, uint32_t h, uint32_t c, uint32_t seed) {
    pe_image_alloc(im, w, h, c);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < pe_image_size(im); i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        im->px[i] = (uint8_t)(i % 7 == 0 ? x : (i / 3) & 0xff);
    }
}

static pe_store *open_new(const char *name) {
    char p[512];
    path_in(p, sizeof p, name);
    pe_store *st = NULL;
    CHECK_OK(pe_store_open(&st, p, PE_STORE_CREATE));
    return st;
}

/* Keys against an independent XXH3-128 (python3-xxhash) over the documented
 * layout: u32 LE w, h, c, then the pixels. */
static void test_key_python(void) {
    pe_image im = {0};
    fill(&im, 5, 3, 3, 7);
    char raw[512], hx[PE_KEY_HEX + 1];
    path_in(raw, sizeof raw, "px.bin");
    FILE *f = fopen(raw, "wb");
    fwrite(im.px, 1, pe_image_size(&im), f);
    fclose(f);
    pe_key k;
    pe_key_of_image(&im, &k);
    pe_key_to_hex(&k, hx);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys,struct,xxhash;"
             "px=open(sys.argv[1],\"rb\").read();"
             "print(xxhash.xxh3_128_hexdigest(struct.pack(\"<III\",5,3,3)+px))' %s 2>/dev/null",
             raw);
    FILE *p = popen(cmd, "r");
    char line[128] = "";
    if (!p || !fgets(line, sizeof line, p) || strlen(line) < PE_KEY_HEX) {
        if (p) pclose(p);
        fprintf(stderr, "  skip: python3-xxhash not available\n");
    } else {
        pclose(p);
        line[PE_KEY_HEX] = 0;
        CHECK(!strcmp(line, hx));
        if (strcmp(line, hx)) fprintf(stderr, "  pe %s python %s\n", hx, line);
    }
    /* hex round trip, bad hex */
    pe_key k2;
    CHECK_OK(pe_key_from_hex(hx, PE_KEY_HEX, &k2));
    CHECK(!memcmp(&k, &k2, sizeof k));
    CHECK_RC(pe_key_from_hex("zz", 2, &k2), PE_EFORMAT);
    char bad[PE_KEY_HEX + 1];
    memcpy(bad, hx, sizeof bad);
    bad[5] = 'g';
    CHECK_RC(pe_key_from_hex(bad, PE_KEY_HEX, &k2), PE_EFORMAT);
    pe_image_free(&im);
}

static void test_put_get(void) {
    pe_store *st = open_new("a.lmdb");
    pe_txn *t;
    pe_image a = {0}, b = {0}, got = {0};
    fill(&a, 64, 32, 3, 1); /* a 2:1 composite stays 2:1 */
    fill(&b, 17, 9, 1, 2);
    pe_key ka, kb, k2;
    int existed;
    pe_prov p = {"file-a.png", "decode=png", 64, 32, 3, 8, 2};
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_img_put(t, &a, PE_ENC_RAW, &p, &ka, &existed));
    CHECK(existed == 0);
    CHECK_OK(pe_img_put(t, &b, PE_ENC_DEFLATE, NULL, &kb, &existed));
    p.src = "file-a-copy.png";
    CHECK_OK(pe_img_put(t, &a, PE_ENC_RAW, &p, &k2, &existed));
    CHECK(existed == 1 && !memcmp(&ka, &k2, sizeof ka));
    /* the same source again is not a new occurrence */
    CHECK_OK(pe_img_put(t, &a, PE_ENC_RAW, &p, &k2, &existed));
    CHECK_OK(pe_txn_commit(t));

    CHECK_OK(pe_txn_begin(st, 0, &t));
    CHECK_OK(pe_img_get(t, &ka, &got));
    CHECK(got.w == 64 && got.h == 32 && got.c == 3 &&
          !memcmp(got.px, a.px, pe_image_size(&a)));
    pe_image_free(&got);
    CHECK_OK(pe_img_get(t, &kb, &got));
    CHECK(got.w == 17 && got.h == 9 && got.c == 1 &&
          !memcmp(got.px, b.px, pe_image_size(&b)));
    pe_image_free(&got);
    pe_img_hdr h;
    CHECK_OK(pe_img_stat(t, &kb, &h));
    CHECK(h.encoding == PE_ENC_DEFLATE);
    pe_info info;
    CHECK_OK(pe_info_get(t, &ka, &info));
    CHECK(info.count == 2 && info.n == 2);
    CHECK(!strcmp(info.prov[0].src, "file-a.png") && !strcmp(info.prov[1].src, "file-a-copy.png"));
    CHECK(!strcmp(info.prov[0].ops, "decode=png") && info.prov[0].orig_w == 64);
    pe_key unknown = {{1, 2, 3}};
    CHECK_RC(pe_img_get(t, &unknown, &got), PE_ENOTFOUND);
    CHECK(strstr(pe_errmsg(), "01020300") != NULL); /* the message names the key */
    pe_txn_abort(t);
    pe_image_free(&a);
    pe_image_free(&b);
    pe_store_close(st);
}

/* Derived records: per (key, tag), replaced by a put, deleted with the
 * image, and absent (not an error) where never stored. */
static void test_derived(void) {
    pe_store *st = open_new("derived.lmdb");
    pe_txn *t;
    pe_image a = {0}, b = {0};
    fill(&a, 8, 8, 1, 3);
    fill(&b, 9, 8, 1, 4);
    pe_key ka, kb;
    int existed;
    const void *v;
    size_t len;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_img_put(t, &a, PE_ENC_RAW, NULL, &ka, &existed));
    CHECK_OK(pe_img_put(t, &b, PE_ENC_RAW, NULL, &kb, &existed));
    CHECK_RC(pe_derived_get(t, &ka, 1, &v, &len), PE_ENOTFOUND);
    CHECK_OK(pe_derived_put(t, &ka, 1, "one", 3));
    CHECK_OK(pe_derived_put(t, &ka, 2, "two!", 4));
    CHECK_OK(pe_derived_put(t, &kb, 1, "b", 1));
    CHECK_OK(pe_derived_put(t, &ka, 1, "uno", 3)); /* replaces */
    CHECK_OK(pe_txn_commit(t));
    CHECK_OK(pe_txn_begin(st, 0, &t));
    CHECK_OK(pe_derived_get(t, &ka, 1, &v, &len));
    CHECK(len == 3 && !memcmp(v, "uno", 3));
    CHECK_OK(pe_derived_get(t, &ka, 2, &v, &len));
    CHECK(len == 4 && !memcmp(v, "two!", 4));
    CHECK_RC(pe_derived_get(t, &ka, 3, &v, &len), PE_ENOTFOUND);
    pe_txn_abort(t);
    /* deleting an image deletes its records, and only its */
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_img_del(t, &ka));
    CHECK_OK(pe_txn_commit(t));
    CHECK_OK(pe_txn_begin(st, 0, &t));
    CHECK_RC(pe_derived_get(t, &ka, 1, &v, &len), PE_ENOTFOUND);
    CHECK_RC(pe_derived_get(t, &ka, 2, &v, &len), PE_ENOTFOUND);
    CHECK_OK(pe_derived_get(t, &kb, 1, &v, &len));
    CHECK(len == 1 && !memcmp(v, "b", 1));
    pe_txn_abort(t);
    pe_image_free(&a);
    pe_image_free(&b);
    pe_store_close(st);
}

/* Records of over half a page, put in ascending key order (appended
 * past the last key), then between and before them, and over the last one
 * (equal: replaced, not appended), all read back whole. */
static void test_derived_order(void) {
    pe_store *st = open_new("derived-order.lmdb");
    pe_txn *t;
    enum { N = 120, LEN = 1400 };
    static uint8_t val[LEN];
    pe_key k;
    const void *v;
    size_t len;
    for (int pass = 0; pass < 3; pass++) {
        CHECK_OK(pe_txn_begin(st, 1, &t));
        for (int i = 0; i < N; i++) {
            /* pass 0: even keys ascending; pass 1: odd keys descending;
             * pass 2: every third key again, ascending (replacements) */
            int key = pass == 0 ? 2 * i : pass == 1 ? 2 * (N - 1 - i) + 1 : 3 * i;
            if (key >= 2 * N) break;
            memset(&k, 0, sizeof k);
            k.b[0] = (uint8_t)(key >> 8);
            k.b[1] = (uint8_t)key;
            memset(val, (uint8_t)(key + 7 * pass), LEN);
            CHECK_OK(pe_derived_put(t, &k, 1, val, LEN - (size_t)pass));
        }
        CHECK_OK(pe_txn_commit(t));
    }
    CHECK_OK(pe_txn_begin(st, 0, &t));
    int bad = 0;
    for (int key = 0; key < 2 * N; key++) {
        memset(&k, 0, sizeof k);
        k.b[0] = (uint8_t)(key >> 8);
        k.b[1] = (uint8_t)key;
        int pass = key % 3 == 0 ? 2 : key % 2;
        if (pe_derived_get(t, &k, 1, &v, &len) || len != LEN - (size_t)pass) {
            bad++;
            continue;
        }
        for (size_t j = 0; j < len; j++)
            if (((const uint8_t *)v)[j] != (uint8_t)(key + 7 * pass)) {
                bad++;
                break;
            }
    }
    CHECK(bad == 0);
    pe_txn_abort(t);
    pe_store_close(st);
}

/* One image submitted many times keeps a count and the first sources only. */
static void test_info_bounded(void) {
    pe_store *st = open_new("b.lmdb");
    pe_txn *t;
    pe_image a = {0};
    fill(&a, 4, 4, 1, 3);
    pe_key k;
    int existed;
    char src[64];
    CHECK_OK(pe_txn_begin(st, 1, &t));
    for (int i = 0; i < 1000; i++) {
        snprintf(src, sizeof src, "copy-%d.png", i);
        pe_prov p = {src, "", 4, 4, 1, 8, 2};
        CHECK_OK(pe_img_put(t, &a, PE_ENC_RAW, &p, &k, &existed));
    }
    pe_info info;
    CHECK_OK(pe_info_get(t, &k, &info));
    CHECK(info.count == 1000 && info.n == PE_INFO_MAX_SOURCES);
    CHECK(!strcmp(info.prov[0].src, "copy-0.png"));
    /* a source longer than PE_SOURCE_MAX is cut at a character boundary */
    char *lng = malloc(3000);
    memset(lng, 'x', 2999);
    lng[2999] = 0;
    pe_image b = {0};
    fill(&b, 4, 4, 1, 4);
    pe_prov p = {lng, "", 4, 4, 1, 8, 2};
    CHECK_OK(pe_img_put(t, &b, PE_ENC_RAW, &p, &k, &existed));
    CHECK_OK(pe_info_get(t, &k, &info));
    CHECK(strlen(info.prov[0].src) == PE_SOURCE_MAX);
    pe_txn_abort(t);
    free(lng);
    pe_image_free(&a);
    pe_image_free(&b);
    pe_store_close(st);
}

/* A stored record whose pixels differ from the new image under the same key
 * (forged here by writing a record under a foreign key) is an error. */
static void test_collision(void) {
    char p[512];
    pe_store *st = open_new("c.lmdb");
    pe_image a = {0}, b = {0};
    fill(&a, 8, 8, 1, 5);
    fill(&b, 8, 8, 1, 6);
    pe_key ka;
    pe_key_of_image(&a, &ka);
    pe_store_close(st);
    /* forge: put b's record under a's key with raw LMDB */
    path_in(p, sizeof p, "c.lmdb");
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 8);
    CHECK(mdb_env_open(env, p, 0, 0666) == 0);
    mdb_txn_begin(env, NULL, 0, &txn);
    CHECK(mdb_dbi_open(txn, "img", 0, &dbi) == 0);
    uint8_t rec[16 + 64] = {'P', 1, 0, 1, 8, 0, 0, 0, 8, 0, 0, 0};
    memcpy(rec + 16, b.px, 64);
    MDB_val k = {16, ka.b}, v = {sizeof rec, rec};
    CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);

    CHECK_OK(pe_store_open(&st, p, PE_STORE_CREATE));
    pe_txn *t;
    int existed;
    pe_key out;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_RC(pe_img_put(t, &a, PE_ENC_RAW, NULL, &out, &existed), PE_ECOLLISION);
    pe_txn_abort(t);
    pe_store_close(st);
    pe_image_free(&a);
    pe_image_free(&b);
}

/* Length checks on read: a record that lies about its size. */
static void test_corrupt_record(void) {
    char p[512];
    pe_store *st = open_new("d.lmdb");
    pe_store_close(st);
    path_in(p, sizeof p, "d.lmdb");
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 8);
    CHECK(mdb_env_open(env, p, 0, 0666) == 0);
    mdb_txn_begin(env, NULL, 0, &txn);
    CHECK(mdb_dbi_open(txn, "img", 0, &dbi) == 0);
    uint8_t rec[16 + 10] = {'P', 1, 0, 3, 100, 0, 0, 0, 100, 0, 0, 0};
    uint8_t key[16] = {9};
    MDB_val k = {16, key}, v = {sizeof rec, rec};
    mdb_put(txn, dbi, &k, &v, 0);
    uint8_t rec2[16 + 8] = {'P', 7, 0, 1, 2, 0, 0, 0, 2, 0, 0, 0};
    uint8_t key2[16] = {10};
    MDB_val k2 = {16, key2}, v2 = {sizeof rec2, rec2};
    mdb_put(txn, dbi, &k2, &v2, 0);
    uint8_t rec3[16 + 8] = {'P', 1, 1, 1, 2, 0, 0, 0, 2, 0, 0, 0};
    uint8_t key3[16] = {11};
    MDB_val k3 = {16, key3}, v3 = {sizeof rec3, rec3};
    mdb_put(txn, dbi, &k3, &v3, 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);
    CHECK_OK(pe_store_open(&st, p, PE_STORE_RDONLY));
    pe_txn *t;
    pe_image im = {0};
    pe_key pk;
    CHECK_OK(pe_txn_begin(st, 0, &t));
    memcpy(pk.b, key, 16);
    CHECK_RC(pe_img_get(t, &pk, &im), PE_ECORRUPT);
    memcpy(pk.b, key2, 16);
    CHECK_RC(pe_img_get(t, &pk, &im), PE_EVERSION);
    memcpy(pk.b, key3, 16);
    CHECK_RC(pe_img_get(t, &pk, &im), PE_ECORRUPT); /* deflate garbage */
    CHECK(im.px == NULL);
    pe_txn_abort(t);
    pe_store_close(st);
}

static void add_n(pe_txn *t, const char *set, int n, uint32_t seed, int32_t label) {
    for (int i = 0; i < n; i++) {
        pe_image im = {0};
        fill(&im, 3, 3, 1, seed + (uint32_t)i);
        pe_key k;
        int existed;
        CHECK_OK(pe_img_put(t, &im, PE_ENC_RAW, NULL, &k, &existed));
        CHECK_OK(pe_set_add(t, set, &k, 1, label));
        pe_image_free(&im);
    }
}

static uint64_t count_iter(pe_txn *t, const char *set, uint64_t renew, uint64_t *total) {
    pe_set_iter *it;
    pe_set_entry e;
    uint64_t n = 0;
    *total = 0;
    if (pe_set_iter_open(t, set, renew, &it)) return UINT64_MAX;
    int rc;
    while ((rc = pe_set_iter_next(it, &e)) == 1) {
        n++;
        *total += e.count;
    }
    CHECK(rc == 0);
    pe_set_iter_close(it);
    return n;
}

static void test_sets(void) {
    pe_store *st = open_new("e.lmdb");
    pe_txn *t;
    uint64_t total;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_set_create(t, "train"));
    CHECK_OK(pe_set_create(t, "train+poison"));
    CHECK_RC(pe_set_create(t, "train"), PE_EEXIST);
    add_n(t, "train", 50, 100, 3);
    add_n(t, "train+poison", 60, 100, 3); /* 50 shared + 10 */
    /* multiset: the same image three times */
    pe_image im = {0};
    fill(&im, 3, 3, 1, 100);
    pe_key k;
    pe_key_of_image(&im, &k);
    pe_image_free(&im);
    CHECK_OK(pe_set_add(t, "train", &k, 2, 3));
    CHECK_RC(pe_set_add(t, "train", &k, 1, 4), PE_EEXIST); /* label clash */
    CHECK_OK(pe_set_add(t, "train", &k, 1, PE_LABEL_NONE)); /* keeps label 3 */
    CHECK_OK(pe_txn_commit(t));

    CHECK_OK(pe_txn_begin(st, 0, &t));
    pe_set_hdr h;
    CHECK_OK(pe_set_get(t, "train", &h));
    CHECK(h.n_distinct == 50 && h.n_total == 53);
    CHECK(count_iter(t, "train", 0, &total) == 50 && total == 53);
    CHECK(count_iter(t, "train+poison", 0, &total) == 60 && total == 60);
    CHECK(count_iter(t, "train", 7, &total) == 50 && total == 53); /* renewing */
    pe_set_entry e;
    CHECK_OK(pe_set_lookup(t, "train", &k, &e));
    CHECK(e.count == 4 && e.label == 3);
    CHECK_RC(pe_set_get(t, "tra", &h), PE_ENOTFOUND);
    pe_txn_abort(t);

    /* classes, attrs, rename, delete */
    const char *names[] = {"T-shirt/top", "", "bag\tx"};
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_set_set_classes(t, "train", names, 3));
    CHECK_OK(pe_set_set_attr(t, "train", "injected", "10"));
    CHECK_OK(pe_set_set_attr(t, "train", "rate", "0.1"));
    CHECK_OK(pe_set_set_attr(t, "train", "injected", "12"));
    CHECK_OK(pe_set_get(t, "train", &h));
    CHECK(h.n_classes == 3 && !strcmp(h.classes[0], "T-shirt/top") && !strcmp(h.classes[2], "bag\tx"));
    CHECK(!strcmp(h.attrs, "rate=0.1\ninjected=12\n"));
    CHECK(h.n_total == 53); /* the rewrite kept the counts */
    int32_t id;
    CHECK_OK(pe_set_class_id(&h, "bag\tx", &id));
    CHECK(id == 2);
    CHECK_OK(pe_set_class_id(&h, "7", &id));
    CHECK(id == 7);
    CHECK_RC(pe_set_class_id(&h, "nope", &id), PE_ENOTFOUND);
    CHECK_RC(pe_set_rename(t, "train", "train+poison", 0), PE_EEXIST);
    CHECK_OK(pe_set_rename(t, "train", "renamed", 0));
    CHECK_RC(pe_set_get(t, "train", &h), PE_ENOTFOUND);
    CHECK(count_iter(t, "renamed", 0, &total) == 50 && total == 53);
    CHECK_OK(pe_set_remove(t, "renamed", &k));
    CHECK_OK(pe_set_get(t, "renamed", &h));
    CHECK(h.n_distinct == 49 && h.n_total == 49);
    CHECK_OK(pe_set_delete(t, "train+poison"));
    CHECK(count_iter(t, "renamed", 0, &total) == 49);
    CHECK_OK(pe_txn_commit(t));

    /* gc: images only in the deleted set go; those in "renamed" stay */
    uint64_t n;
    CHECK_OK(pe_txn_begin(st, 1, &t));
    CHECK_OK(pe_store_gc(t, &n));
    CHECK(n == 11); /* 10 only in train+poison, plus the removed one */
    pe_store_stats s;
    CHECK_OK(pe_store_stats_get(t, &s));
    CHECK(s.n_images == 49 && s.n_sets == 1 && s.n_set_entries == 49);
    CHECK_OK(pe_txn_commit(t));
    pe_store_close(st);
}

static void test_names(void) {
    CHECK_OK(pe_set_name_ok("train+poison"));
    CHECK_RC(pe_set_name_ok(""), PE_EUSAGE);
    CHECK_RC(pe_set_name_ok(".staging"), PE_EUSAGE);
    CHECK_RC(pe_set_name_ok("a/b"), PE_EUSAGE);
    CHECK_RC(pe_set_name_ok("a\nb"), PE_EUSAGE);
    char lng[PE_SET_NAME_MAX + 2];
    memset(lng, 'a', sizeof lng - 1);
    lng[sizeof lng - 1] = 0;
    CHECK_RC(pe_set_name_ok(lng), PE_EUSAGE);
}

static void test_open_errors(void) {
    char p[512];
    pe_store *st;
    /* missing without create */
    path_in(p, sizeof p, "missing.lmdb");
    CHECK_RC(pe_store_open(&st, p, PE_STORE_RDONLY), PE_ENOTFOUND);
    struct stat sb;
    CHECK(stat(p, &sb) != 0); /* nothing created */
    /* a regular file */
    path_in(p, sizeof p, "file.lmdb");
    FILE *f = fopen(p, "w");
    fputs("hello", f);
    fclose(f);
    CHECK_RC(pe_store_open(&st, p, PE_STORE_CREATE), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "file.lmdb") != NULL);
    /* a directory whose data.mdb is garbage */
    path_in(p, sizeof p, "garbage.lmdb");
    mkdir(p, 0777);
    char d[600];
    snprintf(d, sizeof d, "%s/data.mdb", p);
    f = fopen(d, "w");
    for (int i = 0; i < 10000; i++) fputc(i * 7, f);
    fclose(f);
    CHECK_RC(pe_store_open(&st, p, PE_STORE_RDONLY), PE_EFORMAT);
    /* an empty directory, read-only open */
    path_in(p, sizeof p, "empty.lmdb");
    mkdir(p, 0777);
    CHECK_RC(pe_store_open(&st, p, PE_STORE_RDONLY), PE_ENOTFOUND);
    /* a foreign LMDB environment is not taken over */
    path_in(p, sizeof p, "foreign.lmdb");
    mkdir(p, 0777);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    mdb_env_create(&env);
    CHECK(mdb_env_open(env, p, 0, 0666) == 0);
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, NULL, 0, &dbi);
    MDB_val k = {3, "abc"}, v = {3, "def"};
    mdb_put(txn, dbi, &k, &v, 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);
    CHECK_RC(pe_store_open(&st, p, PE_STORE_CREATE), PE_EFORMAT);
}

/* A store written by a newer pe (version 2) is refused, untouched. */
static void test_newer_version(void) {
    char p[512];
    pe_store *st = open_new("v.lmdb");
    pe_store_close(st);
    path_in(p, sizeof p, "v.lmdb");
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 8);
    CHECK(mdb_env_open(env, p, 0, 0666) == 0);
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, "meta", 0, &dbi);
    uint8_t ver[4] = {2, 0, 0, 0};
    MDB_val k = {7, "version"}, v = {4, ver};
    mdb_put(txn, dbi, &k, &v, 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);
    CHECK_RC(pe_store_open(&st, p, PE_STORE_CREATE), PE_EVERSION);
    CHECK(strstr(pe_errmsg(), "version 2") != NULL);
    CHECK_RC(pe_store_open(&st, p, PE_STORE_RDONLY), PE_EVERSION);
}

/* The map fills: puts report PE_ETOOBIG, pe_store_grow doubles it, and the
 * limit PE_STORE_MAX_MAP stops growth with a clear error. */
/* Writes n images of 196 KiB in transactions of 4, growing the map on
 * PE_ETOOBIG as the ingest does. Returns the last rc; *grew counts growths. */
static int write_growing(pe_store *st, int n, uint32_t seed, int *grew) {
    int rc = 0;
    *grew = 0;
    for (int done = 0; done < n && !rc;) {
        pe_txn *t;
        if ((rc = pe_txn_begin(st, 1, &t))) break;
        int i;
        for (i = 0; i < 4 && done + i < n && !rc; i++) {
            pe_image big = {0};
            fill(&big, 256, 256, 3, seed + (uint32_t)(done + i));
            pe_key k;
            int existed;
            rc = pe_img_put(t, &big, PE_ENC_RAW, NULL, &k, &existed);
            pe_image_free(&big);
        }
        if (rc == PE_ETOOBIG) {
            pe_txn_abort(t);
            rc = pe_store_grow(st);
            if (!rc) (*grew)++;
            continue; /* replay the batch */
        }
        if (rc) {
            pe_txn_abort(t);
            break;
        }
        rc = pe_txn_commit(t);
        done += i;
    }
    return rc;
}

/* The map fills: puts report PE_ETOOBIG, pe_store_grow doubles the map and
 * the batch is replayed; PE_STORE_MAX_MAP stops growth with a clear error
 * and what was committed stays readable. */
static void test_map_growth(void) {
    setenv("PE_STORE_MAP_INITIAL", "1048576", 1);  /* 1 MiB */
    setenv("PE_STORE_MAX_MAP", "16777216", 1);     /* 16 MiB */
    pe_store *st = open_new("g.lmdb");
    int grew;
    CHECK_OK(write_growing(st, 40, 1, &grew)); /* ~8 MiB */
    CHECK(grew >= 3);
    CHECK_RC(write_growing(st, 200, 1000, &grew), PE_ETOOBIG); /* ~40 MiB more */
    CHECK(strstr(pe_errmsg(), "map full") != NULL);
    pe_txn *t;
    pe_store_stats s;
    CHECK_OK(pe_txn_begin(st, 0, &t));
    CHECK_OK(pe_store_stats_get(t, &s));
    CHECK(s.n_images >= 40 && s.n_images < 240 && s.n_images % 4 == 0);
    pe_txn_abort(t);
    pe_store_close(st);
    unsetenv("PE_STORE_MAP_INITIAL");
    unsetenv("PE_STORE_MAX_MAP");
}

static void test_double_open(void) {
    pe_store *a = open_new("h.lmdb"), *b = NULL;
    char p[512];
    path_in(p, sizeof p, "h.lmdb");
    CHECK_OK(pe_store_open(&b, p, 0));
    CHECK(a == b);
    pe_store_close(b);
    /* still usable after one close */
    pe_txn *t;
    CHECK_OK(pe_txn_begin(a, 1, &t));
    CHECK_OK(pe_set_create(t, "x"));
    CHECK_OK(pe_txn_commit(t));
    pe_store_close(a);
}

static void test_escape(void) {
    char out[256];
    const char in[] = "a\tb\nc\\d\x1b[31m\x7f\xff\xc3\xa9\xc2\x85";
    pe_escape(out, sizeof out, in, sizeof in - 1, PE_ESC_TEXT);
    CHECK(!strcmp(out, "a\\tb\\nc\\\\d\\x1b[31m\\x7f\\xff\xc3\xa9\\x85"));
    pe_escape(out, sizeof out, in, sizeof in - 1, PE_ESC_JSON);
    CHECK(!strcmp(out, "a\\tb\\nc\\\\d\\u001b[31m\\u007f\\ufffd\xc3\xa9\\u0085"));
    const char h[] = "<a href=\"x\">&'";
    pe_escape(out, sizeof out, h, sizeof h - 1, PE_ESC_HTML);
    CHECK(!strcmp(out, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"));
    /* truncation never splits an escape */
    size_t need = pe_escape(out, 6, "\x01\x02", 2, PE_ESC_TEXT);
    CHECK(need == 8 && !strcmp(out, "\\x01"));
    /* overlong and surrogate encodings are invalid bytes */
    pe_escape(out, sizeof out, "\xc0\xaf\xed\xa0\x80", 5, PE_ESC_TEXT);
    CHECK(!strcmp(out, "\\xc0\\xaf\\xed\\xa0\\x80"));
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pe-test-store-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_key_python);
    RUN(test_put_get);
    RUN(test_derived);
    RUN(test_derived_order);
    RUN(test_info_bounded);
    RUN(test_collision);
    RUN(test_corrupt_record);
    RUN(test_sets);
    RUN(test_names);
    RUN(test_open_errors);
    RUN(test_newer_version);
    RUN(test_map_growth);
    RUN(test_double_open);
    RUN(test_escape);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    return CHECK_DONE();
}
