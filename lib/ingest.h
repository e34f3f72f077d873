/*
 * ingest.h - the ingest pipeline behind pe-ingest: enumerate sources in
 * order, decode and canonicalise on worker threads, store and add to a set
 * on one writer thread in committed batches, and report each image (in input
 * order) only after its batch committed.
 *
 * Not for: option parsing or exit codes (cmd/pe-ingest.c), codecs
 * (formats/), the store's bytes (store.c).
 */
#ifndef PE_INGEST_H
#define PE_INGEST_H

#include <stdio.h>
#include "store.h"

typedef enum pe_label_mode {
    PE_LABEL_FOLDER = 0, /* first-level subfolder of a named folder */
    PE_LABEL_FIXED = 1,  /* every image gets opts.label */
    PE_LABEL_UNLABELED = 2,
} pe_label_mode;

typedef enum pe_src_kind {
    PE_SRC_AUTO = 0, /* by magic bytes and name */
    PE_SRC_IMAGE, PE_SRC_TAR, PE_SRC_IDX, PE_SRC_CIFAR10, PE_SRC_CIFAR100,
    PE_SRC_STL10,
} pe_src_kind;

typedef struct pe_ingest_opts {
    const char *set;          /* NULL: store images, add to no set */
    int append;               /* set may exist: add to it batch by batch */
    pe_label_mode label_mode;
    const char *label;        /* PE_LABEL_FIXED: class name or id */
    const char *classes_file; /* class names, one a line (id = line index) */
    const char *labels_path;  /* IDX/STL-10 labels file (else found beside) */
    pe_src_kind kind;         /* --format */
    int cifar_coarse;         /* CIFAR-100: coarse labels */
    uint32_t channels;        /* 0 = as decoded, else 1 or 3 */
    uint32_t max_side;        /* 0 = none */
    uint32_t size_w, size_h;  /* 0 = none; exact resize */
    int encoding;             /* PE_ENC_RAW / PE_ENC_DEFLATE */
    uint64_t max_pixels;      /* 0 = PE_DEFAULT_MAX_PIXELS */
    uint64_t max_file_bytes;  /* 0 = 1 GiB */
    double timeout;           /* per-image decode deadline, s; 0 = none */
    int threads;              /* 0 = online CPUs */
    int follow;               /* follow symlinks (loop-checked) */
    int stdin_nul;            /* paths on stdin separated by NUL */
    size_t batch;             /* images per commit; 0 = 4096 (max RING/2) */
    const char *from_store;   /* --from-store PATH */
    const char *from_set;     /* with from_store: copy this set only */
    int progress;             /* progress line on stderr */
    int quiet;                /* no per-input messages on stderr */
    const char *prog;         /* program name for messages */
} pe_ingest_opts;

#define PE_INGEST_NREASONS 9
typedef struct pe_ingest_stats {
    uint64_t seen, stored, present, rejected, ignored, skipped;
    uint64_t rejected_by[PE_INGEST_NREASONS]; /* see pe_ingest_reason_name */
} pe_ingest_stats;

const char *pe_ingest_reason_name(int i);

/* Runs the ingest of srcs (paths; "-" or none = paths on stdin) into st.
 * Lines go to out; per-input messages and the summary to err. Returns 0
 * when the run completed (some inputs may have been rejected: see stats),
 * or an error code for a fatal failure (store, usage); what was committed
 * before a fatal failure stays committed and consistent. */
int pe_ingest_run(pe_store *st, const pe_ingest_opts *opts, char **srcs,
                  int nsrc, FILE *out, FILE *err, pe_ingest_stats *stats);

#endif
