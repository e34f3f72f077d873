/*
 * safetensors.c - the safetensors reader (a strict, non-recursive JSON
 * parser that follows the header's schema, then the span checks) and the
 * writer (reference layout, atomic replace). See safetensors.h for the
 * rules enforced and who owns what.
 *
 * Not for: general JSON. The parser knows only the three shapes a valid
 * header can take (the top object, a tensor object, the metadata object)
 * and refuses any value in a place the schema has no room for.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "escape.h"
#include "pe.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define ST_HOST_BE 1
#else
#define ST_HOST_BE 0
#endif

/* Bytes of a name quoted in a message: enough to recognise it, short enough
 * that the reason after it survives the 1023-byte message limit. */
#define ST_NAME_SHOWN 200

#define ST_METADATA_KEY "__metadata__"

/* name: the header's spelling; bits: element width; swap: bytes per unit
 * that is byte-swapped on a big-endian host (C64 is two F32). */
static const struct {
    const char *name;
    unsigned bits;
    unsigned swap;
} dtypes[PE_ST_NDTYPES] = {
    [PE_ST_BOOL] = {"BOOL", 8, 1},
    [PE_ST_F4] = {"F4", 4, 1},
    [PE_ST_F6_E2M3] = {"F6_E2M3", 6, 1},
    [PE_ST_F6_E3M2] = {"F6_E3M2", 6, 1},
    [PE_ST_U8] = {"U8", 8, 1},
    [PE_ST_I8] = {"I8", 8, 1},
    [PE_ST_F8_E5M2] = {"F8_E5M2", 8, 1},
    [PE_ST_F8_E4M3] = {"F8_E4M3", 8, 1},
    [PE_ST_F8_E8M0] = {"F8_E8M0", 8, 1},
    [PE_ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8, 1},
    [PE_ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8, 1},
    [PE_ST_I16] = {"I16", 16, 2},
    [PE_ST_U16] = {"U16", 16, 2},
    [PE_ST_F16] = {"F16", 16, 2},
    [PE_ST_BF16] = {"BF16", 16, 2},
    [PE_ST_I32] = {"I32", 32, 4},
    [PE_ST_U32] = {"U32", 32, 4},
    [PE_ST_F32] = {"F32", 32, 4},
    [PE_ST_C64] = {"C64", 64, 4},
    [PE_ST_F64] = {"F64", 64, 8},
    [PE_ST_I64] = {"I64", 64, 8},
    [PE_ST_U64] = {"U64", 64, 8},
};

const char *pe_st_dtype_name(pe_st_dtype dt) {
    return (unsigned)dt < PE_ST_NDTYPES ? dtypes[dt].name : "?";
}

unsigned pe_st_dtype_bits(pe_st_dtype dt) {
    return (unsigned)dt < PE_ST_NDTYPES ? dtypes[dt].bits : 0;
}

static int shown(const char *s) {
    size_t n = strlen(s);
    return (int)(n < ST_NAME_SHOWN ? n : ST_NAME_SHOWN);
}

/* "[2, 3]" into buf (size n), truncated with "..." when long. */
static const char *fmt_shape(char *buf, size_t n, const size_t *shape,
                             size_t ndim) {
    size_t used = 0;
    buf[0] = 0;
    for (size_t d = 0; d <= ndim && used + 1 < n; d++) {
        int w = d == ndim ? snprintf(buf + used, n - used, "]")
                          : snprintf(buf + used, n - used, "%s%zu",
                                     d ? ", " : "[", shape[d]);
        if (w < 0 || (size_t)w >= n - used) {
            if (n >= 4) memcpy(buf + n - 4, "...", 4);
            break;
        }
        used += (size_t)w;
    }
    if (ndim == 0 && n >= 3) memcpy(buf, "[]", 3);
    return buf;
}

static size_t utf8_seq(const uint8_t *s, size_t n) {
    unsigned cp;
    return pe_utf8_seq(s, n, &cp);
}

static int utf8_valid(const char *str) {
    const uint8_t *s = (const uint8_t *)str;
    size_t n = strlen(str);
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(s + i, n - i);
        if (!l) return 0;
        i += l;
    }
    return 1;
}

/* ---------------------------------------------------------------- reader */

typedef struct st_meta {
    const char *key;
    const char *value;
} st_meta;

struct pe_st {
    uint8_t *owned;          /* the file's bytes (pe_st_read_file), or NULL */
    char *arena;             /* every unescaped string: names, keys, values */
    pe_st_tensor *tensors;   /* (count) in name order */
    size_t count;
    st_meta *meta;           /* (nmeta) in key order */
    size_t nmeta;
};

/* The parser's state over the header bytes. */
typedef struct jp {
    const uint8_t *s;
    size_t n, i;
    char *arena;        /* unescaped strings go here, one after another */
    size_t used, cap;
} jp;

