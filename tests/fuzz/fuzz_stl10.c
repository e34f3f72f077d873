/*
 * fuzz_stl10.c - libFuzzer target for pe_stl10_read_mem.
 *
 * A real STL-10 record is 27648 bytes, more than a seed should be, so the
 * input describes the files instead of being them:
 *   byte 0: bits 0-1 number of records (0..3); bit 2 labels present;
 *           bit 3 add byte 1 (int8) to the images length;
 *           bit 4 add byte 2 (int8) to the labels length
 *   bytes 1, 2: the two length deltas
 *   then: one label byte per record (when labels are present), then a
 *   pattern tiled over the images file (zeros when empty).
 * The deltas give short, long and mismatched files; each file gets its own
 * allocation of exactly its size.
 */
#include "fuzz_util.h"

#define STL_SIDE 96
#define STL_PLANE (STL_SIDE * STL_SIDE)
#define STL_RECORD (3 * STL_PLANE)

/* fuzz_sample_fn plus a layout check: pixel (row y, column x) of channel c
 * is byte c*9216 + x*96 + y of the record (planes stored column-major). */
typedef struct stl_ctx {
    fuzz_sample_ctx base; /* first: fuzz_sample_fn sees this */
    const uint8_t *x;
} stl_ctx;

static int stl_fn(void *vctx, uint64_t index, pe_image *img, int32_t label) {
    stl_ctx *ctx = vctx;
    const uint8_t *rec = ctx->x + index * STL_RECORD;
    static const uint32_t probe[][2] = {{0, 0}, {1, 0}, {0, 1}, {95, 3}, {7, 95}};
    for (size_t i = 0; i < sizeof probe / sizeof probe[0]; i++) {
        uint32_t y = probe[i][0], x = probe[i][1];
        for (uint32_t c = 0; c < 3; c++)
            if (img->px[((size_t)y * STL_SIDE + x) * 3 + c] !=
                rec[c * STL_PLANE + x * STL_SIDE + y])
                fuzz_broken("pixel not where the STL-10 layout puts it", 0);
    }
    return fuzz_sample_fn(&ctx->base, index, img, label);
}

static size_t add_delta(size_t n, int8_t d) {
    if (d < 0 && (size_t)(-(int)d) > n) return 0;
    return d < 0 ? n - (size_t)(-(int)d) : n + (size_t)d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    unsigned flags = data[0];
    size_t n = flags & 3;
    int labels = flags >> 2 & 1;
    size_t x_len = n * STL_RECORD, y_len = n;
    if (flags & 8) x_len = add_delta(x_len, (int8_t)data[1]);
    if (flags & 16) y_len = add_delta(y_len, (int8_t)data[2]);
    const uint8_t *body = data + 3;
    size_t body_len = size - 3;

    uint8_t *x = malloc(x_len ? x_len : 1);
    uint8_t *y = labels ? malloc(y_len ? y_len : 1) : NULL;
    if (!x || (labels && !y)) goto cleanup;
    size_t lab_bytes = 0;
    if (labels) {
        for (size_t i = 0; i < y_len; i++)
            y[i] = body_len ? body[i % body_len] : 0;
        lab_bytes = n < body_len ? n : body_len;
    }
    const uint8_t *pat = body + lab_bytes;
    size_t pat_len = body_len - lab_bytes;
    /* The pattern, then the filled part copied onto the rest, doubling. */
    if (pat_len == 0 || x_len == 0) {
        memset(x, 0, x_len ? x_len : 1);
    } else {
        size_t filled = pat_len < x_len ? pat_len : x_len;
        memcpy(x, pat, filled);
        while (filled < x_len) {
            size_t k = filled < x_len - filled ? filled : x_len - filled;
            memcpy(x + filled, x, k);
            filled += k;
        }
    }

    stl_ctx ctx = {{0}, x};
    ctx.base.stop_at = UINT64_MAX;
    ctx.base.w = ctx.base.h = STL_SIDE;
    ctx.base.c = 3;
    ctx.base.label_max = 9;
    ctx.base.allow_none = !labels;
    int rc = pe_stl10_read_mem(x, x_len, y, y_len, stl_fn, &ctx);
    fuzz_check_reader(rc, 0);
    if (rc == 0 && ctx.base.next != x_len / STL_RECORD)
        fuzz_broken("not every record was delivered", 0);
    if (rc == 0 && ctx.base.next > 1) {
        stl_ctx again = ctx;
        again.base.next = 0;
        again.base.stop_at = 0;
        again.base.stop_rc = 4242;
        rc = pe_stl10_read_mem(x, x_len, y, y_len, stl_fn, &again);
        if (rc != 4242 || again.base.next != 1)
            fuzz_broken("a callback's nonzero return did not stop the read", rc);
    }

cleanup:
    free(y);
    free(x);
    return 0;
}
