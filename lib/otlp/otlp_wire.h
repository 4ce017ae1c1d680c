/* SPDX-License-Identifier: Apache-2.0 */
/* Protobuf wire-format primitives shared by the OTLP scanner, the batcher,
 * the response encoder and the JSON converter: bounds-checked decoding of
 * varints, keys and length prefixes, skipping, encoding, UTF-8 validation.
 * Everything is inline and allocation-free; see
 * https://protobuf.dev/programming-guides/encoding/ */
#ifndef OTLP_OTLP_WIRE_H
#define OTLP_OTLP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum otlp_wire_type {
    OTLP_WIRE_VARINT = 0,
    OTLP_WIRE_I64 = 1,
    OTLP_WIRE_LEN = 2,
    OTLP_WIRE_SGROUP = 3, /* deprecated groups: rejected everywhere */
    OTLP_WIRE_EGROUP = 4,
    OTLP_WIRE_I32 = 5,
};

#define OTLP_WIRE_MAX_VARINT 10              /* bytes in the longest varint */
#define OTLP_WIRE_MAX_KEY 5                  /* bytes in the longest field key */
#define OTLP_WIRE_MAX_LEN_PREFIX 5           /* bytes in the longest length prefix */
#define OTLP_WIRE_MAX_FIELD ((1u << 29) - 1) /* highest legal field number */
#define OTLP_WIRE_MAX_LEN 0x7fffffffu        /* protobuf messages are < 2 GiB */

/* Decoder results: 0 on success, else one of these (all negative). */
#define OTLP_WIRE_ERR_TRUNC (-1)  /* input ends inside the item */
#define OTLP_WIRE_ERR_VARINT (-2) /* varint longer than allowed or overflowing */
#define OTLP_WIRE_ERR_FIELD (-3)  /* field number 0 or above OTLP_WIRE_MAX_FIELD */
#define OTLP_WIRE_ERR_LEN (-4)    /* length prefix points past `end` (or >= 2 GiB) */
#define OTLP_WIRE_ERR_GROUP (-5) /* wire type 3 or 4 (groups) */
#define OTLP_WIRE_ERR_WIRE (-6)   /* wire type 6 or 7 (undefined) */

/*
 * Decode a varint at *pp (which may equal `end`). On success stores the value
 * in *v, advances *pp past it and returns 0. Returns OTLP_WIRE_ERR_TRUNC when
 * `end` comes first, OTLP_WIRE_ERR_VARINT when it is longer than 10 bytes or its
 * 10th byte carries bits beyond 64. *pp is unchanged on error.
 */
static inline int otlp_wire_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) {
        *v = *p;
        *pp = p + 1;
        return 0;
    }
    uint64_t x = 0;
    for (unsigned i = 0; i < OTLP_WIRE_MAX_VARINT; i++) {
        if (p + i >= end)
            return OTLP_WIRE_ERR_TRUNC;
        uint8_t b = p[i];
        if (i == OTLP_WIRE_MAX_VARINT - 1 && b > 1)
            return OTLP_WIRE_ERR_VARINT;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *v = x;
            *pp = p + i + 1;
            return 0;
        }
    }
    return OTLP_WIRE_ERR_VARINT;
}

/*
 * Skip a varint without decoding it. Same results and rules as
 * otlp_wire_varint().
 */
static inline int otlp_wire_skip_varint(const uint8_t **pp, const uint8_t *end)
{
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) {
        *pp = p + 1;
        return 0;
    }
    for (unsigned i = 0; i < OTLP_WIRE_MAX_VARINT; i++) {
        if (p + i >= end)
            return OTLP_WIRE_ERR_TRUNC;
        if (p[i] < 0x80) {
            if (i == OTLP_WIRE_MAX_VARINT - 1 && p[i] > 1)
                return OTLP_WIRE_ERR_VARINT;
            *pp = p + i + 1;
            return 0;
        }
    }
    return OTLP_WIRE_ERR_VARINT;
}

