/* SPDX-License-Identifier: Apache-2.0 */
/* OTLP JSON <-> protobuf wire bytes. Both directions walk the protobuf-c
 * descriptors, so there is no per-message code: a single-pass JSON reader writes
 * wire bytes straight into the output buffer, and a wire walker writes JSON. */
#include "otlp/otlp_json.h"

#include <errno.h>
#include <math.h>
#include <float.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

/* ---------------------------------------------------------------------------
 * Shared helpers: descriptors, wire types, varints, names.
 * ------------------------------------------------------------------------- */

static const ProtobufCMessageDescriptor *const request_desc[OTLP_SIGNAL_COUNT] = {
    [OTLP_TRACES] =
        &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
    [OTLP_METRICS] =
        &opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__descriptor,
    [OTLP_LOGS] =
        &opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor,
};

static const ProtobufCMessageDescriptor *const response_desc[OTLP_SIGNAL_COUNT] = {
    [OTLP_TRACES] =
        &opentelemetry__proto__collector__trace__v1__export_trace_service_response__descriptor,
    [OTLP_METRICS] =
        &opentelemetry__proto__collector__metrics__v1__export_metrics_service_response__descriptor,
    [OTLP_LOGS] =
        &opentelemetry__proto__collector__logs__v1__export_logs_service_response__descriptor,
};

const ProtobufCMessageDescriptor *otlp_json_request_descriptor(enum otlp_signal sig)
{
    if ((unsigned)sig >= OTLP_SIGNAL_COUNT)
        return NULL;
    return request_desc[sig];
}

const ProtobufCMessageDescriptor *otlp_json_response_descriptor(enum otlp_signal sig)
{
    if ((unsigned)sig >= OTLP_SIGNAL_COUNT)
        return NULL;
    return response_desc[sig];
}

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* The wire type a field's values use (packed repeated fields aside). */
static unsigned type_wt(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return WT_I64;
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return WT_I32;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return WT_LEN;
    default:
        return WT_VARINT;
    }
}

static bool is_64bit_int(ProtobufCType t)
{
    return t == PROTOBUF_C_TYPE_INT64 || t == PROTOBUF_C_TYPE_SINT64 ||
           t == PROTOBUF_C_TYPE_SFIXED64 || t == PROTOBUF_C_TYPE_UINT64 ||
           t == PROTOBUF_C_TYPE_FIXED64;
}

/* Fields whose value is kept when it equals the default: oneof members
 * (including proto3 `optional`, spelled as synthetic oneofs), proto2 optional
 * fields, and messages (present even when empty). */
static bool has_presence(const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || f->label == PROTOBUF_C_LABEL_OPTIONAL ||
           f->label == PROTOBUF_C_LABEL_REQUIRED || f->type == PROTOBUF_C_TYPE_MESSAGE;
}

static bool same_oneof(const ProtobufCFieldDescriptor *a, const ProtobufCFieldDescriptor *b)
{
    return a != b && (a->flags & b->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           a->quantifier_offset == b->quantifier_offset;
}

/* OTLP spec: trace and span ids are hex in JSON, not base64. Returns the id's
 * length in bytes, or 0 for an ordinary bytes field. */
static size_t hex_id_len(const ProtobufCFieldDescriptor *f)
{
    if (f->type != PROTOBUF_C_TYPE_BYTES)
        return 0;
    if (strcmp(f->name, "trace_id") == 0)
        return 16;
    if (strcmp(f->name, "span_id") == 0 || strcmp(f->name, "parent_span_id") == 0)
        return 8;
    return 0;
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

/* Reads a varint of at most 10 bytes. Returns its length, 0 if truncated or
 * too long. */
static size_t get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (size_t i = 0; i < 10 && p + i < end; i++) {
        r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (p[i] < 0x80) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static char ascii_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/* proto3 JSON name (protoc's ToJsonName: drop '_', upper-case what follows)
 * written to `dst`; returns its length, or 0 if it does not fit. */
static size_t json_name(const char *name, char *dst, size_t cap)
{
    size_t n = 0;
    bool up = false;
    for (; *name != '\0'; name++) {
        if (*name == '_') {
            up = true;
            continue;
        }
        if (n == cap)
            return 0;
        dst[n++] = up ? ascii_upper(*name) : *name;
        up = false;
    }
    return n;
}

/* Does JSON key `k` name field `name`, as lowerCamelCase or as written? */
static inline bool key_matches(const char *name, const uint8_t *k, size_t kn)
{
    if ((uint8_t)name[0] != k[0]) /* both forms start alike (names start with a letter) */
        return false;
    size_t j = 0;
    bool up = false, had_us = false;
    const char *q;
    for (q = name; *q != '\0'; q++) {
        if (*q == '_') {
            up = had_us = true;
            continue;
        }
        char ch = up ? ascii_upper(*q) : *q;
        up = false;
        if (j >= kn || (uint8_t)ch != k[j])
            break;
        j++;
    }
    if (*q == '\0' && j == kn)
        return true;
    /* before the first '_' both forms are the same: a mismatch there is final */
    return had_us && strlen(name) == kn && memcmp(name, k, kn) == 0;
}

/* True if none of the 8 bytes at p is '"', '\\', a control character or
 * non-ASCII: the bytes a JSON string copies through unchanged. */
static inline bool plain8(const uint8_t *p)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t x, q, b;
    memcpy(&x, p, 8);
    q = x ^ (ones * '"');
    b = x ^ (ones * '\\');
    uint64_t t = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b);
    return ((t | x) & high) == 0;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), 0 if invalid. p[0] >= 0x80. */
static size_t utf8_seq(const uint8_t *p, const uint8_t *end)
{
    size_t avail = (size_t)(end - p);
    uint8_t c = p[0];
    if (c >= 0xc2 && c <= 0xdf) {
        if (avail >= 2 && (p[1] & 0xc0) == 0x80)
            return 2;
        return 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f))
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
            return 0;
        return 4;
    }
    return 0;
}

