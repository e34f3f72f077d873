/*
 * tar.c - the tar reader for archives of encoded images (scraped sets,
 * WebDataset shards): walks POSIX ustar, GNU and pax archives, in memory or
 * streamed from a file (plain, or gzip-compressed and inflated on the fly),
 * and hands each regular-file member to a callback, still encoded, under its
 * stored name.
 *
 * Not for: writing or extracting archives. Member names are passed on raw
 * (they may hold "../", newlines or escape sequences): they are never used
 * as paths here, and whoever prints one escapes it. Not for sparse files,
 * multi-volume archives or bzip2/xz compression either: such members are
 * skipped or the archive refused.
 *
 * What is read: header checksums (the unsigned sum, or the signed one some
 * old tars wrote, as GNU tar accepts); octal or base-256 sizes; names from
 * ustar prefix + name, GNU long names ('L') and pax 'x' headers ("path" and
 * "size" records, parsed strictly; 'g' global headers and 'K' long link
 * names are skipped). Types '0', '\0' and '7' are regular files; '1'..'6'
 * (links, devices, directories, FIFOs) carry no data, as POSIX says, and
 * are skipped, as is a '\0' member whose name ends in '/' (a V7 directory);
 * any other type is skipped over its size. A zero block ends the archive
 * (GNU tar writes two; what follows is not read), as does the end of input
 * at a header boundary. End of input anywhere else is PE_EFORMAT
 * "truncated". A member larger than max_member is PE_ETOOBIG naming it.
 */
#include "dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "pe.h"

#define TAR_BLOCK 512
#define TAR_DEFAULT_MAX_MEMBER ((size_t)256 << 20)
/* Longest GNU long name or pax header read; GNU tar's own names stay far
 * below (PATH_MAX), so a bigger one is hostile. */
#define TAR_META_MAX ((size_t)1 << 20)
#define TAR_CHUNK ((size_t)64 << 10)

enum { SRC_MEM, SRC_FILE, SRC_GZ };

/* Where archive bytes come from. */
typedef struct tar_src {
    int kind;
    uint64_t offset; /* archive bytes consumed, for messages */
    /* SRC_MEM */
    const uint8_t *mem;
    size_t mem_len, mem_pos;
    /* SRC_FILE, SRC_GZ */
    FILE *fp;
    uint8_t pre[2]; /* bytes sniffed from an unseekable input */
    size_t pre_len, pre_pos;
    int seekable;       /* regular file: skips seek */
    uint64_t file_left; /* seekable: bytes of the file not yet consumed */
    uint8_t *scratch;   /* TAR_CHUNK bytes for skips by reading */
    /* SRC_GZ */
    z_stream zs;
    int zinit;
    uint8_t *zin; /* TAR_CHUNK bytes of compressed input */
    int in_member, padding, eof;
} tar_src;

/* Bytes straight from the file (after any sniffed ones). */
static int raw_read(tar_src *s, uint8_t *dst, size_t n, size_t *got) {
    size_t done = 0;
    while (done < n && s->pre_pos < s->pre_len) dst[done++] = s->pre[s->pre_pos++];
    if (done < n) {
        size_t want = n - done, r = fread(dst + done, 1, want, s->fp);
        done += r;
        if (r < want && ferror(s->fp)) {
            *got = done;
            return errno ? errno : EIO;
        }
    }
    if (s->seekable) s->file_left -= done < s->file_left ? done : s->file_left;
    *got = done;
    return 0;
}

