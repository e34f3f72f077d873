/*
 * eval.h - pe-eval: downstream evaluation of a frozen encoder on labeled
 * sets of the store, and the report of a targeted poisoning attack
 * (PoisonedEncoder's metrics: clean accuracy and attack success rate).
 *
 * For each task (a downstream training set and a test set) the encoder's
 * features of both sets are extracted in evaluation mode without
 * augmentation, L2-normalised, a probe (probe.h) is trained on the
 * training features and scores the test features; the targets (test images
 * the attacker wants classified as a class of their choice) are reported
 * one by one and summarised as an attack success rate with its Wilson
 * interval. Features may be cached in a safetensors file, so that several
 * probes on one encoder extract them once.
 *
 * Not for: option parsing (cmd/pe-eval.c), the probes' math (probe.c), the
 * model (model.c) or crafting and injecting poisons (pe-craft, pe-inject).
 *
 * The input rule (what the encoder sees of a stored image), per image:
 *   1. the stored uint8 image; an RGB image for a 1-channel encoder is an
 *      error (as pe-train refuses an RGB set for a 1-channel model), a
 *      gray one for a 3-channel encoder is replicated to RGB (PIL's
 *      convert("RGB"));
 *   2. when it is not size x size, the whole image is resized to size x
 *      size with Pillow's bilinear filter (pe_image_resize_bilinear), as
 *      torchvision's Resize((size, size)) on a PIL image does: no crop,
 *      the aspect ratio is not kept;
 *   3. ToTensor and Normalize(mean, std) (pe_aug_normalize);
 *   4. the encoder's features (the average pool, no head) in evaluation
 *      mode (batch-norm running statistics), L2-normalised as
 *      F.normalize: x / max(||x||, 1e-12).
 * A set entry is one image whatever its count: multiplicity matters to
 * training, not to evaluation.
 *
 * pe_encoder_* is the one path from stored images to features by that
 * rule: pe-eval's tasks and pe-audit's embedding scans both take theirs
 * from it.
 */
#ifndef PE_EVAL_H
#define PE_EVAL_H

#include <stdio.h>

#include "model.h"
#include "probe.h"
#include "store.h"

/* One downstream task: the probe is trained on `train` and tested on
 * `test` (set names; both must be labeled in every entry). */
typedef struct pe_eval_task {
    const char *train;
    const char *test;
} pe_eval_task;

/* A frozen encoder and what it needs to turn stored images into features
 * by the input rule above. */
typedef struct pe_encoder_opts {
    const char *path;         /* safetensors: a pe-train checkpoint or a
                                 PyTorch state_dict without metadata */
    /* The encoder's description: taken from a pe-train checkpoint's
     * metadata, overridden by what is given here; all required for a file
     * without that metadata. A given arch that differs from the
     * checkpoint's is an error. */
    int have_arch;
    pe_arch arch;
    int have_width;
    double width;
    int size;                 /* 0: the checkpoint's */
    int channels;             /* 0: the checkpoint's */
    int have_mean, have_std;
    float mean[3], std[3];
    int batch;                /* images per forward pass; 256 */
    pe_device_kind device;    /* --device: auto (default), cpu, cuda */
    int device_index;         /* cuda:N */
    pe_precision precision;   /* GPU only: fp32 (default), tf32, bf16 */
    int deterministic;        /* accepted; the encoder always runs with
                                 deterministic convolution algorithms */
    int progress;             /* a progress line on err while extracting */
    const char *prog;         /* for the lines on err: "pe-eval" */
} pe_encoder_opts;

/* Width 1, batch 256, prog "pe-eval", nothing else given. */
void pe_encoder_opts_default(pe_encoder_opts *o);

typedef struct pe_encoder pe_encoder;

/* Reads and hashes the file, takes its description from the metadata and
 * the options, checks the first convolution against the channel count,
 * starts the backend o->device asks for (the CPU's with `threads` compute
 * threads, 0 = online CPUs, or the CUDA one) and
 * loads the weights (the head, when present, is ignored). Everything that
 * can be wrong with the file or the options is found here, before any
 * image is read. Returns 0 with *out to close with pe_encoder_close,
 * PE_EUSAGE (a description option missing for a file without metadata,
 * or contradicting the checkpoint: arch; --width on a small encoder),
 * PE_EFORMAT (not safetensors, bad metadata, a channel count the weights
 * do not take, tensors that do not fit the architecture), an errno (the
 * file), ENOMEM; the message names the file. o is read during the call
 * only (prog is kept: it must outlive the encoder). */
int pe_encoder_open(pe_encoder **out, const pe_encoder_opts *o, int threads);
void pe_encoder_close(pe_encoder *e);

/* The feature dimension d (the average pool's width). */
int pe_encoder_dim(const pe_encoder *e);
/* The model's configuration (arch, width, channels, size), borrowed. */
const pe_model_cfg *pe_encoder_cfg(const pe_encoder *e);
/* A CPU backend (host memory), borrowed until pe_encoder_close, for
 * computing on the features (probes, nearest neighbours): the encoder's
 * own when it runs on the CPU, so no second thread pool is started; a
 * separate one when the encoder runs on a GPU. */
pe_backend *pe_encoder_backend(pe_encoder *e);

/* Features of the n images keys[0..n) by the input rule above, in that
 * order, into out (n, d) row-major, each row L2-normalised. Batches of
 * the opts' batch (the last one at its own size), so a feature's bits
 * depend only on the batch and the image list, not on the threads. name
 * is the set's name for messages (NULL: keys not from a set). With err,
 * a line on err when done (and progress lines when opts.progress); NULL:
 * silent. Returns 0, PE_ENOTFOUND (a key not in the store), PE_EFORMAT
 * (an RGB image for a 1-channel encoder), PE_ECORRUPT (non-finite
 * features), a store error, ENOMEM; the message names the set and key. */
int pe_encoder_features(pe_encoder *e, pe_store *st, const pe_key *keys, size_t n,
                        const char *name, float *out, FILE *err);

typedef struct pe_eval_opts {
    pe_encoder_opts enc;      /* the encoder (enc.prog, enc.progress are
                                 taken from prog and progress below) */
    const pe_eval_task *tasks;
    size_t ntasks;
    const char *targets;      /* key lines KEY[\tCLASS]; "-": `in`; NULL: none */
    const char *target_class; /* class of every target line (their fields ignored) */
    pe_probe_opts probe;
    const char *cache;        /* feature cache file, or NULL */
    const char *predictions;  /* KEY\tTRUE\tPREDICTED per test image, or NULL */
    int threads;              /* compute threads; 0 = online CPUs */
    int json;                 /* NDJSON instead of the table */
    int quiet;                /* no informational lines on err */
    int progress;             /* a progress line on err (a terminal) */
    const char *prog;         /* for messages: "pe-eval" */
} pe_eval_opts;

void pe_eval_opts_default(pe_eval_opts *o);

/* Runs the evaluation and prints the report on out (a table, or NDJSON
 * with o->json), informational lines on err. Every check (sets, labels,
 * targets, encoder) happens before any output, and the report is printed
 * only when every task has been evaluated, so a failure leaves out
 * untouched; the cache is written (atomically) after the evaluation
 * succeeded and before the report, and so is the predictions file (a
 * temporary file renamed over it). Returns 0, PE_EUSAGE (the encoder
 * needs options that were not given, or an option contradicts it), or an
 * error code with the message naming the set, key, target line or file. */
int pe_eval_run(pe_store *st, const pe_eval_opts *o, FILE *in, FILE *out, FILE *err);

#endif
