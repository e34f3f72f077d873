/*
 * pe-train - contrastive pre-training (SimCLR or MoCo v2, SimCLR optionally
 * differentially private) of an encoder on a set of the store; writes a
 * safetensors checkpoint PyTorch loads. Options:
 * docs/man/pe-train.1.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "escape.h"
#include "pe.h"
#include "train.h"

static const char *prog = "pe-train";

static void usage(FILE *f) {
    fputs(
"usage: pe-train [options] --set NAME -o FILE.safetensors\n"
"SimCLR (default) or MoCo v2 pre-training of an encoder on a set of the store.\n"
"\n"
"  -S, --store PATH       store (default $PE_STORE, else ./pe.lmdb)\n"
"  -s, --set NAME         the (unlabeled or labeled) pre-training set\n"
"  -o, --output FILE      checkpoint, written atomically after every epoch\n"
"      --resume FILE      continue a run from its checkpoint (same options)\n"
"      --init FILE        start from this encoder (fine-tuning: fresh optimiser,\n"
"                         the file's head when it fits, else a fresh one)\n"
"      --arch A           small (default) or resnet18 (CIFAR stem)\n"
"      --width W          resnet18 width multiplier (default 1)\n"
"      --size N           training resolution (default 32)\n"
"      --channels 1|3     model input channels (default: the images'; 3 on\n"
"                         gray images replicates them)\n"
"      --epochs N         total epochs (default 1; 0 writes the initial encoder)\n"
"  -b, --batch N          images per batch, 2N views (default 256)\n"
"      --optim adam|sgd   Adam (default) or SGD with momentum + cosine\n"
"      --lr X             learning rate (default 1e-3 Adam, 0.06 SGD)\n"
"      --wd X             weight decay (default 1e-6 Adam, 5e-4 SGD)\n"
"      --momentum X       SGD momentum (default 0.9)\n"
"      --warmup E         SGD warm-up epochs before the cosine (default 0)\n"
"      --temperature T    NT-Xent / InfoNCE temperature (default 0.5 simclr,\n"
"                         0.2 moco)\n"
"      --method M         simclr (default) or moco (MoCo v2: momentum key\n"
"                         encoder, queue of negatives)\n"
"      --moco-queue K     moco: negatives in the queue, a multiple of the\n"
"                         batch (default 4096)\n"
"      --moco-momentum M  moco: key encoder momentum, 0 to 1 (default 0.999)\n"
"      --seed N           seed of init, order and augmentations (default 1)\n"
"  -j, --threads N        compute threads (default: online CPUs)\n"
"      --device D         auto (default: the GPU when one is present), cpu,\n"
"                         cuda or cuda:N\n"
"      --precision P      on a GPU: fp32 (default), tf32 or bf16\n"
"      --deterministic    on a GPU: deterministic convolution algorithms\n"
"      --world N, --rank R, --rendezvous FILE   data parallelism: this\n"
"                         process is rank R of N, one GPU each (--device\n"
"                         cuda:R on one machine), meeting through FILE\n"
"                         (default: $PE_WORLD_SIZE, $PE_RANK, $PE_RENDEZVOUS)\n"
"      --sync-bn          with a group: batch norm statistics over all ranks\n"
"      --crop-scale LO,HI RandomResizedCrop area range (default 0.08,1)\n"
"      --crop-ratio LO,HI aspect range (default 0.75,1.3333333)\n"
"      --crop-mode M      independent (default) or local: both views inside\n"
"                         one random region of the image\n"
"      --local-scale LO,HI  local mode: the region's area range\n"
"                         (default 0.2,0.5)\n"
"      --jitter B,C,S,H   ColorJitter strengths (default 0.4,0.4,0.4,0.1)\n"
"      --p-flip P, --p-jitter P, --p-gray P   (default 0.5, 0.8, 0.2)\n"
"      --mean A[,B,C] --std A[,B,C]   normalisation (default: from the set)\n"
"      --log FILE         append one JSON line per epoch\n"
"      --knn-set NAME     labeled set scored by weighted kNN each epoch\n"
"      --knn-bank NAME    labeled memory bank (default: the training set)\n"
"      --knn-k K, --knn-t T, --knn-limit N   (default 200, 0.5, all)\n"
"      --max-steps N      stop after N optimiser steps in total\n"
"      --stop-plateau N   stop when the kNN accuracy has not improved for N\n"
"                         epochs; -o holds the best epoch (needs --knn-set)\n"
"      --dp-clip C        differentially private training (DP-SGD, simclr):\n"
"                         clip each group's gradient to L2 norm C, add\n"
"                         Gaussian noise; with exactly one of:\n"
"      --dp-noise SIGMA   the noise multiplier (noise std SIGMA x C)\n"
"      --dp-epsilon EPS   the epsilon to reach at the last step (SIGMA from\n"
"                         the RDP accountant)\n"
"      --dp-delta D       delta of the accounting (default 1e-5; below 1/n)\n"
"      --dp-group G       images per group, a divisor of the batch (default\n"
"                         32): each group's own forward, batch norm and\n"
"                         negatives\n"
"  -h, --help             this help\n"
"      --version          print the version\n"
"Exit: 0 ok, 1 error, 2 usage.\n",
        f);
}

/* "a,b[,c...]" into up to n doubles; returns the count or -1. */
static int parse_list(const char *s, double *v, int n) {
    int k = 0;
    const char *p = s;
    while (k < n) {
        char *end;
        v[k] = strtod(p, &end);
        if (end == p || !isfinite(v[k])) return -1;
        k++;
        if (*end == 0) return k;
        if (*end != ',') return -1;
        p = end + 1;
    }
    return -1;
}

