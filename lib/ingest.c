/*
 * ingest.c - the pipeline of pe-ingest (see ingest.h).
 *
 * Three roles over one ring of slots, indexed by input sequence number:
 *  - the producer (calling thread) walks sources in order and fills slots
 *    with jobs: a file to read, archive bytes, or already-decoded pixels;
 *  - workers decode, canonicalise and key the jobs in any order;
 *  - the writer thread takes results strictly in sequence, stores them in a
 *    write transaction, commits every batch, and only then prints the
 *    batch's lines, so nothing downstream sees a key the store lacks.
 * A map that fills mid-batch is grown and the batch replayed (the writer
 * still holds its images). Not for: codecs (formats/) or option parsing.
 */
#include "ingest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "codec.h"
#include "dataset.h"
#include "escape.h"
#include "pe.h"

#define RING 65536
#define INFLIGHT_BYTES (512u << 20) /* decoded pixels held ahead of the writer */

enum { R_FORMAT, R_CORRUPT, R_TOOBIG, R_TIMEOUT, R_UNSUPPORTED, R_NOTFILE,
       R_IO, R_COLLISION, R_LABEL };
static const char *const reason_names[PE_INGEST_NREASONS] = {
    "not an image", "corrupt or truncated", "over a limit", "decode deadline",
    "unsupported", "not a regular file", "read error", "key collision",
    "label conflict"};

const char *pe_ingest_reason_name(int i) {
    return i >= 0 && i < PE_INGEST_NREASONS ? reason_names[i] : "?";
}

/* PE_EFORMAT means "not an image" when nothing recognised the bytes and
 * "corrupt or truncated" when a decoder did (process() marks the latter). */
#define PE_ECORRUPT_IMAGE (-2001)

static int reason_of(int rc) {
    switch (rc) {
    case PE_ECORRUPT_IMAGE: return R_CORRUPT;
    case PE_EEXIST: return R_LABEL;
    case PE_EFORMAT: return R_FORMAT;
    case PE_ECORRUPT: return R_CORRUPT;
    case PE_ETOOBIG: return R_TOOBIG;
    case PE_ETIMEOUT: return R_TIMEOUT;
    case PE_EUNSUPPORTED: return R_UNSUPPORTED;
    case PE_ECOLLISION: return R_COLLISION;
    default: return R_IO;
    }
}

typedef enum { J_FILE, J_BYTES, J_PIXELS, J_REJECT } job_type;
typedef enum { S_FREE, S_READY, S_BUSY, S_DONE } slot_state;

typedef struct slot {
    slot_state state;
    job_type type;
    char *src;       /* source string (owned) */
    uint8_t *bytes;  /* J_BYTES (owned) */
    size_t len;
    int32_t label;
    uint8_t src_format; /* for J_PIXELS */
    pe_image img;    /* J_PIXELS in; result out */
    /* result */
    int rc;
    char *msg;       /* rejection message (owned) */
    char ops[160];
    pe_decode_info info;
    pe_key key;
    int existed;
} slot;

typedef struct ingest {
    const pe_ingest_opts *o;
    pe_store *st;
    FILE *out, *err;
    pe_ingest_stats *stats;
    slot *ring;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done, cv_free;
    uint64_t next_seq;   /* producer: next sequence to fill */
    uint64_t next_work;  /* lowest sequence maybe still S_READY */
    uint64_t next_write; /* writer: next sequence to store */
    uint64_t released;   /* slots below this are free */
    uint64_t inflight;   /* decoded bytes held */
    int stop_producer, finished, fatal;
    int fatal_rc;
    char fatal_msg[1024];
    /* labels */
    char **classes;
    uint32_t nclasses;
    int classes_changed;
    const char *target_set; /* staging name or set */
    char staging[PE_SET_NAME_MAX + 64];
    int out_closed;
    int out_errno; /* why writing stdout failed (EPIPE: reader went away) */
    double t0, last_progress;
} ingest;

/* ---------------- class names ---------------- */
static int class_find_or_add(ingest *g, const char *name, int32_t *id) {
    for (uint32_t i = 0; i < g->nclasses; i++)
        if (!strcmp(g->classes[i], name)) {
            *id = (int32_t)i;
            return 0;
        }
    char **c = realloc(g->classes, (g->nclasses + 1) * sizeof *c);
    if (!c) return ENOMEM;
    g->classes = c;
    if (!(c[g->nclasses] = strdup(name))) return ENOMEM;
    *id = (int32_t)g->nclasses++;
    g->classes_changed = 1;
    return 0;
}

static int load_classes_file(ingest *g, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return pe_fail(errno, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    uint32_t i = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (memchr(line, 0, (size_t)n)) {
            rc = pe_fail(PE_EFORMAT, "%s: line %u has a NUL byte", path, i + 1);
            break;
        }
        if (i < g->nclasses) {
            if (strcmp(g->classes[i], line)) {
                rc = pe_fail(PE_EEXIST, "%s: class %u is '%s' in the set, "
                             "'%s' in the file", path, i, g->classes[i], line);
                break;
            }
        } else {
            int32_t id;
            if ((rc = class_find_or_add(g, line, &id))) break;
            if ((uint32_t)id != i) {
                rc = pe_fail(PE_EFORMAT, "%s: class '%s' named twice", path, line);
                break;
            }
        }
        i++;
    }
    free(line);
    fclose(f);
    return rc;
}

static const char *label_text(ingest *g, int32_t l, char *buf) {
    if (l == PE_LABEL_NONE) return "-";
    if ((uint32_t)l < g->nclasses && g->classes[l][0]) return g->classes[l];
    snprintf(buf, 16, "%d", (int)l);
    return buf;
}

/* ---------------- the ring ---------------- */
static void slot_clear(slot *s) {
    free(s->src);
    free(s->bytes);
    free(s->msg);
    pe_image_free(&s->img);
    memset(s, 0, sizeof *s);
}

/* Producer: waits for a free slot, returns it (locked region ends). NULL
 * when the run is stopping. */
