/*
 * fuzz_gunzip.c - libFuzzer target for pe_gunzip_mem with a 1 MiB output
 * bound: gzip members, concatenation, padding, bombs, and plain bytes (which
 * are copied). A differential check against libdeflate: when libdeflate
 * decodes the whole input as one gzip member within the bound, pe must not
 * call it too big, and when both succeed the bytes must agree. (Refusals
 * alone are not compared: zlib checks a header CRC that libdeflate skips.)
 */
#include "fuzz_util.h"

#include <libdeflate.h>

#include "dataset.h"

#define FUZZ_GZ_MAX ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *out = NULL;
    size_t out_len = 0;
    int rc = pe_gunzip_mem(data, size, FUZZ_GZ_MAX, &out, &out_len);
    if (rc == 0) {
        if (!out || out_len > FUZZ_GZ_MAX)
            fuzz_broken("no buffer, or more output than max_bytes", 0);
        size_t s = 0;
        for (size_t i = 0; i < out_len; i++) s += out[i];
        fuzz_sink += s;
        if (!(size >= 2 && data[0] == 0x1f && data[1] == 0x8b) &&
            (out_len != size || memcmp(out, data, size) != 0))
            fuzz_broken("plain input not copied as is", 0);
    } else {
        if (out) fuzz_broken("output set after a failure", rc);
        fuzz_check_reader(rc, 0);
    }

    if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
        /* Kept for the whole run: a 1 MiB malloc per input would halve the
         * executions per second under ASan. */
        static struct libdeflate_decompressor *d;
        static uint8_t *ref;
        if (!d) d = libdeflate_alloc_decompressor();
        if (!ref) ref = malloc(FUZZ_GZ_MAX);
        size_t in_used = 0, ref_len = 0;
        if (d && ref &&
            libdeflate_gzip_decompress_ex(d, data, size, ref, FUZZ_GZ_MAX,
                                          &in_used, &ref_len) ==
                LIBDEFLATE_SUCCESS &&
            in_used == size) {
            if (rc == PE_ETOOBIG)
                fuzz_broken("pe says too big, libdeflate fits it in the bound",
                            rc);
            if (rc == 0 && (out_len != ref_len || memcmp(out, ref, ref_len) != 0))
                fuzz_broken("pe and libdeflate disagree on the output", 0);
        }
    }
    free(out);
    return 0;
}
