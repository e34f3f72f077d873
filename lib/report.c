/*
 * report.c - pe-audit's HTML report (audit_impl.h): one self-contained
 * page per audit, images embedded as PNG thumbnails in data: URIs, score
 * histograms as inline SVG, a Content-Security-Policy that allows nothing
 * but inline styles and data: images (no script runs, nothing is fetched),
 * and the summary and the shown images' names as JSON in a data block.
 *
 * Names from the data (sources, class names, set names, the truth file)
 * are escaped for their context: pe_escape's HTML form in text and in
 * double-quoted attribute values, its JSON form plus \u003c \u003e \u0026
 * inside the <script type="application/json"> element, so that neither
 * "</script" nor "<!--" can occur in it. Everything else written here is
 * keys (hex), numbers and fixed strings.
 *
 * Size: each section shows at most report_max items (highest scores
 * first), each with at most COMPANIONS images beside it; thumbnails are at
 * most THUMB_SIDE pixels on a side. The file is written under a temporary
 * name and renamed into place.
 *
 * Not for: the scans or their numbers (audit.c), the line and NDJSON
 * outputs (audit.c), PNG encoding (formats/png.c).
 */
#include "audit_impl.h"

#include "cli.h"
#include "codec.h"
#include "knn.h"
#include "escape.h"
#include "image.h"
#include "pe.h"
#include "phash.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define THUMB_SIDE 128 /* stored thumbnail: longer side at most this */
#define DISPLAY 96     /* shown: longer side in CSS pixels */
#define COMPANIONS 8   /* images beside one item (cluster members, carriers) */
#define HIST_BINS 20

/* ---- the file ---- */

int pe_audit_report_open(pe_audit_report *rf, const char *path) {
    static atomic_uint seq;
    struct stat sb;
    rf->path = path;
    rf->tmp = NULL;
    rf->fd = -1;
    if (!path[0]) return pe_fail(ENOENT, "report: an empty path");
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return pe_fail(EISDIR, "report %s: is a folder", path);
    size_t cap = strlen(path) + 48;
    if (!(rf->tmp = malloc(cap))) return pe_fail(ENOMEM, "report %s: out of memory", path);
    for (int attempt = 0; rf->fd < 0; attempt++) {
        snprintf(rf->tmp, cap, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&seq, 1));
        rf->fd = open(rf->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (rf->fd < 0 && (errno != EEXIST || attempt == 100)) {
            int e = errno;
            free(rf->tmp);
            rf->tmp = NULL;
            return pe_fail(e, "report %s: cannot create a file there: %s", path, strerror(e));
        }
    }
    return 0;
}

void pe_audit_report_discard(pe_audit_report *rf) {
    if (rf->fd >= 0) close(rf->fd);
    rf->fd = -1;
    if (rf->tmp) unlink(rf->tmp);
    free(rf->tmp);
    rf->tmp = NULL;
}

/* fsync of the folder holding path, so that the rename is durable
 * (filesystems that cannot sync a folder, EINVAL, are let be). */
static int sync_dir(const char *path) {
    char *dir = strdup(path);
    int rc = 0;
    if (!dir) return ENOMEM;
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) rc = errno;
    else {
        if (fsync(fd) != 0 && errno != EINVAL) rc = errno;
        close(fd);
    }
    free(dir);
    return rc;
}

/* ---- the writer's state ---- */

typedef struct rep {
    const audit *a;
    const tally *t;
    uint64_t npos;
    FILE *f;
    pe_txn *txn;
    char **classes;     /* the audited set's class names (copies) */
    uint32_t nclasses;
    char **uri;         /* (n) thumbnail data: URI, made when first shown */
    char **uri_ag;      /* (na) the same for images of --against */
    uint8_t *shown;     /* (n) 1: shown, so listed in the JSON */
    uint8_t *shown_ag;  /* (na) */
    int max;            /* items per section */
    int rc;             /* first error; writing stops being useful after it */
} rep;

static void h(rep *R, const char *s) { pe_escape_fput(R->f, s, strlen(s), PE_ESC_HTML); }

static void put_hex(FILE *f, const pe_key *k) {
    char hx[PE_KEY_HEX + 1];
    pe_key_to_hex(k, hx);
    fputs(hx, f);
}

static const char *set_name(const audit *a) { return a->o->set ? a->o->set : "stdin"; }

static const pe_key *key_of(const rep *R, int ag, uint32_t id) {
    return ag ? &R->a->ak[id] : &R->a->r[id].key;
}

/* ---- thumbnails ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* "data:image/png;base64,..." of im, at most THUMB_SIDE on a side
 * (Pillow-bilinear downscale, which keeps small images' pixels as they
 * are). malloc'd into *out. */
static int make_uri(const pe_image *im, char **out) {
    pe_image small = {0};
    const pe_image *src = im;
    uint8_t *png = NULL;
    size_t len = 0;
    int rc = 0;
    const uint32_t m = im->w > im->h ? im->w : im->h;
    if (m > THUMB_SIDE) {
        uint32_t tw = (uint32_t)(((uint64_t)im->w * THUMB_SIDE + m / 2) / m);
        uint32_t th = (uint32_t)(((uint64_t)im->h * THUMB_SIDE + m / 2) / m);
        if ((rc = pe_image_resize_bilinear(im, &small, tw ? tw : 1, th ? th : 1))) return rc;
        src = &small;
    }
    if ((rc = pe_encode_png(src, &png, &len))) goto out;
    static const char prefix[] = "data:image/png;base64,";
    char *s = malloc(sizeof prefix + (len + 2) / 3 * 4);
    if (!s) {
        rc = pe_fail(ENOMEM, "report: out of memory");
        goto out;
    }
    memcpy(s, prefix, sizeof prefix - 1);
    char *p = s + sizeof prefix - 1;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)png[i] << 16;
        if (i + 1 < len) v |= (uint32_t)png[i + 1] << 8;
        if (i + 2 < len) v |= png[i + 2];
        *p++ = b64[v >> 18];
        *p++ = b64[(v >> 12) & 63];
        *p++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        *p++ = i + 2 < len ? b64[v & 63] : '=';
    }
    *p = 0;
    *out = s;
out:
    free(png);
    pe_image_free(&small);
    return rc;
}

static int read_image(rep *R, const pe_key *k, pe_image *im) {
    int rc = pe_img_get(R->txn, k, im);
    if (rc) {
        char hx[PE_KEY_HEX + 1];
        pe_key_to_hex(k, hx);
        rc = pe_fail_prefix(rc, "report: image %s", hx);
    }
    return rc;
}

/* The thumbnail of image id (of the set, or of --against with ag), or
 * NULL after an error (R->rc). */
