/*
 * augment.cu - SimCLR's view augmentation for the CUDA backend (backend.h's
 * augment): n views rendered from their drawn parameters (pe_aug_job, made
 * by lib/augment.c's pe_aug_job_of) and the batch's uint8 source images,
 * one thread block per view, with the bytes of lib/augment.c's
 * pe_aug_apply: RandomResizedCrop with Pillow's BILINEAR, flip, colour
 * jitter in the drawn order, grayscale, ToTensor + Normalize.
 *
 * Not for: drawing the parameters (the host does, lib/augment.c: exp, log
 * and sqrt round differently on the device), decoding images, or other
 * transforms and filters.
 *
 * Bit-exactness: every step is kernels/augview.h's __host__ __device__
 * code, the arithmetic lib/augment.c and lib/resample.c run on the CPU. It
 * uses IEEE float and double + - * / (nvcc's default -prec-div=true),
 * integer conversions and the exact floor, round and fmod only; build this
 * file with --fmad=false, so that no multiply-add is fused and each
 * operation rounds as on the CPU. Contrast's mean is an integer sum, exact
 * in any order. tests/unit/test_augview.c checks on the CPU that augview.h's
 * renderer (these phases, run by one thread) equals pe_aug_apply bit for
 * bit on many random views.
 *
 * Decomposition, per block (view), with every thread taking items tid,
 * tid + blockDim, ...: (1) the horizontal Pillow pass over the crop rows the
 * vertical pass reads, into the view's work memory as uint8 (Pillow rounds
 * between passes); barrier; (2) the vertical pass into the view's uint8
 * image (work memory); barrier; (3) the jitter ops in the drawn order, each
 * thread on its own pixels, so no barrier is needed between them except
 * around contrast's mean (a block sum of luma in a shared uint64); (4)
 * grayscale, then ToTensor + Normalize into out, where the flip is done by
 * writing each pixel to its mirrored column. Axes that are the identity are
 * skipped as Pillow skips them. Bilinear weights are computed tap by tap
 * in the accumulation loop (augview.h), so a crop of any size downscales
 * without weight tables.
 *
 * Memory: one pe_cuda_scratch buffer holds the jobs, each view's work
 * offset, a copy of the pixels and the work memory ((size + box_h) x size x
 * c bytes per view). The first three are staged in pinned host scratch and
 * go over in one cudaMemcpyAsync on the backend's stream; the caller's
 * buffers are free when the call returns.
 */
#include <cmath>
#include <string.h>

#include "cuda.h"

#include "augview.h"

enum { THREADS = 256 };

/* Segment alignment inside the scratch buffer. */
enum { ALIGN = 256 };

/* Normalize's constants, by value (mean and std arrive in host memory). */
typedef struct aug_norm {
    float mean[3], std[3];
} aug_norm;

static __global__ void augment_kernel(const pe_aug_job *jobs, const uint64_t *work_at,
                                      const uint8_t *pixels, uint8_t *work, uint32_t size,
                                      uint32_t out_c, aug_norm nm, float *out) {
    __shared__ unsigned long long luma_total;
    const pe_aug_job j = jobs[blockIdx.x];
    const uint32_t tid = threadIdx.x, nt = blockDim.x;
    pe_av_view v;
    pe_av_view_init(&v, &j, pixels, size, work + work_at[blockIdx.x]);

    pe_av_pass_h(&v, tid, nt);
    __syncthreads();
    pe_av_pass_v(&v, tid, nt);
    __syncthreads();

    /* The job is the same for the whole block, so every thread takes the
     * same branches and reaches the same barriers. */
    if (j.jitter)
        for (int n = 0; n < 4; n++) {
            const int k = j.order[n];
            if (!j.enabled[k]) continue;
            int grey = 0;
            if (k == PE_AV_CONTRAST) {
                if (tid == 0) luma_total = 0;
                __syncthreads();
                atomicAdd(&luma_total, (unsigned long long)pe_av_luma_sum(&v, tid, nt));
                __syncthreads();
                grey = pe_av_mean_grey(luma_total, (uint64_t)size * size);
                /* everyone has read the sum before a later contrast resets it */
                __syncthreads();
            }
            pe_av_jitter(&v, k, j.factor[k], grey, tid, nt);
        }

    const size_t view_n = (size_t)out_c * size * size;
    pe_av_finish(&v, j.flip, j.gray, out_c, nm.mean, nm.std, out + blockIdx.x * view_n, tid,
                 nt);
}