static slot *slot_acquire(ingest *g) {
    pthread_mutex_lock(&g->mu);
    while (!g->fatal && g->next_seq - g->released >= RING)
        pthread_cond_wait(&g->cv_free, &g->mu);
    slot *s = g->fatal ? NULL : &g->ring[g->next_seq % RING];
    pthread_mutex_unlock(&g->mu);
    return s;
}

static void slot_publish(ingest *g, slot *s) {
    pthread_mutex_lock(&g->mu);
    s->state = s->type == J_REJECT ? S_DONE : S_READY;
    g->next_seq++;
    if (s->type == J_REJECT) pthread_cond_signal(&g->cv_done);
    else pthread_cond_signal(&g->cv_work);
    pthread_mutex_unlock(&g->mu);
}

/* A processed job is ready for the writer. Caller holds g->mu. */
static void slot_done_locked(ingest *g, slot *s) {
    g->inflight += pe_image_size(&s->img);
    s->state = S_DONE;
    pthread_cond_broadcast(&g->cv_done);
}

/* Publishes a job the producer processed itself. */
static void slot_publish_done(ingest *g, slot *s) {
    pthread_mutex_lock(&g->mu);
    g->next_seq++;
    slot_done_locked(g, s);
    pthread_mutex_unlock(&g->mu);
}