enum { O_RESUME = 256, O_ARCH, O_WIDTH, O_SIZE, O_CHANNELS, O_EPOCHS, O_OPTIM,
       O_LR, O_WD, O_MOMENTUM, O_WARMUP, O_TEMP, O_SEED, O_SCALE, O_RATIO,
       O_JITTER, O_PFLIP, O_PJITTER, O_PGRAY, O_MEAN, O_STD, O_LOG, O_KNNSET,
       O_KNNBANK, O_KNNK, O_KNNT, O_KNNLIMIT, O_MAXSTEPS, O_INIT, O_CROPMODE,
       O_LOCALSCALE, O_PLATEAU, O_METHOD, O_MOCOQUEUE, O_MOCOMOM, O_DPCLIP, O_DPNOISE, O_DPEPS, O_DPDELTA,
       O_DPGROUP, O_DEVICE, O_PRECISION, O_DETERMINISTIC, O_WORLD, O_RANK, O_RENDEZVOUS, O_SYNCBN,
       O_VERSION };

int main(int argc, char **argv) {
    if (pe_cli_init_fds()) return PE_EXIT_ERROR;
    static const struct option lo[] = {
        {"store", 1, 0, 'S'}, {"set", 1, 0, 's'}, {"output", 1, 0, 'o'},
        {"resume", 1, 0, O_RESUME}, {"arch", 1, 0, O_ARCH}, {"width", 1, 0, O_WIDTH},
        {"size", 1, 0, O_SIZE}, {"channels", 1, 0, O_CHANNELS}, {"epochs", 1, 0, O_EPOCHS},
        {"batch", 1, 0, 'b'}, {"optim", 1, 0, O_OPTIM}, {"lr", 1, 0, O_LR},
        {"wd", 1, 0, O_WD}, {"momentum", 1, 0, O_MOMENTUM}, {"warmup", 1, 0, O_WARMUP},
        {"temperature", 1, 0, O_TEMP}, {"seed", 1, 0, O_SEED}, {"threads", 1, 0, 'j'},
        {"device", 1, 0, O_DEVICE}, {"precision", 1, 0, O_PRECISION}, {"deterministic", 0, 0, O_DETERMINISTIC},
        {"world", 1, 0, O_WORLD}, {"rank", 1, 0, O_RANK}, {"rendezvous", 1, 0, O_RENDEZVOUS},
        {"sync-bn", 0, 0, O_SYNCBN},
        {"crop-scale", 1, 0, O_SCALE}, {"crop-ratio", 1, 0, O_RATIO},
        {"jitter", 1, 0, O_JITTER}, {"p-flip", 1, 0, O_PFLIP}, {"p-jitter", 1, 0, O_PJITTER},
        {"p-gray", 1, 0, O_PGRAY}, {"mean", 1, 0, O_MEAN}, {"std", 1, 0, O_STD},
        {"log", 1, 0, O_LOG}, {"knn-set", 1, 0, O_KNNSET}, {"knn-bank", 1, 0, O_KNNBANK},
        {"knn-k", 1, 0, O_KNNK}, {"knn-t", 1, 0, O_KNNT}, {"knn-limit", 1, 0, O_KNNLIMIT},
        {"max-steps", 1, 0, O_MAXSTEPS}, {"init", 1, 0, O_INIT},
        {"crop-mode", 1, 0, O_CROPMODE}, {"local-scale", 1, 0, O_LOCALSCALE},
        {"stop-plateau", 1, 0, O_PLATEAU}, {"method", 1, 0, O_METHOD},
        {"moco-queue", 1, 0, O_MOCOQUEUE}, {"moco-momentum", 1, 0, O_MOCOMOM},
        {"dp-clip", 1, 0, O_DPCLIP}, {"dp-noise", 1, 0, O_DPNOISE},
        {"dp-epsilon", 1, 0, O_DPEPS}, {"dp-delta", 1, 0, O_DPDELTA},
        {"dp-group", 1, 0, O_DPGROUP},
        {"help", 0, 0, 'h'}, {"version", 0, 0, O_VERSION},
        {0, 0, 0, 0}};
    pe_train_opts o;
    pe_train_opts_default(&o);
    o.prog = prog;
    /* data parallelism from the environment (a launcher's), flags win */
    static const char *const group_env[2] = {"PE_WORLD_SIZE", "PE_RANK"};
    for (int i = 0; i < 2; i++) {
        const char *v = getenv(group_env[i]);
        uint64_t n;
        if (!v || !*v) continue;
        if (pe_parse_u64(v, i == 0 ? 1 : 0, 4095 + (i == 0), &n))
            return pe_cli_usage(prog, "$%s: %s", group_env[i], pe_errmsg());
        if (i == 0) o.world = (int)n;
        else o.rank = (int)n;
    }
    if (getenv("PE_RENDEZVOUS") && *getenv("PE_RENDEZVOUS")) o.rendezvous = getenv("PE_RENDEZVOUS");
    /* a test hook: augment on the host even when the GPU could
     * (tests/gpu/train.sh checks that both give the same bytes) */
    o.host_augment = getenv("PE_HOST_AUGMENT") && *getenv("PE_HOST_AUGMENT");
    const char *store = NULL;
    int c, lr_set = 0, wd_set = 0, have_mean = 0, have_std = 0, local_scale_set = 0;
    int temp_set = 0, moco_set = 0, dp_set = 0;
    double d, l[4];
    uint64_t u;
    opterr = 0;
    /* the option being parsed, named as the user may have written it */
    int li = -1;
    char optname[64];
#define OPTNAME()                                                                   \
    (li >= 0 ? (snprintf(optname, sizeof optname, "--%s", lo[li].name), optname)     \
             : (snprintf(optname, sizeof optname, "-%c", c), optname))
#define NUM(lo_, hi_, dst)                                                     \
    do {                                                                       \
        if (pe_parse_double(optarg, lo_, hi_, &d))                                \
            return pe_cli_usage(prog, "%s: %s", OPTNAME(), pe_errmsg());       \
        dst = d;                                                               \
    } while (0)
#define INT(lo_, hi_, dst)                                                     \
    do {                                                                       \
        if (pe_parse_u64(optarg, lo_, hi_, &u))                                \
            return pe_cli_usage(prog, "%s: %s", OPTNAME(), pe_errmsg());       \
        dst = u;                                                               \
    } while (0)
    while ((li = -1, c = getopt_long(argc, argv, ":S:s:o:b:j:h", lo, &li)) != -1) {
        switch (c) {
        case 'S': store = optarg; break;
        case 's': o.set = optarg; break;
        case 'o': o.out = optarg; break;
        case O_RESUME: o.resume = optarg; break;
        case O_ARCH:
            if (pe_arch_parse(optarg, &o.arch)) return pe_cli_usage(prog, "%s", pe_errmsg());
            break;
        case O_WIDTH: NUM(0.0625, 16, o.width); break;
        case O_SIZE: INT(8, 1024, o.size); break;
        case O_CHANNELS:
            if (strcmp(optarg, "1") && strcmp(optarg, "3"))
                return pe_cli_usage(prog, "--channels takes 1 or 3");
            o.channels = atoi(optarg);
            break;
        case O_EPOCHS: INT(0, 1000000, o.epochs); break;
        case 'b': INT(2, 65536, o.batch); break;
        case O_OPTIM:
            if (!strcmp(optarg, "adam")) o.optim = PE_OPT_ADAM;
            else if (!strcmp(optarg, "sgd")) o.optim = PE_OPT_SGD;
            else return pe_cli_usage(prog, "--optim takes adam or sgd");
            break;
        case O_LR: NUM(1e-9, 100, o.lr); lr_set = 1; break;
        case O_WD: NUM(0, 0.999, o.wd); wd_set = 1; break;
        case O_MOMENTUM: NUM(0, 0.999, o.momentum); break;
        case O_WARMUP: NUM(0, 1e6, o.warmup); break;
        case O_TEMP: NUM(1e-3, 100, o.temperature); temp_set = 1; break;
        case O_SEED: INT(0, UINT64_MAX, o.seed); break;
        case 'j': INT(1, 256, o.threads); break;
        case O_DEVICE:
            if (pe_device_parse(optarg, &o.device, &o.device_index))
                return pe_cli_usage(prog, "%s", pe_errmsg());
            break;
        case O_PRECISION:
            if (pe_precision_parse(optarg, &o.precision))
                return pe_cli_usage(prog, "%s", pe_errmsg());
            break;
        case O_DETERMINISTIC: o.deterministic = 1; break;
        case O_WORLD: INT(1, 4096, o.world); break;
        case O_RANK: INT(0, 4095, o.rank); break;
        case O_RENDEZVOUS: o.rendezvous = optarg; break;
        case O_SYNCBN: o.sync_bn = 1; break;
        case O_SCALE:
            if (parse_list(optarg, l, 2) != 2 || !(l[0] > 0 && l[0] <= l[1] && l[1] <= 1))
                return pe_cli_usage(prog, "--crop-scale takes LO,HI with 0 < LO <= HI <= 1");
            o.aug.scale[0] = l[0];
            o.aug.scale[1] = l[1];
            break;
        case O_RATIO:
            if (parse_list(optarg, l, 2) != 2 || !(l[0] > 0 && l[0] <= l[1] && l[1] < 100))
                return pe_cli_usage(prog, "--crop-ratio takes LO,HI with 0 < LO <= HI");
            o.aug.ratio[0] = l[0];
            o.aug.ratio[1] = l[1];
            break;
        case O_JITTER:
            if (parse_list(optarg, l, 4) != 4 || l[0] < 0 || l[1] < 0 || l[2] < 0 ||
                l[3] < 0 || l[3] > 0.5)
                return pe_cli_usage(prog, "--jitter takes B,C,S,H (>= 0, H <= 0.5)");
            o.aug.brightness = l[0];
            o.aug.contrast = l[1];
            o.aug.saturation = l[2];
            o.aug.hue = l[3];
            break;
        case O_PFLIP: NUM(0, 1, o.aug.p_flip); break;
        case O_PJITTER: NUM(0, 1, o.aug.p_jitter); break;
        case O_PGRAY: NUM(0, 1, o.aug.p_gray); break;
        case O_MEAN:
        case O_STD: {
            int k = parse_list(optarg, l, 3);
            if (k != 1 && k != 3) return pe_cli_usage(prog, "%s takes 1 or 3 numbers", argv[optind - 1]);
            for (int i = 0; i < 3; i++) {
                float v = (float)l[k == 1 ? 0 : i];
                if (c == O_MEAN) o.aug.mean[i] = v;
                else if (v <= 0) return pe_cli_usage(prog, "--std must be positive");
                else o.aug.std[i] = v;
            }
            if (c == O_MEAN) have_mean = 1; else have_std = 1;
            break;
        }
        case O_LOG: o.log = optarg; break;
        case O_KNNSET: o.knn_set = optarg; break;
        case O_KNNBANK: o.knn_bank = optarg; break;
        case O_KNNK: INT(1, 100000, o.knn_k); break;
        case O_KNNT: NUM(1e-3, 100, o.knn_t); break;
        case O_KNNLIMIT: INT(1, UINT64_MAX, o.knn_limit); break;
        case O_MAXSTEPS: INT(1, UINT64_MAX, o.max_steps); break;
        case O_INIT: o.init = optarg; break;
        case O_CROPMODE:
            if (!strcmp(optarg, "independent")) o.aug.crop_mode = PE_CROP_INDEPENDENT;
            else if (!strcmp(optarg, "local")) o.aug.crop_mode = PE_CROP_LOCAL;
            else return pe_cli_usage(prog, "--crop-mode takes independent or local");
            break;
        case O_LOCALSCALE:
            if (parse_list(optarg, l, 2) != 2 || !(l[0] > 0 && l[0] <= l[1] && l[1] <= 1))
                return pe_cli_usage(prog, "--local-scale takes LO,HI with 0 < LO <= HI <= 1");
            o.aug.local_scale[0] = l[0];
            o.aug.local_scale[1] = l[1];
            local_scale_set = 1;
            break;
        case O_PLATEAU: INT(1, 1000000, o.stop_plateau); break;
        case O_METHOD:
            if (!strcmp(optarg, "simclr")) o.method = PE_METHOD_SIMCLR;
            else if (!strcmp(optarg, "moco")) o.method = PE_METHOD_MOCO;
            else return pe_cli_usage(prog, "--method takes simclr or moco");
            break;
        case O_MOCOQUEUE:
            if (pe_parse_u64(optarg, 1, PE_MOCO_QUEUE_MAX, &u))
                return pe_cli_usage(prog, "--moco-queue: %s", pe_errmsg());
            o.moco_queue = (int)u;
            moco_set = 1;
            break;
        case O_MOCOMOM:
            if (pe_parse_double(optarg, 0, 1, &d))
                return pe_cli_usage(prog, "--moco-momentum: %s", pe_errmsg());
            o.moco_momentum = d;
            moco_set = 1;
            break;
        case O_DPCLIP:
            if (pe_parse_double(optarg, 0, 1e30, &d) || !(d > 0))
                return pe_cli_usage(prog, "--dp-clip takes a clip norm above 0");
            o.dp_clip = d;
            break;
        case O_DPNOISE:
            if (pe_parse_double(optarg, 0, 1e6, &d))
                return pe_cli_usage(prog, "--dp-noise takes a noise multiplier, 0 to 1e6");
            o.dp_noise = d;
            dp_set = 1;
            break;
        case O_DPEPS:
            if (pe_parse_double(optarg, 0, 1e6, &d) || !(d > 0))
                return pe_cli_usage(prog, "--dp-epsilon takes an epsilon above 0");
            o.dp_epsilon = d;
            dp_set = 1;
            break;
        case O_DPDELTA:
            if (pe_parse_double(optarg, 0, 1, &d) || !(d > 0 && d < 1))
                return pe_cli_usage(prog, "--dp-delta takes a delta with 0 < delta < 1");
            o.dp_delta = d;
            dp_set = 1;
            break;
        case O_DPGROUP:
            if (pe_parse_u64(optarg, 2, 65536, &u))
                return pe_cli_usage(prog, "--dp-group: %s", pe_errmsg());
            o.dp_group = (int)u;
            dp_set = 1;
            break;
        case 'h': usage(stdout); return PE_EXIT_OK;
        case O_VERSION: printf("pe-train %s\n", PE_VERSION_STRING); return PE_EXIT_OK;
        case ':': return pe_cli_usage(prog, "option '%s' needs a value", argv[optind - 1]);
        default: return pe_cli_usage(prog, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return pe_cli_usage(prog, "unexpected argument '%s'", argv[optind]);
    if (!o.set) return pe_cli_usage(prog, "name the training set with --set");
    if (!o.out) return pe_cli_usage(prog, "name the checkpoint with -o FILE");
    if (have_mean != have_std) return pe_cli_usage(prog, "--mean and --std go together");
    o.have_norm = have_mean;
    if (o.optim == PE_OPT_SGD) {
        if (!lr_set) o.lr = 0.06;
        if (!wd_set) o.wd = 5e-4;
    }
    if (o.method == PE_METHOD_MOCO) {
        if (!temp_set) o.temperature = 0.2f;
        if (o.moco_queue % o.batch)
            return pe_cli_usage(prog, "--moco-queue %d is not a multiple of the batch (%d)",
                                o.moco_queue, o.batch);
    } else if (moco_set) {
        return pe_cli_usage(prog, "--moco-queue and --moco-momentum go with --method moco");
    }
    if (o.dp_clip > 0) {
        if ((o.dp_noise >= 0) == (o.dp_epsilon > 0))
            return pe_cli_usage(prog, "--dp-clip takes exactly one of --dp-noise and --dp-epsilon");
        if (o.batch % o.dp_group)
            return pe_cli_usage(prog, "--dp-group %d does not divide the batch (%d)", o.dp_group,
                                o.batch);
        if (o.method != PE_METHOD_SIMCLR)
            return pe_cli_usage(prog, "--dp-clip trains --method simclr only (MoCo's queue "
                                "carries earlier batches into every step)");
    } else if (dp_set) {
        return pe_cli_usage(prog, "--dp-noise, --dp-epsilon, --dp-delta and --dp-group go "
                            "with --dp-clip");
    }
    if (o.knn_bank && !o.knn_set) return pe_cli_usage(prog, "--knn-bank goes with --knn-set");
    if (o.init && o.resume)
        return pe_cli_usage(prog, "--init and --resume do not go together (a resume continues "
                            "its own run)");
    if (local_scale_set && o.aug.crop_mode != PE_CROP_LOCAL)
        return pe_cli_usage(prog, "--local-scale goes with --crop-mode local");
    if (o.stop_plateau && !o.knn_set)
        return pe_cli_usage(prog, "--stop-plateau watches the kNN monitor: give --knn-set");
    if (o.stop_plateau && o.max_steps)
        return pe_cli_usage(prog, "--stop-plateau keeps whole epochs; cap the run with "
                            "--epochs, not --max-steps");
    if (o.arch == PE_ARCH_SMALL && o.width != 1.0)
        return pe_cli_usage(prog, "--width applies to resnet18 only");
    o.progress = isatty(2);

    pe_store *st;
    int rc = pe_store_open(&st, pe_store_path(store), PE_STORE_RDONLY);
    if (rc) return pe_cli_fail(prog, rc);
    pe_train_stats s;
    rc = pe_train_run(st, &o, stderr, &s);
    pe_store_close(st);
    if (rc) return pe_cli_fail(prog, rc);
    fprintf(stderr, "%s: %d epochs, %llu steps, last loss %.4f, %.1f images/s, "
            "%.1f s waiting for data of %.1f s",
            prog, s.epochs_done, (unsigned long long)s.steps, s.last_loss, s.images_per_s,
            s.wait_seconds, s.seconds);
    if (s.knn_acc >= 0) fprintf(stderr, ", kNN accuracy %.4f", s.knn_acc);
    fputc('\n', stderr);
    if (o.dp_clip > 0)
        fprintf(stderr, "%s: DP: epsilon %.4g at delta %g after %llu steps (noise multiplier "
                "%.6g, clip %g, groups of %d, sampling rate %.6g; RDP accounting with a "
                "sensitivity of %g clips per image, assuming Poisson sampling)\n", prog,
                s.dp_epsilon, o.dp_delta, (unsigned long long)s.steps, s.dp_sigma, o.dp_clip,
                o.dp_group, s.dp_q, PE_DP_SENSITIVITY);
    if (o.stop_plateau && s.best_epoch >= 0) {
        if (s.stopped_plateau)
            fprintf(stderr, "%s: stopped by --stop-plateau %d after epoch %d; ", prog,
                    o.stop_plateau, s.epochs_done);
        else
            fprintf(stderr, "%s: ", prog);
        fprintf(stderr, "%s holds epoch %d, the best (kNN accuracy %.4f)\n", pe_esc(o.out),
                s.best_epoch, s.best_acc);
    }
    return PE_EXIT_OK;
}
