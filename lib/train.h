/*
 * train.h - contrastive pre-training of an encoder on a set of the store
 * (pe-train): SimCLR (NT-Xent over both views) or MoCo v2 (a momentum key
 * encoder and a queue of negatives, InfoNCE), data loading with
 * augmentation ahead of compute, Adam or SGD with warm-up and cosine, kNN
 * monitoring, safetensors checkpoints with optimiser state and exact
 * resume; and the defenses that live in the training run: fine-tuning an
 * existing encoder (init), the localized crop (aug.crop_mode, augment.h)
 * early stopping on a plateau of the kNN monitor (stop_plateau) and
 * differentially private training (dp_clip: DP-SGD on groups of images).
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

/* The contrastive method. SimCLR: both views of each image through the
 * trained model, NT-Xent over the 2B rows. MoCo v2: view 1 through the
 * trained (query) model, view 2 through a key encoder that is a momentum
 * copy of it, InfoNCE against the key and a queue of earlier keys. */
typedef enum pe_method { PE_METHOD_SIMCLR = 0, PE_METHOD_MOCO = 1 } pe_method;

/* The longest MoCo queue pe_train_run accepts, in rows. */
#define PE_MOCO_QUEUE_MAX (1 << 20)

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
    float temperature;      /* NT-Xent's or InfoNCE's (pe-train's default
                               is 0.5 for simclr, 0.2 for moco) */
    pe_method method;
    int moco_queue;         /* moco: K, negatives in the queue (4096); a
                               multiple of batch, at most PE_MOCO_QUEUE_MAX */
    double moco_momentum;   /* moco: key = m key + (1 - m) query after each
                               optimiser step, 0 to 1 (0.999) */
    uint64_t seed;
    int threads;            /* compute threads; 0 = online CPUs */
    pe_device_kind device;  /* --device: auto (default), cpu, cuda */
    int device_index;       /* cuda:N */
    pe_precision precision; /* --precision (GPU only): fp32 (default), tf32, bf16 */
    int deterministic;      /* --deterministic (GPU only): no atomics-based
                               convolution algorithms, fixed choices */
    int world, rank;        /* data parallelism: this process is rank
                               (0..world-1) of world, one GPU each (0 or
                               1: alone). Each rank trains its own batches
                               of `batch` (step s of an epoch: batch
                               s x world + rank of the epoch's order), the
                               gradients are averaged (NCCL), batch norm
                               (unless sync_bn) and NT-Xent's negatives
                               stay per rank; rank
                               0 alone writes -o and --log */
    int sync_bn;            /* batch norm statistics over the group's batch
                               (needs rendezvous) */
    const char *rendezvous; /* the file the ranks meet through
                               (pe_backend_join); required when world > 1,
                               and with world 1 a group of one rank */
    int host_augment;       /* augment on the host even when the backend
                               could (tests; the loader thread's path) */
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
    /* differentially private training (DP-SGD, SimCLR only; see the
     * pe_dp_* functions below): per-group clipping and Gaussian noise */
    double dp_clip;         /* C, the clip norm of a group's gradient;
                               0 = no DP (the other dp_* unused) */
    double dp_noise;        /* sigma, the noise multiplier (>= 0); < 0 =
                               derived from dp_epsilon */
    double dp_epsilon;      /* the epsilon to reach at the run's last step
                               (with dp_noise < 0); 0 = not given */
    double dp_delta;        /* delta of the accounting, 0 < delta < 1
                               (1e-5) */
    int dp_group;           /* g, images per group; batch a multiple (32) */
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
    double dp_sigma;              /* with dp_clip: the noise multiplier used
                                     (noise std sigma C on the sum), */
    double dp_q;                  /*   the sampling rate batch / occurrences, */
    double dp_epsilon;            /*   epsilon after the steps done (at
                                       dp_delta; INFINITY when sigma is 0) */
    double dp_clipped;            /*   fraction of the last epoch's group
                                       gradients that were clipped */
} pe_train_stats;

/* Runs the training. Returns 0, or an error code with the message naming
 * the cause (an empty set, a wrong channel count, NaN loss: the last good
 * checkpoint is kept; PE_EUSAGE for options that do not go together, such
 * as init with resume; PE_EFORMAT for an init file whose tensors do not
 * fit the model). Notes (an init file without a usable head) go to err. */
int pe_train_run(pe_store *st, const pe_train_opts *o, FILE *err,
                 pe_train_stats *stats);

/* ---- MoCo's pieces, for the trainer and its tests ----
 * The key encoder is a second pe_model of the same configuration as the
 * query (trained) model; the queue is K rows of D floats in backend memory,
 * each a normalised key; the pointer is the next row to overwrite. */