/* Inflated bytes; joins concatenated gzip members like gz.c does. */
static int gz_read(tar_src *s, uint8_t *dst, size_t n, size_t *got) {
    size_t done = 0;
    int rc = 0;

    while (done < n) {
        if (s->zs.avail_in == 0 && !s->eof) {
            size_t g;
            rc = raw_read(s, s->zin, TAR_CHUNK, &g);
            if (rc) {
                rc = pe_fail(rc, "read: %s", strerror(rc));
                break;
            }
            if (g == 0) s->eof = 1;
            s->zs.next_in = s->zin;
            s->zs.avail_in = (uInt)g;
        }
        if (!s->in_member) {
            if (s->zs.avail_in == 0) {
                if (s->eof) break;
                continue;
            }
            if (s->zs.next_in[0] == 0) {
                while (s->zs.avail_in > 0 && s->zs.next_in[0] == 0) {
                    s->zs.next_in++;
                    s->zs.avail_in--;
                }
                s->padding = 1;
                continue;
            }
            if (s->padding) {
                rc = pe_fail(PE_EFORMAT, "garbage after the gzip data");
                break;
            }
            if (inflateReset(&s->zs) != Z_OK) {
                rc = pe_fail(PE_EFORMAT, "zlib refused to reset");
                break;
            }
            s->in_member = 1;
        }
        size_t want = n - done;
        uInt in_before = s->zs.avail_in;
        s->zs.next_out = dst + done;
        s->zs.avail_out = want > UINT_MAX ? UINT_MAX : (uInt)want;
        uInt out_before = s->zs.avail_out;
        int zrc = inflate(&s->zs, Z_NO_FLUSH);
        size_t produced = out_before - s->zs.avail_out;
        done += produced;
        if (zrc == Z_STREAM_END) {
            s->in_member = 0;
            s->padding = 0;
        } else if (zrc == Z_OK || zrc == Z_BUF_ERROR) {
            if (s->eof && s->zs.avail_in == 0 && in_before == 0 && produced == 0) {
                rc = pe_fail(PE_EFORMAT, "truncated gzip data");
                break;
            }
        } else if (zrc == Z_MEM_ERROR) {
            rc = pe_fail(ENOMEM, "out of memory in zlib");
            break;
        } else {
            rc = pe_fail(PE_EFORMAT, "bad gzip data (%s)",
                         s->zs.msg ? s->zs.msg : "zlib error");
            break;
        }
    }
    *got = done;
    return rc;
}

/* Reads up to n bytes into dst; *got < n only at end of input. Errors
 * leave a message without the archive's name. */
static int stream_read(tar_src *s, uint8_t *dst, size_t n, size_t *got) {
    int rc;
    if (s->kind == SRC_GZ) {
        rc = gz_read(s, dst, n, got);
    } else {
        rc = raw_read(s, dst, n, got);
        if (rc) rc = pe_fail(rc, "read: %s", strerror(rc));
    }
    s->offset += *got;
    return rc;
}

/* Views the next n bytes at *p: in place for memory, else read into *buf
 * (grown to hold n, at most to `limit` beyond n). */
static int src_fetch(tar_src *s, size_t n, uint8_t **buf, size_t *cap,
                     size_t limit, const uint8_t **p, size_t *got) {
    if (s->kind == SRC_MEM) {
        size_t left = s->mem_len - s->mem_pos;
        *got = n < left ? n : left;
        *p = *got ? s->mem + s->mem_pos : NULL; /* mem is NULL when empty */
        s->mem_pos += *got;
        s->offset += *got;
        return 0;
    }
    if (*cap < n || !*buf) {
        size_t ncap = *cap > limit / 2 ? limit : *cap * 2;
        if (ncap < n) ncap = n;
        if (ncap == 0) ncap = 1;
        uint8_t *nbuf = realloc(*buf, ncap);
        if (!nbuf) return pe_fail(ENOMEM, "out of memory for %zu bytes", ncap);
        *buf = nbuf;
        *cap = ncap;
    }
    *p = *buf;
    return stream_read(s, *buf, n, got);
}

/* Discards n bytes; *got < n only at end of input. */
static int src_skip(tar_src *s, uint64_t n, uint64_t *got) {
    if (s->kind == SRC_MEM) {
        size_t left = s->mem_len - s->mem_pos;
        size_t step = n < left ? (size_t)n : left;
        s->mem_pos += step;
        s->offset += step;
        *got = step;
        return 0;
    }
    if (s->kind == SRC_FILE && s->seekable) {
        uint64_t step = n < s->file_left ? n : s->file_left;
        if (step > 0 && fseeko(s->fp, (off_t)step, SEEK_CUR) != 0) {
            int e = errno;
            *got = 0;
            return pe_fail(e, "seek: %s", strerror(e));
        }
        s->file_left -= step;
        s->offset += step;
        *got = step;
        return 0;
    }
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < TAR_CHUNK ? (size_t)(n - *got) : TAR_CHUNK, g;
        int rc = stream_read(s, s->scratch, want, &g);
        *got += g;
        if (rc) return rc;
        if (g < want) break;
    }
    return 0;
}

