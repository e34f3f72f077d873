/*
 * fuzz_decode.c - libFuzzer target for pe_decode: sniffing plus every
 * decoder, with the JPEG DCT-scaling hint and the orientation switch driven
 * by the first input byte, and a round trip of each small result through
 * the PNM and PNG encoders.
 *
 * Input: [opts byte][file bytes]. opts byte: bits 0-3 give min_w / 5,
 * bits 4-6 give min_h / 9 (0 = no bound: the seeds' images are 8 to 64
 * pixels a side, so every scale 1/8..8/8 is reachable), bit 7 no_orient.
 *
 * Not for: per-format depth (fuzz_<format>.c start right at the decoder).
 */
#include "fuzz_util.h"

/* Round trips larger than this are skipped: encoding is not what is being
 * fuzzed and a 4M-pixel PNG encode would eat the time budget. */
#define ROUNDTRIP_MAX_PIXELS (64u * 1024u)

static void roundtrip(const pe_image *im, int png) {
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    pe_image back = {0};
    int rc = png ? pe_encode_png(im, &enc, &enc_len)
                 : pe_encode_pnm(im, &enc, &enc_len);
    if (rc == ENOMEM) return;
    if (rc) fuzz_broken(png ? "pe_encode_png failed on a decoded image"
                            : "pe_encode_pnm failed on a decoded image", rc);
    if (pe_sniff(enc, enc_len) != (png ? PE_FORMAT_PNG : PE_FORMAT_PNM))
        fuzz_broken("encoder output not sniffed as its format", 0);
    pe_decode_opts o = fuzz_opts();
    o.deadline = 0; /* a timeout here would be a false alarm */
    rc = png ? pe_decode_png(enc, enc_len, &o, &back, NULL)
             : pe_decode_pnm(enc, enc_len, &o, &back, NULL);
    if (rc && rc != ENOMEM)
        fuzz_broken("an encoded image does not decode", rc);
    if (rc == 0 && (back.w != im->w || back.h != im->h || back.c != im->c ||
                    memcmp(back.px, im->px, pe_image_size(im)) != 0))
        fuzz_broken("encode/decode round trip changed the image", 0);
    pe_image_free(&back);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    pe_decode_opts o = fuzz_opts();
    o.min_w = (uint32_t)(data[0] & 0x0f) * 5;
    o.min_h = (uint32_t)(data[0] >> 4 & 0x07) * 9;
    o.no_orient = data[0] >> 7;
    const uint8_t *file = data + 1;
    size_t len = size - 1;

    pe_image im = {0};
    pe_decode_info info;
    int rc = pe_decode(file, len, &o, &im, &info);
    fuzz_check_decode(rc, &im, &o);
    if (rc == 0) {
        pe_format f = pe_sniff(file, len);
        fuzz_check_info(&im, &info, f, &o);
        /* The scale chosen is the smallest that still covers the box. */
        if (info.scale_num < info.scale_den &&
            (im.w < o.min_w || im.h < o.min_h))
            fuzz_broken("DCT scaling went below min_w x min_h", info.scale_num);
        if (f != PE_FORMAT_JPEG && info.scale_num != info.scale_den)
            fuzz_broken("DCT scaling reported for a non-JPEG", 0);
        if ((uint64_t)im.w * im.h <= ROUNDTRIP_MAX_PIXELS) {
            roundtrip(&im, 0);
            roundtrip(&im, 1);
        }
    }
    pe_image_free(&im);
    return 0;
}