/*
 * Decode a field key (tag) into field number and wire type. Keys are at
 * most 5 bytes (field numbers up to 2^29-1). Returns 0, OTLP_WIRE_ERR_TRUNC,
 * OTLP_WIRE_ERR_VARINT (longer than 5 bytes), OTLP_WIRE_ERR_FIELD (field 0 or too
 * large). The wire type is not checked here.
 */
static inline int otlp_wire_key(const uint8_t **pp, const uint8_t *end, uint32_t *field,
                                unsigned *wt)
{
    const uint8_t *p = *pp;
    uint32_t k;
    if (p < end && *p < 0x80) {
        k = *p++;
    } else {
        k = 0;
        unsigned i = 0;
        for (;; i++) {
            if (i == OTLP_WIRE_MAX_KEY)
                return OTLP_WIRE_ERR_VARINT;
            if (p + i >= end)
                return OTLP_WIRE_ERR_TRUNC;
            uint8_t b = p[i];
            if (i == OTLP_WIRE_MAX_KEY - 1 && b > 0x0f)
                return b & 0x80 ? OTLP_WIRE_ERR_VARINT  /* 6 bytes or more */
                                : OTLP_WIRE_ERR_FIELD; /* beyond 32 bits */
            k |= (uint32_t)(b & 0x7f) << (7 * i);
            if (b < 0x80)
                break;
        }
        p += i + 1;
    }
    if ((k >> 3) == 0)
        return OTLP_WIRE_ERR_FIELD;
    *field = k >> 3;
    *wt = k & 7;
    *pp = p;
    return 0;
}

/*
 * Decode the length prefix of a length-delimited value at *pp and check that
 * the payload fits before `end`. On success *n is the payload size and *pp
 * points at the payload. Returns 0, OTLP_WIRE_ERR_TRUNC (prefix incomplete),
 * OTLP_WIRE_ERR_VARINT (prefix longer than 5 bytes), OTLP_WIRE_ERR_LEN (payload
 * beyond `end`, or 2 GiB and more).
 */
static inline int otlp_wire_len(const uint8_t **pp, const uint8_t *end, size_t *n)
{
    const uint8_t *p = *pp;
    uint64_t x;
    if (p < end && *p < 0x80) {
        x = *p++;
    } else {
        x = 0;
        unsigned i = 0;
        for (;; i++) {
            if (i == OTLP_WIRE_MAX_LEN_PREFIX)
                return OTLP_WIRE_ERR_VARINT;
            if (p + i >= end)
                return OTLP_WIRE_ERR_TRUNC;
            x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
            if (p[i] < 0x80)
                break;
        }
        p += i + 1;
    }
    if (x > OTLP_WIRE_MAX_LEN || x > (uint64_t)(end - p))
        return OTLP_WIRE_ERR_LEN;
    *n = (size_t)x;
    *pp = p;
    return 0;
}

/*
 * Skip the value of a field of wire type `wt` at *pp. Returns 0 (and
 * advances), OTLP_WIRE_ERR_TRUNC, OTLP_WIRE_ERR_VARINT, OTLP_WIRE_ERR_LEN,
 * OTLP_WIRE_ERR_GROUP, OTLP_WIRE_ERR_WIRE.
 */
static inline int otlp_wire_skip(const uint8_t **pp, const uint8_t *end, unsigned wt)
{
    size_t n;
    int rc;
    switch (wt) {
    case OTLP_WIRE_VARINT:
        return otlp_wire_skip_varint(pp, end);
    case OTLP_WIRE_I64:
        if (end - *pp < 8)
            return OTLP_WIRE_ERR_TRUNC;
        *pp += 8;
        return 0;
    case OTLP_WIRE_LEN:
        rc = otlp_wire_len(pp, end, &n);
        if (rc < 0)
            return rc;
        *pp += n;
        return 0;
    case OTLP_WIRE_I32:
        if (end - *pp < 4)
            return OTLP_WIRE_ERR_TRUNC;
        *pp += 4;
        return 0;
    case OTLP_WIRE_SGROUP:
    case OTLP_WIRE_EGROUP:
        return OTLP_WIRE_ERR_GROUP;
    default:
        return OTLP_WIRE_ERR_WIRE;
    }
}