static const char *thumb(rep *R, int ag, uint32_t id) {
    char **slot = ag ? &R->uri_ag[id] : &R->uri[id];
    if (*slot || R->rc) return *slot;
    pe_image im = {0};
    if (!(R->rc = read_image(R, key_of(R, ag, id), &im))) R->rc = make_uri(&im, slot);
    pe_image_free(&im);
    return *slot;
}

/* ---- cards: one image with its key, label, source and evidence ---- */

typedef enum mark_kind { MARK_NONE, MARK_BOX, MARK_LINE } mark_kind;
typedef struct mark {
    mark_kind kind;
    uint32_t x0, y0, x1, y1; /* image pixels; a line from (x0,y0) to (x1,y1) */
} mark;

static void disp_size(uint32_t w, uint32_t h, unsigned *dw, unsigned *dh) {
    const uint32_t m = w > h ? w : h;
    *dw = (unsigned)(((uint64_t)w * DISPLAY + m / 2) / m);
    *dh = (unsigned)(((uint64_t)h * DISPLAY + m / 2) / m);
    if (!*dw) *dw = 1;
    if (!*dh) *dh = 1;
}

/* The picture: an <img> and, over it, an SVG in the image's pixel
 * coordinates with the mark (stroke width in screen pixels). */
static void picture(rep *R, const char *uri, uint32_t w, uint32_t h, const pe_key *alt,
                    const mark *mk) {
    FILE *f = R->f;
    unsigned dw, dh;
    disp_size(w, h, &dw, &dh);
    fprintf(f, "<div class=\"im\" style=\"width:%upx;height:%upx\"><img src=\"%s\" width=\"%u\" height=\"%u\" alt=\"",
            dw, dh, uri, dw, dh);
    if (alt) put_hex(f, alt);
    else fputs("part", f);
    fputs("\">", f);
    if (mk && mk->kind != MARK_NONE) {
        fprintf(f, "<svg viewBox=\"0 0 %" PRIu32 " %" PRIu32 "\" preserveAspectRatio=\"none\" aria-hidden=\"true\">",
                w, h);
        if (mk->kind == MARK_BOX)
            fprintf(f, "<rect class=\"box\" x=\"%" PRIu32 "\" y=\"%" PRIu32 "\" width=\"%" PRIu32 "\" height=\"%" PRIu32
                       "\" vector-effect=\"non-scaling-stroke\"/>",
                    mk->x0, mk->y0, mk->x1 - mk->x0, mk->y1 - mk->y0);
        else
            fprintf(f, "<line class=\"line\" x1=\"%" PRIu32 "\" y1=\"%" PRIu32 "\" x2=\"%" PRIu32 "\" y2=\"%" PRIu32
                       "\" vector-effect=\"non-scaling-stroke\"/>",
                    mk->x0, mk->y0, mk->x1, mk->y1);
        fputs("</svg>", f);
    }
    fputs("</div>", f);
}

static void label_text(rep *R, int32_t label) {
    if (label == PE_LABEL_NONE) {
        fputs("unlabeled", R->f);
    } else if (label >= 0 && (uint32_t)label < R->nclasses && R->classes[label][0]) {
        h(R, R->classes[label]);
    } else {
        fprintf(R->f, "class %" PRId32, label);
    }
}

/* Opens a card and writes its common caption (role, key, label or set,
 * poison badge, first source); the caller adds evidence and closes it
 * with card_close. Returns 0 when nothing was written (after an error). */
static int card_open(rep *R, int ag, uint32_t id, const mark *mk, const char *role) {
    const audit *a = R->a;
    FILE *f = R->f;
    const char *uri = thumb(R, ag, id);
    if (!uri) return 0;
    const pe_key *k = key_of(R, ag, id);
    const rec *r = ag ? NULL : &a->r[id];
    pe_img_hdr hd;
    uint32_t w, hh;
    if (r) {
        w = r->w;
        hh = r->h;
    } else {
        if ((R->rc = pe_img_stat(R->txn, k, &hd))) return 0;
        w = hd.w;
        hh = hd.h;
    }
    if (ag) R->shown_ag[id] = 1;
    else R->shown[id] = 1;
    const int poison = r && a->o->truth && r->truth;
    fprintf(f, "<figure class=\"card%s\">", poison ? " poison" : "");
    picture(R, uri, w, hh, k, mk);
    fputs("<figcaption>", f);
    if (role) fprintf(f, "<span class=\"role\">%s</span>", role);
    if (poison) fputs("<span class=\"badge\">poison</span>", f);
    fputs("<code class=\"key\">", f);
    put_hex(f, k);
    fprintf(f, "</code><span class=\"dim\">%" PRIu32 "&#215;%" PRIu32 "</span>", w, hh);
    if (r) {
        fputs("<span class=\"label\">", f);
        label_text(R, r->label);
        fputs("</span>", f);
    } else {
        fputs("<span class=\"label\">in <q>", f);
        h(R, a->o->against);
        fputs("</q></span>", f);
    }
    pe_info info;
    int rc = pe_info_get(R->txn, k, &info);
    if (rc == 0 && info.n) {
        fputs("<span class=\"src\" title=\"", f);
        h(R, info.prov[0].src);
        fputs("\">", f);
        h(R, info.prov[0].src);
        fputs("</span>", f);
        if (info.count > 1) fprintf(f, "<span class=\"more\">+%" PRIu64 " more</span>", info.count - 1);
    } else if (rc && rc != PE_ENOTFOUND) {
        R->rc = rc;
    }
    return 1;
}

static void card_close(rep *R) { fputs("</figcaption></figure>\n", R->f); }

static void card(rep *R, int ag, uint32_t id, const mark *mk, const char *role) {
    if (card_open(R, ag, id, mk, role)) card_close(R);
}

static mark part_mark(const rec *r, int idx) {
    mark m = {MARK_NONE, 0, 0, 0, 0};
    if (idx < 0) return m;
    pe_part parts[PE_AUDIT_MAX_PARTS];
    int n = pe_audit_parts(r->w, r->h, parts);
    PE_ASSERT(idx < n);
    m.kind = MARK_BOX;
    m.x0 = parts[idx].x0;
    m.y0 = parts[idx].y0;
    m.x1 = parts[idx].x1;
    m.y1 = parts[idx].y1;
    return m;
}

static const char *part_name(const rec *r, int idx) {
    if (idx < 0) return "whole";
    pe_part parts[PE_AUDIT_MAX_PARTS];
    int n = pe_audit_parts(r->w, r->h, parts);
    PE_ASSERT(idx < n);
    return parts[idx].name;
}

/* ---- ordering ---- */

typedef struct ranked {
    double s;
    uint32_t id;
} ranked;

static int cmp_ranked(const void *x, const void *y) {
    const ranked *a = x, *b = y;
    if (a->s != b->s) return a->s < b->s ? 1 : -1;
    return (a->id > b->id) - (a->id < b->id);
}