static const char hex_digits[] = "0123456789abcdef";
static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int hex_val(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Both base64 alphabets (RFC 4648 sections 4 and 5), -1 for anything else. */
static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* ---------------------------------------------------------------------------
 * JSON -> protobuf. A recursive-descent reader over the input that writes wire
 * bytes into `out` as it goes. A nested message or packed array gets a one-byte
 * length placeholder that is widened (memmove) when the payload reaches 128
 * bytes, so no temporary buffer exists per level.
 * ------------------------------------------------------------------------- */

struct jpath {
    const uint8_t *key; /* NULL: array element */
    size_t key_len;
    size_t index;
};

struct jctx {
    const uint8_t *start;
    const uint8_t *p;
    const uint8_t *end;
    struct buf *out;
    char *err;
    size_t err_len;
    unsigned depth;
    unsigned npath;
    struct jpath path[OTLP_JSON_MAX_DEPTH + 2];
};

/* A scanned JSON string: the raw bytes between the quotes. */
struct jstr {
    const uint8_t *s;
    size_t n;
    size_t ulen; /* length once escapes are decoded */
    bool esc;
};

/* Records the first error: "<json path>: <reason>". Returns `rc`. */
__attribute__((format(printf, 3, 4))) static int jfail_rc(struct jctx *c, int rc, const char *fmt,
                                                          ...)
{
    if (c->err == NULL || c->err_len == 0 || c->err[0] != '\0')
        return rc;
    size_t n = 0;
    for (unsigned i = 0; i < c->npath && n < c->err_len; i++) {
        const struct jpath *pe = &c->path[i];
        int w;
        if (pe->key != NULL)
            w = snprintf(c->err + n, c->err_len - n, "%s%.*s", i ? "." : "",
                         (int)BASE_MIN(pe->key_len, 128), (const char *)pe->key);
        else
            w = snprintf(c->err + n, c->err_len - n, "[%zu]", pe->index);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    if (n < c->err_len && c->npath > 0) {
        int w = snprintf(c->err + n, c->err_len - n, ": ");
        if (w > 0)
            n += (size_t)w;
    }
    if (n < c->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->err_len - n, fmt, ap);
        va_end(ap);
    }
    if (c->err[0] == '\0') /* never leave an empty message behind */
        snprintf(c->err, c->err_len, "?");
    return rc;
}

#define jfail(c, ...) jfail_rc((c), -EINVAL, __VA_ARGS__)

static int jsyntax(struct jctx *c, const uint8_t *at, const char *what)
{
    return jfail(c, "invalid JSON at offset %zu: %s", (size_t)(at - c->start), what);
}

static int jout_rc(struct jctx *c, int rc)
{
    if (rc == -EMSGSIZE)
        return jfail_rc(c, rc, "protobuf output exceeds %zu bytes", c->out->limit);
    return jfail_rc(c, rc, "out of memory");
}

static inline int jreserve(struct jctx *c, size_t n)
{
    struct buf *b = c->out;
    if (likely(b->cap - b->len >= n))
        return 0;
    int rc = buf_reserve(b, n);
    return rc < 0 ? jout_rc(c, rc) : 0;
}

static inline void skip_ws(struct jctx *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static int read_hex4(const uint8_t *p, const uint8_t *end, uint32_t *cp)
{
    if (end - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_val(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (uint32_t)h;
    }
    *cp = v;
    return 0;
}

static size_t utf8_len_cp(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

static size_t put_utf8(uint8_t *d, uint32_t cp)
{
    if (cp < 0x80) {
        d[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (uint8_t)(0xc0 | cp >> 6);
        d[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (uint8_t)(0xe0 | cp >> 12);
        d[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        d[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    d[0] = (uint8_t)(0xf0 | cp >> 18);
    d[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    d[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    d[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* Scans the string at c->p (a '"'): checks escapes, surrogate pairs, control
 * characters and UTF-8, and leaves c->p after the closing quote. */
static int scan_string(struct jctx *c, struct jstr *js)
{
    const uint8_t *p = c->p + 1, *end = c->end;
    size_t saved = 0;
    js->s = p;
    js->esc = false;
    for (;;) {
        while (end - p >= 8 && plain8(p))
            p += 8;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (unlikely(p >= end))
            return jsyntax(c, c->p, "unterminated string");
        uint8_t ch = *p;
        if (ch == '"')
            break;
        if (ch == '\\') {
            js->esc = true;
            if (end - p < 2)
                return jsyntax(c, c->p, "unterminated string");
            switch (p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                saved += 1;
                continue;
            case 'u':
                break;
            default:
                return jsyntax(c, p, "invalid escape");
            }
            uint32_t cp;
            if (read_hex4(p + 2, end, &cp) < 0)
                return jsyntax(c, p, "invalid \\u escape");
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return jsyntax(c, p, "lone UTF-16 surrogate");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || read_hex4(p + 8, end, &lo) < 0 ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return jsyntax(c, p, "lone UTF-16 surrogate");
                p += 12;
                saved += 12 - 4;
                continue;
            }
            p += 6;
            saved += 6 - utf8_len_cp(cp);
            continue;
        }
        if (ch < 0x20)
            return jsyntax(c, p, "control character in string");
        size_t k = utf8_seq(p, end);
        if (k == 0)
            return jsyntax(c, p, "invalid UTF-8");
        p += k;
    }
    js->n = (size_t)(p - js->s);
    js->ulen = js->n - saved;
    c->p = p + 1;
    return 0;
}

/* Decodes a scanned string into `d` (js->ulen bytes). */
static void unescape(const struct jstr *js, uint8_t *d)
{
    const uint8_t *p = js->s, *end = js->s + js->n;
    if (!js->esc) {
        memcpy(d, p, js->n);
        return;
    }
    while (p < end) {
        if (*p != '\\') {
            *d++ = *p++;
            continue;
        }
        uint8_t e = p[1];
        p += 2;
        switch (e) {
        case 'b':
            *d++ = '\b';
            break;
        case 'f':
            *d++ = '\f';
            break;
        case 'n':
            *d++ = '\n';
            break;
        case 'r':
            *d++ = '\r';
            break;
        case 't':
            *d++ = '\t';
            break;
        case 'u': {
            uint32_t cp, lo;
            read_hex4(p, end, &cp);
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                read_hex4(p + 2, end, &lo);
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            d += put_utf8(d, cp);
            break;
        }
        default:
            *d++ = e;
            break; /* '"', '\\', '/' */
        }
    }
}

/* Copies a short string into a NUL-terminated buffer; false if it does not fit. */
static bool jstr_cstr(const struct jstr *js, char *dst, size_t cap)
{
    if (js->ulen >= cap)
        return false;
    unescape(js, (uint8_t *)dst);
    dst[js->ulen] = '\0';
    return true;
}

/* JSON number grammar (RFC 8259 section 6) from p; returns the end of the
 * longest valid number, or NULL if there is none. */
static const uint8_t *number_end(const uint8_t *p, const uint8_t *end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    if (*p == '0')
        p++;
    else
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    return p;
}

/* The exact integer value of a grammatical JSON number: `neg` and magnitude.
 * Returns 0, -EDOM if it has a fractional part, -ERANGE beyond 64 bits. */
static int number_to_int(const uint8_t *s, size_t n, bool *neg, uint64_t *mag)
{
    const uint8_t *p = s, *end = s + n;
    *neg = false;
    if (*p == '-') {
        *neg = true;
        p++;
    }
    if (end - p <= 19) { /* plain digits: the common case */
        uint64_t v = 0;
        const uint8_t *q = p;
        while (q < end && *q >= '0' && *q <= '9')
            v = v * 10 + (uint64_t)(*q++ - '0');
        if (q == end) {
            *mag = v;
            return 0;
        }
    }
    const uint8_t *ip = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    const uint8_t *ie = p, *fp = p, *fe = p;
    if (p < end && *p == '.') {
        fp = ++p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        fe = p;
    }
    int64_t exp10 = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        bool eneg = false;
        p++;
        if (*p == '+' || *p == '-')
            eneg = *p++ == '-';
        for (; p < end; p++)
            if (exp10 < 1000000)
                exp10 = exp10 * 10 + (*p - '0');
        if (eneg)
            exp10 = -exp10;
    }
    /* value = digits(int . frac) * 10^shift */
    size_t nint = (size_t)(ie - ip), nfrac = (size_t)(fe - fp);
    int64_t shift = exp10 - (int64_t)BASE_MIN(nfrac, (size_t)INT32_MAX);
    size_t ndig = nint + nfrac;
    uint64_t v = 0;
    for (size_t i = 0; i < ndig; i++) {
        unsigned d = (unsigned)((i < nint ? ip[i] : fp[i - nint]) - '0');
        /* this digit weighs 10^(ndig - 1 - i + shift) */
        if ((int64_t)(ndig - 1 - i) + shift < 0) {
            if (d != 0)
                return -EDOM;
            continue;
        }
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    for (int64_t k = 0; v != 0 && k < shift; k++) {
        if (v > UINT64_MAX / 10)
            return -ERANGE;
        v *= 10;
    }
    *mag = v;
    return 0;
}

static int number_to_double(struct jctx *c, const uint8_t *s, size_t n, double *out)
{
    char tmp[64];
    char *t = tmp;
    if (n >= sizeof(tmp)) {
        t = malloc(n + 1);
        if (t == NULL)
            return jout_rc(c, -ENOMEM);
    }
    memcpy(t, s, n);
    t[n] = '\0';
    double v = strtod(t, NULL);
    if (t != tmp)
        free(t);
    if (isinf(v))
        return jfail(c, "number out of range for double");
    *out = v;
    return 0;
}

/* A scalar value ready for the wire: varint value or fixed-width bits. */
struct jval {
    uint64_t u;
    unsigned wt;
};

static const uint8_t *scan_literal(struct jctx *c, const char *lit, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return NULL;
    c->p += n;
    return c->p;
}

/* Integer fields: a JSON number or a string holding one. */
static int parse_int(struct jctx *c, const ProtobufCFieldDescriptor *f, struct jval *v)
{
    const uint8_t *s;
    size_t n;
    char tmp[128];
    if (*c->p == '"') {
        struct jstr js;
        int rc = scan_string(c, &js);
        if (rc < 0)
            return rc;
        if (js.esc) {
            if (!jstr_cstr(&js, tmp, sizeof(tmp)))
                return jfail(c, "expected an integer");
            s = (const uint8_t *)tmp;
            n = js.ulen;
        } else {
            s = js.s;
            n = js.n;
        }
        if (n == 0 || number_end(s, s + n) != s + n)
            return jfail(c, "expected an integer");
    } else {
        s = c->p;
        const uint8_t *e = number_end(c->p, c->end);
        if (e == NULL)
            return *c->p == '-' || (*c->p >= '0' && *c->p <= '9')
                       ? jsyntax(c, c->p, "invalid number")
                       : jfail(c, "expected an integer");
        n = (size_t)(e - s);
        c->p = e;
    }
    bool neg;
    uint64_t mag;
    int rc = number_to_int(s, n, &neg, &mag);
    if (rc == -EDOM)
        return jfail(c, "expected an integer, got a fraction");
    bool is_signed = f->type == PROTOBUF_C_TYPE_INT32 || f->type == PROTOBUF_C_TYPE_SINT32 ||
                     f->type == PROTOBUF_C_TYPE_SFIXED32 || f->type == PROTOBUF_C_TYPE_INT64 ||
                     f->type == PROTOBUF_C_TYPE_SINT64 || f->type == PROTOBUF_C_TYPE_SFIXED64 ||
                     f->type == PROTOBUF_C_TYPE_ENUM;
    bool wide = is_64bit_int(f->type);
    uint64_t max_pos =
        is_signed ? (wide ? INT64_MAX : INT32_MAX) : (wide ? UINT64_MAX : UINT32_MAX);
    uint64_t max_neg = is_signed ? (wide ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT32_MAX + 1) : 0;
    if (rc == -ERANGE || mag > (neg ? max_neg : max_pos))
        return jfail(c, "integer out of range for %s",
                     f->type == PROTOBUF_C_TYPE_ENUM ? "enum"
                     : wide                          ? (is_signed ? "int64" : "uint64")
                                                     : (is_signed ? "int32" : "uint32"));
    /* two's complement value of the signed number */
    uint64_t u = neg ? (uint64_t)0 - mag : mag;
    v->wt = type_wt(f->type);
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
        v->u = u; /* int32 negatives: sign-extended 10-byte varint */
        break;
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
        v->u = u & 0xffffffffu;
        break;
    case PROTOBUF_C_TYPE_SINT32: {
        uint32_t x = (uint32_t)u;
        v->u = (uint32_t)((x << 1) ^ (uint32_t) - (int32_t)(x >> 31));
        break;
    }
    default: /* SINT64 */
        v->u = (u << 1) ^ (uint64_t) - (int64_t)(u >> 63);
        break;
    }
    return 0;
}

static int parse_enum(struct jctx *c, const ProtobufCFieldDescriptor *f, struct jval *v)
{
    if (*c->p != '"')
        return parse_int(c, f, v);
    const uint8_t *save = c->p;
    struct jstr js;
    int rc = scan_string(c, &js);
    if (rc < 0)
        return rc;
    char name[128];
    const ProtobufCEnumValue *ev = NULL;
    if (jstr_cstr(&js, name, sizeof(name)))
        ev = protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, name);
    if (ev == NULL) {
        /* a quoted number is fine too */
        const uint8_t *after = c->p;
        c->p = save;
        if (js.n > 0 && (js.s[0] == '-' || (js.s[0] >= '0' && js.s[0] <= '9')))
            return parse_int(c, f, v);
        c->p = after;
        return jfail(c, "unknown %s value \"%.*s\"",
                     ((const ProtobufCEnumDescriptor *)f->descriptor)->short_name,
                     (int)BASE_MIN(js.n, 64), (const char *)js.s);
    }
    v->wt = WT_VARINT;
    v->u = (uint64_t)(int64_t)ev->value;
    return 0;
}

static int parse_float(struct jctx *c, const ProtobufCFieldDescriptor *f, struct jval *v)
{
    double d;
    int rc;
    if (*c->p == '"') {
        struct jstr js;
        char tmp[64];
        rc = scan_string(c, &js);
        if (rc < 0)
            return rc;
        if (!jstr_cstr(&js, tmp, sizeof(tmp)))
            return jfail(c, "expected a number");
        if (strcmp(tmp, "NaN") == 0)
            d = NAN;
        else if (strcmp(tmp, "Infinity") == 0)
            d = INFINITY;
        else if (strcmp(tmp, "-Infinity") == 0)
            d = -INFINITY;
        else if (js.ulen > 0 &&
                 number_end((uint8_t *)tmp, (uint8_t *)tmp + js.ulen) == (uint8_t *)tmp + js.ulen) {
            if ((rc = number_to_double(c, (uint8_t *)tmp, js.ulen, &d)) < 0)
                return rc;
        } else {
            return jfail(c, "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"");
        }
    } else {
        const uint8_t *e = number_end(c->p, c->end);
        if (e == NULL)
            return *c->p == '-' || (*c->p >= '0' && *c->p <= '9')
                       ? jsyntax(c, c->p, "invalid number")
                       : jfail(c, "expected a number");
        rc = number_to_double(c, c->p, (size_t)(e - c->p), &d);
        c->p = e;
        if (rc < 0)
            return rc;
    }
    if (f->type == PROTOBUF_C_TYPE_FLOAT) {
        if (isfinite(d) && fabs(d) > FLT_MAX)
            return jfail(c, "number out of range for float");
        float fl = (float)d;
        uint32_t bits;
        memcpy(&bits, &fl, 4);
        v->u = bits;
        v->wt = WT_I32;
    } else {
        memcpy(&v->u, &d, 8);
        v->wt = WT_I64;
    }
    return 0;
}

static int parse_scalar(struct jctx *c, const ProtobufCFieldDescriptor *f, struct jval *v)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        if (scan_literal(c, "true", 4)) {
            v->u = 1;
        } else if (scan_literal(c, "false", 5)) {
            v->u = 0;
        } else {
            return jfail(c, "expected true or false");
        }
        v->wt = WT_VARINT;
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return parse_enum(c, f, v);
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_FLOAT:
        return parse_float(c, f, v);
    default:
        return parse_int(c, f, v);
    }
}

static int put_jval(struct jctx *c, const struct jval *v)
{
    int rc = jreserve(c, 10);
    if (rc < 0)
        return rc;
    struct buf *b = c->out;
    if (v->wt == WT_VARINT)
        b->len += put_varint(b->data + b->len, v->u);
    else {
        size_t w = v->wt == WT_I64 ? 8 : 4;
        put_le(b->data + b->len, v->u, w);
        b->len += w;
    }
    return 0;
}

static int put_tag(struct jctx *c, const ProtobufCFieldDescriptor *f, unsigned wt)
{
    int rc = jreserve(c, 5);
    if (rc < 0)
        return rc;
    c->out->len += put_varint(c->out->data + c->out->len, (uint64_t)f->id << 3 | wt);
    return 0;
}

/* Opens a length-delimited payload: a one-byte length placeholder. */
static int len_open(struct jctx *c, size_t *mark)
{
    int rc = jreserve(c, 1);
    if (rc < 0)
        return rc;
    *mark = c->out->len++;
    return 0;
}

/* Closes it: writes the varint length, widening the placeholder if needed. */
static int len_close(struct jctx *c, size_t mark)
{
    struct buf *b = c->out;
    size_t plen = b->len - mark - 1;
    if (plen > UINT32_MAX)
        return jout_rc(c, -EMSGSIZE);
    size_t vl = varint_len(plen);
    if (vl > 1) {
        int rc = jreserve(c, vl - 1);
        if (rc < 0)
            return rc;
        memmove(b->data + mark + vl, b->data + mark + 1, plen);
        b->len += vl - 1;
    }
    put_varint(b->data + mark, plen);
    return 0;
}

/* A bytes field: hex for trace/span ids, base64 otherwise. Two passes over
 * the string: validate and size, then decode straight into `out`. */
static int parse_bytes(struct jctx *c, const ProtobufCFieldDescriptor *f, bool presence)
{
    if (*c->p != '"')
        return jfail(c, "expected a string");
    struct jstr js;
    int rc = scan_string(c, &js);
    if (rc < 0)
        return rc;
    /* fast path needs no escapes; escaped strings are decoded to a copy */
    uint8_t small[256];
    uint8_t *tmp = NULL;
    const uint8_t *s = js.s;
    size_t n = js.n;
    if (js.esc) {
        tmp = js.ulen <= sizeof(small) ? small : malloc(js.ulen);
        if (tmp == NULL)
            return jout_rc(c, -ENOMEM);
        unescape(&js, tmp);
        s = tmp;
        n = js.ulen;
    }
    size_t idlen = hex_id_len(f);
    size_t dlen;
    rc = 0;
    if (idlen != 0) {
        /* An id of the wrong length is still converted, so the validator
         * rejects just its top-level entry (partial success) as it does for
         * protobuf; only text that is not hex at all fails the request. */
        if (n % 2 != 0 || n > idlen * 4) {
            rc = jfail(c, "expected %zu hex characters", idlen * 2);
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            if (hex_val(s[i]) < 0) {
                rc = jfail(c, "invalid hex character");
                goto out;
            }
        dlen = n / 2;
    } else {
        size_t m = n;
        if (m > 0 && s[m - 1] == '=')
            m--;
        if (m > 0 && s[m - 1] == '=')
            m--;
        if (m % 4 == 1 || (m != n && n % 4 != 0)) {
            rc = jfail(c, "invalid base64 length");
            goto out;
        }
        for (size_t i = 0; i < m; i++)
            if (b64_val(s[i]) < 0) {
                rc = jfail(c, "invalid base64 character");
                goto out;
            }
        dlen = m / 4 * 3 + (m % 4 ? m % 4 - 1 : 0);
        n = m;
    }
    if (dlen == 0 && !presence)
        goto out;
    if ((rc = put_tag(c, f, WT_LEN)) < 0 || (rc = jreserve(c, 5 + dlen)) < 0)
        goto out;
    struct buf *b = c->out;
    b->len += put_varint(b->data + b->len, dlen);
    uint8_t *d = b->data + b->len;
    if (idlen != 0) {
        for (size_t i = 0; i < dlen; i++)
            d[i] = (uint8_t)(hex_val(s[2 * i]) << 4 | hex_val(s[2 * i + 1]));
    } else {
        uint32_t acc = 0;
        unsigned bits = 0;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            acc = acc << 6 | (uint32_t)b64_val(s[i]);
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                d[o++] = (uint8_t)(acc >> bits);
            }
        }
    }
    b->len += dlen;
out:
    if (tmp != small)
        free(tmp);
    return rc;
}

static int parse_string(struct jctx *c, const ProtobufCFieldDescriptor *f, bool presence)
{
    if (*c->p != '"')
        return jfail(c, "expected a string");
    struct jstr js;
    int rc = scan_string(c, &js);
    if (rc < 0)
        return rc;
    if (js.ulen == 0 && !presence)
        return 0;
    if ((rc = put_tag(c, f, WT_LEN)) < 0 || (rc = jreserve(c, 5 + js.ulen)) < 0)
        return rc;
    struct buf *b = c->out;
    b->len += put_varint(b->data + b->len, js.ulen);
    unescape(&js, b->data + b->len);
    b->len += js.ulen;
    return 0;
}

static int parse_message(struct jctx *c, const ProtobufCMessageDescriptor *d);
static int skip_value(struct jctx *c);

static int push_depth(struct jctx *c)
{
    if (++c->depth > OTLP_JSON_MAX_DEPTH)
        return jfail(c, "nesting deeper than %d levels", OTLP_JSON_MAX_DEPTH);
    return 0;
}

/* One value of field f at c->p (not null): tag and value, or nothing for a
 * default scalar without presence. */
static int parse_one(struct jctx *c, const ProtobufCFieldDescriptor *f, bool presence)
{
    int rc;
    switch (f->type) {
    case PROTOBUF_C_TYPE_MESSAGE: {
        if (*c->p != '{')
            return jfail(c, "expected an object");
        size_t mark;
        if ((rc = put_tag(c, f, WT_LEN)) < 0 || (rc = len_open(c, &mark)) < 0 ||
            (rc = parse_message(c, f->descriptor)) < 0)
            return rc;
        return len_close(c, mark);
    }
    case PROTOBUF_C_TYPE_STRING:
        return parse_string(c, f, presence);
    case PROTOBUF_C_TYPE_BYTES:
        return parse_bytes(c, f, presence);
    default: {
        struct jval v;
        if ((rc = parse_scalar(c, f, &v)) < 0)
            return rc;
        if (v.u == 0 && !presence)
            return 0;
        if ((rc = put_tag(c, f, v.wt)) < 0)
            return rc;
        return put_jval(c, &v);
    }
    }
}

static int parse_repeated(struct jctx *c, const ProtobufCFieldDescriptor *f)
{
    if (*c->p != '[')
        return jfail(c, "expected an array");
    int rc = push_depth(c);
    if (rc < 0)
        return rc;
    bool packed = (f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) && type_wt(f->type) != WT_LEN;
    size_t tag_at = c->out->len, mark = 0;
    if (packed && ((rc = put_tag(c, f, WT_LEN)) < 0 || (rc = len_open(c, &mark)) < 0))
        return rc;
    c->p++;
    skip_ws(c);
    size_t count = 0;
    struct jpath *pe = &c->path[c->npath++];
    pe->key = NULL;
    if (c->p < c->end && *c->p == ']') {
        c->p++;
    } else {
        for (;;) {
            pe->index = count;
            if (c->p >= c->end)
                return jsyntax(c, c->p, "unterminated array");
            if (*c->p == 'n' && scan_literal(c, "null", 4))
                return jfail(c, "null is not allowed in an array");
            if (packed) {
                struct jval v;
                if ((rc = parse_scalar(c, f, &v)) < 0 || (rc = put_jval(c, &v)) < 0)
                    return rc;
            } else if ((rc = parse_one(c, f, true)) < 0) {
                return rc;
            }
            count++;
            skip_ws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                skip_ws(c);
                continue;
            }
            if (c->p < c->end && *c->p == ']') {
                c->p++;
                break;
            }
            return jsyntax(c, c->p, "expected ',' or ']'");
        }
    }
    c->npath--;
    c->depth--;
    if (!packed)
        return 0;
    if (count == 0) {
        c->out->len = tag_at; /* an empty packed array is no field at all */
        return 0;
    }
    return len_close(c, mark);
}

/* A message's fields, c->p at '{'; writes them to `out` with no length
 * prefix (the caller frames nested messages). */
static int parse_message(struct jctx *c, const ProtobufCMessageDescriptor *d)
{
    int rc = push_depth(c);
    if (rc < 0)
        return rc;
    if (d->n_fields > OTLP_JSON_MAX_FIELDS)
        return jfail(c, "%s has more than %d fields", d->name, OTLP_JSON_MAX_FIELDS);
    uint64_t seen = 0;
    unsigned next = 0;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        c->depth--;
        return 0;
    }
    struct jpath *pe = &c->path[c->npath++];
    for (;;) {
        if (c->p >= c->end || *c->p != '"')
            return jsyntax(c, c->p, "expected a key string");
        struct jstr key;
        if ((rc = scan_string(c, &key)) < 0)
            return rc;
        pe->key = key.s;
        pe->key_len = key.n;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':')
            return jsyntax(c, c->p, "expected ':'");
        c->p++;
        skip_ws(c);
        if (c->p >= c->end)
            return jsyntax(c, c->p, "expected a value");
        const ProtobufCFieldDescriptor *f = NULL;
        const uint8_t *k = key.s;
        size_t kn = key.n;
        char kbuf[64];
        if (key.esc) {
            k = (const uint8_t *)kbuf;
            kn = jstr_cstr(&key, kbuf, sizeof(kbuf)) ? key.ulen : 0;
        }
        /* Encoders mostly write keys in field-number order (the JS SDK and
         * protobuf-based ones do), so the search starts after the last match. */
        for (unsigned i = 0, j = next; kn > 0 && i < d->n_fields; i++, j++) {
            if (j == d->n_fields)
                j = 0;
            if (key_matches(d->fields[j].name, k, kn)) {
                f = &d->fields[j];
                next = j + 1;
                break;
            }
        }
        if (f == NULL) {
            /* OTLP spec: receivers MUST ignore unknown fields */
            rc = skip_value(c);
        } else if (*c->p == 'n' && scan_literal(c, "null", 4)) {
            rc = 0; /* null: absent */
        } else {
            unsigned idx = (unsigned)(f - d->fields);
            if (seen & (1ull << idx))
                return jfail(c, "duplicate field");
            seen |= 1ull << idx;
            if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                for (unsigned i = 0; i < d->n_fields; i++)
                    if ((seen & (1ull << i)) && same_oneof(f, &d->fields[i])) {
                        char other[64];
                        size_t on = json_name(d->fields[i].name, other, sizeof(other));
                        return jfail(c, "oneof already set by \"%.*s\"", (int)on, other);
                    }
            if (f->label == PROTOBUF_C_LABEL_REPEATED)
                rc = parse_repeated(c, f);
            else
                rc = parse_one(c, f, has_presence(f));
        }
        if (rc < 0)
            return rc;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            skip_ws(c);
            continue;
        }
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            break;
        }
        return jsyntax(c, c->p, "expected ',' or '}'");
    }
    c->npath--;
    c->depth--;
    return 0;
}

/* Skips (and checks) any JSON value: the values of unknown keys. */
static int skip_value(struct jctx *c)
{
    int rc;
    struct jstr js;
    switch (*c->p) {
    case '"':
        return scan_string(c, &js);
    case 't':
        return scan_literal(c, "true", 4) ? 0 : jsyntax(c, c->p, "invalid literal");
    case 'f':
        return scan_literal(c, "false", 5) ? 0 : jsyntax(c, c->p, "invalid literal");
    case 'n':
        return scan_literal(c, "null", 4) ? 0 : jsyntax(c, c->p, "invalid literal");
    case '{':
    case '[': {
        uint8_t close = *c->p == '{' ? '}' : ']';
        bool obj = close == '}';
        if ((rc = push_depth(c)) < 0)
            return rc;
        c->p++;
        skip_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            c->depth--;
            return 0;
        }
        for (;;) {
            if (c->p >= c->end)
                return jsyntax(c, c->p, obj ? "unterminated object" : "unterminated array");
            if (obj) {
                if (*c->p != '"')
                    return jsyntax(c, c->p, "expected a key string");
                if ((rc = scan_string(c, &js)) < 0)
                    return rc;
                skip_ws(c);
                if (c->p >= c->end || *c->p != ':')
                    return jsyntax(c, c->p, "expected ':'");
                c->p++;
                skip_ws(c);
                if (c->p >= c->end)
                    return jsyntax(c, c->p, "expected a value");
            }
            if ((rc = skip_value(c)) < 0)
                return rc;
            skip_ws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                skip_ws(c);
                continue;
            }
            if (c->p < c->end && *c->p == close) {
                c->p++;
                break;
            }
            return jsyntax(c, c->p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
        c->depth--;
        return 0;
    }
    default: {
        const uint8_t *e = number_end(c->p, c->end);
        if (e == NULL)
            return jsyntax(c, c->p, "invalid value");
        c->p = e;
        return 0;
    }
    }
}

int otlp_json_to_proto_desc(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                            struct buf *out, char *err, size_t err_len)
{
    if (err != NULL && err_len > 0)
        err[0] = '\0';
    if (d == NULL || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || out == NULL ||
        (json == NULL && len > 0)) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "invalid arguments");
        return -EINVAL;
    }
    if (len == 0)
        json = "";
    struct jctx c = {
        .start = (const uint8_t *)json,
        .p = (const uint8_t *)json,
        .end = (const uint8_t *)json + len,
        .out = out,
        .err = err,
        .err_len = err != NULL ? err_len : 0,
    };
    size_t start = out->len;
    int rc;
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{') {
        rc = c.p == c.end ? jsyntax(&c, c.p, "empty body") : jfail(&c, "expected a JSON object");
    } else {
        rc = parse_message(&c, d);
        if (rc == 0) {
            skip_ws(&c);
            if (c.p != c.end)
                rc = jsyntax(&c, c.p, "trailing characters after the object");
        }
    }
    if (rc < 0)
        out->len = start;
    return rc;
}

int otlp_json_to_proto(enum otlp_signal sig, const char *json, size_t len, struct buf *out,
                       char *err, size_t err_len)
{
    const ProtobufCMessageDescriptor *d = otlp_json_request_descriptor(sig);
    if (d == NULL) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "invalid signal");
        return -EINVAL;
    }
    return otlp_json_to_proto_desc(d, json, len, out, err, err_len);
}

