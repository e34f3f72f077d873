/*
 * nccl.cu - data parallelism for the CUDA backend: joining a group (the
 * rendezvous through a file, then ncclCommInitRank; the library entry
 * pe_cuda_so_join behind backend.h's pe_backend_join) and the gradient
 * all-reduce it installs as pe_backend.allreduce_mean (ncclAllReduce with
 * ncclAvg on the backend's stream).
 *
 * Not for: deciding which batches a rank trains on (lib/train.c), or
 * synchronised batch norm (each rank normalises with its own batch's
 * statistics, as PyTorch's DistributedDataParallel does without
 * SyncBatchNorm).
 *
 * The rendezvous file holds the raw bytes of NCCL's ncclUniqueId. Rank 0
 * writes it to "<file>.<pid>.tmp" and renames it into place, so a waiting
 * rank never reads half of it; it refuses to start when the file exists
 * (a leftover of an earlier group would send the other ranks to a dead
 * one) and removes it once ncclCommInitRank has returned on rank 0, which
 * happens only when every rank has joined.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cuda.h"

#ifdef PE_HAVE_NCCL
#include <nccl.h>

static int check_nccl(ncclResult_t r, const char *what) {
    if (r == ncclSuccess) return 0;
    return pe_fail(PE_ECUDA, "%s: NCCL: %s", what, ncclGetErrorString(r));
}

static int allreduce_mean(pe_backend *b, size_t n, float *x) {
    pe_cuda *g = pe_cuda_of(b);
    if (n == 0) return 0;
    return check_nccl(ncclAllReduce(x, x, n, ncclFloat32, ncclAvg, (ncclComm_t)g->nccl, g->stream),
                      "gradient all-reduce");
}

int pe_cuda_group_sum_f64(pe_backend *b, size_t n, double *x) {
    pe_cuda *g = pe_cuda_of(b);
    if (n == 0) return 0;
    return check_nccl(ncclAllReduce(x, x, n, ncclFloat64, ncclSum, (ncclComm_t)g->nccl, g->stream),
                      "sync batch norm: all-reduce");
}

static int write_id(const char *path, const ncclUniqueId *id) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp)
        return pe_fail(PE_EUSAGE, "%s: rendezvous path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return pe_fail(errno, "%s: %s", tmp, strerror(errno));
    ssize_t w = write(fd, id, sizeof *id);
    int bad = w != (ssize_t)sizeof *id || fsync(fd) != 0;
    int e = errno;
    close(fd);
    if (bad || rename(tmp, path) != 0) {
        if (!bad) e = errno;
        unlink(tmp);
        return pe_fail(e ? e : EIO, "%s: cannot write the rendezvous: %s", path, strerror(e ? e : EIO));
    }
    return 0;
}

static int read_id(const char *path, ncclUniqueId *id, double timeout_s) {
    const double until = pe_now() + timeout_s;
    for (;;) {
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            ssize_t r = read(fd, id, sizeof *id);
            close(fd);
            if (r == (ssize_t)sizeof *id) return 0;
            return pe_fail(PE_EFORMAT, "%s: not a rendezvous file (%zd bytes, expected %zu)", path,
                           r, sizeof *id);
        }
        if (errno != ENOENT) return pe_fail(errno, "%s: %s", path, strerror(errno));
        if (pe_now() > until)
            return pe_fail(PE_ETIMEOUT, "%s: rank 0 did not start the group within %g s", path,
                           timeout_s);
        usleep(50 * 1000);
    }
}

extern "C" int pe_cuda_so_join(pe_backend *b, int rank, int world, const char *id_file,
                               double timeout_s, int sync_bn) {
    if (strcmp(b->name, "cuda") != 0)
        return pe_fail(PE_EUNSUPPORTED, "data parallelism needs --device cuda (NCCL)");
    if (world < 1 || rank < 0 || rank >= world)
        return pe_fail(PE_EUSAGE, "rank %d of a group of %d", rank, world);
    pe_cuda *g = pe_cuda_of(b);
    if (g->nccl) return pe_fail(PE_EUSAGE, "already in a data-parallel group");
    ncclUniqueId id;
    int rc;
    if (rank == 0) {
        struct stat st;
        if (stat(id_file, &st) == 0)
            return pe_fail(PE_EEXIST, "%s: the rendezvous file exists (a leftover of an earlier "
                                      "run?); remove it and start every rank again", id_file);
        if ((rc = check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId")) ||
            (rc = write_id(id_file, &id)))
            return rc;
    } else if ((rc = read_id(id_file, &id, timeout_s))) {
        return rc;
    }
    ncclComm_t comm;
    rc = check_nccl(ncclCommInitRank(&comm, world, id, rank), "ncclCommInitRank");
    if (rank == 0) unlink(id_file);
    if (rc) return rc;
    g->nccl = comm;
    g->rank = rank;
    g->world = world;
    g->sync_bn = sync_bn;
    b->allreduce_mean = allreduce_mean;
    return 0;
}

/* ncclCommAbort, not ncclCommDestroy: it never waits, so a rank leaving
 * after an error (whose peers may be gone) cannot hang; at a normal end
 * the stream has no collective left and the two do the same. */
void pe_cuda_leave(pe_cuda *g) {
    if (g->nccl) ncclCommAbort((ncclComm_t)g->nccl);
    g->nccl = NULL;
}

#else /* no NCCL in this build */

extern "C" int pe_cuda_so_join(pe_backend *b, int rank, int world, const char *id_file,
                               double timeout_s, int sync_bn) {
    (void)b, (void)rank, (void)world, (void)id_file, (void)timeout_s, (void)sync_bn;
    return pe_fail(PE_EUNSUPPORTED, "this build of pe has no NCCL (nccl.h was not found when it "
                                    "was built): one GPU per run");
}

void pe_cuda_leave(pe_cuda *g) { (void)g; }

int pe_cuda_group_sum_f64(pe_backend *b, size_t n, double *x) {
    (void)b, (void)n, (void)x;
    return pe_fail(PE_EUNSUPPORTED, "sync batch norm: this build has no NCCL");
}

#endif