static int emit_reject(ingest *g, const char *src, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int emit_reject(ingest *g, const char *src, int rc, const char *fmt, ...) {
    slot *s = slot_acquire(g);
    if (!s) return g->fatal_rc;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    s->type = J_REJECT;
    s->rc = rc;
    s->src = strdup(src);
    s->msg = strdup(buf);
    if (!s->src || !s->msg) return ENOMEM;
    slot_publish(g, s);
    return 0;
}

/* ---------------- workers ---------------- */
static int read_file(const char *path, int follow, uint64_t max, uint8_t **out,
                     size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
    if (fd < 0) {
        if (errno == ELOOP) return pe_fail(PE_EUNSUPPORTED, "a symbolic link (use --follow)");
        return pe_fail(errno, "%s", strerror(errno));
    }
    struct stat sb;
    int rc = 0;
    uint8_t *buf = NULL;
    if (fstat(fd, &sb) != 0) { rc = pe_fail(errno, "%s", strerror(errno)); goto out; }
    if (!S_ISREG(sb.st_mode)) { rc = pe_fail(PE_EUNSUPPORTED, "not a regular file"); goto out; }
    if ((uint64_t)sb.st_size > max) {
        rc = pe_fail(PE_ETOOBIG, "file of %lld bytes over the %llu-byte limit",
                     (long long)sb.st_size, (unsigned long long)max);
        goto out;
    }
    size_t n = (size_t)sb.st_size, got = 0;
    buf = malloc(n ? n : 1);
    if (!buf) { rc = ENOMEM; goto out; }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { rc = pe_fail(errno, "%s", strerror(errno)); goto out; }
        if (r == 0) break; /* file shrank: decode what is there */
        got += (size_t)r;
    }
    *out = buf;
    *len = got;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

static void target_dims(const pe_ingest_opts *o, uint32_t w, uint32_t h,
                        uint32_t *tw, uint32_t *th) {
    *tw = w;
    *th = h;
    if (o->size_w) {
        *tw = o->size_w;
        *th = o->size_h;
    } else if (o->max_side && (w > o->max_side || h > o->max_side)) {
        if (w >= h) {
            *tw = o->max_side;
            *th = (uint32_t)((double)h * o->max_side / w + 0.5);
        } else {
            *th = o->max_side;
            *tw = (uint32_t)((double)w * o->max_side / h + 0.5);
        }
        if (*tw < 1) *tw = 1;
        if (*th < 1) *th = 1;
    }
}

static void ops_add(char *ops, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ops_add(char *ops, const char *fmt, ...) {
    size_t n = strlen(ops);
    if (n && n < 159) ops[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ops + n, 160 - n, fmt, ap);
    va_end(ap);
}

static int canonicalise(const pe_ingest_opts *o, slot *s) {
    int rc;
    if (s->info.orientation > 1) ops_add(s->ops, "orient=%d", s->info.orientation);
    if (s->info.scale_den > 1 && s->info.scale_num != s->info.scale_den)
        ops_add(s->ops, "dct-scale=%d/%d", s->info.scale_num, s->info.scale_den);
    if (o->channels && s->img.c != o->channels) {
        if ((rc = pe_image_to_channels(&s->img, o->channels))) return rc;
        ops_add(s->ops, "channels=%u", o->channels);
    }
    uint32_t tw, th;
    target_dims(o, s->img.w, s->img.h, &tw, &th);
    if (tw != s->img.w || th != s->img.h) {
        pe_image r = {0};
        if ((rc = pe_image_resize_bilinear(&s->img, &r, tw, th))) return rc;
        pe_image_free(&s->img);
        s->img = r;
        ops_add(s->ops, "resize=%ux%u", tw, th);
    }
    return 0;
}

/* Whether canonicalise() would leave this image as it is. */
static int needs_no_canonical(const pe_ingest_opts *o, const pe_image *img) {
    uint32_t tw, th;
    target_dims(o, img->w, img->h, &tw, &th);
    return (!o->channels || img->c == o->channels) && tw == img->w && th == img->h;
}

static void process(ingest *g, slot *s) {
    const pe_ingest_opts *o = g->o;
    int rc = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    pe_errclear();
    if (s->type == J_FILE || s->type == J_BYTES) {
        if (s->type == J_FILE) {
            rc = read_file(s->src, o->follow, o->max_file_bytes ? o->max_file_bytes : (1ull << 30),
                           &buf, &len);
            if (rc && rc > 0) rc = pe_fail(rc, "cannot read: %s", pe_errmsg());
        } else {
            buf = s->bytes;
            len = s->len;
            s->bytes = NULL;
        }
        if (!rc) {
            pe_decode_opts d = {0};
            d.max_pixels = o->max_pixels;
            d.deadline = o->timeout > 0 ? pe_now() + o->timeout : 0;
            /* DCT scaling may decode smaller, never below the target, so
             * the resize after it still only shrinks (antialiased). For
             * --max-side the aspect is unknown here: both sides >= N is
             * conservative and still saves most of the work. */
            if (o->size_w) {
                d.min_w = o->size_w;
                d.min_h = o->size_h;
            } else if (o->max_side) {
                d.min_w = d.min_h = o->max_side;
            }
            rc = pe_decode(buf, len, &d, &s->img, &s->info);
            if (rc == PE_EFORMAT && len == 0) rc = pe_fail(PE_EFORMAT, "empty file");
            else if (rc == PE_EFORMAT && pe_sniff(buf, len) != PE_FORMAT_UNKNOWN)
                rc = PE_ECORRUPT_IMAGE; /* message kept: the decoder's reason */
            if (!rc) ops_add(s->ops, "decode=%s", pe_format_name(s->info.format));
        }
        free(buf);
    } else if (s->type == J_PIXELS) {
        s->info.format = (pe_format)s->src_format;
        s->info.orig_w = s->img.w;
        s->info.orig_h = s->img.h;
        s->info.orig_c = s->img.c;
        s->info.bits = 8;
    }
    if (!rc) rc = canonicalise(o, s);
    if (!rc) pe_key_of_image(&s->img, &s->key);
    s->rc = rc;
    if (rc) {
        pe_image_free(&s->img);
        s->msg = strdup(pe_errmsg()[0] ? pe_errmsg() : pe_strerror(rc));
    }
}

static void *worker(void *arg) {
    ingest *g = arg;
    pthread_setname_np(pthread_self(), "pe-decode");
    pthread_mutex_lock(&g->mu);
    for (;;) {
        slot *s = NULL;
        while (!g->finished && !g->fatal) {
            /* Find the lowest ready job; hold back when too many decoded
             * bytes wait for the writer, unless it is the one it needs. */
            while (g->next_work < g->next_seq &&
                   g->ring[g->next_work % RING].state != S_READY)
                g->next_work++;
            if (g->next_work < g->next_seq &&
                (g->inflight < INFLIGHT_BYTES || g->next_work == g->next_write)) {
                s = &g->ring[g->next_work % RING];
                g->next_work++;
                break;
            }
            pthread_cond_wait(&g->cv_work, &g->mu);
        }
        if (!s) break;
        s->state = S_BUSY;
        pthread_mutex_unlock(&g->mu);
        process(g, s);
        pthread_mutex_lock(&g->mu);
        slot_done_locked(g, s);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* ---------------- writer ---------------- */
static void set_fatal(ingest *g, int rc) {
    pthread_mutex_lock(&g->mu);
    if (!g->fatal) {
        g->fatal = 1;
        g->fatal_rc = rc;
        snprintf(g->fatal_msg, sizeof g->fatal_msg, "%s", pe_errmsg());
    }
    pthread_cond_broadcast(&g->cv_work);
    pthread_cond_broadcast(&g->cv_free);
    pthread_cond_broadcast(&g->cv_done);
    pthread_mutex_unlock(&g->mu);
}

static void out_failed(ingest *g) {
    g->out_closed = 1;
    g->out_errno = errno ? errno : EIO;
}

static void print_line(ingest *g, slot *s) {
    if (g->out_closed) return;
    char hx[PE_KEY_HEX + 1], lb[16];
    pe_key_to_hex(&s->key, hx);
    const char *l = label_text(g, s->label, lb);
    fputs(hx, g->out);
    fputc('\t', g->out);
    pe_escape_fput(g->out, l, strlen(l), PE_ESC_TEXT);
    fputc('\t', g->out);
    pe_escape_fput(g->out, s->src, strlen(s->src), PE_ESC_TEXT);
    if (fputc('\n', g->out) == EOF) out_failed(g);
}

static int store_one(ingest *g, pe_txn *txn, slot *s) {
    pe_prov p = {0};
    p.src = s->src;
    p.ops = s->ops;
    p.orig_w = s->info.orig_w;
    p.orig_h = s->info.orig_h;
    p.orig_c = (uint8_t)s->info.orig_c;
    p.orig_bits = (uint8_t)s->info.bits;
    p.format = (uint8_t)s->info.format;
    int rc = pe_img_put_keyed(txn, &s->img, &s->key, g->o->encoding, &p, &s->existed);
    if (rc) return rc;
    if (g->target_set) rc = pe_set_add(txn, g->target_set, &s->key, 1, s->label);
    if (rc == PE_EEXIST) { /* the same pixels under another label */
        pe_set_entry e;
        char a[16], b[16];
        if (pe_set_lookup(txn, g->target_set, &s->key, &e) == 0)
            rc = pe_fail(PE_EEXIST, "the same pixels are already in set '%s' with "
                         "label %s, not %s", g->o->set, label_text(g, e.label, a),
                         label_text(g, s->label, b));
    }
    return rc;
}

static void report_reject(ingest *g, slot *s) {
    g->stats->rejected++;
    g->stats->rejected_by[reason_of(s->rc)]++;
    if (!g->o->quiet)
        fprintf(g->err, "%s: %s: %s\n", g->o->prog, pe_esc(s->src), pe_esc(s->msg));
}

static void progress(ingest *g, int force) {
    if (!g->o->progress) return;
    double now = pe_now();
    if (!force && now - g->last_progress < 0.5) return;
    g->last_progress = now;
    double dt = now - g->t0;
    fprintf(g->err, "\r%s: %llu images, %llu new, %llu rejected, %.0f/s ",
            g->o->prog, (unsigned long long)g->stats->seen,
            (unsigned long long)g->stats->stored,
            (unsigned long long)g->stats->rejected,
            dt > 0 ? (double)g->stats->seen / dt : 0.0);
    if (force) fputc('\n', g->err);
}

/* Stores slots [first, end) in one transaction; grows the map and replays
 * on MAP_FULL. Collisions reject the image, not the batch. */
static int cmp_slot_key(const void *a, const void *b) {
    const slot *x = *(slot *const *)a, *y = *(slot *const *)b;
    int c = memcmp(x->key.b, y->key.b, PE_KEY_LEN);
    /* equal keys keep input order, so the first occurrence is "stored" */
    return c ? c : (x < y ? -1 : x > y);
}

static int commit_batch(ingest *g, uint64_t first, uint64_t end) {
    /* Keys are hashes, so input order scatters the writes over the whole
     * B-tree; putting a batch in key order touches each page once. */
    size_t n = 0;
    slot **order = malloc((size_t)(end - first) * sizeof *order);
    if (!order) return ENOMEM;
    for (uint64_t q = first; q < end; q++)
        if (!g->ring[q % RING].rc) order[n++] = &g->ring[q % RING];
    qsort(order, n, sizeof *order, cmp_slot_key);
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        pe_txn *txn;
        if ((rc = pe_txn_begin(g->st, 1, &txn))) break;
        for (size_t i = 0; i < n && !rc; i++) {
            slot *s = order[i];
            if (s->rc) continue;
            rc = store_one(g, txn, s);
            if (rc == PE_ECOLLISION || rc == PE_EEXIST) {
                /* A collision wrote nothing; a label conflict wrote the image
                 * (gc removes it if no set holds it) but no set entry: either
                 * way this occurrence alone is rejected. */
                s->rc = rc;
                free(s->msg);
                s->msg = strdup(pe_errmsg());
                rc = 0;
            }
        }
        if (!rc && g->classes_changed && g->target_set) {
            rc = pe_set_set_classes(txn, g->target_set,
                                    (const char *const *)g->classes, g->nclasses);
        }
        if (rc == PE_ETOOBIG && attempt < 40) {
            pe_txn_abort(txn);
            if ((rc = pe_store_grow(g->st))) break;
            for (size_t i = 0; i < n; i++)
                if (order[i]->rc == PE_ECOLLISION || order[i]->rc == PE_EEXIST)
                    order[i]->rc = 0; /* replayed */
            continue;
        }
        if (rc) {
            pe_txn_abort(txn);
            break;
        }
        if ((rc = pe_txn_commit(txn))) break;
        g->classes_changed = 0;
        break;
    }
    free(order);
    return rc;
}

/* Commits when the batch is full (count or 64 MiB of pixels), when input
 * ends, or when its first image waited a second (a slow source still
 * shows its keys). */
static void *writer(void *arg) {
    ingest *g = arg;
    pthread_setname_np(pthread_self(), "pe-writer");
    /* A batch must fit in the ring with room for the workers ahead. */
    size_t batch_max = g->o->batch ? g->o->batch : RING / 2; /* bytes and time bound it too */
    if (batch_max > RING / 2) batch_max = RING / 2;
    uint64_t first = 0;
    size_t batch_bytes = 0;
    double t_first = 0;
    for (;;) {
        int commit = 0, end = 0;
        pthread_mutex_lock(&g->mu);
        while (!commit && !end && !g->fatal) {
            uint64_t n = g->next_write - first;
            if (g->next_write < g->next_seq &&
                g->ring[g->next_write % RING].state == S_DONE) {
                if (n == 0) t_first = pe_now();
                batch_bytes += pe_image_size(&g->ring[g->next_write % RING].img);
                g->next_write++;
                commit = n + 1 >= batch_max || batch_bytes >= (64u << 20);
            } else if (g->stop_producer && g->next_write >= g->next_seq) {
                end = 1;
                commit = n > 0;
            } else if (n && pe_now() - t_first >= 1.0) {
                commit = 1;
            } else if (n) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 200000000;
                if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
                pthread_cond_timedwait(&g->cv_done, &g->mu, &ts);
            } else {
                pthread_cond_wait(&g->cv_done, &g->mu);
            }
        }
        int fatal = g->fatal;
        pthread_mutex_unlock(&g->mu);
        if (fatal) return NULL;
        if (commit) {
            int rc = commit_batch(g, first, g->next_write);
            if (rc) {
                set_fatal(g, rc);
                return NULL;
            }
            for (uint64_t q = first; q < g->next_write; q++) {
                slot *s = &g->ring[q % RING];
                g->stats->seen++;
                if (s->rc) {
                    report_reject(g, s);
                } else {
                    if (s->existed) g->stats->present++;
                    else g->stats->stored++;
                    print_line(g, s);
                }
            }
            if (!g->out_closed && fflush(g->out) == EOF) out_failed(g);
            progress(g, 0);
            pthread_mutex_lock(&g->mu);
            for (uint64_t q = first; q < g->next_write; q++) {
                slot *s = &g->ring[q % RING];
                g->inflight -= pe_image_size(&s->img);
                slot_clear(s);
            }
            g->released = g->next_write;
            pthread_cond_broadcast(&g->cv_free);
            pthread_cond_broadcast(&g->cv_work);
            pthread_mutex_unlock(&g->mu);
            first = g->next_write;
            batch_bytes = 0;
        }
        if (end) return NULL;
    }
}

/* ---------------- producer: sources ---------------- */
static int push_file(ingest *g, const char *path, int32_t label) {
    slot *s = slot_acquire(g);
    if (!s) return g->fatal_rc;
    s->type = J_FILE;
    s->label = label;
    if (!(s->src = strdup(path))) return ENOMEM;
    slot_publish(g, s);
    return 0;
}

typedef struct member_ctx {
    ingest *g;
    const char *archive;
    int32_t label;
} member_ctx;

static int image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || strchr(dot, '/')) return 0;
    static const char *const ext[] = {"jpg", "jpeg", "jpe", "jfif", "png", "tif",
                                      "tiff", "pnm", "pgm", "ppm", "pbm", "bmp"};
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (!strcasecmp(dot + 1, ext[i])) return 1;
    return 0;
}

