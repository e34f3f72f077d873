/*
 * test_safetensors.c - unit tests of formats/safetensors.c: writer -> reader
 * round trips through real files (under a mkdtemp folder in /tmp, removed
 * at the end), the reference library's own byte-exact test vectors, a
 * cross-check against an independent reader and writer (a few lines of
 * /usr/bin/python3 with struct and json, written out below), every kind of
 * malformed header the reader must refuse, and the F16/BF16/F64 -> F32
 * conversions (F16 exhaustively).
 *
 * Not for: speed, or PyTorch itself (the python script mirrors the format,
 * not torch; skipped with a note when python3 is missing).
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "pe.h"
#include "safetensors.h"

#define PYTHON "/usr/bin/python3"

#include "testfs.h"

/* Entries of g_dir other than . and .. */
static int dir_entries(void) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void clear_dir(void) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    if (!d) return;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            const char *p = P(e->d_name);
            if (unlink(p) != 0) rmdir(p);
        }
    closedir(d);
}

static void put_u64le(uint8_t *p, uint64_t v) {
    for (int k = 0; k < 8; k++) p[k] = (uint8_t)(v >> (8 * k));
}

static uint64_t get_u64le(const uint8_t *p) {
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = v << 8 | p[k];
    return v;
}

/* A file in an allocation of exactly its size (so ASan sees any read past
 * the end): header length hlen, the hlen header bytes, data_len data bytes
 * of a pattern. */
static uint8_t *mk_n(const char *hdr, size_t hlen, size_t data_len, size_t *len) {
    *len = 8 + hlen + data_len;
    uint8_t *b = malloc(*len);
    if (!b) abort();
    put_u64le(b, hlen);
    memcpy(b + 8, hdr, hlen);
    for (size_t i = 0; i < data_len; i++) b[8 + hlen + i] = (uint8_t)(i * 7 + 1);
    return b;
}

static uint8_t *mk(const char *json, size_t data_len, size_t *len) {
    return mk_n(json, strlen(json), data_len, len);
}

/* Opens buf and checks for want_rc, no handle, and a message that starts
 * with "safetensors: " and holds `needle`. line is the caller's. */
static void expect_fail(int line, const uint8_t *buf, size_t len, int want_rc,
                        const char *needle) {
    pe_st *st = (pe_st *)&st; /* must come back NULL */
    pe_errclear();
    int rc = pe_st_open_mem(&st, buf, len);
    const char *msg = pe_errmsg();
    int ok = rc == want_rc && st == NULL &&
             strncmp(msg, "safetensors: ", 13) == 0 && strstr(msg, needle);
    check_count++;
    if (!ok) {
        check_failures++;
        fprintf(stderr, "%s:%d: want rc %d with '%s'; got rc %d (%s), "
                "handle %s, message '%s'\n", __FILE__, line, want_rc, needle, rc,
                pe_strerror(rc), st ? "set" : "NULL", msg);
        if (rc == 0) pe_st_close(st);
    }
}

#define BAD(json, data_len, needle)                                          \
    do {                                                                     \
        size_t len_;                                                         \
        uint8_t *b_ = mk(json, data_len, &len_);                             \
        expect_fail(__LINE__, b_, len_, PE_EFORMAT, needle);                 \
        free(b_);                                                            \
    } while (0)

#define BAD_N(hdr, hlen, data_len, rc, needle)                               \
    do {                                                                     \
        size_t len_;                                                         \
        uint8_t *b_ = mk_n(hdr, hlen, data_len, &len_);                      \
        expect_fail(__LINE__, b_, len_, rc, needle);                         \
        free(b_);                                                            \
    } while (0)

/* Opens json + data_len bytes, which must succeed; the handle (or NULL). */
static pe_st *open_ok(int line, const char *json, size_t data_len,
                      uint8_t **keep) {
    size_t len;
    pe_st *st = NULL;
    *keep = mk(json, data_len, &len);
    int rc = pe_st_open_mem(&st, *keep, len);
    check_count++;
    if (rc != 0 || !st) {
        check_failures++;
        fprintf(stderr, "%s:%d: open failed: rc %d (%s): %s\n", __FILE__, line,
                rc, pe_strerror(rc), pe_errmsg());
    }
    return st;
}

#define T_F32_2 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

/* ------------------------------------------------------------- malformed */

static void test_header_length(void) {
    uint8_t z[8] = {0};
    expect_fail(__LINE__, NULL, 0, PE_EFORMAT, "0 bytes, too short");
    expect_fail(__LINE__, z, 7, PE_EFORMAT, "7 bytes, too short");
    expect_fail(__LINE__, z, 8, PE_EFORMAT, "header length 0");

    size_t len;
    uint8_t *b = mk("{}", 0, &len);
    put_u64le(b, 3); /* one byte more than the file has */
    expect_fail(__LINE__, b, len, PE_EFORMAT, "runs past the end");
    put_u64le(b, UINT64_MAX);
    expect_fail(__LINE__, b, len, PE_EFORMAT, "runs past the end");
    put_u64le(b, (uint64_t)1 << 63);
    expect_fail(__LINE__, b, len, PE_EFORMAT, "runs past the end");
    put_u64le(b, 1);
    expect_fail(__LINE__, b, len, PE_EFORMAT, "too short for a JSON object");
    free(b);

    /* A header above the limit, in a file that really is that long. */
    size_t big = (size_t)PE_ST_MAX_HEADER + 1;
    b = calloc(1, 8 + big);
    if (b) {
        put_u64le(b, big);
        b[8] = '{';
        b[9] = '}';
        memset(b + 10, ' ', big - 2);
        expect_fail(__LINE__, b, 8 + big, PE_ETOOBIG, "above the limit");
        /* One byte shorter is within the limit and valid. */
        pe_st *st = NULL;
        put_u64le(b, big - 1);
        b[8 + big - 1] = 0; /* now data: one uncovered byte */
        expect_fail(__LINE__, b, 8 + big, PE_EFORMAT, "belong to no tensor");
        CHECK_OK(pe_st_open_mem(&st, b, 8 + big - 1));
        pe_st_close(st);
        free(b);
    }
}