/* The suspects of scan s, highest score first, then key order. *out is
 * malloc'd (NULL when there are none). */
static int suspects_ranked(rep *R, int s, ranked **out, size_t *n) {
    const audit *a = R->a;
    *out = NULL;
    *n = 0;
    uint64_t m = R->t[s].suspects;
    if (!m) return 0;
    ranked *v = malloc(m * sizeof *v);
    if (!v) return R->rc = pe_fail(ENOMEM, "report: out of memory");
    size_t k = 0;
    for (uint32_t i = 0; i < a->n; i++)
        if (a->r[i].suspect[s] && k < m) v[k++] = (ranked){a->r[i].score[s], i};
    qsort(v, k, sizeof *v, cmp_ranked);
    *out = v;
    *n = k;
    return 0;
}

/* ---- sections ---- */

static const char *section_of(int s) {
    switch (s) {
    case PE_SCAN_EXACT:
    case PE_SCAN_PHASH: return "duplicates";
    case PE_SCAN_COMPOSITE: return "composites";
    case PE_SCAN_RECURRING: return "recurring";
    case PE_SCAN_SEAM: return "seams";
    case PE_SCAN_SIZE: return "size";
    case PE_SCAN_AGAINST: return "against";
    case PE_SCAN_OUTLIER: return "outliers";
    case PE_SCAN_EMBDUP: return "embdup";
    case PE_SCAN_MISLABEL: return "mislabels";
    default: return NULL; /* quality: "quality-NAME" */
    }
}

static void section_href(FILE *f, int s) {
    const char *sec = section_of(s);
    if (sec) fprintf(f, "#%s", sec);
    else fprintf(f, "#quality-%s", pe_scan_name((pe_scan)s));
}

/* Opens <section id=...> with its heading and says when none of its scans
 * ran. Returns 1 when at least one did. */
static int section_open(rep *R, const char *id, const char *title, unsigned scans, const char *what) {
    fprintf(R->f, "<section id=\"%s\">\n<h2>%s</h2>\n<p class=\"what\">%s</p>\n", id, title, what);
    if (R->a->scans & scans) return 1;
    fputs("<p class=\"none\">Not run (see --scan).</p>\n", R->f);
    return 0;
}

static void section_close(rep *R) { fputs("</section>\n", R->f); }

static void shown_note(rep *R, size_t shown, size_t total, const char *noun) {
    if (!total) fprintf(R->f, "<p class=\"none\">No %s.</p>\n", noun);
    else if (shown < total)
        fprintf(R->f,
                "<p class=\"note\">%zu of %zu %s shown, highest scores first; the line and "
                "--json outputs list them all.</p>\n",
                shown, total, noun);
}

static size_t cap_items(const rep *R, size_t n) { return n < (size_t)R->max ? n : (size_t)R->max; }

/* Digits of a threshold: the embedding scans' crowd near 0 or 1. */
static int thr_digits(int s) { return (GROUP_EMBED & BIT(s)) ? 7 : 4; }

static void fmt_pct(FILE *f, double v) { fprintf(f, "%.1f%%", 100.0 * v); }

static void write_summary(rep *R) {
    const audit *a = R->a;
    const pe_audit_opts *o = a->o;
    FILE *f = R->f;
    const int truth = o->truth != 0;
    fputs("<section id=\"summary\">\n<h2>Summary</h2>\n<table>\n<thead><tr><th>scan</th><th>suspects</th><th>threshold</th>", f);
    if (truth)
        fputs("<th>poisons found</th><th>false positives</th><th>poisons missed</th><th>precision</th>"
              "<th>recall</th><th>ROC AUC</th>",
              f);
    fputs("</tr></thead>\n<tbody>\n", f);
    for (int s = 0; s <= PE_SCAN_COUNT; s++) {
        if (s < PE_SCAN_COUNT && !(a->scans & BIT(s))) continue;
        if (s == PE_SCAN_COUNT && (!(a->scans & POISON_PROPER) || !truth)) continue;
        const tally *x = &R->t[s];
        if (s < PE_SCAN_COUNT) {
            fputs("<tr><td><a href=\"", f);
            section_href(f, s);
            fprintf(f, "\">%s</a></td><td>%" PRIu64 "</td><td>%.*g</td>", pe_scan_name((pe_scan)s),
                    x->suspects, thr_digits(s), a->thr[s]);
        } else {
            fprintf(f, "<tr class=\"union\"><td>poison (composite, recurring, seam, against together)</td><td>%" PRIu64
                       "</td><td></td>",
                    x->suspects);
        }
        if (truth) {
            fprintf(f, "<td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>", x->tp, x->fp, x->fn);
            if (x->suspects) fmt_pct(f, (double)x->tp / x->suspects);
            else fputs("&#8211;", f);
            fputs("</td><td>", f);
            if (R->npos) fmt_pct(f, (double)x->tp / R->npos);
            else fputs("&#8211;", f);
            fputs("</td><td>", f);
            if (s < PE_SCAN_COUNT && x->auc >= 0) fprintf(f, "%.4f", x->auc);
            else fputs("&#8211;", f);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody>\n</table>\n</section>\n", f);
}

/* One scan's scores in HIST_BINS bins on [0, 1] (a score of 1 in the
 * last), bar heights on a log scale; with truth, clean images and poisons
 * side by side in each bin; the threshold as a dashed line. */
static void write_histogram(rep *R, int s) {
    const audit *a = R->a;
    FILE *f = R->f;
    uint64_t clean[HIST_BINS] = {0}, pois[HIST_BINS] = {0}, top = 0;
    const int truth = a->o->truth != 0;
    for (size_t i = 0; i < a->n; i++) {
        double v = a->r[i].score[s];
        int b = v >= 1 ? HIST_BINS - 1 : v <= 0 ? 0 : (int)(v * HIST_BINS);
        if (b >= HIST_BINS) b = HIST_BINS - 1;
        if (truth && a->r[i].truth) pois[b]++;
        else clean[b]++;
    }
    for (int b = 0; b < HIST_BINS; b++) {
        if (clean[b] > top) top = clean[b];
        if (pois[b] > top) top = pois[b];
    }
    const double x0 = 34, pw = 260, y0 = 8, ph = 92, bw = pw / HIST_BINS;
    const double lt = log10(1.0 + (double)top);
    fprintf(f, "<figure class=\"hist\" id=\"hist-%s\"><svg viewBox=\"0 0 310 124\" width=\"310\" height=\"124\" role=\"img\">",
            pe_scan_name((pe_scan)s));
    fprintf(f, "<rect class=\"frame\" x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\"/>", x0, y0, pw, ph);
    for (int b = 0; b < HIST_BINS; b++) {
        for (int series = 0; series < 1 + truth; series++) {
            uint64_t c = series ? pois[b] : clean[b];
            if (!c) continue;
            double hh = lt > 0 ? ph * log10(1.0 + (double)c) / lt : 0;
            double x = x0 + b * bw + (truth ? series * bw / 2 : 0);
            double w = truth ? bw / 2 : bw - 1;
            fprintf(f, "<rect class=\"%s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"><title>%.2f&#8211;%.2f: %" PRIu64
                       " %s</title></rect>",
                    series ? "bp" : "bc", x, y0 + ph - hh, w, hh, (double)b / HIST_BINS,
                    (double)(b + 1) / HIST_BINS, c,
                    series ? "poisons" : truth ? "clean images" : "images");
        }
    }
    double tx = x0 + pw * (a->thr[s] > 1 ? 1 : a->thr[s]);
    fprintf(f, "<line class=\"thr\" x1=\"%.2f\" y1=\"%g\" x2=\"%.2f\" y2=\"%g\"/>", tx, y0 - 4, tx, y0 + ph);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">0</text><text x=\"%g\" y=\"%g\" "
               "text-anchor=\"middle\">0.5</text><text x=\"%g\" y=\"%g\" text-anchor=\"middle\">1</text>",
            x0, y0 + ph + 14, x0 + pw / 2, y0 + ph + 14, x0 + pw, y0 + ph + 14);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%" PRIu64 "</text><text x=\"%g\" y=\"%g\" "
               "text-anchor=\"end\">0</text>",
            x0 - 3, y0 + 8, top, x0 - 3, y0 + ph);
    fprintf(f, "</svg><figcaption><a href=\"");
    section_href(f, s);
    fprintf(f, "\">%s</a>: threshold %.*g, %" PRIu64 " suspect%s%s</figcaption></figure>\n",
            pe_scan_name((pe_scan)s), thr_digits(s), a->thr[s], R->t[s].suspects, R->t[s].suspects == 1 ? "" : "s",
            truth ? " (red: poisons)" : "");
}

