/*
 * gemm.c - dense matrix multiply for the CPU backend: the single-threaded
 * pe_cpu_sgemm that the convolutions build on, and the backend's gemm op,
 * which cuts C into tiles (fixed by the shape) and runs one single-threaded
 * sgemm per tile on the pool.
 *
 * Not for: convolution layout work (conv.c) or anything but float32.
 *
 * With PE_HAVE_OPENBLAS (Makefile: -DPE_HAVE_OPENBLAS, -lopenblas) the
 * work goes to cblas_sgemm with OpenBLAS held to one thread: the pool owns
 * the cores, and two pools (ours calling a threaded BLAS) would fight over
 * two cores. Without it, a packed, blocked fallback with an AVX2/FMA micro
 * kernel chosen at run time (__builtin_cpu_supports) and a scalar one
 * otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "pe.h"

#ifdef PE_HAVE_OPENBLAS
#include <cblas.h>

/* Present in DYNAMIC_ARCH builds of OpenBLAS (Debian's), absent in a
 * single-target build: weak, so both link. */
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

/* OpenBLAS 0.3.21 picks its kernels from the CPU model number and falls
 * back to "Prescott" (SSE3, ~12 GFLOP/s here) on models it does not know,
 * such as the Xeon (family 6, model 207) this was written on, which runs
 * the SkylakeX kernels at ~100 GFLOP/s per core. When the guess was
 * Prescott, the user did not choose a core (OPENBLAS_CORETYPE), and the CPU
 * has the instructions, re-run OpenBLAS's own selection with the core
 * named. setenv is not thread-safe: pe_backend_cpu, the only caller, says
 * to create the backend before starting threads that read the
 * environment. */
static void blas_fix_coretype(void) {
    const char *core = openblas_get_corename();
    if (!core || strcmp(core, "Prescott") != 0) return;
    if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit) return;
    if (getenv("OPENBLAS_CORETYPE")) return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want) return;
    if (setenv("OPENBLAS_CORETYPE", want, 1) != 0) return;
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
}

void pe_cpu_blas_setup(void) {
    static int done;
    if (done) return;
    done = 1;
    blas_fix_coretype();
    openblas_set_num_threads(1);
}

const char *pe_cpu_blas_name(void) {
    static char name[64];
    const char *core = openblas_get_corename();
    snprintf(name, sizeof name, "openblas %s", core ? core : "?");
    return name;
}

void pe_cpu_sgemm(int transA, int transB, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
                ldb, beta, C, ldc);
}

#else /* the fallback */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PE_GEMM_X86 1
#endif

/* Blocking: a kc x nc panel of op(B) is packed into NR-wide column strips,
 * an mc x kc block of op(A) into MR-high row strips; the micro kernel
 * computes one MR x NR tile of C over kc. */
enum { MR = 6, NR = 16, KC = 256, MC = 96, NC = 1024 };

static float a_at(int trans, const float *A, int lda, int i, int k) {
    return trans ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
}

/* op(A) rows i0.., cols k0.. (mc x kc) into strips of MR rows, zero padded:
 * strip t holds, for each k, MR consecutive values */
static void pack_a(int trans, const float *A, int lda, int i0, int mc, int k0,
                   int kc, float *pa) {
    for (int t = 0; t < mc; t += MR)
        for (int k = 0; k < kc; k++)
            for (int r = 0; r < MR; r++)
                *pa++ = t + r < mc ? a_at(trans, A, lda, i0 + t + r, k0 + k) : 0.0f;
}

/* op(B) rows k0.. (kc), cols j0.. (nc) into strips of NR columns */
static void pack_b(int trans, const float *B, int ldb, int k0, int kc, int j0,
                   int nc, float *pb) {
    for (int t = 0; t < nc; t += NR)
        for (int k = 0; k < kc; k++) {
            int width = nc - t < NR ? nc - t : NR;
            if (!trans) {
                const float *row = B + (size_t)(k0 + k) * ldb + j0 + t;
                for (int c = 0; c < width; c++) pb[c] = row[c];
            } else {
                for (int c = 0; c < width; c++)
                    pb[c] = B[(size_t)(j0 + t + c) * ldb + k0 + k];
            }
            for (int c = width; c < NR; c++) pb[c] = 0.0f;
            pb += NR;
        }
}

/* acc (MR x NR) = sum over k of pa[k] (MR) outer pb[k] (NR) */
static void micro_scalar(int kc, const float *pa, const float *pb,
                         float acc[MR][NR]) {
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < NR; c++) acc[r][c] = 0.0f;
    for (int k = 0; k < kc; k++, pa += MR, pb += NR)
        for (int r = 0; r < MR; r++)
            for (int c = 0; c < NR; c++) acc[r][c] += pa[r] * pb[c];
}

#ifdef PE_GEMM_X86
__attribute__((target("avx2,fma"))) static void
micro_avx2(int kc, const float *pa, const float *pb, float acc[MR][NR]) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++, pa += MR, pb += NR) {
        __m256 b0 = _mm256_loadu_ps(pb), b1 = _mm256_loadu_ps(pb + 8);
        __m256 a;
        a = _mm256_broadcast_ss(pa + 0);
        c00 = _mm256_fmadd_ps(a, b0, c00), c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(pa + 1);
        c10 = _mm256_fmadd_ps(a, b0, c10), c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(pa + 2);
        c20 = _mm256_fmadd_ps(a, b0, c20), c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(pa + 3);
        c30 = _mm256_fmadd_ps(a, b0, c30), c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(pa + 4);
        c40 = _mm256_fmadd_ps(a, b0, c40), c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(pa + 5);
        c50 = _mm256_fmadd_ps(a, b0, c50), c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    _mm256_storeu_ps(acc[0], c00), _mm256_storeu_ps(acc[0] + 8, c01);
    _mm256_storeu_ps(acc[1], c10), _mm256_storeu_ps(acc[1] + 8, c11);
    _mm256_storeu_ps(acc[2], c20), _mm256_storeu_ps(acc[2] + 8, c21);
    _mm256_storeu_ps(acc[3], c30), _mm256_storeu_ps(acc[3] + 8, c31);
    _mm256_storeu_ps(acc[4], c40), _mm256_storeu_ps(acc[4] + 8, c41);
    _mm256_storeu_ps(acc[5], c50), _mm256_storeu_ps(acc[5] + 8, c51);
}
#endif