static void test_bad_json(void) {
    /* structure */
    BAD(" {}", 0, "does not start with '{'");
    BAD("[]", 0, "does not start with '{'");
    BAD("\xef\xbb\xbf{}", 0, "does not start with '{'");
    BAD("{ ", 0, "expected a tensor name (a string), found the end");
    BAD("{a:1}", 0, "expected a tensor name");
    BAD("{1:2}", 0, "expected a tensor name");
    BAD("{\"a\" " T_F32_2 "}", 8, "expected ':'");
    BAD("{\"a\":" T_F32_2, 8, "expected ',' or '}' after a tensor, found the end");
    BAD("{\"a\":" T_F32_2 " \"b\":" T_F32_2 "}", 16, "expected ',' or '}'");
    BAD("{\"a\":" T_F32_2 ",}", 8, "trailing comma before '}'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],}}", 8,
        "trailing comma before '}'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[0,8]}}", 8,
        "trailing comma before ']'");
    BAD("{\"__metadata__\":{\"k\":\"v\",}}", 0, "trailing comma before '}'");
    BAD("{} x", 0, "'x' after the header's object");
    BAD("{}{}", 0, "'{' after the header's object");
    BAD_N("{}\0\0\0\0\0\0", 8, 0, PE_EFORMAT, "byte 0x00 after the header's object");

    /* strings */
    BAD("{\"a", 0, "unterminated string");
    BAD("{\"a\\", 0, "unterminated string");
    BAD("{\"a\":{\"dtype\":\"F32", 0, "unterminated string");
    BAD("{\"a\\x\":" T_F32_2 "}", 8, "bad escape '\\x'");
    BAD("{\"a\\'\":" T_F32_2 "}", 8, "bad escape");
    BAD("{\"\\u12G4\":" T_F32_2 "}", 8, "bad \\u escape");
    BAD("{\"\\u12", 0, "bad \\u escape");
    BAD("{\"\\ud800\":" T_F32_2 "}", 8, "lone high surrogate \\ud800");
    BAD("{\"\\ud83d\\u0041\":" T_F32_2 "}", 8, "lone high surrogate");
    BAD("{\"\\ud83d\\ud83d\":" T_F32_2 "}", 8, "lone high surrogate");
    BAD("{\"\\ud83d\\", 0, "lone high surrogate");
    BAD("{\"\\udc00\":" T_F32_2 "}", 8, "lone low surrogate \\udc00");
    BAD("{\"a\\u0000b\":" T_F32_2 "}", 8, "\\u0000");
    BAD("{\"a\x01\":" T_F32_2 "}", 8, "raw control character 0x01");
    BAD("{\"a\nb\":" T_F32_2 "}", 8, "raw control character 0x0a");
    BAD("{\"\xff\":" T_F32_2 "}", 8, "invalid UTF-8");
    BAD("{\"\xc0\x80\":" T_F32_2 "}", 8, "invalid UTF-8");         /* overlong NUL */
    BAD("{\"\xe0\x80\xaf\":" T_F32_2 "}", 8, "invalid UTF-8");     /* overlong '/' */
    BAD("{\"\xed\xa0\x80\":" T_F32_2 "}", 8, "invalid UTF-8");     /* surrogate */
    BAD("{\"\xf4\x90\x80\x80\":" T_F32_2 "}", 8, "invalid UTF-8"); /* > U+10FFFF */
    BAD("{\"\x80\":" T_F32_2 "}", 8, "invalid UTF-8");
    BAD("{\"\xe6\x97\":" T_F32_2 "}", 8, "invalid UTF-8");         /* truncated */
    BAD_N("{\"\xe6\x97", 5, 0, PE_EFORMAT, "invalid UTF-8");       /* at the end */

    /* numbers */
    BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],"
        "\"data_offsets\":[0,0]}}", 0, "number too large in shape");
    BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999999999999],"
        "\"data_offsets\":[0,0]}}", 0, "number too large");
    BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],"
        "\"data_offsets\":[0,18446744073709551617]}}", 0,
        "number too large in data_offsets");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", 8,
        "negative number in shape");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[-0],\"data_offsets\":[0,8]}}", 8,
        "negative number");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
        "negative number in data_offsets");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8,
        "fraction or exponent");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
        "fraction or exponent");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}}", 8,
        "fraction or exponent");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1E+3],\"data_offsets\":[0,8]}}", 8,
        "fraction or exponent");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", 8,
        "fraction or exponent");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.],\"data_offsets\":[0,8]}}", 8,
        "malformed number");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e],\"data_offsets\":[0,8]}}", 8,
        "malformed number");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[-],\"data_offsets\":[0,8]}}", 8,
        "malformed number");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[.5],\"data_offsets\":[0,8]}}", 8,
        "expected a non-negative integer in shape, found '.'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[+2],\"data_offsets\":[0,8]}}", 8,
        "found '+'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8,
        "leading zero");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[0x2],\"data_offsets\":[0,8]}}", 8,
        "expected ',' or ']' in shape, found 'x'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,8]}}", 8,
        "found 't'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
        "expected a non-negative integer in shape");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
        "shape must be an array");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[[2]],\"data_offsets\":[0,8]}}", 8,
        "found '['");
}

