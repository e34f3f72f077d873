/*
 * train_step.c - pe's SimCLR training step on synthetic data, the same step
 * as ../shared/bench/torch_simclr_step.py: forward of 2B views in one batch,
 * NT-Xent (T 0.5), backward, SGD with momentum 0.9 (lr 0.06, wd 5e-4).
 *   train_step ARCH SIZE CHANNELS BATCH STEPS THREADS [DEVICE [PRECISION]]
 * DEVICE: cpu (default) or cuda (bench/train-gpu.sh), PRECISION: fp32
 * (default), tf32 or bf16. On the GPU the timed steps end with the
 * loss's download, so the clock covers all their work; the device memory
 * in use after the steps (cudaMemGetInfo, less what was in use before the
 * model existed) is printed as "pe device memory".
 * Prints images/s (one image = two views through the whole step), ms/step,
 * and achieved GFLOP/s (nominal direct-convolution FLOPs, 3x forward); and
 * first the resident memory at start-up (bench/train.sh subtracts it from
 * the peak, as it does for PyTorch's after its imports).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model.h"
#include "pe.h"

#ifdef PE_BENCH_CUDA
#include <cuda_runtime.h>
/* bytes in use on the backend's GPU (0 on the CPU) */
static size_t pe_bench_device_used(pe_backend *be) {
    size_t free_b = 0, total = 0;
    if (strcmp(be->name, "cuda") || cudaMemGetInfo(&free_b, &total) != cudaSuccess) return 0;
    return total - free_b;
}
#else
static size_t pe_bench_device_used(pe_backend *be) { (void)be; return 0; }
#endif

static long vm_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = atol(line + 6);
    if (f) fclose(f);
    return v;
}

int main(int argc, char **argv) {
    printf("pe start-up RSS %ld KiB\n", vm_rss_kib());
    if (argc < 7 || argc > 9) {
        fprintf(stderr, "usage: train_step ARCH SIZE CHANNELS BATCH STEPS THREADS [DEVICE [PRECISION]]\n");
        return 2;
    }
    pe_device_kind dev = PE_DEVICE_CPU;
    pe_precision prec = PE_PREC_FP32;
    int devi = 0;
    if ((argc > 7 && pe_device_parse(argv[7], &dev, &devi)) ||
        (argc > 8 && pe_precision_parse(argv[8], &prec))) {
        fprintf(stderr, "train_step: %s\n", pe_errmsg());
        return 2;
    }
    pe_arch arch;
    if (pe_arch_parse(argv[1], &arch)) return 2;
    int size = atoi(argv[2]), ch = atoi(argv[3]), B = atoi(argv[4]), steps = atoi(argv[5]);
    pe_backend *be = NULL;
    if (pe_backend_open(dev, devi, atoi(argv[6]), prec, 0, &be)) {
        fprintf(stderr, "train_step: %s\n", pe_errmsg());
        return 1;
    }
    size_t dev_before = pe_bench_device_used(be);
    pe_model_cfg cfg;
    pe_model_cfg_default(&cfg, arch, ch, size);
    pe_model *m;
    if (!be || pe_model_init(&m, &cfg, be, 1) || pe_model_set_batch(m, 2 * B)) {
        fprintf(stderr, "train_step: %s\n", pe_errmsg());
        return 1;
    }
    size_t nx = (size_t)2 * B * ch * size * size, np = pe_model_nparams(m);
    float *x = be->alloc(be, nx * sizeof(float)), *dz = be->alloc(be, (size_t)2 * B * 128 * sizeof(float));
    float *buf = be->alloc(be, np * sizeof(float)), *hx = malloc(nx * sizeof(float));
    if (!x || !dz || !buf || !hx || be->fill(be, np, 0, buf)) {
        fprintf(stderr, "train_step: out of memory\n");
        return 1;
    }
    uint64_t s = 12345;
    for (size_t i = 0; i < nx; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        hx[i] = (float)(s >> 40) / (float)(1 << 24);
    }
    if (be->upload(be, x, hx, nx * sizeof(float))) {
        fprintf(stderr, "train_step: %s\n", pe_errmsg());
        return 1;
    }
    free(hx);
    double t0 = 0;
    for (int it = 0; it <= steps; it++) {
        if (it == 1) t0 = pe_now(); /* the first step warms up */
        float loss;
        if (pe_model_forward(m, x, 1, 1) ||
            be->ntxent(be, 2 * B, 128, pe_model_z(m), 0.5f, &loss, dz) ||
            pe_model_backward(m, dz) ||
            be->sgd(be, np, pe_model_params(m), pe_model_grads(m), buf, 0.06f, 0.9f, 5e-4f, it == 0)) {
            fprintf(stderr, "train_step: %s\n", pe_errmsg());
            return 1;
        }
    }
    double dt = pe_now() - t0;
    double flops = 3.0 * pe_model_flops_per_input(m) * 2 * B * steps;
    printf("pe %s %dx%dx%d batch=%d %s: %.1f images/s, %.1f ms/step, %.1f GFLOP/s\n",
           argv[1], size, size, ch, B, be->name, steps * B / dt, dt / steps * 1000, flops / dt / 1e9);
    if (strcmp(be->name, "cpu"))
        printf("pe device memory %.0f MiB (%s)\n",
               (double)(pe_bench_device_used(be) - dev_before) / (1 << 20), pe_precision_name(prec));
    be->free(be, x);
    be->free(be, dz);
    be->free(be, buf);
    pe_model_free(m);
    be->destroy(be);
    return 0;
}
