/*
 * fuzz_exif.c - libFuzzer target for pe_exif_orientation: arbitrary bytes
 * as a JPEG APP1 payload ("Exif\0\0" + TIFF header + IFD0). The result must
 * be an orientation 1..8; ASan checks that nothing outside the buffer is
 * read (libFuzzer's input buffer has exactly `size` bytes).
 */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int v = pe_exif_orientation(data, size);
    if (v < 1 || v > 8) fuzz_broken("orientation outside 1..8", v);
    return 0;
}
