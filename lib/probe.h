/*
 * probe.h - downstream classifiers trained on frozen features (pe-eval's
 * probes), and the numbers of the attack report computed from their
 * scores: rank of a class, class-mean cosines, Wilson intervals.
 *
 * Not for: features (eval.c extracts them from the store), printing, or
 * anything that touches the store: every function here is a function of
 * float arrays, so the unit tests drive them directly.
 *
 * Two probes:
 *
 *  PE_PROBE_LINEAR  multinomial logistic regression with bias, trained full
 *      batch on the mean cross-entropy plus (l2 / 2) ||W||^2 (no penalty on
 *      the bias) by L-BFGS from zero weights. Pinned (pe_probe_opts_default):
 *      l2 = 1e-4, memory 10, 200 iterations, stopping earlier only when
 *      the gradient's Euclidean norm falls below 1e-6 (or when no step
 *      along the search direction lowers the loss any more, which happens
 *      only at the limit of double precision). Line search: backtracking
 *      by halves from step 1 (min(1, 1/||g||) while the memory is empty:
 *      the first iteration, or after a reset), Armijo constant 1e-4, at
 *      most 40 halvings; a curvature pair with s.y <= 1e-10 y.y is not
 *      stored; a direction that is not a descent direction resets the
 *      memory to steepest descent. Everything is in
 *      double, single-threaded, summed in a fixed order: the result is
 *      bit-identical from run to run and independent of any thread count.
 *
 *  PE_PROBE_MLP  the downstream classifier of the PoisonedEncoder authors'
 *      group (BadEncoder's evaluation/nn_classifier.py, NeuralNet, as its
 *      training_downstream_classifier.py trains it):
 *          Linear(d, 512) ReLU Dropout(0.5) Linear(512, 256) ReLU
 *          Linear(256, K)
 *      (one dropout layer: that file's forward applies its dropout once,
 *      after the first ReLU), cross-entropy averaged over each batch,
 *      torch.optim.Adam with lr 1e-4 (betas 0.9, 0.999, eps 1e-8, no
 *      weight decay), batches of 64 with the last smaller one kept
 *      (DataLoader's drop_last=False), 500 epochs. Its training loader
 *      does not shuffle (shuffle=False): each epoch visits the features in
 *      the order given, and so does this one unless opts.shuffle is set.
 *      PyTorch's default init, U(-1/sqrt(in), 1/sqrt(in)) for weights and
 *      biases. The random numbers (init, dropout, shuffle) come from rng.h
 *      streams keyed by the seed, not from torch's generator: the same
 *      seed gives the same probe here, not the one torch would draw.
 *      The GEMMs run on the given backend (host memory: the CPU backend),
 *      whose results do not depend on its thread count (backend.h).
 *
 * Labels are class ids 0..K-1. Features are (n, d) row-major floats; the
 * callers pass L2-normalised ones, but nothing here requires it.
 *
 * Ownership: pe_probe_train gives a probe freed by pe_probe_free; inputs
 * are borrowed for the duration of a call only.
 */
#ifndef PE_PROBE_H
#define PE_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

typedef enum pe_probe_kind { PE_PROBE_LINEAR = 0, PE_PROBE_MLP = 1 } pe_probe_kind;

typedef struct pe_probe_opts {
    pe_probe_kind kind;
    /* linear */
    double l2;        /* lambda of (lambda / 2) ||W||^2; 1e-4 */
    int iters;        /* L-BFGS iterations; 200 */
    int memory;       /* L-BFGS pairs kept; 10 */
    double gtol;      /* stop when ||gradient|| < gtol; 1e-6 */
    /* mlp */
    int epochs;       /* 500 */
    int batch;        /* 64 */
    double lr;        /* Adam learning rate; 1e-4 */
    int hidden[2];    /* 512, 256 */
    float dropout;    /* 0.5, after the first ReLU */
    int shuffle;      /* 0: each epoch in the given order (BadEncoder) */
    uint64_t seed;    /* init, dropout and shuffle streams; 1 */
    /* called after each iteration (linear) or epoch (mlp) with the count
     * done, the count asked for and the loss, when not NULL (progress
     * lines); it cannot change the result */
    void (*progress)(void *ctx, int done, int total, double loss);
    void *progress_ctx;
} pe_probe_opts;

/* The pinned values above. */
void pe_probe_opts_default(pe_probe_opts *o);
const char *pe_probe_kind_name(pe_probe_kind k); /* "linear", "mlp" */

