/*
 * pe-eval - downstream evaluation of a frozen encoder on labeled sets of the
 * store: clean accuracy of a probe and the attack success rate of targeted
 * poisoning. Options: docs/man/pe-eval.1.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "eval.h"
#include "pe.h"

static const char *prog = "pe-eval";

static void usage(FILE *f) {
    fputs(
"usage: pe-eval [options] -e ENCODER --train SET --test SET [--train SET --test SET]...\n"
"Train a probe on the frozen encoder's features of a labeled set, test it on\n"
"another, and report clean accuracy and the attack's success on target images.\n"
"\n"
"  -S, --store PATH       store (default $PE_STORE, else ./pe.lmdb)\n"
"  -e, --encoder FILE     safetensors: a pe-train checkpoint, or a PyTorch\n"
"                         state_dict (then --arch, --size, --channels,\n"
"                         --mean and --std are required)\n"
"      --train SET        downstream training set (labeled); repeatable, the\n"
"      --test SET         i-th --train pairs with the i-th --test\n"
"  -t, --targets FILE     target lines KEY[\\tCLASS] ('-': stdin): test images\n"
"                         the attack wants classified as CLASS\n"
"      --target-class C   the target class of every target line (their fields\n"
"                         are ignored)\n"
"      --probe linear|mlp logistic regression (default) or BadEncoder's MLP\n"
"      --probe-l2 X       linear: L2 penalty (default 1e-4)\n"
"      --probe-iters N    linear: L-BFGS iterations (default 200)\n"
"      --probe-epochs N   mlp: epochs (default 500)\n"
"      --probe-shuffle    mlp: reshuffle every epoch (default: key order)\n"
"      --seed N           mlp: seed of init, dropout, shuffle (default 1)\n"
"      --cache FILE       feature cache (safetensors), reused when it matches\n"
"      --predictions FILE write KEY\\tTRUE\\tPREDICTED (class ids) per test image\n"
"      --arch A, --width W, --size N, --channels 1|3, --mean A[,B,C],\n"
"      --std A[,B,C]      describe the encoder; override a checkpoint's\n"
"  -b, --batch N          images per forward pass (default 256)\n"
"  -j, --threads N        compute threads (default: online CPUs)\n"
"      --device D         auto (default: the GPU when one is present), cpu,\n"
"                         cuda or cuda:N\n"
"      --precision P      on a GPU: fp32 (default), tf32 or bf16\n"
"      --deterministic    on a GPU: deterministic convolution algorithms\n"
"      --json             NDJSON: one object per task and per target\n"
"  -q, --quiet            no informational lines on stderr\n"
"  -h, --help             this help\n"
"      --version          print the version\n"
"Exit: 0 ok, 1 error, 2 usage.\n",
        f);
}

enum { O_TRAIN = 256, O_TEST, O_TCLASS, O_PROBE, O_L2, O_ITERS, O_EPOCHS, O_SHUFFLE, O_SEED,
       O_CACHE, O_PRED, O_ARCH, O_WIDTH, O_SIZE, O_CHANNELS, O_MEAN, O_STD, O_JSON,
       O_DEVICE, O_PRECISION, O_DETERMINISTIC, O_VERSION };

int main(int argc, char **argv) {
    if (pe_cli_init_fds()) return PE_EXIT_ERROR;
    static const struct option lo[] = {
        {"store", 1, 0, 'S'}, {"encoder", 1, 0, 'e'}, {"train", 1, 0, O_TRAIN},
        {"test", 1, 0, O_TEST}, {"targets", 1, 0, 't'}, {"target-class", 1, 0, O_TCLASS},
        {"probe", 1, 0, O_PROBE}, {"probe-l2", 1, 0, O_L2}, {"probe-iters", 1, 0, O_ITERS},
        {"probe-epochs", 1, 0, O_EPOCHS}, {"probe-shuffle", 0, 0, O_SHUFFLE},
        {"seed", 1, 0, O_SEED}, {"cache", 1, 0, O_CACHE}, {"predictions", 1, 0, O_PRED},
        {"arch", 1, 0, O_ARCH},
        {"width", 1, 0, O_WIDTH}, {"size", 1, 0, O_SIZE}, {"channels", 1, 0, O_CHANNELS},
        {"mean", 1, 0, O_MEAN}, {"std", 1, 0, O_STD}, {"batch", 1, 0, 'b'},
        {"threads", 1, 0, 'j'}, {"device", 1, 0, O_DEVICE},
        {"precision", 1, 0, O_PRECISION}, {"deterministic", 0, 0, O_DETERMINISTIC}, {"json", 0, 0, O_JSON}, {"quiet", 0, 0, 'q'},
        {"help", 0, 0, 'h'}, {"version", 0, 0, O_VERSION}, {0, 0, 0, 0}};
    pe_eval_opts o;
    pe_eval_opts_default(&o);
    o.prog = prog;
    const char *store = NULL;
    /* at most argc pairs: every --train takes an argument */
    const char **trains = calloc((size_t)argc, sizeof *trains);
    const char **tests = calloc((size_t)argc, sizeof *tests);
    pe_eval_task *tasks = calloc((size_t)argc, sizeof *tasks);
    size_t ntr = 0, nte = 0;
    int c, linear_opt = 0, mlp_opt = 0, rc = PE_EXIT_OK;
    double d;
    uint64_t u;
    if (!trains || !tests || !tasks) {
        fprintf(stderr, "%s: out of memory\n", prog);
        rc = PE_EXIT_ERROR;
        goto done;
    }
    opterr = 0;
#define USAGE(...)                                                             \
    do {                                                                       \
        rc = pe_cli_usage(prog, __VA_ARGS__);                                  \
        goto done;                                                             \
    } while (0)
