/*
 * escape.c - the one escaping function for data-derived names (see
 * escape.h for the rules of each context). Not for: quoting shell words or
 * building paths; pe-export never uses names from data as paths unchecked.
 */
#include "escape.h"

#include <errno.h>
#include <string.h>

size_t pe_utf8_seq(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    size_t len;
    unsigned v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xc2 && c <= 0xdf) { len = 2; v = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; v = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

typedef struct sink {
    char *out;
    size_t n, used, need;
    int full;
} sink;

/* Appends one escape unit whole or not at all, so truncation never splits
 * an escape sequence. */
static void put(sink *k, const char *s, size_t len) {
    k->need += len;
    if (k->full) return;
    if (k->n == 0 || k->used + len + 1 > k->n) { k->full = 1; return; }
    memcpy(k->out + k->used, s, len);
    k->used += len;
}

static const char hex[] = "0123456789abcdef";

static void put_hex_byte(sink *k, unsigned char b, int json) {
    char buf[8];
    if (json) {
        memcpy(buf, "\\u00", 4);
        buf[4] = hex[b >> 4];
        buf[5] = hex[b & 15];
        put(k, buf, 6);
    } else {
        buf[0] = '\\';
        buf[1] = 'x';
        buf[2] = hex[b >> 4];
        buf[3] = hex[b & 15];
        put(k, buf, 4);
    }
}

size_t pe_escape(char *out, size_t n, const char *str, size_t len,
                 pe_esc_ctx ctx) {
    sink k = {out, n, 0, 0, 0};
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    int json = ctx == PE_ESC_JSON;
    while (i < len) {
        unsigned cp;
        size_t l = pe_utf8_seq(s + i, len - i, &cp);
        if (l == 0) { /* invalid byte */
            if (json) put(&k, "\\ufffd", 6);
            else put_hex_byte(&k, s[i], 0);
            i++;
            continue;
        }
        if (l == 1) {
            unsigned char c = s[i];
            const char *e = NULL;
            switch (c) {
            case '\\': e = "\\\\"; break;
            case '\t': e = "\\t"; break;
            case '\n': e = "\\n"; break;
            case '\r': e = "\\r"; break;
            case '"': if (json) e = "\\\""; else if (ctx == PE_ESC_HTML) e = "&quot;"; break;
            case '&': if (ctx == PE_ESC_HTML) e = "&amp;"; break;
            case '<': if (ctx == PE_ESC_HTML) e = "&lt;"; break;
            case '>': if (ctx == PE_ESC_HTML) e = "&gt;"; break;
            case '\'': if (ctx == PE_ESC_HTML) e = "&#39;"; break;
            default: break;
            }
            if (c == '\\' && ctx == PE_ESC_HTML) e = "\\\\";
            if (e) put(&k, e, strlen(e));
            else if (c < 0x20 || c == 0x7f) put_hex_byte(&k, c, json);
            else put(&k, (const char *)s + i, 1);
        } else if (cp >= 0x80 && cp <= 0x9f) { /* C1 controls */
            put_hex_byte(&k, (unsigned char)cp, json);
        } else if (cp == 0x2028 || cp == 0x2029) {
            put(&k, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
        } else {
            put(&k, (const char *)s + i, l);
        }
        i += l;
    }
    if (n) out[k.used] = 0;
    return k.need;
}

int pe_escape_fput(FILE *f, const char *s, size_t len, pe_esc_ctx ctx) {
    char stackbuf[1024];
    size_t need = pe_escape(stackbuf, sizeof stackbuf, s, len, ctx);
    if (need < sizeof stackbuf)
        return fwrite(stackbuf, 1, need, f) == need ? 0 : EIO;
    /* Long name: escape in chunks cut at character boundaries of the input. */
    size_t i = 0;
    while (i < len) {
        size_t take = len - i < 200 ? len - i : 200;
        /* do not cut inside a UTF-8 sequence */
        while (i + take < len && take > 0 &&
               (((const unsigned char *)s)[i + take] & 0xc0) == 0x80)
            take--;
        if (take == 0) take = 1;
        size_t m = pe_escape(stackbuf, sizeof stackbuf, s + i, take, ctx);
        if (fwrite(stackbuf, 1, m, f) != m) return EIO;
        i += take;
    }
    return 0;
}

const char *pe_esc(const char *s) {
    static _Thread_local char bufs[8][2048];
    static _Thread_local unsigned slot;
    char *b = bufs[slot++ & 7];
    size_t room = sizeof bufs[0] - 3; /* space kept for "..." */
    if (pe_escape(b, room, s, strlen(s), PE_ESC_TEXT) >= room)
        strcat(b, "...");
    return b;
}