static void write_scores(rep *R) {
    fputs("<section id=\"scores\">\n<h2>Scores</h2>\n<p class=\"what\">Every image's score per scan, "
          "in 20 bins from 0 to 1 (bar heights on a log scale; hover for counts); the dashed line is "
          "the threshold.</p>\n<div class=\"grid\">\n",
          R->f);
    for (int s = 0; s < PE_SCAN_COUNT; s++)
        if (R->a->scans & BIT(s)) write_histogram(R, s);
    fputs("</div>\n</section>\n", R->f);
}

typedef struct pair {
    uint32_t cluster, id;
    uint32_t size;
} pair;

static int cmp_pair(const void *x, const void *y) {
    const pair *a = x, *b = y;
    if (a->size != b->size) return a->size < b->size ? 1 : -1;
    if (a->cluster != b->cluster) return (a->cluster > b->cluster) - (a->cluster < b->cluster);
    /* the representative first, then key order */
    int ra = a->id == a->cluster, rb = b->id == b->cluster;
    if (ra != rb) return rb - ra;
    return (a->id > b->id) - (a->id < b->id);
}

static void write_exact(rep *R) {
    FILE *f = R->f;
    ranked *v;
    size_t n;
    fputs("<h3 id=\"exact\">Exact duplicates</h3>\n", f);
    if (!(R->a->scans & BIT(PE_SCAN_EXACT))) {
        fputs("<p class=\"none\">Not run (see --scan).</p>\n", f);
        return;
    }
    if (suspects_ranked(R, PE_SCAN_EXACT, &v, &n)) return;
    const size_t m = cap_items(R, n);
    for (size_t k = 0; k < m && !R->rc; k++) {
        const rec *r = &R->a->r[v[k].id];
        fputs("<div class=\"row\">", f);
        if (card_open(R, 0, v[k].id, NULL, NULL)) {
            fprintf(f, "<span class=\"ev\">%" PRIu32 " in the set, %" PRIu64 " occurrences</span>", r->count,
                    r->occurrences);
            card_close(R);
        }
        pe_info info;
        int rc = pe_info_get(R->txn, &r->key, &info);
        if (rc && rc != PE_ENOTFOUND) R->rc = rc;
        if (!rc) {
            fputs("<ol class=\"sources\">", f);
            for (uint32_t i = 0; i < info.n; i++) {
                fputs("<li>", f);
                h(R, info.prov[i].src);
                fputs("</li>", f);
            }
            fputs("</ol>", f);
            if (info.count > info.n)
                fprintf(f, "<p class=\"note\">%" PRIu64 " more occurrences not recorded by name.</p>",
                        info.count - info.n);
        }
        fputs("</div>\n", f);
    }
    shown_note(R, m, n, "exact duplicates");
    free(v);
}

static void write_clusters(rep *R) {
    const audit *a = R->a;
    FILE *f = R->f;
    fputs("<h3 id=\"clusters\">Near-duplicate clusters</h3>\n", f);
    if (!(a->scans & BIT(PE_SCAN_PHASH))) {
        fputs("<p class=\"none\">Not run (see --scan).</p>\n", f);
        return;
    }
    size_t np = 0, nclusters = 0;
    for (size_t i = 0; i < a->n; i++) np += a->r[i].cluster != NO_ID;
    pair *v = malloc((np ? np : 1) * sizeof *v);
    if (!v) {
        R->rc = pe_fail(ENOMEM, "report: out of memory");
        return;
    }
    np = 0;
    for (uint32_t i = 0; i < a->n; i++)
        if (a->r[i].cluster != NO_ID) {
            v[np++] = (pair){a->r[i].cluster, i, a->r[i].cluster_size};
            nclusters += a->r[i].cluster == i;
        }
    qsort(v, np, sizeof *v, cmp_pair);
    fprintf(f, "<p class=\"what\">Images whose hashes are within %d bits, linked into clusters; the "
               "representative (the largest image) is kept, the others are the phash suspects. d: "
               "Hamming distance to the representative.</p>\n",
            a->o->radius);
    size_t shown = 0;
    for (size_t i = 0; i < np && shown < (size_t)R->max && !R->rc;) {
        size_t j = i;
        while (j < np && v[j].cluster == v[i].cluster) j++;
        const rec *rp = &a->r[v[i].cluster];
        fprintf(f, "<div class=\"row cluster\"><span class=\"count\">%zu images</span>", j - i);
        for (size_t k = i; k < j && k < i + 1 + COMPANIONS && !R->rc; k++) {
            const rec *r = &a->r[v[k].id];
            if (v[k].id == v[k].cluster) {
                card(R, 0, v[k].id, NULL, "representative");
            } else if (card_open(R, 0, v[k].id, NULL, NULL)) {
                fprintf(f, "<span class=\"ev\">d = %d</span>", pe_hamming(r->hash, rp->hash));
                card_close(R);
            }
        }
        if (j - i > 1 + COMPANIONS) fprintf(f, "<span class=\"more\">+%zu more</span>", j - i - 1 - COMPANIONS);
        fputs("</div>\n", f);
        shown++;
        i = j;
    }
    shown_note(R, shown, nclusters, "clusters");
    free(v);
}

