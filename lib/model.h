/*
 * model.h - the encoders pe-train trains (ResNet-18 with the CIFAR stem and a
 * width multiplier, and the `small` CPU preset) with the SimCLR projection
 * head, as a flat list of ops over backend memory: forward, backward,
 * parameter access by PyTorch state_dict name.
 *
 * Not for: the loss, optimisers, data or checkpoints (train.c), or the
 * numeric kernels (kernels/, through pe_backend).
 *
 * Memory: parameters live in one backend allocation carved by offset (p),
 * their gradients in a second of the same layout (g), batch-norm running
 * statistics in a third (buf); num_batches_tracked counters on the host.
 * Activations are allocated for one batch size by pe_model_set_batch.
 *
 * Names follow PyTorch exactly, so a checkpoint loads into torchvision's
 * resnet18 (CIFAR stem) or the `small` nn.Sequential of
 * ../shared/bench/torch_simclr_step.py; the head is under "head.".
 */
#ifndef PE_MODEL_H
#define PE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

typedef enum pe_arch { PE_ARCH_SMALL = 0, PE_ARCH_RESNET18 = 1 } pe_arch;

typedef struct pe_model_cfg {
    pe_arch arch;
    double width;    /* resnet18 width multiplier (1 = 64,128,256,512) */
    int channels;    /* input channels, 1 or 3 */
    int size;        /* input height = width */
    int head_hidden; /* 512 */
    int head_out;    /* 128 */
    float bn_eps;    /* 1e-5 */
    float bn_momentum; /* 0.1 */
} pe_model_cfg;

/* Defaults for an architecture: width 1, head 512 -> 128, BN eps 1e-5,
 * momentum 0.1. */
void pe_model_cfg_default(pe_model_cfg *cfg, pe_arch arch, int channels,
                          int size);
const char *pe_arch_name(pe_arch a);
int pe_arch_parse(const char *s, pe_arch *out);

typedef enum pe_tensor_kind {
    PE_T_PARAM = 0,  /* trainable (in p, with a gradient in g) */
    PE_T_RUNNING = 1,/* BN running_mean / running_var (in buf) */
    PE_T_COUNT = 2,  /* BN num_batches_tracked (int64, host) */
} pe_tensor_kind;

typedef struct pe_tensor_info {
    char name[64];
    pe_tensor_kind kind;
    int ndim;
    int shape[4];
    size_t n;   /* elements */
    size_t off; /* offset in p/g (PARAM), buf (RUNNING), or counter index */
    int head;   /* 1 for the projection head's tensors */
} pe_tensor_info;

typedef struct pe_model pe_model;

/* Builds the model on backend be (not owned) and initialises parameters as
 * PyTorch does (conv: kaiming normal, fan_out, relu, as torchvision's
 * ResNet; BN: weight 1, bias 0; Linear: U(-1/sqrt(in), 1/sqrt(in)) for
 * weight and bias), drawn from seed. Returns 0, ENOMEM, PE_EUSAGE. */
int pe_model_init(pe_model **out, const pe_model_cfg *cfg, pe_backend *be,
                  uint64_t seed);
void pe_model_free(pe_model *m);

/* Allocates activations for a batch of n inputs (2B for SimCLR). */
int pe_model_set_batch(pe_model *m, int n);

/* Forward of x (n, C, size, size) in backend memory. train = 1: batch
 * statistics, running statistics updated, num_batches_tracked += 1;
 * train = 0: running statistics. head = 0 stops after the encoder
 * (features only). */
int pe_model_forward(pe_model *m, const float *x, int train, int head);
/* Backward from d loss / d z (n, head_out), after a training forward with
 * the head. Overwrites all parameter gradients. */
int pe_model_backward(pe_model *m, const float *dz);

const float *pe_model_features(const pe_model *m); /* (n, feat_dim) */
float *pe_model_z(pe_model *m);                    /* (n, head_out) */
int pe_model_feat_dim(const pe_model *m);
const pe_model_cfg *pe_model_get_cfg(const pe_model *m);

/* Tensors in state_dict order. */
int pe_model_ntensors(const pe_model *m);
const pe_tensor_info *pe_model_tensor(const pe_model *m, int i);
const pe_tensor_info *pe_model_find(const pe_model *m, const char *name);
float *pe_model_params(pe_model *m);   /* backend memory, n_params */
float *pe_model_grads(pe_model *m);    /* backend memory, n_params */
float *pe_model_buffers(pe_model *m);  /* backend memory, n_buffers */
int64_t *pe_model_counts(pe_model *m); /* host, one per BN */
size_t pe_model_nparams(const pe_model *m);
/* Nominal forward FLOPs per input (direct convolution and dense layers,
 * 2 per multiply-add; no credit for fast algorithms). A training step
 * counts 3x (forward, backward data, backward filter). */
double pe_model_flops_per_input(const pe_model *m);
size_t pe_model_nbuffers(const pe_model *m);

#endif