/* Little-endian fixed-width loads; the caller has checked the bounds. */
static inline uint64_t otlp_wire_fixed64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t otlp_wire_fixed32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

/* ---- encoding: the caller reserves room (see the *_size helpers) ---- */

/* Bytes the varint encoding of v takes (1..10). */
static inline size_t otlp_wire_varint_size(uint64_t v)
{
    /* 1 + floor(bit_length(v) - 1) / 7, with v | 1 so that 0 takes 1 byte */
    unsigned bits = 64u - (unsigned)__builtin_clzll(v | 1);
    return (bits + 6) / 7;
}

/* Write v as a varint at dst; returns the position after it. */
static inline uint8_t *otlp_wire_put_varint(uint8_t *dst, uint64_t v)
{
    while (v >= 0x80) {
        *dst++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *dst++ = (uint8_t)v;
    return dst;
}

static inline uint32_t otlp_wire_make_key(uint32_t field, unsigned wt)
{
    return (field << 3) | wt;
}

static inline size_t otlp_wire_key_size(uint32_t field)
{
    return otlp_wire_varint_size((uint64_t)field << 3);
}

static inline uint8_t *otlp_wire_put_key(uint8_t *dst, uint32_t field, unsigned wt)
{
    return otlp_wire_put_varint(dst, otlp_wire_make_key(field, wt));
}

/* Size of a whole length-delimited field: key + length prefix + payload. */
static inline size_t otlp_wire_len_field_size(uint32_t field, size_t n)
{
    return otlp_wire_key_size(field) + otlp_wire_varint_size(n) + n;
}

/* Write key and length prefix of a length-delimited field (payload follows). */
static inline uint8_t *otlp_wire_put_len_hdr(uint8_t *dst, uint32_t field, size_t n)
{
    dst = otlp_wire_put_key(dst, field, OTLP_WIRE_LEN);
    return otlp_wire_put_varint(dst, n);
}

/* Write a whole length-delimited field. */
static inline uint8_t *otlp_wire_put_bytes(uint8_t *dst, uint32_t field, const void *data,
                                           size_t n)
{
    dst = otlp_wire_put_len_hdr(dst, field, n);
    if (n > 0)
        memcpy(dst, data, n);
    return dst + n;
}

static inline uint8_t *otlp_wire_put_fixed64(uint8_t *dst, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(dst, &v, 8);
    return dst + 8;
}

static inline uint8_t *otlp_wire_put_fixed32(uint8_t *dst, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(dst, &v, 4);
    return dst + 4;
}

/* ---- UTF-8 (proto3 `string` fields must hold valid UTF-8) ---- */

/*
 * Length of the longest valid UTF-8 prefix of s[0..n) that ends on a
 * character boundary; == n when all of it is valid. Rejects overlong forms,
 * surrogates (U+D800..U+DFFF) and code points above U+10FFFF (Unicode 15,
 * table 3-7). ASCII runs are checked 8 bytes at a time.
 */
static inline size_t otlp_utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        while (i < n && s[i] < 0x80)
            i++;
        if (i == n)
            break;
        uint8_t c = s[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the 2nd byte */
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return i;
        }
        if (n - i - 1 < need)
            return i;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
        i += need + 1;
    }
    return n;
}

/* True when s[0..n) is valid UTF-8. Short ASCII strings (keys, names) take
 * one OR-reduction and no per-byte branches. */
static inline bool otlp_utf8_valid(const uint8_t *s, size_t n)
{
    if (n < 8) {
        uint8_t acc = 0;
        for (size_t i = 0; i < n; i++)
            acc |= s[i];
        if (acc < 0x80)
            return true;
    } else {
        uint64_t acc = 0, w;
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            memcpy(&w, s + i, 8);
            acc |= w;
        }
        memcpy(&w, s + n - 8, 8); /* the tail, overlapping the last word */
        acc |= w;
        if (!(acc & 0x8080808080808080ull))
            return true;
    }
    return otlp_utf8_valid_prefix(s, n) == n;
}

#endif