static void test_bad_schema(void) {
    BAD("{\"a\":5}", 0, "tensor 'a': expected an object");
    BAD("{\"a\":null}", 0, "tensor 'a': expected an object");
    BAD("{\"a\":\"F32\"}", 0, "tensor 'a': expected an object");
    BAD("{\"a\":[]}", 0, "tensor 'a': expected an object");
    BAD("{\"a\":{}}", 0, "tensor 'a': missing field 'dtype'");
    BAD("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "missing field 'dtype'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "missing field 'shape'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing field 'data_offsets'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],"
        "\"data_offsets\":[0,8]}}", 8, "field 'dtype' given twice");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"shape\":[2],"
        "\"data_offsets\":[0,8]}}", 8, "field 'shape' given twice");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],"
        "\"data_offsets\":[0,8]}}", 8, "field 'data_offsets' given twice");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],"
        "\"scale\":1}}", 8, "unknown field 'scale'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
        "expected ',' in data_offsets");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 16,
        "expected ']' in data_offsets");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[]}}", 8,
        "expected a non-negative integer in data_offsets");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":8}}", 8,
        "data_offsets must be an array");

    /* dtypes */
    BAD("{\"a\":{\"dtype\":\"F7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
        "tensor 'a': unknown dtype 'F7'");
    BAD("{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
        "unknown dtype 'f32'");
    BAD("{\"a\":{\"dtype\":\"\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
        "unknown dtype ''");
    BAD("{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
        "expected dtype (a string)");

    /* duplicates, compared after unescaping */
    BAD("{\"a\":" T_F32_2 ",\"a\":" T_F32_2 "}", 8, "duplicate tensor name 'a'");
    BAD("{\"a\":" T_F32_2 ",\"\\u0061\":" T_F32_2 "}", 8, "duplicate tensor name 'a'");
    BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ given twice");
    BAD("{\"__metadata__\":{},\"\\u005f_metadata__\":{}}", 0, "given twice");
    BAD("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "duplicate metadata key 'k'");

    /* metadata */
    BAD("{\"__metadata__\":{\"k\":1}}", 0, "metadata key 'k': value is not a string");
    BAD("{\"__metadata__\":{\"k\":null}}", 0, "value is not a string");
    BAD("{\"__metadata__\":{\"k\":true}}", 0, "value is not a string");
    BAD("{\"__metadata__\":{\"k\":[\"v\"]}}", 0, "value is not a string");
    BAD("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "value is not a string");
    BAD("{\"__metadata__\":\"x\"}", 0, "__metadata__ must be an object");
    BAD("{\"__metadata__\":null}", 0, "__metadata__ must be an object");
    BAD("{\"__metadata__\":[]}", 0, "__metadata__ must be an object");
    BAD("{\"__metadata__\":{1:\"v\"}}", 0, "__metadata__: expected a key");
    BAD("{\"__metadata__\":{\"k\" \"v\"}}", 0, "expected ':'");
    BAD("{\"__metadata__\":{\"k\":\"v\\q\"}}", 0, "metadata key 'k': bad escape");
}

/* Deep nesting where each kind of value may stand: refused at the first
 * bracket the schema has no room for, without recursion. */
static void test_depth_bomb(void) {
    const size_t depth = 1 << 20;
    const char *prefixes[] = {
        "{\"a\":",
        "{\"a\":{\"shape\":",
        "{\"a\":{\"shape\":[",
        "{\"a\":{\"dtype\":",
        "{\"__metadata__\":",
        "{\"__metadata__\":{\"k\":",
        "{\"a\":{\"b\":",
    };
    const char *needles[] = {"expected an object",
                             "integer in shape, found '['",
                             "integer in shape, found '['",
                             "expected dtype (a string)",
                             "must be an object",
                             "value is not a string",
                             "unknown field 'b'"};
    for (size_t k = 0; k < sizeof prefixes / sizeof *prefixes; k++) {
        size_t pl = strlen(prefixes[k]);
        char *h = malloc(pl + 2 * depth);
        if (!h) abort();
        memcpy(h, prefixes[k], pl);
        memset(h + pl, '[', depth);
        memset(h + pl + depth, ']', depth);
        BAD_N(h, pl + 2 * depth, 0, PE_EFORMAT, needles[k]);
        memset(h + pl, '{', depth); /* objects too */
        BAD_N(h, pl + depth, 0, PE_EFORMAT, "");
        free(h);
    }
    /* the top level is an object or nothing */
    char *h = malloc(depth);
    if (!h) abort();
    memset(h, '[', depth);
    BAD_N(h, depth, 0, PE_EFORMAT, "does not start with '{'");
    h[0] = '{';
    memset(h + 1, '{', depth - 1);
    BAD_N(h, depth, 0, PE_EFORMAT, "expected a tensor name");
    free(h);
}

static void test_bad_spans(void) {
    /* dtype x shape against the span */
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
        "tensor 'a': F32 x [3] is 12 bytes, but data_offsets [0, 8] span 8");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
        "is 4 bytes");
    BAD("{\"a\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
        "F64 x [] is 8 bytes");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,2],\"data_offsets\":[0,8]}}", 8,
        "is 0 bytes");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
        "end before they begin");
    BAD("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 1,
        "3 elements of F4 do not fill whole bytes");
    /* products that overflow, even with a 0 after them (as the reference) */
    BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],"
        "\"data_offsets\":[0,0]}}", 0, "more elements than fit");
    BAD("{\"a\":{\"dtype\":\"U64\",\"shape\":[4611686018427387904],"
        "\"data_offsets\":[0,0]}}", 0, "overflows a byte count");
    BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],"
        "\"data_offsets\":[0,18446744073709551615]}}", 0, "overflows a byte count");

    /* within the buffer */
    BAD("{\"a\":" T_F32_2 "}", 4, "tensor 'a': data_offsets [0, 8] run past the "
        "end of the 4-byte data buffer");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8,
        "run past the end");
    BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9,9]}}", 8,
        "run past the end");

    /* overlaps, holes, uncovered bytes */
    BAD("{\"a\":" T_F32_2 ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
        "\"data_offsets\":[4,12]}}", 12,
        "tensor 'b': data_offsets [4, 12] overlap those of tensor 'a' [0, 8]");
    BAD("{\"a\":" T_F32_2 ",\"b\":" T_F32_2 "}", 8, "overlap");
    BAD("{\"a\":" T_F32_2 ",\"z\":{\"dtype\":\"F32\",\"shape\":[0],"
        "\"data_offsets\":[4,4]}}", 8, "tensor 'z': data_offsets [4, 4] overlap");
    BAD("{\"a\":" T_F32_2 ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
        "\"data_offsets\":[12,20]}}", 20,
        "bytes [8, 12) of the data buffer belong to no tensor (a hole before "
        "tensor 'b')");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
        "bytes [0, 4) of the data buffer belong to no tensor");
    BAD("{\"a\":" T_F32_2 "}", 12,
        "bytes [8, 12) at the end of the data buffer belong to no tensor");
    BAD("{}", 1, "bytes [0, 1) at the end");
    BAD("{\"__metadata__\":{\"k\":\"v\"}}", 3, "bytes [0, 3) at the end");

    /* dimensions: more than this reader holds is unsupported, not malformed */
    BAD_N("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
          "\"data_offsets\":[0,1]}}",
          strlen("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                 "\"data_offsets\":[0,1]}}"),
          1, PE_EUNSUPPORTED, "tensor 'a': more than 8 dimensions");
}

/* ------------------------------------------------------------- valid */