static void write_duplicates(rep *R) {
    if (section_open(R, "duplicates", "Duplicates", GROUP_DUP,
                     "The same pixels more than once (exact), and images whose perceptual hashes "
                     "are close (phash)."))
        write_exact(R), write_clusters(R);
    section_close(R);
}

/* A match of a part (composite, against) beside the image it was found in. */
static void write_matches(rep *R, int s) {
    const audit *a = R->a;
    FILE *f = R->f;
    ranked *v;
    size_t n;
    if (suspects_ranked(R, s, &v, &n)) return;
    const size_t m = cap_items(R, n);
    for (size_t k = 0; k < m && !R->rc; k++) {
        const uint32_t id = v[k].id;
        const rec *r = &a->r[id];
        const int part = s == PE_SCAN_COMPOSITE ? r->comp_part : r->ag_part;
        const uint32_t match = s == PE_SCAN_COMPOSITE ? r->comp_match : r->ag_match;
        const int in_ag = s == PE_SCAN_COMPOSITE ? r->comp_in_against : 1;
        const int d = s == PE_SCAN_COMPOSITE ? r->comp_d : r->ag_d;
        const int matched = s == PE_SCAN_COMPOSITE ? r->comp_part >= 0 : r->ag_match != NO_ID;
        const mark mk = matched ? part_mark(r, part) : (mark){MARK_NONE, 0, 0, 0, 0};
        fputs("<div class=\"row\">", f);
        if (card_open(R, 0, id, &mk, NULL)) {
            fprintf(f, "<span class=\"ev\">score %.4f", r->score[s]);
            if (matched) fprintf(f, "; region %s, distance %d", part_name(r, part), d);
            else fputs("; no part matched within the score radius", f);
            fputs("</span>", f);
            card_close(R);
        }
        if (matched) {
            fputs("<span class=\"arrow\" aria-hidden=\"true\">&#8594;</span>", f);
            card(R, in_ag, match, NULL, in_ag ? "matched (--against)" : "matched");
        }
        fputs("</div>\n", f);
    }
    shown_note(R, m, n, "suspects");
    free(v);
}

static void write_composites(rep *R) {
    if (section_open(R, "composites", "Composites", BIT(PE_SCAN_COMPOSITE),
                     "A part of the image (outlined) is another image of the set or of --against, "
                     "shown beside it."))
        write_matches(R, PE_SCAN_COMPOSITE);
    section_close(R);
}

static void write_against(rep *R) {
    if (section_open(R, "against", "Against", BIT(PE_SCAN_AGAINST),
                     "The image, or the part outlined, is an image of the --against set, shown beside it."))
        write_matches(R, PE_SCAN_AGAINST);
    section_close(R);
}

/* The recurring part of r, cropped, as its own picture. */
static void part_picture(rep *R, const rec *r) {
    pe_image im = {0}, crop = {0};
    char *uri = NULL;
    const mark mk = part_mark(r, r->rec_part);
    const uint32_t w = mk.x1 - mk.x0, hh = mk.y1 - mk.y0;
    if ((R->rc = read_image(R, &r->key, &im))) goto out;
    if ((R->rc = pe_image_alloc(&crop, w, hh, im.c))) goto out;
    for (uint32_t y = 0; y < hh; y++)
        memcpy(crop.px + (size_t)y * w * im.c, im.px + ((size_t)(mk.y0 + y) * im.w + mk.x0) * im.c,
               (size_t)w * im.c);
    if ((R->rc = make_uri(&crop, &uri))) goto out;
    fputs("<figure class=\"card part\">", R->f);
    picture(R, uri, w, hh, NULL, NULL);
    fprintf(R->f, "<figcaption><span class=\"role\">the part</span><span class=\"ev\">%s, %" PRIu32
                  "&#215;%" PRIu32 "</span></figcaption></figure>\n",
            part_name(r, r->rec_part), w, hh);
out:
    free(uri);
    pe_image_free(&crop);
    pe_image_free(&im);
}

static void write_recurring(rep *R) {
    const audit *a = R->a;
    FILE *f = R->f;
    ranked *v = NULL;
    size_t n;
    uint8_t *covered = NULL;
    if (!section_open(R, "recurring", "Recurring parts", BIT(PE_SCAN_RECURRING),
                      "A part of the image (outlined, and cropped beside it) recurs in other images: "
                      "its carriers. A suspect already shown as a carrier of an earlier row is not "
                      "shown again."))
        goto out;
    if (suspects_ranked(R, PE_SCAN_RECURRING, &v, &n)) goto out;
    if (!(covered = calloc(a->n ? a->n : 1, 1))) {
        R->rc = pe_fail(ENOMEM, "report: out of memory");
        goto out;
    }
    size_t shown = 0, groups = 0;
    for (size_t k = 0; k < n && !R->rc; k++) {
        const uint32_t id = v[k].id;
        const rec *r = &a->r[id];
        if (covered[id] || r->rec_part < 0) continue;
        covered[id] = 1;
        for (uint32_t c = 0; c < r->rec_carriers && c < MAX_CARRIERS_LISTED; c++) covered[r->rec_list[c]] = 1;
        groups++;
        if (shown >= (size_t)R->max) continue;
        shown++;
        const mark mk = part_mark(r, r->rec_part);
        fputs("<div class=\"row\">", f);
        if (card_open(R, 0, id, &mk, NULL)) {
            fprintf(f, "<span class=\"ev\">%" PRIu32 " carrier%s</span>", r->rec_carriers,
                    r->rec_carriers == 1 ? "" : "s");
            card_close(R);
        }
        part_picture(R, r);
        fputs("<span class=\"arrow\" aria-hidden=\"true\">&#8594;</span>", f);
        for (uint32_t c = 0; c < r->rec_carriers && c < COMPANIONS && !R->rc; c++)
            card(R, 0, r->rec_list[c], NULL, "carrier");
        if (r->rec_carriers > COMPANIONS)
            fprintf(f, "<span class=\"more\">+%" PRIu32 " more carriers</span>", r->rec_carriers - COMPANIONS);
        fputs("</div>\n", f);
    }
    shown_note(R, shown, groups, "recurring parts");
out:
    section_close(R);
    free(covered);
    free(v);
}