/* ---------------------------------------------------------------------------
 * protobuf -> JSON. For each message a first pass over its wire bytes records
 * where each known field first and last occurs; keys are then written in order
 * of first occurrence, with repeated fields collected from all occurrences,
 * singular scalars taken from the last, and singular messages merged.
 * ------------------------------------------------------------------------- */

struct wfield {
    uint32_t num;
    unsigned wt;
    uint64_t v;          /* varint value or fixed bits */
    const uint8_t *data; /* WT_LEN payload */
    size_t len;
};

/* Reads one field at *pp. Returns 0, or -EINVAL for malformed data. */
static int wire_next(const uint8_t **pp, const uint8_t *end, struct wfield *w)
{
    const uint8_t *p = *pp;
    uint64_t tag;
    size_t k = get_varint(p, end, &tag);
    if (k == 0 || tag > UINT32_MAX || (tag >> 3) == 0)
        return -EINVAL;
    p += k;
    w->num = (uint32_t)(tag >> 3);
    w->wt = (unsigned)(tag & 7);
    switch (w->wt) {
    case WT_VARINT:
        if ((k = get_varint(p, end, &w->v)) == 0)
            return -EINVAL;
        p += k;
        break;
    case WT_I64:
        if (end - p < 8)
            return -EINVAL;
        w->v = get_le(p, 8);
        p += 8;
        break;
    case WT_I32:
        if (end - p < 4)
            return -EINVAL;
        w->v = get_le(p, 4);
        p += 4;
        break;
    case WT_LEN: {
        uint64_t n;
        if ((k = get_varint(p, end, &n)) == 0 || n > (uint64_t)(end - p - (ptrdiff_t)k))
            return -EINVAL;
        p += k;
        w->data = p;
        w->len = (size_t)n;
        p += n;
        break;
    }
    default: /* groups (3, 4) are not proto3; 6 and 7 do not exist */
        return -EINVAL;
    }
    *pp = p;
    return 0;
}

