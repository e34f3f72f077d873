/*
 * kernels.c - times the CPU backend's convolutions (forward, backward-data,
 * backward-filter) on every conv shape of the two SimCLR encoders of
 * ../shared/bench/torch_simclr_step.py, at their batch of views, and
 * sets each against the "roof": single-threaded sgemm (the one the
 * backend calls) on exactly the GEMM one forward item runs (K x CRS times
 * CRS x g*P*Q, with the columns already unfolded), timed by the thread's
 * CPU clock and multiplied by the thread count. The gap to the roof is
 * the cost of unfolding, folding, scattering and scheduling.
 *
 * Not for: correctness (tests/unit/test_kernels.c) or the whole step.
 *
 * Build and run (after make):
 *   cc -O2 -D_GNU_SOURCE -Ilib -Ikernels bench/kernels.c build/libpe.a \
 *      -lopenblas -lpthread -lm -o build/bench-kernels   (drop -lopenblas
 *      for a build without it)
 *   build/bench-kernels [small|resnet18|all] [threads] [reps]
 * Prints one line per shape and the per-step totals (each shape times the
 * number of layers that have it); best of reps runs after a warm-up.
 * BENCH_CPU=1 in the environment times with CPU time instead (see
 * clock_now), for comparing kernels on a loaded machine.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cpu/cpu.h"
#include "pe.h"

typedef struct layer {
    int C, H, K, R, stride, pad, count;
} layer;

static const layer small_layers[] = { /* 28x28x1, batch 256 -> 512 views */
    {1, 28, 16, 3, 1, 1, 1},   {16, 28, 32, 3, 1, 1, 1}, {32, 28, 32, 3, 1, 1, 1},
    {32, 28, 64, 3, 2, 1, 1},  {64, 14, 64, 3, 1, 1, 1}, {64, 14, 128, 3, 2, 1, 1},
    {128, 7, 128, 3, 1, 1, 1},
};

static const layer resnet_layers[] = { /* 32x32x3, batch 128 -> 256 views */
    {3, 32, 64, 3, 1, 1, 1},    {64, 32, 64, 3, 1, 1, 4},   {64, 32, 128, 3, 2, 1, 1},
    {128, 16, 128, 3, 1, 1, 3}, {64, 32, 128, 1, 2, 0, 1},  {128, 16, 256, 3, 2, 1, 1},
    {256, 8, 256, 3, 1, 1, 3},  {128, 16, 256, 1, 2, 0, 1}, {256, 8, 512, 3, 2, 1, 1},
    {512, 4, 512, 3, 1, 1, 3},  {256, 8, 512, 1, 2, 0, 1},
};

static float *rand_buf(pe_backend *b, size_t n) {
    float *p = b->alloc(b, sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "bench-kernels: out of memory (%zu floats)\n", n);
        exit(1);
    }
    static uint32_t seed = 12345;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) * 0x1.0p-24f - 0.5f;
    }
    return p;
}

enum { FWD, DATA, FILT, ROOF };

/* With BENCH_CPU set, the clock is the process's CPU time divided by the
 * thread count: what the op would take on idle cores, and much steadier
 * than wall time on a machine that other jobs load (it hides load
 * imbalance between the threads, though). */
static int use_cpu_clock, nthreads = 2;

static double clock_now(void) {
    if (!use_cpu_clock) return pe_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (ts.tv_sec + ts.tv_nsec * 1e-9) / nthreads;
}

static double thread_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double best_of(pe_backend *b, int op, const pe_conv_desc *d, float *x, float *w,
                      float *y, float *work, float *gA, float *gB, float *gC, int gM,
                      int gN, int gK, int reps) {
    double best = 1e30;
    if (op == ROOF) reps *= 4; /* short: take more samples */
    for (int r = 0; r <= reps; r++) { /* r == 0 warms up */
        double t0 = op == ROOF ? thread_now() : clock_now();
        switch (op) {
        case FWD: b->conv_fwd(b, d, x, w, y, work); break;
        case DATA: b->conv_bwd_data(b, d, y, w, x, work); break;
        case FILT: b->conv_bwd_filter(b, d, x, y, w, work); break;
        default: pe_cpu_sgemm(0, 0, gM, gN, gK, 1, gA, gK, gB, gN, 0, gC, gN); break;
        }
        double t = (op == ROOF ? thread_now() : clock_now()) - t0;
        if (r > 0 && t < best) best = t;
    }
    return best;
}

