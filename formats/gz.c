/*
 * gz.c - the bounded whole-file reader the dataset formats share: reads a
 * file (or takes bytes in memory) and gunzips it when it starts with the
 * gzip magic, never holding more than max_bytes of output.
 *
 * Not for: streaming archives too big to hold (tar.c inflates .tar.gz on
 * the fly, stl10.c freads records), raw deflate or zlib-wrapped streams, or
 * writing gzip.
 *
 * Untrusted input: a gzip bomb stops with PE_ETOOBIG as soon as its output
 * would pass max_bytes, and the output buffer never grows beyond max_bytes.
 * Concatenated gzip members are joined (as gzip -d does); zero bytes after
 * the last member (tape padding) are ignored, anything else after it is
 * PE_EFORMAT. Each member's CRC and length are checked by zlib.
 *
 * Two paths. The common case, one member held whole in memory, inflates in
 * one call to libdeflate (about twice zlib's speed) into a buffer sized from
 * the trailer's ISIZE, and only when ISIZE <= max_bytes. Anything else, and
 * any libdeflate failure, goes through the zlib streaming path over the
 * same bytes, so results and messages are zlib's: several members, a lying
 * ISIZE, sizes over the bound, a header CRC (libdeflate skips it), corrupt
 * or truncated data. libdeflate succeeds only when the member's CRC-32 and
 * ISIZE match its output. It is laxer than zlib about a few malformed
 * Huffman headers that no encoder writes (e.g. a code-length repeat running
 * past the table); such a member now inflates where zlib refused it, to the
 * output its own checksum vouches for.
 */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <libdeflate.h>
#include <unistd.h>
#include <zlib.h>

#include "pe.h"

#define GZ_DEFAULT_MAX ((size_t)1 << 30)
#define GZ_CHUNK ((size_t)256 << 10)          /* compressed bytes per read */
#define GZ_MIN_START ((size_t)64 << 10)       /* first output allocation */
#define GZ_MAX_START ((size_t)64 << 20)       /* ... at most; then doubling */
/* Compressed files up to this size are read whole for the libdeflate path;
 * larger ones stream through zlib in GZ_CHUNK reads. */
#define GZ_WHOLE_MAX ((size_t)256 << 20)
#define GZ_HEADER_LEN 10  /* ID1 ID2 CM FLG MTIME(4) XFL OS */
#define GZ_TRAILER_LEN 8  /* CRC32, ISIZE, little-endian */
#define GZ_FHCRC 0x02     /* FLG bit: a CRC-16 of the header follows it */

/* Where compressed bytes come from after the first chunk: sets *p, *n to
 * the next chunk (*n == 0 at end of input) or returns an errno. */
typedef int (*gz_pull_fn)(void *ctx, const uint8_t **p, size_t *n);

static int pull_none(void *ctx, const uint8_t **p, size_t *n) {
    (void)ctx;
    *p = NULL;
    *n = 0;
    return 0;
}