static void test_valid_edges(void) {
    uint8_t *b;
    pe_st *st;
    const pe_st_tensor *t;

    st = open_ok(__LINE__, "{}", 0, &b);
    if (st) {
        CHECK(pe_st_count(st) == 0 && pe_st_meta_count(st) == 0);
        CHECK(pe_st_at(st, 0) == NULL && pe_st_get(st, "a") == NULL);
        CHECK(pe_st_meta(st, "k") == NULL);
        CHECK_RC(pe_st_meta_at(st, 0, NULL, NULL), PE_ENOTFOUND);
    }
    pe_st_close(st);
    free(b);

    st = open_ok(__LINE__, "{\"__metadata__\":{}}      ", 0, &b);
    if (st) CHECK(pe_st_count(st) == 0 && pe_st_meta_count(st) == 0);
    pe_st_close(st);
    free(b);

    /* whitespace of every kind, fields in any order, tensors listed in
     * another order than their data, zero-size tensors at shared offsets */
    st = open_ok(__LINE__,
                 "{ \"b\" : { \"shape\" : [ 2 ] , \"data_offsets\" : [ 8 , 16 ] ,"
                 "\t\"dtype\" : \"F32\" } ,\n\"a\"\r:{\"data_offsets\":[0,8],"
                 "\"dtype\":\"I64\",\"shape\":[]},\"e0\":{\"dtype\":\"U8\",\"shape\":"
                 "[0],\"data_offsets\":[0,0]},\"e1\":{\"dtype\":\"F32\",\"shape\":"
                 "[3,0,2],\"data_offsets\":[16,16]}, \"__metadata__\" : {\"k\":\"v\","
                 "\"a\":\"\"}}\n\t\r ",
                 16, &b);
    if (st) {
        CHECK(pe_st_count(st) == 4);
        t = pe_st_at(st, 0);
        CHECK(t && strcmp(t->name, "a") == 0 && t->dtype == PE_ST_I64 &&
              t->ndim == 0 && t->numel == 1 && t->nbytes == 8 &&
              t->data == b + 8 + (get_u64le(b)) && t->offset == 0);
        t = pe_st_get(st, "b");
        CHECK(t && t->dtype == PE_ST_F32 && t->ndim == 1 && t->shape[0] == 2 &&
              t->offset == 8 && t->data == b + 8 + get_u64le(b) + 8);
        t = pe_st_get(st, "e1");
        CHECK(t && t->ndim == 3 && t->numel == 0 && t->nbytes == 0 && t->shape[1] == 0);
        CHECK(strcmp(pe_st_at(st, 2)->name, "e0") == 0);
        CHECK(pe_st_get(st, "c") == NULL && pe_st_get(st, "") == NULL);
        CHECK(pe_st_meta_count(st) == 2);
        CHECK(pe_st_meta(st, "k") && strcmp(pe_st_meta(st, "k"), "v") == 0);
        CHECK(pe_st_meta(st, "a") && strcmp(pe_st_meta(st, "a"), "") == 0);
        const char *k, *v;
        CHECK_OK(pe_st_meta_at(st, 0, &k, &v));
        CHECK(strcmp(k, "a") == 0 && strcmp(v, "") == 0);
    }
    pe_st_close(st);
    free(b);

    /* escapes of every kind decode; an empty name is a name */
    st = open_ok(__LINE__,
                 "{\"\\u00e9\\ud83d\\ude00\\n\\\"\\\\\\/\\b\\f\\r\\t\\u20AC\xe6\x97\xa5\":"
                 "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                 "\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
                 "\"__metadata__\":{\"\\u0041\":\"\\ud800\\udc00\"}}",
                 2, &b);
    if (st) {
        t = pe_st_get(st, "\xc3\xa9\xf0\x9f\x98\x80\n\"\\/\b\f\r\t\xe2\x82\xac\xe6\x97\xa5");
        CHECK(t && t->offset == 0);
        t = pe_st_get(st, "");
        CHECK(t && t->offset == 1 && pe_st_at(st, 0) == t);
        CHECK(pe_st_meta(st, "A") && strcmp(pe_st_meta(st, "A"), "\xf0\x90\x80\x80") == 0);
    }
    pe_st_close(st);
    free(b);

    /* packed and wide dtypes; 8 dimensions; a scalar */
    st = open_ok(__LINE__,
                 "{\"f4\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]},"
                 "\"f6\":{\"dtype\":\"F6_E2M3\",\"shape\":[2,2],\"data_offsets\":[1,4]},"
                 "\"c\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[4,12]},"
                 "\"d\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,2],"
                 "\"data_offsets\":[12,14]},"
                 "\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[14,16]}}",
                 16, &b);
    if (st) {
        CHECK(pe_st_get(st, "f4")->nbytes == 1 && pe_st_get(st, "f6")->nbytes == 3);
        CHECK(pe_st_get(st, "c")->dtype == PE_ST_C64);
        CHECK(pe_st_get(st, "d")->ndim == 8 && pe_st_get(st, "d")->numel == 2);
        CHECK(pe_st_get(st, "s")->ndim == 0 && pe_st_get(st, "s")->numel == 1);
    }
    pe_st_close(st);
    free(b);

    /* every dtype name the reference defines is known */
    for (int k = 0; k < PE_ST_NDTYPES; k++) {
        char json[160];
        unsigned bits = pe_st_dtype_bits((pe_st_dtype)k);
        snprintf(json, sizeof json,
                 "{\"t\":{\"dtype\":\"%s\",\"shape\":[8],\"data_offsets\":[0,%u]}}",
                 pe_st_dtype_name((pe_st_dtype)k), bits);
        st = open_ok(__LINE__, json, bits, &b);
        if (st) CHECK(pe_st_get(st, "t")->dtype == (pe_st_dtype)k);
        pe_st_close(st);
        free(b);
    }
    CHECK(strcmp(pe_st_dtype_name(PE_ST_NDTYPES), "?") == 0);
    CHECK(pe_st_dtype_bits(PE_ST_NDTYPES) == 0);
}

/* ------------------------------------------------------------- writer */

/* Fills a writer with the tensors the round trip and the python check
 * share; the arrays must outlive the writes. */
static float g_w[6], g_bias[3] = {0.25f, -0.125f, 1024.5f}, g_named = 7.5f;
static int64_t g_step = 123456789012345LL;
static int64_t g_counts[3] = {INT64_MIN, -1, INT64_MAX};

/* Attacker-style strings: quotes, backslashes, controls, DEL, C1 (U+0085),
 * U+2028, non-ASCII, an astral character. */
static const char g_name[] =
    "we\"ird\\ \n\t\x01\x1f\x7f \xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac "
    "\xf0\x9f\x98\x80 \xc2\x85 \xe2\x80\xa8 end";
static const char g_key[] = "k\"\\\n\xf0\x9f\x98\x80";
static const char g_val[] =
    "v\x01\x02 \"quoted\" \\back\\ \r\n \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
    "\xf0\x9f\x98\x80 </script>";

static void fill_writer(pe_st_writer *w) {
    size_t s23[2] = {2, 3}, s3[1] = {3}, s05[2] = {0, 5}, s203[3] = {2, 0, 3},
           s1[1] = {1};
    for (int i = 0; i < 6; i++) g_w[i] = (float)i * 0.5f - 1.0f;
    CHECK_OK(pe_st_writer_add(w, "layer.weight", PE_ST_F32, 2, s23, g_w));
    CHECK_OK(pe_st_writer_meta(w, g_key, g_val));
    CHECK_OK(pe_st_writer_add(w, "step", PE_ST_I64, 0, NULL, &g_step));
    CHECK_OK(pe_st_writer_add(w, "layer.bias", PE_ST_F32, 1, s3, g_bias));
    CHECK_OK(pe_st_writer_add(w, "empty", PE_ST_F32, 2, s05, NULL));
    CHECK_OK(pe_st_writer_add(w, "counts", PE_ST_I64, 1, s3, g_counts));
    CHECK_OK(pe_st_writer_add(w, "z", PE_ST_F32, 3, s203, g_w));
    CHECK_OK(pe_st_writer_meta(w, "format", "pt"));
    CHECK_OK(pe_st_writer_add(w, g_name, PE_ST_F32, 1, s1, &g_named));
}

