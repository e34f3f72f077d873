/*
 * cli.c - shared program plumbing (see cli.h). Not for: library logic.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "pe.h"

int pe_cli_init_fds(void) {
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
        if (n < 0) return errno;
        if (n != fd) { /* lowest free descriptor is fd, so n == fd */
            close(n);
            return EBADF;
        }
    }
    return 0;
}

int pe_cli_fail(const char *prog, int rc) {
    const char *m = pe_errmsg();
    fprintf(stderr, "%s: %s\n", prog, pe_esc(m[0] ? m : pe_strerror(rc)));
    return rc == PE_EUSAGE ? PE_EXIT_USAGE : PE_EXIT_ERROR;
}

int pe_cli_usage(const char *prog, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n%s: try '%s --help'\n", prog, pe_esc(buf), prog, prog);
    return PE_EXIT_USAGE;
}

int pe_keyline_parse(const char *line, size_t len, pe_key *key,
                     const char **rest) {
    size_t klen = 0;
    while (klen < len && line[klen] != '\t') klen++;
    if (klen != PE_KEY_HEX) {
        if (klen > PE_KEY_HEX && klen <= len) {
            size_t i = 0;
            while (i < klen && line[i] != ' ' && line[i] != '\r') i++;
            if (i == PE_KEY_HEX)
                return pe_fail(PE_EFORMAT, "a key must be followed by a tab or "
                               "the end of the line");
        }
        return pe_fail(PE_EFORMAT, "expected a key of %d hex digits", PE_KEY_HEX);
    }
    int rc = pe_key_from_hex(line, PE_KEY_HEX, key);
    if (rc) return rc;
    *rest = klen < len ? line + klen + 1 : "";
    return 0;
}

int pe_keylines_read(FILE *f, const char *name, pe_keyline_fn fn, void *ctx) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long lineno = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (n && line[n - 1] == '\n') line[--n] = 0;
        if (n && line[n - 1] == '\r') line[--n] = 0;
        if (n == 0) continue;
        pe_key key;
        const char *rest;
        if (memchr(line, 0, (size_t)n)) {
            rc = pe_fail(PE_EFORMAT, "%s: line %lu: a NUL byte", name, lineno);
            break;
        }
        if ((rc = pe_keyline_parse(line, (size_t)n, &key, &rest))) {
            char m[512];
            snprintf(m, sizeof m, "%s", pe_errmsg());
            char shown[48];
            snprintf(shown, sizeof shown, "%.40s", line);
            rc = pe_fail(PE_EFORMAT, "%s: line %lu: %s: '%s%s'", name, lineno, m,
                         shown, n > 40 ? "..." : "");
            break;
        }
        if ((rc = fn(ctx, &key, rest, lineno))) break;
    }
    if (!rc && ferror(f)) rc = pe_fail(EIO, "%s: read error", name);
    free(line);
    return rc;
}

int pe_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
    char *end;
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return pe_fail(PE_EUSAGE, "'%s' is not a number", s ? s : "");
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return pe_fail(PE_EUSAGE, "'%s' is not a number", s);
    if (v < min || v > max)
        return pe_fail(PE_EUSAGE, "%s is out of range (%llu to %llu)", s,
                       (unsigned long long)min, (unsigned long long)max);
    *out = v;
    return 0;
}

int pe_parse_size(const char *s, uint32_t *w, uint32_t *h) {
    const char *x = strchr(s, 'x');
    if (!x) return pe_fail(PE_EUSAGE, "size '%s' is not WxH", s);
    char a[32];
    size_t n = (size_t)(x - s);
    if (n == 0 || n >= sizeof a) return pe_fail(PE_EUSAGE, "size '%s' is not WxH", s);
    memcpy(a, s, n);
    a[n] = 0;
    uint64_t vw, vh;
    if (pe_parse_u64(a, 1, 65535, &vw) || pe_parse_u64(x + 1, 1, 65535, &vh))
        return pe_fail(PE_EUSAGE, "size '%s' is not WxH with sides 1 to 65535", s);
    *w = (uint32_t)vw;
    *h = (uint32_t)vh;
    return 0;
}

typedef struct each_ctx {
    pe_txn *txn;
    const char *set;
    pe_cli_key_fn fn;
    void *ctx;
    const char *in_name;
} each_ctx;

static int each_line(void *c, const pe_key *key, const char *rest,
                     unsigned long lineno) {
    each_ctx *e = c;
    pe_set_entry ent = {*key, 0, PE_LABEL_NONE};
    char hx[PE_KEY_HEX + 1];
    (void)rest;
    int rc = pe_img_exists(e->txn, key);
    if (rc < 0) return rc;
    if (rc == 0) {
        pe_key_to_hex(key, hx);
        return pe_fail(PE_ENOTFOUND, "%s: line %lu: image %s is not in the store",
                       e->in_name, lineno, hx);
    }
    if (e->set && (rc = pe_set_lookup(e->txn, e->set, key, &ent)))
        return pe_fail_prefix(rc, "%s: line %lu", e->in_name, lineno);
    return e->fn(e->ctx, e->txn, &ent, lineno);
}

int pe_cli_each_key(pe_txn *txn, const char *set, int32_t label, FILE *in,
                    const char *in_name, pe_cli_key_fn fn, void *ctx) {
    if (in) {
        each_ctx e = {txn, set, fn, ctx, in_name};
        return pe_keylines_read(in, in_name, each_line, &e);
    }
    pe_set_iter *it;
    pe_set_entry ent;
    int rc = pe_set_iter_open(txn, set, 4096, &it);
    if (rc) return rc;
    unsigned long n = 0;
    while ((rc = pe_set_iter_next(it, &ent)) == 1) {
        n++;
        if (label != PE_CLI_ANY_LABEL && ent.label != label) continue;
        if ((rc = fn(ctx, txn, &ent, n))) break;
    }
    pe_set_iter_close(it);
    return rc < 0 || rc > 1 ? rc : 0;
}

int pe_cli_copy_classes(const pe_set_hdr *h, char ***out, uint32_t *n) {
    *out = NULL;
    *n = 0;
    if (!h->n_classes) return 0;
    char **v = calloc(h->n_classes, sizeof *v);
    if (!v) return ENOMEM;
    for (uint32_t i = 0; i < h->n_classes; i++)
        if (!(v[i] = strdup(h->classes[i]))) {
            pe_cli_free_classes(v, i);
            return ENOMEM;
        }
    *out = v;
    *n = h->n_classes;
    return 0;
}

void pe_cli_free_classes(char **v, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

int pe_parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi))
        return pe_fail(PE_EUSAGE, "'%s' is not a number in [%g, %g]", s, lo, hi);
    *out = v;
    return 0;
}

int pe_parse_floats3(const char *s, float *v) {
    double d[3];
    int k = 0;
    const char *p = s;
    for (;;) {
        char *end;
        if (k == 3) return PE_EUSAGE;
        d[k] = strtod(p, &end);
        if (end == p || !isfinite(d[k])) return PE_EUSAGE;
        k++;
        if (*end == 0) break;
        if (*end != ',') return PE_EUSAGE;
        p = end + 1;
    }
    if (k != 1 && k != 3) return PE_EUSAGE;
    for (int i = 0; i < 3; i++) v[i] = (float)d[k == 1 ? 0 : i];
    return 0;
}
