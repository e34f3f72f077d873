/*
 * audit.h - pe-audit: scans of a set of the store for duplicates, near
 * duplicates, poor images and PoisonedEncoder-style poisons (composites of
 * a target and a reference), every scan scoring every image, and the
 * scans' self-scoring against known poisons.
 *
 * Scores: each scan gives each image a score in [0, 1], higher meaning
 * more suspect, and an image is a suspect of the scan when its score is at
 * least the scan's threshold. The measures, their scores and the default
 * thresholds are in docs/man/pe-audit.1; lib/audit.c computes them.
 *
 * Not for: option parsing (cmd/pe-audit.c), the hash itself (phash.h), or
 * changing sets (pipe the suspects into pe-inject --remove).
 *
 * Memory: one record per image (about 300 bytes) plus 8 + 16 bytes per
 * hash indexed (the image's and up to PE_AUDIT_MAX_PARTS parts' hashes);
 * pixels are read one image at a time. Read transactions are renewed
 * every 4096 entries, so a long audit does not pin the store's old pages.
 * The embedding scans add the features (4 d bytes an image, and as much
 * on the backend), 12 k bytes an image for the neighbours, and one block
 * of products (knn.h); their search compares every pair of images, so
 * o->embed_max bounds the images they take.
 */
#ifndef PE_AUDIT_H
#define PE_AUDIT_H

#include <stdio.h>

#include "eval.h"
#include "phash.h"
#include "store.h"

typedef enum pe_scan {
    PE_SCAN_EXACT = 0, /* the same pixels more than once */
    PE_SCAN_PHASH,     /* near duplicates by perceptual hash */
    PE_SCAN_DARK,
    PE_SCAN_LIGHT,
    PE_SCAN_BLURRY,
    PE_SCAN_LOWINFO,
    PE_SCAN_ASPECT,
    PE_SCAN_ODDSIZE,
    PE_SCAN_GRAYSCALE,
    PE_SCAN_COMPOSITE, /* a part of the image is another image */
    PE_SCAN_RECURRING, /* a part of the image recurs in other images */
    PE_SCAN_SEAM,      /* a straight line across the whole image */
    PE_SCAN_SIZE,      /* baseline: a size rare in the set */
    PE_SCAN_AGAINST,   /* the image or a part of it is in --against SET */
    PE_SCAN_OUTLIER,   /* far from its nearest neighbours in feature space */
    PE_SCAN_EMBDUP,    /* near duplicates in feature space */
    PE_SCAN_MISLABEL,  /* its neighbours in feature space carry other labels */
    PE_SCAN_COUNT
} pe_scan;

/* Scan name ("exact", "phash", ...). */
const char *pe_scan_name(pe_scan s);
/* Parses a comma-separated list of scan names and groups ("dup": exact,
 * phash; "quality": dark .. grayscale; "poison": composite, recurring,
 * seam, size, against; "embed": outlier, embdup, mislabel; "all") into a
 * bit mask (1u << pe_scan).
 * PE_EUSAGE with a message otherwise. */
int pe_scan_list_parse(const char *s, unsigned *mask);

#define PE_AUDIT_MAX_PARTS 24
#define PE_AUDIT_MAX_K 256 /* neighbours per image, at most */

typedef struct pe_audit_opts {
    const char *set;      /* the audited set, or NULL: keys on `in` */
    const char *against;  /* set whose images are looked for, or NULL */
    unsigned scans;       /* mask of pe_scan bits */
    pe_phash_mode mode;   /* hash mode (default PE_PHASH_PE) */
    int radius;           /* phash: near-duplicate Hamming radius (8) */
    int part_radius;      /* composite, recurring, against: radius (2) */
    int score_radius;     /* distances searched for scores (12) */
    double threshold[PE_SCAN_COUNT]; /* see pe_audit_opts_default */
    int json;             /* NDJSON findings and summary on out */
    int all;              /* print every image's score for every scan */
    int truth;            /* 0 none, 1 pe-craft provenance, 2 truth_file */
    const char *truth_file; /* key lines ("-": in) */
    int quiet;            /* no summary on err */
    const char *report;   /* HTML report written here (atomically), or NULL */
    int report_max;       /* report: items shown per section (40) */
    const char *prog;     /* for messages */
    /* the embedding scans (outlier, embdup, mislabel): they run only with
     * an encoder */
    const pe_encoder_opts *encoder; /* NULL: none (enc.prog is set from prog) */
    int threads;          /* compute threads; 0 = online CPUs */
    int k;                /* neighbours (10) */
    size_t embed_max;     /* images above which they are refused (100000) */
    /* the per-image records kept in the store (pe_derived_*): measures,
     * hashes and part hashes, so a later audit reads pixels only of the
     * images it has not seen */
    int store_index;      /* PE_AUDIT_INDEX_* (default READWRITE) */
    int index_only;       /* compute and keep the records; no scans, no output */
    /* --shard i/n: audit only the images whose key's first 64 bits (big
     * endian, the first 16 hex digits) are i modulo n; the pairwise
     * scans still search the whole set. shard_n 0: no sharding. */
    uint32_t shard_i, shard_n;
} pe_audit_opts;

enum {
    PE_AUDIT_INDEX_OFF = 0,       /* compute everything from pixels */
    PE_AUDIT_INDEX_READ = 1,      /* use kept records, keep none (read-only store) */
    PE_AUDIT_INDEX_READWRITE = 2, /* use them, and keep the new ones */
};