/* Evidence of one image for a scan shown as a plain list of cards. */
static void evidence(rep *R, const rec *r, int s) {
    const audit *a = R->a;
    const pe_quality *q = &r->q;
    FILE *f = R->f;
    switch (s) {
    case PE_SCAN_DARK: fprintf(f, "99th percentile of luma %.0f", q->p99); break;
    case PE_SCAN_LIGHT: fprintf(f, "1st percentile of luma %.0f", q->p01); break;
    case PE_SCAN_BLURRY: fprintf(f, "Laplacian variance %.4g", q->lap_var); break;
    case PE_SCAN_LOWINFO: fprintf(f, "entropy %.3g bits", q->entropy); break;
    case PE_SCAN_ASPECT: fprintf(f, "aspect %.3g:1", r->w > r->h ? (double)r->w / r->h : (double)r->h / r->w); break;
    case PE_SCAN_ODDSIZE: fprintf(f, "area %.4g&#215; the median (%.0f)", (double)r->w * r->h / a->median_area, a->median_area); break;
    case PE_SCAN_GRAYSCALE:
        if (r->c == 1) fputs("1 channel", f);
        else fprintf(f, "mean channel difference %.3g", q->chroma);
        break;
    case PE_SCAN_SEAM:
        fprintf(f, "%s line at %s = %" PRIu32 ": %.0f%% of %s jump", q->seam_vertical ? "vertical" : "horizontal",
                q->seam_vertical ? "x" : "y", q->seam_at, 100.0 * q->seam, q->seam_vertical ? "rows" : "columns");
        break;
    case PE_SCAN_SIZE: {
        const double same = floor((1.0 - r->score[s]) * a->modal_n + 0.5);
        fprintf(f, "%.0f images of this size; the most common, %" PRIu32 "&#215;%" PRIu32 ", has %" PRIu32, same,
                a->modal_w, a->modal_h, a->modal_n);
        break;
    }
    default: break;
    }
}

static void write_list(rep *R, int s) {
    const audit *a = R->a;
    FILE *f = R->f;
    ranked *v;
    size_t n;
    if (!(a->scans & BIT(s))) {
        fputs("<p class=\"none\">Not run (see --scan).</p>\n", f);
        return;
    }
    if (suspects_ranked(R, s, &v, &n)) return;
    const size_t m = cap_items(R, n);
    if (m) fputs("<div class=\"row list\">", f);
    for (size_t k = 0; k < m && !R->rc; k++) {
        const rec *r = &a->r[v[k].id];
        mark mk = {MARK_NONE, 0, 0, 0, 0};
        if (s == PE_SCAN_SEAM) {
            if (r->q.seam_vertical) mk = (mark){MARK_LINE, r->q.seam_at, 0, r->q.seam_at, r->h};
            else mk = (mark){MARK_LINE, 0, r->q.seam_at, r->w, r->q.seam_at};
        }
        if (card_open(R, 0, v[k].id, &mk, NULL)) {
            fprintf(f, "<span class=\"ev\">score %.4f; ", r->score[s]);
            evidence(R, r, s);
            fputs("</span>", f);
            card_close(R);
        }
    }
    if (m) fputs("</div>\n", f);
    shown_note(R, m, n, "suspects");
    free(v);
}

static void write_seams(rep *R) {
    if (section_open(R, "seams", "Seams", BIT(PE_SCAN_SEAM),
                     "A straight discontinuity across the whole image (drawn in blue)."))
        write_list(R, PE_SCAN_SEAM);
    section_close(R);
}

static void write_size(rep *R) {
    if (section_open(R, "size", "Size", BIT(PE_SCAN_SIZE),
                     "The baseline the poison scans must beat: a size rare in the set."))
        write_list(R, PE_SCAN_SIZE);
    section_close(R);
}

/* ---- the embedding scans ---- */

/* Up to COMPANIONS of image id's neighbours, nearest first, each with
 * its similarity. */
static void neighbour_cards(rep *R, uint32_t id) {
    const audit *a = R->a;
    FILE *f = R->f;
    const int m = a->k < COMPANIONS ? a->k : COMPANIONS;
    if (!a->k) return;
    fputs("<span class=\"arrow\" aria-hidden=\"true\">&#8594;</span>", f);
    for (int t = 0; t < m && !R->rc; t++) {
        const size_t at = (size_t)id * (size_t)a->k + (size_t)t;
        if (card_open(R, 0, a->knn[at], NULL, t ? NULL : "nearest")) {
            fprintf(f, "<span class=\"ev\">similarity %.6f</span>", a->ksim[at]);
            card_close(R);
        }
    }
    if (a->k > m) fprintf(f, "<span class=\"more\">+%d more neighbours</span>", a->k - m);
}

static void write_neighbour_rows(rep *R, int s) {
    const audit *a = R->a;
    FILE *f = R->f;
    ranked *v;
    size_t n;
    if (suspects_ranked(R, s, &v, &n)) return;
    const size_t m = cap_items(R, n);
    for (size_t k = 0; k < m && !R->rc; k++) {
        const uint32_t id = v[k].id;
        const rec *r = &a->r[id];
        fputs("<div class=\"row\">", f);
        if (card_open(R, 0, id, NULL, NULL)) {
            fprintf(f, "<span class=\"ev\">score %.6f; ", r->score[s]);
            if (s == PE_SCAN_OUTLIER) {
                fprintf(f, "mean cosine distance to its %d nearest neighbours", a->k);
            } else {
                fprintf(f, "%d of %d labeled neighbours disagree; most are <q>", r->mis_disagree,
                        r->mis_labeled);
                label_text(R, r->mis_major);
                fputs("</q>", f);
            }
            fputs("</span>", f);
            card_close(R);
        }
        neighbour_cards(R, id);
        fputs("</div>\n", f);
    }
    shown_note(R, m, n, "suspects");
    free(v);
}

static void write_outliers(rep *R) {
    if (section_open(R, "outliers", "Outliers", BIT(PE_SCAN_OUTLIER),
                     "Far from the other images in the encoder's feature space: the mean cosine "
                     "distance to the nearest neighbours, shown beside the image, nearest first."))
        write_neighbour_rows(R, PE_SCAN_OUTLIER);
    section_close(R);
}

static void write_mislabels(rep *R) {
    if (section_open(R, "mislabels", "Label disagreements", BIT(PE_SCAN_MISLABEL),
                     "Most of the image's nearest neighbours in feature space (beside it, with "
                     "their labels) carry another label than its own."))
        write_neighbour_rows(R, PE_SCAN_MISLABEL);
    section_close(R);
}