static int on_member(void *ctx, const char *name, const uint8_t *data, size_t len) {
    member_ctx *m = ctx;
    ingest *g = m->g;
    if (!image_ext(name)) {
        g->stats->ignored++;
        return 0;
    }
    slot *s = slot_acquire(g);
    if (!s) return g->fatal_rc;
    s->type = J_BYTES;
    s->label = m->label;
    size_t al = strlen(m->archive), nl = strlen(name);
    s->src = malloc(al + nl + 2);
    s->bytes = malloc(len ? len : 1);
    if (!s->src || !s->bytes) return ENOMEM;
    memcpy(s->src, m->archive, al);
    s->src[al] = '#';
    memcpy(s->src + al + 1, name, nl + 1);
    if (len) memcpy(s->bytes, data, len);
    s->len = len;
    slot_publish(g, s);
    return 0;
}

typedef struct sample_ctx {
    ingest *g;
    const char *path;
    uint8_t format;
    int32_t fixed;  /* label override, or -2 to use the file's */
    const char *tag; /* source is path#tag when set, else path#index */
} sample_ctx;

static int on_sample(void *ctx, uint64_t index, pe_image *img, int32_t label) {
    sample_ctx *m = ctx;
    ingest *g = m->g;
    slot *s = slot_acquire(g);
    if (!s) return g->fatal_rc;
    s->type = J_PIXELS;
    s->src_format = m->format;
    s->label = m->fixed != -2 ? m->fixed : label;
    s->img = *img;
    img->px = NULL; /* stolen */
    char idx[64];
    int n = m->tag ? snprintf(idx, sizeof idx, "#%s", m->tag)
                   : snprintf(idx, sizeof idx, "#%llu", (unsigned long long)index);
    size_t pl = strlen(m->path);
    if (!(s->src = malloc(pl + (size_t)n + 1))) return ENOMEM;
    memcpy(s->src, m->path, pl);
    memcpy(s->src + pl, idx, (size_t)n + 1);
    if (needs_no_canonical(g->o, &s->img)) {
        /* Only a key to hash (IDX, CIFAR at native size): cheaper here
         * than a hand-off to a worker and back, per image. */
        process(g, s);
        slot_publish_done(g, s);
        return 0;
    }
    slot_publish(g, s);
    return 0;
}

