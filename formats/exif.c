/*
 * exif.c - the one EXIF field the decoders need: the orientation tag
 * (0x0112) of IFD0, read from a JPEG APP1 payload ("Exif\0\0" + TIFF).
 *
 * Not for: general EXIF/TIFF parsing, other tags, sub-IFDs, or writing EXIF.
 * The payload is untrusted: every offset is checked against len before it
 * is read, and anything unexpected means "no orientation" (1), never an
 * error, as Pillow's ImageOps.exif_transpose treats unreadable EXIF.
 */
#include "codec.h"

#include <string.h>

#define EXIF_HEADER_LEN 6 /* "Exif\0\0" */
#define TIFF_HEADER_LEN 8 /* byte order, 42, IFD0 offset */
#define IFD_ENTRY_LEN 12  /* tag, type, count, value/offset */
#define TAG_ORIENTATION 0x0112
#define TYPE_SHORT 3

static uint16_t get16(const uint8_t *p, int big_endian) {
    return big_endian ? (uint16_t)(p[0] << 8 | p[1])
                      : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t get32(const uint8_t *p, int big_endian) {
    return big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                            (uint32_t)p[2] << 8 | p[3]
                      : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
                            (uint32_t)p[1] << 8 | p[0];
}

int pe_exif_orientation(const uint8_t *buf, size_t len) {
    if (!buf || len < EXIF_HEADER_LEN + TIFF_HEADER_LEN ||
        memcmp(buf, "Exif\0\0", EXIF_HEADER_LEN) != 0)
        return 1;
    /* Offsets in the TIFF structure count from the byte-order mark. */
    const uint8_t *tiff = buf + EXIF_HEADER_LEN;
    size_t tiff_len = len - EXIF_HEADER_LEN;

    int big_endian;
    if (tiff[0] == 'I' && tiff[1] == 'I')
        big_endian = 0;
    else if (tiff[0] == 'M' && tiff[1] == 'M')
        big_endian = 1;
    else
        return 1;
    if (get16(tiff + 2, big_endian) != 42) return 1;

    uint32_t ifd = get32(tiff + 4, big_endian);
    if (ifd < TIFF_HEADER_LEN || ifd > tiff_len || tiff_len - ifd < 2) return 1;
    uint16_t count = get16(tiff + ifd, big_endian);

    /* Entries that lie wholly inside the buffer are used even when the IFD
     * claims more than fit (a cut APP1 segment), and a repeated tag keeps
     * its last value: both as Pillow's ImageFileDirectory, which keeps what
     * it read before a short read and stores tags in a dict. */
    size_t avail = (tiff_len - ifd - 2) / IFD_ENTRY_LEN;
    if (count < avail) avail = count;
    int orientation = 1;
    for (size_t i = 0; i < avail; i++) {
        const uint8_t *e = tiff + ifd + 2 + i * IFD_ENTRY_LEN;
        if (get16(e, big_endian) != TAG_ORIENTATION) continue;
        /* A SHORT with count 1 sits in the first two bytes of the value
         * field; any other type or count is not a usable orientation
         * (Pillow would get a tuple or a non-integer and not rotate). */
        if (get16(e + 2, big_endian) != TYPE_SHORT ||
            get32(e + 4, big_endian) != 1) {
            orientation = 1;
            continue;
        }
        uint16_t v = get16(e + 8, big_endian);
        orientation = (v >= 1 && v <= 8) ? v : 1;
    }
    return orientation;
}