static void check_filled(const pe_st *st, const uint8_t *file) {
    const pe_st_tensor *t;
    float f[6];
    CHECK(pe_st_count(st) == 7);
    t = pe_st_get(st, "layer.weight");
    CHECK(t && t->dtype == PE_ST_F32 && t->ndim == 2 && t->shape[0] == 2 &&
          t->shape[1] == 3 && t->numel == 6 && t->nbytes == 24);
    if (t) {
        CHECK_OK(pe_st_to_f32(t, f, 6));
        CHECK(memcmp(f, g_w, sizeof g_w) == 0);
    }
    t = pe_st_get(st, "layer.bias");
    if (t) {
        CHECK_OK(pe_st_to_f32(t, f, 3));
        CHECK(memcmp(f, g_bias, sizeof g_bias) == 0);
    }
    CHECK(t != NULL);
    t = pe_st_get(st, "step");
    CHECK(t && t->dtype == PE_ST_I64 && t->ndim == 0 && t->numel == 1 &&
          t->nbytes == 8 && get_u64le(t->data) == (uint64_t)g_step);
    t = pe_st_get(st, "counts");
    CHECK(t && t->dtype == PE_ST_I64 && t->nbytes == 24 &&
          get_u64le(t->data) == (uint64_t)INT64_MIN &&
          get_u64le(t->data + 8) == UINT64_MAX &&
          get_u64le(t->data + 16) == (uint64_t)INT64_MAX);
    t = pe_st_get(st, "empty");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 5 &&
          t->numel == 0 && t->nbytes == 0);
    if (t) CHECK_OK(pe_st_to_f32(t, NULL, 0));
    t = pe_st_get(st, "z");
    CHECK(t && t->ndim == 3 && t->shape[1] == 0 && t->nbytes == 0);
    t = pe_st_get(st, g_name);
    CHECK(t && t->ndim == 1 && t->nbytes == 4);
    if (t) {
        CHECK_OK(pe_st_to_f32(t, f, 1));
        CHECK(f[0] == 7.5f);
    }
    CHECK(pe_st_meta_count(st) == 2);
    CHECK(pe_st_meta(st, g_key) && strcmp(pe_st_meta(st, g_key), g_val) == 0);
    CHECK(pe_st_meta(st, "format") && strcmp(pe_st_meta(st, "format"), "pt") == 0);

    /* Layout: header padded with spaces to a multiple of 8; the reference
     * order (I64 before F32, then by name); each tensor aligned to its
     * element size in the file. */
    uint64_t n = get_u64le(file);
    CHECK(n % 8 == 0);
    CHECK(file[8] == '{');
    size_t end = 8 + n;
    while (end > 8 && file[end - 1] == ' ') end--;
    CHECK(file[end - 1] == '}' && 8 + n - end < 8);
    const char *order[] = {"counts", "step", "empty", "layer.bias",
                           "layer.weight", g_name, "z"};
    size_t off = 0;
    for (size_t k = 0; k < 7; k++) {
        t = pe_st_get(st, order[k]);
        if (!t) continue;
        CHECK(t->offset == off);
        CHECK(((8 + n + t->offset) % (pe_st_dtype_bits(t->dtype) / 8)) == 0);
        off += t->nbytes;
    }
}

static void test_roundtrip(void) {
    pe_st_writer *w = NULL;
    pe_st *st = NULL;
    uint8_t *mem = NULL, *file = NULL;
    size_t mem_len = 0, file_len = 0;

    clear_dir();
    CHECK_OK(pe_st_writer_open(&w));
    if (!w) return;
    fill_writer(w);
    CHECK_OK(pe_st_write_file(w, P("rt.safetensors")));
    CHECK(dir_entries() == 1); /* no temporary file left behind */
    CHECK_OK(pe_st_write_mem(w, &mem, &mem_len));
    file = slurp(P("rt.safetensors"), &file_len);
    CHECK(file && file_len == mem_len && memcmp(file, mem, mem_len) == 0);

    CHECK_OK(pe_st_read_file(&st, P("rt.safetensors")));
    if (st && file) check_filled(st, file);
    pe_st_close(st);
    st = NULL;
    CHECK_OK(pe_st_open_mem(&st, mem, mem_len));
    if (st) check_filled(st, mem);
    pe_st_close(st);

    /* Writing again replaces the file whole. */
    pe_st_writer *w2 = NULL;
    CHECK_OK(pe_st_writer_open(&w2));
    int64_t one = 1;
    CHECK_OK(pe_st_writer_add(w2, "only", PE_ST_I64, 0, NULL, &one));
    CHECK_OK(pe_st_write_file(w2, P("rt.safetensors")));
    st = NULL;
    CHECK_OK(pe_st_read_file(&st, P("rt.safetensors")));
    CHECK(st && pe_st_count(st) == 1 && pe_st_get(st, "only"));
    pe_st_close(st);
    CHECK(dir_entries() == 1);

    /* Failures name the path and leave nothing behind. */
    pe_errclear();
    CHECK_RC(pe_st_write_file(w2, P("no-such-dir/x.safetensors")), ENOENT);
    CHECK(strstr(pe_errmsg(), "no-such-dir/x.safetensors") != NULL);
    CHECK(mkdir(P("adir"), 0755) == 0);
    int rc = pe_st_write_file(w2, P("adir"));
    CHECK(rc == EISDIR || rc == ENOTEMPTY || rc == EEXIST);
    CHECK(strstr(pe_errmsg(), "rename") != NULL);
    CHECK(dir_entries() == 2); /* rt.safetensors and adir */
    /* A relative path writes in the current directory. */
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) && chdir(g_dir) == 0) {
        CHECK_OK(pe_st_write_file(w2, "rel.safetensors"));
        CHECK(access("rel.safetensors", F_OK) == 0);
        CHECK(chdir(cwd) == 0);
    }

    free(file);
    free(mem);
    pe_st_writer_close(w2);
    pe_st_writer_close(w);
    clear_dir();
}

/* The reference library's own tests (safetensors/src/tensor.rs:
 * test_empty, test_serialization, test_serialization_forced_alignement)
 * give the exact bytes it writes; pe writes the same. */
static void test_reference_bytes(void) {
    pe_st_writer *w = NULL;
    uint8_t *out = NULL;
    size_t len = 0;
    static const uint8_t empty[] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}',
                                    ' ', ' ', ' ', ' ', ' ', ' '};
    CHECK_OK(pe_st_writer_open(&w));
    CHECK_OK(pe_st_write_mem(w, &out, &len));
    CHECK(len == sizeof empty && memcmp(out, empty, len) == 0);
    free(out);
    CHECK_OK(pe_st_writer_meta(w, "framework", "pt"));
    CHECK_OK(pe_st_write_mem(w, &out, &len));
    const char *meta = "{\"__metadata__\":{\"framework\":\"pt\"}}     ";
    CHECK(len == 48 && out[0] == 40 && memcmp(out + 8, meta, 40) == 0);
    free(out);
    pe_st_writer_close(w);

    float data[6] = {0, 1, 2, 3, 4, 5};
    size_t s123[3] = {1, 2, 3}, s1123[4] = {1, 1, 2, 3};
    const char *h1 = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],"
                     "\"data_offsets\":[0,24]}}";
    CHECK_OK(pe_st_writer_open(&w));
    CHECK_OK(pe_st_writer_add(w, "attn.0", PE_ST_F32, 3, s123, data));
    CHECK_OK(pe_st_write_mem(w, &out, &len));
    CHECK(len == 8 + 64 + 24 && get_u64le(out) == 64 &&
          memcmp(out + 8, h1, 64) == 0 && memcmp(out + 72, data, 24) == 0);
    free(out);
    pe_st_writer_close(w);

    const char *h2 = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],"
                     "\"data_offsets\":[0,24]}}       ";
    CHECK_OK(pe_st_writer_open(&w));
    CHECK_OK(pe_st_writer_add(w, "attn0", PE_ST_F32, 4, s1123, data));
    CHECK_OK(pe_st_write_mem(w, &out, &len));
    CHECK(len == 8 + 72 + 24 && get_u64le(out) == 72 &&
          memcmp(out + 8, h2, 72) == 0 && memcmp(out + 80, data, 24) == 0);
    free(out);
    pe_st_writer_close(w);
}

