/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 validation and JSON string escaping for lib/obs (logs, health). */
#include "obs/obs_internal.h"

#include <stdint.h>
#include <string.h>

/* Unicode 15, table 3-7: well-formed byte sequences. */
size_t obs_utf8_seq(const unsigned char *s, size_t n, size_t *bad_len)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        if (bad_len != NULL)
            *bad_len = 1;
        return 0;
    }
    size_t i = 1;
    for (; i < need; i++) {
        if (i >= n)
            break;
        unsigned char b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
            break;
    }
    if (i == need)
        return need;
    if (bad_len != NULL)
        *bad_len = i;
    return 0;
}

static const char hex_digits[] = "0123456789abcdef";

size_t obs_json_escape(char *dst, size_t cap, const char *s, size_t n, size_t *consumed)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;

    while (i < n) {
        unsigned char c = p[i];
        char esc[6];
        size_t elen, in_len = 1;
        const char *src = esc;

        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            /* Fast path: plain ASCII. */
            if (o >= cap)
                break;
            dst[o++] = (char)c;
            i++;
            continue;
        }
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < 0x20 || c == 0x7F) {
            esc[0] = '\\';
            elen = 2;
            switch (c) {
            case '\n': esc[1] = 'n'; break;
            case '\r': esc[1] = 'r'; break;
            case '\t': esc[1] = 't'; break;
            case '\b': esc[1] = 'b'; break;
            case '\f': esc[1] = 'f'; break;
            default:
                esc[1] = 'u';
                esc[2] = '0';
                esc[3] = '0';
                esc[4] = hex_digits[c >> 4];
                esc[5] = hex_digits[c & 0xF];
                elen = 6;
            }
        } else {
            size_t bad = 1;
            size_t len = obs_utf8_seq(p + i, n - i, &bad);
            if (len > 0) {
                src = (const char *)p + i;
                elen = len;
                in_len = len;
            } else {
                src = "\xEF\xBF\xBD"; /* U+FFFD REPLACEMENT CHARACTER */
                elen = 3;
                in_len = bad;
            }
        }
        if (elen > cap - o)
            break;
        memcpy(dst + o, src, elen);
        o += elen;
        i += in_len;
    }
    if (consumed != NULL)
        *consumed = i;
    return o;
}
