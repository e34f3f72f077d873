/*
 * fuzz_pnm.c - libFuzzer target for pe_decode_pnm: arbitrary bytes into
 * the PNM (P1..P6) decoder under tight limits (fuzz_util.h), with the codec.h
 * contract checked on every result.
 *
 * Not for: format sniffing or DCT scaling (fuzz_decode.c drives those).
 */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pe_decode_opts o = fuzz_opts();
    pe_image im = {0};
    pe_decode_info info;
    int rc = pe_decode_pnm(data, size, &o, &im, &info);
    fuzz_check_decode(rc, &im, &o);
    if (rc == 0) fuzz_check_info(&im, &info, PE_FORMAT_PNM, &o);
    pe_image_free(&im);
    return 0;
}