static int parse_octal(const uint8_t *f, size_t n, uint64_t *v, int empty_ok) {
    size_t i = 0;
    uint64_t x = 0;
    int digits = 0;
    while (i < n && f[i] == ' ') i++;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (x > UINT64_MAX >> 3) return 0;
        x = x << 3 | (uint64_t)(f[i] - '0');
    }
    /* As GNU tar: the digits end at the field's end, a NUL or a space. */
    if (i < n && f[i] != 0 && f[i] != ' ') return 0;
    if (!digits) {
        /* Nothing but spaces and NULs. */
        for (; i < n; i++)
            if (f[i] != 0 && f[i] != ' ') return 0;
        if (!empty_ok) return 0;
    }
    *v = x;
    return 1;
}

/* The 12-byte size field: octal, or GNU base-256 (high bit set). */
static int parse_size(const uint8_t *f, uint64_t *v) {
    if (f[0] & 0x80) {
        uint64_t x;
        if (f[0] & 0x40) return 0; /* negative */
        x = f[0] & 0x3f;
        for (int i = 1; i < 12; i++) {
            if (x >> 56) return 0;
            x = x << 8 | f[i];
        }
        *v = x;
        return 1;
    }
    return parse_octal(f, 12, v, 1);
}

static int tar_checksum_ok(const uint8_t *h) {
    uint64_t want, usum = 0;
    int64_t ssum = 0;
    if (!parse_octal(h + 148, 8, &want, 0)) return 0;
    for (int i = 0; i < TAR_BLOCK; i++) {
        unsigned b = i >= 148 && i < 156 ? ' ' : h[i];
        usum += b;
        ssum += b < 128 ? (int64_t)b : (int64_t)b - 256;
    }
    return want == usum || (ssum >= 0 && want == (uint64_t)ssum);
}

static int all_zero(const uint8_t *h) {
    for (int i = 0; i < TAR_BLOCK; i++)
        if (h[i]) return 0;
    return 1;
}

int pe_is_tar(const uint8_t *head, size_t len) {
    if (!head) return 0;
    if (len >= 262 && memcmp(head + 257, "ustar", 5) == 0) return 1;
    return len >= TAR_BLOCK && !all_zero(head) && tar_checksum_ok(head);
}

/* name, or prefix "/" name for POSIX ustar; out holds 155 + 1 + 100 + 1. */
static void header_name(const uint8_t *h, char *out) {
    size_t nl = strnlen((const char *)h, 100), pl = 0;
    if (memcmp(h + 257, "ustar\0", 6) == 0) /* not GNU's "ustar  " */
        pl = strnlen((const char *)h + 345, 155);
    if (pl) {
        memcpy(out, h + 345, pl);
        out[pl++] = '/';
    }
    memcpy(out + pl, h, nl);
    out[pl + nl] = 0;
}

static int kw_is(const uint8_t *kw, size_t len, const char *want) {
    return len == strlen(want) && memcmp(kw, want, len) == 0;
}

/* Applies the records ("<len> <keyword>=<value>\n") of a pax extended
 * header: "path" and "size"; other keywords are ignored, an empty value
 * cancels an earlier one. Returns 0, -1 for a malformed header, or ENOMEM. */
static int pax_parse(const uint8_t *p, size_t len, char **path,
                     int *have_size, uint64_t *size) {
    size_t pos = 0;
    while (pos < len) {
        size_t rl = 0, i = pos;
        while (i < len && p[i] >= '0' && p[i] <= '9') {
            if (rl > (SIZE_MAX - 9) / 10) return -1;
            rl = rl * 10 + (size_t)(p[i] - '0');
            i++;
        }
        if (i == pos || i >= len || p[i] != ' ') return -1;
        if (rl > len - pos || rl < i - pos + 2) return -1;
        const uint8_t *end = p + pos + rl - 1; /* the '\n' */
        const uint8_t *kw = p + i + 1;
        if (*end != '\n') return -1;
        const uint8_t *eq = memchr(kw, '=', (size_t)(end - kw));
        if (!eq || eq == kw) return -1;
        const uint8_t *val = eq + 1;
        size_t kl = (size_t)(eq - kw), vl = (size_t)(end - val);
        if (kw_is(kw, kl, "path")) {
            free(*path);
            *path = NULL;
            if (vl) {
                /* A NUL inside ends the name, as in a header field. */
                *path = strndup((const char *)val, vl);
                if (!*path) return ENOMEM;
            }
        } else if (kw_is(kw, kl, "size")) {
            uint64_t x = 0;
            if (vl == 0) {
                *have_size = 0;
            } else {
                for (size_t k = 0; k < vl; k++) {
                    if (val[k] < '0' || val[k] > '9') return -1;
                    if (x > (UINT64_MAX - 9) / 10) return -1;
                    x = x * 10 + (uint64_t)(val[k] - '0');
                }
                *have_size = 1;
                *size = x;
            }
        }
        pos += rl;
    }
    return 0;
}