static void write_embdup(rep *R) {
    const audit *a = R->a;
    FILE *f = R->f;
    pair *v = NULL;
    if (!section_open(R, "embdup", "Near duplicates in feature space", BIT(PE_SCAN_EMBDUP),
                      "Images whose features are at least the threshold's cosine similarity apart, "
                      "linked into clusters; the representative (the largest image) is kept, the "
                      "others are the embdup suspects. s: similarity to the representative."))
        goto out;
    size_t np = 0, nclusters = 0;
    for (size_t i = 0; i < a->n; i++) np += a->r[i].ecluster != NO_ID;
    if (!(v = malloc((np ? np : 1) * sizeof *v))) {
        R->rc = pe_fail(ENOMEM, "report: out of memory");
        goto out;
    }
    np = 0;
    for (uint32_t i = 0; i < a->n; i++)
        if (a->r[i].ecluster != NO_ID) {
            v[np++] = (pair){a->r[i].ecluster, i, a->r[i].ecluster_size};
            nclusters += a->r[i].ecluster == i;
        }
    qsort(v, np, sizeof *v, cmp_pair);
    size_t shown = 0;
    for (size_t i = 0; i < np && shown < (size_t)R->max && !R->rc;) {
        size_t j = i;
        while (j < np && v[j].cluster == v[i].cluster) j++;
        const float *fr = a->feat + (size_t)v[i].cluster * (size_t)a->dim;
        fprintf(f, "<div class=\"row cluster\"><span class=\"count\">%zu images</span>", j - i);
        for (size_t k = i; k < j && k < i + 1 + COMPANIONS && !R->rc; k++) {
            if (v[k].id == v[k].cluster) {
                card(R, 0, v[k].id, NULL, "representative");
            } else if (card_open(R, 0, v[k].id, NULL, NULL)) {
                fprintf(f, "<span class=\"ev\">s = %.6f</span>",
                        pe_knn_dot(a->feat + (size_t)v[k].id * (size_t)a->dim, fr, a->dim));
                card_close(R);
            }
        }
        if (j - i > 1 + COMPANIONS) fprintf(f, "<span class=\"more\">+%zu more</span>", j - i - 1 - COMPANIONS);
        fputs("</div>\n", f);
        shown++;
        i = j;
    }
    shown_note(R, shown, nclusters, "clusters");
out:
    section_close(R);
    free(v);
}

static void write_quality(rep *R) {
    static const char *const what[] = {
        [PE_SCAN_DARK] = "Even the brightest pixels are dark.",
        [PE_SCAN_LIGHT] = "Even the darkest pixels are light.",
        [PE_SCAN_BLURRY] = "Little high-frequency detail (variance of the Laplacian).",
        [PE_SCAN_LOWINFO] = "Few grey levels (entropy of the luma histogram).",
        [PE_SCAN_ASPECT] = "A long, thin image.",
        [PE_SCAN_ODDSIZE] = "Far smaller or larger than the median image.",
        [PE_SCAN_GRAYSCALE] = "Gray in a colour set.",
    };
    if (section_open(R, "quality", "Quality", GROUP_QUALITY, "Images unfit for training, by each measure.")) {
        for (int s = PE_SCAN_DARK; s <= PE_SCAN_GRAYSCALE && !R->rc; s++) {
            fprintf(R->f, "<h3 id=\"quality-%s\">%s</h3>\n<p class=\"what\">%s</p>\n", pe_scan_name((pe_scan)s),
                    pe_scan_name((pe_scan)s), what[s]);
            write_list(R, s);
        }
    }
    section_close(R);
}

/* A JSON string that may sit inside the <script> element. */
static void json_s(rep *R, const char *s) {
    fputc('"', R->f);
    pe_audit_json_str(R->f, s, 1);
    fputc('"', R->f);
}

static void json_image(rep *R, int ag, uint32_t id, int *first) {
    const audit *a = R->a;
    FILE *f = R->f;
    fputs(*first ? "\n{\"key\":\"" : ",\n{\"key\":\"", f);
    *first = 0;
    put_hex(f, key_of(R, ag, id));
    fputs("\",\"set\":", f);
    json_s(R, ag ? a->o->against : set_name(a));
    if (!ag) {
        const int32_t l = a->r[id].label;
        if (l == PE_LABEL_NONE) fputs(",\"label\":null", f);
        else fprintf(f, ",\"label\":%" PRId32, l);
        if (l >= 0 && (uint32_t)l < R->nclasses && R->classes[l][0]) {
            fputs(",\"class\":", f);
            json_s(R, R->classes[l]);
        }
    }
    fputs(",\"sources\":[", f);
    pe_info info;
    int rc = pe_info_get(R->txn, key_of(R, ag, id), &info);
    if (rc && rc != PE_ENOTFOUND) R->rc = rc;
    for (uint32_t i = 0; !rc && i < info.n; i++) {
        if (i) fputc(',', f);
        json_s(R, info.prov[i].src);
    }
    fputs("]}", f);
}

/* The data block: the summary (as --json prints it) and the shown images'
 * names, for programs that read the page. */
static void write_data(rep *R) {
    const audit *a = R->a;
    FILE *f = R->f;
    fputs("<script type=\"application/json\" id=\"pe-audit-data\">{\"summary\":", f);
    pe_audit_json_summary(f, a, R->t, R->npos, 1);
    fputs(",\"images\":[", f);
    int first = 1;
    for (uint32_t i = 0; i < a->n && !R->rc; i++)
        if (R->shown[i]) json_image(R, 0, i, &first);
    for (uint32_t i = 0; i < a->na && !R->rc; i++)
        if (R->shown_ag[i]) json_image(R, 1, i, &first);
    fputs("]}</script>\n", f);
}

