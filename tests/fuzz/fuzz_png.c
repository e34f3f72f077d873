/*
 * fuzz_png.c - libFuzzer target for pe_decode_png: arbitrary bytes into the
 * PNG decoder under tight limits (fuzz_util.h), with the codec.h contract
 * checked on every result.
 *
 * Almost every mutation breaks a chunk CRC, and libpng stops at the first
 * bad one, so an input whose CRCs are wrong is decoded twice: as it is
 * (the CRC error path) and with every CRC recomputed (the paths behind it).
 *
 * Not for: format sniffing or DCT scaling (fuzz_decode.c drives those).
 */
#include "fuzz_util.h"

#include <zlib.h>

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

/* Rewrites the CRC of every whole chunk after the signature; returns 1 if
 * any changed. */
static int fix_crcs(uint8_t *buf, size_t len) {
    int changed = 0;
    size_t pos = 8;
    while (pos <= len && len - pos >= 12) {
        uint32_t n = be32(buf + pos);
        if (n > len - pos - 12) break;
        uint32_t crc = (uint32_t)crc32(0L, buf + pos + 4, n + 4);
        uint8_t *c = buf + pos + 8 + n;
        if (be32(c) != crc) {
            c[0] = (uint8_t)(crc >> 24);
            c[1] = (uint8_t)(crc >> 16);
            c[2] = (uint8_t)(crc >> 8);
            c[3] = (uint8_t)crc;
            changed = 1;
        }
        pos += 12 + (size_t)n;
    }
    return changed;
}

static void decode(const uint8_t *data, size_t size) {
    pe_decode_opts o = fuzz_opts();
    pe_image im = {0};
    pe_decode_info info;
    int rc = pe_decode_png(data, size, &o, &im, &info);
    fuzz_check_decode(rc, &im, &o);
    if (rc == 0) fuzz_check_info(&im, &info, PE_FORMAT_PNG, &o);
    pe_image_free(&im);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    decode(data, size);
    if (size < 8) return 0;
    uint8_t *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (fix_crcs(copy, size)) decode(copy, size);
    free(copy);
    return 0;
}
