/*
 * fuzz_cifar.c - libFuzzer target for pe_cifar_read_mem: the same bytes as
 * a CIFAR-10 batch and as a CIFAR-100 batch (fine labels, then coarse
 * labels with the read stopped by the callback after record 1).
 */
#include "fuzz_util.h"

#define STOP_RC 4242

static void run(const uint8_t *data, size_t size, int variant, int coarse,
                int stop) {
    size_t rec = 32 * 32 * 3 + (variant == 10 ? 1 : 2);
    fuzz_sample_ctx ctx = {0};
    ctx.stop_at = stop ? 1 : UINT64_MAX;
    ctx.stop_rc = STOP_RC;
    ctx.w = ctx.h = 32;
    ctx.c = 3;
    ctx.label_max = variant == 10 ? 9 : coarse ? 19 : 99;
    int rc = pe_cifar_read_mem(data, size, variant, coarse, fuzz_sample_fn, &ctx);
    fuzz_check_reader(rc, stop ? STOP_RC : 0);
    if (rc == 0 && ctx.next != size / rec)
        fuzz_broken("not every record was delivered", 0);
    if (rc == STOP_RC && ctx.next != 2)
        fuzz_broken("the read went on after the callback stopped it", rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run(data, size, 10, 0, 0);
    run(data, size, 100, 0, 0);
    run(data, size, 100, 1, 1);
    return 0;
}
