/*
 * fuzz_keyline.c - libFuzzer target for the pipe-line parser: the whole
 * input as one line for pe_keyline_parse (NUL-terminated, as getline leaves
 * it), and as a stream of lines for pe_keylines_read. A parsed key must
 * print back as the hex digits it came from, and the fields must be a C
 * string inside the line.
 */
#include "cli.h"
#include "fuzz_util.h"

#include <ctype.h>

static void check_key(const char *line, size_t len, const pe_key *key,
                      const char *rest) {
    char hex[PE_KEY_HEX + 1];
    pe_key_to_hex(key, hex);
    for (int i = 0; i < PE_KEY_HEX; i++)
        if (hex[i] != tolower((unsigned char)line[i]))
            fuzz_broken("key does not print back as its hex digits", 0);
    if (rest[0] && (rest < line || rest > line + len))
        fuzz_broken("fields do not point into the line", 0);
    (void)strlen(rest);
}

typedef struct lines_ctx {
    unsigned long last;
} lines_ctx;

static int on_line(void *vctx, const pe_key *key, const char *rest,
                   unsigned long lineno) {
    lines_ctx *ctx = vctx;
    if (!key || !rest || lineno <= ctx->last)
        fuzz_broken("key lines out of order or without a key", 0);
    ctx->last = lineno;
    (void)strlen(rest);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *line = malloc(size + 1);
    if (!line) return 0;
    memcpy(line, data, size);
    line[size] = 0;

    pe_key key;
    const char *rest = NULL;
    int rc = pe_keyline_parse(line, size, &key, &rest);
    if (rc == 0)
        check_key(line, size, &key, rest);
    else if (rc != PE_EFORMAT || pe_errmsg()[0] == 0)
        fuzz_broken("pe_keyline_parse failed without PE_EFORMAT and a message",
                    rc);

    if (size > 0) {
        FILE *f = fmemopen(line, size, "r");
        if (f) {
            lines_ctx ctx = {0};
            rc = pe_keylines_read(f, "fuzz", on_line, &ctx);
            if (rc != 0 && (rc != PE_EFORMAT || pe_errmsg()[0] == 0))
                fuzz_broken("pe_keylines_read failed without PE_EFORMAT and "
                            "a message", rc);
            fclose(f);
        }
    }
    free(line);
    return 0;
}