#define NUM(lo_, hi_, dst)                                                     \
    do {                                                                       \
        if (pe_parse_double(optarg, lo_, hi_, &d)) USAGE("%s: %s", argv[optind - 1], pe_errmsg()); \
        dst = d;                                                               \
    } while (0)
#define INT(lo_, hi_, dst)                                                     \
    do {                                                                       \
        if (pe_parse_u64(optarg, lo_, hi_, &u)) USAGE("%s: %s", argv[optind - 1], pe_errmsg()); \
        dst = u;                                                               \
    } while (0)
    while ((c = getopt_long(argc, argv, ":S:e:t:b:j:qh", lo, NULL)) != -1) {
        switch (c) {
        case 'S': store = optarg; break;
        case 'e': o.enc.path = optarg; break;
        case O_TRAIN: trains[ntr++] = optarg; break;
        case O_TEST: tests[nte++] = optarg; break;
        case 't': o.targets = optarg; break;
        case O_TCLASS: o.target_class = optarg; break;
        case O_PROBE:
            if (!strcmp(optarg, "linear")) o.probe.kind = PE_PROBE_LINEAR;
            else if (!strcmp(optarg, "mlp")) o.probe.kind = PE_PROBE_MLP;
            else USAGE("--probe takes linear or mlp");
            break;
        case O_L2: NUM(0, 1e6, o.probe.l2); linear_opt = 1; break;
        case O_ITERS: INT(0, 1000000, o.probe.iters); linear_opt = 1; break;
        case O_EPOCHS: INT(1, 1000000, o.probe.epochs); mlp_opt = 1; break;
        case O_SHUFFLE: o.probe.shuffle = 1; mlp_opt = 1; break;
        case O_SEED: INT(0, UINT64_MAX, o.probe.seed); mlp_opt = 1; break;
        case O_CACHE: o.cache = optarg; break;
        case O_PRED: o.predictions = optarg; break;
        case O_ARCH:
            if (pe_arch_parse(optarg, &o.enc.arch)) USAGE("%s", pe_errmsg());
            o.enc.have_arch = 1;
            break;
        case O_WIDTH: NUM(0.0625, 16, o.enc.width); o.enc.have_width = 1; break;
        case O_SIZE: INT(8, 1024, o.enc.size); break;
        case O_CHANNELS:
            if (strcmp(optarg, "1") && strcmp(optarg, "3")) USAGE("--channels takes 1 or 3");
            o.enc.channels = atoi(optarg);
            break;
        case O_MEAN:
            if (pe_parse_floats3(optarg, o.enc.mean)) USAGE("--mean takes 1 or 3 numbers");
            o.enc.have_mean = 1;
            break;
        case O_STD:
            if (pe_parse_floats3(optarg, o.enc.std) ||
                !(o.enc.std[0] > 0 && o.enc.std[1] > 0 && o.enc.std[2] > 0))
                USAGE("--std takes 1 or 3 positive numbers");
            o.enc.have_std = 1;
            break;
        case 'b': INT(1, 65536, o.enc.batch); break;
        case 'j': INT(1, 256, o.threads); break;
        case O_DEVICE:
            if (pe_device_parse(optarg, &o.enc.device, &o.enc.device_index))
                USAGE("%s", pe_errmsg());
            break;
        case O_PRECISION:
            if (pe_precision_parse(optarg, &o.enc.precision))
                USAGE("%s", pe_errmsg());
            break;
        case O_DETERMINISTIC: o.enc.deterministic = 1; break;
        case O_JSON: o.json = 1; break;
        case 'q': o.quiet = 1; break;
        case 'h': usage(stdout); goto done;
        case O_VERSION: printf("pe-eval %s\n", PE_VERSION_STRING); goto done;
        case ':': USAGE("option '%s' needs a value", argv[optind - 1]);
        default: USAGE("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) USAGE("unexpected argument '%s'", argv[optind]);
    if (!o.enc.path) USAGE("name the encoder with -e FILE");
    if (!ntr || !nte) USAGE("name a downstream task with --train SET --test SET");
    if (ntr != nte) USAGE("%zu --train but %zu --test: they go in pairs", ntr, nte);
    if (o.target_class && !o.targets) USAGE("--target-class goes with --targets");
    if (linear_opt && o.probe.kind != PE_PROBE_LINEAR)
        USAGE("--probe-l2 and --probe-iters apply to the linear probe");
    if (mlp_opt && o.probe.kind != PE_PROBE_MLP)
        USAGE("--probe-epochs, --probe-shuffle and --seed apply to --probe mlp");
    if (o.enc.have_width && o.enc.have_arch && o.enc.arch == PE_ARCH_SMALL)
        USAGE("--width applies to resnet18 only");
    for (size_t i = 0; i < ntr; i++) {
        if (pe_set_name_ok(trains[i])) USAGE("--train: %s", pe_errmsg());
        if (pe_set_name_ok(tests[i])) USAGE("--test: %s", pe_errmsg());
        tasks[i] = (pe_eval_task){trains[i], tests[i]};
    }
    o.tasks = tasks;
    o.ntasks = ntr;
    o.progress = isatty(2);

    pe_store *st;
    int erc = pe_store_open(&st, pe_store_path(store), PE_STORE_RDONLY);
    if (erc) {
        rc = pe_cli_fail(prog, erc);
        goto done;
    }
    erc = pe_eval_run(st, &o, stdin, stdout, stderr);
    pe_store_close(st);
    if (erc) {
        rc = pe_cli_fail(prog, erc);
        goto done;
    }
    if (fflush(stdout) == EOF || ferror(stdout)) {
        fprintf(stderr, "%s: write error on standard output\n", prog);
        rc = PE_EXIT_ERROR;
    }
done:
    free(trains);
    free(tests);
    free(tasks);
    return rc;
}