static int fixed_label(ingest *g, int32_t *out) {
    if (g->o->label_mode == PE_LABEL_UNLABELED) {
        *out = PE_LABEL_NONE;
        return 0;
    }
    if (g->o->label_mode == PE_LABEL_FIXED) {
        const char *l = g->o->label;
        char *end;
        long v = strtol(l, &end, 10);
        for (uint32_t i = 0; i < g->nclasses; i++)
            if (!strcmp(g->classes[i], l)) {
                *out = (int32_t)i;
                return 0;
            }
        if (*l && *end == 0 && v >= 0 && v < INT32_MAX && l[0] != '+') {
            *out = (int32_t)v;
            return 0;
        }
        return class_find_or_add(g, l, out);
    }
    *out = -2;
    return 0;
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* The first decompressed bytes of a gzip file (up to n), for sniffing. */
static size_t peek_gz(const char *path, uint8_t *out, size_t n) {
    gzFile f = gzopen(path, "rb");
    if (!f) return 0;
    int r = gzread(f, out, (unsigned)n);
    gzclose(f);
    return r > 0 ? (size_t)r : 0;
}

#define PE_SRC_IDX_LABELS ((pe_src_kind)100) /* an IDX labels file alone */
#define PE_SRC_GZ_OTHER ((pe_src_kind)101)   /* gzip of something else */

static pe_src_kind guess_kind(const char *path, const uint8_t *head, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    uint8_t inner[512];
    if (n >= 2 && head[0] == 0x1f && head[1] == 0x8b) {
        /* gzip: decide by what is inside */
        n = peek_gz(path, inner, sizeof inner);
        head = inner;
        if (n >= 4 && head[0] == 0 && head[1] == 0 && head[2] == 8 && head[3] == 3)
            return PE_SRC_IDX;
        if (n >= 4 && head[0] == 0 && head[1] == 0 && head[2] == 8 && head[3] == 1)
            return PE_SRC_IDX_LABELS;
        if (pe_is_tar(head, n)) return PE_SRC_TAR;
        return PE_SRC_GZ_OTHER;
    }
    if (n >= 4 && head[0] == 0 && head[1] == 0 && head[2] == 8 && head[3] == 3)
        return PE_SRC_IDX;
    if (n >= 4 && head[0] == 0 && head[1] == 0 && head[2] == 8 && head[3] == 1)
        return PE_SRC_IDX_LABELS;
    if (pe_is_tar(head, n)) return PE_SRC_TAR;
    if (has_suffix(base, "_X.bin")) return PE_SRC_STL10;
    if (!strncmp(base, "data_batch_", 11) || !strcmp(base, "test_batch.bin"))
        return PE_SRC_CIFAR10;
    return PE_SRC_IMAGE;
}

static int source_dataset(ingest *g, const char *path, pe_src_kind kind) {
    int32_t fixed;
    int rc = fixed_label(g, &fixed);
    if (rc) return rc;
    if (g->o->label_mode == PE_LABEL_FOLDER) fixed = -2;
    sample_ctx m = {g, path, 0, fixed, NULL};
    switch (kind) {
    case PE_SRC_IDX: {
        char found[4096];
        const char *labels = g->o->labels_path;
        if (!labels && pe_idx_find_labels(path, found, sizeof found) == 0)
            labels = found;
        pe_errclear();
        m.format = PE_FORMAT_IDX;
        rc = pe_idx_read(path, labels, on_sample, &m);
        break;
    }
    case PE_SRC_CIFAR10:
    case PE_SRC_CIFAR100:
        m.format = PE_FORMAT_CIFAR;
        rc = pe_cifar_read(path, kind == PE_SRC_CIFAR10 ? 10 : 100,
                           g->o->cifar_coarse, on_sample, &m);
        break;
    case PE_SRC_STL10:
        m.format = PE_FORMAT_STL10;
        rc = pe_stl10_read(path, g->o->labels_path, on_sample, &m);
        break;
    default:
        return pe_fail(PE_EUSAGE, "not a dataset kind");
    }
    return rc;
}

static int source_tar(ingest *g, const char *path) {
    int32_t fixed;
    int rc = fixed_label(g, &fixed);
    if (rc) return rc;
    member_ctx m = {g, path, fixed == -2 ? PE_LABEL_NONE : fixed};
    return pe_tar_read(path, 0, on_member, &m);
}

/* A source that failed as a whole (unreadable archive, corrupt IDX) is a
 * rejected input; a fatal store failure stops everything. */
static int source_failed(ingest *g, const char *path, int rc) {
    if (g->fatal) return g->fatal_rc;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pe_errmsg()[0] ? pe_errmsg() : pe_strerror(rc));
    return emit_reject(g, path, rc, "%s", msg);
}