static void test_writer_errors(void) {
    pe_st_writer *w = NULL;
    float x[4] = {0};
    size_t s2[1] = {2}, s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, s3[1] = {3},
           big[2] = {SIZE_MAX / 2, 3}, s0[1] = {0};
    CHECK_OK(pe_st_writer_open(&w));
    if (!w) return;
    CHECK_OK(pe_st_writer_add(w, "a", PE_ST_F32, 1, s2, x));
    CHECK_RC(pe_st_writer_add(w, "a", PE_ST_F32, 1, s2, x), PE_EEXIST);
    CHECK(strstr(pe_errmsg(), "'a' added twice") != NULL);
    CHECK_RC(pe_st_writer_add(w, "__metadata__", PE_ST_F32, 1, s2, x), PE_EUSAGE);
    CHECK_RC(pe_st_writer_add(w, NULL, PE_ST_F32, 1, s2, x), PE_EUSAGE);
    CHECK_RC(pe_st_writer_add(w, "bad\xff", PE_ST_F32, 1, s2, x), PE_EUSAGE);
    CHECK_RC(pe_st_writer_add(w, "surrogate\xed\xa0\x80", PE_ST_F32, 1, s2, x),
             PE_EUSAGE);
    CHECK_RC(pe_st_writer_add(w, "b", PE_ST_NDTYPES, 1, s2, x), PE_EUSAGE);
    CHECK_RC(pe_st_writer_add(w, "b", PE_ST_F32, 9, s9, x), PE_EUSAGE);
    CHECK_RC(pe_st_writer_add(w, "b", PE_ST_F32, 1, NULL, x), PE_EUSAGE);
    CHECK_RC(pe_st_writer_add(w, "b", PE_ST_F32, 1, s2, NULL), PE_EUSAGE);
    CHECK_RC(pe_st_writer_add(w, "b", PE_ST_F32, 2, big, x), PE_EUSAGE);
    CHECK_RC(pe_st_writer_add(w, "b", PE_ST_F4, 1, s3, x), PE_EUSAGE);
    CHECK_OK(pe_st_writer_add(w, "b", PE_ST_F32, 1, s0, NULL));
    CHECK_OK(pe_st_writer_meta(w, "k", "v"));
    CHECK_RC(pe_st_writer_meta(w, "k", "w"), PE_EEXIST);
    CHECK_RC(pe_st_writer_meta(w, "k2", "\xc3"), PE_EUSAGE);
    CHECK_RC(pe_st_writer_meta(w, NULL, "v"), PE_EUSAGE);
    /* what was refused was not added */
    uint8_t *out = NULL;
    size_t len = 0;
    pe_st *st = NULL;
    CHECK_OK(pe_st_write_mem(w, &out, &len));
    CHECK_OK(pe_st_open_mem(&st, out, len));
    CHECK(st && pe_st_count(st) == 2 && pe_st_meta_count(st) == 1);
    pe_st_close(st);
    free(out);
    pe_st_writer_close(w);
    pe_st_writer_close(NULL);
    pe_st_close(NULL);
}

static void test_read_file_errors(void) {
    pe_st *st = (pe_st *)&st;
    clear_dir();
    CHECK_RC(pe_st_read_file(&st, P("missing.safetensors")), ENOENT);
    CHECK(st == NULL && strstr(pe_errmsg(), "missing.safetensors"));
    CHECK_RC(pe_st_read_file(&st, g_dir), EISDIR);
    CHECK(write_file(P("empty"), "", 0) == 0);
    CHECK_RC(pe_st_read_file(&st, P("empty")), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "/empty: safetensors: 0 bytes") != NULL);
    size_t len;
    uint8_t *b = mk("{\"a\":" T_F32_2 "}", 8, &len);
    CHECK(write_file(P("short"), b, len - 1) == 0);
    CHECK_RC(pe_st_read_file(&st, P("short")), PE_EFORMAT);
    CHECK(strstr(pe_errmsg(), "/short: safetensors: tensor 'a'") != NULL);
    CHECK(write_file(P("ok"), b, len) == 0);
    CHECK_OK(pe_st_read_file(&st, P("ok")));
    CHECK(st && pe_st_get(st, "a") && pe_st_get(st, "a")->nbytes == 8);
    pe_st_close(st);
    free(b);
    clear_dir();
}

/* ------------------------------------------------------------- to float */

/* binary16 by its definition, independently of the code under test. */
static double half_value(unsigned h) {
    int sign = h >> 15, exp = h >> 10 & 31, man = h & 1023;
    double v;
    if (exp == 31) v = man ? NAN : INFINITY;
    else if (exp == 0) v = ldexp(man, -24);
    else v = ldexp(1024 + man, exp - 25);
    return sign ? -v : v;
}

static void test_to_f32(void) {
    /* every F16 value */
    static uint8_t raw[65536 * 2];
    static float out[65536];
    for (unsigned h = 0; h < 65536; h++) {
        raw[2 * h] = (uint8_t)h;
        raw[2 * h + 1] = (uint8_t)(h >> 8);
    }
    pe_st_tensor t = {.name = "h", .dtype = PE_ST_F16, .ndim = 1,
                      .shape = {65536}, .numel = 65536, .data = raw,
                      .nbytes = sizeof raw};
    CHECK_OK(pe_st_to_f32(&t, out, 65536));
    int bad = 0;
    for (unsigned h = 0; h < 65536; h++) {
        double want = half_value(h);
        if (isnan(want) ? !isnan(out[h])
                        : (double)out[h] != want || !signbit(out[h]) != !signbit(want))
            bad++;
    }
    CHECK(bad == 0);

    /* BF16: the top half of a binary32 */
    float bf_in[5] = {1.0f, -3.0f, 0x1p100f, -0x1p-130f, INFINITY};
    uint8_t bf[10];
    for (int i = 0; i < 5; i++) {
        uint32_t u;
        memcpy(&u, &bf_in[i], 4);
        bf[2 * i] = (uint8_t)(u >> 16);
        bf[2 * i + 1] = (uint8_t)(u >> 24);
    }
    t = (pe_st_tensor){.name = "b", .dtype = PE_ST_BF16, .ndim = 1, .shape = {5},
                       .numel = 5, .data = bf, .nbytes = 10};
    CHECK_OK(pe_st_to_f32(&t, out, 5));
    CHECK(memcmp(out, bf_in, sizeof bf_in) == 0);

    /* F64: rounded to nearest, beyond the float range to +-inf */
    double d_in[7] = {0.1, -1e300, 1e-300, 3.25, 0x1.ffffffp127,
                      0x1.fffffefffffffp127, -0x1p-149};
    float d_want[7] = {0.1f, -INFINITY, 0.0f, 3.25f, INFINITY, 0x1.fffffep127f,
                       -0x1p-149f};
    uint8_t d8[56];
    for (int i = 0; i < 7; i++) {
        uint64_t u;
        memcpy(&u, &d_in[i], 8);
        put_u64le(d8 + 8 * i, u);
    }
    t = (pe_st_tensor){.name = "d", .dtype = PE_ST_F64, .ndim = 1, .shape = {7},
                       .numel = 7, .data = d8, .nbytes = 56};
    CHECK_OK(pe_st_to_f32(&t, out, 7));
    CHECK(memcmp(out, d_want, sizeof d_want) == 0);

    /* F32 from unaligned bytes */
    uint8_t f32[13];
    float one = 1.5f;
    uint32_t u1;
    memcpy(&u1, &one, 4);
    for (int i = 0; i < 4; i++) f32[1 + i] = (uint8_t)(u1 >> (8 * i));
    t = (pe_st_tensor){.name = "f", .dtype = PE_ST_F32, .ndim = 0, .numel = 1,
                       .data = f32 + 1, .nbytes = 4};
    CHECK_OK(pe_st_to_f32(&t, out, 1));
    CHECK(out[0] == 1.5f);

    /* refusals leave dst alone */
    out[0] = 42.0f;
    CHECK_RC(pe_st_to_f32(&t, out, 2), PE_EUSAGE);
    CHECK(strstr(pe_errmsg(), "tensor 'f' has 1 elements") != NULL);
    t.dtype = PE_ST_I64;
    t.nbytes = 8;
    CHECK_RC(pe_st_to_f32(&t, out, 1), PE_EUNSUPPORTED);
    CHECK(strstr(pe_errmsg(), "I64 cannot be converted") != NULL);
    CHECK(out[0] == 42.0f);
}

