/*
 * audit_impl.h - what lib/audit.c (the scans) and lib/report.c (the HTML
 * report) share: the per-image record, the run's state and the per-scan
 * tallies. Internal to libpe: programs and tests use audit.h.
 *
 * Not for: anything a caller of pe_audit_run sees; the layout may change
 * with the scans.
 */
#ifndef PE_AUDIT_IMPL_H
#define PE_AUDIT_IMPL_H

#include <stdint.h>
#include <stdio.h>

#include "audit.h"
#include "store.h"

#define BIT(s) (1u << (s))
#define GROUP_DUP (BIT(PE_SCAN_EXACT) | BIT(PE_SCAN_PHASH))
#define GROUP_QUALITY                                                                \
    (BIT(PE_SCAN_DARK) | BIT(PE_SCAN_LIGHT) | BIT(PE_SCAN_BLURRY) | BIT(PE_SCAN_LOWINFO) | \
     BIT(PE_SCAN_ASPECT) | BIT(PE_SCAN_ODDSIZE) | BIT(PE_SCAN_GRAYSCALE))
#define GROUP_POISON                                                                 \
    (BIT(PE_SCAN_COMPOSITE) | BIT(PE_SCAN_RECURRING) | BIT(PE_SCAN_SEAM) |            \
     BIT(PE_SCAN_SIZE) | BIT(PE_SCAN_AGAINST))
#define GROUP_EMBED (BIT(PE_SCAN_OUTLIER) | BIT(PE_SCAN_EMBDUP) | BIT(PE_SCAN_MISLABEL))
#define GROUP_ALL ((1u << PE_SCAN_COUNT) - 1)
/* The poison scans proper, whose union the summary scores ("size" is the
 * baseline they are measured against). */
#define POISON_PROPER \
    (BIT(PE_SCAN_COMPOSITE) | BIT(PE_SCAN_RECURRING) | BIT(PE_SCAN_SEAM) | BIT(PE_SCAN_AGAINST))

#define NO_ID UINT32_MAX
#define MAX_CARRIERS_LISTED 16

/* One audited image: what the pass over the set measured, its scores and
 * the evidence the outputs print. Ids are indexes into audit.r (key
 * order), or into audit.ak for images of --against. */
typedef struct rec {
    pe_key key;
    uint32_t count;
    int32_t label;
    uint32_t w, h, c;
    uint64_t occurrences;
    uint32_t nsrc;
    uint64_t hash;
    uint8_t mini[64]; /* 8x8 block means of its 32x32 thumbnail */
    uint8_t truth;
    uint8_t mine;     /* in the audited shard (1 when not sharding) */
    uint8_t fresh;    /* measured this run: to be kept in the store */
    pe_quality q;
    uint32_t part0;   /* first of its parts in the part arrays */
    uint8_t nparts;   /* informative parts hashed */
    double score[PE_SCAN_COUNT];
    uint8_t suspect[PE_SCAN_COUNT];
    /* evidence */
    uint32_t near_id;           /* phash: nearest other image */
    int near_d;
    uint32_t cluster;           /* representative's id, or NO_ID */
    uint32_t cluster_size;
    int8_t comp_part;           /* composite: index in pe_audit_parts order */
    uint32_t comp_match;        /* id in the set, or in the against list */
    uint8_t comp_in_against;
    int comp_d;
    int8_t rec_part;            /* recurring */
    uint32_t rec_carriers;
    uint32_t rec_list[MAX_CARRIERS_LISTED];
    int8_t ag_part;             /* against: -1 the whole image */
    uint32_t ag_match;
    int ag_d;
    uint32_t ecluster;          /* embdup: representative's id, or NO_ID */
    uint32_t ecluster_size;
    int32_t mis_major;          /* mislabel: the neighbours' commonest label */
    uint16_t mis_disagree;      /* neighbours with another label */
    uint16_t mis_labeled;       /* neighbours with a label */
} rec;

typedef struct audit {
    const pe_audit_opts *o;
    unsigned scans;
    rec *r;
    size_t n, cap;
    /* parts: hash, owner record, index in pe_audit_parts order */
    uint64_t *ph;
    uint32_t *powner;
    uint8_t *pidx;
    uint8_t *pmini;  /* (np, 64) 8x8 block means of each part's thumbnail */
    uint8_t *precur; /* (np) 1: the recurring scan compares this part */
    size_t np, pcap;
    size_t nfresh;   /* records measured from pixels this run */
    size_t nmine;    /* records in the audited shard */
    size_t nseen;    /* entries read, in the shard or not */
    /* against */
    pe_key *ak;
    uint64_t *ah;
    uint8_t *amini;   /* (na, 64) their block means */
    size_t na, acap;
    /* truth keys from a file, sorted */
    pe_key *tk;
    size_t nt, tcap;
    int colour_set;
    uint32_t modal_w, modal_h, modal_n;
    double median_area;
    double thr[PE_SCAN_COUNT];
    /* the embedding scans */
    int dim;                  /* feature dimension */
    int k;                    /* neighbours per image: min(o->k, n - 1) */
    float *feat;              /* (n, dim) L2-normalised features */
    uint32_t *knn;            /* (n, k) neighbour ids, nearest first */
    double *ksim;             /* (n, k) their cosine similarities */
    char **classes;           /* the audited set's class names (copies) */
    uint32_t nclasses;
    char encoder_arch[64];    /* "small", "resnet18 x0.25": for the summary */
    size_t nlabeled;          /* images with a label */
    int enc_channels;         /* the encoder's input channels; 0: none */
} audit;

/* Per scan (index PE_SCAN_COUNT: the union of the poison scans proper). */
typedef struct tally {
    uint64_t suspects, tp, fp, fn;
    double auc; /* -1: undefined or no truth */
} tally;

/* The inside of a JSON string (pe_escape's JSON form); with in_script
 * also '<', '>' and '&' as \u003c, \u003e, \u0026, so that neither
 * "</script" nor "<!--" can occur in it inside an HTML <script> element. */
void pe_audit_json_str(FILE *f, const char *s, int in_script);

/* The summary as one JSON object (no newline): what --json prints last.
 * in_script: strings also escape '<', '>' and '&' (as \u003c...), so the
 * object can sit inside an HTML <script> element. */
void pe_audit_json_summary(FILE *f, const audit *a, const tally *t, uint64_t npos, int in_script);

/* The HTML report file. pe_audit_report_open creates, before the scans,
 * an empty temporary file beside path (so that a path that cannot be
 * written fails before any work); pe_audit_report_commit writes the
 * report into it and renames it over path; pe_audit_report_discard
 * removes the temporary file if it is still there and frees rf (always
 * called, after commit too). */
typedef struct pe_audit_report {
    const char *path; /* borrowed from the options */
    char *tmp;        /* malloc'd; NULL when none was created */
    int fd;           /* -1 when closed */
} pe_audit_report;

/* Returns 0 or an errno (EISDIR: path is a folder; ENOENT: an empty path
 * or a missing folder; ...) with a message naming path. */
int pe_audit_report_open(pe_audit_report *rf, const char *path);
/* Writes the report of a finished audit (scores, suspects and t set) and
 * renames it into place. Reads the shown images' pixels, provenance and
 * the set's class names from st. Returns 0, a store error or an errno;
 * on failure nothing is left at path that was not there before. */
int pe_audit_report_commit(pe_audit_report *rf, const audit *a, const tally *t, uint64_t npos,
                           pe_store *st);
void pe_audit_report_discard(pe_audit_report *rf);

#endif