/* Is w a value of field f: its own wire type, or packed for a repeated
 * numeric field? */
static bool wire_matches(const ProtobufCFieldDescriptor *f, const struct wfield *w)
{
    unsigned wt = type_wt(f->type);
    return w->wt == wt ||
           (w->wt == WT_LEN && wt != WT_LEN && f->label == PROTOBUF_C_LABEL_REPEATED);
}

struct pctx {
    struct buf *out;
    unsigned depth;
    size_t merge_left; /* bytes merged copies may still take (see emit_merged) */
};

static inline int pput(struct pctx *c, const void *s, size_t n)
{
    struct buf *b = c->out;
    if (likely(b->cap - b->len >= n)) {
        memcpy(b->data + b->len, s, n);
        b->len += n;
        return 0;
    }
    return buf_append(b, s, n);
}

static inline int pputc(struct pctx *c, char ch)
{
    return pput(c, &ch, 1);
}

static int put_u64(struct pctx *c, uint64_t v, bool neg, bool quoted)
{
    char tmp[24];
    char *e = tmp + sizeof(tmp), *p = e;
    if (quoted)
        *--p = '"';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (neg)
        *--p = '-';
    if (quoted)
        *--p = '"';
    return pput(c, p, (size_t)(e - p));
}

static int put_i64(struct pctx *c, int64_t v, bool quoted)
{
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return put_u64(c, mag, v < 0, quoted);
}

