/*
 * fuzz_tar.c - libFuzzer target for pe_tar_read_mem with a 64 KiB member
 * bound: ustar, GNU long names, pax records, checksums, octal and base-256
 * sizes, truncation. Each member's name must be a C string and its data
 * readable over its whole length and within the bound; the walk is run
 * again with the callback stopping it at the first member.
 *
 * Most mutations of a header break its checksum, where the walk stops, so
 * an input with bad checksums is walked twice: as it is, and with the
 * checksum of every header (found by following the octal size fields)
 * recomputed.
 */
#include "fuzz_util.h"

#define FUZZ_TAR_MAX_MEMBER ((size_t)64 << 10)
#define STOP_RC 4242

typedef struct tar_ctx {
    size_t members;
    size_t stop_at; /* SIZE_MAX = never */
} tar_ctx;

static int on_entry(void *vctx, const char *name, const uint8_t *data,
                    size_t len) {
    tar_ctx *ctx = vctx;
    if (!name || !data) fuzz_broken("member without a name or data pointer", 0);
    if (len > FUZZ_TAR_MAX_MEMBER) fuzz_broken("member above max_member", 0);
    size_t s = strlen(name);
    for (size_t i = 0; i < len; i++) s += data[i];
    fuzz_sink += s;
    if (ctx->members++ == ctx->stop_at) return STOP_RC;
    return 0;
}

/* Rewrites the checksum field of each header block the size fields lead
 * to; returns 1 if any changed. Stops at a zero block or a size that is not
 * plain octal. */
static int fix_checksums(uint8_t *buf, size_t len) {
    int changed = 0;
    for (size_t pos = 0; pos <= len && len - pos >= 512;) {
        uint8_t *h = buf + pos;
        unsigned sum = 0;
        int zero = 1;
        for (int i = 0; i < 512; i++) {
            sum += i >= 148 && i < 156 ? ' ' : h[i];
            zero &= h[i] == 0;
        }
        if (zero) break;
        char field[8];
        snprintf(field, sizeof field, "%06o", sum & 0777777);
        if (memcmp(h + 148, field, 6) != 0 || h[154] != 0 || h[155] != ' ') {
            memcpy(h + 148, field, 6);
            h[154] = 0;
            h[155] = ' ';
            changed = 1;
        }
        uint64_t size = 0;
        int i = 124;
        while (i < 136 && h[i] == ' ') i++;
        for (; i < 136 && h[i] >= '0' && h[i] <= '7'; i++) size = size << 3 | (uint64_t)(h[i] - '0');
        if (i < 136 && h[i] != 0 && h[i] != ' ') break;
        uint8_t type = h[156];
        if (type >= '1' && type <= '6') size = 0;
        uint64_t blocks = (size + 511) / 512;
        if (blocks > (len - pos) / 512) break;
        pos += 512 + (size_t)blocks * 512;
    }
    return changed;
}

static void walk(const uint8_t *data, size_t size) {
    tar_ctx ctx = {0, SIZE_MAX};
    int rc = pe_tar_read_mem(data, size, FUZZ_TAR_MAX_MEMBER, on_entry, &ctx);
    fuzz_check_reader(rc, 0);
    if (ctx.members > 0) {
        tar_ctx stop = {0, 0};
        rc = pe_tar_read_mem(data, size, FUZZ_TAR_MAX_MEMBER, on_entry, &stop);
        if (rc != STOP_RC || stop.members != 1)
            fuzz_broken("a callback's nonzero return did not stop the walk", rc);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    walk(data, size);
    if (size < 512) return 0;
    uint8_t *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (fix_checksums(copy, size)) walk(copy, size);
    free(copy);
    return 0;
}
