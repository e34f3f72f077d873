/*
 * escape.h - the one escaping function for names that come from data (file
 * names, archive members, labels, class names): attacker-controlled bytes
 * that must never break a tab-separated line, an NDJSON record, an HTML page
 * or reach a terminal raw.
 *
 * Contexts:
 *  PE_ESC_TEXT  stdout TSV fields and stderr messages. Printable ASCII and
 *               valid UTF-8 pass, except: backslash -> "\\", tab -> "\t",
 *               newline -> "\n", CR -> "\r", any other control byte, DEL
 *               and each invalid UTF-8 byte -> "\xHH", C1 controls
 *               (U+0080..U+009F) -> "\xHH" of the code point, U+2028 and
 *               U+2029 -> "\u2028", "\u2029". The result holds no byte
 *               below 0x20 and no 0x7f, so nothing reaches a terminal as a
 *               control sequence. Not reversible in every case (a raw 0x85
 *               byte and U+0085 both print as \x85): it is for display and
 *               line safety, not for round trips.
 *  PE_ESC_JSON  the inside of a JSON string: '"' and '\\' escaped, control
 *               characters as \n \t \r or \u00XX, DEL and C1 as \u00XX,
 *               U+2028/2029 as \u2028/\u2029, each invalid UTF-8 byte as
 *               \ufffd (the replacement character).
 *  PE_ESC_HTML  text or attribute content: & < > " ' as entities, control
 *               and invalid bytes and U+2028/2029 as in PE_ESC_TEXT.
 */
#ifndef PE_ESCAPE_H
#define PE_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

typedef enum pe_esc_ctx { PE_ESC_TEXT, PE_ESC_JSON, PE_ESC_HTML } pe_esc_ctx;

/* Length (1..4) of the valid UTF-8 sequence at s[0..n), or 0 when it
 * starts an invalid one (overlong, surrogate, above U+10FFFF, truncated,
 * stray continuation byte). n >= 1. The code point goes to *cp when valid. */
size_t pe_utf8_seq(const unsigned char *s, size_t n, unsigned *cp);

/* Writes the escaped form of s[0..len) to out (size n, NUL-terminated,
 * truncated to fit without splitting an escape). Returns the length the
 * full escaped string needs (excluding NUL), as snprintf. */
size_t pe_escape(char *out, size_t n, const char *s, size_t len,
                 pe_esc_ctx ctx);

/* Writes the escaped form to f. Returns 0 or EIO. */
int pe_escape_fput(FILE *f, const char *s, size_t len, pe_esc_ctx ctx);

/* Escaped copy in a per-thread rotating buffer (8 slots of 2 KiB, truncated
 * with "..."): for messages, e.g. pe_esc(path). Valid until 8 more calls in
 * the same thread. */
const char *pe_esc(const char *s);

#endif