static int put_double(struct pctx *c, double v, bool is_float)
{
    if (isnan(v))
        return pput(c, "\"NaN\"", 5);
    if (isinf(v))
        return v > 0 ? pput(c, "\"Infinity\"", 10) : pput(c, "\"-Infinity\"", 11);
    char tmp[40];
    int n = 0;
    /* the shortest of %.15g..%.17g (%.6g..%.9g for float) that reads back */
    for (int prec = is_float ? 6 : 15, last = is_float ? 9 : 17; prec <= last; prec++) {
        n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (prec == last)
            break;
        if (is_float ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v)
            break;
    }
    return pput(c, tmp, (size_t)n);
}

/* A JSON string from a protobuf string: -EINVAL unless `s` is valid UTF-8
 * (proto3 strings are). Escapes '"', '\\' and control characters. */
static int put_json_string(struct pctx *c, const uint8_t *s, size_t n)
{
    int rc = pputc(c, '"');
    const uint8_t *run = s, *end = s + n, *p = s;
    while (rc == 0 && p < end) {
        while (end - p >= 8 && plain8(p))
            p += 8;
        if (p >= end)
            break;
        uint8_t ch = *p;
        if (ch >= 0x80) {
            size_t k = utf8_seq(p, end);
            if (k == 0)
                return -EINVAL;
            p += k;
            continue;
        }
        if (likely(ch >= 0x20 && ch != '"' && ch != '\\')) {
            p++;
            continue;
        }
        if ((rc = pput(c, run, (size_t)(p - run))) < 0)
            break;
        char esc[8];
        size_t en = 2;
        esc[0] = '\\';
        switch (ch) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex_digits[ch >> 4];
            esc[5] = hex_digits[ch & 15];
            en = 6;
        }
        rc = pput(c, esc, en);
        run = ++p;
    }
    if (rc == 0)
        rc = pput(c, run, (size_t)(end - run));
    return rc < 0 ? rc : pputc(c, '"');
}

