/* SPDX-License-Identifier: Apache-2.0 */
/* Encoding of Export*ServiceResponse bodies (protobuf and OTLP/JSON). */
#include "otlp/otlp_response.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "otlp/otlp_wire.h"

/* Export*ServiceResponse.partial_success and Export*PartialSuccess fields. */
#define RESP_PARTIAL_SUCCESS 1
#define PARTIAL_REJECTED 1
#define PARTIAL_ERROR_MESSAGE 2

static const char *const json_rejected_name[OTLP_SIGNAL_COUNT] = {
    [OTLP_TRACES] = "rejectedSpans",
    [OTLP_METRICS] = "rejectedDataPoints",
    [OTLP_LOGS] = "rejectedLogRecords",
};

int otlp_response_encode_proto(enum otlp_signal sig, uint64_t rejected,
                               const char *error_message, struct buf *out)
{
    if ((unsigned)sig >= OTLP_SIGNAL_COUNT || out == NULL)
        return -EINVAL;
    size_t mlen = error_message != NULL ? strlen(error_message) : 0;
    if (rejected == 0 && mlen == 0)
        return 0;
    if (rejected > INT64_MAX)
        rejected = INT64_MAX;

    size_t inner = 0;
    if (rejected != 0)
        inner += 1 + otlp_wire_varint_size(rejected);
    if (mlen != 0)
        inner += otlp_wire_len_field_size(PARTIAL_ERROR_MESSAGE, mlen);
    size_t total = otlp_wire_len_field_size(RESP_PARTIAL_SUCCESS, inner);
    int rc = buf_reserve(out, total);
    if (rc < 0)
        return rc;

    uint8_t *d = out->data + out->len;
    d = otlp_wire_put_len_hdr(d, RESP_PARTIAL_SUCCESS, inner);
    if (rejected != 0) {
        d = otlp_wire_put_key(d, PARTIAL_REJECTED, OTLP_WIRE_VARINT);
        d = otlp_wire_put_varint(d, rejected);
    }
    if (mlen != 0) {
        d = otlp_wire_put_bytes(d, PARTIAL_ERROR_MESSAGE, error_message, mlen);
        /* replace invalid UTF-8 in place, byte for byte, so the length holds */
        uint8_t *s = d - mlen;
        size_t i = 0;
        while ((i += otlp_utf8_valid_prefix(s + i, mlen - i)) < mlen)
            s[i++] = '?';
    }
    out->len += total;
    return 0;
}

/* Append s as the contents of a JSON string (RFC 8259 section 7). */
static int json_escape(struct buf *out, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *s = (const uint8_t *)str;
    size_t n = strlen(str), i = 0;
    int rc;
    while (i < n) {
        /* longest run that needs no escaping */
        size_t valid = i + otlp_utf8_valid_prefix(s + i, n - i);
        size_t j = i;
        while (j < valid && s[j] >= 0x20 && s[j] != '"' && s[j] != '\\')
            j++;
        if (j > i && (rc = buf_append(out, s + i, j - i)) < 0)
            return rc;
        i = j;
        if (i == n)
            break;
        char esc[8];
        size_t el = 2;
        esc[0] = '\\';
        if (i >= valid) { /* invalid UTF-8 byte */
            rc = buf_append(out, "\\ufffd", 6);
            if (rc < 0)
                return rc;
            i++;
            continue;
        }
        switch (s[i]) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[s[i] >> 4];
            esc[5] = hex[s[i] & 15];
            el = 6;
        }
        if ((rc = buf_append(out, esc, el)) < 0)
            return rc;
        i++;
    }
    return 0;
}

int otlp_response_encode_json(enum otlp_signal sig, uint64_t rejected, const char *error_message,
                              struct buf *out)
{
    if ((unsigned)sig >= OTLP_SIGNAL_COUNT || out == NULL)
        return -EINVAL;
    bool has_msg = error_message != NULL && error_message[0] != '\0';
    if (rejected == 0 && !has_msg)
        return buf_append(out, "{}", 2);
    if (rejected > INT64_MAX)
        rejected = INT64_MAX;

    size_t saved = out->len;
    int rc = buf_append_str(out, "{\"partialSuccess\":{");
    if (rc == 0 && rejected != 0)
        rc = buf_printf(out, "\"%s\":\"%" PRIu64 "\"%s", json_rejected_name[sig], rejected,
                        has_msg ? "," : "");
    if (rc == 0 && has_msg) {
        rc = buf_append_str(out, "\"errorMessage\":\"");
        if (rc == 0)
            rc = json_escape(out, error_message);
        if (rc == 0)
            rc = buf_append(out, "\"", 1);
    }
    if (rc == 0)
        rc = buf_append(out, "}}", 2);
    if (rc < 0)
        out->len = saved;
    return rc;
}
