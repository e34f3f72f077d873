/*
 * device.c - --device and --precision: parsing them, and opening the
 * backend they ask for (the CPU's, or the CUDA one when the build has it
 * and a GPU is present).
 *
 * Not for: the backends themselves (kernels/cpu/, kernels/cuda/).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "pe.h"

int pe_device_parse(const char *s, pe_device_kind *kind, int *index) {
    *index = 0;
    if (!strcmp(s, "auto")) *kind = PE_DEVICE_AUTO;
    else if (!strcmp(s, "cpu")) *kind = PE_DEVICE_CPU;
    else if (!strcmp(s, "cuda")) *kind = PE_DEVICE_CUDA;
    else if (!strncmp(s, "cuda:", 5) && s[5] >= '0' && s[5] <= '9') {
        char *end;
        long v = strtol(s + 5, &end, 10);
        if (*end || v > 1024)
            return pe_fail(PE_EUSAGE, "--device %s: expected auto, cpu, cuda or cuda:N", s);
        *kind = PE_DEVICE_CUDA;
        *index = (int)v;
    } else
        return pe_fail(PE_EUSAGE, "--device %s: expected auto, cpu, cuda or cuda:N", s);
    return 0;
}

int pe_precision_parse(const char *s, pe_precision *out) {
    if (!strcmp(s, "fp32")) *out = PE_PREC_FP32;
    else if (!strcmp(s, "tf32")) *out = PE_PREC_TF32;
    else if (!strcmp(s, "bf16")) *out = PE_PREC_BF16;
    else return pe_fail(PE_EUSAGE, "--precision %s: expected fp32, tf32 or bf16", s);
    return 0;
}

const char *pe_precision_name(pe_precision p) {
    switch (p) {
    case PE_PREC_TF32: return "tf32";
    case PE_PREC_BF16: return "bf16";
    default: return "fp32";
    }
}

int pe_backend_open(pe_device_kind kind, int index, int nthreads, pe_precision precision,
                    int deterministic, pe_backend **out) {
    *out = NULL;
    /* $PE_DEVICE replaces auto (the test suites pin the CPU with it, so
     * their byte-identity checks hold on a machine with a GPU too) */
    const char *env = getenv("PE_DEVICE");
    if (kind == PE_DEVICE_AUTO && env && *env) {
        int rc = pe_device_parse(env, &kind, &index);
        if (rc) return pe_fail_prefix(rc, "$PE_DEVICE");
    }
    if (kind == PE_DEVICE_AUTO) kind = pe_cuda_devices(NULL) > index ? PE_DEVICE_CUDA : PE_DEVICE_CPU;
    if (kind == PE_DEVICE_CUDA) {
        *out = pe_backend_cuda(index, precision, deterministic);
        return *out ? 0 : pe_cuda_library(NULL) ? PE_ECUDA : PE_EUNSUPPORTED;
    }
    *out = pe_backend_cpu(nthreads);
    return *out ? 0 : pe_fail(ENOMEM, "cannot start the CPU backend");
}