static int put_bytes(struct pctx *c, const ProtobufCFieldDescriptor *f, const uint8_t *s, size_t n)
{
    size_t idlen = hex_id_len(f);
    int rc;
    if (idlen != 0) {
        /* The same bound the JSON reader applies, so everything written reads
         * back; ids of the wrong length are the validator's business. */
        if (n > idlen * 2)
            return -EINVAL;
        char tmp[2 + 64];
        tmp[0] = '"';
        for (size_t i = 0; i < n; i++) {
            tmp[1 + 2 * i] = hex_digits[s[i] >> 4];
            tmp[2 + 2 * i] = hex_digits[s[i] & 15];
        }
        tmp[1 + 2 * n] = '"';
        return pput(c, tmp, 2 + 2 * n);
    }
    if ((rc = pputc(c, '"')) < 0)
        return rc;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        size_t m = n - i;
        if (m > 1)
            v |= (uint32_t)s[i + 1] << 8;
        if (m > 2)
            v |= s[i + 2];
        char q[4] = {b64_alphabet[v >> 18], b64_alphabet[(v >> 12) & 63],
                     m > 1 ? b64_alphabet[(v >> 6) & 63] : '=', m > 2 ? b64_alphabet[v & 63] : '='};
        if ((rc = pput(c, q, 4)) < 0)
            return rc;
    }
    return pputc(c, '"');
}