static const char style[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#1d1d1f;background:#fff}"
    "h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}"
    "h3{margin-bottom:.2em}nav a{margin-right:.8em}q{quotes:'\\201c' '\\201d'}"
    "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}tr.union{font-weight:bold}"
    ".what{color:#444;margin-top:0}.none,.note{color:#666;font-style:italic}"
    ".row{display:inline-flex;flex-wrap:wrap;align-items:flex-start;gap:10px;margin:4px 8px 4px 0;"
    "padding:6px;border:1px solid #e2e2e2;border-radius:4px;vertical-align:top}.row.list{display:flex}"
    ".card{margin:0;width:112px;font-size:11px;display:flex;flex-direction:column}"
    ".card figcaption>span,.card figcaption>code{display:block}"
    ".im{position:relative;background:#eee;border:1px solid #bbb}"
    ".im img{display:block;width:100%;height:100%;image-rendering:pixelated}"
    ".im svg{position:absolute;left:0;top:0;width:100%;height:100%;overflow:visible}"
    ".box{fill:none;stroke:#00d0ff;stroke-width:2}.line{stroke:#00d0ff;stroke-width:2}"
    ".key{font-size:9px;word-break:break-all;color:#333}.src{word-break:break-all;color:#555}"
    ".role{font-weight:bold}.badge{color:#fff;background:#c00;padding:0 4px;border-radius:3px;"
    "width:max-content}.poison .im{outline:3px solid #c00}.ev{color:#000}"
    ".more,.count{align-self:center;color:#666}.arrow{align-self:center;font-size:22px;color:#888}"
    ".sources{font-size:12px;word-break:break-all;max-width:60em}"
    ".grid{display:flex;flex-wrap:wrap;gap:12px}.hist{margin:0}"
    ".hist svg text{font-size:10px;fill:#333}.frame{fill:#fafafa;stroke:#ccc}"
    ".bc{fill:#4a78b0}.bp{fill:#d0102a}.thr{stroke:#000;stroke-dasharray:4 3}";

static void write_page(rep *R) {
    const audit *a = R->a;
    const pe_audit_opts *o = a->o;
    FILE *f = R->f;
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
          "'unsafe-inline'; img-src data:\">\n<meta name=\"referrer\" content=\"no-referrer\">\n"
          "<meta name=\"generator\" content=\"pe-audit " PE_VERSION_STRING "\">\n<title>pe-audit: ",
          f);
    h(R, set_name(a));
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<header>\n<h1>pe-audit: <q>", style);
    h(R, set_name(a));
    fprintf(f, "</q></h1>\n<p id=\"about\">%zu images in <q>", a->n);
    h(R, set_name(a));
    fputs("</q>", f);
    if (o->against) {
        fprintf(f, ", %zu in --against <q>", a->na);
        h(R, o->against);
        fputs("</q>", f);
    }
    fprintf(f, "; hash %s, radius %d, part radius %d, score radius %d", pe_phash_mode_name(o->mode),
            o->radius, o->part_radius, o->score_radius);
    if (a->dim) {
        fputs("; encoder <q>", f);
        h(R, o->encoder->path);
        fprintf(f, "</q> (%s, %d features), %d neighbours", a->encoder_arch, a->dim, a->k);
    }
    if (o->truth) {
        fprintf(f, "; truth: %" PRIu64 " poisons (", R->npos);
        if (o->truth == 1) fputs("pe-craft provenance", f);
        else h(R, o->truth_file);
        fputs(")", f);
    }
    fprintf(f, ". Each section shows at most %d items, highest scores first.</p>\n", R->max);
    fputs("<nav><a href=\"#summary\">summary</a><a href=\"#scores\">scores</a><a href=\"#duplicates\">"
          "duplicates</a><a href=\"#composites\">composites</a><a href=\"#recurring\">recurring</a><a "
          "href=\"#seams\">seams</a><a href=\"#against\">against</a><a href=\"#size\">size</a><a "
          "href=\"#quality\">quality</a><a href=\"#outliers\">outliers</a><a href=\"#embdup\">"
          "embdup</a><a href=\"#mislabels\">mislabels</a></nav>\n</header>\n<main>\n",
          f);
    write_summary(R);
    write_scores(R);
    if (!R->rc) write_duplicates(R);
    if (!R->rc) write_composites(R);
    if (!R->rc) write_recurring(R);
    if (!R->rc) write_seams(R);
    if (!R->rc) write_against(R);
    if (!R->rc) write_size(R);
    if (!R->rc) write_quality(R);
    if (!R->rc) write_outliers(R);
    if (!R->rc) write_embdup(R);
    if (!R->rc) write_mislabels(R);
    fputs("</main>\n", f);
    if (!R->rc) write_data(R);
    fputs("</body>\n</html>\n", f);
}

static void rep_free(rep *R) {
    for (size_t i = 0; R->uri && i < R->a->n; i++) free(R->uri[i]);
    for (size_t i = 0; R->uri_ag && i < R->a->na; i++) free(R->uri_ag[i]);
    free(R->uri);
    free(R->uri_ag);
    free(R->shown);
    free(R->shown_ag);
    pe_cli_free_classes(R->classes, R->nclasses);
    if (R->txn) pe_txn_abort(R->txn);
}

int pe_audit_report_commit(pe_audit_report *rf, const audit *a, const tally *t, uint64_t npos,
                           pe_store *st) {
    rep R;
    memset(&R, 0, sizeof R);
    R.a = a;
    R.t = t;
    R.npos = npos;
    R.max = a->o->report_max;
    int rc = 0;
    const char *step = "write";
    PE_ASSERT(rf->fd >= 0 && rf->tmp);
    R.uri = calloc(a->n ? a->n : 1, sizeof *R.uri);
    R.uri_ag = calloc(a->na ? a->na : 1, sizeof *R.uri_ag);
    R.shown = calloc(a->n ? a->n : 1, 1);
    R.shown_ag = calloc(a->na ? a->na : 1, 1);
    if (!R.uri || !R.uri_ag || !R.shown || !R.shown_ag) {
        rc = pe_fail(ENOMEM, "report: out of memory");
        goto out;
    }
    if ((rc = pe_txn_begin(st, 0, &R.txn))) goto out;
    if (a->o->set) {
        pe_set_hdr hdr;
        rc = pe_set_get(R.txn, a->o->set, &hdr);
        if (rc == PE_ENOTFOUND) rc = pe_fail(rc, "report: set '%s' was removed during the audit", a->o->set);
        if (rc || (rc = pe_cli_copy_classes(&hdr, &R.classes, &R.nclasses))) goto out;
    }
    if (!(R.f = fdopen(rf->fd, "w"))) {
        rc = pe_fail(errno, "report %s: %s", rf->path, strerror(errno));
        goto out;
    }
    rf->fd = -1; /* R.f owns it */
    setvbuf(R.f, NULL, _IOFBF, 1 << 16);
    write_page(&R);
    if ((rc = R.rc)) {
        rc = pe_fail_prefix(rc, "report %s", rf->path);
        goto out;
    }
    errno = 0;
    if (fflush(R.f) == EOF || ferror(R.f)) {
        rc = errno ? errno : EIO;
        goto os_fail;
    }
    step = "fsync";
    if (fsync(fileno(R.f)) != 0) {
        rc = errno;
        goto os_fail;
    }
    step = "close";
    rc = fclose(R.f) != 0 ? errno : 0;
    R.f = NULL;
    if (rc) goto os_fail;
    step = "rename";
    if (rename(rf->tmp, rf->path) != 0) {
        rc = errno;
        goto os_fail;
    }
    free(rf->tmp);
    rf->tmp = NULL;
    step = "fsync of the folder";
    if ((rc = sync_dir(rf->path))) goto os_fail;
    goto out;
os_fail:
    rc = pe_fail(rc, "report %s: %s: %s", rf->path, step, strerror(rc));
out:
    if (R.f) fclose(R.f);
    rep_free(&R);
    return rc;
}