/* Fails with rc and "safetensors: [KIND ['NAME']: ]MSG (file offset B)". */
static int jfail(const jp *p, int rc, const char *kind, const char *name,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int jfail(const jp *p, int rc, const char *kind, const char *name,
                 const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (kind && name)
        return pe_fail(rc, "safetensors: %s '%.*s': %s (file offset %zu)", kind,
                       shown(name), name, msg, p->i + 8);
    if (kind)
        return pe_fail(rc, "safetensors: %s: %s (file offset %zu)", kind, msg,
                       p->i + 8);
    return pe_fail(rc, "safetensors: %s (file offset %zu)", msg, p->i + 8);
}

static void skip_ws(jp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
                           p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

/* The next byte after whitespace, or -1 at the end (the cursor stays on it). */
static int peek(jp *p) {
    skip_ws(p);
    return p->i < p->n ? p->s[p->i] : -1;
}

/* What a message calls the byte at the cursor. */
static const char *what_here(const jp *p, char *buf, size_t n) {
    if (p->i >= p->n) return "the end of the header";
    uint8_t c = p->s[p->i];
    if (c > 0x20 && c < 0x7f) snprintf(buf, n, "'%c'", c);
    else snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

static int expect(jp *p, char c, const char *kind, const char *name,
                  const char *context) {
    char here[16];
    if (peek(p) == c) {
        p->i++;
        return 0;
    }
    return jfail(p, PE_EFORMAT, kind, name, "expected '%c' %s, found %s", c,
                 context, what_here(p, here, sizeof here));
}

static int hex4(const uint8_t *s, unsigned *v) {
    *v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = s[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

/* Parses the string at the cursor (after whitespace) into the arena:
 * *out is NUL-terminated UTF-8 without NULs, *len its length. The arena
 * holds header length + 8 bytes, which is enough: a string's unescaped
 * form plus its NUL is never longer than its quoted form, so the arena
 * never gets ahead of the cursor. kind/name say where in messages. */
static int parse_string(jp *p, const char *kind, const char *name,
                        const char *what, const char **out, size_t *len) {
    char here[16];
    if (peek(p) != '"')
        return jfail(p, PE_EFORMAT, kind, name, "expected %s (a string), found %s",
                     what, what_here(p, here, sizeof here));
    size_t start = p->i++;
    char *dst = p->arena + p->used;
    size_t k = 0;
    for (;;) {
        PE_ASSERT(p->used + k + 5 <= p->cap);
        if (p->i >= p->n) {
            p->i = start;
            return jfail(p, PE_EFORMAT, kind, name, "unterminated string");
        }
        uint8_t c = p->s[p->i];
        if (c == '"') {
            p->i++;
            break;
        }
        if (c < 0x20)
            return jfail(p, PE_EFORMAT, kind, name,
                         "raw control character 0x%02x in a string "
                         "(JSON needs it escaped)", c);
        if (c >= 0x80) {
            size_t l = utf8_seq(p->s + p->i, p->n - p->i);
            if (!l)
                return jfail(p, PE_EFORMAT, kind, name,
                             "invalid UTF-8 in a string (byte 0x%02x)", c);
            memcpy(dst + k, p->s + p->i, l);
            k += l;
            p->i += l;
            continue;
        }
        if (c != '\\') {
            dst[k++] = (char)c;
            p->i++;
            continue;
        }
        if (p->i + 1 >= p->n) {
            p->i = start;
            return jfail(p, PE_EFORMAT, kind, name, "unterminated string");
        }
        uint8_t e = p->s[p->i + 1];
        char simple = 0;
        switch (e) {
        case '"': simple = '"'; break;
        case '\\': simple = '\\'; break;
        case '/': simple = '/'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        case 'u': break;
        default:
            if (e > 0x20 && e < 0x7f)
                return jfail(p, PE_EFORMAT, kind, name,
                             "bad escape '\\%c' in a string", e);
            return jfail(p, PE_EFORMAT, kind, name,
                         "bad escape (backslash, byte 0x%02x) in a string", e);
        }
        if (simple) {
            dst[k++] = simple;
            p->i += 2;
            continue;
        }
        unsigned cp, lo;
        if (p->n - p->i < 6 || hex4(p->s + p->i + 2, &cp) != 0)
            return jfail(p, PE_EFORMAT, kind, name,
                         "bad \\u escape (needs 4 hex digits)");
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return jfail(p, PE_EFORMAT, kind, name,
                         "lone low surrogate \\u%04x in a string", cp);
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (p->n - p->i < 12 || p->s[p->i + 6] != '\\' ||
                p->s[p->i + 7] != 'u' || hex4(p->s + p->i + 8, &lo) != 0 ||
                lo < 0xdc00 || lo > 0xdfff)
                return jfail(p, PE_EFORMAT, kind, name,
                             "lone high surrogate \\u%04x in a string (not "
                             "followed by a \\udc00-\\udfff escape)", cp);
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p->i += 6;
        }
        if (cp == 0)
            return jfail(p, PE_EFORMAT, kind, name,
                         "\\u0000 in a string (names and values are C strings)");
        p->i += 6;
        if (cp < 0x80) {
            dst[k++] = (char)cp;
        } else if (cp < 0x800) {
            dst[k++] = (char)(0xc0 | cp >> 6);
            dst[k++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            dst[k++] = (char)(0xe0 | cp >> 12);
            dst[k++] = (char)(0x80 | (cp >> 6 & 0x3f));
            dst[k++] = (char)(0x80 | (cp & 0x3f));
        } else {
            dst[k++] = (char)(0xf0 | cp >> 18);
            dst[k++] = (char)(0x80 | (cp >> 12 & 0x3f));
            dst[k++] = (char)(0x80 | (cp >> 6 & 0x3f));
            dst[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    dst[k] = 0;
    p->used += k + 1;
    *out = dst;
    if (len) *len = k;
    return 0;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* Parses the JSON number at the cursor, which must be an integer in
 * 0..SIZE_MAX written without sign, fraction or exponent. what names the
 * field in messages. */
static int parse_size(jp *p, const char *kind, const char *name,
                      const char *what, size_t *out) {
    char here[16];
    int c = peek(p);
    size_t start = p->i, i = p->i, n = p->n;
    const uint8_t *s = p->s;
    int neg = 0, frac = 0, over = 0;
    uint64_t v = 0;

    if (c != '-' && !is_digit(c))
        return jfail(p, PE_EFORMAT, kind, name,
                     "expected a non-negative integer in %s, found %s", what,
                     what_here(p, here, sizeof here));
    if (s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= n || !is_digit(s[i]))
        return jfail(p, PE_EFORMAT, kind, name, "malformed number in %s", what);
    if (s[i] == '0' && i + 1 < n && is_digit(s[i + 1]))
        return jfail(p, PE_EFORMAT, kind, name,
                     "number with a leading zero in %s", what);
    for (; i < n && is_digit(s[i]); i++) {
        unsigned d = s[i] - '0';
        if (v > (UINT64_MAX - d) / 10) over = 1;
        else v = v * 10 + d;
    }
    if (i < n && s[i] == '.') {
        frac = 1;
        if (++i >= n || !is_digit(s[i]))
            return jfail(p, PE_EFORMAT, kind, name, "malformed number in %s", what);
        while (i < n && is_digit(s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        frac = 1;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !is_digit(s[i]))
            return jfail(p, PE_EFORMAT, kind, name, "malformed number in %s", what);
        while (i < n && is_digit(s[i])) i++;
    }
    p->i = start;
    if (neg)
        return jfail(p, PE_EFORMAT, kind, name, "negative number in %s", what);
    if (frac)
        return jfail(p, PE_EFORMAT, kind, name,
                     "%s must hold integers, found a fraction or exponent", what);
    if (over || v > SIZE_MAX)
        return jfail(p, PE_EFORMAT, kind, name,
                     "number too large in %s (%.*s)", what,
                     (int)(i - start < 40 ? i - start : 40), (const char *)s + start);
    p->i = i;
    *out = (size_t)v;
    return 0;
}

/* After a ',' in an object or array: a clear message for a trailing comma. */
static int no_trailing_comma(jp *p, int close, const char *kind,
                             const char *name) {
    if (peek(p) == close)
        return jfail(p, PE_EFORMAT, kind, name, "trailing comma before '%c'",
                     close);
    return 0;
}

/* One tensor object, for tensor `name`; checks what can be checked without
 * the other tensors. data_len is the size of the data buffer. */
static int parse_tensor(jp *p, const char *name, size_t data_len,
                        pe_st_tensor *t) {
    static const char *const T = "tensor";
    size_t begin = 0, end = 0, nbits;
    int have_dtype = 0, have_shape = 0, have_offsets = 0, rc;
    char here[16], shape_s[96];

    memset(t, 0, sizeof *t);
    t->name = name;
    if (peek(p) != '{')
        return jfail(p, PE_EFORMAT, T, name,
                     "expected an object {dtype, shape, data_offsets}, found %s",
                     what_here(p, here, sizeof here));
    p->i++;
    if (peek(p) == '}') {
        p->i++;
    } else {
        for (;;) {
            const char *field, *dt;
            size_t mark = p->used;
            if ((rc = parse_string(p, T, name, "a field name", &field, NULL)))
                return rc;
            if ((rc = expect(p, ':', T, name, "after a field name"))) return rc;
            if (strcmp(field, "dtype") == 0) {
                if (have_dtype)
                    return jfail(p, PE_EFORMAT, T, name, "field 'dtype' given twice");
                have_dtype = 1;
                if ((rc = parse_string(p, T, name, "dtype", &dt, NULL))) return rc;
                int found = 0;
                for (int k = 0; k < PE_ST_NDTYPES; k++)
                    if (strcmp(dt, dtypes[k].name) == 0) {
                        t->dtype = (pe_st_dtype)k;
                        found = 1;
                    }
                if (!found)
                    return jfail(p, PE_EFORMAT, T, name, "unknown dtype '%.*s'",
                                 shown(dt), dt);
            } else if (strcmp(field, "shape") == 0) {
                if (have_shape)
                    return jfail(p, PE_EFORMAT, T, name, "field 'shape' given twice");
                have_shape = 1;
                if (peek(p) != '[')
                    return jfail(p, PE_EFORMAT, T, name,
                                 "shape must be an array, found %s",
                                 what_here(p, here, sizeof here));
                p->i++;
                if (peek(p) == ']') {
                    p->i++;
                } else {
                    for (;;) {
                        size_t dim;
                        if ((rc = parse_size(p, T, name, "shape", &dim))) return rc;
                        if (t->ndim == PE_ST_MAX_DIMS)
                            return jfail(p, PE_EUNSUPPORTED, T, name,
                                         "more than %d dimensions", PE_ST_MAX_DIMS);
                        t->shape[t->ndim++] = dim;
                        int c = peek(p);
                        p->i += c >= 0;
                        if (c == ']') break;
                        if (c != ',') {
                            p->i -= c >= 0;
                            return jfail(p, PE_EFORMAT, T, name,
                                         "expected ',' or ']' in shape, found %s",
                                         what_here(p, here, sizeof here));
                        }
                        if ((rc = no_trailing_comma(p, ']', T, name))) return rc;
                    }
                }
            } else if (strcmp(field, "data_offsets") == 0) {
                if (have_offsets)
                    return jfail(p, PE_EFORMAT, T, name,
                                 "field 'data_offsets' given twice");
                have_offsets = 1;
                if (peek(p) != '[')
                    return jfail(p, PE_EFORMAT, T, name,
                                 "data_offsets must be an array [begin, end], "
                                 "found %s", what_here(p, here, sizeof here));
                p->i++;
                if ((rc = parse_size(p, T, name, "data_offsets", &begin)) ||
                    (rc = expect(p, ',', T, name,
                                 "in data_offsets (it holds exactly [begin, end])")) ||
                    (rc = parse_size(p, T, name, "data_offsets", &end)) ||
                    (rc = expect(p, ']', T, name,
                                 "in data_offsets (it holds exactly [begin, end])")))
                    return rc;
            } else {
                return jfail(p, PE_EFORMAT, T, name,
                             "unknown field '%.*s' (only dtype, shape and "
                             "data_offsets are defined)", shown(field), field);
            }
            /* Field names and the dtype string are not kept. */
            p->used = mark;
            int c = peek(p);
            p->i += c >= 0;
            if (c == '}') break;
            if (c != ',') {
                p->i -= c >= 0;
                return jfail(p, PE_EFORMAT, T, name,
                             "expected ',' or '}' after a field, found %s",
                             what_here(p, here, sizeof here));
            }
            if ((rc = no_trailing_comma(p, '}', T, name))) return rc;
        }
    }
    if (!have_dtype || !have_shape || !have_offsets)
        return jfail(p, PE_EFORMAT, T, name, "missing field '%s'",
                     !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");

    fmt_shape(shape_s, sizeof shape_s, t->shape, t->ndim);
    t->numel = 1;
    for (size_t d = 0; d < t->ndim; d++)
        if (__builtin_mul_overflow(t->numel, t->shape[d], &t->numel))
            return jfail(p, PE_EFORMAT, T, name,
                         "shape %s has more elements than fit in %zu bits",
                         shape_s, sizeof(size_t) * 8);
    if (__builtin_mul_overflow(t->numel, (size_t)dtypes[t->dtype].bits, &nbits))
        return jfail(p, PE_EFORMAT, T, name, "%s x %s overflows a byte count",
                     dtypes[t->dtype].name, shape_s);
    if (nbits % 8)
        return jfail(p, PE_EFORMAT, T, name,
                     "%zu elements of %s do not fill whole bytes", t->numel,
                     dtypes[t->dtype].name);
    t->nbytes = nbits / 8;
    if (end < begin)
        return jfail(p, PE_EFORMAT, T, name,
                     "data_offsets [%zu, %zu] end before they begin", begin, end);
    if (end - begin != t->nbytes)
        return jfail(p, PE_EFORMAT, T, name,
                     "%s x %s is %zu bytes, but data_offsets [%zu, %zu] span %zu",
                     dtypes[t->dtype].name, shape_s, t->nbytes, begin, end,
                     end - begin);
    if (end > data_len)
        return jfail(p, PE_EFORMAT, T, name,
                     "data_offsets [%zu, %zu] run past the end of the "
                     "%zu-byte data buffer", begin, end, data_len);
    t->offset = begin;
    return 0;
}

/* The "__metadata__" object: string keys to string values. */
static int parse_metadata(jp *p, st_meta **meta, size_t *nmeta) {
    char here[16];
    size_t cap = 0;
    int rc;
    if (peek(p) != '{')
        return jfail(p, PE_EFORMAT, NULL, NULL,
                     "__metadata__ must be an object of strings, found %s",
                     what_here(p, here, sizeof here));
    p->i++;
    if (peek(p) == '}') {
        p->i++;
        return 0;
    }
    for (;;) {
        const char *key, *value;
        if ((rc = parse_string(p, "__metadata__", NULL, "a key", &key, NULL)))
            return rc;
        if ((rc = expect(p, ':', "metadata key", key, "after the key"))) return rc;
        if (peek(p) != '"')
            return jfail(p, PE_EFORMAT, "metadata key", key,
                         "value is not a string (found %s)",
                         what_here(p, here, sizeof here));
        if ((rc = parse_string(p, "metadata key", key, "a value", &value, NULL)))
            return rc;
        if (*nmeta == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            st_meta *nm = realloc(*meta, ncap * sizeof *nm);
            if (!nm) return pe_fail(ENOMEM, "safetensors: out of memory");
            *meta = nm;
            cap = ncap;
        }
        (*meta)[(*nmeta)++] = (st_meta){key, value};
        int c = peek(p);
        p->i += c >= 0;
        if (c == '}') return 0;
        if (c != ',') {
            p->i -= c >= 0;
            return jfail(p, PE_EFORMAT, NULL, NULL,
                         "expected ',' or '}' in __metadata__, found %s",
                         what_here(p, here, sizeof here));
        }
        if ((rc = no_trailing_comma(p, '}', "__metadata__", NULL))) return rc;
    }
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const pe_st_tensor *)a)->name, ((const pe_st_tensor *)b)->name);
}

static int cmp_tensor_span(const void *a, const void *b) {
    const pe_st_tensor *x = *(const pe_st_tensor *const *)a;
    const pe_st_tensor *y = *(const pe_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_meta(const void *a, const void *b) {
    return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

/* The spans, in offset order, must tile [0, data_len) exactly. */
static int check_tiling(const pe_st *st, size_t data_len) {
    const pe_st_tensor **order = NULL;
    size_t pos = 0;
    int rc = 0;
    if (st->count == 0) goto tail;
    order = malloc(st->count * sizeof *order);
    if (!order) return pe_fail(ENOMEM, "safetensors: out of memory");
    for (size_t k = 0; k < st->count; k++) order[k] = &st->tensors[k];
    qsort(order, st->count, sizeof *order, cmp_tensor_span);
    for (size_t k = 0; k < st->count; k++) {
        const pe_st_tensor *t = order[k];
        if (t->offset < pos) {
            const pe_st_tensor *prev = order[k - 1];
            rc = pe_fail(PE_EFORMAT,
                         "safetensors: tensor '%.*s': data_offsets [%zu, %zu] "
                         "overlap those of tensor '%.*s' [%zu, %zu]",
                         shown(t->name), t->name, t->offset, t->offset + t->nbytes,
                         shown(prev->name), prev->name, prev->offset,
                         prev->offset + prev->nbytes);
            goto cleanup;
        }
        if (t->offset > pos) {
            rc = pe_fail(PE_EFORMAT,
                         "safetensors: bytes [%zu, %zu) of the data buffer belong "
                         "to no tensor (a hole before tensor '%.*s')",
                         pos, t->offset, shown(t->name), t->name);
            goto cleanup;
        }
        pos = t->offset + t->nbytes;
    }
tail:
    if (pos != data_len)
        rc = pe_fail(PE_EFORMAT,
                     "safetensors: bytes [%zu, %zu) at the end of the data "
                     "buffer belong to no tensor", pos, data_len);
cleanup:
    free(order);
    return rc;
}

int pe_st_open_mem(pe_st **out, const uint8_t *buf, size_t len) {
    pe_st *st = NULL;
    jp p = {0};
    size_t cap = 0, data_len;
    uint64_t n64;
    int rc = 0, have_meta = 0;
    char here[16];

    PE_ASSERT(out && (buf || len == 0));
    *out = NULL;
    if (len < 8)
        return pe_fail(PE_EFORMAT,
                       "safetensors: %zu bytes, too short for the 8-byte header "
                       "length", len);
    n64 = 0;
    for (int k = 7; k >= 0; k--) n64 = n64 << 8 | buf[k];
    if (n64 > len - 8)
        return pe_fail(PE_EFORMAT,
                       "safetensors: header length %llu runs past the end of the "
                       "file (%zu bytes after the length)",
                       (unsigned long long)n64, len - 8);
    if (n64 > PE_ST_MAX_HEADER)
        return pe_fail(PE_ETOOBIG,
                       "safetensors: header length %llu above the limit of %u bytes",
                       (unsigned long long)n64, PE_ST_MAX_HEADER);
    if (n64 < 2)
        return pe_fail(PE_EFORMAT,
                       "safetensors: header length %llu, too short for a JSON object",
                       (unsigned long long)n64);
    p.s = buf + 8;
    p.n = (size_t)n64;
    data_len = len - 8 - p.n;
    if (p.s[0] != '{')
        return jfail(&p, PE_EFORMAT, NULL, NULL,
                     "the header does not start with '{' (found %s)",
                     what_here(&p, here, sizeof here));

    st = calloc(1, sizeof *st);
    p.cap = p.n + 8;
    p.arena = st ? malloc(p.cap) : NULL;
    if (!st || !p.arena) {
        rc = pe_fail(ENOMEM, "safetensors: out of memory");
        goto fail;
    }
    st->arena = p.arena;

    p.i = 1;
    if (peek(&p) == '}') {
        p.i++;
    } else {
        for (;;) {
            const char *key;
            if ((rc = parse_string(&p, NULL, NULL, "a tensor name", &key, NULL)))
                goto fail;
            if ((rc = expect(&p, ':', "tensor", key, "after the name"))) goto fail;
            if (strcmp(key, ST_METADATA_KEY) == 0) {
                if (have_meta) {
                    rc = jfail(&p, PE_EFORMAT, NULL, NULL,
                               "__metadata__ given twice");
                    goto fail;
                }
                have_meta = 1;
                if ((rc = parse_metadata(&p, &st->meta, &st->nmeta))) goto fail;
            } else {
                if (st->count == cap) {
                    size_t ncap = cap ? cap * 2 : 16;
                    pe_st_tensor *nt = realloc(st->tensors, ncap * sizeof *nt);
                    if (!nt) {
                        rc = pe_fail(ENOMEM, "safetensors: out of memory");
                        goto fail;
                    }
                    st->tensors = nt;
                    cap = ncap;
                }
                if ((rc = parse_tensor(&p, key, data_len, &st->tensors[st->count])))
                    goto fail;
                st->tensors[st->count].data = buf + 8 + p.n + st->tensors[st->count].offset;
                st->count++;
            }
            int c = peek(&p);
            p.i += c >= 0;
            if (c == '}') break;
            if (c != ',') {
                p.i -= c >= 0;
                rc = jfail(&p, PE_EFORMAT, NULL, NULL,
                           "expected ',' or '}' after a tensor, found %s",
                           what_here(&p, here, sizeof here));
                goto fail;
            }
            if ((rc = no_trailing_comma(&p, '}', NULL, NULL))) goto fail;
        }
    }
    skip_ws(&p);
    if (p.i != p.n) {
        rc = jfail(&p, PE_EFORMAT, NULL, NULL,
                   "%s after the header's object (only whitespace may pad it)",
                   what_here(&p, here, sizeof here));
        goto fail;
    }

    if (st->count) qsort(st->tensors, st->count, sizeof *st->tensors, cmp_tensor_name);
    for (size_t k = 1; k < st->count; k++)
        if (strcmp(st->tensors[k - 1].name, st->tensors[k].name) == 0) {
            rc = pe_fail(PE_EFORMAT, "safetensors: duplicate tensor name '%.*s'",
                         shown(st->tensors[k].name), st->tensors[k].name);
            goto fail;
        }
    if (st->nmeta) qsort(st->meta, st->nmeta, sizeof *st->meta, cmp_meta);
    for (size_t k = 1; k < st->nmeta; k++)
        if (strcmp(st->meta[k - 1].key, st->meta[k].key) == 0) {
            rc = pe_fail(PE_EFORMAT, "safetensors: duplicate metadata key '%.*s'",
                         shown(st->meta[k].key), st->meta[k].key);
            goto fail;
        }
    if ((rc = check_tiling(st, data_len))) goto fail;

    *out = st;
    return 0;

fail:
    pe_st_close(st);
    return rc;
}

int pe_st_read_file(pe_st **out, const char *path) {
    struct stat sb;
    uint8_t *buf = NULL;
    size_t cap, len = 0;
    int fd, rc = 0;

    PE_ASSERT(out && path);
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno;
        return pe_fail(rc, "%s: %s", path, strerror(rc));
    }
    if (fstat(fd, &sb) != 0) {
        rc = errno;
        rc = pe_fail(rc, "%s: %s", path, strerror(rc));
        goto cleanup;
    }
    if (S_ISDIR(sb.st_mode)) {
        rc = pe_fail(EISDIR, "%s: %s", path, strerror(EISDIR));
        goto cleanup;
    }
    /* One byte more than the size, so that EOF is seen without a regrow. */
    cap = S_ISREG(sb.st_mode) && sb.st_size > 0 && (uint64_t)sb.st_size < SIZE_MAX
              ? (size_t)sb.st_size + 1
              : 65536;
    buf = malloc(cap);
    if (!buf) {
        rc = pe_fail(ENOMEM, "%s: out of memory for %zu bytes", path, cap);
        goto cleanup;
    }
    for (;;) {
        if (len == cap) {
            size_t ncap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
            uint8_t *nb = ncap > cap ? realloc(buf, ncap) : NULL;
            if (!nb) {
                rc = pe_fail(ENOMEM, "%s: out of memory", path);
                goto cleanup;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = errno;
            rc = pe_fail(rc, "%s: read: %s", path, strerror(rc));
            goto cleanup;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    rc = pe_st_open_mem(out, buf, len);
    if (rc) {
        pe_fail_prefix(rc, "%s", path);
        goto cleanup;
    }
    (*out)->owned = buf;
    buf = NULL;

cleanup:
    free(buf);
    close(fd);
    return rc;
}

void pe_st_close(pe_st *st) {
    if (!st) return;
    free(st->tensors);
    free(st->meta);
    free(st->arena);
    free(st->owned);
    free(st);
}

size_t pe_st_count(const pe_st *st) { return st->count; }

const pe_st_tensor *pe_st_at(const pe_st *st, size_t i) {
    return i < st->count ? &st->tensors[i] : NULL;
}

const pe_st_tensor *pe_st_get(const pe_st *st, const char *name) {
    pe_st_tensor key;
    PE_ASSERT(name);
    key.name = name;
    if (!st->count) return NULL;
    return bsearch(&key, st->tensors, st->count, sizeof key, cmp_tensor_name);
}

const char *pe_st_meta(const pe_st *st, const char *key) {
    st_meta k = {key, NULL};
    PE_ASSERT(key);
    if (!st->nmeta) return NULL;
    const st_meta *m = bsearch(&k, st->meta, st->nmeta, sizeof k, cmp_meta);
    return m ? m->value : NULL;
}

size_t pe_st_meta_count(const pe_st *st) { return st->nmeta; }

int pe_st_meta_at(const pe_st *st, size_t i, const char **key,
                  const char **value) {
    if (i >= st->nmeta)
        return pe_fail(PE_ENOTFOUND, "safetensors: no metadata entry %zu (of %zu)",
                       i, st->nmeta);
    if (key) *key = st->meta[i].key;
    if (value) *value = st->meta[i].value;
    return 0;
}

/* ------------------------------------------------------------- to float */

static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p) {
    return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = h >> 10 & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | man << 13);
    if (exp == 0) {
        /* Zero or subnormal: man x 2^-24, exact in binary32. */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    return f32_from_bits(sign | (exp + 112) << 23 | man << 13);
}

static float f64_to_f32(double d) {
    /* Halfway between FLT_MAX and 2^128: at or beyond it, round to nearest
     * gives infinity. Spelled out because an out-of-range conversion is
     * undefined in C, even where the hardware gives the same answer. */
    const double inf_from = 0x1.ffffffp127;
    if (d >= inf_from) return __builtin_inff();
    if (d <= -inf_from) return -__builtin_inff();
    return (float)d;
}

int pe_st_to_f32(const pe_st_tensor *t, float *dst, size_t n) {
    PE_ASSERT(t && (dst || n == 0));
    const uint8_t *s = t->data;
    if (t->dtype != PE_ST_F32 && t->dtype != PE_ST_F16 && t->dtype != PE_ST_BF16 &&
        t->dtype != PE_ST_F64)
        return pe_fail(PE_EUNSUPPORTED,
                       "safetensors: tensor '%.*s': %s cannot be converted to F32",
                       shown(t->name), t->name, pe_st_dtype_name(t->dtype));
    if (n != t->numel)
        return pe_fail(PE_EUSAGE,
                       "safetensors: tensor '%.*s' has %zu elements, the "
                       "destination %zu", shown(t->name), t->name, t->numel, n);
    switch (t->dtype) {
    case PE_ST_F32:
        for (size_t i = 0; i < n; i++) dst[i] = f32_from_bits(ld32(s + 4 * i));
        break;
    case PE_ST_F16:
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(ld16(s + 2 * i));
        break;
    case PE_ST_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = f32_from_bits((uint32_t)ld16(s + 2 * i) << 16);
        break;
    default: /* PE_ST_F64 */
        for (size_t i = 0; i < n; i++) {
            uint64_t u = ld64(s + 8 * i);
            double d;
            memcpy(&d, &u, sizeof d);
            dst[i] = f64_to_f32(d);
        }
        break;
    }
    return 0;
}

/* ---------------------------------------------------------------- writer */

typedef struct st_wtensor {
    char *name;
    pe_st_dtype dtype;
    size_t ndim;
    size_t shape[PE_ST_MAX_DIMS];
    const void *data;   /* borrowed, host byte order */
    size_t nbytes;
} st_wtensor;

typedef struct st_wmeta {
    char *key;
    char *value;
} st_wmeta;

struct pe_st_writer {
    st_wtensor *t;  /* (nt) in the order added */
    size_t nt, capt;
    st_wmeta *m;    /* (nm) in the order added */
    size_t nm, capm;
};

int pe_st_writer_open(pe_st_writer **out) {
    PE_ASSERT(out);
    *out = calloc(1, sizeof **out);
    return *out ? 0 : pe_fail(ENOMEM, "safetensors writer: out of memory");
}

void pe_st_writer_close(pe_st_writer *w) {
    if (!w) return;
    for (size_t k = 0; k < w->nt; k++) free(w->t[k].name);
    for (size_t k = 0; k < w->nm; k++) {
        free(w->m[k].key);
        free(w->m[k].value);
    }
    free(w->t);
    free(w->m);
    free(w);
}

int pe_st_writer_add(pe_st_writer *w, const char *name, pe_st_dtype dtype,
                     size_t ndim, const size_t *shape, const void *data) {
    st_wtensor t = {0};
    size_t nbits;

    PE_ASSERT(w);
    if (!name || !utf8_valid(name))
        return pe_fail(PE_EUSAGE, "safetensors writer: tensor name %s",
                       name ? "is not valid UTF-8" : "missing");
    if (strcmp(name, ST_METADATA_KEY) == 0)
        return pe_fail(PE_EUSAGE,
                       "safetensors writer: '__metadata__' cannot name a tensor");
    if ((unsigned)dtype >= PE_ST_NDTYPES)
        return pe_fail(PE_EUSAGE, "safetensors writer: tensor '%.*s': bad dtype %d",
                       shown(name), name, (int)dtype);
    if (ndim > PE_ST_MAX_DIMS || (ndim && !shape))
        return pe_fail(PE_EUSAGE,
                       "safetensors writer: tensor '%.*s': %zu dimensions (at "
                       "most %d, with a shape)", shown(name), name, ndim,
                       PE_ST_MAX_DIMS);
    size_t numel = 1;
    for (size_t d = 0; d < ndim; d++)
        if (__builtin_mul_overflow(numel, shape[d], &numel))
            return pe_fail(PE_EUSAGE,
                           "safetensors writer: tensor '%.*s': shape overflows",
                           shown(name), name);
    if (__builtin_mul_overflow(numel, (size_t)dtypes[dtype].bits, &nbits))
        return pe_fail(PE_EUSAGE,
                       "safetensors writer: tensor '%.*s': byte count overflows",
                       shown(name), name);
    if (nbits % 8)
        return pe_fail(PE_EUSAGE,
                       "safetensors writer: tensor '%.*s': %zu elements of %s do "
                       "not fill whole bytes", shown(name), name, numel,
                       dtypes[dtype].name);
    if (nbits && !data)
        return pe_fail(PE_EUSAGE, "safetensors writer: tensor '%.*s': no data",
                       shown(name), name);
    for (size_t k = 0; k < w->nt; k++)
        if (strcmp(w->t[k].name, name) == 0)
            return pe_fail(PE_EEXIST,
                           "safetensors writer: tensor '%.*s' added twice",
                           shown(name), name);
    if (w->nt == w->capt) {
        size_t ncap = w->capt ? w->capt * 2 : 16;
        st_wtensor *nt = realloc(w->t, ncap * sizeof *nt);
        if (!nt) return pe_fail(ENOMEM, "safetensors writer: out of memory");
        w->t = nt;
        w->capt = ncap;
    }
    t.name = strdup(name);
    if (!t.name) return pe_fail(ENOMEM, "safetensors writer: out of memory");
    t.dtype = dtype;
    t.ndim = ndim;
    for (size_t d = 0; d < ndim; d++) t.shape[d] = shape[d];
    t.data = data;
    t.nbytes = nbits / 8;
    w->t[w->nt++] = t;
    return 0;
}

int pe_st_writer_meta(pe_st_writer *w, const char *key, const char *value) {
    PE_ASSERT(w);
    if (!key || !value || !utf8_valid(key) || !utf8_valid(value))
        return pe_fail(PE_EUSAGE,
                       "safetensors writer: metadata key or value missing or "
                       "not valid UTF-8");
    for (size_t k = 0; k < w->nm; k++)
        if (strcmp(w->m[k].key, key) == 0)
            return pe_fail(PE_EEXIST,
                           "safetensors writer: metadata key '%.*s' added twice",
                           shown(key), key);
    if (w->nm == w->capm) {
        size_t ncap = w->capm ? w->capm * 2 : 8;
        st_wmeta *nm = realloc(w->m, ncap * sizeof *nm);
        if (!nm) return pe_fail(ENOMEM, "safetensors writer: out of memory");
        w->m = nm;
        w->capm = ncap;
    }
    st_wmeta m = {strdup(key), strdup(value)};
    if (!m.key || !m.value) {
        free(m.key);
        free(m.value);
        return pe_fail(ENOMEM, "safetensors writer: out of memory");
    }
    w->m[w->nm++] = m;
    return 0;
}

/* A growing byte buffer that remembers running out of memory. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

/* Makes room for n more bytes and a NUL; 0, or -1 (and oom) when not. */
static int sb_reserve(sbuf *b, size_t n) {
    if (b->oom) return -1;
    if (b->cap - b->len >= n + 1) return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap - b->len < n + 1) {
        if (ncap > SIZE_MAX / 2) {
            b->oom = 1;
            return -1;
        }
        ncap *= 2;
    }
    char *np = realloc(b->p, ncap);
    if (!np) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (sb_reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* s as a JSON string, quotes included. */
static void sb_json(sbuf *b, const char *s) {
    size_t len = strlen(s), need = pe_escape(NULL, 0, s, len, PE_ESC_JSON);
    sb_put(b, "\"", 1);
    if (sb_reserve(b, need)) return;
    pe_escape(b->p + b->len, b->cap - b->len, s, len, PE_ESC_JSON);
    b->len += need;
    sb_put(b, "\"", 1);
}

static int cmp_wtensor(const void *a, const void *b) {
    const st_wtensor *x = *(const st_wtensor *const *)a;
    const st_wtensor *y = *(const st_wtensor *const *)b;
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_wmeta(const void *a, const void *b) {
    return strcmp((*(const st_wmeta *const *)a)->key, (*(const st_wmeta *const *)b)->key);
}

/* The header (padded) in *hdr and the tensors in file order in *order (both
 * malloc'd); *data_len the size of the data buffer. */
static int build_header(const pe_st_writer *w, sbuf *hdr, st_wtensor ***order,
                        size_t *data_len) {
    st_wtensor **ord = NULL;
    st_wmeta **mord = NULL;
    size_t off = 0;
    char num[64];
    int rc = 0;

    memset(hdr, 0, sizeof *hdr);
    ord = malloc((w->nt ? w->nt : 1) * sizeof *ord);
    mord = malloc((w->nm ? w->nm : 1) * sizeof *mord);
    if (!ord || !mord) {
        rc = pe_fail(ENOMEM, "safetensors writer: out of memory");
        goto cleanup;
    }
    for (size_t k = 0; k < w->nt; k++) ord[k] = &w->t[k];
    for (size_t k = 0; k < w->nm; k++) mord[k] = &w->m[k];
    if (w->nt) qsort(ord, w->nt, sizeof *ord, cmp_wtensor);
    if (w->nm) qsort(mord, w->nm, sizeof *mord, cmp_wmeta);

    sb_str(hdr, "{");
    if (w->nm) {
        sb_str(hdr, "\"" ST_METADATA_KEY "\":{");
        for (size_t k = 0; k < w->nm; k++) {
            if (k) sb_str(hdr, ",");
            sb_json(hdr, mord[k]->key);
            sb_str(hdr, ":");
            sb_json(hdr, mord[k]->value);
        }
        sb_str(hdr, "}");
    }
    for (size_t k = 0; k < w->nt; k++) {
        const st_wtensor *t = ord[k];
        if (k || w->nm) sb_str(hdr, ",");
        sb_json(hdr, t->name);
        sb_str(hdr, ":{\"dtype\":\"");
        sb_str(hdr, dtypes[t->dtype].name);
        sb_str(hdr, "\",\"shape\":[");
        for (size_t d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%zu", d ? "," : "", t->shape[d]);
            sb_str(hdr, num);
        }
        if (off > SIZE_MAX - t->nbytes) {
            rc = pe_fail(PE_ETOOBIG, "safetensors writer: data above SIZE_MAX bytes");
            goto cleanup;
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + t->nbytes);
        sb_str(hdr, num);
        off += t->nbytes;
    }
    sb_str(hdr, "}");
    /* Padded so that the data buffer starts 8-byte aligned in the file. */
    while (!hdr->oom && hdr->len % 8) sb_str(hdr, " ");
    if (hdr->oom) {
        rc = pe_fail(ENOMEM, "safetensors writer: out of memory");
        goto cleanup;
    }
    if (hdr->len > PE_ST_MAX_HEADER) {
        rc = pe_fail(PE_ETOOBIG,
                     "safetensors writer: header of %zu bytes, above the %u-byte "
                     "limit readers enforce", hdr->len, PE_ST_MAX_HEADER);
        goto cleanup;
    }
    *order = ord;
    ord = NULL;
    *data_len = off;

cleanup:
    if (rc) {
        free(hdr->p);
        memset(hdr, 0, sizeof *hdr);
    }
    free(ord);
    free(mord);
    return rc;
}

static void put_u64le(uint8_t *p, uint64_t v) {
    for (int k = 0; k < 8; k++) p[k] = (uint8_t)(v >> (8 * k));
}

/* Copies n bytes of host-order elements (units of `unit` bytes) to dst in
 * little-endian order. */
static void to_le(uint8_t *dst, const uint8_t *src, size_t n, unsigned unit) {
    if (!ST_HOST_BE || unit == 1) {
        memcpy(dst, src, n);
        return;
    }
    for (size_t i = 0; i < n; i += unit)
        for (unsigned b = 0; b < unit; b++) dst[i + b] = src[i + unit - 1 - b];
}

int pe_st_write_mem(pe_st_writer *w, uint8_t **out, size_t *len) {
    sbuf hdr;
    st_wtensor **ord = NULL;
    size_t data_len, total;
    uint8_t *buf;
    int rc;

    PE_ASSERT(w && out && len);
    *out = NULL;
    *len = 0;
    if ((rc = build_header(w, &hdr, &ord, &data_len))) return rc;
    if (data_len > SIZE_MAX - 8 - hdr.len) {
        rc = pe_fail(PE_ETOOBIG, "safetensors writer: file above SIZE_MAX bytes");
        goto cleanup;
    }
    total = 8 + hdr.len + data_len;
    buf = malloc(total);
    if (!buf) {
        rc = pe_fail(ENOMEM, "safetensors writer: out of memory for %zu bytes", total);
        goto cleanup;
    }
    put_u64le(buf, hdr.len);
    memcpy(buf + 8, hdr.p, hdr.len);
    size_t pos = 8 + hdr.len;
    for (size_t k = 0; k < w->nt; k++) {
        if (ord[k]->nbytes)
            to_le(buf + pos, ord[k]->data, ord[k]->nbytes, dtypes[ord[k]->dtype].swap);
        pos += ord[k]->nbytes;
    }
    *out = buf;
    *len = total;

cleanup:
    free(hdr.p);
    free(ord);
    return rc;
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *s = p;
    while (n) {
        ssize_t r = write(fd, s, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        s += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_tensor(int fd, const st_wtensor *t) {
    if (!ST_HOST_BE || dtypes[t->dtype].swap == 1 || t->nbytes == 0)
        return t->nbytes ? write_all(fd, t->data, t->nbytes) : 0;
    uint8_t chunk[65536];
    const uint8_t *s = t->data;
    for (size_t done = 0; done < t->nbytes;) {
        size_t take = t->nbytes - done < sizeof chunk ? t->nbytes - done : sizeof chunk;
        to_le(chunk, s + done, take, dtypes[t->dtype].swap);
        int rc = write_all(fd, chunk, take);
        if (rc) return rc;
        done += take;
    }
    return 0;
}

/* fsync of the directory holding path, so that the rename is durable.
 * Filesystems that cannot sync a directory (EINVAL) are let be. */
static int sync_dir(const char *path) {
    char *dir = strdup(path);
    int rc = 0, fd;
    if (!dir) return ENOMEM;
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) rc = errno;
    else {
        if (fsync(fd) != 0 && errno != EINVAL) rc = errno;
        close(fd);
    }
    free(dir);
    return rc;
}

int pe_st_write_file(pe_st_writer *w, const char *path) {
    static atomic_uint tmp_seq;
    sbuf hdr;
    st_wtensor **ord = NULL;
    size_t data_len, tmp_cap;
    char *tmp = NULL;
    uint8_t lenbuf[8];
    int fd = -1, rc, created = 0;
    const char *step = "open";

    PE_ASSERT(w && path);
    if ((rc = build_header(w, &hdr, &ord, &data_len))) return rc;
    tmp_cap = strlen(path) + 64;
    tmp = malloc(tmp_cap);
    if (!tmp) {
        rc = pe_fail(ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (int attempt = 0; fd < 0; attempt++) {
        snprintf(tmp, tmp_cap, "%s.tmp.%ld.%u", path, (long)getpid(),
                 atomic_fetch_add(&tmp_seq, 1));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && (errno != EEXIST || attempt == 100)) {
            rc = errno;
            rc = pe_fail(rc, "%s: creating %s: %s", path, tmp, strerror(rc));
            goto cleanup;
        }
    }
    created = 1;
    step = "write";
    put_u64le(lenbuf, hdr.len);
    if ((rc = write_all(fd, lenbuf, 8)) || (rc = write_all(fd, hdr.p, hdr.len)))
        goto os_fail;
    for (size_t k = 0; k < w->nt; k++)
        if ((rc = write_tensor(fd, ord[k]))) goto os_fail;
    step = "fsync";
    if (fsync(fd) != 0) {
        rc = errno;
        goto os_fail;
    }
    step = "close";
    rc = close(fd) != 0 ? errno : 0;
    fd = -1;
    if (rc) goto os_fail;
    step = "rename";
    if (rename(tmp, path) != 0) {
        rc = errno;
        goto os_fail;
    }
    created = 0;
    step = "fsync of the directory";
    if ((rc = sync_dir(path))) goto os_fail;
    goto cleanup;

os_fail:
    rc = pe_fail(rc, "%s: %s: %s", path, step, strerror(rc));
cleanup:
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    free(tmp);
    free(hdr.p);
    free(ord);
    return rc;
}