static void run_model(pe_backend *b, const char *name, const layer *ls, size_t nl, int N,
                      int reps) {
    double tot[4] = {0}, flops_tot = 0;
    printf("%s, N=%d views: GFLOP/s (ms)\n", name, N);
    printf("  %-26s %16s %16s %16s %16s\n", "layer", "fwd", "bwd-data", "bwd-filter",
           "sgemm roof");
    for (size_t i = 0; i < nl; i++) {
        const layer *l = &ls[i];
        pe_conv_desc d = {N, l->C, l->H, l->H, l->K, l->R, l->R, l->stride, l->pad, 0, 0};
        pe_conv_desc_finish(&d);
        size_t nx = (size_t)N * l->C * l->H * l->H, nw = (size_t)l->K * l->C * l->R * l->R;
        size_t ny = (size_t)N * l->K * d.P * d.Q;
        int PQ = d.P * d.Q, gM = l->K, gK = l->C * l->R * l->R;
        int gN = PQ * ((256 + PQ - 1) / PQ); /* conv.c's COLS = 256 */
        float *x = rand_buf(b, nx), *w = rand_buf(b, nw), *y = rand_buf(b, ny);
        float *work = b->alloc(b, b->conv_workspace(b, &d) + 64);
        float *gA = rand_buf(b, (size_t)gM * gK), *gB = rand_buf(b, (size_t)gK * gN);
        float *gC = rand_buf(b, (size_t)gM * gN);
        double flops = 2.0 * N * l->K * gK * d.P * d.Q, t[4];
        for (int op = 0; op < 4; op++)
            t[op] = best_of(b, op, &d, x, w, y, work, gA, gB, gC, gM, gN, gK, reps);
        double roof = 2.0 * gM * gN * gK / t[ROOF] * nthreads;
        char label[64];
        snprintf(label, sizeof label, "%dx%d %d->%d %dx%d s%d x%d", l->H, l->H, l->C, l->K,
                 l->R, l->R, l->stride, l->count);
        printf("  %-26s", label);
        for (int op = 0; op < 3; op++) {
            printf(" %7.1f (%6.1f)", flops / t[op] * 1e-9, t[op] * 1e3);
            tot[op] += t[op] * l->count;
        }
        printf(" %7.1f\n", roof * 1e-9);
        tot[ROOF] += flops / roof * l->count;
        flops_tot += flops * l->count;
        b->free(b, gC), b->free(b, gB), b->free(b, gA), b->free(b, work);
        b->free(b, y), b->free(b, w), b->free(b, x);
    }
    printf("  %-26s", "per step (all layers)");
    for (int op = 0; op < 3; op++)
        printf(" %7.1f (%6.0f)", flops_tot / tot[op] * 1e-9, tot[op] * 1e3);
    printf(" %7.1f\n  conv total %.0f ms per step (fwd + bwd-data + bwd-filter); at the "
           "roof %.0f ms\n",
           flops_tot / tot[ROOF] * 1e-9, (tot[0] + tot[1] + tot[2]) * 1e3, 3 * tot[ROOF] * 1e3);
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "all";
    int threads = nthreads = argc > 2 ? atoi(argv[2]) : 2;
    use_cpu_clock = getenv("BENCH_CPU") != NULL;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    pe_backend *b = pe_backend_cpu(threads);
    if (!b) {
        fprintf(stderr, "bench-kernels: cannot create the CPU backend\n");
        return 1;
    }
    printf("cpu backend, %d threads, gemm: %s, clock: %s\n", threads, pe_cpu_blas_name(),
           use_cpu_clock ? "process CPU time / threads" : "wall");
    if (!strcmp(which, "small") || !strcmp(which, "all"))
        run_model(b, "small 28x28x1", small_layers, sizeof small_layers / sizeof *small_layers,
                  512, reps);
    if (!strcmp(which, "resnet18") || !strcmp(which, "all"))
        run_model(b, "resnet18 32x32x3", resnet_layers,
                  sizeof resnet_layers / sizeof *resnet_layers, 256, reps);
    b->destroy(b);
    return 0;
}