/* Is this value the proto3 default (for fields without presence)? */
static bool wire_is_default(const ProtobufCFieldDescriptor *f, const struct wfield *w)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
        return w->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return false;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_ENUM:
        return (uint32_t)w->v == 0;
    default:
        return w->v == 0; /* doubles: +0.0 only, -0.0 is kept */
    }
}

/* A scalar value (varint or fixed bits in v, or a string / bytes payload). */
static int put_scalar(struct pctx *c, const ProtobufCFieldDescriptor *f, uint64_t v,
                      const uint8_t *data, size_t len)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return put_i64(c, (int32_t)(uint32_t)v, false);
    case PROTOBUF_C_TYPE_SINT32: {
        uint32_t x = (uint32_t)v;
        return put_i64(c, (int32_t)((x >> 1) ^ (uint32_t) - (int32_t)(x & 1)), false);
    }
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return put_u64(c, (uint32_t)v, false, false);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return put_i64(c, (int64_t)v, true);
    case PROTOBUF_C_TYPE_SINT64:
        return put_i64(c, (int64_t)((v >> 1) ^ (uint64_t) - (int64_t)(v & 1)), true);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return put_u64(c, v, false, true);
    case PROTOBUF_C_TYPE_BOOL:
        return v != 0 ? pput(c, "true", 4) : pput(c, "false", 5);
    case PROTOBUF_C_TYPE_FLOAT: {
        uint32_t bits = (uint32_t)v;
        float fl;
        memcpy(&fl, &bits, 4);
        return put_double(c, fl, true);
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d;
        memcpy(&d, &v, 8);
        return put_double(c, d, false);
    }
    case PROTOBUF_C_TYPE_STRING:
        return put_json_string(c, data, len);
    case PROTOBUF_C_TYPE_BYTES:
        return put_bytes(c, f, data, len);
    default:
        return -EINVAL;
    }
}

static int put_key(struct pctx *c, const ProtobufCFieldDescriptor *f, bool *first)
{
    char tmp[128];
    size_t n = json_name(f->name, tmp + 2, sizeof(tmp) - 4);
    if (n == 0)
        return -EINVAL;
    tmp[0] = *first ? '{' : ',';
    tmp[1] = '"';
    tmp[n + 2] = '"';
    tmp[n + 3] = ':';
    *first = false;
    return pput(c, tmp, n + 4);
}

static int emit_message(struct pctx *c, const ProtobufCMessageDescriptor *d, const uint8_t *p,
                        size_t n);

/* Elements of repeated field f from every occurrence in [p, end). */
static int emit_repeated(struct pctx *c, const ProtobufCFieldDescriptor *f, const uint8_t *p,
                         const uint8_t *end)
{
    int rc;
    bool first = true;
    if (++c->depth > OTLP_JSON_MAX_DEPTH)
        return -EINVAL;
    if ((rc = pputc(c, '[')) < 0)
        return rc;
    unsigned wt = type_wt(f->type);
    while (p < end) {
        struct wfield w;
        if ((rc = wire_next(&p, end, &w)) < 0)
            return rc;
        if (w.num != f->id || !wire_matches(f, &w))
            continue;
        if (w.wt == WT_LEN && wt != WT_LEN) { /* packed */
            const uint8_t *q = w.data, *qe = w.data + w.len;
            while (q < qe) {
                uint64_t v;
                if (wt == WT_VARINT) {
                    size_t k = get_varint(q, qe, &v);
                    if (k == 0)
                        return -EINVAL;
                    q += k;
                } else {
                    size_t sz = wt == WT_I64 ? 8 : 4;
                    if ((size_t)(qe - q) < sz)
                        return -EINVAL;
                    v = get_le(q, sz);
                    q += sz;
                }
                if ((!first && (rc = pputc(c, ',')) < 0) || (rc = put_scalar(c, f, v, NULL, 0)) < 0)
                    return rc;
                first = false;
            }
            continue;
        }
        if (!first && (rc = pputc(c, ',')) < 0)
            return rc;
        first = false;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            rc = emit_message(c, f->descriptor, w.data, w.len);
        else
            rc = put_scalar(c, f, w.v, w.data, w.len);
        if (rc < 0)
            return rc;
    }
    c->depth--;
    return pputc(c, ']');
}