/* ------------------------------------------------------------- python */

/* An independent reader and writer of the format: struct + json only.
 *   st.py check FILE KEYHEX VALHEX NAMEHEX  FILE (written by pe) holds the
 *       tensors of fill_writer, laid out as the reference writer does
 *   st.py write FILE KEYHEX VALHEX NAMEHEX  writes a file in another order
 *   st.py same A B  B holds the tensors and metadata of A, in the layout
 * Exit status 0 when all holds. */
static const char st_py[] =
    "import json, struct, sys\n"
    "RANK = ['BOOL','F4','F6_E2M3','F6_E3M2','U8','I8','F8_E5M2','F8_E4M3',\n"
    "        'F8_E8M0','F8_E4M3FNUZ','F8_E5M2FNUZ','I16','U16','F16','BF16',\n"
    "        'I32','U32','F32','C64','F64','I64','U64']\n"
    "SIZE = {'BOOL':1,'U8':1,'I8':1,'I16':2,'U16':2,'F16':2,'BF16':2,'I32':4,\n"
    "        'U32':4,'F32':4,'F64':8,'I64':8,'U64':8}\n"
    "def fail(msg):\n"
    "    sys.stderr.write('st.py: ' + msg + chr(10))\n"
    "    sys.exit(1)\n"
    "def load(path, strict):\n"
    "    b = open(path, 'rb').read()\n"
    "    n = struct.unpack('<Q', b[:8])[0]\n"
    "    text = b[8:8 + n].decode('utf-8')\n"
    "    data = b[8 + n:]\n"
    "    pairs = json.loads(text, object_pairs_hook=lambda p: p)\n"
    "    keys = [k for k, v in pairs]\n"
    "    if len(set(keys)) != len(keys): fail('duplicate keys')\n"
    "    meta, tensors, spans = {}, {}, []\n"
    "    for k, v in pairs:\n"
    "        if k == '__metadata__':\n"
    "            if strict and keys[0] != k: fail('__metadata__ is not first')\n"
    "            meta = dict(v)\n"
    "            if strict and [m for m, _ in v] != sorted(meta): fail('metadata order')\n"
    "            continue\n"
    "        info = dict(v)\n"
    "        if sorted(info) != ['data_offsets', 'dtype', 'shape']: fail('fields of %r' % k)\n"
    "        s, e = info['data_offsets']\n"
    "        count = 1\n"
    "        for d in info['shape']: count *= d\n"
    "        if e - s != count * SIZE[info['dtype']]: fail('span of %r' % k)\n"
    "        tensors[k] = (info['dtype'], list(info['shape']), data[s:e])\n"
    "        spans.append((s, e, k))\n"
    "    pos = 0\n"
    "    for s, e, k in sorted(spans):\n"
    "        if s != pos: fail('hole or overlap at %r' % k)\n"
    "        pos = e\n"
    "    if pos != len(data): fail('uncovered bytes at the end')\n"
    "    if strict:\n"
    "        if n % 8: fail('header length %d is not a multiple of 8' % n)\n"
    "        body = text.rstrip(' ')\n"
    "        if len(text) - len(body) >= 8 or not body.endswith('}'): fail('padding')\n"
    "        names = [k for s, e, k in spans]\n"
    "        want = sorted(names, key=lambda k: (-RANK.index(tensors[k][0]), k))\n"
    "        if names != want: fail('order %r, want %r' % (names, want))\n"
    "        if [s for s, e, k in spans] != sorted(s for s, e, k in spans):\n"
    "            fail('offsets not in header order')\n"
    "        for s, e, k in spans:\n"
    "            if (8 + n + s) % SIZE[tensors[k][0]]: fail('%r is misaligned' % k)\n"
    "    return meta, tensors\n"
    "def unhex(h): return bytes.fromhex(h).decode('utf-8')\n"
    "mode = sys.argv[1]\n"
    "if mode == 'check':\n"
    "    meta, t = load(sys.argv[2], True)\n"
    "    key, val, name = unhex(sys.argv[3]), unhex(sys.argv[4]), unhex(sys.argv[5])\n"
    "    if meta != {'format': 'pt', key: val}: fail('metadata %r' % meta)\n"
    "    want = {\n"
    "        'layer.weight': ('F32', [2, 3], [i * 0.5 - 1 for i in range(6)]),\n"
    "        'layer.bias': ('F32', [3], [0.25, -0.125, 1024.5]),\n"
    "        'step': ('I64', [], [123456789012345]),\n"
    "        'counts': ('I64', [3], [-2**63, -1, 2**63 - 1]),\n"
    "        'empty': ('F32', [0, 5], []),\n"
    "        'z': ('F32', [2, 0, 3], []),\n"
    "        name: ('F32', [1], [7.5]),\n"
    "    }\n"
    "    if sorted(t) != sorted(want): fail('names %r' % sorted(t))\n"
    "    for k, (dt, shape, vals) in want.items():\n"
    "        got_dt, got_shape, raw = t[k]\n"
    "        code = 'f' if dt == 'F32' else 'q'\n"
    "        got = list(struct.unpack('<%d%s' % (len(raw) // struct.calcsize(code), code), raw))\n"
    "        if (got_dt, got_shape, got) != (dt, shape, vals):\n"
    "            fail('tensor %r: %r' % (k, (got_dt, got_shape, got)))\n"
    "elif mode == 'write':\n"
    "    key, val, name = unhex(sys.argv[3]), unhex(sys.argv[4]), unhex(sys.argv[5])\n"
    "    ts = [\n"
    "        ('a.f16', 'F16', [2, 4], struct.pack('<8e', 1.0, -2.5, 65504.0, 2.0**-14,\n"
    "            2.0**-24, -0.0, float('inf'), 0.333251953125)),\n"
    "        ('b.bf16', 'BF16', [3], b''.join(struct.pack('<f', x)[2:]\n"
    "            for x in (1.0, -3.0, 2.0**100))),\n"
    "        ('c.f64', 'F64', [2, 2], struct.pack('<4d', 0.1, -1e300, 1e-300, 3.25)),\n"
    "        ('d.i64', 'I64', [2], struct.pack('<2q', -5, 2**62)),\n"
    "        ('e.u8', 'U8', [5], bytes([0, 1, 127, 128, 255])),\n"
    "        ('f.bool', 'BOOL', [2], bytes([1, 0])),\n"
    "        (name, 'F32', [], struct.pack('<f', 7.5)),\n"
    "        ('g.empty', 'F32', [0], b''),\n"
    "        ('h.i32', 'I32', [1, 1, 1], struct.pack('<i', -7)),\n"
    "    ]\n"
    "    data, info = b'', {}\n"
    "    for nm, dt, shape, raw in reversed(ts):\n"
    "        info[nm] = {'shape': shape, 'dtype': dt,\n"
    "                    'data_offsets': [len(data), len(data) + len(raw)]}\n"
    "        data += raw\n"
    "    header = dict(sorted(info.items()))\n"
    "    header['__metadata__'] = {key: val, 'format': 'pt'}\n"
    "    hb = json.dumps(header).encode('ascii')\n"
    "    open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hb)) + hb + data)\n"
    "elif mode == 'same':\n"
    "    a, b = load(sys.argv[2], False), load(sys.argv[3], True)\n"
    "    if a != b: fail('%r != %r' % (a, b))\n"
    "else:\n"
    "    fail('bad mode')\n";