typedef struct visited {
    dev_t dev;
    ino_t ino;
} visited;

static int cmpstr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted entry names of a directory (caller frees). */
static int list_dir(const char *path, char ***out, size_t *n) {
    DIR *d = opendir(path);
    *out = NULL;
    *n = 0;
    if (!d) return pe_fail(errno, "cannot open folder: %s", strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **v = realloc(*out, cap * sizeof *v);
            if (!v) { rc = ENOMEM; break; }
            *out = v;
        }
        if (!((*out)[*n] = strdup(e->d_name))) { rc = ENOMEM; break; }
        (*n)++;
    }
    closedir(d);
    if (!rc) qsort(*out, *n, sizeof **out, cmpstr);
    return rc;
}

static void free_list(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (!p) return NULL;
    memcpy(p, a, la);
    size_t o = la;
    if (la && a[la - 1] != '/') p[o++] = '/';
    memcpy(p + o, b, lb + 1);
    return p;
}

typedef struct walk {
    visited *v;
    size_t n, cap;
} walk;

static int walk_dir(ingest *g, const char *path, int32_t label, walk *w);

static int walk_entry(ingest *g, const char *path, int32_t label, walk *w) {
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return emit_reject(g, path, errno, "%s", strerror(errno));
    if (S_ISLNK(sb.st_mode)) {
        if (!g->o->follow) {
            g->stats->skipped++;
            if (!g->o->quiet)
                fprintf(g->err, "%s: %s: skipped: a symbolic link (use --follow)\n",
                        g->o->prog, pe_esc(path));
            return 0;
        }
        if (stat(path, &sb) != 0)
            return emit_reject(g, path, errno, "broken link: %s", strerror(errno));
    }
    if (S_ISDIR(sb.st_mode)) return walk_dir(g, path, label, w);
    if (!S_ISREG(sb.st_mode)) {
        g->stats->skipped++;
        if (!g->o->quiet)
            fprintf(g->err, "%s: %s: skipped: not a regular file (%s)\n", g->o->prog,
                    pe_esc(path),
                    S_ISFIFO(sb.st_mode) ? "fifo" : S_ISSOCK(sb.st_mode) ? "socket"
                    : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "device" : "special");
        return 0;
    }
    if (!image_ext(path)) {
        g->stats->ignored++;
        return 0;
    }
    return push_file(g, path, label);
}

static int walk_dir(ingest *g, const char *path, int32_t label, walk *w) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return emit_reject(g, path, errno, "%s", strerror(errno));
    for (size_t i = 0; i < w->n; i++)
        if (w->v[i].dev == sb.st_dev && w->v[i].ino == sb.st_ino) {
            g->stats->skipped++;
            if (!g->o->quiet)
                fprintf(g->err, "%s: %s: skipped: folder loop\n", g->o->prog,
                        pe_esc(path));
            return 0;
        }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        visited *v = realloc(w->v, cap * sizeof *v);
        if (!v) return ENOMEM;
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = (visited){sb.st_dev, sb.st_ino};
    char **names;
    size_t n;
    int rc = list_dir(path, &names, &n);
    if (rc) {
        w->n--;
        if (rc == ENOMEM) return rc;
        return emit_reject(g, path, rc, "%s", pe_errmsg());
    }
    for (size_t i = 0; i < n && !rc; i++) {
        char *p = join(path, names[i]);
        if (!p) { rc = ENOMEM; break; }
        rc = walk_entry(g, p, label, w);
        free(p);
    }
    free_list(names, n);
    w->n--;
    return rc;
}

/* A named folder: first-level subfolders are classes (ImageFolder), files
 * directly inside are unlabeled (or the fixed label). */
static int source_folder(ingest *g, const char *path) {
    int32_t fixed;
    int rc = fixed_label(g, &fixed);
    if (rc) return rc;
    walk w = {0};
    if (fixed != -2) {
        rc = walk_dir(g, path, fixed, &w);
        free(w.v);
        return rc;
    }
    char **names;
    size_t n;
    if ((rc = list_dir(path, &names, &n))) {
        if (rc == ENOMEM) return rc;
        return emit_reject(g, path, rc, "%s", pe_errmsg());
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && (w.v = malloc(sizeof *w.v))) {
        w.v[0] = (visited){sb.st_dev, sb.st_ino};
        w.n = w.cap = 1;
    }
    /* Class ids follow sorted folder names (list_dir sorts), as ImageFolder. */
    for (size_t i = 0; i < n && !rc; i++) {
        char *p = join(path, names[i]);
        if (!p) { rc = ENOMEM; break; }
        struct stat es;
        int isdir = (g->o->follow ? stat(p, &es) : lstat(p, &es)) == 0 && S_ISDIR(es.st_mode);
        if (isdir) {
            int32_t id;
            if (!(rc = class_find_or_add(g, names[i], &id))) rc = walk_dir(g, p, id, &w);
        } else {
            rc = walk_entry(g, p, PE_LABEL_NONE, &w);
        }
        free(p);
    }
    free_list(names, n);
    free(w.v);
    return rc;
}