/* The shard of a key: its first 8 bytes as a big-endian integer modulo n. */
uint32_t pe_audit_shard_of(const pe_key *key, uint32_t n);
/* The bytes of an image's kept record (exposed for the tests): what
 * collect keeps. See docs/store-format.md. */
#define PE_AUDIT_RECORD_VERSION 2

/* Defaults: every scan (against only when o->against is set at run
 * time, the embedding scans only with o->encoder, mislabel only on a set
 * with labels), pe hash, radius 8, part radius 2, score radius 12;
 * thresholds: exact 0.5, phash 1 - radius/64 (set from radius at run
 * time unless given), dark 0.87, light 0.87, blurry 0.5, lowinfo 0.875,
 * aspect 0.67, oddsize 0.667, grayscale 0.9, composite and against 1 -
 * part_radius/64 (likewise), recurring 0.75, seam 0.95, size 0.9,
 * outlier and embdup derived from the set's scores
 * (pe_audit_outlier_threshold, pe_audit_embdup_threshold), mislabel 0.9;
 * no report, 40 items per report section; k 10, embed_max 100000. A
 * threshold below 0 (PE_AUDIT_THRESHOLD_AUTO) means "derive it". */
#define PE_AUDIT_THRESHOLD_AUTO (-1.0)
void pe_audit_opts_default(pe_audit_opts *o);

/* Per-image measures, exposed for the tests. im is any image (1 or 3
 * channels). */
typedef struct pe_quality {
    double p01, p99;    /* 1st and 99th percentile of luma, 0..255 */
    double entropy;     /* bits, of the 256-bin luma histogram */
    double lap_var;     /* variance of the 4-neighbour Laplacian of luma
                           over interior pixels; -1 when w or h < 3 */
    double chroma;      /* mean max channel difference; 0 for gray */
    double seam;        /* best line's fraction of jump rows (see man) */
    int seam_vertical;  /* 1: the line is a column boundary */
    uint32_t seam_at;   /* columns (or rows) before the line */
} pe_quality;
int pe_audit_quality(const pe_image *im, pe_quality *q);

/* The parts of a w x h image the composite scans hash: halves at the
 * split fractions 1/3, 2/5, 1/2, 3/5, 2/3 along each axis, then the four
 * quadrants; parts narrower than 4 pixels are left out. Fills up to
 * PE_AUDIT_MAX_PARTS boxes (x0, y0, x1, y1) and names ("left@1/2", ...,
 * static strings) and returns how many. */
typedef struct pe_part {
    uint32_t x0, y0, x1, y1;
    const char *name;
} pe_part;
int pe_audit_parts(uint32_t w, uint32_t h, pe_part *parts);

/* The embedding scans' scores of one image from its k neighbours (most
 * similar first: sim, and their ids nbr), exposed for the tests.
 *
 * outlier: the mean cosine distance 1 - sim over the k neighbours,
 * clamped to [0, 1]; 0 when k is 0.
 *
 * mislabel: of the neighbours with a label (labels[nbr[t]] !=
 * PE_LABEL_NONE), the fraction whose label differs from `label`, each
 * neighbour counting one (unweighted); 0 for an unlabeled image or one
 * with no labeled neighbour. *major gets the label most of those
 * neighbours carry (ties: the nearest one's), or PE_LABEL_NONE; *disagree
 * and *labeled the two counts. */
double pe_audit_outlier_score(const double *sim, int k);
double pe_audit_mislabel_score(const uint32_t *nbr, int k, const int32_t *labels, int32_t label,
                               int32_t *major, int *disagree, int *labeled);
/* The embdup scan's default threshold from every image's cosine distance
 * 1 - s to its nearest neighbour: 1 - median / 10 (an image whose
 * nearest neighbour is ten times closer than the median image's),
 * within [0, 1]. dist is reordered. 1 when n is 0. */
double pe_audit_embdup_threshold(double *dist, size_t n);
/* The outlier scan's default threshold from every image's score: the
 * median plus 3.5 robust standard deviations (Iglewicz and Hoaglin's
 * modified z-score above 3.5: median + 3.5 MAD / 0.6745; when the MAD is
 * 0, 1.253314 times the mean absolute deviation stands for MAD / 0.6745),
 * at most 1. s is reordered. 1 when n is 0. */
double pe_audit_outlier_threshold(double *s, size_t n);

/* Mann-Whitney ROC AUC of scores s[0..n) against labels pos[0..n) (ties
 * count a half). Returns -1 when either class is empty. */
double pe_audit_auc(const double *s, const uint8_t *pos, size_t n);

/* Runs the scans and prints: suspects as KEY\tSCAN\tSCORE lines (or
 * NDJSON with o->json; every image and scan with o->all) on out, in key
 * order, scans in pe_scan order; the summary (per scan: suspects,
 * threshold, and with truth: precision, recall, ROC AUC) on err, and with
 * o->json also as the last NDJSON line on out. Everything is computed
 * before the first line is printed. With o->report, the HTML report
 * (docs/man/pe-audit.1) goes to a temporary file beside o->report,
 * created before the scans so that a path that cannot be written fails
 * first, and renamed over it before the first line is printed; on any
 * failure it is removed and nothing is printed on out. Returns 0,
 * PE_ENOTFOUND (unknown or empty set, a key not in the store), PE_EFORMAT
 * (bad key line), a store error, an errno (the report file: EISDIR for a
 * folder, ENOENT for a missing one, a write error), or ENOMEM; messages
 * name the set, key, line or file. */
int pe_audit_run(pe_store *st, const pe_audit_opts *o, FILE *in, FILE *out,
                 FILE *err);

#endif