static void to_hex(char *out, const char *s) {
    for (; *s; s++, out += 2) sprintf(out, "%02x", (unsigned char)*s);
    *out = 0;
}

static void test_python(void) {
    char cmd[8192], kh[256], vh[512], nh[512];
    pe_st_writer *w = NULL;
    pe_st *st = NULL;

    if (access(PYTHON, X_OK) != 0) {
        fprintf(stderr, "  skipped: %s not found (the cross-check needs only "
                "its standard library)\n", PYTHON);
        return;
    }
    clear_dir();
    CHECK(write_file(P("st.py"), st_py, sizeof st_py - 1) == 0);
    to_hex(kh, g_key);
    to_hex(vh, g_val);
    to_hex(nh, g_name);

    /* pe writes, python reads */
    CHECK_OK(pe_st_writer_open(&w));
    if (!w) return;
    fill_writer(w);
    CHECK_OK(pe_st_write_file(w, P("pe.safetensors")));
    pe_st_writer_close(w);
    w = NULL;
    snprintf(cmd, sizeof cmd, PYTHON " %s check %s %s %s %s", P("st.py"),
             P("pe.safetensors"), kh, vh, nh);
    CHECK(system(cmd) == 0);

    /* python writes (ASCII-escaped JSON with surrogate pairs, data in
     * reverse name order, header in name order, no padding), pe reads */
    snprintf(cmd, sizeof cmd, PYTHON " %s write %s %s %s %s", P("st.py"),
             P("py.safetensors"), kh, vh, nh);
    CHECK(system(cmd) == 0);
    CHECK_OK(pe_st_read_file(&st, P("py.safetensors")));
    if (!st) return;
    float f[8];
    const pe_st_tensor *t;
    CHECK(pe_st_count(st) == 9);
    t = pe_st_get(st, "a.f16");
    CHECK(t && t->dtype == PE_ST_F16 && t->ndim == 2 && t->numel == 8);
    if (t) {
        float want[8] = {1.0f, -2.5f, 65504.0f, 0x1p-14f, 0x1p-24f, -0.0f,
                         INFINITY, 0.333251953125f};
        CHECK_OK(pe_st_to_f32(t, f, 8));
        CHECK(memcmp(f, want, sizeof want) == 0);
    }
    t = pe_st_get(st, "b.bf16");
    if (t) {
        float want[3] = {1.0f, -3.0f, 0x1p100f};
        CHECK_OK(pe_st_to_f32(t, f, 3));
        CHECK(memcmp(f, want, sizeof want) == 0);
    }
    t = pe_st_get(st, "c.f64");
    if (t) {
        float want[4] = {0.1f, -INFINITY, 0.0f, 3.25f};
        CHECK_OK(pe_st_to_f32(t, f, 4));
        CHECK(memcmp(f, want, sizeof want) == 0);
    }
    t = pe_st_get(st, "d.i64");
    CHECK(t && t->nbytes == 16 && get_u64le(t->data) == (uint64_t)-5 &&
          get_u64le(t->data + 8) == (uint64_t)1 << 62);
    t = pe_st_get(st, "e.u8");
    CHECK(t && t->dtype == PE_ST_U8 && t->nbytes == 5 &&
          memcmp(t->data, "\x00\x01\x7f\x80\xff", 5) == 0);
    t = pe_st_get(st, "f.bool");
    CHECK(t && t->dtype == PE_ST_BOOL && memcmp(t->data, "\x01\x00", 2) == 0);
    t = pe_st_get(st, g_name);
    CHECK(t && t->ndim == 0);
    if (t) {
        CHECK_OK(pe_st_to_f32(t, f, 1));
        CHECK(f[0] == 7.5f);
    }
    t = pe_st_get(st, "h.i32");
    CHECK(t && t->dtype == PE_ST_I32 && t->ndim == 3 &&
          memcmp(t->data, "\xf9\xff\xff\xff", 4) == 0);
    CHECK(pe_st_get(st, "g.empty") && pe_st_get(st, "g.empty")->nbytes == 0);
    CHECK(pe_st_meta(st, g_key) && strcmp(pe_st_meta(st, g_key), g_val) == 0);

    /* pe rewrites python's file; python finds the same tensors, now in the
     * reference layout. The bytes go in as they are: the file's
     * little-endian order is the host's on the machines this runs on. */
    CHECK_OK(pe_st_writer_open(&w));
    for (size_t k = 0; w && k < pe_st_count(st); k++) {
        t = pe_st_at(st, k);
        CHECK_OK(pe_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data));
    }
    for (size_t k = 0; w && k < pe_st_meta_count(st); k++) {
        const char *mk_, *mv;
        CHECK_OK(pe_st_meta_at(st, k, &mk_, &mv));
        CHECK_OK(pe_st_writer_meta(w, mk_, mv));
    }
    CHECK_OK(pe_st_write_file(w, P("pe2.safetensors")));
    snprintf(cmd, sizeof cmd, PYTHON " %s same %s %s", P("st.py"),
             P("py.safetensors"), P("pe2.safetensors"));
    CHECK(system(cmd) == 0);
    pe_st_writer_close(w);
    pe_st_close(st);
    clear_dir();
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/pe-st-XXXXXX");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    RUN(test_header_length);
    RUN(test_bad_json);
    RUN(test_bad_schema);
    RUN(test_depth_bomb);
    RUN(test_bad_spans);
    RUN(test_valid_edges);
    RUN(test_reference_bytes);
    RUN(test_writer_errors);
    RUN(test_roundtrip);
    RUN(test_read_file_errors);
    RUN(test_to_f32);
    RUN(test_python);
    clear_dir();
    rmdir(g_dir);
    return CHECK_DONE();
}