/* Singular message field f: the merge of its occurrences in [p, end) after
 * offset `after` (the last occurrence of another member of its oneof). One
 * occurrence is walked in place; several are concatenated, which is how
 * protobuf merges messages. */
static int emit_merged(struct pctx *c, const ProtobufCFieldDescriptor *f, const uint8_t *p,
                       const uint8_t *end, const uint8_t *after)
{
    const uint8_t *one = NULL;
    size_t one_len = 0, total = 0, count = 0;
    for (const uint8_t *q = p; q < end;) {
        const uint8_t *at = q;
        struct wfield w;
        if (wire_next(&q, end, &w) < 0)
            return -EINVAL;
        if (w.num != f->id || w.wt != WT_LEN || at < after)
            continue;
        if (count++ == 0) {
            one = w.data;
            one_len = w.len;
        }
        total += w.len;
    }
    if (count == 1)
        return emit_message(c, f->descriptor, one, one_len);
    /* Copies nest (a merged message may hold merged messages), so their live
     * total is capped at the input size: canonical encoders never repeat a
     * singular message, only hostile input would make this blow up. */
    if (total > c->merge_left)
        return -EMSGSIZE;
    uint8_t *cat = malloc(total ? total : 1);
    if (cat == NULL)
        return -ENOMEM;
    size_t o = 0;
    for (const uint8_t *q = p; q < end;) {
        const uint8_t *at = q;
        struct wfield w;
        wire_next(&q, end, &w);
        if (w.num != f->id || w.wt != WT_LEN || at < after)
            continue;
        memcpy(cat + o, w.data, w.len);
        o += w.len;
    }
    c->merge_left -= total;
    int rc = emit_message(c, f->descriptor, cat, total);
    c->merge_left += total;
    free(cat);
    return rc;
}

struct finfo {
    uint32_t first; /* offset of the first occurrence + 1; 0: absent */
    uint32_t last;  /* offset of the last occurrence + 1 */
};

static int emit_message(struct pctx *c, const ProtobufCMessageDescriptor *d, const uint8_t *msg,
                        size_t n)
{
    if (++c->depth > OTLP_JSON_MAX_DEPTH || d->n_fields > OTLP_JSON_MAX_FIELDS)
        return -EINVAL;
    struct finfo fi[OTLP_JSON_MAX_FIELDS];
    uint8_t order[OTLP_JSON_MAX_FIELDS];
    unsigned norder = 0;
    memset(fi, 0, d->n_fields * sizeof(fi[0]));
    const uint8_t *p = msg, *end = msg + n;
    int rc;
    /* pass 1: where each known field occurs */
    while (p < end) {
        const uint8_t *at = p;
        struct wfield w;
        if ((rc = wire_next(&p, end, &w)) < 0)
            return rc;
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, w.num);
        if (f == NULL || !wire_matches(f, &w))
            continue; /* unknown: skipped, as a protobuf parser keeps it aside */
        if (f->label == PROTOBUF_C_LABEL_REPEATED && w.wt == WT_LEN &&
            f->type != PROTOBUF_C_TYPE_MESSAGE && type_wt(f->type) != WT_LEN && w.len == 0)
            continue; /* empty packed run: no elements */
        unsigned idx = (unsigned)(f - d->fields);
        uint32_t pos = (uint32_t)(at - msg) + 1;
        if (fi[idx].first == 0) {
            fi[idx].first = pos;
            order[norder++] = (uint8_t)idx;
        }
        fi[idx].last = pos;
    }
    /* pass 2: keys in order of first occurrence */
    bool first = true;
    for (unsigned o = 0; o < norder; o++) {
        unsigned idx = order[o];
        const ProtobufCFieldDescriptor *f = &d->fields[idx];
        const uint8_t *from = msg + fi[idx].first - 1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if ((rc = put_key(c, f, &first)) < 0 || (rc = emit_repeated(c, f, from, msg + n)) < 0)
                return rc;
            continue;
        }
        /* a oneof member counts only if no other member occurs after it */
        uint32_t after = 0;
        bool lost = false;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            for (unsigned i = 0; i < d->n_fields; i++)
                if (fi[i].last != 0 && same_oneof(f, &d->fields[i])) {
                    if (fi[i].last > fi[idx].last)
                        lost = true;
                    after = BASE_MAX(after, fi[i].last);
                }
        if (lost)
            continue;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            if ((rc = put_key(c, f, &first)) < 0 ||
                (rc = emit_merged(c, f, from, msg + n, msg + after)) < 0)
                return rc;
            continue;
        }
        const uint8_t *lp = msg + fi[idx].last - 1;
        struct wfield w;
        wire_next(&lp, end, &w); /* already checked in pass 1 */
        if (!has_presence(f) && wire_is_default(f, &w))
            continue;
        if ((rc = put_key(c, f, &first)) < 0 || (rc = put_scalar(c, f, w.v, w.data, w.len)) < 0)
            return rc;
    }
    c->depth--;
    return first ? pput(c, "{}", 2) : pputc(c, '}');
}

int otlp_proto_to_json_desc(const ProtobufCMessageDescriptor *d, const uint8_t *pb, size_t len,
                            struct buf *out)
{
    if (d == NULL || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || out == NULL ||
        (pb == NULL && len > 0))
        return -EINVAL;
    if (len >= UINT32_MAX)
        return -EMSGSIZE;
    static const uint8_t empty[1];
    struct pctx c = {.out = out, .merge_left = len};
    size_t start = out->len;
    if (len == 0)
        pb = empty; /* no arithmetic on NULL */
    int rc = emit_message(&c, d, pb, len);
    if (rc < 0)
        out->len = start;
    return rc;
}

int otlp_proto_to_json(enum otlp_signal sig, const uint8_t *pb, size_t len, struct buf *out)
{
    const ProtobufCMessageDescriptor *d = otlp_json_request_descriptor(sig);
    if (d == NULL)
        return -EINVAL;
    return otlp_proto_to_json_desc(d, pb, len, out);
}
