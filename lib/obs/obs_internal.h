/* SPDX-License-Identifier: Apache-2.0 */
/* Private to lib/obs: UTF-8 checking and JSON string escaping shared by the
 * log writer, the health renderer and the metrics label validator. */
#ifndef OTLP_OBS_INTERNAL_H
#define OTLP_OBS_INTERNAL_H

#include <stddef.h>

/* Length (1..4) of the well-formed UTF-8 sequence at s[0..n), or 0 when the
 * bytes there are not one (overlong, surrogate, > U+10FFFF, truncated). On 0,
 * *bad_len (if not NULL) is the length of the maximal ill-formed subpart
 * (Unicode 15, 3.9 "U+FFFD substitution"), always >= 1. Requires n >= 1. */
size_t obs_utf8_seq(const unsigned char *s, size_t n, size_t *bad_len);

/*
 * JSON-escape s[0..n) (RFC 8259 7) into dst[0..cap): quotes, backslash and
 * control characters are escaped, ill-formed UTF-8 becomes U+FFFD. Only whole
 * escape units are written. Returns the bytes written; *consumed is how much
 * of s was escaped (== n when everything fit). No quotes, no NUL.
 */
size_t obs_json_escape(char *dst, size_t cap, const char *s, size_t n, size_t *consumed);

#endif