/* What training did. */
typedef struct pe_probe_stats {
    int iters;        /* linear: iterations done; mlp: epochs done */
    double loss0;     /* linear: objective at zero weights (log K) */
    double loss;      /* linear: final objective; mlp: mean batch loss of
                         the last epoch */
    double gnorm;     /* linear: ||gradient|| at the result */
    int stalled;      /* linear: stopped because no step lowered the loss */
} pe_probe_stats;

typedef struct pe_probe pe_probe;

/* Trains a probe of kind o->kind on x (n, d) with labels y (each in
 * [0, k)). be: a host-memory backend (pe_backend_cpu) for the MLP's
 * GEMMs; unused by the linear probe (may be NULL then). stats may be
 * NULL. Returns 0, ENOMEM, or PE_EUSAGE (n == 0, d < 1, k < 2, a label
 * out of range, bad options; message says which). */
int pe_probe_train(pe_probe **out, const pe_probe_opts *o, pe_backend *be,
                   const float *x, const int32_t *y, size_t n, int d, int k,
                   pe_probe_stats *stats);
void pe_probe_free(pe_probe *p);

/* Scores (logits) of x (n, d) into scores (n, K). Returns 0 or ENOMEM. */
int pe_probe_scores(const pe_probe *p, const float *x, size_t n,
                    float *scores);

/* The linear probe's parameters: W (K, d) row-major then b (K), doubles,
 * K * (d + 1) of them (*count); NULL for an MLP. Borrowed from p. */
const double *pe_probe_linear_params(const pe_probe *p, size_t *count);

/* The linear probe's objective at w (layout above): mean cross-entropy of
 * x, y plus (l2 / 2) ||W||^2. Writes the gradient to grad (same layout)
 * when not NULL. Summation in a fixed order (samples in order, then the
 * penalty). */
double pe_probe_linear_loss(const double *w, const float *x, const int32_t *y,
                            size_t n, int d, int k, double l2, double *grad);

/* ---- the report's numbers ---- */

/* Index of the largest of s[0..k) (the lowest index on a tie). */
int pe_argmax(const float *s, int k);

/* Rank of class c among the scores s[0..k): 1 + the number of classes
 * scoring higher, or scoring the same with a lower id, so that rank 1 is
 * exactly "pe_argmax(s, k) == c". */
int pe_score_rank(const float *s, int k, int c);

/* Class means of x (n, d) by label y into means (k, d): the plain mean of
 * the rows of each class (not renormalised); a class without rows gets
 * zeros; rows with a label outside [0, k) are skipped. Accumulated in
 * double. Returns 0 or ENOMEM. */
int pe_class_means(const float *x, const int32_t *y, size_t n, int d, int k,
                    float *means);

/* Cosine similarity of a and b (d values), in double; NaN when either is
 * the zero vector. */
double pe_cosine(const float *a, const float *b, int d);

/* Wilson score interval of `hits` successes in n trials at normal quantile
 * z (1.959963984540054 for 95%); clamped to [0, 1]. n == 0 gives NaNs. */
void pe_wilson(uint64_t hits, uint64_t n, double z, double *lo, double *hi);

/* One attacked test image: where it is, what it is, what it should become. */
typedef struct pe_target {
    size_t row;       /* its row in the test arrays */
    int32_t target;   /* the attacker's class */
} pe_target;

/* The report's line of one target. */
typedef struct pe_target_result {
    int32_t truth, target, pred;
    int rank;          /* of the target class in the scores, 1 = top */
    double cos_true;   /* cosine of its feature to its own class mean */
    double cos_target; /* ... and to the target class's mean (NaN: no mean) */
} pe_target_result;

typedef struct pe_attack_summary {
    uint64_t clean, clean_correct; /* test rows that are not targets */
    double ca;                     /* clean_correct / clean, NaN when 0 */
    uint64_t targets, hits;        /* targets predicted as their class */
    double asr, asr_lo, asr_hi;    /* hits / targets and its 95% Wilson
                                      interval; NaN when no targets */
} pe_attack_summary;

/* The attack report of one task: scores (n, k) and features (n, d) of the
 * test rows with their labels, class means (k, d) of the downstream
 * training features (pe_class_means), and nt targets (distinct rows).
 * Fills res[0..nt) and sum. Returns 0, ENOMEM, or PE_EUSAGE (a target
 * row out of range or listed twice, a class out of range). */
int pe_attack_eval(const float *scores, const float *feat,
                   const int32_t *labels, size_t n, int d, int k,
                   const float *means, const pe_target *t, size_t nt,
                   pe_target_result *res, pe_attack_summary *sum);

#endif