static int add_path(ingest *g, const char *path) {
    struct stat sb;
    if ((g->o->follow ? stat(path, &sb) : lstat(path, &sb)) != 0)
        return emit_reject(g, path, errno, "%s", strerror(errno));
    if (S_ISLNK(sb.st_mode)) {
        g->stats->skipped++;
        if (!g->o->quiet)
            fprintf(g->err, "%s: %s: skipped: a symbolic link (use --follow)\n",
                    g->o->prog, pe_esc(path));
        return 0;
    }
    if (S_ISDIR(sb.st_mode)) return source_folder(g, path);
    if (!S_ISREG(sb.st_mode)) {
        g->stats->skipped++;
        if (!g->o->quiet)
            fprintf(g->err, "%s: %s: skipped: not a regular file\n", g->o->prog,
                    pe_esc(path));
        return 0;
    }
    pe_src_kind kind = g->o->kind;
    if (kind == PE_SRC_AUTO) {
        uint8_t head[512];
        size_t n = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t r = read(fd, head, sizeof head);
            n = r > 0 ? (size_t)r : 0;
            close(fd);
        }
        kind = guess_kind(path, head, n);
    }
    int rc;
    switch ((int)kind) {
    case PE_SRC_IDX_LABELS:
        /* named beside its images file (a glob like *.gz): used from there */
        g->stats->ignored++;
        if (!g->o->quiet)
            fprintf(g->err, "%s: %s: ignored: an IDX labels file (read with its "
                    "images file)\n", g->o->prog, pe_esc(path));
        return 0;
    case PE_SRC_GZ_OTHER:
        return emit_reject(g, path, PE_EUNSUPPORTED, "gzip data that is neither an "
                           "IDX images file nor a tar archive");
    case PE_SRC_IMAGE: {
        int32_t fixed;
        if ((rc = fixed_label(g, &fixed))) return rc;
        return push_file(g, path, fixed == -2 ? PE_LABEL_NONE : fixed);
    }
    case PE_SRC_TAR:
        rc = source_tar(g, path);
        break;
    default:
        rc = source_dataset(g, path, kind);
        break;
    }
    if (rc && !g->fatal && rc != ENOMEM) return source_failed(g, path, rc);
    return rc;
}

static int from_stdin(ingest *g) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    int delim = g->o->stdin_nul ? 0 : '\n';
    while (!rc && (n = getdelim(&line, &cap, delim, stdin)) > 0) {
        if (line[n - 1] == delim) line[--n] = 0;
        if (delim && n && line[n - 1] == '\r') line[--n] = 0;
        if (n == 0) continue;
        if (delim && memchr(line, 0, (size_t)n)) {
            rc = emit_reject(g, "(stdin)", PE_EFORMAT, "a path line holds a NUL byte");
            continue;
        }
        rc = add_path(g, line);
    }
    free(line);
    return rc;
}

/* --from-store without --from-set: every image of the other store, once,
 * with the fixed label or unlabeled. */
static int copy_image(void *ctx, pe_txn *t, const pe_key *key) {
    ingest *g = ctx;
    pe_image im = {0};
    int32_t fixed;
    int rc = fixed_label(g, &fixed);
    if (rc || (rc = pe_img_get(t, key, &im))) return rc;
    char hx[PE_KEY_HEX + 1];
    pe_key_to_hex(key, hx);
    sample_ctx m = {g, g->o->from_store, PE_FORMAT_STORE, fixed == -2 ? PE_LABEL_NONE : fixed, hx};
    rc = on_sample(&m, 0, &im, PE_LABEL_NONE);
    pe_image_free(&im);
    return rc;
}

static int from_store(ingest *g) {
    pe_store *src;
    pe_txn *t = NULL;
    pe_set_iter *it = NULL;
    int rc = pe_store_open(&src, g->o->from_store, PE_STORE_RDONLY);
    if (rc) return rc;
    if (src == g->st) {
        pe_store_close(src);
        return pe_fail(PE_EUSAGE, "--from-store names the target store");
    }
    if ((rc = pe_txn_begin(src, 0, &t))) goto out;
    if (g->o->from_set) {
        pe_set_hdr h;
        if ((rc = pe_set_get(t, g->o->from_set, &h))) goto out;
        for (uint32_t i = 0; i < h.n_classes; i++) {
            int32_t id;
            if (i < g->nclasses) {
                if (strcmp(g->classes[i], h.classes[i])) {
                    rc = pe_fail(PE_EEXIST, "class %u is '%s' here, '%s' in %s",
                                 i, g->classes[i], h.classes[i], g->o->from_store);
                    goto out;
                }
            } else if ((rc = class_find_or_add(g, h.classes[i], &id))) {
                goto out;
            }
        }
        if ((rc = pe_set_iter_open(t, g->o->from_set, 0, &it))) goto out;
        pe_set_entry e;
        while ((rc = pe_set_iter_next(it, &e)) == 1) {
            pe_image im = {0};
            if ((rc = pe_img_get(t, &e.key, &im))) goto out;
            char hx[PE_KEY_HEX + 1];
            pe_key_to_hex(&e.key, hx);
            sample_ctx m = {g, g->o->from_store, PE_FORMAT_STORE, -2, hx};
            /* each occurrence counts: the count travels as repeated adds */
            for (uint32_t c = 0; c < e.count && !rc; c++) {
                pe_image cp = {0};
                if (c + 1 < e.count) {
                    if ((rc = pe_image_alloc(&cp, im.w, im.h, im.c))) break;
                    memcpy(cp.px, im.px, pe_image_size(&im));
                } else {
                    cp = im;
                    im.px = NULL;
                }
                rc = on_sample(&m, c, &cp, e.label);
                pe_image_free(&cp);
            }
            pe_image_free(&im);
            if (rc) goto out;
        }
    } else {
        rc = pe_img_each(t, copy_image, g);
    }
out:
    pe_set_iter_close(it);
    pe_txn_abort(t);
    pe_store_close(src);
    return rc;
}