typedef void (*micro_fn)(int kc, const float *pa, const float *pb,
                         float acc[MR][NR]);

static micro_fn pick_micro(void) {
#ifdef PE_GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return micro_avx2;
#endif
    return micro_scalar;
}

static micro_fn micro; /* set by pe_cpu_blas_setup, before any thread */

void pe_cpu_blas_setup(void) {
    if (!micro) micro = pick_micro();
}

const char *pe_cpu_blas_name(void) {
#ifdef PE_GEMM_X86
    if (micro == micro_avx2) return "fallback avx2";
#endif
    return "fallback scalar";
}

void pe_cpu_sgemm(int transA, int transB, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (!micro) micro = pick_micro();
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0)
            memset(c, 0, sizeof(float) * (size_t)N);
        else if (beta != 1)
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
    if (K <= 0 || alpha == 0) return;

    int ncmax = N < NC ? N : NC;
    float *pa = malloc(sizeof(float) * (size_t)(MC + MR) * KC);
    float *pb = malloc(sizeof(float) * ((size_t)ncmax + NR) * KC);
    if (!pa || !pb) { /* no memory to pack (~1 MB): slow, but still right */
        free(pb);
        free(pa);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float sum = 0;
                for (int k = 0; k < K; k++)
                    sum += a_at(transA, A, lda, i, k) * a_at(!transB, B, ldb, j, k);
                C[(size_t)i * ldc + j] += alpha * sum;
            }
        return;
    }
    float acc[MR][NR];
    for (int j0 = 0; j0 < N; j0 += NC) {
        int nc = N - j0 < NC ? N - j0 : NC;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            pack_b(transB, B, ldb, k0, kc, j0, nc, pb);
            for (int i0 = 0; i0 < M; i0 += MC) {
                int mc = M - i0 < MC ? M - i0 : MC;
                pack_a(transA, A, lda, i0, mc, k0, kc, pa);
                for (int jt = 0; jt < nc; jt += NR)
                    for (int it = 0; it < mc; it += MR) {
                        micro(kc, pa + (size_t)it * kc, pb + (size_t)jt * kc, acc);
                        int rows = mc - it < MR ? mc - it : MR;
                        int cols = nc - jt < NR ? nc - jt : NR;
                        for (int r = 0; r < rows; r++) {
                            float *c = C + (size_t)(i0 + it + r) * ldc + j0 + jt;
                            for (int q = 0; q < cols; q++) c[q] += alpha * acc[r][q];
                        }
                    }
            }
        }
    }
    free(pb);
    free(pa);
}

#endif /* PE_HAVE_OPENBLAS */

/* ---- the backend's gemm op: tiles of C on the pool ---------------------- */

typedef struct gemm_job {
    int transA, transB, M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    int mt, nt;   /* tile height, width */
    int ntiles_n; /* tiles across N */
} gemm_job;

static void gemm_item(void *ctx, size_t item, int tid) {
    (void)tid;
    const gemm_job *g = ctx;
    int i0 = (int)(item / (size_t)g->ntiles_n) * g->mt;
    int j0 = (int)(item % (size_t)g->ntiles_n) * g->nt;
    int m = g->M - i0 < g->mt ? g->M - i0 : g->mt;
    int n = g->N - j0 < g->nt ? g->N - j0 : g->nt;
    const float *a = g->transA ? g->A + i0 : g->A + (size_t)i0 * g->lda;
    const float *b = g->transB ? g->B + (size_t)j0 * g->ldb : g->B + j0;
    pe_cpu_sgemm(g->transA, g->transB, m, n, g->K, g->alpha, a, g->lda, b,
                 g->ldb, g->beta, g->C + (size_t)i0 * g->ldc + j0, g->ldc);
}

int pe_cpu_gemm(pe_backend *b, int transA, int transB, int M, int N, int K,
                float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc) {
    PE_ASSERT(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0) return 0;
    gemm_job g = {transA, transB, M, N, K, alpha, beta, A, B, C,
                  lda, ldb, ldc, M, N, 1};
    /* Tiles from the shape alone (never the thread count), so the bits do
     * not depend on it: about 8 tiles of >= ~2 MFLOP each, cut along M in
     * multiples of 16 rows while M allows, else along N. */
    double flops = 2.0 * M * N * K;
    int want = flops < 4e6 ? 1 : flops < 16e6 ? 2 : 8;
    if (want > 1) {
        if (M >= 16 * want) {
            g.mt = ((M + want - 1) / want + 15) & ~15;
        } else if (N >= 16 * want) {
            g.nt = ((N + want - 1) / want + 15) & ~15;
        } else {
            g.mt = M >= 32 ? 16 : M;
            g.nt = N >= 32 ? 16 : N;
        }
    }
    g.ntiles_n = (N + g.nt - 1) / g.nt;
    size_t items = (size_t)((M + g.mt - 1) / g.mt) * (size_t)g.ntiles_n;
    pe_cpu_parallel_for(pe_cpu_of(b)->pool, items, gemm_item, &g);
    return 0;
}