static size_t align_up(size_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* a + b into *sum, 0 on overflow. */
static int add_size(size_t a, size_t b, size_t *sum) {
    if (a > SIZE_MAX - b) return 0;
    *sum = a + b;
    return 1;
}

int pe_cuda_augment(pe_backend *b, int n, const pe_aug_job *jobs, const uint8_t *pixels,
                    size_t pixel_bytes, uint32_t size, uint32_t out_c, const float *mean,
                    const float *std, float *out) {
    if (n < 0) return pe_fail(PE_EUSAGE, "augment: %d views", n);
    if (n == 0) return 0;
    if (!jobs || !out || !mean || !std || (!pixels && pixel_bytes))
        return pe_fail(PE_EUSAGE, "augment: a NULL buffer");
    if (size == 0 || size > PE_AV_MAX_DIM)
        return pe_fail(PE_EUSAGE, "augment: output size %u (want 1 to 2^24)", size);
    if (out_c != 1 && out_c != 3)
        return pe_fail(PE_EUSAGE, "augment: %u output channels (want 1 or 3)", out_c);
    aug_norm nm;
    memset(&nm, 0, sizeof nm);
    for (uint32_t k = 0; k < out_c; k++) {
        if (!std::isfinite(mean[k]) || !std::isfinite(std[k]) || std[k] == 0)
            return pe_fail(PE_EUSAGE,
                           "augment: mean %g / std %g of channel %u (want finite, std != 0)",
                           (double)mean[k], (double)std[k], k);
        nm.mean[k] = mean[k];
        nm.std[k] = std[k];
    }

    /* Every job is checked before anything is queued: a bad box or offset
     * would read outside the pixels on the device. */
    size_t work_bytes = 0;
    for (int v = 0; v < n; v++) {
        const pe_aug_job *j = &jobs[v];
        const char *why = pe_aug_job_problem(j, pixel_bytes);
        if (why)
            return pe_fail(PE_EUSAGE,
                           "augment: view %d: %s (image %ux%ux%u at byte %llu of %zu, "
                           "box i %u j %u h %u w %u)",
                           v, why, j->w, j->h, j->c, (unsigned long long)j->offset, pixel_bytes,
                           j->box_i, j->box_j, j->box_h, j->box_w);
        if (!pe_aug_channels_ok(j->c, out_c))
            return pe_fail(PE_EUSAGE, "augment: view %d: %u source channels cannot give %u",
                           v, j->c, out_c);
        /* sides and size <= 2^24: one view's bytes fit; the sum may not */
        if (!add_size(work_bytes, pe_augview_work_bytes(j, size), &work_bytes))
            return pe_fail(PE_ETOOBIG, "augment: work memory of %d views overflows", n);
    }

    /* Scratch layout: jobs, work offsets, pixels (staged and copied), work. */
    const size_t jobs_bytes = (size_t)n * sizeof(pe_aug_job);
    const size_t at_off = align_up(jobs_bytes);
    const size_t px_off = align_up(at_off + (size_t)n * sizeof(uint64_t));
    size_t work_off, total;
    if (!add_size(px_off, pixel_bytes, &work_off) || work_off > SIZE_MAX - ALIGN ||
        !add_size(align_up(work_off), work_bytes, &total))
        return pe_fail(PE_ETOOBIG, "augment: %zu bytes of pixels is too many", pixel_bytes);
    work_off = align_up(work_off);
    const size_t staged = work_off;

    pe_cuda *g = pe_cuda_of(b);
    /* The pinned buffer may still be the source of an earlier call's copy
     * (nothing else writes it from the host), so wait for that first. */
    int rc = pe_cuda_check(cudaStreamSynchronize(g->stream), "augment");
    if (rc) return rc;
    uint8_t *host = (uint8_t *)pe_cuda_host_scratch(b, staged);
    if (!host) return PE_ECUDA;
    uint8_t *dev = (uint8_t *)pe_cuda_scratch(b, total);
    if (!dev) return PE_ECUDA;

    memcpy(host, jobs, jobs_bytes);
    uint64_t *at = (uint64_t *)(host + at_off);
    size_t next = 0;
    for (int v = 0; v < n; v++) {
        at[v] = next;
        next += pe_augview_work_bytes(&jobs[v], size);
    }
    if (pixel_bytes) memcpy(host + px_off, pixels, pixel_bytes);
    rc = pe_cuda_check(cudaMemcpyAsync(dev, host, staged, cudaMemcpyHostToDevice, g->stream),
                       "augment: copy to device");
    if (rc) return rc;

    augment_kernel<<<(unsigned)n, THREADS, 0, g->stream>>>(
        (const pe_aug_job *)dev, (const uint64_t *)(dev + at_off), dev + px_off,
        dev + work_off, size, out_c, nm, out);
    return pe_cuda_launched("augment");
}
