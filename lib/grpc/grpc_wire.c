/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC header values: grpc-timeout, grpc-message, grpc-status-details-bin. */
#include "grpc/grpc_wire.h"

#include <errno.h>
#include <string.h>

static const char *const status_names[GRPC_STATUS_COUNT] = {
#define X(e, v, n) [v] = n,
    GRPC_STATUS_CODES(X)
#undef X
};

const char *grpc_status_name(int code)
{
    if (code < 0 || code >= GRPC_STATUS_COUNT)
        return "Unknown";
    return status_names[code];
}

int grpc_timeout_parse(const uint8_t *v, size_t len, uint64_t *ns_out)
{
    /* PROTOCOL-HTTP2.md: TimeoutValue is at most 8 digits. */
    if (len < 2 || len > 9)
        return -EINVAL;
    uint64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EINVAL;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    uint64_t mul;
    switch (v[len - 1]) {
    case 'H':
        mul = 3600ull * 1000000000ull;
        break;
    case 'M':
        mul = 60ull * 1000000000ull;
        break;
    case 'S':
        mul = 1000000000ull;
        break;
    case 'm':
        mul = 1000000ull;
        break;
    case 'u':
        mul = 1000ull;
        break;
    case 'n':
        mul = 1;
        break;
    default:
        return -EINVAL;
    }
    *ns_out = n > UINT64_MAX / mul ? UINT64_MAX : n * mul;
    return 0;
}

size_t grpc_percent_encode(const char *msg, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p != '\0'; p++) {
        bool plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
        size_t need = plain ? 1 : 3;
        if (o + need >= cap)
            break;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return o;
}

int grpc_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t need = (len / 3) * 4 + (len % 3 ? len % 3 + 1 : 0) + 1;
    if (cap < need)
        return -EMSGSIZE;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
    }
    out[o] = '\0';
    return (int)o;
}

/* ---- a few protobuf primitives for google.rpc.Status ---- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* key (field, wire type 2) + length prefix */
static int put_len_field(struct buf *out, unsigned field, size_t len)
{
    uint8_t hdr[16];
    size_t n = put_varint(hdr, (uint64_t)field << 3 | 2);
    n += put_varint(hdr + n, len);
    return buf_append(out, hdr, n);
}

int grpc_status_details_encode(int code, const char *message, bool retry, uint32_t retry_delay_s,
                               struct buf *out)
{
    static const char type_url[] = "type.googleapis.com/google.rpc.RetryInfo";
    const size_t type_len = sizeof(type_url) - 1;
    size_t mlen = message != NULL ? strlen(message) : 0;
    int rc = 0;
    uint8_t tmp[16];

    /* Status.code (field 1, int32; proto3 omits 0) */
    if (code != 0) {
        tmp[0] = 0x08;
        size_t n = 1 + put_varint(tmp + 1, (uint64_t)(int64_t)code);
        rc = buf_append(out, tmp, n);
    }
    /* Status.message (field 2) */
    if (rc == 0 && mlen > 0 && (rc = put_len_field(out, 2, mlen)) == 0)
        rc = buf_append(out, message, mlen);
    if (rc < 0 || !retry)
        return rc;

    /* Duration{seconds (field 1)} */
    size_t dur_len = retry_delay_s ? 1 + varint_len(retry_delay_s) : 0;
    /* RetryInfo{retry_delay (field 1)} */
    size_t ri_len = 1 + varint_len(dur_len) + dur_len;
    /* Any{type_url (1), value (2)} */
    size_t any_len = 1 + varint_len(type_len) + type_len + 1 + varint_len(ri_len) + ri_len;

    if ((rc = put_len_field(out, 3, any_len)) < 0 || (rc = put_len_field(out, 1, type_len)) < 0 ||
        (rc = buf_append(out, type_url, type_len)) < 0 ||
        (rc = put_len_field(out, 2, ri_len)) < 0 || (rc = put_len_field(out, 1, dur_len)) < 0)
        return rc;
    if (retry_delay_s) {
        tmp[0] = 0x08;
        size_t n = 1 + put_varint(tmp + 1, retry_delay_s);
        rc = buf_append(out, tmp, n);
    }
    return rc;
}