/* ---------------- the run ---------------- */
static int prepare_set(ingest *g) {
    const pe_ingest_opts *o = g->o;
    pe_txn *t;
    int rc = pe_txn_begin(g->st, 1, &t);
    if (rc) return rc;
    pe_set_hdr h;
    rc = pe_set_get(t, o->set, &h);
    if (rc == 0) {
        if (!o->append) {
            rc = pe_fail(PE_EEXIST, "set '%s' exists (--append adds to it)", o->set);
            goto out;
        }
        for (uint32_t i = 0; i < h.n_classes; i++) {
            int32_t id;
            if ((rc = class_find_or_add(g, h.classes[i], &id))) goto out;
        }
        g->classes_changed = 0;
        g->target_set = o->set;
    } else if (rc == PE_ENOTFOUND) {
        pe_errclear();
        snprintf(g->staging, sizeof g->staging, ".staging.%ld.%s", (long)getpid(), o->set);
        pe_set_delete(t, g->staging); /* a leftover of a pid reused */
        pe_errclear();
        char who[400];
        if ((rc = pe_set_create(t, g->staging)) || (rc = pe_writer_identity(who, sizeof who)) ||
            (rc = pe_set_set_attr(t, g->staging, "writer", who)))
            goto out;
        g->target_set = g->staging;
    } else {
        goto out;
    }
    if (o->classes_file && (rc = load_classes_file(g, o->classes_file))) goto out;
    if (g->classes_changed)
        rc = pe_set_set_classes(t, g->target_set, (const char *const *)g->classes,
                                g->nclasses);
    g->classes_changed = 0;
out:
    if (rc) {
        pe_txn_abort(t);
        return rc;
    }
    return pe_txn_commit(t);
}

static int finish_set(ingest *g) {
    pe_txn *t;
    int rc = pe_txn_begin(g->st, 1, &t);
    if (rc) return rc;
    if (g->classes_changed)
        rc = pe_set_set_classes(t, g->target_set, (const char *const *)g->classes,
                                g->nclasses);
    if (!rc && g->staging[0] && !(rc = pe_set_set_attr(t, g->staging, "writer", NULL)))
        rc = pe_set_rename(t, g->staging, g->o->set, 0);
    if (rc) {
        pe_txn_abort(t);
        return rc;
    }
    return pe_txn_commit(t);
}

int pe_ingest_run(pe_store *st, const pe_ingest_opts *o, char **srcs, int nsrc,
                  FILE *out, FILE *err, pe_ingest_stats *stats) {
    ingest G, *g = &G;
    memset(g, 0, sizeof G);
    memset(stats, 0, sizeof *stats);
    g->o = o;
    g->st = st;
    g->out = out;
    g->err = err;
    g->stats = stats;
    g->t0 = pe_now();
    int rc = 0, nthreads = o->threads;
    if (nthreads <= 0) nthreads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nthreads <= 0) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    if (!(g->ring = calloc(RING, sizeof *g->ring))) return ENOMEM;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv_work, NULL);
    pthread_cond_init(&g->cv_done, NULL);
    pthread_cond_init(&g->cv_free, NULL);
    if (o->set) {
        if ((rc = prepare_set(g))) goto out_nothreads;
    } else if (o->classes_file && (rc = load_classes_file(g, o->classes_file))) {
        goto out_nothreads;
    }
    /* A closed stdout must not kill the run between commits: EPIPE is
     * handled (keys are then no longer printed, the ingest completes). */
    signal(SIGPIPE, SIG_IGN);
    pthread_t wt, *th = calloc((size_t)nthreads, sizeof *th);
    if (!th) { rc = ENOMEM; goto out_nothreads; }
    int started = 0;
    if (pthread_create(&wt, NULL, writer, g)) { rc = EAGAIN; free(th); goto out_nothreads; }
    for (; started < nthreads; started++)
        if (pthread_create(&th[started], NULL, worker, g)) break;
    if (started == 0) {
        set_fatal(g, pe_fail(EAGAIN, "cannot start threads"));
    } else if (o->from_store) {
        rc = from_store(g);
    } else if (nsrc == 0 || (nsrc == 1 && !strcmp(srcs[0], "-"))) {
        rc = from_stdin(g);
    } else {
        for (int i = 0; i < nsrc && !rc && !g->fatal; i++) {
            if (!strcmp(srcs[i], "-")) rc = from_stdin(g);
            else rc = add_path(g, srcs[i]);
        }
    }
    if (rc && !g->fatal) set_fatal(g, rc);
    pthread_mutex_lock(&g->mu);
    g->stop_producer = 1;
    pthread_cond_broadcast(&g->cv_done);
    pthread_mutex_unlock(&g->mu);
    pthread_join(wt, NULL);
    pthread_mutex_lock(&g->mu);
    g->finished = 1;
    pthread_cond_broadcast(&g->cv_work);
    pthread_mutex_unlock(&g->mu);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    free(th);
    if (g->fatal) {
        rc = g->fatal_rc ? g->fatal_rc : PE_ESTORE;
        pe_fail(rc, "%s", g->fatal_msg);
    } else if (o->set) {
        rc = finish_set(g);
    }
    progress(g, 1);
    if (g->out_closed && g->out_errno == EPIPE && !o->quiet)
        fprintf(err, "%s: standard output closed; keys after that were not "
                "printed (the ingest completed)\n", o->prog);
    else if (g->out_closed && !rc)
        rc = pe_fail(g->out_errno, "writing standard output: %s; keys after that "
                     "were not printed (the ingest completed)", strerror(g->out_errno));
out_nothreads:
    for (uint64_t q = 0; q < RING; q++) slot_clear(&g->ring[q]);
    free(g->ring);
    for (uint32_t i = 0; i < g->nclasses; i++) free(g->classes[i]);
    free(g->classes);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv_work);
    pthread_cond_destroy(&g->cv_done);
    pthread_cond_destroy(&g->cv_free);
    return rc;
}