/* read(2) until n bytes or end of file, retrying EINTR. */
static int read_full(int fd, uint8_t *buf, size_t n, size_t *got) {
    size_t done = 0;
    while (done < n) {
        size_t want = n - done;
        if (want > ((size_t)1 << 30)) want = (size_t)1 << 30;
        ssize_t r = read(fd, buf + done, want);
        if (r < 0) {
            if (errno == EINTR) continue;
            *got = done;
            return errno;
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

typedef struct fd_src {
    int fd;
    uint8_t *chunk; /* GZ_CHUNK bytes */
} fd_src;

static int pull_fd(void *ctx, const uint8_t **p, size_t *n) {
    fd_src *s = ctx;
    int rc = read_full(s->fd, s->chunk, GZ_CHUNK, n);
    if (rc) return pe_fail(rc, "read: %s", strerror(rc));
    *p = s->chunk;
    return 0;
}

/* First output allocation: a guess from the compressed size, so that a
 * typical file needs few reallocations and a small one wastes little. */
static size_t start_cap(size_t size_hint, size_t max) {
    size_t cap = size_hint > GZ_MAX_START / 4 ? GZ_MAX_START : size_hint * 4;
    if (cap < GZ_MIN_START) cap = GZ_MIN_START;
    if (cap > max) cap = max;
    return cap;
}

/* Inflates gzip members from (in, in_len) and then from pull until the
 * input ends. max >= 1. Messages name no file: callers prefix them. */
static int gunzip_core(const uint8_t *in, size_t in_len, gz_pull_fn pull,
                       void *pctx, size_t size_hint, size_t max,
                       uint8_t **out, size_t *out_len) {
    z_stream zs;
    uint8_t *buf = NULL;
    size_t cap = start_cap(size_hint, max), used = 0;
    int rc = 0, zinit = 0;
    int in_member = 1; /* the caller saw the gzip magic */
    int padding = 0;   /* zero bytes seen after a member */
    int eof = 0;       /* pull has no more input */

    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        rc = pe_fail(ENOMEM, "cannot set up zlib");
        goto cleanup;
    }
    zinit = 1;
    buf = malloc(cap);
    if (!buf) {
        rc = pe_fail(ENOMEM, "out of memory for %zu bytes", cap);
        goto cleanup;
    }

    for (;;) {
        if (in_len == 0 && !eof) {
            rc = pull(pctx, &in, &in_len);
            if (rc) goto cleanup;
            if (in_len == 0) eof = 1;
        }
        if (!in_member) {
            if (in_len == 0) {
                if (eof) break;
                continue;
            }
            if (in[0] == 0) {
                while (in_len > 0 && in[0] == 0) {
                    in++;
                    in_len--;
                }
                padding = 1;
                continue;
            }
            if (padding) {
                rc = pe_fail(PE_EFORMAT, "garbage after the gzip data");
                goto cleanup;
            }
            /* Another member: zlib checks its header. */
            if (inflateReset(&zs) != Z_OK) {
                rc = pe_fail(PE_EFORMAT, "zlib refused to reset");
                goto cleanup;
            }
            in_member = 1;
        }

        uint8_t probe;
        int probing = 0;
        if (used == cap) {
            if (cap == max) {
                /* Full at the limit: one more byte of output means the
                 * data is bigger than allowed; header, trailer and empty
                 * blocks may still be consumed without output. */
                probing = 1;
            } else {
                size_t ncap = cap > max / 2 ? max : cap * 2;
                uint8_t *nbuf = realloc(buf, ncap);
                if (!nbuf) {
                    rc = pe_fail(ENOMEM, "out of memory for %zu bytes", ncap);
                    goto cleanup;
                }
                buf = nbuf;
                cap = ncap;
            }
        }
        zs.next_in = (Bytef *)in;
        zs.avail_in = in_len > UINT_MAX ? UINT_MAX : (uInt)in_len;
        if (probing) {
            zs.next_out = &probe;
            zs.avail_out = 1;
        } else {
            zs.next_out = buf + used;
            zs.avail_out = cap - used > UINT_MAX ? UINT_MAX : (uInt)(cap - used);
        }
        uInt in_before = zs.avail_in, out_before = zs.avail_out;
        int zrc = inflate(&zs, Z_NO_FLUSH);
        size_t consumed = in_before - zs.avail_in;
        size_t produced = out_before - zs.avail_out;
        if (consumed) { /* in may be NULL once the input is spent */
            in += consumed;
            in_len -= consumed;
        }
        if (probing && produced) {
            rc = pe_fail(PE_ETOOBIG, "gzip data inflates beyond the %zu-byte limit",
                         max);
            goto cleanup;
        }
        if (!probing) used += produced;

        switch (zrc) {
        case Z_STREAM_END:
            in_member = 0;
            padding = 0;
            continue;
        case Z_OK:
        case Z_BUF_ERROR:
            /* Output still pending inside zlib drains on the next call; no
             * progress with the input exhausted means it was cut short. */
            if (eof && in_len == 0 && consumed == 0 && produced == 0) {
                rc = pe_fail(PE_EFORMAT, "truncated gzip data");
                goto cleanup;
            }
            continue;
        case Z_MEM_ERROR:
            rc = pe_fail(ENOMEM, "out of memory in zlib");
            goto cleanup;
        default:
            rc = pe_fail(PE_EFORMAT, "bad gzip data (%s)",
                         zs.msg ? zs.msg : "zlib error");
            goto cleanup;
        }
    }

    if (used < cap) {
        /* Give back the slack of the last doubling; keep the buffer if the
         * allocator cannot shrink it. */
        uint8_t *nbuf = realloc(buf, used ? used : 1);
        if (nbuf) buf = nbuf;
    }
    *out = buf;
    *out_len = used;
    buf = NULL;

cleanup:
    free(buf);
    if (zinit) inflateEnd(&zs);
    return rc;
}

static int is_gzip(const uint8_t *p, size_t n) {
    return n >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

/* The libdeflate path: in (in_len bytes, starting with the gzip magic) is
 * taken to be one whole member, perhaps followed by zero padding, whose
 * trailer ends the input. Returns 1 with *out (malloc'd, *out_len bytes) on
 * success; 0 to decline, having allocated nothing that survives, when the
 * input is anything else or fails to inflate: the zlib path then gives the
 * answer. Never allocates more than max bytes of output. */
static int gunzip_whole(const uint8_t *in, size_t in_len, size_t max,
                        uint8_t **out, size_t *out_len) {
    if (in_len < GZ_HEADER_LEN + GZ_TRAILER_LEN || (in[3] & GZ_FHCRC))
        return 0;
    const uint8_t *t = in + in_len - 4;
    const size_t isize = (size_t)t[0] | (size_t)t[1] << 8 |
                         (size_t)t[2] << 16 | (size_t)t[3] << 24;
    if (isize > max) return 0;

    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    uint8_t *buf = malloc(isize ? isize : 1);
    size_t used_in = 0, used_out = 0;
    int ok = d && buf &&
             libdeflate_gzip_decompress_ex(d, in, in_len, buf, isize, &used_in,
                                           &used_out) == LIBDEFLATE_SUCCESS &&
             used_out == isize;
    /* Stopping early means another member or garbage follows, unless the
     * rest is zero padding (whose zero "ISIZE" was then right). */
    for (size_t i = used_in; ok && i < in_len; i++)
        if (in[i] != 0) ok = 0;
    libdeflate_free_decompressor(d);
    if (!ok) {
        free(buf);
        return 0;
    }
    *out = buf;
    *out_len = isize;
    return 1;
}

int pe_gunzip_mem(const uint8_t *buf, size_t len, size_t max_bytes,
                  uint8_t **out, size_t *out_len) {
    PE_ASSERT(out && out_len);
    PE_ASSERT(buf || len == 0);
    if (max_bytes == 0) max_bytes = GZ_DEFAULT_MAX;
    if (is_gzip(buf, len)) {
        if (gunzip_whole(buf, len, max_bytes, out, out_len)) return 0;
        return gunzip_core(buf, len, pull_none, NULL, len, max_bytes, out,
                           out_len);
    }
    if (len > max_bytes)
        return pe_fail(PE_ETOOBIG, "%zu bytes, above the %zu-byte limit", len,
                       max_bytes);
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return pe_fail(ENOMEM, "out of memory for %zu bytes", len);
    if (len) memcpy(copy, buf, len);
    *out = copy;
    *out_len = len;
    return 0;
}

/* Reads the rest of a plain file after its first head_len bytes, growing
 * geometrically, never beyond max. */
static int read_plain(int fd, const uint8_t *head, size_t head_len,
                      size_t size_hint, size_t max, uint8_t **out,
                      size_t *out_len) {
    size_t cap = size_hint > head_len ? size_hint : head_len;
    size_t used = head_len;
    int rc = 0;
    uint8_t *buf;

    if (cap < GZ_MIN_START) cap = GZ_MIN_START;
    if (cap > max) cap = max;
    if (cap < head_len) cap = head_len; /* head_len <= max: checked */
    buf = malloc(cap ? cap : 1);
    if (!buf) return pe_fail(ENOMEM, "out of memory for %zu bytes", cap);
    if (head_len) memcpy(buf, head, head_len);

    for (;;) {
        size_t got;
        if (used == cap) {
            if (cap == max) {
                uint8_t probe;
                rc = read_full(fd, &probe, 1, &got);
                if (rc) {
                    rc = pe_fail(rc, "read: %s", strerror(rc));
                    goto cleanup;
                }
                if (got) {
                    rc = pe_fail(PE_ETOOBIG, "longer than the %zu-byte limit",
                                 max);
                    goto cleanup;
                }
                break;
            }
            size_t ncap = cap > max / 2 ? max : cap * 2;
            uint8_t *nbuf = realloc(buf, ncap);
            if (!nbuf) {
                rc = pe_fail(ENOMEM, "out of memory for %zu bytes", ncap);
                goto cleanup;
            }
            buf = nbuf;
            cap = ncap;
        }
        rc = read_full(fd, buf + used, cap - used, &got);
        if (rc) {
            rc = pe_fail(rc, "read: %s", strerror(rc));
            goto cleanup;
        }
        used += got;
        if (used < cap) break; /* end of file */
    }
    *out = buf;
    *out_len = used;
    buf = NULL;

cleanup:
    free(buf);
    return rc;
}

/* Gunzips the rest of fd after its first head_len bytes (in chunk, which
 * is GZ_CHUNK bytes). A file that fits in the chunk, or a regular file of at
 * most GZ_WHOLE_MAX bytes and not much bigger than max (deflate expands
 * nothing by more than 5 bytes in 64 KiB; the slack covers header fields),
 * is read whole and offered to gunzip_whole; the zlib path then takes over
 * from wherever reading stopped. */
static int gunzip_fd(int fd, uint8_t *chunk, size_t head_len, size_t size_hint,
                     size_t max, uint8_t **out, size_t *out_len) {
    fd_src src = {fd, chunk};
    uint8_t *whole = NULL;
    const uint8_t *in = chunk;
    size_t in_len = head_len;
    int at_eof = head_len < GZ_CHUNK, rc;

    const size_t in_max = max > GZ_WHOLE_MAX ? GZ_WHOLE_MAX
                                             : max + (max >> 10) + (1 << 20);
    if (!at_eof && size_hint > head_len && size_hint <= in_max) {
        /* One byte more than the size, so a file that grew is noticed. */
        whole = malloc(size_hint + 1);
        if (whole) {
            size_t got;
            memcpy(whole, chunk, head_len);
            rc = read_full(fd, whole + head_len, size_hint + 1 - head_len,
                           &got);
            if (rc) {
                rc = pe_fail(rc, "read: %s", strerror(rc));
                goto cleanup;
            }
            in = whole;
            in_len = head_len + got;
            at_eof = in_len <= size_hint;
        }
    }
    if (at_eof && gunzip_whole(in, in_len, max, out, out_len)) {
        rc = 0;
        goto cleanup;
    }
    rc = gunzip_core(in, in_len, pull_fd, &src, size_hint, max, out, out_len);

cleanup:
    free(whole);
    return rc;
}

int pe_read_file_maybe_gz(const char *path, size_t max_bytes, uint8_t **out,
                          size_t *out_len) {
    struct stat st;
    uint8_t *chunk = NULL;
    size_t head_len = 0, size_hint = 0;
    int fd, rc = 0;

    PE_ASSERT(path && out && out_len);
    if (max_bytes == 0) max_bytes = GZ_DEFAULT_MAX;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno;
        return pe_fail(rc, "%s: %s", path, strerror(rc));
    }
    if (fstat(fd, &st) != 0) {
        rc = errno;
        rc = pe_fail(rc, "%s: %s", path, strerror(rc));
        goto cleanup;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = pe_fail(EISDIR, "%s: %s", path, strerror(EISDIR));
        goto cleanup;
    }
    if (S_ISREG(st.st_mode) && st.st_size > 0)
        size_hint = (uint64_t)st.st_size > SIZE_MAX ? SIZE_MAX : (size_t)st.st_size;

    chunk = malloc(GZ_CHUNK);
    if (!chunk) {
        rc = pe_fail(ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    rc = read_full(fd, chunk, GZ_CHUNK, &head_len);
    if (rc) {
        rc = pe_fail(rc, "%s: read: %s", path, strerror(rc));
        goto cleanup;
    }

    if (is_gzip(chunk, head_len)) {
        rc = gunzip_fd(fd, chunk, head_len, size_hint, max_bytes, out,
                       out_len);
    } else if (size_hint > max_bytes || head_len > max_bytes) {
        rc = pe_fail(PE_ETOOBIG, "%zu bytes, above the %zu-byte limit",
                     size_hint > head_len ? size_hint : head_len, max_bytes);
    } else {
        rc = read_plain(fd, chunk, head_len, size_hint, max_bytes, out,
                        out_len);
    }
    if (rc) pe_fail_prefix(rc, "%s", path);

cleanup:
    free(chunk);
    close(fd);
    return rc;
}
