/*
 * train.h - SimCLR pre-training of an encoder on a set of the store
 * (pe-train): data loading with augmentation ahead of compute, NT-Xent,
 * Adam or SGD with warm-up and cosine, kNN monitoring, safetensors
 * checkpoints with optimiser state and exact resume; and the defenses that
 * live in the training run: fine-tuning an existing encoder (init), the
 * localized crop (aug.crop_mode, augment.h) and early stopping on a
 * plateau of the kNN monitor (stop_plateau).
 *
 * Not for: option parsing (cmd/pe-train.c), the model graph (model.c), the
 * kernels (kernels/) or the augmentations' pixel math (augment.c).
 */
#ifndef PE_TRAIN_H
#define PE_TRAIN_H

#include <stdio.h>

#include "augment.h"
#include "model.h"
#include "store.h"

typedef enum pe_optim { PE_OPT_ADAM = 0, PE_OPT_SGD = 1 } pe_optim;

typedef struct pe_train_opts {
    const char *set;        /* the pre-training set */
    pe_arch arch;
    double width;           /* resnet18 width multiplier */
    int size;               /* training resolution (views are size x size) */
    int channels;           /* model input channels; 0 = the images' */
    int epochs;             /* total epochs (a resumed run continues to it);
                               0 trains nothing and writes the initial
                               encoder */
    int batch;              /* images per batch (2x views) */
    pe_optim optim;
    double lr, wd, momentum;
    double warmup;          /* SGD: warm-up epochs (linear), then cosine */
    float temperature;
    uint64_t seed;
    int threads;            /* compute threads; 0 = online CPUs */
    pe_aug_opts aug;        /* crop scale/ratio and mode, probabilities,
                               strengths */
    int have_norm;          /* aug.mean/std given; else computed from the set */
    const char *out;        /* checkpoint path (written each epoch) */
    const char *resume;     /* checkpoint to continue from */
    const char *init;       /* encoder to start from (fine-tuning), not
                               with resume: its encoder tensors, its head
                               when it has all of it with the model's
                               shapes (else the head from seed), its
                               mean/std metadata unless have_norm; fresh
                               optimiser state, step 0 */
    const char *log;        /* NDJSON per epoch, appended */
    const char *knn_set;    /* labeled set evaluated by weighted kNN */
    const char *knn_bank;   /* labeled memory bank (default: the training set) */
    int knn_k;              /* 200 */
    float knn_t;            /* 0.5 */
    uint64_t knn_limit;     /* evaluate at most this many test images (0 = all) */
    uint64_t max_steps;     /* stop after this many steps in total (0 = none) */
    int stop_plateau;       /* stop once the kNN accuracy has not risen
                               above its best for this many epochs; out
                               then holds the best epoch (0 = off; needs
                               knn_set, excludes max_steps) */
    int progress;           /* progress line on stderr */
    const char *prog;
} pe_train_opts;

void pe_train_opts_default(pe_train_opts *o);

/* What a run measured, for the caller's summary and benchmarks. */
typedef struct pe_train_stats {
    int epochs_done;
    uint64_t steps;
    double last_loss;
    double seconds, wait_seconds; /* total, and compute waiting for data */
    double images_per_s;
    double knn_acc;               /* last kNN accuracy, or -1 */
    int init_head;                /* with init: 1 head from the file, 0 fresh */
    int best_epoch;               /* with stop_plateau: the epoch out holds */
    double best_acc;              /*   and its kNN accuracy */
    int stopped_plateau;          /* 1 when the plateau rule ended the run */
} pe_train_stats;

/* Runs the training. Returns 0, or an error code with the message naming
 * the cause (an empty set, a wrong channel count, NaN loss: the last good
 * checkpoint is kept; PE_EUSAGE for options that do not go together, such
 * as init with resume; PE_EFORMAT for an init file whose tensors do not
 * fit the model). Notes (an init file without a usable head) go to err. */
int pe_train_run(pe_store *st, const pe_train_opts *o, FILE *err,
                 pe_train_stats *stats);

/* Loads the encoder (and head, when the file has it) of a safetensors
 * checkpoint into m: every tensor of m must be present with its shape;
 * F32, F16, BF16 or F64 data; num_batches_tracked as I64. Works for files
 * written by pe-train and by PyTorch (a state_dict saved with the format's
 * few lines of Python); head tensors are optional (skip_head = 1 ignores
 * them). The reader is strict about untrusted files. */
int pe_model_load_file(pe_model *m, pe_backend *be, const char *path, int skip_head);

/* Weighted kNN accuracy (k neighbours by cosine similarity, votes
 * exp(sim / t)) of test features against bank features, both (n, d)
 * row-major, L2-normalised here. Labels 0..nclasses-1. */
double pe_knn_accuracy(const float *bank, const int32_t *bank_labels,
                       size_t nbank, const float *test,
                       const int32_t *test_labels, size_t ntest, int d, int k,
                       float t, int nclasses);

#endif