static uint64_t pad_of(uint64_t size) {
    return (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK;
}

/* The walk behind both entry points; what is what messages call the
 * archive. A nonzero callback return is passed back untouched. */
static int tar_parse(tar_src *s, const char *what, size_t max_member,
                     pe_entry_fn fn, void *ctx) {
    static const uint8_t empty[1];
    uint8_t hbuf[TAR_BLOCK];
    char hname[257];
    char *long_name = NULL, *pax_path = NULL;
    uint8_t *buf = NULL; /* member and meta data of streamed archives */
    size_t buf_cap = 0;
    int have_pax_size = 0, rc = 0;
    uint64_t pax_size = 0;

    if (max_member == 0) max_member = TAR_DEFAULT_MAX_MEMBER;
    size_t buf_limit = max_member > TAR_META_MAX ? max_member : TAR_META_MAX;

    for (;;) {
        const uint8_t *h, *d;
        size_t got;
        uint64_t skipped, size, hoff = s->offset;

        if (s->kind == SRC_MEM) {
            rc = src_fetch(s, TAR_BLOCK, NULL, NULL, 0, &h, &got);
        } else {
            h = hbuf;
            rc = stream_read(s, hbuf, TAR_BLOCK, &got);
        }
        if (rc) goto fail_io;
        if (got == 0) break;
        if (got < TAR_BLOCK) {
            rc = pe_fail(PE_EFORMAT,
                         "%s: truncated archive: a header at byte %llu has "
                         "%zu of its 512 bytes",
                         what, (unsigned long long)hoff, got);
            goto cleanup;
        }
        if (all_zero(h)) break;
        if (!tar_checksum_ok(h)) {
            rc = pe_fail(PE_EFORMAT, "%s: bad header checksum at byte %llu",
                         what, (unsigned long long)hoff);
            goto cleanup;
        }
        if (!parse_size(h + 124, &size)) {
            rc = pe_fail(PE_EFORMAT, "%s: bad size field in the header at byte %llu",
                         what, (unsigned long long)hoff);
            goto cleanup;
        }
        uint8_t type = h[156];
        header_name(h, hname);

        if (type == 'L' || type == 'x') {
            if (size > TAR_META_MAX) {
                rc = pe_fail(PE_ETOOBIG,
                             "%s: %s header of %llu bytes at byte %llu (limit %zu)",
                             what, type == 'L' ? "long-name" : "pax",
                             (unsigned long long)size, (unsigned long long)hoff,
                             TAR_META_MAX);
                goto cleanup;
            }
            rc = src_fetch(s, (size_t)size, &buf, &buf_cap, buf_limit, &d, &got);
            if (rc) goto fail_io;
            skipped = 0;
            if (got == size) rc = src_skip(s, pad_of(size), &skipped);
            if (rc) goto fail_io;
            if (size == 0) d = empty; /* a memory view of nothing is NULL */
            if (got < size || skipped < pad_of(size)) {
                rc = pe_fail(PE_EFORMAT,
                             "%s: truncated archive in the header at byte %llu",
                             what, (unsigned long long)hoff);
                goto cleanup;
            }
            if (type == 'L') {
                free(long_name);
                long_name = strndup((const char *)d, (size_t)size);
                if (!long_name) {
                    rc = pe_fail(ENOMEM, "%s: out of memory", what);
                    goto cleanup;
                }
            } else {
                int prc = pax_parse(d, (size_t)size, &pax_path, &have_pax_size,
                                    &pax_size);
                if (prc) {
                    rc = prc < 0 ? pe_fail(PE_EFORMAT,
                                           "%s: malformed pax header at byte %llu",
                                           what, (unsigned long long)hoff)
                                 : pe_fail(prc, "%s: out of memory", what);
                    goto cleanup;
                }
            }
            continue;
        }

        const char *name = pax_path ? pax_path : long_name ? long_name : hname;
        int meta = type == 'K' || type == 'g';
        int regular = type == '0' || type == '\0' || type == '7';
        int dataless = type >= '1' && type <= '6';
        if (type == '\0' && name[0] && name[strlen(name) - 1] == '/') {
            regular = 0;
            dataless = 1;
        }
        if (!meta && have_pax_size) size = pax_size;

        if (regular) {
            if (size > max_member) {
                rc = pe_fail(PE_ETOOBIG,
                             "%s: member '%s' is %llu bytes, above the %zu-byte "
                             "limit",
                             what, name, (unsigned long long)size, max_member);
                goto cleanup;
            }
            rc = src_fetch(s, (size_t)size, &buf, &buf_cap, buf_limit, &d, &got);
            if (rc) goto fail_io;
            skipped = 0;
            if (got == size) rc = src_skip(s, pad_of(size), &skipped);
            if (rc) goto fail_io;
            if (got < size || skipped < pad_of(size)) {
                rc = pe_fail(PE_EFORMAT,
                             "%s: truncated archive in member '%s' (header at "
                             "byte %llu)",
                             what, name, (unsigned long long)hoff);
                goto cleanup;
            }
            rc = fn(ctx, name, size ? d : empty, (size_t)size);
            if (rc) goto cleanup;
        } else if (!dataless) {
            uint64_t total = size + pad_of(size);
            if (total < size) {
                rc = pe_fail(PE_EFORMAT,
                             "%s: bad size field in the header at byte %llu",
                             what, (unsigned long long)hoff);
                goto cleanup;
            }
            rc = src_skip(s, total, &skipped);
            if (rc) goto fail_io;
            if (skipped < total) {
                rc = pe_fail(PE_EFORMAT,
                             "%s: truncated archive in the entry at byte %llu",
                             what, (unsigned long long)hoff);
                goto cleanup;
            }
        }
        if (!meta) {
            /* Long names and pax records describe the next entry only. */
            free(long_name);
            free(pax_path);
            long_name = pax_path = NULL;
            have_pax_size = 0;
        }
    }
    rc = 0;
    goto cleanup;

fail_io:
    pe_fail_prefix(rc, "%s", what);
cleanup:
    free(buf);
    free(pax_path);
    free(long_name);
    return rc;
}

int pe_tar_read_mem(const uint8_t *buf, size_t len, size_t max_member,
                    pe_entry_fn fn, void *ctx) {
    tar_src s;
    PE_ASSERT(fn && (buf || len == 0));
    memset(&s, 0, sizeof s);
    s.kind = SRC_MEM;
    s.mem = buf;
    s.mem_len = len;
    return tar_parse(&s, "tar", max_member, fn, ctx);
}

int pe_tar_read(const char *path, size_t max_member, pe_entry_fn fn,
                void *ctx) {
    tar_src s;
    struct stat st;
    uint8_t magic[2];
    size_t m;
    int rc = 0;

    PE_ASSERT(path && fn);
    memset(&s, 0, sizeof s);
    s.kind = SRC_FILE;
    s.fp = fopen(path, "rb");
    if (!s.fp) {
        rc = errno;
        return pe_fail(rc, "%s: %s", path, strerror(rc));
    }
    if (fstat(fileno(s.fp), &st) != 0) {
        rc = errno;
        rc = pe_fail(rc, "%s: %s", path, strerror(rc));
        goto cleanup;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = pe_fail(EISDIR, "%s: %s", path, strerror(EISDIR));
        goto cleanup;
    }
    m = fread(magic, 1, sizeof magic, s.fp);
    if (m < sizeof magic && ferror(s.fp)) {
        rc = errno ? errno : EIO;
        rc = pe_fail(rc, "%s: read: %s", path, strerror(rc));
        goto cleanup;
    }
    if (S_ISREG(st.st_mode) && fseeko(s.fp, 0, SEEK_SET) == 0) {
        s.seekable = 1;
        s.file_left = (uint64_t)st.st_size;
    } else {
        memcpy(s.pre, magic, m);
        s.pre_len = m;
    }
    s.scratch = malloc(TAR_CHUNK);
    if (!s.scratch) {
        rc = pe_fail(ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    if (m == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        s.kind = SRC_GZ;
        s.in_member = 1;
        s.zin = malloc(TAR_CHUNK);
        if (!s.zin || inflateInit2(&s.zs, 16 + MAX_WBITS) != Z_OK) {
            rc = pe_fail(ENOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        s.zinit = 1;
    }
    rc = tar_parse(&s, path, max_member, fn, ctx);

cleanup:
    if (s.zinit) inflateEnd(&s.zs);
    free(s.zin);
    free(s.scratch);
    fclose(s.fp);
    return rc;
}