/* The queue before training, in host memory: K rows of D standard normal
 * values, each row then L2-normalised (in double, rounded to float), as
 * MoCo's torch.randn + F.normalize but from pe's generator: a Philox
 * stream (rng.h) with key pe_rng_epoch_key(seed, 0, PE_MOCO_TAG_QUEUE)
 * and counter words (0, 0, 0); row by row, each value z = sqrt(-2 ln(1 -
 * u1)) cos(2 pi u2) from two pe_rng_double draws u1, u2. The same seed
 * gives the same queue. */
#define PE_MOCO_TAG_QUEUE 0x7571636du /* "mcqu" */
void pe_moco_queue_init(float *queue, size_t K, int D, uint64_t seed);

/* FIFO: writes the n rows of keys (n, D) over queue rows *ptr .. *ptr + n
 * - 1 (the oldest) and advances *ptr by n modulo K. K must be a multiple
 * of n and *ptr a multiple of n below K (asserted), so a batch never wraps.
 * Backend memory. Returns 0 or the backend's error code. */
int pe_moco_enqueue(pe_backend *be, float *queue, size_t K, int D,
                    const float *keys, int n, uint64_t *ptr);

/* Makes key an exact copy of query: parameters, running statistics and
 * num_batches_tracked. The models must share a configuration. */
int pe_moco_key_copy(pe_model *key, pe_model *query, pe_backend *be);

/* The momentum update: every parameter of key (batch-norm weights and
 * biases included) becomes m key + (1 - m) query (pe_backend.ema); the
 * running statistics and counters are left to the key encoder's own
 * forward passes, as in the MoCo reference code. */
int pe_moco_momentum_update(pe_model *key, pe_model *query, pe_backend *be,
                            double m);

/* ---- DP-SGD's pieces, for the trainer and its tests ----
 * NT-Xent couples a batch (every image is a negative of every other, and
 * batch norm normalises over the batch), so a per-example gradient does
 * not exist. The batch of B images is cut into B / g groups of g images;
 * each group runs its own forward and backward on its 2g views (batch
 * statistics and negatives from the group alone), so one image touches
 * exactly one group's gradient. Each group's gradient (every trainable
 * parameter, head included) is scaled by min(1, C / ||grad||); the sum
 * over groups gets N(0, (sigma C)^2) noise per coordinate from a Philox
 * stream keyed by (seed, step) (pe_dp_noise_key), and is divided by the
 * number of groups: that is the gradient the optimiser sees. The
 * accounting (dp.h) is that of the subsampled Gaussian mechanism at rate
 * q = B / occurrences with sensitivity PE_DP_SENSITIVITY C per image. */
#define PE_DP_TAG_NOISE 0x736e7064u /* "dpns" */

/* The L2 sensitivity of the sum of clipped group gradients to adding or
 * removing one image, in units of C. The image's group keeps its other
 * images, and its clipped gradient may move from any point of the ball of
 * radius C to any other: 2, not the 1 of per-example clipping (TF
 * Privacy's "doubling of sensitivity with microbatching"; Ponomareva et
 * al., "How to DP-fy ML", 2023, sec. 5.6). So the accountant (dp.h) sees
 * the noise multiplier sigma / PE_DP_SENSITIVITY, and --dp-epsilon's sigma
 * is PE_DP_SENSITIVITY times pe_dp_sigma_for's. */
#define PE_DP_SENSITIVITY 2.0

typedef struct pe_dp pe_dp;

/* The key of step `step`'s noise under seed: pe_rng_epoch_key(seed, step,
 * PE_DP_TAG_NOISE). */
void pe_dp_noise_key(uint64_t seed, uint64_t step, uint32_t key[2]);

/* The factor a gradient of L2 norm `norm` is scaled by: min(1, clip /
 * norm), 1 for a zero gradient. */
double pe_dp_clip_scale(double norm, double clip);

/* Workspace of the DP step for batches of B images (2B views of view_n
 * floats each, view 1 then view 2) in groups of g (B a multiple of g),
 * for model m, whose batch must be set to 2g. clip > 0, sigma >= 0.
 * Returns 0, PE_EUSAGE or ENOMEM. Free with pe_dp_free. */
int pe_dp_init(pe_dp **out, pe_model *m, pe_backend *be, int B, int g, size_t view_n,
               double clip, double sigma, uint64_t seed);
void pe_dp_free(pe_dp *dp);

/* One private gradient of the batch x (backend memory) at optimiser step
 * `step`, left in pe_model_grads(m) for the optimiser; *loss gets the mean
 * of the groups' NT-Xent losses at temperature T. A group whose loss is
 * not finite stops the step with that loss in *loss (the caller reports
 * it) and rc 0. Batch-norm running statistics are updated once per group. */
int pe_dp_step(pe_dp *dp, pe_model *m, const float *x, float T, uint64_t step, float *loss);

/* The groups seen and the groups whose gradient was clipped since the
 * last call, then resets both. */
void pe_dp_counts(pe_dp *dp, uint64_t *groups, uint64_t *clipped);

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
