/*
 * cuda_loader.c - the CUDA backend's entry points for the programs: the
 * backend itself lives in a shared object, libpe-cuda.so (kernels/cuda/,
 * built when nvcc is found), loaded with dlopen the first time a GPU is
 * asked for or probed. The programs link no CUDA library, so a program
 * that never touches a GPU starts as fast as before (cuBLAS, cuDNN and
 * NCCL take about half a second to load), and the same binaries run on a
 * machine without CUDA.
 *
 * Not for: the backend's code (kernels/cuda/) or choosing a device
 * (kernels/device.c).
 *
 * Where the library is looked for: $PE_CUDA_LIB when set, else
 * ../lib/libpe-cuda.so beside the running program (build/bin/ ->
 * build/lib/; an install puts it under PREFIX/lib). Probing for a GPU
 * first loads the driver alone (libcuda.so.1, small) and asks it how many
 * devices there are; only then is the backend loaded. The library must
 * have been built from the same sources: its ABI number is checked.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "pe.h"

typedef int (*devices_fn)(const char **why);
typedef pe_backend *(*open_fn)(int device, pe_precision precision, int deterministic);
typedef int (*join_fn)(pe_backend *b, int rank, int world, const char *id_file, double timeout_s,
                       int sync_bn);
typedef unsigned (*abi_fn)(void);

static struct {
    pthread_once_t once;
    void *so;
    char why[PATH_MAX + 256]; /* why the library is not there, when it is not */
    devices_fn devices;
    open_fn open;
    join_fn join;
} L = {PTHREAD_ONCE_INIT};

static void load(void) {
    char path[PATH_MAX + 32];
    const char *env = getenv("PE_CUDA_LIB");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) {
            snprintf(L.why, sizeof L.why, "cannot find the running program to find libpe-cuda.so");
            return;
        }
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(path, sizeof path, "%s/../lib/libpe-cuda.so", exe);
    }
    if (access(path, F_OK) != 0) {
        snprintf(L.why, sizeof L.why,
                 "this build of pe has no CUDA backend (%s does not exist: nvcc was not found "
                 "when pe was built)", path);
        return;
    }
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        snprintf(L.why, sizeof L.why, "cannot load the CUDA backend: %s", dlerror());
        return;
    }
    abi_fn abi = (abi_fn)(uintptr_t)dlsym(so, "pe_cuda_so_abi");
    L.devices = (devices_fn)(uintptr_t)dlsym(so, "pe_cuda_so_devices");
    L.open = (open_fn)(uintptr_t)dlsym(so, "pe_cuda_so_open");
    L.join = (join_fn)(uintptr_t)dlsym(so, "pe_cuda_so_join");
    if (!abi || !L.devices || !L.open || !L.join || abi() != PE_BACKEND_ABI) {
        snprintf(L.why, sizeof L.why, "%s is from another version of pe (rebuild it)", path);
        dlclose(so);
        L.devices = NULL;
        L.open = NULL;
        L.join = NULL;
        return;
    }
    L.so = so;
}

static int loaded(void) {
    pthread_once(&L.once, load);
    return L.so != NULL;
}

/* GPUs the driver reports, without loading the backend: 0 (and why) when
 * there is no driver or no device. */
static int driver_devices(const char **why) {
    static char msg[200];
    /* kept open: the CUDA runtime loads the same library again */
    static void *cu;
    if (!cu) cu = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!cu) {
        if (why) *why = "no NVIDIA driver (libcuda.so.1 not found)";
        return 0;
    }
    int (*init)(unsigned) = (int (*)(unsigned))(uintptr_t)dlsym(cu, "cuInit");
    int (*count)(int *) = (int (*)(int *))(uintptr_t)dlsym(cu, "cuDeviceGetCount");
    int n = 0, rc = init && count ? init(0) : -1;
    if (rc == 0) rc = count(&n);
    if (rc != 0) {
        snprintf(msg, sizeof msg, "the NVIDIA driver reports no usable GPU (error %d)", rc);
        if (why) *why = msg;
        return 0;
    }
    if (n == 0 && why) *why = "the NVIDIA driver reports no GPU";
    return n;
}

int pe_cuda_library(const char **why) {
    if (loaded()) return 1;
    if (why) *why = L.why;
    return 0;
}

int pe_cuda_devices(const char **why) {
    if (driver_devices(why) == 0) return 0;
    if (!loaded()) {
        if (why) *why = L.why;
        return 0;
    }
    return L.devices(why);
}

pe_backend *pe_backend_cuda(int device, pe_precision precision, int deterministic) {
    const char *why = NULL;
    if (driver_devices(&why) == 0) {
        pe_fail(PE_ECUDA, "--device cuda: no GPU found (%s)", why);
        return NULL;
    }
    if (!loaded()) {
        pe_fail(PE_EUNSUPPORTED, "--device cuda: %s", L.why);
        return NULL;
    }
    return L.open(device, precision, deterministic);
}

int pe_backend_join(pe_backend *b, int rank, int world, const char *id_file, double timeout_s,
                    int sync_bn) {
    if (strcmp(b->name, "cuda") != 0 || !loaded())
        return pe_fail(PE_EUNSUPPORTED, "data parallelism needs --device cuda (NCCL)");
    return L.join(b, rank, world, id_file, timeout_s, sync_bn);
}
