/*
 * fuzz_idx.c - libFuzzer target for pe_idx_read_mem: an images file and an
 * optional labels file, split out of one input.
 *
 * Input: [u32 big-endian L][rest]. The top bit of L set: rest is the images
 * file and there are no labels (NULL). Otherwise the first L bytes of rest
 * are the images file and the remaining bytes the labels file; an L past
 * the end means images only. Each part is copied into its own allocation of
 * exactly its size so that ASan catches a read from one running into the
 * other.
 */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    uint32_t l = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
                 (uint32_t)data[2] << 8 | data[3];
    const uint8_t *rest = data + 4;
    size_t n = size - 4, img_len = n, lbl_len = 0;
    int labels = !(l >> 31) && (l & 0x7fffffffu) <= n;
    if (labels) {
        img_len = l & 0x7fffffffu;
        lbl_len = n - img_len;
    }
    uint8_t *img = malloc(img_len ? img_len : 1);
    uint8_t *lbl = labels ? malloc(lbl_len ? lbl_len : 1) : NULL;
    if (!img || (labels && !lbl)) goto cleanup;
    memcpy(img, rest, img_len);
    if (labels) memcpy(lbl, rest + img_len, lbl_len);

    fuzz_sample_ctx ctx = {0};
    ctx.stop_at = UINT64_MAX;
    ctx.c = 1;
    ctx.label_min = 0;
    ctx.label_max = 255;
    ctx.allow_none = !labels;
    int rc = pe_idx_read_mem(img, img_len, lbl, lbl_len, fuzz_sample_fn, &ctx);
    fuzz_check_reader(rc, 0);
    if (rc == 0) {
        /* Header: magic, N, rows, cols; all N records must have come. */
        uint32_t want = (uint32_t)img[4] << 24 | (uint32_t)img[5] << 16 |
                        (uint32_t)img[6] << 8 | img[7];
        if (ctx.next != want) fuzz_broken("not every image was delivered", 0);
    }

    /* The same images again, stopped by the callback after the first. */
    if (rc == 0 && ctx.next > 1) {
        fuzz_sample_ctx stop = ctx;
        stop.next = 0;
        stop.stop_at = 0;
        stop.stop_rc = 4242;
        rc = pe_idx_read_mem(img, img_len, lbl, lbl_len, fuzz_sample_fn, &stop);
        if (rc != 4242 || stop.next != 1)
            fuzz_broken("a callback's nonzero return did not stop the read", rc);
    }

cleanup:
    free(lbl);
    free(img);
    return 0;
}
